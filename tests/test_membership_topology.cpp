// The master's side of pcclOptimizeTopology, driven with scripted events: probes go out, reports
// come back, the solved ring is applied with a links round, and it survives a join.
#include <catch2/catch.hpp>

#include "support/membership_driver.h"

using namespace pccl;
using namespace pccl::testing;

namespace {

std::vector<Uuid> ringUuids(const TopologyUpdate &u) {
    std::vector<Uuid> r;
    for (auto &m : u.ring) r.push_back(m.uuid);
    return r;
}

// Every peer reports the rate it received from every other: fast(from, to) ? 100 MB/s : 1 MB/s.
template <class Fast>
Actions reportAll(Cluster &c, const std::map<ClientId, Uuid> &uuids, uint64_t round, Fast fast) {
    Actions last;
    for (auto &[to, toUuid] : uuids) {
        BandwidthReport r{round, {}, {}};
        for (auto &[from, fromUuid] : uuids)
            if (from != to) {
                r.from.push_back(fromUuid);
                r.bytes_per_s.push_back(fast(from, to) ? 100'000'000 : 1'000'000);
            }
        last = c.m.onMessage(to, r);
    }
    return last;
}

} // namespace

TEST_CASE("topology: an optimize vote measures every link, applies the ring with the fastest slowest hop, and "
          "answers once the new links are up", "[master][topology]") {
    Cluster c;
    auto uuids = acceptPeers(c, 4);
    Actions votes;
    for (ClientId id = 1; id <= 4; ++id) votes = c.m.onMessage(id, VoteOptimizeTopology{});
    auto probe = sent<BandwidthProbe>(votes, 1);
    REQUIRE(probe.size() == 1);
    CHECK(probe[0].peers.size() == 4);
    CHECK(probe[0].window_ms <= 2000);  // the whole round (all links at once) stays within 2 s
    for (ClientId id = 2; id <= 4; ++id) CHECK(sent<BandwidthProbe>(votes, id).size() == 1);
    CHECK(sent<OptimizeTopologyResult>(votes, 1).empty());  // not before the measurement
    // The fast ring is 1 -> 3 -> 2 -> 4 -> 1; the current order 1,2,3,4 uses only slow hops.
    auto fast = [](ClientId from, ClientId to) {
        return (from == 1 && to == 3) || (from == 3 && to == 2) || (from == 2 && to == 4) || (from == 4 && to == 1);
    };
    auto out = reportAll(c, uuids, probe[0].round, fast);
    auto up = sent<TopologyUpdate>(out, 1);
    REQUIRE(up.size() == 1);
    CHECK(ringUuids(up[0]) == std::vector<Uuid>{uuids[1], uuids[3], uuids[2], uuids[4]});
    CHECK(sent<OptimizeTopologyResult>(out, 1).empty());
    Actions done;
    for (ClientId id = 1; id <= 4; ++id) done = c.m.onMessage(id, LinksReady{up[0].epoch, true, ""});
    for (ClientId id = 1; id <= 4; ++id) {
        auto r = sent<OptimizeTopologyResult>(done, id);
        REQUIRE(r.size() == 1);
        CHECK(r[0].ok);
    }
    // Collectives now run on the new ring.
    for (ClientId id = 1; id <= 3; ++id) c.m.onMessage(id, init(1));
    auto com = sent<CollectiveCommence>(c.m.onMessage(4, init(1)), 2);
    REQUIRE(com.size() == 1);
    CHECK(com[0].ring[1].uuid == uuids[3]);

    SECTION("a joiner is inserted into the measured ring, which keeps its order") {
        auto joiner = sent<Welcome>(c.join(5), 5)[0].uuid;
        c.admitRound({1, 2, 3, 4});
        // The ring as collectives see it:
        for (ClientId id = 1; id <= 4; ++id) c.m.onMessage(id, init(2));
        auto ring = sent<CollectiveCommence>(c.m.onMessage(5, init(2)), 5);
        REQUIRE(ring.size() == 1);
        std::vector<Uuid> order;
        for (auto &m : ring[0].ring)
            if (m.uuid != joiner) order.push_back(m.uuid);
        // The old members keep their cyclic order 1,3,2,4.
        auto at = std::find(order.begin(), order.end(), uuids[1]) - order.begin();
        std::rotate(order.begin(), order.begin() + at, order.end());
        CHECK(order == std::vector<Uuid>{uuids[1], uuids[3], uuids[2], uuids[4]});
        CHECK(ring[0].ring.size() == 5);
    }
}

TEST_CASE("topology: equal links keep the ring; a missing report ends the round at its deadline", "[master][topology]") {
    Cluster c;
    auto uuids = acceptPeers(c, 3);
    c.m.setTime(1000);
    Actions votes;
    for (ClientId id = 1; id <= 3; ++id) votes = c.m.onMessage(id, VoteOptimizeTopology{});
    auto probe = sent<BandwidthProbe>(votes, 1);
    REQUIRE(probe.size() == 1);
    // Peers 1 and 2 report equal rates; peer 3 never does.
    for (ClientId to : {1, 2}) {
        BandwidthReport r{probe[0].round, {}, {}};
        for (auto &[from, u] : uuids)
            if (from != to) {
                r.from.push_back(u);
                r.bytes_per_s.push_back(5'000'000);
            }
        CHECK(c.m.onMessage(to, r).empty());
    }
    c.m.setTime(1000 + probe[0].window_ms + 2600);
    for (ClientId id = 1; id <= 3; ++id) c.m.onMessage(id, Heartbeat{});  // alive, but 3 never reports
    auto out = c.m.onTick();
    for (ClientId id = 1; id <= 3; ++id) {
        auto r = sent<OptimizeTopologyResult>(out, id);
        REQUIRE(r.size() == 1);
        CHECK(r[0].ok);
    }
    CHECK(sent<TopologyUpdate>(out, 1).empty());  // unchanged: no rewiring
}

TEST_CASE("topology: with fewer than three peers nothing is measured", "[master][topology]") {
    Cluster c;
    acceptPeers(c, 2);
    c.m.onMessage(1, VoteOptimizeTopology{});
    auto out = c.m.onMessage(2, VoteOptimizeTopology{});
    CHECK(sent<BandwidthProbe>(out, 1).empty());
    CHECK(sent<OptimizeTopologyResult>(out, 1).size() == 1);
    CHECK(sent<OptimizeTopologyResult>(out, 2).size() == 1);
}

TEST_CASE("topology: the rates of committed all-reduces refine the known links, so a thin probe does not undo a "
          "good ring", "[master][topology]") {
    Cluster c;
    auto uuids = acceptPeers(c, 3);
    for (ClientId id = 1; id <= 2; ++id) c.m.onMessage(id, init(4));
    auto seq = sent<CollectiveCommence>(c.m.onMessage(3, init(4)), 1);
    REQUIRE(seq.size() == 1);
    Actions out;
    for (ClientId id = 1; id <= 3; ++id) {
        CollectiveDone d{4, seq[0].seq, true, "", 0, 100'000'000};
        out = c.m.onMessage(id, d);
    }
    REQUIRE(sent<CollectiveCommitted>(out, 1).size() == 1);
    // The probe sees only the reverse links (the forward ones got no sample), and slower.
    Actions votes;
    for (ClientId id = 1; id <= 3; ++id) votes = c.m.onMessage(id, VoteOptimizeTopology{});
    auto probe = sent<BandwidthProbe>(votes, 1);
    REQUIRE(probe.size() == 1);
    Actions last;
    for (ClientId to = 1; to <= 3; ++to) {
        const ClientId from = to % 3 + 1;  // 2->1, 3->2, 1->3
        last = c.m.onMessage(to, BandwidthReport{probe[0].round, {uuids[from]}, {50'000'000}});
    }
    CHECK(sent<TopologyUpdate>(last, 1).empty());  // the measured forward ring (100 MB/s) stays
    CHECK(sent<OptimizeTopologyResult>(last, 1).size() == 1);
}
