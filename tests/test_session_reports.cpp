// The peer's Session, driven with scripted events: what it reports of an all-reduce: its
// description to the master, with the configured segment size, so that peers configured
// differently get pcclMismatch.
#include <catch2/catch.hpp>

#include "support/session_driver.h"

using namespace pccl;
using namespace pccl::testing::session;

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
