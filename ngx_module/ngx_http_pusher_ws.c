
/*
 * Copyright (C) ngx-pusher authors
 */


#include "ngx_http_pusher_module.h"


static void ngx_http_pusher_read_handler(ngx_event_t *rev);
static void ngx_http_pusher_write_handler(ngx_event_t *wev);
static ngx_int_t ngx_http_pusher_process(ngx_http_pusher_conn_t *pc,
    u_char *pos, u_char *end);
static void ngx_http_pusher_timer(ngx_http_pusher_conn_t *pc);
static void ngx_http_pusher_linger(ngx_http_pusher_conn_t *pc);
static ngx_int_t ngx_http_pusher_half_close(ngx_http_pusher_conn_t *pc);
#if (NGX_HTTP_SSL)
static void ngx_http_pusher_ssl_shutdown_done(ngx_connection_t *c);
#endif
static ngx_int_t ngx_http_pusher_flush(ngx_http_pusher_conn_t *pc);
static ngx_int_t ngx_http_pusher_flush_now(ngx_http_pusher_conn_t *pc);
static void ngx_http_pusher_flush_expired(ngx_event_t *ev);
static void ngx_http_pusher_finalize(ngx_http_pusher_conn_t *pc);
static void ngx_http_pusher_debug_close(ngx_http_pusher_conn_t *pc,
    ngx_uint_t code, const char *reason);
static void ngx_http_pusher_debug_close_lost(ngx_http_pusher_conn_t *pc);
static void ngx_http_pusher_out_release(ngx_http_pusher_conn_t *pc,
    ngx_http_pusher_out_t *out);
static void *ngx_http_pusher_parser_alloc(size_t size, void *ctx);
static void ngx_http_pusher_parser_free(void *p, void *ctx);


/* per worker: one read buffer, the flush list, recycled queue entries */
static u_char                 *ngx_http_pusher_recv_buf;
static ngx_queue_t             ngx_http_pusher_dirty;
static ngx_http_pusher_out_t  *ngx_http_pusher_free_outs;
static ngx_uint_t              ngx_http_pusher_nfree_outs;
static ngx_buf_t               ngx_http_pusher_bufs[NGX_HTTP_PUSHER_IOVS];
static ngx_chain_t             ngx_http_pusher_chain[NGX_HTTP_PUSHER_IOVS];
static ngx_event_t             ngx_http_pusher_flush_timer;
static ngx_msec_t              ngx_http_pusher_last_flush;
static ngx_msec_t              ngx_http_pusher_last_batch;


ngx_int_t
ngx_http_pusher_ws_init_worker(ngx_cycle_t *cycle)
{
    ngx_http_pusher_recv_buf = ngx_alloc(NGX_HTTP_PUSHER_RECV_BUFFER,
                                         cycle->log);
    if (ngx_http_pusher_recv_buf == NULL) {
        return NGX_ERROR;
    }

    ngx_queue_init(&ngx_http_pusher_dirty);

    ngx_http_pusher_flush_timer.handler = ngx_http_pusher_flush_expired;
    ngx_http_pusher_flush_timer.log = cycle->log;
    ngx_http_pusher_flush_timer.cancelable = 1;

    return NGX_OK;
}


void
ngx_http_pusher_ws_exit_worker(void)
{
    ngx_http_pusher_out_t  *out;

    while (ngx_http_pusher_free_outs) {
        out = ngx_http_pusher_free_outs;
        ngx_http_pusher_free_outs = out->next;
        ngx_http_pusher_nfree_outs--;
        ngx_free(out);
    }

    if (ngx_http_pusher_recv_buf) {
        ngx_free(ngx_http_pusher_recv_buf);
        ngx_http_pusher_recv_buf = NULL;
    }
}


/* the worker's read buffer for frames behind a handshake, if they fit */

u_char *
ngx_http_pusher_pipelined_buffer(size_t len)
{
    if (len == 0 || len > NGX_HTTP_PUSHER_RECV_BUFFER) {
        return NULL;
    }

    return ngx_http_pusher_recv_buf;
}


void
ngx_http_pusher_ws_start(ngx_http_pusher_conn_t *pc, u_char *pipelined,
    size_t len)
{
    size_t             max;
    ngx_connection_t  *c;

    c = pc->connection;

    c->log->action = "pusher websocket";
    c->read->handler = ngx_http_pusher_read_handler;
    c->write->handler = ngx_http_pusher_write_handler;

    /* ngx_close_idle_connections() reaches us on graceful shutdown */
    c->idle = 1;

    max = pc->app ? pc->app->max_message_size : PUSHER_WS_DEFAULT_MAX_MESSAGE;

    pusher_ws_parser_init(&pc->parser, max, ngx_http_pusher_parser_alloc,
                          ngx_http_pusher_parser_free, c->log);

    pc->last_activity = ngx_current_msec;
    pc->opened = ngx_current_msec;

    ngx_http_pusher_session_open(pc);

    /*
     * Bytes the HTTP code left unread (in the socket, or over TLS in a
     * record it did not decrypt) raise no new edge-triggered event.
     */

    if (c->read->ready) {
        ngx_post_event(c->read, &ngx_posted_events);
    }

    if (pc->app && !pc->closing) {
        ngx_add_timer(c->read, pc->app->signin_timeout
                               ? ngx_min(pc->app->ping_interval,
                                         pc->app->signin_timeout)
                               : pc->app->ping_interval);
    }

    if (len && pipelined == NULL && !pc->closing) {
        /* the frames behind the handshake could not be kept */
        ngx_http_pusher_send_close(pc, PUSHER_WS_CLOSE_INTERNAL,
                                   "Internal error");
    }

    if (pipelined && pc->app) {
        ngx_http_pusher_count_local(pc->app, bytes_in, len);
    }

    if (pipelined
        && !pc->closing
        && ngx_http_pusher_process(pc, pipelined, pipelined + len) != NGX_OK)
    {
        ngx_http_pusher_flush_dirty();
        return;
    }

    ngx_http_pusher_flush_dirty();

    /* the connection may be gone now: only posted events touch it */
}


static void
ngx_http_pusher_read_handler(ngx_event_t *rev)
{
    size_t                   budget;
    ssize_t                  n;
    ngx_connection_t        *c;
    ngx_http_pusher_conn_t  *pc;

    c = rev->data;
    pc = c->data;

    if (c->close) {
        c->close = 0;

        if (pc->closing) {
            ngx_http_pusher_finalize(pc);
            return;
        }

        if (c->error) {
            /*
             * worker_shutdown_timeout: nginx closes every connection now.
             * The last chance to tell the client to reconnect: what fits
             * into the socket goes out, then the close as usual.
             */

            c->error = 0;

            ngx_http_pusher_session_error(pc, PUSHER_ERR_RECONNECT,
                                          "Server is shutting down", 1);

            if (ngx_http_pusher_flush_now(pc) == NGX_AGAIN) {
                ngx_http_pusher_finalize(pc);
            }

            return;
        }

        if (!ngx_http_pusher_keep_on_reload(pc)) {
            ngx_http_pusher_session_error(pc, PUSHER_ERR_RECONNECT,
                                          "Server is shutting down", 1);
            ngx_http_pusher_flush_dirty();
            return;
        }

        /*
         * a reload left this socket's app alone: the socket stays with
         * this worker until it closes or worker_shutdown_timeout
         */

        c->idle = 0;
    }

    if (rev->timedout) {
        rev->timedout = 0;

        ngx_http_pusher_timer(pc);
        ngx_http_pusher_flush_dirty();
        return;
    }

    if (pc->lingering) {
        ngx_http_pusher_linger(pc);
        return;
    }

    for (budget = NGX_HTTP_PUSHER_READ_BUDGET; /* void */; /* void */) {

        if (budget == 0) {
            /*
             * this socket has had its turn: the others, the ring and the
             * API come first, then it reads on from a posted event
             */
            ngx_post_event(rev, &ngx_posted_events);
            ngx_http_pusher_flush_dirty();
            return;
        }

        n = c->recv(c, ngx_http_pusher_recv_buf,
                    ngx_min(budget, NGX_HTTP_PUSHER_RECV_BUFFER));

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0 || n == NGX_ERROR) {
            ngx_log_debug0(NGX_LOG_DEBUG_HTTP, c->log, 0,
                           "pusher ws client closed connection");
            ngx_http_pusher_finalize(pc);
            ngx_http_pusher_flush_dirty();
            return;
        }

        budget -= n;

        if (pc->app) {
            ngx_http_pusher_count_local(pc->app, bytes_in, (ngx_uint_t) n);
        }

        pc->last_activity = ngx_current_msec;
        pc->pinged = 0;

        if (pc->closing) {
            /* waiting for our close frame to go out: discard input */
            continue;
        }

        if (ngx_http_pusher_process(pc, ngx_http_pusher_recv_buf,
                                    ngx_http_pusher_recv_buf + n)
            != NGX_OK)
        {
            ngx_http_pusher_flush_dirty();
            return;
        }

        if (!rev->ready) {
            break;
        }
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_http_pusher_finalize(pc);
    }

    ngx_http_pusher_flush_dirty();
}


/*
 * Feeds received bytes to the frame parser.  Returns NGX_OK to go on
 * reading, NGX_DONE once the connection is closing.
 */

static ngx_int_t
ngx_http_pusher_process(ngx_http_pusher_conn_t *pc, u_char *pos, u_char *end)
{
    ngx_uint_t          code;
    pusher_ws_msg_t     msg;
    pusher_ws_result_e  rc;

    for ( ;; ) {

        rc = pusher_ws_parse(&pc->parser, &pos, end, &msg);

        switch (rc) {

        case PUSHER_WS_AGAIN:
            return NGX_OK;

        case PUSHER_WS_MESSAGE:

            /*
             * pusher-js sends text only; a binary message is taken as
             * text, as Reverb and soketi do, if it is valid UTF-8: its
             * data may be relayed to other members in text frames.
             */

            if (msg.opcode == PUSHER_WS_OP_BINARY
                && pusher_utf8_validate(PUSHER_UTF8_ACCEPT, msg.data, msg.len)
                   != PUSHER_UTF8_ACCEPT)
            {
                ngx_log_error(NGX_LOG_INFO, pc->connection->log, 0,
                              "pusher: client sent a binary message that "
                              "is not UTF-8");
                ngx_http_pusher_send_close(pc, PUSHER_WS_CLOSE_INVALID_DATA,
                                           "Invalid UTF-8 in a binary "
                                           "message");
                return NGX_DONE;
            }

            ngx_http_pusher_session_message(pc, msg.data, msg.len);
            break;

        case PUSHER_WS_PING:
            pc->control_frames = 1;
            ngx_http_pusher_send_control(pc, PUSHER_WS_OP_PONG, msg.data,
                                         msg.len);
            break;

        case PUSHER_WS_PONG:
            pc->control_frames = 1;
            break;

        case PUSHER_WS_CLOSE:
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, pc->connection->log, 0,
                           "pusher ws close frame %ui", msg.close_code);

            code = msg.close_code;

            if (code == PUSHER_WS_CLOSE_NO_STATUS) {
                code = PUSHER_WS_CLOSE_NORMAL;
            }

            pc->peer_closed = 1;
            ngx_http_pusher_send_close(pc, code, "");
            return NGX_DONE;

        default: /* PUSHER_WS_ERROR */
            ngx_log_error(NGX_LOG_INFO, pc->connection->log, 0,
                          "pusher: client sent an invalid frame: %s",
                          msg.reason);

            ngx_http_pusher_send_close(pc, msg.close_code, msg.reason);
            return NGX_DONE;
        }

        if (pc->closing) {
            return NGX_DONE;
        }
    }
}


static void
ngx_http_pusher_timer(ngx_http_pusher_conn_t *pc)
{
    ngx_msec_t              idle, age, next;
    ngx_http_pusher_app_t  *app;

    app = pc->app;

    if (pc->closing || app == NULL) {
        ngx_log_error(NGX_LOG_INFO, pc->connection->log, 0,
                      "pusher: client did not complete the close handshake");
        ngx_http_pusher_finalize(pc);
        return;
    }

    /* the optional deadline for pusher:signin or a private subscription */

    age = ngx_current_msec - pc->opened;

    if (app->signin_timeout && !pc->authorized && age >= app->signin_timeout)
    {
        ngx_log_error(NGX_LOG_INFO, pc->connection->log, 0,
                      "pusher: client did not sign in in time");
        ngx_http_pusher_session_error(pc, PUSHER_ERR_UNAUTHORIZED,
                                      "Connection not authorized within "
                                      "timeout", 1);
        return;
    }

    if (pc->pinged) {
        ngx_log_error(NGX_LOG_INFO, pc->connection->log, 0,
                      "pusher: client did not answer a ping");
        ngx_http_pusher_session_error(pc, PUSHER_ERR_PONG_TIMEOUT,
                                      "Pong reply not received in time", 1);
        return;
    }

    idle = ngx_current_msec - pc->last_activity;

    if (idle < app->ping_interval) {
        next = app->ping_interval - idle;

    } else {
        ngx_http_pusher_session_ping(pc);

        pc->pinged = 1;
        next = app->pong_timeout;
    }

    if (app->signin_timeout && !pc->authorized) {
        next = ngx_min(next, app->signin_timeout - age);
    }

    ngx_add_timer(pc->connection->read, next);
}


/* our close frame is out: wait for the peer's FIN, discarding its data */

static void
ngx_http_pusher_linger(ngx_http_pusher_conn_t *pc)
{
    ssize_t            n;
    ngx_connection_t  *c;

    c = pc->connection;

    for ( ;; ) {
        n = c->recv(c, ngx_http_pusher_recv_buf, NGX_HTTP_PUSHER_RECV_BUFFER);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0 || n == NGX_ERROR) {
            ngx_http_pusher_finalize(pc);
            return;
        }
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_http_pusher_finalize(pc);
    }
}


static void
ngx_http_pusher_write_handler(ngx_event_t *wev)
{
    ngx_connection_t        *c;
    ngx_http_pusher_conn_t  *pc;

    c = wev->data;
    pc = c->data;

    if (c->error) {
        ngx_http_pusher_finalize(pc);
        return;
    }

    (void) ngx_http_pusher_flush_now(pc);
}


/* writes one socket's queue outside the flush list's order */

static ngx_int_t
ngx_http_pusher_flush_now(ngx_http_pusher_conn_t *pc)
{
    if (pc->in_dirty) {
        ngx_queue_remove(&pc->dirty);
        pc->in_dirty = 0;
    }

    return ngx_http_pusher_flush(pc);
}


ngx_http_pusher_msg_t *
ngx_http_pusher_msg_alloc(size_t len)
{
    ngx_http_pusher_msg_t  *msg;

    msg = ngx_alloc(offsetof(ngx_http_pusher_msg_t, data) + len,
                    ngx_cycle->log);
    if (msg == NULL) {
        return NULL;
    }

    msg->refs = 1;
    msg->len = len;

    return msg;
}


void
ngx_http_pusher_msg_release(ngx_http_pusher_msg_t *msg)
{
    if (--msg->refs == 0) {
        ngx_free(msg);
    }
}


/*
 * Appends a frame to a socket's queue and puts the socket on the flush
 * list; ngx_http_pusher_flush_dirty() writes all of it later in one
 * send_chain() per socket.  Never closes the socket here (callers iterate
 * over subscriber lists): an overflowing socket is flagged and closed from
 * a posted event.
 */

ngx_int_t
ngx_http_pusher_queue(ngx_http_pusher_conn_t *pc, ngx_http_pusher_msg_t *msg)
{
    size_t                  cost;
    ngx_connection_t       *c;
    ngx_http_pusher_out_t  *out;

    c = pc->connection;

    if (pc->closing || c->error) {
        return NGX_DECLINED;
    }

    /* the heap a queued frame holds, not only its bytes (a pong: 2 + 64) */
    cost = NGX_HTTP_PUSHER_OUT_COST(msg->len);

    if (pc->out_bytes + cost > NGX_HTTP_PUSHER_SEND_QUEUE_MAX) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "pusher: client is too slow, %uz bytes queued",
                      pc->out_bytes);
        c->error = 1;
        ngx_post_event(c->write, &ngx_posted_events);
        return NGX_ERROR;
    }

    out = ngx_http_pusher_free_outs;

    if (out) {
        ngx_http_pusher_free_outs = out->next;
        ngx_http_pusher_nfree_outs--;

    } else {
        out = ngx_alloc(sizeof(ngx_http_pusher_out_t), c->log);
        if (out == NULL) {
            return NGX_ERROR;
        }
    }

    out->next = NULL;
    out->msg = msg;
    msg->refs++;

    *pc->out_last = out;
    pc->out_last = &out->next;
    pc->out_bytes += cost;

    if (pc->app) {
        ngx_http_pusher_count_local(pc->app, messages_out, 1);
        ngx_http_pusher_count_local(pc->app, bytes_out, msg->len);
    }

    if (!pc->in_dirty) {
        ngx_queue_insert_tail(&ngx_http_pusher_dirty, &pc->dirty);
        pc->in_dirty = 1;
    }

    return NGX_OK;
}


/*
 * A reply of which one waiting copy is enough: a pong frame (RFC 6455
 * 5.5.3 allows answering only the latest ping: the waiting one gets its
 * payload) and pusher:pong.  A client that floods pings without reading
 * holds one reply, not one per ping.  *pending names the waiting copy, and
 * is cleared when it goes out.
 */

static ngx_int_t
ngx_http_pusher_queue_reply(ngx_http_pusher_conn_t *pc,
    ngx_http_pusher_msg_t *msg, ngx_http_pusher_out_t **pending)
{
    ngx_int_t               rc;
    ngx_http_pusher_out_t  *out;

    out = *pending;

    /* not begun: the head of the queue may be partly written */

    if (out && !(out == pc->out && pc->out_sent)) {
        pc->out_bytes += NGX_HTTP_PUSHER_OUT_COST(msg->len);
        pc->out_bytes -= NGX_HTTP_PUSHER_OUT_COST(out->msg->len);
        ngx_http_pusher_msg_release(out->msg);
        out->msg = msg;
        msg->refs++;
        return NGX_OK;
    }

    rc = ngx_http_pusher_queue(pc, msg);

    if (rc == NGX_OK) {
        *pending = (ngx_http_pusher_out_t *)
                   ((u_char *) pc->out_last
                    - offsetof(ngx_http_pusher_out_t, next));
    }

    return rc;
}


ngx_int_t
ngx_http_pusher_send_text(ngx_http_pusher_conn_t *pc, u_char *json,
    size_t len)
{
    size_t                  hlen;
    ngx_int_t               rc;
    ngx_http_pusher_msg_t  *msg;

    hlen = pusher_ws_frame_header_size(len);

    msg = ngx_http_pusher_msg_alloc(hlen + len);
    if (msg == NULL) {
        return NGX_ERROR;
    }

    (void) pusher_ws_frame_header(msg->data, PUSHER_WS_OP_TEXT, len);
    ngx_memcpy(msg->data + hlen, json, len);

    rc = ngx_http_pusher_queue(pc, msg);
    ngx_http_pusher_msg_release(msg);

    return rc;
}


/* pusher:pong, at most one waiting (ngx_http_pusher_queue_reply) */

ngx_int_t
ngx_http_pusher_send_pong_text(ngx_http_pusher_conn_t *pc, u_char *json,
    size_t len)
{
    size_t                  hlen;
    ngx_int_t               rc;
    ngx_http_pusher_msg_t  *msg;

    if (pc->text_pong && !(pc->text_pong == pc->out && pc->out_sent)) {
        /* the same bytes wait already */
        return NGX_OK;
    }

    hlen = pusher_ws_frame_header_size(len);

    msg = ngx_http_pusher_msg_alloc(hlen + len);
    if (msg == NULL) {
        return NGX_ERROR;
    }

    (void) pusher_ws_frame_header(msg->data, PUSHER_WS_OP_TEXT, len);
    ngx_memcpy(msg->data + hlen, json, len);

    rc = ngx_http_pusher_queue_reply(pc, msg, &pc->text_pong);
    ngx_http_pusher_msg_release(msg);

    return rc;
}


ngx_int_t
ngx_http_pusher_send_control(ngx_http_pusher_conn_t *pc, ngx_uint_t opcode,
    const u_char *data, size_t len)
{
    ngx_int_t               rc;
    ngx_http_pusher_msg_t  *msg;

    if (len > PUSHER_WS_CONTROL_MAX) {
        len = PUSHER_WS_CONTROL_MAX;
    }

    msg = ngx_http_pusher_msg_alloc(2 + len);
    if (msg == NULL) {
        return NGX_ERROR;
    }

    (void) pusher_ws_frame_header(msg->data, opcode, len);

    if (len) {
        ngx_memcpy(msg->data + 2, data, len);
    }

    if (opcode == PUSHER_WS_OP_PONG) {
        rc = ngx_http_pusher_queue_reply(pc, msg, &pc->pong);

    } else {
        rc = ngx_http_pusher_queue(pc, msg);
    }

    ngx_http_pusher_msg_release(msg);

    return rc;
}


/* debug: the channels a closing socket leaves */

static ngx_uint_t
ngx_http_pusher_debug_channels(ngx_http_pusher_conn_t *pc)
{
    ngx_uint_t    n;
    ngx_queue_t  *q;

    n = 0;

    for (q = ngx_queue_head(&pc->subs);
         q != ngx_queue_sentinel(&pc->subs);
         q = ngx_queue_next(q))
    {
        n++;
    }

    return n;
}


/* debug: a socket closes: who began, the code and the reason */

static void
ngx_http_pusher_debug_close(ngx_http_pusher_conn_t *pc, ngx_uint_t code,
    const char *reason)
{
    ngx_uint_t  n;
    u_char      id[NGX_HTTP_PUSHER_SOCKET_ID_LEN + 1];

    n = ngx_http_pusher_debug_channels(pc);

    ngx_http_pusher_debug("close socket %s: code %ui%s%s%s by the %s after "
                          "%M ms, leaving %ui channel%s",
                          ngx_http_pusher_session_socket(pc, id), code,
                          reason[0] ? " \"" : "", reason,
                          reason[0] ? "\"" : "",
                          pc->peer_closed ? "client" : "server",
                          ngx_current_msec - pc->opened, n,
                          n == 1 ? "" : "s");
}


/*
 * Queues a close frame; nothing is queued after it.  The socket leaves its
 * channels at once; it is closed when the peer answers, after the frame is
 * sent and the linger time passes, whichever comes first.
 */

void
ngx_http_pusher_send_close(ngx_http_pusher_conn_t *pc, ngx_uint_t code,
    const char *reason)
{
    size_t                  len;
    ngx_connection_t       *c;
    ngx_http_pusher_msg_t  *msg;

    c = pc->connection;

    if (pc->closing) {
        return;
    }

    if (ngx_http_pusher_debug_on) {
        ngx_http_pusher_debug_close(pc, code, reason);
    }

    ngx_http_pusher_unsubscribe_all(pc);
    ngx_http_pusher_user_offline(pc);
    ngx_http_pusher_zone_disconnect(pc, code);

    msg = ngx_http_pusher_msg_alloc(2 + PUSHER_WS_CONTROL_MAX);

    if (msg) {
        len = ngx_strlen(reason);
        msg->len = pusher_ws_close_frame(msg->data, code, reason, len);
        (void) ngx_http_pusher_queue(pc, msg);
        ngx_http_pusher_msg_release(msg);
    }

    pc->closing = 1;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    ngx_add_timer(c->read, ngx_exiting ? NGX_HTTP_PUSHER_LINGER_EXITING
                                       : NGX_HTTP_PUSHER_LINGER);

    if (!pc->in_dirty) {
        ngx_queue_insert_tail(&ngx_http_pusher_dirty, &pc->dirty);
        pc->in_dirty = 1;
    }
}


/*
 * After a ring batch.  A worker whose previous batch came less than
 * NGX_HTTP_PUSHER_FLUSH_WINDOW ago, and that finished writing its sockets
 * less than that ago, is busy: the frames of the batches that arrive until
 * the window ends go out together, several per writev(), and the event
 * loop serves the API requests in between.  Events further apart (100 a
 * second, say) are written at once.
 */

void
ngx_http_pusher_flush_fanout(void)
{
    ngx_msec_t      now;
    ngx_msec_int_t  gap, age;

    if (ngx_queue_empty(&ngx_http_pusher_dirty)) {
        return;
    }

    now = ngx_current_msec;
    gap = (ngx_msec_int_t) (now - ngx_http_pusher_last_batch);
    ngx_http_pusher_last_batch = now;

    if (ngx_http_pusher_flush_timer.timer_set) {
        return;
    }

    age = (ngx_msec_int_t) (now - ngx_http_pusher_last_flush);

    if (gap >= 0 && gap < NGX_HTTP_PUSHER_FLUSH_WINDOW
        && age >= 0 && age < NGX_HTTP_PUSHER_FLUSH_WINDOW)
    {
        ngx_add_timer(&ngx_http_pusher_flush_timer,
                      NGX_HTTP_PUSHER_FLUSH_WINDOW - age);
        return;
    }

    ngx_http_pusher_flush_dirty();
}


static void
ngx_http_pusher_flush_expired(ngx_event_t *ev)
{
    ngx_http_pusher_flush_dirty();
}


void
ngx_http_pusher_flush_dirty(void)
{
    ngx_queue_t             *q;
    ngx_http_pusher_conn_t  *pc;

    if (ngx_http_pusher_metrics_pending) {
        ngx_http_pusher_metrics_flush();
    }

    if (ngx_queue_empty(&ngx_http_pusher_dirty)) {
        return;
    }

    /* what the broker was told about these frames goes before them */
    ngx_http_pusher_uplink_flush();

    if (ngx_http_pusher_flush_timer.timer_set) {
        ngx_del_timer(&ngx_http_pusher_flush_timer);
    }

    while (!ngx_queue_empty(&ngx_http_pusher_dirty)) {
        q = ngx_queue_head(&ngx_http_pusher_dirty);
        ngx_queue_remove(q);

        pc = ngx_queue_data(q, ngx_http_pusher_conn_t, dirty);
        pc->in_dirty = 0;

        (void) ngx_http_pusher_flush(pc);
    }

    /* the window starts when writing ends: a long fan-out leaves time */
    ngx_time_update();
    ngx_http_pusher_last_flush = ngx_current_msec;
}


/*
 * Writes the queue with as few send_chain() calls as possible; the frames
 * are shared buffers, so each call gathers up to NGX_HTTP_PUSHER_IOVS of
 * them without copying.
 *
 * A frame is released once send_chain() has consumed it, as nginx's write
 * filter does: over TCP the kernel holds it then, over TLS the
 * connection's SSL buffer may hold a copy (c->buffered) that goes out when
 * the buffer fills, at the flush flag on the queue's last frame, or on a
 * later write event.  A write that would block over TLS is retried from
 * that buffer with the same bytes, as SSL_write() requires.
 */

static ngx_int_t
ngx_http_pusher_flush(ngx_http_pusher_conn_t *pc)
{
    ngx_buf_t              *b;
    ngx_uint_t              i, n;
    ngx_chain_t            *cl, *in;
    ngx_connection_t       *c;
    ngx_http_pusher_out_t  *out;

    c = pc->connection;

    if (c->error) {
        ngx_http_pusher_finalize(pc);
        return NGX_ERROR;
    }

    if (pc->request) {
        /* the 101 goes out from the hand-off, after the request is freed */
        return NGX_OK;
    }

    for ( ;; ) {

        n = 0;

        for (out = pc->out; out && n < NGX_HTTP_PUSHER_IOVS; out = out->next)
        {
            b = &ngx_http_pusher_bufs[n];
            b->start = out->msg->data;
            b->pos = out->msg->data + (n == 0 ? pc->out_sent : 0);
            b->last = out->msg->data + out->msg->len;
            b->end = b->last;
            b->memory = 1;
            b->flush = 0;

            ngx_http_pusher_chain[n].buf = b;
            ngx_http_pusher_chain[n].next = &ngx_http_pusher_chain[n + 1];
            n++;
        }

        if (n) {
            ngx_http_pusher_chain[n - 1].next = NULL;
            ngx_http_pusher_bufs[n - 1].flush = (out == NULL);
            in = ngx_http_pusher_chain;

        } else if (c->buffered) {
            /* what the SSL buffer still holds */
            in = NULL;

        } else {
            break;
        }

        cl = c->send_chain(c, in, 0);

        if (cl == NGX_CHAIN_ERROR) {
            c->error = 1;
            ngx_http_pusher_finalize(pc);
            return NGX_ERROR;
        }

        /* release what was consumed */

        for (i = 0; i < n; i++) {
            b = &ngx_http_pusher_bufs[i];
            out = pc->out;

            if (b->pos != b->last) {
                pc->out_sent = b->pos - out->msg->data;
                break;
            }

            pc->out_sent = 0;
            pc->out = out->next;
            pc->out_bytes -= NGX_HTTP_PUSHER_OUT_COST(out->msg->len);

            ngx_http_pusher_out_release(pc, out);
        }

        if (pc->out == NULL) {
            pc->out_last = &pc->out;
        }

        if (cl != NULL || (pc->out == NULL && c->buffered)) {
            /* the socket is full: wait for the write event */

            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                ngx_http_pusher_finalize(pc);
                return NGX_ERROR;
            }

            return NGX_AGAIN;
        }
    }

#if (NGX_HTTP_SSL)
    if (c->ssl) {
        /* an idle socket keeps no SSL buffer, as nginx's keepalive does */
        ngx_ssl_free_buffer(c);
    }
#endif

    if (pc->closing && !pc->lingering) {
        return ngx_http_pusher_half_close(pc);
    }

    return NGX_OK;
}


/*
 * Our close frame is out: our FIN follows it, after a TLS close_notify,
 * as in nginx's lingering close; the peer then closes, and
 * ngx_http_pusher_linger() discards what it still sends until it does.
 * NGX_ERROR: the connection is closed.
 */

static ngx_int_t
ngx_http_pusher_half_close(ngx_http_pusher_conn_t *pc)
{
    ngx_connection_t  *c;

    c = pc->connection;

#if (NGX_HTTP_SSL)
    if (c->ssl) {
        ngx_int_t  rc;

        /* the WebSocket close handshake replaces the peer's close_notify */
        c->ssl->no_wait_shutdown = 1;
        c->ssl->shutdown_without_free = 1;

        rc = ngx_ssl_shutdown(c);

        if (rc == NGX_ERROR) {
            ngx_http_pusher_finalize(pc);
            return NGX_ERROR;
        }

        if (rc == NGX_AGAIN) {
            c->ssl->handler = ngx_http_pusher_ssl_shutdown_done;
            return NGX_OK;
        }

        /* from here on c->recv reads the raw socket */
    }
#endif

    pc->lingering = 1;

    (void) shutdown(c->fd, SHUT_WR);

    if (c->read->ready) {
        ngx_post_event(c->read, &ngx_posted_events);
    }

    return NGX_OK;
}


#if (NGX_HTTP_SSL)

/* close_notify went out after a write that would block */

static void
ngx_http_pusher_ssl_shutdown_done(ngx_connection_t *c)
{
    ngx_http_pusher_conn_t  *pc;

    pc = c->data;

    c->read->handler = ngx_http_pusher_read_handler;
    c->write->handler = ngx_http_pusher_write_handler;

    if (c->timedout) {
        ngx_http_pusher_finalize(pc);
        return;
    }

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    ngx_add_timer(c->read, ngx_exiting ? NGX_HTTP_PUSHER_LINGER_EXITING
                                       : NGX_HTTP_PUSHER_LINGER);

    (void) ngx_http_pusher_half_close(pc);
}

#endif


/* nginx stops while this worker still serves sockets kept over a reload */

void
ngx_http_pusher_ws_close_all(void)
{
    ngx_uint_t         i;
    ngx_connection_t  *c;

    c = ngx_cycle->connections;

    for (i = 0; i < ngx_cycle->connection_n; i++) {

        if (c[i].fd == (ngx_socket_t) -1
            || c[i].read->handler != ngx_http_pusher_read_handler
            || ((ngx_http_pusher_conn_t *) c[i].data)->closing)
        {
            continue;
        }

        c[i].close = 1;
        c[i].read->handler(c[i].read);
    }

    ngx_http_pusher_flush_dirty();
}


/*
 * The ring overtook this worker: events of its channels are lost.  Every
 * socket with a subscription is told to reconnect (4200), so that pusher-js
 * subscribes again and the app refetches; the others are not affected.
 */

void
ngx_http_pusher_ws_reconnect_subscribed(void)
{
    ngx_uint_t               i;
    ngx_connection_t        *c;
    ngx_http_pusher_conn_t  *pc;

    c = ngx_cycle->connections;

    for (i = 0; i < ngx_cycle->connection_n; i++) {

        if (c[i].fd == (ngx_socket_t) -1
            || c[i].read->handler != ngx_http_pusher_read_handler)
        {
            continue;
        }

        pc = c[i].data;

        if (pc->closing || ngx_queue_empty(&pc->subs)) {
            continue;
        }

        ngx_http_pusher_session_error(pc, PUSHER_ERR_RECONNECT,
                                      "Missed events after a pause, "
                                      "reconnect", 1);
    }
}


static void
ngx_http_pusher_debug_close_lost(ngx_http_pusher_conn_t *pc)
{
    ngx_uint_t   n;
    u_char       id[NGX_HTTP_PUSHER_SOCKET_ID_LEN + 1];

    n = ngx_http_pusher_debug_channels(pc);

    ngx_http_pusher_debug("close socket %s: connection lost without a close "
                          "frame after %M ms, leaving %ui channel%s",
                          ngx_http_pusher_session_socket(pc, id),
                          ngx_current_msec - pc->opened, n,
                          n == 1 ? "" : "s");
}


static void
ngx_http_pusher_finalize(ngx_http_pusher_conn_t *pc)
{
    ngx_connection_t       *c;
    ngx_http_pusher_out_t  *out;

    c = pc->connection;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, c->log, 0, "pusher ws close");

    if (ngx_http_pusher_debug_on && !pc->closing) {
        /* no close handshake: FIN, RST, an error, or nginx stopping */
        ngx_http_pusher_debug_close_lost(pc);
    }

    if (pc->in_dirty) {
        ngx_queue_remove(&pc->dirty);
        pc->in_dirty = 0;
    }

    ngx_http_pusher_unsubscribe_all(pc);
    ngx_http_pusher_user_offline(pc);
    ngx_http_pusher_zone_disconnect(pc, PUSHER_WS_CLOSE_ABNORMAL);

    while (pc->out) {
        out = pc->out;
        pc->out = out->next;

        ngx_http_pusher_out_release(pc, out);
    }

    pusher_ws_parser_free(&pc->parser);

    if (pc->user_id.data) {
        ngx_free(pc->user_id.data);
        pc->user_id.data = NULL;
    }

#if (NGX_HTTP_SSL)
    if (c->ssl) {
        /* the WebSocket close handshake replaces the peer's close_notify */
        c->ssl->no_wait_shutdown = 1;
    }
#endif

    if (pc->kept) {
        /* limit_conn and the like let go; the access log line is written */
        ngx_http_free_request(pc->kept, 0);
        pc->kept = NULL;
    }

    ngx_http_close_connection(c);
}


/*
 * A written queue entry goes back to the worker's free list, which keeps
 * at most NGX_HTTP_PUSHER_FREE_OUTS of them: a burst does not leave its
 * high-water mark of entries behind.
 */

static void
ngx_http_pusher_out_release(ngx_http_pusher_conn_t *pc,
    ngx_http_pusher_out_t *out)
{
    if (out == pc->pong) {
        pc->pong = NULL;
    }

    if (out == pc->text_pong) {
        pc->text_pong = NULL;
    }

    ngx_http_pusher_msg_release(out->msg);

    if (ngx_http_pusher_nfree_outs >= NGX_HTTP_PUSHER_FREE_OUTS) {
        ngx_free(out);
        return;
    }

    out->next = ngx_http_pusher_free_outs;
    ngx_http_pusher_free_outs = out;
    ngx_http_pusher_nfree_outs++;
}


static void *
ngx_http_pusher_parser_alloc(size_t size, void *ctx)
{
    return ngx_alloc(size, ctx);
}


static void
ngx_http_pusher_parser_free(void *p, void *ctx)
{
    ngx_free(p);
}
