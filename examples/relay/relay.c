/*
 * examples/relay/relay.c - a TCP relay between "binaries" and "phones", on lull.
 *
 * A binary claims an id (lull_registry_claim); phones attach to the id
 * (lull_registry_attach) and the relay carries lines both ways.  When a
 * binary's connection drops, its id enters a grace period
 * (lull_registry_release_after): its phones stay, a binary that claims the
 * id again within it gets them back, and at expiry they are closed with
 * "CLOSED expired".  README.md has the protocol; this comment the design.
 *
 * Threads.  N workers, each with its own epoll loop, share one listening
 * socket, one registry and one lull_wheel without a driver thread: the
 * registry's grace timers.  Every worker sleeps in epoll_wait at most until
 * that wheel's next deadline and advances it when it is due, so expiries
 * run on whichever worker gets there first (concurrent advances serialize).
 * A timer armed by a worker is seen by that worker's next epoll_wait
 * timeout, so one loop at least always wakes for it.  Each worker also has
 * a wheel of its own for idle timeouts, which only it advances: those
 * callbacks run on the thread that owns the connection.  The main thread
 * waits on a signalfd for SIGINT/SIGTERM, then shuts down.
 *
 * Ownership.  A connection (struct conn) is owned by the worker that
 * accepted it: only that thread reads its socket, writes to it and closes
 * it.  Other threads reach a conn only through the registry (a lookup, a
 * dependents list, a close callback) and may only queue bytes on it:
 * conn_post appends to c->pending under c->mu and puts c in its owner's
 * inbox, waking the owner with an eventfd.
 *
 * Lifetime.  A conn is freed when its reference count drops to zero.
 *   - the owner holds one from accept until the end of the loop iteration
 *     in which it closed the socket (events for it may still be in that
 *     iteration's batch);
 *   - the registry holds one from a successful claim or attach until its
 *     free callback (on_free), which lull runs after the conn's close AND a
 *     grace period: no read-side section that could have found the conn
 *     through the registry is still running then;
 *   - an inbox entry holds one until the owner has handled it.
 * So a thread inside lull_read_lock() that got a conn from lookup (or
 * dependents) may use it, and take a reference on it, until it unlocks:
 * the registry's reference cannot be dropped before then.  That is the
 * message path, and it takes no lock but the target's own c->mu.
 */
#define _GNU_SOURCE
#include "proto.h"

#include <lull.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define MS 1000000ull
#define LINGER_MS 2000          /* how long a closing conn may take to write its last line */

static struct {
    int port, port_fd, workers, grace_ms, idle_ms, max_phones, max_out_kb;
    bool replace;               /* a second claim of a live id replaces the holder */
} opt = { 7000, -1, 2, 5000, 30000, 64, 256, false };

/* ------------------------------------------------------------ connections */

struct obuf {
    char *data;
    size_t off, len, cap;       /* unsent bytes: data[off .. len) */
};

enum role { ROLE_NEW, ROLE_BINARY, ROLE_PHONE };

struct worker;

struct conn {
    /* Set by the owner before a claim or attach publishes the conn, never
     * changed after: others read them without a lock (the registry's
     * publish is a release, its lookup an acquire). */
    struct worker *owner;
    enum role role;
    char id[RELAY_MAX_ID + 1];
    uint64_t phone_no;          /* phones: the number binaries address them by */

    atomic_int refs;

    /* The owner's thread only. */
    int fd;                     /* -1 once closed */
    uint64_t gen;               /* binaries: the generation the claim gave */
    struct linebuf in;
    struct obuf wbuf;           /* being written; always goes out before pending */
    bool want_out;              /* EPOLLOUT is armed */
    bool lingering;             /* ended: see conn_finish */
    bool fin_sent;
    lull_timer idle;            /* on owner->idle (idle or linger timeout); 0: none */
    uint64_t last_rx;
    struct conn *prev, *next;   /* owner->conns; next also links owner->dead */

    /* Any thread, under mu (held only to copy bytes or flip a flag). */
    pthread_mutex_t mu;
    bool closing;               /* its last frame is queued: nothing more is */
    int closes;                 /* registry closes: lull promises exactly one */
    struct obuf pending;        /* queued by anyone, for the owner to write */
    bool queued;                /* in owner->inbox, which holds a reference */
    struct conn *inbox_next;    /* under owner->mu */
};

struct worker {
    pthread_t tid;
    int ep, efd, spare_fd;
    lull_wheel *idle;           /* idle timeouts: advanced, so fired, on this thread only */
    uint64_t now;               /* loop time, read once per wake-up */
    bool listening;
    struct conn *conns;         /* every open conn this loop owns */
    struct conn *dead;          /* closed this iteration: owner refs dropped at its end */
    pthread_mutex_t mu;         /* guards inbox */
    struct conn *inbox;         /* conns others queued output or a close on */
};

enum { PHASE_RUN, PHASE_DRAIN, PHASE_QUIT };

static struct {
    lull_registry *reg;
    lull_wheel *wheel;          /* grace timers; every worker advances it */
    int lfd;
    struct worker *w;
    atomic_int phase;
    atomic_uint_fast64_t phone_no;
    atomic_long live;           /* conns allocated and not yet freed */
} g;

static atomic_uint_fast64_t counter[RC_COUNT];
#define COUNT(name) atomic_fetch_add_explicit(&counter[RC_##name], 1, memory_order_relaxed)

static _Thread_local struct worker *self;   /* the worker running on this thread, if any */
static char tag_listen, tag_wake;           /* epoll data of the two fds that are not conns */

static bool obuf_put(struct obuf *b, const char *s, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 512;
        while (cap < b->len + n)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p)
            return false;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return true;
}

static void conn_get(struct conn *c)
{
    /* Relaxed: the caller already holds a reference, or is inside a section
     * while the registry holds one; nothing is published by the increment. */
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

static void conn_put(struct conn *c)
{
    /* acq_rel: every holder's accesses happen before the free by the last. */
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return;
    pthread_mutex_destroy(&c->mu);
    free(c->wbuf.data);
    free(c->pending.data);
    free(c);
    atomic_fetch_sub_explicit(&g.live, 1, memory_order_relaxed);
}

/* Hand c to its owner's attention.  The caller took a reference for the inbox. */
static void worker_push(struct worker *w, struct conn *c)
{
    pthread_mutex_lock(&w->mu);
    bool was_empty = !w->inbox;
    c->inbox_next = w->inbox;
    w->inbox = c;
    pthread_mutex_unlock(&w->mu);
    /* The owner drains its inbox after every wake-up, so one write per
     * empty-to-non-empty change is enough; a loop posting to itself drains
     * before it sleeps again and needs none. */
    if (was_empty && w != self) {
        uint64_t one = 1;
        if (write(w->efd, &one, sizeof one) < 0 && errno != EAGAIN)
            perror("relay: eventfd write");
    }
}

enum post { POST_DATA, POST_LAST };

/*
 * conn_post - queue a frame for c's owner to write.  Any thread.  The
 * caller keeps c alive (a reference, or a read-side section in which the
 * registry returned c).  POST_LAST queues c's final frame (ERR, CLOSED):
 * nothing is queued after it, and the owner closes the socket once it is
 * written.  This is what keeps a message from reaching a binary after it
 * lost its id: its close callback posts CLOSED with POST_LAST under c->mu,
 * so a FROM posted by a lookup that raced with the close is either written
 * before the CLOSED line, while the binary still held the id, or refused.
 * Returns 0, -EPIPE (c is closing), -ENOBUFS (over max_out or no memory).
 */
static int conn_post(struct conn *c, const char *s, size_t n, enum post how)
{
    int rc = -EPIPE;
    bool push = false;
    pthread_mutex_lock(&c->mu);
    if (!c->closing) {
        rc = -ENOBUFS;
        if ((how == POST_LAST || c->pending.len < (size_t)opt.max_out_kb << 10) &&
            obuf_put(&c->pending, s, n))
            rc = 0;
        if (how == POST_LAST)
            c->closing = true;
        if ((rc == 0 || c->closing) && !c->queued)
            c->queued = push = true;
    }
    pthread_mutex_unlock(&c->mu);
    if (push) {
        conn_get(c);
        worker_push(c->owner, c);
    }
    return rc;
}

static int postf(struct conn *c, enum post how, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int postf(struct conn *c, enum post how, const char *fmt, ...)
{
    char line[RELAY_MAX_LINE + 96];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    return conn_post(c, line, n < (int)sizeof line ? (size_t)n : sizeof line - 1, how);
}

static void set_out(struct worker *w, struct conn *c, bool on)
{
    if (c->want_out == on)
        return;
    struct epoll_event ev = { .events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c };
    if (epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
        c->want_out = on;
}

/* Owner: write wbuf, then what others queued meanwhile.  -1: socket broken. */
static int conn_flush(struct worker *w, struct conn *c)
{
    for (;;) {
        if (c->wbuf.off == c->wbuf.len) {
            c->wbuf.off = c->wbuf.len = 0;
            pthread_mutex_lock(&c->mu);             /* take pending, leave an empty buffer */
            struct obuf t = c->wbuf;
            c->wbuf = c->pending;
            c->pending = t;
            pthread_mutex_unlock(&c->mu);
            if (c->wbuf.len == 0)
                break;
        }
        ssize_t n = send(c->fd, c->wbuf.data + c->wbuf.off, c->wbuf.len - c->wbuf.off,
                         MSG_NOSIGNAL);
        if (n >= 0) {
            c->wbuf.off += (size_t)n;
        } else if (errno == EAGAIN) {
            set_out(w, c, true);
            return 0;
        } else if (errno != EINTR) {
            return -1;
        }
    }
    set_out(w, c, false);
    return 0;
}

static bool conn_closing(struct conn *c)
{
    pthread_mutex_lock(&c->mu);
    bool closing = c->closing;
    pthread_mutex_unlock(&c->mu);
    return closing;
}

static void conn_end(struct worker *w, struct conn *c, const char *err);

/* Owner: answer c itself.  Straight into wbuf (no inbox): it is written in
 * the order the owner produced it, ahead of what others queued since. */
static void reply(struct worker *w, struct conn *c, const char *s, size_t n)
{
    if (conn_closing(c))
        return;
    if (c->wbuf.len - c->wbuf.off > (size_t)opt.max_out_kb << 10)
        conn_end(w, c, "not reading its replies");
    else if (!obuf_put(&c->wbuf, s, n) || conn_flush(w, c) < 0)
        conn_end(w, c, NULL);
}

/* Owner: close the socket.  The conn itself lives until its last reference. */
static void conn_drop_fd(struct worker *w, struct conn *c)
{
    if (!c->fin_sent)
        (void)conn_flush(w, c); /* best effort: conn_finish is the graceful way */
    close(c->fd);               /* also removes it from the epoll set */
    c->fd = -1;
    if (c->idle)
        lull_wheel_cancel(w->idle, c->idle);    /* 0: it can only fire on this thread */
    c->idle = 0;
    pthread_mutex_lock(&c->mu);
    c->closing = true;          /* nobody queues anything any more */
    pthread_mutex_unlock(&c->mu);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = w->dead;
    w->dead = c;
    COUNT(closed);
}

static void on_idle(lull_timer t, void *arg);

/*
 * Owner: the graceful end of a conn.  Write what is queued (its last line
 * is ERR or CLOSED), send FIN, then read and discard until the peer closes
 * too: closing with unread input sends a RST, and a RST throws away what is
 * still in our send buffer -- the very line that tells the client why.  A
 * peer that does not read or close within LINGER_MS is cut off.
 */
static void conn_finish(struct worker *w, struct conn *c)
{
    if (conn_flush(w, c) < 0) {
        conn_drop_fd(w, c);
        return;
    }
    if (c->wbuf.off == c->wbuf.len && !c->fin_sent) {
        shutdown(c->fd, SHUT_WR);
        c->fin_sent = true;
    }
    if (!c->lingering) {
        if (c->idle)
            lull_wheel_cancel(w->idle, c->idle);
        c->idle = 0;
        c->lingering = true;
        if (lull_wheel_schedule(w->idle, LINGER_MS * MS, on_idle, c, &c->idle) != 0)
            conn_drop_fd(w, c);
    }
}

/*
 * conn_end - owner: c's connection ends for a reason of its own (a hang-up,
 * bad input, a timeout, a refusal); err, if not NULL, is told to the client
 * as "ERR <err>".  The registry hears of it: a binary's id enters its grace
 * period, a phone is detached.  Either call may find that the registry
 * closed c already (or is closing it on another thread right now: -ESTALE,
 * -ENOENT): lull's exactly-once close makes that race harmless.
 */
static void conn_end(struct worker *w, struct conn *c, const char *err)
{
    if (c->fd < 0 || c->lingering)
        return;
    if (err)
        postf(c, POST_LAST, "ERR %s\n", err);
    pthread_mutex_lock(&c->mu);
    bool registry_closed = c->closes > 0;
    pthread_mutex_unlock(&c->mu);
    if (!registry_closed && c->role == ROLE_BINARY) {
        int rc = lull_registry_release_after(g.reg, c->id, strlen(c->id), c->gen,
                                             (uint64_t)opt.grace_ms * MS);
        if (rc == -ENOSPC || rc == -ENOMEM)     /* no timer: let go of the id now */
            rc = lull_registry_release(g.reg, c->id, strlen(c->id), c->gen) == 1 ? 0 : rc;
        if (rc == 0)
            COUNT(releases);
    } else if (!registry_closed && c->role == ROLE_PHONE) {
        (void)lull_registry_detach(g.reg, c->id, strlen(c->id), c);
    }
    conn_finish(w, c);
}

/* ------------------------------------------------- the registry's callbacks */

static const char *reason_name(enum lull_reason why)
{
    return why == LULL_REPLACED ? "replaced" : why == LULL_RELEASED ? "released"
         : why == LULL_EXPIRED ? "expired" : "shutdown";
}

/* Count a registry close of c; false when it is not the first (a lull bug). */
static bool first_close(struct conn *c)
{
    pthread_mutex_lock(&c->mu);
    int n = c->closes++;
    pthread_mutex_unlock(&c->mu);
    return n == 0;
}

/* A binary's close: replaced by a newer claim, released (its own hang-up),
 * or shutdown.  Any thread; it only queues the news for the owner. */
static void on_close(void *conn, enum lull_reason why, void *ctx)
{
    struct conn *c = conn;
    (void)ctx;
    if (!first_close(c))
        COUNT(bin_double_close);
    if (why == LULL_REPLACED)
        COUNT(bin_replaced);
    else if (why == LULL_RELEASED)
        COUNT(bin_released);
    else
        COUNT(bin_shutdown);
    postf(c, POST_LAST, "CLOSED %s\n", reason_name(why));
}

/* A phone's close.  LULL_EXPIRED comes from an expiry: on the worker that
 * advanced the wheel, which is often not the phone's owner. */
static void on_close_phone(void *dep, enum lull_reason why, void *ctx)
{
    struct conn *c = dep;
    (void)ctx;
    if (!first_close(c))
        COUNT(phone_double_close);
    switch (why) {
    case LULL_RELEASED: COUNT(phone_released); break;
    case LULL_EXPIRED:  COUNT(phone_expired); break;
    case LULL_REPLACED: COUNT(phone_replaced); break;
    default:            COUNT(phone_shutdown); break;
    }
    if (why == LULL_EXPIRED)
        postf(c, POST_LAST, "CLOSED expired (binary %s did not come back within %d ms)\n", c->id,
              opt.grace_ms);
    else
        postf(c, POST_LAST, "CLOSED %s\n", reason_name(why));
}

/* After the close and a grace period, on the thread lull frees memory on
 * (or the one in lull_registry_shutdown): drop the registry's reference. */
static void on_free(void *obj, void *ctx)
{
    (void)ctx;
    conn_put(obj);
}

/* ------------------------------------------------------------- the protocol */

/*
 * Claim and attach publish c: from then on other threads may find it and
 * queue frames on it.  The OK must come first in its stream, so it goes into
 * wbuf before the publish (c is still ours alone) and is taken back if the
 * call fails.
 */
static void do_claim(struct worker *w, struct conn *c, const char *id)
{
    char ok[RELAY_MAX_ID + 16];
    size_t mark = c->wbuf.len, n = (size_t)snprintf(ok, sizeof ok, "OK CLAIMED %s\n", id);
    strcpy(c->id, id);
    c->role = ROLE_BINARY;
    if (!obuf_put(&c->wbuf, ok, n)) {
        c->role = ROLE_NEW;
        conn_end(w, c, "out of memory");
        return;
    }
    conn_get(c);                /* the registry's reference, dropped by on_free */
    int rc = lull_registry_claim(g.reg, id, strlen(id), c, &c->gen);
    if (rc == 0) {
        COUNT(claims);
        if (conn_flush(w, c) < 0)
            conn_end(w, c, NULL);
        return;
    }
    conn_put(c);                /* not taken: no callback will come */
    c->wbuf.len = mark;
    c->role = ROLE_NEW;
    COUNT(claims_refused);
    conn_end(w, c, rc == -EEXIST ? "busy: id is held by another binary" : lull_strerror(rc));
}

static void do_attach(struct worker *w, struct conn *c, const char *id)
{
    char ok[RELAY_MAX_ID + 40];
    strcpy(c->id, id);
    c->role = ROLE_PHONE;
    c->phone_no = atomic_fetch_add_explicit(&g.phone_no, 1, memory_order_relaxed) + 1;
    size_t mark = c->wbuf.len;
    size_t n = (size_t)snprintf(ok, sizeof ok, "OK ATTACHED %s %llu\n", id,
                                (unsigned long long)c->phone_no);
    int rc = obuf_put(&c->wbuf, ok, n) ? 0 : -ENOMEM;
    if (rc == 0) {
        conn_get(c);            /* the registry's reference, dropped by on_free */
        rc = lull_registry_attach(g.reg, id, strlen(id), c);
        if (rc == 0) {
            COUNT(attaches);
            if (conn_flush(w, c) < 0)
                conn_end(w, c, NULL);
            return;
        }
        conn_put(c);
        c->wbuf.len = mark;
    }
    c->role = ROLE_NEW;
    COUNT(attach_refused);
    conn_end(w, c, rc == -ENOENT ? "no such id" : rc == -ENOSPC ? "too many phones on this id"
                   : lull_strerror(rc));
}

/* A phone's MSG: to whoever holds its id now.  Any worker, no lock. */
static void route_to_binary(struct conn *ph, const char *text)
{
    if (conn_closing(ph)) {             /* detached or expired: it speaks for no id now */
        COUNT(dropped_no_holder);
        return;
    }
    char f[RELAY_MAX_LINE + 64];
    int n = snprintf(f, sizeof f, "FROM %llu %s\n", (unsigned long long)ph->phone_no, text);
    void *b;
    /* The section keeps the binary alive from the lookup to the end of the
     * post even if another thread releases or replaces it meanwhile: its
     * free waits for a grace period, which waits for this section. */
    lull_read_lock();
    int rc = lull_registry_lookup(g.reg, ph->id, strlen(ph->id), &b, NULL);
    if (rc == 0) {
        struct conn *bin = b;
        if (strcmp(bin->id, ph->id) != 0)
            COUNT(misrouted);           /* a self-check: another id's conn came back */
        rc = conn_post(bin, f, (size_t)n, POST_DATA);
        if (rc == 0)
            COUNT(to_binary);
        else if (rc == -EPIPE)
            COUNT(dropped_not_holder);  /* closed (replaced, released) since the lookup */
        else
            COUNT(dropped_full);
    } else if (rc == -EAGAIN) {
        COUNT(dropped_grace);           /* the binary is reconnecting */
    } else {
        COUNT(dropped_no_holder);
    }
    lull_read_unlock();
}

/* A binary's TO: to one of its id's phones, if it still holds the id. */
static void route_to_phone(struct conn *bin, uint64_t no, const char *text)
{
    enum { CAP = 256 };
    void *deps[CAP], *holder;
    uint64_t gen;
    size_t n = 0;
    lull_read_lock();                   /* the phones stay valid until the unlock */
    if (lull_registry_lookup(g.reg, bin->id, strlen(bin->id), &holder, &gen) != 0 ||
        holder != bin || gen != bin->gen) {
        COUNT(dropped_not_holder);      /* replaced meanwhile: its CLOSED is on the way */
    } else if (lull_registry_dependents(g.reg, bin->id, strlen(bin->id), deps, CAP, &n) == 0) {
        struct conn *ph = NULL;
        for (size_t i = 0; i < n && !ph; i++)
            if (((struct conn *)deps[i])->phone_no == no)
                ph = deps[i];
        int rc = ph ? postf(ph, POST_DATA, "MSG %s\n", text) : -ENOENT;
        if (rc == 0)
            COUNT(to_phone);
        else if (rc == -ENOBUFS)
            COUNT(dropped_full);
        else
            COUNT(dropped_no_phone);    /* hung up, or never one of this id's phones */
    }
    lull_read_unlock();
}

static void send_stats(struct worker *w, struct conn *c)
{
    char s[RELAY_MAX_LINE];
    size_t n = (size_t)snprintf(s, sizeof s, "STATS grace_ms=%d replace=%d idle_ms=%d workers=%d "
                                "live=%ld", opt.grace_ms, opt.replace, opt.idle_ms, opt.workers,
                                atomic_load_explicit(&g.live, memory_order_relaxed));
    for (int i = 0; i < RC_COUNT && n < sizeof s - 1; i++)
        n += (size_t)snprintf(s + n, sizeof s - 1 - n, " %s=%llu", relay_counter_name[i],
                              (unsigned long long)atomic_load_explicit(&counter[i],
                                                                       memory_order_relaxed));
    s[n++] = '\n';
    reply(w, c, s, n);
}

/* Bad input closes the client with ERR and touches nobody else. */
static void bad_input(struct worker *w, struct conn *c, const char *why)
{
    COUNT(bad_input);
    conn_end(w, c, why);
}

static void on_line(struct worker *w, struct conn *c, char *line)
{
    char *rest = line, *cmd = next_word(&rest);
    if (!cmd)
        return;                                 /* blank lines are allowed */
    if (!strcmp(cmd, "PING") && !*rest) {
        reply(w, c, "PONG\n", 5);
    } else if (c->role == ROLE_NEW) {
        char *id = next_word(&rest);
        if (!strcmp(cmd, "STATS") && !id)
            send_stats(w, c);
        else if (!id || *rest || !id_valid(id) || (strcmp(cmd, "CLAIM") && strcmp(cmd, "ATTACH")))
            bad_input(w, c, "expected CLAIM <id>, ATTACH <id>, STATS or PING");
        else if (cmd[0] == 'C')
            do_claim(w, c, id);
        else
            do_attach(w, c, id);
    } else if (strlen(rest) > RELAY_MAX_TEXT) {
        bad_input(w, c, "text too long");
    } else if (c->role == ROLE_PHONE && !strcmp(cmd, "MSG")) {
        route_to_binary(c, rest);
    } else if (c->role == ROLE_BINARY && !strcmp(cmd, "TO")) {
        char *num = next_word(&rest), *end = NULL;
        unsigned long long no = num ? strtoull(num, &end, 10) : 0;
        if (no && !*end)
            route_to_phone(c, no, rest);
        else
            bad_input(w, c, "expected TO <phone> <text>");
    } else {
        bad_input(w, c, c->role == ROLE_PHONE ? "expected MSG <text> or PING"
                                              : "expected TO <phone> <text> or PING");
    }
}

static void conn_read(struct worker *w, struct conn *c)
{
    for (int round = 0; round < 4; round++) {   /* then let the other conns have a turn */
        size_t room;
        char *p = linebuf_space(&c->in, &room);
        ssize_t n = recv(c->fd, p, room, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n == 0 && c->in.len > c->in.start) {
            bad_input(w, c, "connection closed mid-frame");
            return;
        }
        if (n <= 0) {                           /* a hang-up, or a reset */
            conn_end(w, c, NULL);
            return;
        }
        c->in.len += (size_t)n;
        c->last_rx = w->now;
        char *line;
        ssize_t k;
        while ((k = linebuf_next(&c->in, &line)) >= 0) {
            on_line(w, c, line);
            if (c->fd < 0 || c->lingering)
                return;                         /* it ended: ignore what follows */
        }
        if (k == -2) {
            bad_input(w, c, "frame too long");
            return;
        }
        if ((size_t)n < room)
            return;
    }
}

/* ------------------------------------------------------------------ the loops */

/* Idle timeout: runs on the owner (its own wheel), so it may end the conn. */
static void on_idle(lull_timer t, void *arg)
{
    struct conn *c = arg;
    struct worker *w = c->owner;
    uint64_t quiet = w->now - c->last_rx, idle = (uint64_t)opt.idle_ms * MS;
    (void)t;
    c->idle = 0;
    if (c->lingering) {                         /* it never read its last line */
        conn_drop_fd(w, c);
        return;
    }
    if (quiet < idle) {                         /* traffic since: wait for the rest */
        if (lull_wheel_schedule(w->idle, idle - quiet, on_idle, c, &c->idle) != 0)
            c->idle = 0;
        return;
    }
    COUNT(idle_timeouts);
    conn_end(w, c, "idle timeout");
}

/* A lingering conn (conn_finish): write the rest, discard its input until EOF. */
static void conn_linger(struct worker *w, struct conn *c, uint32_t events)
{
    if (events & EPOLLOUT)
        conn_finish(w, c);
    if (c->fd < 0 || !(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    char sink[4096];
    for (int i = 0; i < 16; i++) {
        ssize_t n = recv(c->fd, sink, sizeof sink, 0);
        if (n > 0)
            continue;
        if (n == 0 || (errno != EAGAIN && errno != EINTR))
            conn_drop_fd(w, c);                 /* the peer closed (or reset): done */
        return;
    }
}

static void accept_some(struct worker *w)
{
    for (int i = 0; i < 64; i++) {
        int fd = accept4(g.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0 && (errno == EMFILE || errno == ENFILE) && w->spare_fd >= 0) {
            /* Out of fds: accept with the spare and close at once, rather than
             * leaving the connection queued and the listener readable forever. */
            close(w->spare_fd);
            fd = accept4(g.lfd, NULL, NULL, SOCK_CLOEXEC);
            if (fd >= 0)
                close(fd);
            w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
            continue;
        }
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN) {              /* the listener was shut down */
                epoll_ctl(w->ep, EPOLL_CTL_DEL, g.lfd, NULL);
                w->listening = false;
            }
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = calloc(1, sizeof *c);
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
        if (!c || pthread_mutex_init(&c->mu, NULL) != 0) {
            free(c);
            close(fd);
            continue;
        }
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            pthread_mutex_destroy(&c->mu);
            free(c);
            close(fd);
            continue;
        }
        c->owner = w;
        c->fd = fd;
        atomic_init(&c->refs, 1);               /* the owner's */
        atomic_fetch_add_explicit(&g.live, 1, memory_order_relaxed);
        c->last_rx = w->now;
        if (lull_wheel_schedule(w->idle, (uint64_t)opt.idle_ms * MS, on_idle, c, &c->idle) != 0)
            c->idle = 0;
        c->next = w->conns;
        if (w->conns)
            w->conns->prev = c;
        w->conns = c;
        COUNT(accepted);
    }
}

/* The owner's side of its inbox: write what others queued, close what they closed. */
static void worker_drain(struct worker *w)
{
    for (;;) {
        pthread_mutex_lock(&w->mu);
        struct conn *c = w->inbox;
        w->inbox = NULL;
        pthread_mutex_unlock(&w->mu);
        if (!c)
            return;
        while (c) {
            struct conn *next = c->inbox_next;
            pthread_mutex_lock(&c->mu);
            c->queued = false;
            bool closing = c->closing;
            pthread_mutex_unlock(&c->mu);
            if (c->fd >= 0 && c->lingering)
                conn_finish(w, c);
            else if (c->fd >= 0 && (conn_flush(w, c) < 0 || closing))
                conn_end(w, c, NULL);           /* the registry closed it, or it broke */
            conn_put(c);                        /* the inbox's reference */
            c = next;
        }
    }
}

static int timeout_ms(struct worker *w)
{
    uint64_t d = lull_wheel_next_deadline(g.wheel), d2 = lull_wheel_next_deadline(w->idle);
    if (d2 < d)
        d = d2;
    if (d == UINT64_MAX)
        return -1;
    uint64_t now = now_ns();
    if (d <= now)
        return 0;
    uint64_t ms = (d - now + MS - 1) / MS;      /* round up: never wake early */
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct epoll_event ev[64];
    self = w;
    while (atomic_load(&g.phase) != PHASE_QUIT) {
        if (w->listening && atomic_load(&g.phase) != PHASE_RUN) {
            epoll_ctl(w->ep, EPOLL_CTL_DEL, g.lfd, NULL);   /* stop accepting */
            w->listening = false;
        }
        /* What this loop retired (closed conns wait for their free
         * callback) is batched here: queue it before sleeping. */
        lull_flush();
        int n = epoll_wait(w->ep, ev, 64, timeout_ms(w));
        w->now = now_ns();
        for (int i = 0; i < n; i++) {
            if (ev[i].data.ptr == &tag_wake) {
                uint64_t v;
                (void)!read(w->efd, &v, sizeof v);
            } else if (ev[i].data.ptr == &tag_listen) {
                accept_some(w);
            } else {
                struct conn *c = ev[i].data.ptr;    /* valid: see w->dead */
                if (c->fd < 0)
                    continue;
                if (c->lingering) {
                    conn_linger(w, c, ev[i].events);
                    continue;
                }
                if ((ev[i].events & EPOLLOUT) && conn_flush(w, c) < 0)
                    conn_end(w, c, NULL);
                if (c->fd >= 0 && !c->lingering && (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                    conn_read(w, c);
            }
        }
        /* Advance after the events (docs/epoll.md).  Expiries close phones
         * of every loop: their closes reach the owners through the inboxes. */
        if (lull_wheel_next_deadline(g.wheel) <= w->now)
            lull_wheel_advance(g.wheel);
        if (lull_wheel_next_deadline(w->idle) <= w->now)
            lull_wheel_advance(w->idle);
        worker_drain(w);
        while (w->dead) {                       /* no event of this batch can name them now */
            struct conn *c = w->dead;
            w->dead = c->next;
            conn_put(c);                        /* the owner's reference */
        }
    }
    /* The registry is shut down (every close and free has run): close the rest. */
    while (w->conns)
        conn_drop_fd(w, w->conns);
    while (w->dead) {
        struct conn *c = w->dead;
        w->dead = c->next;
        conn_put(c);
    }
    lull_wheel_destroy(w->idle, 0);
    return NULL;
}

static void wake_all(void)
{
    uint64_t one = 1;
    for (int i = 0; i < opt.workers; i++)
        if (write(g.w[i].efd, &one, sizeof one) < 0)
            perror("relay: eventfd write");
}

/* ------------------------------------------------------------------- main */

static int listen_on(int port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, SOMAXCONN) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        perror("relay: listen");
        exit(1);
    }
    g.lfd = fd;
    return ntohs(a.sin_port);
}

static void usage(void)
{
    fprintf(stderr, "usage: relay_server [--port N (0: any)] [--port-fd FD] [--workers N]\n"
                    "         [--grace-ms N] [--idle-ms N] [--on-duplicate refuse|replace]\n"
                    "         [--max-phones N] [--max-out-kb N]\n");
    exit(2);
}

static bool other_flag(const char *name, const char *value)
{
    if (strcmp(name, "--on-duplicate") || (strcmp(value, "refuse") && strcmp(value, "replace")))
        return false;
    opt.replace = value[2] == 'p';
    return true;
}

static void parse_args(int argc, char **argv)
{
    static const struct flag f[] = {
        { "--port", &opt.port, 0, 65535 },      { "--port-fd", &opt.port_fd, 0, INT_MAX },
        { "--workers", &opt.workers, 1, 64 },   { "--grace-ms", &opt.grace_ms, 1, 86400000 },
        { "--idle-ms", &opt.idle_ms, 1, 86400000 }, { "--max-phones", &opt.max_phones, 1, 256 },
        { "--max-out-kb", &opt.max_out_kb, 1, 1 << 20 },
    };
    if (!parse_flags(argc, argv, f, sizeof f / sizeof f[0], other_flag))
        usage();
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    int nofile = raise_nofile();

    /* Signals go to the signalfd only: blocked here, before any thread starts. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    int sfd = signalfd(-1, &sigs, SFD_CLOEXEC);

    g.wheel = lull_wheel_create(NULL);          /* no driver thread: the workers advance it */
    struct lull_registry_opts ro = {
        .wheel = g.wheel,
        .keep_incoming = opt.replace ? lull_registry_keep_incoming : lull_registry_keep_held,
        .close = on_close, .close_dependent = on_close_phone, .free = on_free,
        .on_reclaim = LULL_INHERIT,             /* a binary that comes back gets its phones */
        .max_dependents = (size_t)opt.max_phones,
    };
    g.reg = g.wheel ? lull_registry_create(&ro) : NULL;
    if (sfd < 0 || !g.reg) {
        perror("relay: setup");
        return 1;
    }
    int port = listen_on(opt.port);

    g.w = calloc((size_t)opt.workers, sizeof *g.w);
    for (int i = 0; g.w && i < opt.workers; i++) {
        struct worker *w = &g.w[i];
        struct epoll_event we = { .events = EPOLLIN, .data.ptr = &tag_wake };
        /* EPOLLEXCLUSIVE: a new connection wakes one loop, not all of them. */
        struct epoll_event le = { .events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = &tag_listen };
        pthread_mutex_init(&w->mu, NULL);
        w->ep = epoll_create1(EPOLL_CLOEXEC);
        w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        w->idle = lull_wheel_create(NULL);
        w->listening = true;
        w->now = now_ns();
        if (w->ep < 0 || w->efd < 0 || !w->idle ||
            epoll_ctl(w->ep, EPOLL_CTL_ADD, w->efd, &we) != 0 ||
            epoll_ctl(w->ep, EPOLL_CTL_ADD, g.lfd, &le) != 0 ||
            pthread_create(&w->tid, NULL, worker_main, w) != 0) {
            perror("relay: worker");
            return 1;
        }
    }
    printf("relay: listening on 127.0.0.1:%d (%d workers, grace %d ms, idle %d ms, duplicates "
           "%s, fd limit %d)\n", port, opt.workers, opt.grace_ms, opt.idle_ms,
           opt.replace ? "replace" : "refused", nofile);
    fflush(stdout);
    if (opt.port_fd >= 0) {                     /* for a parent that asked for port 0 */
        dprintf(opt.port_fd, "%d\n", port);
        close(opt.port_fd);
    }

    struct signalfd_siginfo si;
    while (read(sfd, &si, sizeof si) != (ssize_t)sizeof si && errno == EINTR) {
    }
    fprintf(stderr, "relay: %s, shutting down\n", strsignal((int)si.ssi_signo));

    /* 1. Stop accepting: new connections are refused by the kernel. */
    atomic_store(&g.phase, PHASE_DRAIN);
    shutdown(g.lfd, SHUT_RD);
    wake_all();
    /* 2. The registry refuses new calls, waits for those in flight, then
     * closes every binary and phone (LULL_SHUTDOWN: "CLOSED shutdown", on
     * this thread, through the owners' inboxes) and runs every free.  The
     * loops keep running meanwhile, to write those lines out. */
    int rc = lull_registry_shutdown(g.reg, 10000 * MS);
    if (rc)
        fprintf(stderr, "relay: lull_registry_shutdown: %s\n", lull_strerror(rc));
    /* 3. The loops close what is left and exit. */
    atomic_store(&g.phase, PHASE_QUIT);
    wake_all();
    for (int i = 0; i < opt.workers; i++)
        pthread_join(g.w[i].tid, NULL);
    for (int i = 0; i < opt.workers; i++) {
        struct worker *w = &g.w[i];
        while (w->inbox) {                      /* queued after its loop ended */
            struct conn *c = w->inbox;
            w->inbox = c->inbox_next;
            conn_put(c);
        }
        close(w->ep);
        close(w->efd);
        close(w->spare_fd);
        pthread_mutex_destroy(&w->mu);
    }
    lull_registry_destroy(g.reg);
    lull_wheel_destroy(g.wheel, 0);             /* after the registry, which borrowed it */
    close(g.lfd);
    close(sfd);
    free(g.w);

    long live = atomic_load(&g.live);
    fprintf(stderr, "relay: accepted %llu, claims %llu, attaches %llu, messages %llu; %ld conns "
            "not freed\n", (unsigned long long)counter[RC_accepted],
            (unsigned long long)counter[RC_claims], (unsigned long long)counter[RC_attaches],
            (unsigned long long)(counter[RC_to_binary] + counter[RC_to_phone]), live);
    return rc == 0 && live == 0 ? 0 : 1;
}
