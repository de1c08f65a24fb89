// A Redis connection on the broker's io_context: see redis_link.hpp.

#include "redis_link.hpp"

#include <algorithm>
#include <cstdlib>

#include <boost/asio/connect.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>

#include <openssl/ssl.h>

#include <hiredis.h>

#include "pusher_redis_url.h"

namespace pusher::broker {

namespace {

using error_code = boost::system::error_code;

redis_reply convert(const redisReply *r)
{
    redis_reply out;
    switch (r->type) {
    case REDIS_REPLY_INTEGER:
        out.type = redis_reply::kind::integer;
        out.integer = r->integer;
        break;
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
        out.type = r->type == REDIS_REPLY_STRING   ? redis_reply::kind::string
                   : r->type == REDIS_REPLY_STATUS ? redis_reply::kind::status
                                                   : redis_reply::kind::error;
        out.str.assign(r->str, r->len);
        break;
    case REDIS_REPLY_ARRAY:
        out.type = redis_reply::kind::array;
        out.elements.reserve(r->elements);
        for (std::size_t i = 0; i < r->elements; i++) {
            out.elements.push_back(convert(r->element[i]));
        }
        break;
    default:
        // REDIS_REPLY_NIL, and a nil array (*-1)
        out.type = redis_reply::kind::nil;
        break;
    }
    return out;
}

} // namespace

// ---- the URL ------------------------------------------------------------

redis_url redis_url::parse(std::string_view text)
{
    auto u = std::make_unique<pusher_redis_url_t>();
    char why[256];
    if (pusher_redis_url_parse(u.get(), text.data(), text.size(), why,
                               sizeof(why)) != 0) {
        throw std::invalid_argument(why);
    }
    redis_url r;
    switch (u->transport) {
    case PUSHER_REDIS_TLS:
        r.kind = transport::tls;
        break;
    case PUSHER_REDIS_UNIX:
        r.kind = transport::unix_socket;
        break;
    default:
        r.kind = transport::tcp;
        break;
    }
    r.host = u->host;
    r.port = u->port;
    r.path = u->path;
    r.user = u->user;
    if (u->has_password) {
        r.password = std::string(u->password, u->password_len);
    }
    r.db = u->db;
    r.ca_file = u->ca_file;
    r.verify = u->verify != 0;
    return r;
}

std::string redis_url::redacted() const
{
    std::string s;
    switch (kind) {
    case transport::tcp:
        s = "redis://";
        break;
    case transport::tls:
        s = "rediss://";
        break;
    case transport::unix_socket:
        s = "unix://";
        break;
    }
    if (password) {
        s += user + ":***@";
    }
    if (kind == transport::unix_socket) {
        s += path;
        if (db != 0) {
            s += "?db=" + std::to_string(db);
        }
        return s;
    }
    if (host.find(':') != std::string::npos) {
        s += "[" + host + "]";
    } else {
        s += host;
    }
    s += ":" + std::to_string(port);
    if (db != 0) {
        s += "/" + std::to_string(db);
    }
    return s;
}

std::string redis_reply::describe() const
{
    switch (type) {
    case kind::nil:
        return "(nil)";
    case kind::integer:
        return "(integer) " + std::to_string(integer);
    case kind::string:
        return "\"" + str + "\"";
    case kind::status:
        return str;
    case kind::error:
        return "(error) " + str;
    case kind::array: {
        std::string s = "[";
        for (std::size_t i = 0; i < elements.size(); i++) {
            s += (i ? ", " : "") + elements[i].describe();
        }
        return s + "]";
    }
    }
    return "?";
}

// ---- the transports -----------------------------------------------------

struct redis_link::stream {
    virtual ~stream() = default;
    // connect, and for TLS the handshake; ec set on failure
    virtual net::awaitable<void> connect(const redis_url &u,
                                         error_code &ec) = 0;
    virtual net::awaitable<std::size_t> read_some(net::mutable_buffer b,
                                                  error_code &ec) = 0;
    virtual net::awaitable<void> write(net::const_buffer b,
                                       error_code &ec) = 0;
    // aborts whatever is in flight; idempotent
    virtual void close() = 0;
};

namespace {

template <class Socket> struct plain_stream : redis_link::stream {
    explicit plain_stream(net::io_context &io) : sock(io), resolver(io) {}

    net::awaitable<void> connect(const redis_url &u, error_code &ec) override
    {
        if constexpr (std::is_same_v<Socket, unix_stream::socket>) {
            co_await sock.async_connect(
                unix_stream::endpoint(u.path),
                net::redirect_error(net::use_awaitable, ec));
        } else {
            auto results = co_await resolver.async_resolve(
                u.host, std::to_string(u.port),
                net::redirect_error(net::use_awaitable, ec));
            if (ec) {
                co_return;
            }
            co_await net::async_connect(
                sock, results, net::redirect_error(net::use_awaitable, ec));
            if (!ec) {
                sock.set_option(tcp::no_delay(true), ec);
            }
        }
    }

    net::awaitable<std::size_t> read_some(net::mutable_buffer b,
                                          error_code &ec) override
    {
        co_return co_await sock.async_read_some(
            b, net::redirect_error(net::use_awaitable, ec));
    }

    net::awaitable<void> write(net::const_buffer b, error_code &ec) override
    {
        co_await net::async_write(sock, b,
                                  net::redirect_error(net::use_awaitable, ec));
    }

    void close() override
    {
        error_code ignored;
        resolver.cancel();
        sock.close(ignored);
    }

    Socket sock;
    tcp::resolver resolver;
};

struct tls_stream : redis_link::stream {
    explicit tls_stream(net::io_context &io)
        : ctx(net::ssl::context::tls_client), sock(io, ctx), resolver(io)
    {
    }

    net::awaitable<void> connect(const redis_url &u, error_code &ec) override
    {
        if (u.verify) {
            if (!u.ca_file.empty()) {
                ctx.load_verify_file(u.ca_file, ec);
            } else {
                ctx.set_default_verify_paths(ec);
            }
            if (ec) {
                co_return;
            }
            sock.set_verify_mode(net::ssl::verify_peer);
            sock.set_verify_callback(net::ssl::host_name_verification(u.host));
        } else {
            sock.set_verify_mode(net::ssl::verify_none);
        }
        error_code not_ip;
        net::ip::make_address(u.host, not_ip);
        if (not_ip) {
            // SNI, for a name only (RFC 6066)
            SSL_set_tlsext_host_name(sock.native_handle(), u.host.c_str());
        }

        auto results = co_await resolver.async_resolve(
            u.host, std::to_string(u.port),
            net::redirect_error(net::use_awaitable, ec));
        if (ec) {
            co_return;
        }
        co_await net::async_connect(
            sock.next_layer(), results,
            net::redirect_error(net::use_awaitable, ec));
        if (ec) {
            co_return;
        }
        sock.next_layer().set_option(tcp::no_delay(true), ec);
        co_await sock.async_handshake(
            net::ssl::stream_base::client,
            net::redirect_error(net::use_awaitable, ec));
    }

    net::awaitable<std::size_t> read_some(net::mutable_buffer b,
                                          error_code &ec) override
    {
        co_return co_await sock.async_read_some(
            b, net::redirect_error(net::use_awaitable, ec));
    }

    net::awaitable<void> write(net::const_buffer b, error_code &ec) override
    {
        co_await net::async_write(sock, b,
                                  net::redirect_error(net::use_awaitable, ec));
    }

    void close() override
    {
        // no close_notify: the link is going away or reconnecting
        error_code ignored;
        resolver.cancel();
        sock.next_layer().close(ignored);
    }

    net::ssl::context ctx;
    net::ssl::stream<tcp::socket> sock;
    tcp::resolver resolver;
};

std::string describe_error(const error_code &ec)
{
    if (ec == net::error::eof) {
        return "connection closed by the server";
    }
    std::string s = ec.message();
    if (ec.category() == net::error::get_ssl_category()) {
        // OpenSSL's reason: "certificate verify failed" and the like
        s = "TLS: " + s;
    }
    return s;
}

} // namespace

// one connection attempt and, if it succeeds, its life
struct redis_link::conn {
    explicit conn(net::io_context &io, std::size_t chunk)
        : wake(io), deadline(io), buf(chunk)
    {
        reader = redisReaderCreate();
        if (reader == nullptr) {
            throw std::bad_alloc();
        }
    }
    ~conn() { redisReaderFree(reader); }
    conn(const conn &) = delete;
    conn &operator=(const conn &) = delete;

    void kill(const std::string &reason)
    {
        if (why.empty()) {
            why = reason;
        }
        dead = true;
        s->close();
        wake.cancel();
        deadline.cancel();
    }

    std::unique_ptr<redis_link::stream> s;
    redisReader *reader = nullptr;
    net::steady_timer wake;      // the writer waits on it for work
    net::steady_timer deadline;  // of the connection attempt
    std::vector<char> buf;
    bool dead = false;
    bool handshaken = false;
    bool writer_done = false;
    std::string why;
};

// ---- the link -------------------------------------------------------------

std::shared_ptr<redis_link> redis_link::create(net::io_context &io,
                                               redis_url url,
                                               std::string key_prefix,
                                               mode m, callbacks cb,
                                               options opt)
{
    return std::shared_ptr<redis_link>(new redis_link(
        io, std::move(url), std::move(key_prefix), m, std::move(cb), opt));
}

redis_link::redis_link(net::io_context &io, redis_url url, std::string prefix,
                       mode m, callbacks cb, options opt)
    : io_(io), url_(std::move(url)), prefix_(std::move(prefix)), mode_(m),
      cb_(std::move(cb)), opt_(opt), backoff_timer_(io)
{
}

redis_link::~redis_link() = default;

void redis_link::start()
{
    if (started_ || stopped_) {
        return;
    }
    started_ = true;
    net::co_spawn(io_, run(), net::detached);
}

void redis_link::stop()
{
    if (stopped_) {
        return;
    }
    stopped_ = true;
    up_ = false;
    backoff_timer_.cancel();
    if (conn_) {
        conn_->kill("stopped");
    }
    out_.clear();
    writing_ = 0;
    fail_pending("ERR redis link stopped");
}

void redis_link::post_reply(reply_handler h, redis_reply r)
{
    if (!h) {
        return;
    }
    net::post(io_, [h = std::move(h), r = std::move(r)]() { h(r); });
}

void redis_link::fail_pending(const std::string &why)
{
    std::deque<reply_handler> failed;
    failed.swap(pending_);
    for (auto &h : failed) {
        post_reply(std::move(h), redis_reply::error(why));
    }
}

bool redis_link::queue(const std::vector<std::string> &argv)
{
    std::size_t total = 0;
    std::vector<const char *> ptrs;
    std::vector<std::size_t> lens;
    ptrs.reserve(argv.size());
    lens.reserve(argv.size());
    for (const std::string &a : argv) {
        ptrs.push_back(a.data());
        lens.push_back(a.size());
        total += a.size() + 32;
    }
    if (out_.size() + writing_ + total > opt_.max_outgoing) {
        return false;
    }
    char *cmd = nullptr;
    int len = redisFormatCommandArgv(&cmd, static_cast<int>(argv.size()),
                                     ptrs.data(), lens.data());
    if (len < 0 || cmd == nullptr) {
        throw std::bad_alloc();
    }
    bool wake = out_.empty();
    out_.append(cmd, static_cast<std::size_t>(len));
    redisFreeCommand(cmd);
    if (wake && conn_) {
        conn_->wake.cancel();
    }
    return true;
}

void redis_link::command(std::vector<std::string> argv, reply_handler handler)
{
    if (mode_ != mode::commands) {
        post_reply(std::move(handler),
                   redis_reply::error("ERR command() on a subscriber link"));
        return;
    }
    if (argv.empty()) {
        post_reply(std::move(handler), redis_reply::error("ERR empty command"));
        return;
    }
    if (!up_) {
        post_reply(std::move(handler),
                   redis_reply::error("ERR redis link down" +
                                      (last_error_.empty()
                                           ? std::string()
                                           : ": " + last_error_)));
        return;
    }
    if (!queue(argv)) {
        post_reply(std::move(handler),
                   redis_reply::error("ERR redis link outgoing queue full"));
        return;
    }
    pending_.push_back(std::move(handler));
}

namespace {

void add_unique(std::vector<std::string> &set, std::vector<std::string> &added,
                const std::string &name)
{
    if (std::find(set.begin(), set.end(), name) == set.end()) {
        set.push_back(name);
        added.push_back(name);
    }
}

} // namespace

void redis_link::subscribe(const std::vector<std::string> &channels)
{
    std::vector<std::string> argv{"SUBSCRIBE"};
    for (const std::string &c : channels) {
        add_unique(channels_, argv, prefix_ + c);
    }
    if (mode_ == mode::subscriber && up_ && argv.size() > 1) {
        queue(argv);
    }
}

void redis_link::psubscribe(const std::vector<std::string> &patterns)
{
    std::vector<std::string> argv{"PSUBSCRIBE"};
    for (const std::string &p : patterns) {
        add_unique(patterns_, argv, prefix_ + p);
    }
    if (mode_ == mode::subscriber && up_ && argv.size() > 1) {
        queue(argv);
    }
}

void redis_link::dispatch(redis_reply &&r)
{
    if (mode_ == mode::commands) {
        if (pending_.empty()) {
            conn_->kill("protocol error: a reply nobody asked for");
            return;
        }
        reply_handler h = std::move(pending_.front());
        pending_.pop_front();
        if (h) {
            h(r);
        }
        return;
    }

    // subscriber: messages and the confirmations of (P)SUBSCRIBE
    if (r.type == redis_reply::kind::error) {
        last_error_ = r.str;
        if (cb_.on_error) {
            cb_.on_error(r.str);
        }
        return;
    }
    if (r.type != redis_reply::kind::array || r.elements.empty() ||
        r.elements[0].type != redis_reply::kind::string) {
        return;
    }
    const std::string &what = r.elements[0].str;
    auto strip = [this](const std::string &s) {
        return s.compare(0, prefix_.size(), prefix_) == 0
                   ? s.substr(prefix_.size())
                   : s;
    };
    if (what == "message" && r.elements.size() == 3) {
        if (cb_.on_message) {
            cb_.on_message(strip(r.elements[1].str), r.elements[2].str, "");
        }
    } else if (what == "pmessage" && r.elements.size() == 4) {
        if (cb_.on_message) {
            cb_.on_message(strip(r.elements[2].str), r.elements[3].str,
                           strip(r.elements[1].str));
        }
    }
}

net::awaitable<void> redis_link::run()
{
    auto self = shared_from_this();
    auto backoff = opt_.backoff_min;

    while (!stopped_) {
        auto c = std::make_shared<conn>(io_, opt_.read_chunk);
        switch (url_.kind) {
        case redis_url::transport::tcp:
            c->s = std::make_unique<plain_stream<tcp::socket>>(io_);
            break;
        case redis_url::transport::unix_socket:
            c->s = std::make_unique<plain_stream<unix_stream::socket>>(io_);
            break;
        case redis_url::transport::tls:
            c->s = std::make_unique<tls_stream>(io_);
            break;
        }
        conn_ = c;

        std::string why = co_await connect_once(c);
        if (why.empty() && !stopped_) {
            backoff = opt_.backoff_min;
            up_ = true;
            last_error_.clear();
            net::co_spawn(io_, writer(c), net::detached);
            if (cb_.on_state) {
                cb_.on_state(true, "");
            }
            if (!c->dead) {
                co_await reader(c);
            }
            why = c->why;
        }

        c->kill(why);
        if (conn_ == c) {
            conn_.reset();
        }
        out_.clear();
        writing_ = 0;
        if (stopped_) {
            break;
        }
        last_error_ = why;
        fail_pending("ERR redis link down: " + why);
        if (up_) {
            up_ = false;
            if (cb_.on_state) {
                cb_.on_state(false, why);
            }
        } else if (cb_.on_error) {
            cb_.on_error(why);
        }
        if (stopped_) {
            break;
        }

        backoff_timer_.expires_after(backoff);
        error_code ec;
        co_await backoff_timer_.async_wait(
            net::redirect_error(net::use_awaitable, ec));
        backoff = std::min(backoff * 2, opt_.backoff_max);
    }
}

// connects and does the handshake; "" when up, else why not
net::awaitable<std::string> redis_link::connect_once(std::shared_ptr<conn> c)
{
    c->deadline.expires_after(opt_.connect_timeout);
    c->deadline.async_wait([c](const error_code &ec) {
        if (!ec && !c->handshaken) {
            c->kill("timed out connecting");
        }
    });

    error_code ec;
    co_await c->s->connect(url_, ec);
    if (c->dead) {
        co_return c->why;
    }
    if (ec) {
        co_return (url_.kind == redis_url::transport::unix_socket
                       ? "connect to " + url_.path
                       : "connect to " + url_.host + ":" +
                             std::to_string(url_.port)) +
            ": " + describe_error(ec);
    }

    // the handshake: written at once, the replies read in order
    std::vector<std::vector<std::string>> cmds;
    std::vector<std::size_t> replies;
    if (url_.password) {
        if (url_.user.empty()) {
            cmds.push_back({"AUTH", *url_.password});
        } else {
            cmds.push_back({"AUTH", url_.user, *url_.password});
        }
        replies.push_back(1);
    }
    if (url_.db != 0) {
        cmds.push_back({"SELECT", std::to_string(url_.db)});
        replies.push_back(1);
    }
    std::size_t sent_channels = 0, sent_patterns = 0;
    if (mode_ == mode::subscriber) {
        sent_channels = channels_.size();
        sent_patterns = patterns_.size();
        if (!channels_.empty()) {
            cmds.push_back({"SUBSCRIBE"});
            cmds.back().insert(cmds.back().end(), channels_.begin(),
                               channels_.end());
            replies.push_back(channels_.size());
        }
        if (!patterns_.empty()) {
            cmds.push_back({"PSUBSCRIBE"});
            cmds.back().insert(cmds.back().end(), patterns_.begin(),
                               patterns_.end());
            replies.push_back(patterns_.size());
        }
    }

    if (!cmds.empty()) {
        std::string wire;
        for (const auto &argv : cmds) {
            std::vector<const char *> ptrs;
            std::vector<std::size_t> lens;
            for (const std::string &a : argv) {
                ptrs.push_back(a.data());
                lens.push_back(a.size());
            }
            char *cmd = nullptr;
            int len = redisFormatCommandArgv(&cmd, static_cast<int>(argv.size()),
                                             ptrs.data(), lens.data());
            if (len < 0 || cmd == nullptr) {
                throw std::bad_alloc();
            }
            wire.append(cmd, static_cast<std::size_t>(len));
            redisFreeCommand(cmd);
        }
        co_await c->s->write(net::buffer(wire), ec);
        if (c->dead) {
            co_return c->why;
        }
        if (ec) {
            co_return "handshake: " + describe_error(ec);
        }

        for (std::size_t i = 0; i < cmds.size(); i++) {
            for (std::size_t k = 0; k < replies[i]; k++) {
                void *rp = nullptr;
                for (;;) {
                    if (redisReaderGetReply(c->reader, &rp) != REDIS_OK) {
                        co_return std::string("protocol error: ") +
                            c->reader->errstr;
                    }
                    if (rp != nullptr) {
                        break;
                    }
                    std::size_t n = co_await c->s->read_some(
                        net::buffer(c->buf), ec);
                    if (c->dead) {
                        co_return c->why;
                    }
                    if (ec) {
                        co_return "handshake: " + describe_error(ec);
                    }
                    redisReaderFeed(c->reader, c->buf.data(), n);
                }
                redis_reply r = convert(static_cast<redisReply *>(rp));
                freeReplyObject(rp);
                if (r.is_error()) {
                    // the first word of the command (never the password)
                    co_return cmds[i][0] + ": " + r.str;
                }
            }
        }
    }

    c->handshaken = true;
    c->deadline.cancel();

    // (p)subscribe() calls made during the handshake: sent first thing
    if (mode_ == mode::subscriber) {
        if (channels_.size() > sent_channels) {
            std::vector<std::string> argv{"SUBSCRIBE"};
            argv.insert(argv.end(), channels_.begin() + long(sent_channels),
                        channels_.end());
            queue(argv);
        }
        if (patterns_.size() > sent_patterns) {
            std::vector<std::string> argv{"PSUBSCRIBE"};
            argv.insert(argv.end(), patterns_.begin() + long(sent_patterns),
                        patterns_.end());
            queue(argv);
        }
    }
    co_return "";
}

net::awaitable<void> redis_link::reader(std::shared_ptr<conn> c)
{
    auto self = shared_from_this();
    for (;;) {
        // whatever the reader holds already (the handshake may have read
        // past its own replies)
        for (;;) {
            void *rp = nullptr;
            if (redisReaderGetReply(c->reader, &rp) != REDIS_OK) {
                c->kill(std::string("protocol error: ") + c->reader->errstr);
                co_return;
            }
            if (rp == nullptr) {
                break;
            }
            redis_reply r = convert(static_cast<redisReply *>(rp));
            freeReplyObject(rp);
            dispatch(std::move(r));
            if (c->dead) {
                co_return;
            }
        }
        error_code ec;
        std::size_t n = co_await c->s->read_some(net::buffer(c->buf), ec);
        if (c->dead) {
            co_return;
        }
        if (ec) {
            c->kill(describe_error(ec));
            co_return;
        }
        if (redisReaderFeed(c->reader, c->buf.data(), n) != REDIS_OK) {
            c->kill("out of memory in the reply reader");
            co_return;
        }
    }
}

net::awaitable<void> redis_link::writer(std::shared_ptr<conn> c)
{
    auto self = shared_from_this();
    std::string buf;
    while (!c->dead) {
        if (out_.empty()) {
            c->wake.expires_at(net::steady_timer::time_point::max());
            error_code ec;
            co_await c->wake.async_wait(
                net::redirect_error(net::use_awaitable, ec));
            continue;
        }
        buf.clear();
        buf.swap(out_);
        writing_ = buf.size();
        error_code ec;
        co_await c->s->write(net::buffer(buf), ec);
        if (c->dead) {
            break;
        }
        writing_ = 0;
        if (ec) {
            c->kill(describe_error(ec));
            break;
        }
        // give back a large buffer rather than keep it for good
        if (buf.capacity() > 1024 * 1024) {
            std::string().swap(buf);
        }
    }
    c->writer_done = true;
}

} // namespace pusher::broker
