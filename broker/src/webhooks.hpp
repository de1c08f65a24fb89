#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "asio.hpp"
#include "app_registry.hpp"
#include "string_map.hpp"

namespace boost::asio::ssl {
class context;
}

namespace pusher::broker {

// Webhooks (soketi's set; docs/protocol.md), POSTed by the broker to
// the endpoints of each app's "webhooks" (HELLO).
//
// Per endpoint (app, webhook): a bounded queue of event objects and at
// most one request in flight, so events arrive in order.  An event is sent
// on the next turn of the event loop if the endpoint is idle; events that
// come while a request is in flight go together in the next one (natural
// batching, at most max_batch per request).  A 2xx answer is delivery;
// anything else is retried with exponential backoff and dropped, logged,
// after max_attempts.  Nothing here waits: the callers (the control
// server) only append to queues.
class webhook_sender {
public:
    static constexpr std::size_t max_batch = 100;             // events
    static constexpr std::size_t max_queue = 10000;           // events
    static constexpr std::size_t max_queue_bytes = 16 << 20;  // their JSON
    static constexpr int max_attempts = 6;
    static constexpr std::chrono::seconds request_timeout{10};
    static constexpr std::chrono::seconds first_backoff{1};
    static constexpr std::chrono::seconds max_backoff{60};
    // answers larger than this are a failed delivery
    static constexpr std::uint64_t max_response = 64 * 1024;
    // at most one queue-overflow warning per endpoint this often
    static constexpr std::chrono::seconds drop_log_interval{10};

    webhook_sender(net::io_context &ioc, const app_registry &apps);
    ~webhook_sender();

    webhook_sender(const webhook_sender &) = delete;
    webhook_sender &operator=(const webhook_sender &) = delete;

    // The app table changed: endpoints no longer configured are dropped
    // with their queues, unchanged ones keep theirs, new ones start empty.
    void configure();
    void stop();

    // The triggers; each is a hash lookup and nothing else for an app
    // without webhooks for the event.
    void channel_occupied(std::string_view app_id, std::string_view channel);
    void channel_vacated(std::string_view app_id, std::string_view channel);
    void member_added(std::string_view app_id, std::string_view channel,
                      std::string_view user_id);
    void member_removed(std::string_view app_id, std::string_view channel,
                        std::string_view user_id);
    // frame: the client event as relayed to subscribers (CLIENT_EVENT)
    void client_event(std::string_view app_id, std::string_view channel,
                      std::string_view socket_id, std::string_view frame);
    void cache_miss(std::string_view app_id, std::string_view channel);

    // the wait before attempt n + 1 after n failed ones (n >= 1)
    static std::chrono::seconds backoff(int failed);

private:
    struct endpoint;
    using endpoint_ptr = std::shared_ptr<endpoint>;

    struct vacating {
        std::unique_ptr<net::steady_timer> timer;
        std::uint64_t id = 0;
    };

    // the app if it has a webhook for the event
    const app *wanted(std::string_view app_id, unsigned event) const;
    void emit(const app &a, unsigned event, std::string_view channel,
              const std::string &json);
    void emit_vacated(std::string_view app_id, std::string_view channel);
    void push(const endpoint_ptr &ep, const std::string &json);
    net::awaitable<void> run(endpoint_ptr ep);
    net::awaitable<bool> deliver(endpoint &ep, const std::string &body,
                                 std::string &why);

    net::io_context &ioc_;
    const app_registry &apps_;
    std::shared_ptr<net::ssl::context> tls_;
    // app id -> its endpoints, in the order of its webhooks
    string_map<std::vector<endpoint_ptr>> endpoints_;
    // channel_vacated held for webhook_vacated_delay, by app_channel_key
    string_map<vacating> vacating_;
    std::uint64_t next_vacating_ = 1;
    bool stopped_ = false;
};

// {"time_ms":N,"events":[e1,e2,...]}: events are JSON texts
std::string webhook_body(std::int64_t time_ms,
                         const std::deque<std::string> &events,
                         std::size_t count);

} // namespace pusher::broker
