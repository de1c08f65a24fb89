#include "control_server.hpp"

#include <cmath>
#include <stdexcept>

#include "json.hpp"
#include "log.hpp"
#include "pusher_ctl.h"
#include "pusher_ring.h"

namespace pusher::broker {

namespace {

// a worker that does not read its WELCOMEs is dropped, not buffered for
constexpr std::size_t max_queued_messages = 16;

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

std::int64_t json_integer(const cJSON *obj, const char *name)
{
    const cJSON *item = json::member(obj, name);
    if (!cJSON_IsNumber(item) || !std::isfinite(item->valuedouble)
        || item->valuedouble < 0 || item->valuedouble > 9.0e15)
    {
        throw std::invalid_argument(std::string("no integer \"") + name + "\"");
    }
    return static_cast<std::int64_t>(item->valuedouble);
}

} // namespace

struct control_server::worker {
    explicit worker(unix_stream::socket s) : socket(std::move(s)) {}

    unix_stream::socket socket;
    std::int64_t pid = 0;
    int slot = -1;
    std::deque<std::string> queue;  // framed messages, front being written
    bool writing = false;
    bool writing_doorbell = false;
    bool doorbell = false;          // a doorbell waits to be written

    void close() noexcept
    {
        boost::system::error_code ignored;
        socket.close(ignored);
    }
};

control_server::control_server(net::io_context &ioc, const std::string &path,
                               mode_t mode, segment &seg, app_registry &apps)
    : ioc_(ioc), seg_(seg), apps_(apps), file_(path), acceptor_(ioc)
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
    net::co_spawn(ioc_, accept_loop(), net::detached);
}

void control_server::stop()
{
    boost::system::error_code ignored;
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
        net::co_spawn(ioc_, run_worker(std::make_shared<worker>(std::move(s))),
                      net::detached);
    }
}

net::awaitable<void> control_server::run_worker(worker_ptr w)
{
    std::array<std::uint8_t, PUSHER_CTL_HEADER_SIZE> head;
    std::string payload;
    std::string why;

    for (;;) {
        boost::system::error_code ec;
        co_await net::async_read(w->socket, net::buffer(head),
                                 net::redirect_error(net::use_awaitable, ec));
        if (ec) {
            break;
        }

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

        if (h.type == PUSHER_CTL_HELLO) {
            if (!on_hello(w, payload)) {
                break;
            }
        }
        // other types are for later protocol versions: ignored
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
}

bool control_server::on_hello(const worker_ptr &w, std::string_view payload)
{
    json::value root = json::parse(payload);
    if (!cJSON_IsObject(root.get())) {
        log_line("nginx worker dropped: HELLO is not a JSON object");
        return false;
    }

    std::int64_t conf_time = 0;
    try {
        w->pid = json_integer(root.get(), "pid");
        conf_time = json_integer(root.get(), "conf_time");
        std::int64_t before = apps_.known() ? apps_.conf_time() : -1;
        if (apps_.update(conf_time, json::member(root.get(), "apps"))
            && conf_time != before)
        {
            log_line("app table from nginx worker pid "
                     + std::to_string(w->pid) + ": "
                     + std::to_string(apps_.size()) + " app(s), conf_time "
                     + std::to_string(conf_time));
        }
    } catch (const std::invalid_argument &e) {
        log_line("nginx worker pid " + std::to_string(w->pid)
                 + " dropped: bad HELLO: " + e.what());
        return false;
    }

    if (w->slot < 0) {
        if (!assign_slot(w)) {
            log_line("nginx worker pid " + std::to_string(w->pid)
                     + " dropped: all " + std::to_string(PUSHER_SHM_WAKE_SLOTS)
                     + " wake slots are taken");
            return false;
        }
        log_line("nginx worker pid " + std::to_string(w->pid)
                 + " attached, wake slot " + std::to_string(w->slot));
    }

    // generation is a string: cJSON numbers are doubles, 53-bit exact
    json::value welcome(cJSON_CreateObject());
    std::string generation = std::to_string(seg_.generation());
    if (!welcome
        || !cJSON_AddStringToObject(welcome.get(), "shm", seg_.name().c_str())
        || !cJSON_AddStringToObject(welcome.get(), "generation",
                                    generation.c_str())
        || !cJSON_AddNumberToObject(welcome.get(), "slot", w->slot)
        || !cJSON_AddNumberToObject(welcome.get(), "size",
                                    static_cast<double>(seg_.size())))
    {
        throw std::bad_alloc();
    }
    json::text text = json::print(welcome.get());
    if (!text) {
        throw std::bad_alloc();
    }
    send(w, frame(PUSHER_CTL_WELCOME, text.get()));
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
    if (w->queue.size() >= max_queued_messages) {
        log_line("nginx worker pid " + std::to_string(w->pid)
                 + " dropped: it does not read its control socket");
        w->close();
        return;
    }
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
                w->queue.pop_front();
            }
            pump(w);
        });
}

} // namespace pusher::broker
