#include "log.hpp"

#include <cstdio>
#include <string>

namespace pusher::broker {

void log_line(std::string_view message)
{
    std::string line;
    line.reserve(message.size() + 16);
    line.append("pusher-broker: ");
    line.append(message);
    line.push_back('\n');
    // one write per line so that lines from restarts never interleave
    std::fwrite(line.data(), 1, line.size(), stderr);
    std::fflush(stderr);
}

void debug_line(std::string_view message)
{
    if (!debug_enabled) {
        return;
    }
    std::string line;
    line.reserve(message.size() + 16);
    line.append("pusher debug: ");
    line.append(message);
    log_line(line);
}

} // namespace pusher::broker
