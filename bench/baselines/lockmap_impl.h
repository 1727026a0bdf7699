/*
 * bench/baselines/lockmap_impl.h - the body of both locked maps.  Included by
 * rwmap.c and mxmap.c after they define:
 *   BL_MAP  the struct / prefix name;  BL_LOCK_T  the lock type;
 *   BL_LOCK_INIT(l) BL_LOCK_FINI(l) BL_RDLOCK(l) BL_WRLOCK(l) BL_UNLOCK(l)
 */
#include "chain.h"
#include "hash.h"
#include "lockmap.h"

#include <errno.h>
#include <stdalign.h>
#include <stdlib.h>

#define BL_CAT2(a, b) a##b
#define BL_CAT(a, b)  BL_CAT2(a, b)
#define BL_F(name)    BL_CAT(BL_MAP, name)

struct BL_MAP {
    alignas(64) BL_LOCK_T lock;
    alignas(64) struct bl_table t;
};

struct BL_MAP *BL_F(_create)(size_t expected)
{
    struct BL_MAP *m = aligned_alloc(64, sizeof *m);
    if (!m)
        return NULL;
    if (bl_table_init(&m->t, expected)) {
        free(m);
        return NULL;
    }
    BL_LOCK_INIT(&m->lock);
    return m;
}

void BL_F(_destroy)(struct BL_MAP *m)
{
    if (!m)
        return;
    bl_table_fini(&m->t);
    BL_LOCK_FINI(&m->lock);
    free(m);
}

int BL_F(_put)(struct BL_MAP *m, const void *key, size_t klen, const void *val, size_t vlen)
{
    uint64_t h = bl_hash(key, klen);
    /* allocate outside the lock; most puts in a server replace a value */
    struct bl_node *fresh = bl_node_new(h, key, klen, val, vlen);
    if (!fresh)
        return -ENOMEM;
    struct bl_node *old = NULL;
    BL_WRLOCK(&m->lock);
    struct bl_node **pp = bl_table_slot(&m->t, h, key, klen);
    if (*pp) {
        old = *pp;
        fresh->next = old->next;
        *pp = fresh;
    } else {
        bl_table_add(&m->t, fresh);
    }
    BL_UNLOCK(&m->lock);
    free(old);
    return 0;
}

int BL_F(_read)(struct BL_MAP *m, const void *key, size_t klen, void *buf, size_t cap,
                size_t *vlen)
{
    uint64_t h = bl_hash(key, klen);
    int rc;
    BL_RDLOCK(&m->lock);
    struct bl_node *n = bl_table_find(&m->t, h, key, klen);
    if (!n) {
        rc = -ENOENT;
    } else {
        if (vlen)
            *vlen = n->vlen;
        if (n->vlen > cap) {
            rc = -ENOBUFS;
        } else {
            memcpy(buf, bl_node_value(n), n->vlen);
            rc = 0;
        }
    }
    BL_UNLOCK(&m->lock);
    return rc;
}

int BL_F(_update)(struct BL_MAP *m, const void *key, size_t klen, bl_update_fn fn, void *arg)
{
    uint64_t h = bl_hash(key, klen);
    int rc;
    BL_WRLOCK(&m->lock);
    struct bl_node *n = bl_table_find(&m->t, h, key, klen);
    rc = n ? fn(bl_node_value(n), n->vlen, arg) : -ENOENT;
    BL_UNLOCK(&m->lock);
    return rc;
}

size_t BL_F(_count)(struct BL_MAP *m)
{
    BL_RDLOCK(&m->lock);
    size_t n = m->t.count;
    BL_UNLOCK(&m->lock);
    return n;
}
