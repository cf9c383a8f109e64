// The peer's phase logic as a pure state machine, the mirror of master::Membership: it takes
// events (a request from a user thread, a message from the master, a data-plane operation that
// finished or stopped, a timer) and returns actions (send M to the master, connect a link, start
// or stop an operation, wake a waiting call). No sockets, no threads, no clock reads: the time
// comes in with setTime(), and Communicator (the driver) runs it on its control thread only and
// carries out the actions. Tests drive it directly (tests/support/session_driver.h).
//
// Phases: Created -> (Connect) -> Connecting -> (TopologyDone ok) -> Connected; any phase ->
// Dead on a lost or rejecting master, a kick, an admission deadline or an abort. In Dead every
// waiting and later call fails with the reason of death.
#pragma once
#include <pccl.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "peer/session_types.h"
#include "protocol/messages.h"
#include "util/status.h"

namespace pccl::peer {

class Session {
public:
    explicit Session(SessionOptions options) : options_(std::move(options)) {}

    // The clock (milliseconds of a monotonic clock); set before each event. setTimeUs sets the
    // same clock in microseconds: the durations of all-reduces are measured in it.
    void setTime(uint64_t nowMs) {
        now_ = nowMs;
        nowUs_ = nowMs * 1000;
    }
    void setTimeUs(uint64_t nowUs) {
        now_ = nowUs / 1000;
        nowUs_ = nowUs;
    }

    // ---- user requests. Each is answered by exactly one Complete{id} action, now or later.
    // Connect is two steps: beginConnect (no I/O yet: checks the phase) and, once the driver has
    // a data port and a control connection, connected() (sends Hello, arms the deadlines).
    // masterAddress: the index, in the master list, of the address whose connection answered
    // (the driver tries them in order): currentMaster() names it and a reconnect tries it first.
    Status beginConnect();
    Actions connectFailed();  // the driver's listen or connect failed: back to Created
    Actions connected(RequestId id, const protocol::Hello &hello, size_t masterAddress = 0);
    Actions vote(RequestId id, protocol::VoteKind kind);
    Actions startAllReduce(RequestId id, const ReduceArgs &args, uint64_t segmentBytes);
    Actions awaitAllReduce(RequestId id, uint64_t tag);
    Actions syncSharedState(RequestId id, protocol::SharedStateSync described, std::vector<uint64_t> entryBytes);
    // Fails everything with `status` (destroy, abort); idempotent.
    Actions abort(const Status &status);

    // ---- the master and the data plane
    Actions onMessage(const protocol::ControlMessage &message);
    Actions onControlClosed(const std::string &reason);
    // The driver's ReconnectMaster attempt ended (docs/master_recovery.md).
    Actions onReconnected(const Status &status);
    Actions onLinksConnected(uint64_t epoch, const Status &status);
    Actions onAllReduceFinished(uint64_t tag, uint64_t seq, const Status &status, const OpStats &stats);
    Actions onAllReduceStopped(uint64_t tag, uint64_t seq, const Status &status, const OpStats &stats);
    Actions onTransferFinished(uint64_t seq, const Status &status);
    Actions onTransferStopped(uint64_t seq, const Status &status, const OpStats &stats);
    // bytes: what the probe sent and received (counted in Counters::probeTxBytes/probeRxBytes).
    Actions onProbeDone(uint64_t round, protocol::BandwidthReport report, const OpStats &bytes = {});
    // Heartbeats, the master's silence, the admission deadline and the StatsReport (at most one
    // per kStatsReportPeriodMs, when the counters changed, while Connected). Call every
    // tickPeriod (and whenever a deadline may have passed).
    Actions onTick();

    // ---- reads (any thread, under the driver's lock)
    Phase phase() const { return phase_; }
    MasterLink masterLink() const { return link_; }
    uint64_t masterEpoch() const { return masterEpoch_; }
    const Status &deathStatus() const { return death_; }
    Result<int> attribute(pcclAttribute_t attribute) const;
    // This peer's group ring in rank order (pcclGetPeerGroupMembers), and its group.
    Result<std::vector<protocol::RingMember>> members() const;
    uint32_t group() const { return group_; }
    Stats stats() const;
    size_t inFlight() const;
    bool allQuiet() const;  // no operation still touches user memory
    const Uuid &self() const { return self_; }
    void setSelf(const Uuid &self) { self_ = self; }

private:
    struct Op {
        ReduceArgs args;
        uint64_t segmentBytes = 0;
        uint64_t seq = 0;  // 0 until commenced
        uint32_t worldSize = 0;
        Uuid next;  // the ring successor, once commenced
        uint64_t startUs = 0, endUs = 0;  // startAllReduce, and the end of the operation (done)
        bool started = false;   // a ring engine exists (StartAllReduce was issued)
        std::optional<bool> finished;  // the engine's local end (ok or not), before the master's verdict
        bool stopping = false;  // StopAllReduce issued, waiting for onAllReduceStopped
        bool done = false;
        Status status;
        OpStats stats;
        std::optional<RequestId> waiter;
    };
    struct Sync {
        RequestId id = 0;
        std::vector<uint64_t> entryBytes;
        uint64_t seq = 0;  // 0 until the plan arrived
        uint64_t revision = 0;
        bool started = false, stopping = false;
        std::optional<bool> finished;     // the transfer's local end, before the master's verdict
        protocol::SharedStateSync described;  // sent again to a new master while no plan came
    };

    // One handler per message the master may send (session_master.cpp); any other message is a
    // protocol error that ends the session.
    void on(Actions &out, const protocol::HeartbeatAck &m);
    void on(Actions &out, const protocol::Welcome &m);
    void on(Actions &out, const protocol::PeerKeys &m);
    void forgetLeavers(Actions &out, const std::vector<protocol::RingMember> &before);
    void on(Actions &out, const protocol::Reject &m);
    void on(Actions &out, const protocol::Kicked &m);
    void on(Actions &out, const protocol::TopologyUpdate &m);
    void on(Actions &out, const protocol::TopologyDone &m);
    void on(Actions &out, const protocol::PeersPendingResult &m);
    void on(Actions &out, const protocol::OptimizeTopologyResult &m);
    void on(Actions &out, const protocol::VoteFailed &m);
    void on(Actions &out, const protocol::WorldUpdate &m);
    void on(Actions &out, const protocol::BandwidthProbe &m);
    void on(Actions &out, const protocol::CollectiveCommence &m);
    void on(Actions &out, const protocol::CollectiveCommitted &m);
    void on(Actions &out, const protocol::CollectiveAborted &m);
    void on(Actions &out, const protocol::SharedStatePlan &m);
    void on(Actions &out, const protocol::SharedStateCommitted &m);
    void on(Actions &out, const protocol::SharedStateAborted &m);
    void on(Actions &out, const protocol::SharedStateSourceLost &m);
    void on(Actions &out, const protocol::Rejoined &m);
    void on(Actions &out, const protocol::MasterShutdown &m);
    template <class M>
    void on(Actions &out, const M &m) { unexpected(out, protocol::ControlMessage(m)); }
    void unexpected(Actions &out, const protocol::ControlMessage &m);
    void endSync(Actions &out, uint64_t seq, const Status &status, uint64_t revision);
    // The vote of `kind` is answered: wake its caller (if one waits).
    void answerVote(Actions &out, protocol::VoteKind kind, Status status, bool pending = false);
    // Ends op with `status`: now if no engine runs, otherwise after the engine has stopped.
    void stopOp(Actions &out, uint64_t tag, Op &op, const Status &status);
    void finishOp(Actions &out, uint64_t tag, Op &op, Status status);
    void stopSync(Actions &out, const Status &status);
    void fail(Actions &out, const Status &status);
    void countOp(const Op &op);  // once, when op ends
    // On a tick: a StatsReport when the counters changed and the period has passed.
    void maybeReport(Actions &out);
    // At info, this peer's own membership changes, once each: when its rank or its group's size
    // differs from what it last logged ("joined ...", "peer X left; ...", "ring changed: ...").
    void logPlace(const std::vector<protocol::RingMember> &before, bool joined);
    Status checkUsable(const char *what) const;  // Dead -> its status; not Connected -> usage
    // Sends to the master while the link is up; otherwise drops: what the master must still
    // hear is re-sent from the session's state after Rejoined (replay).
    void toMaster(Actions &out, protocol::ControlMessage m);
    // Master recovery (session_reconnect.cpp).
    bool reconnecting() const { return options_.reconnectTimeoutMs > 0; }
    // How many master addresses the driver rotates through (at least one).
    size_t masters() const { return std::max<size_t>(options_.masterCount, 1); }
    // The master address now tried or served, for messages.
    const std::string &currentMaster() const {
        return address_ < options_.masterNames.size() ? options_.masterNames[address_] : options_.masterName;
    }
    void masterLost(Actions &out, const std::string &reason);
    void nextAttempt(Actions &out);
    void giveUp(Actions &out);
    protocol::Rejoin rejoinReport() const;
    void replay(Actions &out);
    void noteCommitted(uint64_t seq);
    void noteSeq(uint64_t seq) { maxSeq_ = std::max(maxSeq_, seq); }
    static protocol::CollectiveDesc describe(const Op &op);  // what CollectiveInit carries
    Status pendingOpsError(const char *what) const;

    SessionOptions options_;
    uint64_t now_ = 0, nowUs_ = 0;
    Phase phase_ = Phase::Created;
    Status death_;
    Uuid self_;
    protocol::WorldInfo world_;
    std::vector<protocol::RingMember> ring_;
    uint64_t epoch_ = 0;
    Uuid linkTarget_;  // the ring successor of epoch_'s ConnectLinks (named in a failed LinksReady)
    uint32_t group_ = 0;  // from the Hello
    std::optional<std::pair<size_t, size_t>> loggedPlace_;  // (rank, group size) last logged
    std::optional<RequestId> connectWaiter_;
    std::optional<uint64_t> admissionDeadline_;
    // One waiting caller per vote kind (VoteKind indexes it).
    std::array<std::optional<RequestId>, kVoteKinds> voteWaiters_;
    std::map<uint64_t, Op> ops_;  // by tag
    std::optional<Sync> sync_;
    bool syncedBefore_ = false;
    uint64_t lastAck_ = 0, lastTick_ = 0;
    Counters counters_;
    Counters reported_;                     // as of the last StatsReport (votes left out)
    std::optional<uint64_t> lastReportMs_;  // when it was sent
    // Master recovery (docs/master_recovery.md).
    MasterLink link_ = MasterLink::Up;
    protocol::Hello hello_;         // as sent by connected(), sent again by a reconnecting joiner
    uint64_t masterEpoch_ = 0;      // the highest master epoch seen
    uint64_t maxSeq_ = 0;           // the highest sequence number seen
    uint64_t lastRevision_ = 0;     // of the last committed sync
    std::vector<uint64_t> committed_;  // the latest committed sequences, oldest first (bounded)
    uint64_t downSinceMs_ = 0, giveUpAtMs_ = 0;  // while the link is not Up
    std::string downReason_;
    // Per master address, the last "sent elsewhere" reason warned about (a follower repeats it).
    std::map<size_t, std::string> lastRedirect_;
    size_t address_ = 0;            // the master address in use (or being tried)
    size_t attempts_ = 0;           // reconnection attempts since the link went down
    bool silenceWarned_ = false;
};

} // namespace pccl::peer
