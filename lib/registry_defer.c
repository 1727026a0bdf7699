/*
 * lib/registry_defer.c - what outlives a registry publish: free records and
 * grace timers.  Both are heap objects whose ownership passes between
 * threads; each says below who holds a reference and who frees it.
 */
#include "registry_internal.h"

#include <stdlib.h>
#include <string.h>

/* ========================================================= free records */

/*
 * A free record is allocated by the claim (attach) that publishes its
 * object, so the release that later closes the object allocates nothing.
 * After the close, lull__fr_retire links it into the tracker's list and
 * queues it with lull__defer.  Exactly one of two parties then runs
 * opts.free(obj): the deferred fn (after a grace period) or shutdown (after
 * its own grace period) -- whichever unlinks it from the list under the
 * tracker's lock.  The list is what lets shutdown find records still queued
 * on other threads' batches (lull__defer batches per thread), so that no
 * free runs after shutdown returns.
 *
 * The record's memory has two references once retired: the queue (dropped
 * by the deferred fn) and the list (dropped by whoever ran free).  The
 * tracker has one reference per queued record plus the registry's.
 */
struct lull__fr {
    struct lull__deferred d;
    struct lull__fr *prev, *next;   /* in tr->list while linked, under tr->lock */
    struct lull__tracker *tr;
    void *obj;
    int refs;                       /* atomic */
    bool linked;                    /* under tr->lock */
};

struct lull__tracker {
    pthread_mutex_t lock;           /* guards list and linked; never held across a callback */
    struct lull__fr *list;
    size_t nlist;
    void (*free_fn)(void *obj, void *ctx);
    void *ctx;
    long refs;                      /* atomic */
};

struct lull__tracker *lull__tracker_new(void (*free_fn)(void *, void *), void *ctx)
{
    struct lull__tracker *tr = lull__calloc(1, sizeof(*tr));
    if (!tr)
        return NULL;
    if (pthread_mutex_init(&tr->lock, NULL) != 0) {
        lull__free(tr);
        return NULL;
    }
    tr->free_fn = free_fn;
    tr->ctx = ctx;
    tr->refs = 1;
    return tr;
}

void lull__tracker_put(struct lull__tracker *tr)
{
    /* acq_rel: every user's accesses (release) happen before the free
     * (acquire) by the last one. */
    if (__atomic_fetch_sub(&tr->refs, 1, __ATOMIC_ACQ_REL) == 1) {
        pthread_mutex_destroy(&tr->lock);
        lull__free(tr);
    }
}

size_t lull__tracker_pending(struct lull__tracker *tr)
{
    pthread_mutex_lock(&tr->lock);
    size_t n = tr->nlist;
    pthread_mutex_unlock(&tr->lock);
    return n;
}

struct lull__fr *lull__fr_new(struct lull__tracker *tr, void *obj)
{
    struct lull__fr *fr = lull__calloc(1, sizeof(*fr));
    if (fr) {
        fr->tr = tr;
        fr->obj = obj;
    }
    return fr;
}

void *lull__fr_obj(const struct lull__fr *fr)
{
    return fr->obj;
}

void lull__fr_discard(struct lull__fr *fr)
{
    lull__free(fr);
}

static void lull__fr_put(struct lull__fr *fr)
{
    /* acq_rel: the other holder's accesses happen before the free. */
    if (__atomic_fetch_sub(&fr->refs, 1, __ATOMIC_ACQ_REL) == 1)
        lull__free(fr);
}

/* Under tr->lock. */
static void lull__fr_unlink_locked(struct lull__tracker *tr, struct lull__fr *fr)
{
    if (fr->prev)
        fr->prev->next = fr->next;
    else
        tr->list = fr->next;
    if (fr->next)
        fr->next->prev = fr->prev;
    fr->linked = false;
    tr->nlist--;
}

static void lull__fr_run(struct lull__deferred *d)
{
    struct lull__fr *fr = (struct lull__fr *)(void *)((char *)d - offsetof(struct lull__fr, d));
    struct lull__tracker *tr = fr->tr;

    pthread_mutex_lock(&tr->lock);
    bool mine = fr->linked;
    if (mine)
        lull__fr_unlink_locked(tr, fr);
    pthread_mutex_unlock(&tr->lock);
    if (mine) {
        tr->free_fn(fr->obj, tr->ctx);
        lull__fr_put(fr);           /* the list's reference */
    }
    lull__fr_put(fr);               /* the queue's reference */
    lull__tracker_put(tr);
}

void lull__fr_retire(struct lull__fr *fr)
{
    struct lull__tracker *tr = fr->tr;
    /* Relaxed: lull__defer orders these before the deferred fn; the mutex
     * orders them before shutdown's steal. */
    __atomic_store_n(&fr->refs, 2, __ATOMIC_RELAXED);
    __atomic_fetch_add(&tr->refs, 1, __ATOMIC_RELAXED);
    pthread_mutex_lock(&tr->lock);
    fr->prev = NULL;
    fr->next = tr->list;
    if (tr->list)
        tr->list->prev = fr;
    tr->list = fr;
    fr->linked = true;
    tr->nlist++;
    pthread_mutex_unlock(&tr->lock);
    lull__defer(&fr->d, lull__fr_run);
}

void lull__tracker_run_all(struct lull__tracker *tr)
{
    pthread_mutex_lock(&tr->lock);
    struct lull__fr *chain = tr->list;
    tr->list = NULL;
    tr->nlist = 0;
    for (struct lull__fr *fr = chain; fr; fr = fr->next)
        fr->linked = false;         /* next stays ours: the deferred fn sees !linked */
    pthread_mutex_unlock(&tr->lock);
    while (chain) {
        struct lull__fr *next = chain->next;
        tr->free_fn(chain->obj, tr->ctx);
        lull__fr_put(chain);        /* the list's reference */
        chain = next;
    }
}

/* ========================================================= grace timers */

/*
 * release_after arms in three steps so that it can fail cleanly and no
 * expiry can fire before the grace state is visible:
 *   1. park:    schedule the timer with delay UINT64_MAX (takes the wheel's
 *               capacity: -ENOSPC / -ENOMEM here change nothing);
 *   2. publish: the record enters GRACE, pointing at gt (whose cur is the
 *               parked handle t0);
 *   3. arm:     reschedule t0 to grace_ns (needs no capacity) as t1 and
 *               CAS cur from t0 to t1.
 * A canceller (a reclaim, or shutdown) takes the handle with an exchange of
 * cur to 0, then cancels what it took.  Exactly one party cancels each
 * handle value, and every pending timer of gt is cancelled by someone:
 *   - the canceller took t0 before step 3: either its cancel(t0) wins (0:
 *     it drops the timer reference; the reschedule gets -ESTALE) or the
 *     reschedule wins (its cancel gets -ESTALE), and then the arming CAS
 *     fails on cur == 0, so the arming call cancels t1 itself;
 *   - the canceller took t1: it cancels it; a non-zero answer means the
 *     callback runs (or ran) and drops the timer reference itself.
 * The expiry itself is conditional (record still GRACE with this gen and
 * this gt), so a timer that outlives its grace period fires harmlessly.
 */
struct lull__grace *lull__grace_new(lull_registry *r, const void *id, size_t id_len, uint64_t gen)
{
    struct lull__grace *gt = lull__malloc(sizeof(*gt) + id_len);
    if (!gt)
        return NULL;
    memset(gt, 0, sizeof(*gt));
    gt->r = r;
    gt->gen = gen;
    gt->id_len = id_len;
    memcpy(gt->id, id, id_len);
    gt->refs = 3;                   /* arming call, record, timer */
    return gt;
}

static void lull__grace_free(struct lull__deferred *d)
{
    lull__free((char *)d - offsetof(struct lull__grace, d));
}

void lull__grace_put(struct lull__grace *gt)
{
    /* acq_rel: every holder's accesses happen before the free.  Deferred:
     * lull_registry_check reads gt through a record inside a section. */
    if (__atomic_fetch_sub(&gt->refs, 1, __ATOMIC_ACQ_REL) == 1)
        lull__defer(&gt->d, lull__grace_free);
}

void lull__grace_timer_done(lull_registry *r, struct lull__grace *gt)
{
    lull__grace_put(gt);
    /* Release: pairs with shutdown's acquire load of armed; this is the
     * timer side's last touch of r (shutdown may free r once armed is 0). */
    __atomic_fetch_sub(&r->armed, 1, __ATOMIC_RELEASE);
}

int lull__grace_park(lull_registry *r, struct lull__grace *gt)
{
    lull_timer t0;
    int rc = lull_wheel_schedule(r->wheel, UINT64_MAX, lull__grace_fire, gt, &t0);
    if (rc)
        return rc;
    /* Relaxed: the record's publish (a release) makes cur visible to any
     * canceller, which can only find gt through that record. */
    __atomic_store_n(&gt->cur, t0, __ATOMIC_RELAXED);
    /* Relaxed: the call's lull__leave (release) orders it before shutdown. */
    __atomic_fetch_add(&r->armed, 1, __ATOMIC_RELAXED);
    return 0;
}

void lull__grace_arm(lull_registry *r, struct lull__grace *gt, uint64_t grace_ns)
{
    /* Acquire: pairs with a canceller's exchange (0: it took t0 already). */
    lull_timer t0 = __atomic_load_n(&gt->cur, __ATOMIC_ACQUIRE), t1;
    /* A reschedule fails with -ESTALE when a canceller's cancel(t0) won;
     * and (lib/wheel.c) with -ENOMEM once per 2^32 moves of one timer slot:
     * then the timer stays parked and the id in grace until a claim or
     * shutdown ends it (docs/registry.md). */
    if (t0 && lull_wheel_reschedule(r->wheel, t0, grace_ns, &t1) == 0) {
        /* acq_rel: pairs with the canceller's exchange. */
        if (!__atomic_compare_exchange_n(&gt->cur, &t0, t1, false, __ATOMIC_ACQ_REL,
                                         __ATOMIC_ACQUIRE)) {
            /* A canceller took t0 and its cancel found it moved (or the
             * callback of t1 re-armed already): t1 is ours to cancel. */
            if (lull_wheel_cancel(r->wheel, t1) == 0)
                lull__grace_timer_done(r, gt);
        }
    }
    /* Otherwise a canceller's cancel(t0) won: it dropped the timer ref. */
    lull__grace_put(gt);            /* the arming call's reference */
}

void lull__grace_cancel(lull_registry *r, struct lull__grace *gt, bool sync)
{
    /* acq_rel: pairs with the arming CAS and the expiry's re-arm CAS; whoever
     * is second sees the other's value. */
    lull_timer h = __atomic_exchange_n(&gt->cur, 0, __ATOMIC_ACQ_REL);
    if (!h)
        return;                     /* another canceller took it */
    int rc = sync ? lull_wheel_cancel_sync(r->wheel, h) : lull_wheel_cancel(r->wheel, h);
    if (rc == 0)
        lull__grace_timer_done(r, gt);
    /* -EINPROGRESS / -ESTALE: the callback runs or ran and drops the timer
     * reference, or h was t0 and the arming call cancels t1. */
}

void lull__grace_fire(lull_timer t, void *arg)
{
    struct lull__grace *gt = arg;
    lull_registry *r = gt->r;
    if (lull__enter(r) != 0) {
        /* Shutdown has begun: no expiry any more; shutdown closes the rest. */
        lull__grace_timer_done(r, gt);
        return;
    }
    lull__grace_expire(r, gt, t);   /* leaves, and drops or passes on the timer ref */
}
