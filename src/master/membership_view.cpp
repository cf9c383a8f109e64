// Membership's counters, event log and view(): what the status page and metrics show.
#include "master/membership.h"

#include <algorithm>

namespace pccl::master {

using namespace protocol;

namespace {

constexpr size_t kMaxReportedLinks = 4096;  // links kept from one StatsReport

// The loss reason of a removed peer, from removePeer's reason text ("left", "lost (...)",
// "kicked: ...": see kick() and its callers).
std::string lossReason(const std::string &reason) {
    auto has = [&](const char *s) { return reason.find(s) != std::string::npos; };
    if (reason == "left") return "left";
    if (reason.rfind("lost (", 0) == 0) return "crash";
    if (has("no heartbeat")) return "heartbeat";
    if (has("did not take part in") || has("did not report its links")) return "vote_timeout";
    if (has("could not link")) return "link_failure";
    if (has("shared state")) return "shared_state";
    return "protocol";
}

const char *resultName(pcclResult_t result) {
    switch (result) {
    case pcclSuccess: return "completed";
    case pcclMismatch: return "mismatched";
    case pcclTimeout: return "timed_out";
    default: return "aborted";
    }
}

} // namespace

void Membership::note(const char *kind, std::string line) {
    record(kind, line);
    events_.push_back(std::move(line));
}

void Membership::record(const char *kind, std::string line) {
    eventLog_.push_back(RunEvent{now_, kind, std::move(line)});
    while (eventLog_.size() > kEventLogSize) eventLog_.pop_front();
}

void Membership::countLoss(const std::string &reason) { ++counters_.losses[lossReason(reason)]; }

// commencedMs is used for a completed one only (its duration: commence to commit).
void Membership::countCollective(const char *kind, pcclResult_t result, std::optional<uint64_t> commencedMs) {
    ++counters_.collectives[{kind, resultName(result)}];
    if (result == pcclSuccess && commencedMs)
        counters_.durations[kind].observe(static_cast<double>(now_ - *commencedMs) / 1000.0);
}

// Only admitted peers report (dispatch kicks others); the latest report replaces the previous one.
void Membership::on(Actions &, Peer &p, const StatsReport &m) {
    p.stats = m;
    if (p.stats->links.size() > kMaxReportedLinks) p.stats->links.resize(kMaxReportedLinks);
    p.statsMs = now_;
    ++counters_.statsReports;
}

PeerView Membership::viewOf(const Peer &p) const {
    PeerView pv;
    pv.address = p.remote.str();
    pv.dataAddress = p.dataAddr.str();
    pv.uuid = p.uuid.str();
    pv.group = p.group;
    const bool voting = p.votedTopology || p.votedPending || p.votedOptimize;
    pv.state = p.state == State::Pending     ? "pending"
               : p.state == State::Rejoining ? "rejoining"
               : voting                      ? "voting"
                                             : "accepted";
    pv.activity = activityOf(p);
    pv.connectedMs = p.connectedMs;
    pv.joinedMs = p.joinedMs;
    pv.lastSeenMs = p.lastSeenMs;
    pv.stats = p.stats;
    pv.statsMs = p.statsMs;
    if (auto ring = rings_.find(p.group); ring != rings_.end()) {
        auto at = std::find(ring->second.begin(), ring->second.end(), p.id);
        if (at != ring->second.end()) pv.rank = at - ring->second.begin();
    }
    return pv;
}

// Links: measured ones between present peers, merged with what senders report.
std::vector<LinkView> Membership::viewLinks(const std::map<Uuid, std::string> &names) const {
    std::map<std::pair<std::string, std::string>, LinkView> links;
    for (auto &[pair, rate] : bandwidth_) {
        auto from = names.find(pair.first), to = names.find(pair.second);
        if (from == names.end() || to == names.end()) continue;
        auto &l = links[{from->second, to->second}];
        l.probeBytesPerSecond = rate;
    }
    for (auto &[id, p] : peers_) {
        auto self = names.find(p.uuid);
        if (!p.stats || self == names.end()) continue;
        for (auto &r : p.stats->links) {
            auto to = names.find(r.to);
            if (to != names.end()) links[{self->second, to->second}].liveBytesPerSecond = r.bytes_per_second;
        }
    }
    std::vector<LinkView> out;
    for (auto &[key, l] : links) {
        out.push_back(l);
        out.back().from = key.first;
        out.back().to = key.second;
    }
    return out;
}

std::vector<CollectiveView> Membership::viewInFlight() const {
    std::vector<CollectiveView> out;
    auto members = [&](uint32_t group) { return rings_.count(group) ? rings_.at(group).size() : 0; };
    for (auto &[key, c] : collectives_)
        out.push_back({collectiveMetricName(c.kind()), key.first, key.second, c.seq, c.seq ? "running" : "starting",
                       c.seq ? c.participants.size() : members(key.first), c.inited.size(), c.done.size(),
                       c.seq ? c.commencedMs : c.sinceMs});
    for (auto &[group, r] : syncRounds_)
        out.push_back({"shared_state_sync", group, 0, r.seq, r.seq ? "running" : "starting",
                       r.seq ? r.participants.size() : members(group), r.described.size(), r.done.size(),
                       r.seq ? r.commencedMs : r.sinceMs});
    return out;
}

RunView Membership::view() const {
    RunView v;
    v.nowMs = now_;
    v.epoch = epoch_;
    v.counters = counters_;
    v.events.assign(eventLog_.begin(), eventLog_.end());
    v.revisions = lastRevision_;
    std::map<Uuid, std::string> names;
    for (auto &[id, p] : peers_) {
        if (p.state == State::Connected) {
            ++v.connecting;
            continue;
        }
        v.peers.push_back(viewOf(p));
        names[p.uuid] = v.peers.back().uuid;
    }
    for (auto &[group, ring] : rings_)
        for (ClientId id : ring) v.rings[group].push_back(peers_.at(id).uuid.str());
    v.links = viewLinks(names);
    v.inFlight = viewInFlight();
    return v;
}

} // namespace pccl::master
