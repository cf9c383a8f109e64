// Membership at scale (docs/design.md, "The master at scale"): the shortcuts that keep the
// per-message work independent of the number of peers (counts derived from the rings and the
// uuid index, scans that resume from a hint, size checks before the full check) decide exactly
// as the full scans did. Peers arrive and act in shuffled orders so that the hints wrap around.
#include <algorithm>
#include <random>

#include "security/handshake.h"
#include "support/membership_driver.h"

using namespace pccl::testing;

namespace {

// Peer 1, then 2..n admitted in one round voted by peer 1.
void acceptAll(Cluster &c, ClientId n) {
    c.firstPeer(1);
    for (ClientId id = 2; id <= n; ++id) c.join(id);
    c.admitRound({1});
    REQUIRE(c.m.acceptedCount() == n);
}

std::vector<ClientId> shuffled(ClientId n, uint32_t seed) {
    std::vector<ClientId> ids;
    for (ClientId id = 1; id <= n; ++id) ids.push_back(id);
    std::shuffle(ids.begin(), ids.end(), std::mt19937(seed));
    return ids;
}

size_t count(const Actions &out, auto pred) { return static_cast<size_t>(std::count_if(out.begin(), out.end(), pred)); }

} // namespace

TEST_CASE("scale: accepted and pending counts follow registrations, admissions, losses and refusals",
          "[master][membership][scale]") {
    Cluster c;
    c.firstPeer(1);
    CHECK(c.m.acceptedCount() == 1);
    CHECK(c.m.pendingCount() == 0);
    c.join(2);
    c.join(3);
    c.m.onConnect(4, addr(4));  // connected, no Hello: neither
    CHECK(c.m.pendingCount() == 2);
    c.m.onDisconnect(3, "reset");  // a pending peer lost
    CHECK(c.m.pendingCount() == 1);
    c.admitRound({1});
    CHECK(c.m.acceptedCount() == 2);
    CHECK(c.m.pendingCount() == 0);
    c.m.onMessage(4, hello());
    c.m.onConnect(5, addr(5));
    Hello bad = hello();
    bad.version = 1;
    c.m.onMessage(5, bad);  // refused: counted nowhere
    CHECK(c.m.pendingCount() == 1);
    c.m.onDisconnect(1, "reset");  // an accepted peer lost
    CHECK(c.m.acceptedCount() == 1);
    CHECK(c.m.pendingCount() == 1);
}

TEST_CASE("scale: a peer id is free again once the peer that held it is gone, and taken while it is pending",
          "[master][membership][scale]") {
    Cluster c;
    c.firstPeer(1);
    Hello h = hello();
    c.m.onConnect(2, addr(2));
    c.m.onMessage(2, h);  // pending
    c.m.onConnect(3, addr(3));
    auto out = c.m.onMessage(3, h);
    REQUIRE(sent<Reject>(out, 3).size() == 1);
    c.m.onDisconnect(2, "reset");
    c.m.onConnect(4, addr(4));
    out = c.m.onMessage(4, h);
    CHECK(sent<Reject>(out, 4).empty());
    CHECK(sent<Welcome>(out, 4).size() == 1);
    c.admitRound({1});
    CHECK(c.m.acceptedCount() == 2);
}

TEST_CASE("scale: an all-reduce of 60 peers started in any order commences after the last start and commits after "
          "the last report", "[master][membership][scale]") {
    const ClientId n = 60;
    auto isA = []<class M>(M *) {
        return [](const pccl::master::Action &a) { return a.message && std::holds_alternative<M>(*a.message); };
    };
    for (uint32_t seed : {1u, 2u, 3u}) {
        Cluster c;
        acceptAll(c, n);
        const auto order = shuffled(n, seed);
        Actions last;
        for (size_t i = 0; i < order.size(); ++i) {
            last = c.m.onMessage(order[i], init(7));
            if (i + 1 == order.size()) break;
            CHECK(count(last, isA((CollectiveCommence *)nullptr)) == 0);
            CHECK(c.m.onMessage(order[i], CollectiveAwait{7}).empty());
        }
        REQUIRE(count(last, isA((CollectiveCommence *)nullptr)) == n);
        const uint64_t seq = sent<CollectiveCommence>(last, 1)[0].seq;
        const auto doneOrder = shuffled(n, seed + 10);
        for (size_t i = 0; i < doneOrder.size(); ++i) {
            auto out = c.m.onMessage(doneOrder[i], CollectiveDone{7, seq, true, "", 0, 1000});
            CHECK(count(out, isA((CollectiveCommitted *)nullptr)) == (i + 1 == doneOrder.size() ? n : 0));
        }
    }
}

TEST_CASE("scale: with 40 peers the misordered loop is found whatever the order, and not while one peer is idle",
          "[master][membership][scale]") {
    const ClientId n = 40;
    for (uint32_t seed : {4u, 5u, 6u}) {
        Cluster c;
        acceptAll(c, n);
        const auto order = shuffled(n, seed);
        const ClientId voter = order.back();
        // Everybody else starts and awaits tag 2; the last one votes instead. Until that vote one
        // peer is idle and nothing fails.
        for (size_t i = 0; i + 1 < order.size(); ++i) {
            c.m.onMessage(order[i], init(2));
            auto out = c.m.onMessage(order[i], CollectiveAwait{2});
            CHECK(count(out, [](auto &a) { return a.message && std::holds_alternative<CollectiveAborted>(*a.message); }) == 0);
        }
        auto out = c.m.onMessage(voter, VoteOptimizeTopology{});
        auto failed = sent<VoteFailed>(out, voter);
        REQUIRE(failed.size() == 1);
        CHECK(failed[0].reason.find("misordered") != std::string::npos);
        CHECK(count(out, [](auto &a) { return a.message && std::holds_alternative<CollectiveAborted>(*a.message); }) ==
              n - 1);
    }
}

TEST_CASE("scale: with 40 peers a peers-pending vote is answered at once when the only non-voter waits for the voters",
          "[master][membership][scale]") {
    const ClientId n = 40;
    for (uint32_t seed : {7u, 8u}) {
        Cluster c;
        acceptAll(c, n);
        const auto order = shuffled(n, seed);
        c.m.onMessage(order.front(), init(3));  // waits for everybody else in tag 3
        Actions out;
        for (size_t i = 1; i < order.size(); ++i) {
            out = c.m.onMessage(order[i], VotePeersPending{});
            if (i + 1 < order.size())
                CHECK(count(out, [](auto &a) { return a.message && std::holds_alternative<PeersPendingResult>(*a.message); }) == 0);
        }
        for (size_t i = 1; i < order.size(); ++i) {
            auto r = sent<PeersPendingResult>(out, order[i]);
            REQUIRE(r.size() == 1);
            CHECK_FALSE(r[0].pending);
        }
    }
}

TEST_CASE("scale: with a run secret each links round sends every peer exactly the pair keys it lacks",
          "[master][membership][scale]") {
    pccl::master::MembershipOptions o;
    o.masterKey = std::array<uint8_t, 32>{9, 8, 7};
    Cluster c{Membership(o)};
    std::map<ClientId, std::array<uint8_t, 32>> own;  // K_A of each peer, from its Welcome
    std::map<ClientId, pccl::Uuid> uuid;
    // Every PeerKeys message of `out`: receiver -> the peers it got keys for, each key checked.
    auto keysIn = [&](const Actions &out) {
        std::map<ClientId, std::set<ClientId>> got;
        for (auto &a : out) {
            if (!a.message || !std::holds_alternative<PeerKeys>(*a.message)) continue;
            for (auto &k : std::get<PeerKeys>(*a.message).keys) {
                auto from = std::find_if(uuid.begin(), uuid.end(), [&](auto &u) { return u.second == k.peer; });
                REQUIRE(from != uuid.end());
                CHECK(k.key == pccl::security::pairKey(own.at(from->first), uuid.at(a.to)));
                CHECK(got[a.to].insert(from->first).second);  // once per message
            }
        }
        return got;
    };
    auto join = [&](ClientId id) {
        auto out = c.join(id);
        auto w = sent<Welcome>(out, id);
        REQUIRE(w.size() == 1);
        own[id] = w[0].session_key;
        uuid[id] = w[0].uuid;
        return out;
    };
    auto first = join(1);
    CHECK(keysIn(first).empty());  // alone: nobody to key
    c.m.onMessage(1, LinksReady{sent<TopologyUpdate>(first, 1)[0].epoch, true, ""});
    join(2);
    join(3);
    auto round1 = keysIn(c.m.onMessage(1, VoteUpdateTopology{}));
    CHECK(round1[1] == std::set<ClientId>{2, 3});
    CHECK(round1[2] == std::set<ClientId>{1, 3});
    CHECK(round1[3] == std::set<ClientId>{1, 2});
    for (ClientId id : {1, 2, 3}) c.m.onMessage(id, LinksReady{2, true, ""});
    REQUIRE(c.m.acceptedCount() == 3);
    // Joiners 4 and 5; 5's links fail, so the round runs again without it: no key twice.
    join(4);
    join(5);
    Actions vote;
    for (ClientId id : {1, 2, 3}) vote = c.m.onMessage(id, VoteUpdateTopology{});
    auto round2 = keysIn(vote);
    for (ClientId id : {1, 2, 3}) CHECK(round2[id] == std::set<ClientId>{4, 5});
    CHECK(round2[4] == std::set<ClientId>{1, 2, 3, 5});
    CHECK(round2[5] == std::set<ClientId>{1, 2, 3, 4});
    const uint64_t epoch = sent<TopologyUpdate>(vote, 1)[0].epoch;
    for (ClientId id : {1, 2, 3}) c.m.onMessage(id, LinksReady{epoch, true, ""});
    auto rerun = c.m.onMessage(4, LinksReady{epoch, false, "refused", uuid[5]});  // 5 removed, the last report
    REQUIRE(sent<TopologyUpdate>(rerun, 1).size() == 1);  // the round again, without 5
    CHECK(keysIn(rerun).empty());
}
