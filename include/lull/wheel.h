/*
 * lull/wheel.h - layer 2: an epoch-tagged hierarchical timer wheel.
 *
 * Hierarchical 64-slot wheels with an occupancy bitmap per level; expiry is
 * exact (timers cascade down to level 0 before they fire, no 12.5%-late
 * levels), and exact to the nanosecond: a timer fires at the first advance
 * whose clock reads at or after its deadline, never before.  Timer records
 * live in a slab indexed by 32-bit slot numbers, 48 bytes each.  A handle
 * (lull_timer) is (epoch << 32) | slot: the epoch changes every time the
 * slot is reused or the timer rescheduled, and a slot whose epochs run out
 * is retired, so a handle is never reused and a stale handle can never
 * cancel, move or be mistaken for a newer timer in the same slot.
 *
 * Each timer has one atomic state word (state + epoch); fire and cancel race
 * on it with a compare-and-swap, so exactly one wins.  docs/wheel.md has the
 * state machine, the accuracy guarantee, the costs and the design of the
 * hot path (schedule, cancel and reschedule take no global lock).
 *
 * Time: the wheel's clock is injectable (opts.clock), so tests and fuzzers
 * drive virtual time and call lull_wheel_advance() themselves.
 *
 * What it leaves out, on purpose: there is no "cancel all" (destroy does
 * that, once, with the drain semantics below) and no way to read or change a
 * pending timer's callback or argument: a handle only lets you cancel or
 * move what you armed.
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
 *        unlimited, no driver thread).  tick_ns is the bucket width: it
 *        sets what an advance costs, not its accuracy.
 * Returns: the wheel, or NULL with errno ENOMEM, or the error of
 *   pthread_create when the driver thread cannot start (nothing is left
 *   behind either way).
 * Threads: any.  The clock function is called from any thread that
 *   schedules, reschedules or advances; it must be thread-safe and
 *   monotonic (a clock that steps back only holds the wheel's time still).
 *   With driver_thread and a custom clock, the driver sleeps by real time
 *   for (deadline - clock()) as an approximation.
 */
LULL_API lull_wheel *lull_wheel_create(const struct lull_wheel_opts *opts);

/*
 * lull_wheel_destroy - shut the wheel down and free it.
 * Refuses new timers (-ESHUTDOWN to schedule/reschedule from then on),
 * cancels every pending one (their callbacks never run: no callback starts
 * once destroy has begun), stops the driver thread, and waits for running
 * callbacks (and threads blocked in advance or cancel_sync) up to
 * @drain_timeout_ns (0: as long as it takes).
 * Returns: 0; -ETIMEDOUT if callbacks outlast the timeout (the wheel is then
 *   freed by the last of those threads, when its callback returns);
 *   -EINVAL for NULL; -EDEADLK when called from one of this wheel's
 *   callbacks (nothing done); -ESHUTDOWN if a destroy has already begun.
 * Threads: any but a callback of w.  No thread may call into w once destroy
 *   has returned, and none may still be inside a call on w then (other than
 *   the callbacks it waited for).  Blocks: yes.
 * Ends, like every *_destroy, with lull_barrier(): the wheel defers nothing
 *   through RCU itself, but its callbacks may have (skipped, as -EDEADLK,
 *   when called inside a read-side section).
 */
LULL_API int lull_wheel_destroy(lull_wheel *w, uint64_t drain_timeout_ns);

/*
 * lull_wheel_schedule - arm a timer to run fn(t, arg) once, at clock() +
 * delay_ns (the deadline).
 * @delay_ns: 0 is due at once (at the next advance, even within the same
 *            tick); a deadline that would reach or pass UINT64_MAX
 *            saturates at UINT64_MAX - 1 ns (never wraps, never fires early).
 * @t:        out: the new handle (never 0), written before fn can run.
 * Returns: 0; -EINVAL (NULL w, fn or t); -ENOSPC (max_timers pending);
 *   -ENOMEM (a slab chunk could not be allocated); -ESHUTDOWN (destroy
 *   began).  On failure nothing changed, *t is untouched and fn never runs.
 * Threads: any, including from a callback (the new timer fires in a later
 *   advance, never the current one).  Cost: O(1), no global lock.
 * Ordering: release: fn sees every write made before schedule.
 */
LULL_API int lull_wheel_schedule(lull_wheel *w, uint64_t delay_ns, lull_timer_fn fn, void *arg,
                                 lull_timer *t);

/*
 * lull_wheel_cancel - stop a timer.
 * Returns: 0: prevented, fn will never run; the timer no longer counts
 *   against max_timers and its slot is reusable at once (for a timer an
 *   advance in progress had already collected as due, once that advance
 *   passes it).
 *   -EINPROGRESS: fn is running now (it will finish; cancel_sync waits).
 *   -ESTALE: not pending: fired, cancelled, rescheduled (the old handle), or
 *   never a handle of this wheel (garbage handles included; never a crash).
 *   -EINVAL for NULL w.
 * Exactly one winner: either this returns 0 and fn never runs, or fn runs
 *   once and this does not return 0.
 * Threads: any, including callbacks.  Cost: O(1), no global lock.
 * Ordering: none beyond the result.
 */
LULL_API int lull_wheel_cancel(lull_wheel *w, lull_timer t);

/*
 * lull_wheel_cancel_sync - as lull_wheel_cancel, but waits for a running fn.
 * Returns: as cancel; -EINPROGRESS only after fn has returned; -EDEADLK
 *   (nothing done) when called from t's own callback (fn would wait for
 *   itself).  Whatever it returns but -EDEADLK, fn is not running and never
 *   will.
 * Threads: any.  Blocks: while t's callback runs -- it polls (spins, yields,
 *   then sleeps up to 1 ms at a time, as Linux's del_timer_sync does), so it
 *   may return up to about 1 ms after fn has.
 * Ordering: after -EINPROGRESS, everything fn did is visible to the caller.
 */
LULL_API int lull_wheel_cancel_sync(lull_wheel *w, lull_timer t);

/*
 * lull_wheel_reschedule - move a pending timer to clock() + delay_ns, as one
 * atomic step, with the same fn and arg.
 * @nt: out: the new handle (never 0); t is stale at once (-ESTALE to every
 *      call).  A rescheduled timer orders after timers already scheduled
 *      for the same deadline (it gets a new place in schedule order).
 * Returns: 0; -ESTALE (nothing changed, *nt untouched) if t was not
 *   pending, or if its advance fired it first; -EINVAL; -ESHUTDOWN.
 *   Needs no free capacity (never -ENOSPC) and allocates nothing -- but
 *   once in 2^32 reschedules of one timer its slot's epochs run out and it
 *   moves to another slot, which may need a slab chunk (-ENOMEM then).
 * Threads: any, including callbacks (not on their own running timer:
 *   -ESTALE).  Cost: O(1), no global lock.  Ordering: release, as schedule.
 */
LULL_API int lull_wheel_reschedule(lull_wheel *w, lull_timer t, uint64_t delay_ns, lull_timer *nt);

/*
 * lull_wheel_advance - fire every timer due by the clock.
 * Returns: how many callbacks ran (0 for NULL w, after destroy began, and
 *   when called from a callback of w: advances never nest).
 * Callbacks run on the calling thread, in deadline order (ties in schedule
 * order), with no wheel lock held, so they may schedule, cancel and
 * reschedule.  Timers they arm fire in a later advance.  Concurrent advances
 * serialize (one runs its callbacks at a time; the others wait).  The cost
 * grows with the timers fired and cascaded and with the levels, not the
 * time elapsed.
 * Threads: any (with driver_thread the driver calls it too).
 * Ordering: acquire: fn sees what was written before its schedule.
 */
LULL_API size_t lull_wheel_advance(lull_wheel *w);

/*
 * lull_wheel_next_deadline - the earliest pending deadline, in clock ns.
 * Returns: UINT64_MAX if nothing is pending (or NULL w).  Never later than
 *   the true earliest deadline.  It may be earlier: after a cancel, and for a
 *   timer far enough out to sit in a coarse bucket, whose first tick stands
 *   for it until an advance cascades it (so a loop that sleeps until it and
 *   advances wakes at most once per level before that timer fires).
 * Use: as an epoll timeout, (deadline - now) rounded up to ms, then advance.
 * Threads: any.  Cost: O(shards), no lock.
 */
LULL_API uint64_t lull_wheel_next_deadline(lull_wheel *w);

/* lull_wheel_pending - how many timers are pending: scheduled, and neither
 * cancelled nor fired (a timer stops being pending when its callback
 * starts).  0 for NULL.  Threads: any; exact when no call is in flight. */
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
