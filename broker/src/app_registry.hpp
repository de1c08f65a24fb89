#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <cjson/cJSON.h>

#include "pusher_ctl.h"
#include "pusher_proto.h"
#include "string_map.hpp"

namespace pusher::broker {

// Per-app limits; defaults match Pusher's published limits.
inline constexpr std::uint32_t default_max_event_data = 10240;
inline constexpr std::uint32_t default_max_channels = 100;
inline constexpr std::uint32_t default_max_batch = 10;
inline constexpr std::uint32_t default_max_event_name = 200;
inline constexpr std::uint32_t default_cache_ttl = 1800;   // seconds
// the bounds of every setting are pusher_app.h's, shared with nginx -t

// The webhook event types (docs/protocol.md, "Webhooks"), as bits of
// webhook_config::events; names and bits are pusher_proto.h's.
enum webhook_event : unsigned {
    webhook_channel_occupied = PUSHER_WEBHOOK_CHANNEL_OCCUPIED,
    webhook_channel_vacated = PUSHER_WEBHOOK_CHANNEL_VACATED,
    webhook_member_added = PUSHER_WEBHOOK_MEMBER_ADDED,
    webhook_member_removed = PUSHER_WEBHOOK_MEMBER_REMOVED,
    webhook_client_event = PUSHER_WEBHOOK_CLIENT_EVENT,
    webhook_cache_miss = PUSHER_WEBHOOK_CACHE_MISS,
};
inline constexpr unsigned webhook_all_events = PUSHER_WEBHOOK_ALL;

// One "webhook" of an app: where its events are POSTed and which go there.
struct webhook_config {
    std::string url;                // as configured (for logs and identity)
    bool tls = false;               // https
    std::string host;               // name or address, IPv6 without []
    std::string port;               // decimal
    std::string host_header;        // Host: host[:port]
    std::string target;             // path and query, at least "/"
    unsigned events = webhook_all_events;
    std::string prefix;             // channel_name_starts_with
    std::string suffix;             // channel_name_ends_with
    // custom headers; never Content-Type, Content-Length, Host, Connection,
    // Transfer-Encoding, User-Agent or X-Pusher-* (those are dropped)
    std::vector<std::pair<std::string, std::string>> headers;

    bool wants(unsigned event, std::string_view channel) const noexcept
    {
        return (events & event) != 0 && channel.starts_with(prefix)
               && channel.ends_with(suffix);
    }

    bool operator==(const webhook_config &) const = default;
};

// Parses and checks a webhook URL ("http://host[:port][/path]" or https);
// throws std::invalid_argument.
void parse_webhook_url(std::string_view url, webhook_config &out);

// One "coalesce" line of an app (docs/protocol.md, "Coalescing"): the
// events of the channels matching pattern ('*': any run of characters),
// with one of the names in events (empty: any name), are coalesced over
// window.
struct coalesce_rule {
    std::string pattern;
    std::chrono::milliseconds window{0};
    std::vector<std::string> events;

    bool matches(std::string_view channel, std::string_view event) const;
    bool operator==(const coalesce_rule &) const = default;
};

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
    // HTTP API request bodies; 0: the broker's --max-body
    std::uint64_t max_request_size = 0;
    std::vector<webhook_config> webhooks;
    // channel_vacated waits this long (ms) and is cancelled, with the
    // channel_occupied that would follow, if the channel is re-occupied
    std::uint32_t webhook_vacated_delay = 0;
    // the union of the events of its webhooks
    unsigned webhook_events = 0;
    // the "coalesce" lines, in order: the first that matches applies
    std::vector<coalesce_rule> coalesce;

    // the coalescing rule of an event on channel; nullptr: none
    const coalesce_rule *coalesce_rule_for(std::string_view channel,
                                           std::string_view event) const;
};

// The app table of the nginx configuration the master wrote last
// (control_server::load_apps()).  The broker keeps no other copy of the
// secrets.
class app_registry {
public:
    // true once a table was taken (even one with no apps)
    bool known() const noexcept { return known_; }
    std::size_t size() const noexcept { return apps_.size(); }
    std::int64_t conf_time() const noexcept { return conf_time_; }

    // nullptr if unknown; valid until the next update()
    const app *find(std::string_view id) const;

    // Takes the apps of the master's table (decoded by
    // pusher_ctl_hello_decode(), which checked the types): the defaults of
    // absent members and what the broker accepts as values are decided
    // here.  Returns false and leaves the table alone if conf_time is the
    // current table's (conf_time identifies a configuration; the file
    // read last is the newest).  Throws std::invalid_argument for an app
    // it cannot use, and leaves the table alone.
    bool update(std::int64_t conf_time, const pusher_ctl_app_t *apps,
                std::size_t napps);

    // f(const app &) for each app, in no particular order
    template <typename F>
    void for_each(F &&f) const
    {
        for (const auto &[id, a] : apps_) {
            f(a);
        }
    }

private:

    string_map<app> apps_;
    std::int64_t conf_time_ = 0;
    bool known_ = false;
};

} // namespace pusher::broker
