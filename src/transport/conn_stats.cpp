#include "transport/conn_stats.h"

#include <linux/tcp.h>  // tcp_info with tcpi_busy_time (glibc's netinet/tcp.h lacks it)
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace pccl::transport {

bool connStatsEnabled() {
    static const bool on = [] {
        const char *v = std::getenv("PCCL_CONN_STATS");
        return v && std::strcmp(v, "1") == 0;
    }();
    return on;
}

std::string ConnStats::take(std::chrono::steady_clock::time_point since) {
    const uint64_t b = bytes.exchange(0), f = frames.exchange(0);
    const int64_t first = firstNs.exchange(0), last = lastNs.exchange(0);
    const int64_t base = since.time_since_epoch().count();
    char buf[160];
    if (!f) return "idle";
    std::snprintf(buf, sizeof buf, "%.1f MiB in %llu frames, +%.3f s .. +%.3f s", static_cast<double>(b) / (1 << 20),
                  static_cast<unsigned long long>(f), static_cast<double>(first - base) / 1e9,
                  static_cast<double>(last - base) / 1e9);
    return buf;
}

std::string tcpInfoSummary(int fd, ConnStats &s) {
    tcp_info ti{};
    socklen_t len = sizeof ti;
    if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) return "no TCP_INFO";
    const uint64_t busy = ti.tcpi_busy_time, retrans = ti.tcpi_total_retrans;
    char buf[200];
    std::snprintf(buf, sizeof buf, "tcp busy %.2f s, retrans %llu, cwnd %u, rtt %.1f ms, delivery %.1f Mbit/s, notsent %u",
                  static_cast<double>(busy - s.busyUs) / 1e6, static_cast<unsigned long long>(retrans - s.retrans),
                  ti.tcpi_snd_cwnd, ti.tcpi_rtt / 1e3, static_cast<double>(ti.tcpi_delivery_rate) * 8 / 1e6,
                  ti.tcpi_notsent_bytes);
    s.busyUs = busy;
    s.retrans = retrans;
    return buf;
}

TcpProgress tcpProgress(int fd) {
    tcp_info ti{};
    socklen_t len = sizeof ti;
    if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) return {};
    // Delivered segments (SACKed ones included) rather than bytes_acked, which stands still behind
    // a hole until the retransmission fills it and then jumps (0.01% loss: +-50% per 800 ms).
    // The initial slow start's threshold reads as TCP_INFINITE_SSTHRESH (Linux 6.1: a fresh
    // connection 0x7fffffff, one that BBR moved past its start-up 10); 0 is taken as unset too.
    const bool startup = ti.tcpi_snd_ssthresh == 0 || ti.tcpi_snd_ssthresh >= 0x7fffffffu;
    return {static_cast<uint64_t>(ti.tcpi_delivered) * ti.tcpi_snd_mss, std::chrono::microseconds(ti.tcpi_rtt),
            std::chrono::microseconds(ti.tcpi_min_rtt), startup};
}

} // namespace pccl::transport
