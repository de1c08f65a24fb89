#include "webhooks.hpp"

#include <algorithm>
#include <bit>
#include <exception>
#include <optional>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <openssl/ssl.h>

#include "json.hpp"
#include "log.hpp"
#include "presence.hpp"
#include "pusher_auth.h"
#include "pusher_proto.h"

namespace pusher::broker {

namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = net::ssl;

namespace {

constexpr std::string_view user_agent = "ngx-pusher";

std::int64_t now_ms()
{
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// {"name":"<name>","channel":"<channel>"
std::string event_head(std::string_view name, std::string_view channel)
{
    std::string out;
    out.reserve(32 + name.size() + channel.size());
    out += "{\"name\":\"";
    out += name;
    out += "\",\"channel\":\"";
    append_json_escaped(out, channel);
    out += '"';
    return out;
}

std::string channel_event(std::string_view name, std::string_view channel)
{
    std::string out = event_head(name, channel);
    out += '}';
    return out;
}

std::string member_event(std::string_view name, std::string_view channel,
                         std::string_view user_id)
{
    std::string out = event_head(name, channel);
    out += ",\"user_id\":\"";
    append_json_escaped(out, user_id);
    out += "\"}";
    return out;
}

bool presence_channel(std::string_view c)
{
    pusher_channel_type_e t = pusher_channel_type(c.data(), c.size());
    return t == PUSHER_CHANNEL_PRESENCE || t == PUSHER_CHANNEL_PRESENCE_CACHE;
}

constexpr unsigned occupancy_events =
    webhook_channel_occupied | webhook_channel_vacated;

// the index of an event type in webhook_stats::per_type
unsigned type_index(unsigned event)
{
    return static_cast<unsigned>(std::countr_zero(event));
}

// " channel_occupied 3, client_event 17": the types counted
std::string counts_text(const webhook_stats::per_type &counts)
{
    std::string out;
    for (unsigned n = 0; n < counts.size(); n++) {
        if (counts[n] != 0) {
            out += out.empty() ? " " : ", ";
            out += pusher_webhook_event_name(n);
            out += ' ';
            out += std::to_string(counts[n]);
        }
    }
    return out;
}

} // namespace

std::string webhook_body(std::int64_t time_ms,
                         const std::deque<std::string> &events,
                         std::size_t count)
{
    std::size_t len = 32;
    for (std::size_t i = 0; i < count; i++) {
        len += events[i].size() + 1;
    }
    std::string out;
    out.reserve(len);
    out += "{\"time_ms\":";
    out += std::to_string(time_ms);
    out += ",\"events\":[";
    for (std::size_t i = 0; i < count; i++) {
        if (i != 0) {
            out += ',';
        }
        out += events[i];
    }
    out += "]}";
    return out;
}

std::chrono::seconds webhook_sender::backoff(int failed)
{
    std::chrono::seconds d = first_backoff;
    for (int i = 1; i < failed && d < max_backoff; i++) {
        d *= 2;
    }
    return std::min(d, max_backoff);
}

struct webhook_sender::endpoint {
    struct channel_state;

    // one event waiting; the two queues are merged by seq when a request
    // is made, so together they keep the order of the events
    struct queued {
        std::uint64_t seq = 0;
        std::string json;               // empty: taken back (a hole)
        unsigned type = 0;              // type_index()
        // occupancy: the channel whose pending event this is; null once
        // it is fixed
        channel_state *pending_of = nullptr;
    };

    // An occupancy-tracked channel (webhooks.hpp, "Occupancy collapses"):
    // in the map only while occupied or pending is set.
    struct channel_state {
        std::string_view name;          // the map's key (stable in its node)
        bool occupied = false;          // as told, or being told
        bool pending = false;           // occupancy[pos - occupancy_base]
        std::uint64_t pos = 0;          // would make it !occupied
    };

    endpoint(net::io_context &ioc, const app &a, const webhook_config &c,
             std::shared_ptr<ssl::context> t)
        : app_id(a.id), cfg(c), tls(std::move(t)), timer(ioc)
    {
    }

    std::string app_id;
    std::string key;                // of the app, updated by configure()
    std::string secret;
    webhook_config cfg;
    std::shared_ptr<ssl::context> tls;
    std::deque<queued> events;      // not occupancy; never has holes
    std::size_t events_bytes = 0;   // their JSON
    std::deque<queued> occupancy;   // its back is never a hole
    std::uint64_t occupancy_base = 0;   // the position of its front
    std::size_t holes = 0;          // in occupancy
    std::uint64_t next_seq = 0;
    string_map<channel_state> channels;
    std::optional<beast::tcp_stream> plain;
    std::optional<beast::ssl_stream<beast::tcp_stream>> secure;
    beast::flat_buffer buffer;
    net::steady_timer timer;        // backoff
    bool connected = false;
    bool running = false;           // run() takes from the queues
    bool stopped = false;
    bool failing = false;           // the last attempt failed (logged)
    webhook_stats stats;            // the counters
    webhook_stats::per_type unlogged{};     // drops not yet logged
    std::chrono::steady_clock::time_point drop_logged{};

    std::string who() const
    {
        return "webhook " + cfg.url + " of app " + app_id;
    }

    std::size_t live_occupancy() const noexcept
    {
        return occupancy.size() - holes;
    }

    std::size_t live() const noexcept
    {
        return events.size() + live_occupancy();
    }

    queued &at(std::uint64_t pos)
    {
        return occupancy[static_cast<std::size_t>(pos - occupancy_base)];
    }

    // The state is no longer pending (fixed, sent or dropped): what the
    // endpoint was told is now "told".  Erases the channel if that is
    // vacated, the default.
    void settle(channel_state &st, bool told)
    {
        st.pending = false;
        st.occupied = told;
        if (!told) {
            channels.erase(channels.find(st.name));
        }
    }

    // An event of the channel that is not occupancy is queued: the
    // channel's pending occupancy event stays before it, sent
    void fix(std::string_view channel)
    {
        if (channels.empty()) {
            return;
        }
        auto it = channels.find(channel);
        if (it != channels.end() && it->second.pending) {
            channel_state &st = it->second;
            at(st.pos).pending_of = nullptr;
            settle(st, !st.occupied);
        }
    }

    void pop_occupancy_front()
    {
        occupancy.pop_front();
        occupancy_base++;
    }

    // holes before the first live occupancy event
    void trim_front()
    {
        while (!occupancy.empty() && occupancy.front().json.empty()) {
            pop_occupancy_front();
            holes--;
        }
    }

    // Takes back the pending event of st: a hole, or gone at the back.
    void take_back(channel_state &st)
    {
        queued &q = at(st.pos);
        q.pending_of = nullptr;
        if (st.pos + 1 == occupancy_base + occupancy.size()) {
            occupancy.pop_back();
            while (!occupancy.empty() && occupancy.back().json.empty()) {
                occupancy.pop_back();
                holes--;
            }
        } else {
            std::string().swap(q.json);
            holes++;
            compact();
        }
    }

    // Holes are removed when they are the majority, so they cost at most
    // as much memory as the live events, and the work is amortized O(1)
    // per hole.
    void compact()
    {
        if (holes < 64 || holes * 2 < occupancy.size()) {
            return;
        }
        std::deque<queued> kept;
        for (queued &q : occupancy) {
            if (!q.json.empty()) {
                if (q.pending_of != nullptr) {
                    q.pending_of->pos = occupancy_base + kept.size();
                }
                kept.push_back(std::move(q));
            }
        }
        occupancy.swap(kept);
        holes = 0;
    }

    // Moves up to n events, oldest first, into batch; counts their types.
    // Pending occupancy events taken are what the endpoint is being told.
    void take(std::size_t n, std::deque<std::string> &batch,
              webhook_stats::per_type &types)
    {
        while (batch.size() < n) {
            trim_front();
            bool from_events = !events.empty();
            if (from_events && !occupancy.empty()) {
                from_events = events.front().seq < occupancy.front().seq;
            } else if (!from_events && occupancy.empty()) {
                return;
            }
            queued &q = from_events ? events.front() : occupancy.front();
            types[q.type]++;
            if (q.pending_of != nullptr) {
                settle(*q.pending_of, !q.pending_of->occupied);
            }
            batch.push_back(std::move(q.json));
            if (from_events) {
                events_bytes -= batch.back().size();
                events.pop_front();
            } else {
                pop_occupancy_front();
            }
        }
    }

    // what is still queued, per type (a reload removes the endpoint)
    void count_queued(webhook_stats::per_type &types) const
    {
        for (const queued &q : events) {
            types[q.type]++;
        }
        for (const queued &q : occupancy) {
            if (!q.json.empty()) {
                types[q.type]++;
            }
        }
    }

    void dropped(unsigned type)
    {
        stats.dropped_full[type]++;
        unlogged[type]++;
        auto now = std::chrono::steady_clock::now();
        if (drop_logged == std::chrono::steady_clock::time_point{}
            || now - drop_logged >= drop_log_interval)
        {
            log_drops(now);
        }
    }

    // the drops since the last line, and all of them
    void log_drops(std::chrono::steady_clock::time_point now)
    {
        log_line(who() + ": queue full (" + std::to_string(max_queue)
                 + " events or " + std::to_string(max_queue_bytes >> 20)
                 + " MB, and " + std::to_string(max_occupancy_queue)
                 + " channel_occupied/channel_vacated), oldest dropped:"
                 + counts_text(unlogged) + " (in all:"
                 + counts_text(stats.dropped_full) + ")");
        unlogged.fill(0);
        drop_logged = now;
    }

    bool unlogged_drops() const noexcept
    {
        return std::any_of(unlogged.begin(), unlogged.end(),
                           [](std::uint64_t n) { return n != 0; });
    }

    void close() noexcept
    {
        boost::system::error_code ignored;
        if (plain) {
            plain->socket().close(ignored);
        }
        if (secure) {
            beast::get_lowest_layer(*secure).socket().close(ignored);
        }
        connected = false;
    }

    void stop() noexcept
    {
        stopped = true;
        close();
        timer.cancel();
    }
};

webhook_sender::webhook_sender(net::io_context &ioc, const app_registry &apps)
    : ioc_(ioc), apps_(apps)
{
}

webhook_sender::~webhook_sender()
{
    stop();
}

void webhook_sender::stop()
{
    stopped_ = true;
    for (auto &[id, list] : endpoints_) {
        for (auto &ep : list) {
            ep->stop();
        }
    }
    endpoints_.clear();
    // destroying the timers cancels them
    vacating_.clear();
}

void webhook_sender::configure()
{
    if (stopped_) {
        return;
    }
    string_map<std::vector<endpoint_ptr>> next;
    apps_.for_each([&](const app &a) {
        if (a.webhooks.empty()) {
            return;
        }
        auto old = endpoints_.find(a.id);
        std::vector<endpoint_ptr> list;
        for (const webhook_config &cfg : a.webhooks) {
            endpoint_ptr ep;
            if (old != endpoints_.end()) {
                for (endpoint_ptr &o : old->second) {
                    if (o && o->cfg == cfg) {
                        ep = std::move(o);
                        break;
                    }
                }
            }
            if (!ep) {
                if (cfg.tls && !tls_) {
                    try {
                        auto ctx = std::make_shared<ssl::context>(
                            ssl::context::tls_client);
                        ctx->set_default_verify_paths();
                        ctx->set_verify_mode(ssl::verify_peer);
                        tls_ = std::move(ctx);
                    } catch (const std::exception &e) {
                        log_line(std::string("webhooks: no TLS context: ")
                                 + e.what());
                    }
                }
                ep = std::make_shared<endpoint>(ioc_, a, cfg, tls_);
            }
            ep->key = a.key;
            ep->secret = a.secret;
            list.push_back(std::move(ep));
        }
        next.emplace(a.id, std::move(list));
    });

    // what was not taken over is no longer configured
    for (auto &[id, list] : endpoints_) {
        for (endpoint_ptr &ep : list) {
            if (ep) {
                if (ep->live() != 0) {
                    log_line(ep->who() + " removed from the configuration: "
                             + std::to_string(ep->live())
                             + " event(s) dropped");
                    ep->count_queued(dropped_removed_);
                }
                ep->stop();
            }
        }
    }
    endpoints_ = std::move(next);
}

const app *webhook_sender::wanted(std::string_view app_id,
                                  unsigned event) const
{
    if (endpoints_.empty()) {
        return nullptr;
    }
    const app *a = apps_.find(app_id);
    return a != nullptr && (a->webhook_events & event) != 0 ? a : nullptr;
}

std::vector<webhook_stats> webhook_sender::stats() const
{
    std::vector<webhook_stats> out;
    for (const auto &[id, list] : endpoints_) {
        for (const endpoint_ptr &ep : list) {
            webhook_stats s = ep->stats;
            s.app_id = ep->app_id;
            s.url = ep->cfg.url;
            s.queued = ep->live();
            s.queued_occupancy = ep->live_occupancy();
            out.push_back(std::move(s));
        }
    }
    return out;
}

void webhook_sender::emit(const app &a, unsigned event,
                          std::string_view channel, const std::string &json)
{
    auto it = endpoints_.find(a.id);
    if (it == endpoints_.end()) {
        return;
    }
    for (const endpoint_ptr &ep : it->second) {
        if (ep->cfg.wants(event, channel)) {
            push(ep, type_index(event), channel, json);
        }
    }
}

void webhook_sender::emit_occupancy(const app &a, std::string_view channel,
                                    bool occupied)
{
    auto it = endpoints_.find(a.id);
    if (it == endpoints_.end()) {
        return;
    }
    unsigned event =
        occupied ? webhook_channel_occupied : webhook_channel_vacated;
    std::string json;       // made once, if an endpoint takes the type
    for (const endpoint_ptr &ep : it->second) {
        if (!ep->cfg.wants(occupancy_events, channel)) {
            continue;
        }
        bool takes = ep->cfg.wants(event, channel);
        if (takes && json.empty()) {
            json = channel_event(
                occupied ? "channel_occupied" : "channel_vacated", channel);
        }
        push_occupancy(ep, channel, occupied, takes ? &json : nullptr);
    }
}

void webhook_sender::push(const endpoint_ptr &ep, unsigned type,
                          std::string_view channel, const std::string &json)
{
    endpoint &e = *ep;
    e.fix(channel);
    // the oldest of the same bound make room; occupancy events never do
    while (!e.events.empty()
           && (e.events.size() >= max_queue
               || e.events_bytes + json.size() > max_queue_bytes))
    {
        unsigned dropped = e.events.front().type;
        e.events_bytes -= e.events.front().json.size();
        e.events.pop_front();
        e.dropped(dropped);
    }
    e.events_bytes += json.size();
    e.events.push_back(endpoint::queued{e.next_seq++, json, type, nullptr});
    start(ep);
}

// webhooks.hpp, "Occupancy collapses"
void webhook_sender::push_occupancy(const endpoint_ptr &ep,
                                    std::string_view channel, bool occupied,
                                    const std::string *json)
{
    endpoint &e = *ep;
    auto it = e.channels.find(channel);
    if (it != e.channels.end() && it->second.pending) {
        endpoint::channel_state &st = it->second;
        if (occupied == st.occupied) {
            // back to what the endpoint was told: neither is sent
            e.take_back(st);
            e.settle(st, st.occupied);
            e.stats.collapsed += json != nullptr ? 2 : 1;
        } else if (json != nullptr) {
            // what the pending one says already
            e.stats.collapsed++;
        }
        return;
    }
    bool told = it != e.channels.end() && it->second.occupied;
    if (occupied == told) {
        if (json != nullptr) {
            e.stats.collapsed++;
        }
        return;
    }
    if (json == nullptr) {
        // the endpoint never hears of this type; its next event of the
        // other type follows from it
        if (!occupied) {
            e.channels.erase(it);
            return;
        }
        it = e.channels.emplace(channel, endpoint::channel_state{}).first;
        it->second.name = it->first;
        it->second.occupied = true;
        return;
    }

    // the oldest occupancy event makes room: no other kind is pushed out
    // (dropping a pending one cannot erase this channel: it has none)
    while (e.live_occupancy() >= max_occupancy_queue) {
        e.trim_front();
        endpoint::queued &q = e.occupancy.front();
        unsigned dropped = q.type;
        if (q.pending_of != nullptr) {
            // never told: the endpoint's view stays as it was
            e.settle(*q.pending_of, q.pending_of->occupied);
        }
        e.pop_occupancy_front();
        e.dropped(dropped);
    }
    it = e.channels.find(channel);
    if (it == e.channels.end()) {
        it = e.channels.emplace(channel, endpoint::channel_state{}).first;
        it->second.name = it->first;
    }
    endpoint::channel_state &st = it->second;
    st.pending = true;
    st.pos = e.occupancy_base + e.occupancy.size();
    unsigned type = type_index(occupied ? webhook_channel_occupied
                                        : webhook_channel_vacated);
    e.occupancy.push_back(endpoint::queued{e.next_seq++, *json, type, &st});
    start(ep);
}

void webhook_sender::start(const endpoint_ptr &ep)
{
    if (!ep->running) {
        // co_spawn starts it on a later turn of the event loop: what the
        // current turn emits goes into the same request
        ep->running = true;
        net::co_spawn(ioc_, run(ep), net::detached);
    }
}

void webhook_sender::channel_occupied(std::string_view app_id,
                                      std::string_view channel)
{
    if (!vacating_.empty()) {
        auto it = vacating_.find(app_channel_key(app_id, channel));
        if (it != vacating_.end()) {
            // back within webhook_vacated_delay: neither event is sent
            vacating_.erase(it);
            return;
        }
    }
    // an app with either type follows both (push_occupancy)
    if (const app *a = wanted(app_id, occupancy_events)) {
        emit_occupancy(*a, channel, true);
    }
}

void webhook_sender::restore_occupied(std::string_view app_id,
                                      std::string_view channel)
{
    const app *a = wanted(app_id, occupancy_events);
    if (a == nullptr) {
        return;
    }
    auto it = endpoints_.find(a->id);
    if (it == endpoints_.end()) {
        return;
    }
    for (const endpoint_ptr &ep : it->second) {
        if (!ep->cfg.wants(occupancy_events, channel)
            || ep->channels.find(channel) != ep->channels.end())
        {
            continue;
        }
        auto cit = ep->channels.emplace(channel, endpoint::channel_state{})
                       .first;
        cit->second.name = cit->first;
        cit->second.occupied = true;
    }
}

void webhook_sender::channel_vacated(std::string_view app_id,
                                     std::string_view channel)
{
    const app *a = wanted(app_id, occupancy_events);
    if (a == nullptr) {
        return;
    }
    if (a->webhook_vacated_delay == 0) {
        emit_occupancy(*a, channel, false);
        return;
    }

    std::string key = app_channel_key(app_id, channel);
    if (vacating_.find(key) != vacating_.end()) {
        return;
    }
    vacating v;
    v.timer = std::make_unique<net::steady_timer>(
        ioc_, std::chrono::milliseconds(a->webhook_vacated_delay));
    v.id = next_vacating_++;
    // the id tells a timer that fired from a later one of the channel: an
    // expired wait may still run after the timer was erased
    v.timer->async_wait(
        [this, key, id = v.id, app_id = std::string(app_id),
         channel = std::string(channel)](boost::system::error_code ec) {
            if (ec) {
                return;
            }
            auto it = vacating_.find(key);
            if (it == vacating_.end() || it->second.id != id) {
                return;
            }
            // destroys the timer whose handler this is: allowed, the
            // handler was moved out of it
            vacating_.erase(it);
            if (const app *now = wanted(app_id, occupancy_events)) {
                emit_occupancy(*now, channel, false);
            }
        });
    vacating_.emplace(std::move(key), std::move(v));
}

void webhook_sender::member_added(std::string_view app_id,
                                  std::string_view channel,
                                  std::string_view user_id)
{
    if (const app *a = wanted(app_id, webhook_member_added)) {
        emit(*a, webhook_member_added, channel,
             member_event("member_added", channel, user_id));
    }
}

void webhook_sender::member_removed(std::string_view app_id,
                                    std::string_view channel,
                                    std::string_view user_id)
{
    if (const app *a = wanted(app_id, webhook_member_removed)) {
        emit(*a, webhook_member_removed, channel,
             member_event("member_removed", channel, user_id));
    }
}

void webhook_sender::cache_miss(std::string_view app_id,
                                std::string_view channel)
{
    if (const app *a = wanted(app_id, webhook_cache_miss)) {
        emit(*a, webhook_cache_miss, channel,
             channel_event("cache_miss", channel));
    }
}

// {"name":"client_event","channel":C,"event":E,"data":D,"socket_id":S,
//  "user_id":U}: event and data as the client sent them, user_id (a
// string) on presence channels only
void webhook_sender::client_event(std::string_view app_id,
                                  std::string_view channel,
                                  std::string_view socket_id,
                                  std::string_view frame)
{
    const app *a = wanted(app_id, webhook_client_event);
    if (a == nullptr) {
        return;
    }
    json::value v = json::parse(frame);
    const cJSON *event = json::member(v.get(), "event");
    if (!cJSON_IsString(event)) {
        return;
    }
    std::string out = event_head("client_event", channel);
    out += ",\"event\":\"";
    append_json_escaped(out, json::string_of(event));
    out += '"';
    if (const cJSON *data = json::member(v.get(), "data")) {
        json::text t = json::print(data);
        if (!t) {
            throw std::bad_alloc();
        }
        out += ",\"data\":";
        out += t.get();
    }
    out += ",\"socket_id\":\"";
    append_json_escaped(out, socket_id);
    out += '"';
    const cJSON *user = json::member(v.get(), "user_id");
    if (user != nullptr && presence_channel(channel)) {
        if (cJSON_IsString(user)) {
            out += ",\"user_id\":\"";
            append_json_escaped(out, json::string_of(user));
            out += '"';
        } else if (cJSON_IsNumber(user)) {
            json::text t = json::print(user);
            if (!t) {
                throw std::bad_alloc();
            }
            out += ",\"user_id\":\"";
            out += t.get();
            out += '"';
        }
    }
    out += '}';
    emit(*a, webhook_client_event, channel, out);
}

net::awaitable<void> webhook_sender::run(endpoint_ptr ep)
{
    try {
        std::string why;
        std::deque<std::string> batch;
        webhook_stats::per_type types{};
        while (!ep->stopped && ep->live() != 0) {
            batch.clear();
            types.fill(0);
            ep->take(max_batch, batch, types);
            std::string body = webhook_body(now_ms(), batch, batch.size());

            for (int attempt = 1;; attempt++) {
                ep->stats.requests++;
                bool ok = co_await deliver(*ep, body, why);
                if (ep->stopped) {
                    co_return;
                }
                if (debug_enabled) {
                    debug_line(ep->who() + ":" + counts_text(types)
                               + " in " + std::to_string(body.size())
                               + " bytes, attempt " + std::to_string(attempt)
                               + ": " + (ok ? "delivered" : "failed (" + why
                                                                + ")"));
                }
                if (ok) {
                    ep->stats.delivered += batch.size();
                    if (ep->failing) {
                        ep->failing = false;
                        log_line(ep->who() + ": delivering again");
                    }
                    break;
                }
                // once per outage: a bad URL or certificate shows at once
                if (!ep->failing) {
                    ep->failing = true;
                    log_line(ep->who() + ": delivery failed (" + why
                             + "), retrying");
                }
                if (attempt == max_attempts) {
                    for (std::size_t n = 0; n < types.size(); n++) {
                        ep->stats.dropped_failed[n] += types[n];
                    }
                    log_line(ep->who() + ": " + std::to_string(batch.size())
                             + " event(s) dropped after "
                             + std::to_string(max_attempts)
                             + " attempts (last: " + why + ")");
                    break;
                }
                ep->stats.retries++;
                boost::system::error_code ec;
                ep->timer.expires_after(backoff(attempt));
                co_await ep->timer.async_wait(
                    net::redirect_error(net::use_awaitable, ec));
                if (ep->stopped) {
                    co_return;
                }
            }
        }
        // drained: the drops the rate limit held back, so the log has all
        if (!ep->stopped && ep->unlogged_drops()) {
            ep->log_drops(std::chrono::steady_clock::now());
        }
    } catch (const std::exception &e) {
        log_line(ep->who() + ": " + e.what());
        ep->close();
    }
    ep->running = false;
}

namespace {

using request = http::request<http::string_body>;

// one request and its answer on an open connection: the status, or 0
template <typename Stream>
net::awaitable<unsigned> exchange(Stream &s, beast::flat_buffer &buffer,
                                  request &req, bool &keep_alive,
                                  std::string &why)
{
    boost::system::error_code ec;
    beast::get_lowest_layer(s).expires_after(webhook_sender::request_timeout);
    co_await http::async_write(s, req,
                               net::redirect_error(net::use_awaitable, ec));
    if (ec) {
        why = "write: " + ec.message();
        co_return 0;
    }
    http::response_parser<http::string_body> parser;
    parser.body_limit(webhook_sender::max_response);
    co_await http::async_read(s, buffer, parser,
                              net::redirect_error(net::use_awaitable, ec));
    if (ec) {
        why = "read: " + ec.message();
        co_return 0;
    }
    keep_alive = parser.get().keep_alive();
    co_return parser.get().result_int();
}

} // namespace

net::awaitable<bool> webhook_sender::deliver(endpoint &ep,
                                             const std::string &body,
                                             std::string &why)
{
    char sig[PUSHER_HMAC_HEX_LEN];
    pusher_hmac_sha256_hex(
        reinterpret_cast<const std::uint8_t *>(ep.secret.data()),
        ep.secret.size(), reinterpret_cast<const std::uint8_t *>(body.data()),
        body.size(), sig);

    request req{http::verb::post, ep.cfg.target, 11};
    req.set(http::field::host, ep.cfg.host_header);
    req.set(http::field::user_agent, user_agent);
    for (const auto &[name, value] : ep.cfg.headers) {
        req.set(name, value);
    }
    req.set(http::field::content_type, "application/json");
    req.set("X-Pusher-Key", ep.key);
    req.set("X-Pusher-Signature", std::string_view(sig, sizeof(sig)));
    req.keep_alive(true);
    req.body() = body;
    req.prepare_payload();

    boost::system::error_code ec;
    // a kept-alive connection the receiver closed meanwhile gets one more
    // try on a new connection
    for (int round = 0; round < 2; round++) {
        bool reused = ep.connected;
        if (!ep.connected) {
            tcp::resolver resolver(ioc_);
            auto results = co_await resolver.async_resolve(
                ep.cfg.host, ep.cfg.port,
                net::redirect_error(net::use_awaitable, ec));
            if (ep.stopped) {
                co_return false;
            }
            if (ec) {
                why = "resolve " + ep.cfg.host + ": " + ec.message();
                co_return false;
            }
            ep.buffer.clear();
            if (!ep.cfg.tls) {
                ep.plain.emplace(ioc_);
                ep.plain->expires_after(request_timeout);
                co_await ep.plain->async_connect(
                    results, net::redirect_error(net::use_awaitable, ec));
            } else {
                if (!ep.tls) {
                    why = "no TLS context";
                    co_return false;
                }
                ep.secure.emplace(ioc_, *ep.tls);
                boost::system::error_code not_ip;
                net::ip::make_address(ep.cfg.host, not_ip);
                // SNI for names, not for addresses (RFC 6066 3)
                if (not_ip
                    && !SSL_set_tlsext_host_name(ep.secure->native_handle(),
                                                 ep.cfg.host.c_str()))
                {
                    why = "SNI";
                    co_return false;
                }
                ep.secure->set_verify_callback(
                    ssl::host_name_verification(ep.cfg.host));
                auto &lowest = beast::get_lowest_layer(*ep.secure);
                lowest.expires_after(request_timeout);
                co_await lowest.async_connect(
                    results, net::redirect_error(net::use_awaitable, ec));
                if (!ec && !ep.stopped) {
                    lowest.expires_after(request_timeout);
                    co_await ep.secure->async_handshake(
                        ssl::stream_base::client,
                        net::redirect_error(net::use_awaitable, ec));
                }
            }
            if (ep.stopped) {
                co_return false;
            }
            if (ec) {
                why = "connect: " + ec.message();
                ep.close();
                co_return false;
            }
            ep.connected = true;
        }

        bool keep_alive = false;
        unsigned status = 0;
        if (ep.cfg.tls) {
            status = co_await exchange(*ep.secure, ep.buffer, req, keep_alive,
                                       why);
        } else {
            status = co_await exchange(*ep.plain, ep.buffer, req, keep_alive,
                                       why);
        }
        if (ep.stopped) {
            co_return false;
        }
        if (status != 0) {
            if (!keep_alive) {
                ep.close();
            }
            if (status >= 200 && status < 300) {
                co_return true;
            }
            why = "status " + std::to_string(status);
            co_return false;
        }
        ep.close();
        if (!reused) {
            co_return false;
        }
    }
    co_return false;
}

} // namespace pusher::broker
