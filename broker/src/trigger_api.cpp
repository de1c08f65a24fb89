#include "trigger_api.hpp"

#include "cluster.hpp"

#include <algorithm>
#include <array>
#include <ctime>
#include <optional>
#include <vector>

#include "pusher_auth.h"
#include "pusher_proto.h"
#include "pusher_ring.h"
#include "pusher_ws.h"
#include "pusher_shm.h"

#include "log.hpp"
#include "presence.hpp"

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
            // cut where a character ends: the reply is UTF-8
            std::size_t n = pusher_utf8_prefix(
                reinterpret_cast<const std::uint8_t *>(name.data()),
                name.size(), max_quoted_channel);
            throw api_error{400, "Invalid channel name: "
                + std::string(name.substr(0, n)) + "..."};
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

// longest user_id of terminate_connections
constexpr std::size_t max_user_id = 200;

int hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

// %-decoding of a path segment ('+' stays '+'); nothing if malformed
std::optional<std::string> url_decode(std::string_view s)
{
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); i++) {
        if (s[i] != '%') {
            out.push_back(s[i]);
            continue;
        }
        if (i + 2 >= s.size()) {
            return std::nullopt;
        }
        int hi = hex_value(s[i + 1]);
        int lo = hex_value(s[i + 2]);
        if (hi < 0 || lo < 0) {
            return std::nullopt;
        }
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
    }
    return out;
}

// the URL-decoded value of a query parameter; nothing if absent
std::optional<std::string> query_value(std::string_view query,
                                       const char *name)
{
    std::string out(query.size() + 1, '\0');
    long n = pusher_query_param(query.data(), query.size(), name, out.data(),
                                out.size());
    if (n < 0) {
        return std::nullopt;
    }
    out.resize(static_cast<std::size_t>(n));
    return out;
}

struct info_flags {
    bool user_count = false;
    bool subscription_count = false;
    bool cache = false;
};

// a comma list of attributes, each one of those allowed (empty items are
// skipped); throws 400 otherwise
info_flags parse_info(std::string_view list, bool allow_cache)
{
    info_flags f;
    while (!list.empty()) {
        std::size_t comma = list.find(',');
        std::string_view item = list.substr(0, comma);
        list = comma == std::string_view::npos ? std::string_view()
                                               : list.substr(comma + 1);
        if (item.empty()) {
            continue;
        }
        if (item == "user_count") {
            f.user_count = true;
        } else if (item == "subscription_count") {
            f.subscription_count = true;
        } else if (item == "cache" && allow_cache) {
            f.cache = true;
        } else {
            throw api_error{400, "Unknown info attribute: "
                + std::string(item.substr(0, 64))};
        }
    }
    return f;
}

bool is_presence(std::string_view c)
{
    pusher_channel_type_e t = pusher_channel_type(c.data(), c.size());
    return t == PUSHER_CHANNEL_PRESENCE || t == PUSHER_CHANNEL_PRESENCE_CACHE;
}

bool is_cache(std::string_view c)
{
    pusher_channel_type_e t = pusher_channel_type(c.data(), c.size());
    return t == PUSHER_CHANNEL_CACHE || t == PUSHER_CHANNEL_PRIVATE_CACHE
           || t == PUSHER_CHANNEL_PRESENCE_CACHE;
}

// a channel name from the path, decoded and checked
std::string path_channel(std::string_view segment)
{
    std::optional<std::string> name = url_decode(segment);
    if (!name || !pusher_channel_name_valid(name->data(), name->size())) {
        std::string_view shown = name ? std::string_view(*name) : segment;
        // only printable ASCII is quoted back (the reply must be UTF-8)
        if (std::any_of(shown.begin(), shown.end(), [](char c) {
                return static_cast<unsigned char>(c) < 0x20
                       || static_cast<unsigned char>(c) >= 0x7f;
            }))
        {
            throw api_error{400, "Invalid channel name"};
        }
        if (shown.size() > max_quoted_channel) {
            throw api_error{400, "Invalid channel name: "
                + std::string(shown.substr(0, max_quoted_channel)) + "..."};
        }
        throw api_error{400, "Invalid channel name: " + std::string(shown)};
    }
    return std::move(*name);
}

} // namespace

trigger_api::trigger_api(net::io_context &ioc, segment &seg,
                         app_registry &apps, control_server &control,
                         ring_flow &flow)
    : seg_(seg), apps_(apps), control_(control), flow_(flow),
      coalesce_timer_(ioc)
{
}

api_response trigger_api::handle(std::string_view method,
                                 std::string_view target,
                                 std::string_view body,
                                 ring_flow::clock::duration waited)
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

    // the segments after the app id
    std::array<std::string_view, 4> seg;
    std::size_t nseg = 0;
    for (std::string_view e = rest.substr(slash + 1);;) {
        if (nseg == seg.size()) {
            return error(404, "Not found");
        }
        std::size_t next = e.find('/');
        seg[nseg++] = e.substr(0, next);
        if (next == std::string_view::npos) {
            break;
        }
        e = e.substr(next + 1);
    }

    enum class route { events, batch, channels, channel, users, terminate };
    route r;
    std::string_view want;
    if (nseg == 1 && seg[0] == "events") {
        r = route::events;
        want = "POST";
    } else if (nseg == 1 && seg[0] == "batch_events") {
        r = route::batch;
        want = "POST";
    } else if (nseg == 1 && seg[0] == "channels") {
        r = route::channels;
        want = "GET";
    } else if (nseg == 2 && seg[0] == "channels") {
        r = route::channel;
        want = "GET";
    } else if (nseg == 3 && seg[0] == "channels" && seg[2] == "users") {
        r = route::users;
        want = "GET";
    } else if (nseg == 3 && seg[0] == "users"
               && seg[2] == "terminate_connections")
    {
        r = route::terminate;
        want = "POST";
    } else {
        return error(404, "Not found");
    }
    if (method != want) {
        return error(405, "Method not allowed");
    }

    try {
        switch (r) {
        case route::events:
        case route::batch: {
            debug_.clear();
            api_response res;
            try {
                res = trigger(method, path, query, app_id, r == route::batch,
                              body, waited);
            } catch (const api_error &e) {
                res = error(e.status, e.message);
            }
            if (debug_enabled && !res.retry) {
                if (debug_.empty()) {
                    debug_ = "trigger app ";
                    append_json_escaped(debug_, app_id.substr(0, 64));
                }
                debug_line(debug_ + ": " + std::to_string(res.status) + " "
                           + (res.status == 200 ? std::string("published")
                                                : res.body));
            }
            return res;
        }
        case route::channels:
            return channels(query,
                            authenticate(method, path, query, app_id, body));
        case route::channel: {
            const app &a = authenticate(method, path, query, app_id, body);
            return channel_info(query, a, path_channel(seg[1]));
        }
        case route::users: {
            const app &a = authenticate(method, path, query, app_id, body);
            return channel_users(a, path_channel(seg[1]));
        }
        case route::terminate: {
            const app &a = authenticate(method, path, query, app_id, body);
            std::optional<std::string> user = url_decode(seg[1]);
            if (!user || user->empty() || user->size() > max_user_id) {
                return error(400, "Invalid user id");
            }
            return terminate(a, *user);
        }
        }
        return error(404, "Not found");
    } catch (const api_error &e) {
        return error(e.status, e.message);
    }
}

// 200 only while an event can reach a subscriber: some nginx worker is
// attached (its app table accepted) and reads the ring.  STARTING before
// the first worker ever came, DEGRADED when all have gone (nginx stopped or
// reloading into a table the broker refused).
api_response trigger_api::up() const
{
    if (control_.attached() == 0) {
        return {503, apps_.known()
                         ? R"({"health":"DEGRADED","error":"no nginx worker attached"})"
                         : R"({"health":"STARTING","error":"no nginx worker attached"})"};
    }
    return {200, R"({"health":"OK"})"};
}

const app &trigger_api::authenticate(std::string_view method,
                                     std::string_view path,
                                     std::string_view query,
                                     std::string_view app_id,
                                     std::string_view body)
{
    if (!apps_.known()) {
        throw api_error{503, "No nginx worker attached yet: apps unknown"};
    }
    const app *a = apps_.find(app_id);
    if (a == nullptr) {
        throw api_error{404, "Unknown app"};
    }

    auto verify = [&](std::string_view p) {
        return pusher_api_verify(
            method.data(), method.size(), p.data(), p.size(),
            query.data(), query.size(),
            reinterpret_cast<const std::uint8_t *>(body.data()), body.size(),
            reinterpret_cast<const std::uint8_t *>(a->key.data()),
            a->key.size(),
            reinterpret_cast<const std::uint8_t *>(a->secret.data()),
            a->secret.size(), static_cast<std::int64_t>(std::time(nullptr)));
    };
    pusher_api_result_e rc = verify(path);
    if (rc == PUSHER_API_BAD_SIGNATURE
        && path.find('%') != std::string_view::npos)
    {
        // a client that signed the decoded path (a channel with '#')
        if (std::optional<std::string> decoded = url_decode(path)) {
            rc = verify(*decoded);
        }
    }
    if (rc != PUSHER_API_OK) {
        throw api_error{401, pusher_api_result_text(rc)};
    }
    return *a;
}

api_response trigger_api::trigger(std::string_view method,
                                  std::string_view path,
                                  std::string_view query,
                                  std::string_view app_id, bool batch,
                                  std::string_view body,
                                  ring_flow::clock::duration waited)
{
    const app *a = &authenticate(method, path, query, app_id, body);

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

    if (debug_enabled) {
        describe(a->id);
    }

    // All or nothing, and nothing over what a worker that keeps up has yet
    // to read: an answered event reaches every subscriber that reads.
    std::uint64_t tail = flow_.tail();
    std::uint64_t end = tail;
    for (const event &ev : events_) {
        end = flow_.end_after(end, ev.record);
    }
    if (!flow_.room(end)) {
        if (waited < ring_wait_limit) {
            api_response later;
            later.retry = true;
            later.need = end - tail;
            return later;
        }
        return error(503, "Service Unavailable: an nginx worker is still "
                          "reading earlier events; nothing was published");
    }

    // room was checked for every channel: holding some needs less
    auto now = coalescer::clock::now();
    bool published = false;
    for (const event &ev : events_) {
        coalesce(*a, ev, now);
        if (names_.empty()) {
            continue;
        }
        std::uint32_t record = ev.record;
        if (names_.size() != (ev.channels != nullptr
                                  ? static_cast<std::size_t>(
                                      cJSON_GetArraySize(ev.channels))
                                  : 1))
        {
            record = record_size(*a, ev.name, ev.data, ev.socket_id);
        }
        publish(*a, ev.name, ev.data, ev.socket_id, record);
        published = true;
    }
    if (published) {
        control_.notify_published();
    }
    if (auto next = coalescer_.next_deadline()) {
        arm_coalesce_timer(*next);
    }

    bool info = false;
    for (const event &ev : events_) {
        info = info || ev.want_user_count || ev.want_subscription_count;
    }
    std::string out = "{}";
    if (info && !batch) {
        // {"channels":{"<ch>":{...},...}}
        const event &ev = events_.front();
        out = "{\"channels\":{";
        bool first = true;
        for_each_channel(ev.channels, ev.channel,
                         [&](std::string_view channel) {
            if (!first) {
                out += ',';
            }
            first = false;
            out += '"';
            append_json_escaped(out, channel);
            out += "\":{";
            append_counts(out, *a, ev, channel);
            out += '}';
        });
        out += "}}";
    } else if (info) {
        // {"batch":[{...},...]}: the counts of each item's channel
        out = "{\"batch\":[";
        bool first = true;
        for (const event &ev : events_) {
            if (!first) {
                out += ',';
            }
            first = false;
            out += '{';
            if (ev.channel != nullptr) {
                append_counts(out, *a, ev, json::string_of(ev.channel));
            }
            out += '}';
        }
        out += "]}";
    }

    events_.clear();
    printed_.clear();
    return {200, std::move(out)};
}

void trigger_api::append_counts(std::string &out, const app &a,
                                const event &ev,
                                std::string_view channel) const
{
    // Pusher's rule: user_count for presence channels only,
    // subscription_count for every channel (both for a presence channel)
    bool user_count = ev.want_user_count && is_presence(channel);
    if (user_count) {
        out += "\"user_count\":";
        out += std::to_string(control_.presence().user_count(a.id, channel));
    }
    if (ev.want_subscription_count) {
        if (user_count) {
            out += ',';
        }
        out += "\"subscription_count\":";
        out += std::to_string(control_.occupancy().total(a.id, channel));
    }
}

api_response trigger_api::channels(std::string_view query, const app &a)
{
    std::string prefix = query_value(query, "filter_by_prefix")
                             .value_or(std::string());
    info_flags info = parse_info(query_value(query, "info")
                                     .value_or(std::string()), false);
    if (info.subscription_count) {
        throw api_error{400, "info=subscription_count is not supported "
                             "for the channel list"};
    }
    if (info.user_count && !std::string_view(prefix).starts_with("presence-")) {
        throw api_error{400, "info=user_count requires "
                             "filter_by_prefix=presence-"};
    }

    std::vector<std::string_view> names;
    control_.occupancy().for_each_channel(
        a.id, [&](std::string_view name, std::uint64_t total) {
            if (total > 0 && name.starts_with(prefix)) {
                names.push_back(name);
            }
        });
    std::sort(names.begin(), names.end());

    std::string out = "{\"channels\":{";
    bool first = true;
    for (std::string_view name : names) {
        if (!first) {
            out += ',';
        }
        first = false;
        out += '"';
        append_json_escaped(out, name);
        out += "\":{";
        if (info.user_count) {
            out += "\"user_count\":";
            out += std::to_string(control_.presence().user_count(a.id, name));
        }
        out += '}';
    }
    out += "}}";
    return {200, std::move(out)};
}

api_response trigger_api::channel_info(std::string_view query, const app &a,
                                       std::string_view channel)
{
    info_flags info = parse_info(query_value(query, "info")
                                     .value_or(std::string()), true);
    bool presence = is_presence(channel);
    if (info.user_count && !presence) {
        throw api_error{400, "info=user_count is only supported for "
                             "presence channels"};
    }
    if (info.cache && !is_cache(channel)) {
        throw api_error{400, "info=cache is only supported for cache "
                             "channels"};
    }

    std::uint64_t total = control_.occupancy().total(a.id, channel);
    std::string out = total > 0 ? "{\"occupied\":true"
                                : "{\"occupied\":false";
    if (info.user_count) {
        out += ",\"user_count\":";
        out += std::to_string(control_.presence().user_count(a.id, channel));
    }
    if (info.subscription_count) {
        out += ",\"subscription_count\":";
        out += std::to_string(total);
    }
    if (info.cache) {
        std::uint32_t ttl = 0;
        std::string_view cached = control_.cache().get(a.id, channel, ttl);
        json::value ev = cached.empty() ? json::value() : json::parse(cached);
        const cJSON *data = ev ? json::member(ev.get(), "data") : nullptr;
        if (data != nullptr) {
            out += ",\"cache\":{\"data\":";
            if (cJSON_IsString(data)) {
                out += '"';
                append_json_escaped(out, json::string_of(data));
                out += '"';
            } else {
                json::text t = json::print(data);
                if (!t) {
                    throw std::bad_alloc();
                }
                out += t.get();
            }
            out += ",\"ttl\":";
            out += std::to_string(ttl);
            out += '}';
        }
    }
    out += '}';
    return {200, std::move(out)};
}

api_response trigger_api::channel_users(const app &a, std::string_view channel)
{
    if (!is_presence(channel)) {
        return error(400, "The channel must be a presence channel");
    }
    std::vector<std::string_view> users;
    control_.presence().users(a.id, channel, users);
    std::string out = "{\"users\":[";
    bool first = true;
    for (std::string_view id : users) {
        if (!first) {
            out += ',';
        }
        first = false;
        out += "{\"id\":\"";
        append_json_escaped(out, id);
        out += "\"}";
    }
    out += "]}";
    return {200, std::move(out)};
}

api_response trigger_api::terminate(const app &a, std::string_view user_id)
{
    if (!seg_.publish_fields(PUSHER_RING_TERMINATE, {a.id, user_id})) {
        return error(500, "Could not publish");
    }
    control_.notify_published();
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
    std::size_t nchannels = 1;
    std::size_t names = 0;

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
            names += channel_name(item).size();
        }
        nchannels = static_cast<std::size_t>(n);
        ev.channels = channels;
    } else if (channel != nullptr) {
        names = channel_name(channel).size();
        ev.channel = channel;
    } else {
        throw api_error{400, "Event needs \"channels\" or \"channel\""};
    }

    ev.want_user_count = false;
    ev.want_subscription_count = false;
    const cJSON *info = json::member(obj, "info");
    if (info != nullptr && !cJSON_IsNull(info)) {
        if (!cJSON_IsString(info)) {
            throw api_error{400, "\"info\" must be a string"};
        }
        info_flags f = parse_info(json::string_of(info), false);
        ev.want_user_count = f.user_count;
        ev.want_subscription_count = f.subscription_count;
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

    // One record for all its channels (the data once) must fit the ring.
    std::size_t json = pusher_event_json_size(
        reinterpret_cast<const std::uint8_t *>(ev.name.data()), ev.name.size(),
        nullptr, 0,
        reinterpret_cast<const std::uint8_t *>(ev.data.data()),
        ev.data.size());
    std::size_t size = pusher_ring_event_size(a.id.size(), ev.socket_id.size(),
                                              nchannels, names, json);
    if (size == 0
        || size > seg_.ring().max_record - PUSHER_RING_RECORD_HEADER)
    {
        throw api_error{413, "Event too large"};
    }
    ev.record = static_cast<std::uint32_t>(size);
}

// "trigger app A event "E" channels "a","b" data N bytes except socket S",
// one "; event ..." more per batch item
void trigger_api::describe(std::string_view app_id)
{
    debug_ = "trigger app ";
    append_json_escaped(debug_, app_id);
    if (events_.size() > 1) {
        debug_ += " batch of " + std::to_string(events_.size());
    }
    bool first = true;
    for (const event &ev : events_) {
        debug_ += first ? " event \"" : "; event \"";
        first = false;
        append_json_escaped(debug_, ev.name);
        debug_ += "\" channel";
        std::size_t n = 0;
        std::string names;
        for_each_channel(ev.channels, ev.channel,
                         [&](std::string_view channel) {
            names += n++ ? ",\"" : "\"";
            append_json_escaped(names, channel);
            names += '"';
        });
        debug_ += n == 1 ? " " : "s ";
        debug_ += names;
        debug_ += " data " + std::to_string(ev.data.size()) + " bytes";
        if (!ev.socket_id.empty()) {
            debug_ += " except socket ";
            debug_ += ev.socket_id;
        }
    }
}

std::uint32_t trigger_api::record_size(const app &a, std::string_view name,
                                       std::string_view data,
                                       std::string_view socket_id) const
{
    std::size_t names = 0;
    for (const pusher_str_t &ch : names_) {
        names += ch.len;
    }
    std::size_t json = pusher_event_json_size(
        reinterpret_cast<const std::uint8_t *>(name.data()), name.size(),
        nullptr, 0, reinterpret_cast<const std::uint8_t *>(data.data()),
        data.size());
    return static_cast<std::uint32_t>(pusher_ring_event_size(
        a.id.size(), socket_id.size(), names_.size(), names, json));
}

void trigger_api::coalesce(const app &a, const event &ev,
                           coalescer::time_point now)
{
    names_.clear();
    for_each_channel(ev.channels, ev.channel, [&](std::string_view channel) {
        const coalesce_rule *rule = a.coalesce_rule_for(channel, ev.name);
        if (rule == nullptr) {
            if (coalescer_.keys() > 0) {
                // a reload removed its line: nothing older may follow
                coalescer_.supersede(a.id, channel, ev.name);
            }
            names_.push_back({channel.data(), channel.size()});
        } else if (coalescer_.offer(a.id, channel, ev.name, ev.data,
                                    ev.socket_id, rule->window, now)
                   == coalescer::verdict::deliver)
        {
            names_.push_back({channel.data(), channel.size()});
        }
    });
}

bool trigger_api::release(const coalescer::held_event &held)
{
    const app *a = apps_.find(held.app_id);
    if (a == nullptr) {
        // a reload removed the app: nobody can be subscribed to it
        return true;
    }
    names_.clear();
    names_.push_back({held.channel.data(), held.channel.size()});
    std::uint32_t record = record_size(*a, held.name, held.data,
                                       held.socket_id);
    if (record == 0
        || record > seg_.ring().max_record - PUSHER_RING_RECORD_HEADER)
    {
        // it fitted with all its channels when it was triggered
        return true;
    }
    if (!flow_.room(flow_.end_after(flow_.tail(), record))) {
        return false;
    }
    publish(*a, held.name, held.data, held.socket_id, record);
    return true;
}

void trigger_api::arm_coalesce_timer(coalescer::time_point at)
{
    if (timer_at_ && *timer_at_ <= at) {
        return;
    }
    timer_at_ = at;
    coalesce_timer_.expires_at(at);
    coalesce_timer_.async_wait([this](boost::system::error_code ec) {
        if (ec == net::error::operation_aborted) {
            return;
        }
        on_coalesce_timer();
    });
}

void trigger_api::on_coalesce_timer()
{
    timer_at_.reset();
    auto now = coalescer::clock::now();
    std::size_t n = 0;
    try {
        n = coalescer_.expire(now, [this](const coalescer::held_event &h) {
            return release(h);
        });
    } catch (...) {
        // publish() cannot fail for a checked size; keep the timer alive
        log_line("coalescing: a held event could not be published");
    }
    if (n > 0) {
        control_.notify_published();
    }
    if (auto next = coalescer_.next_deadline()) {
        // a due one left: the ring had no room for it
        arm_coalesce_timer(*next <= now ? now + coalesce_retry : *next);
    }
}

void trigger_api::drain_coalesced()
{
    coalesce_timer_.cancel();
    timer_at_.reset();
    std::uint64_t lost = coalescer_.stats().lost;
    std::size_t n = coalescer_.drain([this](const coalescer::held_event &h) {
        return release(h);
    });
    if (n > 0) {
        control_.notify_published();
    }
    if (coalescer_.stats().lost > lost) {
        log_line("coalescing: " + std::to_string(coalescer_.stats().lost - lost)
                 + " held events lost at the stop: no room in the ring");
    }
}

void trigger_api::publish(const app &a, std::string_view ev_name,
                          std::string_view ev_data,
                          std::string_view ev_socket_id, std::uint32_t record)
{
    const auto *name = reinterpret_cast<const std::uint8_t *>(ev_name.data());
    const auto *data = reinterpret_cast<const std::uint8_t *>(ev_data.data());
    pusher_str_t app_id{a.id.data(), a.id.size()};
    pusher_str_t socket_id{ev_socket_id.data(), ev_socket_id.size()};
    pusher_ring_t &ring = seg_.ring();

    std::uint8_t *p = pusher_ring_claim(&ring, PUSHER_RING_EVENT, record);
    if (p == nullptr
        || pusher_ring_event_encode(p, &app_id, &socket_id, names_.data(),
                                    names_.size(), name, ev_name.size(),
                                    data, ev_data.size())
           != record)
    {
        // parse_event() checked the size: cannot happen
        throw api_error{413, "Event too large"};
    }
    pusher_ring_commit(&ring);
    if (cluster *c = control_.cluster_engine()) {
        // subscribers on the other hosts get it too
        c->published(PUSHER_RING_EVENT,
                     {reinterpret_cast<const char *>(p), record});
    }

    // cache channels keep the event as their subscribers get it
    for (const pusher_str_t &ch : names_) {
        std::string_view channel(ch.data, ch.len);
        switch (pusher_channel_type(ch.data, ch.len)) {
        case PUSHER_CHANNEL_CACHE:
        case PUSHER_CHANNEL_PRIVATE_CACHE:
        case PUSHER_CHANNEL_PRESENCE_CACHE: {
            std::string json(pusher_event_json_size(
                                 name, ev_name.size(),
                                 reinterpret_cast<const std::uint8_t *>(
                                     ch.data),
                                 ch.len, data, ev_data.size()),
                             '\0');
            pusher_event_json(reinterpret_cast<std::uint8_t *>(json.data()),
                              name, ev_name.size(),
                              reinterpret_cast<const std::uint8_t *>(ch.data),
                              ch.len, data, ev_data.size());
            control_.cache().put(a.id, channel, json, a.cache_ttl);
            break;
        }
        default:
            break;
        }
    }
}

} // namespace pusher::broker
