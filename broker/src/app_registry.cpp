#include "app_registry.hpp"

#include <algorithm>
#include <stdexcept>

#include "pusher_shm.h"

namespace pusher::broker {

namespace {

[[noreturn]] void bad(const char *what)
{
    throw std::invalid_argument(std::string("app with a bad \"") + what
                                + "\"");
}

std::string text_of(const pusher_str_t &s)
{
    return s.len == 0 ? std::string() : std::string(s.data, s.len);
}

// an optional number of the app in [lo, hi]; fallback if absent
std::uint64_t optional_number(const pusher_ctl_app_t &a, unsigned has,
                              std::uint64_t value, std::uint64_t fallback,
                              std::uint64_t lo, std::uint64_t hi)
{
    if ((a.has & has) == 0) {
        return fallback;
    }
    if (value < lo || value > hi) {
        bad(pusher_ctl_app_member(has));
    }
    return value;
}

// the per-app limits: at least 1, at most 1 GiB
std::uint32_t optional_limit(const pusher_ctl_app_t &a, unsigned has,
                             std::uint64_t value, std::uint32_t fallback)
{
    return static_cast<std::uint32_t>(
        optional_number(a, has, value, fallback, 1, 1024 * 1024 * 1024));
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

webhook_config parse_webhook(const pusher_ctl_webhook_t &in)
{
    webhook_config w;
    parse_webhook_url(text_of(in.url), w);
    w.events = in.events;
    w.prefix = text_of(in.prefix);
    w.suffix = text_of(in.suffix);

    if (in.nheaders > max_webhook_headers) {
        bad("webhooks headers");
    }
    for (std::size_t i = 0; i < in.nheaders; i++) {
        std::string_view name(in.headers[i].name.data,
                              in.headers[i].name.len);
        std::string_view value(in.headers[i].value.data,
                               in.headers[i].value.len);
        if (name.empty()
            || !std::all_of(name.begin(), name.end(), token_char))
        {
            bad("webhooks headers");
        }
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
    return w;
}

coalesce_rule parse_coalesce(const pusher_ctl_coalesce_t &in)
{
    coalesce_rule r;
    if (!pusher_coalesce_pattern_valid(in.pattern.data, in.pattern.len)) {
        bad("coalesce pattern");
    }
    if (in.window < PUSHER_COALESCE_WINDOW_MIN
        || in.window > PUSHER_COALESCE_WINDOW_MAX)
    {
        bad("coalesce window");
    }
    if (in.nevents > PUSHER_COALESCE_EVENTS_MAX) {
        bad("coalesce events");
    }
    r.pattern = text_of(in.pattern);
    r.window = std::chrono::milliseconds(in.window);
    for (std::size_t i = 0; i < in.nevents; i++) {
        if (!pusher_coalesce_event_valid(in.events[i].data,
                                         in.events[i].len))
        {
            bad("coalesce events");
        }
        r.events.push_back(text_of(in.events[i]));
    }
    return r;
}

} // namespace

bool coalesce_rule::matches(std::string_view channel,
                            std::string_view event) const
{
    if (!events.empty()
        && std::find(events.begin(), events.end(), event) == events.end())
    {
        return false;
    }
    return pusher_glob_match(pattern.data(), pattern.size(), channel.data(),
                             channel.size())
           != 0;
}

const coalesce_rule *app::coalesce_rule_for(std::string_view channel,
                                            std::string_view event) const
{
    for (const coalesce_rule &r : coalesce) {
        if (r.matches(channel, event)) {
            return &r;
        }
    }
    return nullptr;
}

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

bool app_registry::update(std::int64_t conf_time, const pusher_ctl_app_t *apps,
                          std::size_t napps)
{
    if (known_ && conf_time < conf_time_) {
        return false;
    }

    decltype(apps_) table;
    for (std::size_t i = 0; i < napps; i++) {
        const pusher_ctl_app_t &in = apps[i];
        app a;
        a.id = text_of(in.id);
        a.key = text_of(in.key);
        a.secret = text_of(in.secret);
        a.max_event_data = optional_limit(in, PUSHER_CTL_APP_MAX_EVENT_DATA,
                                          in.max_event_data,
                                          default_max_event_data);
        a.max_channels = optional_limit(in, PUSHER_CTL_APP_MAX_CHANNELS,
                                        in.max_channels,
                                        default_max_channels);
        a.max_batch = optional_limit(in, PUSHER_CTL_APP_MAX_BATCH,
                                     in.max_batch, default_max_batch);
        a.cache_ttl = optional_limit(in, PUSHER_CTL_APP_CACHE_TTL,
                                     in.cache_ttl, default_cache_ttl);
        a.max_event_name = optional_limit(in, PUSHER_CTL_APP_MAX_EVENT_NAME,
                                          in.max_event_name,
                                          default_max_event_name);
        a.subscription_count = (in.has & PUSHER_CTL_APP_SUBSCRIPTION_COUNT)
                               && in.subscription_count;
        a.max_request_size = optional_number(
            in, PUSHER_CTL_APP_MAX_REQUEST_SIZE, in.max_request_size, 0, 1,
            1024 * 1024 * 1024);
        a.webhook_vacated_delay = static_cast<std::uint32_t>(optional_number(
            in, PUSHER_CTL_APP_WEBHOOK_VACATED_DELAY, in.webhook_vacated_delay,
            0, 0, max_webhook_vacated_delay));
        if (in.nwebhooks > max_webhooks_per_app) {
            bad("webhooks");
        }
        for (std::size_t k = 0; k < in.nwebhooks; k++) {
            a.webhooks.push_back(parse_webhook(in.webhooks[k]));
            a.webhook_events |= a.webhooks.back().events;
        }
        if (in.ncoalesce > PUSHER_COALESCE_RULES_MAX) {
            bad("coalesce");
        }
        for (std::size_t k = 0; k < in.ncoalesce; k++) {
            a.coalesce.push_back(parse_coalesce(in.coalesce[k]));
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
