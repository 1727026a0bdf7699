/*
 * tests/faults/test_faults.c - one allocation-failure sweep over all three
 * layers.
 *
 * A scenario is a function that builds a state ("before") with the fault
 * hook disarmed and then makes exactly one call under test, through CALL().
 * sweep(scenario) runs it first with no fault (the reference run: what the
 * call returns, the state "after", the end state) and then with the 1st,
 * 2nd, ... allocation from the call failing (lull__fault_arm(n)), until a
 * run completes without reaching the armed allocation.  For every n:
 *
 *   - the call returns -ENOMEM (constructors: NULL with errno ENOMEM) or
 *     what the reference run returned (a failure a retry absorbed);
 *   - the state right after it equals "before" exactly (after -ENOMEM) or
 *     the reference "after" (otherwise).  The state is a text digest of
 *     everything observable: the store's keys, values, versions (as
 *     "unchanged" / "newer" than before), count and check; the wheel's
 *     pending count, next deadline and check; the registry's ids (lookup,
 *     holder, generation, dependents), id count, wheel pending and check;
 *     and every object's callbacks so far (closes and their reasons);
 *   - after -ENOMEM the same call, disarmed, completes the scenario: it
 *     returns what the reference returned and leaves the reference "after";
 *   - at the end (registry destroyed, wheel run to the end of time, store
 *     destroyed) every conn and dependent the registry took was closed
 *     exactly once and freed exactly once, every other object never; every
 *     timer scheduled and not cancelled fired exactly once, in the
 *     reference's order; and the end state equals the reference's;
 *   - nothing leaks (LeakSanitizer, in the ASan build).
 *
 * Deterministic: wheels run on a virtual clock, advanced by hand, with no
 * driver thread; the only other thread at work is the one that runs
 * deferred frees after grace periods (the registry's free callbacks among
 * them: counted, checked after destroy, when every one has run).
 * tests/store/test_store_faults.c, tests/wheel/test_wheel.c and
 * tests/registry/test_registry.c keep their own per-layer sweeps; this file
 * is the one place that holds every layer to the same rule.
 */
#include "testutil.h"
#include "registry_internal.h"   /* r->store: the registry's id count */

#include <string.h>

#define MS 1000000ull
#define LEN(s) strlen(s)

/* ------------------------------------------------------------ text digests */

struct sb {
    char *p;
    size_t n, cap;
};

static void sb_printf(struct sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sb *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        LT_CHECK(k >= 0);
        if (b->p && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        b->cap = (b->cap + (size_t)k + 1) * 2;
        b->p = realloc(b->p, b->cap);
        LT_CHECK(b->p != NULL);
        b->p[b->n] = 0;
    }
}

static char *sb_take(struct sb *b)
{
    if (!b->p)
        sb_printf(b, "%s", "");
    char *p = b->p;
    memset(b, 0, sizeof(*b));
    return p;
}

static uint64_t fnv(const void *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ ((const unsigned char *)p)[i]) * 0x100000001b3ull;
    return h;
}

/* ------------------------------------------------------------ the fixture */

enum kind { CONN, DEP, TIMER };
enum { MAXOBJ = 4096 };

/* Everything a scenario hands to lull, with what happened to it. */
struct obj {
    enum kind kind;
    int idx;
    int taken;          /* claim / attach / schedule returned success */
    int cancelled;      /* timers: a cancel returned 0 */
    int closes, why;    /* close or close_dependent: count and last reason */
    int frees;          /* atomic: free runs on the call_rcu thread */
    int fires;          /* timers */
    uint64_t gen;       /* conns: the generation of the accepted claim */
    lull_timer h;       /* timers: the current handle */
    uint64_t due;       /* timers: the deadline (virtual ns) */
};

/* What the reference run saw, for the runs with a fault to match. */
struct ref {
    int rc;
    char *after, *end;
};

struct fx {
    unsigned long nth;          /* the allocation to fail; 0: the reference run */
    struct ref *ref;
    struct lt_clock clk;
    lull_store *s;
    lull_wheel *w;
    lull_registry *r;
    struct lull_registry_opts ro;
    struct obj *obj[MAXOBJ];
    int nobj;
    struct sb firelog;          /* timers, in the order they fired */

    /* the call under test */
    int calls;
    bool fired, failed, nofail;
    char *before;
    struct vent { char *key; uint64_t v; } *vbefore;   /* store versions before */
    size_t nvbefore;
};

static struct obj *fx_obj(struct fx *f, enum kind kind)
{
    assert_true(f->nobj < MAXOBJ);
    struct obj *o = calloc(1, sizeof(*o));
    assert_non_null(o);
    o->kind = kind;
    o->idx = f->nobj;
    f->obj[f->nobj++] = o;
    return o;
}

static int geti(int *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

/* ---- store digest ---- */

struct kv { char *key; size_t klen; uint64_t h, v; size_t vlen; };
struct kvs { struct kv *e; size_t n, cap; };

static int kv_cb(const struct lull_snap *sn, void *arg)
{
    struct kvs *d = arg;
    if (d->n == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 64;
        d->e = realloc(d->e, d->cap * sizeof(*d->e));
        LT_CHECK(d->e != NULL);
    }
    struct kv *e = &d->e[d->n++];
    e->key = malloc(sn->key_len + 1);
    LT_CHECK(e->key != NULL);
    memcpy(e->key, sn->key, sn->key_len);
    e->key[sn->key_len] = 0;
    e->klen = sn->key_len;
    e->h = fnv(sn->value, sn->value_len);
    e->vlen = sn->value_len;
    e->v = sn->version;
    return 0;
}

static int kv_cmp(const void *a, const void *b)
{
    return strcmp(((const struct kv *)a)->key, ((const struct kv *)b)->key);
}

static int vent_cmp(const void *a, const void *b)
{
    return strcmp(((const struct vent *)a)->key, ((const struct vent *)b)->key);
}

/* Every key (sorted), its value's length and hash, its version relative to
 * the one it had before the call ('=' unchanged, '+' newer: a version never
 * goes back), the count; each key read back through lull_store_read too. */
static void digest_store(struct fx *f, struct sb *b)
{
    if (!f->s) {
        sb_printf(b, "store: none\n");
        return;
    }
    assert_int_equal(lull_store_check(f->s, stderr), 0);
    struct kvs d = { 0 };
    assert_int_equal(lull_store_foreach(f->s, kv_cb, &d), 0);
    if (d.n)
        qsort(d.e, d.n, sizeof(*d.e), kv_cmp);
    sb_printf(b, "store: count %zu, %zu keys:", lull_store_count(f->s), d.n);
    for (size_t i = 0; i < d.n; i++) {
        struct kv *e = &d.e[i];
        struct vent key = { e->key, 0 }, *was = NULL;
        if (f->nvbefore)
            was = bsearch(&key, f->vbefore, f->nvbefore, sizeof(*was), vent_cmp);
        char tag = !was ? '+' : e->v == was->v ? '=' : e->v > was->v ? '+' : '<';
        sb_printf(b, " %s:%zu:%016llx%c", e->key, e->vlen, (unsigned long long)e->h, tag);
        /* lull_store_read agrees with foreach */
        unsigned char buf[32];
        size_t len = 0;
        uint64_t v = 0;
        int rc = lull_store_read(f->s, e->key, e->klen, buf, sizeof buf, &len, &v);
        assert_true(rc == 0 || rc == -ENOBUFS);
        assert_int_equal(len, e->vlen);
        if (rc == 0)
            assert_true(v == e->v && fnv(buf, len) == e->h);
        free(e->key);
    }
    sb_printf(b, "\n");
    free(d.e);
}

static void vbefore_take(struct fx *f)
{
    if (!f->s)
        return;
    struct kvs d = { 0 };
    assert_int_equal(lull_store_foreach(f->s, kv_cb, &d), 0);
    f->vbefore = calloc(d.n ? d.n : 1, sizeof(*f->vbefore));
    assert_non_null(f->vbefore);
    for (size_t i = 0; i < d.n; i++)
        f->vbefore[i] = (struct vent){ d.e[i].key, d.e[i].v };
    f->nvbefore = d.n;
    qsort(f->vbefore, f->nvbefore, sizeof(*f->vbefore), vent_cmp);
    free(d.e);
}

static void vbefore_free(struct fx *f)
{
    for (size_t i = 0; i < f->nvbefore; i++)
        free(f->vbefore[i].key);
    free(f->vbefore);
    f->vbefore = NULL;
    f->nvbefore = 0;
}

/* ---- wheel and registry digests ---- */

static void digest_wheel(struct fx *f, struct sb *b)
{
    if (!f->w) {
        sb_printf(b, "wheel: none\n");
        return;
    }
    assert_int_equal(lull_wheel_check(f->w, stderr), 0);
    sb_printf(b, "wheel: pending %zu", lull_wheel_pending(f->w));
    if (!f->r) {    /* a registry's cancelled grace timers may leave next_deadline early */
        uint64_t nd = lull_wheel_next_deadline(f->w);
        if (nd == UINT64_MAX)
            sb_printf(b, ", next none");
        else
            sb_printf(b, ", next +%lld", (long long)(nd - f->clk.now));
    }
    sb_printf(b, "\n");
}

static const char *const IDS[] = { "a", "b", "c", "d" };

static const char *gen_name(struct fx *f, uint64_t gen, char *buf)
{
    for (int i = 0; i < f->nobj; i++)
        if (f->obj[i]->kind == CONN && f->obj[i]->taken && f->obj[i]->gen == gen) {
            snprintf(buf, 16, "c%d", i);
            return buf;
        }
    return "unknown";
}

static int ptr_idx(struct fx *f, void *p)
{
    for (int i = 0; i < f->nobj; i++)
        if (f->obj[i] == p)
            return i;
    return -1;
}

static int int_cmp(const void *a, const void *b)
{
    return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b);
}

static void digest_registry(struct fx *f, struct sb *b)
{
    if (!f->r) {
        sb_printf(b, "registry: none\n");
        return;
    }
    int bad = lull_registry_check(f->r, stderr);
    assert_true(bad == 0 || bad == -ESHUTDOWN);
    sb_printf(b, "registry: %zu ids\n", lull_store_count(f->r->store));
    for (size_t i = 0; i < sizeof IDS / sizeof *IDS; i++) {
        const char *id = IDS[i];
        void *conn = NULL;
        uint64_t gen = 0;
        char gb[16];
        int rc = lull_registry_lookup(f->r, id, LEN(id), &conn, &gen);
        sb_printf(b, "  %s: lookup %d", id, rc);
        if (rc == 0)
            sb_printf(b, " conn %d gen %s", ptr_idx(f, conn), gen_name(f, gen, gb));
        void *deps[64];
        size_t n = 0;
        rc = lull_registry_dependents(f->r, id, LEN(id), deps, 64, &n);
        sb_printf(b, ", dependents %d", rc);
        if (rc == 0) {
            int ix[64];
            for (size_t k = 0; k < n; k++)
                ix[k] = ptr_idx(f, deps[k]);
            qsort(ix, n, sizeof(int), int_cmp);
            sb_printf(b, " [");
            for (size_t k = 0; k < n; k++)
                sb_printf(b, "%s%d", k ? " " : "", ix[k]);
            sb_printf(b, "]");
        }
        sb_printf(b, "\n");
    }
}

static void digest_objects(struct fx *f, struct sb *b, bool end)
{
    static const char kc[] = "cdt";
    sb_printf(b, "objects:");
    for (int i = 0; i < f->nobj; i++) {
        struct obj *o = f->obj[i];
        sb_printf(b, " %c%d[%s", kc[o->kind], i, o->taken ? "taken" : "-");
        if (o->kind == TIMER)
            sb_printf(b, " fires %d%s", o->fires, o->cancelled ? " cancelled" : "");
        else
            sb_printf(b, " closes %d why %d", o->closes, o->why);
        if (end && o->kind != TIMER)
            sb_printf(b, " frees %d", geti(&o->frees));
        sb_printf(b, "]");
    }
    sb_printf(b, "\n");
}

/* The observable state, as text (the fault hook must be disarmed: the
 * checkers allocate). */
static char *digest(struct fx *f)
{
    struct sb b = { 0 };
    digest_store(f, &b);
    digest_wheel(f, &b);
    digest_registry(f, &b);
    digest_objects(f, &b, false);
    return sb_take(&b);
}

static void expect_digest(struct fx *f, const char *what, const char *want, const char *got)
{
    if (strcmp(want, got) != 0)
        fail_msg("allocation %lu: the state %s is not what it should be\n--- expected:\n%s"
                 "--- got:\n%s", f->nth, what, want, got);
}

/* ------------------------------------------------------------ the call under test */

static void call_begin(struct fx *f)
{
    assert_int_equal(f->calls, 0);      /* one call under test per scenario */
    f->calls++;
    vbefore_take(f);
    f->before = digest(f);
    lull__fault_arm(f->nth);            /* 0 disarms: the reference run */
}

/* Returns true if the call failed with -ENOMEM and must be made again. */
static bool call_end(struct fx *f, int rc)
{
    f->fired = lull__fault_fired();     /* and disarms */
    char *now = digest(f);
    if (f->nth == 0) {
        assert_false(f->fired);
        f->ref->rc = rc;
        f->ref->after = now;
        return false;
    }
    if (f->fired && rc == -ENOMEM && f->ref->rc != -ENOMEM) {
        if (f->nofail)
            fail_msg("allocation %lu failed and the call returned -ENOMEM, which its "
                     "contract does not allow", f->nth);
        expect_digest(f, "after -ENOMEM (must be as before)", f->before, now);
        f->failed = true;
        free(now);
        return true;
    }
    if (rc != f->ref->rc)
        fail_msg("allocation %lu %s: the call returned %d (%s), the reference run %d (%s)",
                 f->nth, f->fired ? "failed" : "was not reached", rc, lull_strerror(rc),
                 f->ref->rc, lull_strerror(f->ref->rc));
    expect_digest(f, f->fired ? "after a failure the call absorbed" : "after the call",
                  f->ref->after, now);
    free(now);
    return false;
}

/* The retry after -ENOMEM, with the hook disarmed: completes the scenario. */
static void call_retried(struct fx *f, int rc)
{
    if (rc != f->ref->rc)
        fail_msg("allocation %lu: after -ENOMEM the call, made again, returned %d (%s), "
                 "not %d", f->nth, rc, lull_strerror(rc), f->ref->rc);
    char *now = digest(f);
    expect_digest(f, "after the call was made again", f->ref->after, now);
    free(now);
}

/* CALL(f, expr): the one call under test of a scenario, evaluated with the
 * nth allocation armed to fail, and once more (disarmed) if it failed with
 * -ENOMEM.  expr is an int: 0 or more on success, a negative errno. */
#define CALL(f, expr) do { \
        call_begin(f); \
        int call_rc_ = (expr); \
        if (call_end((f), call_rc_)) \
            call_retried((f), (expr)); \
    } while (0)
/* For calls whose contract has no -ENOMEM: an allocation failure inside
 * must be absorbed (shutdown, cancel, reschedule, advance). */
#define CALL_NOFAIL(f, expr) do { (f)->nofail = true; CALL(f, expr); } while (0)
/* Constructors: NULL with errno ENOMEM is -ENOMEM. */
#define PTR_RC(p) ((p) ? 0 : -errno)

/* ------------------------------------------------------------ callbacks */

static void on_close(void *conn, enum lull_reason why, void *ctx)
{
    struct fx *f = ctx;
    struct obj *o = conn;
    LT_CHECK(ptr_idx(f, o) >= 0 && o->kind == CONN);
    LT_CHECK(o->taken && o->closes == 0 && geti(&o->frees) == 0);
    LT_CHECK(why >= LULL_REPLACED && why <= LULL_SHUTDOWN);
    o->closes++;
    o->why = why;
}

static void on_close_dep(void *dep, enum lull_reason why, void *ctx)
{
    struct fx *f = ctx;
    struct obj *o = dep;
    LT_CHECK(ptr_idx(f, o) >= 0 && o->kind == DEP);
    LT_CHECK(o->taken && o->closes == 0 && geti(&o->frees) == 0);
    LT_CHECK(why >= LULL_REPLACED && why <= LULL_SHUTDOWN);
    o->closes++;
    o->why = why;
}

/* Runs on the thread that runs deferred frees (or in shutdown). */
static void on_free(void *obj, void *ctx)
{
    (void)ctx;
    struct obj *o = obj;
    LT_CHECK(o->kind == CONN || o->kind == DEP);
    LT_CHECK(o->taken && o->closes == 1);
    LT_CHECK(__atomic_fetch_add(&o->frees, 1, __ATOMIC_ACQ_REL) == 0);
}

/* ------------------------------------------------------------ helpers */

static struct fx *CUR;    /* the run in progress: fire_log logs into it */

static void fire_log(lull_timer t, void *arg)
{
    struct obj *o = arg;
    LT_CHECK(o->kind == TIMER && o->taken && !o->cancelled && o->fires == 0);
    LT_CHECK(t == o->h);
    LT_CHECK(CUR->clk.now >= o->due);            /* never early */
    o->fires++;
    sb_printf(&CUR->firelog, " t%d", o->idx);
}

static void fx_set(struct fx *f, uint64_t ns)
{
    __atomic_store_n(&f->clk.now, ns, __ATOMIC_RELEASE);
}

static lull_store *fx_store(struct fx *f, size_t max_keys, int nkeys)
{
    struct lull_store_opts o = { .max_keys = max_keys };
    f->s = lull_store_create(&o);
    assert_non_null(f->s);
    for (int i = 0; i < nkeys; i++) {
        char k[16], v[16];
        snprintf(k, sizeof k, "k%d", i);
        snprintf(v, sizeof v, "v%d", i);
        assert_int_equal(lull_store_put(f->s, k, LEN(k), v, LEN(v), NULL), 0);
    }
    return f->s;
}

static uint64_t fx_version(struct fx *f, const char *key)
{
    char buf[64];
    uint64_t v = 0;
    size_t len;
    assert_int_equal(lull_store_read(f->s, key, LEN(key), buf, sizeof buf, &len, &v), 0);
    return v;
}

static struct lull_wheel_opts fx_wheel_opts(struct fx *f, size_t max_timers)
{
    struct lull_wheel_opts o = { .tick_ns = MS, .clock = lt_clock_read, .clock_ctx = &f->clk,
                                 .max_timers = max_timers };
    return o;
}

static lull_wheel *fx_wheel(struct fx *f, size_t max_timers)
{
    struct lull_wheel_opts o = fx_wheel_opts(f, max_timers);
    f->w = lull_wheel_create(&o);
    assert_non_null(f->w);
    return f->w;
}

static int fx_schedule(struct fx *f, struct obj *t, uint64_t delay)
{
    lull_timer h = 0;
    int rc = lull_wheel_schedule(f->w, delay, fire_log, t, &h);
    if (rc == 0) {
        assert_true(h != 0);
        t->h = h;
        t->taken = 1;
        t->due = f->clk.now + delay;
    } else {
        assert_true(h == 0);        /* untouched on failure */
    }
    return rc;
}

static int fx_reschedule(struct fx *f, struct obj *t, uint64_t delay)
{
    lull_timer nh = 0;
    int rc = lull_wheel_reschedule(f->w, t->h, delay, &nh);
    if (rc == 0) {
        assert_true(nh != 0 && nh != t->h);
        t->h = nh;
        t->due = f->clk.now + delay;
    }
    return rc;
}

static int fx_cancel(struct fx *f, struct obj *t)
{
    int rc = lull_wheel_cancel(f->w, t->h);
    if (rc == 0)
        t->cancelled = 1;
    return rc;
}

/* Schedule timers (all `delay` out) until the next schedule needs an
 * allocation: the wheel's slab is full and its next chunk (or directory)
 * must be made.  Found by probing -- each schedule made with its first
 * allocation armed to fail, which changes nothing if it fires -- so the
 * scenario follows the slab's layout whatever it is.  Returns the object
 * of that next schedule, not yet scheduled. */
static struct obj *fill_slab(struct fx *f, uint64_t delay)
{
    assert_int_equal(fx_schedule(f, fx_obj(f, TIMER), delay), 0);  /* the first chunk */
    for (;;) {
        struct obj *t = fx_obj(f, TIMER);
        if (f->nobj >= MAXOBJ - 8)
            return t;               /* no allocation in sight: the sweep will say 0 */
        lull__fault_arm(1);
        int rc = fx_schedule(f, t, delay);
        if (lull__fault_fired()) {
            assert_int_equal(rc, -ENOMEM);
            return t;
        }
        assert_int_equal(rc, 0);
    }
}

/* Timers 0 .. n-1 ms out, all pending. */
static void fx_timers(struct fx *f, int n, uint64_t base)
{
    for (int i = 0; i < n; i++)
        assert_int_equal(fx_schedule(f, fx_obj(f, TIMER), base + (uint64_t)i * MS), 0);
}

enum { REG_DEFAULT = 0, REG_EVICT = 1, REG_KEEP_HELD = 2 };

static void fx_registry_opts(struct fx *f, int mode)
{
    memset(&f->ro, 0, sizeof(f->ro));
    f->ro.wheel = f->w;
    f->ro.close = on_close;
    f->ro.close_dependent = on_close_dep;
    f->ro.free = on_free;
    f->ro.ctx = f;
    if (mode & REG_EVICT)
        f->ro.on_reclaim = LULL_EVICT;
    if (mode & REG_KEEP_HELD)
        f->ro.keep_incoming = lull_registry_keep_held;
}

static lull_registry *fx_registry(struct fx *f, int mode)
{
    fx_wheel(f, 0);
    fx_registry_opts(f, mode);
    f->r = lull_registry_create(&f->ro);
    assert_non_null(f->r);
    return f->r;
}

static int fx_claim(struct fx *f, const char *id, struct obj *c)
{
    uint64_t g = 0;
    int rc = lull_registry_claim(f->r, id, LEN(id), c, &g);
    if (rc == 0) {
        assert_true(g != 0);
        c->gen = g;
        c->taken = 1;
    } else {
        assert_true(g == 0);
    }
    return rc;
}

static int fx_attach(struct fx *f, const char *id, struct obj *d)
{
    int rc = lull_registry_attach(f->r, id, LEN(id), d);
    if (rc == 0)
        d->taken = 1;
    return rc;
}

/* id held by a new conn with ndeps dependents; returns the conn. */
static struct obj *hold(struct fx *f, const char *id, int ndeps)
{
    struct obj *c = fx_obj(f, CONN);
    assert_int_equal(fx_claim(f, id, c), 0);
    for (int i = 0; i < ndeps; i++)
        assert_int_equal(fx_attach(f, id, fx_obj(f, DEP)), 0);
    return c;
}

static struct obj *in_grace(struct fx *f, const char *id, int ndeps, uint64_t grace)
{
    struct obj *c = hold(f, id, ndeps);
    assert_int_equal(lull_registry_release_after(f->r, id, LEN(id), c->gen, grace), 0);
    return c;
}

static struct obj *dead(struct fx *f, const char *id, int ndeps)
{
    struct obj *c = hold(f, id, ndeps);
    assert_int_equal(lull_registry_mark_dead(f->r, id, LEN(id), c->gen), 0);
    return c;
}

static int fx_advance_to(struct fx *f, uint64_t ns)
{
    fx_set(f, ns);
    return (int)lull_wheel_advance(f->w);
}

/* ------------------------------------------------------------ the sweep */

/* End of a run: destroy everything, run the wheel to the end of time, and
 * check every object; returns the end state as text. */
static char *fx_end(struct fx *f)
{
    assert_false(lull__fault_fired());
    if (f->r) {
        lull_registry_destroy(f->r);    /* shutdown: what is held is closed; frees run */
        f->r = NULL;
    }
    if (f->w) {
        /* the end of time: a saturated deadline is UINT64_MAX - 1 */
        for (int i = 0; i < 8 && lull_wheel_pending(f->w); i++)
            fx_advance_to(f, UINT64_MAX - 1);
        assert_int_equal(lull_wheel_pending(f->w), 0);
        assert_int_equal(lull_wheel_check(f->w, stderr), 0);
        assert_int_equal(lull_wheel_destroy(f->w, 0), 0);
        f->w = NULL;
    }
    struct sb b = { 0 };
    digest_store(f, &b);
    if (f->s) {
        assert_int_equal(lull_store_destroy(f->s), 0);
        f->s = NULL;
    }
    /* every free has run: destroy ends with a grace period and a barrier */
    for (int i = 0; i < f->nobj; i++) {
        struct obj *o = f->obj[i];
        int want = o->taken ? 1 : 0;
        if (o->kind == TIMER) {
            if (o->fires != (o->taken && !o->cancelled))
                fail_msg("timer %d: %s, fired %d times", i,
                         !o->taken ? "never scheduled" : o->cancelled ? "cancelled" : "pending",
                         o->fires);
        } else if (o->closes != want || geti(&o->frees) != want) {
            fail_msg("%s %d (%s): closed %d times, freed %d times; exactly %d each expected",
                     o->kind == CONN ? "conn" : "dependent", i, o->taken ? "taken" : "never taken",
                     o->closes, geti(&o->frees), want);
        }
    }
    digest_objects(f, &b, true);
    sb_printf(&b, "fired:%s\n", f->firelog.p ? f->firelog.p : "");
    return sb_take(&b);
}

static void fx_free(struct fx *f)
{
    for (int i = 0; i < f->nobj; i++)
        free(f->obj[i]);
    free(f->before);
    free(f->firelog.p);
    vbefore_free(f);
    free(f);
}

typedef void (*scenario_fn)(struct fx *f);

struct scenario {
    const char *name;
    scenario_fn fn;
};

static void sweep(const struct scenario *sc)
{
    struct ref ref = { 0 };
    unsigned failed = 0, absorbed = 0;
    unsigned long n;
    for (n = 0;; n++) {
        assert_true(n < 10000);
        struct fx *f = calloc(1, sizeof(*f));
        assert_non_null(f);
        f->nth = n;
        f->ref = &ref;
        fx_set(f, 1000 * MS);
        CUR = f;
        sc->fn(f);
        assert_int_equal(f->calls, 1);
        char *end = fx_end(f);
        if (n == 0) {
            ref.end = end;
        } else {
            expect_digest(f, "at the end", ref.end, end);
            free(end);
        }
        bool last = n > 0 && !f->fired;
        failed += f->failed;
        absorbed += f->fired && !f->failed;
        CUR = NULL;
        fx_free(f);
        if (last)
            break;
    }
    fprintf(stderr, "  %-44s %3lu allocation point%s: %u -ENOMEM, %u absorbed (returns %d)\n",
            sc->name, n - 1, n - 1 == 1 ? " " : "s", failed, absorbed, ref.rc);
    free(ref.after);
    free(ref.end);
}

/* ------------------------------------------------------------ store scenarios */

static void s_create(struct fx *f)
{
    CALL(f, PTR_RC(f->s = lull_store_create(NULL)));
}

static void s_create_bounded(struct fx *f)
{
    struct lull_store_opts o = { .max_keys = 1000, .max_key_len = 16, .max_value_len = 128 };
    CALL(f, PTR_RC(f->s = lull_store_create(&o)));
}

static void s_put_new(struct fx *f)
{
    fx_store(f, 0, 3);
    CALL(f, lull_store_put(f->s, "new", 3, "value", 5, NULL));
}

static void s_put_replace(struct fx *f)
{
    fx_store(f, 0, 3);
    CALL(f, lull_store_put(f->s, "k1", 2, "another value", 13, NULL));
}

static void s_put_large(struct fx *f)
{
    static char big[5000];
    memset(big, 'b', sizeof big);
    fx_store(f, 0, 3);
    CALL(f, lull_store_put(f->s, "k2", 2, big, sizeof big, NULL));
}

static void s_put_empty(struct fx *f)
{
    fx_store(f, 0, 3);
    CALL(f, lull_store_put(f->s, "empty", 5, NULL, 0, NULL));
}

static void s_put_full(struct fx *f)
{
    fx_store(f, 3, 3);                  /* max_keys reached: -ENOSPC */
    CALL(f, lull_store_put(f->s, "new", 3, "v", 1, NULL));
}

static void s_put_if_insert(struct fx *f)
{
    fx_store(f, 0, 3);
    CALL(f, lull_store_put_if(f->s, "new", 3, "v", 1, 0, NULL));
}

static void s_put_if_replace(struct fx *f)
{
    fx_store(f, 0, 3);
    uint64_t v = fx_version(f, "k1");
    CALL(f, lull_store_put_if(f->s, "k1", 2, "w", 1, v, NULL));
}

static void s_put_if_stale(struct fx *f)
{
    fx_store(f, 0, 3);
    uint64_t v = fx_version(f, "k1");
    assert_int_equal(lull_store_put(f->s, "k1", 2, "x", 1, NULL), 0);
    CALL(f, lull_store_put_if(f->s, "k1", 2, "w", 1, v, NULL));
}

struct upd { size_t len; int ret; };

static int upd_fn(const struct lull_snap *cur, struct lull_buf *next, void *arg)
{
    const struct upd *u = arg;
    (void)cur;
    if (u->ret != LULL_PUBLISH)
        return u->ret;
    int rc = lull_buf_resize(next, u->len);
    if (rc)
        return rc;      /* -ENOMEM: the update returns it, nothing published */
    memset(next->data, 'u', next->len);
    return LULL_PUBLISH;
}

static int fx_update(struct fx *f, const char *key, struct upd u)
{
    struct lull_update_info info;
    int rc = lull_store_update(f->s, key, LEN(key), upd_fn, &u, &info);
    if (rc == 0)
        assert_int_equal(info.attempts, 1);
    return rc;
}

static void s_update_insert(struct fx *f)
{
    fx_store(f, 0, 3);
    CALL(f, fx_update(f, "new", (struct upd){ 10, LULL_PUBLISH }));
}

static void s_update_grow(struct fx *f)
{
    fx_store(f, 0, 3);
    CALL(f, fx_update(f, "k1", (struct upd){ 20000, LULL_PUBLISH }));
}

static void s_update_remove(struct fx *f)
{
    fx_store(f, 0, 3);
    CALL(f, fx_update(f, "k1", (struct upd){ 0, LULL_REMOVE }));
}

static void s_delete(struct fx *f)
{
    fx_store(f, 0, 3);
    CALL(f, lull_store_delete(f->s, "k1", 2));
}

static void s_delete_if(struct fx *f)
{
    fx_store(f, 0, 3);
    uint64_t v = fx_version(f, "k2");
    CALL(f, lull_store_delete_if(f->s, "k2", 2, v));
}

/* The insert that crosses an unlimited store's first growth threshold
 * (1024 buckets): it publishes, then grows the table. */
static void s_growth(struct fx *f)
{
    fx_store(f, 0, 1024);
    CALL(f, lull_store_put(f->s, "k1024", 5, "grow", 4, NULL));
}

/* ------------------------------------------------------------ wheel scenarios */

static void w_create(struct fx *f)
{
    struct lull_wheel_opts o = fx_wheel_opts(f, 0);
    CALL(f, PTR_RC(f->w = lull_wheel_create(&o)));
}

static void w_create_bounded(struct fx *f)
{
    struct lull_wheel_opts o = fx_wheel_opts(f, 10);
    o.tick_ns = 1000;
    CALL(f, PTR_RC(f->w = lull_wheel_create(&o)));
}

static void w_schedule_first(struct fx *f)
{
    fx_wheel(f, 0);
    struct obj *t = fx_obj(f, TIMER);
    CALL(f, fx_schedule(f, t, 5 * MS));
}

/* The slab is full: the next schedule needs a new chunk. */
static void w_schedule_new_chunk(struct fx *f)
{
    fx_wheel(f, 0);
    struct obj *t = fill_slab(f, 20 * MS);
    CALL(f, fx_schedule(f, t, 30 * MS));
}

/* A cancelled timer's slot is reused: no allocation. */
static void w_schedule_reuse(struct fx *f)
{
    fx_wheel(f, 0);
    fx_timers(f, 64, 0);
    assert_int_equal(fx_cancel(f, f->obj[10]), 0);
    struct obj *t = fx_obj(f, TIMER);
    CALL(f, fx_schedule(f, t, 30 * MS));
}

static void w_schedule_full(struct fx *f)
{
    fx_wheel(f, 4);
    fx_timers(f, 4, MS);
    struct obj *t = fx_obj(f, TIMER);
    CALL(f, fx_schedule(f, t, 30 * MS));     /* -ENOSPC */
}

static void w_schedule_far(struct fx *f)
{
    fx_wheel(f, 0);
    fx_timers(f, 3, MS);
    struct obj *t = fx_obj(f, TIMER);
    CALL(f, fx_schedule(f, t, UINT64_MAX));  /* saturates, never wraps */
}

static void w_reschedule(struct fx *f)
{
    fx_wheel(f, 0);
    fx_timers(f, 5, MS);
    CALL_NOFAIL(f, fx_reschedule(f, f->obj[1], 3600 * 1000 * MS));
}

static void w_cancel(struct fx *f)
{
    fx_wheel(f, 0);
    fx_timers(f, 5, MS);
    CALL_NOFAIL(f, fx_cancel(f, f->obj[2]));
}

static void w_advance(struct fx *f)
{
    fx_wheel(f, 0);
    fx_timers(f, 70, 0);
    CALL_NOFAIL(f, fx_advance_to(f, f->clk.now + 3 * MS));
}

/* ------------------------------------------------------------ registry scenarios */

static void r_create(struct fx *f)
{
    fx_wheel(f, 0);
    fx_registry_opts(f, REG_DEFAULT);
    CALL(f, PTR_RC(f->r = lull_registry_create(&f->ro)));
}

static void r_create_limits(struct fx *f)
{
    fx_wheel(f, 0);
    fx_registry_opts(f, REG_EVICT);
    f->ro.max_dependents = 3;
    f->ro.store = (struct lull_store_opts){ .max_keys = 10, .max_key_len = 8 };
    CALL(f, PTR_RC(f->r = lull_registry_create(&f->ro)));
}

static void r_claim_new(struct fx *f)
{
    fx_registry(f, REG_DEFAULT);
    hold(f, "b", 1);
    struct obj *c = fx_obj(f, CONN);
    CALL(f, fx_claim(f, "a", c));
}

/* A live holder loses to the newcomer: closed with LULL_REPLACED, its
 * dependents inherited. */
static void r_claim_replace(struct fx *f)
{
    fx_registry(f, REG_DEFAULT);
    hold(f, "a", 2);
    struct obj *c = fx_obj(f, CONN);
    CALL(f, fx_claim(f, "a", c));
}

/* ... with LULL_EVICT and more dependents than fit the stack: the list of
 * closes is allocated. */
static void r_claim_replace_evict_many(struct fx *f)
{
    fx_registry(f, REG_EVICT);
    hold(f, "a", 20);
    struct obj *c = fx_obj(f, CONN);
    CALL(f, fx_claim(f, "a", c));
}

static void r_claim_kept(struct fx *f)
{
    fx_registry(f, REG_KEEP_HELD);
    hold(f, "a", 1);
    struct obj *c = fx_obj(f, CONN);
    CALL(f, fx_claim(f, "a", c));            /* -EEXIST: no callback for c */
}

static void r_reclaim_grace(struct fx *f)
{
    fx_registry(f, REG_DEFAULT);
    in_grace(f, "a", 2, 100 * MS);
    struct obj *c = fx_obj(f, CONN);
    CALL(f, fx_claim(f, "a", c));
}

static void r_reclaim_grace_evict_many(struct fx *f)
{
    fx_registry(f, REG_EVICT);
    in_grace(f, "a", 20, 100 * MS);
    struct obj *c = fx_obj(f, CONN);
    CALL(f, fx_claim(f, "a", c));
}

static void r_claim_dead(struct fx *f)
{
    fx_registry(f, REG_KEEP_HELD);           /* a dead holder is replaced all the same */
    dead(f, "a", 2);
    struct obj *c = fx_obj(f, CONN);
    CALL(f, fx_claim(f, "a", c));
}

static void r_attach(struct fx *f)
{
    fx_registry(f, REG_DEFAULT);
    hold(f, "a", 2);
    struct obj *d = fx_obj(f, DEP);
    CALL(f, fx_attach(f, "a", d));
}

static void r_attach_grace(struct fx *f)
{
    fx_registry(f, REG_DEFAULT);
    in_grace(f, "a", 1, 100 * MS);
    struct obj *d = fx_obj(f, DEP);
    CALL(f, fx_attach(f, "a", d));
}

static void r_attach_17th(struct fx *f)
{
    fx_registry(f, REG_DEFAULT);
    hold(f, "a", 16);
    struct obj *d = fx_obj(f, DEP);
    CALL(f, fx_attach(f, "a", d));
}

static void r_detach(struct fx *f)
{
    fx_registry(f, REG_DEFAULT);
    hold(f, "a", 3);
    struct obj *d = f->obj[2];
    CALL(f, lull_registry_detach(f->r, "a", 1, d));
}

static void r_release(struct fx *f)
{
    fx_registry(f, REG_DEFAULT);
    struct obj *c = hold(f, "a", 2);
    hold(f, "b", 1);
    CALL(f, lull_registry_release(f->r, "a", 1, c->gen));   /* 1 */
}

static void r_release_many(struct fx *f)
{
    fx_registry(f, REG_DEFAULT);
    struct obj *c = hold(f, "a", 20);
    CALL(f, lull_registry_release(f->r, "a", 1, c->gen));
}

static void r_release_stale(struct fx *f)
{
    fx_registry(f, REG_DEFAULT);
    struct obj *c = hold(f, "a", 1);
    hold(f, "a", 0);                         /* c replaced */
    CALL(f, lull_registry_release(f->r, "a", 1, c->gen));   /* 0: nothing */
}

static void r_release_after(struct fx *f)
{
    fx_registry(f, REG_DEFAULT);
    struct obj *c = hold(f, "a", 2);
    CALL(f, lull_registry_release_after(f->r, "a", 1, c->gen, 50 * MS));
}

static void r_release_after_dead(struct fx *f)
{
    fx_registry(f, REG_DEFAULT);
    struct obj *c = dead(f, "a", 1);
    CALL(f, lull_registry_release_after(f->r, "a", 1, c->gen, 50 * MS));
}

/* The wheel's slab is full: parking the grace timer needs a new chunk (a
 * wheel allocation inside a registry call). */
static void r_release_after_new_chunk(struct fx *f)
{
    fx_registry(f, REG_DEFAULT);
    struct obj *c = hold(f, "a", 1);
    fill_slab(f, 3600 * 1000 * MS);
    CALL(f, lull_registry_release_after(f->r, "a", 1, c->gen, 50 * MS));
}

static void r_mark_dead(struct fx *f)
{
    fx_registry(f, REG_DEFAULT);
    struct obj *c = hold(f, "a", 2);
    CALL(f, lull_registry_mark_dead(f->r, "a", 1, c->gen));
}

/* A grace period ends: the expiry's update allocates; a failure there is
 * retried (docs/registry.md), so the advance still expires the id. */
static void r_expiry(struct fx *f)
{
    fx_registry(f, REG_DEFAULT);
    in_grace(f, "a", 2, 5 * MS);
    in_grace(f, "b", 0, 5 * MS);
    hold(f, "c", 1);
    CALL_NOFAIL(f, fx_advance_to(f, f->clk.now + 5 * MS));
}

/* Shutdown closes everything still held; out of memory it falls back to a
 * buffer reserved at create: never -ENOMEM. */
static void r_shutdown(struct fx *f)
{
    fx_registry(f, REG_DEFAULT);
    hold(f, "a", 2);
    in_grace(f, "b", 1, 100 * MS);
    dead(f, "c", 1);
    hold(f, "d", 20);
    CALL_NOFAIL(f, lull_registry_shutdown(f->r, 0));
}

/* ------------------------------------------------------------ main */

#define SC(fn) { #fn, fn }
static const struct scenario STORE[] = {
    SC(s_create), SC(s_create_bounded), SC(s_put_new), SC(s_put_replace), SC(s_put_large),
    SC(s_put_empty), SC(s_put_full), SC(s_put_if_insert), SC(s_put_if_replace),
    SC(s_put_if_stale), SC(s_update_insert), SC(s_update_grow), SC(s_update_remove),
    SC(s_delete), SC(s_delete_if), SC(s_growth),
};
static const struct scenario WHEEL[] = {
    SC(w_create), SC(w_create_bounded), SC(w_schedule_first), SC(w_schedule_new_chunk),
    SC(w_schedule_reuse), SC(w_schedule_full), SC(w_schedule_far), SC(w_reschedule),
    SC(w_cancel), SC(w_advance),
};
static const struct scenario REGISTRY[] = {
    SC(r_create), SC(r_create_limits), SC(r_claim_new), SC(r_claim_replace),
    SC(r_claim_replace_evict_many), SC(r_claim_kept), SC(r_reclaim_grace),
    SC(r_reclaim_grace_evict_many), SC(r_claim_dead), SC(r_attach), SC(r_attach_grace),
    SC(r_attach_17th), SC(r_detach), SC(r_release), SC(r_release_many), SC(r_release_stale),
    SC(r_release_after), SC(r_release_after_dead), SC(r_release_after_new_chunk),
    SC(r_mark_dead), SC(r_expiry), SC(r_shutdown),
};

static void sweep_all(const struct scenario *v, size_t n)
{
    const char *only = getenv("LT_SCENARIO");   /* run one scenario by name */
    for (size_t i = 0; i < n; i++)
        if (!only || strcmp(only, v[i].name) == 0)
            sweep(&v[i]);
}

static void test_store_faults(void **state)
{
    (void)state;
    sweep_all(STORE, sizeof STORE / sizeof *STORE);
}

static void test_wheel_faults(void **state)
{
    (void)state;
    sweep_all(WHEEL, sizeof WHEEL / sizeof *WHEEL);
}

static void test_registry_faults(void **state)
{
    (void)state;
    sweep_all(REGISTRY, sizeof REGISTRY / sizeof *REGISTRY);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store_faults),
        cmocka_unit_test(test_wheel_faults),
        cmocka_unit_test(test_registry_faults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
