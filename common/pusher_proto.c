/*
 * ngx-pusher: Pusher protocol 7 messages and channel rules.  No I/O.
 */

#include <ctype.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "pusher_proto.h"
#include "pusher_ws.h"


#define PUSHER_STR_LITERAL(s)  (const uint8_t *) s, sizeof(s) - 1

/* longest escape of one byte: "\u00XX" */
#define PUSHER_JSON_ESC_MAX    6

/* the fixed parts of pusher_event_json(), see pusher_event_json_size() */
#define PUSHER_EVENT_JSON_HEAD      "{\"event\":\""
#define PUSHER_EVENT_JSON_CHANNEL   "\",\"channel\":\""
#define PUSHER_EVENT_JSON_DATA      "\",\"data\":\""
#define PUSHER_EVENT_JSON_TAIL      "\"}"


/*
 * A bounded output cursor for the frame builders: once a write does not
 * fit, "full" is set and nothing more is written, so a builder checks the
 * result once at the end.
 */
typedef struct {
    uint8_t  *pos;
    uint8_t  *end;
    int       full;
} pusher_out_t;


static void pusher_msg_reset(pusher_msg_t *m);
static int pusher_json_str(const cJSON *item, pusher_str_t *s);
static int pusher_json_opt_str(const cJSON *obj, const char *name,
    pusher_str_t *s);
static cJSON *pusher_json_parse(const char *json, size_t len);
static size_t pusher_json_escape_byte(uint8_t *dst, uint8_t c);
static size_t pusher_json_escape2(uint8_t *dst, const uint8_t *src,
    size_t len);
static void pusher_out_raw(pusher_out_t *o, const uint8_t *s, size_t n);
static void pusher_out_escaped(pusher_out_t *o, const uint8_t *s, size_t n,
    int twice);
static void pusher_out_uint(pusher_out_t *o, uint64_t v);
static size_t pusher_out_done(pusher_out_t *o, uint8_t *buf);


/*
 * Escape class of every byte: 0 is copied, 'u' is written as \u00XX, any
 * other value is the character after the backslash.
 */
static const uint8_t  pusher_json_esc[256] = {
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
    'b', 't', 'n', 'u', 'f', 'r', 'u', 'u',
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
    0, 0, '"', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '\\', 0, 0, 0
    /* 0x60 .. 0xff: 0 */
};


/* channel name characters after the optional leading '#' */
static const uint8_t  pusher_channel_chars[256] = {
    /* 0x00 .. 0x2b */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 0,                                   /* , - . / */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1,                 /* 0 .. 9 */
    0, 1, 0, 1, 0, 0,                             /* : ; < = > ? */
    1,                                            /* @ */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,        /* A .. M */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,        /* N .. Z */
    0, 0, 0, 0, 1, 0,                             /* [ \ ] ^ _ ` */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,        /* a .. m */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1         /* n .. z */
    /* 0x7b .. 0xff: 0 */
};


static const char  pusher_hex[] = "0123456789abcdef";


/* the empty string every unset pusher_str_t points to */
static const char  pusher_empty[] = "";


int
pusher_msg_parse(pusher_msg_t *m, const uint8_t *json, size_t len)
{
    cJSON              *root, *event, *data, *channel, *decoded;
    pusher_str_t        name;
    pusher_msg_type_e   type;

    pusher_msg_reset(m);

    root = pusher_json_parse((const char *) json, len);
    if (root == NULL || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return PUSHER_MSG_BAD_JSON;
    }

    event = cJSON_GetObjectItemCaseSensitive(root, "event");
    if (pusher_json_str(event, &name) != 0) {
        cJSON_Delete(root);
        return PUSHER_MSG_NO_EVENT;
    }

    m->root = root;
    m->event = name;

    data = cJSON_GetObjectItemCaseSensitive(root, "data");

    /*
     * A string holding a JSON object is used as that object, as Reverb and
     * pusher-js do; any other string stays a string.
     */
    if (cJSON_IsString(data)) {
        decoded = pusher_json_parse(data->valuestring,
                                    strlen(data->valuestring));
        if (cJSON_IsObject(decoded)) {
            m->decoded = decoded;
            data = decoded;

        } else {
            cJSON_Delete(decoded);
        }
    }

    m->data = data;

    if (name.len > 7 && memcmp(name.data, "pusher:", 7) == 0) {

        if (strcmp(name.data, "pusher:ping") == 0) {
            type = PUSHER_MSG_PING;

        } else if (strcmp(name.data, "pusher:pong") == 0) {
            type = PUSHER_MSG_PONG;

        } else if (strcmp(name.data, "pusher:subscribe") == 0) {
            type = PUSHER_MSG_SUBSCRIBE;

        } else if (strcmp(name.data, "pusher:unsubscribe") == 0) {
            type = PUSHER_MSG_UNSUBSCRIBE;

        } else if (strcmp(name.data, "pusher:signin") == 0) {
            type = PUSHER_MSG_SIGNIN;

        } else {
            type = PUSHER_MSG_UNKNOWN;
        }

    } else if (name.len > 7 && memcmp(name.data, "client-", 7) == 0) {
        type = PUSHER_MSG_CLIENT_EVENT;

    } else {
        type = PUSHER_MSG_UNKNOWN;
    }

    m->type = type;

    switch (type) {

    case PUSHER_MSG_SUBSCRIBE:
        if (!cJSON_IsObject(data)
            || pusher_json_str(cJSON_GetObjectItemCaseSensitive(data,
                                                                "channel"),
                               &m->channel)
               != 0
            || pusher_json_opt_str(data, "auth", &m->auth) != 0
            || pusher_json_opt_str(data, "channel_data", &m->channel_data)
               != 0)
        {
            goto bad_data;
        }

        break;

    case PUSHER_MSG_UNSUBSCRIBE:
        if (!cJSON_IsObject(data)
            || pusher_json_str(cJSON_GetObjectItemCaseSensitive(data,
                                                                "channel"),
                               &m->channel)
               != 0)
        {
            goto bad_data;
        }

        break;

    case PUSHER_MSG_SIGNIN:
        if (!cJSON_IsObject(data)
            || pusher_json_str(cJSON_GetObjectItemCaseSensitive(data, "auth"),
                               &m->auth)
               != 0
            || pusher_json_str(cJSON_GetObjectItemCaseSensitive(data,
                                                                "user_data"),
                               &m->user_data)
               != 0)
        {
            goto bad_data;
        }

        break;

    case PUSHER_MSG_CLIENT_EVENT:
        /* a missing channel stays empty: the caller rejects the name */
        channel = cJSON_GetObjectItemCaseSensitive(root, "channel");
        (void) pusher_json_str(channel, &m->channel);
        break;

    default:
        break;
    }

    return PUSHER_MSG_OK;

bad_data:

    /* the type is kept so that the caller can answer the right event */
    pusher_msg_free(m);
    m->type = type;

    return PUSHER_MSG_BAD_DATA;
}


void
pusher_msg_free(pusher_msg_t *m)
{
    cJSON_Delete(m->decoded);
    cJSON_Delete(m->root);

    pusher_msg_reset(m);
}


static void
pusher_msg_reset(pusher_msg_t *m)
{
    pusher_str_t  empty;

    empty.data = pusher_empty;
    empty.len = 0;

    m->type = PUSHER_MSG_UNKNOWN;
    m->event = empty;
    m->channel = empty;
    m->auth = empty;
    m->channel_data = empty;
    m->user_data = empty;
    m->data = NULL;
    m->root = NULL;
    m->decoded = NULL;
}


/*
 * The string ends at the first NUL: a JSON string with \u0000 is cut
 * there, which no valid name or signature contains anyway.
 */
static int
pusher_json_str(const cJSON *item, pusher_str_t *s)
{
    if (!cJSON_IsString(item) || item->valuestring == NULL) {
        return -1;
    }

    s->data = item->valuestring;
    s->len = strlen(item->valuestring);

    return 0;
}


/* an optional string member: absent and null leave s empty */
static int
pusher_json_opt_str(const cJSON *obj, const char *name, pusher_str_t *s)
{
    const cJSON  *item;

    item = cJSON_GetObjectItemCaseSensitive(obj, name);

    if (item == NULL || cJSON_IsNull(item)) {
        return 0;
    }

    return pusher_json_str(item, s);
}


/* a whole JSON text: anything but whitespace after the value is an error */
static cJSON *
pusher_json_parse(const char *json, size_t len)
{
    cJSON       *root;
    const char  *end, *last;

    if (len == 0) {
        return NULL;
    }

    end = NULL;
    root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (root == NULL) {
        return NULL;
    }

    last = json + len;

    if (end == NULL || end < json || end > last) {
        cJSON_Delete(root);
        return NULL;
    }

    while (end < last) {
        if (*end != ' ' && *end != '\t' && *end != '\r' && *end != '\n') {
            cJSON_Delete(root);
            return NULL;
        }

        end++;
    }

    return root;
}


int
pusher_channel_name_valid(const char *name, size_t len)
{
    size_t  i;

    if (len == 0 || len > PUSHER_CHANNEL_MAX) {
        return 0;
    }

    i = (name[0] == '#') ? 1 : 0;

    if (i == len) {
        return 0;
    }

    for ( /* void */ ; i < len; i++) {
        if (!pusher_channel_chars[(uint8_t) name[i]]) {
            return 0;
        }
    }

    return 1;
}


pusher_channel_type_e
pusher_channel_type(const char *name, size_t len)
{
    static const struct {
        const char             *prefix;
        size_t                  len;
        pusher_channel_type_e   type;
    } prefixes[] = {
        /* a prefix comes before every shorter prefix of itself */
        { "private-encrypted-", 18, PUSHER_CHANNEL_PRIVATE_ENCRYPTED },
        { "private-cache-", 14, PUSHER_CHANNEL_PRIVATE_CACHE },
        { "private-", 8, PUSHER_CHANNEL_PRIVATE },
        { "presence-cache-", 15, PUSHER_CHANNEL_PRESENCE_CACHE },
        { "presence-", 9, PUSHER_CHANNEL_PRESENCE },
        { "cache-", 6, PUSHER_CHANNEL_CACHE },
        { "#server-to-user-", 16, PUSHER_CHANNEL_SERVER_TO_USER }
    };

    size_t  i;

    for (i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        if (len >= prefixes[i].len
            && memcmp(name, prefixes[i].prefix, prefixes[i].len) == 0)
        {
            return prefixes[i].type;
        }
    }

    return PUSHER_CHANNEL_PUBLIC;
}


int
pusher_channel_needs_auth(pusher_channel_type_e type)
{
    switch (type) {

    case PUSHER_CHANNEL_PRIVATE:
    case PUSHER_CHANNEL_PRIVATE_ENCRYPTED:
    case PUSHER_CHANNEL_PRIVATE_CACHE:
    case PUSHER_CHANNEL_PRESENCE:
    case PUSHER_CHANNEL_PRESENCE_CACHE:
        return 1;

    default:
        return 0;
    }
}


/* two runs of 1 .. 20 digits around one '.' */
int
pusher_socket_id_valid(const char *s, size_t len)
{
    size_t  i, digits, dots;

    if (len < 3 || len > PUSHER_SOCKET_ID_MAX) {
        return 0;
    }

    digits = 0;
    dots = 0;

    for (i = 0; i < len; i++) {

        if (s[i] >= '0' && s[i] <= '9') {
            if (++digits > 20) {
                return 0;
            }

            continue;
        }

        if (s[i] != '.' || digits == 0 || ++dots > 1) {
            return 0;
        }

        digits = 0;
    }

    return dots == 1 && digits > 0;
}


size_t
pusher_json_escape(uint8_t *dst, const uint8_t *src, size_t len)
{
    size_t          n, run;
    const uint8_t  *end;

    n = 0;
    end = src + len;

    while (src < end) {

        /* copy runs of plain bytes in one go */
        for (run = 0; src + run < end && pusher_json_esc[src[run]] == 0;
             run++)
        {
            /* void */
        }

        if (run) {
            if (dst) {
                memcpy(dst + n, src, run);
            }

            n += run;
            src += run;
            continue;
        }

        n += pusher_json_escape_byte(dst ? dst + n : NULL, *src++);
    }

    return n;
}


/* one byte that needs escaping; dst == NULL only computes the length */
static size_t
pusher_json_escape_byte(uint8_t *dst, uint8_t c)
{
    uint8_t  e;

    e = pusher_json_esc[c];

    if (e == 0) {
        if (dst) {
            dst[0] = c;
        }

        return 1;
    }

    if (e != 'u') {
        if (dst) {
            dst[0] = '\\';
            dst[1] = e;
        }

        return 2;
    }

    if (dst) {
        dst[0] = '\\';
        dst[1] = 'u';
        dst[2] = '0';
        dst[3] = '0';
        dst[4] = pusher_hex[c >> 4];
        dst[5] = pusher_hex[c & 0xf];
    }

    return PUSHER_JSON_ESC_MAX;
}


/*
 * Escape twice: for text inside a JSON string that is itself the value of
 * a JSON string ("data" of pusher:error).
 */
static size_t
pusher_json_escape2(uint8_t *dst, const uint8_t *src, size_t len)
{
    size_t   n, i, k;
    uint8_t  once[PUSHER_JSON_ESC_MAX];

    n = 0;

    for (i = 0; i < len; i++) {
        k = pusher_json_escape_byte(once, src[i]);
        n += pusher_json_escape(dst ? dst + n : NULL, once, k);
    }

    return n;
}


size_t
pusher_build_connection_established(uint8_t *buf, size_t cap,
    const char *socket_id, size_t socket_id_len, unsigned activity_timeout)
{
    pusher_out_t  o;

    o.pos = buf;
    o.end = buf + cap;
    o.full = 0;

    pusher_out_raw(&o, PUSHER_STR_LITERAL(
        "{\"event\":\"pusher:connection_established\","
        "\"data\":\"{\\\"socket_id\\\":\\\""));
    pusher_out_raw(&o, (const uint8_t *) socket_id, socket_id_len);
    pusher_out_raw(&o, PUSHER_STR_LITERAL("\\\",\\\"activity_timeout\\\":"));
    pusher_out_uint(&o, activity_timeout);
    pusher_out_raw(&o, PUSHER_STR_LITERAL("}\"}"));

    return pusher_out_done(&o, buf);
}


size_t
pusher_build_error(uint8_t *buf, size_t cap, int code, const char *message)
{
    pusher_out_t  o;

    o.pos = buf;
    o.end = buf + cap;
    o.full = 0;

    pusher_out_raw(&o, PUSHER_STR_LITERAL(
        "{\"event\":\"pusher:error\",\"data\":\"{\\\"code\\\":"));

    if (code < 0) {
        pusher_out_raw(&o, PUSHER_STR_LITERAL("-"));
        pusher_out_uint(&o, (uint64_t) -(int64_t) code);

    } else {
        pusher_out_uint(&o, (uint64_t) code);
    }

    pusher_out_raw(&o, PUSHER_STR_LITERAL(",\\\"message\\\":\\\""));

    if (message) {
        pusher_out_escaped(&o, (const uint8_t *) message, strlen(message), 1);
    }

    pusher_out_raw(&o, PUSHER_STR_LITERAL("\\\"}\"}"));

    return pusher_out_done(&o, buf);
}


size_t
pusher_build_ping(uint8_t *buf, size_t cap)
{
    pusher_out_t  o;

    o.pos = buf;
    o.end = buf + cap;
    o.full = 0;

    pusher_out_raw(&o, PUSHER_STR_LITERAL(
        "{\"event\":\"pusher:ping\",\"data\":\"{}\"}"));

    return pusher_out_done(&o, buf);
}


size_t
pusher_build_pong(uint8_t *buf, size_t cap)
{
    pusher_out_t  o;

    o.pos = buf;
    o.end = buf + cap;
    o.full = 0;

    pusher_out_raw(&o, PUSHER_STR_LITERAL(
        "{\"event\":\"pusher:pong\",\"data\":\"{}\"}"));

    return pusher_out_done(&o, buf);
}


size_t
pusher_build_subscription_succeeded(uint8_t *buf, size_t cap,
    const char *channel, size_t channel_len)
{
    pusher_out_t  o;

    o.pos = buf;
    o.end = buf + cap;
    o.full = 0;

    pusher_out_raw(&o, PUSHER_STR_LITERAL(
        "{\"event\":\"pusher_internal:subscription_succeeded\","
        "\"channel\":\""));
    pusher_out_raw(&o, (const uint8_t *) channel, channel_len);
    pusher_out_raw(&o, PUSHER_STR_LITERAL("\",\"data\":\"{}\"}"));

    return pusher_out_done(&o, buf);
}


static void
pusher_out_raw(pusher_out_t *o, const uint8_t *s, size_t n)
{
    if (o->full || n == 0) {
        return;
    }

    if (o->pos == NULL || (size_t) (o->end - o->pos) < n) {
        o->full = 1;
        return;
    }

    memcpy(o->pos, s, n);
    o->pos += n;
}


static void
pusher_out_escaped(pusher_out_t *o, const uint8_t *s, size_t n, int twice)
{
    size_t  need;

    if (o->full || n == 0) {
        return;
    }

    need = twice ? pusher_json_escape2(NULL, s, n)
                 : pusher_json_escape(NULL, s, n);

    if (o->pos == NULL || (size_t) (o->end - o->pos) < need) {
        o->full = 1;
        return;
    }

    o->pos += twice ? pusher_json_escape2(o->pos, s, n)
                    : pusher_json_escape(o->pos, s, n);
}


static void
pusher_out_uint(pusher_out_t *o, uint64_t v)
{
    uint8_t  digits[20], *p;

    p = digits + sizeof(digits);

    do {
        *--p = (uint8_t) ('0' + v % 10);
        v /= 10;
    } while (v);

    pusher_out_raw(o, p, (size_t) (digits + sizeof(digits) - p));
}


static size_t
pusher_out_done(pusher_out_t *o, uint8_t *buf)
{
    if (o->full) {
        return 0;
    }

    return (size_t) (o->pos - buf);
}


size_t
pusher_event_json_size(const uint8_t *name, size_t name_len,
    const uint8_t *channel, size_t channel_len, const uint8_t *data,
    size_t data_len)
{
    return sizeof(PUSHER_EVENT_JSON_HEAD) - 1
           + pusher_json_escape(NULL, name, name_len)
           + sizeof(PUSHER_EVENT_JSON_CHANNEL) - 1
           + pusher_json_escape(NULL, channel, channel_len)
           + sizeof(PUSHER_EVENT_JSON_DATA) - 1
           + pusher_json_escape(NULL, data, data_len)
           + sizeof(PUSHER_EVENT_JSON_TAIL) - 1;
}


size_t
pusher_event_json(uint8_t *buf, const uint8_t *name, size_t name_len,
    const uint8_t *channel, size_t channel_len, const uint8_t *data,
    size_t data_len)
{
    uint8_t  *p;

    p = buf;

    memcpy(p, PUSHER_EVENT_JSON_HEAD, sizeof(PUSHER_EVENT_JSON_HEAD) - 1);
    p += sizeof(PUSHER_EVENT_JSON_HEAD) - 1;
    p += pusher_json_escape(p, name, name_len);

    memcpy(p, PUSHER_EVENT_JSON_CHANNEL,
           sizeof(PUSHER_EVENT_JSON_CHANNEL) - 1);
    p += sizeof(PUSHER_EVENT_JSON_CHANNEL) - 1;
    p += pusher_json_escape(p, channel, channel_len);

    memcpy(p, PUSHER_EVENT_JSON_DATA, sizeof(PUSHER_EVENT_JSON_DATA) - 1);
    p += sizeof(PUSHER_EVENT_JSON_DATA) - 1;
    p += pusher_json_escape(p, data, data_len);

    memcpy(p, PUSHER_EVENT_JSON_TAIL, sizeof(PUSHER_EVENT_JSON_TAIL) - 1);
    p += sizeof(PUSHER_EVENT_JSON_TAIL) - 1;

    return (size_t) (p - buf);
}


/*
 * Returns 0 for lengths a record cannot hold: an empty or too long app id,
 * no channel or more than the header counts, names of more than
 * PUSHER_CHANNEL_MAX bytes in all per channel, JSON of 4 GiB or more.
 */
size_t
pusher_ring_event_size(size_t app_id_len, size_t socket_id_len,
    size_t nchannels, size_t names_len, size_t json_len)
{
    if (app_id_len == 0 || app_id_len > PUSHER_APP_ID_MAX
        || socket_id_len > PUSHER_SOCKET_ID_MAX
        || nchannels == 0 || nchannels > PUSHER_RING_EVENT_CHANNELS_MAX
        || names_len < nchannels
        || names_len > nchannels * PUSHER_CHANNEL_MAX
        || json_len > UINT32_MAX - PUSHER_WS_HEADER_MAX - PUSHER_CHANNEL_MAX)
    {
        return 0;
    }

    return sizeof(pusher_ring_event_t) + app_id_len + socket_id_len
           + nchannels + names_len + json_len;
}


/* the record header and the strings; returns where the JSON goes */
static uint8_t *
pusher_ring_event_head(uint8_t *out, const pusher_str_t *app_id,
    const pusher_str_t *socket_id, const pusher_str_t *channels,
    size_t nchannels, size_t prefix_len, size_t suffix_len, uint8_t flags)
{
    size_t               i;
    uint8_t             *p;
    pusher_ring_event_t  ev;

    memset(&ev, 0, sizeof(pusher_ring_event_t));
    ev.prefix_len = (uint32_t) prefix_len;
    ev.suffix_len = (uint32_t) suffix_len;
    ev.app_id_len = (uint16_t) app_id->len;
    ev.channels = (uint16_t) nchannels;
    ev.socket_id_len = (uint8_t) socket_id->len;
    ev.flags = flags;

    /* out may be unaligned ring memory: the header is copied, not cast */
    p = out;
    memcpy(p, &ev, sizeof(pusher_ring_event_t));
    p += sizeof(pusher_ring_event_t);

    memcpy(p, app_id->data, app_id->len);
    p += app_id->len;

    if (socket_id->len) {
        memcpy(p, socket_id->data, socket_id->len);
        p += socket_id->len;
    }

    for (i = 0; i < nchannels; i++) {
        *p++ = (uint8_t) channels[i].len;
        memcpy(p, channels[i].data, channels[i].len);
        p += channels[i].len;
    }

    return p;
}


size_t
pusher_ring_event_encode(uint8_t *out, const pusher_str_t *app_id,
    const pusher_str_t *socket_id, const pusher_str_t *channels,
    size_t nchannels, const uint8_t *name, size_t name_len,
    const uint8_t *data, size_t data_len)
{
    size_t    i, names_len, prefix_len, suffix_len;
    uint8_t  *p;

    names_len = 0;

    for (i = 0; i < nchannels; i++) {
        if (channels[i].len == 0 || channels[i].len > PUSHER_CHANNEL_MAX) {
            return 0;
        }

        names_len += channels[i].len;
    }

    /* {"event":"<name>","channel":"  <channel>  ","data":"<data>"} */

    prefix_len = sizeof(PUSHER_EVENT_JSON_HEAD) - 1
                 + pusher_json_escape(NULL, name, name_len)
                 + sizeof(PUSHER_EVENT_JSON_CHANNEL) - 1;
    suffix_len = sizeof(PUSHER_EVENT_JSON_DATA) - 1
                 + pusher_json_escape(NULL, data, data_len)
                 + sizeof(PUSHER_EVENT_JSON_TAIL) - 1;

    if (pusher_ring_event_size(app_id->len, socket_id->len, nchannels,
                               names_len, prefix_len + suffix_len)
        == 0)
    {
        return 0;
    }

    p = pusher_ring_event_head(out, app_id, socket_id, channels, nchannels,
                               prefix_len, suffix_len, 0);

    memcpy(p, PUSHER_EVENT_JSON_HEAD, sizeof(PUSHER_EVENT_JSON_HEAD) - 1);
    p += sizeof(PUSHER_EVENT_JSON_HEAD) - 1;
    p += pusher_json_escape(p, name, name_len);
    memcpy(p, PUSHER_EVENT_JSON_CHANNEL,
           sizeof(PUSHER_EVENT_JSON_CHANNEL) - 1);
    p += sizeof(PUSHER_EVENT_JSON_CHANNEL) - 1;

    memcpy(p, PUSHER_EVENT_JSON_DATA, sizeof(PUSHER_EVENT_JSON_DATA) - 1);
    p += sizeof(PUSHER_EVENT_JSON_DATA) - 1;
    p += pusher_json_escape(p, data, data_len);
    memcpy(p, PUSHER_EVENT_JSON_TAIL, sizeof(PUSHER_EVENT_JSON_TAIL) - 1);
    p += sizeof(PUSHER_EVENT_JSON_TAIL) - 1;

    return (size_t) (p - out);
}


size_t
pusher_ring_event_encode_json(uint8_t *out, const pusher_str_t *app_id,
    const pusher_str_t *channel, const pusher_str_t *socket_id,
    const uint8_t *json, size_t json_len)
{
    uint8_t  *p;

    if (pusher_ring_event_size(app_id->len, socket_id->len, 1, channel->len,
                               json_len)
        == 0)
    {
        return 0;
    }

    p = pusher_ring_event_head(out, app_id, socket_id, channel, 1, json_len,
                               0, PUSHER_RING_EVENT_WHOLE);

    if (json_len) {
        memcpy(p, json, json_len);
        p += json_len;
    }

    return (size_t) (p - out);
}


/*
 * The record comes from shared memory that a broken or hostile broker may
 * have filled with anything: every length is checked against len before
 * anything is read, and so is every channel name, since workers look them
 * up and build frames from them.
 */
int
pusher_ring_event_decode(const uint8_t *rec, size_t len,
    pusher_ring_event_view_t *view)
{
    size_t               i, n;
    uint64_t             total;
    const uint8_t       *p, *end;
    pusher_ring_event_t  ev;

    if (len < sizeof(pusher_ring_event_t)) {
        return -1;
    }

    memcpy(&ev, rec, sizeof(pusher_ring_event_t));

    if (ev.app_id_len == 0 || ev.app_id_len > PUSHER_APP_ID_MAX
        || ev.socket_id_len > PUSHER_SOCKET_ID_MAX
        || ev.channels == 0
        || (ev.flags & ~PUSHER_RING_EVENT_WHOLE) != 0
        || ((ev.flags & PUSHER_RING_EVENT_WHOLE)
            && (ev.channels != 1 || ev.suffix_len != 0))
        || (uint64_t) ev.prefix_len + ev.suffix_len
           > UINT32_MAX - PUSHER_WS_HEADER_MAX - PUSHER_CHANNEL_MAX)
    {
        return -1;
    }

    /* 64-bit sums of 32-bit and smaller fields cannot overflow */
    total = (uint64_t) sizeof(pusher_ring_event_t) + ev.app_id_len
            + ev.socket_id_len + ev.prefix_len + ev.suffix_len;

    if (total + 2 * (uint64_t) ev.channels > len) {
        return -1;
    }

    p = rec + sizeof(pusher_ring_event_t);

    view->app_id.data = (const char *) p;
    view->app_id.len = ev.app_id_len;
    p += ev.app_id_len;

    view->socket_id.data = (const char *) p;
    view->socket_id.len = ev.socket_id_len;
    p += ev.socket_id_len;

    view->channels = p;
    view->nchannels = ev.channels;

    /* the channel list ends where the JSON begins */
    end = rec + (len - ev.prefix_len - ev.suffix_len);

    for (i = 0; i < ev.channels; i++) {
        if (p >= end) {
            return -1;
        }

        n = *p++;

        if (n == 0 || n > PUSHER_CHANNEL_MAX || (size_t) (end - p) < n) {
            return -1;
        }

        p += n;
    }

    if (p != end) {
        return -1;
    }

    view->prefix = p;
    view->prefix_len = ev.prefix_len;
    view->suffix = p + ev.prefix_len;
    view->suffix_len = ev.suffix_len;
    view->whole = (ev.flags & PUSHER_RING_EVENT_WHOLE) ? 1 : 0;

    return 0;
}


void
pusher_ring_event_channel(const uint8_t **pos, pusher_str_t *channel)
{
    const uint8_t  *p;

    p = *pos;

    channel->len = *p;
    channel->data = (const char *) p + 1;

    *pos = p + 1 + *p;
}


size_t
pusher_ring_event_frame_size(const pusher_ring_event_view_t *view,
    size_t channel_len)
{
    size_t  json_len;

    json_len = view->prefix_len + (view->whole ? 0 : channel_len)
               + view->suffix_len;

    return pusher_ws_frame_header_size(json_len) + json_len;
}


size_t
pusher_ring_event_frame(uint8_t *out, const pusher_ring_event_view_t *view,
    const pusher_str_t *channel)
{
    size_t    json_len;
    uint8_t  *p;

    json_len = view->prefix_len + (view->whole ? 0 : channel->len)
               + view->suffix_len;

    p = out;
    p += pusher_ws_frame_header(p, PUSHER_WS_OP_TEXT, json_len);

    memcpy(p, view->prefix, view->prefix_len);
    p += view->prefix_len;

    if (!view->whole) {
        /* valid channel names need no JSON escaping */
        memcpy(p, channel->data, channel->len);
        p += channel->len;
    }

    if (view->suffix_len) {
        memcpy(p, view->suffix, view->suffix_len);
        p += view->suffix_len;
    }

    return (size_t) (p - out);
}


int
pusher_origin_host(const char *origin, size_t len, const char **host,
    size_t *host_len)
{
    size_t       i, start;

    for (i = 0; i + 2 < len; i++) {
        if (origin[i] == ':' && origin[i + 1] == '/' && origin[i + 2] == '/') {
            break;
        }

        if (!isalnum((unsigned char) origin[i]) && origin[i] != '+'
            && origin[i] != '-' && origin[i] != '.')
        {
            return -1;
        }
    }

    if (i == 0 || i + 2 >= len) {
        return -1;
    }

    start = i + 3;

    if (start < len && origin[start] == '[') {
        /* an IPv6 literal, brackets included */
        for (i = start; i < len && origin[i] != ']'; i++) { /* void */ }

        if (i == len) {
            return -1;
        }

        i++;

    } else {
        for (i = start; i < len; i++) {
            if (origin[i] == ':' || origin[i] == '/' || origin[i] == '?'
                || origin[i] == '#')
            {
                break;
            }
        }
    }

    if (i == start) {
        return -1;
    }

    *host = origin + start;
    *host_len = i - start;

    return 0;
}


/*
 * ASCII only, whatever the locale: a byte >= 0x80 of a host (or of a
 * pattern) is compared as it is.
 */

static unsigned char
pusher_ascii_lower(char c)
{
    unsigned char  u;

    u = (unsigned char) c;

    return (u >= 'A' && u <= 'Z') ? (unsigned char) (u - 'A' + 'a') : u;
}


int
pusher_host_match(const char *pattern, size_t pattern_len, const char *host,
    size_t host_len)
{
    size_t  p, h, star, mark;

    /* the classic greedy glob with one backtrack point */

    p = 0;
    h = 0;
    star = (size_t) -1;
    mark = 0;

    while (h < host_len) {
        if (p < pattern_len && pattern[p] == '*') {
            star = p++;
            mark = h;

        } else if (p < pattern_len
                   && (unsigned char) pattern[p] == pusher_ascii_lower(host[h]))
        {
            p++;
            h++;

        } else if (star != (size_t) -1) {
            p = star + 1;
            h = ++mark;

        } else {
            return 0;
        }
    }

    while (p < pattern_len && pattern[p] == '*') {
        p++;
    }

    return p == pattern_len;
}


int
pusher_coalesce_pattern_valid(const char *pattern, size_t len)
{
    size_t  i;

    if (len == 0 || len > PUSHER_CHANNEL_MAX) {
        return 0;
    }

    i = (pattern[0] == '#') ? 1 : 0;

    if (i == len) {
        return 0;
    }

    for ( /* void */ ; i < len; i++) {
        if (pattern[i] != '*' && !pusher_channel_chars[(uint8_t) pattern[i]]) {
            return 0;
        }
    }

    return 1;
}


/* an event name of "events=": printable ASCII without ',' */

int
pusher_coalesce_event_valid(const char *name, size_t len)
{
    size_t  i;

    if (len == 0 || len > PUSHER_EVENT_NAME_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if ((unsigned char) name[i] <= 0x20 || (unsigned char) name[i] >= 0x7f
            || name[i] == ',')
        {
            return 0;
        }
    }

    return 1;
}


int
pusher_glob_match(const char *pattern, size_t pattern_len, const char *s,
    size_t len)
{
    size_t  p, i, star, mark;

    /* as pusher_host_match(), but case-sensitive */

    p = 0;
    i = 0;
    star = (size_t) -1;
    mark = 0;

    while (i < len) {
        if (p < pattern_len && pattern[p] == '*') {
            star = p++;
            mark = i;

        } else if (p < pattern_len && pattern[p] == s[i]) {
            p++;
            i++;

        } else if (star != (size_t) -1) {
            p = star + 1;
            i = ++mark;

        } else {
            return 0;
        }
    }

    while (p < pattern_len && pattern[p] == '*') {
        p++;
    }

    return p == pattern_len;
}


static const char  *pusher_webhook_events[PUSHER_WEBHOOK_TYPES] = {
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
    "cache_miss"
};


unsigned
pusher_webhook_event(const char *name, size_t len)
{
    unsigned  n;

    for (n = 0; n < PUSHER_WEBHOOK_TYPES; n++) {
        if (strlen(pusher_webhook_events[n]) == len
            && memcmp(pusher_webhook_events[n], name, len) == 0)
        {
            return 1u << n;
        }
    }

    return 0;
}


const char *
pusher_webhook_event_name(unsigned n)
{
    return n < PUSHER_WEBHOOK_TYPES ? pusher_webhook_events[n] : NULL;
}
