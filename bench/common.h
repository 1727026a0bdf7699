/*
 * bench/common.h - what every lull benchmark shares: keys, random numbers, a
 * fixture cache, a virtual clock and memory accounting.
 *
 * Keys are 16 bytes ("lull:key" + a 64-bit index), values 64 bytes, for
 * lull and every baseline alike: a 16-byte session or connection id and a
 * small record are the common case the store is built for.
 */
#ifndef LULL_BENCH_COMMON_H
#define LULL_BENCH_COMMON_H

#include "shim/shim.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define BC_KEY_LEN   16
#define BC_VALUE_LEN 64

static inline void bc_key(unsigned char k[BC_KEY_LEN], uint64_t i)
{
    memcpy(k, "lull:key", 8);
    memcpy(k + 8, &i, 8);
}

/* splitmix64: one multiply chain per number, good enough to pick keys. */
static inline uint64_t bc_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* A number in [0, n) from a 64-bit random one, with no division. */
static inline uint64_t bc_pick(uint64_t r, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)r * n) >> 64);
}

/* A seed that differs per thread and per run, so repetitions differ. */
extern unsigned long bc_runs;   /* thread 0 bumps it; a race only changes a seed */
static inline uint64_t bc_seed(const lb_state *st)
{
    uint64_t s = 0x6c756c6cULL * (uint64_t)(lb_thread_index(st) + 1) + bc_runs;
    if (lb_thread_index(st) == 0)
        bc_runs++;
    return s;
}

/*
 * The fixture cache.  Building a million-key map or a million pending timers
 * takes longer than measuring it, and google-benchmark calls a benchmark
 * several times per case (to size the iteration count, then per
 * repetition) -- and with random interleaving (scripts/bench.sh) runs the
 * repetitions of all cases in a random order.  So bc_fixture keeps every
 * fixture alive, keyed by kind and param: it returns the cached one when
 * there is one (and fresh(), if given, says it is still usable), else makes
 * a new one, evicting the least recently used only when BC_FIXTURES are
 * alive.  Call it from a setup hook (thread 0, before the others start).
 * NULL from make means failure (the caller lb_skip()s).  bc_fixture_drop
 * frees them all (lb_atexit).
 */
enum { BC_FIXTURES = 32 };
void *bc_fixture(const char *kind, int64_t param, void *(*make)(int64_t),
                 void (*destroy)(void *), int (*fresh)(void *));
void bc_fixture_drop(void);

/* A clock for lull_wheel_opts.clock and the heap baseline: virtual time that
 * the benchmark moves itself, so both see exactly the same timeline. */
struct bc_vclock { uint64_t now; };
uint64_t bc_vclock_read(void *ctx);
static inline void bc_vclock_add(struct bc_vclock *c, uint64_t ns)
{
    __atomic_store_n(&c->now, c->now + ns, __ATOMIC_RELAXED);
}

/* Bytes in use by malloc (arena + mmapped chunks), and resident bytes of the
 * process (a cross-check: it also counts memory freed but kept). */
size_t bc_malloc_bytes(void);
size_t bc_rss_bytes(void);

#endif /* LULL_BENCH_COMMON_H */
