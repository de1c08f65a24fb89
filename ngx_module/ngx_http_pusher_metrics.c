
/*
 * Copyright (C) ngx-pusher authors
 */


#include "ngx_http_pusher_module.h"


/*
 * pusher_metrics: Prometheus' text exposition format (version 0.0.4).
 *
 * The workers' part comes from the shared zone "ngx_http_pusher": per
 * app, counters every worker adds to with atomic adds (per-frame counts
 * are summed in the worker first and added once per batch, in
 * ngx_http_pusher_metrics_flush()), and per worker process slot its pid,
 * whether it is attached to a broker, and how often the ring overtook it.
 * The broker's part (HTTP API, webhooks, channels, ring lag) is asked for
 * over this worker's control connection (PUSHER_CTL_METRICS) and appended
 * as the broker wrote it; without an answer within a second, or without a
 * broker, the page has the workers' part and pusher_broker_up 0.
 *
 * Names follow soketi's where it has the same measure (soketi_ becomes
 * pusher_).  soketi's four byte counters have no "_total" suffix, which
 * Prometheus requires of a counter: they are exposed "untyped" under
 * soketi's names, which rate() and increase() take all the same.
 */


#define NGX_HTTP_PUSHER_METRICS_TIMEOUT  1000          /* ms */


typedef struct {
    const char                *name;
    const char                *type;
    const char                *help;
    size_t                     offset;      /* in ngx_http_pusher_zone_app_t */
} ngx_http_pusher_metric_t;


typedef struct {
    ngx_queue_t                queue;
    ngx_http_request_t        *request;
    ngx_event_t                timer;
    ngx_str_t                  workers;     /* the workers' part */
    uint32_t                   id;
    ngx_uint_t                 done;
} ngx_http_pusher_metrics_wait_t;


static ngx_int_t ngx_http_pusher_metrics_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_pusher_metrics_render(ngx_http_request_t *r,
    ngx_str_t *out);
static ngx_int_t ngx_http_pusher_metrics_send(ngx_http_request_t *r,
    ngx_str_t *workers, u_char *broker, size_t broker_len);
static void ngx_http_pusher_metrics_finish(ngx_http_pusher_metrics_wait_t *w,
    u_char *broker, size_t len);
static void ngx_http_pusher_metrics_timeout(ngx_event_t *ev);
static void ngx_http_pusher_metrics_cleanup(void *data);
static u_char *ngx_http_pusher_metrics_label(u_char *p, u_char *s,
    size_t len);


ngx_uint_t  ngx_http_pusher_metrics_pending;

static ngx_queue_t  ngx_http_pusher_metrics_waiting =
    { &ngx_http_pusher_metrics_waiting, &ngx_http_pusher_metrics_waiting };
static uint32_t     ngx_http_pusher_metrics_last_id;


/* the close codes counted apart; the last counter takes any other */
static const ngx_uint_t  ngx_http_pusher_close_codes[
    NGX_HTTP_PUSHER_CLOSE_CODES] =
{
    1000, 1001, 1002, 1003, 1006, 1007, 1008, 1009, 1010, 1011,
    4000, 4009, 4100, 4200, 4201, 4301
};


#define ngx_http_pusher_app_metric(field)                                     \
    offsetof(ngx_http_pusher_zone_app_t, metrics.field)

static ngx_http_pusher_metric_t  ngx_http_pusher_app_metrics[] = {

    { "pusher_connected", "gauge",
      "Open WebSocket connections of the app over all nginx workers",
      offsetof(ngx_http_pusher_zone_app_t, connections) },

    { "pusher_new_connections_total", "counter",
      "WebSocket connections accepted (connection_established sent)",
      ngx_http_pusher_app_metric(opened) },

    { "pusher_new_disconnections_total", "counter",
      "Accepted WebSocket connections that closed",
      ngx_http_pusher_app_metric(closed) },

    { "pusher_subscriptions", "gauge",
      "Channel subscriptions of open sockets, waiting ones included",
      ngx_http_pusher_app_metric(subscriptions) },

    { "pusher_socket_received_bytes", "untyped",
      "Bytes received from WebSocket clients (a counter; soketi's name)",
      ngx_http_pusher_app_metric(bytes_in) },

    { "pusher_socket_transmitted_bytes", "untyped",
      "Bytes of WebSocket frames queued to clients (a counter; soketi's "
      "name)",
      ngx_http_pusher_app_metric(bytes_out) },

    { "pusher_ws_messages_received_total", "counter",
      "WebSocket messages received from clients",
      ngx_http_pusher_app_metric(messages_in) },

    { "pusher_ws_messages_sent_total", "counter",
      "WebSocket frames queued to clients",
      ngx_http_pusher_app_metric(messages_out) },

    { "pusher_client_events_total", "counter",
      "Client events (client-*) relayed",
      ngx_http_pusher_app_metric(client_events) },

    { "pusher_client_event_rate_limited_total", "counter",
      "Client events refused by client_event_rate (4301)",
      ngx_http_pusher_app_metric(client_event_limited) },

    { "pusher_rate_limited_total", "counter",
      "Messages refused by rate_limit (4301)",
      ngx_http_pusher_app_metric(rate_limited) }
};


static ngx_http_pusher_metric_t  ngx_http_pusher_worker_metrics[] = {

    { "pusher_worker_broker_attached", "gauge",
      "1 while the nginx worker is attached to pusher-broker",
      offsetof(ngx_http_pusher_zone_worker_t, attached) },

    { "pusher_worker_broker_attaches_total", "counter",
      "Times the nginx worker attached to a broker (WELCOME)",
      offsetof(ngx_http_pusher_zone_worker_t, attaches) },

    { "pusher_ring_laps_total", "counter",
      "Times the broker overtook the nginx worker in the ring (its "
      "subscribed sockets were told to reconnect)",
      offsetof(ngx_http_pusher_zone_worker_t, laps) }
};


char *
ngx_http_pusher_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_pusher_metrics_handler;

    return NGX_CONF_OK;
}


ngx_uint_t
ngx_http_pusher_close_code_index(ngx_uint_t code)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_PUSHER_CLOSE_CODES; i++) {
        if (ngx_http_pusher_close_codes[i] == code) {
            return i;
        }
    }

    return NGX_HTTP_PUSHER_CLOSE_CODES;
}


/* adds this worker's per-frame counts to the zone: once per batch */

void
ngx_http_pusher_metrics_flush(void)
{
    ngx_uint_t                        i;
    ngx_http_pusher_app_t            *app;
    ngx_http_pusher_zone_metrics_t   *zm;
    ngx_http_pusher_local_metrics_t  *lm;
    ngx_http_pusher_main_conf_t      *pmcf;

    ngx_http_pusher_metrics_pending = 0;

    pmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_pusher_module);
    if (pmcf == NULL) {
        return;
    }

    app = pmcf->apps.elts;

    for (i = 0; i < pmcf->apps.nelts; i++) {
        lm = &app[i].metrics;

        if (app[i].zone == NULL) {
            ngx_memzero(lm, sizeof(ngx_http_pusher_local_metrics_t));
            continue;
        }

        zm = &app[i].zone->metrics;

        if (lm->messages_in) {
            (void) ngx_atomic_fetch_add(&zm->messages_in, lm->messages_in);
            lm->messages_in = 0;
        }

        if (lm->messages_out) {
            (void) ngx_atomic_fetch_add(&zm->messages_out, lm->messages_out);
            lm->messages_out = 0;
        }

        if (lm->bytes_in) {
            (void) ngx_atomic_fetch_add(&zm->bytes_in, lm->bytes_in);
            lm->bytes_in = 0;
        }

        if (lm->bytes_out) {
            (void) ngx_atomic_fetch_add(&zm->bytes_out, lm->bytes_out);
            lm->bytes_out = 0;
        }
    }
}


static ngx_int_t
ngx_http_pusher_metrics_handler(ngx_http_request_t *r)
{
    ngx_int_t                        rc;
    ngx_str_t                        workers;
    ngx_pool_cleanup_t              *cln;
    ngx_http_pusher_metrics_wait_t  *w;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    /* this worker's own counts first: the page is exact for it */

    if (ngx_http_pusher_metrics_pending) {
        ngx_http_pusher_metrics_flush();
    }

    if (ngx_http_pusher_metrics_render(r, &workers) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (r->header_only) {
        return ngx_http_pusher_metrics_send(r, &workers, NULL, 0);
    }

    w = ngx_pcalloc(r->pool, sizeof(ngx_http_pusher_metrics_wait_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (w == NULL || cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    w->request = r;
    w->workers = workers;
    w->id = ++ngx_http_pusher_metrics_last_id;

    if (ngx_http_pusher_link_request_metrics(w->id) != NGX_OK) {
        return ngx_http_pusher_metrics_send(r, &workers, NULL, 0);
    }

    w->timer.handler = ngx_http_pusher_metrics_timeout;
    w->timer.data = w;
    w->timer.log = r->connection->log;
    ngx_add_timer(&w->timer, NGX_HTTP_PUSHER_METRICS_TIMEOUT);

    ngx_queue_insert_tail(&ngx_http_pusher_metrics_waiting, &w->queue);

    cln->handler = ngx_http_pusher_metrics_cleanup;
    cln->data = w;

    r->main->count++;

    return NGX_DONE;
}


/* PUSHER_CTL_METRICS_TEXT: request id, text */

void
ngx_http_pusher_metrics_broker(u_char *data, size_t len)
{
    uint32_t                         n, id_len;
    ngx_int_t                        id;
    ngx_queue_t                     *q;
    const uint8_t                   *pos, *id_data, *text;
    ngx_http_pusher_metrics_wait_t  *w;

    pos = data;

    if (pusher_ctl_get(&pos, data + len, &id_data, &id_len) != 0
        || pusher_ctl_get(&pos, data + len, &text, &n) != 0)
    {
        return;
    }

    id = ngx_atoi((u_char *) id_data, id_len);

    if (id == NGX_ERROR) {
        return;
    }

    for (q = ngx_queue_head(&ngx_http_pusher_metrics_waiting);
         q != ngx_queue_sentinel(&ngx_http_pusher_metrics_waiting);
         q = ngx_queue_next(q))
    {
        w = ngx_queue_data(q, ngx_http_pusher_metrics_wait_t, queue);

        if (w->id == (uint32_t) id) {
            ngx_http_pusher_metrics_finish(w, (u_char *) text, n);
            return;
        }
    }
}


/* the link dropped: every waiting page goes without the broker's part */

void
ngx_http_pusher_metrics_link_down(void)
{
    ngx_queue_t                     *q;
    ngx_http_pusher_metrics_wait_t  *w;

    while (!ngx_queue_empty(&ngx_http_pusher_metrics_waiting)) {
        q = ngx_queue_head(&ngx_http_pusher_metrics_waiting);
        w = ngx_queue_data(q, ngx_http_pusher_metrics_wait_t, queue);
        ngx_http_pusher_metrics_finish(w, NULL, 0);
    }
}


static void
ngx_http_pusher_metrics_timeout(ngx_event_t *ev)
{
    ngx_http_pusher_metrics_wait_t  *w = ev->data;

    ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                  "pusher: the broker did not answer pusher_metrics in "
                  "%d ms", NGX_HTTP_PUSHER_METRICS_TIMEOUT);

    ngx_http_pusher_metrics_finish(w, NULL, 0);
}


static void
ngx_http_pusher_metrics_finish(ngx_http_pusher_metrics_wait_t *w,
    u_char *broker, size_t len)
{
    ngx_int_t            rc;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    ngx_queue_remove(&w->queue);
    w->done = 1;

    if (w->timer.timer_set) {
        ngx_del_timer(&w->timer);
    }

    r = w->request;
    c = r->connection;

    rc = ngx_http_pusher_metrics_send(r, &w->workers, broker, len);
    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_pusher_metrics_cleanup(void *data)
{
    ngx_http_pusher_metrics_wait_t  *w = data;

    if (w->done) {
        return;
    }

    ngx_queue_remove(&w->queue);
    w->done = 1;

    if (w->timer.timer_set) {
        ngx_del_timer(&w->timer);
    }
}


static ngx_int_t
ngx_http_pusher_metrics_send(ngx_http_request_t *r, ngx_str_t *workers,
    u_char *broker, size_t broker_len)
{
    size_t        tail_len;
    ngx_int_t     rc;
    ngx_buf_t    *b, *bb, *tb;
    ngx_chain_t   out[3];
    u_char        tail[128];

    tail_len = ngx_sprintf(tail,
                           "# HELP pusher_broker_up 1 if pusher-broker "
                           "answered for this page\n"
                           "# TYPE pusher_broker_up gauge\n"
                           "pusher_broker_up %d\n", broker ? 1 : 0)
               - tail;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = workers->len + broker_len + tail_len;
    ngx_str_set(&r->headers_out.content_type,
                "text/plain; version=0.0.4; charset=utf-8");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    tb = ngx_create_temp_buf(r->pool, tail_len);

    if (b == NULL || tb == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = workers->data;
    b->last = workers->data + workers->len;
    b->memory = 1;

    out[0].buf = b;
    out[0].next = &out[1];

    if (broker_len) {
        /* the control buffer is reused: the page keeps a copy */

        bb = ngx_create_temp_buf(r->pool, broker_len);
        if (bb == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        bb->last = ngx_cpymem(bb->last, broker, broker_len);
        out[1].buf = bb;
        out[1].next = &out[2];

    } else {
        out[0].next = &out[2];
    }

    tb->last = ngx_cpymem(tb->last, tail, tail_len);
    tb->last_buf = (r == r->main) ? 1 : 0;
    tb->last_in_chain = 1;
    out[2].buf = tb;
    out[2].next = NULL;

    return ngx_http_output_filter(r, &out[0]);
}


/* the workers' part, from the shared zone */

static ngx_int_t
ngx_http_pusher_metrics_render(ngx_http_request_t *r, ngx_str_t *out)
{
    u_char                         *p, *start;
    size_t                          size;
    ngx_uint_t                      i, j, k, apps, workers;
    ngx_atomic_uint_t               v;
    uint16_t                        app_index[NGX_HTTP_PUSHER_ZONE_APPS];
    uint16_t                        worker_index[NGX_MAX_PROCESSES];
    uint32_t                        worker_pid[NGX_MAX_PROCESSES];
    ngx_http_pusher_zone_t         *zone;
    ngx_http_pusher_metric_t       *m;
    ngx_http_pusher_zone_app_t     *za;
    ngx_http_pusher_zone_worker_t  *zw;
    ngx_http_pusher_main_conf_t    *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pusher_module);

    zone = pmcf ? pmcf->zone : NULL;

    if (zone == NULL) {
        out->data = (u_char *) "";
        out->len = 0;
        return NGX_OK;
    }

    /*
     * The entries in use, taken once: the master may add an app (a reload)
     * and workers come and go while the page is written, and the buffer is
     * sized for these.
     */

    apps = 0;

    for (i = 0; i < NGX_HTTP_PUSHER_ZONE_APPS; i++) {
        if (zone->apps[i].generation) {
            app_index[apps++] = (uint16_t) i;
        }
    }

    workers = 0;

    for (i = 0; i < NGX_MAX_PROCESSES; i++) {
        v = zone->workers[i].pid;

        if (v) {
            worker_pid[workers] = (uint32_t) v;
            worker_index[workers++] = (uint16_t) i;
        }
    }

    /*
     * a line: name, labels (an app id escaped: at most twice its length),
     * a 20-digit value; HELP and TYPE lines: at most 256 bytes
     */

    size = (sizeof(ngx_http_pusher_app_metrics)
            / sizeof(ngx_http_pusher_metric_t) + 2
            + sizeof(ngx_http_pusher_worker_metrics)
              / sizeof(ngx_http_pusher_metric_t))
           * 512
           + apps * (sizeof(ngx_http_pusher_app_metrics)
                     / sizeof(ngx_http_pusher_metric_t)
                     + NGX_HTTP_PUSHER_CLOSE_CODES + 1)
             * (128 + 2 * PUSHER_APP_ID_MAX)
           + workers * (sizeof(ngx_http_pusher_worker_metrics)
                        / sizeof(ngx_http_pusher_metric_t))
             * (128 + NGX_INT64_LEN);

    start = ngx_pnalloc(r->pool, size);
    if (start == NULL) {
        return NGX_ERROR;
    }

    p = start;

    for (k = 0; k < sizeof(ngx_http_pusher_app_metrics)
                    / sizeof(ngx_http_pusher_metric_t); k++)
    {
        m = &ngx_http_pusher_app_metrics[k];

        p = ngx_sprintf(p, "# HELP %s %s\n# TYPE %s %s\n",
                        m->name, m->help, m->name, m->type);

        for (j = 0; j < apps; j++) {
            za = &zone->apps[app_index[j]];

            v = *(ngx_atomic_t *) ((u_char *) za + m->offset);

            p = ngx_sprintf(p, "%s{app_id=\"", m->name);
            p = ngx_http_pusher_metrics_label(p, za->id,
                                              ngx_min(za->id_len,
                                                      PUSHER_APP_ID_MAX));
            /* a gauge seen between two workers' adds may dip below 0 */
            if (m->type[0] == 'g') {
                p = ngx_sprintf(p, "\"} %L\n", (int64_t) v);
            } else {
                p = ngx_sprintf(p, "\"} %uA\n", v);
            }
        }
    }

    p = ngx_sprintf(p, "# HELP pusher_close_codes_total Accepted WebSocket "
                       "connections that closed, by close code (1006: "
                       "closed without a close frame)\n"
                       "# TYPE pusher_close_codes_total counter\n");

    for (j = 0; j < apps; j++) {
        za = &zone->apps[app_index[j]];

        for (k = 0; k <= NGX_HTTP_PUSHER_CLOSE_CODES; k++) {
            p = ngx_cpymem(p, "pusher_close_codes_total{app_id=\"",
                           sizeof("pusher_close_codes_total{app_id=\"") - 1);
            p = ngx_http_pusher_metrics_label(p, za->id,
                                              ngx_min(za->id_len,
                                                      PUSHER_APP_ID_MAX));

            if (k < NGX_HTTP_PUSHER_CLOSE_CODES) {
                p = ngx_sprintf(p, "\",code=\"%ui\"} %uA\n",
                                ngx_http_pusher_close_codes[k],
                                za->metrics.closes[k]);
            } else {
                p = ngx_sprintf(p, "\",code=\"other\"} %uA\n",
                                za->metrics.closes[k]);
            }
        }
    }

    for (k = 0; k < sizeof(ngx_http_pusher_worker_metrics)
                    / sizeof(ngx_http_pusher_metric_t); k++)
    {
        m = &ngx_http_pusher_worker_metrics[k];

        p = ngx_sprintf(p, "# HELP %s %s\n# TYPE %s %s\n",
                        m->name, m->help, m->name, m->type);

        for (j = 0; j < workers; j++) {
            zw = &zone->workers[worker_index[j]];

            v = *(ngx_atomic_t *) ((u_char *) zw + m->offset);

            p = ngx_sprintf(p, "%s{pid=\"%uD\"} %uA\n", m->name, worker_pid[j],
                            v);
        }
    }

    out->data = start;
    out->len = p - start;

    return NGX_OK;
}


/* a label value: backslash, double quote and newline escaped */

static u_char *
ngx_http_pusher_metrics_label(u_char *p, u_char *s, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        switch (s[i]) {

        case '\\':
        case '"':
            *p++ = '\\';
            *p++ = s[i];
            break;

        case '\n':
            *p++ = '\\';
            *p++ = 'n';
            break;

        default:
            *p++ = s[i];
        }
    }

    return p;
}

