#include "unix_socket_path.hpp"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <system_error>
#include <unistd.h>

#include "log.hpp"

namespace pusher::broker {

namespace {

// true if some process accepts connections on the socket file
bool socket_is_live(const std::string &path)
{
    sockaddr_un addr{};
    if (path.size() >= sizeof(addr.sun_path)) {
        return false;
    }
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);

    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        return false;
    }
    int rc = ::connect(fd, reinterpret_cast<sockaddr *>(&addr), sizeof(addr));
    // EAGAIN: a listener with a full backlog is still a listener
    bool live = rc == 0 || errno == EAGAIN || errno == EINPROGRESS;
    ::close(fd);
    return live;
}

} // namespace

void unix_socket_path::refuse_if_live(const std::string &path)
{
    struct stat st;
    if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)
        && socket_is_live(path))
    {
        throw std::runtime_error(path + " is in use by a running process");
    }
}

unix_socket_path::unix_socket_path(std::string path) : path_(std::move(path))
{
    namespace fs = std::filesystem;

    fs::path parent = fs::path(path_).parent_path();
    if (!parent.empty()) {
        std::error_code ec;
        if (fs::create_directories(parent, ec)) {
            log_line("created directory " + parent.string());
        } else if (ec) {
            throw std::system_error(ec, "mkdir " + parent.string());
        }
    }

    struct stat st;
    if (::lstat(path_.c_str(), &st) == -1) {
        return;
    }
    if (!S_ISSOCK(st.st_mode)) {
        throw std::runtime_error(path_ + " exists and is not a socket");
    }
    refuse_if_live(path_);
    if (::unlink(path_.c_str()) == -1) {
        throw std::system_error(errno, std::generic_category(),
                                "unlink " + path_);
    }
    log_line("removed stale socket " + path_);
}

unix_socket_path::~unix_socket_path()
{
    if (owned_) {
        ::unlink(path_.c_str());
    }
}

void unix_socket_path::listening(mode_t mode)
{
    owned_ = true;
    if (::chmod(path_.c_str(), mode) == -1) {
        throw std::system_error(errno, std::generic_category(),
                                "chmod " + path_);
    }
}

} // namespace pusher::broker
