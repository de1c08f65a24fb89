#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "string_map.hpp"

namespace pusher::broker {

// Signed-in users of the node (docs/protocol.md, "User sign-in"):
// per app, the sockets of each user with the control connection that
// announced them and their watchlists.  A user is online from its first
// socket to its last.  A watcher entry (watched user -> watcher) exists
// while the watcher has a socket whose watchlist names the watched user,
// counted per socket.  No I/O: the caller turns the notices into
// pusher_internal:watchlist_events records.
class user_table {
public:
    using conn_id = std::uint64_t;

    // one watchlist_events message for #server-to-user-<to> (copies)
    struct notice {
        std::string app_id;
        std::string to;
        bool online = true;             // "online", else "offline"
        std::vector<std::string> user_ids;
    };

    // socket_id signed in as user_id with a watchlist (user ids).  A user
    // new online: "online" to each of its watchers.  Then, if the
    // watchlist is not empty, the online users of it to user_id itself.
    // A socket announced again as the same user is a refresh (its
    // watchlist is replaced); as another user, the old one goes first.
    void online(conn_id conn, std::string_view app_id,
                std::string_view user_id, std::string_view socket_id,
                const std::vector<std::string> &watchlist,
                std::vector<notice> &out);

    // The socket closed: its watchlist is dropped; "offline" to the
    // user's watchers if it was the user's last socket.  False (and
    // nothing done) if the socket is not signed in as user_id.
    bool offline(std::string_view app_id, std::string_view user_id,
                 std::string_view socket_id, std::vector<notice> &out);

    // every socket conn announced goes, as by offline()
    void drop(conn_id conn, std::vector<notice> &out);

    bool is_online(std::string_view app_id, std::string_view user_id) const;
    // sockets of the user; watchers of it (distinct users)
    std::size_t sockets(std::string_view app_id,
                        std::string_view user_id) const;
    std::size_t watchers(std::string_view app_id,
                         std::string_view user_id) const;

private:


    struct socket_entry {
        conn_id conn = 0;
        std::string user;
        std::vector<std::string> watchlist;     // distinct ids
    };

    struct app_state {
        string_map<socket_entry> sockets;
        string_map<std::size_t> users;          // online user -> sockets
        // watched user -> watcher -> sockets of the watcher naming it
        string_map<string_map<std::size_t>> watchers;
    };

    static std::string socket_key(std::string_view app_id,
                                  std::string_view socket_id);
    void unconn(conn_id conn, const std::string &key);
    static void watch(app_state &a, const std::string &user,
                      const std::vector<std::string> &list);
    static void unwatch(app_state &a, const std::string &user,
                        const std::vector<std::string> &list);
    static void tell_watchers(const app_state &a, std::string_view app_id,
                              const std::string &user, bool online,
                              std::vector<notice> &out);
    static void initial(const app_state &a, std::string_view app_id,
                        const socket_entry &s, std::vector<notice> &out);
    // removes the socket; the app entry stays (the caller erases it)
    void remove_socket(app_state &a, std::string_view app_id,
                       string_map<socket_entry>::iterator it, bool from_conn,
                       std::vector<notice> &out);

    string_map<app_state> apps_;
    // the sockets of each connection: app_id '\0' socket_id
    std::unordered_map<conn_id, std::unordered_set<std::string>> conns_;
};

// {"event":"pusher_internal:watchlist_events","channel":
//  "#server-to-user-<to>","data":"{\"events\":[{\"name\":\"online\",
//  \"user_ids\":[\"U\",...]}]}"}
std::string watchlist_events_json(std::string_view to, bool online,
                                  const std::vector<std::string> &user_ids);

// "#server-to-user-<user_id>"
std::string server_to_user_channel(std::string_view user_id);

} // namespace pusher::broker
