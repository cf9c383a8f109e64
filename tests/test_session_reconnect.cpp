// The peer's Session survives the loss of its master (docs/master_recovery.md): it reconnects,
// re-registers with what it knows, and re-sends what the new master must hear. Scripted, no sockets.
#include <catch2/catch.hpp>

#include "support/session_driver.h"

using namespace pccl;
using namespace pccl::testing::session;
using pccl::peer::MasterLink;
using pccl::peer::ReconnectMaster;

namespace {

SessionOptions reconnecting(uint64_t timeoutMs = 60000, size_t masters = 2) {
    SessionOptions o = Driver::defaults();
    o.reconnectTimeoutMs = timeoutMs;
    o.masterCount = masters;
    return o;
}

// A connected peer in a ring of three.
Driver connectedPeer(SessionOptions o = reconnecting()) {
    Driver d(std::move(o));
    d.admit(ringWithSelfAt(3, 1), WorldInfo{3, 3, 1, 3});
    return d;
}

Actions welcome(Driver &d, uint64_t masterEpoch) { return d.message(Welcome{kSelf, {}, {}, masterEpoch}); }

Rejoined rebuilt(uint64_t masterEpoch = 2) { return Rejoined{masterEpoch, 1, WorldInfo{3, 3, 1, 3}, ringWithSelfAt(3, 1)}; }

} // namespace

TEST_CASE("session reconnect: a lost master is reconnected with backoff over the addresses while calls wait",
          "[session][reconnect]") {
    Driver d = connectedPeer();
    d.message(Welcome{kSelf, {}, {}, 1});
    auto lost = d.controlClosed("connection reset by peer");
    CHECK(d.s.phase() == Phase::Connected);
    CHECK(d.s.masterLink() == MasterLink::Down);
    CHECK(actionsOf<Complete>(lost).empty());
    CHECK(actionsOf<CloseAllData>(lost).empty());  // the data plane stays up
    auto first = actionsOf<ReconnectMaster>(lost);
    REQUIRE(first.size() == 1);
    CHECK(first[0].address == 0);  // the lost master first: restarted in place
    CHECK(first[0].delayMs == 0);

    // Calls made meanwhile wait, and nothing goes to the (absent) master.
    auto ar = d.startAllReduce(7);
    CHECK(answer(ar.out, ar.id).status.ok());  // started (asynchronous)
    auto wait = d.awaitAllReduce(7);
    auto vote = d.vote(VoteKind::PeersPending);
    CHECK(actionsOf<SendToMaster>(ar.out).empty());
    CHECK(actionsOf<SendToMaster>(wait.out).empty());
    CHECK(actionsOf<SendToMaster>(vote.out).empty());
    CHECK(d.tickAt(d.now + 1000).empty());  // no heartbeat on a closed connection, no failure

    auto again = actionsOf<ReconnectMaster>(d.reconnected(Status{pcclMasterConnectionFailed, "connection refused"}));
    REQUIRE(again.size() == 1);
    CHECK(again[0].address == 1);  // then the next address
    CHECK(again[0].delayMs == 100);

    // Connected: it re-registers with what it knows.
    auto back = d.reconnected();
    CHECK(d.s.masterLink() == MasterLink::Rejoining);
    auto rj = sent<Rejoin>(back);
    REQUIRE(rj.size() == 1);
    CHECK(rj[0].hello.uuid == kSelf);
    CHECK(rj[0].hello.master_epoch == 1);
    CHECK(rj[0].ring == ringWithSelfAt(3, 1));
    REQUIRE(rj[0].ops.size() == 1);
    CHECK(rj[0].ops[0].tag == 7);
    CHECK(rj[0].ops[0].phase == static_cast<uint8_t>(OpPhase::Waiting));
    CHECK(rj[0].ops[0].awaiting);
    // Heartbeats while rejoining, so that the new master does not drop it.
    CHECK(sent<Heartbeat>(d.tickAt(d.now + 1000)).size() == 1);

    welcome(d, 2);
    auto replay = d.message(rebuilt());
    CHECK(d.s.masterLink() == MasterLink::Up);
    auto inits = sent<CollectiveInit>(replay);
    REQUIRE(inits.size() == 1);
    CHECK(inits[0].tag == 7);
    CHECK(inits[0].desc.count == 1000);
    CHECK(sent<CollectiveAwait>(replay).size() == 1);
    CHECK(sent<VotePeersPending>(replay).size() == 1);
    CHECK(d.s.masterEpoch() == 2);

    // The run goes on with the new master.
    auto answered = d.message(PeersPendingResult{false});
    CHECK(answer(answered, vote.id).status.ok());
    CHECK(d.unanswered().size() == 1);  // the await
}

TEST_CASE("session reconnect: an all-reduce that finished while the master was away is reported finished and "
          "completes with the new master's commit", "[session][reconnect]") {
    Driver d = connectedPeer();
    d.commence(7, 40, ringWithSelfAt(3, 1));
    auto wait = d.awaitAllReduce(7);
    d.controlClosed();
    auto fin = d.allReduceFinished(7, 40);
    CHECK(actionsOf<SendToMaster>(fin).empty());  // the CollectiveDone has nowhere to go
    auto rj = sent<Rejoin>(d.reconnected());
    REQUIRE(rj.size() == 1);
    REQUIRE(rj[0].ops.size() == 1);
    CHECK(rj[0].ops[0].seq == 40);
    CHECK(rj[0].ops[0].phase == static_cast<uint8_t>(OpPhase::FinishedOk));
    CHECK(rj[0].max_seq == 40);
    welcome(d, 2);
    auto replay = d.message(rebuilt());
    CHECK(sent<CollectiveInit>(replay).empty());  // commenced: the master resolves it
    auto done = d.message(CollectiveCommitted{7, 40});
    CHECK(answer(done, wait.id).status.ok());
    // The commit is remembered for the next master.
    d.controlClosed();
    auto next = sent<Rejoin>(d.reconnected());
    REQUIRE(next.size() == 1);
    CHECK(std::find(next[0].committed.begin(), next[0].committed.end(), 40u) != next[0].committed.end());
}

TEST_CASE("session reconnect: with no master back within the reconnect timeout every call fails with "
          "pcclMasterConnectionLost, not before", "[session][reconnect]") {
    Driver d = connectedPeer(reconnecting(10000, 1));
    d.startAllReduce(7);
    auto wait = d.awaitAllReduce(7);
    const uint64_t lostAt = d.now;
    d.controlClosed("connection reset by peer");
    for (uint64_t t = 1000; t < 10000; t += 1000) {
        d.reconnected(Status{pcclMasterConnectionFailed, "connection refused"});
        CHECK(actionsOf<Complete>(d.tickAt(lostAt + t)).empty());
    }
    auto gaveUp = d.tickAt(lostAt + 10000);
    auto c = answer(gaveUp, wait.id);
    CHECK(c.status.code() == pcclMasterConnectionLost);
    CHECK(contains(c.status.message(), "gave up on the master"));
    CHECK(contains(c.status.message(), "connection refused"));
    CHECK(d.s.phase() == Phase::Dead);
}

TEST_CASE("session reconnect: a silent master is waited for on its open connection, up to the reconnect timeout",
          "[session][reconnect]") {
    Driver d = connectedPeer(reconnecting(20000, 1));
    auto wait = d.vote(VoteKind::PeersPending);
    const uint64_t t0 = d.now;
    for (uint64_t t = 1000; t <= 15000; t += 1000) {
        auto out = d.tickAt(t0 + t);
        CHECK(actionsOf<Complete>(out).empty());
        CHECK(actionsOf<DisconnectMaster>(out).empty());  // a stopped master keeps its connection
        CHECK(sent<Heartbeat>(out).size() == 1);
    }
    // It answers again (SIGCONT): nothing was lost.
    d.message(HeartbeatAck{});
    CHECK(answer(d.message(PeersPendingResult{true}), wait.id).status.ok());
    SECTION("silent past the reconnect timeout: gives up") {
        auto w2 = d.vote(VoteKind::PeersPending);
        const uint64_t t1 = d.now;
        for (uint64_t t = 1000; t <= 20000; t += 1000) CHECK(actionsOf<Complete>(d.tickAt(t1 + t)).empty());
        auto out = d.tickAt(t1 + 21000);
        CHECK(answer(out, w2.id).status.code() == pcclMasterConnectionLost);
    }
}

TEST_CASE("session reconnect: a stale master is refused; a master that sends the peer elsewhere is left; one that "
          "says the peer was removed ends it", "[session][reconnect]") {
    Driver d = connectedPeer();
    welcome(d, 5);
    d.controlClosed();
    d.reconnected();
    SECTION("older epoch") {
        auto out = welcome(d, 3);
        CHECK(actionsOf<DisconnectMaster>(out).size() == 1);
        CHECK(d.s.phase() == Phase::Connected);
        auto next = actionsOf<ReconnectMaster>(d.controlClosed("closed by this peer"));
        CHECK(next.size() == 1);
    }
    SECTION("retry elsewhere") {
        auto out = d.message(Reject{toWire(pcclMasterConnectionFailed), "stale master", true});
        CHECK(actionsOf<Complete>(out).empty());
        CHECK(d.s.phase() == Phase::Connected);
        CHECK(actionsOf<ReconnectMaster>(d.controlClosed()).size() == 1);
    }
    SECTION("removed") {
        auto w = d.vote(VoteKind::PeersPending);
        auto out = d.message(Reject{toWire(pcclKicked), "removed while its connection was down", false});
        CHECK(d.s.phase() == Phase::Dead);
        CHECK(answer(out, w.id).status.code() == pcclKicked);
    }
}

TEST_CASE("session reconnect: a joiner that lost its master registers again as a joiner", "[session][reconnect]") {
    Driver d(reconnecting());
    auto c = d.connect();
    d.message(Welcome{kSelf, {}, {}, 3});
    auto lost = d.controlClosed();
    CHECK(actionsOf<Complete>(lost).empty());
    auto back = d.reconnected();
    auto h = sent<Hello>(back);
    REQUIRE(h.size() == 1);
    CHECK(h[0].uuid == kSelf);
    CHECK(h[0].master_epoch == 3);
    CHECK(sent<Rejoin>(back).empty());
    d.message(Welcome{kSelf, {}, {}, 4});
    CHECK(d.s.masterLink() == MasterLink::Up);
    d.message(TopologyUpdate{1, {selfMember()}, WorldInfo{1, 1, 1, 1}});
    auto done = d.message(TopologyDone{1, true, ""});
    CHECK(answer(done, c.id).status.ok());
}

TEST_CASE("session reconnect: a master that was stopped on purpose ends the run at once", "[session][reconnect]") {
    Driver d = connectedPeer();
    auto w = d.vote(VoteKind::PeersPending);
    auto out = d.message(MasterShutdown{"the master was stopped"});
    auto c = answer(out, w.id);
    CHECK(c.status.code() == pcclMasterConnectionLost);
    CHECK(contains(c.status.message(), "the run has ended"));
}

TEST_CASE("session reconnect: with the reconnect timeout 0 a lost master fails every call at once (PCCL 1.0)",
          "[session][reconnect]") {
    Driver d = connectedPeer(reconnecting(0, 1));
    auto w = d.vote(VoteKind::PeersPending);
    auto out = d.controlClosed();
    CHECK(answer(out, w.id).status.code() == pcclMasterConnectionLost);
    CHECK(actionsOf<ReconnectMaster>(out).empty());
}

TEST_CASE("session reconnect: with other masters listed, a silent master is left after the heartbeat deadline and "
          "the next address is tried first (standby masters)", "[session][reconnect]") {
    SessionOptions o = reconnecting(20000, 3);
    Driver d = connectedPeer(o);
    auto wait = d.vote(VoteKind::PeersPending);
    d.message(HeartbeatAck{});  // last heard of now
    const uint64_t t0 = d.now;
    // Ticks every 500 ms, as a running peer does; the master answers none of its heartbeats.
    Actions late;
    uint64_t t = 500;
    for (; t <= 2 * o.heartbeatTimeoutMs; t += 500) {
        late = d.tickAt(t0 + t);
        if (!actionsOf<DisconnectMaster>(late).empty()) break;
    }
    CHECK(t > o.heartbeatTimeoutMs);
    CHECK(t <= o.heartbeatTimeoutMs + 500);
    auto gone = actionsOf<DisconnectMaster>(late);
    REQUIRE(gone.size() == 1);
    CHECK(contains(gone[0].reason, "trying the other masters"));
    CHECK(actionsOf<Complete>(late).empty());  // the vote waits
    auto next = actionsOf<ReconnectMaster>(d.controlClosed("closed by this peer"));
    REQUIRE(next.size() == 1);
    CHECK(next[0].address == 1);  // not the silent master 0
    CHECK(next[0].delayMs == 0);
    auto after = actionsOf<ReconnectMaster>(d.reconnected(Status{pcclMasterConnectionFailed, "connection refused"}));
    REQUIRE(after.size() == 1);
    CHECK(after[0].address == 2);
    // Master 2 takes the connection but is silent too (stopped: its kernel still accepts): left
    // after the heartbeat deadline, for the next address, not tried again at once.
    d.reconnected();
    Actions silent;
    const uint64_t connectedAt = d.now;
    for (uint64_t t = connectedAt + 500; actionsOf<DisconnectMaster>(silent).empty() && t < connectedAt + 20000; t += 500)
        silent = d.tickAt(t);
    REQUIRE(actionsOf<DisconnectMaster>(silent).size() == 1);
    auto again = actionsOf<ReconnectMaster>(d.controlClosed("closed by this peer"));
    REQUIRE(again.size() == 1);
    CHECK(again[0].address == 0);
    after = actionsOf<ReconnectMaster>(d.reconnected(Status{pcclMasterConnectionFailed, "connection refused"}));
    REQUIRE(after.size() == 1);
    CHECK(after[0].address == 1);
    // The new leader takes it: the vote is sent again and answered.
    auto rj = sent<Rejoin>(d.reconnected());
    REQUIRE(rj.size() == 1);
    welcome(d, 9);
    auto replay = d.message(rebuilt(9));
    CHECK(sent<VotePeersPending>(replay).size() == 1);
    CHECK(answer(d.message(PeersPendingResult{false}), wait.id).status.ok());
    CHECK(d.s.masterEpoch() == 9);
}

TEST_CASE("session reconnect: a master that sends the peer elsewhere (not the leader) is not tried again next",
          "[session][reconnect]") {
    Driver d = connectedPeer(reconnecting(20000, 3));
    d.controlClosed("connection reset by peer");  // tries master 0 first
    d.reconnected();                               // master 0 took the connection...
    d.message(Reject{toWire(pcclMasterConnectionFailed), "not the leader, try 10.0.0.2:48148", true});
    auto next = actionsOf<ReconnectMaster>(d.controlClosed("closed by the master"));
    REQUIRE(next.size() == 1);
    CHECK(next[0].address == 1);  // ...and refused: the next one now
    CHECK(d.s.phase() == Phase::Connected);
    // The same while joining: a joiner sent away by a follower goes to the next address.
    Driver j(reconnecting(20000, 2));
    j.connect();
    j.message(Reject{toWire(pcclMasterConnectionFailed), "not the leader, try 10.0.0.2:48148", true});
    auto first = actionsOf<ReconnectMaster>(j.controlClosed("closed by the master"));
    REQUIRE(first.size() == 1);
    CHECK(first[0].address == 1);
}
