/* tests/common/stress_rcu_reclaim.c - lull's reclaim thread keeps its word.
 *
 *   barrier:      objects deferred from several threads have all run when
 *                 lull_barrier returns (counted, every round);
 *   deferred fn:  runs on "lull-reclaim" with every signal blocked; there
 *                 lull_barrier is -EDEADLK and the throttle does not wait;
 *                 what it defers itself is covered by the next barrier;
 *   backpressure: writers retiring millions of objects faster than a slow
 *                 fn frees them keep the inflight gauge within
 *                 LULL_INFLIGHT_MAX + LULL_RETIRE_BATCH per writer, and
 *                 do reach the cap (else the test proved nothing). */
#include "testutil.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>

struct obj {
    struct lull__deferred d;
    unsigned long *ran;
};

static void obj_count_free(struct lull__deferred *d)
{
    struct obj *o = (struct obj *)(void *)d;
    __atomic_fetch_add(o->ran, 1, __ATOMIC_RELAXED);
    free(o);
}

static void defer_counted(unsigned long *ran, void (*fn)(struct lull__deferred *))
{
    struct obj *o = malloc(sizeof *o);
    LT_CHECK(o != NULL);
    o->ran = ran;
    lull__defer(&o->d, fn);
}

/* ------------------------------------------------------------- barrier */

enum { W = 4, PUSHED = 5 * LULL_RETIRE_BATCH };   /* pushed whole; idx + 1 more stay batched */

static pthread_barrier_t pb;
static unsigned long ran_barrier;
static unsigned rounds_barrier;

static void *barrier_worker(void *p)
{
    unsigned idx = *(unsigned *)p;
    const unsigned long per_round = W * PUSHED + W * (W + 1) / 2;
    for (unsigned r = 0; r < rounds_barrier; r++) {
        unsigned long base = r * per_round;    /* every earlier round has run */
        for (unsigned i = 0; i < PUSHED + idx + 1; i++)
            defer_counted(&ran_barrier, obj_count_free);
        /* Every thread's PUSHED objects are queued before any passes. */
        pthread_barrier_wait(&pb);
        LT_CHECK_EQ(lull_barrier(), 0);
        unsigned long ran = __atomic_load_n(&ran_barrier, __ATOMIC_RELAXED);
        /* all queued objects, and this thread's own batched ones */
        if (ran < base + W * PUSHED + idx + 1 || ran > base + per_round) {
            fprintf(stderr, "round %u thread %u: %lu ran after lull_barrier, want %lu..%lu\n",
                    r, idx, ran - base, (unsigned long)(W * PUSHED + idx + 1), per_round);
            abort();
        }
        pthread_barrier_wait(&pb);             /* all own leftovers flushed and run */
    }
    return NULL;
}

static void test_barrier_counts(void **state)
{
    (void)state;
    rounds_barrier = (unsigned)(40 * lt_stress_seconds());
    unsigned idx[W];
    for (unsigned i = 0; i < W; i++)
        idx[i] = i;
    pthread_barrier_init(&pb, NULL, W);
    lt_run_threads(W, barrier_worker, idx, sizeof idx[0]);
    pthread_barrier_destroy(&pb);
    assert_int_equal(lull_barrier(), 0);
    assert_int_equal(__atomic_load_n(&ran_barrier, __ATOMIC_RELAXED),
                     (unsigned long)rounds_barrier * (W * PUSHED + W * (W + 1) / 2));
    assert_int_equal(lull__inflight_now(), 0);
    fprintf(stderr, "%u rounds of %d threads: every barrier saw every object before it run\n",
            rounds_barrier, W);
}

/* --------------------------------------------------------- deferred fn */

struct probe {
    struct lull__deferred d;
    struct obj *child;              /* deferred from inside fn */
    unsigned long child_ran;
    int barrier_rc;
    bool named, masked, throttle_returned, ran;
};

static void probe_fn(struct lull__deferred *d)
{
    struct probe *p = (struct probe *)(void *)d;
    char name[16] = "";
    pthread_getname_np(pthread_self(), name, sizeof name);
    p->named = strcmp(name, "lull-reclaim") == 0;
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    p->masked = sigismember(&cur, SIGINT) && sigismember(&cur, SIGTERM) &&
                sigismember(&cur, SIGUSR1) && sigismember(&cur, SIGALRM);
    p->barrier_rc = lull_barrier();
    lull__defer_throttle();         /* never waits here */
    p->throttle_returned = true;
    lull__defer(&p->child->d, obj_count_free);
    p->ran = true;
}

static void test_deferred_fn_rules(void **state)
{
    (void)state;
    lull_read_lock();
    assert_int_equal(lull_barrier(), -EDEADLK);
    lull_read_unlock();

    struct probe p = { .barrier_rc = 1 };
    p.child = malloc(sizeof *p.child);
    assert_non_null(p.child);
    p.child->ran = &p.child_ran;
    lull__defer(&p.d, probe_fn);
    assert_int_equal(lull_barrier(), 0);
    /* lull_barrier's return orders what probe_fn did before these reads */
    assert_true(p.ran);
    assert_true(p.named);
    assert_true(p.masked);
    assert_int_equal(p.barrier_rc, -EDEADLK);
    assert_true(p.throttle_returned);
    /* What fn deferred was queued before that barrier returned: the next
     * barrier covers it. */
    assert_int_equal(lull_barrier(), 0);
    assert_int_equal(__atomic_load_n(&p.child_ran, __ATOMIC_RELAXED), 1);
}

/* -------------------------------------------------------- backpressure */

enum { PW = 2 };

static unsigned long ran_bp;
static unsigned long per_writer_bp;

static void slow_free(struct lull__deferred *d)
{
    /* slower than a writer's malloc + defer by an order of magnitude */
    for (volatile int i = 0; i < 200; i++) {
    }
    obj_count_free(d);
}

static void *bp_writer(void *p)
{
    long *max = p;
    for (unsigned long i = 0; i < per_writer_bp; i++) {
        lull__defer_throttle();     /* as a store writer does, outside a section */
        defer_counted(&ran_bp, slow_free);
        long g = lull__inflight_now();
        if (g > *max)
            *max = g;
    }
    return NULL;
}

static void test_backpressure_bound(void **state)
{
    (void)state;
    per_writer_bp = lt_sanitized() ? 500000 : 2000000;
    long max[PW] = { 0 };
    lt_run_threads(PW, bp_writer, max, sizeof max[0]);
    assert_int_equal(lull_barrier(), 0);
    long top = 0;
    for (unsigned i = 0; i < PW; i++)
        top = max[i] > top ? max[i] : top;
    fprintf(stderr, "%d writers x %lu objects: inflight peaked at %ld (cap %d, bound %d)\n",
            PW, per_writer_bp, top, LULL_INFLIGHT_MAX,
            LULL_INFLIGHT_MAX + PW * LULL_RETIRE_BATCH);
    if (top > LULL_INFLIGHT_MAX + PW * LULL_RETIRE_BATCH)
        fail_msg("inflight reached %ld: backpressure did not hold", top);
    if (top < LULL_INFLIGHT_MAX)
        fail_msg("inflight peaked at %ld: writers never outran the reclaimer", top);
    assert_int_equal(__atomic_load_n(&ran_bp, __ATOMIC_RELAXED), PW * per_writer_bp);
    assert_int_equal(lull__inflight_now(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_barrier_counts),
        cmocka_unit_test(test_deferred_fn_rules),
        cmocka_unit_test(test_backpressure_bound),
    };
    if (getenv("LT_TEST"))      /* run only the tests matching this pattern */
        cmocka_set_test_filter(getenv("LT_TEST"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
