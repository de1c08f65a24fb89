#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <cjson/cJSON.h>

#include "string_map.hpp"

namespace pusher::broker {

// Per-app limits; defaults match Pusher's published limits.
inline constexpr std::uint32_t default_max_event_data = 10240;
inline constexpr std::uint32_t default_max_channels = 100;
inline constexpr std::uint32_t default_max_batch = 10;
inline constexpr std::uint32_t default_max_event_name = 200;
inline constexpr std::uint32_t default_cache_ttl = 1800;   // seconds

struct app {
    std::string id;
    std::string key;
    std::string secret;
    std::uint32_t max_event_data = default_max_event_data;
    std::uint32_t max_channels = default_max_channels;
    std::uint32_t max_batch = default_max_batch;
    std::uint32_t max_event_name = default_max_event_name;
    std::uint32_t cache_ttl = default_cache_ttl;
    // pusher_internal:subscription_count for non-presence channels
    bool subscription_count = false;
};

// The app table of the newest nginx configuration: the apps of the HELLO
// with the highest conf_time seen (ties: the latest HELLO wins).  The
// broker keeps no other copy of the secrets.
class app_registry {
public:
    // true once any worker said HELLO (even with no apps)
    bool known() const noexcept { return known_; }
    std::size_t size() const noexcept { return apps_.size(); }
    std::int64_t conf_time() const noexcept { return conf_time_; }

    // nullptr if unknown; valid until the next update()
    const app *find(std::string_view id) const;

    // Parses the "apps" array of a HELLO.  Returns false and leaves the
    // table alone if conf_time is older than the current table.  Throws
    // std::invalid_argument for a malformed app list.
    bool update(std::int64_t conf_time, const cJSON *apps);

private:

    string_map<app> apps_;
    std::int64_t conf_time_ = 0;
    bool known_ = false;
};

} // namespace pusher::broker
