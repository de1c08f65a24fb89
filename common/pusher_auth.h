/*
 * ngx-pusher: HMAC-SHA256 signatures (OpenSSL), compared in constant time.
 *
 *   private, encrypted  HMAC(secret, "socket_id:channel")
 *   presence            HMAC(secret, "socket_id:channel:channel_data")
 *   user sign-in        HMAC(secret, "socket_id::user::user_data")
 *   HTTP API            HMAC(secret, "METHOD\nPATH\nsorted_query")
 *
 * Client auth strings are "key:hex"; both the key and the lowercase hex
 * digest must match.
 */

#ifndef PUSHER_AUTH_H
#define PUSHER_AUTH_H


#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif


#define PUSHER_HMAC_HEX_LEN          64
#define PUSHER_API_TIMESTAMP_WINDOW  600      /* seconds, either side */
#define PUSHER_API_MAX_PARAMS        32


/* lowercase hex HMAC-SHA256; out gets 64 characters, no NUL */
void pusher_hmac_sha256_hex(const uint8_t *key, size_t key_len,
    const uint8_t *msg, size_t msg_len, char out[PUSHER_HMAC_HEX_LEN]);

/* lowercase hex MD5; out gets 32 characters, no NUL */
void pusher_md5_hex(const uint8_t *data, size_t len, char out[32]);

/*
 * Channel subscription auth: 1 if auth == "<app_key>:<hex>" with hex the
 * HMAC over "socket_id:channel" or, with channel_data (len > 0),
 * "socket_id:channel:channel_data".  Constant time in the digest.
 */
int pusher_auth_channel_ok(const uint8_t *secret, size_t secret_len,
    const uint8_t *app_key, size_t app_key_len,
    const uint8_t *socket_id, size_t socket_id_len,
    const uint8_t *channel, size_t channel_len,
    const uint8_t *channel_data, size_t channel_data_len,
    const uint8_t *auth, size_t auth_len);

/* user sign-in: auth over "socket_id::user::user_data" */
int pusher_auth_user_ok(const uint8_t *secret, size_t secret_len,
    const uint8_t *app_key, size_t app_key_len,
    const uint8_t *socket_id, size_t socket_id_len,
    const uint8_t *user_data, size_t user_data_len,
    const uint8_t *auth, size_t auth_len);


/* pusher_api_verify() results; the broker maps them to HTTP 401 */
typedef enum {
    PUSHER_API_OK = 0,
    PUSHER_API_BAD_QUERY,        /* malformed %-escape, too many params */
    PUSHER_API_MISSING_PARAM,    /* auth_key/auth_timestamp/auth_version/
                                    auth_signature missing */
    PUSHER_API_BAD_KEY,          /* auth_key is not the app's key */
    PUSHER_API_BAD_VERSION,      /* auth_version is not 1.0 */
    PUSHER_API_EXPIRED,          /* auth_timestamp outside the window */
    PUSHER_API_BAD_BODY_MD5,     /* body_md5 missing on a body or wrong */
    PUSHER_API_BAD_SIGNATURE
} pusher_api_result_e;


/*
 * Verify a signed Pusher HTTP API request (docs/protocol.md, "Signatures").
 *
 * query is the raw query string (without '?'); keys and values are
 * URL-decoded ('+' is a space), sorted by key, joined "k=v" with '&',
 * auth_signature excluded; the string to sign is
 * "METHOD\nPATH\nQUERY".  body_md5 must be present and match MD5(body)
 * when the body is not empty.  now is unix time in seconds.
 */
pusher_api_result_e pusher_api_verify(const char *method, size_t method_len,
    const char *path, size_t path_len, const char *query, size_t query_len,
    const uint8_t *body, size_t body_len,
    const uint8_t *app_key, size_t app_key_len,
    const uint8_t *secret, size_t secret_len, int64_t now);

/* a fixed English text for each result, for the 401 JSON body */
const char *pusher_api_result_text(pusher_api_result_e rc);

/*
 * Find a query parameter by name and URL-decode its value into out
 * (cap bytes).  Returns the decoded length, or -1 if absent or invalid.
 */
long pusher_query_param(const char *query, size_t query_len,
    const char *name, char *out, size_t cap);


#ifdef __cplusplus
}
#endif

#endif /* PUSHER_AUTH_H */
