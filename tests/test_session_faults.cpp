// The peer's Session state machine, driven with scripted events: a lost master, a kick, a
// protocol error or an abort in each phase. Every waiting call is answered exactly once (the
// driver fails a test on a second answer), and later calls fail with the reason of death.
#include <catch2/catch.hpp>

#include "support/session_driver.h"

using namespace pccl;
using namespace pccl::testing::session;

namespace {

enum class Death { ControlClosed, Kicked, Silence, ProtocolError, Rejected, Aborted };

const auto kDeaths = {Death::ControlClosed, Death::Kicked,   Death::Silence,
                      Death::ProtocolError, Death::Rejected, Death::Aborted};

// Ends a connected session by `how`; returns the actions and the code every call then fails with.
std::pair<Actions, pcclResult_t> die(Driver &d, Death how) {
    switch (how) {
        case Death::ControlClosed: return {d.controlClosed("eof"), pcclMasterConnectionLost};
        case Death::Kicked: return {d.message(Kicked{"evicted"}), pcclKicked};
        case Death::Silence: return {d.tickAt(d.now + 60000 + 1), pcclMasterConnectionLost};
        case Death::ProtocolError: return {d.message(Hello{}), pcclMasterConnectionLost};
        case Death::Rejected: return {d.message(Reject{toWire(pcclAuthenticationFailed), "no"}), pcclAuthenticationFailed};
        case Death::Aborted: return {d.abort(Status{pcclInvalidUsage, "communicator destroyed"}), pcclInvalidUsage};
    }
    return {};
}

// Options whose master counts as silent after one missed tick, so that Death::Silence fires
// without a late tick excusing it (tickPeriod + timeout/2 is far above 60 s).
SessionOptions patient() {
    auto o = Driver::defaults();
    o.heartbeatTimeoutMs = 50000;
    o.tickPeriodMs = 60000;
    return o;
}

} // namespace

// ---- the kind of death

TEST_CASE("session: the control connection closing while connecting fails pcclConnect with pcclMasterConnectionFailed", "[session]") {
    Driver d;
    auto c = d.connect();
    auto out = d.controlClosed("connection refused");
    auto a = answer(out, c.id);
    CHECK(a.status.code() == pcclMasterConnectionFailed);
    CHECK(contains(a.status.message(), "10.0.0.1:48148"));
    CHECK(contains(a.status.message(), "connection refused"));
    CHECK(d.s.phase() == Phase::Dead);
    CHECK(d.s.deathStatus().code() == pcclMasterConnectionFailed);
}

TEST_CASE("session: the control connection closing while connected ends the session with pcclMasterConnectionLost", "[session]") {
    Driver d;
    d.admit();
    auto out = d.controlClosed("reset by peer");
    CHECK(actionsOf<CloseAllData>(out).size() == 1);
    CHECK(actionsOf<DisconnectMaster>(out).empty());
    CHECK(d.s.phase() == Phase::Dead);
    CHECK(d.s.deathStatus().code() == pcclMasterConnectionLost);
    CHECK(contains(d.s.deathStatus().message(), "reset by peer"));
}

TEST_CASE("session: a kick ends the session with pcclKicked and the master's reason", "[session]") {
    Driver d;
    d.admit();
    auto v = d.vote(VoteKind::Topology);
    auto out = d.message(Kicked{"missed the topology vote"});
    CHECK(d.s.phase() == Phase::Dead);
    CHECK(d.s.deathStatus().code() == pcclKicked);
    CHECK(contains(d.s.deathStatus().message(), "missed the topology vote"));
    CHECK(answer(out, v.id).status.code() == pcclKicked);
}

TEST_CASE("session: a kick while connecting fails pcclConnect with pcclKicked", "[session]") {
    Driver d;
    auto c = d.connect();
    auto a = answer(d.message(Kicked{"duplicate uuid"}), c.id);
    CHECK(a.status.code() == pcclKicked);
    CHECK(contains(a.status.message(), "duplicate uuid"));
}

TEST_CASE("session: the first cause of death is kept", "[session]") {
    Driver d;
    d.admit();
    d.message(Kicked{"evicted"});
    d.controlClosed("eof");
    d.abort(Status{pcclInvalidUsage, "communicator destroyed"});
    CHECK(d.s.deathStatus().code() == pcclKicked);
    CHECK(contains(d.s.deathStatus().message(), "evicted"));
}

// ---- operations waiting when the session dies

TEST_CASE("session: death with an all-reduce waiting to start completes its await with the death status", "[session]") {
    const Death how = GENERATE(values(kDeaths));
    Driver d(patient());
    d.admit();
    d.startAllReduce(7);
    auto w = d.awaitAllReduce(7);
    auto [out, code] = die(d, how);
    CHECK(actionsOf<StopAllReduce>(out).empty());
    auto a = answer(out, w.id);
    CHECK(a.status.code() == code);
    CHECK(contains(a.status.message(), "all-reduce tag 7, waiting to start"));
    CHECK(d.s.inFlight() == 0);
    CHECK(d.s.allQuiet());
}

TEST_CASE("session: death with an all-reduce waiting to start and not awaited fails the later await", "[session]") {
    const Death how = GENERATE(values(kDeaths));
    Driver d(patient());
    d.admit();
    d.startAllReduce(7);
    auto [out, code] = die(d, how);
    CHECK(actionsOf<Complete>(out).empty());
    auto w = d.awaitAllReduce(7);
    auto a = answer(w.out, w.id);
    CHECK(a.status.code() == code);
    CHECK(contains(a.status.message(), "waiting to start"));
}

TEST_CASE("session: death with a running all-reduce stops its engine; the await completes only once it stopped", "[session]") {
    const Death how = GENERATE(values(kDeaths));
    Driver d(patient());
    d.admit();
    d.commence(7, 4, ringWithSelfAt(2, 0));
    auto w = d.awaitAllReduce(7);
    auto [out, code] = die(d, how);
    CHECK(actionsOf<CloseAllData>(out).size() == 1);
    auto stops = actionsOf<StopAllReduce>(out);
    REQUIRE(stops.size() == 1);
    CHECK(stops[0].tag == 7);
    CHECK(stops[0].seq == 4);
    CHECK(stops[0].status.code() == code);
    CHECK(completionsOf(out, w.id).empty());
    CHECK_FALSE(d.s.allQuiet());
    // A report of the engine's end before it stopped is not sent to a dead master.
    CHECK(d.allReduceFinished(7, 4).empty());
    CHECK(d.message(CollectiveCommitted{7, 4}).empty());
    auto a = answer(d.allReduceStopped(7, 4, Status{code, "stopped; on this peer: step 2"}), w.id);
    CHECK(a.status.code() == code);
    CHECK(contains(a.status.message(), "step 2"));
    CHECK(d.s.allQuiet());
}

TEST_CASE("session: an all-reduce committed before death still succeeds", "[session]") {
    Driver d;
    d.admit();
    d.commence(7, 4, ringWithSelfAt(2, 0));
    d.allReduceFinished(7, 4, {}, OpStats{1, 2, 0});
    d.message(CollectiveCommitted{7, 4});
    auto out = d.controlClosed();
    CHECK(actionsOf<StopAllReduce>(out).empty());
    auto w = d.awaitAllReduce(7);
    CHECK(answer(w.out, w.id).status.ok());
}

TEST_CASE("session: death with a sync waiting for its plan completes it with the death status", "[session]") {
    const Death how = GENERATE(values(kDeaths));
    Driver d(patient());
    d.admit();
    auto c = d.sync();
    auto [out, code] = die(d, how);
    CHECK(actionsOf<StopTransfer>(out).empty());
    auto a = answer(out, c.id);
    CHECK(a.status.code() == code);
    CHECK(contains(a.status.message(), "shared-state sync, waiting to start"));
    // A plan arriving late starts nothing.
    CHECK(actionsOf<StartTransfer>(d.message(SharedStatePlan{3, 7, {}, {}, {}})).empty());
}

TEST_CASE("session: death with a sync transferring stops the transfer; the sync completes once it stopped", "[session]") {
    const Death how = GENERATE(values(kDeaths));
    Driver d(patient());
    d.admit();
    auto c = d.transferring(3);
    auto [out, code] = die(d, how);
    auto stops = actionsOf<StopTransfer>(out);
    REQUIRE(stops.size() == 1);
    CHECK(stops[0].seq == 3);
    CHECK(stops[0].status.code() == code);
    CHECK(completionsOf(out, c.id).empty());
    CHECK_FALSE(d.s.allQuiet());
    CHECK(d.message(SharedStateCommitted{3, 8}).empty());
    auto a = answer(d.transferStopped(3, stops[0].status), c.id);
    CHECK(a.status.code() == code);
    CHECK(d.s.allQuiet());
}

TEST_CASE("session: a sync committed and draining when the master is lost still succeeds", "[session]") {
    Driver d;
    d.admit();
    auto c = d.transferring(3);
    d.message(SharedStateCommitted{3, 8});
    auto out = d.controlClosed();
    CHECK(actionsOf<StopTransfer>(out).empty());
    auto a = answer(d.transferStopped(3), c.id);
    CHECK(a.status.ok());
    REQUIRE(std::holds_alternative<SyncResult>(a.reply));
    CHECK(std::get<SyncResult>(a.reply).revision == 8);
}

// ---- a whole script

TEST_CASE("session: death answers every waiting call exactly once, and every later call fails with its status", "[session]") {
    const Death how = GENERATE(values(kDeaths));
    Driver d(patient());
    d.admit(ringWithSelfAt(3, 1));
    auto topo = d.vote(VoteKind::Topology);
    auto opt = d.vote(VoteKind::Optimize);
    auto sync = d.transferring(3);
    auto pending = d.vote(VoteKind::PeersPending);
    d.startAllReduce(1);                                   // waiting to start
    d.commence(2, 5, ringWithSelfAt(3, 1));                // running
    d.commence(3, 6, ringWithSelfAt(3, 1));                // running, not awaited
    auto w1 = d.awaitAllReduce(1), w2 = d.awaitAllReduce(2);
    REQUIRE(d.unanswered().size() == 6);

    auto [out, code] = die(d, how);
    for (RequestId id : {topo.id, opt.id, pending.id, w1.id}) CHECK(answer(out, id).status.code() == code);
    CHECK(actionsOf<StopAllReduce>(out).size() == 2);
    CHECK(actionsOf<StopTransfer>(out).size() == 1);
    CHECK(d.unanswered() == std::vector<RequestId>{sync.id, w2.id});

    // A second death (the driver's destroy, the socket closing) answers nothing again.
    auto again = d.abort(Status{pcclInvalidUsage, "communicator destroyed"});
    CHECK(actionsOf<Complete>(again).empty());
    CHECK(actionsOf<StopAllReduce>(again).empty());
    CHECK(actionsOf<StopTransfer>(again).empty());
    again = d.controlClosed();
    CHECK(actionsOf<Complete>(again).empty());

    CHECK(answer(d.transferStopped(3, Status{code, "x"}), sync.id).status.code() == code);
    CHECK(answer(d.allReduceStopped(2, 5, Status{code, "x"}), w2.id).status.code() == code);
    d.allReduceStopped(3, 6, Status{code, "x"});
    CHECK(d.unanswered().empty());
    CHECK(d.s.allQuiet());
    auto w3 = d.awaitAllReduce(3);
    CHECK(answer(w3.out, w3.id).status.code() == code);

    for (VoteKind k : {VoteKind::Topology, VoteKind::PeersPending, VoteKind::Optimize}) {
        auto v = d.vote(k);
        CHECK(answer(v.out, v.id).status.code() == code);
    }
    auto s = d.startAllReduce(9);
    CHECK(answer(s.out, s.id).status.code() == code);
    auto y = d.sync();
    CHECK(answer(y.out, y.id).status.code() == code);
    CHECK(d.s.beginConnect().code() == code);
    CHECK(d.s.attribute(PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE).status().code() == code);
    CHECK(d.unanswered().empty());
    // Late answers from the master find nobody waiting.
    CHECK(actionsOf<Complete>(d.message(TopologyDone{9, true, ""})).empty());
    CHECK(actionsOf<Complete>(d.message(PeersPendingResult{true})).empty());
    CHECK(actionsOf<Complete>(d.message(OptimizeTopologyResult{true, ""})).empty());
}

TEST_CASE("session: abort is idempotent", "[session]") {
    Driver d;
    d.admit();
    d.commence(7, 4, {selfMember()});
    auto v = d.vote(VoteKind::PeersPending);
    auto first = d.abort(Status{pcclInvalidUsage, "communicator destroyed"});
    CHECK(answer(first, v.id).status.code() == pcclInvalidUsage);
    CHECK(actionsOf<StopAllReduce>(first).size() == 1);
    auto second = d.abort(Status{pcclInternalError, "again"});
    CHECK(actionsOf<Complete>(second).empty());
    CHECK(actionsOf<StopAllReduce>(second).empty());
    CHECK(actionsOf<SendToMaster>(second).empty());
    CHECK(d.s.deathStatus().code() == pcclInvalidUsage);
    CHECK(d.s.deathStatus().message() == "communicator destroyed");
}

TEST_CASE("session: abort before connecting makes every call fail with its status", "[session]") {
    Driver d;
    auto out = d.abort(Status{pcclInvalidUsage, "communicator destroyed"});
    CHECK(actionsOf<Complete>(out).empty());
    CHECK(d.s.phase() == Phase::Dead);
    CHECK(d.s.beginConnect().code() == pcclInvalidUsage);
    auto v = d.vote(VoteKind::Topology);
    CHECK(contains(answer(v.out, v.id).status.message(), "communicator destroyed"));
}

// After an admission deadline or the master's silence the session is dead but the control
// connection stays open (no DisconnectMaster): the master may still run the admission round.
// A dead session must not link up and report itself ready, or it joins a ring it will never
// serve (it sends no heartbeats, votes or collectives).
TEST_CASE("session: a dead session joins no ring", "[session]") {
    auto o = Driver::defaults();
    o.admissionTimeoutMs = 3000;
    Driver d(o);
    d.connect();
    d.tickAt(d.now + 3000);
    REQUIRE(d.s.phase() == Phase::Dead);
    auto one = d.message(TopologyUpdate{1, {selfMember()}, {1, 1, 1, 1}});
    for (auto &r : sent<LinksReady>(one)) CHECK_FALSE(r.ok);
    auto several = d.message(TopologyUpdate{2, ringWithSelfAt(2, 0), {2, 2, 1, 2}});
    CHECK(actionsOf<ConnectLinks>(several).empty());
}

// ---- stray messages from a faulty master: a commit names a round by its seq, and seq 0 means
// "before commencing" (CollectiveAborted, SharedStateAborted); no round is ever committed as 0.

// on(CollectiveCommitted) compares the op's seq (0 until commence) with the message's: a commit
// of seq 0 releases an all-reduce that never ran, and its await reports success.
TEST_CASE("session: a commit of seq 0 does not complete an all-reduce that never started", "[session]") {
    Driver d;
    d.admit();
    d.startAllReduce(7);
    auto w = d.awaitAllReduce(7);
    auto out = d.message(CollectiveCommitted{7, 0});
    CHECK(actionsOf<ReleaseAllReduce>(out).empty());
    auto c = completion(out, w.id);
    CHECK_FALSE((c && c->status.ok()));
}

// endSync compares the sync's seq (0 until the plan) with the message's: a commit of seq 0
// completes the waiting sync ok with no SyncResult, which Communicator::syncSharedState then
// reads with std::get<SyncResult> (std::bad_variant_access).
TEST_CASE("session: a commit of seq 0 does not complete a sync still waiting for its plan", "[session]") {
    Driver d;
    d.admit();
    auto s = d.sync();
    auto out = d.message(SharedStateCommitted{0, 8});
    auto c = completion(out, s.id);
    CHECK_FALSE((c && c->status.ok()));
}
