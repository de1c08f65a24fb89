
/*
 * Copyright (C) ngx-pusher authors
 */


#include "ngx_http_pusher_module.h"


static ngx_http_pusher_channel_t *ngx_http_pusher_channel_lookup(
    ngx_http_pusher_app_t *app, u_char *name, size_t len, uint32_t hash);
static void ngx_http_pusher_channel_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static void ngx_http_pusher_sub_remove(ngx_http_pusher_sub_t *sub);


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
}


/*
 * NGX_OK: subscribed; NGX_DECLINED: already subscribed; NGX_BUSY: the
 * socket holds NGX_HTTP_PUSHER_MAX_SUBSCRIPTIONS; NGX_ERROR: no memory.
 */

ngx_int_t
ngx_http_pusher_subscribe(ngx_http_pusher_conn_t *pc, u_char *name,
    size_t len)
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
            return NGX_DECLINED;
        }

        n++;
    }

    if (n >= NGX_HTTP_PUSHER_MAX_SUBSCRIPTIONS) {
        return NGX_BUSY;
    }

    sub = ngx_alloc(sizeof(ngx_http_pusher_sub_t), pc->connection->log);
    if (sub == NULL) {
        return NGX_ERROR;
    }

    if (ch == NULL) {
        ch = ngx_alloc(offsetof(ngx_http_pusher_channel_t, name) + len,
                       pc->connection->log);
        if (ch == NULL) {
            ngx_free(sub);
            return NGX_ERROR;
        }

        ch->node.key = hash;
        ch->app = pc->app;
        ch->count = 0;
        ch->len = len;
        ngx_memcpy(ch->name, name, len);
        ngx_queue_init(&ch->subscribers);

        ngx_rbtree_insert(&pc->app->channels, &ch->node);
    }

    sub->conn = pc;
    sub->channel = ch;
    ngx_queue_insert_tail(&ch->subscribers, &sub->in_channel);
    ngx_queue_insert_tail(&pc->subs, &sub->in_conn);
    ch->count++;

    return NGX_OK;
}


void
ngx_http_pusher_unsubscribe(ngx_http_pusher_conn_t *pc, u_char *name,
    size_t len)
{
    ngx_queue_t                *q;
    ngx_http_pusher_sub_t      *sub;
    ngx_http_pusher_channel_t  *ch;

    ch = ngx_http_pusher_channel_lookup(pc->app, name, len,
                                        ngx_crc32_short(name, len));
    if (ch == NULL) {
        return;
    }

    for (q = ngx_queue_head(&pc->subs);
         q != ngx_queue_sentinel(&pc->subs);
         q = ngx_queue_next(q))
    {
        sub = ngx_queue_data(q, ngx_http_pusher_sub_t, in_conn);

        if (sub->channel == ch) {
            ngx_http_pusher_sub_remove(sub);
            return;
        }
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

    ngx_queue_remove(&sub->in_channel);
    ngx_queue_remove(&sub->in_conn);
    ngx_free(sub);

    if (--ch->count == 0) {
        ngx_rbtree_delete(&ch->app->channels, &ch->node);
        ngx_free(ch);
    }
}


/*
 * Fan-out of one ring event: one lookup, one shared copy of the frame for
 * all local subscribers, one queue entry per subscriber; the writes happen
 * in ngx_http_pusher_flush_dirty() after the whole batch.
 */

void
ngx_http_pusher_publish(ngx_http_pusher_main_conf_t *pmcf,
    pusher_ring_event_view_t *ev)
{
    u_char                     *p, *last;
    ngx_int_t                   n;
    ngx_uint_t                  exclude;
    ngx_queue_t                *q;
    ngx_http_pusher_app_t      *app;
    ngx_http_pusher_msg_t      *msg;
    ngx_http_pusher_sub_t      *sub;
    ngx_http_pusher_channel_t  *ch;

    app = ngx_http_pusher_app_by_id(pmcf, (u_char *) ev->app_id.data,
                                    ev->app_id.len);
    if (app == NULL) {
        return;
    }

    ch = ngx_http_pusher_channel_lookup(app, (u_char *) ev->channel.data,
                                        ev->channel.len,
                                        ngx_crc32_short((u_char *)
                                                        ev->channel.data,
                                                        ev->channel.len));
    if (ch == NULL) {
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

    msg = ngx_http_pusher_msg_alloc(ev->frame_len);
    if (msg == NULL) {
        return;
    }

    ngx_memcpy(msg->data, ev->frame, ev->frame_len);

    for (q = ngx_queue_head(&ch->subscribers);
         q != ngx_queue_sentinel(&ch->subscribers);
         q = ngx_queue_next(q))
    {
        sub = ngx_queue_data(q, ngx_http_pusher_sub_t, in_channel);

        if (sub->conn->id == exclude) {
            continue;
        }

        (void) ngx_http_pusher_queue(sub->conn, msg);
    }

    ngx_http_pusher_msg_release(msg);
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
