/*
 * bench/opcount.c - fixed operation counts for callgrind.
 *
 * Each op_* function runs one operation N times, single-threaded, on a
 * warmed-up structure, and is called exactly once.  scripts/callgrind.sh runs this program under
 * valgrind --tool=callgrind and divides each op_* function's inclusive
 * instruction count by N, less op_loop's (the key and loop overhead every
 * op_* function shares).  Instruction counts do not depend on the machine's
 * load, so they are the figures to compare on a busy machine or in CI.
 *
 *   lull_opcount [N]      (default 100000)
 */
/* store_get_inline opens its sections inline; every other op calls the
 * functions by name, (lull_read_lock)(), as without LULL_INLINE_READ. */
#define LULL_INLINE_READ 1

#include "baselines/heap.h"
#include "baselines/lfhtmap.h"
#include "baselines/lockmap.h"
#include "baselines/mxreg.h"
#include "common.h"

#include <errno.h>
#include <lull.h>
#include <stdio.h>
#include <stdlib.h>

#define NOINLINE __attribute__((noinline))
#define MS  1000000ULL
#define SEC 1000000000ULL
enum { KEYS = 1024, PENDING = 1000 };

static uint64_t failures;
static struct bc_vclock clk = {1000 * SEC};

static void on_fire(uint64_t t, void *arg) { (void)t; (void)arg; }
static void close_conn(void *c, enum lull_reason why, void *ctx) { (void)c; (void)why; (void)ctx; }
static void close_bl(void *c, int why, void *ctx) { (void)c; (void)why; (void)ctx; }
static char conn[1];

static int lull_incr(const struct lull_snap *cur, struct lull_buf *next, void *arg)
{
    (void)arg;
    if (!cur || next->len < 8)
        return -ENOENT;
    ((unsigned char *)next->data)[0]++;
    return LULL_PUBLISH;
}
static int bl_incr(void *value, size_t vlen, void *arg)
{
    (void)arg;
    (void)vlen;
    ((unsigned char *)value)[0]++;
    return 0;
}

/* The shared overhead: make the key, count. */
NOINLINE static void op_loop(uint64_t n)
{
    unsigned char k[BC_KEY_LEN];
    for (uint64_t i = 0; i < n; i++) {
        bc_key(k, i % KEYS);
        lb_escape(k);
    }
}

/* ---- store ---- */
static inline void store_get_one(lull_store *s, const unsigned char k[BC_KEY_LEN])
{
    const struct lull_snap *sn = lull_store_get(s, k, BC_KEY_LEN);
    if (sn)
        lb_escape(sn->value);
    else
        failures++;
}
static inline void body_store_get(lull_store *s, uint64_t n)
{
    unsigned char k[BC_KEY_LEN];
    for (uint64_t i = 0; i < n; i++) {
        bc_key(k, i % KEYS);
        (lull_read_lock)();
        store_get_one(s, k);
        (lull_read_unlock)();
    }
}
static inline void body_store_get_inline(lull_store *s, uint64_t n)
{
    unsigned char k[BC_KEY_LEN];
    for (uint64_t i = 0; i < n; i++) {
        bc_key(k, i % KEYS);
        lull_read_lock();
        store_get_one(s, k);
        lull_read_unlock();
    }
}
static inline void body_store_read(lull_store *s, uint64_t n)
{
    unsigned char k[BC_KEY_LEN], buf[BC_VALUE_LEN];
    for (uint64_t i = 0; i < n; i++) {
        bc_key(k, i % KEYS);
        failures += lull_store_read(s, k, sizeof k, buf, sizeof buf, NULL, NULL) != 0;
        lb_escape(buf);
    }
}
static inline void body_store_update(lull_store *s, uint64_t n)
{
    unsigned char k[BC_KEY_LEN];
    for (uint64_t i = 0; i < n; i++) {
        bc_key(k, i % KEYS);
        failures += lull_store_update(s, k, sizeof k, lull_incr, NULL, NULL) != 0;
    }
}
static inline void body_lfht_get(struct bl_lfht *m, uint64_t n)
{
    unsigned char k[BC_KEY_LEN];
    uint64_t acc = 0;
    for (uint64_t i = 0; i < n; i++) {
        bc_key(k, i % KEYS);
        acc += bl_lfht_get_touch(m, k, sizeof k);
    }
    lb_use(acc);
}
static inline void body_rwmap_read(struct bl_rwmap *m, uint64_t n)
{
    unsigned char k[BC_KEY_LEN], buf[BC_VALUE_LEN];
    for (uint64_t i = 0; i < n; i++) {
        bc_key(k, i % KEYS);
        failures += bl_rwmap_read(m, k, sizeof k, buf, sizeof buf, NULL) != 0;
        lb_escape(buf);
    }
}
static inline void body_mxmap_update(struct bl_mxmap *m, uint64_t n)
{
    unsigned char k[BC_KEY_LEN];
    for (uint64_t i = 0; i < n; i++) {
        bc_key(k, i % KEYS);
        failures += bl_mxmap_update(m, k, sizeof k, bl_incr, NULL) != 0;
    }
}

/* ---- wheel ---- */
static inline void body_wheel_schedule(lull_wheel *w, uint64_t *h, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        failures += lull_wheel_schedule(w, MS + (i * 7919) % (SEC - MS), on_fire, NULL, &h[i]) != 0;
}
static inline void body_wheel_cancel(lull_wheel *w, uint64_t *h, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        failures += lull_wheel_cancel(w, h[i]) != 0;
}
static inline void body_wheel_reschedule(lull_wheel *w, uint64_t *h, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        failures += lull_wheel_reschedule(w, h[i], 30 * SEC, &h[i]) != 0;
}
static inline size_t body_wheel_expire(lull_wheel *w)
{
    size_t fired = 0;
    for (int ms = 0; ms < 1000; ms++) {
        bc_vclock_add(&clk, MS);
        fired += lull_wheel_advance(w);
    }
    return fired;
}
static inline void body_heap_schedule(struct bl_heap *q, uint64_t *h, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        failures += bl_heap_schedule(q, MS + (i * 7919) % (SEC - MS), on_fire, NULL, &h[i]) != 0;
}
static inline void body_heap_cancel(struct bl_heap *q, uint64_t *h, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        failures += bl_heap_cancel(q, h[i]) != 0;
}
static inline size_t body_heap_expire(struct bl_heap *q)
{
    size_t fired = 0;
    for (int ms = 0; ms < 1000; ms++) {
        bc_vclock_add(&clk, MS);
        fired += bl_heap_advance(q);
    }
    return fired;
}

/* ---- registry ---- */
static inline void body_reg_claim(lull_registry *r, uint64_t *g, uint64_t n)
{
    unsigned char k[BC_KEY_LEN];
    for (uint64_t i = 0; i < n; i++) {
        bc_key(k, i);
        failures += lull_registry_claim(r, k, sizeof k, conn, &g[i]) != 0;
    }
}
static inline void body_reg_lookup(lull_registry *r, uint64_t n)
{
    unsigned char k[BC_KEY_LEN];
    void *c;
    uint64_t g;
    for (uint64_t i = 0; i < n; i++) {
        bc_key(k, i);
        failures += lull_registry_lookup(r, k, sizeof k, &c, &g) != 0;
    }
}
static inline void body_reg_release(lull_registry *r, uint64_t *g, uint64_t n)
{
    unsigned char k[BC_KEY_LEN];
    for (uint64_t i = 0; i < n; i++) {
        bc_key(k, i);
        failures += lull_registry_release(r, k, sizeof k, g[i]) != 1;
    }
}
static inline void body_mxreg_claim(struct bl_reg *r, uint64_t *g, uint64_t n)
{
    unsigned char k[BC_KEY_LEN];
    for (uint64_t i = 0; i < n; i++) {
        bc_key(k, i);
        failures += bl_reg_claim(r, k, sizeof k, conn, &g[i]) != 0;
    }
}
static inline void body_mxreg_lookup(struct bl_reg *r, uint64_t n)
{
    unsigned char k[BC_KEY_LEN];
    void *c;
    uint64_t g;
    for (uint64_t i = 0; i < n; i++) {
        bc_key(k, i);
        failures += bl_reg_lookup(r, k, sizeof k, &c, &g) != 0;
    }
}
static inline void body_mxreg_release(struct bl_reg *r, uint64_t *g, uint64_t n)
{
    unsigned char k[BC_KEY_LEN];
    for (uint64_t i = 0; i < n; i++) {
        bc_key(k, i);
        failures += bl_reg_release(r, k, sizeof k, g[i]) != 1;
    }
}

/* The measured calls: each op_* function is called exactly once, so its
 * inclusive count divided by N is one operation (warm-ups call body_*). */
#define OP_VOID(name, params, args) \
    NOINLINE static void op_##name params { body_##name args; }
#define OP_SIZE(name, params, args) \
    NOINLINE static size_t op_##name params { return body_##name args; }
OP_VOID(store_get, (lull_store *s, uint64_t n), (s, n))
OP_VOID(store_get_inline, (lull_store *s, uint64_t n), (s, n))
OP_VOID(store_read, (lull_store *s, uint64_t n), (s, n))
OP_VOID(store_update, (lull_store *s, uint64_t n), (s, n))
OP_VOID(lfht_get, (struct bl_lfht *m, uint64_t n), (m, n))
OP_VOID(rwmap_read, (struct bl_rwmap *m, uint64_t n), (m, n))
OP_VOID(mxmap_update, (struct bl_mxmap *m, uint64_t n), (m, n))
OP_VOID(wheel_schedule, (lull_wheel *w, uint64_t *h, uint64_t n), (w, h, n))
OP_VOID(wheel_cancel, (lull_wheel *w, uint64_t *h, uint64_t n), (w, h, n))
OP_VOID(wheel_reschedule, (lull_wheel *w, uint64_t *h, uint64_t n), (w, h, n))
OP_SIZE(wheel_expire, (lull_wheel *w), (w))
OP_VOID(heap_schedule, (struct bl_heap *q, uint64_t *h, uint64_t n), (q, h, n))
OP_VOID(heap_cancel, (struct bl_heap *q, uint64_t *h, uint64_t n), (q, h, n))
OP_SIZE(heap_expire, (struct bl_heap *q), (q))
OP_VOID(reg_claim, (lull_registry *r, uint64_t *g, uint64_t n), (r, g, n))
OP_VOID(reg_lookup, (lull_registry *r, uint64_t n), (r, n))
OP_VOID(reg_release, (lull_registry *r, uint64_t *g, uint64_t n), (r, g, n))
OP_VOID(mxreg_claim, (struct bl_reg *r, uint64_t *g, uint64_t n), (r, g, n))
OP_VOID(mxreg_lookup, (struct bl_reg *r, uint64_t n), (r, n))
OP_VOID(mxreg_release, (struct bl_reg *r, uint64_t *g, uint64_t n), (r, g, n))

static void store_ops(uint64_t n)
{
    lull_store *s = lull_store_create(NULL);
    struct bl_rwmap *rw = bl_rwmap_create(KEYS);
    struct bl_mxmap *mx = bl_mxmap_create(KEYS);
    struct bl_lfht *lf = bl_lfht_create(KEYS);
    if (!s || !rw || !mx || !lf) {
        failures++;
        return;
    }
    unsigned char k[BC_KEY_LEN], v[BC_VALUE_LEN] = {0};
    bl_rcu_thread_enter();   /* raw cds_lfht needs a registered thread */
    for (uint64_t i = 0; i < KEYS; i++) {
        bc_key(k, i);
        failures += lull_store_put(s, k, sizeof k, v, sizeof v, NULL) != 0;
        failures += bl_rwmap_put(rw, k, sizeof k, v, sizeof v) != 0;
        failures += bl_mxmap_put(mx, k, sizeof k, v, sizeof v) != 0;
        failures += bl_lfht_put(lf, k, sizeof k, v, sizeof v) != 0;
    }
    body_store_update(s, KEYS);   /* warm-up: every key replaced once */
    op_store_get(s, n);
    op_store_get_inline(s, n);
    op_store_read(s, n);
    op_store_update(s, n);
    op_lfht_get(lf, n);
    op_rwmap_read(rw, n);
    op_mxmap_update(mx, n);
    bl_lfht_destroy(lf);
    bl_rcu_thread_leave();
    lull_store_destroy(s);
    bl_rwmap_destroy(rw);
    bl_mxmap_destroy(mx);
}

static void wheel_ops(uint64_t n)
{
    struct lull_wheel_opts o = {.tick_ns = MS, .clock = bc_vclock_read, .clock_ctx = &clk};
    lull_wheel *w = lull_wheel_create(&o);
    struct bl_heap *q = bl_heap_create(bc_vclock_read, &clk, BL_HEAP_LOCKED);
    uint64_t *h = malloc(n * sizeof *h), t;
    if (!w || !q || !h) {
        failures++;
        return;
    }
    for (int i = 0; i < PENDING; i++) {   /* long timers already pending */
        failures += lull_wheel_schedule(w, 3600 * SEC + (uint64_t)i * SEC, on_fire, NULL, &t) != 0;
        failures += bl_heap_schedule(q, 3600 * SEC + (uint64_t)i * SEC, on_fire, NULL, &t) != 0;
    }
    body_wheel_schedule(w, h, n);   /* warm-up: memory grown for n timers */
    body_wheel_cancel(w, h, n);
    op_wheel_schedule(w, h, n);
    op_wheel_reschedule(w, h, n);
    op_wheel_cancel(w, h, n);
    body_wheel_schedule(w, h, n);
    failures += op_wheel_expire(w) != n;

    body_heap_schedule(q, h, n);
    body_heap_cancel(q, h, n);
    op_heap_schedule(q, h, n);
    op_heap_cancel(q, h, n);
    body_heap_schedule(q, h, n);
    failures += op_heap_expire(q) != n;
    lull_wheel_destroy(w, 0);
    bl_heap_destroy(q);
    free(h);
}

static void registry_ops(uint64_t n)
{
    lull_wheel *w = lull_wheel_create(NULL);
    struct lull_registry_opts o = {.wheel = w, .close = close_conn};
    lull_registry *r = w ? lull_registry_create(&o) : NULL;
    struct bl_reg *b = bl_reg_create(close_bl, NULL, bc_vclock_read, &clk, n);
    uint64_t *g = malloc(n * sizeof *g);
    if (!r || !b || !g) {
        failures++;
        return;
    }
    body_reg_claim(r, g, n);        /* warm-up */
    body_reg_release(r, g, n);
    op_reg_claim(r, g, n);
    op_reg_lookup(r, n);
    op_reg_release(r, g, n);

    body_mxreg_claim(b, g, n);
    body_mxreg_release(b, g, n);
    op_mxreg_claim(b, g, n);
    op_mxreg_lookup(b, n);
    op_mxreg_release(b, g, n);
    lull_registry_destroy(r);
    lull_wheel_destroy(w, 0);
    bl_reg_destroy(b);
    free(g);
}

int main(int argc, char **argv)
{
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 100000;
    const char *only = argc > 2 ? argv[2] : "store,wheel,registry";
    if (n < KEYS)
        n = KEYS;
    op_loop(n);
    if (strstr(only, "store"))
        store_ops(n);
    if (strstr(only, "wheel"))
        wheel_ops(n);
    if (strstr(only, "registry"))
        registry_ops(n);
    if (failures) {
        fprintf(stderr, "lull_opcount: %llu operations failed\n", (unsigned long long)failures);
        return 1;
    }
    printf("lull_opcount: %llu operations of each kind\n", (unsigned long long)n);
    return 0;
}
