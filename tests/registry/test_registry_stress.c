/* tests/registry/test_registry_stress.c - the registry under real threads
 * and the real clock (the registry's own wheel, driver thread).
 *
 * Every object carries atomic counters (reg_testlib.h); at the end, after
 * destroy, each accepted conn and attached dependent must have been closed
 * exactly once and freed exactly once after its close, and every rejected
 * one never.  Runs for LULL_STRESS_SECONDS (default 1 s) per scenario. */
#include "reg_testlib.h"
#include "registry_internal.h"   /* r->armed: to wait for quiescence before checking */

#include <pthread.h>
#include <sched.h>

#define MS 1000000ull

/* A growable list of objects, per thread. */
struct bag {
    struct ro **v;
    size_t n, cap;
};

static struct ro *bag_new(struct bag *b, int kind)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 256;
        b->v = realloc(b->v, b->cap * sizeof(*b->v));
        LT_CHECK(b->v != NULL);
    }
    struct ro *o = ro_new((int)b->n, kind);
    b->v[b->n++] = o;
    return o;
}

static void bag_final(struct bag *b)
{
    for (size_t i = 0; i < b->n; i++) {
        ro_check_final(b->v[i]);
        free(b->v[i]);
    }
    free(b->v);
    memset(b, 0, sizeof(*b));
}

static bool rule_random(const void *id, size_t id_len, void *held, void *incoming, void *ctx)
{
    struct rt *t = ctx;
    LT_CHECK(((struct ro *)held)->magic == RO_MAGIC);
    LT_CHECK(((struct ro *)incoming)->magic == RO_MAGIC);
    /* held must be live: never closed while it holds */
    LT_CHECK(ro_get(&((struct ro *)held)->frees) == 0);
    ro_inc(&t->nrule);
    /* deterministic per pair, so reruns of one claim agree (they need not) */
    return ((uintptr_t)held ^ ((uintptr_t)incoming >> 4)) & 16;
}

/* ------------------------------------------------------------ racers */

#define RACERS 100

struct racer {
    lull_registry *r;
    pthread_barrier_t *bar;
    struct ro *conn;
    uint64_t gen;
    int rc;
};

static void *racer_fn(void *arg)
{
    struct racer *x = arg;
    pthread_barrier_wait(x->bar);
    x->rc = lull_registry_claim(x->r, "the-id", 6, x->conn, &x->gen);
    if (x->rc == 0)
        x->conn->accepted = 1;
    LT_CHECK(x->rc == 0 || x->rc == -EEXIST);
    return NULL;
}

static void racers(bool (*rule)(const void *, size_t, void *, void *, void *), const char *name)
{
    struct rt t;
    memset(&t, 0, sizeof(t));
    struct lull_registry_opts o = rt_opts(&t, NULL);
    o.keep_incoming = rule;
    lull_registry *r = lull_registry_create(&o);
    LT_CHECK(r != NULL);
    t.r = r;

    struct racer x[RACERS];
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, RACERS);
    for (int i = 0; i < RACERS; i++)
        x[i] = (struct racer){ r, &bar, ro_new(i, 0), 0, 0 };
    lt_run_threads(RACERS, racer_fn, x, sizeof(x[0]));
    pthread_barrier_destroy(&bar);

    int accepted = 0;
    for (int i = 0; i < RACERS; i++)
        accepted += x[i].rc == 0;
    void *holder;
    uint64_t hg;
    LT_CHECK(lull_registry_lookup(r, "the-id", 6, &holder, &hg) == 0);
    int holders = 0;
    for (int i = 0; i < RACERS; i++)
        if (x[i].conn == holder) {
            holders++;
            LT_CHECK(x[i].rc == 0 && x[i].gen == hg);
            LT_CHECK(ro_get(&x[i].conn->closes) == 0);
        }
    LT_CHECK_EQ(holders, 1);
    /* every accepted claim but the holder's was replaced, exactly once */
    LT_CHECK_EQ(ro_get(&t.ncloses[LULL_REPLACED]), accepted - 1);
    LT_CHECK_EQ(lull_registry_check(r, stderr), 0);
    fprintf(stderr, "racers (%s): %d accepted, %d rule calls\n", name, accepted,
            ro_get(&t.nrule));
    if (rule == rt_rule_count_held)
        LT_CHECK_EQ(accepted, 1);
    if (!rule)
        LT_CHECK_EQ(accepted, RACERS);
    lull_registry_destroy(r);
    LT_CHECK_EQ(ro_get(&t.ncloses[LULL_SHUTDOWN]), 1);
    for (int i = 0; i < RACERS; i++) {
        ro_check_final(x[i].conn);
        free(x[i].conn);
    }
}

static void test_racers(void)
{
    racers(NULL, "keep incoming");
    racers(rt_rule_count_held, "keep held");
    racers(rule_random, "random");
}

/* ------------------------------------------------------------ rapid cycles */

#define NTHREADS 16
#define NIDS 4
static const char *ids[NIDS] = { "alpha", "bravo", "charlie", "delta" };

struct worker {
    lull_registry *r;
    struct rt *t;
    uint64_t seed;
    unsigned ops;
    struct bag conns, deps;
    uint64_t gen[NIDS];             /* the last generation this thread got per id */
    struct ro *conn_of[NIDS];       /* ... and the conn it claimed with it */
    struct ro *mydeps[NIDS][8];     /* recent dependents it attached per id */
    uint64_t *gens;                 /* every accepted generation */
    size_t ngens;
    const volatile int *stop;       /* shutdown scenario */
    int saw_shutdown;
};

/* Inside a section: a conn or dependent the registry hands out is never
 * freed before the unlock. */
static void read_side(struct worker *w, int k)
{
    void *c = NULL, *deps[64];
    size_t n = 0;
    lull_read_lock();
    int rc = lull_registry_lookup(w->r, ids[k], strlen(ids[k]), &c, NULL);
    LT_CHECK(rc == 0 || rc == -ENOENT || rc == -EAGAIN || rc == -ESHUTDOWN);
    int dr = lull_registry_dependents(w->r, ids[k], strlen(ids[k]), deps, 64, &n);
    LT_CHECK(dr == 0 || dr == -ENOENT || dr == -ENOBUFS || dr == -ESHUTDOWN);
    for (int spin = 0; spin < 3; spin++) {
        if (rc == 0)
            LT_CHECK(((struct ro *)c)->magic == RO_MAGIC && !ro_get(&((struct ro *)c)->freed_flag));
        for (size_t i = 0; dr == 0 && i < n; i++)
            LT_CHECK(!ro_get(&((struct ro *)deps[i])->freed_flag));
        sched_yield();
    }
    lull_read_unlock();
}

static int one_op(struct worker *w)
{
    lull_registry *r = w->r;
    int k = (int)(lt_rand(&w->seed) % NIDS);
    const char *id = ids[k];
    size_t il = strlen(id);
    uint64_t grace = lt_rand(&w->seed) % (2 * MS);
    int rc;

    switch (lt_rand(&w->seed) % 10) {
    case 0:
    case 1: {
        struct ro *c = bag_new(&w->conns, 0);
        uint64_t g = 0;
        rc = lull_registry_claim(r, id, il, c, &g);
        LT_CHECK(rc == 0 || rc == -EEXIST || rc == -ESHUTDOWN);
        if (rc != 0)
            LT_CHECK_EQ(ro_get(&c->closes), 0);         /* rejected: no callback */
        if (rc == 0) {
            c->accepted = 1;
            LT_CHECK(g != 0);
            w->gen[k] = g;
            w->conn_of[k] = c;
            w->gens[w->ngens++] = g;
        }
        break;
    }
    case 2:
        rc = lull_registry_release(r, id, il, w->gen[k]);
        LT_CHECK(rc == 0 || rc == 1 || rc == -ESHUTDOWN);
        /* 1: this generation held the id, and its own conn was closed
         * RELEASED, on this thread, before the call returned */
        if (rc == 1)
            LT_CHECK(ro_get(&w->conn_of[k]->closes) == 1 &&
                     ro_get(&w->conn_of[k]->why) == LULL_RELEASED);
        break;
    case 3:
    case 4:
        rc = lull_registry_release_after(r, id, il, w->gen[k], grace);
        LT_CHECK(rc == 0 || rc == -ESTALE || rc == -ESHUTDOWN);
        if (rc == 0)
            LT_CHECK(ro_get(&w->conn_of[k]->closes) == 1 &&
                     ro_get(&w->conn_of[k]->why) == LULL_RELEASED);
        break;
    case 5:
        rc = lull_registry_mark_dead(r, id, il, w->gen[k]);
        LT_CHECK(rc == 0 || rc == -ESTALE || rc == -ESHUTDOWN);
        break;
    case 6: {
        struct ro *d = bag_new(&w->deps, 1);
        rc = lull_registry_attach(r, id, il, d);
        LT_CHECK(rc == 0 || rc == -ENOENT || rc == -ENOSPC || rc == -ESHUTDOWN);
        if (rc == 0) {
            d->attached = 1;
            w->mydeps[k][lt_rand(&w->seed) % 8] = d;
        }
        break;
    }
    case 7: {
        struct ro *d = w->mydeps[k][lt_rand(&w->seed) % 8];
        if (!d)
            return 0;
        rc = lull_registry_detach(r, id, il, d);
        LT_CHECK(rc == 0 || rc == -ENOENT || rc == -ESHUTDOWN);
        break;
    }
    default:
        read_side(w, k);
        rc = 0;
        break;
    }
    return rc;
}

static void *worker_fn(void *arg)
{
    struct worker *w = arg;
    for (unsigned i = 0; i < w->ops; i++)
        one_op(w);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void rapid_round(enum lull_reclaim how, unsigned ops, uint64_t seed)
{
    struct rt t;
    memset(&t, 0, sizeof(t));
    struct lull_registry_opts o = rt_opts(&t, NULL);
    o.keep_incoming = rule_random;
    o.on_reclaim = how;
    o.max_dependents = 24;
    lull_registry *r = lull_registry_create(&o);
    LT_CHECK(r != NULL);
    t.r = r;

    struct worker *w = calloc(NTHREADS, sizeof(*w));
    LT_CHECK(w != NULL);
    for (int i = 0; i < NTHREADS; i++) {
        w[i].r = r;
        w[i].t = &t;
        w[i].seed = seed * 7919 + (uint64_t)i;
        w[i].ops = ops;
        w[i].gens = calloc(ops, sizeof(uint64_t));
        LT_CHECK(w[i].gens != NULL);
    }
    lt_run_threads(NTHREADS, worker_fn, w, sizeof(*w));
    /* The checker is meaningful only while nothing changes r: wait until
     * every grace period has ended (expiries run on the driver thread). */
    while (__atomic_load_n(&r->armed, __ATOMIC_ACQUIRE) != 0)
        sched_yield();
    LT_CHECK_EQ(lull_registry_check(r, stderr), 0);

    /* generations: never 0, never reused */
    size_t total = 0;
    for (int i = 0; i < NTHREADS; i++)
        total += w[i].ngens;
    uint64_t *all = calloc(total ? total : 1, sizeof(uint64_t));
    LT_CHECK(all != NULL);
    for (int i = 0, at = 0; i < NTHREADS; i++)
        for (size_t j = 0; j < w[i].ngens; j++)
            all[at++] = w[i].gens[j];
    qsort(all, total, sizeof(uint64_t), cmp_u64);
    for (size_t i = 0; i < total; i++)
        LT_CHECK(all[i] != 0 && (i == 0 || all[i] != all[i - 1]));
    free(all);

    lull_registry_destroy(r);
    size_t nconn = 0, ndep = 0, acc = 0, att = 0;
    for (int i = 0; i < NTHREADS; i++) {
        nconn += w[i].conns.n;
        ndep += w[i].deps.n;
        for (size_t j = 0; j < w[i].conns.n; j++)
            acc += w[i].conns.v[j]->accepted;
        for (size_t j = 0; j < w[i].deps.n; j++)
            att += w[i].deps.v[j]->attached;
        bag_final(&w[i].conns);
        bag_final(&w[i].deps);
        free(w[i].gens);
    }
    LT_CHECK_EQ(ro_get(&t.nfrees), acc + att);
    LT_CHECK_EQ(ro_get(&t.late_callbacks), 0);
    fprintf(stderr, "rapid (%s): %zu claims (%zu accepted), %zu attaches (%zu taken); closes "
            "REPLACED %d RELEASED %d SHUTDOWN %d; deps EXPIRED %d REPLACED %d; rule %d\n",
            how == LULL_EVICT ? "evict" : "inherit", nconn, acc, ndep, att,
            t.ncloses[LULL_REPLACED], t.ncloses[LULL_RELEASED], t.ncloses[LULL_SHUTDOWN],
            t.ndep_closes[LULL_EXPIRED], t.ndep_closes[LULL_REPLACED], t.nrule);
    free(w);
}

static void test_rapid_cycles(uint64_t seed)
{
    uint64_t end = lull__now_ns() + (uint64_t)(lt_stress_seconds() * 1e9);
    unsigned round = 0;
    do {
        rapid_round(round & 1 ? LULL_EVICT : LULL_INHERIT, 400, seed + round);
        round++;
    } while (lull__now_ns() < end || round < 2);
    fprintf(stderr, "rapid cycles: %u rounds\n", round);
}

/* ------------------------------------------------------------ shutdown under load */

static volatile int g_stop;

static void *loader_fn(void *arg)
{
    struct worker *w = arg;
    while (!__atomic_load_n(&g_stop, __ATOMIC_ACQUIRE)) {
        bool after = ro_get(&w->t->after_shutdown);
        int rc = one_op(w);
        /* a call that began after shutdown returned is refused */
        if (after && rc != 0)
            LT_CHECK(rc == -ESHUTDOWN);
        if (rc == -ESHUTDOWN)
            w->saw_shutdown = 1;
        if (w->ngens + 1 >= w->ops)
            w->ngens = 0;           /* only the uniqueness test needs them */
    }
    /* Stopped after shutdown returned: any call now is refused (checked
     * here, not by counting refusals seen, which depends on scheduling). */
    LT_CHECK(lull_registry_lookup(w->r, "alpha", 5, NULL, NULL) == -ESHUTDOWN);
    LT_CHECK(lull_registry_claim(w->r, "alpha", 5, bag_new(&w->conns, 0), NULL) == -ESHUTDOWN);
    w->saw_shutdown = 1;
    return NULL;
}

static void test_shutdown_under_load(uint64_t seed)
{
    struct rt t;
    memset(&t, 0, sizeof(t));
    struct lull_registry_opts o = rt_opts(&t, NULL);
    o.keep_incoming = rule_random;
    lull_registry *r = lull_registry_create(&o);
    LT_CHECK(r != NULL);
    t.r = r;
    enum { N = 8 };
    struct worker w[N];
    memset(w, 0, sizeof(w));
    pthread_t th[N];
    g_stop = 0;
    for (int i = 0; i < N; i++) {
        w[i].r = r;
        w[i].t = &t;
        w[i].seed = seed + (uint64_t)i;
        w[i].ops = 4096;
        w[i].gens = calloc(w[i].ops, sizeof(uint64_t));
        LT_CHECK(pthread_create(&th[i], NULL, loader_fn, &w[i]) == 0);
    }
    struct timespec ts = { 0, 100 * 1000 * 1000 };
    nanosleep(&ts, NULL);
    LT_CHECK_EQ(lull_registry_shutdown(r, 0), 0);
    __atomic_store_n(&t.after_shutdown, 1, __ATOMIC_RELEASE);
    int closes_then = 0;
    for (int k = 1; k <= LULL_SHUTDOWN; k++)
        closes_then += ro_get(&t.ncloses[k]) + ro_get(&t.ndep_closes[k]);
    nanosleep(&ts, NULL);               /* the load goes on, the clock moves on */
    __atomic_store_n(&g_stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < N; i++)
        LT_CHECK(pthread_join(th[i], NULL) == 0);
    int closes_now = 0;
    for (int k = 1; k <= LULL_SHUTDOWN; k++)
        closes_now += ro_get(&t.ncloses[k]) + ro_get(&t.ndep_closes[k]);
    LT_CHECK_EQ(closes_now, closes_then);
    LT_CHECK_EQ(ro_get(&t.late_callbacks), 0);
    LT_CHECK_EQ(lull_registry_check(r, stderr), 0);
    lull_registry_destroy(r);
    LT_CHECK_EQ(ro_get(&t.late_callbacks), 0);
    size_t ops = 0;
    for (int i = 0; i < N; i++) {
        LT_CHECK(w[i].saw_shutdown);
        ops += w[i].conns.n + w[i].deps.n;
        bag_final(&w[i].conns);
        bag_final(&w[i].deps);
        free(w[i].gens);
    }
    fprintf(stderr, "shutdown under load: %zu objects, %d closed by shutdown\n", ops,
            t.ncloses[LULL_SHUTDOWN] + t.ndep_closes[LULL_SHUTDOWN]);
}

int main(void)
{
    uint64_t seed = lt_seed(0x5eedc0de);
    test_racers();
    test_rapid_cycles(seed);
    test_shutdown_under_load(seed);
    fprintf(stderr, "ok\n");
    return 0;
}
