#pragma once

#include <string_view>

namespace pusher::broker {

// One line to stderr, prefixed "pusher-broker: ".  Never pass secrets,
// signatures or request bodies.
void log_line(std::string_view message);

// pusher_debug on in the newest nginx configuration (its HELLO's "debug")
inline bool debug_enabled = false;

// "pusher-broker: pusher debug: " and message, when debug_enabled; the
// same rules: no secret, signature or event data
void debug_line(std::string_view message);

} // namespace pusher::broker
