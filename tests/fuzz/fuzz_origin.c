/*
 * ngx-pusher: libFuzzer target for origin matching (pusher_origin_host()
 * and pusher_host_match() in common/pusher_proto.c).
 *
 * Input: "PATTERN\nORIGIN": the allow-list entry up to the first newline,
 * the Origin header value after it (no newline: the whole input is the
 * origin and the pattern is empty).  Each is an exact-size heap copy.
 *
 *   - pusher_origin_host() returns 0 or -1, and 0 exactly when a plain
 *     re-implementation finds a host: a scheme of [A-Za-z0-9+.-] before
 *     the first "://", then a bracketed IPv6 literal or the bytes up to
 *     ':', '/', '?' or '#', not empty; the host it gives is that slice,
 *     inside the input;
 *   - pusher_host_match() agrees with a dynamic-programming glob ('*' any
 *     run, every other pattern byte equal to the lowercased host byte) for
 *     the host found and for the raw origin;
 *   - a pattern without '*' matches exactly the hosts that equal it once
 *     lowercased; the host's case never changes a result; "*" matches
 *     everything; the lowercased host matches itself, and still does with
 *     any one run of it replaced by '*'.
 *
 *   clang -fsanitize=fuzzer,address,undefined -Icommon \
 *       tests/fuzz/fuzz_origin.c common/pusher_proto.c common/pusher_ws.c \
 *       -lcjson -lcrypto
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pusher_proto.h"
#include "fuzz_check.h"


/* the glob model is quadratic: longer inputs get the other checks only */
#define FUZZ_GLOB_MAX     1024


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static char
fuzz_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char) (c - 'A' + 'a') : c;
}


static int
fuzz_scheme_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
}


/* scheme "://" host: the host's offset and length, or -1 */
static int
fuzz_origin_model(const char *s, size_t len, size_t *start, size_t *n)
{
    size_t  i, k;

    for (i = 0; i < len && fuzz_scheme_char(s[i]); i++) { /* void */ }

    if (i == 0 || len - i < 3 || memcmp(s + i, "://", 3) != 0) {
        return -1;
    }

    k = i + 3;

    if (k < len && s[k] == '[') {
        for (i = k; i < len && s[i] != ']'; i++) { /* void */ }

        if (i == len) {
            return -1;
        }

        i++;

    } else {
        for (i = k; i < len && s[i] != ':' && s[i] != '/' && s[i] != '?'
                    && s[i] != '#'; i++)
        {
            /* void */
        }
    }

    if (i == k) {
        return -1;
    }

    *start = k;
    *n = i - k;

    return 0;
}


/* m[i][j]: pattern[0..i) matches host[0..j) */
static int
fuzz_glob(const char *p, size_t plen, const char *h, size_t hlen)
{
    int       r;
    size_t    i, j;
    uint8_t  *m;

    m = calloc((plen + 1) * (hlen + 1), 1);
    FUZZ_CHECK(m != NULL);

#define M(i, j)  m[(i) * (hlen + 1) + (j)]

    M(0, 0) = 1;

    for (i = 1; i <= plen; i++) {
        for (j = 0; j <= hlen; j++) {
            if (p[i - 1] == '*') {
                M(i, j) = M(i - 1, j) || (j > 0 && M(i, j - 1));

            } else {
                M(i, j) = j > 0 && M(i - 1, j - 1)
                          && p[i - 1] == fuzz_lower(h[j - 1]);
            }
        }
    }

    r = M(plen, hlen);

#undef M

    free(m);

    return r;
}


static int
fuzz_match(const char *p, size_t plen, const char *h, size_t hlen)
{
    int    r;
    char  *pc, *hc;

    /* exact-size copies: a read past either is an ASan report */
    pc = malloc(plen + !plen);
    hc = malloc(hlen + !hlen);
    FUZZ_CHECK(pc != NULL && hc != NULL);

    memcpy(pc, p, plen);
    memcpy(hc, h, hlen);

    r = pusher_host_match(pc, plen, hc, hlen);

    FUZZ_CHECK(r == 0 || r == 1);

    free(pc);
    free(hc);

    return r;
}


static void
fuzz_check_match(const char *p, size_t plen, const char *h, size_t hlen)
{
    int      r;
    char    *lower, *upper;
    size_t   i;

    r = fuzz_match(p, plen, h, hlen);

    if (plen <= FUZZ_GLOB_MAX && hlen <= FUZZ_GLOB_MAX) {
        FUZZ_CHECK(r == fuzz_glob(p, plen, h, hlen));
    }

    if (memchr(p, '*', plen) == NULL) {
        for (i = 0; i < hlen && i < plen; i++) {
            if (p[i] != fuzz_lower(h[i])) {
                break;
            }
        }

        FUZZ_CHECK(r == (plen == hlen && i == hlen));
    }

    lower = malloc(hlen + 1);
    upper = malloc(hlen + 1);
    FUZZ_CHECK(lower != NULL && upper != NULL);

    for (i = 0; i < hlen; i++) {
        lower[i] = fuzz_lower(h[i]);
        upper[i] = (lower[i] >= 'a' && lower[i] <= 'z')
                   ? (char) (lower[i] - 'a' + 'A') : lower[i];
    }

    FUZZ_CHECK(fuzz_match(p, plen, lower, hlen) == r);
    FUZZ_CHECK(fuzz_match(p, plen, upper, hlen) == r);

    free(lower);
    free(upper);
}


/* the lowercased host as a pattern matches it, with or without a '*' */
static void
fuzz_check_self(const char *h, size_t hlen, const uint8_t *seed)
{
    char    *pat, *star;
    size_t   i, a, b;

    pat = malloc(hlen + 1);
    FUZZ_CHECK(pat != NULL);

    for (i = 0; i < hlen; i++) {
        pat[i] = fuzz_lower(h[i]);
    }

    FUZZ_CHECK(fuzz_match("*", 1, h, hlen));
    FUZZ_CHECK(fuzz_match("", 0, h, hlen) == (hlen == 0));

    if (memchr(pat, '*', hlen) != NULL) {
        /* a '*' of the host would be a wildcard in the pattern */
        free(pat);
        return;
    }

    FUZZ_CHECK(fuzz_match(pat, hlen, h, hlen));

    /* pat[a..b) replaced by one '*' */
    a = seed[0] % (hlen + 1);
    b = a + seed[1] % (hlen - a + 1);

    star = malloc(hlen + 1);
    FUZZ_CHECK(star != NULL);

    memcpy(star, pat, a);
    star[a] = '*';
    memcpy(star + a + 1, pat + b, hlen - b);

    FUZZ_CHECK(fuzz_match(star, a + 1 + hlen - b, h, hlen));

    free(star);
    free(pat);
}


static void
fuzz_check_origin(const char *origin, size_t len, const char **host,
    size_t *host_len)
{
    int          rc, expect;
    char        *copy;
    size_t       start, n;
    const char  *h;

    copy = malloc(len + !len);
    FUZZ_CHECK(copy != NULL);
    memcpy(copy, origin, len);

    h = NULL;
    n = 0;

    rc = pusher_origin_host(copy, len, &h, &n);

    FUZZ_CHECK(rc == 0 || rc == -1);

    expect = fuzz_origin_model(origin, len, &start, host_len);
    FUZZ_CHECK(rc == expect);

    if (rc == 0) {
        FUZZ_CHECK(h >= copy && n > 0 && h + n <= copy + len);
        FUZZ_CHECK(h == copy + start && n == *host_len);

        *host = origin + start;

    } else {
        FUZZ_CHECK(h == NULL && n == 0);

        *host = NULL;
        *host_len = 0;
    }

    free(copy);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t       plen, olen, hlen;
    uint8_t      seed[2];
    const char  *pattern, *origin, *nl, *host;

    pattern = (const char *) data;
    nl = memchr(pattern, '\n', size);

    if (nl == NULL) {
        plen = 0;
        origin = pattern;
        olen = size;

    } else {
        plen = (size_t) (nl - pattern);
        origin = nl + 1;
        olen = size - plen - 1;
    }

    seed[0] = size ? data[0] : 0;
    seed[1] = size ? data[size - 1] : 0;

    fuzz_check_origin(origin, olen, &host, &hlen);

    if (host != NULL) {
        fuzz_check_match(pattern, plen, host, hlen);
        fuzz_check_self(host, hlen, seed);
    }

    fuzz_check_match(pattern, plen, origin, olen);
    fuzz_check_self(origin, olen, seed);

    return 0;
}
