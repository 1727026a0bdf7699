/*
 * tests/wheel/stress_wheel.c - sixteen threads schedule, cancel, cancel_sync
 * and reschedule short timers on a real clock with a driver thread (and
 * advance it themselves now and then); callbacks schedule and cancel too.
 *
 * Every timer has its own fired and cancelled counters.  At the end, once
 * everything pending has fired: each timer fired or was cancelled, exactly
 * once; fires = schedules - successful cancels (a successful reschedule
 * neither adds nor removes); nothing fired early; lull_wheel_check passes.
 * Duration: lt_stress_seconds() (LULL_STRESS_SECONDS, default 1).
 */
#include "wheel_testlib.h"

#include <pthread.h>
#include <sched.h>
#include <time.h>

#define NTHR 16
#define RING 1024

struct trec {
    lull_timer h;           /* atomic: the current handle, 0 until scheduled */
    int fired, cancelled;   /* atomic */
    int moved;              /* atomic: rescheduled at least once */
    uint64_t not_before;    /* now + delay at schedule */
};

static lull_wheel *W;
static struct trec *recs;
static long cap, next_id;                /* next_id atomic */
static long ring[RING];                  /* atomic: recently scheduled ids */
static unsigned long ring_pos;           /* atomic */
static long n_sched, n_cancel, n_resched; /* atomic counters */
static int running;                      /* atomic: callbacks act only while set */
static uint64_t seed0;

static void fire_cb(lull_timer t, void *arg);

static uint64_t rdelay(uint64_t *rng)
{
    switch (lt_rand(rng) % 8) {
    case 0:  return 0;
    case 1:  return lt_rand(rng) % (50 * MS);
    default: return lt_rand(rng) % (3 * MS);
    }
}

static void new_timer(uint64_t *rng)
{
    /* relaxed: an id allocator */
    long id = __atomic_fetch_add(&next_id, 1, __ATOMIC_RELAXED);
    if (id >= cap)
        return;
    struct trec *r = &recs[id];
    uint64_t delay = rdelay(rng);
    r->not_before = lull__now_ns() + delay;
    lull_timer h;
    int rc = lull_wheel_schedule(W, delay, fire_cb, r, &h);
    LT_CHECK_EQ(rc, 0);
    __atomic_store_n(&r->h, h, __ATOMIC_RELEASE);
    __atomic_fetch_add(&n_sched, 1, __ATOMIC_RELAXED);
    unsigned long p = __atomic_fetch_add(&ring_pos, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&ring[p % RING], id, __ATOMIC_RELEASE);
}

static struct trec *recent(uint64_t *rng)
{
    long id = __atomic_load_n(&ring[lt_rand(rng) % RING], __ATOMIC_ACQUIRE);
    return id > 0 && id < cap ? &recs[id] : NULL;
}

static void try_cancel(uint64_t *rng, bool sync, lull_timer self)
{
    struct trec *r = recent(rng);
    if (!r)
        return;
    lull_timer h = __atomic_load_n(&r->h, __ATOMIC_ACQUIRE);
    if (!h)
        return;
    int rc = sync ? lull_wheel_cancel_sync(W, h) : lull_wheel_cancel(W, h);
    if (rc == 0) {
        LT_CHECK_EQ(__atomic_fetch_add(&r->cancelled, 1, __ATOMIC_RELAXED), 0);
        __atomic_fetch_add(&n_cancel, 1, __ATOMIC_RELAXED);
    } else if (rc == -EINPROGRESS) {
        /* running now; after cancel_sync: has run */
        LT_CHECK(!sync || __atomic_load_n(&r->fired, __ATOMIC_ACQUIRE) == 1);
    } else if (rc == -EDEADLK) {
        LT_CHECK(sync && h == self);
    } else {
        LT_CHECK_EQ(rc, -ESTALE);
    }
}

static void try_resched(uint64_t *rng)
{
    struct trec *r = recent(rng);
    if (!r)
        return;
    lull_timer h = __atomic_load_n(&r->h, __ATOMIC_ACQUIRE), nh = 0;
    if (!h)
        return;
    __atomic_store_n(&r->moved, 1, __ATOMIC_RELAXED);
    int rc = lull_wheel_reschedule(W, h, rdelay(rng), &nh);
    if (rc == 0) {
        LT_CHECK(nh != h && nh != 0);
        /* only the winner for h gets here: no one else can store nh's successor yet */
        __atomic_store_n(&r->h, nh, __ATOMIC_RELEASE);
        __atomic_fetch_add(&n_resched, 1, __ATOMIC_RELAXED);
    } else {
        LT_CHECK_EQ(rc, -ESTALE);
    }
}

static __thread uint64_t cb_rng;

static void fire_cb(lull_timer t, void *arg)
{
    struct trec *r = arg;
    LT_CHECK_EQ(__atomic_fetch_add(&r->fired, 1, __ATOMIC_RELAXED), 0);   /* at most once */
    LT_CHECK_EQ(__atomic_load_n(&r->cancelled, __ATOMIC_RELAXED), 0);
    if (!__atomic_load_n(&r->moved, __ATOMIC_RELAXED))
        LT_CHECK(lull__now_ns() >= r->not_before);                      /* never early */
    if (!cb_rng)
        cb_rng = seed0 ^ (uint64_t)(uintptr_t)&cb_rng;
    if (!__atomic_load_n(&running, __ATOMIC_ACQUIRE))
        return;
    switch (lt_rand(&cb_rng) % 10) {
    case 0: case 1: case 2: new_timer(&cb_rng); break;
    case 3: case 4: try_cancel(&cb_rng, false, t); break;
    case 5: try_cancel(&cb_rng, true, t); break;
    case 6: try_resched(&cb_rng); break;
    default: break;
    }
}

static void *worker(void *arg)
{
    long idx = (long)(intptr_t)arg;
    uint64_t rng = seed0 + (uint64_t)idx * 0x9e3779b97f4a7c15ull;
    uint64_t end = lull__now_ns() + (uint64_t)(lt_stress_seconds() * 1e9);
    for (long ops = 0; ops < 400 || lull__now_ns() < end; ops++) {
        switch (lt_rand(&rng) % 20) {
        case 0: case 1: case 2: case 3: case 4: case 5: case 6: case 7: case 8:
            new_timer(&rng); break;
        case 9: case 10: case 11: case 12: try_cancel(&rng, false, 0); break;
        case 13: try_cancel(&rng, true, 0); break;
        case 14: case 15: case 16: try_resched(&rng); break;
        case 17: if (idx < 2) lull_wheel_advance(W); break;   /* races the driver */
        default: sched_yield(); break;
        }
        if (__atomic_load_n(&next_id, __ATOMIC_RELAXED) >= cap)
            break;
    }
    return NULL;
}

/* Slot churn: tight schedule/cancel loops hammer the free stack (pop and
 * push racing on its head: the ABA case the tag is for).  Two threads given
 * one slot would see a cancel fail or leave the slab inconsistent. */
static void *churn(void *arg)
{
    (void)arg;
    uint64_t end = lull__now_ns() + (uint64_t)(lt_stress_seconds() * 0.5e9);
    lull_timer t[3];
    for (long i = 0; i < 2000 || lull__now_ns() < end; i++) {
        int k = 1 + (int)(i % 3);
        for (int j = 0; j < k; j++)
            LT_CHECK_EQ(lull_wheel_schedule(W, HOUR, fire_cb, NULL, &t[j]), 0);
        for (int j = k - 1; j >= 0; j--)
            LT_CHECK_EQ(lull_wheel_cancel(W, t[j]), 0);
    }
    return NULL;
}

static void churn_phase(void)
{
    W = lull_wheel_create(NULL);
    LT_CHECK(W != NULL);
    pthread_t th[8];
    for (int i = 0; i < 8; i++)
        LT_CHECK(pthread_create(&th[i], NULL, churn, NULL) == 0);
    for (int i = 0; i < 8; i++)
        LT_CHECK(pthread_join(th[i], NULL) == 0);
    LT_CHECK_EQ(lull_wheel_pending(W), 0);
    LT_CHECK_EQ(lull_wheel_check(W, stderr), 0);
    struct lull__wheel_stats st;
    lull__wheel_stats(W, &st);
    LT_CHECK(st.slots <= 8 * 3);
    LT_CHECK_EQ(lull_wheel_destroy(W, 0), 0);
}

int main(void)
{
    seed0 = lt_seed(0x57e55);
    double secs = lt_stress_seconds();
    cap = (long)(secs < 1 ? 1 : secs) * 1000000;
    recs = calloc((size_t)cap, sizeof(*recs));
    LT_CHECK(recs != NULL);
    next_id = 1;    /* id 0 means "empty" in the ring */
    struct lull_wheel_opts o = { .driver_thread = true };
    W = lull_wheel_create(&o);
    LT_CHECK(W != NULL);
    __atomic_store_n(&running, 1, __ATOMIC_RELEASE);

    pthread_t th[NTHR];
    for (long i = 0; i < NTHR; i++)
        LT_CHECK(pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < NTHR; i++)
        LT_CHECK(pthread_join(th[i], NULL) == 0);
    __atomic_store_n(&running, 0, __ATOMIC_RELEASE);

    /* drain: everything still pending fires (delays are short) */
    for (int i = 0; lull_wheel_pending(W) > 0; i++) {
        LT_CHECK(i < 30000);
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
    /* The last callbacks may still be returning, or be inside new_timer
     * (an id taken, its schedule not yet counted): wait until every id is
     * accounted for and the counts settle. */
    long n = 0, fires = 0, ns = 0, nc = 0, nr = 0;
    for (int tries = 0;; tries++) {
        n = __atomic_load_n(&next_id, __ATOMIC_ACQUIRE);
        if (n > cap)
            n = cap;
        fires = 0;
        for (long id = 1; id < n; id++)
            fires += __atomic_load_n(&recs[id].fired, __ATOMIC_ACQUIRE);
        ns = __atomic_load_n(&n_sched, __ATOMIC_ACQUIRE);
        nc = __atomic_load_n(&n_cancel, __ATOMIC_ACQUIRE);
        nr = __atomic_load_n(&n_resched, __ATOMIC_ACQUIRE);
        if ((fires + nc == ns && ns == n - 1) || tries > 1000)
            break;
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "stress_wheel: %ld schedules, %ld cancels, %ld reschedules, %ld fires\n",
            ns, nc, nr, fires);
    LT_CHECK_EQ(ns, n - 1);
    LT_CHECK_EQ(fires, ns - nc);
    for (long id = 1; id < n; id++)     /* exactly one of the two */
        LT_CHECK_EQ(__atomic_load_n(&recs[id].fired, __ATOMIC_ACQUIRE) +
                    __atomic_load_n(&recs[id].cancelled, __ATOMIC_ACQUIRE), 1);
    LT_CHECK_EQ(lull_wheel_check(W, stderr), 0);
    LT_CHECK_EQ(lull_wheel_destroy(W, 0), 0);
    free(recs);
    churn_phase();
    return 0;
}
