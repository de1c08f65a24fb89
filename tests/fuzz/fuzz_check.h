
/*
 * Copyright (C) ngx-pusher authors
 */


#ifndef _FUZZ_CHECK_H_INCLUDED_
#define _FUZZ_CHECK_H_INCLUDED_


#include <stdio.h>
#include <stdlib.h>


/* a property the target checks: a failure aborts, and libFuzzer keeps the input */

#define FUZZ_CHECK(cond)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond);        \
            abort();                                                          \
        }                                                                     \
    } while (0)


#endif /* _FUZZ_CHECK_H_INCLUDED_ */
