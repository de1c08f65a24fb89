#pragma once

// The cluster engine (docs/cluster.md): the brokers of several nginx hosts
// share one Redis.  What a broker writes into its own ring for everyone
// (HTTP API events, client events) it also publishes on the Redis channel
// "<prefix>ring"; what the other hosts publish there it writes into its
// ring, so their events reach this host's sockets once.
//
// Each message carries its node, the node's epoch (random at each start)
// and a sequence number: a receiver that sees a node's sequence jump knows
// how many records it did not get (Redis down, a link dropped), says so in
// the log and in pusher_cluster_records_lost_total, and has its workers
// tell their subscribed sockets to reconnect (4200, PUSHER_RING_RECONNECT):
// loss is announced, never silent.  A heartbeat each second carries the
// node's next sequence number, so a gap shows within a second of the
// links being back even if the node publishes nothing more.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "asio.hpp"
#include "pusher_cluster.h"

namespace pusher::broker {

class app_registry;
class redis_link;
class ring_flow;
class segment;

// "pusher_cluster URL [prefix=P] [node=N]" as nginx -t checked it
struct cluster_config {
    std::string url;
    std::string prefix;
    std::string node;
    bool operator==(const cluster_config &) const = default;
};

class cluster {
public:
    struct counters {
        std::uint64_t published = 0;        // PUBLISH answered
        std::uint64_t publish_failed = 0;   // Redis down or an error
        std::uint64_t received = 0;         // other nodes' records written
        std::uint64_t lost = 0;             // sequence gaps of other nodes
        std::uint64_t rejected = 0;         // malformed, unknown app
        std::uint64_t dropped = 0;          // over the pending bound
    };

    // records of other nodes wait for room in the ring up to this many
    // bytes (ring_flow: a worker that keeps up is never lapped by them)
    static constexpr std::size_t max_pending = 16 * 1024 * 1024;
    // the other nodes whose sequence is followed; messages of more are
    // rejected (whoever can PUBLISH may name any node)
    static constexpr std::size_t max_nodes = 1024;
    // the Redis channel, after the prefix
    static constexpr std::string_view channel = "ring";
    // a message of this type carries no record: the sender's next sequence
    static constexpr std::int32_t heartbeat = PUSHER_CLUSTER_HEARTBEAT;
    static constexpr std::chrono::seconds heartbeat_every{1};

    cluster(net::io_context &io, segment &seg, ring_flow &flow,
            const app_registry &apps, std::function<void()> notify);
    ~cluster();
    cluster(const cluster &) = delete;
    cluster &operator=(const cluster &) = delete;

    // the configuration of the nginx master's app table: nullopt without
    // pusher_cluster; a changed one reconnects
    void configure(const std::optional<cluster_config> &cfg);
    void stop();

    bool enabled() const noexcept { return cfg_.has_value(); }
    const std::optional<cluster_config> &config() const noexcept
    {
        return cfg_;
    }

    // a record of this type was committed to the local ring: the other
    // nodes get it too (PUSHER_RING_EVENT, PUSHER_RING_TERMINATE)
    void published(std::int32_t type, std::string_view payload);

    // "v1 <node> <epoch> <seq> <type>\n<payload>" (pusher_cluster.h)
    static std::string encode(std::string_view node, std::uint64_t epoch,
                              std::uint64_t seq, std::int32_t type,
                              std::string_view payload);
    struct message {
        std::string_view node;
        std::uint64_t epoch = 0;
        std::uint64_t seq = 0;
        std::int32_t type = 0;
        std::string_view payload;
    };
    // false if text is not such a message
    static bool decode(std::string_view text, message &m);

    const counters &stats() const noexcept { return stats_; }
    bool publisher_up() const noexcept;
    bool subscriber_up() const noexcept;
    // the Prometheus families, if enabled
    void render_metrics(std::string &out) const;

private:
    struct peer {
        std::uint64_t epoch = 0;
        std::uint64_t next = 0;   // the sequence number expected next
    };

    void start();
    void beat();
    void on_message(const std::string &payload);
    // count records of node never arrived: counted, logged, announced
    void lost(std::string_view node, std::uint64_t count);
    bool acceptable(const message &m, std::string &why) const;
    // writes pending records while the ring has room; arms the retry
    void write_pending();
    void reject(std::string_view why);

    net::io_context &io_;
    segment &seg_;
    ring_flow &flow_;
    const app_registry &apps_;
    std::function<void()> notify_;
    std::optional<cluster_config> cfg_;
    std::shared_ptr<redis_link> pub_;
    std::shared_ptr<redis_link> sub_;
    std::uint64_t epoch_;
    std::uint64_t seq_ = 0;
    std::unordered_map<std::string, peer> peers_;
    std::deque<std::pair<std::int32_t, std::string>> pending_;
    std::size_t pending_bytes_ = 0;
    net::steady_timer retry_;
    bool retry_armed_ = false;
    net::steady_timer heartbeat_;
    counters stats_;
};

} // namespace pusher::broker
