#include "config.hpp"

#include <array>
#include <charconv>
#include <pwd.h>
#include <stdexcept>
#include <string_view>

#include "pusher_shm.h"

namespace pusher::broker {

namespace {

api_endpoint parse_api(std::string_view text)
{
    api_endpoint ep;

    if (text.starts_with("unix:")) {
        ep.is_unix = true;
        ep.path = std::string(text.substr(5));
        if (ep.path.empty() || ep.path.front() != '/') {
            throw std::invalid_argument("--api unix: needs an absolute path");
        }
        return ep;
    }

    if (text.starts_with("tcp:")) {
        std::string_view rest = text.substr(4);
        auto colon = rest.rfind(':');
        if (colon == std::string_view::npos || colon == 0) {
            throw std::invalid_argument("--api tcp: needs HOST:PORT");
        }
        std::string_view host = rest.substr(0, colon);
        std::string_view port = rest.substr(colon + 1);
        if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
            host = host.substr(1, host.size() - 2);
        }
        unsigned value = 0;
        auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(),
                                         value);
        if (ec != std::errc() || end != port.data() + port.size()
            || value == 0 || value > 65535)
        {
            throw std::invalid_argument("--api tcp: bad port \""
                                        + std::string(port) + "\"");
        }
        ep.is_unix = false;
        ep.host = std::string(host);
        ep.port = static_cast<std::uint16_t>(value);
        return ep;
    }

    throw std::invalid_argument("--api must be unix:PATH or tcp:HOST:PORT");
}

mode_t parse_mode(std::string_view text)
{
    unsigned value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(),
                                     value, 8);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size()
        || value > 0777)
    {
        throw std::invalid_argument("--socket-mode must be octal, e.g. 0660");
    }
    return static_cast<mode_t>(value);
}

} // namespace

std::string api_endpoint::describe() const
{
    if (is_unix) {
        return "unix:" + path;
    }
    return "tcp:" + host + ":" + std::to_string(port);
}

std::uint64_t parse_size(const std::string &text)
{
    std::uint64_t value = 0;
    const char *first = text.data();
    const char *last = text.data() + text.size();
    auto [end, ec] = std::from_chars(first, last, value);
    if (ec != std::errc() || end == first) {
        throw std::invalid_argument("bad size \"" + text + "\"");
    }

    std::uint64_t unit = 1;
    if (end != last) {
        if (end + 1 != last) {
            throw std::invalid_argument("bad size \"" + text + "\"");
        }
        switch (*end) {
        case 'k': case 'K': unit = 1024; break;
        case 'm': case 'M': unit = 1024 * 1024; break;
        case 'g': case 'G': unit = 1024 * 1024 * 1024; break;
        default:
            throw std::invalid_argument("bad size \"" + text + "\"");
        }
    }

    if (value > UINT64_MAX / unit) {
        throw std::invalid_argument("size too large \"" + text + "\"");
    }
    return value * unit;
}

// a user name, or a uid in decimal
static uid_t parse_user(const std::string &text)
{
    if (!text.empty() && text.find_first_not_of("0123456789") == std::string::npos
        && text.size() < 10)
    {
        return static_cast<uid_t>(std::stoul(text));
    }
    struct passwd pw, *found = nullptr;
    std::array<char, 4096> buf;
    if (getpwnam_r(text.c_str(), &pw, buf.data(), buf.size(), &found) != 0
        || found == nullptr)
    {
        throw std::invalid_argument("--config-owner: no user \"" + text
                                    + "\"");
    }
    return found->pw_uid;
}

void print_usage(std::FILE *out)
{
    std::fputs(
"usage: pusher-broker [options]\n"
"\n"
"Pusher Channels HTTP API and ring writer for ngx_http_pusher_module.\n"
"The apps (id, key, secret, limits) come from nginx.conf, the only place\n"
"they live: the nginx master writes them to CONTROL.apps as it loads it.\n"
"\n"
"  --api unix:PATH|tcp:HOST:PORT\n"
"                      where the HTTP API listens; nginx proxies /apps/ to\n"
"                      it (default unix:/run/ngx-pusher/api.sock)\n"
"  --control PATH      unix socket the nginx workers connect to\n"
"                      (default /run/ngx-pusher/control.sock)\n"
"  --shm NAME          shared-memory object of the ring, as for shm_open\n"
"                      (default /ngx-pusher)\n"
"  --ring-size SIZE    ring capacity, a power of two from 64k to 1g, with an\n"
"                      optional k/m/g suffix (default 8m)\n"
"  --socket-mode OCTAL permissions of both sockets and the shm object\n"
"                      (default 0660)\n"
"  --max-body SIZE     largest HTTP request body, k/m suffixes, for apps\n"
"                      without max_request_size in nginx.conf; larger\n"
"                      requests get 413 (default 1m)\n"
"  --config-owner USER the user (name or uid) the nginx master runs as: the\n"
"                      apps are read from CONTROL.apps only if it owns the\n"
"                      file and no one else may write it (default root)\n"
"  -h, --help          print this help\n"
"\n"
"SIGINT or SIGTERM stops the broker: it closes both sockets, removes the\n"
"socket files and the shm object, and exits 0.\n",
        out);
}

std::optional<options> parse_options(int argc, char **argv)
{
    options opt;
    opt.api = parse_api(default_api);

    for (int i = 1; i < argc; i++) {
        std::string_view arg = argv[i];

        if (arg == "-h" || arg == "--help") {
            print_usage(stdout);
            return std::nullopt;
        }

        std::string_view name = arg;
        std::string value;
        auto eq = arg.find('=');
        if (eq != std::string_view::npos) {
            name = arg.substr(0, eq);
        }
        if (name != "--api" && name != "--control" && name != "--shm"
            && name != "--ring-size" && name != "--socket-mode"
            && name != "--max-body" && name != "--config-owner")
        {
            throw std::invalid_argument("unknown option " + std::string(name)
                                        + " (see --help)");
        }
        if (eq != std::string_view::npos) {
            value = std::string(arg.substr(eq + 1));
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            throw std::invalid_argument(std::string(arg) + " needs a value"
                " (see --help)");
        }

        if (name == "--api") {
            opt.api = parse_api(value);
        } else if (name == "--control") {
            if (value.empty() || value.front() != '/') {
                throw std::invalid_argument("--control needs an absolute path");
            }
            opt.control_path = value;
        } else if (name == "--shm") {
            std::string_view base = value;
            if (base.starts_with('/')) {
                base.remove_prefix(1);
            }
            if (base.empty() || base.size() > 200
                || base.find('/') != std::string_view::npos)
            {
                throw std::invalid_argument("--shm must be a name like"
                                            " /ngx-pusher");
            }
            opt.shm_name = "/" + std::string(base);
        } else if (name == "--ring-size") {
            std::uint64_t size = parse_size(value);
            if (size < PUSHER_RING_MIN_CAPACITY
                || size > PUSHER_RING_MAX_CAPACITY
                || (size & (size - 1)) != 0)
            {
                throw std::invalid_argument("--ring-size must be a power of"
                                            " two from 64k to 1g");
            }
            opt.ring_size = size;
        } else if (name == "--socket-mode") {
            opt.socket_mode = parse_mode(value);
        } else if (name == "--max-body") {
            std::uint64_t size = parse_size(value);
            if (size == 0 || size > 1024 * 1024 * 1024) {
                throw std::invalid_argument("--max-body must be 1 .. 1g");
            }
            opt.max_body = size;
        } else if (name == "--config-owner") {
            opt.config_owner = parse_user(value);
        } else {
            throw std::invalid_argument("unknown option " + std::string(name)
                                        + " (see --help)");
        }
    }

    return opt;
}

} // namespace pusher::broker
