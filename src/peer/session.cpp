#include "peer/session.h"

#include <algorithm>

#include "protocol/wire_result.h"
#include "util/dtype.h"
#include "util/log.h"

namespace pccl::peer {

using namespace protocol;

namespace {

const char *voteCall(VoteKind kind) {
    switch (kind) {
        case VoteKind::Topology: return "pcclUpdateTopology";
        case VoteKind::PeersPending: return "pcclArePeersPending";
        case VoteKind::Optimize: return "pcclOptimizeTopology";
    }
    return "vote";
}

size_t voteIndex(VoteKind kind) { return static_cast<size_t>(kind); }

Status withLocal(const Status &st, const std::string &local) {
    return {st.code(), st.message() + "; on this peer: " + local};
}

Status waitedForMaster(const Status &death, const std::string &what) {
    return withLocal(death, what + " was waiting for the master");
}

std::string notStartedText(CollectiveKind kind, uint64_t tag) {
    return collectiveTag(kind, tag) + ", waiting to start (not every peer had started it)";
}

} // namespace

// ---- user requests

Status Session::beginConnect() {
    if (phase_ == Phase::Dead) return death_;
    if (phase_ != Phase::Created) return invalidUsage("pcclConnect: the communicator is already connected");
    phase_ = Phase::Connecting;
    return {};
}

Actions Session::connectFailed() {
    if (phase_ == Phase::Connecting) phase_ = Phase::Created;
    return {};
}

Actions Session::connected(RequestId id, const Hello &hello, size_t masterAddress) {
    Actions out;
    if (phase_ != Phase::Connecting) {  // aborted while the driver was connecting
        out.push_back(Complete{id, phase_ == Phase::Dead ? death_ : invalidUsage("pcclConnect: not connecting"), {}});
        return out;
    }
    lastAck_ = lastTick_ = now_;
    address_ = masterAddress % masters();
    group_ = hello.peer_group;
    hello_ = hello;
    connectWaiter_ = id;
    if (options_.admissionTimeoutMs) admissionDeadline_ = now_ + *options_.admissionTimeoutMs;
    toMaster(out, hello);
    return out;
}

Status Session::checkUsable(const char *what) const {
    if (phase_ == Phase::Dead) return death_;
    if (phase_ != Phase::Connected) return invalidUsage(std::string(what) + ": the communicator is not connected");
    return {};
}

Status Session::pendingOpsError(const char *what) const {
    for (auto &[tag, op] : ops_)
        if (!op.done)
            return {pcclPendingAsyncOps, std::string(what) + ": " + collectiveTag(op.args.kind, tag) + " is still in flight"};
    return {};
}

Actions Session::vote(RequestId id, VoteKind kind) {
    Actions out;
    const char *what = voteCall(kind);
    Status st = checkUsable(what);
    // Peers pending may be asked while collectives run; a topology change may not.
    if (st.ok() && kind != VoteKind::PeersPending) st = pendingOpsError(what);
    if (st.ok() && voteWaiters_[voteIndex(kind)])
        st = invalidUsage(std::string(what) + ": another thread is already in this vote on this communicator");
    if (!st.ok()) {
        out.push_back(Complete{id, st, {}});
        return out;
    }
    voteWaiters_[voteIndex(kind)] = id;
    switch (kind) {
        case VoteKind::Topology: toMaster(out, VoteUpdateTopology{}); break;
        case VoteKind::PeersPending: toMaster(out, VotePeersPending{}); break;
        case VoteKind::Optimize: toMaster(out, VoteOptimizeTopology{}); break;
    }
    return out;
}

void Session::answerVote(Actions &out, VoteKind kind, Status status, bool pending) {
    auto &waiter = voteWaiters_[voteIndex(kind)];
    if (!waiter) return;
    ++(status.ok() ? counters_.votesCompleted : counters_.votesFailed);
    Reply reply;
    if (kind == VoteKind::PeersPending) reply = pending;
    out.push_back(Complete{*waiter, std::move(status), reply});
    waiter.reset();
}

Actions Session::startAllReduce(RequestId id, const ReduceArgs &args, uint64_t segmentBytes) {
    Actions out;
    const char *what = collectiveName(args.kind);
    Status st = checkUsable(what);
    if (st.ok() && ops_.count(args.tag))
        st = invalidUsage(std::string(what) + ": tag " + std::to_string(args.tag) + " is already in flight on this communicator" +
                          (ops_.at(args.tag).args.kind == args.kind ? "" : " (started as " + std::string(collectiveName(ops_.at(args.tag).args.kind)) + ")"));
    if (st.ok()) {
        Op &op = ops_[args.tag];
        op.args = args;
        op.segmentBytes = segmentBytes;
        op.startUs = nowUs_;
        toMaster(out, CollectiveInit{args.tag, describe(op)});
    }
    out.push_back(Complete{id, st, {}});
    return out;
}

CollectiveDesc Session::describe(const Op &op) {
    CollectiveDesc d;
    d.count = op.args.count;
    d.dtype = static_cast<uint8_t>(op.args.dtype);
    d.op = static_cast<uint8_t>(op.args.op);
    d.quant_dtype = static_cast<uint8_t>(op.args.quant.quantized_datatype);
    d.quant_algo = static_cast<uint8_t>(op.args.quant.algorithm);
    d.segment_bytes = op.segmentBytes;  // the configured value (0 = auto): peers must agree
    d.kind = static_cast<uint8_t>(op.args.kind);
    d.root = op.args.root;
    d.world = op.args.world;
    d.counts = op.args.counts;
    return d;
}

Actions Session::awaitAllReduce(RequestId id, uint64_t tag) {
    Actions out;
    auto it = ops_.find(tag);
    if (it == ops_.end() || it->second.waiter) {
        out.push_back(Complete{id, invalidUsage("await: no collective with tag " + std::to_string(tag) + " is in flight"), {}});
        return out;
    }
    it->second.waiter = id;
    if (it->second.done) finishOp(out, tag, it->second, it->second.status);
    // Blocked before the op commenced: the master may have to tell a deadlock of misordered
    // calls (this peer in an all-reduce, another in a vote) from an async start.
    else if (!it->second.started && it->second.seq == 0 && phase_ == Phase::Connected)
        toMaster(out, CollectiveAwait{tag});
    return out;
}

Actions Session::syncSharedState(RequestId id, SharedStateSync described, std::vector<uint64_t> entryBytes) {
    Actions out;
    const char *what = "pcclSynchronizeSharedState";
    Status st = checkUsable(what);
    if (st.ok()) st = pendingOpsError(what);
    if (st.ok() && sync_) st = invalidUsage(std::string(what) + ": another sync is in progress on this communicator");
    if (!st.ok()) {
        out.push_back(Complete{id, st, {}});
        return out;
    }
    sync_ = Sync{};
    sync_->id = id;
    sync_->entryBytes = std::move(entryBytes);
    described.synced_before = syncedBefore_;
    sync_->described = described;
    toMaster(out, std::move(described));
    return out;
}

Actions Session::abort(const Status &status) {
    Actions out;
    fail(out, status);
    return out;
}

// ---- failure

void Session::fail(Actions &out, const Status &status) {
    if (phase_ != Phase::Dead) {
        phase_ = Phase::Dead;
        death_ = status;
    }
    if (connectWaiter_) {
        out.push_back(Complete{*connectWaiter_, waitedForMaster(death_, "pcclConnect"), {}});
        connectWaiter_.reset();
    }
    for (size_t k = 0; k < kVoteKinds; ++k)
        if (voteWaiters_[k]) {
            ++counters_.votesFailed;
            out.push_back(Complete{*voteWaiters_[k], waitedForMaster(death_, voteCall(static_cast<VoteKind>(k))), {}});
            voteWaiters_[k].reset();
        }
    // Without a master nothing is coordinated any more: stop all data traffic so that every
    // operation quiesces promptly.
    out.push_back(CloseAllData{status.message()});
    stopSync(out, status);
    std::vector<uint64_t> live;  // finishOp may erase from ops_
    for (auto &[tag, op] : ops_)
        if (!op.done) live.push_back(tag);
    for (uint64_t tag : live) stopOp(out, tag, ops_.at(tag), status);
}

void Session::stopOp(Actions &out, uint64_t tag, Op &op, const Status &status) {
    if (op.done || op.stopping) return;
    if (!op.started) return finishOp(out, tag, op, withLocal(status, notStartedText(op.args.kind, tag)));
    op.stopping = true;
    out.push_back(StopAllReduce{tag, op.seq, status});
}

void Session::finishOp(Actions &out, uint64_t tag, Op &op, Status status) {
    if (!op.done) {
        op.done = true;
        op.status = std::move(status);
        op.endUs = nowUs_;
        countOp(op);
    }
    if (!op.waiter) return;
    out.push_back(Complete{*op.waiter, op.status,
                           ReduceResult{op.worldSize, op.stats.txBytes, op.stats.rxBytes, op.endUs - op.startUs}});
    ops_.erase(tag);  // op is gone from here on
}

void Session::stopSync(Actions &out, const Status &status) {
    if (!sync_ || sync_->stopping) return;
    if (!sync_->started) {
        ++(status.ok() ? counters_.syncsCompleted : counters_.syncsFailed);
        Status st = status.ok() ? status : withLocal(status, "shared-state sync, waiting to start (for the plan)");
        out.push_back(Complete{sync_->id, st, {}});
        sync_.reset();
        return;
    }
    sync_->stopping = true;
    out.push_back(StopTransfer{sync_->seq, status});
}

Actions Session::onControlClosed(const std::string &reason) {
    Actions out;
    if (phase_ == Phase::Dead) return out;
    if (reconnecting() && (phase_ == Phase::Connected || phase_ == Phase::Connecting)) {
        masterLost(out, reason);
        return out;
    }
    fail(out, Status{phase_ == Phase::Connecting ? pcclMasterConnectionFailed : pcclMasterConnectionLost,
                     "connection to the master " + currentMaster() + " lost: " + reason});
    return out;
}

Actions Session::onTick() {
    Actions out;
    if (phase_ == Phase::Dead || phase_ == Phase::Created) return out;
    // A tick this late means the process did not run in between (SIGSTOP, a suspended VM): the
    // master's silence then proves nothing, and what it sent meanwhile (e.g. Kicked) is still
    // unread. The deadline restarts, so that a stopped and resumed peer learns what the master
    // decided instead of reporting a lost master.
    if (now_ - lastTick_ > options_.tickPeriodMs + options_.heartbeatTimeoutMs / 2) lastAck_ = now_;
    lastTick_ = now_;
    if (phase_ == Phase::Connecting && admissionDeadline_ && now_ >= *admissionDeadline_) {
        const Status st{pcclTimeout, "pcclConnect timed out after " + std::to_string(*options_.admissionTimeoutMs) + " ms"};
        PCCL_LOG(Warn, "connect failed: " << st.message());
        out.push_back(Complete{*connectWaiter_, st, {}});
        connectWaiter_.reset();
        fail(out, st);
        return out;
    }
    if (link_ != MasterLink::Up && now_ >= giveUpAtMs_) {
        giveUp(out);
        return out;
    }
    const uint64_t silent = now_ - lastAck_;
    if (silent > options_.heartbeatTimeoutMs) {
        const std::string why = "the master " + currentMaster() + " answered no heartbeat for " +
                                std::to_string(silent) + " ms";
        if (!reconnecting() || silent > options_.reconnectTimeoutMs) {
            fail(out, Status{pcclMasterConnectionLost, reconnecting() ? "gave up on the master: " + why : why});
            return out;
        }
        // The new master does not answer: try again. With other masters listed (standby
        // masters), a silent one is also left for them when it was serving: another may be
        // leading by now (docs/master_recovery.md). The silent master is tried last.
        const size_t count = masters();
        if (link_ == MasterLink::Rejoining || (count > 1 && link_ == MasterLink::Up)) {
            address_ = (address_ + 1) % count;
            out.push_back(DisconnectMaster{count > 1 ? why + "; trying the other masters" : why});
            return out;
        }
        // A single stopped master keeps its connections; its kernel still acknowledges. Wait for
        // it: a dead host closes the connection (TCP user timeout) and the peer reconnects.
        if (!silenceWarned_)
            PCCL_LOG(Warn, why << "; waiting for it (gives up after " << options_.reconnectTimeoutMs << " ms)");
        silenceWarned_ = true;
    } else if (silenceWarned_ && link_ == MasterLink::Up) {
        PCCL_LOG(Info, "the master " << currentMaster() << " answers again");
        silenceWarned_ = false;
    }
    // Heartbeats also while rejoining: the new master must not take this peer for silent.
    if (link_ != MasterLink::Down) out.push_back(SendToMaster{Heartbeat{}});
    maybeReport(out);
    return out;
}

// ---- statistics

void Session::countOp(const Op &op) {
    counters_.txBytes += op.stats.txBytes;
    counters_.rxBytes += op.stats.rxBytes;
    const bool allReduce = op.args.kind == CollectiveKind::AllReduce;
    if (!op.status.ok()) {
        ++counters_.collectivesFailed;
        if (allReduce) ++counters_.allReducesFailed;
        return;
    }
    ++counters_.collectivesCompleted;
    if (allReduce) {
        ++counters_.allReducesCompleted;
        counters_.lastAllReduceUs = op.endUs - op.startUs;
        counters_.lastAllReduceBytes = op.args.count * dataTypeSize(op.args.dtype);
    }
    if (op.stats.sendBytesPerS) {
        counters_.lastSendTo = op.next;
        counters_.lastSendBytesPerS = op.stats.sendBytesPerS;
    }
}

// Only while admitted: the master kicks a peer that reports before (or after) that.
void Session::maybeReport(Actions &out) {
    Counters c = counters_;
    c.votesCompleted = c.votesFailed = 0;  // not in the report: a vote alone sends none
    if (phase_ != Phase::Connected || link_ != MasterLink::Up || c == reported_) return;
    if (lastReportMs_ && now_ < *lastReportMs_ + kStatsReportPeriodMs) return;
    StatsReport r;
    r.tx_bytes = c.txBytes + c.probeTxBytes;  // every data-plane byte (protocol/messages.h)
    r.rx_bytes = c.rxBytes + c.probeRxBytes;
    r.shared_state_tx_bytes = c.syncTxBytes;
    r.shared_state_rx_bytes = c.syncRxBytes;
    r.probe_tx_bytes = c.probeTxBytes;
    r.probe_rx_bytes = c.probeRxBytes;
    r.collectives_completed = c.collectivesCompleted;
    r.collectives_failed = c.collectivesFailed;
    r.syncs_completed = c.syncsCompleted;
    r.syncs_failed = c.syncsFailed;
    r.last_op_micros = c.lastAllReduceUs;
    r.last_op_bytes = c.lastAllReduceBytes;
    if (c.lastSendBytesPerS) r.links.push_back(LinkRate{c.lastSendTo, c.lastSendBytesPerS});
    reported_ = c;
    lastReportMs_ = now_;
    toMaster(out, std::move(r));
}

Stats Session::stats() const {
    Stats s;
    s.counters = counters_;
    s.epoch = epoch_;
    s.peerGroup = group_;
    if (phase_ != Phase::Connected) return s;
    s.worldSize = world_.global_world_size;
    s.groupWorldSize = world_.group_world_size;
    auto me = std::find_if(ring_.begin(), ring_.end(), [&](auto &r) { return r.uuid == self_; });
    if (me != ring_.end()) s.rank = static_cast<uint32_t>(me - ring_.begin());
    return s;
}

// ---- reads

Result<int> Session::attribute(pcclAttribute_t attribute) const {
    PCCL_RETURN_IF_ERROR(checkUsable("pcclGetAttribute"));
    switch (attribute) {
        case PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE: return static_cast<int>(world_.global_world_size);
        case PCCL_ATTRIBUTE_PEER_GROUP_WORLD_SIZE: return static_cast<int>(world_.group_world_size);
        case PCCL_ATTRIBUTE_NUM_DISTINCT_PEER_GROUPS: return static_cast<int>(world_.num_groups);
        case PCCL_ATTRIBUTE_LARGEST_PEER_GROUP_WORLD_SIZE: return static_cast<int>(world_.largest_group);
        case PCCL_ATTRIBUTE_RANK: {
            auto me = std::find_if(ring_.begin(), ring_.end(), [&](auto &r) { return r.uuid == self_; });
            if (me == ring_.end()) return Status{pcclInternalError, "pcclGetAttribute: this peer is not in its ring"};
            return static_cast<int>(me - ring_.begin());
        }
    }
    return invalidArgument("pcclGetAttribute: unknown attribute " + std::to_string(static_cast<int>(attribute)));
}

Result<std::vector<RingMember>> Session::members() const {
    PCCL_RETURN_IF_ERROR(checkUsable("pcclGetPeerGroupMembers"));
    return ring_;
}

size_t Session::inFlight() const {
    return static_cast<size_t>(std::count_if(ops_.begin(), ops_.end(), [](auto &kv) { return !kv.second.done; }));
}

bool Session::allQuiet() const { return inFlight() == 0 && !(sync_ && sync_->started); }

} // namespace pccl::peer
