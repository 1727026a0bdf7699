/*
 * examples/wheel_timeouts.c - idle-connection timeouts on lull_wheel.
 *
 * Every connection gets an idle timer when it opens.  Traffic pushes it
 * back with lull_wheel_reschedule (the keepalive pattern: one atomic move,
 * the old handle is stale at once); closing cancels it.  A connection that
 * stays silent for IDLE_MS is closed by its timer.
 *
 * The loop is the one an event loop runs (docs/epoll.md), on the real
 * clock: sleep until the next round of traffic or lull_wheel_next_deadline,
 * whichever comes first, handle the traffic, then lull_wheel_advance.  The
 * wheel reads the loop's time, taken once per iteration (as libuv's
 * uv_now), so traffic and the advance after it see the same instant: a
 * connection that talked cannot expire in that iteration, however late the
 * thread wakes, and the outcome does not depend on scheduling.  At the end
 * it checks that exactly the silent connections expired, none before IDLE_MS
 * of silence, and exits 1 otherwise.  It runs for about a quarter of a
 * second.
 */
#define _POSIX_C_SOURCE 200809L
#include <lull.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { CONNS = 8, IDLE_MS = 50, ROUND_MS = 10, RUN_MS = 200 };
#define MS 1000000ull

struct conn {
    int        id;
    uint64_t   talks_until;  /* ms after start: traffic every round before it */
    uint64_t   closes_at;    /* ms after start: the peer hangs up (0: at the end) */
    bool       should_expire;
    lull_timer timer;        /* the current handle; replaced by each reschedule */
    bool       open;
    uint64_t   last_seen;    /* loop time: last traffic (or the open) */
    int        expired;      /* how many times the idle timer ran */
    uint64_t   expired_at;   /* loop time */
};

/* The loop's time, read once per iteration; the wheel's clock. */
static uint64_t loop_now;
static uint64_t loop_clock(void *ctx)
{
    (void)ctx;
    return loop_now;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);    /* the wheel's default clock */
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t ns)
{
    struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000ull),
                           .tv_nsec = (long)(ns % 1000000000ull) };
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {
    }
}

static void fail(const char *what, int id, int rc)
{
    fprintf(stderr, "wheel_timeouts: conn %d: %s: %s\n", id, what, lull_strerror(rc));
    exit(1);
}

/* The idle timer: runs on the thread that calls lull_wheel_advance. */
static void on_idle(lull_timer t, void *arg)
{
    struct conn *c = arg;
    if (t != c->timer) {        /* a stale handle is never delivered */
        fprintf(stderr, "wheel_timeouts: conn %d: fired with an old handle\n", c->id);
        exit(1);
    }
    c->expired++;
    c->expired_at = loop_now;
    c->open = false;            /* a real server would close the socket here */
}

static void activity(lull_wheel *w, struct conn *c)
{
    c->last_seen = loop_now;    /* the new deadline: last_seen + IDLE_MS */
    int rc = lull_wheel_reschedule(w, c->timer, IDLE_MS * MS, &c->timer);
    if (rc != 0)                /* -ESTALE would mean it expired while talking */
        fail("keepalive", c->id, rc);
}

static void hang_up(lull_wheel *w, struct conn *c)
{
    int rc = lull_wheel_cancel(w, c->timer);
    if (rc != 0)                /* 0: its timer will never run */
        fail("cancel", c->id, rc);
    c->open = false;
}

int main(void)
{
    /* 1 ms tick, no driver thread: the loop advances it. */
    lull_wheel *w = lull_wheel_create(&(struct lull_wheel_opts){ .clock = loop_clock });
    if (!w) {
        perror("lull_wheel_create");
        return 1;
    }

    /* 0-2 talk all along; 3 talks, then falls silent; 4-5 never talk;
     * 6-7 talk, then hang up before they could expire. */
    struct conn conns[CONNS] = {
        { .talks_until = RUN_MS }, { .talks_until = RUN_MS }, { .talks_until = RUN_MS },
        { .talks_until = 60, .should_expire = true },
        { .talks_until = 0, .should_expire = true },
        { .talks_until = 0, .should_expire = true },
        { .talks_until = RUN_MS, .closes_at = 30 }, { .talks_until = RUN_MS, .closes_at = 40 },
    };
    uint64_t start = loop_now = now_ns();
    for (int i = 0; i < CONNS; i++) {
        struct conn *c = &conns[i];
        c->id = i;
        c->open = true;
        c->last_seen = loop_now;
        int rc = lull_wheel_schedule(w, IDLE_MS * MS, on_idle, c, &c->timer);
        if (rc != 0)
            fail("schedule", i, rc);
    }

    /* The event loop: traffic every ROUND_MS, timers in between. */
    uint64_t round = 0;         /* ms after start of the last round of traffic */
    for (;;) {
        uint64_t wake = start + (round + ROUND_MS) * MS;
        uint64_t next = lull_wheel_next_deadline(w);
        sleep_until(next < wake ? next : wake);  /* epoll_wait, in a real server */
        loop_now = now_ns();
        uint64_t t = (loop_now - start) / MS;
        if (t >= RUN_MS)
            break;
        if (t >= round + ROUND_MS) {            /* a round of traffic is due */
            round = t - t % ROUND_MS;
            for (int i = 0; i < CONNS; i++) {
                struct conn *c = &conns[i];
                if (!c->open)
                    continue;
                if (c->closes_at && round >= c->closes_at)
                    hang_up(w, c);
                else if (round < c->talks_until)
                    activity(w, c);
            }
        }
        lull_wheel_advance(w);  /* after the traffic, as after epoll_wait */
    }

    /* Shut the busy ones down; let the silent ones run out. */
    for (int i = 0; i < CONNS; i++)
        if (conns[i].open && !conns[i].should_expire)
            hang_up(w, &conns[i]);
    while (lull_wheel_pending(w) > 0) {
        sleep_until(lull_wheel_next_deadline(w));
        loop_now = now_ns();
        lull_wheel_advance(w);
    }

    int bad = 0;
    for (int i = 0; i < CONNS; i++) {
        const struct conn *c = &conns[i];
        if (c->expired != (c->should_expire ? 1 : 0)) {
            fprintf(stderr, "wheel_timeouts: conn %d expired %d times, expected %d\n",
                    i, c->expired, c->should_expire ? 1 : 0);
            bad = 1;
        } else if (c->expired && c->expired_at < c->last_seen + IDLE_MS * MS) {
            fprintf(stderr, "wheel_timeouts: conn %d expired early\n", i);
            bad = 1;
        } else if (c->expired) {
            printf("conn %d: closed after %.1f ms of silence\n", i,
                   (double)(c->expired_at - c->last_seen) / (double)MS);
        } else {
            printf("conn %d: kept alive, then hung up\n", i);
        }
    }
    if (lull_wheel_check(w, stderr) != 0 || lull_wheel_destroy(w, 0) != 0)
        bad = 1;
    printf("wheel_timeouts: %s (%.0f ms)\n", bad ? "FAILED" : "ok",
           (double)(now_ns() - start) / (double)MS);
    return bad;
}
