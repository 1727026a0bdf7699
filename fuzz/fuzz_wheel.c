/*
 * fuzz/fuzz_wheel.c - libFuzzer: timer wheel operations against a reference model.
 *
 * The input is a sequence of operations on a wheel with a virtual clock and
 * max_timers = 64: schedule (delays 0, small, large, near UINT64_MAX),
 * cancel / cancel_sync / reschedule of a live handle, a fired or cancelled
 * one (possibly with its slot reused), garbage, 0 and a handle of another
 * wheel; clock jumps and advances.  Timers carry an action their callback
 * takes (schedule, cancel or reschedule another timer, cancel itself), read
 * from the input as it fires.  The model is an array of pending timers sorted
 * by (deadline, seq): every fire must be the model's earliest timer that was
 * pending when the advance began, never early, at most once; every result
 * code, pending and next_deadline (never later than the model's earliest)
 * are checked, and lull_wheel_check after every operation.
 *
 *   CC=clang cmake -B build-fuzz -DLULL_FUZZ=ON && make -C build-fuzz fuzz_wheel
 *   build-fuzz/fuzz/fuzz_wheel -max_total_time=60 fuzz/corpus/fuzz_wheel
 */
#include <lull.h>

#include "fuzz_input.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(c) do { if (!(c)) { fprintf(stderr, "fuzz_wheel: %s:%d: %s\n", \
                                   __FILE__, __LINE__, #c); abort(); } } while (0)

enum { MAXT = 64, NDEAD = 32, NOTHER = 8 };

struct ment {
    uint64_t d, seq;
    lull_timer h;
    long id;
    uint8_t action;     /* what its callback does */
};

static struct {
    const uint8_t *p;
    size_t n;
    uint64_t now;
    lull_wheel *w;
    struct ment m[MAXT + 1];
    size_t n_m;
    lull_timer dead[NDEAD];
    unsigned ndead;
    uint64_t seq, mark;
    long next_id;
    size_t fires;
    bool in_advance;
    lull_timer other[NOTHER];   /* handles of another wheel */
} M;

static uint8_t take(void)
{
    return fz_take(&M.p, &M.n);
}

static uint64_t take64(void)
{
    return fz_take64(&M.p, &M.n);
}

static uint64_t clock_fn(void *ctx)
{
    (void)ctx;
    return M.now;
}

static bool before(const struct ment *a, const struct ment *b)
{
    return a->d < b->d || (a->d == b->d && a->seq < b->seq);
}

static void m_insert(struct ment e)
{
    REQUIRE(M.n_m < MAXT);
    size_t i = M.n_m;
    while (i > 0 && before(&e, &M.m[i - 1])) {
        M.m[i] = M.m[i - 1];
        i--;
    }
    M.m[i] = e;
    M.n_m++;
}

static struct ment m_remove(size_t i)
{
    struct ment e = M.m[i];
    memmove(&M.m[i], &M.m[i + 1], (M.n_m - i - 1) * sizeof(M.m[0]));
    M.n_m--;
    M.dead[M.ndead++ % NDEAD] = e.h;
    return e;
}

static long m_find_h(lull_timer h)
{
    for (size_t i = 0; i < M.n_m; i++)
        if (M.m[i].h == h)
            return (long)i;
    return -1;
}

static uint64_t deadline(uint64_t delay)
{
    uint64_t d;
    if (__builtin_add_overflow(M.now, delay, &d) || d == UINT64_MAX)
        d = UINT64_MAX - 1;
    return d;
}

static uint64_t take_delay(void)
{
    uint8_t k = take();
    switch (k % 8) {
    case 0:  return 0;
    case 1:  return take() % 4;                          /* a few ns */
    case 2:  return (uint64_t)take() * 1000;             /* us */
    case 3:  return (uint64_t)take() * 1000000;          /* ms, around ticks */
    case 4:  return UINT64_MAX - take();                 /* saturates */
    case 5:  return ((uint64_t)1 << (take() % 64)) + (k >> 3);  /* any level */
    case 6:  return take64();
    default: return (uint64_t)take() << 16 | take();
    }
}

/* any handle: live, dead (maybe reused slot), garbage, 0, other wheel's */
static lull_timer take_handle(void)
{
    uint8_t k = take();
    uint8_t i = take();
    switch (k % 8) {
    case 0: case 1: case 2:
        if (M.n_m)
            return M.m[i % M.n_m].h;
        return 0;
    case 3:
        return M.ndead ? M.dead[i % (M.ndead < NDEAD ? M.ndead : NDEAD)] : 0;
    case 4:
        return M.other[i % NOTHER];
    case 5:
        return 0;
    case 6:     /* a live one's future epoch, or another slot of the same epoch */
        if (M.n_m)
            return M.m[i % M.n_m].h + ((k & 0x80) ? ((uint64_t)(k >> 3) + 1) << 32
                                                  : (uint64_t)(k >> 3) + 1);
        return 0;
    default:
        return take64();
    }
}

static void fire_fn(lull_timer t, void *arg);

static void op_schedule(void)
{
    uint64_t delay = take_delay();
    uint8_t action = take();
    lull_timer h = 0;
    long id = M.next_id++;
    int rc = lull_wheel_schedule(M.w, delay, fire_fn, (void *)(intptr_t)id, &h);
    if (M.n_m >= MAXT) {
        REQUIRE(rc == -ENOSPC);
        REQUIRE(h == 0);
        return;
    }
    REQUIRE(rc == 0);
    REQUIRE(h != 0);
    REQUIRE(m_find_h(h) < 0);
    m_insert((struct ment){ deadline(delay), M.seq++, h, id, action });
}

static void op_cancel(lull_timer h, bool sync, lull_timer self)
{
    int rc = sync ? lull_wheel_cancel_sync(M.w, h) : lull_wheel_cancel(M.w, h);
    long i = m_find_h(h);
    if (self && h == self) {
        REQUIRE(rc == (sync ? -EDEADLK : -EINPROGRESS));
    } else if (i >= 0) {
        REQUIRE(rc == 0);
        m_remove((size_t)i);
    } else {
        REQUIRE(rc == -ESTALE);
    }
}

static void op_reschedule(lull_timer h)
{
    uint64_t delay = take_delay();
    lull_timer nt = 5;
    int rc = lull_wheel_reschedule(M.w, h, delay, &nt);
    long i = m_find_h(h);
    if (i < 0) {
        REQUIRE(rc == -ESTALE);
        REQUIRE(nt == 5);
        return;
    }
    REQUIRE(rc == 0);
    REQUIRE(nt != 0 && nt != h);
    REQUIRE(m_find_h(nt) < 0);
    struct ment e = m_remove((size_t)i);
    e.h = nt;
    e.d = deadline(delay);
    e.seq = M.seq++;
    m_insert(e);
}

static void fire_fn(lull_timer t, void *arg)
{
    long id = (long)(intptr_t)arg;
    REQUIRE(M.in_advance);
    long i = -1;
    for (size_t j = 0; j < M.n_m; j++)
        if (M.m[j].id == id)
            i = (long)j;
    REQUIRE(i >= 0);                        /* pending in the model: never twice */
    REQUIRE(M.m[i].h == t);
    size_t first = 0;                       /* earliest of those this advance may fire */
    while (first < M.n_m && M.m[first].seq >= M.mark)
        first++;
    REQUIRE(first == (size_t)i);
    REQUIRE(M.m[i].d <= M.now);             /* never early */
    struct ment e = m_remove((size_t)i);
    M.fires++;
    REQUIRE(lull_wheel_pending(M.w) == M.n_m);

    switch (e.action % 8) {
    case 1: op_schedule(); break;
    case 2: op_cancel(take_handle(), take() & 1, t); break;
    case 3: op_reschedule(take_handle()); break;
    case 4: op_cancel(t, false, t); op_cancel(t, true, t); break;
    case 5: op_reschedule(t); break;       /* its own running timer: -ESTALE */
    case 6: REQUIRE(lull_wheel_advance(M.w) == 0); break;  /* never nests */
    default: break;
    }
}

static void op_advance(uint64_t jump)
{
    uint64_t now;
    if (__builtin_add_overflow(M.now, jump, &now))
        now = UINT64_MAX;
    M.now = now;
    M.mark = M.seq;
    M.fires = 0;
    M.in_advance = true;
    size_t ran = lull_wheel_advance(M.w);
    M.in_advance = false;
    REQUIRE(ran == M.fires);
    for (size_t i = 0; i < M.n_m; i++)      /* nothing due left behind */
        REQUIRE(!(M.m[i].seq < M.mark && M.m[i].d <= M.now));
}

static uint64_t take_jump(void)
{
    uint8_t k = take();
    switch (k % 6) {
    case 0:  return 0;
    case 1:  return take();
    case 2:  return (uint64_t)take() * 1000000;
    case 3:  return (uint64_t)1 << (take() % 64);
    case 4:  return ((uint64_t)take() << 24) | ((uint64_t)take() << 8);
    default: return take64();
    }
}

static void noop_fn(lull_timer t, void *arg)
{
    (void)t;
    (void)arg;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Another wheel whose handles are thrown at this one: made once, with
     * a few timers pending forever and a few cancelled. */
    static lull_wheel *other;
    if (!other) {
        other = lull_wheel_create(NULL);
        REQUIRE(other);
        for (int i = 0; i < NOTHER; i++) {
            REQUIRE(lull_wheel_schedule(other, UINT64_MAX, noop_fn, NULL, &M.other[i]) == 0);
            if (i & 1)
                REQUIRE(lull_wheel_cancel(other, M.other[i]) == 0);
        }
    }
    lull_timer saved[NOTHER];
    memcpy(saved, M.other, sizeof(saved));
    memset(&M, 0, sizeof(M));
    memcpy(M.other, saved, sizeof(saved));
    M.p = data;
    M.n = size;

    static const uint64_t ticks[4] = { 1, 1000, 1000000, 1000003 };
    uint8_t cfg = take();
    switch ((cfg >> 2) % 4) {
    case 0:  M.now = 0; break;
    case 1:  M.now = 1000000000000ull; break;
    case 2:  M.now = UINT64_MAX - ((uint64_t)1 << (20 + take() % 30)); break;
    default: M.now = take64() >> 1; break;
    }
    struct lull_wheel_opts o = { .tick_ns = ticks[cfg % 4], .clock = clock_fn,
                                 .max_timers = MAXT };
    M.w = lull_wheel_create(&o);
    REQUIRE(M.w);

    while (M.n) {
        uint8_t op = take();
        switch (op % 12) {
        case 0: case 1: case 2: op_schedule(); break;
        case 3: op_cancel(take_handle(), false, 0); break;
        case 4: op_cancel(take_handle(), true, 0); break;
        case 5: op_reschedule(take_handle()); break;
        case 6: case 7: op_advance(take_jump()); break;
        case 8: op_advance(0); break;
        case 9: {       /* a burst of equal deadlines */
            unsigned k = 1 + take() % 8;
            for (unsigned j = 0; j < k; j++) {
                size_t save = M.n;
                const uint8_t *sp = M.p;
                op_schedule();
                M.n = save;     /* same delay and action each time */
                M.p = sp;
            }
            take_delay();
            take();
            break;
        }
        case 10: REQUIRE(lull_wheel_cancel(NULL, take_handle()) == -EINVAL);
                 REQUIRE(lull_wheel_schedule(M.w, 0, NULL, NULL, &(lull_timer){0}) == -EINVAL);
                 break;
        default: {      /* cancel everything through some order */
            while (M.n_m && (take() & 3))
                op_cancel(M.m[M.n_m - 1].h, false, 0);
            break;
        }
        }
        int bad = lull_wheel_check(M.w, stderr);
        REQUIRE(bad == 0);
        REQUIRE(lull_wheel_pending(M.w) == M.n_m);
        uint64_t nd = lull_wheel_next_deadline(M.w);
        if (M.n_m)
            REQUIRE(nd <= M.m[0].d);
        else
            REQUIRE(nd == UINT64_MAX);
    }
    /* drain: everything left fires, in order, by the end of time */
    M.now = UINT64_MAX - 1;
    for (int i = 0; M.n_m && i < 4; i++)
        op_advance(0);
    for (size_t i = 0; i < M.n_m; i++)      /* only timers armed by the last callbacks remain */
        REQUIRE(M.m[i].seq >= M.mark);
    REQUIRE(lull_wheel_check(M.w, stderr) == 0);
    REQUIRE(lull_wheel_destroy(M.w, 0) == 0);
    M.w = NULL;
    return 0;
}
