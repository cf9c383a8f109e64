// Per-connection counters of the data plane, for finding out how the connections of a pool share
// the work of one operation (docs/design.md, Segment scheduling): bytes and frames per
// connection and when its first and last frame completed, plus the kernel's TCP_INFO of the
// connections this peer sends on. On only with PCCL_CONN_STATS=1; off, each frame costs one
// branch on a constant.
//
// Threads: record() runs on the connection's strand; take() on any thread (atomics).
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

namespace pccl::transport {

bool connStatsEnabled();  // PCCL_CONN_STATS=1, read once

struct ConnStats {
    std::atomic<uint64_t> bytes{0}, frames{0};
    std::atomic<int64_t> firstNs{0}, lastNs{0};  // steady_clock, since the last take(); 0: none
    // TCP_INFO totals at the last take() (outgoing connections), for deltas.
    uint64_t busyUs = 0, retrans = 0;

    void record(size_t n) {
        const int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
        int64_t zero = 0;
        firstNs.compare_exchange_strong(zero, now);
        lastNs = now;
        bytes += n;
        ++frames;
    }
    // "12.0 MiB in 3 frames, +0.012 s .. +3.410 s" relative to `since`, and resets the counters.
    std::string take(std::chrono::steady_clock::time_point since);
};

// The kernel's view of an outgoing TCP connection since the last call (busy time, retransmits)
// and now (cwnd, smoothed RTT, delivery rate, bytes not yet sent): "tcp busy 3.41 s, ...".
std::string tcpInfoSummary(int fd, ConnStats &s);

// What the kernel says of a connection's progress (TCP_INFO): bytes delivered to the peer so far
// (segments it acknowledged, selectively or not, times the segment size) and the smoothed round
// trip; zeros when it cannot tell.
struct TcpProgress {
    uint64_t delivered = 0;
    std::chrono::microseconds rtt{0};     // smoothed
    std::chrono::microseconds minRtt{0};  // the lowest seen: srtt above it is a queue
    // Still in its first slow start: no slow-start threshold set yet (cubic and reno set one at
    // the first loss or HyStart exit, BBR when it leaves its start-up).
    bool startup = false;
};
TcpProgress tcpProgress(int fd);

} // namespace pccl::transport
