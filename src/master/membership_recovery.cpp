// Membership: rebuilding a run from its peers after the master restarted (docs/master_recovery.md).
#include <algorithm>
#include <utility>

#include "master/membership.h"
#include "protocol/wire_result.h"

namespace pccl::master {

using namespace protocol;

namespace {

bool finishedOk(uint8_t phase) { return phase == static_cast<uint8_t>(OpPhase::FinishedOk); }

} // namespace

Actions Membership::onShutdown(const std::string &reason) const {
    Actions out;
    for (auto &[id, p] : peers_) {
        if (p.state == State::Connected) continue;
        Action a;
        a.to = id;
        a.message = MasterShutdown{reason};
        a.close = true;
        a.reason = "master shutting down";
        out.push_back(std::move(a));
    }
    return out;
}

bool Membership::checkEpoch(Actions &out, Peer &p, uint64_t reported) {
    if (!founded_) {
        if (reported >= masterEpoch_) masterEpoch_ = reported + 1;
        return true;
    }
    if (reported <= masterEpoch_) return true;
    reject(out, p.id, pcclMasterConnectionFailed,
           "stale master: its epoch is " + std::to_string(masterEpoch_) + ", this peer has seen epoch " +
               std::to_string(reported),
           true, "stale master epoch");
    return false;
}

void Membership::openRecovery() {
    if (recoveryDeadline_) return;
    const uint64_t window = options_.recoveryWindowMs ? options_.recoveryWindowMs : options_.heartbeatTimeoutMs;
    recoveryDeadline_ = now_ + window;
    note("master", "recovering a run from its peers (epoch " + std::to_string(masterEpoch_) + "), for at most " +
                       std::to_string(window) + " ms");
}

void Membership::onRejoin(Actions &out, Peer &p, const Rejoin &m) {
    std::string capped;
    if (!registerPeer(out, p, m.hello, &capped)) return;
    if (founded_) {
        if (!checkEpoch(out, p, m.hello.master_epoch)) return;
        // Its connection broke and this master removed it (or it belongs to another run).
        reject(out, p.id, pcclKicked,
               "this master's run (epoch " + std::to_string(masterEpoch_) +
                   ") does not include this peer: it was removed while its connection to the master was down",
               false, "rejoin refused");
        return;
    }
    checkEpoch(out, p, m.hello.master_epoch);
    openRecovery();
    p.state = State::Rejoining;
    byUuid_[p.uuid] = p.id;
    p.rejoin = m;
    tallyRejoin(p);
    sendWelcome(out, p);
    note("rejoining", describe(p) + " rejoins group " + std::to_string(p.group) + " at rank-order position " +
                          std::to_string(std::find_if(m.ring.begin(), m.ring.end(),
                                                      [&](auto &r) { return r.uuid == p.uuid; }) -
                                         m.ring.begin()) +
                          " of " + std::to_string(m.ring.size()) + capped);
    if (recoveryComplete()) finishRecovery(out);
}

// The ring of a group as the rejoiners know it: the one of the latest topology epoch; among
// those, the shortest (it saw the latest removal).
void Membership::tallyRejoin(const Peer &p) {
    rejoined_.insert(p.uuid);
    const Rejoin &r = *p.rejoin;
    RecoveryGroup &g = recoveryGroups_[p.group];
    const bool newer = g.ring.empty() || r.topology_epoch > g.epoch ||
                       (r.topology_epoch == g.epoch && r.ring.size() < g.ring.size());
    if (!newer) {
        if (g.members.count(p.uuid)) --g.missing;
        return;
    }
    g.epoch = r.topology_epoch;
    g.ring.clear();
    g.members.clear();
    g.missing = 0;
    for (auto &m : r.ring) {
        if (!g.members.insert(m.uuid).second) continue;
        g.ring.push_back(m.uuid);
        if (!rejoined_.count(m.uuid)) ++g.missing;
    }
}

void Membership::tallyLeave(const Peer &p) {
    rejoined_.erase(p.uuid);
    auto g = recoveryGroups_.find(p.group);
    if (g != recoveryGroups_.end() && g->second.members.count(p.uuid)) ++g->second.missing;
}

bool Membership::recoveryComplete() const {
    if (recoveryGroups_.empty()) return false;
    return std::all_of(recoveryGroups_.begin(), recoveryGroups_.end(), [](auto &kv) { return kv.second.missing == 0; });
}

void Membership::finishRecovery(Actions &out) {
    recoveryDeadline_.reset();
    founded_ = true;
    const auto tallies = std::exchange(recoveryGroups_, {});
    rejoined_.clear();
    std::map<uint32_t, std::vector<ClientId>> byGroup;
    for (auto &[id, p] : peers_)
        if (p.state == State::Rejoining) byGroup[p.group].push_back(id);
    std::vector<ClientId> outsiders;
    std::map<uint32_t, size_t> participants;  // per group: the ring's size before the restart
    for (auto &[group, ids] : byGroup) {
        static const RecoveryGroup none;
        auto t = tallies.find(group);
        const RecoveryGroup &latest = t == tallies.end() ? none : t->second;
        participants[group] = latest.ring.size();
        std::map<Uuid, ClientId> byUuid;
        for (ClientId id : ids) byUuid[peers_.at(id).uuid] = id;
        std::vector<ClientId> ring;
        for (const Uuid &u : latest.ring)
            if (auto it = byUuid.find(u); it != byUuid.end()) ring.push_back(it->second);
        const std::set<ClientId> inRing(ring.begin(), ring.end());
        for (ClientId id : ids) {
            Peer &p = peers_.at(id);
            epoch_ = std::max(epoch_, p.rejoin->topology_epoch);
            nextSeq_ = std::max(nextSeq_, p.rejoin->max_seq + 1);
            if (p.rejoin->revision) lastRevision_[group] = std::max(lastRevision_[group], p.rejoin->revision);
            if (!inRing.count(id)) outsiders.push_back(id);
        }
        for (ClientId id : ring) {
            Peer &p = peers_.at(id);
            p.state = State::Accepted;
            p.joinedMs = now_;
        }
        if (!ring.empty()) rings_[group] = ring;
    }
    for (ClientId id : outsiders)
        kick(out, id, "was not in its group's ring when the master restarted (removed before)");
    size_t rebuilt = 0;
    for (auto &[group, ring] : rings_) {
        for (ClientId id : ring) sendPeerKeys(out, peers_.at(id));
        for (ClientId id : ring)
            send(out, id, Rejoined{masterEpoch_, epoch_, worldFor(group), ringOf(group)});
        resolveCollectives(out, ring, participants[group]);
        resolveSync(out, group, ring, participants[group]);
        rebuilt += ring.size();
    }
    note("master", "run rebuilt from " + std::to_string(rebuilt) + " peer(s) in " + std::to_string(rings_.size()) +
                       " group(s); master epoch " + std::to_string(masterEpoch_) + ", topology epoch " +
                       std::to_string(epoch_));
    for (auto &[id, p] : peers_) p.rejoin.reset();
    // Nobody came back: the joiners that waited found a new run.
    if (rings_.empty() && pendingCount() > 0 && linksWaiting_.empty()) admitPending(out);
}

// Per tag, all-or-nothing: commit what some peer saw committed or what every member finished;
// abort everything else that commenced (and the tag's waiting holders with it); leave a tag
// that nobody saw commence to the CollectiveInits the peers re-send after Rejoined.
void Membership::resolveCollectives(Actions &out, const std::vector<ClientId> &members, size_t participants) {
    std::set<uint64_t> committed;
    std::map<uint64_t, std::vector<std::pair<ClientId, OpReport>>> byTag;
    for (ClientId id : members) {
        const Rejoin &r = *peers_.at(id).rejoin;
        committed.insert(r.committed.begin(), r.committed.end());
        for (auto &op : r.ops) byTag[op.tag].push_back({id, op});
    }
    for (auto &[tag, holders] : byTag) {
        std::set<uint64_t> seqs;
        for (auto &[id, op] : holders)
            if (op.seq) seqs.insert(op.seq);
        if (seqs.empty()) continue;
        const uint64_t seq = *seqs.rbegin();
        const auto kind = static_cast<CollectiveKind>(holders.front().second.desc.kind);
        const char *metric = collectiveMetricName(kind);
        if (seqs.size() == 1 && committed.count(seq)) {
            for (auto &[id, op] : holders)
                if (op.seq == seq) send(out, id, CollectiveCommitted{tag, seq});
            countCollective(metric, pcclSuccess);
            continue;
        }
        const bool complete = seqs.size() == 1 && holders.size() == participants &&
                              std::all_of(holders.begin(), holders.end(),
                                          [&](auto &h) { return h.second.seq == seq && finishedOk(h.second.phase); });
        if (complete) {
            for (auto &[id, op] : holders) send(out, id, CollectiveCommitted{tag, seq});
            countCollective(metric, pcclSuccess);
            continue;
        }
        const std::string reason = collectiveTag(kind, tag) +
                                   " was under way when the master restarted and did not finish on every peer";
        countCollective(metric, pcclRankConnectionLost);
        record("collective", reason);
        for (auto &[id, op] : holders)
            send(out, id, CollectiveAborted{tag, op.seq, toWire(pcclRankConnectionLost), reason, {}});
    }
}

void Membership::resolveSync(Actions &out, uint32_t group, const std::vector<ClientId> &members, size_t participants) {
    std::set<uint64_t> committed, seqs;
    std::vector<ClientId> holders;
    for (ClientId id : members) {
        const Rejoin &r = *peers_.at(id).rejoin;
        committed.insert(r.committed.begin(), r.committed.end());
        if (!r.syncing) continue;
        holders.push_back(id);
        if (r.sync_seq) seqs.insert(r.sync_seq);
    }
    if (seqs.empty()) return;  // every holder waits for a plan: they describe their state again
    const uint64_t seq = *seqs.rbegin();
    uint64_t revision = 0;
    for (ClientId id : holders) revision = std::max(revision, peers_.at(id).rejoin->sync_revision);
    const bool sawCommit = seqs.size() == 1 && committed.count(seq);
    const bool complete = seqs.size() == 1 && holders.size() == participants &&
                          std::all_of(holders.begin(), holders.end(), [&](ClientId id) {
                              auto &r = *peers_.at(id).rejoin;
                              return r.sync_seq == seq && finishedOk(r.sync_phase);
                          });
    if (sawCommit || complete) {
        for (ClientId id : holders)
            if (peers_.at(id).rejoin->sync_seq == seq) send(out, id, SharedStateCommitted{seq, revision});
        lastRevision_[group] = std::max(lastRevision_[group], revision);
        return;
    }
    const std::string reason = "the shared-state sync was under way when the master restarted and did not finish "
                               "on every peer";
    record("sync", reason);
    for (ClientId id : holders)
        send(out, id, SharedStateAborted{peers_.at(id).rejoin->sync_seq, toWire(pcclRankConnectionLost), reason, {}});
}

} // namespace pccl::master
