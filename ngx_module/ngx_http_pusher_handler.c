
/*
 * Copyright (C) ngx-pusher authors
 */


#include "ngx_http_pusher_module.h"


static ngx_int_t ngx_http_pusher_app_key(ngx_http_request_t *r,
    ngx_str_t *key);
static ngx_uint_t ngx_http_pusher_token(ngx_str_t *value, const char *token,
    size_t len);
static ngx_int_t ngx_http_pusher_send_426(ngx_http_request_t *r);
static ngx_uint_t ngx_http_pusher_origin_allowed(ngx_http_request_t *r,
    ngx_http_pusher_app_t *app);
static void ngx_http_pusher_handoff(ngx_event_t *wev);


#define NGX_HTTP_PUSHER_101                                                   \
    "HTTP/1.1 101 Switching Protocols" CRLF                                   \
    "Upgrade: websocket" CRLF                                                 \
    "Connection: Upgrade" CRLF                                                \
    "Sec-WebSocket-Accept: "


/*
 * The WebSocket upgrade on ".../app/{key}".  The 101 response is written
 * by the module itself together with pusher:connection_established, and
 * the request is freed right after (ngx_http_pusher_handoff), so that an
 * open socket keeps only its connection and a small context.
 */

ngx_int_t
ngx_http_pusher_handler(ngx_http_request_t *r)
{
    u_char                       *p;
    char                          accept[29];
    ngx_str_t                     key;
    ngx_int_t                     rc;
    ngx_table_elt_t              *h, *version;
    ngx_connection_t             *c;
    ngx_http_pusher_app_t        *app;
    ngx_http_pusher_msg_t        *msg;
    ngx_http_pusher_conn_t       *pc;
    ngx_http_core_loc_conf_t     *clcf;
    ngx_http_pusher_main_conf_t  *pmcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    if (r->method != NGX_HTTP_GET) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_pusher_app_key(r, &key);
    if (rc != NGX_OK) {
        return rc;
    }

#if (NGX_HTTP_V2)
    if (r->stream) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "pusher: websocket upgrade over HTTP/2 is not "
                      "supported");
        return NGX_HTTP_BAD_REQUEST;
    }
#endif

    if (r->http_version < NGX_HTTP_VERSION_11
        || r->headers_in.content_length_n > 0
        || r->headers_in.chunked
        || ngx_http_pusher_header(r, "Upgrade", sizeof("Upgrade") - 1,
                                  "websocket", sizeof("websocket") - 1)
           == NULL
        || ngx_http_pusher_header(r, "Connection", sizeof("Connection") - 1,
                                  "upgrade", sizeof("upgrade") - 1)
           == NULL)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "pusher: client sent an invalid websocket upgrade");
        return NGX_HTTP_BAD_REQUEST;
    }

    version = ngx_http_pusher_header(r, "Sec-WebSocket-Version",
                                     sizeof("Sec-WebSocket-Version") - 1,
                                     NULL, 0);
    if (version == NULL) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "pusher: client sent no Sec-WebSocket-Version");
        return NGX_HTTP_BAD_REQUEST;
    }

    if (version->value.len != 2
        || ngx_strncmp(version->value.data, "13", 2) != 0)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "pusher: client sent unsupported websocket "
                      "version \"%V\"", &version->value);
        return ngx_http_pusher_send_426(r);
    }

    h = ngx_http_pusher_header(r, "Sec-WebSocket-Key",
                               sizeof("Sec-WebSocket-Key") - 1, NULL, 0);
    if (h == NULL || !pusher_ws_key_valid(h->value.data, h->value.len)) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "pusher: client sent an invalid Sec-WebSocket-Key");
        return NGX_HTTP_BAD_REQUEST;
    }

    pusher_ws_accept_key(h->value.data, h->value.len, accept);

    c = r->connection;
    pmcf = ngx_http_get_module_main_conf(r, ngx_http_pusher_module);

    pc = ngx_pcalloc(c->pool, sizeof(ngx_http_pusher_conn_t));
    if (pc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pc->connection = c;
    pc->request = r;
    pc->out_last = &pc->out;

    app = ngx_http_pusher_app_by_key(pmcf, &key);

    if (app && !ngx_http_pusher_origin_allowed(r, app)) {
        /* answered after the upgrade: 4009 "Origin not allowed" */
        pc->origin_denied = 1;
    }
    ngx_queue_init(&pc->subs);

    msg = ngx_http_pusher_msg_alloc(sizeof(NGX_HTTP_PUSHER_101) - 1 + 28
                                    + 2 * (sizeof(CRLF) - 1));
    if (msg == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(msg->data, NGX_HTTP_PUSHER_101,
                   sizeof(NGX_HTTP_PUSHER_101) - 1);
    p = ngx_cpymem(p, accept, 28);
    *p++ = CR; *p++ = LF;
    *p++ = CR; *p++ = LF;

    /* queued before the app is set: the 101 is not a WebSocket frame */
    rc = ngx_http_pusher_queue(pc, msg);
    ngx_http_pusher_msg_release(msg);

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pc->app = app;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->tcp_nodelay && ngx_tcp_nodelay(c) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* for the access log line written when the request is freed */
    r->headers_out.status = NGX_HTTP_SWITCHING_PROTOCOLS;
    r->keepalive = 0;

    ngx_http_set_ctx(r, pc, ngx_http_pusher_module);

    /*
     * keep the request alive through ngx_http_finalize_request(NGX_DONE);
     * it is freed from a posted event once the HTTP code has unwound
     */

    r->main->count++;

    c->write->handler = ngx_http_pusher_handoff;
    ngx_post_event(c->write, &ngx_posted_events);

    return NGX_DONE;
}


static void
ngx_http_pusher_handoff(ngx_event_t *wev)
{
    size_t                   n;
    u_char                  *pipelined;
    ngx_buf_t               *b;
    ngx_chain_t             *cl, *ln;
    ngx_connection_t        *c;
    ngx_http_request_t      *r;
    ngx_http_connection_t   *hc;
    ngx_http_pusher_conn_t  *pc;

    c = wev->data;
    r = c->data;
    pc = ngx_http_get_module_ctx(r, ngx_http_pusher_module);
    hc = r->http_connection;

    /* frames the client sent right behind the handshake */

    b = r->header_in;
    n = b->last - b->pos;
    pipelined = NULL;

    if (n) {
        /*
         * the worker's read buffer, or for more (large header buffers can
         * hold more) a buffer of their own: the frames must all be parsed,
         * or the stream is out of step
         */

        pipelined = ngx_http_pusher_pipelined_buffer(n);

        if (pipelined == NULL) {
            /* NULL: ngx_http_pusher_ws_start() closes with 1011 */
            pipelined = ngx_alloc(n, c->log);
        }

        if (pipelined) {
            ngx_memcpy(pipelined, b->pos, n);
        }
    }

    if (ngx_http_pusher_debug_on) {
        /* for the connect line of ngx_http_pusher_session_open() */
        ngx_http_pusher_debug_keep_origin(pc);
    }

    pc->request = NULL;
    c->data = pc;

    if (r->pool->cleanup) {
        /*
         * A module holds something for the request's lifetime, such as
         * limit_conn's count of connections: the request lives as long as
         * the socket, with its header buffers (its log line reads them),
         * and is freed when the socket closes.
         */

        pc->kept = r;
        goto start;
    }

    ngx_http_free_request(r, 0);

    c->destroyed = 0;

    /* release the header buffers, as ngx_http_set_keepalive() does */

    for (cl = hc->free; cl; /* void */) {
        ln = cl;
        cl = cl->next;
        ngx_pfree(c->pool, ln->buf->start);
        ngx_free_chain(c->pool, ln);
    }

    hc->free = NULL;

    for (cl = hc->busy; cl; /* void */) {
        ln = cl;
        cl = cl->next;
        ngx_pfree(c->pool, ln->buf->start);
        ngx_free_chain(c->pool, ln);
    }

    hc->busy = NULL;
    hc->nbusy = 0;

    if (c->buffer && ngx_pfree(c->pool, c->buffer->start) == NGX_OK) {
        c->buffer = NULL;
    }

start:

#if (NGX_HTTP_SSL)
    if (c->ssl) {
        ngx_ssl_free_buffer(c);
    }
#endif

    ngx_http_pusher_ws_start(pc, pipelined, n);

    if (pipelined && pipelined != ngx_http_pusher_pipelined_buffer(n)) {
        ngx_free(pipelined);
    }
}


/* the key is the last path segment of ".../app/{key}" */

static ngx_int_t
ngx_http_pusher_app_key(ngx_http_request_t *r, ngx_str_t *key)
{
    u_char  *p, *last, *slash;

    p = r->uri.data;
    last = p + r->uri.len;

    slash = NULL;

    while (last > p) {
        if (*(last - 1) == '/') {
            slash = last - 1;
            break;
        }

        last--;
    }

    if (slash == NULL) {
        return NGX_HTTP_NOT_FOUND;
    }

    key->data = slash + 1;
    key->len = r->uri.data + r->uri.len - key->data;

    if (key->len == 0
        || slash - p < 4
        || ngx_strncmp(slash - 4, "/app", 4) != 0)
    {
        return NGX_HTTP_NOT_FOUND;
    }

    return NGX_OK;
}


/*
 * The first "name" header, or with a token the first "name" header whose
 * comma separated value lists it (any case).
 */

ngx_table_elt_t *
ngx_http_pusher_header(ngx_http_request_t *r, const char *name, size_t len,
    const char *token, size_t token_len)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0
            && (token == NULL
                || ngx_http_pusher_token(&h[i].value, token, token_len)))
        {
            return &h[i];
        }
    }

    return NULL;
}


static ngx_uint_t
ngx_http_pusher_token(ngx_str_t *value, const char *token, size_t len)
{
    u_char  *p, *last, *start;

    p = value->data;
    last = p + value->len;

    while (p < last) {

        while (p < last && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        start = p;

        while (p < last && *p != ',' && *p != ' ' && *p != '\t') {
            p++;
        }

        if ((size_t) (p - start) == len
            && ngx_strncasecmp(start, (u_char *) token, len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


static ngx_uint_t
ngx_http_pusher_origin_allowed(ngx_http_request_t *r,
    ngx_http_pusher_app_t *app)
{
    size_t            len;
    ngx_str_t        *pattern;
    ngx_uint_t        i;
    const char       *host;
    ngx_table_elt_t  *origin;

    if (app->origins == NULL) {
        return 1;
    }

    origin = ngx_http_pusher_header(r, "Origin", sizeof("Origin") - 1,
                                    NULL, 0);

    if (origin == NULL) {
        if (!app->no_origin) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "pusher: client sent no Origin, app \"%V\" "
                          "requires one", &app->id);
        }

        return app->no_origin;
    }

    if (pusher_origin_host((char *) origin->value.data, origin->value.len,
                           &host, &len)
        == 0)
    {
        pattern = app->origins->elts;

        for (i = 0; i < app->origins->nelts; i++) {
            if (pusher_host_match((char *) pattern[i].data, pattern[i].len,
                                  host, len))
            {
                return 1;
            }
        }
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "pusher: origin \"%V\" is not allowed for app \"%V\"",
                  &origin->value, &app->id);

    return 0;
}


static ngx_int_t
ngx_http_pusher_send_426(ngx_http_request_t *r)
{
    ngx_int_t         rc;
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Sec-WebSocket-Version");
    ngx_str_set(&h->value, "13");

    r->headers_out.status = 426;
    ngx_str_set(&r->headers_out.status_line, "426 Upgrade Required");
    r->headers_out.content_length_n = 0;
    r->header_only = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    return ngx_http_send_special(r, NGX_HTTP_LAST);
}
