/*
 * lib/rcu.c - read-side sections on liburcu's memb flavour, automatic thread
 * registration, and batched deferred free.
 *
 * Registration: the first lull call on a thread registers it with urcu-memb
 * and sets a pthread key whose destructor, at thread exit, hands the thread's
 * pending batch to liburcu and unregisters it.  A thread the user registered
 * is left registered (only its batch is flushed).
 *
 * TSan: liburcu 0.13 is not instrumented, so TSan cannot see that a grace
 * period separates a reader's accesses from the free that follows.  In TSan
 * builds every unlock (nested or not) releases lull__tsan_grace and every
 * batch of deferred frees acquires it first: exactly the happens-before edge
 * a grace period provides (readers done -> free).  A reader that touches a
 * snapshot *after* its unlock is not covered, so TSan still reports it.
 */
#include "internal.h"

#include <lull/rcu.h>
#include <pthread.h>
#include <stdio.h>
#include <urcu/urcu-memb.h>

_Static_assert(sizeof(struct rcu_head) == sizeof(((struct lull__deferred *)0)->rcu_head_space),
               "lull__deferred must embed a struct rcu_head");

#ifdef LULL_TSAN
char lull__tsan_grace;
static char lull__tsan_barrier;
#endif

enum { LULL_T_NEW = 0, LULL_T_OURS, LULL_T_USERS };

/* Objects retired on this thread, not yet given to call_rcu. */
struct lull__batch {
    struct lull__deferred *head;
    uint32_t n;
    void (*chain_fn)(struct lull__deferred *head);  /* typed batches only */
};

struct lull__tls {
    unsigned char state;            /* LULL_T_*: who registered this thread */
    bool in_deferred;               /* running deferred frees (call_rcu thread) */
    struct lull__batch any;         /* lull__defer: each object its own fn */
    struct lull__batch kind[LULL_DEFER_KINDS];  /* lull__defer_kind: one fn a chain */
};
static __thread struct lull__tls lull__tls;

/* Objects handed to call_rcu and not yet freed, all threads together.  Added
 * to once per batch at flush, subtracted once per batch after it ran: one
 * shared cache line touched every LULL_RETIRE_BATCH retirements.  Relaxed:
 * it is a gauge for backpressure, not a publication. */
static long lull__inflight;

static pthread_key_t lull__exit_key;
static pthread_once_t lull__exit_once = PTHREAD_ONCE_INIT;

static void lull__flush(void);

static void lull__thread_exit(void *unused)
{
    (void)unused;
    bool was = URCU_TLS(urcu_memb_reader).registered;
    if (!was)
        urcu_memb_register_thread();   /* the user unregistered already: briefly again */
    lull__flush();
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

static void lull__thread_enter_slow(void)
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

void lull_read_lock(void)
{
    lull__thread_enter();
    urcu_memb_read_lock();          /* inline: TLS load, compare, store (+ compiler barrier) */
}

void lull_read_unlock(void)
{
    /* Release before the unlock: every access of the section happens before
     * any deferred free that acquires after the grace period (see top). */
    lull__tsan_release(&lull__tsan_grace);
    urcu_memb_read_unlock();
}

bool lull_read_ongoing(void)
{
    return lull__tls.state != LULL_T_NEW && urcu_memb_read_ongoing();
}

/* After a grace period, on liburcu's call_rcu thread.  The acquire pairs
 * with the releases at read unlock and at flush: the grace period that just
 * ended made every such release happen before this point. */
static void lull__run_begin(void)
{
    lull__tsan_acquire(&lull__tsan_grace);
    lull__tls.in_deferred = true;
}

static void lull__run_end(uint32_t n)
{
    lull__tls.in_deferred = false;
    __atomic_fetch_sub(&lull__inflight, (long)n, __ATOMIC_RELAXED);
    lull__tsan_release(&lull__tsan_barrier);   /* pairs with lull_barrier's acquire */
}

static struct lull__deferred *lull__head_of(struct rcu_head *head)
{
    return caa_container_of((void *)head, struct lull__deferred, rcu_head_space);
}

/* An untyped batch: each object's own fn. */
static void lull__run_batch(struct rcu_head *head)
{
    struct lull__deferred *d = lull__head_of(head);
    lull__run_begin();              /* before any read of the batch */
    uint32_t n = d->n;
    while (d) {
        struct lull__deferred *next = d->next;
        d->fn(d);
        d = next;
    }
    lull__run_end(n);
}

/* A typed batch: one call for the whole chain, which never touches the
 * other objects (they may be cold: that is the point). */
static void lull__run_chain(struct rcu_head *head)
{
    struct lull__deferred *d = lull__head_of(head);
    lull__run_begin();              /* before any read of the batch */
    uint32_t n = d->n;
    void (*fn)(struct lull__deferred *) = d->fn;
    fn(d);
    lull__run_end(n);
}

static void lull__flush_one(struct lull__batch *b)
{
    struct lull__deferred *head = b->head;
    if (!head)
        return;
    head->n = b->n;
    if (b->chain_fn)
        head->fn = b->chain_fn;
    __atomic_fetch_add(&lull__inflight, (long)b->n, __ATOMIC_RELAXED);
    b->head = NULL;
    b->n = 0;
    /* The retiring thread's own accesses happen before the free. */
    lull__tsan_release(&lull__tsan_grace);
    urcu_memb_call_rcu((struct rcu_head *)(void *)head->rcu_head_space,
                       b->chain_fn ? lull__run_chain : lull__run_batch);
}

static void lull__flush(void)
{
    lull__flush_one(&lull__tls.any);
    for (unsigned k = 0; k < LULL_DEFER_KINDS; k++)
        lull__flush_one(&lull__tls.kind[k]);
}

void lull__defer(struct lull__deferred *d, void (*fn)(struct lull__deferred *))
{
    lull__thread_enter();
    struct lull__batch *b = &lull__tls.any;
    d->fn = fn;
    d->next = b->head;              /* thread-private list: no atomics */
    b->head = d;
    if (++b->n >= LULL_RETIRE_BATCH)
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
    if (++b->n >= LULL_RETIRE_BATCH)
        lull__flush_one(b);
}

void lull__defer_throttle(void)
{
    if (lull__likely(lull__load_relaxed(&lull__inflight) < LULL_INFLIGHT_MAX))
        return;
    /* liburcu's one call_rcu thread is behind the writers: wait until it
     * has freed what is queued.  Not inside a section (the grace period
     * would wait for us) nor on the call_rcu thread itself. */
    if (lull__tls.in_deferred || lull_read_ongoing())
        return;
    urcu_memb_barrier();
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

int lull_barrier(void)
{
    if (lull_read_ongoing() || lull__tls.in_deferred)
        return -EDEADLK;          /* would wait for a grace period / for itself */
    lull__thread_enter();
    lull__flush();
    urcu_memb_barrier();
    lull__tsan_acquire(&lull__tsan_barrier);
    return 0;
}
