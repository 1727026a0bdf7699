/*
 * examples/registry_ship_rule.c - a protocol's own double-connection rule.
 *
 * SHIP (the EEBus transport), section 12.2.2: when two SHIP nodes connect to
 * each other at the same time, each ends up with two connections to the same
 * peer.  The node with the bigger SKI (its certificate's Subject Key
 * Identifier) keeps only the most recent connection and closes the other;
 * the node with the smaller SKI keeps what it has and lets its peer decide
 * (it will see the dropped connection close).
 *
 * In a lull registry the id is the peer's SKI and keep_incoming is that
 * rule.  It runs with no lock held and may run more than once for one
 * claim, so it is a pure function of the two connections; the registry
 * closes the loser (LULL_REPLACED) after the decision is published, exactly
 * once, however many claims race.
 *
 * Run: ./registry_ship_rule   (exit status 0 when every check holds)
 */
#include <lull.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ship_conn {
    const char *name;
    uint64_t established_ns;    /* when the SHIP handshake completed */
    int closed;                 /* how often the registry closed it */
    enum lull_reason why;
};

struct ship_node {
    const char *local_ski;      /* 40 lower-case hex digits */
};

/* SHIP 12.2.2.  SKIs of equal length in lower-case hex compare as strings. */
static bool ship_keep_incoming(const void *id, size_t id_len, void *held, void *incoming,
                               void *ctx)
{
    const struct ship_node *me = ctx;
    const struct ship_conn *h = held, *in = incoming;
    if (strlen(me->local_ski) != id_len)
        return false;                           /* not a SKI: keep what we have */
    if (memcmp(me->local_ski, id, id_len) > 0)  /* ours is bigger: most recent wins */
        return in->established_ns > h->established_ns;
    return false;                               /* ours is smaller: the peer decides */
}

static void ship_close(void *conn, enum lull_reason why, void *ctx)
{
    struct ship_conn *c = conn;
    (void)ctx;
    c->closed++;
    c->why = why;
    printf("  close %s (%s)\n", c->name,
           why == LULL_REPLACED ? "replaced" : why == LULL_RELEASED ? "released"
           : why == LULL_SHUTDOWN ? "shutdown" : "expired");
}

static int failures;
#define CHECK(c) do { if (!(c)) { fprintf(stderr, "FAILED: %s (line %d)\n", #c, __LINE__); \
                                  failures++; } } while (0)

/* One node sees two connections to one peer, claimed in the given order. */
static void double_connection(const char *local, const char *remote, int first, int second,
                              const char *expect_holder)
{
    struct ship_node me = { local };
    struct lull_registry_opts o = { .keep_incoming = ship_keep_incoming, .close = ship_close,
                                    .ctx = &me };
    lull_registry *r = lull_registry_create(&o);
    if (!r) {
        perror("lull_registry_create");
        exit(1);
    }
    struct ship_conn c[2] = { { "older", 1000, 0, 0 }, { "newer", 2000, 0, 0 } };
    uint64_t gen[2] = { 0, 0 };
    int rc[2];

    printf("local SKI %.8s..., peer %.8s...: claims %s then %s\n", local, remote,
           c[first].name, c[second].name);
    rc[first] = lull_registry_claim(r, remote, strlen(remote), &c[first], &gen[first]);
    rc[second] = lull_registry_claim(r, remote, strlen(remote), &c[second], &gen[second]);
    CHECK(rc[first] == 0);

    void *holder = NULL;
    CHECK(lull_registry_lookup(r, remote, strlen(remote), &holder, NULL) == 0);
    printf("  holder: %s\n", holder ? ((struct ship_conn *)holder)->name : "none");
    CHECK(holder && strcmp(((struct ship_conn *)holder)->name, expect_holder) == 0);

    /* The loser: closed once with LULL_REPLACED if it had been accepted, or
     * refused (-EEXIST, no callback: the transport closes it itself). */
    for (int i = 0; i < 2; i++) {
        if (&c[i] == holder)
            CHECK(c[i].closed == 0);
        else if (rc[i] == 0)
            CHECK(c[i].closed == 1 && c[i].why == LULL_REPLACED);
        else
            CHECK(rc[i] == -EEXIST && c[i].closed == 0);
    }
    lull_registry_destroy(r);                   /* closes the holder: LULL_SHUTDOWN */
    CHECK(((struct ship_conn *)holder)->closed == 1);
}

int main(void)
{
    const char *big = "f3c1e9a0b27d4c5e8f1a2b3c4d5e6f708192a3b4";
    const char *small = "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567";

    /* The bigger SKI keeps the most recent connection, whatever the order
     * its claims ran in. */
    double_connection(big, small, 0, 1, "newer");
    double_connection(big, small, 1, 0, "newer");
    /* The smaller SKI keeps the one it has. */
    double_connection(small, big, 0, 1, "older");
    double_connection(small, big, 1, 0, "newer");

    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
