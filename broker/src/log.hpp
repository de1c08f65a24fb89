#pragma once

#include <string_view>

namespace pusher::broker {

// One line to stderr, prefixed "pusher-broker: ".  Never pass secrets,
// signatures or request bodies.
void log_line(std::string_view message);

} // namespace pusher::broker
