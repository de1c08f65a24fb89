/*
 * Unit tests: HMAC signatures, channel and user auth, HTTP API request
 * verification (common/pusher_auth.c).  Expected digests were computed
 * independently with the openssl command line tool.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "pusher_auth.h"


#define S(s)  (const uint8_t *) (s), sizeof(s) - 1
#define Z(s)  (const uint8_t *) (s), strlen(s)

#define GUARD  0xa5

/* the Pusher documentation's example app */
#define APP_KEY     "278d425bdf160c739803"
#define APP_SECRET  "7ad3773142a6692b25b8"
#define TS          1353088179
#define TS_STR      "1353088179"

#define PRIVATE_HEX                                                           \
    "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
#define PRESENCE_HEX                                                          \
    "31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80"
#define PRESENCE_DATA                                                         \
    "{\"user_id\":10,\"user_info\":{\"name\":\"Mr. Channels\"}}"
#define USER_DATA   "{\"id\":\"1\",\"name\":\"A\"}"
#define USER_HEX                                                              \
    "287a259d69632a60b8b53e59f64731e484966311b0c00ccddb58ffc4823b7814"

#define EVENTS_BODY                                                           \
    "{\"name\":\"foo\",\"channels\":[\"project-3\"],"                         \
    "\"data\":\"{\\\"some\\\":\\\"data\\\"}\"}"
#define EVENTS_MD5  "ec365a775a4cd0599faeb73354201b6f"
#define EVENTS_SIG                                                            \
    "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
#define EMPTY_MD5   "d41d8cd98f00b204e9800998ecf8427e"

/* GET /apps/3/channels, filter_by_prefix and info, signed by openssl */
#define CHANNELS_SIG                                                          \
    "ff97d40ab3fbbd15394386a29c12998c33635305357b2e2abd18dc67efe3f87d"

#define AUTH_PARAMS                                                           \
    "auth_key=" APP_KEY "&auth_timestamp=" TS_STR "&auth_version=1.0"


static void
hmac_sha256_matches_rfc4231(void **state)
{
    char     out[PUSHER_HMAC_HEX_LEN + 1];
    uint8_t  key1[20], key6[131];

    memset(key1, 0x0b, sizeof(key1));
    memset(key6, 0xaa, sizeof(key6));

    /* test case 1 */
    out[PUSHER_HMAC_HEX_LEN] = (char) GUARD;
    pusher_hmac_sha256_hex(key1, sizeof(key1), S("Hi There"), out);
    assert_memory_equal(out, "b0344c61d8db38535ca8afceaf0bf12b"
                             "881dc200c9833da726e9376c2e32cff7", 64);
    assert_int_equal((uint8_t) out[PUSHER_HMAC_HEX_LEN], GUARD);

    /* test case 2 */
    pusher_hmac_sha256_hex(S("Jefe"), S("what do ya want for nothing?"), out);
    assert_memory_equal(out, "5bdcc146bf60754e6a042426089575c7"
                             "5a003f089d2739839dec58b964ec3843", 64);

    /* test case 6: a key longer than the block */
    pusher_hmac_sha256_hex(key6, sizeof(key6),
        S("Test Using Larger Than Block-Size Key - Hash Key First"), out);
    assert_memory_equal(out, "60e431591ee0b67f0d8a26aacbf5b77f"
                             "8e0bc6213728c5140546040f0ee37f54", 64);

    /* the Pusher docs' private channel signature */
    pusher_hmac_sha256_hex(S(APP_SECRET), S("1234.1234:private-foobar"),
                           out);
    assert_memory_equal(out, PRIVATE_HEX, 64);
}


static void
md5_hex_is_lowercase_md5(void **state)
{
    char  out[33];

    out[32] = (char) GUARD;

    pusher_md5_hex(S(""), out);
    assert_memory_equal(out, EMPTY_MD5, 32);
    assert_int_equal((uint8_t) out[32], GUARD);

    pusher_md5_hex(S("abc"), out);
    assert_memory_equal(out, "900150983cd24fb0d6963f7d28e17f72", 32);

    pusher_md5_hex(S(EVENTS_BODY), out);
    assert_memory_equal(out, EVENTS_MD5, 32);
}


static int
channel_ok(const char *socket_id, const char *channel,
    const char *channel_data, const char *auth)
{
    return pusher_auth_channel_ok(S(APP_SECRET), S(APP_KEY), Z(socket_id),
                                  Z(channel), Z(channel_data), Z(auth));
}


static const struct {
    const char  *name;
    const char  *socket_id;
    const char  *channel;
    const char  *channel_data;
    const char  *auth;
    int          ok;
} channel_cases[] = {
    { "private channel, Pusher docs", "1234.1234", "private-foobar", "",
      APP_KEY ":" PRIVATE_HEX, 1 },
    { "presence channel, Pusher docs", "1234.1234", "presence-foobar",
      PRESENCE_DATA, APP_KEY ":" PRESENCE_HEX, 1 },

    { "wrong key", "1234.1234", "private-foobar", "",
      "278d425bdf160c739804:" PRIVATE_HEX, 0 },
    { "key with an extra byte", "1234.1234", "private-foobar", "",
      APP_KEY "0:" PRIVATE_HEX, 0 },
    { "key missing a byte", "1234.1234", "private-foobar", "",
      "278d425bdf160c73980:" PRIVATE_HEX, 0 },
    { "no key", "1234.1234", "private-foobar", "", ":" PRIVATE_HEX, 0 },
    { "digest only", "1234.1234", "private-foobar", "", PRIVATE_HEX, 0 },
    { "missing colon", "1234.1234", "private-foobar", "",
      APP_KEY PRIVATE_HEX, 0 },
    { "other separator", "1234.1234", "private-foobar", "",
      APP_KEY ";" PRIVATE_HEX, 0 },
    { "wrong digest", "1234.1234", "private-foobar", "",
      APP_KEY ":58df8b0c36d6982b82c3ecf6b4662e34"
      "fe8c25bba48f5369f135bf843651c3a5", 0 },
    { "uppercase digest", "1234.1234", "private-foobar", "",
      APP_KEY ":58DF8B0C36D6982B82C3ECF6B4662E34"
      "FE8C25BBA48F5369F135BF843651C3A4", 0 },
    { "truncated digest", "1234.1234", "private-foobar", "",
      APP_KEY ":58df8b0c36d6982b82c3ecf6b4662e34"
      "fe8c25bba48f5369f135bf843651c3a", 0 },
    { "digest with a trailing byte", "1234.1234", "private-foobar", "",
      APP_KEY ":" PRIVATE_HEX "0", 0 },
    { "digest with trailing space", "1234.1234", "private-foobar", "",
      APP_KEY ":" PRIVATE_HEX " ", 0 },
    { "empty auth", "1234.1234", "private-foobar", "", "", 0 },
    { "key only", "1234.1234", "private-foobar", "", APP_KEY ":", 0 },
    { "other socket", "1234.1235", "private-foobar", "",
      APP_KEY ":" PRIVATE_HEX, 0 },
    { "other channel", "1234.1234", "private-foobaz", "",
      APP_KEY ":" PRIVATE_HEX, 0 },
    { "private signature for presence data", "1234.1234",
      "private-foobar", PRESENCE_DATA, APP_KEY ":" PRIVATE_HEX, 0 },
    { "presence signature without channel_data", "1234.1234",
      "presence-foobar", "", APP_KEY ":" PRESENCE_HEX, 0 },
    { "presence signature, other channel_data", "1234.1234",
      "presence-foobar", "{\"user_id\":11}", APP_KEY ":" PRESENCE_HEX, 0 }
};


static void
channel_auth_accepts_only_exact_key_and_digest(void **state)
{
    size_t  i;

    for (i = 0; i < sizeof(channel_cases) / sizeof(channel_cases[0]); i++) {
        print_message("case: %s\n", channel_cases[i].name);
        assert_int_equal(channel_ok(channel_cases[i].socket_id,
                                    channel_cases[i].channel,
                                    channel_cases[i].channel_data,
                                    channel_cases[i].auth),
                         channel_cases[i].ok);
    }
}


static void
channel_auth_with_other_secret_fails(void **state)
{
    assert_false(pusher_auth_channel_ok(S("7ad3773142a6692b25b9"),
                                        S(APP_KEY), S("1234.1234"),
                                        S("private-foobar"), NULL, 0,
                                        S(APP_KEY ":" PRIVATE_HEX)));

    /* an empty secret is still a key, not an error */
    assert_false(pusher_auth_channel_ok(NULL, 0, S(APP_KEY), S("1234.1234"),
                                        S("private-foobar"), NULL, 0,
                                        S(APP_KEY ":" PRIVATE_HEX)));
}


/* auth strings of every length up to the valid one, in exact-size blocks */
static void
channel_auth_reads_only_auth_len_bytes(void **state)
{
    size_t               n;
    uint8_t             *copy;
    static const char    auth[] = APP_KEY ":" PRIVATE_HEX;

    for (n = 0; n <= sizeof(auth) - 1; n++) {
        copy = malloc(n ? n : 1);
        assert_non_null(copy);
        memcpy(copy, auth, n);

        assert_int_equal(pusher_auth_channel_ok(S(APP_SECRET), S(APP_KEY),
                             S("1234.1234"), S("private-foobar"), NULL, 0,
                             copy, n),
                         n == sizeof(auth) - 1);
        free(copy);
    }
}


static void
user_auth_signs_socket_user_and_data(void **state)
{
    assert_true(pusher_auth_user_ok(S(APP_SECRET), S(APP_KEY),
                                    S("1234.1234"), S(USER_DATA),
                                    S(APP_KEY ":" USER_HEX)));

    assert_false(pusher_auth_user_ok(S(APP_SECRET), S(APP_KEY),
                                     S("1234.1235"), S(USER_DATA),
                                     S(APP_KEY ":" USER_HEX)));
    assert_false(pusher_auth_user_ok(S(APP_SECRET), S(APP_KEY),
                                     S("1234.1234"),
                                     S("{\"id\":\"2\",\"name\":\"A\"}"),
                                     S(APP_KEY ":" USER_HEX)));
    assert_false(pusher_auth_user_ok(S(APP_SECRET), S("other-key"),
                                     S("1234.1234"), S(USER_DATA),
                                     S(APP_KEY ":" USER_HEX)));
    assert_false(pusher_auth_user_ok(S(APP_SECRET), S(APP_KEY),
                                     S("1234.1234"), S(USER_DATA),
                                     S(USER_HEX)));

    /* a channel signature is not a user signature */
    assert_false(pusher_auth_user_ok(S(APP_SECRET), S(APP_KEY),
                                     S("1234.1234"), S("private-foobar"),
                                     S(APP_KEY ":" PRIVATE_HEX)));
}


/*
 * HTTP API requests.  A case signs "sign_method\nsign_path\nsign_params"
 * and sends "query" with "{sig}" replaced by that signature; sign_method
 * NULL means the query is sent as is.
 */
typedef struct {
    const char           *name;
    const char           *sign_method;
    const char           *sign_path;
    const char           *sign_params;
    const char           *method;
    const char           *path;
    const char           *query;
    const char           *body;
    int64_t               now;
    pusher_api_result_e   rc;
} api_case_t;


#define EVENTS_QUERY                                                          \
    AUTH_PARAMS "&body_md5=" EVENTS_MD5 "&auth_signature=" EVENTS_SIG

#define CHANNELS_PARAMS                                                       \
    AUTH_PARAMS "&filter_by_prefix=presence-"                                 \
    "&info=user_count,subscription_count"


static const api_case_t  api_cases[] = {

    /* fixed vectors signed outside this code */
    { "Pusher REST docs example", NULL, NULL, NULL,
      "POST", "/apps/3/events", EVENTS_QUERY, EVENTS_BODY, TS,
      PUSHER_API_OK },
    { "Node SDK: raw comma", NULL, NULL, NULL,
      "GET", "/apps/3/channels",
      CHANNELS_PARAMS "&auth_signature=" CHANNELS_SIG, NULL, TS,
      PUSHER_API_OK },
    { "PHP SDK: %2C encoded comma", NULL, NULL, NULL,
      "GET", "/apps/3/channels",
      AUTH_PARAMS "&filter_by_prefix=presence-"
      "&info=user_count%2Csubscription_count&auth_signature=" CHANNELS_SIG,
      NULL, TS, PUSHER_API_OK },
    { "lowercase %2c", NULL, NULL, NULL,
      "GET", "/apps/3/channels",
      AUTH_PARAMS "&filter_by_prefix=presence-"
      "&info=user_count%2csubscription_count&auth_signature=" CHANNELS_SIG,
      NULL, TS, PUSHER_API_OK },
    { "percent-encoded keys and values", NULL, NULL, NULL,
      "GET", "/apps/3/channels",
      "%61uth_key=" APP_KEY "&auth_timestamp=" TS_STR
      "&auth_version=%31%2E%30&filter%5Fby%5Fprefix=presence%2D"
      "&info=user_count,subscription_count&auth_signature=" CHANNELS_SIG,
      NULL, TS, PUSHER_API_OK },
    { "reordered parameters", NULL, NULL, NULL,
      "GET", "/apps/3/channels",
      "auth_signature=" CHANNELS_SIG "&info=user_count,subscription_count"
      "&auth_version=1.0&filter_by_prefix=presence-&auth_timestamp=" TS_STR
      "&auth_key=" APP_KEY, NULL, TS, PUSHER_API_OK },
    { "empty segments", NULL, NULL, NULL,
      "GET", "/apps/3/channels",
      "&" CHANNELS_PARAMS "&&auth_signature=" CHANNELS_SIG "&", NULL, TS,
      PUSHER_API_OK },

    /* signed here, with the KAT-checked pusher_hmac_sha256_hex() */
    { "GET without body_md5", "GET", "/apps/3/channels", AUTH_PARAMS,
      "GET", "/apps/3/channels", AUTH_PARAMS "&auth_signature={sig}", NULL,
      TS, PUSHER_API_OK },
    { "empty body with the empty MD5", "POST", "/apps/3/events",
      AUTH_PARAMS "&body_md5=" EMPTY_MD5,
      "POST", "/apps/3/events",
      AUTH_PARAMS "&body_md5=" EMPTY_MD5 "&auth_signature={sig}", "", TS,
      PUSHER_API_OK },
    { "plus is a space", "GET", "/apps/3/channels",
      AUTH_PARAMS "&filter_by_prefix=a b",
      "GET", "/apps/3/channels",
      AUTH_PARAMS "&filter_by_prefix=a+b&auth_signature={sig}", NULL, TS,
      PUSHER_API_OK },
    { "%20 is a space", "GET", "/apps/3/channels",
      AUTH_PARAMS "&filter_by_prefix=a b",
      "GET", "/apps/3/channels",
      AUTH_PARAMS "&filter_by_prefix=a%20b&auth_signature={sig}", NULL, TS,
      PUSHER_API_OK },
    { "%2B is a plus", "GET", "/apps/3/channels",
      AUTH_PARAMS "&filter_by_prefix=a+b",
      "GET", "/apps/3/channels",
      AUTH_PARAMS "&filter_by_prefix=a%2Bb&auth_signature={sig}", NULL, TS,
      PUSHER_API_OK },
    { "parameter without '='", "GET", "/apps/3/channels",
      AUTH_PARAMS "&flag=",
      "GET", "/apps/3/channels",
      AUTH_PARAMS "&flag&auth_signature={sig}", NULL, TS, PUSHER_API_OK },
    { "sorted bytewise, prefix first", "GET", "/apps/3/channels",
      "Z=1&" AUTH_PARAMS "&info=x&info_=y&infoa=z",
      "GET", "/apps/3/channels",
      "infoa=z&info_=y&info=x&Z=1&" AUTH_PARAMS "&auth_signature={sig}",
      NULL, TS, PUSHER_API_OK },
    { "timestamp 600 s behind", "GET", "/apps/3/channels", AUTH_PARAMS,
      "GET", "/apps/3/channels", AUTH_PARAMS "&auth_signature={sig}", NULL,
      TS + 600, PUSHER_API_OK },
    { "timestamp 600 s ahead", "GET", "/apps/3/channels", AUTH_PARAMS,
      "GET", "/apps/3/channels", AUTH_PARAMS "&auth_signature={sig}", NULL,
      TS - 600, PUSHER_API_OK },

    /* BAD_QUERY */
    { "truncated %-escape", NULL, NULL, NULL,
      "GET", "/apps/3/channels", EVENTS_QUERY "&x=%4", NULL, TS,
      PUSHER_API_BAD_QUERY },
    { "lone %", NULL, NULL, NULL,
      "GET", "/apps/3/channels", EVENTS_QUERY "&x=%", NULL, TS,
      PUSHER_API_BAD_QUERY },
    { "non-hex %-escape", NULL, NULL, NULL,
      "GET", "/apps/3/channels", EVENTS_QUERY "&x=%zz", NULL, TS,
      PUSHER_API_BAD_QUERY },
    { "%-escape in a key", NULL, NULL, NULL,
      "GET", "/apps/3/channels", "%g1=1&" EVENTS_QUERY, NULL, TS,
      PUSHER_API_BAD_QUERY },
    { "duplicate key", NULL, NULL, NULL,
      "GET", "/apps/3/channels", EVENTS_QUERY "&auth_key=" APP_KEY, NULL,
      TS, PUSHER_API_BAD_QUERY },
    { "duplicate key after decoding", NULL, NULL, NULL,
      "GET", "/apps/3/channels", EVENTS_QUERY "&auth%5Fkey=" APP_KEY, NULL,
      TS, PUSHER_API_BAD_QUERY },
    { "duplicate unsigned key", NULL, NULL, NULL,
      "GET", "/apps/3/channels", EVENTS_QUERY "&a=1&a=1", NULL, TS,
      PUSHER_API_BAD_QUERY },

    /* MISSING_PARAM */
    { "no query", NULL, NULL, NULL,
      "GET", "/apps/3/channels", "", NULL, TS, PUSHER_API_MISSING_PARAM },
    { "no auth_key", NULL, NULL, NULL,
      "GET", "/apps/3/channels",
      "auth_timestamp=" TS_STR "&auth_version=1.0&auth_signature="
      EVENTS_SIG, NULL, TS, PUSHER_API_MISSING_PARAM },
    { "no auth_timestamp", NULL, NULL, NULL,
      "GET", "/apps/3/channels",
      "auth_key=" APP_KEY "&auth_version=1.0&auth_signature=" EVENTS_SIG,
      NULL, TS, PUSHER_API_MISSING_PARAM },
    { "no auth_version", NULL, NULL, NULL,
      "GET", "/apps/3/channels",
      "auth_key=" APP_KEY "&auth_timestamp=" TS_STR "&auth_signature="
      EVENTS_SIG, NULL, TS, PUSHER_API_MISSING_PARAM },
    { "no auth_signature", NULL, NULL, NULL,
      "GET", "/apps/3/channels", AUTH_PARAMS, NULL, TS,
      PUSHER_API_MISSING_PARAM },
    { "auth_key spelled differently", NULL, NULL, NULL,
      "GET", "/apps/3/channels",
      "Auth_key=" APP_KEY "&auth_timestamp=" TS_STR "&auth_version=1.0"
      "&auth_signature=" EVENTS_SIG, NULL, TS, PUSHER_API_MISSING_PARAM },

    /* BAD_KEY */
    { "other key", NULL, NULL, NULL,
      "GET", "/apps/3/channels",
      "auth_key=278d425bdf160c739804&auth_timestamp=" TS_STR
      "&auth_version=1.0&auth_signature=" EVENTS_SIG, NULL, TS,
      PUSHER_API_BAD_KEY },
    { "key prefix", NULL, NULL, NULL,
      "GET", "/apps/3/channels",
      "auth_key=278d425bdf&auth_timestamp=" TS_STR
      "&auth_version=1.0&auth_signature=" EVENTS_SIG, NULL, TS,
      PUSHER_API_BAD_KEY },
    { "empty key", NULL, NULL, NULL,
      "GET", "/apps/3/channels",
      "auth_key=&auth_timestamp=" TS_STR
      "&auth_version=1.0&auth_signature=" EVENTS_SIG, NULL, TS,
      PUSHER_API_BAD_KEY },

    /* BAD_VERSION */
    { "version 1.1", NULL, NULL, NULL,
      "GET", "/apps/3/channels",
      "auth_key=" APP_KEY "&auth_timestamp=" TS_STR "&auth_version=1.1"
      "&auth_signature=" EVENTS_SIG, NULL, TS, PUSHER_API_BAD_VERSION },
    { "version 1", NULL, NULL, NULL,
      "GET", "/apps/3/channels",
      "auth_key=" APP_KEY "&auth_timestamp=" TS_STR "&auth_version=1"
      "&auth_signature=" EVENTS_SIG, NULL, TS, PUSHER_API_BAD_VERSION },
    { "empty version", NULL, NULL, NULL,
      "GET", "/apps/3/channels",
      "auth_key=" APP_KEY "&auth_timestamp=" TS_STR "&auth_version="
      "&auth_signature=" EVENTS_SIG, NULL, TS, PUSHER_API_BAD_VERSION },

    /* EXPIRED */
    { "timestamp 601 s behind", "GET", "/apps/3/channels", AUTH_PARAMS,
      "GET", "/apps/3/channels", AUTH_PARAMS "&auth_signature={sig}", NULL,
      TS + 601, PUSHER_API_EXPIRED },
    { "timestamp 601 s ahead", "GET", "/apps/3/channels", AUTH_PARAMS,
      "GET", "/apps/3/channels", AUTH_PARAMS "&auth_signature={sig}", NULL,
      TS - 601, PUSHER_API_EXPIRED },
    { "timestamp not a number", NULL, NULL, NULL,
      "GET", "/apps/3/channels",
      "auth_key=" APP_KEY "&auth_timestamp=135308817x&auth_version=1.0"
      "&auth_signature=" EVENTS_SIG, NULL, TS, PUSHER_API_EXPIRED },
    { "negative timestamp", NULL, NULL, NULL,
      "GET", "/apps/3/channels",
      "auth_key=" APP_KEY "&auth_timestamp=-1353088179&auth_version=1.0"
      "&auth_signature=" EVENTS_SIG, NULL, -TS, PUSHER_API_EXPIRED },
    { "fractional timestamp", NULL, NULL, NULL,
      "GET", "/apps/3/channels",
      "auth_key=" APP_KEY "&auth_timestamp=1353088179.0&auth_version=1.0"
      "&auth_signature=" EVENTS_SIG, NULL, TS, PUSHER_API_EXPIRED },
    { "empty timestamp", NULL, NULL, NULL,
      "GET", "/apps/3/channels",
      "auth_key=" APP_KEY "&auth_timestamp=&auth_version=1.0"
      "&auth_signature=" EVENTS_SIG, NULL, TS, PUSHER_API_EXPIRED },
    { "timestamp overflowing int64", NULL, NULL, NULL,
      "GET", "/apps/3/channels",
      "auth_key=" APP_KEY "&auth_timestamp=18446744074062639795"
      "&auth_version=1.0&auth_signature=" EVENTS_SIG, NULL, TS,
      PUSHER_API_EXPIRED },
    { "now at INT64_MIN", "GET", "/apps/3/channels", AUTH_PARAMS,
      "GET", "/apps/3/channels", AUTH_PARAMS "&auth_signature={sig}", NULL,
      INT64_MIN, PUSHER_API_EXPIRED },
    { "now at INT64_MAX", "GET", "/apps/3/channels", AUTH_PARAMS,
      "GET", "/apps/3/channels", AUTH_PARAMS "&auth_signature={sig}", NULL,
      INT64_MAX, PUSHER_API_EXPIRED },

    /* BAD_BODY_MD5 */
    { "body without body_md5", "POST", "/apps/3/events", AUTH_PARAMS,
      "POST", "/apps/3/events", AUTH_PARAMS "&auth_signature={sig}",
      EVENTS_BODY, TS, PUSHER_API_BAD_BODY_MD5 },
    { "body_md5 of another body", NULL, NULL, NULL,
      "POST", "/apps/3/events", EVENTS_QUERY, EVENTS_BODY " ", TS,
      PUSHER_API_BAD_BODY_MD5 },
    { "uppercase body_md5", NULL, NULL, NULL,
      "POST", "/apps/3/events",
      AUTH_PARAMS "&body_md5=EC365A775A4CD0599FAEB73354201B6F"
      "&auth_signature=" EVENTS_SIG, EVENTS_BODY, TS,
      PUSHER_API_BAD_BODY_MD5 },
    { "truncated body_md5", NULL, NULL, NULL,
      "POST", "/apps/3/events",
      AUTH_PARAMS "&body_md5=ec365a775a4cd0599faeb73354201b6"
      "&auth_signature=" EVENTS_SIG, EVENTS_BODY, TS,
      PUSHER_API_BAD_BODY_MD5 },
    { "body_md5 on an empty body", NULL, NULL, NULL,
      "POST", "/apps/3/events", EVENTS_QUERY, "", TS,
      PUSHER_API_BAD_BODY_MD5 },

    /* BAD_SIGNATURE */
    { "other method", NULL, NULL, NULL,
      "PUT", "/apps/3/events", EVENTS_QUERY, EVENTS_BODY, TS,
      PUSHER_API_BAD_SIGNATURE },
    { "lowercase method", NULL, NULL, NULL,
      "post", "/apps/3/events", EVENTS_QUERY, EVENTS_BODY, TS,
      PUSHER_API_BAD_SIGNATURE },
    { "other path", NULL, NULL, NULL,
      "POST", "/apps/4/events", EVENTS_QUERY, EVENTS_BODY, TS,
      PUSHER_API_BAD_SIGNATURE },
    { "path with a prefix", NULL, NULL, NULL,
      "POST", "/pusher/apps/3/events", EVENTS_QUERY, EVENTS_BODY, TS,
      PUSHER_API_BAD_SIGNATURE },
    { "unsigned extra parameter", NULL, NULL, NULL,
      "POST", "/apps/3/events", EVENTS_QUERY "&x=1", EVENTS_BODY, TS,
      PUSHER_API_BAD_SIGNATURE },
    { "changed parameter value", NULL, NULL, NULL,
      "GET", "/apps/3/channels",
      AUTH_PARAMS "&filter_by_prefix=presence-"
      "&info=user_count&auth_signature=" CHANNELS_SIG, NULL, TS,
      PUSHER_API_BAD_SIGNATURE },
    { "comma encoded in the signed string", "GET", "/apps/3/channels",
      AUTH_PARAMS "&info=a%2Cb",
      "GET", "/apps/3/channels",
      AUTH_PARAMS "&info=a%2Cb&auth_signature={sig}", NULL, TS,
      PUSHER_API_BAD_SIGNATURE },
    { "signed with the query order", "GET", "/apps/3/channels",
      "info=x&" AUTH_PARAMS,
      "GET", "/apps/3/channels",
      "info=x&" AUTH_PARAMS "&auth_signature={sig}", NULL, TS,
      PUSHER_API_BAD_SIGNATURE },
    { "signature included in the signed string", "GET", "/apps/3/channels",
      AUTH_PARAMS "&auth_signature=",
      "GET", "/apps/3/channels", AUTH_PARAMS "&auth_signature={sig}", NULL,
      TS, PUSHER_API_BAD_SIGNATURE },
    { "uppercase signature", NULL, NULL, NULL,
      "POST", "/apps/3/events",
      AUTH_PARAMS "&body_md5=" EVENTS_MD5 "&auth_signature="
      "DA454824C97BA181A32CCC17A72625BA02771F50B50E1E7430E47A1F3F457E6C",
      EVENTS_BODY, TS, PUSHER_API_BAD_SIGNATURE },
    { "truncated signature", NULL, NULL, NULL,
      "POST", "/apps/3/events",
      AUTH_PARAMS "&body_md5=" EVENTS_MD5 "&auth_signature="
      "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6",
      EVENTS_BODY, TS, PUSHER_API_BAD_SIGNATURE },
    { "signature with one bit flipped", NULL, NULL, NULL,
      "POST", "/apps/3/events",
      AUTH_PARAMS "&body_md5=" EVENTS_MD5 "&auth_signature="
      "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6d",
      EVENTS_BODY, TS, PUSHER_API_BAD_SIGNATURE },
    { "empty signature", NULL, NULL, NULL,
      "POST", "/apps/3/events",
      AUTH_PARAMS "&body_md5=" EVENTS_MD5 "&auth_signature=",
      EVENTS_BODY, TS, PUSHER_API_BAD_SIGNATURE }
};


static pusher_api_result_e
api_verify(const char *method, const char *path, const char *query,
    size_t query_len, const char *body, const char *secret, int64_t now)
{
    char                 *q;
    pusher_api_result_e   rc;

    /* exact-size copies: ASan catches reads past query_len */
    q = malloc(query_len ? query_len : 1);
    assert_non_null(q);
    memcpy(q, query, query_len);

    rc = pusher_api_verify(method, strlen(method), path, strlen(path), q,
                           query_len, (const uint8_t *) body,
                           body ? strlen(body) : 0, S(APP_KEY), Z(secret),
                           now);
    free(q);

    return rc;
}


/* the query of a case, with {sig} replaced by its signature */
static size_t
api_query(const api_case_t *c, char *out, size_t cap)
{
    int          n;
    char         sig[PUSHER_HMAC_HEX_LEN + 1], to_sign[1024];
    const char  *at;

    if (c->sign_method == NULL) {
        n = snprintf(out, cap, "%s", c->query);
        assert_true(n >= 0 && (size_t) n < cap);
        return (size_t) n;
    }

    n = snprintf(to_sign, sizeof(to_sign), "%s\n%s\n%s", c->sign_method,
                 c->sign_path, c->sign_params);
    assert_true(n > 0 && (size_t) n < sizeof(to_sign));

    pusher_hmac_sha256_hex(S(APP_SECRET), (const uint8_t *) to_sign,
                           (size_t) n, sig);
    sig[PUSHER_HMAC_HEX_LEN] = '\0';

    at = strstr(c->query, "{sig}");
    assert_non_null(at);

    n = snprintf(out, cap, "%.*s%s%s", (int) (at - c->query), c->query, sig,
                 at + 5);
    assert_true(n >= 0 && (size_t) n < cap);

    return (size_t) n;
}


static void
api_cases_give_expected_result(void **state)
{
    char                 query[2048];
    size_t               i, len;
    const api_case_t    *c;
    pusher_api_result_e  rc;

    for (i = 0; i < sizeof(api_cases) / sizeof(api_cases[0]); i++) {
        c = &api_cases[i];
        print_message("case: %s\n", c->name);

        len = api_query(c, query, sizeof(query));
        rc = api_verify(c->method, c->path, query, len, c->body, APP_SECRET,
                        c->now);
        assert_int_equal(rc, c->rc);
    }
}


static void
api_with_other_secret_is_bad_signature(void **state)
{
    static const char  query[] = EVENTS_QUERY;

    assert_int_equal(api_verify("POST", "/apps/3/events", query,
                                sizeof(query) - 1, EVENTS_BODY,
                                "7ad3773142a6692b25b9", TS),
                     PUSHER_API_BAD_SIGNATURE);
}


/* the limits: PUSHER_API_MAX_PARAMS parameters and a 4096-byte query */
static void
api_rejects_too_many_params_and_long_queries(void **state)
{
    int     n;
    char    query[8192], params[1024], sig[PUSHER_HMAC_HEX_LEN + 1];
    char    to_sign[1200];
    size_t  len, plen, i;

    plen = (size_t) snprintf(params, sizeof(params), AUTH_PARAMS);

    for (i = 0; i < PUSHER_API_MAX_PARAMS - 5; i++) {
        plen += (size_t) snprintf(params + plen, sizeof(params) - plen,
                                  "&p%02zu=%zu", i, i);
    }

    /* 3 auth parameters + 27 + signature = PUSHER_API_MAX_PARAMS - 1 */
    n = snprintf(to_sign, sizeof(to_sign), "GET\n/apps/3/channels\n%s",
                 params);
    assert_true(n > 0 && (size_t) n < sizeof(to_sign));
    pusher_hmac_sha256_hex(S(APP_SECRET), (const uint8_t *) to_sign,
                           (size_t) n, sig);
    sig[PUSHER_HMAC_HEX_LEN] = '\0';

    len = (size_t) snprintf(query, sizeof(query), "%s&auth_signature=%s",
                            params, sig);
    assert_int_equal(api_verify("GET", "/apps/3/channels", query, len, NULL,
                                APP_SECRET, TS),
                     PUSHER_API_OK);

    /* one more signed parameter makes PUSHER_API_MAX_PARAMS: still fine */
    n = snprintf(to_sign, sizeof(to_sign), "GET\n/apps/3/channels\n%s&zz=1",
                 params);
    pusher_hmac_sha256_hex(S(APP_SECRET), (const uint8_t *) to_sign,
                           (size_t) n, sig);
    len = (size_t) snprintf(query, sizeof(query),
                            "%s&zz=1&auth_signature=%s", params, sig);
    assert_int_equal(api_verify("GET", "/apps/3/channels", query, len, NULL,
                                APP_SECRET, TS),
                     PUSHER_API_OK);

    /* and one beyond that is too many */
    len += (size_t) snprintf(query + len, sizeof(query) - len, "&zzz=1");
    assert_int_equal(api_verify("GET", "/apps/3/channels", query, len, NULL,
                                APP_SECRET, TS),
                     PUSHER_API_BAD_QUERY);

    /* a long value: 4096 bytes is accepted up to the signature check */
    len = (size_t) snprintf(query, sizeof(query), EVENTS_QUERY "&x=");
    memset(query + len, 'a', 4096 - len);
    len = 4096;
    assert_int_equal(api_verify("POST", "/apps/3/events", query, len,
                                EVENTS_BODY, APP_SECRET, TS),
                     PUSHER_API_BAD_SIGNATURE);

    query[len++] = 'a';
    assert_int_equal(api_verify("POST", "/apps/3/events", query, len,
                                EVENTS_BODY, APP_SECRET, TS),
                     PUSHER_API_BAD_QUERY);
}


/* a signed 4096-byte query of escapes decodes in place of its raw size */
static void
api_accepts_a_long_signed_query(void **state)
{
    int     n;
    char    query[4097], value[2048], to_sign[2400];
    char    sig[PUSHER_HMAC_HEX_LEN + 1];
    size_t  len, i, vlen;

    /* "%41" * k decodes to "A" * k */
    len = (size_t) snprintf(query, sizeof(query), AUTH_PARAMS "&v=");
    vlen = (4096 - len - sizeof("&auth_signature=") + 1
            - PUSHER_HMAC_HEX_LEN) / 3;

    for (i = 0; i < vlen; i++) {
        memcpy(query + len + 3 * i, "%41", 3);
        value[i] = 'A';
    }

    len += 3 * vlen;

    n = snprintf(to_sign, sizeof(to_sign), "GET\n/apps/3/channels\n"
                 AUTH_PARAMS "&v=%.*s", (int) vlen, value);
    assert_true(n > 0 && (size_t) n < sizeof(to_sign));
    pusher_hmac_sha256_hex(S(APP_SECRET), (const uint8_t *) to_sign,
                           (size_t) n, sig);
    sig[PUSHER_HMAC_HEX_LEN] = '\0';

    len += (size_t) snprintf(query + len, sizeof(query) - len,
                             "&auth_signature=%s", sig);
    assert_true(len <= 4096 && len > 4090);

    assert_int_equal(api_verify("GET", "/apps/3/channels", query, len, NULL,
                                APP_SECRET, TS),
                     PUSHER_API_OK);
}


static void
api_result_texts_are_fixed_and_distinct(void **state)
{
    int          i, j;
    const char  *t[PUSHER_API_BAD_SIGNATURE + 1];

    assert_string_equal(pusher_api_result_text(PUSHER_API_BAD_SIGNATURE),
                        "Invalid signature");
    assert_string_equal(pusher_api_result_text(PUSHER_API_MISSING_PARAM),
                        "Missing auth_key, auth_timestamp, auth_version or "
                        "auth_signature");
    assert_string_equal(pusher_api_result_text(PUSHER_API_BAD_KEY),
                        "Unknown auth_key");
    assert_string_equal(pusher_api_result_text(PUSHER_API_BAD_VERSION),
                        "auth_version must be 1.0");
    assert_string_equal(pusher_api_result_text(PUSHER_API_EXPIRED),
                        "auth_timestamp is outside the allowed window "
                        "(600 seconds)");
    assert_string_equal(pusher_api_result_text(PUSHER_API_BAD_BODY_MD5),
                        "body_md5 does not match the request body");
    assert_string_equal(pusher_api_result_text(PUSHER_API_BAD_QUERY),
                        "Malformed query string");

    for (i = 0; i <= PUSHER_API_BAD_SIGNATURE; i++) {
        t[i] = pusher_api_result_text((pusher_api_result_e) i);
        assert_non_null(t[i]);

        for (j = 0; j < i; j++) {
            assert_string_not_equal(t[i], t[j]);
        }
    }

    assert_non_null(pusher_api_result_text((pusher_api_result_e) 99));
}


static const struct {
    const char  *query;
    const char  *name;
    size_t       cap;
    long         rc;
    const char  *value;
} param_cases[] = {
    { "info=user_count,subscription_count", "info", 64, 29,
      "user_count,subscription_count" },
    { "a=1&info=user_count%2Csubscription_count&b=2", "info", 64, 29,
      "user_count,subscription_count" },
    { "filter_by_prefix=presence-&x=1", "filter_by_prefix", 64, 9,
      "presence-" },
    { "a=x+y%20z", "a", 64, 5, "x y z" },
    { "a=1&a=2", "a", 64, 1, "1" },
    { "a%5Fb=1", "a_b", 64, 1, "1" },
    { "flag&b=2", "flag", 64, 0, "" },
    { "flag=", "flag", 64, 0, "" },
    { "=1&a=2", "", 64, 1, "1" },
    { "a=1", "b", 64, -1, NULL },
    { "ab=1", "a", 64, -1, NULL },
    { "a=1", "ab", 64, -1, NULL },
    { "", "a", 64, -1, NULL },
    { "a=%zz", "a", 64, -1, NULL },
    { "a=%4", "a", 64, -1, NULL },
    { "%zz=1&a=2", "a", 64, 1, "2" },
    { "a=12345", "a", 6, 5, "12345" },
    { "a=123456", "a", 6, -1, NULL },
    { "a=", "a", 1, 0, "" },
    { "a=1", "a", 0, -1, NULL }
};


static void
query_param_finds_and_decodes_one_value(void **state)
{
    long    rc;
    char    out[65];
    size_t  i;

    for (i = 0; i < sizeof(param_cases) / sizeof(param_cases[0]); i++) {
        print_message("case: %s / %s\n", param_cases[i].query,
                      param_cases[i].name);

        memset(out, GUARD, sizeof(out));
        rc = pusher_query_param(param_cases[i].query,
                                strlen(param_cases[i].query),
                                param_cases[i].name, out, param_cases[i].cap);
        assert_int_equal(rc, param_cases[i].rc);
        assert_int_equal((uint8_t) out[param_cases[i].cap], GUARD);

        if (rc >= 0) {
            assert_string_equal(out, param_cases[i].value);
        }
    }

    /* only query_len bytes are looked at */
    assert_int_equal(pusher_query_param("a=12&b=3", 3, "a", out, 64), 1);
    assert_string_equal(out, "1");
    assert_int_equal(pusher_query_param("a=12&b=3", 5, "b", out, 64), -1);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(hmac_sha256_matches_rfc4231),
        cmocka_unit_test(md5_hex_is_lowercase_md5),
        cmocka_unit_test(channel_auth_accepts_only_exact_key_and_digest),
        cmocka_unit_test(channel_auth_with_other_secret_fails),
        cmocka_unit_test(channel_auth_reads_only_auth_len_bytes),
        cmocka_unit_test(user_auth_signs_socket_user_and_data),
        cmocka_unit_test(api_cases_give_expected_result),
        cmocka_unit_test(api_with_other_secret_is_bad_signature),
        cmocka_unit_test(api_rejects_too_many_params_and_long_queries),
        cmocka_unit_test(api_accepts_a_long_signed_query),
        cmocka_unit_test(api_result_texts_are_fixed_and_distinct),
        cmocka_unit_test(query_param_finds_and_decodes_one_value)
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
