/*
 * lull/registry.h - layer 3: a connection registry, on the store and the wheel.
 *
 * Each id is a key of a lull_store whose value is the holder record (conn,
 * generation, state, grace timer, dependents).  Every registry operation is
 * one lull_store_update: the decision and the change are one atomic publish.
 * Callbacks run only after that publish succeeded, on the thread whose
 * publish won, with no lock held.  Grace timers live on a lull_wheel and
 * carry the id and the generation they were armed for: a stale expiry finds
 * a newer generation and does nothing.  docs/registry.md has the states of
 * an id, the transitions, the exactly-once argument and the shutdown order.
 */
#ifndef LULL_REGISTRY_H
#define LULL_REGISTRY_H

#include <lull/common.h>
#include <lull/rcu.h>
#include <lull/store.h>
#include <lull/wheel.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lull_registry lull_registry;

enum lull_reason { LULL_REPLACED = 1, LULL_RELEASED, LULL_EXPIRED, LULL_SHUTDOWN };
enum lull_reclaim { LULL_INHERIT = 0, LULL_EVICT = 1 };

struct lull_registry_opts {
    lull_wheel *wheel;      /* NULL: the registry makes its own, with a driver thread */
    bool (*keep_incoming)(const void *id, size_t id_len, void *held, void *incoming, void *ctx);
            /* the double-connection rule; NULL: keep the incoming one. No lock held; may run more
               than once for one claim */
    void (*close)(void *conn, enum lull_reason why, void *ctx);
    void (*close_dependent)(void *dep, enum lull_reason why, void *ctx);
    void (*free)(void *obj, void *ctx);
            /* optional: once per conn and dependent, after its close and once no read-side
               section can still see it — the place to free it.  Runs on lull's reclaim
               thread (or on the thread in shutdown); must not block, nor wait for a grace
               period (lull_synchronize, lull_barrier, *_destroy) */
    enum lull_reclaim on_reclaim;   /* what dependents do when a claim takes the id over from a
                                       previous holder: in its grace period, from a dead holder,
                                       or from a live one that lost keep_incoming */
    size_t max_dependents;          /* per id; 0: unlimited. Past it: -ENOSPC */
    void  *ctx;
    struct lull_store_opts store;   /* limits for ids and entries */
};

/*
 * Common to every registry call below:
 *   - -EINVAL: NULL r, NULL id, id_len 0 or over store.max_key_len, NULL
 *     conn/dep where one is required.  -ESHUTDOWN: shutdown has begun.
 *     -ENOMEM: nothing changed.  -ETIMEDOUT: store.update_timeout_ns passed
 *     before the call's update could publish.  A failed call changes nothing
 *     and runs no callback.
 *   - Threads: any, including from inside the registry's own callbacks
 *     (close, close_dependent, free, keep_incoming may call back into the
 *     registry; they run with no lull lock held).
 *   - Section: not needed; may be called inside one (callbacks then run
 *     inside the caller's section, so they must not block).
 *   - Ordering: each call that changes an id is one atomic publish (a full
 *     barrier); callbacks it causes run after that publish is visible to
 *     every thread, on the calling thread, before the call returns.
 */

/*
 * lull_registry_create - make a registry.
 * @opts: copied.  close is required; close_dependent, keep_incoming and free
 *   are optional (a NULL close_dependent means dependents get no close, only
 *   their free).  store.max_value_len bounds a record: 40 bytes plus 16 per
 *   dependent (default 65536: about 4000 dependents per id).
 * Returns: the registry, or NULL with errno EINVAL (NULL opts, NULL close,
 *   on_reclaim out of range, store.max_value_len under 40), ENOMEM, or the
 *   store's or the wheel's error.
 * Threads: any.
 * Ownership: opts.wheel, if given, is borrowed: it must outlive the registry
 *   (someone must advance it, or grace periods never end).  Without it the
 *   registry makes its own wheel with a driver thread; expiries then run on
 *   that thread.
 */
LULL_API lull_registry *lull_registry_create(const struct lull_registry_opts *opts);

/*
 * lull_registry_claim - make conn the holder of id.
 * Returns: 0: conn now holds id under generation *gen (new, never 0, never
 *   reused) — the id was free, or in its grace period (the pending release is
 *   cancelled), or held by a conn marked dead, or held by a live conn that
 *   lost keep_incoming (that one is closed with LULL_REPLACED).
 *   -EEXIST: the live holder was kept; conn was not taken and gets no
 *   callback.  -ENOSPC: a new id past store.max_keys.
 * keep_incoming is asked only when a live holder exists.
 */
LULL_API int lull_registry_claim(lull_registry *r, const void *id, size_t id_len, void *conn,
                                 uint64_t *gen);

/*
 * lull_registry_release - let go of id now, if gen still holds it.
 * Returns: 1: gen held id and is gone — its conn closed with LULL_RELEASED,
 *   its dependents too (close_dependent, LULL_RELEASED), the id removed.
 *   0: gen does not hold id (replaced, in grace, or never did): nothing happens.
 */
LULL_API int lull_registry_release(lull_registry *r, const void *id, size_t id_len, uint64_t gen);

/*
 * lull_registry_release_after - let go of the conn now, of the id later.
 * gen's conn is closed with LULL_RELEASED now and id enters its grace period
 * of grace_ns; dependents stay attached.  A claim within the grace period
 * takes the id back (see on_reclaim for the dependents); otherwise at expiry
 * the id is removed and its dependents closed with LULL_EXPIRED, on the
 * thread advancing the wheel.  Calling it on an id already in grace with the
 * same generation is -ESTALE (gen no longer holds it).
 * Returns: 0; -ESTALE if gen does not hold id; -ENOSPC/-ENOMEM if the timer
 *   cannot be armed (nothing changed, conn not closed).
 */
LULL_API int lull_registry_release_after(lull_registry *r, const void *id, size_t id_len,
                                         uint64_t gen, uint64_t grace_ns);

/*
 * lull_registry_mark_dead - gen's conn is a zombie (going away).
 * Lookups no longer return it (-ENOENT) and the next claim replaces it
 * without asking keep_incoming.  Not closed by this call: its one close comes
 * from that claim (LULL_REPLACED), a release (LULL_RELEASED) or shutdown.
 * Returns: 0 (also when already marked); -ESTALE if gen does not hold id.
 */
LULL_API int lull_registry_mark_dead(lull_registry *r, const void *id, size_t id_len, uint64_t gen);

/*
 * lull_registry_lookup - the live holder of id.
 * @conn, @gen: out, optional.
 * Returns: 0: the live holder; -EAGAIN: id is in its grace period; -ENOENT:
 *   no live holder (absent or marked dead).
 * Section: optional.  Inside one, *conn stays valid until the outermost
 *   lull_read_unlock() (free runs only after a grace period).  Outside one
 *   the caller must own the conn's lifetime itself.
 * Progress: wait-free (a store lookup).
 */
LULL_API int lull_registry_lookup(lull_registry *r, const void *id, size_t id_len, void **conn,
                                  uint64_t *gen);

/*
 * lull_registry_attach - attach a dependent to id (held or in grace).
 * Returns: 0; -ENOENT (no holder and not in grace); -ENOSPC (max_dependents);
 *   -EEXIST (dep already attached to id).
 * The dependent gets exactly one close_dependent later: on detach
 * (LULL_RELEASED), release (LULL_RELEASED), expiry (LULL_EXPIRED), a reclaim
 * with LULL_EVICT (LULL_REPLACED) or shutdown (LULL_SHUTDOWN).
 */
LULL_API int lull_registry_attach(lull_registry *r, const void *id, size_t id_len, void *dep);

/* lull_registry_detach - detach dep from id and close it (LULL_RELEASED).
 * Returns: 0; -ENOENT (id absent or dep not attached to it). */
LULL_API int lull_registry_detach(lull_registry *r, const void *id, size_t id_len, void *dep);

/*
 * lull_registry_dependents - copy id's dependents out.
 * Returns: 0 with *count set; -ENOBUFS with *count set when cap is too
 *   small (nothing copied); -ENOENT.  The pointers are valid only as long as
 *   the caller ensures it (inside a section: until the outermost unlock).
 */
LULL_API int lull_registry_dependents(lull_registry *r, const void *id, size_t id_len,
                                      void **buf, size_t cap, size_t *count);

/*
 * lull_registry_shutdown - orderly shutdown.
 * First refuses every later call (-ESHUTDOWN) and every later expiry, then
 * waits for the calls and expiries already inside (with the callbacks they
 * run), then cancels every grace timer (cancel_sync: none fires after it
 * returns) and closes every conn and dependent still held with
 * LULL_SHUTDOWN, on the calling thread; finally it waits for a grace period
 * and runs every free still pending.  After it returns no callback of the
 * registry runs, ever.
 * Returns: 0; -ETIMEDOUT if calls or callbacks outlast timeout_ns (0: no
 *   limit): the registry keeps refusing, and a later shutdown or destroy
 *   resumes; -ESHUTDOWN if already shut down; -EDEADLK (nothing done) inside
 *   a read-side section or from one of this registry's callbacks.
 * Threads: any; a second concurrent shutdown waits for the first.
 * Blocks: yes.
 */
LULL_API int lull_registry_shutdown(lull_registry *r, uint64_t timeout_ns);

/*
 * lull_registry_destroy - shut down if needed (waiting as long as it
 * takes), then free everything; ends with lull_barrier().  NULL is a no-op.
 * Threads: any, but no other thread may use r any more.  Called inside a
 * read-side section or from one of r's callbacks it can do neither, and
 * does nothing (r stays as it was).
 */
LULL_API void lull_registry_destroy(lull_registry *r);

/*
 * Ready-made double-connection rules, for opts.keep_incoming.
 *   lull_registry_keep_held:     the live holder stays; a claim on a held id
 *                                 is -EEXIST (first come, first served).
 *   lull_registry_keep_incoming: the newcomer wins, the holder is closed
 *                                 with LULL_REPLACED (the default: NULL).
 * A protocol's own rule is a function of the same type; it runs with no lock
 * held, inside the store's read-side section (it must not block), may run
 * more than once for one claim and must have no side effects: its answer
 * counts only for the run that publishes.  examples/registry_ship_rule.c
 * writes SHIP's rule (SHIP 12.2.2: the node with the bigger SKI keeps the
 * most recent connection).
 * Threads: any.  They ignore every argument.
 */
LULL_API bool lull_registry_keep_held(const void *id, size_t id_len, void *held, void *incoming,
                                      void *ctx);
LULL_API bool lull_registry_keep_incoming(const void *id, size_t id_len, void *held,
                                          void *incoming, void *ctx);

/*
 * lull_registry_check - verify the registry's invariants (tests, fuzzers).
 * Returns: 0 if all hold, the number of violations otherwise, -EINVAL for
 *   NULL.  Meaningful only while no other thread changes r.
 */
LULL_API int lull_registry_check(lull_registry *r, FILE *out);

#ifdef __cplusplus
}
#endif
#endif /* LULL_REGISTRY_H */
