// Standby masters (docs/master_recovery.md, Standby masters): the election's decision applied to
// the master's Membership. Scripted events, no sockets; the election itself is tested against a
// real etcd in test_etcd_election.cpp.
#include <catch2/catch.hpp>

#include "protocol/wire_result.h"
#include "support/membership_driver.h"

using namespace pccl;
using namespace pccl::testing;

namespace {

pccl::master::MembershipOptions standby() {
    pccl::master::MembershipOptions o;
    o.standby = true;
    return o;
}

// The only message to `to`: a Reject that sends the peer elsewhere, and the connection closed.
Reject sentElsewhere(const Actions &out, ClientId to) {
    auto r = sent<Reject>(out, to);
    REQUIRE(r.size() == 1);
    CHECK(r[0].retry);
    CHECK(closed(out, to));
    return r[0];
}

bool contains(const std::string &s, const std::string &part) { return s.find(part) != std::string::npos; }

Rejoin rejoinOf(const Uuid &uuid, uint64_t masterEpoch) {
    Rejoin r;
    r.hello = hello();
    r.hello.uuid = uuid;
    r.hello.master_epoch = masterEpoch;
    r.topology_epoch = 3;
    RingMember self;
    self.uuid = uuid;
    self.data_addr = addr(1);
    self.data_addr.port = 5000;
    r.ring = {self};
    return r;
}

} // namespace

TEST_CASE("standby: a follower refuses every Hello and Rejoin with retry, naming the leader when it knows it",
          "[master][standby]") {
    Membership m(standby());
    CHECK_FALSE(m.leading());
    m.onConnect(1, addr(1));
    auto first = sentElsewhere(m.onMessage(1, hello()), 1);
    CHECK(contains(first.reason, "not the leader"));
    CHECK(contains(first.reason, "no leader is known"));

    CHECK(m.setLeader(false, 0, "10.0.0.9:48148").empty());
    CHECK(m.takeEvents() == std::vector<std::string>{"following the leader at 10.0.0.9:48148"});
    m.onConnect(2, addr(2));
    CHECK(sentElsewhere(m.onMessage(2, hello()), 2).reason == "not the leader, try 10.0.0.9:48148");
    m.onConnect(3, addr(3));
    CHECK(sentElsewhere(m.onMessage(3, rejoinOf(Uuid::random(), 4)), 3).reason == "not the leader, try 10.0.0.9:48148");
    CHECK(m.acceptedCount() == 0);
    CHECK(m.pendingCount() == 0);
}

TEST_CASE("standby: a new leader serves under the election's epoch; peers of the old leader rejoin and the run is "
          "rebuilt", "[master][standby]") {
    Membership m(standby());
    m.setTime(1000);
    CHECK(m.setLeader(true, 57, "").empty());
    CHECK(m.leading());
    CHECK(m.masterEpoch() == 57);
    // A peer of the leader before (epoch 40): not newer, so the epoch stays the election's.
    const Uuid u = Uuid::random();
    m.onConnect(1, addr(1));
    auto out = m.onMessage(1, rejoinOf(u, 40));
    auto w = sent<Welcome>(out, 1);
    REQUIRE(w.size() == 1);
    CHECK(w[0].master_epoch == 57);
    auto r = sent<Rejoined>(out, 1);  // the whole (one-peer) ring is back
    REQUIRE(r.size() == 1);
    CHECK(r[0].master_epoch == 57);
    CHECK(m.acceptedCount() == 1);
}

TEST_CASE("standby: a leader that steps down sends every connection elsewhere, forgets the run and follows; "
          "leading again starts afresh under the newer epoch", "[master][standby]") {
    Cluster c;
    c.m = Membership(standby());
    c.m.setLeader(true, 5, "");
    auto uuids = acceptPeers(c, 3);
    c.m.onConnect(9, addr(9));  // a connection that sent nothing yet
    c.m.takeEvents();

    auto down = c.m.setLeader(false, 0, "10.0.0.7:1");
    CHECK_FALSE(c.m.leading());
    for (ClientId id : {1, 2, 3, 9}) {
        auto r = sentElsewhere(down, id);
        CHECK(contains(r.reason, "is not the leader any more, try 10.0.0.7:1"));
        CHECK(r.result == toWire(pcclMasterConnectionFailed));
    }
    CHECK(down.size() == 4);
    CHECK(c.m.acceptedCount() == 0);
    auto events = c.m.takeEvents();
    REQUIRE(events.size() == 1);
    CHECK(contains(events[0], "stepped down"));
    // Its connections are gone: their late messages change nothing.
    CHECK(c.m.onMessage(1, VoteUpdateTopology{}).empty());
    CHECK(c.m.onDisconnect(2, "closed").empty());
    c.m.onConnect(10, addr(10));
    CHECK(sentElsewhere(c.m.onMessage(10, hello()), 10).reason == "not the leader, try 10.0.0.7:1");

    // Elected again later (epoch 9): the peers rejoin it as a new master.
    c.m.setLeader(true, 9, "");
    c.m.onConnect(11, addr(11));
    auto back = c.m.onMessage(11, rejoinOf(uuids[1], 8));
    auto w = sent<Welcome>(back, 11);
    REQUIRE(w.size() == 1);
    CHECK(w[0].master_epoch == 9);
    CHECK(c.m.recovering() == false);  // its one-peer ring is complete
    CHECK(c.m.acceptedCount() == 1);
}

TEST_CASE("standby: a master without an election leads from the start", "[master][standby]") {
    Membership m;
    CHECK(m.leading());
    m.onConnect(1, addr(1));
    CHECK(sent<Welcome>(m.onMessage(1, hello()), 1).size() == 1);
}
