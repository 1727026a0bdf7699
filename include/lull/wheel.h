/*
 * lull/wheel.h - layer 2: an epoch-tagged hierarchical timer wheel.
 *
 * Hierarchical 64-slot wheels with an occupancy bitmap per level; expiry is
 * exact (timers cascade down to level 0 before they fire, no 12.5%-late
 * levels).  Timer records live in a slab indexed by 32-bit slot numbers, at
 * most 64 bytes each.  A handle (lull_timer) is slot + epoch: the epoch
 * changes every time the slot is reused, so a stale handle can never cancel,
 * move or be mistaken for a newer timer in the same slot.
 *
 * Each timer has one atomic state word (state + epoch); fire and cancel race
 * on it with a compare-and-swap, so exactly one wins.  docs/wheel.md has the
 * state machine, the accuracy guarantee and the costs.
 *
 * Time: the wheel's clock is injectable (opts.clock), so tests and fuzzers
 * drive virtual time and call lull_wheel_advance() themselves.
 */
#ifndef LULL_WHEEL_H
#define LULL_WHEEL_H

#include <lull/common.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lull_wheel lull_wheel;
typedef uint64_t lull_timer;          /* handle: slot + epoch. 0 is never a valid handle */
typedef void (*lull_timer_fn)(lull_timer t, void *arg);

struct lull_wheel_opts {
    uint64_t tick_ns;                   /* resolution; 0: 1 ms */
    uint64_t (*clock)(void *clock_ctx); /* now in ns; NULL: CLOCK_MONOTONIC */
    void    *clock_ctx;
    size_t   max_timers;                /* 0: unlimited. Past it: -ENOSPC */
    bool     driver_thread;             /* true: lull runs the wheel on a thread of its own */
};

/*
 * lull_wheel_create - make a wheel.
 * @opts: copied; NULL means all defaults (1 ms tick, CLOCK_MONOTONIC,
 *        unlimited, no driver thread).
 * Returns: the wheel, or NULL with errno EINVAL (bad option), ENOMEM, or
 *   the error of pthread_create when the driver thread cannot start.
 * Threads: any.  The clock function is called from any thread that
 *   schedules or advances; it must be thread-safe and monotonic.
 */
LULL_API lull_wheel *lull_wheel_create(const struct lull_wheel_opts *opts);

/*
 * lull_wheel_destroy - shut the wheel down and free it.
 * Refuses new timers (-ESHUTDOWN to schedule/reschedule), cancels every
 * pending one (their callbacks never run), waits for running callbacks up to
 * @drain_timeout_ns (0: wait as long as it takes).
 * Returns: 0; -ETIMEDOUT if callbacks outlast the timeout (the wheel is then
 *   still freed, by the last callback to return); -EINVAL for NULL;
 *   -EDEADLK when called from one of this wheel's callbacks (nothing done).
 * Threads: any; no thread may use w after it returns.  Blocks: yes.
 */
LULL_API int lull_wheel_destroy(lull_wheel *w, uint64_t drain_timeout_ns);

/*
 * lull_wheel_schedule - arm a timer to run fn(t, arg) once, delay_ns from now.
 * @delay_ns: 0 is due at once (at the next advance); a delay whose deadline
 *            would overflow saturates at UINT64_MAX - 1 ns (never wraps).
 * @t:        out: the new handle (never 0).
 * Returns: 0; -EINVAL (NULL w, fn or t); -ENOSPC (max_timers pending);
 *   -ENOMEM; -ESHUTDOWN (destroy started).  On failure *t is untouched and
 *   fn will never run.
 * Threads: any, including from a callback (the new timer fires in a later
 *   advance, never the current one).  Cost: O(1), no global lock.
 * Ordering: release: fn sees every write made before schedule.
 */
LULL_API int lull_wheel_schedule(lull_wheel *w, uint64_t delay_ns, lull_timer_fn fn, void *arg,
                                 lull_timer *t);

/*
 * lull_wheel_cancel - stop a timer.
 * Returns: 0: prevented, fn will never run (the slot is reusable at once).
 *   -EINPROGRESS: fn is running now (it will finish; use cancel_sync to wait).
 *   -ESTALE: not pending: fired, cancelled, or never a handle of this wheel
 *   (garbage handles included).  -EINVAL for NULL w.
 * Exactly one winner: either this returns 0 and fn never runs, or fn runs
 *   once and this does not return 0.
 * Threads: any, including callbacks.  Cost: O(1).
 */
LULL_API int lull_wheel_cancel(lull_wheel *w, lull_timer t);

/*
 * lull_wheel_cancel_sync - as lull_wheel_cancel, but waits for a running fn.
 * Returns: as cancel; -EINPROGRESS only after fn has returned; -EDEADLK
 *   (nothing done) when called from t's own callback.  Whatever it returns
 *   (but -EDEADLK), fn is not running and never will.
 * Threads: any.  Blocks: while t's callback runs.
 */
LULL_API int lull_wheel_cancel_sync(lull_wheel *w, lull_timer t);

/*
 * lull_wheel_reschedule - move a pending timer to now + delay_ns.
 * @nt: out: the new handle; t is stale at once (-ESTALE to every call).
 * Returns: 0; -ESTALE (nothing scheduled, *nt untouched) if t was not
 *   pending; -EINVAL; -ESHUTDOWN.  Needs no free capacity (never -ENOSPC)
 *   and allocates nothing.
 * Threads: any.  Cost: O(1).
 */
LULL_API int lull_wheel_reschedule(lull_wheel *w, lull_timer t, uint64_t delay_ns, lull_timer *nt);

/*
 * lull_wheel_advance - fire every timer due by the clock.
 * Returns: how many callbacks ran (0 for NULL w).
 * Callbacks run on the calling thread, in deadline order (ties in schedule
 * order), with no wheel lock held.  Concurrent advances serialize.  The cost
 * grows with the timers fired and the levels, not the time elapsed.
 * Threads: any (with driver_thread the driver calls it too).
 */
LULL_API size_t lull_wheel_advance(lull_wheel *w);

/*
 * lull_wheel_next_deadline - the earliest pending deadline, in clock ns.
 * Returns: UINT64_MAX if nothing is pending (or NULL w).  Never later than
 *   the true earliest deadline (it may be earlier by less than one tick, for
 *   a timer that is due but not yet fired, or one cancelled meanwhile).
 * Use: as an epoll timeout, (deadline - now) rounded up to ms.
 */
LULL_API uint64_t lull_wheel_next_deadline(lull_wheel *w);

/* lull_wheel_pending - how many timers are pending (0 for NULL). */
LULL_API size_t lull_wheel_pending(lull_wheel *w);

/*
 * lull_wheel_check - verify the wheel's invariants (tests and fuzzers).
 * @out: where to describe each violation; NULL for silence.
 * Returns: 0 if all hold, the number of violations otherwise, -EINVAL for
 *   NULL.  Threads: any, but meaningful only while no other thread uses w.
 */
LULL_API int lull_wheel_check(lull_wheel *w, FILE *out);

#ifdef __cplusplus
}
#endif
#endif /* LULL_WHEEL_H */
