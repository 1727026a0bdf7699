/*
 * lib/wheel_slab.c - the timer wheel's slab: 48-byte records indexed by
 * 32-bit slot numbers, and a lock-free stack of free slots.
 *
 * Records live in fixed chunks of 1024 (48 KiB), found through a flat
 * directory of chunk pointers (slot >> 10).  Chunks are allocated on
 * demand, zeroed (so a never-used record reads as state word 0: no handle
 * matches it), and stay until the wheel is destroyed, so a record pointer
 * found from a slot number is always valid memory, even for a garbage
 * handle or a slot being reused.  The slab grows one chunk at a time: its
 * slack is at most one chunk, not a doubling's half.  The directory starts
 * inline (64 chunks) and, when full, is copied into one twice its size; the
 * outgrown ones are kept until destroy (readers may still hold them; all of
 * them together are under twice the last), so slot -> record is two loads
 * and takes no lock.  Chunk installs, directory copies and the never-used
 * tail are serialized by one mutex: growth is the slow path.
 *
 * Slots are handed out from the free stack first, then from the never-used
 * tail [fresh, ...).  (Each shard also keeps a small cache of free slots
 * under its own lock, in lib/wheel.c; this stack is where the caches spill
 * and what they fall back on.)  The free stack is a Treiber stack whose head
 * word carries a 32-bit tag next to the top slot; every push and pop bumps
 * the tag, so a pop whose snapshot of the head went stale (the top popped
 * and pushed back meanwhile: ABA) fails its CAS and retries.
 */
#include "wheel_internal.h"

#include <string.h>

void lull__wslab_init(struct lull__wslab *s)
{
    memset(s, 0, sizeof(*s));
    s->head = LW_NIL;       /* tag 0, empty */
    s->dir = s->dir0;
    s->dir_len = LW_DIR0;
    pthread_mutex_init(&s->grow, NULL);
}

void lull__wslab_fini(struct lull__wslab *s)
{
    for (uint32_t c = 0; c < s->dir_len; c++)
        lull__free(s->dir[c]);
    if (s->dir != s->dir0)
        lull__free(s->dir);
    for (unsigned i = 0; i < s->nold; i++)
        if (s->old[i] != s->dir0)
            lull__free(s->old[i]);
    pthread_mutex_destroy(&s->grow);
}

void (*lull__wslab_pop_hook)(void);

/* Make sure the chunk holding slot n exists (grow mutex held): 0, or
 * -ENOMEM (nothing changed). */
static int lw_chunk_add(struct lull__wslab *s, uint32_t n)
{
    uint32_t c = n >> LW_CHUNK_SHIFT;
    struct lull__wtimer **dir = s->dir;     /* ours to change: we hold grow */
    if (c < s->dir_len && dir[c])
        return 0;
    struct lull__wtimer *chunk = lull__aligned_alloc(lull__cacheline,
                                                     LW_CHUNK_RECS * sizeof(struct lull__wtimer));
    if (!chunk)
        return -ENOMEM;
    /* zeroed: a never-used record's state word is 0, which no handle matches */
    memset(chunk, 0, LW_CHUNK_RECS * sizeof(struct lull__wtimer));
    if (c >= s->dir_len) {
        if (s->nold == LW_OLD_DIRS) {
            lull__free(chunk);
            return -ENOMEM;
        }
        uint32_t len = s->dir_len * 2;
        struct lull__wtimer **nd = lull__calloc(len, sizeof(*nd));
        if (!nd) {
            lull__free(chunk);
            return -ENOMEM;
        }
        memcpy(nd, dir, s->dir_len * sizeof(*nd));
        nd[c] = chunk;
        s->old[s->nold++] = dir;
        s->dir_len = len;
        /* release: the copied entries (and the chunk) are visible before
         * the new directory (pairs with the acquire load in lw_rec). */
        __atomic_store_n(&s->dir, nd, __ATOMIC_RELEASE);
        return 0;
    }
    /* release: the zeroed chunk is visible before its pointer (pairs with
     * the acquire load in lw_rec). */
    __atomic_store_n(&dir[c], chunk, __ATOMIC_RELEASE);
    return 0;
}

void lull__wslot_push_chain(struct lull__wslab *s, uint32_t first, uint32_t last)
{
    struct lull__wtimer *r = lw_rec(s, last);
    /* relaxed: this load only seeds the CAS, which checks it. */
    uint64_t h = __atomic_load_n(&s->head, __ATOMIC_RELAXED);
    for (;;) {
        /* relaxed: published by the release CAS below. */
        __atomic_store_n(&r->free_next, (uint32_t)h, __ATOMIC_RELAXED);
        uint64_t nh = (((h >> 32) + 1) << 32) | first;
        /* release: everything done to the records (their FREE state words,
         * their links) happens before a pop that takes one (acquire there). */
        if (__atomic_compare_exchange_n(&s->head, &h, nh, false,
                                        __ATOMIC_RELEASE, __ATOMIC_RELAXED))
            return;
    }
}

void lull__wslot_push(struct lull__wslab *s, uint32_t slot)
{
    lull__wslot_push_chain(s, slot, slot);
}

int lull__wslot_fresh(struct lull__wslab *s, uint32_t *slot, struct lull__wtimer **rp)
{
    /* The never-used tail, one slot at a time; a new chunk (once per 1024
     * slots) and a new directory (at each doubling) under the grow mutex,
     * which also orders every directory copy after every chunk install. */
    pthread_mutex_lock(&s->grow);
    /* relaxed: fresh changes only under grow. */
    uint32_t n = __atomic_load_n(&s->fresh, __ATOMIC_RELAXED);
    int err = n >= LW_SLOT_LIMIT ? -ENOMEM : lw_chunk_add(s, n);
    if (!err) {
        /* release: publishes the chunk (and directory) installed before to
         * the acquire loads of fresh in lw_decode and the checker. */
        __atomic_store_n(&s->fresh, n + 1, __ATOMIC_RELEASE);
        *slot = n;
        *rp = lw_rec(s, n);
    }
    pthread_mutex_unlock(&s->grow);
    return err;
}

void lull__wslot_unuse(struct lull__wslab *s, uint32_t slot, uint32_t epoch)
{
    /* relaxed: published by the release push. */
    __atomic_store_n(&lw_rec(s, slot)->state, LW_WORD(epoch, 0, LW_FREE), __ATOMIC_RELAXED);
    lull__wslot_push(s, slot);
}
