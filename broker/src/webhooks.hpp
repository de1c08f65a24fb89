#pragma once

#include <array>
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

// What an endpoint's queue did, for logs and pusher_metrics (metrics.cpp).
// Per-type arrays are indexed by the bit number n of the event's
// PUSHER_WEBHOOK_* flag, named by pusher_webhook_event_name(n).
struct webhook_stats {
    using per_type = std::array<std::uint64_t, PUSHER_WEBHOOK_TYPES>;

    std::string app_id;
    std::string url;
    std::size_t queued = 0;             // events waiting, not in a request
    std::size_t queued_occupancy = 0;   // of which occupied/vacated
    std::uint64_t delivered = 0;        // events of 2xx-answered requests
    std::uint64_t requests = 0;         // requests sent, retries included
    std::uint64_t retries = 0;          // failed requests tried again
    // occupancy events never queued or taken back: undone by the
    // channel's next change before they were sent, or already announced
    std::uint64_t collapsed = 0;
    per_type dropped_full{};            // the oldest of a full queue
    per_type dropped_failed{};          // after max_attempts
};

// Webhooks (soketi's set; docs/protocol.md), POSTed by the broker to
// the endpoints of each app's "webhooks" (HELLO).
//
// Per endpoint (app, webhook): bounded queues of event objects and at
// most one request in flight, so events arrive in order.  An event is sent
// on the next turn of the event loop if the endpoint is idle; events that
// come while a request is in flight go together in the next one (natural
// batching, at most max_batch per request).  A 2xx answer is delivery;
// anything else is retried with exponential backoff and dropped, logged,
// after max_attempts.  Nothing here waits: the callers (the control
// server) only append to queues.
//
// Occupancy collapses.  channel_occupied and channel_vacated announce
// state changes, and one socket that subscribes and unsubscribes in a loop
// makes a pair per iteration (issue 11: 224k in 10 s, which pushed every
// other event out of the queue).  So, per endpoint and channel, the sender
// keeps what the endpoint was told (sent, or in the request in flight)
// and where in the queue its one pending (queued, not yet in a request)
// occupancy event is; a new occupancy event of the channel is then O(1):
//   - one that returns the channel to what the endpoint was told removes
//     the pending one and is not queued either: occupied then vacated
//     while neither was sent yields nothing.  The pair would tell the
//     receiver of no change it can act on, and keeping pairs would let a
//     churning socket fill the queue again; webhook_vacated_delay already
//     drops vacated-then-occupied the same way;
//   - a state the endpoint was already told is not queued again;
//   - an endpoint that heard nothing of a channel takes it as vacated (so
//     an endpoint a reload added hears of a channel from its next
//     occupation on, never a lone channel_vacated).
// A pending occupancy event becomes fixed, no longer removable, once any
// other event of its channel is queued after it: member, client and
// cache_miss events of a channel then always arrive between its
// channel_occupied and channel_vacated, as they happened, and a receiver
// that creates a record on channel_occupied finds it on member_added.  An
// endpoint that takes only one of the two types follows the other unsent:
// churn while its channel_occupied waits still leaves that one event, and
// a re-occupation after it was sent is announced.  The map holds a channel only while the endpoint was
// told it is occupied or an event of it is pending: at most the occupied
// channels of the node.  The order of all other events is kept.
//
// Bounds and drops.  Occupancy events have a queue of their own
// (max_occupancy_queue; each is under 300 bytes), the other events the
// max_queue and max_queue_bytes bounds, so occupancy events of many
// channels never push a member, client or cache_miss event out, and the
// other events never push occupancy out.  A full queue drops its own
// oldest event.  A dropped pending occupancy event leaves what the
// endpoint was told as it was, so the channel's next change is judged
// against the truth again; a dropped fixed one may later cost the
// receiver one repeated announcement, never a missing one.  Every drop is
// counted per endpoint and type (stats()) and logged: at once, then at
// most once per drop_log_interval while drops go on, and once more when
// the endpoint's queue has drained, so that the log has all of them.
class webhook_sender {
public:
    static constexpr std::size_t max_batch = 100;             // events
    static constexpr std::size_t max_queue = 10000;           // events
    static constexpr std::size_t max_queue_bytes = 16 << 20;  // their JSON
    // channel_occupied/channel_vacated, apart from the above; one pending
    // per channel, so this is reached only by this many channels changing
    // while the endpoint is slow
    static constexpr std::size_t max_occupancy_queue = 10000;
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
    // The receivers were told the channel is occupied (by a broker before
    // this one): nothing is sent, and its next vacancy is announced.
    void restore_occupied(std::string_view app_id, std::string_view channel);
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

    // the counters of every configured endpoint, in no particular order
    std::vector<webhook_stats> stats() const;
    // events dropped with the endpoints that reloads removed, per type
    const webhook_stats::per_type &dropped_removed() const noexcept
    {
        return dropped_removed_;
    }

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
    // the channel's occupancy changed: to every endpoint that takes
    // either type for it
    void emit_occupancy(const app &a, std::string_view channel,
                        bool occupied);
    void push(const endpoint_ptr &ep, unsigned type, std::string_view channel,
              const std::string &json);
    // json: the event, or null if the endpoint does not take its type
    void push_occupancy(const endpoint_ptr &ep, std::string_view channel,
                        bool occupied, const std::string *json);
    void start(const endpoint_ptr &ep);
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
    webhook_stats::per_type dropped_removed_{};
    bool stopped_ = false;
};

// {"time_ms":N,"events":[e1,e2,...]}: events are JSON texts
std::string webhook_body(std::int64_t time_ms,
                         const std::deque<std::string> &events,
                         std::size_t count);

} // namespace pusher::broker
