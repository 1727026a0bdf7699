/* lib/common.c - error names and the allocator every layer uses. */
#include "internal.h"

#include <lull/common.h>
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
    case EAGAIN:      return "id is in its grace period";
    case EINPROGRESS: return "timer callback is running";
    case EDEADLK:     return "would wait for itself (inside a read-side section or own callback)";
    case ESHUTDOWN:   return "shut down";
    case EBUSY:       return "busy";
    default:          return "unknown lull error";
    }
}

/* Fault injection.  lull__fault_countdown counts allocations down to the one
 * that fails; relaxed atomics suffice: tests arm it, run a scenario and read
 * it back on one thread, and a racing thread may only shift which
 * allocation fails, never fail two. */
static unsigned long lull__fault_countdown;
static bool lull__fault_hit;

void lull__fault_arm(unsigned long nth)
{
    __atomic_store_n(&lull__fault_hit, false, __ATOMIC_RELAXED);
    __atomic_store_n(&lull__fault_countdown, nth, __ATOMIC_RELAXED);
}

bool lull__fault_fired(void)
{
    bool hit = __atomic_exchange_n(&lull__fault_hit, false, __ATOMIC_RELAXED);
    __atomic_store_n(&lull__fault_countdown, 0, __ATOMIC_RELAXED);
    return hit;
}

bool lull__fault_now(void)
{
    unsigned long c = __atomic_load_n(&lull__fault_countdown, __ATOMIC_RELAXED);
    while (lull__unlikely(c != 0)) {
        /* CAS so that exactly one allocation consumes the last count. */
        if (__atomic_compare_exchange_n(&lull__fault_countdown, &c, c - 1, false,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
            if (c == 1) {
                __atomic_store_n(&lull__fault_hit, true, __ATOMIC_RELAXED);
                return true;
            }
            return false;
        }
    }
    return false;
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
