/* tests/common/stress_thread_exit.c - threads need no registration.
 *
 * Threads that call lull and exit without any explicit registration work,
 * are unregistered at exit (later grace periods do not wait for them), and
 * the memory they retired but had not yet handed over (less than one batch)
 * is freed: after lull_barrier() the heap is back to what the live data
 * needs.  Heap use is measured with mallinfo2 in plain builds and with the
 * sanitizer allocator's counter in ASan/TSan builds; LeakSanitizer checks
 * the rest at exit (the store is destroyed). */
#include "testutil.h"

#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <urcu/urcu-memb.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define LT_SAN_ALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define LT_SAN_ALLOC 1
#endif
#endif
#ifdef LT_SAN_ALLOC
/* from <sanitizer/allocator_interface.h>, which gcc does not install */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

static size_t heap_in_use(void)
{
#ifdef LT_SAN_ALLOC
    return __sanitizer_get_current_allocated_bytes();
#else
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
#endif
}

enum { BIG = 512 * 1024, REPLACES = LULL_RETIRE_BATCH / 3 };   /* under one batch */

struct targ { lull_store *s; int idx; };

static void *retire_some(void *p)
{
    struct targ *a = p;
    char *val = malloc(BIG);
    LT_CHECK(val != NULL);
    memset(val, 'a' + a->idx, BIG);
    /* no registration: the first lull call may be anything */
    lull_read_lock();
    const struct lull_snap *sn = lull_store_get(a->s, "big", 3);
    LT_CHECK(sn != NULL);
    LT_CHECK_EQ(sn->value_len, BIG);
    lull_read_unlock();
    for (int i = 0; i < REPLACES; i++) {
        val[0] = (char)i;
        LT_CHECK_EQ(lull_store_put(a->s, "big", 3, val, BIG, NULL), 0);
    }
    free(val);
    return NULL;      /* exits with its retired snapshots still batched here */
}

static void test_exit_frees_batch(void **state)
{
    (void)state;
    struct lull_store_opts o = { 0, 0, 2 * BIG, 0 };
    lull_store *s = lull_store_create(&o);
    assert_non_null(s);
    char *val = calloc(1, BIG);
    assert_non_null(val);
    assert_int_equal(lull_store_put(s, "big", 3, val, BIG, NULL), 0);
    free(val);
    assert_int_equal(lull_barrier(), 0);
    size_t base = heap_in_use();
    for (int round = 0; round < 3; round++) {
        struct targ a = { s, round };
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, retire_some, &a), 0);
        assert_int_equal(pthread_join(t, NULL), 0);
        assert_int_equal(lull_barrier(), 0);
        size_t now = heap_in_use();
        fprintf(stderr, "round %d: heap in use %zu KiB (base %zu KiB); %d x %d KiB retired by "
                "a thread that exited\n", round, now / 1024, base / 1024, REPLACES, BIG / 1024);
        /* one live value plus slack; the retired ones would be ~10 MiB */
        if (now > base + 3 * (size_t)BIG)
            fail_msg("retired memory of an exited thread not freed: %zu KiB held over the base",
                     (now - base) / 1024);
    }
    assert_int_equal(lull_store_destroy(s), 0);
}

/* Many short-lived threads that take sections and write, then exit: grace
 * periods must not wait for them afterwards (a watchdog fails a hang). */
struct carg { lull_store *s; unsigned t; };

static void *short_lived(void *p)
{
    struct carg *a = p;
    char key[16];
    snprintf(key, sizeof key, "t%u", a->t);
    for (int i = 0; i < 20; i++) {
        lull_read_lock();
        (void)lull_store_get(a->s, key, strlen(key));
        lull_read_unlock();
        LT_CHECK_EQ(lull_store_put(a->s, key, strlen(key), &i, sizeof i, NULL), 0);
    }
    if (a->t % 4 == 0)
        LT_CHECK_EQ(lull_synchronize(), 0);
    if (a->t % 4 == 1)
        LT_CHECK_EQ(lull_barrier(), 0);
    return NULL;
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "watchdog: a grace period waited for exited threads\n";
    if (write(2, msg, sizeof msg - 1) < 0) {
        /* nothing to do */
    }
    _exit(1);
}

static void test_many_exiting_threads(void **state)
{
    (void)state;
    lull_store *s = lull_store_create(NULL);
    assert_non_null(s);
    signal(SIGALRM, on_alarm);
    alarm(120);
    unsigned rounds = (unsigned)(20 * lt_stress_seconds());
    if (rounds < 5)
        rounds = 5;
    enum { N = 8 };
    for (unsigned r = 0; r < rounds; r++) {
        struct carg a[N];
        for (unsigned i = 0; i < N; i++)
            a[i] = (struct carg){ s, r * N + i };
        lt_run_threads(N, short_lived, a, sizeof a[0]);
        assert_int_equal(lull_synchronize(), 0);
    }
    assert_int_equal(lull_barrier(), 0);
    alarm(0);
    assert_int_equal(lull_store_count(s), (size_t)rounds * N);
    assert_int_equal(lull_store_check(s, stderr), 0);
    assert_int_equal(lull_store_destroy(s), 0);
}

/* A thread that registered itself with urcu-memb is left as it is: lull
 * works in it, and it unregisters itself. */
static void *self_registered(void *p)
{
    lull_store *s = p;
    urcu_memb_register_thread();
    lull_read_lock();
    LT_CHECK(lull_read_ongoing());
    LT_CHECK(urcu_memb_read_ongoing());
    lull_read_unlock();
    for (int i = 0; i < 10; i++)
        LT_CHECK_EQ(lull_store_put(s, "self", 4, &i, sizeof i, NULL), 0);
    LT_CHECK_EQ(lull_barrier(), 0);
    urcu_memb_read_lock();       /* still registered: urcu itself works */
    urcu_memb_read_unlock();
    urcu_memb_unregister_thread();
    return NULL;
}

static void test_self_registered_thread(void **state)
{
    (void)state;
    lull_store *s = lull_store_create(NULL);
    assert_non_null(s);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, self_registered, s), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(lull_synchronize(), 0);
    assert_int_equal(lull_store_destroy(s), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exit_frees_batch),
        cmocka_unit_test(test_many_exiting_threads),
        cmocka_unit_test(test_self_registered_thread),
    };
    if (getenv("LT_TEST"))      /* run only the tests matching this pattern */
        cmocka_set_test_filter(getenv("LT_TEST"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
