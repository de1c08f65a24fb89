#include "cluster.hpp"

#include <random>
#include <stdexcept>

#include "app_registry.hpp"
#include "log.hpp"
#include "metrics.hpp"
#include "pusher_cluster.h"
#include "pusher_proto.h"
#include "pusher_ring.h"
#include "redis_link.hpp"
#include "ring_flow.hpp"
#include "segment.hpp"

namespace pusher::broker {

namespace {

std::uint64_t random_epoch()
{
    std::random_device rd;
    std::uint64_t e = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
    return e == 0 ? 1 : e;
}

} // namespace

cluster::cluster(net::io_context &io, segment &seg, ring_flow &flow,
                 const app_registry &apps, std::function<void()> notify)
    : io_(io), seg_(seg), flow_(flow), apps_(apps),
      notify_(std::move(notify)), epoch_(random_epoch()), retry_(io),
      heartbeat_(io)
{
}

cluster::~cluster()
{
    stop();
}

std::string cluster::encode(std::string_view node, std::uint64_t epoch,
                            std::uint64_t seq, std::int32_t type,
                            std::string_view payload)
{
    char head[PUSHER_CLUSTER_HEADER_MAX + 1];
    std::size_t n = pusher_cluster_msg_header(head, sizeof(head), node.data(),
                                              node.size(), epoch, seq, type);
    if (n == 0) {
        // the node was checked with the configuration: cannot happen
        throw std::invalid_argument("cluster: bad node name or type");
    }
    std::string out;
    out.reserve(n + payload.size());
    out.append(head, n).append(payload);
    return out;
}

bool cluster::decode(std::string_view text, message &m)
{
    pusher_cluster_msg_t c;
    if (pusher_cluster_msg_decode(&c, text.data(), text.size()) != 0) {
        return false;
    }
    m.node = std::string_view(c.node, c.node_len);
    m.epoch = c.epoch;
    m.seq = c.seq;
    m.type = c.type;
    m.payload = std::string_view(reinterpret_cast<const char *>(c.payload),
                                 c.payload_len);
    return true;
}

void cluster::configure(const std::optional<cluster_config> &cfg)
{
    if (cfg == cfg_) {
        return;
    }
    stop();
    cfg_ = cfg;
    if (cfg_) {
        start();
    }
}

void cluster::start()
{
    redis_url url = redis_url::parse(cfg_->url);
    log_line("cluster: node " + cfg_->node + ", Redis " + url.redacted()
             + ", prefix " + cfg_->prefix);

    auto state = [this](std::string what) {
        return [this, what](bool up, const std::string &why) {
            log_line("cluster: the " + what + " link to Redis is "
                     + (up ? std::string("up") : "down: " + why));
        };
    };
    redis_link::callbacks pub_cb;
    pub_cb.on_state = state("publishing");
    pub_ = redis_link::create(io_, url, cfg_->prefix,
                              redis_link::mode::commands, std::move(pub_cb));

    redis_link::callbacks sub_cb;
    sub_cb.on_state = state("subscribing");
    sub_cb.on_message = [this](const std::string &, const std::string &payload,
                               const std::string &) { on_message(payload); };
    sub_ = redis_link::create(io_, url, cfg_->prefix,
                              redis_link::mode::subscriber, std::move(sub_cb));
    sub_->subscribe({std::string(channel)});

    pub_->start();
    sub_->start();
    beat();
}

void cluster::beat()
{
    if (!pub_) {
        return;
    }
    if (pub_->up()) {
        // the next sequence number, not taking one
        pub_->command({"PUBLISH", pub_->key(channel),
                       encode(cfg_->node, epoch_, seq_, heartbeat, {})},
                      [](const redis_reply &) {});
    }
    heartbeat_.expires_after(heartbeat_every);
    heartbeat_.async_wait([this](boost::system::error_code ec) {
        if (!ec) {
            beat();
        }
    });
}

void cluster::lost(std::string_view node, std::uint64_t count)
{
    stats_.lost += count;
    log_line("cluster: " + std::to_string(count) + " record(s) of node "
             + std::string(node)
             + " never arrived (a Redis link was down): subscribed sockets "
               "are told to reconnect (4200)");
    if (!seg_.publish_fields(PUSHER_RING_RECONNECT,
                             {node, std::to_string(count)}))
    {
        log_line("cluster: the reconnect record does not fit the ring");
        return;
    }
    notify_();
}

void cluster::stop()
{
    if (pub_) {
        pub_->stop();
        pub_.reset();
    }
    if (sub_) {
        sub_->stop();
        sub_.reset();
    }
    retry_.cancel();
    retry_armed_ = false;
    heartbeat_.cancel();
    pending_.clear();
    pending_bytes_ = 0;
    peers_.clear();
}

bool cluster::publisher_up() const noexcept
{
    return pub_ && pub_->up();
}

bool cluster::subscriber_up() const noexcept
{
    return sub_ && sub_->up();
}

void cluster::published(std::int32_t type, std::string_view payload)
{
    if (!pub_) {
        return;
    }
    // every record takes a number, sent or not: a gap tells the others
    std::uint64_t seq = seq_++;
    pub_->command({"PUBLISH", pub_->key(channel),
                   encode(cfg_->node, epoch_, seq, type, payload)},
                  [this](const redis_reply &r) {
                      if (r.is_error()) {
                          ++stats_.publish_failed;
                          std::uint64_t n = stats_.publish_failed;
                          if ((n & (n - 1)) == 0) {
                              log_line("cluster: a record was not published ("
                                       + r.str + "); " + std::to_string(n)
                                       + " so far: the other nodes count "
                                         "them as lost");
                          }
                      } else {
                          ++stats_.published;
                      }
                  });
}

void cluster::reject(std::string_view why)
{
    std::uint64_t n = ++stats_.rejected;
    if ((n & (n - 1)) == 0) {
        log_line("cluster: a message from Redis ignored: " + std::string(why)
                 + " (" + std::to_string(n) + " so far)");
    }
}

bool cluster::acceptable(const message &m, std::string &why) const
{
    if (m.type != PUSHER_RING_EVENT) {
        why = "record type " + std::to_string(m.type);
        return false;
    }
    if (m.payload.size() + PUSHER_RING_RECORD_HEADER > seg_.ring().max_record)
    {
        why = "a record larger than the ring takes";
        return false;
    }
    pusher_ring_event_view_t view;
    if (pusher_ring_event_decode(
            reinterpret_cast<const std::uint8_t *>(m.payload.data()),
            m.payload.size(), &view)
        != 0)
    {
        why = "a malformed event record";
        return false;
    }
    if (apps_.find(std::string_view(view.app_id.data, view.app_id.len))
        == nullptr)
    {
        why = "an app this node does not have";
        return false;
    }
    return true;
}

void cluster::on_message(const std::string &text)
{
    message m;
    if (!decode(text, m)) {
        reject("not a cluster message");
        return;
    }
    if (cfg_ && m.node == cfg_->node) {
        if (m.epoch != epoch_) {
            reject("another node calls itself " + cfg_->node
                   + " (node= must differ on each host)");
        }
        return;
    }

    // the sequence of each node, per epoch (a restarted node starts anew)
    if (peers_.size() >= max_nodes && !peers_.contains(std::string(m.node))) {
        reject("more than " + std::to_string(max_nodes) + " nodes");
        return;
    }
    auto [it, fresh] = peers_.try_emplace(std::string(m.node));
    peer &p = it->second;
    if (fresh || p.epoch != m.epoch) {
        if (!fresh) {
            log_line("cluster: node " + std::string(m.node) + " restarted");
        }
        p.epoch = m.epoch;
        p.next = m.seq;
    }
    if (m.type == heartbeat) {
        if (!m.payload.empty()) {
            reject("a heartbeat with a payload");
        } else if (m.seq > p.next) {
            std::uint64_t gap = m.seq - p.next;
            p.next = m.seq;
            lost(m.node, gap);
        }
        return;
    }
    if (m.seq < p.next) {
        reject("a record of node " + std::string(m.node) + " seen before");
        return;
    }
    if (m.seq > p.next) {
        std::uint64_t gap = m.seq - p.next;
        p.next = m.seq;
        lost(m.node, gap);
    }
    p.next = m.seq + 1;

    std::string why;
    if (!acceptable(m, why)) {
        reject(why + " from node " + std::string(m.node));
        return;
    }
    if (pending_bytes_ + m.payload.size() > max_pending) {
        std::uint64_t n = ++stats_.dropped;
        if ((n & (n - 1)) == 0) {
            log_line("cluster: a record of node " + std::string(m.node)
                     + " dropped: " + std::to_string(pending_bytes_)
                     + " bytes wait for room in the ring ("
                     + std::to_string(n) + " so far)");
        }
        return;
    }
    pending_bytes_ += m.payload.size();
    pending_.emplace_back(m.type, std::string(m.payload));
    write_pending();
}

void cluster::write_pending()
{
    bool wrote = false;
    while (!pending_.empty()) {
        auto &[type, payload] = pending_.front();
        auto len = static_cast<std::uint32_t>(payload.size());
        if (!flow_.room(flow_.end_after(flow_.tail(), len))) {
            break;
        }
        if (pusher_ring_write(&seg_.ring(), type, payload.data(), len) != 0) {
            // acceptable() checked the size: cannot happen
            ++stats_.dropped;
        } else {
            ++stats_.received;
            wrote = true;
        }
        pending_bytes_ -= payload.size();
        pending_.pop_front();
    }
    if (wrote) {
        notify_();
    }
    if (!pending_.empty() && !retry_armed_) {
        retry_armed_ = true;
        retry_.expires_after(std::chrono::milliseconds(5));
        retry_.async_wait([this](boost::system::error_code ec) {
            retry_armed_ = false;
            if (!ec) {
                write_pending();
            }
        });
    }
}

void cluster::render_metrics(std::string &out) const
{
    if (!cfg_) {
        return;
    }
    auto line = [&](std::string_view name, std::uint64_t v) {
        out.append(name).append(" ").append(std::to_string(v)).append("\n");
    };
    prom::family(out, "pusher_cluster_redis_up", "gauge",
                 "The cluster's links to Redis: 1 up, 0 down");
    out.append("pusher_cluster_redis_up{link=\"publish\"} ")
        .append(publisher_up() ? "1" : "0")
        .append("\n");
    out.append("pusher_cluster_redis_up{link=\"subscribe\"} ")
        .append(subscriber_up() ? "1" : "0")
        .append("\n");
    prom::family(out, "pusher_cluster_records_published_total", "counter",
                 "Records of this node published to the other nodes");
    line("pusher_cluster_records_published_total", stats_.published);
    prom::family(out, "pusher_cluster_records_publish_failed_total", "counter",
                 "Records of this node not published (Redis down or an "
                 "error)");
    line("pusher_cluster_records_publish_failed_total", stats_.publish_failed);
    prom::family(out, "pusher_cluster_records_received_total", "counter",
                 "Records of other nodes written into this node's ring");
    line("pusher_cluster_records_received_total", stats_.received);
    prom::family(out, "pusher_cluster_records_lost_total", "counter",
                 "Records of other nodes that never arrived (sequence gaps)");
    line("pusher_cluster_records_lost_total", stats_.lost);
    prom::family(out, "pusher_cluster_records_rejected_total", "counter",
                 "Messages from Redis ignored: malformed, an unknown app, "
                 "seen before");
    line("pusher_cluster_records_rejected_total", stats_.rejected);
    prom::family(out, "pusher_cluster_records_dropped_total", "counter",
                 "Records of other nodes dropped: too many waited for room "
                 "in the ring");
    line("pusher_cluster_records_dropped_total", stats_.dropped);
}

} // namespace pusher::broker
