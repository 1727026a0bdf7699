/*
 * lib/wheel_slab.c - the timer wheel's slab: 64-byte records indexed by
 * 32-bit slot numbers, and a lock-free stack of free slots.
 *
 * Slots are handed out from the free stack first, then from the never-used
 * tail [fresh, ...).  Chunks are calloc'ed (so a never-used record reads as
 * state word 0: no handle matches it) and installed with one CAS; they stay
 * until the wheel is destroyed, so a record pointer found from a slot number
 * is always valid memory, even for a garbage handle or a slot being reused.
 *
 * The free stack is a Treiber stack whose head word carries a 32-bit tag
 * next to the top slot; every push and pop bumps the tag, so a pop whose
 * snapshot of the head went stale (the top popped and pushed back meanwhile:
 * ABA) fails its CAS and retries.
 */
#include "wheel_internal.h"

#include <string.h>

void lull__wslab_init(struct lull__wslab *s)
{
    memset(s, 0, sizeof(*s));
    s->head = LW_NIL;       /* tag 0, empty */
}

void lull__wslab_fini(struct lull__wslab *s)
{
    for (unsigned k = 0; k < LW_CHUNKS; k++)
        lull__free(s->chunk[k]);
}

void (*lull__wslab_pop_hook)(void);

static int lw_chunk_add(struct lull__wslab *s, unsigned k)
{
    size_t n = (size_t)1 << (k + LW_CHUNK0_SHIFT);
    char *raw = lull__calloc(1, n * sizeof(struct lull__wtimer) + lull__cacheline);
    if (!raw)
        return -ENOMEM;
    char *none = NULL;
    /* release: the zeroed chunk is visible before its pointer (pairs with
     * the acquire load in lw_rec and below).  acquire on failure: we then
     * use the winner's chunk. */
    if (!__atomic_compare_exchange_n(&s->chunk[k], &none, raw, false,
                                     __ATOMIC_RELEASE, __ATOMIC_ACQUIRE))
        lull__free(raw);
    return 0;
}

/* Pop the free stack; false when it is empty. */
static bool lw_slot_pop(struct lull__wslab *s, uint32_t *slot)
{
    /* acquire: the top's free_next and state word were written before the
     * release CAS that pushed it (lull__wslot_push). */
    uint64_t h = __atomic_load_n(&s->head, __ATOMIC_ACQUIRE);
    for (;;) {
        uint32_t top = (uint32_t)h;
        if (top == LW_NIL)
            return false;
        /* relaxed: may be stale if top is popped and reused meanwhile; the
         * tag makes the CAS below fail in that case. */
        uint32_t next = __atomic_load_n(&lw_rec(s, top)->free_next, __ATOMIC_RELAXED);
        uint64_t nh = (((h >> 32) + 1) << 32) | next;
        /* test hook: lets a test run other pops and pushes inside this
         * window.  Costs one relaxed load; NULL outside tests. */
        void (*hook)(void) = __atomic_load_n(&lull__wslab_pop_hook, __ATOMIC_RELAXED);
        if (lull__unlikely(hook != NULL))
            hook();
        /* acquire (both ways): as the load above, for the slot we take or
         * the new head we retry with. */
        if (__atomic_compare_exchange_n(&s->head, &h, nh, false,
                                        __ATOMIC_ACQUIRE, __ATOMIC_ACQUIRE)) {
            *slot = top;
            return true;
        }
    }
}

void lull__wslot_push(struct lull__wslab *s, uint32_t slot)
{
    struct lull__wtimer *r = lw_rec(s, slot);
    /* relaxed: this load only seeds the CAS, which checks it. */
    uint64_t h = __atomic_load_n(&s->head, __ATOMIC_RELAXED);
    for (;;) {
        /* relaxed: published by the release CAS below. */
        __atomic_store_n(&r->free_next, (uint32_t)h, __ATOMIC_RELAXED);
        uint64_t nh = (((h >> 32) + 1) << 32) | slot;
        /* release: everything done to the record (its FREE state word, its
         * unlinking) happens before a pop that takes it (acquire there). */
        if (__atomic_compare_exchange_n(&s->head, &h, nh, false,
                                        __ATOMIC_RELEASE, __ATOMIC_RELAXED))
            return;
    }
}

int lull__wslot_alloc(struct lull__wslab *s, uint32_t *slot, uint32_t *epoch)
{
    if (lw_slot_pop(s, slot)) {
        /* relaxed: ordered by the acquire pop. */
        *epoch = LW_EPOCH(__atomic_load_n(&lw_rec(s, *slot)->state, __ATOMIC_RELAXED));
        return 0;
    }
    /* acquire: pairs with the CAS below in other threads, so chunk[] holds
     * every chunk below n. */
    uint32_t n = __atomic_load_n(&s->fresh, __ATOMIC_ACQUIRE);
    for (;;) {
        if (n >= LW_SLOT_LIMIT)
            return -ENOMEM;
        unsigned k = 63u - (unsigned)__builtin_clzll(((uint64_t)n >> LW_CHUNK0_SHIFT) + 1);
        /* acquire: pairs with lw_chunk_add's release CAS. */
        if (!__atomic_load_n(&s->chunk[k], __ATOMIC_ACQUIRE)) {
            int err = lw_chunk_add(s, k);
            if (err)
                return err;
        }
        /* acq_rel: release publishes the chunk (installed before) to the
         * acquire loads of fresh in lw_decode and above; acquire keeps our
         * chunk check ordered after the fresh value we retry with. */
        if (__atomic_compare_exchange_n(&s->fresh, &n, n + 1, false,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            *slot = n;
            *epoch = 1;
            return 0;
        }
    }
}

void lull__wslot_unuse(struct lull__wslab *s, uint32_t slot, uint32_t epoch)
{
    /* relaxed: published by the release push. */
    __atomic_store_n(&lw_rec(s, slot)->state, LW_WORD(epoch, LW_FREE), __ATOMIC_RELAXED);
    lull__wslot_push(s, slot);
}

bool lull__wslot_end(struct lull__wslab *s, struct lull__wtimer *r, uint32_t epoch)
{
    if (epoch == UINT32_MAX) {
        /* release: the record's last use happens before anyone reads it
         * retired (pairs with the acquire state loads of cancel & co). */
        __atomic_store_n(&r->state, (uint64_t)LW_RETIRED, __ATOMIC_RELEASE);
        /* relaxed: a counter read only by check and stats. */
        __atomic_fetch_add(&s->retired, 1, __ATOMIC_RELAXED);
        return false;
    }
    /* release: as above; a stale handle's load of the state word that sees
     * FREE(epoch + 1) sees the incarnation over. */
    __atomic_store_n(&r->state, LW_WORD(epoch + 1, LW_FREE), __ATOMIC_RELEASE);
    return true;
}
