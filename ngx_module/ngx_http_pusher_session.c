
/*
 * Copyright (C) ngx-pusher authors
 */


#include "ngx_http_pusher_module.h"
#include "pusher_auth.h"


/* largest frame built here: a subscription_error with a 200-byte name */
#define NGX_HTTP_PUSHER_FRAME_MAX          2048


static void ngx_http_pusher_subscribe_message(ngx_http_pusher_conn_t *pc,
    pusher_msg_t *m);
static void ngx_http_pusher_subscription_error(ngx_http_pusher_conn_t *pc,
    pusher_str_t *channel, const char *type, const char *error,
    ngx_uint_t status);


/* socket_id "pid.n": unique among the live workers of this host */
static ngx_uint_t  ngx_http_pusher_last_id;


size_t
ngx_http_pusher_socket_id(ngx_http_pusher_conn_t *pc, u_char *buf)
{
    return ngx_sprintf(buf, "%P.%ui", ngx_pid, pc->id) - buf;
}


void
ngx_http_pusher_session_open(ngx_http_pusher_conn_t *pc)
{
    size_t   len, n;
    u_char   id[NGX_INT64_LEN * 2 + 2];
    u_char   buf[NGX_HTTP_PUSHER_FRAME_MAX];

    if (pc->app == NULL) {
        ngx_log_error(NGX_LOG_INFO, pc->connection->log, 0,
                      "pusher: client used an unknown app key");
        ngx_http_pusher_session_error(pc, PUSHER_ERR_APP_NOT_FOUND,
                                      "Application does not exist", 1);
        return;
    }

    if (ngx_exiting || ngx_terminate) {
        /*
         * an upgrade read after ngx_close_idle_connections() ran: this
         * worker is leaving, send the client to a new one
         */
        ngx_http_pusher_session_error(pc, PUSHER_ERR_RECONNECT,
                                      "Server is shutting down", 1);
        return;
    }

    pc->id = ++ngx_http_pusher_last_id;

    n = ngx_http_pusher_socket_id(pc, id);

    len = pusher_build_connection_established(buf, sizeof(buf), (char *) id,
                                              n,
                                              pc->app->activity_timeout);

    (void) ngx_http_pusher_send_text(pc, buf, len);
}


void
ngx_http_pusher_session_message(ngx_http_pusher_conn_t *pc,
    const u_char *data, size_t len)
{
    size_t        n;
    ngx_int_t     rc;
    pusher_msg_t  m;
    u_char        buf[NGX_HTTP_PUSHER_FRAME_MAX];

    rc = pusher_msg_parse(&m, data, len);

    if (rc != PUSHER_MSG_OK) {
        ngx_log_error(NGX_LOG_INFO, pc->connection->log, 0,
                      "pusher: client sent an invalid message (%i)", rc);
        pusher_msg_free(&m);
        ngx_http_pusher_session_error(pc, PUSHER_ERR_RECONNECT,
                                      "Invalid message format", 0);
        return;
    }

    switch (m.type) {

    case PUSHER_MSG_PING:
        n = pusher_build_pong(buf, sizeof(buf));
        (void) ngx_http_pusher_send_text(pc, buf, n);
        break;

    case PUSHER_MSG_PONG:
        break;

    case PUSHER_MSG_SUBSCRIBE:
        ngx_http_pusher_subscribe_message(pc, &m);
        break;

    case PUSHER_MSG_UNSUBSCRIBE:
        ngx_http_pusher_unsubscribe(pc, (u_char *) m.channel.data,
                                    m.channel.len);
        break;

    case PUSHER_MSG_CLIENT_EVENT:
        ngx_http_pusher_session_error(pc, PUSHER_ERR_CLIENT_EVENT,
                                      "Client events are not supported", 0);
        break;

    case PUSHER_MSG_SIGNIN:
        ngx_http_pusher_session_error(pc, PUSHER_ERR_RECONNECT,
                                      "User authentication is not "
                                      "supported", 0);
        break;

    default: /* PUSHER_MSG_UNKNOWN */
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, pc->connection->log, 0,
                       "pusher ws unknown event ignored");
        break;
    }

    pusher_msg_free(&m);
}


static void
ngx_http_pusher_subscribe_message(ngx_http_pusher_conn_t *pc,
    pusher_msg_t *m)
{
    size_t                  n, len;
    ngx_int_t               rc;
    pusher_str_t           *ch;
    ngx_http_pusher_app_t  *app;
    pusher_channel_type_e   type;
    u_char                  id[NGX_INT64_LEN * 2 + 2];
    u_char                  buf[NGX_HTTP_PUSHER_FRAME_MAX];

    app = pc->app;
    ch = &m->channel;

    if (!pusher_channel_name_valid(ch->data, ch->len)) {
        ngx_http_pusher_subscription_error(pc, ch, "InvalidChannel",
                                           "Invalid channel name",
                                           PUSHER_ERR_UNAUTHORIZED);
        return;
    }

    type = pusher_channel_type(ch->data, ch->len);

    switch (type) {

    case PUSHER_CHANNEL_PRESENCE:
    case PUSHER_CHANNEL_PRESENCE_CACHE:
    case PUSHER_CHANNEL_SERVER_TO_USER:
        ngx_http_pusher_subscription_error(pc, ch, "UnsupportedChannel",
                                           "Channel type not supported",
                                           PUSHER_ERR_UNAUTHORIZED);
        return;

    default:
        break;
    }

    if (pusher_channel_needs_auth(type)) {
        n = ngx_http_pusher_socket_id(pc, id);

        if (!pusher_auth_channel_ok(app->secret.data, app->secret.len,
                                    app->key.data, app->key.len, id, n,
                                    (const uint8_t *) ch->data, ch->len,
                                    NULL, 0,
                                    (const uint8_t *) m->auth.data,
                                    m->auth.len))
        {
            ngx_log_error(NGX_LOG_INFO, pc->connection->log, 0,
                          "pusher: invalid auth for channel \"%*s\"",
                          ch->len, ch->data);
            ngx_http_pusher_subscription_error(pc, ch, "AuthError",
                                               "Invalid signature", 401);
            return;
        }
    }

    rc = ngx_http_pusher_subscribe(pc, (u_char *) ch->data, ch->len);

    if (rc == NGX_ERROR) {
        ngx_http_pusher_subscription_error(pc, ch, "ServerError",
                                           "Server error", 500);
        return;
    }

    if (rc == NGX_BUSY) {
        ngx_http_pusher_subscription_error(pc, ch, "LimitReached",
                                           "Too many subscriptions",
                                           PUSHER_ERR_OVER_CAPACITY);
        return;
    }

    /* NGX_OK, or NGX_DECLINED for a repeated subscribe: confirm again */

    len = pusher_build_subscription_succeeded(buf, sizeof(buf), ch->data,
                                              ch->len);

    (void) ngx_http_pusher_send_text(pc, buf, len);
}


static void
ngx_http_pusher_subscription_error(ngx_http_pusher_conn_t *pc,
    pusher_str_t *channel, const char *type, const char *error,
    ngx_uint_t status)
{
    u_char  *p, *last;
    u_char   buf[NGX_HTTP_PUSHER_FRAME_MAX];

    /* the channel was a JSON string: at most 6 bytes out per byte in */

    if (channel->len > (sizeof(buf) - 256) / 6) {
        channel->len = (sizeof(buf) - 256) / 6;
    }

    last = buf + sizeof(buf);

    p = ngx_cpymem(buf, "{\"event\":\"pusher:subscription_error\","
                   "\"channel\":\"",
                   sizeof("{\"event\":\"pusher:subscription_error\","
                          "\"channel\":\"") - 1);

    p += pusher_json_escape(p, (const uint8_t *) channel->data,
                            channel->len);

    p = ngx_slprintf(p, last,
                     "\",\"data\":\"{\\\"type\\\":\\\"%s\\\","
                     "\\\"error\\\":\\\"%s\\\",\\\"status\\\":%ui}\"}",
                     type, error, status);

    (void) ngx_http_pusher_send_text(pc, buf, p - buf);
}


void
ngx_http_pusher_session_ping(ngx_http_pusher_conn_t *pc)
{
    size_t  n;
    u_char  buf[64];

    if (pc->control_frames) {
        (void) ngx_http_pusher_send_control(pc, PUSHER_WS_OP_PING, NULL, 0);
        return;
    }

    n = pusher_build_ping(buf, sizeof(buf));
    (void) ngx_http_pusher_send_text(pc, buf, n);
}


/* pusher:error, then optionally the close frame with the same code */

void
ngx_http_pusher_session_error(ngx_http_pusher_conn_t *pc, ngx_uint_t code,
    const char *message, ngx_uint_t close)
{
    size_t  n;
    u_char  buf[NGX_HTTP_PUSHER_FRAME_MAX];

    n = pusher_build_error(buf, sizeof(buf), (int) code, message);

    if (n) {
        (void) ngx_http_pusher_send_text(pc, buf, n);
    }

    if (close) {
        ngx_http_pusher_send_close(pc, code, message);
    }
}
