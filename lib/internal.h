/*
 * lib/internal.h - what lull's layers share and tests may reach.
 *
 * Nothing here is exported from the shared library (hidden visibility); the
 * tests, benchmarks and fuzzers link the static library and may use it.
 * Names start with lull__ (two underscores) so they never collide with the
 * public API.
 */
#ifndef LULL_INTERNAL_H
#define LULL_INTERNAL_H

#include <lull/common.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define lull__likely(x)   __builtin_expect(!!(x), 1)
#define lull__unlikely(x) __builtin_expect(!!(x), 0)
#define lull__cacheline   64

/* ---- allocation, with a fault-injection hook ----------------------------
 * Every allocation lull makes goes through these.  Tests arm the hook to make
 * the Nth allocation from now fail (1: the next one) and sweep N = 1, 2, ...
 * until a scenario completes without reaching it.  The hook costs one relaxed
 * load per allocation when disarmed. */
void *lull__malloc(size_t n);
void *lull__calloc(size_t n, size_t size);
void *lull__aligned_alloc(size_t align, size_t n);   /* n rounded up to align */
void  lull__free(void *p);
void  lull__fault_arm(unsigned long nth);  /* 0 disarms */
bool  lull__fault_fired(void);             /* did the armed failure happen? (and disarm) */
bool  lull__fault_now(void);               /* for allocators of lull's own: fail this one? */

/* ---- threads, with a fault-injection hook --------------------------------
 * Every thread lull starts (the reclaim thread, a wheel's driver) is created
 * through lull__thread_create: pthread_create with default attributes, and
 * the same return convention (0 or a positive errno; *t untouched on error).
 * lull__thread_fault_arm(n) makes the Nth creation from now fail with EAGAIN
 * (1: the next one; 0 disarms), as pthread_create does when a resource limit
 * is hit; independent of the allocation hook above. */
int   lull__thread_create(pthread_t *t, void *(*fn)(void *), void *arg);
void  lull__thread_fault_arm(unsigned long nth);
bool  lull__thread_fault_fired(void);      /* did the armed failure happen? (and disarm) */

/* ---- time --------------------------------------------------------------- */
uint64_t lull__now_ns(void);  /* CLOCK_MONOTONIC */

/* ---- RCU: thread registration and batched deferred free ------------------
 * Objects retired by writers are not each queued: a thread chains them and
 * pushes the chain onto lull's reclaim queue every LULL_RETIRE_BATCH objects
 * (and on lull_barrier and at thread exit).  One process-wide reclaim thread
 * (lib/rcu.c) takes everything queued, waits for one grace period and runs
 * it.  fn runs on that thread; it must only free (it may not take locks a
 * reader holds, nor wait for a grace period: lull_barrier refuses there with
 * -EDEADLK).  Whatever fn itself defers is queued after its batch has run.
 *
 * Start the reclaim thread if it is not running: 0, or the negative errno of
 * its creation (-EAGAIN...), after which a later call tries again.  Whatever
 * creates an object that defers through RCU calls this first and fails with
 * its error (lull_store_create; the registry and every deferral go through a
 * store).  Any thread; takes a mutex only until the thread runs. */
int lull__rcu_start(void);

struct lull__deferred {
    void *rcu_head_space[2];          /* the queue's link and kind while queued; free once
                                       * the batch runs (store_nodes.c links chains in [0]) */
    struct lull__deferred *next;      /* the next object of its batch */
    void (*fn)(struct lull__deferred *d);
    uint32_t n;                       /* batch head: objects in the batch */
    uint32_t aux;                     /* the owner's: lib/rcu.c never touches it */
};
/* Queue d to run d->fn(d) after a grace period.  Any thread; never fails,
 * never allocates.  Ordering: everything the caller (and, transitively,
 * every reader that unlocked before the grace period ends) did happens
 * before fn runs -- and TSan builds are told so.  Without a reclaim thread
 * (none could be started) d stays batched on the calling thread until
 * lull_barrier or thread exit reclaims it there; nothing is lost. */
void lull__defer(struct lull__deferred *d, void (*fn)(struct lull__deferred *));

/* Backpressure: objects queued and not yet freed are capped near
 * LULL_INFLIGHT_MAX.  A writer calls lull__defer_throttle() before it
 * starts, outside its own section; past the cap it waits until the reclaim
 * thread has run everything queued (a no-op inside a read-side section or
 * on the reclaim thread, where waiting would deadlock).  So retired memory
 * stays bounded however fast writers go: at most about LULL_INFLIGHT_MAX
 * objects queued plus LULL_RETIRE_BATCH per thread. */
#define LULL_INFLIGHT_MAX 65536
void lull__defer_throttle(void);
long lull__inflight_now(void);        /* the gauge, for tests: objects queued, not yet run */

/* Typed batches: objects of one kind (0 .. LULL_DEFER_KINDS-1, chosen by
 * the caller; one fn per kind) are chained per thread and, after a grace
 * period, handed to chain_fn(head) as one NULL-terminated chain linked by
 * ->next, with head->n objects.  chain_fn runs on the reclaim thread and
 * may keep the objects (recycling) without touching each one.  Flushed like
 * lull__defer's batches (every LULL_RETIRE_BATCH, at lull_barrier, at thread
 * exit).  Ordering as lull__defer. */
#define LULL_DEFER_KINDS 16
void lull__defer_kind(struct lull__deferred *d, unsigned kind,
                      void (*chain_fn)(struct lull__deferred *head));

/* Register the calling thread if it is not (idempotent; the fast path is one
 * thread-local load). */
void lull__thread_enter(void);

/* ---- publication that TSan can see -----------------------------------------
 * liburcu 0.13 is not TSan-aware: its rcu_assign_pointer/rcu_dereference and
 * its grace periods are invisible to TSan.  lull therefore publishes with its
 * own release stores and reads with acquire loads (free on x86: plain movs),
 * and tells TSan about grace periods in TSan builds only. */
#define lull__store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define lull__load_acquire(p)     __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define lull__load_relaxed(p)     __atomic_load_n((p), __ATOMIC_RELAXED)
#define lull__store_relaxed(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)

#ifdef LULL_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
extern char lull__tsan_grace;   /* the sync object every grace period stands for */
#define lull__tsan_release(a) __tsan_release(a)
#define lull__tsan_acquire(a) __tsan_acquire(a)
#else
#define lull__tsan_release(a) ((void)0)
#define lull__tsan_acquire(a) ((void)0)
#endif

#endif /* LULL_INTERNAL_H */
