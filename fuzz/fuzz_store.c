/*
 * fuzz/fuzz_store.c - libFuzzer: store operations against a reference model.
 *
 * The input is a sequence of operations on 8 keys (put, put_if with the
 * current / a stale / zero version, delete, delete_if, update that appends,
 * removes or aborts, read into a small buffer, bad input).  Every result is
 * compared with a plain array model; versions must grow per key across
 * delete and re-insert; lull_store_check runs after every operation.
 *
 *   CC=clang cmake -B build-fuzz -DLULL_FUZZ=ON && make -C build-fuzz fuzz_store
 *   build-fuzz/fuzz/fuzz_store -max_total_time=60 fuzz/corpus/fuzz_store
 */
#include <lull.h>

#include "fuzz_input.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { KEYS = 8, VMAX = 64 };

struct model {
    bool present;
    size_t len;
    unsigned char val[VMAX];
    uint64_t version;    /* current, if present */
    uint64_t high;       /* highest version the key ever had */
};

struct in {
    const uint8_t *p;
    size_t n;
};

static uint8_t take(struct in *in)
{
    return fz_take(&in->p, &in->n);
}

#define REQUIRE(c) do { if (!(c)) { fprintf(stderr, "fuzz_store: %s:%d: %s\n", \
                                   __FILE__, __LINE__, #c); abort(); } } while (0)

struct upd {
    int mode;            /* 0 append, 1 remove, 2 abort, 3 keep */
    uint8_t byte;
};

static int upd_fn(const struct lull_snap *cur, struct lull_buf *next, void *arg)
{
    const struct upd *u = arg;
    switch (u->mode) {
    case 0: {
        int rc = lull_buf_resize(next, next->len + 1);
        if (rc)
            return rc;
        ((unsigned char *)next->data)[next->len - 1] = u->byte;
        return LULL_PUBLISH;
    }
    case 1:  return LULL_REMOVE;
    case 2:  return -ECANCELED;
    default: return LULL_KEEP;
    }
}

static void saw_version(struct model *m, uint64_t v)
{
    REQUIRE(v > m->high);   /* grows per key, across delete and re-insert */
    m->high = v;
    m->version = v;
}

/* A put or put_if whose own preconditions held: -ENOSPC if it would add a
 * key past max_keys, else success, and the model takes the value. */
static void expect_put(struct model *mk, size_t *live, size_t max_keys, int rc,
                       const unsigned char *val, size_t vlen, uint64_t v)
{
    if (!mk->present && *live == max_keys) {
        REQUIRE(rc == -ENOSPC);
        return;
    }
    REQUIRE(rc == 0);
    *live += !mk->present;
    mk->present = true;
    mk->len = vlen;
    memcpy(mk->val, val, vlen);
    saw_version(mk, v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* One store for the whole run, emptied before each input: create and
     * destroy wait for grace periods, which would cap the run at ~100
     * inputs a second.  Versions keep growing across inputs, which the
     * per-key check (against 0 at the start of an input) allows. */
    static const struct lull_store_opts o = { .max_keys = 6, .max_key_len = 8,
                                              .max_value_len = VMAX };
    static lull_store *s;
    if (!s)
        s = lull_store_create(&o);
    REQUIRE(s);
    for (unsigned k = 0; k < KEYS; k++) {
        char key[8];
        memset(key, 'a' + (int)k, sizeof(key));
        int rc = lull_store_delete(s, key, 1 + k % 4);
        REQUIRE(rc == 0 || rc == -ENOENT);
    }
    REQUIRE(lull_store_count(s) == 0);
    struct model m[KEYS] = {0};
    struct in in = { data, size };
    size_t live = 0;

    while (in.n) {
        uint8_t op = take(&in), kb = take(&in);
        unsigned k = kb % KEYS;
        char key[8];
        size_t klen = 1 + k % 4;                /* keys of 1..4 bytes */
        memset(key, 'a' + (int)k, sizeof(key));
        unsigned char val[VMAX + 8];
        size_t vlen = take(&in) % (VMAX + 4);   /* sometimes over the limit */
        memset(val, take(&in), sizeof(val));
        uint64_t v = 0;
        int rc;

        switch (op % 8) {
        case 0:     /* put */
            rc = lull_store_put(s, key, klen, val, vlen, &v);
            if (vlen > VMAX)
                REQUIRE(rc == -EFBIG);
            else
                expect_put(&m[k], &live, o.max_keys, rc, val, vlen, v);
            break;
        case 1: {   /* put_if: current, stale or zero */
            uint8_t pick = take(&in) % 3;
            uint64_t exp = pick == 0 ? (m[k].present ? m[k].version : 0)
                         : pick == 1 ? m[k].high + (m[k].present ? 0 : 1) - 1 : 0;
            if (vlen > VMAX)
                vlen = VMAX;
            rc = lull_store_put_if(s, key, klen, val, vlen, exp, &v);
            bool match = m[k].present ? exp == m[k].version : exp == 0;
            if (!match)
                REQUIRE(rc == -ESTALE);
            else
                expect_put(&m[k], &live, o.max_keys, rc, val, vlen, v);
            break;
        }
        case 2:     /* delete */
            rc = lull_store_delete(s, key, klen);
            REQUIRE(rc == (m[k].present ? 0 : -ENOENT));
            if (m[k].present) {
                m[k].present = false;
                live--;
            }
            break;
        case 3: {   /* delete_if, current or stale */
            uint64_t exp = take(&in) & 1 ? m[k].version : m[k].version + 1;
            rc = lull_store_delete_if(s, key, klen, exp);
            if (!m[k].present)
                REQUIRE(rc == -ENOENT);
            else if (exp != m[k].version)
                REQUIRE(rc == -ESTALE);
            else {
                REQUIRE(rc == 0);
                m[k].present = false;
                live--;
            }
            break;
        }
        case 4: {   /* update */
            struct upd u = { take(&in) % 4, (uint8_t)vlen };
            struct lull_update_info info;
            rc = lull_store_update(s, key, klen, upd_fn, &u, &info);
            if (u.mode == 2) {
                REQUIRE(rc == -ECANCELED);
            } else if (u.mode == 3 || (u.mode == 1 && !m[k].present)) {
                REQUIRE(rc == 0 && info.outcome == LULL_UNCHANGED);
                REQUIRE(info.version == (m[k].present ? m[k].version : 0));
            } else if (u.mode == 1) {
                REQUIRE(rc == 0 && info.outcome == LULL_REMOVED);
                m[k].present = false;
                live--;
            } else if (m[k].len + 1 > VMAX && m[k].present) {
                REQUIRE(rc == -EFBIG);
            } else if (!m[k].present && live == o.max_keys) {
                REQUIRE(rc == -ENOSPC);
            } else {
                REQUIRE(rc == 0);
                REQUIRE(info.outcome == (m[k].present ? LULL_UPDATED : LULL_INSERTED));
                if (!m[k].present) {
                    m[k].len = 0;
                    live++;
                }
                m[k].present = true;
                m[k].val[m[k].len++] = u.byte;
                saw_version(&m[k], info.version);
            }
            break;
        }
        case 5: {   /* read into a buffer that may be too small */
            unsigned char buf[VMAX];
            size_t cap = vlen % (VMAX + 1), len = 999;
            rc = lull_store_read(s, key, klen, cap ? buf : NULL, cap, &len, &v);
            if (!m[k].present)
                REQUIRE(rc == -ENOENT);
            else if (m[k].len > cap)
                REQUIRE(rc == -ENOBUFS && len == m[k].len);
            else
                REQUIRE(rc == 0 && len == m[k].len && v == m[k].version &&
                        memcmp(buf, m[k].val, len) == 0);
            break;
        }
        case 6: {   /* zero-copy get */
            lull_read_lock();
            const struct lull_snap *sn = lull_store_get(s, key, klen);
            if (!m[k].present)
                REQUIRE(sn == NULL);
            else
                REQUIRE(sn && sn->value_len == m[k].len && sn->version == m[k].version &&
                        memcmp(sn->value, m[k].val, m[k].len) == 0);
            lull_read_unlock();
            break;
        }
        default:    /* bad input never crashes and changes nothing */
            REQUIRE(lull_store_put(s, key, 0, val, 1, NULL) == -EINVAL);
            REQUIRE(lull_store_put(s, NULL, 3, val, 1, NULL) == -EINVAL);
            REQUIRE(lull_store_put(s, key, 9, val, 1, NULL) == -EINVAL);
            REQUIRE(lull_store_put(s, key, klen, NULL, 1, NULL) == -EINVAL);
            REQUIRE(lull_store_delete(NULL, key, klen) == -EINVAL);
            REQUIRE(lull_store_get(s, key, 0) == NULL);
            break;
        }
        REQUIRE(lull_store_count(s) == live);
        REQUIRE(lull_store_check(s, stderr) == 0);
    }
    return 0;
}
