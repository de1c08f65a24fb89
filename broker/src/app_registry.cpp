#include "app_registry.hpp"

#include <algorithm>
#include <stdexcept>

#include "pusher_app.h"
#include "pusher_shm.h"

namespace pusher::broker {

namespace {

std::string text_of(const pusher_str_t &s)
{
    return s.len == 0 ? std::string() : std::string(s.data, s.len);
}

// an optional number of the app (pusher_app_check() bounded it), or
// fallback if absent
std::uint32_t optional_limit(const pusher_ctl_app_t &a, unsigned has,
                             std::uint64_t value, std::uint32_t fallback)
{
    return (a.has & has) == 0 ? fallback : static_cast<std::uint32_t>(value);
}

// an app pusher_app_check() accepted: what the broker keeps of a webhook
webhook_config parse_webhook(const pusher_ctl_webhook_t &in)
{
    webhook_config w;
    parse_webhook_url(text_of(in.url), w);
    w.events = in.events;
    w.prefix = text_of(in.prefix);
    w.suffix = text_of(in.suffix);

    for (std::size_t i = 0; i < in.nheaders; i++) {
        std::string_view name(in.headers[i].name.data,
                              in.headers[i].name.len);
        std::string_view value(in.headers[i].value.data,
                               in.headers[i].value.len);
        if (!pusher_header_reserved(name.data(), name.size())) {
            w.headers.emplace_back(name, value);
        }
    }
    return w;
}

// a line pusher_app_check() accepted
coalesce_rule parse_coalesce(const pusher_ctl_coalesce_t &in)
{
    coalesce_rule r;
    r.pattern = text_of(in.pattern);
    r.window = std::chrono::milliseconds(in.window);
    for (std::size_t i = 0; i < in.nevents; i++) {
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

// the URL parser of nginx -t (pusher_app.h), and what a request needs
void parse_webhook_url(std::string_view url, webhook_config &out)
{
    pusher_url_t u;
    const char *why = nullptr;
    if (pusher_url_parse(url.data(), url.size(), &u, &why) != 0) {
        throw std::invalid_argument(std::string("invalid webhook URL: ")
                                    + why);
    }

    out.tls = u.tls != 0;
    out.port = std::to_string(u.port);
    out.url.assign(url);
    out.host.assign(u.host.data, u.host.len);
    out.host_header = u.bracketed ? "[" + out.host + "]" : out.host;
    if (u.port != (out.tls ? 443 : 80)) {
        out.host_header += ":" + out.port;
    }
    out.target.assign(u.target.data, u.target.len);
    if (out.target.empty() || out.target.front() == '?') {
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
    if (known_ && conf_time == conf_time_) {
        return false;
    }

    decltype(apps_) table;
    for (std::size_t i = 0; i < napps; i++) {
        const pusher_ctl_app_t &in = apps[i];
        // the rules nginx -t applied (pusher_app.h): nothing else refuses
        char why[PUSHER_CTL_ERROR_SIZE];
        if (pusher_app_check(&in, why, sizeof(why)) != 0) {
            throw std::invalid_argument("app \"" + text_of(in.id).substr(0, 64)
                                        + "\": " + why);
        }
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
        a.max_request_size = optional_limit(
            in, PUSHER_CTL_APP_MAX_REQUEST_SIZE, in.max_request_size, 0);
        a.webhook_vacated_delay = optional_limit(
            in, PUSHER_CTL_APP_WEBHOOK_VACATED_DELAY, in.webhook_vacated_delay,
            0);
        for (std::size_t k = 0; k < in.nwebhooks; k++) {
            a.webhooks.push_back(parse_webhook(in.webhooks[k]));
            a.webhook_events |= a.webhooks.back().events;
        }
        for (std::size_t k = 0; k < in.ncoalesce; k++) {
            a.coalesce.push_back(parse_coalesce(in.coalesce[k]));
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
