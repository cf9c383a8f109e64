// Session: surviving the loss of the master (docs/master_recovery.md). The link goes Down,
// the driver reconnects with backoff over the master addresses, the peer re-registers (Rejoin,
// or Hello for a joiner) and, once the master has rebuilt the run (Rejoined), re-sends what its
// state says the master must still hear.
#include <algorithm>

#include "peer/session.h"
#include "util/log.h"

namespace pccl::peer {

using namespace protocol;

namespace {

constexpr size_t kCommittedKept = 64;  // committed sequences remembered for a new master

// 0, 100, 200, 400 ms, then every 500 ms.
uint64_t backoffMs(size_t attempt) {
    if (attempt == 0) return 0;
    return std::min<uint64_t>(500, 100ull << std::min<size_t>(attempt - 1, 3));
}

uint8_t phaseOf(const std::optional<bool> &finished) {
    if (!finished) return static_cast<uint8_t>(OpPhase::Running);
    return static_cast<uint8_t>(*finished ? OpPhase::FinishedOk : OpPhase::FinishedFailed);
}

} // namespace

void Session::toMaster(Actions &out, ControlMessage m) {
    if (link_ == MasterLink::Up) out.push_back(SendToMaster{std::move(m)});
}

void Session::noteCommitted(uint64_t seq) {
    committed_.push_back(seq);
    if (committed_.size() > kCommittedKept) committed_.erase(committed_.begin());
}

void Session::masterLost(Actions &out, const std::string &reason) {
    if (link_ == MasterLink::Up) {
        downSinceMs_ = now_;
        giveUpAtMs_ = now_ + options_.reconnectTimeoutMs;
        attempts_ = 0;
        PCCL_LOG(Warn, "lost the master " << currentMaster() << ": " << reason << "; reconnecting for up to "
                                          << options_.reconnectTimeoutMs << " ms");
    }
    downReason_ = reason;
    link_ = MasterLink::Down;
    silenceWarned_ = false;
    nextAttempt(out);
}

void Session::nextAttempt(Actions &out) {
    if (now_ >= giveUpAtMs_) return giveUp(out);
    // The first attempt goes to the master that was lost (restarted in place); later ones
    // rotate through the list.
    const size_t address = (address_ + attempts_) % masters();
    out.push_back(ReconnectMaster{address, backoffMs(attempts_)});
    ++attempts_;
}

void Session::giveUp(Actions &out) {
    fail(out, Status{pcclMasterConnectionLost, "gave up on the master after " + std::to_string(now_ - downSinceMs_) +
                                                   " ms without it (the reconnect timeout is " +
                                                   std::to_string(options_.reconnectTimeoutMs) +
                                                   " ms): " + downReason_});
}

Actions Session::onReconnected(const Status &status) {
    Actions out;
    if (phase_ == Phase::Dead || link_ != MasterLink::Down) {
        if (status.ok()) out.push_back(DisconnectMaster{"not needed any more"});
        return out;
    }
    if (!status.ok()) {
        PCCL_LOG(Debug, "reconnecting: " << status.message());
        downReason_ = status.message();
        nextAttempt(out);
        return out;
    }
    address_ = (address_ + attempts_ - 1) % masters();
    attempts_ = 0;
    link_ = MasterLink::Rejoining;
    lastAck_ = now_;
    Hello hello = hello_;
    hello.master_epoch = masterEpoch_;
    if (phase_ == Phase::Connecting) {
        PCCL_LOG(Info, "reconnected to a master; registering again as a joiner");
        out.push_back(SendToMaster{hello});
        return out;
    }
    Rejoin r = rejoinReport();
    r.hello = hello;
    PCCL_LOG(Info, "reconnected to a master after " << (now_ - downSinceMs_) << " ms; re-registering ("
                                                    << r.ops.size() << " collective(s) in flight)");
    out.push_back(SendToMaster{std::move(r)});
    return out;
}

Rejoin Session::rejoinReport() const {
    Rejoin r;
    r.topology_epoch = epoch_;
    r.ring = ring_;
    r.revision = lastRevision_;
    r.max_seq = maxSeq_;
    r.committed = committed_;
    for (auto &[tag, op] : ops_) {
        if (op.done) continue;
        OpReport o;
        o.tag = tag;
        o.seq = op.seq;
        o.phase = op.seq == 0 ? static_cast<uint8_t>(OpPhase::Waiting) : phaseOf(op.finished);
        o.desc = describe(op);
        o.awaiting = op.waiter.has_value();
        r.ops.push_back(o);
    }
    if (sync_ && !sync_->stopping) {
        r.syncing = true;
        r.sync_seq = sync_->started ? sync_->seq : 0;
        r.sync_phase = sync_->started ? phaseOf(sync_->finished) : static_cast<uint8_t>(OpPhase::Waiting);
        r.sync_revision = sync_->revision;
    }
    return r;
}

void Session::on(Actions &out, const Rejoined &m) {
    lastRedirect_.clear();  // a later redirect is news again
    if (link_ != MasterLink::Rejoining || phase_ != Phase::Connected) return unexpected(out, m);
    link_ = MasterLink::Up;
    masterEpoch_ = std::max(masterEpoch_, m.master_epoch);
    epoch_ = m.topology_epoch;
    world_ = m.world;
    const auto before = std::exchange(ring_, m.ring);
    PCCL_LOG(Info, "rejoined the run (master epoch " << m.master_epoch << ") after " << (now_ - downSinceMs_)
                                                     << " ms without a master");
    logPlace(before, false);
    forgetLeavers(out, before);
    replay(out);
}

void Session::on(Actions &out, const MasterShutdown &m) {
    fail(out, Status{pcclMasterConnectionLost, "the master " + currentMaster() + " shut down (" + m.reason +
                                                   "): the run has ended"});
}

// What the new master must hear and the old one may have lost: the start of every all-reduce
// that has not commenced, every waiting vote, a sync that waits for its plan.
void Session::replay(Actions &out) {
    for (auto &[tag, op] : ops_) {
        if (op.done || op.seq != 0) continue;
        toMaster(out, CollectiveInit{tag, describe(op)});
        if (op.waiter) toMaster(out, CollectiveAwait{tag});
    }
    if (voteWaiters_[static_cast<size_t>(VoteKind::Topology)]) toMaster(out, VoteUpdateTopology{});
    if (voteWaiters_[static_cast<size_t>(VoteKind::PeersPending)]) toMaster(out, VotePeersPending{});
    if (voteWaiters_[static_cast<size_t>(VoteKind::Optimize)]) toMaster(out, VoteOptimizeTopology{});
    if (sync_ && !sync_->started && !sync_->stopping) toMaster(out, sync_->described);
}

} // namespace pccl::peer
