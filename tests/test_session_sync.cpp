// The peer's Session state machine, driven with scripted events: shared-state sync (the
// description, the master's plan and its checks, the transfer's end, commit, abort, a lost source).
#include <catch2/catch.hpp>

#include "support/session_driver.h"

using namespace pccl;
using namespace pccl::testing::session;

namespace {

constexpr uint64_t kChunk = kStateChunkBytes;

ChunkFetch fetch(uint32_t entry, std::vector<uint32_t> chunks, std::vector<uint32_t> sources) {
    ChunkFetch f;
    f.entry = entry;
    f.chunks = std::move(chunks);
    f.digests.resize(f.chunks.size());
    f.sources = std::move(sources);
    return f;
}

// A plan for a sync of entries {kChunk + 1, 100} bytes (two chunks and one): peers 1 and 2.
SharedStatePlan planFor(uint64_t seq) {
    SharedStatePlan p;
    p.seq = seq;
    p.revision = 7;
    p.peers = {member(1), member(2)};
    p.receive = {fetch(0, {0, 1}, {0, 1}), fetch(1, {0}, {1})};
    p.serve = {0, 1};
    return p;
}

const std::vector<uint64_t> kEntryBytes{kChunk + 1, 100};

// A full sync that the master commits: returns what the sync completed with.
Complete committedSync(Driver &d, uint64_t seq, uint64_t revision) {
    auto c = d.transferring(seq);
    d.transferFinished(seq);
    auto stop = actionsOf<StopTransfer>(d.message(SharedStateCommitted{seq, revision}));
    REQUIRE(stop.size() == 1);
    return answer(d.transferStopped(seq, stop[0].status), c.id);
}

} // namespace

// ---- the description

TEST_CASE("session: the first sync sends the description with synced_before false, whatever the caller set", "[session]") {
    Driver d;
    d.admit();
    SharedStateSync desc = described(5);
    desc.strategy = 2;
    desc.synced_before = true;
    auto c = d.sync(desc);
    CHECK(completionsOf(c.out, c.id).empty());
    auto s = sent<SharedStateSync>(c.out);
    REQUIRE(s.size() == 1);
    CHECK_FALSE(s[0].synced_before);
    CHECK(s[0].revision == 5);
    CHECK(s[0].strategy == 2);
    REQUIRE(s[0].entries.size() == 1);
    CHECK(s[0].entries[0].name == "weights");
}

TEST_CASE("session: after a committed sync the next description says synced_before", "[session]") {
    Driver d;
    d.admit();
    CHECK(committedSync(d, 3, 8).status.ok());
    auto c = d.sync();
    auto s = sent<SharedStateSync>(c.out);
    REQUIRE(s.size() == 1);
    CHECK(s[0].synced_before);
}

TEST_CASE("session: a sync that failed does not count as synced before", "[session]") {
    Driver d;
    d.admit();
    SECTION("aborted before its plan") {
        auto c = d.sync();
        auto out = d.message(SharedStateAborted{0, toWire(pcclNoSharedStateAvailable), "nobody has state", {}});
        CHECK_FALSE(answer(out, c.id).status.ok());
    }
    SECTION("aborted during its transfer") {
        auto c = d.transferring(3);
        d.message(SharedStateAborted{3, toWire(pcclRankConnectionLost), "source lost", {}});
        CHECK_FALSE(answer(d.transferStopped(3, Status{pcclRankConnectionLost, "source lost"}), c.id).status.ok());
    }
    auto s = sent<SharedStateSync>(d.sync().out);
    REQUIRE(s.size() == 1);
    CHECK_FALSE(s[0].synced_before);
}

TEST_CASE("session: a second sync while one is in progress is invalid usage", "[session]") {
    Driver d;
    d.admit();
    auto first = d.sync();
    auto second = d.sync();
    CHECK(answer(second.out, second.id).status.code() == pcclInvalidUsage);
    CHECK(sent<SharedStateSync>(second.out).empty());
    CHECK(d.unanswered() == std::vector<RequestId>{first.id});
}

TEST_CASE("session: a sync while an all-reduce is in flight returns pcclPendingAsyncOps", "[session]") {
    Driver d;
    d.admit();
    d.startAllReduce(5);
    auto c = d.sync();
    CHECK(answer(c.out, c.id).status.code() == pcclPendingAsyncOps);
    CHECK(sent<SharedStateSync>(c.out).empty());
}

TEST_CASE("session: a sync before the session is connected is invalid usage, after death the death status", "[session]") {
    Driver d;
    auto c = d.sync();
    CHECK(answer(c.out, c.id).status.code() == pcclInvalidUsage);
    d.admit();
    d.message(Kicked{"bye"});
    c = d.sync();
    CHECK(answer(c.out, c.id).status.code() == pcclKicked);
    CHECK(sent<SharedStateSync>(c.out).empty());
}

// ---- the plan

TEST_CASE("session: a plan starts the transfer of that plan", "[session]") {
    Driver d;
    d.admit();
    d.sync(described(), kEntryBytes);
    auto out = d.message(planFor(3));
    CHECK(sent<SharedStateDone>(out).empty());
    auto starts = actionsOf<StartTransfer>(out);
    REQUIRE(starts.size() == 1);
    CHECK(starts[0].plan.seq == 3);
    CHECK(starts[0].plan.revision == 7);
    CHECK(starts[0].plan.peers == planFor(3).peers);
    CHECK(starts[0].plan.serve == planFor(3).serve);
    REQUIRE(starts[0].plan.receive.size() == 2);
    CHECK(starts[0].plan.receive[0].chunks == std::vector<uint32_t>{0, 1});
    CHECK_FALSE(d.s.allQuiet());
}

TEST_CASE("session: a plan at the edges of its index ranges is accepted", "[session]") {
    Driver d;
    d.admit();
    d.sync(described(), {kChunk, kChunk + 1, 1});
    SharedStatePlan p;
    p.seq = 3;
    p.peers = {member(1), member(2), member(3)};
    p.receive = {fetch(0, {0}, {2}), fetch(1, {1}, {0}), fetch(2, {0}, {1, 2})};
    p.serve = {2};
    auto out = d.message(p);
    CHECK(sent<SharedStateDone>(out).empty());
    CHECK(actionsOf<StartTransfer>(out).size() == 1);
}

TEST_CASE("session: a malformed plan is refused with pcclRankConnectionLost and starts no transfer", "[session]") {
    Driver d;
    d.admit();
    d.sync(described(), kEntryBytes);
    SharedStatePlan p = planFor(3);
    std::string why;
    SECTION("a serve index past the peers") {
        p.serve = {0, 2};
        why = "serve index out of range";
    }
    SECTION("an entry index past the entries") {
        p.receive[1].entry = 2;
        why = "entry index out of range";
    }
    SECTION("fewer digests than chunks") {
        p.receive[0].digests.pop_back();
        why = "fetch without digests or sources";
    }
    SECTION("more digests than chunks") {
        p.receive[1].digests.push_back({});
        why = "fetch without digests or sources";
    }
    SECTION("no sources") {
        p.receive[1].sources.clear();
        why = "fetch without digests or sources";
    }
    SECTION("a chunk past the entry's size") {
        p.receive[0].chunks = {0, 2};  // kChunk + 1 bytes: chunks 0 and 1
        why = "chunk index out of range";
    }
    SECTION("a chunk past a one-chunk entry") {
        p.receive[1].chunks = {1};
        why = "chunk index out of range";
    }
    SECTION("a source index past the peers") {
        p.receive[0].sources = {0, 2};
        why = "source index out of range";
    }
    auto out = d.message(p);
    CHECK(actionsOf<StartTransfer>(out).empty());
    auto done = sent<SharedStateDone>(out);
    REQUIRE(done.size() == 1);
    CHECK(done[0].seq == 3);
    CHECK_FALSE(done[0].ok);
    CHECK(done[0].result == toWire(pcclRankConnectionLost));
    CHECK(contains(done[0].error, "malformed plan"));
    CHECK(contains(done[0].error, why));
    CHECK(d.s.phase() == Phase::Connected);
}

TEST_CASE("session: a chunk of an empty entry is refused", "[session]") {
    Driver d;
    d.admit();
    d.sync(described(), {0});
    SharedStatePlan p;
    p.seq = 3;
    p.peers = {member(1)};
    p.receive = {fetch(0, {0}, {0})};
    auto done = sent<SharedStateDone>(d.message(p));
    REQUIRE(done.size() == 1);
    CHECK_FALSE(done[0].ok);
    CHECK(contains(done[0].error, "chunk index out of range"));
}

// The master answers a failure report with SharedStateAborted of that round's seq
// (Membership::onSharedStateDone -> abortSync); the refusing peer must end its sync with it.
TEST_CASE("session: a sync whose plan was refused ends when the master aborts that round", "[session]") {
    Driver d;
    d.admit();
    auto c = d.sync(described(), kEntryBytes);
    SharedStatePlan p = planFor(3);
    p.serve = {9};
    REQUIRE(sent<SharedStateDone>(d.message(p)).size() == 1);
    auto out = d.message(SharedStateAborted{3, toWire(pcclRankConnectionLost), "peer reported: malformed plan", {}});
    auto a = completion(out, c.id);
    REQUIRE(a.has_value());
    CHECK(a->status.code() == pcclRankConnectionLost);
}

TEST_CASE("session: a plan with no sync waiting is refused", "[session]") {
    Driver d;
    d.admit();
    auto out = d.message(planFor(3));
    CHECK(actionsOf<StartTransfer>(out).empty());
    auto done = sent<SharedStateDone>(out);
    REQUIRE(done.size() == 1);
    CHECK(done[0].seq == 3);
    CHECK_FALSE(done[0].ok);
    CHECK(contains(done[0].error, "no shared-state sync is waiting"));
}

TEST_CASE("session: a second plan during a transfer is refused and the transfer goes on", "[session]") {
    Driver d;
    d.admit();
    auto c = d.transferring(3);
    auto out = d.message(SharedStatePlan{4, 7, {}, {}, {}});
    CHECK(actionsOf<StartTransfer>(out).empty());
    REQUIRE(sent<SharedStateDone>(out).size() == 1);
    CHECK(sent<SharedStateDone>(out)[0].seq == 4);
    CHECK_FALSE(sent<SharedStateDone>(out)[0].ok);
    auto done = sent<SharedStateDone>(d.transferFinished(3));
    REQUIRE(done.size() == 1);
    CHECK(done[0].ok);
    CHECK(d.unanswered() == std::vector<RequestId>{c.id});
}

TEST_CASE("session: a plan while the committed transfer drains is refused", "[session]") {
    Driver d;
    d.admit();
    d.transferring(3);
    d.message(SharedStateCommitted{3, 8});
    auto out = d.message(SharedStatePlan{4, 8, {}, {}, {}});
    CHECK(actionsOf<StartTransfer>(out).empty());
    REQUIRE(sent<SharedStateDone>(out).size() == 1);
    CHECK_FALSE(sent<SharedStateDone>(out)[0].ok);
}

// ---- the end of the transfer

TEST_CASE("session: the end of the transfer is reported as SharedStateDone with its status", "[session]") {
    Driver d;
    d.admit();
    d.transferring(3);
    SECTION("ok") {
        auto done = sent<SharedStateDone>(d.transferFinished(3));
        REQUIRE(done.size() == 1);
        CHECK(done[0].seq == 3);
        CHECK(done[0].ok);
        CHECK(done[0].result == toWire(pcclSuccess));
    }
    SECTION("failed") {
        auto out = d.transferFinished(3, Status{pcclTimeout, "source 2 stalled"});
        auto done = sent<SharedStateDone>(out);
        REQUIRE(done.size() == 1);
        CHECK_FALSE(done[0].ok);
        CHECK(done[0].error == "source 2 stalled");
        CHECK(done[0].result == toWire(pcclTimeout));
        CHECK(actionsOf<Complete>(out).empty());  // the master decides the end
    }
}

TEST_CASE("session: the end of a transfer of another seq, or none, is not reported", "[session]") {
    Driver d;
    d.admit();
    CHECK(d.transferFinished(3).empty());
    d.sync();
    CHECK(d.transferFinished(0).empty());  // no plan yet
    d.message(SharedStatePlan{3, 7, {}, {}, {}});
    CHECK(d.transferFinished(2).empty());
}

TEST_CASE("session: a dead session reports no end of transfer", "[session]") {
    Driver d;
    d.admit();
    d.transferring(3);
    d.controlClosed();
    CHECK(sent<SharedStateDone>(d.transferFinished(3)).empty());
}

TEST_CASE("session: SharedStateCommitted stops the transfer; the sync completes with the revision and bytes once stopped", "[session]") {
    Driver d;
    d.admit();
    auto c = d.transferring(3, 7);
    d.transferFinished(3);
    auto out = d.message(SharedStateCommitted{3, 8});
    CHECK(actionsOf<Complete>(out).empty());
    auto stops = actionsOf<StopTransfer>(out);
    REQUIRE(stops.size() == 1);
    CHECK(stops[0].seq == 3);
    CHECK(stops[0].status.ok());
    CHECK_FALSE(d.s.allQuiet());
    auto a = answer(d.transferStopped(3, {}, OpStats{11, 22, 0}), c.id);
    CHECK(a.status.ok());
    REQUIRE(std::holds_alternative<SyncResult>(a.reply));
    CHECK(std::get<SyncResult>(a.reply).revision == 8);
    CHECK(std::get<SyncResult>(a.reply).txBytes == 11);
    CHECK(std::get<SyncResult>(a.reply).rxBytes == 22);
    CHECK(d.s.allQuiet());
    auto next = d.sync();
    CHECK(completionsOf(next.out, next.id).empty());
}

TEST_CASE("session: a transfer that failed while draining after the commit fails the sync", "[session]") {
    Driver d;
    d.admit();
    auto c = d.transferring(3);
    d.message(SharedStateCommitted{3, 8});
    auto a = answer(d.transferStopped(3, Status{pcclRankConnectionLost, "receiver 2 reset"}), c.id);
    CHECK(a.status.code() == pcclRankConnectionLost);
    auto next = sent<SharedStateSync>(d.sync().out);
    REQUIRE(next.size() == 1);
    CHECK_FALSE(next[0].synced_before);
}

// ---- aborts and lost sources

TEST_CASE("session: SharedStateAborted before the plan completes the sync with the reason and 'waiting to start'", "[session]") {
    Driver d;
    d.admit();
    auto c = d.sync();
    auto out = d.message(SharedStateAborted{0, toWire(pcclNoSharedStateAvailable), "no peer has revision 5", {}});
    CHECK(actionsOf<StopTransfer>(out).empty());
    auto a = answer(out, c.id);
    CHECK(a.status.code() == pcclNoSharedStateAvailable);
    CHECK(contains(a.status.message(), "no peer has revision 5"));
    CHECK(contains(a.status.message(), "waiting to start"));
    CHECK(d.s.phase() == Phase::Connected);
    auto next = d.sync();
    CHECK(completionsOf(next.out, next.id).empty());
}

TEST_CASE("session: SharedStateAborted after the plan stops the transfer; the sync completes with the stop status", "[session]") {
    Driver d;
    d.admit();
    auto c = d.transferring(3);
    auto out = d.message(SharedStateAborted{3, toWire(pcclRankConnectionLost), "peer 2 lost", {}});
    CHECK(actionsOf<Complete>(out).empty());
    auto stops = actionsOf<StopTransfer>(out);
    REQUIRE(stops.size() == 1);
    CHECK(stops[0].seq == 3);
    CHECK(stops[0].status.code() == pcclRankConnectionLost);
    CHECK(contains(stops[0].status.message(), "peer 2 lost"));
    CHECK(d.message(SharedStateCommitted{3, 8}).empty());  // too late: already stopping
    auto a = answer(d.transferStopped(3, Status{pcclRankConnectionLost, "peer 2 lost; fetched 3 of 5 chunks"}), c.id);
    CHECK(a.status.code() == pcclRankConnectionLost);
    CHECK(contains(a.status.message(), "fetched 3 of 5 chunks"));
}

TEST_CASE("session: SharedStateAborted closes every lost peer", "[session]") {
    const uint64_t seq = GENERATE(0, 3, 99);
    Driver d;
    d.admit();
    if (seq == 0) d.sync();
    else d.transferring(3);
    auto out = d.message(SharedStateAborted{seq, toWire(pcclRankConnectionLost), "gone", {peerUuid(1), peerUuid(4)}});
    auto closes = actionsOf<ClosePeer>(out);
    REQUIRE(closes.size() == 2);
    CHECK(closes[0].peer == peerUuid(1));
    CHECK(closes[1].peer == peerUuid(4));
}

TEST_CASE("session: a SharedStateAborted carrying pcclSuccess still fails the sync", "[session]") {
    Driver d;
    d.admit();
    auto c = d.sync();
    auto a = answer(d.message(SharedStateAborted{0, 0, "?", {}}), c.id);
    CHECK(a.status.code() == pcclInternalError);
}

TEST_CASE("session: stale shared-state messages of another seq are ignored", "[session]") {
    Driver d;
    d.admit();
    auto c = d.transferring(3);
    CHECK(d.message(SharedStateCommitted{2, 8}).empty());
    CHECK(d.message(SharedStateAborted{2, toWire(pcclRankConnectionLost), "old", {}}).empty());
    CHECK(d.message(SharedStateAborted{0, toWire(pcclRankConnectionLost), "old", {}}).empty());
    CHECK(d.message(SharedStateSourceLost{2, peerUuid(1)}).empty());
    CHECK(d.transferStopped(3).empty());  // nothing was stopped
    d.message(SharedStateCommitted{3, 8});
    CHECK(d.transferStopped(2).empty());
    CHECK(d.unanswered() == std::vector<RequestId>{c.id});
    CHECK(answer(d.transferStopped(3), c.id).status.ok());
}

TEST_CASE("session: SharedStateSourceLost closes the peer and reroutes the running transfer", "[session]") {
    Driver d;
    d.admit();
    d.transferring(3);
    auto out = d.message(SharedStateSourceLost{3, peerUuid(2)});
    auto closes = actionsOf<ClosePeer>(out);
    REQUIRE(closes.size() == 1);
    CHECK(closes[0].peer == peerUuid(2));
    auto lost = actionsOf<SourceLost>(out);
    REQUIRE(lost.size() == 1);
    CHECK(lost[0].seq == 3);
    CHECK(lost[0].peer == peerUuid(2));
    CHECK(actionsOf<Complete>(out).empty());
}

TEST_CASE("session: SharedStateSourceLost outside a running transfer is ignored", "[session]") {
    Driver d;
    d.admit();
    SECTION("no sync") { CHECK(d.message(SharedStateSourceLost{3, peerUuid(2)}).empty()); }
    SECTION("waiting for the plan") {
        d.sync();
        CHECK(d.message(SharedStateSourceLost{0, peerUuid(2)}).empty());
    }
    SECTION("stopping after the commit") {
        d.transferring(3);
        d.message(SharedStateCommitted{3, 8});
        CHECK(d.message(SharedStateSourceLost{3, peerUuid(2)}).empty());
    }
}
