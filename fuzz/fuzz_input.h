/* fuzz/fuzz_input.h - a libFuzzer input read as a stream of bytes. */
#ifndef LULL_FUZZ_INPUT_H
#define LULL_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>

/* The next byte of [*p, *p + *n), or 0 once the input is used up. */
static inline uint8_t fz_take(const uint8_t **p, size_t *n)
{
    if (!*n)
        return 0;
    (*n)--;
    return *(*p)++;
}

/* The next 8 bytes, big-endian (zeros past the end). */
static inline uint64_t fz_take64(const uint8_t **p, size_t *n)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | fz_take(p, n);
    return v;
}

#endif
