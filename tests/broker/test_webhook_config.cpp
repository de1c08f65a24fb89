// The webhook configuration of a HELLO and the pure parts of the webhook
// sender, without a broker process: URL parsing (scheme, host, port, Host
// header, target), event_types / filter / headers (reserved names
// dropped), webhook_vacated_delay and max_request_size, the rejects, the
// backoff schedule and the request body.

#include "broker_test.hpp"

#include "app_registry.hpp"
#include "webhooks.hpp"

using namespace pusher::broker;

namespace {

struct url_case {
    const char *url;
    bool tls;
    const char *host;
    const char *port;
    const char *host_header;
    const char *target;
};

const url_case good_urls[] = {
    {"http://127.0.0.1:9000/hook", false, "127.0.0.1", "9000",
     "127.0.0.1:9000", "/hook"},
    {"http://example.com", false, "example.com", "80", "example.com", "/"},
    {"http://example.com:80/a?b=c", false, "example.com", "80", "example.com",
     "/a?b=c"},
    {"https://hooks.example.com/x/y", true, "hooks.example.com", "443",
     "hooks.example.com", "/x/y"},
    {"https://h:8443", true, "h", "8443", "h:8443", "/"},
    {"http://h?q=1", false, "h", "80", "h", "/?q=1"},
    {"http://[::1]:9000/v6", false, "::1", "9000", "[::1]:9000", "/v6"},
    {"https://[2001:db8::1]/", true, "2001:db8::1", "443", "[2001:db8::1]",
     "/"},
    // the scheme is case-insensitive (RFC 3986 3.1), as nginx -t takes it
    {"HTTP://h/", false, "h", "80", "h", "/"},
    {"Https://h:443/x", true, "h", "443", "h", "/x"},
};

const char *bad_urls[] = {
    "", "ftp://h/", "http:/h/", "http://", "http:///x", "http://h:0/",
    "http://h:65536/", "http://h:/", "http://h:8x/", "http://u@h/",
    "http://h/a b", "http://h/#frag", "http://[::1/", "http://[zz]/",
    "http://h\x01/", "http://h_o%st/", "http://u:p@h/x",
};

TEST_CASE("webhook config: URLs parse into scheme, host, port, Host header "
          "and target; bad ones are refused")
{
    for (const url_case &c : good_urls) {
        webhook_config w;
        parse_webhook_url(c.url, w);
        CHECK_EQ(w.url, c.url);
        CHECK(w.tls == c.tls);
        CHECK_EQ(w.host, c.host);
        CHECK_EQ(w.port, c.port);
        CHECK_EQ(w.host_header, c.host_header);
        CHECK_EQ(w.target, c.target);
    }
    // the longest URL nginx -t takes, and one byte more (pusher_app.h)
    std::string longest = "http://h/" + std::string(2048 - 9, 'x');
    webhook_config wl;
    parse_webhook_url(longest, wl);
    CHECK(wl.target.size() == 2048 - 8);
    std::string too_long = longest + "x";
    for (const char *u : {too_long.c_str()}) {
        webhook_config w;
        bool thrown = false;
        try {
            parse_webhook_url(u, w);
        } catch (const std::invalid_argument &) {
            thrown = true;
        }
        CHECK(thrown);
    }
    for (const char *u : bad_urls) {
        webhook_config w;
        bool thrown = false;
        try {
            parse_webhook_url(u, w);
        } catch (const std::invalid_argument &) {
            thrown = true;
        }
        if (!thrown) {
            fail("URL accepted: \"%s\"", u);
        }
    }
}

// the apps of a HELLO, decoded as the broker does (pusher_ctl.h): false
// if the codec or the table refuses them
bool update(app_registry &r, std::int64_t conf_time, const char *apps)
{
    std::string text = "{\"pid\":1,\"conf_time\":" + std::to_string(conf_time)
                       + ",\"apps\":" + apps + "}";
    pusher_ctl_hello_t hello;
    bool ok = false;
    if (pusher_ctl_hello_decode(&hello, text.data(), text.size()) == 0) {
        try {
            r.update(hello.conf_time, hello.apps, hello.napps);
            ok = true;
        } catch (const std::invalid_argument &) {
            ok = false;
        }
    }
    pusher_ctl_hello_free(&hello);
    return ok;
}

// the table of conf_time 1: app "a" with two webhooks, "b" with none
void good_table(app_registry &r)
{
    CHECK(update(r, 1,
        "[{\"id\":\"a\",\"key\":\"k\",\"secret\":\"s\","
        "\"max_request_size\":65536,\"webhook_vacated_delay\":3000,"
        "\"webhooks\":["
        "{\"url\":\"http://h/1\"},"
        "{\"url\":\"https://h/2\",\"event_types\":[\"member_added\","
        "\"cache_miss\"],\"filter\":{"
        "\"channel_name_starts_with\":\"presence-\","
        "\"channel_name_ends_with\":\"\"},\"headers\":{\"X-A\":\"1\","
        "\"x-pusher-signature\":\"no\",\"Host\":\"no\","
        "\"content-length\":\"9\","
        "\"User-Agent\":\"no\",\"X-B\":\"two words\"}}]},"
        "{\"id\":\"b\",\"key\":\"k\",\"secret\":\"s\"}]"));
}

TEST_CASE("webhook config: event_types, filters, headers (reserved names "
          "dropped), max_request_size and webhook_vacated_delay of an app")
{
    app_registry r;
    good_table(r);
    const app *a = r.find("a");
    CHECK(a != nullptr);
    CHECK(a->max_request_size == 65536);
    CHECK(a->webhook_vacated_delay == 3000);
    CHECK(a->webhooks.size() == 2);
    CHECK(a->webhook_events == webhook_all_events);
    const webhook_config &w0 = a->webhooks[0];
    CHECK(w0.events == webhook_all_events && w0.prefix.empty()
          && w0.suffix.empty() && w0.headers.empty());
    const webhook_config &w1 = a->webhooks[1];
    CHECK(w1.events == (webhook_member_added | webhook_cache_miss));
    CHECK_EQ(w1.prefix, "presence-");
    CHECK_EQ(w1.suffix, "");
    CHECK(w1.headers.size() == 2);
    CHECK_EQ(w1.headers[0].first, "X-A");
    CHECK_EQ(w1.headers[0].second, "1");
    CHECK_EQ(w1.headers[1].first, "X-B");
    CHECK_EQ(w1.headers[1].second, "two words");
    CHECK(w1.wants(webhook_member_added, "presence-x"));
    CHECK(!w1.wants(webhook_member_added, "private-x"));
    CHECK(!w1.wants(webhook_member_removed, "presence-x"));
}

TEST_CASE("webhook config: an app without webhooks or limits has the "
          "defaults")
{
    app_registry r;
    good_table(r);
    const app *b = r.find("b");
    CHECK(b != nullptr && b->webhooks.empty() && b->webhook_events == 0);
    CHECK(b->max_request_size == 0 && b->webhook_vacated_delay == 0);
}

TEST_CASE("webhook config: a suffix filter takes the channels ending in it, "
          "for its event types only")
{
    webhook_config sfx;
    sfx.suffix = "-x";
    sfx.events = webhook_channel_occupied;
    CHECK(sfx.wants(webhook_channel_occupied, "a-x"));
    CHECK(!sfx.wants(webhook_channel_occupied, "a-y"));
    CHECK(!sfx.wants(webhook_channel_vacated, "a-x"));
}

TEST_CASE("webhook config: bad webhooks and limits are refused and the "
          "table stays")
{
    app_registry r;
    good_table(r);
    const char *bad[] = {
        "[{\"id\":\"a\",\"key\":\"k\",\"secret\":\"s\",\"webhooks\":{}}]",
        "[{\"id\":\"a\",\"key\":\"k\",\"secret\":\"s\",\"webhooks\":[1]}]",
        "[{\"id\":\"a\",\"key\":\"k\",\"secret\":\"s\",\"webhooks\":[{}]}]",
        "[{\"id\":\"a\",\"key\":\"k\",\"secret\":\"s\",\"webhooks\":"
        "[{\"url\":\"http://h/\",\"event_types\":[]}]}]",
        "[{\"id\":\"a\",\"key\":\"k\",\"secret\":\"s\",\"webhooks\":"
        "[{\"url\":\"http://h/\",\"event_types\":[\"channel_occupied\",1]}]}]",
        "[{\"id\":\"a\",\"key\":\"k\",\"secret\":\"s\",\"webhooks\":"
        "[{\"url\":\"http://h/\",\"event_types\":\"channel_occupied\"}]}]",
        "[{\"id\":\"a\",\"key\":\"k\",\"secret\":\"s\",\"webhooks\":"
        "[{\"url\":\"http://h/\",\"filter\":[]}]}]",
        "[{\"id\":\"a\",\"key\":\"k\",\"secret\":\"s\",\"webhooks\":"
        "[{\"url\":\"http://h/\",\"filter\":"
        "{\"channel_name_starts_with\":1}}]}]",
        "[{\"id\":\"a\",\"key\":\"k\",\"secret\":\"s\",\"webhooks\":"
        "[{\"url\":\"http://h/\",\"headers\":{\"X\":1}}]}]",
        "[{\"id\":\"a\",\"key\":\"k\",\"secret\":\"s\",\"webhooks\":"
        "[{\"url\":\"http://h/\",\"headers\":{\"X Y\":\"1\"}}]}]",
        "[{\"id\":\"a\",\"key\":\"k\",\"secret\":\"s\",\"webhooks\":"
        "[{\"url\":\"http://h/\",\"headers\":{\"X\":\"a\\nb\"}}]}]",
        "[{\"id\":\"a\",\"key\":\"k\",\"secret\":\"s\","
        "\"webhook_vacated_delay\":1.5}]",
        "[{\"id\":\"a\",\"key\":\"k\",\"secret\":\"s\","
        "\"webhook_vacated_delay\":3600001}]",
        "[{\"id\":\"a\",\"key\":\"k\",\"secret\":\"s\","
        "\"webhook_vacated_delay\":\"1s\"}]",
        "[{\"id\":\"a\",\"key\":\"k\",\"secret\":\"s\","
        "\"max_request_size\":0}]",
        "[{\"id\":\"a\",\"key\":\"k\",\"secret\":\"s\","
        "\"max_request_size\":2147483648}]",
    };
    for (const char *apps : bad) {
        if (update(r, 2, apps)) {
            fail("accepted: %s", apps);
        }
    }
    // the table of conf_time 1 stays
    CHECK(r.conf_time() == 1 && r.find("a") != nullptr);
    CHECK(r.find("a")->webhooks.size() == 2);
}

TEST_CASE("webhook config: the retry backoff and the request body")
{
    const int expected[] = {1, 2, 4, 8, 16, 32, 60, 60};
    for (int n = 1; n <= 8; n++) {
        CHECK(webhook_sender::backoff(n).count() == expected[n - 1]);
    }
    std::deque<std::string> events = {"{\"a\":1}", "{\"b\":2}", "{\"c\":3}"};
    CHECK_EQ(webhook_body(1700000000123, events, 2),
             "{\"time_ms\":1700000000123,\"events\":[{\"a\":1},{\"b\":2}]}");
    CHECK_EQ(webhook_body(5, events, 1),
             "{\"time_ms\":5,\"events\":[{\"a\":1}]}");
}

} // namespace

int main(int argc, char **argv)
{
    return test_main(argc, argv, "test_webhook_config", false);
}
