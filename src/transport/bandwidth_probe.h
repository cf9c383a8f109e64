// One peer's part in a link measurement round (pcclOptimizeTopology, docs/design.md): it streams
// probe frames to every other peer at once and measures the rate at which frames arrive from
// each sender in the second half of the window: on a long link the first half is slow start (at
// 160 ms a connection needs ~1 s to reach 100 Mbit/s), which would rank links by their RTT
// instead of their capacity. Probe frames carry no meaning: the receiver reads and drops them.
//
// Threads: sendTo() from any thread; frame and send callbacks on the data plane's I/O threads;
// rates() from any thread. The object must outlive nothing: callbacks hold it alive.
#pragma once
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
    // in flight per target.
    // Rates count the frames that arrive from `measureFrom` on (all frames if none does).
    BandwidthProbe(DataPlane &plane, uint64_t seq, size_t frameBytes, int depth,
                   std::chrono::steady_clock::time_point measureFrom);

    // Connects (pool of `poolSize`) and streams to `to` until `until`. Returns at once.
    void sendTo(const Uuid &to, const protocol::NetAddr &addr, int poolSize, std::chrono::milliseconds connectTimeout,
                std::chrono::steady_clock::time_point until);
    // Receive rate per sender so far, in bytes/s: the bytes after its first frame over the time
    // from its first to its last frame, counting frames from `measureFrom` on when at least two
    // arrived then.
    std::map<Uuid, uint64_t> rates() const;

    void *beginFrame(const SegmentHeader &h, const Uuid &from, std::string *error) override;
    void onPayload(const SegmentHeader &) override {}
    void onPayloadFailed(const SegmentHeader &, const std::string &) override {}

private:
    struct Span {
        uint64_t bytes = 0, firstBytes = 0, frames = 0;
        std::chrono::steady_clock::time_point first, last;
        void add(uint64_t n, std::chrono::steady_clock::time_point now);
        uint64_t rate() const;
    };
    struct Received {
        Span all, late;  // every frame; frames from measureFrom_ on
    };
    void pump(const Uuid &to, std::chrono::steady_clock::time_point until);

    DataPlane &plane_;
    const uint64_t seq_;
    const size_t frameBytes_;
    const int depth_;
    const std::chrono::steady_clock::time_point measureFrom_;
    mutable std::mutex mu_;
    std::map<Uuid, Received> received_;
};

} // namespace pccl::transport
