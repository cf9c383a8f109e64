// The peer's Session, driven with scripted events: at info each peer logs its own membership
// changes once ("joined the run as ...", "peer X left; now ...", "ring changed: ..."), only when
// its rank or its group's size changed, and nothing for operations that succeed; the master it
// lost or that redirected it is named (the address that answered, of those listed).
#include <catch2/catch.hpp>

#include <algorithm>
#include <mutex>
#include <utility>

#include "support/session_driver.h"
#include "util/log.h"

using namespace pccl;
using namespace pccl::testing::session;
using pccl::peer::ReconnectMaster;

namespace {

// Captures the log lines at info and above while it lives (the sink replaces stderr).
struct LogCapture {
    LogCapture() : before(log::level()) {
        log::setLevel(log::Level::Info);
        log::setSink([this](log::Level, const std::string &line) {
            std::lock_guard lock(mu);
            lines.push_back(line);
        });
    }
    ~LogCapture() {
        log::setSink({});
        log::setLevel(before);
    }
    std::vector<std::string> take() {
        std::lock_guard lock(mu);
        return std::exchange(lines, {});
    }
    log::Level before;
    std::mutex mu;
    std::vector<std::string> lines;
};

} // namespace

TEST_CASE("session: at info a peer logs joining the run once, with its rank, group size and group", "[session][log]") {
    LogCapture logs;
    Driver d;
    d.admit(ringWithSelfAt(3, 2), {3, 3, 1, 3});
    auto lines = logs.take();
    CHECK(std::count(lines.begin(), lines.end(), "joined the run as rank 2 of 3 in group 3") == 1);
    // The admission round itself is not a ring change.
    CHECK(std::none_of(lines.begin(), lines.end(), [](auto &l) { return contains(l, "ring changed"); }));
}

TEST_CASE("session: at info a lost peer is logged with this peer's new rank and group size", "[session][log]") {
    Driver d;
    d.admit(ringWithSelfAt(3, 2), {3, 3, 1, 3});
    LogCapture logs;
    WorldUpdate update{{2, 2, 1, 2}, {member(2), selfMember()}};
    d.message(update);
    const auto lines = logs.take();
    REQUIRE(lines.size() == 1);
    CHECK(contains(lines[0], "peer " + member(1).uuid.shortStr() + " (127.0.0.1:40001) left; now rank 1 of 2"));
    // The same place again (a peer of another group left): nothing to say.
    update.world = {4, 2, 2, 2};
    d.message(update);
    CHECK(logs.take().empty());
}

TEST_CASE("session: at info a topology update logs 'ring changed' only when the rank or size changed", "[session][log]") {
    Driver d;
    d.admit(ringWithSelfAt(2, 0), {2, 2, 1, 2});
    LogCapture logs;
    auto vote = d.vote(VoteKind::Topology);
    d.message(TopologyUpdate{2, ringWithSelfAt(2, 0), {2, 2, 1, 2}});
    d.linksConnected(2);
    d.message(TopologyDone{2, true, ""});
    CHECK(logs.take().empty());  // same ring: nothing changed for this peer
    d.message(TopologyUpdate{3, ringWithSelfAt(3, 1), {3, 3, 1, 3}});
    CHECK(logs.take() == std::vector<std::string>{"ring changed: rank 1 of 3"});
    d.message(TopologyUpdate{4, {member(2), selfMember(), member(1)}, {3, 3, 1, 3}});  // reordered, same place
    CHECK(logs.take().empty());
    d.message(TopologyUpdate{5, ringWithSelfAt(3, 0), {3, 3, 1, 3}});  // optimized: a new rank
    CHECK(logs.take() == std::vector<std::string>{"ring changed: rank 0 of 3"});
    (void)vote;
}

TEST_CASE("session: at info an all-reduce that succeeds logs nothing", "[session][log]") {
    Driver d;
    d.admit(ringWithSelfAt(2, 0), {2, 2, 1, 2});
    LogCapture logs;
    for (uint64_t tag = 1; tag <= 3; ++tag) {
        d.commence(tag, tag, ringWithSelfAt(2, 0));
        d.allReduceFinished(tag, tag);
        d.message(CollectiveCommitted{tag, tag});
        auto w = d.awaitAllReduce(tag);
        CHECK(answer(w.out, w.id).status.ok());
    }
    CHECK(logs.take().empty());
}

TEST_CASE("session: a master that sends the peer elsewhere is named, and warned about once while it repeats itself",
          "[session][log][reconnect]") {
    SessionOptions o = Driver::defaults();
    o.reconnectTimeoutMs = 60000;
    o.masterCount = 2;
    o.masterNames = {"10.0.0.1:48148", "10.0.0.2:48148"};
    Driver d(std::move(o));
    d.admit(ringWithSelfAt(3, 1), WorldInfo{3, 3, 1, 3});
    LogCapture logs;
    const Reject follower{toWire(pcclMasterConnectionFailed), "not the leader, try 10.0.0.9:48148", true};
    auto warnings = [&](const std::string &master) {
        auto lines = logs.take();
        return std::count_if(lines.begin(), lines.end(), [&](auto &l) {
            return contains(l, "the master " + master + " sent this peer elsewhere: not the leader");
        });
    };
    // Lost, reconnected to the first address: the follower there redirects; then the second.
    d.controlClosed();
    d.reconnected();
    d.message(follower);
    CHECK(warnings("10.0.0.1:48148") == 1);
    d.controlClosed("closed by this peer");
    d.reconnected();
    d.message(follower);
    CHECK(warnings("10.0.0.2:48148") == 1);
    // Both keep saying the same while the peer alternates between them: quiet from now on.
    for (int i = 0; i < 6; ++i) {
        d.controlClosed("closed by this peer");
        d.reconnected();
        d.message(follower);
    }
    auto rest = logs.take();
    CHECK(std::none_of(rest.begin(), rest.end(), [](auto &l) { return contains(l, "sent this peer elsewhere"); }));
    // What a master says changes: warned again, naming that master.
    d.controlClosed("closed by this peer");
    d.reconnected();
    d.message(Reject{toWire(pcclMasterConnectionFailed), "not the leader, try 10.0.0.8:48148", true});
    auto changed = logs.take();
    CHECK(std::count_if(changed.begin(), changed.end(), [](auto &l) {
              return contains(l, "sent this peer elsewhere: not the leader, try 10.0.0.8:48148");
          }) == 1);
}

TEST_CASE("session: a peer whose first connect was answered by the second master address names that master when "
          "it is lost and reconnects to it first", "[session][log][reconnect]") {
    auto twoMasters = [](uint64_t reconnectTimeoutMs) {
        SessionOptions o = Driver::defaults();
        o.reconnectTimeoutMs = reconnectTimeoutMs;
        o.masterCount = 2;
        o.masterNames = {"10.0.0.1:48148", "10.0.0.2:48148"};
        return o;
    };
    SECTION("reconnecting: the warning names it, the first attempt goes to it, then the other one") {
        Driver d(twoMasters(60000));
        d.answeringMaster = 1;  // the first address refused the connection
        d.admit(ringWithSelfAt(3, 1), WorldInfo{3, 3, 1, 3});
        LogCapture logs;
        auto lost = d.controlClosed("connection reset by peer");
        auto lines = logs.take();
        CHECK(std::count_if(lines.begin(), lines.end(), [](auto &l) {
                  return contains(l, "lost the master 10.0.0.2:48148: connection reset by peer");
              }) == 1);
        CHECK(std::none_of(lines.begin(), lines.end(), [](auto &l) { return contains(l, "10.0.0.1:48148"); }));
        auto first = actionsOf<ReconnectMaster>(lost);
        REQUIRE(first.size() == 1);
        CHECK(first[0].address == 1);
        auto next = actionsOf<ReconnectMaster>(d.reconnected(Status{pcclMasterConnectionFailed, "connection refused"}));
        REQUIRE(next.size() == 1);
        CHECK(next[0].address == 0);
    }
    SECTION("not reconnecting (PCCL 1.0): the failure names it") {
        Driver d(twoMasters(0));
        d.answeringMaster = 1;
        d.admit(ringWithSelfAt(3, 1), WorldInfo{3, 3, 1, 3});
        d.controlClosed("connection reset by peer");
        CHECK(d.s.phase() == Phase::Dead);
        CHECK(d.s.deathStatus().message() == "connection to the master 10.0.0.2:48148 lost: connection reset by peer");
    }
}
