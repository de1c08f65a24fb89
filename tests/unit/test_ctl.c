/*
 * Unit tests: the HELLO and WELCOME payloads of the control connection
 * (common/pusher_ctl.c), which the module and the broker both encode and
 * decode with it: the exact wire text, round trips, the defaults of absent
 * members and the rejects.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "pusher_ctl.h"


/* a string that is not NUL-terminated: the encoders must use the length */
#define CUT(s)  { (s "#"), sizeof(s) - 1 }


/* decode from an exact-size heap copy: ASan sees any read past the end */

static int
hello_decode(pusher_ctl_hello_t *h, const char *json)
{
    int     rc;
    char   *copy;
    size_t  len;

    len = strlen(json);
    copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, json, len);

    rc = pusher_ctl_hello_decode(h, copy, len);

    /* the decoded message keeps its own tree, not the input */
    memset(copy, 'x', len);
    free(copy);

    return rc;
}


static int
welcome_decode(pusher_ctl_welcome_t *w, const char *json)
{
    int     rc;
    char   *copy;
    size_t  len;

    len = strlen(json);
    copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, json, len);

    rc = pusher_ctl_welcome_decode(w, copy, len);

    memset(copy, 'x', len);
    free(copy);

    return rc;
}


static void
assert_str(pusher_str_t s, const char *expect)
{
    assert_int_equal(s.len, strlen(expect));

    if (s.len) {
        assert_memory_equal(s.data, expect, s.len);
    }
}


static void
assert_same_str(pusher_str_t a, pusher_str_t b)
{
    assert_int_equal(a.len, b.len);

    if (a.len) {
        assert_memory_equal(a.data, b.data, a.len);
    }
}


/* two apps as the module sends them: every member, webhooks on one */

static pusher_ctl_kv_t  headers[] = {
    { CUT("X-A"), CUT("1") },
    { CUT("X-Quote"), CUT("say \"hi\"\\") }
};

static pusher_ctl_webhook_t  webhooks[] = {
    { CUT("https://hooks.example.com/x?a=b"),
      PUSHER_WEBHOOK_CHANNEL_OCCUPIED | PUSHER_WEBHOOK_MEMBER_ADDED,
      CUT("presence-"), { NULL, 0 }, headers, 2 },
    { CUT("http://127.0.0.1:9000/"), PUSHER_WEBHOOK_ALL,
      { NULL, 0 }, CUT("-x"), NULL, 0 }
};

static pusher_str_t  coalesce_events[] = {
    CUT("moved"), CUT("App\\Events\\Resized")
};

static pusher_ctl_coalesce_t  coalesce[] = {
    { CUT("private-servers.*"), 500, NULL, 0 },
    { CUT("game-*"), 60000, coalesce_events, 2 }
};

static pusher_ctl_app_t  apps[] = {
    { CUT("app1"), CUT("key1"), CUT("secret1"), PUSHER_CTL_APP_ALL, 1,
      1800, 10240, 100, 200, 10, 1048576, 3000, webhooks, 2, coalesce, 2 },
    { CUT("2"), CUT("k"), CUT("s"), PUSHER_CTL_APP_ALL, 0,
      60, 1, 1, 1, 1, 1, 0, NULL, 0, NULL, 0 }
};

static const char  hello_text[] =
    "{\"pid\":123,\"conf_time\":1732630000123,\"apps\":["
    "{\"id\":\"app1\",\"key\":\"key1\",\"secret\":\"secret1\","
    "\"cache_ttl\":1800,\"subscription_count\":true,"
    "\"max_event_data\":10240,\"max_channels\":100,\"max_event_name\":200,"
    "\"max_batch\":10,\"max_request_size\":1048576,"
    "\"webhook_vacated_delay\":3000,\"webhooks\":["
    "{\"url\":\"https://hooks.example.com/x?a=b\","
    "\"event_types\":[\"channel_occupied\",\"member_added\"],"
    "\"filter\":{\"channel_name_starts_with\":\"presence-\"},"
    "\"headers\":{\"X-A\":\"1\",\"X-Quote\":\"say \\\"hi\\\"\\\\\"}},"
    "{\"url\":\"http://127.0.0.1:9000/\","
    "\"event_types\":[\"channel_occupied\",\"channel_vacated\","
    "\"member_added\",\"member_removed\",\"client_event\",\"cache_miss\"],"
    "\"filter\":{\"channel_name_ends_with\":\"-x\"},\"headers\":{}}],"
    "\"coalesce\":[{\"pattern\":\"private-servers.*\",\"window\":500},"
    "{\"pattern\":\"game-*\",\"window\":60000,"
    "\"events\":[\"moved\",\"App\\\\Events\\\\Resized\"]}]},"
    "{\"id\":\"2\",\"key\":\"k\",\"secret\":\"s\",\"cache_ttl\":60,"
    "\"subscription_count\":false,\"max_event_data\":1,\"max_channels\":1,"
    "\"max_event_name\":1,\"max_batch\":1,\"max_request_size\":1,"
    "\"webhook_vacated_delay\":0}]}";


static void
test_hello_wire_format(void **state)
{
    char                *text;
    size_t               len;
    pusher_ctl_hello_t   h;

    memset(&h, 0, sizeof(h));
    h.pid = 123;
    h.conf_time = 1732630000123;
    h.apps = apps;
    h.napps = 2;

    text = pusher_ctl_hello_encode(&h, &len);
    assert_non_null(text);
    assert_string_equal(text, hello_text);
    assert_int_equal(len, strlen(hello_text));

    /* an encoded HELLO owns nothing */
    pusher_ctl_hello_free(&h);
    assert_ptr_equal(h.apps, apps);

    pusher_ctl_text_free(text);
}


static void
test_hello_round_trip(void **state)
{
    char                  *text;
    size_t                 len, i, k, n;
    pusher_ctl_hello_t     h, d;
    pusher_ctl_app_t      *a, *b;
    pusher_ctl_webhook_t  *wa, *wb;
    pusher_ctl_coalesce_t *ca, *cb;

    memset(&h, 0, sizeof(h));
    h.pid = 4194304;
    /* 16 digits: cJSON's own number printing would end it in ...310 */
    h.conf_time = 5744073709549311;
    h.apps = apps;
    h.napps = 2;

    text = pusher_ctl_hello_encode(&h, &len);
    assert_non_null(text);

    assert_int_equal(hello_decode(&d, text), 0);
    pusher_ctl_text_free(text);

    assert_int_equal(d.pid, h.pid);
    assert_int_equal(d.conf_time, h.conf_time);
    assert_int_equal(d.napps, h.napps);

    for (i = 0; i < h.napps; i++) {
        a = &h.apps[i];
        b = &d.apps[i];

        assert_same_str(a->id, b->id);
        assert_same_str(a->key, b->key);
        assert_same_str(a->secret, b->secret);
        assert_int_equal(a->has, b->has);
        assert_int_equal(a->subscription_count, b->subscription_count);
        assert_int_equal(a->cache_ttl, b->cache_ttl);
        assert_int_equal(a->max_event_data, b->max_event_data);
        assert_int_equal(a->max_channels, b->max_channels);
        assert_int_equal(a->max_event_name, b->max_event_name);
        assert_int_equal(a->max_batch, b->max_batch);
        assert_int_equal(a->max_request_size, b->max_request_size);
        assert_int_equal(a->webhook_vacated_delay, b->webhook_vacated_delay);
        assert_int_equal(a->nwebhooks, b->nwebhooks);
        assert_int_equal(a->ncoalesce, b->ncoalesce);

        for (k = 0; k < a->ncoalesce; k++) {
            ca = &a->coalesce[k];
            cb = &b->coalesce[k];

            assert_same_str(ca->pattern, cb->pattern);
            assert_int_equal(ca->window, cb->window);
            assert_int_equal(ca->nevents, cb->nevents);

            for (n = 0; n < ca->nevents; n++) {
                assert_same_str(ca->events[n], cb->events[n]);
            }
        }

        for (k = 0; k < a->nwebhooks; k++) {
            wa = &a->webhooks[k];
            wb = &b->webhooks[k];

            assert_same_str(wa->url, wb->url);
            assert_int_equal(wa->events, wb->events);
            assert_same_str(wa->prefix, wb->prefix);
            assert_same_str(wa->suffix, wb->suffix);
            assert_int_equal(wa->nheaders, wb->nheaders);

            for (n = 0; n < wa->nheaders; n++) {
                assert_same_str(wa->headers[n].name, wb->headers[n].name);
                assert_same_str(wa->headers[n].value, wb->headers[n].value);
            }
        }
    }

    /* decoded strings are C strings too */
    assert_string_equal(d.apps[0].webhooks[0].headers[1].value.data,
                        "say \"hi\"\\");

    pusher_ctl_hello_free(&d);
    assert_null(d.apps);
    assert_null(d.json);
}


static void
test_hello_defaults(void **state)
{
    pusher_ctl_hello_t     d;
    pusher_ctl_webhook_t  *wh;

    /* the members the broker has defaults for may be absent */

    assert_int_equal(hello_decode(&d,
        "{\"pid\":1,\"conf_time\":2,\"apps\":["
        "{\"id\":\"a\",\"key\":\"k\",\"secret\":\"s\","
        "\"max_batch\":5,\"webhooks\":["
        "{\"url\":\"http://h/\"},"
        "{\"url\":\"http://h/\",\"filter\":null,\"headers\":null},"
        "{\"url\":\"http://h/\",\"filter\":{"
        "\"channel_name_starts_with\":null}}]}]}"), 0);

    assert_int_equal(d.napps, 1);
    assert_str(d.apps[0].id, "a");
    assert_int_equal(d.apps[0].has, PUSHER_CTL_APP_MAX_BATCH);
    assert_int_equal(d.apps[0].max_batch, 5);
    assert_int_equal(d.apps[0].nwebhooks, 3);

    for (wh = d.apps[0].webhooks; wh < d.apps[0].webhooks + 3; wh++) {
        assert_str(wh->url, "http://h/");
        assert_int_equal(wh->events, PUSHER_WEBHOOK_ALL);
        assert_int_equal(wh->prefix.len, 0);
        assert_int_equal(wh->suffix.len, 0);
        assert_int_equal(wh->nheaders, 0);
    }

    pusher_ctl_hello_free(&d);

    /* a configuration without apps */

    assert_int_equal(hello_decode(&d, "{\"pid\":1,\"conf_time\":0}"), 0);
    assert_int_equal(d.napps, 0);
    pusher_ctl_hello_free(&d);

    assert_int_equal(hello_decode(&d,
                                  "{\"pid\":1,\"conf_time\":0,\"apps\":[]}"),
                     0);
    assert_int_equal(d.napps, 0);
    pusher_ctl_hello_free(&d);
}


/* "cluster": written only with a URL, three strings, decoded as written */

static void
test_hello_cluster(void **state)
{
    char                *text;
    size_t               len;
    pusher_ctl_hello_t   h, d;

    (void) state;

    memset(&h, 0, sizeof(h));
    h.pid = 7;
    h.conf_time = 9;
    h.cluster_url.data = "rediss://:p%40ss@r:6380/2";
    h.cluster_url.len = strlen(h.cluster_url.data);
    h.cluster_prefix.data = "{app}:";
    h.cluster_prefix.len = 6;
    h.cluster_node.data = "web-1";
    h.cluster_node.len = 5;

    text = pusher_ctl_hello_encode(&h, &len);
    assert_non_null(text);
    assert_string_equal(text,
                        "{\"pid\":7,\"conf_time\":9,\"cluster\":{\"url\":"
                        "\"rediss://:p%40ss@r:6380/2\",\"prefix\":\"{app}:\","
                        "\"node\":\"web-1\"}}");
    assert_int_equal(hello_decode(&d, text), 0);
    assert_int_equal(d.cluster_url.len, h.cluster_url.len);
    assert_memory_equal(d.cluster_url.data, h.cluster_url.data,
                        h.cluster_url.len);
    assert_int_equal(d.cluster_prefix.len, 6);
    assert_memory_equal(d.cluster_prefix.data, "{app}:", 6);
    assert_int_equal(d.cluster_node.len, 5);
    assert_memory_equal(d.cluster_node.data, "web-1", 5);
    pusher_ctl_hello_free(&d);
    pusher_ctl_text_free(text);

    /* none: no "cluster", and none decoded */
    h.cluster_url.len = 0;
    text = pusher_ctl_hello_encode(&h, &len);
    assert_non_null(text);
    assert_string_equal(text, "{\"pid\":7,\"conf_time\":9}");
    assert_int_equal(hello_decode(&d, text), 0);
    assert_int_equal(d.cluster_url.len, 0);
    pusher_ctl_hello_free(&d);
    pusher_ctl_text_free(text);
}


/* "debug": written only when on, read as a boolean, absent is off */

static void
test_hello_debug(void **state)
{
    char                *text;
    size_t               len;
    pusher_ctl_hello_t   h, d;

    memset(&h, 0, sizeof(h));
    h.pid = 7;
    h.conf_time = 9;
    h.debug = 1;

    /* no table (a worker's HELLO): no "apps" */
    text = pusher_ctl_hello_encode(&h, &len);
    assert_non_null(text);
    assert_string_equal(text, "{\"pid\":7,\"conf_time\":9,\"debug\":true}");
    assert_int_equal(hello_decode(&d, text), 0);
    assert_int_equal(d.debug, 1);
    assert_int_equal(d.napps, 0);
    pusher_ctl_hello_free(&d);
    pusher_ctl_text_free(text);

    h.debug = 0;
    text = pusher_ctl_hello_encode(&h, &len);
    assert_non_null(text);
    assert_string_equal(text, "{\"pid\":7,\"conf_time\":9}");
    assert_int_equal(hello_decode(&d, text), 0);
    assert_int_equal(d.debug, 0);
    pusher_ctl_hello_free(&d);
    pusher_ctl_text_free(text);

    assert_int_equal(hello_decode(&d, "{\"pid\":1,\"conf_time\":2,"
                                      "\"debug\":false}"), 0);
    assert_int_equal(d.debug, 0);
    pusher_ctl_hello_free(&d);

    /* an empty table (a master's with no apps) stays one: the round trip
     * keeps "apps" (found by fuzz_ctl) */
    assert_int_equal(hello_decode(&d, "{\"pid\":1,\"conf_time\":2,"
                                      "\"apps\":[]}"), 0);
    assert_non_null(d.apps);
    assert_int_equal(d.napps, 0);
    text = pusher_ctl_hello_encode(&d, &len);
    assert_non_null(text);
    assert_string_equal(text, "{\"pid\":1,\"conf_time\":2,\"apps\":[]}");
    pusher_ctl_text_free(text);
    pusher_ctl_hello_free(&d);
}


typedef struct {
    const char  *json;
    const char  *error;
} reject_t;


static const reject_t  hello_rejects[] = {
    { "", "HELLO is not a JSON object" },
    { "[1]", "HELLO is not a JSON object" },
    { "{\"pid\":1,\"conf_time\":2", "HELLO is not a JSON object" },
    { "{\"conf_time\":2}", "no integer \"pid\"" },
    { "{\"pid\":-1,\"conf_time\":2}", "no integer \"pid\"" },
    { "{\"pid\":\"1\",\"conf_time\":2}", "no integer \"pid\"" },
    { "{\"pid\":1,\"conf_time\":1e16}", "no integer \"conf_time\"" },
    { "{\"pid\":1,\"conf_time\":2,\"apps\":{}}", "\"apps\" is not an array" },
    { "{\"pid\":1,\"conf_time\":2,\"apps\":null}",
      "\"apps\" is not an array" },
    { "{\"pid\":1,\"conf_time\":2,\"apps\":[1]}", "an app is not an object" },
    { "{\"pid\":1,\"conf_time\":2,\"apps\":[{\"key\":\"k\",\"secret\":\"s\"}]}",
      "app without a string \"id\"" },
    { "{\"pid\":1,\"conf_time\":2,\"apps\":[{\"id\":\"\",\"key\":\"k\","
      "\"secret\":\"s\"}]}", "app without a string \"id\"" },
    { "{\"pid\":1,\"conf_time\":2,\"apps\":[{\"id\":\"a\",\"key\":7,"
      "\"secret\":\"s\"}]}", "app without a string \"key\"" },
    { "{\"pid\":1,\"conf_time\":2,\"apps\":[{\"id\":\"a\",\"key\":\"k\"}]}",
      "app without a string \"secret\"" },
    { "{\"pid\":1,\"conf_time\":2,\"apps\":[{\"id\":\"a\",\"key\":\"k\","
      "\"secret\":\"s\",\"subscription_count\":1}]}",
      "app with a bad \"subscription_count\"" },
    { "{\"pid\":1,\"conf_time\":2,\"apps\":[{\"id\":\"a\",\"key\":\"k\","
      "\"secret\":\"s\",\"webhook_vacated_delay\":1.5}]}",
      "app with a bad \"webhook_vacated_delay\"" },
    { "{\"pid\":1,\"conf_time\":2,\"apps\":[{\"id\":\"a\",\"key\":\"k\","
      "\"secret\":\"s\",\"max_event_data\":-1}]}",
      "app with a bad \"max_event_data\"" },
    { "{\"pid\":1,\"conf_time\":2,\"apps\":[{\"id\":\"a\",\"key\":\"k\","
      "\"secret\":\"s\",\"cache_ttl\":\"1800\"}]}",
      "app with a bad \"cache_ttl\"" },
    { "{\"pid\":1,\"conf_time\":2,\"apps\":[{\"id\":\"a\",\"key\":\"k\","
      "\"secret\":\"s\",\"coalesce\":{}}]}", "app with a bad \"coalesce\"" },
    { "{\"pid\":1,\"conf_time\":2,\"apps\":[{\"id\":\"a\",\"key\":\"k\","
      "\"secret\":\"s\",\"coalesce\":[{\"pattern\":\"p\"}]}]}",
      "app with a bad \"coalesce\"" },
    { "{\"pid\":1,\"conf_time\":2,\"apps\":[{\"id\":\"a\",\"key\":\"k\","
      "\"secret\":\"s\",\"coalesce\":[{\"pattern\":1,\"window\":1}]}]}",
      "app with a bad \"coalesce\"" },
    { "{\"pid\":1,\"conf_time\":2,\"apps\":[{\"id\":\"a\",\"key\":\"k\","
      "\"secret\":\"s\",\"coalesce\":[{\"pattern\":\"p\",\"window\":1,"
      "\"events\":[\"a\",2]}]}]}", "app with a bad \"coalesce events\"" },
    { "{\"pid\":1,\"conf_time\":2,\"apps\":[{\"id\":\"a\",\"key\":\"k\","
      "\"secret\":\"s\",\"coalesce\":[{\"pattern\":\"p\",\"window\":1,"
      "\"events\":\"a\"}]}]}", "app with a bad \"coalesce events\"" },
    { "{\"pid\":1,\"conf_time\":2,\"apps\":[{\"id\":\"a\",\"key\":\"k\","
      "\"secret\":\"s\",\"webhooks\":{}}]}", "app with a bad \"webhooks\"" },
    { "{\"pid\":1,\"conf_time\":2,\"apps\":[{\"id\":\"a\",\"key\":\"k\","
      "\"secret\":\"s\",\"webhooks\":[1]}]}", "app with a bad \"webhooks\"" },
    { "{\"pid\":1,\"conf_time\":2,\"apps\":[{\"id\":\"a\",\"key\":\"k\","
      "\"secret\":\"s\",\"webhooks\":[{}]}]}",
      "app with a bad \"webhooks url\"" },
    { "{\"pid\":1,\"conf_time\":2,\"apps\":[{\"id\":\"a\",\"key\":\"k\","
      "\"secret\":\"s\",\"webhooks\":[{\"url\":\"http://h/\","
      "\"event_types\":[]}]}]}", "app with a bad \"webhooks event_types\"" },
    { "{\"pid\":1,\"conf_time\":2,\"apps\":[{\"id\":\"a\",\"key\":\"k\","
      "\"secret\":\"s\",\"webhooks\":[{\"url\":\"http://h/\","
      "\"event_types\":[\"channel_occupied\",\"nope\"]}]}]}",
      "app with a bad \"webhooks event_types\"" },
    { "{\"pid\":1,\"conf_time\":2,\"apps\":[{\"id\":\"a\",\"key\":\"k\","
      "\"secret\":\"s\",\"webhooks\":[{\"url\":\"http://h/\","
      "\"event_types\":\"channel_occupied\"}]}]}",
      "app with a bad \"webhooks event_types\"" },
    { "{\"pid\":1,\"conf_time\":2,\"apps\":[{\"id\":\"a\",\"key\":\"k\","
      "\"secret\":\"s\",\"webhooks\":[{\"url\":\"http://h/\","
      "\"filter\":[]}]}]}", "app with a bad \"webhooks filter\"" },
    { "{\"pid\":1,\"conf_time\":2,\"apps\":[{\"id\":\"a\",\"key\":\"k\","
      "\"secret\":\"s\",\"webhooks\":[{\"url\":\"http://h/\","
      "\"filter\":{\"channel_name_ends_with\":1}}]}]}",
      "app with a bad \"channel_name_ends_with\"" },
    { "{\"pid\":1,\"conf_time\":2,\"apps\":[{\"id\":\"a\",\"key\":\"k\","
      "\"secret\":\"s\",\"webhooks\":[{\"url\":\"http://h/\","
      "\"headers\":{\"X\":1}}]}]}", "app with a bad \"webhooks headers\"" },
    { "{\"pid\":1,\"conf_time\":2,\"apps\":[{\"id\":\"a\",\"key\":\"k\","
      "\"secret\":\"s\",\"webhooks\":[{\"url\":\"http://h/\","
      "\"headers\":[]}]}]}", "app with a bad \"webhooks headers\"" },
    { "{\"pid\":1,\"conf_time\":2,\"debug\":1}",
      "\"debug\" is not a boolean" },
    { "{\"pid\":1,\"conf_time\":2,\"debug\":\"on\"}",
      "\"debug\" is not a boolean" },
    { "{\"pid\":1,\"conf_time\":2,\"cluster\":\"redis://h\"}",
      "\"cluster\" is not an object of strings \"url\", \"prefix\" and "
      "\"node\"" },
    { "{\"pid\":1,\"conf_time\":2,\"cluster\":{\"url\":\"redis://h\","
      "\"prefix\":\"p:\"}}",
      "\"cluster\" is not an object of strings \"url\", \"prefix\" and "
      "\"node\"" },
    /* the reason, never the URL: it may hold a password */
    { "{\"pid\":1,\"conf_time\":2,\"cluster\":{\"url\":"
      "\"redis://:s3cret@h:0\",\"prefix\":\"p:\",\"node\":\"n\"}}",
      "\"cluster\": the port of the Redis URL is not 1 .. 65535" },
    { "{\"pid\":1,\"conf_time\":2,\"cluster\":{\"url\":\"redis://h\","
      "\"prefix\":\"p q\",\"node\":\"n\"}}",
      "\"cluster\": prefix: character 2 is not one of A-Z a-z 0-9 _-.:{}" },
    { "{\"pid\":1,\"conf_time\":2,\"cluster\":{\"url\":\"redis://h\","
      "\"prefix\":\"p\",\"node\":\"\"}}",
      "\"cluster\": empty node" }
};


static void
test_hello_rejects(void **state)
{
    size_t              i;
    pusher_ctl_hello_t  d;

    for (i = 0; i < sizeof(hello_rejects) / sizeof(hello_rejects[0]); i++) {
        if (hello_decode(&d, hello_rejects[i].json) != -1
            || strcmp(d.error, hello_rejects[i].error) != 0)
        {
            fail_msg("%s: got \"%s\", want \"%s\"", hello_rejects[i].json,
                     d.error, hello_rejects[i].error);
        }

        /* whatever was decoded before the error is released */
        pusher_ctl_hello_free(&d);
    }
}


static void
test_welcome_wire_format(void **state)
{
    char                  *text;
    size_t                 len;
    pusher_ctl_welcome_t   w;

    memset(&w, 0, sizeof(w));
    w.shm.data = "/ngx-pusher#";
    w.shm.len = sizeof("/ngx-pusher") - 1;
    w.generation = UINT64_MAX;
    w.slot = PUSHER_SHM_WAKE_SLOTS - 1;
    w.size = 8392704;

    text = pusher_ctl_welcome_encode(&w, &len);
    assert_non_null(text);
    assert_string_equal(text,
                        "{\"shm\":\"/ngx-pusher\","
                        "\"generation\":\"18446744073709551615\","
                        "\"slot\":255,\"size\":8392704}");
    assert_int_equal(len, strlen(text));
    pusher_ctl_text_free(text);
}


static void
test_welcome_round_trip(void **state)
{
    char                  *text;
    size_t                 i;
    pusher_ctl_welcome_t   w, d;

    static const uint64_t  generations[] = {
        0, 1, 9007199254740993ULL, UINT64_MAX
    };

    for (i = 0; i < sizeof(generations) / sizeof(generations[0]); i++) {
        memset(&w, 0, sizeof(w));
        w.shm.data = "/ngx-pusher-test";
        w.shm.len = strlen(w.shm.data);
        w.generation = generations[i];
        w.slot = (uint32_t) i;
        w.size = 8 * 1024 * 1024 + 4096;

        text = pusher_ctl_welcome_encode(&w, NULL);
        assert_non_null(text);
        assert_int_equal(welcome_decode(&d, text), 0);
        pusher_ctl_text_free(text);

        assert_same_str(d.shm, w.shm);
        assert_string_equal(d.shm.data, "/ngx-pusher-test");
        assert_true(d.generation == w.generation);
        assert_int_equal(d.slot, w.slot);
        assert_int_equal(d.size, w.size);

        pusher_ctl_welcome_free(&d);
        assert_null(d.json);
    }

    /* a WELCOME without "size" is fine: the segment tells its size */

    assert_int_equal(welcome_decode(&d, "{\"shm\":\"/s\",\"generation\":\"7\","
                                        "\"slot\":0}"), 0);
    assert_int_equal(d.size, 0);
    assert_true(d.generation == 7);
    pusher_ctl_welcome_free(&d);
}


static const reject_t  welcome_rejects[] = {
    { "", "WELCOME is not a JSON object" },
    { "\"x\"", "WELCOME is not a JSON object" },
    { "{\"generation\":\"1\",\"slot\":0}", "WELCOME with a bad \"shm\"" },
    { "{\"shm\":\"\",\"generation\":\"1\",\"slot\":0}",
      "WELCOME with a bad \"shm\"" },
    { "{\"shm\":\"/s\",\"generation\":1,\"slot\":0}",
      "WELCOME with a bad \"generation\"" },
    { "{\"shm\":\"/s\",\"generation\":\"\",\"slot\":0}",
      "WELCOME with a bad \"generation\"" },
    { "{\"shm\":\"/s\",\"generation\":\"-1\",\"slot\":0}",
      "WELCOME with a bad \"generation\"" },
    { "{\"shm\":\"/s\",\"generation\":\"12a\",\"slot\":0}",
      "WELCOME with a bad \"generation\"" },
    { "{\"shm\":\"/s\",\"generation\":\"18446744073709551616\",\"slot\":0}",
      "WELCOME with a bad \"generation\"" },
    { "{\"shm\":\"/s\",\"generation\":\"1\"}", "WELCOME with a bad \"slot\"" },
    { "{\"shm\":\"/s\",\"generation\":\"1\",\"slot\":-1}",
      "WELCOME with a bad \"slot\"" },
    { "{\"shm\":\"/s\",\"generation\":\"1\",\"slot\":256}",
      "WELCOME with a bad \"slot\"" },
    { "{\"shm\":\"/s\",\"generation\":\"1\",\"slot\":1.5}",
      "WELCOME with a bad \"slot\"" },
    { "{\"shm\":\"/s\",\"generation\":\"1\",\"slot\":0,\"size\":-8}",
      "WELCOME with a bad \"size\"" }
};


static void
test_welcome_rejects(void **state)
{
    size_t                i;
    pusher_ctl_welcome_t  d;

    for (i = 0; i < sizeof(welcome_rejects) / sizeof(welcome_rejects[0]); i++)
    {
        if (welcome_decode(&d, welcome_rejects[i].json) != -1
            || strcmp(d.error, welcome_rejects[i].error) != 0)
        {
            fail_msg("%s: got \"%s\", want \"%s\"", welcome_rejects[i].json,
                     d.error, welcome_rejects[i].error);
        }

        pusher_ctl_welcome_free(&d);
    }
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_hello_wire_format),
        cmocka_unit_test(test_hello_round_trip),
        cmocka_unit_test(test_hello_defaults),
        cmocka_unit_test(test_hello_debug),
        cmocka_unit_test(test_hello_cluster),
        cmocka_unit_test(test_hello_rejects),
        cmocka_unit_test(test_welcome_wire_format),
        cmocka_unit_test(test_welcome_round_trip),
        cmocka_unit_test(test_welcome_rejects),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
