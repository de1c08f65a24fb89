#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <tuple>

#include "app_registry.hpp"
#include "coalescer.hpp"
#include "webhooks.hpp"

namespace pusher::broker {

// The broker's part of pusher_metrics (Prometheus' text format 0.0.4):
// nginx's pusher_metrics location asks for it over a worker's control
// connection (PUSHER_CTL_METRICS) and appends it to the workers' part.
// Names follow soketi's where it has the same measure (soketi_ becomes
// pusher_); soketi's byte counters have no "_total", so they are
// "untyped" (rate() takes them all the same).  No secret and no webhook
// URL is ever a label: webhooks are counted per app.
class broker_metrics {
public:
    // the endpoint label of a request target: events, batch_events,
    // channels, channel, channel_users, terminate_connections, up, other;
    // app_id is set to the path's app id (checked by the caller)
    static std::string_view endpoint(std::string_view target,
                                     std::string_view &app_id);

    // one answered HTTP API request; app_id empty when it names no known
    // app.  401 is a failed signature check (the API answers 401 for
    // nothing else).  Bytes are those of the bodies.
    void count_request(std::string_view app_id, std::string_view endpoint,
                       unsigned status, std::uint64_t received,
                       std::uint64_t transmitted);

    // the HTTP API and webhook metrics
    void render(std::string &out, const app_registry &apps,
                const webhook_sender &hooks) const;

    // the coalescing metrics, per app: each app with "coalesce" lines and
    // each that had events coalesced (a reload may have removed its lines)
    static void render_coalescing(std::string &out, const app_registry &apps,
                                  const coalescer &c);

private:
    struct per_app {
        std::uint64_t calls = 0;
        std::uint64_t received = 0;
        std::uint64_t transmitted = 0;
        std::uint64_t signature_failures = 0;
    };
    // app_id, endpoint, status
    std::map<std::tuple<std::string, std::string, unsigned>, std::uint64_t>
        requests_;
    std::map<std::string, per_app, std::less<>> apps_;
};

// helpers of the text format, for control_server too
namespace prom {

// "# HELP name help\n# TYPE name type\n"
void family(std::string &out, std::string_view name, std::string_view type,
            std::string_view help);
// a label value, escaped: backslash, double quote, newline
void label(std::string &out, std::string_view value);

} // namespace prom

} // namespace pusher::broker
