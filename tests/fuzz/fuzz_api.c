/*
 * ngx-pusher: libFuzzer target for the HTTP API signature check and the
 * query string parsing (common/pusher_auth.c).
 *
 * Input: 3 bytes (the clock: now is 1353088179 + 10 * (int8_t) byte 0;
 * bytes 1 and 2 choose the single-byte changes and the pusher_query_param()
 * buffer size), then "METHOD\nPATH\nQUERY\nBODY", split at the first three
 * newlines.  The request is checked against a model written out here:
 * its own URL decoding, qsort() of the parameters and one-shot HMAC().
 *
 *   - pusher_api_verify() gives exactly the result of the model, for the
 *     request as it comes;
 *   - the request signed here (auth_signature dropped, auth_key,
 *     auth_timestamp, auth_version and body_md5 added where missing, then
 *     the signature of the model appended) gives the model's result: OK
 *     unless the input made a parameter wrong or the query too big;
 *   - four single-byte changes of that request anywhere in method, path,
 *     query and body: each gives the model's result, and OK only if the
 *     string to sign (decoded, sorted) and the signature are unchanged:
 *     '+' for ' ', %2c for %2C, "a=&b" for "a&&b";
 *   - pusher_query_param() finds what the model finds, never writes more
 *     than its buffer and NUL-terminates within it;
 *   - channel and user auth strings made here verify, and each byte
 *     changed makes them fail; any other auth string fails.
 *
 *   clang -fsanitize=fuzzer,address,undefined -Icommon \
 *       tests/fuzz/fuzz_api.c common/pusher_auth.c -lcrypto
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "pusher_auth.h"
#include "fuzz_check.h"


#define FUZZ_APP_KEY      "278d425bdf160c739803"
#define FUZZ_APP_SECRET   "7ad3773142a6692b25b8"
#define FUZZ_NOW          1353088179

/* the query limit of pusher_auth.c */
#define FUZZ_QUERY_MAX    4096
#define FUZZ_PARAMS_MAX   64
#define FUZZ_CHANGES      4


typedef struct {
    const char  *data;
    size_t       len;
} fuzz_str_t;


typedef struct {
    fuzz_str_t   key;
    fuzz_str_t   value;
    fuzz_str_t   raw;              /* the segment as it came */
} fuzz_param_t;


/* a query as the model reads it */
typedef struct {
    int            bad;            /* PUSHER_API_BAD_QUERY */
    size_t         n;
    fuzz_param_t   params[FUZZ_PARAMS_MAX];
    char           decoded[FUZZ_QUERY_MAX * 2];
} fuzz_query_t;


typedef struct {
    fuzz_str_t   method;
    fuzz_str_t   path;
    fuzz_str_t   query;
    fuzz_str_t   body;
} fuzz_request_t;


/* the model's verdict and, when it got that far, the string to sign */
typedef struct {
    pusher_api_result_e   rc;
    size_t                sign_len;
    size_t                sign_cap;
    char                 *sign;
    char                  sig[PUSHER_HMAC_HEX_LEN];    /* the request's */
} fuzz_verdict_t;


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static const char  fuzz_hex_digits[] = "0123456789abcdef";


static int
fuzz_str_is(const fuzz_str_t *s, const char *c)
{
    return s->len == strlen(c) && memcmp(s->data, c, s->len) == 0;
}


static int
fuzz_hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }

    return -1;
}


/* application/x-www-form-urlencoded, strict about '%' */
static long
fuzz_url_decode(const char *src, size_t len, char *out)
{
    int     hi, lo;
    size_t  i, n;

    n = 0;

    for (i = 0; i < len; i++) {

        if (src[i] == '+') {
            out[n++] = ' ';

        } else if (src[i] != '%') {
            out[n++] = src[i];

        } else {
            if (len - i < 3) {
                return -1;
            }

            hi = fuzz_hex_value(src[i + 1]);
            lo = fuzz_hex_value(src[i + 2]);

            if (hi < 0 || lo < 0) {
                return -1;
            }

            out[n++] = (char) (hi * 16 + lo);
            i += 2;
        }
    }

    return (long) n;
}


static int
fuzz_key_cmp(const void *a, const void *b)
{
    int                  rc;
    size_t               n;
    const fuzz_param_t  *x = a, *y = b;

    n = x->key.len < y->key.len ? x->key.len : y->key.len;

    rc = n ? memcmp(x->key.data, y->key.data, n) : 0;
    if (rc != 0) {
        return rc;
    }

    return (x->key.len > y->key.len) - (x->key.len < y->key.len);
}


/* split at '&', empty segments skipped, at most 32, decoded, sorted */
static void
fuzz_query_read(const char *query, size_t len, fuzz_query_t *q)
{
    long         n;
    char        *out;
    size_t       i, start, end, eq;

    q->bad = 0;
    q->n = 0;

    if (len > FUZZ_QUERY_MAX) {
        q->bad = 1;
        return;
    }

    out = q->decoded;

    for (start = 0; start < len; start = end + 1) {

        for (end = start; end < len && query[end] != '&'; end++) {
            /* void */
        }

        if (end == start) {
            continue;
        }

        if (q->n == PUSHER_API_MAX_PARAMS) {
            q->bad = 1;
            return;
        }

        for (eq = start; eq < end && query[eq] != '='; eq++) {
            /* void */
        }

        q->params[q->n].raw.data = query + start;
        q->params[q->n].raw.len = end - start;

        n = fuzz_url_decode(query + start, eq - start, out);
        if (n < 0) {
            q->bad = 1;
            return;
        }

        q->params[q->n].key.data = out;
        q->params[q->n].key.len = (size_t) n;
        out += n;

        n = (eq == end) ? 0 : fuzz_url_decode(query + eq + 1, end - eq - 1,
                                              out);
        if (n < 0) {
            q->bad = 1;
            return;
        }

        q->params[q->n].value.data = out;
        q->params[q->n].value.len = (size_t) n;
        out += n;

        q->n++;
    }

    qsort(q->params, q->n, sizeof(fuzz_param_t), fuzz_key_cmp);

    for (i = 1; i < q->n; i++) {
        if (fuzz_key_cmp(&q->params[i - 1], &q->params[i]) == 0) {
            q->bad = 1;
            return;
        }
    }
}


static const fuzz_param_t *
fuzz_query_find(const fuzz_query_t *q, const char *name)
{
    size_t  i;

    for (i = 0; i < q->n; i++) {
        if (fuzz_str_is(&q->params[i].key, name)) {
            return &q->params[i];
        }
    }

    return NULL;
}


static void
fuzz_hex(const uint8_t *md, size_t len, char *out)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        out[2 * i] = fuzz_hex_digits[md[i] >> 4];
        out[2 * i + 1] = fuzz_hex_digits[md[i] & 0xf];
    }
}


static void
fuzz_hmac(const char *msg, size_t len, char out[PUSHER_HMAC_HEX_LEN])
{
    uint8_t       md[EVP_MAX_MD_SIZE];
    unsigned int  md_len;

    FUZZ_CHECK(HMAC(EVP_sha256(), FUZZ_APP_SECRET,
                    sizeof(FUZZ_APP_SECRET) - 1, (const uint8_t *) msg, len,
                    md, &md_len)
               != NULL);
    FUZZ_CHECK(md_len == 32);

    fuzz_hex(md, 32, out);
}


static void
fuzz_md5(const fuzz_str_t *body, char out[32])
{
    uint8_t       md[EVP_MAX_MD_SIZE];
    unsigned int  md_len;

    FUZZ_CHECK(EVP_Digest(body->data, body->len, md, &md_len, EVP_md5(), NULL)
               == 1);
    FUZZ_CHECK(md_len == 16);

    fuzz_hex(md, 16, out);
}


static int
fuzz_timestamp_ok(const fuzz_str_t *v, int64_t now)
{
    size_t   i;
    int64_t  ts;

    if (v->len == 0 || v->len > 18) {
        return 0;
    }

    ts = 0;

    for (i = 0; i < v->len; i++) {
        if (v->data[i] < '0' || v->data[i] > '9') {
            return 0;
        }

        ts = ts * 10 + (v->data[i] - '0');
    }

    return ts - now <= PUSHER_API_TIMESTAMP_WINDOW
           && now - ts <= PUSHER_API_TIMESTAMP_WINDOW;
}


static void
fuzz_append(fuzz_verdict_t *v, const void *data, size_t len)
{
    FUZZ_CHECK(v->sign_len + len <= v->sign_cap);

    memcpy(v->sign + v->sign_len, data, len);
    v->sign_len += len;
}


/* the model: what the request should get, in the order of pusher_auth.h */
static void
fuzz_model(const fuzz_request_t *r, int64_t now, fuzz_query_t *q,
    fuzz_verdict_t *v)
{
    int                  first;
    char                 md5[32], expect[PUSHER_HMAC_HEX_LEN];
    size_t               i;
    const fuzz_param_t  *key, *ts, *version, *sig, *body_md5;

    /* decoding never grows a query; '=' is added to keys without one */
    v->sign_len = 0;
    v->sign_cap = r->method.len + r->path.len + 2 + 2 * r->query.len;
    v->sign = realloc(v->sign, v->sign_cap + 1);
    FUZZ_CHECK(v->sign != NULL);

    fuzz_query_read(r->query.data, r->query.len, q);

    if (q->bad) {
        v->rc = PUSHER_API_BAD_QUERY;
        return;
    }

    key = fuzz_query_find(q, "auth_key");
    ts = fuzz_query_find(q, "auth_timestamp");
    version = fuzz_query_find(q, "auth_version");
    sig = fuzz_query_find(q, "auth_signature");
    body_md5 = fuzz_query_find(q, "body_md5");

    if (key == NULL || ts == NULL || version == NULL || sig == NULL) {
        v->rc = PUSHER_API_MISSING_PARAM;
        return;
    }

    if (!fuzz_str_is(&key->value, FUZZ_APP_KEY)) {
        v->rc = PUSHER_API_BAD_KEY;
        return;
    }

    if (!fuzz_str_is(&version->value, "1.0")) {
        v->rc = PUSHER_API_BAD_VERSION;
        return;
    }

    if (!fuzz_timestamp_ok(&ts->value, now)) {
        v->rc = PUSHER_API_EXPIRED;
        return;
    }

    if (body_md5 != NULL || r->body.len > 0) {
        fuzz_md5(&r->body, md5);

        if (body_md5 == NULL || body_md5->value.len != 32
            || memcmp(body_md5->value.data, md5, 32) != 0)
        {
            v->rc = PUSHER_API_BAD_BODY_MD5;
            return;
        }
    }

    if (sig->value.len != PUSHER_HMAC_HEX_LEN) {
        v->rc = PUSHER_API_BAD_SIGNATURE;
        return;
    }

    memcpy(v->sig, sig->value.data, PUSHER_HMAC_HEX_LEN);

    fuzz_append(v, r->method.data, r->method.len);
    fuzz_append(v, "\n", 1);
    fuzz_append(v, r->path.data, r->path.len);
    fuzz_append(v, "\n", 1);

    first = 1;

    for (i = 0; i < q->n; i++) {
        if (&q->params[i] == sig) {
            continue;
        }

        if (!first) {
            fuzz_append(v, "&", 1);
        }

        fuzz_append(v, q->params[i].key.data, q->params[i].key.len);
        fuzz_append(v, "=", 1);
        fuzz_append(v, q->params[i].value.data, q->params[i].value.len);
        first = 0;
    }

    fuzz_hmac(v->sign, v->sign_len, expect);

    v->rc = memcmp(expect, sig->value.data, PUSHER_HMAC_HEX_LEN) == 0
            ? PUSHER_API_OK : PUSHER_API_BAD_SIGNATURE;
}


/* the request in exact-size heap copies: ASan sees reads past each part */
static pusher_api_result_e
fuzz_verify(const fuzz_request_t *r, int64_t now)
{
    char                 *method, *path, *query;
    uint8_t              *body;
    pusher_api_result_e   rc;

    method = malloc(r->method.len + 1);
    path = malloc(r->path.len + 1);
    query = malloc(r->query.len + 1);
    body = malloc(r->body.len + 1);
    FUZZ_CHECK(method && path && query && body);

    memcpy(method, r->method.data, r->method.len);
    memcpy(path, r->path.data, r->path.len);
    memcpy(query, r->query.data, r->query.len);
    memcpy(body, r->body.data, r->body.len);

    rc = pusher_api_verify(method, r->method.len, path, r->path.len, query,
                           r->query.len, body, r->body.len,
                           (const uint8_t *) FUZZ_APP_KEY,
                           sizeof(FUZZ_APP_KEY) - 1,
                           (const uint8_t *) FUZZ_APP_SECRET,
                           sizeof(FUZZ_APP_SECRET) - 1, now);

    FUZZ_CHECK(rc >= PUSHER_API_OK && rc <= PUSHER_API_BAD_SIGNATURE);
    FUZZ_CHECK(pusher_api_result_text(rc) != NULL);

    free(method);
    free(path);
    free(query);
    free(body);

    return rc;
}


/* pusher_query_param() against the model, into an exact-size buffer */
static void
fuzz_query_param(const fuzz_str_t *query, const char *name, size_t cap)
{
    long         n, expect;
    char        *out, *value;
    size_t       start, end, eq, name_len;

    name_len = strlen(name);
    expect = -1;
    value = malloc(query->len + 1);
    FUZZ_CHECK(value != NULL);

    /* the first segment whose key decodes to name; empty ones count */
    for (start = 0; start < query->len; start = end + 1) {

        for (end = start; end < query->len && query->data[end] != '&';
             end++)
        {
            /* void */
        }

        for (eq = start; eq < end && query->data[eq] != '='; eq++) {
            /* void */
        }

        n = fuzz_url_decode(query->data + start, eq - start, value);

        if (n != (long) name_len || memcmp(value, name, name_len) != 0) {
            continue;
        }

        n = (eq == end) ? 0 : fuzz_url_decode(query->data + eq + 1,
                                              end - eq - 1, value);

        expect = (n < 0 || cap == 0 || (size_t) n > cap - 1) ? -1 : n;
        break;
    }

    out = malloc(cap + !cap);
    FUZZ_CHECK(out != NULL);

    n = pusher_query_param(query->data, query->len, name, out, cap);

    FUZZ_CHECK(n == expect);

    if (n >= 0) {
        FUZZ_CHECK(out[n] == '\0');
        FUZZ_CHECK(memcmp(out, value, (size_t) n) == 0);
    }

    free(out);
    free(value);
}


static void
fuzz_query_params(const fuzz_request_t *r, const fuzz_query_t *q,
    size_t cap)
{
    char    name[65];
    size_t  i;

    static const char  *names[] = {
        "auth_key", "auth_timestamp", "auth_signature", "body_md5", "info",
        "filter_by_prefix", ""
    };

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        fuzz_query_param(&r->query, names[i], cap);
        fuzz_query_param(&r->query, names[i], r->query.len + 1);
    }

    /* a name from the query itself */
    if (q->n > 0 && q->params[0].key.len < sizeof(name)
        && memchr(q->params[0].key.data, '\0', q->params[0].key.len) == NULL)
    {
        memcpy(name, q->params[0].key.data, q->params[0].key.len);
        name[q->params[0].key.len] = '\0';

        fuzz_query_param(&r->query, name, cap);
        fuzz_query_param(&r->query, name, r->query.len + 1);
    }
}


/*
 * The request signed here: the input's query without auth_signature, the
 * auth parameters it lacks, and the model's signature.
 */
static size_t
fuzz_sign(const fuzz_request_t *r, int64_t now, fuzz_query_t *q,
    fuzz_verdict_t *v, char *out, size_t cap)
{
    int             n;
    char            md5[33];
    size_t          i, len;
    fuzz_request_t  signed_r;

    fuzz_query_read(r->query.data, r->query.len, q);

    len = 0;

#define fuzz_out(s, l)                                                        \
    do {                                                                      \
        if (len + (l) > cap) {                                                \
            return 0;                                                         \
        }                                                                     \
        memcpy(out + len, s, l);                                              \
        len += (l);                                                           \
    } while (0)

    if (q->bad) {
        /* the raw query, for the model to refuse */
        fuzz_out(r->query.data, r->query.len);
        return len;
    }

    for (i = 0; i < q->n; i++) {
        if (fuzz_str_is(&q->params[i].key, "auth_signature")) {
            continue;
        }

        if (len) {
            fuzz_out("&", 1);
        }

        fuzz_out(q->params[i].raw.data, q->params[i].raw.len);
    }

    if (fuzz_query_find(q, "auth_key") == NULL) {
        fuzz_out("&auth_key=" FUZZ_APP_KEY, sizeof("&auth_key=") - 1 + 20);
    }

    if (fuzz_query_find(q, "auth_timestamp") == NULL) {
        n = snprintf(md5, sizeof(md5), "%lld", (long long) now);
        fuzz_out("&auth_timestamp=", sizeof("&auth_timestamp=") - 1);
        fuzz_out(md5, (size_t) n);
    }

    if (fuzz_query_find(q, "auth_version") == NULL) {
        fuzz_out("&auth_version=1.0", sizeof("&auth_version=1.0") - 1);
    }

    if (fuzz_query_find(q, "body_md5") == NULL && r->body.len > 0) {
        fuzz_md5(&r->body, md5);
        fuzz_out("&body_md5=", sizeof("&body_md5=") - 1);
        fuzz_out(md5, 32);
    }

    /* sign what the model would sign with any 64 hex digits */
    fuzz_out("&auth_signature=", sizeof("&auth_signature=") - 1);
    fuzz_out("0000000000000000000000000000000000000000000000000000000000000000",
             PUSHER_HMAC_HEX_LEN);

#undef fuzz_out

    /* what the model signs for it: auth_signature is left out */
    signed_r = *r;
    signed_r.query.data = out;
    signed_r.query.len = len;

    fuzz_model(&signed_r, now, q, v);

    if (v->sign_len > 0) {
        fuzz_hmac(v->sign, v->sign_len, out + len - PUSHER_HMAC_HEX_LEN);
    }

    return len;
}


/* channel and user auth: made here, verified there, and each byte counts */
static void
fuzz_client_auth(const fuzz_request_t *r, uint32_t seed)
{
    int      ok;
    char    *msg, *auth;
    size_t   len, i, n, auth_len;
    uint8_t  x;

    const uint8_t  *secret = (const uint8_t *) FUZZ_APP_SECRET;
    const uint8_t  *key = (const uint8_t *) FUZZ_APP_KEY;
    const size_t    secret_len = sizeof(FUZZ_APP_SECRET) - 1;
    const size_t    key_len = sizeof(FUZZ_APP_KEY) - 1;

    /* socket_id: the method, channel: the path, data: the body */
    len = r->method.len + r->path.len + r->body.len + sizeof("::user::");
    msg = malloc(len);
    auth_len = key_len + 1 + PUSHER_HMAC_HEX_LEN;
    auth = malloc(auth_len);
    FUZZ_CHECK(msg != NULL && auth != NULL);

    for (n = 0; n < 2; n++) {

        len = 0;
        memcpy(msg + len, r->method.data, r->method.len);
        len += r->method.len;

        if (n == 0) {
            msg[len++] = ':';
            memcpy(msg + len, r->path.data, r->path.len);
            len += r->path.len;

            if (r->body.len) {
                msg[len++] = ':';
            }

        } else {
            memcpy(msg + len, "::user::", 8);
            len += 8;
        }

        memcpy(msg + len, r->body.data, r->body.len);
        len += r->body.len;

        memcpy(auth, key, key_len);
        auth[key_len] = ':';
        fuzz_hmac(msg, len, auth + key_len + 1);

        for (i = 0; i <= FUZZ_CHANGES; i++) {

            if (i == FUZZ_CHANGES) {
                /* any string as auth: the query, as it came */
                x = 0;

            } else {
                /* a byte of the auth string changed; i == 0: none */
                x = i ? (uint8_t) (1 + fuzz_next(&seed) % 255) : 0;
            }

            if (i == FUZZ_CHANGES) {
                ok = (n == 0)
                     ? pusher_auth_channel_ok(secret, secret_len, key,
                           key_len, (const uint8_t *) r->method.data,
                           r->method.len, (const uint8_t *) r->path.data,
                           r->path.len, (const uint8_t *) r->body.data,
                           r->body.len, (const uint8_t *) r->query.data,
                           r->query.len)
                     : pusher_auth_user_ok(secret, secret_len, key, key_len,
                           (const uint8_t *) r->method.data, r->method.len,
                           (const uint8_t *) r->body.data, r->body.len,
                           (const uint8_t *) r->query.data, r->query.len);

                FUZZ_CHECK(ok == (r->query.len == auth_len
                                  && memcmp(r->query.data, auth, auth_len)
                                     == 0));
                continue;
            }

            auth[fuzz_next(&seed) % auth_len] ^= x;

            ok = (n == 0)
                 ? pusher_auth_channel_ok(secret, secret_len, key, key_len,
                       (const uint8_t *) r->method.data, r->method.len,
                       (const uint8_t *) r->path.data, r->path.len,
                       (const uint8_t *) r->body.data, r->body.len,
                       (const uint8_t *) auth, auth_len)
                 : pusher_auth_user_ok(secret, secret_len, key, key_len,
                       (const uint8_t *) r->method.data, r->method.len,
                       (const uint8_t *) r->body.data, r->body.len,
                       (const uint8_t *) auth, auth_len);

            FUZZ_CHECK(ok == (x == 0));

            /* undo, for the next change */
            fuzz_hmac(msg, len, auth + key_len + 1);
            memcpy(auth, key, key_len);
            auth[key_len] = ':';
        }
    }

    free(msg);
    free(auth);
}


static void
fuzz_split(const uint8_t *data, size_t size, fuzz_request_t *r)
{
    size_t       i;
    fuzz_str_t  *part[3];
    const char  *p, *end, *nl;

    part[0] = &r->method;
    part[1] = &r->path;
    part[2] = &r->query;

    p = (const char *) data;
    end = p + size;

    for (i = 0; i < 3; i++) {
        nl = memchr(p, '\n', (size_t) (end - p));

        if (nl == NULL) {
            nl = end;
        }

        part[i]->data = p;
        part[i]->len = (size_t) (nl - p);

        p = (nl < end) ? nl + 1 : end;
    }

    r->body.data = p;
    r->body.len = (size_t) (end - p);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char                  *req, *query;
    size_t                 i, k, len, total, cap;
    int64_t                now;
    uint32_t               seed;
    fuzz_query_t          *q, *q2;
    fuzz_request_t         r, m;
    fuzz_verdict_t        *v, *v2;
    pusher_api_result_e    rc;

    if (size < 3) {
        return 0;
    }

    now = FUZZ_NOW + 10 * (int64_t) (int8_t) data[0];
    seed = data[1] | (uint32_t) data[2] << 8;
    cap = data[1] % 80;

    fuzz_split(data + 3, size - 3, &r);

    q = malloc(sizeof(fuzz_query_t));
    q2 = malloc(sizeof(fuzz_query_t));
    v = malloc(sizeof(fuzz_verdict_t));
    v2 = malloc(sizeof(fuzz_verdict_t));
    FUZZ_CHECK(q && q2 && v && v2);

    v->sign = NULL;
    v2->sign = NULL;

    /* the request as it came */
    fuzz_model(&r, now, q, v);
    FUZZ_CHECK(fuzz_verify(&r, now) == v->rc);

    fuzz_query_params(&r, q, cap);
    fuzz_client_auth(&r, seed);

    /* the request signed here */
    cap = FUZZ_QUERY_MAX + 256;
    query = malloc(cap);
    FUZZ_CHECK(query != NULL);

    len = fuzz_sign(&r, now, q, v, query, cap);

    if (len > 0) {
        r.query.data = query;
        r.query.len = len;

        fuzz_model(&r, now, q, v);
        rc = fuzz_verify(&r, now);
        FUZZ_CHECK(rc == v->rc);

        /* the single-byte changes, in one buffer: method path query body */
        total = r.method.len + r.path.len + r.query.len + r.body.len;
        req = malloc(total + !total);
        FUZZ_CHECK(req != NULL);

        for (k = 0; total > 0 && k < FUZZ_CHANGES; k++) {
            memcpy(req, r.method.data, r.method.len);
            memcpy(req + r.method.len, r.path.data, r.path.len);
            memcpy(req + r.method.len + r.path.len, r.query.data,
                   r.query.len);
            memcpy(req + r.method.len + r.path.len + r.query.len,
                   r.body.data, r.body.len);

            i = fuzz_next(&seed) % total;
            req[i] ^= (char) (1 + fuzz_next(&seed) % 255);

            m.method.data = req;
            m.method.len = r.method.len;
            m.path.data = req + r.method.len;
            m.path.len = r.path.len;
            m.query.data = m.path.data + r.path.len;
            m.query.len = r.query.len;
            m.body.data = m.query.data + r.query.len;
            m.body.len = r.body.len;

            fuzz_model(&m, now, q2, v2);
            rc = fuzz_verify(&m, now);

            FUZZ_CHECK(rc == v2->rc);

            if (rc == PUSHER_API_OK) {
                /* only a change that signs the same string */
                FUZZ_CHECK(v->rc == PUSHER_API_OK);
                FUZZ_CHECK(v2->sign_len == v->sign_len
                           && memcmp(v2->sign, v->sign, v->sign_len) == 0);
                FUZZ_CHECK(memcmp(v2->sig, v->sig, PUSHER_HMAC_HEX_LEN)
                           == 0);
                FUZZ_CHECK(i >= r.method.len + r.path.len
                           && i < r.method.len + r.path.len + r.query.len);
            }
        }

        free(req);
    }

    free(query);
    free(q);
    free(q2);
    free(v->sign);
    free(v2->sign);
    free(v);
    free(v2);

    return 0;
}
