
/*
 * Copyright (C) ngx-pusher authors
 */


#ifndef _FUZZ_CHECK_H_INCLUDED_
#define _FUZZ_CHECK_H_INCLUDED_


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pusher_proto.h"


/*
 * What the libFuzzer targets share: FUZZ_CHECK (a property the target
 * checks: a failure aborts, and libFuzzer keeps the input) and small
 * helpers.
 */

#define FUZZ_CHECK(cond)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond);        \
            abort();                                                          \
        }                                                                     \
    } while (0)


/* FNV-1a of a byte run: two runs compared without keeping them */

static inline uint64_t
fuzz_hash(const uint8_t *p, size_t len)
{
    size_t    i;
    uint64_t  h;

    h = 0xcbf29ce484222325ULL;

    for (i = 0; i < len; i++) {
        h = (h ^ p[i]) * 0x100000001b3ULL;
    }

    return h;
}


/* a linear congruential step: chunk sizes and choices from a seed */

static inline uint32_t
fuzz_next(uint32_t *seed)
{
    *seed = *seed * 1103515245 + 12345;

    return *seed >> 16;
}


static inline int
fuzz_str_eq(const pusher_str_t *a, const pusher_str_t *b)
{
    return a->len == b->len
           && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}


#endif /* _FUZZ_CHECK_H_INCLUDED_ */
