// Session: what each message from the master does (session.h).
#include <algorithm>
#include <utility>

#include "peer/session.h"
#include "protocol/wire_result.h"
#include "shared_state/hashing.h"
#include "util/log.h"

namespace pccl::peer {

using namespace protocol;

namespace {

Status fromFailure(uint8_t result, const std::string &reason) { return {failureFromWire(result), reason}; }

std::string memberName(const RingMember &r) { return "peer " + r.uuid.shortStr() + " (" + r.data_addr.str() + ")"; }

// What a plan must satisfy before its indices and sizes are trusted; "" when it does.
std::string checkPlan(const SharedStatePlan &m, const std::vector<uint64_t> &entryBytes) {
    for (uint32_t r : m.serve)
        if (r >= m.peers.size()) return "serve index out of range";
    for (auto &f : m.receive) {
        if (f.entry >= entryBytes.size()) return "entry index out of range";
        if (f.chunks.size() != f.digests.size() || f.sources.empty()) return "fetch without digests or sources";
        const size_t n = shared_state::chunkCount(entryBytes[f.entry]);
        for (uint32_t c : f.chunks)
            if (c >= n) return "chunk index out of range";
        for (uint32_t s : f.sources)
            if (s >= m.peers.size()) return "source index out of range";
    }
    return "";
}

} // namespace

Actions Session::onMessage(const ControlMessage &message) {
    Actions out;
    std::visit([&](const auto &m) { on(out, m); }, message);
    return out;
}

void Session::unexpected(Actions &out, const ControlMessage &m) {
    const std::string why = std::string("protocol error: unexpected ") + messageName(m) + " from the master";
    fail(out, Status{pcclMasterConnectionLost, why});
    out.push_back(DisconnectMaster{why});
}

void Session::on(Actions &, const HeartbeatAck &) { lastAck_ = now_; }

void Session::on(Actions &out, const Welcome &m) {
    if (m.master_epoch < masterEpoch_) {
        const std::string why = "stale master: its epoch " + std::to_string(m.master_epoch) +
                                " is older than the epoch " + std::to_string(masterEpoch_) + " this peer has seen";
        PCCL_LOG(Warn, "refusing the master " << currentMaster() << ": " << why);
        address_ = (address_ + 1) % masters();  // not this one next
        out.push_back(DisconnectMaster{why});
        return;
    }
    masterEpoch_ = m.master_epoch;
    // A joiner that reconnected is registered again and waits for admission as before.
    if (link_ == MasterLink::Rejoining && phase_ == Phase::Connecting) link_ = MasterLink::Up;
    if (phase_ == Phase::Connected) {
        PCCL_LOG(Info, "re-registered with the master (epoch " << m.master_epoch << "), waiting for the run to be rebuilt");
        if (m.session_key != std::array<uint8_t, 32>{}) out.push_back(InstallKeys{m.session_key, {}});
        return;
    }
    PCCL_LOG(Info, "registered as peer " << m.uuid.shortStr() << " (seen as " << m.observed_addr.str()
                                          << "), waiting for admission");
    if (m.session_key != std::array<uint8_t, 32>{}) out.push_back(InstallKeys{m.session_key, {}});
}

void Session::on(Actions &out, const PeerKeys &m) { out.push_back(InstallKeys{std::nullopt, m.keys}); }

void Session::on(Actions &out, const Reject &m) {
    // Another master may serve the run (this one is stale, or not the leader): the connection
    // closes next and the peer tries the next address.
    if (m.retry && reconnecting() && phase_ != Phase::Dead) {
        // Warned once per master and reason: a follower answers every retry (~10 a second) alike.
        std::string &last = lastRedirect_[address_];
        if (last != m.reason) PCCL_LOG(Warn, "the master " << currentMaster() << " sent this peer elsewhere: " << m.reason);
        else PCCL_LOG(Debug, "the master " << currentMaster() << " sent this peer elsewhere: " << m.reason);
        last = m.reason;
        // The next attempt goes to the next address: this master just said it will not serve.
        address_ = (address_ + 1) % masters();
        return;
    }
    fail(out, fromFailure(m.result, "master rejected this peer: " + m.reason));
}

void Session::on(Actions &out, const Kicked &m) { fail(out, Status{pcclKicked, "removed by the master: " + m.reason}); }

void Session::on(Actions &out, const TopologyUpdate &m) {
    const auto before = std::exchange(ring_, m.ring);
    world_ = m.world;
    epoch_ = m.epoch;
    if (phase_ == Phase::Connected) logPlace(before, false);
    forgetLeavers(out, before);
    auto me = std::find_if(ring_.begin(), ring_.end(), [&](auto &r) { return r.uuid == self_; });
    if (me == ring_.end() || phase_ == Phase::Dead) {
        // A dead session (admission deadline, silent master) must not join a ring it will never serve.
        const char *why = phase_ == Phase::Dead ? "this peer has given up" : "this peer is not in its own ring";
        toMaster(out, LinksReady{m.epoch, false, why});
        return;
    }
    if (ring_.size() == 1) {
        toMaster(out, LinksReady{m.epoch, true, ""});
        return;
    }
    const RingMember &next = ring_[(static_cast<size_t>(me - ring_.begin()) + 1) % ring_.size()];
    linkTarget_ = next.uuid;
    out.push_back(ConnectLinks{m.epoch, next});
}

Actions Session::onLinksConnected(uint64_t epoch, const Status &status) {
    Actions out;
    // A failure names the successor, so that the master can remove a joiner that cannot be reached.
    const Uuid failed = !status.ok() && epoch == epoch_ ? linkTarget_ : Uuid{};
    if (phase_ != Phase::Dead) toMaster(out, LinksReady{epoch, status.ok(), status.message(), failed});
    return out;
}

void Session::on(Actions &out, const TopologyDone &m) {
    if (phase_ == Phase::Connecting) {
        if (!m.ok) return fail(out, Status{pcclRankConnectionFailed, "could not link to the ring: " + m.error});
        phase_ = Phase::Connected;
        admissionDeadline_.reset();
        logPlace(ring_, true);
        if (connectWaiter_) out.push_back(Complete{*connectWaiter_, {}, {}});
        connectWaiter_.reset();
    }
    answerVote(out, VoteKind::Topology,
               m.ok ? Status{} : Status{pcclUpdateTopologyFailed, "topology update failed: " + m.error});
}

void Session::on(Actions &out, const PeersPendingResult &m) { answerVote(out, VoteKind::PeersPending, {}, m.pending); }

void Session::on(Actions &out, const OptimizeTopologyResult &m) {
    answerVote(out, VoteKind::Optimize, m.ok ? Status{} : Status{pcclTopologyOptimizationFailed, m.error});
}

void Session::on(Actions &out, const VoteFailed &m) {
    if (m.vote >= kVoteKinds) return unexpected(out, m);
    answerVote(out, static_cast<VoteKind>(m.vote), fromFailure(m.result, m.reason));
}

void Session::on(Actions &out, const WorldUpdate &m) {
    world_ = m.world;
    const auto before = std::exchange(ring_, m.ring);
    if (phase_ == Phase::Connected) logPlace(before, false);
    forgetLeavers(out, before);
}

// Peers that left the ring were removed from the run: their data connections close and, in a
// run with a secret, their keys are revoked (the communicator's ClosePeer), so a removed peer
// opens no new connection here.
void Session::forgetLeavers(Actions &out, const std::vector<RingMember> &before) {
    for (auto &r : before) {
        const bool stays = std::any_of(ring_.begin(), ring_.end(), [&](auto &n) { return n.uuid == r.uuid; });
        if (!stays && r.uuid != self_) out.push_back(ClosePeer{r.uuid, "peer removed from the run"});
    }
}

void Session::logPlace(const std::vector<RingMember> &before, bool joined) {
    auto me = std::find_if(ring_.begin(), ring_.end(), [&](auto &r) { return r.uuid == self_; });
    if (me == ring_.end()) return;
    const std::pair<size_t, size_t> place{static_cast<size_t>(me - ring_.begin()), ring_.size()};
    if (!joined && loggedPlace_ == place) return;
    loggedPlace_ = place;
    const std::string now = "rank " + std::to_string(place.first) + " of " + std::to_string(place.second);
    std::string left;
    for (auto &r : before)
        if (std::none_of(ring_.begin(), ring_.end(), [&](auto &n) { return n.uuid == r.uuid; }))
            left += (left.empty() ? "" : ", ") + memberName(r);
    if (joined) {
        PCCL_LOG(Info, "joined the run as " << now << " in group " << group_);
    } else if (left.empty()) {
        PCCL_LOG(Info, "ring changed: " << now);
    } else {
        PCCL_LOG(Info, left << " left; now " << now);
    }
}

void Session::on(Actions &out, const BandwidthProbe &m) {
    noteSeq(m.seq);
    const bool member = std::any_of(m.peers.begin(), m.peers.end(), [&](auto &r) { return r.uuid == self_; });
    if (phase_ == Phase::Dead || !member || m.peers.size() < 2 || m.window_ms == 0 || m.window_ms > 10000) {
        toMaster(out, BandwidthReport{m.round, {}, {}});
        return;
    }
    out.push_back(StartProbe{m});
}

Actions Session::onProbeDone(uint64_t, BandwidthReport report, const OpStats &bytes) {
    Actions out;
    counters_.probeTxBytes += bytes.txBytes;
    counters_.probeRxBytes += bytes.rxBytes;
    if (phase_ != Phase::Dead) toMaster(out, std::move(report));
    return out;
}

// ---- all-reduce

void Session::on(Actions &out, const CollectiveCommence &m) {
    auto it = ops_.find(m.tag);
    if (it == ops_.end() || it->second.done || it->second.seq != 0) {
        PCCL_LOG(Warn, "commence for tag " << m.tag << " that is not waiting; reporting failure");
        toMaster(out, CollectiveDone{m.tag, m.seq, false, "tag not in flight on " + self_.shortStr()});
        return;
    }
    Op &op = it->second;
    auto me = std::find_if(m.ring.begin(), m.ring.end(), [&](auto &r) { return r.uuid == self_; });
    if (me == m.ring.end()) {
        op.seq = m.seq;  // the master aborts this seq after the refusal: the op ends with it
        toMaster(out, CollectiveDone{m.tag, m.seq, false, "not part of the ring"});
        return;
    }
    const auto n = static_cast<uint32_t>(m.ring.size());
    const auto rank = static_cast<uint32_t>(me - m.ring.begin());
    noteSeq(m.seq);
    if (op.args.world && op.args.world != n) {
        // The buffers were laid out for another group size (a peer was lost before the start):
        // the master aborts this seq on every participant after the refusal.
        op.seq = m.seq;
        toMaster(out, CollectiveDone{m.tag, m.seq, false,
                                                  std::string(collectiveName(op.args.kind)) + " tag " +
                                                      std::to_string(m.tag) + " was laid out for " +
                                                      std::to_string(op.args.world) + " peers but commenced with " +
                                                      std::to_string(n) + " (the group changed before it started)",
                                                  toWire(pcclRankConnectionLost), 0});
        return;
    }
    op.seq = m.seq;
    op.worldSize = n;
    op.next = m.ring[(rank + 1) % n].uuid;
    op.started = true;
    PCCL_LOG(Debug, collectiveTag(op.args.kind, m.tag) << " seq " << m.seq << " commences: rank " << rank << " of " << n
                                      << ", next " << memberName(m.ring[(rank + 1) % n]));
    out.push_back(StartAllReduce{op.args, m.seq, op.segmentBytes, rank, n, m.ring[(rank + n - 1) % n],
                                 m.ring[(rank + 1) % n]});
}

Actions Session::onAllReduceFinished(uint64_t tag, uint64_t seq, const Status &status, const OpStats &stats) {
    Actions out;
    auto it = ops_.find(tag);
    if (it == ops_.end() || it->second.seq != seq || it->second.done) return out;
    it->second.stats = stats;
    it->second.finished = status.ok();
    if (!status.ok()) PCCL_LOG(Info, collectiveTag(it->second.args.kind, tag) << " failed locally: " << status.message());
    CollectiveDone done{tag, seq, status.ok(), status.message(), toWire(status.code()), 0};
    // A large enough transfer is a measurement of the link to the successor.
    if (status.ok() && stats.txBytes >= (4u << 20)) done.send_bytes_per_s = stats.sendBytesPerS;
    if (phase_ != Phase::Dead) toMaster(out, std::move(done));
    return out;
}

void Session::on(Actions &out, const CollectiveCommitted &m) {
    auto it = ops_.find(m.tag);
    if (it == ops_.end() || !it->second.started || it->second.seq != m.seq || it->second.done || it->second.stopping)
        return;
    noteCommitted(m.seq);
    out.push_back(ReleaseAllReduce{m.tag, m.seq});
    finishOp(out, m.tag, it->second, {});
}

void Session::on(Actions &out, const CollectiveAborted &m) {
    // Nothing more will come from a removed peer: close its connections so that no read or
    // write waits on it.
    for (auto &u : m.lost) out.push_back(ClosePeer{u, "peer removed from the run"});
    auto it = ops_.find(m.tag);
    if (it == ops_.end() || it->second.seq != m.seq || it->second.done) return;
    PCCL_LOG(Info, collectiveTag(it->second.args.kind, m.tag) << " aborted: " << m.reason);
    stopOp(out, m.tag, it->second, fromFailure(m.result, m.reason));
}

Actions Session::onAllReduceStopped(uint64_t tag, uint64_t seq, const Status &status, const OpStats &stats) {
    Actions out;
    auto it = ops_.find(tag);
    if (it == ops_.end() || it->second.seq != seq || it->second.done) return out;
    it->second.stats = stats;
    finishOp(out, tag, it->second, status);
    return out;
}

// ---- shared state

void Session::on(Actions &out, const SharedStatePlan &m) {
    if (!sync_ || sync_->started || sync_->stopping) {
        toMaster(out, SharedStateDone{m.seq, false, "no shared-state sync is waiting on " + self_.shortStr()});
        return;
    }
    if (auto why = checkPlan(m, sync_->entryBytes); !why.empty()) {
        sync_->seq = m.seq;  // the master aborts this round after the refusal: the sync ends with it
        toMaster(out, SharedStateDone{m.seq, false, "malformed plan from the master: " + why,
                                                   toWire(pcclRankConnectionLost)});
        return;
    }
    noteSeq(m.seq);
    sync_->seq = m.seq;
    sync_->revision = m.revision;
    sync_->started = true;
    out.push_back(StartTransfer{m});
}

Actions Session::onTransferFinished(uint64_t seq, const Status &status) {
    Actions out;
    if (!sync_ || sync_->seq != seq || !sync_->started || phase_ == Phase::Dead) return out;
    sync_->finished = status.ok();
    if (!status.ok()) PCCL_LOG(Info, "shared-state sync failed locally: " << status.message());
    toMaster(out, SharedStateDone{seq, status.ok(), status.message(), toWire(status.code())});
    return out;
}

void Session::endSync(Actions &out, uint64_t seq, const Status &status, uint64_t revision) {
    if (!sync_ || sync_->seq != seq || sync_->stopping) return;
    if (status.ok() && !sync_->started) return;  // only a transfer that ran can be committed
    if (status.ok()) sync_->revision = revision;
    // On commit too the transfer is stopped the same way: a source's sends must be drained
    // before the user may touch the buffers again.
    stopSync(out, status);
}

void Session::on(Actions &out, const SharedStateCommitted &m) {
    if (sync_ && sync_->seq == m.seq && sync_->started) noteCommitted(m.seq);
    endSync(out, m.seq, {}, m.revision);
}

void Session::on(Actions &out, const SharedStateAborted &m) {
    for (auto &u : m.lost) out.push_back(ClosePeer{u, "peer removed from the run"});
    endSync(out, m.seq, fromFailure(m.result, m.reason), 0);
}

void Session::on(Actions &out, const SharedStateSourceLost &m) {
    if (!sync_ || !sync_->started || sync_->stopping || sync_->seq != m.seq) return;
    out.push_back(ClosePeer{m.peer, "peer removed from the run"});
    out.push_back(SourceLost{m.seq, m.peer});
}

Actions Session::onTransferStopped(uint64_t seq, const Status &status, const OpStats &stats) {
    Actions out;
    if (!sync_ || !sync_->stopping || sync_->seq != seq) return out;
    if (status.ok()) {
        syncedBefore_ = true;
        lastRevision_ = sync_->revision;
    }
    ++(status.ok() ? counters_.syncsCompleted : counters_.syncsFailed);
    counters_.txBytes += stats.txBytes;
    counters_.rxBytes += stats.rxBytes;
    counters_.syncTxBytes += stats.txBytes;
    counters_.syncRxBytes += stats.rxBytes;
    out.push_back(Complete{sync_->id, status, SyncResult{sync_->revision, stats.txBytes, stats.rxBytes}});
    sync_.reset();
    return out;
}

} // namespace pccl::peer
