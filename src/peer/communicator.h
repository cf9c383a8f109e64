// The peer side of a run: membership phases (connect, admission, votes) driven by the master
// over the control connection, and the collectives this peer takes part in.
//
// Threads: API calls come from user threads and block on one condition variable; every control
// message is handled on the control thread (transport::ControlClient); data moves on the data
// plane's I/O threads. All shared state is guarded by mu_.
#pragma once
#include <pccl.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "protocol/messages.h"
#include "transport/control_client.h"
#include "transport/data_plane.h"
#include "util/status.h"

namespace pccl::collectives {
class RingAllReduce;
class ScratchPool;
}
namespace pccl::shared_state {
class StateTransfer;
}
namespace pccl::transport {
class DataOperation;
}

namespace pccl::peer {

struct CommOptions {
    protocol::NetAddr master;
    uint32_t peerGroup = 0;
    int poolSize = 4;
    int ioThreads = 2;
    std::chrono::milliseconds connectTimeout{10000};  // TCP connect to master/peers
    std::optional<std::chrono::milliseconds> admissionTimeout;  // none: wait while the master answers
    size_t segmentBytes = 0;  // 0: collectives::autoSegmentBytes per operation
    // Liveness: the master is declared lost when it answers no heartbeat for this long, and the
    // master removes this peer after as much silence (sent in Hello).
    std::chrono::milliseconds heartbeatTimeout{5000};
    // Progress deadline of a running data transfer (all-reduce, shared-state round): when no
    // frame arrives and no send completes for this long, it fails with pcclTimeout everywhere.
    std::chrono::milliseconds opTimeout{10000};
    int stateCompressionLevel = 0;  // zstd level for shared-state chunks this peer serves; 0 = off
    std::string tcpCongestion = "auto";  // of outgoing data connections (transport::DataPlane)
    bool sameHost = true;  // same-host copies where possible (transport/same_host.h)
    static CommOptions fromEnvironment();  // defaults overridden by PCCL_* variables
};

struct ReduceArgs {
    const void *send = nullptr;
    void *recv = nullptr;
    size_t count = 0;
    pcclDataType_t dtype = pcclFloat;
    pcclRedOp_t op = pcclSum;
    uint64_t tag = 0;
    pcclQuantizationOptions_t quant{};
};

struct SyncEntry {
    std::string name;
    void *data = nullptr;
    size_t count = 0;
    pcclDataType_t dtype = pcclFloat;
    bool allowInequality = false;
};

struct SyncResult {
    uint64_t revision = 0;
    uint64_t txBytes = 0, rxBytes = 0;
};

struct ReduceResult {
    uint32_t worldSize = 0;
    uint64_t txBytes = 0, rxBytes = 0;
};

class Communicator {
public:
    explicit Communicator(CommOptions options);
    ~Communicator();  // leaves gracefully, joins threads
    Communicator(const Communicator &) = delete;
    Communicator &operator=(const Communicator &) = delete;

    Status connect();
    Status updateTopology();
    Result<bool> arePeersPending();
    Status optimizeTopology();
    Result<int> attribute(pcclAttribute_t attribute) const;
    // Live outgoing data connections, and how many of them copy same-host (diagnostics, tests).
    transport::DataPlane::ConnectionCounts dataConnections() const { return data_.connectionCounts(); }

    // Starts an all-reduce identified by args.tag; returns at once.
    Status startAllReduce(const ReduceArgs &args);
    // Waits for the all-reduce with this tag and forgets it.
    Status awaitAllReduce(uint64_t tag, ReduceResult *result);
    // Runs every all-reduce, at most maxInFlight at once (<= 0: all), retrying those aborted by a
    // lost peer until all succeed or the group has fewer than two peers (pcclTooFewPeers).
    Status allReduceMultipleWithRetry(const std::vector<ReduceArgs> &ops, int maxInFlight, ReduceResult *total);
    // Shared-state sync over the peer group (docs/shared_state.md). Blocks.
    Result<SyncResult> syncSharedState(const std::vector<SyncEntry> &entries, uint64_t revision,
                                       pcclSharedStateSyncStrategy_t strategy);
    bool connected() const;
    size_t inFlight() const;

private:
    struct Op {
        ReduceArgs args;
        uint64_t seq = 0;
        uint32_t worldSize = 0;
        std::shared_ptr<collectives::RingAllReduce> engine;
        bool done = false;
        Status status;
        ReduceResult result;
    };
    struct SyncOp;
    enum class Phase { Created, Connecting, Connected, Dead };

    void onMessage(protocol::ControlMessage &&m);
    void onClosed(const std::string &reason);
    void onTopology(const protocol::TopologyUpdate &m);
    void onCommence(const protocol::CollectiveCommence &m);
    void onOpFinished(const std::shared_ptr<Op> &op, Status status);
    void finishOp(const std::shared_ptr<Op> &op, Status status);
    // op's phase for error messages (RingAllReduce::progress, or waiting to start). Without mu_.
    std::string progressOf(Op &op);
    // Aborts the operation's data movement (if it started) and finishes it with `status` once no
    // I/O touches the user's buffers.
    void abortOp(const std::shared_ptr<Op> &op, std::shared_ptr<collectives::RingAllReduce> engine, Status status);
    void failEverything(const Status &status);
    // Control thread, periodically: fails running transfers that stalled past opTimeout.
    void checkProgress();
    void onVoteFailed(const protocol::VoteFailed &m);
    // Measures this peer's links for pcclOptimizeTopology (transport::BandwidthProbe), reports.
    void onBandwidthProbe(const protocol::BandwidthProbe &m);
    std::shared_ptr<transport::DataOperation> runningTransferLocked() const;  // the sync's, if running; mu_ held
    void onSyncPlan(const protocol::SharedStatePlan &m);
    void onSyncEnd(uint64_t seq, Status status, uint64_t revision);
    void onSourceLost(const protocol::SharedStateSourceLost &m);
    void finishSync(const std::shared_ptr<SyncOp> &op, Status status);
    void abortSync(const Status &status);
    void abortTransfer(const std::shared_ptr<SyncOp> &op, std::shared_ptr<shared_state::StateTransfer> transfer,
                       Status status);
    // Waits until pred() holds or the communicator dies; mu_ must be held by lock.
    template <class Pred>
    Status waitUntil(std::unique_lock<std::mutex> &lock, Pred pred, std::optional<std::chrono::milliseconds> timeout,
                     const char *what);

    CommOptions options_;
    transport::ControlClient control_;
    transport::DataPlane data_;
    std::shared_ptr<collectives::ScratchPool> scratch_;  // reused backups and staging of all-reduces

    mutable std::mutex mu_;
    std::condition_variable cv_;
    Phase phase_ = Phase::Created;
    Status deathStatus_;  // why the communicator is dead
    Uuid self_;
    protocol::WorldInfo world_;
    std::vector<protocol::RingMember> ring_;
    uint64_t epoch_ = 0;
    // Admission/topology round: set when TopologyDone arrives for the round we wait for.
    uint64_t topologyDoneEpoch_ = 0;
    Status topologyStatus_;
    uint64_t topologyRounds_ = 0;  // TopologyDone messages received
    uint64_t pendingResults_ = 0, optimizeResults_ = 0;
    bool lastPending_ = false;
    Status pendingStatus_;
    Status lastOptimize_;
    std::map<uint64_t, std::shared_ptr<Op>> ops_;  // by tag
    std::chrono::steady_clock::time_point lastAck_;  // control thread only
    std::shared_ptr<SyncOp> sync_;  // the shared-state sync in progress
    bool syncedBefore_ = false;
};

} // namespace pccl::peer
