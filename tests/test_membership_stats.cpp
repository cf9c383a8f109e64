// The master and a peer's StatsReport (issue 18): taken from an admitted peer, which stays;
// a peer that is not admitted yet is kicked for it, like any report.
#include <catch2/catch.hpp>

#include "support/membership_driver.h"

using namespace pccl;
using namespace pccl::testing;

TEST_CASE("membership: a StatsReport from an admitted peer is taken, from a pending one kicks it", "[master]") {
    Cluster c;
    c.firstPeer(1);
    StatsReport r;
    r.tx_bytes = 4096;
    r.collectives_completed = 3;
    r.links.push_back(LinkRate{Uuid::random(), 1000000});
    auto out = c.m.onMessage(1, r);
    CHECK(out.empty());
    CHECK(c.m.acceptedCount() == 1);

    c.join(2);
    out = c.m.onMessage(2, r);
    CHECK(closed(out, 2));
    REQUIRE(sent<Kicked>(out, 2).size() == 1);
    CHECK(sent<Kicked>(out, 2)[0].reason.find("StatsReport from a peer that is not admitted") != std::string::npos);
}
