/*
 * tests/wheel/test_wheel_model.c - the wheel against a reference model.
 *
 * The model is an array of pending timers sorted by (deadline, seq).
 * Thousands of random steps (schedule, cancel, cancel_sync, reschedule,
 * clock jumps small and huge, advances), some taken from inside callbacks;
 * after every step lull_wheel_check must pass and pending, next_deadline
 * and every result code must match the model.  Each fire must be the
 * model's earliest eligible timer: deadline order, ties in schedule order,
 * never early, nothing scheduled by a callback fired in the same advance.
 * Seeded and reproducible: LULL_TEST_SEED=... replays a failure.
 */
#include "wheel_testlib.h"

#include <string.h>

struct ment {
    uint64_t d, seq;
    lull_timer h;
    long id;
};

static struct {
    struct lt_clock clk;
    lull_wheel *w;
    uint64_t tick, rng, seq, mark;
    size_t max;
    struct ment m[4096];
    size_t n;
    lull_timer dead[256];
    unsigned ndead;
    long next_id;
    size_t fires;
    bool in_advance;
    size_t total_fires, max_n, cb_cancels, advances;
    unsigned long grow_until;
    unsigned long steps;
} M;

static uint64_t rnd(uint64_t n)      /* [0, n) */
{
    return n ? lt_rand(&M.rng) % n : 0;
}

static bool before(const struct ment *a, const struct ment *b)
{
    return a->d < b->d || (a->d == b->d && a->seq < b->seq);
}

static void m_insert(struct ment e)
{
    LT_CHECK(M.n < sizeof(M.m) / sizeof(M.m[0]));
    size_t i = M.n;
    while (i > 0 && before(&e, &M.m[i - 1])) {
        M.m[i] = M.m[i - 1];
        i--;
    }
    M.m[i] = e;
    M.n++;
}

static struct ment m_remove(size_t i)
{
    struct ment e = M.m[i];
    memmove(&M.m[i], &M.m[i + 1], (M.n - i - 1) * sizeof(M.m[0]));
    M.n--;
    M.dead[M.ndead++ % 256] = e.h;
    return e;
}

static long m_find_id(long id)
{
    for (size_t i = 0; i < M.n; i++)
        if (M.m[i].id == id)
            return (long)i;
    return -1;
}

static uint64_t deadline(uint64_t delay)
{
    uint64_t d;
    if (__builtin_add_overflow(M.clk.now, delay, &d) || d == UINT64_MAX)
        d = UINT64_MAX - 1;
    return d;
}

static uint64_t rnd_delay(void)
{
    switch (rnd(20)) {
    case 0: case 1:  return 0;
    case 2: case 3: case 4: return rnd(M.tick);
    case 5: case 6: case 7: case 8: return rnd(64 * M.tick);
    case 9:  return UINT64_MAX;
    case 10: return (rnd(300) + 1) * M.tick;
    default: return rnd((uint64_t)1 << rnd(64));
    }
}

/* a handle that is not live: dead, a live one's future epoch, or random */
static lull_timer rnd_bad_handle(void)
{
    switch (rnd(3)) {
    case 0:
        if (M.ndead)
            return M.dead[rnd(M.ndead < 256 ? M.ndead : 256)];
        /* fall through */
    case 1:
        if (M.n)
            return M.m[rnd(M.n)].h + (rnd(1000) + 1) * ((uint64_t)1 << 32);
        /* fall through */
    default: {
        lull_timer h = lt_rand(&M.rng);
        for (size_t i = 0; i < M.n; i++)
            if (M.m[i].h == h)
                h ^= (uint64_t)1 << 40;
        return h;
    }
    }
}

static void fire_fn(lull_timer t, void *arg);

static void op_schedule(void)
{
    uint64_t delay = rnd_delay();
    lull_timer h = 0;
    long id = M.next_id++;
    int rc = lull_wheel_schedule(M.w, delay, fire_fn, (void *)(intptr_t)id, &h);
    if (M.max && M.n >= M.max) {
        LT_CHECK_EQ(rc, -ENOSPC);
        return;
    }
    LT_CHECK_EQ(rc, 0);
    LT_CHECK(h != 0);
    m_insert((struct ment){ deadline(delay), M.seq++, h, id });
}

/* cancel (sync or not) a live timer, or a handle that is not */
static void op_cancel(lull_timer self, bool sync)
{
    if (M.n && rnd(4)) {
        size_t i = rnd(M.n);
        lull_timer h = M.m[i].h;
        if (h == self)
            return;
        LT_CHECK_EQ(sync ? lull_wheel_cancel_sync(M.w, h) : lull_wheel_cancel(M.w, h), 0);
        m_remove(i);
        M.cb_cancels += M.in_advance;
    } else {
        lull_timer h = rnd_bad_handle();
        if (h == self)
            return;
        LT_CHECK_EQ(sync ? lull_wheel_cancel_sync(M.w, h) : lull_wheel_cancel(M.w, h), -ESTALE);
    }
}

static void op_reschedule(lull_timer self)
{
    uint64_t delay = rnd_delay();
    lull_timer nt = 5;
    if (M.n && rnd(4)) {
        size_t i = rnd(M.n);
        LT_CHECK(M.m[i].h != self);
        LT_CHECK_EQ(lull_wheel_reschedule(M.w, M.m[i].h, delay, &nt), 0);
        LT_CHECK(nt != M.m[i].h && nt != 0);
        struct ment e = m_remove(i);
        e.h = nt;
        e.d = deadline(delay);
        e.seq = M.seq++;
        m_insert(e);
    } else {
        LT_CHECK_EQ(lull_wheel_reschedule(M.w, rnd_bad_handle(), delay, &nt), -ESTALE);
        LT_CHECK(nt == 5);
    }
}

static void fire_fn(lull_timer t, void *arg)
{
    long id = (long)(intptr_t)arg;
    LT_CHECK(M.in_advance);
    long i = m_find_id(id);
    LT_CHECK(i >= 0);                       /* pending in the model: never twice */
    LT_CHECK(M.m[i].h == t);
    /* the earliest of the timers this advance must fire */
    size_t first = 0;
    while (first < M.n && M.m[first].seq >= M.mark)
        first++;
    LT_CHECK_EQ(first, i);
    LT_CHECK(M.m[i].d <= M.clk.now);        /* never early */
    m_remove((size_t)i);
    M.fires++;
    M.total_fires++;

    /* a callback may act on the wheel too */
    switch (rnd(10)) {
    case 0: case 1: op_schedule(); break;
    case 2: op_cancel(t, false); break;
    case 3: op_reschedule(t); break;
    case 4: LT_CHECK_EQ(lull_wheel_cancel(M.w, t), -EINPROGRESS);
            LT_CHECK_EQ(lull_wheel_cancel_sync(M.w, t), -EDEADLK); break;
    default: break;
    }
}

static void op_advance(bool move)
{
    if (move) {
        uint64_t jump;
        /* mostly small steps (the population grows into the thousands in
         * the first half), sometimes far (cascades), rarely huge */
        bool grow = M.steps < M.grow_until;
        switch (rnd(grow ? 200 : 20)) {
        case 0:  jump = 0; break;
        case 1:  jump = rnd(2) ? ((uint64_t)1 << 62) : ((uint64_t)1 << rnd(60)); break;
        case 2: case 3: case 4: case 5: jump = rnd((uint64_t)1 << rnd(44)); break;
        default: jump = rnd(3 * M.tick + 1); break;
        }
        if (M.steps % 500 != 7)
            jump &= ((uint64_t)1 << 50) - 1;  /* huge jumps rarely: they empty the model */
        uint64_t now;
        if (__builtin_add_overflow(M.clk.now, jump, &now))
            now = UINT64_MAX;
        wt_set(&M.clk, now);
    }
    M.mark = M.seq;
    M.fires = 0;
    M.advances++;
    M.in_advance = true;
    size_t ran = lull_wheel_advance(M.w);
    M.in_advance = false;
    LT_CHECK_EQ(ran, M.fires);
    for (size_t i = 0; i < M.n; i++)         /* nothing due left behind */
        LT_CHECK(!(M.m[i].seq < M.mark && M.m[i].d <= M.clk.now));
}

static void run_model(uint64_t tick, uint64_t start, size_t max, unsigned long steps, uint64_t seed)
{
    memset(&M, 0, sizeof(M));
    M.rng = seed;
    M.tick = tick;
    M.max = max;
    wt_set(&M.clk, start);
    M.w = wt_wheel(&M.clk, tick, max);
    M.grow_until = steps / 2;
    for (M.steps = 0; M.steps < steps; M.steps++) {
        unsigned op = (unsigned)rnd(100);
        if (M.steps < M.grow_until && op >= 50 && op < 70)
            op = 0;     /* growing: fewer cancels */
        if (op < 35)
            op_schedule();
        else if (op < 50)
            op_cancel(0, false);
        else if (op < 55)
            op_cancel(0, true);
        else if (op < 70)
            op_reschedule(0);
        else if (op < 95)
            op_advance(true);
        else
            op_advance(false);

        int bad = lull_wheel_check(M.w, stderr);
        if (bad)
            fprintf(stderr, "step %lu: %d violations\n", M.steps, bad);
        LT_CHECK_EQ(bad, 0);
        LT_CHECK_EQ(lull_wheel_pending(M.w), M.n);
        if (M.n > M.max_n)
            M.max_n = M.n;
        uint64_t nd = lull_wheel_next_deadline(M.w);
        if (M.n)
            LT_CHECK(nd <= M.m[0].d);        /* never later than the true one */
        else
            LT_CHECK(nd == UINT64_MAX);
    }
    /* drain: everything left fires, in order, by the end of time */
    wt_set(&M.clk, UINT64_MAX - 1);
    while (M.n)
        op_advance(false);
    LT_CHECK_EQ(lull_wheel_check(M.w, stderr), 0);
    struct lull__wheel_stats st;
    lull__wheel_stats(M.w, &st);
    fprintf(stderr, "%lu steps: %ld timers, %zu fired in %zu advances, %zu cancelled by callbacks,"
            " at most %zu pending; %llu buckets emptied, %llu cascade moves, %u slots\n",
            steps, M.next_id, M.total_fires, M.advances, M.cb_cancels, M.max_n,
            (unsigned long long)st.buckets, (unsigned long long)st.moves, st.slots);
    LT_CHECK_EQ(lull_wheel_destroy(M.w, 0), 0);
}

static void t_model_ms(void **state)
{
    (void)state;
    run_model(MS, 1000 * SEC, 0, 20000, lt_seed(0x1001));
}

static void t_model_ns_tick_limited(void **state)
{
    (void)state;
    run_model(1, 0, 64, 12000, lt_seed(0x2002));
}

static void t_model_odd_tick(void **state)
{
    (void)state;
    run_model(1000003, 987654321012ull, 0, 10000, lt_seed(0x3003));
}

static void t_model_near_end_of_time(void **state)
{
    (void)state;
    run_model(MS, UINT64_MAX - ((uint64_t)1 << 45), 0, 4000, lt_seed(0x4004));
}

int main(void)
{
    lull__wheel_shards = 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_model_ms),
        cmocka_unit_test(t_model_ns_tick_limited),
        cmocka_unit_test(t_model_odd_tick),
        cmocka_unit_test(t_model_near_end_of_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
