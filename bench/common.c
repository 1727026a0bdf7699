/* bench/common.c - the fixture cache, the virtual clock and memory accounting. */
#include "common.h"

#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

unsigned long bc_runs;

struct bc_slot {
    const char *kind;
    int64_t param;
    void *obj;
    void (*destroy)(void *);
};
static struct bc_slot slots[BC_SLOTS];

void *bc_fixture(int slot, const char *kind, int64_t param, void *(*make)(int64_t),
                 void (*destroy)(void *), int (*fresh)(void *))
{
    if (slot < 0 || slot >= BC_SLOTS)
        return NULL;
    struct bc_slot *f = &slots[slot];
    if (f->obj && f->kind && !strcmp(f->kind, kind) && f->param == param &&
        (!fresh || fresh(f->obj)))
        return f->obj;
    if (f->obj)
        f->destroy(f->obj);
    f->obj = NULL;
    f->kind = NULL;
    void *obj = make(param);
    if (!obj)
        return NULL;
    f->kind = kind;
    f->param = param;
    f->obj = obj;
    f->destroy = destroy;
    return obj;
}

void bc_fixture_drop(void)
{
    for (int i = BC_SLOTS - 1; i >= 0; i--) {
        if (slots[i].obj)
            slots[i].destroy(slots[i].obj);
        slots[i].obj = NULL;
        slots[i].kind = NULL;
    }
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
