// The harness the broker tests share (test_presence, test_users, test_api,
// test_webhooks; test_tables and test_webhook_config without a broker).
//
// A test is a list of named cases:
//
//     TEST_CASE("presence: a second tab of a user adds no member")
//     {
//         ...
//         CHECK_EQ(got, expected);
//     }
//
// run by test_main() in the order of the file, each in a process of its
// own (fork), so that a failed case reports its name and the others still
// run.  A broker test's case gets a broker of its own: pusher-broker
// (argv[1]) with temporary sockets and a unique shm name, on which it plays
// nginx workers on the control socket and reads the ring records the
// broker writes.  Whatever happens, the broker is stopped and its sockets,
// directory and shm object removed (a failed check or the alarm ends the
// case through fail(), which cleans up).
//
//     test_presence PUSHER-BROKER [--list] [FILTER...]
//     test_tables [--list] [FILTER...]
//
// runs the cases whose names contain one of the FILTERs (all without),
// printing "ok: NAME" or "FAIL: NAME" for each and a count at the end; a
// FILTER that matches no case fails.  --list prints the names.

#pragma once

#include <cerrno>
#include <csignal>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <initializer_list>
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

// ---- process state and cleanup ------------------------------------------

inline char g_dir[64];
inline std::string g_control, g_api, g_log, g_shm;
inline pid_t g_broker = -1;
inline void *g_base = nullptr;
inline std::size_t g_size = 0;

// ---- named cases ----------------------------------------------------------

struct test_case {
    std::string name;
    void (*fn)();
};

inline std::vector<test_case> &test_cases()
{
    static std::vector<test_case> cases;
    return cases;
}

// the case running in this process, for fail()
inline const char *g_case = nullptr;

struct test_case_registrar {
    test_case_registrar(const char *name, void (*fn)())
    {
        test_cases().push_back(test_case{name, fn});
    }
};

#define PUSHER_TEST_CAT2(a, b) a##b
#define PUSHER_TEST_CAT(a, b) PUSHER_TEST_CAT2(a, b)
#define TEST_CASE(name)                                                      \
    static void PUSHER_TEST_CAT(test_case_fn_, __LINE__)();                  \
    static const test_case_registrar PUSHER_TEST_CAT(test_case_reg_,         \
                                                     __LINE__){              \
        name, PUSHER_TEST_CAT(test_case_fn_, __LINE__)};                     \
    static void PUSHER_TEST_CAT(test_case_fn_, __LINE__)()

inline void cleanup()
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

inline void dump_log()
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

[[noreturn]] inline void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (g_case != nullptr) {
        std::fprintf(stderr, "FAIL: %s: ", g_case);
    } else {
        std::fprintf(stderr, "FAIL: ");
    }
    std::vfprintf(stderr, fmt, ap);
    std::fprintf(stderr, "\n");
    va_end(ap);
    dump_log();
    cleanup();
    std::exit(1);
}

inline void on_alarm(int)
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

inline void write_all(int fd, const std::string &s)
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

inline bool read_all(int fd, char *p, std::size_t len, int timeout_ms)
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

// a refused HELLO: REFUSED with the reason, then the broker closes; the
// reason as sent, or "" if that did not come
inline std::string expect_refused(int fd)
{
    char head[PUSHER_CTL_HEADER_SIZE];
    if (!read_all(fd, head, sizeof(head), 2000)) {
        return "";
    }
    pusher_ctl_header_t h;
    pusher_ctl_header_read(reinterpret_cast<const std::uint8_t *>(head), &h);
    std::string why(h.length, '\0');
    if (h.type != PUSHER_CTL_REFUSED || h.length > 4096
        || !read_all(fd, why.data(), why.size(), 2000))
    {
        return "";
    }
    char c;
    return read_all(fd, &c, 1, 2000) ? "" : why;
}

inline std::string framed(std::uint16_t type, const std::string &payload)
{
    std::string out(PUSHER_CTL_HEADER_SIZE, '\0');
    pusher_ctl_header_write(reinterpret_cast<std::uint8_t *>(out.data()), type,
                            static_cast<std::uint32_t>(payload.size()));
    return out + payload;
}

inline std::string fields(std::initializer_list<std::string_view> list)
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

inline std::vector<std::string> split(const std::string &payload)
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

// a fake nginx worker on the control socket (test_presence derives its
// worker with the presence messages)
struct fake_worker {
    int fd = -1;
    int slot = -1;

    ~fake_worker() { close_fd(); }

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

inline int connect_control()
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

// What the nginx master does as it loads nginx.conf: the app table (a JSON
// array) of configuration conf_time in "<control>.apps", written under a
// temporary name and renamed, mode 0600 (pusher_ctl.h)
inline void master_writes(std::int64_t conf_time, const std::string &apps,
                          bool debug = false)
{
    std::string path = g_control + ".apps";
    std::string tmp = path + ".tmp";
    std::string text = "{\"pid\":1,\"conf_time\":" + std::to_string(conf_time)
                       + (debug ? ",\"debug\":true" : "") + ",\"apps\":" + apps
                       + "}";
    unlink(tmp.c_str());
    int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    CHECK(fd >= 0);
    CHECK(write(fd, text.data(), text.size())
          == static_cast<ssize_t>(text.size()));
    close(fd);
    CHECK(rename(tmp.c_str(), path.c_str()) == 0);
}

// a worker's HELLO: it names the configuration it serves
inline std::string hello_text(int pid, std::int64_t conf_time)
{
    return "{\"pid\":" + std::to_string(pid) + ",\"conf_time\":"
           + std::to_string(conf_time) + "}";
}

// the conf_time of a table: one per distinct table, as each nginx.conf
// cycle has its own
inline std::int64_t conf_time_of(const std::string &apps)
{
    return static_cast<std::int64_t>(std::hash<std::string>{}(apps)
                                     % 1000000000000ULL)
           + 1;
}

// HELLO as worker pid of the configuration with the apps (a JSON array),
// which the master wrote; the WELCOME gives the slot and names our shm
inline void hello(fake_worker &w, int pid, const char *apps)
{
    std::int64_t conf_time = conf_time_of(apps);
    master_writes(conf_time, apps);
    w.fd = connect_control();
    CHECK(w.fd >= 0);
    w.send(PUSHER_CTL_HELLO, hello_text(pid, conf_time));
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

inline pusher_ring_t g_ring;
inline pusher_ring_reader_t g_reader;
inline std::vector<std::uint8_t> g_buf;

inline void map_segment()
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
inline std::deque<std::vector<std::string>> g_answers;
inline std::deque<record> g_records;

// other ring records a test keeps (test_api: TERMINATE): true if taken
inline bool (*g_ring_hook)(std::int32_t type, const std::uint8_t *data,
                           std::uint32_t len) = nullptr;

// reads what the ring holds: events to g_records, answers to g_answers
inline void pump_ring()
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
        if (g_ring_hook != nullptr && g_ring_hook(type, g_buf.data(), len)) {
            continue;
        }
        if (type == PUSHER_RING_PRESENCE_JOINED || type == PUSHER_RING_CACHE) {
            g_answers.push_back(split(std::string(
                reinterpret_cast<const char *>(g_buf.data()), len)));
            continue;
        }
        CHECK(type == PUSHER_RING_EVENT);
        pusher_ring_event_view_t v;
        CHECK(pusher_ring_event_decode(g_buf.data(), len, &v) == 0);
        // one record per event: a record of its own per channel here, in
        // the record's channel order, with the frame a worker builds
        const std::uint8_t *pos = v.channels;
        for (std::size_t i = 0; i < v.nchannels; i++) {
            pusher_str_t ch;
            pusher_ring_event_channel(&pos, &ch);
            record r;
            r.app_id.assign(v.app_id.data, v.app_id.len);
            r.channel.assign(ch.data, ch.len);
            r.socket_id.assign(v.socket_id.data, v.socket_id.len);
            std::string frame(pusher_ring_event_frame_size(&v, ch.len), '\0');
            CHECK(pusher_ring_event_frame(
                      reinterpret_cast<std::uint8_t *>(frame.data()), &v, &ch)
                  == frame.size());
            std::size_t hdr = static_cast<std::uint8_t>(frame[1]) == 126
                                  ? 4
                                  : (static_cast<std::uint8_t>(frame[1]) == 127
                                         ? 10 : 2);
            CHECK(static_cast<std::uint8_t>(frame[0]) == 0x81);
            r.json = frame.substr(hdr);
            cJSON *j = cJSON_ParseWithLength(r.json.data(), r.json.size());
            CHECK(j != nullptr);    // every record is valid JSON
            cJSON_Delete(j);
            g_records.push_back(std::move(r));
        }
    }
}

inline bool try_record(record &r)
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
inline std::vector<std::string> next_answer()
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

inline record next_record()
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

inline void expect_no_record()
{
    record r;
    if (try_record(r)) {
        fail("unexpected ring record: %s", r.json.c_str());
    }
}

// ---- expected texts -----------------------------------------------------

inline std::string escaped(const std::string &s)
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

inline std::string internal(const std::string &event, const std::string &channel,
                     const std::string &data)
{
    return "{\"event\":\"pusher_internal:" + event + "\",\"channel\":\""
           + channel + "\",\"data\":\"" + escaped(data) + "\"}";
}

// ---- broker -------------------------------------------------------------

// dir_template: a mkdtemp() template; the shm is shm_prefix and our pid
inline void start_broker(const char *binary, const char *dir_template,
                         const char *shm_prefix)
{
    std::snprintf(g_dir, sizeof(g_dir), "%s", dir_template);
    CHECK(mkdtemp(g_dir) != nullptr);
    g_control = std::string(g_dir) + "/control.sock";
    g_api = std::string(g_dir) + "/api.sock";
    g_log = std::string(g_dir) + "/broker.log";
    g_shm = shm_prefix + std::to_string(getpid());

    std::string api = "--api=unix:" + g_api;
    std::string control = "--control=" + g_control;
    std::string shm = "--shm=" + g_shm;
    // the tests play the nginx master: they write the app table
    std::string owner = "--config-owner=" + std::to_string(geteuid());

    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int fd = open(g_log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        execl(binary, binary, api.c_str(), control.c_str(), shm.c_str(),
              owner.c_str(), "--ring-size=4m", static_cast<char *>(nullptr));
        _exit(127);
    }
    g_broker = pid;

    for (int i = 0; i < 400; i++) {
        int fd = connect_control();
        if (fd >= 0) {
            close(fd);
            // past the restore of a starting broker (pusher_ctl.h): with
            // no worker attached it ends at PUSHER_CTL_RESTORE_MIN, and
            // the cases see the broker as it runs from then on
            usleep((PUSHER_CTL_RESTORE_MIN + 100) * 1000);
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

// a broker case ends with a clean stop: exit status 0 (under ASan, also no
// leak report)
inline void stop_broker_cleanly()
{
    // the broker is still alive and well
    CHECK(waitpid(g_broker, nullptr, WNOHANG) == 0);
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
}

// main() of a test: runs the cases (see the top of this file).  broker:
// each case gets a pusher-broker (argv[1]) of its own, in a directory made
// from dir_template and with the shm name shm_prefix and the case's pid.
inline int test_main(int argc, char **argv, const char *name, bool broker,
                     const char *dir_template = nullptr,
                     const char *shm_prefix = nullptr)
{
    int first = broker ? 2 : 1;
    if (argc < first) {
        std::fprintf(stderr, "usage: %s%s [--list] [FILTER...]\n", argv[0],
                     broker ? " PUSHER-BROKER" : "");
        return 2;
    }
    std::vector<test_case> &cases = test_cases();
    std::vector<std::string> filters;
    bool list = false;
    for (int i = first; i < argc; i++) {
        if (std::string_view(argv[i]) == "--list") {
            list = true;
        } else {
            filters.emplace_back(argv[i]);
        }
    }
    for (std::size_t i = 0; i < cases.size(); i++) {
        for (std::size_t j = 0; j < i; j++) {
            if (cases[i].name == cases[j].name) {
                std::fprintf(stderr, "%s: two cases named \"%s\"\n", name,
                             cases[i].name.c_str());
                return 2;
            }
        }
    }
    std::vector<bool> matched(filters.size(), false);
    std::vector<const test_case *> selected;
    for (const test_case &c : cases) {
        bool take = filters.empty();
        for (std::size_t f = 0; f < filters.size(); f++) {
            if (c.name.find(filters[f]) != std::string::npos) {
                matched[f] = true;
                take = true;
            }
        }
        if (take) {
            selected.push_back(&c);
        }
    }
    for (std::size_t f = 0; f < filters.size(); f++) {
        if (!matched[f]) {
            std::fprintf(stderr, "%s: no case matches \"%s\"\n", name,
                         filters[f].c_str());
            return 1;
        }
    }
    if (list) {
        for (const test_case *c : selected) {
            std::printf("%s\n", c->name.c_str());
        }
        return 0;
    }
    if (selected.empty()) {
        std::fprintf(stderr, "%s: no cases\n", name);
        return 1;
    }

    std::signal(SIGPIPE, SIG_IGN);
    std::size_t failed = 0;
    for (const test_case *c : selected) {
        std::fflush(stdout);
        std::fflush(stderr);
        pid_t pid = fork();
        if (pid < 0) {
            std::perror("fork");
            return 2;
        }
        if (pid == 0) {
            g_case = c->name.c_str();
            std::signal(SIGALRM, on_alarm);
            // a hang guard: the churn cases of broker_webhooks take ~10 s
            // under ASan
            alarm(60);
            if (broker) {
                start_broker(argv[1], dir_template, shm_prefix);
            }
            c->fn();
            if (broker) {
                stop_broker_cleanly();
            }
            cleanup();
            std::fflush(stdout);
            std::exit(0);
        }
        int status = 0;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            std::printf("ok: %s\n", c->name.c_str());
        } else {
            failed++;
            std::printf("FAIL: %s (%s %d)\n", c->name.c_str(),
                        WIFEXITED(status) ? "exit status" : "signal",
                        WIFEXITED(status) ? WEXITSTATUS(status)
                                          : WTERMSIG(status));
        }
    }
    std::printf("%s: %zu case(s), %zu failed\n", name, selected.size(),
                failed);
    return failed == 0 ? 0 : 1;
}
