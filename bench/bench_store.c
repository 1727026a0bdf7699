/*
 * bench/bench_store.c - lull_store against the locks one would write oneself.
 *
 * Cases (each at 1 and 2 threads; --lb_full adds 4 and more key counts):
 *   get_zc       lull_store_get inside lull_read_lock, reading the value;
 *                raw cds_lfht the same way (the floor)
 *   get_inline   the same with LULL_INLINE_READ's inline sections (hot set)
 *   get_so       get_zc through liblull.so.0, the shared library a program
 *                gets from find_package(lull) or pkg-config (hot set)
 *   get_copy     lull_store_read (copy-out); rwlock map, mutex map and raw
 *                cds_lfht copying the value out the same way
 *   mix90        90% get_copy, 10% update of a random key
 *   upd_disjoint updates, each thread on its own keys
 *   upd_contended every thread updates one key
 * An update increments the first 8 bytes of the 64-byte value: lull with
 * lull_store_update (a new snapshot per publish), the locked maps in place
 * under the write lock.  Keys are drawn uniformly at random.  One item = one
 * operation.
 */
/* Inline sections for get_inline; get_zc calls the functions by name,
 * (lull_read_lock)(), as a program built without LULL_INLINE_READ does. */
#define LULL_INLINE_READ 1

#include "baselines/lfhtmap.h"
#include "baselines/lockmap.h"
#include "common.h"
#include "lull_fns.h"

#include <errno.h>
#include <lull/store.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

enum { BATCH = 64 };

/* ------------------------------------------------------------------ fixtures */

static void fill_value(unsigned char v[BC_VALUE_LEN], uint64_t i)
{
    for (int j = 0; j < BC_VALUE_LEN; j++)
        v[j] = (unsigned char)(i * 31 + (uint64_t)j);
}

/* A store of n keys, built through f (lull_fns.h): the linked static
 * library's functions, or liblull.so.0's (get_so, below). */
static void *make_store(const struct lull_fns *f, int64_t n)
{
    lull_store *s = f->create(NULL);   /* the defaults a user gets */
    if (!s)
        return NULL;
    unsigned char k[BC_KEY_LEN], v[BC_VALUE_LEN];
    for (int64_t i = 0; i < n; i++) {
        bc_key(k, (uint64_t)i);
        fill_value(v, (uint64_t)i);
        if (f->put(s, k, sizeof k, v, sizeof v, NULL)) {
            f->destroy(s);
            return NULL;
        }
    }
    return s;
}

static const struct lull_fns linked = {
    lull_store_create, lull_store_put, lull_store_get, lull_store_destroy,
    (lull_read_lock), (lull_read_unlock),
};
static void *make_lull(int64_t n) { return make_store(&linked, n); }
static void destroy_lull(void *s) { lull_store_destroy(s); }

/* get_so: liblull.so.0 (LULL_BENCH_SO: its path in the build tree), loaded
 * with dlopen() because one program cannot link both libraries, its
 * functions called through pointers (a call through the PLT is one indirect
 * jump too).  What differs from the static library is how the functions
 * reach thread-locals: a shared library reaches lull's and liburcu's through
 * __tls_get_addr (the general-dynamic TLS model), which keeps it
 * dlopen()able (docs/performance.md, "The shared library"). */
static struct lull_fns so;

static bool so_load(void)
{
    static int loaded;     /* 0: not tried, 1: loaded, -1: failed (setup is single-threaded) */
    if (!loaded)
        loaded = lull_fns_load(LULL_BENCH_SO, &so) ? 1 : -1;
    return loaded > 0;     /* never dlclose()d: its stores live in bc_fixture */
}
static void *make_lull_so(int64_t n) { return so_load() ? make_store(&so, n) : NULL; }
static void destroy_lull_so(void *s) { so.destroy(s); }

#define MAKE_MAP(prefix)                                                       \
    static void *make_##prefix(int64_t n)                                      \
    {                                                                          \
        struct prefix *m = prefix##_create((size_t)n);                         \
        if (!m)                                                                \
            return NULL;                                                       \
        unsigned char k[BC_KEY_LEN], v[BC_VALUE_LEN];                          \
        for (int64_t i = 0; i < n; i++) {                                      \
            bc_key(k, (uint64_t)i);                                            \
            fill_value(v, (uint64_t)i);                                        \
            if (prefix##_put(m, k, sizeof k, v, sizeof v)) {                   \
                prefix##_destroy(m);                                           \
                return NULL;                                                   \
            }                                                                  \
        }                                                                      \
        return m;                                                              \
    }                                                                          \
    static void destroy_##prefix(void *m) { prefix##_destroy(m); }
MAKE_MAP(bl_rwmap)
MAKE_MAP(bl_mxmap)
MAKE_MAP(bl_lfht)

static void *g_fx;   /* the fixture of the running case; set by thread 0's setup */

#define SETUP(kind)                                                                     \
    static void setup_##kind(lb_state *st)                                              \
    {                                                                                   \
        g_fx = bc_fixture(#kind, lb_range(st, 0), make_##kind, destroy_##kind, NULL); \
        if (!g_fx)                                                                      \
            lb_skip(st, "fixture: " #kind " could not be built");                       \
    }
SETUP(lull)
SETUP(lull_so)
SETUP(bl_rwmap)
SETUP(bl_mxmap)
SETUP(bl_lfht)

/* --------------------------------------------------------------- operations */

static int lull_incr(const struct lull_snap *cur, struct lull_buf *next, void *arg)
{
    (void)arg;
    if (!cur || next->len < 8)
        return -ENOENT;
    uint64_t v;
    memcpy(&v, next->data, 8);
    v++;
    memcpy(next->data, &v, 8);
    return LULL_PUBLISH;
}

static int bl_incr(void *value, size_t vlen, void *arg)
{
    (void)arg;
    if (vlen < 8)
        return -ENOENT;
    uint64_t v;
    memcpy(&v, value, 8);
    v++;
    memcpy(value, &v, 8);
    return 0;
}

/* What every zero-copy get does with the snapshot it got. */
static inline int take_value(const struct lull_snap *sn, uint64_t *acc)
{
    if (!sn)
        return -ENOENT;
    uint64_t v;
    memcpy(&v, sn->value, 8);
    *acc += v;
    return 0;
}
static inline int lull_get_value(void *fx, const unsigned char *k, uint64_t *acc)
{
    return take_value(lull_store_get(fx, k, BC_KEY_LEN), acc);
}

/* Each implementation as three inline ops, so one loop body serves all. */
static inline int lull_get_zc(void *fx, const unsigned char *k, uint64_t *acc)
{
    (lull_read_lock)();
    int rc = lull_get_value(fx, k, acc);
    (lull_read_unlock)();
    return rc;
}
static inline int lull_inline_get_zc(void *fx, const unsigned char *k, uint64_t *acc)
{
    lull_read_lock();
    int rc = lull_get_value(fx, k, acc);
    lull_read_unlock();
    return rc;
}
static inline int lull_so_get_zc(void *fx, const unsigned char *k, uint64_t *acc)
{
    so.lock();
    int rc = take_value(so.get(fx, k, BC_KEY_LEN), acc);
    so.unlock();
    return rc;
}
static inline int lfht_get_zc(void *fx, const unsigned char *k, uint64_t *acc)
{
    uint64_t v = bl_lfht_get_touch(fx, k, BC_KEY_LEN);
    *acc += v;
    return 0;
}

static inline int lull_get_copy(void *fx, const unsigned char *k, unsigned char *buf)
{
    size_t len;
    return lull_store_read(fx, k, BC_KEY_LEN, buf, BC_VALUE_LEN, &len, NULL);
}
static inline int rw_get_copy(void *fx, const unsigned char *k, unsigned char *buf)
{
    size_t len;
    return bl_rwmap_read(fx, k, BC_KEY_LEN, buf, BC_VALUE_LEN, &len);
}
static inline int mx_get_copy(void *fx, const unsigned char *k, unsigned char *buf)
{
    size_t len;
    return bl_mxmap_read(fx, k, BC_KEY_LEN, buf, BC_VALUE_LEN, &len);
}
static inline int lfht_get_copy(void *fx, const unsigned char *k, unsigned char *buf)
{
    size_t len;
    return bl_lfht_read(fx, k, BC_KEY_LEN, buf, BC_VALUE_LEN, &len);
}

static inline int lull_upd(void *fx, const unsigned char *k)
{
    return lull_store_update(fx, k, BC_KEY_LEN, lull_incr, NULL, NULL);
}
static inline int rw_upd(void *fx, const unsigned char *k)
{
    return bl_rwmap_update(fx, k, BC_KEY_LEN, bl_incr, NULL);
}
static inline int mx_upd(void *fx, const unsigned char *k)
{
    return bl_mxmap_update(fx, k, BC_KEY_LEN, bl_incr, NULL);
}

/* Threads enter their RCU registration before the timed loop. */
static void enter_lull(void) { (lull_read_lock)(); (lull_read_unlock)(); }
static void enter_lull_so(void) { so.lock(); so.unlock(); }
static void leave_lull(void) {}
static void enter_none(void) {}

static void finish(lb_state *st, uint64_t errors)
{
    if (errors)
        lb_skip(st, "an operation failed (missing key or error)");
    lb_set_items_processed(st, lb_iters(st));
}

/* ------------------------------------------------------------------- bodies */

#define BM_GET_ZC(impl, enter, leave)                                         \
    static void bm_get_zc_##impl(lb_state *st)                                \
    {                                                                         \
        void *fx = g_fx;                                                      \
        uint64_t n = (uint64_t)lb_range(st, 0), seed = bc_seed(st);           \
        uint64_t acc = 0, errors = 0;                                         \
        unsigned char k[BC_KEY_LEN];                                          \
        enter();                                                              \
        while (lb_next_batch(st, BATCH)) {                                    \
            for (int i = 0; i < BATCH; i++) {                                 \
                bc_key(k, bc_pick(bc_rand(&seed), n));                        \
                errors += impl##_get_zc(fx, k, &acc) != 0;                    \
            }                                                                 \
        }                                                                     \
        lb_use(acc);                                                          \
        leave();                                                              \
        finish(st, errors);                                                   \
    }
BM_GET_ZC(lull, enter_lull, leave_lull)
BM_GET_ZC(lull_inline, enter_lull, leave_lull)
BM_GET_ZC(lull_so, enter_lull_so, leave_lull)
BM_GET_ZC(lfht, bl_rcu_thread_enter, bl_rcu_thread_leave)

#define BM_GET_COPY(impl, enter, leave)                                       \
    static void bm_get_copy_##impl(lb_state *st)                              \
    {                                                                         \
        void *fx = g_fx;                                                      \
        uint64_t n = (uint64_t)lb_range(st, 0), seed = bc_seed(st);           \
        uint64_t errors = 0;                                                  \
        unsigned char k[BC_KEY_LEN], buf[BC_VALUE_LEN];                       \
        enter();                                                              \
        while (lb_next_batch(st, BATCH)) {                                    \
            for (int i = 0; i < BATCH; i++) {                                 \
                bc_key(k, bc_pick(bc_rand(&seed), n));                        \
                errors += impl##_get_copy(fx, k, buf) != 0;                   \
                lb_escape(buf);                                               \
            }                                                                 \
        }                                                                     \
        leave();                                                              \
        finish(st, errors);                                                   \
    }
BM_GET_COPY(lull, enter_lull, leave_lull)
BM_GET_COPY(rw, enter_none, enter_none)
BM_GET_COPY(mx, enter_none, enter_none)
BM_GET_COPY(lfht, bl_rcu_thread_enter, bl_rcu_thread_leave)

/* 10% updates: the low 32 bits of the draw pick the op, the high bits the key. */
#define BM_MIX(impl, enter)                                                   \
    static void bm_mix90_##impl(lb_state *st)                                 \
    {                                                                         \
        void *fx = g_fx;                                                      \
        uint64_t n = (uint64_t)lb_range(st, 0), seed = bc_seed(st);           \
        uint64_t errors = 0;                                                  \
        unsigned char k[BC_KEY_LEN], buf[BC_VALUE_LEN];                       \
        enter();                                                              \
        while (lb_next_batch(st, BATCH)) {                                    \
            for (int i = 0; i < BATCH; i++) {                                 \
                uint64_t r = bc_rand(&seed);                                  \
                bc_key(k, bc_pick(r, n));                                     \
                if ((uint32_t)r < 429496730u) /* 10% of 2^32 */               \
                    errors += impl##_upd(fx, k) != 0;                         \
                else                                                          \
                    errors += impl##_get_copy(fx, k, buf) != 0;               \
                lb_escape(buf);                                               \
            }                                                                 \
        }                                                                     \
        finish(st, errors);                                                   \
    }
BM_MIX(lull, enter_lull)
BM_MIX(rw, enter_none)
BM_MIX(mx, enter_none)

/* Thread t of T updates keys t, t+T, t+2T, ... only. */
#define BM_UPD_DISJOINT(impl, enter)                                          \
    static void bm_upd_disjoint_##impl(lb_state *st)                          \
    {                                                                         \
        void *fx = g_fx;                                                      \
        uint64_t T = (uint64_t)lb_thread_count(st);                           \
        uint64_t t = (uint64_t)lb_thread_index(st);                           \
        uint64_t per = (uint64_t)lb_range(st, 0) / T, seed = bc_seed(st);     \
        uint64_t errors = 0;                                                  \
        unsigned char k[BC_KEY_LEN];                                          \
        enter();                                                              \
        while (lb_next_batch(st, BATCH)) {                                    \
            for (int i = 0; i < BATCH; i++) {                                 \
                bc_key(k, bc_pick(bc_rand(&seed), per) * T + t);              \
                errors += impl##_upd(fx, k) != 0;                             \
            }                                                                 \
        }                                                                     \
        finish(st, errors);                                                   \
    }
BM_UPD_DISJOINT(lull, enter_lull)
BM_UPD_DISJOINT(rw, enter_none)
BM_UPD_DISJOINT(mx, enter_none)

#define BM_UPD_CONTENDED(impl, enter)                                         \
    static void bm_upd_contended_##impl(lb_state *st)                         \
    {                                                                         \
        void *fx = g_fx;                                                      \
        uint64_t errors = 0;                                                  \
        unsigned char k[BC_KEY_LEN];                                          \
        bc_key(k, 0);                                                         \
        enter();                                                              \
        while (lb_next_batch(st, BATCH)) {                                    \
            for (int i = 0; i < BATCH; i++)                                   \
                errors += impl##_upd(fx, k) != 0;                             \
        }                                                                     \
        finish(st, errors);                                                   \
    }
BM_UPD_CONTENDED(lull, enter_lull)
BM_UPD_CONTENDED(rw, enter_none)
BM_UPD_CONTENDED(mx, enter_none)

/* --------------------------------------------------------------- the machine */

/*
 * Not lull: eight independent chains of a shift, an xor and an add, in
 * registers, no memory.  Its time moves only with how fast the vCPU runs
 * while the store's cases run (the host's other load, its clock), and its
 * two-thread figure with the slower of the two vCPUs.  The report prints it
 * above the table, so that a slow spell shows as one (docs/performance.md,
 * "Getting stable figures").  An iteration is one item.
 */
static void bm_control_alu(lb_state *st)
{
    uint64_t a0 = bc_seed(st), a1 = a0 + 1, a2 = a0 + 2, a3 = a0 + 3;
    uint64_t a4 = a0 + 4, a5 = a0 + 5, a6 = a0 + 6, a7 = a0 + 7, n = 0;
    while (lb_next_batch(st, BATCH)) {
        for (int i = 0; i < BATCH; i++, n++) {
            a0 += n ^ (a0 >> 1); a1 += n ^ (a1 >> 1); a2 += n ^ (a2 >> 1); a3 += n ^ (a3 >> 1);
            a4 += n ^ (a4 >> 1); a5 += n ^ (a5 >> 1); a6 += n ^ (a6 >> 1); a7 += n ^ (a7 >> 1);
            /* In general registers, each step: no vector code, nothing folded. */
            __asm__ volatile("" : "+r"(a0), "+r"(a1), "+r"(a2), "+r"(a3), "+r"(a4), "+r"(a5),
                                  "+r"(a6), "+r"(a7));
        }
    }
    lb_use(a0 ^ a1 ^ a2 ^ a3 ^ a4 ^ a5 ^ a6 ^ a7);
    lb_set_items_processed(st, lb_iters(st));
}

/* ------------------------------------------------------------- registration */

static void reg(const char *name, lb_fn fn, lb_fn setup, int64_t keys)
{
    lb_bench *b = lb_register(name, fn);
    lb_arg_name(b, "keys");
    lb_arg(b, keys);
    lb_thread_counts(b);
    lb_setup(b, setup);
}

int main(int argc, char **argv)
{
    lb_init(&argc, argv);
    static const int64_t sizes_default[] = {1024, 65536, 1048576, 0};
    static const int64_t sizes_full[] = {1024, 16384, 131072, 1048576, 4194304, 0};
    const int64_t *sizes = lb_full() ? sizes_full : sizes_default;
    const int64_t hot = 1024;

    /* Grouped by fixture (the order without interleaving); each fixture is
     * built once either way: bc_fixture keeps them all. */
    for (const int64_t *n = sizes; *n; n++) {
        reg("store/get_zc/lull", bm_get_zc_lull, setup_lull, *n);
        reg("store/get_copy/lull", bm_get_copy_lull, setup_lull, *n);
        if (*n == hot) {
            reg("store/get_inline/lull", bm_get_zc_lull_inline, setup_lull, *n);
            reg("store/get_so/lull", bm_get_zc_lull_so, setup_lull_so, *n);
            reg("store/mix90/lull", bm_mix90_lull, setup_lull, *n);
            reg("store/upd_disjoint/lull", bm_upd_disjoint_lull, setup_lull, *n);
            reg("store/upd_contended/lull", bm_upd_contended_lull, setup_lull, *n);
        }
        reg("store/get_zc/lfht", bm_get_zc_lfht, setup_bl_lfht, *n);
        reg("store/get_copy/lfht", bm_get_copy_lfht, setup_bl_lfht, *n);
        reg("store/get_copy/rwlock", bm_get_copy_rw, setup_bl_rwmap, *n);
        if (*n == hot) {
            reg("store/mix90/rwlock", bm_mix90_rw, setup_bl_rwmap, *n);
            reg("store/upd_disjoint/rwlock", bm_upd_disjoint_rw, setup_bl_rwmap, *n);
            reg("store/upd_contended/rwlock", bm_upd_contended_rw, setup_bl_rwmap, *n);
        }
        reg("store/get_copy/mutex", bm_get_copy_mx, setup_bl_mxmap, *n);
        if (*n == hot) {
            reg("store/mix90/mutex", bm_mix90_mx, setup_bl_mxmap, *n);
            reg("store/upd_disjoint/mutex", bm_upd_disjoint_mx, setup_bl_mxmap, *n);
            reg("store/upd_contended/mutex", bm_upd_contended_mx, setup_bl_mxmap, *n);
        }
    }
    lb_thread_counts(lb_register("store/control/alu", bm_control_alu));
    lb_atexit(bc_fixture_drop);
    return lb_run();
}
