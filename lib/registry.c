/*
 * lib/registry.c - layer 3: the connection registry, on the store and the
 * wheel.  This file: create, the call gate, shutdown, destroy, the checker
 * and the ready-made double-connection rules.  registry_ops.c has the
 * records and every call's decision; registry_defer.c what outlives a
 * publish (free records, grace timers).  docs/registry.md explains the
 * design: states of an id, transitions, exactly-once, shutdown order.
 */
#include "registry_internal.h"

#include <lull/store.h>
#include <lull/wheel.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LULL__DEFAULT_KEY_LEN 1024u
#define LULL__TLS_CALLS       16u

/* ---------------------------------------------------------- the call gate */

/*
 * Every call, and every expiry, enters through lull__enter and leaves
 * through lull__leave.  The count of calls inside is split over
 * LULL__SHARDS cache lines (by thread) so that concurrent calls share no
 * line; shutdown sums them.  A thread also keeps the registries it is inside
 * of (its own calls, the callbacks they run), so that a shutdown from inside
 * one answers -EDEADLK instead of waiting for itself.
 */
static unsigned lull__shard_ctr;                /* atomic: hands out shards */
static __thread unsigned lull__shard_plus1;     /* 0: not yet assigned */
static __thread struct {
    lull_registry *r[LULL__TLS_CALLS];
    unsigned depth;
} lull__calls;

static inline unsigned lull__shard(void)
{
    if (lull__unlikely(!lull__shard_plus1))
        /* Relaxed: any distribution will do; only spreading matters. */
        lull__shard_plus1 = __atomic_fetch_add(&lull__shard_ctr, 1, __ATOMIC_RELAXED) %
                            LULL__SHARDS + 1;
    return lull__shard_plus1 - 1;
}

static inline void lull__calls_push(lull_registry *r)
{
    if (lull__calls.depth < LULL__TLS_CALLS)
        lull__calls.r[lull__calls.depth] = r;
    lull__calls.depth++;
}

int lull__enter(lull_registry *r)
{
    long *n = &r->inflight[lull__shard()].n;
    /* Dekker with lull_registry_shutdown: this seq_cst increment then
     * seq_cst load, against its seq_cst store of closing then seq_cst loads
     * of the counters.  In the single total order either this load sees
     * closing, or the increment precedes the store and shutdown's sum sees
     * it (and waits for the matching leave). */
    __atomic_fetch_add(n, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&r->closing, __ATOMIC_SEQ_CST)) {
        /* Release, as in lull__leave: pairs with shutdown's counter loads. */
        __atomic_fetch_sub(n, 1, __ATOMIC_RELEASE);
        return -ESHUTDOWN;
    }
    lull__calls_push(r);
    return 0;
}

void lull__leave(lull_registry *r)
{
    lull__calls.depth--;
    /* Release: pairs with shutdown's loads of the counters: everything the
     * call (and the callbacks it ran) did happens before shutdown goes on. */
    __atomic_fetch_sub(&r->inflight[lull__shard()].n, 1, __ATOMIC_RELEASE);
}

static bool lull__inside(const lull_registry *r)
{
    unsigned n = lull__calls.depth < LULL__TLS_CALLS ? lull__calls.depth : LULL__TLS_CALLS;
    for (unsigned i = 0; i < n; i++)
        if (lull__calls.r[i] == r)
            return true;
    return lull__calls.depth > LULL__TLS_CALLS;     /* lost track: assume so */
}

static long lull__inflight(lull_registry *r)
{
    long sum = 0;
    for (unsigned i = 0; i < LULL__SHARDS; i++)
        sum += __atomic_load_n(&r->inflight[i].n, __ATOMIC_SEQ_CST);   /* see lull__enter */
    return sum;
}

static long lull__armed(lull_registry *r)
{
    /* Acquire: pairs with lull__grace_timer_done's release. */
    return __atomic_load_n(&r->armed, __ATOMIC_ACQUIRE);
}

/* ---------------------------------------------------------- create */

bool lull_registry_keep_held(const void *id, size_t id_len, void *held, void *incoming, void *ctx)
{
    (void)id, (void)id_len, (void)held, (void)incoming, (void)ctx;
    return false;
}

bool lull_registry_keep_incoming(const void *id, size_t id_len, void *held, void *incoming,
                                 void *ctx)
{
    (void)id, (void)id_len, (void)held, (void)incoming, (void)ctx;
    return true;
}

lull_registry *lull_registry_create(const struct lull_registry_opts *opts)
{
    if (!opts || !opts->close ||
        (opts->on_reclaim != LULL_INHERIT && opts->on_reclaim != LULL_EVICT) ||
        (opts->store.max_value_len && opts->store.max_value_len < LULL__HDR_LEN)) {
        errno = EINVAL;
        return NULL;
    }
    lull_registry *r = lull__aligned_alloc(lull__cacheline, sizeof(*r));
    if (!r) {
        errno = ENOMEM;
        return NULL;
    }
    memset(r, 0, sizeof(*r));
    r->o = *opts;
    r->max_key_len = opts->store.max_key_len ? opts->store.max_key_len : LULL__DEFAULT_KEY_LEN;
    r->keybuf_len = r->max_key_len < LULL__KEYBUF_MAX ? r->max_key_len : LULL__KEYBUF_MAX;

    int err = ENOMEM;
    if (!(r->keybuf = lull__malloc(r->keybuf_len)) ||
        !(r->tr = lull__tracker_new(opts->free, opts->ctx)))
        goto fail;
    if (!(r->store = lull_store_create(&opts->store))) {
        err = errno;
        goto fail;
    }
    if (opts->wheel) {
        r->wheel = opts->wheel;
    } else {
        struct lull_wheel_opts wo = { .driver_thread = true };
        if (!(r->wheel = lull_wheel_create(&wo))) {
            err = errno;
            goto fail;
        }
        r->own_wheel = true;
    }
    return r;

fail:
    if (r->store)
        lull_store_destroy(r->store);
    if (r->tr)
        lull__tracker_put(r->tr);
    lull__free(r->keybuf);
    lull__free(r);
    errno = err;
    return NULL;
}

/* ---------------------------------------------------------- shutdown */

static int lull__wait_zero(long (*count)(lull_registry *), lull_registry *r, uint64_t deadline)
{
    for (unsigned spins = 0; count(r) != 0; spins++) {
        if (lull__now_ns() >= deadline)
            return -ETIMEDOUT;
        if (spins < 64) {
            sched_yield();
        } else {
            struct timespec ts = { 0, 100000 };
            nanosleep(&ts, NULL);
        }
    }
    return 0;
}

/*
 * The order (docs/registry.md, "Shutdown"):
 *   1. refuse: closing is set; every later call and every later expiry is
 *      refused at the gate (an expiry refused there does nothing);
 *   2. drain: wait until every call and expiry that got in has left -- with
 *      the callbacks it ran.  From here nothing but this thread changes the
 *      store.  (lull_registry_lookup does not pass the gate: its read-side
 *      section is its gate, and step 5's grace period waits for it);
 *   3. per id: cancel its grace timer (cancel_sync) or close its conn, and
 *      close its dependents, all with LULL_SHUTDOWN;
 *   4. wait until no timer holds a reference to a grace record (a fire that
 *      was refused at the gate may still be returning), then destroy the
 *      registry's own wheel: no callback of the registry can run any more;
 *   5. wait for a grace period and run every free still pending, so that
 *      none runs after shutdown returns.
 * -ETIMEDOUT in 2 or 4 leaves the registry refusing; a later shutdown (or
 * destroy) resumes where this one stopped.
 */
int lull_registry_shutdown(lull_registry *r, uint64_t timeout_ns)
{
    if (!r)
        return -EINVAL;
    if (lull__inside(r) || lull_read_ongoing())
        return -EDEADLK;
    uint64_t now = lull__now_ns();
    uint64_t deadline = !timeout_ns ? UINT64_MAX
                      : now > UINT64_MAX - timeout_ns ? UINT64_MAX : now + timeout_ns;

    __atomic_store_n(&r->closing, 1, __ATOMIC_SEQ_CST);     /* 1: see lull__enter */

    /* One shutdown at a time; a second one waits for it. */
    for (;;) {
        /* Acquire: pairs with the release that set shut_done. */
        if (__atomic_load_n(&r->shut_done, __ATOMIC_ACQUIRE))
            return -ESHUTDOWN;
        int free_ = 0;
        /* Acquire: pairs with the previous owner's release of shut_owner. */
        if (__atomic_compare_exchange_n(&r->shut_owner, &free_, 1, false, __ATOMIC_ACQUIRE,
                                        __ATOMIC_RELAXED))
            break;
        if (lull__now_ns() >= deadline)
            return -ETIMEDOUT;
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
    if (__atomic_load_n(&r->shut_done, __ATOMIC_ACQUIRE)) {
        __atomic_store_n(&r->shut_owner, 0, __ATOMIC_RELEASE);
        return -ESHUTDOWN;
    }

    int rc = lull__wait_zero(lull__inflight, r, deadline);         /* 2 */
    if (rc == 0) {
        /* 3.  Count this thread as inside r while it runs callbacks, so
         * that one of them calling shutdown or destroy gets -EDEADLK. */
        lull__calls_push(r);
        lull__close_all(r);
        lull__calls.depth--;
        rc = lull__wait_zero(lull__armed, r, deadline);             /* 4 */
    }
    if (rc == 0) {
        if (r->own_wheel && r->wheel) {
            lull_wheel_destroy(r->wheel, 0);
            r->wheel = NULL;
        }
        lull_synchronize();                                         /* 5 */
        lull__tracker_run_all(r->tr);
        /* Release: pairs with the acquire loads of shut_done above. */
        __atomic_store_n(&r->shut_done, 1, __ATOMIC_RELEASE);
    }
    /* Release: pairs with the next owner's CAS. */
    __atomic_store_n(&r->shut_owner, 0, __ATOMIC_RELEASE);
    return rc;
}

void lull_registry_destroy(lull_registry *r)
{
    if (!r)
        return;
    int rc = lull_registry_shutdown(r, 0);
    if (rc != 0 && rc != -ESHUTDOWN)
        return;     /* -EDEADLK: inside a section or one of r's callbacks; nothing done */
    lull_store_destroy(r->store);
    lull__tracker_put(r->tr);
    lull__free(r->keybuf);
    lull__free(r);
    lull_barrier();
}

/* ---------------------------------------------------------- checker */

struct lull__chk {
    lull_registry *r;
    FILE *out;
    int bad;
    size_t grace;
};

#define LULL__BAD(c, ...) do { (c)->bad++; if ((c)->out) { \
        fprintf((c)->out, "lull_registry_check: " __VA_ARGS__); } } while (0)

static int lull__check_rec(const struct lull_snap *s, void *arg)
{
    struct lull__chk *c = arg;
    lull_registry *r = c->r;
    struct lull__hdr h;
    const char *k = s->key;
    int kl = s->key_len > 32 ? 32 : (int)s->key_len;

    if (!lull__rec_parse(s->value, s->value_len, &h)) {
        LULL__BAD(c, "id '%.*s': value is not a record (%zu bytes)\n", kl, k, s->value_len);
        return 0;
    }
    if (!h.gen || h.gen > lull__gen_issued())
        LULL__BAD(c, "id '%.*s': generation %llu was never issued\n", kl, k,
                  (unsigned long long)h.gen);
    if (h.state == LULL__GRACE) {
        c->grace++;
        if (h.conn || h.conn_fr)
            LULL__BAD(c, "id '%.*s': in grace but still has a conn\n", kl, k);
        if (!h.gt)
            LULL__BAD(c, "id '%.*s': in grace without a grace timer\n", kl, k);
        else if (h.gt->r != r || h.gt->gen != h.gen || h.gt->id_len != s->key_len ||
                 memcmp(h.gt->id, s->key, s->key_len) != 0)
            LULL__BAD(c, "id '%.*s': grace timer armed for another id or generation\n", kl, k);
    } else {
        if (!h.conn)
            LULL__BAD(c, "id '%.*s': held by a NULL conn\n", kl, k);
        if (h.gt)
            LULL__BAD(c, "id '%.*s': held but points at a grace timer\n", kl, k);
        if (!r->o.free != !h.conn_fr || (h.conn_fr && lull__fr_obj(h.conn_fr) != h.conn))
            LULL__BAD(c, "id '%.*s': conn's free record missing or for another object\n", kl, k);
    }
    if (r->o.max_dependents && h.ndeps > r->o.max_dependents)
        LULL__BAD(c, "id '%.*s': %u dependents exceed max_dependents %zu\n", kl, k, h.ndeps,
                  r->o.max_dependents);
    for (size_t i = 0; i < h.ndeps; i++) {
        struct lull__dep e, f;
        lull__dep_get(s->value, i, &e);
        if (!e.dep)
            LULL__BAD(c, "id '%.*s': dependent %zu is NULL\n", kl, k, i);
        if (!r->o.free != !e.fr || (e.fr && lull__fr_obj(e.fr) != e.dep))
            LULL__BAD(c, "id '%.*s': dependent %zu's free record missing or wrong\n", kl, k, i);
        for (size_t j = 0; j < i; j++) {
            lull__dep_get(s->value, j, &f);
            if (f.dep == e.dep)
                LULL__BAD(c, "id '%.*s': dependent %p attached twice\n", kl, k, e.dep);
        }
    }
    return 0;
}

int lull_registry_check(lull_registry *r, FILE *out)
{
    if (!r)
        return -EINVAL;
    struct lull__chk c = { r, out, 0, 0 };
    /* Relaxed loads below: the checker is meaningful only while nothing
     * changes r, so there is nothing to order against. */
    int sb = lull_store_check(r->store, out);
    if (sb > 0)
        c.bad += sb;
    lull_store_foreach(r->store, lull__check_rec, &c);
    for (unsigned i = 0; i < LULL__SHARDS; i++)
        if (__atomic_load_n(&r->inflight[i].n, __ATOMIC_RELAXED) < 0)
            LULL__BAD(&c, "in-flight counter %u is negative\n", i);
    long armed = __atomic_load_n(&r->armed, __ATOMIC_RELAXED);
    if (armed < 0)
        LULL__BAD(&c, "armed timer count %ld is negative\n", armed);
    if (__atomic_load_n(&r->shut_done, __ATOMIC_RELAXED)) {
        if (lull_store_count(r->store) || armed)
            LULL__BAD(&c, "shut down, yet %zu ids and %ld timers remain\n",
                      lull_store_count(r->store), armed);
        if (lull__tracker_pending(r->tr))
            LULL__BAD(&c, "shut down, yet %zu frees are pending\n", lull__tracker_pending(r->tr));
    }
    return c.bad;
}
