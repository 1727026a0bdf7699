/*
 * lib/wheel_check.c - lull_wheel_check: the wheel's invariants, for tests
 * and fuzzers (called after every step of the randomized test).
 *
 * Meaningful while no other thread uses the wheel; it takes each shard lock
 * in turn, so it is at least memory-safe when one does.
 */
#include "wheel_internal.h"

#include <stdarg.h>
#include <stdio.h>

struct lw_checker {
    FILE *out;
    int bad;
};

__attribute__((format(printf, 2, 3)))
static void lw_bad(struct lw_checker *c, const char *fmt, ...)
{
    c->bad++;
    if (!c->out)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("lull_wheel_check: ", c->out);
    vfprintf(c->out, fmt, ap);
    fputc('\n', c->out);
    va_end(ap);
}

/* seen[slot]: 0 unseen, 1 in a shard list, 2 free (a shard's cache or the free stack) */
static void lw_check_shard(lull_wheel *w, unsigned si, unsigned char *seen, uint32_t fresh,
                           size_t *listed, struct lw_checker *c)
{
    struct lw_shard *sh = &w->shards[si];
    struct lull__wslab *sl = &w->slab;
    uint64_t min_d = UINT64_MAX;

    for (unsigned l = 0; l < LW_LEVELS; l++)
        if (!!(sh->levels & (1u << l)) != (sh->bitmap[l] != 0))
            lw_bad(c, "shard %u: level mask bit %u disagrees with its bitmap", si, l);
    for (unsigned list = 0; list < LW_LISTS; list++) {
        unsigned level = list / LW_SLOTS, b = list % LW_SLOTS;
        uint32_t cur = sh->head[list], prev = LW_NIL;
        if (list != LW_DUE && !!(sh->bitmap[level] & ((uint64_t)1 << b)) != (cur != LW_NIL))
            lw_bad(c, "shard %u: bitmap bit of bucket %u/%u disagrees with the bucket", si, level, b);
        for (uint32_t steps = 0; cur != LW_NIL; steps++) {
            if (cur >= fresh) {
                lw_bad(c, "shard %u list %u: slot %u past the slab (%u)", si, list, cur, fresh);
                break;
            }
            if (steps > fresh || seen[cur]) {
                lw_bad(c, "shard %u list %u: slot %u listed twice (cycle or shared)", si, list, cur);
                break;
            }
            seen[cur] = 1;
            ++*listed;
            struct lull__wtimer *r = lw_rec(sl, cur);
            /* relaxed (all three): under the shard lock, and quiescent. */
            uint64_t s = __atomic_load_n(&r->state, __ATOMIC_RELAXED);
            uint64_t d = __atomic_load_n(&r->d, __ATOMIC_RELAXED);
            uint64_t q = __atomic_load_n(&r->seq, __ATOMIC_RELAXED);
            uint64_t e = lw_tick(w, d);
            if (LW_ST(s) != LW_PENDING || LW_EPOCH(s) == 0)
                lw_bad(c, "slot %u: listed but state %#llx is not pending", cur, (unsigned long long)s);
            if (LW_SHARD(s) != si)
                lw_bad(c, "slot %u: its word names shard %u, found in shard %u", cur, LW_SHARD(s), si);
            if (LW_LIST(s) != list)
                lw_bad(c, "slot %u: its word names list %u, found in list %u", cur, LW_LIST(s), list);
            if (r->prev != prev)
                lw_bad(c, "slot %u: prev %u, expected %u", cur, r->prev, prev);
            if (d == UINT64_MAX)
                lw_bad(c, "slot %u: deadline UINT64_MAX (must saturate below)", cur);
            if (e != d / w->tick_ns)
                lw_bad(c, "slot %u: tick %llu of deadline %llu is not deadline / %llu", cur,
                       (unsigned long long)e, (unsigned long long)d,
                       (unsigned long long)w->tick_ns);
            /* the list lw_list_of names is the one cancel and reschedule unlink from */
            unsigned want = lw_list_of(sh, e);
            /* scheduled before the last advance and due by its clock: it
             * must have been collected, wherever it is listed */
            if (d <= sh->last_n && q < sh->mark)
                lw_bad(c, "slot %u: past due (deadline %llu <= clock %llu of the last advance)"
                       " yet left unfired", cur, (unsigned long long)d,
                       (unsigned long long)sh->last_n);
            if (level == 0 && list != LW_DUE && d < sh->min0[b])
                lw_bad(c, "slot %u: deadline %llu below its bucket's bound %llu", cur,
                       (unsigned long long)d, (unsigned long long)sh->min0[b]);
            if (list == LW_DUE) {
                if (want != LW_DUE)
                    lw_bad(c, "slot %u: on the due list, tick %llu ahead of now %llu", cur,
                           (unsigned long long)e, (unsigned long long)sh->now);
            } else if (want == LW_DUE) {
                lw_bad(c, "slot %u: in bucket %u/%u but its tick %llu is not after now %llu",
                       cur, level, b, (unsigned long long)e, (unsigned long long)sh->now);
            } else if (want != list) {
                lw_bad(c, "slot %u: tick %llu belongs in bucket %u/%u, found in %u/%u", cur,
                       (unsigned long long)e, want / LW_SLOTS, want % LW_SLOTS, level, b);
            }
            if (d < min_d)
                min_d = d;
            prev = cur;
            cur = lw_next(r);
        }
    }
    /* relaxed: under the lock. */
    uint64_t hint = __atomic_load_n(&sh->earliest, __ATOMIC_RELAXED);
    if (hint > min_d)
        lw_bad(c, "shard %u: next deadline hint %llu is later than deadline %llu", si,
               (unsigned long long)hint, (unsigned long long)min_d);

    /* its cache of free slots */
    uint32_t n = 0;
    for (uint32_t cur = sh->free_top; cur != LW_NIL; n++) {
        if (cur >= fresh) {
            lw_bad(c, "shard %u cache: slot %u past the slab (%u)", si, cur, fresh);
            break;
        }
        if (seen[cur]) {
            lw_bad(c, "shard %u cache: slot %u %s", si, cur,
                   seen[cur] == 2 ? "twice (cycle)" : "also listed");
            break;
        }
        seen[cur] = 2;
        struct lull__wtimer *r = lw_rec(sl, cur);
        /* relaxed: under the lock. */
        uint64_t s = __atomic_load_n(&r->state, __ATOMIC_RELAXED);
        if (LW_ST(s) != LW_FREE || LW_EPOCH(s) == 0)
            lw_bad(c, "shard %u cache: slot %u has state %#llx", si, cur, (unsigned long long)s);
        cur = lw_next(r);
    }
    if (n != sh->nfree)
        lw_bad(c, "shard %u cache: %u slots, its count says %u", si, n, sh->nfree);
}

int lull_wheel_check(lull_wheel *w, FILE *out)
{
    if (!w)
        return -EINVAL;
    struct lw_checker c = { out, 0 };
    struct lull__wslab *sl = &w->slab;

    /* relaxed: meaningful only when no other thread uses w (or from a
     * callback, when it is this thread's advance that runs). */
    bool advancing = __atomic_load_n(&w->adv, __ATOMIC_RELAXED) & 1u;

    /* acquire: as in lw_decode. */
    uint32_t fresh = __atomic_load_n(&sl->fresh, __ATOMIC_ACQUIRE);
    unsigned char *seen = lull__calloc(fresh ? fresh : 1, 1);
    if (!seen)
        return -ENOMEM;

    size_t listed = 0;
    for (unsigned i = 0; i < w->nshards; i++) {
        lw_lock(&w->shards[i]);
        lw_check_shard(w, i, seen, fresh, &listed, &c);
        lw_unlock(&w->shards[i]);
    }

    /* The free stack.  acquire: as in lull__wslot_pop. */
    uint64_t h = __atomic_load_n(&sl->head, __ATOMIC_ACQUIRE);
    for (uint32_t cur = (uint32_t)h; cur != LW_NIL;) {
        if (cur >= fresh) {
            lw_bad(&c, "free stack: slot %u past the slab (%u)", cur, fresh);
            break;
        }
        if (seen[cur]) {
            lw_bad(&c, "free stack: slot %u %s", cur, seen[cur] == 2 ? "twice (cycle, or also "
                   "in a cache)" : "also listed");
            break;
        }
        seen[cur] = 2;
        struct lull__wtimer *r = lw_rec(sl, cur);
        /* relaxed (both): ordered by the acquire load of head. */
        uint64_t s = __atomic_load_n(&r->state, __ATOMIC_RELAXED);
        if (LW_ST(s) != LW_FREE || LW_EPOCH(s) == 0)
            lw_bad(&c, "free stack: slot %u has state %#llx", cur, (unsigned long long)s);
        cur = __atomic_load_n(&r->free_next, __ATOMIC_RELAXED);
    }

    /* Every slot: listed, free, retired, or (during an advance) in flight. */
    size_t nfree = 0, used = 0, retired = 0, pend = 0;
    for (uint32_t slot = 0; slot < fresh; slot++) {
        struct lull__wtimer *r = lw_rec(sl, slot);
        /* relaxed: quiescent. */
        uint64_t s = __atomic_load_n(&r->state, __ATOMIC_RELAXED);
        if (s == LW_RETIRED) {
            retired++;
            if (seen[slot])
                lw_bad(&c, "slot %u: retired but listed or free", slot);
            continue;
        }
        if (seen[slot] == 2) {
            nfree++;
            continue;
        }
        used++;
        if (lw_is_pending(LW_ST(s)))
            pend++;
        if (seen[slot] == 1)
            continue;
        if (!advancing)
            lw_bad(&c, "slot %u: state %#llx, but in no list and not free (lost)", slot,
                   (unsigned long long)s);
    }
    if (nfree + used + retired != fresh)
        lw_bad(&c, "slab: %zu free + %zu used + %zu retired != %u slots", nfree, used, retired, fresh);
    /* relaxed: counters, quiescent. */
    if (retired != __atomic_load_n(&sl->retired, __ATOMIC_RELAXED))
        lw_bad(&c, "slab: %zu retired slots, counter says %u", retired, sl->retired);
    size_t pending = lull_wheel_pending(w);
    if (!advancing && (pend != pending || listed != pending))
        lw_bad(&c, "pending count %zu, but %zu pending records (%zu listed)", pending, pend, listed);
    /* relaxed: quiescent. */
    size_t reserved = __atomic_load_n(&w->reserved, __ATOMIC_RELAXED);
    if (w->max_timers && !advancing && reserved != pending)
        lw_bad(&c, "%zu timers reserved against max_timers, but %zu pending", reserved, pending);
    if (w->max_timers && reserved > w->max_timers)
        lw_bad(&c, "pending count %zu over max_timers %zu", reserved, w->max_timers);
    lull__free(seen);
    return c.bad;
}
