// The broker's uplink without nginx: this test starts pusher-broker itself
// (argv[1]) with temporary sockets and a unique shm name, plays nginx
// workers on the control socket (HELLO, PRESENCE_JOIN/LEAVE, CLIENT_EVENT)
// and checks the exact ring records and PRESENCE_JOINED replies.
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

std::vector<std::string> next_answer();

struct worker {
    int fd = -1;
    int slot = -1;
    std::string bar;        // the socket of its barrier membership

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

    void join(std::string_view channel, std::string_view socket_id,
              std::string_view user_id, std::string_view user_info,
              std::string_view max_members = "100",
              std::string_view flags = "")
    {
        send(PUSHER_CTL_PRESENCE_JOIN,
             fields({"app1", channel, socket_id, user_id, user_info,
                     max_members, flags}));
    }

    void leave(std::string_view channel, std::string_view socket_id)
    {
        send(PUSHER_CTL_PRESENCE_LEAVE,
             fields({"app1", channel, socket_id}));
    }

    // the PRESENCE_JOINED answer: {socket_id, channel, status, json, cache}
    std::vector<std::string> joined()
    {
        std::vector<std::string> f = next_answer();
        CHECK(f.size() == 5);
        return f;
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

std::string g_hello;

void hello(worker &w, int pid)
{
    w.fd = connect_control();
    CHECK(w.fd >= 0);
    char buf[256];
    std::snprintf(buf, sizeof(buf),
                  "{\"pid\":%d,\"conf_time\":1,\"apps\":[{\"id\":\"app1\","
                  "\"key\":\"key1\",\"secret\":\"secret1\"}]}",
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

void expect_record(const std::string &channel, const std::string &socket_id,
                   const std::string &json)
{
    record r = next_record();
    CHECK_EQ(r.app_id, "app1");
    CHECK_EQ(r.channel, channel);
    CHECK_EQ(r.socket_id, socket_id);
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

std::string added(const std::string &channel, const std::string &id,
                  const std::string &info)
{
    return internal("member_added", channel,
                    "{\"user_id\":" + id + ",\"user_info\":" + info + "}");
}

std::string removed(const std::string &channel, const std::string &id)
{
    return internal("member_removed", channel, "{\"user_id\":" + id + "}");
}

std::string succeeded(const std::string &channel, const std::string &presence)
{
    return internal("subscription_succeeded", channel,
                    "{\"presence\":" + presence + "}");
}

// records without exclusion in any order: "channel json" each
void expect_unordered(std::vector<std::string> want)
{
    std::vector<std::string> got;
    for (std::size_t i = 0; i < want.size(); i++) {
        record r = next_record();
        CHECK_EQ(r.app_id, "app1");
        CHECK_EQ(r.socket_id, "");
        got.push_back(r.channel + " " + r.json);
    }
    std::sort(got.begin(), got.end());
    std::sort(want.begin(), want.end());
    for (std::size_t i = 0; i < want.size(); i++) {
        CHECK_EQ(got[i], want[i]);
    }
}

void expect_joined(worker &w, const std::string &socket_id,
                   const std::string &channel, const std::string &status,
                   const std::string &json)
{
    std::vector<std::string> f = w.joined();
    CHECK_EQ(f[0], socket_id);
    CHECK_EQ(f[1], channel);
    CHECK_EQ(f[2], status);
    CHECK_EQ(f[3], json);
}

// A refresh of an existing membership: a reply and no record, so once it
// arrives everything sent before on this connection has been handled.
void barrier(worker &w)
{
    w.join("presence-barrier", w.bar, "\"barrier\"", "");
    std::vector<std::string> f = w.joined();
    CHECK_EQ(f[0], w.bar);
    CHECK_EQ(f[2], "ok");
}

// ---- broker -------------------------------------------------------------

void start_broker(const char *binary)
{
    std::snprintf(g_dir, sizeof(g_dir), "/tmp/pusher-presence-XXXXXX");
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

void run()
{
    const std::string room = "presence-room";
    const std::string info_a = "{\"name\":\"A\"}";
    const std::string info_b = "{\"name\":\"B \\\"quoted\\\"\"}";

    worker a, b;
    a.bar = "9.9";
    b.bar = "9.8";
    hello(a, 1001);
    map_segment();
    hello(b, 1002);

    // barrier memberships, one per connection, same user
    a.join("presence-barrier", "9.9", "\"barrier\"", "");
    expect_joined(a, "9.9", "presence-barrier", "ok",
                  succeeded("presence-barrier",
                            "{\"count\":1,\"ids\":[\"barrier\"],"
                            "\"hash\":{\"barrier\":null}}"));
    expect_record("presence-barrier", "9.9",
                  added("presence-barrier", "\"barrier\"", "null"));
    // a new user over a limit of 1 is refused; the same user is not
    b.join("presence-barrier", "9.8", "1", "", "1");
    expect_joined(b, "9.8", "presence-barrier", "limit", "");
    b.join("presence-barrier", "9.8", "\"barrier\"", "", "1");
    CHECK_EQ(b.joined()[2], "ok");
    expect_no_record();

    // first socket of user "1": member_added excluding it
    a.join(room, "1.1", "\"1\"", info_a);
    expect_joined(a, "1.1", room, "ok",
                  succeeded(room, "{\"count\":1,\"ids\":[\"1\"],\"hash\":{"
                                  "\"1\":" + info_a + "}}"));
    expect_record(room, "1.1", added(room, "\"1\"", info_a));

    // second socket, numeric id 1: the same user, first user_info wins
    a.join(room, "1.2", "1", info_b);
    expect_joined(a, "1.2", room, "ok",
                  succeeded(room, "{\"count\":1,\"ids\":[\"1\"],\"hash\":{"
                                  "\"1\":" + info_a + "}}"));
    expect_no_record();

    // user 2 on the other worker, no user_info
    b.join(room, "2.1", "2", "");
    expect_record(room, "2.1", added(room, "2", "null"));
    expect_joined(b, "2.1", room, "ok",
                  succeeded(room, "{\"count\":2,\"ids\":[\"1\",2],\"hash\":{"
                                  "\"1\":" + info_a + ",\"2\":null}}"));

    // a string id that needs escaping; info with escapes
    b.join(room, "2.2", "\"x\\\"y\"", info_b);
    expect_record(room, "2.2", added(room, "\"x\\\"y\"", info_b));
    expect_joined(b, "2.2", room, "ok",
                  succeeded(room, "{\"count\":3,\"ids\":[\"1\",2,\"x\\\"y\"],"
                                  "\"hash\":{\"1\":" + info_a
                                  + ",\"2\":null,\"x\\\"y\":" + info_b
                                  + "}}"));

    // refresh: same socket again, ok again, no record
    a.join(room, "1.1", "\"1\"", info_a);
    CHECK_EQ(a.joined()[2], "ok");
    expect_no_record();

    // limit: 1 member; the same user may add sockets, a new one may not
    const std::string small = "presence-small";
    a.join(small, "1.1", "1", "", "1");
    CHECK_EQ(a.joined()[2], "ok");
    expect_record(small, "1.1", added(small, "1", "null"));
    b.join(small, "2.1", "2", "", "1");
    expect_joined(b, "2.1", small, "limit", "");
    b.join(small, "2.3", "\"1\"", "", "1");
    expect_joined(b, "2.3", small, "ok",
                  succeeded(small, "{\"count\":1,\"ids\":[1],"
                                   "\"hash\":{\"1\":null}}"));
    expect_no_record();

    // leave of a non-last socket: nothing; of the last: member_removed
    a.leave(room, "1.2");
    barrier(a);
    expect_no_record();
    a.leave(room, "1.1");
    expect_record(room, "", removed(room, "\"1\""));
    // leave of an unknown socket
    a.leave(room, "1.1");
    barrier(a);
    expect_no_record();

    // client event: the exact JSON, the sender excluded
    const std::string ce = "{\"event\":\"client-typing\",\"channel\":"
                           "\"private-chat\",\"data\":{\"id\":1}}";
    a.send(PUSHER_CTL_CLIENT_EVENT, fields({"app1", "private-chat", "1.7",
                                            ce}));
    expect_record("private-chat", "1.7", ce);

    // malformed messages and an unknown app are ignored
    std::string cut = fields({"app1", room, "1.8", "8", "", "100", ""});
    a.send(PUSHER_CTL_PRESENCE_JOIN, cut.substr(0, cut.size() - 3));
    a.send(PUSHER_CTL_PRESENCE_JOIN,
           fields({"nope", room, "1.8", "8", "", "100", ""}));
    a.send(PUSHER_CTL_PRESENCE_JOIN,
           fields({"app1", room, "1.8", "true", "", "100", ""}));
    a.send(PUSHER_CTL_PRESENCE_JOIN,
           fields({"app1", "private-x", "1.8", "8", "", "100", ""}));
    a.send(PUSHER_CTL_CLIENT_EVENT, fields({"nope", "private-chat", "1.7",
                                            ce}));
    a.send(PUSHER_CTL_CLIENT_EVENT, fields({"app1", "private-chat"}));
    barrier(a);
    expect_no_record();

    // memberships of worker a, then its connection ends:
    //   room:  user 3 (two sockets), user 2 (also on b: stays)
    //   other: user 3, user 4
    //   small: user 1 (also on b: stays)
    const std::string other = "presence-other";
    a.join(room, "1.3", "3", "");
    a.joined();
    a.join(room, "1.4", "\"3\"", "");
    a.joined();
    a.join(room, "1.5", "2", "");
    a.joined();
    a.join(other, "1.3", "3", "");
    a.joined();
    a.join(other, "1.6", "4", "");
    a.joined();
    expect_record(room, "1.3", added(room, "3", "null"));
    expect_record(other, "1.3", added(other, "3", "null"));
    expect_record(other, "1.6", added(other, "4", "null"));
    expect_no_record();

    // b sleeps with its wake slot armed: the drop must ring it
    CHECK(pusher_ring_arm(&g_ring, pusher_shm_wake(g_base,
                              static_cast<std::uint32_t>(b.slot)),
                          &g_reader)
          == 0);
    a.close_fd();
    {
        char head[PUSHER_CTL_HEADER_SIZE];
        CHECK(read_all(b.fd, head, sizeof(head), 2000));
        pusher_ctl_header_t h;
        pusher_ctl_header_read(reinterpret_cast<std::uint8_t *>(head), &h);
        CHECK(h.type == PUSHER_CTL_DOORBELL);
    }

    expect_unordered({room + " " + removed(room, "3"),
                      other + " " + removed(other, "3"),
                      other + " " + removed(other, "4")});
    barrier(b);
    expect_no_record();

    // what is left: room has users 2 and "x\"y" (b), small has user "1";
    // and the barrier socket of a is gone (b's remains)
    b.join(small, "2.4", "1", "", "1");
    expect_joined(b, "2.4", small, "ok",
                  succeeded(small, "{\"count\":1,\"ids\":[1],"
                                   "\"hash\":{\"1\":null}}"));

    // a worker reconnects and re-joins: silent, member_added only for a
    // user new to the channel, no reply, no limit
    worker c;
    c.bar = "9.7";
    hello(c, 1003);
    c.join(room, "3.1", "2", "", "100", "r");
    c.join(room, "3.2", "5", "{\"n\":5}", "100", "r");
    c.join(small, "3.3", "6", "", "1", "r");
    barrier(c);     // the first reply is the barrier's
    expect_record(room, "3.2", added(room, "5", "{\"n\":5}"));
    expect_record(small, "3.3", added(small, "6", "null"));
    expect_no_record();

    // the room as a new subscriber sees it
    b.join(room, "2.1", "2", "");
    expect_joined(b, "2.1", room, "ok",
                  succeeded(room, "{\"count\":3,\"ids\":[2,\"x\\\"y\",5],"
                                  "\"hash\":{\"2\":null,\"x\\\"y\":" + info_b
                                  + ",\"5\":{\"n\":5}}}"));

    // b ends: user "x\"y" leaves room, 2 stays (c); user 1 leaves small,
    // 6 stays (c); the barrier user stays (c)
    b.close_fd();
    expect_unordered({room + " " + removed(room, "\"x\\\"y\""),
                      small + " " + removed(small, "1")});
    barrier(c);
    expect_no_record();

    // a socket that subscribes again as another user: the old user (its
    // only socket) is removed, the new one added, the socket excluded
    c.join(room, "3.2", "\"8\"", "");
    expect_record(room, "3.2", removed(room, "5"));
    expect_record(room, "3.2", added(room, "\"8\"", "null"));
    expect_joined(c, "3.2", room, "ok",
                  succeeded(room, "{\"count\":2,\"ids\":[2,\"8\"],"
                                  "\"hash\":{\"2\":null,\"8\":null}}"));

    // churn from two connections with a fixed seed: joins, leaves, client
    // events, some malformed; every record must decode as valid JSON
    // (try_record checks), and closing the connections must empty the
    // channels with one member_removed per remaining user
    {
        static const char *const channels[] = {
            "presence-c0", "presence-c1", "presence-cache-c2", "private-c3"};
        static const char *const ids[] = {
            "1", "\"1\"", "2", "\"a\\\\b\"", "\"\\u00e9\"", "3.5",
            "null", "{}", "\"\\n\"", ""};
        static const char *const infos[] = {
            "", "{\"k\":\"v\"}", "[1,2]", "\"s\"", "{bad"};
        static const char *const counts[] = {"0", "1", "2", "100", "x", ""};
        worker d, e;
        d.bar = "8.1";
        e.bar = "8.2";
        hello(d, 1004);
        hello(e, 1005);
        std::uint32_t x = 12345;
        auto rnd = [&x](std::uint32_t n) {
            x = x * 1103515245u + 12345u;
            return (x >> 16) % n;
        };
        for (int i = 0; i < 3000; i++) {
            worker &w = rnd(2) ? d : e;
            std::string ch = channels[rnd(4)];
            std::string sid = std::to_string(w.slot) + "."
                              + std::to_string(rnd(12));
            switch (rnd(4)) {
            case 0:
            case 1:
                w.join(ch, sid, ids[rnd(10)], infos[rnd(5)], counts[rnd(6)],
                       rnd(4) == 0 ? "r" : "");
                break;
            case 2:
                w.leave(ch, sid);
                break;
            default:
                w.send(PUSHER_CTL_CLIENT_EVENT,
                       fields({"app1", ch, sid, "{\"event\":\"client-x\"}"}));
            }
        }
        // the replies are not read: the broker must not mind.  A detached
        // worker's wake slot gets pid 0 after its member_removed records
        pusher_shm_wake_t *wd = pusher_shm_wake(
            g_base, static_cast<std::uint32_t>(d.slot));
        pusher_shm_wake_t *we = pusher_shm_wake(
            g_base, static_cast<std::uint32_t>(e.slot));
        d.close_fd();
        e.close_fd();
        for (int i = 0; i < 400 && (pusher_load_acquire_u32(&wd->pid) != 0
                                    || pusher_load_acquire_u32(&we->pid) != 0);
             i++)
        {
            usleep(5000);
        }
        CHECK(pusher_load_acquire_u32(&wd->pid) == 0);
        CHECK(pusher_load_acquire_u32(&we->pid) == 0);
        record r;
        int n = 0;
        while (try_record(r)) {
            n++;
        }
        CHECK(n > 0);
        if (std::getenv("PUSHER_TEST_VERBOSE") != nullptr) {
            std::printf("churn: %d records\n", n);
        }
        // only c's memberships are left: room has 2 and "8"
        c.join(room, "3.9", "9", "");
        expect_record(room, "3.9", added(room, "9", "null"));
        CHECK_EQ(c.joined()[2], "ok");
    }

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
    std::printf("test_presence: all checks passed\n");
    return 0;
}
