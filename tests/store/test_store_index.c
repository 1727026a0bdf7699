/* tests/store/test_store_index.c - the store's front index, one race at a
 * time (lib/store_index.c).
 *
 * Each race is staged with a second thread that lull__ix_test_hook stops
 * between an installer's reference and its placement -- the window the
 * protocol exists for -- while the main thread writes.  Semaphores, no
 * sleeps: the interleaving is the same on every run.
 *
 *   hit_and_repair   a publish that places nothing leaves a miss; the next
 *                    lookup repairs it
 *   dead_not_served  a node replaced in cds_lfht but still in the index is
 *                    never returned (fails if readers ignore node->dead)
 *   late_owner       an installer still in flight when its node is unlinked
 *                    becomes the owner: it takes the node out again and
 *                    retires it (fails if the unlinker retires regardless:
 *                    the check then finds an unlinked node in the index)
 *   grow_keeps_hits  an unlimited store's index, replaced as the table grows,
 *                    holds nearly every key without a single read
 *   full_window      a key whose window is full of other keys is served by
 *                    cds_lfht without an install reference (a lookup that
 *                    cannot change the index writes nothing), and repaired
 *                    once a slot frees up
 *   pending_not_served  a writer that loses the race to finalize an insert
 *                    installs the node before the winner has stored its
 *                    version: no lookup may return that snapshot (fails if
 *                    the index places a node whose version is unset)
 *   fast_path_bucket lull_store_get's fast path (keys of 8 to 16 bytes) with
 *                    its home bucket full: each key there gets its own node,
 *                    a key in the next bucket and an absent key are not
 *                    mistaken for the node in the bucket's last slot (which
 *                    the fast path picks when no other tag matches)
 */
#include "store_testlib.h"
#include "store_internal.h"   /* the index's test hooks */

#include <pthread.h>
#include <semaphore.h>
#include <string.h>

#define K(str) (str), (sizeof(str) - 1)

/* ------------------------------------------------------------ the staging */

static struct {
    pthread_t who;          /* the installer to stop */
    bool armed;             /* stop it at its next install */
    bool place;             /* what the hook returns for other installs */
    sem_t start, at_hook, go;
    unsigned calls;
} stage;

static bool stage_hook(struct lull_node *n)
{
    (void)n;
    __atomic_fetch_add(&stage.calls, 1, __ATOMIC_RELAXED);
    if (__atomic_load_n(&stage.armed, __ATOMIC_ACQUIRE) && pthread_equal(pthread_self(), stage.who)) {
        __atomic_store_n(&stage.armed, false, __ATOMIC_RELAXED);
        sem_post(&stage.at_hook);
        sem_wait(&stage.go);
        return true;
    }
    return __atomic_load_n(&stage.place, __ATOMIC_RELAXED);
}

static void stage_begin(void)
{
    memset(&stage, 0, sizeof stage);
    stage.place = true;
    assert_int_equal(sem_init(&stage.start, 0, 0), 0);
    assert_int_equal(sem_init(&stage.at_hook, 0, 0), 0);
    assert_int_equal(sem_init(&stage.go, 0, 0), 0);
    lull__ix_test_hook = stage_hook;
}

static void stage_end(void)
{
    lull__ix_test_hook = NULL;
    sem_destroy(&stage.start);
    sem_destroy(&stage.at_hook);
    sem_destroy(&stage.go);
}

/* Start fn(arg) on a thread and return once the hook has stopped it (at its
 * first install); sem_post(&stage.go) lets it go on. */
static pthread_t stage_stop(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, fn, arg), 0);
    stage.who = t;      /* the hook reads it after armed (acquire) */
    __atomic_store_n(&stage.armed, true, __ATOMIC_RELEASE);
    sem_post(&stage.start);
    sem_wait(&stage.at_hook);
    return t;
}

static size_t ix_used(lull_store *s)
{
    size_t slots, used;
    lull__store_ix_stats(s, &slots, &used);
    return used;
}

static uint64_t value_of(lull_store *s, const char *key)
{
    uint64_t v = 0;
    size_t len = 0;
    assert_int_equal(lull_store_read(s, key, strlen(key), &v, sizeof v, &len, NULL), 0);
    assert_int_equal(len, sizeof v);
    return v;
}

static void put(lull_store *s, const char *key, uint64_t v)
{
    assert_int_equal(lull_store_put(s, key, strlen(key), &v, sizeof v, NULL), 0);
}

/* ------------------------------------------------------------ tests */

/* The key of the staged tests: each runs with a 1-byte key and a 16-byte
 * one, since lull_store_get serves keys of 8 to 16 bytes on a fast path of
 * its own (lull_store_get in store.c) and every other length on the
 * general one. */
static const char *tk = "k";
#define SHORT_KEY ((void *)"k")
#define ID_KEY    ((void *)"lull:key:0000001")

static void test_hit_and_repair(void **state)
{
    tk = *state;
    lull_store *s = lull_store_create(NULL);
    assert_non_null(s);
    stage_begin();
    put(s, tk, 1);
    assert_int_equal(ix_used(s), 1);            /* the publisher placed it */

    stage.place = false;                        /* the next publish places nothing */
    put(s, tk, 2);
    assert_int_equal(ix_used(s), 0);            /* and the old node went with its owner */
    stage.place = true;
    unsigned calls = stage.calls;
    assert_int_equal(value_of(s, tk), 2);      /* a miss, served by cds_lfht ... */
    assert_int_equal(stage.calls, calls + 1);   /* ... which repaired the index */
    assert_int_equal(ix_used(s), 1);
    assert_int_equal(value_of(s, tk), 2);      /* a hit: no install this time */
    assert_int_equal(stage.calls, calls + 1);

    assert_int_equal(lull_store_delete(s, tk, strlen(tk)), 0);
    assert_int_equal(ix_used(s), 0);
    assert_int_equal(lull_store_read(s, tk, strlen(tk), NULL, 0, NULL, NULL), -ENOENT);
    stage_end();
    assert_int_equal(lull_store_check(s, stderr), 0);
    assert_int_equal(lull_store_destroy(s), 0);
}

/* dead_not_served: thread A publishes v2 and is stopped before it places
 * its node; the index still holds v1's node, now dead. */
struct writer_arg {
    lull_store *s;
    uint64_t v;
};

static void put_arg(const struct writer_arg *a)
{
    LT_CHECK_EQ(lull_store_put(a->s, tk, strlen(tk), &a->v, sizeof a->v, NULL), 0);
}

static void *put_thread(void *p)
{
    sem_wait(&stage.start);         /* until the main thread has armed the hook for us */
    put_arg(p);
    return NULL;
}

static void test_dead_not_served(void **state)
{
    tk = *state;
    lull_store *s = lull_store_create(NULL);
    assert_non_null(s);
    stage_begin();
    put(s, tk, 1);
    struct writer_arg a = { s, 2 };
    pthread_t t = stage_stop(put_thread, &a);

    /* A's replace is done, its node not placed: the index holds v1's node
     * (dead).  A lookup must see v2 -- and the read-side get too.  (Asserted
     * once A is released: a failure must not leave it stopped.)  Neither
     * lookup repairs the index, so each of them meets v1's node. */
    __atomic_store_n(&stage.place, false, __ATOMIC_RELAXED);
    uint64_t v_read = 0, v_get = 0;
    size_t len = 0;
    int rc = lull_store_read(s, tk, strlen(tk), &v_read, sizeof v_read, &len, NULL);
    lull_read_lock();
    const struct lull_snap *sn = lull_store_get(s, tk, strlen(tk));
    if (sn)
        memcpy(&v_get, sn->value, sizeof v_get);
    lull_read_unlock();
    __atomic_store_n(&stage.place, true, __ATOMIC_RELAXED);

    sem_post(&stage.go);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(rc, 0);
    assert_int_equal(v_read, 2);
    assert_int_equal(v_get, 2);
    stage_end();
    assert_int_equal(value_of(s, tk), 2);
    assert_int_equal(lull_store_check(s, stderr), 0);
    assert_int_equal(lull_store_destroy(s), 0);
}

/* late_owner: reader A misses, finds v2's node in cds_lfht and is stopped
 * while repairing the index with it; the main thread then replaces v2 by v3.
 * A's node is unlinked with A's install in flight: A places it (stale, and
 * dead) and, as the last installer, must take it out and retire it. */
struct reader_arg {
    lull_store *s;
    uint64_t seen;
};

static void *get_thread(void *p)
{
    struct reader_arg *a = p;
    sem_wait(&stage.start);
    lull_read_lock();
    const struct lull_snap *sn = lull_store_get(a->s, tk, strlen(tk));
    LT_CHECK(sn != NULL);
    memcpy(&a->seen, sn->value, sizeof a->seen);   /* still in A's section */
    lull_read_unlock();
    return NULL;
}

static void test_late_owner(void **state)
{
    tk = *state;
    lull_store *s = lull_store_create(NULL);
    assert_non_null(s);
    stage_begin();
    put(s, tk, 1);
    stage.place = false;
    put(s, tk, 2);                             /* leaves the key out of the index */
    stage.place = true;
    assert_int_equal(ix_used(s), 0);

    struct reader_arg a = { s, 0 };
    pthread_t t = stage_stop(get_thread, &a);   /* A holds a reference to v2's node */

    unsigned long late = __atomic_load_n(&lull__ix_late_owners, __ATOMIC_RELAXED);
    uint64_t three = 3;                         /* unlinks v2's node: A is in flight */
    int rc = lull_store_put(s, tk, strlen(tk), &three, sizeof three, NULL);
    unsigned long late_mid = __atomic_load_n(&lull__ix_late_owners, __ATOMIC_RELAXED);
    sem_post(&stage.go);                        /* released before any assert can fail */
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(rc, 0);
    assert_int_equal(late_mid, late);
    assert_int_equal(a.seen, 2);                /* A's get began before the put */

    /* A displaced v3's node with its own, then took its own out: nothing
     * unlinked is left in the index, and the next lookup repairs it. */
    assert_int_equal(lull_store_check(s, stderr), 0);
    assert_int_equal(ix_used(s), 0);
    assert_int_equal(__atomic_load_n(&lull__ix_late_owners, __ATOMIC_RELAXED), late + 1);
    assert_int_equal(value_of(s, tk), 3);
    assert_int_equal(ix_used(s), 1);
    stage_end();
    assert_int_equal(lull_store_check(s, stderr), 0);
    lull_barrier();                             /* A's retire ran (ASan: once) */
    assert_int_equal(lull_store_destroy(s), 0);
}

static void test_grow_keeps_hits(void **state)
{
    (void)state;
    lull_store *s = lull_store_create(NULL);    /* starts at 1024 buckets */
    assert_non_null(s);
    size_t slots0, used;
    lull__store_ix_stats(s, &slots0, &used);
    enum { N = 30000 };
    char key[32];
    for (uint64_t i = 0; i < N; i++) {
        snprintf(key, sizeof key, "key-%llu", (unsigned long long)i);
        put(s, key, i);
    }
    size_t slots;
    lull__store_ix_stats(s, &slots, &used);
    assert_true(slots >= 8 * slots0);           /* the index grew with the table */
    assert_true(N * 8 <= slots * 3);            /* to 1.5 keys a bucket at most */
    assert_true(used >= N * 95 / 100);          /* and nearly every key is in it */
    assert_true(used <= N);
    fprintf(stderr, "grow: %d keys, index %zu -> %zu slots, %zu keys in it\n", N, slots0, slots,
            used);
    for (uint64_t i = 0; i < N; i += 7) {
        snprintf(key, sizeof key, "key-%llu", (unsigned long long)i);
        assert_int_equal(value_of(s, key), i);
    }
    assert_int_equal(lull_store_check(s, stderr), 0);
    assert_int_equal(lull_store_destroy(s), 0);
}

/* Nine keys with one home bucket: eight fill its window, the ninth has no
 * room.  The index starts at 64 slots (sixteen buckets) and grows only
 * past 24 keys, so the homes found here stay put. */
static void test_full_window(void **state)
{
    (void)state;
    lull_store *s = lull_store_create(NULL);
    assert_non_null(s);
    enum { FILL = 8 };
    char keys[FILL + 1][16];
    size_t home = lull__store_ix_bucket(s, K("k0")), n = 0;
    for (unsigned i = 0; n < FILL + 1 && i < 100000; i++) {
        snprintf(keys[n], sizeof keys[n], "k%u", i);
        if (lull__store_ix_bucket(s, keys[n], strlen(keys[n])) == home)
            n++;
    }
    assert_int_equal(n, FILL + 1);
    stage_begin();
    for (unsigned i = 0; i < FILL; i++)
        put(s, keys[i], i);
    assert_int_equal(ix_used(s), FILL);
    put(s, keys[FILL], FILL);                   /* no room: cds_lfht only */
    assert_int_equal(ix_used(s), FILL);

    unsigned calls = stage.calls;
    assert_int_equal(value_of(s, keys[FILL]), FILL);   /* a miss, served ... */
    assert_int_equal(value_of(s, keys[FILL]), FILL);
    assert_int_equal(stage.calls, calls);       /* ... without an install reference */
    assert_int_equal(ix_used(s), FILL);

    assert_int_equal(lull_store_delete(s, keys[0], strlen(keys[0])), 0);
    assert_int_equal(ix_used(s), FILL - 1);     /* a slot frees up ... */
    assert_int_equal(value_of(s, keys[FILL]), FILL);
    assert_int_equal(stage.calls, calls + 1);   /* ... and the next miss repairs */
    assert_int_equal(ix_used(s), FILL);
    assert_int_equal(value_of(s, keys[FILL]), FILL);
    assert_int_equal(stage.calls, calls + 1);   /* a hit now */
    stage_end();
    assert_int_equal(lull_store_check(s, stderr), 0);
    assert_int_equal(lull_store_destroy(s), 0);
}

/* pending_not_served: writer A inserts the key and is stopped in
 * lull__finalize before its CAS; writer B, writing the same key, finds A's
 * node pending, wins the CAS and is stopped before it stores the version.
 * A then goes on: it adopts B's version and installs the node.  Until B
 * stores it, a lookup must not return the node (its version is still 0). */
static struct {
    bool armed_a, armed_b;
    sem_t at_a, go_a, at_b, go_b;
} fin;
static _Thread_local int fin_role;  /* 1: writer A, 2: writer B */

static void fin_hook(struct lull_node *n, bool won)
{
    (void)n;
    if (!won && fin_role == 1 && __atomic_exchange_n(&fin.armed_a, false, __ATOMIC_ACQ_REL)) {
        sem_post(&fin.at_a);
        sem_wait(&fin.go_a);
    } else if (won && fin_role == 2 && __atomic_exchange_n(&fin.armed_b, false, __ATOMIC_ACQ_REL)) {
        sem_post(&fin.at_b);
        sem_wait(&fin.go_b);
    }
}

struct fin_arg {
    struct writer_arg put;
    int role;
};

static void *fin_writer(void *p)
{
    struct fin_arg *a = p;
    fin_role = a->role;
    put_arg(&a->put);
    return NULL;
}

static void test_pending_not_served(void **state)
{
    tk = *state;
    lull_store *s = lull_store_create(NULL);
    assert_non_null(s);
    memset(&fin, 0, sizeof fin);
    assert_int_equal(sem_init(&fin.at_a, 0, 0), 0);
    assert_int_equal(sem_init(&fin.go_a, 0, 0), 0);
    assert_int_equal(sem_init(&fin.at_b, 0, 0), 0);
    assert_int_equal(sem_init(&fin.go_b, 0, 0), 0);
    fin.armed_a = fin.armed_b = true;
    lull__finalize_test_hook = fin_hook;

    struct fin_arg a = { { s, 1 }, 1 }, b = { { s, 2 }, 2 };
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, fin_writer, &a), 0);
    sem_wait(&fin.at_a);            /* A: inserted, pending, before its CAS */
    assert_int_equal(pthread_create(&tb, NULL, fin_writer, &b), 0);
    sem_wait(&fin.at_b);            /* B: won the CAS, version not stored */
    sem_post(&fin.go_a);
    assert_int_equal(pthread_join(ta, NULL), 0);   /* A adopted it and installed */

    /* Asserted once B is released: a failure must not leave it stopped. */
    uint64_t get_version = 1, read_version = 1, v = 0;
    size_t len = 0;
    lull_read_lock();
    const struct lull_snap *sn = lull_store_get(s, tk, strlen(tk));
    if (sn)
        get_version = sn->version;
    lull_read_unlock();
    int rc = lull_store_read(s, tk, strlen(tk), &v, sizeof v, &len, &read_version);

    sem_post(&fin.go_b);
    assert_int_equal(pthread_join(tb, NULL), 0);
    lull__finalize_test_hook = NULL;
    assert_int_not_equal(get_version, 0);      /* absent, or a finalized snapshot */
    assert_true(rc == -ENOENT || (rc == 0 && read_version != 0));
    assert_int_equal(value_of(s, tk), 2);
    sem_destroy(&fin.at_a);
    sem_destroy(&fin.go_a);
    sem_destroy(&fin.at_b);
    sem_destroy(&fin.go_b);
    assert_int_equal(lull_store_check(s, stderr), 0);
    assert_int_equal(lull_store_destroy(s), 0);
}

/* lull_store_get of key inside a section: its value (the 8 bytes put),
 * or -1 if absent; the snapshot must be key's own. */
static int64_t get_value(lull_store *s, const char *key)
{
    int64_t v = -1;
    lull_read_lock();
    const struct lull_snap *sn = lull_store_get(s, key, strlen(key));
    if (sn) {
        assert_int_equal(sn->key_len, strlen(key));
        assert_memory_equal(sn->key, key, strlen(key));
        assert_int_equal(sn->value_len, sizeof(uint64_t));
        uint64_t u;
        memcpy(&u, sn->value, sizeof u);
        v = (int64_t)u;
    }
    lull_read_unlock();
    return v;
}

/* Six keys of one home bucket (state: a printf format for keys of 8 or 16
 * bytes): four fill it, the fifth goes to the next bucket, the sixth is
 * never put.  Every get goes through the fast path's single bucket. */
static void test_fast_path_bucket(void **state)
{
    const char *fmt = *state;
    lull_store *s = lull_store_create(NULL);
    assert_non_null(s);
    enum { N = 6 };
    char keys[N][24];
    size_t n = 0, home = 0;
    for (unsigned i = 0; n < N && i < 1000000; i++) {
        snprintf(keys[n], sizeof keys[n], fmt, i);
        size_t b = lull__store_ix_bucket(s, keys[n], strlen(keys[n]));
        if (n == 0)
            home = b;
        if (b == home)
            n++;
    }
    assert_int_equal(n, N);
    assert_in_range(strlen(keys[0]), 8, 16);
    for (unsigned i = 0; i < N - 1; i++)
        put(s, keys[i], 100 + i);
    assert_int_equal(ix_used(s), N - 1);
    for (unsigned i = 0; i < N - 1; i++)
        assert_int_equal(get_value(s, keys[i]), 100 + i);
    assert_int_equal(get_value(s, keys[N - 1]), -1);
    assert_int_equal(lull_store_check(s, stderr), 0);
    assert_int_equal(lull_store_destroy(s), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate(test_hit_and_repair, SHORT_KEY),
        cmocka_unit_test_prestate(test_hit_and_repair, ID_KEY),
        cmocka_unit_test_prestate(test_dead_not_served, SHORT_KEY),
        cmocka_unit_test_prestate(test_dead_not_served, ID_KEY),
        cmocka_unit_test_prestate(test_late_owner, SHORT_KEY),
        cmocka_unit_test_prestate(test_late_owner, ID_KEY),
        cmocka_unit_test(test_grow_keeps_hits),
        cmocka_unit_test(test_full_window),
        cmocka_unit_test_prestate(test_pending_not_served, SHORT_KEY),
        cmocka_unit_test_prestate(test_pending_not_served, ID_KEY),
        cmocka_unit_test_prestate(test_fast_path_bucket, "id:%05u"),     /* 8 bytes */
        cmocka_unit_test_prestate(test_fast_path_bucket, "lull:key:%07u"), /* 16 */
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
