/*
 * lull/rcu.h - read-side sections and grace periods.
 *
 * lull stands on liburcu's memb flavour.  A *read-side section* is the code
 * between lull_read_lock() and the matching lull_read_unlock().  Any pointer
 * lull hands out inside a section (a store snapshot, a registry conn) stays
 * valid and its bytes unchanged until the *outermost* unlock of the calling
 * thread; memory retired meanwhile is freed only after every section that
 * could see it has ended (a grace period).
 *
 * Threads are registered with liburcu on their first lull call and
 * unregistered when they exit; there is nothing to call.  A thread that
 * registered itself with urcu-memb already is left as it is.
 *
 * What a section must not do: block for long (it holds back every deferred
 * free in the process, so memory grows while it lasts), call lull_barrier()
 * or any *_destroy / *_shutdown (they wait for grace periods that cannot end
 * while the caller's own section is open: they return -EDEADLK instead), or
 * survive its thread (unlock before the thread exits).
 *
 * Retired memory is freed on one thread of lull's own, "lull-reclaim": it
 * takes everything queued, waits for one grace period and frees it.  The
 * first lull_store_create (or registry create, which makes a store) starts
 * it; if it cannot start, that create fails with errno EAGAIN (or
 * pthread_create's error), leaves nothing behind, and a later create tries
 * again.  The thread blocks every signal, is detached and lasts as long as
 * the process.  Like liburcu's call_rcu thread it does not survive fork():
 * a child process must not use lull (exec is fine).  A program that only
 * uses wheels starts no such thread.
 *
 * liblull.so may be dlopen()ed (a plugin that links lull); dlclose() leaves
 * it loaded, since the reclaim thread still runs its code (-z nodelete).
 */
#ifndef LULL_RCU_H
#define LULL_RCU_H

#include <lull/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * lull_read_lock - enter a read-side section.
 *
 * Nests: only the outermost lock/unlock pair matters.  The fast path (thread
 * already registered) is a thread-local load, a compare and a store: no
 * atomic read-modify-write and, where the kernel offers membarrier(2), no
 * fence.  The first call on a thread registers it (takes liburcu's registry
 * mutex once).
 * Threads: any.  Ordering: loads in the section cannot be reordered before
 * it (paired with the grace-period fence of the writer).
 * Lifetime: must be matched by lull_read_unlock() on the same thread.
 */
LULL_API void lull_read_lock(void);

/*
 * lull_read_unlock - leave a read-side section.
 *
 * Must pair with an earlier lull_read_lock() on the same thread; an
 * unmatched unlock is a bug in the caller (undefined, as in liburcu).  After
 * the outermost unlock, no pointer obtained in the section may be used.
 * Ordering: the section's loads complete before the unlock is visible to a
 * waiting grace period.
 */
LULL_API void lull_read_unlock(void);

/*
 * LULL_INLINE_READ - read-side sections without a call (opt-in).
 *
 * Define LULL_INLINE_READ before including any lull header (or pass
 * -DLULL_INLINE_READ) and lull_read_lock() and lull_read_unlock() become
 * inline functions: liburcu's own inline read side of the memb flavour,
 * which liburcu offers to non-LGPL code too, behind a test that the thread
 * is registered (a thread's first section still calls lull_read_lock(),
 * which registers it).  Same semantics, nesting and ordering as the
 * functions above; the two forms mix freely on a thread, and across
 * translation units built either way.  A hot get is a few nanoseconds
 * faster (docs/performance.md).
 *
 * The price, as with liburcu's _LGPL_SOURCE: the caller's object code
 * depends on liburcu's per-thread reader layout, so it must be rebuilt when
 * liburcu is upgraded; it needs liburcu's headers to build and must link
 * liburcu-memb itself (pkg-config liburcu-memb; lull::lull_static already
 * does).  Under ThreadSanitizer the functions are kept: they carry the
 * annotations that tell TSan about grace periods.
 */
#if defined(__SANITIZE_THREAD__)
#define LULL__TSAN_BUILD 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define LULL__TSAN_BUILD 1
#endif
#endif

#if defined(LULL_INLINE_READ) && !defined(LULL__TSAN_BUILD)
#include <urcu/static/urcu-memb.h>

static inline void lull__read_lock_inline(void)
{
    if (__builtin_expect(URCU_TLS(urcu_memb_reader).registered != 0, 1))
        _urcu_memb_read_lock();
    else
        (lull_read_lock)();         /* the thread's first section: registers it */
}

static inline void lull__read_unlock_inline(void)
{
    _urcu_memb_read_unlock();
}

#define lull_read_lock()   lull__read_lock_inline()
#define lull_read_unlock() lull__read_unlock_inline()
#endif

/*
 * lull_read_ongoing - is the calling thread inside a read-side section?
 *
 * Returns: true inside a section (at any depth), false otherwise.  A
 *   urcu-memb read-side section the thread opened itself counts too: it is
 *   the same section, and a grace period would wait for it just the same.
 * Threads: any.  Ordering: none (thread-local).
 */
LULL_API bool lull_read_ongoing(void);

/*
 * lull_synchronize - wait for a grace period.
 *
 * Returns when every read-side section that was open when it was called has
 * ended.  Returns 0, or -EDEADLK (and waits for nothing) when called inside
 * a section.
 * Threads: any.  Blocks: yes.  Ordering: full fence on both sides.
 */
LULL_API int lull_synchronize(void);

/*
 * lull_barrier - wait until every deferred free queued before it has run.
 *
 * First queues the calling thread's pending batches of retired memory, then
 * waits until the reclaim thread has freed everything queued before the
 * call, by any thread.  Retired memory still batched on *other live*
 * threads (at most LULL_RETIRE_BATCH objects each) is freed when those
 * threads retire more or exit.  Every *_destroy ends with a barrier, so a
 * program that destroys what it created and joins its threads exits clean
 * under valgrind and LeakSanitizer.
 * Returns: 0, or -EDEADLK (and waits for nothing) inside a section or on
 * the reclaim thread (from a registry's free callback).
 * Threads: any.  Blocks: yes, for at least one grace period.
 * Ordering: everything the frees did happens before the return.
 */
LULL_API int lull_barrier(void);

/*
 * lull_flush - queue the calling thread's retired memory now, without
 * waiting for it to be freed.
 *
 * A thread batches what its writes retire (replaced snapshots, a
 * registry's closed conns and dependents, whose free callbacks run only
 * once their batch is reclaimed) and queues a batch every
 * LULL_RETIRE_BATCH objects.  On a thread that then goes quiet -- an event
 * loop about to sleep in epoll_wait -- up to that many objects would wait
 * for its next writes.  Call lull_flush before sleeping: they are freed
 * after the next grace period instead (within about 10 ms).
 * Threads: any; a no-op on a thread with nothing batched.  Section: may be
 *   called inside one.  Blocks: no (at most one futex wake-up of the
 *   reclaim thread).  Ordering: as any retirement -- the frees run after a
 *   grace period that began after this call.
 */
LULL_API void lull_flush(void);

/* How many retired objects a thread batches before it queues them. */
#define LULL_RETIRE_BATCH 64

#ifdef __cplusplus
}
#endif
#endif /* LULL_RCU_H */
