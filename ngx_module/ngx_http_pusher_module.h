
/*
 * Copyright (C) ngx-pusher authors
 */


#ifndef _NGX_HTTP_PUSHER_MODULE_H_INCLUDED_
#define _NGX_HTTP_PUSHER_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "pusher_shm.h"
#include "pusher_ring.h"
#include "pusher_ws.h"
#include "pusher_proto.h"
#include "pusher_ctl.h"
#include "pusher_app.h"


#define NGX_HTTP_PUSHER_DEFAULT_BROKER     "/run/ngx-pusher/control.sock"
#define NGX_HTTP_PUSHER_ACTIVITY_TIMEOUT   30          /* seconds */
#define NGX_HTTP_PUSHER_PING_INTERVAL      60000       /* ms */
#define NGX_HTTP_PUSHER_PONG_TIMEOUT       30000       /* ms */
#define NGX_HTTP_PUSHER_CLIENT_EVENT_RATE  10          /* per second */
#define NGX_HTTP_PUSHER_PRESENCE_MEMBERS   100
#define NGX_HTTP_PUSHER_PRESENCE_INFO      2048        /* bytes */
#define NGX_HTTP_PUSHER_CACHE_TTL          1800        /* seconds */

/* the HTTP API limits, enforced by the broker; Pusher's published limits */
#define NGX_HTTP_PUSHER_MAX_EVENT_DATA     10240       /* bytes */
#define NGX_HTTP_PUSHER_MAX_EVENT_CHANNELS 100
#define NGX_HTTP_PUSHER_MAX_EVENT_NAME     200         /* bytes */
#define NGX_HTTP_PUSHER_MAX_BATCH_EVENTS   10
#define NGX_HTTP_PUSHER_MAX_REQUEST_SIZE   (1024 * 1024)

/* apps the shared zone keeps connection counts for, over all reloads */
#define NGX_HTTP_PUSHER_ZONE_APPS          128

/* client_events */
#define NGX_HTTP_PUSHER_CLIENT_EVENTS_NONE     0
#define NGX_HTTP_PUSHER_CLIENT_EVENTS_MEMBERS  1
#define NGX_HTTP_PUSHER_CLIENT_EVENTS_ALL      2

/* per-worker socket read buffer; a whole message is parsed in place */
#define NGX_HTTP_PUSHER_RECV_BUFFER        (64 * 1024)
/* bytes one socket may read in one turn of the event loop */
#define NGX_HTTP_PUSHER_READ_BUDGET        (4 * NGX_HTTP_PUSHER_RECV_BUFFER)

/* bytes queued to one socket before it is dropped as too slow */
#define NGX_HTTP_PUSHER_SEND_QUEUE_MAX     (1024 * 1024)
/*
 * what a queued frame costs the heap: its bytes, the queue entry, the
 * message header and two allocations' overhead, counted against
 * NGX_HTTP_PUSHER_SEND_QUEUE_MAX
 */
#define NGX_HTTP_PUSHER_OUT_COST(len)      ((len) + 64)
/* queue entries a worker keeps for reuse */
#define NGX_HTTP_PUSHER_FREE_OUTS          4096

/* "pid.n" */
#define NGX_HTTP_PUSHER_SOCKET_ID_LEN      (NGX_INT64_LEN * 2 + 2)

/* subscriptions one socket may hold */
#define NGX_HTTP_PUSHER_MAX_SUBSCRIPTIONS  1000

/* frames gathered into one send_chain() call */
#define NGX_HTTP_PUSHER_IOVS               64

/* after our close frame: how long to wait for the peer to close */
#define NGX_HTTP_PUSHER_LINGER             3000        /* ms */
#define NGX_HTTP_PUSHER_LINGER_EXITING     500         /* ms */

/* a worker that wrote its sockets this recently gathers more frames */
#define NGX_HTTP_PUSHER_FLUSH_WINDOW       5           /* ms */

/* ring records handled before yielding to other events */
#define NGX_HTTP_PUSHER_DRAIN_BATCH        1024

/* a ring that laps a worker twice without a record between: read again */
#define NGX_HTTP_PUSHER_LAP_RETRY          100         /* ms */

/* at most one warning a second about laps */
#define NGX_HTTP_PUSHER_LAP_LOG            1000        /* ms */

/*
 * broker control connection: reconnect backoff (a worker attaches within
 * RECONNECT_MAX of the broker being back) and safety poll
 */
#define NGX_HTTP_PUSHER_RECONNECT_MIN      100         /* ms */
#define NGX_HTTP_PUSHER_RECONNECT_MAX      PUSHER_CTL_RECONNECT_MAX  /* ms */
#define NGX_HTTP_PUSHER_SAFETY_POLL        1000        /* ms */


typedef struct ngx_http_pusher_conn_s     ngx_http_pusher_conn_t;
typedef struct ngx_http_pusher_channel_s  ngx_http_pusher_channel_t;


/*
 * The close codes pusher_metrics counts apart (ngx_http_pusher_metrics.c);
 * one more counter takes every other code.
 */
#define NGX_HTTP_PUSHER_CLOSE_CODES        16


/*
 * An app's counters for pusher_metrics, over all workers (atomic adds).
 * Per-frame counts are added up in the worker first
 * (ngx_http_pusher_local_metrics_t) and added here once per batch.
 */
typedef struct {
    ngx_atomic_t               opened;             /* sockets counted */
    ngx_atomic_t               closed;
    ngx_atomic_t               closes[NGX_HTTP_PUSHER_CLOSE_CODES + 1];
    ngx_atomic_t               subscriptions;      /* gauge */
    ngx_atomic_t               messages_in;        /* WebSocket messages */
    ngx_atomic_t               messages_out;       /* frames queued */
    ngx_atomic_t               bytes_in;           /* read from sockets */
    ngx_atomic_t               bytes_out;          /* frames queued */
    ngx_atomic_t               client_events;      /* relayed */
    ngx_atomic_t               client_event_limited;   /* client_event_rate */
    ngx_atomic_t               rate_limited;       /* rate_limit */
} ngx_http_pusher_zone_metrics_t;


/* a worker's per-frame counts of an app, not yet in the zone */
typedef struct {
    ngx_uint_t                 messages_in;
    ngx_uint_t                 messages_out;
    ngx_uint_t                 bytes_in;
    ngx_uint_t                 bytes_out;
} ngx_http_pusher_local_metrics_t;


/*
 * One app in the shared zone "ngx_http_pusher": its open sockets over all
 * workers, also those of old workers still serving after a reload.  The
 * count per worker slot lets a worker started into the slot of a crashed
 * one take the dead worker's sockets (and subscriptions) out of the total.
 */
typedef struct {
    ngx_atomic_t               connections;
    ngx_atomic_t               generation;         /* 0: free entry */
    uint32_t                   digest;             /* socket settings */
    uint32_t                   id_len;
    u_char                     id[PUSHER_APP_ID_MAX];
    uint32_t                   per_slot[NGX_MAX_PROCESSES];
    uint32_t                   subs_per_slot[NGX_MAX_PROCESSES];
    ngx_http_pusher_zone_metrics_t  metrics;
} ngx_http_pusher_zone_app_t;


/* a worker process slot, for pusher_metrics; pid 0: none */
typedef struct {
    ngx_atomic_t               pid;
    ngx_atomic_t               attached;           /* to a broker */
    ngx_atomic_t               laps;               /* ring overtook it */
    ngx_atomic_t               attaches;           /* WELCOMEs */
} ngx_http_pusher_zone_worker_t;


typedef struct {
    ngx_atomic_t               generation;         /* of the newest conf */
    ngx_atomic_t               stopping;           /* generation stopping */
    ngx_http_pusher_zone_app_t apps[NGX_HTTP_PUSHER_ZONE_APPS];
    ngx_http_pusher_zone_worker_t  workers[NGX_MAX_PROCESSES];
} ngx_http_pusher_zone_t;


/* "webhook URL [events=...] [prefix=...] [suffix=...] [header=N:V]..." */
typedef struct {
    ngx_str_t                  url;
    unsigned                   events;      /* PUSHER_WEBHOOK_* */
    ngx_str_t                  prefix;
    ngx_str_t                  suffix;
    ngx_array_t               *headers;            /* ngx_keyval_t */
} ngx_http_pusher_webhook_t;


/* "coalesce pattern window [events=name,...]" */
typedef struct {
    ngx_str_t                  pattern;
    ngx_msec_t                 window;
    ngx_array_t               *events;      /* ngx_str_t; NULL: every name */
} ngx_http_pusher_coalesce_t;


/* one pusher_app block */
typedef struct {
    ngx_str_t                  id;
    ngx_str_t                  key;
    ngx_str_t                  secret;
    time_t                     activity_timeout;   /* seconds, announced */
    ngx_msec_t                 ping_interval;
    ngx_msec_t                 pong_timeout;
    size_t                     max_message_size;
    ngx_uint_t                 client_events;
    ngx_uint_t                 client_event_rate;
    ngx_uint_t                 rate_limit;         /* messages; 0: none */
    ngx_msec_t                 rate_limit_decay;   /* per this window */
    ngx_flag_t                 rate_limit_terminate;
    ngx_uint_t                 presence_max_members;
    size_t                     presence_max_user_info;
    ngx_msec_t                 signin_timeout;     /* 0: no deadline */
    time_t                     cache_ttl;          /* seconds */
    ngx_flag_t                 subscription_count;
    ngx_flag_t                 enabled;
    ngx_uint_t                 max_connections;    /* 0: no limit */
    ngx_array_t               *origins;            /* ngx_str_t; NULL: any */
    ngx_flag_t                 no_origin;          /* "none" listed */

    /* the HTTP API, enforced by the broker */
    size_t                     max_event_data;
    ngx_uint_t                 max_event_channels;
    size_t                     max_event_name;
    ngx_uint_t                 max_batch_events;
    size_t                     max_request_size;

    /* webhooks, sent by the broker */
    ngx_array_t               *webhooks;  /* ngx_http_pusher_webhook_t */
    ngx_msec_t                 webhook_vacated_delay;

    /* coalescing of HTTP API events, done by the broker */
    ngx_array_t               *coalesce;  /* ngx_http_pusher_coalesce_t */

    /* what an open socket depends on: a reload keeps it if unchanged */
    uint32_t                   digest;
    ngx_http_pusher_zone_app_t *zone;             /* NULL: zone full */
    ngx_http_pusher_local_metrics_t  metrics;     /* worker, not yet added */

    /* worker runtime: this app's channels, by name */
    ngx_rbtree_t               channels;
    ngx_rbtree_node_t          sentinel;
} ngx_http_pusher_app_t;


typedef struct {
    ngx_array_t                apps;               /* ngx_http_pusher_app_t */
    ngx_str_t                  broker;             /* control socket path */
    uint64_t                   conf_time;          /* unix ms of this conf */
    ngx_flag_t                 debug;              /* pusher_debug */
    ngx_str_t                  cluster_url;        /* pusher_cluster */
    ngx_str_t                  cluster_prefix;
    ngx_str_t                  cluster_node;
    ngx_shm_zone_t            *shm_zone;
    ngx_http_pusher_zone_t    *zone;
    ngx_atomic_uint_t          generation;         /* zone gen. of this conf */
} ngx_http_pusher_main_conf_t;


/* a refcounted outgoing frame, shared by every recipient */
typedef struct {
    ngx_uint_t                 refs;
    size_t                     len;
    u_char                     data[1];
} ngx_http_pusher_msg_t;


/* one queued frame of one socket; recycled through a per-worker list */
typedef struct ngx_http_pusher_out_s  ngx_http_pusher_out_t;

struct ngx_http_pusher_out_s {
    ngx_http_pusher_out_t     *next;
    ngx_http_pusher_msg_t     *msg;
};


struct ngx_http_pusher_channel_s {
    ngx_rbtree_node_t          node;               /* key: crc32 of name */
    ngx_queue_t                subscribers;        /* ngx_http_pusher_sub_t */
    ngx_uint_t                 count;              /* subs, pending too */
    ngx_uint_t                 confirmed;          /* in subscribers */
    ngx_uint_t                 told;               /* a broker counts it */
    ngx_http_pusher_app_t     *app;
    size_t                     len;
    u_char                     name[1];
};


/*
 * A socket's subscription.  A presence subscription waits in the worker's
 * pending queue (linked through in_channel) until the broker confirms the
 * membership; it keeps the member data to announce it again to a
 * restarted broker.
 */
typedef struct {
    ngx_queue_t                in_channel;
    ngx_queue_t                in_conn;
    ngx_queue_t                in_index;           /* pending: its bucket */
    uint32_t                   hash;               /* pending: socket, channel */
    ngx_http_pusher_conn_t    *conn;
    ngx_http_pusher_channel_t *channel;
    ngx_str_t                  user_id;            /* presence: JSON text */
    ngx_str_t                  user_info;          /* presence: JSON text */
    unsigned                   presence:1;
    unsigned                   pending:1;
} ngx_http_pusher_sub_t;


struct ngx_http_pusher_conn_s {
    ngx_connection_t          *connection;
    ngx_http_pusher_app_t     *app;                /* NULL: unknown key */
    ngx_http_request_t        *request;            /* until the hand-off */
    ngx_http_request_t        *kept;               /* kept for limit_conn */

    ngx_queue_t                subs;               /* ngx_http_pusher_sub_t */
    ngx_queue_t                dirty;              /* in the flush list */

    ngx_http_pusher_out_t     *out;                /* send queue */
    ngx_http_pusher_out_t    **out_last;
    size_t                     out_sent;           /* bytes of out->msg */
    size_t                     out_bytes;          /* heap of the queue */
    ngx_http_pusher_out_t     *pong;               /* waiting pong frame */
    ngx_http_pusher_out_t     *text_pong;          /* waiting pusher:pong */

    ngx_msec_t                 last_activity;
    ngx_msec_t                 opened;
    ngx_str_t                  user_id;            /* after pusher:signin */
    ngx_str_t                  watchlist;          /* JSON array or empty */
    ngx_str_t                  user_info;          /* JSON from user_data */
    ngx_msec_t                 rate_window;        /* client event window */
    ngx_uint_t                 rate_count;
    ngx_msec_t                 msg_window;         /* rate_limit window */
    ngx_uint_t                 msg_count;
    ngx_msec_t                 ping_sent;
    ngx_uint_t                 id;                 /* socket_id "pid.id" */

    unsigned                   pinged:1;
    unsigned                   control_frames:1;   /* client used pings */
    unsigned                   closing:1;          /* close frame queued */
    unsigned                   lingering:1;        /* close frame sent */
    unsigned                   in_dirty:1;
    unsigned                   authorized:1;       /* signed in or private */
    unsigned                   online:1;           /* USER_ONLINE sent */
    unsigned                   counted:1;          /* in the zone's count */
    unsigned                   origin_denied:1;
    unsigned                   peer_closed:1;      /* its close frame came */

    pusher_ws_parser_t         parser;
};


/*
 * Where the announcement after WELCOME stands (ngx_http_pusher_announce()):
 * the channels of each app in tree order, then the pending subscriptions.
 * The position is the last channel announced, by app, crc32 and name,
 * not a node: channels come and go while the announcement streams.
 */
typedef struct {
    ngx_uint_t                 phase;      /* NGX_HTTP_PUSHER_ANNOUNCE_* */
    ngx_uint_t                 app;        /* index in apps */
    ngx_uint_t                 started;    /* a channel of app announced */
    uint32_t                   key;        /* its crc32 */
    size_t                     len;
    ngx_uint_t                 pending;    /* pending subscriptions left */
    ngx_uint_t                 channels;   /* announced so far */
    u_char                     name[PUSHER_CHANNEL_MAX];
} ngx_http_pusher_announce_t;

#define NGX_HTTP_PUSHER_ANNOUNCE_DONE      0
#define NGX_HTTP_PUSHER_ANNOUNCE_CHANNELS  1
#define NGX_HTTP_PUSHER_ANNOUNCE_PENDING   2
#define NGX_HTTP_PUSHER_ANNOUNCE_GONE      3


/* ngx_http_pusher_module.c */
extern ngx_module_t  ngx_http_pusher_module;

/*
 * pusher_debug on: one "[notice] ... pusher debug: ..." line in the
 * error_log per connection, subscription, client event, delivery and
 * close; never a secret, a signature or event data (sizes only)
 */
extern ngx_uint_t    ngx_http_pusher_debug_on;

#define ngx_http_pusher_debug(fmt, ...)                                      \
    do {                                                                     \
        if (ngx_http_pusher_debug_on) {                                      \
            ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,                 \
                          "pusher debug: " fmt, __VA_ARGS__);                \
        }                                                                    \
    } while (0)

/* text of a client for a debug line: JSON-escaped, cut to fit buf */
ngx_str_t ngx_http_pusher_debug_text(u_char *buf, size_t size,
    const u_char *data, size_t len);
/* a text of at most 200 bytes, each escaped to at most 6, and "..." */
#define NGX_HTTP_PUSHER_DEBUG_TEXT  (6 * 200 + 3)

ngx_http_pusher_app_t *ngx_http_pusher_app_by_key(
    ngx_http_pusher_main_conf_t *pmcf, ngx_str_t *key);
ngx_http_pusher_app_t *ngx_http_pusher_app_by_id(
    ngx_http_pusher_main_conf_t *pmcf, u_char *id, size_t len);

/* ngx_http_pusher_zone.c */
ngx_int_t ngx_http_pusher_zone_add(ngx_conf_t *cf,
    ngx_http_pusher_main_conf_t *pmcf);
ngx_int_t ngx_http_pusher_zone_init_module(ngx_cycle_t *cycle);
void ngx_http_pusher_zone_init_worker(ngx_http_pusher_main_conf_t *pmcf);
ngx_int_t ngx_http_pusher_zone_connect(ngx_http_pusher_conn_t *pc);
void ngx_http_pusher_zone_disconnect(ngx_http_pusher_conn_t *pc,
    ngx_uint_t code);
void ngx_http_pusher_zone_exit_worker(ngx_http_pusher_main_conf_t *pmcf);
void ngx_http_pusher_zone_subscriptions(ngx_http_pusher_conn_t *pc,
    ngx_int_t delta);
ngx_http_pusher_zone_worker_t *ngx_http_pusher_zone_worker(void);

/* ngx_http_pusher_metrics.c */
char *ngx_http_pusher_metrics(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_pusher_metrics_flush(void);
void ngx_http_pusher_metrics_broker(u_char *data, size_t len);
void ngx_http_pusher_metrics_link_down(void);
ngx_uint_t ngx_http_pusher_close_code_index(ngx_uint_t code);

#define ngx_http_pusher_count_local(app, field, n)                            \
    do {                                                                      \
        (app)->metrics.field += (n);                                          \
        ngx_http_pusher_metrics_pending = 1;                                  \
    } while (0)

#define ngx_http_pusher_count(app, field)                                     \
    do {                                                                      \
        if ((app)->zone) {                                                    \
            (void) ngx_atomic_fetch_add(&(app)->zone->metrics.field, 1);      \
        }                                                                     \
    } while (0)

extern ngx_uint_t  ngx_http_pusher_metrics_pending;
ngx_uint_t ngx_http_pusher_draining(void);
ngx_uint_t ngx_http_pusher_keep_on_reload(ngx_http_pusher_conn_t *pc);

/* ngx_http_pusher_handler.c */
ngx_int_t ngx_http_pusher_handler(ngx_http_request_t *r);

/* ngx_http_pusher_ws.c */
ngx_int_t ngx_http_pusher_ws_init_worker(ngx_cycle_t *cycle);
void ngx_http_pusher_ws_exit_worker(void);
u_char *ngx_http_pusher_pipelined_buffer(size_t len);
void ngx_http_pusher_ws_start(ngx_http_pusher_conn_t *pc, u_char *pipelined,
    size_t len);
ngx_http_pusher_msg_t *ngx_http_pusher_msg_alloc(size_t len);
void ngx_http_pusher_msg_release(ngx_http_pusher_msg_t *msg);
ngx_int_t ngx_http_pusher_queue(ngx_http_pusher_conn_t *pc,
    ngx_http_pusher_msg_t *msg);
ngx_int_t ngx_http_pusher_send_text(ngx_http_pusher_conn_t *pc, u_char *json,
    size_t len);
ngx_int_t ngx_http_pusher_send_pong_text(ngx_http_pusher_conn_t *pc,
    u_char *json, size_t len);
ngx_int_t ngx_http_pusher_send_control(ngx_http_pusher_conn_t *pc,
    ngx_uint_t opcode, const u_char *data, size_t len);
void ngx_http_pusher_send_close(ngx_http_pusher_conn_t *pc, ngx_uint_t code,
    const char *reason);
void ngx_http_pusher_flush_dirty(void);
void ngx_http_pusher_flush_fanout(void);
void ngx_http_pusher_ws_close_all(void);
void ngx_http_pusher_ws_reconnect_subscribed(void);

/* ngx_http_pusher_session.c */
void ngx_http_pusher_session_open(ngx_http_pusher_conn_t *pc);
void ngx_http_pusher_session_message(ngx_http_pusher_conn_t *pc,
    const u_char *data, size_t len);
void ngx_http_pusher_session_ping(ngx_http_pusher_conn_t *pc);
void ngx_http_pusher_session_error(ngx_http_pusher_conn_t *pc,
    ngx_uint_t code, const char *message, ngx_uint_t close);
size_t ngx_http_pusher_socket_id(ngx_http_pusher_conn_t *pc, u_char *buf);
ngx_int_t ngx_http_pusher_session_init_worker(
    ngx_http_pusher_main_conf_t *pmcf, ngx_log_t *log);
void ngx_http_pusher_user_online(ngx_http_pusher_conn_t *pc);
void ngx_http_pusher_user_offline(ngx_http_pusher_conn_t *pc);
void ngx_http_pusher_session_subscription_error(ngx_http_pusher_conn_t *pc,
    pusher_str_t *channel, const char *type, const char *error,
    ngx_uint_t status, const char *why);
const char *ngx_http_pusher_session_socket(ngx_http_pusher_conn_t *pc,
    u_char *buf);
void ngx_http_pusher_debug_keep_origin(ngx_http_pusher_conn_t *pc);
void ngx_http_pusher_debug_subscribed(ngx_http_pusher_conn_t *pc,
    u_char *channel, size_t len, const char *how);

/* ngx_http_pusher_channel.c */
void ngx_http_pusher_channel_init_worker(ngx_http_pusher_main_conf_t *pmcf);
ngx_int_t ngx_http_pusher_subscribe(ngx_http_pusher_conn_t *pc,
    u_char *name, size_t len);
void ngx_http_pusher_unsubscribe(ngx_http_pusher_conn_t *pc,
    u_char *name, size_t len);
void ngx_http_pusher_unsubscribe_all(ngx_http_pusher_conn_t *pc);
ngx_int_t ngx_http_pusher_subscribe_presence(ngx_http_pusher_conn_t *pc,
    u_char *name, size_t len, ngx_str_t *user_id, ngx_str_t *user_info);
ngx_http_pusher_sub_t *ngx_http_pusher_find_sub(ngx_http_pusher_conn_t *pc,
    u_char *name, size_t len);
void ngx_http_pusher_presence_joined(u_char *socket_id, size_t socket_id_len,
    u_char *channel, size_t channel_len, ngx_str_t *status, ngx_str_t *json,
    ngx_str_t *cache);
void ngx_http_pusher_announce_start(ngx_http_pusher_announce_t *pos);
ngx_int_t ngx_http_pusher_announce(ngx_http_pusher_main_conf_t *pmcf,
    ngx_http_pusher_announce_t *pos);
ngx_uint_t ngx_http_pusher_announce_passed(ngx_http_pusher_announce_t *pos,
    ngx_uint_t app, u_char *name, size_t len);
size_t ngx_http_pusher_state_size(ngx_http_pusher_main_conf_t *pmcf);
ngx_int_t ngx_http_pusher_subscribe_cache(ngx_http_pusher_conn_t *pc,
    u_char *name, size_t len);
void ngx_http_pusher_cache_answer(u_char *socket_id, size_t socket_id_len,
    u_char *channel, size_t channel_len, ngx_str_t *json,
    ngx_http_pusher_sub_t *sub);
void ngx_http_pusher_pending_retry(void);
void ngx_http_pusher_terminate(ngx_http_pusher_main_conf_t *pmcf,
    u_char *app_id, size_t app_id_len, u_char *user_id, size_t len);
void ngx_http_pusher_publish(ngx_http_pusher_main_conf_t *pmcf,
    pusher_ring_event_view_t *ev);

/* ngx_http_pusher_link.c */
ngx_int_t ngx_http_pusher_link_init_worker(ngx_cycle_t *cycle,
    ngx_http_pusher_main_conf_t *pmcf);
void ngx_http_pusher_link_exit_worker(void);
ngx_int_t ngx_http_pusher_uplink(ngx_uint_t type, ngx_str_t *fields,
    ngx_uint_t n);
ngx_uint_t ngx_http_pusher_uplink_busy(void);
void ngx_http_pusher_uplink_flush(void);
ngx_table_elt_t *ngx_http_pusher_header(ngx_http_request_t *r,
    const char *name, size_t len, const char *token, size_t token_len);
char *ngx_http_pusher_hello_encode(ngx_http_pusher_main_conf_t *pmcf,
    ngx_log_t *log, size_t *len);
void ngx_http_pusher_apps_write(ngx_cycle_t *cycle,
    ngx_http_pusher_main_conf_t *pmcf);
ngx_uint_t ngx_http_pusher_link_knows(ngx_http_pusher_app_t *app,
    u_char *name, size_t len);
ngx_int_t ngx_http_pusher_link_request_metrics(uint32_t id);

/* ngx_http_pusher_ring.c */
ngx_int_t ngx_http_pusher_ring_init_worker(ngx_cycle_t *cycle,
    ngx_http_pusher_main_conf_t *pmcf);
void ngx_http_pusher_ring_exit_worker(void);
ngx_int_t ngx_http_pusher_ring_attach(const char *name, uint64_t generation,
    ngx_uint_t slot);
void ngx_http_pusher_ring_detach(void);
void ngx_http_pusher_ring_doorbell(void);


#endif /* _NGX_HTTP_PUSHER_MODULE_H_INCLUDED_ */
