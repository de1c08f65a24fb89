#include "metrics.hpp"

#include <array>
#include <set>
#include <vector>

namespace pusher::broker {

namespace prom {

void family(std::string &out, std::string_view name, std::string_view type,
            std::string_view help)
{
    out += "# HELP ";
    out += name;
    out += ' ';
    out += help;
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += type;
    out += '\n';
}

void label(std::string &out, std::string_view value)
{
    for (char c : value) {
        switch (c) {
        case '\\':
            out += "\\\\";
            break;
        case '"':
            out += "\\\"";
            break;
        case '\n':
            out += "\\n";
            break;
        default:
            out += c;
        }
    }
}

} // namespace prom

namespace {

// name{app_id="id"} value
void app_line(std::string &out, std::string_view name, std::string_view id,
              std::uint64_t value)
{
    out += name;
    out += "{app_id=\"";
    prom::label(out, id);
    out += "\"} ";
    out += std::to_string(value);
    out += '\n';
}

} // namespace

std::string_view broker_metrics::endpoint(std::string_view target,
                                          std::string_view &app_id)
{
    app_id = {};
    std::string_view path = target.substr(0, target.find('?'));
    if (path == "/up") {
        return "up";
    }
    constexpr std::string_view prefix = "/apps/";
    if (!path.starts_with(prefix)) {
        return "other";
    }
    std::string_view rest = path.substr(prefix.size());
    auto slash = rest.find('/');
    if (slash == 0 || slash == std::string_view::npos) {
        return "other";
    }
    app_id = rest.substr(0, slash);

    std::array<std::string_view, 4> seg;
    std::size_t n = 0;
    for (std::string_view e = rest.substr(slash + 1);;) {
        if (n == seg.size()) {
            return "other";
        }
        std::size_t next = e.find('/');
        seg[n++] = e.substr(0, next);
        if (next == std::string_view::npos) {
            break;
        }
        e = e.substr(next + 1);
    }
    if (n == 1 && seg[0] == "events") {
        return "events";
    }
    if (n == 1 && seg[0] == "batch_events") {
        return "batch_events";
    }
    if (n == 1 && seg[0] == "channels") {
        return "channels";
    }
    if (n == 2 && seg[0] == "channels") {
        return "channel";
    }
    if (n == 3 && seg[0] == "channels" && seg[2] == "users") {
        return "channel_users";
    }
    if (n == 3 && seg[0] == "users" && seg[2] == "terminate_connections") {
        return "terminate_connections";
    }
    return "other";
}

void broker_metrics::count_request(std::string_view app_id,
                                   std::string_view endpoint, unsigned status,
                                   std::uint64_t received,
                                   std::uint64_t transmitted)
{
    requests_[{std::string(app_id), std::string(endpoint), status}]++;
    auto it = apps_.find(app_id);
    if (it == apps_.end()) {
        it = apps_.emplace(std::string(app_id), per_app{}).first;
    }
    per_app &a = it->second;
    a.calls++;
    a.received += received;
    a.transmitted += transmitted;
    if (status == 401) {
        a.signature_failures++;
    }
}

void broker_metrics::render(std::string &out, const app_registry &apps,
                            const webhook_sender &hooks) const
{
    // every configured app has its lines, requests or not
    std::map<std::string, per_app, std::less<>> by_app = apps_;
    apps.for_each([&](const app &a) { by_app.try_emplace(a.id); });

    struct column {
        std::string_view name, type, help;
        std::uint64_t per_app::*field;
    };
    static constexpr std::array<column, 4> columns{{
        {"pusher_http_calls_received_total", "counter",
         "HTTP API requests answered (app_id empty: no known app)",
         &per_app::calls},
        {"pusher_http_received_bytes", "untyped",
         "HTTP API request body bytes (a counter; soketi's name)",
         &per_app::received},
        {"pusher_http_transmitted_bytes", "untyped",
         "HTTP API response body bytes (a counter; soketi's name)",
         &per_app::transmitted},
        {"pusher_signature_failures_total", "counter",
         "HTTP API requests refused for their signature, key or "
         "timestamp (401)",
         &per_app::signature_failures},
    }};
    for (const column &c : columns) {
        prom::family(out, c.name, c.type, c.help);
        for (const auto &[id, a] : by_app) {
            app_line(out, c.name, id, a.*c.field);
        }
    }

    prom::family(out, "pusher_http_requests_total", "counter",
                 "HTTP API requests answered, by endpoint and status");
    for (const auto &[key, n] : requests_) {
        const auto &[id, endpoint, status] = key;
        out += "pusher_http_requests_total{app_id=\"";
        prom::label(out, id);
        out += "\",endpoint=\"";
        out += endpoint;
        out += "\",status=\"";
        out += std::to_string(status);
        out += "\"} ";
        out += std::to_string(n);
        out += '\n';
    }

    // webhooks, summed over each app's endpoints: a URL may hold a secret
    struct hook_sums {
        std::uint64_t queued = 0, delivered = 0, requests = 0, retries = 0,
                      collapsed = 0, full = 0, failed = 0;
    };
    std::map<std::string, hook_sums, std::less<>> hooks_by_app;
    for (const webhook_stats &s : hooks.stats()) {
        hook_sums &h = hooks_by_app[s.app_id];
        h.queued += s.queued;
        h.delivered += s.delivered;
        h.requests += s.requests;
        h.retries += s.retries;
        h.collapsed += s.collapsed;
        for (std::uint64_t n : s.dropped_full) {
            h.full += n;
        }
        for (std::uint64_t n : s.dropped_failed) {
            h.failed += n;
        }
    }
    std::uint64_t removed = 0;
    for (std::uint64_t n : hooks.dropped_removed()) {
        removed += n;
    }

    struct hook_column {
        std::string_view name, type, help;
        std::uint64_t hook_sums::*field;
    };
    static constexpr std::array<hook_column, 5> hook_columns{{
        {"pusher_webhook_queue_depth", "gauge",
         "Webhook events waiting to be sent", &hook_sums::queued},
        {"pusher_webhook_events_sent_total", "counter",
         "Webhook events delivered (their request answered 2xx)",
         &hook_sums::delivered},
        {"pusher_webhook_requests_total", "counter",
         "Webhook requests sent, retries included", &hook_sums::requests},
        {"pusher_webhook_retries_total", "counter",
         "Webhook requests that failed and are tried again",
         &hook_sums::retries},
        {"pusher_webhook_events_collapsed_total", "counter",
         "channel_occupied/channel_vacated events undone by the channel's "
         "next change before they were sent",
         &hook_sums::collapsed},
    }};
    for (const hook_column &c : hook_columns) {
        prom::family(out, c.name, c.type, c.help);
        for (const auto &[id, h] : hooks_by_app) {
            app_line(out, c.name, id, h.*c.field);
        }
    }

    prom::family(out, "pusher_webhook_events_dropped_total", "counter",
                 "Webhook events dropped: queue full, all attempts failed, "
                 "or the webhook was removed by a reload (app_id empty)");
    for (const auto &[id, h] : hooks_by_app) {
        for (auto [reason, n] : {std::pair<std::string_view, std::uint64_t>{
                                     "full", h.full},
                                 {"failed", h.failed}})
        {
            out += "pusher_webhook_events_dropped_total{app_id=\"";
            prom::label(out, id);
            out += "\",reason=\"";
            out += reason;
            out += "\"} ";
            out += std::to_string(n);
            out += '\n';
        }
    }
    out += "pusher_webhook_events_dropped_total{app_id=\"\",reason=\"removed\"} ";
    out += std::to_string(removed);
    out += '\n';
}

void broker_metrics::render_coalescing(std::string &out,
                                       const app_registry &apps,
                                       const coalescer &c)
{
    std::set<std::string, std::less<>> ids;
    apps.for_each([&](const app &a) {
        if (!a.coalesce.empty()) {
            ids.insert(a.id);
        }
    });
    for (const auto &[id, counts] : c.app_stats()) {
        ids.insert(id);
    }
    auto of = [&](const std::string &id) {
        auto it = c.app_stats().find(id);
        return it == c.app_stats().end() ? coalescer::counters{} : it->second;
    };

    prom::family(out, "pusher_events_coalesced_total", "counter",
                 "HTTP API events held by a coalesce window and replaced by "
                 "a later one: never delivered");
    for (const std::string &id : ids) {
        app_line(out, "pusher_events_coalesced_total", id, of(id).coalesced);
    }
    prom::family(out, "pusher_events_coalesce_held", "gauge",
                 "HTTP API events held for the end of their coalesce window");
    for (const std::string &id : ids) {
        app_line(out, "pusher_events_coalesce_held", id, of(id).held_now);
    }
}

} // namespace pusher::broker
