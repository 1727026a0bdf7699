/* tests/registry/reg_testlib.h - what the registry tests share (header-only).
 *
 * Every conn and dependent a test hands the registry is a struct ro with
 * atomic counters: closes (and the last reason), frees, and what the test
 * knows happened to it (accepted by a claim, attached).  Callbacks count;
 * tests check the counters at the end -- after destroy, when every free has
 * run -- so "exactly once" is a number, not a hope. */
#ifndef LULL_REG_TESTLIB_H
#define LULL_REG_TESTLIB_H

#include "testutil.h"

#include <string.h>

#define RO_MAGIC 0x7e57c0deu

struct ro {
    uint32_t magic;
    int idx;
    int closes;         /* atomic: close or close_dependent calls */
    int why;            /* atomic: last reason */
    int frees;          /* atomic */
    int accepted;       /* set by the test: a claim returned 0 (conns) */
    int attached;       /* set by the test: attach returned 0 (deps) */
    int freed_flag;     /* atomic: set by free; readers in a section check it */
    int kind;           /* 0 conn, 1 dependent */
};

struct rt {                                 /* the callback context */
    int ncloses[5];                         /* atomic: by reason */
    int ndep_closes[5];                     /* atomic: by reason */
    int nfrees;                             /* atomic */
    int nrule;                              /* atomic: keep_incoming calls */
    int after_shutdown;                     /* atomic: set once shutdown returned */
    int late_callbacks;                     /* atomic: callbacks seen after it */
    void (*on_close)(struct rt *t, struct ro *o, enum lull_reason why);   /* optional hook */
    lull_registry *r;
};

static inline struct ro *ro_new(int idx, int kind)
{
    struct ro *o = calloc(1, sizeof(*o));
    LT_CHECK(o != NULL);
    o->magic = RO_MAGIC;
    o->idx = idx;
    o->kind = kind;
    return o;
}

static inline int ro_get(int *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void ro_inc(int *p) { __atomic_fetch_add(p, 1, __ATOMIC_ACQ_REL); }

static inline void rt_late(struct rt *t)
{
    if (ro_get(&t->after_shutdown))
        ro_inc(&t->late_callbacks);
}

static inline void rt_close(void *conn, enum lull_reason why, void *ctx)
{
    struct rt *t = ctx;
    struct ro *o = conn;
    LT_CHECK(o && o->magic == RO_MAGIC && o->kind == 0);
    LT_CHECK(why >= LULL_REPLACED && why <= LULL_SHUTDOWN);
    LT_CHECK(ro_get(&o->frees) == 0);
    rt_late(t);
    __atomic_store_n(&o->why, (int)why, __ATOMIC_RELEASE);
    ro_inc(&o->closes);
    ro_inc(&t->ncloses[why]);
    if (t->on_close)
        t->on_close(t, o, why);
}

static inline void rt_close_dep(void *dep, enum lull_reason why, void *ctx)
{
    struct rt *t = ctx;
    struct ro *o = dep;
    LT_CHECK(o && o->magic == RO_MAGIC && o->kind == 1);
    LT_CHECK(why >= LULL_REPLACED && why <= LULL_SHUTDOWN);
    LT_CHECK(ro_get(&o->frees) == 0);
    rt_late(t);
    __atomic_store_n(&o->why, (int)why, __ATOMIC_RELEASE);
    ro_inc(&o->closes);
    ro_inc(&t->ndep_closes[why]);
    if (t->on_close)
        t->on_close(t, o, why);
}

/* free runs after the object's close (and a grace period). */
static inline void rt_free(void *obj, void *ctx)
{
    struct rt *t = ctx;
    struct ro *o = obj;
    LT_CHECK(o && o->magic == RO_MAGIC);
    LT_CHECK(ro_get(&o->closes) == 1);
    rt_late(t);
    __atomic_store_n(&o->freed_flag, 1, __ATOMIC_RELEASE);
    ro_inc(&o->frees);
    ro_inc(&t->nfrees);
}

static inline bool rt_rule_count_incoming(const void *id, size_t id_len, void *held,
                                          void *incoming, void *ctx)
{
    struct rt *t = ctx;
    LT_CHECK(((struct ro *)held)->magic == RO_MAGIC && ((struct ro *)incoming)->magic == RO_MAGIC);
    ro_inc(&t->nrule);
    return true;
}

static inline bool rt_rule_count_held(const void *id, size_t id_len, void *held,
                                      void *incoming, void *ctx)
{
    ro_inc(&((struct rt *)ctx)->nrule);
    return false;
}

/* Options every test starts from. */
static inline struct lull_registry_opts rt_opts(struct rt *t, lull_wheel *w)
{
    struct lull_registry_opts o;
    memset(&o, 0, sizeof(o));
    o.wheel = w;
    o.close = rt_close;
    o.close_dependent = rt_close_dep;
    o.free = rt_free;
    o.ctx = t;
    return o;
}

/* After destroy: conns accepted are closed and freed exactly once, others
 * never touched; the same for dependents and attached. */
static inline void ro_check_final(struct ro *o)
{
    int want = o->kind == 0 ? o->accepted : o->attached;
    int closes = ro_get(&o->closes), frees = ro_get(&o->frees);
    if (closes != (want ? 1 : 0) || frees != (want ? 1 : 0)) {
        fprintf(stderr, "%s %d: %s, closes %d, frees %d (last reason %d)\n",
                o->kind ? "dependent" : "conn", o->idx,
                want ? (o->kind ? "attached" : "accepted") : "never taken", closes, frees,
                ro_get(&o->why));
        abort();
    }
}

#endif
