// The master's side of a shared-state round, driven with scripted events: the plan names every
// source, and a lost participant ends the round only when a receiver is left without a source.
#include <catch2/catch.hpp>

#include "master/shared_state_election.h"
#include "support/membership_driver.h"

using namespace pccl;
using namespace pccl::testing;

namespace {

Cluster accepted(size_t n) {
    Cluster c;
    acceptPeers(c, n);
    return c;
}

// A one-entry state of 9 MiB of floats (three chunks) whose chunk k holds value[k].
SharedStateSync state(std::array<float, 3> value) {
    std::vector<float> w((9u << 20) / sizeof(float));
    const size_t perChunk = protocol::kStateChunkBytes / sizeof(float);
    for (size_t i = 0; i < w.size(); ++i) w[i] = value[i / perChunk];
    return floatState(w);
}

} // namespace

TEST_CASE("shared-state round: the receiver fetches only its dirty chunks, from every source", "[master][shared_state]") {
    auto c = accepted(3);
    c.m.onMessage(1, state({1, 2, 3}));
    c.m.onMessage(2, state({1, 2, 3}));
    auto out = c.m.onMessage(3, state({1, 9, 3}));  // chunk 1 differs
    auto plan3 = sent<SharedStatePlan>(out, 3);
    REQUIRE(plan3.size() == 1);
    REQUIRE(plan3[0].receive.size() == 1);
    CHECK(plan3[0].receive[0].chunks == std::vector<uint32_t>{1});
    CHECK(plan3[0].receive[0].sources.size() == 2);
    CHECK(plan3[0].peers.size() == 2);
    for (ClientId source : {1, 2}) {
        auto plan = sent<SharedStatePlan>(out, source);
        REQUIRE(plan.size() == 1);
        CHECK(plan[0].receive.empty());
        CHECK(plan[0].serve.size() == 1);
    }
}

TEST_CASE("shared-state round: a lost source is reported to the receiver, which goes on; the round commits without it",
          "[master][shared_state]") {
    auto c = accepted(3);
    c.m.onMessage(1, state({1, 2, 3}));
    c.m.onMessage(2, state({1, 2, 3}));
    auto plan = sent<SharedStatePlan>(c.m.onMessage(3, state({0, 0, 0})), 3)[0];
    c.m.onMessage(2, SharedStateDone{plan.seq, true, "", 0});
    auto out = c.m.onDisconnect(1, "killed");
    CHECK(sent<SharedStateAborted>(out, 3).empty());
    auto lost = sent<SharedStateSourceLost>(out, 3);
    REQUIRE(lost.size() == 1);
    CHECK(lost[0].seq == plan.seq);
    auto done = c.m.onMessage(3, SharedStateDone{plan.seq, true, "", 0});
    CHECK(sent<SharedStateCommitted>(done, 2).size() == 1);
    CHECK(sent<SharedStateCommitted>(done, 3).size() == 1);
}

TEST_CASE("shared-state round: a lost receiver leaves the round; a lost only source aborts it", "[master][shared_state]") {
    SECTION("receiver lost") {
        auto c = accepted(3);
        c.m.onMessage(1, state({1, 2, 3}));
        c.m.onMessage(2, state({1, 2, 3}));
        auto plan = sent<SharedStatePlan>(c.m.onMessage(3, state({0, 0, 0})), 1)[0];
        c.m.onMessage(1, SharedStateDone{plan.seq, true, "", 0});
        auto out = c.m.onMessage(2, SharedStateDone{plan.seq, true, "", 0});
        CHECK(sent<SharedStateCommitted>(out, 1).empty());  // still waiting for the receiver
        out = c.m.onDisconnect(3, "killed");
        CHECK(sent<SharedStateCommitted>(out, 1).size() == 1);
        CHECK(sent<SharedStateCommitted>(out, 2).size() == 1);
    }
    SECTION("two peers") {
        auto c = accepted(2);
        SharedStateSync behind = state({0, 0, 0});
        behind.strategy = PCCL_SHARED_STATE_SYNC_STRATEGY_RECEIVE_ONLY;
        SharedStateSync ahead = state({1, 2, 3});
        ahead.strategy = PCCL_SHARED_STATE_SYNC_STRATEGY_SEND_ONLY;
        c.m.onMessage(1, ahead);
        auto plan = sent<SharedStatePlan>(c.m.onMessage(2, behind), 2);
        REQUIRE(plan.size() == 1);
        CHECK(plan[0].receive[0].chunks.size() == 3);
        auto out = c.m.onDisconnect(1, "killed");
        auto ab = sent<SharedStateAborted>(out, 2);
        REQUIRE(ab.size() == 1);
        CHECK(ab[0].result == pcclRankConnectionLost);
        CHECK(ab[0].reason.find("no other source") != std::string::npos);
        // The lost source, its address, the operation and the phase.
        CHECK_THAT(ab[0].reason, Catch::Contains("127.0.0.1") && Catch::Contains("shared-state sync revision") &&
                                     Catch::Contains("transfer phase"));
    }
}

TEST_CASE("shared-state round: a description whose chunk digests do not fit the entry removes that peer",
          "[master][shared_state]") {
    auto c = accepted(2);
    auto bad = state({1, 2, 3});
    bad.entries[0].chunks.pop_back();
    auto out = c.m.onMessage(2, bad);
    CHECK(closed(out, 2));
    CHECK(sent<Kicked>(out, 2)[0].reason.find("malformed shared-state description") != std::string::npos);
    auto forged = state({1, 2, 3});
    forged.entries[0].digest[0] ^= 1;
    CHECK(closed(c.m.onMessage(1, forged), 1));
}

TEST_CASE("shared-state election: a revision not advanced by one names the fix in pcclNoSharedStateAvailable's reason",
          "[master][shared_state]") {
    std::map<master::PeerKey, SharedStateSync> described;
    for (master::PeerKey id : {1, 2}) {
        described[id] = state({1, 2, 3});
        described[id].revision = 5;
    }
    const auto e = master::electSharedState(described, uint64_t{5});
    CHECK(e.revision == 6);
    INFO(e.noStateReason);
    CHECK(e.noStateReason.find("no peer of the group at revision 6") != std::string::npos);
    CHECK(e.noStateReason.find("described at revision 5") != std::string::npos);
    CHECK(e.noStateReason.find("the group's last revision was 5") != std::string::npos);
    CHECK(e.noStateReason.find("advance the revision by exactly one each step") != std::string::npos);
    // Advanced by one: the round goes ahead.
    for (auto &[id, s] : described) s.revision = 6;
    CHECK(master::electSharedState(described, uint64_t{5}).noStateReason.empty());
}
