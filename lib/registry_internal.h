/*
 * lib/registry_internal.h - what the registry's files share (not installed).
 *
 *   registry.c         lifecycle: create, the call gate, shutdown, destroy, check
 *   registry_ops.c     the records and every call's decision (one store update each)
 *   registry_defer.c   what outlives a publish: free records and grace timers
 *
 * docs/registry.md has the states of an id, the transitions, the exactly-once
 * argument and the shutdown order; this file only names the pieces.
 */
#ifndef LULL_REGISTRY_INTERNAL_H
#define LULL_REGISTRY_INTERNAL_H

#include "internal.h"

#include <lull/registry.h>
#include <pthread.h>
#include <string.h>

/* ---- the record: the value bytes of an id's store key -------------------
 * A header, then ndeps entries.  Copied in and out with memcpy: the store
 * gives no alignment guarantee for value bytes. */
enum { LULL__HELD = 1, LULL__DEAD = 2, LULL__GRACE = 3 };

struct lull__fr;
struct lull__grace;

struct lull__hdr {
    uint64_t gen;                   /* the holder's generation; in GRACE the released one */
    void *conn;                     /* HELD, DEAD: the conn; GRACE: NULL */
    struct lull__fr *conn_fr;       /* its free record (NULL without opts.free) */
    struct lull__grace *gt;         /* GRACE: the grace timer; else NULL */
    uint32_t state;                 /* LULL__HELD, LULL__DEAD, LULL__GRACE */
    uint32_t ndeps;
};

struct lull__dep {
    void *dep;
    struct lull__fr *fr;            /* NULL without opts.free */
};

#define LULL__HDR_LEN sizeof(struct lull__hdr)
#define LULL__DEP_LEN sizeof(struct lull__dep)

/* Parse a record; false if the bytes are not one (never happens: the store
 * is private; the checker reports it). */
bool lull__rec_parse(const void *v, size_t len, struct lull__hdr *h);

/* What a lookup reads, in place, instead of the whole header: the state
 * (false if the value is too short to be a record), then a holder's conn
 * and generation.  Every write parses the whole record (lull__rec_parse),
 * and the checker checks it, so a lookup checks only what keeps its own
 * reads in bounds. */
static inline bool lull__rec_state(const struct lull_snap *s, uint32_t *state)
{
    if (s->value_len < LULL__HDR_LEN)
        return false;
    memcpy(state, (const unsigned char *)s->value + offsetof(struct lull__hdr, state),
           sizeof *state);
    return true;
}

static inline void lull__rec_holder(const struct lull_snap *s, void **conn, uint64_t *gen)
{
    const unsigned char *v = s->value;
    if (conn)
        memcpy(conn, v + offsetof(struct lull__hdr, conn), sizeof *conn);
    if (gen)
        memcpy(gen, v + offsetof(struct lull__hdr, gen), sizeof *gen);
}
static inline void lull__dep_get(const void *v, size_t i, struct lull__dep *d)
{
    memcpy(d, (const unsigned char *)v + LULL__HDR_LEN + i * LULL__DEP_LEN, LULL__DEP_LEN);
}

/* ---- free records (registry_defer.c) -------------------------------------
 * One per conn and per dependent, allocated by claim / attach before their
 * publish (so no release ever allocates), retired after the object's close:
 * opts.free(obj) then runs after a grace period -- or, if shutdown comes
 * first, from shutdown itself (after its own grace period), so that no
 * callback of the registry runs after shutdown returns.  The tracker is the
 * list of retired, not yet run records; it outlives the registry while
 * retired records (queued on some thread) still point at it. */
struct lull__tracker;
struct lull__tracker *lull__tracker_new(void (*free_fn)(void *, void *), void *ctx);
void lull__tracker_run_all(struct lull__tracker *tr);  /* after a grace period */
void lull__tracker_put(struct lull__tracker *tr);
struct lull__fr *lull__fr_new(struct lull__tracker *tr, void *obj);
void lull__fr_discard(struct lull__fr *fr);            /* never published: free now */
void lull__fr_retire(struct lull__fr *fr);             /* after its object's close */
size_t lull__tracker_pending(struct lull__tracker *tr);
void *lull__fr_obj(const struct lull__fr *fr);         /* for the checker */

/* ---- grace timers (registry_defer.c) -------------------------------------
 * The timer's arg.  Three references: the arming call (until it has moved
 * the parked timer to its deadline), the record (until a publish takes the
 * id out of this grace period) and the timer (until its callback returns or
 * a cancel returns 0).  Freed after a grace period once all three are gone.
 * cur is the handle a canceller must use, 0 once a canceller took it. */
struct lull__grace {
    struct lull__deferred d;
    lull_registry *r;
    uint64_t gen;                   /* the generation released into grace */
    lull_timer cur;                 /* atomic; see lull__grace_cancel */
    int refs;                       /* atomic */
    size_t id_len;
    unsigned char id[];
};
struct lull__grace *lull__grace_new(lull_registry *r, const void *id, size_t id_len, uint64_t gen);
void lull__grace_put(struct lull__grace *gt);
int  lull__grace_park(lull_registry *r, struct lull__grace *gt);
void lull__grace_arm(lull_registry *r, struct lull__grace *gt, uint64_t grace_ns);
void lull__grace_cancel(lull_registry *r, struct lull__grace *gt, bool sync);
void lull__grace_timer_done(lull_registry *r, struct lull__grace *gt);
void lull__grace_fire(lull_timer t, void *arg);         /* the wheel callback */
void lull__grace_expire(lull_registry *r, struct lull__grace *gt, lull_timer t); /* registry_ops.c */

/* ---- the registry ------------------------------------------------------- */
#define LULL__KEYBUF_MAX 65536u
#define LULL__SHARDS 16             /* in-flight counters, one cache line each */

struct lull_registry {
    struct lull_registry_opts o;
    lull_store *store;
    lull_wheel *wheel;
    bool own_wheel;                 /* made by create (driver thread): destroyed by shutdown */
    size_t max_key_len;
    unsigned char *keybuf;          /* shutdown's no-allocation fallback (made at create) */
    size_t keybuf_len;              /* min(max_key_len, LULL__KEYBUF_MAX) */
    struct lull__tracker *tr;

    int closing;                    /* atomic: refusal flag (seq_cst, see lull__enter) */
    int shut_owner;                 /* atomic: a shutdown is running (CAS 0 -> 1) */
    int shut_done;                  /* atomic: shutdown completed */
    long armed;                     /* atomic: timers holding a grace ref (pending or running) */

    struct { _Alignas(lull__cacheline) long n; } inflight[LULL__SHARDS];
};

/* The call gate: every call and every expiry enters and leaves.  0, or
 * -ESHUTDOWN once shutdown has begun (nothing entered). */
int  lull__enter(lull_registry *r);
void lull__leave(lull_registry *r);

/* The highest generation any thread may have issued (for the checker). */
uint64_t lull__gen_issued(void);

/* Test hook: when set, a reclaim does not cancel the grace timer it ends,
 * as if it lost the race against the fire; the stale fire must then do
 * nothing (tests/registry).  Never set outside tests. */
extern bool lull__registry_test_lose_cancel;

/* The ops side of shutdown: close everything still held (quiescent store). */
void lull__close_all(lull_registry *r);

#endif /* LULL_REGISTRY_INTERNAL_H */
