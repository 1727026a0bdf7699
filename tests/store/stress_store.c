/* tests/store/stress_store.c - the store's guarantees under real concurrency.
 * Duration scales with LULL_STRESS_SECONDS (default short).  Threads check
 * with LT_CHECK (cmocka's asserts are main-thread only). */
#include "store_testlib.h"

#include <pthread.h>
#include <sched.h>
#include <string.h>

static unsigned scaled(double per_second, unsigned min)
{
    double n = per_second * lt_stress_seconds();
    if (lt_sanitized())
        n /= 4;
    return n < min ? min : (unsigned)n;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* -------------------------------------------- sixteen disjoint fields */

enum { NF = 16, FW = 8 };   /* 16 fields of 8 bytes */

struct merge_arg {
    lull_store *s;
    pthread_barrier_t *bar;
    unsigned rounds;
    unsigned idx;
    unsigned long attempts;
};

struct field_ctx { unsigned idx; uint64_t tag; };

static int merge_fn(const struct lull_snap *cur, struct lull_buf *next, void *arg)
{
    struct field_ctx *f = arg;
    (void)cur;
    if (next->len < NF * FW) {
        int rc = lull_buf_resize(next, NF * FW);
        if (rc)
            return rc;
    }
    memcpy((char *)next->data + f->idx * FW, &f->tag, FW);
    return LULL_PUBLISH;
}

static void *merge_thread(void *p)
{
    struct merge_arg *a = p;
    for (unsigned r = 0; r < a->rounds; r++) {
        pthread_barrier_wait(a->bar);               /* main has reset the key */
        struct field_ctx f = { a->idx, ((uint64_t)(r + 1) << 8) | a->idx };
        struct lull_update_info info;
        LT_CHECK_EQ(lull_store_update(a->s, "merge", 5, merge_fn, &f, &info), 0);
        LT_CHECK(info.outcome == LULL_INSERTED || info.outcome == LULL_UPDATED);
        LT_CHECK(info.attempts >= 1);
        a->attempts += info.attempts;
        pthread_barrier_wait(a->bar);               /* all merged */
    }
    return NULL;
}

static void test_merge_sixteen(void **state)
{
    (void)state;
    lull_store *s = lull_store_create(NULL);
    assert_non_null(s);
    unsigned rounds = scaled(400, 200);
    pthread_barrier_t bar;
    assert_int_equal(pthread_barrier_init(&bar, NULL, NF + 1), 0);
    struct merge_arg args[NF];
    pthread_t th[NF];
    for (unsigned i = 0; i < NF; i++) {
        args[i] = (struct merge_arg){ s, &bar, rounds, i, 0 };
        assert_int_equal(pthread_create(&th[i], NULL, merge_thread, &args[i]), 0);
    }
    for (unsigned r = 0; r < rounds; r++) {
        /* reset: half the rounds start from an absent key, half from zeros */
        if (r & 1) {
            char zero[NF * FW] = { 0 };
            assert_int_equal(lull_store_put(s, "merge", 5, zero, sizeof zero, NULL), 0);
        } else {
            int rc = lull_store_delete(s, "merge", 5);
            assert_true(rc == 0 || rc == -ENOENT);
        }
        pthread_barrier_wait(&bar);
        pthread_barrier_wait(&bar);
        unsigned char buf[NF * FW];
        size_t len = 0;
        assert_int_equal(lull_store_read(s, "merge", 5, buf, sizeof buf, &len, NULL), 0);
        assert_int_equal(len, NF * FW);
        for (unsigned i = 0; i < NF; i++) {
            uint64_t tag;
            memcpy(&tag, buf + i * FW, FW);
            if (tag != (((uint64_t)(r + 1) << 8) | i))
                fail_msg("round %u: field %u lost (holds %#llx)", r, i, (unsigned long long)tag);
        }
    }
    unsigned long attempts = 0;
    for (unsigned i = 0; i < NF; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        attempts += args[i].attempts;
    }
    pthread_barrier_destroy(&bar);
    fprintf(stderr, "merge16: %u rounds, %lu fn runs for %u updates (%.2f per update)\n",
            rounds, attempts, rounds * NF, (double)attempts / (rounds * NF));
    assert_int_equal(lull_store_count(s), 1);
    assert_int_equal(lull_store_check(s, stderr), 0);
    assert_int_equal(lull_store_destroy(s), 0);
}

/* ------------------------------------------------------------ counter */

struct count_arg {
    lull_store *s;
    unsigned n;
    uint64_t *versions;    /* n of them */
    unsigned long attempts;
};

static int incr_fn(const struct lull_snap *cur, struct lull_buf *next, void *arg)
{
    (void)arg;
    uint64_t c = 0;
    if (cur) {
        LT_CHECK_EQ(next->len, sizeof c);
        memcpy(&c, next->data, sizeof c);
    } else {
        int rc = lull_buf_resize(next, sizeof c);
        if (rc)
            return rc;
    }
    c++;
    memcpy(next->data, &c, sizeof c);
    return LULL_PUBLISH;
}

static void *count_thread(void *p)
{
    struct count_arg *a = p;
    uint64_t last = 0;
    for (unsigned i = 0; i < a->n; i++) {
        struct lull_update_info info;
        LT_CHECK_EQ(lull_store_update(a->s, "ctr", 3, incr_fn, NULL, &info), 0);
        LT_CHECK(info.outcome == LULL_UPDATED || info.outcome == LULL_INSERTED);
        LT_CHECK(info.version > last);              /* strictly increasing per thread */
        last = info.version;
        a->versions[i] = info.version;
        a->attempts += info.attempts;
        /* a reader in the same thread sees at least its own publish */
        if ((i & 63) == 0) {
            uint64_t c = 0, v = 0;
            size_t len = 0;
            LT_CHECK_EQ(lull_store_read(a->s, "ctr", 3, &c, sizeof c, &len, &v), 0);
            LT_CHECK(v >= info.version);
        }
    }
    return NULL;
}

static void test_counter(void **state)
{
    (void)state;
    lull_store *s = lull_store_create(NULL);
    assert_non_null(s);
    enum { T = 4 };
    unsigned n = scaled(25000, 2000);
    struct count_arg args[T];
    for (unsigned t = 0; t < T; t++) {
        args[t] = (struct count_arg){ s, n, calloc(n, sizeof(uint64_t)), 0 };
        assert_non_null(args[t].versions);
    }
    uint64_t t0 = lull__now_ns();
    lt_run_threads(T, count_thread, args, sizeof args[0]);
    double dt = (lull__now_ns() - t0) / 1e9;
    uint64_t c = 0;
    size_t len = 0;
    assert_int_equal(lull_store_read(s, "ctr", 3, &c, sizeof c, &len, NULL), 0);
    assert_int_equal(len, sizeof c);
    unsigned long attempts = 0;
    uint64_t *all = calloc((size_t)T * n, sizeof(uint64_t));
    assert_non_null(all);
    for (unsigned t = 0; t < T; t++) {
        memcpy(all + (size_t)t * n, args[t].versions, n * sizeof(uint64_t));
        attempts += args[t].attempts;
        free(args[t].versions);
    }
    fprintf(stderr, "counter: %u threads x %u = %llu (expected %u), %lu fn runs, %.0f updates/s\n",
            T, n, (unsigned long long)c, T * n, attempts, T * n / dt);
    assert_int_equal(c, (uint64_t)T * n);                  /* no lost update */
    qsort(all, (size_t)T * n, sizeof(uint64_t), cmp_u64);
    for (size_t i = 1; i < (size_t)T * n; i++)
        if (all[i - 1] == all[i])
            fail_msg("version %llu published twice", (unsigned long long)all[i]);
    free(all);
    assert_int_equal(lull_store_check(s, stderr), 0);
    assert_int_equal(lull_store_destroy(s), 0);
}

/* ------------------------------------------ snapshots never change */

/* A self-checking value: 8-byte seq, 4-byte length, then bytes derived from
 * seq, the last 4 bytes a checksum of all before them. */
enum { HDR = 12, NKEYS = 4 };

static size_t pat_len(uint64_t seq) { return 32 + (size_t)(seq * 7 % 200); }

static uint32_t pat_sum(const unsigned char *b, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 16777619u;
    return h;
}

static void pat_make(unsigned char *b, uint64_t seq)
{
    size_t n = pat_len(seq);
    uint32_t len = (uint32_t)n;
    memcpy(b, &seq, 8);
    memcpy(b + 8, &len, 4);
    for (size_t i = HDR; i < n - 4; i++)
        b[i] = (unsigned char)(seq + i * 13);
    uint32_t h = pat_sum(b, n - 4);
    memcpy(b + n - 4, &h, 4);
}

static void pat_check(const unsigned char *b, size_t n)
{
    LT_CHECK(n >= 32);
    uint64_t seq;
    uint32_t len, h;
    memcpy(&seq, b, 8);
    memcpy(&len, b + 8, 4);
    LT_CHECK_EQ(len, n);
    LT_CHECK_EQ(pat_len(seq), n);
    for (size_t i = HDR; i < n - 4; i++)
        LT_CHECK_EQ(b[i], (unsigned char)(seq + i * 13));
    memcpy(&h, b + n - 4, 4);
    LT_CHECK_EQ(h, pat_sum(b, n - 4));
}

struct snap_shared {
    lull_store *s;
    int stop;
    uint64_t seq;          /* writers' shared sequence */
    unsigned long checks, held_across;
};

static int pat_fn(const struct lull_snap *cur, struct lull_buf *next, void *arg)
{
    uint64_t seq = *(uint64_t *)arg;
    if (cur)
        pat_check(cur->value, cur->value_len);
    int rc = lull_buf_resize(next, pat_len(seq));
    if (rc)
        return rc;
    pat_make(next->data, seq);
    return LULL_PUBLISH;
}

static void *snap_writer(void *p)
{
    struct snap_shared *sh = p;
    unsigned char buf[256];
    unsigned i = 0;
    while (!__atomic_load_n(&sh->stop, __ATOMIC_ACQUIRE)) {
        uint64_t seq = __atomic_fetch_add(&sh->seq, 1, __ATOMIC_RELAXED);
        char key[8];
        snprintf(key, sizeof key, "s%u", (unsigned)(seq % NKEYS));
        switch (i++ % 4) {
        case 0:
        case 1:
            pat_make(buf, seq);
            LT_CHECK_EQ(lull_store_put(sh->s, key, 2, buf, pat_len(seq), NULL), 0);
            break;
        case 2:
            LT_CHECK_EQ(lull_store_update(sh->s, key, 2, pat_fn, &seq, NULL), 0);
            break;
        default: {
            int rc = lull_store_delete(sh->s, key, 2);
            LT_CHECK(rc == 0 || rc == -ENOENT);
        }
        }
    }
    return NULL;
}

static void *snap_reader(void *p)
{
    struct snap_shared *sh = p;
    unsigned char copy[NKEYS][256];
    const struct lull_snap *held[NKEYS];
    unsigned long checks = 0, across = 0;
    unsigned iter = 0;
    while (!__atomic_load_n(&sh->stop, __ATOMIC_ACQUIRE)) {
        lull_read_lock();
        bool nested = iter++ & 1;
        if (nested)
            lull_read_lock();
        for (unsigned k = 0; k < NKEYS; k++) {
            char key[8];
            snprintf(key, sizeof key, "s%u", k);
            held[k] = lull_store_get(sh->s, key, 2);
            if (held[k]) {
                LT_CHECK(held[k]->value_len <= sizeof copy[k]);
                memcpy(copy[k], held[k]->value, held[k]->value_len);
                pat_check(copy[k], held[k]->value_len);   /* never a value being written */
            }
        }
        if (nested)
            lull_read_unlock();      /* inner unlock: the snapshots stay valid */
        /* spin, re-reading: the bytes must not change while writers publish */
        for (int rep = 0; rep < 50; rep++) {
            for (unsigned k = 0; k < NKEYS; k++) {
                if (!held[k])
                    continue;
                LT_CHECK(memcmp(held[k]->value, copy[k], held[k]->value_len) == 0);
                pat_check(held[k]->value, held[k]->value_len);
                checks++;
            }
            if (rep % 10 == 9) {
                /* has any key moved on meanwhile? then we held across a publish */
                for (unsigned k = 0; k < NKEYS; k++) {
                    char key[8];
                    snprintf(key, sizeof key, "s%u", k);
                    const struct lull_snap *now = lull_store_get(sh->s, key, 2);
                    if (held[k] && now != held[k])
                        across++;
                }
                sched_yield();
            }
        }
        lull_read_unlock();
        /* copies through lull_store_read are consistent too */
        unsigned char buf[256];
        size_t len = 0;
        int rc = lull_store_read(sh->s, "s0", 2, buf, sizeof buf, &len, NULL);
        LT_CHECK(rc == 0 || rc == -ENOENT);
        if (rc == 0)
            pat_check(buf, len);
    }
    __atomic_fetch_add(&sh->checks, checks, __ATOMIC_RELAXED);
    __atomic_fetch_add(&sh->held_across, across, __ATOMIC_RELAXED);
    return NULL;
}

static void test_snapshots_immutable(void **state)
{
    (void)state;
    lull_store *s = lull_store_create(NULL);
    assert_non_null(s);
    struct snap_shared sh = { s, 0, 1, 0, 0 };
    enum { W = 2, R = 3 };
    pthread_t th[W + R];
    for (unsigned i = 0; i < W + R; i++)
        assert_int_equal(pthread_create(&th[i], NULL, i < W ? snap_writer : snap_reader, &sh), 0);
    uint64_t end = lull__now_ns() + (uint64_t)(lt_stress_seconds() * 1e9);
    while (lull__now_ns() < end) {
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    __atomic_store_n(&sh.stop, 1, __ATOMIC_RELEASE);
    for (unsigned i = 0; i < W + R; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    fprintf(stderr, "snapshots: %llu publishes, %lu re-reads compared, %lu held across a publish\n",
            (unsigned long long)sh.seq, sh.checks, sh.held_across);
    assert_true(sh.checks > 0);
    assert_int_equal(lull_store_check(s, stderr), 0);
    assert_int_equal(lull_store_destroy(s), 0);
}

/* ---------------------------------------------------------- max_keys */

enum { MAXK = 64, INS_T = 8, INS_PER = 40 };

static int set_fn(const struct lull_snap *cur, struct lull_buf *next, void *arg)
{
    (void)cur; (void)arg;
    int rc = lull_buf_resize(next, 1);
    if (rc)
        return rc;
    *(char *)next->data = 'u';
    return LULL_PUBLISH;
}

static int remove_fn(const struct lull_snap *cur, struct lull_buf *next, void *arg)
{
    (void)next; (void)arg;
    LT_CHECK(cur != NULL);
    return LULL_REMOVE;
}

struct ins_arg {
    lull_store *s;
    pthread_barrier_t *bar;
    unsigned t;
    unsigned ok, nospc;
};

static void *ins_thread(void *p)
{
    struct ins_arg *a = p;
    pthread_barrier_wait(a->bar);
    for (unsigned i = 0; i < INS_PER; i++) {
        char key[16];
        snprintf(key, sizeof key, "t%u-%u", a->t, i);
        int rc;
        switch ((a->t + i) % 3) {
        case 0: rc = lull_store_put(a->s, key, strlen(key), "v", 1, NULL); break;
        case 1: rc = lull_store_put_if(a->s, key, strlen(key), "v", 1, 0, NULL); break;
        default: {
            struct lull_update_info info;
            rc = lull_store_update(a->s, key, strlen(key), set_fn, NULL, &info);
            if (rc == 0)
                LT_CHECK_EQ(info.outcome, LULL_INSERTED);
        }
        }
        if (rc == 0)
            a->ok++;
        else if (rc == -ENOSPC)
            a->nospc++;
        else
            LT_CHECK(!"unexpected insert error");
        LT_CHECK(lull_store_count(a->s) <= MAXK);
    }
    return NULL;
}

static int count_cb(const struct lull_snap *sn, void *arg)
{
    (void)sn;
    (*(size_t *)arg)++;
    return 0;
}

static void test_max_keys_racing_inserts(void **state)
{
    (void)state;
    unsigned rounds = scaled(40, 10);
    for (unsigned r = 0; r < rounds; r++) {
        struct lull_store_opts o = { MAXK, 0, 0, 0 };
        lull_store *s = lull_store_create(&o);
        assert_non_null(s);
        pthread_barrier_t bar;
        assert_int_equal(pthread_barrier_init(&bar, NULL, INS_T), 0);
        struct ins_arg a[INS_T];
        for (unsigned t = 0; t < INS_T; t++)
            a[t] = (struct ins_arg){ s, &bar, t, 0, 0 };
        lt_run_threads(INS_T, ins_thread, a, sizeof a[0]);
        pthread_barrier_destroy(&bar);
        unsigned ok = 0, nospc = 0;
        for (unsigned t = 0; t < INS_T; t++) {
            ok += a[t].ok;
            nospc += a[t].nospc;
        }
        if (ok != MAXK)
            fail_msg("round %u: %u inserts succeeded with max_keys %d", r, ok, MAXK);
        assert_int_equal(nospc, INS_T * INS_PER - MAXK);
        assert_int_equal(lull_store_count(s), MAXK);
        size_t seen = 0;
        assert_int_equal(lull_store_foreach(s, count_cb, &seen), 0);
        assert_int_equal(seen, MAXK);
        assert_int_equal(lull_store_check(s, stderr), 0);
        assert_int_equal(lull_store_destroy(s), 0);
    }
}

/* inserts and deletes race; each thread owns its keys, so it knows exactly
 * which are present; the counter is never seen above max_keys */
struct churn_arg {
    lull_store *s;
    int *stop;
    unsigned t;
    uint64_t seed;
    bool present[64];
    unsigned long ops, nospc;
};

static void *churn_thread(void *p)
{
    struct churn_arg *a = p;
    while (!__atomic_load_n(a->stop, __ATOMIC_ACQUIRE)) {
        unsigned k = (unsigned)(lt_rand(&a->seed) % 64);
        char key[16];
        snprintf(key, sizeof key, "c%u-%u", a->t, k);
        size_t kl = strlen(key);
        int rc;
        if (a->present[k] && (lt_rand(&a->seed) & 1)) {
            if (lt_rand(&a->seed) & 1) {
                rc = lull_store_delete(a->s, key, kl);
            } else {
                struct lull_update_info info;
                rc = lull_store_update(a->s, key, kl, remove_fn, NULL, &info);
                if (rc == 0)
                    LT_CHECK_EQ(info.outcome, LULL_REMOVED);
            }
            LT_CHECK_EQ(rc, 0);
            a->present[k] = false;
        } else {
            switch (lt_rand(&a->seed) % 3) {
            case 0: rc = lull_store_put(a->s, key, kl, "v", 1, NULL); break;
            case 1:
                rc = a->present[k] ? lull_store_put(a->s, key, kl, "w", 1, NULL)
                                   : lull_store_put_if(a->s, key, kl, "v", 1, 0, NULL);
                break;
            default:
                rc = lull_store_update(a->s, key, kl, set_fn, NULL, NULL);
            }
            if (rc == 0)
                a->present[k] = true;
            else
                LT_CHECK_EQ(rc, -ENOSPC);
            if (rc == -ENOSPC) {
                LT_CHECK(!a->present[k]);      /* replacing never hits the limit */
                a->nospc++;
            }
        }
        LT_CHECK(lull_store_count(a->s) <= MAXK);
        a->ops++;
    }
    return NULL;
}

struct watch_arg { lull_store *s; int *stop; unsigned long polls; size_t max_seen; };

static void *watch_thread(void *p)
{
    struct watch_arg *w = p;
    while (!__atomic_load_n(w->stop, __ATOMIC_ACQUIRE)) {
        size_t c = lull_store_count(w->s);
        LT_CHECK(c <= MAXK);
        if (c > w->max_seen)
            w->max_seen = c;
        w->polls++;
    }
    return NULL;
}

static void test_max_keys_churn(void **state)
{
    (void)state;
    struct lull_store_opts o = { MAXK, 0, 0, 0 };
    lull_store *s = lull_store_create(&o);
    assert_non_null(s);
    int stop = 0;
    enum { CT = 4 };
    static struct churn_arg a[CT];
    uint64_t seed = lt_seed(0xc4u);
    for (unsigned t = 0; t < CT; t++)
        a[t] = (struct churn_arg){ s, &stop, t, seed + t, { false }, 0, 0 };
    struct watch_arg w = { s, &stop, 0, 0 };
    pthread_t th[CT + 1];
    for (unsigned t = 0; t < CT; t++)
        assert_int_equal(pthread_create(&th[t], NULL, churn_thread, &a[t]), 0);
    assert_int_equal(pthread_create(&th[CT], NULL, watch_thread, &w), 0);
    struct timespec ts = { 0, 0 };
    double secs = lt_stress_seconds();
    ts.tv_sec = (time_t)secs;
    ts.tv_nsec = (long)((secs - (double)ts.tv_sec) * 1e9);
    nanosleep(&ts, NULL);
    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    for (unsigned t = 0; t <= CT; t++)
        assert_int_equal(pthread_join(th[t], NULL), 0);
    size_t expect = 0;
    unsigned long ops = 0, nospc = 0;
    for (unsigned t = 0; t < CT; t++) {
        for (unsigned k = 0; k < 64; k++)
            expect += a[t].present[k];
        ops += a[t].ops;
        nospc += a[t].nospc;
    }
    fprintf(stderr, "churn: %lu ops, %lu -ENOSPC, %lu count polls (max seen %zu), %zu keys at end\n",
            ops, nospc, w.polls, w.max_seen, expect);
    assert_true(nospc > 0);   /* the limit was actually under pressure */
    assert_int_equal(lull_store_count(s), expect);
    size_t seen = 0;
    assert_int_equal(lull_store_foreach(s, count_cb, &seen), 0);
    assert_int_equal(seen, expect);
    assert_int_equal(lull_store_check(s, stderr), 0);
    assert_int_equal(lull_store_destroy(s), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merge_sixteen),
        cmocka_unit_test(test_counter),
        cmocka_unit_test(test_snapshots_immutable),
        cmocka_unit_test(test_max_keys_racing_inserts),
        cmocka_unit_test(test_max_keys_churn),
    };
    if (getenv("LT_TEST"))      /* run only the tests matching this pattern */
        cmocka_set_test_filter(getenv("LT_TEST"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
