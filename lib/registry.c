/* lib/registry.c - placeholder until the layer lands */
#include "internal.h"
