/* tests/store/store_testlib.h - helpers the store tests share (header-only).
 *
 * A dump is the full observable state of a store: every key with its value
 * and version (collected with lull_store_foreach, sorted by key), plus the
 * count.  Two dumps are compared byte for byte. */
#ifndef LULL_STORE_TESTLIB_H
#define LULL_STORE_TESTLIB_H

#include "testutil.h"

#include <string.h>

struct st_entry {
    unsigned char *key;   size_t key_len;
    unsigned char *value; size_t value_len;
    uint64_t version;
};

struct st_dump {
    struct st_entry *e;
    size_t n, cap;
    size_t count;         /* lull_store_count */
};

static inline int st_dump_cb(const struct lull_snap *sn, void *arg)
{
    struct st_dump *d = arg;
    LT_CHECK(sn != NULL);
    if (d->n == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 16;
        d->e = realloc(d->e, d->cap * sizeof(*d->e));
        LT_CHECK(d->e != NULL);
    }
    struct st_entry *e = &d->e[d->n++];
    e->key_len = sn->key_len;
    e->value_len = sn->value_len;
    e->version = sn->version;
    e->key = malloc(sn->key_len ? sn->key_len : 1);
    e->value = malloc(sn->value_len ? sn->value_len : 1);
    LT_CHECK(e->key && e->value);
    if (sn->key_len)
        memcpy(e->key, sn->key, sn->key_len);
    if (sn->value_len)
        memcpy(e->value, sn->value, sn->value_len);
    return 0;
}

static inline int st_entry_cmp(const void *a, const void *b)
{
    const struct st_entry *x = a, *y = b;
    size_t m = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, m);
    if (c)
        return c;
    return (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

/* Dump the store; checks the invariants (lull_store_check) too. */
static inline void st_dump(lull_store *s, struct st_dump *d)
{
    memset(d, 0, sizeof(*d));
    LT_CHECK_EQ(lull_store_foreach(s, st_dump_cb, d), 0);
    d->count = lull_store_count(s);
    if (d->n)
        qsort(d->e, d->n, sizeof(*d->e), st_entry_cmp);
    for (size_t i = 1; i < d->n; i++)
        LT_CHECK(st_entry_cmp(&d->e[i - 1], &d->e[i]) != 0);   /* no key twice */
    LT_CHECK_EQ(d->count, d->n);
    LT_CHECK_EQ(lull_store_check(s, stderr), 0);
}

static inline void st_dump_free(struct st_dump *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->e[i].key);
        free(d->e[i].value);
    }
    free(d->e);
    memset(d, 0, sizeof(*d));
}

/* 1 if equal; prints the first difference otherwise. */
static inline int st_dump_equal(const struct st_dump *a, const struct st_dump *b)
{
    if (a->n != b->n || a->count != b->count) {
        fprintf(stderr, "dump: %zu/%zu entries vs %zu/%zu\n", a->n, a->count, b->n, b->count);
        return 0;
    }
    for (size_t i = 0; i < a->n; i++) {
        const struct st_entry *x = &a->e[i], *y = &b->e[i];
        if (st_entry_cmp(x, y) != 0 || x->version != y->version ||
            x->value_len != y->value_len ||
            (x->value_len && memcmp(x->value, y->value, x->value_len) != 0)) {
            fprintf(stderr, "dump: entry %zu differs (key %.*s, version %llu vs %llu)\n", i,
                    (int)x->key_len, (const char *)x->key,
                    (unsigned long long)x->version, (unsigned long long)y->version);
            return 0;
        }
    }
    return 1;
}

/* Read a key that must be present: returns its version, fills buf/len. */
static inline uint64_t st_read_ok(lull_store *s, const char *key, void *buf, size_t cap, size_t *len)
{
    uint64_t v = 0;
    size_t l = 0;
    LT_CHECK_EQ(lull_store_read(s, key, strlen(key), buf, cap, &l, &v), 0);
    if (len)
        *len = l;
    LT_CHECK(v != 0);
    return v;
}

static inline uint64_t st_put(lull_store *s, const char *key, const char *val)
{
    uint64_t v = 0;
    LT_CHECK_EQ(lull_store_put(s, key, strlen(key), val, strlen(val), &v), 0);
    LT_CHECK(v != 0);
    return v;
}

/* Current version of key, 0 if absent. */
static inline uint64_t st_version(lull_store *s, const void *key, size_t key_len)
{
    uint64_t v = 0;
    size_t l = 0;
    int rc = lull_store_read(s, key, key_len, NULL, 0, &l, &v);
    if (rc == -ENOENT)
        return 0;
    LT_CHECK(rc == 0 || rc == -ENOBUFS);
    if (rc == -ENOBUFS) {   /* version is only set on 0: read it fully */
        void *b = malloc(l);
        LT_CHECK(b != NULL);
        rc = lull_store_read(s, key, key_len, b, l, &l, &v);
        free(b);
        if (rc == -ENOENT)
            return 0;
        LT_CHECK_EQ(rc, 0);
    }
    return v;
}

#endif
