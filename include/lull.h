/*
 * lull.h - everything: the common rules, read-side sections and the three
 * layers, each standing on the one before.
 *
 *   <lull/rcu.h>       read-side sections, grace periods
 *   <lull/store.h>     layer 1: RCU key->value store
 *   <lull/wheel.h>     layer 2: epoch-tagged timer wheel
 *   <lull/registry.h>  layer 3: connection registry (store + wheel)
 */
#ifndef LULL_H
#define LULL_H

#include <lull/common.h>
#include <lull/rcu.h>
#include <lull/store.h>
#include <lull/wheel.h>
#include <lull/registry.h>

#endif /* LULL_H */
