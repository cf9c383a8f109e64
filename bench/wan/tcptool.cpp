// pccl-wan-tcp: the measuring tool of the WAN harness (an iperf3-style throughput test and a
// TCP round-trip probe), started by wan.py inside the emulated hosts' namespaces.
//
//   pccl-wan-tcp recv --port P [--streams N] [--omit S]
//       accepts N connections, counts the bytes until every stream is closed by the sender, then prints one line
//       "result streams=N bytes=B seconds=T gbps=X steady_gbps=Y timeline=B1,B2,..." (steady:
//       after --omit s; timeline: bytes received in each second).
//   pccl-wan-tcp send --to IP --port P [--streams N] [--seconds S] [--cc cubic|bbr|reno]
//       N connections, each sends for S seconds, then half-closes and waits for the receiver.
//   pccl-wan-tcp echo --port P              echoes bytes back (one connection at a time)
//   pccl-wan-tcp rtt --to IP --port P [--count N]
//       "result connect_ms=C min_ms=A median_ms=B max_ms=M" (64-byte ping-pong, TCP_NODELAY)
//
// Socket buffers are never set explicitly (net.core.rmem_max is 4 MiB here, which would cap
// the window): autotuning up to the namespace's tcp_rmem/tcp_wmem maxima is what we want.
// Servers print "listening" once they accept; every blocking call has a timeout.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <latch>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct Args {
    std::string mode, to = "127.0.0.1", cc;
    int port = 5201, streams = 1, count = 20;
    double seconds = 10, omit = 2, timeout = 30;
};

[[noreturn]] void die(const char *what) {
    std::fprintf(stderr, "pccl-wan-tcp: %s: %s\n", what, std::strerror(errno));
    std::exit(1);
}

void setTimeouts(int fd, double s) {
    timeval tv{time_t(s), suseconds_t((s - double(time_t(s))) * 1e6)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

int listenOn(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port));
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) < 0) die("bind");
    if (listen(fd, 128) < 0) die("listen");
    std::printf("listening %d\n", port);
    std::fflush(stdout);
    return fd;
}

int connectTo(const Args &a) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    if (!a.cc.empty() && setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, a.cc.data(), socklen_t(a.cc.size())) < 0)
        die("TCP_CONGESTION");
    setTimeouts(fd, a.timeout);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(uint16_t(a.port));
    if (inet_pton(AF_INET, a.to.c_str(), &sa.sin_addr) != 1) {
        std::fprintf(stderr, "pccl-wan-tcp: bad address %s\n", a.to.c_str());
        std::exit(2);
    }
    if (connect(fd, reinterpret_cast<sockaddr *>(&sa), sizeof sa) < 0) {
        if (errno == EINPROGRESS) errno = ETIMEDOUT;  // SO_SNDTIMEO expired (a cut link)
        die("connect");
    }
    // Again after connect: a route's congctl (wan.py sets one per namespace) replaces the
    // socket's choice when the connection starts.
    if (!a.cc.empty() && setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, a.cc.data(), socklen_t(a.cc.size())) < 0)
        die("TCP_CONGESTION");
    return fd;
}

// ------------------------------------------------------------------ throughput

int runRecv(const Args &a) {
    const int lfd = listenOn(a.port);
    std::atomic<uint64_t> total{0};
    std::atomic<int> open_streams{0};
    std::vector<std::thread> threads;
    Clock::time_point t_first{};
    // Accept the --streams connections the sender opens (all at once), or give up after
    // --timeout without a new one.
    while (int(threads.size()) < a.streams) {
        pollfd p{lfd, POLLIN, 0};
        if (poll(&p, 1, int(a.timeout * 1000)) <= 0) break;
        int fd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) continue;
        if (threads.empty()) t_first = Clock::now();
        setTimeouts(fd, a.timeout);
        open_streams.fetch_add(1);
        threads.emplace_back([fd, &total, &open_streams] {
            std::vector<char> buf(1 << 20);
            while (true) {
                const ssize_t r = recv(fd, buf.data(), buf.size(), 0);
                if (r <= 0) break;
                total.fetch_add(uint64_t(r), std::memory_order_relaxed);
            }
            close(fd);  // tells the sender that everything arrived
            open_streams.fetch_sub(1);
        });
    }
    close(lfd);
    if (int(threads.size()) < a.streams) {
        std::fprintf(stderr, "pccl-wan-tcp: %zu of %d connections within %.0f s\n", threads.size(), a.streams,
                     a.timeout);
        if (threads.empty()) return 1;
    }
    // Sample the byte counter every 20 ms until every stream is closed.
    std::vector<std::pair<double, uint64_t>> samples;
    while (open_streams.load() > 0) {
        samples.emplace_back(since(t_first), total.load());
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    for (auto &t : threads) t.join();
    const double t_end = since(t_first);
    const uint64_t bytes = total.load();
    samples.emplace_back(t_end, bytes);
    // Steady state: from `omit` to the last sample where the byte count still grew.
    double t_last = 0;
    uint64_t b_last = 0;
    for (auto &[t, b] : samples)
        if (b > b_last || t_last == 0) t_last = t, b_last = b;
    double steady = 0;
    if (t_last > a.omit + 0.2) {
        uint64_t b_omit = 0;
        for (auto &[t, b] : samples)
            if (t <= a.omit) b_omit = b;
        steady = double(b_last - b_omit) * 8 / (t_last - a.omit) / 1e9;
    }
    // Bytes received in each whole second from the first connection (for ramp-up plots and
    // "first 10 s" averages).
    std::string timeline;
    for (int sec = 1; sec <= int(t_last); ++sec) {
        uint64_t at = 0, before = 0;
        for (auto &[t, b] : samples) {
            if (t <= sec) at = b;
            if (t <= sec - 1) before = b;
        }
        if (sec > 1) timeline += ',';
        timeline += std::to_string(at - before);
    }
    std::printf("result streams=%zu bytes=%llu seconds=%.3f gbps=%.4f steady_gbps=%.4f timeline=%s\n", threads.size(),
                static_cast<unsigned long long>(bytes), t_last, t_last > 0 ? double(bytes) * 8 / t_last / 1e9 : 0.0,
                steady, timeline.empty() ? "0" : timeline.c_str());
    return 0;
}

int runSend(const Args &a) {
    // Every stream connects on its own thread (one RTT for all), then all start together.
    std::latch connected(a.streams);
    std::atomic<int> failures{0};
    Clock::time_point t0{};
    std::once_flag t0_once;
    std::vector<std::thread> threads;
    for (int i = 0; i < a.streams; ++i)
        threads.emplace_back([&] {
            const int fd = connectTo(a);
            connected.arrive_and_wait();
            std::call_once(t0_once, [&] { t0 = Clock::now(); });
            std::vector<char> buf(256 << 10, 'x');
            while (since(t0) < a.seconds) {
                const ssize_t w = send(fd, buf.data(), buf.size(), MSG_NOSIGNAL);
                if (w < 0 && errno != EINTR && errno != EAGAIN) {
                    failures.fetch_add(1);
                    break;
                }
            }
            shutdown(fd, SHUT_WR);
            char c;
            while (recv(fd, &c, 1, 0) > 0) {  // the receiver closes after reading everything
            }
            close(fd);
        });
    for (auto &t : threads) t.join();
    std::printf("sent streams=%d seconds=%.3f failures=%d\n", a.streams, since(t0), failures.load());
    return failures.load() ? 1 : 0;
}

// ------------------------------------------------------------------ round trip

int runEcho(const Args &a) {
    const int lfd = listenOn(a.port);
    // Serve until no client came for --timeout seconds.
    while (true) {
        pollfd p{lfd, POLLIN, 0};
        if (poll(&p, 1, int(a.timeout * 1000)) <= 0) break;
        int fd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) continue;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setTimeouts(fd, a.timeout);
        char buf[4096];
        ssize_t r;
        while ((r = recv(fd, buf, sizeof buf, 0)) > 0)
            if (send(fd, buf, size_t(r), MSG_NOSIGNAL) != r) break;
        close(fd);
        if (r == 0) break;  // a clean end of one probe ends the server
    }
    close(lfd);
    return 0;
}

int runRtt(const Args &a) {
    const auto tc = Clock::now();
    const int fd = connectTo(a);
    const double connect_ms = since(tc) * 1e3;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char msg[64] = {};
    std::vector<double> ms;
    for (int i = 0; i < a.count; ++i) {
        const auto t = Clock::now();
        if (send(fd, msg, sizeof msg, MSG_NOSIGNAL) != ssize_t(sizeof msg)) die("send");
        size_t got = 0;
        while (got < sizeof msg) {
            const ssize_t r = recv(fd, msg + got, sizeof msg - got, 0);
            if (r <= 0) die("recv");
            got += size_t(r);
        }
        ms.push_back(since(t) * 1e3);
    }
    shutdown(fd, SHUT_WR);
    close(fd);
    std::sort(ms.begin(), ms.end());
    std::printf("result connect_ms=%.3f min_ms=%.3f median_ms=%.3f max_ms=%.3f\n", connect_ms, ms.front(),
                ms[ms.size() / 2], ms.back());
    return 0;
}

int usage() {
    std::fprintf(stderr,
                 "usage: pccl-wan-tcp recv --port P [--streams N] [--omit S] [--timeout S]\n"
                 "       pccl-wan-tcp echo --port P [--timeout S]\n"
                 "       pccl-wan-tcp send --to IP --port P [--streams N] [--seconds S] [--cc NAME]\n"
                 "       pccl-wan-tcp rtt --to IP --port P [--count N]\n");
    return 2;
}

}  // namespace

int main(int argc, char **argv) {
    if (argc < 2) return usage();
    Args a;
    a.mode = argv[1];
    for (int i = 2; i < argc; ++i) {
        std::string k = argv[i];
        if (i + 1 >= argc) return usage();
        std::string v = argv[++i];
        if (k == "--to") a.to = v;
        else if (k == "--port") a.port = std::atoi(v.c_str());
        else if (k == "--streams") a.streams = std::max(1, std::atoi(v.c_str()));
        else if (k == "--seconds") a.seconds = std::atof(v.c_str());
        else if (k == "--omit") a.omit = std::atof(v.c_str());
        else if (k == "--timeout") a.timeout = std::atof(v.c_str());
        else if (k == "--count") a.count = std::max(1, std::atoi(v.c_str()));
        else if (k == "--cc") a.cc = v;
        else return usage();
    }
    signal(SIGPIPE, SIG_IGN);
    if (a.mode == "recv") return runRecv(a);
    if (a.mode == "send") return runSend(a);
    if (a.mode == "echo") return runEcho(a);
    if (a.mode == "rtt") return runRtt(a);
    return usage();
}
