#include "trigger_api.hpp"

#include <algorithm>
#include <ctime>

#include "pusher_auth.h"
#include "pusher_proto.h"
#include "pusher_ring.h"
#include "pusher_ws.h"

namespace pusher::broker {

namespace {

// longest channel name quoted back in an error message
constexpr std::size_t max_quoted_channel = PUSHER_CHANNEL_MAX;

struct api_error {
    unsigned status;
    std::string message;
};

api_response error(unsigned status, std::string_view message)
{
    return {status, json::error_body(message, static_cast<int>(status))};
}

std::string_view channel_name(const cJSON *item)
{
    if (!cJSON_IsString(item)) {
        throw api_error{400, "Channel names must be strings"};
    }
    std::string_view name = json::string_of(item);
    if (!pusher_channel_name_valid(name.data(), name.size())) {
        if (name.size() > max_quoted_channel) {
            throw api_error{400, "Invalid channel name: "
                + std::string(name.substr(0, max_quoted_channel)) + "..."};
        }
        throw api_error{400, "Invalid channel name: " + std::string(name)};
    }
    return name;
}

template <typename F>
void for_each_channel(const cJSON *channels, const cJSON *channel, F &&f)
{
    if (channels != nullptr) {
        const cJSON *item = nullptr;
        cJSON_ArrayForEach(item, channels) {
            f(json::string_of(item));
        }
    } else {
        f(json::string_of(channel));
    }
}

} // namespace

trigger_api::trigger_api(segment &seg, app_registry &apps,
                         control_server &control)
    : seg_(seg), apps_(apps), control_(control)
{
}

api_response trigger_api::handle(std::string_view method,
                                 std::string_view target,
                                 std::string_view body)
{
    std::string_view path = target;
    std::string_view query;
    if (auto q = target.find('?'); q != std::string_view::npos) {
        path = target.substr(0, q);
        query = target.substr(q + 1);
    }

    if (path == "/up") {
        if (method != "GET" && method != "HEAD") {
            return error(405, "Method not allowed");
        }
        return up();
    }

    constexpr std::string_view prefix = "/apps/";
    if (!path.starts_with(prefix)) {
        return error(404, "Not found");
    }
    std::string_view rest = path.substr(prefix.size());
    auto slash = rest.find('/');
    if (slash == 0 || slash == std::string_view::npos) {
        return error(404, "Not found");
    }
    std::string_view app_id = rest.substr(0, slash);
    std::string_view endpoint = rest.substr(slash);

    bool batch;
    if (endpoint == "/events") {
        batch = false;
    } else if (endpoint == "/batch_events") {
        batch = true;
    } else {
        return error(404, "Not found");
    }
    if (method != "POST") {
        return error(405, "Method not allowed");
    }

    try {
        return trigger(method, path, query, app_id, batch, body);
    } catch (const api_error &e) {
        return error(e.status, e.message);
    }
}

api_response trigger_api::up() const
{
    if (!apps_.known()) {
        return {503,
                R"({"health":"STARTING","error":"no nginx worker attached"})"};
    }
    return {200, R"({"health":"OK"})"};
}

api_response trigger_api::trigger(std::string_view method,
                                  std::string_view path,
                                  std::string_view query,
                                  std::string_view app_id, bool batch,
                                  std::string_view body)
{
    if (!apps_.known()) {
        return error(503, "No nginx worker attached yet: apps unknown");
    }
    const app *a = apps_.find(app_id);
    if (a == nullptr) {
        return error(404, "Unknown app");
    }

    pusher_api_result_e rc = pusher_api_verify(
        method.data(), method.size(), path.data(), path.size(),
        query.data(), query.size(),
        reinterpret_cast<const std::uint8_t *>(body.data()), body.size(),
        reinterpret_cast<const std::uint8_t *>(a->key.data()), a->key.size(),
        reinterpret_cast<const std::uint8_t *>(a->secret.data()),
        a->secret.size(), static_cast<std::int64_t>(std::time(nullptr)));
    if (rc != PUSHER_API_OK) {
        return error(401, pusher_api_result_text(rc));
    }

    // subscribers get text frames, which must be UTF-8 (RFC 6455 8.1);
    // cJSON turns \u escapes into valid UTF-8 or fails
    if (pusher_utf8_validate(PUSHER_UTF8_ACCEPT,
                             reinterpret_cast<const std::uint8_t *>(
                                 body.data()), body.size())
        != PUSHER_UTF8_ACCEPT)
    {
        return error(400, "Request body is not valid UTF-8");
    }

    json::value root = json::parse(body);
    if (!cJSON_IsObject(root.get())) {
        return error(400, "Invalid JSON body");
    }

    events_.clear();
    printed_.clear();

    if (!batch) {
        events_.emplace_back();
        parse_event(*a, root.get(), events_.back());
    } else {
        const cJSON *items = json::member(root.get(), "batch");
        if (!cJSON_IsArray(items)) {
            return error(400, "Batch is missing: \"batch\" must be an array");
        }
        int n = cJSON_GetArraySize(items);
        if (n == 0) {
            return error(400, "Batch is empty");
        }
        if (static_cast<std::uint32_t>(n) > a->max_batch) {
            return error(400, "Cannot batch-send more than "
                         + std::to_string(a->max_batch)
                         + " messages at once");
        }
        const cJSON *item = nullptr;
        cJSON_ArrayForEach(item, items) {
            if (!cJSON_IsObject(item)) {
                return error(400, "Batch items must be objects");
            }
            events_.emplace_back();
            parse_event(*a, item, events_.back());
        }
    }

    for (const event &ev : events_) {
        publish(*a, ev);
    }
    control_.notify_published();

    events_.clear();
    printed_.clear();
    return {200, "{}"};
}

void trigger_api::parse_event(const app &a, const cJSON *obj, event &ev)
{
    const cJSON *name = json::member(obj, "name");
    if (!cJSON_IsString(name) || name->valuestring[0] == '\0') {
        throw api_error{400, "Event name is missing"};
    }
    ev.name = json::string_of(name);
    if (ev.name.size() > a.max_event_name) {
        throw api_error{400, "Event name is longer than "
                        + std::to_string(a.max_event_name) + " bytes"};
    }

    const cJSON *data = json::member(obj, "data");
    if (data == nullptr) {
        throw api_error{400, "Event data is missing"};
    }
    if (cJSON_IsString(data)) {
        ev.data = json::string_of(data);
    } else {
        // an object (or any other value) is sent on as its JSON text
        json::text text = json::print(data);
        if (!text) {
            throw std::bad_alloc();
        }
        ev.data = std::string_view(text.get());
        printed_.push_back(std::move(text));
    }
    if (ev.data.size() > a.max_event_data) {
        throw api_error{413, "Event data is larger than "
                        + std::to_string(a.max_event_data) + " bytes"};
    }

    const cJSON *channels = json::member(obj, "channels");
    const cJSON *channel = json::member(obj, "channel");
    ev.channels = nullptr;
    ev.channel = nullptr;
    std::size_t longest = 0;

    if (channels != nullptr) {
        if (!cJSON_IsArray(channels)) {
            throw api_error{400, "\"channels\" must be an array of strings"};
        }
        int n = cJSON_GetArraySize(channels);
        if (n == 0) {
            throw api_error{400, "No channels given"};
        }
        if (static_cast<std::uint32_t>(n) > a.max_channels) {
            throw api_error{400, "Cannot broadcast to more than "
                            + std::to_string(a.max_channels)
                            + " channels at once"};
        }
        const cJSON *item = nullptr;
        cJSON_ArrayForEach(item, channels) {
            longest = std::max(longest, channel_name(item).size());
        }
        ev.channels = channels;
    } else if (channel != nullptr) {
        longest = channel_name(channel).size();
        ev.channel = channel;
    } else {
        throw api_error{400, "Event needs \"channels\" or \"channel\""};
    }

    ev.socket_id = {};
    const cJSON *socket_id = json::member(obj, "socket_id");
    if (socket_id != nullptr && !cJSON_IsNull(socket_id)) {
        if (!cJSON_IsString(socket_id)) {
            throw api_error{400, "Invalid socket_id"};
        }
        ev.socket_id = json::string_of(socket_id);
        if (ev.socket_id.size() > PUSHER_SOCKET_ID_MAX
            || !pusher_socket_id_valid(ev.socket_id.data(),
                                       ev.socket_id.size()))
        {
            throw api_error{400, "Invalid socket_id"};
        }
    }

    // The record of the longest channel must fit the ring.  Valid channel
    // names need no JSON escaping, so the JSON grows by the name length.
    ev.json_base = pusher_event_json_size(
        reinterpret_cast<const std::uint8_t *>(ev.name.data()), ev.name.size(),
        nullptr, 0,
        reinterpret_cast<const std::uint8_t *>(ev.data.data()),
        ev.data.size());
    std::size_t size = pusher_ring_event_size(a.id.size(), longest,
                                              ev.socket_id.size(),
                                              ev.json_base + longest);
    if (size == 0
        || size > seg_.ring().max_record - PUSHER_RING_RECORD_HEADER)
    {
        throw api_error{413, "Event too large"};
    }
}

void trigger_api::publish(const app &a, const event &ev)
{
    const auto *name = reinterpret_cast<const std::uint8_t *>(ev.name.data());
    const auto *data = reinterpret_cast<const std::uint8_t *>(ev.data.data());
    pusher_str_t app_id{a.id.data(), a.id.size()};
    pusher_str_t socket_id{ev.socket_id.data(), ev.socket_id.size()};
    pusher_ring_t &ring = seg_.ring();

    for_each_channel(ev.channels, ev.channel, [&](std::string_view channel) {
        std::size_t size = pusher_ring_event_size(
            app_id.len, channel.size(), socket_id.len,
            ev.json_base + channel.size());
        std::uint8_t *p = pusher_ring_claim(&ring, PUSHER_RING_EVENT,
                                            static_cast<std::uint32_t>(size));
        if (size == 0 || p == nullptr) {
            // parse_event() checked the size: cannot happen
            throw api_error{413, "Event too large"};
        }
        pusher_str_t ch{channel.data(), channel.size()};
        pusher_ring_event_encode(p, &app_id, &ch, &socket_id, name,
                                 ev.name.size(), data, ev.data.size());

        switch (pusher_channel_type(channel.data(), channel.size())) {
        case PUSHER_CHANNEL_CACHE:
        case PUSHER_CHANNEL_PRIVATE_CACHE:
        case PUSHER_CHANNEL_PRESENCE_CACHE: {
            // the JSON is the tail of the frame just encoded
            pusher_ring_event_view_t view;
            std::size_t json_len = ev.json_base + channel.size();
            if (pusher_ring_event_decode(p, size, &view) == 0
                && view.frame_len >= json_len)
            {
                control_.cache().put(
                    a.id, channel,
                    std::string_view(reinterpret_cast<const char *>(
                                         view.frame + view.frame_len
                                         - json_len),
                                     json_len),
                    a.cache_ttl);
            }
            break;
        }
        default:
            break;
        }

        pusher_ring_commit(&ring);
    });
}

} // namespace pusher::broker
