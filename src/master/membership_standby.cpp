// Membership: standby masters (docs/master_recovery.md, "Standby masters"). Who leads is decided
// outside (etcd, master/etcd_election.h); this file only applies the decision.
#include <utility>

#include "master/membership.h"
#include "protocol/wire_result.h"

namespace pccl::master {

using namespace protocol;

namespace {

std::string tryLeader(const std::string &leaderAddress) {
    return leaderAddress.empty() ? "no leader is known yet; try the other masters" : "try " + leaderAddress;
}

} // namespace

void Membership::refuseNotLeader(Actions &out, Peer &p) {
    reject(out, p.id, pcclMasterConnectionFailed, "not the leader, " + tryLeader(leaderAddress_), true,
           "not the leader");
}

Actions Membership::setLeader(bool leader, uint64_t epoch, const std::string &leaderAddress) {
    Actions out;
    if (leader) {
        if (leading_) return out;
        // A follower registers nobody: the run starts from the peers that come (a recovery when
        // they report an earlier master), under the election's epoch.
        leading_ = true;
        masterEpoch_ = epoch;
        leaderAddress_.clear();
        note("master", "became the leader (epoch " + std::to_string(epoch) + ")");
        return out;
    }
    const bool changed = leading_ || leaderAddress != leaderAddress_;
    if (!leading_) {
        leaderAddress_ = leaderAddress;
        if (changed && !leaderAddress.empty()) note("master", "following the leader at " + leaderAddress);
        return out;
    }
    const std::string why = "this master (epoch " + std::to_string(masterEpoch_) + ") is not the leader any more, " +
                            tryLeader(leaderAddress);
    for (auto &[id, p] : peers_) {
        reject(out, id, pcclMasterConnectionFailed, why, true, "stepped down");
        out.back().unregistered = p.state == State::Connected;
    }
    // Forget the run: the next leader rebuilds it from the peers, and this master, should it
    // lead again, starts afresh under a newer epoch.
    Membership follower(options_);
    follower.leading_ = false;
    follower.leaderAddress_ = leaderAddress;
    follower.now_ = now_;
    follower.lastTick_ = lastTick_;
    follower.counters_ = counters_;
    follower.eventLog_ = std::move(eventLog_);
    follower.events_ = std::move(events_);
    *this = std::move(follower);
    note("master", "stepped down: " + why + " (" + std::to_string(out.size()) + " connection(s) sent elsewhere)");
    return out;
}

} // namespace pccl::master
