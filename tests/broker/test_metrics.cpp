// The broker's part of pusher_metrics without a broker process: the
// endpoint label of each HTTP API target, and the exact text of the
// HTTP API and webhook families (Prometheus' text format 0.0.4).

#include "broker_test.hpp"

#include "app_registry.hpp"
#include "metrics.hpp"
#include "webhooks.hpp"

using namespace pusher::broker;

namespace {

void test_endpoints()
{
    struct endpoint_case {
        const char *target;
        const char *endpoint;
        const char *app_id;
    };
    const endpoint_case cases[] = {
        {"/apps/1001/events?auth_key=k", "events", "1001"},
        {"/apps/1001/batch_events", "batch_events", "1001"},
        {"/apps/a/channels?filter_by_prefix=presence-", "channels", "a"},
        {"/apps/a/channels/presence-x", "channel", "a"},
        {"/apps/a/channels/presence-x/users", "channel_users", "a"},
        {"/apps/a/users/7/terminate_connections", "terminate_connections",
         "a"},
        {"/up", "up", ""},
        {"/up?x", "up", ""},
        {"/metrics", "other", ""},
        {"/apps/", "other", ""},
        {"/apps/a", "other", ""},
        {"/apps/a/nothing", "other", "a"},
        {"/apps/a/channels/x/users/y", "other", "a"},
    };
    for (const endpoint_case &c : cases) {
        std::string_view app_id = "unset";
        CHECK_EQ(std::string(broker_metrics::endpoint(c.target, app_id)),
                 c.endpoint);
        CHECK_EQ(std::string(app_id), c.app_id);
    }
}

bool update(app_registry &r, const char *apps)
{
    std::string text = std::string("{\"pid\":1,\"conf_time\":1,\"apps\":")
                       + apps + "}";
    pusher_ctl_hello_t hello;
    bool ok = false;
    if (pusher_ctl_hello_decode(&hello, text.data(), text.size()) == 0) {
        r.update(hello.conf_time, hello.apps, hello.napps);
        ok = true;
    }
    pusher_ctl_hello_free(&hello);
    return ok;
}

void test_render()
{
    net::io_context ioc;
    app_registry apps;
    CHECK(update(apps, "[{\"id\":\"1001\",\"key\":\"k\",\"secret\":\"s\"},"
                       "{\"id\":\"q\\\"\\\\\",\"key\":\"k2\",\"secret\":\"s2\"}]"));
    webhook_sender hooks(ioc, apps);

    broker_metrics m;
    m.count_request("1001", "events", 200, 120, 2);
    m.count_request("1001", "events", 200, 80, 2);
    m.count_request("1001", "events", 401, 50, 40);
    m.count_request("", "up", 200, 0, 2);

    std::string out;
    m.render(out, apps, hooks);

    const std::string expected =
        "# HELP pusher_http_calls_received_total HTTP API requests answered "
        "(app_id empty: no known app)\n"
        "# TYPE pusher_http_calls_received_total counter\n"
        "pusher_http_calls_received_total{app_id=\"\"} 1\n"
        "pusher_http_calls_received_total{app_id=\"1001\"} 3\n"
        "pusher_http_calls_received_total{app_id=\"q\\\"\\\\\"} 0\n"
        "# HELP pusher_http_received_bytes HTTP API request body bytes (a "
        "counter; soketi's name)\n"
        "# TYPE pusher_http_received_bytes untyped\n"
        "pusher_http_received_bytes{app_id=\"\"} 0\n"
        "pusher_http_received_bytes{app_id=\"1001\"} 250\n"
        "pusher_http_received_bytes{app_id=\"q\\\"\\\\\"} 0\n"
        "# HELP pusher_http_transmitted_bytes HTTP API response body bytes "
        "(a counter; soketi's name)\n"
        "# TYPE pusher_http_transmitted_bytes untyped\n"
        "pusher_http_transmitted_bytes{app_id=\"\"} 2\n"
        "pusher_http_transmitted_bytes{app_id=\"1001\"} 44\n"
        "pusher_http_transmitted_bytes{app_id=\"q\\\"\\\\\"} 0\n"
        "# HELP pusher_signature_failures_total HTTP API requests refused "
        "for their signature, key or timestamp (401)\n"
        "# TYPE pusher_signature_failures_total counter\n"
        "pusher_signature_failures_total{app_id=\"\"} 0\n"
        "pusher_signature_failures_total{app_id=\"1001\"} 1\n"
        "pusher_signature_failures_total{app_id=\"q\\\"\\\\\"} 0\n"
        "# HELP pusher_http_requests_total HTTP API requests answered, by "
        "endpoint and status\n"
        "# TYPE pusher_http_requests_total counter\n"
        "pusher_http_requests_total{app_id=\"\",endpoint=\"up\","
        "status=\"200\"} 1\n"
        "pusher_http_requests_total{app_id=\"1001\",endpoint=\"events\","
        "status=\"200\"} 2\n"
        "pusher_http_requests_total{app_id=\"1001\",endpoint=\"events\","
        "status=\"401\"} 1\n"
        "# HELP pusher_webhook_queue_depth Webhook events waiting to be "
        "sent\n"
        "# TYPE pusher_webhook_queue_depth gauge\n"
        "# HELP pusher_webhook_events_sent_total Webhook events delivered "
        "(their request answered 2xx)\n"
        "# TYPE pusher_webhook_events_sent_total counter\n"
        "# HELP pusher_webhook_requests_total Webhook requests sent, retries "
        "included\n"
        "# TYPE pusher_webhook_requests_total counter\n"
        "# HELP pusher_webhook_retries_total Webhook requests that failed "
        "and are tried again\n"
        "# TYPE pusher_webhook_retries_total counter\n"
        "# HELP pusher_webhook_events_collapsed_total channel_occupied/"
        "channel_vacated events undone by the channel's next change before "
        "they were sent\n"
        "# TYPE pusher_webhook_events_collapsed_total counter\n"
        "# HELP pusher_webhook_events_dropped_total Webhook events dropped: "
        "queue full, all attempts failed, or the webhook was removed by a "
        "reload (app_id empty)\n"
        "# TYPE pusher_webhook_events_dropped_total counter\n"
        "pusher_webhook_events_dropped_total{app_id=\"\",reason=\"removed\"} "
        "0\n";
    CHECK_EQ(out, expected);
}

} // namespace

int main()
{
    test_endpoints();
    test_render();
    std::printf("test_metrics: all checks passed\n");
    return 0;
}
