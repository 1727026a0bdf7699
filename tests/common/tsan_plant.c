/* tests/common/tsan_plant.c - proves ThreadSanitizer is not blind.
 *
 * Registered in ctest only in TSan builds; each entry passes only if TSan
 * reports (PASS_REGULAR_EXPRESSION), so a TSan made blind by the
 * suppressions in tests/tsan.supp, or by lull's annotations, fails here.
 *
 *   tsan_plant plain  two threads increment a plain int: a data race.
 *   tsan_plant lull   the misuse lull's contract forbids: a reader keeps
 *                     reading a snapshot's bytes after lull_read_unlock()
 *                     while a writer replaces the key and calls
 *                     lull_barrier(), so the snapshot is freed under it.
 *
 * The program bounds its own running time and prints "no race reported" if
 * TSan said nothing. */
#include <lull.h>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BUDGET_NS (20ull * 1000000000ull)

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int stop;

/* ------------------------------------------------------------ plain */

static volatile int shared_counter;   /* volatile: every ++ is a real access */

static void *incr(void *p)
{
    (void)p;
    uint64_t end = now_ns() + BUDGET_NS;
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED) && now_ns() < end)
        for (int i = 0; i < 1000; i++)
            shared_counter++;          /* the planted race */
    return NULL;
}

static int plant_plain(void)
{
    pthread_t a, b;
    if (pthread_create(&a, NULL, incr, NULL) || pthread_create(&b, NULL, incr, NULL))
        return 2;
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    printf("counter %d\n", shared_counter);
    return 0;
}

/* ------------------------------------------------------------- lull */

enum { VLEN = 64 };

static void *writer(void *p)
{
    lull_store *s = p;
    unsigned char val[VLEN];
    unsigned i = 0;
    while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
        for (int k = 0; k < 100; k++) {
            memset(val, (int)(i++ & 0xff), sizeof val);
            if (lull_store_put(s, "k", 1, val, sizeof val, NULL) != 0)
                abort();
        }
        if (lull_barrier() != 0)        /* the replaced snapshots are freed now */
            abort();
    }
    return NULL;
}

static int plant_lull(void)
{
    lull_store *s = lull_store_create(NULL);
    if (!s)
        return 2;
    unsigned char val[VLEN] = { 0 };
    if (lull_store_put(s, "k", 1, val, sizeof val, NULL) != 0)
        return 2;
    pthread_t w;
    if (pthread_create(&w, NULL, writer, s))
        return 2;
    uint64_t end = now_ns() + BUDGET_NS;
    unsigned long sum = 0, snaps = 0;
    while (now_ns() < end) {
        lull_read_lock();
        const struct lull_snap *sn = lull_store_get(s, "k", 1);
        if (!sn)
            abort();
        const volatile unsigned char *bytes = sn->value;
        size_t len = sn->value_len;
        lull_read_unlock();
        snaps++;
        /* THE MISUSE: the snapshot is no longer protected; keep reading it
         * for a while (10 ms) while the writer frees it. */
        uint64_t until = now_ns() + 10 * 1000000ull;
        while (now_ns() < until)
            for (size_t i = 0; i < len; i++)
                sum += bytes[i];
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    pthread_join(w, NULL);
    printf("%lu snapshots misused, sum %lu\n", snaps, sum);
    lull_store_destroy(s);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2 || (strcmp(argv[1], "plain") && strcmp(argv[1], "lull"))) {
        fprintf(stderr, "usage: %s plain|lull\n", argv[0]);
        return 2;
    }
    int rc = strcmp(argv[1], "plain") == 0 ? plant_plain() : plant_lull();
    printf("no race reported\n");
    return rc ? rc : 1;    /* reaching here means TSan stayed silent */
}
