#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <sys/types.h>

namespace pusher::broker {

inline constexpr const char *default_api = "unix:/run/ngx-pusher/api.sock";
inline constexpr const char *default_control = "/run/ngx-pusher/control.sock";
inline constexpr const char *default_shm = "/ngx-pusher";
inline constexpr std::uint64_t default_ring_size = 8 * 1024 * 1024;
inline constexpr mode_t default_socket_mode = 0660;
inline constexpr std::uint64_t default_max_body = 1024 * 1024;

// Where the HTTP API listens: a unix socket path, or host:port for tests.
struct api_endpoint {
    bool is_unix = true;
    std::string path;
    std::string host;
    std::uint16_t port = 0;

    std::string describe() const;
};

struct options {
    api_endpoint api;
    std::string control_path = default_control;
    std::string shm_name = default_shm;   // as given to shm_open: "/name"
    std::uint64_t ring_size = default_ring_size;
    mode_t socket_mode = default_socket_mode;
    std::uint64_t max_body = default_max_body;
    // the user whose "<control>.apps" file the broker takes apps from: the
    // nginx master's (root for a system nginx)
    uid_t config_owner = 0;
};

// Parses argv.  Returns nullopt after printing --help; throws
// std::invalid_argument with a message for bad arguments.
std::optional<options> parse_options(int argc, char **argv);

// "8m", "65536", "64k": bytes; throws std::invalid_argument
std::uint64_t parse_size(const std::string &text);

void print_usage(std::FILE *out);

} // namespace pusher::broker
