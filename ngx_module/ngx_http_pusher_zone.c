
/*
 * Copyright (C) ngx-pusher authors
 */


#include "ngx_http_pusher_module.h"


/*
 * The shared zone "ngx_http_pusher" outlives reloads.  It holds
 *
 *   - the open sockets of each app over all workers, for max_connections;
 *     old workers still serving after a reload count too;
 *
 *   - the generation of the newest configuration and, per app, the
 *     generation that last configured it and a digest of the settings an
 *     open socket depends on.  A worker told to shut down compares them
 *     with its own: when a reload (not a stop) sent it away, the sockets
 *     of apps the new configuration left unchanged stay open in it, and
 *     only the others get 4200 to reconnect to the new workers.
 *
 * The master writes the table in init_module, the commit point of a
 * configuration cycle, so a reload that fails changes nothing.
 */


static ngx_int_t ngx_http_pusher_zone_init(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_http_pusher_zone_app_t *ngx_http_pusher_zone_find(
    ngx_http_pusher_zone_t *zone, ngx_str_t *id);


ngx_int_t
ngx_http_pusher_zone_add(ngx_conf_t *cf, ngx_http_pusher_main_conf_t *pmcf)
{
    size_t      size;
    ngx_str_t   name = ngx_string("ngx_http_pusher");

    size = ngx_align(sizeof(ngx_http_pusher_zone_t) + 64 * 1024,
                     ngx_pagesize);

    pmcf->shm_zone = ngx_shared_memory_add(cf, &name, size,
                                           &ngx_http_pusher_module);
    if (pmcf->shm_zone == NULL) {
        return NGX_ERROR;
    }

    pmcf->shm_zone->init = ngx_http_pusher_zone_init;
    pmcf->shm_zone->data = pmcf;

    return NGX_OK;
}


static ngx_int_t
ngx_http_pusher_zone_init(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_pusher_main_conf_t  *opmcf = data;

    ngx_slab_pool_t              *shpool;
    ngx_http_pusher_main_conf_t  *pmcf;

    pmcf = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (opmcf) {
        /* a reload: the zone of the previous cycle, as it is */
        pmcf->zone = opmcf->zone;
        return NGX_OK;
    }

    if (shm_zone->shm.exists) {
        pmcf->zone = shpool->data;
        return NGX_OK;
    }

    pmcf->zone = ngx_slab_calloc(shpool, sizeof(ngx_http_pusher_zone_t));
    if (pmcf->zone == NULL) {
        return NGX_ERROR;
    }

    shpool->data = pmcf->zone;

    return NGX_OK;
}


/* the master, once the cycle of a new configuration can no longer fail */

ngx_int_t
ngx_http_pusher_zone_init_module(ngx_cycle_t *cycle)
{
    ngx_uint_t                    i;
    ngx_http_pusher_app_t        *app;
    ngx_http_pusher_zone_t       *zone;
    ngx_http_pusher_zone_app_t   *za;
    ngx_http_pusher_main_conf_t  *pmcf;

    pmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_pusher_module);

    if (pmcf == NULL || pmcf->zone == NULL) {
        return NGX_OK;
    }

    zone = pmcf->zone;

    pmcf->generation = zone->generation + 1;

    app = pmcf->apps.elts;

    for (i = 0; i < pmcf->apps.nelts; i++) {
        za = ngx_http_pusher_zone_find(zone, &app[i].id);

        if (za == NULL) {
            ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                          "pusher: more than %d apps, \"max_connections\" "
                          "of app \"%V\" is not enforced and a reload "
                          "reconnects its sockets",
                          NGX_HTTP_PUSHER_ZONE_APPS, &app[i].id);
            app[i].zone = NULL;
            continue;
        }

        za->digest = app[i].digest;
        za->generation = pmcf->generation;
        app[i].zone = za;
    }

    /* published last: workers compare against it */
    ngx_memory_barrier();
    zone->generation = pmcf->generation;

    return NGX_OK;
}


/*
 * The entry of an app id, or a free one: never used, or of an app no
 * configuration has had since with no socket left.
 */

static ngx_http_pusher_zone_app_t *
ngx_http_pusher_zone_find(ngx_http_pusher_zone_t *zone, ngx_str_t *id)
{
    ngx_uint_t                   i;
    ngx_http_pusher_zone_app_t  *za, *free;

    free = NULL;

    for (i = 0; i < NGX_HTTP_PUSHER_ZONE_APPS; i++) {
        za = &zone->apps[i];

        if (za->generation
            && za->id_len == id->len
            && ngx_strncmp(za->id, id->data, id->len) == 0)
        {
            return za;
        }

        if (free == NULL
            && (za->generation == 0
                || (za->generation < zone->generation
                    && za->connections == 0)))
        {
            free = za;
        }
    }

    if (free == NULL) {
        return NULL;
    }

    ngx_memzero(free, sizeof(ngx_http_pusher_zone_app_t));
    free->id_len = id->len;
    ngx_memcpy(free->id, id->data, id->len);

    return free;
}


/* a worker started into the slot of one that died keeps no count of it */

void
ngx_http_pusher_zone_init_worker(ngx_http_pusher_main_conf_t *pmcf)
{
    ngx_uint_t                   i;
    uint32_t                        left;
    ngx_http_pusher_zone_app_t     *za;
    ngx_http_pusher_zone_worker_t  *w;

    if (pmcf->zone == NULL
        || ngx_process_slot < 0 || ngx_process_slot >= NGX_MAX_PROCESSES)
    {
        return;
    }

    for (i = 0; i < NGX_HTTP_PUSHER_ZONE_APPS; i++) {
        za = &pmcf->zone->apps[i];
        left = za->per_slot[ngx_process_slot];

        if (left) {
            za->per_slot[ngx_process_slot] = 0;
            (void) ngx_atomic_fetch_add(&za->connections,
                                        - (ngx_atomic_int_t) left);
        }

        left = za->subs_per_slot[ngx_process_slot];

        if (left) {
            za->subs_per_slot[ngx_process_slot] = 0;
            (void) ngx_atomic_fetch_add(&za->metrics.subscriptions,
                                        - (ngx_atomic_int_t) left);
        }
    }

    w = &pmcf->zone->workers[ngx_process_slot];
    w->attached = 0;
    w->laps = 0;
    w->attaches = 0;
    ngx_memory_barrier();
    w->pid = (ngx_atomic_uint_t) ngx_pid;
}


void
ngx_http_pusher_zone_exit_worker(ngx_http_pusher_main_conf_t *pmcf)
{
    ngx_http_pusher_zone_worker_t  *w;

    if (pmcf == NULL || pmcf->zone == NULL
        || ngx_process_slot < 0 || ngx_process_slot >= NGX_MAX_PROCESSES)
    {
        return;
    }

    w = &pmcf->zone->workers[ngx_process_slot];

    if (w->pid == (ngx_atomic_uint_t) ngx_pid) {
        w->pid = 0;
        w->attached = 0;
    }
}


/* this worker's entry for pusher_metrics, or NULL */

ngx_http_pusher_zone_worker_t *
ngx_http_pusher_zone_worker(void)
{
    ngx_http_pusher_main_conf_t  *pmcf;

    if (ngx_process_slot < 0 || ngx_process_slot >= NGX_MAX_PROCESSES) {
        return NULL;
    }

    pmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_pusher_module);

    if (pmcf == NULL || pmcf->zone == NULL) {
        return NULL;
    }

    return &pmcf->zone->workers[ngx_process_slot];
}


/* a socket's subscriptions over all workers, for pusher_metrics */

void
ngx_http_pusher_zone_subscriptions(ngx_http_pusher_conn_t *pc,
    ngx_int_t delta)
{
    ngx_http_pusher_zone_app_t  *za;

    za = pc->app->zone;

    if (za == NULL
        || ngx_process_slot < 0 || ngx_process_slot >= NGX_MAX_PROCESSES)
    {
        return;
    }

    za->subs_per_slot[ngx_process_slot] += (uint32_t) delta;
    (void) ngx_atomic_fetch_add(&za->metrics.subscriptions, delta);
}


/* counts a new socket; NGX_DECLINED: the app is at max_connections */

ngx_int_t
ngx_http_pusher_zone_connect(ngx_http_pusher_conn_t *pc)
{
    ngx_atomic_uint_t            n;
    ngx_http_pusher_zone_app_t  *za;

    za = pc->app->zone;

    if (za == NULL
        || ngx_process_slot < 0 || ngx_process_slot >= NGX_MAX_PROCESSES)
    {
        return NGX_OK;
    }

    n = ngx_atomic_fetch_add(&za->connections, 1);

    if (pc->app->max_connections && n >= pc->app->max_connections) {
        (void) ngx_atomic_fetch_add(&za->connections, -1);
        return NGX_DECLINED;
    }

    za->per_slot[ngx_process_slot]++;
    pc->counted = 1;

    (void) ngx_atomic_fetch_add(&za->metrics.opened, 1);

    return NGX_OK;
}


/* code: the close code the socket ends with, 1006 if none was sent */

void
ngx_http_pusher_zone_disconnect(ngx_http_pusher_conn_t *pc, ngx_uint_t code)
{
    ngx_uint_t                   i;
    ngx_http_pusher_zone_app_t  *za;

    if (!pc->counted) {
        return;
    }

    pc->counted = 0;
    za = pc->app->zone;

    za->per_slot[ngx_process_slot]--;
    (void) ngx_atomic_fetch_add(&za->connections, -1);

    i = ngx_http_pusher_close_code_index(code);
    (void) ngx_atomic_fetch_add(&za->metrics.closes[i], 1);
    (void) ngx_atomic_fetch_add(&za->metrics.closed, 1);
}


/*
 * The worker is shutting down because a newer configuration took over
 * (a reload), not because nginx stops: it keeps serving the sockets the
 * new configuration left alone until they close, worker_shutdown_timeout,
 * or nginx stops.  A worker of the newest configuration that shuts down
 * means nginx stops (or its binary is upgraded): it says so in the zone,
 * and the workers of older configurations close what they kept.
 */

ngx_uint_t
ngx_http_pusher_draining(void)
{
    ngx_http_pusher_zone_t       *zone;
    ngx_http_pusher_main_conf_t  *pmcf;

    if (!ngx_exiting || ngx_terminate) {
        return 0;
    }

    pmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_pusher_module);

    if (pmcf == NULL || pmcf->zone == NULL) {
        return 0;
    }

    zone = pmcf->zone;

    if (zone->generation == pmcf->generation) {
        zone->stopping = pmcf->generation;
        return 0;
    }

    return zone->stopping != zone->generation;
}


/* a socket of an app the newer configuration has, with the same settings */

ngx_uint_t
ngx_http_pusher_keep_on_reload(ngx_http_pusher_conn_t *pc)
{
    ngx_http_pusher_app_t        *app;
    ngx_http_pusher_zone_app_t   *za;
    ngx_http_pusher_main_conf_t  *pmcf;

    app = pc->app;

    if (app == NULL || app->zone == NULL || !ngx_http_pusher_draining()) {
        return 0;
    }

    pmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_pusher_module);
    za = app->zone;

    return za->generation == pmcf->zone->generation
           && za->digest == app->digest
           && za->id_len == app->id.len
           && ngx_strncmp(za->id, app->id.data, app->id.len) == 0;
}
