// Links rounds: after an admission (or a rewired ring) every accepted peer links to its ring
// successor and reports LinksReady; when all have reported, TopologyDone tells them the outcome.
// A joiner whose links fail is removed alone and the round runs again without it, so that one
// bad joiner (a dead data port, a peer that gave up) cannot fail the admission of the others.
#include <algorithm>
#include <map>
#include <utility>

#include "master/membership.h"

namespace pccl::master {

using namespace protocol;

void Membership::startLinksRound(Actions &out) {
    ++epoch_;
    topologySince_.reset();
    linksSince_ = now_;
    linksError_.clear();
    linksRound_.clear();
    std::map<uint32_t, TopologyUpdate> updates;  // built once per group, not once per peer
    for (auto &[id, p] : peers_) {
        if (p.state != State::Accepted) continue;
        p.votedTopology = false;
        linksWaiting_.insert(id);
        linksRound_.insert(id);
        sendPeerKeys(out, p);
        auto u = updates.find(p.group);
        if (u == updates.end()) u = updates.emplace(p.group, TopologyUpdate{epoch_, ringOf(p.group), worldFor(p.group)}).first;
        send(out, id, u->second);
    }
}

void Membership::onLinksReady(Actions &out, Peer &p, const LinksReady &m) {
    if (m.epoch != epoch_ || !linksWaiting_.count(p.id)) return;  // stale round
    linksWaiting_.erase(p.id);
    if (!m.ok) onLinkFailure(out, p, m);  // may remove p
    if (!linksWaiting_.empty()) return;
    finishLinksRound(out);
    // Peers that arrived during the round, with nobody left to vote them in.
    maybeFinishVotes(out);
}

void Membership::onLinkFailure(Actions &out, Peer &p, const LinksReady &m) {
    const bool namedJoiner = !m.failed_peer.isNil() && linksJoiners_.count(m.failed_peer);
    if (!namedJoiner && !linksJoiners_.count(p.uuid)) {
        // Two peers that were running already: the round fails for everyone, as before.
        if (linksError_.empty()) linksError_ = describe(p) + ": " + m.error;
        return;
    }
    linksRetry_ = true;
    if (!namedJoiner)
        return kick(out, p.id, "could not link to its ring successor in the admission round: " + m.error);
    auto it = byUuid_.find(m.failed_peer);
    if (it == byUuid_.end()) return;  // already gone
    kick(out, it->second, "its ring predecessor " + describe(p) + " could not link to it in the admission round: " + m.error);
}

void Membership::finishLinksRound(Actions &out) {
    if (std::exchange(linksRetry_, false) && linksError_.empty() && !acceptedIds().empty()) {
        note("topology", "admission round runs again without the joiner(s) whose links failed");
        startLinksRound(out);
        return;
    }
    linksJoiners_.clear();
    for (ClientId id : linksRound_)
        if (peers_.count(id)) send(out, id, TopologyDone{epoch_, linksError_.empty(), linksError_});
    linksRound_.clear();
    // An optimize vote that rewired the ring answers once the new links are up.
    for (ClientId id : std::exchange(optimizeAnswer_, {}))
        if (peers_.count(id)) send(out, id, OptimizeTopologyResult{linksError_.empty(), linksError_});
}

} // namespace pccl::master
