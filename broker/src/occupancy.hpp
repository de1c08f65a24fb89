#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "string_map.hpp"

namespace pusher::broker {

// Channel occupancy of the node: per app and channel, the last OCCUPANCY
// count of each control connection; the total is their sum.  A channel
// whose total is 0 has no entry.  It also keeps the coalescing state of
// pusher_internal:subscription_count (at most one per channel per
// min_interval): the caller says which changes are to be published, the
// table says when.  No I/O; the time is passed in.
class occupancy_table {
public:
    using conn_id = std::uint64_t;
    using clock = std::chrono::steady_clock;

    static constexpr clock::duration min_interval = std::chrono::seconds(1);

    // a channel whose total changed and is not 0 (copies)
    struct channel_ref {
        std::string app_id;
        std::string channel;
    };

    // a subscription_count to send now
    struct due {
        std::string app_id;
        std::string channel;
        std::uint64_t total = 0;
    };

    // Sets conn's count of the channel (0 removes it).  True if the total
    // changed and is not 0.
    bool set(conn_id conn, std::string_view app_id, std::string_view channel,
             std::uint64_t count);

    // Removes every count of conn; "changed" gets the channels whose total
    // changed and is not 0, "vacated" those whose total became 0.
    void drop(conn_id conn, std::vector<channel_ref> &changed,
              std::vector<channel_ref> &vacated);

    // 0 for an unoccupied channel
    std::uint64_t total(std::string_view app_id,
                        std::string_view channel) const;

    // f(std::string_view channel, std::uint64_t total) for each occupied
    // channel of the app, in no particular order; f must not change the
    // table.
    template <typename F>
    void for_each_channel(std::string_view app_id, F &&f) const
    {
        auto it = apps_.find(app_id);
        if (it == apps_.end()) {
            return;
        }
        for (const entry *e : it->second) {
            f(std::string_view(e->name), e->total);
        }
    }

    // The total of the channel changed and is to be published: returns it
    // if that may happen now (the caller sends it), else the channel
    // waits for take_due().  A total equal to the last one sent is not
    // sent again.  Nothing for an unoccupied channel.
    std::optional<std::uint64_t> changed(std::string_view app_id,
                                         std::string_view channel,
                                         clock::time_point now);

    // the waiting channels whose interval has passed, marked as sent
    void take_due(clock::time_point now, std::vector<due> &out);

    bool waiting() const noexcept { return waiting_.size() != 0; }
    std::size_t channels() const noexcept { return channels_.size(); }

private:


    struct entry {
        std::string key;                // app_id '\0' name
        std::string app_id;
        std::string name;
        std::uint64_t total = 0;
        std::unordered_map<conn_id, std::uint64_t> counts;
        // subscription_count
        bool sent = false;              // sent_total / sent_at are set
        bool waiting = false;           // in waiting_
        std::uint64_t sent_total = 0;
        clock::time_point sent_at{};
    };

    entry *find(std::string_view app_id, std::string_view channel) const;
    // applies a count change; erases the entry at total 0.  True if the
    // total changed and the entry is still there.
    bool apply(entry *e, conn_id conn, std::uint64_t count, bool from_conn);
    void erase(entry *e);

    string_map<std::unique_ptr<entry>> channels_;
    string_map<std::unordered_set<entry *>> apps_;
    std::unordered_map<conn_id, std::unordered_set<entry *>> conns_;
    std::unordered_set<entry *> waiting_;
};

// {"event":"pusher_internal:subscription_count","channel":"<channel>",
//  "data":"{\"subscription_count\":N}"}
std::string subscription_count_json(std::string_view channel,
                                    std::uint64_t count);

} // namespace pusher::broker
