#include "testutil.h"

#include <pthread.h>
#include <unistd.h>

double lt_stress_seconds(void)
{
    const char *e = getenv("LULL_STRESS_SECONDS");
    double s = e ? strtod(e, NULL) : 0;
    return s > 0 ? s : 1.0;
}

uint64_t lt_seed(uint64_t dflt)
{
    const char *e = getenv("LULL_TEST_SEED");
    uint64_t s = e ? strtoull(e, NULL, 0) : dflt;
    fprintf(stderr, "seed: LULL_TEST_SEED=%#llx\n", (unsigned long long)s);
    return s;
}

size_t lt_rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%lu %lu", &size, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * (size_t)sysconf(_SC_PAGESIZE) / 1024;
}

bool lt_sanitized(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    return true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
    return true;
#else
    return false;
#endif
#else
    return false;
#endif
}

void lt_run_threads(unsigned n, void *(*fn)(void *), void *base, size_t stride)
{
    pthread_t *t = calloc(n, sizeof(*t));
    LT_CHECK(t != NULL);
    for (unsigned i = 0; i < n; i++)
        LT_CHECK(pthread_create(&t[i], NULL, fn, (char *)base + i * stride) == 0);
    for (unsigned i = 0; i < n; i++)
        LT_CHECK(pthread_join(t[i], NULL) == 0);
    free(t);
}

uint64_t lt_clock_read(void *ctx)
{
    return __atomic_load_n(&((struct lt_clock *)ctx)->now, __ATOMIC_ACQUIRE);
}
