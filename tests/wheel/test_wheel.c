/*
 * tests/wheel/test_wheel.c - the wheel's contract, one thread, virtual clock,
 * no sleeps.  Every test ends with lull_wheel_check and a clean destroy.
 */
#include "wheel_testlib.h"

#include <pthread.h>

static struct lt_clock clk;

/* ---- a fire log -------------------------------------------------------------- */
static long fired[8192];
static lull_timer fired_h[8192];
static size_t nfired;

static void log_fn(lull_timer t, void *arg)
{
    LT_CHECK(nfired < 8192);
    fired_h[nfired] = t;
    fired[nfired++] = (long)(intptr_t)arg;
}

static int setup(void **state)
{
    (void)state;
    nfired = 0;
    lull__wheel_shards = 0;
    wt_set(&clk, 1000 * SEC);
    return 0;
}

/* ---- bad input --------------------------------------------------------------- */

static void t_bad_input(void **state)
{
    (void)state;
    lull_wheel *w = lull_wheel_create(NULL);   /* defaults */
    assert_non_null(w);
    lull_timer t = 0;
    assert_int_equal(lull_wheel_schedule(NULL, 0, log_fn, NULL, &t), -EINVAL);
    assert_int_equal(lull_wheel_schedule(w, 0, NULL, NULL, &t), -EINVAL);
    assert_int_equal(lull_wheel_schedule(w, 0, log_fn, NULL, NULL), -EINVAL);
    assert_int_equal(lull_wheel_cancel(NULL, 1), -EINVAL);
    assert_int_equal(lull_wheel_cancel_sync(NULL, 1), -EINVAL);
    assert_int_equal(lull_wheel_reschedule(NULL, 1, 0, &t), -EINVAL);
    assert_int_equal(lull_wheel_reschedule(w, 1, 0, NULL), -EINVAL);
    assert_int_equal(lull_wheel_advance(NULL), 0);
    assert_true(lull_wheel_next_deadline(NULL) == UINT64_MAX);
    assert_int_equal(lull_wheel_pending(NULL), 0);
    assert_int_equal(lull_wheel_check(NULL, NULL), -EINVAL);
    assert_int_equal(lull_wheel_destroy(NULL, 0), -EINVAL);
    assert_true(lull_wheel_next_deadline(w) == UINT64_MAX);

    /* handle 0 and garbage handles: -ESTALE, never a crash */
    assert_int_equal(lull_wheel_schedule(w, 5 * SEC, log_fn, NULL, &t), 0);
    assert_true(t != 0);
    uint64_t seed = lt_seed(0x3141);
    lull_timer junk[] = { 0, t ^ 1, t + ((uint64_t)1 << 32), t & 0xffffffffu, UINT64_MAX,
                          0xffffffffu, ((uint64_t)1 << 32) | 5, ((uint64_t)7 << 32) | 0xfffffffeu };
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        lull_timer nt = 42;
        assert_int_equal(lull_wheel_cancel(w, junk[i]), -ESTALE);
        assert_int_equal(lull_wheel_cancel_sync(w, junk[i]), -ESTALE);
        assert_int_equal(lull_wheel_reschedule(w, junk[i], 0, &nt), -ESTALE);
        assert_true(nt == 42);
    }
    for (int i = 0; i < 100000; i++) {
        lull_timer g = lt_rand(&seed);
        if (g == t)
            continue;
        assert_int_equal(lull_wheel_cancel(w, g), -ESTALE);
    }
    assert_int_equal(lull_wheel_pending(w), 1);
    CHECK_WHEEL(w);
    assert_int_equal(lull_wheel_destroy(w, 0), 0);
}

/* ---- never early, and at the first advance at or after the deadline ---------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Schedule timers at base + delays[i] and walk the clock over every
 * deadline - 1 and deadline (plus the points in extra[]): after each advance
 * exactly the timers with deadline <= clock have fired, in deadline order. */
static void walk_deadlines(uint64_t tick, uint64_t base, const uint64_t *delays, size_t n,
                           const uint64_t *extra, size_t nextra)
{
    wt_set(&clk, base);
    lull_wheel *w = wt_wheel(&clk, tick, 0);
    uint64_t dl[64], pts[256];
    size_t np = 0;
    LT_CHECK(n <= 64 && 2 * n + nextra <= 256);
    nfired = 0;
    for (size_t i = 0; i < n; i++) {
        lull_timer t;
        dl[i] = base + delays[i];
        assert_int_equal(lull_wheel_schedule(w, delays[i], log_fn, (void *)(intptr_t)i, &t), 0);
        pts[np++] = dl[i] - 1;
        pts[np++] = dl[i];
    }
    for (size_t i = 0; i < nextra; i++)
        pts[np++] = base + extra[i];
    qsort(pts, np, sizeof(pts[0]), cmp_u64);
    CHECK_WHEEL(w);
    for (size_t p = 0; p < np; p++) {
        if (pts[p] < base)
            continue;
        wt_set(&clk, pts[p]);
        size_t before = nfired;
        size_t ran = lull_wheel_advance(w);
        assert_int_equal(ran, nfired - before);
        size_t due = 0;
        for (size_t i = 0; i < n; i++)
            due += dl[i] <= pts[p];
        assert_int_equal(nfired, due);       /* none early, none late */
        for (size_t k = before; k < nfired; k++) {
            assert_true(dl[fired[k]] <= pts[p]);
            if (k > 0)
                assert_true(dl[fired[k - 1]] <= dl[fired[k]]);
        }
        CHECK_WHEEL(w);
        uint64_t nd = lull_wheel_next_deadline(w);
        for (size_t i = 0; i < n; i++)
            if (dl[i] > pts[p])
                assert_true(nd <= dl[i]);    /* never later than the true one */
    }
    assert_int_equal(lull_wheel_pending(w), 0);
    assert_int_equal(lull_wheel_destroy(w, 0), 0);
}

static void t_never_early(void **state)
{
    (void)state;
    static const uint64_t delays[] = {
        1, 999, MS - 1, MS, MS + 1, 1500000, 63 * MS, 64 * MS, 64 * MS + 1, 4095 * MS,
        4096 * MS + 7, 262143 * MS + 999999, HOUR + 1, DAY - 1, 3 * DAY + 12345,
    };
    static const uint64_t extra[] = { 0, 1, 17, 500000, 2 * MS, 65 * MS + 3, 2 * HOUR };
    size_t n = sizeof(delays) / sizeof(delays[0]), ne = sizeof(extra) / sizeof(extra[0]);
    walk_deadlines(MS, 1000 * SEC, delays, n, extra, ne);              /* aligned clock */
    walk_deadlines(MS, 1000 * SEC + 300001, delays, n, extra, ne);     /* mid-tick clock */
    walk_deadlines(1, 77, delays, n, extra, ne);                       /* 1 ns tick */
    walk_deadlines(7 * MS + 3, 12345678901ull, delays, n, extra, ne);  /* odd tick */
}

/* Hours, days and years at a 1 ms tick: each timer fires at the first
 * advance at or after its deadline, through every level's cascade. */
static void t_long_delays(void **state)
{
    (void)state;
    static const uint64_t delays[] = {
        HOUR, HOUR + 1, HOUR + MS, 5 * HOUR + 17 * MS, DAY, DAY + 1, 7 * DAY,
        30 * DAY + 3 * HOUR, YEAR, YEAR + 1, 10 * YEAR, 10 * YEAR + 1, 50 * YEAR + 123456789,
    };
    uint64_t extra[128];
    size_t ne = 0;
    for (uint64_t h = 1; h < 24 * 40 && ne < 64; h += 13)
        extra[ne++] = h * HOUR + 7;         /* advances in between: cascades */
    for (uint64_t y = 1; y < 60 && ne < 128; y += 3)
        extra[ne++] = y * YEAR - 1;
    walk_deadlines(MS, 1000 * SEC, delays, sizeof(delays) / sizeof(delays[0]), extra, ne);
    /* and with no advance in between: one jump over them all */
    walk_deadlines(MS, 5 * SEC + 1, delays, sizeof(delays) / sizeof(delays[0]), NULL, 0);
}

/* ---- order: deadline, then schedule order ------------------------------------- */

static void t_order_ties(void **state)
{
    (void)state;
    lull_wheel *w = wt_wheel(&clk, MS, 0);
    uint64_t seed = lt_seed(0x0dde);
    enum { N = 600 };
    static uint64_t dl[N];
    nfired = 0;
    uint64_t base = clk.now;
    for (int i = 0; i < N; i++) {
        /* few distinct deadlines: many ties, within a tick and across levels */
        static const uint64_t pick[] = { 0, 1, MS / 2, MS, 3 * MS, 70 * MS, 70 * MS + 1, 5 * SEC, HOUR };
        uint64_t dly = pick[lt_rand(&seed) % 9];
        dl[i] = base + dly;
        lull_timer t;
        assert_int_equal(lull_wheel_schedule(w, dly, log_fn, (void *)(intptr_t)i, &t), 0);
        if (i % 7 == 0)
            lull_wheel_advance(w);   /* the clock stands: only delay 0 is due */
    }
    CHECK_WHEEL(w);
    for (size_t k = 0; k < nfired; k++)
        assert_true(dl[fired[k]] == base);
    wt_set(&clk, base + HOUR);
    lull_wheel_advance(w);
    assert_int_equal(nfired, (size_t)N);
    for (size_t k = 1; k < nfired; k++) {
        long a = fired[k - 1], b = fired[k];
        assert_true(dl[a] < dl[b] || (dl[a] == dl[b] && a < b));
    }
    CHECK_WHEEL(w);
    assert_int_equal(lull_wheel_destroy(w, 0), 0);
}

/* Several shards (threads schedule into different ones): advance merges
 * them, still in (deadline, schedule order). */
struct shard_job {
    lull_wheel *w;
    int first, n;
    uint64_t seed;
    uint64_t *dl;
};

static void *shard_job_run(void *arg)
{
    struct shard_job *j = arg;
    for (int i = j->first; i < j->first + j->n; i++) {
        static const uint64_t pick[] = { 0, 1, MS, 3 * MS, 70 * MS, 5 * SEC };
        uint64_t dly = pick[lt_rand(&j->seed) % 6];
        lull_timer t;
        j->dl[i] = clk.now + dly;
        LT_CHECK(lull_wheel_schedule(j->w, dly, log_fn, (void *)(intptr_t)i, &t) == 0);
    }
    return NULL;
}

static void t_order_across_shards(void **state)
{
    (void)state;
    lull__wheel_shards = 4;
    lull_wheel *w = wt_wheel(&clk, MS, 0);
    struct lull__wheel_stats st;
    lull__wheel_stats(w, &st);
    assert_int_equal(st.shards, 4);
    static uint64_t dl[400];
    uint64_t seed = lt_seed(0x5ad);
    for (int k = 0; k < 8; k++) {   /* one thread at a time: a known schedule order */
        struct shard_job j = { w, k * 50, 50, seed + (uint64_t)k, dl };
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, shard_job_run, &j), 0);
        assert_int_equal(pthread_join(th, NULL), 0);
    }
    CHECK_WHEEL(w);
    wt_set(&clk, clk.now + 10 * SEC);
    nfired = 0;
    assert_int_equal(lull_wheel_advance(w), 400);
    for (size_t k = 1; k < nfired; k++) {
        long a = fired[k - 1], b = fired[k];
        assert_true(dl[a] < dl[b] || (dl[a] == dl[b] && a < b));
    }
    CHECK_WHEEL(w);
    assert_int_equal(lull_wheel_destroy(w, 0), 0);
}

/* ---- cancel, cancel_sync, reschedule in every state ---------------------------- */

static lull_wheel *cb_w;
static lull_timer cb_other, cb_other2, cb_new;
static int cb_rc[8];

static void self_probe(lull_timer t, void *arg)
{
    (void)arg;
    lull_timer nt = 77;
    cb_rc[0] = lull_wheel_cancel(cb_w, t);
    cb_rc[1] = lull_wheel_cancel_sync(cb_w, t);
    cb_rc[2] = lull_wheel_reschedule(cb_w, t, 0, &nt);
    cb_rc[3] = lull_wheel_destroy(cb_w, 0);
    cb_rc[4] = (int)lull_wheel_advance(cb_w);
    cb_rc[5] = nt == 77;
    log_fn(t, arg);
}

static void t_cancel_states(void **state)
{
    (void)state;
    lull_wheel *w = cb_w = wt_wheel(&clk, MS, 0);
    lull_timer a, b, c, d, e, nt;

    /* pending -> 0, then stale */
    assert_int_equal(lull_wheel_schedule(w, SEC, log_fn, (void *)1, &a), 0);
    assert_int_equal(lull_wheel_pending(w), 1);
    assert_int_equal(lull_wheel_cancel(w, a), 0);
    assert_int_equal(lull_wheel_pending(w), 0);
    assert_int_equal(lull_wheel_cancel(w, a), -ESTALE);
    assert_int_equal(lull_wheel_cancel_sync(w, a), -ESTALE);
    assert_int_equal(lull_wheel_reschedule(w, a, 0, &nt), -ESTALE);
    CHECK_WHEEL(w);

    /* pending -> cancel_sync 0 */
    assert_int_equal(lull_wheel_schedule(w, SEC, log_fn, (void *)2, &b), 0);
    assert_int_equal(lull_wheel_cancel_sync(w, b), 0);
    assert_int_equal(lull_wheel_cancel_sync(w, b), -ESTALE);

    /* fired -> stale */
    nfired = 0;
    assert_int_equal(lull_wheel_schedule(w, 0, log_fn, (void *)3, &c), 0);
    assert_int_equal(lull_wheel_advance(w), 1);
    assert_true(fired_h[0] == c);   /* fn gets the handle schedule returned */
    assert_int_equal(lull_wheel_cancel(w, c), -ESTALE);
    assert_int_equal(lull_wheel_cancel_sync(w, c), -ESTALE);
    assert_int_equal(lull_wheel_reschedule(w, c, 0, &nt), -ESTALE);

    /* running (from its own callback): -EINPROGRESS, -EDEADLK, -ESTALE */
    assert_int_equal(lull_wheel_schedule(w, MS, self_probe, (void *)4, &d), 0);
    wt_set(&clk, clk.now + MS);
    assert_int_equal(lull_wheel_advance(w), 1);
    assert_int_equal(cb_rc[0], -EINPROGRESS);
    assert_int_equal(cb_rc[1], -EDEADLK);
    assert_int_equal(cb_rc[2], -ESTALE);
    assert_int_equal(cb_rc[3], -EDEADLK);  /* destroy from a callback: nothing done */
    assert_int_equal(cb_rc[4], 0);         /* nested advance of the same wheel */
    assert_int_equal(cb_rc[5], 1);         /* *nt untouched on failure */
    CHECK_WHEEL(w);

    /* stale handle whose slot was reused: touches nothing */
    assert_int_equal(lull_wheel_schedule(w, SEC, log_fn, (void *)5, &e), 0);
    assert_int_equal(lull_wheel_cancel(w, e), 0);
    lull_timer f;
    assert_int_equal(lull_wheel_schedule(w, SEC, log_fn, (void *)6, &f), 0);
    assert_int_equal((uint32_t)f, (uint32_t)e);    /* same slot ... */
    assert_true(f != e);                           /* ... new epoch */
    assert_int_equal(lull_wheel_cancel(w, e), -ESTALE);
    assert_int_equal(lull_wheel_cancel_sync(w, e), -ESTALE);
    assert_int_equal(lull_wheel_reschedule(w, e, 0, &nt), -ESTALE);
    assert_int_equal(lull_wheel_pending(w), 1);
    nfired = 0;
    wt_set(&clk, clk.now + SEC);
    assert_int_equal(lull_wheel_advance(w), 1);
    assert_int_equal(fired[0], 6);
    CHECK_WHEEL(w);
    assert_int_equal(lull_wheel_destroy(w, 0), 0);
}

/* Within one advance: a callback cancels and reschedules timers that the
 * advance has collected but not fired yet. */
static void cancel_others(lull_timer t, void *arg)
{
    cb_rc[0] = lull_wheel_cancel(cb_w, cb_other);
    cb_rc[1] = lull_wheel_cancel(cb_w, cb_other);
    cb_rc[2] = lull_wheel_reschedule(cb_w, cb_other2, 5 * MS, &cb_new);
    log_fn(t, arg);
}

static void t_cancel_collected(void **state)
{
    (void)state;
    lull_wheel *w = cb_w = wt_wheel(&clk, MS, 0);
    lull_timer x;
    assert_int_equal(lull_wheel_schedule(w, MS, cancel_others, (void *)1, &x), 0);
    assert_int_equal(lull_wheel_schedule(w, MS, log_fn, (void *)2, &cb_other), 0);
    assert_int_equal(lull_wheel_schedule(w, 2 * MS, log_fn, (void *)3, &cb_other2), 0);
    nfired = 0;
    wt_set(&clk, clk.now + 2 * MS);
    assert_int_equal(lull_wheel_advance(w), 1);   /* only x: 2 cancelled, 3 moved */
    assert_int_equal(cb_rc[0], 0);
    assert_int_equal(cb_rc[1], -ESTALE);
    assert_int_equal(cb_rc[2], 0);
    assert_int_equal(nfired, 1);
    assert_int_equal(lull_wheel_pending(w), 1);
    assert_int_equal(lull_wheel_cancel(w, cb_other2), -ESTALE);
    CHECK_WHEEL(w);
    wt_set(&clk, clk.now + 5 * MS - 1);
    assert_int_equal(lull_wheel_advance(w), 0);
    wt_set(&clk, clk.now + 1);
    assert_int_equal(lull_wheel_advance(w), 1);
    assert_true(fired_h[1] == cb_new);
    CHECK_WHEEL(w);
    assert_int_equal(lull_wheel_destroy(w, 0), 0);
}

static void t_reschedule(void **state)
{
    (void)state;
    lull_wheel *w = wt_wheel(&clk, MS, 2);
    uint64_t base = clk.now;
    lull_timer a, b, na, nb;
    assert_int_equal(lull_wheel_schedule(w, 10 * SEC, log_fn, (void *)1, &a), 0);
    assert_int_equal(lull_wheel_schedule(w, SEC, log_fn, (void *)2, &b), 0);
    /* at max_timers: needs no capacity, allocates nothing */
    lull__fault_arm(1);
    assert_int_equal(lull_wheel_reschedule(w, a, SEC / 2, &na), 0);
    assert_false(lull__fault_fired());
    assert_true(na != a && (uint32_t)na == (uint32_t)a);
    assert_int_equal(lull_wheel_cancel(w, a), -ESTALE);        /* old handle stale at once */
    assert_int_equal(lull_wheel_reschedule(w, a, 0, &nb), -ESTALE);
    assert_int_equal(lull_wheel_reschedule(w, b, 20 * SEC, &nb), 0);   /* later */
    assert_int_equal(lull_wheel_pending(w), 2);
    assert_true(lull_wheel_next_deadline(w) == base + SEC / 2);
    CHECK_WHEEL(w);
    nfired = 0;
    wt_set(&clk, base + SEC / 2 - 1);
    assert_int_equal(lull_wheel_advance(w), 0);
    wt_set(&clk, base + SEC / 2);
    assert_int_equal(lull_wheel_advance(w), 1);
    assert_true(fired_h[0] == na);
    wt_set(&clk, base + 10 * SEC);
    assert_int_equal(lull_wheel_advance(w), 0);               /* b was moved to 20 s */
    wt_set(&clk, base + 20 * SEC);
    assert_int_equal(lull_wheel_advance(w), 1);
    assert_true(fired_h[1] == nb);
    assert_int_equal(lull_wheel_reschedule(w, nb, 0, &a), -ESTALE);  /* fired */
    /* cancelled */
    assert_int_equal(lull_wheel_schedule(w, SEC, log_fn, (void *)3, &a), 0);
    assert_int_equal(lull_wheel_cancel(w, a), 0);
    assert_int_equal(lull_wheel_reschedule(w, a, 0, &na), -ESTALE);
    CHECK_WHEEL(w);
    assert_int_equal(lull_wheel_destroy(w, 0), 0);
}

/* A slot's epochs run out: a freed slot retires, a rescheduled timer moves. */
static void t_epoch_exhaustion(void **state)
{
    (void)state;
    lull_wheel *w = wt_wheel(&clk, MS, 0);
    struct lull__wheel_stats st;
    lull_timer a, b, c, d;
    assert_int_equal(lull_wheel_schedule(w, SEC, log_fn, (void *)1, &a), 0);
    assert_int_equal(lull__wheel_set_epoch(w, &a, UINT32_MAX - 1), 0);
    assert_int_equal(lull_wheel_reschedule(w, a, SEC, &b), 0);
    assert_int_equal((uint32_t)(b >> 32), UINT32_MAX);
    assert_int_equal((uint32_t)b, (uint32_t)a);
    assert_int_equal(lull_wheel_reschedule(w, b, 2 * SEC, &c), 0);  /* moves */
    assert_true((uint32_t)c != (uint32_t)a);
    assert_int_equal(lull_wheel_cancel(w, b), -ESTALE);
    lull__wheel_stats(w, &st);
    assert_int_equal(st.retired, 1);
    CHECK_WHEEL(w);
    /* a retired slot is never handed out again */
    for (int i = 0; i < 200; i++) {
        assert_int_equal(lull_wheel_schedule(w, HOUR, log_fn, NULL, &d), 0);
        assert_true((uint32_t)d != (uint32_t)a);
        assert_int_equal(lull_wheel_cancel(w, d), 0);
    }
    /* cancel and fire at the last epoch retire too */
    assert_int_equal(lull_wheel_schedule(w, SEC, log_fn, (void *)4, &d), 0);
    assert_int_equal(lull__wheel_set_epoch(w, &d, UINT32_MAX), 0);
    assert_int_equal(lull_wheel_cancel(w, d), 0);
    assert_int_equal(lull_wheel_schedule(w, SEC, log_fn, (void *)5, &d), 0);
    assert_int_equal(lull__wheel_set_epoch(w, &d, UINT32_MAX), 0);
    nfired = 0;
    wt_set(&clk, clk.now + 2 * SEC);
    assert_int_equal(lull_wheel_advance(w), 2);
    assert_true(fired_h[0] == d && fired_h[1] == c);
    lull__wheel_stats(w, &st);
    assert_int_equal(st.retired, 3);
    CHECK_WHEEL(w);
    assert_int_equal(lull_wheel_destroy(w, 0), 0);
}

/* ---- delay 0, huge delays ------------------------------------------------------- */

static void t_delay_edges(void **state)
{
    (void)state;
    wt_set(&clk, 1000 * SEC + 300000);     /* mid-tick */
    lull_wheel *w = wt_wheel(&clk, MS, 0);
    lull_timer t, big, big2;
    nfired = 0;
    assert_int_equal(lull_wheel_schedule(w, 0, log_fn, (void *)1, &t), 0);
    assert_true(lull_wheel_next_deadline(w) == clk.now);
    assert_int_equal(lull_wheel_advance(w), 1);     /* due at once, same clock */

    /* saturates just below UINT64_MAX, never wraps */
    assert_int_equal(lull_wheel_schedule(w, UINT64_MAX, log_fn, (void *)2, &big), 0);
    assert_int_equal(lull_wheel_schedule(w, UINT64_MAX - clk.now + 5, log_fn, (void *)3, &big2), 0);
    assert_true(lull_wheel_next_deadline(w) <= UINT64_MAX - 1);
    assert_true(lull_wheel_next_deadline(w) > clk.now);
    assert_int_equal(lull_wheel_advance(w), 0);
    CHECK_WHEEL(w);
    wt_set(&clk, UINT64_MAX - 5 * SEC);            /* centuries later, one advance */
    assert_int_equal(lull_wheel_advance(w), 0);
    lull_timer s1, s2;
    assert_int_equal(lull_wheel_schedule(w, SEC, log_fn, (void *)4, &s1), 0);
    assert_int_equal(lull_wheel_schedule(w, 10 * SEC, log_fn, (void *)5, &s2), 0);  /* saturates */
    CHECK_WHEEL(w);
    wt_set(&clk, UINT64_MAX - 4 * SEC);
    assert_int_equal(lull_wheel_advance(w), 1);
    assert_int_equal(fired[1], 4);
    wt_set(&clk, UINT64_MAX - 2);
    assert_int_equal(lull_wheel_advance(w), 0);
    assert_true(lull_wheel_next_deadline(w) == UINT64_MAX - 1);
    wt_set(&clk, UINT64_MAX - 1);
    assert_int_equal(lull_wheel_advance(w), 3);
    assert_int_equal(fired[2], 2);  /* equal (saturated) deadlines: schedule order */
    assert_int_equal(fired[3], 3);
    assert_int_equal(fired[4], 5);
    assert_true(lull_wheel_next_deadline(w) == UINT64_MAX);
    CHECK_WHEEL(w);
    assert_int_equal(lull_wheel_destroy(w, 0), 0);
}

/* A callback that re-arms itself with delay 0 fires once per advance. */
static int rearm_count;
static void rearm(lull_timer t, void *arg)
{
    (void)t;
    rearm_count++;
    lull_timer nt;
    LT_CHECK(lull_wheel_schedule(cb_w, 0, rearm, arg, &nt) == 0);
}

static void t_rearm_delay0(void **state)
{
    (void)state;
    lull_wheel *w = cb_w = wt_wheel(&clk, MS, 0);
    lull_timer t;
    rearm_count = 0;
    assert_int_equal(lull_wheel_schedule(w, 0, rearm, NULL, &t), 0);
    for (int i = 1; i <= 50; i++) {
        assert_int_equal(lull_wheel_advance(w), 1);
        assert_int_equal(rearm_count, i);
        assert_int_equal(lull_wheel_pending(w), 1);
        CHECK_WHEEL(w);
    }
    assert_int_equal(lull_wheel_destroy(w, 0), 0);
}

/* ---- capacity ----------------------------------------------------------------------- */

static void sched_at_limit(lull_timer t, void *arg)
{
    (void)t;
    (void)arg;
    lull_timer nt;
    cb_rc[0] = lull_wheel_schedule(cb_w, HOUR, log_fn, NULL, &nt);
    cb_rc[1] = lull_wheel_schedule(cb_w, HOUR, log_fn, NULL, &nt);
}

static void t_max_timers(void **state)
{
    (void)state;
    lull_wheel *w = cb_w = wt_wheel(&clk, MS, 4);
    lull_timer t[5];
    for (int i = 0; i < 4; i++)
        assert_int_equal(lull_wheel_schedule(w, SEC + (uint64_t)i, log_fn, NULL, &t[i]), 0);
    assert_int_equal(lull_wheel_schedule(w, SEC, log_fn, NULL, &t[4]), -ENOSPC);
    assert_int_equal(lull_wheel_pending(w), 4);
    assert_int_equal(lull_wheel_cancel(w, t[1]), 0);           /* freed at once */
    assert_int_equal(lull_wheel_schedule(w, SEC, log_fn, NULL, &t[1]), 0);
    assert_int_equal(lull_wheel_schedule(w, SEC, log_fn, NULL, &t[4]), -ENOSPC);
    struct lull__wheel_stats st;
    lull__wheel_stats(w, &st);
    assert_int_equal(st.slots, 4);                             /* the memory too */
    CHECK_WHEEL(w);
    /* a firing timer is no longer pending: its callback may take its place */
    lull_timer x;
    assert_int_equal(lull_wheel_cancel(w, t[0]), 0);
    assert_int_equal(lull_wheel_schedule(w, MS, sched_at_limit, NULL, &x), 0);
    wt_set(&clk, clk.now + MS);
    assert_int_equal(lull_wheel_advance(w), 1);
    assert_int_equal(cb_rc[0], 0);
    assert_int_equal(cb_rc[1], -ENOSPC);
    assert_int_equal(lull_wheel_pending(w), 4);
    CHECK_WHEEL(w);
    assert_int_equal(lull_wheel_destroy(w, 0), 0);
}

/* ---- an advance costs what it fires and the levels, not the time ---------------- */

static void t_idle_years(void **state)
{
    (void)state;
    lull_wheel *w = wt_wheel(&clk, MS, 0);
    struct lull__wheel_stats st0, st1;
    uint64_t base = clk.now;
    wt_set(&clk, base + 10 * YEAR);      /* 3.15e11 ticks of nothing */
    assert_int_equal(lull_wheel_advance(w), 0);
    lull__wheel_stats(w, &st0);
    assert_int_equal(st0.buckets, 0);
    assert_int_equal(st0.moves, 0);

    base = clk.now;
    static const uint64_t d[] = { MS, 5 * YEAR, 10 * YEAR, 10 * YEAR + MS };
    lull_timer t;
    for (int i = 0; i < 4; i++)
        assert_int_equal(lull_wheel_schedule(w, d[i], log_fn, (void *)(intptr_t)i, &t), 0);
    nfired = 0;
    wt_set(&clk, base + 10 * YEAR);
    assert_int_equal(lull_wheel_advance(w), 3);
    assert_int_equal(fired[0], 0);
    assert_int_equal(fired[1], 1);
    assert_int_equal(fired[2], 2);
    lull__wheel_stats(w, &st1);
    /* each timer is touched at most once per level */
    assert_true(st1.buckets - st0.buckets <= 4 * LW_LEVELS);
    assert_true(st1.moves - st0.moves <= 4 * LW_LEVELS);
    CHECK_WHEEL(w);
    wt_set(&clk, base + 10 * YEAR + MS);
    assert_int_equal(lull_wheel_advance(w), 1);
    CHECK_WHEEL(w);
    assert_int_equal(lull_wheel_destroy(w, 0), 0);
}

/* ---- next_deadline -------------------------------------------------------------------- */

static void t_next_deadline(void **state)
{
    (void)state;
    lull_wheel *w = wt_wheel(&clk, MS, 0);
    uint64_t base = clk.now;
    lull_timer a, b;
    assert_true(lull_wheel_next_deadline(w) == UINT64_MAX);
    assert_int_equal(lull_wheel_schedule(w, 5 * SEC, log_fn, NULL, &a), 0);
    assert_true(lull_wheel_next_deadline(w) == base + 5 * SEC);
    assert_int_equal(lull_wheel_schedule(w, 1500000, log_fn, NULL, &b), 0);
    assert_true(lull_wheel_next_deadline(w) == base + 1500000);
    assert_int_equal(lull_wheel_cancel(w, b), 0);
    assert_true(lull_wheel_next_deadline(w) <= base + 5 * SEC);
    /* sleeping until next_deadline and advancing always makes progress */
    size_t wakes = 0;
    while (lull_wheel_pending(w)) {
        uint64_t nd = lull_wheel_next_deadline(w);
        assert_true(nd <= base + 5 * SEC && nd >= clk.now);
        wt_set(&clk, nd);
        lull_wheel_advance(w);
        CHECK_WHEEL(w);
        assert_true(++wakes <= LW_LEVELS + 2);
    }
    assert_true(clk.now == base + 5 * SEC);
    assert_true(lull_wheel_next_deadline(w) == UINT64_MAX);
    assert_int_equal(lull_wheel_destroy(w, 0), 0);
}

/* ---- out of memory: every schedule fails cleanly or succeeds ------------------------- */

static void t_alloc_failure_sweep(void **state)
{
    (void)state;
    bool hit = true;
    for (unsigned long n = 1; hit; n++) {
        lull__fault_arm(n);
        struct lull_wheel_opts o = { .tick_ns = MS, .clock = lt_clock_read, .clock_ctx = &clk };
        lull_wheel *w = lull_wheel_create(&o);
        if (!w) {
            assert_int_equal(errno, ENOMEM);
            assert_true(lull__fault_fired());
            continue;
        }
        lull_timer t[400];
        size_t ok = 0;
        for (int i = 0; i < 400; i++) {
            size_t before = lull_wheel_pending(w);
            int rc = lull_wheel_schedule(w, (uint64_t)(i % 50) * MS, log_fn, NULL, &t[ok]);
            if (rc == -ENOMEM) {
                assert_int_equal(lull_wheel_pending(w), before);   /* nothing changed */
                CHECK_WHEEL(w);
                continue;
            }
            assert_int_equal(rc, 0);
            ok++;
        }
        hit = lull__fault_fired();
        for (size_t i = 0; i < ok; i += 2)
            assert_int_equal(lull_wheel_cancel(w, t[i]), 0);
        nfired = 0;
        wt_set(&clk, clk.now + 100 * MS);
        assert_int_equal(lull_wheel_advance(w), ok / 2);
        CHECK_WHEEL(w);
        assert_int_equal(lull_wheel_destroy(w, 0), 0);
    }
}

/* The driver thread cannot start: create fails with its error, no hang. */
static void t_driver_start_failure(void **state)
{
    (void)state;
    lull__thread_fault_arm(1);          /* the driver's pthread_create fails: EAGAIN */
    struct lull_wheel_opts o = { .driver_thread = true };
    errno = 0;
    assert_null(lull_wheel_create(&o));
    assert_int_equal(errno, EAGAIN);
}

/* destroy cancels every pending timer: no callback runs; later calls refused */
static void t_destroy_pending(void **state)
{
    (void)state;
    lull_wheel *w = wt_wheel(&clk, MS, 0);
    lull_timer t;
    nfired = 0;
    for (int i = 0; i < 300; i++)
        assert_int_equal(lull_wheel_schedule(w, (uint64_t)i * 10 * MS, log_fn, NULL, &t), 0);
    wt_set(&clk, clk.now + HOUR);
    assert_int_equal(lull_wheel_destroy(w, 0), 0);
    assert_int_equal(nfired, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(t_bad_input, setup),
        cmocka_unit_test_setup(t_never_early, setup),
        cmocka_unit_test_setup(t_long_delays, setup),
        cmocka_unit_test_setup(t_order_ties, setup),
        cmocka_unit_test_setup(t_order_across_shards, setup),
        cmocka_unit_test_setup(t_cancel_states, setup),
        cmocka_unit_test_setup(t_cancel_collected, setup),
        cmocka_unit_test_setup(t_reschedule, setup),
        cmocka_unit_test_setup(t_epoch_exhaustion, setup),
        cmocka_unit_test_setup(t_delay_edges, setup),
        cmocka_unit_test_setup(t_rearm_delay0, setup),
        cmocka_unit_test_setup(t_max_timers, setup),
        cmocka_unit_test_setup(t_idle_years, setup),
        cmocka_unit_test_setup(t_next_deadline, setup),
        cmocka_unit_test_setup(t_alloc_failure_sweep, setup),
        cmocka_unit_test_setup(t_driver_start_failure, setup),
        cmocka_unit_test_setup(t_destroy_pending, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
