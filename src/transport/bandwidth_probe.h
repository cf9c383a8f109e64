// One peer's part in a link measurement round (pcclOptimizeTopology, docs/design.md): it streams
// probe frames to every other peer at once, and measures per sender the bytes whose frames
// arrived whole within [measureFrom, measureTo], divided by that window. The window is the
// second half of the round: on a long link the first half is slow start (at 160 ms a connection
// needs ~1 s to reach 100 Mbit/s), which would rank links by their RTT instead of their
// capacity. Frames are small (32 KiB) so that even a slow link completes many in the window,
// and they are counted when they complete, not when their header arrives: the frames of a
// pool travel side by side on several connections, so header times say nothing of the rate.
// Probe frames carry no meaning: the receiver reads and drops them.
//
// Threads: sendTo() from any thread; frame and send callbacks on the data plane's I/O threads;
// rates() from any thread. The object must outlive nothing: callbacks hold it alive.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "transport/data_plane.h"

namespace pccl::transport {

class BandwidthProbe : public FrameSink, public std::enable_shared_from_this<BandwidthProbe> {
public:
    // seq: the round's data-plane sequence number; frames of `frameBytes` (at most 1 MiB), `depth`
    // in flight per target; rates over the window [measureFrom, measureTo].
    BandwidthProbe(DataPlane &plane, uint64_t seq, size_t frameBytes, int depth,
                   std::chrono::steady_clock::time_point measureFrom, std::chrono::steady_clock::time_point measureTo);

    // Connects (pool of `poolSize`) and streams to `to` until `until`. Returns at once.
    void sendTo(const Uuid &to, const protocol::NetAddr &addr, int poolSize, std::chrono::milliseconds connectTimeout,
                std::chrono::steady_clock::time_point until);
    // Receive rate per sender, in bytes/s: the bytes of its frames that completed within the
    // window over the window's length; for a sender none of whose frames completed in the
    // window, its bytes after its first frame over the time to its last (0 with one frame).
    std::map<Uuid, uint64_t> rates() const;
    // Bytes of the probe frames this peer sent (handed to the sockets) and received whole, so far.
    uint64_t sentBytes() const { return sent_.load(std::memory_order_relaxed); }
    uint64_t receivedBytes() const;

    void *beginFrame(const SegmentHeader &h, const Uuid &from, std::string *error) override;
    void onPayload(const SegmentHeader &) override {}
    void onPayloadFailed(const SegmentHeader &, const std::string &) override {}
    void onDiscarded(const SegmentHeader &h, const Uuid &from) override;

private:
    struct Received {
        uint64_t inWindow = 0;                                    // bytes of frames completed in the window
        uint64_t bytes = 0, firstBytes = 0, frames = 0;           // every completed frame
        std::chrono::steady_clock::time_point first, last;
    };
    void pump(const Uuid &to, std::chrono::steady_clock::time_point until);

    DataPlane &plane_;
    const uint64_t seq_;
    const size_t frameBytes_;
    const int depth_;
    const std::chrono::steady_clock::time_point measureFrom_, measureTo_;
    std::atomic<uint64_t> sent_{0};
    mutable std::mutex mu_;
    std::map<Uuid, Received> received_;
};

} // namespace pccl::transport
