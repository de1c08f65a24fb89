/*
 * ngx-pusher: libFuzzer target for the Pusher message parser and the
 * outbound frame builders (common/pusher_proto.c).
 *
 * Input: one client text message, parsed by pusher_msg_parse() from an
 * exact-size heap copy (no NUL after it: ASan sees any read past the end),
 * with cJSON's allocations counted through cJSON_InitHooks().  Checked:
 *
 *   - the result is one of PUSHER_MSG_*; a refused message owns no memory
 *     and has only empty fields (PUSHER_MSG_BAD_DATA keeps the type of its
 *     pusher:* event, nothing else);
 *   - an input without NUL bytes is refused as PUSHER_MSG_BAD_JSON exactly
 *     when a separate cJSON parse (NUL-terminated, not length-bounded) does
 *     not give one object followed by JSON whitespace only;
 *   - every field of an accepted message is a string value of the
 *     message's own cJSON trees (root, or the decoded "data"), NUL-ended at
 *     exactly its length; an unset field is the empty string;
 *   - the type follows from the event name alone, each field comes from
 *     the member pusher_proto.h names, and "data" is decoded exactly when
 *     it is a string holding one JSON object;
 *   - the message printed back by cJSON parses to the same type and fields;
 *   - pusher_msg_free() gives every allocation back and may run twice;
 *   - the builders fed with what was parsed (subscription_succeeded of a
 *     valid channel, connection_established of a valid socket id,
 *     pusher:error quoting the event name, the HTTP API event JSON of name,
 *     channel and the raw input as data) write exactly the bytes they
 *     return into an exact-size buffer, return 0 for one byte less, and
 *     cJSON reads the same strings back out of them;
 *   - channel name, channel type and socket id rules agree with plain
 *     re-implementations; webhook event names map to their bits and back.
 *
 *   clang -fsanitize=fuzzer,address,undefined -Icommon \
 *       tests/fuzz/fuzz_msg.c common/pusher_proto.c common/pusher_ws.c \
 *       -lcjson -lcrypto
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "pusher_proto.h"
#include "fuzz_check.h"


/* "\u0001" escaped twice is 7 bytes */
#define FUZZ_ESC2_MAX     7
#define FUZZ_FRAME_MAX    512


int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


/* cJSON allocations not yet given back */
static size_t  fuzz_outstanding;


static void *
fuzz_json_malloc(size_t size)
{
    void  *p;

    p = malloc(size);

    if (p != NULL) {
        fuzz_outstanding++;
    }

    return p;
}


static void
fuzz_json_free(void *p)
{
    if (p != NULL) {
        FUZZ_CHECK(fuzz_outstanding > 0);
        fuzz_outstanding--;
        free(p);
    }
}


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    cJSON_Hooks  hooks;

    hooks.malloc_fn = fuzz_json_malloc;
    hooks.free_fn = fuzz_json_free;

    cJSON_InitHooks(&hooks);

    return 0;
}


static int
fuzz_str_is(const pusher_str_t *s, const char *c)
{
    return s->len == strlen(c) && memcmp(s->data, c, s->len) == 0;
}


static int
fuzz_str_empty(const pusher_str_t *s)
{
    return s->data != NULL && s->len == 0 && s->data[0] == '\0';
}


/* 1 if s is the valuestring of a node of the tree */
static int
fuzz_tree_has(const cJSON *node, const char *s)
{
    const cJSON  *child;

    for ( /* void */ ; node != NULL; node = node->next) {

        if (cJSON_IsString(node) && node->valuestring == s) {
            return 1;
        }

        child = node->child;

        if (child != NULL && fuzz_tree_has(child, s)) {
            return 1;
        }
    }

    return 0;
}


/* a set field: a string of the message's trees, NUL-ended at its length */
static void
fuzz_check_field(const pusher_msg_t *m, const pusher_str_t *s)
{
    FUZZ_CHECK(s->data != NULL);
    FUZZ_CHECK(strlen(s->data) == s->len);

    if (s->len == 0) {
        return;
    }

    FUZZ_CHECK(fuzz_tree_has(m->root, s->data)
               || (m->decoded != NULL && fuzz_tree_has(m->decoded, s->data)));
}


/* the string member name of obj, or NULL */
static const char *
fuzz_member_str(const cJSON *obj, const char *name)
{
    const cJSON  *item;

    if (!cJSON_IsObject(obj)) {
        return NULL;
    }

    item = cJSON_GetObjectItemCaseSensitive(obj, name);

    return cJSON_IsString(item) ? item->valuestring : NULL;
}


static void
fuzz_check_member(const pusher_str_t *s, const cJSON *obj, const char *name)
{
    const char  *v;

    v = fuzz_member_str(obj, name);

    if (v == NULL) {
        FUZZ_CHECK(fuzz_str_empty(s));

    } else {
        FUZZ_CHECK(s->data == v);
    }
}


/*
 * The whole text is one JSON value and whitespace: cJSON parses a
 * NUL-terminated copy, trailing bytes are checked here.
 */
static cJSON *
fuzz_json_whole(const char *s)
{
    cJSON       *root;
    const char  *end;

    end = NULL;
    root = cJSON_ParseWithOpts(s, &end, 0);

    if (root == NULL) {
        return NULL;
    }

    for ( /* void */ ; *end; end++) {
        if (*end != ' ' && *end != '\t' && *end != '\r' && *end != '\n') {
            cJSON_Delete(root);
            return NULL;
        }
    }

    return root;
}


static pusher_msg_type_e
fuzz_expected_type(const pusher_str_t *event)
{
    size_t  i;

    static const struct {
        const char         *name;
        pusher_msg_type_e   type;
    } events[] = {
        { "pusher:ping", PUSHER_MSG_PING },
        { "pusher:pong", PUSHER_MSG_PONG },
        { "pusher:subscribe", PUSHER_MSG_SUBSCRIBE },
        { "pusher:unsubscribe", PUSHER_MSG_UNSUBSCRIBE },
        { "pusher:signin", PUSHER_MSG_SIGNIN }
    };

    for (i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
        if (fuzz_str_is(event, events[i].name)) {
            return events[i].type;
        }
    }

    if (event->len > 7 && memcmp(event->data, "client-", 7) == 0) {
        return PUSHER_MSG_CLIENT_EVENT;
    }

    return PUSHER_MSG_UNKNOWN;
}


static void
fuzz_check_refused(const pusher_msg_t *m, int rc)
{
    FUZZ_CHECK(m->root == NULL && m->decoded == NULL && m->data == NULL);
    FUZZ_CHECK(fuzz_str_empty(&m->event));
    FUZZ_CHECK(fuzz_str_empty(&m->channel));
    FUZZ_CHECK(fuzz_str_empty(&m->auth));
    FUZZ_CHECK(fuzz_str_empty(&m->channel_data));
    FUZZ_CHECK(fuzz_str_empty(&m->user_data));
    FUZZ_CHECK(fuzz_outstanding == 0);

    if (rc == PUSHER_MSG_BAD_DATA) {
        FUZZ_CHECK(m->type == PUSHER_MSG_SUBSCRIBE
                   || m->type == PUSHER_MSG_UNSUBSCRIBE
                   || m->type == PUSHER_MSG_SIGNIN);

    } else {
        FUZZ_CHECK(m->type == PUSHER_MSG_UNKNOWN);
    }
}


static void
fuzz_check_accepted(const pusher_msg_t *m)
{
    const char   *s;
    const cJSON  *root, *item, *data, *decoded;

    root = m->root;

    FUZZ_CHECK(cJSON_IsObject(root));

    fuzz_check_field(m, &m->event);
    fuzz_check_field(m, &m->channel);
    fuzz_check_field(m, &m->auth);
    fuzz_check_field(m, &m->channel_data);
    fuzz_check_field(m, &m->user_data);

    s = fuzz_member_str(root, "event");
    FUZZ_CHECK(s != NULL && s == m->event.data);

    FUZZ_CHECK(m->type == fuzz_expected_type(&m->event));

    /* "data": decoded exactly when it is a string holding an object */
    item = cJSON_GetObjectItemCaseSensitive(root, "data");
    decoded = NULL;

    if (cJSON_IsString(item)) {
        decoded = fuzz_json_whole(item->valuestring);

        if (!cJSON_IsObject(decoded)) {
            cJSON_Delete((cJSON *) decoded);
            decoded = NULL;
        }
    }

    if (decoded != NULL) {
        FUZZ_CHECK(m->decoded != NULL && m->data == m->decoded);
        FUZZ_CHECK(cJSON_Compare(decoded, m->decoded, 1));
        cJSON_Delete((cJSON *) decoded);

    } else {
        FUZZ_CHECK(m->decoded == NULL && m->data == item);
    }

    data = m->data;

    switch (m->type) {

    case PUSHER_MSG_SUBSCRIBE:
        FUZZ_CHECK(cJSON_IsObject(data));
        fuzz_check_member(&m->channel, data, "channel");
        FUZZ_CHECK(fuzz_member_str(data, "channel") != NULL);
        fuzz_check_member(&m->auth, data, "auth");
        fuzz_check_member(&m->channel_data, data, "channel_data");
        FUZZ_CHECK(fuzz_str_empty(&m->user_data));
        break;

    case PUSHER_MSG_UNSUBSCRIBE:
        FUZZ_CHECK(cJSON_IsObject(data));
        fuzz_check_member(&m->channel, data, "channel");
        FUZZ_CHECK(fuzz_member_str(data, "channel") != NULL);
        FUZZ_CHECK(fuzz_str_empty(&m->auth));
        FUZZ_CHECK(fuzz_str_empty(&m->channel_data));
        FUZZ_CHECK(fuzz_str_empty(&m->user_data));
        break;

    case PUSHER_MSG_SIGNIN:
        FUZZ_CHECK(cJSON_IsObject(data));
        FUZZ_CHECK(fuzz_member_str(data, "auth") != NULL);
        FUZZ_CHECK(fuzz_member_str(data, "user_data") != NULL);
        fuzz_check_member(&m->auth, data, "auth");
        fuzz_check_member(&m->user_data, data, "user_data");
        FUZZ_CHECK(fuzz_str_empty(&m->channel));
        FUZZ_CHECK(fuzz_str_empty(&m->channel_data));
        break;

    case PUSHER_MSG_CLIENT_EVENT:
        fuzz_check_member(&m->channel, root, "channel");
        FUZZ_CHECK(fuzz_str_empty(&m->auth));
        FUZZ_CHECK(fuzz_str_empty(&m->channel_data));
        FUZZ_CHECK(fuzz_str_empty(&m->user_data));
        break;

    default:
        FUZZ_CHECK(fuzz_str_empty(&m->channel));
        FUZZ_CHECK(fuzz_str_empty(&m->auth));
        FUZZ_CHECK(fuzz_str_empty(&m->channel_data));
        FUZZ_CHECK(fuzz_str_empty(&m->user_data));
        break;
    }
}


/* the tree printed by cJSON is the same message */
static void
fuzz_reparse(const pusher_msg_t *m)
{
    int            rc;
    char          *text;
    pusher_msg_t   again;

    text = cJSON_PrintUnformatted(m->root);
    if (text == NULL) {
        return;
    }

    rc = pusher_msg_parse(&again, (const uint8_t *) text, strlen(text));

    FUZZ_CHECK(rc == PUSHER_MSG_OK);
    FUZZ_CHECK(again.type == m->type);
    FUZZ_CHECK(fuzz_str_eq(&again.event, &m->event));
    FUZZ_CHECK(fuzz_str_eq(&again.channel, &m->channel));
    FUZZ_CHECK(fuzz_str_eq(&again.auth, &m->auth));
    FUZZ_CHECK(fuzz_str_eq(&again.channel_data, &m->channel_data));
    FUZZ_CHECK(fuzz_str_eq(&again.user_data, &m->user_data));
    FUZZ_CHECK((again.decoded == NULL) == (m->decoded == NULL));
    FUZZ_CHECK((again.data == NULL) == (m->data == NULL));

    pusher_msg_free(&again);
    cJSON_free(text);
}


/* the same rules written out plainly */

static int
fuzz_channel_char(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || strchr("-_=@,.;", c) != NULL;
}


static int
fuzz_channel_valid(const char *s, size_t len)
{
    size_t  i;

    if (len > PUSHER_CHANNEL_MAX) {
        return 0;
    }

    i = (len > 0 && s[0] == '#');

    if (i == len) {
        return 0;
    }

    for ( /* void */ ; i < len; i++) {
        if (s[i] == '\0' || !fuzz_channel_char((uint8_t) s[i])) {
            return 0;
        }
    }

    return 1;
}


static int
fuzz_prefix(const char *s, size_t len, const char *prefix)
{
    return len >= strlen(prefix) && memcmp(s, prefix, strlen(prefix)) == 0;
}


static pusher_channel_type_e
fuzz_channel_type(const char *s, size_t len)
{
    if (fuzz_prefix(s, len, "private-encrypted-")) {
        return PUSHER_CHANNEL_PRIVATE_ENCRYPTED;
    }

    if (fuzz_prefix(s, len, "private-cache-")) {
        return PUSHER_CHANNEL_PRIVATE_CACHE;
    }

    if (fuzz_prefix(s, len, "private-")) {
        return PUSHER_CHANNEL_PRIVATE;
    }

    if (fuzz_prefix(s, len, "presence-cache-")) {
        return PUSHER_CHANNEL_PRESENCE_CACHE;
    }

    if (fuzz_prefix(s, len, "presence-")) {
        return PUSHER_CHANNEL_PRESENCE;
    }

    if (fuzz_prefix(s, len, "cache-")) {
        return PUSHER_CHANNEL_CACHE;
    }

    if (fuzz_prefix(s, len, "#server-to-user-")) {
        return PUSHER_CHANNEL_SERVER_TO_USER;
    }

    return PUSHER_CHANNEL_PUBLIC;
}


/* ^\d{1,20}\.\d{1,20}$ */
static int
fuzz_socket_id_valid(const char *s, size_t len)
{
    size_t  i, a, b;

    for (a = 0; a < len && s[a] >= '0' && s[a] <= '9'; a++) { /* void */ }

    if (a == 0 || a > 20 || a == len || s[a] != '.') {
        return 0;
    }

    for (i = a + 1; i < len && s[i] >= '0' && s[i] <= '9'; i++) { /* void */ }

    b = i - a - 1;

    return i == len && b > 0 && b <= 20;
}


static void
fuzz_rules(const char *s, size_t len)
{
    unsigned                bit, n;
    pusher_channel_type_e   type;

    FUZZ_CHECK(!!pusher_channel_name_valid(s, len)
               == fuzz_channel_valid(s, len));

    type = pusher_channel_type(s, len);
    FUZZ_CHECK(type == fuzz_channel_type(s, len));
    FUZZ_CHECK(pusher_channel_needs_auth(type)
               == (type == PUSHER_CHANNEL_PRIVATE
                   || type == PUSHER_CHANNEL_PRIVATE_ENCRYPTED
                   || type == PUSHER_CHANNEL_PRIVATE_CACHE
                   || type == PUSHER_CHANNEL_PRESENCE
                   || type == PUSHER_CHANNEL_PRESENCE_CACHE));

    FUZZ_CHECK(!!pusher_socket_id_valid(s, len)
               == fuzz_socket_id_valid(s, len));

    bit = pusher_webhook_event(s, len);

    for (n = 0; n < PUSHER_WEBHOOK_TYPES; n++) {
        if (bit == (1u << n)) {
            break;
        }
    }

    if (bit == 0) {
        for (n = 0; n < PUSHER_WEBHOOK_TYPES; n++) {
            FUZZ_CHECK(strlen(pusher_webhook_event_name(n)) != len
                       || memcmp(pusher_webhook_event_name(n), s, len) != 0);
        }

    } else {
        FUZZ_CHECK(n < PUSHER_WEBHOOK_TYPES);
        FUZZ_CHECK(strlen(pusher_webhook_event_name(n)) == len
                   && memcmp(pusher_webhook_event_name(n), s, len) == 0);
    }

    FUZZ_CHECK(pusher_webhook_event_name(PUSHER_WEBHOOK_TYPES) == NULL);
}


/*
 * A builder's output, n bytes in big: the same bytes again into an
 * exact-size buffer, and 0 with one byte less.  Returns the exact copy
 * (NUL-terminated for cJSON, the NUL outside what the builder may write).
 */
typedef size_t (*fuzz_builder_pt)(uint8_t *buf, size_t cap, const void *ctx);


static char *
fuzz_build_exact(fuzz_builder_pt build, const void *ctx, size_t max)
{
    char     *text;
    size_t    n;
    uint8_t  *big, *exact, *less;

    big = malloc(max);
    FUZZ_CHECK(big != NULL);

    n = build(big, max, ctx);
    FUZZ_CHECK(n > 0 && n <= max);

    exact = malloc(n);
    less = malloc(n - 1 + (n == 1));
    text = malloc(n + 1);
    FUZZ_CHECK(exact != NULL && less != NULL && text != NULL);

    FUZZ_CHECK(build(exact, n, ctx) == n);
    FUZZ_CHECK(memcmp(exact, big, n) == 0);
    FUZZ_CHECK(build(less, n - 1, ctx) == 0);

    memcpy(text, exact, n);
    text[n] = '\0';

    free(big);
    free(exact);
    free(less);

    return text;
}


typedef struct {
    const pusher_str_t  *str;
    int                  code;
    unsigned             timeout;
} fuzz_build_ctx_t;


static size_t
fuzz_build_subscribed(uint8_t *buf, size_t cap, const void *ctx)
{
    const fuzz_build_ctx_t  *c = ctx;

    return pusher_build_subscription_succeeded(buf, cap, c->str->data,
                                               c->str->len);
}


static size_t
fuzz_build_established(uint8_t *buf, size_t cap, const void *ctx)
{
    const fuzz_build_ctx_t  *c = ctx;

    return pusher_build_connection_established(buf, cap, c->str->data,
                                               c->str->len, c->timeout);
}


static size_t
fuzz_build_error(uint8_t *buf, size_t cap, const void *ctx)
{
    const fuzz_build_ctx_t  *c = ctx;

    return pusher_build_error(buf, cap, c->code, c->str->data);
}


/* root."data" is a string holding an object: that object */
static cJSON *
fuzz_inner(const cJSON *root)
{
    const char  *s;

    s = fuzz_member_str(root, "data");
    FUZZ_CHECK(s != NULL);

    return cJSON_Parse(s);
}


static void
fuzz_builders(const pusher_msg_t *m, const uint8_t *data, size_t size)
{
    int                c;
    char              *text;
    cJSON             *root, *inner;
    size_t             n, k;
    uint8_t           *buf;
    const char        *s;
    fuzz_build_ctx_t   ctx;

    ctx.code = 0;
    ctx.timeout = 0;

    for (k = 0; k < size && k < 4; k++) {
        ctx.code = (int) ((unsigned) ctx.code << 8 | data[k]);
        ctx.timeout = ctx.timeout << 8 | data[size - 1 - k];
    }

    /* subscription_succeeded, for a channel the worker accepted */
    if (pusher_channel_name_valid(m->channel.data, m->channel.len)) {
        ctx.str = &m->channel;
        text = fuzz_build_exact(fuzz_build_subscribed, &ctx, FUZZ_FRAME_MAX);

        root = cJSON_Parse(text);
        FUZZ_CHECK(root != NULL);
        s = fuzz_member_str(root, "event");
        FUZZ_CHECK(s && strcmp(s, "pusher_internal:subscription_succeeded")
                        == 0);
        s = fuzz_member_str(root, "channel");
        FUZZ_CHECK(s && strcmp(s, m->channel.data) == 0);
        s = fuzz_member_str(root, "data");
        FUZZ_CHECK(s && strcmp(s, "{}") == 0);

        cJSON_Delete(root);
        free(text);
    }

    /* connection_established, for a string that passes as a socket id */
    if (pusher_socket_id_valid(m->auth.data, m->auth.len)) {
        ctx.str = &m->auth;
        text = fuzz_build_exact(fuzz_build_established, &ctx, FUZZ_FRAME_MAX);

        root = cJSON_Parse(text);
        FUZZ_CHECK(root != NULL);
        s = fuzz_member_str(root, "event");
        FUZZ_CHECK(s && strcmp(s, "pusher:connection_established") == 0);

        inner = fuzz_inner(root);
        FUZZ_CHECK(inner != NULL);
        s = fuzz_member_str(inner, "socket_id");
        FUZZ_CHECK(s && strcmp(s, m->auth.data) == 0);
        FUZZ_CHECK(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(
                       inner, "activity_timeout")));
        FUZZ_CHECK(cJSON_GetObjectItemCaseSensitive(inner, "activity_timeout")
                   ->valuedouble == (double) ctx.timeout);

        cJSON_Delete(inner);
        cJSON_Delete(root);
        free(text);
    }

    /* pusher:error quoting the event name, free text escaped twice */
    ctx.str = &m->event;
    text = fuzz_build_exact(fuzz_build_error, &ctx,
                            FUZZ_FRAME_MAX + FUZZ_ESC2_MAX * m->event.len);

    root = cJSON_Parse(text);
    FUZZ_CHECK(root != NULL);
    s = fuzz_member_str(root, "event");
    FUZZ_CHECK(s && strcmp(s, "pusher:error") == 0);

    inner = fuzz_inner(root);
    FUZZ_CHECK(inner != NULL);
    s = fuzz_member_str(inner, "message");
    FUZZ_CHECK(s && strcmp(s, m->event.data) == 0);
    FUZZ_CHECK(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(inner,
                                                               "code")));
    FUZZ_CHECK(cJSON_GetObjectItemCaseSensitive(inner, "code")->valuedouble
               == (double) ctx.code);

    cJSON_Delete(inner);
    cJSON_Delete(root);
    free(text);

    /* the HTTP API event: name, channel and the raw input as data */
    n = pusher_event_json_size((const uint8_t *) m->event.data, m->event.len,
                               (const uint8_t *) m->channel.data,
                               m->channel.len, data, size);

    buf = malloc(n + 1);
    FUZZ_CHECK(buf != NULL);

    FUZZ_CHECK(pusher_event_json(buf, (const uint8_t *) m->event.data,
                                 m->event.len,
                                 (const uint8_t *) m->channel.data,
                                 m->channel.len, data, size)
               == n);

    FUZZ_CHECK(pusher_json_escape(NULL, data, size)
               == n - pusher_event_json_size((const uint8_t *) m->event.data,
                                             m->event.len,
                                             (const uint8_t *) m->channel.data,
                                             m->channel.len,
                                             (const uint8_t *) "", 0));

    for (k = 0; k < n; k++) {
        /* escaped: no control character is left raw */
        FUZZ_CHECK(buf[k] >= 0x20);
    }

    buf[n] = '\0';

    root = cJSON_Parse((char *) buf);
    FUZZ_CHECK(root != NULL);
    s = fuzz_member_str(root, "event");
    FUZZ_CHECK(s && strcmp(s, m->event.data) == 0);
    s = fuzz_member_str(root, "channel");
    FUZZ_CHECK(s && strcmp(s, m->channel.data) == 0);
    s = fuzz_member_str(root, "data");
    FUZZ_CHECK(s != NULL);

    /* cJSON cuts a string at an escaped NUL */
    for (k = 0; k < size && data[k] != '\0'; k++) { /* void */ }
    FUZZ_CHECK(strlen(s) == k && memcmp(s, data, k) == 0);

    c = cJSON_GetArraySize(root);
    FUZZ_CHECK(c == 3);

    cJSON_Delete(root);
    free(buf);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int            rc;
    char          *text;
    cJSON         *model;
    uint8_t       *copy;
    pusher_msg_t   m;

    copy = malloc(size + !size);
    FUZZ_CHECK(copy != NULL);
    memcpy(copy, data, size);

    fuzz_outstanding = 0;

    rc = pusher_msg_parse(&m, copy, size);

    FUZZ_CHECK(rc == PUSHER_MSG_OK || rc == PUSHER_MSG_BAD_JSON
               || rc == PUSHER_MSG_NO_EVENT || rc == PUSHER_MSG_BAD_DATA);

    /* a second opinion on "one JSON object", for inputs without NUL */
    if (size > 0 && memchr(data, '\0', size) == NULL) {
        text = malloc(size + 1);
        FUZZ_CHECK(text != NULL);
        memcpy(text, data, size);
        text[size] = '\0';

        model = fuzz_json_whole(text);
        FUZZ_CHECK((rc == PUSHER_MSG_BAD_JSON) == !cJSON_IsObject(model));

        cJSON_Delete(model);
        free(text);
    }

    if (rc == PUSHER_MSG_OK) {
        FUZZ_CHECK(m.root != NULL && fuzz_outstanding > 0);

        fuzz_check_accepted(&m);
        fuzz_reparse(&m);
        fuzz_rules(m.channel.data, m.channel.len);
        fuzz_rules(m.event.data, m.event.len);
        fuzz_builders(&m, data, size);

    } else {
        fuzz_check_refused(&m, rc);
    }

    pusher_msg_free(&m);
    FUZZ_CHECK(fuzz_outstanding == 0);
    fuzz_check_refused(&m, PUSHER_MSG_BAD_JSON);

    /* a reset message may be freed again, as the worker does on errors */
    pusher_msg_free(&m);
    FUZZ_CHECK(fuzz_outstanding == 0);

    fuzz_rules((const char *) copy, size);

    free(copy);

    return 0;
}
