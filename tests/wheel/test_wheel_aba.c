/*
 * tests/wheel/test_wheel_aba.c - the ABA tag of the slab's free stack,
 * deterministically.
 *
 * A pop reads the head (top slot T, and T's free_next N), then CASes the head
 * to N.  If meanwhile T is popped, another slot popped, and T pushed back, the
 * head holds T again but T's next is no longer N: without the tag in the head
 * word the stale CAS succeeds and installs N -- a slot a live timer holds --
 * as the new top.  The race window is a few instructions wide; the pop hook
 * (lull__wslab_pop_hook) holds it open:
 *
 *   setup     4 fresh slots, cancelled so the free stack is 0 -> 1 -> 2 -> 3
 *   thread A  schedule: its pop reads head = (tag, 0), next = 1; in the hook
 *             (A's first call only) it signals B and waits
 *   thread B  schedule X (pops 0), schedule Y (pops 1), cancel X (pushes 0,
 *             its next now 2): head = (tag + 3, 0); then it releases A
 *   thread A  CAS: with the tag it fails, and the retry takes 0 (head -> 2);
 *             without it, it succeeds and the head becomes 1 -- Y's slot
 *   then      schedule Z (slot 2 with the tag; Y's slot without), check all.
 */
#include "wheel_testlib.h"

#include <pthread.h>

static struct lt_clock clk;

static void never_fn(lull_timer t, void *arg)
{
    (void)t, (void)arg;
    LT_CHECK(!"no timer of this test may fire");
}

/* ---- the handshake ------------------------------------------------------------ */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int phase;                   /* under mu: 1 A is in the window, 2 B is done */
static _Thread_local bool tl_is_a;  /* the hook acts on thread A only */
static unsigned a_calls;            /* hook calls by A (read after the join) */

static void pop_hook(void)
{
    if (!tl_is_a)
        return;                     /* B's own pops go straight through */
    if (++a_calls != 1)
        return;                     /* the retry (or later pops): no wait */
    pthread_mutex_lock(&mu);
    phase = 1;
    pthread_cond_broadcast(&cv);
    while (phase != 2)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

struct a_args {
    lull_wheel *w;
    int rc;
    lull_timer t;
};

static void *thread_a(void *p)
{
    struct a_args *a = p;
    tl_is_a = true;
    a->rc = lull_wheel_schedule(a->w, HOUR, never_fn, NULL, &a->t);
    tl_is_a = false;
    return NULL;
}

static uint32_t slot_of(lull_timer t) { return (uint32_t)t; }

static void t_pop_aba(void **state)
{
    (void)state;
    lull_wheel *w = wt_wheel(&clk, MS, 64);
    struct lull__wslab *sl = &w->slab;

    /* setup: free stack 0 -> 1 -> 2 -> 3, nothing pending */
    lull_timer s[4];
    for (int i = 0; i < 4; i++) {
        assert_int_equal(lull_wheel_schedule(w, HOUR, never_fn, NULL, &s[i]), 0);
        assert_int_equal(slot_of(s[i]), i);
    }
    for (int i = 3; i >= 0; i--)
        assert_int_equal(lull_wheel_cancel(w, s[i]), 0);
    assert_int_equal((uint32_t)__atomic_load_n(&sl->head, __ATOMIC_RELAXED), 0);
    assert_int_equal(lull_wheel_pending(w), 0);

    a_calls = 0;
    phase = 0;
    __atomic_store_n(&lull__wslab_pop_hook, pop_hook, __ATOMIC_RELAXED);

    struct a_args a = { .w = w, .rc = -1, .t = 0 };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, thread_a, &a), 0);

    /* B: wait until A holds a snapshot (head top 0, next 1) */
    pthread_mutex_lock(&mu);
    while (phase != 1)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);

    lull_timer x = 0, y = 0;
    int rx = lull_wheel_schedule(w, HOUR, never_fn, NULL, &x);   /* pops 0 */
    int ry = lull_wheel_schedule(w, HOUR, never_fn, NULL, &y);   /* pops 1 */
    int cx = lull_wheel_cancel(w, x);                             /* pushes 0 back */
    uint64_t mid = __atomic_load_n(&sl->head, __ATOMIC_RELAXED);
    uint32_t mid_next = __atomic_load_n(&lw_rec(sl, 0)->free_next, __ATOMIC_RELAXED);

    /* release A before any assertion can leave this function */
    pthread_mutex_lock(&mu);
    phase = 2;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    assert_int_equal(pthread_join(th, NULL), 0);
    __atomic_store_n(&lull__wslab_pop_hook, NULL, __ATOMIC_RELAXED);

    /* B's sequence did what it should: same top slot, a different next */
    assert_int_equal(rx, 0);
    assert_int_equal(ry, 0);
    assert_int_equal(cx, 0);
    assert_int_equal(slot_of(x), 0);
    assert_int_equal(slot_of(y), 1);
    assert_int_equal((uint32_t)mid, 0);
    assert_int_equal(mid_next, 2);

    /* A: scheduled, into a slot no live timer holds */
    assert_int_equal(a.rc, 0);
    assert_int_not_equal(slot_of(a.t), slot_of(y));

    /* The free stack's top must not be a live timer's slot.  Without the ABA
     * tag A's stale CAS installed next = 1: Y's slot. */
    uint32_t top = (uint32_t)__atomic_load_n(&sl->head, __ATOMIC_RELAXED);
    if (top == slot_of(y) || top == slot_of(a.t))
        fail_msg("free stack top is slot %u, held by live timer %s (ABA: the pop's stale "
                 "CAS succeeded)", top, top == slot_of(y) ? "Y" : "A");
    assert_int_equal(top, 2);
    /* and A's pop did see its CAS fail once and retry */
    assert_int_equal(a_calls, 2);
    assert_int_equal(slot_of(a.t), 0);

    /* one more schedule takes the next free slot, not a live one */
    lull_timer z = 0;
    assert_int_equal(lull_wheel_schedule(w, HOUR, never_fn, NULL, &z), 0);
    lull_timer live[3] = { a.t, y, z };
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < i; j++)
            assert_int_not_equal(slot_of(live[i]), slot_of(live[j]));
    assert_int_equal(slot_of(z), 2);

    struct lull__wheel_stats st;
    lull__wheel_stats(w, &st);
    assert_int_equal(st.slots, 4);      /* every later slot came off the free stack */
    assert_int_equal(lull_wheel_pending(w), 3);
    CHECK_WHEEL(w);
    for (int i = 0; i < 3; i++)
        assert_int_equal(lull_wheel_cancel(w, live[i]), 0);
    assert_int_equal(lull_wheel_pending(w), 0);
    CHECK_WHEEL(w);
    assert_int_equal(lull_wheel_destroy(w, 0), 0);
}

static int setup(void **state)
{
    (void)state;
    lull__wheel_shards = 0;
    lull__wslab_cache_max = 0;  /* no shard caches: every free slot goes to the free stack */
    wt_set(&clk, 1000 * SEC);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(t_pop_aba, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
