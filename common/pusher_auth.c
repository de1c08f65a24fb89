/*
 * ngx-pusher: HMAC-SHA256 signatures (OpenSSL 3), compared in constant
 * time.  No heap allocation of our own: HTTP API queries are decoded into
 * stack buffers and every signed string is fed to the MAC in pieces.
 */

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>

#include "pusher_auth.h"


#define PUSHER_SHA256_LEN        32
#define PUSHER_MD5_LEN           16
#define PUSHER_MD5_HEX_LEN       32

/* longest raw HTTP API query string accepted (decoding never grows it) */
#define PUSHER_API_MAX_QUERY     4096


typedef struct {
    const char  *key;
    size_t       key_len;
    const char  *value;
    size_t       value_len;
} pusher_param_t;


typedef struct {
    EVP_MAC      *mac;
    EVP_MAC_CTX  *ctx;
} pusher_hmac_t;


static int pusher_hmac_init(pusher_hmac_t *h, const uint8_t *key,
    size_t key_len);
static int pusher_hmac_update(pusher_hmac_t *h, const void *data, size_t len);
static int pusher_hmac_final_hex(pusher_hmac_t *h,
    char out[PUSHER_HMAC_HEX_LEN]);
static void pusher_hmac_free(pusher_hmac_t *h);
static int pusher_auth_check(pusher_hmac_t *h, const uint8_t *app_key,
    size_t app_key_len, const uint8_t *auth, size_t auth_len);
static void pusher_hex(const uint8_t *src, size_t len, char *out);
static int pusher_md5_hex_checked(const uint8_t *data, size_t len,
    char out[PUSHER_MD5_HEX_LEN]);
static int pusher_url_next(const char **pos, const char *end);
static long pusher_url_decode(const char *src, size_t len, char *out,
    size_t cap);
static int pusher_param_cmp(const pusher_param_t *a, const pusher_param_t *b);
static const pusher_param_t *pusher_param_find(const pusher_param_t *params,
    size_t n, const char *name);
static int pusher_param_equal(const pusher_param_t *p, const uint8_t *s,
    size_t len);
static int pusher_timestamp_ok(const pusher_param_t *p, int64_t now);


static const char  pusher_hex_digits[] = "0123456789abcdef";


void
pusher_hmac_sha256_hex(const uint8_t *key, size_t key_len,
    const uint8_t *msg, size_t msg_len, char out[PUSHER_HMAC_HEX_LEN])
{
    uint8_t       md[EVP_MAX_MD_SIZE];
    unsigned int  md_len;

    md_len = 0;

    /* HMAC() fails only on allocation failure: no valid digest is all 0 */
    if (HMAC(EVP_sha256(), key_len ? key : (const uint8_t *) "",
             (int) key_len, msg, msg_len, md, &md_len)
        == NULL
        || md_len != PUSHER_SHA256_LEN)
    {
        memset(out, '0', PUSHER_HMAC_HEX_LEN);
        return;
    }

    pusher_hex(md, PUSHER_SHA256_LEN, out);
}


void
pusher_md5_hex(const uint8_t *data, size_t len, char out[32])
{
    if (pusher_md5_hex_checked(data, len, out) != 0) {
        memset(out, '0', PUSHER_MD5_HEX_LEN);
    }
}


static int
pusher_md5_hex_checked(const uint8_t *data, size_t len,
    char out[PUSHER_MD5_HEX_LEN])
{
    uint8_t       md[EVP_MAX_MD_SIZE];
    unsigned int  md_len;

    md_len = 0;

    if (EVP_Digest(data, len, md, &md_len, EVP_md5(), NULL) != 1
        || md_len != PUSHER_MD5_LEN)
    {
        return -1;
    }

    pusher_hex(md, PUSHER_MD5_LEN, out);

    return 0;
}


static void
pusher_hex(const uint8_t *src, size_t len, char *out)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        out[2 * i] = pusher_hex_digits[src[i] >> 4];
        out[2 * i + 1] = pusher_hex_digits[src[i] & 0xf];
    }
}


int
pusher_auth_channel_ok(const uint8_t *secret, size_t secret_len,
    const uint8_t *app_key, size_t app_key_len,
    const uint8_t *socket_id, size_t socket_id_len,
    const uint8_t *channel, size_t channel_len,
    const uint8_t *channel_data, size_t channel_data_len,
    const uint8_t *auth, size_t auth_len)
{
    int            ok;
    pusher_hmac_t  h;

    if (pusher_hmac_init(&h, secret, secret_len) != 0) {
        return 0;
    }

    ok = pusher_hmac_update(&h, socket_id, socket_id_len) == 0
         && pusher_hmac_update(&h, ":", 1) == 0
         && pusher_hmac_update(&h, channel, channel_len) == 0;

    if (ok && channel_data_len) {
        ok = pusher_hmac_update(&h, ":", 1) == 0
             && pusher_hmac_update(&h, channel_data, channel_data_len) == 0;
    }

    ok = ok && pusher_auth_check(&h, app_key, app_key_len, auth, auth_len);

    pusher_hmac_free(&h);

    return ok;
}


int
pusher_auth_user_ok(const uint8_t *secret, size_t secret_len,
    const uint8_t *app_key, size_t app_key_len,
    const uint8_t *socket_id, size_t socket_id_len,
    const uint8_t *user_data, size_t user_data_len,
    const uint8_t *auth, size_t auth_len)
{
    int            ok;
    pusher_hmac_t  h;

    if (pusher_hmac_init(&h, secret, secret_len) != 0) {
        return 0;
    }

    ok = pusher_hmac_update(&h, socket_id, socket_id_len) == 0
         && pusher_hmac_update(&h, "::user::", 8) == 0
         && pusher_hmac_update(&h, user_data, user_data_len) == 0
         && pusher_auth_check(&h, app_key, app_key_len, auth, auth_len);

    pusher_hmac_free(&h);

    return ok;
}


/*
 * auth is "<app_key>:<64 lowercase hex>".  The key is public, so only its
 * bytes are compared without early exit; the digest always is.
 */
static int
pusher_auth_check(pusher_hmac_t *h, const uint8_t *app_key,
    size_t app_key_len, const uint8_t *auth, size_t auth_len)
{
    int   key_ok;
    char  hex[PUSHER_HMAC_HEX_LEN];

    if (auth_len != app_key_len + 1 + PUSHER_HMAC_HEX_LEN
        || auth[app_key_len] != ':')
    {
        return 0;
    }

    key_ok = CRYPTO_memcmp(auth, app_key, app_key_len) == 0;

    if (pusher_hmac_final_hex(h, hex) != 0) {
        return 0;
    }

    return (CRYPTO_memcmp(auth + app_key_len + 1, hex, PUSHER_HMAC_HEX_LEN)
            == 0)
           & key_ok;
}


static int
pusher_hmac_init(pusher_hmac_t *h, const uint8_t *key, size_t key_len)
{
    OSSL_PARAM  params[2];

    /* OpenSSL rejects a NULL key even when it is empty */
    static const uint8_t  empty_key[1] = { 0 };

    h->ctx = NULL;
    h->mac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
    if (h->mac == NULL) {
        return -1;
    }

    h->ctx = EVP_MAC_CTX_new(h->mac);
    if (h->ctx == NULL) {
        pusher_hmac_free(h);
        return -1;
    }

    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                 (char *) "SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();

    if (EVP_MAC_init(h->ctx, key_len ? key : empty_key, key_len, params)
        != 1)
    {
        pusher_hmac_free(h);
        return -1;
    }

    return 0;
}


static int
pusher_hmac_update(pusher_hmac_t *h, const void *data, size_t len)
{
    if (len == 0) {
        return 0;
    }

    return EVP_MAC_update(h->ctx, data, len) == 1 ? 0 : -1;
}


static int
pusher_hmac_final_hex(pusher_hmac_t *h, char out[PUSHER_HMAC_HEX_LEN])
{
    size_t   md_len;
    uint8_t  md[EVP_MAX_MD_SIZE];

    md_len = 0;

    if (EVP_MAC_final(h->ctx, md, &md_len, sizeof(md)) != 1
        || md_len != PUSHER_SHA256_LEN)
    {
        return -1;
    }

    pusher_hex(md, PUSHER_SHA256_LEN, out);

    return 0;
}


static void
pusher_hmac_free(pusher_hmac_t *h)
{
    EVP_MAC_CTX_free(h->ctx);
    EVP_MAC_free(h->mac);

    h->ctx = NULL;
    h->mac = NULL;
}


pusher_api_result_e
pusher_api_verify(const char *method, size_t method_len,
    const char *path, size_t path_len, const char *query, size_t query_len,
    const uint8_t *body, size_t body_len,
    const uint8_t *app_key, size_t app_key_len,
    const uint8_t *secret, size_t secret_len, int64_t now)
{
    int                    ok, first;
    long                   n;
    char                  *out, md5_hex[PUSHER_MD5_HEX_LEN];
    char                   hex[PUSHER_HMAC_HEX_LEN];
    char                   decoded[PUSHER_API_MAX_QUERY];
    size_t                 i, j, nparams;
    const char            *p, *end, *amp, *eq;
    pusher_hmac_t          h;
    pusher_param_t         params[PUSHER_API_MAX_PARAMS], tmp;
    const pusher_param_t  *key, *ts, *version, *sig, *md5;

    if (query_len > PUSHER_API_MAX_QUERY) {
        return PUSHER_API_BAD_QUERY;
    }

    /*
     * Decode every parameter into "decoded": a decoded key or value is
     * never longer than its raw form, so the buffer always has room.
     */
    nparams = 0;
    out = decoded;
    p = query;
    end = query + query_len;

    while (p < end) {
        amp = memchr(p, '&', (size_t) (end - p));
        if (amp == NULL) {
            amp = end;
        }

        /* empty segments ("a=1&&b=2", a trailing '&') carry nothing */
        if (amp == p) {
            p++;
            continue;
        }

        if (nparams == PUSHER_API_MAX_PARAMS) {
            return PUSHER_API_BAD_QUERY;
        }

        eq = memchr(p, '=', (size_t) (amp - p));
        if (eq == NULL) {
            eq = amp;
        }

        n = pusher_url_decode(p, (size_t) (eq - p), out,
                              (size_t) (decoded + sizeof(decoded) - out));
        if (n < 0) {
            return PUSHER_API_BAD_QUERY;
        }

        params[nparams].key = out;
        params[nparams].key_len = (size_t) n;
        out += n;

        n = (eq == amp) ? 0
                        : pusher_url_decode(eq + 1, (size_t) (amp - eq - 1),
                              out, (size_t) (decoded + sizeof(decoded) - out));
        if (n < 0) {
            return PUSHER_API_BAD_QUERY;
        }

        params[nparams].value = out;
        params[nparams].value_len = (size_t) n;
        out += n;

        nparams++;
        p = (amp < end) ? amp + 1 : end;
    }

    /* insertion sort: at most PUSHER_API_MAX_PARAMS entries */
    for (i = 1; i < nparams; i++) {
        tmp = params[i];

        for (j = i; j > 0 && pusher_param_cmp(&params[j - 1], &tmp) > 0;
             j--)
        {
            params[j] = params[j - 1];
        }

        params[j] = tmp;
    }

    for (i = 1; i < nparams; i++) {
        if (pusher_param_cmp(&params[i - 1], &params[i]) == 0) {
            return PUSHER_API_BAD_QUERY;
        }
    }

    key = pusher_param_find(params, nparams, "auth_key");
    ts = pusher_param_find(params, nparams, "auth_timestamp");
    version = pusher_param_find(params, nparams, "auth_version");
    sig = pusher_param_find(params, nparams, "auth_signature");
    md5 = pusher_param_find(params, nparams, "body_md5");

    if (key == NULL || ts == NULL || version == NULL || sig == NULL) {
        return PUSHER_API_MISSING_PARAM;
    }

    if (!pusher_param_equal(key, app_key, app_key_len)) {
        return PUSHER_API_BAD_KEY;
    }

    if (version->value_len != 3 || memcmp(version->value, "1.0", 3) != 0) {
        return PUSHER_API_BAD_VERSION;
    }

    if (!pusher_timestamp_ok(ts, now)) {
        return PUSHER_API_EXPIRED;
    }

    /* an empty body may come with the MD5 of the empty string, or none */
    if (md5 != NULL || body_len > 0) {
        if (md5 == NULL
            || pusher_md5_hex_checked(body, body_len, md5_hex) != 0
            || !pusher_param_equal(md5, (const uint8_t *) md5_hex,
                                   PUSHER_MD5_HEX_LEN))
        {
            return PUSHER_API_BAD_BODY_MD5;
        }
    }

    if (sig->value_len != PUSHER_HMAC_HEX_LEN) {
        return PUSHER_API_BAD_SIGNATURE;
    }

    /* METHOD "\n" PATH "\n" k=v&k=v..., decoded, sorted, no signature */
    if (pusher_hmac_init(&h, secret, secret_len) != 0) {
        return PUSHER_API_BAD_SIGNATURE;
    }

    ok = pusher_hmac_update(&h, method, method_len) == 0
         && pusher_hmac_update(&h, "\n", 1) == 0
         && pusher_hmac_update(&h, path, path_len) == 0
         && pusher_hmac_update(&h, "\n", 1) == 0;

    first = 1;

    for (i = 0; ok && i < nparams; i++) {
        if (&params[i] == sig) {
            continue;
        }

        ok = (first || pusher_hmac_update(&h, "&", 1) == 0)
             && pusher_hmac_update(&h, params[i].key, params[i].key_len) == 0
             && pusher_hmac_update(&h, "=", 1) == 0
             && pusher_hmac_update(&h, params[i].value, params[i].value_len)
                == 0;

        first = 0;
    }

    ok = ok && pusher_hmac_final_hex(&h, hex) == 0;

    pusher_hmac_free(&h);

    if (!ok || CRYPTO_memcmp(sig->value, hex, PUSHER_HMAC_HEX_LEN) != 0) {
        return PUSHER_API_BAD_SIGNATURE;
    }

    return PUSHER_API_OK;
}


const char *
pusher_api_result_text(pusher_api_result_e rc)
{
    switch (rc) {

    case PUSHER_API_OK:
        return "OK";

    case PUSHER_API_BAD_QUERY:
        return "Malformed query string";

    case PUSHER_API_MISSING_PARAM:
        return "Missing auth_key, auth_timestamp, auth_version or "
               "auth_signature";

    case PUSHER_API_BAD_KEY:
        return "Unknown auth_key";

    case PUSHER_API_BAD_VERSION:
        return "auth_version must be 1.0";

    case PUSHER_API_EXPIRED:
        return "auth_timestamp is outside the allowed window (600 seconds)";

    case PUSHER_API_BAD_BODY_MD5:
        return "body_md5 does not match the request body";

    case PUSHER_API_BAD_SIGNATURE:
        return "Invalid signature";
    }

    return "Authentication failed";
}


/* byte order of keys; a key sorts before every longer key it prefixes */
static int
pusher_param_cmp(const pusher_param_t *a, const pusher_param_t *b)
{
    int     rc;
    size_t  n;

    n = a->key_len < b->key_len ? a->key_len : b->key_len;

    rc = n ? memcmp(a->key, b->key, n) : 0;
    if (rc != 0) {
        return rc;
    }

    return (a->key_len > b->key_len) - (a->key_len < b->key_len);
}


static const pusher_param_t *
pusher_param_find(const pusher_param_t *params, size_t n, const char *name)
{
    size_t  i, len;

    len = strlen(name);

    for (i = 0; i < n; i++) {
        if (params[i].key_len == len && memcmp(params[i].key, name, len) == 0)
        {
            return &params[i];
        }
    }

    return NULL;
}


/* constant time in the bytes; lengths are not secret */
static int
pusher_param_equal(const pusher_param_t *p, const uint8_t *s, size_t len)
{
    if (p->value_len != len) {
        return 0;
    }

    return len == 0 || CRYPTO_memcmp(p->value, s, len) == 0;
}


/* 1 .. 18 digits (no overflow in int64_t) within the window around now */
static int
pusher_timestamp_ok(const pusher_param_t *p, int64_t now)
{
    size_t    i;
    int64_t   ts;
    uint64_t  diff;

    if (p->value_len == 0 || p->value_len > 18) {
        return 0;
    }

    ts = 0;

    for (i = 0; i < p->value_len; i++) {
        if (p->value[i] < '0' || p->value[i] > '9') {
            return 0;
        }

        ts = ts * 10 + (p->value[i] - '0');
    }

    /* the difference of two int64_t, ordered, always fits in uint64_t */
    diff = (ts >= now) ? (uint64_t) ts - (uint64_t) now
                       : (uint64_t) now - (uint64_t) ts;

    return diff <= PUSHER_API_TIMESTAMP_WINDOW;
}


/* the value is always NUL-terminated: it must be shorter than cap */
long
pusher_query_param(const char *query, size_t query_len,
    const char *name, char *out, size_t cap)
{
    int          c, match;
    long         n;
    size_t       i, name_len;
    const char  *p, *end, *amp, *eq, *k;

    if (cap == 0) {
        return -1;
    }

    name_len = strlen(name);
    p = query;
    end = query + query_len;

    while (p < end) {
        amp = memchr(p, '&', (size_t) (end - p));
        if (amp == NULL) {
            amp = end;
        }

        eq = memchr(p, '=', (size_t) (amp - p));
        if (eq == NULL) {
            eq = amp;
        }

        /* compare the decoded key with name without a buffer */
        k = p;
        match = 1;

        for (i = 0; k < eq; i++) {
            c = pusher_url_next(&k, eq);
            if (c < 0 || i == name_len || (uint8_t) name[i] != c) {
                match = 0;
                break;
            }
        }

        if (match && i == name_len) {
            n = (eq == amp) ? 0
                            : pusher_url_decode(eq + 1,
                                                (size_t) (amp - eq - 1),
                                                out, cap - 1);
            if (n < 0) {
                return -1;
            }

            out[n] = '\0';

            return n;
        }

        p = (amp < end) ? amp + 1 : end;
    }

    return -1;
}


/*
 * Decode src into out and NUL-terminate it when there is room.  Returns
 * the decoded length, or -1 on a malformed escape or if it does not fit.
 */
static long
pusher_url_decode(const char *src, size_t len, char *out, size_t cap)
{
    int          c;
    size_t       n;
    const char  *end;

    n = 0;
    end = src + len;

    while (src < end) {
        c = pusher_url_next(&src, end);
        if (c < 0 || n == cap) {
            return -1;
        }

        out[n++] = (char) c;
    }

    if (n < cap) {
        out[n] = '\0';
    }

    return (long) n;
}


/* the next decoded byte of a query component: '+' is a space, %XX a byte */
static int
pusher_url_next(const char **pos, const char *end)
{
    int          i, c, d;
    const char  *p;

    p = *pos;

    if (*p == '+') {
        *pos = p + 1;
        return ' ';
    }

    if (*p != '%') {
        *pos = p + 1;
        return (uint8_t) *p;
    }

    if (end - p < 3) {
        return -1;
    }

    c = 0;

    for (i = 1; i <= 2; i++) {
        d = (uint8_t) p[i];

        if (d >= '0' && d <= '9') {
            d -= '0';

        } else if ((d | 0x20) >= 'a' && (d | 0x20) <= 'f') {
            d = (d | 0x20) - 'a' + 10;

        } else {
            return -1;
        }

        c = c * 16 + d;
    }

    *pos = p + 3;

    return c;
}
