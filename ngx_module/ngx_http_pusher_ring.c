
/*
 * Copyright (C) ngx-pusher authors
 */


#include "ngx_http_pusher_module.h"
#include "pusher_ctl.h"

#include <cjson/cJSON.h>


/* control input starts this big and grows for large PRESENCE_JOINED */
#define NGX_HTTP_PUSHER_CTL_BUFFER  4096

/* uplink bytes queued while the broker reads slowly; then the link drops */
#define NGX_HTTP_PUSHER_UPLINK_MAX  (8 * 1024 * 1024)


/*
 * The worker's link to pusher-broker: a unix stream connection that
 * carries HELLO (our apps) up and WELCOME and DOORBELL down, and the
 * mapped segment whose ring this worker reads.  Neither the link nor the
 * segment is needed to start or to serve: without a broker no events
 * arrive, and the link is retried from a timer.
 */

typedef struct {
    ngx_http_pusher_main_conf_t  *pmcf;
    ngx_log_t                    *log;

    ngx_connection_t             *conn;
    ngx_event_t                   reconnect;
    ngx_event_t                   poll;
    ngx_event_t                   drain;
    ngx_msec_t                    backoff;
    ngx_uint_t                    reported;        /* unreachable logged */

    u_char                       *in;
    size_t                        in_len;
    size_t                        in_cap;
    u_char                       *out;             /* uplink queue */
    size_t                        out_len;
    size_t                        out_sent;
    size_t                        out_cap;
    ngx_uint_t                    welcomed;        /* WELCOME received */

    u_char                       *base;            /* mapped segment */
    size_t                        size;
    uint64_t                      generation;
    pusher_ring_t                 ring;
    pusher_ring_reader_t          reader;
    pusher_shm_wake_t            *wake;            /* NULL: not linked */
    u_char                       *scratch;         /* max_record bytes */
    size_t                        scratch_size;
    uint64_t                      start_ms;        /* this worker's start */
} ngx_http_pusher_broker_t;


static void ngx_http_pusher_ring_connect(ngx_event_t *ev);
static void ngx_http_pusher_ring_retry(ngx_http_pusher_broker_t *b);
static void ngx_http_pusher_ring_close(ngx_http_pusher_broker_t *b);
static ngx_int_t ngx_http_pusher_ring_hello(ngx_http_pusher_broker_t *b);
static ngx_int_t ngx_http_pusher_ring_hello_webhooks(cJSON *json,
    ngx_http_pusher_app_t *app);
static ngx_int_t ngx_http_pusher_ring_append(ngx_http_pusher_broker_t *b,
    ngx_uint_t type, ngx_str_t *fields, ngx_uint_t n);
static void ngx_http_pusher_ring_answer(ngx_http_pusher_broker_t *b,
    int32_t type, u_char *data, size_t len);
static void ngx_http_pusher_ring_read(ngx_event_t *rev);
static void ngx_http_pusher_ring_write(ngx_event_t *wev);
static ngx_int_t ngx_http_pusher_ring_welcome(ngx_http_pusher_broker_t *b,
    u_char *data, size_t len);
static ngx_int_t ngx_http_pusher_ring_map(ngx_http_pusher_broker_t *b,
    const char *name, uint64_t generation, ngx_uint_t slot);
static void ngx_http_pusher_ring_unmap(ngx_http_pusher_broker_t *b);
static void ngx_http_pusher_ring_poll(ngx_event_t *ev);
static void ngx_http_pusher_ring_drain(ngx_event_t *ev);
static void ngx_http_pusher_ring_drain_all(ngx_http_pusher_broker_t *b);
static ngx_int_t ngx_http_pusher_ring_next(ngx_http_pusher_broker_t *b);


static ngx_http_pusher_broker_t  ngx_http_pusher_broker;


ngx_int_t
ngx_http_pusher_ring_init_worker(ngx_cycle_t *cycle,
    ngx_http_pusher_main_conf_t *pmcf)
{
    ngx_time_t                *tp;
    ngx_http_pusher_broker_t  *b;

    b = &ngx_http_pusher_broker;

    ngx_memzero(b, sizeof(ngx_http_pusher_broker_t));

    b->pmcf = pmcf;
    b->log = cycle->log;
    b->backoff = NGX_HTTP_PUSHER_RECONNECT_MIN;

    tp = ngx_timeofday();
    b->start_ms = (uint64_t) tp->sec * 1000 + tp->msec;

    b->in = ngx_alloc(NGX_HTTP_PUSHER_CTL_BUFFER, cycle->log);
    if (b->in == NULL) {
        return NGX_ERROR;
    }

    b->in_cap = NGX_HTTP_PUSHER_CTL_BUFFER;

    b->reconnect.handler = ngx_http_pusher_ring_connect;
    b->reconnect.data = b;
    b->reconnect.log = cycle->log;
    b->reconnect.cancelable = 1;

    b->poll.handler = ngx_http_pusher_ring_poll;
    b->poll.data = b;
    b->poll.log = cycle->log;
    b->poll.cancelable = 1;

    b->drain.handler = ngx_http_pusher_ring_drain;
    b->drain.data = b;
    b->drain.log = cycle->log;

    ngx_add_timer(&b->poll, NGX_HTTP_PUSHER_SAFETY_POLL);

    ngx_http_pusher_ring_connect(&b->reconnect);

    return NGX_OK;
}


void
ngx_http_pusher_ring_exit_worker(void)
{
    ngx_http_pusher_broker_t  *b;

    b = &ngx_http_pusher_broker;

    if (b->pmcf == NULL) {
        return;
    }

    ngx_http_pusher_ring_close(b);
    ngx_http_pusher_ring_unmap(b);

    if (b->in) {
        ngx_free(b->in);
        b->in = NULL;
    }

    if (b->out) {
        ngx_free(b->out);
        b->out = NULL;
    }

    b->pmcf = NULL;
}


static void
ngx_http_pusher_ring_connect(ngx_event_t *ev)
{
    ngx_http_pusher_broker_t *b = ev->data;

    int                  rc;
    ngx_err_t            err;
    ngx_socket_t         s;
    ngx_connection_t    *c;
    struct sockaddr_un   sun;

    if (ngx_terminate || (ngx_exiting && !ngx_http_pusher_draining())) {
        return;
    }

    s = ngx_socket(AF_UNIX, SOCK_STREAM, 0);

    if (s == (ngx_socket_t) -1) {
        ngx_log_error(NGX_LOG_ALERT, b->log, ngx_socket_errno,
                      ngx_socket_n " failed");
        ngx_http_pusher_ring_retry(b);
        return;
    }

    if (ngx_nonblocking(s) == -1) {
        ngx_log_error(NGX_LOG_ALERT, b->log, ngx_socket_errno,
                      ngx_nonblocking_n " failed");
        ngx_close_socket(s);
        ngx_http_pusher_ring_retry(b);
        return;
    }

    ngx_memzero(&sun, sizeof(struct sockaddr_un));
    sun.sun_family = AF_UNIX;
    ngx_memcpy(sun.sun_path, b->pmcf->broker.data, b->pmcf->broker.len);

    rc = connect(s, (struct sockaddr *) &sun, sizeof(struct sockaddr_un));
    err = ngx_socket_errno;

    if (rc == -1 && err != NGX_EINPROGRESS && err != NGX_EAGAIN) {

        if (!b->reported) {
            ngx_log_error(NGX_LOG_WARN, b->log, err,
                          "pusher: broker is not reachable at \"%V\", "
                          "retrying", &b->pmcf->broker);
            b->reported = 1;
        }

        ngx_close_socket(s);
        ngx_http_pusher_ring_retry(b);
        return;
    }

    c = ngx_get_connection(s, b->log);
    if (c == NULL) {
        ngx_close_socket(s);
        ngx_http_pusher_ring_retry(b);
        return;
    }

    c->data = b;
    c->log = b->log;
    c->read->handler = ngx_http_pusher_ring_read;
    c->write->handler = ngx_http_pusher_ring_write;
    c->read->log = b->log;
    c->write->log = b->log;
    c->recv = ngx_recv;
    c->send = ngx_send;

    /* graceful shutdown closes the link through the read handler */
    c->idle = !ngx_exiting;

    if (ngx_add_conn) {
        if (ngx_add_conn(c) == NGX_ERROR) {
            ngx_close_connection(c);
            ngx_http_pusher_ring_retry(b);
            return;
        }

    } else {
        if (ngx_add_event(c->read, NGX_READ_EVENT, NGX_CLEAR_EVENT) != NGX_OK
            || ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_CLEAR_EVENT)
               != NGX_OK)
        {
            ngx_close_connection(c);
            ngx_http_pusher_ring_retry(b);
            return;
        }
    }

    b->conn = c;
    b->in_len = 0;

    if (rc == 0) {
        c->write->ready = 1;
    }

    if (ngx_http_pusher_ring_hello(b) != NGX_OK) {
        ngx_http_pusher_ring_close(b);
        ngx_http_pusher_ring_retry(b);
        return;
    }

    ngx_http_pusher_ring_write(c->write);
}


static void
ngx_http_pusher_ring_retry(ngx_http_pusher_broker_t *b)
{
    if (ngx_terminate || (ngx_exiting && !ngx_http_pusher_draining())) {
        return;
    }

    ngx_add_timer(&b->reconnect, b->backoff);

    b->backoff *= 2;

    if (b->backoff > NGX_HTTP_PUSHER_RECONNECT_MAX) {
        b->backoff = NGX_HTTP_PUSHER_RECONNECT_MAX;
    }
}


/*
 * Drops the link; the mapping stays (nothing new will appear in it) until
 * a WELCOME names another generation.
 */

static void
ngx_http_pusher_ring_close(ngx_http_pusher_broker_t *b)
{
    if (b->conn) {
        ngx_close_connection(b->conn);
        b->conn = NULL;
    }

    b->out_len = 0;
    b->out_sent = 0;
    b->welcomed = 0;

    /* the broker hands our wake slot to the next worker */
    b->wake = NULL;
}


/*
 * HELLO: {"pid":N,"conf_time":MS,"apps":[{"id","key","secret",...},...]},
 * each app with the settings the broker enforces and its webhooks
 */

static ngx_int_t
ngx_http_pusher_ring_hello(ngx_http_pusher_broker_t *b)
{
    char                   *json;
    size_t                  len;
    cJSON                  *root, *apps, *app;
    ngx_uint_t              i;
    ngx_http_pusher_app_t  *a;

    root = cJSON_CreateObject();
    if (root == NULL) {
        return NGX_ERROR;
    }

    apps = NULL;

    if (cJSON_AddNumberToObject(root, "pid", (double) ngx_pid) == NULL
        || cJSON_AddNumberToObject(root, "conf_time",
                                   (double) b->pmcf->conf_time)
           == NULL
        || (apps = cJSON_AddArrayToObject(root, "apps")) == NULL)
    {
        cJSON_Delete(root);
        return NGX_ERROR;
    }

    a = b->pmcf->apps.elts;

    for (i = 0; i < b->pmcf->apps.nelts; i++) {
        app = cJSON_CreateObject();

        if (app == NULL || !cJSON_AddItemToArray(apps, app)) {
            cJSON_Delete(app);
            cJSON_Delete(root);
            return NGX_ERROR;
        }

        /* ngx_str_t values from the configuration are NUL-terminated */

        if (cJSON_AddStringToObject(app, "id", (char *) a[i].id.data) == NULL
            || cJSON_AddStringToObject(app, "key", (char *) a[i].key.data)
               == NULL
            || cJSON_AddStringToObject(app, "secret",
                                       (char *) a[i].secret.data)
               == NULL
            || cJSON_AddNumberToObject(app, "cache_ttl",
                                       (double) a[i].cache_ttl)
               == NULL
            || cJSON_AddBoolToObject(app, "subscription_count",
                                     a[i].subscription_count ? 1 : 0)
               == NULL
            || cJSON_AddNumberToObject(app, "max_event_data",
                                       (double) a[i].max_event_data)
               == NULL
            || cJSON_AddNumberToObject(app, "max_channels",
                                       (double) a[i].max_event_channels)
               == NULL
            || cJSON_AddNumberToObject(app, "max_event_name",
                                       (double) a[i].max_event_name)
               == NULL
            || cJSON_AddNumberToObject(app, "max_batch",
                                       (double) a[i].max_batch_events)
               == NULL
            || cJSON_AddNumberToObject(app, "max_request_size",
                                       (double) a[i].max_request_size)
               == NULL
            || cJSON_AddNumberToObject(app, "webhook_vacated_delay",
                                       (double) a[i].webhook_vacated_delay)
               == NULL
            || ngx_http_pusher_ring_hello_webhooks(app, &a[i]) != NGX_OK)
        {
            cJSON_Delete(root);
            return NGX_ERROR;
        }
    }

    json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);

    if (json == NULL) {
        return NGX_ERROR;
    }

    b->out_len = 0;
    b->out_sent = 0;

    len = ngx_strlen(json);

    if (b->out_cap < PUSHER_CTL_HEADER_SIZE + len) {
        if (b->out) {
            ngx_free(b->out);
        }

        b->out_cap = ngx_max(PUSHER_CTL_HEADER_SIZE + len, 65536);

        b->out = ngx_alloc(b->out_cap, b->log);
        if (b->out == NULL) {
            b->out_cap = 0;
            cJSON_free(json);
            return NGX_ERROR;
        }
    }

    pusher_ctl_header_write(b->out, PUSHER_CTL_HELLO, (uint32_t) len);
    ngx_memcpy(b->out + PUSHER_CTL_HEADER_SIZE, json, len);
    cJSON_free(json);

    b->out_len = PUSHER_CTL_HEADER_SIZE + len;

    return NGX_OK;
}


/*
 * "webhooks":[{"url":U,"event_types":[...],"filter":{
 *     "channel_name_starts_with":P,"channel_name_ends_with":S},
 *     "headers":{N:V,...}},...]
 */

static ngx_int_t
ngx_http_pusher_ring_hello_webhooks(cJSON *json, ngx_http_pusher_app_t *app)
{
    cJSON                      *list, *item, *types, *filter, *headers;
    ngx_uint_t                  i, k;
    ngx_keyval_t               *kv;
    ngx_http_pusher_webhook_t  *wh;

    if (app->webhooks == NULL) {
        return NGX_OK;
    }

    list = cJSON_AddArrayToObject(json, "webhooks");
    if (list == NULL) {
        return NGX_ERROR;
    }

    wh = app->webhooks->elts;

    for (i = 0; i < app->webhooks->nelts; i++) {
        item = cJSON_CreateObject();

        if (item == NULL || !cJSON_AddItemToArray(list, item)) {
            cJSON_Delete(item);
            return NGX_ERROR;
        }

        /* configuration strings are NUL-terminated */

        if (cJSON_AddStringToObject(item, "url", (char *) wh[i].url.data)
            == NULL)
        {
            return NGX_ERROR;
        }

        types = cJSON_AddArrayToObject(item, "event_types");
        if (types == NULL) {
            return NGX_ERROR;
        }

        for (k = 0; k < PUSHER_WEBHOOK_TYPES; k++) {
            if ((wh[i].events & (1u << k))
                && !cJSON_AddItemToArray(types, cJSON_CreateString(
                       pusher_webhook_event_name(k))))
            {
                return NGX_ERROR;
            }
        }

        filter = cJSON_AddObjectToObject(item, "filter");

        if (filter == NULL
            || (wh[i].prefix.len
                && cJSON_AddStringToObject(filter, "channel_name_starts_with",
                                           (char *) wh[i].prefix.data)
                   == NULL)
            || (wh[i].suffix.len
                && cJSON_AddStringToObject(filter, "channel_name_ends_with",
                                           (char *) wh[i].suffix.data)
                   == NULL))
        {
            return NGX_ERROR;
        }

        headers = cJSON_AddObjectToObject(item, "headers");
        if (headers == NULL) {
            return NGX_ERROR;
        }

        if (wh[i].headers == NULL) {
            continue;
        }

        kv = wh[i].headers->elts;

        for (k = 0; k < wh[i].headers->nelts; k++) {
            if (cJSON_AddStringToObject(headers, (char *) kv[k].key.data,
                                        (char *) kv[k].value.data)
                == NULL)
            {
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


/*
 * Queues an uplink message; it is written from a posted write event, so a
 * burst of messages goes out in one send().  Before WELCOME nothing is
 * queued: the presence announcement after WELCOME covers that time, and a
 * client event sent while the broker is away is lost.
 */

ngx_int_t
ngx_http_pusher_uplink(ngx_uint_t type, ngx_str_t *fields, ngx_uint_t n)
{
    ngx_http_pusher_broker_t  *b;

    b = &ngx_http_pusher_broker;

    if (b->conn == NULL || !b->welcomed) {
        return NGX_DECLINED;
    }

    if (ngx_http_pusher_ring_append(b, type, fields, n) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, b->log, 0,
                      "pusher: the broker does not read its control "
                      "socket, reconnecting");
        ngx_http_pusher_ring_close(b);
        ngx_http_pusher_ring_retry(b);
        return NGX_ERROR;
    }

    ngx_post_event(b->conn->write, &ngx_posted_events);

    return NGX_OK;
}


static ngx_int_t
ngx_http_pusher_ring_append(ngx_http_pusher_broker_t *b, ngx_uint_t type,
    ngx_str_t *fields, ngx_uint_t n)
{
    u_char      *p;
    size_t       len, cap;
    ngx_uint_t   i;

    len = 0;

    for (i = 0; i < n; i++) {
        len += PUSHER_CTL_FIELD_SIZE(fields[i].len);
    }

    if (len > PUSHER_CTL_MAX_PAYLOAD) {
        return NGX_DECLINED;
    }

    if (b->out_sent && b->out_sent == b->out_len) {
        b->out_len = 0;
        b->out_sent = 0;
    }

    if (b->out_len + PUSHER_CTL_HEADER_SIZE + len > b->out_cap) {
        cap = ngx_max(b->out_cap * 2, b->out_len + PUSHER_CTL_HEADER_SIZE
                                      + len);

        if (cap > NGX_HTTP_PUSHER_UPLINK_MAX) {
            return NGX_ERROR;
        }

        p = ngx_alloc(cap, b->log);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(p, b->out + b->out_sent, b->out_len - b->out_sent);

        if (b->out) {
            ngx_free(b->out);
        }

        b->out = p;
        b->out_len -= b->out_sent;
        b->out_sent = 0;
        b->out_cap = cap;
    }

    p = b->out + b->out_len;
    pusher_ctl_header_write(p, (uint16_t) type, (uint32_t) len);
    p += PUSHER_CTL_HEADER_SIZE;

    for (i = 0; i < n; i++) {
        p = pusher_ctl_put(p, fields[i].data, (uint32_t) fields[i].len);
    }

    b->out_len = p - b->out;

    return NGX_OK;
}


static void
ngx_http_pusher_ring_write(ngx_event_t *wev)
{
    ssize_t                    n;
    ngx_connection_t          *c;
    ngx_http_pusher_broker_t  *b;

    c = wev->data;
    b = c->data;

    while (b->out_sent < b->out_len && wev->ready) {
        n = c->send(c, b->out + b->out_sent, b->out_len - b->out_sent);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == NGX_ERROR) {
            ngx_http_pusher_ring_close(b);
            ngx_http_pusher_ring_retry(b);
            return;
        }

        b->out_sent += n;
    }

    if (b->out_sent == b->out_len) {
        b->out_len = 0;
        b->out_sent = 0;
    }

    if (ngx_handle_write_event(wev, 0) != NGX_OK) {
        ngx_http_pusher_ring_close(b);
        ngx_http_pusher_ring_retry(b);
    }
}


static void
ngx_http_pusher_ring_read(ngx_event_t *rev)
{
    u_char                    *p;
    size_t                     len;
    ssize_t                    n;
    ngx_connection_t          *c;
    pusher_ctl_header_t        h;
    ngx_http_pusher_broker_t  *b;

    c = rev->data;
    b = c->data;

    if (c->close) {
        c->close = 0;

        /*
         * graceful shutdown; after a reload the sockets this worker keeps
         * still need the broker, and its memberships end with the link
         */

        if (c->error || !ngx_http_pusher_draining()) {
            ngx_http_pusher_ring_close(b);
            return;
        }

        c->idle = 0;
    }

    for ( ;; ) {

        n = c->recv(c, b->in + b->in_len, b->in_cap - b->in_len);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0 || n == NGX_ERROR) {
            ngx_log_error(NGX_LOG_WARN, b->log, 0,
                          "pusher: lost the broker connection, "
                          "reconnecting");
            ngx_http_pusher_ring_close(b);
            b->reported = 0;
            ngx_http_pusher_ring_retry(b);
            return;
        }

        b->in_len += n;

        while (b->in_len >= PUSHER_CTL_HEADER_SIZE) {

            pusher_ctl_header_read(b->in, &h);

            if (h.length > PUSHER_CTL_MAX_PAYLOAD) {
                ngx_log_error(NGX_LOG_ERR, b->log, 0,
                              "pusher: broker sent a %uD byte message",
                              h.length);
                ngx_http_pusher_ring_close(b);
                ngx_http_pusher_ring_retry(b);
                return;
            }

            len = PUSHER_CTL_HEADER_SIZE + h.length;

            if (b->in_len < len) {

                if (len > b->in_cap) {
                    p = ngx_alloc(len, b->log);
                    if (p == NULL) {
                        ngx_http_pusher_ring_close(b);
                        ngx_http_pusher_ring_retry(b);
                        return;
                    }

                    ngx_memcpy(p, b->in, b->in_len);
                    ngx_free(b->in);
                    b->in = p;
                    b->in_cap = len;
                }

                break;
            }

            switch (h.type) {

            case PUSHER_CTL_WELCOME:
                if (ngx_http_pusher_ring_welcome(b,
                                                 b->in
                                                 + PUSHER_CTL_HEADER_SIZE,
                                                 h.length)
                    != NGX_OK)
                {
                    ngx_http_pusher_ring_close(b);
                    ngx_http_pusher_ring_retry(b);
                    return;
                }

                break;

            case PUSHER_CTL_DOORBELL:
                ngx_http_pusher_ring_drain(&b->drain);
                break;

            default:
                ngx_log_debug1(NGX_LOG_DEBUG_HTTP, b->log, 0,
                               "pusher ring: control message %uD ignored",
                               (uint32_t) h.type);
                break;
            }

            ngx_memmove(b->in, b->in + len, b->in_len - len);
            b->in_len -= len;
        }

        if (!rev->ready) {
            break;
        }
    }

    /* frames queued for PRESENCE_JOINED and CACHE answers */
    ngx_http_pusher_flush_fanout();

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_http_pusher_ring_close(b);
        ngx_http_pusher_ring_retry(b);
    }
}


/* WELCOME: {"shm":"/name","generation":"N","slot":K,"size":BYTES} */

static ngx_int_t
ngx_http_pusher_ring_welcome(ngx_http_pusher_broker_t *b, u_char *data,
    size_t len)
{
    char      *end;
    cJSON     *root, *shm, *gen, *slot;
    uint64_t   generation;
    ngx_int_t  rc;

    root = cJSON_ParseWithLength((char *) data, len);
    if (root == NULL) {
        ngx_log_error(NGX_LOG_ERR, b->log, 0,
                      "pusher: broker sent an invalid WELCOME");
        return NGX_ERROR;
    }

    shm = cJSON_GetObjectItemCaseSensitive(root, "shm");
    gen = cJSON_GetObjectItemCaseSensitive(root, "generation");
    slot = cJSON_GetObjectItemCaseSensitive(root, "slot");

    if (!cJSON_IsString(shm) || !cJSON_IsString(gen) || !cJSON_IsNumber(slot)
        || slot->valuedouble < 0 || slot->valuedouble >= PUSHER_SHM_WAKE_SLOTS)
    {
        ngx_log_error(NGX_LOG_ERR, b->log, 0,
                      "pusher: broker sent an invalid WELCOME");
        cJSON_Delete(root);
        return NGX_ERROR;
    }

    generation = strtoull(gen->valuestring, &end, 10);

    rc = ngx_http_pusher_ring_map(b, shm->valuestring, generation,
                                  (ngx_uint_t) slot->valuedouble);

    cJSON_Delete(root);

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    b->backoff = NGX_HTTP_PUSHER_RECONNECT_MIN;
    b->reported = 0;
    b->welcomed = 1;

    ngx_log_error(NGX_LOG_INFO, b->log, 0,
                  "pusher: attached to broker generation %uL", generation);

    ngx_http_pusher_announce(b->pmcf);

    ngx_http_pusher_ring_drain(&b->drain);

    return NGX_OK;
}


/*
 * PUSHER_RING_PRESENCE_JOINED (socket_id, channel, status, json, cache) and
 * PUSHER_RING_CACHE (socket_id, channel, json): every worker reads them,
 * the one whose pid starts the socket_id acts.  PUSHER_RING_TERMINATE
 * (app_id, user_id) concerns every worker.
 */

static void
ngx_http_pusher_ring_answer(ngx_http_pusher_broker_t *b, int32_t type,
    u_char *data, size_t len)
{
    u_char         *dot;
    uint32_t        n[5];
    ngx_str_t       status, json, cache;
    ngx_uint_t      i, nf;
    const uint8_t  *pos, *end, *f[5];

    nf = (type == PUSHER_RING_PRESENCE_JOINED) ? 5
         : (type == PUSHER_RING_CACHE) ? 3 : 2;
    pos = data;
    end = data + len;

    for (i = 0; i < nf; i++) {
        if (pusher_ctl_get(&pos, end, &f[i], &n[i]) != 0) {
            ngx_log_error(NGX_LOG_ALERT, b->log, 0,
                          "pusher: malformed ring answer of %uz bytes", len);
            return;
        }
    }

    if (type == PUSHER_RING_TERMINATE) {
        ngx_http_pusher_terminate(b->pmcf, (u_char *) f[0], n[0],
                                  (u_char *) f[1], n[1]);
        return;
    }

    dot = ngx_strlchr((u_char *) f[0], (u_char *) f[0] + n[0], '.');

    if (dot == NULL
        || ngx_atoi((u_char *) f[0], dot - f[0]) != (ngx_int_t) ngx_pid)
    {
        return;
    }

    if (type == PUSHER_RING_CACHE) {
        json.data = (u_char *) f[2];
        json.len = n[2];

        ngx_http_pusher_cache_answer((u_char *) f[0], n[0], (u_char *) f[1],
                                     n[1], &json, NULL);
        return;
    }

    status.data = (u_char *) f[2];
    status.len = n[2];
    json.data = (u_char *) f[3];
    json.len = n[3];
    cache.data = (u_char *) f[4];
    cache.len = n[4];

    ngx_http_pusher_presence_joined((u_char *) f[0], n[0], (u_char *) f[1],
                                    n[1], &status, &json, &cache);
}


static ngx_int_t
ngx_http_pusher_ring_map(ngx_http_pusher_broker_t *b, const char *name,
    uint64_t generation, ngx_uint_t slot)
{
    int                   fd;
    u_char               *base, *scratch;
    uint32_t              version;
    struct stat           st;
    pusher_ring_t         ring;
    pusher_shm_header_t  *hdr;

    if (b->base && b->generation == generation) {
        /* the same broker after a reconnect: keep the cursor */
        b->wake = pusher_shm_wake(b->base, (uint32_t) slot);
        pusher_ring_store_cursor(b->wake, &b->reader);
        return NGX_OK;
    }

    fd = shm_open(name, O_RDWR, 0);
    if (fd == -1) {
        ngx_log_error(NGX_LOG_ERR, b->log, ngx_errno,
                      "pusher: shm_open(\"%s\") failed", name);
        return NGX_ERROR;
    }

    if (fstat(fd, &st) == -1 || st.st_size < PUSHER_SHM_RING_OFFSET) {
        ngx_log_error(NGX_LOG_ERR, b->log, ngx_errno,
                      "pusher: broker segment \"%s\" is too small", name);
        close(fd);
        return NGX_ERROR;
    }

    base = mmap(NULL, (size_t) st.st_size, PROT_READ|PROT_WRITE, MAP_SHARED,
                fd, 0);
    close(fd);

    if (base == MAP_FAILED) {
        ngx_log_error(NGX_LOG_ERR, b->log, ngx_errno,
                      "pusher: mmap(\"%s\") failed", name);
        return NGX_ERROR;
    }

    hdr = pusher_shm_header(base);

    /* pairs with the broker's store-release of layout_version, last */
    version = pusher_load_acquire_u32(&hdr->layout_version);

    if (hdr->magic != PUSHER_SHM_MAGIC
        || version != PUSHER_SHM_LAYOUT_VERSION
        || hdr->generation != generation
        || hdr->ring_offset != PUSHER_SHM_RING_OFFSET
        || hdr->desc_offset != PUSHER_SHM_DESC_OFFSET
        || hdr->wake_offset != PUSHER_SHM_WAKE_OFFSET
        || hdr->segment_size > (uint64_t) st.st_size
        || hdr->ring_capacity > hdr->segment_size - PUSHER_SHM_RING_OFFSET
        || pusher_ring_init(&ring, pusher_shm_ring(base), hdr->ring_capacity,
                            pusher_shm_desc(base))
           != 0)
    {
        ngx_log_error(NGX_LOG_ERR, b->log, 0,
                      "pusher: broker segment \"%s\" is not compatible "
                      "(layout version %uD, this module has %d)",
                      name, version, PUSHER_SHM_LAYOUT_VERSION);
        munmap(base, (size_t) st.st_size);
        return NGX_ERROR;
    }

    /*
     * What the old broker wrote and answered 200 for, and this worker has
     * not read yet (its doorbell died with it), is delivered first.
     */

    ngx_http_pusher_ring_drain_all(b);

    scratch = b->scratch;

    if (b->scratch_size < ring.max_record) {
        scratch = ngx_alloc(ring.max_record, b->log);
        if (scratch == NULL) {
            munmap(base, (size_t) st.st_size);
            return NGX_ERROR;
        }
    }

    ngx_http_pusher_ring_unmap(b);

    if (b->scratch != scratch) {
        if (b->scratch) {
            ngx_free(b->scratch);
        }

        b->scratch = scratch;
        b->scratch_size = ring.max_record;
    }

    b->base = base;
    b->size = (size_t) st.st_size;
    b->generation = generation;
    b->ring = ring;
    b->wake = pusher_shm_wake(base, (uint32_t) slot);

    /*
     * A broker that started after this worker may have published before
     * we attached: read its generation from the start.  Otherwise the old
     * records are for sockets this worker never had.
     */

    pusher_ring_reader_init(&b->reader, &b->ring,
                            hdr->start_time_ms >= b->start_ms);

    /* the broker writes nothing over what we are yet to read */
    pusher_ring_store_cursor(b->wake, &b->reader);

    return NGX_OK;
}


static void
ngx_http_pusher_ring_unmap(ngx_http_pusher_broker_t *b)
{
    if (b->base) {
        munmap(b->base, b->size);
        b->base = NULL;
    }

    b->wake = NULL;
}


static void
ngx_http_pusher_ring_poll(ngx_event_t *ev)
{
    ngx_http_pusher_broker_t *b = ev->data;

    /* cancelable: it keeps a worker draining after a reload going */

    if (ngx_terminate) {
        return;
    }

    if (ngx_exiting && !ngx_http_pusher_draining()) {
        /* nginx stops: no more reason to keep sockets from a reload */
        ngx_http_pusher_ws_close_all();
    }

    ngx_http_pusher_ring_drain(&b->drain);

    ngx_add_timer(ev, NGX_HTTP_PUSHER_SAFETY_POLL);
}


/*
 * Reads up to NGX_HTTP_PUSHER_DRAIN_BATCH records, fans them out, writes
 * the sockets once, and either posts itself again or arms the wake slot
 * before the event loop sleeps.
 */

static void
ngx_http_pusher_ring_drain(ngx_event_t *ev)
{
    ngx_http_pusher_broker_t *b = ev->data;

    ngx_uint_t  n;

    if (b->base == NULL) {
        return;
    }

    for (n = 0; n < NGX_HTTP_PUSHER_DRAIN_BATCH; n++) {
        if (ngx_http_pusher_ring_next(b) != NGX_OK) {
            break;
        }
    }

    ngx_http_pusher_flush_fanout();

    if (n == NGX_HTTP_PUSHER_DRAIN_BATCH) {
        ngx_post_event(&b->drain, &ngx_posted_events);
        return;
    }

    if (b->wake && pusher_ring_arm(&b->ring, b->wake, &b->reader)) {
        ngx_post_event(&b->drain, &ngx_posted_events);
    }
}


/* everything left in the ring of a broker that is gone */

static void
ngx_http_pusher_ring_drain_all(ngx_http_pusher_broker_t *b)
{
    if (b->base == NULL) {
        return;
    }

    while (ngx_http_pusher_ring_next(b) == NGX_OK) {
        /* void */
    }

    ngx_http_pusher_flush_fanout();
}


/* reads and hands on one record: NGX_DONE when the ring is empty */

static ngx_int_t
ngx_http_pusher_ring_next(ngx_http_pusher_broker_t *b)
{
    int                       rc;
    int32_t                   type;
    uint32_t                  len;
    pusher_ring_event_view_t  view;

    rc = pusher_ring_read(&b->reader, &b->ring, b->scratch, &type, &len);

    if (rc == PUSHER_RING_EMPTY) {
        return NGX_DONE;
    }

    /* the record is copied: the broker may write over it */
    if (b->wake) {
        pusher_ring_store_cursor(b->wake, &b->reader);
    }

    if (rc == PUSHER_RING_LAPPED) {
        /*
         * The broker waits for a worker that keeps up; this one had
         * stopped (SIGSTOP, swapped out) and was overtaken.  Events are
         * lost for whatever it was subscribed to: never silently, its
         * subscribed sockets reconnect and their apps refetch.
         */
        ngx_log_error(NGX_LOG_WARN, b->log, 0,
                      "pusher: worker fell a whole ring behind the "
                      "broker (lapped %uL times): subscribed sockets "
                      "are told to reconnect (4200)", b->reader.lapped);
        ngx_http_pusher_ws_reconnect_subscribed();
        ngx_http_pusher_pending_retry();
        return NGX_OK;
    }

    if (type == PUSHER_RING_PRESENCE_JOINED || type == PUSHER_RING_CACHE
        || type == PUSHER_RING_TERMINATE)
    {
        ngx_http_pusher_ring_answer(b, type, b->scratch, len);
        return NGX_OK;
    }

    if (type != PUSHER_RING_EVENT) {
        return NGX_OK;
    }

    if (pusher_ring_event_decode(b->scratch, len, &view) != 0) {
        ngx_log_error(NGX_LOG_ALERT, b->log, 0,
                      "pusher: malformed ring record of %uD bytes", len);
        return NGX_OK;
    }

    ngx_http_pusher_publish(b->pmcf, &view);

    return NGX_OK;
}
