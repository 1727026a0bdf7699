/* tests/store/stress_store_memory.c - memory held by retired snapshots stays
 * bounded under a sustained write load.
 *
 * Writers publish millions of updates on a few keys (values of a few hundred
 * bytes: with nothing freed that is hundreds of MiB) while a reader takes
 * short sections.  RSS is sampled after a warm-up and throughout; the growth
 * must stay under 32 MiB (asserted in plain builds only: sanitizers' own
 * allocators make RSS meaningless).  The figures are always printed. */
#include "store_testlib.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

enum { KEYS = 4, VLEN = 256, WRITERS = 2 };

struct shared {
    lull_store *s;
    unsigned long per_writer;
    unsigned long done;       /* updates completed, all writers */
    int writers_left;
    int stop_reader;
};

static int bump_fn(const struct lull_snap *cur, struct lull_buf *next, void *arg)
{
    (void)arg;
    if (!cur || next->len != VLEN) {
        int rc = lull_buf_resize(next, VLEN);
        if (rc)
            return rc;
    }
    unsigned char *b = next->data;
    for (size_t i = 0; i < VLEN; i += 32)
        b[i]++;
    return LULL_PUBLISH;
}

static void *writer(void *p)
{
    struct shared *sh = p;
    unsigned char val[VLEN];
    memset(val, 'w', sizeof val);
    for (unsigned long i = 0; i < sh->per_writer; i++) {
        char key[4] = { 'm', (char)('0' + i % KEYS), 0, 0 };
        if (i & 1) {
            LT_CHECK_EQ(lull_store_update(sh->s, key, 2, bump_fn, NULL, NULL), 0);
        } else {
            val[i % VLEN]++;
            LT_CHECK_EQ(lull_store_put(sh->s, key, 2, val, VLEN - (i % 8), NULL), 0);
        }
        if ((i & 1023) == 1023)
            __atomic_fetch_add(&sh->done, 1024, __ATOMIC_RELAXED);
    }
    __atomic_fetch_sub(&sh->writers_left, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void *reader(void *p)
{
    struct shared *sh = p;
    unsigned long sum = 0;
    while (!__atomic_load_n(&sh->stop_reader, __ATOMIC_ACQUIRE)) {
        lull_read_lock();
        for (unsigned k = 0; k < KEYS; k++) {
            char key[4] = { 'm', (char)('0' + k), 0, 0 };
            const struct lull_snap *sn = lull_store_get(sh->s, key, 2);
            if (sn)
                sum += ((const unsigned char *)sn->value)[0];
        }
        lull_read_unlock();
    }
    return (void *)(uintptr_t)sum;
}

static void test_memory_bounded(void **state)
{
    (void)state;
    lull_store *s = lull_store_create(NULL);
    assert_non_null(s);
    double total = (lt_sanitized() ? 1e5 : 1.2e6) * lt_stress_seconds();
    struct shared sh = { s, (unsigned long)(total / WRITERS), 0, WRITERS, 0 };
    unsigned long all = sh.per_writer * WRITERS;
    pthread_t w[WRITERS], r;
    uint64_t t0 = lull__now_ns();
    for (unsigned i = 0; i < WRITERS; i++)
        assert_int_equal(pthread_create(&w[i], NULL, writer, &sh), 0);
    assert_int_equal(pthread_create(&r, NULL, reader, &sh), 0);

    size_t rss_start = 0, rss_max = 0, samples = 0;
    unsigned long at_start = 0;
    uint64_t t_start = 0;
    while (__atomic_load_n(&sh.writers_left, __ATOMIC_ACQUIRE) > 0) {
        struct timespec ts = { 0, 5 * 1000 * 1000 };
        nanosleep(&ts, NULL);
        unsigned long done = __atomic_load_n(&sh.done, __ATOMIC_RELAXED);
        size_t rss = lt_rss_kib();
        if (!rss_start) {
            if (done >= all / 10) {      /* warmed up */
                rss_start = rss;
                at_start = done;
                t_start = lull__now_ns();
            }
            continue;
        }
        if (rss > rss_max)
            rss_max = rss;
        samples++;
    }
    uint64_t t1 = lull__now_ns();
    for (unsigned i = 0; i < WRITERS; i++)
        assert_int_equal(pthread_join(w[i], NULL), 0);
    size_t rss_end = lt_rss_kib();
    if (rss_end > rss_max)
        rss_max = rss_end;
    __atomic_store_n(&sh.stop_reader, 1, __ATOMIC_RELEASE);
    assert_int_equal(pthread_join(r, NULL), 0);
    if (!rss_start) {             /* too quick to sample the warm-up */
        rss_start = rss_end;
        t_start = t0;
    }
    double secs = (t1 - t0) / 1e9;
    fprintf(stderr,
            "memory: %lu updates on %d keys in %.2f s (%.0f updates/s); RSS after warm-up "
            "(%lu updates) %zu KiB, max %zu KiB, end %zu KiB, growth %ld KiB over %zu samples%s\n",
            all, KEYS, secs, all / secs, at_start, rss_start, rss_max, rss_end,
            (long)rss_max - (long)rss_start, samples,
            lt_sanitized() ? " (sanitized: not asserted)" : "");
    (void)t_start;
    if (!lt_sanitized())
        assert_true(rss_max < rss_start + 32 * 1024);
    assert_int_equal(lull_store_count(s), KEYS);
    assert_int_equal(lull_store_check(s, stderr), 0);
    assert_int_equal(lull_store_destroy(s), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory_bounded),
    };
    if (getenv("LT_TEST"))      /* run only the tests matching this pattern */
        cmocka_set_test_filter(getenv("LT_TEST"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
