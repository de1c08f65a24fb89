#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>

#include "app_registry.hpp"
#include "asio.hpp"
#include "config.hpp"
#include "metrics.hpp"
#include "trigger_api.hpp"
#include "unix_socket_path.hpp"

namespace pusher::broker {

// The HTTP API listener (unix socket behind nginx, or TCP for tests):
// one coroutine per connection, keep-alive, a read timeout per request,
// and one try/catch per session.  A request body is limited by its app's
// max_request_size (/apps/{id}/...), else by max_body.
class http_server {
public:
    static constexpr std::chrono::seconds read_timeout{30};
    static constexpr std::chrono::seconds write_timeout{30};

    http_server(net::io_context &ioc, const api_endpoint &ep, mode_t mode,
                std::uint64_t max_body, const app_registry &apps,
                trigger_api &api, broker_metrics &metrics);
    ~http_server();

    http_server(const http_server &) = delete;
    http_server &operator=(const http_server &) = delete;

    void start();
    void stop();

private:
    template <typename Protocol>
    net::awaitable<void> accept_loop(typename Protocol::acceptor &acceptor);
    template <typename Protocol>
    net::awaitable<void> session(typename Protocol::socket socket);

    net::io_context &ioc_;
    // the body limit of a request to target
    std::uint64_t body_limit(std::string_view target) const;
    void count(std::string_view target, unsigned status,
               std::uint64_t received, std::uint64_t transmitted);

    std::uint64_t max_body_;
    const app_registry &apps_;
    trigger_api &api_;
    broker_metrics &metrics_;
    std::optional<unix_socket_path> file_;
    std::optional<unix_stream::acceptor> unix_acceptor_;
    std::optional<tcp::acceptor> tcp_acceptor_;
};

} // namespace pusher::broker
