/*
 * bench/baselines/heap.h - a binary min-heap timer queue with index
 * back-pointers (libevent's min_heap, libuv's timer heap): O(log n)
 * schedule, cancel and reschedule, O(1) peek at the earliest deadline.
 *
 * Written as a careful engineer would: the heap array holds the deadline
 * next to the record index (a sift compares without chasing a pointer);
 * timer records live in a growable array with a free list; handles are
 * record index + generation, so a stale handle is refused (-ESTALE) as
 * lull's are; equal deadlines fire in schedule order.  One mutex makes it
 * safe from any thread, as lull's wheel is (BL_HEAP_UNLOCKED leaves the
 * locking to a caller that holds its own lock, as the registry baseline
 * does).  Callbacks run outside the lock, due timers taken 64 at a time.
 */
#ifndef LULL_BENCH_HEAP_H
#define LULL_BENCH_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bl_heap;
typedef void (*bl_timer_fn)(uint64_t t, void *arg);

enum { BL_HEAP_LOCKED = 0, BL_HEAP_UNLOCKED = 1 };

struct bl_heap *bl_heap_create(uint64_t (*clock)(void *), void *clock_ctx, int flags);
void bl_heap_destroy(struct bl_heap *h);
int  bl_heap_schedule(struct bl_heap *h, uint64_t delay_ns, bl_timer_fn fn, void *arg,
                      uint64_t *t);                    /* 0, -ENOMEM */
int  bl_heap_cancel(struct bl_heap *h, uint64_t t);    /* 0, -ESTALE */
int  bl_heap_reschedule(struct bl_heap *h, uint64_t t, uint64_t delay_ns,
                        uint64_t *nt);                  /* 0, -ESTALE; t stale after */
size_t   bl_heap_advance(struct bl_heap *h);           /* fires what is due */
uint64_t bl_heap_next_deadline(struct bl_heap *h);     /* UINT64_MAX if none */
size_t   bl_heap_pending(struct bl_heap *h);

/* For a caller holding its own lock over an UNLOCKED heap: take the earliest
 * timer if due by now (it is then no longer pending).  true if one was. */
bool bl_heap_pop_due(struct bl_heap *h, uint64_t now, uint64_t *t, bl_timer_fn *fn,
                     void **arg);
uint64_t bl_heap_now(struct bl_heap *h);

#endif /* LULL_BENCH_HEAP_H */
