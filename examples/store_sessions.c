/*
 * examples/store_sessions.c - a session table on lull_store.
 *
 * Writers account traffic to sessions with lull_store_update (copy, change,
 * publish; no lost update), readers look sessions up zero-copy inside a
 * read-side section.  At the end the totals are checked and printed.
 *
 *   store_sessions [threads] [ops-per-thread]
 */
#define _POSIX_C_SOURCE 200809L
#include <lull.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct session {            /* the value stored under "session:<n>" */
    uint64_t bytes;
    uint64_t packets;
};

enum { SESSIONS = 64 };
static lull_store *table;
static long ops = 200000;

static int account(const struct lull_snap *cur, struct lull_buf *next, void *arg)
{
    const uint64_t *len = arg;
    if (!cur) {             /* first packet of this session: make room */
        int rc = lull_buf_resize(next, sizeof(struct session));
        if (rc < 0)
            return rc;
    }
    struct session s;
    memcpy(&s, next->data, sizeof(s));
    s.bytes += *len;
    s.packets += 1;
    memcpy(next->data, &s, sizeof(s));
    return LULL_PUBLISH;
}

static void *writer(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    for (long i = 0; i < ops; i++) {
        char key[32];
        int n = snprintf(key, sizeof(key), "session:%u", rand_r(&seed) % SESSIONS);
        uint64_t len = 100;
        if (lull_store_update(table, key, (size_t)n, account, &len, NULL) != 0)
            abort();
    }
    return NULL;
}

static void *reader(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    uint64_t seen = 0;
    for (long i = 0; i < ops; i++) {
        char key[32];
        int n = snprintf(key, sizeof(key), "session:%u", rand_r(&seed) % SESSIONS);
        lull_read_lock();
        const struct lull_snap *snap = lull_store_get(table, key, (size_t)n);
        if (snap) {         /* valid, and unchanging, until the unlock */
            struct session s;
            memcpy(&s, snap->value, sizeof(s));
            if (s.bytes != s.packets * 100)
                abort();    /* a torn snapshot would show here */
            seen++;
        }
        lull_read_unlock();
    }
    return (void *)(uintptr_t)seen;
}

static int add_up(const struct lull_snap *snap, void *arg)
{
    struct session s;
    memcpy(&s, snap->value, sizeof(s));
    *(uint64_t *)arg += s.packets;
    return 0;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    if (argc > 2)
        ops = atol(argv[2]);
    if (threads < 1 || ops < 1) {
        fprintf(stderr, "usage: %s [threads] [ops-per-thread]\n", argv[0]);
        return 2;
    }
    table = lull_store_create(NULL);
    if (!table) {
        perror("lull_store_create");
        return 1;
    }

    pthread_t w[threads], r[threads];
    for (int i = 0; i < threads; i++) {
        pthread_create(&w[i], NULL, writer, (void *)(uintptr_t)(i + 1));
        pthread_create(&r[i], NULL, reader, (void *)(uintptr_t)(i + 100));
    }
    uint64_t lookups = 0;
    for (int i = 0; i < threads; i++) {
        void *seen;
        pthread_join(w[i], NULL);
        pthread_join(r[i], &seen);
        lookups += (uintptr_t)seen;
    }

    uint64_t packets = 0;
    lull_store_foreach(table, add_up, &packets);
    uint64_t want = (uint64_t)threads * (uint64_t)ops;
    printf("sessions: %zu, packets accounted: %llu of %llu, lookups that hit: %llu\n",
           lull_store_count(table), (unsigned long long)packets, (unsigned long long)want,
           (unsigned long long)lookups);
    int bad = lull_store_check(table, stderr);
    lull_store_destroy(table);
    if (packets != want || bad) {
        fprintf(stderr, "store_sessions: FAILED (lost updates or broken invariants)\n");
        return 1;
    }
    puts("store_sessions: ok, no update lost");
    return 0;
}
