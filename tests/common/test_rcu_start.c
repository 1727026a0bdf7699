/* tests/common/test_rcu_start.c - a thread lull needs cannot start: a clear
 * error, no hang, nothing leaked (LeakSanitizer checks at exit in ASan
 * builds), and a later attempt succeeds.
 *
 * The reclaim thread is process-wide and started once, so this program runs
 * alone in its process and its first test must see the FIRST start: the
 * tests run in order and only the last one lets a start succeed.  Thread
 * creation fails through lull__thread_fault_arm (lib/common.c), exactly as
 * pthread_create does at a resource limit (EAGAIN). */
#include "testutil.h"

#include <dirent.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

/* Threads of this process named "lull-reclaim". */
static int reclaim_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], name[32] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        if (fgets(name, sizeof name, f) && strncmp(name, "lull-reclaim", 12) == 0)
            n++;
        fclose(f);
    }
    closedir(d);
    return n;
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "watchdog: a failed thread start hung\n";
    if (write(2, msg, sizeof msg - 1) < 0) {
        /* nothing to do */
    }
    _exit(1);
}

static void close_fn(void *conn, enum lull_reason why, void *ctx)
{
    (void)conn, (void)why, (void)ctx;
}

/* The first start of the reclaim thread fails: lull_store_create (and a
 * registry, which makes a store) returns NULL with errno EAGAIN. */
static void test_store_create_fails(void **state)
{
    (void)state;
    signal(SIGALRM, on_alarm);
    alarm(60);
    assert_int_equal(reclaim_threads(), 0);     /* nothing started it yet */
    for (int attempt = 0; attempt < 3; attempt++) {
        lull__thread_fault_arm(1);
        errno = 0;
        assert_null(lull_store_create(NULL));
        assert_int_equal(errno, EAGAIN);
        assert_true(lull__thread_fault_fired());  /* it was the reclaim thread's start */
    }
    assert_non_null(strstr(lull_strerror(-EAGAIN), "thread"));

    struct lull_registry_opts ro = { .close = close_fn };
    lull__thread_fault_arm(1);
    errno = 0;
    assert_null(lull_registry_create(&ro));
    assert_int_equal(errno, EAGAIN);
    assert_true(lull__thread_fault_fired());
    assert_int_equal(reclaim_threads(), 0);
    assert_int_equal(lull__inflight_now(), 0);
    /* Nothing was ever queued: a barrier has nothing to wait for. */
    assert_int_equal(lull_barrier(), 0);
    alarm(0);
}

/* A wheel's driver thread cannot start: NULL, errno EAGAIN, no hang. */
static void test_wheel_driver_fails(void **state)
{
    (void)state;
    alarm(60);
    struct lull_wheel_opts wo = { .driver_thread = true };
    lull__thread_fault_arm(1);
    errno = 0;
    assert_null(lull_wheel_create(&wo));
    assert_int_equal(errno, EAGAIN);
    assert_true(lull__thread_fault_fired());
    /* Without the fault the same wheel starts, runs and stops. */
    lull_wheel *w = lull_wheel_create(&wo);
    assert_non_null(w);
    assert_int_equal(lull_wheel_destroy(w, 0), 0);
    assert_int_equal(reclaim_threads(), 0);     /* a wheel defers nothing: no reclaimer */
    alarm(0);
}

/* lull__defer with no reclaim thread (none can start): nothing is lost;
 * the objects wait on their thread and lull_barrier runs them there. */
struct obj { struct lull__deferred d; int *ran; };

static void obj_free(struct lull__deferred *d)
{
    struct obj *o = (struct obj *)(void *)d;
    (*o->ran)++;
    free(o);
}

static void test_defer_without_reclaimer(void **state)
{
    (void)state;
    alarm(60);
    enum { BATCHES = 3, MORE = 5, N = BATCHES * LULL_RETIRE_BATCH + MORE };
    int ran = 0;
    for (int b = 0; b < BATCHES; b++) {
        lull__thread_fault_arm(1);          /* the start this batch's flush tries fails */
        for (int i = 0; i < LULL_RETIRE_BATCH; i++) {
            struct obj *o = malloc(sizeof *o);
            assert_non_null(o);
            o->ran = &ran;
            lull__defer(&o->d, obj_free);
        }
        assert_true(lull__thread_fault_fired());
    }
    for (int i = 0; i < MORE; i++) {
        struct obj *o = malloc(sizeof *o);
        assert_non_null(o);
        o->ran = &ran;
        lull__defer(&o->d, obj_free);
    }
    assert_int_equal(ran, 0);
    assert_int_equal(lull__inflight_now(), 0);      /* nothing was queued */
    lull__thread_fault_arm(1);                       /* and lull_barrier cannot start it */
    assert_int_equal(lull_barrier(), 0);             /* so it runs them here */
    assert_true(lull__thread_fault_fired());
    assert_int_equal(ran, N);
    assert_int_equal(lull__inflight_now(), 0);
    assert_int_equal(reclaim_threads(), 0);
    alarm(0);
}

/* The fault gone, the next create starts the one reclaim thread; later
 * creates reuse it. */
static void test_later_create_succeeds(void **state)
{
    (void)state;
    alarm(60);
    lull__thread_fault_arm(0);
    lull_store *s = lull_store_create(NULL);
    assert_non_null(s);
    assert_int_equal(reclaim_threads(), 1);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(lull_store_put(s, "k", 1, &i, sizeof i, NULL), 0);
    assert_int_equal(lull_barrier(), 0);
    assert_int_equal(lull__inflight_now(), 0);
    lull_store *s2 = lull_store_create(NULL);
    assert_non_null(s2);
    assert_int_equal(reclaim_threads(), 1);
    assert_int_equal(lull_store_destroy(s2), 0);
    assert_int_equal(lull_store_destroy(s), 0);

    /* A registry whose own wheel's driver cannot start: the store it made
     * first is undone (LeakSanitizer would see it), the error is the
     * driver's. */
    struct lull_registry_opts ro = { .close = close_fn };
    lull__thread_fault_arm(1);
    errno = 0;
    assert_null(lull_registry_create(&ro));
    assert_int_equal(errno, EAGAIN);
    assert_true(lull__thread_fault_fired());
    lull_registry *r = lull_registry_create(&ro);
    assert_non_null(r);
    lull_registry_destroy(r);
    assert_int_equal(reclaim_threads(), 1);
    alarm(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {   /* in this order: see the top */
        cmocka_unit_test(test_store_create_fails),
        cmocka_unit_test(test_wheel_driver_fails),
        cmocka_unit_test(test_defer_without_reclaimer),
        cmocka_unit_test(test_later_create_succeeds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
