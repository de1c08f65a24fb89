#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>

#include "string_map.hpp"

namespace pusher::broker {

// Coalescing of HTTP API events before the ring (docs/protocol.md,
// "Coalescing"), per app, channel and event name (a key):
//
// - the first event of a key after a quiet window is delivered at once
//   and opens a window;
// - the events that follow within the window are held, a later one
//   replacing the one held (which is then never delivered: "coalesced");
// - when the window ends with an event held, that event is delivered and
//   opens the next window; when it ends quiet the key is forgotten.
//
// So deliveries of a key are at least a window apart (at most two in any
// window-long interval), and every event is delivered, or replaced by a
// later one that is, within one window of its trigger.
//
// The class keeps no clock and no timer: the caller passes the time of
// each call (steady_clock in the broker, a fake clock in the tests), asks
// next_deadline() when to call expire() again, and publishes what
// expire() hands it.  Pure and single-threaded, like the broker.
class coalescer {
public:
    using clock = std::chrono::steady_clock;
    using time_point = clock::time_point;
    using duration = clock::duration;

    // keys per app; an event of a new key beyond it is delivered at once
    // and not tracked (counted as overflow).  With one held event per key
    // this bounds an app's held memory to max_keys x its max_event_data.
    static constexpr std::size_t default_max_keys_per_app = 10000;

    // an event waiting for the end of its window
    struct held_event {
        std::string app_id;
        std::string channel;
        std::string name;
        std::string data;
        std::string socket_id;      // excluded from delivery; may be empty
    };

    struct counters {
        std::uint64_t delivered = 0;  // offered and delivered at once
        std::uint64_t held = 0;       // offered and held
        std::uint64_t coalesced = 0;  // held and replaced: never delivered
        std::uint64_t released = 0;   // held and delivered at a window's end
        std::uint64_t overflow = 0;   // delivered at once: app at max keys
        std::uint64_t lost = 0;       // held when drain() could not publish
        std::uint64_t held_now = 0;   // a gauge: held at this moment
    };

    enum class verdict { deliver, hold };

    explicit coalescer(std::size_t max_keys_per_app = default_max_keys_per_app)
        : max_keys_(max_keys_per_app)
    {
    }

    coalescer(const coalescer &) = delete;
    coalescer &operator=(const coalescer &) = delete;

    // An event triggered at now whose channel has a rule of this window:
    // deliver it now, or it is held (copied) until its window ends.
    verdict offer(std::string_view app_id, std::string_view channel,
                  std::string_view name, std::string_view data,
                  std::string_view socket_id, duration window,
                  time_point now);

    // An event of a key that no rule takes any more (a reload removed or
    // changed its line) and that is delivered at once: an event still held
    // for the key is older, and dropped (counted coalesced), so that it
    // cannot follow the newer one.  The key's window runs on.
    void supersede(std::string_view app_id, std::string_view channel,
                   std::string_view name);

    // when expire() has something to do; nothing when no key is tracked
    std::optional<time_point> next_deadline() const;

    // Ends the windows due at now, in deadline order: publish(const
    // held_event &) is called for each held event and returns whether it
    // was published; on false expire() stops and leaves that event held
    // and due (ask again later).  Quiet keys are forgotten.  Returns the
    // number published.
    template <typename F>
    std::size_t expire(time_point now, F &&publish);

    // Publishes every held event now, window or not (the broker stops);
    // publish as for expire(), an event it refuses is lost (counted).
    // Forgets every key.
    template <typename F>
    std::size_t drain(F &&publish);

    std::size_t keys() const noexcept { return entries_.size(); }
    std::size_t held_now() const noexcept { return stats_.held_now; }
    std::size_t keys_of(std::string_view app_id) const;
    // all apps together, and each app that offered an event
    const counters &stats() const noexcept { return stats_; }
    const string_map<counters> &app_stats() const noexcept
    {
        return app_stats_;
    }

private:
    struct entry {
        time_point end{};            // the end of the current window
        duration window{};
        std::size_t app_len = 0;     // the app id starts the key
        std::uint64_t seq = 0;       // when the window opened, in order
        std::optional<held_event> held;
    };

    using key_map = string_map<entry>;
    // (end, seq, key): windows that end together, in the order they
    // opened; the key points into entries_, whose nodes do not move
    using deadline = std::tuple<time_point, std::uint64_t, const std::string *>;

    static std::string key_of(std::string_view app_id,
                              std::string_view channel,
                              std::string_view name);
    // drops a quiet entry whose deadline is the first
    void forget(key_map::iterator it);
    // (re)opens the window of an entry at now
    void open(entry &e, const std::string &key, time_point now);
    // adds n to a count of the app and of all apps
    void count(std::string_view app_id, std::uint64_t counters::*which,
               std::int64_t n = 1);

    std::size_t max_keys_;
    key_map entries_;
    std::set<deadline> deadlines_;
    std::uint64_t seq_ = 0;
    string_map<std::size_t> keys_per_app_;
    counters stats_;
    string_map<counters> app_stats_;
};

template <typename F>
std::size_t coalescer::expire(time_point now, F &&publish)
{
    std::size_t published = 0;
    while (!deadlines_.empty() && std::get<0>(*deadlines_.begin()) <= now) {
        auto it = entries_.find(*std::get<2>(*deadlines_.begin()));
        entry &e = it->second;
        if (!e.held) {
            forget(it);
            continue;
        }
        if (!publish(static_cast<const held_event &>(*e.held))) {
            break;
        }
        published++;
        count(e.held->app_id, &counters::released);
        count(e.held->app_id, &counters::held_now, -1);
        e.held.reset();
        deadlines_.erase(deadlines_.begin());
        // the delivery opens the next window
        open(e, it->first, now);
    }
    return published;
}

template <typename F>
std::size_t coalescer::drain(F &&publish)
{
    std::size_t published = 0;
    for (auto &[key, e] : entries_) {
        if (!e.held) {
            continue;
        }
        if (publish(static_cast<const held_event &>(*e.held))) {
            published++;
            count(e.held->app_id, &counters::released);
        } else {
            count(e.held->app_id, &counters::lost);
        }
        count(e.held->app_id, &counters::held_now, -1);
    }
    entries_.clear();
    deadlines_.clear();
    keys_per_app_.clear();
    return published;
}

} // namespace pusher::broker
