/*
 * lib/rcu.c - read-side sections on liburcu's memb flavour, automatic thread
 * registration, and batched deferred free on lull's own reclaim thread.
 *
 * Registration: the first lull call on a thread registers it with urcu-memb
 * and sets a pthread key whose destructor, at thread exit, queues the
 * thread's pending batches and unregisters it.  A thread the user registered
 * is left registered (only its batches are flushed).
 *
 * Reclamation.  A thread chains what it retires (lull__defer, one chain;
 * lull__defer_kind, one chain per kind) and pushes a chain's head onto one
 * process-wide queue every LULL_RETIRE_BATCH objects, at lull_barrier and at
 * thread exit.  The queue is a lock-free multi-producer stack of batch heads
 * (and barrier markers), linked through the heads' rcu_head_space; its one
 * consumer is the reclaim thread, which loops:
 *
 *     take the whole queue with one exchange        (sleep if it was empty)
 *     urcu_memb_synchronize_rcu()                   one grace period a take
 *     run every batch of the take                   (the fns, or chain_fn)
 *     subtract the take from the inflight gauge
 *     flush what the fns deferred themselves        (into the next take)
 *     signal the take's barrier markers
 *     pause up to LULL_GATHER_NS, unless someone waits
 *
 * Batches that arrive during one grace period are all taken by the next: the
 * busier the writers, the more each grace period covers.  The pause after a
 * take lets batches gather for a while (liburcu's call_rcu thread polls every
 * 10 ms for the same reason): back-to-back grace periods would each cost the
 * writers two membarrier IPIs and an idle reclaimer a wake-up syscall, paid by
 * the writer that pushes.  A barrier or a throttled writer cuts the pause
 * short.
 *
 * The thread is started by lull__rcu_start (lull_store_create calls it, so a
 * failure to start is an error its caller sees, not liburcu's abort).  It is
 * detached, blocks every signal, is named "lull-reclaim" and lives as long as
 * the process.  It is not an RCU reader: urcu-memb's synchronize_rcu works
 * from unregistered threads (a deferred fn that calls lull registers it, which
 * is harmless: it never waits for a grace period inside a section).  Like
 * liburcu's call_rcu thread it does not survive fork(): in a child process the
 * queue is never served, so a child must not use lull (exec is fine).
 *
 * Barrier: lull_barrier flushes its thread's batches, pushes a marker (on its
 * stack) and waits, under lull__rq.mu, until the reclaim thread marks it done.
 * A marker is done only after the whole take it came in has run; everything
 * pushed before the marker is in that take or an earlier one.
 *
 * TSan: liburcu 0.13 is not instrumented, so TSan cannot see that a grace
 * period separates a reader's accesses from the free that follows.  In TSan
 * builds every unlock (nested or not) releases lull__tsan_grace and every
 * take of deferred frees acquires it first: exactly the happens-before edge
 * a grace period provides (readers done -> free).  A reader that touches a
 * snapshot *after* its unlock is not covered, so TSan still reports it.  The
 * queue, the markers and the sleep are plain atomics and pthread mutexes,
 * which TSan sees without help.
 */
#include "internal.h"

#include <lull/rcu.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <urcu/urcu-memb.h>

#ifdef LULL_TSAN
char lull__tsan_grace;
#endif

/* How long the reclaim thread lets batches gather after a take (see top).
 * Every grace period costs each running thread of the process a membarrier
 * IPI, readers included, so fewer is better once there are several
 * threads: 1024 hot keys, 2 threads (bench/bench_store.c), 1 ms -> 10 ms
 * took the 90/10 mix from 189 to 125-133 ns an op and disjoint updates
 * from 550-620 to 410-510 ns.  One lone writer prefers shorter pauses
 * (256-byte puts on one key: 75-130 ns at 0.25-2 ms, 115-180 ns at
 * 4-10 ms), but a server is not one thread.  10 ms is also liburcu's
 * call_rcu period.  Memory stays bounded either way: a writer that passes
 * LULL_INFLIGHT_MAX waits, and its wait cuts the pause short. */
#define LULL_GATHER_NS 10000000ull

enum { LULL_T_NEW = 0, LULL_T_OURS, LULL_T_USERS };

/* Objects retired on this thread, not yet queued. */
struct lull__batch {
    struct lull__deferred *head;
    uint32_t n;
    void (*chain_fn)(struct lull__deferred *head);  /* typed batches only */
};

struct lull__tls {
    unsigned char state;            /* LULL_T_*: who registered this thread */
    bool in_deferred;               /* the reclaim thread (or reclaiming here) */
    struct lull__batch any;         /* lull__defer: each object its own fn */
    struct lull__batch kind[LULL_DEFER_KINDS];  /* lull__defer_kind: one fn a chain */
};
static __thread struct lull__tls lull__tls;

/* What a queued head is: rcu_head_space[1] while queued. */
enum { LULL_Q_BATCH = 1, LULL_Q_CHAIN, LULL_Q_MARKER };

/* The reclaim thread's idle state (lull__rq.idle). */
enum { LULL_R_BUSY = 0, LULL_R_PAUSED, LULL_R_ASLEEP };

static struct {
    /* The queue: batch heads and markers, linked through rcu_head_space[0].
     * Pushed with a seq_cst CAS, taken whole with an acquire exchange. */
    _Alignas(lull__cacheline) struct lull__deferred *head;
    /* 1 once the reclaim thread runs, for good (release store under
     * start_mu).  Read before every push: on the line the push writes. */
    int running;
    /* Objects queued and not yet run, all threads together.  Added to once
     * per batch at flush, subtracted once per take after it ran: one shared
     * cache line touched every LULL_RETIRE_BATCH retirements.  Relaxed: it
     * is a gauge for backpressure, not a publication. */
    _Alignas(lull__cacheline) long inflight;
    /* Written about once a take: by the reclaim thread when it idles, by
     * whoever wakes it, by barrier and throttle waiters. */
    _Alignas(lull__cacheline) int idle;   /* LULL_R_*; changed under mu, or CAS'd to BUSY */
    unsigned waiters;               /* threads in lull__wait_drained */
    pthread_mutex_t mu;             /* the reclaim thread's sleep, and markers' done */
    pthread_cond_t wake;            /* the reclaim thread waits here (CLOCK_MONOTONIC) */
    pthread_cond_t done;            /* barrier and throttle waiters wait here */
    pthread_mutex_t start_mu;       /* serialises lull__rcu_start */
} lull__rq = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER,
    .start_mu = PTHREAD_MUTEX_INITIALIZER,
};

/* A barrier's place in the queue; lives on the waiter's stack. */
struct lull__marker {
    struct lull__deferred d;
    bool done;                      /* under lull__rq.mu */
};

static inline struct lull__deferred **lull__qlink(struct lull__deferred *d)
{
    return (struct lull__deferred **)(void *)&d->rcu_head_space[0];
}

static inline uintptr_t *lull__qkind(struct lull__deferred *d)
{
    return (uintptr_t *)(void *)&d->rcu_head_space[1];
}

/* ---- registration ------------------------------------------------------- */

static pthread_key_t lull__exit_key;
static pthread_once_t lull__exit_once = PTHREAD_ONCE_INIT;

static void lull__flush(void);
static bool lull__pending(void);
static void lull__reclaim_here(void);

static void lull__thread_exit(void *unused)
{
    (void)unused;
    bool was = URCU_TLS(urcu_memb_reader).registered;
    if (!was)
        urcu_memb_register_thread();   /* the user unregistered already: briefly again */
    lull__flush();
    if (lull__pending())               /* no reclaim thread: free them here */
        lull__reclaim_here();
    if (!was || lull__tls.state == LULL_T_OURS)
        urcu_memb_unregister_thread();
    lull__tls.state = LULL_T_NEW;
}

static void lull__make_exit_key(void)
{
    /* Failure leaves the key unusable; then registration below still works
     * but a thread's batch is flushed only by lull_barrier.  Cannot happen
     * short of PTHREAD_KEYS_MAX keys in the process. */
    (void)pthread_key_create(&lull__exit_key, lull__thread_exit);
}

/* Out of line and cold: lull_read_lock stays a leaf that saves no registers. */
static __attribute__((noinline, cold)) void lull__thread_enter_slow(void)
{
    pthread_once(&lull__exit_once, lull__make_exit_key);
    if (URCU_TLS(urcu_memb_reader).registered) {
        lull__tls.state = LULL_T_USERS;
    } else {
        urcu_memb_register_thread();
        lull__tls.state = LULL_T_OURS;
    }
    (void)pthread_setspecific(lull__exit_key, &lull__tls);
}

void lull__thread_enter(void)
{
    if (lull__unlikely(lull__tls.state == LULL_T_NEW))
        lull__thread_enter_slow();
}

/* The names in parentheses: lib/ is built with LULL_INLINE_READ, which
 * makes lull_read_lock() a macro for every other caller in the library.
 *
 * A registered thread goes straight to the lock, on the reader's address
 * that the test computed: the same test as the inline form in <lull/rcu.h>.
 * In liblull.so each thread-local's address is a call to __tls_get_addr,
 * and testing lull__tls.state first cost two calls here instead of one
 * (a hot get through liblull.so, store/get_so: 0.885x the time at two
 * threads; docs/performance.md, "The shared library").
 * A thread its user registered never needs lull__tls here: lull__defer
 * and the other writers enter it before they batch anything.
 *
 * The first section's work is a tail call to a cold function, so that the
 * fast path is a leaf that keeps nothing across a call: no stack frame,
 * no saved register (it saved one, to keep the reader's address across
 * lull__thread_enter). */
static __attribute__((noinline, cold)) void lull__read_lock_first(void)
{
    lull__thread_enter();           /* registers the thread */
    urcu_memb_read_lock();
}

void (lull_read_lock)(void)
{
    if (lull__unlikely(!URCU_TLS(urcu_memb_reader).registered)) {
        lull__read_lock_first();
        return;
    }
    urcu_memb_read_lock();          /* inline: TLS load, compare, store (+ compiler barrier) */
}

void (lull_read_unlock)(void)
{
    /* Release before the unlock: every access of the section happens before
     * any deferred free that acquires after the grace period (see top). */
    lull__tsan_release(&lull__tsan_grace);
    urcu_memb_read_unlock();
}

bool lull_read_ongoing(void)
{
    /* Not lull__tls.state: a thread its user registered with liburcu may
     * open sections inline (LULL_INLINE_READ) without ever calling lull. */
    return urcu_memb_read_ongoing();
}

/* ---- the queue ---------------------------------------------------------- */

static bool lull__running(void)
{
    /* Acquire: pairs with the release store in lull__rcu_start, so a thread
     * that sees the reclaim thread running also sees the condition variable
     * it was given (initialised before that store). */
    return __atomic_load_n(&lull__rq.running, __ATOMIC_ACQUIRE);
}

static void lull__push(struct lull__deferred *d, uintptr_t kind)
{
    *lull__qkind(d) = kind;
    /* Relaxed: only a first guess at the top; the CAS checks it. */
    struct lull__deferred *top = __atomic_load_n(&lull__rq.head, __ATOMIC_RELAXED);
    do {
        *lull__qlink(d) = top;
        /* seq_cst on success.  Its release half publishes d (kind, link,
         * the batch's objects, and everything the pusher did before) to the
         * acquire exchange that takes it in lull__reclaim_main.  Its
         * sequential consistency orders it before the load of idle in
         * lull__kick: the Dekker pair with lull__idle (store idle, then load
         * head), so that either the pusher sees the reclaimer asleep and
         * wakes it, or the reclaimer sees d and does not sleep. */
    } while (!__atomic_compare_exchange_n(&lull__rq.head, &top, d, true,
                                          __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
}

/* Wake the reclaim thread if its idle state is at least min: LULL_R_ASLEEP
 * for a pushed batch (a pause ends by itself), LULL_R_PAUSED for a waiter. */
static void lull__kick(int min)
{
    /* seq_cst: the second half of the Dekker pairs described at lull__push
     * (after the push) and lull__wait_drained (after waiters++). */
    int v = __atomic_load_n(&lull__rq.idle, __ATOMIC_SEQ_CST);
    while (v >= min) {
        /* Whoever moves idle back to BUSY signals, so only one pusher pays
         * for the wake-up.  Relaxed is enough: the signal goes under mu,
         * which orders it with the reclaimer's wait. */
        if (__atomic_compare_exchange_n(&lull__rq.idle, &v, LULL_R_BUSY, false,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
            /* The reclaimer holds mu from its store of idle until it waits
             * on the condition, so this signal cannot fall between its check
             * and its wait: no lost wake-up. */
            pthread_mutex_lock(&lull__rq.mu);
            pthread_cond_signal(&lull__rq.wake);
            pthread_mutex_unlock(&lull__rq.mu);
            return;
        }
    }
}

/* The reclaim thread idles: ASLEEP until a push, or PAUSED for up to ns
 * (ended early when a barrier or throttled writer waits). */
static void lull__idle(int state, uint64_t ns)
{
    struct timespec dl;
    if (state == LULL_R_PAUSED) {
        clock_gettime(CLOCK_MONOTONIC, &dl);
        uint64_t t = (uint64_t)dl.tv_nsec + ns;
        dl.tv_sec += (time_t)(t / 1000000000u);
        dl.tv_nsec = (long)(t % 1000000000u);
    }
    pthread_mutex_lock(&lull__rq.mu);
    /* seq_cst: the first half of the Dekker pairs (see lull__push,
     * lull__wait_drained): stored before the loads of head and waiters
     * below. */
    __atomic_store_n(&lull__rq.idle, state, __ATOMIC_SEQ_CST);
    for (;;) {
        /* seq_cst, all three: the loads of those Dekker pairs. */
        if (__atomic_load_n(&lull__rq.idle, __ATOMIC_SEQ_CST) != state)
            break;                  /* a kicker moved it to BUSY */
        if (state == LULL_R_ASLEEP
                ? __atomic_load_n(&lull__rq.head, __ATOMIC_SEQ_CST) != NULL
                : __atomic_load_n(&lull__rq.waiters, __ATOMIC_SEQ_CST) != 0)
            break;
        if (state == LULL_R_ASLEEP)
            pthread_cond_wait(&lull__rq.wake, &lull__rq.mu);
        else if (pthread_cond_timedwait(&lull__rq.wake, &lull__rq.mu, &dl) == ETIMEDOUT)
            break;
    }
    /* Relaxed: only this thread acts on BUSY; kickers merely skip it. */
    __atomic_store_n(&lull__rq.idle, LULL_R_BUSY, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&lull__rq.mu);
}

/* Run one take (a list linked by lull__qlink): wait for a grace period, run
 * every batch, then mark its markers done.  On the reclaim thread, or on a
 * thread reclaiming its own batches (lull__reclaim_here); in_deferred set. */
static void lull__run_take(struct lull__deferred *take)
{
    urcu_memb_synchronize_rcu();
    /* The acquire pairs with the releases at read unlock and at flush: the
     * grace period that just ended made every such release happen before
     * this point.  Before any read of a batch. */
    lull__tsan_acquire(&lull__tsan_grace);
    struct lull__deferred *markers = NULL;
    long n = 0;
    while (take) {
        struct lull__deferred *d = take;
        take = *lull__qlink(d);         /* before fn: it may reuse the space */
        switch (*lull__qkind(d)) {
        case LULL_Q_MARKER:
            *lull__qlink(d) = markers;
            markers = d;
            break;
        case LULL_Q_CHAIN:              /* one call; the other objects stay cold */
            n += d->n;
            d->fn(d);
            break;
        default:                        /* each object its own fn */
            n += d->n;
            while (d) {
                struct lull__deferred *next = d->next;
                d->fn(d);
                d = next;
            }
        }
    }
    /* Relaxed: a gauge.  A throttled writer does not rely on it to know its
     * wait is over (its marker's done flag, under mu, says so). */
    __atomic_fetch_sub(&lull__rq.inflight, n, __ATOMIC_RELAXED);
    lull__flush();                      /* what the fns deferred: the next take */
    if (!markers)
        return;
    /* Under mu: a waiter reads done under mu too, so every fn above happens
     * before its return (the edge TSan sees as well); and once done is
     * true the marker's stack may be gone: read its link first. */
    pthread_mutex_lock(&lull__rq.mu);
    while (markers) {
        struct lull__deferred *next = *lull__qlink(markers);
        ((struct lull__marker *)(void *)markers)->done = true;
        markers = next;
    }
    pthread_cond_broadcast(&lull__rq.done);
    pthread_mutex_unlock(&lull__rq.mu);
}

static void *lull__reclaim_main(void *unused)
{
    (void)unused;
    lull__tls.in_deferred = true;       /* for good: lull_barrier refuses here */
    for (;;) {
        /* Relaxed peek, so an idle reclaimer does not write the line. */
        if (!__atomic_load_n(&lull__rq.head, __ATOMIC_RELAXED)) {
            lull__idle(LULL_R_ASLEEP, 0);
            continue;
        }
        /* Acquire: pairs with the release half of every push's CAS. */
        struct lull__deferred *take = __atomic_exchange_n(&lull__rq.head, NULL,
                                                          __ATOMIC_ACQUIRE);
        lull__run_take(take);
        if (LULL_GATHER_NS)
            lull__idle(LULL_R_PAUSED, LULL_GATHER_NS);
    }
    return NULL;
}

int lull__rcu_start(void)
{
    if (lull__likely(lull__running()))
        return 0;
    int err = 0;
    pthread_mutex_lock(&lull__rq.start_mu);
    /* Relaxed: start_mu orders it with the store below. */
    if (!__atomic_load_n(&lull__rq.running, __ATOMIC_RELAXED)) {
        static bool cond_ready;         /* under start_mu */
        if (!cond_ready) {
            pthread_condattr_t ca;
            pthread_condattr_init(&ca);
            pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
            pthread_cond_init(&lull__rq.wake, &ca);
            pthread_condattr_destroy(&ca);
            cond_ready = true;
        }
        /* The thread inherits the mask: every signal blocked, so that none
         * of the process's handlers ever runs on it. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        pthread_t t;
        err = lull__thread_create(&t, lull__reclaim_main, NULL);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (!err) {
            /* Named here, not by the thread: named once this returns. */
            (void)pthread_setname_np(t, "lull-reclaim");
            pthread_detach(t);
            /* Release: pairs with the acquire in lull__running. */
            __atomic_store_n(&lull__rq.running, 1, __ATOMIC_RELEASE);
        }
    }
    pthread_mutex_unlock(&lull__rq.start_mu);
    return -err;
}

long lull__inflight_now(void)
{
    /* Relaxed: a gauge. */
    return __atomic_load_n(&lull__rq.inflight, __ATOMIC_RELAXED);
}

/* ---- batches ------------------------------------------------------------ */

/* Close b: its head carries the count (and chain_fn), b starts again.  The
 * objects count as in flight from here until their take has run. */
static struct lull__deferred *lull__batch_close(struct lull__batch *b, uintptr_t *kind)
{
    struct lull__deferred *head = b->head;
    head->n = b->n;
    *kind = LULL_Q_BATCH;
    if (b->chain_fn) {
        head->fn = b->chain_fn;
        *kind = LULL_Q_CHAIN;
    }
    /* Relaxed: a gauge (see lull__rq.inflight); the push orders the rest. */
    __atomic_fetch_add(&lull__rq.inflight, (long)b->n, __ATOMIC_RELAXED);
    b->head = NULL;
    b->n = 0;
    return head;
}

static void lull__flush_one(struct lull__batch *b)
{
    if (!b->head)
        return;
    /* No reclaim thread (only if none could be started): the batch stays
     * here, for the next flush, lull_barrier or thread exit. */
    if (lull__unlikely(!lull__running()) && lull__rcu_start() != 0)
        return;
    uintptr_t kind;
    struct lull__deferred *head = lull__batch_close(b, &kind);
    /* The retiring thread's own accesses happen before the free. */
    lull__tsan_release(&lull__tsan_grace);
    lull__push(head, kind);
    lull__kick(LULL_R_ASLEEP);
}

static void lull__flush(void)
{
    lull__flush_one(&lull__tls.any);
    for (unsigned k = 0; k < LULL_DEFER_KINDS; k++)
        lull__flush_one(&lull__tls.kind[k]);
}

static bool lull__pending(void)
{
    bool any = lull__tls.any.head != NULL;
    for (unsigned k = 0; k < LULL_DEFER_KINDS; k++)
        any |= lull__tls.kind[k].head != NULL;
    return any;
}

/* Without a reclaim thread: run this thread's batches here, after a grace
 * period.  Only where waiting is allowed (outside a section, not in a
 * deferred fn): lull_barrier and thread exit. */
static void lull__reclaim_here(void)
{
    struct lull__deferred *take = NULL;
    struct lull__batch *all[1 + LULL_DEFER_KINDS] = { &lull__tls.any };
    for (unsigned k = 0; k < LULL_DEFER_KINDS; k++)
        all[1 + k] = &lull__tls.kind[k];
    for (unsigned i = 0; i < 1 + LULL_DEFER_KINDS; i++) {
        if (!all[i]->head)
            continue;
        uintptr_t kind;
        struct lull__deferred *head = lull__batch_close(all[i], &kind);
        *lull__qkind(head) = kind;
        *lull__qlink(head) = take;
        take = head;
    }
    lull__tsan_release(&lull__tsan_grace);
    lull__tls.in_deferred = true;
    lull__run_take(take);               /* what its fns defer stays batched here */
    lull__tls.in_deferred = false;
}

void lull__defer(struct lull__deferred *d, void (*fn)(struct lull__deferred *))
{
    lull__thread_enter();
    struct lull__batch *b = &lull__tls.any;
    d->fn = fn;
    d->next = b->head;              /* thread-private list: no atomics */
    b->head = d;
    /* Every LULL_RETIRE_BATCH: a flush empties b, so this is n == 64, or
     * each 64 more while no reclaim thread can be started. */
    if (++b->n % LULL_RETIRE_BATCH == 0)
        lull__flush_one(b);
}

void lull__defer_kind(struct lull__deferred *d, unsigned kind,
                      void (*chain_fn)(struct lull__deferred *head))
{
    lull__thread_enter();
    struct lull__batch *b = &lull__tls.kind[kind];
    b->chain_fn = chain_fn;
    d->next = b->head;              /* thread-private list: no atomics */
    b->head = d;
    if (++b->n % LULL_RETIRE_BATCH == 0)   /* as in lull__defer */
        lull__flush_one(b);
}

/* ---- waiting ------------------------------------------------------------ */

/* Wait until everything queued before this call has run: push a marker and
 * wait for the reclaim thread to mark it done (after its whole take ran).
 * Everything pushed before the marker precedes it in the queue's
 * modification order, so it is in the marker's take or an earlier one. */
static void lull__wait_drained(void)
{
    struct lull__marker m = { .done = false };
    /* seq_cst: the Dekker pair with lull__idle's PAUSED state (store idle,
     * load waiters): either the reclaimer sees a waiter and skips its
     * pause, or lull__kick below sees it paused and ends the pause. */
    __atomic_fetch_add(&lull__rq.waiters, 1, __ATOMIC_SEQ_CST);
    lull__push(&m.d, LULL_Q_MARKER);
    lull__kick(LULL_R_PAUSED);
    pthread_mutex_lock(&lull__rq.mu);
    while (!m.done)
        pthread_cond_wait(&lull__rq.done, &lull__rq.mu);
    pthread_mutex_unlock(&lull__rq.mu);
    /* Relaxed: a hint to the pause; a late decrement skips one pause. */
    __atomic_fetch_sub(&lull__rq.waiters, 1, __ATOMIC_RELAXED);
}

void lull__defer_throttle(void)
{
    /* Relaxed: a gauge; a stale value only moves the cap by a batch or so. */
    if (lull__likely(lull__load_relaxed(&lull__rq.inflight) < LULL_INFLIGHT_MAX))
        return;
    /* The reclaim thread is behind the writers: wait until it has run what
     * is queued.  Not inside a section (the grace period would wait for us)
     * nor on the reclaim thread itself. */
    if (lull__tls.in_deferred || lull_read_ongoing())
        return;
    lull__wait_drained();
}

int lull_synchronize(void)
{
    if (lull_read_ongoing())
        return -EDEADLK;
    lull__thread_enter();
    urcu_memb_synchronize_rcu();
    lull__tsan_acquire(&lull__tsan_grace);
    return 0;
}

void lull_flush(void)
{
    /* A thread that never called lull has nothing batched. */
    if (lull__tls.state != LULL_T_NEW)
        lull__flush();
}

int lull_barrier(void)
{
    if (lull_read_ongoing() || lull__tls.in_deferred)
        return -EDEADLK;          /* would wait for a grace period / for itself */
    lull__thread_enter();
    /* Nothing is ever queued without a reclaim thread: if there is none
     * (none could be started), only this thread's batches are left. */
    bool mine = lull__pending();
    if (!lull__running() && (!mine || lull__rcu_start() != 0)) {
        if (mine)
            lull__reclaim_here();
        return 0;
    }
    lull__flush();
    lull__wait_drained();
    return 0;
}
