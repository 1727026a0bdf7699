/*
 * tests/soak/soak.c - all three layers under load at once, for
 * LULL_STRESS_SECONDS (default 1 s; CI 3; LULL_STRESS_SECONDS=600 for the
 * long run), then every count checked.
 *
 *   store     2 writers and 1 reader on 32 counter keys and 32 churn keys.
 *             Counter keys only ever go up by one per publish (update,
 *             put_if insert, put_if on the read version) or are removed
 *             with their count banked (update -> LULL_REMOVE, delete_if on
 *             the read version); at the end, per key, the count left plus
 *             the counts banked equals the increments that were published:
 *             no lost update.  Churn keys get put, update (resize and
 *             rewrite), delete and delete_if with self-describing values;
 *             the reader checks every value it gets, reads or walks
 *             (foreach), and that a key's version never goes back.
 *   wheel     one wheel with lull's driver thread, shared with the registry;
 *             2 threads schedule, cancel, cancel_sync and reschedule timers
 *             of 0..4 ms (and advance now and then).  Each scheduled timer
 *             must end exactly once, fired or cancelled: its record moves
 *             ARMED -> FIRED (callback) or ARMED -> CANCELLED (a cancel that
 *             returned 0) by compare-and-swap, so a second end, a fire after
 *             a won cancel, a stale fire (the timer's incarnation is in its
 *             arg) or an early one aborts; at the end fires + cancels =
 *             schedules.
 *   registry  on that wheel, 3 threads claim (with a double-connection rule
 *             that keeps either side), release, release_after (grace 0..3
 *             ms, so reclaims and expiries happen), mark_dead, attach,
 *             detach and look up 32 ids.  Every conn and dependent is a
 *             record of a fixed pool moving FREE -> TAKEN (handed over)
 *             -> CLOSED (close / close_dependent) -> FREE (free, which puts
 *             it back in the pool): a second close or free, a free before
 *             the close, or a callback for a rejected object aborts; after
 *             destroy every record is FREE again and closes = frees =
 *             objects taken.  Objects are reused: the registry meets the
 *             same pointers again and again, as real connections do.
 *
 * Memory: everything the soak holds is bounded by construction (64 keys
 * of at most 256 bytes, 1024 timer records, 65536 registry objects, 32 ids
 * of at most 4 dependents), and so is what lull keeps behind it: retired
 * snapshots waiting for a grace period (about LULL_INFLIGHT_MAX = 65536 at
 * most) and the store's nodes kept for reuse (pools capped per size class).
 * RSS is sampled after a warm-up of 20% of the run (at least 0.5 s) and at
 * the end of the load.  It may creep up while those pools fill, then
 * flattens (plain build, measured: +17 MiB from 12 s to 60 s, +14 MiB from
 * 2 to 10 minutes); the soak fails if it grew by more than 64 MiB.  That is
 * room for the pools and allocator noise, while a leak of one small object
 * per operation (millions of operations a second) passes it within
 * seconds.  Asserted in the plain build only: ASan's quarantine and TSan's
 * shadow memory make RSS meaningless there (the figures are printed).
 *
 *   soak [--plant lost-update|double-free|leak]
 * breaks the test on purpose to show each check bites: increments become
 * read-then-put (lost updates), one free is counted twice, or each store
 * operation leaks 512 bytes (RSS; LeakSanitizer under ASan).
 */
#include "testutil.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MS 1000000ull

enum { S_WRITERS = 2, W_THREADS = 2, R_THREADS = 3 };
enum { CKEYS = 32, XKEYS = 32, XMAX = 256 };
enum { TPOOL = 512 };
enum { NIDS = 32, MAXDEPS = 4, NOBJ = 1 << 16 };
#define RSS_BOUND_KIB (64 * 1024)     /* growth allowed after the warm-up: see the top */

enum plant { PLANT_NONE, PLANT_LOST_UPDATE, PLANT_DOUBLE_FREE, PLANT_LEAK };
static enum plant PLANT;

static int STOP;    /* atomic */
static bool stopped(void) { return __atomic_load_n(&STOP, __ATOMIC_RELAXED); }

static long ld(const long *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static void add(long *p, long v) { __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }

static double now_s(void)
{
    return (double)lull__now_ns() / 1e9;
}

static void sleep_ms(double ms)
{
    struct timespec ts = { (time_t)(ms / 1000), (long)((ms - 1000 * (long)(ms / 1000)) * 1e6) };
    nanosleep(&ts, NULL);
}

/* ================================================================= store */

static lull_store *S;

#define CMAGIC 0xc0a7e5u
struct cval { uint32_t key, magic; uint64_t count; };

static void ckey(unsigned k, char *b) { snprintf(b, 8, "c%02u", k); }
static void xkey(unsigned k, char *b) { snprintf(b, 8, "x%02u", k); }

static struct cval cval_of(const void *v, size_t len, unsigned k)
{
    struct cval c;
    LT_CHECK_EQ(len, sizeof c);
    memcpy(&c, v, sizeof c);
    LT_CHECK_EQ(c.magic, CMAGIC);
    LT_CHECK_EQ(c.key, k);
    return c;
}

/* A churn value: key index (4 bytes), fill byte, then fill + i. */
static void xfill(unsigned char *b, size_t len, unsigned k, uint8_t fill)
{
    uint32_t k32 = k;
    memcpy(b, &k32, 4);
    b[4] = fill;
    for (size_t i = 5; i < len; i++)
        b[i] = (uint8_t)(fill + i);
}

static void xverify(const unsigned char *b, size_t len, unsigned k)
{
    LT_CHECK(len >= 5 && len <= XMAX);
    uint32_t k32;
    memcpy(&k32, b, 4);
    LT_CHECK_EQ(k32, k);
    for (size_t i = 5; i < len; i++)
        if (b[i] != (uint8_t)(b[4] + i)) {
            fprintf(stderr, "soak: key x%02u: byte %zu of %zu is %u, not %u: a torn value\n",
                    k, i, len, b[i], (uint8_t)(b[4] + i));
            abort();
        }
}

struct swriter {
    uint64_t rng;
    long inc[CKEYS], bank[CKEYS];    /* published increments, counts removed */
    long puts, updates, deletes, stale;
};

struct cnt_arg { bool remove; unsigned k; uint64_t seen; };

static int cnt_fn(const struct lull_snap *cur, struct lull_buf *next, void *arg)
{
    struct cnt_arg *a = arg;
    struct cval c = { a->k, CMAGIC, 0 };
    if (cur)
        c = cval_of(cur->value, cur->value_len, a->k);
    if (a->remove) {
        if (!cur)
            return LULL_KEEP;
        a->seen = c.count;      /* the run that publishes is the last one */
        return LULL_REMOVE;
    }
    c.count++;
    if (next->len != sizeof c) {
        int rc = lull_buf_resize(next, sizeof c);
        if (rc)
            return rc;
    }
    memcpy(next->data, &c, sizeof c);
    return LULL_PUBLISH;
}

struct x_arg { unsigned k; size_t len; };

static int xrewrite_fn(const struct lull_snap *cur, struct lull_buf *next, void *arg)
{
    const struct x_arg *a = arg;
    uint8_t fill = 0;
    if (cur) {
        xverify(cur->value, cur->value_len, a->k);
        fill = ((const unsigned char *)cur->value)[4] + 1;
    }
    int rc = lull_buf_resize(next, a->len);
    if (rc)
        return rc;
    xfill(next->data, next->len, a->k, fill);
    return LULL_PUBLISH;
}

/* Read a counter key: true and its value and version if present. */
static bool cread(unsigned k, struct cval *c, uint64_t *ver)
{
    char key[8];
    ckey(k, key);
    size_t len = 0;
    int rc = lull_store_read(S, key, 3, c, sizeof *c, &len, ver);
    if (rc == -ENOENT)
        return false;
    LT_CHECK_EQ(rc, 0);
    *c = cval_of(c, len, k);
    return true;
}

static void counter_op(struct swriter *x, unsigned k, unsigned op)
{
    char key[8];
    ckey(k, key);
    struct cval c;
    uint64_t ver = 0;
    int rc;
    if (PLANT == PLANT_LOST_UPDATE && op < 4) {
        /* planted: read, then put what was read plus one -- not atomic */
        if (!cread(k, &c, &ver))
            c = (struct cval){ k, CMAGIC, 0 };
        c.count++;
        LT_CHECK_EQ(lull_store_put(S, key, 3, &c, sizeof c, NULL), 0);
        x->inc[k]++;
        x->puts++;
        return;
    }
    switch (op) {
    case 0: case 1: case 2: case 3: {          /* update: +1 */
        struct cnt_arg a = { false, k, 0 };
        struct lull_update_info info;
        LT_CHECK_EQ(lull_store_update(S, key, 3, cnt_fn, &a, &info), 0);
        LT_CHECK(info.outcome == LULL_INSERTED || info.outcome == LULL_UPDATED);
        x->inc[k]++;
        x->updates++;
        break;
    }
    case 4: {                                   /* update: remove, bank the count */
        struct cnt_arg a = { true, k, 0 };
        struct lull_update_info info;
        LT_CHECK_EQ(lull_store_update(S, key, 3, cnt_fn, &a, &info), 0);
        if (info.outcome == LULL_REMOVED) {
            x->bank[k] += (long)a.seen;
            x->deletes++;
        } else {
            LT_CHECK(info.outcome == LULL_UNCHANGED);
        }
        break;
    }
    case 5:                                     /* delete_if on the read version */
        if (!cread(k, &c, &ver))
            break;
        rc = lull_store_delete_if(S, key, 3, ver);
        LT_CHECK(rc == 0 || rc == -ESTALE || rc == -ENOENT);
        if (rc == 0) {
            x->bank[k] += (long)c.count;
            x->deletes++;
        } else {
            x->stale++;
        }
        break;
    default:                                    /* put_if: insert, or +1 on the read version */
        if (!cread(k, &c, &ver)) {
            c = (struct cval){ k, CMAGIC, 0 };
            ver = 0;
        }
        c.count++;
        rc = lull_store_put_if(S, key, 3, &c, sizeof c, ver, NULL);
        LT_CHECK(rc == 0 || rc == -ESTALE);
        if (rc == 0) {
            x->inc[k]++;
            x->puts++;
        } else {
            x->stale++;
        }
        break;
    }
}

static void churn_op(struct swriter *x, unsigned k, unsigned op)
{
    char key[8];
    xkey(k, key);
    unsigned char v[XMAX];
    size_t len = 5 + lt_rand(&x->rng) % (XMAX - 4);
    int rc;
    switch (op) {
    case 0: case 1:
        xfill(v, len, k, (uint8_t)lt_rand(&x->rng));
        LT_CHECK_EQ(lull_store_put(S, key, 3, v, len, NULL), 0);
        x->puts++;
        break;
    case 2: case 3: {
        struct x_arg a = { k, len };
        LT_CHECK_EQ(lull_store_update(S, key, 3, xrewrite_fn, &a, NULL), 0);
        x->updates++;
        break;
    }
    case 4:
        rc = lull_store_delete(S, key, 3);
        LT_CHECK(rc == 0 || rc == -ENOENT);
        x->deletes += rc == 0;
        break;
    default: {
        uint64_t ver = 0;
        size_t l = 0;
        rc = lull_store_read(S, key, 3, v, sizeof v, &l, &ver);
        if (rc == -ENOENT)
            break;
        LT_CHECK_EQ(rc, 0);
        xverify(v, l, k);
        rc = lull_store_delete_if(S, key, 3, ver);
        LT_CHECK(rc == 0 || rc == -ESTALE || rc == -ENOENT);
        x->deletes += rc == 0;
        x->stale += rc != 0;
        break;
    }
    }
}

static void *store_writer(void *p)
{
    struct swriter *x = p;
    while (!stopped()) {
        for (int i = 0; i < 64; i++) {
            uint64_t r = lt_rand(&x->rng);
            unsigned k = (unsigned)(r % CKEYS), op = (unsigned)(r >> 8) % 8;
            if ((r >> 16) & 1)
                counter_op(x, k, op);
            else
                churn_op(x, k, op % 6);
            if (PLANT == PLANT_LEAK) {
                char *leak = malloc(512);       /* planted: never freed */
                LT_CHECK(leak != NULL);
                memset(leak, 1, 512);
                __asm__ volatile("" : : "r"(leak) : "memory");
            }
        }
    }
    return NULL;
}

struct sreader {
    uint64_t rng;
    uint64_t last[CKEYS + XKEYS];     /* highest version seen per key */
    long gets, reads, walks, absent;
};

static void saw(struct sreader *x, unsigned slot, uint64_t v)
{
    LT_CHECK(v != 0);
    if (v < x->last[slot]) {
        fprintf(stderr, "soak: key slot %u: version %llu after %llu: went back\n", slot,
                (unsigned long long)v, (unsigned long long)x->last[slot]);
        abort();
    }
    x->last[slot] = v;
}

static void check_snap(const struct lull_snap *sn)
{
    LT_CHECK(sn->key_len == 3);
    const char *k = sn->key;
    unsigned idx = (unsigned)((k[1] - '0') * 10 + (k[2] - '0'));
    if (k[0] == 'c')
        (void)cval_of(sn->value, sn->value_len, idx);
    else
        xverify(sn->value, sn->value_len, idx);
}

static int walk_fn(const struct lull_snap *sn, void *arg)
{
    check_snap(sn);
    ++*(long *)arg;
    return 0;
}

static void *store_reader(void *p)
{
    struct sreader *x = p;
    while (!stopped()) {
        for (int i = 0; i < 256; i++) {
            uint64_t r = lt_rand(&x->rng);
            unsigned slot = (unsigned)(r % (CKEYS + XKEYS));
            char key[8];
            if (slot < CKEYS)
                ckey(slot, key);
            else
                xkey(slot - CKEYS, key);
            if ((r >> 8) & 1) {                 /* zero-copy, in a section */
                lull_read_lock();
                const struct lull_snap *sn = lull_store_get(S, key, 3);
                if (sn) {
                    check_snap(sn);
                    saw(x, slot, sn->version);
                } else {
                    x->absent++;
                }
                lull_read_unlock();
                x->gets++;
            } else {                            /* copy-out */
                unsigned char v[XMAX];
                size_t len = 0;
                uint64_t ver = 0;
                int rc = lull_store_read(S, key, 3, v, sizeof v, &len, &ver);
                if (rc == 0) {
                    struct lull_snap sn = { key, 3, v, len, ver };
                    check_snap(&sn);
                    saw(x, slot, ver);
                } else {
                    LT_CHECK_EQ(rc, -ENOENT);
                    x->absent++;
                }
                x->reads++;
            }
        }
        if ((lt_rand(&x->rng) & 63) == 0) {
            long n = 0;
            LT_CHECK_EQ(lull_store_foreach(S, walk_fn, &n), 0);
            LT_CHECK(n <= CKEYS + XKEYS);
            x->walks++;
        }
    }
    return NULL;
}

/* ================================================================= wheel */

static lull_wheel *W;

enum { T_IDLE, T_ARMED, T_FIRED, T_CANCELLED };
static const char *const TSTATE[] = { "idle", "armed", "fired", "cancelled" };

struct trec {
    int state;              /* atomic */
    uint32_t inc;           /* atomic: incarnation, also in the timer's arg */
    uint64_t not_before;    /* atomic: no fire before this (CLOCK_MONOTONIC ns) */
    lull_timer h;           /* the owner's: current handle */
};
static struct trec TREC[W_THREADS * TPOOL];

static long T_FIRES;        /* atomic: callbacks run */

#define TARG(idx, inc) ((void *)(uintptr_t)((uintptr_t)(idx) | ((uintptr_t)(inc) << 20)))

static void timer_fn(lull_timer t, void *arg)
{
    (void)t;
    uintptr_t a = (uintptr_t)arg;
    uint32_t idx = (uint32_t)(a & 0xfffff), inc = (uint32_t)(a >> 20);
    LT_CHECK(idx < W_THREADS * TPOOL);
    struct trec *r = &TREC[idx];
    uint32_t cur = __atomic_load_n(&r->inc, __ATOMIC_ACQUIRE);
    if (cur != inc) {
        fprintf(stderr, "soak: timer %u fired for incarnation %u, now %u: a stale fire\n", idx,
                inc, cur);
        abort();
    }
    uint64_t nb = __atomic_load_n(&r->not_before, __ATOMIC_ACQUIRE), now = lull__now_ns();
    if (now < nb) {
        fprintf(stderr, "soak: timer %u fired %llu ns early\n", idx,
                (unsigned long long)(nb - now));
        abort();
    }
    add(&T_FIRES, 1);
    int want = T_ARMED;
    /* acq_rel: the last touch of r; the owner may reuse it once it sees FIRED */
    if (!__atomic_compare_exchange_n(&r->state, &want, T_FIRED, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE)) {
        fprintf(stderr, "soak: timer %u fired but it was %s: ended twice\n", idx, TSTATE[want]);
        abort();
    }
}

struct wthread {
    unsigned id;
    uint64_t rng;
    long sched, cancels, cancels_late, resched, resched_stale, advances, advanced;
};

static uint64_t tdelay(uint64_t *rng)
{
    uint64_t r = lt_rand(rng);
    return (r & 7) == 0 ? 0 : (r >> 8) % (4 * MS);
}

/* A cancel returned 0: the timer must still be armed, and now never fires. */
static void cancelled(unsigned idx)
{
    int want = T_ARMED;
    if (!__atomic_compare_exchange_n(&TREC[idx].state, &want, T_CANCELLED, false,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        fprintf(stderr, "soak: timer %u: cancel returned 0 but it %s\n", idx, TSTATE[want]);
        abort();
    }
}

static void wheel_op(struct wthread *x)
{
    unsigned idx = x->id * TPOOL + (unsigned)(lt_rand(&x->rng) % TPOOL);
    struct trec *r = &TREC[idx];
    int st = __atomic_load_n(&r->state, __ATOMIC_ACQUIRE);
    uint64_t op = lt_rand(&x->rng) % 8;
    int rc;
    if (st != T_ARMED) {                        /* ended (or new): schedule it again */
        uint64_t d = tdelay(&x->rng);
        uint32_t inc = __atomic_load_n(&r->inc, __ATOMIC_RELAXED) + 1;
        __atomic_store_n(&r->inc, inc, __ATOMIC_RELEASE);
        __atomic_store_n(&r->not_before, lull__now_ns() + d, __ATOMIC_RELEASE);
        __atomic_store_n(&r->state, T_ARMED, __ATOMIC_RELEASE);
        rc = lull_wheel_schedule(W, d, timer_fn, TARG(idx, inc), &r->h);
        LT_CHECK_EQ(rc, 0);
        x->sched++;
        return;
    }
    switch (op) {
    case 0: case 1: case 2:
        rc = lull_wheel_cancel(W, r->h);
        if (rc == 0) {
            cancelled(idx);
            x->cancels++;
        } else {
            LT_CHECK(rc == -EINPROGRESS || rc == -ESTALE);   /* it fired, or is firing */
            x->cancels_late++;
        }
        break;
    case 3:
        rc = lull_wheel_cancel_sync(W, r->h);
        if (rc == 0) {
            cancelled(idx);
            x->cancels++;
        } else {
            LT_CHECK(rc == -EINPROGRESS || rc == -ESTALE);
            /* whatever cancel_sync returns, the callback is not running */
            st = __atomic_load_n(&r->state, __ATOMIC_ACQUIRE);
            if (st != T_FIRED) {
                fprintf(stderr, "soak: timer %u: cancel_sync returned %d but it is %s\n", idx,
                        rc, TSTATE[st]);
                abort();
            }
            x->cancels_late++;
        }
        break;
    case 4: case 5: case 6: {
        uint64_t d = tdelay(&x->rng), nb = lull__now_ns() + d;
        /* the fire comes at the old deadline or the new one: no earlier than both */
        if (nb < __atomic_load_n(&r->not_before, __ATOMIC_RELAXED))
            __atomic_store_n(&r->not_before, nb, __ATOMIC_RELEASE);
        lull_timer nh = 0;
        rc = lull_wheel_reschedule(W, r->h, d, &nh);
        if (rc == 0) {
            LT_CHECK(nh != 0 && nh != r->h);
            r->h = nh;
            x->resched++;
        } else {
            LT_CHECK_EQ(rc, -ESTALE);
            x->resched_stale++;
        }
        break;
    }
    default:
        x->advanced += (long)lull_wheel_advance(W);
        x->advances++;
        break;
    }
}

static void *wheel_thread(void *p)
{
    struct wthread *x = p;
    while (!stopped())
        for (int i = 0; i < 32; i++)
            wheel_op(x);
    return NULL;
}

/* ================================================================= registry */

static lull_registry *R;

enum { O_FREE, O_OWNED, O_TAKEN, O_CLOSED };
static const char *const OSTATE[] = { "free", "owned", "taken", "closed" };

struct robj {
    int state;      /* atomic */
    int kind;       /* 0 conn, 1 dependent; set before it is handed over */
    int idx;
};
static struct robj ROBJ[NOBJ];

static struct {
    pthread_mutex_t mu;
    int v[NOBJ];
    int n;
} POOL = { PTHREAD_MUTEX_INITIALIZER, { 0 }, 0 };

static long R_TAKEN;                    /* atomic: conns accepted + deps attached */
static long R_CLOSES[5], R_DCLOSES[5];  /* atomic, by reason */
static long R_FREES;                    /* atomic */
static long R_RULE;                     /* atomic: keep_incoming calls */
static long R_EMPTY;                    /* atomic: the pool was empty */

static struct robj *pool_get(int kind)
{
    pthread_mutex_lock(&POOL.mu);
    struct robj *o = POOL.n ? &ROBJ[POOL.v[--POOL.n]] : NULL;
    pthread_mutex_unlock(&POOL.mu);
    if (!o) {       /* every object is in use or waiting for its free */
        add(&R_EMPTY, 1);
        sched_yield();
        return NULL;
    }
    LT_CHECK_EQ(__atomic_load_n(&o->state, __ATOMIC_ACQUIRE), O_FREE);
    o->kind = kind;
    __atomic_store_n(&o->state, O_OWNED, __ATOMIC_RELAXED);
    return o;
}

static void pool_put(struct robj *o)
{
    pthread_mutex_lock(&POOL.mu);
    LT_CHECK(POOL.n < NOBJ);
    POOL.v[POOL.n++] = o->idx;
    pthread_mutex_unlock(&POOL.mu);
}

static struct robj *robj_of(void *p, int kind)
{
    struct robj *o = p;
    LT_CHECK(o >= ROBJ && o < ROBJ + NOBJ);
    LT_CHECK_EQ(o->kind, kind);
    return o;
}

/* from -> to, or abort naming what it was */
static void move(struct robj *o, int from, int to, const char *what)
{
    int s = from;
    if (!__atomic_compare_exchange_n(&o->state, &s, to, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE)) {
        fprintf(stderr, "soak: %s %d: %s, but it was %s (not %s)\n",
                o->kind ? "dependent" : "conn", o->idx, what, OSTATE[s], OSTATE[from]);
        abort();
    }
}

static void r_close(void *conn, enum lull_reason why, void *ctx)
{
    (void)ctx;
    LT_CHECK(why >= LULL_REPLACED && why <= LULL_SHUTDOWN);
    move(robj_of(conn, 0), O_TAKEN, O_CLOSED, "close");
    add(&R_CLOSES[why], 1);
}

static void r_close_dep(void *dep, enum lull_reason why, void *ctx)
{
    (void)ctx;
    LT_CHECK(why >= LULL_REPLACED && why <= LULL_SHUTDOWN);
    move(robj_of(dep, 1), O_TAKEN, O_CLOSED, "close_dependent");
    add(&R_DCLOSES[why], 1);
}

static void r_free(void *obj, void *ctx)
{
    (void)ctx;
    struct robj *o = obj;
    LT_CHECK(o >= ROBJ && o < ROBJ + NOBJ);
    move(o, O_CLOSED, O_FREE, "free");
    long n = __atomic_add_fetch(&R_FREES, 1, __ATOMIC_RELAXED);
    if (PLANT == PLANT_DOUBLE_FREE && n == 1000)
        move(o, O_CLOSED, O_FREE, "free (counted twice)");     /* planted */
    pool_put(o);
}

/* Either side may win; the same answer for the same pair every time. */
static bool r_rule(const void *id, size_t id_len, void *held, void *incoming, void *ctx)
{
    (void)id; (void)id_len; (void)ctx;
    struct robj *h = robj_of(held, 0), *in = robj_of(incoming, 0);
    /* inside the store's section: held cannot have been freed */
    int s = __atomic_load_n(&h->state, __ATOMIC_ACQUIRE);
    LT_CHECK(s == O_TAKEN || s == O_CLOSED);
    add(&R_RULE, 1);
    return ((unsigned)h->idx * 2654435761u ^ (unsigned)in->idx) & 16;
}

static uint64_t RGEN[NIDS];   /* atomic: the last generation a claim of each id got */

struct rthread {
    uint64_t rng;
    long claims, rejected, reclaims, releases, released, release_afters, marks, attaches,
         detaches, lookups, held_seen;
};

static void rid(unsigned i, char *b) { snprintf(b, 8, "id%02u", i); }

static void registry_op(struct rthread *x)
{
    uint64_t r = lt_rand(&x->rng);
    unsigned i = (unsigned)(r % NIDS);
    char id[8];
    rid(i, id);
    uint64_t gen = __atomic_load_n(&RGEN[i], __ATOMIC_ACQUIRE);
    int rc;
    switch ((r >> 8) % 10) {
    case 0: case 1: {                           /* claim */
        struct robj *o = pool_get(0);
        if (!o)
            break;
        bool grace = lull_registry_lookup(R, id, 4, NULL, NULL) == -EAGAIN;
        __atomic_store_n(&o->state, O_TAKEN, __ATOMIC_RELEASE);   /* before close can run */
        uint64_t g = 0;
        rc = lull_registry_claim(R, id, 4, o, &g);
        if (rc == 0) {
            LT_CHECK(g != 0);
            __atomic_store_n(&RGEN[i], g, __ATOMIC_RELEASE);
            add(&R_TAKEN, 1);
            x->claims++;
            x->reclaims += grace;
        } else {
            LT_CHECK_EQ(rc, -EEXIST);
            move(o, O_TAKEN, O_FREE, "rejected by a claim");     /* no callback came */
            pool_put(o);
            x->rejected++;
        }
        break;
    }
    case 2:
        rc = lull_registry_release(R, id, 4, gen);
        LT_CHECK(rc == 0 || rc == 1);
        x->releases++;
        x->released += rc;
        break;
    case 3:
        rc = lull_registry_release_after(R, id, 4, gen, (r >> 16) % (3 * MS));
        LT_CHECK(rc == 0 || rc == -ESTALE);
        x->release_afters += rc == 0;
        break;
    case 4:
        rc = lull_registry_mark_dead(R, id, 4, gen);
        LT_CHECK(rc == 0 || rc == -ESTALE);
        x->marks += rc == 0;
        break;
    case 5: case 6: {                           /* attach */
        struct robj *o = pool_get(1);
        if (!o)
            break;
        __atomic_store_n(&o->state, O_TAKEN, __ATOMIC_RELEASE);
        rc = lull_registry_attach(R, id, 4, o);
        if (rc == 0) {
            add(&R_TAKEN, 1);
            x->attaches++;
        } else {
            LT_CHECK(rc == -ENOENT || rc == -ENOSPC);
            move(o, O_TAKEN, O_FREE, "rejected by an attach");
            pool_put(o);
        }
        break;
    }
    case 7: {                                   /* detach one of its dependents */
        void *deps[MAXDEPS];
        size_t n = 0;
        lull_read_lock();                       /* the pointers stay valid in it */
        rc = lull_registry_dependents(R, id, 4, deps, MAXDEPS, &n);
        LT_CHECK(rc == 0 || rc == -ENOENT);
        if (rc == 0 && n) {
            rc = lull_registry_detach(R, id, 4, deps[(r >> 16) % n]);
            LT_CHECK(rc == 0 || rc == -ENOENT);
            x->detaches += rc == 0;
        }
        lull_read_unlock();
        break;
    }
    default: {                                  /* lookup: never a freed conn */
        void *conn = NULL;
        lull_read_lock();
        rc = lull_registry_lookup(R, id, 4, &conn, NULL);
        LT_CHECK(rc == 0 || rc == -EAGAIN || rc == -ENOENT);
        if (rc == 0) {
            int s = __atomic_load_n(&robj_of(conn, 0)->state, __ATOMIC_ACQUIRE);
            LT_CHECK(s == O_TAKEN || s == O_CLOSED);
            x->held_seen++;
        }
        lull_read_unlock();
        x->lookups++;
        break;
    }
    }
}

static void *registry_thread(void *p)
{
    struct rthread *x = p;
    while (!stopped())
        for (int i = 0; i < 32; i++)
            registry_op(x);
    return NULL;
}

/* ================================================================= the soak */

static void test_soak(void **state)
{
    (void)state;
    uint64_t seed = lt_seed(0x50a6);
    double secs = lt_stress_seconds();
    if (PLANT != PLANT_NONE && PLANT != PLANT_LEAK && secs > 1)
        secs = 1;                               /* these fail at once, or at the end */
    double warm = secs * 0.2 < 0.5 ? 0.5 : secs * 0.2;
    if (warm > secs)
        warm = secs;

    S = lull_store_create(NULL);
    assert_non_null(S);
    struct lull_wheel_opts wo = { .tick_ns = 100000, .driver_thread = true };
    W = lull_wheel_create(&wo);
    assert_non_null(W);
    for (int i = 0; i < NOBJ; i++) {
        ROBJ[i].idx = i;
        POOL.v[POOL.n++] = NOBJ - 1 - i;
    }
    struct lull_registry_opts ro = {
        .wheel = W, .keep_incoming = r_rule, .close = r_close, .close_dependent = r_close_dep,
        .free = r_free, .on_reclaim = LULL_INHERIT, .max_dependents = MAXDEPS,
    };
    R = lull_registry_create(&ro);
    assert_non_null(R);

    struct swriter sw[S_WRITERS];
    struct sreader sr;
    struct wthread wt[W_THREADS];
    struct rthread rt[R_THREADS];
    memset(sw, 0, sizeof sw);
    memset(&sr, 0, sizeof sr);
    memset(wt, 0, sizeof wt);
    memset(rt, 0, sizeof rt);
    pthread_t th[S_WRITERS + 1 + W_THREADS + R_THREADS];
    int nth = 0;
    for (int i = 0; i < S_WRITERS; i++) {
        sw[i].rng = seed ^ (0x100u + (unsigned)i);
        assert_int_equal(pthread_create(&th[nth++], NULL, store_writer, &sw[i]), 0);
    }
    sr.rng = seed ^ 0x200u;
    assert_int_equal(pthread_create(&th[nth++], NULL, store_reader, &sr), 0);
    for (int i = 0; i < W_THREADS; i++) {
        wt[i].id = (unsigned)i;
        wt[i].rng = seed ^ (0x300u + (unsigned)i);
        assert_int_equal(pthread_create(&th[nth++], NULL, wheel_thread, &wt[i]), 0);
    }
    for (int i = 0; i < R_THREADS; i++) {
        rt[i].rng = seed ^ (0x400u + (unsigned)i);
        assert_int_equal(pthread_create(&th[nth++], NULL, registry_thread, &rt[i]), 0);
    }

    /* the load: sample RSS after the warm-up, and its peak after that */
    double t0 = now_s();
    size_t rss_warm = 0, rss_peak = 0;
    double next_print = secs / 10;
    while (now_s() - t0 < secs) {
        sleep_ms(20);
        double t = now_s() - t0;
        if (t >= warm) {
            size_t rss = lt_rss_kib();
            if (!rss_warm)
                rss_warm = rss;
            if (rss > rss_peak)
                rss_peak = rss;
        }
        if (secs >= 10 && t >= next_print) {     /* the trend, for long runs */
            fprintf(stderr, "soak: %5.0f s: RSS %zu KiB\n", t, lt_rss_kib());
            next_print += secs / 10;
        }
    }
    size_t rss_end = lt_rss_kib();
    if (!rss_warm)
        rss_warm = rss_end;
    if (rss_end > rss_peak)
        rss_peak = rss_end;
    __atomic_store_n(&STOP, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < nth; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    double elapsed = now_s() - t0;

    /* quiescence: every timer and grace period has run out (delays <= 4 ms) */
    for (int i = 0; lull_wheel_pending(W) && i < 10000; i++)
        sleep_ms(1);
    assert_int_equal(lull_wheel_pending(W), 0);
    assert_int_equal(lull_wheel_check(W, stderr), 0);
    assert_int_equal(lull_registry_check(R, stderr), 0);
    assert_int_equal(lull_store_check(S, stderr), 0);

    /* store: no lost update on any counter key */
    long inc_all = 0, bank_all = 0, s_puts = 0, s_upd = 0, s_del = 0, s_stale = 0;
    for (int k = 0; k < CKEYS; k++) {
        long inc = 0, bank = 0;
        for (int i = 0; i < S_WRITERS; i++) {
            inc += sw[i].inc[k];
            bank += sw[i].bank[k];
        }
        struct cval c = { 0, 0, 0 };
        uint64_t ver;
        long left = cread((unsigned)k, &c, &ver) ? (long)c.count : 0;
        if (left + bank != inc)
            fail_msg("store key c%02d: %ld left + %ld removed = %ld, but %ld increments "
                     "were published: %ld lost updates", k, left, bank, left + bank, inc,
                     inc - left - bank);
        inc_all += inc;
        bank_all += bank;
    }
    for (int i = 0; i < S_WRITERS; i++) {
        s_puts += sw[i].puts;
        s_upd += sw[i].updates;
        s_del += sw[i].deletes;
        s_stale += sw[i].stale;
    }
    long walked = 0;
    assert_int_equal(lull_store_foreach(S, walk_fn, &walked), 0);
    assert_int_equal((size_t)walked, lull_store_count(S));

    /* wheel: every timer scheduled ended exactly once */
    long sched = 0, canc = 0, late = 0, resch = 0, rstale = 0, adv = 0, advanced = 0;
    for (int i = 0; i < W_THREADS; i++) {
        sched += wt[i].sched;
        canc += wt[i].cancels;
        late += wt[i].cancels_late;
        resch += wt[i].resched;
        rstale += wt[i].resched_stale;
        adv += wt[i].advances;
        advanced += wt[i].advanced;
    }
    for (int i = 0; i < W_THREADS * TPOOL; i++) {
        int s = __atomic_load_n(&TREC[i].state, __ATOMIC_ACQUIRE);
        if (s == T_ARMED)
            fail_msg("wheel: timer %d is still armed with nothing pending", i);
    }
    if (ld(&T_FIRES) + canc != sched)
        fail_msg("wheel: %ld fired + %ld cancelled != %ld scheduled", ld(&T_FIRES), canc, sched);

    /* registry: shutdown closes what is held; then every object is back */
    lull_registry_destroy(R);
    long closes = 0, dcloses = 0;
    for (int w = 0; w < 5; w++) {
        closes += ld(&R_CLOSES[w]);
        dcloses += ld(&R_DCLOSES[w]);
    }
    for (int i = 0; i < NOBJ; i++) {
        int s = __atomic_load_n(&ROBJ[i].state, __ATOMIC_ACQUIRE);
        if (s != O_FREE)
            fail_msg("registry: %s %d is %s after destroy: its %s never came",
                     ROBJ[i].kind ? "dependent" : "conn", i, OSTATE[s],
                     s == O_TAKEN ? "close" : "free");
    }
    assert_int_equal(POOL.n, NOBJ);
    assert_int_equal(closes + dcloses, ld(&R_TAKEN));
    assert_int_equal(ld(&R_FREES), ld(&R_TAKEN));

    assert_int_equal(lull_wheel_destroy(W, 0), 0);
    assert_int_equal(lull_store_destroy(S), 0);

    long claims = 0, rej = 0, recl = 0, rels = 0, reld = 0, rafter = 0, marks = 0, att = 0,
         det = 0, looks = 0;
    for (int i = 0; i < R_THREADS; i++) {
        claims += rt[i].claims;
        rej += rt[i].rejected;
        recl += rt[i].reclaims;
        rels += rt[i].releases;
        reld += rt[i].released;
        rafter += rt[i].release_afters;
        marks += rt[i].marks;
        att += rt[i].attaches;
        det += rt[i].detaches;
        looks += rt[i].lookups;
    }
    long s_ops = s_puts + s_upd + s_del + s_stale + sr.gets + sr.reads;
    long w_ops = sched + canc + late + resch + rstale + adv;
    long r_ops = claims + rej + rels + rafter + marks + att + det + looks;
    fprintf(stderr,
            "soak: %.1f s, %.2f M ops (%.0f k/s)\n"
            "  store:    %ld puts, %ld updates, %ld removes, %ld stale; %ld gets, %ld reads, "
            "%ld walks; %ld increments = %ld removed + %ld left\n"
            "  wheel:    %ld scheduled = %ld fired + %ld cancelled (%ld too late), "
            "%ld rescheduled (%ld too late), %ld advances firing %ld\n"
            "  registry: %ld claims (%ld reclaims in grace, %ld rejected, rule asked %ld), "
            "%ld attaches, %ld released of %ld, %ld release_after, %ld mark_dead, %ld detaches, "
            "%ld lookups; closes %ld (replaced %ld, released %ld, shutdown %ld), "
            "dependent closes %ld (released %ld, expired %ld, shutdown %ld), frees %ld, "
            "pool empty %ld\n"
            "  RSS: %zu KiB after %.1f s warm-up, %zu KiB at the end, peak %zu KiB: "
            "%+ld KiB (bound %d KiB%s)\n",
            elapsed, (double)(s_ops + w_ops + r_ops) / 1e6,
            (double)(s_ops + w_ops + r_ops) / elapsed / 1e3,
            s_puts, s_upd, s_del, s_stale, sr.gets, sr.reads, sr.walks, inc_all, bank_all,
            inc_all - bank_all, sched, ld(&T_FIRES), canc, late, resch, rstale, adv, advanced,
            claims, recl, rej, ld(&R_RULE), att, reld, rels, rafter, marks, det, looks, closes,
            ld(&R_CLOSES[LULL_REPLACED]), ld(&R_CLOSES[LULL_RELEASED]),
            ld(&R_CLOSES[LULL_SHUTDOWN]), dcloses, ld(&R_DCLOSES[LULL_RELEASED]),
            ld(&R_DCLOSES[LULL_EXPIRED]), ld(&R_DCLOSES[LULL_SHUTDOWN]), ld(&R_FREES),
            ld(&R_EMPTY), rss_warm, warm, rss_end, rss_peak,
            (long)rss_end - (long)rss_warm, RSS_BOUND_KIB,
            lt_sanitized() ? ", not asserted under a sanitizer" : "");

    /* every layer did real work */
    assert_true(inc_all > 0 && sr.gets > 0 && sched > 0 && canc > 0 && claims > 0 && att > 0);
    if (!lt_sanitized() && rss_end > rss_warm + RSS_BOUND_KIB)
        fail_msg("RSS grew by %ld KiB after the warm-up (bound %d KiB): something leaks",
                 (long)rss_end - (long)rss_warm, RSS_BOUND_KIB);
}

/* With a planted bug the checks abort; ctest counts a signal as a failure
 * whatever the test's PASS_REGULAR_EXPRESSION says, so exit instead. */
static void plant_caught(int sig)
{
    static const char msg[] = "soak: the planted bug was caught\n";
    (void)sig;
    (void)!write(2, msg, sizeof msg - 1);
    _exit(1);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--plant") == 0) {
        if (strcmp(argv[2], "lost-update") == 0)
            PLANT = PLANT_LOST_UPDATE;
        else if (strcmp(argv[2], "double-free") == 0)
            PLANT = PLANT_DOUBLE_FREE;
        else if (strcmp(argv[2], "leak") == 0)
            PLANT = PLANT_LEAK;
        else
            argc = 0;
    }
    if (argc != 1 && !PLANT) {
        fprintf(stderr, "usage: %s [--plant lost-update|double-free|leak]\n", argv[0]);
        return 2;
    }
    if (PLANT) {
        fprintf(stderr, "soak: planted bug: %s (this run must fail)\n", argv[2]);
        signal(SIGABRT, plant_caught);
    }
    const struct CMUnitTest tests[] = { cmocka_unit_test(test_soak) };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
