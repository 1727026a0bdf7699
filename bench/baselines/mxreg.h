/*
 * bench/baselines/mxreg.h - a connection registry as one would write it with
 * a mutex: a chained hash map of id -> holder (hash.h, chain.h) and a
 * min-heap of grace timers (heap.h, unlocked: the registry's mutex covers
 * it), all behind one pthread_mutex_t.
 *
 * Same semantics as lull_registry for the calls the benchmarks make:
 * generations (never 0, never reused), claim on a free id / an id in grace
 * (cancels the grace timer) / a live holder (the incoming one wins, the old
 * one is closed LULL_REPLACED-style), release (1/0), release_after (-ESTALE
 * when gen does not hold the id), lookup (0, -EAGAIN in grace, -ENOENT), and
 * expiry.  close runs after the change, outside the mutex, on the calling
 * thread.  No dependents, no mark_dead, no keep_incoming: not measured.
 */
#ifndef LULL_BENCH_MXREG_H
#define LULL_BENCH_MXREG_H

#include <stddef.h>
#include <stdint.h>

struct bl_reg;
enum { BL_REPLACED = 1, BL_RELEASED, BL_EXPIRED, BL_SHUTDOWN };   /* as lull_reason */

struct bl_reg *bl_reg_create(void (*close)(void *conn, int why, void *ctx), void *ctx,
                             uint64_t (*clock)(void *), void *clock_ctx, size_t expected_ids);
void bl_reg_destroy(struct bl_reg *r);          /* closes what is held, BL_SHUTDOWN */
int  bl_reg_claim(struct bl_reg *r, const void *id, size_t len, void *conn, uint64_t *gen);
int  bl_reg_release(struct bl_reg *r, const void *id, size_t len, uint64_t gen);
int  bl_reg_release_after(struct bl_reg *r, const void *id, size_t len, uint64_t gen,
                          uint64_t grace_ns);
int  bl_reg_lookup(struct bl_reg *r, const void *id, size_t len, void **conn, uint64_t *gen);
size_t bl_reg_advance(struct bl_reg *r);         /* expires due grace periods */

#endif /* LULL_BENCH_MXREG_H */
