/* tests/registry/test_registry.c - unit tests of the registry on a virtual
 * clock: a wheel with clock = lt_clock_read, advanced by hand, so every
 * grace period ends exactly when the test says. */
#include "reg_testlib.h"
#include "registry_internal.h"   /* lull__registry_test_lose_cancel */

#include <pthread.h>

#define MS 1000000ull

struct fx {
    struct lt_clock clk;
    lull_wheel *w;
    lull_registry *r;
    struct rt t;
    struct ro *objs[512];
    int nobjs;
};

enum { FX_DEFAULT = 0, FX_EVICT = 1, FX_KEEP_HELD = 2, FX_COUNT_INCOMING = 4, FX_MAXDEPS2 = 8 };

static struct fx *fx_new(int mode)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    struct lull_wheel_opts wo = { .tick_ns = MS, .clock = lt_clock_read, .clock_ctx = &f->clk };
    f->w = lull_wheel_create(&wo);
    assert_non_null(f->w);
    struct lull_registry_opts o = rt_opts(&f->t, f->w);
    if (mode & FX_EVICT)
        o.on_reclaim = LULL_EVICT;
    if (mode & FX_KEEP_HELD)
        o.keep_incoming = rt_rule_count_held;
    if (mode & FX_COUNT_INCOMING)
        o.keep_incoming = rt_rule_count_incoming;
    if (mode & FX_MAXDEPS2)
        o.max_dependents = 2;
    f->r = lull_registry_create(&o);
    assert_non_null(f->r);
    f->t.r = f->r;
    return f;
}

static struct ro *fx_obj(struct fx *f, int kind)
{
    assert_true(f->nobjs < 512);
    struct ro *o = ro_new(f->nobjs, kind);
    f->objs[f->nobjs++] = o;
    return o;
}
#define CONN(f) fx_obj(f, 0)
#define DEP(f)  fx_obj(f, 1)

static int fx_claim(struct fx *f, const char *id, struct ro *c, uint64_t *gen)
{
    int rc = lull_registry_claim(f->r, id, strlen(id), c, gen);
    if (rc == 0)
        c->accepted = 1;
    return rc;
}

static int fx_attach(struct fx *f, const char *id, struct ro *d)
{
    int rc = lull_registry_attach(f->r, id, strlen(id), d);
    if (rc == 0)
        d->attached = 1;
    return rc;
}

static void fx_at(struct fx *f, uint64_t ms)
{
    __atomic_store_n(&f->clk.now, ms * MS, __ATOMIC_RELEASE);
    lull_wheel_advance(f->w);
}

static void fx_check(struct fx *f)
{
    assert_int_equal(lull_registry_check(f->r, stderr), 0);
}

static int fx_lookup(struct fx *f, const char *id, void **conn, uint64_t *gen)
{
    return lull_registry_lookup(f->r, id, strlen(id), conn, gen);
}

/* Destroy, then every object: accepted/attached closed and freed exactly
 * once, the others never; no callback after shutdown. */
static void fx_end(struct fx *f)
{
    fx_check(f);
    lull_registry_destroy(f->r);
    assert_int_equal(lull_wheel_destroy(f->w, 0), 0);
    for (int i = 0; i < f->nobjs; i++) {
        ro_check_final(f->objs[i]);
        free(f->objs[i]);
    }
    assert_int_equal(ro_get(&f->t.late_callbacks), 0);
    free(f);
}

/* ------------------------------------------------------------ claim */

static void test_claim_free_id(void **state)
{
    (void)state;
    struct fx *f = fx_new(FX_COUNT_INCOMING);
    struct ro *a = CONN(f);
    uint64_t g = 0, g2 = 0;
    void *c = NULL;
    assert_int_equal(fx_claim(f, "node", a, &g), 0);
    assert_true(g != 0);
    assert_int_equal(fx_lookup(f, "node", &c, &g2), 0);
    assert_ptr_equal(c, a);
    assert_true(g2 == g);
    assert_int_equal(ro_get(&f->t.nrule), 0);          /* free id: rule not asked */
    assert_int_equal(ro_get(&a->closes), 0);
    assert_int_equal(fx_lookup(f, "other", &c, NULL), -ENOENT);
    fx_check(f);
    fx_end(f);
}

static void test_keep_held(void **state)
{
    (void)state;
    struct fx *f = fx_new(FX_KEEP_HELD);
    struct ro *a = CONN(f), *b = CONN(f);
    uint64_t ga, gb = 0;
    void *c;
    assert_int_equal(fx_claim(f, "node", a, &ga), 0);
    assert_int_equal(fx_claim(f, "node", b, &gb), -EEXIST);
    assert_true(gb == 0);                               /* untouched on failure */
    assert_true(ro_get(&f->t.nrule) >= 1);
    assert_int_equal(ro_get(&a->closes), 0);
    assert_int_equal(ro_get(&b->closes), 0);            /* rejected: no callback */
    assert_int_equal(fx_lookup(f, "node", &c, NULL), 0);
    assert_ptr_equal(c, a);
    fx_end(f);
    /* b was never accepted: fx_end checked it got no close and no free */
}

static void test_keep_incoming(void **state)
{
    (void)state;
    struct fx *f = fx_new(FX_COUNT_INCOMING);
    struct ro *a = CONN(f), *b = CONN(f);
    uint64_t ga, gb, g;
    void *c;
    assert_int_equal(fx_claim(f, "node", a, &ga), 0);
    assert_int_equal(fx_claim(f, "node", b, &gb), 0);
    assert_true(gb != ga && gb != 0);
    assert_true(ro_get(&f->t.nrule) >= 1);
    assert_int_equal(ro_get(&a->closes), 1);
    assert_int_equal(ro_get(&a->why), LULL_REPLACED);
    assert_int_equal(ro_get(&b->closes), 0);
    assert_int_equal(fx_lookup(f, "node", &c, &g), 0);
    assert_ptr_equal(c, b);
    assert_true(g == gb);
    /* the replaced generation no longer holds the id */
    assert_int_equal(lull_registry_release(f->r, "node", 4, ga), 0);
    assert_int_equal(ro_get(&b->closes), 0);
    fx_end(f);
}

/* The ready-made rules, and a NULL rule, behave as documented. */
static void test_ready_made_rules(void **state)
{
    (void)state;
    struct ro x = { .magic = RO_MAGIC };
    assert_false(lull_registry_keep_held("a", 1, &x, &x, NULL));
    assert_true(lull_registry_keep_incoming("a", 1, &x, &x, NULL));

    struct fx *f = fx_new(FX_DEFAULT);                  /* keep_incoming NULL */
    struct ro *a = CONN(f), *b = CONN(f);
    assert_int_equal(fx_claim(f, "n", a, NULL), 0);
    assert_int_equal(fx_claim(f, "n", b, NULL), 0);
    assert_int_equal(ro_get(&a->why), LULL_REPLACED);
    fx_end(f);
}

/* ------------------------------------------------------------ release */

static void test_release(void **state)
{
    (void)state;
    struct fx *f = fx_new(FX_DEFAULT);
    struct ro *a = CONN(f), *b = CONN(f), *d1 = DEP(f), *d2 = DEP(f);
    uint64_t ga, gb;

    /* never existed: on an absent id and with a made-up generation */
    assert_int_equal(lull_registry_release(f->r, "node", 4, 12345), 0);
    assert_int_equal(fx_claim(f, "node", a, &ga), 0);
    assert_int_equal(lull_registry_release(f->r, "node", 4, ga + 1000000), 0);
    assert_int_equal(ro_get(&a->closes), 0);

    /* superseded: the successor is untouched */
    assert_int_equal(fx_claim(f, "node", b, &gb), 0);
    assert_int_equal(fx_attach(f, "node", d1), 0);
    assert_int_equal(lull_registry_release(f->r, "node", 4, ga), 0);
    assert_int_equal(ro_get(&b->closes), 0);
    assert_int_equal(ro_get(&d1->closes), 0);
    assert_int_equal(fx_lookup(f, "node", NULL, NULL), 0);

    /* the holder's generation: conn and dependents closed RELEASED, id gone */
    assert_int_equal(fx_attach(f, "node", d2), 0);
    assert_int_equal(lull_registry_release(f->r, "node", 4, gb), 1);
    assert_int_equal(ro_get(&b->closes), 1);
    assert_int_equal(ro_get(&b->why), LULL_RELEASED);
    assert_int_equal(ro_get(&d1->why), LULL_RELEASED);
    assert_int_equal(ro_get(&d2->why), LULL_RELEASED);
    assert_int_equal(fx_lookup(f, "node", NULL, NULL), -ENOENT);
    assert_int_equal(lull_registry_release(f->r, "node", 4, gb), 0);    /* twice: 0 */
    assert_int_equal(ro_get(&b->closes), 1);
    fx_check(f);
    fx_end(f);
}

/* ------------------------------------------------------------ grace */

static void test_grace_reclaim_inherit(void **state)
{
    (void)state;
    struct fx *f = fx_new(FX_COUNT_INCOMING);
    struct ro *a = CONN(f), *b = CONN(f), *d1 = DEP(f), *d2 = DEP(f);
    uint64_t ga, gb;
    void *deps[4];
    size_t n;

    fx_at(f, 0);
    assert_int_equal(fx_claim(f, "node", a, &ga), 0);
    assert_int_equal(fx_attach(f, "node", d1), 0);
    assert_int_equal(lull_registry_release_after(f->r, "node", 4, ga, 100 * MS), 0);
    assert_int_equal(ro_get(&a->closes), 1);            /* closed now */
    assert_int_equal(ro_get(&a->why), LULL_RELEASED);
    assert_int_equal(ro_get(&d1->closes), 0);           /* dependents stay */
    assert_int_equal(fx_lookup(f, "node", NULL, NULL), -EAGAIN);
    assert_int_equal(lull_registry_release_after(f->r, "node", 4, ga, 100 * MS), -ESTALE);
    assert_int_equal(lull_registry_release(f->r, "node", 4, ga), 0);    /* in grace: not held */
    fx_check(f);

    fx_at(f, 50);
    assert_int_equal(fx_attach(f, "node", d2), 0);      /* attached during grace */
    assert_int_equal(fx_claim(f, "node", b, &gb), 0);   /* reclaim */
    assert_int_equal(ro_get(&f->t.nrule), 0);           /* grace: rule not asked */
    assert_true(gb != ga);
    assert_int_equal(lull_registry_dependents(f->r, "node", 4, deps, 4, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(ro_get(&d1->closes) + ro_get(&d2->closes), 0);
    assert_int_equal(lull_wheel_pending(f->w), 0);      /* the grace timer was cancelled */

    fx_at(f, 500);                                      /* past the old deadline */
    void *c;
    assert_int_equal(fx_lookup(f, "node", &c, NULL), 0);
    assert_ptr_equal(c, b);
    assert_int_equal(ro_get(&d1->closes) + ro_get(&d2->closes), 0);
    assert_int_equal(ro_get(&b->closes), 0);
    fx_check(f);
    fx_end(f);
    /* shutdown closed b, d1, d2 with LULL_SHUTDOWN (fx_end: exactly once) */
}

static void test_grace_reclaim_evict(void **state)
{
    (void)state;
    struct fx *f = fx_new(FX_EVICT);
    struct ro *a = CONN(f), *b = CONN(f), *d1 = DEP(f), *d2 = DEP(f);
    uint64_t ga, gb;
    size_t n = 99;

    fx_at(f, 0);
    assert_int_equal(fx_claim(f, "node", a, &ga), 0);
    assert_int_equal(fx_attach(f, "node", d1), 0);
    assert_int_equal(lull_registry_release_after(f->r, "node", 4, ga, 100 * MS), 0);
    assert_int_equal(fx_attach(f, "node", d2), 0);
    assert_int_equal(fx_claim(f, "node", b, &gb), 0);
    assert_int_equal(ro_get(&d1->closes), 1);
    assert_int_equal(ro_get(&d1->why), LULL_REPLACED);
    assert_int_equal(ro_get(&d2->closes), 1);
    assert_int_equal(ro_get(&d2->why), LULL_REPLACED);
    assert_int_equal(lull_registry_dependents(f->r, "node", 4, NULL, 0, &n), 0);
    assert_int_equal(n, 0);
    fx_at(f, 200);
    assert_int_equal(ro_get(&b->closes), 0);
    fx_end(f);
}

/* EVICT applies to every take-over: from a live loser and from a zombie too. */
static void test_evict_on_replace(void **state)
{
    (void)state;
    struct fx *f = fx_new(FX_EVICT);
    struct ro *a = CONN(f), *b = CONN(f), *c = CONN(f), *d1 = DEP(f), *d2 = DEP(f);
    uint64_t gb;
    assert_int_equal(fx_claim(f, "n", a, NULL), 0);
    assert_int_equal(fx_attach(f, "n", d1), 0);
    assert_int_equal(fx_claim(f, "n", b, &gb), 0);
    assert_int_equal(ro_get(&d1->why), LULL_REPLACED);
    assert_int_equal(fx_attach(f, "n", d2), 0);
    assert_int_equal(lull_registry_mark_dead(f->r, "n", 1, gb), 0);
    assert_int_equal(fx_claim(f, "n", c, NULL), 0);
    assert_int_equal(ro_get(&d2->why), LULL_REPLACED);
    assert_int_equal(ro_get(&b->why), LULL_REPLACED);
    fx_end(f);
}

static void test_grace_expiry(void **state)
{
    (void)state;
    struct fx *f = fx_new(FX_DEFAULT);
    struct ro *a = CONN(f), *d1 = DEP(f), *d2 = DEP(f);
    uint64_t ga;

    fx_at(f, 0);
    assert_int_equal(fx_claim(f, "node", a, &ga), 0);
    assert_int_equal(fx_attach(f, "node", d1), 0);
    assert_int_equal(lull_registry_release_after(f->r, "node", 4, ga, 50 * MS), 0);
    assert_int_equal(fx_attach(f, "node", d2), 0);
    fx_at(f, 49);                                       /* never early */
    assert_int_equal(fx_lookup(f, "node", NULL, NULL), -EAGAIN);
    assert_int_equal(ro_get(&d1->closes), 0);
    fx_at(f, 50);
    assert_int_equal(fx_lookup(f, "node", NULL, NULL), -ENOENT);
    assert_int_equal(ro_get(&d1->closes), 1);
    assert_int_equal(ro_get(&d1->why), LULL_EXPIRED);
    assert_int_equal(ro_get(&d2->closes), 1);
    assert_int_equal(ro_get(&d2->why), LULL_EXPIRED);
    assert_int_equal(ro_get(&a->closes), 1);            /* only its release close */
    assert_int_equal(ro_get(&f->t.ncloses[LULL_EXPIRED]), 0);
    assert_int_equal(lull_wheel_pending(f->w), 0);
    /* the id is free again */
    struct ro *b = CONN(f);
    assert_int_equal(fx_claim(f, "node", b, NULL), 0);
    fx_check(f);
    fx_end(f);
}

/* An id in grace with no dependents still expires (and is removed). */
static void test_grace_expiry_no_deps(void **state)
{
    (void)state;
    struct fx *f = fx_new(FX_DEFAULT);
    struct ro *a = CONN(f);
    uint64_t ga;
    fx_at(f, 0);
    assert_int_equal(fx_claim(f, "x", a, &ga), 0);
    assert_int_equal(lull_registry_release_after(f->r, "x", 1, ga, 0), 0);  /* delay 0 */
    assert_int_equal(fx_lookup(f, "x", NULL, NULL), -EAGAIN);
    fx_at(f, 0);
    assert_int_equal(fx_lookup(f, "x", NULL, NULL), -ENOENT);
    fx_end(f);
}

/* A second grace period replaces the first: the first deadline passing does
 * nothing.  With lull__registry_test_lose_cancel the reclaim "loses" the
 * race against the fire (as it may under concurrency): the first timer stays
 * armed and fires, stale, in the middle of the second grace period. */
static void grace_twice(bool lose_cancel)
{
    struct fx *f = fx_new(FX_DEFAULT);
    struct ro *a = CONN(f), *b = CONN(f), *d1 = DEP(f);
    uint64_t ga, gb;

    __atomic_store_n(&lull__registry_test_lose_cancel, lose_cancel, __ATOMIC_RELAXED);
    fx_at(f, 0);
    assert_int_equal(fx_claim(f, "node", a, &ga), 0);
    assert_int_equal(fx_attach(f, "node", d1), 0);
    assert_int_equal(lull_registry_release_after(f->r, "node", 4, ga, 100 * MS), 0);
    fx_at(f, 10);
    assert_int_equal(fx_claim(f, "node", b, &gb), 0);           /* reclaim */
    assert_int_equal(lull_wheel_pending(f->w), lose_cancel ? 1 : 0);
    fx_at(f, 20);
    assert_int_equal(lull_registry_release_after(f->r, "node", 4, gb, 200 * MS), 0);  /* to 220 */
    fx_at(f, 100);                                              /* first deadline */
    fx_at(f, 150);
    assert_int_equal(fx_lookup(f, "node", NULL, NULL), -EAGAIN);    /* still in grace */
    assert_int_equal(ro_get(&d1->closes), 0);
    assert_int_equal(lull_wheel_pending(f->w), 1);
    fx_check(f);
    fx_at(f, 219);
    assert_int_equal(ro_get(&d1->closes), 0);
    fx_at(f, 220);
    assert_int_equal(fx_lookup(f, "node", NULL, NULL), -ENOENT);
    assert_int_equal(ro_get(&d1->closes), 1);
    assert_int_equal(ro_get(&d1->why), LULL_EXPIRED);
    __atomic_store_n(&lull__registry_test_lose_cancel, false, __ATOMIC_RELAXED);
    fx_end(f);
}

static void test_grace_twice(void **state)
{
    (void)state;
    grace_twice(false);
}

static void test_grace_twice_stale_fire(void **state)
{
    (void)state;
    grace_twice(true);
}

/* A stale fire after a reclaim (lost cancel) leaves the live holder alone. */
static void test_stale_fire_after_reclaim(void **state)
{
    (void)state;
    struct fx *f = fx_new(FX_DEFAULT);
    struct ro *a = CONN(f), *b = CONN(f), *d = DEP(f);
    uint64_t ga;
    __atomic_store_n(&lull__registry_test_lose_cancel, true, __ATOMIC_RELAXED);
    fx_at(f, 0);
    assert_int_equal(fx_claim(f, "n", a, &ga), 0);
    assert_int_equal(fx_attach(f, "n", d), 0);
    assert_int_equal(lull_registry_release_after(f->r, "n", 1, ga, 30 * MS), 0);
    assert_int_equal(fx_claim(f, "n", b, NULL), 0);
    __atomic_store_n(&lull__registry_test_lose_cancel, false, __ATOMIC_RELAXED);
    fx_at(f, 30);                                       /* the stale fire */
    assert_int_equal(lull_wheel_pending(f->w), 0);
    void *c;
    assert_int_equal(fx_lookup(f, "n", &c, NULL), 0);
    assert_ptr_equal(c, b);
    assert_int_equal(ro_get(&d->closes), 0);
    assert_int_equal(ro_get(&b->closes), 0);
    fx_end(f);
}

static void test_stale_generation_does_nothing(void **state)
{
    (void)state;
    struct fx *f = fx_new(FX_DEFAULT);
    struct ro *a = CONN(f), *b = CONN(f);
    uint64_t ga, gb;
    fx_at(f, 0);
    assert_int_equal(lull_registry_release_after(f->r, "n", 1, 77, MS), -ESTALE);   /* absent */
    assert_int_equal(lull_registry_mark_dead(f->r, "n", 1, 77), -ESTALE);
    assert_int_equal(fx_claim(f, "n", a, &ga), 0);
    assert_int_equal(fx_claim(f, "n", b, &gb), 0);      /* a replaced */
    assert_int_equal(lull_registry_release_after(f->r, "n", 1, ga, MS), -ESTALE);
    assert_int_equal(lull_registry_mark_dead(f->r, "n", 1, ga), -ESTALE);
    assert_int_equal(lull_registry_release_after(f->r, "n", 1, gb + 1, MS), -ESTALE);
    assert_int_equal(lull_wheel_pending(f->w), 0);      /* nothing armed */
    void *c;
    assert_int_equal(fx_lookup(f, "n", &c, NULL), 0);   /* b untouched, still live */
    assert_ptr_equal(c, b);
    assert_int_equal(ro_get(&b->closes), 0);
    assert_int_equal(ro_get(&a->closes), 1);
    /* in grace, the released generation holds nothing either */
    assert_int_equal(lull_registry_release_after(f->r, "n", 1, gb, 10 * MS), 0);
    assert_int_equal(lull_registry_mark_dead(f->r, "n", 1, gb), -ESTALE);
    assert_int_equal(lull_registry_release_after(f->r, "n", 1, gb, MS), -ESTALE);
    assert_int_equal(lull_wheel_pending(f->w), 1);
    fx_at(f, 10);
    assert_int_equal(fx_lookup(f, "n", NULL, NULL), -ENOENT);
    fx_end(f);
}

/* ------------------------------------------------------------ zombies */

static void test_zombie_replaced_without_rule(void **state)
{
    (void)state;
    struct fx *f = fx_new(FX_KEEP_HELD);                /* the rule would refuse */
    struct ro *a = CONN(f), *b = CONN(f), *c = CONN(f), *d = DEP(f);
    uint64_t ga, gb;
    void *p;
    assert_int_equal(fx_claim(f, "n", a, &ga), 0);
    assert_int_equal(fx_attach(f, "n", d), 0);
    assert_int_equal(lull_registry_mark_dead(f->r, "n", 1, ga), 0);
    assert_int_equal(lull_registry_mark_dead(f->r, "n", 1, ga), 0);   /* twice: 0 */
    assert_int_equal(fx_lookup(f, "n", &p, NULL), -ENOENT);
    assert_int_equal(ro_get(&a->closes), 0);            /* not closed by mark_dead */
    assert_int_equal(fx_attach(f, "n", DEP(f)), 0);     /* a dead holder still holds */
    fx_check(f);
    assert_int_equal(fx_claim(f, "n", b, &gb), 0);
    assert_int_equal(ro_get(&f->t.nrule), 0);           /* not asked */
    assert_int_equal(ro_get(&a->closes), 1);
    assert_int_equal(ro_get(&a->why), LULL_REPLACED);
    assert_int_equal(ro_get(&d->closes), 0);            /* inherited */
    /* now a live holder: the rule is asked, and keeps it */
    assert_int_equal(fx_claim(f, "n", c, NULL), -EEXIST);
    assert_true(ro_get(&f->t.nrule) >= 1);
    /* a zombie released: closed RELEASED */
    assert_int_equal(lull_registry_mark_dead(f->r, "n", 1, gb), 0);
    assert_int_equal(lull_registry_release(f->r, "n", 1, gb), 1);
    assert_int_equal(ro_get(&b->why), LULL_RELEASED);
    fx_end(f);
}

/* ------------------------------------------------------------ dependents */

static void test_dependents(void **state)
{
    (void)state;
    struct fx *f = fx_new(FX_MAXDEPS2);
    struct ro *a = CONN(f), *d1 = DEP(f), *d2 = DEP(f), *d3 = DEP(f);
    void *buf[2];
    size_t n = 0;
    assert_int_equal(fx_attach(f, "n", d1), -ENOENT);
    assert_int_equal(lull_registry_detach(f->r, "n", 1, d1), -ENOENT);
    assert_int_equal(lull_registry_dependents(f->r, "n", 1, buf, 2, &n), -ENOENT);
    assert_int_equal(fx_claim(f, "n", a, NULL), 0);
    assert_int_equal(fx_attach(f, "n", d1), 0);
    assert_int_equal(lull_registry_attach(f->r, "n", 1, d1), -EEXIST);
    assert_int_equal(fx_attach(f, "n", d2), 0);
    assert_int_equal(lull_registry_attach(f->r, "n", 1, d3), -ENOSPC);
    assert_int_equal(lull_registry_dependents(f->r, "n", 1, buf, 1, &n), -ENOBUFS);
    assert_int_equal(n, 2);
    assert_int_equal(lull_registry_dependents(f->r, "n", 1, buf, 2, &n), 0);
    assert_int_equal(n, 2);
    assert_true((buf[0] == d1 && buf[1] == d2) || (buf[0] == d2 && buf[1] == d1));
    assert_int_equal(lull_registry_detach(f->r, "n", 1, d1), 0);
    assert_int_equal(ro_get(&d1->closes), 1);
    assert_int_equal(ro_get(&d1->why), LULL_RELEASED);
    assert_int_equal(lull_registry_detach(f->r, "n", 1, d1), -ENOENT);
    assert_int_equal(ro_get(&d1->closes), 1);
    assert_int_equal(fx_attach(f, "n", d3), 0);         /* room again */
    assert_int_equal(ro_get(&d3->closes), 0);
    fx_check(f);
    fx_end(f);
}

/* A record past store.max_value_len is -ENOSPC, not a crash. */
static void test_dependents_value_limit(void **state)
{
    (void)state;
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    struct lull_wheel_opts wo = { .tick_ns = MS, .clock = lt_clock_read, .clock_ctx = &f->clk };
    f->w = lull_wheel_create(&wo);
    struct lull_registry_opts o = rt_opts(&f->t, f->w);
    o.store.max_value_len = 40 + 2 * 16;
    f->r = lull_registry_create(&o);
    assert_non_null(f->r);
    struct ro *a = CONN(f);
    assert_int_equal(fx_claim(f, "n", a, NULL), 0);
    assert_int_equal(fx_attach(f, "n", DEP(f)), 0);
    assert_int_equal(fx_attach(f, "n", DEP(f)), 0);
    assert_int_equal(fx_attach(f, "n", DEP(f)), -ENOSPC);
    o.store.max_value_len = 39;
    errno = 0;
    assert_null(lull_registry_create(&o));
    assert_int_equal(errno, EINVAL);
    fx_end(f);
}

/* More dependents than a decision holds on the stack (16): the heap path. */
static void test_many_dependents(void **state)
{
    (void)state;
    struct fx *f = fx_new(FX_DEFAULT);
    struct ro *a = CONN(f), *b = CONN(f);
    uint64_t ga;
    fx_at(f, 0);
    assert_int_equal(fx_claim(f, "n", a, &ga), 0);
    for (int i = 0; i < 40; i++)
        assert_int_equal(fx_attach(f, "n", DEP(f)), 0);
    assert_int_equal(lull_registry_release_after(f->r, "n", 1, ga, 5 * MS), 0);
    fx_at(f, 5);
    assert_int_equal(ro_get(&f->t.ndep_closes[LULL_EXPIRED]), 40);
    assert_int_equal(fx_claim(f, "n", b, &ga), 0);
    for (int i = 0; i < 40; i++)
        assert_int_equal(fx_attach(f, "n", DEP(f)), 0);
    assert_int_equal(lull_registry_release(f->r, "n", 1, ga), 1);
    assert_int_equal(ro_get(&f->t.ndep_closes[LULL_RELEASED]), 40);
    assert_int_equal(fx_claim(f, "n", CONN(f), NULL), 0);
    for (int i = 0; i < 40; i++)
        assert_int_equal(fx_attach(f, "n", DEP(f)), 0);
    fx_end(f);                                          /* 40 more closed by shutdown */
}

/* ------------------------------------------------------------ free */

/* free runs after the close and a grace period: a conn read in a section
 * stays valid until the unlock, even when released meanwhile. */
static void test_free_after_grace_period(void **state)
{
    (void)state;
    struct fx *f = fx_new(FX_DEFAULT);
    struct ro *a = CONN(f);
    uint64_t ga;
    void *c;
    assert_int_equal(fx_claim(f, "n", a, &ga), 0);
    lull_read_lock();
    assert_int_equal(fx_lookup(f, "n", &c, NULL), 0);
    assert_int_equal(lull_registry_release(f->r, "n", 1, ga), 1);   /* inside the section */
    assert_int_equal(ro_get(&a->closes), 1);
    struct timespec ts = { 0, 20 * 1000 * 1000 };
    nanosleep(&ts, NULL);
    assert_int_equal(ro_get(&((struct ro *)c)->frees), 0);          /* still valid */
    lull_read_unlock();
    assert_int_equal(lull_barrier(), 0);
    assert_int_equal(ro_get(&a->frees), 1);
    fx_end(f);
}

/* ------------------------------------------------------------ re-entry */

static struct fx *g_fx;

/* From inside a close: lookups, claims and releases of the same registry
 * work; shutdown answers -EDEADLK instead of waiting for itself. */
static void reenter(struct rt *t, struct ro *o, enum lull_reason why)
{
    lull_registry *r = t->r;
    uint64_t g;
    void *c;
    if (o->kind != 0)
        return;
    LT_CHECK(lull_registry_shutdown(r, 0) == -EDEADLK);
    if (why == LULL_SHUTDOWN) {
        LT_CHECK(lull_registry_claim(r, "z", 1, o, &g) == -ESHUTDOWN);
        return;
    }
    LT_CHECK(lull_registry_lookup(r, "n", 1, &c, &g) == 0);
    if (why != LULL_REPLACED)
        return;
    struct ro *other = CONN(g_fx);
    LT_CHECK(fx_claim(g_fx, "other", other, &g) == 0);
    LT_CHECK(lull_registry_release(r, "other", 5, g) == 1);    /* closes other in here */
    LT_CHECK(ro_get(&other->closes) == 1);
}

static void test_callback_reentry(void **state)
{
    (void)state;
    struct fx *f = fx_new(FX_DEFAULT);
    g_fx = f;
    f->t.on_close = reenter;
    struct ro *a = CONN(f), *b = CONN(f), *c = CONN(f);
    uint64_t gc;
    assert_int_equal(fx_claim(f, "n", a, NULL), 0);
    assert_int_equal(fx_claim(f, "n", b, NULL), 0);     /* a closed REPLACED: re-enters */
    assert_int_equal(ro_get(&a->closes), 1);
    assert_int_equal(ro_get(&f->t.ncloses[LULL_RELEASED]), 1);     /* "other" */
    assert_int_equal(fx_claim(f, "m", c, &gc), 0);
    assert_int_equal(lull_registry_release(f->r, "m", 1, gc), 1);
    assert_int_equal(ro_get(&f->t.ncloses[LULL_RELEASED]), 2);
    fx_end(f);                                          /* b: SHUTDOWN, re-enters too */
    g_fx = NULL;
}

/* ------------------------------------------------------------ shutdown */

static void test_shutdown(void **state)
{
    (void)state;
    struct fx *f = fx_new(FX_DEFAULT);
    struct ro *held = CONN(f), *dead = CONN(f), *gone = CONN(f);
    struct ro *dh = DEP(f), *dd = DEP(f), *dg = DEP(f);
    uint64_t g1, g2, g3;
    fx_at(f, 0);
    assert_int_equal(fx_claim(f, "held", held, &g1), 0);
    assert_int_equal(fx_attach(f, "held", dh), 0);
    assert_int_equal(fx_claim(f, "dead", dead, &g2), 0);
    assert_int_equal(fx_attach(f, "dead", dd), 0);
    assert_int_equal(lull_registry_mark_dead(f->r, "dead", 4, g2), 0);
    assert_int_equal(fx_claim(f, "grace", gone, &g3), 0);
    assert_int_equal(fx_attach(f, "grace", dg), 0);
    assert_int_equal(lull_registry_release_after(f->r, "grace", 5, g3, 100 * MS), 0);
    assert_int_equal(lull_wheel_pending(f->w), 1);

    assert_int_equal(lull_registry_shutdown(f->r, 0), 0);
    __atomic_store_n(&f->t.after_shutdown, 1, __ATOMIC_RELEASE);
    assert_int_equal(lull_wheel_pending(f->w), 0);      /* grace timer cancelled */
    /* everything still held closed once, with LULL_SHUTDOWN, and freed */
    assert_int_equal(ro_get(&held->why), LULL_SHUTDOWN);
    assert_int_equal(ro_get(&dead->why), LULL_SHUTDOWN);
    assert_int_equal(ro_get(&gone->why), LULL_RELEASED);
    assert_int_equal(ro_get(&dh->why), LULL_SHUTDOWN);
    assert_int_equal(ro_get(&dd->why), LULL_SHUTDOWN);
    assert_int_equal(ro_get(&dg->why), LULL_SHUTDOWN);
    for (int i = 0; i < f->nobjs; i++) {
        assert_int_equal(ro_get(&f->objs[i]->closes), 1);
        assert_int_equal(ro_get(&f->objs[i]->frees), 1);   /* before shutdown returned */
    }
    fx_check(f);

    /* every later call: -ESHUTDOWN */
    struct ro *late = CONN(f);
    void *buf[2];
    size_t n;
    assert_int_equal(lull_registry_claim(f->r, "x", 1, late, &g1), -ESHUTDOWN);
    assert_int_equal(lull_registry_release(f->r, "held", 4, g1), -ESHUTDOWN);
    assert_int_equal(lull_registry_release_after(f->r, "held", 4, g1, 1), -ESHUTDOWN);
    assert_int_equal(lull_registry_mark_dead(f->r, "held", 4, g1), -ESHUTDOWN);
    assert_int_equal(lull_registry_lookup(f->r, "held", 4, NULL, NULL), -ESHUTDOWN);
    assert_int_equal(lull_registry_attach(f->r, "held", 4, late), -ESHUTDOWN);
    assert_int_equal(lull_registry_detach(f->r, "held", 4, dh), -ESHUTDOWN);
    assert_int_equal(lull_registry_dependents(f->r, "held", 4, buf, 2, &n), -ESHUTDOWN);
    assert_int_equal(lull_registry_shutdown(f->r, 0), -ESHUTDOWN);

    /* the clock moves on: no expiry */
    fx_at(f, 1000);
    assert_int_equal(ro_get(&dg->closes), 1);
    assert_int_equal(ro_get(&f->t.ndep_closes[LULL_EXPIRED]), 0);
    fx_end(f);
}

/* shutdown inside a read-side section: -EDEADLK and nothing changed. */
static void test_shutdown_in_section(void **state)
{
    (void)state;
    struct fx *f = fx_new(FX_DEFAULT);
    struct ro *a = CONN(f);
    assert_int_equal(fx_claim(f, "n", a, NULL), 0);
    lull_read_lock();
    assert_int_equal(lull_registry_shutdown(f->r, 0), -EDEADLK);
    lull_read_unlock();
    assert_int_equal(fx_lookup(f, "n", NULL, NULL), 0);
    fx_end(f);
}

/* A call blocked in a callback makes shutdown time out; a later one resumes. */
struct blocker { struct fx *f; int in, go; };
static struct blocker *g_blk;

static void blocking_close(struct rt *t, struct ro *o, enum lull_reason why)
{
    if (why != LULL_RELEASED || !g_blk)
        return;
    __atomic_store_n(&g_blk->in, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&g_blk->go, __ATOMIC_ACQUIRE)) {
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
}

static void *releaser(void *arg)
{
    struct blocker *b = arg;
    uint64_t g;
    LT_CHECK(lull_registry_lookup(b->f->r, "n", 1, NULL, &g) == 0);
    LT_CHECK(lull_registry_release(b->f->r, "n", 1, g) == 1);
    return NULL;
}

static void test_shutdown_timeout(void **state)
{
    (void)state;
    struct fx *f = fx_new(FX_DEFAULT);
    struct blocker b = { f, 0, 0 };
    struct ro *a = CONN(f), *c = CONN(f);
    assert_int_equal(fx_claim(f, "n", a, NULL), 0);
    assert_int_equal(fx_claim(f, "m", c, NULL), 0);
    g_blk = &b;
    f->t.on_close = blocking_close;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, releaser, &b), 0);
    while (!__atomic_load_n(&b.in, __ATOMIC_ACQUIRE))
        sched_yield();
    assert_int_equal(lull_registry_shutdown(f->r, 20 * MS), -ETIMEDOUT);
    assert_int_equal(lull_registry_claim(f->r, "k", 1, CONN(f), NULL), -ESHUTDOWN);
    assert_int_equal(ro_get(&c->closes), 0);            /* not closed yet */
    __atomic_store_n(&b.go, 1, __ATOMIC_RELEASE);
    assert_int_equal(lull_registry_shutdown(f->r, 0), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(ro_get(&c->why), LULL_SHUTDOWN);
    g_blk = NULL;
    f->t.on_close = NULL;
    fx_end(f);
}

/* A registry with its own wheel (driver thread, real clock). */
static void test_own_wheel(void **state)
{
    (void)state;
    struct rt t;
    memset(&t, 0, sizeof(t));
    struct lull_registry_opts o = rt_opts(&t, NULL);
    lull_registry *r = lull_registry_create(&o);
    assert_non_null(r);
    struct ro *a = ro_new(0, 0), *d = ro_new(1, 1), *b = ro_new(2, 0), *d2 = ro_new(3, 1);
    uint64_t g;
    assert_int_equal(lull_registry_claim(r, "n", 1, a, &g), 0);
    assert_int_equal(lull_registry_attach(r, "n", 1, d), 0);
    assert_int_equal(lull_registry_release_after(r, "n", 1, g, 2 * MS), 0);
    for (int i = 0; i < 10000 && ro_get(&d->closes) == 0; i++) {     /* 2 ms, or 10 s at worst */
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
    assert_int_equal(ro_get(&d->why), LULL_EXPIRED);
    assert_int_equal(lull_registry_lookup(r, "n", 1, NULL, NULL), -ENOENT);
    /* one left in a long grace period: shutdown cancels it */
    assert_int_equal(lull_registry_claim(r, "n", 1, b, &g), 0);
    assert_int_equal(lull_registry_attach(r, "n", 1, d2), 0);
    assert_int_equal(lull_registry_release_after(r, "n", 1, g, 3600000 * MS), 0);
    lull_registry_destroy(r);
    assert_int_equal(ro_get(&d2->why), LULL_SHUTDOWN);
    a->accepted = b->accepted = 1;
    d->attached = d2->attached = 1;
    ro_check_final(a), ro_check_final(b), ro_check_final(d), ro_check_final(d2);
    free(a), free(b), free(d), free(d2);
}

/* ------------------------------------------------------------ bad input */

static void test_bad_input(void **state)
{
    (void)state;
    struct fx *f = fx_new(FX_DEFAULT);
    lull_registry *r = f->r;
    struct ro *a = CONN(f);
    void *buf[1];
    size_t n;
    uint64_t g;
    char big[1100];
    memset(big, 'x', sizeof(big));

    assert_int_equal(lull_registry_claim(NULL, "n", 1, a, &g), -EINVAL);
    assert_int_equal(lull_registry_claim(r, NULL, 1, a, &g), -EINVAL);
    assert_int_equal(lull_registry_claim(r, "n", 0, a, &g), -EINVAL);
    assert_int_equal(lull_registry_claim(r, big, sizeof(big), a, &g), -EINVAL);
    assert_int_equal(lull_registry_claim(r, "n", 1, NULL, &g), -EINVAL);
    assert_int_equal(lull_registry_release(NULL, "n", 1, 1), -EINVAL);
    assert_int_equal(lull_registry_release(r, NULL, 1, 1), -EINVAL);
    assert_int_equal(lull_registry_release(r, "n", 0, 1), -EINVAL);
    assert_int_equal(lull_registry_release_after(NULL, "n", 1, 1, 1), -EINVAL);
    assert_int_equal(lull_registry_release_after(r, "n", 0, 1, 1), -EINVAL);
    assert_int_equal(lull_registry_mark_dead(NULL, "n", 1, 1), -EINVAL);
    assert_int_equal(lull_registry_mark_dead(r, NULL, 0, 1), -EINVAL);
    assert_int_equal(lull_registry_lookup(NULL, "n", 1, NULL, NULL), -EINVAL);
    assert_int_equal(lull_registry_lookup(r, big, sizeof(big), NULL, NULL), -EINVAL);
    assert_int_equal(lull_registry_attach(NULL, "n", 1, a), -EINVAL);
    assert_int_equal(lull_registry_attach(r, "n", 1, NULL), -EINVAL);
    assert_int_equal(lull_registry_detach(r, "n", 1, NULL), -EINVAL);
    assert_int_equal(lull_registry_detach(NULL, "n", 1, a), -EINVAL);
    assert_int_equal(lull_registry_dependents(NULL, "n", 1, buf, 1, &n), -EINVAL);
    assert_int_equal(lull_registry_dependents(r, "n", 1, NULL, 1, &n), -EINVAL);
    assert_int_equal(lull_registry_dependents(r, "n", 1, buf, 1, NULL), -EINVAL);
    assert_int_equal(lull_registry_shutdown(NULL, 0), -EINVAL);
    assert_int_equal(lull_registry_check(NULL, NULL), -EINVAL);
    lull_registry_destroy(NULL);

    struct lull_registry_opts o = rt_opts(&f->t, f->w);
    errno = 0;
    assert_null(lull_registry_create(NULL));
    assert_int_equal(errno, EINVAL);
    o.close = NULL;
    errno = 0;
    assert_null(lull_registry_create(&o));
    assert_int_equal(errno, EINVAL);
    o = rt_opts(&f->t, f->w);
    o.on_reclaim = (enum lull_reclaim)7;
    errno = 0;
    assert_null(lull_registry_create(&o));
    assert_int_equal(errno, EINVAL);
    fx_check(f);
    fx_end(f);
}

/* A claim whose first run decided to replace the holder, whose publish then
 * lost to another writer, and which then gave up (store.update_timeout_ns
 * of 1 ns: no second run): it returns the error and closes nothing --
 * callbacks come only from the run that published.  The rule plays the
 * other writer: on its first call it attaches a dependent to the id. */
static struct fx *g_interfere_fx;
static int g_interfere;

static bool rule_interfere(const void *id, size_t id_len, void *held, void *incoming, void *ctx)
{
    if (g_interfere == 1) {
        g_interfere = 2;
        struct ro *d = DEP(g_interfere_fx);
        LT_CHECK(fx_attach(g_interfere_fx, "n", d) == 0);
    }
    return true;                                        /* incoming wins */
}

static void test_lost_publish_then_failure_closes_nothing(void **state)
{
    (void)state;
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    struct lull_wheel_opts wo = { .tick_ns = MS, .clock = lt_clock_read, .clock_ctx = &f->clk };
    f->w = lull_wheel_create(&wo);
    struct lull_registry_opts o = rt_opts(&f->t, f->w);
    o.keep_incoming = rule_interfere;
    o.store.update_timeout_ns = 1;
    f->r = lull_registry_create(&o);
    assert_non_null(f->r);
    g_interfere_fx = f;
    struct ro *a = CONN(f), *b = CONN(f);
    void *c;
    assert_int_equal(fx_claim(f, "n", a, NULL), 0);
    g_interfere = 1;
    assert_int_equal(lull_registry_claim(f->r, "n", 1, b, NULL), -ETIMEDOUT);
    assert_int_equal(g_interfere, 2);
    assert_int_equal(ro_get(&a->closes), 0);            /* the holder was not closed */
    assert_int_equal(ro_get(&b->closes), 0);
    assert_int_equal(fx_lookup(f, "n", &c, NULL), 0);
    assert_ptr_equal(c, a);
    assert_int_equal(fx_claim(f, "n", b, NULL), 0);     /* no interference: replaces */
    assert_int_equal(ro_get(&a->why), LULL_REPLACED);
    fx_end(f);
}

/* ------------------------------------------------------------ allocation failures */

/* The observable state of the registry on id "n" and the callback counts. */
struct snapshot {
    int lookup_rc;
    void *conn;
    uint64_t gen;
    size_t ndeps;
    void *deps[8];
    size_t pending;
    int closes, dep_closes;
};

static void take(struct fx *f, struct snapshot *s)
{
    memset(s, 0, sizeof(*s));
    s->lookup_rc = fx_lookup(f, "n", &s->conn, &s->gen);
    if (lull_registry_dependents(f->r, "n", 1, s->deps, 8, &s->ndeps) != 0)
        s->ndeps = 99;
    s->pending = lull_wheel_pending(f->w);
    for (int i = 0; i < 5; i++) {
        s->closes += ro_get(&f->t.ncloses[i]);
        s->dep_closes += ro_get(&f->t.ndep_closes[i]);
    }
}

static void same(const struct snapshot *a, const struct snapshot *b)
{
    assert_int_equal(a->lookup_rc, b->lookup_rc);
    assert_ptr_equal(a->conn, b->conn);
    assert_true(a->gen == b->gen);
    assert_int_equal(a->ndeps, b->ndeps);
    if (a->ndeps <= 8)
        assert_memory_equal(a->deps, b->deps, a->ndeps * sizeof(void *));
    assert_int_equal(a->pending, b->pending);
    assert_int_equal(a->closes, b->closes);
    assert_int_equal(a->dep_closes, b->dep_closes);
}

enum { PREP_FREE, PREP_HELD, PREP_GRACE, PREP_DEAD };

/* Put id "n" in a known state; returns the holder's generation. */
static uint64_t prep(struct fx *f, int how)
{
    uint64_t g = 0;
    if (how == PREP_FREE)
        return 0;
    assert_int_equal(fx_claim(f, "n", CONN(f), &g), 0);
    assert_int_equal(fx_attach(f, "n", DEP(f)), 0);
    if (how == PREP_GRACE)
        assert_int_equal(lull_registry_release_after(f->r, "n", 1, g, 100 * MS), 0);
    if (how == PREP_DEAD)
        assert_int_equal(lull_registry_mark_dead(f->r, "n", 1, g), 0);
    return g;
}

enum { CALL_CLAIM, CALL_ATTACH, CALL_RELEASE_AFTER, CALL_RELEASE };

static void sweep(int mode, int how, int call)
{
    for (unsigned long nth = 1;; nth++) {
        struct fx *f = fx_new(mode);
        fx_at(f, 0);
        uint64_t g = prep(f, how);
        struct ro *o = call == CALL_ATTACH ? DEP(f) : CONN(f);
        struct snapshot before, after;
        take(f, &before);
        int rc;
        uint64_t ng = 0;
        lull__fault_arm(nth);
        switch (call) {
        case CALL_CLAIM:
            rc = lull_registry_claim(f->r, "n", 1, o, &ng);
            break;
        case CALL_ATTACH:
            rc = lull_registry_attach(f->r, "n", 1, o);
            break;
        case CALL_RELEASE_AFTER:
            rc = lull_registry_release_after(f->r, "n", 1, g, 10 * MS);
            break;
        default:
            rc = lull_registry_release(f->r, "n", 1, g);
            break;
        }
        bool fired = lull__fault_fired();
        if (!fired) {
            assert_true(rc >= 0);
            if (call == CALL_CLAIM)
                o->accepted = 1;
            if (call == CALL_ATTACH)
                o->attached = 1;
            fx_end(f);
            assert_true(nth > 1);                       /* every call allocates */
            return;
        }
        if (rc >= 0) {
            /* the failed allocation was one a retry or the wheel absorbs;
             * the call still succeeded: fine, keep sweeping */
            if (call == CALL_CLAIM)
                o->accepted = 1;
            if (call == CALL_ATTACH)
                o->attached = 1;
        } else {
            assert_true(rc == -ENOMEM || rc == -ENOSPC);
            take(f, &after);
            same(&before, &after);                      /* nothing changed, no callback */
            assert_int_equal(ro_get(&o->closes), 0);
        }
        fx_check(f);
        fx_end(f);
    }
}

static void test_faults_claim(void **state)
{
    (void)state;
    sweep(FX_DEFAULT, PREP_FREE, CALL_CLAIM);
    sweep(FX_DEFAULT, PREP_HELD, CALL_CLAIM);
    sweep(FX_EVICT, PREP_HELD, CALL_CLAIM);
    sweep(FX_DEFAULT, PREP_GRACE, CALL_CLAIM);
    sweep(FX_EVICT, PREP_DEAD, CALL_CLAIM);
}

static void test_faults_attach(void **state)
{
    (void)state;
    sweep(FX_DEFAULT, PREP_HELD, CALL_ATTACH);
    sweep(FX_DEFAULT, PREP_GRACE, CALL_ATTACH);
}

static void test_faults_release(void **state)
{
    (void)state;
    sweep(FX_DEFAULT, PREP_HELD, CALL_RELEASE_AFTER);
    sweep(FX_DEFAULT, PREP_DEAD, CALL_RELEASE_AFTER);
    sweep(FX_DEFAULT, PREP_HELD, CALL_RELEASE);
}

/* release_after on a wheel with no capacity left: -ENOSPC, nothing changed. */
static void test_release_after_no_capacity(void **state)
{
    (void)state;
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    struct lull_wheel_opts wo = { .tick_ns = MS, .clock = lt_clock_read, .clock_ctx = &f->clk,
                                  .max_timers = 1 };
    f->w = lull_wheel_create(&wo);
    assert_non_null(f->w);
    struct lull_registry_opts o = rt_opts(&f->t, f->w);
    f->r = lull_registry_create(&o);
    assert_non_null(f->r);
    uint64_t g1, g2;
    struct ro *a = CONN(f), *b = CONN(f);
    assert_int_equal(fx_claim(f, "a", a, &g1), 0);
    assert_int_equal(fx_claim(f, "b", b, &g2), 0);
    assert_int_equal(lull_registry_release_after(f->r, "a", 1, g1, 10 * MS), 0);
    assert_int_equal(lull_registry_release_after(f->r, "b", 1, g2, 10 * MS), -ENOSPC);
    assert_int_equal(ro_get(&b->closes), 0);
    assert_int_equal(fx_lookup(f, "b", NULL, NULL), 0);
    assert_int_equal(lull_registry_release_after(f->r, "b", 1, g2 + 99, 10 * MS), -ESTALE);
    fx_at(f, 10);
    assert_int_equal(lull_registry_release_after(f->r, "b", 1, g2, 10 * MS), 0);
    fx_end(f);
}

/* An expiry whose update fails retries (and re-arms): the id still expires. */
static void test_expiry_fault(void **state)
{
    (void)state;
    for (unsigned long nth = 1; nth <= 6; nth++) {
        struct fx *f = fx_new(FX_DEFAULT);
        fx_at(f, 0);
        uint64_t g = prep(f, PREP_HELD);
        assert_int_equal(lull_registry_release_after(f->r, "n", 1, g, 5 * MS), 0);
        lull__fault_arm(nth);
        fx_at(f, 5);
        (void)lull__fault_fired();
        fx_at(f, 6);
        fx_at(f, 7);
        assert_int_equal(fx_lookup(f, "n", NULL, NULL), -ENOENT);
        assert_int_equal(ro_get(&f->t.ndep_closes[LULL_EXPIRED]), 1);
        fx_end(f);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_claim_free_id),
        cmocka_unit_test(test_keep_held),
        cmocka_unit_test(test_keep_incoming),
        cmocka_unit_test(test_ready_made_rules),
        cmocka_unit_test(test_release),
        cmocka_unit_test(test_grace_reclaim_inherit),
        cmocka_unit_test(test_grace_reclaim_evict),
        cmocka_unit_test(test_evict_on_replace),
        cmocka_unit_test(test_grace_expiry),
        cmocka_unit_test(test_grace_expiry_no_deps),
        cmocka_unit_test(test_grace_twice),
        cmocka_unit_test(test_grace_twice_stale_fire),
        cmocka_unit_test(test_stale_fire_after_reclaim),
        cmocka_unit_test(test_stale_generation_does_nothing),
        cmocka_unit_test(test_zombie_replaced_without_rule),
        cmocka_unit_test(test_dependents),
        cmocka_unit_test(test_dependents_value_limit),
        cmocka_unit_test(test_many_dependents),
        cmocka_unit_test(test_free_after_grace_period),
        cmocka_unit_test(test_callback_reentry),
        cmocka_unit_test(test_shutdown),
        cmocka_unit_test(test_shutdown_in_section),
        cmocka_unit_test(test_shutdown_timeout),
        cmocka_unit_test(test_own_wheel),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_lost_publish_then_failure_closes_nothing),
        cmocka_unit_test(test_faults_claim),
        cmocka_unit_test(test_faults_attach),
        cmocka_unit_test(test_faults_release),
        cmocka_unit_test(test_release_after_no_capacity),
        cmocka_unit_test(test_expiry_fault),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
