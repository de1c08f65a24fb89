
/*
 * Copyright (C) ngx-pusher authors
 */


#include "ngx_http_pusher_module.h"
#include "pusher_ctl.h"


static ngx_http_pusher_channel_t *ngx_http_pusher_channel_lookup(
    ngx_http_pusher_app_t *app, u_char *name, size_t len, uint32_t hash);
static void ngx_http_pusher_channel_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_http_pusher_sub_t *ngx_http_pusher_sub_add(
    ngx_http_pusher_conn_t *pc, u_char *name, size_t len, size_t extra,
    ngx_int_t *rc);
static void ngx_http_pusher_sub_remove(ngx_http_pusher_sub_t *sub);
static void ngx_http_pusher_presence_leave(ngx_http_pusher_sub_t *sub);
static ngx_http_pusher_sub_t *ngx_http_pusher_pending_sub(u_char *socket_id,
    size_t socket_id_len, u_char *channel, size_t channel_len);
static void ngx_http_pusher_activate(ngx_http_pusher_sub_t *sub);
static void ngx_http_pusher_cache_send(ngx_http_pusher_conn_t *pc,
    u_char *channel, size_t channel_len, ngx_str_t *json);
static ngx_int_t ngx_http_pusher_cache_get(ngx_http_pusher_sub_t *sub);
static void ngx_http_pusher_occupancy(ngx_http_pusher_channel_t *ch);
static void ngx_http_pusher_sub_fields(ngx_http_pusher_sub_t *sub,
    ngx_str_t *f, u_char *id);
static ngx_int_t ngx_http_pusher_presence_join(ngx_http_pusher_sub_t *sub,
    ngx_uint_t rejoin);
static void ngx_http_pusher_announce_channel(ngx_http_pusher_channel_t *ch);
static ngx_rbtree_node_t *ngx_http_pusher_channel_after(
    ngx_http_pusher_app_t *app, uint32_t key, u_char *name, size_t len);


/*
 * presence and cache subscriptions waiting for their answer in the ring
 * (PUSHER_RING_PRESENCE_JOINED, PUSHER_RING_CACHE)
 */
static ngx_queue_t  ngx_http_pusher_pending;

/*
 * The same subscriptions by hash of (socket id, channel), so that each
 * answer in the ring finds its subscription at once: a reconnect storm of
 * n presence or cache subscriptions costs O(n), not O(n^2).
 */
#define NGX_HTTP_PUSHER_PENDING_BUCKETS  4096

static ngx_queue_t  ngx_http_pusher_pending_index[
                        NGX_HTTP_PUSHER_PENDING_BUCKETS];


/*
 * What a broker was told of and that ended while this worker could not
 * tell it (PUSHER_CTL_GONE): a presence member's last socket here, or a
 * channel's last subscriber.  Sent at the end of the next announcement; a
 * broker that restarted turns them into member_removed and
 * channel_vacated.  At most NGX_HTTP_PUSHER_GONE_MAX are kept.
 */
typedef struct {
    ngx_queue_t                 queue;
    ngx_http_pusher_app_t      *app;
    ngx_str_t                   channel;
    ngx_str_t                   user_id;           /* empty: subscribers */
} ngx_http_pusher_gone_t;

#define NGX_HTTP_PUSHER_GONE_MAX  16384

static ngx_queue_t  ngx_http_pusher_gone;
static ngx_uint_t   ngx_http_pusher_ngone;
static ngx_uint_t   ngx_http_pusher_gone_full;




void
ngx_http_pusher_channel_init_worker(ngx_http_pusher_main_conf_t *pmcf)
{
    ngx_uint_t              i;
    ngx_http_pusher_app_t  *app;

    app = pmcf->apps.elts;

    for (i = 0; i < pmcf->apps.nelts; i++) {
        ngx_rbtree_init(&app[i].channels, &app[i].sentinel,
                        ngx_http_pusher_channel_insert);
    }

    ngx_queue_init(&ngx_http_pusher_pending);
    ngx_queue_init(&ngx_http_pusher_gone);

    for (i = 0; i < NGX_HTTP_PUSHER_PENDING_BUCKETS; i++) {
        ngx_queue_init(&ngx_http_pusher_pending_index[i]);
    }
}


static uint32_t
ngx_http_pusher_pending_hash(u_char *socket_id, size_t socket_id_len,
    u_char *channel, size_t channel_len)
{
    uint32_t  crc;

    ngx_crc32_init(crc);
    ngx_crc32_update(&crc, socket_id, socket_id_len);
    ngx_crc32_update(&crc, (u_char *) " ", 1);
    ngx_crc32_update(&crc, channel, channel_len);
    ngx_crc32_final(crc);

    return crc;
}


/* the subscription waits for its answer in the ring */

static void
ngx_http_pusher_pending_add(ngx_http_pusher_sub_t *sub)
{
    size_t  n;
    u_char  id[NGX_HTTP_PUSHER_SOCKET_ID_LEN];

    n = ngx_http_pusher_socket_id(sub->conn, id);

    sub->hash = ngx_http_pusher_pending_hash(id, n, sub->channel->name,
                                             sub->channel->len);
    sub->pending = 1;

    ngx_queue_insert_tail(&ngx_http_pusher_pending, &sub->in_channel);
    ngx_queue_insert_tail(&ngx_http_pusher_pending_index[
                              sub->hash % NGX_HTTP_PUSHER_PENDING_BUCKETS],
                          &sub->in_index);
}


static void
ngx_http_pusher_gone_add(ngx_http_pusher_app_t *app, u_char *name,
    size_t len, ngx_str_t *user_id)
{
    size_t                   uid_len;
    ngx_http_pusher_gone_t  *g;

    if (ngx_http_pusher_ngone >= NGX_HTTP_PUSHER_GONE_MAX) {

        if (!ngx_http_pusher_gone_full) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "pusher: %ui memberships and channels ended "
                          "without a broker; more will not be announced "
                          "as gone", ngx_http_pusher_ngone);
            ngx_http_pusher_gone_full = 1;
        }

        return;
    }

    uid_len = user_id ? user_id->len : 0;

    g = ngx_alloc(sizeof(ngx_http_pusher_gone_t) + len + uid_len,
                  ngx_cycle->log);
    if (g == NULL) {
        return;
    }

    g->app = app;
    g->channel.data = (u_char *) (g + 1);
    g->channel.len = len;
    ngx_memcpy(g->channel.data, name, len);
    g->user_id.data = g->channel.data + len;
    g->user_id.len = uid_len;

    if (uid_len) {
        ngx_memcpy(g->user_id.data, user_id->data, uid_len);
    }

    ngx_queue_insert_tail(&ngx_http_pusher_gone, &g->queue);
    ngx_http_pusher_ngone++;
}


/*
 * NGX_OK: subscribed; NGX_DECLINED: already subscribed; NGX_BUSY: the
 * socket holds NGX_HTTP_PUSHER_MAX_SUBSCRIPTIONS; NGX_ERROR: no memory.
 */

ngx_int_t
ngx_http_pusher_subscribe(ngx_http_pusher_conn_t *pc, u_char *name,
    size_t len)
{
    ngx_int_t               rc;
    ngx_http_pusher_sub_t  *sub;

    sub = ngx_http_pusher_sub_add(pc, name, len, 0, &rc);
    if (sub == NULL) {
        return rc;
    }

    ngx_queue_insert_tail(&sub->channel->subscribers, &sub->in_channel);
    sub->channel->confirmed++;
    ngx_http_pusher_occupancy(sub->channel);

    return NGX_OK;
}


/*
 * A presence subscription: pending until the broker, which owns the
 * membership, answers with PRESENCE_JOINED.  Without a broker link it
 * waits, and the JOIN goes out when the link comes up.
 */

ngx_int_t
ngx_http_pusher_subscribe_presence(ngx_http_pusher_conn_t *pc, u_char *name,
    size_t len, ngx_str_t *user_id, ngx_str_t *user_info)
{
    u_char                 *p;
    ngx_int_t               rc;
    ngx_http_pusher_sub_t  *sub;

    sub = ngx_http_pusher_sub_add(pc, name, len,
                                  user_id->len + user_info->len, &rc);
    if (sub == NULL) {
        return rc;
    }

    p = (u_char *) (sub + 1);

    sub->user_id.data = p;
    sub->user_id.len = user_id->len;
    p = ngx_cpymem(p, user_id->data, user_id->len);

    sub->user_info.data = p;
    sub->user_info.len = user_info->len;

    if (user_info->len) {
        ngx_memcpy(p, user_info->data, user_info->len);
    }

    sub->presence = 1;
    ngx_http_pusher_pending_add(sub);

    (void) ngx_http_pusher_presence_join(sub, 0);

    return NGX_OK;
}


static ngx_http_pusher_sub_t *
ngx_http_pusher_sub_add(ngx_http_pusher_conn_t *pc, u_char *name, size_t len,
    size_t extra, ngx_int_t *rc)
{
    uint32_t                    hash;
    ngx_uint_t                  n;
    ngx_queue_t                *q;
    ngx_http_pusher_sub_t      *sub;
    ngx_http_pusher_channel_t  *ch;

    hash = ngx_crc32_short(name, len);
    ch = ngx_http_pusher_channel_lookup(pc->app, name, len, hash);

    n = 0;

    for (q = ngx_queue_head(&pc->subs);
         q != ngx_queue_sentinel(&pc->subs);
         q = ngx_queue_next(q))
    {
        sub = ngx_queue_data(q, ngx_http_pusher_sub_t, in_conn);

        if (ch && sub->channel == ch) {
            *rc = NGX_DECLINED;
            return NULL;
        }

        n++;
    }

    if (n >= NGX_HTTP_PUSHER_MAX_SUBSCRIPTIONS) {
        *rc = NGX_BUSY;
        return NULL;
    }

    sub = ngx_alloc(sizeof(ngx_http_pusher_sub_t) + extra,
                    pc->connection->log);
    if (sub == NULL) {
        *rc = NGX_ERROR;
        return NULL;
    }

    if (ch == NULL) {
        ch = ngx_alloc(offsetof(ngx_http_pusher_channel_t, name) + len,
                       pc->connection->log);
        if (ch == NULL) {
            ngx_free(sub);
            *rc = NGX_ERROR;
            return NULL;
        }

        ch->node.key = hash;
        ch->app = pc->app;
        ch->count = 0;
        ch->confirmed = 0;
        ch->told = 0;
        ch->len = len;
        ngx_memcpy(ch->name, name, len);
        ngx_queue_init(&ch->subscribers);

        ngx_rbtree_insert(&pc->app->channels, &ch->node);
    }

    ngx_memzero(sub, sizeof(ngx_http_pusher_sub_t));

    sub->conn = pc;
    sub->channel = ch;
    ngx_queue_insert_tail(&pc->subs, &sub->in_conn);
    ch->count++;

    ngx_http_pusher_zone_subscriptions(pc, 1);

    *rc = NGX_OK;

    return sub;
}


ngx_http_pusher_sub_t *
ngx_http_pusher_find_sub(ngx_http_pusher_conn_t *pc, u_char *name, size_t len)
{
    ngx_queue_t                *q;
    ngx_http_pusher_sub_t      *sub;
    ngx_http_pusher_channel_t  *ch;

    ch = ngx_http_pusher_channel_lookup(pc->app, name, len,
                                        ngx_crc32_short(name, len));
    if (ch == NULL) {
        return NULL;
    }

    for (q = ngx_queue_head(&pc->subs);
         q != ngx_queue_sentinel(&pc->subs);
         q = ngx_queue_next(q))
    {
        sub = ngx_queue_data(q, ngx_http_pusher_sub_t, in_conn);

        if (sub->channel == ch) {
            return sub;
        }
    }

    return NULL;
}


void
ngx_http_pusher_unsubscribe(ngx_http_pusher_conn_t *pc, u_char *name,
    size_t len)
{
    ngx_http_pusher_sub_t  *sub;

    sub = ngx_http_pusher_find_sub(pc, name, len);

    if (sub) {
        ngx_http_pusher_sub_remove(sub);
    }
}


void
ngx_http_pusher_unsubscribe_all(ngx_http_pusher_conn_t *pc)
{
    ngx_queue_t            *q;
    ngx_http_pusher_sub_t  *sub;

    while (!ngx_queue_empty(&pc->subs)) {
        q = ngx_queue_head(&pc->subs);
        sub = ngx_queue_data(q, ngx_http_pusher_sub_t, in_conn);
        ngx_http_pusher_sub_remove(sub);
    }
}


static void
ngx_http_pusher_sub_remove(ngx_http_pusher_sub_t *sub)
{
    ngx_http_pusher_channel_t  *ch;

    ch = sub->channel;

    if (sub->presence) {
        ngx_http_pusher_presence_leave(sub);
    }

    ngx_queue_remove(&sub->in_channel);
    ngx_queue_remove(&sub->in_conn);

    ngx_http_pusher_zone_subscriptions(sub->conn, -1);

    if (sub->pending) {
        ngx_queue_remove(&sub->in_index);

    } else {
        ch->confirmed--;
        ngx_http_pusher_occupancy(ch);
    }

    ngx_free(sub);

    if (--ch->count == 0) {
        ngx_rbtree_delete(&ch->app->channels, &ch->node);
        ngx_free(ch);
    }
}


/* the first uplink fields of a subscription: app_id, channel, socket_id */

static void
ngx_http_pusher_sub_fields(ngx_http_pusher_sub_t *sub, ngx_str_t *f,
    u_char *id)
{
    f[0] = sub->conn->app->id;
    f[1].data = sub->channel->name;
    f[1].len = sub->channel->len;
    f[2].data = id;
    f[2].len = ngx_http_pusher_socket_id(sub->conn, id);
}


static ngx_int_t
ngx_http_pusher_presence_join(ngx_http_pusher_sub_t *sub, ngx_uint_t rejoin)
{
    u_char     id[NGX_HTTP_PUSHER_SOCKET_ID_LEN];
    u_char     max[NGX_INT_T_LEN];
    ngx_str_t  f[7];

    ngx_http_pusher_sub_fields(sub, f, id);

    f[3] = sub->user_id;
    f[4] = sub->user_info;
    f[5].data = max;
    f[5].len = ngx_sprintf(max, "%ui", sub->conn->app->presence_max_members)
               - max;
    f[6].data = (u_char *) "r";
    f[6].len = rejoin ? 1 : 0;

    return ngx_http_pusher_uplink(PUSHER_CTL_PRESENCE_JOIN, f, 7);
}


static void
ngx_http_pusher_presence_leave(ngx_http_pusher_sub_t *sub)
{
    u_char                      id[NGX_HTTP_PUSHER_SOCKET_ID_LEN];
    ngx_str_t                   f[3];
    ngx_http_pusher_channel_t  *ch;

    ch = sub->channel;

    /*
     * A member the broker answered, which this broker may not know: the
     * one before had it, and the other members' clients still list it.
     * A pending join is left as it was asked for, at once.
     */

    if (!sub->pending
        && !ngx_http_pusher_link_knows(ch->app, ch->name, ch->len))
    {
        ngx_http_pusher_gone_add(ch->app, ch->name, ch->len, &sub->user_id);
        return;
    }

    ngx_http_pusher_sub_fields(sub, f, id);

    (void) ngx_http_pusher_uplink(PUSHER_CTL_PRESENCE_LEAVE, f, 3);
}


static ngx_http_pusher_sub_t *
ngx_http_pusher_pending_sub(u_char *socket_id, size_t socket_id_len,
    u_char *channel, size_t channel_len)
{
    size_t                  n;
    u_char                  id[NGX_HTTP_PUSHER_SOCKET_ID_LEN];
    uint32_t                hash;
    ngx_queue_t            *q, *bucket;
    ngx_http_pusher_sub_t  *sub;

    hash = ngx_http_pusher_pending_hash(socket_id, socket_id_len, channel,
                                        channel_len);
    bucket = &ngx_http_pusher_pending_index[
                 hash % NGX_HTTP_PUSHER_PENDING_BUCKETS];

    for (q = ngx_queue_head(bucket);
         q != ngx_queue_sentinel(bucket);
         q = ngx_queue_next(q))
    {
        sub = ngx_queue_data(q, ngx_http_pusher_sub_t, in_index);

        if (sub->hash != hash
            || sub->channel->len != channel_len
            || ngx_strncmp(sub->channel->name, channel, channel_len) != 0)
        {
            continue;
        }

        n = ngx_http_pusher_socket_id(sub->conn, id);

        if (n == socket_id_len && ngx_strncmp(id, socket_id, n) == 0) {
            return sub;
        }
    }

    return NULL;
}


/* from now on the socket gets the channel's records */

static void
ngx_http_pusher_activate(ngx_http_pusher_sub_t *sub)
{
    ngx_queue_remove(&sub->in_channel);
    ngx_queue_remove(&sub->in_index);
    ngx_queue_insert_tail(&sub->channel->subscribers, &sub->in_channel);
    sub->pending = 0;
    sub->channel->confirmed++;

    ngx_http_pusher_occupancy(sub->channel);
}


/*
 * PUSHER_RING_PRESENCE_JOINED: confirm or refuse a pending join.  The
 * answer is a ring record, so the member list it carries is exact as of
 * this point of the ring, and the socket gets every record after it.
 */

void
ngx_http_pusher_presence_joined(u_char *socket_id, size_t socket_id_len,
    u_char *channel, size_t channel_len, ngx_str_t *status, ngx_str_t *json,
    ngx_str_t *cache)
{
    pusher_str_t             name;
    ngx_http_pusher_sub_t   *sub;
    ngx_http_pusher_conn_t  *pc;

    sub = ngx_http_pusher_pending_sub(socket_id, socket_id_len, channel,
                                      channel_len);
    if (sub == NULL || !sub->presence) {
        return;
    }

    pc = sub->conn;

    if (status->len == 2 && ngx_strncmp(status->data, "ok", 2) == 0) {
        ngx_http_pusher_activate(sub);

        (void) ngx_http_pusher_send_text(pc, json->data, json->len);

        if (ngx_http_pusher_debug_on) {
            ngx_http_pusher_debug_subscribed(pc, channel, channel_len,
                                             " (presence member)");
        }

        if (pusher_channel_type((char *) channel, channel_len)
            == PUSHER_CHANNEL_PRESENCE_CACHE)
        {
            ngx_http_pusher_cache_send(pc, channel, channel_len, cache);
        }

        return;
    }

    /* the broker has not added it: no PRESENCE_LEAVE */
    sub->presence = 0;

    name.data = (char *) channel;
    name.len = channel_len;

    ngx_http_pusher_session_subscription_error(pc, &name, "LimitReached",
                     "The maximum members per presence channel limit "
                     "was reached", PUSHER_ERR_OVER_CAPACITY,
                     "a new user over presence_max_members");

    ngx_http_pusher_sub_remove(sub);
}


/*
 * Cache channels (cache-, private-cache-): the subscription waits for the
 * broker's PUSHER_RING_CACHE record, then the socket gets
 * subscription_succeeded, the cached event or pusher:cache_miss, and every
 * record after it: nothing twice, nothing missed.
 */

ngx_int_t
ngx_http_pusher_subscribe_cache(ngx_http_pusher_conn_t *pc, u_char *name,
    size_t len)
{
    ngx_int_t               rc;
    ngx_str_t               miss;
    ngx_http_pusher_sub_t  *sub;

    sub = ngx_http_pusher_sub_add(pc, name, len, 0, &rc);
    if (sub == NULL) {
        return rc;
    }

    ngx_http_pusher_pending_add(sub);

    if (ngx_http_pusher_cache_get(sub) != NGX_OK) {
        /* no broker, no cache */
        miss.len = 0;
        miss.data = NULL;
        ngx_http_pusher_cache_answer(NULL, 0, name, len, &miss, sub);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_pusher_cache_get(ngx_http_pusher_sub_t *sub)
{
    u_char     id[NGX_HTTP_PUSHER_SOCKET_ID_LEN];
    ngx_str_t  f[3];

    ngx_http_pusher_sub_fields(sub, f, id);

    return ngx_http_pusher_uplink(PUSHER_CTL_CACHE_GET, f, 3);
}


/* PUSHER_RING_CACHE, or a miss for sub when there is no broker */

void
ngx_http_pusher_cache_answer(u_char *socket_id, size_t socket_id_len,
    u_char *channel, size_t channel_len, ngx_str_t *json,
    ngx_http_pusher_sub_t *sub)
{
    size_t                   len;
    ngx_http_pusher_conn_t  *pc;
    u_char                   buf[PUSHER_CHANNEL_MAX + 128];

    if (sub == NULL) {
        sub = ngx_http_pusher_pending_sub(socket_id, socket_id_len, channel,
                                          channel_len);
        if (sub == NULL || sub->presence) {
            return;
        }
    }

    pc = sub->conn;

    ngx_http_pusher_activate(sub);

    len = pusher_build_subscription_succeeded(buf, sizeof(buf),
                                              (char *) channel, channel_len);
    (void) ngx_http_pusher_send_text(pc, buf, len);

    if (ngx_http_pusher_debug_on) {
        ngx_http_pusher_debug_subscribed(pc, channel, channel_len,
                                         json->len ? " (cached event sent)"
                                                   : " (cache miss)");
    }

    ngx_http_pusher_cache_send(pc, channel, channel_len, json);
}


/* after the ring lapped us: the answers may be lost, ask again */

void
ngx_http_pusher_pending_retry(void)
{
    ngx_queue_t            *q;
    ngx_http_pusher_sub_t  *sub;

    for (q = ngx_queue_head(&ngx_http_pusher_pending);
         q != ngx_queue_sentinel(&ngx_http_pusher_pending);
         q = ngx_queue_next(q))
    {
        sub = ngx_queue_data(q, ngx_http_pusher_sub_t, in_channel);

        if (sub->presence) {
            (void) ngx_http_pusher_presence_join(sub, 0);

        } else {
            (void) ngx_http_pusher_cache_get(sub);
        }
    }
}


/*
 * The announcement after (re)attaching to a broker, which may have
 * restarted and lost it all: this worker's subscriber counts, presence
 * memberships and signed-in users, channel by channel in the order of
 * each app's tree, then the JOINs and CACHE_GETs that waited for the link.
 * However much state there is, it goes out in steps: the link
 * (ngx_http_pusher_link.c) runs one whenever its uplink queue is below
 * its mark, and a step ends once the queue is above it.  Between steps
 * channels come and go, so the position is the last channel announced,
 * by app, crc32 and name, looked up again for the next step; a channel
 * created behind it has announced itself, one ahead of it will be found.
 */

void
ngx_http_pusher_announce_start(ngx_http_pusher_announce_t *pos)
{
    pos->phase = NGX_HTTP_PUSHER_ANNOUNCE_CHANNELS;
    pos->app = 0;
    pos->started = 0;
    pos->key = 0;
    pos->len = 0;
    pos->pending = 0;
    pos->channels = 0;
}


/* NGX_OK: all announced; NGX_AGAIN: the uplink is busy, pos says where */

ngx_int_t
ngx_http_pusher_announce(ngx_http_pusher_main_conf_t *pmcf,
    ngx_http_pusher_announce_t *pos)
{
    ngx_str_t                   f[3];
    ngx_queue_t                *q;
    ngx_http_pusher_gone_t     *g;
    ngx_rbtree_node_t          *node, *root, *sentinel;
    ngx_http_pusher_app_t      *app;
    ngx_http_pusher_sub_t      *sub;
    ngx_http_pusher_channel_t  *ch;

    app = pmcf->apps.elts;

    while (pos->phase == NGX_HTTP_PUSHER_ANNOUNCE_CHANNELS) {

        if (pos->app == pmcf->apps.nelts) {
            pos->phase = NGX_HTTP_PUSHER_ANNOUNCE_PENDING;

            /* asked for once each, the new ones at the tail included */

            pos->pending = 0;

            for (q = ngx_queue_head(&ngx_http_pusher_pending);
                 q != ngx_queue_sentinel(&ngx_http_pusher_pending);
                 q = ngx_queue_next(q))
            {
                pos->pending++;
            }

            break;
        }

        root = app[pos->app].channels.root;
        sentinel = app[pos->app].channels.sentinel;

        if (root == sentinel) {
            node = NULL;

        } else if (pos->started) {
            node = ngx_http_pusher_channel_after(&app[pos->app], pos->key,
                                                 pos->name, pos->len);

        } else {
            node = ngx_rbtree_min(root, sentinel);
        }

        for ( /* void */ ;
             node;
             node = ngx_rbtree_next(&app[pos->app].channels, node))
        {
            if (ngx_http_pusher_uplink_busy()) {
                return NGX_AGAIN;
            }

            ch = (ngx_http_pusher_channel_t *) node;

            ngx_http_pusher_announce_channel(ch);

            pos->channels++;
            pos->started = 1;
            pos->key = node->key;
            pos->len = ngx_min(ch->len, sizeof(pos->name));
            ngx_memcpy(pos->name, ch->name, pos->len);
        }

        pos->app++;
        pos->started = 0;
    }

    /*
     * The pending subscriptions rotate through the queue: each asked for
     * goes to the tail.  One answered or closed meanwhile may make another
     * be asked for twice, which the broker takes as a refresh.
     */

    while (pos->phase == NGX_HTTP_PUSHER_ANNOUNCE_PENDING) {

        if (pos->pending == 0 || ngx_queue_empty(&ngx_http_pusher_pending)) {
            pos->phase = NGX_HTTP_PUSHER_ANNOUNCE_GONE;
            break;
        }

        if (ngx_http_pusher_uplink_busy()) {
            return NGX_AGAIN;
        }

        q = ngx_queue_head(&ngx_http_pusher_pending);
        ngx_queue_remove(q);
        ngx_queue_insert_tail(&ngx_http_pusher_pending, q);
        pos->pending--;

        sub = ngx_queue_data(q, ngx_http_pusher_sub_t, in_channel);

        if (sub->presence) {
            (void) ngx_http_pusher_presence_join(sub, 0);

        } else {
            (void) ngx_http_pusher_cache_get(sub);
        }
    }

    /* what ended unannounced, then the end of the announcement */

    while (pos->phase == NGX_HTTP_PUSHER_ANNOUNCE_GONE) {

        if (ngx_http_pusher_uplink_busy()) {
            return NGX_AGAIN;
        }

        if (ngx_queue_empty(&ngx_http_pusher_gone)) {
            if (ngx_http_pusher_uplink(PUSHER_CTL_ANNOUNCED, NULL, 0)
                != NGX_OK)
            {
                return NGX_AGAIN;
            }

            pos->phase = NGX_HTTP_PUSHER_ANNOUNCE_DONE;
            break;
        }

        q = ngx_queue_head(&ngx_http_pusher_gone);
        g = ngx_queue_data(q, ngx_http_pusher_gone_t, queue);

        f[0] = g->app->id;
        f[1] = g->channel;
        f[2] = g->user_id;

        if (ngx_http_pusher_uplink(PUSHER_CTL_GONE, f, 3) == NGX_ERROR) {
            return NGX_AGAIN;
        }

        ngx_queue_remove(q);
        ngx_free(g);
        ngx_http_pusher_ngone--;
        ngx_http_pusher_gone_full = 0;
    }

    return NGX_OK;
}


/* one channel: its count, its presence members, its signed-in sockets */

static void
ngx_http_pusher_announce_channel(ngx_http_pusher_channel_t *ch)
{
    ngx_queue_t            *q;
    pusher_channel_type_e   type;
    ngx_http_pusher_sub_t  *sub;

    if (ch->confirmed) {
        ngx_http_pusher_occupancy(ch);
    }

    type = pusher_channel_type((char *) ch->name, ch->len);

    for (q = ngx_queue_head(&ch->subscribers);
         q != ngx_queue_sentinel(&ch->subscribers);
         q = ngx_queue_next(q))
    {
        sub = ngx_queue_data(q, ngx_http_pusher_sub_t, in_channel);

        if (type == PUSHER_CHANNEL_PRESENCE
            || type == PUSHER_CHANNEL_PRESENCE_CACHE)
        {
            (void) ngx_http_pusher_presence_join(sub, 1);

        } else if (type == PUSHER_CHANNEL_SERVER_TO_USER
                   && sub->conn->online)
        {
            /* every signed-in socket is in its #server-to-user */
            sub->conn->online = 0;
            ngx_http_pusher_user_online(sub->conn);
        }
    }
}


/*
 * The uplink bytes this worker's subscriptions could send at once, every
 * one of them ending as when many sockets close together: an OCCUPANCY
 * each, and as much again for presence leaves and offlines.  The uplink
 * takes such a burst on top of its bound for other traffic.
 */

size_t
ngx_http_pusher_state_size(ngx_http_pusher_main_conf_t *pmcf)
{
    size_t                      size;
    ngx_uint_t                  i;
    ngx_rbtree_node_t          *node, *root, *sentinel;
    ngx_http_pusher_app_t      *app;
    ngx_http_pusher_channel_t  *ch;

    size = 0;
    app = pmcf->apps.elts;

    for (i = 0; i < pmcf->apps.nelts; i++) {

        root = app[i].channels.root;
        sentinel = app[i].channels.sentinel;

        if (root == sentinel) {
            continue;
        }

        for (node = ngx_rbtree_min(root, sentinel);
             node;
             node = ngx_rbtree_next(&app[i].channels, node))
        {
            ch = (ngx_http_pusher_channel_t *) node;

            size += 2 * ch->count
                    * (PUSHER_CTL_HEADER_SIZE + PUSHER_CTL_FIELD_SIZE(0) * 4
                       + app[i].id.len + ch->len + NGX_INT_T_LEN + 1);
        }
    }

    return size;
}


/*
 * 1 if the announcement is past the channel name of the app with index
 * app (or not walking the channels): what changes there goes to the
 * broker now, for the announcement will not come back to it.
 */

ngx_uint_t
ngx_http_pusher_announce_passed(ngx_http_pusher_announce_t *pos,
    ngx_uint_t app, u_char *name, size_t len)
{
    uint32_t  key;

    if (pos->phase != NGX_HTTP_PUSHER_ANNOUNCE_CHANNELS) {
        return 1;
    }

    if (app != pos->app) {
        return app < pos->app;
    }

    if (!pos->started) {
        return 0;
    }

    key = ngx_crc32_short(name, len);

    if (key != pos->key) {
        return key < pos->key;
    }

    return ngx_memn2cmp(name, pos->name, len, pos->len) <= 0;
}


/*
 * The first channel after (key, name) in the order of the tree: by key,
 * then as ngx_http_pusher_channel_insert() orders equal keys.
 */

static ngx_rbtree_node_t *
ngx_http_pusher_channel_after(ngx_http_pusher_app_t *app, uint32_t key,
    u_char *name, size_t len)
{
    ngx_int_t                   rc;
    ngx_rbtree_node_t          *node, *sentinel, *found;
    ngx_http_pusher_channel_t  *ch;

    node = app->channels.root;
    sentinel = app->channels.sentinel;
    found = NULL;

    while (node != sentinel) {

        if (key != node->key) {
            rc = (key < node->key) ? -1 : 1;

        } else {
            ch = (ngx_http_pusher_channel_t *) node;
            rc = ngx_memn2cmp(name, ch->name, len, ch->len);
        }

        if (rc < 0) {
            found = node;
            node = node->left;

        } else {
            node = node->right;
        }
    }

    return found;
}


/*
 * OCCUPANCY: this worker's confirmed subscribers of a channel, "r" if a
 * broker was told of the channel before.  A channel a broker was told of
 * that empties while the broker cannot be told is GONE.
 */

static void
ngx_http_pusher_occupancy(ngx_http_pusher_channel_t *ch)
{
    u_char     count[NGX_INT_T_LEN];
    ngx_str_t  f[4];

    if (ch->confirmed == 0 && ch->told
        && !ngx_http_pusher_link_knows(ch->app, ch->name, ch->len))
    {
        ngx_http_pusher_gone_add(ch->app, ch->name, ch->len, NULL);
        ch->told = 0;
        return;
    }

    f[0] = ch->app->id;
    f[1].data = ch->name;
    f[1].len = ch->len;
    f[2].data = count;
    f[2].len = ngx_sprintf(count, "%ui", ch->confirmed) - count;
    f[3].data = (u_char *) "r";
    f[3].len = ch->told ? 1 : 0;

    if (ngx_http_pusher_uplink(PUSHER_CTL_OCCUPANCY, f, 4) == NGX_OK) {
        ch->told = (ch->confirmed != 0);
    }
}


static void
ngx_http_pusher_cache_send(ngx_http_pusher_conn_t *pc, u_char *channel,
    size_t channel_len, ngx_str_t *json)
{
    u_char  *p;
    u_char   buf[PUSHER_CHANNEL_MAX + 64];

    if (channel_len > PUSHER_CHANNEL_MAX) {
        return;
    }

    if (json->len) {
        (void) ngx_http_pusher_send_text(pc, json->data, json->len);
        return;
    }

    p = ngx_cpymem(buf, "{\"event\":\"pusher:cache_miss\",\"channel\":\"",
                   sizeof("{\"event\":\"pusher:cache_miss\",\"channel\":\"")
                   - 1);
    p = ngx_cpymem(p, channel, channel_len);
    *p++ = '"';
    *p++ = '}';

    (void) ngx_http_pusher_send_text(pc, buf, p - buf);
}


/*
 * PUSHER_RING_TERMINATE: close every socket of this worker that is signed
 * in as user_id (it is in #server-to-user-{user_id}) or is a presence
 * member with that user_id, with pusher:error 4009 and close 4009.  The
 * sockets are collected first: closing one edits the lists walked here.
 */

void
ngx_http_pusher_terminate(ngx_http_pusher_main_conf_t *pmcf, u_char *app_id,
    size_t app_id_len, u_char *user_id, size_t len)
{
    u_char                      *p;
    size_t                       n;
    ngx_uint_t                   i, nv, cap;
    ngx_queue_t                 *q;
    ngx_rbtree_node_t           *node, *root, *sentinel;
    pusher_channel_type_e        type;
    ngx_http_pusher_app_t       *app;
    ngx_http_pusher_sub_t       *sub;
    ngx_http_pusher_conn_t     **victims, **grown;
    ngx_http_pusher_channel_t   *ch;
    u_char                       quoted[2 + 6 * PUSHER_CHANNEL_MAX];

    app = ngx_http_pusher_app_by_id(pmcf, app_id, app_id_len);
    if (app == NULL || len == 0 || len > PUSHER_CHANNEL_MAX) {
        return;
    }

    /* the user_id as a presence member's JSON text: "id" (or a number) */

    p = quoted;
    *p++ = '"';
    p += pusher_json_escape(p, user_id, len);
    *p++ = '"';
    n = p - quoted;

    nv = 0;
    cap = 16;

    victims = ngx_alloc(cap * sizeof(ngx_http_pusher_conn_t *),
                        ngx_cycle->log);
    if (victims == NULL) {
        return;
    }

    root = app->channels.root;
    sentinel = app->channels.sentinel;

    for (node = (root == sentinel) ? NULL : ngx_rbtree_min(root, sentinel);
         node;
         node = ngx_rbtree_next(&app->channels, node))
    {
        ch = (ngx_http_pusher_channel_t *) node;
        type = pusher_channel_type((char *) ch->name, ch->len);

        if (type == PUSHER_CHANNEL_SERVER_TO_USER) {
            if (ch->len != sizeof("#server-to-user-") - 1 + len
                || ngx_strncmp(ch->name + sizeof("#server-to-user-") - 1,
                               user_id, len)
                   != 0)
            {
                continue;
            }

        } else if (type != PUSHER_CHANNEL_PRESENCE
                   && type != PUSHER_CHANNEL_PRESENCE_CACHE)
        {
            continue;
        }

        for (q = ngx_queue_head(&ch->subscribers);
             q != ngx_queue_sentinel(&ch->subscribers);
             q = ngx_queue_next(q))
        {
            sub = ngx_queue_data(q, ngx_http_pusher_sub_t, in_channel);

            if (sub->presence
                && !((sub->user_id.len == n
                      && ngx_strncmp(sub->user_id.data, quoted, n) == 0)
                     || (sub->user_id.len == len
                         && ngx_strncmp(sub->user_id.data, user_id, len)
                            == 0)))
            {
                continue;
            }

            if (nv == cap) {
                grown = ngx_alloc(2 * cap * sizeof(ngx_http_pusher_conn_t *),
                                  ngx_cycle->log);
                if (grown == NULL) {
                    break;
                }

                ngx_memcpy(grown, victims,
                           cap * sizeof(ngx_http_pusher_conn_t *));
                ngx_free(victims);
                victims = grown;
                cap *= 2;
            }

            victims[nv++] = sub->conn;
        }
    }

    for (i = 0; i < nv; i++) {
        if (!victims[i]->closing) {
            ngx_log_error(NGX_LOG_INFO, victims[i]->connection->log, 0,
                          "pusher: connection terminated by the app");
            ngx_http_pusher_session_error(victims[i],
                                          PUSHER_ERR_UNAUTHORIZED,
                                          "You got disconnected by the app",
                                          1);
        }
    }

    ngx_free(victims);
}


/*
 * Fan-out of one ring event: per channel of it with local subscribers one
 * lookup, the frame built once (pusher_ring_event_frame) and shared, one
 * queue entry per subscriber; the writes happen in
 * ngx_http_pusher_flush_dirty() after the whole batch.
 */

/*
 * debug: one ring event on one channel in this worker.  The event name is
 * read from the JSON the broker encoded ({"event":"NAME",...}, already
 * escaped), the data only counted.
 */

static void
ngx_http_pusher_debug_delivery(ngx_http_pusher_app_t *app,
    pusher_ring_event_view_t *ev, pusher_str_t *channel, ngx_uint_t sent,
    ngx_uint_t skipped)
{
    size_t     i, n, json;
    ngx_str_t  event;

    n = sizeof("{\"event\":\"") - 1;
    ngx_str_set(&event, "?");

    if (ev->prefix_len > n
        && ngx_strncmp(ev->prefix, "{\"event\":\"", n) == 0)
    {
        for (i = n; i < ev->prefix_len; i++) {
            if (ev->prefix[i] == '\\') {
                i++;
                continue;
            }

            if (ev->prefix[i] == '"') {
                event.data = (u_char *) ev->prefix + n;
                event.len = ngx_min(i - n, 200);
                break;
            }
        }
    }

    json = ev->whole ? ev->prefix_len
                     : ev->prefix_len + channel->len + ev->suffix_len;

    ngx_http_pusher_debug("deliver event \"%V\" app %V channel \"%*s\" "
                          "(%uz bytes): %ui local socket%s%s%*s",
                          &event, &app->id, channel->len, channel->data,
                          json, sent, sent == 1 ? "" : "s",
                          skipped ? ", excluded socket " : "",
                          skipped ? ev->socket_id.len : 0,
                          skipped ? ev->socket_id.data : "");
}


void
ngx_http_pusher_publish(ngx_http_pusher_main_conf_t *pmcf,
    pusher_ring_event_view_t *ev)
{
    u_char                     *p, *last;
    ngx_int_t                   n;
    ngx_uint_t                  i, exclude;
    ngx_queue_t                *q;
    pusher_str_t                name;
    const uint8_t              *pos;
    ngx_http_pusher_app_t      *app;
    ngx_http_pusher_msg_t      *msg;
    ngx_http_pusher_sub_t      *sub;
    ngx_http_pusher_channel_t  *ch;
    ngx_uint_t                  sent, skipped;

    app = ngx_http_pusher_app_by_id(pmcf, (u_char *) ev->app_id.data,
                                    ev->app_id.len);
    if (app == NULL) {
        return;
    }

    /* an excluded socket_id "pid.n" concerns us only if pid is ours */

    exclude = 0;

    if (ev->socket_id.len) {
        p = (u_char *) ev->socket_id.data;
        last = p + ev->socket_id.len;

        while (p < last && *p != '.') {
            p++;
        }

        if (p < last
            && ngx_atoi((u_char *) ev->socket_id.data,
                        p - (u_char *) ev->socket_id.data)
               == (ngx_int_t) ngx_pid)
        {
            n = ngx_atoi(p + 1, last - p - 1);
            exclude = (n == NGX_ERROR) ? 0 : (ngx_uint_t) n;
        }
    }

    pos = ev->channels;

    for (i = 0; i < ev->nchannels; i++) {
        pusher_ring_event_channel(&pos, &name);

        ch = ngx_http_pusher_channel_lookup(app, (u_char *) name.data,
                                            name.len,
                                            ngx_crc32_short((u_char *)
                                                            name.data,
                                                            name.len));
        if (ch == NULL || ngx_queue_empty(&ch->subscribers)) {
            if (ngx_http_pusher_debug_on) {
                ngx_http_pusher_debug_delivery(app, ev, &name, 0, 0);
            }

            continue;
        }

        /*
         * the name spliced into the frame is that of a channel found
         * here, which passed pusher_channel_valid() at its subscribe
         */

        msg = ngx_http_pusher_msg_alloc(
                  pusher_ring_event_frame_size(ev, ch->len));
        if (msg == NULL) {
            return;
        }

        name.data = (const char *) ch->name;
        (void) pusher_ring_event_frame(msg->data, ev, &name);

        sent = 0;
        skipped = 0;

        for (q = ngx_queue_head(&ch->subscribers);
             q != ngx_queue_sentinel(&ch->subscribers);
             q = ngx_queue_next(q))
        {
            sub = ngx_queue_data(q, ngx_http_pusher_sub_t, in_channel);

            if (sub->conn->id == exclude) {
                skipped = 1;
                continue;
            }

            if (ngx_http_pusher_queue(sub->conn, msg) == NGX_OK) {
                sent++;
            }
        }

        ngx_http_pusher_msg_release(msg);

        if (ngx_http_pusher_debug_on) {
            ngx_http_pusher_debug_delivery(app, ev, &name, sent, skipped);
        }
    }
}


static ngx_http_pusher_channel_t *
ngx_http_pusher_channel_lookup(ngx_http_pusher_app_t *app, u_char *name,
    size_t len, uint32_t hash)
{
    ngx_int_t                   rc;
    ngx_rbtree_node_t          *node, *sentinel;
    ngx_http_pusher_channel_t  *ch;

    node = app->channels.root;
    sentinel = app->channels.sentinel;

    while (node != sentinel) {

        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        ch = (ngx_http_pusher_channel_t *) node;

        rc = ngx_memn2cmp(name, ch->name, len, ch->len);

        if (rc == 0) {
            return ch;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


static void
ngx_http_pusher_channel_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t          **p;
    ngx_http_pusher_channel_t   *n, *t;

    for ( ;; ) {

        n = (ngx_http_pusher_channel_t *) node;
        t = (ngx_http_pusher_channel_t *) temp;

        if (node->key != temp->key) {
            p = (node->key < temp->key) ? &temp->left : &temp->right;

        } else {
            p = (ngx_memn2cmp(n->name, t->name, n->len, t->len) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}
