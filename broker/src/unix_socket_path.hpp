#pragma once

#include <string>
#include <sys/types.h>

namespace pusher::broker {

// The file of a listening unix socket.  The constructor makes the parent
// directories and removes a stale socket file, refusing one that a live
// process still accepts on; after bind, listening() applies the mode and
// from then on the destructor unlinks the file.
class unix_socket_path {
public:
    explicit unix_socket_path(std::string path);
    ~unix_socket_path();

    unix_socket_path(const unix_socket_path &) = delete;
    unix_socket_path &operator=(const unix_socket_path &) = delete;

    // throws if a live process accepts on path (another broker)
    static void refuse_if_live(const std::string &path);

    const std::string &path() const noexcept { return path_; }
    void listening(mode_t mode);

private:
    std::string path_;
    bool owned_ = false;
};

} // namespace pusher::broker
