/*
 * lull/common.h - what every lull layer shares: the export macro, the error
 * convention and lull_strerror().
 *
 * Error convention (one rule, no exceptions):
 *   - Functions returning int return 0, or a documented non-negative value, on
 *     success and a negative errno on failure.
 *   - Constructors (lull_*_create) return NULL and set errno.
 *   - A failed call changes nothing and runs no callback.
 *   - Bad input (NULL object, NULL pointer with a non-zero length, zero-length
 *     key, over-long key) is -EINVAL, never a crash.  Out of memory is
 *     -ENOMEM and the object is as it was: lull never aborts on a failed
 *     allocation of its own (see docs/store.md for what liburcu still may).
 *
 * Thread rule: every function may be called from any thread unless its
 * contract block says otherwise.  Threads need no registration.
 */
#ifndef LULL_COMMON_H
#define LULL_COMMON_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(LULL_BUILDING) && defined(__GNUC__)
#define LULL_API __attribute__((visibility("default")))
#else
#define LULL_API
#endif

/* The version: the one place it is set.  CMake reads project(VERSION), the
 * SONAME and lull.pc from these three lines. */
#define LULL_VERSION_MAJOR 0
#define LULL_VERSION_MINOR 1
#define LULL_VERSION_PATCH 0
#define LULL_VERSION_STRINGIFY_(x) #x
#define LULL_VERSION_STR_(a, b, c) LULL_VERSION_STRINGIFY_(a) "." LULL_VERSION_STRINGIFY_(b) \
                                   "." LULL_VERSION_STRINGIFY_(c)
#define LULL_VERSION_STRING \
    LULL_VERSION_STR_(LULL_VERSION_MAJOR, LULL_VERSION_MINOR, LULL_VERSION_PATCH)

/*
 * lull_strerror - a short, static description of an error code.
 * @err: a value a lull function returned (negative errno) or its absolute
 *       value; 0 gives "success".
 *
 * Returns: a static string, never NULL.  Every code a lull function can
 *   return has its own text, worded for lull (e.g. -ESTALE: "version,
 *   generation or handle is not current").  Unknown codes give
 *   "unknown lull error".
 * Threads: any.  Section: not needed.  Ordering: none.
 */
LULL_API const char *lull_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif /* LULL_COMMON_H */
