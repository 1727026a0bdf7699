/*
 * lib/registry_ops.c - the records and every call's decision.
 *
 * Each call is one lull_store_update of the id's key.  The update fn may run
 * more than once (it runs again when another writer published first), so it
 * only computes `next` and writes its decision -- what to close, what to
 * cancel, what to return -- into the call's struct lull__dec, which every
 * run overwrites.  Only after lull_store_update returned 0 (the publish of
 * the last run is visible to every thread) does lull__act carry that
 * decision out, on the calling thread, with no lock held.  A run that lost
 * the race leaves no trace, so nothing is ever closed twice.
 */
#include "registry_internal.h"

#include <string.h>

/* Internal: the decision needs a bigger scratch for the dependents it
 * closes (d->need); the driver allocates and runs the update again.  Never
 * returned to users. */
#define LULL__EMORE (-E2BIG)
#define LULL__SCRATCH 16            /* dependents a decision holds without allocating */

enum lull__op { OP_CLAIM, OP_RELEASE, OP_RELEASE_AFTER, OP_MARK_DEAD, OP_ATTACH, OP_DETACH,
                OP_EXPIRE };

struct lull__dec {
    /* inputs, fixed for the call */
    lull_registry *r;
    enum lull__op op;
    const void *id;
    size_t id_len;
    void *obj;                      /* claim: conn; attach, detach: dep */
    uint64_t gen;                   /* claim: the new one; others: the caller's */
    struct lull__fr *fr;            /* claim, attach: the new object's free record */
    struct lull__grace *gt;         /* release_after: the new grace; expire: the firing one */
    uint64_t grace_ns;              /* release_after */

    /* the decision: overwritten by every run of the update fn */
    int rc;                         /* the call's result when the update publishes or keeps */
    void *close_conn;               /* close it with conn_why, then retire close_fr */
    struct lull__fr *close_fr;
    enum lull_reason conn_why;
    struct lull__grace *left_gt;    /* the record stopped pointing at it: drop that ref */
    bool cancel_left;               /* ... after cancelling its timer (not for the expiry itself) */
    enum lull_reason dep_why;
    size_t ndeps;                   /* dependents to close, in deps[] */

    /* scratch for the dependents (stack, or heap after LULL__EMORE) */
    struct lull__dep *deps;
    size_t cap, need;
};

bool lull__rec_parse(const void *v, size_t len, struct lull__hdr *h)
{
    if (!v || len < LULL__HDR_LEN)
        return false;
    memcpy(h, v, LULL__HDR_LEN);
    if (h->state < LULL__HELD || h->state > LULL__GRACE)
        return false;
    return len == LULL__HDR_LEN + (size_t)h->ndeps * LULL__DEP_LEN;
}

static inline void lull__hdr_put(struct lull_buf *b, const struct lull__hdr *h)
{
    memcpy(b->data, h, LULL__HDR_LEN);
}

/* Copy cur's dependents into the decision, to be closed with why. */
static int lull__take_deps(struct lull__dec *d, const void *v, const struct lull__hdr *h,
                           enum lull_reason why)
{
    if (h->ndeps > d->cap) {
        d->need = h->ndeps;
        return LULL__EMORE;
    }
    for (size_t i = 0; i < h->ndeps; i++)
        lull__dep_get(v, i, &d->deps[i]);
    d->ndeps = h->ndeps;
    d->dep_why = why;
    return 0;
}

static void lull__dec_reset(struct lull__dec *d)
{
    d->rc = 0;
    d->close_conn = NULL;
    d->close_fr = NULL;
    d->left_gt = NULL;
    d->cancel_left = false;
    d->ndeps = 0;
    d->need = 0;
}

/* ---------------------------------------------------------- decisions */

/*
 * claim: free id -> HELD.  GRACE -> HELD (the grace timer is cancelled).
 * DEAD -> HELD (the zombie is closed, REPLACED).  HELD -> ask the rule:
 * keep incoming -> HELD by the new conn (the old one closed, REPLACED);
 * keep held -> -EEXIST, nothing published.  Dependents follow on_reclaim.
 */
static int lull__claim_fn(const struct lull_snap *cur, struct lull_buf *next, void *arg)
{
    struct lull__dec *d = arg;
    lull_registry *r = d->r;
    struct lull__hdr h, n = { d->gen, d->obj, d->fr, NULL, LULL__HELD, 0 };
    int rc;

    lull__dec_reset(d);
    if (!cur) {
        if ((rc = lull_buf_resize(next, LULL__HDR_LEN)) != 0)
            return rc == -EFBIG ? -ENOSPC : rc;
        lull__hdr_put(next, &n);
        return LULL_PUBLISH;
    }
    if (!lull__rec_parse(cur->value, cur->value_len, &h))
        return -EIO;
    switch (h.state) {
    case LULL__HELD:
        /* The rule is asked only here: between two live conns. */
        if (r->o.keep_incoming &&
            !r->o.keep_incoming(d->id, d->id_len, h.conn, d->obj, r->o.ctx))
            return -EEXIST;
        /* fall through */
    case LULL__DEAD:
        d->close_conn = h.conn;
        d->close_fr = h.conn_fr;
        d->conn_why = LULL_REPLACED;
        break;
    case LULL__GRACE:
        d->left_gt = h.gt;
        d->cancel_left = true;
        break;
    }
    n.ndeps = h.ndeps;
    if (r->o.on_reclaim == LULL_EVICT && h.ndeps) {
        if ((rc = lull__take_deps(d, cur->value, &h, LULL_REPLACED)) != 0)
            return rc;
        n.ndeps = 0;
        if ((rc = lull_buf_resize(next, LULL__HDR_LEN)) != 0)
            return rc;
    }
    lull__hdr_put(next, &n);
    return LULL_PUBLISH;
}

/* Does d->gen hold the id whose record is cur (HELD or DEAD, not GRACE)?
 * 1 with *h filled in; 0 if not (absent, in grace, another generation);
 * -EIO if the record is corrupt. */
static int lull__held_by(const struct lull_snap *cur, const struct lull__dec *d,
                         struct lull__hdr *h)
{
    if (!cur)
        return 0;
    if (!lull__rec_parse(cur->value, cur->value_len, h))
        return -EIO;
    return h->state != LULL__GRACE && h->gen == d->gen;
}

/* release: HELD or DEAD by gen -> absent; conn and dependents RELEASED. */
static int lull__release_fn(const struct lull_snap *cur, struct lull_buf *next, void *arg)
{
    struct lull__dec *d = arg;
    struct lull__hdr h;
    int rc;

    lull__dec_reset(d);
    if ((rc = lull__held_by(cur, d, &h)) <= 0)
        return rc < 0 ? rc : LULL_KEEP;     /* rc 0: gen does not hold id */
    if ((rc = lull__take_deps(d, cur->value, &h, LULL_RELEASED)) != 0)
        return rc;
    d->close_conn = h.conn;
    d->close_fr = h.conn_fr;
    d->conn_why = LULL_RELEASED;
    d->rc = 1;
    return LULL_REMOVE;
}

/* release_after: HELD or DEAD by gen -> GRACE (gt); conn RELEASED, deps stay. */
static int lull__release_after_fn(const struct lull_snap *cur, struct lull_buf *next, void *arg)
{
    struct lull__dec *d = arg;
    struct lull__hdr h;
    int rc;

    lull__dec_reset(d);
    if ((rc = lull__held_by(cur, d, &h)) <= 0)
        return rc < 0 ? rc : -ESTALE;
    d->close_conn = h.conn;
    d->close_fr = h.conn_fr;
    d->conn_why = LULL_RELEASED;
    struct lull__hdr n = { h.gen, NULL, NULL, d->gt, LULL__GRACE, h.ndeps };
    lull__hdr_put(next, &n);
    return LULL_PUBLISH;
}

/* mark_dead: HELD by gen -> DEAD; DEAD by gen: nothing (0). */
static int lull__mark_dead_fn(const struct lull_snap *cur, struct lull_buf *next, void *arg)
{
    struct lull__dec *d = arg;
    struct lull__hdr h;
    int rc;

    lull__dec_reset(d);
    if ((rc = lull__held_by(cur, d, &h)) <= 0)
        return rc < 0 ? rc : -ESTALE;
    if (h.state == LULL__DEAD)
        return LULL_KEEP;
    h.state = LULL__DEAD;
    lull__hdr_put(next, &h);
    return LULL_PUBLISH;
}

/* attach: HELD, DEAD or GRACE -> the same, with dep appended. */
static int lull__attach_fn(const struct lull_snap *cur, struct lull_buf *next, void *arg)
{
    struct lull__dec *d = arg;
    struct lull__hdr h;
    struct lull__dep e;
    int rc;

    lull__dec_reset(d);
    if (!cur)
        return -ENOENT;
    if (!lull__rec_parse(cur->value, cur->value_len, &h))
        return -EIO;
    for (size_t i = 0; i < h.ndeps; i++) {
        lull__dep_get(cur->value, i, &e);
        if (e.dep == d->obj)
            return -EEXIST;
    }
    if (d->r->o.max_dependents && h.ndeps >= d->r->o.max_dependents)
        return -ENOSPC;
    if ((rc = lull_buf_resize(next, cur->value_len + LULL__DEP_LEN)) != 0)
        return rc == -EFBIG ? -ENOSPC : rc;     /* the record would pass max_value_len */
    e.dep = d->obj;
    e.fr = d->fr;
    memcpy((unsigned char *)next->data + cur->value_len, &e, LULL__DEP_LEN);
    h.ndeps++;
    lull__hdr_put(next, &h);
    return LULL_PUBLISH;
}

/* detach: dep removed from the record; closed RELEASED. */
static int lull__detach_fn(const struct lull_snap *cur, struct lull_buf *next, void *arg)
{
    struct lull__dec *d = arg;
    struct lull__hdr h;
    struct lull__dep e;

    lull__dec_reset(d);
    if (!cur)
        return -ENOENT;
    if (!lull__rec_parse(cur->value, cur->value_len, &h))
        return -EIO;
    for (size_t i = 0; i < h.ndeps; i++) {
        lull__dep_get(cur->value, i, &e);
        if (e.dep != d->obj)
            continue;
        unsigned char *p = (unsigned char *)next->data + LULL__HDR_LEN + i * LULL__DEP_LEN;
        memmove(p, p + LULL__DEP_LEN, (h.ndeps - 1 - i) * LULL__DEP_LEN);
        h.ndeps--;
        lull__hdr_put(next, &h);
        next->len = cur->value_len - LULL__DEP_LEN;   /* shrinking needs no resize */
        d->deps[0] = e;             /* cap is never below 1 */
        d->ndeps = 1;
        d->dep_why = LULL_RELEASED;
        return LULL_PUBLISH;
    }
    return -ENOENT;
}

/* expire: GRACE for exactly this gen and this grace timer -> absent; deps
 * EXPIRED.  Anything else (a reclaim, a newer grace period, a release
 * after a reclaim) means this fire is stale: nothing. */
static int lull__expire_fn(const struct lull_snap *cur, struct lull_buf *next, void *arg)
{
    struct lull__dec *d = arg;
    struct lull__hdr h;
    int rc;

    lull__dec_reset(d);
    if (!cur)
        return LULL_KEEP;
    if (!lull__rec_parse(cur->value, cur->value_len, &h))
        return -EIO;
    if (h.state != LULL__GRACE || h.gen != d->gt->gen || h.gt != d->gt)
        return LULL_KEEP;
    if ((rc = lull__take_deps(d, cur->value, &h, LULL_EXPIRED)) != 0)
        return rc;
    d->left_gt = h.gt;              /* the record's ref; the timer is the one firing */
    d->rc = 1;
    return LULL_REMOVE;
}

/* ---------------------------------------------------------- the driver */

bool lull__registry_test_lose_cancel;

/* Carry a published decision out: closes, then retirements, then timers. */
static void lull__act(lull_registry *r, struct lull__dec *d)
{
    /* Relaxed: a test sets the hook before the calls it affects, on the
     * same thread. */
    if (d->left_gt && d->cancel_left && !lull__load_relaxed(&lull__registry_test_lose_cancel))
        lull__grace_cancel(r, d->left_gt, false);
    if (d->close_conn) {
        r->o.close(d->close_conn, d->conn_why, r->o.ctx);
        if (d->close_fr)
            lull__fr_retire(d->close_fr);
    }
    for (size_t i = 0; i < d->ndeps; i++) {
        if (r->o.close_dependent)
            r->o.close_dependent(d->deps[i].dep, d->dep_why, r->o.ctx);
        if (d->deps[i].fr)
            lull__fr_retire(d->deps[i].fr);
    }
    if (d->left_gt)
        lull__grace_put(d->left_gt);    /* the record's reference */
}

/* Run fn as one store update; grow the scratch when the decision asks.  On
 * 0 the decision in d is the published one; act on it with lull__act. */
static int lull__decide(lull_registry *r, struct lull__dec *d, lull_update_fn fn,
                        struct lull__dep *stack, struct lull__dep **heap)
{
    d->deps = stack;
    d->cap = LULL__SCRATCH;
    *heap = NULL;
    for (;;) {
        int rc = lull_store_update(r->store, d->id, d->id_len, fn, d, NULL);
        if (rc != LULL__EMORE)
            return rc;
        lull__free(*heap);
        *heap = lull__malloc(d->need * LULL__DEP_LEN);
        if (!*heap)
            return -ENOMEM;
        d->deps = *heap;
        d->cap = d->need;
    }
}

static int lull__run(lull_registry *r, struct lull__dec *d, lull_update_fn fn)
{
    struct lull__dep stack[LULL__SCRATCH], *heap;
    int rc = lull__decide(r, d, fn, stack, &heap);
    if (rc == 0) {
        /* The grace state is visible: start its clock before the close runs. */
        if (d->op == OP_RELEASE_AFTER)
            lull__grace_arm(r, d->gt, d->grace_ns);
        lull__act(r, d);
        rc = d->rc;
    }
    lull__free(heap);
    return rc;
}

/* ---------------------------------------------------------- generations */

/* Process-wide, handed out to each thread in blocks: unique across every
 * registry (so certainly within one), never 0, and no shared cache line on
 * the claim path but once per block. */
#define LULL__GEN_BLOCK 1024u
static uint64_t lull__gen_clock;    /* atomic: the last generation any block covers */
static __thread uint64_t lull__gen_at, lull__gen_end;

static uint64_t lull__gen_new(void)
{
    if (lull__gen_at == lull__gen_end) {
        /* Relaxed: blocks only need to be distinct, which the RMW's total
         * order on one atomic gives; no other memory is published by it. */
        uint64_t base = __atomic_fetch_add(&lull__gen_clock, LULL__GEN_BLOCK, __ATOMIC_RELAXED);
        lull__gen_at = base + 1;
        lull__gen_end = base + 1 + LULL__GEN_BLOCK;
    }
    return lull__gen_at++;
}

uint64_t lull__gen_issued(void)
{
    /* Relaxed: an upper bound for the checker; it orders nothing. */
    return __atomic_load_n(&lull__gen_clock, __ATOMIC_RELAXED);
}

/* ---------------------------------------------------------- the calls */

static inline bool lull__id_ok(const lull_registry *r, const void *id, size_t id_len)
{
    return r && id && id_len && id_len <= r->max_key_len;
}

int lull_registry_claim(lull_registry *r, const void *id, size_t id_len, void *conn, uint64_t *gen)
{
    if (!lull__id_ok(r, id, id_len) || !conn)
        return -EINVAL;
    int rc = lull__enter(r);
    if (rc)
        return rc;
    struct lull__dec d = { .r = r, .op = OP_CLAIM, .id = id, .id_len = id_len, .obj = conn,
                           .gen = lull__gen_new() };
    if (r->o.free && !(d.fr = lull__fr_new(r->tr, conn))) {
        rc = -ENOMEM;
    } else {
        rc = lull__run(r, &d, lull__claim_fn);
        if (rc == 0 && gen)
            *gen = d.gen;
        if (rc != 0)
            lull__fr_discard(d.fr);     /* never published */
    }
    lull__leave(r);
    return rc;
}

/* A call that is one update deciding on a generation alone (release,
 * mark_dead): the gate, the update, its decision carried out. */
static int lull__gen_call(lull_registry *r, const void *id, size_t id_len, uint64_t gen,
                          enum lull__op op, lull_update_fn fn)
{
    if (!lull__id_ok(r, id, id_len))
        return -EINVAL;
    int rc = lull__enter(r);
    if (rc)
        return rc;
    struct lull__dec d = { .r = r, .op = op, .id = id, .id_len = id_len, .gen = gen };
    rc = lull__run(r, &d, fn);
    lull__leave(r);
    return rc;
}

int lull_registry_release(lull_registry *r, const void *id, size_t id_len, uint64_t gen)
{
    return lull__gen_call(r, id, id_len, gen, OP_RELEASE, lull__release_fn);
}

/* Does gen (still) hold id?  A hint only, taken before arming a timer so
 * that a stale release_after costs no allocation and says -ESTALE even on
 * a full wheel; the update decides for real. */
static bool lull__holds(lull_registry *r, const void *id, size_t id_len, uint64_t gen)
{
    struct lull__hdr h;
    lull_read_lock();
    const struct lull_snap *s = lull_store_get(r->store, id, id_len);
    bool ok = s && lull__rec_parse(s->value, s->value_len, &h) && h.state != LULL__GRACE &&
              h.gen == gen;
    lull_read_unlock();
    return ok;
}

int lull_registry_release_after(lull_registry *r, const void *id, size_t id_len,
                                uint64_t gen, uint64_t grace_ns)
{
    if (!lull__id_ok(r, id, id_len))
        return -EINVAL;
    int rc = lull__enter(r);
    if (rc)
        return rc;
    struct lull__grace *gt = NULL;
    if (!lull__holds(r, id, id_len, gen)) {
        rc = -ESTALE;
    } else if (!(gt = lull__grace_new(r, id, id_len, gen))) {
        rc = -ENOMEM;
    } else if ((rc = lull__grace_park(r, gt)) != 0) {
        lull__free(gt);                 /* never armed, never published */
    } else {
        struct lull__dec d = { .r = r, .op = OP_RELEASE_AFTER, .id = id, .id_len = id_len,
                               .gen = gen, .gt = gt, .grace_ns = grace_ns };
        rc = lull__run(r, &d, lull__release_after_fn);
        if (rc != 0) {
            /* Not published: no record ref, the arming call gives up its own,
             * and the parked timer is cancelled (it cannot have fired). */
            lull__grace_put(gt);
            lull__grace_cancel(r, gt, false);
            lull__grace_put(gt);
        }
    }
    lull__leave(r);
    return rc;
}

int lull_registry_mark_dead(lull_registry *r, const void *id, size_t id_len, uint64_t gen)
{
    return lull__gen_call(r, id, id_len, gen, OP_MARK_DEAD, lull__mark_dead_fn);
}

int lull_registry_lookup(lull_registry *r, const void *id, size_t id_len, void **conn,
                         uint64_t *gen)
{
    if (!lull__id_ok(r, id, id_len))
        return -EINVAL;
    int rc = 0;
    /* The read-side section is this call's gate, in place of lull__enter's
     * two atomic RMWs: a lookup changes nothing and runs no callback, so
     * shutdown need not wait for it at step 2, only before it frees (step
     * 5, lull_synchronize).  Relaxed load: the grace period orders it.  A
     * section that misses closing began before shutdown's synchronize
     * began, so it ends before that returns; one that begins after sees
     * the seq_cst store of closing, made before the synchronize. */
    lull_read_lock();
    const struct lull_snap *s;
    uint32_t state = 0;
    if (__atomic_load_n(&r->closing, __ATOMIC_RELAXED))
        rc = -ESHUTDOWN;
    else if (!(s = lull_store_get(r->store, id, id_len)) || !lull__rec_state(s, &state) ||
             (state != LULL__HELD && state != LULL__GRACE))
        rc = -ENOENT;
    else if (state == LULL__GRACE)
        rc = -EAGAIN;
    else
        lull__rec_holder(s, conn, gen);
    lull_read_unlock();
    return rc;
}

int lull_registry_attach(lull_registry *r, const void *id, size_t id_len, void *dep)
{
    if (!lull__id_ok(r, id, id_len) || !dep)
        return -EINVAL;
    int rc = lull__enter(r);
    if (rc)
        return rc;
    struct lull__dec d = { .r = r, .op = OP_ATTACH, .id = id, .id_len = id_len, .obj = dep };
    if (r->o.free && !(d.fr = lull__fr_new(r->tr, dep))) {
        rc = -ENOMEM;
    } else {
        rc = lull__run(r, &d, lull__attach_fn);
        if (rc == -EFBIG)
            rc = -ENOSPC;               /* the record would pass store.max_value_len */
        if (rc != 0)
            lull__fr_discard(d.fr);
    }
    lull__leave(r);
    return rc;
}

int lull_registry_detach(lull_registry *r, const void *id, size_t id_len, void *dep)
{
    if (!lull__id_ok(r, id, id_len) || !dep)
        return -EINVAL;
    int rc = lull__enter(r);
    if (rc)
        return rc;
    struct lull__dec d = { .r = r, .op = OP_DETACH, .id = id, .id_len = id_len, .obj = dep };
    rc = lull__run(r, &d, lull__detach_fn);
    lull__leave(r);
    return rc;
}

int lull_registry_dependents(lull_registry *r, const void *id, size_t id_len,
                             void **buf, size_t cap, size_t *count)
{
    if (!lull__id_ok(r, id, id_len) || !count || (!buf && cap))
        return -EINVAL;
    int rc = lull__enter(r);
    if (rc)
        return rc;
    struct lull__hdr h;
    lull_read_lock();
    const struct lull_snap *s = lull_store_get(r->store, id, id_len);
    if (!s || !lull__rec_parse(s->value, s->value_len, &h)) {
        rc = -ENOENT;
    } else {
        *count = h.ndeps;
        if (h.ndeps > cap) {
            rc = -ENOBUFS;
        } else {
            struct lull__dep e;
            for (size_t i = 0; i < h.ndeps; i++) {
                lull__dep_get(s->value, i, &e);
                buf[i] = e.dep;
            }
        }
    }
    lull_read_unlock();
    lull__leave(r);
    return rc;
}

/* ---------------------------------------------------------- expiry */

#define LULL__EXPIRE_TRIES 3
#define LULL__RETRY_NS     1000000u     /* re-arm an expiry that could not publish */

/*
 * The grace timer fired (the callback entered the registry).  The removal
 * is conditional on the record still being in this very grace period, so a
 * fire that a reclaim or a newer grace period made stale does nothing.  If
 * the update cannot publish (out of memory, update_timeout_ns), the timer
 * is re-armed for 1 ms with the same gt, and the timer reference passes to
 * the new timer; if even that fails, the id stays in grace until a claim or
 * shutdown ends it (docs/registry.md).
 */
void lull__grace_expire(lull_registry *r, struct lull__grace *gt, lull_timer t)
{
    (void)t;
    struct lull__dec d = { .r = r, .op = OP_EXPIRE, .id = gt->id, .id_len = gt->id_len, .gt = gt };
    struct lull__dep stack[LULL__SCRATCH], *heap = NULL;
    int rc = -ENOMEM;

    for (unsigned i = 0; i < LULL__EXPIRE_TRIES && rc != 0; i++) {
        lull__free(heap);
        rc = lull__decide(r, &d, lull__expire_fn, stack, &heap);
    }
    if (rc == 0) {
        lull__act(r, &d);
        lull__free(heap);
        lull__leave(r);
        lull__grace_timer_done(r, gt);
        return;
    }
    lull__free(heap);

    lull_timer nt;
    if (lull_wheel_schedule(r->wheel, LULL__RETRY_NS, lull__grace_fire, gt, &nt) == 0) {
        /* Acquire (and the CAS's acq_rel): pair with a canceller's exchange
         * and the arming CAS, so whoever comes second sees the other's value. */
        lull_timer c = __atomic_load_n(&gt->cur, __ATOMIC_ACQUIRE);
        for (;;) {
            if (c == 0) {
                /* A canceller took the handle (its cancel saw us running):
                 * the new timer is ours to cancel. */
                if (lull_wheel_cancel(r->wheel, nt) == 0)
                    break;
                lull__leave(r);         /* nt runs: it drops the timer ref */
                return;
            }
            if (__atomic_compare_exchange_n(&gt->cur, &c, nt, false, __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE)) {
                lull__leave(r);         /* the timer ref passed to nt */
                return;
            }
        }
    }
    lull__leave(r);
    lull__grace_timer_done(r, gt);
}

/* ---------------------------------------------------------- shutdown's closes */

/*
 * Called by shutdown once the registry is quiescent: every call and expiry
 * has left, later ones are refused, so nothing but this thread changes the
 * store.  That lets it close without allocating and without running a
 * callback inside a read-side section: it reads a record in chunks of
 * LULL__SCRATCH dependents, leaves the section to close each chunk, then
 * closes the conn (or cancels the grace timer) and deletes the key (a
 * delete allocates nothing).
 */
static void lull__close_one(lull_registry *r, const void *key, size_t key_len)
{
    struct lull__dep chunk[LULL__SCRATCH];
    struct lull__hdr h;
    size_t i = 0;

    for (;;) {
        size_t n = 0;
        lull_read_lock();
        const struct lull_snap *s = lull_store_get(r->store, key, key_len);
        bool ok = s && lull__rec_parse(s->value, s->value_len, &h);
        for (; ok && n < LULL__SCRATCH && i + n < h.ndeps; n++)
            lull__dep_get(s->value, i + n, &chunk[n]);
        lull_read_unlock();
        if (!ok) {
            lull_store_delete(r->store, key, key_len);
            return;
        }
        for (size_t k = 0; k < n; k++) {
            if (r->o.close_dependent)
                r->o.close_dependent(chunk[k].dep, LULL_SHUTDOWN, r->o.ctx);
            if (chunk[k].fr)
                lull__fr_retire(chunk[k].fr);
        }
        i += n;
        if (i >= h.ndeps)
            break;
    }
    if (h.state == LULL__GRACE) {
        lull__grace_cancel(r, h.gt, true);
        lull__grace_put(h.gt);              /* the record's reference */
    } else {
        r->o.close(h.conn, LULL_SHUTDOWN, r->o.ctx);
        if (h.conn_fr)
            lull__fr_retire(h.conn_fr);
    }
    lull_store_delete(r->store, key, key_len);
}

struct lull__keys {
    lull_registry *r;
    unsigned char *buf;
    size_t cap, used, n;
    const struct lull_snap *first;
};

static int lull__keys_size(const struct lull_snap *s, void *arg)
{
    struct lull__keys *k = arg;
    k->cap += sizeof(size_t) + s->key_len;
    return 0;
}

static int lull__keys_copy(const struct lull_snap *s, void *arg)
{
    struct lull__keys *k = arg;
    if (k->used + sizeof(size_t) + s->key_len > k->cap)
        return 1;                           /* cannot happen: quiescent */
    memcpy(k->buf + k->used, &s->key_len, sizeof(size_t));
    memcpy(k->buf + k->used + sizeof(size_t), s->key, s->key_len);
    k->used += sizeof(size_t) + s->key_len;
    k->n++;
    return 0;
}

static int lull__keys_first(const struct lull_snap *s, void *arg)
{
    ((struct lull__keys *)arg)->first = s;
    return 1;
}

void lull__close_all(lull_registry *r)
{
    struct lull__keys k = { .r = r };

    /* One walk to size a list of every key, one to fill it: then close
     * key by key, with no walk restarted over a shrinking table. */
    lull_store_foreach(r->store, lull__keys_size, &k);
    if (k.cap && (k.buf = lull__malloc(k.cap)) != NULL) {
        lull_store_foreach(r->store, lull__keys_copy, &k);
        for (size_t off = 0; off < k.used;) {
            size_t len;
            memcpy(&len, k.buf + off, sizeof(size_t));
            lull__close_one(r, k.buf + off + sizeof(size_t), len);
            off += sizeof(size_t) + len;
        }
        lull__free(k.buf);
    }

    /* Whatever is left (no memory for the list): the first key each time,
     * copied to the buffer reserved at create.  A key longer than that
     * buffer is closed from inside the section that found it. */
    for (;;) {
        lull_read_lock();
        k.first = NULL;
        lull_store_foreach(r->store, lull__keys_first, &k);
        if (!k.first) {
            lull_read_unlock();
            break;
        }
        size_t len = k.first->key_len;
        if (r->keybuf && len <= r->keybuf_len) {
            memcpy(r->keybuf, k.first->key, len);
            lull_read_unlock();
            lull__close_one(r, r->keybuf, len);
        } else {
            lull__close_one(r, k.first->key, len);
            lull_read_unlock();
        }
    }
}
