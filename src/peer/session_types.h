// The vocabulary of the peer's Session (session.h): what a call asks for, what the session
// answers, and the actions the driver (Communicator) carries out. Plain data only.
#pragma once
#include <pccl.h>

#include <cstdint>
#include <array>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "protocol/messages.h"
#include "util/collective_kind.h"
#include "util/status.h"
#include "util/uuid.h"

namespace pccl::peer {

using RequestId = uint64_t;

enum class Phase { Created, Connecting, Connected, Dead };

inline constexpr size_t kVoteKinds = 3;  // protocol::VoteKind: Topology, PeersPending, Optimize

struct SessionOptions {
    std::string masterName;          // "127.0.0.1:48148", for messages
    uint64_t heartbeatTimeoutMs = 5000;
    uint64_t tickPeriodMs = 1000;    // how often the driver calls onTick()
    std::optional<uint64_t> admissionTimeoutMs;  // none: pcclConnect waits while the master answers
    // docs/master_recovery.md: how long the peer waits for a lost or silent master (reconnecting
    // to a closed one) before every call fails with pcclMasterConnectionLost; 0: at once.
    uint64_t reconnectTimeoutMs = 60000;
    size_t masterCount = 1;  // addresses to try in turn (CommOptions::masters)
    std::vector<std::string> masterNames;  // those addresses, for messages (empty: masterName)
};

// The peer's link to the master (docs/master_recovery.md): Up; Down (no connection, the driver
// reconnects); Rejoining (connected again and re-registered, waiting for the rebuilt run).
enum class MasterLink { Up, Down, Rejoining };

// One collective call (the name is historical: every kind goes through the all-reduce path).
// Buffers by kind: collectives/allreduce_ring.h; world: the group size the buffers are laid out
// for (checked when the collective commences); counts: an uneven all-gather/reduce-scatter's
// blocks per ring rank (empty: even blocks of `count`, the size of this rank's block).
struct ReduceArgs {
    CollectiveKind kind = CollectiveKind::AllReduce;
    uint32_t root = 0, world = 0;
    std::vector<uint64_t> counts;
    const void *send = nullptr;
    void *recv = nullptr;
    size_t count = 0;
    pcclDataType_t dtype = pcclFloat;
    pcclRedOp_t op = pcclSum;
    uint64_t tag = 0;
    pcclQuantizationOptions_t quant{};
};

struct OpStats {
    uint64_t txBytes = 0, rxBytes = 0;
    uint64_t sendBytesPerS = 0;  // to the successor; 0: unknown
};

struct ReduceResult {
    uint32_t worldSize = 0;
    uint64_t txBytes = 0, rxBytes = 0;
    uint64_t durationUs = 0;  // from the start request to the end of the operation (session clock)
};

struct SyncResult {
    uint64_t revision = 0;
    uint64_t txBytes = 0, rxBytes = 0;
};

// What this peer has done since it connected (pcclGetCommunicatorStats, StatsReport). Counted
// by the session once per operation, at its end, from the bytes its engine reports: nothing is
// counted per frame. Requests refused at once (usage errors) count nowhere.
struct Counters {
    uint64_t allReducesCompleted = 0, allReducesFailed = 0;  // all-reduces only
    uint64_t collectivesCompleted = 0, collectivesFailed = 0;  // every kind, all-reduces included
    uint64_t syncsCompleted = 0, syncsFailed = 0;
    uint64_t votesCompleted = 0, votesFailed = 0;
    // Data-plane bytes of all-reduces and shared-state transfers (not of bandwidth probes).
    uint64_t txBytes = 0, rxBytes = 0;
    uint64_t syncTxBytes = 0, syncRxBytes = 0;    // the shared-state transfers' part of them
    uint64_t probeTxBytes = 0, probeRxBytes = 0;  // bandwidth probes (not in txBytes/rxBytes)
    uint64_t lastAllReduceUs = 0, lastAllReduceBytes = 0;  // the latest successful all-reduce
    // The send rate to the ring successor of the latest all-reduce that measured one.
    Uuid lastSendTo;
    uint64_t lastSendBytesPerS = 0;
    bool operator==(const Counters &) const = default;
};

// The counters and this peer's place in the run (Session::stats).
struct Stats {
    Counters counters;
    uint32_t worldSize = 0, groupWorldSize = 0;  // 0 when not connected
    uint32_t rank = UINT32_MAX;                  // UINT32_MAX when not connected or not in a ring
    uint32_t peerGroup = 0;
    uint64_t epoch = 0;  // of the latest topology (admission round) this peer saw
};

// A StatsReport goes to the master at most once per this period, and only when a counter
// changed since the last one (Session::onTick).
inline constexpr uint64_t kStatsReportPeriodMs = 2000;

// What a finished call returns besides its status.
using Reply = std::variant<std::monostate, bool, ReduceResult, SyncResult>;

// ---- actions
struct SendToMaster {
    protocol::ControlMessage message;
};
// Close the control connection (after a protocol error).
struct DisconnectMaster {
    std::string reason;
};
// Connect to master address number `address` (CommOptions::masters) after `delayMs`; answer
// with onReconnected(status).
struct ReconnectMaster {
    size_t address = 0;
    uint64_t delayMs = 0;
};
// Open the pool to the ring successor; answer with onLinksConnected(epoch, status).
struct ConnectLinks {
    uint64_t epoch = 0;
    protocol::RingMember next;
};
struct ClosePeer {
    Uuid peer;
    std::string reason;
};
struct CloseAllData {
    std::string reason;
};
// Start the ring engine of all-reduce `args.tag` with sequence `seq`; its local end is reported
// with onAllReduceFinished.
struct StartAllReduce {
    ReduceArgs args;
    uint64_t seq = 0;
    uint64_t segmentBytes = 0;
    uint32_t rank = 0, worldSize = 0;
    protocol::RingMember prev, next;
};
// The master committed the operation: release its engine (no abort needed).
struct ReleaseAllReduce {
    uint64_t tag = 0, seq = 0;
};
// Abort the engine (restoring an in-place input), then report onAllReduceStopped with `status`
// extended by what the engine was doing.
struct StopAllReduce {
    uint64_t tag = 0, seq = 0;
    Status status;
};
// Start the shared-state transfer of the plan (the driver holds the entries' memory).
struct StartTransfer {
    protocol::SharedStatePlan plan;
};
// Stop the transfer (drain a committed one, abort a failed one), then onTransferStopped.
struct StopTransfer {
    uint64_t seq = 0;
    Status status;
};
struct SourceLost {
    uint64_t seq = 0;
    Uuid peer;
};
// Measure the links to `peers` for window_ms, then onProbeDone.
struct StartProbe {
    protocol::BandwidthProbe probe;
};
// Wake the call `id` with its result.
// A run with a secret: give the data plane this admission's own key (from Welcome) and/or the
// pair keys for peers this one may connect to (from PeerKeys).
struct InstallKeys {
    std::optional<std::array<uint8_t, 32>> own;
    std::vector<protocol::PeerKey> peers;
};
struct Complete {
    RequestId id = 0;
    Status status;
    Reply reply;
};

using Action = std::variant<SendToMaster, DisconnectMaster, ReconnectMaster, ConnectLinks, ClosePeer, CloseAllData, StartAllReduce,
                            ReleaseAllReduce, StopAllReduce, StartTransfer, StopTransfer, SourceLost, StartProbe,
                            InstallKeys, Complete>;
using Actions = std::vector<Action>;

} // namespace pccl::peer
