#pragma once

// The Boost.Asio / Beast names the broker uses (Boost 1.74 API only).

// Boost 1.74's awaitable.hpp uses std::exchange without including it
#include <utility>

#include <chrono>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace pusher::broker {

namespace net = boost::asio;
using net::ip::tcp;
using unix_stream = net::local::stream_protocol;

// after a failed accept (EMFILE, ENFILE, ENOBUFS) wait this long before
// the next one instead of spinning on the error
inline constexpr std::chrono::milliseconds accept_error_pause{100};

} // namespace pusher::broker
