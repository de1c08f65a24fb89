#include "users.hpp"

#include "presence.hpp"

namespace pusher::broker {

std::string server_to_user_channel(std::string_view user_id)
{
    std::string c = "#server-to-user-";
    c += user_id;
    return c;
}

std::string watchlist_events_json(std::string_view to, bool online,
                                  const std::vector<std::string> &user_ids)
{
    std::string data = "{\"events\":[{\"name\":\"";
    data += online ? "online" : "offline";
    data += "\",\"user_ids\":[";
    bool first = true;
    for (const std::string &id : user_ids) {
        if (!first) {
            data += ',';
        }
        first = false;
        data += '"';
        append_json_escaped(data, id);
        data += '"';
    }
    data += "]}]}";
    return internal_event_json("pusher_internal:watchlist_events",
                               server_to_user_channel(to), data);
}

std::string user_table::socket_key(std::string_view app_id,
                                   std::string_view socket_id)
{
    // app ids and socket ids hold no NUL: the key is unambiguous
    std::string key;
    key.reserve(app_id.size() + 1 + socket_id.size());
    key += app_id;
    key += '\0';
    key += socket_id;
    return key;
}

void user_table::unconn(conn_id conn, const std::string &key)
{
    auto it = conns_.find(conn);
    if (it != conns_.end()) {
        it->second.erase(key);
        if (it->second.empty()) {
            conns_.erase(it);
        }
    }
}

void user_table::watch(app_state &a, const std::string &user,
                       const std::vector<std::string> &list)
{
    for (const std::string &watched : list) {
        auto wit = a.watchers.find(watched);
        if (wit == a.watchers.end()) {
            wit = a.watchers.emplace(watched, string_map<std::size_t>{}).first;
        }
        auto rit = wit->second.find(user);
        if (rit == wit->second.end()) {
            wit->second.emplace(user, 1);
        } else {
            rit->second++;
        }
    }
}

void user_table::unwatch(app_state &a, const std::string &user,
                         const std::vector<std::string> &list)
{
    for (const std::string &watched : list) {
        auto wit = a.watchers.find(watched);
        if (wit == a.watchers.end()) {
            continue;
        }
        auto rit = wit->second.find(user);
        if (rit == wit->second.end()) {
            continue;
        }
        if (--rit->second == 0) {
            wit->second.erase(rit);
            if (wit->second.empty()) {
                a.watchers.erase(wit);
            }
        }
    }
}

void user_table::tell_watchers(const app_state &a, std::string_view app_id,
                               const std::string &user, bool online,
                               std::vector<notice> &out)
{
    auto wit = a.watchers.find(user);
    if (wit == a.watchers.end()) {
        return;
    }
    for (const auto &[watcher, refs] : wit->second) {
        out.push_back(notice{std::string(app_id), watcher, online, {user}});
    }
}

void user_table::initial(const app_state &a, std::string_view app_id,
                         const socket_entry &s, std::vector<notice> &out)
{
    notice n{std::string(app_id), s.user, true, {}};
    for (const std::string &id : s.watchlist) {
        if (a.users.find(id) != a.users.end()) {
            n.user_ids.push_back(id);
        }
    }
    if (!n.user_ids.empty()) {
        out.push_back(std::move(n));
    }
}

void user_table::online(conn_id conn, std::string_view app_id,
                        std::string_view user_id, std::string_view socket_id,
                        const std::vector<std::string> &watchlist,
                        std::vector<notice> &out)
{
    // distinct ids, first occurrence order: refcounts are per socket
    std::vector<std::string> list;
    {
        std::unordered_set<std::string_view> seen;
        for (const std::string &id : watchlist) {
            if (seen.insert(id).second) {
                list.push_back(id);
            }
        }
    }

    auto ait = apps_.find(app_id);
    if (ait == apps_.end()) {
        ait = apps_.emplace(std::string(app_id), app_state{}).first;
    }
    app_state &a = ait->second;
    std::string key = socket_key(app_id, socket_id);

    auto sit = a.sockets.find(socket_id);
    if (sit != a.sockets.end()) {
        socket_entry &s = sit->second;
        if (s.user == user_id) {
            // a refresh: the user stays online, the watchlist is replaced
            if (s.conn != conn) {
                unconn(s.conn, key);
                s.conn = conn;
                conns_[conn].insert(key);
            }
            unwatch(a, s.user, s.watchlist);
            s.watchlist = std::move(list);
            watch(a, s.user, s.watchlist);
            initial(a, app_id, s, out);
            return;
        }
        // signed in again as another user
        remove_socket(a, app_id, sit, true, out);
    }

    std::string user(user_id);
    auto uit = a.users.find(user);
    if (uit == a.users.end()) {
        a.users.emplace(user, 1);
        // before this socket's own watchlist counts: a user watching
        // itself learns it from initial()
        tell_watchers(a, app_id, user, true, out);
    } else {
        uit->second++;
    }

    auto [nit, ignored] = a.sockets.emplace(
        std::string(socket_id),
        socket_entry{conn, std::move(user), std::move(list)});
    conns_[conn].insert(std::move(key));
    watch(a, nit->second.user, nit->second.watchlist);
    initial(a, app_id, nit->second, out);
}

void user_table::remove_socket(app_state &a, std::string_view app_id,
                               string_map<socket_entry>::iterator it,
                               bool from_conn, std::vector<notice> &out)
{
    if (from_conn) {
        unconn(it->second.conn, socket_key(app_id, it->first));
    }
    std::string user = std::move(it->second.user);
    unwatch(a, user, it->second.watchlist);
    a.sockets.erase(it);

    auto uit = a.users.find(user);
    if (uit != a.users.end() && --uit->second == 0) {
        a.users.erase(uit);
        tell_watchers(a, app_id, user, false, out);
    }
}

bool user_table::offline(std::string_view app_id, std::string_view user_id,
                         std::string_view socket_id, std::vector<notice> &out)
{
    auto ait = apps_.find(app_id);
    if (ait == apps_.end()) {
        return false;
    }
    app_state &a = ait->second;
    auto sit = a.sockets.find(socket_id);
    if (sit == a.sockets.end() || sit->second.user != user_id) {
        return false;
    }
    remove_socket(a, app_id, sit, true, out);
    if (a.sockets.empty()) {
        apps_.erase(ait);
    }
    return true;
}

void user_table::drop(conn_id conn, std::vector<notice> &out)
{
    auto cit = conns_.find(conn);
    if (cit == conns_.end()) {
        return;
    }
    std::unordered_set<std::string> keys = std::move(cit->second);
    conns_.erase(cit);

    for (const std::string &key : keys) {
        std::size_t nul = key.find('\0');
        std::string_view app_id(key.data(), nul);
        std::string_view socket_id(key.data() + nul + 1,
                                   key.size() - nul - 1);
        auto ait = apps_.find(app_id);
        if (ait == apps_.end()) {
            continue;
        }
        auto sit = ait->second.sockets.find(socket_id);
        if (sit == ait->second.sockets.end()) {
            continue;
        }
        remove_socket(ait->second, app_id, sit, false, out);
        if (ait->second.sockets.empty()) {
            apps_.erase(ait);
        }
    }
}

bool user_table::is_online(std::string_view app_id,
                           std::string_view user_id) const
{
    return sockets(app_id, user_id) != 0;
}

std::size_t user_table::sockets(std::string_view app_id,
                                std::string_view user_id) const
{
    auto ait = apps_.find(app_id);
    if (ait == apps_.end()) {
        return 0;
    }
    auto uit = ait->second.users.find(user_id);
    return uit == ait->second.users.end() ? 0 : uit->second;
}

std::size_t user_table::watchers(std::string_view app_id,
                                 std::string_view user_id) const
{
    auto ait = apps_.find(app_id);
    if (ait == apps_.end()) {
        return 0;
    }
    auto wit = ait->second.watchers.find(user_id);
    return wit == ait->second.watchers.end() ? 0 : wit->second.size();
}

} // namespace pusher::broker
