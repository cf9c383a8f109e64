// Standby masters' election through a real single-node etcd (master/etcd_election.h): who leads,
// with which epoch, and when leadership is lost. Skipped with a message when etcd is not installed.
#include <catch2/catch.hpp>

#ifdef PCCL_HAVE_ETCD
#include <condition_variable>
#include <mutex>

#include "master/etcd_election.h"
#include "support/cluster.h"
#include "support/etcd_server.h"

using namespace pccl;
using namespace pccl::master;
using pccl_test::EtcdServer;

namespace {

// Collects one election's reports.
struct Reports {
    std::mutex mu;
    std::vector<Leadership> all;
    EtcdElection::Listener listener() {
        return [this](const Leadership &l) {
            std::lock_guard lock(mu);
            all.push_back(l);
        };
    }
    Leadership last() {
        std::lock_guard lock(mu);
        return all.empty() ? Leadership{} : all.back();
    }
    bool leads() { return last().leader; }
    size_t count() {
        std::lock_guard lock(mu);
        return all.size();
    }
    // Whether a report from the n-th on said "not the leader".
    bool steppedDownSince(size_t n) {
        std::lock_guard lock(mu);
        for (size_t i = n; i < all.size(); ++i)
            if (!all[i].leader) return true;
        return false;
    }
    // The address a follower was last told, "" when none.
    std::string leaderAddress() { return last().leader ? "" : last().leaderAddress; }
};

EtcdElectionOptions candidate(const EtcdServer &etcd, const std::string &advertise, const std::string &run = "r1") {
    EtcdElectionOptions o;
    o.endpoint = etcd.endpoint();
    o.runId = run;
    o.advertise = advertise;
    o.leaseTtlS = 2;
    return o;
}

bool waitFor(const std::function<bool()> &cond, double seconds) { return pccl_test::waitUntil(cond, seconds); }

} // namespace

TEST_CASE("etcd election: bad options are refused before any campaign", "[etcd]") {
    Reports r;
    auto refused = [&](EtcdElectionOptions o) {
        EtcdElection e(std::move(o), r.listener());
        auto st = e.start();
        CHECK(st.code() == pcclInvalidArgument);
        return st.message();
    };
    EtcdElectionOptions o{"http://127.0.0.1:1", "run", "127.0.0.1:5000", 3};
    auto bad = o;
    bad.endpoint = "https://127.0.0.1:1";
    CHECK(refused(bad).find("expected http://HOST:PORT") != std::string::npos);
    bad = o;
    bad.runId = "a/b";
    CHECK(refused(bad).find("--run-id") != std::string::npos);
    bad = o;
    bad.advertise = "0.0.0.0:5000";
    CHECK(refused(bad).find("wildcard") != std::string::npos);
    bad = o;
    bad.advertise = "127.0.0.1";
    CHECK(refused(bad).find("HOST:PORT") != std::string::npos);
    bad = o;
    bad.leaseTtlS = 0;
    CHECK(refused(bad).find("TTL") != std::string::npos);
    CHECK(r.all.empty());
}

TEST_CASE("etcd election: one of two masters leads under the key's revision, the other names it; a leader that "
          "stops hands over at once and the next epoch is newer", "[etcd]") {
    if (!EtcdServer::available()) {
        WARN(EtcdServer::skipMessage());
        return;
    }
    EtcdServer etcd;
    Reports ra, rb;
    auto a = std::make_unique<EtcdElection>(candidate(etcd, "127.0.0.1:1001"), ra.listener());
    REQUIRE(a->start().ok());
    REQUIRE(waitFor([&] { return ra.leads(); }, 10));
    const Leadership first = ra.last();
    CHECK(first.epoch > 0);
    CHECK(first.validUntil > std::chrono::steady_clock::now());
    CHECK(first.validUntil <= std::chrono::steady_clock::now() + std::chrono::seconds(2));

    EtcdElection b(candidate(etcd, "127.0.0.1:1002"), rb.listener());
    REQUIRE(b.start().ok());
    REQUIRE(waitFor([&] { return rb.leaderAddress() == "127.0.0.1:1001"; }, 10));
    // The leader renews (each renewal reported, validity moving on); the follower stays one.
    REQUIRE(waitFor([&] { return ra.last().validUntil > first.validUntil + std::chrono::milliseconds(300); }, 5));
    CHECK(ra.last().epoch == first.epoch);
    CHECK_FALSE(rb.leads());

    const auto stopped = std::chrono::steady_clock::now();
    a.reset();  // revokes its lease
    REQUIRE(waitFor([&] { return rb.leads(); }, 10));
    CHECK(std::chrono::steady_clock::now() - stopped < std::chrono::seconds(1));  // not the lease TTL
    CHECK(rb.last().epoch > first.epoch);
}

TEST_CASE("etcd election: a leader whose lease etcd dropped, or whose key was deleted, steps down and the other "
          "master leads", "[etcd]") {
    if (!EtcdServer::available()) {
        WARN(EtcdServer::skipMessage());
        return;
    }
    EtcdServer etcd;
    auto client = EtcdClient::create(etcd.endpoint(), 1000);
    REQUIRE(client.ok());
    Reports ra, rb;
    EtcdElection a(candidate(etcd, "127.0.0.1:1001"), ra.listener());
    REQUIRE(a.start().ok());
    REQUIRE(waitFor([&] { return ra.leads(); }, 10));
    EtcdElection b(candidate(etcd, "127.0.0.1:1002"), rb.listener());
    REQUIRE(b.start().ok());
    REQUIRE(waitFor([&] { return rb.leaderAddress() == "127.0.0.1:1001"; }, 10));

    auto key = (*client)->get(EtcdElection::leaderKey("r1"));
    REQUIRE(key.ok());
    REQUIRE(key->has_value());
    const uint64_t firstEpoch = ra.last().epoch;
    CHECK((*key)->createRevision == static_cast<int64_t>(firstEpoch));
    const size_t before = ra.count();
    bool outsiderHolds = false;
    SECTION("lease revoked") { REQUIRE((*client)->revoke((*key)->lease).ok()); }
    SECTION("key replaced by another holder") {
        REQUIRE((*client)->revoke((*key)->lease).ok());
        auto lease = (*client)->grant(30);
        REQUIRE(lease.ok());
        auto taken = (*client)->createIfAbsent(EtcdElection::leaderKey("r1"), "127.0.0.1:1003", lease->id);
        REQUIRE(taken.ok());
        outsiderHolds = taken->won;  // else a master was faster, as in the section above
    }
    REQUIRE(waitFor([&] { return ra.steppedDownSince(before); }, 5));
    if (outsiderHolds) {
        REQUIRE(waitFor([&] { return ra.leaderAddress() == "127.0.0.1:1003" && rb.leaderAddress() == "127.0.0.1:1003"; },
                        5));
        return;
    }
    // Exactly one leads again, under a newer epoch, and the other names it.
    REQUIRE(waitFor(
        [&] {
            if (ra.leads() == rb.leads()) return false;
            Reports &leader = ra.leads() ? ra : rb;
            Reports &follower = ra.leads() ? rb : ra;
            return leader.last().epoch > firstEpoch &&
                   follower.leaderAddress() == (ra.leads() ? "127.0.0.1:1001" : "127.0.0.1:1002");
        },
        10));
}

TEST_CASE("etcd election: with etcd unreachable a master never leads and says it knows no leader", "[etcd]") {
    Reports r;
    EtcdElectionOptions o{"http://127.0.0.1:" + std::to_string(pccl_test::freeLoopbackPort()), "r1", "127.0.0.1:1001", 2};
    EtcdElection e(o, r.listener());
    REQUIRE(e.start().ok());
    REQUIRE(waitFor([&] { std::lock_guard lock(r.mu); return !r.all.empty(); }, 5));
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    std::lock_guard lock(r.mu);
    for (auto &l : r.all) {
        CHECK_FALSE(l.leader);
        CHECK(l.leaderAddress.empty());
    }
}

#else
TEST_CASE("etcd election: not built (PCCL_HTTP=OFF)", "[etcd]") { WARN("skipped: this build has no etcd client"); }
#endif
