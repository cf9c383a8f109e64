// Pipelined ring all-reduce over a transport::FrameTransport (the data plane; in tests, the
// in-memory transport of tests/support/mem_transport.h), for one operation; and its halves and
// relatives over the same machinery (RingAllReduceParams::kind): reduce-scatter (the first
// phase alone), all-gather (the second phase alone), broadcast (the second phase of a partition
// in which the root owns everything: a pipelined chain from the root) and barrier (no data).
//
// The buffer is cut into N chunks (N = ring size); chunk c is owned by ring position c. Its
// reduction starts at position c+1, flows around the ring (each peer adds its contribution to
// the partial and forwards it), and is finished by the owner, which writes the final value and
// starts the all-gather of that chunk; every other peer stores it and forwards it. Each chunk
// is cut into segments (the unit of bookkeeping and of in-place backups, the same on every peer),
// and a segment travels as one or more frames, each covering whole units of it (a fixed grid of
// at most 64 units per segment): the sender cuts a segment into about as many frames as it has
// connections to its successor, and the pool's shared queue hands each frame to whichever
// connection has room, so all connections carry the last segment of a phase too (docs/design.md,
// Segment scheduling). A frame is reduced and forwarded as soon as it arrived (pipelining),
// whatever connection it came on and in whatever order; a quantized segment is one frame.
//
// Memory: partials are received straight into the output buffer (or, when partials travel in a
// wider accumulator type, into a staging buffer); all-gather data straight into the output.
// In place, the input is copied segment by segment into a backup just before that segment is
// first overwritten, so an abort can restore it.
//
// Determinism: every chunk's final value is computed by exactly one peer in ring order and
// copied byte for byte to the others.
//
// Threads: start() and abort() are called by the communicator's control thread; frame
// callbacks run on the transport's threads. The finished/quiescent callbacks run on either.
// Abort (transport::DataOperation) restores an in-place input before it reports quiescence.
#pragma once
#include <pccl.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "collectives/quantize.h"
#include "collectives/scratch_pool.h"
#include "transport/data_operation.h"
#include "util/collective_kind.h"
#include "util/status.h"
#include "util/uuid.h"

namespace pccl::collectives {

// Buffers by kind (count: elements of the whole buffer; block c: `blocks[c]` elements at the sum
// of the blocks before it, in ring order):
// - AllReduce: send and recv of count elements (send == recv: in place).
// - AllGather: send holds this rank's block, recv all count elements (in place: send == the
//   rank's block inside recv).
// - ReduceScatter: send holds all count elements, recv this rank's block of the result (in place:
//   recv == the rank's block inside send).
// - Broadcast: recv of count elements; send (read on the root only; NULL elsewhere) of count
//   elements (send == recv: in place).
// - Barrier: no data (count 0).
// Frames: at most this many units per segment (one bit each in a mask), and a sender's frames are
// at least kMinFrameBytes (or the whole segment): smaller ones cost more per byte than they gain
// in balance (docs/design.md, Segment scheduling).
inline constexpr size_t kUnitsPerSegment = 64;
inline constexpr size_t kMinFrameBytes = 64 << 10;
// Cut (connections > 1) frames are at most this large: a frame taken by a connection that turns
// out slow (one just woken, still in slow start, or one that lost packets) is the tail of its
// phase; 2 MiB frames on such a connection held 3-peer calls for up to 2 s after the rest.
inline constexpr size_t kMaxFrameBytes = 1 << 20;
// The elements of each frame a sender with `connections` connections to its successor cuts a
// segment of `segElems` into: about one per connection, at most kMaxFrameBytes when cut, at least
// `minBytes` (at most the segment), a multiple of `unitElems`.
size_t frameElems(size_t segElems, size_t unitElems, size_t elemBytes, int connections, size_t minBytes = kMinFrameBytes);

struct RingAllReduceParams {
    uint64_t seq = 0;
    CollectiveKind kind = CollectiveKind::AllReduce;
    const void *send = nullptr;
    void *recv = nullptr;
    size_t count = 0;
    // AllGather, ReduceScatter: elements of each ring rank's block (worldSize entries summing to
    // count); empty: the even partition (block c = [count*c/N, count*(c+1)/N)).
    std::vector<size_t> blocks;
    uint32_t root = 0;  // Broadcast: the ring rank whose data everyone receives
    pcclDataType_t dtype = pcclFloat;
    pcclRedOp_t op = pcclSum;
    uint32_t rank = 0;  // position in the ring
    uint32_t worldSize = 1;
    Uuid prev, next;
    std::string prevName, nextName;  // "peer 1a2b3c4d (10.0.0.7:48150)", for error messages
    uint64_t tag = 0;                // for error messages
    size_t segmentBytes = 0;  // 0: autoSegmentBytes()
    size_t minFrameBytes = kMinFrameBytes;  // see frameElems (tests lower it to cut small segments)
    // pcclQuantNone: exact. Otherwise segments travel quantized (collectives/quantize.h); the
    // caller has checked the combination with checkQuantization().
    pcclQuantizationOptions_t quant{pcclUint8, pcclQuantNone};
    std::shared_ptr<ScratchPool> scratch;  // where backups and staging come from (may be null)
};

// The default segment: an eighth of a chunk (eight segments per chunk keep the pipeline full and
// the pool's connections busy), at least 1 MiB and at most 8 MiB. Fewer, larger segments cost
// fewer frames, wakeups and syscalls per byte (loopback, N=3, 256 MiB: +25% busbw with 8 MiB
// against 1 MiB); a segment crosses a hop whole before it is forwarded, so on a 0.3 Gbit/s link
// an 8 MiB segment adds ~0.2 s per hop to a call that moves 85 MiB chunks (docs/design.md, WAN
// knobs). Depends only on what every peer of the operation
// knows alike, so all of them cut the same segments.
size_t autoSegmentBytes(size_t chunkBytes);


class RingAllReduce : public transport::DataOperation {
public:
    // onFinished runs once: ok when every segment was received and every send flushed, or the
    // first local failure (a link broke, a peer sent garbage). Abort: see DataOperation.
    RingAllReduce(transport::FrameTransport &transport, RingAllReduceParams params, std::function<void(Status)> onFinished);

    // Sends this peer's first chunk, and any forwards deferred so far; call once the outgoing
    // pool to `next` is up.
    void start();

    void *beginFrame(const transport::SegmentHeader &h, const Uuid &from, std::string *error) override;
    void onPayload(const transport::SegmentHeader &h) override;
    void onPayloadFailed(const transport::SegmentHeader &h, const std::string &why) override;

private:
    enum Phase : uint8_t { kReduceScatter = 0, kAllGather = 1 };
    bool phaseUsed(Phase ph) const {
        return ph == kReduceScatter ? p_.kind == CollectiveKind::AllReduce || p_.kind == CollectiveKind::ReduceScatter
                                    : p_.kind != CollectiveKind::ReduceScatter;
    }
    // Fills begin_ (the partition) from the kind, the blocks or the root.
    void partition();
    // A ring of one: the result is the local data.
    void copyAlone();
    // This peer's first sends: its reduce-scatter chunk, its all-gather block (or the root's data).
    void startSends(std::unique_lock<std::mutex> &lock);

    bool completeLocked() const override { return got_[0] == expected_[0] && got_[1] == expected_[1]; }
    void restoreAfterAbortLocked() override;
    std::string waitingForLocked() const override;
    std::vector<Uuid> linkedPeersLocked() const override { return {p_.prev, p_.next}; }
    // Names the successor with its address and the phase (the data plane knows only its id).
    void sendFailedLocked(std::unique_lock<std::mutex> &lock, const Uuid &to, const transport::SegmentHeader &h,
                          const std::string &why) override;

    size_t chunkBegin(uint32_t c) const;
    uint32_t chunkOf(size_t offset) const;
    // What a frame from the predecessor covers: its segment, that segment's extent, the frame's
    // elements and its units (bits of the segment's mask). False if it does not fit the
    // segmentation (not inside one segment, not on the unit grid, a length that is not whole
    // elements; a quantized frame must be its whole segment).
    struct FrameSpan {
        size_t idx = 0, segBegin = 0, segLen = 0, n = 0;
        uint64_t bits = 0;
    };
    bool locate(const transport::SegmentHeader &h, FrameSpan *f) const;
    uint64_t fullMask(size_t segLen) const;
    const uint8_t *localPtr(size_t offset) const;
    uint8_t *accPtr(size_t offset) const;
    // Where the result at `offset` of the whole buffer goes (ReduceScatter: this rank's block only).
    uint8_t *outPtr(size_t offset) const {
        return static_cast<uint8_t *>(p_.recv) + (offset - outBase_) * elemSize_;
    }
    uint8_t *backupPtr(size_t offset) const { return backup_.data() + (offset - outBase_) * elemSize_; }
    void backup(size_t offset, size_t n);
    // bytes: the payload size; 0 = n elements of the phase's exact wire type. forward: made from
    // a received frame (it goes ahead of this peer's own first sends: FrameTransport::send).
    void sendFrame(Phase phase, size_t offset, size_t n, const void *data, size_t bytes = 0, bool forward = true);
    // Quantized transport: the receive slot and the per-phase send slots of segment idx.
    bool quantized() const { return spec_.algorithm != pcclQuantNone; }
    uint8_t *qin(size_t idx) { return qin_.data() + idx * qSlot_; }
    uint8_t *qout(Phase ph, size_t idx) { return qout_[ph].data() + idx * qSlot_; }
    // The quantized paths of onPayload; false on a malformed frame.
    bool onQuantizedPayload(const transport::SegmentHeader &h, size_t idx, size_t len, uint32_t chunk);

    RingAllReduceParams p_;
    size_t elemSize_, accSize_;
    pcclDataType_t accType_;
    bool inPlace_;
    bool restores_ = false;  // an abort copies backedUp_ segments back into the output
    size_t outBase_ = 0;     // the offset recv starts at (ReduceScatter: this rank's block)
    std::vector<size_t> begin_;  // worldSize + 1 block starts
    size_t segElems_;
    size_t unitElems_ = 1;   // the frame grid: ceil(segElems_ / 64)
    size_t frameElems_ = 0;  // how this peer cuts its sends (set by start(): from its pool size)
    ScratchPool::Scratch staging_;  // partials in the accumulator type (only when it differs)
    ScratchPool::Scratch backup_;   // the input, in place only
    QuantSpec spec_;
    size_t qSlot_ = 0;                // bytes of one quantized segment slot
    ScratchPool::Scratch qin_, qout_[2];
    size_t numSegments_ = 0;
    std::vector<size_t> chunkFirstSegment_;

    // Guarded by mu_:
    std::vector<uint64_t> received_[2];  // per phase, per segment: the units whose frames began
    std::vector<uint64_t> arrived_[2];   // ... and whose payload arrived (a segment counts in got_ when full)
    std::vector<uint8_t> backedUp_;     // per segment
    size_t expected_[2] = {0, 0};       // segments to receive per phase
    size_t got_[2] = {0, 0};
    // Forwards produced before start() (the predecessor may send before this peer's pool to
    // its successor is up); start() sends them.
    struct Deferred {
        Phase phase;
        size_t offset, n;
        const void *data;
        size_t bytes;
        bool forward;
    };
    std::vector<Deferred> deferred_;
};

} // namespace pccl::collectives
