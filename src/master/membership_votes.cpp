// Membership: global votes that cannot complete because a peer that has not voted waits for the
// voters in a collective (membership.h, settleNoOpVotes).
#include <algorithm>
#include <optional>
#include <set>

#include "protocol/wire_result.h"

#include "master/membership.h"

namespace pccl::master {

using namespace protocol;

namespace {

// The first peer from `hint` onwards (cyclically, in client id order) for which pred holds; the
// hint moves there. A peer that fails pred is passed again only after the scan wrapped around.
template <class Peers, class Pred>
std::optional<ClientId> findFrom(Peers &peers, ClientId &hint, Pred pred) {
    const auto start = peers.lower_bound(hint);
    for (auto it = start; it != peers.end(); ++it)
        if (pred(it->second)) return hint = it->first;
    for (auto it = peers.begin(); it != start; ++it)
        if (pred(it->second)) return hint = it->first;
    return std::nullopt;
}

} // namespace

std::optional<ClientId> Membership::anyAccepted() {
    return findFrom(peers_, acceptedHint_, [](const Peer &p) { return p.state == State::Accepted; });
}

std::optional<ClientId> Membership::acceptedWithout(bool Peer::*flag) {
    ClientId &hint = notVotedHint_[flag == &Peer::votedTopology ? 0 : flag == &Peer::votedPending ? 1 : 2];
    return findFrom(peers_, hint, [&](const Peer &p) { return p.state == State::Accepted && !(p.*flag); });
}

std::optional<ClientId> Membership::idleAccepted() {
    return findFrom(peers_, idleHint_, [&](const Peer &p) { return p.state == State::Accepted && isIdle(p); });
}

bool Membership::isIdle(const Peer &p) const {
    if (p.votedTopology || p.votedPending || p.votedOptimize) return false;
    if (auto sr = syncRounds_.find(p.group); sr != syncRounds_.end() && sr->second.seq == 0 &&
                                           sr->second.described.count(p.id))
        return false;
    for (auto it = collectives_.lower_bound({p.group, 0}); it != collectives_.end() && it->first.first == p.group; ++it)
        if (it->second.seq == 0 && it->second.inited.count(p.id)) return false;
    return true;
}

bool Membership::blockedOnVoters(ClientId id, const std::vector<ClientId> &voters) const {
    const uint32_t group = peers_.at(id).group;
    auto missing = [&](auto &&joined) {
        return std::any_of(voters.begin(), voters.end(),
                           [&](ClientId v) { return peers_.at(v).group == group && !joined(v); });
    };
    for (auto &[key, c] : collectives_)
        if (key.first == group && c.seq == 0 && c.inited.count(id) &&
            missing([&](ClientId v) { return c.inited.count(v) != 0; }))
            return true;
    if (auto sr = syncRounds_.find(group); sr != syncRounds_.end() && sr->second.seq == 0 &&
                                           sr->second.described.count(id))
        return missing([&](ClientId v) { return sr->second.described.count(v) != 0; });
    return false;
}

void Membership::settleNoOpVotes(Actions &out) {
    // An idle peer has not voted and waits for nobody: no vote can be settled for it.
    if (idleAccepted()) return;
    if (pendingCount() > 0 || !linksWaiting_.empty()) return;
    const auto accepted = acceptedIds();
    auto settle = [&](bool Peer::*flag, auto &&answer) {
        std::vector<ClientId> voters, others;
        for (ClientId id : accepted) (peers_.at(id).*flag ? voters : others).push_back(id);
        if (voters.empty() || others.empty()) return false;
        for (ClientId id : others)
            if (!blockedOnVoters(id, voters)) return false;
        for (ClientId id : voters) {
            peers_.at(id).*flag = false;
            answer(id);
        }
        note("vote", std::to_string(voters.size()) + " peer(s) answered at once in a vote with nobody pending: " +
                          describe(peers_.at(others.front())) + " waits for them in a collective");
        return true;
    };
    if (settle(&Peer::votedTopology, [&](ClientId id) { send(out, id, TopologyDone{epoch_, true, ""}); }))
        topologySince_.reset();
    if (settle(&Peer::votedPending, [&](ClientId id) { send(out, id, PeersPendingResult{false}); }))
        pendingSince_.reset();
}

std::string Membership::blockedIn(const Peer &p) const {
    if (p.votedTopology) return "the topology update vote";
    if (p.votedPending) return "the peers-pending vote";
    if (p.votedOptimize) return "the optimize-topology vote";
    if (auto sr = syncRounds_.find(p.group); sr != syncRounds_.end() && sr->second.seq == 0 &&
                                           sr->second.described.count(p.id))
        return "a shared-state sync (waiting to start)";
    for (auto &[key, c] : collectives_)
        if (key.first == p.group && c.seq == 0 && c.awaiting.count(p.id))
            return c.name(key.second) + " (waiting to start)";
    return "";
}

void Membership::failMisorderedCalls(Actions &out) {
    // A links round or a link measurement still moves on its own.
    if (!linksWaiting_.empty() || probe_) return;
    if (idleAccepted()) return;  // it is blocked in nothing: it may still make the call the others wait for
    const auto accepted = acceptedIds();
    if (accepted.size() < 2) return;
    std::string who;
    std::set<std::string> kinds;  // "a vote", "a collective", "a shared-state sync"
    for (ClientId id : accepted) {
        const std::string in = blockedIn(peers_.at(id));
        if (in.empty()) return;  // this peer may still make the call the others wait for
        kinds.insert(in.find(" tag ") != std::string::npos ? "a collective" : in);  // tags are one kind
        who += (who.empty() ? "" : "; ") + describe(peers_.at(id)) + " is in " + in;
    }
    // Only calls of different kinds: peers awaiting different all-reduce tags may have other
    // threads that still start the tags the others wait for (distinct tags run concurrently).
    if (kinds.size() < 2) return;
    // Every call that all its peers had joined has already completed: what is left waits for a
    // peer that waits elsewhere.
    const std::string reason = "misordered collective calls: each peer waits for another that is in a different "
                               "call, so none can complete (" + who + "). Every peer must make the same collective "
                               "calls in the same order each step: sync the shared state, all-reduce, then vote "
                               "(pcclArePeersPending / pcclUpdateTopology), as in README.md's example";
    note("vote", reason);
    struct Vote {
        bool Peer::*flag;
        VoteKind kind;
        std::optional<uint64_t> *since;
    };
    for (Vote v : {Vote{&Peer::votedTopology, VoteKind::Topology, &topologySince_},
                   Vote{&Peer::votedPending, VoteKind::PeersPending, &pendingSince_},
                   Vote{&Peer::votedOptimize, VoteKind::Optimize, &optimizeSince_}}) {
        for (ClientId id : accepted)
            if (peers_.at(id).*v.flag) {
                peers_.at(id).*v.flag = false;
                send(out, id, VoteFailed{static_cast<uint8_t>(v.kind), toWire(pcclMismatch), reason});
            }
        v.since->reset();
    }
    std::vector<std::pair<uint32_t, uint64_t>> waiting;
    for (auto &[key, c] : collectives_)
        if (c.seq == 0 && !c.awaiting.empty()) waiting.push_back(key);
    for (auto &[group, tag] : waiting) abortCollective(out, group, tag, pcclMismatch, reason);
    for (auto it = syncRounds_.begin(); it != syncRounds_.end();) {
        if (it->second.seq != 0) {
            ++it;
            continue;
        }
        for (auto &[id, described] : it->second.described)
            send(out, id, SharedStateAborted{0, toWire(pcclMismatch), reason, {}});
        countCollective("shared_state_sync", pcclMismatch);
        it = syncRounds_.erase(it);
    }
}

} // namespace pccl::master
