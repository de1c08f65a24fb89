// The broker's HTTP API for channels, users and terminate_connections
// without nginx: each case starts pusher-broker itself (argv[1]) with
// temporary sockets and a unique shm name, plays two nginx workers on the
// control socket (HELLO, OCCUPANCY, PRESENCE_JOIN) and sends signed
// HTTP/1.1 requests over the API's unix socket, signed both the way the
// Node SDK does (raw query values) and the PHP SDK does (%-encoded
// values).  It checks exact statuses and JSON bodies, the TERMINATE ring
// record, and the ring records of coalesced channels (held events write
// nothing until their window ends).

#include <algorithm>
#include <chrono>
#include <ctime>
#include <map>

#include "pusher_auth.h"

#include "broker_test.hpp"

namespace {

using worker = fake_worker;

void hello(worker &w, int pid)
{
    ::hello(w, pid,
            "[{\"id\":\"app1\",\"key\":\"key1\",\"secret\":\"secret1\","
            "\"subscription_count\":true,\"cache_ttl\":60,"
            "\"coalesce\":[{\"pattern\":\"coal-*\",\"window\":600}]},"
            "{\"id\":\"app2\",\"key\":\"key2\",\"secret\":\"secret2\"}]");
}

// ---- the ring -----------------------------------------------------------

// TERMINATE payloads, raw
std::deque<std::string> g_terminates;

// pump_ring()'s hook: TERMINATE records to g_terminates
bool keep_terminate(std::int32_t type, const std::uint8_t *data,
                    std::uint32_t len)
{
    if (type != PUSHER_RING_TERMINATE) {
        return false;
    }
    g_terminates.emplace_back(reinterpret_cast<const char *>(data), len);
    return true;
}

// A CACHE_GET: a reply and no record, so once it arrives everything sent
// before on this connection has been handled.
void barrier(worker &w)
{
    w.send(PUSHER_CTL_CACHE_GET, fields({"app1", "cache-barrier", "9.9"}));
    for (;;) {
        std::vector<std::string> f = next_answer();
        if (f.size() == 3 && f[1] == "cache-barrier") {
            break;
        }
    }
}

// ---- HTTP over the API socket -------------------------------------------

struct http_reply {
    int status = 0;
    std::string body;
};

http_reply http(const std::string &method, const std::string &target,
                const std::string &body = "")
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", g_api.c_str());
    CHECK(connect(fd, reinterpret_cast<sockaddr *>(&sa), sizeof(sa)) == 0);
    std::string req = method + " " + target + " HTTP/1.1\r\nHost: localhost"
                      "\r\nConnection: close\r\n";
    if (!body.empty() || method == "POST") {
        req += "Content-Type: application/json\r\nContent-Length: "
               + std::to_string(body.size()) + "\r\n";
    }
    req += "\r\n" + body;
    write_all(fd, req);

    std::string in;
    for (;;) {
        pollfd pfd{fd, POLLIN, 0};
        CHECK(poll(&pfd, 1, 2000) == 1);
        char buf[4096];
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        CHECK(n >= 0);
        if (n == 0) {
            break;
        }
        in.append(buf, static_cast<std::size_t>(n));
    }
    close(fd);

    http_reply r;
    CHECK(in.starts_with("HTTP/1.1 "));
    r.status = std::atoi(in.c_str() + 9);
    std::size_t end = in.find("\r\n\r\n");
    CHECK(end != std::string::npos);
    r.body = in.substr(end + 4);
    return r;
}

enum class sdk { node, php };

// rawurlencode, as PHP's Guzzle sends query values
std::string url_encode(const std::string &s)
{
    static const char hex[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
            || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'
            || c == '~')
        {
            out.push_back(static_cast<char>(c));
        } else {
            out.push_back('%');
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 15]);
        }
    }
    return out;
}

// a signed request to the app: sign_path is what the client signs (the
// path sent by default); params are the user's query values, unencoded
http_reply signed_request(const std::string &method, const std::string &path,
                          std::map<std::string, std::string> params,
                          const std::string &body = "", sdk style = sdk::node,
                          const std::string &key = "key1",
                          const std::string &secret = "secret1",
                          const std::string &sign_path = "")
{
    params["auth_key"] = key;
    params["auth_timestamp"] = std::to_string(std::time(nullptr));
    params["auth_version"] = "1.0";
    if (!body.empty()) {
        char md5[32];
        pusher_md5_hex(reinterpret_cast<const std::uint8_t *>(body.data()),
                       body.size(), md5);
        params["body_md5"] = std::string(md5, 32);
    }
    std::string sorted, sent;
    for (const auto &[k, v] : params) {     // std::map: sorted by key
        sorted += (sorted.empty() ? "" : "&") + k + "=" + v;
        sent += (sent.empty() ? "" : "&") + k + "="
                + (style == sdk::php ? url_encode(v) : v);
    }
    std::string to_sign = method + "\n"
                          + (sign_path.empty() ? path : sign_path) + "\n"
                          + sorted;
    char sig[PUSHER_HMAC_HEX_LEN];
    pusher_hmac_sha256_hex(
        reinterpret_cast<const std::uint8_t *>(secret.data()), secret.size(),
        reinterpret_cast<const std::uint8_t *>(to_sign.data()), to_sign.size(),
        sig);
    sent += "&auth_signature=" + std::string(sig, PUSHER_HMAC_HEX_LEN);
    return http(method, path + "?" + sent, body);
}

#define EXPECT_HTTP(reply, code, text)                                       \
    do {                                                                     \
        http_reply r_ = (reply);                                             \
        if (r_.status != (code)) {                                           \
            fail("%s:%d: status %d, expected %d; body %s", __FILE__,        \
                 __LINE__, r_.status, (code), r_.body.c_str());              \
        }                                                                    \
        CHECK_EQ(r_.body, (text));                                           \
    } while (0)

http_reply get(const std::string &path,
               std::map<std::string, std::string> params = {},
               sdk style = sdk::node)
{
    return signed_request("GET", "/apps/app1" + path, std::move(params), "",
                          style);
}

http_reply post(const std::string &path, const std::string &body,
                sdk style = sdk::node)
{
    return signed_request("POST", "/apps/app1" + path, {}, body, style);
}

std::string err(const std::string &message, int code)
{
    return "{\"error\":\"" + message + "\",\"code\":" + std::to_string(code)
           + "}";
}

// discards the events and answers in the ring
void drain()
{
    pump_ring();
    g_records.clear();
    g_answers.clear();
}

void join(worker &w, const std::string &channel, const std::string &socket,
          const std::string &user_id)
{
    w.send(PUSHER_CTL_PRESENCE_JOIN,
           fields({"app1", channel, socket, user_id, "", "0", ""}));
}

// the next record of an event "e" (the subscription_count events of the
// occupancy changes are skipped)
record next_event()
{
    for (;;) {
        record r = next_record();
        if (!r.json.starts_with("{\"event\":\"pusher_internal:")) {
            CHECK(r.json.starts_with("{\"event\":\"e\""));
            return r;
        }
    }
}

void no_event()
{
    record r;
    while (try_record(r)) {
        if (!r.json.starts_with("{\"event\":\"pusher_internal:")) {
            fail("unexpected ring record: %s", r.json.c_str());
        }
    }
}

// ---- the steps ----------------------------------------------------------

void setup(worker &a, worker &b)
{
    a.occupancy("app1", "room", "2");
    b.occupancy("app1", "room", "1");
    a.occupancy("app1", "presence-room", "2");
    b.occupancy("app1", "presence-room", "1");
    a.occupancy("app1", "presence-other", "1");
    a.occupancy("app1", "private-a", "1");
    b.occupancy("app1", "cache-room", "1");
    a.occupancy("app1", "gone", "1");
    a.occupancy("app1", "gone", "0");
    b.occupancy("app2", "app2-only", "1");
    // u1 twice (two sockets), then user 7 given as a JSON number
    // (two connections: the barrier fixes the order of the joins)
    join(a, "presence-room", "1.1", "\"u1\"");
    barrier(a);
    join(b, "presence-room", "2.1", "7");
    barrier(b);
    join(a, "presence-room", "1.2", "\"u1\"");
    join(a, "presence-other", "1.3", "\"x\\\"y\"");
    barrier(a);
    barrier(b);
    drain();
}

void list_channels()
{
    EXPECT_HTTP(get("/channels"), 200,
                "{\"channels\":{\"cache-room\":{},\"presence-other\":{},"
                "\"presence-room\":{},\"private-a\":{},\"room\":{}}}");
    EXPECT_HTTP(get("/channels", {{"filter_by_prefix", "r"}}), 200,
                "{\"channels\":{\"room\":{}}}");
    EXPECT_HTTP(get("/channels", {{"filter_by_prefix", "nothing-"}}), 200,
                "{\"channels\":{}}");
    std::string users = "{\"channels\":{\"presence-other\":{\"user_count\":1},"
                        "\"presence-room\":{\"user_count\":2}}}";
    EXPECT_HTTP(get("/channels", {{"filter_by_prefix", "presence-"},
                                  {"info", "user_count"}}),
                200, users);
    EXPECT_HTTP(get("/channels", {{"filter_by_prefix", "presence-"},
                                  {"info", "user_count"}}, sdk::php),
                200, users);
    std::string need = err("info=user_count requires "
                           "filter_by_prefix=presence-", 400);
    EXPECT_HTTP(get("/channels", {{"info", "user_count"}}), 400, need);
    EXPECT_HTTP(get("/channels", {{"filter_by_prefix", "pr"},
                                  {"info", "user_count"}}), 400, need);
    CHECK(get("/channels", {{"info", "subscription_count"}}).status == 400);
    CHECK(get("/channels", {{"info", "bogus"}}).status == 400);
    // the other app's channels stay apart
    EXPECT_HTTP(signed_request("GET", "/apps/app2/channels", {}, "", sdk::node,
                               "key2", "secret2"),
                200, "{\"channels\":{\"app2-only\":{}}}");
}

void channel_info()
{
    EXPECT_HTTP(get("/channels/room"), 200, "{\"occupied\":true}");
    EXPECT_HTTP(get("/channels/room", {{"info", "subscription_count"}}), 200,
                "{\"occupied\":true,\"subscription_count\":3}");
    EXPECT_HTTP(get("/channels/nobody", {{"info", "subscription_count"}}), 200,
                "{\"occupied\":false,\"subscription_count\":0}");
    EXPECT_HTTP(get("/channels/gone"), 200, "{\"occupied\":false}");
    EXPECT_HTTP(get("/channels/presence-room", {{"info", "user_count"}}), 200,
                "{\"occupied\":true,\"user_count\":2}");
    // Pusher documents both for a presence channel
    EXPECT_HTTP(get("/channels/presence-room",
                    {{"info", "user_count,subscription_count"}}),
                200,
                "{\"occupied\":true,\"user_count\":2,"
                "\"subscription_count\":3}");
    EXPECT_HTTP(get("/channels/room", {{"info", "user_count"}}), 400,
                err("info=user_count is only supported for presence "
                    "channels", 400));
    EXPECT_HTTP(get("/channels/room", {{"info", "cache"}}), 400,
                err("info=cache is only supported for cache channels", 400));
    EXPECT_HTTP(get("/channels/room", {{"info", "bogus"}}), 400,
                err("Unknown info attribute: bogus", 400));
    EXPECT_HTTP(get("/channels/a%20b"), 400,
                err("Invalid channel name: a b", 400));
    EXPECT_HTTP(get("/channels/a%FF"), 400, err("Invalid channel name", 400));
    EXPECT_HTTP(get("/channels/a%2Fb"), 400,
                err("Invalid channel name: a/b", 400));
    EXPECT_HTTP(get("/channels/" + std::string(201, 'x')), 400,
                err("Invalid channel name: " + std::string(200, 'x') + "...",
                    400));

    // a cache channel: nothing cached yet, then the last event's data
    EXPECT_HTTP(get("/channels/cache-room",
                    {{"info", "subscription_count,cache"}}, sdk::php),
                200, "{\"occupied\":true,\"subscription_count\":1}");
    EXPECT_HTTP(post("/events", "{\"name\":\"e\",\"data\":\"{\\\"x\\\":1}\","
                                "\"channel\":\"cache-room\"}"),
                200, "{}");
    EXPECT_HTTP(get("/channels/cache-room",
                    {{"info", "subscription_count,cache"}}, sdk::php),
                200,
                "{\"occupied\":true,\"subscription_count\":1,\"cache\":"
                "{\"data\":\"{\\\"x\\\":1}\",\"ttl\":60}}");
    EXPECT_HTTP(get("/channels/cache-room", {{"info", "cache"}}), 200,
                "{\"occupied\":true,\"cache\":{\"data\":\"{\\\"x\\\":1}\","
                "\"ttl\":60}}");
    EXPECT_HTTP(get("/channels/cache-empty", {{"info", "cache"}}), 200,
                "{\"occupied\":false}");

    // '#' in a channel travels as %23; the encoded or decoded path signs
    EXPECT_HTTP(get("/channels/%23server-to-user-u1"), 200,
                "{\"occupied\":false}");
    EXPECT_HTTP(signed_request("GET", "/apps/app1/channels/%23server-to-"
                                      "user-u1", {}, "", sdk::node, "key1",
                               "secret1",
                               "/apps/app1/channels/#server-to-user-u1"),
                200, "{\"occupied\":false}");
    drain();
}

void channel_users()
{
    EXPECT_HTTP(get("/channels/presence-room/users"), 200,
                "{\"users\":[{\"id\":\"u1\"},{\"id\":\"7\"}]}");
    EXPECT_HTTP(get("/channels/presence-other/users"), 200,
                "{\"users\":[{\"id\":\"x\\\"y\"}]}");
    EXPECT_HTTP(get("/channels/presence-none/users"), 200, "{\"users\":[]}");
    EXPECT_HTTP(get("/channels/room/users"), 400,
                err("The channel must be a presence channel", 400));
    EXPECT_HTTP(get("/channels/a%20b/users"), 400,
                err("Invalid channel name: a b", 400));
}

void events_info()
{
    drain();
    std::string body = "{\"name\":\"e\",\"data\":\"d\",\"channels\":[\"room\","
                       "\"presence-room\",\"private-a\"],\"info\":"
                       "\"user_count,subscription_count\"}";
    // both for a presence channel, as Pusher documents
    std::string both = "{\"channels\":{\"room\":{\"subscription_count\":3},"
                       "\"presence-room\":{\"user_count\":2,"
                       "\"subscription_count\":3},"
                       "\"private-a\":{\"subscription_count\":1}}}";
    EXPECT_HTTP(post("/events", body), 200, both);
    EXPECT_HTTP(post("/events", body, sdk::php), 200, both);
    EXPECT_HTTP(post("/events", "{\"name\":\"e\",\"data\":\"d\",\"channels\":"
                                "[\"room\",\"presence-room\"],\"info\":"
                                "\"user_count\"}"),
                200,
                "{\"channels\":{\"room\":{},\"presence-room\":"
                "{\"user_count\":2}}}");
    EXPECT_HTTP(post("/events", "{\"name\":\"e\",\"data\":\"d\",\"channel\":"
                                "\"room\"}"),
                200, "{}");
    for (int i = 0; i < 3 + 3 + 2 + 1; i++) {
        next_event();
    }
    // a bad info publishes nothing
    EXPECT_HTTP(post("/events", "{\"name\":\"e\",\"data\":\"d\",\"channel\":"
                                "\"room\",\"info\":\"cache\"}"),
                400, err("Unknown info attribute: cache", 400));
    EXPECT_HTTP(post("/events", "{\"name\":\"e\",\"data\":\"d\",\"channel\":"
                                "\"room\",\"info\":1}"),
                400, err("\\\"info\\\" must be a string", 400));

    std::string batch =
        "{\"batch\":[{\"name\":\"e\",\"data\":\"d\",\"channel\":\"room\","
        "\"info\":\"subscription_count\"},{\"name\":\"e\",\"data\":\"d\","
        "\"channel\":\"presence-room\",\"info\":\"user_count,"
        "subscription_count\"},{\"name\":\"e\",\"data\":\"d\",\"channel\":"
        "\"private-a\"},{\"name\":\"e\",\"data\":\"d\",\"channel\":\"room\","
        "\"info\":\"user_count\"}]}";
    EXPECT_HTTP(post("/batch_events", batch), 200,
                "{\"batch\":[{\"subscription_count\":3},{\"user_count\":2,"
                "\"subscription_count\":3},{},{}]}");
    EXPECT_HTTP(post("/batch_events", "{\"batch\":[{\"name\":\"e\",\"data\":"
                                      "\"d\",\"channel\":\"room\"}]}"),
                200, "{}");
    EXPECT_HTTP(post("/batch_events", "{\"batch\":[{\"name\":\"e\",\"data\":"
                                      "\"d\",\"channel\":\"room\"},{\"name\":"
                                      "\"e\",\"data\":\"d\",\"channel\":"
                                      "\"room\",\"info\":\"x\"}]}"),
                400, err("Unknown info attribute: x", 400));
    for (int i = 0; i < 5; i++) {
        next_event();
    }
    no_event();

    // a long invalid name is quoted back cut where a character ends:
    // "a" and 99 characters of 2 bytes, 199 of the 200 bytes shown
    std::string e_acute = "\xc3\xa9";
    std::string name = "a";
    for (int i = 0; i < 150; i++) {
        name += e_acute;
    }
    std::string shown = "a";
    for (int i = 0; i < 99; i++) {
        shown += e_acute;
    }
    EXPECT_HTTP(post("/events", "{\"name\":\"e\",\"data\":\"d\",\"channel\":\""
                                + name + "\"}"),
                400, err("Invalid channel name: " + shown + "...", 400));
    no_event();
}

void terminate()
{
    drain();
    EXPECT_HTTP(post("/users/u%201/terminate_connections", "{}"), 200, "{}");
    EXPECT_HTTP(post("/users/42/terminate_connections", "{}", sdk::php), 200,
                "{}");
    for (int i = 0; i < 400 && g_terminates.size() < 2; i++) {
        pump_ring();
        usleep(5000);
    }
    CHECK(g_terminates.size() == 2);
    // app_id, user_id as control fields: u32 length + bytes each
    CHECK_EQ(g_terminates[0],
             std::string("\x04\0\0\0" "app1" "\x03\0\0\0" "u 1", 15));
    CHECK_EQ(g_terminates[1],
             std::string("\x04\0\0\0" "app1" "\x02\0\0\0" "42", 14));
    g_terminates.clear();

    EXPECT_HTTP(post("/users//terminate_connections", "{}"), 400,
                err("Invalid user id", 400));
    EXPECT_HTTP(post("/users/" + std::string(201, 'u')
                         + "/terminate_connections", "{}"),
                400, err("Invalid user id", 400));
    EXPECT_HTTP(post("/users/" + std::string(200, 'u')
                         + "/terminate_connections", "{}"),
                200, "{}");
    EXPECT_HTTP(get("/users/u1/terminate_connections"), 405,
                err("Method not allowed", 405));
    // unsigned or badly signed: 401, nothing published
    CHECK(http("POST", "/apps/app1/users/u1/terminate_connections", "{}")
              .status == 401);
    CHECK(signed_request("POST", "/apps/app1/users/u1/terminate_connections",
                         {}, "{}", sdk::node, "key1", "wrong")
              .status == 401);
    for (int i = 0; i < 400 && g_terminates.empty(); i++) {
        pump_ring();
        usleep(5000);
    }
    CHECK(g_terminates.size() == 1);
    CHECK_EQ(g_terminates[0].substr(8, 4), std::string("\xc8\0\0\0", 4));
    pump_ring();
    CHECK(g_terminates.size() == 1);
}

void routing()
{
    EXPECT_HTTP(get("/nope"), 404, err("Not found", 404));
    EXPECT_HTTP(get("/channels/room/users/x"), 404, err("Not found", 404));
    EXPECT_HTTP(get("/channels/room/nope"), 404, err("Not found", 404));
    EXPECT_HTTP(get("/users/u1"), 404, err("Not found", 404));
    EXPECT_HTTP(post("/channels", "{}"), 405, err("Method not allowed", 405));
    EXPECT_HTTP(post("/channels/room/users", "{}"), 405,
                err("Method not allowed", 405));
    EXPECT_HTTP(get("/events"), 405, err("Method not allowed", 405));
    EXPECT_HTTP(signed_request("GET", "/apps/app9/channels", {}),
                404, err("Unknown app", 404));
    CHECK(http("GET", "/apps/app1/channels").status == 401);
}

// coalescing happens before the ring: a held event writes nothing; the
// latest is written when the window ends, with its own socket_id, for its
// channel alone; the other channels of a trigger go at once
void coalescing()
{
    using clock = std::chrono::steady_clock;
    drain();
    auto ms_since = [](clock::time_point t) {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
                   clock::now() - t).count();
    };

    clock::time_point t0 = clock::now();
    EXPECT_HTTP(post("/events", R"({"name":"e","channel":"coal-a","data":"1"})"),
                200, "{}");
    record r = next_event();
    CHECK_EQ(r.channel, "coal-a");
    CHECK_EQ(r.socket_id, "");
    CHECK_EQ(r.json, R"({"event":"e","channel":"coal-a","data":"1"})");

    EXPECT_HTTP(post("/events", R"({"name":"e","channel":"coal-a","data":"2",)"
                                R"("socket_id":"1.1"})"),
                200, "{}");
    EXPECT_HTTP(post("/events", R"({"name":"e","channels":["coal-a","plain-c"],)"
                                R"("data":"3","socket_id":"2.2"})"),
                200, "{}");
    // plain-c at once, alone in its record
    r = next_event();
    CHECK_EQ(r.channel, "plain-c");
    CHECK_EQ(r.socket_id, "2.2");
    CHECK_EQ(r.json, R"({"event":"e","channel":"plain-c","data":"3"})");
    CHECK(g_records.empty());
    // nothing else while the window lasts
    CHECK(ms_since(t0) < 450);
    usleep(100000);
    no_event();

    // its end: the latest, with the latest socket_id; "2" never
    r = next_event();
    CHECK(ms_since(t0) >= 590);
    CHECK_EQ(r.channel, "coal-a");
    CHECK_EQ(r.socket_id, "2.2");
    CHECK_EQ(r.json, R"({"event":"e","channel":"coal-a","data":"3"})");
    CHECK(g_records.empty());

    // that opened a window to which nothing came: then at once again
    usleep(700000);
    no_event();
    EXPECT_HTTP(post("/events", R"({"name":"e","channel":"coal-a","data":"4"})"),
                200, "{}");
    r = next_event();
    CHECK_EQ(r.json, R"({"event":"e","channel":"coal-a","data":"4"})");

    // a batch: each item on its own, by channel and name
    EXPECT_HTTP(post("/batch_events",
                     R"({"batch":[{"name":"e","channel":"coal-b","data":"1"},)"
                     R"({"name":"e","channel":"coal-b","data":"2"},)"
                     R"({"name":"e","channel":"coal-c","data":"1"},)"
                     R"({"name":"e","channel":"coal-b","data":"3"}]})"),
                200, "{}");
    r = next_event();
    CHECK_EQ(r.json, R"({"event":"e","channel":"coal-b","data":"1"})");
    r = next_event();
    CHECK_EQ(r.json, R"({"event":"e","channel":"coal-c","data":"1"})");
    r = next_event();
    CHECK_EQ(r.json, R"({"event":"e","channel":"coal-b","data":"3"})");
    usleep(700000);
    no_event();
}

// ---- the cases ----------------------------------------------------------

// a case's broker: two workers with setup()'s channels and members
// The apps come only from the file the nginx master wrote (README,
// "Trust"): a HELLO's own table is never taken, and a file the master did
// not write is not read
void master_only()
{
    std::string forged_table =
        "[{\"id\":\"app1\",\"key\":\"key1\",\"secret\":\"forged\"}]";
    auto secret_in_force = [] {
        CHECK(signed_request("GET", "/apps/app1/channels", {}, "", sdk::node,
                             "key1", "secret1").status == 200);
        CHECK(signed_request("GET", "/apps/app1/channels", {}, "", sdk::node,
                             "key1", "forged").status == 401);
    };

    // a process that can open the control socket says HELLO with a table
    // and a conf_time of its own: it is attached, the table stays
    worker x;
    x.fd = connect_control();
    CHECK(x.fd >= 0);
    x.send(PUSHER_CTL_HELLO, "{\"pid\":3001,\"conf_time\":9000000000000000,"
                             "\"apps\":" + forged_table + "}");
    CHECK(x.next().type == PUSHER_CTL_WELCOME);
    secret_in_force();
    x.close_fd();

    std::string path = g_control + ".apps";
    std::string no_table = "no app table from the nginx master: " + path;
    auto refused = [](std::int64_t conf_time) {
        worker w;
        w.fd = connect_control();
        CHECK(w.fd >= 0);
        w.send(PUSHER_CTL_HELLO, hello_text(3002, conf_time));
        return expect_refused(w.fd);
    };

    // another owner (a file put there by the workers' user)
    if (geteuid() == 0) {
        master_writes(7, forged_table);
        CHECK(chown(path.c_str(), 65534, 65534) == 0);
        CHECK_EQ(refused(7), no_table + ": owned by uid 65534, not by the "
                                        "nginx master's user (uid 0, "
                                        "--config-owner)");
        secret_in_force();
    }

    // writable by its group
    master_writes(8, forged_table);
    CHECK(chmod(path.c_str(), 0620) == 0);
    CHECK_EQ(refused(8), no_table + ": writable by others than its owner");
    secret_in_force();

    // a symbolic link to a file of the right owner
    master_writes(9, forged_table);
    CHECK(rename(path.c_str(), (path + ".real").c_str()) == 0);
    CHECK(symlink((path + ".real").c_str(), path.c_str()) == 0);
    CHECK_EQ(refused(9), no_table + ": " + std::strerror(ELOOP));
    secret_in_force();

    // none at all
    CHECK(unlink(path.c_str()) == 0);
    CHECK_EQ(refused(10), no_table + ": " + std::strerror(ENOENT));
    secret_in_force();
}

struct api_fixture {
    worker a, b;

    api_fixture()
    {
        hello(a, 2001);
        map_segment();
        hello(b, 2002);
        setup(a, b);
    }
};

TEST_CASE("api: GET channels lists occupied channels by prefix, user_count "
          "for presence only, apps apart")
{
    api_fixture f;
    list_channels();
}

TEST_CASE("api: GET channels/{name} answers occupied, counts and the cached "
          "event, and refuses bad names and info")
{
    api_fixture f;
    channel_info();
}

TEST_CASE("api: GET channels/{name}/users lists a presence channel's users "
          "in join order")
{
    api_fixture f;
    channel_users();
}

TEST_CASE("api: info on events and batch_events answers the counts, a bad "
          "info publishes nothing")
{
    api_fixture f;
    events_info();
}

TEST_CASE("api: terminate_connections writes a TERMINATE record when signed "
          "and a valid user id")
{
    api_fixture f;
    terminate();
}

TEST_CASE("api: unknown routes get 404, wrong methods 405, unsigned 401")
{
    api_fixture f;
    routing();
}

TEST_CASE("api: a coalesced channel writes the first event at once, nothing "
          "while its window lasts, and the latest when it ends")
{
    api_fixture f;
    coalescing();
}

TEST_CASE("api: the apps come only from the master's file: a HELLO's table "
          "is ignored; another owner, a writable file, a link or none are "
          "refused and the table stays")
{
    api_fixture f;
    master_only();
}

} // namespace

int main(int argc, char **argv)
{
    g_ring_hook = keep_terminate;
    return test_main(argc, argv, "test_api", true, "/tmp/pusher-api-XXXXXX",
                     "/pusher-api-test-");
}
