// The peer's Session, driven with scripted events: what it reports of an all-reduce: its
// description to the master (with the configured segment size, so that peers configured
// differently get pcclMismatch), and its duration in the reply to the caller.
#include <catch2/catch.hpp>

#include "support/session_driver.h"

using namespace pccl;
using namespace pccl::testing::session;

namespace {

ReduceResult replyOf(const Complete &c) {
    REQUIRE(std::holds_alternative<ReduceResult>(c.reply));
    return std::get<ReduceResult>(c.reply);
}

} // namespace

// ---- the segment size is part of the description (item 13)

TEST_CASE("session: CollectiveInit carries the configured segment size, 0 for auto", "[session]") {
    const uint64_t segment = GENERATE(uint64_t{0}, uint64_t{4096}, uint64_t{1} << 20, uint64_t{64} << 20);
    Driver d;
    d.admit();
    auto c = d.startAllReduce(reduceArgs(7), segment);
    REQUIRE(answer(c.out, c.id).status.ok());
    auto inits = sent<CollectiveInit>(c.out);
    REQUIRE(inits.size() == 1);
    CHECK(inits[0].desc.segment_bytes == segment);
}

TEST_CASE("session: a mismatch from the master fails the await with pcclMismatch, not a retryable loss", "[session]") {
    Driver d;
    d.admit({selfMember(), member(1)}, {2, 2, 1, 2});
    auto start = d.startAllReduce(reduceArgs(7), 65536);
    REQUIRE(answer(start.out, start.id).status.ok());
    auto w = d.awaitAllReduce(7);
    const std::string why = "peers disagree on all-reduce tag 7: ... segment 65536 bytes, ... segment auto";
    auto out = d.message(CollectiveAborted{7, 0, toWire(pcclMismatch), why, {}});
    CHECK(actionsOf<StopAllReduce>(out).empty());  // no engine was started
    auto a = answer(out, w.id);
    CHECK(a.status.code() == pcclMismatch);
    CHECK(contains(a.status.message(), "segment 65536 bytes"));
    CHECK(d.s.inFlight() == 0);
}

// ---- the duration of each all-reduce (item 15)

TEST_CASE("session: an all-reduce's reply carries the time from its start to its commit", "[session]") {
    Driver d;
    d.admit();
    d.s.setTimeUs(5'000'000'123);
    d.commence(7, 4, ringWithSelfAt(2, 0));
    auto w = d.awaitAllReduce(7);
    d.s.setTimeUs(5'000'250'000);
    d.allReduceFinished(7, 4, {}, OpStats{1000, 3000, 0});
    d.s.setTimeUs(5'000'431'123);
    auto a = answer(d.message(CollectiveCommitted{7, 4}), w.id);
    CHECK(a.status.ok());
    const ReduceResult r = replyOf(a);
    CHECK(r.durationUs == 431'000);
    CHECK(r.txBytes == 1000);
    CHECK(r.rxBytes == 3000);
}

TEST_CASE("session: an all-reduce awaited after it ended reports its end, not the time of the await", "[session]") {
    Driver d;
    d.admit();
    d.at(200'000);
    d.commence(7, 4, ringWithSelfAt(2, 0));
    d.allReduceFinished(7, 4);
    d.at(200'040);
    d.message(CollectiveCommitted{7, 4});
    d.at(260'000);
    auto w = d.awaitAllReduce(7);
    CHECK(replyOf(answer(w.out, w.id)).durationUs == 40'000);
}

TEST_CASE("session: an aborted all-reduce reports how long it ran until its engine stopped", "[session]") {
    Driver d;
    d.admit({selfMember(), member(1)}, {2, 2, 1, 2});
    d.at(300'000);
    d.commence(7, 4, ringWithSelfAt(2, 0));
    auto w = d.awaitAllReduce(7);
    d.at(300'100);
    auto stop = d.message(CollectiveAborted{7, 4, toWire(pcclRankConnectionLost), "peer lost", {peerUuid(1)}});
    REQUIRE(actionsOf<StopAllReduce>(stop).size() == 1);
    d.at(300'175);
    auto a = answer(d.allReduceStopped(7, 4, Status{pcclRankConnectionLost, "peer lost"}, OpStats{10, 20, 0}), w.id);
    CHECK(a.status.code() == pcclRankConnectionLost);
    CHECK(replyOf(a).durationUs == 175'000);
    CHECK(replyOf(a).txBytes == 10);
}

TEST_CASE("session: setTime (milliseconds) and setTimeUs (microseconds) set one clock", "[session]") {
    Driver d;
    d.admit();
    d.s.setTimeUs(7'000'999);
    auto start = d.startAllReduce(reduceArgs(1));
    REQUIRE(answer(start.out, start.id).status.ok());
    auto w = d.awaitAllReduce(1);
    d.s.setTime(7'002);
    auto a = answer(d.message(CollectiveAborted{1, 0, toWire(pcclMismatch), "m", {}}), w.id);
    CHECK(replyOf(a).durationUs == 1001);
}
