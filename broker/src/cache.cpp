#include "cache.hpp"

namespace pusher::broker {

void cache_store::put(std::string_view app_id, std::string_view channel,
                      std::string_view json, std::uint32_t ttl_seconds)
{
    clock::time_point now = clock::now();

    if (++puts_ % (max_entries / 4) == 0) {
        sweep(now);
    }

    std::string k = app_channel_key(app_id, channel);
    auto it = entries_.find(k);
    if (it == entries_.end()) {
        if (entries_.size() >= max_entries) {
            sweep(now);
            if (entries_.size() >= max_entries) {
                return;
            }
        }
        it = entries_.emplace(std::move(k), entry{}).first;
    }
    it->second.json.assign(json);
    it->second.expires = now + std::chrono::seconds(ttl_seconds);
}

std::string_view cache_store::get(std::string_view app_id,
                                  std::string_view channel)
{
    auto it = entries_.find(app_channel_key(app_id, channel));
    if (it == entries_.end()) {
        return {};
    }
    if (it->second.expires <= clock::now()) {
        entries_.erase(it);
        return {};
    }
    return it->second.json;
}

std::string_view cache_store::get(std::string_view app_id,
                                  std::string_view channel,
                                  std::uint32_t &ttl)
{
    ttl = 0;
    auto it = entries_.find(app_channel_key(app_id, channel));
    if (it == entries_.end()) {
        return {};
    }
    clock::time_point now = clock::now();
    if (it->second.expires <= now) {
        entries_.erase(it);
        return {};
    }
    auto left = std::chrono::ceil<std::chrono::seconds>(it->second.expires
                                                        - now);
    ttl = static_cast<std::uint32_t>(left.count());
    return it->second.json;
}

void cache_store::sweep(clock::time_point now)
{
    for (auto it = entries_.begin(); it != entries_.end();) {
        if (it->second.expires <= now) {
            it = entries_.erase(it);
        } else {
            ++it;
        }
    }
}

} // namespace pusher::broker
