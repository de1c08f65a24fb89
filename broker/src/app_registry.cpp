#include "app_registry.hpp"

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

} // namespace

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
