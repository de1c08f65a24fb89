// Coalescing without a broker process: the coalescer's timing rules on a
// fake clock (the time is an argument of every call), the "coalesce" lines
// of a HELLO (decoding, bounds, rule matching) and the HELLO round trip.

#include "broker_test.hpp"

#include <algorithm>
#include <stdexcept>

#include "app_registry.hpp"
#include "coalescer.hpp"

using namespace pusher::broker;
using namespace std::chrono_literals;

namespace {

using time_point = coalescer::time_point;

// a fake clock: milliseconds since an arbitrary origin
time_point at(long ms)
{
    return time_point(std::chrono::milliseconds(1000000 + ms));
}

constexpr coalescer::duration window = 500ms;

struct published {
    std::string channel, name, data, socket_id;
    long at_ms = 0;
};

// what expire() published at now, appended to out
std::size_t expire(coalescer &c, long now, std::vector<published> &out)
{
    return c.expire(at(now), [&](const coalescer::held_event &h) {
        CHECK_EQ(h.app_id, "app");
        out.push_back({h.channel, h.name, h.data, h.socket_id, now});
        return true;
    });
}

coalescer::verdict offer(coalescer &c, long now, const char *data,
                         const char *channel = "ch", const char *name = "e",
                         const char *socket_id = "", const char *app = "app")
{
    return c.offer(app, channel, name, data, socket_id, window, at(now));
}

long deadline_ms(const coalescer &c)
{
    auto d = c.next_deadline();
    CHECK(d.has_value());
    return static_cast<long>(
        std::chrono::duration_cast<std::chrono::milliseconds>(*d - at(0))
            .count());
}

// the basic rules, step by step
void test_window()
{
    coalescer c;
    std::vector<published> out;
    CHECK(!c.next_deadline());

    // the first event goes at once and opens a window to 500
    CHECK(offer(c, 0, "1") == coalescer::verdict::deliver);
    CHECK(c.keys() == 1 && c.held_now() == 0);
    CHECK(deadline_ms(c) == 500);

    // the next ones within it are held; the later replaces the earlier
    CHECK(offer(c, 100, "2", "ch", "e", "1.1") == coalescer::verdict::hold);
    CHECK(c.held_now() == 1);
    CHECK(offer(c, 499, "3", "ch", "e", "2.2") == coalescer::verdict::hold);
    CHECK(c.held_now() == 1);
    CHECK(c.stats().held == 2 && c.stats().coalesced == 1);

    // nothing is due before the window's end
    CHECK(expire(c, 499, out) == 0);
    CHECK(out.empty());

    // at its end the latest is published, with its own socket_id
    CHECK(expire(c, 500, out) == 1);
    CHECK(out.size() == 1);
    CHECK_EQ(out[0].data, "3");
    CHECK_EQ(out[0].socket_id, "2.2");
    CHECK_EQ(out[0].channel, "ch");
    CHECK_EQ(out[0].name, "e");
    CHECK(c.held_now() == 0 && c.stats().released == 1);

    // the publication opened the next window: to 1000
    CHECK(deadline_ms(c) == 1000);
    CHECK(offer(c, 501, "4") == coalescer::verdict::hold);
    // a held event without socket_id replaces one with: nobody excluded
    CHECK(offer(c, 600, "5", "ch", "e", "3.3") == coalescer::verdict::hold);
    CHECK(offer(c, 700, "6") == coalescer::verdict::hold);
    CHECK(expire(c, 1000, out) == 1);
    CHECK_EQ(out[1].data, "6");
    CHECK_EQ(out[1].socket_id, "");

    // a quiet window: the key is forgotten at its end, 1500
    CHECK(deadline_ms(c) == 1500);
    CHECK(expire(c, 1499, out) == 0 && c.keys() == 1);
    CHECK(expire(c, 1500, out) == 0);
    CHECK(c.keys() == 0 && c.keys_of("app") == 0 && !c.next_deadline());

    // and the next event goes at once again
    CHECK(offer(c, 1600, "7") == coalescer::verdict::deliver);
    CHECK(deadline_ms(c) == 2100);

    CHECK(c.stats().delivered == 2);
    CHECK(c.stats().held == 5);
    CHECK(c.stats().coalesced == 3);
    CHECK(c.stats().released == 2);
    CHECK(c.stats().overflow == 0);
    CHECK(out.size() == 2);
}

// the issue's scenario: 50 events 20 ms apart, a 500 ms window, a timer
// that fires on time
void test_fifty()
{
    coalescer c;
    std::vector<published> out;
    std::vector<long> delivered;        // ms of every delivery
    std::string last;
    long last_at = 0;
    for (int i = 1; i <= 50; i++) {
        long now = (i - 1) * 20;
        // the timer first: it fires at its deadline
        while (c.next_deadline() && deadline_ms(c) <= now) {
            long d = deadline_ms(c);
            std::size_t before = out.size();
            expire(c, d, out);
            for (std::size_t k = before; k < out.size(); k++) {
                delivered.push_back(d);
                last = out[k].data;
            }
        }
        std::string data = std::to_string(i);
        if (offer(c, now, data.c_str()) == coalescer::verdict::deliver) {
            delivered.push_back(now);
            last = data;
        }
        last_at = now;
    }
    while (c.next_deadline()) {
        long d = deadline_ms(c);
        std::size_t before = out.size();
        expire(c, d, out);
        for (std::size_t k = before; k < out.size(); k++) {
            delivered.push_back(d);
            last = out[k].data;
        }
    }

    // 0 (event 1), 500 (event 25, triggered at 480), 1000 (event 50,
    // triggered at 980); then a quiet window to 1500
    CHECK(delivered.size() == 3);
    CHECK(delivered[0] == 0 && delivered[1] == 500 && delivered[2] == 1000);
    CHECK_EQ(out[0].data, "25");
    CHECK_EQ(last, "50");
    CHECK(delivered.back() - last_at <= 500);
    CHECK(c.keys() == 0);
    // 49 held: 47 of them replaced, 2 published
    CHECK(c.stats().held == 49);
    CHECK(c.stats().coalesced == 47);
    CHECK(c.stats().released == 2);
    // deliveries are at least a window apart
    for (std::size_t k = 1; k < delivered.size(); k++) {
        CHECK(delivered[k] - delivered[k - 1] >= 500);
    }
}

// channel, event name and app are separate keys
void test_keys()
{
    coalescer c;
    std::vector<published> out;
    CHECK(offer(c, 0, "a") == coalescer::verdict::deliver);
    CHECK(offer(c, 1, "b", "other") == coalescer::verdict::deliver);
    CHECK(offer(c, 2, "c", "ch", "f") == coalescer::verdict::deliver);
    CHECK(offer(c, 3, "d", "ch", "e", "", "app2")
          == coalescer::verdict::deliver);
    CHECK(c.keys() == 4 && c.keys_of("app") == 3 && c.keys_of("app2") == 1);
    CHECK(offer(c, 10, "e") == coalescer::verdict::hold);
    CHECK(offer(c, 11, "f", "other") == coalescer::verdict::hold);
    CHECK(c.held_now() == 2);

    // deadline order: ch/e at 500 first, other/e at 501
    CHECK(expire(c, 500, out) == 1);
    CHECK_EQ(out[0].data, "e");
    CHECK(expire(c, 501, out) == 1);
    CHECK_EQ(out[1].channel, "other");
    CHECK_EQ(out[1].data, "f");
    // ch/f (502) quiet, app2 (503) is another app: not published here
    CHECK(c.expire(at(503), [](const coalescer::held_event &) {
        fail("nothing is held");
        return true;
    }) == 0);
    CHECK(c.keys() == 2);       // the two republished ones, to 1000/1001
}

// windows that end together are published in the order they opened
void test_same_deadline()
{
    coalescer c;
    std::vector<published> out;
    std::vector<std::string> channels;
    for (int i = 0; i < 20; i++) {
        // neither in name nor in allocation order
        channels.push_back("ch" + std::to_string((i * 7) % 20));
    }
    for (const std::string &ch : channels) {
        CHECK(offer(c, 0, "1", ch.c_str()) == coalescer::verdict::deliver);
    }
    for (const std::string &ch : channels) {
        CHECK(offer(c, 10, "2", ch.c_str()) == coalescer::verdict::hold);
    }
    CHECK(expire(c, 500, out) == 20);
    for (std::size_t i = 0; i < channels.size(); i++) {
        CHECK_EQ(out[i].channel, channels[i]);
    }
}

// a ring without room: the event stays held and due
void test_no_room()
{
    coalescer c;
    std::vector<published> out;
    offer(c, 0, "1");
    offer(c, 10, "2");
    int calls = 0;
    CHECK(c.expire(at(500), [&](const coalescer::held_event &) {
        calls++;
        return false;
    }) == 0);
    CHECK(calls == 1 && c.held_now() == 1 && deadline_ms(c) == 500);
    // a later event replaces it meanwhile
    CHECK(offer(c, 505, "3") == coalescer::verdict::hold);
    CHECK(c.stats().coalesced == 1);
    CHECK(expire(c, 510, out) == 1);
    CHECK_EQ(out[0].data, "3");
    // the window starts at the publication
    CHECK(deadline_ms(c) == 1010);
}

// a timer that fires late: the rules hold by the times of the calls
void test_late_timer()
{
    coalescer c;
    std::vector<published> out;
    offer(c, 0, "1");
    // the quiet window ended at 500 but nobody expired it: at once
    CHECK(offer(c, 700, "2") == coalescer::verdict::deliver);
    CHECK(deadline_ms(c) == 1200);
    CHECK(offer(c, 800, "3") == coalescer::verdict::hold);
    // the window ended at 1200 with "3" held and unpublished: a later
    // event replaces it and goes out when expire() comes
    CHECK(offer(c, 1300, "4") == coalescer::verdict::hold);
    CHECK(expire(c, 1350, out) == 1);
    CHECK_EQ(out[0].data, "4");
    CHECK(deadline_ms(c) == 1850);
}

// a reload removed the rule: an event delivered at once drops the older
// one still held, whose window runs on
void test_supersede()
{
    coalescer c;
    std::vector<published> out;
    offer(c, 0, "1");
    offer(c, 10, "2");
    offer(c, 10, "x", "other");
    offer(c, 20, "y", "other");
    c.supersede("app", "ch", "e");
    CHECK(c.held_now() == 1 && c.stats().coalesced == 1);
    // nothing held for these: no change
    c.supersede("app", "ch", "f");
    c.supersede("app2", "ch", "e");
    c.supersede("app", "nothing", "e");
    CHECK(c.held_now() == 1 && c.stats().coalesced == 1);
    CHECK(expire(c, 510, out) == 1);
    CHECK_EQ(out[0].channel, "other");
    CHECK_EQ(out[0].data, "y");
    // ch/e ended quiet and is forgotten; other/e runs to 1010
    CHECK(c.keys() == 1);
}

void test_overflow()
{
    coalescer c(2);
    CHECK(offer(c, 0, "1", "a") == coalescer::verdict::deliver);
    CHECK(offer(c, 0, "1", "b") == coalescer::verdict::deliver);
    // a third key of the app is not tracked: every event goes at once
    CHECK(offer(c, 0, "1", "c") == coalescer::verdict::deliver);
    CHECK(offer(c, 1, "2", "c") == coalescer::verdict::deliver);
    CHECK(c.stats().overflow == 2 && c.keys() == 2);
    // another app has keys of its own
    CHECK(offer(c, 0, "1", "c", "e", "", "app2")
          == coalescer::verdict::deliver);
    CHECK(c.keys() == 3);
    // the tracked ones are still coalesced
    CHECK(offer(c, 2, "2", "a") == coalescer::verdict::hold);
}

// each app has counts of its own; stats() is their sum
void test_per_app()
{
    coalescer c;
    std::vector<published> out;
    offer(c, 0, "1", "ch", "e", "", "app");
    offer(c, 10, "2", "ch", "e", "", "app");
    offer(c, 20, "3", "ch", "e", "", "app");       // replaces 2
    offer(c, 0, "1", "ch", "e", "", "other");
    offer(c, 10, "2", "ch", "e", "", "other");
    const auto &apps = c.app_stats();
    CHECK(apps.size() == 2);
    const coalescer::counters &a = apps.find("app")->second;
    const coalescer::counters &o = apps.find("other")->second;
    CHECK(a.delivered == 1 && a.held == 2 && a.coalesced == 1
          && a.held_now == 1);
    CHECK(o.delivered == 1 && o.held == 1 && o.coalesced == 0
          && o.held_now == 1);
    CHECK(c.stats().coalesced == 1 && c.stats().held_now == 2
          && c.held_now() == 2);
    // the window's end releases both; the gauges go back to 0
    CHECK(c.expire(at(500), [&](const coalescer::held_event &h) {
        out.push_back({h.channel, h.name, h.data, h.socket_id, 500});
        return true;
    }) == 2);
    CHECK(a.released == 1 && a.held_now == 0 && o.released == 1
          && o.held_now == 0 && c.held_now() == 0);
}

void test_drain()
{
    coalescer c;
    offer(c, 0, "1", "a");
    offer(c, 1, "2", "a");
    offer(c, 0, "1", "b");
    offer(c, 1, "2", "b");
    offer(c, 0, "1", "c");
    std::vector<std::string> got;
    CHECK(c.drain([&](const coalescer::held_event &h) {
        got.push_back(h.channel + "=" + h.data);
        return true;
    }) == 2);
    std::sort(got.begin(), got.end());
    CHECK(got.size() == 2);
    CHECK_EQ(got[0], "a=2");
    CHECK_EQ(got[1], "b=2");
    CHECK(c.keys() == 0 && c.held_now() == 0 && !c.next_deadline());
    CHECK(c.stats().lost == 0);

    // what cannot be published at the stop is counted lost
    offer(c, 0, "1", "a");
    offer(c, 1, "2", "a");
    CHECK(c.drain([](const coalescer::held_event &) { return false; }) == 0);
    CHECK(c.stats().lost == 1 && c.keys() == 0 && c.held_now() == 0);
}

void test_glob()
{
    struct {
        const char *pattern, *name;
        int match;
    } cases[] = {
        {"private-servers.*", "private-servers.1", 1},
        {"private-servers.*", "private-servers.", 1},
        {"private-servers.*", "private-servers", 0},
        {"private-servers.*", "Private-servers.1", 0},
        {"*", "anything", 1},
        {"*-cache-*", "private-cache-x", 1},
        {"a*b*c", "abc", 1},
        {"a*b*c", "aXbYbZc", 1},
        {"a*b*c", "aXbYc1", 0},
        {"exact", "exact", 1},
        {"exact", "exact2", 0},
        {"#server-to-user-*", "#server-to-user-7", 1},
    };
    for (const auto &t : cases) {
        if (pusher_glob_match(t.pattern, std::strlen(t.pattern), t.name,
                              std::strlen(t.name))
            != t.match)
        {
            fail("glob %s on %s", t.pattern, t.name);
        }
    }
    CHECK(pusher_coalesce_pattern_valid("private-*", 9));
    CHECK(pusher_coalesce_pattern_valid("*", 1));
    CHECK(!pusher_coalesce_pattern_valid("", 0));
    CHECK(!pusher_coalesce_pattern_valid("a b", 3));
    CHECK(!pusher_coalesce_pattern_valid("#", 1));
    std::string long_pattern(PUSHER_CHANNEL_MAX + 1, 'a');
    CHECK(!pusher_coalesce_pattern_valid(long_pattern.data(),
                                         long_pattern.size()));
    const char *laravel = "App\\Events\\Moved";
    CHECK(pusher_coalesce_event_valid(laravel, std::strlen(laravel)));
    CHECK(!pusher_coalesce_event_valid("a,b", 3));
    CHECK(!pusher_coalesce_event_valid("a b", 3));
    CHECK(!pusher_coalesce_event_valid("", 0));
}

bool update(app_registry &r, std::int64_t conf_time, const std::string &apps)
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

void test_registry()
{
    app_registry r;
    CHECK(update(r, 1,
        "[{\"id\":\"a\",\"key\":\"k\",\"secret\":\"s\",\"coalesce\":["
        "{\"pattern\":\"private-servers.*\",\"window\":500},"
        "{\"pattern\":\"*\",\"window\":60000,\"events\":[\"moved\","
        "\"resized\"]}]},"
        "{\"id\":\"b\",\"key\":\"k2\",\"secret\":\"s\"}]"));
    const app *a = r.find("a");
    CHECK(a != nullptr && a->coalesce.size() == 2);
    CHECK(a->coalesce[0].window == 500ms);
    CHECK(a->coalesce[1].window == 60000ms);
    CHECK(a->coalesce[1].events.size() == 2);

    const coalesce_rule *rule = a->coalesce_rule_for("private-servers.1", "x");
    CHECK(rule == &a->coalesce[0]);
    rule = a->coalesce_rule_for("other", "moved");
    CHECK(rule == &a->coalesce[1]);
    CHECK(a->coalesce_rule_for("other", "created") == nullptr);
    CHECK(a->coalesce_rule_for("private-servers", "created") == nullptr);
    CHECK(r.find("b")->coalesce.empty());
    CHECK(r.find("b")->coalesce_rule_for("private-servers.1", "x")
          == nullptr);

    std::string rules;
    for (int i = 0; i <= PUSHER_COALESCE_RULES_MAX; i++) {
        rules += std::string(i ? "," : "")
                 + "{\"pattern\":\"p\",\"window\":1}";
    }
    std::string events;
    for (int i = 0; i <= PUSHER_COALESCE_EVENTS_MAX; i++) {
        events += std::string(i ? "," : "") + "\"e" + std::to_string(i)
                  + "\"";
    }
    const std::string bad[] = {
        "{\"pattern\":\"p\",\"window\":0}",
        "{\"pattern\":\"p\",\"window\":60001}",
        "{\"pattern\":\"p\",\"window\":1.5}",
        "{\"pattern\":\"p\",\"window\":\"500ms\"}",
        "{\"pattern\":\"\",\"window\":1}",
        "{\"pattern\":\"a b\",\"window\":1}",
        "{\"window\":1}",
        "{\"pattern\":\"p\"}",
        "{\"pattern\":\"p\",\"window\":1,\"events\":[\"\"]}",
        "{\"pattern\":\"p\",\"window\":1,\"events\":[1]}",
        "{\"pattern\":\"p\",\"window\":1,\"events\":\"e\"}",
        "{\"pattern\":\"p\",\"window\":1,\"events\":[" + events + "]}",
        rules,
        "\"p\"",
    };
    for (const std::string &line : bad) {
        std::string apps = "[{\"id\":\"a\",\"key\":\"k\",\"secret\":\"s\","
                           "\"coalesce\":[" + line + "]}]";
        if (update(r, 2, apps)) {
            fail("accepted: %s", apps.c_str());
        }
    }
    CHECK(!update(r, 2, "[{\"id\":\"a\",\"key\":\"k\",\"secret\":\"s\","
                        "\"coalesce\":{}}]"));
    // the table of conf_time 1 stays
    CHECK(r.conf_time() == 1 && r.find("a")->coalesce.size() == 2);

    // PUSHER_COALESCE_EVENTS_MAX names and RULES_MAX lines are fine
    events = events.substr(0, events.rfind(','));
    rules = rules.substr(0, rules.rfind(",{"));
    CHECK(update(r, 3, "[{\"id\":\"a\",\"key\":\"k\",\"secret\":\"s\","
                       "\"coalesce\":[" + rules + "]}]"));
    CHECK(r.find("a")->coalesce.size() == PUSHER_COALESCE_RULES_MAX);
    CHECK(update(r, 4, "[{\"id\":\"a\",\"key\":\"k\",\"secret\":\"s\","
                       "\"coalesce\":[{\"pattern\":\"p\",\"window\":1,"
                       "\"events\":[" + events + "]}]}]"));
    CHECK(r.find("a")->coalesce[0].events.size()
          == PUSHER_COALESCE_EVENTS_MAX);
}

// what the module encodes the broker decodes
void test_hello_round_trip()
{
    pusher_str_t names[] = {{"moved", 5}, {"resized-not-this", 7}};
    pusher_ctl_coalesce_t lines[] = {
        {{"private-servers.*", 17}, 500, nullptr, 0},
        {{"game-*", 6}, 60000, names, 2},
    };
    pusher_ctl_app_t app{};
    app.id = {"a", 1};
    app.key = {"k", 1};
    app.secret = {"s", 1};
    app.coalesce = lines;
    app.ncoalesce = 2;
    pusher_ctl_hello_t hello{};
    hello.pid = 7;
    hello.conf_time = 9;
    hello.apps = &app;
    hello.napps = 1;

    std::size_t len = 0;
    char *text = pusher_ctl_hello_encode(&hello, &len);
    CHECK(text != nullptr);
    std::string json(text, len);
    std::free(text);
    CHECK(json.find("\"coalesce\":[{\"pattern\":\"private-servers.*\","
                    "\"window\":500},{\"pattern\":\"game-*\","
                    "\"window\":60000,\"events\":[\"moved\",\"resized\"]}]")
          != std::string::npos);

    pusher_ctl_hello_t d;
    CHECK(pusher_ctl_hello_decode(&d, json.data(), json.size()) == 0);
    CHECK(d.napps == 1 && d.apps[0].ncoalesce == 2);
    CHECK_EQ(std::string(d.apps[0].coalesce[0].pattern.data,
                         d.apps[0].coalesce[0].pattern.len),
             "private-servers.*");
    CHECK(d.apps[0].coalesce[0].window == 500);
    CHECK(d.apps[0].coalesce[0].nevents == 0);
    CHECK(d.apps[0].coalesce[1].window == 60000);
    CHECK(d.apps[0].coalesce[1].nevents == 2);
    CHECK_EQ(std::string(d.apps[0].coalesce[1].events[1].data,
                         d.apps[0].coalesce[1].events[1].len),
             "resized");
    pusher_ctl_hello_free(&d);
}

} // namespace

int main()
{
    test_window();
    test_fifty();
    test_keys();
    test_same_deadline();
    test_no_room();
    test_late_timer();
    test_supersede();
    test_overflow();
    test_per_app();
    test_drain();
    test_glob();
    test_registry();
    test_hello_round_trip();
    std::printf("test_coalescer: all checks passed\n");
    return 0;
}
