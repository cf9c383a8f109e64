// The control-protocol message table: every message exchanged between a peer and the master.
// The wire type id of a message is its index in ControlMessage; append new messages at the end
// and bump kProtocolVersion when a message changes. Each struct lists its fields once in
// PCCL_FIELDS; codec.h encodes and decodes every message from that list.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "util/uuid.h"

namespace pccl::protocol {

inline constexpr uint32_t kMagic = 0x4c434350;  // "PCCL"
inline constexpr uint16_t kProtocolVersion = 7;
inline constexpr uint32_t kMaxControlFrame = 16u << 20;  // bytes of one control frame
inline constexpr uint32_t kMaxStringBytes = 64u << 10;
inline constexpr uint32_t kMaxVectorItems = 1u << 20;

#define PCCL_FIELDS(...)                                                                                               \
    template <class F>                                                                                                 \
    void fields(F &&f) {                                                                                               \
        f(__VA_ARGS__);                                                                                                \
    }                                                                                                                  \
    template <class F>                                                                                                 \
    void fields(F &&f) const {                                                                                         \
        f(__VA_ARGS__);                                                                                                \
    }
#define PCCL_NO_FIELDS                                                                                                 \
    template <class F>                                                                                                 \
    void fields(F &&) const {}                                                                                         \
    template <class F>                                                                                                 \
    void fields(F &&) {}

// An IPv4 or IPv6 socket address as carried on the wire.
struct NetAddr {
    uint8_t family = 4;  // 4 or 6
    std::array<uint8_t, 16> ip{};
    uint16_t port = 0;
    PCCL_FIELDS(family, ip, port)
    auto operator<=>(const NetAddr &) const = default;
    std::string str() const;
};

struct RingMember {
    Uuid uuid;
    NetAddr data_addr;
    PCCL_FIELDS(uuid, data_addr)
    bool operator==(const RingMember &) const = default;
};

struct WorldInfo {
    uint32_t global_world_size = 0;
    uint32_t group_world_size = 0;
    uint32_t num_groups = 0;
    uint32_t largest_group = 0;
    PCCL_FIELDS(global_world_size, group_world_size, num_groups, largest_group)
};

// What every peer of a group must agree on for one all-reduce tag (the master compares them).
// segment_bytes is the configured pipeline segment (PCCL_SEGMENT_BYTES; 0 = auto, which is the
// same on every peer): peers that cut the data differently cannot exchange it.
struct CollectiveDesc {
    uint64_t count = 0;
    uint8_t dtype = 0;
    uint8_t op = 0;
    uint8_t quant_dtype = 0;
    uint8_t quant_algo = 0;
    uint64_t segment_bytes = 0;
    // Which collective (pccl::CollectiveKind: all-reduce 0, all-gather 1, reduce-scatter 2,
    // broadcast 3, barrier 4); its root (broadcast: a ring rank; 0 otherwise); the group size the
    // caller laid its buffers out for (0 for all-reduce and barrier, where it does not matter);
    // the per-rank block counts of an uneven all-gather or reduce-scatter (empty: even blocks of
    // `count`). Peers must agree on all of it (pcclMismatch), except `world`: peers that see
    // different group sizes raced a membership change (pcclRankConnectionLost).
    uint8_t kind = 0;
    uint32_t root = 0;
    uint32_t world = 0;
    std::vector<uint64_t> counts;
    PCCL_FIELDS(count, dtype, op, quant_dtype, quant_algo, segment_bytes, kind, root, world, counts)
    bool operator==(const CollectiveDesc &) const = default;
};

// ---- peer -> master
// The peer chooses its own random id, so its data plane knows it before any neighbour can
// connect; the master rejects an id already in use.
struct Hello {
    uint32_t magic = kMagic;
    uint16_t version = kProtocolVersion;
    uint32_t peer_group = 0;
    uint16_t data_port = 0;
    Uuid uuid;
    uint32_t heartbeat_timeout_ms = 0;  // the master removes this peer after this much silence; 0 = its default
    // Where the other peers reach this one's data plane through NAT (PCCL_ADVERTISED_ADDRESS):
    // family 0 = the address the master observes, port 0 = data_port.
    NetAddr advertised{0, {}, 0};
    // The highest master epoch this peer has seen (0: none; docs/master_recovery.md): a joiner
    // that reconnects after its master died says so, and a master older than this is refused.
    uint64_t master_epoch = 0;
    PCCL_FIELDS(magic, version, peer_group, data_port, uuid, heartbeat_timeout_ms, advertised, master_epoch)
};
struct VoteUpdateTopology { PCCL_NO_FIELDS };
struct LinksReady {
    uint64_t epoch = 0;
    bool ok = true;
    std::string error;
    // !ok: the ring successor this peer could not link to (nil: none, this peer itself failed);
    // the master removes a joiner named here alone instead of failing the round (protocol v6).
    Uuid failed_peer{};
    PCCL_FIELDS(epoch, ok, error, failed_peer)
};
struct VotePeersPending { PCCL_NO_FIELDS };
struct VoteOptimizeTopology { PCCL_NO_FIELDS };
struct CollectiveInit {
    uint64_t tag = 0;
    CollectiveDesc desc;
    PCCL_FIELDS(tag, desc)
};
// A failure report carries its kind (pcclRankConnectionLost or pcclTimeout), which the master
// hands on to every participant.
struct CollectiveDone {
    uint64_t tag = 0;
    uint64_t seq = 0;
    bool ok = true;
    std::string error;
    uint8_t result = 0;  // pcclResult_t when !ok
    uint64_t send_bytes_per_s = 0;  // this peer's send rate to its successor (0: unknown)
    PCCL_FIELDS(tag, seq, ok, error, result, send_bytes_per_s)
};
struct Leave { PCCL_NO_FIELDS };

// ---- master -> peer
struct Welcome {
    Uuid uuid;
    NetAddr observed_addr;  // the peer's address as the master sees it
    // With a run secret: this admission's key K_A (docs/security.md), from which the peer checks
    // the data connections opened to it; zero in an open run.
    std::array<uint8_t, 32> session_key{};
    uint64_t master_epoch = 0;  // this master's epoch (docs/master_recovery.md)
    PCCL_FIELDS(uuid, observed_addr, session_key, master_epoch)
};
struct Reject {
    uint8_t result = 0;  // pcclResult_t
    std::string reason;
    // This master cannot serve the run but another may (a stale master, a follower): the peer
    // tries the next master address instead of failing.
    bool retry = false;
    PCCL_FIELDS(result, reason, retry)
};
// Sent to every member after an admission round (and to a newly admitted peer): the ring of its
// peer group in order, and the world sizes. The peer connects to its successor and answers LinksReady.
struct TopologyUpdate {
    uint64_t epoch = 0;
    std::vector<RingMember> ring;
    WorldInfo world;
    PCCL_FIELDS(epoch, ring, world)
};
struct TopologyDone {
    uint64_t epoch = 0;
    bool ok = true;
    std::string error;
    PCCL_FIELDS(epoch, ok, error)
};
struct PeersPendingResult {
    bool pending = false;
    PCCL_FIELDS(pending)
};
struct OptimizeTopologyResult {
    bool ok = true;
    std::string error;
    PCCL_FIELDS(ok, error)
};
// The world sizes and this peer's group ring changed (a peer left): ranks follow the ring.
struct WorldUpdate {
    WorldInfo world;
    std::vector<RingMember> ring;
    PCCL_FIELDS(world, ring)
};
// All peers of the group sent CollectiveInit for this tag with the same description: run it on
// this ring (the participants in ring order). seq is unique per master and tags data frames.
struct CollectiveCommence {
    uint64_t tag = 0;
    uint64_t seq = 0;
    std::vector<RingMember> ring;
    PCCL_FIELDS(tag, seq, ring)
};
struct CollectiveCommitted {
    uint64_t tag = 0;
    uint64_t seq = 0;
    PCCL_FIELDS(tag, seq)
};
// The collective failed for every participant (a peer was lost, a link broke, descriptions
// mismatched). seq is 0 when it failed before commencing.
struct CollectiveAborted {
    uint64_t tag = 0;
    uint64_t seq = 0;
    uint8_t result = 0;  // pcclResult_t to return
    std::string reason;
    std::vector<Uuid> lost;  // peers removed from the run: close every connection to them
    PCCL_FIELDS(tag, seq, result, reason, lost)
};
struct Kicked {
    std::string reason;
    PCCL_FIELDS(reason)
};
// Liveness: a peer's control thread sends Heartbeat periodically; the master answers each with
// HeartbeatAck. Either side declares the other lost when nothing arrives within its deadline.
struct Heartbeat { PCCL_NO_FIELDS };
struct HeartbeatAck { PCCL_NO_FIELDS };

// ---- shared state (docs/shared_state.md)
using Digest = std::array<uint8_t, 16>;
inline constexpr uint64_t kStateChunkBytes = 4u << 20;  // entries are hashed and moved in chunks of this size
struct EntryDesc {
    std::string name;
    uint8_t dtype = 0;
    uint64_t count = 0;
    bool allow_inequality = false;
    Digest digest{};             // XXH3-128 of the chunk digests
    std::vector<Digest> chunks;  // XXH3-128 of each kStateChunkBytes chunk
    PCCL_FIELDS(name, dtype, count, allow_inequality, digest, chunks)
    bool sameLayout(const EntryDesc &o) const {
        return name == o.name && dtype == o.dtype && count == o.count && allow_inequality == o.allow_inequality;
    }
};
// peer -> master: this peer's state, to take part in the group's next sync round.
struct SharedStateSync {
    uint64_t revision = 0;
    uint8_t strategy = 0;
    bool synced_before = false;
    std::vector<EntryDesc> entries;
    PCCL_FIELDS(revision, strategy, synced_before, entries)
};
// The chunks of one entry a receiver needs, their popular digests, and the peers that may
// serve them (indices into SharedStatePlan::peers, in the order to prefer them).
struct ChunkFetch {
    uint32_t entry = 0;
    std::vector<uint32_t> chunks;
    std::vector<Digest> digests;  // one per chunk
    std::vector<uint32_t> sources;
    PCCL_FIELDS(entry, chunks, digests, sources)
};
// master -> peer: this peer's part in round `seq`: what it fetches, and which peers may ask it
// for chunks (`serve`, indices into `peers`).
struct SharedStatePlan {
    uint64_t seq = 0;
    uint64_t revision = 0;
    std::vector<RingMember> peers;
    std::vector<ChunkFetch> receive;
    std::vector<uint32_t> serve;
    PCCL_FIELDS(seq, revision, peers, receive, serve)
};
struct SharedStateDone {
    uint64_t seq = 0;
    bool ok = true;
    std::string error;
    uint8_t result = 0;  // as in CollectiveDone
    PCCL_FIELDS(seq, ok, error, result)
};
struct SharedStateCommitted {
    uint64_t seq = 0;
    uint64_t revision = 0;
    PCCL_FIELDS(seq, revision)
};
// The round failed for this peer (seq 0: before any transfer started).
struct SharedStateAborted {
    uint64_t seq = 0;
    uint8_t result = 0;
    std::string reason;
    std::vector<Uuid> lost;  // as in CollectiveAborted
    PCCL_FIELDS(seq, result, reason, lost)
};

// master -> receivers of round `seq`: a source was removed from the run; fetch its chunks
// from the other sources.
struct SharedStateSourceLost {
    uint64_t seq = 0;
    Uuid peer;
    PCCL_FIELDS(seq, peer)
};
// master -> every peer of a group (pcclOptimizeTopology): measure the links to the others.
// For `window_ms` from when this message arrives, every peer streams probe frames (data-plane
// sequence `seq`) to every other peer at once; each receiver measures the rate of the second
// half of the window (after slow start) and reports what it received.
struct BandwidthProbe {
    uint64_t round = 0;
    uint64_t seq = 0;
    std::vector<RingMember> peers;
    uint32_t window_ms = 0;
    PCCL_FIELDS(round, seq, peers, window_ms)
};
// peer -> master: a user thread of this peer now waits for all-reduce `tag`, which has not
// commenced (the master uses it to tell a deadlock of misordered calls from an async start).
struct CollectiveAwait {
    uint64_t tag = 0;
    PCCL_FIELDS(tag)
};
// peer -> master: the receive rate this peer measured from each sender (bytes/s; 0 = nothing arrived).
struct BandwidthReport {
    uint64_t round = 0;
    std::vector<Uuid> from;
    std::vector<uint64_t> bytes_per_s;
    PCCL_FIELDS(round, from, bytes_per_s)
};
// master -> peer: a global vote (kind: VoteUpdateTopology, VotePeersPending or
// VoteOptimizeTopology) did not complete within the master's vote deadline; this peer's vote is
// withdrawn and its call returns `result` (pcclTimeout).
enum class VoteKind : uint8_t { Topology = 0, PeersPending = 1, Optimize = 2 };
struct VoteFailed {
    uint8_t vote = 0;  // VoteKind
    uint8_t result = 0;
    std::string reason;
    PCCL_FIELDS(vote, result, reason)
};

// With a run secret, before a TopologyUpdate that may make this peer open data connections to
// peers it has no key for yet: for each such peer A, the key K_BA this peer (B) proves itself
// with on connections to A (docs/security.md, "Per-admission keys").
struct PeerKey {
    Uuid peer;
    std::array<uint8_t, 32> key{};
    PCCL_FIELDS(peer, key)
};
struct PeerKeys {
    std::vector<PeerKey> keys;
    PCCL_FIELDS(keys)
};

// A peer's own counters (issue 18), sent to the master every few seconds at most (and only
// when they changed), so the master's view covers the data plane it never sees. Totals since
// the communicator connected; `links`: the rate achieved towards each peer this one sent to in
// its latest operation. tx_bytes/rx_bytes: every data-plane byte (all-reduces, shared-state
// transfers, bandwidth probes); the shared_state_* and probe_* fields (version 7) are the parts
// of them that shared-state transfers and bandwidth probes moved.
struct LinkRate {
    Uuid to;
    uint64_t bytes_per_second = 0;
    PCCL_FIELDS(to, bytes_per_second)
};
struct StatsReport {
    uint64_t tx_bytes = 0, rx_bytes = 0;
    uint64_t collectives_completed = 0, collectives_failed = 0;
    uint64_t syncs_completed = 0, syncs_failed = 0;
    uint64_t last_op_micros = 0;  // duration of the latest completed all-reduce
    uint64_t last_op_bytes = 0;   // its buffer size
    std::vector<LinkRate> links;
    uint64_t shared_state_tx_bytes = 0, shared_state_rx_bytes = 0;
    uint64_t probe_tx_bytes = 0, probe_rx_bytes = 0;
    PCCL_FIELDS(tx_bytes, rx_bytes, collectives_completed, collectives_failed, syncs_completed, syncs_failed,
                last_op_micros, last_op_bytes, links, shared_state_tx_bytes, shared_state_rx_bytes, probe_tx_bytes,
                probe_rx_bytes)
};

// ---- master recovery (docs/master_recovery.md)
// What an admitted peer knows of one all-reduce when it re-registers with a new master.
enum class OpPhase : uint8_t { Waiting = 0, Running = 1, FinishedOk = 2, FinishedFailed = 3 };
struct OpReport {
    uint64_t tag = 0;
    uint64_t seq = 0;  // 0 while waiting to commence
    uint8_t phase = 0;  // OpPhase
    CollectiveDesc desc;
    bool awaiting = false;  // a user thread waits for it
    PCCL_FIELDS(tag, seq, phase, desc, awaiting)
};
// peer -> master, instead of Hello, by a peer that was admitted and lost its master.
struct Rejoin {
    Hello hello;
    uint64_t topology_epoch = 0;
    std::vector<RingMember> ring;  // its group's ring in rank order, as it knows it
    uint64_t revision = 0;         // its last committed shared-state revision (0: none)
    uint64_t max_seq = 0;          // the highest sequence number it has seen
    std::vector<OpReport> ops;
    std::vector<uint64_t> committed;  // sequences it saw committed recently (all-reduces and syncs)
    bool syncing = false;             // a shared-state sync is in flight here
    uint64_t sync_seq = 0;            // its round (0: waiting for the plan)
    uint8_t sync_phase = 0;           // OpPhase of that round
    uint64_t sync_revision = 0;       // the revision the round syncs to
    PCCL_FIELDS(hello, topology_epoch, ring, revision, max_seq, ops, committed, syncing, sync_seq, sync_phase,
                sync_revision)
};
// master -> peer: the run is rebuilt; this is its group's ring and the world.
struct Rejoined {
    uint64_t master_epoch = 0;
    uint64_t topology_epoch = 0;
    WorldInfo world;
    std::vector<RingMember> ring;
    PCCL_FIELDS(master_epoch, topology_epoch, world, ring)
};

// master -> peer: the master was stopped on purpose (pcclInterruptMaster, pcclDestroyMaster,
// MasterNode.close(), pccl-master --end-run-on-exit): the run has ended; do not wait for it.
struct MasterShutdown {
    std::string reason;
    PCCL_FIELDS(reason)
};

using ControlMessage =
    std::variant<Hello, VoteUpdateTopology, LinksReady, VotePeersPending, VoteOptimizeTopology, CollectiveInit,
                 CollectiveDone, Leave, Welcome, Reject, TopologyUpdate, TopologyDone, PeersPendingResult,
                 OptimizeTopologyResult, WorldUpdate, CollectiveCommence, CollectiveCommitted, CollectiveAborted, Kicked, Heartbeat, HeartbeatAck, SharedStateSync, SharedStatePlan,
                 SharedStateDone, SharedStateCommitted, SharedStateAborted, VoteFailed, SharedStateSourceLost, BandwidthProbe, BandwidthReport, CollectiveAwait, PeerKeys, StatsReport, Rejoin, Rejoined, MasterShutdown>;

const char *messageName(const ControlMessage &m);

} // namespace pccl::protocol
