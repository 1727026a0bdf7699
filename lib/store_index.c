/*
 * lib/store_index.c - the store's front index: who may put a node into it,
 * and who takes it out before the node goes to RCU.
 *
 * The layout and the reader's side are in store_internal.h (lull__ix_find).
 * This file is the writer's side.  The one hazard it exists for:
 *
 *   installer I                          writer W
 *   finds n current (or publishes it)
 *                                        replaces n in cds_lfht
 *                                        removes n from the index, retires n
 *   puts n into a slot                   -- grace period starts --
 *                    reader R (a section begun after the grace period began)
 *                    finds n in the slot: n is freed under it
 *
 * RCU only protects readers whose section began before the grace period,
 * so n must be in no slot when it is retired, and no one may put it back.
 * n->ixref counts installs in flight; W sets LULL_IX_UNLINKED in it; an
 * install starts only while LULL_IX_UNLINKED is clear; and whoever leaves
 * ixref at exactly LULL_IX_UNLINKED -- W, if nothing was in flight, or the
 * last installer -- removes n from the index and retires it.  Exactly one
 * thread sees that value, so n is retired once; no one waits for another.
 *
 * Which index: the store's index is replaced by a larger one as keys come
 * (store.c, lull__ix_grow).  The owner removes n from the index it loads
 * when it owns n.  A reader that still uses the previous index began its
 * section before the new one was published, hence before n's grace period
 * (which begins after the owner's load, which saw the new index): RCU
 * covers it.  The old index itself is freed after a grace period.
 */
#include "store_internal.h"

#include <stdlib.h>

bool (*lull__ix_test_hook)(struct lull_node *n);
unsigned long lull__ix_late_owners;

lull__ixw lull__ix_new(size_t keys)
{
    unsigned log2 = 3;                  /* two buckets of four slots at least */
    while (((size_t)1 << log2) * LULL_IX_SLOTS_DEN < keys * LULL_IX_SLOTS_NUM && log2 < 42)
        log2++;
    size_t slots = (size_t)1 << log2;
    /* calloc: large tables come as fresh zero pages, touched only as used.
     * Eight spare slots: room for the alignment and the header before it. */
    _Static_assert(sizeof(struct lull__ixhead) + lull__cacheline - 1 <=
                       8 * sizeof(struct lull__ixslot), "the index's header fits");
    void *raw = lull__calloc(slots + 8, sizeof(struct lull__ixslot));
    if (!raw)
        return 0;
    uintptr_t a = ((uintptr_t)raw + sizeof(struct lull__ixhead) + lull__cacheline - 1) &
                  ~(uintptr_t)(lull__cacheline - 1);
    struct lull__ixhead *h = (struct lull__ixhead *)a - 1;
    h->bytemask = (slots / LULL_IX_BUCKET - 1) * 64;
    h->raw = raw;
    return a;
}

void lull__ix_free(lull__ixw w)
{
    if (w)
        lull__free(lull__ixw_head(w)->raw);
}

static inline struct lull__ixslot *lull__ix_slot(lull__ixw w, uint64_t hash, unsigned j)
{
    size_t mask = lull__ixw_mask(w);
    return &lull__ixw_slots(w)[(lull__ix_home(hash, mask) + j) & mask];
}

/* Take an install reference, unless n is unlinked already.  Relaxed: the
 * count is decided by the RMWs' single order; what needs ordering is done
 * by the release/acquire of the drops below. */
static bool lull__ix_ref(struct lull_node *n)
{
    uint32_t v = lull__load_relaxed(&n->ixref);
    do {
        if (v & LULL_IX_UNLINKED)
            return false;
    } while (!__atomic_compare_exchange_n(&n->ixref, &v, v + 1, true,
                                          __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return true;
}

/* Take every copy of n out of the current index (there may be two when
 * installers raced).  Only n's owner calls this, and no one can put n back:
 * one pass suffices.  Plain stores, not CAS: if the slot changed between
 * the load and the store, the store erases another node's entry -- a miss
 * for its key, never a stale hit (see lull__ix_place).  Relaxed: readers
 * that still load n are covered by RCU (n is retired after this). */
static void lull__ix_remove(const lull__ixw *where, struct lull_node *n, uint64_t hash)
{
    /* Acquire: pairs with the release store that published this index. */
    lull__ixw t = lull__load_acquire(where);
    for (unsigned j = 0; j < LULL_IX_WINDOW; j++) {
        struct lull__ixslot *sl = lull__ix_slot(t, hash, j);
        if (lull__load_relaxed(&sl->node) == n)
            lull__store_relaxed(&sl->node, (struct lull_node *)NULL);
    }
}

/* Drop an install reference; the last one out after the unlink owns n. */
static void lull__ix_unref(const lull__ixw *where, struct lull_node *n, uint64_t hash)
{
    /* acq_rel: the release orders this installer's slot store before the
     * owner's removal pass (the drops and the unlinker's fetch_or form one
     * release sequence); the acquire, when this drop makes us the owner,
     * makes every earlier installer's store and the unlink visible to us. */
    if (__atomic_sub_fetch(&n->ixref, 1, __ATOMIC_ACQ_REL) == LULL_IX_UNLINKED) {
        __atomic_fetch_add(&lull__ix_late_owners, 1, __ATOMIC_RELAXED);   /* a count, for tests */
        lull__ix_remove(where, n, hash);
        lull__node_retire(n);
    }
}

/* Where n goes in index t: the first slot of its window that is empty or
 * holds a node with n's key (the node n replaced, typically), whichever
 * comes first; never another key's slot.  NULL: the window is full of other
 * keys (n stays in cds_lfht only), or n is there already -- then *here is
 * that slot.  An older node of the key further on is left to its owner's
 * removal pass: lookups scan in the same order and meet n first.  Loads
 * only; inside a read-side section (p's key is read). */
static struct lull__ixslot *lull__ix_pick(lull__ixw t, const struct lull_node *n,
                                          uint64_t hash, struct lull__ixslot **here)
{
    *here = NULL;
    for (unsigned j = 0; j < LULL_IX_WINDOW; j++) {
        struct lull__ixslot *sl = lull__ix_slot(t, hash, j);
        /* Acquire: pairs with the release store that put p here, so p's
         * key is visible; p itself is safe to read inside our section. */
        struct lull_node *p = lull__load_acquire(&sl->node);
        if (p == n) {
            *here = sl;
            return NULL;
        }
        if (!p || (lull__load_relaxed(&sl->tag) == hash &&
                   p->snap.key_len == n->snap.key_len &&
                   lull__key_eq(p->data, n->data, n->snap.key_len)))
            return sl;
    }
    return NULL;
}

/* Put n into its slot of the index *where (lull__ix_pick).
 *
 * With plain stores, not CAS.  An install can only lose entries, never
 * resurrect one: a slot is only ever written with a node its writer holds
 * an install reference to (here) or with NULL (lull__ix_remove), so a race
 * between the scan and the store at worst overwrites another node's entry,
 * which costs that key a miss and a repair.  What matters for safety --
 * that no slot holds a node once its owner has removed it -- depends only on
 * who may write that node, not on how.  And a store, unlike a locked CAS,
 * does not wait for the cache line: an update's write to a line the other
 * core's keys share leaves through the store buffer. */
static void lull__ix_place(const lull__ixw *where, struct lull_node *n, uint64_t hash)
{
    struct lull__ixslot *here;
    /* Acquire: pairs with the release store that published this index. */
    struct lull__ixslot *to = lull__ix_pick(lull__load_acquire(where), n, hash, &here);
    if (here) {
        /* Already here (a racing installer): mend a stale tag.  Relaxed:
         * a hint. */
        if (lull__load_relaxed(&here->tag) != hash)
            lull__store_relaxed(&here->tag, hash);
        return;
    }
    if (!to)
        return;                     /* window full of other keys: cds_lfht only */
    /* Acquire: pairs with the release store that set the version (lull__seal,
     * or lull__finalize's winner); the slot's release below carries it on to
     * readers, so a hit needs no version test (store_internal.h).  0 here:
     * n is an insert whose finalize this thread lost, and whose winner has
     * not stored the version yet -- not placed; a lookup repairs it. */
    if (!lull__load_acquire(&n->snap.version))
        return;
    /* The tag first: a reader that sees n through a stale tag merely misses.
     * Relaxed: a hint. */
    lull__store_relaxed(&to->tag, hash);
    /* Release: pairs with lull__ix_find's acquire (n's bytes).  A displaced
     * same-key node is not ours to retire: its owner's removal pass will
     * just not find it. */
    lull__store_release(&to->node, n);
}

/* Would installing n (found current by a reader) change the index?  A scan
 * with loads only, before the install reference: a key whose window is full
 * of other keys misses on every lookup, and two RMWs on its node per lookup
 * would bounce the node's line between the cores that read it (a hot get at
 * two threads went from 14 to 20 ns).  A stale answer is harmless: place
 * scans again. */
static bool lull__ix_worth(const lull__ixw *where, const struct lull_node *n, uint64_t hash)
{
    struct lull__ixslot *here;
    /* Acquire: pairs with the release store that published this index. */
    struct lull__ixslot *to = lull__ix_pick(lull__load_acquire(where), n, hash, &here);
    /* Relaxed: the tag is a hint. */
    return to || (here && lull__load_relaxed(&here->tag) != hash);
}

void lull__ix_install(const lull__ixw *where, struct lull_node *n, uint64_t hash,
                      bool ref)
{
    if (!ref && (!lull__ix_worth(where, n, hash) || !lull__ix_ref(n)))
        return;
    /* Relaxed: orders nothing; a test sets the hook before it starts the
     * threads it stops (pthread_create orders it) and clears it after. */
    bool (*hook)(struct lull_node *) = lull__load_relaxed(&lull__ix_test_hook);
    if (lull__likely(hook == NULL) || hook(n))
        lull__ix_place(where, n, hash);
    lull__ix_unref(where, n, hash);
}

void lull__ix_unlinked(const lull__ixw *where, struct lull_node *n, uint64_t hash)
{
    /* acq_rel: the acquire, when no install is in flight, makes the earlier
     * installers' slot stores (their release drops) visible to the removal
     * pass; the release hands the unlink to a later last installer. */
    if (__atomic_fetch_or(&n->ixref, LULL_IX_UNLINKED, __ATOMIC_ACQ_REL) == 0) {
        lull__ix_remove(where, n, hash);
        lull__node_retire(n);
    }
}
