/*
 * pusher-bench: a fan-out load generator for ngx-pusher and its peers.
 *
 * One process holds thousands of WebSocket subscribers (Pusher protocol 7,
 * or a plain WebSocket subscriber for nchan) on one or more epoll threads,
 * waits until all of them are subscribed, then publishes events over
 * HTTP/1.1 keep-alive connections (signed Pusher HTTP API requests, or plain
 * POSTs for nchan), at a fixed rate or as fast as the server answers, waits
 * for every delivery to arrive, and reports:
 *
 *   deliveries/s, trigger-to-receive latency percentiles, loss (a bitmap
 *   per connection), trigger throughput and errors, connects/s, and, given
 *   the server's pids, server CPU per delivery and memory per idle
 *   connection from /proc.
 *
 * Latency: the publisher puts a CLOCK_REALTIME timestamp (taken when the
 * request is first written) and a sequence number in every event's data:
 * {"t":<ns>,"n":<seq>,"p":"xxx..."} padded to --size bytes.  The receive
 * time is the kernel's receive timestamp of the subscriber socket
 * (SO_TIMESTAMPNS), so the time this client takes to get round to a socket
 * among thousands is not charged to the server; the time at which this
 * client read the bytes is reported beside it.
 *
 * --tls: the subscribers speak wss (OpenSSL, non-blocking, on the same
 * epoll loop); the publisher stays on plain http (--pub-port), so a ws and a
 * wss run differ only in the subscribers' transport.  OpenSSL reads the
 * socket through a BIO of ours that calls recvmsg(), so an event's receive
 * time is still the kernel's timestamp of the read that completed the TLS
 * record holding it.
 *
 * Every phase has a timeout and a watchdog alarm ends the process whatever
 * happens.  Hot path: one read buffer per thread, no allocation per message
 * (a connection keeps a small carry buffer for a frame split across reads).
 */

#include <arpa/inet.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>


namespace {


/* ------------------------------------------------------------------ */
/* small helpers                                                        */

int64_t
now_ns()
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}


/* payload timestamps: wall clock, comparable with kernel receive times */
int64_t
wall_ns()
{
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}


/* when a read's bytes arrived: the kernel's receive timestamp of the socket
   (SO_TIMESTAMPNS, CLOCK_REALTIME), and when this thread read them */
struct RxTime {
    int64_t mono;
    int64_t wall;
    int64_t kernel;
};


double
secs(int64_t ns)
{
    return double(ns) / 1e9;
}


bool g_quiet = false;

void
progress(const char *fmt, ...)
{
    if (g_quiet) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    std::fputs("pusher-bench: ", stderr);
    std::vfprintf(stderr, fmt, ap);
    std::fputc('\n', stderr);
    va_end(ap);
}


[[noreturn]] void
die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    std::fputs("pusher-bench: ", stderr);
    std::vfprintf(stderr, fmt, ap);
    std::fputc('\n', stderr);
    va_end(ap);
    std::exit(1);
}


const uint8_t *
find(const uint8_t *p, size_t len, std::string_view needle)
{
    return static_cast<const uint8_t *>(
        memmem(p, len, needle.data(), needle.size()));
}


/* parse unsigned decimal digits at p; returns the end or nullptr */
const uint8_t *
parse_u64(const uint8_t *p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;
    const uint8_t *start = p;
    while (p < end && *p >= '0' && *p <= '9') {
        v = v * 10 + uint64_t(*p - '0');
        p++;
    }
    if (p == start) {
        return nullptr;
    }
    *out = v;
    return p;
}


void
hex(const unsigned char *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0xf];
    }
}


/* xorshift64*: WebSocket masks need not be strong here */
uint64_t
rng()
{
    thread_local uint64_t s = uint64_t(now_ns()) ^
        (uint64_t(uintptr_t(&s)) << 17) ^ 0x9e3779b97f4a7c15ULL;
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 2685821657736338717ULL;
}


void
set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}


/* ------------------------------------------------------------------ */
/* log-linear histogram of nanoseconds: 64 sub-buckets per power of two,
   exact below 128 ns, under 1% error above                             */

class Histogram {
public:
    Histogram() : counts_(kBuckets, 0) {}

    void add(uint64_t v)
    {
        counts_[index(v)]++;
        total_++;
        max_ = std::max(max_, v);
        min_ = std::min(min_, v);
        sum_ += double(v);
    }

    void merge(const Histogram &o)
    {
        for (size_t i = 0; i < kBuckets; i++) {
            counts_[i] += o.counts_[i];
        }
        total_ += o.total_;
        max_ = std::max(max_, o.max_);
        min_ = std::min(min_, o.min_);
        sum_ += o.sum_;
    }

    uint64_t total() const { return total_; }
    uint64_t max() const { return total_ ? max_ : 0; }
    uint64_t min() const { return total_ ? min_ : 0; }
    double mean() const { return total_ ? sum_ / double(total_) : 0; }

    uint64_t percentile(double q) const
    {
        if (total_ == 0) {
            return 0;
        }
        uint64_t want = uint64_t(std::ceil(q * double(total_)));
        want = std::clamp<uint64_t>(want, 1, total_);
        uint64_t seen = 0;
        for (size_t i = 0; i < kBuckets; i++) {
            seen += counts_[i];
            if (seen >= want) {
                return std::clamp(value(i), min(), max());
            }
        }
        return max_;
    }

private:
    static constexpr size_t kBuckets = 58 * 64 + 128;

    static size_t index(uint64_t v)
    {
        if (v < 128) {
            return size_t(v);
        }
        int e = 63 - std::countl_zero(v);
        int shift = e - 6;
        return size_t(shift) * 64 + size_t(v >> shift);
    }

    static uint64_t value(size_t i)
    {
        if (i < 128) {
            return i;
        }
        int shift = int(i / 64) - 1;
        uint64_t m = i % 64 + 64;
        return (m << shift) + ((uint64_t(1) << shift) >> 1);
    }

    std::vector<uint64_t> counts_;
    uint64_t total_ = 0;
    uint64_t max_ = 0;
    uint64_t min_ = UINT64_MAX;
    double sum_ = 0;
};


/* ------------------------------------------------------------------ */
/* options                                                              */

enum class Target { pusher, nchan };

struct Options {
    std::string host = "127.0.0.1";
    uint16_t port = 8080;
    uint16_t pub_port = 0;          /* 0: --port */
    bool tls = false;               /* subscribers over wss */
    Target target = Target::pusher;
    std::string app_id = "1001";
    std::string key = "bench-key";
    std::string secret = "bench-secret";
    std::string channel = "bench";
    std::string event = "bench-event";
    std::string sub_path;           /* templates with {key} {channel} {app_id} */
    std::string pub_path;
    std::string label;

    long subscribers = 1000;
    int src_addrs = 0;              /* 0: one per 25,000 connections */
    int src_base = 1;               /* first source address 127.0.0.B */
    int threads = 1;
    int connect_concurrency = 512;
    double connect_timeout = 60;
    double idle = 0;

    bool burst = false;
    double rate = 0;
    double duration = 10;
    long events = -1;               /* -1: burst 2000, rate: rate * duration */
    int pub_conns = 0;              /* 0: burst 4, rate 1 */
    int pipeline = 0;               /* 0: burst 16, rate 64 */
    int size = 100;
    double pub_timeout = 60;
    double drain_timeout = 10;

    bool json = false;
    bool external = false;          /* another process publishes --events */
    bool coalesced = false;         /* the server coalesces: wait for the
                                       last event, not for every one */
    std::string ready_file;         /* created once subscribed (and idle) */
    std::vector<pid_t> server_pids;
};


void
usage()
{
    std::fputs(
"usage: pusher-bench [options]\n"
"  --host H --port P           server (127.0.0.1:8080)\n"
"  --tls                       subscribers over TLS (wss), not verified\n"
"  --pub-port P                the publisher's port, plain http (--port)\n"
"  --target pusher|nchan       protocol spoken (pusher)\n"
"  --app-id ID --key K --secret S   Pusher app (1001, bench-key, bench-secret)\n"
"  --channel CH --event NAME   channel and event name (bench, bench-event)\n"
"  --sub-path T --pub-path T   URL templates with {key} {channel} {app_id}\n"
"                              (pusher: /app/{key}?protocol=7&client=bench&version=1\n"
"                               and /apps/{app_id}/events; nchan: /sub/{channel}\n"
"                               and /pub/{channel})\n"
"  --subscribers N             WebSocket subscribers (1000; 0 = publish only)\n"
"  --src-addrs K               spread over 127.0.0.1..K (auto: 1 per 25k)\n"
"  --src-base B                source addresses start at 127.0.0.B (1)\n"
"  --threads T                 subscriber epoll threads (1)\n"
"  --connect-concurrency C     handshakes in flight (512)\n"
"  --connect-timeout S         all subscribed within S seconds (60)\n"
"  --idle S                    hold the idle subscribers S seconds first (0)\n"
"  --burst                     publish as fast as the server answers\n"
"  --rate R --duration D       publish R events/s for D seconds\n"
"  --events E                  events to publish (burst 2000, rate R*D)\n"
"  --pub-conns C --pipeline P  publisher connections, requests in flight each\n"
"                              (burst 4 x 16, rate 1 x 64)\n"
"  --size B                    event data bytes (100)\n"
"  --pub-timeout S             publishing must end within S (60; rate: D+S)\n"
"  --drain-timeout S           deliveries must arrive within S after (10)\n"
"  --external E                subscribe only: another process publishes E\n"
"                              events (its --subscribers 0); wait for them\n"
"                              up to --pub-timeout + --drain-timeout\n"
"  --ready-file F              create F once subscribed and idle (for scripts\n"
"                              that start that publisher)\n"
"  --coalesced                 the server coalesces the channel: events may be\n"
"                              dropped; wait until every subscriber has the\n"
"                              last one, report how many were coalesced away\n"
"                              and the latency of the last (its freshness)\n"
"  --server-pids P,P,..        sample their CPU and memory from /proc\n"
"  --label L                   scenario name for the report\n"
"  --json                      one JSON line on stdout, report on stderr\n"
"  --quiet                     no progress lines\n", stderr);
}


std::string
expand(std::string t, const Options &o)
{
    auto sub = [&](std::string_view var, const std::string &val) {
        size_t at;
        while ((at = t.find(var)) != std::string::npos) {
            t.replace(at, var.size(), val);
        }
    };
    sub("{key}", o.key);
    sub("{channel}", o.channel);
    sub("{app_id}", o.app_id);
    return t;
}


Options
parse_options(int argc, char **argv)
{
    Options o;
    enum {
        O_HOST = 256, O_PORT, O_TARGET, O_APP_ID, O_KEY, O_SECRET, O_CHANNEL,
        O_EVENT, O_SUB_PATH, O_PUB_PATH, O_LABEL, O_SUBS, O_SRC, O_THREADS,
        O_CONC, O_CTIMEOUT, O_IDLE, O_BURST, O_RATE, O_DURATION, O_EVENTS,
        O_PUBCONNS, O_PIPELINE, O_SIZE, O_PTIMEOUT, O_DTIMEOUT, O_JSON,
        O_PIDS, O_QUIET, O_HELP, O_SRC_BASE, O_EXTERNAL, O_READY, O_TLS,
        O_PUB_PORT, O_COALESCED
    };
    static const option longopts[] = {
        {"host", required_argument, nullptr, O_HOST},
        {"port", required_argument, nullptr, O_PORT},
        {"tls", no_argument, nullptr, O_TLS},
        {"pub-port", required_argument, nullptr, O_PUB_PORT},
        {"target", required_argument, nullptr, O_TARGET},
        {"app-id", required_argument, nullptr, O_APP_ID},
        {"key", required_argument, nullptr, O_KEY},
        {"secret", required_argument, nullptr, O_SECRET},
        {"channel", required_argument, nullptr, O_CHANNEL},
        {"event", required_argument, nullptr, O_EVENT},
        {"sub-path", required_argument, nullptr, O_SUB_PATH},
        {"pub-path", required_argument, nullptr, O_PUB_PATH},
        {"label", required_argument, nullptr, O_LABEL},
        {"subscribers", required_argument, nullptr, O_SUBS},
        {"src-addrs", required_argument, nullptr, O_SRC},
        {"src-base", required_argument, nullptr, O_SRC_BASE},
        {"external", required_argument, nullptr, O_EXTERNAL},
        {"ready-file", required_argument, nullptr, O_READY},
        {"threads", required_argument, nullptr, O_THREADS},
        {"connect-concurrency", required_argument, nullptr, O_CONC},
        {"connect-timeout", required_argument, nullptr, O_CTIMEOUT},
        {"idle", required_argument, nullptr, O_IDLE},
        {"burst", no_argument, nullptr, O_BURST},
        {"rate", required_argument, nullptr, O_RATE},
        {"duration", required_argument, nullptr, O_DURATION},
        {"events", required_argument, nullptr, O_EVENTS},
        {"pub-conns", required_argument, nullptr, O_PUBCONNS},
        {"pipeline", required_argument, nullptr, O_PIPELINE},
        {"size", required_argument, nullptr, O_SIZE},
        {"pub-timeout", required_argument, nullptr, O_PTIMEOUT},
        {"drain-timeout", required_argument, nullptr, O_DTIMEOUT},
        {"json", no_argument, nullptr, O_JSON},
        {"server-pids", required_argument, nullptr, O_PIDS},
        {"quiet", no_argument, nullptr, O_QUIET},
        {"coalesced", no_argument, nullptr, O_COALESCED},
        {"help", no_argument, nullptr, O_HELP},
        {nullptr, 0, nullptr, 0}};

    auto num = [](const char *s, const char *what) {
        char *end;
        double v = std::strtod(s, &end);
        if (*s == '\0' || *end != '\0' || !(v >= 0)) {
            die("bad value for --%s: %s", what, s);
        }
        return v;
    };

    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, nullptr)) != -1) {
        switch (c) {
        case O_HOST: o.host = optarg; break;
        case O_PORT: o.port = uint16_t(num(optarg, "port")); break;
        case O_TLS: o.tls = true; break;
        case O_PUB_PORT: o.pub_port = uint16_t(num(optarg, "pub-port")); break;
        case O_TARGET:
            if (std::strcmp(optarg, "pusher") == 0) {
                o.target = Target::pusher;
            } else if (std::strcmp(optarg, "nchan") == 0) {
                o.target = Target::nchan;
            } else {
                die("unknown --target %s (pusher, nchan)", optarg);
            }
            break;
        case O_APP_ID: o.app_id = optarg; break;
        case O_KEY: o.key = optarg; break;
        case O_SECRET: o.secret = optarg; break;
        case O_CHANNEL: o.channel = optarg; break;
        case O_EVENT: o.event = optarg; break;
        case O_SUB_PATH: o.sub_path = optarg; break;
        case O_PUB_PATH: o.pub_path = optarg; break;
        case O_LABEL: o.label = optarg; break;
        case O_SUBS: o.subscribers = long(num(optarg, "subscribers")); break;
        case O_SRC: o.src_addrs = int(num(optarg, "src-addrs")); break;
        case O_SRC_BASE: o.src_base = int(num(optarg, "src-base")); break;
        case O_EXTERNAL:
            o.external = true;
            o.events = long(num(optarg, "external"));
            break;
        case O_READY: o.ready_file = optarg; break;
        case O_THREADS: o.threads = int(num(optarg, "threads")); break;
        case O_CONC: o.connect_concurrency = int(num(optarg, "connect-concurrency")); break;
        case O_CTIMEOUT: o.connect_timeout = num(optarg, "connect-timeout"); break;
        case O_IDLE: o.idle = num(optarg, "idle"); break;
        case O_BURST: o.burst = true; break;
        case O_RATE: o.rate = num(optarg, "rate"); break;
        case O_DURATION: o.duration = num(optarg, "duration"); break;
        case O_EVENTS: o.events = long(num(optarg, "events")); break;
        case O_PUBCONNS: o.pub_conns = int(num(optarg, "pub-conns")); break;
        case O_PIPELINE: o.pipeline = int(num(optarg, "pipeline")); break;
        case O_SIZE: o.size = int(num(optarg, "size")); break;
        case O_PTIMEOUT: o.pub_timeout = num(optarg, "pub-timeout"); break;
        case O_DTIMEOUT: o.drain_timeout = num(optarg, "drain-timeout"); break;
        case O_JSON: o.json = true; break;
        case O_PIDS: {
            std::string s = optarg;
            size_t pos = 0;
            while (pos <= s.size()) {
                size_t comma = s.find(',', pos);
                std::string one = s.substr(pos, comma == std::string::npos
                                                     ? std::string::npos
                                                     : comma - pos);
                if (!one.empty()) {
                    o.server_pids.push_back(pid_t(num(one.c_str(), "server-pids")));
                }
                if (comma == std::string::npos) {
                    break;
                }
                pos = comma + 1;
            }
            break;
        }
        case O_QUIET: g_quiet = true; break;
        case O_COALESCED: o.coalesced = true; break;
        case O_HELP:
        case 'h':
            usage();
            std::exit(0);
        default:
            usage();
            std::exit(1);
        }
    }
    if (optind != argc) {
        usage();
        std::exit(1);
    }

    if (o.rate > 0 && o.burst) {
        die("--rate and --burst exclude each other");
    }
    if (o.external && (o.rate > 0 || o.burst)) {
        die("--external excludes --rate and --burst");
    }
    if (o.events < 0) {
        o.events = o.burst ? 2000 : long(std::llround(o.rate * o.duration));
    }
    if (!o.burst && o.rate <= 0 && !o.external) {
        o.events = 0;               /* subscribe (and idle) only */
    }
    if (o.pub_conns <= 0) {
        o.pub_conns = o.burst ? 4 : 1;
    }
    if (o.pipeline <= 0) {
        o.pipeline = o.burst ? 16 : 64;
    }
    if (o.src_addrs <= 0) {
        o.src_addrs = int((o.subscribers + 24999) / 25000);
        o.src_addrs = std::max(o.src_addrs, 1);
    }
    if (o.pub_port == 0) {
        o.pub_port = o.port;
    }
    if (o.src_base < 1 || o.src_addrs + o.src_base > 255) {
        die("--src-base + --src-addrs at most 255");
    }
    o.threads = std::clamp(o.threads, 1, 64);
    o.connect_concurrency = std::max(o.connect_concurrency, 1);
    if (o.sub_path.empty()) {
        o.sub_path = o.target == Target::pusher
            ? "/app/{key}?protocol=7&client=bench&version=1"
            : "/sub/{channel}";
    }
    if (o.pub_path.empty()) {
        o.pub_path = o.target == Target::pusher ? "/apps/{app_id}/events"
                                                : "/pub/{channel}";
    }
    o.sub_path = expand(o.sub_path, o);
    o.pub_path = expand(o.pub_path, o);
    if (o.label.empty()) {
        o.label = o.burst ? "burst" : o.events ? "rate" : "idle";
    }
    return o;
}


/* ------------------------------------------------------------------ */
/* server processes: CPU and memory from /proc                          */

struct ProcSample {
    double cpu = 0;         /* utime + stime, seconds */
    long rss_kb = 0;
    long anon_kb = 0;
    int alive = 0;
};


ProcSample
sample_procs(const std::vector<pid_t> &pids)
{
    ProcSample s;
    static const long tck = sysconf(_SC_CLK_TCK);
    for (pid_t pid : pids) {
        char path[64], buf[4096];
        std::snprintf(path, sizeof(path), "/proc/%d/stat", int(pid));
        FILE *f = std::fopen(path, "r");
        if (f == nullptr) {
            continue;
        }
        size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
        std::fclose(f);
        buf[n] = '\0';
        char *p = std::strrchr(buf, ')');
        if (p == nullptr) {
            continue;
        }
        /* fields after "(comm)": 3 state ... 14 utime 15 stime */
        unsigned long long ut = 0, st = 0;
        int field = 2;
        for (char *tok = std::strtok(p + 1, " "); tok;
             tok = std::strtok(nullptr, " ")) {
            field++;
            if (field == 14) {
                ut = std::strtoull(tok, nullptr, 10);
            } else if (field == 15) {
                st = std::strtoull(tok, nullptr, 10);
                break;
            }
        }
        s.cpu += double(ut + st) / double(tck);
        s.alive++;

        std::snprintf(path, sizeof(path), "/proc/%d/status", int(pid));
        f = std::fopen(path, "r");
        if (f == nullptr) {
            continue;
        }
        char line[256];
        while (std::fgets(line, sizeof(line), f)) {
            if (std::strncmp(line, "VmRSS:", 6) == 0) {
                s.rss_kb += std::strtol(line + 6, nullptr, 10);
            } else if (std::strncmp(line, "RssAnon:", 8) == 0) {
                s.anon_kb += std::strtol(line + 8, nullptr, 10);
            }
        }
        std::fclose(f);
    }
    return s;
}


/* ------------------------------------------------------------------ */
/* state shared by the threads                                          */

struct Shared {
    explicit Shared(const Options &opt)
        : o(opt), stamps(new std::atomic<int64_t>[size_t(std::max(opt.events, 1L))]{}) {}

    const Options &o;
    sockaddr_in dst{};              /* the subscribers' */
    sockaddr_in pub_dst{};          /* the publisher's */
    SSL_CTX *tls = nullptr;         /* --tls */
    std::string upgrade;            /* the HTTP upgrade request */
    std::string subscribe;          /* pusher:subscribe payload */
    std::string marker_t;           /* what precedes the timestamp ... */
    std::string marker_n;           /* ... and the sequence number */
    std::string marker_t_raw;       /* the same, unescaped */
    std::string marker_n_raw;
    bool bitmaps = true;

    std::atomic<bool> stop{false};
    std::atomic<bool> opening{true};
    std::atomic<bool> publishing{false};
    std::atomic<int64_t> pub_t0{INT64_MAX};     /* events older are stale */

    std::atomic<long> subscribed{0};    /* ever reached subscribed */
    std::atomic<long> counted{0};       /* subscribed before publishing */
    std::atomic<long> failed{0};
    std::atomic<long> dropped{0};       /* lost after subscribing */
    std::atomic<long> received{0};      /* event frames, counted conns */
    std::atomic<long> got_last{0};      /* counted conns with the last event */
    /* the publisher's timestamp of each event (0: not sent, or another
       process publishes), for the staleness of what subscribers have */
    std::unique_ptr<std::atomic<int64_t>[]> stamps;

    std::mutex err_mu;
    std::string first_error;            /* first failure, for the report */
    std::string tls_info;               /* version, cipher, group negotiated */

    void note_error(const std::string &e)
    {
        std::lock_guard<std::mutex> lk(err_mu);
        if (first_error.empty()) {
            first_error = e;
        }
    }

    /* what the first TLS handshake agreed on, for the report */
    void note_tls(SSL *ssl)
    {
        std::lock_guard<std::mutex> lk(err_mu);
        if (tls_info.empty()) {
            int group = SSL_get_negotiated_group(ssl);
            const char *gname = group ? OBJ_nid2sn(group & ~TLSEXT_nid_unknown) : nullptr;
            tls_info = std::string(SSL_get_version(ssl)) + " "
                + SSL_get_cipher_name(ssl) + (gname ? std::string(" ") + gname : "");
        }
    }
};


/* ------------------------------------------------------------------ */
/* subscribers                                                          */

enum SubState : uint8_t {
    S_IDLE, S_CONNECTING, S_TLS, S_HTTP, S_WAIT_EST, S_WAIT_SUB,
    S_SUBSCRIBED, S_CLOSED
};


struct Sub {
    int fd = -1;
    SubState state = S_IDLE;
    bool counted = false;       /* subscribed before publishing began */
    bool was_subscribed = false;
    bool pinged = false;        /* answered a pusher:ping at least once */
    bool read_wants_write = false;  /* SSL_read() must be retried once
                                       the socket is writable */
    uint8_t frag_op = 0;
    uint32_t uniq = 0;          /* distinct events received */
    bool got_last = false;      /* the last event published arrived */
    int64_t last_n = -1;
    SSL *ssl = nullptr;         /* --tls */
    int64_t rx_kernel = 0;      /* receive timestamp of the last TLS read */
    std::string in;             /* unparsed tail carried to the next read */
    std::string out;            /* bytes the socket did not take yet */
    std::string frag;           /* fragmented message being assembled */
};


/* ------------------------------------------------------------------ */
/* TLS                                                                  */

/* one read with the kernel's receive timestamp (0 if none came) */
ssize_t
recv_stamped(int fd, void *buf, size_t len, int64_t *kernel)
{
    iovec iov{buf, len};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(timespec)) + 64];
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control;
    mh.msg_controllen = sizeof(control);
    ssize_t n = recvmsg(fd, &mh, 0);
    *kernel = 0;
    for (cmsghdr *cm = n > 0 ? CMSG_FIRSTHDR(&mh) : nullptr; cm;
         cm = CMSG_NXTHDR(&mh, cm))
    {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS) {
            timespec ts;
            std::memcpy(&ts, CMSG_DATA(cm), sizeof(ts));
            *kernel = int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
        }
    }
    return n;
}


/*
 * The socket under a subscriber's TLS connection.  SSL_set_fd() would read
 * with read(2) and lose the receive timestamp; this BIO reads with
 * recvmsg() and leaves the timestamp in the Sub, where it stays until the
 * next read that returns bytes: the bytes of the record SSL_read() just
 * decrypted arrived by that read at the latest.
 */
int
sock_bio_read(BIO *b, char *buf, int len)
{
    Sub *s = static_cast<Sub *>(BIO_get_data(b));
    BIO_clear_retry_flags(b);
    int64_t kernel;
    ssize_t n = recv_stamped(s->fd, buf, size_t(len), &kernel);
    if (n > 0) {
        s->rx_kernel = kernel;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        BIO_set_retry_read(b);
    }
    return int(n);
}


int
sock_bio_write(BIO *b, const char *data, int len)
{
    Sub *s = static_cast<Sub *>(BIO_get_data(b));
    BIO_clear_retry_flags(b);
    ssize_t n = send(s->fd, data, size_t(len), MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        BIO_set_retry_write(b);
    }
    return int(n);
}


long
sock_bio_ctrl(BIO *, int cmd, long, void *)
{
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;   /* send() keeps nothing back */
}


BIO_METHOD *
sock_bio_method()
{
    static BIO_METHOD *m = [] {
        BIO_METHOD *bm = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                                      "pusher-bench socket");
        if (bm == nullptr || !BIO_meth_set_read(bm, sock_bio_read)
            || !BIO_meth_set_write(bm, sock_bio_write)
            || !BIO_meth_set_ctrl(bm, sock_bio_ctrl))
        {
            die("BIO_meth_new failed");
        }
        return bm;
    }();
    return m;
}


/*
 * The client context: no certificate check (the bench's own throw-away
 * certificate on loopback), no session resumption, TLS 1.3 suites in a
 * browser's order (AES-128-GCM first).  OpenSSL's buffers are released
 * while empty, as nginx's are, so 10,000 connections stay small here too;
 * read-ahead takes what the socket holds in one recvmsg() rather than a
 * record header and a body at a time.
 */
SSL_CTX *
make_tls_ctx()
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == nullptr) {
        die("SSL_CTX_new failed");
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                                  "TLS_CHACHA20_POLY1305_SHA256");
    /* a write that would block is retried from Sub::out, which may have
       grown (and moved) by then, and may go out in parts */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE
                          | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
                          | SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_read_ahead(ctx, 1);
    return ctx;
}


/* the reason of the last OpenSSL error, or of the syscall that failed */
std::string
tls_error(const char *what, int err)
{
    unsigned long e = ERR_get_error();
    char reason[256] = "";
    if (e != 0) {
        ERR_error_string_n(e, reason, sizeof(reason));
    } else if (err == SSL_ERROR_SYSCALL && errno != 0) {
        std::snprintf(reason, sizeof(reason), "%s", std::strerror(errno));
    } else {
        std::snprintf(reason, sizeof(reason), "SSL_get_error %d", err);
    }
    ERR_clear_error();
    return std::string(what) + ": " + reason;
}


class SubWorker {
public:
    SubWorker(Shared &sh, int id, long first, long count)
        : sh_(sh), o_(sh.o), id_(id), first_(first), subs_(size_t(count)),
          buf_(kBufSize)
    {
        if (sh_.bitmaps) {
            words_ = size_t((o_.events + 63) / 64);
            bits_.assign(size_t(count) * words_, 0);
        }
        conc_ = std::max(1, o_.connect_concurrency / o_.threads);
    }

    void run();

    /* results, read after join */
    Histogram hist;             /* trigger to kernel receive */
    Histogram hist_read;        /* trigger to this thread reading it */
    Histogram hist_last;        /* the last event: trigger to kernel receive */
    Histogram hist_stale;       /* at each newer event received: how long
                                   the oldest state not seen yet had been
                                   triggered (its latency without gaps) */
    long events_rx = 0;
    long no_kernel_ts = 0;      /* reads without a receive timestamp */         /* event frames on counted conns */
    long dups = 0;
    long reorders = 0;
    long unexpected = 0;        /* sequence numbers out of range */
    long stale = 0;             /* stamped before this run published */
    long pusher_pings = 0;
    long ws_pings = 0;
    long server_errors = 0;     /* pusher:error / subscription_error */
    long closes = 0;            /* close frames received */
    long other_msgs = 0;
    int64_t first_rx = 0;
    int64_t last_rx = 0;

    const std::vector<Sub> &subs() const { return subs_; }

private:
    static constexpr size_t kBufSize = 2 << 20;
    static constexpr size_t kMaxFrame = 1 << 20;

    void open_more();
    void on_connected(uint32_t i);
    void on_event_ready(uint32_t i, uint32_t events);
    void tls_start(uint32_t i);
    void tls_handshake(uint32_t i);
    void on_readable(uint32_t i);
    void read_tls(uint32_t i);
    void tls_read_error(uint32_t i, int rc);
    void on_bytes(uint32_t i, size_t n, int64_t kernel);
    bool on_http(uint32_t i, const uint8_t *&p, const uint8_t *end);
    void parse_frames(uint32_t i, uint8_t *p, uint8_t *end, const RxTime &now);
    void on_message(uint32_t i, const uint8_t *p, size_t len, const RxTime &now);
    bool on_event(uint32_t i, const uint8_t *p, size_t len, const RxTime &now);
    void send_frame(uint32_t i, unsigned op, const void *data, size_t len);
    void send_raw(uint32_t i, const char *data, size_t len);
    ssize_t write_some(uint32_t i, const char *data, size_t len);
    void flush(uint32_t i);
    void arm(uint32_t i, bool out);
    void fail(uint32_t i, const char *why);
    void close_sub(uint32_t i);
    static void release(Sub &s);
    void set_subscribed(uint32_t i);

    Shared &sh_;
    const Options &o_;
    [[maybe_unused]] int id_;     /* thread number, for debugging */
    long first_;
    std::vector<Sub> subs_;
    std::vector<uint8_t> buf_;
    std::vector<uint64_t> bits_;
    size_t words_ = 0;
    int ep_ = -1;
    size_t next_open_ = 0;
    int pending_ = 0;
    int conc_;
    long rx_batch_ = 0;
};


void
SubWorker::run()
{
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    if (ep_ < 0) {
        die("epoll_create1: %s", std::strerror(errno));
    }
    epoll_event evs[512];

    while (!sh_.stop.load(std::memory_order_relaxed)) {
        open_more();
        int n = epoll_wait(ep_, evs, 512, 20);
        if (n < 0 && errno != EINTR) {
            die("epoll_wait: %s", std::strerror(errno));
        }
        for (int k = 0; k < n; k++) {
            on_event_ready(evs[k].data.u32, evs[k].events);
        }
        if (rx_batch_) {
            sh_.received.fetch_add(rx_batch_, std::memory_order_relaxed);
            rx_batch_ = 0;
        }
    }

    for (Sub &s : subs_) {
        release(s);
    }
    close(ep_);
}


void
SubWorker::on_event_ready(uint32_t i, uint32_t events)
{
    Sub &s = subs_[i];
    if (s.fd < 0) {
        return;
    }
    if (s.state == S_CONNECTING) {
        on_connected(i);
        return;
    }
    if (s.state == S_TLS) {
        tls_handshake(i);
        return;
    }
    if ((events & EPOLLOUT) && !s.out.empty()) {
        flush(i);
    }
    if (s.fd >= 0 && ((events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                      || ((events & EPOLLOUT) && s.read_wants_write)))
    {
        on_readable(i);
    }
}


void
SubWorker::open_more()
{
    while (next_open_ < subs_.size() && pending_ < conc_
           && sh_.opening.load(std::memory_order_relaxed))
    {
        uint32_t i = uint32_t(next_open_++);
        Sub &s = subs_[i];
        long global = first_ + long(i);

        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            s.state = S_CLOSED;
            sh_.failed++;
            sh_.note_error(std::string("socket: ") + std::strerror(errno));
            if (errno == EMFILE || errno == ENFILE) {
                /* no point in trying the rest */
                long rest = long(subs_.size() - next_open_);
                next_open_ = subs_.size();
                sh_.failed += rest;
            }
            return;
        }
        set_nodelay(fd);
        int on = 1;
        setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof(on));

        if (o_.src_addrs > 1 || o_.src_base > 1) {
            int one = 1;
            setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
            sockaddr_in src{};
            src.sin_family = AF_INET;
            src.sin_addr.s_addr = htonl(0x7f000000u + uint32_t(o_.src_base)
                                      + uint32_t(global % o_.src_addrs));
            if (bind(fd, reinterpret_cast<sockaddr *>(&src), sizeof(src)) < 0) {
                sh_.note_error(std::string("bind: ") + std::strerror(errno));
                close(fd);
                s.state = S_CLOSED;
                sh_.failed++;
                continue;
            }
        }

        int rc = connect(fd, reinterpret_cast<const sockaddr *>(&sh_.dst),
                         sizeof(sh_.dst));
        if (rc < 0 && errno != EINPROGRESS) {
            sh_.note_error(std::string("connect: ") + std::strerror(errno));
            close(fd);
            s.state = S_CLOSED;
            sh_.failed++;
            continue;
        }
        s.fd = fd;
        s.state = S_CONNECTING;
        pending_++;
        epoll_event ev{};
        ev.events = EPOLLOUT | EPOLLIN;
        ev.data.u32 = i;
        epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
    }
}


void
SubWorker::on_connected(uint32_t i)
{
    Sub &s = subs_[i];
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
        errno = err;
        fail(i, "connect");
        return;
    }
    if (sh_.tls) {
        tls_start(i);
        return;
    }
    s.state = S_HTTP;
    arm(i, false);
    send_raw(i, sh_.upgrade.data(), sh_.upgrade.size());
}


void
SubWorker::tls_start(uint32_t i)
{
    Sub &s = subs_[i];
    s.ssl = SSL_new(sh_.tls);
    BIO *bio = BIO_new(sock_bio_method());
    if (s.ssl == nullptr || bio == nullptr) {
        BIO_free(bio);
        errno = 0;
        fail(i, tls_error("SSL_new", 0).c_str());
        return;
    }
    BIO_set_data(bio, &s);      /* subs_ never moves: sized once */
    BIO_set_init(bio, 1);
    SSL_set_bio(s.ssl, bio, bio);
    SSL_set_connect_state(s.ssl);
    s.state = S_TLS;
    tls_handshake(i);
}


/* one step of the handshake; the upgrade request follows it */
void
SubWorker::tls_handshake(uint32_t i)
{
    Sub &s = subs_[i];
    ERR_clear_error();
    int rc = SSL_do_handshake(s.ssl);
    if (rc == 1) {
        sh_.note_tls(s.ssl);
        s.state = S_HTTP;
        arm(i, false);
        send_raw(i, sh_.upgrade.data(), sh_.upgrade.size());
        return;
    }
    int err = SSL_get_error(s.ssl, rc);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
        arm(i, err == SSL_ERROR_WANT_WRITE);
        return;
    }
    std::string why = tls_error("TLS handshake", err);
    errno = 0;
    fail(i, why.c_str());
}


void
SubWorker::fail(uint32_t i, const char *why)
{
    Sub &s = subs_[i];
    char msg[256];
    std::snprintf(msg, sizeof(msg), "subscriber %ld: %s%s%s", first_ + long(i),
                  why, errno ? ": " : "", errno ? std::strerror(errno) : "");
    sh_.note_error(msg);
    if (s.state != S_SUBSCRIBED) {
        sh_.failed++;
        pending_--;
    }
    close_sub(i);
}


void
SubWorker::close_sub(uint32_t i)
{
    Sub &s = subs_[i];
    if (s.state == S_SUBSCRIBED) {
        sh_.dropped++;
    }
    release(s);
    s.state = S_CLOSED;
    std::string().swap(s.in);
    std::string().swap(s.out);
    std::string().swap(s.frag);
}


/* the socket and its TLS state (no close_notify: the bench just hangs up) */
void
SubWorker::release(Sub &s)
{
    if (s.ssl != nullptr) {
        SSL_free(s.ssl);        /* and the BIO */
        s.ssl = nullptr;
    }
    if (s.fd >= 0) {
        close(s.fd);
        s.fd = -1;
    }
}


void
SubWorker::set_subscribed(uint32_t i)
{
    Sub &s = subs_[i];
    s.state = S_SUBSCRIBED;
    s.was_subscribed = true;
    pending_--;
    sh_.subscribed++;
    /* a subscription confirmed before the publisher starts sees every event */
    if (!sh_.publishing.load()) {
        s.counted = true;
        sh_.counted++;
    }
}


void
SubWorker::send_raw(uint32_t i, const char *data, size_t len)
{
    Sub &s = subs_[i];
    if (!s.out.empty()) {
        s.out.append(data, len);
        return;
    }
    ssize_t n = write_some(i, data, len);
    if (n < 0) {
        return;
    }
    if (size_t(n) < len) {
        s.out.assign(data + n, len - size_t(n));
        arm(i, true);
    }
}


/*
 * Bytes the socket (or SSL_write()) took, 0 if it would block, -1 after
 * fail().  A TLS write that would block must be retried with the same
 * bytes: they stay at the front of Sub::out, and flush() retries from there.
 */
ssize_t
SubWorker::write_some(uint32_t i, const char *data, size_t len)
{
    Sub &s = subs_[i];
    if (s.ssl == nullptr) {
        ssize_t n = send(s.fd, data, len, MSG_NOSIGNAL);
        if (n >= 0) {
            return n;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return 0;
        }
        fail(i, "send");
        return -1;
    }
    ERR_clear_error();
    int n = SSL_write(s.ssl, data, int(std::min<size_t>(len, INT32_MAX)));
    if (n > 0) {
        return n;
    }
    int err = SSL_get_error(s.ssl, n);
    if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
        return 0;
    }
    std::string why = tls_error("TLS write", err);
    errno = 0;
    fail(i, why.c_str());
    return -1;
}


void
SubWorker::flush(uint32_t i)
{
    Sub &s = subs_[i];
    ssize_t n = write_some(i, s.out.data(), s.out.size());
    if (n <= 0) {
        return;
    }
    s.out.erase(0, size_t(n));
    if (s.out.empty()) {
        arm(i, s.read_wants_write);
    }
}


/* wait for readable, and for writable too when something waits for it */
void
SubWorker::arm(uint32_t i, bool out)
{
    epoll_event ev{};
    ev.events = EPOLLIN | (out ? uint32_t(EPOLLOUT) : 0u);
    ev.data.u32 = i;
    epoll_ctl(ep_, EPOLL_CTL_MOD, subs_[i].fd, &ev);
}


void
SubWorker::send_frame(uint32_t i, unsigned op, const void *data, size_t len)
{
    char frame[14 + 512];
    if (len > 512) {
        len = 512;      /* we only ever send small control-ish frames */
    }
    size_t h = 0;
    frame[h++] = char(0x80 | op);
    if (len < 126) {
        frame[h++] = char(0x80 | len);
    } else {
        frame[h++] = char(0x80 | 126);
        frame[h++] = char(len >> 8);
        frame[h++] = char(len & 0xff);
    }
    uint32_t m = uint32_t(rng());
    uint8_t mask[4];
    std::memcpy(mask, &m, 4);
    std::memcpy(frame + h, mask, 4);
    h += 4;
    const uint8_t *src = static_cast<const uint8_t *>(data);
    for (size_t k = 0; k < len; k++) {
        frame[h + k] = char(src[k] ^ mask[k & 3]);
    }
    send_raw(i, frame, h + len);
}


void
SubWorker::on_readable(uint32_t i)
{
    Sub &s = subs_[i];
    if (s.ssl) {
        read_tls(i);
        return;
    }
    int64_t kernel;
    ssize_t n = recv_stamped(s.fd, buf_.data() + s.in.size(),
                             kBufSize - s.in.size(), &kernel);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            return;
        }
        if (n == 0) {
            errno = 0;
        }
        fail(i, n == 0 ? "closed by server" : "read");
        return;
    }
    on_bytes(i, size_t(n), kernel);
}


/*
 * Every record OpenSSL can give, until it needs the socket again: a record
 * left decrypted or buffered inside OpenSSL (read-ahead) would raise no
 * epoll event.  Each record is parsed as it comes, with the timestamp of
 * the read that brought it.
 */
void
SubWorker::read_tls(uint32_t i)
{
    Sub &s = subs_[i];
    if (s.read_wants_write) {
        s.read_wants_write = false;
        arm(i, !s.out.empty());
    }
    while (s.fd >= 0) {
        size_t room = std::min<size_t>(kBufSize - s.in.size(), INT32_MAX);
        ERR_clear_error();
        errno = 0;
        int n = SSL_read(s.ssl, buf_.data() + s.in.size(), int(room));
        if (n <= 0) {
            tls_read_error(i, n);
            return;
        }
        on_bytes(i, size_t(n), s.rx_kernel);
    }
}


void
SubWorker::tls_read_error(uint32_t i, int rc)
{
    Sub &s = subs_[i];
    int err = SSL_get_error(s.ssl, rc);
    switch (err) {
    case SSL_ERROR_WANT_READ:
        return;
    case SSL_ERROR_WANT_WRITE:      /* e.g. a key update answer */
        s.read_wants_write = true;
        arm(i, true);
        return;
    case SSL_ERROR_ZERO_RETURN:
        errno = 0;
        fail(i, "closed by server (close_notify)");
        return;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0 && errno == 0) {
            fail(i, "closed by server");
            return;
        }
        [[fallthrough]];
    default: {
        std::string why = tls_error("TLS read", err);
        errno = 0;
        fail(i, why.c_str());
    }
    }
}


/* n new bytes at buf_ + the carried tail's size: parse them with the tail */
void
SubWorker::on_bytes(uint32_t i, size_t n, int64_t kernel)
{
    Sub &s = subs_[i];
    RxTime now{now_ns(), wall_ns(), kernel};
    if (now.kernel == 0) {
        now.kernel = now.wall;
        no_kernel_ts++;
    }
    uint8_t *buf = buf_.data();
    size_t carry = s.in.size();
    if (carry) {
        std::memcpy(buf, s.in.data(), carry);
        s.in.clear();
    }
    const uint8_t *p = buf;
    uint8_t *end = buf + carry + n;

    if (s.state == S_HTTP) {
        if (!on_http(i, p, end)) {
            return;
        }
    }
    parse_frames(i, const_cast<uint8_t *>(p), end, now);
}


/* the upgrade response; true when p points at the first WebSocket byte */
bool
SubWorker::on_http(uint32_t i, const uint8_t *&p, const uint8_t *end)
{
    Sub &s = subs_[i];
    const uint8_t *hdr_end = find(p, size_t(end - p), "\r\n\r\n");
    if (hdr_end == nullptr) {
        if (end - p > 16384) {
            errno = 0;
            fail(i, "upgrade response too long");
            return false;
        }
        s.in.assign(reinterpret_cast<const char *>(p), size_t(end - p));
        return false;
    }
    if (end - p < 12 || std::memcmp(p + 8, " 101", 4) != 0) {
        std::string line(reinterpret_cast<const char *>(p),
                         size_t(std::min<ptrdiff_t>(hdr_end - p, 80)));
        line = line.substr(0, line.find('\r'));
        errno = 0;
        fail(i, ("upgrade refused: " + line).c_str());
        return false;
    }
    p = hdr_end + 4;
    if (o_.target == Target::pusher) {
        s.state = S_WAIT_EST;
    } else {
        set_subscribed(i);
    }
    return true;
}


void
SubWorker::parse_frames(uint32_t i, uint8_t *p, uint8_t *end, const RxTime &now)
{
    Sub &s = subs_[i];
    while (end - p >= 2) {
        unsigned b0 = p[0], b1 = p[1];
        unsigned op = b0 & 0x0f;
        bool fin = (b0 & 0x80) != 0;
        bool masked = (b1 & 0x80) != 0;
        uint64_t len = b1 & 0x7f;
        size_t h = 2;
        if (len == 126) {
            if (end - p < 4) {
                break;
            }
            len = uint64_t(p[2]) << 8 | p[3];
            h = 4;
        } else if (len == 127) {
            if (end - p < 10) {
                break;
            }
            len = 0;
            for (int k = 0; k < 8; k++) {
                len = len << 8 | p[2 + k];
            }
            h = 10;
        }
        if (len > kMaxFrame) {
            errno = 0;
            fail(i, "frame too large");
            return;
        }
        size_t mh = masked ? 4 : 0;
        if (uint64_t(end - p) < h + mh + len) {
            break;
        }
        uint8_t *payload = p + h + mh;
        if (masked) {
            for (uint64_t k = 0; k < len; k++) {
                payload[k] ^= p[h + (k & 3)];
            }
        }
        p = payload + len;

        switch (op) {
        case 0x1:
        case 0x2:
            if (fin) {
                on_message(i, payload, size_t(len), now);
            } else {
                s.frag_op = uint8_t(op);
                s.frag.assign(reinterpret_cast<char *>(payload), size_t(len));
            }
            break;
        case 0x0:
            s.frag.append(reinterpret_cast<char *>(payload), size_t(len));
            if (fin) {
                std::string msg;
                msg.swap(s.frag);
                on_message(i, reinterpret_cast<const uint8_t *>(msg.data()),
                           msg.size(), now);
            }
            break;
        case 0x8: {
            closes++;
            unsigned code = len >= 2 ? unsigned(payload[0]) << 8 | payload[1] : 1005;
            char why[160];
            std::snprintf(why, sizeof(why), "close frame %u %.*s", code,
                          len > 2 ? int(std::min<uint64_t>(len - 2, 100)) : 0,
                          reinterpret_cast<char *>(payload + 2));
            errno = 0;
            fail(i, why);
            return;
        }
        case 0x9:
            ws_pings++;
            send_frame(i, 0xA, payload, size_t(len));
            break;
        case 0xA:
            break;
        default:
            errno = 0;
            fail(i, "bad opcode");
            return;
        }
        if (s.fd < 0) {
            return;
        }
    }
    if (p < end) {
        s.in.assign(reinterpret_cast<char *>(p), size_t(end - p));
    }
}


/* a bench event: record latency and sequence; false if it is not one */
bool
SubWorker::on_event(uint32_t i, const uint8_t *p, size_t len, const RxTime &now)
{
    const uint8_t *end = p + len;
    const std::string *mt = &sh_.marker_t, *mn = &sh_.marker_n;
    const uint8_t *m = find(p, len, *mt);
    if (m == nullptr) {
        mt = &sh_.marker_t_raw;
        mn = &sh_.marker_n_raw;
        m = find(p, len, *mt);
        if (m == nullptr) {
            return false;
        }
    }
    uint64_t t, n;
    const uint8_t *q = parse_u64(m + mt->size(), end, &t);
    if (q == nullptr || size_t(end - q) < mn->size()
        || std::memcmp(q, mn->data(), mn->size()) != 0)
    {
        return false;
    }
    q = parse_u64(q + mn->size(), end, &n);
    if (q == nullptr) {
        return false;
    }

    Sub &s = subs_[i];
    if (!s.counted) {
        return true;
    }
    if (int64_t(t) < sh_.pub_t0.load(std::memory_order_relaxed)) {
        stale++;            /* a replay of an earlier run's event */
        return true;
    }
    events_rx++;
    rx_batch_++;
    if (first_rx == 0) {
        first_rx = now.mono;
    }
    last_rx = now.mono;
    hist.add(now.kernel > int64_t(t) ? uint64_t(now.kernel - int64_t(t)) : 0);
    hist_read.add(now.wall > int64_t(t) ? uint64_t(now.wall - int64_t(t)) : 0);

    if (n >= uint64_t(o_.events)) {
        unexpected++;
        return true;
    }
    if (int64_t(n) > s.last_n) {
        int64_t oldest = sh_.stamps[size_t(s.last_n + 1)].load(std::memory_order_relaxed);
        if (oldest == 0 || oldest > int64_t(t)) {
            oldest = int64_t(t);
        }
        hist_stale.add(now.kernel > oldest ? uint64_t(now.kernel - oldest) : 0);
    }
    if (n == uint64_t(o_.events - 1) && !s.got_last) {
        /* the freshness of the last state: under coalescing, when the
           latest of the run arrived */
        s.got_last = true;
        hist_last.add(now.kernel > int64_t(t) ? uint64_t(now.kernel - int64_t(t)) : 0);
        sh_.got_last.fetch_add(1, std::memory_order_relaxed);
    }
    if (int64_t(n) < s.last_n) {
        reorders++;
    } else {
        s.last_n = int64_t(n);
    }
    if (sh_.bitmaps) {
        uint64_t &w = bits_[size_t(i) * words_ + n / 64];
        uint64_t bit = uint64_t(1) << (n % 64);
        if (w & bit) {
            dups++;
            return true;
        }
        w |= bit;
    }
    s.uniq++;
    return true;
}


void
SubWorker::on_message(uint32_t i, const uint8_t *p, size_t len, const RxTime &now)
{
    Sub &s = subs_[i];
    if (s.state == S_SUBSCRIBED && on_event(i, p, len, now)) {
        return;
    }
    if (o_.target != Target::pusher) {
        other_msgs++;
        return;
    }
    if (find(p, len, "\"pusher:ping\"")) {
        pusher_pings++;
        s.pinged = true;
        static const char pong[] = "{\"event\":\"pusher:pong\",\"data\":{}}";
        send_frame(i, 0x1, pong, sizeof(pong) - 1);
    } else if (s.state == S_WAIT_EST
               && find(p, len, "\"pusher:connection_established\""))
    {
        s.state = S_WAIT_SUB;
        send_frame(i, 0x1, sh_.subscribe.data(), sh_.subscribe.size());
    } else if (s.state == S_WAIT_SUB
               && find(p, len, "\"pusher_internal:subscription_succeeded\""))
    {
        set_subscribed(i);
    } else if (find(p, len, "\"pusher:error\"")
               || find(p, len, "\"pusher:subscription_error\""))
    {
        server_errors++;
        sh_.note_error("server said: " + std::string(reinterpret_cast<const char *>(p),
                                                     std::min<size_t>(len, 200)));
    } else {
        other_msgs++;
    }
}


/* ------------------------------------------------------------------ */
/* publisher                                                            */

struct PubConn {
    int fd = -1;
    bool connecting = false;
    std::string out;
    size_t out_off = 0;
    std::string in;
    std::deque<uint32_t> inflight;      /* event numbers awaiting answers */
};


class Publisher {
public:
    explicit Publisher(Shared &sh)
        : sh_(sh), o_(sh.o), conns_(size_t(o_.pub_conns)),
          sent_at_(size_t(o_.events), 0),
          stamp_(size_t(o_.events), 0) {}

    void run();

    long ok = 0;
    long errors = 0;
    long sent = 0;              /* distinct events sent */
    long resent = 0;
    long reconnects = 0;
    long closes_announced = 0;  /* "Connection: close" answers */
    long late = 0;              /* rate mode: sent > 1 ms after due */
    bool timed_out = false;
    int64_t t_start = 0;
    int64_t t_first = 0;
    int64_t t_last = 0;         /* last answer */
    Histogram resp;             /* request to answer */
    std::string first_error;

private:
    void connect_one(PubConn &c, uint32_t idx);
    void drop(PubConn &c, uint32_t idx, const char *why, bool announced = false);
    void fill(int64_t now);
    bool send_event(PubConn &c, uint32_t idx, uint32_t n, int64_t now);
    void flush(PubConn &c, uint32_t idx);
    void on_readable(PubConn &c, uint32_t idx, int64_t now);
    void build(std::string &out, uint32_t n, int64_t t);
    void note(const std::string &e)
    {
        if (first_error.empty()) {
            first_error = e;
        }
    }

    Shared &sh_;
    const Options &o_;
    std::vector<PubConn> conns_;
    std::vector<int64_t> sent_at_;      /* monotonic, first send */
    std::vector<int64_t> stamp_;        /* wall clock, in the payload */
    std::deque<uint32_t> retry_;
    long next_ = 0;
    size_t rr_ = 0;
    int ep_ = -1;
    int tfd_ = -1;
    std::string data_, body_, scratch_;
};


void
Publisher::connect_one(PubConn &c, uint32_t idx)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        die("socket: %s", std::strerror(errno));
    }
    set_nodelay(fd);
    int rc = connect(fd, reinterpret_cast<const sockaddr *>(&sh_.pub_dst),
                     sizeof(sh_.pub_dst));
    if (rc < 0 && errno != EINPROGRESS) {
        note(std::string("publisher connect: ") + std::strerror(errno));
        close(fd);
        c.fd = -1;
        return;
    }
    c.fd = fd;
    c.connecting = true;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT;
    ev.data.u32 = idx;
    epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
}


/* the connection went away: resend what it had not answered */
void
Publisher::drop(PubConn &c, uint32_t idx, const char *why, bool announced)
{
    if (why) {
        note(why);
    }
    close(c.fd);
    c.fd = -1;
    c.connecting = false;
    c.out.clear();
    c.out_off = 0;
    c.in.clear();
    for (auto it = c.inflight.rbegin(); it != c.inflight.rend(); ++it) {
        retry_.push_front(*it);
        resent++;
    }
    c.inflight.clear();
    /* a server that answers "Connection: close" every time (soketi's HTTP
       API) costs a connect per request; only unannounced closes count */
    if (announced) {
        closes_announced++;
    } else {
        reconnects++;
    }
    if (reconnects > 1000 + o_.events / 100) {
        return;             /* run() gives up */
    }
    connect_one(c, idx);
}


void
Publisher::build(std::string &out, uint32_t n, int64_t t)
{
    char head[64];
    int hl = std::snprintf(head, sizeof(head), "{\"t\":%" PRId64 ",\"n\":%u,\"p\":\"",
                           t, n);
    data_.assign(head, size_t(hl));
    size_t fixed = data_.size() + 2;
    if (size_t(o_.size) > fixed) {
        data_.append(size_t(o_.size) - fixed, 'x');
    }
    data_.append("\"}");

    char num[32];
    if (o_.target == Target::nchan) {
        out.append("POST ").append(o_.pub_path).append(" HTTP/1.1\r\nHost: ")
            .append(o_.host).append(":").append(std::to_string(o_.pub_port))
            .append("\r\nContent-Type: application/json\r\nContent-Length: ");
        std::snprintf(num, sizeof(num), "%zu", data_.size());
        out.append(num).append("\r\n\r\n").append(data_);
        return;
    }

    body_.assign("{\"name\":\"").append(o_.event)
        .append("\",\"channels\":[\"").append(o_.channel).append("\"],\"data\":\"");
    for (char ch : data_) {
        if (ch == '"' || ch == '\\') {
            body_.push_back('\\');
        }
        body_.push_back(ch);
    }
    body_.append("\"}");

    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_Digest(body_.data(), body_.size(), md, &mdlen, EVP_md5(), nullptr);
    char md5hex[33];
    hex(md, mdlen, md5hex);
    md5hex[32] = '\0';

    char query[256];
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int ql = std::snprintf(query, sizeof(query),
        "auth_key=%s&auth_timestamp=%lld&auth_version=1.0&body_md5=%s",
        o_.key.c_str(), (long long) ts.tv_sec, md5hex);

    scratch_.assign("POST\n").append(o_.pub_path).append("\n")
        .append(query, size_t(ql));
    unsigned char sig[EVP_MAX_MD_SIZE];
    unsigned int siglen = 0;
    HMAC(EVP_sha256(), o_.secret.data(), int(o_.secret.size()),
         reinterpret_cast<const unsigned char *>(scratch_.data()),
         scratch_.size(), sig, &siglen);
    char sighex[65];
    hex(sig, siglen, sighex);
    sighex[64] = '\0';

    out.append("POST ").append(o_.pub_path).append("?").append(query, size_t(ql))
        .append("&auth_signature=").append(sighex)
        .append(" HTTP/1.1\r\nHost: ").append(o_.host).append(":")
        .append(std::to_string(o_.pub_port))
        .append("\r\nContent-Type: application/json\r\nContent-Length: ");
    std::snprintf(num, sizeof(num), "%zu", body_.size());
    out.append(num).append("\r\n\r\n").append(body_);
}


bool
Publisher::send_event(PubConn &c, uint32_t idx, uint32_t n, int64_t now)
{
    if (sent_at_[n] == 0) {
        sent_at_[n] = now;
        stamp_[n] = wall_ns();
        sh_.stamps[n].store(stamp_[n], std::memory_order_relaxed);
        sent++;
    }
    if (t_first == 0) {
        t_first = now;
    }
    /* the timestamp is the first trigger; a resend keeps it */
    build(c.out, n, stamp_[n]);
    c.inflight.push_back(n);
    return true;
}


void
Publisher::flush(PubConn &c, uint32_t idx)
{
    while (c.out_off < c.out.size()) {
        ssize_t w = send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off,
                         MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                break;
            }
            drop(c, idx, "publisher send failed");
            return;
        }
        c.out_off += size_t(w);
    }
    if (c.out_off == c.out.size()) {
        c.out.clear();
        c.out_off = 0;
    }
    epoll_event ev{};
    ev.events = EPOLLIN | (c.out.empty() ? 0u : uint32_t(EPOLLOUT));
    ev.data.u32 = idx;
    epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
}


/* hand due events (and resends) to connections with room */
void
Publisher::fill(int64_t now)
{
    long due = o_.events;
    if (!o_.burst && o_.rate > 0) {
        due = std::min<long>(o_.events,
            long(double(now - t_start) * o_.rate / 1e9) + 1);
    }
    std::vector<bool> touched(conns_.size(), false);
    for (;;) {
        bool have = !retry_.empty() || next_ < due;
        if (!have) {
            break;
        }
        /* round-robin over connections with room */
        size_t k, pick = SIZE_MAX;
        for (k = 0; k < conns_.size(); k++) {
            size_t j = (rr_ + k) % conns_.size();
            PubConn &c = conns_[j];
            if (c.fd >= 0 && !c.connecting
                && c.inflight.size() < size_t(o_.pipeline))
            {
                pick = j;
                break;
            }
        }
        if (pick == SIZE_MAX) {
            break;
        }
        rr_ = pick + 1;
        uint32_t n;
        if (!retry_.empty()) {
            n = retry_.front();
            retry_.pop_front();
        } else {
            n = uint32_t(next_++);
            if (!o_.burst) {
                int64_t due_at = t_start + int64_t(double(n) * 1e9 / o_.rate);
                if (now - due_at > 1000000) {
                    late++;
                }
            }
        }
        send_event(conns_[pick], uint32_t(pick), n, now);
        touched[pick] = true;
    }
    for (size_t j = 0; j < conns_.size(); j++) {
        if (touched[j]) {
            flush(conns_[j], uint32_t(j));
        }
    }
}


void
Publisher::on_readable(PubConn &c, uint32_t idx, int64_t now)
{
    char buf[65536];
    ssize_t r = read(c.fd, buf, sizeof(buf));
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return;
    }
    if (r <= 0) {
        drop(c, idx, c.inflight.empty() ? nullptr : "publisher connection closed");
        return;
    }
    c.in.append(buf, size_t(r));

    size_t pos = 0;
    bool close_after = false;
    while (!close_after) {
        size_t he = c.in.find("\r\n\r\n", pos);
        if (he == std::string::npos) {
            break;
        }
        std::string_view head(c.in.data() + pos, he - pos);
        int status = 0;
        if (head.size() >= 12 && head.substr(0, 5) == "HTTP/") {
            status = std::atoi(std::string(head.substr(9, 3)).c_str());
        }
        long clen = -1;
        bool chunked = false;
        /* headers, case-insensitively */
        std::string lower(head);
        for (char &ch : lower) {
            ch = char(std::tolower(static_cast<unsigned char>(ch)));
        }
        size_t at = lower.find("\r\ncontent-length:");
        if (at != std::string::npos) {
            clen = std::atol(lower.c_str() + at + 17);
        }
        if (lower.find("\r\ntransfer-encoding: chunked") != std::string::npos) {
            chunked = true;
        }
        if (lower.find("\r\nconnection: close") != std::string::npos) {
            close_after = true;
        }
        size_t body = he + 4, end;
        if (chunked) {
            size_t q = body;
            bool complete = false;
            for (;;) {
                size_t le = c.in.find("\r\n", q);
                if (le == std::string::npos) {
                    break;
                }
                long sz = std::strtol(c.in.c_str() + q, nullptr, 16);
                if (sz == 0) {
                    size_t te = c.in.find("\r\n\r\n", le);
                    if (te == std::string::npos && c.in.size() >= le + 4
                        && c.in.compare(le, 4, "\r\n\r\n") == 0)
                    {
                        te = le;
                    }
                    if (te != std::string::npos) {
                        q = te + 4;
                        complete = true;
                    }
                    break;
                }
                if (c.in.size() < le + 2 + size_t(sz) + 2) {
                    break;
                }
                q = le + 2 + size_t(sz) + 2;
            }
            if (!complete) {
                close_after = false;
                break;
            }
            end = q;
        } else {
            end = body + size_t(std::max(clen, 0L));
            if (c.in.size() < end) {
                close_after = false;
                break;
            }
        }

        if (c.inflight.empty()) {
            note("publisher: answer without a request");
            errors++;
        } else {
            uint32_t n = c.inflight.front();
            c.inflight.pop_front();
            bool good = o_.target == Target::pusher ? status == 200
                                                    : status >= 200 && status < 300;
            if (good) {
                ok++;
            } else {
                errors++;
                note("publisher got " + std::string(head.substr(0, head.find('\r')))
                     + ": " + c.in.substr(body, std::min<size_t>(end - body, 200)));
            }
            resp.add(uint64_t(now - sent_at_[n]));
        }
        t_last = now;
        pos = end;
    }
    c.in.erase(0, pos);
    if (close_after) {
        drop(c, idx, nullptr, true);
    }
}


void
Publisher::run()
{
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    tfd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (ep_ < 0 || tfd_ < 0) {
        die("publisher: %s", std::strerror(errno));
    }
    epoll_event tev{};
    tev.events = EPOLLIN;
    tev.data.u32 = UINT32_MAX;
    epoll_ctl(ep_, EPOLL_CTL_ADD, tfd_, &tev);

    for (size_t j = 0; j < conns_.size(); j++) {
        connect_one(conns_[j], uint32_t(j));
    }
    epoll_event evs[64];

    /* the clock starts once the connections are up (or 5 s passed) */
    int64_t connect_deadline = now_ns() + 5000000000LL;
    for (;;) {
        size_t up = 0;
        for (PubConn &c : conns_) {
            up += c.fd >= 0 && !c.connecting;
        }
        if (up == conns_.size() || now_ns() > connect_deadline) {
            break;
        }
        int n = epoll_wait(ep_, evs, 64, 100);
        for (int k = 0; k < n; k++) {
            uint32_t idx = evs[k].data.u32;
            if (idx == UINT32_MAX || conns_[idx].fd < 0 || !conns_[idx].connecting) {
                continue;
            }
            PubConn &c = conns_[idx];
            int err = 0;
            socklen_t len = sizeof(err);
            getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
            if (err != 0) {
                note(std::string("publisher connect: ") + std::strerror(err));
                drop(c, idx, nullptr);
                usleep(10000);
                continue;
            }
            c.connecting = false;
            flush(c, idx);
        }
    }

    t_start = now_ns();
    sh_.pub_t0 = wall_ns();
    double budget = o_.pub_timeout + (o_.burst ? 0 : o_.duration);
    int64_t deadline = t_start + int64_t(budget * 1e9);

    while (ok + errors < o_.events) {
        int64_t now = now_ns();
        if (now > deadline || sh_.stop.load()) {
            timed_out = true;
            note("publisher: timed out");
            break;
        }
        if (reconnects > 1000 + o_.events / 100) {
            note("publisher: too many reconnects");
            break;
        }
        fill(now);
        if (!o_.burst && next_ < o_.events) {
            int64_t at = t_start + int64_t(double(next_) * 1e9 / o_.rate);
            itimerspec its{};
            its.it_value.tv_sec = at / 1000000000;
            its.it_value.tv_nsec = at % 1000000000;
            timerfd_settime(tfd_, TFD_TIMER_ABSTIME, &its, nullptr);
        }
        int n = epoll_wait(ep_, evs, 64, 100);
        now = now_ns();
        for (int k = 0; k < n; k++) {
            uint32_t idx = evs[k].data.u32;
            if (idx == UINT32_MAX) {
                uint64_t exp;
                ssize_t rr = read(tfd_, &exp, sizeof(exp));
                (void) rr;
                continue;
            }
            PubConn &c = conns_[idx];
            if (c.fd < 0) {
                continue;
            }
            if (c.connecting) {
                int err = 0;
                socklen_t len = sizeof(err);
                getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err != 0) {
                    note(std::string("publisher connect: ") + std::strerror(err));
                    drop(c, idx, nullptr);
                    /* a refused connect is not going to work on retry */
                    usleep(10000);
                    continue;
                }
                c.connecting = false;
                flush(c, idx);
                continue;
            }
            if (evs[k].events & EPOLLOUT) {
                flush(c, idx);
            }
            if (c.fd >= 0 && (evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
                on_readable(c, idx, now);
            }
        }
    }

    for (PubConn &c : conns_) {
        if (c.fd >= 0) {
            close(c.fd);
        }
    }
    close(tfd_);
    close(ep_);
}


/* ------------------------------------------------------------------ */
/* report                                                               */

std::string
json_escape(const std::string &s)
{
    std::string r;
    for (unsigned char ch : s) {
        if (ch == '"' || ch == '\\') {
            r.push_back('\\');
            r.push_back(char(ch));
        } else if (ch < 0x20) {
            char b[8];
            std::snprintf(b, sizeof(b), "\\u%04x", ch);
            r += b;
        } else {
            r.push_back(char(ch));
        }
    }
    return r;
}


void
watchdog(int)
{
    static const char msg[] = "pusher-bench: watchdog expired, giving up\n";
    ssize_t w = write(2, msg, sizeof(msg) - 1);
    (void) w;
    _exit(3);
}


void
raise_nofile(long want)
{
    rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur != RLIM_INFINITY && long(rl.rlim_cur) < want) {
            die("%ld connections need %ld open files, the limit is %ld: "
                "run several processes", want - 64, want, long(rl.rlim_cur));
        }
    }
}


} /* namespace */


int
main(int argc, char **argv)
{
    Options o = parse_options(argc, argv);
    signal(SIGPIPE, SIG_IGN);

    raise_nofile(o.subscribers + o.pub_conns + 64);

    double budget = o.connect_timeout + o.idle + o.pub_timeout
        + (o.burst ? 0 : o.duration) + o.drain_timeout + 30;
    signal(SIGALRM, watchdog);
    alarm(unsigned(budget));

    Shared sh(o);
    sh.dst.sin_family = AF_INET;
    sh.dst.sin_port = htons(o.port);
    if (inet_pton(AF_INET, o.host.c_str(), &sh.dst.sin_addr) != 1) {
        die("--host must be an IPv4 address: %s", o.host.c_str());
    }
    sh.pub_dst = sh.dst;
    sh.pub_dst.sin_port = htons(o.pub_port);
    std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> tls_ctx(
        o.tls ? make_tls_ctx() : nullptr, SSL_CTX_free);
    sh.tls = tls_ctx.get();
    sh.upgrade = "GET " + o.sub_path + " HTTP/1.1\r\nHost: " + o.host + ":"
        + std::to_string(o.port)
        + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
          "Sec-WebSocket-Version: 13\r\n\r\n";
    sh.subscribe = "{\"event\":\"pusher:subscribe\",\"data\":{\"auth\":\"\","
                   "\"channel\":\"" + o.channel + "\"}}";
    sh.marker_t_raw = "{\"t\":";
    sh.marker_n_raw = ",\"n\":";
    if (o.target == Target::pusher) {
        sh.marker_t = "{\\\"t\\\":";
        sh.marker_n = ",\\\"n\\\":";
    } else {
        sh.marker_t = sh.marker_t_raw;
        sh.marker_n = sh.marker_n_raw;
    }
    /* one bit per event per connection, unless that is silly */
    double bitmap_bytes = double(o.subscribers) * double(o.events) / 8;
    sh.bitmaps = bitmap_bytes < 512.0 * 1024 * 1024;

    /* phase 1: connect and subscribe */
    ProcSample s0 = sample_procs(o.server_pids);
    std::vector<std::unique_ptr<SubWorker>> workers;
    std::vector<std::thread> threads;
    int nthreads = o.subscribers > 0 ? o.threads : 0;
    long first = 0;
    for (int t = 0; t < nthreads; t++) {
        long count = o.subscribers / nthreads + (t < o.subscribers % nthreads ? 1 : 0);
        workers.push_back(std::make_unique<SubWorker>(sh, t, first, count));
        first += count;
    }
    int64_t t_conn0 = now_ns();
    for (auto &w : workers) {
        threads.emplace_back([&w] { w->run(); });
    }
    int64_t conn_deadline = t_conn0 + int64_t(o.connect_timeout * 1e9);
    int64_t next_report = t_conn0 + 1000000000;
    bool connect_timed_out = false;
    while (sh.subscribed.load() + sh.failed.load() < o.subscribers) {
        int64_t now = now_ns();
        if (now > conn_deadline) {
            connect_timed_out = true;
            break;
        }
        if (now > next_report) {
            progress("connecting: %ld subscribed, %ld failed of %ld",
                     sh.subscribed.load(), sh.failed.load(), o.subscribers);
            next_report += 1000000000;
        }
        usleep(2000);
    }
    sh.opening = false;
    int64_t t_conn1 = now_ns();
    long subscribed_setup = sh.subscribed.load();
    double connect_s = secs(t_conn1 - t_conn0);
    progress("%ld of %ld subscribed in %.2f s (%ld failed%s)", subscribed_setup,
             o.subscribers, connect_s, sh.failed.load(),
             connect_timed_out ? ", timed out" : "");

    if (o.idle > 0) {
        usleep(useconds_t(o.idle * 1e6));
    }
    ProcSample s1 = sample_procs(o.server_pids);

    /* phase 2: publish */
    sh.publishing = true;
    long counted = sh.counted.load();
    Publisher pub(sh);
    int64_t t_pub0 = now_ns(), t_pub1 = t_pub0;
    if (o.external) {
        /* events timestamped from now on are this run's */
        sh.pub_t0 = wall_ns();
        if (!o.ready_file.empty()) {
            FILE *rf = std::fopen(o.ready_file.c_str(), "w");
            if (rf == nullptr) {
                die("--ready-file %s: %s", o.ready_file.c_str(), std::strerror(errno));
            }
            std::fprintf(rf, "%ld\n", counted);
            std::fclose(rf);
        }
        progress("waiting for %ld events from another publisher", o.events);
        long want = counted * o.events;
        int64_t deadline = now_ns() + int64_t(o.pub_timeout * 1e9);
        while (sh.received.load() == 0 && now_ns() < deadline && want > 0) {
            usleep(2000);
        }
        pub.ok = o.events;      /* what the other process published */
    } else if (o.events > 0 && o.subscribers > 0 && counted == 0) {
        progress("nothing subscribed, not publishing");
    } else if (o.events > 0) {
        progress("publishing %ld events (%s)", o.events,
                 o.burst ? "burst" : (std::to_string(o.rate) + "/s").c_str());
        pub.run();
        t_pub1 = now_ns();
        progress("published: %ld ok, %ld errors in %.2f s", pub.ok, pub.errors,
                 secs(t_pub1 - t_pub0));
    }

    /* phase 3: drain */
    long expected = counted * pub.ok;
    int64_t drain_deadline = now_ns() + int64_t(o.drain_timeout * 1e9);
    bool drain_timed_out = false;
    if (expected > 0 && o.coalesced) {
        /* what arrives is up to the server: every subscriber has the
           last event, and a little longer for anything still held */
        while (sh.got_last.load() < counted) {
            if (now_ns() > drain_deadline) {
                drain_timed_out = true;
                break;
            }
            usleep(1000);
        }
    } else if (expected > 0) {
        while (sh.received.load() < expected) {
            if (now_ns() > drain_deadline) {
                drain_timed_out = true;
                break;
            }
            usleep(1000);
        }
    }
    ProcSample s2 = sample_procs(o.server_pids);
    sh.stop = true;
    for (auto &t : threads) {
        t.join();
    }
    alarm(0);

    /* aggregate */
    Histogram lat, lat_read, lat_last, lat_stale;
    long no_kernel_ts = 0;
    long rx = 0, dups = 0, reorders = 0, unexpected = 0, pings = 0, ws_pings = 0;
    long server_errors = 0, closes = 0, other = 0, uniq = 0, conns_lossy = 0;
    long still_subscribed = 0, stale = 0, pinged_conns = 0;
    int64_t first_rx = 0, last_rx = 0;
    for (auto &w : workers) {
        lat.merge(w->hist);
        lat_read.merge(w->hist_read);
        lat_last.merge(w->hist_last);
        lat_stale.merge(w->hist_stale);
        no_kernel_ts += w->no_kernel_ts;
        rx += w->events_rx;
        dups += w->dups;
        reorders += w->reorders;
        unexpected += w->unexpected;
        stale += w->stale;
        pings += w->pusher_pings;
        ws_pings += w->ws_pings;
        server_errors += w->server_errors;
        closes += w->closes;
        other += w->other_msgs;
        if (w->first_rx && (first_rx == 0 || w->first_rx < first_rx)) {
            first_rx = w->first_rx;
        }
        last_rx = std::max(last_rx, w->last_rx);
        for (const Sub &s : w->subs()) {
            if (s.state == S_SUBSCRIBED) {
                still_subscribed++;
                pinged_conns += s.pinged;
            }
            if (s.counted) {
                uniq += s.uniq;
                if (long(s.uniq) < pub.ok) {
                    conns_lossy++;
                }
            }
        }
    }
    /* coalesced: what never arrived was dropped by design; a loss is a
       subscriber without the last state */
    long coalesced_away = o.coalesced ? std::max(0L, expected - uniq) : 0;
    long got_last = sh.got_last.load();
    long loss = o.coalesced ? (pub.ok > 0 && pub.ok == o.events ? counted - got_last : 0)
                            : std::max(0L, expected - uniq);
    int64_t t_origin = o.external ? first_rx : pub.t_first;
    double window = first_rx && last_rx > t_origin ? secs(last_rx - t_origin) : 0;
    double deliveries_s = window > 0 ? double(rx) / window : 0;
    double pub_window = pub.t_last > pub.t_first ? secs(pub.t_last - pub.t_first) : 0;
    double pub_rate = pub_window > 0 ? double(pub.ok + pub.errors) / pub_window : 0;
    double connect_rate = connect_s > 0 ? double(subscribed_setup) / connect_s : 0;
    auto ms = [](uint64_t ns) { return double(ns) / 1e6; };
    bool have_server = !o.server_pids.empty();
    double cpu_pub = s2.cpu - s1.cpu;
    double cpu_us_per_delivery = rx > 0 ? cpu_pub * 1e6 / double(rx) : 0;
    double cpu_us_per_connect = subscribed_setup > 0
        ? (s1.cpu - s0.cpu) * 1e6 / double(subscribed_setup) : 0;
    double kb_per_conn = subscribed_setup > 0
        ? double(s1.anon_kb - s0.anon_kb) / double(subscribed_setup) : 0;
    double rss_kb_per_conn = subscribed_setup > 0
        ? double(s1.rss_kb - s0.rss_kb) / double(subscribed_setup) : 0;
    /* the same once the events are out: what the sockets kept of them
       (an SSL buffer not given back, a queue) */
    double kb_per_conn_end = subscribed_setup > 0
        ? double(s2.anon_kb - s0.anon_kb) / double(subscribed_setup) : 0;
    bool server_died = have_server && s2.alive < int(o.server_pids.size());
    std::string first_error;
    {
        std::lock_guard<std::mutex> lk(sh.err_mu);
        first_error = sh.first_error;
    }
    if (first_error.empty()) {
        first_error = pub.first_error;
    }

    FILE *rep = o.json ? stderr : stdout;
    const char *tname = o.target == Target::pusher ? "pusher" : "nchan";
    const char *scheme = o.tls ? "wss" : "ws";
    std::fprintf(rep, "== %s: %s %s://%s:%u (publisher http :%u), %ld subscribers,"
                 " %d-byte events\n", o.label.c_str(), tname, scheme, o.host.c_str(),
                 o.port, o.pub_port, o.subscribers, o.size);
    std::string tls_info;
    {
        std::lock_guard<std::mutex> lk(sh.err_mu);
        tls_info = sh.tls_info;
    }
    if (o.tls) {
        std::fprintf(rep, "  tls           %s\n",
                     tls_info.empty() ? "no handshake completed" : tls_info.c_str());
    }
    std::fprintf(rep, "  subscribers   %ld subscribed, %ld failed, %ld dropped later%s;"
                 " %.0f connects/s (%.2f s)\n", subscribed_setup, sh.failed.load(),
                 sh.dropped.load(), connect_timed_out ? " (connect TIMED OUT)" : "",
                 connect_rate, connect_s);
    if (o.events > 0) {
        std::fprintf(rep, "  publisher     %ld events, %ld ok, %ld errors, %ld resent,"
                     " %ld late; %.0f answers/s; answer p50 %.3f ms p99 %.3f ms%s\n",
                     pub.sent, pub.ok, pub.errors, pub.resent, pub.late, pub_rate,
                     ms(pub.resp.percentile(0.5)), ms(pub.resp.percentile(0.99)),
                     pub.timed_out ? " (TIMED OUT)" : "");
        std::fprintf(rep, "  deliveries    %ld of %ld expected, loss %ld (%.4f%%) on %ld"
                     " connections, %ld duplicate, %ld reordered%s\n",
                     uniq, expected, loss,
                     expected ? 100.0 * double(loss) / double(expected) : 0.0,
                     conns_lossy, dups, reorders,
                     drain_timed_out ? " (drain TIMED OUT)" : "");
        if (o.coalesced) {
            std::fprintf(rep, "  coalesced     %ld of %ld coalesced away (%.1f%%)\n",
                         coalesced_away, expected,
                         expected ? 100.0 * double(coalesced_away) / double(expected) : 0.0);
        }
        std::fprintf(rep, "  last state    the last event reached %ld of %ld subscribers,"
                     " latency p50 %.3f max %.3f ms\n", got_last, counted,
                     ms(lat_last.percentile(0.5)), ms(lat_last.max()));
        std::fprintf(rep, "  staleness ms  p50 %.3f  p99 %.3f  max %.3f  (at each update a"
                     " subscriber got: since the oldest state it had not seen"
                     " was triggered)\n",
                     ms(lat_stale.percentile(0.5)), ms(lat_stale.percentile(0.99)),
                     ms(lat_stale.max()));
        std::fprintf(rep, "  throughput    %.0f deliveries/s over %.3f s\n",
                     deliveries_s, window);
        std::fprintf(rep, "  latency ms    p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f"
                     "  max %.3f  mean %.3f  (trigger to kernel receive%s)\n",
                     ms(lat.percentile(0.5)), ms(lat.percentile(0.9)),
                     ms(lat.percentile(0.99)), ms(lat.percentile(0.999)),
                     ms(lat.max()), ms(lat.mean()),
                     no_kernel_ts ? ", some reads had no timestamp" : "");
        std::fprintf(rep, "  read by us    p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f"
                     "  max %.3f  (trigger to this client reading it)\n",
                     ms(lat_read.percentile(0.5)), ms(lat_read.percentile(0.9)),
                     ms(lat_read.percentile(0.99)), ms(lat_read.percentile(0.999)),
                     ms(lat_read.max()));
    }
    if (pings || ws_pings || server_errors || closes || other || unexpected || stale) {
        std::fprintf(rep, "  other         %ld pusher:ping (%ld connections pinged), %ld ws ping,"
                     " %ld errors, %ld close frames, %ld other messages, %ld out-of-range,"
                     " %ld stale\n",
                     pings, pinged_conns, ws_pings, server_errors, closes, other, unexpected,
                     stale);
    }
    if (have_server) {
        std::fprintf(rep, "  server        %.3f us CPU/delivery (%.2f s), %.1f us"
                     " CPU/connect; RSS %.1f MB idle -> %.1f MB; +%.2f KB anon"
                     " (+%.2f KB rss) per connection, +%.2f KB anon after the"
                     " events%s\n",
                     cpu_us_per_delivery, cpu_pub, cpu_us_per_connect,
                     double(s0.rss_kb) / 1024, double(s1.rss_kb) / 1024, kb_per_conn,
                     rss_kb_per_conn, kb_per_conn_end,
                     server_died ? "; A SERVER PROCESS DIED" : "");
    }
    if (!first_error.empty()) {
        std::fprintf(rep, "  first error   %s\n", first_error.c_str());
    }

    if (o.json) {
        std::printf(
            "{\"label\":\"%s\",\"target\":\"%s\",\"scheme\":\"%s\",\"tls\":\"%s\","
            "\"subscribers\":%ld,"
            "\"subscribed\":%ld,\"failed\":%ld,\"dropped\":%ld,\"still_subscribed\":%ld,"
            "\"connect_s\":%.3f,\"connects_per_s\":%.0f,\"connect_timed_out\":%s,"
            "\"size\":%d,\"mode\":\"%s\",\"rate\":%.1f,"
            "\"events\":%ld,\"events_ok\":%ld,\"pub_errors\":%ld,\"pub_resent\":%ld,"
            "\"pub_late\":%ld,\"pub_per_s\":%.0f,\"pub_timed_out\":%s,"
            "\"answer_p50_ms\":%.3f,\"answer_p99_ms\":%.3f,"
            "\"expected\":%ld,\"delivered\":%ld,\"received\":%ld,\"loss\":%ld,"
            "\"lossy_conns\":%ld,\"dups\":%ld,\"reordered\":%ld,\"drain_timed_out\":%s,"
            "\"deliveries_per_s\":%.0f,\"window_s\":%.3f,"
            "\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,"
            "\"max_ms\":%.3f,\"mean_ms\":%.3f,"
            "\"read_p50_ms\":%.3f,\"read_p99_ms\":%.3f,\"read_p999_ms\":%.3f,"
            "\"reads_without_kernel_ts\":%ld,"
            "\"pusher_pings\":%ld,\"pinged_conns\":%ld,\"ws_pings\":%ld,\"server_errors\":%ld,"
            "\"close_frames\":%ld,\"stale\":%ld,\"coalesced\":%s,\"coalesced_away\":%ld,"
            "\"last_ok\":%ld,\"last_p50_ms\":%.3f,\"last_max_ms\":%.3f,"
            "\"stale_p50_ms\":%.3f,\"stale_p99_ms\":%.3f,\"stale_max_ms\":%.3f,",
            json_escape(o.label).c_str(), tname, scheme, json_escape(tls_info).c_str(),
            o.subscribers, subscribed_setup,
            sh.failed.load(), sh.dropped.load(), still_subscribed, connect_s,
            connect_rate, connect_timed_out ? "true" : "false", o.size,
            o.burst ? "burst" : o.external ? "external" : o.events ? "rate" : "idle", o.rate, pub.sent, pub.ok,
            pub.errors, pub.resent, pub.late, pub_rate,
            pub.timed_out ? "true" : "false", ms(pub.resp.percentile(0.5)),
            ms(pub.resp.percentile(0.99)), expected, uniq, rx, loss, conns_lossy,
            dups, reorders, drain_timed_out ? "true" : "false", deliveries_s, window,
            ms(lat.percentile(0.5)), ms(lat.percentile(0.9)), ms(lat.percentile(0.99)),
            ms(lat.percentile(0.999)), ms(lat.max()), ms(lat.mean()),
            ms(lat_read.percentile(0.5)), ms(lat_read.percentile(0.99)),
            ms(lat_read.percentile(0.999)), no_kernel_ts, pings, pinged_conns, ws_pings,
            server_errors, closes, stale, o.coalesced ? "true" : "false", coalesced_away,
            got_last, ms(lat_last.percentile(0.5)), ms(lat_last.max()),
            ms(lat_stale.percentile(0.5)), ms(lat_stale.percentile(0.99)), ms(lat_stale.max()));
        if (have_server) {
            std::printf("\"server_cpu_s\":%.3f,\"cpu_us_per_delivery\":%.4f,"
                        "\"cpu_us_per_connect\":%.2f,\"server_rss_idle_kb\":%ld,"
                        "\"server_rss_kb\":%ld,\"server_rss_end_kb\":%ld,"
                        "\"anon_kb_per_conn\":%.3f,\"rss_kb_per_conn\":%.3f,"
                        "\"anon_kb_per_conn_end\":%.3f,\"server_died\":%s,",
                        cpu_pub, cpu_us_per_delivery, cpu_us_per_connect, s0.rss_kb,
                        s1.rss_kb, s2.rss_kb, kb_per_conn, rss_kb_per_conn,
                        kb_per_conn_end,
                        server_died ? "true" : "false");
        }
        std::printf("\"first_error\":\"%s\"}\n", json_escape(first_error).c_str());
        std::fflush(stdout);
    }

    bool bad = loss > 0 || pub.errors > 0 || sh.failed.load() > 0
        || sh.dropped.load() > 0 || connect_timed_out || drain_timed_out
        || pub.timed_out || server_died;
    return bad ? 2 : 0;
}
