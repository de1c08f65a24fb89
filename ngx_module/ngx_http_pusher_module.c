
/*
 * Copyright (C) ngx-pusher authors
 */


#include "ngx_http_pusher_module.h"
#include "pusher_redis_url.h"


static void *ngx_http_pusher_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_pusher_init_main_conf(ngx_conf_t *cf, void *conf);
static char *ngx_http_pusher(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_http_pusher_cluster(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_pusher_app(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_pusher_app_directive(ngx_conf_t *cf, ngx_command_t *dummy,
    void *conf);
static char *ngx_http_pusher_allowed_origins(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_pusher_rate_limit(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_pusher_webhook(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_pusher_check_limit(ngx_conf_t *cf, void *post,
    void *data);
static char *ngx_http_pusher_check_cache_ttl(ngx_conf_t *cf, void *post,
    void *data);
static char *ngx_http_pusher_check_vacated_delay(ngx_conf_t *cf, void *post,
    void *data);
static ngx_int_t ngx_http_pusher_check_apps(ngx_conf_t *cf,
    ngx_http_pusher_main_conf_t *pmcf);
static char *ngx_http_pusher_coalesce(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static void ngx_http_pusher_app_digest(ngx_http_pusher_app_t *app);
static ngx_int_t ngx_http_pusher_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_pusher_init_process(ngx_cycle_t *cycle);
static void ngx_http_pusher_exit_process(ngx_cycle_t *cycle);


ngx_uint_t  ngx_http_pusher_debug_on;


/* the bounds of pusher_app.h, which the broker applies as well */

static ngx_conf_post_t  ngx_http_pusher_limit_post = {
    ngx_http_pusher_check_limit
};

static ngx_conf_post_t  ngx_http_pusher_cache_ttl_post = {
    ngx_http_pusher_check_cache_ttl
};

static ngx_conf_post_t  ngx_http_pusher_vacated_delay_post = {
    ngx_http_pusher_check_vacated_delay
};


static ngx_conf_enum_t  ngx_http_pusher_client_events[] = {
    { ngx_string("none"), NGX_HTTP_PUSHER_CLIENT_EVENTS_NONE },
    { ngx_string("members"), NGX_HTTP_PUSHER_CLIENT_EVENTS_MEMBERS },
    { ngx_string("all"), NGX_HTTP_PUSHER_CLIENT_EVENTS_ALL },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_pusher_commands[] = {

    { ngx_string("pusher"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_pusher,
      0,
      0,
      NULL },

    { ngx_string("pusher_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_pusher_metrics,
      0,
      0,
      NULL },

    { ngx_string("pusher_broker"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pusher_main_conf_t, broker),
      NULL },

    { ngx_string("pusher_debug"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_pusher_main_conf_t, debug),
      NULL },

    { ngx_string("pusher_cluster"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE123,
      ngx_http_pusher_cluster,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("pusher_app"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_BLOCK|NGX_CONF_TAKE1,
      ngx_http_pusher_app,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


/*
 * The directives inside "pusher_app id { ... }".  They are dispatched by
 * ngx_http_pusher_app_directive() with the app as conf, so the stock slot
 * handlers work on ngx_http_pusher_app_t fields.
 */

static ngx_command_t  ngx_http_pusher_app_commands[] = {

    { ngx_string("key"),
      NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      0,
      offsetof(ngx_http_pusher_app_t, key),
      NULL },

    { ngx_string("secret"),
      NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      0,
      offsetof(ngx_http_pusher_app_t, secret),
      NULL },

    { ngx_string("activity_timeout"),
      NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      0,
      offsetof(ngx_http_pusher_app_t, activity_timeout),
      NULL },

    { ngx_string("ping_interval"),
      NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      0,
      offsetof(ngx_http_pusher_app_t, ping_interval),
      NULL },

    { ngx_string("pong_timeout"),
      NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      0,
      offsetof(ngx_http_pusher_app_t, pong_timeout),
      NULL },

    { ngx_string("max_message_size"),
      NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      0,
      offsetof(ngx_http_pusher_app_t, max_message_size),
      NULL },

    { ngx_string("client_events"),
      NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      0,
      offsetof(ngx_http_pusher_app_t, client_events),
      &ngx_http_pusher_client_events },

    { ngx_string("client_event_rate"),
      NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      0,
      offsetof(ngx_http_pusher_app_t, client_event_rate),
      NULL },

    { ngx_string("rate_limit"),
      NGX_CONF_TAKE123,
      ngx_http_pusher_rate_limit,
      0,
      0,
      NULL },

    { ngx_string("presence_max_members"),
      NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      0,
      offsetof(ngx_http_pusher_app_t, presence_max_members),
      NULL },

    { ngx_string("presence_max_user_info"),
      NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      0,
      offsetof(ngx_http_pusher_app_t, presence_max_user_info),
      NULL },

    { ngx_string("signin_timeout"),
      NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      0,
      offsetof(ngx_http_pusher_app_t, signin_timeout),
      NULL },

    { ngx_string("cache_ttl"),
      NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      0,
      offsetof(ngx_http_pusher_app_t, cache_ttl),
      &ngx_http_pusher_cache_ttl_post },

    { ngx_string("subscription_count"),
      NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      0,
      offsetof(ngx_http_pusher_app_t, subscription_count),
      NULL },

    { ngx_string("enabled"),
      NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      0,
      offsetof(ngx_http_pusher_app_t, enabled),
      NULL },

    { ngx_string("max_connections"),
      NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      0,
      offsetof(ngx_http_pusher_app_t, max_connections),
      NULL },

    { ngx_string("allowed_origins"),
      NGX_CONF_1MORE,
      ngx_http_pusher_allowed_origins,
      0,
      0,
      NULL },

    { ngx_string("max_event_data"),
      NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      0,
      offsetof(ngx_http_pusher_app_t, max_event_data),
      &ngx_http_pusher_limit_post },

    { ngx_string("max_event_channels"),
      NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      0,
      offsetof(ngx_http_pusher_app_t, max_event_channels),
      &ngx_http_pusher_limit_post },

    { ngx_string("max_event_name"),
      NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      0,
      offsetof(ngx_http_pusher_app_t, max_event_name),
      &ngx_http_pusher_limit_post },

    { ngx_string("max_batch_events"),
      NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      0,
      offsetof(ngx_http_pusher_app_t, max_batch_events),
      &ngx_http_pusher_limit_post },

    { ngx_string("max_request_size"),
      NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      0,
      offsetof(ngx_http_pusher_app_t, max_request_size),
      &ngx_http_pusher_limit_post },

    { ngx_string("webhook"),
      NGX_CONF_1MORE,
      ngx_http_pusher_webhook,
      0,
      0,
      NULL },

    { ngx_string("webhook_vacated_delay"),
      NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      0,
      offsetof(ngx_http_pusher_app_t, webhook_vacated_delay),
      &ngx_http_pusher_vacated_delay_post },

    { ngx_string("coalesce"),
      NGX_CONF_TAKE23,
      ngx_http_pusher_coalesce,
      0,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_pusher_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_http_pusher_create_main_conf,      /* create main configuration */
    ngx_http_pusher_init_main_conf,        /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_pusher_module = {
    NGX_MODULE_V1,
    &ngx_http_pusher_module_ctx,           /* module context */
    ngx_http_pusher_commands,              /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_pusher_init_module,           /* init module */
    ngx_http_pusher_init_process,          /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_pusher_exit_process,          /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_uint_t  ngx_http_pusher_argument_number[] = {
    NGX_CONF_NOARGS,
    NGX_CONF_TAKE1,
    NGX_CONF_TAKE2,
    NGX_CONF_TAKE3,
    NGX_CONF_TAKE4,
    NGX_CONF_TAKE5,
    NGX_CONF_TAKE6,
    NGX_CONF_TAKE7
};


static void *
ngx_http_pusher_create_main_conf(ngx_conf_t *cf)
{
    ngx_time_t                   *tp;
    ngx_http_pusher_main_conf_t  *pmcf;

    pmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_pusher_main_conf_t));
    if (pmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     pmcf->broker = { 0, NULL };
     */

    if (ngx_array_init(&pmcf->apps, cf->pool, 2,
                       sizeof(ngx_http_pusher_app_t))
        != NGX_OK)
    {
        return NULL;
    }

    pmcf->debug = NGX_CONF_UNSET;

    /* the broker keeps the apps of the newest configuration */
    tp = ngx_timeofday();
    pmcf->conf_time = (uint64_t) tp->sec * 1000 + tp->msec;

    return pmcf;
}


static char *
ngx_http_pusher_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_pusher_main_conf_t *pmcf = conf;

    ngx_uint_t              i;
    ngx_http_pusher_app_t  *app;
    char                    why[256];

    if (pmcf->broker.data == NULL) {
        ngx_str_set(&pmcf->broker, NGX_HTTP_PUSHER_DEFAULT_BROKER);
    }

    ngx_conf_init_value(pmcf->debug, 0);

    if (pmcf->cluster_url.len && pmcf->cluster_node.len == 0) {
        /* the host name by default */
        pmcf->cluster_node = cf->cycle->hostname;

        if (pusher_cluster_node_check((char *) pmcf->cluster_node.data,
                                      pmcf->cluster_node.len, why,
                                      sizeof(why))
            != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "pusher_cluster: the host name \"%V\" is no "
                               "node name (%s): give one with node=",
                               &pmcf->cluster_node, why);
            return NGX_CONF_ERROR;
        }
    }

    if (pmcf->broker.len >= sizeof(((struct sockaddr_un *) 0)->sun_path)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pusher_broker path \"%V\" is too long",
                           &pmcf->broker);
        return NGX_CONF_ERROR;
    }

    app = pmcf->apps.elts;

    for (i = 0; i < pmcf->apps.nelts; i++) {
        ngx_conf_init_value(app[i].activity_timeout,
                            NGX_HTTP_PUSHER_ACTIVITY_TIMEOUT);
        ngx_conf_init_msec_value(app[i].ping_interval,
                                 NGX_HTTP_PUSHER_PING_INTERVAL);
        ngx_conf_init_msec_value(app[i].pong_timeout,
                                 NGX_HTTP_PUSHER_PONG_TIMEOUT);
        ngx_conf_init_size_value(app[i].max_message_size,
                                 PUSHER_WS_DEFAULT_MAX_MESSAGE);
        ngx_conf_init_uint_value(app[i].client_events,
                                 NGX_HTTP_PUSHER_CLIENT_EVENTS_MEMBERS);
        ngx_conf_init_uint_value(app[i].client_event_rate,
                                 NGX_HTTP_PUSHER_CLIENT_EVENT_RATE);
        ngx_conf_init_msec_value(app[i].rate_limit_decay, 0);
        ngx_conf_init_uint_value(app[i].presence_max_members,
                                 NGX_HTTP_PUSHER_PRESENCE_MEMBERS);
        ngx_conf_init_size_value(app[i].presence_max_user_info,
                                 NGX_HTTP_PUSHER_PRESENCE_INFO);
        ngx_conf_init_msec_value(app[i].signin_timeout, 0);
        ngx_conf_init_value(app[i].cache_ttl, NGX_HTTP_PUSHER_CACHE_TTL);
        ngx_conf_init_value(app[i].subscription_count, 0);
        ngx_conf_init_value(app[i].enabled, 1);
        ngx_conf_init_uint_value(app[i].max_connections, 0);
        ngx_conf_init_size_value(app[i].max_event_data,
                                 NGX_HTTP_PUSHER_MAX_EVENT_DATA);
        ngx_conf_init_uint_value(app[i].max_event_channels,
                                 NGX_HTTP_PUSHER_MAX_EVENT_CHANNELS);
        ngx_conf_init_size_value(app[i].max_event_name,
                                 NGX_HTTP_PUSHER_MAX_EVENT_NAME);
        ngx_conf_init_uint_value(app[i].max_batch_events,
                                 NGX_HTTP_PUSHER_MAX_BATCH_EVENTS);
        ngx_conf_init_size_value(app[i].max_request_size,
                                 NGX_HTTP_PUSHER_MAX_REQUEST_SIZE);
        ngx_conf_init_msec_value(app[i].webhook_vacated_delay, 0);

        if (app[i].max_event_data == 0 || app[i].max_event_channels == 0
            || app[i].max_event_name == 0 || app[i].max_batch_events == 0
            || app[i].max_request_size == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "the \"max_event_*\", \"max_batch_events\" "
                               "and \"max_request_size\" limits of pusher "
                               "app \"%V\" must not be 0", &app[i].id);
            return NGX_CONF_ERROR;
        }

        if (app[i].cache_ttl < 1) {
            app[i].cache_ttl = 1;
        }

        /* pusher-js needs a non-zero activity_timeout in the handshake */
        if (app[i].activity_timeout < 1) {
            app[i].activity_timeout = 1;
        }

        ngx_http_pusher_app_digest(&app[i]);
    }

    if (ngx_http_pusher_check_apps(cf, pmcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (pmcf->apps.nelts && ngx_http_pusher_zone_add(cf, pmcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_pusher(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler != NULL) {
        return "is duplicate";
    }

    clcf->handler = ngx_http_pusher_handler;

    return NGX_CONF_OK;
}


/*
 * pusher_cluster URL [prefix=P] [node=N]: the Redis of the hosts that
 * form one cluster (docs/cluster.md).  The URL, prefix and node are
 * checked here by the rules the broker applies (pusher_redis_url.h); an
 * error never quotes the URL, which may hold a password.
 */

static char *
ngx_http_pusher_cluster(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_pusher_main_conf_t *pmcf = conf;

    char                *why;
    ngx_str_t           *value, *dst, name;
    ngx_uint_t           i, seen_prefix, seen_node;
    pusher_redis_url_t  *url;

    if (pmcf->cluster_url.len) {
        return "is duplicate";
    }

    value = cf->args->elts;

    why = ngx_pnalloc(cf->temp_pool, 256);
    url = ngx_palloc(cf->temp_pool, sizeof(pusher_redis_url_t));
    if (why == NULL || url == NULL) {
        return NGX_CONF_ERROR;
    }

    if (pusher_redis_url_parse(url, (char *) value[1].data, value[1].len,
                               why, 256)
        != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pusher_cluster: invalid Redis URL: %s", why);
        return NGX_CONF_ERROR;
    }

    pmcf->cluster_url = value[1];
    ngx_str_set(&pmcf->cluster_prefix, PUSHER_CLUSTER_DEFAULT_PREFIX);
    seen_prefix = 0;
    seen_node = 0;

    for (i = 2; i < cf->args->nelts; i++) {

        if (value[i].len >= 7
            && ngx_strncmp(value[i].data, "prefix=", 7) == 0)
        {
            if (seen_prefix++) {
                return "has prefix= twice";
            }

            dst = &pmcf->cluster_prefix;
            name.data = value[i].data + 7;
            name.len = value[i].len - 7;

            if (pusher_cluster_prefix_check((char *) name.data, name.len, why,
                                            256)
                != 0)
            {
                goto invalid;
            }

        } else if (value[i].len >= 5
                   && ngx_strncmp(value[i].data, "node=", 5) == 0)
        {
            if (seen_node++) {
                return "has node= twice";
            }

            dst = &pmcf->cluster_node;
            name.data = value[i].data + 5;
            name.len = value[i].len - 5;

            if (pusher_cluster_node_check((char *) name.data, name.len, why,
                                          256)
                != 0)
            {
                goto invalid;
            }

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "pusher_cluster: unknown parameter \"%V\" "
                               "(prefix= or node=)", &value[i]);
            return NGX_CONF_ERROR;
        }

        *dst = name;
    }

    (void) cmd;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "pusher_cluster: invalid %s",
                       why);
    return NGX_CONF_ERROR;
}


static char *
ngx_http_pusher_app(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_pusher_main_conf_t *pmcf = conf;

    char                   *rv;
    ngx_str_t              *value;
    ngx_uint_t              i;
    ngx_conf_t              save;
    ngx_http_pusher_app_t  *app, *apps;

    value = cf->args->elts;

    if (value[1].len == 0 || value[1].len > PUSHER_APP_ID_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid pusher app id \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    apps = pmcf->apps.elts;

    for (i = 0; i < pmcf->apps.nelts; i++) {
        if (apps[i].id.len == value[1].len
            && ngx_strncmp(apps[i].id.data, value[1].data, value[1].len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate pusher app \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    app = ngx_array_push(&pmcf->apps);
    if (app == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(app, sizeof(ngx_http_pusher_app_t));

    app->id = value[1];
    app->activity_timeout = NGX_CONF_UNSET;
    app->ping_interval = NGX_CONF_UNSET_MSEC;
    app->pong_timeout = NGX_CONF_UNSET_MSEC;
    app->max_message_size = NGX_CONF_UNSET_SIZE;
    app->client_events = NGX_CONF_UNSET_UINT;
    app->client_event_rate = NGX_CONF_UNSET_UINT;
    app->rate_limit_decay = NGX_CONF_UNSET_MSEC;
    app->presence_max_members = NGX_CONF_UNSET_UINT;
    app->presence_max_user_info = NGX_CONF_UNSET_SIZE;
    app->signin_timeout = NGX_CONF_UNSET_MSEC;
    app->cache_ttl = NGX_CONF_UNSET;
    app->subscription_count = NGX_CONF_UNSET;
    app->enabled = NGX_CONF_UNSET;
    app->max_connections = NGX_CONF_UNSET_UINT;
    app->max_event_data = NGX_CONF_UNSET_SIZE;
    app->max_event_channels = NGX_CONF_UNSET_UINT;
    app->max_event_name = NGX_CONF_UNSET_SIZE;
    app->max_batch_events = NGX_CONF_UNSET_UINT;
    app->max_request_size = NGX_CONF_UNSET_SIZE;
    app->webhook_vacated_delay = NGX_CONF_UNSET_MSEC;

    save = *cf;
    cf->handler = ngx_http_pusher_app_directive;
    cf->handler_conf = (char *) app;

    rv = ngx_conf_parse(cf, NULL);

    *cf = save;

    if (rv != NGX_CONF_OK) {
        return rv;
    }

    if (app->key.data == NULL || app->secret.data == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pusher app \"%V\" needs \"key\" and \"secret\"",
                           &app->id);
        return NGX_CONF_ERROR;
    }

    if (app->key.len == 0 || app->secret.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "empty key or secret in pusher app \"%V\"",
                           &app->id);
        return NGX_CONF_ERROR;
    }

    apps = pmcf->apps.elts;

    for (i = 0; i + 1 < pmcf->apps.nelts; i++) {
        if (apps[i].key.len == app->key.len
            && ngx_strncmp(apps[i].key.data, app->key.data, app->key.len)
               == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "pusher apps \"%V\" and \"%V\" have the "
                               "same key", &apps[i].id, &app->id);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_pusher_app_directive(ngx_conf_t *cf, ngx_command_t *dummy,
    void *conf)
{
    char           *rv;
    ngx_str_t      *value;
    ngx_uint_t      argc;
    ngx_command_t  *cmd;

    value = cf->args->elts;
    argc = cf->args->nelts - 1;

    for (cmd = ngx_http_pusher_app_commands; cmd->name.len; cmd++) {

        if (cmd->name.len != value[0].len
            || ngx_strncmp(cmd->name.data, value[0].data, value[0].len) != 0)
        {
            continue;
        }

        if ((cmd->type & NGX_CONF_1MORE) ? argc < 1
            : (cmd->type & NGX_CONF_FLAG) ? argc != 1
            : argc >= NGX_CONF_MAX_ARGS
              || !(cmd->type & ngx_http_pusher_argument_number[argc]))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid number of arguments in \"%V\" "
                               "directive of pusher_app", &value[0]);
            return NGX_CONF_ERROR;
        }

        rv = cmd->set(cf, cmd, conf);

        if (rv == NGX_CONF_OK) {
            return NGX_CONF_OK;
        }

        if (rv != NGX_CONF_ERROR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%V\" directive %s",
                               &value[0], rv);
        }

        return NGX_CONF_ERROR;
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "unknown directive \"%V\" in pusher_app", &value[0]);

    return NGX_CONF_ERROR;
}


/*
 * allowed_origins pattern ... | none;
 *
 * Patterns are matched against the host of the Origin header, case
 * insensitively, '*' matching any run of characters ("*.example.com",
 * "*"); "none" admits clients that send no Origin (server SDKs, native
 * apps).  Without the directive any origin and no origin are admitted.
 */

static char *
ngx_http_pusher_allowed_origins(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_pusher_app_t *app = conf;

    ngx_str_t   *value, *p;
    ngx_uint_t   i;

    if (app->origins != NULL) {
        return "is duplicate";
    }

    app->origins = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                    sizeof(ngx_str_t));
    if (app->origins == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (value[i].len == 4 && ngx_strncmp(value[i].data, "none", 4) == 0) {
            app->no_origin = 1;
            continue;
        }

        if (value[i].len == 0
            || ngx_strlchr(value[i].data, value[i].data + value[i].len, '/')
            || ngx_strlchr(value[i].data, value[i].data + value[i].len, ':'))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid origin host pattern \"%V\": a host "
                               "such as \"app.example.com\" or "
                               "\"*.example.com\", without scheme or port",
                               &value[i]);
            return NGX_CONF_ERROR;
        }

        p = ngx_array_push(app->origins);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        *p = value[i];
        ngx_strlow(p->data, p->data, p->len);
    }

    return NGX_CONF_OK;
}


/*
 * rate_limit MAX_ATTEMPTS [DECAY] [terminate]: Reverb's message rate
 * limit.  At most MAX_ATTEMPTS messages per DECAY (default 60s) from one
 * socket, counted from the first message of a window; the others get
 * pusher:error 4301 "Rate limit exceeded" and are dropped, or with
 * "terminate" close the socket with 4301.
 */

static char *
ngx_http_pusher_rate_limit(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_pusher_app_t *app = conf;

    ngx_int_t    n;
    ngx_str_t   *value;
    ngx_msec_t   decay;
    ngx_uint_t   i;

    if (app->rate_limit_decay != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    value = cf->args->elts;

    n = ngx_atoi(value[1].data, value[1].len);
    if (n <= 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid number of attempts \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    app->rate_limit = (ngx_uint_t) n;
    app->rate_limit_decay = 60000;

    for (i = 2; i < cf->args->nelts; i++) {

        if (value[i].len == 9
            && ngx_strncmp(value[i].data, "terminate", 9) == 0)
        {
            app->rate_limit_terminate = 1;
            continue;
        }

        decay = ngx_parse_time(&value[i], 0);

        if (i != 2 || decay == (ngx_msec_t) NGX_ERROR || decay == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\": a time such as "
                               "\"60s\", or \"terminate\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        app->rate_limit_decay = decay;
    }

    return NGX_CONF_OK;
}


/* webhook URL [events=a,b] [prefix=STR] [suffix=STR] [header=Name:Value]... */

static char *
ngx_http_pusher_webhook(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_pusher_app_t *app = conf;

    u_char                     *p, *last, *comma;
    ngx_str_t                  *value, v;
    unsigned                    event;
    ngx_uint_t                  i;
    const char                 *why;
    pusher_url_t                url;
    ngx_keyval_t               *kv;
    ngx_http_pusher_webhook_t  *wh;

    if (app->webhooks == NULL) {
        app->webhooks = ngx_array_create(cf->pool, 2,
                                         sizeof(ngx_http_pusher_webhook_t));
        if (app->webhooks == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    wh = ngx_array_push(app->webhooks);
    if (wh == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(wh, sizeof(ngx_http_pusher_webhook_t));

    value = cf->args->elts;
    wh->url = value[1];
    wh->events = PUSHER_WEBHOOK_ALL;

    if (app->webhooks->nelts > PUSHER_APP_WEBHOOKS_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "more than %d webhooks in one pusher_app",
                           PUSHER_APP_WEBHOOKS_MAX);
        return NGX_CONF_ERROR;
    }

    if (pusher_url_parse((char *) wh->url.data, wh->url.len, &url, &why)
        != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid webhook URL \"%V\": %s", &wh->url, why);
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "events=", 7) == 0) {
            wh->events = 0;
            p = value[i].data + 7;
            last = value[i].data + value[i].len;

            while (p < last) {
                comma = ngx_strlchr(p, last, ',');
                if (comma == NULL) {
                    comma = last;
                }

                v.data = p;
                v.len = comma - p;

                event = pusher_webhook_event((char *) v.data, v.len);

                if (event == 0) {
                    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                       "unknown webhook event \"%V\"", &v);
                    return NGX_CONF_ERROR;
                }

                wh->events |= event;
                p = comma + 1;
            }

            if (wh->events == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "empty \"events=\" in webhook");
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "prefix=", 7) == 0) {
            wh->prefix.data = value[i].data + 7;
            wh->prefix.len = value[i].len - 7;
            continue;
        }

        if (ngx_strncmp(value[i].data, "suffix=", 7) == 0) {
            wh->suffix.data = value[i].data + 7;
            wh->suffix.len = value[i].len - 7;
            continue;
        }

        if (ngx_strncmp(value[i].data, "header=", 7) == 0) {
            p = value[i].data + 7;
            last = value[i].data + value[i].len;
            comma = ngx_strlchr(p, last, ':');

            if (comma == NULL
                || !pusher_header_name_valid((char *) p, comma - p))
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid webhook header \"%V\": "
                                   "\"header=Name:Value\" with a token as "
                                   "the name expected", &value[i]);
                return NGX_CONF_ERROR;
            }

            if (wh->headers && wh->headers->nelts
                               >= PUSHER_APP_WEBHOOK_HEADERS_MAX)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "more than %d \"header=\" in a webhook",
                                   PUSHER_APP_WEBHOOK_HEADERS_MAX);
                return NGX_CONF_ERROR;
            }

            if (wh->headers == NULL) {
                wh->headers = ngx_array_create(cf->pool, 2,
                                               sizeof(ngx_keyval_t));
                if (wh->headers == NULL) {
                    return NGX_CONF_ERROR;
                }
            }

            kv = ngx_array_push(wh->headers);
            if (kv == NULL) {
                return NGX_CONF_ERROR;
            }

            /* NUL-terminated, as every other string of the webhook */

            kv->key.len = comma - p;
            kv->key.data = ngx_pnalloc(cf->pool, kv->key.len + 1);
            if (kv->key.data == NULL) {
                return NGX_CONF_ERROR;
            }

            ngx_memcpy(kv->key.data, p, kv->key.len);
            kv->key.data[kv->key.len] = '\0';

            for (p = comma + 1; p < last && *p == ' '; p++) { /* void */ }

            kv->value.data = p;
            kv->value.len = last - p;

            if (!pusher_header_value_valid((char *) p, last - p)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid webhook header \"%V\": a control "
                                   "character, or longer than %d bytes",
                                   &value[i], PUSHER_APP_WEBHOOK_TEXT_MAX);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid webhook parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * max_event_data, max_event_channels, max_event_name, max_batch_events and
 * max_request_size: 1 .. PUSHER_APP_LIMIT_MAX.  The slots store a size_t
 * or an ngx_uint_t, both as wide as a pointer.
 */

static char *
ngx_http_pusher_check_limit(ngx_conf_t *cf, void *post, void *data)
{
    size_t  *value = data;

    if (*value < 1 || *value > PUSHER_APP_LIMIT_MAX) {
        return "must be 1 .. 1073741824 (1024m)";
    }

    return NGX_CONF_OK;
}


/* cache_ttl: seconds, at most PUSHER_APP_LIMIT_MAX (0 is taken as 1) */

static char *
ngx_http_pusher_check_cache_ttl(ngx_conf_t *cf, void *post, void *data)
{
    time_t  *value = data;

    if (*value > PUSHER_APP_LIMIT_MAX) {
        return "must be at most 1073741824 seconds (34y)";
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_pusher_check_vacated_delay(ngx_conf_t *cf, void *post, void *data)
{
    ngx_msec_t  *value = data;

    if (*value > PUSHER_APP_VACATED_DELAY_MAX) {
        return "must be at most 1h";
    }

    return NGX_CONF_OK;
}


/*
 * The app table as the workers will send it, checked by the broker's own
 * rules (pusher_app_check()): the HELLO text is built, decoded by the
 * broker's decoder and every app checked, so that nothing nginx -t
 * accepts is refused by the broker.
 */

static ngx_int_t
ngx_http_pusher_check_apps(ngx_conf_t *cf, ngx_http_pusher_main_conf_t *pmcf)
{
    char                *text;
    size_t               len, i;
    ngx_int_t            rc;
    pusher_ctl_hello_t   hello;
    char                 why[PUSHER_CTL_ERROR_SIZE];

    text = ngx_http_pusher_hello_encode(pmcf, cf->log, &len);
    if (text == NULL) {
        return NGX_ERROR;
    }

    rc = NGX_OK;

    if (pusher_ctl_hello_decode(&hello, text, len) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "the pusher apps cannot be sent to the broker: %s",
                           hello.error);
        rc = NGX_ERROR;

    } else {
        for (i = 0; i < hello.napps; i++) {
            if (pusher_app_check(&hello.apps[i], why, sizeof(why)) != 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "pusher app \"%*s\": %s",
                                   hello.apps[i].id.len,
                                   hello.apps[i].id.data, why);
                rc = NGX_ERROR;
                break;
            }
        }
    }

    pusher_ctl_hello_free(&hello);
    pusher_ctl_text_free(text);

    return rc;
}


/*
 * coalesce PATTERN WINDOW [events=a,b]: the broker delivers the first
 * event of a channel and name at once and holds the ones that follow
 * within WINDOW, delivering only the latest when it ends (docs/protocol.md,
 * "Coalescing").  '*' in PATTERN stands for any run of characters.
 */

static char *
ngx_http_pusher_coalesce(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_pusher_app_t *app = conf;

    u_char                      *p, *last, *comma;
    ngx_str_t                   *value, *name;
    ngx_msec_t                   window;
    ngx_http_pusher_coalesce_t  *c;

    if (app->coalesce == NULL) {
        app->coalesce = ngx_array_create(cf->pool, 2,
                                         sizeof(ngx_http_pusher_coalesce_t));
        if (app->coalesce == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    if (app->coalesce->nelts >= PUSHER_COALESCE_RULES_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "more than %d \"coalesce\" lines in pusher app "
                           "\"%V\"", PUSHER_COALESCE_RULES_MAX, &app->id);
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    if (!pusher_coalesce_pattern_valid((char *) value[1].data, value[1].len)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid coalesce pattern \"%V\": channel name "
                           "characters and \"*\", at most %d bytes",
                           &value[1], PUSHER_CHANNEL_MAX);
        return NGX_CONF_ERROR;
    }

    window = ngx_parse_time(&value[2], 0);

    if (window == (ngx_msec_t) NGX_ERROR
        || window < PUSHER_COALESCE_WINDOW_MIN
        || window > PUSHER_COALESCE_WINDOW_MAX)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid coalesce window \"%V\": a time from "
                           "1ms to 60s, such as \"500ms\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    c = ngx_array_push(app->coalesce);
    if (c == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(c, sizeof(ngx_http_pusher_coalesce_t));

    c->pattern = value[1];
    c->window = window;

    if (cf->args->nelts == 3) {
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(value[3].data, "events=", 7) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid coalesce parameter \"%V\": "
                           "\"events=name,...\" expected", &value[3]);
        return NGX_CONF_ERROR;
    }

    c->events = ngx_array_create(cf->pool, 4, sizeof(ngx_str_t));
    if (c->events == NULL) {
        return NGX_CONF_ERROR;
    }

    p = value[3].data + 7;
    last = value[3].data + value[3].len;

    for ( ;; ) {
        comma = ngx_strlchr(p, last, ',');
        if (comma == NULL) {
            comma = last;
        }

        if (!pusher_coalesce_event_valid((char *) p, comma - p)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid event name in \"%V\": printable "
                               "characters, at most %d bytes",
                               &value[3], PUSHER_EVENT_NAME_MAX);
            return NGX_CONF_ERROR;
        }

        if (c->events->nelts >= PUSHER_COALESCE_EVENTS_MAX) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "more than %d event names in \"%V\"",
                               PUSHER_COALESCE_EVENTS_MAX, &value[3]);
            return NGX_CONF_ERROR;
        }

        name = ngx_array_push(c->events);
        if (name == NULL) {
            return NGX_CONF_ERROR;
        }

        name->data = p;
        name->len = comma - p;

        if (comma == last) {
            break;
        }

        p = comma + 1;
    }

    return NGX_CONF_OK;
}


/*
 * The settings an open socket depends on.  A reload that leaves them
 * alone keeps the app's sockets open in the old workers; limits checked
 * only on connect and the broker's settings do not count.
 */

static void
ngx_http_pusher_app_digest(ngx_http_pusher_app_t *app)
{
    uint32_t    crc;
    ngx_uint_t  v[14];

    v[0] = app->activity_timeout;
    v[1] = app->ping_interval;
    v[2] = app->pong_timeout;
    v[3] = app->max_message_size;
    v[4] = app->client_events;
    v[5] = app->client_event_rate;
    v[6] = app->presence_max_members;
    v[7] = app->presence_max_user_info;
    v[8] = app->signin_timeout;
    v[9] = app->enabled;
    v[10] = app->key.len;
    v[11] = app->rate_limit;
    v[12] = app->rate_limit_decay;
    v[13] = app->rate_limit_terminate;

    ngx_crc32_init(crc);
    ngx_crc32_update(&crc, (u_char *) v, sizeof(v));
    ngx_crc32_update(&crc, app->key.data, app->key.len);
    ngx_crc32_update(&crc, app->secret.data, app->secret.len);
    ngx_crc32_final(crc);

    app->digest = crc;
}


ngx_http_pusher_app_t *
ngx_http_pusher_app_by_key(ngx_http_pusher_main_conf_t *pmcf, ngx_str_t *key)
{
    ngx_uint_t              i;
    ngx_http_pusher_app_t  *app;

    app = pmcf->apps.elts;

    for (i = 0; i < pmcf->apps.nelts; i++) {
        if (app[i].key.len == key->len
            && ngx_strncmp(app[i].key.data, key->data, key->len) == 0)
        {
            return &app[i];
        }
    }

    return NULL;
}


ngx_http_pusher_app_t *
ngx_http_pusher_app_by_id(ngx_http_pusher_main_conf_t *pmcf, u_char *id,
    size_t len)
{
    ngx_uint_t              i;
    ngx_http_pusher_app_t  *app;

    app = pmcf->apps.elts;

    for (i = 0; i < pmcf->apps.nelts; i++) {
        if (app[i].id.len == len && ngx_strncmp(app[i].id.data, id, len) == 0)
        {
            return &app[i];
        }
    }

    return NULL;
}


static ngx_int_t
ngx_http_pusher_init_module(ngx_cycle_t *cycle)
{
    ngx_http_pusher_main_conf_t  *pmcf;

    pmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_pusher_module);

    if (pmcf != NULL && pmcf->zone != NULL) {
        ngx_http_pusher_apps_write(cycle, pmcf);
    }

    return ngx_http_pusher_zone_init_module(cycle);
}


static ngx_int_t
ngx_http_pusher_init_process(ngx_cycle_t *cycle)
{
    ngx_http_pusher_main_conf_t  *pmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    pmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_pusher_module);

    if (pmcf == NULL || pmcf->apps.nelts == 0) {
        return NGX_OK;
    }

    ngx_http_pusher_debug_on = pmcf->debug ? 1 : 0;

    if (ngx_http_pusher_session_init_worker(pmcf, cycle->log) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_pusher_ws_init_worker(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_pusher_channel_init_worker(pmcf);
    ngx_http_pusher_zone_init_worker(pmcf);

    if (ngx_http_pusher_ring_init_worker(cycle, pmcf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_pusher_link_init_worker(cycle, pmcf);
}


static void
ngx_http_pusher_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_pusher_link_exit_worker();
    ngx_http_pusher_ring_exit_worker();
    ngx_http_pusher_ws_exit_worker();
    ngx_http_pusher_zone_exit_worker(
        ngx_http_cycle_get_module_main_conf(cycle, ngx_http_pusher_module));
}


ngx_str_t
ngx_http_pusher_debug_text(u_char *buf, size_t size, const u_char *data,
    size_t len)
{
    size_t     n, cut;
    ngx_str_t  s;

    /* at most 200 bytes of input, each at most 6 escaped, and "..." */

    cut = pusher_utf8_prefix(data, len, ngx_min(200, (size - 3) / 6));

    n = pusher_json_escape(buf, data, cut);

    if (cut < len) {
        buf[n++] = '.';
        buf[n++] = '.';
        buf[n++] = '.';
    }

    s.data = buf;
    s.len = n;

    return s;
}
