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
 *     on the shard's due list (only the current tick's can), or in the
 *     current tick's bucket while a bound says none of it is due yet, so a
 *     timer fires at the first advance whose clock reads >= its deadline:
 *     never early, never a tick late.
 *   - Collected timers are marked COLLECTED, their keys (deadline, seq) read
 *     under the shard lock into an array that is sorted once every shard is
 *     collected (a shard that collects more than the array holds sorts its
 *     own list, merged in as they fire).  Each fire is a CAS COLLECTED ->
 *     RUNNING on the timer's state word, racing cancel's CAS COLLECTED ->
 *     CANCELLED (and reschedule's COLLECTED -> MOVED): exactly one wins.  A
 *     timer in a list (PENDING) is changed only under its shard's lock, with
 *     plain stores.
 */
#include "wheel_internal.h"

#include <lull/rcu.h>

#include <sched.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

unsigned lull__wheel_shards;
unsigned lull__wslab_cache_max = LW_CACHE_MAX;

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

/* lw_tick's constants.  For a tick that is no power of two, with
 * l = floor(log2 tick): magic = 1 + floor(2^(65 + l) / tick) - 2^64 (the low
 * 64 bits of the 65-bit multiplier), computed as libdivide does without
 * overflowing; then ns / tick = (((ns - hi) >> 1) + hi) >> l, where
 * hi = (magic * ns) >> 64. */
void lull__wheel_tick_init(struct lull_wheel *w, uint64_t tick_ns)
{
    w->tick_ns = tick_ns;
    if (!(tick_ns & (tick_ns - 1))) {
        w->tick_shift = (unsigned)__builtin_ctzll(tick_ns);
        w->tick_magic = 0;
        w->tick_more = 0;
        return;
    }
    unsigned l = 63u - (unsigned)__builtin_clzll(tick_ns);
    unsigned __int128 num = (unsigned __int128)1 << (64 + l);
    uint64_t m = (uint64_t)(num / tick_ns);     /* < 2^64: tick_ns > 2^l */
    uint64_t rem = (uint64_t)(num % tick_ns);
    m += m;
    uint64_t rem2 = rem + rem;
    if (rem2 >= tick_ns || rem2 < rem)
        m += 1;
    w->tick_shift = 64;
    w->tick_magic = m + 1;
    w->tick_more = l;
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
    /* acquire: pairs with the release store that handed out slots below
     * fresh (lull__wslot_alloc), so the slot's chunk is installed. */
    if (*e == 0 || *slot >= __atomic_load_n(&w->slab.fresh, __ATOMIC_ACQUIRE))
        return false;
    *r = lw_rec(&w->slab, *slot);
    return true;
}

/* What a state word means to a call holding epoch e: 0 pending (act),
 * -EINPROGRESS running, -ESTALE otherwise. */
static int lw_judge(uint64_t s, uint32_t e)
{
    if (LW_EPOCH(s) != e)
        return -ESTALE;
    unsigned st = LW_ST(s);
    return lw_is_pending(st) ? 0 : st == LW_RUNNING ? -EINPROGRESS : -ESTALE;
}

/* The shard of a pending state word (its incarnation's; the caller
 * rechecks the word under that shard's lock). */
static struct lw_shard *lw_shard_of(lull_wheel *w, uint64_t s)
{
    return &w->shards[LW_SHARD(s) & (w->nshards - 1)];
}

/* With max_timers, `reserved` counts pending timers and enforces the limit;
 * without, nothing is reserved (the shards count under their locks). */
static int lw_reserve(lull_wheel *w)
{
    if (!w->max_timers)
        return 0;
    /* relaxed: exceeding max_timers is prevented by the CAS itself, and
     * nothing else is published through the counter. */
    size_t c = __atomic_load_n(&w->reserved, __ATOMIC_RELAXED);
    do {
        if (c >= w->max_timers)
            return -ENOSPC;
    } while (!__atomic_compare_exchange_n(&w->reserved, &c, c + 1, true,
                                          __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return 0;
}

static void lw_unreserve(lull_wheel *w)
{
    if (w->max_timers)  /* relaxed: as in lw_reserve. */
        __atomic_fetch_sub(&w->reserved, 1, __ATOMIC_RELAXED);
}

/* sh->count += delta, shard lock held.  relaxed: every write is under the
 * lock; lull_wheel_pending reads it without, as a counter. */
static void lw_count(struct lw_shard *sh, int delta)
{
    __atomic_store_n(&sh->count, __atomic_load_n(&sh->count, __ATOMIC_RELAXED) + (uint64_t)delta,
                     __ATOMIC_RELAXED);
}

/* ---- the shards' caches of free slots (shard lock held) -------------------- */

/* Take slot, the top of sh's cache: returns its record; *e is the epoch of
 * its next incarnation. */
static inline struct lull__wtimer *lw_cache_take(lull_wheel *w, struct lw_shard *sh, uint32_t slot,
                                                 uint32_t *e)
{
    struct lull__wtimer *r = lw_rec(&w->slab, slot);
    sh->free_top = lw_next(r);
    /* relaxed: written under the lock; schedule reads it as a hint. */
    __atomic_store_n(&sh->nfree, sh->nfree - 1, __ATOMIC_RELAXED);
    /* relaxed: the FREE word was stored before the slot was put in the
     * cache, under this lock. */
    *e = LW_EPOCH(__atomic_load_n(&r->state, __ATOMIC_RELAXED));
    return r;
}

/* Keep the free slots first..last (n slots, linked by free_next, their
 * state words FREE; rl is last's record) in sh's cache if they fit.  Returns
 * false when they do not: the caller pushes them on the free stack (after
 * unlocking). */
static bool lw_cache_put(struct lw_shard *sh, uint32_t first, struct lull__wtimer *rl,
                         unsigned n)
{
    /* relaxed: a test hook, set while no wheel is in use. */
    if (sh->nfree + n > __atomic_load_n(&lull__wslab_cache_max, __ATOMIC_RELAXED))
        return false;
    lw_set_next(rl, sh->free_top);
    sh->free_top = first;
    /* relaxed: as in lw_cache_take. */
    __atomic_store_n(&sh->nfree, sh->nfree + n, __ATOMIC_RELAXED);
    return true;
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

/* Link r at the head of `list` (its state word says which list already,
 * or the caller stores it). */
static void lw_link(struct lull__wslab *sl, struct lw_shard *sh, unsigned list, uint32_t slot,
                    struct lull__wtimer *r)
{
    uint32_t h = sh->head[list];
    lw_set_next(r, h);
    r->prev = LW_NIL;
    if (h != LW_NIL)
        lw_rec(sl, h)->prev = slot;
    sh->head[list] = slot;
}

/* Detach `list` from sh and visit each of its records: fn(ctx, slot, r).
 * A record's link is read before fn gets it (fn may relink it), and the
 * next record's load is started then (the walk is a chain of dependent
 * loads).  The caller fixes the bucket's bitmap.  Inlined with fn. */
typedef void (*lw_visit_fn)(void *ctx, uint32_t slot, struct lull__wtimer *r);

static inline __attribute__((always_inline)) void
lw_walk_list(struct lull__wslab *sl, struct lw_shard *sh, unsigned list, lw_visit_fn fn, void *ctx)
{
    uint32_t cur = sh->head[list];
    sh->head[list] = LW_NIL;
    struct lull__wtimer *r = cur != LW_NIL ? lw_rec(sl, cur) : NULL;
    while (cur != LW_NIL) {
        uint32_t next = lw_next(r);
        struct lull__wtimer *rn = NULL;
        if (next != LW_NIL) {
            rn = lw_rec(sl, next);
            __builtin_prefetch(rn);
        }
        fn(ctx, cur, r);
        cur = next;
        r = rn;
    }
}

/* Lower sh's earliest-deadline hint to d if it is later. */
static void lw_lower_earliest(struct lw_shard *sh, uint64_t d)
{
    /* relaxed load: we hold the lock every store is made under.  seq_cst
     * store: the first half of the store-buffer pattern with the driver
     * (lw_kick, lw_driver_sleep); a store only when the hint goes down. */
    if (d < __atomic_load_n(&sh->earliest, __ATOMIC_RELAXED))
        __atomic_store_n(&sh->earliest, d, __ATOMIC_SEQ_CST);
}

/* A timer with deadline d is (or stays) in `list`: mark its bucket
 * occupied, and keep a level-0 bucket's lower bound on its deadlines. */
static void lw_occupy(struct lw_shard *sh, unsigned list, uint64_t d)
{
    if (list == LW_DUE)
        return;
    unsigned level = list / LW_SLOTS, b = list % LW_SLOTS;
    sh->bitmap[level] |= (uint64_t)1 << b;
    sh->levels |= 1u << level;
    if (level == 0 && d < sh->min0[b])
        sh->min0[b] = d;
}

/* Link PENDING r (deadline d) into `list`, and note the list in its word. */
static void lw_insert(struct lull__wslab *sl, struct lw_shard *sh, unsigned list, uint32_t slot,
                      struct lull__wtimer *r, uint64_t d)
{
    lw_occupy(sh, list, d);
    lw_link(sl, sh, list, slot, r);
    /* relaxed (both): a PENDING word changes only under the lock we hold;
     * to a lock-free reader only its epoch and state matter. */
    uint64_t s = __atomic_load_n(&r->state, __ATOMIC_RELAXED);
    __atomic_store_n(&r->state, LW_WITH_LIST(s, list), __ATOMIC_RELAXED);
}

/* Put a PENDING timer where its deadline d belongs relative to sh->now. */
static inline __attribute__((always_inline)) void
lw_place(lull_wheel *w, struct lw_shard *sh, uint32_t slot, struct lull__wtimer *r, uint64_t d)
{
    lw_insert(&w->slab, sh, lw_list_of(sh, lw_tick(w, d)), slot, r, d);
    lw_lower_earliest(sh, d);
}

/* Take r (slot) out of `list`, the list it is in. */
static void lw_unlink(struct lull__wslab *sl, struct lw_shard *sh, unsigned list, uint32_t slot,
                      struct lull__wtimer *r)
{
    uint32_t n = lw_next(r), p = r->prev;
    if (p != LW_NIL) {
        lw_set_next(lw_rec(sl, p), n);
    } else {
        sh->head[list] = n;
        if (n == LW_NIL && list != LW_DUE) {
            unsigned level = list / LW_SLOTS;
            sh->bitmap[level] &= ~((uint64_t)1 << (list % LW_SLOTS));
            if (!sh->bitmap[level])
                sh->levels &= ~(1u << level);
            if (level == 0)
                sh->min0[list] = UINT64_MAX;
        }
    }
    if (n != LW_NIL)
        lw_rec(sl, n)->prev = p;
}

/* Schedule order.  Each shard keeps the last seq it handed out in
 * w->seqs[si]; a new one is above every shard's, with the shard in its low
 * bits (unique, and strictly increasing within a shard):
 *     seq = ((max_i seqs[i] >> 4) + 1) << 4 | si.
 * So if schedule A happens before schedule B, B reads A's seqs entry (or a
 * later value: each entry only grows, written under its shard's lock) and
 * gets a larger seq -- the order of schedules, with no shared
 * read-modify-write (an RMW is a full barrier on x86, the single largest
 * cost of a schedule).  Concurrent schedules in different shards may come
 * out either way, as they may happen either way. */
_Static_assert(LW_MAX_SHARDS <= 16, "a seq keeps its shard in 4 bits");

static uint64_t lw_seq_floor(lull_wheel *w)
{
    /* relaxed (all): coherence alone gives what the comment above needs (a
     * read ordered after a write by happens-before sees it, or a later
     * value). */
    unsigned n = w->nshards;
    uint64_t m = __atomic_load_n(&w->seqs[0], __ATOMIC_RELAXED);
    if (n > 1) {
        uint64_t v = __atomic_load_n(&w->seqs[1], __ATOMIC_RELAXED);
        m = v > m ? v : m;
        for (unsigned i = 2; i < n; i++) {
            v = __atomic_load_n(&w->seqs[i], __ATOMIC_RELAXED);
            m = v > m ? v : m;
        }
    }
    return ((m >> 4) + 1) << 4;
}

/* A new seq for a timer of shard si (its lock held). */
static uint64_t lw_next_seq(lull_wheel *w, unsigned si)
{
    uint64_t q = lw_seq_floor(w) | si;
    /* relaxed: see above; written only under shard si's lock. */
    __atomic_store_n(&w->seqs[si], q, __ATOMIC_RELAXED);
    return q;
}

/* Arm incarnation e of slot in shard si with deadline d: shard lock held. */
static inline __attribute__((always_inline)) void
lw_publish(lull_wheel *w, struct lw_shard *sh, unsigned si, uint32_t slot, struct lull__wtimer *r,
           uint32_t e, uint64_t d, lull_timer_fn fn, void *arg)
{
    uint64_t q = lw_next_seq(w, si);
    unsigned list = lw_list_of(sh, lw_tick(w, d));
    r->fn = fn;
    r->arg = arg;
    /* relaxed (both): a record being published is on no fire list, so the
     * advancer's seqlock read (lw_cursor_load) cannot see it; everyone else
     * reads them under this lock. */
    __atomic_store_n(&r->d, d, __ATOMIC_RELAXED);
    __atomic_store_n(&r->seq, q, __ATOMIC_RELAXED);
    /* release: publishes fn and arg (and this incarnation's d, seq) to a
     * thread that loads the word with acquire and acts on it under the
     * lock; schedule is a release, so fn sees every write made before it
     * (the advance that fires it takes this lock to collect it). */
    __atomic_store_n(&r->state, LW_WORD(e, si, LW_PENDING) | (uint64_t)list << LW_LIST_SHIFT,
                     __ATOMIC_RELEASE);
    lw_occupy(sh, list, d);
    lw_link(&w->slab, sh, list, slot, r);
    lw_lower_earliest(sh, d);
}

/* ---- the driver thread's wake-up ------------------------------------------- */

static void lw_kick(lull_wheel *w, uint64_t d)
{
    if (!w->has_driver)
        return;
    /* seq_cst: store-buffer pattern with lw_driver_sleep.  We stored the
     * shard's earliest (seq_cst, in lw_lower_earliest) and load
     * sleep_until; the
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

/* ---- who is inside w: advances, cancel_sync waiters, the driver -------------
 * An advance runs while bit LW_ADV_RUN of w->adv is set: taken with one CAS
 * when no advance runs (the common case: no mutex), given back with one CAS
 * unless someone set LW_ADV_WAIT meanwhile -- another advance, or destroy,
 * blocked on mu until it ends -- in which case the end takes mu and wakes
 * them.  Other threads inside w (cancel_sync, advances that had to wait)
 * are counted in users, under mu.  Destroy waits for all of them; when it
 * gives up (-ETIMEDOUT) the wheel is orphaned, and the last one out frees
 * it. */
#define LW_ADV_RUN  1u
#define LW_ADV_WAIT 2u

/* mu held: true while an advance runs; then also makes sure it will take
 * mu at its end and wake us (sets LW_ADV_WAIT). */
static bool lw_adv_busy_locked(lull_wheel *w)
{
    /* acquire (load, and the CAS's reload): when RUN is seen clear, it
     * pairs with the release that cleared it (lw_adv_end), so everything
     * that advance did happens before what we do next -- destroy frees w.
     * Setting WAIT makes the advancer's release CAS fail, and it then takes
     * mu to clear RUN and wake us (mu orders the rest). */
    unsigned z = __atomic_load_n(&w->adv, __ATOMIC_ACQUIRE);
    while (z & LW_ADV_RUN) {
        if ((z & LW_ADV_WAIT) ||
            __atomic_compare_exchange_n(&w->adv, &z, z | LW_ADV_WAIT, false,
                                        __ATOMIC_ACQUIRE, __ATOMIC_ACQUIRE))
            return true;
    }
    return false;
}

/* mu held: destroy gave up waiting, and nobody is inside w any more. */
static bool lw_last_out_locked(lull_wheel *w)
{
    /* acquire: as in lw_adv_busy_locked (the caller may free w).  An
     * advance that runs now has WAIT set (destroy set it before it gave
     * up) and checks this itself, under mu, at its end. */
    return w->orphaned && w->users == 0 &&
           !(__atomic_load_n(&w->adv, __ATOMIC_ACQUIRE) & LW_ADV_RUN) &&
           (!w->has_driver || w->driver_exited);
}

/* Leave the set of threads counted in users (mu held).  True when the
 * caller must free w. */
static bool lw_leave_locked(lull_wheel *w)
{
    w->users--;
    pthread_cond_broadcast(&w->cv);
    return lw_last_out_locked(w);
}

static void lw_abs_mono(struct timespec *ts, uint64_t rel_ns)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    uint64_t ns = (uint64_t)ts->tv_nsec + rel_ns % 1000000000u;
    ts->tv_sec += (time_t)(rel_ns / 1000000000u + ns / 1000000000u);
    ts->tv_nsec = (long)(ns % 1000000000u);
}

#define LW_MAX_SLEEP_NS (3600ull * 1000000000ull)   /* re-plan at least hourly */

/* lull_wheel_pending and lull_wheel_next_deadline for a wheel that exists
 * (the driver's calls: GCC 12 reads the public functions' NULL test, once
 * inlined here, as a path that stores through NULL, and warns). */
static size_t lw_pending(const lull_wheel *w)
{
    /* relaxed (all): counters.  fired first: a timer that fires while we
     * sum is then counted as still pending, never subtracted without its
     * count; exact when no call is in flight. */
    uint64_t n = 0 - __atomic_load_n(&w->fired, __ATOMIC_RELAXED);
    for (unsigned i = 0; i < w->nshards; i++)
        n += __atomic_load_n(&w->shards[i].count, __ATOMIC_RELAXED);
    return (int64_t)n > 0 ? (size_t)n : 0;
}

static uint64_t lw_next_deadline(const lull_wheel *w)
{
    /* nothing pending means none, whatever the hints (lowered by
     * schedules, raised only by advances) still say. */
    if (!lw_pending(w))
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

/* Sleep until the next deadline or a kick.  Returns true when stopping. */
static bool lw_driver_sleep(lull_wheel *w)
{
    uint64_t d = lw_next_deadline(w);
    /* seq_cst: the store-buffer pattern with lw_kick (the loads of earliest
     * in next_deadline are seq_cst too). */
    __atomic_store_n(&w->sleep_until, d, __ATOMIC_SEQ_CST);
    uint64_t d2 = lw_next_deadline(w);
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
    bool free_it = lw_last_out_locked(w);
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
    lull__wheel_tick_init(w, o.tick_ns);
    w->clock = o.clock ? o.clock : lw_mono;
    w->clock_ctx = o.clock_ctx;
    w->max_timers = o.max_timers;
    w->nshards = lw_default_shards();
    w->shards = lull__aligned_alloc(lull__cacheline, w->nshards * sizeof(struct lw_shard));
    if (!w->shards) {
        lull__wslab_fini(&w->slab);
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
        sh->free_top = LW_NIL;
        memset(sh->min0, 0xff, sizeof(sh->min0));
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
        int err = lull__thread_create(&w->driver, lw_driver_main, w);
        if (err) {
            lw_free(w);
            errno = err;
            return NULL;
        }
    }
    return w;
}

struct lw_sweep {
    lull_wheel *w;
    struct lw_shard *sh;
};

static inline __attribute__((always_inline)) void lw_sweep_one(void *ctx, uint32_t slot,
                                                               struct lull__wtimer *r)
{
    struct lw_sweep *x = ctx;
    struct lull__wslab *sl = &x->w->slab;
    /* relaxed: a listed timer's word changes only under the lock. */
    uint32_t e = LW_EPOCH(__atomic_load_n(&r->state, __ATOMIC_RELAXED));
    if (lull__wslot_end(sl, r, e) && !lw_cache_put(x->sh, slot, r, 1))
        lull__wslot_push(sl, slot);
    lw_count(x->sh, -1);
    lw_unreserve(x->w);
}

/* destroy's sweep: every timer in a shard list ends; its callback never
 * runs.  Collected (and moved) ones are ended by their advance (it sees
 * shutdown). */
static void lw_cancel_all(lull_wheel *w)
{
    struct lull__wslab *sl = &w->slab;
    for (unsigned i = 0; i < w->nshards; i++) {
        struct lw_shard *sh = &w->shards[i];
        lw_lock(sh);
        struct lw_sweep x = { w, sh };
        for (unsigned l = 0; l < LW_LISTS; l++)
            lw_walk_list(sl, sh, l, lw_sweep_one, &x);
        memset(sh->bitmap, 0, sizeof(sh->bitmap));
        memset(sh->min0, 0xff, sizeof(sh->min0));
        sh->levels = 0;
        /* relaxed: as in lw_collect (we hold the lock; nothing is left). */
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
     * lw_fire_one: a callback whose fire CAS comes after this store never
     * runs.  Schedulers (and an advance relinking a moved timer) read it
     * under their shard lock, which lw_cancel_all takes after this store. */
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
    while (w->users > 0 || lw_adv_busy_locked(w) || (w->has_driver && !w->driver_exited)) {
        if (!drain_timeout_ns) {
            pthread_cond_wait(&w->cv, &w->mu);
        } else if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) == ETIMEDOUT &&
                   (w->users > 0 || lw_adv_busy_locked(w) ||
                    (w->has_driver && !w->driver_exited))) {
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

/* The rest of a schedule, shard lock held and slot (record r, next epoch e)
 * taken: arm it, and release the lock. */
static inline __attribute__((always_inline)) void
lw_schedule_finish(lull_wheel *w, struct lw_shard *sh, unsigned si, uint32_t slot,
                   struct lull__wtimer *r, uint32_t e, uint64_t d, lull_timer_fn fn, void *arg,
                   lull_timer *t)
{
    lw_publish(w, sh, si, slot, r, e, d, fn, arg);
    lw_count(sh, 1);
    *t = LW_HANDLE(e, slot);    /* before fn can run: the unlock publishes it */
    lw_unlock(sh);
    lw_kick(w, d);
}

/* Schedule when the fast path cannot: with max_timers (a reservation), or
 * when the shard's cache is empty (a slot from the slab, which may allocate:
 * not under a spinlock). */
static inline int
lw_schedule_slow(lull_wheel *w, uint64_t d, lull_timer_fn fn, void *arg, lull_timer *t)
{
    int err = lw_reserve(w);
    if (err)
        return err;
    unsigned si = lw_my_shard(w);
    struct lw_shard *sh = &w->shards[si];
    uint32_t slot = LW_NIL, e = 0;
    struct lull__wtimer *r = NULL;
    for (;;) {
        /* relaxed: a hint, rechecked under the lock. */
        if (slot == LW_NIL && !__atomic_load_n(&sh->nfree, __ATOMIC_RELAXED)) {
            err = lull__wslot_alloc(&w->slab, &slot, &e, &r);
            if (err) {
                lw_unreserve(w);
                return err;
            }
        }
        lw_lock(sh);
        /* relaxed: as in lull_wheel_schedule. */
        if (lull__unlikely(__atomic_load_n(&w->shutdown, __ATOMIC_RELAXED))) {
            lw_unlock(sh);
            if (slot != LW_NIL)
                lull__wslot_unuse(&w->slab, slot, e);
            lw_unreserve(w);
            return -ESHUTDOWN;
        }
        if (slot != LW_NIL)
            break;
        if ((slot = sh->free_top) != LW_NIL) {
            r = lw_cache_take(w, sh, slot, &e);
            break;
        }
        lw_unlock(sh);      /* the cache emptied since we looked */
    }
    lw_schedule_finish(w, sh, si, slot, r, e, d, fn, arg, t);
    return 0;
}

int lull_wheel_schedule(lull_wheel *w, uint64_t delay_ns, lull_timer_fn fn, void *arg,
                        lull_timer *t)
{
    if (!w || !fn || !t)
        return -EINVAL;
    /* relaxed: a fast refusal only; the check that counts is under the
     * shard lock below. */
    if (__atomic_load_n(&w->shutdown, __ATOMIC_RELAXED))
        return -ESHUTDOWN;
    uint64_t d = lw_deadline(w, delay_ns);
    unsigned si = lw_my_shard(w);
    struct lw_shard *sh = &w->shards[si];
    /* relaxed: a hint that the shard's cache has a slot (rechecked under
     * the lock); when it has none, the slow path takes one from the slab
     * before it locks. */
    if (w->max_timers || !__atomic_load_n(&sh->nfree, __ATOMIC_RELAXED))
        return lw_schedule_slow(w, d, fn, arg, t);
    lw_lock(sh);
    /* A slot from the shard's cache.  relaxed (shutdown): ordered by the
     * shard lock; destroy stores it before it sweeps this shard under the
     * lock: either we see the flag, or the sweep sees our timer. */
    uint32_t slot = sh->free_top, e;
    if (lull__unlikely(slot == LW_NIL || __atomic_load_n(&w->shutdown, __ATOMIC_RELAXED))) {
        lw_unlock(sh);
        return lw_schedule_slow(w, d, fn, arg, t);
    }
    struct lull__wtimer *r = lw_cache_take(w, sh, slot, &e);
    lw_schedule_finish(w, sh, si, slot, r, e, d, fn, arg, t);
    return 0;
}

static inline __attribute__((always_inline)) int
lw_cancel(lull_wheel *w, lull_timer t, uint32_t *ep, struct lull__wtimer **rp)
{
    struct lull__wslab *sl = &w->slab;
    uint32_t slot, e;
    struct lull__wtimer *r;
    if (!lw_decode(w, t, &slot, &e, &r))
        return -ESTALE;
    *ep = e;
    *rp = r;
    /* acquire: pairs with lw_publish's release store; a word of epoch e
     * names the shard of incarnation e. */
    uint64_t s = __atomic_load_n(&r->state, __ATOMIC_ACQUIRE);
    int rc = lw_judge(s, e);
    if (rc)
        return rc;
    struct lw_shard *sh = lw_shard_of(w, s);
    lw_lock(sh);
    /* acquire: the fire CAS and the end of a callback happen outside the
     * lock (pairs with lw_end_fired's release store for the -EINPROGRESS
     * and -ESTALE answers). */
    s = __atomic_load_n(&r->state, __ATOMIC_ACQUIRE);
    rc = lw_judge(s, e);
    if (rc) {
        lw_unlock(sh);
        return rc;
    }
    if (LW_ST(s) == LW_PENDING) {
        /* In a list of this shard: its word, links and d change only under
         * this lock, so no CAS: unlink, end the incarnation, free the slot
         * (reusable at once). */
        lw_unlink(sl, sh, LW_LIST(s), slot, r);
        bool push = lull__wslot_end(sl, r, e);
        bool kept = push && lw_cache_put(sh, slot, r, 1);
        lw_count(sh, -1);
        lw_unlock(sh);
        if (push && !kept)
            lull__wslot_push(sl, slot);
        lw_unreserve(w);
        return 0;
    }
    if (LW_ST(s) == LW_MOVED) {
        /* On an advance's fire list, waiting to be relinked: also changed
         * only under this lock.  release: the advance that frees it reads
         * the word with acquire (lw_cursor_load) or under this lock. */
        __atomic_store_n(&r->state, LW_RESTATE(s, LW_CANCELLED), __ATOMIC_RELEASE);
    } else {
        /* COLLECTED.  seq_cst: one total order on the word decides between
         * this cancel and the fire CAS of the advance that holds it. */
        if (!__atomic_compare_exchange_n(&r->state, &s, LW_RESTATE(s, LW_CANCELLED), false,
                                         __ATOMIC_SEQ_CST, __ATOMIC_ACQUIRE)) {
            lw_unlock(sh);
            rc = lw_judge(s, e);        /* it fired first */
            return rc ? rc : -ESTALE;
        }
    }
    lw_count(sh, -1);
    lw_unlock(sh);
    lw_unreserve(w);    /* capacity back at once; the advance frees the slot */
    return 0;
}

int lull_wheel_cancel(lull_wheel *w, lull_timer t)
{
    if (!w)
        return -EINVAL;
    uint32_t e;
    struct lull__wtimer *r;
    return lw_cancel(w, t, &e, &r);
}

/* Wait a little, longer each time: spin, then yield, then sleep from 1 us
 * doubling up to 1 ms (so a waiter sees a callback end within about 1 ms,
 * and a long callback costs it a thousand wake-ups a second at most). */
static void lw_backoff(unsigned i)
{
    if (i < 64) {
        lw_cpu_relax();
    } else if (i < 96) {
        sched_yield();
    } else {
        unsigned k = i - 96;
        struct timespec ts = { 0, k < 10 ? 1000L << k : 1000000L };
        nanosleep(&ts, NULL);
    }
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
    w->users++;     /* destroy waits for us; an orphaned wheel outlives us */
    pthread_mutex_unlock(&w->mu);
    /* relaxed: a count for tests, nothing is ordered by it. */
    __atomic_fetch_add(&w->waiters, 1, __ATOMIC_RELAXED);
    /* Like Linux's del_timer_sync, wait by watching the state word, so that
     * the end of a callback costs the advance a plain store rather than a
     * fence and a wake-up check on every timer it fires.  acquire: pairs
     * with the release store that ends the callback (lw_end_fired), so
     * everything fn did is visible when we return. */
    for (unsigned i = 0;; i += i < 128) {
        uint64_t s = __atomic_load_n(&r->state, __ATOMIC_ACQUIRE);
        if (LW_EPOCH(s) != e || LW_ST(s) != LW_RUNNING)
            break;
        lw_backoff(i);
    }
    /* relaxed: as above. */
    __atomic_fetch_sub(&w->waiters, 1, __ATOMIC_RELAXED);
    pthread_mutex_lock(&w->mu);
    bool free_it = lw_leave_locked(w);
    pthread_mutex_unlock(&w->mu);
    if (free_it)
        lw_free(w);
    return -EINPROGRESS;
}

/* Store a rescheduled timer's new d and seq (shard si's lock held).
 * release (both): when it was collected, the advancer reads them
 * seqlock-style (lw_cursor_load): if its acquire load sees one of these, it
 * sees the CAS to MOVED before it too. */
static void lw_set_key(lull_wheel *w, unsigned si, struct lull__wtimer *r, uint64_t d)
{
    __atomic_store_n(&r->d, d, __ATOMIC_RELEASE);
    __atomic_store_n(&r->seq, lw_next_seq(w, si), __ATOMIC_RELEASE);
}

/* The slow reschedule: incarnation UINT32_MAX of slot is the last; the
 * timer moves to another slot and this one retires (the only case in which
 * a reschedule takes a slot, and may fail with -ENOMEM). */
static int lw_reschedule_move(lull_wheel *w, uint32_t slot, struct lull__wtimer *r, uint64_t s,
                              uint64_t d, lull_timer *nt)
{
    struct lull__wslab *sl = &w->slab;
    uint32_t e = LW_EPOCH(s), nslot, ne;
    struct lull__wtimer *nr;
    int rc = lull__wslot_alloc(sl, &nslot, &ne, &nr);
    if (rc)
        return rc;
    struct lw_shard *sh = lw_shard_of(w, s);
    lw_lock(sh);
    /* acquire: as in lw_cancel. */
    s = __atomic_load_n(&r->state, __ATOMIC_ACQUIRE);
    rc = LW_EPOCH(s) != e || !lw_is_pending(LW_ST(s)) ? -ESTALE :
         /* relaxed: ordered by the shard lock (see schedule) */
         __atomic_load_n(&w->shutdown, __ATOMIC_RELAXED) ? -ESHUTDOWN : 0;
    /* Pending incarnation e: fn and arg are its own until it fires, which
     * needs the CAS below to fail first (or, listed, this lock). */
    lull_timer_fn fn = rc ? NULL : r->fn;
    void *arg = rc ? NULL : r->arg;
    if (!rc && LW_ST(s) == LW_PENDING) {
        lw_unlink(sl, sh, LW_LIST(s), slot, r);
        (void)lull__wslot_end(sl, r, e);            /* the last epoch: retires */
    } else if (!rc && LW_ST(s) == LW_MOVED) {
        /* release: as in lw_cancel; its advance retires the slot. */
        __atomic_store_n(&r->state, LW_RESTATE(s, LW_CANCELLED), __ATOMIC_RELEASE);
    } else if (!rc &&       /* seq_cst: races the fire CAS, as cancel's */
               !__atomic_compare_exchange_n(&r->state, &s, LW_RESTATE(s, LW_CANCELLED), false,
                                            __ATOMIC_SEQ_CST, __ATOMIC_ACQUIRE)) {
        rc = -ESTALE;       /* its advance fired it first */
    }
    if (rc) {
        lw_unlock(sh);
        lull__wslot_unuse(sl, nslot, ne);
        return rc;
    }
    /* the timer (and its count) moves to nslot */
    lw_publish(w, sh, LW_SHARD(s) & (w->nshards - 1), nslot, nr, ne, d, fn, arg);
    *nt = LW_HANDLE(ne, nslot);
    lw_unlock(sh);
    lw_kick(w, d);
    return 0;
}

int lull_wheel_reschedule(lull_wheel *w, lull_timer t, uint64_t delay_ns, lull_timer *nt)
{
    if (!w || !nt)
        return -EINVAL;
    /* relaxed: fast refusal; rechecked under the lock as in schedule. */
    if (__atomic_load_n(&w->shutdown, __ATOMIC_RELAXED))
        return -ESHUTDOWN;
    struct lull__wslab *sl = &w->slab;
    uint32_t slot, e;
    struct lull__wtimer *r;
    if (!lw_decode(w, t, &slot, &e, &r))
        return -ESTALE;
    /* acquire: as in lw_cancel. */
    uint64_t s = __atomic_load_n(&r->state, __ATOMIC_ACQUIRE);
    if (LW_EPOCH(s) != e || !lw_is_pending(LW_ST(s)))
        return -ESTALE;
    uint64_t d = lw_deadline(w, delay_ns);
    if (lull__unlikely(e == UINT32_MAX))
        return lw_reschedule_move(w, slot, r, s, d, nt);

    struct lw_shard *sh = lw_shard_of(w, s);
    lw_lock(sh);
    /* acquire: as in lw_cancel. */
    s = __atomic_load_n(&r->state, __ATOMIC_ACQUIRE);
    int rc = LW_EPOCH(s) != e || !lw_is_pending(LW_ST(s)) ? -ESTALE :
             /* relaxed: ordered by the shard lock (see schedule) */
             __atomic_load_n(&w->shutdown, __ATOMIC_RELAXED) ? -ESHUTDOWN : 0;
    if (rc) {
        lw_unlock(sh);
        return rc;
    }
    /* the new epoch (t is stale at once); shard, state and list stay */
    uint64_t ns = (s & 0xffffffffu) | ((uint64_t)(e + 1) << 32);
    if (LW_ST(s) == LW_PENDING) {
        /* Listed: changed only under this lock.  When the new deadline
         * falls in the list the timer is in (a keepalive pushed a little
         * later: same coarse bucket), it stays where it is: no unlink, no
         * link, no neighbour touched. */
        unsigned from = LW_LIST(s), to = lw_list_of(sh, lw_tick(w, d));
        if (from != to) {
            lw_unlink(sl, sh, from, slot, r);
            lw_link(sl, sh, to, slot, r);
            ns = LW_WITH_LIST(ns, to);
        }
        lw_occupy(sh, to, d);   /* in place, an earlier d may lower its bucket's bound */
        /* release: as in lw_publish (the new handle may be handed to
         * another thread, whose acquire load then sees this word). */
        __atomic_store_n(&r->state, ns, __ATOMIC_RELEASE);
        /* relaxed (both): a listed record is on no fire list. */
        __atomic_store_n(&r->d, d, __ATOMIC_RELAXED);
        __atomic_store_n(&r->seq, lw_next_seq(w, LW_SHARD(s)), __ATOMIC_RELAXED);
    } else if (LW_ST(s) == LW_MOVED) {
        /* Moved already: on the fire list of an advance, which relinks it
         * with whatever deadline it has then.  release: as above. */
        __atomic_store_n(&r->state, ns, __ATOMIC_RELEASE);
        lw_set_key(w, LW_SHARD(s), r, d);
    } else {
        /* COLLECTED.  seq_cst: races the fire CAS, as cancel's; the
         * timer then stays on the advance's fire list, which relinks it
         * when it passes it (fn then fires in a later advance). */
        if (!__atomic_compare_exchange_n(&r->state, &s, LW_RESTATE(ns, LW_MOVED), false,
                                         __ATOMIC_SEQ_CST, __ATOMIC_ACQUIRE)) {
            lw_unlock(sh);
            return -ESTALE;     /* its advance fired it first */
        }
        lw_set_key(w, LW_SHARD(s), r, d);
    }
    lw_lower_earliest(sh, d);
    *nt = LW_HANDLE(e + 1, slot);
    lw_unlock(sh);
    lw_kick(w, d);
    return 0;
}

/* ---- advance ----------------------------------------------------------------- */

/* relaxed (both): a listed or collected timer's d and seq change only under
 * its shard lock (a reschedule first moves a collected one to MOVED, under
 * that lock), and the advance reads them under it -- or seqlock-style, in
 * lw_cursor_load. */
static uint64_t lw_d(const struct lull__wtimer *r)
{
    return __atomic_load_n(&r->d, __ATOMIC_RELAXED);
}

static uint64_t lw_q(const struct lull__wtimer *r)
{
    return __atomic_load_n(&r->seq, __ATOMIC_RELAXED);
}

/* A collected timer, with its key read under its shard's lock. */
struct lw_due {
    uint64_t d, seq;
    struct lull__wtimer *r;
    uint32_t slot;
};
#define LW_BATCH 128

/* What one advance collects.  Most advances fire a few timers: those go
 * into due[], keys and all, sorted there, and no record is touched again
 * until it fires.  A shard that collects more than there is room for keeps
 * its own list instead, linked through the records and sorted under its
 * lock (lists[i]); the array and the lists are merged as they fire. */
struct lw_collection {
    unsigned n;
    uint32_t lists[LW_MAX_SHARDS];
    struct lw_due *sorted;          /* due or tmp, once sorted */
    struct lw_due due[LW_BATCH], tmp[LW_BATCH];
};

/* One shard's part of a collection, while it is collected. */
struct lw_coll_shard {
    unsigned base;      /* its first entry in due[] */
    bool spill;         /* it overflowed due[]: it is collecting into out */
    uint32_t out;
};

static bool lw_due_before(const struct lw_due *a, const struct lw_due *b)
{
    return a->d < b->d || (a->d == b->d && a->seq < b->seq);
}

/* Sort the n entries of a by (deadline, seq); tmp has room for n.  Returns
 * the sorted array: a or tmp.
 * Insertion sort does the sorting; before it, one stable pass deals the
 * entries into 16 ranges of deadline (by the top bits of d - dmin), so that
 * it finds them nearly in order: the timers of one advance are spread over
 * its span, and an insertion sort of random keys would cost n/4 moves each. */
static struct lw_due *lw_due_sort(struct lw_due *a, struct lw_due *tmp, unsigned n)
{
    enum { WAYS = 16, WAY_BITS = 4 };
    if (n > 8) {
        uint64_t dmin = a[0].d, dmax = a[0].d;
        for (unsigned i = 1; i < n; i++) {
            dmin = a[i].d < dmin ? a[i].d : dmin;
            dmax = a[i].d > dmax ? a[i].d : dmax;
        }
        uint64_t top = (dmax - dmin) >> WAY_BITS;
        unsigned sh = top ? 64u - (unsigned)__builtin_clzll(top) : 0;   /* (dmax - dmin) >> sh < WAYS */
        unsigned at[WAYS + 1] = {0};
        uint8_t way[LW_BATCH];
        for (unsigned i = 0; i < n; i++) {
            way[i] = (uint8_t)((a[i].d - dmin) >> sh);
            at[way[i] + 1]++;
        }
        for (unsigned b = 1; b <= WAYS; b++)
            at[b] += at[b - 1];
        for (unsigned i = 0; i < n; i++)
            tmp[at[way[i]]++] = a[i];
        a = tmp;
    }
    for (unsigned i = 1; i < n; i++) {
        if (!lw_due_before(&a[i], &a[i - 1]))
            continue;
        struct lw_due x = a[i];
        unsigned j = i;
        do
            a[j] = a[j - 1];
        while (--j > 0 && lw_due_before(&x, &a[j - 1]));
        a[j] = x;
    }
    return a;
}

/* Merge two sorted next-linked lists by (deadline, seq). */
static uint32_t lw_merge(struct lull__wslab *sl, uint32_t a, uint32_t b)
{
    if (a == LW_NIL)
        return b;
    if (b == LW_NIL)
        return a;
    struct lull__wtimer *ra = lw_rec(sl, a), *rb = lw_rec(sl, b), *tail = NULL;
    uint64_t da = lw_d(ra), db = lw_d(rb);
    uint32_t head = LW_NIL;
    for (;;) {
        bool take_b = db < da || (db == da && lw_q(rb) < lw_q(ra));
        uint32_t x = take_b ? b : a;
        struct lull__wtimer *rx = take_b ? rb : ra;
        if (tail)
            lw_set_next(tail, x);
        else
            head = x;
        tail = rx;
        uint32_t nx = lw_next(rx);
        if (take_b) {
            if ((b = nx) == LW_NIL)
                break;
            rb = lw_rec(sl, b);
            db = lw_d(rb);
        } else {
            if ((a = nx) == LW_NIL)
                break;
            ra = lw_rec(sl, a);
            da = lw_d(ra);
        }
    }
    lw_set_next(tail, a != LW_NIL ? a : b);
    return head;
}

/* Bottom-up merge sort of a next-linked list by (deadline, seq):
 * O(k log k), no allocation (the overflow path of a large advance). */
static uint32_t lw_sort(struct lull__wslab *sl, uint32_t list)
{
    uint32_t bin[33];
    unsigned nbin = 0;
    while (list != LW_NIL) {
        uint32_t run = list;
        struct lull__wtimer *r = lw_rec(sl, run);
        list = lw_next(r);
        lw_set_next(r, LW_NIL);
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
        out = lw_merge(sl, bin[i], out);
    return out;
}

/* A listed timer (deadline d) is due: mark it COLLECTED and add it to the
 * collection -- to due[], or to the shard's list once due[] is full (the
 * shard's entries in due[] then move to the list too, so that each shard is
 * in one place). */
static inline __attribute__((always_inline)) void
lw_take(struct lull__wslab *sl, struct lw_collection *c, struct lw_coll_shard *cs, uint32_t slot,
        struct lull__wtimer *r, uint64_t d)
{
    /* relaxed (both): a listed timer's word changes only under the lock we
     * hold; the fire CAS that reads COLLECTED is this thread's, cancel and
     * reschedule read it under the lock, and to a lock-free judge PENDING
     * and COLLECTED both mean pending. */
    uint64_t s = __atomic_load_n(&r->state, __ATOMIC_RELAXED);
    __atomic_store_n(&r->state, LW_RESTATE(s, LW_COLLECTED), __ATOMIC_RELAXED);
    if (!cs->spill) {
        if (c->n < LW_BATCH) {
            c->due[c->n++] = (struct lw_due){ d, lw_q(r), r, slot };
            return;
        }
        for (unsigned k = cs->base; k < c->n; k++) {
            lw_set_next(c->due[k].r, cs->out);
            cs->out = c->due[k].slot;
        }
        c->n = cs->base;
        cs->spill = true;
    }
    lw_set_next(r, cs->out);
    cs->out = slot;
}

/* What lw_collect's walks need. */
struct lw_coll_walk {
    lull_wheel *w;
    struct lw_shard *sh;
    struct lw_collection *c;
    struct lw_coll_shard *cs;
    uint64_t n, start, due_min;
};

/* A record of the due list (or of an emptied level-0 bucket, whose tick
 * has come): fire it if its ns has come, else onto the due list. */
static inline __attribute__((always_inline)) void lw_due_one(void *ctx, uint32_t slot,
                                                             struct lull__wtimer *r)
{
    struct lw_coll_walk *x = ctx;
    uint64_t d = lw_d(r);
    if (d <= x->n) {
        lw_take(&x->w->slab, x->c, x->cs, slot, r, d);
    } else {
        lw_insert(&x->w->slab, x->sh, LW_DUE, slot, r, d);
        x->due_min = d < x->due_min ? d : x->due_min;
    }
}

/* A record of an emptied bucket of level 1 or more (now = its start): down
 * a level, fired, or onto the due list (its tick has come, its ns not). */
static inline __attribute__((always_inline)) void lw_bucket_one(void *ctx, uint32_t slot,
                                                                struct lull__wtimer *r)
{
    struct lw_coll_walk *x = ctx;
    uint64_t d = lw_d(r);
    uint64_t e = lw_tick(x->w, d);
    if (e > x->start) {         /* cascade: to a lower level */
        lw_insert(&x->w->slab, x->sh, lw_list_of(x->sh, e), slot, r, d);
        x->sh->st_moves++;
    } else if (d <= x->n) {
        lw_take(&x->w->slab, x->c, x->cs, slot, r, d);
    } else {
        lw_insert(&x->w->slab, x->sh, LW_DUE, slot, r, d);
        x->due_min = d < x->due_min ? d : x->due_min;
    }
}

/* The level-0 bucket b of the clock's own tick: take its timers that are
 * due at n out of it, leave the others where they are, and set its bound to
 * the earliest of those left (exact: the hint the advance publishes). */
static void lw_take_from(lull_wheel *w, struct lw_shard *sh, unsigned b, uint64_t n,
                         struct lw_collection *c, struct lw_coll_shard *cs)
{
    struct lull__wslab *sl = &w->slab;
    uint64_t left = UINT64_MAX;
    for (uint32_t cur = sh->head[b]; cur != LW_NIL;) {
        struct lull__wtimer *r = lw_rec(sl, cur);
        uint32_t next = lw_next(r);
        uint64_t d = lw_d(r);
        if (d <= n) {
            lw_unlink(sl, sh, b, cur, r);   /* the last one out clears the bucket */
            lw_take(sl, c, cs, cur, r, d);
        } else {
            left = d < left ? d : left;
        }
        cur = next;
    }
    if (sh->head[b] != LW_NIL)
        sh->min0[b] = left;
}

/* Collect shard si's timers due at clock n (its lock held) into c. */
static void lw_collect(lull_wheel *w, unsigned si, uint64_t n, struct lw_collection *c)
{
    struct lull__wslab *sl = &w->slab;
    struct lw_shard *sh = &w->shards[si];
    struct lw_coll_shard cs = { c->n, false, LW_NIL };
    uint64_t T = lw_tick(w, n);
    if (T < sh->now)
        T = sh->now;    /* a clock that stepped back: time stands still */
    /* every seq already in this shard is below it, every later one not */
    sh->mark = lw_seq_floor(w);
    sh->last_n = n;

    /* The due list: ticks that have come; fire those whose ns has too.
     * due_min: the earliest deadline left on it. */
    struct lw_coll_walk x = { w, sh, c, &cs, n, 0, UINT64_MAX };
    lw_walk_list(sl, sh, LW_DUE, lw_due_one, &x);

    /* Empty the earliest bucket while it starts no later than T -- but not
     * the level-0 bucket of tick T itself (the clock's tick, partly past):
     * what in it is due is taken out, the rest stays, and now stops at
     * T - 1 (still past every other bucket emptied; a level-0 bucket never
     * starts on a multiple of 64, so T - 1 shares T's upper groups and the
     * bucket stays where it belongs).  Its bound says when anything in it
     * may be due, so an advance before that does not even walk it.  Timers
     * go from their bucket straight to firing, not through the due list. */
    uint64_t kept = UINT64_MAX;     /* the bound of the bucket left, if one is */
    while (sh->levels) {
        unsigned level = (unsigned)__builtin_ctz(sh->levels);
        unsigned b = (unsigned)__builtin_ctzll(sh->bitmap[level]);
        uint64_t start = lw_bucket_start(sh, level, b);
        if (start > T)
            break;
        if (start == T && level == 0) {
            if (sh->min0[b] <= n)   /* some of it is due: take those, in place */
                lw_take_from(w, sh, b, n, c, &cs);
            if (sh->head[b] != LW_NIL)
                kept = sh->min0[b];
            break;      /* every other bucket starts after T */
        }
        sh->bitmap[level] &= ~((uint64_t)1 << b);
        if (!sh->bitmap[level])
            sh->levels &= ~(1u << level);
        if (level == 0)
            sh->min0[b] = UINT64_MAX;
        sh->now = start;    /* no timer is earlier than start: a valid now */
        sh->st_buckets++;
        x.start = start;
        if (level == 0)     /* its tick is the bucket's: fired, or onto the due list */
            lw_walk_list(sl, sh, b, lw_due_one, &x);
        else
            lw_walk_list(sl, sh, level * LW_SLOTS + b, lw_bucket_one, &x);
    }
    uint64_t earliest = x.due_min;
    if (kept != UINT64_MAX) {
        sh->now = T - 1;
        if (kept < earliest)
            earliest = kept;    /* <= every deadline in it; every other bucket is later */
    } else {
        sh->now = T;
        if (sh->levels) {
            unsigned level = (unsigned)__builtin_ctz(sh->levels);
            uint64_t start = lw_bucket_start(sh, level,
                                             (unsigned)__builtin_ctzll(sh->bitmap[level]));
            if (start * w->tick_ns < earliest)
                earliest = start * w->tick_ns;  /* <= every deadline in it; no overflow */
        }
    }
    /* relaxed: it accounts for every timer in the shard's lists (we hold the
     * lock; timers collected by this advance are about to fire, and a
     * reschedule that moves one lowers the hint itself), so a scheduler's
     * seq_cst lowering before it is not lost to the driver (lw_kick): what
     * it reads instead is no later. */
    __atomic_store_n(&sh->earliest, earliest, __ATOMIC_RELAXED);
    /* sorted under the lock: a key may change only once its timer is MOVED */
    c->lists[si] = cs.spill ? lw_sort(sl, cs.out) : LW_NIL;
}

/* Slots this advance freed, per shard, given back to the shard's cache in
 * one lock hold (or to the free stack in one CAS) every LW_FREE_BATCH slots
 * and at the end of the advance. */
#define LW_FREE_BATCH 32
struct lw_frees {
    uint32_t first[LW_MAX_SHARDS], last[LW_MAX_SHARDS];
    unsigned n[LW_MAX_SHARDS];
};

static void lw_frees_flush(lull_wheel *w, struct lw_frees *f, unsigned i)
{
    if (!f->n[i])
        return;
    struct lw_shard *sh = &w->shards[i];
    lw_lock(sh);
    bool kept = lw_cache_put(sh, f->first[i], lw_rec(&w->slab, f->last[i]), f->n[i]);
    lw_unlock(sh);
    if (!kept)
        lull__wslot_push_chain(&w->slab, f->first[i], f->last[i]);
    f->n[i] = 0;
}

/* slot's incarnation has ended (its word is FREE): batch it for shard i. */
static void lw_frees_add(lull_wheel *w, struct lw_frees *f, unsigned i, uint32_t slot,
                         struct lull__wtimer *r)
{
    lw_set_next(r, f->n[i] ? f->first[i] : LW_NIL);
    if (!f->n[i])
        f->last[i] = slot;
    f->first[i] = slot;
    if (++f->n[i] == LW_FREE_BATCH)
        lw_frees_flush(w, f, i);
}

/* The advance passes a collected record that it does not fire: s (read with
 * acquire) is CANCELLED or MOVED.  A cancelled one ends here; a moved one
 * goes back into its shard's lists (unless destroy has begun: then it ends
 * too, as destroy's sweep would have ended it). */
static void lw_pass(lull_wheel *w, uint32_t slot, struct lull__wtimer *r, uint64_t s,
                    struct lw_frees *f)
{
    unsigned i = LW_SHARD(s) & (w->nshards - 1);
    if (LW_ST(s) == LW_MOVED) {
        struct lw_shard *sh = &w->shards[i];
        lw_lock(sh);
        /* relaxed: a MOVED word, and what replaces it, is written under
         * this lock. */
        s = __atomic_load_n(&r->state, __ATOMIC_RELAXED);
        /* relaxed: ordered by the shard lock, as in schedule. */
        bool down = __atomic_load_n(&w->shutdown, __ATOMIC_RELAXED);
        if (LW_ST(s) == LW_MOVED && !down) {
            /* relaxed: under the lock, as lw_take's store. */
            __atomic_store_n(&r->state, LW_RESTATE(s, LW_PENDING), __ATOMIC_RELAXED);
            lw_place(w, sh, slot, r, lw_d(r));
            lw_unlock(sh);
            return;
        }
        if (LW_ST(s) == LW_MOVED) {
            lw_count(sh, -1);
            lw_unreserve(w);
        }
        lw_unlock(sh);
    }
    if (lull__wslot_end(&w->slab, r, LW_EPOCH(s)))
        lw_frees_add(w, f, i, slot, r);
}

/* The callback of incarnation e of r has returned: end it (FREE(e + 1), or
 * retired).  Returns whether to free the slot. */
static bool lw_end_fired(lull_wheel *w, struct lull__wtimer *r, uint32_t e)
{
    bool last = e == UINT32_MAX;
    /* release: only this thread writes a RUNNING word; pairs with the
     * acquire loads of cancel_sync (which watches for this store: the
     * callback's effects happen before it returns) and of stale handles. */
    __atomic_store_n(&r->state, last ? (uint64_t)LW_RETIRED : LW_WORD(e + 1, 0, LW_FREE),
                     __ATOMIC_RELEASE);
    if (last)   /* relaxed: a counter for check and stats */
        __atomic_fetch_add(&w->slab.retired, 1, __ATOMIC_RELAXED);
    return !last;
}

/* Fire collected record r (slot) whose word was read as s: returns 1 if its
 * callback ran.  If s is not COLLECTED, or the fire CAS loses to a cancel
 * or a reschedule, the record is passed instead. */
static inline __attribute__((always_inline)) size_t
lw_fire_one(lull_wheel *w, uint32_t slot, struct lull__wtimer *r, uint64_t s, struct lw_frees *f,
            struct lw_frame *fr)
{
    /* seq_cst: the fire CAS.  Races cancel's and reschedule's CAS on a
     * collected timer (one total order decides), and is ordered before the
     * shutdown load below (destroy's seq_cst store).  acquire, on success:
     * fn and arg as published by lw_publish; on failure: the word as the
     * winner left it, for lw_pass. */
    if (LW_ST(s) != LW_COLLECTED ||
        !__atomic_compare_exchange_n(&r->state, &s, LW_RESTATE(s, LW_RUNNING), false,
                                     __ATOMIC_SEQ_CST, __ATOMIC_ACQUIRE)) {
        lw_pass(w, slot, r, s, f);
        return 0;
    }
    /* relaxed (both): only the advancing thread writes fired, and advances
     * serialize (the CASes on w->adv hand LW_ADV_RUN from one to the next
     * with release and acquire, which orders their writes). */
    __atomic_store_n(&w->fired, __atomic_load_n(&w->fired, __ATOMIC_RELAXED) + 1,
                     __ATOMIC_RELAXED);
    lw_unreserve(w);
    size_t ran = 0;
    /* seq_cst: see destroy. */
    if (!__atomic_load_n(&w->shutdown, __ATOMIC_SEQ_CST)) {
        lull_timer h = (s & ~(uint64_t)UINT32_MAX) | slot;     /* LW_HANDLE(epoch, slot) */
        fr->t = h;          /* this thread now runs t's callback */
        r->fn(h, r->arg);
        ran = 1;
    }
    if (lw_end_fired(w, r, LW_EPOCH(s)))
        lw_frees_add(w, f, LW_SHARD(s) & (w->nshards - 1), slot, r);
    return ran;
}

/* The head of one shard's sorted list (an overflowed shard), with its key
 * and state word. */
struct lw_cursor {
    uint32_t slot;
    struct lull__wtimer *r;
    uint64_t s, d, seq;
};

/* Point c at the first timer of the list from slot that this advance may
 * still fire, reading its key seqlock-style (the list was sorted under the
 * lock, but a timer may be cancelled or rescheduled since: its key is then
 * not used).  The records passed on the way are handled (lw_pass). */
static void lw_cursor_load(lull_wheel *w, struct lw_cursor *c, uint32_t slot, struct lw_frees *f)
{
    while (slot != LW_NIL) {
        struct lull__wtimer *r = lw_rec(&w->slab, slot);
        /* acquire: opens the seqlock read of d and seq. */
        uint64_t s = __atomic_load_n(&r->state, __ATOMIC_ACQUIRE);
        if (LW_ST(s) == LW_COLLECTED) {
            /* acquire (both): if they read a value stored (with release)
             * by a reschedule, the state word's change, made before that
             * store, is visible to the recheck.  (Acquire loads rather
             * than an acquire fence: TSan models them; a plain load on x86
             * either way.) */
            uint64_t d = __atomic_load_n(&r->d, __ATOMIC_ACQUIRE);
            uint64_t q = __atomic_load_n(&r->seq, __ATOMIC_ACQUIRE);
            if (__atomic_load_n(&r->state, __ATOMIC_RELAXED) == s) {
                *c = (struct lw_cursor){ slot, r, s, d, q };
                return;
            }
            continue;   /* changed under us: judge it again */
        }
        /* Not COLLECTED: CANCELLED or MOVED.  Its link is still the fire
         * list's: nobody but this advance relinks or frees it. */
        uint32_t next = lw_next(r);
        lw_pass(w, slot, r, s, f);
        slot = next;
    }
    c->slot = LW_NIL;
}

static size_t lw_fire_all(lull_wheel *w, struct lw_collection *c)
{
    unsigned nsh = w->nshards, k = 0;
    struct lw_cursor cur[LW_MAX_SHARDS];
    struct lw_frees f;
    bool lists = false;
    size_t ran = 0;
    /* on this thread's chain of callbacks for the whole loop; its t is the
     * handle of the callback running (lw_in_callback) */
    struct lw_frame fr = { w, 0, lw_frames };
    lw_frames = &fr;
    for (unsigned i = 0; i < nsh; i++) {
        f.n[i] = 0;
        cur[i].slot = LW_NIL;
    }
    for (unsigned i = 0; i < nsh; i++) {
        if (c->lists[i] != LW_NIL) {
            lists = true;
            lw_cursor_load(w, &cur[i], c->lists[i], &f);
        }
    }
    for (;;) {
        struct lw_cursor *m = NULL;
        if (lists)
            for (unsigned i = 0; i < nsh; i++)
                if (cur[i].slot != LW_NIL &&
                    (!m || cur[i].d < m->d || (cur[i].d == m->d && cur[i].seq < m->seq)))
                    m = &cur[i];
        if (k < c->n && (!m || c->sorted[k].d < m->d ||
                         (c->sorted[k].d == m->d && c->sorted[k].seq < m->seq))) {
            struct lw_due *x = &c->sorted[k++];
            if (k < c->n)   /* its fn and arg may sit on its second line */
                __builtin_prefetch(&c->sorted[k].r->arg);
            /* acquire: as in lw_cursor_load (for lw_pass when it is no
             * longer COLLECTED; the fire CAS acquires for itself). */
            ran += lw_fire_one(w, x->slot, x->r, __atomic_load_n(&x->r->state, __ATOMIC_ACQUIRE),
                               &f, &fr);
            continue;
        }
        if (!m)
            break;
        uint32_t next = lw_next(m->r);     /* before it fires: freeing relinks it */
        ran += lw_fire_one(w, m->slot, m->r, m->s, &f, &fr);
        lw_cursor_load(w, m, next, &f);
    }
    lw_frames = fr.up;
    for (unsigned i = 0; i < nsh; i++)
        lw_frees_flush(w, &f, i);
    return ran;
}

/* The advance proper: collect every shard, then fire (LW_ADV_RUN held). */
static size_t lw_advance_run(lull_wheel *w)
{
    struct lw_collection c;
    c.n = 0;
    uint64_t n = lw_now(w);
    for (unsigned i = 0; i < w->nshards; i++) {
        struct lw_shard *sh = &w->shards[i];
        /* relaxed: a shard whose hint says "nothing" has nothing listed
         * (every insertion lowers the hint, each collection sets it
         * exactly); a timer scheduled into it meanwhile is concurrent with
         * this advance, which may or may not see it either way.  Skipping
         * it leaves its now behind: later placements are then relative to
         * that, still exact. */
        if (__atomic_load_n(&sh->earliest, __ATOMIC_RELAXED) == UINT64_MAX) {
            c.lists[i] = LW_NIL;
            continue;
        }
        lw_lock(sh);
        lw_collect(w, i, n, &c);
        lw_unlock(sh);
    }
    c.sorted = lw_due_sort(c.due, c.tmp, c.n);
    return lw_fire_all(w, &c);
}

/* Give LW_ADV_RUN back; wake whoever waits for it.  True when the caller,
 * not counted in users, must free w (it was orphaned meanwhile). */
static bool lw_adv_end(lull_wheel *w, bool counted)
{
    unsigned z = LW_ADV_RUN;
    /* release: this advance's writes (fired, the shards it collected)
     * happen before the next advance's acquire CAS on adv. */
    if (__atomic_compare_exchange_n(&w->adv, &z, 0, false, __ATOMIC_RELEASE, __ATOMIC_RELAXED))
        return false;
    pthread_mutex_lock(&w->mu);
    /* release: as above; WAIT goes too (waiters set it again if they must
     * wait again). */
    __atomic_store_n(&w->adv, 0, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&w->cv);
    bool free_it = !counted && lw_last_out_locked(w);
    pthread_mutex_unlock(&w->mu);
    return free_it;
}

size_t lull_wheel_advance(lull_wheel *w)
{
    if (!w || lw_in_callback(w, false, 0))
        return 0;   /* a callback's own wheel: a nested advance would reorder */
    unsigned z = 0;
    /* acquire: pairs with lw_adv_end's release, so this advance sees
     * everything the last one did.  Fails if one runs or a thread waits. */
    if (lull__likely(__atomic_compare_exchange_n(&w->adv, &z, LW_ADV_RUN, false,
                                                  __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))) {
        size_t ran = 0;
        /* relaxed: once destroy began, no callback starts (the seq_cst
         * load after each fire CAS sees to that); this only skips work. */
        if (!__atomic_load_n(&w->shutdown, __ATOMIC_RELAXED))
            ran = lw_advance_run(w);
        if (lw_adv_end(w, false))
            lw_free(w);
        return ran;
    }
    /* Another advance runs (or is waited for): wait our turn under mu. */
    pthread_mutex_lock(&w->mu);
    w->users++;
    bool run = false;
    /* relaxed: mu orders it (destroy stores under mu). */
    while (!__atomic_load_n(&w->shutdown, __ATOMIC_RELAXED)) {
        z = __atomic_load_n(&w->adv, __ATOMIC_RELAXED);
        /* acquire: as on the fast path; WAIT is kept for the others. */
        if (!(z & LW_ADV_RUN) && __atomic_compare_exchange_n(&w->adv, &z, z | LW_ADV_RUN, false,
                                                            __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
            run = true;
            break;
        }
        if (lw_adv_busy_locked(w))
            pthread_cond_wait(&w->cv, &w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    size_t ran = 0;
    if (run) {
        ran = lw_advance_run(w);
        (void)lw_adv_end(w, true);
    }
    pthread_mutex_lock(&w->mu);
    bool free_it = lw_leave_locked(w);
    pthread_mutex_unlock(&w->mu);
    if (free_it)
        lw_free(w);
    return ran;
}

uint64_t lull_wheel_next_deadline(lull_wheel *w)
{
    return w ? lw_next_deadline(w) : UINT64_MAX;
}

size_t lull_wheel_pending(lull_wheel *w)
{
    return w ? lw_pending(w) : 0;
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
    /* acquire: as in lw_cancel. */
    uint64_t s = __atomic_load_n(&r->state, __ATOMIC_ACQUIRE);
    if (LW_EPOCH(s) != old || LW_ST(s) != LW_PENDING)
        return -ESTALE;
    struct lw_shard *sh = lw_shard_of(w, s);
    lw_lock(sh);
    /* relaxed (both): a listed timer's word changes only under the lock. */
    s = __atomic_load_n(&r->state, __ATOMIC_RELAXED);
    if (LW_EPOCH(s) != old || LW_ST(s) != LW_PENDING) {
        lw_unlock(sh);
        return -ESTALE;
    }
    __atomic_store_n(&r->state, (s & 0xffffffffu) | ((uint64_t)e << 32), __ATOMIC_RELAXED);
    *t = LW_HANDLE(e, slot);
    lw_unlock(sh);
    return 0;
}
