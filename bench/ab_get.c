/*
 * bench/ab_get.c - the hot get of two builds of liblull.so, A against B, in
 * one process (scripts/ab.sh builds the two and runs this).
 *
 *   lull_ab_get A.so B.so [keys [threads [slices]]]
 *
 * Both libraries are loaded with dlopen(RTLD_LOCAL), each fills a store of
 * `keys` 16-byte keys with 64-byte values (as bench_store.c does), and then
 * every thread runs the same loop -- lull_read_lock, lull_store_get, read
 * the first 8 value bytes, lull_read_unlock, on a random key -- in short
 * slices that alternate between A and B (ABBA order), all threads on the
 * same library at once.  What it prints is the median over slice pairs of
 * B's time over A's, with its quartiles: on a host whose speed changes from
 * one second to the next, two separate benchmark runs disagree by more than
 * the change being measured, while two slices a few milliseconds apart see
 * the same host.  It measures change, not speed: the shared library's
 * get costs more than a program's (docs/performance.md).
 */
#include "common.h"
#include "lull_fns.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { OPS = 100000, MAX_THREADS = 16, MAX_SLICES = 4000 };

struct lib {
    const char *path;
    struct lull_fns f;
    lull_store *store;
};

static struct lib libs[2];
static unsigned long keys = 1024;
static int threads = 2, slices = 400;
static pthread_barrier_t barrier;
static double ns[MAX_SLICES][MAX_THREADS];   /* slice, thread: ns per get */
static unsigned long misses;                 /* gets that found nothing: must stay 0 */

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int load(struct lib *l)
{
    if (!lull_fns_load(l->path, &l->f))
        return -1;
    if (!(l->store = l->f.create(NULL))) {
        perror("ab_get: lull_store_create");
        return -1;
    }
    unsigned char k[BC_KEY_LEN], v[BC_VALUE_LEN] = { 0 };
    for (uint64_t i = 0; i < keys; i++) {
        bc_key(k, i);
        memcpy(v, &i, 8);
        int rc = l->f.put(l->store, k, sizeof k, v, sizeof v, NULL);
        if (rc) {
            fprintf(stderr, "ab_get: %s: put: %s\n", l->path, strerror(-rc));
            return -1;
        }
    }
    return 0;
}

/* Slice s runs library s % 2, flipped every other pair: A B B A A B ... */
static int lib_of(int s)
{
    return (s & 1) ^ ((s >> 1) & 1);
}

static void *run(void *arg)
{
    int t = (int)(intptr_t)arg;
    uint64_t seed = 0x6c756c6cULL * (uint64_t)(t + 1), sum = 0;
    unsigned long miss = 0;
    unsigned char k[BC_KEY_LEN];
    for (int i = 0; i < 2; i++) {   /* register with both before timing */
        libs[i].f.lock();
        libs[i].f.unlock();
    }
    for (int s = 0; s < slices; s++) {
        const struct lib *l = &libs[lib_of(s)];
        pthread_barrier_wait(&barrier);
        double t0 = now_ns();
        for (int i = 0; i < OPS; i++) {
            bc_key(k, bc_pick(bc_rand(&seed), keys));
            l->f.lock();
            const struct lull_snap *sn = l->f.get(l->store, k, sizeof k);
            if (sn) {
                uint64_t v;
                memcpy(&v, sn->value, 8);
                sum += v;
            } else {
                miss++;
            }
            l->f.unlock();
        }
        ns[s][t] = (now_ns() - t0) / OPS;
    }
    __atomic_fetch_add(&misses, miss, __ATOMIC_RELAXED);
    return (void *)(uintptr_t)sum;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 6) {
        fprintf(stderr, "usage: %s A.so B.so [keys [threads [slices]]]\n", argv[0]);
        return 2;
    }
    libs[0].path = argv[1];
    libs[1].path = argv[2];
    if (argc > 3)
        keys = strtoul(argv[3], NULL, 10);
    if (argc > 4)
        threads = atoi(argv[4]);
    if (argc > 5)
        slices = atoi(argv[5]) & ~3;
    if (!keys || threads < 1 || threads > MAX_THREADS || slices < 4 || slices > MAX_SLICES) {
        fprintf(stderr, "ab_get: keys >= 1, threads 1..%d, slices 4..%d\n", MAX_THREADS,
                MAX_SLICES);
        return 2;
    }
    if (load(&libs[0]) || load(&libs[1]))
        return 1;

    pthread_t th[MAX_THREADS];
    pthread_barrier_init(&barrier, NULL, (unsigned)threads);
    for (int t = 0; t < threads; t++)
        if (pthread_create(&th[t], NULL, run, (void *)(intptr_t)t)) {
            perror("ab_get: pthread_create");
            return 1;
        }
    for (int t = 0; t < threads; t++)
        pthread_join(th[t], NULL);
    if (misses) {
        fprintf(stderr, "ab_get: %lu gets found nothing: the stores are broken\n", misses);
        return 1;
    }

    /* Per slice, the mean over threads; per pair of neighbouring A and B
     * slices, B / A. */
    static double a[MAX_SLICES / 2], b[MAX_SLICES / 2], r[MAX_SLICES / 2];
    int pairs = 0;
    for (int s = 0; s + 1 < slices; s += 2) {
        double x[2] = { 0, 0 };
        for (int i = 0; i < 2; i++)
            for (int t = 0; t < threads; t++)
                x[lib_of(s + i)] += ns[s + i][t] / threads;
        a[pairs] = x[0];
        b[pairs] = x[1];
        r[pairs] = x[1] / x[0];
        pairs++;
    }
    qsort(a, (size_t)pairs, sizeof a[0], cmp_double);
    qsort(b, (size_t)pairs, sizeof b[0], cmp_double);
    qsort(r, (size_t)pairs, sizeof r[0], cmp_double);
    printf("%lu keys, %d thread%s, %d slice pairs of %d gets a thread\n", keys, threads,
           threads == 1 ? "" : "s", pairs, OPS);
    printf("  A %-40s %7.2f ns/get (median; fastest tenth %.2f)\n", libs[0].path,
           a[pairs / 2], a[pairs / 10]);
    printf("  B %-40s %7.2f ns/get (median; fastest tenth %.2f)\n", libs[1].path,
           b[pairs / 2], b[pairs / 10]);
    printf("  B/A %.3f (quartiles %.3f-%.3f)\n", r[pairs / 2], r[pairs / 4], r[3 * pairs / 4]);
    return 0;
}
