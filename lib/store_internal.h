/*
 * lib/store_internal.h - the store's node and its allocator (store_nodes.c).
 */
#ifndef LULL_STORE_INTERNAL_H
#define LULL_STORE_INTERNAL_H

#include "internal.h"

#include <lull/store.h>
#include <urcu/urcu-memb.h>
#include <urcu/rculfhash.h>

/* One published snapshot: everything a lookup touches is in it. */
struct lull_node {
    struct cds_lfht_node ht;        /* link in the table (liburcu's) */
    struct lull_snap snap;          /* what readers get; immutable once published */
    struct lull__deferred retire;   /* used once the node is unlinked */
    uint64_t fin;                   /* a pending insert's version, decided by CAS
                                       among writers (store.c: lull__finalize) */
    uint32_t cap;                   /* value bytes the allocation holds */
    uint8_t cls;                    /* size class (store_nodes.c) */
    unsigned char data[];           /* key, padding to 8, value */
};

static inline size_t lull__koff(size_t key_len)
{
    return (key_len + 7u) & ~(size_t)7u;
}

/* A node for a key of key_len bytes and a value of at least cap bytes, from
 * the calling thread's cache, the shared pool or malloc.  node->cap says how
 * much value it really holds.  Only the header fields cap and cls are set.
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
