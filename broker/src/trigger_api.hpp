#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "app_registry.hpp"
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
// published (all or nothing).
class trigger_api {
public:
    trigger_api(segment &seg, app_registry &apps, control_server &control,
                ring_flow &flow);

    // target is the raw request target ("/apps/1/events?auth_key=..");
    // waited: how long the caller has retried this request (retry answers)
    api_response handle(std::string_view method, std::string_view target,
                        std::string_view body,
                        ring_flow::clock::duration waited = {});

    // how long a request waits for a worker that keeps up before it is
    // answered 503 with nothing written
    static constexpr auto ring_wait_limit = std::chrono::seconds(2);

    // whether need bytes written now would leave every live worker's
    // unread records intact (a wrap's padding may ask for more)
    bool room_for(std::uint64_t need) { return flow_.room(flow_.tail() + need); }

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
    void publish(const app &a, const event &ev);
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
    // pusher_debug: what the request asked for, for its debug line
    std::string debug_;
};

} // namespace pusher::broker
