/* bench/baselines/mxmap.c - the chained map behind one pthread_mutex_t
 * (readers and writers alike take it). */
#include <pthread.h>

#define BL_MAP          bl_mxmap
#define BL_LOCK_T       pthread_mutex_t
#define BL_LOCK_INIT(l) pthread_mutex_init((l), NULL)
#define BL_LOCK_FINI(l) pthread_mutex_destroy(l)
#define BL_RDLOCK(l)    pthread_mutex_lock(l)
#define BL_WRLOCK(l)    pthread_mutex_lock(l)
#define BL_UNLOCK(l)    pthread_mutex_unlock(l)
#include "lockmap_impl.h"
