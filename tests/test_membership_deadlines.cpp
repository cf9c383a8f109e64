// The master's deadlines, driven with an injected clock: per-peer heartbeat deadlines, votes and
// collective starts that stay open too long, and the timeout kind of a failure report.
#include <catch2/catch.hpp>

#include "support/membership_driver.h"

using namespace pccl;
using namespace pccl::testing;
using pccl::master::MembershipOptions;

namespace {

// A cluster of `n` accepted peers (ids 1..n) whose master settles votes after 1000 ms.
Cluster accepted(size_t n, uint64_t voteTimeoutMs = 1000) {
    Cluster c;
    c.m = Membership(MembershipOptions{5000, voteTimeoutMs});
    acceptPeers(c, n);
    return c;
}

// Heartbeats from everyone at `t`, so that only vote deadlines can fire.
Actions tickAt(Cluster &c, uint64_t t, size_t n) {
    c.m.setTime(t);
    for (ClientId id = 1; id <= n; ++id) c.m.onMessage(id, Heartbeat{});
    return c.m.onTick();
}

bool kicked(const Actions &out, ClientId id) { return !sent<Kicked>(out, id).empty() && closed(out, id); }

SharedStateSync describe(uint64_t revision) { return floatState({1, 2, 3, 4}, revision); }

} // namespace

TEST_CASE("deadlines: a topology vote left open removes the minority that never voted; the rest go on", "[master][deadline]") {
    auto c = accepted(3);
    c.m.setTime(100);
    c.m.onMessage(1, VoteUpdateTopology{});
    c.m.onMessage(2, VoteUpdateTopology{});
    CHECK(tickAt(c, 1000, 2).empty());  // peer 3 stays silent on the vote but heartbeats below
    c.m.onMessage(3, Heartbeat{});
    auto out = tickAt(c, 1101, 3);
    CHECK(kicked(out, 3));
    CHECK(sent<Kicked>(out, 3)[0].reason.find("topology update vote") != std::string::npos);
    // The vote completes without it: a new round on the ring of two.
    auto up = sent<TopologyUpdate>(out, 1);
    REQUIRE(up.size() == 1);
    CHECK(up[0].ring.size() == 2);
    CHECK(c.m.acceptedCount() == 2);
}

TEST_CASE("deadlines: a vote the waiting peers do not win fails their calls with pcclTimeout and removes nobody",
          "[master][deadline]") {
    auto c = accepted(2);
    c.m.setTime(10);
    c.m.onMessage(1, VotePeersPending{});
    auto out = tickAt(c, 1011, 2);
    auto failed = sent<VoteFailed>(out, 1);
    REQUIRE(failed.size() == 1);
    CHECK(failed[0].vote == static_cast<uint8_t>(VoteKind::PeersPending));
    CHECK(failed[0].result == pcclTimeout);
    CHECK(failed[0].reason.find("127.0.0.2") != std::string::npos);  // names the laggard
    CHECK(sent<VoteFailed>(out, 2).empty());
    CHECK(c.m.acceptedCount() == 2);
    // The vote starts afresh: both vote, both get the answer.
    c.m.onMessage(2, VotePeersPending{});
    auto again = c.m.onMessage(1, VotePeersPending{});
    CHECK(sent<PeersPendingResult>(again, 1).size() == 1);
    CHECK(sent<PeersPendingResult>(again, 2).size() == 1);
}

TEST_CASE("deadlines: a tag started by the majority commences without the peer that never starts it", "[master][deadline]") {
    auto c = accepted(3);
    c.m.setTime(0);
    c.m.onMessage(1, init(7));
    c.m.onMessage(2, init(7));
    auto out = tickAt(c, 1000, 3);
    CHECK(kicked(out, 3));
    auto com = sent<CollectiveCommence>(out, 1);
    REQUIRE(com.size() == 1);
    CHECK(com[0].ring.size() == 2);
    CHECK(sent<CollectiveCommence>(out, 2).size() == 1);
}

TEST_CASE("deadlines: a tag started by half of the group fails with pcclTimeout; a later start by all runs",
          "[master][deadline]") {
    auto c = accepted(2);
    c.m.setTime(0);
    c.m.onMessage(1, init(7));
    auto out = tickAt(c, 1000, 2);
    auto ab = sent<CollectiveAborted>(out, 1);
    REQUIRE(ab.size() == 1);
    CHECK(ab[0].result == pcclTimeout);
    CHECK(ab[0].seq == 0);
    CHECK(ab[0].reason.find("all-reduce tag 7") != std::string::npos);
    CHECK(c.m.acceptedCount() == 2);
    c.m.onMessage(1, init(7));
    CHECK(sent<CollectiveCommence>(c.m.onMessage(2, init(7)), 1).size() == 1);
}

TEST_CASE("deadlines: a shared-state sync left half described fails with pcclTimeout", "[master][deadline]") {
    auto c = accepted(2);
    c.m.setTime(0);
    c.m.onMessage(1, describe(1));
    auto out = tickAt(c, 1000, 2);
    auto ab = sent<SharedStateAborted>(out, 1);
    REQUIRE(ab.size() == 1);
    CHECK(ab[0].result == pcclTimeout);
    // A fresh round with both works.
    c.m.onMessage(1, describe(1));
    auto plan = c.m.onMessage(2, describe(1));
    CHECK(sent<SharedStatePlan>(plan, 1).size() == 1);
}

TEST_CASE("deadlines: a vote deadline of 0 waits forever", "[master][deadline]") {
    auto c = accepted(2, 0);
    c.m.onMessage(1, init(3));
    c.m.onMessage(1, VoteOptimizeTopology{});
    CHECK(tickAt(c, 10'000'000, 2).empty());
}

TEST_CASE("deadlines: the heartbeat deadline a peer asks for in its Hello is the one it gets", "[master][deadline]") {
    Cluster c;
    c.m.setTime(0);
    c.m.onConnect(1, addr(1));
    Hello h = hello();
    h.heartbeat_timeout_ms = 300;
    c.m.onMessage(1, h);
    c.join(2);  // the master's default: 5000 ms
    c.m.setTime(301);
    auto out = c.m.onTick();
    CHECK(kicked(out, 1));
    CHECK(sent<Kicked>(out, 1)[0].reason.find("no heartbeat") != std::string::npos);
    CHECK_FALSE(closed(out, 2));
}

TEST_CASE("deadlines: a participant reporting a stalled transfer aborts the operation with pcclTimeout for all",
          "[master][deadline]") {
    auto c = accepted(2);
    c.m.onMessage(1, init(4));
    auto seq = sent<CollectiveCommence>(c.m.onMessage(2, init(4)), 1)[0].seq;
    CollectiveDone stalled{4, seq, false, "no progress for 10000 ms", static_cast<uint8_t>(pcclTimeout)};
    auto out = c.m.onMessage(2, stalled);
    for (ClientId id : {1, 2}) {
        auto ab = sent<CollectiveAborted>(out, id);
        REQUIRE(ab.size() == 1);
        CHECK(ab[0].result == pcclTimeout);
        CHECK(ab[0].reason.find("no progress") != std::string::npos);
    }
    // Any other failure kind a peer claims is reported as a lost connection.
    c.m.onMessage(1, init(5));
    seq = sent<CollectiveCommence>(c.m.onMessage(2, init(5)), 1)[0].seq;
    out = c.m.onMessage(1, CollectiveDone{5, seq, false, "odd", static_cast<uint8_t>(pcclInternalError)});
    CHECK(sent<CollectiveAborted>(out, 2)[0].result == pcclRankConnectionLost);
}

namespace {

// Ticks every 25 ms (the server's period) from `from` to `to` inclusive, with a heartbeat from each
// of `alive` before every tick; returns every action.
Actions tickRegularly(Cluster &c, uint64_t from, uint64_t to, const std::vector<ClientId> &alive) {
    Actions all;
    for (uint64_t t = from; t <= to; t += 25) {
        c.m.setTime(t);
        for (ClientId id : alive) c.m.onMessage(id, Heartbeat{});
        auto out = c.m.onTick();
        all.insert(all.end(), out.begin(), out.end());
    }
    return all;
}

} // namespace

TEST_CASE("deadlines: a master tick that comes long after it was due (the master was stopped) restarts the heartbeat "
          "and vote deadlines instead of removing everyone; real silence afterwards still removes a peer",
          "[master][deadline][stall]") {
    auto c = accepted(3);  // heartbeat deadline 5000 ms, vote deadline 1000 ms
    CHECK(tickRegularly(c, 0, 1000, {1, 2, 3}).empty());
    // Two peers start tag 7 just before the master stops; the third one's start is still unread.
    c.m.onMessage(1, init(7));
    c.m.onMessage(2, init(7));
    // Resumed 10 s later, the first tick runs before any of the messages queued meanwhile.
    c.m.setTime(11000);
    auto out = c.m.onTick();
    for (ClientId id : {1, 2, 3}) {
        CHECK_FALSE(closed(out, id));
        CHECK(sent<CollectiveAborted>(out, id).empty());
    }
    CHECK(c.m.acceptedCount() == 3);
    // Then the queued start arrives: the tag runs with all three.
    auto com = sent<CollectiveCommence>(c.m.onMessage(3, init(7)), 1);
    REQUIRE(com.size() == 1);
    CHECK(com[0].ring.size() == 3);
    // Peer 3 now really goes silent: removed one deadline after the restart, not before.
    CHECK(tickRegularly(c, 11025, 16000, {1, 2}).empty());
    out = tickRegularly(c, 16025, 16100, {1, 2});
    CHECK(kicked(out, 3));
    CHECK_FALSE(closed(out, 1));
    CHECK_FALSE(closed(out, 2));
    CHECK(c.m.acceptedCount() == 2);
}

TEST_CASE("deadlines: a tick late by less than half the heartbeat deadline still removes a peer that was silent past it",
          "[master][deadline][stall]") {
    auto c = accepted(2);
    c.m.setTime(0);
    c.m.onMessage(2, Heartbeat{});
    CHECK(tickRegularly(c, 0, 3000, {1}).empty());
    // 2100 ms late (< 25 + 5000 / 2): peer 2, silent since 0, is past its 5000 ms.
    c.m.setTime(5100);
    c.m.onMessage(1, Heartbeat{});
    auto out = c.m.onTick();
    CHECK(kicked(out, 2));
    CHECK_FALSE(closed(out, 1));
}

TEST_CASE("messages: an all-reduce aborted for a lost peer names the peer, its address, the operation and the phase "
          "it was in; a peer removed for silence is told what it was in",
          "[master][deadline][messages]") {
    auto c = accepted(3);
    c.m.setTime(0);
    c.m.onMessage(1, init(4));
    c.m.onMessage(2, init(4));
    c.m.onMessage(3, init(4));
    // Peer 2 dies while its transfer is under way.
    auto out = c.m.onDisconnect(2, "connection reset");
    auto ab = sent<CollectiveAborted>(out, 1);
    REQUIRE(ab.size() == 1);
    CHECK_THAT(ab[0].reason, Catch::Contains("127.0.0.2") && Catch::Contains("all-reduce tag 4") &&
                                 Catch::Contains("its transfer was under way"));
    // Tag 5 on the two left: peer 3 finishes its part, then falls silent.
    c.m.onMessage(1, init(5));
    const uint64_t seq = sent<CollectiveCommence>(c.m.onMessage(3, init(5)), 1).at(0).seq;
    c.m.onMessage(3, CollectiveDone{5, seq, true, "", 0});
    out = tickRegularly(c, 25, 5100, {1});
    auto kickedWhy = sent<Kicked>(out, 3);
    REQUIRE(kickedWhy.size() == 1);
    CHECK_THAT(kickedWhy[0].reason, Catch::Contains("no heartbeat") &&
                                        Catch::Contains("it was in all-reduce tag 5 (transfer finished, waiting for the commit)"));
    ab = sent<CollectiveAborted>(out, 1);
    REQUIRE(ab.size() == 1);
    CHECK_THAT(ab[0].reason, Catch::Contains("127.0.0.3") && Catch::Contains("all-reduce tag 5") &&
                                 Catch::Contains("it had finished its transfer"));
}
