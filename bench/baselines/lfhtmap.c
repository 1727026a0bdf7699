/* bench/baselines/lfhtmap.c - raw cds_lfht, memb flavour (see lfhtmap.h). */
#define _LGPL_SOURCE 1
#include "lfhtmap.h"
#include "hash.h"

#include <errno.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <urcu/urcu-memb.h>
#include <urcu/rculfhash.h>

struct bl_lfht {
    struct cds_lfht *ht;
};

struct lnode {
    struct cds_lfht_node node;
    uint32_t klen, vlen;
    unsigned char data[];   /* key, then value at an 8-byte offset */
};

struct lkey {
    const void *p;
    size_t len;
};

/* node is the first member: a cast, not container_of (which trips
 * -Wcast-align through its char * arithmetic). */
_Static_assert(offsetof(struct lnode, node) == 0, "node must come first");
static inline struct lnode *L(struct cds_lfht_node *n) { return (struct lnode *)(void *)n; }

static inline size_t voff(uint32_t klen) { return ((size_t)klen + 7) & ~(size_t)7; }

static int match(struct cds_lfht_node *node, const void *key)
{
    const struct lnode *n = L(node);
    const struct lkey *k = key;
    return n->klen == k->len && memcmp(n->data, k->p, k->len) == 0;
}

static __thread bool registered_here;

void bl_rcu_thread_enter(void)
{
    if (!URCU_TLS(urcu_memb_reader).registered) {
        urcu_memb_register_thread();
        registered_here = true;
    }
}

void bl_rcu_thread_leave(void)
{
    if (registered_here) {
        urcu_memb_unregister_thread();
        registered_here = false;
    }
}

struct bl_lfht *bl_lfht_create(size_t expected)
{
    unsigned long n = 64;
    while (n < expected)
        n <<= 1;
    struct bl_lfht *m = malloc(sizeof *m);
    if (!m)
        return NULL;
    /* Sized once for the keys, never resized: a known max_nr_buckets makes
     * liburcu use its mmap back-end, where a bucket is one array index away
     * (max 0 would pick the "order" back-end, a little slower per lookup). */
    m->ht = cds_lfht_new_flavor(n, n, n, 0, &urcu_memb_flavor, NULL);
    if (!m->ht) {
        free(m);
        return NULL;
    }
    return m;
}

void bl_lfht_destroy(struct bl_lfht *m)
{
    if (!m)
        return;
    bl_rcu_thread_enter();
    struct cds_lfht_iter it;
    struct cds_lfht_node *node;
    struct lnode **dead = NULL;
    size_t ndead = 0, cap = 0;
    urcu_memb_read_lock();
    cds_lfht_for_each(m->ht, &it, node) {
        if (ndead == cap) {
            size_t ncap = cap ? cap * 2 : 1024;
            struct lnode **d = realloc(dead, ncap * sizeof *d);
            if (!d)
                break;   /* leak the rest rather than crash: teardown only */
            dead = d;
            cap = ncap;
        }
        if (cds_lfht_del(m->ht, node) == 0)
            dead[ndead++] = L(node);
    }
    urcu_memb_read_unlock();
    urcu_memb_synchronize_rcu();
    for (size_t i = 0; i < ndead; i++)
        free(dead[i]);
    free(dead);
    cds_lfht_destroy(m->ht, NULL);
    free(m);
    bl_rcu_thread_leave();
}

int bl_lfht_put(struct bl_lfht *m, const void *key, size_t klen, const void *val, size_t vlen)
{
    struct lnode *n = malloc(sizeof *n + voff((uint32_t)klen) + vlen);
    if (!n)
        return -ENOMEM;
    n->klen = (uint32_t)klen;
    n->vlen = (uint32_t)vlen;
    memcpy(n->data, key, klen);
    memcpy(n->data + voff(n->klen), val, vlen);
    cds_lfht_node_init(&n->node);
    struct lkey k = {key, klen};
    urcu_memb_read_lock();
    struct cds_lfht_node *old = cds_lfht_add_replace(m->ht, bl_hash(key, klen), match, &k,
                                                     &n->node);
    urcu_memb_read_unlock();
    if (old) {
        urcu_memb_synchronize_rcu();   /* setup only: simplest safe free */
        free(L(old));
    }
    return 0;
}

uint64_t bl_lfht_get_touch(struct bl_lfht *m, const void *key, size_t klen)
{
    struct lkey k = {key, klen};
    struct cds_lfht_iter it;
    uint64_t v = 0;
    urcu_memb_read_lock();
    cds_lfht_lookup(m->ht, bl_hash(key, klen), match, &k, &it);
    struct cds_lfht_node *node = cds_lfht_iter_get_node(&it);
    if (node) {
        struct lnode *n = L(node);
        memcpy(&v, n->data + voff(n->klen), sizeof v);
    }
    urcu_memb_read_unlock();
    return v;
}

int bl_lfht_read(struct bl_lfht *m, const void *key, size_t klen, void *buf, size_t cap,
                 size_t *vlen)
{
    struct lkey k = {key, klen};
    struct cds_lfht_iter it;
    int rc;
    urcu_memb_read_lock();
    cds_lfht_lookup(m->ht, bl_hash(key, klen), match, &k, &it);
    struct cds_lfht_node *node = cds_lfht_iter_get_node(&it);
    if (!node) {
        rc = -ENOENT;
    } else {
        struct lnode *n = L(node);
        if (vlen)
            *vlen = n->vlen;
        if (n->vlen > cap) {
            rc = -ENOBUFS;
        } else {
            memcpy(buf, n->data + voff(n->klen), n->vlen);
            rc = 0;
        }
    }
    urcu_memb_read_unlock();
    return rc;
}
