// The broker's uplink without nginx: each case starts pusher-broker itself
// (argv[1]) with temporary sockets and a unique shm name, plays nginx
// workers on the control socket (HELLO, PRESENCE_JOIN/LEAVE, CLIENT_EVENT)
// and checks the exact ring records and PRESENCE_JOINED replies.
//
// The cases tell one story of a presence channel, step by step: a case
// runs the steps before its own (which check what they did as well) on its
// broker, then its own checks.

#include <algorithm>

#include "broker_test.hpp"

namespace {

struct worker : fake_worker {
    std::string bar;        // the socket of its barrier membership

    void join(std::string_view channel, std::string_view socket_id,
              std::string_view user_id, std::string_view user_info,
              std::string_view max_members = "100",
              std::string_view flags = "")
    {
        send(PUSHER_CTL_PRESENCE_JOIN,
             fields({"app1", channel, socket_id, user_id, user_info,
                     max_members, flags}));
    }

    void leave(std::string_view channel, std::string_view socket_id)
    {
        send(PUSHER_CTL_PRESENCE_LEAVE,
             fields({"app1", channel, socket_id}));
    }

    // the PRESENCE_JOINED answer: {socket_id, channel, status, json, cache}
    std::vector<std::string> joined()
    {
        std::vector<std::string> f = next_answer();
        CHECK(f.size() == 5);
        return f;
    }
};

std::string g_hello;

void hello(worker &w, int pid)
{
    ::hello(w, pid,
            "[{\"id\":\"app1\",\"key\":\"key1\",\"secret\":\"secret1\"}]");
}

// ---- the ring -----------------------------------------------------------

void expect_record(const std::string &channel, const std::string &socket_id,
                   const std::string &json)
{
    record r = next_record();
    CHECK_EQ(r.app_id, "app1");
    CHECK_EQ(r.channel, channel);
    CHECK_EQ(r.socket_id, socket_id);
    CHECK_EQ(r.json, json);
}

// ---- expected texts -----------------------------------------------------

std::string added(const std::string &channel, const std::string &id,
                  const std::string &info)
{
    return internal("member_added", channel,
                    "{\"user_id\":" + id + ",\"user_info\":" + info + "}");
}

std::string removed(const std::string &channel, const std::string &id)
{
    return internal("member_removed", channel, "{\"user_id\":" + id + "}");
}

std::string succeeded(const std::string &channel, const std::string &presence)
{
    return internal("subscription_succeeded", channel,
                    "{\"presence\":" + presence + "}");
}

// records without exclusion in any order: "channel json" each
void expect_unordered(std::vector<std::string> want)
{
    std::vector<std::string> got;
    for (std::size_t i = 0; i < want.size(); i++) {
        record r = next_record();
        CHECK_EQ(r.app_id, "app1");
        CHECK_EQ(r.socket_id, "");
        got.push_back(r.channel + " " + r.json);
    }
    std::sort(got.begin(), got.end());
    std::sort(want.begin(), want.end());
    for (std::size_t i = 0; i < want.size(); i++) {
        CHECK_EQ(got[i], want[i]);
    }
}

void expect_joined(worker &w, const std::string &socket_id,
                   const std::string &channel, const std::string &status,
                   const std::string &json)
{
    std::vector<std::string> f = w.joined();
    CHECK_EQ(f[0], socket_id);
    CHECK_EQ(f[1], channel);
    CHECK_EQ(f[2], status);
    CHECK_EQ(f[3], json);
}

// A refresh of an existing membership: a reply and no record, so once it
// arrives everything sent before on this connection has been handled.
void barrier(worker &w)
{
    w.join("presence-barrier", w.bar, "\"barrier\"", "");
    std::vector<std::string> f = w.joined();
    CHECK_EQ(f[0], w.bar);
    CHECK_EQ(f[2], "ok");
}

// ---- the story, step by step --------------------------------------------

const std::string room = "presence-room";
const std::string small = "presence-small";
const std::string other = "presence-other";
const std::string info_a = "{\"name\":\"A\"}";
const std::string info_b = "{\"name\":\"B \\\"quoted\\\"\"}";
const std::string ce = "{\"event\":\"client-typing\",\"channel\":"
                       "\"private-chat\",\"data\":{\"id\":1}}";

// the workers of the story; c comes back after a and b are gone
struct story {
    worker a, b, c;
    int steps = 0;      // steps done
};

// two workers, and a barrier membership on each connection, same user; a
// new user over a limit of 1 is refused, the same user is not
void step_barriers(story &s)
{
    worker &a = s.a, &b = s.b;
    a.bar = "9.9";
    b.bar = "9.8";
    hello(a, 1001);
    map_segment();
    hello(b, 1002);

    a.join("presence-barrier", "9.9", "\"barrier\"", "");
    expect_joined(a, "9.9", "presence-barrier", "ok",
                  succeeded("presence-barrier",
                            "{\"count\":1,\"ids\":[\"barrier\"],"
                            "\"hash\":{\"barrier\":null}}"));
    expect_record("presence-barrier", "9.9",
                  added("presence-barrier", "\"barrier\"", "null"));
    b.join("presence-barrier", "9.8", "1", "", "1");
    expect_joined(b, "9.8", "presence-barrier", "limit", "");
    b.join("presence-barrier", "9.8", "\"barrier\"", "", "1");
    CHECK_EQ(b.joined()[2], "ok");
    expect_no_record();
}

// first socket of user "1": member_added excluding it
void step_first_socket(story &s)
{
    s.a.join(room, "1.1", "\"1\"", info_a);
    expect_joined(s.a, "1.1", room, "ok",
                  succeeded(room, "{\"count\":1,\"ids\":[\"1\"],\"hash\":{"
                                  "\"1\":" + info_a + "}}"));
    expect_record(room, "1.1", added(room, "\"1\"", info_a));
}

// second socket, numeric id 1: the same user, first user_info wins
void step_second_socket(story &s)
{
    s.a.join(room, "1.2", "1", info_b);
    expect_joined(s.a, "1.2", room, "ok",
                  succeeded(room, "{\"count\":1,\"ids\":[\"1\"],\"hash\":{"
                                  "\"1\":" + info_a + "}}"));
    expect_no_record();
}

// user 2 on the other worker, no user_info
void step_other_worker(story &s)
{
    s.b.join(room, "2.1", "2", "");
    expect_record(room, "2.1", added(room, "2", "null"));
    expect_joined(s.b, "2.1", room, "ok",
                  succeeded(room, "{\"count\":2,\"ids\":[\"1\",2],\"hash\":{"
                                  "\"1\":" + info_a + ",\"2\":null}}"));
}

// a string id that needs escaping; info with escapes
void step_escapes(story &s)
{
    s.b.join(room, "2.2", "\"x\\\"y\"", info_b);
    expect_record(room, "2.2", added(room, "\"x\\\"y\"", info_b));
    expect_joined(s.b, "2.2", room, "ok",
                  succeeded(room, "{\"count\":3,\"ids\":[\"1\",2,\"x\\\"y\"],"
                                  "\"hash\":{\"1\":" + info_a
                                  + ",\"2\":null,\"x\\\"y\":" + info_b
                                  + "}}"));
}

// refresh: same socket again, ok again, no record
void step_refresh(story &s)
{
    s.a.join(room, "1.1", "\"1\"", info_a);
    CHECK_EQ(s.a.joined()[2], "ok");
    expect_no_record();
}

// limit: 1 member; the same user may add sockets, a new one may not
void step_limit(story &s)
{
    s.a.join(small, "1.1", "1", "", "1");
    CHECK_EQ(s.a.joined()[2], "ok");
    expect_record(small, "1.1", added(small, "1", "null"));
    s.b.join(small, "2.1", "2", "", "1");
    expect_joined(s.b, "2.1", small, "limit", "");
    s.b.join(small, "2.3", "\"1\"", "", "1");
    expect_joined(s.b, "2.3", small, "ok",
                  succeeded(small, "{\"count\":1,\"ids\":[1],"
                                   "\"hash\":{\"1\":null}}"));
    expect_no_record();
}

// leave of a non-last socket: nothing; of the last: member_removed; of an
// unknown socket: nothing
void step_leave(story &s)
{
    worker &a = s.a;
    a.leave(room, "1.2");
    barrier(a);
    expect_no_record();
    a.leave(room, "1.1");
    expect_record(room, "", removed(room, "\"1\""));
    a.leave(room, "1.1");
    barrier(a);
    expect_no_record();
}

// what a worker re-announcing after a broker restart may send for a
// membership, a channel or a socket it has not announced yet: a leave, a
// count of 0, an offline; none of them is news
void step_no_news(story &s)
{
    worker &a = s.a;
    a.leave("presence-never-joined", "1.40");
    a.occupancy("app1", "presence-never-joined", "0");
    a.occupancy("app1", "never-occupied", "0");
    a.offline("never-online", "1.40");
    barrier(a);
    expect_no_record();
}

// client event: the exact JSON, the sender excluded
void step_client_event(story &s)
{
    s.a.send(PUSHER_CTL_CLIENT_EVENT, fields({"app1", "private-chat", "1.7",
                                              ce}));
    expect_record("private-chat", "1.7", ce);
}

// malformed messages and an unknown app are ignored
void step_malformed(story &s)
{
    worker &a = s.a;
    std::string cut = fields({"app1", room, "1.8", "8", "", "100", ""});
    a.send(PUSHER_CTL_PRESENCE_JOIN, cut.substr(0, cut.size() - 3));
    a.send(PUSHER_CTL_PRESENCE_JOIN,
           fields({"nope", room, "1.8", "8", "", "100", ""}));
    a.send(PUSHER_CTL_PRESENCE_JOIN,
           fields({"app1", room, "1.8", "true", "", "100", ""}));
    a.send(PUSHER_CTL_PRESENCE_JOIN,
           fields({"app1", "private-x", "1.8", "8", "", "100", ""}));
    a.send(PUSHER_CTL_CLIENT_EVENT, fields({"nope", "private-chat", "1.7",
                                            ce}));
    a.send(PUSHER_CTL_CLIENT_EVENT, fields({"app1", "private-chat"}));
    barrier(a);
    expect_no_record();
}

// memberships of worker a, then its connection ends:
//   room:  user 3 (two sockets), user 2 (also on b: stays)
//   other: user 3, user 4
//   small: user 1 (also on b: stays)
// b sleeps with its wake slot armed: the drop must ring it.  What is
// left: room has users 2 and "x\"y" (b), small has user "1"; the barrier
// socket of a is gone (b's remains)
void step_worker_gone(story &s)
{
    worker &a = s.a, &b = s.b;
    a.join(room, "1.3", "3", "");
    a.joined();
    a.join(room, "1.4", "\"3\"", "");
    a.joined();
    a.join(room, "1.5", "2", "");
    a.joined();
    a.join(other, "1.3", "3", "");
    a.joined();
    a.join(other, "1.6", "4", "");
    a.joined();
    expect_record(room, "1.3", added(room, "3", "null"));
    expect_record(other, "1.3", added(other, "3", "null"));
    expect_record(other, "1.6", added(other, "4", "null"));
    expect_no_record();

    CHECK(pusher_ring_arm(&g_ring, pusher_shm_wake(g_base,
                              static_cast<std::uint32_t>(b.slot)),
                          &g_reader)
          == 0);
    a.close_fd();
    {
        char head[PUSHER_CTL_HEADER_SIZE];
        CHECK(read_all(b.fd, head, sizeof(head), 2000));
        pusher_ctl_header_t h;
        pusher_ctl_header_read(reinterpret_cast<std::uint8_t *>(head), &h);
        CHECK(h.type == PUSHER_CTL_DOORBELL);
    }

    expect_unordered({room + " " + removed(room, "3"),
                      other + " " + removed(other, "3"),
                      other + " " + removed(other, "4")});
    barrier(b);
    expect_no_record();

    b.join(small, "2.4", "1", "", "1");
    expect_joined(b, "2.4", small, "ok",
                  succeeded(small, "{\"count\":1,\"ids\":[1],"
                                   "\"hash\":{\"1\":null}}"));
}

// a worker reconnects and re-joins: silent, member_added only for a user
// new to the channel, no reply, no limit; the room as a new subscriber
// sees it
void step_rejoin(story &s)
{
    worker &b = s.b, &c = s.c;
    c.bar = "9.7";
    hello(c, 1003);
    c.join(room, "3.1", "2", "", "100", "r");
    c.join(room, "3.2", "5", "{\"n\":5}", "100", "r");
    c.join(small, "3.3", "6", "", "1", "r");
    barrier(c);     // the first reply is the barrier's
    expect_record(room, "3.2", added(room, "5", "{\"n\":5}"));
    expect_record(small, "3.3", added(small, "6", "null"));
    expect_no_record();

    b.join(room, "2.1", "2", "");
    expect_joined(b, "2.1", room, "ok",
                  succeeded(room, "{\"count\":3,\"ids\":[2,\"x\\\"y\",5],"
                                  "\"hash\":{\"2\":null,\"x\\\"y\":" + info_b
                                  + ",\"5\":{\"n\":5}}}"));
}

// b ends: user "x\"y" leaves room, 2 stays (c); user 1 leaves small, 6
// stays (c); the barrier user stays (c)
void step_second_worker_gone(story &s)
{
    s.b.close_fd();
    expect_unordered({room + " " + removed(room, "\"x\\\"y\""),
                      small + " " + removed(small, "1")});
    barrier(s.c);
    expect_no_record();
}

// a socket that subscribes again as another user: the old user (its only
// socket) is removed, the new one added, the socket excluded
void step_other_user(story &s)
{
    s.c.join(room, "3.2", "\"8\"", "");
    expect_record(room, "3.2", removed(room, "5"));
    expect_record(room, "3.2", added(room, "\"8\"", "null"));
    expect_joined(s.c, "3.2", room, "ok",
                  succeeded(room, "{\"count\":2,\"ids\":[2,\"8\"],"
                                  "\"hash\":{\"2\":null,\"8\":null}}"));
}

// churn from two connections with a fixed seed: joins, leaves, client
// events, some malformed; every record must decode as valid JSON
// (try_record checks), and closing the connections must empty the
// channels with one member_removed per remaining user
void step_churn(story &s)
{
    static const char *const channels[] = {
        "presence-c0", "presence-c1", "presence-cache-c2", "private-c3"};
    static const char *const ids[] = {
        "1", "\"1\"", "2", "\"a\\\\b\"", "\"\\u00e9\"", "3.5",
        "null", "{}", "\"\\n\"", ""};
    static const char *const infos[] = {
        "", "{\"k\":\"v\"}", "[1,2]", "\"s\"", "{bad"};
    static const char *const counts[] = {"0", "1", "2", "100", "x", ""};
    worker d, e;
    d.bar = "8.1";
    e.bar = "8.2";
    hello(d, 1004);
    hello(e, 1005);
    std::uint32_t x = 12345;
    auto rnd = [&x](std::uint32_t n) {
        x = x * 1103515245u + 12345u;
        return (x >> 16) % n;
    };
    for (int i = 0; i < 3000; i++) {
        worker &w = rnd(2) ? d : e;
        std::string ch = channels[rnd(4)];
        std::string sid = std::to_string(w.slot) + "."
                          + std::to_string(rnd(12));
        switch (rnd(4)) {
        case 0:
        case 1:
            w.join(ch, sid, ids[rnd(10)], infos[rnd(5)], counts[rnd(6)],
                   rnd(4) == 0 ? "r" : "");
            break;
        case 2:
            w.leave(ch, sid);
            break;
        default:
            w.send(PUSHER_CTL_CLIENT_EVENT,
                   fields({"app1", ch, sid, "{\"event\":\"client-x\"}"}));
        }
    }
    // the replies are not read: the broker must not mind.  A detached
    // worker's wake slot gets pid 0 after its member_removed records
    pusher_shm_wake_t *wd = pusher_shm_wake(
        g_base, static_cast<std::uint32_t>(d.slot));
    pusher_shm_wake_t *we = pusher_shm_wake(
        g_base, static_cast<std::uint32_t>(e.slot));
    d.close_fd();
    e.close_fd();
    for (int i = 0; i < 400 && (pusher_load_acquire_u32(&wd->pid) != 0
                                || pusher_load_acquire_u32(&we->pid) != 0);
         i++)
    {
        usleep(5000);
    }
    CHECK(pusher_load_acquire_u32(&wd->pid) == 0);
    CHECK(pusher_load_acquire_u32(&we->pid) == 0);
    record r;
    int n = 0;
    while (try_record(r)) {
        n++;
    }
    CHECK(n > 0);
    if (std::getenv("PUSHER_TEST_VERBOSE") != nullptr) {
        std::printf("churn: %d records\n", n);
    }
    // only c's memberships are left: room has 2 and "8"
    s.c.join(room, "3.9", "9", "");
    expect_record(room, "3.9", added(room, "9", "null"));
    CHECK_EQ(s.c.joined()[2], "ok");
}

void (*const steps[])(story &) = {
    step_barriers, step_first_socket, step_second_socket, step_other_worker,
    step_escapes, step_refresh, step_limit, step_leave, step_no_news,
    step_client_event, step_malformed, step_worker_gone, step_rejoin,
    step_second_worker_gone, step_other_user, step_churn,
};

// runs the story up to and including step
void story_until(void (*step)(story &))
{
    story s;
    for (auto *f : steps) {
        f(s);
        if (f == step) {
            return;
        }
    }
    fail("the step is not in the story");
}

// ---- the cases ----------------------------------------------------------

TEST_CASE("presence: a new user over the member limit is refused, a member "
          "over it is not")
{
    story_until(step_barriers);
}

TEST_CASE("presence: a user's first socket announces member_added to the "
          "others")
{
    story_until(step_first_socket);
}

TEST_CASE("presence: a second tab of a user adds no member and keeps the "
          "first user_info")
{
    story_until(step_second_socket);
}

TEST_CASE("presence: a user on another worker without user_info is added")
{
    story_until(step_other_worker);
}

TEST_CASE("presence: user ids and user_info that need escaping")
{
    story_until(step_escapes);
}

TEST_CASE("presence: a repeated join of a socket is a refresh with no record")
{
    story_until(step_refresh);
}

TEST_CASE("presence: at the member limit the same user may add sockets, a "
          "new one may not")
{
    story_until(step_limit);
}

TEST_CASE("presence: leaving removes the member with its last socket only")
{
    story_until(step_leave);
}

TEST_CASE("presence: a re-announcement's leave, count 0 and offline are no "
          "news")
{
    story_until(step_no_news);
}

TEST_CASE("presence: a client event is relayed with its sender excluded")
{
    story_until(step_client_event);
}

TEST_CASE("presence: malformed messages and unknown apps are ignored")
{
    story_until(step_malformed);
}

TEST_CASE("presence: a worker that goes removes its users' last sockets and "
          "rings the others")
{
    story_until(step_worker_gone);
}

TEST_CASE("presence: a reconnecting worker re-joins silently, without limit")
{
    story_until(step_rejoin);
}

TEST_CASE("presence: the second worker going keeps users a third one has")
{
    story_until(step_second_worker_gone);
}

TEST_CASE("presence: a socket joining again as another user replaces it")
{
    story_until(step_other_user);
}

TEST_CASE("presence: churn of joins, leaves and client events from two "
          "workers leaves valid records and empty channels")
{
    story_until(step_churn);
}

} // namespace

int main(int argc, char **argv)
{
    return test_main(argc, argv, "test_presence", true,
                     "/tmp/pusher-presence-XXXXXX", "/pusher-test-");
}
