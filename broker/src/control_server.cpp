#include "control_server.hpp"

#include "cluster.hpp"
#include "metrics.hpp"

#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.hpp"
#include "log.hpp"
#include "pusher_ctl.h"
#include "pusher_proto.h"
#include "pusher_ring.h"

namespace pusher::broker {

namespace {

// a worker that does not read its control socket is dropped, not buffered
// for; replies carry presence lists, so the bound is in bytes
constexpr std::size_t max_queued_bytes = 16 * 1024 * 1024;

// how often waiting subscription_counts are looked at; each channel gets
// at most one per occupancy_table::min_interval
constexpr std::chrono::milliseconds count_tick{250};

// user ids (pusher:signin user_data.id) and the watchlist of a signin
constexpr std::size_t max_user_id = 200;
constexpr std::size_t max_watchlist = 100;

const std::array<std::uint8_t, PUSHER_CTL_HEADER_SIZE> &doorbell_message()
{
    static const auto bytes = [] {
        std::array<std::uint8_t, PUSHER_CTL_HEADER_SIZE> b{};
        pusher_ctl_header_write(b.data(), PUSHER_CTL_DOORBELL, 0);
        return b;
    }();
    return bytes;
}

std::string frame(std::uint16_t type, std::string_view payload)
{
    std::string out(PUSHER_CTL_HEADER_SIZE + payload.size(), '\0');
    pusher_ctl_header_write(reinterpret_cast<std::uint8_t *>(out.data()), type,
                            static_cast<std::uint32_t>(payload.size()));
    out.replace(PUSHER_CTL_HEADER_SIZE, payload.size(), payload);
    return out;
}

// Splits an uplink payload into its first N fields (pusher_ctl.h); fields
// after them are left for later protocol versions.  False if the payload
// ends inside a field or has fewer than N.
template <std::size_t N>
bool split_fields(std::string_view payload,
                  std::array<std::string_view, N> &out)
{
    const auto *pos = reinterpret_cast<const std::uint8_t *>(payload.data());
    const auto *end = pos + payload.size();
    for (std::string_view &field : out) {
        const std::uint8_t *data = nullptr;
        std::uint32_t len = 0;
        if (pusher_ctl_get(&pos, end, &data, &len) != 0) {
            return false;
        }
        field = std::string_view(reinterpret_cast<const char *>(data), len);
    }
    return true;
}

bool valid_channel(std::string_view c)
{
    return pusher_channel_name_valid(c.data(), c.size()) != 0;
}

bool valid_socket_id(std::string_view s)
{
    return pusher_socket_id_valid(s.data(), s.size()) != 0;
}

bool presence_channel(std::string_view c)
{
    pusher_channel_type_e t = pusher_channel_type(c.data(), c.size());
    return t == PUSHER_CHANNEL_PRESENCE || t == PUSHER_CHANNEL_PRESENCE_CACHE;
}

// max_members: decimal digits, 0 for no limit
bool parse_count(std::string_view s, std::uint64_t &out)
{
    if (s.empty() || s.size() > 18) {
        return false;
    }
    std::uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') {
            return false;
        }
        v = v * 10 + static_cast<std::uint64_t>(c - '0');
    }
    out = v;
    return true;
}

// The user key of a user_id JSON text: a string's value or a number's
// text, so that "1" and 1 are one user (ids compare as strings, as in
// Reverb).  False for anything else.
bool user_key_of(std::string_view user_id, std::string &key)
{
    json::value v = json::parse(user_id);
    if (cJSON_IsString(v.get())) {
        key.assign(v->valuestring);
        return true;
    }
    if (cJSON_IsNumber(v.get())) {
        std::size_t b = user_id.find_first_not_of(" \t\r\n");
        std::size_t e = user_id.find_last_not_of(" \t\r\n");
        key.assign(user_id.substr(b, e - b + 1));
        return true;
    }
    return false;
}

bool valid_user_id(std::string_view u)
{
    return !u.empty() && u.size() <= max_user_id;
}

// A watchlist: empty, or a JSON array of user ids of which the first
// max_watchlist count (the rest is ignored).  Entries that cannot be user
// ids (not strings, empty, too long) are skipped: nginx passes the array
// of user_data as it is, and a stray number must not keep the user from
// being online.  False if it is not an array.
bool parse_watchlist(std::string_view text, std::vector<std::string> &out)
{
    out.clear();
    if (text.empty()) {
        return true;
    }
    json::value v = json::parse(text);
    if (!cJSON_IsArray(v.get())) {
        return false;
    }
    std::size_t n = 0;
    const cJSON *item = nullptr;
    cJSON_ArrayForEach(item, v.get()) {
        if (n++ == max_watchlist) {
            break;
        }
        if (!cJSON_IsString(item)) {
            continue;
        }
        std::string_view id = json::string_of(item);
        if (valid_user_id(id)) {
            out.emplace_back(id);
        }
    }
    return true;
}

} // namespace

struct control_server::worker {
    explicit worker(unix_stream::socket s) : socket(std::move(s)) {}

    unix_stream::socket socket;
    std::uint64_t id = 0;           // presence memberships are keyed by it
    std::int64_t pid = 0;
    int slot = -1;
    std::uint64_t ignored = 0;      // uplink messages ignored
    std::deque<std::string> queue;  // framed messages, front being written
    std::size_t queued_bytes = 0;
    bool writing = false;
    bool writing_doorbell = false;
    bool doorbell = false;          // a doorbell waits to be written
    bool announced = false;         // ANNOUNCED received
    std::uint64_t received = 0;     // uplink bytes read from the socket
    std::uint64_t handled = 0;      // of them, in messages handled
    bool closed = false;            // its connection ended
    bool hello_timed_out = false;   // closed for want of a HELLO

    void close() noexcept
    {
        boost::system::error_code ignored;
        socket.close(ignored);
    }
};

control_server::control_server(net::io_context &ioc, const std::string &path,
                               mode_t mode, segment &seg, app_registry &apps,
                               webhook_sender &hooks)
    : ioc_(ioc), seg_(seg), apps_(apps), hooks_(hooks), file_(path),
      apps_path_(path + ".apps"), acceptor_(ioc),
      count_timer_(ioc), held_timer_(ioc),
      started_(std::chrono::steady_clock::now()), restore_timer_(ioc)
{
    unix_stream::endpoint ep(path);
    acceptor_.open(ep.protocol());
    acceptor_.bind(ep);
    file_.listening(mode);
    acceptor_.listen(net::socket_base::max_listen_connections);
}

control_server::~control_server() = default;

void control_server::start()
{
    started_ = std::chrono::steady_clock::now();
    arm_restore_timer(std::chrono::milliseconds(PUSHER_CTL_RESTORE_MIN));
    net::co_spawn(ioc_, accept_loop(), net::detached);
}

void control_server::stop()
{
    boost::system::error_code ignored;
    stopped_ = true;
    count_timer_.cancel();
    restore_timer_.cancel();
    held_timer_.cancel();
    acceptor_.close(ignored);
    for (auto &w : slots_) {
        if (w) {
            w->close();
        }
    }
}

net::awaitable<void> control_server::accept_loop()
{
    for (;;) {
        boost::system::error_code ec;
        unix_stream::socket s = co_await acceptor_.async_accept(
            net::redirect_error(net::use_awaitable, ec));
        if (ec == net::error::operation_aborted || !acceptor_.is_open()) {
            co_return;
        }
        if (ec) {
            // EMFILE and friends: keep accepting once descriptors free up
            log_line("control accept: " + ec.message());
            net::steady_timer pause(ioc_, accept_error_pause);
            co_await pause.async_wait(
                net::redirect_error(net::use_awaitable, ec));
            continue;
        }
        // a bounded number of connections, however many a local process
        // opens: every worker has one, the rest wait for their HELLO
        if (connections_ >= max_connections) {
            std::uint64_t n = ++refused_connections_;
            if ((n & (n - 1)) == 0) {
                log_line("control socket: " + std::to_string(n)
                         + " connection(s) refused, "
                         + std::to_string(max_connections) + " are open");
            }
            s.close(ec);
            continue;
        }
        connections_++;
        auto w = std::make_shared<worker>(std::move(s));
        w->id = next_conn_++;
        net::co_spawn(ioc_, run_worker(std::move(w)), net::detached);
    }
}

net::awaitable<void> control_server::run_worker(worker_ptr w)
{
    std::array<std::uint8_t, PUSHER_CTL_HEADER_SIZE> head;
    std::string payload;
    std::string why;

    // a worker says HELLO as soon as it connects: a connection that has
    // not been welcomed within hello_timeout is closed
    auto deadline = std::make_shared<net::steady_timer>(ioc_, hello_timeout);
    deadline->async_wait([w, deadline](boost::system::error_code ec) {
        if (!ec && w->slot < 0 && !w->closed) {
            w->hello_timed_out = true;
            w->close();
        }
    });

    for (;;) {
        boost::system::error_code ec;
        co_await net::async_read(w->socket, net::buffer(head),
                                 net::redirect_error(net::use_awaitable, ec));
        if (ec) {
            break;
        }

        w->received += head.size();

        pusher_ctl_header_t h;
        pusher_ctl_header_read(head.data(), &h);
        if (h.length > PUSHER_CTL_MAX_PAYLOAD) {
            why = "message of " + std::to_string(h.length) + " bytes";
            break;
        }

        payload.resize(h.length);
        co_await net::async_read(w->socket, net::buffer(payload),
                                 net::redirect_error(net::use_awaitable, ec));
        if (ec) {
            break;
        }
        w->received += h.length;

        if (h.type == PUSHER_CTL_HELLO && !on_hello(w, payload, why)) {
            // the worker logs why, then the connection ends (at most 1 s
            // later if it does not read)
            send(w, frame(PUSHER_CTL_REFUSED, why));
            auto since = std::chrono::steady_clock::now();
            while ((w->writing || !w->queue.empty()) && w->socket.is_open()
                   && std::chrono::steady_clock::now() - since
                          < std::chrono::seconds(1))
            {
                net::steady_timer t(ioc_, std::chrono::milliseconds(1));
                co_await t.async_wait(
                    net::redirect_error(net::use_awaitable, ec));
            }
            break;
        }

        // what the message writes must not lap a worker that keeps up: wait
        // (the uplink backs up in the worker) until the workers have read
        // enough, or one that stopped is overtaken (ring_flow's stall)
        if (h.type >= PUSHER_CTL_CLIENT_EVENT) {
            while (!stopped_ && !uplink_room()) {
                net::steady_timer t(ioc_, std::chrono::milliseconds(1));
                co_await t.async_wait(
                    net::redirect_error(net::use_awaitable, ec));
            }
        }

        switch (h.type) {
        case PUSHER_CTL_CLIENT_EVENT:
            on_client_event(w, payload);
            break;
        case PUSHER_CTL_PRESENCE_JOIN:
            on_presence_join(w, payload);
            break;
        case PUSHER_CTL_PRESENCE_LEAVE:
            on_presence_leave(w, payload);
            break;
        case PUSHER_CTL_CACHE_GET:
            on_cache_get(w, payload);
            break;
        case PUSHER_CTL_OCCUPANCY:
            on_occupancy(w, payload);
            break;
        case PUSHER_CTL_USER_ONLINE:
            on_user_online(w, payload);
            break;
        case PUSHER_CTL_USER_OFFLINE:
            on_user_offline(w, payload);
            break;
        case PUSHER_CTL_GONE:
            on_gone(w, payload);
            break;
        case PUSHER_CTL_ANNOUNCED:
            on_announced(w);
            break;
        case PUSHER_CTL_METRICS:
            on_metrics(w, payload);
            break;
        default:
            // other types are for later protocol versions: ignored
            break;
        }
        w->handled = w->received;
    }

    w->closed = true;
    deadline->cancel();
    connections_--;
    if (w->hello_timed_out) {
        // logged at the 1st, 2nd, 4th ... time: a flood does not fill the log
        std::uint64_t n = ++hello_timeouts_;
        if ((n & (n - 1)) == 0) {
            log_line("control socket: " + std::to_string(n)
                     + " connection(s) closed without a HELLO within "
                     + std::to_string(hello_timeout.count()) + " s");
        }
    }

    // the worker's presence memberships end with its connection
    removed_.clear();
    presence_.drop(w->id, removed_);
    publish_members(removed_, false, {});
    // and so do its signed-in sockets and its subscriber counts
    notices_.clear();
    users_.drop(w->id, notices_);
    publish_notices(notices_);
    count_changed_.clear();
    vacated_.clear();
    occupancy_.drop(w->id, count_changed_, vacated_);
    for (const auto &c : count_changed_) {
        count_changed(c.app_id, c.channel);
    }
    for (const auto &c : vacated_) {
        hooks_.channel_vacated(c.app_id, c.channel);
    }
    if (w->ignored > 1) {
        log_line("nginx worker pid " + std::to_string(w->pid) + ": "
                 + std::to_string(w->ignored)
                 + " uplink message(s) ignored in all");
    }

    if (!why.empty() || w->slot >= 0) {
        std::string line = "nginx worker";
        if (w->pid != 0) {
            line += " pid " + std::to_string(w->pid);
        }
        line += why.empty() ? " detached" : " dropped: " + why;
        log_line(line);
    }
    release_slot(*w);
    w->close();
    check_restored();
}

bool control_server::load_apps(std::string &why)
{
    auto no_table = [&](const std::string &reason) {
        why = "no app table from the nginx master: " + apps_path_ + ": "
              + reason;
        return false;
    };
    int fd = ::open(apps_path_.c_str(),
                    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        return no_table(std::strerror(errno));
    }
    std::unique_ptr<int, void (*)(int *)> closer(&fd, [](int *f) {
        ::close(*f);
    });

    // written by the master as it loaded nginx.conf: by no one else
    struct stat st;
    if (fstat(fd, &st) != 0) {
        return no_table(std::strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) {
        return no_table("not a regular file");
    }
    if (st.st_uid != config_owner_) {
        return no_table("owned by uid " + std::to_string(st.st_uid)
                        + ", not by the nginx master's user (uid "
                        + std::to_string(config_owner_)
                        + ", --config-owner)");
    }
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
        return no_table("writable by others than its owner");
    }
    if (st.st_size > static_cast<off_t>(PUSHER_CTL_MAX_PAYLOAD)) {
        return no_table("larger than " + std::to_string(PUSHER_CTL_MAX_PAYLOAD)
                        + " bytes");
    }

    std::string text(static_cast<std::size_t>(st.st_size), '\0');
    std::size_t got = 0;
    while (got < text.size()) {
        ssize_t n = ::read(fd, text.data() + got, text.size() - got);
        if (n <= 0) {
            return no_table(n < 0 ? std::strerror(errno)
                                  : "shorter than it was");
        }
        got += static_cast<std::size_t>(n);
    }

    // the codec shared with the module (pusher_ctl.h) checks the shape,
    // the app table what it accepts: the rules nginx -t applied
    pusher_ctl_hello_t conf;
    int rc = pusher_ctl_hello_decode(&conf, text.data(), text.size());
    std::unique_ptr<pusher_ctl_hello_t, void (*)(pusher_ctl_hello_t *)> owned(
        &conf, pusher_ctl_hello_free);
    if (rc != 0) {
        why = "bad app table in " + apps_path_ + ": " + conf.error;
        return false;
    }
    try {
        bool debug = conf.debug != 0;
        if (cluster_ != nullptr) {
            std::optional<cluster_config> c;
            if (conf.cluster_url.len != 0) {
                c = cluster_config{
                    std::string(conf.cluster_url.data, conf.cluster_url.len),
                    std::string(conf.cluster_prefix.data,
                                conf.cluster_prefix.len),
                    std::string(conf.cluster_node.data,
                                conf.cluster_node.len)};
            }
            cluster_->configure(c);
        }
        if (apps_.update(conf.conf_time, conf.apps, conf.napps)
            || debug != debug_enabled)
        {
            // endpoints that did not change keep their queues
            hooks_.configure();
            debug_enabled = debug;
            log_line("app table from the nginx master (" + apps_path_
                     + "): " + std::to_string(apps_.size())
                     + " app(s), conf_time " + std::to_string(conf.conf_time)
                     + (debug ? ", pusher_debug on" : ""));
        }
    } catch (const std::invalid_argument &e) {
        why = "bad app table in " + apps_path_ + ": " + e.what();
        return false;
    }
    return true;
}

bool control_server::on_hello(const worker_ptr &w, std::string_view payload,
                              std::string &why)
{
    // a worker names the configuration it serves; the apps of it are read
    // from the master's file, never taken from a HELLO
    pusher_ctl_hello_t hello;
    int rc = pusher_ctl_hello_decode(&hello, payload.data(), payload.size());
    std::unique_ptr<pusher_ctl_hello_t, void (*)(pusher_ctl_hello_t *)> owned(
        &hello, pusher_ctl_hello_free);
    if (rc != 0) {
        w->pid = hello.pid;
        why = std::string("bad HELLO: ") + hello.error;
        return false;
    }

    w->pid = hello.pid;
    if (!apps_.known() || hello.conf_time != apps_.conf_time()) {
        // refused, loudly: the table of the others stays
        if (!load_apps(why)) {
            return false;
        }
        if (hello.conf_time != apps_.conf_time()) {
            // a worker of an older cycle, still draining after a reload
            log_line("nginx worker pid " + std::to_string(hello.pid)
                     + " serves conf_time " + std::to_string(hello.conf_time)
                     + ", the master's table is of conf_time "
                     + std::to_string(apps_.conf_time()));
        }
    }

    if (w->slot < 0) {
        if (!assign_slot(w)) {
            why = "all " + std::to_string(PUSHER_SHM_WAKE_SLOTS)
                  + " wake slots are taken";
            return false;
        }
        log_line("nginx worker pid " + std::to_string(w->pid)
                 + " attached, wake slot " + std::to_string(w->slot));
    }

    pusher_ctl_welcome_t welcome{};
    welcome.shm.data = seg_.name().data();
    welcome.shm.len = seg_.name().size();
    welcome.generation = seg_.generation();
    welcome.slot = static_cast<std::uint32_t>(w->slot);
    welcome.size = seg_.size();
    std::size_t len = 0;
    std::unique_ptr<char, void (*)(char *)> text(
        pusher_ctl_welcome_encode(&welcome, &len), pusher_ctl_text_free);
    if (!text) {
        throw std::bad_alloc();
    }
    send(w, frame(PUSHER_CTL_WELCOME, std::string_view(text.get(), len)));
    return true;
}

bool control_server::assign_slot(const worker_ptr &w)
{
    for (std::uint32_t k = 0; k < PUSHER_SHM_WAKE_SLOTS; k++) {
        if (slots_[k]) {
            continue;
        }
        pusher_shm_wake_t *wake = seg_.wake(k);
        // a slot left armed by its previous owner must not ring for the new
        // one; the worker arms it only after it has mapped the segment
        pusher_store_release_u32(&wake->pid,
                                 static_cast<std::uint32_t>(w->pid));
        pusher_store_release_u32(&wake->armed, 0);
        slots_[k] = w;
        w->slot = static_cast<int>(k);
        attached_++;
        return true;
    }
    return false;
}

// PUSHER_CTL_METRICS: request id; answered with the id and the text
void control_server::on_metrics(const worker_ptr &w, std::string_view payload)
{
    std::array<std::string_view, 1> f;
    if (!uplink_fields(*w, "METRICS", payload, f)) {
        return;
    }
    std::string text = render_metrics();
    std::string body;
    body.reserve(2 * sizeof(std::uint32_t) + f[0].size() + text.size());
    for (std::string_view field : {f[0], std::string_view(text)}) {
        auto n = static_cast<std::uint32_t>(field.size());
        body.append(reinterpret_cast<const char *>(&n), sizeof(n));
        body.append(field);
    }
    if (body.size() > PUSHER_CTL_MAX_PAYLOAD) {
        log_line("metrics larger than a control message: not sent");
        return;
    }
    send(w, frame(PUSHER_CTL_METRICS_TEXT, body));
}

std::string control_server::render_metrics() const
{
    std::string out;

    prom::family(out, "pusher_broker_workers_attached", "gauge",
                 "nginx workers attached to pusher-broker (old workers "
                 "still serving after a reload included)");
    out += "pusher_broker_workers_attached " + std::to_string(attached_)
           + '\n';

    const pusher_ring_t &ring = seg_.ring();
    std::uint64_t tail = pusher_load_acquire_u64(&ring.desc->tail);

    prom::family(out, "pusher_ring_written_bytes_total", "counter",
                 "Bytes pusher-broker wrote into the ring (padding "
                 "included) since it started");
    out += "pusher_ring_written_bytes_total " + std::to_string(tail) + '\n';
    prom::family(out, "pusher_ring_records_total", "counter",
                 "Records pusher-broker wrote into the ring since it "
                 "started");
    out += "pusher_ring_records_total "
           + std::to_string(pusher_load_acquire_u64(&ring.desc->records))
           + '\n';
    prom::family(out, "pusher_ring_capacity_bytes", "gauge",
                 "Size of the ring");
    out += "pusher_ring_capacity_bytes " + std::to_string(ring.capacity)
           + '\n';

    prom::family(out, "pusher_ring_lag_bytes", "gauge",
                 "Bytes of the ring an attached nginx worker has yet to "
                 "read");
    for (std::uint32_t k = 0; k < PUSHER_SHM_WAKE_SLOTS; k++) {
        if (!slots_[k]) {
            continue;
        }
        const pusher_shm_wake_t *wake = seg_.wake(k);
        std::uint64_t cursor = pusher_load_acquire_u64(&wake->cursor);
        out += "pusher_ring_lag_bytes{pid=\"" + std::to_string(slots_[k]->pid)
               + "\"} " + std::to_string(tail > cursor ? tail - cursor : 0)
               + '\n';
    }

    prom::family(out, "pusher_channels", "gauge",
                 "Channels with at least one subscriber on any worker");
    apps_.for_each([&](const app &a) {
        std::uint64_t n = 0;
        occupancy_.for_each_channel(a.id,
            [&](std::string_view, std::uint64_t) { n++; });
        out += "pusher_channels{app_id=\"";
        prom::label(out, a.id);
        out += "\"} " + std::to_string(n) + '\n';
    });

    if (metrics_) {
        metrics_(out);
    }
    return out;
}

void control_server::release_slot(worker &w)
{
    if (w.slot < 0) {
        return;
    }
    auto k = static_cast<std::uint32_t>(w.slot);
    pusher_shm_wake_t *wake = seg_.wake(k);
    pusher_store_release_u32(&wake->armed, 0);
    pusher_store_release_u32(&wake->pid, 0);
    slots_[k].reset();
    w.slot = -1;
    attached_--;
}

void control_server::flush_doorbells()
{
    flush_posted_ = false;
    for (std::uint32_t k = 0; k < PUSHER_SHM_WAKE_SLOTS; k++) {
        const worker_ptr &w = slots_[k];
        // pusher_ring_take_wake is the broker half of the Dekker pair with
        // pusher_ring_arm: the tail stored by pusher_ring_commit precedes it
        if (w && pusher_ring_take_wake(seg_.wake(k)) == 1) {
            w->doorbell = true;
            pump(w);
        }
    }
}

void control_server::send(const worker_ptr &w, std::string message)
{
    if (!w->socket.is_open()) {
        return;
    }
    if (w->queued_bytes + message.size() > max_queued_bytes) {
        log_line("nginx worker pid " + std::to_string(w->pid)
                 + " dropped: it does not read its control socket");
        w->close();
        return;
    }
    w->queued_bytes += message.size();
    w->queue.push_back(std::move(message));
    pump(w);
}

// Starts the next write unless one is in flight.  Messages go before a
// doorbell; a doorbell not yet handed to the socket is never queued twice.
void control_server::pump(const worker_ptr &w)
{
    if (w->writing || !w->socket.is_open()) {
        return;
    }

    net::const_buffer buf;
    if (!w->queue.empty()) {
        buf = net::buffer(w->queue.front());
        w->writing_doorbell = false;
    } else if (w->doorbell) {
        buf = net::buffer(doorbell_message());
        w->doorbell = false;
        w->writing_doorbell = true;
    } else {
        return;
    }

    w->writing = true;
    net::async_write(w->socket, buf,
        [this, w](boost::system::error_code ec, std::size_t) {
            w->writing = false;
            if (ec) {
                // the read loop sees the closed socket and frees the slot
                w->close();
                return;
            }
            if (!w->writing_doorbell) {
                w->queued_bytes -= w->queue.front().size();
                w->queue.pop_front();
            }
            pump(w);
        });
}

template <std::size_t N>
bool control_server::uplink_fields(worker &w, std::string_view type,
                                   std::string_view payload,
                                   std::array<std::string_view, N> &f)
{
    if (w.slot < 0) {
        ignore(w, type, "before HELLO");
        return false;
    }
    if (!split_fields(payload, f)) {
        ignore(w, type, "malformed payload");
        return false;
    }
    return true;
}

void control_server::ignore(worker &w, std::string_view type,
                            std::string_view why)
{
    // logged at the 1st, 2nd, 4th, 8th, ... per connection, never the
    // data; the total goes to the log when the worker detaches
    std::uint64_t n = ++w.ignored;
    if ((n & (n - 1)) == 0) {
        log_line("nginx worker pid " + std::to_string(w.pid) + ": "
                 + std::string(type) + " ignored: " + std::string(why)
                 + (n > 1 ? " (" + std::to_string(n) + " so far)" : ""));
    }
}

bool control_server::publish(std::string_view app_id, std::string_view channel,
                             std::string_view socket_id, std::string_view json)
{
    if (!seg_.publish_json(app_id, channel, socket_id, json)) {
        log_line("a record of " + std::to_string(json.size())
                 + " bytes does not fit the ring: dropped");
        return false;
    }
    notify_published();
    return true;
}

void control_server::publish_members(
    const std::vector<presence_table::member_event> &events, bool added,
    std::string_view socket_id)
{
    for (const auto &ev : events) {
        std::string json = added
            ? member_added_json(ev.channel, ev.user_id, ev.user_info)
            : member_removed_json(ev.channel, ev.user_id);
        publish(ev.app_id, ev.channel, socket_id, json);
    }
    // after the ring: webhooks never delay subscribers
    for (const auto &ev : events) {
        if (added) {
            hooks_.member_added(ev.app_id, ev.channel, ev.user_key);
        } else {
            hooks_.member_removed(ev.app_id, ev.channel, ev.user_key);
        }
    }
}

// app_id, channel, socket_id, json
void control_server::on_client_event(const worker_ptr &w,
                                     std::string_view payload)
{
    constexpr std::string_view type = "CLIENT_EVENT";
    std::array<std::string_view, 4> f;
    if (!uplink_fields(*w, type, payload, f)) {
        return;
    }
    auto [app_id, channel, socket_id, json] = f;
    if (apps_.find(app_id) == nullptr) {
        ignore(*w, type, "unknown app");
        return;
    }
    if (!valid_channel(channel) || !valid_socket_id(socket_id)
        || json.empty())
    {
        ignore(*w, type, "bad channel, socket_id or json");
        return;
    }
    if (publish(app_id, channel, socket_id, json) && cluster_ != nullptr) {
        // members on the other hosts get it too
        cluster_->published(PUSHER_RING_EVENT, seg_.last_record());
    }
    hooks_.client_event(app_id, channel, socket_id, json);
}

// app_id, channel, socket_id -> CACHE socket_id, channel, json (empty: miss)
void control_server::on_cache_get(const worker_ptr &w,
                                  std::string_view payload)
{
    constexpr std::string_view type = "CACHE_GET";
    std::array<std::string_view, 3> f;
    if (!uplink_fields(*w, type, payload, f)) {
        return;
    }
    auto [app_id, channel, socket_id] = f;
    if (!valid_channel(channel) || !valid_socket_id(socket_id)) {
        ignore(*w, type, "bad channel or socket_id");
        return;
    }
    // down the ring: the subscription starts exactly at this answer
    std::string_view cached = cache_.get(app_id, channel);
    if (!seg_.publish_fields(PUSHER_RING_CACHE, {socket_id, channel, cached}))
    {
        seg_.publish_fields(PUSHER_RING_CACHE, {socket_id, channel, {}});
    }
    notify_published();
    if (cached.empty()) {
        hooks_.cache_miss(app_id, channel);
    }
}

// app_id, channel, socket_id, user_id, user_info, max_members, flags
void control_server::on_presence_join(const worker_ptr &w,
                                      std::string_view payload)
{
    constexpr std::string_view type = "PRESENCE_JOIN";
    std::array<std::string_view, 7> f;
    if (!uplink_fields(*w, type, payload, f)) {
        return;
    }
    auto [app_id, channel, socket_id, user_id, user_info, max_members,
          flags] = f;
    if (apps_.find(app_id) == nullptr) {
        ignore(*w, type, "unknown app");
        return;
    }

    presence_table::join_request req;
    std::string key;
    if (!valid_channel(channel) || !presence_channel(channel)
        || !valid_socket_id(socket_id)
        || !parse_count(max_members, req.max_members)
        || (!flags.empty() && flags != "r"))
    {
        ignore(*w, type, "bad channel, socket_id, max_members or flags");
        return;
    }
    if (!user_key_of(user_id, key)) {
        ignore(*w, type, "user_id is not a JSON string or number");
        return;
    }
    if (!user_info.empty() && !json::parse(user_info)) {
        ignore(*w, type, "user_info is not JSON");
        return;
    }

    req.app_id = app_id;
    req.channel = channel;
    req.socket_id = socket_id;
    req.user_key = key;
    req.user_id = user_id;
    req.user_info = user_info;
    req.rejoin = flags == "r";
    req.conn = w->id;

    if ((restoring_ || (!held_joins_.empty() && !answering_held_))
        && !req.rejoin)
    {
        // answered once the members of every worker are back
        std::string hkey = app_channel_key(app_id, channel);
        hkey += '\0';
        hkey += socket_id;
        held_joins_.push_back(held_join{w, std::string(payload), hkey});
        return;
    }

    removed_.clear();
    added_.clear();
    presence_table::join_status st = presence_.join(req, removed_, added_);
    // a socket that changed user: its old user may have gone
    publish_members(removed_, false, socket_id);
    if (!restoring_) {
        // while restoring, a re-joined member is no news to anyone
        publish_members(added_, true, socket_id);
    }

    if (req.rejoin) {
        return;
    }
    if (st == presence_table::join_status::limit) {
        seg_.publish_fields(PUSHER_RING_PRESENCE_JOINED,
                            {socket_id, channel, "limit", {}, {}});
        notify_published();
        return;
    }

    // down the ring: the member's subscription starts exactly here, after
    // the member events the list already reflects
    std::string json = presence_.subscription_succeeded(app_id, channel);
    std::string_view cached;
    if (pusher_channel_type(channel.data(), channel.size())
        == PUSHER_CHANNEL_PRESENCE_CACHE)
    {
        cached = cache_.get(app_id, channel);
    }
    if (!seg_.publish_fields(PUSHER_RING_PRESENCE_JOINED,
                             {socket_id, channel, "ok", json, cached}))
    {
        // does not fit a ring record: the socket stays out of the channel
        removed_.clear();
        presence_.leave(app_id, channel, socket_id, removed_);
        publish_members(removed_, false, socket_id);
        ignore(*w, type, "member list too large for a reply");
        seg_.publish_fields(PUSHER_RING_PRESENCE_JOINED,
                            {socket_id, channel, "limit", {}, {}});
    } else if (cached.empty()
               && pusher_channel_type(channel.data(), channel.size())
                      == PUSHER_CHANNEL_PRESENCE_CACHE)
    {
        hooks_.cache_miss(app_id, channel);
    }
    notify_published();
}

// app_id, channel, socket_id
void control_server::on_presence_leave(const worker_ptr &w,
                                       std::string_view payload)
{
    constexpr std::string_view type = "PRESENCE_LEAVE";
    std::array<std::string_view, 3> f;
    if (!split_fields(payload, f)) {
        ignore(*w, type, "malformed payload");
        return;
    }
    auto [app_id, channel, socket_id] = f;
    if (!held_joins_.empty()) {
        std::string hkey = app_channel_key(app_id, channel);
        hkey += '\0';
        hkey += socket_id;
        std::erase_if(held_joins_,
                      [&](const held_join &h) { return h.key == hkey; });
    }
    // no app check: a membership of an app that a reload removed still
    // ends; unknown memberships are ignored by the table
    removed_.clear();
    presence_.leave(app_id, channel, socket_id, removed_);
    publish_members(removed_, false, {});
}

void control_server::count_changed(std::string_view app_id,
                                   std::string_view channel)
{
    const app *a = apps_.find(app_id);
    if (a == nullptr || !a->subscription_count || presence_channel(channel)) {
        return;
    }
    std::optional<std::uint64_t> n = occupancy_.changed(
        app_id, channel, occupancy_table::clock::now());
    if (n) {
        publish(app_id, channel, {}, subscription_count_json(channel, *n));
    } else if (occupancy_.waiting()) {
        arm_count_timer();
    }
}

void control_server::arm_count_timer()
{
    if (count_timer_armed_ || stopped_) {
        return;
    }
    count_timer_armed_ = true;
    count_timer_.expires_after(count_tick);
    count_timer_.async_wait([this](boost::system::error_code ec) {
        count_timer_armed_ = false;
        if (!ec) {
            on_count_timer();
        }
    });
}

void control_server::on_count_timer()
{
    counts_due_.clear();
    occupancy_.take_due(occupancy_table::clock::now(), counts_due_);
    for (const auto &d : counts_due_) {
        // the app may have lost subscription_count in a reload meanwhile
        const app *a = apps_.find(d.app_id);
        if (a != nullptr && a->subscription_count) {
            publish(d.app_id, d.channel, {},
                    subscription_count_json(d.channel, d.total));
        }
    }
    if (occupancy_.waiting()) {
        arm_count_timer();
    }
}

void control_server::publish_notices(
    const std::vector<user_table::notice> &notices)
{
    for (const auto &n : notices) {
        std::string channel = server_to_user_channel(n.to);
        // nobody can subscribe to a channel with a bad name
        if (!valid_channel(channel)) {
            continue;
        }
        publish(n.app_id, channel, {},
                watchlist_events_json(n.to, n.online, n.user_ids));
    }
}

// app_id, channel, count
void control_server::on_occupancy(const worker_ptr &w,
                                  std::string_view payload)
{
    constexpr std::string_view type = "OCCUPANCY";
    std::array<std::string_view, 3> f;
    if (!uplink_fields(*w, type, payload, f)) {
        return;
    }
    auto [app_id, channel, count_text] = f;
    // flags, a 4th field since the restore: "r" for a count a broker had
    std::array<std::string_view, 4> f4;
    bool restored = split_fields(payload, f4) && f4[3] == "r";
    std::uint64_t count = 0;
    if (!valid_channel(channel) || !parse_count(count_text, count)
        || count > UINT32_MAX)
    {
        ignore(*w, type, "bad channel or count");
        return;
    }
    // a count of an app that a reload removed may still go to 0
    if (count != 0 && apps_.find(app_id) == nullptr) {
        ignore(*w, type, "unknown app");
        return;
    }
    // channel_occupied / channel_vacated: the total went from 0 or to 0
    const app *a = apps_.find(app_id);
    bool hooked = a != nullptr
                  && (a->webhook_events
                      & (webhook_channel_occupied | webhook_channel_vacated));
    bool was_occupied = hooked && occupancy_.total(app_id, channel) != 0;
    if (occupancy_.set(w->id, app_id, channel, count)) {
        count_changed(app_id, channel);
    }
    if (restoring_) {
        // occupied and vacated are decided once all counts are back
        if (hooked) {
            std::string key = app_channel_key(app_id, channel);
            auto it = restoring_channels_.find(key);
            if (it == restoring_channels_.end()) {
                it = restoring_channels_
                         .emplace(std::move(key),
                                  restoring_channel{std::string(app_id),
                                                    std::string(channel)})
                         .first;
            }
            it->second.restored = it->second.restored || restored;
        }
        return;
    }
    bool occupied = hooked && occupancy_.total(app_id, channel) != 0;
    if (occupied != was_occupied) {
        if (occupied) {
            hooks_.channel_occupied(app_id, channel);
        } else {
            hooks_.channel_vacated(app_id, channel);
        }
    }
}

// app_id, user_id, socket_id, watchlist
void control_server::on_user_online(const worker_ptr &w,
                                    std::string_view payload)
{
    constexpr std::string_view type = "USER_ONLINE";
    std::array<std::string_view, 4> f;
    if (!uplink_fields(*w, type, payload, f)) {
        return;
    }
    auto [app_id, user_id, socket_id, watchlist] = f;
    if (apps_.find(app_id) == nullptr) {
        ignore(*w, type, "unknown app");
        return;
    }
    if (!valid_user_id(user_id) || !valid_socket_id(socket_id)) {
        ignore(*w, type, "bad user_id or socket_id");
        return;
    }
    std::vector<std::string> list;
    if (!parse_watchlist(watchlist, list)) {
        ignore(*w, type, "watchlist is not a JSON array");
        return;
    }
    notices_.clear();
    users_.online(w->id, app_id, user_id, socket_id, list, notices_);
    publish_notices(notices_);
}

// app_id, user_id, socket_id
void control_server::on_user_offline(const worker_ptr &w,
                                     std::string_view payload)
{
    constexpr std::string_view type = "USER_OFFLINE";
    std::array<std::string_view, 3> f;
    if (!split_fields(payload, f)) {
        ignore(*w, type, "malformed payload");
        return;
    }
    auto [app_id, user_id, socket_id] = f;
    // no app check, as for PRESENCE_LEAVE; unknown sockets are ignored
    notices_.clear();
    users_.offline(app_id, user_id, socket_id, notices_);
    publish_notices(notices_);
}

// app_id, channel, user_id (empty: the channel's last subscriber)
void control_server::on_gone(const worker_ptr &w, std::string_view payload)
{
    constexpr std::string_view type = "GONE";
    std::array<std::string_view, 3> f;
    if (!uplink_fields(*w, type, payload, f)) {
        return;
    }
    // a broker that did not restart has dropped what the worker's old
    // connection held, and told everyone then
    if (!restoring_) {
        return;
    }
    auto [app_id, channel, user_id] = f;
    if (!valid_channel(channel)) {
        ignore(*w, type, "bad channel");
        return;
    }
    std::string key = app_channel_key(app_id, channel);
    if (user_id.empty()) {
        const app *a = apps_.find(app_id);
        if (a == nullptr
            || !(a->webhook_events
                 & (webhook_channel_occupied | webhook_channel_vacated)))
        {
            return;
        }
        auto it = restoring_channels_.find(key);
        if (it == restoring_channels_.end()) {
            it = restoring_channels_
                     .emplace(std::move(key),
                              restoring_channel{std::string(app_id),
                                                std::string(channel)})
                     .first;
        }
        it->second.gone = true;
        return;
    }
    std::string user_key;
    if (!presence_channel(channel) || !user_key_of(user_id, user_key)) {
        ignore(*w, type, "not a presence channel, or a bad user_id");
        return;
    }
    key += '\0';
    key += user_key;
    if (gone_members_.find(key) == gone_members_.end()) {
        gone_members_.emplace(
            std::move(key),
            presence_table::member_event{std::string(app_id),
                                         std::string(channel),
                                         std::string(user_id), {},
                                         std::move(user_key)});
    }
}

void control_server::on_announced(const worker_ptr &w)
{
    w->announced = true;
    check_restored();
}

void control_server::arm_restore_timer(std::chrono::milliseconds after)
{
    restore_timer_.expires_after(after);
    restore_timer_.async_wait([this](boost::system::error_code ec) {
        if (!ec) {
            check_restored();
        }
    });
}

void control_server::check_restored()
{
    if (!restoring_ || stopped_) {
        return;
    }
    auto now = std::chrono::steady_clock::now();
    auto since = std::chrono::duration_cast<std::chrono::milliseconds>(
        now - started_);
    const std::chrono::milliseconds min(PUSHER_CTL_RESTORE_MIN);
    const std::chrono::milliseconds max(PUSHER_CTL_RESTORE_MAX);
    if (since >= max) {
        restored();
        return;
    }
    if (since >= min) {
        bool all = true;
        for (const auto &w : slots_) {
            if (w && !w->announced) {
                all = false;
                break;
            }
        }
        if (all) {
            restored();
            return;
        }
    }
    arm_restore_timer(since < min ? min - since : max - since);
}

// The state is back: what ended meanwhile everywhere goes out once, then
// the joins that waited are answered, with every member in their lists.
void control_server::restored()
{
    restoring_ = false;
    restore_timer_.cancel();
    auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - started_);

    removed_.clear();
    for (auto &[key, ev] : gone_members_) {
        if (!presence_.has_user(ev.app_id, ev.channel, ev.user_key)) {
            removed_.push_back(std::move(ev));
        }
    }
    gone_members_.clear();
    std::size_t members_gone = removed_.size();
    std::vector<presence_table::member_event> gone = std::move(removed_);
    removed_.clear();
    publish_members(gone, false, {});

    std::size_t occupied = 0, vacated = 0;
    for (const auto &[key, c] : restoring_channels_) {
        bool told = c.restored || c.gone;
        bool now_occupied = occupancy_.total(c.app_id, c.channel) != 0;
        if (told) {
            hooks_.restore_occupied(c.app_id, c.channel);
        }
        if (told && !now_occupied) {
            hooks_.channel_vacated(c.app_id, c.channel);
            vacated++;
        } else if (!told && now_occupied) {
            hooks_.channel_occupied(c.app_id, c.channel);
            occupied++;
        }
    }
    restoring_channels_.clear();

    log_line("restored the workers' state in " + std::to_string(took.count())
             + " ms: " + std::to_string(members_gone)
             + " member(s) gone meanwhile, "
             + std::to_string(vacated) + " channel(s) vacated and "
             + std::to_string(occupied) + " occupied meanwhile, "
             + std::to_string(held_joins_.size())
             + " presence join(s) to answer");
    answer_held();
}

control_server::uplink_mark control_server::uplink_now() const
{
    uplink_mark mark;
    for (const auto &w : slots_) {
        if (w == nullptr || w->closed) {
            continue;
        }
        // what the socket holds now (FIONREAD), and what was read of it
        // but waits for ring room (run_worker)
        boost::system::error_code ec;
        std::size_t unread = w->socket.available(ec);
        if (ec) {
            unread = 0;
        }
        if (w->received + unread > w->handled) {
            mark.push_back({w->id, w->received + unread});
        }
    }
    return mark;
}

bool control_server::uplink_handled(const uplink_mark &mark) const
{
    for (const auto &m : mark) {
        for (const auto &w : slots_) {
            if (w != nullptr && w->id == m.worker && !w->closed
                && w->handled < m.bytes)
            {
                return false;
            }
        }
    }
    return true;
}

bool control_server::uplink_room()
{
    if (flow_ == nullptr) {
        return true;
    }
    std::uint64_t end = flow_->end_after(flow_->tail(),
                                         seg_.ring().max_record
                                             - PUSHER_RING_RECORD_HEADER);
    return flow_->room(flow_->end_after(end, 4096));
}

void control_server::answer_held()
{
    // in arrival order; joins that come meanwhile queue behind them
    std::size_t done = 0;
    while (done < held_joins_.size() && !stopped_) {
        if (!uplink_room()) {
            held_joins_.erase(held_joins_.begin(),
                              held_joins_.begin()
                                  + static_cast<std::ptrdiff_t>(done));
            held_timer_.expires_after(std::chrono::milliseconds(1));
            held_timer_.async_wait([this](boost::system::error_code ec) {
                if (!ec) {
                    answer_held();
                }
            });
            return;
        }
        held_join h = std::move(held_joins_[done++]);
        if (!h.w->closed) {
            answering_held_ = true;
            on_presence_join(h.w, h.payload);
            answering_held_ = false;
        }
    }
    held_joins_.clear();
}

} // namespace pusher::broker
