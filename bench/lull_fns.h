/*
 * bench/lull_fns.h - lull's functions as pointers, typed from the header:
 * the linked static library's, or a liblull.so's loaded with dlopen().
 * bench_store.c (get_so: liblull.so beside the static library) and
 * ab_get.c (two builds' liblull.so in one process) call lull through them.
 */
#ifndef LULL_BENCH_LULL_FNS_H
#define LULL_BENCH_LULL_FNS_H

#include <dlfcn.h>
#include <lull/store.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

struct lull_fns {
    __typeof__(lull_store_create) *create;
    __typeof__(lull_store_put) *put;
    __typeof__(lull_store_get) *get;
    __typeof__(lull_store_destroy) *destroy;
    __typeof__(lull_read_lock) *lock;
    __typeof__(lull_read_unlock) *unlock;
};

static inline bool lull_fns_sym(void *h, const char *path, const char *name, void *fp,
                                size_t len)
{
    void *p = dlsym(h, name);
    if (!p)
        fprintf(stderr, "%s: no %s: %s\n", path, name, dlerror());
    memcpy(fp, &p, len);   /* void * to a function pointer, as POSIX allows */
    return p != NULL;
}

/* Load the liblull.so at path (RTLD_LOCAL: another lull's symbols stay
 * apart; liburcu, which both link, is loaded once and shared) and fill f.
 * False, with a message on stderr, if it cannot.  Never dlclose()d: the
 * caller's stores live in it. */
static inline bool lull_fns_load(const char *path, struct lull_fns *f)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "%s\n", dlerror());
        return false;
    }
    return lull_fns_sym(h, path, "lull_store_create", &f->create, sizeof f->create) &&
           lull_fns_sym(h, path, "lull_store_put", &f->put, sizeof f->put) &&
           lull_fns_sym(h, path, "lull_store_get", &f->get, sizeof f->get) &&
           lull_fns_sym(h, path, "lull_store_destroy", &f->destroy, sizeof f->destroy) &&
           lull_fns_sym(h, path, "lull_read_lock", &f->lock, sizeof f->lock) &&
           lull_fns_sym(h, path, "lull_read_unlock", &f->unlock, sizeof f->unlock);
}

#endif /* LULL_BENCH_LULL_FNS_H */
