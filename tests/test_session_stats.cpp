// The peer's Session, driven with scripted events: its counters (pcclGetCommunicatorStats) and
// the StatsReport it sends the master on a tick: after the period, only when a counter changed,
// only while admitted.
#include <catch2/catch.hpp>

#include "support/session_driver.h"

using namespace pccl;
using namespace pccl::testing::session;
using pccl::peer::kStatsReportPeriodMs;

namespace {

// All-reduce `tag` on a ring of this peer and member(1), run to the master's commit.
void completeAllReduce(Driver &d, uint64_t tag, uint64_t seq, const OpStats &stats) {
    d.commence(tag, seq, ringWithSelfAt(2, 0));
    auto w = d.awaitAllReduce(tag);
    d.allReduceFinished(tag, seq, {}, stats);
    auto out = d.message(CollectiveCommitted{tag, seq});
    REQUIRE(answer(out, w.id).status.ok());
}

// An all-reduce aborted by the master after its engine moved `stats`.
void failAllReduce(Driver &d, uint64_t tag, uint64_t seq, const OpStats &stats) {
    d.commence(tag, seq, ringWithSelfAt(2, 0));
    auto w = d.awaitAllReduce(tag);
    auto out = d.message(CollectiveAborted{tag, seq, toWire(pcclRankConnectionLost), "peer lost", {}});
    REQUIRE(actionsOf<StopAllReduce>(out).size() == 1);
    out = d.allReduceStopped(tag, seq, Status{pcclRankConnectionLost, "peer lost"}, stats);
    REQUIRE(answer(out, w.id).status.code() == pcclRankConnectionLost);
}

} // namespace

TEST_CASE("session stats: before connecting, zeros and no rank", "[session]") {
    Driver d;
    auto s = d.s.stats();
    CHECK(s.counters == pccl::peer::Counters{});
    CHECK(s.worldSize == 0);
    CHECK(s.rank == UINT32_MAX);
    CHECK(s.epoch == 0);
}

TEST_CASE("session stats: all-reduces completed and failed, bytes, the last one's duration and rate", "[session]") {
    Driver d;
    d.admit(ringWithSelfAt(2, 0), {2, 2, 1, 2});
    auto s = d.s.stats();
    CHECK(s.worldSize == 2);
    CHECK(s.groupWorldSize == 2);
    CHECK(s.rank == 0);
    CHECK(s.peerGroup == 3);
    CHECK(s.epoch == d.epoch);

    d.at(200000);
    d.commence(1, 1, ringWithSelfAt(2, 0));
    auto w = d.awaitAllReduce(1);
    d.at(200250);  // 250 ms later
    d.allReduceFinished(1, 1, {}, OpStats{4000, 4000, 123456});
    auto out = d.message(CollectiveCommitted{1, 1});
    REQUIRE(answer(out, w.id).status.ok());
    s = d.s.stats();
    CHECK(s.counters.allReducesCompleted == 1);
    CHECK(s.counters.allReducesFailed == 0);
    CHECK(s.counters.txBytes == 4000);
    CHECK(s.counters.rxBytes == 4000);
    CHECK(s.counters.lastAllReduceUs == 250000);
    CHECK(s.counters.lastAllReduceBytes == 1000 * sizeof(float));  // reduceArgs: 1000 floats
    CHECK(s.counters.lastSendBytesPerS == 123456);
    CHECK(s.counters.lastSendTo == member(1).uuid);

    failAllReduce(d, 2, 2, OpStats{100, 50, 0});
    s = d.s.stats();
    CHECK(s.counters.allReducesCompleted == 1);
    CHECK(s.counters.allReducesFailed == 1);
    CHECK(s.counters.txBytes == 4100);
    CHECK(s.counters.rxBytes == 4050);
    CHECK(s.counters.lastAllReduceUs == 250000);  // of the last successful one
    CHECK(s.counters.lastSendBytesPerS == 123456);

    // A mismatch (nothing started) is a failed all-reduce; a tag already in flight counts nowhere.
    d.startAllReduce(3);
    auto again = d.startAllReduce(3);
    CHECK(answer(again.out, again.id).status.code() == pcclInvalidUsage);
    auto w3 = d.awaitAllReduce(3);
    out = d.message(CollectiveAborted{3, 0, toWire(pcclMismatch), "peers disagree", {}});
    REQUIRE(answer(out, w3.id).status.code() == pcclMismatch);
    CHECK(d.s.stats().counters.allReducesFailed == 2);
}

TEST_CASE("session stats: other collectives count as collectives, not as all-reduces", "[session]") {
    Driver d;
    d.admit(ringWithSelfAt(2, 0), {2, 2, 1, 2});
    completeAllReduce(d, 1, 1, OpStats{8, 8, 0});
    const auto afterAllReduce = d.s.stats().counters;

    ReduceArgs b = reduceArgs(2, 64);
    b.kind = CollectiveKind::Broadcast;
    b.world = 2;
    auto start = d.startAllReduce(b);
    REQUIRE(answer(start.out, start.id).status.ok());
    auto w = d.awaitAllReduce(2);
    REQUIRE(actionsOf<StartAllReduce>(d.message(CollectiveCommence{2, 2, ringWithSelfAt(2, 0)})).size() == 1);
    d.allReduceFinished(2, 2, {}, OpStats{256, 0, 0});
    REQUIRE(answer(d.message(CollectiveCommitted{2, 2}), w.id).status.ok());

    ReduceArgs g = reduceArgs(3, 64);
    g.kind = CollectiveKind::AllGather;
    g.world = 2;
    start = d.startAllReduce(g);
    REQUIRE(answer(start.out, start.id).status.ok());
    w = d.awaitAllReduce(3);
    auto out = d.message(CollectiveAborted{3, 0, toWire(pcclMismatch), "peers disagree", {}});
    REQUIRE(answer(out, w.id).status.code() == pcclMismatch);

    auto c = d.s.stats().counters;
    CHECK(c.collectivesCompleted == 2);
    CHECK(c.collectivesFailed == 1);
    CHECK(c.allReducesCompleted == 1);
    CHECK(c.allReducesFailed == 0);
    CHECK(c.lastAllReduceBytes == afterAllReduce.lastAllReduceBytes);  // of the all-reduce, not the broadcast
    CHECK(c.lastAllReduceUs == afterAllReduce.lastAllReduceUs);
    CHECK(c.txBytes == 8 + 256);  // bytes count for every kind

    d.message(HeartbeatAck{});
    auto reports = sent<StatsReport>(d.tickAt(d.now + kStatsReportPeriodMs + 1));
    REQUIRE(reports.size() == 1);
    CHECK(reports[0].collectives_completed == 2);
    CHECK(reports[0].collectives_failed == 1);
}

TEST_CASE("session stats: syncs and votes, completed and failed", "[session]") {
    Driver d;
    d.admit();
    auto c = d.transferring(5);
    d.transferFinished(5);
    auto out = d.message(SharedStateCommitted{5, 7});
    REQUIRE(actionsOf<StopTransfer>(out).size() == 1);
    out = d.transferStopped(5, {}, OpStats{10, 20, 0});
    REQUIRE(answer(out, c.id).status.ok());

    c = d.transferring(6);
    out = d.message(SharedStateAborted{6, toWire(pcclRankConnectionLost), "source lost", {}});
    REQUIRE(actionsOf<StopTransfer>(out).size() == 1);
    out = d.transferStopped(6, Status{pcclRankConnectionLost, "source lost"}, OpStats{1, 2, 0});
    REQUIRE_FALSE(answer(out, c.id).status.ok());

    auto v = d.vote(VoteKind::PeersPending);
    out = d.message(PeersPendingResult{false});
    REQUIRE(answer(out, v.id).status.ok());
    v = d.vote(VoteKind::Topology);
    out = d.message(VoteFailed{0, toWire(pcclTimeout), "vote deadline"});
    REQUIRE_FALSE(answer(out, v.id).status.ok());

    auto s = d.s.stats().counters;
    CHECK(s.syncsCompleted == 1);
    CHECK(s.syncsFailed == 1);
    CHECK(s.txBytes == 11);
    CHECK(s.rxBytes == 22);
    CHECK(s.votesCompleted == 1);
    CHECK(s.votesFailed == 1);
}

TEST_CASE("session stats: counters survive the end of the session, world and rank do not", "[session]") {
    Driver d;
    d.admit(ringWithSelfAt(2, 1), {2, 2, 1, 2});
    completeAllReduce(d, 1, 1, OpStats{8, 8, 0});
    d.controlClosed();
    REQUIRE(d.s.phase() == Phase::Dead);
    auto s = d.s.stats();
    CHECK(s.counters.allReducesCompleted == 1);
    CHECK(s.worldSize == 0);
    CHECK(s.rank == UINT32_MAX);
}

TEST_CASE("session stats: a report goes to the master after a change, at most once per period", "[session]") {
    Driver d;
    d.admit(ringWithSelfAt(2, 0), {2, 2, 1, 2});
    auto tick = [&](uint64_t t) {  // a tick with the master alive
        d.message(HeartbeatAck{});
        return d.tickAt(t);
    };
    // Nothing done yet: no report.
    CHECK(sent<StatsReport>(tick(d.now + 1000)).empty());

    completeAllReduce(d, 1, 1, OpStats{4000, 3000, 5000000});
    auto out = tick(d.now + 1000);
    auto reports = sent<StatsReport>(out);
    REQUIRE(reports.size() == 1);
    CHECK(sent<Heartbeat>(out).size() == 1);  // the heartbeat still goes out
    CHECK(reports[0].collectives_completed == 1);
    CHECK(reports[0].tx_bytes == 4000);
    CHECK(reports[0].rx_bytes == 3000);
    CHECK(reports[0].last_op_bytes == 4000);
    REQUIRE(reports[0].links.size() == 1);
    CHECK(reports[0].links[0].to == member(1).uuid);
    CHECK(reports[0].links[0].bytes_per_second == 5000000);
    const uint64_t sentAt = d.now;

    // Unchanged: none, however long it waits; a vote (not in the report) changes nothing.
    auto v = d.vote(VoteKind::PeersPending);
    REQUIRE(answer(d.message(PeersPendingResult{false}), v.id).status.ok());
    CHECK(sent<StatsReport>(tick(sentAt + kStatsReportPeriodMs)).empty());
    CHECK(sent<StatsReport>(tick(sentAt + 3 * kStatsReportPeriodMs)).empty());

    // Changed: not before the period since the last report has passed.
    d.at(sentAt + 3 * kStatsReportPeriodMs);
    failAllReduce(d, 2, 2, OpStats{1, 1, 0});
    CHECK(sent<StatsReport>(tick(sentAt + 3 * kStatsReportPeriodMs + 100)).size() == 1);
    const uint64_t second = d.now;
    completeAllReduce(d, 3, 3, OpStats{1, 1, 0});
    CHECK(sent<StatsReport>(tick(second + kStatsReportPeriodMs - 1)).empty());
    reports = sent<StatsReport>(tick(second + kStatsReportPeriodMs));
    REQUIRE(reports.size() == 1);
    CHECK(reports[0].collectives_completed == 2);
    CHECK(reports[0].collectives_failed == 1);
}

TEST_CASE("session stats: shared-state and probe bytes are counted apart; the report's bytes cover every kind",
          "[session]") {
    Driver d;
    d.admit(ringWithSelfAt(2, 0), {2, 2, 1, 2});
    completeAllReduce(d, 1, 1, OpStats{100, 200, 0});
    auto c = d.transferring(5);
    d.transferFinished(5);
    REQUIRE(actionsOf<StopTransfer>(d.message(SharedStateCommitted{5, 7})).size() == 1);
    REQUIRE(answer(d.transferStopped(5, {}, OpStats{10, 5000, 0}), c.id).status.ok());
    d.probeDone(11, BandwidthReport{11, {}, {}}, OpStats{70000, 60000, 0});

    auto s = d.s.stats().counters;
    CHECK(s.txBytes == 110);  // pcclCommStats_t: all-reduces and transfers, probes excluded
    CHECK(s.rxBytes == 5200);
    CHECK(s.syncTxBytes == 10);
    CHECK(s.syncRxBytes == 5000);
    CHECK(s.probeTxBytes == 70000);
    CHECK(s.probeRxBytes == 60000);

    d.message(HeartbeatAck{});
    auto reports = sent<StatsReport>(d.tickAt(d.now + kStatsReportPeriodMs + 1));
    REQUIRE(reports.size() == 1);
    CHECK(reports[0].tx_bytes == 70110);  // every data-plane byte
    CHECK(reports[0].rx_bytes == 65200);
    CHECK(reports[0].shared_state_tx_bytes == 10);
    CHECK(reports[0].shared_state_rx_bytes == 5000);
    CHECK(reports[0].probe_tx_bytes == 70000);
    CHECK(reports[0].probe_rx_bytes == 60000);

    // A probe alone is a change worth a report.
    const uint64_t sentAt = d.now;
    d.probeDone(12, BandwidthReport{12, {}, {}}, OpStats{1, 2, 0});
    d.message(HeartbeatAck{});
    reports = sent<StatsReport>(d.tickAt(sentAt + kStatsReportPeriodMs));
    REQUIRE(reports.size() == 1);
    CHECK(reports[0].probe_tx_bytes == 70001);
    CHECK(reports[0].probe_rx_bytes == 60002);
}

TEST_CASE("session stats: no report before admission, nor after the session ended", "[session]") {
    Driver d;
    d.connect();
    // Registered, not admitted: the tick sends a heartbeat only (the master kicks a peer that
    // reports before its admission).
    auto out = d.tickAt(d.now + kStatsReportPeriodMs + 1);
    CHECK(sent<Heartbeat>(out).size() == 1);
    CHECK(sent<StatsReport>(out).empty());

    Driver e;
    e.admit(ringWithSelfAt(2, 0), {2, 2, 1, 2});
    e.commence(1, 1, ringWithSelfAt(2, 0));
    auto w = e.awaitAllReduce(1);
    out = e.abort(Status{pcclAborted, "aborted"});
    REQUIRE(actionsOf<StopAllReduce>(out).size() == 1);
    out = e.allReduceStopped(1, 1, Status{pcclAborted, "aborted"}, OpStats{5, 5, 0});
    REQUIRE(answer(out, w.id).status.code() == pcclAborted);
    CHECK(e.s.stats().counters.allReducesFailed == 1);  // changed, but the session is dead
    CHECK(sent<StatsReport>(e.tickAt(e.now + 10 * kStatsReportPeriodMs)).empty());
}
