/* tests/common/testutil.h - what every lull test shares. */
#ifndef LULL_TESTUTIL_H
#define LULL_TESTUTIL_H

#include <lull.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "internal.h"   /* lib/internal.h: fault injection, lull__now_ns */

/* Stress duration in seconds: LULL_STRESS_SECONDS, default 1 (short). */
double lt_stress_seconds(void);

/* Deterministic PRNG (splitmix64): tests are reproducible from their seed. */
static inline uint64_t lt_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Seed from LULL_TEST_SEED or the given default; printed so a failure can be
 * replayed. */
uint64_t lt_seed(uint64_t dflt);

/* Resident set size in KiB (from /proc/self/statm). */
size_t lt_rss_kib(void);

/* True when built with a sanitizer (RSS figures are then meaningless). */
bool lt_sanitized(void);

/* A check usable from any thread (cmocka's asserts are main-thread only):
 * prints and aborts, which fails the test. */
#define LT_CHECK(cond) do { if (!(cond)) { \
        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
        abort(); } } while (0)
#define LT_CHECK_EQ(a, b) do { long long lt_a_ = (long long)(a), lt_b_ = (long long)(b); \
        if (lt_a_ != lt_b_) { \
        fprintf(stderr, "%s:%d: check failed: %s == %s (%lld != %lld)\n", \
                __FILE__, __LINE__, #a, #b, lt_a_, lt_b_); abort(); } } while (0)

/* Start n threads running fn(arg_i) with arg_i = base + i*stride, and join. */
void lt_run_threads(unsigned n, void *(*fn)(void *), void *base, size_t stride);

/* A virtual clock for wheels and registries: tests move it by hand. */
struct lt_clock { uint64_t now; };
uint64_t lt_clock_read(void *ctx);   /* for lull_wheel_opts.clock */

#endif
