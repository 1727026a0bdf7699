/*
 * tests/wheel/test_wheel_paths.c - the wheel's fast paths, each driven on
 * purpose (the randomized tests reach them too, but not by design):
 *
 *   - the tick of a deadline by multiply-high instead of a divide: exact for
 *     every 64-bit ns, checked against `/` at edges and at random;
 *   - the bucket of the clock's own tick, left in place while nothing in it
 *     is due: a timer rescheduled earlier inside it, or scheduled into it,
 *     must lower its bound, or it would fire late;
 *   - a reschedule that stays in its bucket (moved in place) against one
 *     that changes bucket;
 *   - an advance that fires more timers than its array holds (the sorted
 *     per-shard lists), with callbacks cancelling and rescheduling timers
 *     still to come in it;
 *   - the shards' caches of free slots spilling to the free stack.
 * Every test ends with lull_wheel_check and a clean destroy.
 */
#include "wheel_testlib.h"

static struct lt_clock clk;

static long fired[4096];
static lull_timer fired_h[4096];
static uint64_t fired_at[4096];
static size_t nfired;

static void log_fn(lull_timer t, void *arg)
{
    LT_CHECK(nfired < 4096);
    fired_h[nfired] = t;
    fired_at[nfired] = __atomic_load_n(&clk.now, __ATOMIC_ACQUIRE);
    fired[nfired++] = (long)(intptr_t)arg;
}

static int setup(void **state)
{
    (void)state;
    nfired = 0;
    lull__wheel_shards = 1;
    lull__wslab_cache_max = LW_CACHE_MAX;
    wt_set(&clk, 1000 * SEC);
    return 0;
}

/* ---- lw_tick: ns / tick_ns without a divide ------------------------------------ */

static void t_tick_exact(void **state)
{
    (void)state;
    static const uint64_t ticks[] = {
        1, 2, 3, 5, 7, 10, 1000, 1024, 999983, 1000000, 1000001, 16777215, 999999937,
        1000000000, 4294967295ull, 4294967297ull, 1ull << 40, (1ull << 40) + 1, 3ull << 61,
        UINT64_MAX / 3, (1ull << 63) - 1, 1ull << 63, (1ull << 63) + 1, UINT64_MAX - 1,
        UINT64_MAX,
    };
    struct lull_wheel *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    uint64_t seed = lt_seed(0x71c4);
    for (size_t i = 0; i < sizeof(ticks) / sizeof(ticks[0]); i++) {
        uint64_t t = ticks[i];
        lull__wheel_tick_init(w, t);
        uint64_t edge[] = { 0, 1, t - 1, t, t + 1, 2 * t - 1, 2 * t, UINT64_MAX, UINT64_MAX - 1,
                            UINT64_MAX - t, (UINT64_MAX / t) * t, (UINT64_MAX / t) * t - 1,
                            1000 * SEC, 1ull << 63, (1ull << 63) - 1 };
        for (size_t k = 0; k < sizeof(edge) / sizeof(edge[0]); k++)
            if (lw_tick(w, edge[k]) != edge[k] / t)
                fail_msg("tick %llu: %llu / tick gave %llu, not %llu", (unsigned long long)t,
                         (unsigned long long)edge[k], (unsigned long long)lw_tick(w, edge[k]),
                         (unsigned long long)(edge[k] / t));
        for (int k = 0; k < 200000; k++) {
            uint64_t r = lt_rand(&seed);
            uint64_t ns = k & 1 ? r : r >> (r & 63);           /* every magnitude */
            uint64_t q = ns / t;
            uint64_t near = q * t + (t > 1 ? (r >> 7) % 3 : 0);  /* near a multiple */
            assert_true(lw_tick(w, ns) == q);
            if (near >= q * t)
                assert_true(lw_tick(w, near) == near / t);
        }
    }
    free(w);
}

/* ---- the bucket of the clock's tick, left while nothing in it is due ------------- */

static void t_current_tick_bucket(void **state)
{
    (void)state;
    lull_wheel *w = wt_wheel(&clk, MS, 0);
    uint64_t c0 = clk.now;                     /* on a tick boundary */
    lull_timer a, b, c, na;
    assert_int_equal(lull_wheel_advance(w), 0);
    assert_int_equal(lull_wheel_schedule(w, MS + MS / 2, log_fn, (void *)1, &a), 0);
    assert_int_equal(lull_wheel_schedule(w, MS + 9 * MS / 10, log_fn, (void *)2, &b), 0);
    /* the clock reaches their tick, but neither deadline: the bucket stays */
    wt_set(&clk, c0 + MS);
    assert_int_equal(lull_wheel_advance(w), 0);
    assert_true(lull_wheel_next_deadline(w) == c0 + MS + MS / 2);  /* exact, not the tick */
    CHECK_WHEEL(w);
    /* into that bucket, earlier than anything in it: fires at its ns */
    assert_int_equal(lull_wheel_schedule(w, MS / 5, log_fn, (void *)3, &c), 0);   /* c0 + 1.2 ms */
    assert_true(lull_wheel_next_deadline(w) == c0 + MS + MS / 5);
    /* moved earlier in place (same bucket): must lower its bound */
    assert_int_equal(lull_wheel_reschedule(w, a, MS / 10, &na), 0);             /* c0 + 1.1 ms */
    assert_true(lull_wheel_next_deadline(w) == c0 + MS + MS / 10);
    CHECK_WHEEL(w);
    wt_set(&clk, c0 + MS + MS / 10 - 1);
    assert_int_equal(lull_wheel_advance(w), 0);
    wt_set(&clk, c0 + MS + MS / 10);
    assert_int_equal(lull_wheel_advance(w), 1);               /* a, at its ns */
    assert_true(fired_h[0] == na && fired_at[0] == c0 + MS + MS / 10);
    /* taken out of the bucket, the others left in it, its bound exact */
    assert_true(lull_wheel_next_deadline(w) == c0 + MS + MS / 5);
    CHECK_WHEEL(w);
    wt_set(&clk, c0 + MS + MS / 5 - 1);
    assert_int_equal(lull_wheel_advance(w), 0);
    CHECK_WHEEL(w);
    wt_set(&clk, c0 + MS + MS / 5);
    assert_int_equal(lull_wheel_advance(w), 1);               /* c */
    assert_int_equal(fired[1], 3);
    assert_true(lull_wheel_next_deadline(w) == c0 + MS + 9 * MS / 10);
    CHECK_WHEEL(w);
    wt_set(&clk, c0 + 2 * MS);                                 /* the next tick: b */
    assert_int_equal(lull_wheel_advance(w), 1);
    assert_int_equal(fired[2], 2);
    assert_int_equal(lull_wheel_pending(w), 0);
    assert_true(lull_wheel_next_deadline(w) == UINT64_MAX);
    CHECK_WHEEL(w);
    assert_int_equal(lull_wheel_destroy(w, 0), 0);
}

/* ---- reschedule: in place (same bucket) or moved ------------------------------------ */

static void t_reschedule_in_place(void **state)
{
    (void)state;
    lull_wheel *w = wt_wheel(&clk, MS, 0);
    uint64_t c0 = clk.now;
    enum { N = 64 };
    lull_timer t[N];
    /* 30 s keepalives, pushed later a little (same coarse bucket) or a lot */
    for (int i = 0; i < N; i++)
        assert_int_equal(lull_wheel_schedule(w, 30 * SEC + (uint64_t)i, log_fn,
                                             (void *)(intptr_t)i, &t[i]), 0);
    for (int round = 0; round < 50; round++) {
        wt_set(&clk, clk.now + 7 * MS);
        assert_int_equal(lull_wheel_advance(w), 0);
        for (int i = 0; i < N; i++) {
            lull_timer old = t[i];
            uint64_t delay = 30 * SEC + (uint64_t)(round % 7 == 3 ? i * 3 * SEC : (uint64_t)i);
            assert_int_equal(lull_wheel_reschedule(w, old, delay, &t[i]), 0);
            assert_true(t[i] != old && (uint32_t)t[i] == (uint32_t)old);
            assert_int_equal(lull_wheel_cancel(w, old), -ESTALE);
        }
        CHECK_WHEEL(w);
    }
    /* they fire in deadline order, ties by (re)schedule order, at their ns */
    uint64_t last = clk.now;
    nfired = 0;
    for (uint64_t ms = 0; nfired < N && ms < 400 * 1000; ms++) {
        wt_set(&clk, last + ms * MS);
        lull_wheel_advance(w);
    }
    assert_int_equal(nfired, N);
    for (int i = 0; i < N; i++) {
        assert_true(fired_at[i] >= c0);
        if (i)
            assert_true(fired_at[i] >= fired_at[i - 1]);
    }
    CHECK_WHEEL(w);
    assert_int_equal(lull_wheel_destroy(w, 0), 0);
}

/* ---- an advance that overflows its array ---------------------------------------------- */

enum { BIG = 1000 };
static lull_wheel *big_w;
static lull_timer big_t[BIG], big_moved;
static int big_rc[4];

/* The first to fire cancels one timer and reschedules another, both due in
 * this same advance (so on the per-shard lists, not the array). */
static void big_first(lull_timer t, void *arg)
{
    log_fn(t, arg);
    big_rc[0] = lull_wheel_cancel(big_w, big_t[BIG - 1]);
    big_rc[1] = lull_wheel_reschedule(big_w, big_t[BIG / 2], 10 * MS, &big_moved);
    big_rc[2] = lull_wheel_cancel(big_w, big_t[BIG / 2]);      /* the old handle: stale */
}

static void t_advance_overflow(void **state)
{
    (void)state;
    lull__wheel_shards = 4;
    lull_wheel *w = big_w = wt_wheel(&clk, MS, 0);
    uint64_t c0 = clk.now;
    uint64_t seed = lt_seed(0xb16);
    /* deadlines in one 5 ms window: one advance fires them all */
    assert_int_equal(lull_wheel_schedule(w, 0, big_first, (void *)-1, &big_t[0]), 0);
    for (int i = 1; i < BIG; i++)
        assert_int_equal(lull_wheel_schedule(w, 1 + lt_rand(&seed) % (5 * MS), log_fn,
                                             (void *)(intptr_t)i, &big_t[i]), 0);
    /* ties: the same deadline, fired in schedule order */
    lull_timer tie[8];
    for (int i = 0; i < 8; i++)
        assert_int_equal(lull_wheel_schedule(w, 3 * MS, log_fn, (void *)(intptr_t)(10000 + i),
                                             &tie[i]), 0);
    CHECK_WHEEL(w);
    wt_set(&clk, c0 + 5 * MS);
    size_t ran = lull_wheel_advance(w);
    assert_int_equal(big_rc[0], 0);
    assert_int_equal(big_rc[1], 0);
    assert_int_equal(big_rc[2], -ESTALE);
    assert_int_equal(ran, BIG + 8 - 2);         /* one cancelled, one moved to +10 ms */
    assert_int_equal(nfired, ran);
    long last_tie = 9999;
    for (size_t i = 0; i < nfired; i++) {
        assert_true(fired_h[i] != big_t[BIG - 1] && fired_h[i] != big_t[BIG / 2]);
        if (fired[i] >= 10000) {
            assert_true(fired[i] == last_tie + 1);
            last_tie = fired[i];
        }
    }
    assert_int_equal(last_tie, 10007);
    assert_int_equal(lull_wheel_pending(w), 1);
    CHECK_WHEEL(w);
    wt_set(&clk, clk.now + 10 * MS);
    assert_int_equal(lull_wheel_advance(w), 1);
    assert_true(fired_h[nfired - 1] == big_moved);
    CHECK_WHEEL(w);
    assert_int_equal(lull_wheel_destroy(w, 0), 0);
}

/* The fire order of an overflowed advance, against a sort of what it was
 * given: deadlines with many ties, well over the array's size. */
static void t_overflow_order(void **state)
{
    (void)state;
    lull_wheel *w = wt_wheel(&clk, MS, 0);
    uint64_t c0 = clk.now, seed = lt_seed(0x0d3);
    enum { K = 3000 };
    static uint64_t due[K];
    for (int i = 0; i < K; i++) {
        due[i] = c0 + (lt_rand(&seed) % 40) * (MS / 8);    /* many equal deadlines */
        assert_int_equal(lull_wheel_schedule(w, due[i] - c0, log_fn, (void *)(intptr_t)i,
                                             &(lull_timer){0}), 0);
    }
    wt_set(&clk, c0 + 5 * MS);
    assert_int_equal(lull_wheel_advance(w), K);
    for (size_t i = 1; i < K; i++) {
        long a = fired[i - 1], b = fired[i];
        assert_true(due[a] < due[b] || (due[a] == due[b] && a < b));
    }
    CHECK_WHEEL(w);
    assert_int_equal(lull_wheel_destroy(w, 0), 0);
}

/* ---- free slots: the shards' caches and the free stack --------------------------------- */

static void t_slot_caches(void **state)
{
    (void)state;
    lull_wheel *w = wt_wheel(&clk, MS, 0);
    enum { N = 3 * LW_CACHE_MAX };
    lull_timer t[N];
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < N; i++)
            assert_int_equal(lull_wheel_schedule(w, HOUR, log_fn, NULL, &t[i]), 0);
        CHECK_WHEEL(w);
        for (int i = 0; i < N; i++)   /* the first LW_CACHE_MAX stay, the rest spill */
            assert_int_equal(lull_wheel_cancel(w, t[i]), 0);
        CHECK_WHEEL(w);
        struct lull__wheel_stats st;
        lull__wheel_stats(w, &st);
        assert_int_equal(st.slots, N);   /* every round reuses the same slots */
        /* and fired slots come back too */
        for (int i = 0; i < N; i++)
            assert_int_equal(lull_wheel_schedule(w, MS, log_fn, NULL, &t[i]), 0);
        wt_set(&clk, clk.now + MS);
        assert_int_equal(lull_wheel_advance(w), N);
        for (int i = 0; i < N; i++)
            assert_int_equal(lull_wheel_cancel(w, t[i]), -ESTALE);
        CHECK_WHEEL(w);
    }
    assert_int_equal(lull_wheel_destroy(w, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(t_tick_exact, setup),
        cmocka_unit_test_setup(t_current_tick_bucket, setup),
        cmocka_unit_test_setup(t_reschedule_in_place, setup),
        cmocka_unit_test_setup(t_advance_overflow, setup),
        cmocka_unit_test_setup(t_overflow_order, setup),
        cmocka_unit_test_setup(t_slot_caches, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
