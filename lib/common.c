/* lib/common.c - error names, and the allocator and thread creation every
 * layer uses (with their fault-injection hooks). */
#include "internal.h"

#include <lull/common.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *lull_strerror(int err)
{
    /* Negate as unsigned: -INT_MIN would overflow. */
    unsigned code = err < 0 ? 0u - (unsigned)err : (unsigned)err;
    switch (code) {
    case 0:           return "success";
    case EINVAL:      return "invalid argument";
    case ENOMEM:      return "out of memory (nothing changed)";
    case ENOENT:      return "no such key, id or dependent";
    case ENOBUFS:     return "buffer too small (required size returned)";
    case ENOSPC:      return "limit reached (max_keys, max_timers or max_dependents)";
    case EFBIG:       return "value longer than max_value_len";
    case ESTALE:      return "version, generation or handle is not current";
    case ETIMEDOUT:   return "timed out";
    case EEXIST:      return "already held or already attached";
    case EAGAIN:      return "try again: id in its grace period, or a thread could not start";
    case EINPROGRESS: return "timer callback is running";
    case EDEADLK:     return "would wait for itself (inside a read-side section or own callback)";
    case ESHUTDOWN:   return "shut down";
    case EBUSY:       return "busy";
    default:          return "unknown lull error";
    }
}

/* Fault injection.  A countdown counts events (allocations, thread
 * creations) down to the one that fails; relaxed atomics suffice: tests arm
 * it, run a scenario and read it back on one thread, and a racing thread may
 * only shift which event fails, never fail two. */
struct lull__countdown {
    unsigned long left;     /* 0: disarmed */
    bool hit;
};

static void lull__countdown_arm(struct lull__countdown *c, unsigned long nth)
{
    __atomic_store_n(&c->hit, false, __ATOMIC_RELAXED);
    __atomic_store_n(&c->left, nth, __ATOMIC_RELAXED);
}

static bool lull__countdown_fired(struct lull__countdown *c)
{
    bool hit = __atomic_exchange_n(&c->hit, false, __ATOMIC_RELAXED);
    __atomic_store_n(&c->left, 0, __ATOMIC_RELAXED);
    return hit;
}

static bool lull__countdown_now(struct lull__countdown *c)
{
    unsigned long n = __atomic_load_n(&c->left, __ATOMIC_RELAXED);
    while (lull__unlikely(n != 0)) {
        /* CAS so that exactly one event consumes the last count. */
        if (__atomic_compare_exchange_n(&c->left, &n, n - 1, false,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
            if (n == 1) {
                __atomic_store_n(&c->hit, true, __ATOMIC_RELAXED);
                return true;
            }
            return false;
        }
    }
    return false;
}

static struct lull__countdown lull__alloc_fault, lull__thread_fault;

void lull__fault_arm(unsigned long nth)   { lull__countdown_arm(&lull__alloc_fault, nth); }
bool lull__fault_fired(void)              { return lull__countdown_fired(&lull__alloc_fault); }
bool lull__fault_now(void)                { return lull__countdown_now(&lull__alloc_fault); }

void lull__thread_fault_arm(unsigned long nth) { lull__countdown_arm(&lull__thread_fault, nth); }
bool lull__thread_fault_fired(void)       { return lull__countdown_fired(&lull__thread_fault); }

int lull__thread_create(pthread_t *t, void *(*fn)(void *), void *arg)
{
    if (lull__countdown_now(&lull__thread_fault))
        return EAGAIN;      /* what pthread_create says at a resource limit */
    return pthread_create(t, NULL, fn, arg);
}

void *lull__malloc(size_t n)
{
    return lull__fault_now() ? NULL : malloc(n ? n : 1);
}

void *lull__calloc(size_t n, size_t size)
{
    return lull__fault_now() ? NULL : calloc(n ? n : 1, size ? size : 1);
}

void *lull__aligned_alloc(size_t align, size_t n)
{
    if (lull__fault_now())
        return NULL;
    n = (n + align - 1) / align * align;
    return aligned_alloc(align, n ? n : align);
}

void lull__free(void *p)
{
    free(p);
}

uint64_t lull__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
