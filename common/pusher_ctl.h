/*
 * ngx-pusher: the control connection between each nginx worker and
 * pusher-broker (a unix stream socket the broker listens on).
 *
 * Every message is an 8-byte header followed by the payload:
 *
 *   uint32_t  length      payload bytes (host order: same machine)
 *   uint16_t  type        PUSHER_CTL_*
 *   uint16_t  reserved    0
 *
 * worker -> broker
 *   HELLO     JSON {"pid":123,"conf_time":1732630000123}
 *             sent first on every (re)connect: the worker names the
 *             configuration it serves (conf_time identifies a cycle of
 *             nginx.conf; it is compared for equality only, never ordered).
 *
 * The app table itself never crosses the control socket: the nginx master
 * writes it when it loads nginx.conf, to "<control socket>.apps", and the
 * broker reads it from there when a worker names a configuration it does
 * not hold, only if the file belongs to the user it trusts (README,
 * "Trust").  The file is the same JSON object, with the table:
 *
 *             {"pid":MASTER,"conf_time":..,["debug":true,]
 *                   "apps":[{"id":"..","key":"..","secret":"..",
 *                            "cache_ttl":1800,
 *                            "subscription_count":false,
 *                            "max_event_data":10240,"max_channels":100,
 *                            "max_event_name":200,"max_batch":10,
 *                            "max_request_size":1048576,
 *                            "webhook_vacated_delay":0 (ms),
 *                            "webhooks":[{"url":"https://..",
 *                                "event_types":["channel_occupied",..],
 *                                "filter":{"channel_name_starts_with":"",
 *                                          "channel_name_ends_with":""},
 *                                "headers":{"Name":"value"}}, ...],
 *                            "coalesce":[{"pattern":"private-servers.*",
 *                                "window":500 (ms),
 *                                "events":["name",..]}, ...]},
 *                           ...]}
 *             nginx.conf is the only place apps are written; the newest
 *             file is the newest configuration.  "debug" (pusher_debug on,
 *             written only when on) has the broker log each trigger and
 *             webhook request too.
 *
 * broker -> worker
 *   WELCOME   JSON {"shm":"/ngx-pusher","generation":"N","slot":K,
 *                   "size":BYTES}
 *             the segment to map and the wake slot this worker owns;
 *             generation is a decimal string (a JSON number is a double
 *             and cannot carry 64 bits).
 *
 * Both JSON payloads are written and read by pusher_ctl_hello_encode(),
 * pusher_ctl_hello_decode(), pusher_ctl_welcome_encode() and
 * pusher_ctl_welcome_decode() below (pusher_ctl.c), for the module and
 * the broker alike, so that each member is named in one place.
 *   DOORBELL  empty: records were published while the worker's wake
 *             slot was armed.
 *   REFUSED   text: why the broker refused a HELLO (no app table it can
 *             read or accept, no wake slot left); the broker closes the
 *             connection after it, and the worker logs it at [error].
 *             nginx -t applies the broker's rules (pusher_app.h), so a
 *             table refused means a broker and a module of different
 *             versions.
 *
 * The uplink (docs/architecture.md, "The uplink"): what crosses workers
 * goes up to the broker and comes back down the ring.  These payloads are a
 * sequence of fields, each a uint32_t length (host order) and that many
 * bytes, in the order listed; pusher_ctl_put() and pusher_ctl_get() write
 * and read them.
 *
 * worker -> broker
 *   CLIENT_EVENT     app_id, channel, socket_id, json
 *                    a client event the worker has checked, as the exact
 *                    JSON every subscriber receives; the broker appends it
 *                    to the ring with socket_id excluded.
 *   PRESENCE_JOIN    app_id, channel, socket_id, user_id, user_info,
 *                    max_members, flags
 *                    user_id is JSON text (a string or a number, as the
 *                    client sent it), user_info JSON text or empty;
 *                    max_members decimal; flags "r" for a re-join after a
 *                    reconnect (no reply wanted), else empty.
 *   PRESENCE_LEAVE   app_id, channel, socket_id
 *   CACHE_GET        app_id, channel, socket_id
 *                    a socket subscribed to a cache channel (cache-,
 *                    private-cache-, presence-cache-) and wants the last
 *                    event the HTTP API sent to it.
 *   OCCUPANCY        app_id, channel, count, flags
 *                    this worker's confirmed subscribers of the channel
 *                    (decimal), sent when it changes and for every channel
 *                    after WELCOME; "0" when the worker has none left.
 *                    flags "r" when a broker was told of the channel
 *                    before (a count from before a reconnect), else empty;
 *                    a broker that does not read it takes it as empty.
 *   USER_ONLINE      app_id, user_id, socket_id, watchlist
 *                    a socket signed in (pusher:signin); watchlist is the
 *                    JSON array of user ids from its user_data, or empty.
 *                    Sent again for every signed-in socket after WELCOME.
 *   USER_OFFLINE     app_id, user_id, socket_id
 *                    a signed-in socket closed.
 *   GONE             app_id, channel, user_id
 *                    what a broker was told of and that ended while this
 *                    worker could not tell it (no link, or the
 *                    announcement after WELCOME had yet to reach the
 *                    channel): the last socket of user_id (JSON text) in a
 *                    presence channel, or, with user_id empty, the last
 *                    subscriber of the channel.  Sent at the end of the
 *                    announcement, before ANNOUNCED.
 *   ANNOUNCED        (no fields)
 *                    the announcement after WELCOME is complete.
 *
 * The answers to PRESENCE_JOIN and CACHE_GET come down the ring, not over
 * this connection (PUSHER_RING_PRESENCE_JOINED and PUSHER_RING_CACHE in
 * pusher_shm.h), so that each is ordered with the events around it: the
 * socket's subscription starts exactly at its answer.  A worker that was
 * lapped asks again for the subscriptions still waiting.
 *
 * The broker adds the OCCUPANCY counts of all workers; for an app with
 * subscription_count (HELLO) it sends, at most once per second per
 * channel, {"event":"pusher_internal:subscription_count","channel":C,
 * "data":"{\"subscription_count\":N}"} down the ring (not for presence
 * channels).  USER_ONLINE/OFFLINE make a user online from its first
 * signed-in socket to its last; watchers (users whose watchlist names it)
 * get {"event":"pusher_internal:watchlist_events","channel":
 * "#server-to-user-W","data":"{\"events\":[{\"name\":\"online\",
 * \"user_ids\":[\"U\"]}]}"} (or "offline") on their #server-to-user
 * channel, and a socket that signs in gets the online part of its own
 * watchlist there.
 *
 * The broker keeps the last HTTP-triggered event of each cache channel
 * for the app's cache_ttl (seconds, from HELLO; default 1800), whether or
 * not anyone is subscribed.
 *
 * The broker owns presence membership for the node: member_added and
 * member_removed go down the ring once per user_id, on its first
 * connection and after its last; a worker's memberships end when its
 * control connection does.
 *
 * A broker that starts restores rather than learns: until every worker
 * connected has sent ANNOUNCED (and the workers' reconnect backoff has
 * passed), or at most PUSHER_CTL_RESTORE_MAX ms, re-joins ("r") and counts
 * flagged "r" are taken silently (the clients and webhook receivers knew
 * them from the broker before), new presence joins wait, and GONE says
 * what ended meanwhile; then member_removed and channel_vacated go out for
 * what is gone everywhere, channel_occupied for channels only new
 * subscribers hold, and the waiting joins are answered.
 */

#ifndef PUSHER_CTL_H
#define PUSHER_CTL_H


#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "pusher_shm.h"
#include "pusher_proto.h"

#ifdef __cplusplus
extern "C" {
#endif


#define PUSHER_CTL_HELLO             1
#define PUSHER_CTL_WELCOME           2
#define PUSHER_CTL_DOORBELL          3
/*
 * pusher_metrics: a worker asks (fields: request id), the broker answers
 * (fields: request id, its metrics in Prometheus' text format); neither
 * waits for room in the ring
 */
#define PUSHER_CTL_METRICS           4
#define PUSHER_CTL_METRICS_TEXT      5
#define PUSHER_CTL_REFUSED           6
#define PUSHER_CTL_CLIENT_EVENT      16
#define PUSHER_CTL_PRESENCE_JOIN     17
#define PUSHER_CTL_PRESENCE_LEAVE    18
#define PUSHER_CTL_CACHE_GET         20
#define PUSHER_CTL_OCCUPANCY         22
#define PUSHER_CTL_USER_ONLINE       23
#define PUSHER_CTL_USER_OFFLINE      24
#define PUSHER_CTL_GONE              25
#define PUSHER_CTL_ANNOUNCED         26

#define PUSHER_CTL_HEADER_SIZE       8
#define PUSHER_CTL_MAX_PAYLOAD       (4 * 1024 * 1024)

/*
 * A worker retries the control socket at most this far apart (ms), so
 * every worker of a host is connected this long after the broker listens;
 * a starting broker restores for at least PUSHER_CTL_RESTORE_MIN and at
 * most PUSHER_CTL_RESTORE_MAX ms.
 */
#define PUSHER_CTL_RECONNECT_MAX     500
#define PUSHER_CTL_RESTORE_MIN       (PUSHER_CTL_RECONNECT_MAX + 200)
#define PUSHER_CTL_RESTORE_MAX       5000


typedef struct {
    uint32_t  length;
    uint16_t  type;
    uint16_t  reserved;
} pusher_ctl_header_t;

PUSHER_SHM_STATIC_ASSERT(sizeof(pusher_ctl_header_t) == PUSHER_CTL_HEADER_SIZE,
                         "control header size");


static inline void
pusher_ctl_header_write(uint8_t *out, uint16_t type, uint32_t length)
{
    pusher_ctl_header_t  h;

    h.length = length;
    h.type = type;
    h.reserved = 0;
    memcpy(out, &h, sizeof(h));
}


static inline void
pusher_ctl_header_read(const uint8_t *in, pusher_ctl_header_t *h)
{
    memcpy(h, in, sizeof(*h));
}


/* appends one field; returns the position after it */
static inline uint8_t *
pusher_ctl_put(uint8_t *p, const void *data, uint32_t len)
{
    memcpy(p, &len, sizeof(len));

    if (len) {
        memcpy(p + sizeof(len), data, len);
    }

    return p + sizeof(len) + len;
}


/* bytes pusher_ctl_put() needs for a field of len bytes */
#define PUSHER_CTL_FIELD_SIZE(len)   (sizeof(uint32_t) + (len))


/* reads one field; 0 on success, -1 if the payload ends early */
static inline int
pusher_ctl_get(const uint8_t **pos, const uint8_t *end, const uint8_t **data,
    uint32_t *len)
{
    uint32_t  n;

    if ((size_t) (end - *pos) < sizeof(n)) {
        return -1;
    }

    memcpy(&n, *pos, sizeof(n));

    if ((size_t) (end - *pos) - sizeof(n) < n) {
        return -1;
    }

    *data = *pos + sizeof(n);
    *len = n;
    *pos += sizeof(n) + n;

    return 0;
}


/*
 * HELLO and WELCOME as structures.  The encoders return the JSON text
 * (NUL-terminated, its length in *len), to be released with
 * pusher_ctl_text_free(), or NULL when out of memory.  The decoders return
 * 0, or -1 with a reason in error[]; either way the message is released
 * with pusher_ctl_hello_free() / pusher_ctl_welcome_free().  A decoded
 * message points into the JSON tree it keeps: its strings are
 * NUL-terminated.  The decoders check the shape and the types; what a
 * value may be (limits, URLs, header names) is the broker's to judge.
 */

/* the optional members of an app: present (decode), to write (encode) */
#define PUSHER_CTL_APP_CACHE_TTL              0x01
#define PUSHER_CTL_APP_SUBSCRIPTION_COUNT     0x02
#define PUSHER_CTL_APP_MAX_EVENT_DATA         0x04
#define PUSHER_CTL_APP_MAX_CHANNELS           0x08
#define PUSHER_CTL_APP_MAX_EVENT_NAME         0x10
#define PUSHER_CTL_APP_MAX_BATCH              0x20
#define PUSHER_CTL_APP_MAX_REQUEST_SIZE       0x40
#define PUSHER_CTL_APP_WEBHOOK_VACATED_DELAY  0x80
#define PUSHER_CTL_APP_ALL                    0xff

/* the numbers are whole and at most 2^53: exact in a JSON double */
#define PUSHER_CTL_NUMBER_MAX                 9007199254740992.0

#define PUSHER_CTL_ERROR_SIZE                 128


typedef struct {
    pusher_str_t            name;
    pusher_str_t            value;
} pusher_ctl_kv_t;


/*
 * "webhooks":[{"url":U,"event_types":[...],"filter":{
 *     "channel_name_starts_with":P,"channel_name_ends_with":S},
 *     "headers":{N:V,...}},...]; without "event_types" a webhook gets
 * every event, an empty prefix or suffix is not written
 */
typedef struct {
    pusher_str_t            url;
    unsigned                events;            /* PUSHER_WEBHOOK_* */
    pusher_str_t            prefix;            /* channel_name_starts_with */
    pusher_str_t            suffix;            /* channel_name_ends_with */
    pusher_ctl_kv_t        *headers;
    size_t                  nheaders;
} pusher_ctl_webhook_t;


/*
 * "coalesce":[{"pattern":P,"window":MS,"events":[...]},...] in the order
 * of the lines; without "events" a line takes every event name
 */
typedef struct {
    pusher_str_t            pattern;
    uint64_t                window;            /* ms */
    pusher_str_t           *events;
    size_t                  nevents;
} pusher_ctl_coalesce_t;


typedef struct {
    pusher_str_t            id;
    pusher_str_t            key;
    pusher_str_t            secret;
    unsigned                has;               /* PUSHER_CTL_APP_* */
    int                     subscription_count;
    uint64_t                cache_ttl;         /* seconds */
    uint64_t                max_event_data;
    uint64_t                max_channels;
    uint64_t                max_event_name;
    uint64_t                max_batch;
    uint64_t                max_request_size;
    uint64_t                webhook_vacated_delay;  /* ms */
    pusher_ctl_webhook_t   *webhooks;          /* "webhooks" if nwebhooks */
    size_t                  nwebhooks;
    pusher_ctl_coalesce_t  *coalesce;          /* "coalesce" if ncoalesce */
    size_t                  ncoalesce;
} pusher_ctl_app_t;


typedef struct {
    int64_t                 pid;
    int64_t                 conf_time;         /* unix ms */
    int                     debug;             /* "debug":true: pusher_debug */
    /*
     * "cluster": {"url", "prefix", "node"} if cluster_url.len
     * (pusher_cluster; a decoded one is checked as nginx -t checks it)
     */
    pusher_str_t            cluster_url;
    pusher_str_t            cluster_prefix;
    pusher_str_t            cluster_node;
    pusher_ctl_app_t       *apps;
    size_t                  napps;
    void                   *json;              /* decoded: cJSON, owned */
    char                    error[PUSHER_CTL_ERROR_SIZE];
} pusher_ctl_hello_t;


typedef struct {
    pusher_str_t            shm;
    uint64_t                generation;
    uint32_t                slot;              /* < PUSHER_SHM_WAKE_SLOTS */
    uint64_t                size;              /* segment bytes */
    void                   *json;              /* decoded: cJSON, owned */
    char                    error[PUSHER_CTL_ERROR_SIZE];
} pusher_ctl_welcome_t;


char *pusher_ctl_hello_encode(const pusher_ctl_hello_t *hello, size_t *len);
int pusher_ctl_hello_decode(pusher_ctl_hello_t *hello, const char *json,
    size_t len);
void pusher_ctl_hello_free(pusher_ctl_hello_t *hello);

char *pusher_ctl_welcome_encode(const pusher_ctl_welcome_t *welcome,
    size_t *len);
int pusher_ctl_welcome_decode(pusher_ctl_welcome_t *welcome,
    const char *json, size_t len);
void pusher_ctl_welcome_free(pusher_ctl_welcome_t *welcome);

void pusher_ctl_text_free(char *text);

/* the member name of PUSHER_CTL_APP_* bit has, for messages; NULL if none */
const char *pusher_ctl_app_member(unsigned has);


#ifdef __cplusplus
}
#endif

#endif /* PUSHER_CTL_H */
