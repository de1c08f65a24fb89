#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "app_registry.hpp"
#include "control_server.hpp"
#include "json.hpp"
#include "segment.hpp"

namespace pusher::broker {

struct api_response {
    unsigned status = 200;
    std::string body;           // JSON
};

// The HTTP API without the transport: routing, signature check,
// validation, and the ring writes of POST /apps/{id}/events and
// /batch_events.  A request is validated whole before anything is
// published (all or nothing).
class trigger_api {
public:
    trigger_api(segment &seg, app_registry &apps, control_server &control);

    // target is the raw request target ("/apps/1/events?auth_key=..")
    api_response handle(std::string_view method, std::string_view target,
                        std::string_view body);

private:
    // one event ready to publish: every field validated
    struct event {
        std::string_view name;
        std::string_view data;
        std::string_view socket_id;
        const cJSON *channels = nullptr;    // array of strings, or
        const cJSON *channel = nullptr;     // one string
        std::size_t json_base = 0;          // event JSON without channel
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
                         bool batch, std::string_view body);
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

    segment &seg_;
    app_registry &apps_;
    control_server &control_;
    // per-request scratch, reused: the broker is single-threaded
    std::vector<event> events_;
    std::vector<json::text> printed_;
};

} // namespace pusher::broker
