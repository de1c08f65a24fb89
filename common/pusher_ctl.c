/*
 * ngx-pusher: the JSON payloads of the control connection, HELLO and
 * WELCOME (pusher_ctl.h), for the module and the broker.  No I/O.
 */

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "pusher_ctl.h"
#include "pusher_redis_url.h"


typedef enum {
    PUSHER_CTL_UINT = 0,
    PUSHER_CTL_BOOL
} pusher_ctl_kind_e;


/* the optional members of an app, in the order they are written */
typedef struct {
    const char         *name;
    unsigned            has;
    pusher_ctl_kind_e   kind;
    size_t              offset;             /* in pusher_ctl_app_t */
} pusher_ctl_member_t;


static int pusher_ctl_add_string(cJSON *obj, const char *name,
    const pusher_str_t *s);
static int pusher_ctl_add_pair(cJSON *obj, const pusher_str_t *name,
    const pusher_str_t *value);
static int pusher_ctl_add_cluster(cJSON *root,
    const pusher_ctl_hello_t *hello);
static int pusher_ctl_decode_cluster(pusher_ctl_hello_t *hello,
    const cJSON *cluster);
static int pusher_ctl_add_webhooks(cJSON *app, const pusher_ctl_app_t *a);
static int pusher_ctl_add_coalesce(cJSON *app, const pusher_ctl_app_t *a);
static cJSON *pusher_ctl_create_string(const pusher_str_t *s);
static int pusher_ctl_decode_coalesce(pusher_ctl_hello_t *hello,
    const cJSON *list, pusher_ctl_app_t *app);
static int pusher_ctl_uint(const cJSON *item, double max, uint64_t *out);
static int pusher_ctl_string(const cJSON *item, pusher_str_t *s);
static int pusher_ctl_decode_app(pusher_ctl_hello_t *hello,
    const cJSON *item, pusher_ctl_app_t *app);
static int pusher_ctl_decode_webhook(pusher_ctl_hello_t *hello,
    const cJSON *item, pusher_ctl_webhook_t *wh);
static int pusher_ctl_required(pusher_ctl_hello_t *hello, const cJSON *app,
    const char *name, pusher_str_t *s);
static int pusher_ctl_bad_app(pusher_ctl_hello_t *hello, const char *what);
static int pusher_ctl_bad_welcome(pusher_ctl_welcome_t *welcome,
    const char *what);
static char *pusher_ctl_print(cJSON *root, size_t *len);
static int pusher_ctl_add_uint(cJSON *object, const char *name, uint64_t v);


static const pusher_ctl_member_t  pusher_ctl_app_members[] = {
    { "cache_ttl", PUSHER_CTL_APP_CACHE_TTL, PUSHER_CTL_UINT,
      offsetof(pusher_ctl_app_t, cache_ttl) },
    { "subscription_count", PUSHER_CTL_APP_SUBSCRIPTION_COUNT,
      PUSHER_CTL_BOOL, offsetof(pusher_ctl_app_t, subscription_count) },
    { "max_event_data", PUSHER_CTL_APP_MAX_EVENT_DATA, PUSHER_CTL_UINT,
      offsetof(pusher_ctl_app_t, max_event_data) },
    { "max_channels", PUSHER_CTL_APP_MAX_CHANNELS, PUSHER_CTL_UINT,
      offsetof(pusher_ctl_app_t, max_channels) },
    { "max_event_name", PUSHER_CTL_APP_MAX_EVENT_NAME, PUSHER_CTL_UINT,
      offsetof(pusher_ctl_app_t, max_event_name) },
    { "max_batch", PUSHER_CTL_APP_MAX_BATCH, PUSHER_CTL_UINT,
      offsetof(pusher_ctl_app_t, max_batch) },
    { "max_request_size", PUSHER_CTL_APP_MAX_REQUEST_SIZE, PUSHER_CTL_UINT,
      offsetof(pusher_ctl_app_t, max_request_size) },
    { "webhook_vacated_delay", PUSHER_CTL_APP_WEBHOOK_VACATED_DELAY,
      PUSHER_CTL_UINT, offsetof(pusher_ctl_app_t, webhook_vacated_delay) }
};

#define PUSHER_CTL_APP_MEMBERS                                               \
    (sizeof(pusher_ctl_app_members) / sizeof(pusher_ctl_app_members[0]))


/* HELLO */
static const char  pusher_ctl_pid[] = "pid";
static const char  pusher_ctl_conf_time[] = "conf_time";
static const char  pusher_ctl_debug[] = "debug";
static const char  pusher_ctl_apps[] = "apps";
static const char  pusher_ctl_cluster[] = "cluster";
static const char  pusher_ctl_node[] = "node";
static const char  pusher_ctl_cluster_prefix[] = "prefix";
static const char  pusher_ctl_id[] = "id";
static const char  pusher_ctl_key[] = "key";
static const char  pusher_ctl_secret[] = "secret";
static const char  pusher_ctl_webhooks[] = "webhooks";
static const char  pusher_ctl_url[] = "url";
static const char  pusher_ctl_event_types[] = "event_types";
static const char  pusher_ctl_filter[] = "filter";
static const char  pusher_ctl_prefix[] = "channel_name_starts_with";
static const char  pusher_ctl_suffix[] = "channel_name_ends_with";
static const char  pusher_ctl_headers[] = "headers";
static const char  pusher_ctl_coalesce[] = "coalesce";
static const char  pusher_ctl_pattern[] = "pattern";
static const char  pusher_ctl_window[] = "window";
static const char  pusher_ctl_events[] = "events";

/* WELCOME */
static const char  pusher_ctl_shm[] = "shm";
static const char  pusher_ctl_generation[] = "generation";
static const char  pusher_ctl_slot[] = "slot";
static const char  pusher_ctl_size[] = "size";


char *
pusher_ctl_hello_encode(const pusher_ctl_hello_t *hello, size_t *len)
{
    int                         bad;
    char                       *text;
    cJSON                      *root, *apps, *app;
    size_t                      i, m;
    const uint64_t             *number;
    const pusher_ctl_app_t     *a;
    const pusher_ctl_member_t  *mb;

    root = cJSON_CreateObject();
    if (root == NULL) {
        return NULL;
    }

    apps = NULL;

    if (pusher_ctl_add_uint(root, pusher_ctl_pid, (uint64_t) hello->pid) != 0
        || pusher_ctl_add_uint(root, pusher_ctl_conf_time,
                               (uint64_t) hello->conf_time)
           != 0
        || (hello->debug
            && cJSON_AddTrueToObject(root, pusher_ctl_debug) == NULL)
        || (hello->cluster_url.len
            && pusher_ctl_add_cluster(root, hello) != 0)
        || (hello->apps != NULL
            && (apps = cJSON_AddArrayToObject(root, pusher_ctl_apps))
               == NULL))
    {
        goto failed;
    }

    for (i = 0; i < hello->napps; i++) {
        a = &hello->apps[i];

        app = cJSON_CreateObject();

        if (app == NULL || !cJSON_AddItemToArray(apps, app)) {
            cJSON_Delete(app);
            goto failed;
        }

        if (pusher_ctl_add_string(app, pusher_ctl_id, &a->id) != 0
            || pusher_ctl_add_string(app, pusher_ctl_key, &a->key) != 0
            || pusher_ctl_add_string(app, pusher_ctl_secret, &a->secret) != 0)
        {
            goto failed;
        }

        for (m = 0; m < PUSHER_CTL_APP_MEMBERS; m++) {
            mb = &pusher_ctl_app_members[m];

            if (!(a->has & mb->has)) {
                continue;
            }

            if (mb->kind == PUSHER_CTL_BOOL) {
                bad = cJSON_AddBoolToObject(app, mb->name,
                                            a->subscription_count ? 1 : 0)
                      == NULL;

            } else {
                number = (const uint64_t *) ((const char *) a + mb->offset);
                bad = pusher_ctl_add_uint(app, mb->name, *number) != 0;
            }

            if (bad) {
                goto failed;
            }
        }

        if (a->nwebhooks && pusher_ctl_add_webhooks(app, a) != 0) {
            goto failed;
        }

        if (a->ncoalesce && pusher_ctl_add_coalesce(app, a) != 0) {
            goto failed;
        }
    }

    text = pusher_ctl_print(root, len);
    cJSON_Delete(root);

    return text;

failed:

    cJSON_Delete(root);

    return NULL;
}


static int
pusher_ctl_add_cluster(cJSON *root, const pusher_ctl_hello_t *hello)
{
    cJSON  *cluster;

    cluster = cJSON_AddObjectToObject(root, pusher_ctl_cluster);

    if (cluster == NULL
        || pusher_ctl_add_string(cluster, pusher_ctl_url, &hello->cluster_url)
           != 0
        || pusher_ctl_add_string(cluster, pusher_ctl_cluster_prefix,
                                 &hello->cluster_prefix)
           != 0
        || pusher_ctl_add_string(cluster, pusher_ctl_node,
                                 &hello->cluster_node)
           != 0)
    {
        return -1;
    }

    return 0;
}


/*
 * "cluster": an object of three strings, each checked as nginx -t checks
 * the pusher_cluster directive; an error never quotes the URL (it may hold
 * a password)
 */

static int
pusher_ctl_decode_cluster(pusher_ctl_hello_t *hello, const cJSON *cluster)
{
    char                why[PUSHER_CTL_ERROR_SIZE - 32];
    pusher_redis_url_t  url;

    if (!cJSON_IsObject(cluster)
        || pusher_ctl_string(cJSON_GetObjectItemCaseSensitive(cluster,
                                                              pusher_ctl_url),
                             &hello->cluster_url)
           != 0
        || pusher_ctl_string(cJSON_GetObjectItemCaseSensitive(
                                 cluster, pusher_ctl_cluster_prefix),
                             &hello->cluster_prefix)
           != 0
        || pusher_ctl_string(cJSON_GetObjectItemCaseSensitive(cluster,
                                                              pusher_ctl_node),
                             &hello->cluster_node)
           != 0)
    {
        snprintf(hello->error, sizeof(hello->error),
                 "\"%s\" is not an object of strings \"%s\", \"%s\" and "
                 "\"%s\"", pusher_ctl_cluster, pusher_ctl_url,
                 pusher_ctl_cluster_prefix, pusher_ctl_node);
        return -1;
    }

    if (pusher_redis_url_parse(&url, hello->cluster_url.data,
                               hello->cluster_url.len, why, sizeof(why))
            != 0
        || pusher_cluster_prefix_check(hello->cluster_prefix.data,
                                       hello->cluster_prefix.len, why,
                                       sizeof(why))
           != 0
        || pusher_cluster_node_check(hello->cluster_node.data,
                                     hello->cluster_node.len, why,
                                     sizeof(why))
           != 0)
    {
        snprintf(hello->error, sizeof(hello->error), "\"%s\": %s",
                 pusher_ctl_cluster, why);
        return -1;
    }

    return 0;
}


static int
pusher_ctl_add_webhooks(cJSON *app, const pusher_ctl_app_t *a)
{
    cJSON                       *list, *item, *types, *filter, *headers;
    size_t                       i, k;
    unsigned                     bit;
    const pusher_ctl_kv_t       *kv;
    const pusher_ctl_webhook_t  *wh;

    list = cJSON_AddArrayToObject(app, pusher_ctl_webhooks);
    if (list == NULL) {
        return -1;
    }

    for (i = 0; i < a->nwebhooks; i++) {
        wh = &a->webhooks[i];

        item = cJSON_CreateObject();

        if (item == NULL || !cJSON_AddItemToArray(list, item)) {
            cJSON_Delete(item);
            return -1;
        }

        if (pusher_ctl_add_string(item, pusher_ctl_url, &wh->url) != 0) {
            return -1;
        }

        types = cJSON_AddArrayToObject(item, pusher_ctl_event_types);
        if (types == NULL) {
            return -1;
        }

        for (bit = 0; bit < PUSHER_WEBHOOK_TYPES; bit++) {
            if ((wh->events & (1u << bit))
                && !cJSON_AddItemToArray(types, cJSON_CreateString(
                       pusher_webhook_event_name(bit))))
            {
                return -1;
            }
        }

        filter = cJSON_AddObjectToObject(item, pusher_ctl_filter);

        if (filter == NULL
            || (wh->prefix.len
                && pusher_ctl_add_string(filter, pusher_ctl_prefix,
                                         &wh->prefix)
                   != 0)
            || (wh->suffix.len
                && pusher_ctl_add_string(filter, pusher_ctl_suffix,
                                         &wh->suffix)
                   != 0))
        {
            return -1;
        }

        headers = cJSON_AddObjectToObject(item, pusher_ctl_headers);
        if (headers == NULL) {
            return -1;
        }

        for (k = 0; k < wh->nheaders; k++) {
            kv = &wh->headers[k];

            if (pusher_ctl_add_pair(headers, &kv->name, &kv->value) != 0) {
                return -1;
            }
        }
    }

    return 0;
}


static int
pusher_ctl_add_coalesce(cJSON *app, const pusher_ctl_app_t *a)
{
    cJSON                        *list, *item, *events, *name;
    size_t                        i, k;
    const pusher_ctl_coalesce_t  *c;

    list = cJSON_AddArrayToObject(app, pusher_ctl_coalesce);
    if (list == NULL) {
        return -1;
    }

    for (i = 0; i < a->ncoalesce; i++) {
        c = &a->coalesce[i];

        item = cJSON_CreateObject();

        if (item == NULL || !cJSON_AddItemToArray(list, item)) {
            cJSON_Delete(item);
            return -1;
        }

        if (pusher_ctl_add_string(item, pusher_ctl_pattern, &c->pattern) != 0
            || pusher_ctl_add_uint(item, pusher_ctl_window, c->window) != 0)
        {
            return -1;
        }

        if (c->nevents == 0) {
            continue;
        }

        events = cJSON_AddArrayToObject(item, pusher_ctl_events);
        if (events == NULL) {
            return -1;
        }

        for (k = 0; k < c->nevents; k++) {
            name = pusher_ctl_create_string(&c->events[k]);

            if (name == NULL || !cJSON_AddItemToArray(events, name)) {
                cJSON_Delete(name);
                return -1;
            }
        }
    }

    return 0;
}


/* a JSON string of s (which need not be NUL-terminated) */

static cJSON *
pusher_ctl_create_string(const pusher_str_t *s)
{
    char   *copy;
    cJSON  *item;

    copy = malloc(s->len + 1);
    if (copy == NULL) {
        return NULL;
    }

    if (s->len) {
        memcpy(copy, s->data, s->len);
    }

    copy[s->len] = '\0';

    item = cJSON_CreateString(copy);
    free(copy);

    return item;
}


/* adds name: the JSON string of s (which need not be NUL-terminated) */

static int
pusher_ctl_add_string(cJSON *obj, const char *name, const pusher_str_t *s)
{
    char   *copy;
    cJSON  *item;

    copy = malloc(s->len + 1);
    if (copy == NULL) {
        return -1;
    }

    if (s->len) {
        memcpy(copy, s->data, s->len);
    }

    copy[s->len] = '\0';

    item = cJSON_AddStringToObject(obj, name, copy);
    free(copy);

    return item ? 0 : -1;
}


/* adds the member name: value, neither of which need be NUL-terminated */

static int
pusher_ctl_add_pair(cJSON *obj, const pusher_str_t *name,
    const pusher_str_t *value)
{
    char   *copy;
    cJSON  *item;

    copy = malloc(name->len + value->len + 2);
    if (copy == NULL) {
        return -1;
    }

    if (name->len) {
        memcpy(copy, name->data, name->len);
    }

    copy[name->len] = '\0';

    if (value->len) {
        memcpy(copy + name->len + 1, value->data, value->len);
    }

    copy[name->len + 1 + value->len] = '\0';

    item = cJSON_AddStringToObject(obj, copy, copy + name->len + 1);
    free(copy);

    return item ? 0 : -1;
}


static char *
pusher_ctl_print(cJSON *root, size_t *len)
{
    char  *text;

    text = cJSON_PrintUnformatted(root);

    if (text && len) {
        *len = strlen(text);
    }

    return text;
}


int
pusher_ctl_hello_decode(pusher_ctl_hello_t *hello, const char *json,
    size_t len)
{
    size_t        i;
    uint64_t      v;
    cJSON        *root;
    const cJSON  *apps, *item;

    memset(hello, 0, sizeof(pusher_ctl_hello_t));

    root = cJSON_ParseWithLength(json, len);
    hello->json = root;

    if (!cJSON_IsObject(root)) {
        snprintf(hello->error, sizeof(hello->error),
                 "HELLO is not a JSON object");
        return -1;
    }

    /* integers below 9e15: unix milliseconds and pids alike */

    if (pusher_ctl_uint(cJSON_GetObjectItemCaseSensitive(root, pusher_ctl_pid),
                        9.0e15, &v)
        != 0)
    {
        snprintf(hello->error, sizeof(hello->error), "no integer \"%s\"",
                 pusher_ctl_pid);
        return -1;
    }

    hello->pid = (int64_t) v;

    if (pusher_ctl_uint(cJSON_GetObjectItemCaseSensitive(root,
                                                         pusher_ctl_conf_time),
                        9.0e15, &v)
        != 0)
    {
        snprintf(hello->error, sizeof(hello->error), "no integer \"%s\"",
                 pusher_ctl_conf_time);
        return -1;
    }

    hello->conf_time = (int64_t) v;

    /* "debug": absent or a boolean */

    item = cJSON_GetObjectItemCaseSensitive(root, pusher_ctl_debug);

    if (item != NULL && !cJSON_IsBool(item)) {
        snprintf(hello->error, sizeof(hello->error),
                 "\"%s\" is not a boolean", pusher_ctl_debug);
        return -1;
    }

    hello->debug = cJSON_IsTrue(item) ? 1 : 0;

    /* "cluster": absent without pusher_cluster */

    item = cJSON_GetObjectItemCaseSensitive(root, pusher_ctl_cluster);

    if (item != NULL && pusher_ctl_decode_cluster(hello, item) != 0) {
        return -1;
    }

    /* no "apps": a configuration without apps */

    apps = cJSON_GetObjectItemCaseSensitive(root, pusher_ctl_apps);
    if (apps == NULL) {
        return 0;
    }

    if (!cJSON_IsArray(apps)) {
        snprintf(hello->error, sizeof(hello->error), "\"%s\" is not an array",
                 pusher_ctl_apps);
        return -1;
    }

    hello->napps = (size_t) cJSON_GetArraySize(apps);

    /*
     * a table, even an empty one, has apps != NULL, as it had when encoded
     * ("apps" is written only then): the round trip keeps the text
     */
    hello->apps = calloc(hello->napps ? hello->napps : 1,
                         sizeof(pusher_ctl_app_t));
    if (hello->apps == NULL) {
        hello->napps = 0;
        snprintf(hello->error, sizeof(hello->error), "out of memory");
        return -1;
    }

    i = 0;

    cJSON_ArrayForEach(item, apps) {
        if (pusher_ctl_decode_app(hello, item, &hello->apps[i++]) != 0) {
            return -1;
        }
    }

    return 0;
}


static int
pusher_ctl_decode_app(pusher_ctl_hello_t *hello, const cJSON *item,
    pusher_ctl_app_t *app)
{
    size_t                      m, n;
    uint64_t                   *number;
    const cJSON                *member, *list, *wh;
    const pusher_ctl_member_t  *mb;

    if (!cJSON_IsObject(item)) {
        snprintf(hello->error, sizeof(hello->error),
                 "an app is not an object");
        return -1;
    }

    if (pusher_ctl_required(hello, item, pusher_ctl_id, &app->id) != 0
        || pusher_ctl_required(hello, item, pusher_ctl_key, &app->key) != 0
        || pusher_ctl_required(hello, item, pusher_ctl_secret, &app->secret)
           != 0)
    {
        return -1;
    }

    for (m = 0; m < PUSHER_CTL_APP_MEMBERS; m++) {
        mb = &pusher_ctl_app_members[m];

        member = cJSON_GetObjectItemCaseSensitive(item, mb->name);
        if (member == NULL) {
            continue;
        }

        if (mb->kind == PUSHER_CTL_BOOL) {
            if (!cJSON_IsBool(member)) {
                return pusher_ctl_bad_app(hello, mb->name);
            }

            app->subscription_count = cJSON_IsTrue(member) ? 1 : 0;

        } else {
            number = (uint64_t *) ((char *) app + mb->offset);

            if (pusher_ctl_uint(member, PUSHER_CTL_NUMBER_MAX, number) != 0) {
                return pusher_ctl_bad_app(hello, mb->name);
            }
        }

        app->has |= mb->has;
    }

    list = cJSON_GetObjectItemCaseSensitive(item, pusher_ctl_coalesce);

    if (list != NULL && !cJSON_IsNull(list)
        && pusher_ctl_decode_coalesce(hello, list, app) != 0)
    {
        return -1;
    }

    list = cJSON_GetObjectItemCaseSensitive(item, pusher_ctl_webhooks);

    if (list == NULL || cJSON_IsNull(list)) {
        return 0;
    }

    if (!cJSON_IsArray(list)) {
        return pusher_ctl_bad_app(hello, pusher_ctl_webhooks);
    }

    n = (size_t) cJSON_GetArraySize(list);

    if (n == 0) {
        return 0;
    }

    app->webhooks = calloc(n, sizeof(pusher_ctl_webhook_t));
    if (app->webhooks == NULL) {
        snprintf(hello->error, sizeof(hello->error), "out of memory");
        return -1;
    }

    app->nwebhooks = n;
    m = 0;

    cJSON_ArrayForEach(wh, list) {
        if (pusher_ctl_decode_webhook(hello, wh, &app->webhooks[m++]) != 0) {
            return -1;
        }
    }

    return 0;
}


static int
pusher_ctl_decode_webhook(pusher_ctl_hello_t *hello, const cJSON *item,
    pusher_ctl_webhook_t *wh)
{
    size_t        n;
    unsigned      event;
    const cJSON  *types, *t, *filter, *text, *headers, *h;

    if (!cJSON_IsObject(item)) {
        return pusher_ctl_bad_app(hello, pusher_ctl_webhooks);
    }

    if (pusher_ctl_string(cJSON_GetObjectItemCaseSensitive(item,
                                                           pusher_ctl_url),
                          &wh->url)
        != 0)
    {
        return pusher_ctl_bad_app(hello, "webhooks url");
    }

    /* no "event_types": every event */

    wh->events = PUSHER_WEBHOOK_ALL;

    types = cJSON_GetObjectItemCaseSensitive(item, pusher_ctl_event_types);

    if (types) {
        if (!cJSON_IsArray(types) || cJSON_GetArraySize(types) == 0) {
            return pusher_ctl_bad_app(hello, "webhooks event_types");
        }

        wh->events = 0;

        cJSON_ArrayForEach(t, types) {
            event = cJSON_IsString(t)
                    ? pusher_webhook_event(t->valuestring,
                                           strlen(t->valuestring))
                    : 0;

            if (event == 0) {
                return pusher_ctl_bad_app(hello, "webhooks event_types");
            }

            wh->events |= event;
        }
    }

    filter = cJSON_GetObjectItemCaseSensitive(item, pusher_ctl_filter);

    if (filter && !cJSON_IsNull(filter)) {
        if (!cJSON_IsObject(filter)) {
            return pusher_ctl_bad_app(hello, "webhooks filter");
        }

        text = cJSON_GetObjectItemCaseSensitive(filter, pusher_ctl_prefix);

        if (text && !cJSON_IsNull(text)
            && pusher_ctl_string(text, &wh->prefix) != 0)
        {
            return pusher_ctl_bad_app(hello, pusher_ctl_prefix);
        }

        text = cJSON_GetObjectItemCaseSensitive(filter, pusher_ctl_suffix);

        if (text && !cJSON_IsNull(text)
            && pusher_ctl_string(text, &wh->suffix) != 0)
        {
            return pusher_ctl_bad_app(hello, pusher_ctl_suffix);
        }
    }

    headers = cJSON_GetObjectItemCaseSensitive(item, pusher_ctl_headers);

    if (headers == NULL || cJSON_IsNull(headers)) {
        return 0;
    }

    if (!cJSON_IsObject(headers)) {
        return pusher_ctl_bad_app(hello, "webhooks headers");
    }

    n = (size_t) cJSON_GetArraySize(headers);

    if (n == 0) {
        return 0;
    }

    wh->headers = calloc(n, sizeof(pusher_ctl_kv_t));
    if (wh->headers == NULL) {
        snprintf(hello->error, sizeof(hello->error), "out of memory");
        return -1;
    }

    cJSON_ArrayForEach(h, headers) {
        if (pusher_ctl_string(h, &wh->headers[wh->nheaders].value) != 0) {
            return pusher_ctl_bad_app(hello, "webhooks headers");
        }

        wh->headers[wh->nheaders].name.data = h->string;
        wh->headers[wh->nheaders].name.len = strlen(h->string);
        wh->nheaders++;
    }

    return 0;
}


static int
pusher_ctl_decode_coalesce(pusher_ctl_hello_t *hello, const cJSON *list,
    pusher_ctl_app_t *app)
{
    size_t                  n, m;
    const cJSON            *item, *events, *e;
    pusher_ctl_coalesce_t  *c;

    if (!cJSON_IsArray(list)) {
        return pusher_ctl_bad_app(hello, pusher_ctl_coalesce);
    }

    n = (size_t) cJSON_GetArraySize(list);

    if (n == 0) {
        return 0;
    }

    app->coalesce = calloc(n, sizeof(pusher_ctl_coalesce_t));
    if (app->coalesce == NULL) {
        snprintf(hello->error, sizeof(hello->error), "out of memory");
        return -1;
    }

    app->ncoalesce = n;
    c = app->coalesce;

    cJSON_ArrayForEach(item, list) {
        if (!cJSON_IsObject(item)
            || pusher_ctl_string(cJSON_GetObjectItemCaseSensitive(
                                     item, pusher_ctl_pattern),
                                 &c->pattern)
               != 0
            || pusher_ctl_uint(cJSON_GetObjectItemCaseSensitive(
                                   item, pusher_ctl_window),
                               PUSHER_CTL_NUMBER_MAX, &c->window)
               != 0)
        {
            return pusher_ctl_bad_app(hello, pusher_ctl_coalesce);
        }

        events = cJSON_GetObjectItemCaseSensitive(item, pusher_ctl_events);

        if (events != NULL && !cJSON_IsNull(events)) {
            if (!cJSON_IsArray(events)) {
                return pusher_ctl_bad_app(hello, "coalesce events");
            }

            m = (size_t) cJSON_GetArraySize(events);

            if (m) {
                c->events = calloc(m, sizeof(pusher_str_t));
                if (c->events == NULL) {
                    snprintf(hello->error, sizeof(hello->error),
                             "out of memory");
                    return -1;
                }
            }

            cJSON_ArrayForEach(e, events) {
                if (pusher_ctl_string(e, &c->events[c->nevents]) != 0) {
                    return pusher_ctl_bad_app(hello, "coalesce events");
                }

                c->nevents++;
            }
        }

        c++;
    }

    return 0;
}


void
pusher_ctl_hello_free(pusher_ctl_hello_t *hello)
{
    size_t             i, k;
    pusher_ctl_app_t  *app;

    /* only a decoded HELLO owns its arrays */

    if (hello->json == NULL) {
        return;
    }

    for (i = 0; i < hello->napps; i++) {
        app = &hello->apps[i];

        for (k = 0; k < app->nwebhooks; k++) {
            free(app->webhooks[k].headers);
        }

        free(app->webhooks);

        for (k = 0; k < app->ncoalesce; k++) {
            free(app->coalesce[k].events);
        }

        free(app->coalesce);
    }

    free(hello->apps);
    cJSON_Delete(hello->json);

    hello->apps = NULL;
    hello->napps = 0;
    hello->json = NULL;
}


char *
pusher_ctl_welcome_encode(const pusher_ctl_welcome_t *welcome, size_t *len)
{
    char    *text;
    char     generation[24];
    cJSON   *root;

    root = cJSON_CreateObject();
    if (root == NULL) {
        return NULL;
    }

    /* the generation is a string: a JSON number is a double */

    snprintf(generation, sizeof(generation), "%" PRIu64,
             welcome->generation);

    if (pusher_ctl_add_string(root, pusher_ctl_shm, &welcome->shm) != 0
        || cJSON_AddStringToObject(root, pusher_ctl_generation, generation)
           == NULL
        || pusher_ctl_add_uint(root, pusher_ctl_slot, welcome->slot) != 0
        || pusher_ctl_add_uint(root, pusher_ctl_size, welcome->size) != 0)
    {
        cJSON_Delete(root);
        return NULL;
    }

    text = pusher_ctl_print(root, len);
    cJSON_Delete(root);

    return text;
}


int
pusher_ctl_welcome_decode(pusher_ctl_welcome_t *welcome, const char *json,
    size_t len)
{
    size_t        i, n;
    uint64_t      v, generation;
    cJSON        *root;
    const cJSON  *gen, *size;

    memset(welcome, 0, sizeof(pusher_ctl_welcome_t));

    root = cJSON_ParseWithLength(json, len);
    welcome->json = root;

    if (!cJSON_IsObject(root)) {
        snprintf(welcome->error, sizeof(welcome->error),
                 "WELCOME is not a JSON object");
        return -1;
    }

    if (pusher_ctl_string(cJSON_GetObjectItemCaseSensitive(root,
                                                           pusher_ctl_shm),
                          &welcome->shm)
        != 0
        || welcome->shm.len == 0)
    {
        return pusher_ctl_bad_welcome(welcome, pusher_ctl_shm);
    }

    /* decimal digits of a uint64_t */

    gen = cJSON_GetObjectItemCaseSensitive(root, pusher_ctl_generation);

    if (!cJSON_IsString(gen)) {
        return pusher_ctl_bad_welcome(welcome, pusher_ctl_generation);
    }

    n = strlen(gen->valuestring);
    generation = 0;

    if (n == 0 || n > 20) {
        return pusher_ctl_bad_welcome(welcome, pusher_ctl_generation);
    }

    for (i = 0; i < n; i++) {
        v = (uint64_t) (gen->valuestring[i] - '0');

        if (gen->valuestring[i] < '0' || gen->valuestring[i] > '9'
            || generation > (UINT64_MAX - v) / 10)
        {
            return pusher_ctl_bad_welcome(welcome, pusher_ctl_generation);
        }

        generation = generation * 10 + v;
    }

    welcome->generation = generation;

    if (pusher_ctl_uint(cJSON_GetObjectItemCaseSensitive(root,
                                                         pusher_ctl_slot),
                        PUSHER_SHM_WAKE_SLOTS - 1, &v)
        != 0)
    {
        return pusher_ctl_bad_welcome(welcome, pusher_ctl_slot);
    }

    welcome->slot = (uint32_t) v;

    /* the size is for the logs: a worker maps what the segment says */

    size = cJSON_GetObjectItemCaseSensitive(root, pusher_ctl_size);

    if (size && pusher_ctl_uint(size, PUSHER_CTL_NUMBER_MAX, &welcome->size)
                != 0)
    {
        return pusher_ctl_bad_welcome(welcome, pusher_ctl_size);
    }

    return 0;
}


void
pusher_ctl_welcome_free(pusher_ctl_welcome_t *welcome)
{
    cJSON_Delete(welcome->json);
    welcome->json = NULL;
}


void
pusher_ctl_text_free(char *text)
{
    cJSON_free(text);
}


const char *
pusher_ctl_app_member(unsigned has)
{
    size_t  m;

    for (m = 0; m < PUSHER_CTL_APP_MEMBERS; m++) {
        if (pusher_ctl_app_members[m].has == has) {
            return pusher_ctl_app_members[m].name;
        }
    }

    return NULL;
}


/*
 * A whole number written in full: cJSON prints a double with 15
 * significant digits when that reads back within its relative tolerance,
 * which loses the last digit of a 16-digit integer.  Read back by strtod(),
 * every integer up to 2^53 is exact.
 */

static int
pusher_ctl_add_uint(cJSON *object, const char *name, uint64_t v)
{
    char  text[sizeof("18446744073709551615")];

    snprintf(text, sizeof(text), "%" PRIu64, v);

    return cJSON_AddRawToObject(object, name, text) == NULL ? -1 : 0;
}


/* a whole JSON number in [0, max] */

static int
pusher_ctl_uint(const cJSON *item, double max, uint64_t *out)
{
    double  d;

    if (!cJSON_IsNumber(item)) {
        return -1;
    }

    d = item->valuedouble;

    if (!isfinite(d) || d < 0 || d > max || d != (double) (uint64_t) d) {
        return -1;
    }

    *out = (uint64_t) d;

    return 0;
}


static int
pusher_ctl_string(const cJSON *item, pusher_str_t *s)
{
    if (!cJSON_IsString(item)) {
        return -1;
    }

    s->data = item->valuestring;
    s->len = strlen(item->valuestring);

    return 0;
}


/* a member that must be a non-empty string */

static int
pusher_ctl_required(pusher_ctl_hello_t *hello, const cJSON *app,
    const char *name, pusher_str_t *s)
{
    if (pusher_ctl_string(cJSON_GetObjectItemCaseSensitive(app, name), s) != 0
        || s->len == 0)
    {
        snprintf(hello->error, sizeof(hello->error),
                 "app without a string \"%s\"", name);
        return -1;
    }

    return 0;
}


static int
pusher_ctl_bad_app(pusher_ctl_hello_t *hello, const char *what)
{
    snprintf(hello->error, sizeof(hello->error), "app with a bad \"%s\"",
             what);

    return -1;
}


static int
pusher_ctl_bad_welcome(pusher_ctl_welcome_t *welcome, const char *what)
{
    snprintf(welcome->error, sizeof(welcome->error),
             "WELCOME with a bad \"%s\"", what);

    return -1;
}
