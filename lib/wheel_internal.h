/*
 * lib/wheel_internal.h - the timer wheel's insides, shared by lib/wheel*.c
 * and reachable by tests (which link the static library).
 *
 * Layout (docs/wheel.md explains the why):
 *   - a slab of 48-byte timer records, indexed by 32-bit slot numbers, in
 *     fixed chunks of 1024 records found through a two-level directory, so
 *     slot -> record needs no lock, chunks never move or go away before the
 *     wheel does, and the slab's slack is at most one chunk;
 *   - free slots: a small cache per shard (under its lock), spilling to a
 *     lock-free LIFO with an ABA tag in its head word;
 *   - one to LW_MAX_SHARDS shards, each a complete hierarchical wheel
 *     (LW_LEVELS levels of 64 buckets, one occupancy bitmap per level) under
 *     its own spinlock.  A thread schedules into "its" shard; advance visits
 *     every shard and merges what they fire.
 *
 * Lock order: w->mu is never held while taking a shard lock, and no two
 * shard locks are ever held together.
 */
#ifndef LULL_WHEEL_INTERNAL_H
#define LULL_WHEEL_INTERNAL_H

#include "internal.h"

#include <lull/wheel.h>
#include <pthread.h>

/* ---- geometry ------------------------------------------------------------ */
#define LW_BITS     6                       /* one level = 64 buckets */
#define LW_SLOTS    (1u << LW_BITS)
#define LW_LEVELS   11                      /* ceil(64 / 6): every 64-bit tick fits */
#define LW_BUCKETS  (LW_LEVELS * LW_SLOTS)
#define LW_DUE      LW_BUCKETS              /* list of timers whose tick has come */
#define LW_LISTS    (LW_BUCKETS + 1)
#define LW_NIL      UINT32_MAX              /* "no slot" in every link */
#define LW_MAX_SHARDS 16

#if LW_LEVELS * LW_BITS < 64
#error "LW_LEVELS levels of LW_BITS bits must cover a 64-bit tick"
#endif
#if (LW_LEVELS - 1) * LW_BITS >= 64
#error "the top level must hold some bits of the tick"
#endif
#if LW_SLOTS != 64
#error "a level's occupancy is one uint64_t bitmap"
#endif
#if LW_LISTS > 1024
#error "a list number must fit the state word's 10 bits"
#endif

/* ---- the state word ------------------------------------------------------
 * One atomic uint64_t per record: the epoch in the high 32 bits, the list a
 * PENDING record is in (bucket or due list) in bits 16..25, the shard of the
 * incarnation in bits 8..11, the state in bits 0..2.  A handle is
 * (epoch << 32) | slot; epochs start at 1, so 0 is never a handle, and a
 * slot whose epoch would wrap is retired (state word 0) and never handed out
 * again, so no handle is ever reused.
 *
 * Who may change a word in each state (docs/wheel.md has the table):
 *   PENDING, MOVED   only holders of the shard lock (plain stores suffice;
 *                    each link of a PENDING record also stores its list)
 *   COLLECTED        the shard lock holder (cancel, reschedule) and the
 *                    advance's fire CAS, which does not take it: these race
 *                    with CASes, and exactly one wins
 *   RUNNING          only the advancing thread (the end of the callback)
 *   CANCELLED        only the advance holding the record (it frees it) */
enum {
    LW_FREE      = 0,   /* in a free list (epoch: the next incarnation's) */
    LW_PENDING   = 1,   /* armed, in a list of its shard */
    LW_RUNNING   = 2,   /* fire won: the callback runs */
    LW_CANCELLED = 3,   /* cancelled while on an advance's fire list; it frees the slot */
    LW_COLLECTED = 4,   /* due: on an advance's fire list, not yet fired */
    LW_MOVED     = 5,   /* rescheduled while collected: the advance relinks it */
};
#define LW_ST_MASK      7u
#define LW_SHARD_SHIFT  8
#define LW_LIST_SHIFT   16
#define LW_LIST_MASK    ((uint64_t)1023 << LW_LIST_SHIFT)
#define LW_ST(s)        ((unsigned)(s) & LW_ST_MASK)
#define LW_SHARD(s)     (((unsigned)(s) >> LW_SHARD_SHIFT) & (LW_MAX_SHARDS - 1))
#define LW_LIST(s)      ((unsigned)(((s) & LW_LIST_MASK) >> LW_LIST_SHIFT))
#define LW_WITH_LIST(s, l) (((s) & ~LW_LIST_MASK) | ((uint64_t)(l) << LW_LIST_SHIFT))
#define LW_EPOCH(s)     ((uint32_t)((s) >> 32))
#define LW_WORD(e, sh, st) (((uint64_t)(e) << 32) | ((uint64_t)(sh) << LW_SHARD_SHIFT) | \
                            (uint64_t)(st))
#define LW_RESTATE(s, st) (((s) & ~(uint64_t)LW_ST_MASK) | (uint64_t)(st))  /* same epoch, shard */
#define LW_HANDLE(e, slot) (((uint64_t)(e) << 32) | (uint64_t)(slot))
#define LW_RETIRED      0u                  /* state word of a retired (or never used) slot */

/* True for the states in which a timer is pending (armed, not yet fired or
 * cancelled): PENDING, COLLECTED, MOVED. */
static inline bool lw_is_pending(unsigned st)
{
    return st == LW_PENDING || st == LW_COLLECTED || st == LW_MOVED;
}

/* A timer record: 48 bytes, four records to three cache lines (the fields
 * every list operation touches come first).  Who may touch what:
 *   state        atomics only (see above)
 *   d, seq       written under the shard lock; read under it, or
 *                seqlock-style by the advancing thread (lw_cursor_load) while
 *                the record is COLLECTED: a reschedule then stores them
 *                (release) after its CAS to MOVED
 *   next         relaxed atomics: the link of its bucket list or due list
 *                (shard lock), of an advance's fire list (the advancing
 *                thread), of a free list (free_next: a shard's cache under
 *                its lock, or the lock-free free stack, whose pops read it
 *                from a snapshot that may be stale -- hence atomics)
 *   prev         the shard lock of the list the record is in
 *   fn, arg      written before the record is published PENDING, read by the
 *                advance that wins the fire CAS
 * A listed record's list is kept in its state word (unlink needs it); it is
 * also a function of its tick and the shard's now (lw_list_of), which the
 * checker verifies. */
struct lull__wtimer {
    uint64_t state;
    uint64_t d;             /* deadline, clock ns */
    uint64_t seq;           /* schedule order, for ties */
    union {
        uint32_t next;      /* list link (slots) */
        uint32_t free_next; /* free list link */
    };
    uint32_t prev;
    lull_timer_fn fn;
    void *arg;
};
_Static_assert(sizeof(struct lull__wtimer) == 48, "a pending timer costs 48 bytes of slab");

static inline uint32_t lw_next(const struct lull__wtimer *r)
{
    /* relaxed: see struct lull__wtimer (next); ordered by whatever owns the list. */
    return __atomic_load_n(&r->next, __ATOMIC_RELAXED);
}

static inline void lw_set_next(struct lull__wtimer *r, uint32_t v)
{
    /* relaxed: as lw_next. */
    __atomic_store_n(&r->next, v, __ATOMIC_RELAXED);
}

/* ---- the slab ------------------------------------------------------------ */
#define LW_CHUNK_SHIFT  10                  /* 1024 records (48 KiB) per chunk */
#define LW_CHUNK_RECS   (1u << LW_CHUNK_SHIFT)
#define LW_DIR0         64                  /* the first directory: 64 chunks, inline */
/* The last chunk of the 32-bit space is never used, so LW_NIL is never a slot. */
#define LW_SLOT_LIMIT   ((uint32_t)(UINT32_MAX - LW_CHUNK_RECS + 1))
_Static_assert(LW_SLOT_LIMIT < LW_NIL, "LW_NIL must never be a slot");
#define LW_OLD_DIRS     24                  /* directories outgrown (each twice the last) */
#define LW_CACHE_MAX    64                  /* free slots a shard keeps for itself */

struct lull__wslab {
    /* hot: pops, pushes and fresh slots */
    uint64_t head;          /* free stack: (ABA tag << 32) | top slot */
    uint32_t fresh;         /* slots [0, fresh) have been handed out at least once */
    uint32_t retired;       /* slots whose epochs are used up */
    /* read-mostly: dir[slot >> LW_CHUNK_SHIFT] is the slot's chunk.  A
     * directory that fills up is copied into one twice its size, which is
     * then published; the old one stays (until the wheel goes) for readers
     * still holding it, so a reader never sees a directory freed. */
    struct lull__wtimer **dir __attribute__((aligned(lull__cacheline)));
    /* cold: growth, under grow */
    pthread_mutex_t grow;
    uint32_t dir_len;       /* entries in dir */
    unsigned nold;
    struct lull__wtimer **old[LW_OLD_DIRS];
    struct lull__wtimer *dir0[LW_DIR0];
};

/* Slot -> record, O(1), no lock.  slot must be below fresh (read with
 * acquire by the caller, or known from a list or a free list: either way
 * the chunk was installed before, and in every directory since). */
static inline struct lull__wtimer *lw_rec(struct lull__wslab *s, uint32_t slot)
{
    /* acquire (both): pair with the release stores that published the
     * directory and installed the chunk (lw_chunk_add), so a directory's
     * entries and a chunk's zeroed records are visible. */
    struct lull__wtimer **dir = __atomic_load_n(&s->dir, __ATOMIC_ACQUIRE);
    struct lull__wtimer *chunk = __atomic_load_n(&dir[slot >> LW_CHUNK_SHIFT], __ATOMIC_ACQUIRE);
    return chunk + (slot & (LW_CHUNK_RECS - 1));
}

void lull__wslab_init(struct lull__wslab *s);
void lull__wslab_fini(struct lull__wslab *s);
/* Called (when non-NULL) by every pop of the slab's free stack between its
 * snapshot of the head (and of the top's free_next) and its CAS, so a test
 * can make that snapshot go stale on purpose (tests/wheel/test_wheel_aba.c).
 * Set it while no wheel is in use; the pop path pays one relaxed load. */
extern void (*lull__wslab_pop_hook)(void);

/* Pop the free stack (*slot, its record *rp); false when it is empty. */
static inline bool lull__wslot_pop(struct lull__wslab *s, uint32_t *slot, struct lull__wtimer **rp)
{
    /* acquire: the top's free_next and state word were written before the
     * release CAS that pushed it (lull__wslot_push, _push_chain). */
    uint64_t h = __atomic_load_n(&s->head, __ATOMIC_ACQUIRE);
    for (;;) {
        uint32_t top = (uint32_t)h;
        if (top == LW_NIL)
            return false;
        /* relaxed: may be stale if top is popped and reused meanwhile; the
         * tag makes the CAS below fail in that case. */
        struct lull__wtimer *r = lw_rec(s, top);
        uint32_t next = __atomic_load_n(&r->free_next, __ATOMIC_RELAXED);
        uint64_t nh = (((h >> 32) + 1) << 32) | next;
        /* test hook: lets a test run other pops and pushes inside this
         * window.  Costs one relaxed load; NULL outside tests. */
        void (*hook)(void) = __atomic_load_n(&lull__wslab_pop_hook, __ATOMIC_RELAXED);
        if (lull__unlikely(hook != NULL))
            hook();
        /* acquire (both ways): as the load above, for the slot we take or
         * the new head we retry with. */
        if (__atomic_compare_exchange_n(&s->head, &h, nh, false,
                                        __ATOMIC_ACQUIRE, __ATOMIC_ACQUIRE)) {
            *slot = top;
            *rp = r;
            return true;
        }
    }
}

/* Take a never-used slot (its epoch is 1): 0, or -ENOMEM (a chunk could not
 * be allocated; nothing changed). */
int  lull__wslot_fresh(struct lull__wslab *s, uint32_t *slot, struct lull__wtimer **rp);

/* Take a slot from the free stack or the slab's never-used tail: *epoch is
 * the epoch its next incarnation gets, *rp its record.  -ENOMEM (a chunk
 * could not be allocated; nothing changed). */
static inline int lull__wslot_alloc(struct lull__wslab *s, uint32_t *slot, uint32_t *epoch,
                                    struct lull__wtimer **rp)
{
    if (lull__wslot_pop(s, slot, rp)) {
        /* relaxed: ordered by the acquire pop. */
        *epoch = LW_EPOCH(__atomic_load_n(&(*rp)->state, __ATOMIC_RELAXED));
        return 0;
    }
    *epoch = 1;
    return lull__wslot_fresh(s, slot, rp);
}
/* Give back a slot taken by lull__wslot_alloc and never published. */
void lull__wslot_unuse(struct lull__wslab *s, uint32_t slot, uint32_t epoch);
/* End incarnation `epoch` of r: its state word becomes FREE(epoch + 1), or
 * retired when the epochs are used up.  Returns whether the slot is to be
 * freed (pushed, or kept in a shard's cache). */
static inline bool lull__wslot_end(struct lull__wslab *s, struct lull__wtimer *r, uint32_t epoch)
{
    if (lull__unlikely(epoch == UINT32_MAX)) {
        /* release: the record's last use happens before anyone reads it
         * retired (pairs with the acquire state loads of cancel & co). */
        __atomic_store_n(&r->state, (uint64_t)LW_RETIRED, __ATOMIC_RELEASE);
        /* relaxed: a counter read only by check and stats. */
        __atomic_fetch_add(&s->retired, 1, __ATOMIC_RELAXED);
        return false;
    }
    /* release: as above; a stale handle's load of the state word that sees
     * FREE(epoch + 1) sees the incarnation over. */
    __atomic_store_n(&r->state, LW_WORD(epoch + 1, 0, LW_FREE), __ATOMIC_RELEASE);
    return true;
}
void lull__wslot_push(struct lull__wslab *s, uint32_t slot);
/* Push the chain first -> ... -> last (linked by free_next) in one CAS. */
void lull__wslot_push_chain(struct lull__wslab *s, uint32_t first, uint32_t last);

/* ---- shards and the wheel ------------------------------------------------- */
struct lw_shard {
    uint32_t lock;                  /* spinlock word */
    uint32_t levels;                /* bit L: bitmap[L] != 0 */
    uint64_t now;                   /* tick this shard has been advanced to */
    uint64_t earliest;              /* atomic: lower bound of its deadlines (ns) */
    uint64_t count;                 /* atomic, written under the lock: timers scheduled
                                     * into this shard and not cancelled (fires are
                                     * counted in w->fired) */
    uint32_t free_top;              /* the shard's cache of free slots (lock) */
    uint32_t nfree;                 /* atomic, written under the lock: its length */
    uint64_t mark;                  /* seq at its last collection (for check) */
    uint64_t last_n;                /* clock of its last collection (for check) */
    uint64_t st_buckets, st_moves;  /* work counters (tests) */
    uint64_t bitmap[LW_LEVELS];
    uint64_t min0[LW_SLOTS];        /* level-0 bucket b: no deadline in it is below min0[b] */
    uint32_t head[LW_LISTS];
} __attribute__((aligned(lull__cacheline)));

struct lull_wheel {
    struct lull__wslab slab;

    /* atomic, seqs[i] written under shard i's lock: the last schedule-order
     * number each shard handed out (lw_next_seq); read by every schedule */
    uint64_t seqs[LW_MAX_SHARDS] __attribute__((aligned(lull__cacheline)));

    /* atomic: with max_timers, pending timers, reserved by CAS */
    size_t reserved __attribute__((aligned(lull__cacheline)));

    /* written by the advancing thread only (advances serialize) */
    uint64_t fired __attribute__((aligned(lull__cacheline)));   /* timers fired, ever */

    /* read-mostly */
    uint64_t tick_ns __attribute__((aligned(lull__cacheline)));
    uint64_t tick_magic;            /* lw_tick's multiplier when tick_ns is no power of two */
    unsigned tick_shift;            /* log2(tick_ns) when a power of two, else 64 */
    unsigned tick_more;             /* lw_tick's final shift otherwise */
    unsigned nshards;
    uint64_t (*clock)(void *ctx);
    void *clock_ctx;
    size_t max_timers;
    struct lw_shard *shards;
    bool has_driver;
    int shutdown;                   /* atomic: destroy has begun */
    uint64_t sleep_until;           /* atomic: the driver sleeps until this (ns); 0 awake */
    unsigned waiters;               /* atomic: cancel_sync callers waiting for a callback (tests) */
    unsigned adv;                   /* atomic: an advance runs (bit 0), a thread waits on mu
                                     * for it to end (bit 1); lib/wheel.c, lw_adv_end */

    /* cold: blocking, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;              /* advance done, callback done, user left */
    pthread_cond_t dcv;             /* driver wake-up */
    pthread_t driver;
    unsigned users;                 /* threads in cancel_sync, or advances that waited */
    bool kick, stop, driver_exited, orphaned;
};

/* Tick of a deadline: ns / tick_ns.  A power of two is a shift; any other
 * tick a multiply-high and two shifts (the "round-down, add" method of
 * Granlund and Montgomery, as libdivide's branchfree u64 division): exact
 * for every 64-bit ns, and far cheaper than a 64-bit divide on the hot paths
 * (schedule, reschedule, cancel's unlink, every cascade).  lw_tick_init
 * sets the constants; tests/wheel/test_wheel_tick.c checks it against `/`. */
static inline uint64_t lw_tick(const struct lull_wheel *w, uint64_t ns)
{
    if (w->tick_shift < 64)
        return ns >> w->tick_shift;
    uint64_t q = (uint64_t)(((unsigned __int128)w->tick_magic * ns) >> 64);
    return (((ns - q) >> 1) + q) >> w->tick_more;
}
void lull__wheel_tick_init(struct lull_wheel *w, uint64_t tick_ns);

/* The list that a timer with tick e belongs in, relative to sh->now (shard
 * lock held): the due list if its tick has come; else the level of the
 * highest 6-bit group in which e and now differ, and e's digit there.  A
 * listed timer is always in the list this names (docs/wheel.md, Placement:
 * moving now never changes it; the checker verifies it against the list
 * number kept in the state word). */
static inline unsigned lw_list_of(const struct lw_shard *sh, uint64_t e)
{
    if (e <= sh->now)
        return LW_DUE;
    unsigned level = (63u - (unsigned)__builtin_clzll(e ^ sh->now)) / LW_BITS;
    return level * LW_SLOTS + ((unsigned)(e >> (level * LW_BITS)) & (LW_SLOTS - 1));
}

static inline void lw_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

void lull__wlock_slow(struct lw_shard *sh);
static inline void lw_lock(struct lw_shard *sh)
{
    /* acquire: the critical section sees every write made under the lock
     * before it; pairs with the release store in lw_unlock. */
    if (lull__likely(!__atomic_exchange_n(&sh->lock, 1u, __ATOMIC_ACQUIRE)))
        return;
    lull__wlock_slow(sh);
}
static inline void lw_unlock(struct lw_shard *sh)
{
    /* release: publishes the critical section's writes to the next holder
     * (pairs with the acquire exchange in lw_lock / lull__wlock_slow). */
    __atomic_store_n(&sh->lock, 0u, __ATOMIC_RELEASE);
}

/* ---- test hooks (not part of the API) ------------------------------------- */
/* Number of shards for wheels created from now on (0: one per CPU, rounded
 * up to a power of two, at most LW_MAX_SHARDS).  Benchmarks compare 1 (a
 * single lock) with more. */
extern unsigned lull__wheel_shards;
/* How many free slots a shard keeps in its cache (default LW_CACHE_MAX; 0:
 * every free slot goes straight to the free stack, as test_wheel_aba needs).
 * Set it while no wheel is in use. */
extern unsigned lull__wslab_cache_max;

struct lull__wheel_stats {
    uint64_t buckets;   /* buckets emptied by advances (cascades and fires) */
    uint64_t moves;     /* timers moved down a level by cascades */
    unsigned shards;
    uint32_t slots;     /* slab size (fresh) */
    uint32_t retired;
};
void lull__wheel_stats(lull_wheel *w, struct lull__wheel_stats *st);
/* Set the epoch of pending timer *t to e (e >= 1) and update *t: lets tests
 * reach the end of a slot's epochs.  -ESTALE if *t is not pending. */
int lull__wheel_set_epoch(lull_wheel *w, lull_timer *t, uint32_t e);

#endif /* LULL_WHEEL_INTERNAL_H */
