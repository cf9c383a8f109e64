// The peer's Session state machine, driven with scripted events (no sockets, no clock): connect
// and admission, the ring links, attributes, heartbeats, bandwidth probes and protocol errors.
// Votes and all-reduce: test_session_ops.cpp; shared state: test_session_sync.cpp; a lost master
// or peer in each phase: test_session_faults.cpp.
#include <catch2/catch.hpp>

#include "support/session_driver.h"

using namespace pccl;
using namespace pccl::testing::session;

namespace {

SessionOptions withAdmissionTimeout(uint64_t ms) {
    auto o = Driver::defaults();
    o.admissionTimeoutMs = ms;
    return o;
}

} // namespace

// ---- connect and admission

TEST_CASE("session: connecting sends the Hello it was given and waits for admission", "[session]") {
    Driver d;
    Hello h = hello();
    h.peer_group = 9;
    h.data_port = 1234;
    h.heartbeat_timeout_ms = 777;
    auto c = d.connect(h);
    REQUIRE(c.out.size() == 1);
    auto sentHello = sent<Hello>(c.out);
    REQUIRE(sentHello.size() == 1);
    CHECK(sentHello[0].magic == kMagic);
    CHECK(sentHello[0].version == kProtocolVersion);
    CHECK(sentHello[0].peer_group == 9);
    CHECK(sentHello[0].data_port == 1234);
    CHECK(sentHello[0].uuid == kSelf);
    CHECK(sentHello[0].heartbeat_timeout_ms == 777);
    CHECK(d.s.phase() == Phase::Connecting);
}

TEST_CASE("session: a Welcome alone does not complete pcclConnect", "[session]") {
    Driver d;
    auto c = d.connect();
    auto out = d.message(Welcome{kSelf, member(7).data_addr});
    CHECK(out.empty());
    CHECK(d.s.phase() == Phase::Connecting);
    CHECK(d.unanswered() == std::vector<RequestId>{c.id});
}

TEST_CASE("session: pcclConnect completes only when the master reports the admission round done", "[session]") {
    Driver d;
    auto c = d.connect();
    auto up = d.message(TopologyUpdate{5, {selfMember()}, {1, 1, 1, 1}});
    CHECK(actionsOf<Complete>(up).empty());
    CHECK(d.s.phase() == Phase::Connecting);
    auto done = d.message(TopologyDone{5, true, ""});
    auto a = answer(done, c.id);
    CHECK(a.status.ok());
    CHECK(d.s.phase() == Phase::Connected);
}

TEST_CASE("session: a failed admission round fails pcclConnect with pcclRankConnectionFailed and ends the session", "[session]") {
    Driver d;
    auto c = d.connect();
    d.message(TopologyUpdate{5, ringWithSelfAt(2, 0), {2, 2, 1, 2}});
    d.linksConnected(5);
    auto out = d.message(TopologyDone{5, false, "peer 2 could not reach its successor"});
    auto a = answer(out, c.id);
    CHECK(a.status.code() == pcclRankConnectionFailed);
    CHECK(contains(a.status.message(), "peer 2 could not reach its successor"));
    CHECK(contains(a.status.message(), "pcclConnect was waiting for the master"));
    CHECK(actionsOf<CloseAllData>(out).size() == 1);
    CHECK(d.s.phase() == Phase::Dead);
    CHECK(d.s.deathStatus().code() == pcclRankConnectionFailed);
}

TEST_CASE("session: a Reject fails pcclConnect with the master's result and reason", "[session]") {
    Driver d;
    auto c = d.connect();
    auto out = d.message(Reject{toWire(pcclAuthenticationFailed), "uuid already in use"});
    auto a = answer(out, c.id);
    CHECK(a.status.code() == pcclAuthenticationFailed);
    CHECK(contains(a.status.message(), "uuid already in use"));
    CHECK(d.s.phase() == Phase::Dead);
    CHECK(d.s.deathStatus().code() == pcclAuthenticationFailed);
}

TEST_CASE("session: a Reject carrying pcclSuccess or an unknown result still fails pcclConnect", "[session]") {
    const uint8_t result = GENERATE(uint8_t{0}, uint8_t{kLastWireResult + 1}, uint8_t{250});
    Driver d;
    auto c = d.connect();
    auto a = answer(d.message(Reject{result, "go away"}), c.id);
    CHECK_FALSE(a.status.ok());
    CHECK(a.status.code() == pcclInternalError);
    CHECK(d.s.phase() == Phase::Dead);
}

TEST_CASE("session: the admission deadline fails pcclConnect with pcclTimeout at the deadline, not before", "[session]") {
    Driver d(withAdmissionTimeout(3000));
    const uint64_t t0 = d.now;
    auto c = d.connect();
    for (uint64_t t : {t0 + 1000, t0 + 2000, t0 + 2999}) {
        auto out = d.tickAt(t);
        CHECK(actionsOf<Complete>(out).empty());
        CHECK(sent<Heartbeat>(out).size() == 1);
        d.message(HeartbeatAck{});
    }
    CHECK(d.s.phase() == Phase::Connecting);
    auto out = d.tickAt(t0 + 3000);
    auto a = answer(out, c.id);
    CHECK(a.status.code() == pcclTimeout);
    CHECK(contains(a.status.message(), "3000 ms"));
    CHECK(sent<Heartbeat>(out).empty());
    CHECK(d.s.phase() == Phase::Dead);
    CHECK(d.s.deathStatus().code() == pcclTimeout);
}

TEST_CASE("session: the admission deadline does not apply once admitted", "[session]") {
    Driver d(withAdmissionTimeout(3000));
    const uint64_t t0 = d.now;
    d.admit();
    for (uint64_t t = t0 + 1000; t <= t0 + 10000; t += 1000) {
        auto out = d.tickAt(t);
        CHECK(sent<Heartbeat>(out).size() == 1);
        d.message(HeartbeatAck{});
    }
    CHECK(d.s.phase() == Phase::Connected);
}

TEST_CASE("session: without an admission deadline pcclConnect waits as long as the master answers heartbeats", "[session]") {
    Driver d;
    const uint64_t t0 = d.now;
    auto c = d.connect();
    for (uint64_t t = t0 + 1000; t <= t0 + 60000; t += 1000) {
        auto out = d.tickAt(t);
        CHECK(actionsOf<Complete>(out).empty());
        d.message(HeartbeatAck{});
    }
    CHECK(d.s.phase() == Phase::Connecting);
    CHECK(d.unanswered() == std::vector<RequestId>{c.id});
}

TEST_CASE("session: connecting while connecting or connected is invalid usage", "[session]") {
    Driver d;
    d.connect();
    CHECK(d.s.beginConnect().code() == pcclInvalidUsage);
    CHECK(d.s.phase() == Phase::Connecting);
    d.message(TopologyUpdate{1, {selfMember()}, {1, 1, 1, 1}});
    d.message(TopologyDone{1, true, ""});
    REQUIRE(d.s.phase() == Phase::Connected);
    CHECK(d.s.beginConnect().code() == pcclInvalidUsage);
    CHECK(d.s.phase() == Phase::Connected);
}

TEST_CASE("session: connected() without beginConnect answers invalid usage and sends nothing", "[session]") {
    Driver d;
    const RequestId id = d.newId();
    auto out = d.record(d.s.connected(id, hello()));
    CHECK(answer(out, id).status.code() == pcclInvalidUsage);
    CHECK(sent<Hello>(out).empty());
    CHECK(d.s.phase() == Phase::Created);
}

TEST_CASE("session: a failed listen or connect returns the session to Created, so that connect may be retried", "[session]") {
    Driver d;
    REQUIRE(d.s.beginConnect().ok());
    CHECK(d.connectFailed().empty());
    CHECK(d.s.phase() == Phase::Created);
    auto c = d.connect();
    CHECK(sent<Hello>(c.out).size() == 1);
    CHECK(d.s.phase() == Phase::Connecting);
}

TEST_CASE("session: connectFailed after death leaves the session dead", "[session]") {
    Driver d;
    REQUIRE(d.s.beginConnect().ok());
    d.abort(Status{pcclInvalidUsage, "communicator destroyed"});
    d.connectFailed();
    CHECK(d.s.phase() == Phase::Dead);
}

TEST_CASE("session: a connect answered after an abort gets the death status and sends no Hello", "[session]") {
    Driver d;
    REQUIRE(d.s.beginConnect().ok());
    d.abort(Status{pcclInvalidUsage, "communicator destroyed"});
    const RequestId id = d.newId();
    auto out = d.record(d.s.connected(id, hello()));
    auto a = answer(out, id);
    CHECK(a.status.code() == pcclInvalidUsage);
    CHECK(contains(a.status.message(), "communicator destroyed"));
    CHECK(sent<Hello>(out).empty());
}

TEST_CASE("session: connecting a dead session returns the death status", "[session]") {
    Driver d;
    d.connect();
    d.message(Kicked{"bad uuid"});
    REQUIRE(d.s.phase() == Phase::Dead);
    auto st = d.s.beginConnect();
    CHECK(st.code() == pcclKicked);
    CHECK(contains(st.message(), "bad uuid"));
    CHECK(d.s.phase() == Phase::Dead);
}

// ---- the ring

TEST_CASE("session: a topology update that leaves this peer out answers LinksReady false", "[session]") {
    Driver d;
    d.connect();
    auto out = d.message(TopologyUpdate{4, {member(1), member(2)}, {2, 2, 1, 2}});
    auto ready = sent<LinksReady>(out);
    REQUIRE(ready.size() == 1);
    CHECK(ready[0].epoch == 4);
    CHECK_FALSE(ready[0].ok);
    CHECK(contains(ready[0].error, "not in its own ring"));
    CHECK(actionsOf<ConnectLinks>(out).empty());
}

TEST_CASE("session: a ring of one is ready at once, without links", "[session]") {
    Driver d;
    d.connect();
    auto out = d.message(TopologyUpdate{4, {selfMember()}, {1, 1, 1, 1}});
    CHECK(actionsOf<ConnectLinks>(out).empty());
    auto ready = sent<LinksReady>(out);
    REQUIRE(ready.size() == 1);
    CHECK(ready[0].epoch == 4);
    CHECK(ready[0].ok);
}

TEST_CASE("session: in a ring of several this peer links to its successor, wrapping around at the end", "[session]") {
    const size_t n = GENERATE(2, 3, 5);
    const size_t pos = GENERATE_COPY(range(size_t{0}, n));
    Driver d;
    d.connect();
    auto ring = ringWithSelfAt(n, pos);
    auto out = d.message(TopologyUpdate{8, ring, {}});
    CHECK(sent<LinksReady>(out).empty());
    auto links = actionsOf<ConnectLinks>(out);
    REQUIRE(links.size() == 1);
    CHECK(links[0].epoch == 8);
    CHECK(links[0].next == ring[(pos + 1) % n]);
    CHECK_FALSE(links[0].next.uuid == kSelf);
}

TEST_CASE("session: the link result is reported as LinksReady of its epoch with its status", "[session]") {
    Driver d;
    d.connect();
    d.message(TopologyUpdate{8, ringWithSelfAt(3, 1), {}});
    SECTION("connected") {
        auto ready = sent<LinksReady>(d.linksConnected(8));
        REQUIRE(ready.size() == 1);
        CHECK(ready[0].epoch == 8);
        CHECK(ready[0].ok);
    }
    SECTION("failed") {
        auto ready = sent<LinksReady>(d.linksConnected(8, Status{pcclRankConnectionFailed, "connection refused"}));
        REQUIRE(ready.size() == 1);
        CHECK(ready[0].epoch == 8);
        CHECK_FALSE(ready[0].ok);
        CHECK(ready[0].error == "connection refused");
    }
}

TEST_CASE("session: a dead session reports no link result", "[session]") {
    Driver d;
    d.connect();
    d.message(TopologyUpdate{8, ringWithSelfAt(2, 0), {}});
    d.controlClosed();
    CHECK(d.linksConnected(8).empty());
}

// ---- attributes

TEST_CASE("session: attributes read the world of the admission round and of each WorldUpdate", "[session]") {
    Driver d;
    d.admit({selfMember()}, WorldInfo{4, 2, 3, 5});
    CHECK(d.s.attribute(PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE).value() == 4);
    CHECK(d.s.attribute(PCCL_ATTRIBUTE_PEER_GROUP_WORLD_SIZE).value() == 2);
    CHECK(d.s.attribute(PCCL_ATTRIBUTE_NUM_DISTINCT_PEER_GROUPS).value() == 3);
    CHECK(d.s.attribute(PCCL_ATTRIBUTE_LARGEST_PEER_GROUP_WORLD_SIZE).value() == 5);
    WorldUpdate update;
    update.world = {9, 6, 7, 8};
    CHECK(d.message(update).empty());
    CHECK(d.s.attribute(PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE).value() == 9);
    CHECK(d.s.attribute(PCCL_ATTRIBUTE_PEER_GROUP_WORLD_SIZE).value() == 6);
    CHECK(d.s.attribute(PCCL_ATTRIBUTE_NUM_DISTINCT_PEER_GROUPS).value() == 7);
    CHECK(d.s.attribute(PCCL_ATTRIBUTE_LARGEST_PEER_GROUP_WORLD_SIZE).value() == 8);
}

TEST_CASE("session: the rank is this peer's position in the latest ring, an internal error when it is left out", "[session]") {
    Driver d;
    d.admit(ringWithSelfAt(3, 2), WorldInfo{3, 3, 1, 3});
    CHECK(d.s.attribute(PCCL_ATTRIBUTE_RANK).value() == 2);
    WorldUpdate update;
    update.world = {2, 2, 1, 2};
    update.ring = ringWithSelfAt(2, 0);
    d.message(update);
    CHECK(d.s.attribute(PCCL_ATTRIBUTE_RANK).value() == 0);
    update.ring = {member(1), member(2)};
    d.message(update);
    CHECK(d.s.attribute(PCCL_ATTRIBUTE_RANK).status().code() == pcclInternalError);
}

TEST_CASE("session: attributes before the session is connected are invalid usage", "[session]") {
    Driver d;
    CHECK(d.s.attribute(PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE).status().code() == pcclInvalidUsage);
    d.connect();
    d.message(TopologyUpdate{1, {selfMember()}, {1, 1, 1, 1}});
    CHECK(d.s.attribute(PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE).status().code() == pcclInvalidUsage);
}

TEST_CASE("session: attributes after death return the death status", "[session]") {
    Driver d;
    d.admit();
    d.message(Kicked{"too slow"});
    auto r = d.s.attribute(PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE);
    CHECK(r.status().code() == pcclKicked);
    CHECK(contains(r.status().message(), "too slow"));
}

TEST_CASE("session: an unknown attribute is an invalid argument", "[session]") {
    Driver d;
    d.admit();
    for (int a : {-1, 0, 999})
        CHECK(d.s.attribute(static_cast<pcclAttribute_t>(a)).status().code() == pcclInvalidArgument);
}

// ---- heartbeats and the master's silence

TEST_CASE("session: each tick sends one heartbeat", "[session]") {
    Driver d;
    d.admit();
    auto out = d.tickAt(d.now + 1000);
    CHECK(out.size() == 1);
    CHECK(sent<Heartbeat>(out).size() == 1);
}

TEST_CASE("session: a master silent for longer than the heartbeat timeout is lost", "[session]") {
    Driver d;
    const uint64_t t0 = d.now;
    d.admit();
    auto v = d.vote(VoteKind::PeersPending);
    for (uint64_t t = t0 + 1000; t <= t0 + 5000; t += 1000) CHECK(sent<Heartbeat>(d.tickAt(t)).size() == 1);
    CHECK(d.s.phase() == Phase::Connected);
    auto out = d.tickAt(t0 + 5001);
    CHECK(sent<Heartbeat>(out).empty());
    CHECK(d.s.phase() == Phase::Dead);
    CHECK(d.s.deathStatus().code() == pcclMasterConnectionLost);
    CHECK(contains(d.s.deathStatus().message(), "answered no heartbeat"));
    CHECK(contains(d.s.deathStatus().message(), "10.0.0.1:48148"));
    CHECK(answer(out, v.id).status.code() == pcclMasterConnectionLost);
}

TEST_CASE("session: a heartbeat ack restarts the master's deadline", "[session]") {
    Driver d;
    const uint64_t t0 = d.now;
    d.admit();
    for (uint64_t t = t0 + 1000; t <= t0 + 4000; t += 1000) d.tickAt(t);
    d.message(HeartbeatAck{});  // at t0 + 4000
    for (uint64_t t = t0 + 5000; t <= t0 + 9000; t += 1000) CHECK(sent<Heartbeat>(d.tickAt(t)).size() == 1);
    CHECK(d.s.phase() == Phase::Connected);
    d.tickAt(t0 + 9001);
    CHECK(d.s.phase() == Phase::Dead);
    CHECK(d.s.deathStatus().code() == pcclMasterConnectionLost);
}

TEST_CASE("session: a tick long after the last one (a stopped process) restarts the deadline instead of failing", "[session]") {
    Driver d;
    const uint64_t t0 = d.now;
    d.admit();
    d.tickAt(t0 + 1000);
    auto late = d.tickAt(t0 + 600000);
    CHECK(sent<Heartbeat>(late).size() == 1);
    CHECK(d.s.phase() == Phase::Connected);
    // The deadline counts from the late tick: a master that then stays silent is lost in time.
    for (uint64_t t = t0 + 601000; t <= t0 + 605000; t += 1000) CHECK(sent<Heartbeat>(d.tickAt(t)).size() == 1);
    CHECK(d.s.phase() == Phase::Connected);
    d.tickAt(t0 + 605001);
    CHECK(d.s.phase() == Phase::Dead);
}

TEST_CASE("session: a tick gap of exactly tickPeriod + heartbeatTimeout/2 is not a stopped process", "[session]") {
    Driver d;
    const uint64_t t0 = d.now;
    d.admit();
    d.tickAt(t0 + 2000);
    d.tickAt(t0 + 2000 + 3500);  // silent for 5500 ms, and not late enough to excuse it
    CHECK(d.s.phase() == Phase::Dead);
    CHECK(d.s.deathStatus().code() == pcclMasterConnectionLost);
}

TEST_CASE("session: a tick one millisecond later than that is a stopped process", "[session]") {
    Driver d;
    const uint64_t t0 = d.now;
    d.admit();
    d.tickAt(t0 + 2000);
    auto out = d.tickAt(t0 + 2000 + 3501);
    CHECK(sent<Heartbeat>(out).size() == 1);
    CHECK(d.s.phase() == Phase::Connected);
}

TEST_CASE("session: a master silent during admission is lost, failing pcclConnect", "[session]") {
    Driver d;
    const uint64_t t0 = d.now;
    auto c = d.connect();
    for (uint64_t t = t0 + 1000; t <= t0 + 5000; t += 1000) d.tickAt(t);
    CHECK(d.unanswered() == std::vector<RequestId>{c.id});
    auto out = d.tickAt(t0 + 5001);
    auto a = answer(out, c.id);
    CHECK(a.status.code() == pcclMasterConnectionLost);
    CHECK(contains(a.status.message(), "pcclConnect was waiting for the master"));
}

TEST_CASE("session: ticks before connecting and after death do nothing", "[session]") {
    Driver d;
    CHECK(d.tickAt(d.now + 1000).empty());
    CHECK(d.tickAt(d.now + 100000).empty());
    d.admit();
    d.controlClosed();
    CHECK(d.tickAt(d.now + 1000).empty());
    CHECK(d.tickAt(d.now + 100000).empty());
}

// ---- bandwidth probes

TEST_CASE("session: a bandwidth probe naming this peer among several starts a measurement", "[session]") {
    const uint32_t window = GENERATE(1u, 500u, 10000u);
    Driver d;
    d.admit(ringWithSelfAt(3, 2));
    BandwidthProbe p{11, 99, ringWithSelfAt(3, 2), window};
    auto out = d.message(p);
    CHECK(sent<BandwidthReport>(out).empty());
    auto starts = actionsOf<StartProbe>(out);
    REQUIRE(starts.size() == 1);
    CHECK(starts[0].probe.round == 11);
    CHECK(starts[0].probe.seq == 99);
    CHECK(starts[0].probe.peers == p.peers);
    CHECK(starts[0].probe.window_ms == window);
}

TEST_CASE("session: a probe this peer cannot take part in is answered at once with an empty report", "[session]") {
    Driver d;
    d.admit(ringWithSelfAt(3, 0));
    BandwidthProbe p{12, 99, ringWithSelfAt(3, 0), 500};
    SECTION("it does not name this peer") { p.peers = {member(1), member(2)}; }
    SECTION("this peer alone") { p.peers = {selfMember()}; }
    SECTION("no peers") { p.peers = {}; }
    SECTION("an empty window") { p.window_ms = 0; }
    SECTION("a window over ten seconds") { p.window_ms = 10001; }
    auto out = d.message(p);
    CHECK(actionsOf<StartProbe>(out).empty());
    auto reports = sent<BandwidthReport>(out);
    REQUIRE(reports.size() == 1);
    CHECK(reports[0].round == 12);
    CHECK(reports[0].from.empty());
    CHECK(reports[0].bytes_per_s.empty());
}

TEST_CASE("session: a finished probe's report is sent to the master as measured", "[session]") {
    Driver d;
    d.admit(ringWithSelfAt(3, 0));
    d.message(BandwidthProbe{12, 99, ringWithSelfAt(3, 0), 500});
    BandwidthReport r{12, {peerUuid(1), peerUuid(2)}, {1000, 2000}};
    auto reports = sent<BandwidthReport>(d.probeDone(12, r));
    REQUIRE(reports.size() == 1);
    CHECK(reports[0].round == 12);
    CHECK(reports[0].from == r.from);
    CHECK(reports[0].bytes_per_s == r.bytes_per_s);
}

TEST_CASE("session: a dead session sends no probe report", "[session]") {
    Driver d;
    d.admit(ringWithSelfAt(3, 0));
    d.message(BandwidthProbe{12, 99, ringWithSelfAt(3, 0), 500});
    d.controlClosed();
    CHECK(d.probeDone(12, BandwidthReport{12, {peerUuid(1)}, {5}}).empty());
}

TEST_CASE("session: a probe reaching a dead session starts nothing and is answered with an empty report", "[session]") {
    Driver d;
    d.admit(ringWithSelfAt(3, 0));
    d.controlClosed();
    auto out = d.message(BandwidthProbe{12, 99, ringWithSelfAt(3, 0), 500});
    CHECK(actionsOf<StartProbe>(out).empty());
    auto reports = sent<BandwidthReport>(out);
    REQUIRE(reports.size() == 1);
    CHECK(reports[0].from.empty());
}

// ---- protocol errors

TEST_CASE("session: a message only a peer sends, arriving from the master, ends the session as a protocol error", "[session]") {
    auto m = GENERATE(values<ControlMessage>({Hello{}, VoteUpdateTopology{}, LinksReady{}, VotePeersPending{},
                                              VoteOptimizeTopology{}, CollectiveInit{}, CollectiveDone{}, Leave{},
                                              Heartbeat{}, SharedStateSync{}, SharedStateDone{}, BandwidthReport{}}));
    Driver d;
    d.admit();
    auto out = d.message(m);
    auto disc = actionsOf<DisconnectMaster>(out);
    REQUIRE(disc.size() == 1);
    CHECK(contains(disc[0].reason, std::string("unexpected ") + messageName(m)));
    CHECK(actionsOf<CloseAllData>(out).size() == 1);
    CHECK(d.s.phase() == Phase::Dead);
    CHECK(d.s.deathStatus().code() == pcclMasterConnectionLost);
    CHECK(contains(d.s.deathStatus().message(), "protocol error"));
}

TEST_CASE("session: a protocol error during admission fails pcclConnect", "[session]") {
    Driver d;
    auto c = d.connect();
    auto out = d.message(Heartbeat{});
    CHECK(actionsOf<DisconnectMaster>(out).size() == 1);
    auto a = answer(out, c.id);
    CHECK(a.status.code() == pcclMasterConnectionLost);
    CHECK(contains(a.status.message(), "unexpected"));
}

// ---- keys (a run with a secret)

TEST_CASE("session: the admission key and pair keys go to the data plane; peers that leave the ring are closed and "
          "revoked", "[session]") {
    Driver d;
    d.connect();
    Welcome w;
    w.uuid = selfMember().uuid;
    w.session_key.fill(7);
    auto out = d.message(w);
    auto keys = actionsOf<InstallKeys>(out);
    REQUIRE(keys.size() == 1);
    REQUIRE(keys[0].own);
    CHECK((*keys[0].own)[0] == 7);
    // An open run's Welcome carries no key: nothing to install.
    CHECK(actionsOf<InstallKeys>(d.message(Welcome{})).empty());
    PeerKeys pk;
    pk.keys.push_back({member(1).uuid, {}});
    keys = actionsOf<InstallKeys>(d.message(pk));
    REQUIRE(keys.size() == 1);
    CHECK_FALSE(keys[0].own);
    CHECK(keys[0].peers.size() == 1);

    d.message(TopologyUpdate{1, {member(1), member(2), selfMember()}, {3, 3, 1, 3}});
    WorldUpdate update;
    update.world = {2, 2, 1, 2};
    update.ring = {member(2), selfMember()};
    auto closes = actionsOf<ClosePeer>(d.message(update));
    REQUIRE(closes.size() == 1);
    CHECK(closes[0].peer == member(1).uuid);
    // A TopologyUpdate without a peer revokes it too; one with the same members revokes nobody.
    closes = actionsOf<ClosePeer>(d.message(TopologyUpdate{2, {selfMember()}, {1, 1, 1, 1}}));
    REQUIRE(closes.size() == 1);
    CHECK(closes[0].peer == member(2).uuid);
    CHECK(actionsOf<ClosePeer>(d.message(TopologyUpdate{3, {selfMember()}, {1, 1, 1, 1}})).empty());
}
