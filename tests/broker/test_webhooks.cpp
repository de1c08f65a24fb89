// Webhooks and the per-app request body limit without nginx: this test
// starts pusher-broker itself (argv[1]), plays nginx workers on the control
// socket (HELLO with "webhooks", OCCUPANCY, PRESENCE_JOIN/LEAVE,
// CLIENT_EVENT, CACHE_GET) and runs the webhook receiver, an HTTP/1.1
// server on 127.0.0.1 in a thread, that checks every request's headers and
// signature and keeps its events.  It checks the exact event objects, the
// event_types and channel filters, that apps and endpoints never mix, one
// request in flight per endpoint with the events that came meanwhile in
// the next one, a retry of the same batch after a 500, and the
// webhook_vacated_delay; then max_request_size (413) on the HTTP API.

#include <algorithm>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include "broker_test.hpp"
#include "pusher_auth.h"

namespace {

using worker = fake_worker;
using clock_type = std::chrono::steady_clock;

// ---- the receiver -------------------------------------------------------

struct hook_request {
    std::string target;
    std::map<std::string, std::string> headers;     // names lowercased
    std::string body;
    std::vector<std::string> events;                // unformatted JSON
    double time_ms = 0;
    clock_type::time_point at;
};

struct connection {
    int fd = -1;
    std::string in;
    bool held = false;      // a request waits for release()
};

class receiver {
public:
    // after a failed check, exit() finds the thread still running
    ~receiver()
    {
        if (thread_.joinable()) {
            thread_.detach();
        }
    }

    void start()
    {
        fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        CHECK(fd_ >= 0);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        CHECK(bind(fd_, reinterpret_cast<sockaddr *>(&sa), sizeof(sa)) == 0);
        CHECK(listen(fd_, 16) == 0);
        socklen_t len = sizeof(sa);
        CHECK(getsockname(fd_, reinterpret_cast<sockaddr *>(&sa), &len) == 0);
        port_ = ntohs(sa.sin_port);
        CHECK(pipe(wake_) == 0);
        thread_ = std::thread([this] { loop(); });
    }

    void stop()
    {
        {
            std::lock_guard lock(mu_);
            stop_ = true;
        }
        poke();
        thread_.join();
        for (auto &c : conns_) {
            close(c.fd);
        }
        close(fd_);
        close(wake_[0]);
        close(wake_[1]);
    }

    int port() const { return port_; }

    // the next request to path gets this status
    void fail_next(const std::string &path, int status)
    {
        std::lock_guard lock(mu_);
        fail_[path] = status;
    }

    // requests to path are answered only after release(path)
    void hold(const std::string &path)
    {
        std::lock_guard lock(mu_);
        hold_[path] = true;
    }

    void release(const std::string &path)
    {
        {
            std::lock_guard lock(mu_);
            hold_[path] = false;
        }
        poke();
    }

    // every request to path so far (path without the query)
    std::vector<hook_request> requests(const std::string &path)
    {
        std::lock_guard lock(mu_);
        return got_[path];
    }

    // waits until path has n requests
    std::vector<hook_request> wait_requests(const std::string &path,
                                            std::size_t n)
    {
        std::unique_lock lock(mu_);
        if (!cv_.wait_for(lock, std::chrono::seconds(5),
                          [&] { return got_[path].size() >= n; }))
        {
            fail("%s: %zu request(s), expected %zu", path.c_str(),
                 got_[path].size(), n);
        }
        return got_[path];
    }

    // waits until n requests to path have been answered
    void wait_answered(const std::string &path, std::size_t n)
    {
        std::unique_lock lock(mu_);
        if (!cv_.wait_for(lock, std::chrono::seconds(5),
                          [&] { return answered_[path] >= n; }))
        {
            fail("%s: %zu answer(s), expected %zu", path.c_str(),
                 answered_[path], n);
        }
    }

    // The next n events POSTed to path (over however many requests), in
    // order; they are taken.
    std::vector<std::string> take(const std::string &path, std::size_t n)
    {
        std::unique_lock lock(mu_);
        auto enough = [&] { return events_[path].size() >= n; };
        if (!cv_.wait_for(lock, std::chrono::seconds(5), enough)) {
            std::string have;
            for (const auto &e : events_[path]) {
                have += "\n  " + e;
            }
            fail("%s: %zu event(s), expected %zu:%s", path.c_str(),
                 events_[path].size(), n, have.c_str());
        }
        auto &q = events_[path];
        std::vector<std::string> out(q.begin(),
                                     q.begin() + static_cast<long>(n));
        q.erase(q.begin(), q.begin() + static_cast<long>(n));
        return out;
    }

    // no events are left at any path
    void expect_empty()
    {
        std::lock_guard lock(mu_);
        for (const auto &[path, q] : events_) {
            if (!q.empty()) {
                fail("%s: unexpected event %s", path.c_str(),
                     q.front().c_str());
            }
        }
    }

private:
    void poke() { CHECK(write(wake_[1], "x", 1) == 1); }

    void loop()
    {
        for (;;) {
            std::vector<pollfd> p;
            p.push_back({fd_, POLLIN, 0});
            p.push_back({wake_[0], POLLIN, 0});
            for (const auto &c : conns_) {
                p.push_back({c.fd, POLLIN, 0});
            }
            CHECK(poll(p.data(), p.size(), 1000) >= 0);
            {
                std::lock_guard lock(mu_);
                if (stop_) {
                    return;
                }
            }
            if (p[1].revents & POLLIN) {
                char buf[64];
                CHECK(read(wake_[0], buf, sizeof(buf)) > 0);
            }
            if (p[0].revents & POLLIN) {
                int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
                CHECK(c >= 0);
                conns_.push_back(connection{c, {}, false});
            }
            for (std::size_t i = 0; i < conns_.size(); i++) {
                connection &c = conns_[i];
                if (i + 2 < p.size()
                    && (p[i + 2].revents & (POLLIN | POLLHUP)))
                {
                    char buf[16384];
                    ssize_t n = read(c.fd, buf, sizeof(buf));
                    if (n <= 0) {
                        close(c.fd);
                        c.fd = -1;
                        continue;
                    }
                    c.in.append(buf, static_cast<std::size_t>(n));
                }
                serve(c);
            }
            std::erase_if(conns_, [](const connection &c) { return c.fd < 0; });
        }
    }

    // answers the complete requests in c.in unless one is held
    void serve(connection &c)
    {
        while (c.fd >= 0) {
            std::size_t end = c.in.find("\r\n\r\n");
            if (end == std::string::npos) {
                return;
            }
            hook_request r;
            std::string head = c.in.substr(0, end);
            std::size_t eol = head.find("\r\n");
            std::string line = head.substr(0, eol);
            CHECK(line.starts_with("POST ") && line.ends_with(" HTTP/1.1"));
            r.target = line.substr(5, line.size() - 5 - 9);
            std::size_t pos = eol;
            while (pos != std::string::npos && pos < head.size()) {
                std::size_t next = head.find("\r\n", pos + 2);
                std::string h = head.substr(pos + 2, next == std::string::npos
                                                         ? std::string::npos
                                                         : next - pos - 2);
                std::size_t colon = h.find(':');
                CHECK(colon != std::string::npos);
                std::string name = h.substr(0, colon);
                for (char &ch : name) {
                    ch = static_cast<char>(std::tolower(ch));
                }
                std::string value = h.substr(colon + 1);
                value.erase(0, value.find_first_not_of(' '));
                CHECK(r.headers.count(name) == 0);
                r.headers[name] = value;
                pos = next;
            }
            CHECK(r.headers.count("content-length") == 1);
            std::size_t len = std::stoul(r.headers["content-length"]);
            if (c.in.size() < end + 4 + len) {
                return;
            }
            std::string path = r.target.substr(0, r.target.find('?'));
            int status = 200;
            {
                std::lock_guard lock(mu_);
                if (hold_[path]) {
                    if (!c.held) {
                        c.held = true;
                        record(path, r, c.in.substr(end + 4, len));
                    }
                    return;
                }
                if (!c.held) {
                    record(path, r, c.in.substr(end + 4, len));
                }
                c.held = false;
                auto f = fail_.find(path);
                if (f != fail_.end()) {
                    status = f->second;
                    fail_.erase(f);
                    // a failed request's events are not delivered
                    auto &q = events_[path];
                    q.resize(q.size() - got_[path].back().events.size());
                }
                answered_[path]++;
                cv_.notify_all();
            }
            c.in.erase(0, end + 4 + len);
            std::string reply = "HTTP/1.1 " + std::to_string(status)
                                + (status == 200 ? " OK" : " Oops")
                                + "\r\nContent-Length: 2\r\n\r\nok";
            write_all(c.fd, reply);
        }
    }

    // under mu_
    void record(const std::string &path, hook_request &r, std::string body)
    {
        r.body = std::move(body);
        r.at = clock_type::now();
        cJSON *root = cJSON_ParseWithLength(r.body.data(), r.body.size());
        CHECK(root != nullptr);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "time_ms");
        const cJSON *events = cJSON_GetObjectItemCaseSensitive(root, "events");
        CHECK(cJSON_IsNumber(t) && cJSON_IsArray(events));
        CHECK(cJSON_GetArraySize(root) == 2);
        r.time_ms = t->valuedouble;
        const cJSON *e = nullptr;
        cJSON_ArrayForEach(e, events) {
            char *text = cJSON_PrintUnformatted(e);
            CHECK(text != nullptr);
            r.events.emplace_back(text);
            events_[path].emplace_back(text);
            cJSON_free(text);
        }
        CHECK(!r.events.empty());
        cJSON_Delete(root);
        got_[path].push_back(std::move(r));
        cv_.notify_all();
    }

    int fd_ = -1;
    int port_ = 0;
    int wake_[2] = {-1, -1};
    std::thread thread_;
    std::vector<connection> conns_;     // the receiver thread's
    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;
    std::map<std::string, int> fail_;
    std::map<std::string, bool> hold_;
    std::map<std::string, std::vector<hook_request>> got_;
    std::map<std::string, std::size_t> answered_;
    std::map<std::string, std::deque<std::string>> events_;
};

receiver g_hooks;

// ---- expected texts -----------------------------------------------------

std::string channel_event(const std::string &name, const std::string &channel)
{
    return "{\"name\":\"" + name + "\",\"channel\":\"" + channel + "\"}";
}

std::string occupied(const std::string &channel)
{
    return channel_event("channel_occupied", channel);
}

std::string vacated(const std::string &channel)
{
    return channel_event("channel_vacated", channel);
}

std::string member(const std::string &name, const std::string &channel,
                   const std::string &user_id)
{
    return "{\"name\":\"" + name + "\",\"channel\":\"" + channel
           + "\",\"user_id\":\"" + user_id + "\"}";
}

void expect_events(const std::string &path,
                   std::vector<std::string> expected, bool any_order = false)
{
    std::vector<std::string> got = g_hooks.take(path, expected.size());
    if (any_order) {
        std::sort(got.begin(), got.end());
        std::sort(expected.begin(), expected.end());
    }
    for (std::size_t i = 0; i < expected.size(); i++) {
        CHECK_EQ(got[i], expected[i]);
    }
}

// every request to path is signed for the app and carries the headers
void check_requests(const std::string &path, const std::string &key,
                    const std::string &secret, bool custom)
{
    std::vector<hook_request> list = g_hooks.requests(path);
    CHECK(!list.empty());
    for (hook_request &r : list) {
        char sig[PUSHER_HMAC_HEX_LEN];
        pusher_hmac_sha256_hex(
            reinterpret_cast<const std::uint8_t *>(secret.data()),
            secret.size(),
            reinterpret_cast<const std::uint8_t *>(r.body.data()),
            r.body.size(), sig);
        CHECK_EQ(r.headers["x-pusher-signature"],
                 std::string(sig, sizeof(sig)));
        CHECK_EQ(r.headers["x-pusher-key"], key);
        CHECK_EQ(r.headers["content-type"], "application/json");
        CHECK_EQ(r.headers["user-agent"], "ngx-pusher");
        CHECK(r.headers.count("host") == 1);
        CHECK_EQ(custom ? r.headers["x-custom"] : "", custom ? "v" : "");
        CHECK(custom || r.headers.count("x-custom") == 0);
        double now = static_cast<double>(
            std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::system_clock::now().time_since_epoch())
                .count());
        CHECK(r.time_ms > now - 60000 && r.time_ms <= now);
    }
}

// ---- the control socket -------------------------------------------------

// app4, for the collapse and drop cases: /churn takes everything,
// /churn-occupied channel_occupied of "churn..." only
std::string app4_json()
{
    std::string base = "http://127.0.0.1:" + std::to_string(g_hooks.port());
    return "{\"id\":\"app4\",\"key\":\"key4\",\"secret\":\"secret4\","
           "\"webhooks\":[{\"url\":\"" + base + "/churn\"},"
           "{\"url\":\"" + base + "/churn-occupied\",\"event_types\":"
           "[\"channel_occupied\"],"
           "\"filter\":{\"channel_name_starts_with\":\"churn\"}}]}";
}

std::string apps_json()
{
    std::string base = "http://127.0.0.1:" + std::to_string(g_hooks.port());
    std::string local = "http://localhost:" + std::to_string(g_hooks.port());
    return "[{\"id\":\"app1\",\"key\":\"key1\",\"secret\":\"secret1\","
           "\"webhooks\":["
           "{\"url\":\"" + base + "/all\",\"headers\":{\"X-Custom\":\"v\","
           "\"X-Pusher-Key\":\"forged\",\"Content-Type\":\"text/plain\"}},"
           "{\"url\":\"" + base + "/presence?x=1\",\"event_types\":"
           "[\"member_added\",\"member_removed\",\"client_event\"],"
           "\"filter\":{\"channel_name_starts_with\":\"presence-\"}},"
           "{\"url\":\"" + base + "/suffix\",\"event_types\":"
           "[\"channel_occupied\"],"
           "\"filter\":{\"channel_name_ends_with\":\"-x\"}}]},"
           "{\"id\":\"app2\",\"key\":\"key2\",\"secret\":\"secret2\","
           "\"webhook_vacated_delay\":300,\"webhooks\":["
           "{\"url\":\"" + local + "/app2\",\"event_types\":"
           "[\"channel_occupied\",\"channel_vacated\"]}]},"
           "{\"id\":\"app3\",\"key\":\"key3\",\"secret\":\"secret3\","
           "\"max_request_size\":1024}," + app4_json() + "]";
}

// after a reload: /all as it was, /presence gone, /suffix on "-z"
std::string reloaded_apps_json()
{
    std::string base = "http://127.0.0.1:" + std::to_string(g_hooks.port());
    std::string local = "http://localhost:" + std::to_string(g_hooks.port());
    return "[{\"id\":\"app1\",\"key\":\"key1\",\"secret\":\"secret1\","
           "\"webhooks\":["
           "{\"url\":\"" + base + "/all\",\"headers\":{\"X-Custom\":\"v\","
           "\"X-Pusher-Key\":\"forged\",\"Content-Type\":\"text/plain\"}},"
           "{\"url\":\"" + base + "/suffix\",\"event_types\":"
           "[\"channel_occupied\"],"
           "\"filter\":{\"channel_name_ends_with\":\"-z\"}}]},"
           "{\"id\":\"app2\",\"key\":\"key2\",\"secret\":\"secret2\","
           "\"webhook_vacated_delay\":300,\"webhooks\":["
           "{\"url\":\"" + local + "/app2\",\"event_types\":"
           "[\"channel_occupied\",\"channel_vacated\"]}]},"
           "{\"id\":\"app3\",\"key\":\"key3\",\"secret\":\"secret3\","
           "\"max_request_size\":1024}," + app4_json() + "]";
}

// a HELLO of a newer configuration
void hello_at(worker &w, int pid, int conf_time, const std::string &apps)
{
    w.fd = connect_control();
    CHECK(w.fd >= 0);
    master_writes(conf_time, apps);
    w.send(PUSHER_CTL_HELLO, hello_text(pid, conf_time));
    CHECK(w.next().type == PUSHER_CTL_WELCOME);
}

void occupancy(worker &w, const std::string &app, const std::string &channel,
               const std::string &count)
{
    w.occupancy(app, channel, count);
}

void join(worker &w, const std::string &channel, const std::string &socket,
          const std::string &user_id)
{
    w.send(PUSHER_CTL_PRESENCE_JOIN,
           fields({"app1", channel, socket, user_id, "", "0", ""}));
}

void leave(worker &w, const std::string &channel, const std::string &socket)
{
    w.send(PUSHER_CTL_PRESENCE_LEAVE, fields({"app1", channel, socket}));
}

void client_event(worker &w, const std::string &channel,
                  const std::string &socket, const std::string &json)
{
    w.send(PUSHER_CTL_CLIENT_EVENT, fields({"app1", channel, socket, json}));
}

// everything sent before on w's connection has been handled once the
// CACHE answer is in the ring (the miss goes to /all: taken here)
int g_barriers = 0;

void barrier(worker &w)
{
    std::string channel = "cache-barrier" + std::to_string(++g_barriers);
    w.send(PUSHER_CTL_CACHE_GET, fields({"app1", channel, "9.9"}));
    for (;;) {
        std::vector<std::string> f = next_answer();
        if (f.size() == 3 && f[1] == channel) {
            break;
        }
    }
}

void take_barrier(int n)
{
    expect_events("/all",
                  {channel_event("cache_miss",
                                 "cache-barrier" + std::to_string(n))});
}

// ---- HTTP over the API socket -------------------------------------------

int api_status(const std::string &request, std::string *body = nullptr)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", g_api.c_str());
    CHECK(connect(fd, reinterpret_cast<sockaddr *>(&sa), sizeof(sa)) == 0);
    write_all(fd, request);
    std::string in;
    for (;;) {
        pollfd pfd{fd, POLLIN, 0};
        CHECK(poll(&pfd, 1, 2000) == 1);
        char buf[4096];
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        in.append(buf, static_cast<std::size_t>(n));
    }
    close(fd);
    CHECK(in.starts_with("HTTP/1.1 "));
    if (body != nullptr) {
        std::size_t end = in.find("\r\n\r\n");
        CHECK(end != std::string::npos);
        *body = in.substr(end + 4);
    }
    return std::atoi(in.c_str() + 9);
}

int post(const std::string &app, std::size_t size, std::string *body = nullptr)
{
    std::string data(size, 'x');
    return api_status("POST /apps/" + app + "/events HTTP/1.1\r\nHost: x\r\n"
                      "Connection: close\r\nContent-Type: application/json\r\n"
                      "Content-Length: " + std::to_string(size) + "\r\n\r\n"
                      + data, body);
}

int post_chunked(const std::string &app, std::size_t size)
{
    char head[32];
    std::snprintf(head, sizeof(head), "%zx\r\n", size);
    return api_status("POST /apps/" + app + "/events HTTP/1.1\r\nHost: x\r\n"
                      "Connection: close\r\nContent-Type: application/json\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n" + head
                      + std::string(size, 'x') + "\r\n0\r\n\r\n");
}

// ---- occupancy churn and drops (app4) -----------------------------------

// control messages of app4 gathered into one write: 200,000 go to the
// broker in well under a second
struct burst {
    std::string out;

    void occupancy(const std::string &channel, const char *count)
    {
        out += framed(PUSHER_CTL_OCCUPANCY, fields({"app4", channel, count}));
    }

    void join(const std::string &channel, const std::string &socket,
              const std::string &user_id)
    {
        out += framed(PUSHER_CTL_PRESENCE_JOIN,
                      fields({"app4", channel, socket, user_id, "", "0", ""}));
    }

    void leave(const std::string &channel, const std::string &socket)
    {
        out += framed(PUSHER_CTL_PRESENCE_LEAVE,
                      fields({"app4", channel, socket}));
    }

    void client_event(const std::string &channel, const std::string &socket,
                      const std::string &json)
    {
        out += framed(PUSHER_CTL_CLIENT_EVENT,
                      fields({"app4", channel, socket, json}));
    }

    void send(worker &w)
    {
        write_all(w.fd, out);
        out.clear();
    }
};

// the broker's log lines about the full queues of app4's endpoint at path
std::vector<std::string> drop_lines(const std::string &path)
{
    std::string head = "pusher-broker: webhook http://127.0.0.1:"
                       + std::to_string(g_hooks.port()) + path
                       + " of app app4: queue full";
    std::vector<std::string> out;
    FILE *f = std::fopen(g_log.c_str(), "r");
    CHECK(f != nullptr);
    char buf[1024];
    while (std::fgets(buf, sizeof(buf), f) != nullptr) {
        std::string line(buf);
        if (line.starts_with(head)) {
            out.push_back(line.substr(0, line.find('\n')));
        }
    }
    std::fclose(f);
    return out;
}

// 100,000 subscribe/unsubscribe pairs of one channel while the endpoint is
// slow (its request held) leave one channel_occupied, the final state, in
// one of a few requests.  A presence channel occupied, joined, left and
// vacated every 1,000 pairs keeps all its member events, in order, between
// one channel_occupied and one channel_vacated: its own vacated-occupied
// pairs between them collapse too.  An endpoint that takes only
// channel_occupied gets the final one as well.
void churn_collapses(worker &a)
{
    g_hooks.hold("/churn");
    g_hooks.hold("/churn-occupied");
    occupancy(a, "app4", "churn-warm", "1");
    g_hooks.wait_requests("/churn", 1);
    g_hooks.wait_requests("/churn-occupied", 1);
    std::vector<std::string> expected = {occupied("churn-warm"),
                                         occupied("presence-churn")};
    burst b;
    for (int i = 0; i < 100000; i++) {
        b.occupancy("churn", "1");
        b.occupancy("churn", "0");
        if (i % 1000 == 999) {
            std::string user = "u" + std::to_string(i / 1000);
            b.occupancy("presence-churn", "1");
            b.join("presence-churn", "4.1", "\"" + user + "\"");
            b.leave("presence-churn", "4.1");
            b.occupancy("presence-churn", "0");
            expected.push_back(member("member_added", "presence-churn", user));
            expected.push_back(
                member("member_removed", "presence-churn", user));
        }
    }
    b.occupancy("churn", "1");
    b.send(a);
    barrier(a);
    expected.push_back(vacated("presence-churn"));
    expected.push_back(occupied("churn"));
    g_hooks.release("/churn");
    g_hooks.release("/churn-occupied");
    expect_events("/churn", expected);
    expect_events("/churn-occupied",
                  {occupied("churn-warm"), occupied("churn")});
    take_barrier(g_barriers);
    // the held request, then 203 events 100 a request
    CHECK(g_hooks.requests("/churn").size() == 1 + 3);
    CHECK(g_hooks.requests("/churn-occupied").size() == 2);
}

// The request in flight tells the endpoint "occupied": 100,000
// vacate/occupy pairs while it fails and waits to be retried (held once
// more) announce nothing again, and the final channel_vacated comes once,
// after the retry.
void failing_then_recovering(worker &a)
{
    std::size_t before = g_hooks.requests("/churn").size();
    g_hooks.hold("/churn");
    occupancy(a, "app4", "flap", "1");
    g_hooks.wait_requests("/churn", before + 1);
    g_hooks.fail_next("/churn", 500);
    g_hooks.release("/churn");
    g_hooks.wait_answered("/churn", before + 1);
    g_hooks.hold("/churn");
    burst b;
    for (int i = 0; i < 100000; i++) {
        b.occupancy("flap", "0");
        b.occupancy("flap", "1");
    }
    b.occupancy("flap", "0");
    b.send(a);
    barrier(a);
    g_hooks.wait_requests("/churn", before + 2);
    g_hooks.release("/churn");
    expect_events("/churn", {occupied("flap"), vacated("flap")});
    std::vector<hook_request> r = g_hooks.requests("/churn");
    CHECK(r.size() == before + 3);
    CHECK_EQ(r[before + 1].body, r[before].body);
    CHECK(r[before + 2].events.size() == 1);
    take_barrier(g_barriers);
}

// Both queues overflow while the endpoint is held: 10,007 client events
// and then 5 presence joins and leaves exceed the 10,000 of the other
// events by 17, and only client events (the oldest) go; 10,003 channels
// occupied on another worker exceed the occupancy queue by 3, its oldest,
// and push nothing else out.  The log counts exactly that, once at the
// first drop and once when the queue has drained.  The 3 channels the
// endpoint never heard of are not announced vacated.
void drops_are_counted(worker &a, worker &d)
{
    std::size_t before = g_hooks.requests("/churn").size();
    g_hooks.hold("/churn");
    occupancy(a, "app4", "drop-warm", "1");
    g_hooks.wait_requests("/churn", before + 1);
    std::vector<std::string> expected = {occupied("drop-warm")};
    burst b;
    for (int i = 1; i <= 10007; i++) {
        std::string e = "client-" + std::to_string(i);
        b.client_event("private-drops", "4.9",
                       "{\"event\":\"" + e
                           + "\",\"channel\":\"private-drops\",\"data\":{}}");
        if (i > 17) {
            expected.push_back(
                "{\"name\":\"client_event\",\"channel\":\"private-drops\","
                "\"event\":\"" + e + "\",\"data\":{},\"socket_id\":\"4.9\"}");
        }
    }
    for (int i = 0; i < 5; i++) {
        std::string user = "d" + std::to_string(i);
        std::string socket = "4." + std::to_string(10 + i);
        b.join("presence-drops", socket, "\"" + user + "\"");
        b.leave("presence-drops", socket);
        expected.push_back(member("member_added", "presence-drops", user));
        expected.push_back(member("member_removed", "presence-drops", user));
    }
    b.send(a);
    barrier(a);
    for (int i = 0; i < 10003; i++) {
        b.occupancy("d" + std::to_string(i), "1");
        if (i >= 3) {
            expected.push_back(occupied("d" + std::to_string(i)));
        }
    }
    b.send(d);
    barrier(d);
    g_hooks.release("/churn");
    expect_events("/churn", expected);
    take_barrier(g_barriers - 1);
    take_barrier(g_barriers);

    std::vector<std::string> lines;
    for (int i = 0; i < 200 && lines.size() < 2; i++) {
        usleep(10000);
        lines = drop_lines("/churn");
    }
    if (lines.size() != 2) {
        fail("%zu drop line(s) for /churn, expected 2", lines.size());
    }
    CHECK(lines[0].ends_with(
        "oldest dropped: client_event 1 (in all: client_event 1)"));
    CHECK(lines[1].ends_with("oldest dropped: channel_occupied 3, "
                             "client_event 16 (in all: channel_occupied 3, "
                             "client_event 17)"));

    std::vector<std::string> left;
    for (int i = 3; i < 10003; i++) {
        left.push_back(vacated("d" + std::to_string(i)));
    }
    d.close_fd();
    expect_events("/churn", left, true);
}

// ---- the steps ----------------------------------------------------------

// a case's broker and receiver: workers a, b and d on the apps of
// apps_json()
struct hooks_fixture {
    worker a, b, d;

    hooks_fixture()
    {
        g_hooks.start();
        std::string apps = apps_json();
        ::hello(a, 101, apps.c_str());
        ::hello(b, 102, apps.c_str());
        ::hello(d, 105, apps.c_str());
        map_segment();
    }
};

void step_occupied(hooks_fixture &f)
{
    worker &a = f.a, &b = f.b;
    // occupied on the first subscriber of the node, vacated after the last,
    // whichever worker they are on (vacated once occupied was sent: a pair
    // that is still queued collapses to nothing, churn_collapses())
    occupancy(a, "app1", "room", "1");
    occupancy(b, "app1", "room", "2");
    expect_events("/all", {occupied("room")});
    occupancy(a, "app1", "room", "0");
    occupancy(b, "app1", "room", "0");
    expect_events("/all", {vacated("room")});
}

void step_filters(hooks_fixture &f)
{
    worker &a = f.a;
    // the suffix filter and event_types: /suffix has occupied of "-x" only
    occupancy(a, "app1", "lobby-x", "1");
    occupancy(a, "app1", "lobby-y", "1");
    expect_events("/all", {occupied("lobby-x"), occupied("lobby-y")});
    expect_events("/suffix", {occupied("lobby-x")});
    occupancy(a, "app1", "lobby-x", "0");
    occupancy(a, "app1", "lobby-y", "0");
    expect_events("/all", {vacated("lobby-x"), vacated("lobby-y")});
}

void step_members(hooks_fixture &f)
{
    worker &a = f.a, &b = f.b;
    // members: once per user ("7" and 7 are one), to /all and to the
    // presence- endpoint
    join(a, "presence-room", "1.1", "7");
    join(b, "presence-room", "2.1", "\"7\"");
    join(a, "presence-room", "1.2", "\"u2\"");
    leave(a, "presence-room", "1.1");
    leave(b, "presence-room", "2.1");
    std::vector<std::string> members = {
        member("member_added", "presence-room", "7"),
        member("member_added", "presence-room", "u2"),
        member("member_removed", "presence-room", "7")};
    expect_events("/all", members);
    expect_events("/presence", members);
    // the query of its URL is kept
    CHECK_EQ(g_hooks.requests("/presence")[0].target, "/presence?x=1");
}

void step_client_events(hooks_fixture &f)
{
    worker &a = f.a;
    // client events: user_id (a string) on presence channels only, data as
    // the client sent it; /presence takes presence- channels only
    client_event(a, "presence-room", "1.2",
                 "{\"event\":\"client-typing\",\"channel\":\"presence-room\","
                 "\"data\":{\"a\":1},\"user_id\":\"u2\"}");
    client_event(a, "private-chat", "1.3",
                 "{\"event\":\"client-x\",\"channel\":\"private-chat\","
                 "\"data\":\"hi \\\"there\\\"\",\"user_id\":\"u2\"}");
    client_event(a, "presence-room", "1.2",
                 "{\"event\":\"client-n\",\"channel\":\"presence-room\","
                 "\"data\":[1,2],\"user_id\":12}");
    std::string typing =
        "{\"name\":\"client_event\",\"channel\":\"presence-room\","
        "\"event\":\"client-typing\",\"data\":{\"a\":1},"
        "\"socket_id\":\"1.2\",\"user_id\":\"u2\"}";
    std::string numeric =
        "{\"name\":\"client_event\",\"channel\":\"presence-room\","
        "\"event\":\"client-n\",\"data\":[1,2],"
        "\"socket_id\":\"1.2\",\"user_id\":\"12\"}";
    expect_events("/all",
                  {typing,
                   "{\"name\":\"client_event\",\"channel\":\"private-chat\","
                   "\"event\":\"client-x\",\"data\":\"hi \\\"there\\\"\","
                   "\"socket_id\":\"1.3\"}",
                   numeric});
    expect_events("/presence", {typing, numeric});
    leave(a, "presence-room", "1.2");
    expect_events("/all", {member("member_removed", "presence-room", "u2")});
    expect_events("/presence",
                  {member("member_removed", "presence-room", "u2")});
}

void step_cache_miss(hooks_fixture &f)
{
    worker &a = f.a;
    // cache_miss on a cache channel subscribe that finds nothing
    barrier(a);
    take_barrier(g_barriers);
}

void step_in_flight(hooks_fixture &f)
{
    worker &a = f.a;
    // one request in flight per endpoint; what comes meanwhile goes in the
    // next request, together
    g_hooks.hold("/all");
    std::size_t before = g_hooks.requests("/all").size();
    occupancy(a, "app1", "b1", "1");
    g_hooks.wait_requests("/all", before + 1);
    occupancy(a, "app1", "b2", "1");
    occupancy(a, "app1", "b3", "1");
    barrier(a);
    usleep(100000);
    CHECK(g_hooks.requests("/all").size() == before + 1);
    g_hooks.release("/all");
    std::vector<hook_request> held = g_hooks.wait_requests("/all", before + 2);
    CHECK(held[before].events.size() == 1);
    CHECK(held[before + 1].events.size() == 3);
    expect_events("/all", {occupied("b1"), occupied("b2"), occupied("b3")});
    take_barrier(g_barriers);
}

void step_counts_end(hooks_fixture &f)
{
    worker &b = f.b;
    // a worker's counts end with its connection
    occupancy(b, "app1", "solo", "1");
    expect_events("/all", {occupied("solo")});
    b.close_fd();
    expect_events("/all", {vacated("solo")});
}

void step_retry(hooks_fixture &f)
{
    worker &a = f.a;
    // app2 (its own endpoint, key and secret): a 500 is retried after a
    // second with the same body
    g_hooks.fail_next("/app2", 500);
    occupancy(a, "app2", "lobby", "1");
    std::vector<hook_request> r = g_hooks.wait_requests("/app2", 2);
    CHECK_EQ(r[1].body, r[0].body);
    CHECK(r[1].at - r[0].at >= std::chrono::milliseconds(900));
    expect_events("/app2", {occupied("lobby")});
    // a URL's host name is its Host header
    CHECK_EQ(g_hooks.requests("/app2")[0].headers["host"],
             "localhost:" + std::to_string(g_hooks.port()));
}

void step_vacated_delay(hooks_fixture &f)
{
    worker &a = f.a;
    // webhook_vacated_delay 300 ms: re-occupied within it, neither event;
    // else vacated after it
    occupancy(a, "app2", "lobby", "0");
    occupancy(a, "app2", "lobby", "1");
    barrier(a);
    usleep(400000);
    CHECK(g_hooks.requests("/app2").size() == 2);
    auto left = clock_type::now();
    occupancy(a, "app2", "lobby", "0");
    expect_events("/app2", {vacated("lobby")});
    CHECK(g_hooks.requests("/app2").back().at - left
          >= std::chrono::milliseconds(290));
    take_barrier(g_barriers);
}

void step_max_request_size(hooks_fixture &f)
{
    (void) f;
    // max_request_size: app3 1024 bytes, the others the broker's 1 MiB
    std::string err;
    CHECK(post("app3", 2048, &err) == 413);
    CHECK_EQ(err, "{\"error\":\"Request body is larger than 1024 bytes\","
                  "\"code\":413}");
    CHECK(post_chunked("app3", 2048) == 413);
    CHECK(post("app3", 1000) == 401);       // read; unsigned
    CHECK(post_chunked("app3", 1000) == 401);
    CHECK(post("app1", 2048) == 401);
    CHECK(post("app1", 2 * 1024 * 1024) == 413);
    CHECK(post("nope", 2048) != 413);
}

void step_reload(hooks_fixture &f)
{
    worker &a = f.a;
    // a reload: an unchanged endpoint keeps its queue, a removed one gets
    // nothing more, a changed one follows its new filter
    g_hooks.hold("/all");
    std::size_t before = g_hooks.requests("/all").size();
    occupancy(a, "app1", "r1", "1");
    g_hooks.wait_requests("/all", before + 1);
    occupancy(a, "app1", "r2", "1");
    barrier(a);
    worker c;
    hello_at(c, 104, 2, reloaded_apps_json());
    g_hooks.release("/all");
    expect_events("/all", {occupied("r1"), occupied("r2")});
    take_barrier(g_barriers);
    occupancy(a, "app1", "q-x", "1");
    occupancy(a, "app1", "q-z", "1");
    join(a, "presence-after", "1.5", "\"p\"");
    expect_events("/all", {occupied("q-x"), occupied("q-z"),
                           member("member_added", "presence-after", "p")});
    expect_events("/suffix", {occupied("q-z")});
    c.close_fd();
}

void step_bad_hello(hooks_fixture &f)
{
    worker &a = f.a;
    // a HELLO with a bad webhook is refused; the table stays
    const char *bad[] = {
        "[{\"id\":\"x\",\"key\":\"k\",\"secret\":\"s\",\"webhooks\":"
        "[{\"url\":\"ftp://127.0.0.1/\"}]}]",
        "[{\"id\":\"x\",\"key\":\"k\",\"secret\":\"s\",\"webhooks\":"
        "[{\"url\":\"http://127.0.0.1:99999/\"}]}]",
        "[{\"id\":\"x\",\"key\":\"k\",\"secret\":\"s\",\"webhooks\":"
        "[{\"url\":\"http://a@b/\"}]}]",
        "[{\"id\":\"x\",\"key\":\"k\",\"secret\":\"s\",\"webhooks\":"
        "[{\"url\":\"http://h/\",\"event_types\":[\"nope\"]}]}]",
        "[{\"id\":\"x\",\"key\":\"k\",\"secret\":\"s\",\"webhooks\":"
        "[{\"url\":\"http://h/\",\"headers\":{\"X\":\"a\\r\\nb\"}}]}]",
        "[{\"id\":\"x\",\"key\":\"k\",\"secret\":\"s\","
        "\"webhook_vacated_delay\":-1}]",
        "[{\"id\":\"x\",\"key\":\"k\",\"secret\":\"s\","
        "\"max_request_size\":0}]",
    };
    std::int64_t conf_time = 5;
    for (const char *apps_text : bad) {
        worker w;
        w.fd = connect_control();
        CHECK(w.fd >= 0);
        master_writes(conf_time, apps_text);
        w.send(PUSHER_CTL_HELLO, hello_text(103, conf_time++));
        CHECK(expect_refused(w.fd).starts_with("bad app table in "));
    }
    occupancy(a, "app1", "still", "1");
    expect_events("/all", {occupied("still")});
}

void step_full_queue(hooks_fixture &f)
{
    worker &a = f.a;
    // a full queue drops its oldest events: 10,050 client events and the
    // barrier's cache_miss while a request is in flight leave the newest
    // 10,000, sent 100 per request
    g_hooks.hold("/all");
    std::size_t before = g_hooks.requests("/all").size();
    auto whisper = [&](int i) {
        client_event(a, "private-q", "1.9",
                     "{\"event\":\"client-" + std::to_string(i)
                         + "\",\"channel\":\"private-q\",\"data\":{}}");
    };
    auto whispered = [](int i) {
        return "{\"name\":\"client_event\",\"channel\":\"private-q\","
               "\"event\":\"client-" + std::to_string(i)
               + "\",\"data\":{},\"socket_id\":\"1.9\"}";
    };
    whisper(0);
    g_hooks.wait_requests("/all", before + 1);
    for (int i = 1; i <= 10050; i++) {
        whisper(i);
    }
    barrier(a);
    g_hooks.release("/all");
    std::vector<std::string> kept = {whispered(0)};
    for (int i = 52; i <= 10050; i++) {
        kept.push_back(whispered(i));
    }
    expect_events("/all", kept);
    take_barrier(g_barriers);
    std::vector<hook_request> sent = g_hooks.requests("/all");
    CHECK(sent.size() >= before + 1 + 100);
    for (std::size_t i = before; i < sent.size(); i++) {
        CHECK(sent[i].events.size() <= 100);
    }
}

// every request to an endpoint so far was signed for its app and carried
// its headers; nothing else arrived anywhere.  left: the channel_vacated
// and member_removed of what the case left on worker a, when it goes.
void finish(hooks_fixture &f, const std::vector<std::string> &left = {})
{
    usleep(200000);
    g_hooks.expect_empty();
    if (!left.empty()) {
        f.a.close_fd();
        expect_events("/all", left, true);
    }
    struct endpoint {
        const char *path, *key, *secret;
        bool custom;
    };
    static const endpoint endpoints[] = {
        {"/all", "key1", "secret1", true},
        {"/presence", "key1", "secret1", false},
        {"/suffix", "key1", "secret1", false},
        {"/app2", "key2", "secret2", false},
        {"/churn", "key4", "secret4", false},
        {"/churn-occupied", "key4", "secret4", false},
    };
    for (const endpoint &e : endpoints) {
        if (!g_hooks.requests(e.path).empty()) {
            check_requests(e.path, e.key, e.secret, e.custom);
        }
    }
    g_hooks.stop();
}

// ---- the cases ----------------------------------------------------------

TEST_CASE("webhooks: occupied on the first subscriber of the node, vacated "
          "after its last, on any worker")
{
    hooks_fixture f;
    step_occupied(f);
    finish(f);
}

TEST_CASE("webhooks: the suffix filter and event_types choose an endpoint's "
          "events")
{
    hooks_fixture f;
    step_filters(f);
    finish(f);
}

TEST_CASE("webhooks: member events once per user (\"7\" and 7 are one), to "
          "/all and the presence- endpoint")
{
    hooks_fixture f;
    step_members(f);
    finish(f);
}

TEST_CASE("webhooks: client events carry the data as sent and user_id on "
          "presence channels only")
{
    hooks_fixture f;
    step_members(f);
    step_client_events(f);
    finish(f);
}

TEST_CASE("webhooks: cache_miss on a cache channel subscribe that finds "
          "nothing")
{
    hooks_fixture f;
    step_cache_miss(f);
    finish(f);
}

TEST_CASE("webhooks: one request in flight per endpoint, what comes meanwhile "
          "together in the next")
{
    hooks_fixture f;
    step_in_flight(f);
    finish(f, {vacated("b1"), vacated("b2"), vacated("b3")});
}

TEST_CASE("webhooks: a worker's counts end with its connection")
{
    hooks_fixture f;
    step_counts_end(f);
    finish(f);
}

TEST_CASE("webhooks: a 500 is retried after a second with the same body, for "
          "another app's endpoint")
{
    hooks_fixture f;
    step_retry(f);
    finish(f);
}

TEST_CASE("webhooks: webhook_vacated_delay: re-occupied within it sends "
          "neither, else vacated after it")
{
    hooks_fixture f;
    step_retry(f);
    step_vacated_delay(f);
    finish(f);
}

TEST_CASE("webhooks: 100,000 occupy/vacate pairs while the endpoint is slow "
          "collapse to the final state")
{
    hooks_fixture f;
    churn_collapses(f.a);
    finish(f);
}

TEST_CASE("webhooks: a failing endpoint's retry carries the state it had, the "
          "flapping after it collapses")
{
    hooks_fixture f;
    failing_then_recovering(f.a);
    finish(f);
}

TEST_CASE("webhooks: full queues drop their oldest events and the log counts "
          "them")
{
    hooks_fixture f;
    drops_are_counted(f.a, f.d);
    finish(f);
}

TEST_CASE("webhooks: max_request_size: 413 over the app's limit or the "
          "broker's")
{
    hooks_fixture f;
    step_max_request_size(f);
    finish(f);
}

TEST_CASE("webhooks: a reload keeps an unchanged endpoint's queue, drops a "
          "removed one, refilters a changed one")
{
    hooks_fixture f;
    step_reload(f);
    finish(f, {vacated("r1"), vacated("r2"), vacated("q-x"), vacated("q-z"),
               member("member_removed", "presence-after", "p")});
}

TEST_CASE("webhooks: a HELLO with a bad webhook is refused and the table "
          "stays")
{
    hooks_fixture f;
    step_bad_hello(f);
    finish(f, {vacated("still")});
}

TEST_CASE("webhooks: a full queue drops its oldest events and sends 100 a "
          "request")
{
    hooks_fixture f;
    step_full_queue(f);
    finish(f);
}

} // namespace

int main(int argc, char **argv)
{
    return test_main(argc, argv, "test_webhooks", true,
                     "/tmp/pusher-wh-XXXXXX", "/pusher-wh-");
}
