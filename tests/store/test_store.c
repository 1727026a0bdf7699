/* tests/store/test_store.c - unit tests of the store's contract
 * (include/lull/store.h): deterministic, one thread, no sleeps. */
#include "store_testlib.h"
#include "store_internal.h"   /* lull__key_eq */

#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#define K(str) (str), (sizeof(str) - 1)   /* key literal, without its NUL */

static lull_store *mk(size_t max_keys, size_t max_key_len, size_t max_value_len, uint64_t tmo)
{
    struct lull_store_opts o = { max_keys, max_key_len, max_value_len, tmo };
    lull_store *s = lull_store_create(&o);
    assert_non_null(s);
    return s;
}

static void destroy(lull_store *s)
{
    assert_int_equal(lull_store_check(s, stderr), 0);
    assert_int_equal(lull_store_destroy(s), 0);
}

/* ------------------------------------------------------------ key compare */

/* lull__key_eq is what a lookup compares keys with once their hashes are
 * equal, which a test cannot arrange through the store (64-bit hashes, a
 * random seed): so it is checked here against memcmp, for every length up
 * to 40 and a difference in every byte, at unaligned offsets too. */
static void test_key_eq(void **state)
{
    (void)state;
    unsigned char a[48], b[48];
    for (size_t off = 0; off < 3; off++) {
        for (size_t n = 0; n <= 40; n++) {
            for (size_t i = 0; i < sizeof a; i++)
                a[i] = b[i] = (unsigned char)(i * 37 + 11);
            assert_true(lull__key_eq(a + off, b + off, n));
            for (size_t j = 0; j < n; j++) {
                b[off + j] ^= 0x40;
                assert_false(lull__key_eq(a + off, b + off, n));
                assert_false(lull__key_eq(b + off, a + off, n));
                b[off + j] ^= 0x40;
            }
            /* a difference just outside the key does not count */
            b[off + n] ^= 1;
            assert_true(lull__key_eq(a + off, b + off, n));
        }
    }
}

/* ---------------------------------------------------------------- basics */

static void test_basics(void **state)
{
    (void)state;
    lull_store *s = lull_store_create(NULL);
    assert_non_null(s);
    char buf[64];
    size_t len = 99;
    uint64_t v = 99, v1 = 0;

    assert_int_equal(lull_store_count(s), 0);
    assert_int_equal(lull_store_read(s, K("a"), buf, sizeof buf, &len, &v), -ENOENT);
    lull_read_lock();
    assert_null(lull_store_get(s, K("a")));
    lull_read_unlock();

    assert_int_equal(lull_store_put(s, K("a"), "alpha", 5, &v1), 0);
    assert_true(v1 != 0);
    assert_int_equal(lull_store_count(s), 1);
    memset(buf, 0, sizeof buf);
    assert_int_equal(lull_store_read(s, K("a"), buf, sizeof buf, &len, &v), 0);
    assert_int_equal(len, 5);
    assert_int_equal(v, v1);
    assert_memory_equal(buf, "alpha", 5);
    /* exact capacity, and both outs optional */
    memset(buf, 0, sizeof buf);
    assert_int_equal(lull_store_read(s, K("a"), buf, 5, NULL, NULL), 0);
    assert_memory_equal(buf, "alpha", 5);

    lull_read_lock();
    const struct lull_snap *sn = lull_store_get(s, K("a"));
    assert_non_null(sn);
    assert_int_equal(sn->key_len, 1);
    assert_memory_equal(sn->key, "a", 1);
    assert_int_equal(sn->value_len, 5);
    assert_memory_equal(sn->value, "alpha", 5);
    assert_int_equal(sn->version, v1);
    lull_read_unlock();

    /* version out is optional */
    assert_int_equal(lull_store_put(s, K("b"), "beta", 4, NULL), 0);
    assert_int_equal(lull_store_count(s), 2);

    /* empty value: NULL with length 0 is valid */
    uint64_t v2 = 0;
    assert_int_equal(lull_store_put(s, K("a"), NULL, 0, &v2), 0);
    assert_true(v2 > v1);
    len = 99;
    assert_int_equal(lull_store_read(s, K("a"), NULL, 0, &len, &v), 0);
    assert_int_equal(len, 0);
    assert_int_equal(v, v2);
    assert_int_equal(lull_store_count(s), 2);

    /* binary keys: length and embedded NULs matter */
    assert_int_equal(lull_store_put(s, "a\0b", 3, "1", 1, NULL), 0);
    assert_int_equal(lull_store_put(s, "a\0c", 3, "2", 1, NULL), 0);
    assert_int_equal(lull_store_put(s, "a\0", 2, "3", 1, NULL), 0);
    assert_int_equal(lull_store_count(s), 5);
    assert_int_equal(lull_store_read(s, "a\0b", 3, buf, sizeof buf, &len, NULL), 0);
    assert_memory_equal(buf, "1", 1);
    assert_int_equal(lull_store_read(s, "a\0c", 3, buf, sizeof buf, &len, NULL), 0);
    assert_memory_equal(buf, "2", 1);
    assert_int_equal(lull_store_read(s, "a\0", 2, buf, sizeof buf, &len, NULL), 0);
    assert_memory_equal(buf, "3", 1);
    assert_int_equal(lull_store_read(s, "a\0d", 3, buf, sizeof buf, &len, NULL), -ENOENT);

    assert_int_equal(lull_store_delete(s, K("a")), 0);
    assert_int_equal(lull_store_delete(s, K("a")), -ENOENT);
    assert_int_equal(lull_store_read(s, K("a"), buf, sizeof buf, &len, &v), -ENOENT);
    lull_read_lock();
    assert_null(lull_store_get(s, K("a")));
    assert_non_null(lull_store_get(s, K("b")));
    lull_read_unlock();
    assert_int_equal(lull_store_count(s), 4);
    destroy(s);
}

static void test_read_enobufs(void **state)
{
    (void)state;
    lull_store *s = lull_store_create(NULL);
    assert_non_null(s);
    uint64_t v1 = st_put(s, "k", "hello world");
    char buf[8];
    memset(buf, 'X', sizeof buf);
    size_t len = 0;
    uint64_t v = 0;
    assert_int_equal(lull_store_read(s, K("k"), buf, 4, &len, &v), -ENOBUFS);
    assert_int_equal(len, 11);
    for (size_t i = 0; i < sizeof buf; i++)
        assert_int_equal(buf[i], 'X');                       /* nothing copied */
    len = 0;
    assert_int_equal(lull_store_read(s, K("k"), buf, 10, &len, NULL), -ENOBUFS);  /* one short */
    assert_int_equal(len, 11);
    for (size_t i = 0; i < sizeof buf; i++)
        assert_int_equal(buf[i], 'X');
    /* size query */
    len = 0;
    assert_int_equal(lull_store_read(s, K("k"), NULL, 0, &len, NULL), -ENOBUFS);
    assert_int_equal(len, 11);
    assert_int_equal(lull_store_read(s, K("k"), NULL, 0, NULL, NULL), -ENOBUFS);
    /* then the read */
    char big[11];
    assert_int_equal(lull_store_read(s, K("k"), big, len, &len, &v), 0);
    assert_int_equal(v, v1);
    assert_memory_equal(big, "hello world", 11);
    /* absent: -ENOENT even for a size query */
    assert_int_equal(lull_store_read(s, K("nope"), NULL, 0, &len, NULL), -ENOENT);
    /* a read inside a section works too */
    lull_read_lock();
    assert_int_equal(lull_store_read(s, K("k"), big, sizeof big, &len, &v), 0);
    assert_true(lull_read_ongoing());
    lull_read_unlock();
    assert_false(lull_read_ongoing());
    destroy(s);
}

/* ------------------------------------------------------------- bad input */

static int nop_cb(const struct lull_snap *sn, void *arg)
{
    (void)sn; (void)arg;
    return 0;
}

static int publish_fn(const struct lull_snap *cur, struct lull_buf *next, void *arg)
{
    (void)cur;
    const char *val = arg;
    if (val) {
        int rc = lull_buf_resize(next, strlen(val));
        if (rc)
            return rc;
        memcpy(next->data, val, strlen(val));
    }
    return LULL_PUBLISH;
}

/* Every writer and reader with the given bad key must say -EINVAL and change
 * nothing. */
static void expect_bad_key(lull_store *s, const void *key, size_t key_len)
{
    struct st_dump before, after;
    st_dump(s, &before);
    char buf[8];
    uint64_t v = 0;
    struct lull_update_info info;
    assert_int_equal(lull_store_put(s, key, key_len, "v", 1, &v), -EINVAL);
    assert_int_equal(lull_store_put_if(s, key, key_len, "v", 1, 0, &v), -EINVAL);
    assert_int_equal(lull_store_delete(s, key, key_len), -EINVAL);
    assert_int_equal(lull_store_delete_if(s, key, key_len, 1), -EINVAL);
    assert_int_equal(lull_store_update(s, key, key_len, publish_fn, "v", &info), -EINVAL);
    assert_int_equal(lull_store_read(s, key, key_len, buf, sizeof buf, NULL, NULL), -EINVAL);
    lull_read_lock();
    assert_null(lull_store_get(s, key, key_len));
    lull_read_unlock();
    st_dump(s, &after);
    assert_true(st_dump_equal(&before, &after));
    st_dump_free(&before);
    st_dump_free(&after);
}

static void test_bad_input(void **state)
{
    (void)state;
    lull_store *s = lull_store_create(NULL);
    assert_non_null(s);
    st_put(s, "k", "value");
    char buf[8];
    uint64_t v = 0;
    size_t len = 0;
    struct lull_update_info info;

    /* NULL store */
    assert_int_equal(lull_store_put(NULL, K("k"), "v", 1, &v), -EINVAL);
    assert_int_equal(lull_store_put_if(NULL, K("k"), "v", 1, 0, &v), -EINVAL);
    assert_int_equal(lull_store_delete(NULL, K("k")), -EINVAL);
    assert_int_equal(lull_store_delete_if(NULL, K("k"), 1), -EINVAL);
    assert_int_equal(lull_store_update(NULL, K("k"), publish_fn, NULL, &info), -EINVAL);
    assert_int_equal(lull_store_read(NULL, K("k"), buf, sizeof buf, &len, &v), -EINVAL);
    assert_int_equal(lull_store_foreach(NULL, nop_cb, NULL), -EINVAL);
    assert_int_equal(lull_store_count(NULL), 0);
    assert_int_equal(lull_store_check(NULL, NULL), -EINVAL);
    assert_int_equal(lull_store_destroy(NULL), -EINVAL);
    lull_read_lock();
    assert_null(lull_store_get(NULL, K("k")));
    lull_read_unlock();

    /* lull_store_get on bad input: NULL, and errno untouched */
    errno = 4242;
    lull_read_lock();
    assert_null(lull_store_get(s, NULL, 1));
    assert_null(lull_store_get(s, "k", 0));
    assert_null(lull_store_get(s, "k", 5000));
    lull_read_unlock();
    assert_int_equal(errno, 4242);

    /* NULL key, empty key, over-long key (default limit 1024) */
    expect_bad_key(s, NULL, 1);
    expect_bad_key(s, NULL, 0);
    expect_bad_key(s, "k", 0);
    char *longkey = malloc(2048);
    assert_non_null(longkey);
    memset(longkey, 'L', 2048);
    expect_bad_key(s, longkey, 1025);
    expect_bad_key(s, longkey, 2048);
    expect_bad_key(s, longkey, SIZE_MAX);
    /* exactly at the limit is fine */
    assert_int_equal(lull_store_put(s, longkey, 1024, "v", 1, &v), 0);
    assert_int_equal(lull_store_read(s, longkey, 1024, buf, sizeof buf, &len, NULL), 0);
    assert_int_equal(lull_store_delete(s, longkey, 1024), 0);

    /* other NULL pointers */
    assert_int_equal(lull_store_put(s, K("k"), NULL, 1, &v), -EINVAL);
    assert_int_equal(lull_store_put(s, K("new"), NULL, 5, &v), -EINVAL);
    assert_int_equal(lull_store_put_if(s, K("new"), NULL, 5, 0, &v), -EINVAL);
    assert_int_equal(lull_store_read(s, K("k"), NULL, 5, &len, NULL), -EINVAL);
    assert_int_equal(lull_store_update(s, K("k"), NULL, NULL, &info), -EINVAL);
    assert_int_equal(lull_store_foreach(s, NULL, NULL), -EINVAL);
    assert_int_equal(lull_buf_resize(NULL, 4), -EINVAL);
    assert_int_equal(lull_store_count(s), 1);
    assert_int_equal(lull_store_read(s, K("k"), buf, sizeof buf, &len, NULL), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "value", 5);
    assert_int_equal(lull_store_read(s, K("new"), buf, sizeof buf, &len, NULL), -ENOENT);

    /* value over the default limit (65536): -EFBIG, nothing published */
    char *big = calloc(1, 65537);
    assert_non_null(big);
    uint64_t vk = st_version(s, K("k"));
    assert_int_equal(lull_store_put(s, K("k"), big, 65537, &v), -EFBIG);
    assert_int_equal(lull_store_put(s, K("nk"), big, 65537, &v), -EFBIG);
    assert_int_equal(lull_store_put_if(s, K("k"), big, 65537, vk, &v), -EFBIG);
    assert_int_equal(lull_store_put_if(s, K("nk"), big, 65537, 0, &v), -EFBIG);
    assert_int_equal(st_version(s, K("k")), vk);
    assert_int_equal(st_version(s, K("nk")), 0);
    assert_int_equal(lull_store_count(s), 1);
    assert_int_equal(lull_store_put(s, K("nk"), big, 65536, &v), 0);     /* at the limit */
    assert_int_equal(lull_store_read(s, K("nk"), NULL, 0, &len, NULL), -ENOBUFS);
    assert_int_equal(len, 65536);
    assert_int_equal(lull_store_delete(s, K("nk")), 0);
    free(big);
    free(longkey);
    destroy(s);

    /* custom limits */
    s = mk(0, 8, 16, 0);
    expect_bad_key(s, "123456789", 9);
    assert_int_equal(lull_store_put(s, "12345678", 8, "v", 1, &v), 0);
    uint64_t v8 = v;
    assert_int_equal(lull_store_put(s, "12345678", 8, "0123456789abcdefX", 17, &v), -EFBIG);
    assert_int_equal(lull_store_put_if(s, "12345678", 8, "0123456789abcdefX", 17, v8, &v), -EFBIG);
    assert_int_equal(lull_store_put(s, "x", 1, "0123456789abcdefX", 17, &v), -EFBIG);
    assert_int_equal(lull_store_update(s, "12345678", 8, publish_fn, "0123456789abcdefX", &info),
                     -EFBIG);
    assert_int_equal(lull_store_update(s, "x", 1, publish_fn, "0123456789abcdefX", &info), -EFBIG);
    assert_int_equal(st_version(s, "12345678", 8), v8);
    assert_int_equal(lull_store_read(s, "12345678", 8, buf, sizeof buf, &len, NULL), 0);
    assert_int_equal(len, 1);
    assert_int_equal(lull_store_count(s), 1);
    assert_int_equal(lull_store_put(s, "12345678", 8, "0123456789abcdef", 16, &v), 0);
    destroy(s);
}

static void test_create_limits(void **state)
{
    (void)state;
    const size_t GiB = (size_t)1 << 30;
    struct lull_store_opts bad[] = {
        { 0, GiB + 1, 0, 0 },
        { 0, 0, GiB + 1, 0 },
        { 0, SIZE_MAX, 0, 0 },
        { 0, 0, SIZE_MAX, 0 },
        { 0, SIZE_MAX, SIZE_MAX, 0 },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        assert_null(lull_store_create(&bad[i]));
        assert_int_equal(errno, EINVAL);
    }
    /* 1 GiB exactly is a valid limit (nothing that big is allocated up front) */
    lull_store *s = mk(0, GiB, GiB, 0);
    st_put(s, "k", "v");
    destroy(s);
    /* an absurd max_keys: a store, or NULL with EINVAL/ENOMEM; never a crash */
    struct lull_store_opts huge = { SIZE_MAX, 0, 0, 0 };
    errno = 0;
    s = lull_store_create(&huge);
    if (s) {
        st_put(s, "k", "v");
        destroy(s);
    } else {
        assert_true(errno == EINVAL || errno == ENOMEM);
    }
    huge.max_keys = SIZE_MAX / 2;
    errno = 0;
    s = lull_store_create(&huge);
    if (s)
        destroy(s);
    else
        assert_true(errno == EINVAL || errno == ENOMEM);
}

/* -------------------------------------------------------------- versions */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void assert_unique(uint64_t *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_u64);
    for (size_t i = 1; i < n; i++)
        assert_true(v[i - 1] != v[i]);
}

static void test_versions(void **state)
{
    (void)state;
    lull_store *s = lull_store_create(NULL);
    assert_non_null(s);
    enum { NK = 10, ROUNDS = 30 };
    uint64_t last[NK] = { 0 };
    uint64_t *all = calloc(NK * ROUNDS, sizeof(uint64_t));
    assert_non_null(all);
    size_t n = 0;
    char key[16], val[32];
    for (int r = 0; r < ROUNDS; r++) {
        for (int k = 0; k < NK; k++) {
            snprintf(key, sizeof key, "key%d", k);
            snprintf(val, sizeof val, "r%d", r);
            uint64_t v = 0;
            struct lull_update_info info;
            switch ((r + k) % 3) {
            case 0:
                assert_int_equal(lull_store_put(s, key, strlen(key), val, strlen(val), &v), 0);
                break;
            case 1:
                assert_int_equal(lull_store_put_if(s, key, strlen(key), val, strlen(val),
                                                   last[k], &v), 0);
                break;
            default:
                assert_int_equal(lull_store_update(s, key, strlen(key), publish_fn, val, &info), 0);
                assert_int_equal(info.outcome, last[k] ? LULL_UPDATED : LULL_INSERTED);
                v = info.version;
                break;
            }
            assert_true(v > last[k]);                       /* greater than the key's previous */
            assert_int_equal(st_version(s, key, strlen(key)), v);
            last[k] = v;
            all[n++] = v;
        }
    }
    assert_unique(all, n);                                  /* unique across keys */
    free(all);
    destroy(s);
}

static void test_put_if_delete_if(void **state)
{
    (void)state;
    lull_store *s = lull_store_create(NULL);
    assert_non_null(s);
    uint64_t v1 = 0, v2 = 0, v = 0;
    char buf[16];
    size_t len;

    /* expected 0: only if absent */
    assert_int_equal(lull_store_put_if(s, K("k"), "one", 3, 0, &v1), 0);
    assert_true(v1 != 0);
    assert_int_equal(lull_store_put_if(s, K("k"), "xxx", 3, 0, &v), -ESTALE);
    assert_int_equal(lull_store_read(s, K("k"), buf, sizeof buf, &len, &v), 0);
    assert_memory_equal(buf, "one", 3);
    assert_int_equal(v, v1);
    /* current version: succeeds; old one: -ESTALE */
    assert_int_equal(lull_store_put_if(s, K("k"), "two", 3, v1, &v2), 0);
    assert_true(v2 > v1);
    assert_int_equal(lull_store_put_if(s, K("k"), "bad", 3, v1, &v), -ESTALE);
    assert_int_equal(lull_store_put_if(s, K("k"), "bad", 3, v2 + 1000, &v), -ESTALE);
    assert_int_equal(lull_store_read(s, K("k"), buf, sizeof buf, &len, &v), 0);
    assert_memory_equal(buf, "two", 3);
    assert_int_equal(v, v2);
    /* absent with expected != 0: -ESTALE, nothing inserted */
    assert_int_equal(lull_store_put_if(s, K("absent"), "x", 1, v2, &v), -ESTALE);
    assert_int_equal(lull_store_put_if(s, K("absent"), "x", 1, 1, &v), -ESTALE);
    assert_int_equal(st_version(s, K("absent")), 0);
    assert_int_equal(lull_store_count(s), 1);
    /* delete_if */
    assert_int_equal(lull_store_delete_if(s, K("absent"), v2), -ENOENT);
    assert_int_equal(lull_store_delete_if(s, K("absent"), 0), -ENOENT);
    assert_int_equal(lull_store_delete_if(s, K("k"), v1), -ESTALE);
    assert_int_equal(lull_store_delete_if(s, K("k"), 0), -ESTALE);
    assert_int_equal(st_version(s, K("k")), v2);
    assert_int_equal(lull_store_delete_if(s, K("k"), v2), 0);
    assert_int_equal(st_version(s, K("k")), 0);
    assert_int_equal(lull_store_delete_if(s, K("k"), v2), -ENOENT);
    assert_int_equal(lull_store_count(s), 0);
    destroy(s);
}

static void test_aba(void **state)
{
    (void)state;
    lull_store *s = lull_store_create(NULL);
    assert_non_null(s);
    uint64_t prev = 0;
    uint64_t *seen = calloc(3 * 100, sizeof(uint64_t));
    assert_non_null(seen);
    size_t nseen = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t v1 = 0, v2 = 0;
        struct lull_update_info info;
        /* (re-)insert by each writer in turn */
        switch (i % 3) {
        case 0: assert_int_equal(lull_store_put(s, K("k"), "a", 1, &v1), 0); break;
        case 1: assert_int_equal(lull_store_put_if(s, K("k"), "a", 1, 0, &v1), 0); break;
        default:
            assert_int_equal(lull_store_update(s, K("k"), publish_fn, "a", &info), 0);
            assert_int_equal(info.outcome, LULL_INSERTED);
            v1 = info.version;
        }
        assert_true(v1 > prev);
        seen[nseen++] = v1;
        if (i % 2)
            assert_int_equal(lull_store_delete(s, K("k")), 0);
        else
            assert_int_equal(lull_store_delete_if(s, K("k"), v1), 0);
        /* another key in between, so a per-store counter is not enough by luck */
        seen[nseen++] = st_put(s, "other", "o");
        assert_int_equal(lull_store_put(s, K("k"), "b", 1, &v2), 0);   /* re-insert */
        assert_true(v2 != v1);
        assert_true(v2 > v1);
        seen[nseen++] = v2;
        /* the old version cannot fool the conditional calls */
        assert_int_equal(lull_store_put_if(s, K("k"), "c", 1, v1, NULL), -ESTALE);
        assert_int_equal(lull_store_delete_if(s, K("k"), v1), -ESTALE);
        assert_int_equal(st_version(s, K("k")), v2);
        assert_int_equal(lull_store_delete(s, K("k")), 0);
        prev = v2;
    }
    assert_unique(seen, nseen);
    free(seen);
    destroy(s);
}

/* ABA across writer threads: a key written and deleted by a busy writer,
 * then re-inserted by another thread that has published little, must still
 * get a greater version. */
struct reins { lull_store *s; int how; uint64_t v; };

static void *reinsert_thread(void *p)
{
    struct reins *r = p;
    struct lull_update_info info;
    switch (r->how) {
    case 0: LT_CHECK_EQ(lull_store_put(r->s, "k", 1, "t", 1, &r->v), 0); break;
    case 1: LT_CHECK_EQ(lull_store_put_if(r->s, "k", 1, "t", 1, 0, &r->v), 0); break;
    default:
        LT_CHECK_EQ(lull_store_update(r->s, "k", 1, publish_fn, "t", &info), 0);
        LT_CHECK_EQ(info.outcome, LULL_INSERTED);
        r->v = info.version;
    }
    return NULL;
}

static void test_aba_threads(void **state)
{
    (void)state;
    lull_store *s = lull_store_create(NULL);
    assert_non_null(s);
    /* make this thread's writes run far ahead */
    for (int i = 0; i < 5000; i++)
        st_put(s, "busy", "b");
    for (int how = 0; how < 3; how++) {
        uint64_t v1 = st_put(s, "k", "main");
        assert_int_equal(lull_store_delete(s, K("k")), 0);
        struct reins r = { s, how, 0 };
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, reinsert_thread, &r), 0);
        assert_int_equal(pthread_join(t, NULL), 0);
        if (!(r.v > v1))
            fail_msg("re-insert by another thread got version %llu <= %llu (before delete)",
                     (unsigned long long)r.v, (unsigned long long)v1);
        assert_int_equal(lull_store_put_if(s, K("k"), "x", 1, v1, NULL), -ESTALE);
        assert_int_equal(lull_store_delete_if(s, K("k"), v1), -ESTALE);
        /* and a replace by the main thread is above the other thread's */
        uint64_t v3 = st_put(s, "k", "main again");
        assert_true(v3 > r.v);
        assert_int_equal(lull_store_delete(s, K("k")), 0);
    }
    destroy(s);
}

/* ---------------------------------------------------------------- update */

struct upd {
    int ret;                /* what fn returns */
    const char *set;        /* non-NULL: make next this string first */
    unsigned calls;
    bool had_cur;
    uint64_t cur_version;
};

static int upd_fn(const struct lull_snap *cur, struct lull_buf *next, void *arg)
{
    struct upd *a = arg;
    a->calls++;
    a->had_cur = cur != NULL;
    LT_CHECK(next != NULL);
    if (cur) {
        a->cur_version = cur->version;
        /* next is a private copy of cur's value */
        LT_CHECK_EQ(next->len, cur->value_len);
        if (next->len) {
            LT_CHECK(next->data != cur->value);
            LT_CHECK(memcmp(next->data, cur->value, next->len) == 0);
        }
    } else {
        LT_CHECK_EQ(next->len, 0);
    }
    if (a->set) {
        LT_CHECK_EQ(lull_buf_resize(next, strlen(a->set)), 0);
        memcpy(next->data, a->set, strlen(a->set));
    }
    return a->ret;
}

static void test_update_outcomes(void **state)
{
    (void)state;
    lull_store *s = lull_store_create(NULL);
    assert_non_null(s);
    struct lull_update_info info;
    char buf[32];
    size_t len;
    uint64_t v;

    /* insert */
    struct upd a = { LULL_PUBLISH, "first", 0, false, 0 };
    memset(&info, 0xff, sizeof info);
    assert_int_equal(lull_store_update(s, K("k"), upd_fn, &a, &info), 0);
    assert_int_equal(info.outcome, LULL_INSERTED);
    assert_int_equal(info.attempts, 1);
    assert_int_equal(a.calls, 1);
    assert_false(a.had_cur);
    assert_true(info.version != 0);
    assert_int_equal(lull_store_read(s, K("k"), buf, sizeof buf, &len, &v), 0);
    assert_int_equal(v, info.version);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "first", 5);
    uint64_t v1 = v;

    /* PUBLISH with bytes unchanged: still UPDATED, with a new version */
    a = (struct upd){ LULL_PUBLISH, NULL, 0, false, 0 };
    assert_int_equal(lull_store_update(s, K("k"), upd_fn, &a, &info), 0);
    assert_int_equal(info.outcome, LULL_UPDATED);
    assert_true(a.had_cur);
    assert_int_equal(a.cur_version, v1);
    assert_true(info.version > v1);
    assert_int_equal(st_version(s, K("k")), info.version);
    uint64_t v2 = info.version;
    /* same again with the very same bytes written */
    a = (struct upd){ LULL_PUBLISH, "first", 0, false, 0 };
    assert_int_equal(lull_store_update(s, K("k"), upd_fn, &a, &info), 0);
    assert_int_equal(info.outcome, LULL_UPDATED);
    assert_true(info.version > v2);
    v2 = info.version;

    /* KEEP on present: UNCHANGED, current version, nothing published */
    a = (struct upd){ LULL_KEEP, "ignored", 0, false, 0 };
    assert_int_equal(lull_store_update(s, K("k"), upd_fn, &a, &info), 0);
    assert_int_equal(info.outcome, LULL_UNCHANGED);
    assert_int_equal(info.version, v2);
    assert_int_equal(lull_store_read(s, K("k"), buf, sizeof buf, &len, &v), 0);
    assert_int_equal(v, v2);
    assert_memory_equal(buf, "first", 5);

    /* KEEP on absent: UNCHANGED, version 0, nothing inserted */
    a = (struct upd){ LULL_KEEP, "ignored", 0, false, 0 };
    assert_int_equal(lull_store_update(s, K("absent"), upd_fn, &a, &info), 0);
    assert_int_equal(info.outcome, LULL_UNCHANGED);
    assert_int_equal(info.version, 0);
    assert_int_equal(st_version(s, K("absent")), 0);

    /* REMOVE on absent: UNCHANGED */
    a = (struct upd){ LULL_REMOVE, NULL, 0, false, 0 };
    assert_int_equal(lull_store_update(s, K("absent"), upd_fn, &a, &info), 0);
    assert_int_equal(info.outcome, LULL_UNCHANGED);
    assert_int_equal(info.version, 0);
    assert_int_equal(lull_store_count(s), 1);

    /* PUBLISH an empty value on absent: INSERTED with length 0 */
    a = (struct upd){ LULL_PUBLISH, NULL, 0, false, 0 };
    assert_int_equal(lull_store_update(s, K("empty"), upd_fn, &a, &info), 0);
    assert_int_equal(info.outcome, LULL_INSERTED);
    assert_int_equal(lull_store_read(s, K("empty"), NULL, 0, &len, &v), 0);
    assert_int_equal(len, 0);
    assert_int_equal(v, info.version);
    assert_int_equal(lull_store_count(s), 2);

    /* REMOVE on present: REMOVED */
    a = (struct upd){ LULL_REMOVE, NULL, 0, false, 0 };
    assert_int_equal(lull_store_update(s, K("empty"), upd_fn, &a, &info), 0);
    assert_int_equal(info.outcome, LULL_REMOVED);
    assert_int_equal(st_version(s, K("empty")), 0);
    assert_int_equal(lull_store_count(s), 1);

    /* info may be NULL */
    a = (struct upd){ LULL_PUBLISH, "second", 0, false, 0 };
    assert_int_equal(lull_store_update(s, K("k"), upd_fn, &a, NULL), 0);
    assert_int_equal(lull_store_read(s, K("k"), buf, sizeof buf, &len, &v), 0);
    assert_memory_equal(buf, "second", 6);
    assert_true(v > v2);
    a = (struct upd){ LULL_REMOVE, NULL, 0, false, 0 };
    assert_int_equal(lull_store_update(s, K("nothing"), upd_fn, &a, NULL), 0);
    destroy(s);
}

static void test_update_abort(void **state)
{
    (void)state;
    lull_store *s = lull_store_create(NULL);
    assert_non_null(s);
    st_put(s, "k", "value");
    struct st_dump before, after;
    st_dump(s, &before);
    struct lull_update_info info;
    const int rets[] = { -EPERM, -EIO, -ENOENT, -1, INT_MIN };
    for (size_t i = 0; i < sizeof rets / sizeof rets[0]; i++) {
        /* fn's negative return is returned and nothing is published, even
         * though fn changed next first */
        struct upd a = { rets[i], "changed", 0, false, 0 };
        assert_int_equal(lull_store_update(s, K("k"), upd_fn, &a, &info), rets[i]);
        a = (struct upd){ rets[i], "changed", 0, false, 0 };
        assert_int_equal(lull_store_update(s, K("new"), upd_fn, &a, &info), rets[i]);
        a = (struct upd){ rets[i], NULL, 0, false, 0 };
        assert_int_equal(lull_store_update(s, K("k"), upd_fn, &a, NULL), rets[i]);
    }
    /* a return that is none of KEEP/PUBLISH/REMOVE/negative: -EINVAL */
    const int bad[] = { 3, 4, 42, INT_MAX };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct upd a = { bad[i], "changed", 0, false, 0 };
        assert_int_equal(lull_store_update(s, K("k"), upd_fn, &a, &info), -EINVAL);
        assert_int_equal(a.calls, 1);
        a = (struct upd){ bad[i], "changed", 0, false, 0 };
        assert_int_equal(lull_store_update(s, K("new"), upd_fn, &a, NULL), -EINVAL);
    }
    st_dump(s, &after);
    assert_true(st_dump_equal(&before, &after));
    st_dump_free(&before);
    st_dump_free(&after);
    destroy(s);
}

struct rsz { int phase; size_t max; };

static int resize_fn(const struct lull_snap *cur, struct lull_buf *next, void *arg)
{
    struct rsz *a = arg;
    LT_CHECK(cur != NULL);
    LT_CHECK_EQ(next->len, 6);
    LT_CHECK(memcmp(next->data, "abcdef", 6) == 0);
    /* shrink keeps the prefix */
    LT_CHECK_EQ(lull_buf_resize(next, 3), 0);
    LT_CHECK_EQ(next->len, 3);
    LT_CHECK(memcmp(next->data, "abc", 3) == 0);
    /* grow zero-fills (the dropped "def" must not come back) */
    LT_CHECK_EQ(lull_buf_resize(next, 10), 0);
    LT_CHECK_EQ(next->len, 10);
    LT_CHECK(memcmp(next->data, "abc\0\0\0\0\0\0\0", 10) == 0);
    /* past max_value_len: -EFBIG, buffer unchanged */
    void *d = next->data;
    LT_CHECK_EQ(lull_buf_resize(next, a->max + 1), -EFBIG);
    LT_CHECK_EQ(lull_buf_resize(next, SIZE_MAX), -EFBIG);
    LT_CHECK(next->data == d);
    LT_CHECK_EQ(next->len, 10);
    LT_CHECK(memcmp(next->data, "abc\0\0\0\0\0\0\0", 10) == 0);
    /* exactly max is fine, and the prefix survives the round trip */
    memcpy((char *)next->data + 3, "XY", 2);
    LT_CHECK_EQ(lull_buf_resize(next, a->max), 0);
    LT_CHECK_EQ(next->len, a->max);
    LT_CHECK(memcmp(next->data, "abcXY\0\0\0\0\0", 10) == 0);
    for (size_t i = 10; i < a->max; i++)
        LT_CHECK(((unsigned char *)next->data)[i] == 0);
    memset((char *)next->data + 10, 0x55, a->max - 10);
    LT_CHECK_EQ(lull_buf_resize(next, 12), 0);
    LT_CHECK(memcmp(next->data, "abcXY\0\0\0\0\0\x55\x55", 12) == 0);
    LT_CHECK_EQ(lull_buf_resize(NULL, 1), -EINVAL);
    a->phase = 1;
    return LULL_PUBLISH;
}

static int zero_fn(const struct lull_snap *cur, struct lull_buf *next, void *arg)
{
    (void)cur; (void)arg;
    LT_CHECK_EQ(lull_buf_resize(next, 0), 0);
    LT_CHECK_EQ(next->len, 0);
    return LULL_PUBLISH;
}

static int grow_from_empty_fn(const struct lull_snap *cur, struct lull_buf *next, void *arg)
{
    (void)arg;
    LT_CHECK(cur == NULL);
    LT_CHECK_EQ(next->len, 0);
    LT_CHECK_EQ(lull_buf_resize(next, 40), 0);
    for (size_t i = 0; i < 40; i++)
        LT_CHECK(((unsigned char *)next->data)[i] == 0);
    ((char *)next->data)[39] = 'z';
    return LULL_PUBLISH;
}

/* fn leaves next longer than max_value_len (by setting len itself):
 * -EFBIG, nothing published */
static int overlong_fn(const struct lull_snap *cur, struct lull_buf *next, void *arg)
{
    (void)cur;
    next->len = *(size_t *)arg + 1;
    return LULL_PUBLISH;
}

static void test_update_efbig(void **state)
{
    (void)state;
    lull_store *s = mk(0, 0, 16, 0);
    st_put(s, "k", "0123456789");
    struct st_dump before, after;
    st_dump(s, &before);
    size_t max = 16;
    struct lull_update_info info;
    int rc1 = lull_store_update(s, K("k"), overlong_fn, &max, &info);
    int rc2 = lull_store_update(s, K("new"), overlong_fn, &max, &info);
    st_dump(s, &after);
    int same = st_dump_equal(&before, &after);
    st_dump_free(&before);
    st_dump_free(&after);
    destroy(s);            /* first, so that a failure below leaks nothing */
    assert_true(same);
    assert_int_equal(rc1, -EFBIG);
    assert_int_equal(rc2, -EFBIG);
}

static void test_buf_resize(void **state)
{
    (void)state;
    lull_store *s = mk(0, 0, 64, 0);
    st_put(s, "k", "abcdef");
    struct rsz a = { 0, 64 };
    struct lull_update_info info;
    assert_int_equal(lull_store_update(s, K("k"), resize_fn, &a, &info), 0);
    assert_int_equal(a.phase, 1);
    assert_int_equal(info.outcome, LULL_UPDATED);
    char buf[64];
    size_t len;
    assert_int_equal(lull_store_read(s, K("k"), buf, sizeof buf, &len, NULL), 0);
    assert_int_equal(len, 12);
    assert_memory_equal(buf, "abcXY\0\0\0\0\0\x55\x55", 12);

    assert_int_equal(lull_store_update(s, K("k"), zero_fn, NULL, &info), 0);
    assert_int_equal(lull_store_read(s, K("k"), buf, sizeof buf, &len, NULL), 0);
    assert_int_equal(len, 0);

    assert_int_equal(lull_store_update(s, K("g"), grow_from_empty_fn, NULL, &info), 0);
    assert_int_equal(info.outcome, LULL_INSERTED);
    assert_int_equal(lull_store_read(s, K("g"), buf, sizeof buf, &len, NULL), 0);
    assert_int_equal(len, 40);
    assert_int_equal(buf[39], 'z');
    assert_int_equal(buf[0], 0);
    destroy(s);

    /* the default limit (65536) applies to resize too */
    s = lull_store_create(NULL);
    assert_non_null(s);
    st_put(s, "k", "abcdef");
    a = (struct rsz){ 0, 65536 };
    assert_int_equal(lull_store_update(s, K("k"), resize_fn, &a, &info), 0);
    assert_int_equal(a.phase, 1);
    destroy(s);
}

/* fn writes the same key on its first run: the update must run again on the
 * newer snapshot and publish from it (no lost update). */
struct interl { lull_store *s; unsigned calls; uint64_t put_version; uint64_t seen[4]; };

static int interloper_fn(const struct lull_snap *cur, struct lull_buf *next, void *arg)
{
    struct interl *a = arg;
    LT_CHECK(cur != NULL);
    if (a->calls < 4)
        a->seen[a->calls] = cur->version;
    if (a->calls++ == 0)
        LT_CHECK_EQ(lull_store_put(a->s, "k", 1, "interloper", 10, &a->put_version), 0);
    size_t n = next->len;
    if (lull_buf_resize(next, n + 1))
        return -ENOMEM;
    ((char *)next->data)[n] = '+';
    return LULL_PUBLISH;
}

static void test_update_retry(void **state)
{
    (void)state;
    lull_store *s = lull_store_create(NULL);
    assert_non_null(s);
    uint64_t v0 = st_put(s, "k", "base");
    struct interl a = { s, 0, 0, { 0 } };
    struct lull_update_info info;
    assert_int_equal(lull_store_update(s, K("k"), interloper_fn, &a, &info), 0);
    assert_int_equal(a.calls, 2);
    assert_int_equal(info.attempts, 2);
    assert_int_equal(info.outcome, LULL_UPDATED);
    assert_int_equal(a.seen[0], v0);
    assert_int_equal(a.seen[1], a.put_version);          /* ran again on the newer snapshot */
    assert_true(info.version > a.put_version);
    char buf[32];
    size_t len;
    uint64_t v;
    assert_int_equal(lull_store_read(s, K("k"), buf, sizeof buf, &len, &v), 0);
    assert_int_equal(v, info.version);
    assert_int_equal(len, 11);
    assert_memory_equal(buf, "interloper+", 11);
    destroy(s);
}

/* fn always loses: it writes the key itself every time, so the publish it
 * asks for always fails.  With a timeout the update gives up, -ETIMEDOUT. */
struct loser { lull_store *s; unsigned calls; uint64_t last_put; char last_val[32]; };

static int loser_fn(const struct lull_snap *cur, struct lull_buf *next, void *arg)
{
    struct loser *a = arg;
    (void)cur;
    a->calls++;
    snprintf(a->last_val, sizeof a->last_val, "put-%u", a->calls);
    LT_CHECK_EQ(lull_store_put(a->s, "k", 1, a->last_val, strlen(a->last_val), &a->last_put), 0);
    if (lull_buf_resize(next, 3))
        return -ENOMEM;
    memcpy(next->data, "UPD", 3);
    return LULL_PUBLISH;
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "watchdog: an update with update_timeout_ns never returned\n";
    if (write(2, msg, sizeof msg - 1) < 0) {
        /* nothing more to do */
    }
    _exit(1);
}

static void test_update_timeout(void **state)
{
    (void)state;
    signal(SIGALRM, on_alarm);
    alarm(60);
    const uint64_t tmo = 2000000;   /* 2 ms */
    lull_store *s = mk(0, 0, 0, tmo);
    st_put(s, "k", "base");
    struct loser a = { s, 0, 0, "" };
    struct lull_update_info info;
    uint64_t t0 = lull__now_ns();
    int rc = lull_store_update(s, K("k"), loser_fn, &a, &info);
    uint64_t dt = lull__now_ns() - t0;
    fprintf(stderr, "update_timeout: rc %d after %u runs of fn, %.3f ms\n", rc, a.calls, dt / 1e6);
    assert_int_equal(rc, -ETIMEDOUT);
    assert_true(a.calls >= 1);
    assert_true(dt >= tmo);
    assert_true(dt < 10ull * 1000000000ull);
    /* nothing of its own published: the last value is the interloper's */
    char buf[32];
    size_t len;
    uint64_t v;
    assert_int_equal(lull_store_read(s, K("k"), buf, sizeof buf, &len, &v), 0);
    assert_int_equal(v, a.last_put);
    assert_int_equal(len, strlen(a.last_val));
    assert_memory_equal(buf, a.last_val, len);
    assert_int_equal(lull_store_count(s), 1);
    /* an update of an absent key that always loses the insert */
    a = (struct loser){ s, 0, 0, "" };
    assert_int_equal(lull_store_delete(s, K("k")), 0);
    rc = lull_store_update(s, K("k"), loser_fn, &a, NULL);
    assert_int_equal(rc, -ETIMEDOUT);
    assert_int_equal(st_version(s, K("k")), a.last_put);
    /* the store still serves a plain update */
    struct upd u = { LULL_PUBLISH, "ok", 0, false, 0 };
    assert_int_equal(lull_store_update(s, K("k"), upd_fn, &u, &info), 0);
    assert_int_equal(info.outcome, LULL_UPDATED);
    assert_int_equal(info.attempts, 1);
    alarm(0);
    destroy(s);
}

/* -------------------------------------------------------------- max_keys */

static void test_max_keys(void **state)
{
    (void)state;
    lull_store *s = mk(4, 0, 0, 0);
    struct lull_update_info info;
    char key[16];
    for (int i = 0; i < 4; i++) {
        snprintf(key, sizeof key, "k%d", i);
        st_put(s, key, "v");
    }
    assert_int_equal(lull_store_count(s), 4);
    struct st_dump before, after;
    st_dump(s, &before);
    /* every kind of insert past the limit: -ENOSPC, nothing published */
    assert_int_equal(lull_store_put(s, K("k4"), "v", 1, NULL), -ENOSPC);
    assert_int_equal(lull_store_put_if(s, K("k4"), "v", 1, 0, NULL), -ENOSPC);
    struct upd a = { LULL_PUBLISH, "v", 0, false, 0 };
    assert_int_equal(lull_store_update(s, K("k4"), upd_fn, &a, &info), -ENOSPC);
    /* an update that would not insert is fine at the limit */
    a = (struct upd){ LULL_KEEP, NULL, 0, false, 0 };
    assert_int_equal(lull_store_update(s, K("k4"), upd_fn, &a, &info), 0);
    assert_int_equal(info.outcome, LULL_UNCHANGED);
    a = (struct upd){ LULL_REMOVE, NULL, 0, false, 0 };
    assert_int_equal(lull_store_update(s, K("k4"), upd_fn, &a, &info), 0);
    assert_int_equal(info.outcome, LULL_UNCHANGED);
    st_dump(s, &after);
    assert_true(st_dump_equal(&before, &after));
    st_dump_free(&before);
    st_dump_free(&after);
    lull_read_lock();
    assert_null(lull_store_get(s, K("k4")));
    lull_read_unlock();
    /* replacing an existing key at the limit still works, by every writer */
    uint64_t v = st_put(s, "k0", "new");
    assert_int_equal(lull_store_put_if(s, K("k0"), "newer", 5, v, &v), 0);
    a = (struct upd){ LULL_PUBLISH, "newest", 0, false, 0 };
    assert_int_equal(lull_store_update(s, K("k0"), upd_fn, &a, &info), 0);
    assert_int_equal(info.outcome, LULL_UPDATED);
    assert_int_equal(lull_store_count(s), 4);
    /* after a delete, one insert fits again, then the limit holds again */
    assert_int_equal(lull_store_delete(s, K("k1")), 0);
    assert_int_equal(lull_store_count(s), 3);
    a = (struct upd){ LULL_PUBLISH, "v", 0, false, 0 };
    assert_int_equal(lull_store_update(s, K("k4"), upd_fn, &a, &info), 0);
    assert_int_equal(info.outcome, LULL_INSERTED);
    assert_int_equal(lull_store_put(s, K("k5"), "v", 1, NULL), -ENOSPC);
    assert_int_equal(lull_store_delete_if(s, K("k4"), info.version), 0);
    assert_int_equal(lull_store_put_if(s, K("k5"), "v", 1, 0, NULL), 0);
    assert_int_equal(lull_store_put(s, K("k6"), "v", 1, NULL), -ENOSPC);
    a = (struct upd){ LULL_REMOVE, NULL, 0, false, 0 };
    assert_int_equal(lull_store_update(s, K("k5"), upd_fn, &a, &info), 0);
    assert_int_equal(info.outcome, LULL_REMOVED);
    assert_int_equal(lull_store_put(s, K("k6"), "v", 1, NULL), 0);
    assert_int_equal(lull_store_count(s), 4);
    destroy(s);

    /* max_keys 1 */
    s = mk(1, 0, 0, 0);
    st_put(s, "a", "1");
    assert_int_equal(lull_store_put(s, K("b"), "2", 1, NULL), -ENOSPC);
    st_put(s, "a", "3");
    assert_int_equal(lull_store_delete(s, K("a")), 0);
    st_put(s, "b", "2");
    assert_int_equal(lull_store_count(s), 1);
    destroy(s);
}

/* --------------------------------------------------------- foreach/count */

struct walk {
    int visits[200];
    int n;
    int stop_at;     /* return `ret` at this visit (1-based); 0: never */
    int ret;
    lull_store *s;   /* non-NULL: insert new keys while walking */
};

static int walk_cb(const struct lull_snap *sn, void *arg)
{
    struct walk *w = arg;
    LT_CHECK(lull_read_ongoing());                 /* fn runs inside a section */
    char key[32];
    LT_CHECK(sn->key_len < sizeof key);
    memcpy(key, sn->key, sn->key_len);
    key[sn->key_len] = 0;
    int idx;
    bool original = false;
    if (sscanf(key, "key-%d", &idx) == 1) {
        original = true;
        LT_CHECK(idx >= 0 && idx < 200);
        char val[32];
        snprintf(val, sizeof val, "val-%d", idx);
        LT_CHECK_EQ(sn->value_len, strlen(val));
        LT_CHECK(memcmp(sn->value, val, sn->value_len) == 0);
        w->visits[idx]++;
    } else {
        LT_CHECK(strncmp(key, "new-", 4) == 0);
    }
    w->n++;
    if (w->s && original) {
        for (int i = 0; i < 5; i++) {
            snprintf(key, sizeof key, "new-%d-%d", w->n, i);
            LT_CHECK_EQ(lull_store_put(w->s, key, strlen(key), "n", 1, NULL), 0);
        }
    }
    if (w->stop_at && w->n == w->stop_at)
        return w->ret;
    return 0;
}

static void test_foreach_count(void **state)
{
    (void)state;
    lull_store *s = lull_store_create(NULL);
    assert_non_null(s);
    static struct walk w;
    memset(&w, 0, sizeof w);
    assert_int_equal(lull_store_foreach(s, walk_cb, &w), 0);     /* empty */
    assert_int_equal(w.n, 0);
    char key[32], val[32];
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        snprintf(val, sizeof val, "val-%d", i);
        st_put(s, key, val);
        assert_int_equal(lull_store_count(s), i + 1);
    }
    /* replacing does not change the count */
    st_put(s, "key-7", "val-7");
    assert_int_equal(lull_store_count(s), 200);
    memset(&w, 0, sizeof w);
    assert_int_equal(lull_store_foreach(s, walk_cb, &w), 0);
    assert_int_equal(w.n, 200);
    for (int i = 0; i < 200; i++)
        assert_int_equal(w.visits[i], 1);
    assert_false(lull_read_ongoing());
    /* a non-zero return stops the walk and is returned */
    memset(&w, 0, sizeof w);
    w.stop_at = 10;
    w.ret = 7;
    assert_int_equal(lull_store_foreach(s, walk_cb, &w), 7);
    assert_int_equal(w.n, 10);
    memset(&w, 0, sizeof w);
    w.stop_at = 1;
    w.ret = -5;
    assert_int_equal(lull_store_foreach(s, walk_cb, &w), -5);
    assert_int_equal(w.n, 1);
    assert_false(lull_read_ongoing());
    /* fn may write the store; every key present throughout is visited once */
    memset(&w, 0, sizeof w);
    w.s = s;
    assert_int_equal(lull_store_foreach(s, walk_cb, &w), 0);
    for (int i = 0; i < 200; i++)
        assert_int_equal(w.visits[i], 1);
    size_t n = lull_store_count(s);
    assert_true(n >= 200 + 5 * 200);
    struct st_dump d;
    st_dump(s, &d);
    assert_int_equal(d.n, n);
    st_dump_free(&d);
    /* count after deletes */
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        assert_int_equal(lull_store_delete(s, key, strlen(key)), 0);
    }
    assert_int_equal(lull_store_count(s), n - 100);
    /* foreach inside the caller's own section is fine */
    lull_read_lock();
    memset(&w, 0, sizeof w);
    assert_int_equal(lull_store_foreach(s, walk_cb, &w), 0);
    assert_true(lull_read_ongoing());
    lull_read_unlock();
    for (int i = 0; i < 200; i++)
        assert_int_equal(w.visits[i], i < 100 ? 0 : 1);
    destroy(s);
}

/* -------------------------------------------------------------- sections */

static void fill(char *v, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        v[i] = (char)(seed * 131 + i * 7 + 1);
}

static void test_snapshot_immutable(void **state)
{
    (void)state;
    lull_store *s = lull_store_create(NULL);
    assert_non_null(s);
    enum { L = 96 };
    char val[L], copy[L];
    fill(val, L, 0);
    uint64_t v0 = 0;
    assert_int_equal(lull_store_put(s, K("k"), val, L, &v0), 0);

    lull_read_lock();
    const struct lull_snap *sn = lull_store_get(s, K("k"));
    assert_non_null(sn);
    const void *kp = sn->key, *vp = sn->value;
    memcpy(copy, sn->value, L);
    /* many publishes of the same size (more than one retire batch), by every
     * writer, while the snapshot is held */
    for (unsigned i = 1; i <= 3 * LULL_RETIRE_BATCH; i++) {
        fill(val, L, i);
        uint64_t cur = st_version(s, K("k"));
        switch (i % 3) {
        case 0: assert_int_equal(lull_store_put(s, K("k"), val, L, NULL), 0); break;
        case 1: assert_int_equal(lull_store_put_if(s, K("k"), val, L, cur, NULL), 0); break;
        default: {
            struct lull_update_info info;
            assert_int_equal(lull_store_update(s, K("k"), zero_fn, NULL, &info), 0);
            assert_int_equal(lull_store_put(s, K("k"), val, L, NULL), 0);
        }
        }
        /* churn other keys too, so freed memory would be reused */
        assert_int_equal(lull_store_put(s, K("other"), val, L, NULL), 0);
        assert_int_equal(lull_store_delete(s, K("other")), 0);
        assert_int_equal(sn->version, v0);
        assert_int_equal(sn->value_len, L);
        assert_int_equal(sn->key_len, 1);
        assert_ptr_equal(sn->key, kp);
        assert_ptr_equal(sn->value, vp);
        assert_memory_equal(sn->key, "k", 1);
        assert_memory_equal(sn->value, copy, L);
    }
    /* the current snapshot is the new one */
    const struct lull_snap *sn2 = lull_store_get(s, K("k"));
    assert_non_null(sn2);
    assert_true(sn2->version > v0);
    assert_memory_equal(sn2->value, val, L);
    /* a delete does not disturb either */
    char copy2[L];
    memcpy(copy2, sn2->value, L);
    assert_int_equal(lull_store_delete(s, K("k")), 0);
    assert_null(lull_store_get(s, K("k")));
    for (unsigned i = 0; i < 2 * LULL_RETIRE_BATCH; i++) {
        fill(val, L, 1000 + i);
        assert_int_equal(lull_store_put(s, K("k"), val, L, NULL), 0);
    }
    assert_memory_equal(sn->value, copy, L);
    assert_memory_equal(sn2->value, copy2, L);
    lull_read_unlock();
    destroy(s);
}

static void test_nested_sections(void **state)
{
    (void)state;
    lull_store *s = lull_store_create(NULL);
    assert_non_null(s);
    enum { L = 64 };
    char val[L], copy[L];
    fill(val, L, 0);
    assert_int_equal(lull_store_put(s, K("k"), val, L, NULL), 0);

    assert_false(lull_read_ongoing());
    lull_read_lock();
    assert_true(lull_read_ongoing());
    lull_read_lock();
    lull_read_lock();
    assert_true(lull_read_ongoing());
    const struct lull_snap *sn = lull_store_get(s, K("k"));
    assert_non_null(sn);
    memcpy(copy, sn->value, L);
    lull_read_unlock();
    lull_read_unlock();
    /* only the outermost unlock ends the section: sn stays valid */
    assert_true(lull_read_ongoing());
    for (unsigned i = 1; i <= 3 * LULL_RETIRE_BATCH; i++) {
        fill(val, L, i);
        assert_int_equal(lull_store_put(s, K("k"), val, L, NULL), 0);
    }
    assert_memory_equal(sn->value, copy, L);
    assert_int_equal(lull_store_destroy(s), -EDEADLK);   /* still inside */
    assert_int_equal(lull_barrier(), -EDEADLK);
    assert_int_equal(lull_synchronize(), -EDEADLK);
    lull_read_unlock();
    assert_false(lull_read_ongoing());
    assert_int_equal(lull_synchronize(), 0);
    assert_int_equal(lull_barrier(), 0);
    destroy(s);
}

static void test_deadlock_in_section(void **state)
{
    (void)state;
    lull_store *s = lull_store_create(NULL);
    assert_non_null(s);
    st_put(s, "k", "v");
    lull_read_lock();
    const struct lull_snap *sn = lull_store_get(s, K("k"));
    assert_non_null(sn);
    assert_int_equal(lull_store_destroy(s), -EDEADLK);   /* nothing freed */
    assert_int_equal(lull_barrier(), -EDEADLK);
    assert_int_equal(lull_synchronize(), -EDEADLK);
    assert_memory_equal(sn->value, "v", 1);
    lull_read_unlock();
    /* the store is intact and usable */
    assert_int_equal(lull_store_check(s, stderr), 0);
    st_put(s, "k2", "v2");
    char buf[4];
    size_t len;
    assert_int_equal(lull_store_read(s, K("k"), buf, sizeof buf, &len, NULL), 0);
    assert_int_equal(lull_store_count(s), 2);
    assert_int_equal(lull_store_destroy(s), 0);
}

/* ------------------------------------------------- random vs. a model */

enum { MK = 16, MVAL = 24 };
struct model {
    bool present[MK];
    unsigned char val[MK][MVAL];
    size_t len[MK];
    uint64_t ver[MK];
    uint64_t maxver[MK];      /* the greatest version the key ever had */
    size_t count;
    size_t max_keys;
};

struct mupd { int mode; unsigned char byte; const struct model *m; int k; };

static int model_fn(const struct lull_snap *cur, struct lull_buf *next, void *arg)
{
    struct mupd *a = arg;
    const struct model *m = a->m;
    /* cur must be what the model says */
    LT_CHECK_EQ(cur != NULL, m->present[a->k]);
    if (cur) {
        LT_CHECK_EQ(cur->version, m->ver[a->k]);
        LT_CHECK_EQ(cur->value_len, m->len[a->k]);
    }
    switch (a->mode) {
    case 0: {   /* append a byte */
        size_t n = next->len;
        if (n >= MVAL) {
            LT_CHECK_EQ(lull_buf_resize(next, 1), 0);
            n = 0;
        } else {
            LT_CHECK_EQ(lull_buf_resize(next, n + 1), 0);
        }
        ((unsigned char *)next->data)[n] = a->byte;
        return LULL_PUBLISH;
    }
    case 1: return LULL_KEEP;
    case 2: return LULL_REMOVE;
    default: return -EIO;
    }
}

static void model_verify(lull_store *s, const struct model *m)
{
    unsigned char buf[MVAL];
    for (int k = 0; k < MK; k++) {
        char key[8];
        snprintf(key, sizeof key, "m%d", k);
        size_t len = 0;
        uint64_t v = 0;
        int rc = lull_store_read(s, key, strlen(key), buf, sizeof buf, &len, &v);
        if (m->present[k]) {
            assert_int_equal(rc, 0);
            assert_int_equal(len, m->len[k]);
            assert_int_equal(v, m->ver[k]);
            if (len)
                assert_memory_equal(buf, m->val[k], len);
        } else {
            assert_int_equal(rc, -ENOENT);
        }
    }
    assert_int_equal(lull_store_count(s), m->count);
    assert_int_equal(lull_store_check(s, stderr), 0);
}

static void model_publish(struct model *m, int k, const void *val, size_t len, uint64_t v,
                          uint64_t *vers, size_t *nvers)
{
    assert_true(v > m->maxver[k]);
    if (!m->present[k])
        m->count++;
    m->present[k] = true;
    memcpy(m->val[k], val, len);
    m->len[k] = len;
    m->ver[k] = v;
    m->maxver[k] = v;
    vers[(*nvers)++] = v;
}

static void model_remove(struct model *m, int k)
{
    m->present[k] = false;
    m->count--;
}

static void run_model(size_t max_keys, uint64_t seed, int nops)
{
    lull_store *s = mk(max_keys, 0, 0, 0);
    static struct model m;
    memset(&m, 0, sizeof m);
    m.max_keys = max_keys;
    uint64_t *vers = calloc((size_t)nops, sizeof(uint64_t));
    assert_non_null(vers);
    size_t nvers = 0;
    for (int op = 0; op < nops; op++) {
        int k = (int)(lt_rand(&seed) % MK);
        char key[8];
        snprintf(key, sizeof key, "m%d", k);
        size_t kl = strlen(key);
        unsigned char val[MVAL];
        size_t len = lt_rand(&seed) % (MVAL + 1);
        for (size_t i = 0; i < len; i++)
            val[i] = (unsigned char)lt_rand(&seed);
        bool full = max_keys && m.count >= max_keys && !m.present[k];
        uint64_t v = 0;
        int rc;
        switch (lt_rand(&seed) % 6) {
        case 0:
            rc = lull_store_put(s, key, kl, val, len, &v);
            if (full) {
                assert_int_equal(rc, -ENOSPC);
            } else {
                assert_int_equal(rc, 0);
                model_publish(&m, k, val, len, v, vers, &nvers);
            }
            break;
        case 1: {
            uint64_t exp;
            switch (lt_rand(&seed) % 3) {
            case 0: exp = m.present[k] ? m.ver[k] : 0; break;   /* right */
            case 1: exp = 0; break;
            default: exp = m.maxver[k] ? m.maxver[k] - 1 : 1;   /* old or bogus */
            }
            bool ok = m.present[k] ? exp == m.ver[k] : exp == 0;
            rc = lull_store_put_if(s, key, kl, val, len, exp, &v);
            if (!ok) {
                assert_int_equal(rc, -ESTALE);
            } else if (full) {
                assert_int_equal(rc, -ENOSPC);
            } else {
                assert_int_equal(rc, 0);
                model_publish(&m, k, val, len, v, vers, &nvers);
            }
            break;
        }
        case 2:
            rc = lull_store_delete(s, key, kl);
            if (m.present[k]) {
                assert_int_equal(rc, 0);
                model_remove(&m, k);
            } else {
                assert_int_equal(rc, -ENOENT);
            }
            break;
        case 3: {
            uint64_t exp = (lt_rand(&seed) & 1) ? m.ver[k] : m.maxver[k] + 1;
            rc = lull_store_delete_if(s, key, kl, exp);
            if (!m.present[k]) {
                assert_int_equal(rc, -ENOENT);
            } else if (exp != m.ver[k]) {
                assert_int_equal(rc, -ESTALE);
            } else {
                assert_int_equal(rc, 0);
                model_remove(&m, k);
            }
            break;
        }
        case 4: {
            struct mupd a = { (int)(lt_rand(&seed) % 4), (unsigned char)lt_rand(&seed), &m, k };
            struct lull_update_info info;
            rc = lull_store_update(s, key, kl, model_fn, &a, &info);
            if (a.mode == 3) {
                assert_int_equal(rc, -EIO);
            } else if (a.mode == 0 && full) {
                assert_int_equal(rc, -ENOSPC);
            } else {
                assert_int_equal(rc, 0);
                assert_int_equal(info.attempts, 1);
                if (a.mode == 0) {
                    unsigned char nv[MVAL];
                    size_t nl = m.present[k] ? m.len[k] : 0;
                    if (nl >= MVAL)
                        nl = 0;
                    else if (nl)
                        memcpy(nv, m.val[k], nl);
                    nv[nl++] = a.byte;
                    assert_int_equal(info.outcome, m.present[k] ? LULL_UPDATED : LULL_INSERTED);
                    model_publish(&m, k, nv, nl, info.version, vers, &nvers);
                } else if (a.mode == 1 || !m.present[k]) {
                    assert_int_equal(info.outcome, LULL_UNCHANGED);
                    assert_int_equal(info.version, m.present[k] ? m.ver[k] : 0);
                } else {
                    assert_int_equal(info.outcome, LULL_REMOVED);
                    model_remove(&m, k);
                }
            }
            break;
        }
        default: {
            lull_read_lock();
            const struct lull_snap *sn = lull_store_get(s, key, kl);
            assert_int_equal(sn != NULL, m.present[k]);
            if (sn) {
                assert_int_equal(sn->version, m.ver[k]);
                assert_int_equal(sn->value_len, m.len[k]);
                assert_int_equal(sn->key_len, kl);
                assert_memory_equal(sn->key, key, kl);
                if (sn->value_len)
                    assert_memory_equal(sn->value, m.val[k], m.len[k]);
            }
            lull_read_unlock();
        }
        }
        model_verify(s, &m);
    }
    assert_unique(vers, nvers);
    free(vers);
    destroy(s);
}

static void test_random_model(void **state)
{
    (void)state;
    uint64_t seed = lt_seed(0x5eed5708e);
    run_model(0, seed, 4000);
    run_model(10, seed + 1, 4000);
    run_model(1, seed + 2, 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_eq),
        cmocka_unit_test(test_basics),
        cmocka_unit_test(test_read_enobufs),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_create_limits),
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_put_if_delete_if),
        cmocka_unit_test(test_aba),
        cmocka_unit_test(test_aba_threads),
        cmocka_unit_test(test_update_outcomes),
        cmocka_unit_test(test_update_abort),
        cmocka_unit_test(test_update_efbig),
        cmocka_unit_test(test_buf_resize),
        cmocka_unit_test(test_update_retry),
        cmocka_unit_test(test_update_timeout),
        cmocka_unit_test(test_max_keys),
        cmocka_unit_test(test_foreach_count),
        cmocka_unit_test(test_snapshot_immutable),
        cmocka_unit_test(test_nested_sections),
        cmocka_unit_test(test_deadlock_in_section),
        cmocka_unit_test(test_random_model),
    };
    if (getenv("LT_TEST"))      /* run only the tests matching this pattern */
        cmocka_set_test_filter(getenv("LT_TEST"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
