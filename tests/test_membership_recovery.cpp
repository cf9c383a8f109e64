// A restarted master rebuilds the run from its peers' Rejoin reports (docs/master_recovery.md):
// scripted events, no sockets.
#include <catch2/catch.hpp>

#include "protocol/wire_result.h"
#include "support/membership_driver.h"

using namespace pccl;
using namespace pccl::testing;

namespace {

constexpr uint8_t kRunning = static_cast<uint8_t>(OpPhase::Running);
constexpr uint8_t kOk = static_cast<uint8_t>(OpPhase::FinishedOk);
constexpr uint8_t kWaiting = static_cast<uint8_t>(OpPhase::Waiting);

// The old run: peers with these ids (client ids on the new master) and uuids, in ring order.
struct OldRun {
    std::vector<ClientId> ids;
    std::vector<Uuid> uuids;
    uint64_t masterEpoch = 4, topologyEpoch = 7, maxSeq = 41, revision = 12;

    explicit OldRun(size_t n) {
        for (size_t i = 0; i < n; ++i) {
            ids.push_back(static_cast<ClientId>(i + 1));
            uuids.push_back(Uuid::random());
        }
    }
    std::vector<RingMember> ring() const {
        std::vector<RingMember> r;
        for (size_t i = 0; i < ids.size(); ++i) {
            RingMember m;
            m.uuid = uuids[i];
            m.data_addr = addr(static_cast<uint8_t>(ids[i]));
            m.data_addr.port = 5000;
            r.push_back(m);
        }
        return r;
    }
    Rejoin report(size_t i, std::vector<OpReport> ops = {}) const {
        Rejoin r;
        r.hello = hello();
        r.hello.uuid = uuids[i];
        r.hello.master_epoch = masterEpoch;
        r.topology_epoch = topologyEpoch;
        r.ring = ring();
        r.revision = revision;
        r.max_seq = maxSeq;
        r.ops = std::move(ops);
        return r;
    }
    // Connects peer i to `m` and sends its Rejoin.
    Actions rejoin(Membership &m, size_t i, std::vector<OpReport> ops = {}) const {
        m.onConnect(ids[i], addr(static_cast<uint8_t>(ids[i])));
        return m.onMessage(ids[i], report(i, std::move(ops)));
    }
};

OpReport op(uint64_t tag, uint64_t seq, uint8_t phase) {
    OpReport o;
    o.tag = tag;
    o.seq = seq;
    o.phase = phase;
    o.desc = init(tag).desc;
    return o;
}

pccl::master::MembershipOptions options() {
    pccl::master::MembershipOptions o;
    o.heartbeatTimeoutMs = 5000;
    return o;
}

} // namespace

TEST_CASE("recovery: a restarted master rebuilds the ring from its peers, in their order, and moves past their "
          "epoch and sequence numbers", "[master][recovery]") {
    Membership m(options());
    m.setTime(1000);
    OldRun run(3);
    Actions last;
    for (size_t i = 0; i < 3; ++i) {
        last = run.rejoin(m, i);
        auto w = sent<Welcome>(last, run.ids[i]);
        REQUIRE(w.size() == 1);
        CHECK(w[0].master_epoch == run.masterEpoch + 1);  // adopted past what the peers saw
        if (i < 2) CHECK(sent<Rejoined>(last, run.ids[0]).empty());  // waits for the whole ring
    }
    CHECK(m.acceptedCount() == 3);
    CHECK_FALSE(m.recovering());
    for (ClientId id : run.ids) {
        auto r = sent<Rejoined>(last, id);
        REQUIRE(r.size() == 1);
        CHECK(r[0].master_epoch == run.masterEpoch + 1);
        CHECK(r[0].topology_epoch == run.topologyEpoch);
        CHECK(r[0].ring == run.ring());
        CHECK(r[0].world.global_world_size == 3);
    }
    // The run goes on: the next all-reduce commences with a sequence above every old one.
    Actions out;
    for (ClientId id : run.ids) out = m.onMessage(id, init(9));
    auto go = sent<CollectiveCommence>(out, run.ids[0]);
    REQUIRE(go.size() == 1);
    CHECK(go[0].seq > run.maxSeq);
    CHECK(go[0].ring == run.ring());
}

TEST_CASE("recovery: an all-reduce every peer finished is committed; one a peer saw committed is committed on the "
          "others", "[master][recovery]") {
    Membership m(options());
    OldRun run(3);
    SECTION("all finished") {
        Actions last;
        for (size_t i = 0; i < 3; ++i) last = run.rejoin(m, i, {op(5, 40, kOk)});
        for (ClientId id : run.ids) {
            auto c = sent<CollectiveCommitted>(last, id);
            REQUIRE(c.size() == 1);
            CHECK(c[0].tag == 5);
            CHECK(c[0].seq == 40);
        }
    }
    SECTION("one peer saw the commit (its call returned and it waits to start the next one)") {
        run.rejoin(m, 0, {op(5, 40, kOk)});
        run.rejoin(m, 1, {op(5, 40, kRunning)});
        Rejoin third = run.report(2, {op(5, 0, kWaiting)});
        third.committed = {40};
        m.onConnect(3, addr(3));
        auto last = m.onMessage(3, third);
        CHECK(sent<CollectiveCommitted>(last, 1).size() == 1);
        CHECK(sent<CollectiveCommitted>(last, 2).size() == 1);
        CHECK(sent<CollectiveCommitted>(last, 3).empty());  // its waiting start is its next all-reduce
        CHECK(sent<CollectiveAborted>(last, 3).empty());
    }
}

TEST_CASE("recovery: an all-reduce that did not finish everywhere is aborted on every holder, all or nothing",
          "[master][recovery]") {
    Membership m(options());
    OldRun run(3);
    SECTION("a peer still running") {
        run.rejoin(m, 0, {op(5, 40, kOk)});
        run.rejoin(m, 1, {op(5, 40, kOk)});
        auto last = run.rejoin(m, 2, {op(5, 40, kRunning)});
        for (ClientId id : run.ids) {
            auto a = sent<CollectiveAborted>(last, id);
            REQUIRE(a.size() == 1);
            CHECK(a[0].seq == 40);
            CHECK(failureFromWire(a[0].result) == pcclRankConnectionLost);
        }
    }
    SECTION("the old master's commence reached only some peers: the waiting one fails with them") {
        run.rejoin(m, 0, {op(5, 40, kOk)});
        run.rejoin(m, 1, {op(5, 40, kOk)});
        auto last = run.rejoin(m, 2, {op(5, 0, kWaiting)});
        auto a = sent<CollectiveAborted>(last, 3);
        REQUIRE(a.size() == 1);
        CHECK(a[0].seq == 0);
        CHECK(sent<CollectiveAborted>(last, 1).size() == 1);
    }
    SECTION("a peer that does not come back: the others rebuild without it when the window ends") {
        run.rejoin(m, 0, {op(5, 40, kOk)});
        auto before = run.rejoin(m, 1, {op(5, 40, kOk)});
        CHECK(sent<Rejoined>(before, 1).empty());
        m.setTime(3000);
        CHECK(sent<Rejoined>(m.onTick(), 1).empty());
        m.onMessage(1, Heartbeat{});  // they stay alive while they wait
        m.onMessage(2, Heartbeat{});
        m.setTime(5001);
        auto last = m.onTick();
        auto r = sent<Rejoined>(last, 1);
        REQUIRE(r.size() == 1);
        CHECK(r[0].ring.size() == 2);
        CHECK(r[0].world.global_world_size == 2);
        CHECK(sent<CollectiveAborted>(last, 1).size() == 1);
        CHECK(sent<CollectiveAborted>(last, 2).size() == 1);
    }
    SECTION("a tag nobody saw commence is left to the peers' new starts") {
        run.rejoin(m, 0, {op(5, 0, kWaiting)});
        run.rejoin(m, 1, {op(5, 0, kWaiting)});
        auto last = run.rejoin(m, 2);
        CHECK(sent<CollectiveAborted>(last, 1).empty());
        CHECK(sent<CollectiveCommitted>(last, 1).empty());
    }
}

TEST_CASE("recovery: a shared-state sync commits where it finished everywhere and aborts otherwise; the revision "
          "continues", "[master][recovery]") {
    Membership m(options());
    OldRun run(2);
    auto syncing = [&](size_t i, uint64_t seq, uint8_t phase) {
        Rejoin r = run.report(i);
        r.syncing = true;
        r.sync_seq = seq;
        r.sync_phase = phase;
        r.sync_revision = run.revision + 1;
        m.onConnect(run.ids[i], addr(static_cast<uint8_t>(run.ids[i])));
        return m.onMessage(run.ids[i], r);
    };
    SECTION("finished everywhere") {
        syncing(0, 30, kOk);
        auto last = syncing(1, 30, kOk);
        for (ClientId id : run.ids) {
            auto c = sent<SharedStateCommitted>(last, id);
            REQUIRE(c.size() == 1);
            CHECK(c[0].revision == run.revision + 1);
        }
    }
    SECTION("not finished everywhere") {
        syncing(0, 30, kOk);
        auto last = syncing(1, 30, kRunning);
        CHECK(sent<SharedStateAborted>(last, 1).size() == 1);
        CHECK(sent<SharedStateAborted>(last, 2).size() == 1);
    }
}

TEST_CASE("recovery: a joiner of the old run waits for the recovery and is admitted by the next vote; alone, it "
          "founds the run when the window ends", "[master][recovery]") {
    Membership m(options());
    OldRun run(2);
    Hello joiner = hello();
    joiner.master_epoch = run.masterEpoch;
    m.onConnect(9, addr(9));
    auto held = m.onMessage(9, joiner);
    CHECK(sent<Welcome>(held, 9).size() == 1);
    CHECK(sent<TopologyUpdate>(held, 9).empty());  // not founding a run of its own
    CHECK(m.recovering());
    SECTION("the old peers come back") {
        run.rejoin(m, 0);
        auto last = run.rejoin(m, 1);
        CHECK(sent<Rejoined>(last, 1).size() == 1);
        CHECK(sent<TopologyUpdate>(last, 9).empty());
        CHECK(m.pendingCount() == 1);
        m.onMessage(1, VoteUpdateTopology{});
        auto vote = m.onMessage(2, VoteUpdateTopology{});
        auto up = sent<TopologyUpdate>(vote, 9);
        REQUIRE(up.size() == 1);
        CHECK(up[0].ring.size() == 3);
        CHECK(up[0].epoch > run.topologyEpoch);
    }
    SECTION("nobody comes back") {
        m.setTime(3000);
        m.onMessage(9, Heartbeat{});
        m.setTime(5001);
        auto founded = m.onTick();
        CHECK(sent<TopologyUpdate>(founded, 9).size() == 1);
    }
}

TEST_CASE("recovery: epochs keep a stale master or a removed peer out of the run", "[master][recovery]") {
    Cluster c;
    c.firstPeer(1);  // this master founded a run at epoch 1
    SECTION("a peer that saw a newer master is sent elsewhere") {
        Hello h = hello();
        h.master_epoch = 3;
        c.m.onConnect(2, addr(2));
        auto out = c.m.onMessage(2, h);
        auto r = sent<Reject>(out, 2);
        REQUIRE(r.size() == 1);
        CHECK(r[0].retry);
        CHECK(r[0].reason.find("stale master") != std::string::npos);
        CHECK(closed(out, 2));
    }
    SECTION("a peer of this master's own run that was removed cannot rejoin it") {
        OldRun run(1);
        run.masterEpoch = 1;
        run.ids = {2};
        c.m.onConnect(2, addr(2));
        auto out = c.m.onMessage(2, run.report(0));
        auto r = sent<Reject>(out, 2);
        REQUIRE(r.size() == 1);
        CHECK_FALSE(r[0].retry);
        CHECK(failureFromWire(r[0].result) == pcclKicked);
        CHECK(c.m.acceptedCount() == 1);
    }
    SECTION("a fresh joiner is welcome at this master's epoch") {
        auto out = c.join(2);
        auto w = sent<Welcome>(out, 2);
        REQUIRE(w.size() == 1);
        CHECK(w[0].master_epoch == 1);
    }
}

TEST_CASE("recovery: a stopped master tells its peers the run has ended", "[master][recovery]") {
    Cluster c;
    c.firstPeer(1);
    c.m.onConnect(2, addr(2));  // no Hello yet: nobody to tell
    auto out = c.m.onShutdown("the master was stopped");
    CHECK(sent<MasterShutdown>(out, 1).size() == 1);
    CHECK(closed(out, 1));
    CHECK(sent<MasterShutdown>(out, 2).empty());
}

TEST_CASE("recovery: a rejoiner whose connection drops is waited for again, and counted once when it is back",
          "[master][recovery]") {
    Membership m(options());
    OldRun run(3);
    run.rejoin(m, 0);
    run.rejoin(m, 1);
    m.onDisconnect(2, "connection reset");
    auto third = run.rejoin(m, 2);
    CHECK(sent<Rejoined>(third, 3).empty());  // peer 2 is missing again
    CHECK(m.recovering());
    // Peer 2 comes back on a new connection.
    m.onConnect(7, addr(2));
    auto back = m.onMessage(7, run.report(1));
    for (ClientId id : {ClientId{1}, ClientId{3}, ClientId{7}}) CHECK(sent<Rejoined>(back, id).size() == 1);
    CHECK(m.acceptedCount() == 3);
}
