/*
 * lib/wheel.c - layer 2: the epoch-tagged hierarchical timer wheel.
 *
 * docs/wheel.md is the design note: the state machine of a timer slot, the
 * accuracy guarantee, the costs and why the hot path is sharded.  In short:
 *
 *   - Each shard is a hierarchical wheel keyed by tick = deadline / tick_ns.
 *     A timer whose tick e is past the shard's `now` sits at the level of the
 *     highest 6-bit group in which e and now differ, in the bucket named by
 *     e's digit there.  Every timer at level L is then earlier than every
 *     timer at level L + 1, and every occupied bucket of a level lies ahead
 *     of now's digit: the earliest timer is in the lowest occupied bucket of
 *     the lowest non-empty level, found with two count-trailing-zeros.
 *   - Advancing empties that bucket (cascading its timers down, or
 *     collecting them when their tick has come), and repeats while the
 *     bucket's first tick is not past the clock; the final jump of `now`
 *     to the clock's tick is one store.  So an advance costs the buckets it
 *     empties and the levels, never the ticks in between.
 *   - Timers whose tick has come but whose deadline (ns) is still ahead stay
 *     on the shard's due list (only the current tick's can), so a timer
 *     fires at the first advance whose clock reads >= its deadline: never
 *     early, never a tick late.
 *   - Collected timers are sorted per shard by (deadline, seq) under the
 *     shard lock, and the shards' lists are merged as they fire.  Each fire
 *     is a CAS PENDING -> RUNNING on the timer's state word, racing cancel's
 *     CAS PENDING -> CANCELLED: exactly one wins.
 */
#include "wheel_internal.h"

#include <lull/rcu.h>

#include <sched.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

unsigned lull__wheel_shards;
int lull__wheel_fail_thread;

/* ---- thread-local records -------------------------------------------------- */

/* The callbacks this thread is running, innermost first (a callback may
 * advance another wheel): what makes cancel_sync and destroy refuse with
 * -EDEADLK, and a nested advance of the same wheel return 0. */
struct lw_frame {
    const lull_wheel *w;
    lull_timer t;
    struct lw_frame *up;
};
static __thread struct lw_frame *lw_frames;

static bool lw_in_callback(const lull_wheel *w, bool match_t, lull_timer t)
{
    for (const struct lw_frame *f = lw_frames; f; f = f->up)
        if (f->w == w && (!match_t || f->t == t))
            return true;
    return false;
}

/* Each thread schedules into one shard, picked round-robin at its first
 * schedule (0: not picked yet). */
static __thread unsigned lw_tls_shard;
static unsigned lw_shard_counter;

static unsigned lw_my_shard(const lull_wheel *w)
{
    unsigned s = lw_tls_shard;
    if (lull__unlikely(s == 0)) {
        /* relaxed: only spreads threads over shards; no data is ordered. */
        s = __atomic_add_fetch(&lw_shard_counter, 1, __ATOMIC_RELAXED);
        if (s == 0)
            s = 1;
        lw_tls_shard = s;
    }
    return (s - 1) & (w->nshards - 1);
}

/* ---- small helpers ---------------------------------------------------------- */

void lull__wlock_slow(struct lw_shard *sh)
{
    unsigned spins = 0;
    do {
        /* relaxed: test before test-and-set; the exchange below orders. */
        while (__atomic_load_n(&sh->lock, __ATOMIC_RELAXED)) {
            if (++spins < 64) {
                lw_cpu_relax();
            } else {
                spins = 0;
                sched_yield();   /* the holder may be preempted: let it run */
            }
        }
        /* acquire: as in lw_lock. */
    } while (__atomic_exchange_n(&sh->lock, 1u, __ATOMIC_ACQUIRE));
}

static uint64_t lw_mono(void *ctx)
{
    (void)ctx;
    return lull__now_ns();
}

static uint64_t lw_now(const lull_wheel *w)
{
    return w->clock(w->clock_ctx);
}

/* now + delay, saturated at UINT64_MAX - 1 (UINT64_MAX means "none"). */
static uint64_t lw_deadline(const lull_wheel *w, uint64_t delay_ns)
{
    uint64_t d;
    if (__builtin_add_overflow(lw_now(w), delay_ns, &d) || d == UINT64_MAX)
        d = UINT64_MAX - 1;
    return d;
}

static bool lw_decode(lull_wheel *w, lull_timer t, uint32_t *slot, uint32_t *e,
                      struct lull__wtimer **r)
{
    *slot = (uint32_t)t;
    *e = (uint32_t)(t >> 32);
    /* acquire: pairs with the acq_rel CAS that handed out slots below fresh
     * (lull__wslot_alloc), so the slot's chunk is installed. */
    if (*e == 0 || *slot >= __atomic_load_n(&w->slab.fresh, __ATOMIC_ACQUIRE))
        return false;
    *r = lw_rec(&w->slab, *slot);
    return true;
}

/* What a non-pending state word means to a call holding epoch e. */
static int lw_judge(uint64_t s, uint32_t e)
{
    if (LW_EPOCH(s) != e)
        return -ESTALE;
    switch (LW_ST(s)) {
    case LW_PENDING: return 0;
    case LW_RUNNING: return -EINPROGRESS;
    default:         return -ESTALE;
    }
}

static struct lw_shard *lw_shard_of(lull_wheel *w, struct lull__wtimer *r)
{
    /* acquire: pairs with the release store in schedule; read after the
     * acquire load of a PENDING state word, it is that incarnation's shard
     * (or a later one's, and then the state recheck under the lock fails). */
    unsigned i = __atomic_load_n(&r->shard, __ATOMIC_ACQUIRE);
    return &w->shards[i & (w->nshards - 1)];
}

static int lw_reserve(lull_wheel *w)
{
    /* relaxed: pending is a counter; exceeding max_timers is prevented by
     * the CAS itself, and nothing else is published through it. */
    if (!w->max_timers) {
        __atomic_fetch_add(&w->pending, 1, __ATOMIC_RELAXED);
        return 0;
    }
    size_t c = __atomic_load_n(&w->pending, __ATOMIC_RELAXED);
    do {
        if (c >= w->max_timers)
            return -ENOSPC;
    } while (!__atomic_compare_exchange_n(&w->pending, &c, c + 1, true,
                                          __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return 0;
}

static void lw_unreserve(lull_wheel *w)
{
    /* relaxed: as in lw_reserve. */
    __atomic_fetch_sub(&w->pending, 1, __ATOMIC_RELAXED);
}

/* ---- shard lists (caller holds the shard lock) ---------------------------- */

static uint64_t lw_above(unsigned level)      /* bits of the groups above level */
{
    unsigned shift = (level + 1) * LW_BITS;
    return shift >= 64 ? 0 : ~(uint64_t)0 << shift;
}

static uint64_t lw_bucket_start(const struct lw_shard *sh, unsigned level, unsigned slot)
{
    return (sh->now & lw_above(level)) | ((uint64_t)slot << (level * LW_BITS));
}

static void lw_link(lull_wheel *w, struct lw_shard *sh, unsigned list, uint32_t slot,
                    struct lull__wtimer *r)
{
    uint32_t h = sh->head[list];
    r->next = h;
    r->prev = LW_NIL;
    if (h != LW_NIL)
        lw_rec(&w->slab, h)->prev = slot;
    sh->head[list] = slot;
    r->list = (uint16_t)list;
    lw_set_where(r, LW_IN_LIST);
}

/* Put a pending timer where its deadline d belongs relative to sh->now. */
static void lw_place(lull_wheel *w, struct lw_shard *sh, uint32_t slot,
                     struct lull__wtimer *r, uint64_t d)
{
    uint64_t e = lw_tick(w, d);
    unsigned list = LW_DUE;
    if (e > sh->now) {
        /* highest differing group = level; e's digit there = bucket */
        unsigned level = (63u - (unsigned)__builtin_clzll(e ^ sh->now)) / LW_BITS;
        unsigned b = (unsigned)(e >> (level * LW_BITS)) & (LW_SLOTS - 1);
        list = level * LW_SLOTS + b;
        sh->bitmap[level] |= (uint64_t)1 << b;
        sh->levels |= 1u << level;
    }
    lw_link(w, sh, list, slot, r);
    /* relaxed load: we hold the lock every store is made under.  seq_cst
     * store: the first half of the store-buffer pattern with the driver
     * (lw_kick, lw_driver_sleep); a store only when the hint goes down. */
    if (d < __atomic_load_n(&sh->earliest, __ATOMIC_RELAXED))
        __atomic_store_n(&sh->earliest, d, __ATOMIC_SEQ_CST);
}

static void lw_unlink(lull_wheel *w, struct lw_shard *sh, uint32_t slot, struct lull__wtimer *r)
{
    (void)slot;
    uint32_t n = r->next, p = r->prev;
    if (p != LW_NIL) {
        lw_rec(&w->slab, p)->next = n;
    } else {
        sh->head[r->list] = n;
        if (n == LW_NIL && r->list != LW_DUE) {
            unsigned level = r->list / LW_SLOTS;
            sh->bitmap[level] &= ~((uint64_t)1 << (r->list % LW_SLOTS));
            if (!sh->bitmap[level])
                sh->levels &= ~(1u << level);
        }
    }
    if (n != LW_NIL)
        lw_rec(&w->slab, n)->prev = p;
    lw_set_where(r, LW_NOWHERE);
}

/* Arm incarnation e of r in sh with deadline d: shard lock held, fn, arg
 * and shard set.  For a reschedule the state word has moved to epoch e
 * already, so the advancer's seqlock read (lw_cursor_load) cannot pair
 * the new d and seq with the old epoch. */
static void lw_publish(lull_wheel *w, struct lw_shard *sh, uint32_t slot,
                       struct lull__wtimer *r, uint32_t e, uint64_t d)
{
    /* relaxed: the order of schedules only needs the RMW's total order;
     * taken under the shard lock so that the shard's mark (lw_collect) is
     * above every seq already in the shard. */
    uint64_t q = __atomic_fetch_add(&w->seq, 1, __ATOMIC_RELAXED);
    /* release (both): an advancer whose acquire load reads one of these
     * (lw_cursor_load) sees the state word's change that came before. */
    __atomic_store_n(&r->d, d, __ATOMIC_RELEASE);
    __atomic_store_n(&r->seq, q, __ATOMIC_RELEASE);
    /* release: publishes fn, arg, shard, d, seq to whoever loads this word
     * with acquire (cancel, reschedule, the fire CAS): schedule is a
     * release, so fn sees every write made before schedule. */
    __atomic_store_n(&r->state, LW_WORD(e, LW_PENDING), __ATOMIC_RELEASE);
    lw_place(w, sh, slot, r, d);
}

/* ---- the driver thread's wake-up ------------------------------------------- */

static void lw_kick(lull_wheel *w, uint64_t d)
{
    if (!w->has_driver)
        return;
    /* seq_cst: store-buffer pattern with lw_driver_sleep.  We stored the
     * shard's earliest (seq_cst, in lw_place) and load sleep_until; the
     * driver stores sleep_until and loads every earliest, all seq_cst:
     * either it sees our timer, or we see that it sleeps past it.  (If our
     * timer did not lower earliest, an earlier one already keeps the
     * driver's target at or before ours.) */
    if (d >= __atomic_load_n(&w->sleep_until, __ATOMIC_SEQ_CST))
        return;
    pthread_mutex_lock(&w->mu);
    w->kick = true;
    pthread_cond_signal(&w->dcv);
    pthread_mutex_unlock(&w->mu);
}

/* ---- create and destroy ------------------------------------------------------ */

static unsigned lw_default_shards(void)
{
    unsigned want = lull__wheel_shards;
    if (!want) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        want = n > 0 ? (unsigned)n : 1;
    }
    unsigned s = 1;
    while (s < want && s < LW_MAX_SHARDS)
        s <<= 1;
    return s;
}

static void lw_free(lull_wheel *w)
{
    lull__wslab_fini(&w->slab);
    lull__free(w->shards);
    pthread_cond_destroy(&w->dcv);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    lull__free(w);
}

/* Leave the set of threads blocked in w (mu held).  True when the caller
 * must free w: destroy gave up waiting, and this was the last one in. */
static bool lw_leave_locked(lull_wheel *w)
{
    w->users--;
    pthread_cond_broadcast(&w->cv);
    return w->orphaned && w->users == 0 && (!w->has_driver || w->driver_exited);
}

static void lw_abs_mono(struct timespec *ts, uint64_t rel_ns)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    uint64_t ns = (uint64_t)ts->tv_nsec + rel_ns % 1000000000u;
    ts->tv_sec += (time_t)(rel_ns / 1000000000u + ns / 1000000000u);
    ts->tv_nsec = (long)(ns % 1000000000u);
}

#define LW_MAX_SLEEP_NS (3600ull * 1000000000ull)   /* re-plan at least hourly */

/* Sleep until the next deadline or a kick.  Returns true when stopping. */
static bool lw_driver_sleep(lull_wheel *w)
{
    uint64_t d = lull_wheel_next_deadline(w);
    /* seq_cst: the store-buffer pattern with lw_kick (the loads of earliest
     * in next_deadline are seq_cst too). */
    __atomic_store_n(&w->sleep_until, d, __ATOMIC_SEQ_CST);
    uint64_t d2 = lull_wheel_next_deadline(w);
    if (d2 < d)
        d = d2;
    pthread_mutex_lock(&w->mu);
    while (!w->kick && !w->stop) {
        uint64_t now = lw_now(w);
        if (d != UINT64_MAX && now >= d)
            break;
        if (d == UINT64_MAX) {
            pthread_cond_wait(&w->dcv, &w->mu);   /* idle: no ticking */
            continue;
        }
        uint64_t rel = d - now;
        struct timespec ts;
        lw_abs_mono(&ts, rel < LW_MAX_SLEEP_NS ? rel : LW_MAX_SLEEP_NS);
        if (pthread_cond_timedwait(&w->dcv, &w->mu, &ts) == ETIMEDOUT)
            break;
    }
    w->kick = false;
    bool stop = w->stop;
    /* relaxed: 0 = awake, schedulers need not kick; a stale larger value
     * only costs a needless kick. */
    __atomic_store_n(&w->sleep_until, 0, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&w->mu);
    return stop;
}

static void *lw_driver_main(void *arg)
{
    lull_wheel *w = arg;
    do
        lull_wheel_advance(w);
    while (!lw_driver_sleep(w));
    pthread_mutex_lock(&w->mu);
    w->driver_exited = true;
    pthread_cond_broadcast(&w->cv);
    bool free_it = w->orphaned && w->users == 0;
    pthread_mutex_unlock(&w->mu);
    if (free_it)
        lw_free(w);
    return NULL;
}

lull_wheel *lull_wheel_create(const struct lull_wheel_opts *opts)
{
    struct lull_wheel_opts o = {0};
    if (opts)
        o = *opts;
    if (!o.tick_ns)
        o.tick_ns = 1000000;
    lull_wheel *w = lull__aligned_alloc(lull__cacheline, sizeof(*w));
    if (!w) {
        errno = ENOMEM;
        return NULL;
    }
    memset(w, 0, sizeof(*w));
    lull__wslab_init(&w->slab);
    w->tick_ns = o.tick_ns;
    w->tick_shift = (o.tick_ns & (o.tick_ns - 1)) ? 64u : (unsigned)__builtin_ctzll(o.tick_ns);
    w->clock = o.clock ? o.clock : lw_mono;
    w->clock_ctx = o.clock_ctx;
    w->max_timers = o.max_timers;
    w->nshards = lw_default_shards();
    w->shards = lull__aligned_alloc(lull__cacheline, w->nshards * sizeof(struct lw_shard));
    if (!w->shards) {
        lull__free(w);
        errno = ENOMEM;
        return NULL;
    }
    uint64_t now = lw_tick(w, lw_now(w));
    for (unsigned i = 0; i < w->nshards; i++) {
        struct lw_shard *sh = &w->shards[i];
        memset(sh, 0, sizeof(*sh));
        for (unsigned l = 0; l < LW_LISTS; l++)
            sh->head[l] = LW_NIL;
        sh->now = now;
        sh->earliest = UINT64_MAX;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, &ca);
    pthread_cond_init(&w->dcv, &ca);
    pthread_condattr_destroy(&ca);
    if (o.driver_thread) {
        w->has_driver = true;
        /* relaxed: a test hook, set and read on the creating thread. */
        int err = __atomic_exchange_n(&lull__wheel_fail_thread, 0, __ATOMIC_RELAXED);
        if (!err)
            err = lull__thread_create(&w->driver, lw_driver_main, w);
        if (err) {
            lw_free(w);
            errno = err;
            return NULL;
        }
    }
    return w;
}

/* destroy's sweep: every timer in a shard list ends; its callback never
 * runs.  Collected ones are ended by their advance (it sees shutdown). */
static void lw_cancel_all(lull_wheel *w)
{
    for (unsigned i = 0; i < w->nshards; i++) {
        struct lw_shard *sh = &w->shards[i];
        lw_lock(sh);
        for (unsigned l = 0; l < LW_LISTS; l++) {
            uint32_t cur = sh->head[l];
            sh->head[l] = LW_NIL;
            while (cur != LW_NIL) {
                struct lull__wtimer *r = lw_rec(&w->slab, cur);
                uint32_t next = r->next;
                /* relaxed: a listed timer's state changes only under the lock. */
                uint32_t e = LW_EPOCH(__atomic_load_n(&r->state, __ATOMIC_RELAXED));
                lw_set_where(r, LW_NOWHERE);
                if (lull__wslot_end(&w->slab, r, e))
                    lull__wslot_push(&w->slab, cur);
                lw_unreserve(w);
                cur = next;
            }
        }
        memset(sh->bitmap, 0, sizeof(sh->bitmap));
        sh->levels = 0;
        /* relaxed: as in lw_place. */
        __atomic_store_n(&sh->earliest, UINT64_MAX, __ATOMIC_RELAXED);
        lw_unlock(sh);
    }
}

int lull_wheel_destroy(lull_wheel *w, uint64_t drain_timeout_ns)
{
    if (!w)
        return -EINVAL;
    if (lw_in_callback(w, false, 0))
        return -EDEADLK;
    pthread_mutex_lock(&w->mu);
    /* relaxed: a second destroy is a caller bug; this only keeps it from
     * tearing the wheel down twice while the first still runs. */
    if (__atomic_load_n(&w->shutdown, __ATOMIC_RELAXED)) {
        pthread_mutex_unlock(&w->mu);
        return -ESHUTDOWN;
    }
    /* seq_cst: pairs with the seq_cst load after the fire CAS in
     * lw_fire_all: a callback whose fire CAS comes after this store never
     * runs.  Schedulers read it under their shard lock, which lw_cancel_all
     * takes after this store. */
    __atomic_store_n(&w->shutdown, 1, __ATOMIC_SEQ_CST);
    w->stop = true;
    pthread_cond_signal(&w->dcv);
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);

    lw_cancel_all(w);

    struct timespec ts;
    if (drain_timeout_ns)
        lw_abs_mono(&ts, drain_timeout_ns);
    pthread_mutex_lock(&w->mu);
    while (w->users > 0 || (w->has_driver && !w->driver_exited)) {
        if (!drain_timeout_ns) {
            pthread_cond_wait(&w->cv, &w->mu);
        } else if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) == ETIMEDOUT &&
                   (w->users > 0 || (w->has_driver && !w->driver_exited))) {
            /* callbacks outlast the timeout: the last thread out frees w */
            w->orphaned = true;
            if (w->has_driver)
                pthread_detach(w->driver);
            pthread_mutex_unlock(&w->mu);
            return -ETIMEDOUT;
        }
    }
    pthread_mutex_unlock(&w->mu);
    if (w->has_driver)
        pthread_join(w->driver, NULL);
    lw_free(w);
    /* The wheel defers nothing through RCU itself, but its callbacks may
     * have (every *_destroy ends with a barrier, see <lull/rcu.h>); inside
     * a read-side section this is -EDEADLK and skipped. */
    (void)lull_barrier();
    return 0;
}

/* ---- schedule, cancel, reschedule ----------------------------------------- */

int lull_wheel_schedule(lull_wheel *w, uint64_t delay_ns, lull_timer_fn fn, void *arg,
                        lull_timer *t)
{
    if (!w || !fn || !t)
        return -EINVAL;
    /* relaxed: a fast refusal only; the check that counts is under the
     * shard lock below. */
    if (__atomic_load_n(&w->shutdown, __ATOMIC_RELAXED))
        return -ESHUTDOWN;
    int err = lw_reserve(w);
    if (err)
        return err;
    uint32_t slot, e;
    err = lull__wslot_alloc(&w->slab, &slot, &e);
    if (err) {
        lw_unreserve(w);
        return err;
    }
    struct lull__wtimer *r = lw_rec(&w->slab, slot);
    uint64_t d = lw_deadline(w, delay_ns);
    unsigned si = lw_my_shard(w);
    struct lw_shard *sh = &w->shards[si];
    r->fn = fn;
    r->arg = arg;
    /* release: pairs with the acquire load in lw_shard_of. */
    __atomic_store_n(&r->shard, (uint8_t)si, __ATOMIC_RELEASE);
    lw_lock(sh);
    /* relaxed: ordered by the shard lock.  destroy stores shutdown before it
     * sweeps this shard under the lock: either we see the flag, or the
     * sweep sees our timer. */
    if (lull__unlikely(__atomic_load_n(&w->shutdown, __ATOMIC_RELAXED))) {
        lw_unlock(sh);
        lull__wslot_unuse(&w->slab, slot, e);
        lw_unreserve(w);
        return -ESHUTDOWN;
    }
    lw_publish(w, sh, slot, r, e, d);
    *t = LW_HANDLE(e, slot);    /* before fn can run: the unlock publishes it */
    lw_unlock(sh);
    lw_kick(w, d);
    return 0;
}

static int lw_cancel(lull_wheel *w, lull_timer t, uint32_t *ep, struct lull__wtimer **rp)
{
    uint32_t slot, e;
    struct lull__wtimer *r;
    if (!lw_decode(w, t, &slot, &e, &r))
        return -ESTALE;
    *ep = e;
    *rp = r;
    /* acquire: pairs with lw_publish's release store (for lw_shard_of). */
    uint64_t s = __atomic_load_n(&r->state, __ATOMIC_ACQUIRE);
    int rc = lw_judge(s, e);
    if (rc)
        return rc;
    struct lw_shard *sh = lw_shard_of(w, r);
    lw_lock(sh);
    /* acquire: the fire CAS of a collected timer happens outside the lock. */
    s = __atomic_load_n(&r->state, __ATOMIC_ACQUIRE);
    rc = lw_judge(s, e);
    if (rc) {
        lw_unlock(sh);
        return rc;
    }
    /* In a list of this shard, or collected by an advance: see lw_where
     * for why this is read atomically and trusted only after the CAS. */
    bool listed = lw_where(r) == LW_IN_LIST;
    /* seq_cst: one total order on the word decides between this cancel and
     * the fire CAS of an advance that collected the timer; winning it also
     * proves that `listed` was read from incarnation e. */
    bool won = __atomic_compare_exchange_n(&r->state, &s, LW_WORD(e, LW_CANCELLED), false,
                                           __ATOMIC_SEQ_CST, __ATOMIC_ACQUIRE);
    if (won && listed) {
        /* in a list: nobody else may touch it without this lock */
        lw_unlink(w, sh, slot, r);
        bool push = lull__wslot_end(&w->slab, r, e);
        lw_unlock(sh);
        if (push)
            lull__wslot_push(&w->slab, slot);   /* reusable at once */
        lw_unreserve(w);
        return 0;
    }
    lw_unlock(sh);
    if (won) {
        lw_unreserve(w);    /* capacity back at once; the advance frees the slot */
        return 0;
    }
    rc = lw_judge(s, e);
    return rc ? rc : -ESTALE;
}

int lull_wheel_cancel(lull_wheel *w, lull_timer t)
{
    if (!w)
        return -EINVAL;
    uint32_t e;
    struct lull__wtimer *r;
    return lw_cancel(w, t, &e, &r);
}

int lull_wheel_cancel_sync(lull_wheel *w, lull_timer t)
{
    if (!w)
        return -EINVAL;
    if (lw_in_callback(w, true, t))
        return -EDEADLK;
    uint32_t e;
    struct lull__wtimer *r;
    int rc = lw_cancel(w, t, &e, &r);
    if (rc != -EINPROGRESS)
        return rc;
    pthread_mutex_lock(&w->mu);
    w->users++;
    /* seq_cst: the store-buffer pattern with lw_end_fired (its exchange of
     * the state word, then its load of waiters): either it sees us waiting
     * and broadcasts, or we see the state word move on. */
    __atomic_fetch_add(&w->waiters, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&r->state, __ATOMIC_SEQ_CST) == LW_WORD(e, LW_RUNNING))
        pthread_cond_wait(&w->cv, &w->mu);
    /* relaxed: only the count matters. */
    __atomic_fetch_sub(&w->waiters, 1, __ATOMIC_RELAXED);
    bool free_it = lw_leave_locked(w);
    pthread_mutex_unlock(&w->mu);
    if (free_it)
        lw_free(w);
    return -EINPROGRESS;
}

int lull_wheel_reschedule(lull_wheel *w, lull_timer t, uint64_t delay_ns, lull_timer *nt)
{
    if (!w || !nt)
        return -EINVAL;
    /* relaxed: fast refusal; rechecked under the lock as in schedule. */
    if (__atomic_load_n(&w->shutdown, __ATOMIC_RELAXED))
        return -ESHUTDOWN;
    uint32_t slot, e;
    struct lull__wtimer *r;
    if (!lw_decode(w, t, &slot, &e, &r))
        return -ESTALE;
    /* acquire: as in lw_cancel. */
    uint64_t s = __atomic_load_n(&r->state, __ATOMIC_ACQUIRE);
    if (s != LW_WORD(e, LW_PENDING))
        return -ESTALE;
    uint64_t d = lw_deadline(w, delay_ns);
    struct lw_shard *sh = lw_shard_of(w, r);

    /* Once per 2^32 reschedules of one timer its slot runs out of epochs:
     * the timer moves to another slot and this one retires (the only case
     * in which a reschedule takes a slot, and may fail with -ENOMEM). */
    uint32_t nslot = slot, ne = e + 1;
    if (lull__unlikely(e == UINT32_MAX)) {
        int err = lull__wslot_alloc(&w->slab, &nslot, &ne);
        if (err)
            return err;
    }
    lw_lock(sh);
    /* acquire: as in lw_cancel. */
    s = __atomic_load_n(&r->state, __ATOMIC_ACQUIRE);
    int rc = s != LW_WORD(e, LW_PENDING) ? -ESTALE :
             /* relaxed: ordered by the shard lock (see schedule) */
             __atomic_load_n(&w->shutdown, __ATOMIC_RELAXED) ? -ESHUTDOWN : 0;
    uint64_t to = nslot != slot ? LW_WORD(e, LW_CANCELLED) : LW_WORD(ne, LW_PENDING);
    if (!rc) {
        /* As in lw_cancel: `listed` is trusted only once the CAS is won.
         * seq_cst: same total order as the fire CAS and cancel's. */
        bool listed = lw_where(r) == LW_IN_LIST;
        if (!__atomic_compare_exchange_n(&r->state, &s, to, false,
                                         __ATOMIC_SEQ_CST, __ATOMIC_ACQUIRE)) {
            rc = -ESTALE;   /* collected, and its advance fired it first */
        } else if (listed) {
            lw_unlink(w, sh, slot, r);
            if (nslot != slot)
                (void)lull__wslot_end(&w->slab, r, e);   /* e is the last epoch: retires */
        }
    }
    if (rc) {
        lw_unlock(sh);
        if (nslot != slot)
            lull__wslot_unuse(&w->slab, nslot, ne);
        return rc;
    }
    struct lull__wtimer *nr = r;
    if (nslot != slot) {
        nr = lw_rec(&w->slab, nslot);
        nr->fn = r->fn;
        nr->arg = r->arg;
        /* release: as in schedule. */
        __atomic_store_n(&nr->shard, (uint8_t)(sh - w->shards), __ATOMIC_RELEASE);
    }
    lw_publish(w, sh, nslot, nr, ne, d);
    *nt = LW_HANDLE(ne, nslot);
    lw_unlock(sh);
    lw_kick(w, d);
    return 0;
}

/* ---- advance ----------------------------------------------------------------- */

static bool lw_before(struct lull__wslab *sl, uint32_t a, uint32_t b)
{
    struct lull__wtimer *ra = lw_rec(sl, a), *rb = lw_rec(sl, b);
    /* relaxed: under the shard lock, d and seq of a listed or collected
     * timer cannot change. */
    uint64_t da = __atomic_load_n(&ra->d, __ATOMIC_RELAXED);
    uint64_t db = __atomic_load_n(&rb->d, __ATOMIC_RELAXED);
    return da < db || (da == db && __atomic_load_n(&ra->seq, __ATOMIC_RELAXED) <
                                   __atomic_load_n(&rb->seq, __ATOMIC_RELAXED));
}

static uint32_t lw_merge(struct lull__wslab *sl, uint32_t a, uint32_t b)
{
    uint32_t head = LW_NIL, *tail = &head;
    while (a != LW_NIL && b != LW_NIL) {
        uint32_t *pick = lw_before(sl, b, a) ? &b : &a;
        *tail = *pick;
        tail = &lw_rec(sl, *pick)->fnext;
        *pick = *tail;
    }
    *tail = a != LW_NIL ? a : b;
    return head;
}

/* Bottom-up merge sort of an fnext list by (deadline, seq): O(k log k). */
static uint32_t lw_sort(struct lull__wslab *sl, uint32_t list)
{
    uint32_t bin[33];
    unsigned nbin = 0;
    while (list != LW_NIL) {
        uint32_t run = list;
        struct lull__wtimer *r = lw_rec(sl, run);
        list = r->fnext;
        r->fnext = LW_NIL;
        unsigned i = 0;
        for (; i < nbin && bin[i] != LW_NIL; i++) {
            run = lw_merge(sl, bin[i], run);
            bin[i] = LW_NIL;
        }
        if (i == nbin)
            nbin++;
        bin[i] = run;
    }
    uint32_t out = LW_NIL;
    for (unsigned i = 0; i < nbin; i++)
        if (bin[i] != LW_NIL)
            out = lw_merge(sl, bin[i], out);
    return out;
}

static void lw_take(struct lull__wtimer *r, uint32_t slot, uint32_t *out)
{
    lw_set_where(r, LW_COLLECTED);
    /* relaxed: a listed timer's state changes only under the lock we hold. */
    r->fire_epoch = LW_EPOCH(__atomic_load_n(&r->state, __ATOMIC_RELAXED));
    r->fnext = *out;
    *out = slot;
}

/* Collect sh's timers due at clock n (shard lock held); returns them sorted. */
static uint32_t lw_collect(lull_wheel *w, struct lw_shard *sh, uint64_t n)
{
    struct lull__wslab *sl = &w->slab;
    uint64_t T = lw_tick(w, n);
    if (T < sh->now)
        T = sh->now;    /* a clock that stepped back: time stands still */
    uint32_t out = LW_NIL;
    /* relaxed: every seq in this shard was taken under its lock, before. */
    sh->mark = __atomic_load_n(&w->seq, __ATOMIC_RELAXED);
    sh->last_n = n;

    /* The due list: ticks that have come; fire those whose ns has too. */
    uint32_t cur = sh->head[LW_DUE];
    sh->head[LW_DUE] = LW_NIL;
    while (cur != LW_NIL) {
        struct lull__wtimer *r = lw_rec(sl, cur);
        uint32_t next = r->next;
        /* relaxed: stable under the lock. */
        if (__atomic_load_n(&r->d, __ATOMIC_RELAXED) <= n)
            lw_take(r, cur, &out);
        else
            lw_link(w, sh, LW_DUE, cur, r);
        cur = next;
    }

    /* Empty the earliest bucket while it starts no later than T. */
    while (sh->levels) {
        unsigned level = (unsigned)__builtin_ctz(sh->levels);
        unsigned b = (unsigned)__builtin_ctzll(sh->bitmap[level]);
        uint64_t start = lw_bucket_start(sh, level, b);
        if (start > T)
            break;
        unsigned list = level * LW_SLOTS + b;
        cur = sh->head[list];
        sh->head[list] = LW_NIL;
        sh->bitmap[level] &= ~((uint64_t)1 << b);
        if (!sh->bitmap[level])
            sh->levels &= ~(1u << level);
        sh->now = start;    /* no timer is earlier than start: a valid now */
        sh->st_buckets++;
        while (cur != LW_NIL) {
            struct lull__wtimer *r = lw_rec(sl, cur);
            uint32_t next = r->next;
            /* relaxed: stable under the lock. */
            uint64_t d = __atomic_load_n(&r->d, __ATOMIC_RELAXED);
            if (lw_tick(w, d) > start) {
                lw_place(w, sh, cur, r, d);     /* cascade: to a lower level */
                sh->st_moves++;
            } else if (d <= n) {
                lw_take(r, cur, &out);
            } else {
                lw_link(w, sh, LW_DUE, cur, r); /* this tick, a later ns */
            }
            cur = next;
        }
    }
    sh->now = T;

    uint64_t earliest = UINT64_MAX;
    for (cur = sh->head[LW_DUE]; cur != LW_NIL; cur = lw_rec(sl, cur)->next) {
        /* relaxed: stable under the lock. */
        uint64_t d = __atomic_load_n(&lw_rec(sl, cur)->d, __ATOMIC_RELAXED);
        if (d < earliest)
            earliest = d;
    }
    if (sh->levels) {
        unsigned level = (unsigned)__builtin_ctz(sh->levels);
        uint64_t start = lw_bucket_start(sh, level, (unsigned)__builtin_ctzll(sh->bitmap[level]));
        if (start * w->tick_ns < earliest)
            earliest = start * w->tick_ns;  /* <= every deadline in it; no overflow */
    }
    /* relaxed: it accounts for every timer in the shard (we hold the lock),
     * so a scheduler's seq_cst lowering before it is not lost to the
     * driver (lw_kick): what it reads instead is no later. */
    __atomic_store_n(&sh->earliest, earliest, __ATOMIC_RELAXED);
    return lw_sort(sl, out);
}

/* The head of one shard's sorted fire list, with its key. */
struct lw_cursor {
    uint32_t slot, fe;
    uint64_t d, seq;
};

/* Point c at the first timer of the list from slot that this advance may
 * still fire, reading its key seqlock-style (the list is sorted, but a
 * timer may be cancelled or rescheduled since: its key is then not used).
 * Timers whose collected incarnation was cancelled are freed here. */
static void lw_cursor_load(lull_wheel *w, struct lw_cursor *c, uint32_t slot)
{
    while (slot != LW_NIL) {
        struct lull__wtimer *r = lw_rec(&w->slab, slot);
        uint32_t fe = r->fire_epoch;
        /* acquire: opens the seqlock read of d and seq. */
        uint64_t s = __atomic_load_n(&r->state, __ATOMIC_ACQUIRE);
        if (s == LW_WORD(fe, LW_PENDING)) {
            /* acquire (both): if they read a value stored (with release)
             * by a reschedule or a later incarnation, the state word's
             * change, made before that store, is visible to the recheck.
             * (Acquire loads rather than an acquire fence: TSan models
             * them; a plain load on x86 either way.) */
            uint64_t d = __atomic_load_n(&r->d, __ATOMIC_ACQUIRE);
            uint64_t q = __atomic_load_n(&r->seq, __ATOMIC_ACQUIRE);
            if (__atomic_load_n(&r->state, __ATOMIC_RELAXED) == s) {
                *c = (struct lw_cursor){ slot, fe, d, q };
                return;
            }
            continue;   /* changed under us: judge it again */
        }
        uint32_t next = r->fnext;
        if (s == LW_WORD(fe, LW_CANCELLED) && lull__wslot_end(&w->slab, r, fe))
            lull__wslot_push(&w->slab, slot);
        slot = next;    /* rescheduled (a newer epoch): no longer ours */
    }
    c->slot = LW_NIL;
}

/* The callback of incarnation e of r has returned: end it (FREE(e + 1), or
 * retired) and wake cancel_sync callers waiting for it.  Returns whether to
 * push the slot. */
static bool lw_end_fired(lull_wheel *w, struct lull__wtimer *r, uint32_t e)
{
    bool last = e == UINT32_MAX;
    /* seq_cst exchange (only this thread writes a RUNNING word): the
     * store-buffer pattern with cancel_sync, which RMWs waiters and then
     * loads the state word, both seq_cst: either it sees the word move on,
     * or we see it waiting and broadcast.  Also a release: the callback's
     * effects happen before cancel_sync returns. */
    __atomic_exchange_n(&r->state, last ? (uint64_t)LW_RETIRED : LW_WORD(e + 1, LW_FREE),
                        __ATOMIC_SEQ_CST);
    if (last)   /* relaxed: a counter for check and stats */
        __atomic_fetch_add(&w->slab.retired, 1, __ATOMIC_RELAXED);
    /* seq_cst: see above. */
    if (__atomic_load_n(&w->waiters, __ATOMIC_SEQ_CST)) {
        pthread_mutex_lock(&w->mu);
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
    return !last;
}

static size_t lw_fire_all(lull_wheel *w, const uint32_t *lists)
{
    struct lull__wslab *sl = &w->slab;
    struct lw_cursor cur[LW_MAX_SHARDS];
    size_t ran = 0;
    for (unsigned i = 0; i < w->nshards; i++)
        lw_cursor_load(w, &cur[i], lists[i]);
    for (;;) {
        struct lw_cursor *c = NULL;
        for (unsigned i = 0; i < w->nshards; i++)
            if (cur[i].slot != LW_NIL &&
                (!c || cur[i].d < c->d || (cur[i].d == c->d && cur[i].seq < c->seq)))
                c = &cur[i];
        if (!c)
            break;
        struct lull__wtimer *r = lw_rec(sl, c->slot);
        uint32_t next = r->fnext;
        uint64_t s = LW_WORD(c->fe, LW_PENDING);
        /* seq_cst: the fire CAS.  Races cancel's and reschedule's CAS on a
         * collected timer (one total order decides), and is ordered before
         * the shutdown load below (destroy's seq_cst store).  acquire on
         * success: fn and arg as published by lw_publish. */
        if (__atomic_compare_exchange_n(&r->state, &s, LW_WORD(c->fe, LW_RUNNING), false,
                                        __ATOMIC_SEQ_CST, __ATOMIC_ACQUIRE)) {
            lw_unreserve(w);
            /* seq_cst: see destroy. */
            if (!__atomic_load_n(&w->shutdown, __ATOMIC_SEQ_CST)) {
                lull_timer h = LW_HANDLE(c->fe, c->slot);
                struct lw_frame f = { w, h, lw_frames };
                lw_frames = &f;
                r->fn(h, r->arg);
                lw_frames = f.up;
                ran++;
            }
            bool push = lw_end_fired(w, r, c->fe);
            if (push)
                lull__wslot_push(sl, c->slot);
        } else if (s == LW_WORD(c->fe, LW_CANCELLED)) {
            if (lull__wslot_end(sl, r, c->fe))
                lull__wslot_push(sl, c->slot);
        }
        lw_cursor_load(w, c, next);
    }
    return ran;
}

size_t lull_wheel_advance(lull_wheel *w)
{
    if (!w || lw_in_callback(w, false, 0))
        return 0;   /* a callback's own wheel: a nested advance would reorder */
    pthread_mutex_lock(&w->mu);
    w->users++;
    /* relaxed (both): mu orders them (destroy stores under mu). */
    while (w->advancing && !__atomic_load_n(&w->shutdown, __ATOMIC_RELAXED))
        pthread_cond_wait(&w->cv, &w->mu);
    size_t ran = 0;
    if (!__atomic_load_n(&w->shutdown, __ATOMIC_RELAXED)) {
        w->advancing = true;
        pthread_mutex_unlock(&w->mu);

        uint32_t lists[LW_MAX_SHARDS];
        uint64_t n = lw_now(w);
        for (unsigned i = 0; i < w->nshards; i++) {
            lw_lock(&w->shards[i]);
            lists[i] = lw_collect(w, &w->shards[i], n);
            lw_unlock(&w->shards[i]);
        }
        ran = lw_fire_all(w, lists);

        pthread_mutex_lock(&w->mu);
        w->advancing = false;
    }
    bool free_it = lw_leave_locked(w);
    pthread_mutex_unlock(&w->mu);
    if (free_it)
        lw_free(w);
    return ran;
}

uint64_t lull_wheel_next_deadline(lull_wheel *w)
{
    /* relaxed: a counter; nothing pending means none, whatever the hints
     * (lowered by schedules, raised only by advances) still say. */
    if (!w || !__atomic_load_n(&w->pending, __ATOMIC_RELAXED))
        return UINT64_MAX;
    uint64_t m = UINT64_MAX;
    for (unsigned i = 0; i < w->nshards; i++) {
        /* seq_cst: the driver's half of the store-buffer pattern (lw_kick);
         * a plain load on x86. */
        uint64_t e = __atomic_load_n(&w->shards[i].earliest, __ATOMIC_SEQ_CST);
        if (e < m)
            m = e;
    }
    return m;
}

size_t lull_wheel_pending(lull_wheel *w)
{
    /* relaxed: a counter. */
    return w ? __atomic_load_n(&w->pending, __ATOMIC_RELAXED) : 0;
}

/* ---- test hooks ---------------------------------------------------------------- */

void lull__wheel_stats(lull_wheel *w, struct lull__wheel_stats *st)
{
    memset(st, 0, sizeof(*st));
    st->shards = w->nshards;
    for (unsigned i = 0; i < w->nshards; i++) {
        lw_lock(&w->shards[i]);
        st->buckets += w->shards[i].st_buckets;
        st->moves += w->shards[i].st_moves;
        lw_unlock(&w->shards[i]);
    }
    /* relaxed: counters. */
    st->slots = __atomic_load_n(&w->slab.fresh, __ATOMIC_RELAXED);
    st->retired = __atomic_load_n(&w->slab.retired, __ATOMIC_RELAXED);
}

int lull__wheel_set_epoch(lull_wheel *w, lull_timer *t, uint32_t e)
{
    uint32_t slot, old;
    struct lull__wtimer *r;
    if (!e || !lw_decode(w, *t, &slot, &old, &r))
        return -ESTALE;
    struct lw_shard *sh = lw_shard_of(w, r);
    lw_lock(sh);
    /* relaxed (both): a listed timer's state changes only under the lock. */
    if (__atomic_load_n(&r->state, __ATOMIC_RELAXED) != LW_WORD(old, LW_PENDING) ||
        lw_where(r) != LW_IN_LIST) {
        lw_unlock(sh);
        return -ESTALE;
    }
    __atomic_store_n(&r->state, LW_WORD(e, LW_PENDING), __ATOMIC_RELAXED);
    *t = LW_HANDLE(e, slot);
    lw_unlock(sh);
    return 0;
}
