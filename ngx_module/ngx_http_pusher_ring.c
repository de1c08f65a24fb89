
/*
 * Copyright (C) ngx-pusher authors
 */


#include "ngx_http_pusher_module.h"
#include "pusher_ctl.h"


/*
 * The ring reader: the broker's segment mapped, this worker's cursor in
 * its ring, and the drain that fans the records out to local sockets.  The
 * link (ngx_http_pusher_link.c) says which segment and wake slot
 * (WELCOME) and when records wait (DOORBELL); a safety poll drains in any
 * case, so a lost wake-up delays events by a second at most.
 */

typedef struct {
    ngx_http_pusher_main_conf_t  *pmcf;
    ngx_log_t                    *log;

    ngx_event_t                   poll;
    ngx_event_t                   drain;
    ngx_event_t                   retry;           /* after laps in a row */

    u_char                       *base;            /* mapped segment */
    size_t                        size;
    uint64_t                      generation;
    pusher_ring_t                 ring;
    pusher_ring_reader_t          reader;
    pusher_shm_wake_t            *wake;            /* NULL: not linked */
    u_char                       *scratch;         /* max_record bytes */
    size_t                        scratch_size;
    uint64_t                      start_ms;        /* this worker's start */

    ngx_uint_t                    laps_run;        /* laps since a record */
    ngx_uint_t                    laps_quiet;      /* not logged since */
    ngx_msec_t                    lap_logged;      /* last lap warning */
    unsigned                      lap_logged_once:1;
} ngx_http_pusher_reader_t;


static void ngx_http_pusher_ring_answer(ngx_http_pusher_reader_t *r,
    int32_t type, u_char *data, size_t len);
static ngx_int_t ngx_http_pusher_ring_map(ngx_http_pusher_reader_t *r,
    const char *name, uint64_t generation, ngx_uint_t slot);
static void ngx_http_pusher_ring_unmap(ngx_http_pusher_reader_t *r);
static void ngx_http_pusher_ring_poll(ngx_event_t *ev);
static void ngx_http_pusher_ring_drain(ngx_event_t *ev);
static void ngx_http_pusher_ring_drain_all(ngx_http_pusher_reader_t *r);
static ngx_int_t ngx_http_pusher_ring_next(ngx_http_pusher_reader_t *r);
static ngx_int_t ngx_http_pusher_ring_lapped(ngx_http_pusher_reader_t *r);
static void ngx_http_pusher_ring_reconnect(ngx_http_pusher_reader_t *r,
    u_char *data, size_t len);


static ngx_http_pusher_reader_t  ngx_http_pusher_reader;


ngx_int_t
ngx_http_pusher_ring_init_worker(ngx_cycle_t *cycle,
    ngx_http_pusher_main_conf_t *pmcf)
{
    ngx_time_t                *tp;
    ngx_http_pusher_reader_t  *r;

    r = &ngx_http_pusher_reader;

    ngx_memzero(r, sizeof(ngx_http_pusher_reader_t));

    r->pmcf = pmcf;
    r->log = cycle->log;

    tp = ngx_timeofday();
    r->start_ms = (uint64_t) tp->sec * 1000 + tp->msec;

    r->poll.handler = ngx_http_pusher_ring_poll;
    r->poll.data = r;
    r->poll.log = cycle->log;
    r->poll.cancelable = 1;

    r->drain.handler = ngx_http_pusher_ring_drain;
    r->drain.data = r;
    r->drain.log = cycle->log;

    r->retry.handler = ngx_http_pusher_ring_drain;
    r->retry.data = r;
    r->retry.log = cycle->log;
    r->retry.cancelable = 1;

    ngx_add_timer(&r->poll, NGX_HTTP_PUSHER_SAFETY_POLL);

    return NGX_OK;
}


void
ngx_http_pusher_ring_exit_worker(void)
{
    ngx_http_pusher_reader_t  *r;

    r = &ngx_http_pusher_reader;

    if (r->pmcf == NULL) {
        return;
    }

    ngx_http_pusher_ring_unmap(r);

    if (r->scratch) {
        ngx_free(r->scratch);
        r->scratch = NULL;
    }

    r->pmcf = NULL;
}


/*
 * WELCOME: map the segment (a new generation) or keep the mapping and the
 * cursor (the same broker), take the wake slot, and read what is waiting.
 */

ngx_int_t
ngx_http_pusher_ring_attach(const char *name, uint64_t generation,
    ngx_uint_t slot)
{
    ngx_http_pusher_reader_t  *r;

    r = &ngx_http_pusher_reader;

    if (ngx_http_pusher_ring_map(r, name, generation, slot) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_post_event(&r->drain, &ngx_posted_events);

    return NGX_OK;
}


/*
 * The link is gone: the broker hands our wake slot to the next worker.
 * The mapping stays (nothing new will appear in it) until a WELCOME names
 * another generation.
 */

void
ngx_http_pusher_ring_detach(void)
{
    ngx_http_pusher_reader.wake = NULL;
}


/* DOORBELL: records were published while our wake slot was armed */

void
ngx_http_pusher_ring_doorbell(void)
{
    ngx_http_pusher_ring_drain(&ngx_http_pusher_reader.drain);
}


/*
 * PUSHER_RING_PRESENCE_JOINED (socket_id, channel, status, json, cache) and
 * PUSHER_RING_CACHE (socket_id, channel, json): every worker reads them,
 * the one whose pid starts the socket_id acts.  PUSHER_RING_TERMINATE
 * (app_id, user_id) concerns every worker.
 */

static void
ngx_http_pusher_ring_answer(ngx_http_pusher_reader_t *r, int32_t type,
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
            ngx_log_error(NGX_LOG_ALERT, r->log, 0,
                          "pusher: malformed ring answer of %uz bytes", len);
            return;
        }
    }

    if (type == PUSHER_RING_TERMINATE) {
        ngx_http_pusher_terminate(r->pmcf, (u_char *) f[0], n[0],
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


/*
 * PUSHER_RING_RECONNECT (node, count): events of another cluster node
 * never reached this host (its Redis link was down); which channels they
 * were for is unknown, so every subscribed socket reconnects (4200) and
 * its app refetches, as after a lap.
 */

static void
ngx_http_pusher_ring_reconnect(ngx_http_pusher_reader_t *r, u_char *data,
    size_t len)
{
    uint32_t        n[2];
    ngx_uint_t      i;
    const uint8_t  *pos, *end, *f[2];

    pos = data;
    end = data + len;

    for (i = 0; i < 2; i++) {
        if (pusher_ctl_get(&pos, end, &f[i], &n[i]) != 0) {
            ngx_log_error(NGX_LOG_ALERT, r->log, 0,
                          "pusher: malformed ring reconnect of %uz bytes",
                          len);
            return;
        }
    }

    ngx_log_error(NGX_LOG_WARN, r->log, 0,
                  "pusher: %*s event record(s) of cluster node \"%*s\" "
                  "never reached this host: subscribed sockets are told to "
                  "reconnect (4200)", (size_t) n[1], f[1], (size_t) n[0], f[0]);

    ngx_http_pusher_ws_reconnect_subscribed();
}


static ngx_int_t
ngx_http_pusher_ring_map(ngx_http_pusher_reader_t *r, const char *name,
    uint64_t generation, ngx_uint_t slot)
{
    int                   fd;
    u_char               *base, *scratch;
    const char           *why;
    struct stat           st;
    pusher_ring_t         ring;
    pusher_shm_header_t  *hdr;

    if (r->base && r->generation == generation) {
        /* the same broker after a reconnect: keep the cursor */
        r->wake = pusher_shm_wake(r->base, (uint32_t) slot);
        pusher_ring_store_cursor(r->wake, &r->reader);
        return NGX_OK;
    }

    fd = shm_open(name, O_RDWR, 0);
    if (fd == -1) {
        ngx_log_error(NGX_LOG_ERR, r->log, ngx_errno,
                      "pusher: shm_open(\"%s\") failed", name);
        return NGX_ERROR;
    }

    if (fstat(fd, &st) == -1) {
        ngx_log_error(NGX_LOG_ERR, r->log, ngx_errno,
                      "pusher: fstat(\"%s\") failed", name);
        close(fd);
        return NGX_ERROR;
    }

    if (st.st_size < PUSHER_SHM_RING_OFFSET) {
        ngx_log_error(NGX_LOG_ERR, r->log, 0,
                      "pusher: broker segment \"%s\" refused: smaller than "
                      "its header", name);
        close(fd);
        return NGX_ERROR;
    }

    base = mmap(NULL, (size_t) st.st_size, PROT_READ|PROT_WRITE, MAP_SHARED,
                fd, 0);
    close(fd);

    if (base == MAP_FAILED) {
        ngx_log_error(NGX_LOG_ERR, r->log, ngx_errno,
                      "pusher: mmap(\"%s\") failed", name);
        return NGX_ERROR;
    }

    hdr = pusher_shm_header(base);

    why = pusher_shm_check(base, (uint64_t) st.st_size, generation, &ring);

    if (why != NULL) {
        ngx_log_error(NGX_LOG_ERR, r->log, 0,
                      "pusher: broker segment \"%s\" refused: %s "
                      "(layout version %uD, this module has %d)",
                      name, why, hdr->layout_version,
                      PUSHER_SHM_LAYOUT_VERSION);
        munmap(base, (size_t) st.st_size);
        return NGX_ERROR;
    }

    /*
     * What the old broker wrote and answered 200 for, and this worker has
     * not read yet (its doorbell died with it), is delivered first.
     */

    ngx_http_pusher_ring_drain_all(r);

    scratch = r->scratch;

    if (r->scratch_size < ring.max_record) {
        scratch = ngx_alloc(ring.max_record, r->log);
        if (scratch == NULL) {
            munmap(base, (size_t) st.st_size);
            return NGX_ERROR;
        }
    }

    ngx_http_pusher_ring_unmap(r);

    if (r->scratch != scratch) {
        if (r->scratch) {
            ngx_free(r->scratch);
        }

        r->scratch = scratch;
        r->scratch_size = ring.max_record;
    }

    r->base = base;
    r->size = (size_t) st.st_size;
    r->generation = generation;
    r->ring = ring;
    r->wake = pusher_shm_wake(base, (uint32_t) slot);

    /*
     * A broker that started after this worker may have published before
     * we attached: read its generation from the start.  Otherwise the old
     * records are for sockets this worker never had.
     */

    pusher_ring_reader_init(&r->reader, &r->ring,
                            hdr->start_time_ms >= r->start_ms);

    /* the broker writes nothing over what we are yet to read */
    pusher_ring_store_cursor(r->wake, &r->reader);

    return NGX_OK;
}


static void
ngx_http_pusher_ring_unmap(ngx_http_pusher_reader_t *r)
{
    /* the laps were of this segment; a new one starts afresh */
    if (r->retry.timer_set) {
        ngx_del_timer(&r->retry);
    }

    r->laps_run = 0;

    if (r->base) {
        munmap(r->base, r->size);
        r->base = NULL;
    }

    r->wake = NULL;
}


static void
ngx_http_pusher_ring_poll(ngx_event_t *ev)
{
    ngx_http_pusher_reader_t *r = ev->data;

    /* cancelable: it keeps a worker draining after a reload going */

    if (ngx_terminate) {
        return;
    }

    if (ngx_exiting && !ngx_http_pusher_draining()) {
        /* nginx stops: no more reason to keep sockets from a reload */
        ngx_http_pusher_ws_close_all();
    }

    ngx_http_pusher_ring_drain(&r->drain);

    if (ngx_http_pusher_metrics_pending) {
        ngx_http_pusher_metrics_flush();
    }

    ngx_add_timer(ev, NGX_HTTP_PUSHER_SAFETY_POLL);
}


/*
 * Reads up to NGX_HTTP_PUSHER_DRAIN_BATCH records, fans them out, writes
 * the sockets once, and either posts itself again or arms the wake slot
 * before the event loop sleeps.  A ring that keeps lapping us is read
 * again on the retry timer instead.
 */

static void
ngx_http_pusher_ring_drain(ngx_event_t *ev)
{
    ngx_http_pusher_reader_t *r = ev->data;

    ngx_int_t   rc;
    ngx_uint_t  n;

    if (r->base == NULL) {
        return;
    }

    rc = NGX_OK;

    for (n = 0; n < NGX_HTTP_PUSHER_DRAIN_BATCH; n++) {
        rc = ngx_http_pusher_ring_next(r);

        if (rc != NGX_OK) {
            break;
        }
    }

    ngx_http_pusher_flush_fanout();

    if (rc == NGX_AGAIN) {
        /*
         * Every read may lap at once: posting the drain again would spin.
         * Nor is the slot armed.  The retry timer reads again (unmapping
         * the segment deletes it); doorbells and the safety poll lap at
         * most once each meanwhile.
         */
        if (!r->retry.timer_set) {
            ngx_add_timer(&r->retry, NGX_HTTP_PUSHER_LAP_RETRY);
        }

        return;
    }

    if (n == NGX_HTTP_PUSHER_DRAIN_BATCH) {
        ngx_post_event(&r->drain, &ngx_posted_events);
        return;
    }

    if (r->wake && pusher_ring_arm(&r->ring, r->wake, &r->reader)) {
        ngx_post_event(&r->drain, &ngx_posted_events);
    }
}


/*
 * everything left in the ring of a broker that is gone; a ring that laps us
 * twice in a row stops it too
 */

static void
ngx_http_pusher_ring_drain_all(ngx_http_pusher_reader_t *r)
{
    if (r->base == NULL) {
        return;
    }

    while (ngx_http_pusher_ring_next(r) == NGX_OK) {
        /* void */
    }

    ngx_http_pusher_flush_fanout();
}


/*
 * reads and hands on one record: NGX_DONE when the ring is empty, NGX_AGAIN
 * when it lapped us twice in a row
 */

static ngx_int_t
ngx_http_pusher_ring_next(ngx_http_pusher_reader_t *r)
{
    int                       rc;
    int32_t                   type;
    uint32_t                  len;
    pusher_ring_event_view_t  view;

    rc = pusher_ring_read(&r->reader, &r->ring, r->scratch, &type, &len);

    if (rc == PUSHER_RING_EMPTY) {
        return NGX_DONE;
    }

    /* the record is copied: the broker may write over it */
    if (r->wake) {
        pusher_ring_store_cursor(r->wake, &r->reader);
    }

    if (rc == PUSHER_RING_LAPPED) {
        return ngx_http_pusher_ring_lapped(r);
    }

    r->laps_run = 0;

    if (type == PUSHER_RING_PRESENCE_JOINED || type == PUSHER_RING_CACHE
        || type == PUSHER_RING_TERMINATE)
    {
        ngx_http_pusher_ring_answer(r, type, r->scratch, len);
        return NGX_OK;
    }

    if (type == PUSHER_RING_RECONNECT) {
        ngx_http_pusher_ring_reconnect(r, r->scratch, len);
        return NGX_OK;
    }

    if (type != PUSHER_RING_EVENT) {
        return NGX_OK;
    }

    if (pusher_ring_event_decode(r->scratch, len, &view) != 0) {
        ngx_log_error(NGX_LOG_ALERT, r->log, 0,
                      "pusher: malformed ring record of %uD bytes", len);
        return NGX_OK;
    }

    ngx_http_pusher_publish(r->pmcf, &view);

    return NGX_OK;
}


/*
 * The broker waits for a worker that keeps up; this one had stopped
 * (SIGSTOP, swapped out) and was overtaken.  Events are lost for whatever
 * it was subscribed to: never silently, its subscribed sockets reconnect
 * and their apps refetch.
 *
 * Such a lap moves the reader to the latest record, which it reads next.
 * Lapped again before any record is read, the descriptor is garbage
 * (tail_intent far ahead of tail, say) and every read may lap: NGX_AGAIN,
 * the caller stops.  The warning, and with it the 4200 to sockets that
 * subscribed meanwhile, then comes at most once a second.
 */

static ngx_int_t
ngx_http_pusher_ring_lapped(ngx_http_pusher_reader_t *r)
{
    ngx_uint_t                      tell;
    ngx_http_pusher_zone_worker_t  *zw;

    zw = ngx_http_pusher_zone_worker();

    if (zw) {
        (void) ngx_atomic_fetch_add(&zw->laps, 1);
    }

    r->laps_run++;

    if (r->laps_run == 2) {
        ngx_log_error(NGX_LOG_ERR, r->log, 0,
                      "pusher: broker ring looks corrupt (lapped twice "
                      "without a record read in between): read again "
                      "every %M ms", (ngx_msec_t) NGX_HTTP_PUSHER_LAP_RETRY);
    }

    /* an ordinary lap always tells the sockets, as it may lose events */
    tell = (r->laps_run == 1);

    if (!r->lap_logged_once
        || ngx_current_msec - r->lap_logged >= NGX_HTTP_PUSHER_LAP_LOG)
    {
        ngx_log_error(NGX_LOG_WARN, r->log, 0,
                      "pusher: worker fell a whole ring behind the "
                      "broker (lapped %uL times, %ui not logged since the "
                      "last line): subscribed sockets are told to "
                      "reconnect (4200)", r->reader.lapped, r->laps_quiet);

        r->lap_logged = ngx_current_msec;
        r->lap_logged_once = 1;
        r->laps_quiet = 0;
        tell = 1;

    } else {
        r->laps_quiet++;
    }

    if (tell) {
        ngx_http_pusher_ws_reconnect_subscribed();
        ngx_http_pusher_pending_retry();
    }

    return (r->laps_run >= 2) ? NGX_AGAIN : NGX_OK;
}
