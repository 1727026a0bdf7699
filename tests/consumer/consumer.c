/*
 * consumer.c - a program built out of tree against an installed lull
 * (scripts/consumer-test.sh): a little of each layer, exit 0 on success.
 */
#include <lull.h>
#include <stdio.h>
#include <string.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "consumer: %s:%d: %s\n", \
                                          __FILE__, __LINE__, #c); return 1; } } while (0)

static int fired;
static void on_timer(lull_timer t, void *arg) { (void)t; (void)arg; fired++; }

static int closed;
static void on_close(void *conn, enum lull_reason why, void *ctx) { (void)conn; (void)why; (void)ctx; closed++; }

int main(void)
{
    printf("lull %d.%d.%d (%s)\n", LULL_VERSION_MAJOR, LULL_VERSION_MINOR,
           LULL_VERSION_PATCH, LULL_VERSION_STRING);

    /* layer 1: store */
    lull_store *s = lull_store_create(NULL);
    CHECK(s != NULL);
    uint64_t v = 0;
    CHECK(lull_store_put(s, "user:42", 7, "online", 6, &v) == 0);
    lull_read_lock();
    const struct lull_snap *snap = lull_store_get(s, "user:42", 7);
    int ok = snap && snap->value_len == 6 && memcmp(snap->value, "online", 6) == 0
             && snap->version == v;
    lull_read_unlock();
    CHECK(ok);
    CHECK(lull_store_put_if(s, "user:42", 7, "away", 4, v + 1000, NULL) == -ESTALE);
    CHECK(lull_store_destroy(s) == 0);

    /* layer 2: wheel, driven by hand */
    lull_wheel *w = lull_wheel_create(NULL);
    CHECK(w != NULL);
    lull_timer t = 0;
    CHECK(lull_wheel_schedule(w, 0, on_timer, NULL, &t) == 0 && t != 0);
    CHECK(lull_wheel_advance(w) == 1 && fired == 1);
    CHECK(lull_wheel_destroy(w, 0) == 0);

    /* layer 3: registry */
    struct lull_registry_opts ro;
    memset(&ro, 0, sizeof ro);
    ro.close = on_close;
    lull_registry *r = lull_registry_create(&ro);
    CHECK(r != NULL);
    static int conn;
    uint64_t gen = 0;
    CHECK(lull_registry_claim(r, "id", 2, &conn, &gen) == 0 && gen != 0);
    CHECK(lull_registry_release(r, "id", 2, gen) == 1 && closed == 1);
    lull_registry_destroy(r);

    printf("consumer: ok (%s)\n", lull_strerror(-ESTALE));
    return 0;
}
