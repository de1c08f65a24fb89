// Channel occupancy and signed-in users without nginx: this test starts
// pusher-broker itself (argv[1]) with temporary sockets and a unique shm
// name, plays nginx workers on the control socket (HELLO, OCCUPANCY,
// USER_ONLINE/OFFLINE) and checks the exact ring records
// (pusher_internal:subscription_count, pusher_internal:watchlist_events).
//
// Whatever happens, the broker is stopped and its sockets, directory and
// shm object removed (a failed check or the alarm ends the test through
// fail(), which cleans up).

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "pusher_ctl.h"
#include "pusher_proto.h"
#include "pusher_ring.h"
#include "pusher_shm.h"

namespace {

// ---- process state and cleanup ------------------------------------------

char g_dir[64];
std::string g_control, g_api, g_log, g_shm;
pid_t g_broker = -1;
void *g_base = nullptr;
std::size_t g_size = 0;

void cleanup()
{
    if (g_broker > 0) {
        kill(g_broker, SIGTERM);
        for (int i = 0; i < 200; i++) {
            if (waitpid(g_broker, nullptr, WNOHANG) == g_broker) {
                g_broker = -1;
                break;
            }
            usleep(10000);
        }
        if (g_broker > 0) {
            kill(g_broker, SIGKILL);
            waitpid(g_broker, nullptr, 0);
            g_broker = -1;
        }
    }
    if (g_base != nullptr) {
        munmap(g_base, g_size);
        g_base = nullptr;
    }
    if (!g_shm.empty()) {
        shm_unlink(g_shm.c_str());
    }
    if (g_dir[0] != '\0') {
        unlink(g_control.c_str());
        unlink(g_api.c_str());
        unlink(g_log.c_str());
        rmdir(g_dir);
        g_dir[0] = '\0';
    }
}

void dump_log()
{
    if (g_log.empty()) {
        return;
    }
    FILE *f = std::fopen(g_log.c_str(), "r");
    if (f == nullptr) {
        return;
    }
    std::fprintf(stderr, "--- broker log ---\n");
    char buf[512];
    while (std::fgets(buf, sizeof(buf), f) != nullptr) {
        std::fputs(buf, stderr);
    }
    std::fclose(f);
}

[[noreturn]] void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    std::fprintf(stderr, "FAIL: ");
    std::vfprintf(stderr, fmt, ap);
    std::fprintf(stderr, "\n");
    va_end(ap);
    dump_log();
    cleanup();
    std::exit(1);
}

void on_alarm(int)
{
    // not async-signal-safe in theory; the test is over anyway
    fail("timed out");
}

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fail("%s:%d: %s", __FILE__, __LINE__, #cond);                    \
        }                                                                    \
    } while (0)

#define CHECK_EQ(a, b)                                                       \
    do {                                                                     \
        std::string a_ = (a), b_ = (b);                                      \
        if (a_ != b_) {                                                      \
            fail("%s:%d: %s\n  got:      %s\n  expected: %s", __FILE__,     \
                 __LINE__, #a, a_.c_str(), b_.c_str());                      \
        }                                                                    \
    } while (0)

// ---- control connection -------------------------------------------------

struct message {
    std::uint16_t type = 0;
    std::string payload;
};

void write_all(int fd, const std::string &s)
{
    std::size_t off = 0;
    while (off < s.size()) {
        ssize_t n = write(fd, s.data() + off, s.size() - off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        CHECK(n > 0);
        off += static_cast<std::size_t>(n);
    }
}

bool read_all(int fd, char *p, std::size_t len, int timeout_ms)
{
    std::size_t off = 0;
    while (off < len) {
        pollfd pfd{fd, POLLIN, 0};
        int r = poll(&pfd, 1, timeout_ms);
        if (r == 0) {
            return false;
        }
        ssize_t n = read(fd, p + off, len - off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        off += static_cast<std::size_t>(n);
    }
    return true;
}

std::string framed(std::uint16_t type, const std::string &payload)
{
    std::string out(PUSHER_CTL_HEADER_SIZE, '\0');
    pusher_ctl_header_write(reinterpret_cast<std::uint8_t *>(out.data()), type,
                            static_cast<std::uint32_t>(payload.size()));
    return out + payload;
}

std::string fields(std::initializer_list<std::string_view> list)
{
    std::size_t len = 0;
    for (auto f : list) {
        len += PUSHER_CTL_FIELD_SIZE(f.size());
    }
    std::string out(len, '\0');
    auto *p = reinterpret_cast<std::uint8_t *>(out.data());
    for (auto f : list) {
        p = pusher_ctl_put(p, f.data(), static_cast<std::uint32_t>(f.size()));
    }
    return out;
}

struct worker {
    int fd = -1;
    int slot = -1;

    ~worker() { close_fd(); }

    void close_fd()
    {
        if (fd >= 0) {
            close(fd);
            fd = -1;
        }
    }

    void send(std::uint16_t type, const std::string &payload)
    {
        write_all(fd, framed(type, payload));
    }

    // the next message that is not a doorbell
    message next(int timeout_ms = 2000)
    {
        for (;;) {
            char head[PUSHER_CTL_HEADER_SIZE];
            if (!read_all(fd, head, sizeof(head), timeout_ms)) {
                fail("no message from the broker");
            }
            pusher_ctl_header_t h;
            pusher_ctl_header_read(reinterpret_cast<std::uint8_t *>(head), &h);
            message m;
            m.type = h.type;
            m.payload.resize(h.length);
            if (h.length
                && !read_all(fd, m.payload.data(), h.length, timeout_ms))
            {
                fail("short message from the broker");
            }
            if (m.type != PUSHER_CTL_DOORBELL) {
                return m;
            }
        }
    }

    void occupancy(std::string_view app_id, std::string_view channel,
                   std::string_view count)
    {
        send(PUSHER_CTL_OCCUPANCY, fields({app_id, channel, count}));
    }

    void online(std::string_view user_id, std::string_view socket_id,
                std::string_view watchlist = "",
                std::string_view app_id = "app1")
    {
        send(PUSHER_CTL_USER_ONLINE,
             fields({app_id, user_id, socket_id, watchlist}));
    }

    void offline(std::string_view user_id, std::string_view socket_id)
    {
        send(PUSHER_CTL_USER_OFFLINE, fields({"app1", user_id, socket_id}));
    }
};

int connect_control()
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", g_control.c_str());
    if (connect(fd, reinterpret_cast<sockaddr *>(&sa), sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

void hello(worker &w, int pid)
{
    w.fd = connect_control();
    CHECK(w.fd >= 0);
    char buf[256];
    std::snprintf(buf, sizeof(buf),
                  "{\"pid\":%d,\"conf_time\":1,\"apps\":[{\"id\":\"app1\","
                  "\"key\":\"key1\",\"secret\":\"secret1\","
                  "\"subscription_count\":true},{\"id\":\"app2\","
                  "\"key\":\"key2\",\"secret\":\"secret2\"}]}",
                  pid);
    w.send(PUSHER_CTL_HELLO, buf);
    message m = w.next();
    CHECK(m.type == PUSHER_CTL_WELCOME);
    cJSON *root = cJSON_ParseWithLength(m.payload.data(), m.payload.size());
    CHECK(root != nullptr);
    const cJSON *slot = cJSON_GetObjectItemCaseSensitive(root, "slot");
    const cJSON *shm = cJSON_GetObjectItemCaseSensitive(root, "shm");
    CHECK(cJSON_IsNumber(slot) && cJSON_IsString(shm));
    CHECK(std::string(shm->valuestring) == g_shm);
    w.slot = slot->valueint;
    cJSON_Delete(root);
}

// ---- the ring -----------------------------------------------------------

pusher_ring_t g_ring;
pusher_ring_reader_t g_reader;
std::vector<std::uint8_t> g_buf;

void map_segment()
{
    int fd = shm_open(g_shm.c_str(), O_RDWR, 0);
    CHECK(fd >= 0);
    struct stat st;
    CHECK(fstat(fd, &st) == 0);
    g_size = static_cast<std::size_t>(st.st_size);
    void *base = mmap(nullptr, g_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                      0);
    close(fd);
    CHECK(base != MAP_FAILED);
    g_base = base;
    pusher_shm_header_t *h = pusher_shm_header(base);
    CHECK(h->magic == PUSHER_SHM_MAGIC);
    CHECK(pusher_ring_init(&g_ring, pusher_shm_ring(base), h->ring_capacity,
                           pusher_shm_desc(base))
          == 0);
    pusher_ring_reader_init(&g_reader, &g_ring, 1);
    g_buf.resize(g_ring.max_record);
}

struct record {
    std::string app_id, channel, socket_id, json;
};

std::vector<std::string> split(const std::string &payload)
{
    std::vector<std::string> out;
    const auto *pos = reinterpret_cast<const std::uint8_t *>(payload.data());
    const auto *end = pos + payload.size();
    while (pos < end) {
        const std::uint8_t *data = nullptr;
        std::uint32_t len = 0;
        CHECK(pusher_ctl_get(&pos, end, &data, &len) == 0);
        out.emplace_back(reinterpret_cast<const char *>(data), len);
    }
    return out;
}

// PRESENCE_JOINED and CACHE answers come down the ring between the events
std::deque<std::vector<std::string>> g_answers;
std::deque<record> g_records;

// reads what the ring holds: events to g_records, answers to g_answers
void pump_ring()
{
    for (;;) {
        std::int32_t type = 0;
        std::uint32_t len = 0;
        int rc = pusher_ring_read(&g_reader, &g_ring, g_buf.data(), &type,
                                  &len);
        CHECK(rc != PUSHER_RING_LAPPED);
        if (rc == PUSHER_RING_EMPTY) {
            return;
        }
        if (type == PUSHER_RING_PRESENCE_JOINED || type == PUSHER_RING_CACHE) {
            g_answers.push_back(split(std::string(
                reinterpret_cast<const char *>(g_buf.data()), len)));
            continue;
        }
        CHECK(type == PUSHER_RING_EVENT);
        record r;
        pusher_ring_event_view_t v;
        CHECK(pusher_ring_event_decode(g_buf.data(), len, &v) == 0);
        r.app_id.assign(v.app_id.data, v.app_id.len);
        r.channel.assign(v.channel.data, v.channel.len);
        r.socket_id.assign(v.socket_id.data, v.socket_id.len);
        // decode checked a minimal FIN text frame: the payload follows
        std::size_t hdr = v.frame[1] == 126 ? 4 : (v.frame[1] == 127 ? 10 : 2);
        r.json.assign(reinterpret_cast<const char *>(v.frame) + hdr,
                      v.frame_len - hdr);
        CHECK(v.frame[0] == 0x81);
        cJSON *j = cJSON_ParseWithLength(r.json.data(), r.json.size());
        CHECK(j != nullptr);    // every record is valid JSON
        cJSON_Delete(j);
        g_records.push_back(std::move(r));
    }
}

bool try_record(record &r)
{
    if (g_records.empty()) {
        pump_ring();
    }
    if (g_records.empty()) {
        return false;
    }
    r = std::move(g_records.front());
    g_records.pop_front();
    return true;
}

// the next PRESENCE_JOINED or CACHE answer, as its fields
std::vector<std::string> next_answer()
{
    for (int i = 0; i < 400; i++) {
        if (g_answers.empty()) {
            pump_ring();
        }
        if (!g_answers.empty()) {
            std::vector<std::string> f = std::move(g_answers.front());
            g_answers.pop_front();
            return f;
        }
        usleep(5000);
    }
    fail("no answer in the ring");
}

record next_record()
{
    record r;
    for (int i = 0; i < 400; i++) {
        if (try_record(r)) {
            return r;
        }
        usleep(5000);
    }
    fail("no ring record");
}

void expect_no_record()
{
    record r;
    if (try_record(r)) {
        fail("unexpected ring record: %s", r.json.c_str());
    }
}

void expect_record(const std::string &channel, const std::string &json,
                   const std::string &app_id = "app1")
{
    record r = next_record();
    CHECK_EQ(r.app_id, app_id);
    CHECK_EQ(r.channel, channel);
    CHECK_EQ(r.socket_id, "");
    CHECK_EQ(r.json, json);
}

// ---- expected texts -----------------------------------------------------

std::string escaped(const std::string &s)
{
    std::string out(pusher_json_escape(nullptr,
                        reinterpret_cast<const std::uint8_t *>(s.data()),
                        s.size()),
                    '\0');
    pusher_json_escape(reinterpret_cast<std::uint8_t *>(out.data()),
                       reinterpret_cast<const std::uint8_t *>(s.data()),
                       s.size());
    return out;
}

std::string internal(const std::string &event, const std::string &channel,
                     const std::string &data)
{
    return "{\"event\":\"pusher_internal:" + event + "\",\"channel\":\""
           + channel + "\",\"data\":\"" + escaped(data) + "\"}";
}

std::string count(const std::string &channel, int n)
{
    return internal("subscription_count", channel,
                    "{\"subscription_count\":" + std::to_string(n) + "}");
}

// watchlist_events to #server-to-user-<to>: {"name":name,"user_ids":ids}
std::string watch(const std::string &to, const std::string &name,
                  const std::vector<std::string> &ids)
{
    std::string list;
    for (const std::string &id : ids) {
        list += (list.empty() ? "\"" : ",\"") + escaped(id) + "\"";
    }
    return internal("watchlist_events", "#server-to-user-" + to,
                    "{\"events\":[{\"name\":\"" + name
                        + "\",\"user_ids\":[" + list + "]}]}");
}

// the record of watch(to, ...)
void expect_watch(const std::string &to, const std::string &name,
                  const std::vector<std::string> &ids)
{
    expect_record("#server-to-user-" + to, watch(to, name, ids));
}

// A CACHE_GET: a reply and no record, so once it arrives everything sent
// before on this connection has been handled.
void barrier(worker &w)
{
    w.send(PUSHER_CTL_CACHE_GET, fields({"app1", "cache-barrier", "9.9"}));
    std::vector<std::string> f = next_answer();
    CHECK(f.size() == 3);
    CHECK_EQ(f[1], "cache-barrier");
}

// closes the connection and waits until the broker has let it go (its
// wake slot's pid is 0 after the records of the drop)
void detach(worker &w)
{
    pusher_shm_wake_t *wake = pusher_shm_wake(
        g_base, static_cast<std::uint32_t>(w.slot));
    w.close_fd();
    for (int i = 0; i < 400 && pusher_load_acquire_u32(&wake->pid) != 0;
         i++)
    {
        usleep(5000);
    }
    CHECK(pusher_load_acquire_u32(&wake->pid) == 0);
}

double now_ms()
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) * 1000.0
           + static_cast<double>(ts.tv_nsec) / 1.0e6;
}

// ---- broker -------------------------------------------------------------

void start_broker(const char *binary)
{
    std::snprintf(g_dir, sizeof(g_dir), "/tmp/pusher-users-XXXXXX");
    CHECK(mkdtemp(g_dir) != nullptr);
    g_control = std::string(g_dir) + "/control.sock";
    g_api = std::string(g_dir) + "/api.sock";
    g_log = std::string(g_dir) + "/broker.log";
    g_shm = "/pusher-test-" + std::to_string(getpid());

    std::string api = "--api=unix:" + g_api;
    std::string control = "--control=" + g_control;
    std::string shm = "--shm=" + g_shm;

    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int fd = open(g_log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        execl(binary, binary, api.c_str(), control.c_str(), shm.c_str(),
              "--ring-size=4m", static_cast<char *>(nullptr));
        _exit(127);
    }
    g_broker = pid;

    for (int i = 0; i < 400; i++) {
        int fd = connect_control();
        if (fd >= 0) {
            close(fd);
            return;
        }
        if (waitpid(g_broker, nullptr, WNOHANG) == g_broker) {
            g_broker = -1;
            fail("the broker exited at start");
        }
        usleep(5000);
    }
    fail("the broker did not listen");
}
// ---- the cases ----------------------------------------------------------

// a HELLO whose subscription_count is not a boolean is refused
void bad_hello()
{
    int fd = connect_control();
    CHECK(fd >= 0);
    std::string hello_text =
        "{\"pid\":2099,\"conf_time\":1,\"apps\":[{\"id\":\"app1\","
        "\"key\":\"key1\",\"secret\":\"secret1\",\"subscription_count\":1}]}";
    write_all(fd, framed(PUSHER_CTL_HELLO, hello_text));
    pollfd pfd{fd, POLLIN, 0};
    CHECK(poll(&pfd, 1, 2000) == 1);
    char c;
    CHECK(read(fd, &c, 1) == 0);
    close(fd);
}

void users(worker &a, worker &b)
{
    // alice signs in: nobody of her watchlist is online
    a.online("alice", "1.1", "[\"bob\",\"carol\"]");
    barrier(a);
    expect_no_record();

    // bob's first socket: "online" to alice (she watches him), then the
    // online part of his own watchlist to him
    b.online("bob", "2.1", "[\"alice\"]");
    expect_watch("alice", "online", {"bob"});
    expect_watch("bob", "online", {"alice"});

    // bob's second socket, on the other worker: no "online" again; his
    // list again (a duplicate counts once)
    a.online("bob", "1.2", "[\"alice\",\"alice\",\"nobody\"]");
    expect_watch("bob", "online", {"alice"});

    // alice's second socket, no watchlist: nothing
    a.online("alice", "1.3");
    barrier(a);
    expect_no_record();

    // her first socket goes: she stays online, its watchlist goes; an
    // offline for another user or an unknown socket does nothing
    a.offline("alice", "1.1");
    a.offline("bob", "1.3");
    a.offline("alice", "7.7");
    barrier(a);
    expect_no_record();

    // so nobody watches carol
    b.online("carol", "2.2");
    barrier(b);
    expect_no_record();

    // alice's last socket: "offline" once to bob, who watches her from
    // two sockets
    a.offline("alice", "1.3");
    expect_watch("bob", "offline", {"alice"});
    barrier(a);
    expect_no_record();

    // one of bob's sockets goes: he still watches her (once)
    b.offline("bob", "2.1");
    // alice is back, on b: "online" to bob; her own list in its order
    b.online("alice", "2.3", "[\"carol\",\"dave\",\"bob\"]");
    expect_watch("bob", "online", {"alice"});
    expect_watch("alice", "online", {"carol", "bob"});

    // bob's last socket: "offline" to alice; his watch of her goes
    a.offline("bob", "1.2");
    expect_watch("alice", "offline", {"bob"});
    b.offline("alice", "2.3");
    barrier(a);
    barrier(b);
    expect_no_record();

    // ids are escaped in the data; a watcher whose channel would not be a
    // valid channel name ("a b") gets nothing
    b.online("w1", "2.5", "[\"q\\\"uote\"]");
    b.online("a b", "2.6", "[\"q\\\"uote\"]");
    a.online("q\"uote", "1.5");
    expect_watch("w1", "online", {"q\"uote"});
    barrier(a);
    barrier(b);
    expect_no_record();

    // a watchlist counts up to 100 ids
    a.online("u5", "1.6");
    a.online("u120", "1.7");
    std::string big = "[";
    for (int i = 0; i < 150; i++) {
        big += (i ? ",\"u" : "\"u") + std::to_string(i) + "\"";
    }
    big += "]";
    b.online("big", "2.7", big);
    expect_watch("big", "online", {"u5"});
    a.offline("u120", "1.7");
    barrier(a);
    expect_no_record();
    a.offline("u5", "1.6");
    expect_watch("big", "offline", {"u5"});

    // malformed sign-ins are ignored
    a.online("mallory", "1.8", "{\"a\":1}");
    a.online("mallory", "1.8", "nope");
    a.online("mallory", "1.8", "[\"x\"");
    a.online("", "1.8");
    a.online(std::string(201, 'm'), "1.8");
    a.online("mallory", "18");
    a.online("mallory", "1.8", "", "nope");
    a.send(PUSHER_CTL_USER_ONLINE, fields({"app1", "mallory", "1.8"}));
    a.send(PUSHER_CTL_USER_OFFLINE, fields({"app1", "mallory"}));
    barrier(a);
    // none of them signed mallory in
    b.online("watcher-m", "2.8", "[\"mallory\"]");
    barrier(b);
    expect_no_record();

    // entries of a watchlist that are not user ids are skipped
    b.online("nina", "2.12", "[7,\"carol\",null,\"\",{}]");
    expect_watch("nina", "online", {"carol"});

    // one user, two sockets on worker c and one on b: c's connection
    // ends, she stays online; her last socket makes her offline once
    worker c, d;
    hello(c, 2003);
    b.online("frank", "2.9", "[\"eve\"]");
    c.online("eve", "3.1");
    expect_watch("frank", "online", {"eve"});
    c.online("eve", "3.2");
    b.online("eve", "2.10");
    barrier(b);
    barrier(c);
    expect_no_record();
    detach(c);
    expect_no_record();
    b.offline("eve", "2.10");
    expect_watch("frank", "offline", {"eve"});

    // her only socket on a worker whose connection ends
    hello(d, 2004);
    d.online("eve", "4.1");
    expect_watch("frank", "online", {"eve"});
    detach(d);
    expect_watch("frank", "offline", {"eve"});

    // a socket announced again (after a reconnect): the user stays
    // online, the watchlist is replaced and its online part sent again
    b.online("frank", "2.9", "[\"carol\"]");
    expect_watch("frank", "online", {"carol"});
    a.online("eve", "1.9");
    barrier(a);
    expect_no_record();

    // users of another app are apart (frank is online in app1 only); a
    // user watching itself sees itself online
    a.online("carol", "1.10", "[\"carol\",\"frank\"]", "app2");
    expect_record("#server-to-user-carol", watch("carol", "online", {"carol"}),
                  "app2");
    barrier(a);
    expect_no_record();
}

void occupancy(worker &b)
{
    worker e;
    hello(e, 2005);

    // the first change of a channel goes out at once
    double t0 = now_ms();
    e.occupancy("app1", "room", "2");
    expect_record("room", count("room", 2));

    // within its second: only the latest total, after the second
    b.occupancy("app1", "room", "3");       // 5
    b.occupancy("app1", "room", "1");       // 3

    // never for presence channels nor for apps without subscription_count
    e.occupancy("app1", "presence-room", "4");
    e.occupancy("app1", "presence-cache-room", "4");
    e.occupancy("app2", "room", "5");
    // another channel has a second of its own
    e.occupancy("app1", "other", "1");
    expect_record("other", count("other", 1));
    // no change, no event; malformed counts are ignored
    e.occupancy("app1", "other", "1");
    e.occupancy("app1", "other", "x");
    e.occupancy("app1", "other", "-1");
    e.occupancy("app1", "other", "");
    e.occupancy("app1", "other", "99999999999");
    e.occupancy("app1", "a b", "1");
    e.occupancy("nope", "other", "1");
    e.send(PUSHER_CTL_OCCUPANCY, fields({"app1", "other"}));
    barrier(e);
    barrier(b);
    expect_no_record();

    expect_record("room", count("room", 3));
    double t1 = now_ms();
    CHECK(t1 - t0 >= 990);

    // e's connection ends: room 3 -> 1 (again after a second); other
    // -> 0, gone without an event
    detach(e);
    expect_record("room", count("room", 1));
    CHECK(now_ms() - t0 >= 1990);
    expect_no_record();

    // a channel that emptied starts afresh: at once
    b.occupancy("app1", "room", "0");
    b.occupancy("app1", "room", "4");
    expect_record("room", count("room", 4));
    barrier(b);
    expect_no_record();
}

// churn from two connections with a fixed seed: sign-ins and -outs,
// counts, some malformed; every record must decode as valid JSON
// (try_record checks), and once the connections end nobody is online and
// no count is left
void churn(worker &b)
{
    static const char *const ids[] = {"u1", "u2", "u3", "u\\4", "u5", ""};
    static const char *const lists[] = {
        "", "[\"u1\"]", "[\"u2\",\"u3\",\"u2\"]", "[\"u1\",\"u\\\\4\"]",
        "[\"u5\",\"u1\",\"u2\",\"u3\"]", "[1]", "nope"};
    static const char *const channels[] = {"c0", "c1", "presence-c2",
                                           "a b"};
    static const char *const counts[] = {"0", "1", "2", "3", "x"};
    worker g, h;
    hello(g, 2006);
    hello(h, 2007);
    std::uint32_t x = 4242;
    auto rnd = [&x](std::uint32_t n) {
        x = x * 1103515245u + 12345u;
        return (x >> 16) % n;
    };
    for (int i = 0; i < 3000; i++) {
        worker &w = rnd(2) ? g : h;
        std::string sid = std::to_string(w.slot) + "."
                          + std::to_string(rnd(10));
        switch (rnd(3)) {
        case 0:
            w.online(ids[rnd(6)], sid, lists[rnd(7)],
                     rnd(8) ? "app1" : "app2");
            break;
        case 1:
            w.offline(ids[rnd(6)], sid);
            break;
        default:
            w.occupancy(rnd(8) ? "app1" : "app2", channels[rnd(4)],
                        counts[rnd(5)]);
        }
    }
    barrier(g);
    barrier(h);
    detach(g);
    detach(h);
    record r;
    int n = 0;
    while (try_record(r)) {
        n++;
    }
    CHECK(n > 0);
    if (std::getenv("PUSHER_TEST_VERBOSE") != nullptr) {
        std::printf("churn: %d records\n", n);
    }
    // nobody of them is online any more
    b.online("watcher-c", "2.11", "[\"u1\",\"u2\",\"u3\",\"u\\\\4\",\"u5\"]");
    barrier(b);
    expect_no_record();
}

void run()
{
    worker a, b;
    hello(a, 2001);
    map_segment();
    hello(b, 2002);

    bad_hello();
    users(a, b);
    occupancy(b);
    churn(b);

    // the broker is still alive and well
    CHECK(waitpid(g_broker, nullptr, WNOHANG) == 0);
}

} // namespace

int main(int argc, char **argv)
{
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s PUSHER-BROKER\n", argv[0]);
        return 2;
    }
    std::signal(SIGPIPE, SIG_IGN);
    std::signal(SIGALRM, on_alarm);
    alarm(10);

    start_broker(argv[1]);
    run();

    // a clean stop: exit status 0 (under ASan, also no leak report)
    kill(g_broker, SIGTERM);
    int status = 0;
    CHECK(waitpid(g_broker, &status, 0) == g_broker);
    g_broker = -1;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fail("the broker did not stop cleanly (status 0x%x)", status);
    }
    if (std::getenv("PUSHER_TEST_VERBOSE") != nullptr) {
        dump_log();
    }
    cleanup();
    std::printf("test_users: all checks passed\n");
    return 0;
}
