/*
 * dlopen.c - a program that loads the installed liblull.so.0 at run time,
 * as a server loads a plugin that links lull (scripts/consumer-test.sh).
 *
 * It guards one property of the shared library: it can be dlopen()ed.  Its
 * thread-locals (lull's own and liburcu-memb's, which lull's sections
 * touch) are reached with the general-dynamic TLS model.  Built with
 * -ftls-model=initial-exec instead, liblull.so.0 would need liburcu-memb's
 * TLS block in the static TLS area, and dlopen() fails on Debian 12 with
 * "cannot allocate memory in static TLS block" (docs/performance.md, "The
 * shared library").
 *
 *   dlopen-consumer <path to liblull.so.0>      exit 0 on success
 *
 * And a second: dlclose() leaves it loaded.  lull's reclaim thread lives as
 * long as the process (<lull/rcu.h>), so liblull.so.0 is linked with
 * -z nodelete: unmapping its code under that thread would crash the
 * process at its next wake-up.
 *
 * Only the types come from <lull.h>; every function comes from dlsym(), so
 * the program does not link lull.
 */
#include <lull.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "dlopen-consumer: %s:%d: %s\n", \
                                          __FILE__, __LINE__, #c); return 1; } } while (0)

/* Typed from the header's prototypes (__typeof__: a GNU C keyword that
 * gcc and clang accept in strict C11 too). */
static struct {
    __typeof__(lull_store_create) *create;
    __typeof__(lull_store_put) *put;
    __typeof__(lull_store_get) *get;
    __typeof__(lull_store_destroy) *destroy;
    __typeof__(lull_read_lock) *lock;
    __typeof__(lull_read_unlock) *unlock;
    __typeof__(lull_barrier) *barrier;
} fn;

/* dlsym's void * into a function pointer, without the cast ISO C lacks. */
static int sym(void *h, const char *name, void *fp, size_t len)
{
    void *p = dlsym(h, name);
    if (!p) {
        fprintf(stderr, "dlopen-consumer: dlsym %s: %s\n", name, dlerror());
        return -1;
    }
    memcpy(fp, &p, len);
    return 0;
}

/* A read on the thread given; a new thread's first section registers it,
 * which touches every thread-local on the way. */
static int read_back(lull_store *s)
{
    fn.lock();
    const struct lull_snap *sn = fn.get(s, "plugin:1", 8);
    int ok = sn && sn->value_len == 5 && memcmp(sn->value, "alive", 5) == 0;
    fn.unlock();
    return ok;
}

static void *thread_main(void *s)
{
    return read_back(s) ? s : NULL;
}

int main(int argc, char **argv)
{
    CHECK(argc == 2);
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "dlopen-consumer: dlopen %s: %s\n", argv[1], dlerror());
        return 1;
    }
    CHECK(sym(h, "lull_store_create", &fn.create, sizeof fn.create) == 0);
    CHECK(sym(h, "lull_store_put", &fn.put, sizeof fn.put) == 0);
    CHECK(sym(h, "lull_store_get", &fn.get, sizeof fn.get) == 0);
    CHECK(sym(h, "lull_store_destroy", &fn.destroy, sizeof fn.destroy) == 0);
    CHECK(sym(h, "lull_read_lock", &fn.lock, sizeof fn.lock) == 0);
    CHECK(sym(h, "lull_read_unlock", &fn.unlock, sizeof fn.unlock) == 0);
    CHECK(sym(h, "lull_barrier", &fn.barrier, sizeof fn.barrier) == 0);

    lull_store *s = fn.create(NULL);
    CHECK(s != NULL);
    CHECK(fn.put(s, "plugin:1", 8, "alive", 5, NULL) == 0);
    CHECK(read_back(s));
    pthread_t t;
    void *res = NULL;
    CHECK(pthread_create(&t, NULL, thread_main, s) == 0);
    CHECK(pthread_join(t, &res) == 0 && res == s);
    CHECK(fn.destroy(s) == 0);

    /* The reclaim thread runs (create started it); dlclose() must not take
     * its code away.  RTLD_NOLOAD finds the library only if it is still
     * loaded; the barrier then needs the reclaim thread to run a take. */
    CHECK(dlclose(h) == 0);
    CHECK(dlopen(argv[1], RTLD_NOW | RTLD_NOLOAD) != NULL);
    CHECK(fn.barrier() == 0);
    printf("dlopen-consumer: ok\n");
    return 0;
}
