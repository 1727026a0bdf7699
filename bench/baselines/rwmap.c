/* bench/baselines/rwmap.c - the chained map behind one pthread_rwlock_t
 * (glibc's default kind: readers share, writers exclude). */
#include <pthread.h>

#define BL_MAP          bl_rwmap
#define BL_LOCK_T       pthread_rwlock_t
#define BL_LOCK_INIT(l) pthread_rwlock_init((l), NULL)
#define BL_LOCK_FINI(l) pthread_rwlock_destroy(l)
#define BL_RDLOCK(l)    pthread_rwlock_rdlock(l)
#define BL_WRLOCK(l)    pthread_rwlock_wrlock(l)
#define BL_UNLOCK(l)    pthread_rwlock_unlock(l)
#include "lockmap_impl.h"
