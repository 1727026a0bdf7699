/*
 * lib/store_internal.h - the store's node and its allocator (store_nodes.c).
 */
#ifndef LULL_STORE_INTERNAL_H
#define LULL_STORE_INTERNAL_H

#include "internal.h"

#include <lull/store.h>
#include <string.h>
#include <urcu/urcu-memb.h>
#include <urcu/rculfhash.h>

/* Key equality without a call for the short keys servers use (ids,
 * session tokens): two overlapping loads from each end cover 4..16 bytes. */
static inline bool lull__key_eq(const unsigned char *a, const unsigned char *b, size_t n)
{
    uint64_t x0, x1, y0, y1;
    if (n >= 8 && n <= 16) {
        memcpy(&x0, a, 8);
        memcpy(&y0, b, 8);
        memcpy(&x1, a + n - 8, 8);
        memcpy(&y1, b + n - 8, 8);
        return ((x0 ^ y0) | (x1 ^ y1)) == 0;
    }
    if (n >= 4 && n < 8) {
        uint32_t u0, u1, v0, v1;
        memcpy(&u0, a, 4);
        memcpy(&v0, b, 4);
        memcpy(&u1, a + n - 4, 4);
        memcpy(&v1, b + n - 4, 4);
        return ((u0 ^ v0) | (u1 ^ v1)) == 0;
    }
    return memcmp(a, b, n) == 0;
}

/*
 * One published snapshot, laid out for the reader:
 *
 *   0        retire, fin      writers only, after unlink / while pending
 *   48       ht               the cds_lfht chain walk: hash and link
 *   64       dead, ixref      the front index's flags (store_index.c)
 *   72       snap             key pointer, lengths, version
 *   112      key, value       a 16-byte key, then the value
 *
 * What a hit through the front index reads -- dead through the first 8
 * value bytes of a key of up to 16 bytes -- is 72 contiguous bytes from
 * offset 64; malloc's 16-byte alignment puts them in two 64-byte lines
 * whatever the address (they start at most 48 bytes into a line).  A hit
 * through cds_lfht reads 88 bytes from ht (two lines for three alignments of
 * four).  A lookup that walks past a node in a chain reads only ht.  The
 * capacity lives in retire's spare word (lull__node_cap).
 */
struct lull_node {
    struct lull__deferred retire;   /* used once the node is unlinked; .aux: capacity */
    uint64_t fin;                   /* a pending insert's version, decided by CAS
                                       among writers (store.c: lull__finalize) */
    struct cds_lfht_node ht;        /* link in the table (liburcu's) */
    uint32_t dead;                  /* 1 once a writer is about to unlink it: readers
                                       that find it in the front index must not use it */
    uint32_t ixref;                 /* front-index installers in flight, and
                                       LULL_IX_UNLINKED (store_index.c) */
    struct lull_snap snap;          /* what readers get; immutable once published */
    unsigned char data[];           /* key, padding to 8, value */
};
_Static_assert(offsetof(struct lull_node, ht) == 48 && offsetof(struct lull_node, dead) == 64 &&
               offsetof(struct lull_node, snap) == 72 && sizeof(struct lull_node) == 112,
               "lull_node: the hot fields must stay together (see above)");

/* Value bytes the node's allocation holds. */
static inline size_t lull__node_cap(const struct lull_node *n)
{
    return n->retire.aux;
}

static inline size_t lull__koff(size_t key_len)
{
    return (key_len + 7u) & ~(size_t)7u;
}

/* A node for a key of key_len bytes and a value of at least cap bytes, from
 * the calling thread's cache, the shared pool or malloc.  lull__node_cap
 * says how much value it really holds; snap.key_len must be set to key_len
 * before the node goes back (put or retire): its class is derived from both.
 * NULL: out of memory (also when lull__fault_arm says so). */
struct lull_node *lull__node_get(size_t key_len, size_t cap);

/* A node that was never published: reusable at once. */
void lull__node_put(struct lull_node *n);

/* A node that was published and is now unlinked: reusable after a grace
 * period (batched through lull__defer). */
void lull__node_retire(struct lull_node *n);

/* Free a node now (it was unlinked and a grace period has passed). */
void lull__node_free(struct lull_node *n);

/* Hand the shared pools and the calling thread's cache back to malloc. */
void lull__node_trim(void);

/*
 * The front index (store_index.c): an open-addressed table of node
 * pointers in front of cds_lfht, so that a hit reads one line of index and
 * the node, instead of cds_lfht's bucket array, dummy node and chain.  It is
 * a cache: cds_lfht stays the authority, and a key may be missing from the
 * index (its window was full, or an install lost a race); a reader that
 * misses falls back to cds_lfht and puts what it found back.
 *
 * Buckets of four 16-byte slots, one cache line each; a key lives in the
 * eight slots of its bucket and the next (its window).  A slot holds a tag
 * (the key's 64-bit hash: a hint, never trusted) and a node pointer (the
 * truth: a reader compares the node's key).
 *
 * The rules that make a hit linearizable and safe:
 *  - a writer sets n->dead before it unlinks n from cds_lfht (ordered by the
 *    unlink's full barrier); a reader that finds n in the index and reads
 *    dead == 0 (acquire) read it while n was current: the hit linearizes
 *    there.  dead == 1: the reader asks cds_lfht instead.
 *  - n is handed to RCU only once it is in no slot of the current index and
 *    can never be put back.  Installs are counted in n->ixref; the writer
 *    that unlinked n sets LULL_IX_UNLINKED in it, after which no install may
 *    start; whoever brings ixref to exactly LULL_IX_UNLINKED (the unlinker if
 *    no install was in flight, else the last installer) removes n from the
 *    index and retires it.  So a delayed installer never leaves a pointer to
 *    a node after its grace period has begun.
 *  - a node in the index is never a pending insert: lull__ix_place puts a
 *    node into a slot only after it has read (acquire) the node's version
 *    set, and the slot's release store carries that to the reader's
 *    acquire load.  So a hit needs no version test.  (That the installer
 *    finalized the insert is not enough: a writer that loses
 *    lull__finalize's race returns the winner's version from the private
 *    fin word before the winner has stored it in snap.version.)
 */
#define LULL_IX_UNLINKED (1u << 31)
#define LULL_IX_BUCKET   4u          /* slots a bucket (one cache line) */
#define LULL_IX_WINDOW   (2 * LULL_IX_BUCKET)  /* slots a key may live in: two buckets */

struct lull__ixslot {
    uint64_t tag;                    /* the key's hash (relaxed: a hint) */
    struct lull_node *node;          /* release by installers, acquire by readers */
};
_Static_assert(LULL_IX_BUCKET == 4 && LULL_IX_BUCKET * sizeof(struct lull__ixslot) == 64,
               "a bucket is one cache line; lull__ix_tags and lull__ix_find_first "
               "handle its four slots by hand");

/* The index as the store holds it: one word, the slots' address (64-byte
 * aligned), so that a lookup loads one thing before the bucket.  Replaced
 * whole when the index grows (release store, acquire loads).  Its size
 * sits just before the slots, in a header written before the index is
 * published and never after: a lookup's read of it depends on the word
 * only, not on the key's hash, and runs while the hash is computed. */
typedef uintptr_t lull__ixw;

struct lull__ixhead {
    size_t bytemask;        /* (buckets - 1) * 64: lull__ix_bucket */
    void *raw;              /* the allocation, for lull__ix_free */
};

static inline struct lull__ixslot *lull__ixw_slots(lull__ixw w)
{
    return (struct lull__ixslot *)w;
}

static inline const struct lull__ixhead *lull__ixw_head(lull__ixw w)
{
    return (const struct lull__ixhead *)w - 1;
}

/* slots - 1, from bytemask ((slots / 4 - 1) * 64): off the hot path. */
static inline size_t lull__ixw_mask(lull__ixw w)
{
    return (lull__ixw_head(w)->bytemask >> 4) + (LULL_IX_BUCKET - 1);
}

/* The first slot of the bucket a hash selects (the bucket after it:
 * lull__ix_home(hash + 1, mask)); a key's window is the eight slots from
 * its home. */
static inline size_t lull__ix_home(uint64_t hash, size_t mask)
{
    return ((size_t)hash * LULL_IX_BUCKET) & mask;
}

/* The same home bucket, as lull__ix_find_first computes it: its byte
 * offset in one shift and one mask.  (hash * 4 & mask) * 16 keeps bits 6
 * and up of hash * 64, below the index's size, which is what bytemask
 * keeps; lull__store_check holds every node in the index to both. */
static inline const struct lull__ixslot *lull__ix_bucket(lull__ixw w, uint64_t hash)
{
    return (const struct lull__ixslot *)(w + (((uintptr_t)hash << 6) & lull__ixw_head(w)->bytemask));
}

/* Which of a bucket's four slots carry this tag (bit j: slot j).  The tags
 * are compared without branching: where in its bucket a key sits is random,
 * and a branch per slot mispredicted on most lookups (10 ns of a 25 ns get);
 * "some tag matched" is predictable. */
static inline unsigned lull__ix_tags(const struct lull__ixslot *b, uint64_t hash)
{
    /* Relaxed: the tag only filters; the node's key decides. */
    return (unsigned)(lull__load_relaxed(&b[0].tag) == hash) |
           (unsigned)(lull__load_relaxed(&b[1].tag) == hash) << 1 |
           (unsigned)(lull__load_relaxed(&b[2].tag) == hash) << 2 |
           (unsigned)(lull__load_relaxed(&b[3].tag) == hash) << 3;
}

/* n, read (acquire) from a slot, if it holds key and is not yet
 * superseded; NULL otherwise. */
static inline struct lull_node *lull__ix_node_hit(struct lull_node *n, const void *key,
                                                  size_t key_len)
{
    if (!n || n->snap.key_len != key_len || !lull__key_eq(n->data, key, key_len))
        return NULL;
    /* Acquire: read after the slot; dead is set once, before the unlink, so
     * 0 here means n was current at this load. */
    return lull__load_acquire(&n->dead) ? NULL : n;
}

/* The node in slot b, if it holds key and is not yet superseded. */
static inline struct lull_node *lull__ix_slot_hit(const struct lull__ixslot *b,
                                                  const void *key, size_t key_len)
{
    /* Acquire: pairs with the installer's release store (lull__ix_place):
     * the node's key, lengths and value are visible. */
    return lull__ix_node_hit(lull__load_acquire(&b->node), key, key_len);
}

/* A hit in the index: the node holding key, not yet superseded, or NULL
 * (not in the index, or superseded: ask cds_lfht).  Inside a read-side
 * section; w loaded (acquire) from the store inside the same section. */
static inline struct lull_node *lull__ix_find(lull__ixw w, const void *key, size_t key_len,
                                              uint64_t hash)
{
    const struct lull__ixslot *slot = lull__ixw_slots(w);
    const size_t mask = lull__ixw_mask(w);
    /* The window: the home bucket's line, then the next bucket's. */
    for (unsigned half = 0; half < LULL_IX_WINDOW / LULL_IX_BUCKET; half++) {
        const struct lull__ixslot *b = &slot[lull__ix_home(hash + half, mask)];
        for (unsigned m = lull__ix_tags(b, hash); m; m &= m - 1) {
            struct lull_node *n = lull__ix_slot_hit(&b[__builtin_ctz(m)], key, key_len);
            if (n)
                return n;
        }
    }
    return NULL;
}

/* lull__ix_find's common case alone: the key's node, if it sits in its
 * home bucket.  NULL is "not here", not "absent": the caller then does the
 * whole lookup.  The slot is picked with selects, not a mask and a bit
 * scan: the node pointer is then ready a few cycles after the line, and
 * the node's line is the miss that follows.  Slot 3 needs no tag test: it
 * is the pick when no other tag matches, and then its node's key (or a
 * NULL slot) says no -- a tag is only ever a hint.  The price is that a
 * key outside its home bucket (up to 1.7% of keys, by the index's load:
 * below) reads another key's node before lull__get_rest.  Loading and
 * picking one slot at a time keeps two pointers live, not four, and
 * lull_store_get then saves one register instead of three. */
static inline struct lull_node *lull__ix_find_first(lull__ixw w, const void *key,
                                                    size_t key_len, uint64_t hash)
{
    const struct lull__ixslot *b = lull__ix_bucket(w, hash);
    /* Acquire, all four: pairs with the installer's release store
     * (lull__ix_place) for whichever is picked.  Relaxed tags: hints. */
    struct lull_node *n = lull__load_acquire(&b[3].node);
    struct lull_node *m = lull__load_acquire(&b[2].node);
    n = lull__load_relaxed(&b[2].tag) == hash ? m : n;
    m = lull__load_acquire(&b[1].node);
    n = lull__load_relaxed(&b[1].tag) == hash ? m : n;
    m = lull__load_acquire(&b[0].node);
    n = lull__load_relaxed(&b[0].tag) == hash ? m : n;
    return lull__ix_node_hit(n, key, key_len);
}

/*
 * How full the index may get.  A new index has at least 8/3 slots a key
 * (1.5 keys a bucket at most; a power of two, at least 8 slots), and the
 * store replaces it by a larger one once its keys pass 3/8 of its slots:
 * so it holds 0.75 to 1.5 keys a bucket and costs 43-85 bytes a key.
 * The bound is set by the keys that miss their home bucket -- each one
 * costs a get the general path, and a full window costs it cds_lfht.  With
 * random hashes (a simulation of this placement):
 *
 *   keys a bucket      0.75    1.0     1.5     2.0
 *   second bucket      0.1%    0.5%    1.7%    3.5%
 *   window full        0       0.01%   0.1%    0.75%
 *
 * At 2 keys a bucket (the bound before, 32-64 bytes a key), a hot get at
 * two threads took 1.06x as long (docs/performance.md, "The index's load").
 */
#define LULL_IX_SLOTS_NUM 8u         /* a new index: slots >= keys * 8 / 3 */
#define LULL_IX_SLOTS_DEN 3u

/* The key count past which the store replaces index w (3/8 of its slots). */
static inline size_t lull__ix_grow_at(lull__ixw w)
{
    return (lull__ixw_mask(w) + 1) * LULL_IX_SLOTS_DEN / LULL_IX_SLOTS_NUM;
}

/* A new index for about `keys` keys (above: slots >= keys * 8 / 3, a power
 * of two, at least 8), all slots empty; 0: out of memory. */
lull__ixw lull__ix_new(size_t keys);
void lull__ix_free(lull__ixw w);

/* Put n, current when the caller found it, into the index *where (loaded
 * here); inside a read-side section.  @ref: the caller already holds an
 * install reference (the publisher's, set by the allocation), which this
 * drops; without one (a reader's repair), a scan with loads only comes
 * first, and n's line is written only if the install would change the
 * index.  Never fails: no room in the window leaves n in cds_lfht only. */
void lull__ix_install(const lull__ixw *where, struct lull_node *n, uint64_t hash,
                      bool ref);

/* The one writer whose cds_lfht replace/del unlinked n: from here n may not
 * be installed again, and n goes to RCU (lull__node_retire) as soon as no
 * install is in flight -- now, or by the last installer. */
void lull__ix_unlinked(const lull__ixw *where, struct lull_node *n, uint64_t hash);

/* Tests: how many times a growing table kept its old index because the new
 * one could not be allocated (the write that grew it still succeeded). */
extern unsigned long lull__ix_grow_skips;

/* Tests: called by lull__ix_install after it has taken its reference and
 * before it places the node (NULL: nothing).  Lets a test stop or delay an
 * installer there; returning false makes this install place nothing (as
 * when the window is full), so that later lookups miss and repair. */
extern bool (*lull__ix_test_hook)(struct lull_node *n);

/* Tests: called by lull__finalize (store.c) on a pending insert: before its
 * CAS (won false), and by the writer that won it between the CAS and its
 * store of snap.version (won true).  Lets a test stop the winner there while
 * a loser goes on to install the node (NULL: nothing). */
extern void (*lull__finalize_test_hook)(struct lull_node *n, bool won);

/* Tests: how many times the last installer, not the unlinker, removed and
 * retired a node (the rare path of the protocol above). */
extern unsigned long lull__ix_late_owners;

/* Tests and benchmarks: slots in the store's current front index, and how
 * many hold a node.  Inside or outside a section; a snapshot. */
void lull__store_ix_stats(lull_store *s, size_t *slots, size_t *used);

/* Tests: the home bucket of a key in the store's current front index (its
 * window is that bucket and the next). */
size_t lull__store_ix_bucket(lull_store *s, const void *key, size_t key_len);

#endif
