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
 *   48       ht               the chain walk: hash and link
 *   64       snap             key pointer, lengths, version
 *   104      key, value       a 16-byte key, then the value
 *
 * What a hit reads -- ht through the first 8 value bytes of a key of up to
 * 16 bytes -- is 80 contiguous bytes from offset 48; malloc's 16-byte
 * alignment puts them in two 64-byte lines whatever the address (they
 * start at most 48 bytes into a line).  Before, ht and snap came first and
 * the key after the cold fields: 136 bytes, three lines.  A lookup that
 * walks past a node reads only ht.  The capacity lives in retire's spare
 * word (lull__node_cap).
 */
struct lull_node {
    struct lull__deferred retire;   /* used once the node is unlinked; .aux: capacity */
    uint64_t fin;                   /* a pending insert's version, decided by CAS
                                       among writers (store.c: lull__finalize) */
    struct cds_lfht_node ht;        /* link in the table (liburcu's) */
    struct lull_snap snap;          /* what readers get; immutable once published */
    unsigned char data[];           /* key, padding to 8, value */
};
_Static_assert(offsetof(struct lull_node, ht) == 48 && offsetof(struct lull_node, snap) == 64,
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

#endif
