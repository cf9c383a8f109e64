// The master's membership with peers behind NAT (Hello.advertised, PCCL_ADVERTISED_ADDRESS):
// the ring carries the address and port a peer advertises, not the ones the master observes.
#include <catch2/catch.hpp>

#include "support/membership_driver.h"

using namespace pccl;
using namespace pccl::testing;

namespace {

NetAddr v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint16_t port) {
    NetAddr n;
    n.family = 4;
    n.ip = {a, b, c, d};
    n.port = port;
    return n;
}

// Peer 1 joins with `advertised` in its Hello, peer 2 with none; returns the ring both are
// sent when peer 2 is admitted (the round completes), after checking that peer 1's Welcome
// reports what the master saw.
std::vector<RingMember> ringWith(Cluster &c, const NetAddr &advertised) {
    c.m.onConnect(1, addr(1));
    Hello h = hello();
    h.advertised = advertised;
    auto out = c.m.onMessage(1, h);
    auto welcome = sent<Welcome>(out, 1);
    REQUIRE(welcome.size() == 1);
    CHECK(welcome[0].observed_addr == addr(1));
    auto up = sent<TopologyUpdate>(out, 1);
    REQUIRE(up.size() == 1);
    c.m.onMessage(1, LinksReady{up[0].epoch, true, ""});
    c.join(2);
    auto vote = c.m.onMessage(1, VoteUpdateTopology{});
    auto up1 = sent<TopologyUpdate>(vote, 1), up2 = sent<TopologyUpdate>(vote, 2);
    REQUIRE(up1.size() == 1);
    REQUIRE(up2.size() == 1);
    CHECK(up1[0].ring == up2[0].ring);
    REQUIRE(up1[0].ring.size() == 2);
    Actions done;
    for (ClientId id : {1, 2}) done = c.m.onMessage(id, LinksReady{up1[0].epoch, true, ""});
    REQUIRE(c.m.acceptedCount() == 2);
    return up1[0].ring;
}

// A one-entry shared state of 1024 floats, all `value`, at revision 1.
SharedStateSync state(float value) { return floatState(std::vector<float>(1024, value)); }

} // namespace

TEST_CASE("membership (NAT): an advertised address and port replace the observed ones in the ring; Welcome still "
          "reports the observed address",
          "[master][nat]") {
    Cluster c;
    auto ring = ringWith(c, v4(203, 0, 113, 7, 7001));
    NetAddr plain = addr(2);
    plain.port = 5000;
    // Peer 1's entry is its advertised address; peer 2, which advertised nothing, keeps the
    // address the master sees with its listening port.
    int advertised = 0, observed = 0;
    for (auto &m : ring) {
        if (m.data_addr == v4(203, 0, 113, 7, 7001)) ++advertised;
        if (m.data_addr == plain) ++observed;
    }
    CHECK(advertised == 1);
    CHECK(observed == 1);
}

TEST_CASE("membership (NAT): an advertised port alone keeps the observed address", "[master][nat]") {
    Cluster c;
    NetAddr portOnly;
    portOnly.family = 0;
    portOnly.port = 7002;
    auto ring = ringWith(c, portOnly);
    NetAddr want = addr(1);
    want.port = 7002;
    NetAddr plain = addr(2);
    plain.port = 5000;
    CHECK(((ring[0].data_addr == want && ring[1].data_addr == plain) || (ring[1].data_addr == want && ring[0].data_addr == plain)));
}

TEST_CASE("membership (NAT): an advertised address alone keeps the listening port; IPv6 is carried as is",
          "[master][nat]") {
    Cluster c;
    NetAddr v6;
    v6.family = 6;
    v6.ip = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    v6.port = 0;
    auto ring = ringWith(c, v6);
    NetAddr want = v6;
    want.port = 5000;
    CHECK((ring[0].data_addr == want || ring[1].data_addr == want));
}

TEST_CASE("membership (NAT): without an advertised address the ring has the observed address and listening port",
          "[master][nat]") {
    Cluster c;
    NetAddr none;
    none.family = 0;
    none.port = 0;
    auto ring = ringWith(c, none);
    NetAddr one = addr(1), two = addr(2);
    one.port = two.port = 5000;
    CHECK(((ring[0].data_addr == one && ring[1].data_addr == two) || (ring[1].data_addr == one && ring[0].data_addr == two)));
}

TEST_CASE("membership (NAT): a Hello whose advertised address has an unknown family is refused", "[master][nat]") {
    Cluster c;
    c.m.onConnect(1, addr(1));
    Hello h = hello();
    h.advertised.family = 5;
    auto out = c.m.onMessage(1, h);
    CHECK(closed(out, 1));
    CHECK(sent<Welcome>(out, 1).empty());
    CHECK(c.m.pendingCount() == 0);
    CHECK(c.m.acceptedCount() == 0);
}

TEST_CASE("membership (NAT): a shared-state plan names the source by its advertised address", "[master][nat][shared_state]") {
    Cluster c;
    ringWith(c, v4(203, 0, 113, 7, 7001));
    c.m.onMessage(1, state(1.0f));
    auto out = c.m.onMessage(2, state(2.0f));
    // Whichever of the two receives, peer 2's plan names peer 1 (its source or its receiver).
    auto plan = sent<SharedStatePlan>(out, 2);
    REQUIRE(plan.size() == 1);
    REQUIRE(plan[0].peers.size() == 1);
    CHECK(plan[0].peers[0].data_addr == v4(203, 0, 113, 7, 7001));
}
