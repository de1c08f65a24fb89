#include "http_server.hpp"

#include <limits>

#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "json.hpp"
#include "log.hpp"

namespace pusher::broker {

namespace beast = boost::beast;
namespace http = beast::http;

namespace {

// after an error reply, how long to read and discard what the client is
// still sending, so that closing does not reset the reply
constexpr std::chrono::seconds drain_timeout{5};

const boost::system::error_category &http_error_category()
{
    return http::make_error_code(http::error::bad_target).category();
}

template <typename Stream>
net::awaitable<void> reply_and_close(Stream &stream, unsigned status,
                                     std::string_view message)
{
    http::response<http::string_body> res{static_cast<http::status>(status),
                                          11};
    res.set(http::field::content_type, "application/json");
    res.set(http::field::connection, "close");
    res.body() = json::error_body(message, static_cast<int>(status));
    res.prepare_payload();

    boost::system::error_code ec;
    stream.expires_after(http_server::write_timeout);
    co_await http::async_write(stream, res,
                               net::redirect_error(net::use_awaitable, ec));
    if (ec) {
        co_return;
    }
    stream.socket().shutdown(net::socket_base::shutdown_send, ec);

    std::array<char, 16384> scratch;
    stream.expires_after(drain_timeout);
    while (!ec) {
        co_await stream.async_read_some(
            net::buffer(scratch), net::redirect_error(net::use_awaitable, ec));
    }
}

} // namespace

http_server::http_server(net::io_context &ioc, const api_endpoint &ep,
                         mode_t mode, std::uint64_t max_body,
                         const app_registry &apps, trigger_api &api,
                         broker_metrics &metrics)
    : ioc_(ioc), max_body_(max_body), apps_(apps), api_(api),
      metrics_(metrics)
{
    if (ep.is_unix) {
        file_.emplace(ep.path);
        unix_stream::endpoint uep(ep.path);
        unix_acceptor_.emplace(ioc);
        unix_acceptor_->open(uep.protocol());
        unix_acceptor_->bind(uep);
        file_->listening(mode);
        unix_acceptor_->listen(net::socket_base::max_listen_connections);
    } else {
        tcp::endpoint tep(net::ip::make_address(ep.host), ep.port);
        tcp_acceptor_.emplace(ioc);
        tcp_acceptor_->open(tep.protocol());
        tcp_acceptor_->set_option(net::socket_base::reuse_address(true));
        tcp_acceptor_->bind(tep);
        tcp_acceptor_->listen(net::socket_base::max_listen_connections);
    }
}

http_server::~http_server() = default;

void http_server::start()
{
    if (unix_acceptor_) {
        net::co_spawn(ioc_, accept_loop<unix_stream>(*unix_acceptor_),
                      net::detached);
    } else {
        net::co_spawn(ioc_, accept_loop<tcp>(*tcp_acceptor_), net::detached);
    }
}

void http_server::stop()
{
    boost::system::error_code ignored;
    if (unix_acceptor_) {
        unix_acceptor_->close(ignored);
    }
    if (tcp_acceptor_) {
        tcp_acceptor_->close(ignored);
    }
}

template <typename Protocol>
net::awaitable<void>
http_server::accept_loop(typename Protocol::acceptor &acceptor)
{
    for (;;) {
        boost::system::error_code ec;
        typename Protocol::socket s = co_await acceptor.async_accept(
            net::redirect_error(net::use_awaitable, ec));
        if (ec == net::error::operation_aborted || !acceptor.is_open()) {
            co_return;
        }
        if (ec) {
            log_line("api accept: " + ec.message());
            net::steady_timer pause(ioc_, accept_error_pause);
            co_await pause.async_wait(
                net::redirect_error(net::use_awaitable, ec));
            continue;
        }
        if constexpr (std::is_same_v<Protocol, tcp>) {
            s.set_option(tcp::no_delay(true), ec);
        }
        net::co_spawn(ioc_, session<Protocol>(std::move(s)), net::detached);
    }
}

// one answered request for pusher_metrics; an app id nobody configured
// is no label (any path could make one up)
void http_server::count(std::string_view target, unsigned status,
                        std::uint64_t received, std::uint64_t transmitted)
{
    std::string_view app_id;
    std::string_view endpoint = broker_metrics::endpoint(target, app_id);
    if (!app_id.empty() && apps_.find(app_id) == nullptr) {
        app_id = {};
    }
    metrics_.count_request(app_id, endpoint, status, received, transmitted);
}

std::uint64_t http_server::body_limit(std::string_view target) const
{
    constexpr std::string_view apps_prefix = "/apps/";
    if (!target.starts_with(apps_prefix)) {
        return max_body_;
    }
    std::string_view id = target.substr(apps_prefix.size());
    id = id.substr(0, id.find_first_of("/?"));
    const app *a = apps_.find(id);
    return a != nullptr && a->max_request_size != 0 ? a->max_request_size
                                                    : max_body_;
}

template <typename Protocol>
net::awaitable<void> http_server::session(typename Protocol::socket socket)
{
    beast::basic_stream<Protocol> stream(std::move(socket));
    beast::flat_buffer buffer;

    try {
        for (;;) {
            http::request_parser<http::string_body> parser;
            // the app's limit is known after the header: until then none
            // (Beast 1.74 compares a Content-Length with an unset limit
            // wrongly, so "none" is the largest value)
            parser.body_limit(std::numeric_limits<std::uint64_t>::max());

            boost::system::error_code ec;
            stream.expires_after(read_timeout);
            co_await http::async_read_header(stream, buffer, parser,
                net::redirect_error(net::use_awaitable, ec));
            std::uint64_t limit = max_body_;
            if (!ec) {
                limit = body_limit(parser.get().target());
                // a Content-Length is checked here, chunks as they come
                if (parser.content_length()
                    && *parser.content_length() > limit)
                {
                    ec = http::error::body_limit;
                } else {
                    parser.body_limit(limit);
                    co_await http::async_read(stream, buffer, parser,
                        net::redirect_error(net::use_awaitable, ec));
                }
            }
            if (ec == http::error::body_limit) {
                count(parser.get().target(), 413, 0, 0);
                co_await reply_and_close(stream, 413,
                    "Request body is larger than "
                    + std::to_string(limit) + " bytes");
                co_return;
            }
            if (ec == http::error::end_of_stream
                || ec == http::error::partial_message)
            {
                break;
            }
            if (ec && ec.category() == http_error_category()) {
                co_await reply_and_close(stream, 400, "Bad request");
                co_return;
            }
            if (ec) {
                break;      // timeout, reset
            }

            const auto &req = parser.get();
            if (trigger_api::reads_counts(req.method_string(), req.body())) {
                // the uplink the workers sent before this request first:
                // it is read a turn of the loop at a time, then by timer
                auto mark = api_.uplink_now();
                auto asked = ring_flow::clock::now();
                for (int turn = 0; !api_.uplink_handled(mark)
                     && ring_flow::clock::now() - asked
                            < trigger_api::uplink_wait_limit;
                     turn++)
                {
                    if (turn < 16) {
                        co_await net::post(stream.get_executor(),
                                           net::use_awaitable);
                        continue;
                    }
                    net::steady_timer pause(stream.get_executor(),
                                            std::chrono::milliseconds(1));
                    co_await pause.async_wait(
                        net::redirect_error(net::use_awaitable, ec));
                }
            }
            api_response r = api_.handle(req.method_string(), req.target(),
                                         req.body());
            // The ring has no room until a worker reads on: look each
            // millisecond, serving the other requests meanwhile, and ask
            // again once there is room or the wait is over.
            auto asked = ring_flow::clock::now();
            while (r.retry) {
                net::steady_timer pause(stream.get_executor(),
                                        std::chrono::milliseconds(1));
                co_await pause.async_wait(
                    net::redirect_error(net::use_awaitable, ec));
                auto waited = ring_flow::clock::now() - asked;
                if (waited < trigger_api::ring_wait_limit
                    && !api_.room_for(r.need))
                {
                    continue;
                }
                r = api_.handle(req.method_string(), req.target(), req.body(),
                                waited);
            }

            count(req.target(), r.status, req.body().size(), r.body.size());

            http::response<http::string_body> res{
                static_cast<http::status>(r.status), req.version()};
            res.set(http::field::content_type, "application/json");
            res.keep_alive(req.keep_alive());
            if (req.method() == http::verb::head) {
                res.content_length(r.body.size());
            } else {
                res.body() = std::move(r.body);
                res.prepare_payload();
            }

            stream.expires_after(write_timeout);
            co_await http::async_write(stream, res,
                net::redirect_error(net::use_awaitable, ec));
            if (ec || !res.keep_alive()) {
                break;
            }
        }

        boost::system::error_code ignored;
        stream.socket().shutdown(net::socket_base::shutdown_send, ignored);
    } catch (const std::exception &e) {
        log_line(std::string("api session: ") + e.what());
    }
}

} // namespace pusher::broker
