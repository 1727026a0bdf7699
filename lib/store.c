/*
 * lib/store.c - layer 1: the RCU key->value store on liburcu's cds_lfht.
 *
 * A snapshot is one allocation, a struct lull_node: the table's link, the
 * public struct lull_snap, the deferred-free record, then the key and the
 * value (8-byte aligned).  A lookup touches that one object.
 *
 * Writers are optimistic: look up the current node, build a private
 * candidate (a copy, changed by the caller's fn), then publish it with a
 * conditional table operation that fails if anything changed meanwhile:
 *   update of a present key   cds_lfht_replace(old -> new)   fails if old is gone
 *   insert of an absent key   cds_lfht_add_unique(new)       fails if the key exists
 *   removal                   cds_lfht_del(old)              fails if old is gone
 * A failure means another writer published this key first; the fn runs again
 * on the newer snapshot.  Hence no lost update, and lock-free progress.
 *
 * Versions (unique, per key strictly increasing, never reused across delete
 * and re-insert) come from a hybrid clock instead of one global counter:
 *   version = hi << LULL_WID_BITS | writer id
 * where each writer thread owns an id and a private hi that it moves to
 * max(own hi, hi of the version being replaced, delete watermark) + 1.
 * Distinct writer ids make versions unique; taking the max makes them grow
 * per key.  Writers touch no shared counter.
 *
 * Re-insert after delete must exceed every version the key had.  A delete
 * raises a per-bucket watermark (tomb[], indexed by hash) to the removed
 * version *before* it unlinks the node.  An insert publishes its node with
 * version 0 ("pending": readers treat it as absent) and only then computes
 * its version, from the watermark; so every delete that preceded the insert
 * is seen, with no window in between.  Whoever meets a pending node (the
 * inserter or any other writer) finalises it with one CAS; exactly one CAS
 * wins and all adopt its value.  The insert takes effect at that CAS.
 */
#include "store_internal.h"

#include <lull/store.h>

#include <ck_backoff.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <urcu/urcu-memb.h>
#include <urcu/rculfhash.h>

#define LULL_DEFAULT_KEY_LEN   1024u
#define LULL_DEFAULT_VALUE_LEN 65536u
#define LULL_LIMIT_MAX         (1ul << 30)   /* no key or value beyond 1 GiB */
#define LULL_TOMB_SLOTS        1024u         /* delete watermarks, by hash */
#define LULL_WID_BITS          12u           /* writer ids 1..4095; 0 is shared */
#define LULL_WID_MAX           ((1u << LULL_WID_BITS) - 1)
#define LULL_TABLE_MIN         1024ul        /* buckets an unlimited store starts with */
#define LULL_TABLE_MAX         (1ul << 26)   /* buckets it may grow to */
#define LULL_IX_FIRST          16ul          /* keys the first front index is sized for */
#define LULL_IX_MAX            (3ul << 24)   /* keys the largest is sized for: 2^27 slots, 2 GiB */

/* The hash seed, and the seed xored with each constant of the short-key
 * hash's first round (lull__hash), made once by lull_store_create. */
struct lull__seed {
    uint64_t s, k1, k2;
};

struct lull_store {
    struct cds_lfht *ht;
    lull__ixw ix;                   /* the front index (store_index.c); replaced when
                                       it grows: release store, acquire loads */
    struct lull__seed seed;         /* per-store hash seed (hash flooding) */
    size_t fast_len;                /* key_len - 8 < this: lull_store_get's fast path */
    size_t max_keys, max_key_len, max_value_len;
    uint64_t update_timeout_ns;
    unsigned long grow_at;          /* resize when nkeys passes it (0: never) */
    unsigned long ix_at;            /* grow the front index when nkeys passes it */
    pthread_mutex_t resize_lock;    /* one resizer at a time; never held by readers */

    /* Key count: reserved before an insert publishes, released if it fails
     * or on delete.  Its own cache line: it is the one counter inserts and
     * deletes share. */
    _Alignas(lull__cacheline) long nkeys;
    _Alignas(lull__cacheline) uint64_t tomb[LULL_TOMB_SLOTS];
};

/* ------------------------------------------------------------ hashing */

static inline uint64_t lull__mix(uint64_t a, uint64_t b)
{
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

#define LULL_HASH_K1 0xa0761d6478bd642full
#define LULL_HASH_K2 0xe7037ed1a0b428dbull

/* A multiply-fold hash (wyhash-style), seeded per store.  Keys of up to 16
 * bytes -- the ids and tokens servers use -- take two loads and two
 * multiplies: the lookup's hot path is mostly this and two cache lines.
 * Their first round's factors are a key word xored with the seed and a
 * constant, and the store keeps both xors made (struct lull__seed), so
 * that the get's fast path reads them from the store's line instead of
 * building two 64-bit constants. */
static inline uint64_t lull__hash(const void *key, size_t n, const struct lull__seed *sd)
{
    const uint64_t seed = sd->s;
    const unsigned char *p = key;
    uint64_t a, b;

    if (lull__likely(n <= 16)) {
        if (n >= 8) {
            memcpy(&a, p, 8);
            memcpy(&b, p + n - 8, 8);
        } else if (n >= 4) {
            uint32_t x, y;
            memcpy(&x, p, 4);
            memcpy(&y, p + n - 4, 4);
            a = x;
            b = y;
        } else {
            a = (uint64_t)p[0] << 16 | (uint64_t)p[n >> 1] << 8 | p[n - 1];
            b = 0;
        }
        /* The seed in both factors: neither can be made zero by a key
         * chosen without knowing it (a zero factor would erase the other). */
        uint64_t h = lull__mix(a ^ sd->k1, b ^ sd->k2 ^ n);
        return lull__mix(h ^ LULL_HASH_K2, h ^ 0x8ebc6af09c88c6e3ull);
    }
    uint64_t h = seed ^ lull__mix(n ^ LULL_HASH_K1, LULL_HASH_K2);
    while (n > 16) {
        memcpy(&a, p, 8);
        memcpy(&b, p + 8, 8);
        h = lull__mix(a ^ seed ^ 0x8ebc6af09c88c6e3ull, b ^ h);
        p += 16;
        n -= 16;
    }
    /* The last 1..16 bytes, as two overlapping words when there are 8+. */
    p += n;
    if (n >= 8) {
        memcpy(&a, p - n, 8);
        memcpy(&b, p - 8, 8);
    } else {
        a = 0;
        memcpy(&a, p - n, n);
        b = n;
    }
    h = lull__mix(a ^ seed ^ 0x589965cc75374cc3ull, b ^ h ^ 0x1d8e4e27c47d124full);
    return lull__mix(h ^ 0x8ebc6af09c88c6e3ull, h ^ 0x589965cc75374cc3ull);
}

struct lull__key {
    const void *ptr;
    size_t len;
};

static int lull__match(struct cds_lfht_node *n, const void *arg)
{
    const struct lull__key *k = arg;
    struct lull_node *node = caa_container_of(n, struct lull_node, ht);
    /* Acquire pairs with the release store of snap.key in lull__seal: the
     * key bytes written before it are visible (liburcu's own publication is
     * invisible to TSan; this one is not, and costs a plain load on x86). */
    const void *kp = lull__load_acquire(&node->snap.key);
    return node->snap.key_len == k->len && lull__key_eq(kp, k->ptr, k->len);
}

/* The node's version, or 0 while an insert is pending.  Acquire pairs with
 * the release that set it (lull__seal for replacements, the CAS in
 * lull__finalize for inserts), so the value bytes are visible too. */
static inline uint64_t lull__version(struct lull_node *node)
{
    return lull__load_acquire(&node->snap.version);
}

/* The node at an iterator, or NULL at the end.  (liburcu's
 * cds_lfht_for_each_entry applies container_of to the NULL that ends a walk,
 * which UBSan rightly reports; lull walks with this instead.) */
static inline struct lull_node *lull__node_at(struct cds_lfht_iter *it)
{
    struct cds_lfht_node *n = cds_lfht_iter_get_node(it);
    return n ? caa_container_of(n, struct lull_node, ht) : NULL;
}

#define lull__for_each_node(ht, it, node)                                 \
    for (cds_lfht_first((ht), (it)), (node) = lull__node_at(it); (node);  \
         cds_lfht_next((ht), (it)), (node) = lull__node_at(it))

static struct lull_node *lull__lookup(lull_store *s, const struct lull__key *k, uint64_t hash,
                                      struct cds_lfht_iter *it)
{
    cds_lfht_lookup(s->ht, (unsigned long)hash, lull__match, k, it);
    return lull__node_at(it);
}

/* ------------------------------------------------------------ versions */

/* Each writer thread's clock, in its own cache line.  Entry 0 is shared by
 * threads that found no free id (more than LULL_WID_MAX writers at once) and
 * is advanced with a CAS; the others are owned by one thread at a time and
 * advanced with plain (relaxed) stores.  An id's clock survives its thread,
 * so the next owner continues above every version the id issued. */
static struct {
    _Alignas(lull__cacheline) uint64_t hi;
} lull__wclock[LULL_WID_MAX + 1];

static pthread_mutex_t lull__wid_lock = PTHREAD_MUTEX_INITIALIZER;
static bool lull__wid_used[LULL_WID_MAX + 1];
static pthread_key_t lull__wid_key;
static pthread_once_t lull__wid_once = PTHREAD_ONCE_INIT;
static __thread unsigned lull__my_wid;     /* 0: not yet assigned, or shared */
static __thread bool lull__my_wid_set;

static void lull__wid_release(void *p)
{
    unsigned wid = (unsigned)(uintptr_t)p;
    /* The mutex orders this thread's last clock store before the next
     * owner's first load of it. */
    pthread_mutex_lock(&lull__wid_lock);
    lull__wid_used[wid] = false;
    pthread_mutex_unlock(&lull__wid_lock);
}

static void lull__wid_make_key(void)
{
    (void)pthread_key_create(&lull__wid_key, lull__wid_release);
}

static void lull__wid_assign(void)
{
    pthread_once(&lull__wid_once, lull__wid_make_key);
    pthread_mutex_lock(&lull__wid_lock);
    for (unsigned i = 1; i <= LULL_WID_MAX; i++) {
        if (!lull__wid_used[i]) {
            if (pthread_setspecific(lull__wid_key, (void *)(uintptr_t)i) != 0)
                break;      /* could not arrange the release: use the shared id */
            lull__wid_used[i] = true;
            lull__my_wid = i;
            break;
        }
    }
    pthread_mutex_unlock(&lull__wid_lock);
    lull__my_wid_set = true;
}

/* A new version above @floor (the replaced version, or the watermark). */
static uint64_t lull__next_version(uint64_t floor)
{
    if (lull__unlikely(!lull__my_wid_set))
        lull__wid_assign();
    unsigned wid = lull__my_wid;
    uint64_t fhi = floor >> LULL_WID_BITS;

    if (lull__likely(wid != 0)) {
        /* Owned by this thread: relaxed is enough, nobody else writes it. */
        uint64_t hi = lull__load_relaxed(&lull__wclock[wid].hi);
        hi = (hi > fhi ? hi : fhi) + 1;
        lull__store_relaxed(&lull__wclock[wid].hi, hi);
        return hi << LULL_WID_BITS | wid;
    }
    /* Shared id 0: a CAS makes each hi handed out distinct.  Relaxed: the
     * value itself is all that is shared. */
    uint64_t hi = lull__load_relaxed(&lull__wclock[0].hi), next;
    do {
        next = (hi > fhi ? hi : fhi) + 1;
    } while (!__atomic_compare_exchange_n(&lull__wclock[0].hi, &hi, next, true,
                                          __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return next << LULL_WID_BITS;
}

static inline uint64_t *lull__tomb(lull_store *s, uint64_t hash)
{
    return &s->tomb[(hash >> 32) & (LULL_TOMB_SLOTS - 1)];
}

/* Raise the delete watermark to at least v.  Called before cds_lfht_del,
 * whose full barrier orders this store before the unlink; an insert that
 * finds the key gone reads it after its own add_unique barrier. */
static void lull__tomb_raise(lull_store *s, uint64_t hash, uint64_t v)
{
    uint64_t *t = lull__tomb(s, hash);
    uint64_t cur = lull__load_relaxed(t);
    while (cur < v && !__atomic_compare_exchange_n(t, &cur, v, true,
                                                   __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

/* Give a pending (just inserted) node its version.  Any writer that meets
 * the node may do it: they race with a CAS on the node's private fin word,
 * the first wins and the others adopt its value.  Only the winner then
 * stores snap.version, once: a failed CAS on the public field would count
 * as a write to TSan, racing with users' plain reads of snap->version.
 * The release store pairs with lull__version's acquire: readers that see
 * the version see the node's bytes.  The watermark load follows the node's
 * publication (add_unique's full barrier), so it sees every delete that
 * preceded it. */
void (*lull__finalize_test_hook)(struct lull_node *n, bool won);

static uint64_t lull__finalize(lull_store *s, struct lull_node *node, uint64_t hash)
{
    uint64_t v = lull__version(node);
    if (v)
        return v;
    /* Relaxed: orders nothing; a test sets the hook before it starts the
     * writers it stops (pthread_create orders it) and clears it after. */
    void (*hook)(struct lull_node *, bool) = lull__load_relaxed(&lull__finalize_test_hook);
    if (lull__unlikely(hook != NULL))
        hook(node, false);
    /* acquire (load and failed CAS): pairs with the winner's acq_rel CAS. */
    uint64_t f = __atomic_load_n(&node->fin, __ATOMIC_ACQUIRE);
    if (f)
        return f;   /* decided; its winner publishes it to readers */
    uint64_t mine = lull__next_version(lull__load_relaxed(lull__tomb(s, hash)));
    if (!__atomic_compare_exchange_n(&node->fin, &f, mine, false,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return f;   /* another writer finalised it first: f is its version */
    if (lull__unlikely(hook != NULL))
        hook(node, true);
    lull__store_release(&node->snap.version, mine);
    return mine;
}

/* ------------------------------------------------------------ nodes */

struct lull__wbuf {                 /* what the lull_buf an update fn gets really is */
    struct lull_buf buf;            /* first: lull_buf_resize casts back */
    struct lull_node *node;         /* the candidate; buf.data points into it */
    size_t cap;                     /* value bytes the candidate can hold */
    size_t max;                     /* the store's max_value_len */
    size_t key_len;
};

/* A candidate node holding the key, with room for at least cap value bytes
 * (lull__node_cap: how many it really has; nodes come in size classes). */
static struct lull_node *lull__node_alloc(const void *key, size_t key_len, size_t cap)
{
    struct lull_node *n = lull__node_get(key_len, cap);
    if (!n)
        return NULL;
    memcpy(n->data, key, key_len);
    n->snap.key_len = key_len;
    n->snap.key = NULL;             /* set by lull__seal */
    n->snap.value = n->data + lull__koff(key_len);
    n->snap.value_len = 0;
    n->snap.version = 0;
    n->fin = 0;
    n->dead = 0;
    n->ixref = 1;                   /* the publisher's install reference */
    return n;
}

/* Make the candidate ready to publish.  Two release stores, key then
 * version, so that either acquire sees the whole node: lull__match's acquire
 * of snap.key sees the key, value and lengths; the acquire of snap.version
 * (lull__version: get, read, foreach, writers) sees all that and the key
 * pointer too.  The other order left foreach, which acquires only the
 * version, reading snap.key unordered (TSan: tests/soak/foreach_race.c).
 * Version 0 leaves the node pending. */
static void lull__seal(struct lull_node *n, size_t value_len, uint64_t version)
{
    n->snap.value_len = value_len;
    lull__store_release(&n->snap.key, (const void *)n->data);
    lull__store_release(&n->snap.version, version);
}

int lull_buf_resize(struct lull_buf *b, size_t len)
{
    if (!b)
        return -EINVAL;
    struct lull__wbuf *w = (struct lull__wbuf *)b;
    if (len > w->max)
        return -EFBIG;
    if (len > w->cap) {
        size_t cap = w->cap * 2 > len ? w->cap * 2 : len;
        if (cap > w->max)
            cap = w->max;
        struct lull_node *n = lull__node_alloc(w->node->data, w->key_len, cap);
        if (!n)
            return -ENOMEM;
        memcpy((void *)n->snap.value, b->data, b->len);
        lull__node_put(w->node);
        w->node = n;
        w->cap = lull__node_cap(n);
        b->data = (void *)n->snap.value;
    }
    if (len > b->len)
        memset((char *)b->data + b->len, 0, len - b->len);
    b->len = len;
    return 0;
}

/* ------------------------------------------------------------ create/destroy */

static unsigned long lull__pow2_at_least(unsigned long n)
{
    unsigned long p = 1;
    while (p < n && p < (1ul << 62))
        p <<= 1;
    return p;
}

lull_store *lull_store_create(const struct lull_store_opts *opts)
{
    struct lull_store_opts o = opts ? *opts : (struct lull_store_opts){0};
    if (!o.max_key_len)
        o.max_key_len = LULL_DEFAULT_KEY_LEN;
    if (!o.max_value_len)
        o.max_value_len = LULL_DEFAULT_VALUE_LEN;
    if (o.max_key_len > LULL_LIMIT_MAX || o.max_value_len > LULL_LIMIT_MAX ||
        o.max_keys > (size_t)LONG_MAX / 2) {
        errno = EINVAL;
        return NULL;
    }

    int err = lull__rcu_start();    /* retired snapshots need the reclaim thread */
    if (err) {
        errno = -err;
        return NULL;
    }
    lull_store *s = lull__aligned_alloc(lull__cacheline, sizeof(*s));
    if (!s) {
        errno = ENOMEM;
        return NULL;
    }
    memset(s, 0, sizeof(*s));
    s->max_keys = o.max_keys;
    s->max_key_len = o.max_key_len;
    s->max_value_len = o.max_value_len;
    s->update_timeout_ns = o.update_timeout_ns;
    uint64_t seed;
    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != sizeof(seed))
        seed = lull__now_ns() ^ (uint64_t)(uintptr_t)s;
    s->seed = (struct lull__seed){ seed, seed ^ LULL_HASH_K1, seed ^ LULL_HASH_K2 };
    /* 8 <= key_len <= min(16, max_key_len); none when max_key_len < 8. */
    s->fast_len = o.max_key_len < 8 ? 0 : (o.max_key_len < 16 ? o.max_key_len : 16) - 7;
    pthread_mutex_init(&s->resize_lock, NULL);

    /* The table's size is lull's to control: liburcu 0.13's auto-resize is
     * erratic at a million keys.  With max_keys the table is sized for it at
     * once and never resized; otherwise it starts small and is grown by the
     * writer that crosses grow_at, outside any read-side section.  max_nr
     * buckets makes liburcu pick its mmap back-end: the bucket array is
     * reserved (virtual) up front and populated as the table grows. */
    unsigned long init = LULL_TABLE_MIN, max = LULL_TABLE_MAX;
    if (o.max_keys) {
        init = lull__pow2_at_least(o.max_keys);
        if (init < LULL_TABLE_MIN)
            init = LULL_TABLE_MIN;
        if (init > LULL_TABLE_MAX)
            init = LULL_TABLE_MAX;
        max = init;
    } else {
        s->grow_at = init;
    }
    /* The front index starts small whatever max_keys says (a store may
     * never fill) and grows with the key count (lull__maybe_grow). */
    s->ix = lull__ix_new(LULL_IX_FIRST);
    s->ix_at = s->ix ? lull__ix_grow_at(s->ix) : 0;
    s->ht = s->ix ? cds_lfht_new_flavor(init, LULL_TABLE_MIN, max, 0, &urcu_memb_flavor, NULL)
                  : NULL;
    if (!s->ht) {
        lull__ix_free(s->ix);
        pthread_mutex_destroy(&s->resize_lock);
        lull__free(s);
        errno = ENOMEM;
        return NULL;
    }
    return s;
}

int lull_store_destroy(lull_store *s)
{
    if (!s)
        return -EINVAL;
    if (lull_read_ongoing())
        return -EDEADLK;

    /* Unlink everything, then free it after a grace period. */
    struct cds_lfht_iter it;
    struct lull_node *node;
    struct lull__deferred *dead = NULL;
    lull_read_lock();
    lull__for_each_node(s->ht, &it, node) {
        if (cds_lfht_del(s->ht, &node->ht) == 0) {
            node->retire.next = dead;
            dead = &node->retire;
        }
    }
    lull_read_unlock();
    lull_synchronize();
    while (dead) {
        struct lull__deferred *next = dead->next;
        lull__node_free(caa_container_of(dead, struct lull_node, retire));
        dead = next;
    }
    cds_lfht_destroy(s->ht, NULL);
    lull__ix_free(s->ix);
    pthread_mutex_destroy(&s->resize_lock);
    lull_barrier();         /* snapshots retired earlier are recycled or freed too */
    lull__node_trim();      /* and the recycled ones handed back to malloc */
    lull__free(s);
    return 0;
}

/* Give the store a front index for `keys` keys and fill it from the table;
 * grow again past twice that.  Under resize_lock, outside any section.  The
 * new index is published empty and filled afterwards, through the install
 * protocol like any installer: a node retired meanwhile is then removed from
 * it by its owner (filling an index before publishing it could leave a
 * retired node in it).  The old index goes after a grace period: readers
 * that loaded it may still be using it.  Out of memory keeps the old one:
 * more keys miss it, nothing else changes. */
unsigned long lull__ix_grow_skips;

static void lull__ix_grow(lull_store *s, unsigned long keys)
{
    lull__ixw old = s->ix;              /* written under resize_lock only */
    if (keys > LULL_IX_MAX)
        keys = LULL_IX_MAX;
    lull__ixw t = lull__ix_new(keys);
    if (!t) {
        __atomic_fetch_add(&lull__ix_grow_skips, 1, __ATOMIC_RELAXED);   /* a count, for tests */
        return;
    }
    /* Release: pairs with the acquire loads of s->ix (lull__get,
     * store_index.c): the zeroed slots are visible with the pointer. */
    lull__store_release(&s->ix, t);
    /* Relaxed: a hint for lull__maybe_grow's unlocked check; the mutex
     * orders it for growers.  Grow past 1.5 keys a bucket (store_internal.h). */
    lull__store_relaxed(&s->ix_at, keys >= LULL_IX_MAX ? 0 : lull__ix_grow_at(t));

    struct cds_lfht_iter it;
    struct lull_node *node;
    lull_read_lock();
    lull__for_each_node(s->ht, &it, node) {
        if (lull__version(node) && !lull__load_relaxed(&node->dead))
            lull__ix_install(&s->ix, node, lull__hash(node->data, node->snap.key_len, &s->seed),
                             false);
    }
    lull_read_unlock();
    lull_synchronize();
    lull__ix_free(old);
}

/* Grow an unlimited store's table, and any store's front index, as keys
 * come.  Called by a writer after its publish, outside any section
 * (cds_lfht_resize and the index's replacement wait for grace periods); one
 * thread grows, the others go on (both stay fully usable meanwhile). */
static void lull__maybe_grow(lull_store *s)
{
    long n = lull__load_relaxed(&s->nkeys);
    unsigned long at = lull__load_relaxed(&s->grow_at), ix_at = lull__load_relaxed(&s->ix_at);
    if (n <= 0 || !((at && (unsigned long)n > at) || (ix_at && (unsigned long)n > ix_at)) ||
        lull_read_ongoing())
        return;
    if (pthread_mutex_trylock(&s->resize_lock) != 0)
        return;
    n = lull__load_relaxed(&s->nkeys);
    at = s->grow_at;
    if (at && n > 0 && (unsigned long)n > at) {
        unsigned long size = lull__pow2_at_least((unsigned long)n * 2);
        if (size > LULL_TABLE_MAX)
            size = LULL_TABLE_MAX;
        cds_lfht_resize(s->ht, size);
        /* Relaxed: grow_at is a hint for the unlocked check above; the
         * mutex orders it for resizers. */
        lull__store_relaxed(&s->grow_at, size >= LULL_TABLE_MAX ? 0 : size);
    }
    ix_at = s->ix_at;
    if (ix_at && n > 0 && (unsigned long)n > ix_at)
        lull__ix_grow(s, (unsigned long)n);
    pthread_mutex_unlock(&s->resize_lock);
}

/* ------------------------------------------------------------ readers */

static inline bool lull__key_ok(const lull_store *s, const void *key, size_t key_len)
{
    return s && key && key_len && key_len <= s->max_key_len;
}

/* A miss in the front index: ask cds_lfht, and put what it has back into
 * the index so the next lookup hits.  Out of line: the hit path stays short. */
static __attribute__((noinline)) const struct lull_snap *
lull__get_slow(lull_store *s, const void *key, size_t key_len, uint64_t hash)
{
    struct lull__key k = { key, key_len };
    struct cds_lfht_iter it;
    struct lull_node *node = lull__lookup(s, &k, hash, &it);
    if (!node || !lull__version(node))
        return NULL;        /* absent, or an insert not yet finalised */
    if (!lull__load_relaxed(&node->dead))
        lull__ix_install(&s->ix, node, hash, false);
    return &node->snap;
}

/* The lookup behind get and read, on input already checked and hashed;
 * inside a read-side section.  A hit in the front index linearizes at its
 * read of node->dead and is never a pending insert (see store_internal.h);
 * anything else asks cds_lfht. */
static inline const struct lull_snap *lull__get_hashed(lull_store *s, const void *key,
                                                       size_t key_len, uint64_t hash)
{
    /* Acquire: pairs with the release that published this index. */
    struct lull_node *node = lull__ix_find(lull__load_acquire(&s->ix), key, key_len, hash);
    if (lull__likely(node != NULL))
        return &node->snap;
    return lull__get_slow(s, key, key_len, hash);
}

static inline const struct lull_snap *lull__get(lull_store *s, const void *key, size_t key_len)
{
    return lull__get_hashed(s, key, key_len, lull__hash(key, key_len, &s->seed));
}

/* lull_store_get past its fast path, input checked and hashed: the whole
 * lookup.  Out of line, like lull__get_checked: the fast path stays short. */
static __attribute__((noinline)) const struct lull_snap *
lull__get_rest(lull_store *s, const void *key, size_t key_len, uint64_t hash)
{
    return lull__get_hashed(s, key, key_len, hash);
}

/* lull_store_get for input the fast path does not take: checked here. */
static __attribute__((noinline)) const struct lull_snap *
lull__get_checked(lull_store *s, const void *key, size_t key_len)
{
    if (!lull__key_ok(s, key, key_len))
        return NULL;
    return lull__get(s, key, key_len);
}

/* The fast path is a hit for a key of 8 to 16 bytes (the ids and tokens
 * servers use) in its home bucket: one bucket, no loop, no spills.
 * Anything else -- the second bucket, a dead node, a miss -- goes to
 * lull__get_rest, which repeats the index scan in full; other lengths
 * (and keys over max_key_len) and bad input to lull__get_checked.  A hit
 * needs no version test: a node in the index is never a pending insert
 * (store_internal.h). */
const struct lull_snap *lull_store_get(lull_store *s, const void *key, size_t key_len)
{
    if (lull__likely(s != NULL) && lull__likely(key != NULL) &&
        lull__likely(key_len - 8 < s->fast_len)) {
        if (key_len - 8 > 8)
            __builtin_unreachable();    /* fast_len <= 9: lets the hash and the
                                           key test take their 8..16 forms */
        uint64_t hash = lull__hash(key, key_len, &s->seed);
        /* Acquire: pairs with the release that published this index. */
        struct lull_node *node =
            lull__ix_find_first(lull__load_acquire(&s->ix), key, key_len, hash);
        if (lull__likely(node != NULL))
            return &node->snap;
        return lull__get_rest(s, key, key_len, hash);
    }
    return lull__get_checked(s, key, key_len);
}

int lull_store_read(lull_store *s, const void *key, size_t key_len,
                    void *buf, size_t cap, size_t *value_len, uint64_t *version)
{
    if (!lull__key_ok(s, key, key_len) || (!buf && cap))
        return -EINVAL;
    int rc = 0;
    lull_read_lock();
    const struct lull_snap *snap = lull__get(s, key, key_len);
    if (!snap) {
        rc = -ENOENT;
    } else {
        if (value_len)
            *value_len = snap->value_len;
        if (snap->value_len > cap) {
            rc = -ENOBUFS;
        } else {
            if (snap->value_len)
                memcpy(buf, snap->value, snap->value_len);
            if (version)
                *version = snap->version;
        }
    }
    lull_read_unlock();
    return rc;
}

int lull_store_foreach(lull_store *s, int (*fn)(const struct lull_snap *, void *), void *arg)
{
    if (!s || !fn)
        return -EINVAL;
    struct cds_lfht_iter it;
    struct lull_node *node;
    int rc = 0;
    lull_read_lock();
    lull__for_each_node(s->ht, &it, node) {
        if (!lull__version(node))
            continue;
        rc = fn(&node->snap, arg);
        if (rc)
            break;
    }
    lull_read_unlock();
    return rc;
}

size_t lull_store_count(lull_store *s)
{
    if (!s)
        return 0;
    long n = lull__load_relaxed(&s->nkeys);
    return n > 0 ? (size_t)n : 0;
}

/* ------------------------------------------------------------ the writer */

/* n is about to be unlinked (replace or del): readers that find it in the
 * front index must ask cds_lfht instead.  The unlink that follows
 * (cds_lfht_replace/del: a full-barrier cmpxchg) orders it before n leaves
 * the table, so a reader that reads dead == 0 read it while n was current
 * (release: a plain store on x86; it is the barrier that does the work).
 * When the unlink then fails, n had been unlinked by another writer: dead
 * was due anyway. */
static inline void lull__ix_dead(struct lull_node *n)
{
    lull__store_release(&n->dead, 1u);
}

/* Reserve room for one more key.  Relaxed: the count is a number, not a
 * publication; the table's own barriers order the insert itself. */
static bool lull__reserve(lull_store *s)
{
    if (!s->max_keys) {
        __atomic_fetch_add(&s->nkeys, 1, __ATOMIC_RELAXED);
        return true;
    }
    long n = lull__load_relaxed(&s->nkeys);
    do {
        if (n >= (long)s->max_keys)
            return false;
    } while (!__atomic_compare_exchange_n(&s->nkeys, &n, n + 1, true,
                                          __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return true;
}

static void lull__unreserve(lull_store *s)
{
    __atomic_fetch_sub(&s->nkeys, 1, __ATOMIC_RELAXED);
}

/*
 * The one write path.  put, put_if, delete, delete_if and update all come
 * here with their own fn.  @prefill: copy the current value into the
 * candidate before fn runs (update); put-like callers fill it themselves.
 * @cap_hint: value bytes to allocate the candidate with.  @publishes: false
 * for deletes, which need no candidate (and so never allocate).
 */
static int lull__write(lull_store *s, const void *key, size_t key_len,
                       lull_update_fn fn, void *arg, struct lull_update_info *info,
                       bool prefill, size_t cap_hint, bool publishes)
{
    const struct lull__key k = { key, key_len };
    const uint64_t hash = lull__hash(key, key_len, &s->seed);
    const uint64_t start = s->update_timeout_ns ? lull__now_ns() : 0;
    struct lull__wbuf w = { .max = s->max_value_len, .key_len = key_len };
    struct lull_update_info res = { LULL_UNCHANGED, 0, 0 };
    ck_backoff_t backoff = 1u << 4;
    bool grew = false;
    int rc;

    lull__defer_throttle();     /* retired snapshots stay bounded */
    for (;;) {
        struct cds_lfht_iter it;
        lull_read_lock();
        struct lull_node *cur = lull__lookup(s, &k, hash, &it);
        uint64_t cur_v = cur ? lull__finalize(s, cur, hash) : 0;
        size_t need = cur && prefill ? cur->snap.value_len : cap_hint;

        if (publishes && (!w.node || w.cap < need)) {
            lull__node_put(w.node);
            w.node = lull__node_alloc(key, key_len, need);
            if (!w.node) {
                rc = -ENOMEM;
                goto out_unlock;
            }
            w.cap = lull__node_cap(w.node);
        }
        w.buf.data = w.node ? (void *)w.node->snap.value : NULL;
        w.buf.len = 0;
        if (cur && prefill) {
            memcpy(w.buf.data, cur->snap.value, cur->snap.value_len);
            w.buf.len = cur->snap.value_len;
        }

        /* fn sees cur with the version this writer decided or adopted: a
         * pending insert's public version may not be stored yet by the
         * writer that won lull__finalize, so never read it plainly here.
         * The other fields were written before the node was published. */
        struct lull_snap cur_snap;
        if (cur) {
            cur_snap.key = cur->data;
            cur_snap.key_len = cur->snap.key_len;
            cur_snap.value = cur->snap.value;
            cur_snap.value_len = cur->snap.value_len;
            cur_snap.version = cur_v;
        }
        res.attempts++;
        rc = fn(cur ? &cur_snap : NULL, &w.buf, arg);
        if (rc < 0)
            goto out_unlock;
        if (rc == LULL_KEEP || (rc == LULL_REMOVE && !cur)) {
            res.outcome = LULL_UNCHANGED;
            res.version = cur_v;
            rc = 0;
            goto out_unlock;
        }
        if (rc == LULL_REMOVE) {
            lull__tomb_raise(s, hash, cur_v);
            lull__ix_dead(cur);
            if (cds_lfht_del(s->ht, &cur->ht) == 0) {
                lull__unreserve(s);
                lull__ix_unlinked(&s->ix, cur, hash);
                res.outcome = LULL_REMOVED;
                res.version = cur_v;
                rc = 0;
                goto out_unlock;
            }
        } else if (rc == LULL_PUBLISH) {
            /* fn may shrink next->len but not grow it past the candidate or
             * move data: only lull_buf_resize grows it. */
            if (w.buf.len > w.max) {
                rc = -EFBIG;
                goto out_unlock;
            }
            if (!w.node || w.buf.data != (void *)w.node->snap.value || w.buf.len > w.cap) {
                rc = -EINVAL;
                goto out_unlock;
            }
            if (cur) {
                uint64_t v = lull__next_version(cur_v);
                lull__seal(w.node, w.buf.len, v);
                lull__ix_dead(cur);
                if (cds_lfht_replace(s->ht, &it, (unsigned long)hash, lull__match, &k,
                                     &w.node->ht) == 0) {
                    /* The new node takes cur's slot, or an empty one
                     * before it; cur's removal pass takes out whatever
                     * is left of cur. */
                    lull__ix_install(&s->ix, w.node, hash, true);
                    lull__ix_unlinked(&s->ix, cur, hash);
                    w.node = NULL;
                    res.outcome = LULL_UPDATED;
                    res.version = v;
                    rc = 0;
                    goto out_unlock;
                }
            } else {
                if (!lull__reserve(s)) {
                    rc = -ENOSPC;
                    goto out_unlock;
                }
                lull__seal(w.node, w.buf.len, 0);   /* pending: readers see no key yet */
                struct cds_lfht_node *got = cds_lfht_add_unique(s->ht, (unsigned long)hash,
                                                                lull__match, &k, &w.node->ht);
                if (got == &w.node->ht) {
                    res.version = lull__finalize(s, w.node, hash);
                    lull__ix_install(&s->ix, w.node, hash, true);
                    res.outcome = LULL_INSERTED;
                    w.node = NULL;
                    grew = true;
                    rc = 0;
                    goto out_unlock;
                }
                lull__unreserve(s);
            }
        } else {
            rc = -EINVAL;   /* fn returned none of the documented values */
            goto out_unlock;
        }

        /* Another writer published this key first: back off, look again. */
        lull_read_unlock();
        if (s->update_timeout_ns && lull__now_ns() - start >= s->update_timeout_ns) {
            rc = -ETIMEDOUT;
            goto out;
        }
        ck_backoff_eb(&backoff);
        if (backoff > (1u << 12))
            backoff = 1u << 12;
    }

out_unlock:
    lull_read_unlock();
out:
    lull__node_put(w.node);
    if (rc == 0 && info)
        *info = res;
    else if (info)
        info->attempts = res.attempts;
    if (grew)
        lull__maybe_grow(s);
    return rc;
}

static inline int lull__check_value(const lull_store *s, const void *value, size_t value_len)
{
    if (!value && value_len)
        return -EINVAL;
    if (value_len > s->max_value_len)
        return -EFBIG;
    return 0;
}

struct lull__put_arg {
    const void *value;
    size_t value_len;
    uint64_t expected;
    bool conditional;
};

static int lull__put_fn(const struct lull_snap *cur, struct lull_buf *next, void *arg)
{
    const struct lull__put_arg *a = arg;
    if (a->conditional && (cur ? cur->version : 0) != a->expected)
        return -ESTALE;
    /* The candidate was allocated with value_len bytes (cap_hint). */
    next->len = a->value_len;
    if (a->value_len)
        memcpy(next->data, a->value, a->value_len);
    return LULL_PUBLISH;
}

static int lull__put(lull_store *s, const void *key, size_t key_len, const void *value,
                     size_t value_len, const struct lull__put_arg *a, uint64_t *version)
{
    if (!lull__key_ok(s, key, key_len))
        return -EINVAL;
    int rc = lull__check_value(s, value, value_len);
    if (rc)
        return rc;
    struct lull_update_info info;
    rc = lull__write(s, key, key_len, lull__put_fn, (void *)a, &info, false, value_len, true);
    if (rc == 0 && version)
        *version = info.version;
    return rc;
}

int lull_store_put(lull_store *s, const void *key, size_t key_len,
                   const void *value, size_t value_len, uint64_t *version)
{
    struct lull__put_arg a = { value, value_len, 0, false };
    return lull__put(s, key, key_len, value, value_len, &a, version);
}

int lull_store_put_if(lull_store *s, const void *key, size_t key_len,
                      const void *value, size_t value_len, uint64_t expected, uint64_t *version)
{
    struct lull__put_arg a = { value, value_len, expected, true };
    return lull__put(s, key, key_len, value, value_len, &a, version);
}

static int lull__delete_fn(const struct lull_snap *cur, struct lull_buf *next, void *arg)
{
    const struct lull__put_arg *a = arg;
    if (!cur)
        return -ENOENT;
    if (a->conditional && cur->version != a->expected)
        return -ESTALE;
    return LULL_REMOVE;
}

static int lull__delete(lull_store *s, const void *key, size_t key_len, const struct lull__put_arg *a)
{
    if (!lull__key_ok(s, key, key_len))
        return -EINVAL;
    return lull__write(s, key, key_len, lull__delete_fn, (void *)a, NULL, false, 0, false);
}

int lull_store_delete(lull_store *s, const void *key, size_t key_len)
{
    struct lull__put_arg a = { NULL, 0, 0, false };
    return lull__delete(s, key, key_len, &a);
}

int lull_store_delete_if(lull_store *s, const void *key, size_t key_len, uint64_t expected)
{
    struct lull__put_arg a = { NULL, 0, expected, true };
    return lull__delete(s, key, key_len, &a);
}

int lull_store_update(lull_store *s, const void *key, size_t key_len,
                      lull_update_fn fn, void *arg, struct lull_update_info *info)
{
    if (!lull__key_ok(s, key, key_len) || !fn)
        return -EINVAL;
    return lull__write(s, key, key_len, fn, arg, info, true, 0, true);
}

void lull__store_ix_stats(lull_store *s, size_t *slots, size_t *used)
{
    lull_read_lock();
    /* Acquire: pairs with the release that published this index. */
    lull__ixw t = lull__load_acquire(&s->ix);
    size_t n = 0;
    /* Relaxed: only counted, never dereferenced. */
    for (size_t i = 0; i <= lull__ixw_mask(t); i++)
        n += lull__load_relaxed(&lull__ixw_slots(t)[i].node) != NULL;
    *slots = lull__ixw_mask(t) + 1;
    *used = n;
    lull_read_unlock();
}

size_t lull__store_ix_bucket(lull_store *s, const void *key, size_t key_len)
{
    /* Acquire: pairs with the release that published this index (only its
     * size is read). */
    lull__ixw t = lull__load_acquire(&s->ix);
    return lull__ix_home(lull__hash(key, key_len, &s->seed), lull__ixw_mask(t)) / LULL_IX_BUCKET;
}

/* ------------------------------------------------------------ checker */

static unsigned long lull__bitrev(unsigned long v)
{
    unsigned long r = 0;
    for (unsigned i = 0; i < sizeof(v) * 8; i++, v >>= 1)
        r = (r << 1) | (v & 1);
    return r;
}

int lull_store_check(lull_store *s, FILE *out)
{
    if (!s)
        return -EINVAL;
    int bad = 0;
    long seen = 0;
    struct cds_lfht_iter it, it2;
    struct lull_node *node;

#define LULL_BAD(...) do { bad++; if (out) fprintf(out, "lull_store_check: " __VA_ARGS__); } while (0)
    lull_read_lock();
    lull__for_each_node(s->ht, &it, node) {
        uint64_t v = lull__version(node);
        if (!v)
            continue;           /* an insert in progress */
        seen++;
        const struct lull_snap *sn = &node->snap;
        if (sn->key != node->data || sn->value != node->data + lull__koff(sn->key_len))
            LULL_BAD("node %p: pointers do not point into the node\n", (void *)node);
        if (!sn->key_len || sn->key_len > s->max_key_len)
            LULL_BAD("node %p: key length %zu out of range\n", (void *)node, sn->key_len);
        if (sn->value_len > s->max_value_len)
            LULL_BAD("node %p: value length %zu over the limit\n", (void *)node, sn->value_len);
        uint64_t h = lull__hash(sn->key, sn->key_len, &s->seed);
        if (lull__bitrev(node->ht.reverse_hash) != (unsigned long)h)
            LULL_BAD("node %p: stored hash does not match its key\n", (void *)node);
        struct lull__key k = { sn->key, sn->key_len };
        if (lull__lookup(s, &k, h, &it2) != node)
            LULL_BAD("node %p: a lookup of its key finds another node (duplicate key)\n",
                     (void *)node);
        uint64_t hi = v >> LULL_WID_BITS, wid = v & LULL_WID_MAX;
        if (!hi || hi > lull__load_relaxed(&lull__wclock[wid].hi))
            LULL_BAD("node %p: version %llu was never issued by writer %llu\n", (void *)node,
                     (unsigned long long)v, (unsigned long long)wid);
    }
    /* The front index: every node in it is current (its owner removes it
     * before it retires it), and sits in its key's window. */
    /* Acquire: pairs with the release that published this index. */
    lull__ixw t = lull__load_acquire(&s->ix);
    const size_t mask = lull__ixw_mask(t);
    for (size_t i = 0; i <= mask; i++) {
        /* Acquire, as in lull__ix_find: the node's key is read below.
         * dead (acquire) and ixref (relaxed) are read only for their
         * values; writers are quiescent when the check means anything. */
        node = lull__load_acquire(&lull__ixw_slots(t)[i].node);
        if (!node)
            continue;
        const struct lull_snap *sn = &node->snap;
        if (lull__load_acquire(&node->dead) ||
            (lull__load_relaxed(&node->ixref) & LULL_IX_UNLINKED)) {
            LULL_BAD("index slot %zu: node %p was unlinked\n", i, (void *)node);
            continue;
        }
        uint64_t h = lull__hash(sn->key, sn->key_len, &s->seed);
        if (((i - lull__ix_home(h, mask)) & mask) >= LULL_IX_WINDOW)
            LULL_BAD("index slot %zu: node %p is outside its key's window\n", i, (void *)node);
        if (lull__ix_bucket(t, h) != &lull__ixw_slots(t)[lull__ix_home(h, mask)])
            LULL_BAD("index slot %zu: the fast path's home bucket for node %p is not its "
                     "window's\n", i, (void *)node);
        struct lull__key k = { sn->key, sn->key_len };
        if (lull__lookup(s, &k, h, &it2) != node)
            LULL_BAD("index slot %zu: node %p is not its key's node in the table\n", i,
                     (void *)node);
    }
    lull_read_unlock();
    long n = lull__load_relaxed(&s->nkeys);
    if (n != seen)
        LULL_BAD("counter says %ld keys, the table holds %ld\n", n, seen);
    if (s->max_keys && seen > (long)s->max_keys)
        LULL_BAD("%ld keys exceed max_keys %zu\n", seen, s->max_keys);
#undef LULL_BAD
    return bad;
}
