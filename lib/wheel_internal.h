/*
 * lib/wheel_internal.h - the timer wheel's insides, shared by lib/wheel*.c
 * and reachable by tests (which link the static library).
 *
 * Layout (docs/wheel.md explains the why):
 *   - a slab of 64-byte timer records, indexed by 32-bit slot numbers, in
 *     chunks that double in size (chunk k holds 64 << k records) found through
 *     a fixed directory, so slot -> record needs no lock and chunks never
 *     move or go away before the wheel does;
 *   - a lock-free LIFO of free slots with an ABA tag in its head word;
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

/* ---- the state word ------------------------------------------------------
 * One atomic uint64_t per record: epoch in the high 32 bits, state in the
 * low 2.  A handle is (epoch << 32) | slot; epochs start at 1, so 0 is never
 * a handle, and a slot whose epoch would wrap is retired (state word 0) and
 * never handed out again, so no handle is ever reused. */
enum {
    LW_FREE      = 0,   /* on the free stack (epoch: the next incarnation's) */
    LW_PENDING   = 1,   /* armed: in a shard list, or collected by an advance */
    LW_RUNNING   = 2,   /* fire won: the callback runs */
    LW_CANCELLED = 3,   /* cancel won against a collected timer; the advance frees it */
};
#define LW_ST(s)        ((unsigned)((s) & 3u))
#define LW_EPOCH(s)     ((uint32_t)((s) >> 32))
#define LW_WORD(e, st)  (((uint64_t)(e) << 32) | (uint64_t)(st))
#define LW_HANDLE(e, slot) (((uint64_t)(e) << 32) | (uint64_t)(slot))
#define LW_RETIRED      0u                  /* state word of a retired (or never used) slot */

/* where a PENDING record is (shard lock) */
enum { LW_NOWHERE = 0, LW_IN_LIST = 1, LW_COLLECTED = 2 };

/* A timer record: exactly one cache line.  Who may touch what:
 *   state             atomics only (docs/wheel.md: the state machine)
 *   d, seq            written with release stores after the state word
 *                     changed; read under the shard lock, or seqlock-style by
 *                     the advancing thread (lw_cursor_load)
 *   fn, arg           written before the record is published PENDING, read
 *                     by the advance that wins the fire CAS
 *   next, prev, list, where   the shard lock of the shard the record is in
 *   shard             relaxed atomics: read before taking that lock
 *   fnext, fire_epoch the advancing thread only (advances serialize)
 *   free_next         relaxed atomics: the free stack */
struct lull__wtimer {
    uint64_t state;
    uint64_t d;             /* deadline, clock ns */
    uint64_t seq;           /* schedule order, for ties */
    lull_timer_fn fn;
    void *arg;
    uint32_t next, prev;    /* list links (slots) */
    uint32_t fnext;         /* an advance's fire list */
    uint32_t free_next;     /* free stack link */
    uint32_t fire_epoch;    /* epoch the advance collected */
    uint16_t list;          /* bucket (level * 64 + slot) or LW_DUE */
    uint8_t shard;
    uint8_t where;
};
_Static_assert(sizeof(struct lull__wtimer) == 64, "a pending timer costs at most 64 bytes");

/* where: written only under the shard lock, but read (by cancel and
 * reschedule, holding the lock of the shard the timer was in) at a moment
 * when a collected timer may have fired and its slot been reused by a timer
 * in another shard.  So every access is atomic (relaxed), and a reader acts
 * on it only after winning a CAS on the state word from PENDING(e): a value
 * read from a later incarnation makes that CAS fail. */
static inline unsigned lw_where(const struct lull__wtimer *r)
{
    return __atomic_load_n(&r->where, __ATOMIC_RELAXED);
}

static inline void lw_set_where(struct lull__wtimer *r, unsigned v)
{
    __atomic_store_n(&r->where, (uint8_t)v, __ATOMIC_RELAXED);
}

/* ---- the slab ------------------------------------------------------------ */
#define LW_CHUNK0_SHIFT 6                   /* chunk 0: 64 records */
#define LW_CHUNKS       26                  /* 64 * (2^26 - 1) slots in all */
#define LW_SLOT_LIMIT   ((uint32_t)((((uint64_t)1 << LW_CHUNKS) - 1) << LW_CHUNK0_SHIFT))
_Static_assert(LW_SLOT_LIMIT < LW_NIL, "LW_NIL must never be a slot");

struct lull__wslab {
    /* hot: every schedule and free */
    uint64_t head;          /* free stack: (ABA tag << 32) | top slot */
    uint32_t fresh;         /* slots [0, fresh) have been handed out at least once */
    uint32_t retired;       /* slots whose epochs are used up */
    /* read-mostly: the directory (raw allocations; records start 64-aligned) */
    char *chunk[LW_CHUNKS] __attribute__((aligned(lull__cacheline)));
};

static inline struct lull__wtimer *lw_chunk_recs(char *raw)
{
    uintptr_t p = ((uintptr_t)raw + (lull__cacheline - 1)) & ~(uintptr_t)(lull__cacheline - 1);
    return (struct lull__wtimer *)p;
}

/* Slot -> record, O(1), no lock.  slot must be below fresh (read with
 * acquire by the caller, or known from a list or the free stack). */
static inline struct lull__wtimer *lw_rec(struct lull__wslab *s, uint32_t slot)
{
    uint64_t q = ((uint64_t)slot >> LW_CHUNK0_SHIFT) + 1;
    unsigned k = 63u - (unsigned)__builtin_clzll(q);
    uint64_t off = slot - ((((uint64_t)1 << k) - 1) << LW_CHUNK0_SHIFT);
    /* acquire: pairs with the release CAS that installed the chunk
     * (lw_chunk_add), so its zeroed contents are visible. */
    char *raw = __atomic_load_n(&s->chunk[k], __ATOMIC_ACQUIRE);
    return lw_chunk_recs(raw) + off;
}

void lull__wslab_init(struct lull__wslab *s);
void lull__wslab_fini(struct lull__wslab *s);
/* Take a slot: *epoch is the epoch its next incarnation gets.  -ENOMEM (a
 * chunk could not be allocated; nothing changed). */
int  lull__wslot_alloc(struct lull__wslab *s, uint32_t *slot, uint32_t *epoch);
/* Give back a slot taken by lull__wslot_alloc and never published. */
void lull__wslot_unuse(struct lull__wslab *s, uint32_t slot, uint32_t epoch);
/* End incarnation `epoch` of r: its state word becomes FREE(epoch + 1), or
 * retired when the epochs are used up.  Returns whether to lull__wslot_push. */
bool lull__wslot_end(struct lull__wslab *s, struct lull__wtimer *r, uint32_t epoch);
void lull__wslot_push(struct lull__wslab *s, uint32_t slot);

/* ---- shards and the wheel ------------------------------------------------- */
struct lw_shard {
    uint32_t lock;                  /* spinlock word */
    uint32_t levels;                /* bit L: bitmap[L] != 0 */
    uint64_t now;                   /* tick this shard has been advanced to */
    uint64_t earliest;              /* atomic: lower bound of its deadlines (ns) */
    uint64_t mark;                  /* seq at its last collection (for check) */
    uint64_t last_n;                /* clock of its last collection (for check) */
    uint64_t st_buckets, st_moves;  /* work counters (tests) */
    uint64_t bitmap[LW_LEVELS];
    uint32_t head[LW_LISTS];
} __attribute__((aligned(lull__cacheline)));

struct lull_wheel {
    struct lull__wslab slab;

    /* hot shared counters, on one line (every schedule RMWs both) */
    size_t pending __attribute__((aligned(lull__cacheline)));
    uint64_t seq;

    /* read-mostly */
    uint64_t tick_ns __attribute__((aligned(lull__cacheline)));
    unsigned tick_shift;            /* log2(tick_ns) when a power of two, else 64 */
    unsigned nshards;
    uint64_t (*clock)(void *ctx);
    void *clock_ctx;
    size_t max_timers;
    struct lw_shard *shards;
    bool has_driver;
    int shutdown;                   /* atomic: destroy has begun */
    uint64_t sleep_until;           /* atomic: the driver sleeps until this (ns); 0 awake */
    unsigned waiters;               /* atomic: cancel_sync callers waiting for a callback */

    /* cold: blocking, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;              /* advance done, callback done, user left */
    pthread_cond_t dcv;             /* driver wake-up */
    pthread_t driver;
    unsigned users;                 /* threads blocked in or running advance / cancel_sync */
    bool advancing, kick, stop, driver_exited, orphaned;
};

/* tick of a deadline */
static inline uint64_t lw_tick(const struct lull_wheel *w, uint64_t ns)
{
    return w->tick_shift < 64 ? ns >> w->tick_shift : ns / w->tick_ns;
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
/* Make the next create with driver_thread fail as if pthread_create had
 * returned this error (0: off). */
extern int lull__wheel_fail_thread;

/* Called (when non-NULL) by every pop of the slab's free stack between its
 * snapshot of the head (and of the top's free_next) and its CAS, so a test
 * can make that snapshot go stale on purpose (tests/wheel/test_wheel_aba.c).
 * Set it while no wheel is in use; the pop path pays one relaxed load. */
extern void (*lull__wslab_pop_hook)(void);

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
