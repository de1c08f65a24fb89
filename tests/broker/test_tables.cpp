// The broker's I/O-free tables, linked with their sources and driven
// directly, without a broker process: presence_table (members per channel
// and control connection), occupancy_table (subscriber counts and the
// subscription_count schedule) and user_table (signed-in users and
// watchlists).  Each case builds its own table.

#include <algorithm>

#include "broker_test.hpp"

#include "occupancy.hpp"
#include "presence.hpp"
#include "users.hpp"

using namespace pusher::broker;

namespace {

// ---- presence_table -----------------------------------------------------

using member_events = std::vector<presence_table::member_event>;

presence_table::join_request req(std::string_view channel,
                                 std::string_view socket,
                                 std::string_view key, std::string_view id,
                                 std::string_view info = "",
                                 std::uint64_t max = 0,
                                 presence_table::conn_id conn = 1,
                                 std::string_view app = "app1")
{
    presence_table::join_request r;
    r.app_id = app;
    r.channel = channel;
    r.socket_id = socket;
    r.user_key = key;
    r.user_id = id;
    r.user_info = info;
    r.max_members = max;
    r.conn = conn;
    return r;
}

// "app channel user_id user_info user_key" of each event, in order
std::string text(const member_events &events)
{
    std::string out;
    for (const auto &e : events) {
        out += (out.empty() ? "" : "; ") + e.app_id + " " + e.channel + " "
               + e.user_id + " " + (e.user_info.empty() ? "-" : e.user_info)
               + " " + e.user_key;
    }
    return out;
}

std::string users_of(const presence_table &t, std::string_view channel,
                     std::string_view app = "app1")
{
    std::vector<std::string_view> list;
    t.users(app, channel, list);
    std::string out;
    for (std::string_view u : list) {
        out += (out.empty() ? "" : ",") + std::string(u);
    }
    return out;
}

bool ok(presence_table::join_status s)
{
    return s == presence_table::join_status::ok;
}

TEST_CASE("presence table: a user's first socket adds the member with its "
          "user_info")
{
    presence_table t;
    member_events removed, added;
    CHECK(ok(t.join(req("presence-a", "1.1", "1", "\"1\"", "{\"n\":1}"),
                    removed, added)));
    CHECK_EQ(text(added), "app1 presence-a \"1\" {\"n\":1} 1");
    CHECK(removed.empty());
    CHECK(t.channels() == 1);
    CHECK(t.user_count("app1", "presence-a") == 1);
    CHECK(t.has_user("app1", "presence-a", "1"));
    CHECK(!t.has_user("app1", "presence-a", "2"));
    CHECK_EQ(t.subscription_succeeded("app1", "presence-a"),
             internal("subscription_succeeded", "presence-a",
                      "{\"presence\":{\"count\":1,\"ids\":[\"1\"],"
                      "\"hash\":{\"1\":{\"n\":1}}}}"));
}

TEST_CASE("presence table: a second tab of a user adds no member and keeps "
          "the first user_info")
{
    presence_table t;
    member_events removed, added;
    CHECK(ok(t.join(req("presence-a", "1.1", "1", "\"1\"", "{\"n\":1}"),
                    removed, added)));
    added.clear();
    CHECK(ok(t.join(req("presence-a", "2.1", "1", "1", "{\"n\":2}", 0, 2),
                    removed, added)));
    CHECK(added.empty());
    CHECK(removed.empty());
    CHECK(t.user_count("app1", "presence-a") == 1);
    CHECK_EQ(t.subscription_succeeded("app1", "presence-a"),
             internal("subscription_succeeded", "presence-a",
                      "{\"presence\":{\"count\":1,\"ids\":[\"1\"],"
                      "\"hash\":{\"1\":{\"n\":1}}}}"));
}

TEST_CASE("presence table: the same socket joining again is a refresh")
{
    presence_table t;
    member_events removed, added;
    t.join(req("presence-a", "1.1", "1", "1"), removed, added);
    added.clear();
    CHECK(ok(t.join(req("presence-a", "1.1", "1", "1"), removed, added)));
    CHECK(added.empty());
    CHECK(removed.empty());
    // one socket: its one leave removes the member
    t.leave("app1", "presence-a", "1.1", removed);
    CHECK_EQ(text(removed), "app1 presence-a 1 - 1");
    CHECK(t.channels() == 0);
}

TEST_CASE("presence table: a socket joining as another user replaces the "
          "old one")
{
    presence_table t;
    member_events removed, added;
    t.join(req("presence-a", "1.1", "1", "1"), removed, added);
    added.clear();
    CHECK(ok(t.join(req("presence-a", "1.1", "2", "2"), removed, added)));
    CHECK_EQ(text(removed), "app1 presence-a 1 - 1");
    CHECK_EQ(text(added), "app1 presence-a 2 - 2");
    CHECK_EQ(users_of(t, "presence-a"), "2");
}

TEST_CASE("presence table: members are listed in first-join order and "
          "counted as users, not sockets")
{
    presence_table t;
    member_events removed, added;
    t.join(req("presence-a", "1.1", "b", "\"b\""), removed, added);
    t.join(req("presence-a", "1.2", "a", "\"a\""), removed, added);
    t.join(req("presence-a", "1.3", "b", "\"b\""), removed, added);
    t.join(req("presence-a", "1.4", "c", "\"c\"", "[1]"), removed, added);
    CHECK_EQ(users_of(t, "presence-a"), "b,a,c");
    CHECK(t.user_count("app1", "presence-a") == 3);
    CHECK(added.size() == 3);
    CHECK_EQ(t.subscription_succeeded("app1", "presence-a"),
             internal("subscription_succeeded", "presence-a",
                      "{\"presence\":{\"count\":3,\"ids\":[\"b\",\"a\","
                      "\"c\"],\"hash\":{\"b\":null,\"a\":null,"
                      "\"c\":[1]}}}"));
}

TEST_CASE("presence table: the member limit refuses a new user only, and "
          "not a re-announcement")
{
    presence_table t;
    member_events removed, added;
    CHECK(ok(t.join(req("presence-a", "1.1", "1", "1", "", 1), removed,
                    added)));
    added.clear();
    CHECK(t.join(req("presence-a", "1.2", "2", "2", "", 1), removed, added)
          == presence_table::join_status::limit);
    CHECK(added.empty());
    CHECK(t.user_count("app1", "presence-a") == 1);
    // a refused join leaves nothing behind: its leave is no news
    t.leave("app1", "presence-a", "1.2", removed);
    CHECK(removed.empty());
    // the member itself may add sockets
    CHECK(ok(t.join(req("presence-a", "1.3", "1", "1", "", 1), removed,
                    added)));
    CHECK(added.empty());
    // a re-announcement after a broker restart is never refused
    presence_table::join_request r = req("presence-a", "1.4", "3", "3", "",
                                         1);
    r.rejoin = true;
    CHECK(ok(t.join(r, removed, added)));
    CHECK_EQ(text(added), "app1 presence-a 3 - 3");
    CHECK(t.user_count("app1", "presence-a") == 2);
    // no limit at 0
    added.clear();
    for (int i = 0; i < 50; i++) {
        std::string id = "u" + std::to_string(i);
        CHECK(ok(t.join(req("presence-b", "2." + std::to_string(i), id,
                            "\"" + id + "\""),
                        removed, added)));
    }
    CHECK(added.size() == 50);
    CHECK(t.user_count("app1", "presence-b") == 50);
}

TEST_CASE("presence table: leaving removes the member with its last socket "
          "only; unknown leaves are ignored")
{
    presence_table t;
    member_events removed, added;
    t.join(req("presence-a", "1.1", "1", "1"), removed, added);
    t.join(req("presence-a", "1.2", "1", "1"), removed, added);
    t.leave("app1", "presence-a", "1.1", removed);
    CHECK(removed.empty());
    CHECK(t.user_count("app1", "presence-a") == 1);
    t.leave("app1", "presence-a", "9.9", removed);
    t.leave("app1", "presence-none", "1.2", removed);
    t.leave("app2", "presence-a", "1.2", removed);
    CHECK(removed.empty());
    t.leave("app1", "presence-a", "1.2", removed);
    CHECK_EQ(text(removed), "app1 presence-a 1 - 1");
    CHECK(t.user_count("app1", "presence-a") == 0);
    CHECK(t.channels() == 0);
    CHECK_EQ(t.subscription_succeeded("app1", "presence-a"), "");
    CHECK_EQ(users_of(t, "presence-a"), "");
}

TEST_CASE("presence table: a connection dropped removes each user that had "
          "no socket elsewhere, once")
{
    presence_table t;
    member_events removed, added;
    // conn 1: user 1 in a (two sockets) and b; user 2 in a (also conn 2)
    t.join(req("presence-a", "1.1", "1", "1", "", 0, 1), removed, added);
    t.join(req("presence-a", "1.2", "1", "1", "", 0, 1), removed, added);
    t.join(req("presence-b", "1.1", "1", "1", "", 0, 1), removed, added);
    t.join(req("presence-a", "1.3", "2", "2", "", 0, 1), removed, added);
    t.join(req("presence-a", "2.1", "2", "2", "", 0, 2), removed, added);
    t.drop(1, removed);
    std::vector<std::string> got;
    for (const auto &e : removed) {
        got.push_back(e.channel + " " + e.user_id);
    }
    std::sort(got.begin(), got.end());
    CHECK(got.size() == 2);
    CHECK_EQ(got[0], "presence-a 1");
    CHECK_EQ(got[1], "presence-b 1");
    CHECK_EQ(users_of(t, "presence-a"), "2");
    CHECK(t.channels() == 1);
    // dropping it again, or an unknown one, does nothing
    removed.clear();
    t.drop(1, removed);
    t.drop(7, removed);
    CHECK(removed.empty());
    t.drop(2, removed);
    CHECK_EQ(text(removed), "app1 presence-a 2 - 2");
    CHECK(t.channels() == 0);
}

TEST_CASE("presence table: apps are apart, and a user key is escaped in the "
          "hash")
{
    presence_table t;
    member_events removed, added;
    t.join(req("presence-a", "1.1", "x\"y", "\"x\\\"y\"", "", 0, 1, "app1"),
           removed, added);
    t.join(req("presence-a", "1.1", "z", "\"z\"", "", 0, 1, "app2"), removed,
           added);
    CHECK(added.size() == 2);
    CHECK(t.channels() == 2);
    CHECK_EQ(users_of(t, "presence-a", "app1"), "x\"y");
    CHECK_EQ(users_of(t, "presence-a", "app2"), "z");
    CHECK_EQ(t.subscription_succeeded("app1", "presence-a"),
             internal("subscription_succeeded", "presence-a",
                      "{\"presence\":{\"count\":1,\"ids\":[\"x\\\"y\"],"
                      "\"hash\":{\"x\\\"y\":null}}}"));
    t.leave("app2", "presence-a", "1.1", removed);
    CHECK_EQ(text(removed), "app2 presence-a \"z\" - z");
    CHECK(t.user_count("app1", "presence-a") == 1);
}

TEST_CASE("presence table: the member_added and member_removed JSON")
{
    CHECK_EQ(member_added_json("presence-a", "\"1\"", "{\"n\":1}"),
             internal("member_added", "presence-a",
                      "{\"user_id\":\"1\",\"user_info\":{\"n\":1}}"));
    CHECK_EQ(member_added_json("presence-a", "7", ""),
             internal("member_added", "presence-a",
                      "{\"user_id\":7,\"user_info\":null}"));
    CHECK_EQ(member_removed_json("presence-a", "7"),
             internal("member_removed", "presence-a", "{\"user_id\":7}"));
}

// ---- occupancy_table ----------------------------------------------------

using oclock = occupancy_table::clock;

std::string refs(std::vector<occupancy_table::channel_ref> v)
{
    std::vector<std::string> names;
    for (const auto &r : v) {
        names.push_back(r.app_id + "/" + r.channel);
    }
    std::sort(names.begin(), names.end());
    std::string out;
    for (const auto &n : names) {
        out += (out.empty() ? "" : ",") + n;
    }
    return out;
}

TEST_CASE("occupancy table: the total is the sum of the connections' last "
          "counts")
{
    occupancy_table t;
    CHECK(t.set(1, "app1", "room", 2));
    CHECK(t.set(2, "app1", "room", 3));
    CHECK(t.total("app1", "room") == 5);
    // a connection's count replaces its last one
    CHECK(t.set(1, "app1", "room", 1));
    CHECK(t.total("app1", "room") == 4);
    // the same count again is no change
    CHECK(!t.set(1, "app1", "room", 1));
    CHECK(t.total("app1", "room") == 4);
    CHECK(t.total("app2", "room") == 0);
    CHECK(t.total("app1", "other") == 0);
    CHECK(t.channels() == 1);
}

TEST_CASE("occupancy table: a channel at 0 has no entry; 0 for an unknown "
          "one is no change")
{
    occupancy_table t;
    CHECK(!t.set(1, "app1", "never", 0));
    CHECK(t.channels() == 0);
    CHECK(t.set(1, "app1", "room", 1));
    CHECK(t.set(2, "app1", "room", 1));
    CHECK(t.set(1, "app1", "room", 0));
    CHECK(t.total("app1", "room") == 1);
    // to 0: false (the total changed, but to 0), and the entry is gone
    CHECK(!t.set(2, "app1", "room", 0));
    CHECK(t.total("app1", "room") == 0);
    CHECK(t.channels() == 0);
    std::size_t n = 0;
    t.for_each_channel("app1", [&](std::string_view, std::uint64_t) { n++; });
    CHECK(n == 0);
}

TEST_CASE("occupancy table: a dropped connection changes or vacates its "
          "channels")
{
    occupancy_table t;
    t.set(1, "app1", "shared", 2);
    t.set(2, "app1", "shared", 1);
    t.set(1, "app1", "mine", 3);
    t.set(1, "app2", "mine", 1);
    t.set(2, "app1", "theirs", 1);
    std::vector<occupancy_table::channel_ref> changed, vacated;
    t.drop(1, changed, vacated);
    CHECK_EQ(refs(changed), "app1/shared");
    CHECK_EQ(refs(vacated), "app1/mine,app2/mine");
    CHECK(t.total("app1", "shared") == 1);
    CHECK(t.total("app1", "theirs") == 1);
    CHECK(t.channels() == 2);
    changed.clear();
    vacated.clear();
    t.drop(1, changed, vacated);
    t.drop(9, changed, vacated);
    CHECK(changed.empty() && vacated.empty());
    t.drop(2, changed, vacated);
    CHECK(changed.empty());
    CHECK_EQ(refs(vacated), "app1/shared,app1/theirs");
    CHECK(t.channels() == 0);
}

TEST_CASE("occupancy table: the occupied channels of an app, with their "
          "totals")
{
    occupancy_table t;
    t.set(1, "app1", "a", 1);
    t.set(2, "app1", "a", 2);
    t.set(1, "app1", "b", 4);
    t.set(1, "app2", "c", 5);
    std::vector<std::string> seen;
    t.for_each_channel("app1", [&](std::string_view c, std::uint64_t n) {
        seen.push_back(std::string(c) + "=" + std::to_string(n));
    });
    std::sort(seen.begin(), seen.end());
    CHECK(seen.size() == 2);
    CHECK_EQ(seen[0], "a=3");
    CHECK_EQ(seen[1], "b=4");
    seen.clear();
    t.for_each_channel("app3", [&](std::string_view c, std::uint64_t) {
        seen.emplace_back(c);
    });
    CHECK(seen.empty());
}

TEST_CASE("occupancy table: subscription_count at once, then at most once "
          "per interval with the latest total")
{
    occupancy_table t;
    oclock::time_point t0{};
    t.set(1, "app1", "room", 2);
    std::optional<std::uint64_t> now = t.changed("app1", "room", t0);
    CHECK(now.has_value() && *now == 2);
    CHECK(!t.waiting());
    // within the interval: it waits
    t.set(1, "app1", "room", 3);
    CHECK(!t.changed("app1", "room", t0 + std::chrono::milliseconds(10)));
    t.set(1, "app1", "room", 4);
    CHECK(!t.changed("app1", "room", t0 + std::chrono::milliseconds(20)));
    CHECK(t.waiting());
    std::vector<occupancy_table::due> due;
    t.take_due(t0 + std::chrono::milliseconds(999), due);
    CHECK(due.empty());
    t.take_due(t0 + occupancy_table::min_interval, due);
    CHECK(due.size() == 1);
    CHECK_EQ(due[0].app_id, "app1");
    CHECK_EQ(due[0].channel, "room");
    CHECK(due[0].total == 4);
    CHECK(!t.waiting());
    // after a full interval a change goes out at once
    t.set(1, "app1", "room", 5);
    now = t.changed("app1", "room",
                    t0 + 2 * occupancy_table::min_interval);
    CHECK(now.has_value() && *now == 5);
}

TEST_CASE("occupancy table: a total back at the last one sent is not sent "
          "again")
{
    occupancy_table t;
    oclock::time_point t0{};
    t.set(1, "app1", "room", 2);
    CHECK(t.changed("app1", "room", t0).value_or(0) == 2);
    t.set(1, "app1", "room", 3);
    CHECK(!t.changed("app1", "room", t0 + std::chrono::milliseconds(5)));
    CHECK(t.waiting());
    // back to 2 before the interval ends: nothing waits, nothing is due
    t.set(1, "app1", "room", 2);
    CHECK(!t.changed("app1", "room", t0 + std::chrono::milliseconds(6)));
    CHECK(!t.waiting());
    std::vector<occupancy_table::due> due;
    t.take_due(t0 + 5 * occupancy_table::min_interval, due);
    CHECK(due.empty());
    // nothing for an unoccupied channel
    CHECK(!t.changed("app1", "nobody", t0));
}

TEST_CASE("occupancy table: a channel that empties while waiting leaves the "
          "schedule and starts afresh")
{
    occupancy_table t;
    oclock::time_point t0{};
    t.set(1, "app1", "room", 1);
    CHECK(t.changed("app1", "room", t0).value_or(0) == 1);
    t.set(1, "app1", "room", 2);
    CHECK(!t.changed("app1", "room", t0 + std::chrono::milliseconds(1)));
    CHECK(t.waiting());
    t.set(1, "app1", "room", 0);
    CHECK(!t.waiting());
    t.set(1, "app1", "room", 4);
    CHECK(t.changed("app1", "room", t0 + std::chrono::milliseconds(2))
              .value_or(0)
          == 4);
}

TEST_CASE("occupancy table: the subscription_count JSON")
{
    CHECK_EQ(subscription_count_json("room", 3),
             internal("subscription_count", "room",
                      "{\"subscription_count\":3}"));
}

// ---- user_table ---------------------------------------------------------

using notices = std::vector<user_table::notice>;

// "app to online|offline id,id" of each notice, in order
std::string text(const notices &n)
{
    std::string out;
    for (const auto &e : n) {
        std::string ids;
        for (const auto &id : e.user_ids) {
            ids += (ids.empty() ? "" : ",") + id;
        }
        out += (out.empty() ? "" : "; ") + e.app_id + " " + e.to + " "
               + (e.online ? "online " : "offline ") + ids;
    }
    return out;
}

std::vector<std::string> list(std::initializer_list<const char *> ids)
{
    return std::vector<std::string>(ids.begin(), ids.end());
}

TEST_CASE("user table: a user is online from its first socket to its last")
{
    user_table t;
    notices out;
    t.online(1, "app1", "alice", "1.1", {}, out);
    t.online(2, "app1", "alice", "2.1", {}, out);
    CHECK(out.empty());
    CHECK(t.is_online("app1", "alice"));
    CHECK(t.sockets("app1", "alice") == 2);
    CHECK(t.offline("app1", "alice", "1.1", out));
    CHECK(t.is_online("app1", "alice"));
    CHECK(t.sockets("app1", "alice") == 1);
    CHECK(t.offline("app1", "alice", "2.1", out));
    CHECK(!t.is_online("app1", "alice"));
    CHECK(t.sockets("app1", "alice") == 0);
    CHECK(out.empty());
}

TEST_CASE("user table: watchers are told once when a user comes online and "
          "goes offline")
{
    user_table t;
    notices out;
    t.online(1, "app1", "alice", "1.1", list({"bob"}), out);
    CHECK(out.empty());
    CHECK(t.watchers("app1", "bob") == 1);
    t.online(1, "app1", "bob", "1.2", list({"alice"}), out);
    // to alice that bob is online, then bob's own list's online users
    CHECK_EQ(text(out), "app1 alice online bob; app1 bob online alice");
    out.clear();
    // bob's second socket: no news to alice, his list again to him
    t.online(2, "app1", "bob", "2.2", list({"alice"}), out);
    CHECK_EQ(text(out), "app1 bob online alice");
    out.clear();
    CHECK(t.offline("app1", "bob", "1.2", out));
    CHECK(out.empty());
    CHECK(t.offline("app1", "bob", "2.2", out));
    CHECK_EQ(text(out), "app1 alice offline bob");
}

TEST_CASE("user table: a watchlist counts each id once, and a watcher once "
          "however many of its sockets watch")
{
    user_table t;
    notices out;
    t.online(1, "app1", "w", "1.1", list({"x", "x", "y"}), out);
    t.online(1, "app1", "w", "1.2", list({"x"}), out);
    CHECK(t.watchers("app1", "x") == 1);
    CHECK(t.watchers("app1", "y") == 1);
    t.online(1, "app1", "x", "1.3", {}, out);
    CHECK_EQ(text(out), "app1 w online x");
    out.clear();
    // one of w's sockets goes: w still watches x (from 1.2), not y
    CHECK(t.offline("app1", "w", "1.1", out));
    CHECK(t.watchers("app1", "x") == 1);
    CHECK(t.watchers("app1", "y") == 0);
    CHECK(t.offline("app1", "x", "1.3", out));
    CHECK_EQ(text(out), "app1 w offline x");
}

TEST_CASE("user table: offline of another user's socket or an unknown one "
          "does nothing")
{
    user_table t;
    notices out;
    t.online(1, "app1", "alice", "1.1", {}, out);
    CHECK(!t.offline("app1", "bob", "1.1", out));
    CHECK(!t.offline("app1", "alice", "9.9", out));
    CHECK(!t.offline("app2", "alice", "1.1", out));
    CHECK(t.is_online("app1", "alice"));
    CHECK(out.empty());
}

TEST_CASE("user table: a socket announced again replaces its watchlist, as "
          "another user it signs the old one out")
{
    user_table t;
    notices out;
    t.online(1, "app1", "carol", "1.9", {}, out);
    t.online(1, "app1", "w", "1.1", list({"a"}), out);
    t.online(2, "app1", "w", "1.1", list({"carol"}), out);
    CHECK_EQ(text(out), "app1 w online carol");
    CHECK(t.watchers("app1", "a") == 0);
    CHECK(t.watchers("app1", "carol") == 1);
    CHECK(t.sockets("app1", "w") == 1);
    out.clear();
    // watched by carol: the socket as "z" makes w offline
    t.online(1, "app1", "carol", "1.9", list({"w"}), out);
    CHECK_EQ(text(out), "app1 carol online w");
    out.clear();
    t.online(1, "app1", "z", "1.1", {}, out);
    CHECK_EQ(text(out), "app1 carol offline w");
    CHECK(!t.is_online("app1", "w"));
    CHECK(t.is_online("app1", "z"));
}

TEST_CASE("user table: a dropped connection signs out its sockets, users "
          "with sockets elsewhere stay")
{
    user_table t;
    notices out;
    t.online(1, "app1", "frank", "1.1", list({"eve", "dan"}), out);
    t.online(2, "app1", "eve", "2.1", {}, out);
    t.online(2, "app1", "eve", "2.2", {}, out);
    t.online(3, "app1", "eve", "3.1", {}, out);
    t.online(2, "app1", "dan", "2.3", {}, out);
    CHECK_EQ(text(out), "app1 frank online eve; app1 frank online dan");
    out.clear();
    t.drop(2, out);
    CHECK_EQ(text(out), "app1 frank offline dan");
    CHECK(t.sockets("app1", "eve") == 1);
    out.clear();
    t.drop(2, out);
    t.drop(8, out);
    CHECK(out.empty());
    t.drop(3, out);
    CHECK_EQ(text(out), "app1 frank offline eve");
}

TEST_CASE("user table: apps are apart; a user watching itself learns it is "
          "online")
{
    user_table t;
    notices out;
    t.online(1, "app1", "frank", "1.1", list({"carol"}), out);
    t.online(1, "app2", "carol", "1.2", list({"carol", "frank"}), out);
    CHECK_EQ(text(out), "app2 carol online carol");
    CHECK(!t.is_online("app1", "carol"));
    CHECK(!t.is_online("app2", "frank"));
    CHECK(t.watchers("app1", "carol") == 1);
    CHECK(t.watchers("app2", "carol") == 1);
}

TEST_CASE("user table: the watchlist_events JSON and the user's channel")
{
    CHECK_EQ(server_to_user_channel("u1"), "#server-to-user-u1");
    CHECK_EQ(watchlist_events_json("u1", true, list({"a", "b\"c"})),
             internal("watchlist_events", "#server-to-user-u1",
                      "{\"events\":[{\"name\":\"online\",\"user_ids\":"
                      "[\"a\",\"b\\\"c\"]}]}"));
    CHECK_EQ(watchlist_events_json("u1", false, list({"a"})),
             internal("watchlist_events", "#server-to-user-u1",
                      "{\"events\":[{\"name\":\"offline\",\"user_ids\":"
                      "[\"a\"]}]}"));
}

} // namespace

int main(int argc, char **argv)
{
    return test_main(argc, argv, "test_tables", false);
}
