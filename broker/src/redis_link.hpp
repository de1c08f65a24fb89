#pragma once

// A Redis connection of the broker, on the broker's io_context (issue 12:
// the Redis cluster engine; this is its first building block).
//
// Design.  Debian 12's libhiredis-dev is 0.14.1, whose async context
// (redisAsyncContext and its event-loop adapters) has no TLS, and the
// cluster must speak rediss://.  So the link does all its I/O with
// Boost.Asio itself (a TCP socket, a unix socket, or an ssl::stream over
// TCP with the broker's OpenSSL) and uses hiredis only for the protocol:
// redisFormatSdsCommandArgv() encodes a command (binary-safe arguments)
// and a redisReader (redisReaderFeed / redisReaderGetReply) parses the
// replies from whatever pieces the socket returns.  No RESP code of ours.
// Each redisReply is converted at once into a redis_reply value and freed.
//
// A link is one connection in one of two modes:
//
//   commands    command(argv, handler): pipelined, one write of whatever
//               is queued at a time, replies matched to handlers in order
//               (Redis answers in order on one connection).
//   subscriber  subscribe() / psubscribe(): the channels and patterns are
//               remembered and (re)sent on every connection; messages go
//               to on_message.  command() is refused in this mode (a
//               subscribed connection takes no other commands in RESP2).
//
// start() connects in the background: resolve, connect, TLS handshake,
// AUTH [user] password when the URL has a password, SELECT db when db != 0,
// then (subscriber) SUBSCRIBE / PSUBSCRIBE and their confirmations; only
// then is the link up (on_state(true)).  When the connection fails or
// drops, every pending handler gets an error reply, on_state(false) is
// called if it was up, and the link tries again after a backoff of 100 ms
// doubling to 2 s (reset once a connection is up).  Every failed attempt
// goes to on_error (a wrong password: the server's WRONGPASS text).
//
// While down, command() fails at once (the handler is posted an error
// reply "ERR redis link down ..."); nothing is queued for later.  The
// bytes written but not yet sent are bounded (options::max_outgoing, 64 MiB
// by default): a command beyond fails at once the same way.
//
// The key prefix: key(name) returns prefix + name for the callers' keys
// (the link cannot know which arguments of a command are keys), and the
// channels and patterns of subscribe()/psubscribe() get the prefix on the
// wire and lose it again in on_message.
//
// All calls and callbacks on the io_context's thread.  Handlers are never
// called from inside command() itself (they are posted).  stop() fails
// the pending handlers and ends the link; it must be called before the
// io_context goes away (the coroutines hold a shared_ptr to the link).

#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "asio.hpp"

namespace pusher::broker {

// A parsed URL (common/pusher_redis_url.h has the grammar):
//   redis://[[user]:password@]host[:port][/db][?db=N]
//   rediss://...[?ca=FILE][&verify=0]            (TLS)
//   unix://[[user]:password@]/path/redis.sock[?db=N]
struct redis_url {
    enum class transport { tcp, tls, unix_socket };

    transport kind = transport::tcp;
    std::string host;           // tcp, tls (no brackets)
    unsigned port = 6379;       // tcp, tls
    std::string path;           // unix_socket
    std::string user;           // "" for none
    std::optional<std::string> password;
    unsigned db = 0;
    std::string ca_file;        // tls: "" for the system's default paths
    bool verify = true;         // tls

    // throws std::invalid_argument with the parser's message (never the
    // password)
    static redis_url parse(std::string_view url);

    // the URL without the password, for logs
    std::string redacted() const;
};

// A reply, converted from hiredis's redisReply (RESP2: no doubles, maps or
// pushes in hiredis 0.14).
struct redis_reply {
    enum class kind { nil, integer, string, status, error, array };

    kind type = kind::nil;
    long long integer = 0;
    std::string str;                    // string, status, error
    std::vector<redis_reply> elements;  // array

    bool is_error() const { return type == kind::error; }
    bool is_nil() const { return type == kind::nil; }

    static redis_reply error(std::string text)
    {
        redis_reply r;
        r.type = kind::error;
        r.str = std::move(text);
        return r;
    }

    // for messages and tests: a short text form
    std::string describe() const;
};

class redis_link : public std::enable_shared_from_this<redis_link> {
public:
    enum class mode { commands, subscriber };

    using reply_handler = std::function<void(const redis_reply &)>;

    struct callbacks {
        // up/down transitions; the text says why it went down
        std::function<void(bool up, const std::string &why)> on_state;
        // every failed connection attempt (connect, TLS, AUTH, SELECT...)
        std::function<void(const std::string &why)> on_error;
        // subscriber mode: channel without the prefix; pattern is "" for
        // a SUBSCRIBE message, the pattern (without the prefix) for a
        // PSUBSCRIBE one
        std::function<void(const std::string &channel,
                           const std::string &payload,
                           const std::string &pattern)>
            on_message;
    };

    struct options {
        std::size_t max_outgoing = 64 * 1024 * 1024;
        std::chrono::milliseconds backoff_min{100};
        std::chrono::milliseconds backoff_max{2000};
        // connect + TLS + AUTH/SELECT/SUBSCRIBE must be done within this
        std::chrono::milliseconds connect_timeout{5000};
        // the read size of one read_some
        std::size_t read_chunk = 64 * 1024;
    };

    static std::shared_ptr<redis_link> create(net::io_context &io,
                                              redis_url url,
                                              std::string key_prefix,
                                              mode m, callbacks cb,
                                              options opt);
    static std::shared_ptr<redis_link> create(net::io_context &io,
                                              redis_url url,
                                              std::string key_prefix,
                                              mode m, callbacks cb)
    {
        return create(io, std::move(url), std::move(key_prefix), m,
                      std::move(cb), options{});
    }

    ~redis_link();
    redis_link(const redis_link &) = delete;
    redis_link &operator=(const redis_link &) = delete;

    void start();
    void stop();

    bool up() const { return up_; }
    const std::string &last_error() const { return last_error_; }
    const redis_url &url() const { return url_; }
    std::string key(std::string_view name) const
    {
        return prefix_ + std::string(name);
    }

    // commands mode: sends argv (binary-safe) and calls handler with the
    // reply, or with an error reply when the link is down, the queue is
    // full or the connection drops before the reply
    void command(std::vector<std::string> argv, reply_handler handler);

    // subscriber mode: remembered, sent now if up and on every reconnect
    void subscribe(const std::vector<std::string> &channels);
    void psubscribe(const std::vector<std::string> &patterns);

    // for tests and metrics
    std::size_t pending() const { return pending_.size(); }
    std::size_t outgoing_bytes() const { return out_.size() + writing_; }

    struct stream;  // the transport (redis_link.cpp)

private:
    struct conn;

    redis_link(net::io_context &io, redis_url url, std::string prefix,
               mode m, callbacks cb, options opt);

    net::awaitable<void> run();
    net::awaitable<std::string> connect_once(std::shared_ptr<conn> c);
    net::awaitable<void> reader(std::shared_ptr<conn> c);
    net::awaitable<void> writer(std::shared_ptr<conn> c);

    bool queue(const std::vector<std::string> &argv);
    void dispatch(redis_reply &&r);
    void fail_pending(const std::string &why);
    void drop(const std::string &why);
    void post_reply(reply_handler h, redis_reply r);

    net::io_context &io_;
    redis_url url_;
    std::string prefix_;
    mode mode_;
    callbacks cb_;
    options opt_;

    bool started_ = false;
    bool stopped_ = false;
    bool up_ = false;
    std::string last_error_;

    std::shared_ptr<conn> conn_;       // the current connection, if any
    std::string out_;                  // formatted, not yet being written
    std::size_t writing_ = 0;          // bytes of the write in flight
    std::deque<reply_handler> pending_;
    std::vector<std::string> channels_, patterns_;
    net::steady_timer backoff_timer_;
};

} // namespace pusher::broker
