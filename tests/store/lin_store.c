/* tests/store/lin_store.c - a linearizability check of the store.
 *
 * Threads run random operations (put, put_if, delete, delete_if, update with
 * PUBLISH / REMOVE / KEEP, read) on a few keys in short rounds.  Every
 * operation is stamped with a global atomic tick at invocation and at
 * response, and records its arguments and results.  After each round the
 * history of each key is checked against the sequential specification of one
 * key with the Wing-Gong / Lowe (WGL) search: depth-first, linearize any
 * pending operation whose invocation precedes the earliest response among the
 * operations not yet linearized, memoizing (set of linearized ops, state).
 * A history that cannot be linearized is printed and the test fails.
 *
 * Values are 16 bytes, (writer id, counter): the id is unique per write, so a
 * read names the write it saw; an update increments the counter, so a lost
 * update shows.  An update also records the version it saw (fn's last run).
 *
 * Modes:
 *   (none)            the real store; fails (exit 1) on a violation.
 *   --broken          update and put_if replaced by racy, non-atomic versions
 *   --broken-update   (read, compute, sched_yield, put/delete) and
 *   --broken-put-if   (read version, compare, sched_yield, put); succeeds
 *                     only if the checker finds a violation within its budget.
 * Duration: LULL_STRESS_SECONDS (default 1); seed: LULL_TEST_SEED. */
#include "testutil.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

enum { NT = 4, NK = 2, OPS_PER_THREAD = 10, MAX_OPS = 64 };

enum op_kind { OP_READ, OP_PUT, OP_PUT_IF, OP_DELETE, OP_DELETE_IF,
               OP_UPD_INC, OP_UPD_REMOVE, OP_UPD_KEEP, OP_NKINDS };
static const char *const op_name[OP_NKINDS] = {
    "read", "put", "put_if", "delete", "delete_if", "upd_inc", "upd_remove", "upd_keep" };

struct val { uint64_t id, ctr; };

struct op {
    uint64_t inv, resp;           /* global ticks */
    unsigned thread;              /* NT: the main thread's closing read */
    enum op_kind kind;
    struct val arg;               /* put / put_if / upd_inc: the value written (ctr: put's) */
    uint64_t expected;            /* put_if / delete_if */
    int rc;
    uint64_t version;             /* put/put_if/read version out; update info.version */
    struct val got;               /* read: the value read */
    int outcome;                  /* update */
    uint64_t saw;                 /* update: version of cur in fn's last run, 0 if absent */
};

struct khist { struct op ops[MAX_OPS]; _Atomic unsigned n; };

static const char *const keys[NK] = { "lin-a", "lin-b" };
static lull_store *store;
static struct khist hist[NK];
static _Atomic uint64_t tick;
static bool broken_update, broken_put_if;
static bool plain_version_read;

/* ------------------------------------------------------------ operations */

struct upd_arg { enum op_kind kind; uint64_t id; uint64_t saw; };

/* The next value of an increment: (id, ctr + 1), (id, 1) when absent. */
static struct val inc_of(bool present, struct val cur, uint64_t id)
{
    return (struct val){ id, present ? cur.ctr + 1 : 1 };
}

static int upd_fn(const struct lull_snap *cur, struct lull_buf *next, void *arg)
{
    struct upd_arg *a = arg;
    /* An acquire load, not cur->version: TSan (gcc 12) models a FAILED CAS
     * as an atomic write, so a plain read of the version of a just-inserted
     * snapshot is reported against a losing CAS in lull__finalize
     * (lib/store.c) even though nothing wrote.  lib's own plain reads of
     * snap->version (lull_store_read, lull__put_fn) hit the same report.
     * LULL_LIN_PLAIN_VERSION=1 reads it plainly, as users would. */
    if (plain_version_read)
        a->saw = cur ? cur->version : 0;
    else
        a->saw = cur ? __atomic_load_n(&cur->version, __ATOMIC_ACQUIRE) : 0;
    if (a->kind == OP_UPD_KEEP)
        return LULL_KEEP;
    if (a->kind == OP_UPD_REMOVE)
        return LULL_REMOVE;
    struct val c = { 0, 0 };
    if (cur && cur->value_len == sizeof(c))
        memcpy(&c, cur->value, sizeof(c));
    struct val n = inc_of(cur != NULL, c, a->id);
    if (next->len != sizeof(n)) {
        int rc = lull_buf_resize(next, sizeof(n));
        if (rc)
            return rc;
    }
    memcpy(next->data, &n, sizeof(n));
    return LULL_PUBLISH;
}

/* The broken update: a read, a computation and a put (or delete): not atomic. */
static int broken_update_op(const char *key, struct upd_arg *a, struct lull_update_info *info)
{
    struct val c = { 0, 0 };
    size_t len = 0;
    uint64_t ver = 0;
    int rc = lull_store_read(store, key, strlen(key), &c, sizeof(c), &len, &ver);
    if (rc != 0 && rc != -ENOENT)
        return rc;
    bool present = rc == 0;
    a->saw = present ? ver : 0;
    info->attempts = 1;
    if (a->kind == OP_UPD_KEEP || (a->kind == OP_UPD_REMOVE && !present)) {
        info->outcome = LULL_UNCHANGED;
        info->version = a->saw;
        return 0;
    }
    sched_yield();                                  /* a hostile schedule */
    if (a->kind == OP_UPD_REMOVE) {
        rc = lull_store_delete(store, key, strlen(key));
        info->outcome = rc == 0 ? LULL_REMOVED : LULL_UNCHANGED;
        info->version = rc == 0 ? a->saw : 0;
        return 0;
    }
    struct val n = inc_of(present, c, a->id);
    rc = lull_store_put(store, key, strlen(key), &n, sizeof(n), &info->version);
    info->outcome = present ? LULL_UPDATED : LULL_INSERTED;
    return rc;
}

/* The broken put_if: compare the version read, then put unconditionally. */
static int broken_put_if_op(const char *key, const struct val *v, uint64_t expected,
                            uint64_t *version)
{
    uint64_t ver = 0;
    struct val c;
    int rc = lull_store_read(store, key, strlen(key), &c, sizeof(c), NULL, &ver);
    if (rc != 0 && rc != -ENOENT)
        return rc;
    uint64_t cur = rc == 0 ? ver : 0;
    if (cur != expected)
        return -ESTALE;
    sched_yield();                                  /* a hostile schedule */
    return lull_store_put(store, key, strlen(key), v, sizeof(*v), version);
}

/* Run one operation on key k and record it.  widen: 0 or 1..3 - yield
 * after the invocation tick (1), before the response tick (2) or both (3):
 * on few cores the threads rarely preempt each other inside an operation,
 * and widened intervals make operations overlap, so the search has choices
 * to make (an interval that contains the operation is still a valid one). */
static void run_op(unsigned k, unsigned thread, struct op *o, unsigned widen)
{
    const char *key = keys[k];
    size_t kl = strlen(key);
    o->thread = thread;
    o->inv = atomic_fetch_add(&tick, 1);
    if (widen & 1)
        sched_yield();
    switch (o->kind) {
    case OP_READ: {
        size_t len = 0;
        o->rc = lull_store_read(store, key, kl, &o->got, sizeof(o->got), &len, &o->version);
        if (o->rc == 0 && len != sizeof(o->got))
            o->rc = -EPROTO;
        break;
    }
    case OP_PUT:
        o->rc = lull_store_put(store, key, kl, &o->arg, sizeof(o->arg), &o->version);
        break;
    case OP_PUT_IF:
        o->rc = broken_put_if
              ? broken_put_if_op(key, &o->arg, o->expected, &o->version)
              : lull_store_put_if(store, key, kl, &o->arg, sizeof(o->arg), o->expected,
                                  &o->version);
        break;
    case OP_DELETE:
        o->rc = lull_store_delete(store, key, kl);
        break;
    case OP_DELETE_IF:
        o->rc = lull_store_delete_if(store, key, kl, o->expected);
        break;
    case OP_UPD_INC: case OP_UPD_REMOVE: case OP_UPD_KEEP: {
        struct upd_arg a = { o->kind, o->arg.id, 0 };
        struct lull_update_info info = { LULL_UNCHANGED, 0, 0 };
        o->rc = broken_update ? broken_update_op(key, &a, &info)
                              : lull_store_update(store, key, kl, upd_fn, &a, &info);
        o->outcome = (int)info.outcome;
        o->version = info.version;
        o->saw = a.saw;
        break;
    }
    default:
        LT_CHECK(0);
    }
    if (widen & 2)
        sched_yield();
    o->resp = atomic_fetch_add(&tick, 1);
}

/* ------------------------------------------------------------ the checker */

struct state { bool present; struct val v; uint64_t ver; };

/* Apply op o to state s under the sequential spec; maxver is the greatest
 * version the key has had.  Returns false if o's recorded result is not what
 * the spec allows from s. */
static bool spec_step(const struct op *o, struct state *s, uint64_t maxver)
{
    switch (o->kind) {
    case OP_READ:
        if (!s->present)
            return o->rc == -ENOENT;
        return o->rc == 0 && o->version == s->ver &&
               o->got.id == s->v.id && o->got.ctr == s->v.ctr;
    case OP_PUT:
        if (o->rc != 0 || o->version <= maxver)
            return false;
        *s = (struct state){ true, o->arg, o->version };
        return true;
    case OP_PUT_IF: {
        bool match = o->expected == 0 ? !s->present : (s->present && s->ver == o->expected);
        if (!match)
            return o->rc == -ESTALE;
        if (o->rc != 0 || o->version <= maxver)
            return false;
        *s = (struct state){ true, o->arg, o->version };
        return true;
    }
    case OP_DELETE:
        if (!s->present)
            return o->rc == -ENOENT;
        if (o->rc != 0)
            return false;
        s->present = false;
        return true;
    case OP_DELETE_IF:
        if (!s->present)
            return o->rc == -ENOENT;
        if (s->ver != o->expected)
            return o->rc == -ESTALE;
        if (o->rc != 0)
            return false;
        s->present = false;
        return true;
    case OP_UPD_INC:
        if (o->rc != 0 || o->saw != (s->present ? s->ver : 0) || o->version <= maxver ||
            o->outcome != (s->present ? LULL_UPDATED : LULL_INSERTED))
            return false;
        *s = (struct state){ true, inc_of(s->present, s->v, o->arg.id), o->version };
        return true;
    case OP_UPD_REMOVE:
        if (o->rc != 0 || o->saw != (s->present ? s->ver : 0))
            return false;
        if (!s->present)
            return o->outcome == LULL_UNCHANGED && o->version == 0;
        if (o->outcome != LULL_REMOVED || o->version != s->ver)
            return false;
        s->present = false;
        return true;
    case OP_UPD_KEEP:
        return o->rc == 0 && o->outcome == LULL_UNCHANGED &&
               o->saw == (s->present ? s->ver : 0) && o->version == o->saw;
    default:
        return false;
    }
}

/* Memo of visited (linearized set, state): open addressing, grows. */
struct memo_ent { uint64_t mask; struct state s; bool used; };
struct memo { struct memo_ent *t; size_t cap, n; };

static uint64_t memo_hash(uint64_t mask, const struct state *s)
{
    uint64_t h = mask * 0x9e3779b97f4a7c15ull;
    h ^= (s->v.id + (s->v.ctr << 20) + s->present) * 0xbf58476d1ce4e5b9ull;
    h ^= s->ver * 0x94d049bb133111ebull;
    return h ^ (h >> 29);
}

static bool st_eq(const struct state *a, const struct state *b)
{
    if (a->present != b->present)
        return false;
    if (!a->present)
        return true;            /* absent: value and version are irrelevant */
    return a->ver == b->ver && a->v.id == b->v.id && a->v.ctr == b->v.ctr;
}

/* Insert; returns false if (mask, s) was already there. */
static bool memo_add(struct memo *m, uint64_t mask, const struct state *s)
{
    if (2 * (m->n + 1) > m->cap) {
        struct memo old = *m;
        m->cap = old.cap ? 2 * old.cap : 1024;
        m->t = calloc(m->cap, sizeof(*m->t));
        LT_CHECK(m->t != NULL);
        m->n = 0;
        for (size_t i = 0; i < old.cap; i++)
            if (old.t[i].used)
                memo_add(m, old.t[i].mask, &old.t[i].s);
        free(old.t);
    }
    struct state key = *s;
    if (!key.present)
        key = (struct state){ false, { 0, 0 }, 0 };
    for (size_t i = memo_hash(mask, &key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        struct memo_ent *e = &m->t[i];
        if (!e->used) {
            *e = (struct memo_ent){ mask, key, true };
            m->n++;
            return true;
        }
        if (e->mask == mask && st_eq(&e->s, &key))
            return false;
    }
}

struct search {
    const struct op *ops;
    unsigned n;
    uint64_t all;
    struct memo memo;
    unsigned long steps;
};

static bool wgl(struct search *S, uint64_t done, struct state s, uint64_t maxver)
{
    if (done == S->all)
        return true;
    if (!memo_add(&S->memo, done, &s))
        return false;
    S->steps++;
    uint64_t min_resp = UINT64_MAX;
    for (unsigned i = 0; i < S->n; i++)
        if (!(done >> i & 1) && S->ops[i].resp < min_resp)
            min_resp = S->ops[i].resp;
    for (unsigned i = 0; i < S->n; i++) {
        const struct op *o = &S->ops[i];
        if ((done >> i & 1) || o->inv > min_resp)
            continue;           /* some pending op responded before o began */
        struct state t = s;
        if (!spec_step(o, &t, maxver))
            continue;
        uint64_t mv = t.present && t.ver > maxver ? t.ver : maxver;
        if (wgl(S, done | (1ull << i), t, mv))
            return true;
    }
    return false;
}

static void print_state(FILE *f, const struct state *s)
{
    if (s->present)
        fprintf(f, "present value=(%#" PRIx64 ",%" PRIu64 ") version=%" PRIu64,
                s->v.id, s->v.ctr, s->ver);
    else
        fprintf(f, "absent");
}

static int cmp_inv(const void *a, const void *b)
{
    const struct op *x = a, *y = b;
    return (x->inv > y->inv) - (x->inv < y->inv);
}

static void print_history(FILE *f, const char *key, const struct op *ops, unsigned n,
                          const struct state *init, uint64_t maxver)
{
    struct op sorted[MAX_OPS];
    memcpy(sorted, ops, n * sizeof(*ops));
    qsort(sorted, n, sizeof(*sorted), cmp_inv);
    static const char *const outc[] = { "UNCHANGED", "INSERTED", "UPDATED", "REMOVED" };
    fprintf(f, "history of key \"%s\" (%u ops), initial state: ", key, n);
    print_state(f, init);
    fprintf(f, ", max version so far %" PRIu64 "\n", maxver);
    for (unsigned i = 0; i < n; i++) {
        const struct op *o = &sorted[i];
        fprintf(f, "  [%6" PRIu64 ",%6" PRIu64 "] t%u %-10s", o->inv, o->resp, o->thread,
                op_name[o->kind]);
        switch (o->kind) {
        case OP_READ:
            if (o->rc == 0)
                fprintf(f, " -> 0 value=(%#" PRIx64 ",%" PRIu64 ") version=%" PRIu64,
                        o->got.id, o->got.ctr, o->version);
            else
                fprintf(f, " -> %d", o->rc);
            break;
        case OP_PUT:
            fprintf(f, "(%#" PRIx64 ",%" PRIu64 ") -> %d version=%" PRIu64,
                    o->arg.id, o->arg.ctr, o->rc, o->rc ? 0 : o->version);
            break;
        case OP_PUT_IF:
            fprintf(f, "(%#" PRIx64 ",%" PRIu64 ", expected=%" PRIu64 ") -> %d version=%" PRIu64,
                    o->arg.id, o->arg.ctr, o->expected, o->rc, o->rc ? 0 : o->version);
            break;
        case OP_DELETE:
            fprintf(f, " -> %d", o->rc);
            break;
        case OP_DELETE_IF:
            fprintf(f, "(expected=%" PRIu64 ") -> %d", o->expected, o->rc);
            break;
        default:
            fprintf(f, "(id=%#" PRIx64 ") -> %d %s version=%" PRIu64 " saw=%" PRIu64,
                    o->arg.id, o->rc, o->rc == 0 ? outc[o->outcome] : "-", o->version, o->saw);
        }
        fprintf(f, "\n");
    }
}

/* ------------------------------------------------------------ the workload */

struct worker {
    unsigned idx;
    uint64_t rng;
    uint64_t seq;
    uint64_t last_seen[NK];        /* the last version this thread saw per key */
    pthread_barrier_t *bar;
    _Atomic bool *stop;
    _Atomic unsigned *gate;
};

static void note_version(struct worker *w, unsigned k, const struct op *o)
{
    if (o->rc == 0 && o->version)
        w->last_seen[k] = o->version;
}

static void *worker_main(void *p)
{
    struct worker *w = p;
    for (;;) {
        pthread_barrier_wait(w->bar);              /* round begins */
        if (atomic_load(w->stop))
            return NULL;
        /* A start gate: the barrier wakes threads one by one, microseconds
         * apart; spin until all are awake so their operations overlap. */
        atomic_fetch_add(w->gate, 1);
        for (unsigned spins = 0; atomic_load(w->gate) < NT; spins++)
            if (spins > 1000)
                sched_yield();
        for (unsigned i = 0; i < OPS_PER_THREAD; i++) {
            unsigned k = (unsigned)(lt_rand(&w->rng) % NK);
            struct op o;
            memset(&o, 0, sizeof(o));
            uint64_t r = lt_rand(&w->rng);
            o.kind = (enum op_kind)(r % OP_NKINDS);
            r /= OP_NKINDS;
            o.arg = (struct val){ ((uint64_t)(w->idx + 1) << 40) | ++w->seq, r % 1000 };
            r /= 1000;
            switch (r % 4) {                       /* expected: mostly the last seen */
            case 0: case 1: o.expected = w->last_seen[k]; break;
            case 2: o.expected = 0; break;
            default: o.expected = w->last_seen[k] > 5 ? w->last_seen[k] - 1 - (r / 4) % 4 : 1;
            }
            uint64_t y = lt_rand(&w->rng);
            if (y % 8 == 0)
                sched_yield();
            run_op(k, w->idx, &o, (y >> 8) % 4 == 0 ? (unsigned)(y >> 16) % 3 + 1 : 0);
            note_version(w, k, &o);
            if (o.kind >= OP_UPD_INC && o.saw)
                w->last_seen[k] = o.saw;
            if (o.kind == OP_UPD_INC && o.rc == 0)
                w->last_seen[k] = o.version;
            unsigned slot = atomic_fetch_add(&hist[k].n, 1);
            LT_CHECK(slot < MAX_OPS);
            hist[k].ops[slot] = o;
        }
        pthread_barrier_wait(w->bar);              /* round ends */
    }
}

int main(int argc, char **argv)
{
    bool expect_violation = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--broken"))
            broken_update = broken_put_if = true;
        else if (!strcmp(argv[i], "--broken-update"))
            broken_update = true;
        else if (!strcmp(argv[i], "--broken-put-if"))
            broken_put_if = true;
        else {
            fprintf(stderr, "usage: %s [--broken | --broken-update | --broken-put-if]\n", argv[0]);
            return 2;
        }
    }
    expect_violation = broken_update || broken_put_if;
    plain_version_read = getenv("LULL_LIN_PLAIN_VERSION") != NULL;
    uint64_t seed = lt_seed(0x11a5ull);
    double budget = lt_stress_seconds() * (expect_violation ? 3.0 : 1.0);

    store = lull_store_create(NULL);
    LT_CHECK(store != NULL);
    pthread_barrier_t bar;
    LT_CHECK(pthread_barrier_init(&bar, NULL, NT + 1) == 0);
    _Atomic bool stop = false;
    _Atomic unsigned gate = 0;
    struct worker ws[NT];
    pthread_t th[NT];
    for (unsigned i = 0; i < NT; i++) {
        ws[i] = (struct worker){ .idx = i, .rng = seed ^ (0x51ed27ull * (i + 1)),
                                 .bar = &bar, .stop = &stop, .gate = &gate };
        LT_CHECK(pthread_create(&th[i], NULL, worker_main, &ws[i]) == 0);
    }

    struct state init[NK];
    uint64_t maxver[NK];
    for (unsigned k = 0; k < NK; k++) {
        init[k] = (struct state){ false, { 0, 0 }, 0 };
        maxver[k] = 0;
    }
    struct search S = { 0 };
    uint64_t t0 = lull__now_ns();
    unsigned long rounds = 0, ops_total = 0, steps_total = 0, overlapped = 0;
    unsigned long kind_ok[OP_NKINDS] = { 0 }, kind_n[OP_NKINDS] = { 0 };
    bool violation = false;
    while (!violation && (lull__now_ns() - t0) / 1e9 < budget) {
        for (unsigned k = 0; k < NK; k++)
            atomic_store(&hist[k].n, 0);
        atomic_store(&gate, 0);
        pthread_barrier_wait(&bar);                /* round begins */
        pthread_barrier_wait(&bar);                /* round ends */
        rounds++;
        for (unsigned k = 0; k < NK && !violation; k++) {
            /* A closing read by main: it follows every op of the round, and
             * gives the next round its initial state. */
            struct op *fin = &hist[k].ops[atomic_fetch_add(&hist[k].n, 1)];
            memset(fin, 0, sizeof(*fin));
            fin->kind = OP_READ;
            run_op(k, NT, fin, 0);
            unsigned n = atomic_load(&hist[k].n);
            LT_CHECK(n <= MAX_OPS);
            S.ops = hist[k].ops;
            S.n = n;
            S.all = n == 64 ? UINT64_MAX : (1ull << n) - 1;
            S.memo.n = 0;
            if (S.memo.t)
                memset(S.memo.t, 0, S.memo.cap * sizeof(*S.memo.t));
            S.steps = 0;
            bool ok = wgl(&S, 0, init[k], maxver[k]);
            steps_total += S.steps;
            ops_total += n;
            if (!ok) {
                violation = true;
                fprintf(stderr, "NOT LINEARIZABLE: round %lu, %.3f s in, %lu search steps\n",
                        rounds, (lull__now_ns() - t0) / 1e9, S.steps);
                print_history(stderr, keys[k], hist[k].ops, n, &init[k], maxver[k]);
                break;
            }
            for (unsigned i = 0; i < n; i++) {
                const struct op *o = &hist[k].ops[i];
                for (unsigned j = 0; j < n; j++)
                    if (j != i && o->inv < hist[k].ops[j].resp && hist[k].ops[j].inv < o->resp) {
                        overlapped++;       /* o ran concurrently with another op */
                        break;
                    }
                kind_n[o->kind]++;
                kind_ok[o->kind] += o->rc == 0;
                bool wrote = o->rc == 0 && (o->kind == OP_PUT || o->kind == OP_PUT_IF ||
                                            o->kind == OP_UPD_INC);
                if (wrote && o->version > maxver[k])
                    maxver[k] = o->version;
            }
            init[k] = (struct state){ fin->rc == 0, fin->got, fin->version };
        }
    }
    atomic_store(&stop, true);
    pthread_barrier_wait(&bar);
    for (unsigned i = 0; i < NT; i++)
        LT_CHECK(pthread_join(th[i], NULL) == 0);
    pthread_barrier_destroy(&bar);
    free(S.memo.t);
    LT_CHECK(lull_store_check(store, stderr) == 0);
    LT_CHECK(lull_store_destroy(store) == 0);

    fprintf(stderr, "%s: %lu rounds, %lu ops checked (%lu overlapping another), "
            "%lu search steps, %.2f s\n", expect_violation ? "broken store" : "store",
            rounds, ops_total, overlapped, steps_total, (lull__now_ns() - t0) / 1e9);
    fprintf(stderr, "successes/ops:");
    for (unsigned i = 0; i < OP_NKINDS; i++)
        fprintf(stderr, " %s %lu/%lu", op_name[i], kind_ok[i], kind_n[i]);
    fprintf(stderr, "\n");
    if (expect_violation) {
        if (!violation)
            fprintf(stderr, "FAIL: the checker found no violation in the broken store\n");
        else
            fprintf(stderr, "ok: the checker caught the broken store\n");
        return violation ? 0 : 1;
    }
    return violation ? 1 : 0;
}
