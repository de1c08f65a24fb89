#pragma once

#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include <cjson/cJSON.h>

namespace pusher::broker::json {

struct value_deleter {
    void operator()(cJSON *v) const noexcept { cJSON_Delete(v); }
};

struct text_deleter {
    void operator()(char *p) const noexcept { cJSON_free(p); }
};

// an owned cJSON tree
using value = std::unique_ptr<cJSON, value_deleter>;
// text from cJSON_Print*
using text = std::unique_ptr<char, text_deleter>;

inline value parse(std::string_view s)
{
    return value(cJSON_ParseWithLength(s.data(), s.size()));
}

inline const cJSON *member(const cJSON *obj, const char *name) noexcept
{
    return cJSON_GetObjectItemCaseSensitive(obj, name);
}

inline std::string_view string_of(const cJSON *item) noexcept
{
    return std::string_view(item->valuestring,
                            std::strlen(item->valuestring));
}

inline text print(const cJSON *v)
{
    return text(cJSON_PrintUnformatted(v));
}

// {"error":"<message>","code":<code>}, escaped by cJSON
inline std::string error_body(std::string_view message, int code)
{
    value obj(cJSON_CreateObject());
    std::string msg(message);
    if (!obj || !cJSON_AddStringToObject(obj.get(), "error", msg.c_str())
        || !cJSON_AddNumberToObject(obj.get(), "code", code))
    {
        throw std::bad_alloc();
    }
    text t = print(obj.get());
    if (!t) {
        throw std::bad_alloc();
    }
    return std::string(t.get());
}

} // namespace pusher::broker::json
