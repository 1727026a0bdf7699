/* bench/common.c - the fixture cache, the virtual clock and memory accounting. */
#include "common.h"

#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

unsigned long bc_runs;

struct bc_entry {
    const char *kind;       /* NULL: free */
    int64_t param;
    void *obj;
    void (*destroy)(void *);
    unsigned long used;     /* when last returned (LRU) */
};
static struct bc_entry cache[BC_FIXTURES];
static unsigned long clock_;

static void drop(struct bc_entry *e)
{
    if (e->obj)
        e->destroy(e->obj);
    memset(e, 0, sizeof *e);
}

void *bc_fixture(const char *kind, int64_t param, void *(*make)(int64_t),
                 void (*destroy)(void *), int (*fresh)(void *))
{
    struct bc_entry *e = NULL, *victim = NULL;
    for (int i = 0; i < BC_FIXTURES && !e; i++) {
        struct bc_entry *c = &cache[i];
        if (c->kind && !strcmp(c->kind, kind) && c->param == param)
            e = c;
        else if (!victim || (victim->kind && (!c->kind || c->used < victim->used)))
            victim = c;         /* a free entry, else the least recently used */
    }
    if (e && (!fresh || fresh(e->obj))) {
        e->used = ++clock_;
        return e->obj;
    }
    if (!e)
        e = victim;
    drop(e);
    void *obj = make(param);
    if (!obj)
        return NULL;
    *e = (struct bc_entry){ kind, param, obj, destroy, ++clock_ };
    return obj;
}

void bc_fixture_drop(void)
{
    for (int i = BC_FIXTURES - 1; i >= 0; i--)
        drop(&cache[i]);
}

uint64_t bc_vclock_read(void *ctx)
{
    return __atomic_load_n(&((struct bc_vclock *)ctx)->now, __ATOMIC_RELAXED);
}

size_t bc_malloc_bytes(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

size_t bc_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, rss = 0;
    if (!f)
        return 0;
    if (fscanf(f, "%lu %lu", &size, &rss) != 2)
        rss = 0;
    fclose(f);
    return rss * (size_t)sysconf(_SC_PAGESIZE);
}
