#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "string_map.hpp"

namespace pusher::broker {

// Presence membership of the node (docs/architecture.md): per app
// and presence channel, the users in first-join order, each with the
// user_id and user_info JSON of its first connection and the sockets it
// has in the channel, and for each control connection the memberships it
// announced.  No I/O: the caller turns the results into ring records and
// replies.  Every operation is O(1) average in the number of channels,
// users and sockets, except subscription_succeeded(), which is linear in
// the members of one channel.
class presence_table {
public:
    using conn_id = std::uint64_t;

    struct join_request {
        std::string_view app_id;
        std::string_view channel;
        std::string_view socket_id;
        std::string_view user_key;      // user_id as a string
        std::string_view user_id;       // JSON text
        std::string_view user_info;     // JSON text, empty for null
        std::uint64_t max_members = 0;  // distinct users; 0: no limit
        bool rejoin = false;            // a re-announcement: no limit
        conn_id conn = 0;
    };

    enum class join_status { ok, limit };

    // A user whose first or last socket in a channel came or went: the
    // caller sends member_added / member_removed.  The strings are copies:
    // they stay valid after the table changes.
    struct member_event {
        std::string app_id;
        std::string channel;
        std::string user_id;            // JSON text, as first joined
        std::string user_info;          // member_added only; empty: null
        std::string user_key;           // user_id as a string (webhooks)
    };

    // Adds socket_id to the channel.  A socket that is already a member
    // as the same user is a refresh; a member as another user leaves first
    // (its member_removed goes to "removed").  "added" gets the
    // member_added of a user new to the channel.
    join_status join(const join_request &req,
                     std::vector<member_event> &removed,
                     std::vector<member_event> &added);

    // Removes socket_id from the channel; member_removed to "removed" if
    // it was the user's last socket there.  Unknown sockets are ignored.
    void leave(std::string_view app_id, std::string_view channel,
               std::string_view socket_id, std::vector<member_event> &removed);

    // Removes every membership that came from conn; member_removed once
    // per user that lost its last socket in a channel.
    void drop(conn_id conn, std::vector<member_event> &removed);

    // The pusher_internal:subscription_succeeded message of the channel
    // (empty if the channel has no members).
    std::string subscription_succeeded(std::string_view app_id,
                                       std::string_view channel) const;

    std::size_t channels() const noexcept { return channels_.size(); }

    // whether the user (by user key) has a socket in the channel
    bool has_user(std::string_view app_id, std::string_view channel,
                  std::string_view user_key) const;

    // distinct users in the channel (0 if it has no members)
    std::size_t user_count(std::string_view app_id,
                           std::string_view channel) const;

    // the users of the channel in first-join order, as user keys (the
    // user_id as a string); valid until the table changes
    void users(std::string_view app_id, std::string_view channel,
               std::vector<std::string_view> &out) const;

private:


    struct user {
        std::string key;
        std::string id_json;
        std::string info_json;
        std::size_t sockets = 0;
    };

    using user_list = std::list<user>;

    struct member {
        user_list::iterator user;
        conn_id conn = 0;
    };

    struct channel {
        std::string key;                // app_id '\0' name
        std::string app_id;
        std::string name;
        user_list users;                // first-join order
        string_map<user_list::iterator> by_key;
        string_map<member> sockets;
    };

    // one membership of a control connection
    struct conn_entry {
        channel *ch;
        std::string socket_id;

        bool operator==(const conn_entry &o) const noexcept
        {
            return ch == o.ch && socket_id == o.socket_id;
        }
    };

    struct conn_entry_hash {
        std::size_t operator()(const conn_entry &e) const noexcept
        {
            return std::hash<const void *>{}(e.ch)
                   ^ (std::hash<std::string>{}(e.socket_id) * 31);
        }
    };

    using conn_set = std::unordered_set<conn_entry, conn_entry_hash>;

    channel *find(std::string_view app_id, std::string_view channel) const;
    // removes one socket; erases the user and the channel when empty
    void remove_socket(channel *ch, string_map<member>::iterator it,
                       bool from_conn, std::vector<member_event> &removed);

    string_map<std::unique_ptr<channel>> channels_;
    std::unordered_map<conn_id, conn_set> conns_;
};

// The presence JSON the broker sends (docs/protocol.md, "Presence channels").
std::string member_added_json(std::string_view channel,
                              std::string_view user_id,
                              std::string_view user_info);
std::string member_removed_json(std::string_view channel,
                                std::string_view user_id);

// Appends s to out as the inside of a JSON string (no quotes).
void append_json_escaped(std::string &out, std::string_view s);

// {"event":"<event>","channel":"<channel>","data":"<data, escaped>"}
// (event copied verbatim, channel escaped)
std::string internal_event_json(std::string_view event,
                                std::string_view channel,
                                std::string_view data);

} // namespace pusher::broker
