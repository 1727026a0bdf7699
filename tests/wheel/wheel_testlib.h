/* tests/wheel/wheel_testlib.h - what the wheel's tests share. */
#ifndef WHEEL_TESTLIB_H
#define WHEEL_TESTLIB_H

#include "testutil.h"
#include "wheel_internal.h"   /* lib/: stats, shard count, epochs, fault hooks */

#define MS  1000000ull
#define SEC (1000ull * MS)
#define HOUR (3600ull * SEC)
#define DAY (24ull * HOUR)
#define YEAR (365ull * DAY)

#define CHECK_WHEEL(w) assert_int_equal(lull_wheel_check((w), stderr), 0)

static inline void wt_set(struct lt_clock *c, uint64_t ns)
{
    __atomic_store_n(&c->now, ns, __ATOMIC_RELEASE);
}

static inline lull_wheel *wt_wheel(struct lt_clock *c, uint64_t tick_ns, size_t max_timers)
{
    struct lull_wheel_opts o = {
        .tick_ns = tick_ns, .clock = lt_clock_read, .clock_ctx = c, .max_timers = max_timers,
    };
    lull_wheel *w = lull_wheel_create(&o);
    LT_CHECK(w != NULL);
    return w;
}

#endif
