// pccl-wan-emu: a userspace WAN emulator for the harness in bench/wan (wan.py).
//
// The kernel here has no netem, so one-way delay and random loss are done in userspace: this
// process creates one TUN device per emulated host (`<prefix><i>`, in the namespace it runs
// in; wan.py then moves each into the host's namespace, the fd stays valid), reads the IPv4
// packets every host sends, and passes each through the model of the directed link
// (source host -> destination host, found by the destination address net.(i+1)):
//
//   random loss  ->  drop-tail queue of `queue` bytes  ->  serialisation at `rate`
//                ->  fixed one-way `delay`  ->  written into the destination's TUN
//
// Per link the delivery times are non-decreasing (FIFO serialisation plus a constant delay),
// so every link is a FIFO ring of packets and the scheduler only compares ring heads. One
// thread, epoll_pwait2 with a nanosecond timeout, no allocation per packet.
//
// Config file (whitespace separated, '#' comments), reread on SIGHUP (links only):
//   hosts N
//   net A.B.C.0            host i is A.B.C.(i+1)
//   link SRC DST DELAY_US RATE_BPS LOSS QUEUE_BYTES UP     (LOSS a probability, RATE 0 = unlimited)
// A directed link that is not listed drops everything. UP 0 cuts the link (arrivals and
// packets still in flight are dropped).
//
// Every second (and at exit) the per-link counters are written to --stats FILE (atomically).
// SIGTERM/SIGINT end the process; the TUN devices disappear with it.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <tuple>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "util/splitmix.h"  // header-only: this tool does not link pccl

namespace {

volatile sig_atomic_t g_stop = 0, g_reload = 0;
void onStop(int) { g_stop = 1; }
void onHup(int) { g_reload = 1; }

int64_t nowNs() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

constexpr size_t kMaxPacket = 65536;

// A FIFO of variable-length packets in one byte buffer: records {due, len, bytes}, 8-aligned.
// used_ counts every byte between head and tail, including the unused end of the buffer
// skipped by a wrap (marked with len == kWrap, or shorter than a header).
class PacketRing {
public:
    void reserve(size_t bytes) {
        bytes = (bytes + 7) & ~size_t(7);
        if (bytes <= buf_.size()) return;
        // Grow (at start, or on a reload that raised rate/delay/queue): copy the records over.
        PacketRing bigger;
        bigger.buf_.assign(bytes, 0);
        while (!empty()) {
            bigger.push(headDue(), headData(), headLen());
            pop();
        }
        *this = std::move(bigger);
    }
    bool empty() const { return count_ == 0; }
    int64_t headDue() const { return hdr(head_)->due; }
    uint32_t headLen() const { return hdr(head_)->len; }
    const uint8_t *headData() const { return buf_.data() + head_ + sizeof(Hdr); }
    bool push(int64_t due, const uint8_t *p, uint32_t len) {
        const size_t S = buf_.size(), need = recSize(len);
        size_t waste = 0;
        if (tail_ + need > S) waste = S - tail_;  // does not fit before the end: wrap
        if (used_ + waste + need > S) return false;
        if (waste) {
            if (waste >= sizeof(Hdr)) hdr(tail_)->len = kWrap;
            used_ += waste;
            tail_ = 0;
        }
        Hdr *h = hdr(tail_);
        h->due = due;
        h->len = len;
        std::memcpy(buf_.data() + tail_ + sizeof(Hdr), p, len);
        tail_ += need;
        if (tail_ == S) tail_ = 0;
        used_ += need;
        ++count_;
        return true;
    }
    void pop() {
        const size_t S = buf_.size(), sz = recSize(headLen());
        head_ += sz;
        used_ -= sz;
        if (--count_ == 0) {
            head_ = tail_ = used_ = 0;
            return;
        }
        if (head_ == S) head_ = 0;
        else if (S - head_ < sizeof(Hdr) || hdr(head_)->len == kWrap) {  // skip the wrap
            used_ -= S - head_;
            head_ = 0;
        }
    }

private:
    struct Hdr {
        int64_t due;
        uint32_t len;
        uint32_t pad;
    };
    static constexpr uint32_t kWrap = 0xffffffffu;
    static size_t recSize(uint32_t len) { return (sizeof(Hdr) + len + 7) & ~size_t(7); }
    Hdr *hdr(size_t off) { return reinterpret_cast<Hdr *>(buf_.data() + off); }
    const Hdr *hdr(size_t off) const { return reinterpret_cast<const Hdr *>(buf_.data() + off); }
    std::vector<uint8_t> buf_;
    size_t head_ = 0, tail_ = 0, used_ = 0, count_ = 0;
};

struct LinkParams {
    bool configured = false;
    int64_t delay_ns = 0;
    double rate_bps = 0;  // 0: unlimited
    double loss = 0;
    uint64_t queue_bytes = 0;
    bool up = true;
};

struct Link {
    LinkParams p;
    double busy_until = 0;  // ns: when the serialiser finishes the last accepted packet
    PacketRing ring;
    uint64_t rx_pkts = 0, rx_bytes = 0, tx_pkts = 0, tx_bytes = 0;
    uint64_t drop_loss = 0, drop_queue = 0, drop_down = 0, drop_ring = 0;
    uint64_t max_backlog = 0;  // bytes waiting for the serialiser, peak
};

struct Config {
    int hosts = 0;
    uint32_t net = 0;  // host order, last octet 0
    std::vector<LinkParams> links;  // [src * hosts + dst]
};

bool parseConfig(const std::string &path, Config &c, std::string &err) {
    std::ifstream in(path);
    if (!in) {
        err = "cannot read " + path;
        return false;
    }
    std::string line;
    int lineno = 0;
    std::vector<std::tuple<int, int, LinkParams>> pending;
    while (std::getline(in, line)) {
        ++lineno;
        if (auto h = line.find('#'); h != std::string::npos) line.resize(h);
        std::istringstream is(line);
        std::string kw;
        if (!(is >> kw)) continue;
        auto bad = [&](const std::string &why) {
            err = path + ":" + std::to_string(lineno) + ": " + why;
            return false;
        };
        if (kw == "hosts") {
            if (!(is >> c.hosts) || c.hosts < 1 || c.hosts > 250) return bad("hosts 1..250");
        } else if (kw == "net") {
            std::string a;
            in_addr ia{};
            if (!(is >> a) || inet_pton(AF_INET, a.c_str(), &ia) != 1) return bad("net A.B.C.0");
            c.net = ntohl(ia.s_addr) & 0xffffff00u;
        } else if (kw == "link") {
            int s, d, up;
            double delay_us, rate, loss, queue;
            if (!(is >> s >> d >> delay_us >> rate >> loss >> queue >> up)) return bad("link SRC DST DELAY_US RATE_BPS LOSS QUEUE_BYTES UP");
            if (delay_us < 0 || rate < 0 || loss < 0 || loss > 1 || queue < 0) return bad("negative value or loss > 1");
            LinkParams p;
            p.configured = true;
            p.delay_ns = int64_t(std::llround(delay_us * 1000));
            p.rate_bps = rate;
            p.loss = loss;
            p.queue_bytes = uint64_t(queue);
            p.up = up != 0;
            pending.emplace_back(s, d, p);
        } else {
            return bad("unknown keyword " + kw);
        }
    }
    if (c.hosts <= 0 || c.net == 0) {
        err = path + ": needs 'hosts' and 'net'";
        return false;
    }
    c.links.assign(size_t(c.hosts * c.hosts), LinkParams{});
    for (auto &[s, d, p] : pending) {
        if (s < 0 || d < 0 || s >= c.hosts || d >= c.hosts || s == d) {
            err = path + ": link " + std::to_string(s) + " " + std::to_string(d) + " out of range";
            return false;
        }
        c.links[size_t(s * c.hosts + d)] = p;
    }
    return true;
}

// Ring size: everything that can be in the link at once (queue + one delay of traffic at the
// rate), twice for record overhead of small packets, plus slack.
size_t ringBytesFor(const LinkParams &p) {
    if (!p.configured) return 0;
    const double rate = p.rate_bps > 0 ? p.rate_bps : 10e9;
    const double inflight = rate / 8 * double(p.delay_ns) / 1e9;
    return size_t(2 * (double(p.queue_bytes) + inflight)) + (4u << 20);
}

int openTun(const std::string &name, std::string &err) {
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        err = std::string("open /dev/net/tun: ") + std::strerror(errno);
        return -1;
    }
    ifreq ifr{};
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    std::snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name.c_str());
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        err = "TUNSETIFF " + name + ": " + std::strerror(errno);
        close(fd);
        return -1;
    }
    return fd;
}

void writeStats(const std::string &path, const Config &c, const std::vector<Link> &links, uint64_t bad_dst,
                int64_t t0) {
    if (path.empty()) return;
    const std::string tmp = path + ".tmp";
    FILE *f = std::fopen(tmp.c_str(), "w");
    if (!f) return;
    std::fprintf(f, "# uptime_s %.3f bad_destination %llu\n", double(nowNs() - t0) / 1e9,
                 static_cast<unsigned long long>(bad_dst));
    std::fprintf(f, "# src dst rx_pkts rx_bytes tx_pkts tx_bytes drop_loss drop_queue drop_down drop_ring max_backlog_bytes\n");
    for (int s = 0; s < c.hosts; ++s)
        for (int d = 0; d < c.hosts; ++d) {
            const Link &l = links[size_t(s * c.hosts + d)];
            if (!l.p.configured && l.rx_pkts == 0) continue;
            std::fprintf(f, "%d %d %llu %llu %llu %llu %llu %llu %llu %llu %llu\n", s, d,
                         (unsigned long long)l.rx_pkts, (unsigned long long)l.rx_bytes, (unsigned long long)l.tx_pkts,
                         (unsigned long long)l.tx_bytes, (unsigned long long)l.drop_loss,
                         (unsigned long long)l.drop_queue, (unsigned long long)l.drop_down,
                         (unsigned long long)l.drop_ring, (unsigned long long)l.max_backlog);
        }
    std::fclose(f);
    std::rename(tmp.c_str(), path.c_str());
}

int usage() {
    std::fprintf(stderr,
                 "usage: pccl-wan-emu --config FILE [--prefix pcclw] [--stats FILE] [--seed N] [--slack-us 20]\n"
                 "                    [--nice N] [--rt PRIORITY (SCHED_FIFO)]\n"
                 "Creates TUN devices <prefix>0..N-1, prints 'ready' on stdout, forwards until SIGTERM.\n"
                 "SIGHUP rereads the link lines of the config.\n");
    return 2;
}

}  // namespace

int main(int argc, char **argv) {
    std::string config_path, prefix = "pcclw", stats_path;
    uint64_t seed = 0x5eed;
    int64_t slack_ns = 20000;
    int nice_value = 0, rt_prio = 0;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto val = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
        if (a == "--config") config_path = val();
        else if (a == "--prefix") prefix = val();
        else if (a == "--stats") stats_path = val();
        else if (a == "--seed") seed = std::strtoull(val().c_str(), nullptr, 0);
        else if (a == "--slack-us") slack_ns = std::atoll(val().c_str()) * 1000;
        else if (a == "--nice") nice_value = std::atoi(val().c_str());
        else if (a == "--rt") rt_prio = std::atoi(val().c_str());
        else return usage();
    }
    if (config_path.empty() || prefix.empty() || prefix.size() > 10) return usage();

    Config cfg;
    std::string err;
    if (!parseConfig(config_path, cfg, err)) {
        std::fprintf(stderr, "pccl-wan-emu: %s\n", err.c_str());
        return 1;
    }
    // Delays are only as exact as our wake-ups: on a busy machine run ahead of other work
    // (the receiving TCP stack also runs in our write() calls).
    if (nice_value && setpriority(PRIO_PROCESS, 0, nice_value) < 0) std::perror("pccl-wan-emu: setpriority");
    if (rt_prio > 0) {
        sched_param sp{};
        sp.sched_priority = rt_prio;
        if (sched_setscheduler(0, SCHED_FIFO, &sp) < 0) std::perror("pccl-wan-emu: SCHED_FIFO");
    }
    const int n = cfg.hosts;
    std::vector<Link> links(size_t(n * n));
    for (size_t k = 0; k < links.size(); ++k) {
        links[k].p = cfg.links[k];
        links[k].ring.reserve(ringBytesFor(links[k].p));
    }

    std::vector<int> fds(size_t(n), -1);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < n; ++i) {
        fds[size_t(i)] = openTun(prefix + std::to_string(i), err);
        if (fds[size_t(i)] < 0) {
            std::fprintf(stderr, "pccl-wan-emu: %s\n", err.c_str());
            return 1;
        }
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u32 = uint32_t(i);
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[size_t(i)], &ev);
    }

    struct sigaction sa{};
    sa.sa_handler = onStop;
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
    sa.sa_handler = onHup;
    sigaction(SIGHUP, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);
    // Block the signals except inside epoll_pwait2, so that none is lost between checks.
    sigset_t block, wait_mask;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    sigprocmask(SIG_BLOCK, &block, &wait_mask);
    sigdelset(&wait_mask, SIGTERM);
    sigdelset(&wait_mask, SIGINT);
    sigdelset(&wait_mask, SIGHUP);

    const int64_t t0 = nowNs();
    writeStats(stats_path, cfg, links, 0, t0);
    std::printf("ready %d\n", n);
    std::fflush(stdout);

    pccl::util::SplitMix64 rng{seed};  // Bernoulli loss
    std::vector<uint8_t> pkt(kMaxPacket);
    uint64_t bad_dst = 0;
    int64_t next_stats = t0 + 1000000000;
    epoll_event events[64];

    auto deliverDue = [&](int64_t now) {
        for (int s = 0; s < n; ++s)
            for (int d = 0; d < n; ++d) {
                Link &l = links[size_t(s * n + d)];
                while (!l.ring.empty() && l.ring.headDue() <= now + slack_ns) {
                    if (!l.p.up) {
                        ++l.drop_down;
                    } else {
                        const ssize_t w = write(fds[size_t(d)], l.ring.headData(), l.ring.headLen());
                        if (w == ssize_t(l.ring.headLen())) {
                            ++l.tx_pkts;
                            l.tx_bytes += l.ring.headLen();
                        } else {
                            ++l.drop_ring;  // the destination did not take it (not up yet, ...)
                        }
                    }
                    l.ring.pop();
                }
            }
    };

    auto accept = [&](int src, const uint8_t *p, size_t len, int64_t now) {
        if (len < 20 || (p[0] >> 4) != 4) {  // not IPv4 (IPv6 is disabled in the namespaces)
            ++bad_dst;
            return;
        }
        uint32_t dst;
        std::memcpy(&dst, p + 16, 4);
        dst = ntohl(dst);
        const uint32_t host = dst - cfg.net - 1;
        if ((dst & 0xffffff00u) != cfg.net || host >= uint32_t(n) || int(host) == src) {
            ++bad_dst;
            return;
        }
        Link &l = links[size_t(src * n + int(host))];
        ++l.rx_pkts;
        l.rx_bytes += len;
        if (!l.p.configured || !l.p.up) {
            ++l.drop_down;
            return;
        }
        if (l.p.loss > 0 && rng.unit() < l.p.loss) {
            ++l.drop_loss;
            return;
        }
        const double t = double(now);
        double start = std::max(t, l.busy_until);
        double done = start;
        if (l.p.rate_bps > 0) {
            // Bytes still waiting for the serialiser when this packet arrives (drop-tail).
            const double backlog = (start - t) * l.p.rate_bps / 8e9;
            if (backlog + double(len) > double(l.p.queue_bytes) && backlog > 0) {
                ++l.drop_queue;
                return;
            }
            l.max_backlog = std::max(l.max_backlog, uint64_t(backlog));
            done = start + double(len) * 8e9 / l.p.rate_bps;
        }
        const int64_t due = int64_t(done) + l.p.delay_ns;
        if (!l.ring.push(due, p, uint32_t(len))) {
            ++l.drop_ring;
            return;
        }
        l.busy_until = done;
    };

    while (!g_stop) {
        if (g_reload) {
            g_reload = 0;
            Config c2;
            if (!parseConfig(config_path, c2, err) || c2.hosts != n) {
                std::fprintf(stderr, "pccl-wan-emu: reload ignored: %s\n",
                             err.empty() ? "host count changed" : err.c_str());
            } else {
                for (size_t k = 0; k < links.size(); ++k) {
                    links[k].p = c2.links[k];
                    links[k].ring.reserve(ringBytesFor(links[k].p));
                }
                cfg.links = c2.links;
                std::fprintf(stderr, "pccl-wan-emu: config reloaded\n");
            }
        }
        int64_t now = nowNs();
        deliverDue(now);
        if (now >= next_stats) {
            writeStats(stats_path, cfg, links, bad_dst, t0);
            next_stats = now + 1000000000;
        }
        int64_t next = next_stats;
        for (const Link &l : links)
            if (!l.ring.empty()) next = std::min(next, l.ring.headDue());
        const int64_t wait = std::max<int64_t>(0, next - now);
        timespec ts{time_t(wait / 1000000000), long(wait % 1000000000)};
        const int ne = epoll_pwait2(ep, events, 64, &ts, &wait_mask);
        if (ne < 0) {
            if (errno == EINTR) continue;
            std::perror("pccl-wan-emu: epoll_pwait2");
            break;
        }
        now = nowNs();
        for (int e = 0; e < ne; ++e) {
            const int src = int(events[e].data.u32);
            // Read a bounded batch per device so that one busy sender cannot starve delivery.
            for (int b = 0; b < 256; ++b) {
                const ssize_t r = read(fds[size_t(src)], pkt.data(), pkt.size());
                if (r <= 0) break;
                accept(src, pkt.data(), size_t(r), now);
                if ((b & 31) == 31) now = nowNs();
            }
        }
    }
    writeStats(stats_path, cfg, links, bad_dst, t0);
    for (int fd : fds) close(fd);
    return 0;
}
