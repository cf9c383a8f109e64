// Membership: deadlines (docs/design.md, Deadlines): silent connections, late votes, collective
// starts and shared-state syncs, and the restart of every deadline after the master itself
// stalled.
#include <algorithm>

#include "master/membership.h"
#include "protocol/wire_result.h"

namespace pccl::master {

using namespace protocol;

uint64_t Membership::silenceLimitMs(const Peer &p) const {
    if (p.state == State::Connected) return options_.handshakeTimeoutMs;
    return p.heartbeatTimeoutMs ? p.heartbeatTimeoutMs : options_.heartbeatTimeoutMs;
}

void Membership::restartDeadlinesAfterStall(uint64_t gap) {
    auto eaten = [&](uint64_t deadline) { return gap > options_.tickPeriodMs + deadline / 2; };
    size_t restarted = 0;
    for (auto &[id, p] : peers_) {
        if (!eaten(silenceLimitMs(p))) continue;
        p.lastSeenMs = std::max(p.lastSeenMs, now_);
        ++restarted;
    }
    if (options_.voteTimeoutMs != 0 && eaten(options_.voteTimeoutMs)) {
        for (auto *since : {&topologySince_, &pendingSince_, &optimizeSince_})
            if (*since) *since = now_;
        linksSince_ = now_;
        for (auto &[key, c] : collectives_)
            if (c.seq == 0) c.sinceMs = now_;
        for (auto &[group, round] : syncRounds_)
            if (round.seq == 0) round.sinceMs = now_;
    }
    // Reports of a probe round may be waiting unread: they get their grace again.
    if (probe_ && eaten(kProbeReportGraceMs))
        probe_->deadlineMs = std::max(probe_->deadlineMs, now_ + kProbeReportGraceMs);
    if (restarted)
        note("master", "the master did not run for " + std::to_string(gap) + " ms (stopped or suspended); " +
                          std::to_string(restarted) + " heartbeat deadline(s) restarted");
}

Actions Membership::onTick() {
    Actions out;
    if (lastTick_ && now_ > *lastTick_) restartDeadlinesAfterStall(now_ - *lastTick_);
    lastTick_ = now_;
    std::vector<ClientId> silent;
    for (auto &[id, p] : peers_)
        if (now_ > p.lastSeenMs + silenceLimitMs(p)) silent.push_back(id);
    for (ClientId id : silent) {
        auto it = peers_.find(id);
        if (it == peers_.end()) continue;
        if (it->second.state == State::Connected)
            kick(out, id, "no Hello within the handshake deadline of " + std::to_string(options_.handshakeTimeoutMs) + " ms");
        else
            kick(out, id, "no heartbeat for " + std::to_string(now_ - it->second.lastSeenMs) + " ms",
                 "; it was in " + activityOf(it->second));
    }
    if (options_.voteTimeoutMs != 0) settleLateVotes(out);
    if (probe_ && now_ >= probe_->deadlineMs) finishProbe(out);
    if (recoveryDeadline_ && now_ >= *recoveryDeadline_) finishRecovery(out);
    return out;
}

bool Membership::removeLaggards(Actions &out, const std::string &what, const std::string &phase,
                                const std::vector<ClientId> &voters, const std::vector<ClientId> &laggards,
                                std::string *reason) {
    const std::string after = " within " + std::to_string(options_.voteTimeoutMs) + " ms (phase: " + phase + ")";
    if (voters.size() > laggards.size()) {
        for (ClientId id : laggards)
            if (peers_.count(id))
                kick(out, id, "did not take part in " + what + after + " while " + std::to_string(voters.size()) +
                                  " peers waited");
        return true;
    }
    *reason = what + " did not complete" + after + "; still waiting for";
    for (size_t i = 0; i < laggards.size(); ++i) *reason += (i ? ", " : " ") + describe(peers_.at(laggards[i]));
    return false;
}

void Membership::settleLateVotes(Actions &out) {
    settleLateGlobalVotes(out);
    // An admission round whose link reports do not come: a healthy peer answers within its
    // connect timeout, so the silent ones are removed and the round ends without them.
    if (!linksWaiting_.empty() && isLate(linksSince_)) {
        const std::vector<ClientId> silent(linksWaiting_.begin(), linksWaiting_.end());
        for (ClientId id : silent)
            if (peers_.count(id))
                kick(out, id, "did not report its links within " + std::to_string(options_.voteTimeoutMs) +
                                  " ms (phase: admission round, connecting the ring)");
    }
    settleLateStarts(out);
    settleLateSyncs(out);
}

// Global votes over all accepted peers.
void Membership::settleLateGlobalVotes(Actions &out) {
    struct Global {
        std::optional<uint64_t> *since;
        bool Peer::*flag;
        VoteKind kind;
        const char *what;
    };
    for (const Global &v : {Global{&topologySince_, &Peer::votedTopology, VoteKind::Topology, "the topology update vote"},
                            Global{&pendingSince_, &Peer::votedPending, VoteKind::PeersPending, "the peers-pending vote"},
                            Global{&optimizeSince_, &Peer::votedOptimize, VoteKind::Optimize, "the optimize-topology vote"}}) {
        if (!*v.since || !isLate(**v.since)) continue;
        std::vector<ClientId> voters, laggards;
        for (ClientId id : acceptedIds()) (peers_.at(id).*v.flag ? voters : laggards).push_back(id);
        std::string reason;
        if (!laggards.empty() && removeLaggards(out, v.what, "voting", voters, laggards, &reason)) continue;
        for (ClientId id : voters) {
            peers_.at(id).*v.flag = false;
            send(out, id, VoteFailed{static_cast<uint8_t>(v.kind), toWire(pcclTimeout), reason});
        }
        v.since->reset();
    }
}

// The start of collectives: members of the group that have not started the tag.
void Membership::settleLateStarts(Actions &out) {
    std::vector<std::pair<uint32_t, uint64_t>> lateTags;
    for (auto &[key, c] : collectives_)
        if (c.seq == 0 && isLate(c.sinceMs)) lateTags.push_back(key);
    for (auto [group, tag] : lateTags) {
        auto it = collectives_.find({group, tag});
        if (it == collectives_.end() || it->second.seq != 0) continue;
        std::vector<ClientId> voters, laggards;
        for (ClientId id : rings_[group]) (it->second.inited.count(id) ? voters : laggards).push_back(id);
        std::string reason;
        if (removeLaggards(out, it->second.name(tag), "waiting to start", voters, laggards, &reason)) continue;
        abortCollective(out, group, tag, pcclTimeout, reason);
    }
}

// Shared-state syncs still collecting descriptions.
void Membership::settleLateSyncs(Actions &out) {
    std::vector<uint32_t> lateSyncs;
    for (auto &[group, round] : syncRounds_)
        if (round.seq == 0 && isLate(round.sinceMs)) lateSyncs.push_back(group);
    for (uint32_t group : lateSyncs) {
        auto it = syncRounds_.find(group);
        if (it == syncRounds_.end() || it->second.seq != 0) continue;
        std::vector<ClientId> voters, laggards;
        for (ClientId id : rings_[group]) (it->second.described.count(id) ? voters : laggards).push_back(id);
        std::string reason;
        if (removeLaggards(out, "the shared-state sync of group " + std::to_string(group),
                           "waiting to start: collecting the peers' state descriptions", voters, laggards, &reason))
            continue;
        for (ClientId id : voters) send(out, id, SharedStateAborted{0, toWire(pcclTimeout), reason, {}});
        countCollective("shared_state_sync", pcclTimeout);
        syncRounds_.erase(group);
    }
}

} // namespace pccl::master
