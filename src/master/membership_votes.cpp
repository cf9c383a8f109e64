// Membership: global votes that cannot complete because a peer that has not voted waits for the
// voters in a collective (membership.h, settleNoOpVotes).
#include <algorithm>

#include "master/membership.h"

namespace pccl::master {

using namespace protocol;

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
        events_.push_back(std::to_string(voters.size()) + " peer(s) answered at once in a vote with nobody pending: " +
                          describe(peers_.at(others.front())) + " waits for them in a collective");
        return true;
    };
    if (settle(&Peer::votedTopology, [&](ClientId id) { send(out, id, TopologyDone{epoch_, true, ""}); }))
        topologySince_.reset();
    if (settle(&Peer::votedPending, [&](ClientId id) { send(out, id, PeersPendingResult{false}); }))
        pendingSince_.reset();
}

} // namespace pccl::master
