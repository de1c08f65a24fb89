#include "app_registry.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "pusher_shm.h"

namespace pusher::broker {

namespace {

std::string required_string(const cJSON *obj, const char *name)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!cJSON_IsString(item) || item->valuestring[0] == '\0') {
        throw std::invalid_argument(std::string("app without a string \"")
                                    + name + "\"");
    }
    return item->valuestring;
}

std::uint32_t optional_limit(const cJSON *obj, const char *name,
                             std::uint32_t fallback)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (item == nullptr) {
        return fallback;
    }
    if (!cJSON_IsNumber(item) || item->valuedouble < 1
        || item->valuedouble > 1024.0 * 1024 * 1024)
    {
        throw std::invalid_argument(std::string("app with a bad \"") + name
                                    + "\"");
    }
    return static_cast<std::uint32_t>(item->valuedouble);
}

bool optional_bool(const cJSON *obj, const char *name, bool fallback)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (item == nullptr) {
        return fallback;
    }
    if (!cJSON_IsBool(item)) {
        throw std::invalid_argument(std::string("app with a bad \"") + name
                                    + "\"");
    }
    return cJSON_IsTrue(item) != 0;
}

[[noreturn]] void bad(const char *what)
{
    throw std::invalid_argument(std::string("app with a bad \"") + what
                                + "\"");
}

// a whole number in [lo, hi]
double optional_number(const cJSON *obj, const char *name, double fallback,
                       double lo, double hi)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (item == nullptr) {
        return fallback;
    }
    if (!cJSON_IsNumber(item) || !std::isfinite(item->valuedouble)
        || item->valuedouble < lo || item->valuedouble > hi
        || std::floor(item->valuedouble) != item->valuedouble)
    {
        bad(name);
    }
    return item->valuedouble;
}

bool token_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9')
           || std::string_view("!#$%&'*+-.^_`|~").find(c)
                  != std::string_view::npos;
}

std::string lower(std::string_view s)
{
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(), [](char c) {
        return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
    });
    return out;
}

// the headers the broker sets itself: a custom header cannot replace them
bool reserved_header(std::string_view name)
{
    std::string n = lower(name);
    return n == "content-type" || n == "content-length" || n == "host"
           || n == "connection" || n == "transfer-encoding"
           || n == "user-agent" || n.starts_with("x-pusher-");
}

std::string optional_text(const cJSON *obj, const char *name)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (item == nullptr || cJSON_IsNull(item)) {
        return {};
    }
    if (!cJSON_IsString(item)) {
        bad(name);
    }
    return item->valuestring;
}

webhook_config parse_webhook(const cJSON *item)
{
    if (!cJSON_IsObject(item)) {
        bad("webhooks");
    }
    webhook_config w;
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(item, "url");
    if (!cJSON_IsString(url)) {
        bad("webhooks url");
    }
    parse_webhook_url(url->valuestring, w);

    const cJSON *types = cJSON_GetObjectItemCaseSensitive(item, "event_types");
    if (types != nullptr) {
        if (!cJSON_IsArray(types) || cJSON_GetArraySize(types) == 0) {
            bad("webhooks event_types");
        }
        w.events = 0;
        const cJSON *t = nullptr;
        cJSON_ArrayForEach(t, types) {
            if (!cJSON_IsString(t)) {
                bad("webhooks event_types");
            }
            unsigned event = pusher_webhook_event(
                t->valuestring, std::strlen(t->valuestring));
            if (event == 0) {
                bad("webhooks event_types");
            }
            w.events |= event;
        }
    }

    const cJSON *filter = cJSON_GetObjectItemCaseSensitive(item, "filter");
    if (filter != nullptr && !cJSON_IsNull(filter)) {
        if (!cJSON_IsObject(filter)) {
            bad("webhooks filter");
        }
        w.prefix = optional_text(filter, "channel_name_starts_with");
        w.suffix = optional_text(filter, "channel_name_ends_with");
    }

    const cJSON *headers = cJSON_GetObjectItemCaseSensitive(item, "headers");
    if (headers != nullptr && !cJSON_IsNull(headers)) {
        if (!cJSON_IsObject(headers)
            || cJSON_GetArraySize(headers)
                   > static_cast<int>(max_webhook_headers))
        {
            bad("webhooks headers");
        }
        const cJSON *h = nullptr;
        cJSON_ArrayForEach(h, headers) {
            std::string_view name(h->string);
            if (name.empty()
                || !std::all_of(name.begin(), name.end(), token_char)
                || !cJSON_IsString(h))
            {
                bad("webhooks headers");
            }
            std::string_view value(h->valuestring);
            for (char c : value) {
                auto u = static_cast<unsigned char>(c);
                if ((u < 0x20 && c != '\t') || u == 0x7f) {
                    bad("webhooks headers");
                }
            }
            if (!reserved_header(name)) {
                w.headers.emplace_back(name, value);
            }
        }
    }
    return w;
}

} // namespace

void parse_webhook_url(std::string_view url, webhook_config &out)
{
    auto fail = [] { bad("webhooks url"); };

    std::string_view rest;
    if (url.starts_with("http://")) {
        out.tls = false;
        rest = url.substr(7);
    } else if (url.starts_with("https://")) {
        out.tls = true;
        rest = url.substr(8);
    } else {
        fail();
    }
    for (char c : url) {
        auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u >= 0x7f) {
            fail();
        }
    }

    std::size_t end = rest.find_first_of("/?#");
    std::string_view authority = rest.substr(0, end);
    std::string_view target = end == std::string_view::npos
                                  ? std::string_view{} : rest.substr(end);
    if (authority.empty() || authority.find('@') != std::string_view::npos
        || target.find('#') != std::string_view::npos)
    {
        fail();
    }

    std::string_view host, port;
    if (authority.front() == '[') {
        std::size_t close = authority.find(']');
        if (close == std::string_view::npos || close < 3) {
            fail();
        }
        host = authority.substr(1, close - 1);
        if (host.find_first_not_of("0123456789abcdefABCDEF:.")
            != std::string_view::npos)
        {
            fail();
        }
        std::string_view after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') {
                fail();
            }
            port = after.substr(1);
        }
    } else {
        std::size_t colon = authority.find(':');
        host = authority.substr(0, colon);
        if (colon != std::string_view::npos) {
            port = authority.substr(colon + 1);
        }
        if (host.empty()
            || host.find_first_not_of("abcdefghijklmnopqrstuvwxyz"
                                      "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                      "0123456789-._")
                   != std::string_view::npos)
        {
            fail();
        }
    }

    if (port.data() != nullptr) {
        if (port.empty() || port.size() > 5
            || port.find_first_not_of("0123456789") != std::string_view::npos)
        {
            fail();
        }
        unsigned long p = std::stoul(std::string(port));
        if (p == 0 || p > 65535) {
            fail();
        }
        out.port = std::to_string(p);
    } else {
        out.port = out.tls ? "443" : "80";
    }

    out.url.assign(url);
    out.host.assign(host);
    out.host_header = authority.front() == '[' ? "[" + out.host + "]"
                                               : out.host;
    if (out.port != (out.tls ? "443" : "80")) {
        out.host_header += ":" + out.port;
    }
    out.target = target.empty() ? std::string("/") : std::string(target);
    if (out.target.front() == '?') {
        out.target.insert(0, "/");
    }
}

const app *app_registry::find(std::string_view id) const
{
    auto it = apps_.find(id);
    return it == apps_.end() ? nullptr : &it->second;
}

bool app_registry::update(std::int64_t conf_time, const cJSON *apps)
{
    if (known_ && conf_time < conf_time_) {
        return false;
    }
    if (apps != nullptr && !cJSON_IsArray(apps)) {
        throw std::invalid_argument("\"apps\" is not an array");
    }

    decltype(apps_) table;
    const cJSON *item = nullptr;
    cJSON_ArrayForEach(item, apps) {
        if (!cJSON_IsObject(item)) {
            throw std::invalid_argument("an app is not an object");
        }
        app a;
        a.id = required_string(item, "id");
        a.key = required_string(item, "key");
        a.secret = required_string(item, "secret");
        a.max_event_data = optional_limit(item, "max_event_data",
                                          default_max_event_data);
        a.max_channels = optional_limit(item, "max_channels",
                                        default_max_channels);
        a.max_batch = optional_limit(item, "max_batch", default_max_batch);
        a.cache_ttl = optional_limit(item, "cache_ttl", default_cache_ttl);
        a.max_event_name = optional_limit(item, "max_event_name",
                                          default_max_event_name);
        a.subscription_count = optional_bool(item, "subscription_count",
                                             false);
        a.max_request_size = static_cast<std::uint64_t>(optional_number(
            item, "max_request_size", 0, 1, 1024.0 * 1024 * 1024));
        a.webhook_vacated_delay = static_cast<std::uint32_t>(optional_number(
            item, "webhook_vacated_delay", 0, 0, max_webhook_vacated_delay));
        const cJSON *hooks = cJSON_GetObjectItemCaseSensitive(item,
                                                              "webhooks");
        if (hooks != nullptr && !cJSON_IsNull(hooks)) {
            if (!cJSON_IsArray(hooks)
                || cJSON_GetArraySize(hooks)
                       > static_cast<int>(max_webhooks_per_app))
            {
                bad("webhooks");
            }
            const cJSON *h = nullptr;
            cJSON_ArrayForEach(h, hooks) {
                a.webhooks.push_back(parse_webhook(h));
                a.webhook_events |= a.webhooks.back().events;
            }
        }
        if (a.id.size() > PUSHER_APP_ID_MAX) {
            throw std::invalid_argument("app id longer than 255 bytes");
        }
        std::string id = a.id;
        table.insert_or_assign(std::move(id), std::move(a));
    }

    apps_ = std::move(table);
    conf_time_ = conf_time;
    known_ = true;
    return true;
}

} // namespace pusher::broker
