
/*
 * Copyright (C) ngx-pusher authors
 */


#include "ngx_http_pusher_module.h"
#include "pusher_auth.h"
#include "pusher_ctl.h"

#include <openssl/rand.h>

#include <cjson/cJSON.h>


/* largest frame built here: a subscription_error with a 200-byte name */
#define NGX_HTTP_PUSHER_FRAME_MAX          2048


static ngx_uint_t ngx_http_pusher_session_rate(ngx_http_pusher_conn_t *pc);
static void ngx_http_pusher_subscribe_message(ngx_http_pusher_conn_t *pc,
    pusher_msg_t *m);
static void ngx_http_pusher_subscribe_presence_message(
    ngx_http_pusher_conn_t *pc, pusher_msg_t *m);
static void ngx_http_pusher_client_event(ngx_http_pusher_conn_t *pc,
    pusher_msg_t *m);
static void ngx_http_pusher_signin(ngx_http_pusher_conn_t *pc,
    pusher_msg_t *m);


/*
 * socket_id "pid.n": unique among the live workers of this host.  In a
 * cluster, where another host's worker may have the same pid (containers
 * start their processes at the same numbers), n starts at a random 48-bit
 * number, so that a socket_id excludes one socket of the whole cluster.
 */
static ngx_uint_t  ngx_http_pusher_last_id;


ngx_int_t
ngx_http_pusher_session_init_worker(ngx_http_pusher_main_conf_t *pmcf,
    ngx_log_t *log)
{
    uint64_t  r;

    ngx_http_pusher_last_id = 0;

    if (pmcf->cluster_url.len == 0) {
        return NGX_OK;
    }

    if (RAND_bytes((u_char *) &r, sizeof(r)) != 1) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "pusher: RAND_bytes() failed: no random socket_id "
                      "base for the cluster");
        return NGX_ERROR;
    }

    ngx_http_pusher_last_id = (ngx_uint_t) (r & 0xffffffffffffULL);

    return NGX_OK;
}


size_t
ngx_http_pusher_socket_id(ngx_http_pusher_conn_t *pc, u_char *buf)
{
    return ngx_sprintf(buf, "%P.%ui", ngx_pid, pc->id) - buf;
}


/* "pid.n" NUL-terminated for debug lines; "-" before connection_established */

const char *
ngx_http_pusher_session_socket(ngx_http_pusher_conn_t *pc, u_char *buf)
{
    if (pc->id == 0) {
        return "-";
    }

    *ngx_sprintf(buf, "%P.%ui", ngx_pid, pc->id) = '\0';

    return (const char *) buf;
}


/*
 * The Origin header of the upgrade for the connect line, "-" if none: kept
 * by ngx_http_pusher_debug_keep_origin() while the request is there, used
 * by ngx_http_pusher_session_open() right after, in the same event.
 */

static u_char     ngx_http_pusher_debug_origin_buf[NGX_HTTP_PUSHER_DEBUG_TEXT];
static ngx_str_t  ngx_http_pusher_debug_origin_text = ngx_string("-");


static ngx_str_t
ngx_http_pusher_debug_origin(ngx_http_pusher_conn_t *pc, u_char *buf)
{
    ngx_str_t         none = ngx_string("-");
    ngx_table_elt_t  *h;

    if (pc->request == NULL) {
        return none;
    }

    h = ngx_http_pusher_header(pc->request, "Origin", sizeof("Origin") - 1,
                               NULL, 0);
    if (h == NULL) {
        return none;
    }

    return ngx_http_pusher_debug_text(buf, NGX_HTTP_PUSHER_DEBUG_TEXT,
                                      h->value.data, h->value.len);
}


void
ngx_http_pusher_debug_keep_origin(ngx_http_pusher_conn_t *pc)
{
    ngx_http_pusher_debug_origin_text =
        ngx_http_pusher_debug_origin(pc, ngx_http_pusher_debug_origin_buf);
}


void
ngx_http_pusher_session_open(ngx_http_pusher_conn_t *pc)
{
    size_t     len, n;
    ngx_str_t  origin;
    u_char     id[NGX_HTTP_PUSHER_SOCKET_ID_LEN + 1];
    u_char     buf[NGX_HTTP_PUSHER_FRAME_MAX];

    origin = ngx_http_pusher_debug_origin_text;
    ngx_str_set(&ngx_http_pusher_debug_origin_text, "-");

    if (ngx_http_pusher_debug_on) {

        if (pc->app == NULL) {
            ngx_http_pusher_debug("connect app (unknown key) origin \"%V\" "
                                  "worker %P: refused 4001", &origin,
                                  ngx_pid);

        } else if (!pc->app->enabled || pc->origin_denied) {
            ngx_http_pusher_debug("connect app %V origin \"%V\" worker %P: "
                                  "refused %s", &pc->app->id, &origin,
                                  ngx_pid,
                                  pc->origin_denied
                                  ? "4009 (origin not in allowed_origins)"
                                  : "4003 (app not enabled)");
        }
    }

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

    if (!pc->app->enabled) {
        ngx_log_error(NGX_LOG_INFO, pc->connection->log, 0,
                      "pusher: client connected to disabled app \"%V\"",
                      &pc->app->id);
        ngx_http_pusher_session_error(pc, PUSHER_ERR_APP_DISABLED,
                                      "The app is not enabled.", 1);
        return;
    }

    if (pc->origin_denied) {
        ngx_http_pusher_session_error(pc, PUSHER_ERR_UNAUTHORIZED,
                                      "Origin not allowed", 1);
        return;
    }

    if (ngx_http_pusher_zone_connect(pc) != NGX_OK) {
        ngx_http_pusher_debug("connect app %V worker %P: refused 4004 "
                              "(max_connections %ui)", &pc->app->id, ngx_pid,
                              pc->app->max_connections);
        ngx_log_error(NGX_LOG_INFO, pc->connection->log, 0,
                      "pusher: app \"%V\" is at max_connections %ui",
                      &pc->app->id, pc->app->max_connections);
        ngx_http_pusher_session_error(pc, PUSHER_ERR_OVER_QUOTA,
                                      "Application is over connection quota",
                                      1);
        return;
    }

    pc->id = ++ngx_http_pusher_last_id;

    n = ngx_http_pusher_socket_id(pc, id);

    len = pusher_build_connection_established(buf, sizeof(buf), (char *) id,
                                              n,
                                              pc->app->activity_timeout);

    (void) ngx_http_pusher_send_text(pc, buf, len);

    if (ngx_http_pusher_debug_on) {
        id[n] = '\0';
        ngx_http_pusher_debug("connect socket %s app %V origin \"%V\" "
                              "worker %P", id, &pc->app->id, &origin,
                              ngx_pid);
    }
}


/*
 * rate_limit, as Reverb counts: every message, valid or not, from the
 * first of a window of rate_limit_decay; 0 if this one is over the limit
 * (refused with 4301, the socket closed with "terminate")
 */

static ngx_uint_t
ngx_http_pusher_session_rate(ngx_http_pusher_conn_t *pc)
{
    ngx_msec_t              now;
    ngx_http_pusher_app_t  *app;

    app = pc->app;
    now = ngx_current_msec;

    if (pc->msg_count == 0 || now - pc->msg_window >= app->rate_limit_decay) {
        pc->msg_window = now;
        pc->msg_count = 0;
    }

    if (pc->msg_count < app->rate_limit) {
        pc->msg_count++;
        return 1;
    }

    ngx_http_pusher_count(app, rate_limited);

    ngx_log_error(NGX_LOG_INFO, pc->connection->log, 0,
                  "pusher: client is over rate_limit %ui per %M ms",
                  app->rate_limit, app->rate_limit_decay);

    ngx_http_pusher_session_error(pc, PUSHER_ERR_CLIENT_EVENT,
                                  "Rate limit exceeded",
                                  app->rate_limit_terminate);
    return 0;
}


static void
ngx_http_pusher_debug_unsubscribe(ngx_http_pusher_conn_t *pc,
    pusher_str_t *channel)
{
    ngx_str_t  name;
    u_char     id[NGX_HTTP_PUSHER_SOCKET_ID_LEN + 1];
    u_char     text[NGX_HTTP_PUSHER_DEBUG_TEXT];

    name = ngx_http_pusher_debug_text(text, sizeof(text),
                                      (const u_char *) channel->data,
                                      channel->len);

    ngx_http_pusher_debug("unsubscribe socket %s channel \"%V\"%s",
                          ngx_http_pusher_session_socket(pc, id), &name,
                          ngx_http_pusher_find_sub(pc, (u_char *) channel->data,
                                                   channel->len)
                          ? "" : ": was not subscribed");
}


/* debug: the subscription is confirmed (subscription_succeeded sent) */

void
ngx_http_pusher_debug_subscribed(ngx_http_pusher_conn_t *pc, u_char *channel,
    size_t len, const char *how)
{
    ngx_str_t  name;
    u_char     id[NGX_HTTP_PUSHER_SOCKET_ID_LEN + 1];
    u_char     text[NGX_HTTP_PUSHER_DEBUG_TEXT];

    name = ngx_http_pusher_debug_text(text, sizeof(text), channel, len);

    ngx_http_pusher_debug("subscribe socket %s channel \"%V\": ok%s",
                          ngx_http_pusher_session_socket(pc, id), &name, how);
}


/*
 * debug: why an auth string does not authorize the subscription; never
 * the signature itself
 */

static const char *
ngx_http_pusher_auth_why(ngx_http_pusher_app_t *app, pusher_str_t *auth,
    const char *signed_over)
{
    size_t       i, k;
    const char  *p;

    if (auth->len == 0) {
        return "no auth in the subscribe (the client got no signature "
               "from the app's auth endpoint)";
    }

    p = (const char *) ngx_strlchr((u_char *) auth->data,
                                   (u_char *) auth->data + auth->len, ':');
    k = p ? (size_t) (p - auth->data) : auth->len;

    if (p == NULL || k != app->key.len
        || ngx_strncmp(auth->data, app->key.data, k) != 0)
    {
        return "the auth is not \"key:signature\" with this app's key "
               "(signed for another app?)";
    }

    if (auth->len - k - 1 != 64) {
        return "the signature is not 64 hex digits";
    }

    for (i = k + 1; i < auth->len; i++) {
        if (!((auth->data[i] >= '0' && auth->data[i] <= '9')
              || (auth->data[i] >= 'a' && auth->data[i] <= 'f')))
        {
            return "the signature is not 64 lowercase hex digits";
        }
    }

    return signed_over;
}


void
ngx_http_pusher_session_message(ngx_http_pusher_conn_t *pc,
    const u_char *data, size_t len)
{
    size_t        n;
    ngx_int_t     rc;
    pusher_msg_t  m;
    u_char        buf[NGX_HTTP_PUSHER_FRAME_MAX];

    ngx_http_pusher_count_local(pc->app, messages_in, 1);

    if (pc->app->rate_limit && !ngx_http_pusher_session_rate(pc)) {
        return;
    }

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
        (void) ngx_http_pusher_send_pong_text(pc, buf, n);
        break;

    case PUSHER_MSG_PONG:
        break;

    case PUSHER_MSG_SUBSCRIBE:
        ngx_http_pusher_subscribe_message(pc, &m);
        break;

    case PUSHER_MSG_UNSUBSCRIBE:
        if (ngx_http_pusher_debug_on) {
            ngx_http_pusher_debug_unsubscribe(pc, &m.channel);
        }

        ngx_http_pusher_unsubscribe(pc, (u_char *) m.channel.data,
                                    m.channel.len);
        break;

    case PUSHER_MSG_CLIENT_EVENT:
        ngx_http_pusher_client_event(pc, &m);
        break;

    case PUSHER_MSG_SIGNIN:
        ngx_http_pusher_signin(pc, &m);
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
    ngx_http_pusher_sub_t  *sub;
    pusher_channel_type_e   type;
    u_char                  id[NGX_HTTP_PUSHER_SOCKET_ID_LEN];
    u_char                  buf[NGX_HTTP_PUSHER_FRAME_MAX];

    app = pc->app;
    ch = &m->channel;

    if (!pusher_channel_name_valid(ch->data, ch->len)) {
        ngx_http_pusher_session_subscription_error(pc, ch, "InvalidChannel",
                                           "Invalid channel name",
                                           PUSHER_ERR_UNAUTHORIZED,
                                           "the name is not "
                                           "[-a-zA-Z0-9_=@,.;]+ of at most "
                                           "200 bytes");
        return;
    }

    type = pusher_channel_type(ch->data, ch->len);

    switch (type) {

    case PUSHER_CHANNEL_PRESENCE:
    case PUSHER_CHANNEL_PRESENCE_CACHE:
        ngx_http_pusher_subscribe_presence_message(pc, m);
        return;

    case PUSHER_CHANNEL_SERVER_TO_USER:
        /* only the socket signed in as that user: #server-to-user-{id} */
        n = sizeof("#server-to-user-") - 1;

        if (pc->user_id.len == 0
            || ch->len != n + pc->user_id.len
            || ngx_strncmp(ch->data + n, pc->user_id.data, pc->user_id.len)
               != 0)
        {
            ngx_http_pusher_session_subscription_error(pc, ch, "AuthError",
                                            "Not signed in as this user",
                                            401,
                                            pc->user_id.len
                                            ? "the socket signed in as "
                                              "another user"
                                            : "the socket has not signed in "
                                              "(pusher:signin)");
            return;
        }

        break;

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
            ngx_http_pusher_session_subscription_error(pc, ch, "AuthError",
                                               "Invalid signature", 401,
                ngx_http_pusher_debug_on
                ? ngx_http_pusher_auth_why(app, &m->auth,
                      "the signature is not that of socket_id:channel with "
                      "this app's secret (signed for another socket_id or "
                      "channel, or with another secret)")
                : NULL);
            return;
        }
    }

    if (type == PUSHER_CHANNEL_CACHE || type == PUSHER_CHANNEL_PRIVATE_CACHE) {
        sub = ngx_http_pusher_find_sub(pc, (u_char *) ch->data, ch->len);

        if (sub && sub->pending) {
            /* the answer is on its way and confirms it */
            return;
        }

        /* the broker's answer sends subscription_succeeded and the cache */
        rc = sub ? NGX_DECLINED
                 : ngx_http_pusher_subscribe_cache(pc, (u_char *) ch->data,
                                                   ch->len);

        if (rc == NGX_OK) {
            if (pusher_channel_needs_auth(type)) {
                pc->authorized = 1;
            }

            return;
        }

    } else {
        rc = ngx_http_pusher_subscribe(pc, (u_char *) ch->data, ch->len);
    }

    if (rc == NGX_ERROR) {
        ngx_http_pusher_session_subscription_error(pc, ch, "ServerError",
                                           "Server error", 500,
                                           "out of memory");
        return;
    }

    if (rc == NGX_BUSY) {
        ngx_http_pusher_session_subscription_error(pc, ch, "LimitReached",
                                           "Too many subscriptions",
                                           PUSHER_ERR_OVER_CAPACITY,
                                           "the socket holds 1000 channels");
        return;
    }

    if (pusher_channel_needs_auth(type)) {
        pc->authorized = 1;
    }

    /* NGX_OK, or NGX_DECLINED for a repeated subscribe: confirm again */

    len = pusher_build_subscription_succeeded(buf, sizeof(buf), ch->data,
                                              ch->len);

    (void) ngx_http_pusher_send_text(pc, buf, len);

    if (ngx_http_pusher_debug_on) {
        ngx_http_pusher_debug_subscribed(pc, (u_char *) ch->data, ch->len,
                                         rc == NGX_DECLINED
                                         ? " (again)"
                                         : pusher_channel_needs_auth(type)
                                           ? " (signature valid)" : "");
    }
}


static void
ngx_http_pusher_subscribe_presence_message(ngx_http_pusher_conn_t *pc,
    pusher_msg_t *m)
{
    char                   *id_json, *info_json;
    u_char                 *p;
    size_t                  n;
    cJSON                  *data, *uid, *info;
    ngx_int_t               rc;
    ngx_str_t               user_id, user_info;
    pusher_str_t           *ch;
    ngx_http_pusher_app_t  *app;
    u_char                  id[NGX_HTTP_PUSHER_SOCKET_ID_LEN + 1];

    app = pc->app;
    ch = &m->channel;
    n = ngx_http_pusher_socket_id(pc, id);

    if (!pusher_auth_channel_ok(app->secret.data, app->secret.len,
                                app->key.data, app->key.len, id, n,
                                (const uint8_t *) ch->data, ch->len,
                                (const uint8_t *) m->channel_data.data,
                                m->channel_data.len,
                                (const uint8_t *) m->auth.data, m->auth.len)
        || (m->channel_data.len == 0 && pc->user_id.len == 0))
    {
        ngx_log_error(NGX_LOG_INFO, pc->connection->log, 0,
                      "pusher: invalid auth for channel \"%*s\"",
                      ch->len, ch->data);
        ngx_http_pusher_session_subscription_error(pc, ch, "AuthError",
                                                   "Invalid signature", 401,
            !ngx_http_pusher_debug_on
            ? NULL
            : (m->channel_data.len == 0 && pc->user_id.len == 0)
              ? (m->auth.len == 0
                 ? "no auth in the subscribe (the client got no signature "
                   "from the app's auth endpoint)"
                 : "no channel_data and the socket has not signed in")
              : ngx_http_pusher_auth_why(app, &m->auth,
                    m->channel_data.len
                    ? "the signature is not that of "
                      "socket_id:channel:channel_data with this app's "
                      "secret (signed for another socket_id, channel or "
                      "channel_data, or with another secret)"
                    : "the signature is not that of socket_id:channel with "
                      "this app's secret (signed for another socket_id or "
                      "channel, or with another secret)"));
        return;
    }

    if (ngx_http_pusher_find_sub(pc, (u_char *) ch->data, ch->len)) {
        /* a repeated subscribe: the membership stands */
        return;
    }

    if (m->channel_data.len == 0) {
        /*
         * a signed-in socket whose auth carried no channel_data (Pusher's
         * authorized connections): the member is the signed-in user
         */

        p = ngx_alloc(2 + 6 * pc->user_id.len, pc->connection->log);
        if (p == NULL) {
            return;
        }

        user_id.data = p;
        *p++ = '"';
        p += pusher_json_escape(p, pc->user_id.data, pc->user_id.len);
        *p++ = '"';
        user_id.len = p - user_id.data;

        rc = ngx_http_pusher_subscribe_presence(pc, (u_char *) ch->data,
                                                ch->len, &user_id,
                                                &pc->user_info);
        ngx_free(user_id.data);
        goto done;
    }

    data = cJSON_ParseWithLength(m->channel_data.data, m->channel_data.len);
    uid = cJSON_GetObjectItemCaseSensitive(data, "user_id");
    info = cJSON_GetObjectItemCaseSensitive(data, "user_info");

    if (!cJSON_IsObject(data)
        || !(cJSON_IsString(uid) || cJSON_IsNumber(uid))
        || (cJSON_IsString(uid) && uid->valuestring[0] == '\0'))
    {
        cJSON_Delete(data);
        ngx_http_pusher_session_subscription_error(pc, ch, "AuthError",
                                                   "Invalid channel_data",
                                                   401,
                                                   "channel_data is not a JSON "
                                                   "object with a user_id "
                                                   "that is a number or a "
                                                   "non-empty string");
        return;
    }

    id_json = cJSON_PrintUnformatted(uid);
    info_json = (info && !cJSON_IsNull(info)) ? cJSON_PrintUnformatted(info)
                                               : NULL;
    cJSON_Delete(data);

    if (id_json == NULL || (info && !cJSON_IsNull(info) && info_json == NULL))
    {
        cJSON_free(id_json);
        cJSON_free(info_json);
        return;
    }

    user_id.data = (u_char *) id_json;
    user_id.len = ngx_strlen(id_json);
    user_info.data = (u_char *) info_json;
    user_info.len = info_json ? ngx_strlen(info_json) : 0;

    if (user_info.len > app->presence_max_user_info) {
        cJSON_free(id_json);
        cJSON_free(info_json);
        ngx_http_pusher_session_subscription_error(pc, ch, "LimitReached",
                                     "The maximum size of user info was "
                                     "exceeded", PUSHER_ERR_CLIENT_EVENT,
                                     "user_info is over "
                                     "presence_max_user_info");
        return;
    }

    rc = ngx_http_pusher_subscribe_presence(pc, (u_char *) ch->data, ch->len,
                                            &user_id, &user_info);

    cJSON_free(id_json);
    cJSON_free(info_json);

done:

    if (rc == NGX_OK) {
        pc->authorized = 1;
    }

    if (rc == NGX_BUSY) {
        ngx_http_pusher_session_subscription_error(pc, ch, "LimitReached",
                                                   "Too many subscriptions",
                                                   PUSHER_ERR_OVER_CAPACITY,
                                                   "the socket holds 1000 "
                                                   "channels");

    } else if (rc == NGX_ERROR) {
        ngx_http_pusher_session_subscription_error(pc, ch, "ServerError",
                                                   "Server error", 500,
                                                   "out of memory");

    } else if (rc == NGX_OK) {
        ngx_http_pusher_debug("subscribe socket %s channel \"%*s\": "
                              "signature valid, waiting for the broker's "
                              "member list",
                              ngx_http_pusher_session_socket(pc, id),
                              ch->len, ch->data);
    }
}


/*
 * A client event, checked here and relayed through the broker so that
 * every worker's subscribers get it in one order; the frame is built once,
 * here, and the sender is excluded by its socket_id.
 */

static void
ngx_http_pusher_client_event(ngx_http_pusher_conn_t *pc, pusher_msg_t *m)
{
    char                   *data;
    cJSON                  *raw;
    u_char                 *p, *json;
    size_t                  n, len, uid_len;
    ngx_str_t               f[4];
    pusher_str_t           *ch;
    ngx_msec_t              now;
    ngx_http_pusher_app_t  *app;
    ngx_int_t               rc;
    ngx_str_t               name;
    ngx_http_pusher_sub_t  *sub;
    pusher_channel_type_e   type;
    u_char                  id[NGX_HTTP_PUSHER_SOCKET_ID_LEN + 1];
    u_char                  text[NGX_HTTP_PUSHER_DEBUG_TEXT];

    app = pc->app;
    ch = &m->channel;

    if (app->client_events == NGX_HTTP_PUSHER_CLIENT_EVENTS_NONE) {
        ngx_http_pusher_session_error(pc, PUSHER_ERR_CLIENT_EVENT,
                                      "The app does not have client "
                                      "messaging enabled", 0);
        return;
    }

    if (!pusher_channel_name_valid(ch->data, ch->len)) {
        ngx_http_pusher_session_error(pc, PUSHER_ERR_CLIENT_EVENT,
                                      "Invalid channel name", 0);
        return;
    }

    type = pusher_channel_type(ch->data, ch->len);

    if (type == PUSHER_CHANNEL_PRIVATE_ENCRYPTED) {
        ngx_http_pusher_session_error(pc, PUSHER_ERR_CLIENT_EVENT,
                                      "Client events are not allowed on "
                                      "encrypted channels", 0);
        return;
    }

    if (type != PUSHER_CHANNEL_PRIVATE
        && type != PUSHER_CHANNEL_PRIVATE_CACHE
        && type != PUSHER_CHANNEL_PRESENCE
        && type != PUSHER_CHANNEL_PRESENCE_CACHE)
    {
        ngx_http_pusher_session_error(pc, PUSHER_ERR_CLIENT_EVENT,
                                      "Client events are only allowed on "
                                      "private and presence channels", 0);
        return;
    }

    sub = ngx_http_pusher_find_sub(pc, (u_char *) ch->data, ch->len);

    if (sub && sub->pending) {
        sub = NULL;
    }

    if (sub == NULL
        && app->client_events == NGX_HTTP_PUSHER_CLIENT_EVENTS_MEMBERS)
    {
        ngx_http_pusher_session_error(pc, PUSHER_ERR_UNAUTHORIZED,
                                      "The client is not a member of the "
                                      "specified channel", 0);
        return;
    }

    if (m->event.len > PUSHER_EVENT_NAME_MAX) {
        ngx_http_pusher_session_error(pc, PUSHER_ERR_CLIENT_EVENT,
                                      "Event name is too long", 0);
        return;
    }

    /* a fixed one-second window per connection */

    now = ngx_current_msec;

    if (now - pc->rate_window >= 1000) {
        pc->rate_window = now;
        pc->rate_count = 0;
    }

    if (++pc->rate_count > app->client_event_rate) {
        ngx_http_pusher_count(app, client_event_limited);
        ngx_http_pusher_session_error(pc, PUSHER_ERR_CLIENT_EVENT,
                                      "Client event rejected due to rate "
                                      "limit", 0);
        return;
    }

    /* relayed as the client sent it: a string holding JSON stays a string */
    raw = cJSON_GetObjectItemCaseSensitive(m->root, "data");
    data = raw ? cJSON_PrintUnformatted(raw) : NULL;
    len = data ? ngx_strlen(data) : 0;

    uid_len = 0;

    if (sub && sub->presence) {
        uid_len = sub->user_id.len;
    }

    /* {"event":"E","channel":"C","data":D,"user_id":"U"}: names are valid */

    n = sizeof("{\"event\":\"\",\"channel\":\"\",\"data\":,"
               "\"user_id\":\"\"}") + pusher_json_escape(NULL,
                                           (const uint8_t *) m->event.data,
                                           m->event.len)
        + ch->len + len + 2 * uid_len + 8;

    json = ngx_alloc(n, pc->connection->log);
    if (json == NULL) {
        cJSON_free(data);
        return;
    }

    p = ngx_cpymem(json, "{\"event\":\"", sizeof("{\"event\":\"") - 1);
    p += pusher_json_escape(p, (const uint8_t *) m->event.data, m->event.len);
    p = ngx_cpymem(p, "\",\"channel\":\"", sizeof("\",\"channel\":\"") - 1);
    p = ngx_cpymem(p, ch->data, ch->len);
    p = ngx_cpymem(p, "\"", 1);

    if (data) {
        p = ngx_cpymem(p, ",\"data\":", sizeof(",\"data\":") - 1);
        p = ngx_cpymem(p, data, len);
    }

    if (uid_len) {
        /* the string form of the user_id JSON text */
        p = ngx_cpymem(p, ",\"user_id\":", sizeof(",\"user_id\":") - 1);

        if (sub->user_id.data[0] == '"') {
            p = ngx_cpymem(p, sub->user_id.data, sub->user_id.len);

        } else {
            *p++ = '"';
            p = ngx_cpymem(p, sub->user_id.data, sub->user_id.len);
            *p++ = '"';
        }
    }

    *p++ = '}';

    cJSON_free(data);

    n = ngx_http_pusher_socket_id(pc, id);

    f[0] = app->id;
    f[1].data = (u_char *) ch->data;
    f[1].len = ch->len;
    f[2].data = id;
    f[2].len = n;
    f[3].data = json;
    f[3].len = p - json;

    rc = ngx_http_pusher_uplink(PUSHER_CTL_CLIENT_EVENT, f, 4);

    if (ngx_http_pusher_debug_on) {
        id[n] = '\0';
        name = ngx_http_pusher_debug_text(text, sizeof(text),
                                          (const u_char *) m->event.data,
                                          m->event.len);
        ngx_http_pusher_debug("client event \"%V\" socket %s channel "
                              "\"%*s\" data %uz bytes: %s", &name, id,
                              ch->len, ch->data, len,
                              rc == NGX_OK ? "relayed to the broker"
                                           : "dropped (no broker link)");
    }

    ngx_http_pusher_count(app, client_events);

    ngx_free(json);
}


/*
 * pusher:signin: auth over "socket_id::user::user_data", user_data a JSON
 * object with a non-empty string "id".  The socket may then subscribe to
 * #server-to-user-{id}, where the HTTP API sends to that user.
 */

static void
ngx_http_pusher_signin(ngx_http_pusher_conn_t *pc, pusher_msg_t *m)
{
    char                   *inner, *wl, *ui;
    u_char                 *p;
    size_t                  n, len, wl_len, ui_len;
    cJSON                  *data, *id, *obj, *watch, *info;
    ngx_http_pusher_app_t  *app;
    u_char                  sid[NGX_HTTP_PUSHER_SOCKET_ID_LEN + 1];
    u_char                  channel[PUSHER_CHANNEL_MAX];

    app = pc->app;
    n = ngx_http_pusher_socket_id(pc, sid);

    if (!pusher_auth_user_ok(app->secret.data, app->secret.len,
                             app->key.data, app->key.len, sid, n,
                             (const uint8_t *) m->user_data.data,
                             m->user_data.len,
                             (const uint8_t *) m->auth.data, m->auth.len))
    {
        ngx_log_error(NGX_LOG_INFO, pc->connection->log, 0,
                      "pusher: invalid pusher:signin auth");
        ngx_http_pusher_debug("signin socket %s: refused: %s",
            ngx_http_pusher_session_socket(pc, sid),
            ngx_http_pusher_auth_why(app, &m->auth,
                "the signature is not that of socket_id::user::user_data "
                "with this app's secret"));
        ngx_http_pusher_session_error(pc, PUSHER_ERR_UNAUTHORIZED,
                                      "Connection not authorized", 1);
        return;
    }

    data = cJSON_ParseWithLength(m->user_data.data, m->user_data.len);
    id = cJSON_GetObjectItemCaseSensitive(data, "id");
    watch = cJSON_GetObjectItemCaseSensitive(data, "watchlist");

    if (!cJSON_IsObject(data) || !cJSON_IsString(id)
        || id->valuestring[0] == '\0'
        || ngx_strlen(id->valuestring) > PUSHER_CHANNEL_MAX
                                         - (sizeof("#server-to-user-") - 1)
        || !pusher_channel_name_valid(id->valuestring,
                                      ngx_strlen(id->valuestring)))
    {
        cJSON_Delete(data);
        ngx_http_pusher_session_error(pc, PUSHER_ERR_UNAUTHORIZED,
                                      "The user data must contain a string id",
                                      1);
        return;
    }

    wl = cJSON_IsArray(watch) ? cJSON_PrintUnformatted(watch) : NULL;
    info = cJSON_GetObjectItemCaseSensitive(data, "user_info");
    ui = (info && !cJSON_IsNull(info)) ? cJSON_PrintUnformatted(info) : NULL;

    len = ngx_strlen(id->valuestring);
    wl_len = wl ? ngx_strlen(wl) : 0;
    ui_len = ui ? ngx_strlen(ui) : 0;

    if (ui_len > app->presence_max_user_info) {
        /* unusable as a presence member: as if absent */
        ui_len = 0;
    }

    p = ngx_alloc(len + wl_len + ui_len, pc->connection->log);
    if (p == NULL) {
        cJSON_free(wl);
        cJSON_free(ui);
        cJSON_Delete(data);
        return;
    }

    ngx_memcpy(p, id->valuestring, len);

    if (wl) {
        ngx_memcpy(p + len, wl, wl_len);
    }

    if (ui_len) {
        ngx_memcpy(p + len + wl_len, ui, ui_len);
    }

    cJSON_free(wl);
    cJSON_free(ui);
    cJSON_Delete(data);

    /* a second sign-in replaces the first */

    if (pc->user_id.data) {
        ngx_http_pusher_user_offline(pc);

        n = sizeof("#server-to-user-") - 1;
        ngx_memcpy(channel, "#server-to-user-", n);
        ngx_memcpy(channel + n, pc->user_id.data, pc->user_id.len);
        ngx_http_pusher_unsubscribe(pc, channel, n + pc->user_id.len);

        ngx_free(pc->user_id.data);
    }

    pc->user_id.data = p;
    pc->user_id.len = len;
    pc->watchlist.data = p + len;
    pc->watchlist.len = wl_len;
    pc->user_info.data = p + len + wl_len;
    pc->user_info.len = ui_len;
    pc->authorized = 1;

    ngx_http_pusher_debug("signin socket %s: ok, user \"%V\"",
                          ngx_http_pusher_session_socket(pc, sid),
                          &pc->user_id);

    /*
     * the socket joins #server-to-user-{id} now, before signin_success:
     * what the broker sends there (watchlist events) is not missed
     */

    n = sizeof("#server-to-user-") - 1;
    ngx_memcpy(channel, "#server-to-user-", n);
    ngx_memcpy(channel + n, pc->user_id.data, pc->user_id.len);
    (void) ngx_http_pusher_subscribe(pc, channel, n + pc->user_id.len);

    ngx_http_pusher_user_online(pc);

    /* {"event":"pusher:signin_success","data":"{\"user_data\":\"...\"}"} */

    obj = cJSON_CreateObject();
    if (obj == NULL) {
        return;
    }

    if (cJSON_AddStringToObject(obj, "user_data",
                                m->user_data.data) == NULL)
    {
        cJSON_Delete(obj);
        return;
    }

    inner = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);

    if (inner == NULL) {
        return;
    }

    len = ngx_strlen(inner);
    n = sizeof("{\"event\":\"pusher:signin_success\",\"data\":\"\"}") - 1
        + pusher_json_escape(NULL, (const uint8_t *) inner, len);

    p = ngx_alloc(n, pc->connection->log);
    if (p == NULL) {
        cJSON_free(inner);
        return;
    }

    n = ngx_cpymem(p, "{\"event\":\"pusher:signin_success\",\"data\":\"",
                   sizeof("{\"event\":\"pusher:signin_success\",\"data\":\"")
                   - 1) - p;
    n += pusher_json_escape(p + n, (const uint8_t *) inner, len);
    p[n++] = '"';
    p[n++] = '}';

    cJSON_free(inner);

    (void) ngx_http_pusher_send_text(pc, p, n);

    ngx_free(p);
}


/* USER_ONLINE / USER_OFFLINE: the broker tracks who is online */

void
ngx_http_pusher_user_online(ngx_http_pusher_conn_t *pc)
{
    size_t     n;
    u_char     id[NGX_HTTP_PUSHER_SOCKET_ID_LEN];
    ngx_str_t  f[4];

    if (pc->user_id.len == 0) {
        return;
    }

    n = ngx_http_pusher_socket_id(pc, id);

    f[0] = pc->app->id;
    f[1] = pc->user_id;
    f[2].data = id;
    f[2].len = n;
    f[3] = pc->watchlist;

    /* without a link the announcement after WELCOME sends it */
    (void) ngx_http_pusher_uplink(PUSHER_CTL_USER_ONLINE, f, 4);

    pc->online = 1;
}


void
ngx_http_pusher_user_offline(ngx_http_pusher_conn_t *pc)
{
    size_t     n;
    u_char     id[NGX_HTTP_PUSHER_SOCKET_ID_LEN];
    ngx_str_t  f[3];

    if (!pc->online) {
        return;
    }

    pc->online = 0;

    n = ngx_http_pusher_socket_id(pc, id);

    f[0] = pc->app->id;
    f[1] = pc->user_id;
    f[2].data = id;
    f[2].len = n;

    (void) ngx_http_pusher_uplink(PUSHER_CTL_USER_OFFLINE, f, 3);
}


void
ngx_http_pusher_session_subscription_error(ngx_http_pusher_conn_t *pc,
    pusher_str_t *channel, const char *type, const char *error,
    ngx_uint_t status, const char *why)
{
    u_char     *p, *last;
    ngx_str_t   name;
    u_char      buf[NGX_HTTP_PUSHER_FRAME_MAX];
    u_char      id[NGX_HTTP_PUSHER_SOCKET_ID_LEN + 1];

    if (ngx_http_pusher_debug_on) {
        /* buf is free until the frame is built */
        name = ngx_http_pusher_debug_text(buf, sizeof(buf),
                                          (const u_char *) channel->data,
                                          channel->len);
        ngx_http_pusher_debug("subscribe socket %s channel \"%V\": "
                              "refused %s %ui \"%s\"%s%s",
                              ngx_http_pusher_session_socket(pc, id), &name,
                              type, status, error, why ? ": " : "",
                              why ? why : "");
    }

    /*
     * the channel was a JSON string: at most 6 bytes out per byte in, and
     * cut where a character ends (the frame is text, so UTF-8)
     */

    channel->len = pusher_utf8_prefix((const uint8_t *) channel->data,
                                      channel->len, (sizeof(buf) - 256) / 6);

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
    u_char  id[NGX_HTTP_PUSHER_SOCKET_ID_LEN + 1];

    ngx_http_pusher_debug("error socket %s: %ui \"%s\"%s",
                          ngx_http_pusher_session_socket(pc, id), code,
                          message, close ? ", closing" : "");

    n = pusher_build_error(buf, sizeof(buf), (int) code, message);

    if (n) {
        (void) ngx_http_pusher_send_text(pc, buf, n);
    }

    if (close) {
        ngx_http_pusher_send_close(pc, code, message);
    }
}
