// Channel occupancy and signed-in users without nginx: each case starts
// pusher-broker itself (argv[1]) with temporary sockets and a unique shm
// name, plays nginx workers on the control socket (HELLO, OCCUPANCY,
// USER_ONLINE/OFFLINE) and checks the exact ring records
// (pusher_internal:subscription_count, pusher_internal:watchlist_events).

#include <algorithm>

#include "broker_test.hpp"

namespace {

using worker = fake_worker;

void hello(worker &w, int pid)
{
    ::hello(w, pid,
            "[{\"id\":\"app1\",\"key\":\"key1\",\"secret\":\"secret1\","
            "\"subscription_count\":true},{\"id\":\"app2\","
            "\"key\":\"key2\",\"secret\":\"secret2\"}]");
}

// ---- the ring -----------------------------------------------------------

void expect_record(const std::string &channel, const std::string &json,
                   const std::string &app_id = "app1")
{
    record r = next_record();
    CHECK_EQ(r.app_id, app_id);
    CHECK_EQ(r.channel, channel);
    CHECK_EQ(r.socket_id, "");
    CHECK_EQ(r.json, json);
}

// ---- expected texts -----------------------------------------------------

std::string count(const std::string &channel, int n)
{
    return internal("subscription_count", channel,
                    "{\"subscription_count\":" + std::to_string(n) + "}");
}

// watchlist_events to #server-to-user-<to>: {"name":name,"user_ids":ids}
std::string watch(const std::string &to, const std::string &name,
                  const std::vector<std::string> &ids)
{
    std::string list;
    for (const std::string &id : ids) {
        list += (list.empty() ? "\"" : ",\"") + escaped(id) + "\"";
    }
    return internal("watchlist_events", "#server-to-user-" + to,
                    "{\"events\":[{\"name\":\"" + name
                        + "\",\"user_ids\":[" + list + "]}]}");
}

// the record of watch(to, ...)
void expect_watch(const std::string &to, const std::string &name,
                  const std::vector<std::string> &ids)
{
    expect_record("#server-to-user-" + to, watch(to, name, ids));
}

// A CACHE_GET: a reply and no record, so once it arrives everything sent
// before on this connection has been handled.
void barrier(worker &w)
{
    w.send(PUSHER_CTL_CACHE_GET, fields({"app1", "cache-barrier", "9.9"}));
    std::vector<std::string> f = next_answer();
    CHECK(f.size() == 3);
    CHECK_EQ(f[1], "cache-barrier");
}

// closes the connection and waits until the broker has let it go (its
// wake slot's pid is 0 after the records of the drop)
void detach(worker &w)
{
    pusher_shm_wake_t *wake = pusher_shm_wake(
        g_base, static_cast<std::uint32_t>(w.slot));
    w.close_fd();
    for (int i = 0; i < 400 && pusher_load_acquire_u32(&wake->pid) != 0;
         i++)
    {
        usleep(5000);
    }
    CHECK(pusher_load_acquire_u32(&wake->pid) == 0);
}

double now_ms()
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) * 1000.0
           + static_cast<double>(ts.tv_nsec) / 1.0e6;
}

// ---- the steps ----------------------------------------------------------

// a table whose subscription_count is not a boolean is refused
void bad_hello()
{
    int fd = connect_control();
    CHECK(fd >= 0);
    master_writes(2099, "[{\"id\":\"app1\",\"key\":\"key1\","
                        "\"secret\":\"secret1\",\"subscription_count\":1}]");
    write_all(fd, framed(PUSHER_CTL_HELLO, hello_text(2099, 2099)));
    CHECK_EQ(expect_refused(fd), "bad app table in " + g_control
                                     + ".apps: app with a bad "
                                       "\"subscription_count\"");
    close(fd);
}

// The sign-in story, step by step: a case runs the steps before its own
// (which check what they did as well), then its own.

void step_online(worker &a, worker &b)
{
    // alice signs in: nobody of her watchlist is online
    a.online("alice", "1.1", "[\"bob\",\"carol\"]");
    barrier(a);
    expect_no_record();

    // bob's first socket: "online" to alice (she watches him), then the
    // online part of his own watchlist to him
    b.online("bob", "2.1", "[\"alice\"]");
    expect_watch("alice", "online", {"bob"});
    expect_watch("bob", "online", {"alice"});

    // bob's second socket, on the other worker: no "online" again; his
    // list again (a duplicate counts once)
    a.online("bob", "1.2", "[\"alice\",\"alice\",\"nobody\"]");
    expect_watch("bob", "online", {"alice"});
}

void step_more_sockets(worker &a, worker &b)
{
    // alice's second socket, no watchlist: nothing
    a.online("alice", "1.3");
    barrier(a);
    expect_no_record();

    // her first socket goes: she stays online, its watchlist goes; an
    // offline for another user or an unknown socket does nothing
    a.offline("alice", "1.1");
    a.offline("bob", "1.3");
    a.offline("alice", "7.7");
    barrier(a);
    expect_no_record();

    // so nobody watches carol
    b.online("carol", "2.2");
    barrier(b);
    expect_no_record();
}

void step_last_socket(worker &a, worker &b)
{
    // alice's last socket: "offline" once to bob, who watches her from
    // two sockets
    a.offline("alice", "1.3");
    expect_watch("bob", "offline", {"alice"});
    barrier(a);
    expect_no_record();

    // one of bob's sockets goes: he still watches her (once)
    b.offline("bob", "2.1");
    // alice is back, on b: "online" to bob; her own list in its order
    b.online("alice", "2.3", "[\"carol\",\"dave\",\"bob\"]");
    expect_watch("bob", "online", {"alice"});
    expect_watch("alice", "online", {"carol", "bob"});

    // bob's last socket: "offline" to alice; his watch of her goes
    a.offline("bob", "1.2");
    expect_watch("alice", "offline", {"bob"});
    b.offline("alice", "2.3");
    barrier(a);
    barrier(b);
    expect_no_record();
}

void step_escapes(worker &a, worker &b)
{
    // ids are escaped in the data; a watcher whose channel would not be a
    // valid channel name ("a b") gets nothing
    b.online("w1", "2.5", "[\"q\\\"uote\"]");
    b.online("a b", "2.6", "[\"q\\\"uote\"]");
    a.online("q\"uote", "1.5");
    expect_watch("w1", "online", {"q\"uote"});
    barrier(a);
    barrier(b);
    expect_no_record();
}

void step_watchlist_limit(worker &a, worker &b)
{
    // a watchlist counts up to 100 ids
    a.online("u5", "1.6");
    a.online("u120", "1.7");
    std::string big = "[";
    for (int i = 0; i < 150; i++) {
        big += (i ? ",\"u" : "\"u") + std::to_string(i) + "\"";
    }
    big += "]";
    b.online("big", "2.7", big);
    expect_watch("big", "online", {"u5"});
    a.offline("u120", "1.7");
    barrier(a);
    expect_no_record();
    a.offline("u5", "1.6");
    expect_watch("big", "offline", {"u5"});
}

void step_malformed(worker &a, worker &b)
{
    // malformed sign-ins are ignored
    a.online("mallory", "1.8", "{\"a\":1}");
    a.online("mallory", "1.8", "nope");
    a.online("mallory", "1.8", "[\"x\"");
    a.online("", "1.8");
    a.online(std::string(201, 'm'), "1.8");
    a.online("mallory", "18");
    a.online("mallory", "1.8", "", "nope");
    a.send(PUSHER_CTL_USER_ONLINE, fields({"app1", "mallory", "1.8"}));
    a.send(PUSHER_CTL_USER_OFFLINE, fields({"app1", "mallory"}));
    barrier(a);
    // none of them signed mallory in
    b.online("watcher-m", "2.8", "[\"mallory\"]");
    barrier(b);
    expect_no_record();
}

void step_not_ids(worker &a, worker &b)
{
    (void) a;
    // entries of a watchlist that are not user ids are skipped
    b.online("nina", "2.12", "[7,\"carol\",null,\"\",{}]");
    expect_watch("nina", "online", {"carol"});
}

void step_worker_ends(worker &a, worker &b)
{
    (void) a;
    // one user, two sockets on worker c and one on b: c's connection
    // ends, she stays online; her last socket makes her offline once
    worker c, d;
    hello(c, 2003);
    b.online("frank", "2.9", "[\"eve\"]");
    c.online("eve", "3.1");
    expect_watch("frank", "online", {"eve"});
    c.online("eve", "3.2");
    b.online("eve", "2.10");
    barrier(b);
    barrier(c);
    expect_no_record();
    detach(c);
    expect_no_record();
    b.offline("eve", "2.10");
    expect_watch("frank", "offline", {"eve"});

    // her only socket on a worker whose connection ends
    hello(d, 2004);
    d.online("eve", "4.1");
    expect_watch("frank", "online", {"eve"});
    detach(d);
    expect_watch("frank", "offline", {"eve"});
}

void step_reannounce(worker &a, worker &b)
{
    // a socket announced again (after a reconnect): the user stays
    // online, the watchlist is replaced and its online part sent again
    b.online("frank", "2.9", "[\"carol\"]");
    expect_watch("frank", "online", {"carol"});
    a.online("eve", "1.9");
    barrier(a);
    expect_no_record();
}

void step_apps_apart(worker &a, worker &b)
{
    (void) b;
    // users of another app are apart (frank is online in app1 only); a
    // user watching itself sees itself online
    a.online("carol", "1.10", "[\"carol\",\"frank\"]", "app2");
    expect_record("#server-to-user-carol", watch("carol", "online", {"carol"}),
                  "app2");
    barrier(a);
    expect_no_record();
}

void (*const user_steps[])(worker &, worker &) = {
    step_online, step_more_sockets, step_last_socket, step_escapes,
    step_watchlist_limit, step_malformed, step_not_ids, step_worker_ends,
    step_reannounce, step_apps_apart,
};

// runs the sign-in story on two workers up to and including step
void users_until(void (*step)(worker &, worker &))
{
    worker a, b;
    hello(a, 2001);
    map_segment();
    hello(b, 2002);
    for (auto *f : user_steps) {
        f(a, b);
        if (f == step) {
            return;
        }
    }
    fail("the step is not in the story");
}

void occupancy(worker &b)
{
    worker e;
    hello(e, 2005);

    // the first change of a channel goes out at once
    double t0 = now_ms();
    e.occupancy("app1", "room", "2");
    expect_record("room", count("room", 2));

    // within its second: only the latest total, after the second
    b.occupancy("app1", "room", "3");       // 5
    b.occupancy("app1", "room", "1");       // 3

    // never for presence channels nor for apps without subscription_count
    e.occupancy("app1", "presence-room", "4");
    e.occupancy("app1", "presence-cache-room", "4");
    e.occupancy("app2", "room", "5");
    // another channel has a second of its own
    e.occupancy("app1", "other", "1");
    expect_record("other", count("other", 1));
    // no change, no event; malformed counts are ignored
    e.occupancy("app1", "other", "1");
    e.occupancy("app1", "other", "x");
    e.occupancy("app1", "other", "-1");
    e.occupancy("app1", "other", "");
    e.occupancy("app1", "other", "99999999999");
    e.occupancy("app1", "a b", "1");
    e.occupancy("nope", "other", "1");
    e.send(PUSHER_CTL_OCCUPANCY, fields({"app1", "other"}));
    barrier(e);
    barrier(b);
    expect_no_record();

    expect_record("room", count("room", 3));
    double t1 = now_ms();
    CHECK(t1 - t0 >= 990);

    // e's connection ends: room 3 -> 1 (again after a second); other
    // -> 0, gone without an event
    detach(e);
    expect_record("room", count("room", 1));
    CHECK(now_ms() - t0 >= 1990);
    expect_no_record();

    // a channel that emptied starts afresh: at once
    b.occupancy("app1", "room", "0");
    b.occupancy("app1", "room", "4");
    expect_record("room", count("room", 4));
    barrier(b);
    expect_no_record();
}

// churn from two connections with a fixed seed: sign-ins and -outs,
// counts, some malformed; every record must decode as valid JSON
// (try_record checks), and once the connections end nobody is online and
// no count is left
void churn(worker &b)
{
    static const char *const ids[] = {"u1", "u2", "u3", "u\\4", "u5", ""};
    static const char *const lists[] = {
        "", "[\"u1\"]", "[\"u2\",\"u3\",\"u2\"]", "[\"u1\",\"u\\\\4\"]",
        "[\"u5\",\"u1\",\"u2\",\"u3\"]", "[1]", "nope"};
    static const char *const channels[] = {"c0", "c1", "presence-c2",
                                           "a b"};
    static const char *const counts[] = {"0", "1", "2", "3", "x"};
    worker g, h;
    hello(g, 2006);
    hello(h, 2007);
    std::uint32_t x = 4242;
    auto rnd = [&x](std::uint32_t n) {
        x = x * 1103515245u + 12345u;
        return (x >> 16) % n;
    };
    for (int i = 0; i < 3000; i++) {
        worker &w = rnd(2) ? g : h;
        std::string sid = std::to_string(w.slot) + "."
                          + std::to_string(rnd(10));
        switch (rnd(3)) {
        case 0:
            w.online(ids[rnd(6)], sid, lists[rnd(7)],
                     rnd(8) ? "app1" : "app2");
            break;
        case 1:
            w.offline(ids[rnd(6)], sid);
            break;
        default:
            w.occupancy(rnd(8) ? "app1" : "app2", channels[rnd(4)],
                        counts[rnd(5)]);
        }
    }
    barrier(g);
    barrier(h);
    detach(g);
    detach(h);
    record r;
    int n = 0;
    while (try_record(r)) {
        n++;
    }
    CHECK(n > 0);
    if (std::getenv("PUSHER_TEST_VERBOSE") != nullptr) {
        std::printf("churn: %d records\n", n);
    }
    // nobody of them is online any more
    b.online("watcher-c", "2.11", "[\"u1\",\"u2\",\"u3\",\"u\\\\4\",\"u5\"]");
    barrier(b);
    expect_no_record();
}

// ---- the cases ----------------------------------------------------------

TEST_CASE("users: a HELLO whose subscription_count is not a boolean is "
          "refused")
{
    bad_hello();
}

TEST_CASE("users: a user coming online is told to its watchers, and its "
          "watchlist's online users to it")
{
    users_until(step_online);
}

TEST_CASE("users: further sockets of an online user and offline of another "
          "user's socket tell nobody")
{
    users_until(step_more_sockets);
}

TEST_CASE("users: a user's last socket going is told once to each watcher")
{
    users_until(step_last_socket);
}

TEST_CASE("users: ids are escaped, a watcher without a valid channel name "
          "gets nothing")
{
    users_until(step_escapes);
}

TEST_CASE("users: a watchlist counts up to 100 ids")
{
    users_until(step_watchlist_limit);
}

TEST_CASE("users: malformed sign-ins are ignored")
{
    users_until(step_malformed);
}

TEST_CASE("users: watchlist entries that are not user ids are skipped")
{
    users_until(step_not_ids);
}

TEST_CASE("users: a worker that goes takes its sockets: offline once the "
          "user's last is gone")
{
    users_until(step_worker_ends);
}

TEST_CASE("users: a socket announced again replaces its watchlist and is told "
          "its online part again")
{
    users_until(step_reannounce);
}

TEST_CASE("users: users of another app are apart; a user watching itself sees "
          "itself online")
{
    users_until(step_apps_apart);
}

TEST_CASE("occupancy: subscription_count at once, then at most once a "
          "second, never for presence channels or apps without it")
{
    worker a, b;
    hello(a, 2001);
    map_segment();
    hello(b, 2002);
    occupancy(b);
}

TEST_CASE("users: churn of sign-ins, sign-outs and counts leaves valid "
          "records, nobody online and no count")
{
    worker a, b;
    hello(a, 2001);
    map_segment();
    hello(b, 2002);
    churn(b);
}

} // namespace

int main(int argc, char **argv)
{
    return test_main(argc, argv, "test_users", true,
                     "/tmp/pusher-users-XXXXXX", "/pusher-test-");
}
