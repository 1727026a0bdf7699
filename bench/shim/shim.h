/*
 * bench/shim/shim.h - google-benchmark, from C.
 *
 * Every benchmark and baseline in bench/ is C; this header is the whole
 * interface to google-benchmark (bench/shim/shim.cc is the only C++ file).
 *
 *   int main(int argc, char **argv) {
 *       lb_init(&argc, argv);                     // parses --benchmark_* and --lb_*
 *       lb_bench *b = lb_register("store/get/lull", bm_get);
 *       lb_arg_name(b, "keys"); lb_arg(b, 1024); lb_thread_counts(b);
 *       lb_setup(b, fixture_up);                  // thread 0, before the others start
 *       return lb_run();                          // non-zero if any benchmark failed
 *   }
 *   static void bm_get(lb_state *st) {
 *       ... per-thread setup, untimed ...
 *       while (lb_next_batch(st, 64))            // timing starts on the first call
 *           for (int i = 0; i < 64; i++) op();
 *       lb_set_items_processed(st, lb_iters(st));
 *   }
 *
 * Multi-threaded runs use google-benchmark's Threads(): every thread runs the
 * function; thread 0's setup hook runs before any thread starts it and the
 * teardown hook after every thread has returned.  A run is repeated (with
 * growing iteration counts, and per repetition), so hooks run many times:
 * expensive fixtures should be cached by the hook (bench/common.h).
 * Multi-threaded benchmarks are measured in real (wall) time.
 */
#ifndef LULL_BENCH_SHIM_H
#define LULL_BENCH_SHIM_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lb_state lb_state;   /* a benchmark::State */
typedef struct lb_bench lb_bench;   /* a registered benchmark (for options) */
typedef void (*lb_fn)(lb_state *st);

/* ---- process ---------------------------------------------------------- */

/* Parses and removes the shim's own flags, then google-benchmark's:
 *   --lb_full          measure more sizes and thread counts (lb_full())
 *   --lb_threads=1,2   thread counts for lb_thread_counts() (default 1,2;
 *                      --lb_full: 1,2,4)
 *   --lb_total=N       number of runs expected, for the progress line
 *   --lb_quiet         no progress lines
 * Unknown flags are an error (exit 2). */
void lb_init(int *argc, char **argv);
bool lb_full(void);
/* Runs the selected benchmarks, then the lb_atexit hooks (last registered
 * first).  Returns 0, or 1 if any benchmark reported an error. */
int  lb_run(void);
void lb_atexit(void (*fn)(void));

/* ---- registration (before lb_run) ------------------------------------- */

lb_bench *lb_register(const char *name, lb_fn fn);
lb_bench *lb_arg(lb_bench *b, int64_t a);            /* one run per call */
lb_bench *lb_arg_name(lb_bench *b, const char *name); /* name/keys:1024 */
lb_bench *lb_threads(lb_bench *b, int n);             /* one run per call */
lb_bench *lb_thread_counts(lb_bench *b);              /* the --lb_threads list */
lb_bench *lb_setup(lb_bench *b, lb_fn fn);            /* thread 0, each run, before */
lb_bench *lb_teardown(lb_bench *b, lb_fn fn);         /* thread 0, each run, after */
lb_bench *lb_iterations(lb_bench *b, uint64_t n);     /* fixed count, no min_time */
/* Every benchmark is timed in real (wall) time, 1 thread as well as N, so
 * that figures across thread counts compare; the unit is ns. */

/* ---- inside a benchmark ------------------------------------------------ */

bool     lb_next(lb_state *st);                  /* KeepRunning() */
bool     lb_next_batch(lb_state *st, uint64_t n);/* KeepRunningBatch(n): n iterations */
uint64_t lb_iters(const lb_state *st);          /* iterations() so far / of the run */
int      lb_thread_index(const lb_state *st);
int      lb_thread_count(const lb_state *st);
int64_t  lb_range(const lb_state *st, int i);
void     lb_pause_timing(lb_state *st);
void     lb_resume_timing(lb_state *st);
void     lb_skip(lb_state *st, const char *msg); /* SkipWithError: the run fails */
bool     lb_failed(const lb_state *st);
void     lb_set_items_processed(lb_state *st, uint64_t items);
void     lb_set_label(lb_state *st, const char *label);

enum {
    LB_SUM          = 0,        /* summed over threads */
    LB_RATE         = 1 << 0,   /* divided by the run's time */
    LB_AVG_THREADS  = 1 << 1,   /* averaged over threads */
    LB_AVG_ITERS    = 1 << 2,   /* divided by iterations */
};
void lb_counter(lb_state *st, const char *name, double value, unsigned flags);

/* Keep the compiler from optimising a value or a memory effect away. */
static inline void lb_escape(const void *p) { __asm__ volatile("" : : "g"(p) : "memory"); }
static inline void lb_use(uint64_t v) { __asm__ volatile("" : : "r"(v)); }
static inline void lb_clobber(void) { __asm__ volatile("" : : : "memory"); }

#ifdef __cplusplus
}
#endif
#endif /* LULL_BENCH_SHIM_H */
