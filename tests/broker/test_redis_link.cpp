// The broker's Redis link (broker/src/redis_link.hpp) against real
// redis-server processes, one or more per case, started here on a unix
// socket or a free 127.0.0.1 port of a temporary directory and killed at the
// end of the case (also when a check fails: atexit).  No broker process.
//
//     test_redis_link [--list] [FILTER...]
//
// Needs redis-server (Debian's redis-server package) and, for the TLS case,
// openssl; a case whose server cannot start with TLS says so and passes.

#include "broker_test.hpp"

#include <chrono>
#include <memory>
#include <optional>
#include <random>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "redis_link.hpp"

using namespace pusher::broker;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

// ---- redis-server processes ------------------------------------------------

std::vector<pid_t> g_redis;
std::string g_tmp;

void kill_all()
{
    for (pid_t p : g_redis) {
        if (p > 0) {
            kill(p, SIGKILL);
            waitpid(p, nullptr, 0);
        }
    }
    g_redis.clear();
    if (!g_tmp.empty()) {
        std::string cmd = "rm -rf '" + g_tmp + "'";
        if (std::system(cmd.c_str()) != 0) {
            std::fprintf(stderr, "could not remove %s\n", g_tmp.c_str());
        }
        g_tmp.clear();
    }
}

const std::string &tmp_dir()
{
    if (g_tmp.empty()) {
        char t[] = "/tmp/redis-link-XXXXXX";
        CHECK(mkdtemp(t) != nullptr);
        g_tmp = t;
        std::atexit(kill_all);
    }
    return g_tmp;
}

bool can_connect_unix(const std::string &path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof(a.sun_path), "%s", path.c_str());
    bool ok = connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof(a)) == 0;
    close(fd);
    return ok;
}

bool can_connect_tcp(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof(a)) == 0;
    close(fd);
    return ok;
}

int free_port()
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof(a)) == 0);
    socklen_t len = sizeof(a);
    CHECK(getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len) == 0);
    close(fd);
    return ntohs(a.sin_port);
}

struct server {
    pid_t pid = -1;
    std::string sock;  // unix socket, or ""
    int port = 0;      // TCP or TLS port, or 0
    std::vector<std::string> args;
};

// starts redis-server with args; waits until it accepts.  Returns false if
// it exited at once (with its log on stderr when verbose).
bool start(server &s, const std::string &name)
{
    std::string log = tmp_dir() + "/" + name + ".log";
    std::vector<std::string> argv = {"redis-server", "--save", "",
                                      "--appendonly", "no", "--dir",
                                      tmp_dir(), "--logfile", log};
    argv.insert(argv.end(), s.args.begin(), s.args.end());
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        std::vector<char *> a;
        for (auto &x : argv) {
            a.push_back(x.data());
        }
        a.push_back(nullptr);
        execvp("redis-server", a.data());
        _exit(127);
    }
    s.pid = pid;
    g_redis.push_back(pid);
    for (int i = 0; i < 1000; i++) {
        if (waitpid(pid, nullptr, WNOHANG) == pid) {
            s.pid = -1;
            std::replace(g_redis.begin(), g_redis.end(), pid, pid_t(-1));
            if (std::getenv("PUSHER_TEST_VERBOSE") != nullptr) {
                std::string cmd = "cat '" + log + "' >&2";
                (void) !std::system(cmd.c_str());
            }
            return false;
        }
        if ((!s.sock.empty() && can_connect_unix(s.sock)) ||
            (s.sock.empty() && s.port != 0 && can_connect_tcp(s.port))) {
            return true;
        }
        usleep(5000);
    }
    fail("redis-server did not listen");
}

server unix_server(const std::string &name,
                   std::vector<std::string> extra = {})
{
    server s;
    s.sock = tmp_dir() + "/" + name + ".sock";
    s.args = {"--port", "0", "--unixsocket", s.sock, "--unixsocketperm",
              "700"};
    s.args.insert(s.args.end(), extra.begin(), extra.end());
    if (!start(s, name)) {
        fail("redis-server did not start (is it installed?)");
    }
    return s;
}

void kill9(server &s)
{
    CHECK(s.pid > 0);
    kill(s.pid, SIGKILL);
    waitpid(s.pid, nullptr, 0);
    std::replace(g_redis.begin(), g_redis.end(), s.pid, pid_t(-1));
    s.pid = -1;
}

// ---- the event loop --------------------------------------------------------

template <class Pred>
bool run_until(net::io_context &io, Pred pred,
               std::chrono::milliseconds timeout = 5000ms)
{
    auto end = clock_type::now() + timeout;
    while (!pred()) {
        if (clock_type::now() > end) {
            return false;
        }
        io.restart();
        io.run_for(2ms);
    }
    return true;
}

struct watcher {
    bool up = false;
    int ups = 0, downs = 0;
    std::vector<std::string> errors;
    std::string down_why;
    struct msg {
        std::string channel, payload, pattern;
    };
    std::vector<msg> messages;

    redis_link::callbacks callbacks()
    {
        redis_link::callbacks cb;
        cb.on_state = [this](bool u, const std::string &why) {
            up = u;
            (u ? ups : downs)++;
            if (!u) {
                down_why = why;
            }
        };
        cb.on_error = [this](const std::string &why) {
            errors.push_back(why);
        };
        cb.on_message = [this](const std::string &c, const std::string &p,
                               const std::string &pat) {
            messages.push_back({c, p, pat});
        };
        return cb;
    }
};

std::shared_ptr<redis_link>
make_link(net::io_context &io, const std::string &url, watcher &w,
          redis_link::mode m = redis_link::mode::commands,
          std::string prefix = "",
          redis_link::options opt = redis_link::options{})
{
    auto l = redis_link::create(io, redis_url::parse(url), std::move(prefix),
                                m, w.callbacks(), opt);
    l->start();
    return l;
}

// a command and its reply, run to completion
redis_reply call(net::io_context &io, redis_link &l,
                 std::vector<std::string> argv)
{
    std::optional<redis_reply> got;
    l.command(std::move(argv), [&](const redis_reply &r) { got = r; });
    if (!run_until(io, [&] { return got.has_value(); })) {
        fail("no reply");
    }
    return *got;
}

void wait_up(net::io_context &io, watcher &w)
{
    if (!run_until(io, [&] { return w.up; })) {
        fail("the link did not come up (%s)",
             w.errors.empty() ? "no error" : w.errors.back().c_str());
    }
}

} // namespace

// ---- cases ------------------------------------------------------------------

TEST_CASE("url: parse and reject")
{
    redis_url u = redis_url::parse("rediss://bob:p%40ss@h.example:7000/2?ca=/c.pem");
    CHECK(u.kind == redis_url::transport::tls);
    CHECK_EQ(u.host, "h.example");
    CHECK(u.port == 7000 && u.db == 2);
    CHECK_EQ(u.user, "bob");
    CHECK(u.password && *u.password == "p@ss");
    CHECK_EQ(u.ca_file, "/c.pem");
    CHECK_EQ(u.redacted(), "rediss://bob:***@h.example:7000/2");

    u = redis_url::parse("unix:///run/redis.sock?db=4");
    CHECK(u.kind == redis_url::transport::unix_socket);
    CHECK_EQ(u.path, "/run/redis.sock");
    CHECK(u.db == 4 && !u.password);

    bool threw = false;
    try {
        redis_url::parse("redis://:hunter2@h:99999");
    } catch (const std::invalid_argument &e) {
        threw = true;
        CHECK(std::string(e.what()).find("port") != std::string::npos);
        CHECK(std::string(e.what()).find("hunter2") == std::string::npos);
    }
    CHECK(threw);
}

TEST_CASE("commands: SET/GET round trip and reply types")
{
    server s = unix_server("r");
    net::io_context io;
    watcher w;
    auto l = make_link(io, "unix://" + s.sock, w);
    wait_up(io, w);
    CHECK(w.ups == 1);

    std::string bin("a\0b\xff\r\n", 6);
    CHECK_EQ(call(io, *l, {"SET", l->key("k"), bin}).describe(), "OK");
    redis_reply r = call(io, *l, {"GET", "k"});
    CHECK(r.type == redis_reply::kind::string);
    CHECK(r.str == bin);
    CHECK(call(io, *l, {"GET", "missing"}).is_nil());
    r = call(io, *l, {"INCRBY", "n", "41"});
    CHECK(r.type == redis_reply::kind::integer && r.integer == 41);
    call(io, *l, {"RPUSH", "list", "x", "", "z"});
    CHECK_EQ(call(io, *l, {"LRANGE", "list", "0", "-1"}).describe(),
             "[\"x\", \"\", \"z\"]");
    r = call(io, *l, {"NOSUCHCOMMAND"});
    CHECK(r.is_error());
    CHECK(r.str.find("unknown command") != std::string::npos);
    // the link is still fine after an error reply
    CHECK_EQ(call(io, *l, {"PING"}).describe(), "PONG");
    l->stop();
    CHECK(w.downs == 0);
}

TEST_CASE("commands: 10000 pipelined commands, replies in order")
{
    server s = unix_server("r");
    net::io_context io;
    watcher w;
    auto l = make_link(io, "unix://" + s.sock, w);
    wait_up(io, w);

    const int n = 10000;
    std::vector<long long> got;
    std::vector<std::string> values;
    int gets = 0;
    for (int i = 0; i < n; i++) {
        // all queued before the loop runs again: one pipeline
        l->command({"INCR", "counter"}, [&](const redis_reply &r) {
            CHECK(r.type == redis_reply::kind::integer);
            got.push_back(r.integer);
        });
        if (i % 10 == 0) {
            l->command({"SET", "k" + std::to_string(i), std::to_string(i)},
                       [](const redis_reply &r) { CHECK(r.str == "OK"); });
            l->command({"GET", "k" + std::to_string(i)},
                       [&, i](const redis_reply &r) {
                           CHECK(r.str == std::to_string(i));
                           gets++;
                       });
        }
    }
    CHECK(l->pending() == static_cast<std::size_t>(n + n / 10 * 2));
    CHECK(run_until(io, [&] { return got.size() == std::size_t(n); }));
    for (int i = 0; i < n; i++) {
        CHECK(got[std::size_t(i)] == i + 1);
    }
    CHECK(gets == n / 10);
    CHECK(l->pending() == 0);
    l->stop();
}

TEST_CASE("commands: replies read one byte at a time")
{
    // every reply split at every byte: the hiredis reader resumes
    server s = unix_server("r");
    net::io_context io;
    watcher w;
    redis_link::options opt;
    opt.read_chunk = 1;
    auto l = make_link(io, "unix://" + s.sock, w, redis_link::mode::commands,
                       "", opt);
    wait_up(io, w);
    static const char raw[] = "\r\n\0$-1\r\n*2\r\n";
    std::string bin(raw, sizeof(raw) - 1);
    call(io, *l, {"RPUSH", "l", bin, "", "x"});
    int done = 0;
    for (int i = 0; i < 100; i++) {
        l->command({"LRANGE", "l", "0", "-1"}, [&](const redis_reply &r) {
            CHECK(r.elements.size() == 3);
            CHECK(r.elements[0].str == bin);
            CHECK(r.elements[1].str.empty() && r.elements[2].str == "x");
            done++;
        });
        l->command({"GET", "nothing"},
                   [&](const redis_reply &r) { CHECK(r.is_nil()); });
    }
    CHECK(run_until(io, [&] { return done == 100 && l->pending() == 0; }));
    l->stop();
}

TEST_CASE("auth: right and wrong password, user form")
{
    server s = unix_server("r", {"--requirepass", "s3cret"});
    net::io_context io;

    watcher ok;
    auto good = make_link(io, "unix://:s3cret@" + s.sock, ok);
    wait_up(io, ok);
    CHECK_EQ(call(io, *good, {"PING"}).describe(), "PONG");

    watcher ok2;
    auto good2 = make_link(io, "unix://default:s3cret@" + s.sock, ok2);
    wait_up(io, ok2);
    CHECK_EQ(call(io, *good2, {"PING"}).describe(), "PONG");

    watcher bad;
    auto wrong = make_link(io, "unix://:nope@" + s.sock, bad);
    CHECK(run_until(io, [&] { return !bad.errors.empty(); }));
    CHECK(!bad.up);
    CHECK(bad.errors[0].find("AUTH") == 0);
    CHECK(bad.errors[0].find("WRONGPASS") != std::string::npos ||
          bad.errors[0].find("invalid") != std::string::npos);
    CHECK(bad.errors[0].find("nope") == std::string::npos);
    // commands fail at once while it is not up
    redis_reply r = call(io, *wrong, {"PING"});
    CHECK(r.is_error());
    CHECK(r.str.find("ERR redis link down") == 0);

    // no password: Redis says NOAUTH to the commands themselves
    watcher none;
    auto anon = make_link(io, "unix://" + s.sock, none);
    wait_up(io, none);
    r = call(io, *anon, {"PING"});
    CHECK(r.is_error() && r.str.find("NOAUTH") == 0);

    good->stop();
    good2->stop();
    wrong->stop();
    anon->stop();
}

TEST_CASE("select: db from the URL")
{
    server s = unix_server("r");
    net::io_context io;
    watcher w3, w0;
    auto l3 = make_link(io, "unix://" + s.sock + "?db=3", w3);
    auto l0 = make_link(io, "unix://" + s.sock, w0);
    wait_up(io, w3);
    wait_up(io, w0);
    CHECK_EQ(call(io, *l3, {"SET", "where", "three"}).describe(), "OK");
    CHECK(call(io, *l0, {"GET", "where"}).is_nil());
    CHECK_EQ(call(io, *l0, {"SELECT", "3"}).describe(), "OK");
    CHECK_EQ(call(io, *l0, {"GET", "where"}).describe(), "\"three\"");

    // a db the server does not have: SELECT's error, never up
    watcher wbad;
    auto lbad = make_link(io, "unix://" + s.sock + "?db=99", wbad);
    CHECK(run_until(io, [&] { return !wbad.errors.empty(); }));
    CHECK(wbad.errors[0].find("SELECT") == 0);
    CHECK(!wbad.up);
    l3->stop();
    l0->stop();
    lbad->stop();
}

TEST_CASE("pubsub: binary-safe payloads, prefix, patterns, 1 MiB")
{
    server s = unix_server("r");
    net::io_context io;
    watcher ws, wp;
    auto sub = make_link(io, "unix://" + s.sock, ws,
                         redis_link::mode::subscriber, "app1:");
    sub->subscribe({"ch", "other"});
    sub->psubscribe({"pat.*"});
    auto pub = make_link(io, "unix://" + s.sock, wp,
                         redis_link::mode::commands, "app1:");
    wait_up(io, ws);
    wait_up(io, wp);

    // command() on a subscriber is refused
    CHECK(call(io, *sub, {"PING"}).is_error());

    std::string bin("\0x\xff\xfe\r\n\0", 7);
    redis_reply r = call(io, *pub, {"PUBLISH", pub->key("ch"), bin});
    CHECK(r.type == redis_reply::kind::integer && r.integer == 1);

    std::string big(1024 * 1024, '\0');
    std::mt19937 rng(42);
    for (char &c : big) {
        c = static_cast<char>(rng() & 0xff);
    }
    big[0] = '\0';
    big[1] = '\xff';
    r = call(io, *pub, {"PUBLISH", pub->key("pat.x"), big});
    CHECK(r.integer == 1);
    // another app's channel is not seen
    call(io, *pub, {"PUBLISH", "app2:ch", "no"});
    call(io, *pub, {"PUBLISH", pub->key("ch"), "last"});

    CHECK(run_until(io, [&] { return ws.messages.size() >= 3; }));
    CHECK(ws.messages.size() == 3);
    CHECK_EQ(ws.messages[0].channel, "ch");
    CHECK(ws.messages[0].payload == bin);
    CHECK_EQ(ws.messages[0].pattern, "");
    CHECK_EQ(ws.messages[1].channel, "pat.x");
    CHECK_EQ(ws.messages[1].pattern, "pat.*");
    CHECK(ws.messages[1].payload.size() == big.size());
    CHECK(ws.messages[1].payload == big);
    CHECK_EQ(ws.messages[2].payload, "last");

    // a subscription added while up
    sub->subscribe({"late"});
    CHECK(run_until(io, [&] {
        static bool asked = false;
        static bool done = false;
        if (!asked) {
            asked = true;
            pub->command({"PUBSUB", "NUMSUB", pub->key("late")},
                         [&](const redis_reply &x) {
                             done = x.elements.size() == 2 &&
                                    x.elements[1].integer == 1;
                             if (!done) {
                                 asked = false;
                             }
                         });
        }
        return done;
    }));
    call(io, *pub, {"PUBLISH", pub->key("late"), "hi"});
    CHECK(run_until(io, [&] { return ws.messages.size() == 4; }));
    CHECK_EQ(ws.messages[3].channel, "late");
    sub->stop();
    pub->stop();
}

TEST_CASE("reconnect: SIGKILL and restart of redis-server")
{
    server s = unix_server("r");
    net::io_context io;
    watcher wc, ws;
    auto cmd = make_link(io, "unix://" + s.sock, wc,
                         redis_link::mode::commands, "p:");
    auto sub = make_link(io, "unix://" + s.sock, ws,
                         redis_link::mode::subscriber, "p:");
    sub->subscribe({"ch"});
    wait_up(io, wc);
    wait_up(io, ws);
    CHECK(call(io, *cmd, {"PUBLISH", cmd->key("ch"), "one"}).integer == 1);

    // a command in flight when the server dies gets an error reply
    std::optional<redis_reply> inflight;
    cmd->command({"BLPOP", "never", "0"},
                 [&](const redis_reply &r) { inflight = r; });
    CHECK(run_until(io, [&] { return cmd->outgoing_bytes() == 0; }));
    kill9(s);
    CHECK(run_until(io, [&] { return !wc.up && !ws.up; }, 2000ms));
    CHECK(wc.downs == 1 && ws.downs == 1);
    CHECK(run_until(io, [&] { return inflight.has_value(); }));
    CHECK(inflight->is_error());

    // commands fail fast while down
    auto t0 = clock_type::now();
    redis_reply r = call(io, *cmd, {"GET", "x"});
    CHECK(r.is_error() && r.str.find("ERR redis link down") == 0);
    CHECK(clock_type::now() - t0 < 100ms);

    // let the backoff grow to its cap, then restart on the same socket
    CHECK(run_until(io, [] { return false; }, 2500ms) == false);
    unlink(s.sock.c_str());
    s = unix_server("r");
    auto restarted = clock_type::now();
    CHECK(run_until(io, [&] { return wc.up && ws.up; }, 3000ms));
    auto took = clock_type::now() - restarted;
    std::fprintf(stderr, "  up again %lld ms after the restart\n",
                 static_cast<long long>(
                     std::chrono::duration_cast<std::chrono::milliseconds>(took)
                         .count()));
    CHECK(wc.ups == 2 && ws.ups == 2);

    // resubscribed: the first PUBLISH reaches it
    CHECK(call(io, *cmd, {"PUBLISH", cmd->key("ch"), "two"}).integer == 1);
    CHECK(run_until(io, [&] { return ws.messages.size() == 2; }));
    CHECK_EQ(ws.messages[1].payload, "two");
    cmd->stop();
    sub->stop();
}

TEST_CASE("down: no server at start, commands fail at once")
{
    net::io_context io;
    watcher w;
    auto l = make_link(io, "unix://" + tmp_dir() + "/none.sock", w);
    CHECK(run_until(io, [&] { return w.errors.size() >= 2; }));
    CHECK(w.errors[0].find("connect to") == 0);
    CHECK(!w.up && w.ups == 0 && w.downs == 0);
    redis_reply r = call(io, *l, {"PING"});
    CHECK(r.is_error());
    CHECK(r.str.find("ERR redis link down: connect to") == 0);
    l->stop();
}

TEST_CASE("bounds: the outgoing queue cap")
{
    server s = unix_server("r");
    net::io_context io;
    watcher w;
    redis_link::options opt;
    opt.max_outgoing = 1024 * 1024;
    auto l = make_link(io, "unix://" + s.sock, w, redis_link::mode::commands,
                       "", opt);
    wait_up(io, w);
    std::string half(600 * 1024, 'x');
    std::optional<redis_reply> a, b;
    l->command({"SET", "a", half}, [&](const redis_reply &r) { a = r; });
    l->command({"SET", "b", half}, [&](const redis_reply &r) { b = r; });
    CHECK(run_until(io, [&] { return a && b; }));
    CHECK_EQ(a->describe(), "OK");
    CHECK(b->is_error() && b->str.find("queue full") != std::string::npos);
    // once written, there is room again
    CHECK_EQ(call(io, *l, {"SET", "b", half}).describe(), "OK");
    l->stop();
}

TEST_CASE("tls: rediss:// with the CA trusted, and not trusted")
{
    const std::string &d = tmp_dir();
    std::string cmd =
        "cd '" + d + "' && "
        "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj '/CN=test CA'"
        " -keyout ca.key -out ca.pem >/dev/null 2>&1 && "
        "openssl req -newkey rsa:2048 -nodes -subj '/CN=localhost'"
        " -keyout server.key -out server.csr >/dev/null 2>&1 && "
        "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > ext.cnf && "
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key"
        " -CAcreateserial -days 1 -extfile ext.cnf -out server.pem"
        " >/dev/null 2>&1 && "
        "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj '/CN=other'"
        " -keyout other.key -out other.pem >/dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0) {
        fail("openssl could not make the test certificates");
    }

    server s;
    s.port = free_port();
    s.args = {"--port", "0", "--tls-port", std::to_string(s.port),
              "--tls-cert-file", d + "/server.pem", "--tls-key-file",
              d + "/server.key", "--tls-ca-cert-file", d + "/ca.pem",
              "--tls-auth-clients", "no", "--requirepass", "tlspw"};
    if (!start(s, "tls")) {
        std::fprintf(stderr, "  SKIP: this redis-server does not start with "
                             "--tls-port (built without TLS?)\n");
        return;
    }

    net::io_context io;
    std::string hostport = "127.0.0.1:" + std::to_string(s.port);

    watcher w;
    auto l = make_link(io, "rediss://:tlspw@" + hostport + "/2?ca=" + d +
                               "/ca.pem", w);
    wait_up(io, w);
    CHECK_EQ(call(io, *l, {"SET", "k", std::string("v\0\xff", 3)}).describe(),
             "OK");
    CHECK(call(io, *l, {"GET", "k"}).str == std::string("v\0\xff", 3));

    // by name too (the certificate's DNS name)
    watcher wn;
    auto ln = make_link(io, "rediss://:tlspw@localhost:" +
                                std::to_string(s.port) + "/2?ca=" + d +
                                "/ca.pem", wn);
    wait_up(io, wn);
    CHECK(call(io, *ln, {"GET", "k"}).str == std::string("v\0\xff", 3));

    // pub/sub over TLS
    watcher wsub;
    auto sub = make_link(io, "rediss://:tlspw@" + hostport + "?ca=" + d +
                                 "/ca.pem", wsub,
                         redis_link::mode::subscriber);
    sub->subscribe({"t"});
    wait_up(io, wsub);
    std::string big(300000, '\xff');
    CHECK(call(io, *l, {"PUBLISH", "t", big}).integer == 1);
    CHECK(run_until(io, [&] { return wsub.messages.size() == 1; }));
    CHECK(wsub.messages[0].payload == big);

    // another CA: the certificate is refused
    watcher wbad;
    auto lbad = make_link(io, "rediss://:tlspw@" + hostport + "?ca=" + d +
                                  "/other.pem", wbad);
    CHECK(run_until(io, [&] { return !wbad.errors.empty(); }));
    CHECK(!wbad.up);
    CHECK(wbad.errors[0].find("TLS") != std::string::npos);

    // a name the certificate does not hold: refused too
    watcher wname;
    redis_url u = redis_url::parse("rediss://:tlspw@" + hostport + "?ca=" +
                                   d + "/ca.pem");
    u.host = "127.0.0.2";  // still this host, not in the certificate
    auto lname = redis_link::create(io, u, "", redis_link::mode::commands,
                                    wname.callbacks());
    lname->start();
    CHECK(run_until(io, [&] { return !wname.errors.empty(); }));
    CHECK(!wname.up);

    // verify=0: taken without a check
    watcher wnv;
    auto lnv = make_link(io, "rediss://:tlspw@" + hostport + "?verify=0", wnv);
    wait_up(io, wnv);

    for (auto &x : {l, ln, sub, lbad, lname, lnv}) {
        x->stop();
    }
    std::fprintf(stderr, "  refused: %s\n", wbad.errors[0].c_str());
}

int main(int argc, char **argv)
{
    return test_main(argc, argv, "test_redis_link", false);
}
