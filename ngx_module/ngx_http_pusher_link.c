
/*
 * Copyright (C) ngx-pusher authors
 */


#include "ngx_http_pusher_module.h"
#include "pusher_ctl.h"


/* control input starts this big and grows for large messages */
#define NGX_HTTP_PUSHER_CTL_BUFFER     4096

/* the uplink queue starts this big and grows as needed */
#define NGX_HTTP_PUSHER_UPLINK_BUFFER  65536

/*
 * Uplink bytes queued while the broker reads slowly; beyond this, and
 * beyond what this worker's own subscriptions could send at once
 * (ngx_http_pusher_state_size()), the broker is taken for stuck and the
 * link drops, so that a broker that does not read cannot grow the worker
 * without bound.  The announcement after WELCOME is exempt: it adds only
 * while less than NGX_HTTP_PUSHER_UPLINK_MARK is queued and goes on when
 * the broker has read, so it never holds more than the mark and one
 * channel.
 */
#define NGX_HTTP_PUSHER_UPLINK_MAX     (8 * 1024 * 1024)
#define NGX_HTTP_PUSHER_UPLINK_MARK    (256 * 1024)


/*
 * The worker's link to pusher-broker: a unix stream connection that
 * carries HELLO (our apps) and the uplink up, and WELCOME and DOORBELL
 * down.  The ring a WELCOME names is read by ngx_http_pusher_ring.c.
 * Neither is needed to start or to serve: without a broker no events
 * arrive, and the link is retried from a timer.
 *
 * The connection is closed only by the link's own event handlers, at
 * their top level.  ngx_http_pusher_uplink() runs deep inside code those
 * handlers call (the records a DOORBELL drains close sockets, which send
 * their leaves), so when it finds the broker stuck it marks the
 * connection errored and posts its write event, as nginx's HTTP/2 does
 * when a frame cannot be sent while its read handler runs
 * (ngx_http_v2_send_output_queue()); the handlers check the mark after
 * every message.
 */

typedef struct {
    ngx_http_pusher_main_conf_t  *pmcf;
    ngx_log_t                    *log;

    ngx_connection_t             *conn;
    ngx_event_t                   reconnect;
    ngx_msec_t                    backoff;
    ngx_uint_t                    reported;        /* unreachable logged */

    u_char                       *hello;           /* HELLO payload */
    size_t                        hello_len;

    u_char                       *in;
    size_t                        in_len;
    size_t                        in_cap;

    u_char                       *out;             /* uplink queue */
    size_t                        out_len;
    size_t                        out_sent;
    size_t                        out_cap;
    size_t                        out_max;         /* 0: not computed */

    time_t                        refused;         /* REFUSED logged */
    ngx_uint_t                    welcomed;        /* WELCOME received */
    ngx_uint_t                    announcing;      /* in an announce step */
    ngx_http_pusher_announce_t    announce;
    ngx_msec_t                    announce_start;
} ngx_http_pusher_link_t;


static void ngx_http_pusher_link_connect(ngx_event_t *ev);
static void ngx_http_pusher_link_retry(ngx_http_pusher_link_t *b);
static void ngx_http_pusher_link_close(ngx_http_pusher_link_t *b);
static pusher_ctl_coalesce_t *ngx_http_pusher_link_coalesce(ngx_pool_t *pool,
    ngx_array_t *lines);
static ngx_int_t ngx_http_pusher_link_hello(ngx_http_pusher_link_t *b,
    ngx_cycle_t *cycle);
static ngx_int_t ngx_http_pusher_link_queue(ngx_http_pusher_link_t *b,
    size_t need);
static ngx_int_t ngx_http_pusher_link_append(ngx_http_pusher_link_t *b,
    ngx_uint_t type, ngx_str_t *fields, ngx_uint_t n);
static ngx_uint_t ngx_http_pusher_link_deferred(ngx_http_pusher_link_t *b,
    ngx_uint_t type, ngx_str_t *f);
static ngx_int_t ngx_http_pusher_link_send(ngx_http_pusher_link_t *b);
static void ngx_http_pusher_link_write(ngx_event_t *wev);
static void ngx_http_pusher_link_read(ngx_event_t *rev);
static ngx_int_t ngx_http_pusher_link_message(ngx_http_pusher_link_t *b,
    ngx_uint_t type, u_char *data, size_t len);
static ngx_int_t ngx_http_pusher_link_welcome(ngx_http_pusher_link_t *b,
    u_char *data, size_t len);


static ngx_http_pusher_link_t  ngx_http_pusher_link;


ngx_int_t
ngx_http_pusher_link_init_worker(ngx_cycle_t *cycle,
    ngx_http_pusher_main_conf_t *pmcf)
{
    ngx_http_pusher_link_t  *b;

    b = &ngx_http_pusher_link;

    ngx_memzero(b, sizeof(ngx_http_pusher_link_t));

    b->pmcf = pmcf;
    b->log = cycle->log;
    b->backoff = NGX_HTTP_PUSHER_RECONNECT_MIN;

    b->in = ngx_alloc(NGX_HTTP_PUSHER_CTL_BUFFER, cycle->log);
    if (b->in == NULL) {
        return NGX_ERROR;
    }

    b->in_cap = NGX_HTTP_PUSHER_CTL_BUFFER;

    /* the configuration of a worker does not change: one HELLO for all */

    if (ngx_http_pusher_link_hello(b, cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    b->reconnect.handler = ngx_http_pusher_link_connect;
    b->reconnect.data = b;
    b->reconnect.log = cycle->log;
    b->reconnect.cancelable = 1;

    ngx_http_pusher_link_connect(&b->reconnect);

    return NGX_OK;
}


void
ngx_http_pusher_link_exit_worker(void)
{
    ngx_http_pusher_link_t  *b;

    b = &ngx_http_pusher_link;

    if (b->pmcf == NULL) {
        return;
    }

    ngx_http_pusher_link_close(b);

    if (b->in) {
        ngx_free(b->in);
        b->in = NULL;
    }

    if (b->out) {
        ngx_free(b->out);
        b->out = NULL;
    }

    if (b->hello) {
        ngx_free(b->hello);
        b->hello = NULL;
    }

    b->pmcf = NULL;
}


static void
ngx_http_pusher_link_connect(ngx_event_t *ev)
{
    ngx_http_pusher_link_t *b = ev->data;

    int                  rc;
    u_char              *p;
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
        ngx_http_pusher_link_retry(b);
        return;
    }

    if (ngx_nonblocking(s) == -1) {
        ngx_log_error(NGX_LOG_ALERT, b->log, ngx_socket_errno,
                      ngx_nonblocking_n " failed");
        ngx_close_socket(s);
        ngx_http_pusher_link_retry(b);
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
        ngx_http_pusher_link_retry(b);
        return;
    }

    c = ngx_get_connection(s, b->log);
    if (c == NULL) {
        ngx_close_socket(s);
        ngx_http_pusher_link_retry(b);
        return;
    }

    c->data = b;
    c->log = b->log;
    c->read->handler = ngx_http_pusher_link_read;
    c->write->handler = ngx_http_pusher_link_write;
    c->read->log = b->log;
    c->write->log = b->log;
    c->recv = ngx_recv;
    c->send = ngx_send;

    /* graceful shutdown closes the link through the read handler */
    c->idle = !ngx_exiting;

    if (ngx_add_conn) {
        if (ngx_add_conn(c) == NGX_ERROR) {
            ngx_close_connection(c);
            ngx_http_pusher_link_retry(b);
            return;
        }

    } else {
        if (ngx_add_event(c->read, NGX_READ_EVENT, NGX_CLEAR_EVENT) != NGX_OK
            || ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_CLEAR_EVENT)
               != NGX_OK)
        {
            ngx_close_connection(c);
            ngx_http_pusher_link_retry(b);
            return;
        }
    }

    b->conn = c;
    b->in_len = 0;
    b->out_len = 0;
    b->out_sent = 0;

    if (rc == 0) {
        c->write->ready = 1;
    }

    /* HELLO goes first */

    if (ngx_http_pusher_link_queue(b, PUSHER_CTL_HEADER_SIZE + b->hello_len)
        != NGX_OK)
    {
        ngx_http_pusher_link_close(b);
        ngx_http_pusher_link_retry(b);
        return;
    }

    p = b->out;
    pusher_ctl_header_write(p, PUSHER_CTL_HELLO, (uint32_t) b->hello_len);
    ngx_memcpy(p + PUSHER_CTL_HEADER_SIZE, b->hello, b->hello_len);
    b->out_len = PUSHER_CTL_HEADER_SIZE + b->hello_len;

    ngx_http_pusher_link_write(c->write);
}


static void
ngx_http_pusher_link_retry(ngx_http_pusher_link_t *b)
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
 * a WELCOME names another generation.  Only the link's event handlers
 * and the timer that connects call it.
 */

static void
ngx_http_pusher_link_close(ngx_http_pusher_link_t *b)
{
    ngx_http_pusher_zone_worker_t  *zw;

    if (b->conn) {
        ngx_close_connection(b->conn);
        b->conn = NULL;
    }

    b->out_len = 0;
    b->out_sent = 0;
    b->out_max = 0;
    b->welcomed = 0;
    b->announce.phase = NGX_HTTP_PUSHER_ANNOUNCE_DONE;

    zw = ngx_http_pusher_zone_worker();

    if (zw) {
        zw->attached = 0;
    }

    /* pusher_metrics requests waiting for this broker's answer */
    ngx_http_pusher_metrics_link_down();

    /* the broker hands our wake slot to the next worker */
    ngx_http_pusher_ring_detach();
}


/* the "coalesce" lines of an app for HELLO, allocated from pool */

static pusher_ctl_coalesce_t *
ngx_http_pusher_link_coalesce(ngx_pool_t *pool, ngx_array_t *lines)
{
    ngx_str_t                   *name;
    ngx_uint_t                   k, e;
    pusher_ctl_coalesce_t       *out;
    ngx_http_pusher_coalesce_t  *c;

    c = lines->elts;

    out = ngx_pcalloc(pool, lines->nelts * sizeof(pusher_ctl_coalesce_t));
    if (out == NULL) {
        return NULL;
    }

    for (k = 0; k < lines->nelts; k++) {
        out[k].pattern.data = (char *) c[k].pattern.data;
        out[k].pattern.len = c[k].pattern.len;
        out[k].window = c[k].window;

        if (c[k].events == NULL) {
            continue;
        }

        name = c[k].events->elts;
        out[k].nevents = c[k].events->nelts;

        out[k].events = ngx_pcalloc(pool,
                                    out[k].nevents * sizeof(pusher_str_t));
        if (out[k].events == NULL) {
            return NULL;
        }

        for (e = 0; e < out[k].nevents; e++) {
            out[k].events[e].data = (char *) name[e].data;
            out[k].events[e].len = name[e].len;
        }
    }

    return out;
}


/*
 * The HELLO of a configuration, as pusher_ctl_hello_encode() writes it
 * (release with pusher_ctl_text_free()), or NULL when out of memory.
 * nginx -t checks this very text as the broker will
 * (ngx_http_pusher_init_main_conf()), and each worker sends it.
 */

char *
ngx_http_pusher_hello_encode(ngx_http_pusher_main_conf_t *pmcf,
    ngx_log_t *log, size_t *len)
{
    char                       *text;
    ngx_uint_t                  i, k, h;
    ngx_pool_t                 *pool;
    ngx_keyval_t               *kv;
    pusher_ctl_kv_t            *headers;
    pusher_ctl_app_t           *apps, *a;
    pusher_ctl_hello_t          hello;
    pusher_ctl_webhook_t       *webhooks;
    pusher_ctl_coalesce_t      *coalesce;
    ngx_http_pusher_app_t      *app;
    ngx_http_pusher_webhook_t  *wh;

    pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, log);
    if (pool == NULL) {
        return NULL;
    }

    text = NULL;
    app = pmcf->apps.elts;

    apps = ngx_pcalloc(pool,
                       (pmcf->apps.nelts + 1) * sizeof(pusher_ctl_app_t));
    if (apps == NULL) {
        goto done;
    }

    for (i = 0; i < pmcf->apps.nelts; i++) {
        a = &apps[i];

        a->id.data = (char *) app[i].id.data;
        a->id.len = app[i].id.len;
        a->key.data = (char *) app[i].key.data;
        a->key.len = app[i].key.len;
        a->secret.data = (char *) app[i].secret.data;
        a->secret.len = app[i].secret.len;

        a->has = PUSHER_CTL_APP_ALL;
        a->cache_ttl = app[i].cache_ttl;
        a->subscription_count = app[i].subscription_count ? 1 : 0;
        a->max_event_data = app[i].max_event_data;
        a->max_channels = app[i].max_event_channels;
        a->max_event_name = app[i].max_event_name;
        a->max_batch = app[i].max_batch_events;
        a->max_request_size = app[i].max_request_size;
        a->webhook_vacated_delay = app[i].webhook_vacated_delay;

        if (app[i].coalesce != NULL) {
            coalesce = ngx_http_pusher_link_coalesce(pool, app[i].coalesce);
            if (coalesce == NULL) {
                goto done;
            }

            a->coalesce = coalesce;
            a->ncoalesce = app[i].coalesce->nelts;
        }

        if (app[i].webhooks == NULL) {
            continue;
        }

        wh = app[i].webhooks->elts;
        a->nwebhooks = app[i].webhooks->nelts;

        webhooks = ngx_pcalloc(pool,
                               a->nwebhooks * sizeof(pusher_ctl_webhook_t));
        if (webhooks == NULL) {
            goto done;
        }

        a->webhooks = webhooks;

        for (k = 0; k < a->nwebhooks; k++) {
            webhooks[k].url.data = (char *) wh[k].url.data;
            webhooks[k].url.len = wh[k].url.len;
            webhooks[k].events = wh[k].events;
            webhooks[k].prefix.data = (char *) wh[k].prefix.data;
            webhooks[k].prefix.len = wh[k].prefix.len;
            webhooks[k].suffix.data = (char *) wh[k].suffix.data;
            webhooks[k].suffix.len = wh[k].suffix.len;

            if (wh[k].headers == NULL) {
                continue;
            }

            kv = wh[k].headers->elts;
            webhooks[k].nheaders = wh[k].headers->nelts;

            headers = ngx_pcalloc(pool, webhooks[k].nheaders
                                        * sizeof(pusher_ctl_kv_t));
            if (headers == NULL) {
                goto done;
            }

            webhooks[k].headers = headers;

            for (h = 0; h < webhooks[k].nheaders; h++) {
                headers[h].name.data = (char *) kv[h].key.data;
                headers[h].name.len = kv[h].key.len;
                headers[h].value.data = (char *) kv[h].value.data;
                headers[h].value.len = kv[h].value.len;
            }
        }
    }

    ngx_memzero(&hello, sizeof(pusher_ctl_hello_t));

    hello.pid = ngx_pid;
    hello.conf_time = (int64_t) pmcf->conf_time;
    hello.debug = pmcf->debug ? 1 : 0;
    hello.cluster_url.data = (char *) pmcf->cluster_url.data;
    hello.cluster_url.len = pmcf->cluster_url.len;
    hello.cluster_prefix.data = (char *) pmcf->cluster_prefix.data;
    hello.cluster_prefix.len = pmcf->cluster_prefix.len;
    hello.cluster_node.data = (char *) pmcf->cluster_node.data;
    hello.cluster_node.len = pmcf->cluster_node.len;
    hello.apps = apps;
    hello.napps = pmcf->apps.nelts;

    text = pusher_ctl_hello_encode(&hello, len);

done:

    ngx_destroy_pool(pool);

    return text;
}


/*
 * The HELLO payload of this worker: only the configuration it serves
 * (conf_time).  The broker takes the apps from the file the master wrote
 * (ngx_http_pusher_apps_write()), never from a HELLO: any process that can
 * open the control socket can say HELLO.
 */

static ngx_int_t
ngx_http_pusher_link_hello(ngx_http_pusher_link_t *b, ngx_cycle_t *cycle)
{
    char                *text;
    size_t               len;
    pusher_ctl_hello_t   hello;

    ngx_memzero(&hello, sizeof(pusher_ctl_hello_t));

    hello.pid = ngx_pid;
    hello.conf_time = (int64_t) b->pmcf->conf_time;

    text = pusher_ctl_hello_encode(&hello, &len);
    if (text == NULL) {
        return NGX_ERROR;
    }

    b->hello = ngx_alloc(len, cycle->log);
    if (b->hello == NULL) {
        pusher_ctl_text_free(text);
        return NGX_ERROR;
    }

    ngx_memcpy(b->hello, text, len);
    b->hello_len = len;

    pusher_ctl_text_free(text);

    return NGX_OK;
}


/*
 * The master, as it loads nginx.conf (init_module, as root on a system
 * nginx), writes the app table for the broker next to the control socket:
 * "<pusher_broker>.apps", the text ngx_http_pusher_hello_encode() makes
 * (and nginx -t checked), owned by the master's user, mode 0640 with the
 * workers' group, written under a temporary name and renamed into place.
 * The broker reads it only if its owner is the user it trusts (README,
 * "Trust").  A failure is logged and nginx goes on: workers still serve,
 * and the broker refuses them with the reason.
 */

void
ngx_http_pusher_apps_write(ngx_cycle_t *cycle,
    ngx_http_pusher_main_conf_t *pmcf)
{
    char             *text;
    size_t            len, dir;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_gid_t         group;
    ngx_uid_t         user;
    u_char           *path, *tmp, *p;
    ngx_core_conf_t  *ccf;

    if (ngx_test_config) {
        return;
    }

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    /* the workers' user and group, when the master may give files away */
    user = (ngx_uid_t) -1;
    group = (ngx_gid_t) -1;

    if (geteuid() == 0 && ccf->user != (ngx_uid_t) NGX_CONF_UNSET_UINT) {
        user = ccf->user;
        group = ccf->group;
    }

    len = pmcf->broker.len;

    path = ngx_pnalloc(cycle->pool, 2 * (len + sizeof(".apps.tmp")));
    if (path == NULL) {
        return;
    }

    p = ngx_cpymem(path, pmcf->broker.data, len);
    ngx_memcpy(p, ".apps", sizeof(".apps"));

    tmp = path + len + sizeof(".apps.tmp");
    p = ngx_cpymem(tmp, pmcf->broker.data, len);
    ngx_memcpy(p, ".apps.tmp", sizeof(".apps.tmp"));

    /* the broker's runtime directory, if nothing made it yet */
    for (dir = len; dir > 1 && path[dir - 1] != '/'; dir--) { /* void */ }

    if (dir > 1) {
        path[dir - 1] = '\0';

        if (ngx_create_dir(path, 0750) == NGX_FILE_ERROR) {
            if (ngx_errno != NGX_EEXIST) {
                ngx_log_error(NGX_LOG_ERR, cycle->log, ngx_errno,
                              "pusher: mkdir(\"%s\") failed: the broker "
                              "gets no app table", path);
                return;
            }

        } else if (user != (ngx_uid_t) -1
                   && chown((char *) path, user, group) == -1)
        {
            ngx_log_error(NGX_LOG_ERR, cycle->log, ngx_errno,
                          "pusher: chown(\"%s\") failed", path);
        }

        path[dir - 1] = '/';
    }

    text = ngx_http_pusher_hello_encode(pmcf, cycle->log, &len);
    if (text == NULL) {
        return;
    }

    /* never through a link someone else left under the temporary name */
    (void) unlink((char *) tmp);

    fd = open((char *) tmp, O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC,
              0600);

    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ERR, cycle->log, ngx_errno,
                      "pusher: open(\"%s\") failed: the broker gets no "
                      "app table", tmp);
        pusher_ctl_text_free(text);
        return;
    }

    n = write(fd, text, len);

    pusher_ctl_text_free(text);

    if (n != (ssize_t) len
        || (group != (ngx_gid_t) -1 && fchown(fd, (uid_t) -1, group) == -1)
        || fchmod(fd, 0640) == -1)
    {
        ngx_log_error(NGX_LOG_ERR, cycle->log, ngx_errno,
                      "pusher: writing \"%s\" failed: the broker gets no "
                      "app table", tmp);
        (void) close(fd);
        (void) unlink((char *) tmp);
        return;
    }

    if (close(fd) == -1 || rename((char *) tmp, (char *) path) == -1) {
        ngx_log_error(NGX_LOG_ERR, cycle->log, ngx_errno,
                      "pusher: rename(\"%s\", \"%s\") failed: the broker "
                      "gets no app table", tmp, path);
        (void) unlink((char *) tmp);
    }
}


/*
 * Queues an uplink message; it is written from a posted write event, so a
 * burst of messages goes out in one send().  Before WELCOME nothing is
 * queued: the announcement after WELCOME covers that time, and a client
 * event sent while the broker is away is lost.
 */

ngx_int_t
ngx_http_pusher_uplink(ngx_uint_t type, ngx_str_t *fields, ngx_uint_t n)
{
    ngx_int_t                rc;
    ngx_http_pusher_link_t  *b;

    b = &ngx_http_pusher_link;

    if (b->conn == NULL || !b->welcomed || b->conn->error) {
        return NGX_DECLINED;
    }

    if (!b->announcing && ngx_http_pusher_link_deferred(b, type, fields)) {
        return NGX_DECLINED;
    }

    rc = ngx_http_pusher_link_append(b, type, fields, n);

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_ERR, b->log, 0,
                      "pusher: uplink message %ui is too large, dropped",
                      type);
        return NGX_DECLINED;
    }

    if (rc != NGX_OK) {
        if (rc == NGX_BUSY) {
            ngx_log_error(NGX_LOG_ERR, b->log, 0,
                          "pusher: the broker does not read its control "
                          "socket, reconnecting");
        }

        /* the write handler closes it: our caller may be inside another */
        b->conn->error = 1;
        ngx_post_event(b->conn->write, &ngx_posted_events);

        return NGX_ERROR;
    }

    /* the announcement sends from the write handler, its own pace */

    if (!b->announcing) {
        ngx_post_event(b->conn->write, &ngx_posted_events);
    }

    return NGX_OK;
}


/*
 * Writes what the uplink holds before the client frames of this turn go
 * out (ngx_http_pusher_flush_dirty()): a client told subscription_succeeded
 * may ask the HTTP API for the channel at once, and the broker answers it
 * after the uplink it had before the request (trigger_api::reads_counts),
 * so the OCCUPANCY must be in the socket first.  The posted write event
 * does the rest, and what a full socket keeps waits for it.
 */

void
ngx_http_pusher_uplink_flush(void)
{
    ngx_connection_t        *c;
    ngx_http_pusher_link_t  *b;

    b = &ngx_http_pusher_link;
    c = b->conn;

    if (c == NULL || c->error || b->out_sent == b->out_len
        || !c->write->ready)
    {
        return;
    }

    if (ngx_http_pusher_link_send(b) != NGX_OK) {
        /* the write handler closes it: our caller may be inside another */
        c->error = 1;
        ngx_post_event(c->write, &ngx_posted_events);
    }
}


/*
 * pusher_metrics asks the broker for its metrics; NGX_DECLINED without a
 * broker.  Like any uplink message, but never deferred.
 */

ngx_int_t
ngx_http_pusher_link_request_metrics(uint32_t id)
{
    u_char                   buf[NGX_INT32_LEN];
    ngx_str_t                f;
    ngx_http_pusher_link_t  *b;

    b = &ngx_http_pusher_link;

    if (b->conn == NULL || !b->welcomed || b->conn->error) {
        return NGX_DECLINED;
    }

    f.data = buf;
    f.len = ngx_sprintf(buf, "%uD", id) - buf;

    if (ngx_http_pusher_link_append(b, PUSHER_CTL_METRICS, &f, 1) != NGX_OK) {
        return NGX_DECLINED;
    }

    ngx_post_event(b->conn->write, &ngx_posted_events);

    return NGX_OK;
}


/* the announcement waits while this is true (or there is no link) */

ngx_uint_t
ngx_http_pusher_uplink_busy(void)
{
    ngx_http_pusher_link_t  *b;

    b = &ngx_http_pusher_link;

    return b->conn == NULL || b->conn->error
           || b->out_len - b->out_sent >= NGX_HTTP_PUSHER_UPLINK_MARK;
}


/*
 * 1 if the broker of the link has this channel's state from this worker
 * (or gets it in order): attached, and the announcement has passed the
 * channel.  What ends where it is 0 is told with GONE instead.
 */

ngx_uint_t
ngx_http_pusher_link_knows(ngx_http_pusher_app_t *app, u_char *name,
    size_t len)
{
    ngx_http_pusher_app_t   *apps;
    ngx_http_pusher_link_t  *b;

    b = &ngx_http_pusher_link;

    if (b->conn == NULL || !b->welcomed || b->conn->error) {
        return 0;
    }

    apps = b->pmcf->apps.elts;

    return ngx_http_pusher_announce_passed(&b->announce, app - apps, name,
                                           len);
}


/*
 * While the announcement walks the channels, what it carries for a
 * channel it has not reached yet does not go ahead of it: the count and
 * the signed-in sockets would arrive twice (a socket would get its
 * watchlist_events twice), and a new presence member would get the member
 * list before this worker's members were announced again; it waits with
 * the pending subscriptions, which the announcement asks for after the
 * channels.  Leaves and offlines go at once: the broker ignores those it
 * does not know, and the announcement will not find them.
 */

static ngx_uint_t
ngx_http_pusher_link_deferred(ngx_http_pusher_link_t *b, ngx_uint_t type,
    ngx_str_t *f)
{
    u_char                 *name;
    size_t                  len;
    ngx_http_pusher_app_t  *app, *apps;
    u_char                  buf[PUSHER_CHANNEL_MAX];

    if (b->announce.phase != NGX_HTTP_PUSHER_ANNOUNCE_CHANNELS) {
        return 0;
    }

    switch (type) {

    case PUSHER_CTL_OCCUPANCY:
    case PUSHER_CTL_PRESENCE_JOIN:
        name = f[1].data;
        len = f[1].len;
        break;

    case PUSHER_CTL_USER_ONLINE:
        len = sizeof("#server-to-user-") - 1;

        if (len + f[1].len > sizeof(buf)) {
            return 0;
        }

        ngx_memcpy(buf, "#server-to-user-", len);
        ngx_memcpy(buf + len, f[1].data, f[1].len);
        name = buf;
        len += f[1].len;
        break;

    default:
        return 0;
    }

    app = ngx_http_pusher_app_by_id(b->pmcf, f[0].data, f[0].len);
    if (app == NULL) {
        return 0;
    }

    apps = b->pmcf->apps.elts;

    return !ngx_http_pusher_announce_passed(&b->announce, app - apps, name,
                                            len);
}


/*
 * NGX_OK: appended; NGX_DECLINED: larger than a message may be;
 * NGX_BUSY: the broker is not reading; NGX_ERROR: no memory.
 */

static ngx_int_t
ngx_http_pusher_link_append(ngx_http_pusher_link_t *b, ngx_uint_t type,
    ngx_str_t *fields, ngx_uint_t n)
{
    u_char      *p;
    size_t       len, queued;
    ngx_uint_t   i;

    len = 0;

    for (i = 0; i < n; i++) {
        len += PUSHER_CTL_FIELD_SIZE(fields[i].len);
    }

    if (len > PUSHER_CTL_MAX_PAYLOAD) {
        return NGX_DECLINED;
    }

    queued = b->out_len - b->out_sent + PUSHER_CTL_HEADER_SIZE + len;

    if (!b->announcing && queued > NGX_HTTP_PUSHER_UPLINK_MAX) {

        /* the state is walked once while the queue stays this long */

        if (b->out_max == 0) {
            b->out_max = NGX_HTTP_PUSHER_UPLINK_MAX
                         + ngx_http_pusher_state_size(b->pmcf);
        }

        if (queued > b->out_max) {
            return NGX_BUSY;
        }
    }

    if (ngx_http_pusher_link_queue(b, PUSHER_CTL_HEADER_SIZE + len)
        != NGX_OK)
    {
        return NGX_ERROR;
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


/*
 * Makes room for need more bytes after out_len.  What was sent is dropped
 * from the front once it is half the queue, so a queue that streams on
 * without ever running empty stays the size of what is unsent.
 */

static ngx_int_t
ngx_http_pusher_link_queue(ngx_http_pusher_link_t *b, size_t need)
{
    u_char  *p;
    size_t   queued, cap;

    if (b->out_len + need <= b->out_cap) {
        return NGX_OK;
    }

    queued = b->out_len - b->out_sent;

    if (queued + need <= b->out_cap / 2) {
        ngx_memmove(b->out, b->out + b->out_sent, queued);

    } else {
        cap = ngx_max(b->out_cap * 2, queued + need);
        cap = ngx_max(cap, NGX_HTTP_PUSHER_UPLINK_BUFFER);

        p = ngx_alloc(cap, b->log);
        if (p == NULL) {
            return NGX_ERROR;
        }

        if (queued) {
            ngx_memcpy(p, b->out + b->out_sent, queued);
        }

        if (b->out) {
            ngx_free(b->out);
        }

        b->out = p;
        b->out_cap = cap;
    }

    b->out_len = queued;
    b->out_sent = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_pusher_link_send(ngx_http_pusher_link_t *b)
{
    ssize_t            n;
    ngx_connection_t  *c;

    c = b->conn;

    while (b->out_sent < b->out_len && c->write->ready) {
        n = c->send(c, b->out + b->out_sent, b->out_len - b->out_sent);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == NGX_ERROR) {
            return NGX_ERROR;
        }

        b->out_sent += n;
    }

    if (b->out_len - b->out_sent <= NGX_HTTP_PUSHER_UPLINK_MAX) {
        b->out_max = 0;
    }

    if (b->out_sent == b->out_len) {
        b->out_len = 0;
        b->out_sent = 0;

        /* a burst is over: give back what it grew the queue to */

        if (b->out_cap > 4 * NGX_HTTP_PUSHER_UPLINK_MARK) {
            ngx_free(b->out);
            b->out = NULL;
            b->out_cap = 0;
        }
    }

    return NGX_OK;
}


/*
 * Sends the uplink queue and, while an announcement is under way and the
 * queue is below its mark, adds the next part of it.  The part after that
 * waits for the next turn of the event loop (if the socket still takes
 * more) or for the socket to drain, so the announcement goes at the pace
 * the broker reads and never keeps the worker from its clients.
 */

static void
ngx_http_pusher_link_write(ngx_event_t *wev)
{
    ngx_int_t                rc;
    ngx_connection_t        *c;
    ngx_http_pusher_link_t  *b;

    c = wev->data;
    b = c->data;

    if (c->error || ngx_http_pusher_link_send(b) != NGX_OK) {
        goto failed;
    }

    if (b->announce.phase != NGX_HTTP_PUSHER_ANNOUNCE_DONE
        && b->out_len - b->out_sent < NGX_HTTP_PUSHER_UPLINK_MARK)
    {
        b->announcing = 1;
        rc = ngx_http_pusher_announce(b->pmcf, &b->announce);
        b->announcing = 0;

        if (c->error) {
            goto failed;
        }

        if (rc == NGX_OK) {
            ngx_log_error(NGX_LOG_INFO, b->log, 0,
                          "pusher: announced %ui channel(s) to the broker "
                          "in %M ms", b->announce.channels,
                          ngx_current_msec - b->announce_start);
        }

        if (wev->ready && b->out_sent < b->out_len) {
            ngx_post_event(wev, &ngx_posted_next_events);
        }
    }

    if (ngx_handle_write_event(wev, 0) != NGX_OK) {
        goto failed;
    }

    return;

failed:

    ngx_http_pusher_link_close(b);
    ngx_http_pusher_link_retry(b);
}


static void
ngx_http_pusher_link_read(ngx_event_t *rev)
{
    u_char                  *p;
    size_t                   len;
    ssize_t                  n;
    ngx_int_t                rc;
    ngx_connection_t        *c;
    pusher_ctl_header_t      h;
    ngx_http_pusher_link_t  *b;

    c = rev->data;
    b = c->data;

    if (c->close) {
        c->close = 0;

        /*
         * graceful shutdown; after a reload the sockets this worker keeps
         * still need the broker, and its memberships end with the link
         */

        if (c->error || !ngx_http_pusher_draining()) {
            ngx_http_pusher_link_close(b);
            return;
        }

        c->idle = 0;
    }

    while (!c->error) {

        n = c->recv(c, b->in + b->in_len, b->in_cap - b->in_len);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0 || n == NGX_ERROR) {
            ngx_log_error(NGX_LOG_WARN, b->log, 0,
                          "pusher: lost the broker connection, "
                          "reconnecting");
            ngx_http_pusher_link_close(b);
            b->reported = 0;
            ngx_http_pusher_link_retry(b);
            return;
        }

        b->in_len += n;

        /* a message may have marked the link errored: no more of them */

        while (b->in_len >= PUSHER_CTL_HEADER_SIZE && !c->error) {

            pusher_ctl_header_read(b->in, &h);

            if (h.length > PUSHER_CTL_MAX_PAYLOAD) {
                ngx_log_error(NGX_LOG_ERR, b->log, 0,
                              "pusher: broker sent a %uD byte message",
                              h.length);
                goto failed;
            }

            len = PUSHER_CTL_HEADER_SIZE + h.length;

            if (b->in_len < len) {

                if (len > b->in_cap) {
                    p = ngx_alloc(len, b->log);
                    if (p == NULL) {
                        goto failed;
                    }

                    ngx_memcpy(p, b->in, b->in_len);
                    ngx_free(b->in);
                    b->in = p;
                    b->in_cap = len;
                }

                break;
            }

            rc = ngx_http_pusher_link_message(b, h.type,
                                              b->in + PUSHER_CTL_HEADER_SIZE,
                                              h.length);

            ngx_memmove(b->in, b->in + len, b->in_len - len);
            b->in_len -= len;

            if (rc != NGX_OK) {
                goto failed;
            }
        }

        if (!rev->ready) {
            break;
        }
    }

    /* frames queued for PRESENCE_JOINED and CACHE answers */
    ngx_http_pusher_flush_fanout();

    if (c->error) {
        goto failed;
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        goto failed;
    }

    return;

failed:

    ngx_http_pusher_link_close(b);
    ngx_http_pusher_link_retry(b);
}


static ngx_int_t
ngx_http_pusher_link_message(ngx_http_pusher_link_t *b, ngx_uint_t type,
    u_char *data, size_t len)
{
    switch (type) {

    case PUSHER_CTL_WELCOME:
        return ngx_http_pusher_link_welcome(b, data, len);

    case PUSHER_CTL_DOORBELL:
        ngx_http_pusher_ring_doorbell();
        return NGX_OK;

    case PUSHER_CTL_REFUSED:
        /* the broker closes the link next; the retries say it once a
         * minute */
        if (b->refused == 0 || ngx_time() - b->refused >= 60) {
            ngx_log_error(NGX_LOG_ERR, b->log, 0,
                          "pusher: the broker refused this worker: %*s",
                          ngx_min(len, 512), data);
            b->refused = ngx_time();
        }

        return NGX_OK;

    case PUSHER_CTL_METRICS_TEXT:
        ngx_http_pusher_metrics_broker(data, len);
        return NGX_OK;

    default:
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, b->log, 0,
                       "pusher link: control message %ui ignored", type);
        return NGX_OK;
    }
}


/*
 * WELCOME (pusher_ctl_welcome_decode()): map the segment it names, take
 * the wake slot, and announce this worker's state to the broker, which
 * may have restarted and lost it all.
 */

static ngx_int_t
ngx_http_pusher_link_welcome(ngx_http_pusher_link_t *b, u_char *data,
    size_t len)
{
    uint64_t                        generation;
    ngx_int_t                       rc;
    pusher_ctl_welcome_t            w;
    ngx_http_pusher_zone_worker_t  *zw;

    if (pusher_ctl_welcome_decode(&w, (char *) data, len) != 0) {
        ngx_log_error(NGX_LOG_ERR, b->log, 0,
                      "pusher: broker sent an invalid WELCOME: %s", w.error);
        pusher_ctl_welcome_free(&w);
        return NGX_ERROR;
    }

    /* decoded strings are NUL-terminated */

    generation = w.generation;
    rc = ngx_http_pusher_ring_attach(w.shm.data, generation, w.slot);

    pusher_ctl_welcome_free(&w);

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    b->backoff = NGX_HTTP_PUSHER_RECONNECT_MIN;
    b->reported = 0;
    b->welcomed = 1;
    b->refused = 0;

    zw = ngx_http_pusher_zone_worker();

    if (zw) {
        zw->attached = 1;
        (void) ngx_atomic_fetch_add(&zw->attaches, 1);
    }

    ngx_log_error(NGX_LOG_INFO, b->log, 0,
                  "pusher: attached to broker generation %uL", generation);

    /* streamed by the write handler, as fast as the broker reads it */

    ngx_http_pusher_announce_start(&b->announce);
    b->announce_start = ngx_current_msec;
    ngx_post_event(b->conn->write, &ngx_posted_events);

    return NGX_OK;
}
