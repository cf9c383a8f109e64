// Membership: a topology or peers-pending vote with nobody pending is answered at once when the
// peers that did not vote wait for the voters in a collective (issue 16, the join race).
#include "support/membership_driver.h"

using namespace pccl::testing;

namespace {

SharedStateSync emptySync(uint64_t revision) {
    SharedStateSync s;
    s.revision = revision;
    return s;
}

} // namespace

TEST_CASE("votes: a topology vote is answered at once when the only non-voter waits for the voter in an all-reduce",
          "[master][membership][vote]") {
    Cluster c;
    acceptPeers(c, 2);
    CHECK(c.m.onMessage(1, init(5)).empty());  // peer 1 waits for peer 2 in tag 5
    auto out = c.m.onMessage(2, VoteUpdateTopology{});
    auto done = sent<TopologyDone>(out, 2);
    REQUIRE(done.size() == 1);
    CHECK(done[0].ok);
    CHECK(sent<TopologyDone>(out, 1).empty());
    CHECK(sent<TopologyUpdate>(out, 1).empty());  // no links round: nothing changed
    // Peer 2 now starts tag 5 too: it commences for both.
    out = c.m.onMessage(2, init(5));
    CHECK(sent<CollectiveCommence>(out, 1).size() == 1);
    CHECK(sent<CollectiveCommence>(out, 2).size() == 1);
}

TEST_CASE("votes: a peers-pending vote is answered 'nobody' at once when the non-voter waits in an all-reduce",
          "[master][membership][vote]") {
    Cluster c;
    acceptPeers(c, 3);
    c.m.onMessage(1, init(9));
    c.m.onMessage(2, VotePeersPending{});
    auto out = c.m.onMessage(3, VotePeersPending{});  // peer 1 waits for both voters in tag 9
    for (ClientId v : {ClientId{2}, ClientId{3}}) {
        auto r = sent<PeersPendingResult>(out, v);
        REQUIRE(r.size() == 1);
        CHECK_FALSE(r[0].pending);
    }
    CHECK(sent<PeersPendingResult>(out, 1).empty());
}

TEST_CASE("votes: the answer comes when the non-voter starts its collective after the vote", "[master][membership][vote]") {
    Cluster c;
    acceptPeers(c, 2);
    CHECK(sent<TopologyDone>(c.m.onMessage(2, VoteUpdateTopology{}), 2).empty());  // peer 1 may still vote
    auto out = c.m.onMessage(1, init(3));
    CHECK(sent<TopologyDone>(out, 2).size() == 1);
}

TEST_CASE("votes: a shared-state sync that waits for the voter settles the vote too", "[master][membership][vote]") {
    Cluster c;
    acceptPeers(c, 2);
    c.m.onMessage(1, emptySync(1));
    auto out = c.m.onMessage(2, VotePeersPending{});
    REQUIRE(sent<PeersPendingResult>(out, 2).size() == 1);
}

TEST_CASE("votes: no early answer while a peer is pending, while a non-voter is idle, or for an optimize vote",
          "[master][membership][vote]") {
    Cluster c;
    acceptPeers(c, 2);
    SECTION("a peer pending: the vote admits it and needs every accepted peer") {
        c.join(3);
        c.m.onMessage(1, init(5));
        auto out = c.m.onMessage(2, VoteUpdateTopology{});
        CHECK(sent<TopologyDone>(out, 2).empty());
        CHECK(sent<TopologyUpdate>(out, 2).empty());
    }
    SECTION("the non-voter is idle: its vote may still come") {
        auto out = c.m.onMessage(2, VoteUpdateTopology{});
        CHECK(sent<TopologyDone>(out, 2).empty());
        out = c.m.onMessage(2, VotePeersPending{});
        CHECK(sent<PeersPendingResult>(out, 2).empty());
    }
    SECTION("the non-voter's collective does not wait for the voter (the voter started it too)") {
        c.m.onMessage(1, init(5, 100));
        c.m.onMessage(2, init(6, 100));
        c.m.onMessage(2, init(5, 100));  // commences tag 5
        auto out = c.m.onMessage(2, VoteUpdateTopology{});
        CHECK(sent<TopologyDone>(out, 2).empty());
    }
    SECTION("an optimize vote measures links: never a no-op") {
        c.m.onMessage(1, init(5));
        auto out = c.m.onMessage(2, VoteOptimizeTopology{});
        CHECK(sent<OptimizeTopologyResult>(out, 2).empty());
        CHECK(sent<BandwidthProbe>(out, 2).empty());
    }
}

TEST_CASE("votes: peers blocked in different calls that wait for each other all fail at once with pcclMismatch",
          "[master][membership][vote][mismatch]") {
    Cluster c;
    acceptPeers(c, 2);
    c.join(3);  // pending: the vote is not a no-op, so it cannot be answered at once
    SECTION("a vote against the await of an all-reduce") {
        c.m.onMessage(1, init(5));
        CHECK(c.m.onMessage(2, VotePeersPending{}).empty());  // peer 1 may still vote: its start may be async
        auto out = c.m.onMessage(1, CollectiveAwait{5});      // now it is blocked too
        auto vf = sent<VoteFailed>(out, 2);
        REQUIRE(vf.size() == 1);
        CHECK(vf[0].vote == static_cast<uint8_t>(VoteKind::PeersPending));
        CHECK(vf[0].result == pcclMismatch);
        CHECK(vf[0].reason.find("misordered") != std::string::npos);
        CHECK(vf[0].reason.find("all-reduce tag 5") != std::string::npos);
        CHECK(vf[0].reason.find("peers-pending vote") != std::string::npos);
        auto ab = sent<CollectiveAborted>(out, 1);
        REQUIRE(ab.size() == 1);
        CHECK(ab[0].tag == 5);
        CHECK(ab[0].seq == 0);
        CHECK(ab[0].result == pcclMismatch);
        CHECK_FALSE(closed(out, 1));  // nobody is removed: the calls fail, the peers stay
        CHECK_FALSE(closed(out, 2));
    }
    SECTION("two different votes") {
        c.m.onMessage(1, VoteOptimizeTopology{});
        auto out = c.m.onMessage(2, VoteUpdateTopology{});
        REQUIRE(sent<VoteFailed>(out, 1).size() == 1);
        REQUIRE(sent<VoteFailed>(out, 2).size() == 1);
        CHECK(sent<VoteFailed>(out, 1)[0].vote == static_cast<uint8_t>(VoteKind::Optimize));
    }
    SECTION("a vote against a shared-state sync") {
        c.m.onMessage(1, emptySync(1));
        auto out = c.m.onMessage(2, VoteUpdateTopology{});
        REQUIRE(sent<VoteFailed>(out, 2).size() == 1);
        auto ab = sent<SharedStateAborted>(out, 1);
        REQUIRE(ab.size() == 1);
        CHECK(ab[0].result == pcclMismatch);
    }
    SECTION("an async start that is not awaited is not a deadlock") {
        c.m.onMessage(1, init(5));
        auto out = c.m.onMessage(2, VoteUpdateTopology{});
        CHECK(sent<VoteFailed>(out, 2).empty());
        CHECK(sent<CollectiveAborted>(out, 1).empty());
    }
}

TEST_CASE("votes: peers awaiting different all-reduce tags are not a misordered loop (other threads may start them)",
          "[master][membership][vote][mismatch]") {
    Cluster c;
    acceptPeers(c, 2);
    c.m.onMessage(1, init(1001));
    c.m.onMessage(2, init(1002));
    c.m.onMessage(1, CollectiveAwait{1001});
    auto out = c.m.onMessage(2, CollectiveAwait{1002});
    CHECK(sent<CollectiveAborted>(out, 1).empty());
    CHECK(sent<CollectiveAborted>(out, 2).empty());
    // The other threads start the tags: both commence.
    out = c.m.onMessage(2, init(1001));
    CHECK(sent<CollectiveCommence>(out, 1).size() == 1);
    out = c.m.onMessage(1, init(1002));
    CHECK(sent<CollectiveCommence>(out, 2).size() == 1);
}
