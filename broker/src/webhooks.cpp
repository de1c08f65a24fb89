#include "webhooks.hpp"

#include <algorithm>
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
    std::deque<std::string> queue;  // event objects not yet in a request
    std::size_t queue_bytes = 0;    // their size
    std::optional<beast::tcp_stream> plain;
    std::optional<beast::ssl_stream<beast::tcp_stream>> secure;
    beast::flat_buffer buffer;
    net::steady_timer timer;        // backoff
    bool connected = false;
    bool running = false;           // run() owns the queue's front
    bool stopped = false;
    bool failing = false;           // the last attempt failed (logged)
    std::uint64_t dropped = 0;      // overflow drops not yet logged
    std::chrono::steady_clock::time_point drop_logged{};

    std::string who() const
    {
        return "webhook " + cfg.url + " of app " + app_id;
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
                if (!ep->queue.empty()) {
                    log_line(ep->who() + " removed from the configuration: "
                             + std::to_string(ep->queue.size())
                             + " event(s) dropped");
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

void webhook_sender::emit(const app &a, unsigned event,
                          std::string_view channel, const std::string &json)
{
    auto it = endpoints_.find(a.id);
    if (it == endpoints_.end()) {
        return;
    }
    for (const endpoint_ptr &ep : it->second) {
        if (ep->cfg.wants(event, channel)) {
            push(ep, json);
        }
    }
}

void webhook_sender::push(const endpoint_ptr &ep, const std::string &json)
{
    while (!ep->queue.empty()
           && (ep->queue.size() >= max_queue
               || ep->queue_bytes + json.size() > max_queue_bytes))
    {
        ep->queue_bytes -= ep->queue.front().size();
        ep->queue.pop_front();
        ep->dropped++;
    }
    if (ep->dropped != 0) {
        auto now = std::chrono::steady_clock::now();
        if (ep->drop_logged == std::chrono::steady_clock::time_point{}
            || now - ep->drop_logged >= drop_log_interval)
        {
            log_line(ep->who() + ": queue full (" + std::to_string(max_queue)
                     + " events or "
                     + std::to_string(max_queue_bytes >> 20) + " MB), "
                     + std::to_string(ep->dropped)
                     + " oldest event(s) dropped");
            ep->dropped = 0;
            ep->drop_logged = now;
        }
    }
    ep->queue_bytes += json.size();
    ep->queue.push_back(json);
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
    if (const app *a = wanted(app_id, webhook_channel_occupied)) {
        emit(*a, webhook_channel_occupied, channel,
             channel_event("channel_occupied", channel));
    }
}

void webhook_sender::channel_vacated(std::string_view app_id,
                                     std::string_view channel)
{
    const app *a = wanted(app_id, webhook_channel_vacated);
    if (a == nullptr) {
        return;
    }
    if (a->webhook_vacated_delay == 0) {
        emit(*a, webhook_channel_vacated, channel,
             channel_event("channel_vacated", channel));
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
            if (const app *now = wanted(app_id, webhook_channel_vacated)) {
                emit(*now, webhook_channel_vacated, channel,
                     channel_event("channel_vacated", channel));
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
        while (!ep->stopped && !ep->queue.empty()) {
            std::size_t n = std::min(ep->queue.size(), max_batch);
            std::string body = webhook_body(now_ms(), ep->queue, n);
            for (std::size_t i = 0; i < n; i++) {
                ep->queue_bytes -= ep->queue[i].size();
            }
            ep->queue.erase(ep->queue.begin(),
                            ep->queue.begin()
                                + static_cast<std::ptrdiff_t>(n));

            for (int attempt = 1;; attempt++) {
                bool ok = co_await deliver(*ep, body, why);
                if (ep->stopped) {
                    co_return;
                }
                if (ok) {
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
                    log_line(ep->who() + ": " + std::to_string(n)
                             + " event(s) dropped after "
                             + std::to_string(max_attempts)
                             + " attempts (last: " + why + ")");
                    break;
                }
                boost::system::error_code ec;
                ep->timer.expires_after(backoff(attempt));
                co_await ep->timer.async_wait(
                    net::redirect_error(net::use_awaitable, ec));
                if (ep->stopped) {
                    co_return;
                }
            }
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
