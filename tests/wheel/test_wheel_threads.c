/*
 * tests/wheel/test_wheel_threads.c - what needs a second thread: cancel_sync
 * waiting for a running callback, destroy draining one (and giving up with
 * -ETIMEDOUT), the driver thread.  Waits poll flags; the only timing
 * assumptions are generous upper bounds.
 */
#include "wheel_testlib.h"

#include <pthread.h>
#include <time.h>

static struct lt_clock clk;

static void nap_us(long us)
{
    struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };
    nanosleep(&ts, NULL);
}

static int get(int *f) { return __atomic_load_n(f, __ATOMIC_ACQUIRE); }
static void put(int *f, int v) { __atomic_store_n(f, v, __ATOMIC_RELEASE); }
static void wait_for(int *f)
{
    for (long i = 0; !get(f); i++) {
        LT_CHECK(i < 20 * 1000 * 10);   /* 20 s */
        nap_us(100);
    }
}

/* ---- a callback that blocks until released ----------------------------------- */
static int entered, release_cb, finished, others_ran;

static void block_fn(lull_timer t, void *arg)
{
    (void)t;
    (void)arg;
    put(&entered, 1);
    wait_for(&release_cb);
    put(&finished, 1);
}

static void other_fn(lull_timer t, void *arg)
{
    (void)t;
    (void)arg;
    __atomic_fetch_add(&others_ran, 1, __ATOMIC_RELAXED);
}

static int setup(void **state)
{
    (void)state;
    put(&entered, 0);
    put(&release_cb, 0);
    put(&finished, 0);
    put(&others_ran, 0);
    wt_set(&clk, 1000 * SEC);
    return 0;
}

struct adv_job { lull_wheel *w; size_t ran; };
static void *adv_run(void *arg)
{
    struct adv_job *j = arg;
    j->ran = lull_wheel_advance(j->w);
    return NULL;
}

struct cs_job { lull_wheel *w; lull_timer t; int rc, finished_at_return, returned; };
static void *cancel_sync_run(void *arg)
{
    struct cs_job *j = arg;
    j->rc = lull_wheel_cancel_sync(j->w, j->t);
    j->finished_at_return = get(&finished);
    put(&j->returned, 1);
    return NULL;
}

static void t_cancel_sync_waits(void **state)
{
    (void)state;
    lull_wheel *w = wt_wheel(&clk, MS, 0);
    lull_timer a;
    assert_int_equal(lull_wheel_schedule(w, 0, block_fn, NULL, &a), 0);
    struct adv_job aj = { w, 0 };
    pthread_t ta, tc;
    assert_int_equal(pthread_create(&ta, NULL, adv_run, &aj), 0);
    wait_for(&entered);
    assert_int_equal(lull_wheel_cancel(w, a), -EINPROGRESS);
    struct cs_job cj = { w, a, 0, 0, 0 };
    assert_int_equal(pthread_create(&tc, NULL, cancel_sync_run, &cj), 0);
    while (__atomic_load_n(&w->waiters, __ATOMIC_ACQUIRE) == 0)   /* it is waiting */
        nap_us(100);
    nap_us(20000);
    assert_int_equal(get(&cj.returned), 0);
    put(&release_cb, 1);
    assert_int_equal(pthread_join(tc, NULL), 0);
    assert_int_equal(pthread_join(ta, NULL), 0);
    assert_int_equal(cj.rc, -EINPROGRESS);
    assert_int_equal(cj.finished_at_return, 1);  /* returned after fn did */
    assert_int_equal(aj.ran, 1);
    assert_int_equal(lull_wheel_cancel_sync(w, a), -ESTALE);
    CHECK_WHEEL(w);
    assert_int_equal(lull_wheel_destroy(w, 0), 0);
}

/* destroy waits for a callback in flight; the timers due after it in the
 * same advance never run; nothing runs after destroy returns. */
struct d_job { lull_wheel *w; uint64_t timeout; int rc, returned; };
static void *destroy_run(void *arg)
{
    struct d_job *j = arg;
    j->rc = lull_wheel_destroy(j->w, j->timeout);
    put(&j->returned, 1);
    return NULL;
}

static lull_wheel *three_due(void)
{
    lull_wheel *w = wt_wheel(&clk, MS, 0);
    lull_timer t;
    LT_CHECK(lull_wheel_schedule(w, MS, block_fn, NULL, &t) == 0);
    LT_CHECK(lull_wheel_schedule(w, MS, other_fn, NULL, &t) == 0);
    LT_CHECK(lull_wheel_schedule(w, 2 * MS, other_fn, NULL, &t) == 0);
    LT_CHECK(lull_wheel_schedule(w, HOUR, other_fn, NULL, &t) == 0);
    wt_set(&clk, clk.now + 2 * MS);
    return w;
}

static void t_destroy_waits(void **state)
{
    (void)state;
    lull_wheel *w = three_due();
    struct adv_job aj = { w, 0 };
    struct d_job dj = { w, 0, 0, 0 };
    pthread_t ta, td;
    assert_int_equal(pthread_create(&ta, NULL, adv_run, &aj), 0);
    wait_for(&entered);
    assert_int_equal(pthread_create(&td, NULL, destroy_run, &dj), 0);
    while (!__atomic_load_n(&w->shutdown, __ATOMIC_ACQUIRE))
        nap_us(100);
    lull_timer t;
    assert_int_equal(lull_wheel_schedule(w, 0, other_fn, NULL, &t), -ESHUTDOWN);
    nap_us(30000);
    assert_int_equal(get(&dj.returned), 0);      /* still draining */
    put(&release_cb, 1);
    assert_int_equal(pthread_join(td, NULL), 0);
    assert_int_equal(dj.rc, 0);
    assert_int_equal(get(&finished), 1);
    assert_int_equal(pthread_join(ta, NULL), 0);
    assert_int_equal(aj.ran, 1);                 /* the two other due timers: cancelled */
    assert_int_equal(get(&others_ran), 0);
}

/* The callback outlasts the timeout: -ETIMEDOUT at once; the advancing
 * thread frees the wheel when the callback returns (LeakSanitizer and ASan
 * check that it does, and only then). */
static void t_destroy_timeout(void **state)
{
    (void)state;
    lull_wheel *w = three_due();
    struct adv_job aj = { w, 0 };
    pthread_t ta;
    assert_int_equal(pthread_create(&ta, NULL, adv_run, &aj), 0);
    wait_for(&entered);
    assert_int_equal(lull_wheel_destroy(w, 20 * MS), -ETIMEDOUT);
    assert_int_equal(get(&finished), 0);
    put(&release_cb, 1);
    assert_int_equal(pthread_join(ta, NULL), 0);
    assert_int_equal(aj.ran, 1);
    assert_int_equal(get(&others_ran), 0);
}

/* ---- the driver thread ---------------------------------------------------------- */

static uint64_t fire_at[64], due_at[64];
static int nfire;

static void stamp_fn(lull_timer t, void *arg)
{
    (void)t;
    int i = (int)(intptr_t)arg;
    fire_at[i] = lull__now_ns();
    __atomic_fetch_add(&nfire, 1, __ATOMIC_RELEASE);
}

static lull_wheel *driver_wheel(void)
{
    struct lull_wheel_opts o = { .driver_thread = true };
    lull_wheel *w = lull_wheel_create(&o);
    LT_CHECK(w != NULL);
    return w;
}

static void wait_fires(int n)
{
    for (long i = 0; __atomic_load_n(&nfire, __ATOMIC_ACQUIRE) < n; i++) {
        LT_CHECK(i < 20 * 1000 * 10);
        nap_us(100);
    }
}

static void t_driver_fires(void **state)
{
    (void)state;
    lull_wheel *w = driver_wheel();
    put(&nfire, 0);
    for (int i = 0; i < 20; i++) {
        uint64_t dly = (uint64_t)(i % 10) * 1700000 + (uint64_t)i * 1000;
        due_at[i] = lull__now_ns() + dly;
        lull_timer t;
        assert_int_equal(lull_wheel_schedule(w, dly, stamp_fn, (void *)(intptr_t)i, &t), 0);
    }
    wait_fires(20);
    for (int i = 0; i < 20; i++)
        assert_true(fire_at[i] >= due_at[i]);    /* never early */
    assert_int_equal(lull_wheel_pending(w), 0);
    assert_int_equal(lull_wheel_destroy(w, 0), 0);
}

/* Asleep until an hour from now, the driver wakes for an earlier timer. */
static void t_driver_wakes_early(void **state)
{
    (void)state;
    lull_wheel *w = driver_wheel();
    put(&nfire, 0);
    lull_timer t;
    assert_int_equal(lull_wheel_schedule(w, HOUR, stamp_fn, (void *)0, &t), 0);
    nap_us(20000);      /* let it go to sleep */
    due_at[1] = lull__now_ns() + 2 * MS;
    assert_int_equal(lull_wheel_schedule(w, 2 * MS, stamp_fn, (void *)1, &t), 0);
    wait_fires(1);
    assert_true(fire_at[1] >= due_at[1]);
    assert_true(fire_at[1] - due_at[1] < 5 * SEC);
    assert_int_equal(lull_wheel_pending(w), 1);
    assert_int_equal(lull_wheel_destroy(w, 0), 0);  /* cancels the hour-long one */
    assert_int_equal(__atomic_load_n(&nfire, __ATOMIC_ACQUIRE), 1);
}

/* An idle driver costs no CPU: it sleeps, it does not tick. */
static void t_driver_idle(void **state)
{
    (void)state;
    if (lt_sanitized())
        skip();
    lull_wheel *w = driver_wheel();
    lull_timer t;
    assert_int_equal(lull_wheel_schedule(w, HOUR, stamp_fn, (void *)0, &t), 0);
    nap_us(20000);
    struct timespec a, b;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
    nap_us(300000);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
    uint64_t cpu = (uint64_t)(b.tv_sec - a.tv_sec) * SEC + (uint64_t)b.tv_nsec - (uint64_t)a.tv_nsec;
    fprintf(stderr, "idle driver: %llu us of CPU in 300 ms\n", (unsigned long long)cpu / 1000);
    assert_true(cpu < 20 * MS);
    assert_int_equal(lull_wheel_destroy(w, 0), 0);
}

/* With a driver, destroy gives up on a blocked callback; the driver thread
 * frees the wheel when it returns. */
static void t_driver_destroy_timeout(void **state)
{
    (void)state;
    lull_wheel *w = driver_wheel();
    lull_timer t;
    assert_int_equal(lull_wheel_schedule(w, 0, block_fn, NULL, &t), 0);
    assert_int_equal(lull_wheel_schedule(w, 0, other_fn, NULL, &t), 0);
    wait_for(&entered);
    assert_int_equal(lull_wheel_destroy(w, 10 * MS), -ETIMEDOUT);
    put(&release_cb, 1);
    wait_for(&finished);
    nap_us(200000);     /* the detached driver frees w; LSan checks at exit */
    assert_int_equal(get(&others_ran), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(t_cancel_sync_waits, setup),
        cmocka_unit_test_setup(t_destroy_waits, setup),
        cmocka_unit_test_setup(t_destroy_timeout, setup),
        cmocka_unit_test_setup(t_driver_fires, setup),
        cmocka_unit_test_setup(t_driver_wakes_early, setup),
        cmocka_unit_test_setup(t_driver_idle, setup),
        cmocka_unit_test_setup(t_driver_destroy_timeout, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
