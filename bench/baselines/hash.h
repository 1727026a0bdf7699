/*
 * bench/baselines/hash.h - the one hash function every hash-map baseline uses
 * (rwlock map, mutex map, raw cds_lfht, mutex registry): MurmurHash64A's
 * construction, 8 bytes per multiply.  A 16-byte key costs two rounds.
 */
#ifndef LULL_BENCH_HASH_H
#define LULL_BENCH_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint64_t bl_hash(const void *key, size_t len)
{
    const uint64_t m = 0xc6a4a7935bd1e995ULL;
    const int r = 47;
    const unsigned char *p = key;
    uint64_t h = 0x9747b28c6c756c6cULL ^ (len * m);

    for (size_t n = len / 8; n; n--, p += 8) {
        uint64_t k;
        memcpy(&k, p, 8);
        k *= m;
        k ^= k >> r;
        k *= m;
        h ^= k;
        h *= m;
    }
    size_t tail = len & 7;
    if (tail) {
        uint64_t k = 0;
        memcpy(&k, p, tail);   /* little-endian: the tail's bytes, low first */
        h ^= k;
        h *= m;
    }
    h ^= h >> r;
    h *= m;
    h ^= h >> r;
    return h;
}

#endif /* LULL_BENCH_HASH_H */
