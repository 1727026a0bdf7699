/*
 * bench/bench_wheel.c - lull_wheel against a binary min-heap timer queue.
 *
 * Both run on the same virtual clock (bench/common.h), advanced by the
 * benchmark, so both see the same timeline and nothing fires by accident.
 * The 1 ms tick is lull's default.  "Long" timers are idle timeouts of 6 to 12
 * hours, drawn at random, already pending before the measurement (far enough
 * out that none comes due however long a run lasts).
 *
 *   sched_cancel  schedule a short timer (1 ms .. 1 s) and cancel it, with P
 *                 long timers pending; every 1024 pairs time moves 100 us
 *                 and the queue is advanced (an event loop's turn).
 *                 One item = one pair.
 *   expiry        16384 timers of 1 ms .. 1 s (scheduled untimed), then time
 *                 moves 1 ms and the queue is advanced, 1000 times, with P
 *                 long timers pending.  One item = one fired timer.
 *   reschedule    N keepalive timers of 30 s; each op pushes the earliest one
 *                 30 s past now (round robin), time moves 1 ms per 1024 ops.
 *                 One item = one reschedule.
 *   memory        bytes per pending timer: what 1e6 long timers add to an
 *                 empty queue (malloc accounting; RSS growth as a cross-check).
 */
#include "baselines/heap.h"
#include "common.h"

#include <errno.h>
#include <lull/wheel.h>
#include <stdlib.h>

enum { BATCH = 64 };

#define MS  1000000ULL
#define SEC 1000000000ULL
#define LONG_MIN_NS (6 * 3600 * SEC)
#define LONG_SPAN_NS (6 * 3600 * SEC)
/* A fixture is rebuilt (between runs) once its clock has moved an hour: a run
 * then has 5 hours of virtual time (expiry moves 1 s per iteration) before a
 * long timer could come due; if one ever does, the case fails, not skews. */
#define FRESH_NS (3600 * SEC)
#define KEEPALIVE_NS (30 * SEC)
#define EXPIRY_TIMERS 16384

struct wfx {
    bool is_lull;
    lull_wheel *w;
    struct bl_heap *h;
    struct bc_vclock clk;
    uint64_t built_at;
    uint64_t fired;             /* by on_fire */
    size_t n;                   /* keepalive: handles[] */
    uint64_t *handles;
    size_t cursor;
};

static void on_fire(uint64_t t, void *arg)
{
    (void)t;
    ((struct wfx *)arg)->fired++;
}

/* ------------------------------------------------------------ the two queues */

static inline int q_schedule(struct wfx *f, uint64_t delay, uint64_t *t)
{
    return f->is_lull ? lull_wheel_schedule(f->w, delay, on_fire, f, t)
                      : bl_heap_schedule(f->h, delay, on_fire, f, t);
}
static inline int q_cancel(struct wfx *f, uint64_t t)
{
    return f->is_lull ? lull_wheel_cancel(f->w, t) : bl_heap_cancel(f->h, t);
}
static inline int q_reschedule(struct wfx *f, uint64_t t, uint64_t delay, uint64_t *nt)
{
    return f->is_lull ? lull_wheel_reschedule(f->w, t, delay, nt)
                      : bl_heap_reschedule(f->h, t, delay, nt);
}
static inline size_t q_advance(struct wfx *f)
{
    return f->is_lull ? lull_wheel_advance(f->w) : bl_heap_advance(f->h);
}

static struct wfx *wfx_new(bool is_lull)
{
    struct wfx *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->is_lull = is_lull;
    f->clk.now = 1000 * SEC;
    f->built_at = f->clk.now;
    if (is_lull) {
        struct lull_wheel_opts o = {.tick_ns = MS, .clock = bc_vclock_read, .clock_ctx = &f->clk};
        f->w = lull_wheel_create(&o);
    } else {
        f->h = bl_heap_create(bc_vclock_read, &f->clk, BL_HEAP_LOCKED);
    }
    if (!f->w && !f->h) {
        free(f);
        return NULL;
    }
    return f;
}

static void wfx_free(void *p)
{
    struct wfx *f = p;
    if (f->w)
        lull_wheel_destroy(f->w, 0);
    bl_heap_destroy(f->h);
    free(f->handles);
    free(f);
}

static int pending_long(struct wfx *f, int64_t n)
{
    uint64_t seed = 0x6c6f6e67, t;
    for (int64_t i = 0; i < n; i++) {
        if (q_schedule(f, LONG_MIN_NS + bc_pick(bc_rand(&seed), LONG_SPAN_NS), &t))
            return -1;
    }
    return 0;
}

static void *make_long(bool is_lull, int64_t n)
{
    struct wfx *f = wfx_new(is_lull);
    if (f && pending_long(f, n)) {
        wfx_free(f);
        return NULL;
    }
    return f;
}
static void *make_lull_long(int64_t n) { return make_long(true, n); }
static void *make_heap_long(int64_t n) { return make_long(false, n); }

static int long_fresh(void *p)
{
    struct wfx *f = p;
    return f->clk.now - f->built_at < FRESH_NS;
}

static void *make_keepalive(bool is_lull, int64_t n)
{
    struct wfx *f = wfx_new(is_lull);
    if (!f)
        return NULL;
    f->n = (size_t)n;
    f->handles = malloc((size_t)n * sizeof *f->handles);
    for (int64_t i = 0; f->handles && i < n; i++) {
        if (q_schedule(f, KEEPALIVE_NS, &f->handles[i])) {
            wfx_free(f);
            return NULL;
        }
    }
    if (!f->handles) {
        wfx_free(f);
        return NULL;
    }
    return f;
}
static void *make_lull_keepalive(int64_t n) { return make_keepalive(true, n); }
static void *make_heap_keepalive(int64_t n) { return make_keepalive(false, n); }

static struct wfx *g_fx;

static void setup_lull_long(lb_state *st)
{
    g_fx = bc_fixture("lull_long", lb_range(st, 0), make_lull_long, wfx_free, long_fresh);
    if (!g_fx)
        lb_skip(st, "fixture: lull wheel could not be built");
}
static void setup_heap_long(lb_state *st)
{
    g_fx = bc_fixture("heap_long", lb_range(st, 0), make_heap_long, wfx_free, long_fresh);
    if (!g_fx)
        lb_skip(st, "fixture: heap could not be built");
}
static void setup_lull_keepalive(lb_state *st)
{
    g_fx = bc_fixture("lull_ka", lb_range(st, 0), make_lull_keepalive, wfx_free, NULL);
    if (!g_fx)
        lb_skip(st, "fixture: lull wheel could not be built");
}
static void setup_heap_keepalive(lb_state *st)
{
    g_fx = bc_fixture("heap_ka", lb_range(st, 0), make_heap_keepalive, wfx_free, NULL);
    if (!g_fx)
        lb_skip(st, "fixture: heap could not be built");
}

/* ------------------------------------------------------------------- bodies */

static void bm_sched_cancel(lb_state *st)
{
    struct wfx *f = g_fx;
    uint64_t seed = bc_seed(st), errors = 0, ops = 0, fired0 = f->fired;
    while (lb_next_batch(st, BATCH)) {
        for (int i = 0; i < BATCH; i++) {
            uint64_t t;
            uint64_t delay = MS + bc_pick(bc_rand(&seed), SEC - MS);
            if (q_schedule(f, delay, &t) || q_cancel(f, t))
                errors++;
        }
        if (((ops += BATCH) & 1023) == 0) {
            bc_vclock_add(&f->clk, 100000);
            q_advance(f);
        }
    }
    if (errors || f->fired != fired0)
        lb_skip(st, "schedule/cancel failed, or a timer fired");
    lb_set_items_processed(st, lb_iters(st));
}

static void bm_expiry(lb_state *st)
{
    struct wfx *f = g_fx;
    uint64_t seed = bc_seed(st), errors = 0, fired = 0;
    while (lb_next(st)) {
        lb_pause_timing(st);
        uint64_t before = f->fired;
        for (int i = 0; i < EXPIRY_TIMERS; i++) {
            uint64_t t;
            errors += q_schedule(f, MS + bc_pick(bc_rand(&seed), SEC - MS), &t) != 0;
        }
        lb_resume_timing(st);
        for (int ms = 0; ms < 1000; ms++) {
            bc_vclock_add(&f->clk, MS);
            q_advance(f);
        }
        if (f->fired - before != EXPIRY_TIMERS)
            errors++;
        fired += f->fired - before;
    }
    if (errors)
        lb_skip(st, "expiry: schedule failed or not every timer fired once");
    lb_set_items_processed(st, fired);
}

static void bm_reschedule(lb_state *st)
{
    struct wfx *f = g_fx;
    uint64_t errors = 0, ops = 0, fired0 = f->fired;
    size_t i = f->cursor, n = f->n;
    while (lb_next_batch(st, BATCH)) {
        for (int j = 0; j < BATCH; j++) {
            errors += q_reschedule(f, f->handles[i], KEEPALIVE_NS, &f->handles[i]) != 0;
            if (++i == n)
                i = 0;
        }
        if (((ops += BATCH) & 1023) == 0) {
            bc_vclock_add(&f->clk, MS);
            q_advance(f);
        }
    }
    f->cursor = i;
    if (errors || f->fired != fired0)
        lb_skip(st, "reschedule failed, or a keepalive timer fired");
    lb_set_items_processed(st, lb_iters(st));
}

/* Not cached: built, measured and freed within the one iteration.  The
 * figure is what the pending timers add to an empty queue, by malloc's
 * accounting (bytes in use, mmapped chunks included; lull and the heap both
 * allocate through malloc), slack of grown arrays included.  RSS growth is
 * reported too, as a cross-check (it also counts freed-but-kept memory). */
static void bm_memory(lb_state *st, bool is_lull)
{
    int64_t n = lb_range(st, 0);
    bc_fixture_drop();
    size_t m0 = 0, r0 = 0, m1 = 0, r1 = 0;
    bool failed = false;
    while (lb_next(st)) {
        struct wfx *f = wfx_new(is_lull);
        if (!f) {
            failed = true;
            continue;
        }
        m0 = bc_malloc_bytes();
        r0 = bc_rss_bytes();
        failed = pending_long(f, n) != 0;
        m1 = bc_malloc_bytes();
        r1 = bc_rss_bytes();
        wfx_free(f);
    }
    if (failed) {
        lb_skip(st, "memory: scheduling failed");
        return;
    }
    double dm = m1 > m0 ? (double)(m1 - m0) : 0, dr = r1 > r0 ? (double)(r1 - r0) : 0;
    lb_counter(st, "bytes_per_timer", dm / (double)n, LB_SUM);
    lb_counter(st, "rss_bytes_per_timer", dr / (double)n, LB_SUM);
}
static void bm_memory_lull(lb_state *st) { bm_memory(st, true); }
static void bm_memory_heap(lb_state *st) { bm_memory(st, false); }

/* ------------------------------------------------------------- registration */

static lb_bench *reg(const char *name, lb_fn fn, lb_fn setup, const char *arg_name,
                     int64_t arg)
{
    lb_bench *b = lb_register(name, fn);
    lb_arg_name(b, arg_name);
    lb_arg(b, arg);
    lb_threads(b, 1);
    if (setup)
        lb_setup(b, setup);
    return b;
}

int main(int argc, char **argv)
{
    lb_init(&argc, argv);
    static const int64_t pending_default[] = {1000, 100000, 1000000, 0};
    static const int64_t pending_full[] = {1000, 10000, 100000, 1000000, 4000000, 0};
    static const int64_t ka_default[] = {100000, 0};
    static const int64_t ka_full[] = {1000, 100000, 1000000, 0};
    const int64_t *pending = lb_full() ? pending_full : pending_default;
    const int64_t *ka = lb_full() ? ka_full : ka_default;

    /* Memory first, while the process is fresh (RSS growth is then real;
     * with random interleaving it runs anywhere, and only bytes_per_timer,
     * malloc's own count, is a figure). */
    lb_iterations(reg("wheel/memory/lull", bm_memory_lull, NULL, "pending", 1000000), 1);
    lb_iterations(reg("wheel/memory/heap", bm_memory_heap, NULL, "pending", 1000000), 1);

    for (const int64_t *p = pending; *p; p++) {
        reg("wheel/sched_cancel/lull", bm_sched_cancel, setup_lull_long, "pending", *p);
        if (*p != 100000 || lb_full())
            reg("wheel/expiry/lull", bm_expiry, setup_lull_long, "pending", *p);
        reg("wheel/sched_cancel/heap", bm_sched_cancel, setup_heap_long, "pending", *p);
        if (*p != 100000 || lb_full())
            reg("wheel/expiry/heap", bm_expiry, setup_heap_long, "pending", *p);
    }
    for (const int64_t *n = ka; *n; n++) {
        reg("wheel/reschedule/lull", bm_reschedule, setup_lull_keepalive, "timers", *n);
        reg("wheel/reschedule/heap", bm_reschedule, setup_heap_keepalive, "timers", *n);
    }
    lb_atexit(bc_fixture_drop);
    return lb_run();
}
