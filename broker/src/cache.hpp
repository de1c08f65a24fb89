#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

#include "string_map.hpp"

namespace pusher::broker {

// The last HTTP-triggered event of each cache channel (cache-,
// private-cache-, presence-cache-), kept for the app's cache_ttl whether or
// not anyone is subscribed; answered to CACHE_GET.  Expired entries are
// dropped when read and by a sweep every max_entries / 4 stores.
class cache_store {
public:
    using clock = std::chrono::steady_clock;

    // bounded: a new channel is not cached when this many are live
    static constexpr std::size_t max_entries = 100000;

    void put(std::string_view app_id, std::string_view channel,
             std::string_view json, std::uint32_t ttl_seconds);

    // the cached event JSON, or empty for a miss; valid until the next put
    std::string_view get(std::string_view app_id, std::string_view channel);

    // like get(), and ttl gets the whole seconds left (rounded up)
    std::string_view get(std::string_view app_id, std::string_view channel,
                         std::uint32_t &ttl);

    std::size_t size() const noexcept { return entries_.size(); }

private:
    struct entry {
        std::string json;
        clock::time_point expires;
    };

    void sweep(clock::time_point now);

    std::unordered_map<std::string, entry> entries_;
    std::size_t puts_ = 0;
};

} // namespace pusher::broker
