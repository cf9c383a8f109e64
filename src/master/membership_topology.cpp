// Membership: the ring order. pcclOptimizeTopology measures every group's links (BandwidthProbe:
// every peer streams to every other at once for one window), solves the ring that maximises
// the slowest hop (topology_solver.h) and applies it with a links round; admissions insert
// newcomers where they cost least instead of resetting the order.
#include <algorithm>
#include <cmath>

#include "master/membership.h"
#include "master/topology_solver.h"

namespace pccl::master {

using namespace protocol;

namespace {

constexpr uint64_t kProbeBudgetMs = 2000;   // one measurement round: every link at once, this long

std::string rate(double bytesPerSecond) {
    return std::to_string(static_cast<long long>(std::llround(bytesPerSecond * 8 / 1e6))) + " Mbit/s";
}

} // namespace

namespace {

// The measured links among `uuids` (indices into it), read per source from the measurements
// (sorted by source): O(n log M + the links out of these peers), not n^2 lookups.
LinkMap linksAmong(const std::map<std::pair<Uuid, Uuid>, double> &bandwidth, const std::vector<Uuid> &uuids) {
    std::map<Uuid, size_t> index;
    for (size_t i = 0; i < uuids.size(); ++i) index.emplace(uuids[i], i);
    LinkMap links;
    for (size_t i = 0; i < uuids.size(); ++i)
        for (auto it = bandwidth.lower_bound({uuids[i], Uuid{}}); it != bandwidth.end() && it->first.first == uuids[i]; ++it)
            if (auto to = index.find(it->first.second); to != index.end() && to->second != i)
                links[{i, to->second}] = it->second;
    return links;
}

} // namespace

std::vector<std::vector<double>> Membership::bandwidthMatrix(const std::vector<ClientId> &ids) const {
    std::vector<std::vector<double>> bw(ids.size(), std::vector<double>(ids.size(), 0));
    std::vector<Uuid> uuids;
    for (ClientId id : ids) uuids.push_back(peers_.at(id).uuid);
    for (auto &[ij, x] : linksAmong(bandwidth_, uuids)) bw[ij.first][ij.second] = x;
    return bw;
}

void Membership::startProbe(Actions &out, const std::vector<ClientId> &voters) {
    ProbeRound round;
    round.round = ++probeRounds_;
    round.voters = voters;
    for (auto &[group, ids] : rings_) {
        if (ids.size() < 3) continue;  // one ring order only: nothing to choose
        BandwidthProbe probe{round.round, nextSeq_++, ringOf(group), static_cast<uint32_t>(kProbeBudgetMs)};
        for (ClientId id : ids) {
            send(out, id, probe);
            round.waiting.insert(id);
        }
        round.groups.insert(group);
    }
    if (round.groups.empty()) {
        for (ClientId id : voters) send(out, id, OptimizeTopologyResult{true, ""});
        return;
    }
    round.deadlineMs = now_ + kProbeBudgetMs + kProbeReportGraceMs;  // every group probes for the whole budget
    probe_ = std::move(round);
}

void Membership::onBandwidthReport(Actions &out, Peer &p, const BandwidthReport &m) {
    if (!probe_ || m.round != probe_->round || !probe_->waiting.count(p.id)) return;  // late or foreign
    if (m.from.size() != m.bytes_per_s.size()) return kick(out, p.id, "malformed bandwidth report");
    for (size_t i = 0; i < m.from.size(); ++i)
        if (m.from[i] != p.uuid) bandwidth_[{m.from[i], p.uuid}] = static_cast<double>(m.bytes_per_s[i]);
    probe_->waiting.erase(p.id);
    if (probe_->waiting.empty()) finishProbe(out);
}

void Membership::finishProbe(Actions &out) {
    ProbeRound round = std::move(*probe_);
    probe_.reset();
    bool changed = false;
    for (uint32_t group : round.groups) {
        auto it = rings_.find(group);
        if (it == rings_.end() || it->second.size() < 3) continue;
        std::vector<ClientId> &ids = it->second;
        const auto bw = bandwidthMatrix(ids);
        std::string links;
        for (size_t i = 0; i < ids.size(); ++i)
            for (size_t j = 0; j < ids.size(); ++j)
                if (i != j)
                    links += (links.empty() ? "" : ", ") + peers_.at(ids[i]).uuid.shortStr() + "->" +
                             peers_.at(ids[j]).uuid.shortStr() + " " + rate(bw[i][j]);
        note("topology", "links of group " + std::to_string(group) + " measured: " + links);
        std::vector<size_t> current(ids.size());
        for (size_t i = 0; i < current.size(); ++i) current[i] = i;
        const double before = ringBottleneck(bw, current);
        const RingSolution best = solveRing(bw, std::chrono::milliseconds(200));
        if (!(best.bottleneck > before)) continue;  // keep a ring that is as good: no needless rewiring
        std::vector<ClientId> reordered;
        for (size_t i : best.order) reordered.push_back(ids[i]);
        ids = std::move(reordered);
        changed = true;
        note("topology", "ring of group " + std::to_string(group) + " reordered: slowest hop " + rate(before) + " -> " +
                          rate(best.bottleneck));
    }
    std::vector<ClientId> voters;
    for (ClientId id : round.voters)
        if (peers_.count(id)) voters.push_back(id);
    if (changed && linksWaiting_.empty()) {
        optimizeAnswer_ = voters;
        startLinksRound(out);
        return;
    }
    // Unchanged, or an admission round is already rewiring (the next collective connects to the
    // new successor on demand).
    for (ClientId id : voters) send(out, id, OptimizeTopologyResult{true, ""});
}

void Membership::learnFromTraffic(const Collective &c) {
    // A pipelined ring moves at its slowest hop, so a hop's rate in an all-reduce is only a lower
    // bound of that link: it raises what is known, never lowers it.
    const size_t n = c.participants.size();
    for (size_t i = 0; i < n; ++i) {
        auto rate = c.sendRates.find(c.participants[i]);
        if (rate == c.sendRates.end()) continue;
        auto from = peers_.find(c.participants[i]), to = peers_.find(c.participants[(i + 1) % n]);
        if (from == peers_.end() || to == peers_.end()) continue;
        double &known = bandwidth_[{from->second.uuid, to->second.uuid}];
        known = std::max(known, static_cast<double>(rate->second));
    }
}

void Membership::placeJoiners(uint32_t group, const std::vector<ClientId> &joiners) {
    auto &ring = rings_[group];
    std::vector<ClientId> all = ring;
    all.insert(all.end(), joiners.begin(), joiners.end());
    // Sparse: a run of N peers knows O(N) links (its ring hops), a matrix would hold N^2.
    std::vector<Uuid> uuids;
    for (ClientId id : all) uuids.push_back(peers_.at(id).uuid);
    const LinkMap links = linksAmong(bandwidth_, uuids);
    const bool measured = std::any_of(links.begin(), links.end(), [](auto &l) { return l.second > 0; });
    if (!measured || ring.size() < 2) {  // nothing known: append in arrival order
        ring = std::move(all);
        return;
    }
    std::vector<size_t> current(ring.size()), incoming;
    for (size_t i = 0; i < ring.size(); ++i) current[i] = i;
    for (size_t j = ring.size(); j < all.size(); ++j) incoming.push_back(j);
    std::vector<ClientId> placed;
    for (size_t i : insertJoiners(links, all.size(), current, incoming)) placed.push_back(all[i]);
    ring = std::move(placed);
}

} // namespace pccl::master
