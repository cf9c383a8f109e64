// The peer's Session state machine, driven with scripted events: the three votes and the
// all-reduce protocol (init, commence, done, commit or abort, await).
#include <catch2/catch.hpp>

#include "support/session_driver.h"

using namespace pccl;
using namespace pccl::testing::session;

namespace {

const char *callOf(VoteKind kind) {
    switch (kind) {
        case VoteKind::Topology: return "pcclUpdateTopology";
        case VoteKind::PeersPending: return "pcclArePeersPending";
        case VoteKind::Optimize: return "pcclOptimizeTopology";
    }
    return "";
}

// Whether `out` sends the vote message of `kind` (and no other vote message).
bool sendsVote(const Actions &out, VoteKind kind) {
    const size_t t = sent<VoteUpdateTopology>(out).size(), p = sent<VotePeersPending>(out).size(),
                 o = sent<VoteOptimizeTopology>(out).size();
    switch (kind) {
        case VoteKind::Topology: return t == 1 && p == 0 && o == 0;
        case VoteKind::PeersPending: return t == 0 && p == 1 && o == 0;
        case VoteKind::Optimize: return t == 0 && p == 0 && o == 1;
    }
    return false;
}

const auto kAllVotes = {VoteKind::Topology, VoteKind::PeersPending, VoteKind::Optimize};

} // namespace

// ---- votes

TEST_CASE("session: each vote sends its message to the master and waits for the answer", "[session]") {
    const VoteKind kind = GENERATE(values(kAllVotes));
    Driver d;
    d.admit();
    auto v = d.vote(kind);
    CHECK(sendsVote(v.out, kind));
    CHECK(v.out.size() == 1);
    CHECK(d.unanswered() == std::vector<RequestId>{v.id});
}

TEST_CASE("session: a topology vote completes with the re-admission round it started", "[session]") {
    Driver d;
    d.admit();
    auto v = d.vote(VoteKind::Topology);
    auto up = d.message(TopologyUpdate{2, ringWithSelfAt(2, 1), {2, 2, 1, 2}});
    CHECK(actionsOf<Complete>(up).empty());
    REQUIRE(actionsOf<ConnectLinks>(up).size() == 1);
    CHECK(actionsOf<ConnectLinks>(up)[0].next == member(1));  // wraps around to the head
    REQUIRE(sent<LinksReady>(d.linksConnected(2)).size() == 1);
    auto a = answer(d.message(TopologyDone{2, true, ""}), v.id);
    CHECK(a.status.ok());
    CHECK(std::holds_alternative<std::monostate>(a.reply));
    CHECK(d.s.attribute(PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE).value() == 2);
}

TEST_CASE("session: a failed topology round fails the topology vote with pcclUpdateTopologyFailed", "[session]") {
    Driver d;
    d.admit();
    auto v = d.vote(VoteKind::Topology);
    auto a = answer(d.message(TopologyDone{2, false, "peer 3 could not link"}), v.id);
    CHECK(a.status.code() == pcclUpdateTopologyFailed);
    CHECK(contains(a.status.message(), "peer 3 could not link"));
    CHECK(d.s.phase() == Phase::Connected);  // once admitted, a failed round does not end the session
}

TEST_CASE("session: a peers-pending vote returns the master's answer", "[session]") {
    const bool pending = GENERATE(true, false);
    Driver d;
    d.admit();
    auto v = d.vote(VoteKind::PeersPending);
    auto a = answer(d.message(PeersPendingResult{pending}), v.id);
    CHECK(a.status.ok());
    REQUIRE(std::holds_alternative<bool>(a.reply));
    CHECK(std::get<bool>(a.reply) == pending);
}

TEST_CASE("session: an optimize vote completes with OptimizeTopologyResult", "[session]") {
    Driver d;
    d.admit();
    auto v = d.vote(VoteKind::Optimize);
    SECTION("ok") {
        auto a = answer(d.message(OptimizeTopologyResult{true, ""}), v.id);
        CHECK(a.status.ok());
    }
    SECTION("failed") {
        auto a = answer(d.message(OptimizeTopologyResult{false, "no bandwidth data"}), v.id);
        CHECK(a.status.code() == pcclTopologyOptimizationFailed);
        CHECK(contains(a.status.message(), "no bandwidth data"));
    }
}

TEST_CASE("session: an answer with no vote waiting does nothing", "[session]") {
    Driver d;
    d.admit();
    CHECK(d.message(TopologyDone{2, true, ""}).empty());
    CHECK(d.message(TopologyDone{2, false, "x"}).empty());
    CHECK(d.message(PeersPendingResult{true}).empty());
    CHECK(d.message(OptimizeTopologyResult{false, "x"}).empty());
    for (VoteKind k : kAllVotes) CHECK(d.message(VoteFailed{static_cast<uint8_t>(k), toWire(pcclTimeout), "x"}).empty());
    CHECK(d.s.phase() == Phase::Connected);
}

TEST_CASE("session: votes of different kinds wait at the same time, each answered by its own message", "[session]") {
    Driver d;
    d.admit();
    auto t = d.vote(VoteKind::Topology), p = d.vote(VoteKind::PeersPending), o = d.vote(VoteKind::Optimize);
    auto out = d.message(PeersPendingResult{true});
    CHECK(actionsOf<Complete>(out).size() == 1);
    CHECK(answer(out, p.id).status.ok());
    out = d.message(OptimizeTopologyResult{true, ""});
    CHECK(actionsOf<Complete>(out).size() == 1);
    CHECK(answer(out, o.id).status.ok());
    out = d.message(TopologyDone{2, true, ""});
    CHECK(actionsOf<Complete>(out).size() == 1);
    CHECK(answer(out, t.id).status.ok());
}

TEST_CASE("session: VoteFailed answers only the vote of its kind", "[session]") {
    const VoteKind kind = GENERATE(values(kAllVotes));
    Driver d;
    d.admit();
    std::map<VoteKind, RequestId> ids;
    for (VoteKind k : kAllVotes) ids[k] = d.vote(k).id;
    auto out = d.message(VoteFailed{static_cast<uint8_t>(kind), toWire(pcclTimeout), "vote deadline passed"});
    REQUIRE(actionsOf<Complete>(out).size() == 1);
    auto a = answer(out, ids[kind]);
    CHECK(a.status.code() == pcclTimeout);
    CHECK(contains(a.status.message(), "vote deadline passed"));
    CHECK(d.unanswered().size() == 2);
    CHECK(d.s.phase() == Phase::Connected);
    // The same kind may be voted again.
    CHECK(sendsVote(d.vote(kind).out, kind));
}

TEST_CASE("session: a VoteFailed carrying pcclSuccess or an unknown result still fails the vote", "[session]") {
    const uint8_t result = GENERATE(uint8_t{0}, uint8_t{200});
    Driver d;
    d.admit();
    auto v = d.vote(VoteKind::PeersPending);
    auto a = answer(d.message(VoteFailed{1, result, "?"}), v.id);
    CHECK(a.status.code() == pcclInternalError);
}

TEST_CASE("session: a VoteFailed of an unknown kind is a protocol error", "[session]") {
    const uint8_t kind = GENERATE(uint8_t{3}, uint8_t{255});
    Driver d;
    d.admit();
    auto v = d.vote(VoteKind::Topology);
    auto out = d.message(VoteFailed{kind, toWire(pcclTimeout), "?"});
    REQUIRE(actionsOf<DisconnectMaster>(out).size() == 1);
    CHECK(contains(actionsOf<DisconnectMaster>(out)[0].reason, "VoteFailed"));
    CHECK(d.s.phase() == Phase::Dead);
    CHECK(d.s.deathStatus().code() == pcclMasterConnectionLost);
    CHECK(answer(out, v.id).status.code() == pcclMasterConnectionLost);
}

TEST_CASE("session: a vote before the session is connected is invalid usage and sends nothing", "[session]") {
    const VoteKind kind = GENERATE(values(kAllVotes));
    Driver d;
    auto v = d.vote(kind);
    CHECK(answer(v.out, v.id).status.code() == pcclInvalidUsage);
    CHECK(sent<VoteUpdateTopology>(v.out).empty());
    d.connect();
    v = d.vote(kind);
    CHECK(answer(v.out, v.id).status.code() == pcclInvalidUsage);
    CHECK(actionsOf<SendToMaster>(v.out).empty());
}

TEST_CASE("session: a vote after death returns the death status", "[session]") {
    const VoteKind kind = GENERATE(values(kAllVotes));
    Driver d;
    d.admit();
    d.message(Kicked{"evicted"});
    auto v = d.vote(kind);
    auto a = answer(v.out, v.id);
    CHECK(a.status.code() == pcclKicked);
    CHECK(contains(a.status.message(), "evicted"));
    CHECK(actionsOf<SendToMaster>(v.out).empty());
}

TEST_CASE("session: a topology or optimize vote while an all-reduce is in flight returns pcclPendingAsyncOps", "[session]") {
    const VoteKind kind = GENERATE(VoteKind::Topology, VoteKind::Optimize);
    Driver d;
    d.admit();
    d.startAllReduce(42);
    auto v = d.vote(kind);
    auto a = answer(v.out, v.id);
    CHECK(a.status.code() == pcclPendingAsyncOps);
    CHECK(contains(a.status.message(), "tag 42"));
    CHECK(actionsOf<SendToMaster>(v.out).empty());
}

TEST_CASE("session: a peers-pending vote is allowed while an all-reduce is in flight", "[session]") {
    Driver d;
    d.admit();
    d.startAllReduce(42);
    auto v = d.vote(VoteKind::PeersPending);
    CHECK(completionsOf(v.out, v.id).empty());
    CHECK(sendsVote(v.out, VoteKind::PeersPending));
}

TEST_CASE("session: an all-reduce that finished but was not awaited does not block a topology vote", "[session]") {
    Driver d;
    d.admit();
    d.commence(42, 1, {selfMember()});
    d.allReduceFinished(42, 1);
    d.message(CollectiveCommitted{42, 1});
    CHECK(d.s.inFlight() == 0);
    auto v = d.vote(VoteKind::Topology);
    CHECK(completionsOf(v.out, v.id).empty());
    CHECK(sendsVote(v.out, VoteKind::Topology));
}

TEST_CASE("session: a second vote of the same kind while one waits is invalid usage", "[session]") {
    const VoteKind kind = GENERATE(values(kAllVotes));
    Driver d;
    d.admit();
    auto first = d.vote(kind);
    auto second = d.vote(kind);
    CHECK(answer(second.out, second.id).status.code() == pcclInvalidUsage);
    CHECK(actionsOf<SendToMaster>(second.out).empty());
    CHECK(d.unanswered() == std::vector<RequestId>{first.id});
}

TEST_CASE("session: death while voting completes the vote with the death status, naming the waiting call", "[session]") {
    const VoteKind kind = GENERATE(values(kAllVotes));
    Driver d;
    d.admit();
    auto v = d.vote(kind);
    auto out = d.controlClosed("eof");
    auto a = answer(out, v.id);
    CHECK(a.status.code() == pcclMasterConnectionLost);
    CHECK(contains(a.status.message(), "eof"));
    CHECK(contains(a.status.message(), std::string(callOf(kind)) + " was waiting for the master"));
    // The master's late answer finds nobody waiting.
    CHECK(d.message(VoteFailed{static_cast<uint8_t>(kind), toWire(pcclTimeout), "late"}).empty());
}

// ---- all-reduce: start and commence

TEST_CASE("session: startAllReduce sends CollectiveInit with the descriptor and completes at once", "[session]") {
    Driver d;
    d.admit();
    ReduceArgs args = reduceArgs(7, 12345);
    args.dtype = pcclDouble;
    args.op = pcclMax;
    args.quant.quantized_datatype = pcclUint16;
    args.quant.algorithm = pcclQuantMinMax;
    auto c = d.startAllReduce(args);
    CHECK(answer(c.out, c.id).status.ok());
    auto inits = sent<CollectiveInit>(c.out);
    REQUIRE(inits.size() == 1);
    CHECK(inits[0].tag == 7);
    CHECK(inits[0].desc.count == 12345);
    CHECK(inits[0].desc.dtype == static_cast<uint8_t>(pcclDouble));
    CHECK(inits[0].desc.op == static_cast<uint8_t>(pcclMax));
    CHECK(inits[0].desc.quant_dtype == static_cast<uint8_t>(pcclUint16));
    CHECK(inits[0].desc.quant_algo == static_cast<uint8_t>(pcclQuantMinMax));
    CHECK(d.s.inFlight() == 1);
    CHECK_FALSE(d.s.allQuiet());
}

TEST_CASE("session: starting a tag already in flight is invalid usage; another tag is not", "[session]") {
    Driver d;
    d.admit();
    d.startAllReduce(7);
    auto again = d.startAllReduce(7);
    CHECK(answer(again.out, again.id).status.code() == pcclInvalidUsage);
    CHECK(sent<CollectiveInit>(again.out).empty());
    auto other = d.startAllReduce(8);
    CHECK(answer(other.out, other.id).status.ok());
    CHECK(sent<CollectiveInit>(other.out).size() == 1);
    CHECK(d.s.inFlight() == 2);
}

TEST_CASE("session: startAllReduce before the session is connected is invalid usage", "[session]") {
    Driver d;
    auto c = d.startAllReduce(7);
    CHECK(answer(c.out, c.id).status.code() == pcclInvalidUsage);
    d.connect();
    c = d.startAllReduce(7);
    CHECK(answer(c.out, c.id).status.code() == pcclInvalidUsage);
    CHECK(sent<CollectiveInit>(c.out).empty());
    CHECK(d.s.inFlight() == 0);
}

TEST_CASE("session: commence starts the ring engine with this peer's rank and neighbours", "[session]") {
    const size_t n = GENERATE(1, 2, 3, 5);
    const size_t pos = GENERATE_COPY(range(size_t{0}, n));
    Driver d;
    d.admit();
    auto ring = ringWithSelfAt(n, pos);
    auto start = d.startAllReduce(reduceArgs(7, 999), 65536);
    REQUIRE(answer(start.out, start.id).status.ok());
    auto out = d.message(CollectiveCommence{7, 31, ring});
    CHECK(sent<CollectiveDone>(out).empty());
    auto starts = actionsOf<StartAllReduce>(out);
    REQUIRE(starts.size() == 1);
    const auto &s = starts[0];
    CHECK(s.args.tag == 7);
    CHECK(s.args.count == 999);
    CHECK(s.seq == 31);
    CHECK(s.segmentBytes == 65536);
    CHECK(s.rank == pos);
    CHECK(s.worldSize == n);
    CHECK(s.prev == ring[(pos + n - 1) % n]);
    CHECK(s.next == ring[(pos + 1) % n]);
}

TEST_CASE("session: commence for a tag not in flight reports failure", "[session]") {
    Driver d;
    d.admit();
    auto out = d.message(CollectiveCommence{9, 4, {selfMember()}});
    CHECK(actionsOf<StartAllReduce>(out).empty());
    auto done = sent<CollectiveDone>(out);
    REQUIRE(done.size() == 1);
    CHECK(done[0].tag == 9);
    CHECK(done[0].seq == 4);
    CHECK_FALSE(done[0].ok);
}

TEST_CASE("session: a second commence for a started tag reports failure and leaves the first running", "[session]") {
    Driver d;
    d.admit();
    d.commence(7, 4, {selfMember()});
    auto out = d.message(CollectiveCommence{7, 5, {selfMember()}});
    CHECK(actionsOf<StartAllReduce>(out).empty());
    auto done = sent<CollectiveDone>(out);
    REQUIRE(done.size() == 1);
    CHECK(done[0].seq == 5);
    CHECK_FALSE(done[0].ok);
    auto finished = sent<CollectiveDone>(d.allReduceFinished(7, 4));
    REQUIRE(finished.size() == 1);
    CHECK(finished[0].ok);
    CHECK(actionsOf<ReleaseAllReduce>(d.message(CollectiveCommitted{7, 4})).size() == 1);
}

TEST_CASE("session: commence for a tag aborted before it started reports failure", "[session]") {
    Driver d;
    d.admit();
    d.startAllReduce(7);
    d.message(CollectiveAborted{7, 0, toWire(pcclMismatch), "descriptions differ", {}});
    auto out = d.message(CollectiveCommence{7, 4, {selfMember()}});
    CHECK(actionsOf<StartAllReduce>(out).empty());
    REQUIRE(sent<CollectiveDone>(out).size() == 1);
    CHECK_FALSE(sent<CollectiveDone>(out)[0].ok);
}

TEST_CASE("session: commence on a ring without this peer reports failure", "[session]") {
    Driver d;
    d.admit();
    d.startAllReduce(7);
    auto out = d.message(CollectiveCommence{7, 4, {member(1), member(2)}});
    CHECK(actionsOf<StartAllReduce>(out).empty());
    auto done = sent<CollectiveDone>(out);
    REQUIRE(done.size() == 1);
    CHECK(done[0].tag == 7);
    CHECK(done[0].seq == 4);
    CHECK_FALSE(done[0].ok);
    CHECK(contains(done[0].error, "not part of the ring"));
}

// The master answers a failure report with CollectiveAborted of the commenced seq
// (Membership::onCollectiveDone -> abortCollective); the refused op must end with it.
TEST_CASE("session: an all-reduce whose commence was refused ends when the master aborts that seq", "[session]") {
    Driver d;
    d.admit();
    d.startAllReduce(7);
    d.message(CollectiveCommence{7, 4, {member(1), member(2)}});
    auto w = d.awaitAllReduce(7);
    auto out = d.message(CollectiveAborted{7, 4, toWire(pcclRankConnectionLost), "peer reported: not part of the ring", {}});
    auto c = completion(out, w.id);
    REQUIRE(c.has_value());
    CHECK(c->status.code() == pcclRankConnectionLost);
    CHECK(d.s.inFlight() == 0);
}

// ---- all-reduce: the end of the transfer, commit and await

TEST_CASE("session: a finished all-reduce reports CollectiveDone ok, with the send rate only for a large transfer", "[session]") {
    Driver d;
    d.admit();
    d.commence(7, 4, ringWithSelfAt(2, 0));
    OpStats stats;
    stats.sendBytesPerS = 123456789;
    uint64_t expectedRate = 0;
    SECTION("below 4 MiB") { stats.txBytes = (4u << 20) - 1; }
    SECTION("4 MiB") {
        stats.txBytes = 4u << 20;
        expectedRate = 123456789;
    }
    auto done = sent<CollectiveDone>(d.allReduceFinished(7, 4, {}, stats));
    REQUIRE(done.size() == 1);
    CHECK(done[0].tag == 7);
    CHECK(done[0].seq == 4);
    CHECK(done[0].ok);
    CHECK(done[0].result == toWire(pcclSuccess));
    CHECK(done[0].send_bytes_per_s == expectedRate);
}

TEST_CASE("session: an all-reduce failed locally reports CollectiveDone with its result and reason", "[session]") {
    Driver d;
    d.admit();
    d.commence(7, 4, ringWithSelfAt(2, 1));
    OpStats stats{8u << 20, 8u << 20, 999};
    auto out = d.allReduceFinished(7, 4, Status{pcclTimeout, "no progress for 30 s"}, stats);
    auto done = sent<CollectiveDone>(out);
    REQUIRE(done.size() == 1);
    CHECK_FALSE(done[0].ok);
    CHECK(done[0].error == "no progress for 30 s");
    CHECK(done[0].result == toWire(pcclTimeout));
    CHECK(done[0].send_bytes_per_s == 0);
    CHECK(actionsOf<Complete>(out).empty());  // the master decides the end
}

TEST_CASE("session: a finished report for an unknown tag, another seq or a done all-reduce is ignored", "[session]") {
    Driver d;
    d.admit();
    d.commence(7, 4, {selfMember()});
    CHECK(d.allReduceFinished(7, 5).empty());
    CHECK(d.allReduceFinished(8, 4).empty());
    d.allReduceFinished(7, 4);
    d.message(CollectiveCommitted{7, 4});
    CHECK(d.allReduceFinished(7, 4).empty());  // done, not yet awaited
}

TEST_CASE("session: CollectiveCommitted releases the engine and completes a waiting await with world size and bytes", "[session]") {
    Driver d;
    d.admit();
    d.commence(7, 4, ringWithSelfAt(3, 1));
    auto w = d.awaitAllReduce(7);
    CHECK(w.out.empty());
    d.allReduceFinished(7, 4, {}, OpStats{100, 200, 0});
    CHECK(d.unanswered() == std::vector<RequestId>{w.id});
    auto out = d.message(CollectiveCommitted{7, 4});
    auto rel = actionsOf<ReleaseAllReduce>(out);
    REQUIRE(rel.size() == 1);
    CHECK(rel[0].tag == 7);
    CHECK(rel[0].seq == 4);
    auto a = answer(out, w.id);
    CHECK(a.status.ok());
    REQUIRE(std::holds_alternative<ReduceResult>(a.reply));
    CHECK(std::get<ReduceResult>(a.reply).worldSize == 3);
    CHECK(std::get<ReduceResult>(a.reply).txBytes == 100);
    CHECK(std::get<ReduceResult>(a.reply).rxBytes == 200);
    CHECK(d.s.inFlight() == 0);
    CHECK(d.s.allQuiet());
}

TEST_CASE("session: an await after the commit completes at once, and the tag is free again", "[session]") {
    Driver d;
    d.admit();
    d.commence(7, 4, ringWithSelfAt(2, 0));
    d.allReduceFinished(7, 4, {}, OpStats{10, 20, 0});
    auto out = d.message(CollectiveCommitted{7, 4});
    CHECK(actionsOf<Complete>(out).empty());
    auto w = d.awaitAllReduce(7);
    auto a = answer(w.out, w.id);
    CHECK(a.status.ok());
    REQUIRE(std::holds_alternative<ReduceResult>(a.reply));
    CHECK(std::get<ReduceResult>(a.reply).worldSize == 2);
    CHECK(std::get<ReduceResult>(a.reply).rxBytes == 20);
    auto again = d.awaitAllReduce(7);
    CHECK(answer(again.out, again.id).status.code() == pcclInvalidUsage);
    auto restart = d.startAllReduce(7);
    CHECK(answer(restart.out, restart.id).status.ok());
}

TEST_CASE("session: a finished but uncommitted all-reduce keeps its await waiting", "[session]") {
    Driver d;
    d.admit();
    d.commence(7, 4, ringWithSelfAt(2, 0));
    d.allReduceFinished(7, 4);
    auto w = d.awaitAllReduce(7);
    CHECK(w.out.empty());
    CHECK(d.s.inFlight() == 1);
}

TEST_CASE("session: awaiting a tag that is not in flight is invalid usage", "[session]") {
    Driver d;
    d.admit();
    auto w = d.awaitAllReduce(7);
    auto a = answer(w.out, w.id);
    CHECK(a.status.code() == pcclInvalidUsage);
    CHECK(contains(a.status.message(), "tag 7"));
}

TEST_CASE("session: a second await of the same tag while one waits is invalid usage", "[session]") {
    Driver d;
    d.admit();
    d.startAllReduce(7);
    auto first = d.awaitAllReduce(7);
    auto second = d.awaitAllReduce(7);
    CHECK(answer(second.out, second.id).status.code() == pcclInvalidUsage);
    CHECK(d.unanswered() == std::vector<RequestId>{first.id});
}

TEST_CASE("session: a commit for another seq or an unknown tag is ignored", "[session]") {
    Driver d;
    d.admit();
    d.commence(7, 4, {selfMember()});
    auto w = d.awaitAllReduce(7);
    CHECK(d.message(CollectiveCommitted{7, 5}).empty());
    CHECK(d.message(CollectiveCommitted{8, 4}).empty());
    CHECK(d.unanswered() == std::vector<RequestId>{w.id});
}

// ---- all-reduce: aborts

TEST_CASE("session: CollectiveAborted before commence completes the await with the reason and 'waiting to start'", "[session]") {
    Driver d;
    d.admit();
    d.startAllReduce(7);
    auto w = d.awaitAllReduce(7);
    auto out = d.message(CollectiveAborted{7, 0, toWire(pcclMismatch), "descriptions differ", {}});
    CHECK(actionsOf<StopAllReduce>(out).empty());
    auto a = answer(out, w.id);
    CHECK(a.status.code() == pcclMismatch);
    CHECK(contains(a.status.message(), "descriptions differ"));
    CHECK(contains(a.status.message(), "waiting to start"));
    CHECK(d.s.inFlight() == 0);
    CHECK(d.s.phase() == Phase::Connected);
}

TEST_CASE("session: CollectiveAborted before commence, awaited later, completes the await at once", "[session]") {
    Driver d;
    d.admit();
    d.startAllReduce(7);
    CHECK(actionsOf<Complete>(d.message(CollectiveAborted{7, 0, toWire(pcclTimeout), "peer 3 never started it", {}})).empty());
    auto w = d.awaitAllReduce(7);
    auto a = answer(w.out, w.id);
    CHECK(a.status.code() == pcclTimeout);
    CHECK(contains(a.status.message(), "peer 3 never started it"));
}

TEST_CASE("session: CollectiveAborted after commence stops the engine; the await completes once it has stopped", "[session]") {
    Driver d;
    d.admit();
    d.commence(7, 4, ringWithSelfAt(3, 2));
    auto w = d.awaitAllReduce(7);
    auto out = d.message(CollectiveAborted{7, 4, toWire(pcclRankConnectionLost), "peer 1 lost", {}});
    auto stops = actionsOf<StopAllReduce>(out);
    REQUIRE(stops.size() == 1);
    CHECK(stops[0].tag == 7);
    CHECK(stops[0].seq == 4);
    CHECK(stops[0].status.code() == pcclRankConnectionLost);
    CHECK(contains(stops[0].status.message(), "peer 1 lost"));
    CHECK(actionsOf<Complete>(out).empty());
    CHECK(d.s.inFlight() == 1);
    // A commit racing with the abort changes nothing.
    CHECK(d.message(CollectiveCommitted{7, 4}).empty());
    const Status stopped{pcclRankConnectionLost, "peer 1 lost; on this peer: reduce-scatter step 1 of 2"};
    auto a = answer(d.allReduceStopped(7, 4, stopped, OpStats{5, 6, 0}), w.id);
    CHECK(a.status.code() == pcclRankConnectionLost);
    CHECK(a.status.message() == stopped.message());
    REQUIRE(std::holds_alternative<ReduceResult>(a.reply));
    CHECK(std::get<ReduceResult>(a.reply).worldSize == 3);
    CHECK(std::get<ReduceResult>(a.reply).txBytes == 5);
    CHECK(d.s.inFlight() == 0);
}

TEST_CASE("session: CollectiveAborted closes every lost peer, whatever its tag and seq", "[session]") {
    const uint64_t seq = GENERATE(4, 99);
    Driver d;
    d.admit();
    d.commence(7, 4, ringWithSelfAt(3, 0));
    auto out = d.message(CollectiveAborted{7, seq, toWire(pcclRankConnectionLost), "gone", {peerUuid(1), peerUuid(2)}});
    auto closes = actionsOf<ClosePeer>(out);
    REQUIRE(closes.size() == 2);
    CHECK(closes[0].peer == peerUuid(1));
    CHECK(closes[1].peer == peerUuid(2));
    CHECK(actionsOf<StopAllReduce>(out).size() == (seq == 4 ? 1u : 0u));
}

TEST_CASE("session: stale all-reduce messages of another seq are ignored", "[session]") {
    Driver d;
    d.admit();
    d.commence(7, 4, ringWithSelfAt(2, 0));
    auto w = d.awaitAllReduce(7);
    CHECK(d.message(CollectiveAborted{7, 3, toWire(pcclRankConnectionLost), "old", {}}).empty());
    CHECK(d.message(CollectiveAborted{7, 0, toWire(pcclRankConnectionLost), "old", {}}).empty());
    CHECK(d.message(CollectiveCommitted{7, 3}).empty());
    d.message(CollectiveAborted{7, 4, toWire(pcclRankConnectionLost), "now", {}});
    CHECK(d.allReduceStopped(7, 3, Status{pcclRankConnectionLost, "old"}).empty());
    CHECK(d.unanswered() == std::vector<RequestId>{w.id});
    CHECK(answer(d.allReduceStopped(7, 4, Status{pcclRankConnectionLost, "now"}), w.id).status.code() == pcclRankConnectionLost);
}

TEST_CASE("session: a CollectiveAborted carrying pcclSuccess still fails the all-reduce", "[session]") {
    Driver d;
    d.admit();
    d.startAllReduce(7);
    auto w = d.awaitAllReduce(7);
    auto a = answer(d.message(CollectiveAborted{7, 0, 0, "?", {}}), w.id);
    CHECK(a.status.code() == pcclInternalError);
}
