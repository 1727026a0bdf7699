/*
 * bench/baselines/lfhtmap.h - raw cds_lfht lookups (liburcu 0.13, memb
 * flavour): the floor for the store's read path.  Nothing but what any
 * careful user of liburcu writes: one node per key with key and value
 * inline, the same hash as the locked maps (hash.h), the read-side lock
 * inlined (_LGPL_SOURCE), the table sized for the keys up front and never
 * resized (liburcu's fastest bucket back-end).
 *
 * Writes are for setup only (no versions, no concurrent-update story: that
 * is what lull adds on top).  Threads must call bl_rcu_thread_enter() before
 * a lookup and bl_rcu_thread_leave() before they exit.
 */
#ifndef LULL_BENCH_LFHTMAP_H
#define LULL_BENCH_LFHTMAP_H

#include <stddef.h>
#include <stdint.h>

struct bl_lfht;

struct bl_lfht *bl_lfht_create(size_t expected);
void bl_lfht_destroy(struct bl_lfht *m);     /* no other thread may use m */
int  bl_lfht_put(struct bl_lfht *m, const void *key, size_t klen, const void *val,
                 size_t vlen);               /* setup only: 0, -ENOMEM */

/* Zero-copy: read lock, lookup, load the value's first 8 bytes, unlock.
 * Returns those bytes (0 when absent). */
uint64_t bl_lfht_get_touch(struct bl_lfht *m, const void *key, size_t klen);

/* Copy out, as lull_store_read: 0, -ENOENT, -ENOBUFS (*vlen set). */
int bl_lfht_read(struct bl_lfht *m, const void *key, size_t klen, void *buf, size_t cap,
                 size_t *vlen);

/* Register the calling thread with urcu-memb unless it is already (by lull,
 * say); leave unregisters only a registration enter made. */
void bl_rcu_thread_enter(void);
void bl_rcu_thread_leave(void);

#endif /* LULL_BENCH_LFHTMAP_H */
