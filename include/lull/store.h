/*
 * lull/store.h - layer 1: an RCU key->value store.
 *
 * Readers get immutable snapshots at the cost of a hash lookup; writers copy,
 * change and publish one key at a time with one atomic replace.  Built on
 * liburcu's lock-free hash table (cds_lfht); a snapshot is one allocation
 * holding key and value, so a lookup reads no second object.
 *
 * Guarantees (docs/store.md gives the reasoning and the costs):
 *   - No lost updates: concurrent writers of one key serialize; each publish
 *     is computed from the snapshot it replaces (optimistic: an update fn that
 *     lost a race runs again on the newer snapshot).
 *   - Versions: every publish gets a version unique within the store and
 *     greater than every version the key ever had, across delete and
 *     re-insert, so put_if / delete_if cannot be fooled (ABA).  Versions are
 *     not dense and not a global order across keys.
 *   - Snapshots are immutable: bytes a reader sees in a section stay as they
 *     are until its outermost lull_read_unlock().
 *   - Reads are wait-free; writes are lock-free (a failed publish means another
 *     writer's succeeded); update_timeout_ns bounds how long one call retries.
 *   - Retired snapshots are freed after a grace period, in batches; the memory
 *     they hold stays bounded under any sustained write load as long as no
 *     read-side section lasts for ever.
 *
 * Ordering: a successful publish (put, put_if, update, delete, delete_if) is
 * a release: a reader that sees the new snapshot (or the absence) also sees
 * every write the publisher made before the call.  Readers' lookups are
 * acquire loads.
 */
#ifndef LULL_STORE_H
#define LULL_STORE_H

#include <lull/common.h>
#include <lull/rcu.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lull_store lull_store;

struct lull_store_opts {
    size_t   max_keys;          /* 0: unlimited. An insert past it: -ENOSPC, never exceeded under concurrency */
    size_t   max_key_len;       /* 0: 1024 bytes. Longer: -EINVAL */
    size_t   max_value_len;     /* 0: 65536 bytes. Longer: -EFBIG, nothing published */
    uint64_t update_timeout_ns; /* 0: an update retries until it publishes. Else: -ETIMEDOUT past it */
};

struct lull_snap {              /* immutable; valid until the outermost lull_read_unlock() */
    const void *key;   size_t key_len;
    const void *value; size_t value_len;
    uint64_t    version;
};

/*
 * lull_store_create - make an empty store.
 * @opts: limits, copied; NULL means all defaults.
 *
 * Returns: the store, or NULL with errno EINVAL (a limit out of range:
 *   max_key_len or max_value_len over 1 GiB), ENOMEM, or EAGAIN (the first
 *   create starts lull's reclaim thread, <lull/rcu.h>, and it could not
 *   start: nothing is left behind, a later create tries again).
 * With max_keys set, the hash table is sized for it up front and never
 * grows; unlimited stores grow the table in the background of the writer
 * that crosses a load threshold (outside any read-side section).  Every
 * store also keeps a front index (43-85 bytes a key) that starts small and
 * is replaced by a larger one the same way as keys come.
 * Threads: any.  Ownership: the caller owns the store until lull_store_destroy.
 */
LULL_API lull_store *lull_store_create(const struct lull_store_opts *opts);

/*
 * lull_store_destroy - free the store and every snapshot in it.
 *
 * Returns: 0; -EINVAL for NULL; -EDEADLK (nothing freed) when called inside
 *   a read-side section.
 * Threads: any, but no other thread may use s any more, nor hold a snapshot
 *   of it.  Blocks: waits for a grace period and for deferred frees
 *   (ends with lull_barrier()).
 */
LULL_API int lull_store_destroy(lull_store *s);

/* ------------------------------------------------------------------ readers */

/*
 * lull_store_get - look a key up, zero-copy.
 *
 * Returns: the key's current snapshot, or NULL if absent or on bad input
 *   (NULL s, NULL key, key_len 0 or over max_key_len; errno is not set).
 * Section: REQUIRED.  Call between lull_read_lock() and lull_read_unlock();
 *   the snapshot and the bytes it points at stay valid and unchanged until
 *   the outermost unlock.  Never write through it.
 * Threads: any.  Progress: wait-free (at most two probes of the front
 *   index -- a short one for keys of 8 to 16 bytes, then the full one --
 *   and one cds_lfht lookup; no retry loop).  A lookup that misses the
 *   index and finds the key puts it back: one store into the index and two
 *   atomic read-modify-writes on the snapshot's node; a hit stores nothing.
 *   Ordering: acquire; sees the publisher's earlier writes.
 */
LULL_API const struct lull_snap *lull_store_get(lull_store *s, const void *key, size_t key_len);

/*
 * lull_store_read - copy a key's value out.
 * @buf, @cap: destination; buf may be NULL when cap is 0 (a size query).
 * @value_len: out, optional: the value's length (set on 0 and on -ENOBUFS).
 * @version:   out, optional: the snapshot's version (set on 0).
 *
 * Returns: 0; -ENOENT if absent; -ENOBUFS if cap < value length (nothing
 *   copied, *value_len set); -EINVAL on bad input (also buf NULL with cap > 0).
 * Section: not needed (takes its own; may be called inside one).
 * Threads: any.  Progress: wait-free.  Ordering: as lull_store_get.
 */
LULL_API int lull_store_read(lull_store *s, const void *key, size_t key_len,
                             void *buf, size_t cap, size_t *value_len, uint64_t *version);

/*
 * lull_store_foreach - visit every key.
 * @fn: called with each snapshot and @arg; a non-zero return stops the walk.
 *
 * Returns: 0 after a full walk, fn's non-zero return if it stopped it,
 *   -EINVAL on bad input.
 * Every key present for the whole call is visited exactly once; keys
 * inserted or removed meanwhile may or may not be.  fn runs inside the
 * section foreach takes: the snapshot is valid only during the call, and fn
 * must not block for long nor call lull_store_destroy / lull_barrier.  fn
 * may read and write the store (its own writes may or may not be visited).
 * Threads: any.
 */
LULL_API int lull_store_foreach(lull_store *s, int (*fn)(const struct lull_snap *, void *), void *arg);

/*
 * lull_store_count - number of keys.
 *
 * Returns: the exact count once writers are quiescent.  Under concurrent
 *   inserts it may include inserts that are in progress (it is the counter
 *   that enforces max_keys).  0 for NULL.
 * Threads: any.  Cost: one load.
 */
LULL_API size_t lull_store_count(lull_store *s);

/* ------------------------------------------------------------------ writers */
/*
 * Common to every writer:
 *   - Section: not needed.  A writer may be called inside a read-side
 *     section; snapshots obtained earlier in it stay valid.
 *   - Ordering: a successful publish is a full barrier (cds_lfht's commit)
 *     and a release of everything written before the call.
 *   - A failed call publishes nothing.
 *   - @version (out, optional): the version the call published.
 *   - Errors common to all: -EINVAL (NULL s, NULL key, key_len 0 or over
 *     max_key_len, value NULL with value_len > 0), -EFBIG (value over
 *     max_value_len), -ENOSPC (an insert past max_keys), -ENOMEM.
 */

/* lull_store_put - insert or replace unconditionally. Returns 0. */
LULL_API int lull_store_put(lull_store *s, const void *key, size_t key_len,
                            const void *value, size_t value_len, uint64_t *version);

/*
 * lull_store_put_if - publish only if the key's current version is @expected
 *   (0: only if the key is absent).
 * Returns: 0; -ESTALE if the current version differs (or the key is absent
 *   and expected != 0, or present and expected == 0).
 */
LULL_API int lull_store_put_if(lull_store *s, const void *key, size_t key_len,
                               const void *value, size_t value_len,
                               uint64_t expected, uint64_t *version);

/* lull_store_delete - remove a key.  Returns 0 or -ENOENT. */
LULL_API int lull_store_delete(lull_store *s, const void *key, size_t key_len);

/*
 * lull_store_delete_if - remove a key only if its current version is
 *   @expected.  Returns: 0; -ENOENT if absent; -ESTALE if the version differs.
 */
LULL_API int lull_store_delete_if(lull_store *s, const void *key, size_t key_len,
                                  uint64_t expected);

struct lull_buf { void *data; size_t len; };   /* a writer's private, mutable copy */

/*
 * lull_buf_resize - change the length of the private copy an update fn got.
 *
 * Keeps the first min(old, new) bytes; new bytes are zero.  Only valid on
 * the @next buffer lull passed to the running update fn (any other lull_buf
 * is undefined behaviour: lull cannot check it).
 * Returns: 0; -EFBIG past the store's max_value_len (b unchanged); -ENOMEM
 *   (b unchanged); -EINVAL for NULL.
 */
LULL_API int lull_buf_resize(struct lull_buf *b, size_t len);

enum { LULL_KEEP = 0, LULL_PUBLISH = 1, LULL_REMOVE = 2 };
typedef int (*lull_update_fn)(const struct lull_snap *cur, struct lull_buf *next, void *arg);
        /* cur: the current snapshot, NULL if absent. next: a private copy of cur's value (empty
           if absent). Return LULL_KEEP, LULL_PUBLISH, LULL_REMOVE, or a negative errno to abort
           (update returns it). fn may run more than once — when another writer published
           first it runs again on the newer snapshot — so it must have no effect but on next. */

enum lull_outcome { LULL_UNCHANGED, LULL_INSERTED, LULL_UPDATED, LULL_REMOVED };
struct lull_update_info { enum lull_outcome outcome; uint64_t version; unsigned attempts; };

/*
 * lull_store_update - read-modify-write one key, atomically.
 * @fn:   computes the next value from the current snapshot (see
 *        lull_update_fn).  It runs inside a read-side section: cur is valid
 *        for the call, it must not block for long, and it must not call
 *        lull_store_destroy or lull_barrier.  It may call the store's
 *        readers; it should not write the same key (that write makes this
 *        update retry).
 * @info: out, optional: outcome, version (the one published, or the current
 *        one if unchanged, 0 if absent) and attempts (fn's runs).
 *
 * Returns: 0 (see info->outcome); fn's negative return (nothing published);
 *   -EINVAL for a return of fn that is none of the above; -EFBIG if fn left
 *   next longer than max_value_len; -ENOSPC; -ENOMEM; -ETIMEDOUT when
 *   opts.update_timeout_ns passed before a publish succeeded.
 * Outcome is honest: PUBLISH with unchanged bytes is LULL_UPDATED (new
 *   version); REMOVE on an absent key is LULL_UNCHANGED; KEEP is UNCHANGED.
 * Progress: lock-free: each retry means another writer published this key.
 *   Between retries it backs off exponentially (Concurrency Kit).
 */
LULL_API int lull_store_update(lull_store *s, const void *key, size_t key_len,
                               lull_update_fn fn, void *arg, struct lull_update_info *info);

/*
 * lull_store_check - verify the store's invariants (tests, fuzzers).
 * @out: where to describe each violation; NULL for silence.
 *
 * Checks: every node's hash matches its key, no key appears twice, every
 * version is non-zero and below the store's version clock, the key count
 * equals the counter, the count is within max_keys, lengths within limits,
 * every node in the front index is current and in its key's window.
 * Returns: 0 if all hold, the number of violations otherwise, -EINVAL for
 *   NULL.  Threads: any, but only meaningful when writers are quiescent.
 *   Cost: O(keys).
 */
LULL_API int lull_store_check(lull_store *s, FILE *out);

#ifdef __cplusplus
}
#endif
#endif /* LULL_STORE_H */
