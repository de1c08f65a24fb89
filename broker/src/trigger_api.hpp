#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "app_registry.hpp"
#include "asio.hpp"
#include "coalescer.hpp"
#include "control_server.hpp"
#include "json.hpp"
#include "ring_flow.hpp"
#include "segment.hpp"

namespace pusher::broker {

struct api_response {
    unsigned status = 200;
    std::string body;           // JSON
    // nothing was written: the ring has no room for the request's `need`
    // bytes until a worker has read on; ask again when room_for(need)
    bool retry = false;
    std::uint64_t need = 0;
};

// The HTTP API without the transport: routing, signature check,
// validation, and the ring writes of POST /apps/{id}/events and
// /batch_events.  A request is validated whole before anything is
// published (all or nothing).  The events of channels with a "coalesce"
// rule go through the coalescer first: a held event is answered 200 like
// the others and published by a timer when its window ends.
class trigger_api {
public:
    trigger_api(net::io_context &ioc, segment &seg, app_registry &apps,
                control_server &control, ring_flow &flow);

    // target is the raw request target ("/apps/1/events?auth_key=..");
    // waited: how long the caller has retried this request (retry answers)
    api_response handle(std::string_view method, std::string_view target,
                        std::string_view body,
                        ring_flow::clock::duration waited = {});

    // how long a request waits for a worker that keeps up before it is
    // answered 503 with nothing written
    static constexpr auto ring_wait_limit = std::chrono::seconds(2);

    // An answer that reads counts (a GET, a trigger with "info") waits
    // for what the workers sent before it (control_server::uplink_now),
    // at most this long: a worker that stopped mid-message holds nobody.
    static constexpr auto uplink_wait_limit = std::chrono::milliseconds(100);
    static bool reads_counts(std::string_view method, std::string_view body)
    {
        return method == "GET" || body.find("\"info\"") != body.npos;
    }
    control_server::uplink_mark uplink_now() const
    {
        return control_.uplink_now();
    }
    bool uplink_handled(const control_server::uplink_mark &mark) const
    {
        return control_.uplink_handled(mark);
    }

    // whether need bytes written now would leave every live worker's
    // unread records intact (a wrap's padding may ask for more)
    bool room_for(std::uint64_t need) { return flow_.room(flow_.tail() + need); }

    // what the coalescer holds and has counted (metrics)
    const coalescer &coalescing() const noexcept { return coalescer_; }

    // publishes the held events at once (the broker stops)
    void drain_coalesced();

    // a held event that finds no room in the ring is tried again this
    // much later
    static constexpr auto coalesce_retry = std::chrono::milliseconds(10);

private:
    // one event ready to publish: every field validated
    struct event {
        std::string_view name;
        std::string_view data;
        std::string_view socket_id;
        const cJSON *channels = nullptr;    // array of strings, or
        const cJSON *channel = nullptr;     // one string
        std::uint32_t record = 0;           // its ring record's payload
        bool want_user_count = false;       // "info" asked for them
        bool want_subscription_count = false;
    };

    api_response up() const;
    // the app, after the signature check (throws api_error)
    const app &authenticate(std::string_view method, std::string_view path,
                            std::string_view query, std::string_view app_id,
                            std::string_view body);
    api_response trigger(std::string_view method, std::string_view path,
                         std::string_view query, std::string_view app_id,
                         bool batch, std::string_view body,
                         ring_flow::clock::duration waited);
    api_response channels(std::string_view query, const app &a);
    api_response channel_info(std::string_view query, const app &a,
                              std::string_view channel);
    api_response channel_users(const app &a, std::string_view channel);
    api_response terminate(const app &a, std::string_view user_id);
    // the counts of one channel asked for by ev's "info": appended to out
    // as the inside of an object
    void append_counts(std::string &out, const app &a, const event &ev,
                       std::string_view channel) const;
    void parse_event(const app &a, const cJSON *obj, event &ev);
    // the ring record payload of an event for names_
    std::uint32_t record_size(const app &a, std::string_view name,
                              std::string_view data,
                              std::string_view socket_id) const;
    // writes the event for the channels in names_ (and the cache of cache
    // channels among them); record is record_size()
    void publish(const app &a, std::string_view name, std::string_view data,
                 std::string_view socket_id, std::uint32_t record);
    // the channels of ev that are delivered now, into names_; the others
    // are held by the coalescer
    void coalesce(const app &a, const event &ev,
                  coalescer::time_point now);
    // a held event whose window ended: false if the ring has no room yet
    bool release(const coalescer::held_event &held);
    void on_coalesce_timer();
    void arm_coalesce_timer(coalescer::time_point at);
    // pusher_debug: the events of the request (no data, no signature)
    void describe(std::string_view app_id);

    segment &seg_;
    app_registry &apps_;
    control_server &control_;
    ring_flow &flow_;
    // per-request scratch, reused: the broker is single-threaded
    std::vector<event> events_;
    std::vector<json::text> printed_;
    std::vector<pusher_str_t> names_;
    coalescer coalescer_;
    net::steady_timer coalesce_timer_;
    // when the timer is set to fire; nothing when it is idle
    std::optional<coalescer::time_point> timer_at_;
    // pusher_debug: what the request asked for, for its debug line
    std::string debug_;
};

} // namespace pusher::broker
