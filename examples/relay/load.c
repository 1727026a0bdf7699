/*
 * examples/relay/load.c - load generator and checker for relay_server.
 *
 * One thread, one epoll loop, thousands of connections to 127.0.0.1.  Its
 * timers (message pacing, the chaos tick of every id, bad clients, the
 * progress line) live on a lull_wheel without a driver thread, advanced by
 * the loop, the way docs/epoll.md describes.
 *
 * Each id "b<i>" has a binary and --phones phones.  Every 100 ms, per id:
 * the binary may drop (an abortive close) and come back within the grace
 * period (it must get its phones back) or after it (its phones must have
 * been closed with "CLOSED expired"); a second binary may claim the live id
 * (refused, or replacing the holder, as the server's --on-duplicate says);
 * phones may hang up and come back.  Phones send timestamped messages,
 * binaries echo them back: both directions give latency samples.  Bad
 * clients (garbage, an oversized frame, an unknown id, a frame cut by a
 * half-close, a silent half-open socket) must each get one ERR line.
 *
 * At --seconds it drops every binary, waits (bounded) for every phone to
 * be closed by the expiry, asks the server for its counters (STATS) and
 * checks, exiting 1 on any violation:
 *   - every phone closed exactly once (server: attaches = closes, no double
 *     close; here: no phone saw two CLOSED lines or none);
 *   - no message delivered to a binary that did not hold the id (FROM
 *     before its OK, after its CLOSED, or naming another id);
 *   - no phone left attached to an expired id (closed by grace + slack);
 *   - the duplicate rule held, bad clients were closed with ERR;
 *   - with --spawn-server: the server exits 0 on SIGTERM.
 */
#define _GNU_SOURCE
#include "proto.h"

#include <lull.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define MS 1000000ull
#define TICK_MS 100

static struct {
    int port, seconds, ids, phones, rate, drop, reclaim, dup, hangup, bad, slack_ms;
    int grace_ms, idle_ms, workers;         /* for --spawn-server */
    const char *spawn, *on_dup;
    unsigned long long seed;
} opt = { 0, 10, 200, 8, 10, 5, 70, 2, 2, 2, 1000, 5000, 30000, 2, NULL, "refuse", 0 };

enum kind { K_BIN, K_PHONE, K_BAD };
static const char *const bad_name[] = { "garbage", "oversized frame", "unknown id",
                                        "message before a claim", "half-closed mid-frame",
                                        "silent half-open" };
enum { BAD_KINDS = 6 };

struct slot;
struct lc {                         /* one load connection */
    int fd, idx;                    /* phones: index in the slot; bad: kind */
    enum kind kind;
    struct slot *s;
    bool ok, ended, got_err, expect_replaced, dirty, want_out;
    char reason[16];                /* the word after CLOSED */
    uint64_t t_open, t_ok, last_tx, deadline;
    lull_timer tick;                /* phones: the next MSG */
    struct linebuf in;
    size_t olen;
    char out[8192];
    struct lc *next;                /* L.dirty, L.dead */
    struct lc *bnext;               /* L.bads */
};

struct slot {                       /* one id and its clients */
    char id[16];
    struct lc *holder;              /* got OK, not dropped, not replaced */
    struct lc *claimer, *dup;       /* a CLAIM waiting for its answer */
    struct lc **ph;                 /* phones[k], NULL while down */
    uint64_t *ph_next;              /* when phone k may (re)connect */
    bool phones_on;
    uint64_t next_claim, drop_t, reclaim_t, check_t;
    uint64_t held_since;            /* when the holder's OK came */
    uint64_t drop_held_since;       /* held_since of the holder that dropped last */
    int expired_since_drop;         /* by phones that attached after drop_held_since */
    lull_timer tick;
};

static struct {
    int ep;
    lull_wheel *wheel;
    struct sockaddr_in addr;
    int grace_ms, idle_ms, replace, workers;    /* the server's, from STATS */
    uint64_t now, t0, t_run;
    bool ending;
    struct slot *slots;
    struct lc *dirty, *dead, *bads;
    long open, peak, opened, connect_fail;
    unsigned long long claims, refused, replaced, reclaims_in, claims_after, drops, dups, hangups,
        attached, attach_refused, expired, sent, recv_bin, recv_phone, send_drops, bad_opened,
        bad_ok, violations, last_recv, last_claims;
    uint64_t rng;
} L;

/* Latency: a log-linear histogram, 32 buckets per power of two (< 3% error). */
static unsigned long long hist[64 * 32], hist_n;

static void hist_add(uint64_t ns)
{
    unsigned i = ns < 32 ? (unsigned)ns : (unsigned)(63 - __builtin_clzll(ns));
    if (ns >= 32)
        i = (i - 4) * 32 + (unsigned)(ns >> (i - 5)) - 32;
    hist[i]++;
    hist_n++;
}

static double hist_pct(double q)    /* in microseconds: the upper edge of the bucket */
{
    unsigned long long want = (unsigned long long)(q * (double)hist_n + 0.999999), seen = 0;
    for (unsigned i = 0; i < sizeof hist / sizeof hist[0]; i++) {
        if ((seen += hist[i]) >= want && hist[i]) {
            if (i < 32)
                return (i + 1) / 1000.0;
            unsigned e = i / 32 + 4;
            return (double)(((uint64_t)(i % 32 + 33)) << (e - 5)) / 1000.0;
        }
    }
    return 0;
}

static uint64_t rnd(void)           /* xorshift64* */
{
    L.rng ^= L.rng >> 12;
    L.rng ^= L.rng << 25;
    L.rng ^= L.rng >> 27;
    return L.rng * 2685821657736338717ull;
}
static uint64_t rnd_ms(unsigned lo, unsigned hi) { return (lo + rnd() % (hi - lo + 1)) * MS; }
/* True with a probability of pct_per_s percent per second, drawn every TICK_MS. */
static bool chance(int pct_per_s)
{
    return rnd() % (100u * 1000 / TICK_MS) < (uint64_t)pct_per_s;
}

/* What each violation breaks: the checks of the final report. */
enum { V_ONCE, V_HOLDER, V_EXPIRY, V_RULE, V_BAD, V_OTHER, V_KINDS };
static unsigned long long vcount[V_KINDS];

static void violation(int kind, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void violation(int kind, const char *fmt, ...)
{
    vcount[kind]++;
    if (++L.violations <= 20) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "relay_load: VIOLATION: ");
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
}

static const char *who(const struct lc *c)
{
    static char b[64];
    if (c->kind == K_PHONE)
        snprintf(b, sizeof b, "phone %s/%d", c->s->id, c->idx);
    else if (c->kind == K_BIN)
        snprintf(b, sizeof b, "binary %s", c->s->id);
    else
        snprintf(b, sizeof b, "bad client (%s)", bad_name[c->idx]);
    return b;
}

/* ------------------------------------------------------------ connections */

static int connect_fd(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    struct timeval tv = { 2, 0 };               /* connect honours SO_SNDTIMEO */
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* Loopback: the handshake completes within the call, so a blocking
     * connect costs nothing and spares a "connecting" state. */
    if (connect(fd, (struct sockaddr *)&L.addr, sizeof L.addr) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static struct lc *lc_open(enum kind kind, struct slot *s, int idx)
{
    struct lc *c = calloc(1, sizeof *c);
    int fd = c ? connect_fd() : -1;
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
    if (fd < 0 || fcntl(fd, F_SETFL, O_NONBLOCK) != 0 ||
        epoll_ctl(L.ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        if (fd >= 0)
            close(fd);
        free(c);
        L.connect_fail++;
        return NULL;
    }
    c->fd = fd;
    c->kind = kind;
    c->s = s;
    c->idx = idx;
    c->t_open = c->last_tx = L.now;
    if (++L.open > L.peak)
        L.peak = L.open;
    L.opened++;
    return c;
}

static void set_out(struct lc *c, bool on)
{
    struct epoll_event ev = { .events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c };
    if (c->want_out != on && epoll_ctl(L.ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
        c->want_out = on;
}

static void lc_flush(struct lc *c)
{
    if (c->fd < 0 || !c->olen)
        return;
    ssize_t n = send(c->fd, c->out, c->olen, MSG_NOSIGNAL);
    if (n > 0) {
        memmove(c->out, c->out + n, c->olen - (size_t)n);
        c->olen -= (size_t)n;
    } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        c->olen = 0;                            /* broken: the read side will see it */
    }
    set_out(c, c->olen > 0);
}

/* Queue a line; written at the end of the loop iteration (one send per conn). */
static void lc_sendf(struct lc *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void lc_sendf(struct lc *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->out + c->olen, sizeof c->out - c->olen, fmt, ap);
    va_end(ap);
    if (c->fd < 0 || n < 0 || (size_t)n >= sizeof c->out - c->olen) {
        L.send_drops++;
        return;
    }
    c->olen += (size_t)n;
    c->last_tx = L.now;
    if (!c->dirty) {
        c->dirty = true;
        c->next = L.dirty;
        L.dirty = c;
    }
}

/* Close our side.  abort: RST (a crash, and no TIME_WAIT for our ports). */
static void lc_close(struct lc *c, bool abort)
{
    if (c->fd < 0)
        return;
    if (abort) {
        struct linger lg = { 1, 0 };
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(c->fd);
    c->fd = -1;
    if (c->tick)
        lull_wheel_cancel(L.wheel, c->tick);
    c->tick = 0;
    struct slot *s = c->s;
    if (s && s->holder == c)
        s->holder = NULL;
    if (s && s->claimer == c)
        s->claimer = NULL;
    if (s && s->dup == c)
        s->dup = NULL;
    if (s && c->kind == K_PHONE && s->ph[c->idx] == c) {
        s->ph[c->idx] = NULL;
        s->ph_next[c->idx] = L.now + rnd_ms(100, 500);
    }
    if (c->kind == K_BAD) {
        struct lc **pp = &L.bads;
        while (*pp && *pp != c)
            pp = &(*pp)->bnext;
        if (*pp)
            *pp = c->bnext;
    }
    L.open--;
    if (!c->dirty) {                            /* freed after this iteration */
        c->dirty = true;
        c->next = L.dead;
        L.dead = c;
    }
}

/* ------------------------------------------------------------ what arrives */

static void phone_tick(lull_timer t, void *arg);

static void on_ok(struct lc *c, char *rest)
{
    struct slot *s = c->s;
    char *what = next_word(&rest), *id = next_word(&rest), *no = next_word(&rest);
    if (!what || !id || strcmp(id, s->id) || c->ok || c->ended) {
        violation(V_OTHER, "%s: unexpected OK %s %s", who(c), what ? what : "", id ? id : "");
        return;
    }
    c->ok = true;
    c->t_ok = L.now;
    if (c->kind == K_PHONE) {
        L.attached++;
        if (!no)
            violation(V_OTHER, "%s: OK ATTACHED without a phone number", who(c));
        lull_wheel_schedule(L.wheel, rnd_ms(0, 1000 / (unsigned)opt.rate), phone_tick, c,
                            &c->tick);
        return;
    }
    L.claims++;
    if (L.ending) {                             /* answered after the end: leave at once */
        lc_close(c, true);
        return;
    }
    if (c == s->dup) {                          /* a second claim of a live id */
        s->dup = NULL;
        if (!L.replace)
            violation(V_RULE, "%s: a second binary got the live id (duplicates are refused)",
                      who(c));
        L.replaced++;
    } else if (c == s->claimer) {
        s->claimer = NULL;
        if (s->drop_t && !s->reclaim_t) {       /* back after a drop */
            s->reclaim_t = L.now;
            if (L.now < s->drop_t + (uint64_t)L.grace_ms * MS) {
                L.reclaims_in++;
                if (s->expired_since_drop)
                    violation(V_EXPIRY, "%s: phones expired although it was back %.0f ms "
                              "after its drop", who(c), (double)(L.now - s->drop_t) / 1e6);
            } else {
                L.claims_after++;
            }
        }
    }
    if (s->holder && s->holder != c)
        s->holder->expect_replaced = true;
    s->holder = c;
    s->held_since = L.now;
    s->phones_on = true;
}

static void on_err(struct lc *c, const char *text)
{
    struct slot *s = c->s;
    if (c->got_err || c->ended)
        violation(V_ONCE, "%s: ERR after its end: %s", who(c), text);
    c->got_err = c->ended = true;
    if (c->kind == K_BAD)
        return;
    bool busy = !strncmp(text, "busy", 4);
    if (c->kind == K_BIN && busy && (c == s->claimer || c == s->dup)) {
        if (L.replace)
            violation(V_RULE, "%s: claim refused although duplicates replace the holder", who(c));
        if (c == s->claimer)                    /* the server has not seen the drop yet */
            s->next_claim = L.now + 20 * MS;
        else
            L.dups++;
        L.refused++;
    } else if (c->kind == K_PHONE && !strcmp(text, "no such id")) {
        L.attach_refused++;                     /* its binary is away: try again later */
    } else {
        violation(V_OTHER, "%s: unexpected ERR %s", who(c), text);
    }
    if (s && s->holder == c)
        s->holder = NULL;
}

static void on_closed(struct lc *c, const char *why)
{
    struct slot *s = c->s;
    if (c->ended) {
        violation(V_ONCE, "%s: closed twice (CLOSED %s after %s)", who(c), why,
                  c->got_err ? "ERR" : c->reason);
        return;
    }
    c->ended = true;
    snprintf(c->reason, sizeof c->reason, "%s", why);
    if (c->kind == K_PHONE && !strcmp(why, "expired")) {
        L.expired++;
        /* Only a phone that asked to attach after the dropped binary got
         * its OK can owe its expiry to that drop: one that attached earlier
         * may be reading the expiry of an older grace period late. */
        if (c->t_open <= s->drop_held_since)
            return;
        s->expired_since_drop++;
        if (s->reclaim_t && s->reclaim_t < s->drop_t + (uint64_t)L.grace_ms * MS)
            violation(V_EXPIRY, "%s: expired although its id was back %.0f ms after its drop",
                      who(c), (double)(s->reclaim_t - s->drop_t) / 1e6);
    } else if (!(c->kind == K_BIN && !strcmp(why, "replaced") &&
                 (c->expect_replaced || (L.replace && s->dup)))) {
        /* (the newcomer's OK and this CLOSED come on two sockets, in any order) */
        violation(V_OTHER, "%s: unexpected CLOSED %s", who(c), why);
    }
    if (s && s->holder == c)
        s->holder = NULL;
}

static void on_from(struct lc *c, char *rest)  /* binary: FROM <phone> <id> <seq> <ts> */
{
    char *no = next_word(&rest), *id = next_word(&rest), *seq = next_word(&rest),
         *ts = next_word(&rest);
    if (!c->ok || c->ended)
        violation(V_HOLDER, "%s: message delivered while it did not hold the id (%s)", who(c),
                  c->ended ? "after its close" : "before its OK");
    if (!ts || strcmp(id, c->s->id))
        violation(V_HOLDER, "%s: message for another id: %s", who(c), id ? id : "(none)");
    if (!ts)
        return;
    hist_add(now_ns() - strtoull(ts, NULL, 10));
    L.recv_bin++;
    if (!L.ending && c->ok && !c->ended)
        lc_sendf(c, "TO %s %s %s %llu\n", no, id, seq, (unsigned long long)now_ns());
}

static void on_msg(struct lc *c, char *rest)   /* phone: MSG <id> <seq> <ts> */
{
    char *id = next_word(&rest), *seq = next_word(&rest), *ts = next_word(&rest);
    if (!c->ok || c->ended || !ts || strcmp(id, c->s->id) || !seq)
        violation(V_HOLDER, "%s: message it should not get: %s", who(c), id ? id : "");
    if (ts) {
        hist_add(now_ns() - strtoull(ts, NULL, 10));
        L.recv_phone++;
    }
}

static void on_line(struct lc *c, char *line)
{
    char *rest = line, *w = next_word(&rest);
    if (!w || !strcmp(w, "PONG"))
        return;
    if (!strcmp(w, "ERR"))
        on_err(c, rest);
    else if (!strcmp(w, "CLOSED") && c->kind != K_BAD)
        on_closed(c, (w = next_word(&rest)) ? w : "");
    else if (c->kind == K_BAD)
        violation(V_BAD, "%s: got '%s' instead of ERR", who(c), w);
    else if (!strcmp(w, "OK"))
        on_ok(c, rest);
    else if (!strcmp(w, "FROM") && c->kind == K_BIN)
        on_from(c, rest);
    else if (!strcmp(w, "MSG") && c->kind == K_PHONE)
        on_msg(c, rest);
    else
        violation(V_OTHER, "%s: unexpected line '%s'", who(c), w);
}

/* The server closed the connection. */
static void lc_gone(struct lc *c)
{
    if (c->kind == K_BAD && c->got_err)
        L.bad_ok++;
    else if (!c->ended)
        violation(c->kind == K_BAD ? V_BAD : V_ONCE, "%s: closed by the server without ERR or "
                  "CLOSED", who(c));
    if (c->expect_replaced && strcmp(c->reason, "replaced"))
        violation(V_RULE, "%s: lost to a second binary but not closed as replaced", who(c));
    lc_close(c, false);
}

static void lc_readable(struct lc *c)
{
    for (;;) {
        size_t room;
        char *p = linebuf_space(&c->in, &room);
        ssize_t n = recv(c->fd, p, room, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            lc_gone(c);
            return;
        }
        c->in.len += (size_t)n;
        char *line;
        ssize_t k;
        while ((k = linebuf_next(&c->in, &line)) >= 0) {
            on_line(c, line);
            if (c->fd < 0)
                return;                         /* we closed it (a claim answered too late) */
        }
        if (k == -2) {
            violation(V_OTHER, "%s: the server sent an over-long line", who(c));
            lc_close(c, true);
            return;
        }
    }
}

/* ------------------------------------------------------------ the timers */

static void phone_tick(lull_timer t, void *arg)  /* a phone's next message */
{
    struct lc *c = arg;
    (void)t;
    c->tick = 0;
    if (L.ending || c->fd < 0 || c->ended)
        return;
    lc_sendf(c, "MSG %s %llu %llu\n", c->s->id, (unsigned long long)++L.sent,
             (unsigned long long)now_ns());
    uint64_t period = 1000 * MS / (uint64_t)opt.rate;
    lull_wheel_schedule(L.wheel, period - period / 10 + rnd() % (period / 5 + 1), phone_tick, c,
                        &c->tick);
}

static void claim(struct slot *s, struct lc **where)
{
    if ((*where = lc_open(K_BIN, s, 0)))
        lc_sendf(*where, "CLAIM %s\n", s->id);
}

static void slot_tick(lull_timer t, void *arg)   /* every TICK_MS, per id */
{
    struct slot *s = arg;
    uint64_t now = L.now, grace = (uint64_t)L.grace_ms * MS;
    (void)t;
    s->tick = 0;
    if (L.ending)
        return;
    if (!s->holder && !s->claimer && !s->dup && now >= s->next_claim)
        claim(s, &s->claimer);
    if (s->check_t && now >= s->check_t) {      /* the id dropped without a reclaim expired */
        s->check_t = 0;
        for (int k = 0; k < opt.phones; k++) {
            struct lc *p = s->ph[k];
            if (p && p->ok && !p->ended && p->t_ok < s->drop_t + grace)
                violation(V_EXPIRY, "%s: still attached %d ms after its id expired", who(p),
                          L.grace_ms + opt.slack_ms);
        }
    }
    struct lc *h = s->holder;
    if (h && h->ok && !h->ended && !s->dup) {
        if (chance(opt.drop)) {                 /* drop; back within grace, or after it */
            bool within = rnd() % 100 < (uint64_t)opt.reclaim;
            s->drop_t = now;
            s->drop_held_since = s->held_since;
            s->reclaim_t = 0;
            s->expired_since_drop = 0;
            s->next_claim = within ? now + rnd_ms(0, (unsigned)L.grace_ms / 2)
                                   : now + grace + (uint64_t)opt.slack_ms * MS + rnd_ms(0, 200);
            s->check_t = within ? 0 : now + grace + (uint64_t)opt.slack_ms * MS;
            lc_close(h, true);
            L.drops++;
        } else if (chance(opt.dup)) {
            claim(s, &s->dup);
        }
    }
    uint64_t quiet = (uint64_t)L.idle_ms * MS / 3;  /* stay clear of the idle timeout */
    if (s->holder && now - s->holder->last_tx > quiet)
        lc_sendf(s->holder, "PING\n");
    for (int k = 0; k < opt.phones; k++) {
        struct lc *p = s->ph[k];
        if (!p && s->phones_on && now >= s->ph_next[k]) {
            if ((s->ph[k] = lc_open(K_PHONE, s, k)))
                lc_sendf(s->ph[k], "ATTACH %s\n", s->id);
            else
                s->ph_next[k] = now + rnd_ms(100, 500);
        } else if (p && p->ok && !p->ended && chance(opt.hangup)) {
            lc_close(p, true);
            L.hangups++;
        } else if (p && now - p->last_tx > quiet) {
            lc_sendf(p, "PING\n");
        }
    }
    lull_wheel_schedule(L.wheel, TICK_MS * MS, slot_tick, s, &s->tick);
}

static void bad_tick(lull_timer t, void *arg)
{
    static unsigned n;
    (void)t, (void)arg;
    for (struct lc *b = L.bads, *next; b; b = next) {
        next = b->bnext;
        if (L.now > b->deadline) {
            violation(V_BAD, "%s: not closed with ERR in time", who(b));
            lc_close(b, true);                  /* unlinks it from L.bads */
        }
    }
    if (L.ending)
        return;
    int kind = (int)(n++ % BAD_KINDS);
    if (kind == 5 && L.idle_ms > 60000)
        kind = 0;                               /* would outlast the run */
    struct lc *c = lc_open(K_BAD, NULL, kind);
    if (c) {
        static const char *const what[] = { "HELLO relay\n", NULL, "ATTACH no-such-id\n",
                                            "TO 1 hi\n", "CLAIM b0", "ATTACH b0" };
        if (kind == 1) {
            memset(c->out, 'x', 5000);
            c->olen = 5000;
        } else {
            lc_sendf(c, "%s", what[kind]);
        }
        lc_flush(c);
        if (kind == 4)
            shutdown(c->fd, SHUT_WR);
        c->deadline = L.now + (uint64_t)(opt.slack_ms + 1000 + (kind == 5 ? L.idle_ms : 0)) * MS;
        c->bnext = L.bads;
        L.bads = c;
        L.bad_opened++;
    }
    static lull_timer bt;
    lull_wheel_schedule(L.wheel, 1000 * MS / (uint64_t)opt.bad, bad_tick, NULL, &bt);
}

static void progress(lull_timer t, void *arg)
{
    (void)t, (void)arg;
    unsigned long long recv = L.recv_bin + L.recv_phone;
    fprintf(stderr, "relay_load: %3.0f s  %ld open  %llu claims/s  %llu msgs/s  p50 %.0f us  "
            "p99 %.0f us  %llu violations\n", (double)(L.now - L.t0) / 1e9, L.open,
            L.claims - L.last_claims, recv - L.last_recv, hist_pct(0.5), hist_pct(0.99),
            L.violations);
    L.last_recv = recv;
    L.last_claims = L.claims;
    static lull_timer pt;
    lull_wheel_schedule(L.wheel, 1000 * MS, progress, NULL, &pt);
}

/* ------------------------------------------------------------ the loop */

static void run_until(uint64_t until, bool drain)
{
    struct epoll_event ev[256];
    while ((L.now = now_ns()) < until && !(drain && L.open == 0)) {
        uint64_t d = lull_wheel_next_deadline(L.wheel);
        d = d < until ? d : until;
        int ms = d <= L.now ? 0 : (int)((d - L.now + MS - 1) / MS);
        int n = epoll_wait(L.ep, ev, 256, ms);
        L.now = now_ns();
        for (int i = 0; i < n; i++) {
            struct lc *c = ev[i].data.ptr;      /* valid: closed ones wait on L.dead */
            if (c->fd >= 0 && (ev[i].events & EPOLLOUT))
                lc_flush(c);
            if (c->fd >= 0 && (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                lc_readable(c);
        }
        if (lull_wheel_next_deadline(L.wheel) <= L.now)
            lull_wheel_advance(L.wheel);
        while (L.dirty) {
            struct lc *c = L.dirty;
            L.dirty = c->next;
            c->dirty = false;
            if (c->fd >= 0)
                lc_flush(c);
            else {                              /* closed while dirty: free it now */
                c->next = L.dead;
                L.dead = c;
                c->dirty = true;
            }
        }
        while (L.dead) {
            struct lc *c = L.dead;
            L.dead = c->next;
            free(c);
        }
    }
}

/* ------------------------------------------------------------ STATS, the server */

struct stats {
    unsigned long long c[RC_COUNT];
    long live;
    int grace_ms, idle_ms, replace, workers;
};

/* Ask the server for its counters, on a connection of its own (blocking). */
static int stats_get(struct stats *st)
{
    char buf[RELAY_MAX_LINE + 1];
    size_t len = 0;
    ssize_t n = 0;
    int fd = connect_fd();
    struct timeval tv = { 10, 0 };
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (send(fd, "STATS\n", 6, MSG_NOSIGNAL) == 6)
        while (!memchr(buf, '\n', len) && len < RELAY_MAX_LINE &&
               (n = recv(fd, buf + len, RELAY_MAX_LINE - len, 0)) > 0)
            len += (size_t)n;
    close(fd);
    char *nl = memchr(buf, '\n', len), *rest = buf, *w;
    if (!nl)
        return -1;
    *nl = '\0';
    memset(st, 0, sizeof *st);
    if (!(w = next_word(&rest)) || strcmp(w, "STATS"))
        return -1;
    while ((w = next_word(&rest))) {
        char *eq = strchr(w, '=');
        if (!eq)
            continue;
        *eq++ = '\0';
        unsigned long long v = strtoull(eq, NULL, 10);
        if (!strcmp(w, "grace_ms"))
            st->grace_ms = (int)v;
        else if (!strcmp(w, "idle_ms"))
            st->idle_ms = (int)v;
        else if (!strcmp(w, "replace"))
            st->replace = (int)v;
        else if (!strcmp(w, "workers"))
            st->workers = (int)v;
        else if (!strcmp(w, "live"))
            st->live = (long)v;
        for (int i = 0; i < RC_COUNT; i++)
            if (!strcmp(w, relay_counter_name[i]))
                st->c[i] = v;
    }
    return st->grace_ms > 0 ? 0 : -1;
}

/* Start the server on port 0; it writes the port it got to fd 3. */
static pid_t spawn_server(void)
{
    int p[2];
    char gr[16], id[16], wk[16], port[16] = "";
    snprintf(gr, sizeof gr, "%d", opt.grace_ms);
    snprintf(id, sizeof id, "%d", opt.idle_ms);
    snprintf(wk, sizeof wk, "%d", opt.workers);
    if (pipe2(p, O_CLOEXEC) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);       /* never outlive the load generator */
        if (p[1] == 3 ? fcntl(3, F_SETFD, 0) != 0 : dup2(p[1], 3) != 3)
            _exit(127);
        execl(opt.spawn, opt.spawn, "--port", "0", "--port-fd", "3", "--grace-ms", gr,
              "--idle-ms", id, "--on-duplicate", opt.on_dup, "--workers", wk, (char *)NULL);
        perror("relay_load: exec");
        _exit(127);
    }
    close(p[1]);
    struct pollfd pf = { p[0], POLLIN, 0 };
    if (pid > 0 && (poll(&pf, 1, 30000) != 1 || read(p[0], port, sizeof port - 1) <= 0 ||
                    (opt.port = atoi(port)) <= 0)) {
        fprintf(stderr, "relay_load: the server did not report its port\n");
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        pid = -1;
    }
    close(p[0]);
    return pid;
}

/* SIGTERM, then wait (30 s at most) for its exit: it must be 0. */
static bool stop_server(pid_t pid)
{
    int st = 0, pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    struct pollfd pf = { pfd, POLLIN, 0 };
    kill(pid, SIGTERM);
    if (pfd >= 0 && poll(&pf, 1, 30000) != 1) {
        fprintf(stderr, "relay_load: the server did not exit within 30 s of SIGTERM\n");
        kill(pid, SIGKILL);
    }
    if (pfd >= 0)
        close(pfd);
    if (waitpid(pid, &st, 0) != pid)
        return false;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return true;
    fprintf(stderr, "relay_load: the server %s %d\n",
            WIFEXITED(st) ? "exited with" : "died of signal",
            WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    return false;
}

/* ------------------------------------------------------------ main */

static void usage(void)
{
    fprintf(stderr,
            "usage: relay_load (--port N | --spawn-server PATH) [--seconds N] [--ids N]\n"
            "         [--phones N per id] [--rate N msgs/s per phone] [--drop N %%/s]\n"
            "         [--reclaim N %% of drops back within grace] [--dup N %%/s]\n"
            "         [--hangup N %%/s] [--bad N per s] [--slack-ms N] [--seed N]\n"
            "       with --spawn-server: [--grace-ms N] [--idle-ms N] [--workers N]\n"
            "         [--on-duplicate refuse|replace]\n");
    exit(2);
}

static bool other_flag(const char *name, const char *value)
{
    if (!strcmp(name, "--spawn-server"))
        opt.spawn = value;
    else if (!strcmp(name, "--on-duplicate"))
        opt.on_dup = value;
    else if (!strcmp(name, "--seed"))
        opt.seed = strtoull(value, NULL, 10);
    else
        return false;
    return true;
}

static void parse_args(int argc, char **argv)
{
    static const struct flag f[] = {
        { "--port", &opt.port, 1, 65535 },      { "--seconds", &opt.seconds, 1, 3600 },
        { "--ids", &opt.ids, 1, 100000 },       { "--phones", &opt.phones, 0, 256 },
        { "--rate", &opt.rate, 1, 1000 },       { "--drop", &opt.drop, 0, 100 },
        { "--reclaim", &opt.reclaim, 0, 100 },  { "--dup", &opt.dup, 0, 100 },
        { "--hangup", &opt.hangup, 0, 100 },    { "--bad", &opt.bad, 0, 100 },
        { "--slack-ms", &opt.slack_ms, 0, 60000 }, { "--grace-ms", &opt.grace_ms, 1, 600000 },
        { "--idle-ms", &opt.idle_ms, 1, 86400000 }, { "--workers", &opt.workers, 1, 64 },
    };
    if (!parse_flags(argc, argv, f, sizeof f / sizeof f[0], other_flag) || !opt.spawn == !opt.port)
        usage();
}

static bool check(bool ok, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int failed_checks;

static bool check(bool ok, const char *what, const char *fmt, ...)
{
    va_list ap;
    failed_checks += !ok;
    va_start(ap, fmt);
    printf("  %s  %s: ", ok ? "PASS" : "FAIL", what);
    vprintf(fmt, ap);
    putchar('\n');
    va_end(ap);
    return ok;
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    int nofile = raise_nofile();
    if (nofile < opt.ids * (opt.phones + 2) + opt.bad * 40 + 64) {
        fprintf(stderr, "relay_load: %d ids x %d phones need more fds than the limit (%d)\n",
                opt.ids, opt.phones, nofile);
        return 2;
    }
    L.rng = opt.seed ? opt.seed : now_ns() | 1;
    unsigned long long seed = L.rng;
    pid_t pid = opt.spawn ? spawn_server() : 0;
    if (pid < 0)
        return 1;
    L.addr.sin_family = AF_INET;
    L.addr.sin_port = htons((uint16_t)opt.port);
    L.addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    struct stats s0, s1;
    if (stats_get(&s0) != 0) {
        fprintf(stderr, "relay_load: no STATS from 127.0.0.1:%d\n", opt.port);
        return 1;
    }
    L.grace_ms = s0.grace_ms;
    L.idle_ms = s0.idle_ms;
    L.replace = s0.replace;
    L.ep = epoll_create1(EPOLL_CLOEXEC);
    L.wheel = lull_wheel_create(NULL);          /* no driver thread: run_until advances it */
    L.slots = calloc((size_t)opt.ids, sizeof *L.slots);
    if (L.ep < 0 || !L.wheel || !L.slots) {
        perror("relay_load");
        return 1;
    }
    L.now = L.t0 = now_ns();
    for (int i = 0; i < opt.ids; i++) {
        struct slot *s = &L.slots[i];
        snprintf(s->id, sizeof s->id, "b%d", i);
        s->ph = calloc((size_t)opt.phones + 1, sizeof *s->ph);
        s->ph_next = calloc((size_t)opt.phones + 1, sizeof *s->ph_next);
        if (!s->ph || !s->ph_next)
            return 1;
        lull_wheel_schedule(L.wheel, rnd_ms(0, 1000), slot_tick, s, &s->tick);  /* spread out */
    }
    static lull_timer bt, pt;
    if (opt.bad)
        lull_wheel_schedule(L.wheel, 500 * MS, bad_tick, NULL, &bt);
    lull_wheel_schedule(L.wheel, 1000 * MS, progress, NULL, &pt);

    run_until(L.t0 + (uint64_t)opt.seconds * 1000 * MS, false);

    /* The end: every binary drops for good.  Its phones must all be closed
     * by the expiry within grace + slack; bad clients by their deadlines. */
    L.t_run = L.now - L.t0;
    L.ending = true;
    uint64_t until = L.now + (uint64_t)(L.grace_ms + opt.slack_ms + 5000) * MS;
    for (int i = 0; i < opt.ids; i++) {
        struct slot *s = &L.slots[i];
        if (s->tick)
            lull_wheel_cancel(L.wheel, s->tick);
        s->tick = 0;
        s->drop_t = L.now;                      /* a drop with no reclaim: expiries expected */
        s->reclaim_t = 0;
        if (s->holder)                          /* claims in flight leave on their answer */
            lc_close(s->holder, true);
    }
    for (struct lc *b = L.bads; b; b = b->bnext)
        if (b->deadline + 1000 * MS > until)
            until = b->deadline + 1000 * MS;
    run_until(until, true);
    uint64_t t_drain = L.now - L.t0 - L.t_run;
    long left = 0;
    for (int i = 0; i < opt.ids; i++)
        for (int k = 0; k < opt.phones; k++)
            if (L.slots[i].ph[k]) {
                left++;
                violation(V_EXPIRY, "%s: still open %.1f s after every binary left",
                          who(L.slots[i].ph[k]), (double)t_drain / 1e9);
            }
    for (struct lc *b = L.bads; b; b = b->bnext)
        violation(V_BAD, "%s: still open at the end", who(b));
    if (stats_get(&s1) != 0) {
        fprintf(stderr, "relay_load: no STATS at the end\n");
        memset(&s1, 0, sizeof s1);
        L.violations++;
        vcount[V_OTHER]++;
    }
    unsigned long long d[RC_COUNT];
    for (int i = 0; i < RC_COUNT; i++)
        d[i] = s1.c[i] - s0.c[i];

    double secs = (double)L.t_run / 1e9, recv = (double)(L.recv_bin + L.recv_phone);
    printf("relay_load: %.1f s run + %.1f s drain against 127.0.0.1:%d (server: %d workers, grace "
           "%d ms, idle %d ms, duplicates %s), seed %llu\n", secs, (double)t_drain / 1e9, opt.port,
           s0.workers, L.grace_ms, L.idle_ms, L.replace ? "replace the holder" : "refused", seed);
    printf("connections: %ld opened, %ld open at the peak, %ld connect failures\n", L.opened,
           L.peak, L.connect_fail);
    printf("claims:      %llu granted (%.1f/s): %llu reclaims within grace, %llu after it; %llu "
           "drops; duplicates: %llu refused, %llu replaced the holder; %llu reclaims refused "
           "(drop not seen yet)\n", L.claims, (double)L.claims / secs, L.reclaims_in,
           L.claims_after, L.drops, L.dups, L.replaced, L.refused - L.dups);
    printf("phones:      %llu attached, %llu hung up, %llu closed by an expiry, %llu attaches "
           "refused (id away)\n", L.attached, L.hangups, L.expired, L.attach_refused);
    printf("messages:    %llu sent by phones, %.0f delivered (%.0f/s; %llu to binaries, %llu to "
           "phones), %llu not sent (buffer full)\n", L.sent, recv, recv / secs, L.recv_bin,
           L.recv_phone, L.send_drops);
    printf("latency:     one way, either direction, %llu samples: p50 %.0f us, p99 %.0f us, "
           "p99.9 %.0f us, max %.0f us\n", hist_n, hist_pct(0.5), hist_pct(0.99),
           hist_pct(0.999), hist_pct(1.0));
    printf("bad clients: %llu opened, %llu closed with ERR\nserver:     ", L.bad_opened, L.bad_ok);
    for (int i = 0; i < RC_COUNT; i++)
        printf(" %s=%llu", relay_counter_name[i], d[i]);
    printf("\nchecks:\n");

    unsigned long long ph_closed = d[RC_phone_released] + d[RC_phone_expired] +
                                   d[RC_phone_replaced] + d[RC_phone_shutdown],
                       bin_closed = d[RC_bin_replaced] + d[RC_bin_released] + d[RC_bin_shutdown];
    bool ok = true;
    ok &= check(d[RC_attaches] == ph_closed && !d[RC_phone_double_close] && !vcount[V_ONCE] &&
                L.attached == d[RC_attaches], "every phone closed exactly once",
                "server: %llu attached, %llu closed (%llu released, %llu expired), %llu double; "
                "here: %llu OKs, %llu errors", d[RC_attaches], ph_closed, d[RC_phone_released],
                d[RC_phone_expired], d[RC_phone_double_close], L.attached, vcount[V_ONCE]);
    ok &= check(d[RC_claims] == bin_closed && !d[RC_bin_double_close] && L.claims == d[RC_claims],
                "every claim closed exactly once", "server: %llu claims, %llu closes, %llu double",
                d[RC_claims], bin_closed, d[RC_bin_double_close]);
    ok &= check(!vcount[V_HOLDER] && !d[RC_misrouted],
                "no message delivered to a binary that did not hold the id",
                "%llu seen here, server misrouted %llu, %llu refused as sent after a close",
                vcount[V_HOLDER], d[RC_misrouted], d[RC_dropped_not_holder]);
    ok &= check(!vcount[V_EXPIRY], "no phone left attached to an expired id",
                "%llu errors, %ld phones open after the drain", vcount[V_EXPIRY], left);
    ok &= check(!vcount[V_RULE], "duplicate claims follow the rule",
                "%s: %llu refused, %llu replaced, %llu errors", L.replace ? "replace" : "refuse",
                L.dups, L.replaced, vcount[V_RULE]);
    ok &= check(!vcount[V_BAD] && L.bad_ok == L.bad_opened, "bad clients closed with ERR",
                "%llu of %llu; server bad_input %llu, idle_timeouts %llu", L.bad_ok, L.bad_opened,
                d[RC_bad_input], d[RC_idle_timeouts]);
    ok &= check(!vcount[V_OTHER], "nothing else unexpected", "%llu errors", vcount[V_OTHER]);
    fflush(stdout);

    lull_wheel_destroy(L.wheel, 0);
    close(L.ep);
    for (int i = 0; i < opt.ids; i++) {
        free(L.slots[i].ph);
        free(L.slots[i].ph_next);
    }
    free(L.slots);
    if (pid > 0)
        ok &= check(stop_server(pid), "server exits 0 on SIGTERM", "pid %d", (int)pid);
    printf("relay_load: %s (%d checks failed, %llu violations seen here)\n", ok ? "PASS" : "FAIL",
           failed_checks, L.violations);
    return ok ? 0 : 1;
}
