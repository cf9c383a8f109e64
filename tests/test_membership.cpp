// The master's membership state machine, driven directly with scripted events (no sockets).
#include <catch2/catch.hpp>

#include "support/membership_driver.h"

using namespace pccl;
using namespace pccl::testing;


TEST_CASE("membership: the first peer is admitted at once with a ring of one", "[master]") {
    Cluster c;
    auto out = c.join(1);
    REQUIRE(sent<Welcome>(out, 1).size() == 1);
    auto up = sent<TopologyUpdate>(out, 1);
    REQUIRE(up.size() == 1);
    CHECK(up[0].ring.size() == 1);
    CHECK(up[0].ring[0].data_addr.port == 5000);
    CHECK(up[0].world.global_world_size == 1);
    auto done = c.m.onMessage(1, LinksReady{up[0].epoch, true, ""});
    auto td = sent<TopologyDone>(done, 1);
    REQUIRE(td.size() == 1);
    CHECK(td[0].ok);
    CHECK(c.m.acceptedCount() == 1);
}

TEST_CASE("membership: a second peer waits until every accepted peer votes", "[master]") {
    Cluster c;
    c.firstPeer(1);
    auto out = c.join(2);
    CHECK(sent<Welcome>(out, 2).size() == 1);
    CHECK(sent<TopologyUpdate>(out, 2).empty());
    CHECK(c.m.pendingCount() == 1);

    auto pending = c.m.onMessage(1, VotePeersPending{});
    auto r = sent<PeersPendingResult>(pending, 1);
    REQUIRE(r.size() == 1);
    CHECK(r[0].pending);

    auto vote = c.m.onMessage(1, VoteUpdateTopology{});
    auto up1 = sent<TopologyUpdate>(vote, 1), up2 = sent<TopologyUpdate>(vote, 2);
    REQUIRE(up1.size() == 1);
    REQUIRE(up2.size() == 1);
    CHECK(up1[0].ring.size() == 2);
    CHECK(up1[0].ring == up2[0].ring);
    CHECK(up2[0].world.global_world_size == 2);
    // Nobody is told the round is done before every member linked up.
    auto d1 = c.m.onMessage(1, LinksReady{up1[0].epoch, true, ""});
    CHECK(sent<TopologyDone>(d1, 1).empty());
    auto d2 = c.m.onMessage(2, LinksReady{up1[0].epoch, true, ""});
    CHECK(sent<TopologyDone>(d2, 1).size() == 1);
    CHECK(sent<TopologyDone>(d2, 2).size() == 1);
    CHECK(c.m.acceptedCount() == 2);
    CHECK(c.m.pendingCount() == 0);

    auto again = c.m.onMessage(1, VotePeersPending{});
    CHECK(sent<PeersPendingResult>(again, 1).empty());  // peer 2 has not voted yet
    again = c.m.onMessage(2, VotePeersPending{});
    REQUIRE(sent<PeersPendingResult>(again, 1).size() == 1);
    CHECK_FALSE(sent<PeersPendingResult>(again, 1)[0].pending);
}

TEST_CASE("membership: a failed link makes the whole admission round fail", "[master]") {
    Cluster c;
    c.firstPeer(1);
    c.join(2);
    auto vote = c.m.onMessage(1, VoteUpdateTopology{});
    const uint64_t epoch = sent<TopologyUpdate>(vote, 1)[0].epoch;
    c.m.onMessage(1, LinksReady{epoch, false, "connection refused"});
    auto done = c.m.onMessage(2, LinksReady{epoch, true, ""});
    auto td = sent<TopologyDone>(done, 2);
    REQUIRE(td.size() == 1);
    CHECK_FALSE(td[0].ok);
    CHECK(td[0].error.find("connection refused") != std::string::npos);
}

TEST_CASE("membership: collectives commence when every group member started the tag", "[master]") {
    Cluster c;
    c.firstPeer(1);
    c.join(2);
    c.admitRound({1});
    auto a = c.m.onMessage(1, init(7));
    CHECK(sent<CollectiveCommence>(a, 1).empty());
    auto b = c.m.onMessage(2, init(7));
    auto c1 = sent<CollectiveCommence>(b, 1), c2 = sent<CollectiveCommence>(b, 2);
    REQUIRE(c1.size() == 1);
    REQUIRE(c2.size() == 1);
    CHECK(c1[0].seq == c2[0].seq);
    CHECK(c1[0].seq != 0);
    CHECK(c1[0].ring.size() == 2);

    auto d = c.m.onMessage(1, CollectiveDone{7, c1[0].seq, true, ""});
    CHECK(sent<CollectiveCommitted>(d, 1).empty());
    d = c.m.onMessage(2, CollectiveDone{7, c1[0].seq, true, ""});
    CHECK(sent<CollectiveCommitted>(d, 1).size() == 1);
    CHECK(sent<CollectiveCommitted>(d, 2).size() == 1);

    // The tag can be used again, with a fresh sequence number.
    c.m.onMessage(1, init(7));
    auto again = sent<CollectiveCommence>(c.m.onMessage(2, init(7)), 1);
    REQUIRE(again.size() == 1);
    CHECK(again[0].seq > c1[0].seq);
}

TEST_CASE("membership: concurrent tags are sequenced independently", "[master]") {
    Cluster c;
    c.firstPeer(1);
    c.join(2);
    c.admitRound({1});
    c.m.onMessage(1, init(1));
    c.m.onMessage(1, init(2));
    auto two = sent<CollectiveCommence>(c.m.onMessage(2, init(2)), 2);
    auto one = sent<CollectiveCommence>(c.m.onMessage(2, init(1)), 2);
    REQUIRE(two.size() == 1);
    REQUIRE(one.size() == 1);
    CHECK(two[0].tag == 2);
    CHECK(one[0].tag == 1);
    CHECK(one[0].seq != two[0].seq);
}

TEST_CASE("membership: mismatched descriptions abort the tag on every peer before any data moves", "[master]") {
    Cluster c;
    c.firstPeer(1);
    c.join(2);
    c.admitRound({1});
    c.m.onMessage(1, init(3, 100));
    auto out = c.m.onMessage(2, init(3, 101));
    CHECK(sent<CollectiveCommence>(out, 1).empty());
    auto a1 = sent<CollectiveAborted>(out, 1), a2 = sent<CollectiveAborted>(out, 2);
    REQUIRE(a1.size() == 1);
    REQUIRE(a2.size() == 1);
    CHECK(a1[0].result == pcclMismatch);
    CHECK(a1[0].seq == 0);
    CHECK(a1[0].reason.find("count 100") != std::string::npos);
    CHECK(a1[0].reason.find("count 101") != std::string::npos);
}

TEST_CASE("membership: descriptions that differ only in the segment size abort with pcclMismatch naming both sizes",
          "[master][mismatch]") {
    Cluster c;
    c.firstPeer(1);
    c.join(2);
    c.admitRound({1});
    CollectiveInit fixed = init(3), automatic = init(3);
    fixed.desc.segment_bytes = 65536;
    c.m.onMessage(1, fixed);
    auto out = c.m.onMessage(2, automatic);
    for (ClientId id : {1, 2}) {
        CHECK(sent<CollectiveCommence>(out, id).empty());
        auto aborted = sent<CollectiveAborted>(out, id);
        REQUIRE(aborted.size() == 1);
        CHECK(aborted[0].result == pcclMismatch);
        CHECK(aborted[0].seq == 0);
        CHECK(aborted[0].reason.find("segment 65536 bytes") != std::string::npos);
        CHECK(aborted[0].reason.find("segment auto") != std::string::npos);
        CHECK(aborted[0].reason.find("PCCL_SEGMENT_BYTES must be the same on every peer") != std::string::npos);
    }
    // The same size on both commences.
    CollectiveInit again = init(4);
    again.desc.segment_bytes = 65536;
    c.m.onMessage(1, again);
    CHECK(sent<CollectiveCommence>(c.m.onMessage(2, again), 2).size() == 1);
}

TEST_CASE("membership: a lost peer aborts the running collective on every survivor, world size first", "[master]") {
    Cluster c;
    c.firstPeer(1);
    c.join(2);
    c.admitRound({1});
    c.join(3);
    c.admitRound({1, 2});
    REQUIRE(c.m.acceptedCount() == 3);
    for (ClientId id : {1, 2, 3}) c.m.onMessage(id, init(9));
    auto out = c.m.onDisconnect(3, "connection reset");
    for (ClientId id : {1, 2}) {
        auto ab = sent<CollectiveAborted>(out, id);
        REQUIRE(ab.size() == 1);
        CHECK(ab[0].result == pcclRankConnectionLost);
        CHECK(ab[0].reason.find("tag 9") != std::string::npos);
        // The new world size reaches the survivor before the abort.
        size_t worldAt = SIZE_MAX, abortAt = SIZE_MAX;
        for (size_t i = 0; i < out.size(); ++i) {
            if (out[i].to != id || !out[i].message) continue;
            if (std::holds_alternative<WorldUpdate>(*out[i].message) && worldAt == SIZE_MAX) worldAt = i;
            if (std::holds_alternative<CollectiveAborted>(*out[i].message)) abortAt = i;
        }
        CHECK(worldAt < abortAt);
        CHECK(sent<WorldUpdate>(out, id)[0].world.global_world_size == 2);
    }
    // The retry runs on the ring without the lost peer.
    c.m.onMessage(1, init(9));
    auto com = sent<CollectiveCommence>(c.m.onMessage(2, init(9)), 1);
    REQUIRE(com.size() == 1);
    CHECK(com[0].ring.size() == 2);
}

TEST_CASE("membership: a failure report from one participant aborts the collective for all", "[master]") {
    Cluster c;
    c.firstPeer(1);
    c.join(2);
    c.admitRound({1});
    c.m.onMessage(1, init(4));
    auto seq = sent<CollectiveCommence>(c.m.onMessage(2, init(4)), 1)[0].seq;
    c.m.onMessage(1, CollectiveDone{4, seq, true, ""});
    auto out = c.m.onMessage(2, CollectiveDone{4, seq, false, "link broke"});
    CHECK(sent<CollectiveAborted>(out, 1).size() == 1);
    CHECK(sent<CollectiveAborted>(out, 2).size() == 1);
    CHECK(sent<CollectiveCommitted>(out, 1).empty());
    // A late report for the aborted operation is ignored.
    CHECK(c.m.onMessage(1, CollectiveDone{4, seq, true, ""}).empty());
}

TEST_CASE("membership: a peer lost before starting a tag lets the others run without it", "[master]") {
    Cluster c;
    c.firstPeer(1);
    c.join(2);
    c.admitRound({1});
    c.m.onMessage(1, init(5));
    auto out = c.m.onDisconnect(2, "killed");
    auto com = sent<CollectiveCommence>(out, 1);
    REQUIRE(com.size() == 1);
    CHECK(com[0].ring.size() == 1);
}

TEST_CASE("membership: peer groups have their own rings, collectives and world sizes", "[master]") {
    Cluster c;
    c.firstPeer(1, 0);
    c.join(2, 0);
    c.join(3, 1);
    auto last = c.admitRound({1});
    (void)last;
    REQUIRE(c.m.acceptedCount() == 3);
    // Group 1 has one peer: its collective commences alone.
    auto solo = sent<CollectiveCommence>(c.m.onMessage(3, init(1)), 3);
    REQUIRE(solo.size() == 1);
    CHECK(solo[0].ring.size() == 1);
    c.m.onMessage(1, init(1));
    auto pair = sent<CollectiveCommence>(c.m.onMessage(2, init(1)), 1);
    REQUIRE(pair.size() == 1);
    CHECK(pair[0].ring.size() == 2);
    // World sizes as seen from each group.
    auto out = c.m.onDisconnect(99, "unknown");  // no-op
    CHECK(out.empty());
    c.join(4, 1);
    Actions vote;
    for (ClientId id : {1, 2, 3}) vote = c.m.onMessage(id, VoteUpdateTopology{});
    auto w1 = sent<TopologyUpdate>(vote, 1), w4 = sent<TopologyUpdate>(vote, 4);
    REQUIRE(w1.size() == 1);
    REQUIRE(w4.size() == 1);
    CHECK(w1[0].world.global_world_size == 4);
    CHECK(w1[0].world.group_world_size == 2);
    CHECK(w1[0].world.num_groups == 2);
    CHECK(w1[0].world.largest_group == 2);
    CHECK(w4[0].ring.size() == 2);
}

TEST_CASE("membership: a vote completes when the only missing voter is lost", "[master]") {
    Cluster c;
    c.firstPeer(1);
    c.join(2);
    c.admitRound({1});
    c.m.onMessage(1, VotePeersPending{});
    auto out = c.m.onDisconnect(2, "killed");
    auto r = sent<PeersPendingResult>(out, 1);
    REQUIRE(r.size() == 1);
    CHECK_FALSE(r[0].pending);
}

TEST_CASE("membership: pending peers are admitted at once when the last accepted peer leaves", "[master]") {
    Cluster c;
    c.firstPeer(1);
    c.join(2);
    auto out = c.m.onMessage(1, Leave{});
    CHECK(closed(out, 1));
    auto up = sent<TopologyUpdate>(out, 2);
    REQUIRE(up.size() == 1);
    CHECK(up[0].ring.size() == 1);
}

TEST_CASE("membership: protocol violations close only the offending connection", "[master]") {
    Cluster c;
    c.firstPeer(1);
    SECTION("a message before Hello") {
        c.m.onConnect(2, addr(2));
        auto out = c.m.onMessage(2, VoteUpdateTopology{});
        CHECK(closed(out, 2));
        CHECK(sent<Kicked>(out, 2).size() == 1);
    }
    SECTION("an incompatible protocol version is rejected with a reason") {
        c.m.onConnect(2, addr(2));
        Hello h = hello();
        h.version = 999;
        auto out = c.m.onMessage(2, h);
        CHECK(closed(out, 2));
        auto rej = sent<Reject>(out, 2);
        REQUIRE(rej.size() == 1);
        CHECK(rej[0].reason.find("999") != std::string::npos);
    }
    SECTION("a peer id already in use is rejected") {
        c.m.onConnect(2, addr(2));
        Hello h = hello();
        c.m.onConnect(3, addr(3));
        c.m.onMessage(2, h);
        auto out = c.m.onMessage(3, h);
        CHECK(closed(out, 3));
        REQUIRE(sent<Reject>(out, 3).size() == 1);
        CHECK(sent<Reject>(out, 3)[0].reason.find("in use") != std::string::npos);
        CHECK_FALSE(closed(out, 2));
    }
    SECTION("a pending peer may not start collectives") {
        c.join(2);
        auto out = c.m.onMessage(2, init(1));
        CHECK(closed(out, 2));
    }
    SECTION("starting the same tag twice") {
        c.m.onMessage(1, init(1));
        c.join(2);
        auto out = c.m.onMessage(1, init(1));
        CHECK(closed(out, 1));
        CHECK(sent<Kicked>(out, 1).size() == 1);
    }
    CHECK_FALSE(closed(c.m.onMessage(1, VotePeersPending{}), 1));
}
