/* bench/baselines/chain.c - the chained table's allocation and growth. */
#include "chain.h"

#include <errno.h>
#include <stdlib.h>

int bl_table_init(struct bl_table *t, size_t expected)
{
    size_t n = 16;
    while (n < expected)
        n <<= 1;
    t->buckets = calloc(n, sizeof *t->buckets);
    if (!t->buckets)
        return -ENOMEM;
    t->mask = n - 1;
    t->count = 0;
    return 0;
}

void bl_table_fini(struct bl_table *t)
{
    if (!t->buckets)
        return;
    for (size_t i = 0; i <= t->mask; i++) {
        struct bl_node *n = t->buckets[i];
        while (n) {
            struct bl_node *next = n->next;
            free(n);
            n = next;
        }
    }
    free(t->buckets);
    t->buckets = NULL;
}

struct bl_node *bl_node_new(uint64_t hash, const void *key, size_t klen, const void *val,
                            size_t vlen)
{
    struct bl_node *n = malloc(sizeof *n + bl_node_voff((uint32_t)klen) + vlen);
    if (!n)
        return NULL;
    n->next = NULL;
    n->hash = hash;
    n->klen = (uint32_t)klen;
    n->vlen = (uint32_t)vlen;
    memcpy(n->data, key, klen);
    if (vlen)
        memcpy(bl_node_value(n), val, vlen);
    return n;
}

static void grow(struct bl_table *t)
{
    size_t n = (t->mask + 1) * 2;
    struct bl_node **b = calloc(n, sizeof *b);
    if (!b)
        return;   /* keep the longer chains: still correct */
    for (size_t i = 0; i <= t->mask; i++) {
        struct bl_node *x = t->buckets[i];
        while (x) {
            struct bl_node *next = x->next;
            x->next = b[x->hash & (n - 1)];
            b[x->hash & (n - 1)] = x;
            x = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->mask = n - 1;
}

void bl_table_add(struct bl_table *t, struct bl_node *n)
{
    struct bl_node **head = &t->buckets[n->hash & t->mask];
    n->next = *head;
    *head = n;
    if (++t->count > t->mask + 1)
        grow(t);
}
