// Membership: shared-state sync rounds per peer group (docs/shared_state.md): descriptions in,
// the election, the plans, commit or abort.
#include <algorithm>
#include <functional>
#include <unordered_map>
#include <unordered_set>

#include "master/membership.h"
#include "master/shared_state_election.h"
#include "protocol/wire_result.h"
#include "shared_state/hashing.h"
#include "util/dtype.h"

namespace pccl::master {

using namespace protocol;

namespace {

// The plans of one sync round from the election's outcome: per participant the peers it talks
// to, the chunks it fetches and from whom, and the receivers it serves. needsOf gets, per
// receiver and fetched entry, the sources it may use.
std::map<ClientId, SharedStatePlan> planRound(const ElectionOutcome &e, uint64_t seq,
                                              const std::vector<ClientId> &participants,
                                              const std::function<RingMember(ClientId)> &memberOf,
                                              std::map<ClientId, std::vector<std::set<ClientId>>> &needsOf) {
    std::map<ClientId, SharedStatePlan> plans;
    for (ClientId id : participants) plans[id] = SharedStatePlan{seq, e.revision, {}, {}, {}};
    // Each plan names peers by index into its own `peers` table; the index of a peer in a plan
    // is looked up, not searched (a receiver may list every other peer as a source).
    std::map<ClientId, std::unordered_map<ClientId, uint32_t>> indices;
    std::map<ClientId, std::unordered_set<ClientId>> served;  // per source: the receivers in its `serve`
    auto indexIn = [&](ClientId owner, ClientId peer) {
        SharedStatePlan &plan = plans[owner];
        auto [slot, added] = indices[owner].try_emplace(peer, static_cast<uint32_t>(plan.peers.size()));
        if (!added) return slot->second;
        plan.peers.push_back(memberOf(peer));
        return slot->second;
    };
    for (auto &[receiver, fetches] : e.receive) {
        auto &needs = needsOf[receiver];
        for (auto &f : fetches) {
            ChunkFetch cf;
            cf.entry = f.entry;
            cf.chunks = f.chunks;
            cf.digests = f.digests;
            needs.push_back(std::set<ClientId>(f.sources.begin(), f.sources.end()));
            for (ClientId source : f.sources) {
                cf.sources.push_back(indexIn(receiver, source));
                const uint32_t r = indexIn(source, receiver);
                if (served[source].insert(receiver).second) plans[source].serve.push_back(r);
            }
            plans[receiver].receive.push_back(std::move(cf));
        }
    }
    return plans;
}

} // namespace

void Membership::onSharedStateSync(Actions &out, Peer &p, const SharedStateSync &m) {
    auto &round = syncRounds_[p.group];
    if (round.seq != 0 || round.described.count(p.id)) return kick(out, p.id, "started a shared-state sync twice");
    for (auto &e : m.entries) {
        const auto dtype = static_cast<pcclDataType_t>(e.dtype);
        const size_t esize = dataTypeSize(dtype);
        const bool sane = esize != 0 && e.count <= (uint64_t{1} << 56) / esize &&
                          e.chunks.size() == shared_state::chunkCount(e.count * esize) &&
                          e.digest == shared_state::combineChunks(e.chunks);
        if (!sane) {
            if (round.described.empty() && round.seq == 0) syncRounds_.erase(p.group);
            return kick(out, p.id, "malformed shared-state description of entry '" + e.name + "'");
        }
    }
    if (round.described.empty()) round.sinceMs = now_;
    round.described[p.id] = m;
    maybeRunSync(out, p.group);
    settleNoOpVotes(out);  // this peer may now block a vote that cannot complete
    failMisorderedCalls(out);
}

void Membership::maybeRunSync(Actions &out, uint32_t group) {
    auto it = syncRounds_.find(group);
    if (it == syncRounds_.end() || it->second.seq != 0) return;
    if (it->second.described.empty()) {
        syncRounds_.erase(it);
        return;
    }
    const auto &ring = rings_[group];
    if (it->second.described.size() < ring.size()) return;  // O(1) per description until the last one
    for (ClientId id : ring)
        if (!it->second.described.count(id)) return;
    auto described = std::move(it->second.described);
    syncRounds_.erase(it);
    std::optional<uint64_t> last;
    if (auto lr = lastRevision_.find(group); lr != lastRevision_.end()) last = lr->second;
    const ElectionOutcome e = electSharedState(described, last);

    for (auto &[id, why] : e.usageErrors)
        send(out, id, SharedStateAborted{0, toWire(pcclInvalidUsage), why, {}});
    std::vector<ClientId> participants;
    for (auto &[id, d] : described)
        if (!e.removed.count(id) && !e.usageErrors.count(id)) participants.push_back(id);
    if (!e.noStateReason.empty()) {
        for (ClientId id : participants)
            send(out, id, SharedStateAborted{0, toWire(pcclNoSharedStateAvailable), e.noStateReason, {}});
    } else if (!participants.empty()) {
        SyncRound round;
        round.seq = nextSeq_++;
        round.commencedMs = now_;
        round.revision = e.revision;
        round.participants.insert(participants.begin(), participants.end());
        auto memberOf = [&](ClientId id) { return RingMember{peers_.at(id).uuid, peers_.at(id).dataAddr}; };
        const auto plans = planRound(e, round.seq, participants, memberOf, round.needs);
        for (auto &[id, plan] : plans) send(out, id, plan);
        syncRounds_[group] = std::move(round);
    }
    for (auto &[id, why] : e.removed)
        if (peers_.count(id)) kick(out, id, why);
}

void Membership::onSharedStateDone(Actions &out, Peer &p, const SharedStateDone &m) {
    auto it = syncRounds_.find(p.group);
    if (it == syncRounds_.end() || it->second.seq != m.seq || !it->second.participants.count(p.id)) return;
    if (!m.ok)
        return abortSync(out, p.group,
                         describe(p) + " reported during shared-state sync revision " +
                             std::to_string(it->second.revision) + ": " + m.error,
                         {},
                         failureFromWire(m.result) == pcclTimeout ? pcclTimeout : pcclRankConnectionLost);
    it->second.done.insert(p.id);
    maybeCommitSync(out, p.group);
}

void Membership::maybeCommitSync(Actions &out, uint32_t group) {
    auto it = syncRounds_.find(group);
    if (it == syncRounds_.end() || it->second.seq == 0) return;
    auto &round = it->second;
    if (round.done.size() < round.participants.size()) return;  // O(1) per report until the last one
    for (ClientId id : round.participants)
        if (!round.done.count(id)) return;
    countCollective("shared_state_sync", pcclSuccess, round.commencedMs);
    for (ClientId id : round.participants) send(out, id, SharedStateCommitted{round.seq, round.revision});
    lastRevision_[group] = round.revision;
    syncRounds_.erase(it);
}

// A participant of a running round was removed. A lost receiver only leaves the round; a lost
// source is reported to the receivers, which fetch from the others, unless one of them then
// has no source left for something it needs: only then does the round fail.
void Membership::onSyncParticipantLost(Actions &out, uint32_t group, ClientId id, const Uuid &uuid,
                                       const std::string &reason) {
    auto &round = syncRounds_.at(group);
    round.participants.erase(id);
    round.done.erase(id);
    round.needs.erase(id);
    bool stranded = false;
    for (auto &[receiver, needs] : round.needs)
        for (auto &sources : needs)
            if (sources.erase(id) && sources.empty()) stranded = true;
    if (stranded) return abortSync(out, group, reason + ", and a receiver has no other source", {uuid});
    for (auto &[receiver, needs] : round.needs)
        if (!round.done.count(receiver)) send(out, receiver, SharedStateSourceLost{round.seq, uuid});
    maybeCommitSync(out, group);
}

void Membership::abortSync(Actions &out, uint32_t group, const std::string &reason, const std::vector<Uuid> &lost,
                           pcclResult_t result) {
    auto it = syncRounds_.find(group);
    if (it == syncRounds_.end()) return;
    const SyncRound round = std::move(it->second);
    syncRounds_.erase(it);
    countCollective("shared_state_sync", result);
    record("collective", "shared-state sync of group " + std::to_string(group) + " failed: " + reason);
    for (ClientId id : round.participants)
        if (peers_.count(id))
            send(out, id, SharedStateAborted{round.seq, toWire(result), reason, lost});
}
} // namespace pccl::master
