/*
 * bench/baselines/chain.h - a chained hash table with no locking of its own:
 * the core of the rwlock map, the mutex map and the mutex registry.
 *
 * What a careful engineer writes: power-of-two buckets, the full hash kept in
 * each node (a mismatch costs no key compare), key and value in the node's
 * one allocation, doubling when the load passes 1.  The caller locks.
 */
#ifndef LULL_BENCH_CHAIN_H
#define LULL_BENCH_CHAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct bl_node {
    struct bl_node *next;
    uint64_t hash;
    uint32_t klen, vlen;
    unsigned char data[];     /* key, then value (8-byte aligned) */
};

static inline size_t bl_node_voff(uint32_t klen) { return ((size_t)klen + 7) & ~(size_t)7; }
static inline void *bl_node_value(struct bl_node *n) { return n->data + bl_node_voff(n->klen); }

struct bl_table {
    struct bl_node **buckets;
    size_t mask;
    size_t count;
};

int  bl_table_init(struct bl_table *t, size_t expected);   /* 0 or -ENOMEM */
void bl_table_fini(struct bl_table *t);                     /* frees every node */
struct bl_node *bl_node_new(uint64_t hash, const void *key, size_t klen, const void *val,
                            size_t vlen);

static inline struct bl_node **bl_table_slot(const struct bl_table *t, uint64_t hash,
                                             const void *key, size_t klen)
{
    struct bl_node **pp = &t->buckets[hash & t->mask];
    for (struct bl_node *n = *pp; n; pp = &n->next, n = *pp) {
        if (n->hash == hash && n->klen == klen && memcmp(n->data, key, klen) == 0)
            return pp;
    }
    return pp;   /* *pp == NULL: the tail of the chain */
}

static inline struct bl_node *bl_table_find(const struct bl_table *t, uint64_t hash,
                                            const void *key, size_t klen)
{
    return *bl_table_slot(t, hash, key, klen);
}

/* Adds n (its key must be absent); grows the table when the load passes 1. */
void bl_table_add(struct bl_table *t, struct bl_node *n);

#endif /* LULL_BENCH_CHAIN_H */
