/* tests/common/test_common.c - the common rules: error names, read-side
 * sections (nesting, lull_read_ongoing), and the calls that must refuse to
 * wait inside a section (-EDEADLK). */
#include "testutil.h"

#include <pthread.h>
#include <semaphore.h>
#include <string.h>

static void test_strerror(void **state)
{
    (void)state;
    const int codes[] = { EINVAL, ENOMEM, ENOENT, ENOBUFS, ENOSPC, EFBIG, ESTALE, ETIMEDOUT,
                          EEXIST, EAGAIN, EINPROGRESS, EDEADLK, ESHUTDOWN };
    const size_t n = sizeof codes / sizeof codes[0];
    const char *unknown = lull_strerror(-123456);
    assert_non_null(unknown);
    for (size_t i = 0; i < n; i++) {
        const char *neg = lull_strerror(-codes[i]);
        const char *pos = lull_strerror(codes[i]);
        assert_non_null(neg);
        assert_non_null(pos);
        assert_true(strlen(neg) > 0);
        if (strcmp(neg, unknown) == 0 || strstr(neg, "unknown"))
            fail_msg("lull_strerror(-%d) is \"%s\"", codes[i], neg);
        assert_string_equal(neg, pos);          /* the sign does not matter */
        for (size_t j = 0; j < i; j++)          /* each code its own text */
            if (strcmp(neg, lull_strerror(-codes[j])) == 0)
                fail_msg("codes %d and %d share the text \"%s\"", codes[i], codes[j], neg);
    }
    assert_non_null(lull_strerror(0));
    assert_true(strcmp(lull_strerror(0), unknown) != 0);
    assert_non_null(lull_strerror(INT32_MIN));   /* no overflow trouble */
    assert_non_null(lull_strerror(99999));
}

static void test_sections_nest(void **state)
{
    (void)state;
    assert_false(lull_read_ongoing());
    for (int depth = 1; depth <= 5; depth++) {
        for (int i = 0; i < depth; i++) {
            lull_read_lock();
            assert_true(lull_read_ongoing());
        }
        for (int i = 0; i < depth; i++) {
            assert_true(lull_read_ongoing());
            assert_int_equal(lull_synchronize(), -EDEADLK);
            assert_int_equal(lull_barrier(), -EDEADLK);
            lull_read_unlock();
        }
        assert_false(lull_read_ongoing());
    }
    assert_int_equal(lull_synchronize(), 0);
    assert_int_equal(lull_barrier(), 0);
    assert_false(lull_read_ongoing());
}

static void test_destroy_in_section(void **state)
{
    (void)state;
    lull_store *s = lull_store_create(NULL);
    assert_non_null(s);
    assert_int_equal(lull_store_put(s, "k", 1, "v", 1, NULL), 0);
    lull_read_lock();
    lull_read_lock();
    assert_int_equal(lull_store_destroy(s), -EDEADLK);
    lull_read_unlock();
    assert_int_equal(lull_store_destroy(s), -EDEADLK);   /* still in the outer one */
    const struct lull_snap *sn = lull_store_get(s, "k", 1);
    assert_non_null(sn);
    assert_memory_equal(sn->value, "v", 1);
    lull_read_unlock();
    assert_int_equal(lull_store_destroy(s), 0);
}

/* A fresh thread's first call may be any function: here lull_read_ongoing
 * and lull_synchronize / lull_barrier before anything else. */
static void *first_calls(void *p)
{
    int which = *(int *)p;
    switch (which) {
    case 0: LT_CHECK(!lull_read_ongoing()); break;
    case 1: LT_CHECK_EQ(lull_synchronize(), 0); break;
    case 2: LT_CHECK_EQ(lull_barrier(), 0); break;
    default:
        lull_read_lock();
        LT_CHECK(lull_read_ongoing());
        lull_read_unlock();
    }
    LT_CHECK(!lull_read_ongoing());
    return NULL;
}

static void test_first_call_any(void **state)
{
    (void)state;
    int which[4] = { 0, 1, 2, 3 };
    lt_run_threads(4, first_calls, which, sizeof which[0]);
    assert_int_equal(lull_synchronize(), 0);
    assert_int_equal(lull_barrier(), 0);
}

/* lull_flush: what a quiet thread retired is freed without its exiting or
 * waiting.  The thread retires fewer than LULL_RETIRE_BATCH objects (so
 * nothing is queued by itself), flushes and stays alive; another thread's
 * barrier must then find them run. */
static long flushed_ran;
static sem_t flush_done, flush_exit;

static void count_fn(struct lull__deferred *d)
{
    __atomic_fetch_add(&flushed_ran, 1, __ATOMIC_RELAXED);
    free(d);
}

static void *quiet_thread(void *arg)
{
    int n = *(int *)arg;
    for (int i = 0; i < n; i++) {
        struct lull__deferred *d = calloc(1, sizeof *d);
        assert_non_null(d);
        lull__defer(d, count_fn);
    }
    lull_read_lock();
    lull_flush();                       /* allowed inside a section */
    lull_read_unlock();
    sem_post(&flush_done);
    sem_wait(&flush_exit);              /* alive (and its batch not exit-flushed) */
    return NULL;
}

static void test_flush(void **state)
{
    (void)state;
    int n = LULL_RETIRE_BATCH / 2;
    pthread_t t;
    sem_init(&flush_done, 0, 0);
    sem_init(&flush_exit, 0, 0);
    lull_flush();                       /* no-op on a thread that never called lull */
    assert_int_equal(lull__rcu_start(), 0);
    assert_int_equal(pthread_create(&t, NULL, quiet_thread, &n), 0);
    sem_wait(&flush_done);
    assert_int_equal(lull_barrier(), 0);
    assert_int_equal(__atomic_load_n(&flushed_ran, __ATOMIC_RELAXED), n);
    sem_post(&flush_exit);
    assert_int_equal(pthread_join(t, NULL), 0);
    sem_destroy(&flush_done);
    sem_destroy(&flush_exit);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_sections_nest),
        cmocka_unit_test(test_destroy_in_section),
        cmocka_unit_test(test_first_call_any),
        cmocka_unit_test(test_flush),
    };
    if (getenv("LT_TEST"))      /* run only the tests matching this pattern */
        cmocka_set_test_filter(getenv("LT_TEST"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
