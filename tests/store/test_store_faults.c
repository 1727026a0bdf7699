/* tests/store/test_store_faults.c - allocation-failure sweeps.
 *
 * For each scenario and n = 1, 2, ...: make the n-th allocation from now fail
 * (lull__fault_arm), run the call, and if the failure was reached the call
 * must have returned -ENOMEM (create: NULL with errno ENOMEM) and the store
 * must be exactly as before (keys, values, versions, count, check).  The
 * sweep stops at the first n the call completes without reaching.  Because a
 * failed call changes nothing, the sweep runs in place: the same store then
 * serves the next n, which also proves it is still usable.  LeakSanitizer
 * (ASan build) catches what a failed call leaks. */
#include "store_testlib.h"
#include "store_internal.h"   /* lull__ix_grow_skips */

#include <string.h>

typedef int (*op_fn)(lull_store *s, void *ctx);

static unsigned growth_skips;   /* sweeps that ended in a skipped index growth */

/* Sweep op on s; returns how many allocation points failed (n - 1). */
static unsigned sweep(const char *name, lull_store *s, op_fn op, void *ctx)
{
    struct st_dump before, after;
    st_dump(s, &before);
    unsigned n;
    for (n = 1; n < 100000; n++) {
        unsigned long skips = __atomic_load_n(&lull__ix_grow_skips, __ATOMIC_RELAXED);
        lull__fault_arm(n);
        int rc = op(s, ctx);
        bool fired = lull__fault_fired();
        if (fired && rc == 0 &&
            __atomic_load_n(&lull__ix_grow_skips, __ATOMIC_RELAXED) != skips) {
            /* The failed allocation was the front index of a table that grew
             * after the write had published: the write stands, the store
             * keeps its old index, and must be whole.  Nothing allocates
             * after that point, so the sweep of this call ends here. */
            assert_int_equal(lull_store_check(s, stderr), 0);
            growth_skips++;
            break;
        }
        if (!fired) {
            if (rc != 0)
                fprintf(stderr, "%s: n=%u: rc %d (%s) without a fault\n", name, n, rc,
                        lull_strerror(rc));
            assert_int_equal(rc, 0);
            break;
        }
        if (rc != -ENOMEM)
            fprintf(stderr, "%s: allocation %u failed but the call returned %d (%s)\n", name, n,
                    rc, lull_strerror(rc));
        assert_int_equal(rc, -ENOMEM);
        st_dump(s, &after);
        if (!st_dump_equal(&before, &after))
            fail_msg("%s: allocation %u failed and the store changed", name, n);
        st_dump_free(&after);
    }
    st_dump_free(&before);
    assert_true(n < 100000);
    return n - 1;
}

/* ------------------------------------------------------------ create */

static void sweep_create(const struct lull_store_opts *o, const char *name)
{
    unsigned n;
    for (n = 1; n < 100000; n++) {
        errno = 0;
        lull__fault_arm(n);
        lull_store *s = lull_store_create(o);
        bool fired = lull__fault_fired();
        if (fired) {
            if (s)
                fail_msg("%s: allocation %u failed but create returned a store", name, n);
            assert_int_equal(errno, ENOMEM);
        } else {
            assert_non_null(s);
        }
        if (s) {
            uint64_t v = st_put(s, "k", "v");       /* usable */
            assert_true(v != 0);
            assert_int_equal(lull_store_destroy(s), 0);
        }
        if (!fired)
            break;
    }
    fprintf(stderr, "%s: %u allocation points\n", name, n - 1);
}

static void test_fault_create(void **state)
{
    (void)state;
    sweep_create(NULL, "create(NULL)");
    struct lull_store_opts o = { 1000, 16, 128, 1000000 };
    sweep_create(&o, "create(max_keys 1000)");
    struct lull_store_opts o2 = { 1, 0, 0, 0 };
    sweep_create(&o2, "create(max_keys 1)");
}

/* ----------------------------------------------------- single writers */

struct putctx { const char *key; const void *val; size_t len; uint64_t expected; int which; };

static int op_put(lull_store *s, void *c)
{
    struct putctx *p = c;
    uint64_t v = 0;
    int rc = lull_store_put(s, p->key, strlen(p->key), p->val, p->len, &v);
    if (rc == 0)
        LT_CHECK(v != 0);
    return rc;
}

static int op_put_if(lull_store *s, void *c)
{
    struct putctx *p = c;
    uint64_t v = 0;
    int rc = lull_store_put_if(s, p->key, strlen(p->key), p->val, p->len, p->expected, &v);
    if (rc == 0)
        LT_CHECK(v > p->expected);
    return rc;
}

static int op_delete(lull_store *s, void *c)
{
    struct putctx *p = c;
    return lull_store_delete(s, p->key, strlen(p->key));
}

static int op_delete_if(lull_store *s, void *c)
{
    struct putctx *p = c;
    return lull_store_delete_if(s, p->key, strlen(p->key), p->expected);
}

/* update fns: they pass -ENOMEM from lull_buf_resize on, after checking
 * that a failed resize left the buffer unchanged */
struct updctx { const char *key; size_t grow_to; int ret; enum lull_outcome want; };

static int grow_fn(const struct lull_snap *cur, struct lull_buf *next, void *arg)
{
    struct updctx *u = arg;
    (void)cur;
    if (u->ret != LULL_PUBLISH)
        return u->ret;
    size_t old = next->len;
    void *d = next->data;
    unsigned char first = old ? *(unsigned char *)next->data : 0;
    int rc = lull_buf_resize(next, u->grow_to);
    if (rc) {
        LT_CHECK_EQ(rc, -ENOMEM);
        LT_CHECK(next->data == d);
        LT_CHECK_EQ(next->len, old);
        if (old)
            LT_CHECK_EQ(*(unsigned char *)next->data, first);
        return rc;
    }
    memset(next->data, 'g', next->len);
    return LULL_PUBLISH;
}

static int op_update(lull_store *s, void *c)
{
    struct updctx *u = c;
    struct lull_update_info info;
    int rc = lull_store_update(s, u->key, strlen(u->key), grow_fn, u, &info);
    if (rc == 0) {
        LT_CHECK_EQ(info.outcome, u->want);
        LT_CHECK_EQ(info.attempts, 1);
    }
    return rc;
}

static void test_fault_writers(void **state)
{
    (void)state;
    lull_store *s = lull_store_create(NULL);
    assert_non_null(s);
    char big[5000];
    memset(big, 'b', sizeof big);
    unsigned n;

    /* put a new key (into an empty store, then a non-empty one) */
    struct putctx p = { "new", "value", 5, 0, 0 };
    n = sweep("put new key (empty store)", s, op_put, &p);
    fprintf(stderr, "put new key: %u allocation points\n", n);
    assert_true(n >= 1);                 /* a snapshot must be allocated */
    st_put(s, "a", "1");
    st_put(s, "b", "2");
    p = (struct putctx){ "new2", big, sizeof big, 0, 0 };
    sweep("put new key", s, op_put, &p);
    /* put replacing */
    p = (struct putctx){ "new", "other value", 11, 0, 0 };
    n = sweep("put replacing", s, op_put, &p);
    fprintf(stderr, "put replacing: %u allocation points\n", n);
    assert_true(n >= 1);
    /* put_if: insert (expected 0) and replace (expected current) */
    p = (struct putctx){ "pi", "x", 1, 0, 0 };
    sweep("put_if insert", s, op_put_if, &p);
    p = (struct putctx){ "pi", "yy", 2, st_version(s, "pi", 2), 0 };
    n = sweep("put_if replace", s, op_put_if, &p);
    fprintf(stderr, "put_if replace: %u allocation points\n", n);
    /* empty value */
    p = (struct putctx){ "empty", NULL, 0, 0, 0 };
    sweep("put empty value", s, op_put, &p);
    /* update: insert, grow with lull_buf_resize, publish as is, remove, keep */
    struct updctx u = { "u", 10, LULL_PUBLISH, LULL_INSERTED };
    n = sweep("update insert", s, op_update, &u);
    fprintf(stderr, "update insert: %u allocation points\n", n);
    u = (struct updctx){ "u", 20000, LULL_PUBLISH, LULL_UPDATED };
    n = sweep("update grow", s, op_update, &u);
    fprintf(stderr, "update grow: %u allocation points\n", n);
    u = (struct updctx){ "u", 3, LULL_PUBLISH, LULL_UPDATED };
    sweep("update shrink", s, op_update, &u);
    u = (struct updctx){ "u", 0, LULL_KEEP, LULL_UNCHANGED };
    sweep("update keep", s, op_update, &u);
    u = (struct updctx){ "absent", 0, LULL_REMOVE, LULL_UNCHANGED };
    sweep("update remove absent", s, op_update, &u);
    u = (struct updctx){ "u", 0, LULL_REMOVE, LULL_REMOVED };
    sweep("update remove", s, op_update, &u);
    /* delete, delete_if */
    p = (struct putctx){ "a", NULL, 0, 0, 0 };
    sweep("delete", s, op_delete, &p);
    p = (struct putctx){ "b", NULL, 0, st_version(s, "b", 1), 0 };
    sweep("delete_if", s, op_delete_if, &p);
    assert_int_equal(lull_store_check(s, stderr), 0);
    assert_int_equal(lull_store_destroy(s), 0);
}

/* ------------------------------------------------- many keys (growth) */

struct manyctx { char key[32]; char val[32]; int how; };

static int op_many(lull_store *s, void *c)
{
    struct manyctx *m = c;
    size_t kl = strlen(m->key), vl = strlen(m->val);
    uint64_t v = 0;
    switch (m->how % 3) {
    case 0: return lull_store_put(s, m->key, kl, m->val, vl, &v);
    case 1: return lull_store_put_if(s, m->key, kl, m->val, vl, 0, &v);
    default: {
        struct updctx u = { m->key, 8, LULL_PUBLISH, LULL_INSERTED };
        return op_update(s, &u);
    }
    }
}

/* Sweep every insert while the store grows to nkeys, in place. */
static void sweep_growth(size_t max_keys, int nkeys)
{
    struct lull_store_opts o = { max_keys, 0, 0, 0 };
    lull_store *s = lull_store_create(&o);
    assert_non_null(s);
    unsigned total = 0;
    for (int i = 0; i < nkeys; i++) {
        struct manyctx m;
        snprintf(m.key, sizeof m.key, "grow-%d", i);
        snprintf(m.val, sizeof m.val, "v%d", i);
        m.how = i;
        /* a full dump per failure is O(keys): sweep every key while small,
         * then around the powers of two where tables tend to grow */
        bool dense = i < 80 || ((i + 2) & (i + 1)) == 0 || (i & (i - 1)) == 0 ||
                     ((i - 1) & (i - 2)) == 0 || i % 97 == 0;
        if (dense) {
            total += sweep("insert while growing", s, op_many, &m);
        } else {
            assert_int_equal(op_many(s, &m), 0);
        }
        assert_int_equal(lull_store_count(s), (size_t)i + 1);
    }
    /* and then a few deletes while the table is big */
    for (int i = 0; i < nkeys; i += 37) {
        struct putctx p;
        char key[32];
        snprintf(key, sizeof key, "grow-%d", i);
        p = (struct putctx){ key, NULL, 0, 0, 0 };
        sweep("delete while big", s, op_delete, &p);
    }
    fprintf(stderr, "growth to %d keys (max_keys %zu): %u failed allocations, all clean\n",
            nkeys, max_keys, total);
    assert_int_equal(lull_store_check(s, stderr), 0);
    assert_int_equal(lull_store_destroy(s), 0);
}

static void test_fault_growth(void **state)
{
    (void)state;
    sweep_growth(0, 2100);
    /* An unlimited store grows its table (and front index) on the way. */
    assert_true(growth_skips > 0);
    sweep_growth(2100, 2100);
}

/* A store whose max_keys is full: the -ENOSPC path must not leak either. */
static void test_fault_full(void **state)
{
    (void)state;
    struct lull_store_opts o = { 2, 0, 0, 0 };
    lull_store *s = lull_store_create(&o);
    assert_non_null(s);
    st_put(s, "a", "1");
    st_put(s, "b", "2");
    struct st_dump before, after;
    st_dump(s, &before);
    for (unsigned n = 1; n < 50; n++) {
        lull__fault_arm(n);
        int rc = lull_store_put(s, "c", 1, "3", 1, NULL);
        bool fired = lull__fault_fired();
        assert_true(rc == -ENOSPC || (fired && rc == -ENOMEM));
        st_dump(s, &after);
        assert_true(st_dump_equal(&before, &after));
        st_dump_free(&after);
        if (!fired)
            break;
    }
    st_dump_free(&before);
    assert_int_equal(lull_store_destroy(s), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fault_create),
        cmocka_unit_test(test_fault_writers),
        cmocka_unit_test(test_fault_growth),
        cmocka_unit_test(test_fault_full),
    };
    if (getenv("LT_TEST"))      /* run only the tests matching this pattern */
        cmocka_set_test_filter(getenv("LT_TEST"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
