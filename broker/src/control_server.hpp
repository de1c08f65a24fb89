#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "asio.hpp"
#include "app_registry.hpp"
#include "cache.hpp"
#include "occupancy.hpp"
#include "presence.hpp"
#include "ring_flow.hpp"
#include "segment.hpp"
#include "unix_socket_path.hpp"
#include "users.hpp"
#include "webhooks.hpp"

namespace pusher::broker {

class cluster;

// The unix socket every nginx worker keeps one connection to (protocol in
// pusher_ctl.h).  A HELLO gives the broker the worker's app table and gets
// the worker a wake slot and a WELCOME; EOF frees the slot.  After a
// publish the broker rings the doorbell of each worker whose slot was
// armed.  Writes are asynchronous and never block the broker.
//
// The uplink messages (client events, presence joins and leaves) are
// handled here too: the broker owns presence membership for the node and
// a worker's memberships end with its connection.  So do channel
// occupancy (OCCUPANCY counts, summed over workers, with the coalesced
// pusher_internal:subscription_count) and signed-in users (USER_ONLINE /
// USER_OFFLINE, with the watchlist_events of their watchers).  What of
// this an app has webhooks for goes to the webhook_sender as well.
class control_server {
public:
    control_server(net::io_context &ioc, const std::string &path, mode_t mode,
                   segment &seg, app_registry &apps, webhook_sender &hooks);
    ~control_server();

    control_server(const control_server &) = delete;
    control_server &operator=(const control_server &) = delete;

    void start();
    void stop();

    // The apps come from "<control path>.apps", which the nginx master
    // writes as it loads nginx.conf (pusher_ctl.h), and only if uid owns
    // it and no one else may write it (README, "Trust").
    void set_config_owner(uid_t uid) noexcept { config_owner_ = uid; }
    const std::string &apps_path() const noexcept { return apps_path_; }

    // Any process that can open the control socket is a peer (README,
    // "Trust"): at most max_connections at once, and one that has not
    // been welcomed hello_timeout after it connected is closed.
    static constexpr std::size_t max_connections = 2 * PUSHER_SHM_WAKE_SLOTS;
    static constexpr std::chrono::seconds hello_timeout{3};

    // Uplink messages are handled only while the ring has room for their
    // answers (ring_flow): a worker that keeps up is never lapped by them.
    // Without it (tests of the table alone) they are handled at once.
    void set_flow(ring_flow &flow) noexcept { flow_ = &flow; }

    // The cluster engine, configured from the master's app table; the
    // client events of this host's sockets go to the other hosts too.
    void set_cluster(cluster &c) noexcept { cluster_ = &c; }
    cluster *cluster_engine() const noexcept { return cluster_; }

    // Called after records were committed to the ring: schedules one
    // doorbell pass for the current turn of the event loop.
    void notify_published()
    {
        if (!flush_posted_) {
            flush_posted_ = true;
            net::post(ioc_, [this] { flush_doorbells(); });
        }
    }

    std::size_t attached() const noexcept { return attached_; }

    // What the attached workers have sent so far, for an API answer that
    // reads counts: a client told subscription_succeeded may ask at once,
    // and its worker wrote the OCCUPANCY before the frame, so the answer
    // waits until uplink_handled(mark) (pusher_ctl.h: the uplink is
    // ordered, each worker's bytes in the order they were sent).
    struct uplink_position {
        std::uint64_t worker;       // worker::id
        std::uint64_t bytes;        // handled once this many are
    };
    using uplink_mark = std::vector<uplink_position>;
    uplink_mark uplink_now() const;
    bool uplink_handled(const uplink_mark &mark) const;
    // pusher_metrics (PUSHER_CTL_METRICS): what the broker appends to its
    // own part (attached workers, ring lag per worker, channels per app)
    void set_metrics(std::function<void(std::string &)> more)
    {
        metrics_ = std::move(more);
    }
    // the broker's whole part of pusher_metrics
    std::string render_metrics() const;

    // the last event of each cache channel; trigger_api stores into it
    cache_store &cache() noexcept { return cache_; }

    // the subscribers of each channel of the node, summed over workers
    const occupancy_table &occupancy() const noexcept { return occupancy_; }

    // the members of each presence channel of the node
    const presence_table &presence() const noexcept { return presence_; }

private:
    struct worker;
    using worker_ptr = std::shared_ptr<worker>;

    net::awaitable<void> accept_loop();
    net::awaitable<void> run_worker(worker_ptr w);
    // false with the reason in why: the HELLO is refused
    bool on_hello(const worker_ptr &w, std::string_view payload,
                  std::string &why);
    // reads the master's app table into apps_; false with the reason
    bool load_apps(std::string &why);
    bool assign_slot(const worker_ptr &w);
    void release_slot(worker &w);
    void flush_doorbells();
    void send(const worker_ptr &w, std::string message);
    void pump(const worker_ptr &w);

    // uplink; each ignores (and logs) a malformed message
    void on_client_event(const worker_ptr &w, std::string_view payload);
    void on_presence_join(const worker_ptr &w, std::string_view payload);
    void on_presence_leave(const worker_ptr &w, std::string_view payload);
    void on_cache_get(const worker_ptr &w, std::string_view payload);
    void on_occupancy(const worker_ptr &w, std::string_view payload);
    void on_user_online(const worker_ptr &w, std::string_view payload);
    void on_user_offline(const worker_ptr &w, std::string_view payload);
    void on_gone(const worker_ptr &w, std::string_view payload);
    void on_announced(const worker_ptr &w);
    void on_metrics(const worker_ptr &w, std::string_view payload);
    // restoring (pusher_ctl.h): ends once every attached worker announced
    // and PUSHER_CTL_RESTORE_MIN passed, or at PUSHER_CTL_RESTORE_MAX
    void arm_restore_timer(std::chrono::milliseconds after);
    void check_restored();
    void restored();
    // answers held joins while the ring has room; the rest on a timer
    void answer_held();
    // room for the records of one uplink message (at most two, one of
    // them an answer of at most max_record bytes)
    bool uplink_room();
    void ignore(worker &w, std::string_view type, std::string_view why);
    // the N fields of an uplink message, or false (logged) if it came
    // before HELLO or is malformed
    template <std::size_t N>
    bool uplink_fields(worker &w, std::string_view type,
                       std::string_view payload,
                       std::array<std::string_view, N> &f);
    // member_added / member_removed records for what the table reported
    void publish_members(const std::vector<presence_table::member_event> &ev,
                         bool added, std::string_view socket_id);
    // false if the record does not fit the ring (logged)
    bool publish(std::string_view app_id, std::string_view channel,
                 std::string_view socket_id, std::string_view json);
    // the total of the channel changed: subscription_count now or later
    void count_changed(std::string_view app_id, std::string_view channel);
    void arm_count_timer();
    void on_count_timer();
    void publish_notices(const std::vector<user_table::notice> &notices);

    net::io_context &ioc_;
    segment &seg_;
    app_registry &apps_;
    webhook_sender &hooks_;
    unix_socket_path file_;
    std::string apps_path_;
    uid_t config_owner_ = 0;
    unix_stream::acceptor acceptor_;
    std::array<worker_ptr, PUSHER_SHM_WAKE_SLOTS> slots_;
    std::size_t attached_ = 0;
    bool flush_posted_ = false;
    std::uint64_t next_conn_ = 1;
    std::size_t connections_ = 0;
    std::uint64_t refused_connections_ = 0;
    std::uint64_t hello_timeouts_ = 0;
    presence_table presence_;
    cache_store cache_;
    occupancy_table occupancy_;
    user_table users_;
    // waiting subscription_counts go out on its ticks
    net::steady_timer count_timer_;
    bool count_timer_armed_ = false;
    bool stopped_ = false;

    // A broker that starts restores what the workers announce before it
    // acts on it (pusher_ctl.h): re-joins and counts flagged "r" are
    // taken silently, new presence joins wait in held_joins_, GONE is
    // gathered, and restored() settles it all.
    struct held_join {
        worker_ptr w;
        std::string payload;
        std::string key;            // app_id '\0' channel '\0' socket_id
    };
    struct restoring_channel {
        std::string app_id;
        std::string channel;
        bool restored = false;      // a worker's count had "r"
        bool gone = false;          // a worker's GONE
    };
    ring_flow *flow_ = nullptr;
    cluster *cluster_ = nullptr;
    std::function<void(std::string &)> metrics_;
    net::steady_timer held_timer_;
    bool answering_held_ = false;
    bool restoring_ = true;
    std::chrono::steady_clock::time_point started_;
    net::steady_timer restore_timer_;
    std::vector<held_join> held_joins_;
    string_map<restoring_channel> restoring_channels_;
    // by app_id '\0' channel '\0' user key
    string_map<presence_table::member_event> gone_members_;
    // scratch, reused: the broker is single-threaded
    std::vector<presence_table::member_event> removed_;
    std::vector<presence_table::member_event> added_;
    std::vector<occupancy_table::channel_ref> count_changed_;
    std::vector<occupancy_table::channel_ref> vacated_;
    std::vector<occupancy_table::due> counts_due_;
    std::vector<user_table::notice> notices_;
};

} // namespace pusher::broker
