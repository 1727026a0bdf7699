// bench/shim/shim.cc - the one C++ file: google-benchmark behind a C API
// (bench/shim/shim.h says how to use it).
#include "shim.h"

#include <benchmark/benchmark.h>

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

namespace {

// Everything the lambda of one registered benchmark needs.  Lives as long as
// the process (google-benchmark keeps the registration too).
struct Barrier {
    std::mutex mu;
    std::condition_variable cv;
    int waiting = 0;
    unsigned long generation = 0;

    void wait(int n) {
        if (n <= 1) return;
        std::unique_lock<std::mutex> lk(mu);
        unsigned long gen = generation;
        if (++waiting == n) {
            waiting = 0;
            generation++;
            cv.notify_all();
            return;
        }
        cv.wait(lk, [&] { return generation != gen; });
    }
};

struct Flags {
    bool full = false;
    bool quiet = false;
    long total = 0;
    std::vector<int> threads{1, 2};
    bool threads_given = false;
};
Flags g_flags;
std::vector<void (*)(void)> g_atexit;

benchmark::State *S(lb_state *st) { return reinterpret_cast<benchmark::State *>(st); }
const benchmark::State *S(const lb_state *st) {
    return reinterpret_cast<const benchmark::State *>(st);
}

// One line per finished benchmark ("[ 3/70] name   12.3 ns/op   81.2 Mop/s"),
// errors always.  JSON goes to --benchmark_out, written by google-benchmark.
class ProgressReporter : public benchmark::BenchmarkReporter {
public:
    bool failed = false;
    long done = 0;

    bool ReportContext(const Context &ctx) override {
        if (!g_flags.quiet) {
            std::fprintf(stderr, "# %s: %d CPUs @ %.0f MHz%s\n", Context::executable_name,
                         ctx.cpu_info.num_cpus, ctx.cpu_info.cycles_per_second / 1e6,
                         ctx.cpu_info.scaling == benchmark::CPUInfo::ENABLED
                             ? ", CPU frequency scaling on (figures are noisier)"
                             : "");
        }
        return true;
    }

    void ReportRuns(const std::vector<Run> &runs) override {
        if (runs.empty()) return;
        // With repetitions, google-benchmark reports the repetitions, then the
        // aggregates, in two calls: one line per case, from the median.
        const Run *pick = nullptr;
        bool aggregates = false;
        for (const Run &r : runs) {
            if (r.error_occurred) {
                failed = true;
                std::fprintf(stderr, "FAILED %s: %s\n", r.benchmark_name().c_str(),
                             r.error_message.c_str());
                if (r.repetitions <= 1 || r.repetition_index == 0) done++;
                return;
            }
            if (r.run_type == Run::RT_Aggregate) {
                aggregates = true;
                if (r.aggregate_name == "median") pick = &r;
            }
        }
        if (!aggregates && runs.front().repetitions > 1) return;   // wait for the median
        if (!pick) pick = &runs.back();
        done++;
        if (g_flags.quiet) return;
        char count[32];
        if (g_flags.total > 0)
            std::snprintf(count, sizeof count, "[%3ld/%ld]", done, g_flags.total);
        else
            std::snprintf(count, sizeof count, "[%3ld]", done);
        std::string name = pick->run_name.str();
        double ns = pick->GetAdjustedRealTime();   // real time / iteration, in ns
        auto it = pick->counters.find("items_per_second");
        if (it != pick->counters.end() && it->second.value > 0) {
            double ips = it->second.value;
            // per-thread ns per item: what one op costs on one thread
            double per_op = 1e9 * double(pick->threads) / ips;
            std::fprintf(stderr, "%s %-58s %10.1f ns/op %9.2f Mop/s\n", count, name.c_str(),
                         per_op, ips / 1e6);
        } else {
            std::fprintf(stderr, "%s %-58s %10.1f ns/iter\n", count, name.c_str(), ns);
        }
        for (const auto &c : pick->counters) {
            if (c.first == "items_per_second") continue;
            std::fprintf(stderr, "%*s %s = %.4g\n", 8, "", c.first.c_str(), c.second.value);
        }
    }
};

std::vector<int> parse_list(const char *s) {
    std::vector<int> v;
    while (*s) {
        char *end;
        long n = std::strtol(s, &end, 10);
        if (end == s || n < 1 || n > 1024) {
            std::fprintf(stderr, "lb: bad thread list near '%s'\n", s);
            std::exit(2);
        }
        v.push_back(int(n));
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') {
            std::fprintf(stderr, "lb: bad thread list\n");
            std::exit(2);
        }
    }
    return v;
}

}  // namespace

struct lb_bench {
    benchmark::internal::Benchmark *b = nullptr;
    lb_fn fn = nullptr;
    lb_fn setup = nullptr;
    lb_fn teardown = nullptr;
    Barrier barrier;
    bool setup_failed = false;   // written by thread 0 before the barrier
    std::string name;
};

extern "C" {

void lb_init(int *argc, char **argv) {
    int out = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i];
        if (!std::strcmp(a, "--lb_full")) {
            g_flags.full = true;
        } else if (!std::strcmp(a, "--lb_quiet")) {
            g_flags.quiet = true;
        } else if (!std::strncmp(a, "--lb_total=", 11)) {
            g_flags.total = std::strtol(a + 11, nullptr, 10);
        } else if (!std::strncmp(a, "--lb_threads=", 13)) {
            g_flags.threads = parse_list(a + 13);
            g_flags.threads_given = true;
        } else if (!std::strncmp(a, "--lb_", 5)) {
            std::fprintf(stderr, "lb: unknown flag %s\n", a);
            std::exit(2);
        } else {
            argv[out++] = argv[i];
        }
    }
    *argc = out;
    argv[out] = nullptr;
    if (g_flags.full && !g_flags.threads_given) g_flags.threads = {1, 2, 4};
    benchmark::SetDefaultTimeUnit(benchmark::kNanosecond);
    benchmark::Initialize(argc, argv);
    if (benchmark::ReportUnrecognizedArguments(*argc, argv)) std::exit(2);
}

bool lb_full(void) { return g_flags.full; }

void lb_atexit(void (*fn)(void)) { g_atexit.push_back(fn); }

int lb_run(void) {
    ProgressReporter rep;
    benchmark::RunSpecifiedBenchmarks(&rep);
    for (auto it = g_atexit.rbegin(); it != g_atexit.rend(); ++it) (*it)();
    benchmark::Shutdown();
    return rep.failed ? 1 : 0;
}

lb_bench *lb_register(const char *name, lb_fn fn) {
    lb_bench *lb = new lb_bench;
    lb->fn = fn;
    lb->name = name;
    lb->b = benchmark::RegisterBenchmark(name, [lb](benchmark::State &st) {
        lb_state *cst = reinterpret_cast<lb_state *>(&st);
        int n = st.threads();
        if (st.thread_index() == 0) {
            lb->setup_failed = false;
            if (lb->setup) lb->setup(cst);
            lb->setup_failed = st.error_occurred();
        }
        lb->barrier.wait(n);   // publishes the fixture thread 0 built
        if (lb->setup_failed) {
            // Every thread must still reach the start/stop barriers.
            while (st.KeepRunning()) {
            }
        } else {
            lb->fn(cst);
        }
        lb->barrier.wait(n);   // every thread is done with the fixture
        if (st.thread_index() == 0 && lb->teardown) lb->teardown(cst);
    });
    lb->b->UseRealTime();
    return lb;
}

lb_bench *lb_arg(lb_bench *b, int64_t a) {
    b->b->Arg(a);
    return b;
}
lb_bench *lb_arg_name(lb_bench *b, const char *name) {
    b->b->ArgName(name);
    return b;
}
lb_bench *lb_threads(lb_bench *b, int n) {
    b->b->Threads(n);
    return b;
}
lb_bench *lb_thread_counts(lb_bench *b) {
    for (int n : g_flags.threads) b->b->Threads(n);
    return b;
}
lb_bench *lb_setup(lb_bench *b, lb_fn fn) {
    b->setup = fn;
    return b;
}
lb_bench *lb_teardown(lb_bench *b, lb_fn fn) {
    b->teardown = fn;
    return b;
}
lb_bench *lb_iterations(lb_bench *b, uint64_t n) {
    b->b->Iterations(benchmark::IterationCount(n));
    return b;
}

bool lb_next(lb_state *st) { return S(st)->KeepRunning(); }
bool lb_next_batch(lb_state *st, uint64_t n) {
    return S(st)->KeepRunningBatch(benchmark::IterationCount(n));
}
uint64_t lb_iters(const lb_state *st) { return uint64_t(S(st)->iterations()); }
int lb_thread_index(const lb_state *st) { return S(st)->thread_index(); }
int lb_thread_count(const lb_state *st) { return S(st)->threads(); }
int64_t lb_range(const lb_state *st, int i) { return S(st)->range(size_t(i)); }
void lb_pause_timing(lb_state *st) { S(st)->PauseTiming(); }
void lb_resume_timing(lb_state *st) { S(st)->ResumeTiming(); }
void lb_skip(lb_state *st, const char *msg) { S(st)->SkipWithError(msg); }
bool lb_failed(const lb_state *st) { return S(st)->error_occurred(); }
void lb_set_items_processed(lb_state *st, uint64_t items) {
    S(st)->SetItemsProcessed(int64_t(items));
}
void lb_set_label(lb_state *st, const char *label) { S(st)->SetLabel(label); }

void lb_counter(lb_state *st, const char *name, double value, unsigned flags) {
    int f = benchmark::Counter::kDefaults;
    if (flags & LB_RATE) f |= benchmark::Counter::kIsRate;
    if (flags & LB_AVG_THREADS) f |= benchmark::Counter::kAvgThreads;
    if (flags & LB_AVG_ITERS) f |= benchmark::Counter::kAvgIterations;
    S(st)->counters[name] = benchmark::Counter(value, benchmark::Counter::Flags(f));
}

}  // extern "C"
