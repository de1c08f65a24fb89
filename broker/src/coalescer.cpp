#include "coalescer.hpp"

#include <utility>

namespace pusher::broker {

std::string coalescer::key_of(std::string_view app_id,
                              std::string_view channel,
                              std::string_view name)
{
    // neither an app id, a channel nor an event name holds a NUL
    std::string key = app_channel_key(app_id, channel);
    key += '\0';
    key += name;
    return key;
}

coalescer::verdict coalescer::offer(std::string_view app_id,
                                    std::string_view channel,
                                    std::string_view name,
                                    std::string_view data,
                                    std::string_view socket_id,
                                    duration window, time_point now)
{
    std::string key = key_of(app_id, channel, name);
    auto it = entries_.find(key);

    if (it == entries_.end()) {
        auto keys = keys_per_app_.find(app_id);
        if (keys != keys_per_app_.end() && keys->second >= max_keys_) {
            count(app_id, &counters::overflow);
            return verdict::deliver;
        }
        it = entries_.emplace(std::move(key), entry{}).first;
        entry &e = it->second;
        e.window = window;
        e.app_len = app_id.size();
        open(e, it->first, now);
        if (keys == keys_per_app_.end()) {
            keys_per_app_.emplace(std::string(app_id), 1);
        } else {
            keys->second++;
        }
        count(app_id, &counters::delivered);
        return verdict::deliver;
    }

    entry &e = it->second;
    // a reload may have changed the window: the next one takes it
    e.window = window;

    if (!e.held && now >= e.end) {
        // the window ended quiet and expire() has yet to forget it
        deadlines_.erase({e.end, e.seq, &it->first});
        open(e, it->first, now);
        count(app_id, &counters::delivered);
        return verdict::deliver;
    }

    // within the window, or after it with an event still to release
    if (e.held) {
        count(app_id, &counters::coalesced);
    } else {
        e.held.emplace();
        e.held->app_id = app_id;
        e.held->channel = channel;
        e.held->name = name;
        count(app_id, &counters::held_now);
    }
    e.held->data = data;
    e.held->socket_id = socket_id;
    count(app_id, &counters::held);
    return verdict::hold;
}

void coalescer::count(std::string_view app_id,
                      std::uint64_t counters::*which, std::int64_t n)
{
    auto it = app_stats_.find(app_id);
    if (it == app_stats_.end()) {
        it = app_stats_.emplace(std::string(app_id), counters{}).first;
    }
    it->second.*which += static_cast<std::uint64_t>(n);
    stats_.*which += static_cast<std::uint64_t>(n);
}

void coalescer::open(entry &e, const std::string &key, time_point now)
{
    e.end = now + e.window;
    e.seq = seq_++;
    deadlines_.emplace(e.end, e.seq, &key);
}

void coalescer::supersede(std::string_view app_id, std::string_view channel,
                          std::string_view name)
{
    if (keys_of(app_id) == 0) {
        return;
    }
    auto it = entries_.find(key_of(app_id, channel, name));
    if (it == entries_.end() || !it->second.held) {
        return;
    }
    it->second.held.reset();
    count(app_id, &counters::held_now, -1);
    count(app_id, &counters::coalesced);
}

std::optional<coalescer::time_point> coalescer::next_deadline() const
{
    if (deadlines_.empty()) {
        return std::nullopt;
    }
    return std::get<0>(*deadlines_.begin());
}

std::size_t coalescer::keys_of(std::string_view app_id) const
{
    auto it = keys_per_app_.find(app_id);
    return it == keys_per_app_.end() ? 0 : it->second;
}

void coalescer::forget(key_map::iterator it)
{
    std::string_view app_id(it->first.data(), it->second.app_len);
    auto count = keys_per_app_.find(app_id);
    if (count != keys_per_app_.end() && --count->second == 0) {
        keys_per_app_.erase(count);
    }
    deadlines_.erase(deadlines_.begin());
    entries_.erase(it);
}

} // namespace pusher::broker
