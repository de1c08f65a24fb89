#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace pusher::broker {

// Hash maps keyed by std::string that are looked up with string_view
// (heterogeneous lookup: no temporary string per find).
struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept
    {
        return std::hash<std::string_view>{}(s);
    }
};

template <typename T>
using string_map = std::unordered_map<std::string, T, string_hash,
                                      std::equal_to<>>;

// The key of a channel of an app: app_id '\0' channel.  App ids come from
// nginx.conf tokens and channel names are validated: neither holds a NUL,
// so the key is unambiguous.
inline std::string app_channel_key(std::string_view app_id,
                                   std::string_view channel)
{
    std::string key;
    key.reserve(app_id.size() + 1 + channel.size());
    key += app_id;
    key += '\0';
    key += channel;
    return key;
}

} // namespace pusher::broker
