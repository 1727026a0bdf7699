/* bench/baselines/heap.c - the min-heap timer queue (see heap.h). */
#include "heap.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

struct rec {
    bl_timer_fn fn;
    void *arg;
    uint32_t pos;      /* index in the heap array; the next free record when free */
    uint32_t gen;      /* bumped on every reuse: handle = gen << 32 | (index + 1) */
};

struct entry {
    uint64_t deadline;
    uint32_t seq;      /* ties: schedule order (wraps after 2^32 schedules) */
    uint32_t rec;
};

#define NO_REC UINT32_MAX

struct bl_heap {
    pthread_mutex_t lock;
    bool locked;
    uint64_t (*clock)(void *);
    void *clock_ctx;
    struct entry *heap;
    size_t n, cap;
    struct rec *recs;
    uint32_t nrecs, free_head;
    uint32_t seq;
};

static inline void lock(struct bl_heap *h) { if (h->locked) pthread_mutex_lock(&h->lock); }
static inline void unlock(struct bl_heap *h) { if (h->locked) pthread_mutex_unlock(&h->lock); }

static inline bool before(const struct entry *a, const struct entry *b)
{
    return a->deadline < b->deadline ||
           (a->deadline == b->deadline && (int32_t)(a->seq - b->seq) < 0);
}

static inline void place(struct bl_heap *h, size_t i, struct entry e)
{
    h->heap[i] = e;
    h->recs[e.rec].pos = (uint32_t)i;
}

static void sift_up(struct bl_heap *h, size_t i, struct entry e)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!before(&e, &h->heap[p]))
            break;
        place(h, i, h->heap[p]);
        i = p;
    }
    place(h, i, e);
}

static void sift_down(struct bl_heap *h, size_t i, struct entry e)
{
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && before(&h->heap[c + 1], &h->heap[c]))
            c++;
        if (!before(&h->heap[c], &e))
            break;
        place(h, i, h->heap[c]);
        i = c;
    }
    place(h, i, e);
}

/* Put e at i after the entry there left: up or down, whichever it needs. */
static void settle(struct bl_heap *h, size_t i, struct entry e)
{
    if (i > 0 && before(&e, &h->heap[(i - 1) / 2]))
        sift_up(h, i, e);
    else
        sift_down(h, i, e);
}

static void remove_at(struct bl_heap *h, size_t i)
{
    struct entry last = h->heap[--h->n];
    if (i < h->n)
        settle(h, i, last);
}

static void free_rec(struct bl_heap *h, uint32_t r)
{
    h->recs[r].gen++;
    h->recs[r].fn = NULL;
    h->recs[r].pos = h->free_head;
    h->free_head = r;
}

static inline uint64_t handle(const struct bl_heap *h, uint32_t r)
{
    return (uint64_t)h->recs[r].gen << 32 | (uint64_t)(r + 1);
}

/* The record of a pending handle, or NO_REC. */
static inline uint32_t lookup(const struct bl_heap *h, uint64_t t)
{
    uint32_t r = (uint32_t)t - 1;
    if (r >= h->nrecs || h->recs[r].gen != (uint32_t)(t >> 32) || !h->recs[r].fn)
        return NO_REC;
    return r;
}

static inline uint64_t deadline_of(uint64_t now, uint64_t delay)
{
    return delay > UINT64_MAX - 1 - now ? UINT64_MAX - 1 : now + delay;
}

struct bl_heap *bl_heap_create(uint64_t (*clock)(void *), void *clock_ctx, int flags)
{
    struct bl_heap *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    pthread_mutex_init(&h->lock, NULL);
    h->locked = !(flags & BL_HEAP_UNLOCKED);
    h->clock = clock;
    h->clock_ctx = clock_ctx;
    h->free_head = NO_REC;
    return h;
}

void bl_heap_destroy(struct bl_heap *h)
{
    if (!h)
        return;
    pthread_mutex_destroy(&h->lock);
    free(h->heap);
    free(h->recs);
    free(h);
}

static int grow(struct bl_heap *h)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        struct entry *e = realloc(h->heap, cap * sizeof *e);
        if (!e)
            return -ENOMEM;
        h->heap = e;
        h->cap = cap;
    }
    if (h->free_head == NO_REC) {
        uint32_t n = h->nrecs ? h->nrecs * 2 : 64;
        struct rec *r = realloc(h->recs, (size_t)n * sizeof *r);
        if (!r)
            return -ENOMEM;
        h->recs = r;
        for (uint32_t i = n; i-- > h->nrecs;) {
            r[i].fn = NULL;
            r[i].gen = 1;
            r[i].pos = h->free_head;
            h->free_head = i;
        }
        h->nrecs = n;
    }
    return 0;
}

int bl_heap_schedule(struct bl_heap *h, uint64_t delay_ns, bl_timer_fn fn, void *arg,
                     uint64_t *t)
{
    uint64_t now = h->clock(h->clock_ctx);
    lock(h);
    int rc = grow(h);
    if (rc) {
        unlock(h);
        return rc;
    }
    uint32_t r = h->free_head;
    h->free_head = h->recs[r].pos;
    h->recs[r].fn = fn;
    h->recs[r].arg = arg;
    struct entry e = {deadline_of(now, delay_ns), h->seq++, r};
    sift_up(h, h->n++, e);
    *t = handle(h, r);
    unlock(h);
    return 0;
}

int bl_heap_cancel(struct bl_heap *h, uint64_t t)
{
    lock(h);
    uint32_t r = lookup(h, t);
    if (r == NO_REC) {
        unlock(h);
        return -ESTALE;
    }
    remove_at(h, h->recs[r].pos);
    free_rec(h, r);
    unlock(h);
    return 0;
}

int bl_heap_reschedule(struct bl_heap *h, uint64_t t, uint64_t delay_ns, uint64_t *nt)
{
    uint64_t now = h->clock(h->clock_ctx);
    lock(h);
    uint32_t r = lookup(h, t);
    if (r == NO_REC) {
        unlock(h);
        return -ESTALE;
    }
    h->recs[r].gen++;   /* the old handle is stale at once */
    struct entry e = {deadline_of(now, delay_ns), h->seq++, r};
    settle(h, h->recs[r].pos, e);
    *nt = handle(h, r);
    unlock(h);
    return 0;
}

bool bl_heap_pop_due(struct bl_heap *h, uint64_t now, uint64_t *t, bl_timer_fn *fn, void **arg)
{
    if (h->n == 0 || h->heap[0].deadline > now)
        return false;
    uint32_t r = h->heap[0].rec;
    *t = handle(h, r);
    *fn = h->recs[r].fn;
    *arg = h->recs[r].arg;
    remove_at(h, 0);
    free_rec(h, r);
    return true;
}

uint64_t bl_heap_now(struct bl_heap *h) { return h->clock(h->clock_ctx); }

size_t bl_heap_advance(struct bl_heap *h)
{
    enum { BATCH = 64 };
    struct { uint64_t t; bl_timer_fn fn; void *arg; } due[BATCH];
    size_t fired = 0;
    uint64_t now = h->clock(h->clock_ctx);
    for (;;) {
        size_t n = 0;
        lock(h);
        while (n < BATCH && bl_heap_pop_due(h, now, &due[n].t, &due[n].fn, &due[n].arg))
            n++;
        unlock(h);
        for (size_t i = 0; i < n; i++)
            due[i].fn(due[i].t, due[i].arg);
        fired += n;
        if (n < BATCH)
            return fired;
    }
}

uint64_t bl_heap_next_deadline(struct bl_heap *h)
{
    lock(h);
    uint64_t d = h->n ? h->heap[0].deadline : UINT64_MAX;
    unlock(h);
    return d;
}

size_t bl_heap_pending(struct bl_heap *h)
{
    lock(h);
    size_t n = h->n;
    unlock(h);
    return n;
}
