#include "master/membership.h"
#include "security/handshake.h"

#include <algorithm>
#include <utility>

#include "collectives/reduce_kernels.h"
#include "master/collective_desc.h"
#include "util/collective_kind.h"
#include "master/shared_state_election.h"
#include "protocol/wire_result.h"
#include "shared_state/hashing.h"
#include "util/dtype.h"

namespace pccl::master {

using namespace protocol;

void Membership::send(Actions &out, ClientId to, ControlMessage m) {
    Action a;
    a.to = to;
    a.message = std::move(m);
    out.push_back(std::move(a));
}

void Membership::reject(Actions &out, ClientId to, pcclResult_t result, std::string why, bool retry,
                        std::string reason) {
    Action a;
    a.to = to;
    a.message = Reject{toWire(result), std::move(why), retry};
    a.close = true;
    a.reason = std::move(reason);
    out.push_back(std::move(a));
}

std::string Membership::describe(const Peer &p) const {
    return "peer " + p.uuid.shortStr() + " (" + p.dataAddr.str() + ")";
}

Actions Membership::onConnect(ClientId client, const NetAddr &remote) {
    Peer p;
    p.id = client;
    p.remote = remote;
    p.lastSeenMs = now_;
    p.connectedMs = now_;
    peers_[client] = p;
    return {};
}

Actions Membership::onMessage(ClientId client, const ControlMessage &message) {
    Actions out;
    auto it = peers_.find(client);
    if (it == peers_.end()) return out;
    Peer &p = it->second;
    if (!leading_ && (std::holds_alternative<Hello>(message) || std::holds_alternative<Rejoin>(message))) {
        refuseNotLeader(out, p);
        return out;
    }
    // Before its Hello is accepted a connection may send nothing else, not even a heartbeat:
    // it cannot stay past the handshake deadline.
    if (p.state == State::Connected && !std::holds_alternative<Hello>(message) && !std::holds_alternative<Rejoin>(message)) {
        kick(out, client, std::string("expected Hello, got ") + messageName(message));
        return out;
    }
    p.lastSeenMs = now_;
    if (std::holds_alternative<Heartbeat>(message)) {
        send(out, client, HeartbeatAck{});
        return out;
    }
    std::visit([&](const auto &m) { dispatch(out, p, m); }, message);
    return out;
}

template <class M>
void Membership::dispatch(Actions &out, Peer &p, const M &m) {
    constexpr bool fromAdmitted =
        std::is_same_v<M, VoteUpdateTopology> || std::is_same_v<M, VotePeersPending> ||
        std::is_same_v<M, VoteOptimizeTopology> || std::is_same_v<M, CollectiveInit> ||
        std::is_same_v<M, CollectiveAwait> || std::is_same_v<M, CollectiveDone> || std::is_same_v<M, SharedStateSync> ||
        std::is_same_v<M, SharedStateDone> || std::is_same_v<M, BandwidthReport> || std::is_same_v<M, StatsReport>;
    if (fromAdmitted && p.state != State::Accepted)
        return kick(out, p.id, std::string(messageName(ControlMessage(m))) + " from a peer that is not admitted");
    on(out, p, m);
}

void Membership::on(Actions &out, Peer &p, const VoteUpdateTopology &) {
    if (!linksWaiting_.empty()) return kick(out, p.id, "voted during an admission round");
    p.votedTopology = true;
    if (!topologySince_) topologySince_ = now_;
    maybeFinishVotes(out);
}

void Membership::on(Actions &out, Peer &p, const VotePeersPending &) {
    p.votedPending = true;
    if (!pendingSince_) pendingSince_ = now_;
    maybeFinishVotes(out);
}

void Membership::on(Actions &out, Peer &p, const VoteOptimizeTopology &) {
    p.votedOptimize = true;
    if (!optimizeSince_) optimizeSince_ = now_;
    maybeFinishVotes(out);
}

void Membership::on(Actions &out, Peer &p, const CollectiveAwait &m) {
    auto it = collectives_.find({p.group, m.tag});
    if (it == collectives_.end() || it->second.seq != 0 || !it->second.inited.count(p.id)) return;
    it->second.awaiting.insert(p.id);
    failMisorderedCalls(out);
}

void Membership::on(Actions &out, Peer &p, const Leave &) {
    const ClientId id = p.id;
    removePeer(out, id, "left");
    Action a;
    a.to = id;
    a.close = true;
    a.reason = "left";
    out.push_back(a);
}

void Membership::unexpected(Actions &out, Peer &p, const ControlMessage &m) {
    kick(out, p.id, std::string("unexpected message ") + messageName(m) + " from a peer");
}

void Membership::onHello(Actions &out, Peer &p, const Hello &m) {
    std::string capped;
    if (!registerPeer(out, p, m, &capped) || !checkEpoch(out, p, m.master_epoch)) return;
    // A joiner that had seen an earlier master: the run it wanted to join may be about to come
    // back; it waits for the recovery instead of founding a run of its own.
    if (!founded_ && m.master_epoch != 0) openRecovery();
    p.state = State::Pending;
    byUuid_[p.uuid] = p.id;
    sendWelcome(out, p);
    note("registered", describe(p) + " registered in group " + std::to_string(p.group) + ", waiting for admission" +
                      capped);
    if (!anyAccepted() && linksWaiting_.empty() && !recoveryDeadline_) admitPending(out);
}

void Membership::sendWelcome(Actions &out, Peer &p) {
    Welcome welcome{p.uuid, p.remote, {}, masterEpoch_};
    if (options_.masterKey) welcome.session_key = security::peerKey(*options_.masterKey, p.uuid, p.id);
    send(out, p.id, welcome);
}

bool Membership::registerPeer(Actions &out, Peer &p, const Hello &m, std::string *capped) {
    if (p.state != State::Connected) {
        kick(out, p.id, "second Hello");
        return false;
    }
    auto refuse = [&](std::string why, const char *reason) {
        reject(out, p.id, pcclMasterConnectionFailed, std::move(why), false, reason);
        return false;
    };
    if (m.magic != kMagic || m.version != kProtocolVersion)
        return refuse("protocol version " + std::to_string(m.version) + " not supported (master speaks " +
                          std::to_string(kProtocolVersion) + ")",
                      "incompatible hello");
    const auto owner = byUuid_.find(m.uuid);
    const bool taken = owner != byUuid_.end() && owner->second != p.id;
    if (m.advertised.family != 0 && m.advertised.family != 4 && m.advertised.family != 6) {
        kick(out, p.id, "advertised address of family " + std::to_string(m.advertised.family) + " (expected 4 or 6)");
        return false;
    }
    if (m.uuid.isNil() || taken)
        return refuse(m.uuid.isNil() ? "a peer id is required" : "peer id " + m.uuid.str() + " is already in use",
                      "bad peer id");
    p.uuid = m.uuid;
    p.group = m.peer_group;
    // The data address others dial: the advertised one where given (a peer behind NAT), else
    // the address this connection comes from; the advertised port, else the listening port.
    p.dataAddr = m.advertised.family != 0 ? m.advertised : p.remote;
    p.dataAddr.port = m.advertised.port != 0 ? m.advertised.port : m.data_port;
    if (m.heartbeat_timeout_ms != 0) {
        // Capped by the master's own maximum: a stranger must not hold a slot for an hour.
        const uint64_t most = std::max(options_.maxHeartbeatTimeoutMs, options_.heartbeatTimeoutMs);
        p.heartbeatTimeoutMs = std::clamp<uint64_t>(m.heartbeat_timeout_ms, 100, std::max<uint64_t>(most, 100));
        if (p.heartbeatTimeoutMs < m.heartbeat_timeout_ms)
            *capped = " (its heartbeat deadline of " + std::to_string(m.heartbeat_timeout_ms) + " ms capped at " +
                      std::to_string(p.heartbeatTimeoutMs) + " ms)";
    }
    return true;
}

std::vector<ClientId> Membership::acceptedIds() const {
    std::vector<ClientId> ids;
    for (auto &[id, p] : peers_)
        if (p.state == State::Accepted) ids.push_back(id);
    return ids;
}

WorldInfo Membership::worldFor(uint32_t group) const {
    WorldInfo w;
    for (auto &[g, ring] : rings_) {
        if (ring.empty()) continue;
        w.global_world_size += static_cast<uint32_t>(ring.size());
        w.num_groups += 1;
        w.largest_group = std::max<uint32_t>(w.largest_group, static_cast<uint32_t>(ring.size()));
    }
    auto it = rings_.find(group);
    w.group_world_size = it == rings_.end() ? 0 : static_cast<uint32_t>(it->second.size());
    return w;
}

std::vector<RingMember> Membership::ringOf(uint32_t group) const {
    std::vector<RingMember> ring;
    auto it = rings_.find(group);
    if (it == rings_.end()) return ring;
    for (ClientId id : it->second) {
        const Peer &p = peers_.at(id);
        RingMember m;
        m.uuid = p.uuid;
        m.data_addr = p.dataAddr;
        ring.push_back(m);
    }
    return ring;
}

void Membership::admitPending(Actions &out) {
    std::map<uint32_t, std::vector<ClientId>> joiners;
    linksJoiners_.clear();
    founded_ = true;
    for (auto &[id, p] : peers_) {
        if (p.state != State::Pending) continue;
        p.state = State::Accepted;
        p.joinedMs = now_;
        ++counters_.joins;
        joiners[p.group].push_back(id);
        linksJoiners_.insert(p.uuid);
        note("admitted", describe(p) + " admitted to group " + std::to_string(p.group));
    }
    for (auto &[group, ids] : joiners) placeJoiners(group, ids);
    startLinksRound(out);
}

// With a run secret: the pair keys `b` lacks for the accepted peers it may now open data
// connections to (ring links, shared-state transfers, probes), before the TopologyUpdate.
// Called for every accepted peer of a round (startLinksRound, finishRecovery): O(N) per peer, one
// HMAC per new pair.
void Membership::sendPeerKeys(Actions &out, Peer &b) {
    if (!options_.masterKey) return;
    PeerKeys keys;
    const bool newToKeys = b.keyedEpoch == 0;
    for (auto &[id, a] : peers_) {
        if (id == b.id || a.state != State::Accepted) continue;
        if (!newToKeys && a.keyedEpoch != 0 && a.keyedEpoch != epoch_) continue;  // b has its key
        if (!a.ownKey) a.ownKey = security::peerKey(*options_.masterKey, a.uuid, a.id);
        keys.keys.push_back({a.uuid, security::pairKey(*a.ownKey, b.uuid)});
    }
    if (newToKeys) b.keyedEpoch = epoch_;  // a peer keyed before keeps its first round
    if (!keys.keys.empty()) send(out, b.id, std::move(keys));
}

void Membership::maybeFinishVotes(Actions &out) {
    if (!anyAccepted()) {
        if (linksWaiting_.empty() && pendingCount() > 0 && !recoveryDeadline_) admitPending(out);
        return;
    }
    // Every accepted peer voted: none is found without the flag (from a hint, not a scan of all).
    auto all = [&](bool Peer::*flag) { return !acceptedWithout(flag); };
    if (all(&Peer::votedPending)) {
        const bool pending = pendingCount() > 0;
        for (ClientId id : acceptedIds()) {
            peers_.at(id).votedPending = false;
            send(out, id, PeersPendingResult{pending});
        }
        pendingSince_.reset();
    }
    if (all(&Peer::votedOptimize)) {
        const auto accepted = acceptedIds();
        for (ClientId id : accepted) peers_.at(id).votedOptimize = false;
        optimizeSince_.reset();
        startProbe(out, accepted);
    }
    if (linksWaiting_.empty() && all(&Peer::votedTopology)) admitPending(out);
    settleNoOpVotes(out);
    failMisorderedCalls(out);
}

void Membership::onCollectiveInit(Actions &out, Peer &p, const CollectiveInit &m) {
    const auto key = std::make_pair(p.group, m.tag);
    auto &c = collectives_[key];
    if (c.inited.count(p.id) || c.seq != 0) {
        if (c.inited.empty() && c.seq == 0) collectives_.erase(key);
        return kick(out, p.id, "started tag " + std::to_string(m.tag) + " twice");
    }
    if (m.desc.kind >= kCollectiveKinds) {
        if (c.inited.empty()) collectives_.erase(key);
        return kick(out, p.id, "started tag " + std::to_string(m.tag) + " as an unknown collective (kind " +
                                   std::to_string(m.desc.kind) + ")");
    }
    if (c.inited.empty()) {
        c.desc = m.desc;
        c.first = p.id;
        c.sinceMs = now_;
    } else if (!(c.desc == m.desc) && c.mismatch.empty()) {
        const Peer &f = peers_.at(c.first);
        c.mismatch = "peers disagree on " + c.name(m.tag) + ": " + describe(f) + " has " +
                     describeCollectiveDesc(c.desc) + ", " + describe(p) + " has " + describeCollectiveDesc(m.desc);
        c.mismatchResult = descMismatchResult(c.desc, m.desc);
        if (c.desc.segment_bytes != m.desc.segment_bytes)
            c.mismatch += " (PCCL_SEGMENT_BYTES must be the same on every peer; unset means auto)";
    }
    c.inited.insert(p.id);
    maybeCommence(out, p.group, m.tag);
    settleNoOpVotes(out);  // this peer may now block a vote that cannot complete
}

void Membership::maybeCommence(Actions &out, uint32_t group, uint64_t tag) {
    auto it = collectives_.find({group, tag});
    if (it == collectives_.end() || it->second.seq != 0) return;
    Collective &c = it->second;
    const auto &ring = rings_[group];
    if (c.inited.size() < ring.size()) return;  // a member has not started it (checked in O(1) first)
    for (ClientId id : ring)
        if (!c.inited.count(id)) return;
    if (!c.mismatch.empty()) return abortCollective(out, group, tag, c.mismatchResult, c.mismatch);
    c.seq = nextSeq_++;
    c.commencedMs = now_;
    c.participants = ring;
    auto members = ringOf(group);
    for (ClientId id : ring) send(out, id, CollectiveCommence{tag, c.seq, members});
}

void Membership::onCollectiveDone(Actions &out, Peer &p, const CollectiveDone &m) {
    auto it = collectives_.find({p.group, m.tag});
    if (it == collectives_.end() || it->second.seq != m.seq) return;  // already aborted
    Collective &c = it->second;
    if (!m.ok) {
        const auto result = failureFromWire(m.result) == pcclTimeout ? pcclTimeout : pcclRankConnectionLost;
        return abortCollective(out, p.group, m.tag, result,
                               describe(p) + " reported during " + c.name(m.tag) + ": " + m.error);
    }
    c.done.insert(p.id);
    if (m.send_bytes_per_s) c.sendRates[p.id] = m.send_bytes_per_s;
    if (c.done.size() < c.participants.size()) return;  // O(1) per report until the last one
    for (ClientId id : c.participants)
        if (!c.done.count(id)) return;
    learnFromTraffic(c);
    countCollective(collectiveMetricName(c.kind()), pcclSuccess, c.commencedMs);
    for (ClientId id : c.participants) send(out, id, CollectiveCommitted{m.tag, c.seq});
    collectives_.erase(it);
}

void Membership::abortCollective(Actions &out, uint32_t group, uint64_t tag, pcclResult_t result,
                                 const std::string &reason, const std::vector<Uuid> &lost) {
    auto it = collectives_.find({group, tag});
    if (it == collectives_.end()) return;
    Collective &c = it->second;
    countCollective(collectiveMetricName(c.kind()), result);
    record("collective", c.name(tag) + " of group " + std::to_string(group) +
                             " failed (" + pcclGetErrorString(result) + "): " + reason);
    std::set<ClientId> to(c.inited.begin(), c.inited.end());
    to.insert(c.participants.begin(), c.participants.end());
    for (ClientId id : to)
        if (peers_.count(id)) send(out, id, CollectiveAborted{tag, c.seq, toWire(result), reason, lost});
    collectives_.erase(it);
}

void Membership::removePeer(Actions &out, ClientId id, const std::string &reason) {
    auto it = peers_.find(id);
    if (it == peers_.end()) return;
    const Peer p = it->second;
    peers_.erase(it);
    if (p.state == State::Connected) return;
    byUuid_.erase(p.uuid);
    note("lost", describe(p) + " " + reason);
    countLoss(reason);
    if (p.state == State::Rejoining) tallyLeave(p);
    if (p.state == State::Pending || p.state == State::Rejoining) return;
    auto &ring = rings_[p.group];
    std::erase(ring, id);
    if (ring.empty()) {
        rings_.erase(p.group);
        lastRevision_.erase(p.group);  // a new group may start at any revision
    }
    // World sizes first: a survivor that sees the abort below already knows the new size
    // (pcclAllReduceMultipleWithRetry decides on it whether to retry).
    sendWorld(out);
    leaveCollectives(out, p, reason);
    leaveSync(out, p, reason);
    if (linksWaiting_.erase(id) && linksWaiting_.empty()) finishLinksRound(out);
    linksRound_.erase(id);
    std::erase(optimizeAnswer_, id);
    if (probe_ && probe_->waiting.erase(id) && probe_->waiting.empty()) finishProbe(out);
    maybeFinishVotes(out);
}

void Membership::leaveCollectives(Actions &out, const Peer &p, const std::string &reason) {
    // Every collective of its group that it took part in fails; those it had not joined yet
    // may now be complete without it.
    std::vector<uint64_t> tags;
    for (auto &[key, c] : collectives_)
        if (key.first == p.group) tags.push_back(key.second);
    for (uint64_t tag : tags) {
        auto &c = collectives_.at({p.group, tag});
        const bool involved = c.seq != 0 && std::find(c.participants.begin(), c.participants.end(), p.id) != c.participants.end();
        if (involved) {
            // The master knows of the lost peer's phase only whether it had reported its part done.
            const std::string phase = c.done.count(p.id) ? " (it had finished its transfer and waited for the commit)"
                                                       : " (its transfer was under way)";
            abortCollective(out, p.group, tag, pcclRankConnectionLost,
                            describe(p) + " " + reason + " during " + c.name(tag) + phase, {p.uuid});
        } else if (c.seq == 0) {
            c.inited.erase(p.id);
            c.awaiting.erase(p.id);
            if (c.inited.empty()) {
                collectives_.erase({p.group, tag});
            } else {
                if (c.first == p.id) c.first = *c.inited.begin();
                maybeCommence(out, p.group, tag);
            }
        }
    }
}

void Membership::leaveSync(Actions &out, const Peer &p, const std::string &reason) {
    if (auto sr = syncRounds_.find(p.group); sr != syncRounds_.end()) {
        if (sr->second.seq == 0) {
            sr->second.described.erase(p.id);
            maybeRunSync(out, p.group);
        } else if (sr->second.participants.count(p.id)) {
            const std::string phase = sr->second.done.count(p.id) ? ", transfer phase (it had finished its part)"
                                                                : ", transfer phase";
            onSyncParticipantLost(out, p.group, p.id, p.uuid,
                                  describe(p) + " " + reason + " during shared-state sync revision " +
                                      std::to_string(sr->second.revision) + phase);
        }
    }
}

void Membership::sendWorld(Actions &out) {
    std::map<uint32_t, WorldUpdate> updates;  // built once per group, not once per peer
    for (auto &[id, p] : peers_) {
        if (p.state != State::Accepted) continue;
        auto u = updates.find(p.group);
        if (u == updates.end()) u = updates.emplace(p.group, WorldUpdate{worldFor(p.group), ringOf(p.group)}).first;
        send(out, id, u->second);
    }
}

void Membership::kick(Actions &out, ClientId id, const std::string &reason, const std::string &toPeer) {
    Action a;
    a.to = id;
    a.message = Kicked{reason + toPeer};
    a.close = true;
    a.reason = "kicked: " + reason;
    auto it = peers_.find(id);
    a.unregistered = it != peers_.end() && it->second.state == State::Connected;
    removePeer(out, id, "kicked: " + reason);
    out.push_back(std::move(a));
}

Actions Membership::onDisconnect(ClientId client, const std::string &reason) {
    Actions out;
    removePeer(out, client, "lost (" + reason + ")");
    return out;
}

Actions Membership::shedUnregistered(size_t count, uint64_t minAgeMs, const std::string &reason) {
    // Client ids grow with each connection: the smallest are the oldest. Before its Hello a
    // connection's lastSeenMs is when it connected.
    std::vector<ClientId> oldest;
    for (auto &[id, p] : peers_) {
        if (oldest.size() == count) break;
        if (p.state == State::Connected && now_ >= p.lastSeenMs + minAgeMs) oldest.push_back(id);
    }
    Actions out;
    for (ClientId id : oldest) kick(out, id, reason);
    return out;
}

std::string Membership::activityOf(const Peer &p) const {
    std::vector<std::string> parts;
    if (p.state == State::Pending) parts.push_back("admission (waiting for the accepted peers' vote)");
    if (linksWaiting_.count(p.id)) parts.push_back("an admission round (connecting the ring)");
    auto vote = [&](const std::optional<uint64_t> &since, bool voted, const char *what) {
        if (since) parts.push_back(std::string(what) + (voted ? " (voted, waiting for the others)" : " (had not voted)"));
    };
    vote(topologySince_, p.votedTopology, "the topology update vote");
    vote(pendingSince_, p.votedPending, "the peers-pending vote");
    vote(optimizeSince_, p.votedOptimize, "the optimize-topology vote");
    if (probe_ && probe_->waiting.count(p.id)) parts.push_back("a link measurement (its report missing)");
    for (auto &[key, c] : collectives_) {
        if (key.first != p.group) continue;
        const std::string tag = c.name(key.second);
        const bool participant = std::find(c.participants.begin(), c.participants.end(), p.id) != c.participants.end();
        if (c.seq != 0 && participant)
            parts.push_back(tag + (c.done.count(p.id) ? " (transfer finished, waiting for the commit)" : " (transfer under way)"));
        else if (c.seq == 0)
            parts.push_back(tag + (c.inited.count(p.id) ? " (waiting to start)" : " (not started by it yet)"));
    }
    if (auto sr = syncRounds_.find(p.group); sr != syncRounds_.end()) {
        const SyncRound &r = sr->second;
        if (r.seq == 0)
            parts.push_back(std::string("a shared-state sync") + (r.described.count(p.id) ? " (waiting to start)" : " (not started by it yet)"));
        else if (r.participants.count(p.id))
            parts.push_back("shared-state sync revision " + std::to_string(r.revision) + ", transfer phase");
    }
    if (parts.empty()) return "no operation (idle)";
    std::string s;
    for (size_t i = 0; i < parts.size(); ++i) s += (i ? ", " : "") + parts[i];
    return s;
}

// The accepted peers are the members of the rings: O(groups), not O(peers) (the server prints it
// with every membership event).
size_t Membership::acceptedCount() const {
    size_t n = 0;
    for (auto &[group, ring] : rings_) n += ring.size();
    return n;
}

size_t Membership::pendingCount() const {
    size_t n = 0;
    for (auto &[id, p] : peers_) n += p.state == State::Pending;
    return n;
}

std::vector<std::string> Membership::takeEvents() { return std::exchange(events_, {}); }

} // namespace pccl::master
