/*
 * lib/store_nodes.c - where the store's nodes come from and go back to.
 *
 * Every update allocates one node and retires one.  Freeing the retired node
 * with free() after its grace period costs more than the update itself: it
 * runs on the reclaim thread (lib/rcu.c), walks cold memory, and contends with the
 * writer's malloc for glibc's arena (the ~400 ns an update a prototype saw).
 * So nodes are recycled instead, in size classes:
 *
 *   writer thread: cache[cls]  --get-->  candidate  --publish-->  in the table
 *        ^                                                           |
 *        | takes all its chains (one exchange)                       | unlinked
 *        |                                                           v
 *   shared pool[cls]  <--a whole chain (one CAS)--  reclaim  <--  chain of 64
 *                                                   thread        of one class
 *
 * The reclaim thread touches only the chain's head: walking 64 cold nodes
 * to push them one by one was 30 % of an update's cost.
 *
 * A pool holds at most LULL_POOL_BYTES per class; past that, and for nodes
 * over the largest class, nodes go back to free().  Under AddressSanitizer
 * nodes are never recycled, so a snapshot used after its grace period is
 * still reported as a use-after-free.
 */
#include "store_internal.h"

#include <pthread.h>
#include <stdlib.h>

#if defined(__SANITIZE_ADDRESS__)
#define LULL_RECYCLE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LULL_RECYCLE 0
#endif
#endif
#ifndef LULL_RECYCLE
#define LULL_RECYCLE 1
#endif

/* Allocation sizes, header included: steps of a half power of two, so at
 * most a third of a node is slack.  Larger nodes are plain malloc. */
static const uint32_t lull__class_size[] = {
    128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096,
};
#define LULL_CLASSES   (sizeof(lull__class_size) / sizeof(lull__class_size[0]))
#define LULL_NO_CLASS  0xff
_Static_assert(LULL_CLASSES <= LULL_DEFER_KINDS, "one deferral kind per size class");
/* Per class.  Sized to hold what one backlog of retired nodes returns at
 * once (up to LULL_INFLIGHT_MAX nodes: 12 MiB of 192-byte nodes): at 4 MiB,
 * two thirds of every burst went back to free() and came again from
 * malloc(), and an update cost 330 ns instead of 170 (one thread, 16-byte
 * keys, 64-byte values).  The pools keep only memory that was in use: they
 * hold at most what writers retired, never more than the peak. */
#define LULL_POOL_BYTES (16u << 20)

struct lull__pool {
    /* A stack of whole chains (each as retired: nodes linked by retire.next,
     * the head carrying retire.n), chain heads linked through their spent
     * rcu_head (lull__chain_link).  Pushed with a CAS (release: the nodes'
     * last uses happen before their reuse), taken all at once with an
     * exchange (acquire, pairs with it).  Taking everything avoids the ABA
     * problem of a one-element pop. */
    _Alignas(lull__cacheline) struct lull__deferred *chains;
    long n;     /* about how many nodes: a cap, not an invariant (relaxed) */
};
static struct lull__pool lull__pool[LULL_CLASSES];

/* A thread's cache of one class: the chain it allocates from, and further
 * chains behind it.  Thread-private: no atomics. */
struct lull__cache {
    struct lull__deferred *cur[LULL_CLASSES];
    struct lull__deferred *more[LULL_CLASSES];
};
static __thread struct lull__cache lull__cache;
static __thread bool lull__cache_live;
static pthread_key_t lull__cache_key;
static pthread_once_t lull__cache_once = PTHREAD_ONCE_INIT;

static inline struct lull_node *lull__node_of(struct lull__deferred *d)
{
    return caa_container_of(d, struct lull_node, retire);
}

/* Once a chain's grace period has run, its head's rcu_head is free: in a
 * pool or a cache it links the chain to the next chain. */
static inline struct lull__deferred **lull__chain_link(struct lull__deferred *head)
{
    return (struct lull__deferred **)(void *)&head->rcu_head_space[0];
}

static unsigned lull__class_of(size_t bytes)
{
    for (unsigned c = 0; c < LULL_CLASSES; c++)
        if (bytes <= lull__class_size[c])
            return c;
    return LULL_NO_CLASS;
}

/* A node's class, from its key length and capacity: a class node's
 * capacity is exactly what its class leaves after the header and the key
 * (lull__node_get), so the sum gives the class back; a bigger node has no
 * class. */
static unsigned lull__node_cls(const struct lull_node *n)
{
    return lull__class_of(sizeof(struct lull_node) + lull__koff(n->snap.key_len) +
                          lull__node_cap(n));
}

void lull__node_free(struct lull_node *n)
{
    lull__free(n);
}

static void lull__free_list(struct lull__deferred *d)
{
    while (d) {
        struct lull__deferred *next = d->next;
        lull__node_free(lull__node_of(d));
        d = next;
    }
}

static void lull__free_chains(struct lull__deferred *c)
{
    while (c) {
        struct lull__deferred *next = *lull__chain_link(c);
        lull__free_list(c);
        c = next;
    }
}

/* After a grace period (reclaim thread): a whole chain of one class goes
 * back to its pool with one CAS, without touching its other nodes. */
static void lull__chain_recycle(struct lull__deferred *head)
{
    unsigned cls = lull__node_cls(lull__node_of(head));
    struct lull__pool *p = &lull__pool[cls];
    long cap = (long)(LULL_POOL_BYTES / lull__class_size[cls]);
    if (lull__load_relaxed(&p->n) + (long)head->n > cap) {
        lull__free_list(head);
        return;
    }
    __atomic_fetch_add(&p->n, (long)head->n, __ATOMIC_RELAXED);
    struct lull__deferred *top = lull__load_relaxed(&p->chains);
    do {
        *lull__chain_link(head) = top;
    } while (!__atomic_compare_exchange_n(&p->chains, &top, head, true,
                                          __ATOMIC_RELEASE, __ATOMIC_RELAXED));
}

static struct lull__deferred *lull__pool_take(unsigned cls)
{
    struct lull__pool *p = &lull__pool[cls];
    if (!lull__load_relaxed(&p->chains))
        return NULL;
    struct lull__deferred *all = __atomic_exchange_n(&p->chains, NULL, __ATOMIC_ACQUIRE);
    lull__store_relaxed(&p->n, 0);
    return all;
}

/* Thread exit (and trim): the cache goes back to malloc. */
static void lull__cache_drain(void *unused)
{
    (void)unused;
    for (unsigned c = 0; c < LULL_CLASSES; c++) {
        lull__free_list(lull__cache.cur[c]);
        lull__free_chains(lull__cache.more[c]);
        lull__cache.cur[c] = lull__cache.more[c] = NULL;
    }
    lull__cache_live = false;
}

static void lull__cache_make_key(void)
{
    (void)pthread_key_create(&lull__cache_key, lull__cache_drain);
}

static bool lull__cache_enter(void)
{
    if (lull__likely(lull__cache_live))
        return true;
    pthread_once(&lull__cache_once, lull__cache_make_key);
    /* Without the exit hook the cache would leak with the thread: then the
     * thread does not cache at all. */
    if (pthread_setspecific(lull__cache_key, &lull__cache) != 0)
        return false;
    lull__cache_live = true;
    return true;
}

/* Plain malloc: its 16-byte alignment already keeps a hit to two lines
 * (store_internal.h); aligned_alloc(64) cost a third more memory. */
static struct lull_node *lull__node_new(unsigned cls, size_t bytes)
{
    return lull__malloc(cls == LULL_NO_CLASS ? bytes : lull__class_size[cls]);
}

struct lull_node *lull__node_get(size_t key_len, size_t cap)
{
    size_t bytes = sizeof(struct lull_node) + lull__koff(key_len) + cap;
    unsigned cls = lull__class_of(bytes);
    struct lull_node *n = NULL;

    if (LULL_RECYCLE && cls != LULL_NO_CLASS && lull__cache_enter()) {
        /* Taking a cached node counts as an allocation for fault injection,
         * so allocation-failure sweeps behave the same with or without it. */
        if (lull__fault_now())
            return NULL;
        struct lull__deferred *d = lull__cache.cur[cls];
        if (!d) {                   /* next chain: from the cache, else the pool */
            d = lull__cache.more[cls];
            if (!d)
                d = lull__pool_take(cls);
            if (d)
                lull__cache.more[cls] = *lull__chain_link(d);
        }
        if (d) {
            /* Recycled nodes are cold: the reclaim thread touched only the
             * chain's head.  Reading d->next is the one miss this call
             * waits for (d itself was prefetched by the call before); the
             * node after d is prefetched for writing now, so the next call
             * and its copy into the node find it on the way. */
            struct lull__deferred *next = d->next;
            lull__cache.cur[cls] = next;
            if (next) {
                struct lull_node *nn = lull__node_of(next);
                __builtin_prefetch(&nn->retire, 1, 3);       /* line 0 */
                __builtin_prefetch(&nn->snap, 1, 3);         /* line 1: snap, key, value */
            }
            n = lull__node_of(d);
        } else {
            n = lull__node_new(cls, bytes);
        }
    } else {
        n = lull__node_new(cls, bytes);
    }
    if (!n)
        return NULL;
    n->retire.aux = (uint32_t)((cls != LULL_NO_CLASS ? lull__class_size[cls] : bytes)
                               - sizeof(struct lull_node) - lull__koff(key_len));
    return n;
}

void lull__node_put(struct lull_node *n)
{
    if (!n)
        return;
    unsigned cls = lull__node_cls(n);
    if (LULL_RECYCLE && cls != LULL_NO_CLASS && lull__cache_live) {
        n->retire.next = lull__cache.cur[cls];
        lull__cache.cur[cls] = &n->retire;
        return;
    }
    lull__node_free(n);
}

static void lull__node_free_deferred(struct lull__deferred *d)
{
    lull__node_free(lull__node_of(d));
}

void lull__node_retire(struct lull_node *n)
{
    unsigned cls = lull__node_cls(n);
    if (LULL_RECYCLE && cls != LULL_NO_CLASS)
        lull__defer_kind(&n->retire, cls, lull__chain_recycle);
    else
        lull__defer(&n->retire, lull__node_free_deferred);
}

void lull__node_trim(void)
{
    if (lull__cache_live)
        lull__cache_drain(NULL);
    for (unsigned c = 0; c < LULL_CLASSES; c++)
        lull__free_chains(lull__pool_take(c));
}
