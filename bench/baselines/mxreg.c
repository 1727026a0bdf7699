/* bench/baselines/mxreg.c - the mutex registry (see mxreg.h). */
#include "mxreg.h"
#include "chain.h"
#include "hash.h"
#include "heap.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

enum { LIVE = 1, GRACE = 2 };

struct holder {                 /* the value of an id's node */
    void *conn;                 /* NULL in grace */
    uint64_t gen;
    uint64_t timer;             /* the grace timer, in grace */
    int state;
};

struct bl_reg {
    pthread_mutex_t lock;
    struct bl_table t;
    struct bl_heap *timers;
    uint64_t next_gen;
    void (*close)(void *conn, int why, void *ctx);
    void *ctx;
};

static inline struct holder *H(struct bl_node *n) { return bl_node_value(n); }

struct bl_reg *bl_reg_create(void (*close)(void *, int, void *), void *ctx,
                             uint64_t (*clock)(void *), void *clock_ctx, size_t expected)
{
    struct bl_reg *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    if (bl_table_init(&r->t, expected)) {
        free(r);
        return NULL;
    }
    r->timers = bl_heap_create(clock, clock_ctx, BL_HEAP_UNLOCKED);
    if (!r->timers) {
        bl_table_fini(&r->t);
        free(r);
        return NULL;
    }
    pthread_mutex_init(&r->lock, NULL);
    r->close = close;
    r->ctx = ctx;
    return r;
}

void bl_reg_destroy(struct bl_reg *r)
{
    if (!r)
        return;
    for (size_t i = 0; i <= r->t.mask; i++)
        for (struct bl_node *n = r->t.buckets[i]; n; n = n->next)
            if (H(n)->state == LIVE && r->close)
                r->close(H(n)->conn, BL_SHUTDOWN, r->ctx);
    bl_table_fini(&r->t);
    bl_heap_destroy(r->timers);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

static void never(uint64_t t, void *arg) { (void)t; (void)arg; }

/* Unlinks the node at *pp and frees it. */
static void unlink_free(struct bl_reg *r, struct bl_node **pp)
{
    struct bl_node *n = *pp;
    *pp = n->next;
    r->t.count--;
    free(n);
}

int bl_reg_claim(struct bl_reg *r, const void *id, size_t len, void *conn, uint64_t *gen)
{
    if (!r || !id || !len || !conn)
        return -EINVAL;
    uint64_t h = bl_hash(id, len);
    /* allocate before the lock: a claim of a free id is the common case */
    struct holder fresh = {conn, 0, 0, LIVE};
    struct bl_node *nn = bl_node_new(h, id, len, &fresh, sizeof fresh);
    if (!nn)
        return -ENOMEM;
    void *replaced = NULL;
    pthread_mutex_lock(&r->lock);
    uint64_t g = ++r->next_gen;
    struct bl_node *n = bl_table_find(&r->t, h, id, len);
    if (!n) {
        H(nn)->gen = g;
        bl_table_add(&r->t, nn);
        nn = NULL;
    } else {
        struct holder *ho = H(n);
        if (ho->state == GRACE)
            (void)bl_heap_cancel(r->timers, ho->timer);   /* reclaim */
        else
            replaced = ho->conn;                          /* the incoming one wins */
        ho->conn = conn;
        ho->gen = g;
        ho->timer = 0;
        ho->state = LIVE;
    }
    pthread_mutex_unlock(&r->lock);
    free(nn);
    if (replaced && r->close)
        r->close(replaced, BL_REPLACED, r->ctx);
    *gen = g;
    return 0;
}

int bl_reg_release(struct bl_reg *r, const void *id, size_t len, uint64_t gen)
{
    if (!r || !id || !len)
        return -EINVAL;
    uint64_t h = bl_hash(id, len);
    void *conn = NULL;
    pthread_mutex_lock(&r->lock);
    struct bl_node **pp = bl_table_slot(&r->t, h, id, len);
    if (*pp && H(*pp)->state == LIVE && H(*pp)->gen == gen) {
        conn = H(*pp)->conn;
        unlink_free(r, pp);
    }
    pthread_mutex_unlock(&r->lock);
    if (!conn)
        return 0;
    if (r->close)
        r->close(conn, BL_RELEASED, r->ctx);
    return 1;
}

int bl_reg_release_after(struct bl_reg *r, const void *id, size_t len, uint64_t gen,
                         uint64_t grace_ns)
{
    if (!r || !id || !len)
        return -EINVAL;
    uint64_t h = bl_hash(id, len);
    pthread_mutex_lock(&r->lock);
    struct bl_node *n = bl_table_find(&r->t, h, id, len);
    if (!n || H(n)->state != LIVE || H(n)->gen != gen) {
        pthread_mutex_unlock(&r->lock);
        return -ESTALE;
    }
    uint64_t t;
    /* The timer's arg is the node: a node in grace leaves the table only by
     * its expiry, and a reclaim cancels the timer under this same lock. */
    int rc = bl_heap_schedule(r->timers, grace_ns, never, n, &t);
    if (rc) {
        pthread_mutex_unlock(&r->lock);
        return rc;
    }
    void *conn = H(n)->conn;
    H(n)->conn = NULL;
    H(n)->state = GRACE;
    H(n)->timer = t;
    pthread_mutex_unlock(&r->lock);
    if (r->close)
        r->close(conn, BL_RELEASED, r->ctx);
    return 0;
}

int bl_reg_lookup(struct bl_reg *r, const void *id, size_t len, void **conn, uint64_t *gen)
{
    if (!r || !id || !len)
        return -EINVAL;
    uint64_t h = bl_hash(id, len);
    int rc;
    pthread_mutex_lock(&r->lock);
    struct bl_node *n = bl_table_find(&r->t, h, id, len);
    if (!n) {
        rc = -ENOENT;
    } else if (H(n)->state == GRACE) {
        rc = -EAGAIN;
    } else {
        if (conn)
            *conn = H(n)->conn;
        if (gen)
            *gen = H(n)->gen;
        rc = 0;
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}

size_t bl_reg_advance(struct bl_reg *r)
{
    size_t n = 0;
    uint64_t t;
    bl_timer_fn fn;
    void *arg;
    pthread_mutex_lock(&r->lock);
    uint64_t now = bl_heap_now(r->timers);
    while (bl_heap_pop_due(r->timers, now, &t, &fn, &arg)) {
        struct bl_node *x = arg;
        struct bl_node **pp = bl_table_slot(&r->t, x->hash, x->data, x->klen);
        if (*pp == x && H(x)->state == GRACE && H(x)->timer == t) {
            unlink_free(r, pp);
            n++;
        }
    }
    pthread_mutex_unlock(&r->lock);
    return n;
}
