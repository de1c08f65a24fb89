#include "occupancy.hpp"

#include "presence.hpp"

namespace pusher::broker {

std::string subscription_count_json(std::string_view channel,
                                    std::uint64_t count)
{
    return internal_event_json("pusher_internal:subscription_count", channel,
                               "{\"subscription_count\":"
                                   + std::to_string(count) + "}");
}

occupancy_table::entry *
occupancy_table::find(std::string_view app_id, std::string_view channel) const
{
    auto it = channels_.find(app_channel_key(app_id, channel));
    return it == channels_.end() ? nullptr : it->second.get();
}

std::uint64_t occupancy_table::total(std::string_view app_id,
                                     std::string_view channel) const
{
    const entry *e = find(app_id, channel);
    return e == nullptr ? 0 : e->total;
}

bool occupancy_table::set(conn_id conn, std::string_view app_id,
                          std::string_view channel, std::uint64_t count)
{
    entry *e = find(app_id, channel);
    if (e == nullptr) {
        if (count == 0) {
            return false;
        }
        auto n = std::make_unique<entry>();
        n->key = app_channel_key(app_id, channel);
        n->app_id = app_id;
        n->name = channel;
        e = n.get();
        std::string key = n->key;
        channels_.emplace(std::move(key), std::move(n));
        auto ait = apps_.find(app_id);
        if (ait == apps_.end()) {
            ait = apps_.emplace(std::string(app_id),
                                std::unordered_set<entry *>{}).first;
        }
        ait->second.insert(e);
    }
    return apply(e, conn, count, true);
}

bool occupancy_table::apply(entry *e, conn_id conn, std::uint64_t count,
                            bool from_conn)
{
    std::uint64_t before = e->total;
    auto cit = e->counts.find(conn);
    std::uint64_t old = cit == e->counts.end() ? 0 : cit->second;

    if (count == 0) {
        if (cit != e->counts.end()) {
            e->counts.erase(cit);
            if (from_conn) {
                auto it = conns_.find(conn);
                if (it != conns_.end()) {
                    it->second.erase(e);
                    if (it->second.empty()) {
                        conns_.erase(it);
                    }
                }
            }
        }
    } else if (cit == e->counts.end()) {
        e->counts.emplace(conn, count);
        conns_[conn].insert(e);
    } else {
        cit->second = count;
    }

    // counts are bounded by the sockets of a node: no overflow
    e->total = e->total - old + count;

    if (e->total == 0) {
        erase(e);
        return false;
    }
    return e->total != before;
}

void occupancy_table::erase(entry *e)
{
    for (const auto &[conn, count] : e->counts) {
        auto it = conns_.find(conn);
        if (it != conns_.end()) {
            it->second.erase(e);
            if (it->second.empty()) {
                conns_.erase(it);
            }
        }
    }
    if (e->waiting) {
        waiting_.erase(e);
    }
    auto ait = apps_.find(e->app_id);
    if (ait != apps_.end()) {
        ait->second.erase(e);
        if (ait->second.empty()) {
            apps_.erase(ait);
        }
    }
    // e is gone after this
    channels_.erase(e->key);
}

void occupancy_table::drop(conn_id conn, std::vector<channel_ref> &changed,
                           std::vector<channel_ref> &vacated)
{
    auto cit = conns_.find(conn);
    if (cit == conns_.end()) {
        return;
    }
    std::unordered_set<entry *> entries = std::move(cit->second);
    conns_.erase(cit);

    for (entry *e : entries) {
        // apply() may erase e
        channel_ref ref{e->app_id, e->name};
        if (apply(e, conn, 0, false)) {
            changed.push_back(std::move(ref));
        } else if (find(ref.app_id, ref.channel) == nullptr) {
            vacated.push_back(std::move(ref));
        }
    }
}

std::optional<std::uint64_t>
occupancy_table::changed(std::string_view app_id, std::string_view channel,
                         clock::time_point now)
{
    entry *e = find(app_id, channel);
    if (e == nullptr) {
        return std::nullopt;
    }
    if (e->sent && e->total == e->sent_total) {
        // back to what subscribers were told last
        if (e->waiting) {
            e->waiting = false;
            waiting_.erase(e);
        }
        return std::nullopt;
    }
    if (!e->sent || now - e->sent_at >= min_interval) {
        if (e->waiting) {
            e->waiting = false;
            waiting_.erase(e);
        }
        e->sent = true;
        e->sent_total = e->total;
        e->sent_at = now;
        return e->total;
    }
    if (!e->waiting) {
        e->waiting = true;
        waiting_.insert(e);
    }
    return std::nullopt;
}

void occupancy_table::take_due(clock::time_point now, std::vector<due> &out)
{
    for (auto it = waiting_.begin(); it != waiting_.end();) {
        entry *e = *it;
        if (e->sent && now - e->sent_at < min_interval) {
            ++it;
            continue;
        }
        e->waiting = false;
        it = waiting_.erase(it);
        if (e->sent && e->total == e->sent_total) {
            continue;
        }
        e->sent = true;
        e->sent_total = e->total;
        e->sent_at = now;
        out.push_back(due{e->app_id, e->name, e->total});
    }
}

} // namespace pusher::broker
