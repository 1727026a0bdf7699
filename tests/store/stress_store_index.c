/* tests/store/stress_store_index.c - the store's front index under hostile
 * schedules.  The index (lib/store_index.c) caches node pointers in front of
 * cds_lfht: readers that miss repair it, writers install what they publish,
 * and a node goes to RCU once no install is in flight (retired by its
 * unlinker, or by the last installer: a "late owner").  A hook
 * (lull__ix_test_hook) makes ~25% of installs place nothing (later lookups
 * miss and repair) and yields in ~10% between an installer's reference and
 * its placement, so that installs race with the unlink of their node.
 *
 * churn:  48 keys; 2 writers update (a counter), put, delete, re-insert; 2
 *   readers get (in a section) and read; writers look up too.  Fails if a
 *   value names another key or is malformed (key id and checksum inside); if
 *   a thread's versions of a key go backwards (a superseded node served from
 *   the index); if a lookup returns a version older than a publish or delete
 *   completed before it began (the per-key floor); if lull_store_check finds
 *   a dead, misplaced or stale node in the index after a round; under ASan,
 *   on a use after free (a node left in the index past its grace period); and
 *   if no late owner was seen (the rare path must have run).
 * growth: an unlimited store grows from empty to N keys (table and index
 *   replaced several times) while readers get keys already inserted; then
 *   every key is read once (repairs): check passes, count is N, >= 95% of
 *   the keys sit in the index.
 * Duration: LULL_STRESS_SECONDS (default 1); seed: LULL_TEST_SEED.  No sleeps. */
#include "store_testlib.h"
#include "store_internal.h"   /* lull__ix_test_hook, lull__ix_late_owners, stats */

#include <pthread.h>
#include <sched.h>
#include <string.h>

enum { NK = 48, KL = 8, NW = 2, NR = 2, ROUNDS_PER_S = 25 };

struct val { uint32_t key, pad; uint64_t ctr, sum; };

static uint64_t val_sum(uint32_t k, uint64_t ctr)
{
    uint64_t z = ((uint64_t)k << 32 ^ ctr) * 0x9e3779b97f4a7c15ull;
    return z ^ z >> 29 ^ 0x5bd1e9955bd1e995ull;
}

static void val_check(uint32_t k, const void *p, size_t len)
{
    LT_CHECK_EQ(len, sizeof(struct val));
    struct val v;
    memcpy(&v, p, sizeof v);
    LT_CHECK_EQ(v.key, k);                       /* another key's node? */
    LT_CHECK(v.sum == val_sum(v.key, v.ctr));    /* a torn or freed one? */
}

static void key_of(char key[KL + 1], char tag, unsigned i)
{
    snprintf(key, KL + 1, "%c%07u", tag, i % 10000000u);
}

/* ------------------------------------------------------ the hostile hook */

static uint64_t hook_seed;
static unsigned hook_threads;
static _Thread_local uint64_t hook_x;
static unsigned long hook_calls, hook_drops, hook_yields;

static bool hostile_hook(struct lull_node *n)
{
    (void)n;
    uint64_t x = hook_x;
    if (!x) {
        uint64_t s = hook_seed + __atomic_add_fetch(&hook_threads, 1, __ATOMIC_RELAXED);
        x = lt_rand(&s) | 1;
    }
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;     /* xorshift64 */
    hook_x = x;
    __atomic_fetch_add(&hook_calls, 1, __ATOMIC_RELAXED);
    if ((x >> 40) % 10 == 0) {                   /* widen ref -> place */
        __atomic_fetch_add(&hook_yields, 1, __ATOMIC_RELAXED);
        sched_yield();
    }
    if (((x >> 20) & 3) != 0)
        return true;
    __atomic_fetch_add(&hook_drops, 1, __ATOMIC_RELAXED);
    return false;                                /* place nothing this time */
}

/* ------------------------------------------------------------------ churn */

/* Both phases share these (set while no worker runs). */
static lull_store *st;
static uint64_t end_ns;         /* churn: this round's end */
static uint64_t floor_v[NK];    /* churn: a lookup begun later returns no older version */
static unsigned n_keys, done;   /* growth: keys below done are inserted */

struct worker {
    unsigned id;
    uint64_t rng;
    uint64_t last[NK];          /* churn: this thread's newest version seen, per key */
    unsigned long writes, deletes, reinserts, gets, reads, absent;
};

static void floor_raise(uint64_t *f, uint64_t v)
{
    uint64_t cur = __atomic_load_n(f, __ATOMIC_RELAXED);
    while (cur < v && !__atomic_compare_exchange_n(f, &cur, v, true, __ATOMIC_RELEASE,
                                                   __ATOMIC_RELAXED))
        ;
}

/* lull_store_get of key <tag>i in a section, key and value checked there;
 * false: absent. */
static bool get_key(char tag, unsigned i, uint64_t *ver)
{
    char key[KL + 1];
    key_of(key, tag, i);
    lull_read_lock();
    const struct lull_snap *sn = lull_store_get(st, key, KL);
    if (sn) {
        LT_CHECK(sn->key_len == KL && memcmp(sn->key, key, KL) == 0);
        val_check(i, sn->value, sn->value_len);
        *ver = sn->version;
    }
    lull_read_unlock();
    return sn != NULL;
}

/* lull_store_read of key k, its value checked; false: absent. */
static bool read_key(unsigned k, uint64_t *ver)
{
    char key[KL + 1];
    struct val v;
    size_t len = 0;
    key_of(key, 'k', k);
    int rc = lull_store_read(st, key, KL, &v, sizeof v, &len, ver);
    LT_CHECK(rc == 0 || rc == -ENOENT);
    if (rc == 0)
        val_check(k, &v, len);
    return rc == 0;
}

/* One lookup of a random key, get or read; its version no older than the
 * floor loaded before it, nor than this thread saw before. */
static void lookup(struct worker *w)
{
    unsigned k = (unsigned)(lt_rand(&w->rng) % NK);
    uint64_t fl = __atomic_load_n(&floor_v[k], __ATOMIC_ACQUIRE), ver = 0;
    bool hit;
    if (lt_rand(&w->rng) & 1)
        hit = get_key('k', k, &ver), w->gets++;
    else
        hit = read_key(k, &ver), w->reads++;
    w->absent += !hit;
    if (!hit)
        return;
    if (ver < fl || ver < w->last[k]) {
        fprintf(stderr, "thread %u key %u: version %llu, floor %llu, last seen %llu\n", w->id,
                k, (unsigned long long)ver, (unsigned long long)fl,
                (unsigned long long)w->last[k]);
        abort();
    }
    w->last[k] = ver;
}

static int incr_fn(const struct lull_snap *cur, struct lull_buf *next, void *arg)
{
    unsigned k = *(const unsigned *)arg;
    struct val v = { k, 0, 0, 0 };
    if (cur) {
        val_check(k, cur->value, cur->value_len);
        memcpy(&v, cur->value, sizeof v);
    } else {
        int rc = lull_buf_resize(next, sizeof v);
        if (rc)
            return rc;
    }
    v.ctr++;
    v.sum = val_sum(k, v.ctr);
    memcpy(next->data, &v, sizeof v);
    return LULL_PUBLISH;
}

static int remove_fn(const struct lull_snap *cur, struct lull_buf *next, void *arg)
{
    (void)next, (void)arg;
    return cur ? LULL_REMOVE : LULL_KEEP;
}

static void write_one(struct worker *w)
{
    unsigned k = (unsigned)(lt_rand(&w->rng) % NK), r = (unsigned)(lt_rand(&w->rng) % 100);
    char key[KL + 1];
    key_of(key, 'k', k);
    struct val v = { k, 0, lt_rand(&w->rng) >> 16, 0 };
    v.sum = val_sum(k, v.ctr);
    struct lull_update_info info;
    uint64_t ver = 0;
    int rc;
    if (r < 40) {                               /* increment, or insert */
        LT_CHECK_EQ(lull_store_update(st, key, KL, incr_fn, &k, &info), 0);
        LT_CHECK(info.outcome == LULL_UPDATED || info.outcome == LULL_INSERTED);
        ver = info.version;
    } else if (r < 65) {
        LT_CHECK_EQ(lull_store_put(st, key, KL, &v, sizeof v, &ver), 0);
    } else if (r < 80) {
        rc = lull_store_delete(st, key, KL);
        LT_CHECK(rc == 0 || rc == -ENOENT);
        w->deletes += rc == 0;
    } else if (r < 90) {                        /* a delete that tells its version */
        LT_CHECK_EQ(lull_store_update(st, key, KL, remove_fn, NULL, &info), 0);
        LT_CHECK(info.outcome == LULL_REMOVED || info.outcome == LULL_UNCHANGED);
        if (info.outcome == LULL_REMOVED)
            floor_raise(&floor_v[k], info.version + 1), w->deletes++;
    } else {                                    /* re-insert if absent */
        rc = lull_store_put_if(st, key, KL, &v, sizeof v, 0, &ver);
        LT_CHECK(rc == 0 || rc == -ESTALE);
        w->reinserts += rc == 0;
    }
    if (ver)
        floor_raise(&floor_v[k], ver);
    w->writes++;
}

static void *churn_thread(void *p)
{
    struct worker *w = p;
    while (lull__now_ns() < end_ns) {
        for (int i = 0; i < 16; i++) {
            if (w->id < NW)
                write_one(w);
            lookup(w);                          /* writers check too */
        }
    }
    return NULL;
}

static void test_churn(void **state)
{
    (void)state;
    hook_seed = lt_seed(0x1dc5u);
    assert_non_null(st = lull_store_create(NULL));
    static struct worker w[NW + NR];
    for (unsigned i = 0; i < NW + NR; i++)
        w[i] = (struct worker){ .id = i, .rng = hook_seed * 31 + i };
    unsigned long late0 = __atomic_load_n(&lull__ix_late_owners, __ATOMIC_RELAXED);
    __atomic_store_n(&lull__ix_test_hook, hostile_hook, __ATOMIC_RELAXED);
    unsigned rounds = (unsigned)(lt_stress_seconds() * ROUNDS_PER_S) + 1;
    uint64_t round_ns = (uint64_t)(lt_stress_seconds() * 1e9) / rounds;
    for (unsigned r = 0; r < rounds; r++) {
        end_ns = lull__now_ns() + round_ns;
        lt_run_threads(NW + NR, churn_thread, w, sizeof w[0]);
        /* Quiescent: only current nodes in the index; every key reads as
         * well-formed and no older than its floor; the count adds up. */
        assert_int_equal(lull_store_check(st, stderr), 0);
        size_t present = 0;
        for (unsigned k = 0; k < NK; k++) {
            uint64_t ver = 0;
            if (read_key(k, &ver)) {
                assert_true(ver >= floor_v[k]);
                present++;
            }
        }
        assert_int_equal(lull_store_count(st), present);
    }
    unsigned long late = __atomic_load_n(&lull__ix_late_owners, __ATOMIC_RELAXED) - late0;
    __atomic_store_n(&lull__ix_test_hook, NULL, __ATOMIC_RELAXED);
    unsigned long wr = 0, del = 0, rei = 0, gets = 0, reads = 0, absent = 0;
    for (unsigned i = 0; i < NW + NR; i++) {
        wr += w[i].writes, del += w[i].deletes, rei += w[i].reinserts;
        gets += w[i].gets, reads += w[i].reads, absent += w[i].absent;
    }
    fprintf(stderr, "churn: %u rounds, %lu writes (%lu deletes, %lu re-inserts), %lu gets, "
            "%lu reads (%lu absent); hook: %lu installs, %lu dropped, %lu yields; "
            "late owners: %lu\n", rounds, wr, del, rei, gets, reads, absent, hook_calls,
            hook_drops, hook_yields, late);
    assert_true(gets > 0 && reads > 0 && del > 0 && rei > 0 && hook_drops > 0);
    assert_true(late > 0);          /* the installer-becomes-owner path ran */
    assert_int_equal(lull_store_destroy(st), 0);
}

/* ----------------------------------------------------------------- growth */

enum { GR = 2 };

static void *grow_thread(void *p)
{
    struct worker *w = p;
    char key[KL + 1];
    for (unsigned i = 0; w->id == 0 && i < n_keys; i++, w->writes++) {   /* the writer */
        struct val v = { i, 0, 0, val_sum(i, 0) };
        key_of(key, 'g', i);
        LT_CHECK_EQ(lull_store_put(st, key, KL, &v, sizeof v, NULL), 0);
        __atomic_store_n(&done, i + 1, __ATOMIC_RELEASE);
        if (i % 8 == 7) {                       /* and a replace: unlinks too */
            unsigned o = (unsigned)(lt_rand(&w->rng) % i);
            v = (struct val){ o, 0, i, val_sum(o, i) };
            key_of(key, 'g', o);
            LT_CHECK_EQ(lull_store_put(st, key, KL, &v, sizeof v, NULL), 0);
        }
    }
    unsigned d;
    while (w->id != 0 && (d = __atomic_load_n(&done, __ATOMIC_ACQUIRE)) < n_keys) {
        if (!d)
            continue;
        uint64_t ver;
        LT_CHECK(get_key('g', (unsigned)(lt_rand(&w->rng) % d), &ver));   /* inserted */
        w->gets++;
    }
    return NULL;
}

static void test_growth(void **state)
{
    (void)state;
    n_keys = lt_sanitized() ? 20000 : 50000;
    done = 0;
    assert_non_null(st = lull_store_create(NULL));
    size_t slots0, slots, used;
    lull__store_ix_stats(st, &slots0, &used);
    static struct worker w[1 + GR];
    uint64_t seed = lt_seed(0x9a0u);
    for (unsigned i = 0; i < 1 + GR; i++)
        w[i] = (struct worker){ .id = i, .rng = seed + i };
    __atomic_store_n(&lull__ix_test_hook, hostile_hook, __ATOMIC_RELAXED);
    lt_run_threads(1 + GR, grow_thread, w, sizeof w[0]);
    __atomic_store_n(&lull__ix_test_hook, NULL, __ATOMIC_RELAXED);
    uint64_t ver;
    for (unsigned i = 0; i < n_keys; i++)       /* every key once: misses repair */
        assert_true(get_key('g', i, &ver));
    lull__store_ix_stats(st, &slots, &used);
    fprintf(stderr, "growth: %u keys, %lu inserts (and 1/8 as many replaces), %lu reader "
            "gets; index %zu -> %zu slots, %zu used (%.1f%% of keys)\n", n_keys, w[0].writes,
            w[1].gets + w[2].gets, slots0, slots, used, 100.0 * used / n_keys);
    assert_int_equal(lull_store_check(st, stderr), 0);
    assert_int_equal(lull_store_count(st), n_keys);
    assert_true(slots >= 8 * slots0);           /* replaced several times */
    assert_true(used >= n_keys * 95 / 100);
    assert_int_equal(lull_store_destroy(st), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_churn),
        cmocka_unit_test(test_growth),
    };
    if (getenv("LT_TEST"))
        cmocka_set_test_filter(getenv("LT_TEST"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
