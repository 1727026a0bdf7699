/*
 * bench/bench_registry.c - lull_registry against a mutex + hash map registry
 * (bench/baselines/mxreg.h) with the same semantics for these calls.
 *
 *   lookup         lookups of random ids among 1024 held ones.
 *   claim_release  claim a free id, release it (one item = the pair); each
 *                  thread cycles through 1024 ids of its own.
 *   grace_cycle    release_after (60 s grace) then claim again within the
 *                  grace period (a reconnect: the grace timer is cancelled);
 *                  one item = the pair; each thread its own 1024 ids.
 * Each at 1 and 2 threads.  lull's registry runs on a wheel of its own that
 * nobody advances (no grace period ends during the run), the baseline on its
 * heap; both read CLOCK_MONOTONIC when they arm a timer.  close is a no-op.
 */
#include "baselines/mxreg.h"
#include "common.h"

#include <errno.h>
#include <lull/registry.h>
#include <stdlib.h>
#include <time.h>

enum { BATCH = 32, PER_THREAD = 1024 };

#define GRACE_NS (60ULL * 1000000000ULL)
/* id ranges: lookups [0, ids), claim_release and grace_cycle far above */
#define CR_BASE    (1ULL << 32)
#define GRACE_BASE (2ULL << 32)

static char conns[1];   /* a conn is any non-NULL pointer; the figures need no more */

static void close_conn(void *conn, enum lull_reason why, void *ctx)
{
    (void)why;
    (void)ctx;
    lb_escape(conn);
}
static void close_bl(void *conn, int why, void *ctx)
{
    (void)why;
    (void)ctx;
    lb_escape(conn);
}

static uint64_t monotonic(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------ fixtures */

struct lfx {
    lull_registry *r;
    lull_wheel *w;
};

static void destroy_lull(void *p)
{
    struct lfx *f = p;
    lull_registry_destroy(f->r);
    if (f->w)
        lull_wheel_destroy(f->w, 0);
    free(f);
}

static void *make_lull(int64_t ids)
{
    struct lfx *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->w = lull_wheel_create(NULL);   /* manual: no driver thread */
    struct lull_registry_opts o = {.wheel = f->w, .close = close_conn};
    f->r = f->w ? lull_registry_create(&o) : NULL;
    if (!f->r) {
        destroy_lull(f);
        return NULL;
    }
    unsigned char k[BC_KEY_LEN];
    uint64_t gen;
    for (int64_t i = 0; i < ids; i++) {
        bc_key(k, (uint64_t)i);
        if (lull_registry_claim(f->r, k, sizeof k, conns, &gen)) {
            destroy_lull(f);
            return NULL;
        }
    }
    return f;
}

static void destroy_bl(void *r) { bl_reg_destroy(r); }

static void *make_bl(int64_t ids)
{
    struct bl_reg *r = bl_reg_create(close_bl, NULL, monotonic, NULL, (size_t)ids);
    if (!r)
        return NULL;
    unsigned char k[BC_KEY_LEN];
    uint64_t gen;
    for (int64_t i = 0; i < ids; i++) {
        bc_key(k, (uint64_t)i);
        if (bl_reg_claim(r, k, sizeof k, conns, &gen)) {
            bl_reg_destroy(r);
            return NULL;
        }
    }
    return r;
}

static void *g_fx;

static void setup_lull(lb_state *st)
{
    g_fx = bc_fixture("lull_reg", lb_range(st, 0), make_lull, destroy_lull, NULL);
    if (!g_fx)
        lb_skip(st, "fixture: lull registry could not be built");
}
static void setup_bl(lb_state *st)
{
    g_fx = bc_fixture("mutex_reg", lb_range(st, 0), make_bl, destroy_bl, NULL);
    if (!g_fx)
        lb_skip(st, "fixture: mutex registry could not be built");
}

/* -------------------------------------------------------------- operations */

static inline lull_registry *LR(void *fx) { return ((struct lfx *)fx)->r; }

static inline int lull_lookup(void *fx, const unsigned char *k)
{
    void *c;
    uint64_t g;
    return lull_registry_lookup(LR(fx), k, BC_KEY_LEN, &c, &g);
}
static inline int bl_lookup(void *fx, const unsigned char *k)
{
    void *c;
    uint64_t g;
    return bl_reg_lookup(fx, k, BC_KEY_LEN, &c, &g);
}
static inline int lull_claim(void *fx, const unsigned char *k, uint64_t *g)
{
    return lull_registry_claim(LR(fx), k, BC_KEY_LEN, conns, g);
}
static inline int bl_claim(void *fx, const unsigned char *k, uint64_t *g)
{
    return bl_reg_claim(fx, k, BC_KEY_LEN, conns, g);
}
static inline int lull_release(void *fx, const unsigned char *k, uint64_t g)
{
    return lull_registry_release(LR(fx), k, BC_KEY_LEN, g);
}
static inline int bl_release(void *fx, const unsigned char *k, uint64_t g)
{
    return bl_reg_release(fx, k, BC_KEY_LEN, g);
}
static inline int lull_release_after(void *fx, const unsigned char *k, uint64_t g)
{
    return lull_registry_release_after(LR(fx), k, BC_KEY_LEN, g, GRACE_NS);
}
static inline int bl_release_after(void *fx, const unsigned char *k, uint64_t g)
{
    return bl_reg_release_after(fx, k, BC_KEY_LEN, g, GRACE_NS);
}

static void finish(lb_state *st, uint64_t errors)
{
    if (errors)
        lb_skip(st, "a registry call returned an unexpected result");
    lb_set_items_processed(st, lb_iters(st));
}

/* ------------------------------------------------------------------- bodies */

#define BM_LOOKUP(impl)                                                       \
    static void bm_lookup_##impl(lb_state *st)                                \
    {                                                                         \
        void *fx = g_fx;                                                      \
        uint64_t n = (uint64_t)lb_range(st, 0), seed = bc_seed(st);           \
        uint64_t errors = 0;                                                  \
        unsigned char k[BC_KEY_LEN];                                          \
        bc_key(k, 0);                                                         \
        errors += impl##_lookup(fx, k) != 0; /* registers the thread */       \
        while (lb_next_batch(st, BATCH)) {                                    \
            for (int i = 0; i < BATCH; i++) {                                 \
                bc_key(k, bc_pick(bc_rand(&seed), n));                        \
                errors += impl##_lookup(fx, k) != 0;                          \
            }                                                                 \
        }                                                                     \
        finish(st, errors);                                                   \
    }
BM_LOOKUP(lull)
BM_LOOKUP(bl)

#define BM_CLAIM_RELEASE(impl)                                                \
    static void bm_claim_release_##impl(lb_state *st)                         \
    {                                                                         \
        void *fx = g_fx;                                                      \
        uint64_t base = CR_BASE + (uint64_t)lb_thread_index(st) * PER_THREAD; \
        uint64_t errors = 0, j = 0, g;                                        \
        unsigned char k[BC_KEY_LEN];                                          \
        while (lb_next_batch(st, BATCH)) {                                    \
            for (int i = 0; i < BATCH; i++) {                                 \
                bc_key(k, base + j);                                          \
                if (++j == PER_THREAD)                                        \
                    j = 0;                                                    \
                errors += impl##_claim(fx, k, &g) != 0;                       \
                errors += impl##_release(fx, k, g) != 1;                      \
            }                                                                 \
        }                                                                     \
        finish(st, errors);                                                   \
    }
BM_CLAIM_RELEASE(lull)
BM_CLAIM_RELEASE(bl)

#define BM_GRACE(impl)                                                        \
    static void bm_grace_cycle_##impl(lb_state *st)                           \
    {                                                                         \
        void *fx = g_fx;                                                      \
        uint64_t base = GRACE_BASE + (uint64_t)lb_thread_index(st) * PER_THREAD; \
        uint64_t errors = 0, j = 0, gens[PER_THREAD];                         \
        unsigned char k[BC_KEY_LEN];                                          \
        for (uint64_t i = 0; i < PER_THREAD; i++) {                           \
            bc_key(k, base + i);                                              \
            errors += impl##_claim(fx, k, &gens[i]) != 0;                     \
        }                                                                     \
        while (lb_next_batch(st, BATCH)) {                                    \
            for (int i = 0; i < BATCH; i++) {                                 \
                bc_key(k, base + j);                                          \
                errors += impl##_release_after(fx, k, gens[j]) != 0;          \
                errors += impl##_claim(fx, k, &gens[j]) != 0;                 \
                if (++j == PER_THREAD)                                        \
                    j = 0;                                                    \
            }                                                                 \
        }                                                                     \
        for (uint64_t i = 0; i < PER_THREAD; i++) {                           \
            bc_key(k, base + i);                                              \
            errors += impl##_release(fx, k, gens[i]) != 1;                    \
        }                                                                     \
        finish(st, errors);                                                   \
    }
BM_GRACE(lull)
BM_GRACE(bl)

/* ------------------------------------------------------------- registration */

static void reg(const char *name, lb_fn fn, lb_fn setup, int64_t ids)
{
    lb_bench *b = lb_register(name, fn);
    lb_arg_name(b, "ids");
    lb_arg(b, ids);
    lb_thread_counts(b);
    lb_setup(b, setup);
}

int main(int argc, char **argv)
{
    lb_init(&argc, argv);
    const int64_t ids = 1024;
    reg("registry/lookup/lull", bm_lookup_lull, setup_lull, ids);
    reg("registry/claim_release/lull", bm_claim_release_lull, setup_lull, ids);
    reg("registry/grace_cycle/lull", bm_grace_cycle_lull, setup_lull, ids);
    reg("registry/lookup/mutex", bm_lookup_bl, setup_bl, ids);
    reg("registry/claim_release/mutex", bm_claim_release_bl, setup_bl, ids);
    reg("registry/grace_cycle/mutex", bm_grace_cycle_bl, setup_bl, ids);
    if (lb_full()) {
        reg("registry/lookup/lull", bm_lookup_lull, setup_lull, 1048576);
        reg("registry/lookup/mutex", bm_lookup_bl, setup_bl, 1048576);
    }
    lb_atexit(bc_fixture_drop);
    return lb_run();
}
