/*
 * Unit tests: Pusher messages, channel rules, outbound frames and ring
 * event records (common/pusher_proto.c).
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <cjson/cJSON.h>

#include "pusher_proto.h"
#include "pusher_ws.h"


#define S(s)  (const uint8_t *) (s), sizeof(s) - 1

#define GUARD  0xa5


/* the data member as the parser leaves it */
typedef enum {
    DATA_NONE = 0,       /* m->data == NULL */
    DATA_OBJECT,         /* received as an object */
    DATA_DECODED,        /* a string holding an object, decoded */
    DATA_STRING,         /* a string kept as a string */
    DATA_OTHER           /* number, array, null, ... */
} data_kind_e;


typedef struct {
    const char          *name;
    const char          *json;
    int                  rc;
    pusher_msg_type_e    type;
    const char          *event;
    const char          *channel;
    const char          *auth;
    const char          *channel_data;
    const char          *user_data;
    data_kind_e          data;
} parse_case_t;


/*
 * Parse from an exact-size heap copy, so that ASan catches any read past
 * the end of input that is not NUL-terminated.
 */
static int
parse_exact(pusher_msg_t *m, const char *json, size_t len)
{
    int       rc;
    uint8_t  *copy;

    copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, json, len);

    rc = pusher_msg_parse(m, copy, len);

    free(copy);

    return rc;
}


static void
assert_str(pusher_str_t s, const char *expect)
{
    assert_non_null(s.data);

    if (expect == NULL) {
        assert_int_equal(s.len, 0);
        return;
    }

    assert_int_equal(s.len, strlen(expect));
    assert_memory_equal(s.data, expect, s.len);
}


static const parse_case_t  parse_cases[] = {

    /* pusher-js: object data (docs/protocol.md, "Messages") */
    { "public subscribe",
      "{\"event\":\"pusher:subscribe\","
      "\"data\":{\"auth\":\"\",\"channel\":\"my-channel\"}}",
      PUSHER_MSG_OK, PUSHER_MSG_SUBSCRIBE, "pusher:subscribe",
      "my-channel", "", NULL, NULL, DATA_OBJECT },

    { "private subscribe",
      "{\"event\":\"pusher:subscribe\",\"data\":{\"auth\":"
      "\"278d425bdf160c739803:58df8b0c\",\"channel\":\"private-my\"}}",
      PUSHER_MSG_OK, PUSHER_MSG_SUBSCRIBE, "pusher:subscribe",
      "private-my", "278d425bdf160c739803:58df8b0c", NULL, NULL,
      DATA_OBJECT },

    { "presence subscribe with string channel_data",
      "{\"event\":\"pusher:subscribe\",\"data\":{\"auth\":\"k:h\","
      "\"channel_data\":\"{\\\"user_id\\\":1,\\\"user_info\\\":"
      "{\\\"name\\\":\\\"A\\\"}}\",\"channel\":\"presence-my\"}}",
      PUSHER_MSG_OK, PUSHER_MSG_SUBSCRIBE, "pusher:subscribe",
      "presence-my", "k:h",
      "{\"user_id\":1,\"user_info\":{\"name\":\"A\"}}", NULL, DATA_OBJECT },

    { "subscribe without auth",
      "{\"event\":\"pusher:subscribe\",\"data\":{\"channel\":\"c\"}}",
      PUSHER_MSG_OK, PUSHER_MSG_SUBSCRIBE, "pusher:subscribe", "c", NULL,
      NULL, NULL, DATA_OBJECT },

    { "subscribe with null auth",
      "{\"event\":\"pusher:subscribe\","
      "\"data\":{\"channel\":\"c\",\"auth\":null}}",
      PUSHER_MSG_OK, PUSHER_MSG_SUBSCRIBE, "pusher:subscribe", "c", NULL,
      NULL, NULL, DATA_OBJECT },

    { "unsubscribe",
      "{\"event\":\"pusher:unsubscribe\",\"data\":{\"channel\":"
      "\"private-my\"}}",
      PUSHER_MSG_OK, PUSHER_MSG_UNSUBSCRIBE, "pusher:unsubscribe",
      "private-my", NULL, NULL, NULL, DATA_OBJECT },

    { "ping with object data",
      "{\"event\":\"pusher:ping\",\"data\":{}}",
      PUSHER_MSG_OK, PUSHER_MSG_PING, "pusher:ping", NULL, NULL, NULL, NULL,
      DATA_OBJECT },

    { "ping without data",
      "{\"event\":\"pusher:ping\"}",
      PUSHER_MSG_OK, PUSHER_MSG_PING, "pusher:ping", NULL, NULL, NULL, NULL,
      DATA_NONE },

    { "pong with string data",
      "{\"event\":\"pusher:pong\",\"data\":\"{}\"}",
      PUSHER_MSG_OK, PUSHER_MSG_PONG, "pusher:pong", NULL, NULL, NULL, NULL,
      DATA_DECODED },

    { "signin",
      "{\"event\":\"pusher:signin\",\"data\":{\"auth\":\"k:h\","
      "\"user_data\":\"{\\\"id\\\":\\\"1\\\"}\"}}",
      PUSHER_MSG_OK, PUSHER_MSG_SIGNIN, "pusher:signin", NULL, "k:h", NULL,
      "{\"id\":\"1\"}", DATA_OBJECT },

    { "client event",
      "{\"event\":\"client-typing\",\"data\":{\"id\":1},"
      "\"channel\":\"private-chat\"}",
      PUSHER_MSG_OK, PUSHER_MSG_CLIENT_EVENT, "client-typing",
      "private-chat", NULL, NULL, NULL, DATA_OBJECT },

    { "client event without channel",
      "{\"event\":\"client-typing\",\"data\":{}}",
      PUSHER_MSG_OK, PUSHER_MSG_CLIENT_EVENT, "client-typing", NULL, NULL,
      NULL, NULL, DATA_OBJECT },

    { "client event with string data that is not JSON",
      "{\"event\":\"client-x\",\"channel\":\"private-a\",\"data\":\"hi\"}",
      PUSHER_MSG_OK, PUSHER_MSG_CLIENT_EVENT, "client-x", "private-a", NULL,
      NULL, NULL, DATA_STRING },

    { "client event with number data",
      "{\"event\":\"client-x\",\"channel\":\"private-a\",\"data\":5}",
      PUSHER_MSG_OK, PUSHER_MSG_CLIENT_EVENT, "client-x", "private-a", NULL,
      NULL, NULL, DATA_OTHER },

    { "client event with string holding an array stays a string",
      "{\"event\":\"client-x\",\"channel\":\"private-a\",\"data\":\"[1]\"}",
      PUSHER_MSG_OK, PUSHER_MSG_CLIENT_EVENT, "client-x", "private-a", NULL,
      NULL, NULL, DATA_STRING },

    /* other clients: data as a JSON string */
    { "subscribe with string data",
      "{\"event\":\"pusher:subscribe\",\"data\":\"{\\\"auth\\\":\\\"\\\","
      "\\\"channel\\\":\\\"my-channel\\\"}\"}",
      PUSHER_MSG_OK, PUSHER_MSG_SUBSCRIBE, "pusher:subscribe",
      "my-channel", "", NULL, NULL, DATA_DECODED },

    { "presence subscribe with string data and string channel_data",
      "{\"event\":\"pusher:subscribe\",\"data\":\"{\\\"auth\\\":\\\"k:h\\\","
      "\\\"channel_data\\\":\\\"{\\\\\\\"user_id\\\\\\\":10}\\\","
      "\\\"channel\\\":\\\"presence-a\\\"}\"}",
      PUSHER_MSG_OK, PUSHER_MSG_SUBSCRIBE, "pusher:subscribe",
      "presence-a", "k:h", "{\"user_id\":10}", NULL, DATA_DECODED },

    { "unsubscribe with string data",
      "{\"event\":\"pusher:unsubscribe\","
      "\"data\":\"{\\\"channel\\\":\\\"a\\\"}\"}",
      PUSHER_MSG_OK, PUSHER_MSG_UNSUBSCRIBE, "pusher:unsubscribe", "a",
      NULL, NULL, NULL, DATA_DECODED },

    { "whitespace around the message",
      " \r\n\t{ \"event\" : \"pusher:ping\" , \"data\" : { } }\n ",
      PUSHER_MSG_OK, PUSHER_MSG_PING, "pusher:ping", NULL, NULL, NULL, NULL,
      DATA_OBJECT },

    { "duplicate event member: the first wins",
      "{\"event\":\"pusher:ping\",\"event\":\"pusher:pong\"}",
      PUSHER_MSG_OK, PUSHER_MSG_PING, "pusher:ping", NULL, NULL, NULL, NULL,
      DATA_NONE },

    /* unknown events */
    { "unknown pusher event",
      "{\"event\":\"pusher:cache_miss\",\"data\":{}}",
      PUSHER_MSG_OK, PUSHER_MSG_UNKNOWN, "pusher:cache_miss", NULL, NULL,
      NULL, NULL, DATA_OBJECT },

    { "pusher_internal event from a client",
      "{\"event\":\"pusher_internal:subscription_succeeded\"}",
      PUSHER_MSG_OK, PUSHER_MSG_UNKNOWN,
      "pusher_internal:subscription_succeeded", NULL, NULL, NULL, NULL,
      DATA_NONE },

    { "event names are case sensitive",
      "{\"event\":\"pusher:PING\"}",
      PUSHER_MSG_OK, PUSHER_MSG_UNKNOWN, "pusher:PING", NULL, NULL, NULL,
      NULL, DATA_NONE },

    { "member names are case sensitive",
      "{\"Event\":\"pusher:ping\"}",
      PUSHER_MSG_NO_EVENT, PUSHER_MSG_UNKNOWN, NULL, NULL, NULL, NULL, NULL,
      DATA_NONE },

    { "bare client- prefix",
      "{\"event\":\"client-\",\"channel\":\"private-a\"}",
      PUSHER_MSG_OK, PUSHER_MSG_UNKNOWN, "client-", NULL, NULL, NULL, NULL,
      DATA_NONE },

    { "application event name",
      "{\"event\":\"App\\\\Events\\\\Test\"}",
      PUSHER_MSG_OK, PUSHER_MSG_UNKNOWN, "App\\Events\\Test", NULL, NULL,
      NULL, NULL, DATA_NONE },

    { "empty event name",
      "{\"event\":\"\"}",
      PUSHER_MSG_OK, PUSHER_MSG_UNKNOWN, "", NULL, NULL, NULL, NULL,
      DATA_NONE },

    { "event name cut at an escaped NUL",
      "{\"event\":\"pusher:ping\\u0000x\"}",
      PUSHER_MSG_OK, PUSHER_MSG_PING, "pusher:ping", NULL, NULL, NULL, NULL,
      DATA_NONE },

    /* malformed */
    { "empty input", "", PUSHER_MSG_BAD_JSON, PUSHER_MSG_UNKNOWN,
      NULL, NULL, NULL, NULL, NULL, DATA_NONE },

    { "not JSON", "hello", PUSHER_MSG_BAD_JSON, PUSHER_MSG_UNKNOWN,
      NULL, NULL, NULL, NULL, NULL, DATA_NONE },

    { "truncated object", "{\"event\":\"pusher:ping\"",
      PUSHER_MSG_BAD_JSON, PUSHER_MSG_UNKNOWN, NULL, NULL, NULL, NULL, NULL,
      DATA_NONE },

    { "truncated string", "{\"event\":\"pusher:pi",
      PUSHER_MSG_BAD_JSON, PUSHER_MSG_UNKNOWN, NULL, NULL, NULL, NULL, NULL,
      DATA_NONE },

    { "trailing garbage", "{\"event\":\"pusher:ping\"}x",
      PUSHER_MSG_BAD_JSON, PUSHER_MSG_UNKNOWN, NULL, NULL, NULL, NULL, NULL,
      DATA_NONE },

    { "two objects", "{\"event\":\"pusher:ping\"}{}",
      PUSHER_MSG_BAD_JSON, PUSHER_MSG_UNKNOWN, NULL, NULL, NULL, NULL, NULL,
      DATA_NONE },

    { "array", "[{\"event\":\"pusher:ping\"}]",
      PUSHER_MSG_BAD_JSON, PUSHER_MSG_UNKNOWN, NULL, NULL, NULL, NULL, NULL,
      DATA_NONE },

    { "string", "\"pusher:ping\"",
      PUSHER_MSG_BAD_JSON, PUSHER_MSG_UNKNOWN, NULL, NULL, NULL, NULL, NULL,
      DATA_NONE },

    { "number", "42",
      PUSHER_MSG_BAD_JSON, PUSHER_MSG_UNKNOWN, NULL, NULL, NULL, NULL, NULL,
      DATA_NONE },

    { "null", "null",
      PUSHER_MSG_BAD_JSON, PUSHER_MSG_UNKNOWN, NULL, NULL, NULL, NULL, NULL,
      DATA_NONE },

    { "no event", "{\"data\":{}}",
      PUSHER_MSG_NO_EVENT, PUSHER_MSG_UNKNOWN, NULL, NULL, NULL, NULL, NULL,
      DATA_NONE },

    { "empty object", "{}",
      PUSHER_MSG_NO_EVENT, PUSHER_MSG_UNKNOWN, NULL, NULL, NULL, NULL, NULL,
      DATA_NONE },

    { "event is a number", "{\"event\":1}",
      PUSHER_MSG_NO_EVENT, PUSHER_MSG_UNKNOWN, NULL, NULL, NULL, NULL, NULL,
      DATA_NONE },

    { "event is null", "{\"event\":null}",
      PUSHER_MSG_NO_EVENT, PUSHER_MSG_UNKNOWN, NULL, NULL, NULL, NULL, NULL,
      DATA_NONE },

    { "event is an object", "{\"event\":{\"a\":1}}",
      PUSHER_MSG_NO_EVENT, PUSHER_MSG_UNKNOWN, NULL, NULL, NULL, NULL, NULL,
      DATA_NONE },

    /* pusher:* events with bad fields keep their type */
    { "subscribe without data",
      "{\"event\":\"pusher:subscribe\"}",
      PUSHER_MSG_BAD_DATA, PUSHER_MSG_SUBSCRIBE, NULL, NULL, NULL, NULL,
      NULL, DATA_NONE },

    { "subscribe without channel",
      "{\"event\":\"pusher:subscribe\",\"data\":{\"auth\":\"\"}}",
      PUSHER_MSG_BAD_DATA, PUSHER_MSG_SUBSCRIBE, NULL, NULL, NULL, NULL,
      NULL, DATA_NONE },

    { "subscribe with a number channel",
      "{\"event\":\"pusher:subscribe\",\"data\":{\"channel\":1}}",
      PUSHER_MSG_BAD_DATA, PUSHER_MSG_SUBSCRIBE, NULL, NULL, NULL, NULL,
      NULL, DATA_NONE },

    { "subscribe with a number auth",
      "{\"event\":\"pusher:subscribe\",\"data\":{\"channel\":\"a\","
      "\"auth\":1}}",
      PUSHER_MSG_BAD_DATA, PUSHER_MSG_SUBSCRIBE, NULL, NULL, NULL, NULL,
      NULL, DATA_NONE },

    { "subscribe with object channel_data",
      "{\"event\":\"pusher:subscribe\",\"data\":{\"channel\":\"presence-a\","
      "\"auth\":\"k:h\",\"channel_data\":{\"user_id\":1}}}",
      PUSHER_MSG_BAD_DATA, PUSHER_MSG_SUBSCRIBE, NULL, NULL, NULL, NULL,
      NULL, DATA_NONE },

    { "subscribe with string data that is not an object",
      "{\"event\":\"pusher:subscribe\",\"data\":\"my-channel\"}",
      PUSHER_MSG_BAD_DATA, PUSHER_MSG_SUBSCRIBE, NULL, NULL, NULL, NULL,
      NULL, DATA_NONE },

    { "unsubscribe without channel",
      "{\"event\":\"pusher:unsubscribe\",\"data\":{}}",
      PUSHER_MSG_BAD_DATA, PUSHER_MSG_UNSUBSCRIBE, NULL, NULL, NULL, NULL,
      NULL, DATA_NONE },

    { "signin without user_data",
      "{\"event\":\"pusher:signin\",\"data\":{\"auth\":\"k:h\"}}",
      PUSHER_MSG_BAD_DATA, PUSHER_MSG_SIGNIN, NULL, NULL, NULL, NULL, NULL,
      DATA_NONE },

    { "signin without auth",
      "{\"event\":\"pusher:signin\",\"data\":{\"user_data\":\"{}\"}}",
      PUSHER_MSG_BAD_DATA, PUSHER_MSG_SIGNIN, NULL, NULL, NULL, NULL, NULL,
      DATA_NONE },

    { "signin with object user_data",
      "{\"event\":\"pusher:signin\",\"data\":{\"auth\":\"k:h\","
      "\"user_data\":{\"id\":\"1\"}}}",
      PUSHER_MSG_BAD_DATA, PUSHER_MSG_SIGNIN, NULL, NULL, NULL, NULL, NULL,
      DATA_NONE }
};


static void
parse_cases_give_type_fields_and_data(void **state)
{
    int                  rc;
    size_t               i;
    pusher_msg_t         m;
    const cJSON         *data;
    const parse_case_t  *c;

    for (i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
        c = &parse_cases[i];
        print_message("case: %s\n", c->name);

        rc = parse_exact(&m, c->json, strlen(c->json));
        assert_int_equal(rc, c->rc);
        assert_int_equal(m.type, c->type);

        if (rc != PUSHER_MSG_OK) {
            /* a failed parse owns nothing and leaves empty strings */
            assert_null(m.root);
            assert_null(m.decoded);
            assert_null(m.data);
            assert_str(m.event, NULL);
            assert_str(m.channel, NULL);
            pusher_msg_free(&m);
            continue;
        }

        assert_non_null(m.root);
        assert_str(m.event, c->event);
        assert_str(m.channel, c->channel);
        assert_str(m.auth, c->auth);
        assert_str(m.channel_data, c->channel_data);
        assert_str(m.user_data, c->user_data);

        data = m.data;

        switch (c->data) {

        case DATA_NONE:
            assert_null(data);
            assert_null(m.decoded);
            break;

        case DATA_OBJECT:
            assert_true(cJSON_IsObject(data));
            assert_null(m.decoded);
            break;

        case DATA_DECODED:
            assert_true(cJSON_IsObject(data));
            assert_ptr_equal(m.decoded, data);
            break;

        case DATA_STRING:
            assert_true(cJSON_IsString(data));
            assert_null(m.decoded);
            assert_ptr_equal(data, cJSON_GetObjectItemCaseSensitive(
                                       (const cJSON *) m.root, "data"));
            break;

        case DATA_OTHER:
            assert_non_null(data);
            assert_false(cJSON_IsObject(data));
            assert_false(cJSON_IsString(data));
            assert_null(m.decoded);
            break;
        }

        pusher_msg_free(&m);
        assert_null(m.root);
        assert_null(m.decoded);
        assert_null(m.data);
    }
}


static void
decoded_string_data_is_usable(void **state)
{
    pusher_msg_t  m;
    const cJSON  *id;
    static const char  json[] =
        "{\"event\":\"client-x\",\"channel\":\"private-a\","
        "\"data\":\"{\\\"id\\\":123,\\\"name\\\":\\\"Joe\\\"}\"}";

    assert_int_equal(parse_exact(&m, json, sizeof(json) - 1),
                     PUSHER_MSG_OK);

    id = cJSON_GetObjectItemCaseSensitive((const cJSON *) m.data, "id");
    assert_true(cJSON_IsNumber(id));
    assert_int_equal(id->valueint, 123);

    pusher_msg_free(&m);
}


static void
free_is_idempotent(void **state)
{
    pusher_msg_t  m;
    static const char  ok[] =
        "{\"event\":\"pusher:subscribe\","
        "\"data\":\"{\\\"channel\\\":\\\"a\\\"}\"}";
    static const char  bad[] = "{\"event\":\"pusher:subscribe\",\"data\":1}";

    assert_int_equal(parse_exact(&m, ok, sizeof(ok) - 1), PUSHER_MSG_OK);
    assert_non_null(m.decoded);
    pusher_msg_free(&m);
    pusher_msg_free(&m);

    assert_int_equal(parse_exact(&m, bad, sizeof(bad) - 1),
                     PUSHER_MSG_BAD_DATA);
    pusher_msg_free(&m);
    pusher_msg_free(&m);

    assert_int_equal(parse_exact(&m, "{", 1), PUSHER_MSG_BAD_JSON);
    pusher_msg_free(&m);
    pusher_msg_free(&m);
}


static void
parse_reuses_a_message_after_free(void **state)
{
    size_t        i;
    pusher_msg_t  m;
    static const char  json[] =
        "{\"event\":\"pusher:unsubscribe\",\"data\":{\"channel\":\"b\"}}";

    for (i = 0; i < 3; i++) {
        assert_int_equal(parse_exact(&m, json, sizeof(json) - 1),
                         PUSHER_MSG_OK);
        assert_str(m.channel, "b");
        pusher_msg_free(&m);
    }
}


/* a message that is a prefix of a longer buffer: only len bytes count */
static void
parse_uses_only_len_bytes(void **state)
{
    pusher_msg_t  m;
    static const char  json[] = "{\"event\":\"pusher:ping\"}{\"event\":1}";

    assert_int_equal(parse_exact(&m, json, 23), PUSHER_MSG_OK);
    assert_int_equal(m.type, PUSHER_MSG_PING);
    pusher_msg_free(&m);

    assert_int_equal(parse_exact(&m, json, 22), PUSHER_MSG_BAD_JSON);
    pusher_msg_free(&m);
}


/* every builder: exact bytes, and 0 without a write past cap below that */
typedef size_t (*builder_pt)(uint8_t *buf, size_t cap);


static size_t
build_established(uint8_t *buf, size_t cap)
{
    return pusher_build_connection_established(buf, cap, "123.456", 7, 30);
}


static size_t
build_established_long(uint8_t *buf, size_t cap)
{
    return pusher_build_connection_established(buf, cap,
        "12345678901234567890.12345678901234567890", 41, 4294967295u);
}


static size_t
build_error(uint8_t *buf, size_t cap)
{
    return pusher_build_error(buf, cap, PUSHER_ERR_APP_NOT_FOUND,
                              "Application does not exist");
}


static size_t
build_error_escaped(uint8_t *buf, size_t cap)
{
    return pusher_build_error(buf, cap, PUSHER_ERR_CLIENT_EVENT,
                              "say \"hi\"\\\n\x01/\xc3\xa9");
}


static size_t
build_error_empty(uint8_t *buf, size_t cap)
{
    return pusher_build_error(buf, cap, 4200, "");
}


static size_t
build_ping(uint8_t *buf, size_t cap)
{
    return pusher_build_ping(buf, cap);
}


static size_t
build_pong(uint8_t *buf, size_t cap)
{
    return pusher_build_pong(buf, cap);
}


static size_t
build_succeeded(uint8_t *buf, size_t cap)
{
    return pusher_build_subscription_succeeded(buf, cap, "my-channel", 10);
}


static const struct {
    const char  *name;
    builder_pt   build;
    const char  *expect;
} builder_cases[] = {
    { "connection_established", build_established,
      "{\"event\":\"pusher:connection_established\",\"data\":"
      "\"{\\\"socket_id\\\":\\\"123.456\\\",\\\"activity_timeout\\\":30}\"}" },

    { "connection_established, longest socket id", build_established_long,
      "{\"event\":\"pusher:connection_established\",\"data\":"
      "\"{\\\"socket_id\\\":\\\"12345678901234567890.12345678901234567890"
      "\\\",\\\"activity_timeout\\\":4294967295}\"}" },

    { "error", build_error,
      "{\"event\":\"pusher:error\",\"data\":"
      "\"{\\\"code\\\":4001,\\\"message\\\":"
      "\\\"Application does not exist\\\"}\"}" },

    { "error, message escaped twice", build_error_escaped,
      "{\"event\":\"pusher:error\",\"data\":"
      "\"{\\\"code\\\":4301,\\\"message\\\":"
      "\\\"say \\\\\\\"hi\\\\\\\"\\\\\\\\\\\\n\\\\u0001/\xc3\xa9\\\"}\"}" },

    { "error, empty message", build_error_empty,
      "{\"event\":\"pusher:error\",\"data\":"
      "\"{\\\"code\\\":4200,\\\"message\\\":\\\"\\\"}\"}" },

    { "ping", build_ping, "{\"event\":\"pusher:ping\",\"data\":\"{}\"}" },

    { "pong", build_pong, "{\"event\":\"pusher:pong\",\"data\":\"{}\"}" },

    { "subscription_succeeded", build_succeeded,
      "{\"event\":\"pusher_internal:subscription_succeeded\","
      "\"channel\":\"my-channel\",\"data\":\"{}\"}" }
};


static void
builders_write_exact_bytes_and_respect_cap(void **state)
{
    size_t    i, cap, len, n;
    uint8_t   buf[512];

    for (i = 0; i < sizeof(builder_cases) / sizeof(builder_cases[0]); i++) {
        print_message("case: %s\n", builder_cases[i].name);
        len = strlen(builder_cases[i].expect);

        memset(buf, GUARD, sizeof(buf));
        n = builder_cases[i].build(buf, sizeof(buf));
        assert_int_equal(n, len);
        assert_memory_equal(buf, builder_cases[i].expect, len);
        assert_int_equal(buf[len], GUARD);

        /* exactly enough room */
        memset(buf, GUARD, sizeof(buf));
        assert_int_equal(builder_cases[i].build(buf, len), len);
        assert_memory_equal(buf, builder_cases[i].expect, len);
        assert_int_equal(buf[len], GUARD);

        for (cap = 0; cap < len; cap++) {
            memset(buf, GUARD, sizeof(buf));
            assert_int_equal(builder_cases[i].build(buf, cap), 0);
            assert_int_equal(buf[cap], GUARD);
        }
    }
}


/* the error "data" string, unescaped, is itself the inner JSON object */
static void
error_data_decodes_to_code_and_message(void **state)
{
    size_t        n;
    cJSON        *root, *inner;
    uint8_t       buf[256];
    static const char  msg[] = "tab\there \"q\" \\ \x1f end";

    n = pusher_build_error(buf, sizeof(buf), 4009, msg);
    assert_true(n > 0);

    root = cJSON_ParseWithLength((const char *) buf, n);
    assert_non_null(root);

    inner = cJSON_Parse(cJSON_GetObjectItemCaseSensitive(root, "data")
                            ->valuestring);
    assert_non_null(inner);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(inner, "code")
                         ->valueint, 4009);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(inner, "message")
                            ->valuestring, msg);

    cJSON_Delete(inner);
    cJSON_Delete(root);
}


static const struct {
    const char  *in;
    size_t       in_len;
    const char  *out;
} escape_cases[] = {
    { "", 0, "" },
    { "plain", 5, "plain" },
    { "\"", 1, "\\\"" },
    { "\\", 1, "\\\\" },
    { "/", 1, "/" },
    { "\b\f\n\r\t", 5, "\\b\\f\\n\\r\\t" },
    { "\x00", 1, "\\u0000" },
    { "\x01\x0b\x0e\x1a\x1f", 5, "\\u0001\\u000b\\u000e\\u001a\\u001f" },
    { " \x7f", 2, " \x7f" },
    { "\xc3\xa9\xe2\x80\xa8\xf0\x9f\x98\x80", 9,
      "\xc3\xa9\xe2\x80\xa8\xf0\x9f\x98\x80" },
    { "\xff\xfe", 2, "\xff\xfe" },
    { "a\"b\\c\nd", 7, "a\\\"b\\\\c\\nd" },
    { "{\"some\":\"data\"}", 15, "{\\\"some\\\":\\\"data\\\"}" }
};


static void
json_escape_quotes_backslash_and_controls_only(void **state)
{
    size_t   i, n, len;
    uint8_t  buf[128];

    for (i = 0; i < sizeof(escape_cases) / sizeof(escape_cases[0]); i++) {
        len = strlen(escape_cases[i].out);

        assert_int_equal(pusher_json_escape(NULL,
                             (const uint8_t *) escape_cases[i].in,
                             escape_cases[i].in_len), len);

        memset(buf, GUARD, sizeof(buf));
        n = pusher_json_escape(buf, (const uint8_t *) escape_cases[i].in,
                               escape_cases[i].in_len);
        assert_int_equal(n, len);
        assert_memory_equal(buf, escape_cases[i].out, len);
        assert_int_equal(buf[len], GUARD);
    }
}


/* every byte value: escaped output is valid JSON that decodes back */
static void
json_escape_roundtrips_every_byte_below_0x80(void **state)
{
    int      c;
    size_t   n;
    cJSON   *s;
    uint8_t  in[128], buf[2 + 6 * 128 + 1];

    for (c = 0; c < 128; c++) {
        in[c] = (uint8_t) ((c + 1) & 0x7f);     /* NUL last */
    }

    buf[0] = '"';
    n = 1 + pusher_json_escape(buf + 1, in, 127);
    buf[n++] = '"';

    s = cJSON_ParseWithLength((const char *) buf, n);
    assert_non_null(s);
    assert_true(cJSON_IsString(s));
    assert_memory_equal(s->valuestring, in, 127);
    cJSON_Delete(s);
}


static const struct {
    const char  *name;
    int          valid;
} channel_name_cases[] = {
    { "my-channel", 1 },
    { "a", 1 },
    { "0", 1 },
    { "-", 1 },
    { "private-foobar", 1 },
    { "presence-foobar", 1 },
    { "private-encrypted-x", 1 },
    { "cache-x", 1 },
    { "#server-to-user-123", 1 },
    { "#a", 1 },
    { "azAZ09-_=@,.;", 1 },
    { "user@example.com", 1 },
    { "a=b,c;d", 1 },
    { "", 0 },
    { "#", 0 },
    { "##", 0 },
    { "a#", 0 },
    { "a#b", 0 },
    { " a", 0 },
    { "a b", 0 },
    { "a:b", 0 },
    { "a/b", 0 },
    { "a\\b", 0 },
    { "a\"b", 0 },
    { "a*", 0 },
    { "a?", 0 },
    { "a+b", 0 },
    { "a%20", 0 },
    { "a<b>", 0 },
    { "[a]", 0 },
    { "{a}", 0 },
    { "a|b", 0 },
    { "a~", 0 },
    { "a`", 0 },
    { "a^", 0 },
    { "a!", 0 },
    { "a$", 0 },
    { "a&", 0 },
    { "a'", 0 },
    { "a(", 0 },
    { "a\n", 0 },
    { "caf\xc3\xa9", 0 },
    { "a\x7f", 0 }
};


static void
channel_names_follow_the_sdk_regex(void **state)
{
    size_t  i;
    char    name[256];

    for (i = 0;
         i < sizeof(channel_name_cases) / sizeof(channel_name_cases[0]);
         i++)
    {
        print_message("case: \"%s\"\n", channel_name_cases[i].name);
        assert_int_equal(pusher_channel_name_valid(channel_name_cases[i].name,
                             strlen(channel_name_cases[i].name)),
                         channel_name_cases[i].valid);
    }

    /* a NUL inside the given length is not a name character */
    assert_false(pusher_channel_name_valid("a\0b", 3));
    assert_true(pusher_channel_name_valid("ab\0", 2));

    /* 200 bytes is the limit, '#' included */
    memset(name, 'a', sizeof(name));
    assert_true(pusher_channel_name_valid(name, 200));
    assert_false(pusher_channel_name_valid(name, 201));
    assert_false(pusher_channel_name_valid(name, 255));

    name[0] = '#';
    assert_true(pusher_channel_name_valid(name, 200));
    assert_false(pusher_channel_name_valid(name, 201));

    name[0] = 'a';
    name[199] = '#';
    assert_false(pusher_channel_name_valid(name, 200));
}


static const struct {
    const char             *name;
    pusher_channel_type_e   type;
    int                     auth;
} channel_type_cases[] = {
    { "my-channel", PUSHER_CHANNEL_PUBLIC, 0 },
    { "private-a", PUSHER_CHANNEL_PRIVATE, 1 },
    { "private-", PUSHER_CHANNEL_PRIVATE, 1 },
    { "private", PUSHER_CHANNEL_PUBLIC, 0 },
    { "privatechannel", PUSHER_CHANNEL_PUBLIC, 0 },
    { "Private-a", PUSHER_CHANNEL_PUBLIC, 0 },
    { "private-encrypted-a", PUSHER_CHANNEL_PRIVATE_ENCRYPTED, 1 },
    { "private-encrypted-cache-a", PUSHER_CHANNEL_PRIVATE_ENCRYPTED, 1 },
    { "private-encrypted", PUSHER_CHANNEL_PRIVATE, 1 },
    { "private-cache-a", PUSHER_CHANNEL_PRIVATE_CACHE, 1 },
    { "private-cache", PUSHER_CHANNEL_PRIVATE, 1 },
    { "presence-a", PUSHER_CHANNEL_PRESENCE, 1 },
    { "presence", PUSHER_CHANNEL_PUBLIC, 0 },
    { "presence-cache-a", PUSHER_CHANNEL_PRESENCE_CACHE, 1 },
    { "presence-cache", PUSHER_CHANNEL_PRESENCE, 1 },
    { "cache-a", PUSHER_CHANNEL_CACHE, 0 },
    { "cache", PUSHER_CHANNEL_PUBLIC, 0 },
    { "a-private-b", PUSHER_CHANNEL_PUBLIC, 0 },
    { "#server-to-user-1", PUSHER_CHANNEL_SERVER_TO_USER, 0 },
    { "#server-to-user-", PUSHER_CHANNEL_SERVER_TO_USER, 0 },
    { "#server-to-user", PUSHER_CHANNEL_PUBLIC, 0 },
    { "server-to-user-1", PUSHER_CHANNEL_PUBLIC, 0 },
    { "#private-a", PUSHER_CHANNEL_PUBLIC, 0 },
    { "", PUSHER_CHANNEL_PUBLIC, 0 }
};


static void
channel_types_by_longest_prefix(void **state)
{
    size_t  i;

    for (i = 0;
         i < sizeof(channel_type_cases) / sizeof(channel_type_cases[0]);
         i++)
    {
        print_message("case: \"%s\"\n", channel_type_cases[i].name);
        assert_int_equal(pusher_channel_type(channel_type_cases[i].name,
                             strlen(channel_type_cases[i].name)),
                         channel_type_cases[i].type);
        assert_int_equal(pusher_channel_needs_auth(channel_type_cases[i].type),
                         channel_type_cases[i].auth);
    }

    /* only len bytes are looked at */
    assert_int_equal(pusher_channel_type("private-a", 7),
                     PUSHER_CHANNEL_PUBLIC);
    assert_int_equal(pusher_channel_type("presence-cache-a", 14),
                     PUSHER_CHANNEL_PRESENCE);

    assert_false(pusher_channel_needs_auth(PUSHER_CHANNEL_PUBLIC));
    assert_false(pusher_channel_needs_auth(PUSHER_CHANNEL_CACHE));
    assert_false(pusher_channel_needs_auth(PUSHER_CHANNEL_SERVER_TO_USER));
}


static const struct {
    const char  *id;
    int          valid;
} socket_id_cases[] = {
    { "123.456", 1 },
    { "1.2", 1 },
    { "1234.1234", 1 },
    { "870132037.115391333", 1 },
    { "12345678901234567890.12345678901234567890", 1 },
    { "0.0", 1 },
    { "123456789012345678901.1", 0 },
    { "1.123456789012345678901", 0 },
    { "", 0 },
    { ".", 0 },
    { "1.", 0 },
    { ".1", 0 },
    { "1", 0 },
    { "12", 0 },
    { "1..2", 0 },
    { "1.2.3", 0 },
    { "-1.2", 0 },
    { "1.-2", 0 },
    { "1 .2", 0 },
    { "1.2 ", 0 },
    { "a.b", 0 },
    { "1,2", 0 },
    { "1.2\n", 0 },
    { "\xd9\xa1.1", 0 }
};


static void
socket_ids_are_two_digit_runs(void **state)
{
    size_t  i;

    for (i = 0; i < sizeof(socket_id_cases) / sizeof(socket_id_cases[0]);
         i++)
    {
        print_message("case: \"%s\"\n", socket_id_cases[i].id);
        assert_int_equal(pusher_socket_id_valid(socket_id_cases[i].id,
                             strlen(socket_id_cases[i].id)),
                         socket_id_cases[i].valid);
    }

    assert_false(pusher_socket_id_valid("1.2\0", 4));
    assert_true(pusher_socket_id_valid("1.23", 3));
}


static void
event_json_is_exact_and_sized_exactly(void **state)
{
    size_t   n, size;
    uint8_t  buf[256];
    static const char  expect[] =
        "{\"event\":\"my-event\",\"channel\":\"project-3\","
        "\"data\":\"{\\\"some\\\":\\\"data\\\"}\"}";
    static const char  expect2[] =
        "{\"event\":\"App\\\\Ev \\\"q\\\"\",\"channel\":\"c\","
        "\"data\":\"a\\nb\\u0001\xc3\xa9\"}";
    static const char  expect3[] =
        "{\"event\":\"\",\"channel\":\"\",\"data\":\"\"}";

    size = pusher_event_json_size(S("my-event"), S("project-3"),
                                  S("{\"some\":\"data\"}"));
    assert_int_equal(size, sizeof(expect) - 1);

    memset(buf, GUARD, sizeof(buf));
    n = pusher_event_json(buf, S("my-event"), S("project-3"),
                          S("{\"some\":\"data\"}"));
    assert_int_equal(n, size);
    assert_memory_equal(buf, expect, n);
    assert_int_equal(buf[n], GUARD);

    size = pusher_event_json_size(S("App\\Ev \"q\""), S("c"),
                                  S("a\nb\x01\xc3\xa9"));
    assert_int_equal(size, sizeof(expect2) - 1);

    memset(buf, GUARD, sizeof(buf));
    n = pusher_event_json(buf, S("App\\Ev \"q\""), S("c"),
                          S("a\nb\x01\xc3\xa9"));
    assert_int_equal(n, size);
    assert_memory_equal(buf, expect2, n);
    assert_int_equal(buf[n], GUARD);

    assert_int_equal(pusher_event_json_size(S(""), S(""), S("")),
                     sizeof(expect3) - 1);
    n = pusher_event_json(buf, S(""), S(""), S(""));
    assert_memory_equal(buf, expect3, n);
}


/* ring event records */

typedef struct {
    pusher_str_t   app_id;
    pusher_str_t   socket_id;
    pusher_str_t   channels[3];
    size_t         nchannels;
    const uint8_t *name;
    size_t         name_len;
    uint8_t       *data;
    size_t         data_len;
} ring_input_t;


static size_t
ring_names_len(const ring_input_t *in)
{
    size_t  i, n;

    n = 0;

    for (i = 0; i < in->nchannels; i++) {
        n += in->channels[i].len;
    }

    return n;
}


static uint8_t *
ring_encode(const ring_input_t *in, size_t *len)
{
    size_t    json_len, size, n;
    uint8_t  *rec;

    json_len = pusher_event_json_size(in->name, in->name_len, NULL, 0,
                                      in->data, in->data_len);
    size = pusher_ring_event_size(in->app_id.len, in->socket_id.len,
                                  in->nchannels, ring_names_len(in),
                                  json_len);
    assert_true(size > 0);

    rec = malloc(size + 1);
    assert_non_null(rec);
    rec[size] = GUARD;

    n = pusher_ring_event_encode(rec, &in->app_id, &in->socket_id,
                                 in->channels, in->nchannels, in->name,
                                 in->name_len, in->data, in->data_len);
    assert_int_equal(n, size);
    assert_int_equal(rec[size], GUARD);

    *len = size;

    return rec;
}


/*
 * Every channel of a decoded record gives the frame the event has on that
 * channel alone: the WebSocket header and pusher_event_json()'s text.
 */
static void
ring_check_frames(const ring_input_t *in, const pusher_ring_event_view_t *v)
{
    size_t          i, json_len, hdr, size, n;
    uint8_t        *frame, *json;
    pusher_str_t    ch;
    const uint8_t  *pos;

    assert_int_equal(v->nchannels, in->nchannels);
    pos = v->channels;

    for (i = 0; i < in->nchannels; i++) {
        pusher_ring_event_channel(&pos, &ch);
        assert_int_equal(ch.len, in->channels[i].len);
        assert_memory_equal(ch.data, in->channels[i].data, ch.len);

        json_len = pusher_event_json_size(in->name, in->name_len,
                                          (const uint8_t *) ch.data, ch.len,
                                          in->data, in->data_len);
        json = malloc(json_len + 1);
        assert_non_null(json);
        (void) pusher_event_json(json, in->name, in->name_len,
                                 (const uint8_t *) ch.data, ch.len, in->data,
                                 in->data_len);

        hdr = json_len < 126 ? 2 : json_len <= 0xffff ? 4 : 10;
        size = pusher_ring_event_frame_size(v, ch.len);
        assert_int_equal(size, hdr + json_len);

        frame = malloc(size + 1);
        assert_non_null(frame);
        frame[size] = GUARD;

        n = pusher_ring_event_frame(frame, v, &ch);
        assert_int_equal(n, size);
        assert_int_equal(frame[size], GUARD);
        assert_int_equal(pusher_ws_frame_header_size(json_len), hdr);
        assert_int_equal(frame[0], 0x81);
        assert_memory_equal(frame + hdr, json, json_len);

        free(frame);
        free(json);
    }
}


static void
ring_event_bytes_are_exact(void **state)
{
    size_t                    len, off;
    uint8_t                  *rec, frame[128];
    ring_input_t              in;
    pusher_str_t              ch;
    const uint8_t            *pos;
    pusher_ring_event_t       ev;
    pusher_ring_event_view_t  v;
    static const char  prefix[] = "{\"event\":\"my-event\",\"channel\":\"";
    static const char  suffix[] = "\",\"data\":\"{\\\"some\\\":\\\"data\\\"}\"}";
    static const char  json[] =
        "{\"event\":\"my-event\",\"channel\":\"project-3\","
        "\"data\":\"{\\\"some\\\":\\\"data\\\"}\"}";

    in.app_id.data = "3";
    in.app_id.len = 1;
    in.socket_id.data = "123.456";
    in.socket_id.len = 7;
    in.channels[0].data = "project-3";
    in.channels[0].len = 9;
    in.channels[1].data = "private-x";
    in.channels[1].len = 9;
    in.nchannels = 2;
    in.name = (const uint8_t *) "my-event";
    in.name_len = 8;
    in.data = (uint8_t *) "{\"some\":\"data\"}";
    in.data_len = 15;

    rec = ring_encode(&in, &len);

    /* the data once, however many channels */
    assert_int_equal(len, sizeof(pusher_ring_event_t) + 1 + 7 + 1 + 9 + 1 + 9
                          + sizeof(prefix) - 1 + sizeof(suffix) - 1);

    memcpy(&ev, rec, sizeof(ev));
    assert_int_equal(ev.prefix_len, sizeof(prefix) - 1);
    assert_int_equal(ev.suffix_len, sizeof(suffix) - 1);
    assert_int_equal(ev.app_id_len, 1);
    assert_int_equal(ev.channels, 2);
    assert_int_equal(ev.socket_id_len, 7);
    assert_int_equal(ev.flags, 0);

    off = sizeof(pusher_ring_event_t);
    assert_memory_equal(rec + off, "3123.456\x09project-3\x09private-x", 28);
    off += 28;
    assert_memory_equal(rec + off, prefix, sizeof(prefix) - 1);
    off += sizeof(prefix) - 1;
    assert_memory_equal(rec + off, suffix, sizeof(suffix) - 1);

    assert_int_equal(pusher_ring_event_decode(rec, len, &v), 0);
    assert_str(v.app_id, "3");
    assert_str(v.socket_id, "123.456");
    assert_int_equal(v.whole, 0);

    /* the exact frame of the first channel */
    pos = v.channels;
    pusher_ring_event_channel(&pos, &ch);
    assert_str(ch, "project-3");
    assert_int_equal(pusher_ring_event_frame(frame, &v, &ch),
                     2 + sizeof(json) - 1);
    assert_int_equal(frame[0], 0x81);
    assert_int_equal(frame[1], sizeof(json) - 1);
    assert_memory_equal(frame + 2, json, sizeof(json) - 1);

    ring_check_frames(&in, &v);

    free(rec);
}


/*
 * pusher_ring_event_encode_json: one channel, and the frame carries exactly
 * the given JSON (client events, presence events)
 */
static void
ring_event_encode_json_frame_bytes_are_exact(void **state)
{
    size_t                    len, size, off, i;
    uint8_t                  *rec, frame[400];
    uint8_t                   big[300];
    pusher_str_t              app_id, channel, socket_id, none, ch;
    const uint8_t            *pos;
    pusher_ring_event_t       ev;
    pusher_ring_event_view_t  v;
    static const char  json[] =
        "{\"event\":\"client-typing\",\"channel\":\"private-chat\","
        "\"data\":{\"id\":1}}";

    app_id.data = "app-1";
    app_id.len = 5;
    channel.data = "private-chat";
    channel.len = 12;
    socket_id.data = "12.34";
    socket_id.len = 5;

    size = pusher_ring_event_size(5, 5, 1, 12, sizeof(json) - 1);
    assert_int_equal(size, sizeof(pusher_ring_event_t) + 5 + 5 + 1 + 12
                           + sizeof(json) - 1);

    rec = malloc(size + 1);
    assert_non_null(rec);
    rec[size] = GUARD;

    len = pusher_ring_event_encode_json(rec, &app_id, &channel, &socket_id,
                                        S(json));
    assert_int_equal(len, size);
    assert_int_equal(rec[size], GUARD);

    memcpy(&ev, rec, sizeof(ev));
    assert_int_equal(ev.prefix_len, sizeof(json) - 1);
    assert_int_equal(ev.suffix_len, 0);
    assert_int_equal(ev.channels, 1);
    assert_int_equal(ev.flags, PUSHER_RING_EVENT_WHOLE);

    off = sizeof(pusher_ring_event_t);
    assert_memory_equal(rec + off, "app-112.34\x0cprivate-chat", 23);
    off += 23;
    assert_memory_equal(rec + off, json, sizeof(json) - 1);

    assert_int_equal(pusher_ring_event_decode(rec, len, &v), 0);
    assert_str(v.app_id, "app-1");
    assert_str(v.socket_id, "12.34");
    assert_int_equal(v.whole, 1);

    pos = v.channels;
    pusher_ring_event_channel(&pos, &ch);
    assert_str(ch, "private-chat");
    assert_int_equal(pusher_ring_event_frame_size(&v, ch.len),
                     2 + sizeof(json) - 1);
    assert_int_equal(pusher_ring_event_frame(frame, &v, &ch),
                     2 + sizeof(json) - 1);
    assert_int_equal(frame[0], 0x81);
    assert_int_equal(frame[1], sizeof(json) - 1);
    assert_memory_equal(frame + 2, json, sizeof(json) - 1);

    free(rec);

    /* no exclusion, and a 16-bit frame length */
    for (i = 0; i < sizeof(big); i++) {
        big[i] = (uint8_t) ('a' + i % 26);
    }

    none.data = NULL;
    none.len = 0;

    size = pusher_ring_event_size(5, 0, 1, 12, sizeof(big));
    rec = malloc(size);
    assert_non_null(rec);

    len = pusher_ring_event_encode_json(rec, &app_id, &channel, &none, big,
                                        sizeof(big));
    assert_int_equal(len, size);

    assert_int_equal(pusher_ring_event_decode(rec, len, &v), 0);
    assert_int_equal(v.socket_id.len, 0);
    assert_int_equal(pusher_ring_event_frame(frame, &v, &channel),
                     4 + sizeof(big));
    assert_int_equal(frame[0], 0x81);
    assert_int_equal(frame[1], 126);
    assert_int_equal(frame[2], sizeof(big) >> 8);
    assert_int_equal(frame[3], sizeof(big) & 0xff);
    assert_memory_equal(frame + 4, big, sizeof(big));

    free(rec);

    /* lengths a record cannot hold */
    channel.len = 0;
    assert_int_equal(pusher_ring_event_encode_json(big, &app_id, &channel,
                                                   &none, S("{}")), 0);
}


/* frames around the 7-bit, 16-bit and 64-bit length encodings */
static void
ring_event_roundtrips_every_header_size(void **state)
{
    size_t                    i, k, len, data_len;
    uint8_t                  *rec, *data;
    ring_input_t              in;
    pusher_ring_event_view_t  v;
    static const size_t  sizes[] = {
        0, 1, 40, 49, 50, 51, 52, 200, 65400, 65535 - 40, 65535 - 39, 70000
    };

    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        data_len = sizes[i];
        data = malloc(data_len + 1);
        assert_non_null(data);

        for (k = 0; k < data_len; k++) {
            data[k] = (k % 7 == 0) ? '"' : (uint8_t) ('a' + k % 26);
        }

        in.app_id.data = "app-1";
        in.app_id.len = 5;
        in.socket_id.data = NULL;
        in.socket_id.len = 0;
        in.channels[0].data = "presence-room";
        in.channels[0].len = 13;
        in.channels[1].data = "a";
        in.channels[1].len = 1;
        in.channels[2].data = "#server-to-user-42";
        in.channels[2].len = 18;
        in.nchannels = 3;
        in.name = (const uint8_t *) "ev";
        in.name_len = 2;
        in.data = data;
        in.data_len = data_len;

        rec = ring_encode(&in, &len);

        assert_int_equal(pusher_ring_event_decode(rec, len, &v), 0);
        assert_str(v.app_id, "app-1");
        assert_int_equal(v.socket_id.len, 0);
        ring_check_frames(&in, &v);

        free(rec);
        free(data);
    }
}


static void
ring_event_size_rejects_unrepresentable_lengths(void **state)
{
    pusher_str_t  app, ch[2], sid, big;
    uint8_t       out[1024];
    char          long_name[300];

    memset(long_name, 'a', sizeof(long_name));

    assert_int_equal(pusher_ring_event_size(0, 0, 1, 1, 10), 0);
    assert_int_equal(pusher_ring_event_size(256, 0, 1, 1, 10), 0);
    assert_int_equal(pusher_ring_event_size(1, 42, 1, 1, 10), 0);
    assert_int_equal(pusher_ring_event_size(1, 0, 0, 0, 10), 0);
    assert_int_equal(pusher_ring_event_size(1, 0, 65536, 65536, 10), 0);
    assert_int_equal(pusher_ring_event_size(1, 0, 2, 1, 10), 0);
    assert_int_equal(pusher_ring_event_size(1, 0, 1, 201, 10), 0);
    assert_int_equal(pusher_ring_event_size(1, 0, 2, 401, 10), 0);
    assert_int_equal(pusher_ring_event_size(1, 0, 1, 1, UINT32_MAX), 0);
    assert_int_equal(pusher_ring_event_size(255, 41, 2, 400, 10),
                     16 + 255 + 41 + 2 + 400 + 10);

    app.data = "1";
    app.len = 1;
    ch[0].data = "c";
    ch[0].len = 1;
    ch[1] = ch[0];
    sid.data = NULL;
    sid.len = 0;
    big.data = long_name;
    big.len = 201;

    assert_int_equal(pusher_ring_event_encode(out, &app, &sid, &big, 1,
                                              S("e"), S("d")), 0);
    ch[1] = big;
    assert_int_equal(pusher_ring_event_encode(out, &app, &sid, ch, 2,
                                              S("e"), S("d")), 0);
    ch[1].len = 0;
    assert_int_equal(pusher_ring_event_encode(out, &app, &sid, ch, 2,
                                              S("e"), S("d")), 0);
    big.len = 256;
    assert_int_equal(pusher_ring_event_encode(out, &big, &sid, ch, 1,
                                              S("e"), S("d")), 0);
    assert_int_equal(pusher_ring_event_encode(out, &app, &sid, ch, 0,
                                              S("e"), S("d")), 0);
}


static void
ring_event_input(ring_input_t *in, uint8_t *data, size_t data_len)
{
    in->app_id.data = "app";
    in->app_id.len = 3;
    in->socket_id.data = "1.2";
    in->socket_id.len = 3;
    in->channels[0].data = "private-a";
    in->channels[0].len = 9;
    in->channels[1].data = "bc";
    in->channels[1].len = 2;
    in->nchannels = 2;
    in->name = (const uint8_t *) "e";
    in->name_len = 1;
    in->data = data;
    in->data_len = data_len;
}


static void
ring_event_decode_rejects_truncated_records(void **state)
{
    size_t                    len, cut;
    uint8_t                  *rec, *copy, data[300];
    ring_input_t              in;
    pusher_ring_event_view_t  v;

    memset(data, 'x', sizeof(data));
    ring_event_input(&in, data, sizeof(data));

    rec = ring_encode(&in, &len);

    /* every shorter prefix, each in its own exact-size heap block */
    for (cut = 0; cut < len; cut++) {
        copy = malloc(cut ? cut : 1);
        assert_non_null(copy);
        memcpy(copy, rec, cut);
        assert_int_equal(pusher_ring_event_decode(copy, cut, &v), -1);
        free(copy);
    }

    /* and a longer record (trailing bytes) */
    copy = malloc(len + 8);
    assert_non_null(copy);
    memcpy(copy, rec, len);
    memset(copy + len, 0, 8);
    assert_int_equal(pusher_ring_event_decode(copy, len + 8, &v), -1);
    free(copy);

    free(rec);
}


typedef void (*corrupt_pt)(uint8_t *rec, size_t len);


#define CORRUPT(fn, stmt)                                                     \
    static void                                                               \
    fn(uint8_t *rec, size_t len)                                              \
    {                                                                         \
        pusher_ring_event_t  ev;                                              \
        uint8_t             *names;                                           \
                                                                              \
        memcpy(&ev, rec, sizeof(ev));                                         \
        names = rec + sizeof(ev) + ev.app_id_len + ev.socket_id_len;          \
        (void) names;                                                         \
        (void) len;                                                           \
        stmt;                                                                 \
        memcpy(rec, &ev, sizeof(ev));                                         \
    }

/* the input of ring_event_input(): names "\x09private-a\x02bc" */
CORRUPT(prefix_len_plus_one, ev.prefix_len++)
CORRUPT(prefix_len_minus_one, ev.prefix_len--)
CORRUPT(prefix_len_huge, ev.prefix_len = UINT32_MAX)
CORRUPT(suffix_len_plus_one, ev.suffix_len++)
CORRUPT(suffix_len_minus_one, ev.suffix_len--)
CORRUPT(suffix_len_huge, ev.suffix_len = UINT32_MAX)
CORRUPT(app_id_len_plus_one, ev.app_id_len++)
CORRUPT(app_id_len_zero, ev.app_id_len = 0)
CORRUPT(app_id_len_huge, ev.app_id_len = 0xffff)
CORRUPT(channels_plus_one, ev.channels++)
CORRUPT(channels_minus_one, ev.channels--)
CORRUPT(channels_zero, ev.channels = 0)
CORRUPT(socket_id_len_plus_one, ev.socket_id_len++)
CORRUPT(socket_id_len_too_long, ev.socket_id_len = 0xff)
CORRUPT(unknown_flag, ev.flags = 0x02)
CORRUPT(whole_with_two_channels, ev.flags = PUSHER_RING_EVENT_WHOLE)
CORRUPT(name_len_plus_one, names[0]++)
CORRUPT(name_len_minus_one, names[0]--)
CORRUPT(name_len_zero, names[0] = 0)
CORRUPT(name_len_too_long, names[0] = 201)
CORRUPT(last_name_len_plus_one, names[10]++)


static const struct {
    const char  *name;
    corrupt_pt   corrupt;
} corrupt_cases[] = {
    { "prefix_len + 1", prefix_len_plus_one },
    { "prefix_len - 1", prefix_len_minus_one },
    { "prefix_len huge", prefix_len_huge },
    { "suffix_len + 1", suffix_len_plus_one },
    { "suffix_len - 1", suffix_len_minus_one },
    { "suffix_len huge", suffix_len_huge },
    { "app_id_len + 1", app_id_len_plus_one },
    { "app_id_len 0", app_id_len_zero },
    { "app_id_len huge", app_id_len_huge },
    { "channels + 1", channels_plus_one },
    { "channels - 1", channels_minus_one },
    { "channels 0", channels_zero },
    { "socket_id_len + 1", socket_id_len_plus_one },
    { "socket_id_len 255", socket_id_len_too_long },
    { "unknown flag", unknown_flag },
    { "whole JSON with two channels", whole_with_two_channels },
    { "first name length + 1", name_len_plus_one },
    { "first name length - 1", name_len_minus_one },
    { "first name length 0", name_len_zero },
    { "first name length 201", name_len_too_long },
    { "last name length + 1", last_name_len_plus_one }
};


static void
ring_event_decode_rejects_corrupted_records(void **state)
{
    size_t                    i, len;
    uint8_t                  *rec, *copy, data[20];
    ring_input_t              in;
    pusher_ring_event_view_t  v;

    memset(data, 'x', sizeof(data));
    ring_event_input(&in, data, sizeof(data));

    rec = ring_encode(&in, &len);
    assert_int_equal(pusher_ring_event_decode(rec, len, &v), 0);

    for (i = 0; i < sizeof(corrupt_cases) / sizeof(corrupt_cases[0]); i++) {
        print_message("case: %s\n", corrupt_cases[i].name);

        copy = malloc(len);
        assert_non_null(copy);
        memcpy(copy, rec, len);
        corrupt_cases[i].corrupt(copy, len);

        assert_int_equal(pusher_ring_event_decode(copy, len, &v), -1);
        free(copy);
    }

    free(rec);
}


/* random garbage never crashes the decoder (ASan checks the reads) */
static void
ring_event_decode_survives_garbage(void **state)
{
    size_t                    i, len, k, fixed, accepted;
    uint8_t                  *rec;
    uint32_t                  x;
    pusher_str_t              ch;
    const uint8_t            *pos;
    pusher_ring_event_t       ev;
    pusher_ring_event_view_t  v;

    x = 2463534242u;
    accepted = 0;

    for (i = 0; i < 20000; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        len = x % 96;

        rec = malloc(len ? len : 1);
        assert_non_null(rec);

        for (k = 0; k < len; k++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            rec[k] = (uint8_t) x;
        }

        /*
         * Small lengths and, for every other record, one channel and a
         * prefix that ends the record, so that the name checks see
         * garbage too.
         */
        if (len >= sizeof(ev)) {
            memcpy(&ev, rec, sizeof(ev));
            ev.app_id_len &= 0x0f;
            ev.socket_id_len &= 0x0f;
            ev.flags &= PUSHER_RING_EVENT_WHOLE;
            ev.channels = 1;
            ev.suffix_len = 0;

            fixed = sizeof(ev) + ev.app_id_len + ev.socket_id_len;

            if ((i & 1) && len > fixed + 1) {
                rec[fixed] &= 0x0f;
                ev.prefix_len = (uint32_t) (len - fixed - 1 - rec[fixed]);
            }

            memcpy(rec, &ev, sizeof(ev));
        }

        if (pusher_ring_event_decode(rec, len, &v) == 0) {
            assert_true(v.suffix + v.suffix_len == rec + len);
            pos = v.channels;
            pusher_ring_event_channel(&pos, &ch);
            assert_true(ch.len > 0 && (const uint8_t *) ch.data >= rec
                        && (const uint8_t *) ch.data + ch.len <= v.prefix);
            accepted++;
        }

        free(rec);
    }

    assert_true(accepted > 0);
}


static void
origin_host_is_found(void **state)
{
    const char  *host;
    size_t       len;

    (void) state;

#define HOST_OF(o, want)                                                      \
    assert_int_equal(pusher_origin_host(o, sizeof(o) - 1, &host, &len), 0);  \
    assert_int_equal(len, sizeof(want) - 1);                                  \
    assert_memory_equal(host, want, len)

    HOST_OF("https://app.example.com", "app.example.com");
    HOST_OF("http://App.Example.com:8080", "App.Example.com");
    HOST_OF("https://example.com/", "example.com");
    HOST_OF("http://[::1]:8080", "[::1]");
    HOST_OF("chrome-extension://abc", "abc");

#undef HOST_OF

    assert_int_equal(pusher_origin_host("null", 4, &host, &len), -1);
    assert_int_equal(pusher_origin_host("", 0, &host, &len), -1);
    assert_int_equal(pusher_origin_host("https://", 8, &host, &len), -1);
    assert_int_equal(pusher_origin_host("://x", 4, &host, &len), -1);
    assert_int_equal(pusher_origin_host("a b://x", 7, &host, &len), -1);
    assert_int_equal(pusher_origin_host("http://:80", 10, &host, &len), -1);
    assert_int_equal(pusher_origin_host("http://[::1", 11, &host, &len), -1);
}


static void
webhook_events_by_name(void **state)
{
    unsigned  n, all;

    (void) state;

    assert_int_equal(pusher_webhook_event("channel_occupied", 16),
                     PUSHER_WEBHOOK_CHANNEL_OCCUPIED);
    assert_int_equal(pusher_webhook_event("cache_miss", 10),
                     PUSHER_WEBHOOK_CACHE_MISS);
    assert_int_equal(pusher_webhook_event("cache_mis", 9), 0);
    assert_int_equal(pusher_webhook_event("cache_missx", 11), 0);
    assert_int_equal(pusher_webhook_event("", 0), 0);

    all = 0;

    for (n = 0; n < PUSHER_WEBHOOK_TYPES; n++) {
        const char  *name = pusher_webhook_event_name(n);

        assert_non_null(name);
        assert_int_equal(pusher_webhook_event(name, strlen(name)), 1u << n);
        all |= 1u << n;
    }

    assert_int_equal(all, PUSHER_WEBHOOK_ALL);
    assert_null(pusher_webhook_event_name(PUSHER_WEBHOOK_TYPES));
}


static void
host_patterns_match(void **state)
{
    (void) state;

#define MATCH(p, h)  pusher_host_match(p, sizeof(p) - 1, h, sizeof(h) - 1)

    assert_true(MATCH("*", "anything.example"));
    assert_true(MATCH("*", ""));
    assert_true(MATCH("example.com", "example.com"));
    assert_true(MATCH("example.com", "EXAMPLE.com"));
    assert_false(MATCH("example.com", "example.co"));
    assert_false(MATCH("example.com", "example.com.evil.net"));
    assert_false(MATCH("example.com", "evilexample.com"));
    assert_true(MATCH("*.example.com", "app.example.com"));
    assert_true(MATCH("*.example.com", "a.b.example.com"));
    assert_false(MATCH("*.example.com", "example.com"));
    assert_false(MATCH("*.example.com", "evilexample.com"));
    assert_false(MATCH("*.example.com", "app.example.com.evil.net"));
    assert_true(MATCH("app-*.example.com", "app-42.example.com"));
    assert_false(MATCH("app-*.example.com", "web-42.example.com"));
    assert_true(MATCH("*.*.example.com", "a.b.example.com"));
    assert_false(MATCH("", "x"));
    assert_true(MATCH("", ""));

    /* bytes >= 0x80 (an IDN host not in punycode) compare as they are */
    assert_true(MATCH("caf\xc3\xa9.example", "caf\xc3\xa9.example"));
    assert_true(MATCH("caf\xc3\xa9.example", "CAF\xc3\xa9.example"));
    assert_true(MATCH("*\xc5.example", "x\xc5\xc5.example"));
    assert_false(MATCH("caf\xc3\xa9.example", "caf\xc3\x89.example"));

#undef MATCH
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(parse_cases_give_type_fields_and_data),
        cmocka_unit_test(decoded_string_data_is_usable),
        cmocka_unit_test(free_is_idempotent),
        cmocka_unit_test(parse_reuses_a_message_after_free),
        cmocka_unit_test(parse_uses_only_len_bytes),
        cmocka_unit_test(builders_write_exact_bytes_and_respect_cap),
        cmocka_unit_test(error_data_decodes_to_code_and_message),
        cmocka_unit_test(json_escape_quotes_backslash_and_controls_only),
        cmocka_unit_test(json_escape_roundtrips_every_byte_below_0x80),
        cmocka_unit_test(channel_names_follow_the_sdk_regex),
        cmocka_unit_test(channel_types_by_longest_prefix),
        cmocka_unit_test(socket_ids_are_two_digit_runs),
        cmocka_unit_test(event_json_is_exact_and_sized_exactly),
        cmocka_unit_test(ring_event_bytes_are_exact),
        cmocka_unit_test(ring_event_encode_json_frame_bytes_are_exact),
        cmocka_unit_test(ring_event_roundtrips_every_header_size),
        cmocka_unit_test(ring_event_size_rejects_unrepresentable_lengths),
        cmocka_unit_test(ring_event_decode_rejects_truncated_records),
        cmocka_unit_test(ring_event_decode_rejects_corrupted_records),
        cmocka_unit_test(ring_event_decode_survives_garbage),
        cmocka_unit_test(origin_host_is_found),
        cmocka_unit_test(host_patterns_match),
        cmocka_unit_test(webhook_events_by_name)
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
