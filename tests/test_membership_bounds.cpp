// What a stranger can cost the master's membership state machine (issue 14, item 5), driven with
// scripted events: the handshake deadline, the cap on a requested heartbeat deadline, shedding
// connections that sent no Hello, and a joiner whose links fail removed from its admission round
// alone.
#include <catch2/catch.hpp>

#include <algorithm>

#include "support/membership_driver.h"

using namespace pccl;
using namespace pccl::testing;
using pccl::master::MembershipOptions;

namespace {

bool kicked(const Actions &out, ClientId id) { return !sent<Kicked>(out, id).empty() && closed(out, id); }

MembershipOptions options(uint64_t handshakeMs, uint64_t maxHeartbeatMs = 60000) {
    MembershipOptions o;
    o.heartbeatTimeoutMs = 5000;
    o.handshakeTimeoutMs = handshakeMs;
    o.maxHeartbeatTimeoutMs = maxHeartbeatMs;
    return o;
}

// The ring member that follows `uuid` in `ring`.
Uuid successorOf(const std::vector<RingMember> &ring, const Uuid &uuid) {
    auto it = std::find_if(ring.begin(), ring.end(), [&](auto &r) { return r.uuid == uuid; });
    REQUIRE(it != ring.end());
    return ring[(static_cast<size_t>(it - ring.begin()) + 1) % ring.size()].uuid;
}

bool inRing(const std::vector<RingMember> &ring, const Uuid &uuid) {
    return std::any_of(ring.begin(), ring.end(), [&](auto &r) { return r.uuid == uuid; });
}

// Running peers 1 and 2; joiners 3 and 4 registered; peers 1 and 2 vote. Returns the round's
// TopologyUpdates by client id.
struct AdmissionRound {
    Cluster c;
    std::map<ClientId, Uuid> uuids;
    std::map<ClientId, TopologyUpdate> updates;
    AdmissionRound() {
        uuids = acceptPeers(c, 2);
        uuids[3] = sent<Welcome>(c.join(3), 3)[0].uuid;
        uuids[4] = sent<Welcome>(c.join(4), 4)[0].uuid;
        c.m.onMessage(1, VoteUpdateTopology{});
        auto vote = c.m.onMessage(2, VoteUpdateTopology{});
        for (ClientId id = 1; id <= 4; ++id) {
            auto up = sent<TopologyUpdate>(vote, id);
            REQUIRE(up.size() == 1);
            updates[id] = up[0];
        }
        REQUIRE(updates[1].ring.size() == 4);
    }
    ClientId clientOf(const Uuid &u) const {
        for (auto &[id, v] : uuids)
            if (v == u) return id;
        FAIL("unknown uuid");
        return 0;
    }
    ClientId predecessorOf(ClientId id) const {
        for (auto &[other, u] : uuids)
            if (successorOf(updates.at(1).ring, u) == uuids.at(id)) return other;
        FAIL("no predecessor");
        return 0;
    }
};

} // namespace

TEST_CASE("bounds: a connection that sends no Hello is closed at the handshake deadline", "[master][bounds]") {
    Cluster c;
    c.m = Membership(options(5000));
    c.m.setTime(0);
    c.m.onConnect(1, addr(1));
    c.m.onConnect(2, addr(2));
    c.m.setTime(1000);
    CHECK(sent<Welcome>(c.m.onMessage(2, hello()), 2).size() == 1);  // registers in time
    c.m.setTime(5000);
    CHECK(c.m.onTick().empty());
    c.m.setTime(5001);
    auto out = c.m.onTick();
    REQUIRE(kicked(out, 1));
    CHECK(sent<Kicked>(out, 1)[0].reason.find("no Hello within the handshake deadline of 5000 ms") != std::string::npos);
    CHECK(std::all_of(out.begin(), out.end(), [](auto &a) { return a.to != 1 || a.unregistered; }));
    CHECK_FALSE(closed(out, 2));  // past the handshake, its heartbeat deadline applies
}

TEST_CASE("bounds: before its Hello a connection may not send a heartbeat; it is closed with the reason",
          "[master][bounds]") {
    Cluster c;
    c.m = Membership(options(5000));
    c.m.setTime(0);
    c.m.onConnect(1, addr(1));
    c.m.setTime(100);
    auto out = c.m.onMessage(1, Heartbeat{});
    CHECK(sent<HeartbeatAck>(out, 1).empty());
    REQUIRE(kicked(out, 1));
    CHECK(sent<Kicked>(out, 1)[0].reason.find("expected Hello, got Heartbeat") != std::string::npos);
}

TEST_CASE("bounds: a requested heartbeat deadline is capped by the master's maximum", "[master][bounds]") {
    Cluster c;
    c.m = Membership(options(5000, 60000));
    c.m.setTime(0);
    c.m.onConnect(1, addr(1));
    Hello h = hello();
    h.heartbeat_timeout_ms = 3600000;  // an hour
    auto up = sent<TopologyUpdate>(c.m.onMessage(1, h), 1);
    REQUIRE(up.size() == 1);
    c.m.onMessage(1, LinksReady{up[0].epoch, true, ""});  // admitted alone
    auto events = c.m.takeEvents();
    REQUIRE_FALSE(events.empty());
    CHECK(events[0].find("heartbeat deadline of 3600000 ms capped at 60000 ms") != std::string::npos);
    c.m.setTime(60000);
    CHECK_FALSE(closed(c.m.onTick(), 1));
    c.m.setTime(60001);
    CHECK(kicked(c.m.onTick(), 1));
    CHECK(c.m.acceptedCount() == 0);
}

TEST_CASE("bounds: a requested deadline under the cap is kept; the master's own longer default is allowed",
          "[master][bounds]") {
    MembershipOptions o = options(5000, 60000);
    o.heartbeatTimeoutMs = 90000;  // the operator's choice is not capped
    Cluster c;
    c.m = Membership(o);
    c.m.setTime(0);
    c.m.onConnect(1, addr(1));
    c.m.onConnect(2, addr(2));
    Hello asks = hello();
    asks.heartbeat_timeout_ms = 120000;
    auto up = sent<TopologyUpdate>(c.m.onMessage(1, asks), 1);
    REQUIRE(up.size() == 1);
    c.m.onMessage(1, LinksReady{up[0].epoch, true, ""});
    Hello short_ = hello();
    short_.heartbeat_timeout_ms = 300;
    c.m.onMessage(2, short_);
    c.m.setTime(301);
    CHECK(kicked(c.m.onTick(), 2));
    // Ticks at the server's period (a late tick would restart the deadlines).
    uint64_t removedAt = 0;
    for (uint64_t t = 325; t <= 91000 && !removedAt; t += 25) {
        c.m.setTime(t);
        if (kicked(c.m.onTick(), 1)) removedAt = t;
    }
    CHECK(removedAt == 90025);  // silent for 90000 ms: removed at the first tick after
}

TEST_CASE("bounds: shedding closes the oldest connections that sent no Hello, never a registered peer",
          "[master][bounds]") {
    Cluster c;
    c.m.setTime(0);
    c.firstPeer(1);
    for (ClientId id = 2; id <= 5; ++id) c.m.onConnect(id, addr(static_cast<uint8_t>(id)));
    c.m.onMessage(3, hello());  // registered: pending
    c.m.setTime(400);
    c.m.onConnect(6, addr(6));  // too young to be shed
    c.m.setTime(500);
    auto out = c.m.shedUnregistered(2, 500, "out of descriptors");
    CHECK(kicked(out, 2));
    CHECK(kicked(out, 4));
    for (ClientId id : {1, 3, 5, 6}) CHECK_FALSE(closed(out, id));
    out = c.m.shedUnregistered(10, 500, "out of descriptors");
    CHECK(kicked(out, 5));
    CHECK_FALSE(closed(out, 6));
    CHECK(c.m.acceptedCount() == 1);
    CHECK(c.m.pendingCount() == 1);
}

TEST_CASE("bounds: a joiner that its predecessor cannot reach is removed alone; the round runs again without it",
          "[master][bounds][links]") {
    AdmissionRound r;
    const ClientId dead = 4, before = r.predecessorOf(dead);
    const uint64_t epoch = r.updates[1].epoch;
    // Every other member reports; the dead joiner never does.
    Actions out;
    for (ClientId id = 1; id <= 3; ++id) {
        if (id == before) continue;
        out = r.c.m.onMessage(id, LinksReady{epoch, true, ""});
        CHECK(sent<TopologyDone>(out, id).empty());
    }
    out = r.c.m.onMessage(before, LinksReady{epoch, false, "connection refused", r.uuids[dead]});
    REQUIRE(kicked(out, dead));
    CHECK(sent<Kicked>(out, dead)[0].reason.find("could not link to it") != std::string::npos);
    for (ClientId id = 1; id <= 3; ++id) CHECK(sent<TopologyDone>(out, id).empty());
    // A new round on the ring of the three others.
    std::vector<ClientId> members{1, 2, 3};
    uint64_t again = 0;
    for (ClientId id : members) {
        auto up = sent<TopologyUpdate>(out, id);
        REQUIRE(up.size() == 1);
        CHECK(up[0].epoch > epoch);
        CHECK(up[0].ring.size() == 3);
        CHECK_FALSE(inRing(up[0].ring, r.uuids[dead]));
        again = up[0].epoch;
    }
    for (ClientId id : members) out = r.c.m.onMessage(id, LinksReady{again, true, ""});
    for (ClientId id : members) {
        auto td = sent<TopologyDone>(out, id);
        REQUIRE(td.size() == 1);
        CHECK(td[0].ok);
    }
    CHECK(r.c.m.acceptedCount() == 3);
}

TEST_CASE("bounds: a joiner that cannot link to its successor is removed alone", "[master][bounds][links]") {
    AdmissionRound r;
    const uint64_t epoch = r.updates[1].epoch;
    // The joiner whose successor is a running peer (in a ring of 4 with 2 running, there is one).
    auto nextOf = [&](ClientId id) { return r.clientOf(successorOf(r.updates[1].ring, r.uuids[id])); };
    const ClientId joiner = nextOf(3) <= 2 ? 3 : 4, next = nextOf(joiner), other = joiner == 3 ? 4 : 3;
    REQUIRE(next <= 2);
    Actions out;
    for (ClientId id : {ClientId{1}, ClientId{2}, other}) out = r.c.m.onMessage(id, LinksReady{epoch, true, ""});
    // The joiner names its successor, a running peer: the joiner is the one removed.
    out = r.c.m.onMessage(joiner, LinksReady{epoch, false, "network unreachable", r.uuids[next]});
    CHECK(kicked(out, joiner));
    CHECK(sent<Kicked>(out, joiner)[0].reason.find("could not link to its ring successor") != std::string::npos);
    CHECK_FALSE(closed(out, next));
    auto up = sent<TopologyUpdate>(out, 1);
    REQUIRE(up.size() == 1);
    CHECK(up[0].ring.size() == 3);
    const std::vector<ClientId> rest{1, 2, other};
    for (ClientId id : rest) out = r.c.m.onMessage(id, LinksReady{up[0].epoch, true, ""});
    for (ClientId id : rest) {
        auto td = sent<TopologyDone>(out, id);
        REQUIRE(td.size() == 1);
        CHECK(td[0].ok);
    }
}

TEST_CASE("bounds: a joiner that left before its predecessor reported is not blamed on anyone else",
          "[master][bounds][links]") {
    AdmissionRound r;
    const ClientId gone = 4, before = r.predecessorOf(gone);
    const uint64_t epoch = r.updates[1].epoch;
    r.c.m.onDisconnect(gone, "connection reset");
    Actions out;
    for (ClientId id = 1; id <= 3; ++id)
        if (id != before) r.c.m.onMessage(id, LinksReady{epoch, true, ""});
    out = r.c.m.onMessage(before, LinksReady{epoch, false, "connection refused", r.uuids[gone]});
    for (ClientId id = 1; id <= 3; ++id) CHECK_FALSE(closed(out, id));
    auto up = sent<TopologyUpdate>(out, 1);
    REQUIRE(up.size() == 1);
    for (ClientId id = 1; id <= 3; ++id) out = r.c.m.onMessage(id, LinksReady{up[0].epoch, true, ""});
    auto td = sent<TopologyDone>(out, 1);
    REQUIRE(td.size() == 1);
    CHECK(td[0].ok);
}

TEST_CASE("bounds: a failed link between two running peers still fails the round for everyone",
          "[master][bounds][links]") {
    AdmissionRound r;
    const uint64_t epoch = r.updates[1].epoch;
    const Uuid next = successorOf(r.updates[1].ring, r.uuids[1]);
    Actions out;
    // Peer 1 names its successor if that is running peer 2, else reports without a name.
    const Uuid named = next == r.uuids[2] ? next : Uuid{};
    r.c.m.onMessage(1, LinksReady{epoch, false, "connection refused", named});
    for (ClientId id = 2; id <= 4; ++id) out = r.c.m.onMessage(id, LinksReady{epoch, true, ""});
    for (ClientId id = 1; id <= 4; ++id) {
        auto td = sent<TopologyDone>(out, id);
        REQUIRE(td.size() == 1);
        CHECK_FALSE(td[0].ok);
        CHECK(td[0].error.find("connection refused") != std::string::npos);
        CHECK_FALSE(closed(out, id));
    }
}
