#include "presence.hpp"

#include "pusher_proto.h"

namespace pusher::broker {

namespace {

constexpr std::string_view event_head = "{\"event\":\"";
constexpr std::string_view channel_part = "\",\"channel\":\"";
constexpr std::string_view data_part = "\",\"data\":\"";
constexpr std::string_view event_tail = "\"}";

std::string_view json_or_null(const std::string &json)
{
    return json.empty() ? std::string_view("null") : std::string_view(json);
}

} // namespace

void append_json_escaped(std::string &out, std::string_view s)
{
    const auto *src = reinterpret_cast<const std::uint8_t *>(s.data());
    std::size_t n = pusher_json_escape(nullptr, src, s.size());
    std::size_t at = out.size();
    out.resize(at + n);
    pusher_json_escape(reinterpret_cast<std::uint8_t *>(out.data() + at), src,
                       s.size());
}

std::string internal_event_json(std::string_view event,
                                std::string_view channel,
                                std::string_view data)
{
    std::string out;
    out.reserve(event_head.size() + event.size() + channel_part.size()
                + channel.size() + data_part.size() + data.size() * 2
                + event_tail.size());
    out += event_head;
    out += event;
    out += channel_part;
    append_json_escaped(out, channel);
    out += data_part;
    append_json_escaped(out, data);
    out += event_tail;
    return out;
}

std::string member_added_json(std::string_view channel,
                              std::string_view user_id,
                              std::string_view user_info)
{
    std::string data;
    data.reserve(32 + user_id.size() + user_info.size());
    data += "{\"user_id\":";
    data += user_id;
    data += ",\"user_info\":";
    data += user_info.empty() ? std::string_view("null") : user_info;
    data += '}';
    return internal_event_json("pusher_internal:member_added", channel,
                               data);
}

std::string member_removed_json(std::string_view channel,
                                std::string_view user_id)
{
    std::string data;
    data.reserve(16 + user_id.size());
    data += "{\"user_id\":";
    data += user_id;
    data += '}';
    return internal_event_json("pusher_internal:member_removed", channel,
                               data);
}

presence_table::channel *presence_table::find(std::string_view app_id,
                                              std::string_view channel) const
{
    auto it = channels_.find(app_channel_key(app_id, channel));
    return it == channels_.end() ? nullptr : it->second.get();
}

presence_table::join_status
presence_table::join(const join_request &req,
                     std::vector<member_event> &removed,
                     std::vector<member_event> &added)
{
    channel *ch = find(req.app_id, req.channel);

    if (ch != nullptr) {
        auto sit = ch->sockets.find(req.socket_id);
        if (sit != ch->sockets.end()) {
            member &m = sit->second;
            if (m.user->key == req.user_key) {
                // a refresh; a socket cannot move between workers, but
                // keep the owner right if it ever does
                if (m.conn != req.conn) {
                    auto cit = conns_.find(m.conn);
                    if (cit != conns_.end()) {
                        cit->second.erase(
                            conn_entry{ch, std::string(req.socket_id)});
                        if (cit->second.empty()) {
                            conns_.erase(cit);
                        }
                    }
                    m.conn = req.conn;
                    conns_[req.conn].insert(
                        conn_entry{ch, std::string(req.socket_id)});
                }
                return join_status::ok;
            }
            // the socket subscribes again as another user
            remove_socket(ch, sit, true, removed);
            ch = find(req.app_id, req.channel);
        }
    }

    user_list::iterator uit;
    bool new_user = true;

    if (ch != nullptr) {
        auto kit = ch->by_key.find(req.user_key);
        if (kit != ch->by_key.end()) {
            uit = kit->second;
            new_user = false;
        } else if (!req.rejoin && req.max_members != 0
                   && ch->users.size() >= req.max_members)
        {
            return join_status::limit;
        }
    }

    if (ch == nullptr) {
        auto c = std::make_unique<channel>();
        c->key = app_channel_key(req.app_id, req.channel);
        c->app_id = req.app_id;
        c->name = req.channel;
        ch = c.get();
        std::string key = c->key;
        channels_.emplace(std::move(key), std::move(c));
    }

    if (new_user) {
        ch->users.push_back(user{std::string(req.user_key),
                                 std::string(req.user_id),
                                 std::string(req.user_info), 0});
        uit = std::prev(ch->users.end());
        ch->by_key.emplace(uit->key, uit);
        added.push_back(member_event{ch->app_id, ch->name, uit->id_json,
                                     uit->info_json, uit->key});
    }

    uit->sockets++;
    ch->sockets.emplace(std::string(req.socket_id), member{uit, req.conn});
    conns_[req.conn].insert(conn_entry{ch, std::string(req.socket_id)});
    return join_status::ok;
}

bool presence_table::has_user(std::string_view app_id,
                              std::string_view channel,
                              std::string_view user_key) const
{
    const presence_table::channel *ch = find(app_id, channel);
    return ch != nullptr && ch->by_key.find(user_key) != ch->by_key.end();
}

void presence_table::leave(std::string_view app_id, std::string_view channel,
                           std::string_view socket_id,
                           std::vector<member_event> &removed)
{
    presence_table::channel *ch = find(app_id, channel);
    if (ch == nullptr) {
        return;
    }
    auto sit = ch->sockets.find(socket_id);
    if (sit == ch->sockets.end()) {
        return;
    }
    remove_socket(ch, sit, true, removed);
}

void presence_table::drop(conn_id conn, std::vector<member_event> &removed)
{
    auto cit = conns_.find(conn);
    if (cit == conns_.end()) {
        return;
    }
    conn_set entries = std::move(cit->second);
    conns_.erase(cit);

    for (const conn_entry &e : entries) {
        auto sit = e.ch->sockets.find(e.socket_id);
        if (sit != e.ch->sockets.end()) {
            remove_socket(e.ch, sit, false, removed);
        }
    }
}

void presence_table::remove_socket(channel *ch,
                                   string_map<member>::iterator sit,
                                   bool from_conn,
                                   std::vector<member_event> &removed)
{
    user_list::iterator uit = sit->second.user;

    if (from_conn) {
        auto cit = conns_.find(sit->second.conn);
        if (cit != conns_.end()) {
            cit->second.erase(conn_entry{ch, sit->first});
            if (cit->second.empty()) {
                conns_.erase(cit);
            }
        }
    }
    ch->sockets.erase(sit);

    if (--uit->sockets == 0) {
        removed.push_back(member_event{ch->app_id, ch->name,
                                       std::move(uit->id_json), {},
                                       uit->key});
        ch->by_key.erase(uit->key);
        ch->users.erase(uit);
    }

    if (ch->sockets.empty()) {
        // ch is gone after this
        channels_.erase(ch->key);
    }
}

std::string presence_table::subscription_succeeded(
    std::string_view app_id, std::string_view channel_name) const
{
    const channel *ch = find(app_id, channel_name);
    if (ch == nullptr) {
        return {};
    }

    std::string data = "{\"presence\":{\"count\":";
    data += std::to_string(ch->users.size());
    data += ",\"ids\":[";
    bool first = true;
    for (const user &u : ch->users) {
        if (!first) {
            data += ',';
        }
        first = false;
        data += u.id_json;
    }
    data += "],\"hash\":{";
    first = true;
    for (const user &u : ch->users) {
        if (!first) {
            data += ',';
        }
        first = false;
        data += '"';
        append_json_escaped(data, u.key);
        data += "\":";
        data += json_or_null(u.info_json);
    }
    data += "}}}";

    return internal_event_json("pusher_internal:subscription_succeeded",
                               ch->name, data);
}

std::size_t presence_table::user_count(std::string_view app_id,
                                      std::string_view channel) const
{
    const auto *ch = find(app_id, channel);
    return ch == nullptr ? 0 : ch->users.size();
}

void presence_table::users(std::string_view app_id, std::string_view channel,
                           std::vector<std::string_view> &out) const
{
    out.clear();
    const auto *ch = find(app_id, channel);
    if (ch == nullptr) {
        return;
    }
    for (const user &u : ch->users) {
        out.emplace_back(u.key);
    }
}

} // namespace pusher::broker
