/*
 * bench/baselines/lockmap.h - "the lock I'd write myself": a chained hash
 * map behind one pthread_rwlock_t (bl_rwmap) or one pthread_mutex_t
 * (bl_mxmap).  Same table, same hash (hash.h); only the lock differs.
 *
 * Reads copy the value out under the lock, as lull_store_read does (a
 * pointer into the map would be unsafe once the lock is dropped).  Updates
 * run fn on the value in place under the write lock: no allocation, the
 * cheapest correct read-modify-write a locked map can offer.  The lock sits
 * on a cache line of its own.
 */
#ifndef LULL_BENCH_LOCKMAP_H
#define LULL_BENCH_LOCKMAP_H

#include <stddef.h>

typedef int (*bl_update_fn)(void *value, size_t vlen, void *arg);

#define BL_LOCKMAP_API(prefix)                                                          \
    struct prefix;                                                                      \
    struct prefix *prefix##_create(size_t expected);                                    \
    void prefix##_destroy(struct prefix *m);                                            \
    /* insert or replace: 0, -ENOMEM */                                                 \
    int prefix##_put(struct prefix *m, const void *key, size_t klen, const void *val,  \
                     size_t vlen);                                                      \
    /* copy out: 0, -ENOENT, -ENOBUFS (*vlen set) */                                   \
    int prefix##_read(struct prefix *m, const void *key, size_t klen, void *buf,       \
                      size_t cap, size_t *vlen);                                        \
    /* fn(value, vlen, arg) in place under the write lock: its return, or -ENOENT */   \
    int prefix##_update(struct prefix *m, const void *key, size_t klen, bl_update_fn fn, \
                        void *arg);                                                     \
    size_t prefix##_count(struct prefix *m);

BL_LOCKMAP_API(bl_rwmap)
BL_LOCKMAP_API(bl_mxmap)

#endif /* LULL_BENCH_LOCKMAP_H */
