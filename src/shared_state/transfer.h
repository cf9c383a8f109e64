// One shared-state sync round's data movement on this peer (docs/shared_state.md), pull based.
//
// As a receiver it asks the round's sources for the dirty chunks (header-only request frames),
// at most `perSource` outstanding per source and `maxOutstanding` in all, always from the
// least-loaded usable source; reads each chunk into a staging buffer, verifies its digest and
// only then copies it into the user's buffer. A chunk that fails verification marks its source
// bad; a source whose connection breaks or that the master reports lost is dropped; either way
// its chunks are fetched from another source. The round fails only when a chunk has no source
// left. As a source it answers requests from the receivers the plan names, straight from the
// user's buffers (zstd-compressed when enabled and worth it).
//
// Threads: start()/sourceLost()/abort() from the communicator's control thread; frame callbacks
// on the data plane's I/O threads. onFinished runs once: a receiver when every chunk is in
// place, a source at once (it keeps serving until the round ends); abort as in
// transport::DataOperation, which the communicator also uses to drain a source's sends on
// commit.
#pragma once
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "protocol/messages.h"
#include "shared_state/transfer_wire.h"
#include "transport/data_operation.h"
#include "transport/data_plane.h"
#include "util/status.h"

namespace pccl::shared_state {

struct TransferOptions {
    int poolSize = 4;
    std::chrono::milliseconds connectTimeout{10000};
    int compressionLevel = 0;   // zstd level for chunks this peer serves; 0 = never compress
    size_t maxOutstanding = 16; // chunks requested and not yet verified, over all sources
    size_t perSource = 4;       // of those, from one source
};

class StateTransfer : public transport::DataOperation {
public:
    StateTransfer(transport::DataPlane &plane, std::vector<LocalEntry> entries, protocol::SharedStatePlan plan,
                  TransferOptions options, std::function<void(Status)> onFinished);
    // Connects the pools (to sources and to the receivers this peer serves) and starts fetching.
    void start();
    // The master removed `peer` from the run: never ask it again; fetch its chunks elsewhere.
    void sourceLost(const Uuid &peer);

    void *beginFrame(const transport::SegmentHeader &h, const Uuid &from, std::string *error) override;
    void onPayload(const transport::SegmentHeader &h) override;
    void onPayloadFailed(const transport::SegmentHeader &h, const std::string &why) override;

private:
    enum class ChunkState : uint8_t { Pending, Requested, Reading, Done };
    struct Chunk {
        uint32_t fetch = 0;  // index into plan_.receive
        uint32_t entry = 0, index = 0;
        protocol::Digest digest{};
        ChunkState state = ChunkState::Pending;
        int source = -1;  // index into plan_.peers while requested or reading
        int slot = -1;
    };
    struct Source {
        bool connected = false;
        bool unusable = false;
        std::string why;  // why it became unusable
        size_t outstanding = 0;
    };
    struct Served {
        bool ready = false;  // pool to this receiver is up
        std::vector<uint64_t> waiting;  // requested chunk keys, answered once ready
    };
    struct Slot {
        std::vector<uint8_t> wire;   // the frame payload
        std::vector<uint8_t> plain;  // decompressed (zstd frames only)
    };
    struct Request {
        uint32_t peer;
        transport::SegmentHeader header;
    };

    bool completeLocked() const override { return chunksLeft_ == 0; }
    std::string waitingForLocked() const override;
    std::vector<Uuid> linkedPeersLocked() const override;
    void sendFailedLocked(std::unique_lock<std::mutex> &lock, const Uuid &to, const transport::SegmentHeader &h,
                          const std::string &why) override;
    void afterSendFailed() override { pump(); }

    // Sends every request the windows allow; fails the round if a chunk has no source left.
    void pump();
    std::vector<Request> nextRequestsLocked(std::unique_lock<std::mutex> &lock);
    // Takes the chunk back from its source (which becomes unusable when `why` is non-empty).
    void requeueLocked(Chunk &c, const std::string &why);
    void dropSourceLocked(uint32_t peer, const std::string &why);
    void serve(const Uuid &to, uint64_t key);
    std::string peerName(uint32_t peer) const;
    size_t chunkBytes(const Chunk &c) const;

    transport::DataPlane &plane_;  // connects the pools; frames go through DataOperation::transport_
    std::vector<LocalEntry> entries_;
    const protocol::SharedStatePlan plan_;
    const TransferOptions options_;
    std::unordered_map<Uuid, uint32_t, UuidHash> peerIndex_;

    // Guarded by mu_:
    std::vector<Chunk> chunks_;
    std::unordered_map<uint64_t, size_t> chunkByKey_;
    std::deque<size_t> pending_;
    std::vector<Source> sources_;  // by plan peer index
    std::map<Uuid, Served> served_;
    std::deque<Slot> slots_;  // a deque: a slot stays put while others are added
    std::vector<int> freeSlots_;
    size_t chunksLeft_ = 0, outstanding_ = 0;
};

} // namespace pccl::shared_state
