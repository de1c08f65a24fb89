/*
 * ngx-pusher: Pusher protocol 7 messages and channel rules.  No I/O.
 *
 * Inbound client messages are parsed with cJSON; "data" may be an object
 * or a JSON string holding one (pusher-js sends objects, other clients
 * strings).  Outbound frames are written by hand into caller buffers, in
 * the wire shape of docs/protocol.md, "Messages"
 * (string "data" for pusher:* events).
 */

#ifndef PUSHER_PROTO_H
#define PUSHER_PROTO_H


#include <stddef.h>
#include <stdint.h>

#include "pusher_shm.h"

#ifdef __cplusplus
extern "C" {
#endif


/* pusher:error / close codes: docs/protocol.md, "Errors and close codes" */
#define PUSHER_ERR_APP_NOT_FOUND     4001
#define PUSHER_ERR_APP_DISABLED      4003
#define PUSHER_ERR_OVER_QUOTA        4004
#define PUSHER_ERR_UNAUTHORIZED      4009
#define PUSHER_ERR_OVER_CAPACITY     4100
#define PUSHER_ERR_RECONNECT         4200
#define PUSHER_ERR_PONG_TIMEOUT      4201
#define PUSHER_ERR_CLIENT_EVENT      4301

#define PUSHER_EVENT_NAME_MAX        200
#define PUSHER_DEFAULT_ACTIVITY_TIMEOUT  30     /* seconds */


typedef enum {
    PUSHER_MSG_UNKNOWN = 0,     /* unknown pusher:* event */
    PUSHER_MSG_PING,
    PUSHER_MSG_PONG,
    PUSHER_MSG_SUBSCRIBE,
    PUSHER_MSG_UNSUBSCRIBE,
    PUSHER_MSG_SIGNIN,
    PUSHER_MSG_CLIENT_EVENT     /* client-* */
} pusher_msg_type_e;


typedef struct {
    const char  *data;
    size_t       len;
} pusher_str_t;


/*
 * A parsed client message.  Strings point into the cJSON tree, which the
 * message owns until pusher_msg_free().
 *
 *   event         always set
 *   channel       pusher:subscribe/unsubscribe: data.channel;
 *                 client events: top-level "channel"
 *   auth          pusher:subscribe, pusher:signin: data.auth
 *   channel_data  pusher:subscribe: data.channel_data (a JSON string)
 *   user_data     pusher:signin: data.user_data (a JSON string)
 *   data          the "data" member as received (object, string, ...),
 *                 after decoding a JSON string that holds an object
 */
typedef struct {
    pusher_msg_type_e   type;
    pusher_str_t        event;
    pusher_str_t        channel;
    pusher_str_t        auth;
    pusher_str_t        channel_data;
    pusher_str_t        user_data;
    void               *data;          /* cJSON *, may be NULL */
    void               *root;          /* cJSON *, owned */
    void               *decoded;       /* cJSON *, owned (string data) */
} pusher_msg_t;


/* pusher_msg_parse() results */
#define PUSHER_MSG_OK            0
#define PUSHER_MSG_BAD_JSON     -1     /* not JSON or not an object */
#define PUSHER_MSG_NO_EVENT     -2     /* no string "event" */
#define PUSHER_MSG_BAD_DATA     -3     /* a pusher:* event with bad fields */

int pusher_msg_parse(pusher_msg_t *m, const uint8_t *json, size_t len);
void pusher_msg_free(pusher_msg_t *m);


/* channel rules (Pusher / server SDKs: ^#?[-a-zA-Z0-9_=@,.;]+$, <= 200) */
typedef enum {
    PUSHER_CHANNEL_PUBLIC = 0,
    PUSHER_CHANNEL_PRIVATE,
    PUSHER_CHANNEL_PRIVATE_ENCRYPTED,
    PUSHER_CHANNEL_PRESENCE,
    PUSHER_CHANNEL_CACHE,
    PUSHER_CHANNEL_PRIVATE_CACHE,
    PUSHER_CHANNEL_PRESENCE_CACHE,
    PUSHER_CHANNEL_SERVER_TO_USER    /* #server-to-user-{id} */
} pusher_channel_type_e;

int pusher_channel_name_valid(const char *name, size_t len);
pusher_channel_type_e pusher_channel_type(const char *name, size_t len);
/* 1 for private-*, private-encrypted-*, presence-* (auth needed) */
int pusher_channel_needs_auth(pusher_channel_type_e type);
/* 1 for ^\d+\.\d+$ */
int pusher_socket_id_valid(const char *s, size_t len);


/*
 * JSON string escaping (RFC 8259): '"', '\\' and control characters; all
 * other bytes are copied.  dst == NULL only computes the length.
 */
size_t pusher_json_escape(uint8_t *dst, const uint8_t *src, size_t len);


/*
 * Outbound frames (JSON text only, no WebSocket header).  Each builder
 * returns the number of bytes written to buf, or 0 if cap is too small.
 * Inputs that are copied verbatim into JSON strings (socket_id, channel,
 * event) must already be valid names; free text (messages) is escaped.
 */
size_t pusher_build_connection_established(uint8_t *buf, size_t cap,
    const char *socket_id, size_t socket_id_len, unsigned activity_timeout);
size_t pusher_build_error(uint8_t *buf, size_t cap, int code,
    const char *message);
size_t pusher_build_ping(uint8_t *buf, size_t cap);
size_t pusher_build_pong(uint8_t *buf, size_t cap);
size_t pusher_build_subscription_succeeded(uint8_t *buf, size_t cap,
    const char *channel, size_t channel_len);


/*
 * An HTTP-triggered event as subscribers receive it:
 *   {"event":"<name>","channel":"<channel>","data":"<data, escaped>"}
 * pusher_event_json_size() gives the exact length; pusher_event_json()
 * writes it (buf must hold that many bytes) and returns it.
 */
size_t pusher_event_json_size(const uint8_t *name, size_t name_len,
    const uint8_t *channel, size_t channel_len, const uint8_t *data,
    size_t data_len);
size_t pusher_event_json(uint8_t *buf, const uint8_t *name, size_t name_len,
    const uint8_t *channel, size_t channel_len, const uint8_t *data,
    size_t data_len);


/*
 * PUSHER_RING_EVENT records (layout in pusher_shm.h): one event for one or
 * more channels.  The broker sizes a record with pusher_ring_event_size()
 * and fills it with pusher_ring_event_encode() (an HTTP API event: its
 * JSON split around the channel name) or pusher_ring_event_encode_json()
 * (one channel, JSON built elsewhere).  A worker decodes it with
 * pusher_ring_event_decode(), walks its channels with
 * pusher_ring_event_channel() and builds the frame of a channel it has
 * subscribers of with pusher_ring_event_frame().
 */
typedef struct {
    pusher_str_t    app_id;
    pusher_str_t    socket_id;        /* len 0: no exclusion */
    const uint8_t  *channels;         /* nchannels x (uint8_t len, name) */
    size_t          nchannels;
    const uint8_t  *prefix;           /* JSON up to the channel name */
    size_t          prefix_len;
    const uint8_t  *suffix;           /* JSON after it */
    size_t          suffix_len;
    unsigned        whole:1;          /* prefix is the whole JSON */
} pusher_ring_event_view_t;

/*
 * Bytes of a record with nchannels channels whose names have names_len
 * bytes in all, and json_len bytes of JSON without the channel name; 0 if
 * a record cannot hold them.
 */
size_t pusher_ring_event_size(size_t app_id_len, size_t socket_id_len,
    size_t nchannels, size_t names_len, size_t json_len);
/*
 * The event of name and data for channels; returns the bytes written (==
 * pusher_ring_event_size() with the JSON of pusher_event_json_size() for
 * no channel), 0 if they do not fit a record.
 */
size_t pusher_ring_event_encode(uint8_t *out, const pusher_str_t *app_id,
    const pusher_str_t *socket_id, const pusher_str_t *channels,
    size_t nchannels, const uint8_t *name, size_t name_len,
    const uint8_t *data, size_t data_len);
/*
 * A record for one channel whose frame carries exactly json (client
 * events, presence events); size pusher_ring_event_size(app_id->len,
 * socket_id->len, 1, channel->len, json_len); 0 if it does not fit.
 */
size_t pusher_ring_event_encode_json(uint8_t *out, const pusher_str_t *app_id,
    const pusher_str_t *channel, const pusher_str_t *socket_id,
    const uint8_t *json, size_t json_len);
/* 0 on success, -1 if the record is malformed */
int pusher_ring_event_decode(const uint8_t *rec, size_t len,
    pusher_ring_event_view_t *view);
/*
 * The channel at *pos (start at view->channels, nchannels times); moves
 * *pos past it.  Only for a view pusher_ring_event_decode() filled.
 */
void pusher_ring_event_channel(const uint8_t **pos, pusher_str_t *channel);
/* the WebSocket text frame of the event on one of its channels */
size_t pusher_ring_event_frame_size(const pusher_ring_event_view_t *view,
    size_t channel_len);
size_t pusher_ring_event_frame(uint8_t *out,
    const pusher_ring_event_view_t *view, const pusher_str_t *channel);


/*
 * Webhook event types, the "event_types" of a webhook in HELLO: one bit
 * each in an event mask.  pusher_webhook_event() gives the bit of a name
 * (0 for an unknown one), pusher_webhook_event_name() the name of bit
 * number n < PUSHER_WEBHOOK_TYPES.
 */
#define PUSHER_WEBHOOK_CHANNEL_OCCUPIED  0x01
#define PUSHER_WEBHOOK_CHANNEL_VACATED   0x02
#define PUSHER_WEBHOOK_MEMBER_ADDED      0x04
#define PUSHER_WEBHOOK_MEMBER_REMOVED    0x08
#define PUSHER_WEBHOOK_CLIENT_EVENT      0x10
#define PUSHER_WEBHOOK_CACHE_MISS        0x20
#define PUSHER_WEBHOOK_TYPES             6
#define PUSHER_WEBHOOK_ALL               0x3f

unsigned pusher_webhook_event(const char *name, size_t len);
const char *pusher_webhook_event_name(unsigned n);


/*
 * Origin allow-lists.  pusher_origin_host() finds the host of an Origin
 * header value ("https://app.example.com:8443" -> "app.example.com");
 * returns 0, or -1 for a value without "scheme://host" ("null").
 * pusher_host_match() matches a host against a lowercase pattern in
 * which '*' stands for any run of characters, ignoring the host's case.
 */
int pusher_origin_host(const char *origin, size_t len, const char **host,
    size_t *host_len);
int pusher_host_match(const char *pattern, size_t pattern_len,
    const char *host, size_t host_len);


/*
 * Coalescing ("coalesce pattern window [events=name,...]" of a
 * pusher_app; docs/protocol.md, "Coalescing").  The bounds are checked by
 * nginx -t and again by the broker.  A pattern is a channel name in which
 * '*' stands for any run of characters (case-sensitive);
 * pusher_coalesce_pattern_valid() checks one, pusher_coalesce_event_valid()
 * an event name of "events=", pusher_glob_match() matches a channel.
 */
#define PUSHER_COALESCE_RULES_MAX    32         /* lines per app */
#define PUSHER_COALESCE_EVENTS_MAX   32         /* names per line */
#define PUSHER_COALESCE_WINDOW_MIN   1          /* ms */
#define PUSHER_COALESCE_WINDOW_MAX   60000      /* ms */

int pusher_coalesce_pattern_valid(const char *pattern, size_t len);
int pusher_coalesce_event_valid(const char *name, size_t len);
int pusher_glob_match(const char *pattern, size_t pattern_len,
    const char *s, size_t len);


#ifdef __cplusplus
}
#endif

#endif /* PUSHER_PROTO_H */
