// pccl-soak's master fault schedule (master_faults.hpp), without processes: the sequence comes
// from the seed only, a kill waits for quiet, joins are held around a fault, and a restarted
// master that never reports its rebuild is flagged.
#include <catch2/catch.hpp>

#include <algorithm>
#include <vector>

#include "master_faults.hpp"

using soak::MasterFaultOptions;
using soak::MasterFaults;
using Action = MasterFaults::Action;
using State = MasterFaults::State;

namespace {

MasterFaultOptions enabled() {
    MasterFaultOptions o;
    o.enabled = true;
    o.min_ms = 1000;
    o.max_ms = 2000;
    o.down_max_ms = 800;
    o.heartbeat_ms = 400;
    o.rebuild_timeout_s = 3;
    o.quiet_wait_s = 5;
    return o;
}

struct Fault {
    Action action;
    double planned;
};

// Drives a schedule for `seconds` in 10 ms steps; a restarted master reports its rebuild 0.5 s
// after the restart; quiet(t) says whether no peer is joining. Returns the faults (kill, stop)
// with their planned lengths.
std::vector<Fault> drive(uint64_t seed, double seconds, bool (*quiet)(double)) {
    MasterFaults f(enabled(), seed);
    f.start(0);
    std::vector<Fault> out;
    double restarted_at = -1;
    for (int i = 0; i * 0.01 < seconds; ++i) {
        const double t = i * 0.01;
        if (restarted_at >= 0 && t >= restarted_at + 0.5) {
            f.rebuilt(t);
            restarted_at = -1;
        }
        const Action a = f.poll(t, quiet(t));
        if (a == Action::Kill || a == Action::Stop) out.push_back({a, f.plannedSeconds()});
        if (a == Action::Restart) restarted_at = t;
    }
    return out;
}

bool alwaysQuiet(double) { return true; }
bool joiningAtTimes(double t) { return static_cast<int>(t) % 3 == 0; }  // busy one second in three

// A schedule whose first fault waited for quiet in vain and was skipped, polled on to its
// next fault (returned in *a at *t).
MasterFaults afterASkip(uint64_t seed, Action *a, double *t) {
    MasterFaults f(enabled(), seed);
    f.start(0);
    f.poll(2.0, false);
    f.poll(7.1, false);
    for (*a = Action::None, *t = 7.1; *a == Action::None && *t < 20;) *a = f.poll(*t += 0.01, true);
    return f;
}

uint64_t seedWhoseSecondFaultIs(Action want) {
    for (uint64_t seed = 1;; ++seed) {
        Action a;
        double t;
        afterASkip(seed, &a, &t);
        if (a == want) return seed;
    }
}

} // namespace

TEST_CASE("soak master faults: the seed alone decides the kinds and lengths of the faults, however long they wait "
          "for quiet",
          "[soak]") {
    const auto calm = drive(7, 60, alwaysQuiet);
    const auto busy = drive(7, 60, joiningAtTimes);
    REQUIRE(calm.size() >= 10);
    const size_t n = std::min(calm.size(), busy.size());
    REQUIRE(n >= 8);
    for (size_t i = 0; i < n; ++i) {
        CHECK(calm[i].action == busy[i].action);
        CHECK(calm[i].planned == busy[i].planned);
    }
    size_t kills = 0;
    for (const Fault &f : calm) {
        kills += f.action == Action::Kill;
        if (f.action == Action::Kill) CHECK((f.planned >= 0.05 && f.planned <= 0.8));
        else CHECK((f.planned >= 0.25 * 0.4 && f.planned <= 2 * 0.4));
    }
    CHECK(kills > 0);
    CHECK(kills < calm.size());
    const auto other = drive(8, 60, alwaysQuiet);
    bool differs = other.size() != calm.size();
    for (size_t i = 0; i < std::min(other.size(), calm.size()); ++i)
        differs = differs || other[i].action != calm[i].action || other[i].planned != calm[i].planned;
    CHECK(differs);
}

TEST_CASE("soak master faults: a due fault waits for quiet with joins held, and is skipped after quiet_wait_s",
          "[soak]") {
    MasterFaults f(enabled(), 1);
    CHECK(f.poll(100, true) == Action::None);  // not started: nothing happens
    f.start(0);
    CHECK_FALSE(f.holdJoins(0.5));
    CHECK(f.poll(0.5, true) == Action::None);  // the first fault is 1..2 s away
    CHECK(f.poll(2.0, false) == Action::None);
    CHECK(f.holdJoins(2.0));
    CHECK(f.poll(6.0, false) == Action::None);  // due at 1..2 s: waits up to 5 s
    CHECK(f.poll(7.1, false) == Action::Skip);
    CHECK(f.skipped() == 1);
    CHECK(f.state() == State::Up);
    CHECK_FALSE(f.holdJoins(7.1));
    CHECK(f.kills() + f.stops() == 0);
}

TEST_CASE("soak master faults: a kill restarts after its outage, holds joins until the rebuild, and a missing "
          "rebuild is reported once", "[soak]") {
    Action a;
    double t;
    MasterFaults f = afterASkip(seedWhoseSecondFaultIs(Action::Kill), &a, &t);
    REQUIRE(a == Action::Kill);
    const double planned = f.plannedSeconds();
    CHECK(f.state() == State::Down);
    CHECK(f.poll(t + planned - 0.02, true) == Action::None);
    CHECK(f.holdJoins(t + planned - 0.02));
    const double restart = t + planned + 0.01;
    CHECK(f.poll(restart, true) == Action::Restart);
    CHECK(f.state() == State::Rebuilding);
    CHECK(f.holdJoins(restart + 1));
    CHECK(f.poll(restart + 2.9, true) == Action::None);
    CHECK(f.poll(restart + 3.1, true) == Action::RebuildMissing);
    CHECK(f.state() == State::Up);
    CHECK(f.poll(restart + 3.2, true) == Action::None);  // reported once; the next fault is 1..2 s away
    f.rebuilt(restart + 3.3);                            // a late report changes nothing
    CHECK(f.state() == State::Up);
    CHECK(f.kills() == 1);
}

TEST_CASE("soak master faults: a stop is resumed after its planned length", "[soak]") {
    Action a;
    double t;
    MasterFaults f = afterASkip(seedWhoseSecondFaultIs(Action::Stop), &a, &t);
    REQUIRE(a == Action::Stop);
    const double planned = f.plannedSeconds();
    CHECK(f.state() == State::Stopped);
    CHECK(f.holdJoins(t));
    CHECK(f.poll(t + planned - 0.02, true) == Action::None);
    CHECK(f.poll(t + planned + 0.01, true) == Action::Resume);
    CHECK(f.state() == State::Up);
    CHECK(f.stops() == 1);
}

TEST_CASE("soak master faults: a restarted master that reports its rebuild ends the fault", "[soak]") {
    uint64_t seed = 1;
    for (;; ++seed) {
        MasterFaults probe(enabled(), seed);
        probe.start(0);
        if (probe.poll(10, true) == Action::Kill) break;
    }
    MasterFaults f(enabled(), seed);
    f.start(0);
    CHECK(f.poll(10, true) == Action::Kill);
    CHECK(f.poll(11, true) == Action::Restart);
    f.rebuilt(11.2);
    CHECK(f.state() == State::Up);
    CHECK_FALSE(f.holdJoins(11.2));
    CHECK(f.poll(11.3, true) == Action::None);
    CHECK(f.poll(11.2 + 2.01, true) != Action::None);  // the next fault, 1..2 s after the rebuild
}

TEST_CASE("soak master faults: disabled, nothing happens and no join is held", "[soak]") {
    MasterFaults f(MasterFaultOptions{}, 1);
    f.start(0);
    for (double t = 0; t < 100; t += 0.5) {
        CHECK(f.poll(t, true) == Action::None);
        CHECK_FALSE(f.holdJoins(t));
    }
}

namespace {

// Standby masters (--etcd): lease TTL 1 s, joins held 0.5 s after a resumed stop, a killed leader
// restarted up to 3 s later.
MasterFaultOptions withEtcd() {
    MasterFaultOptions o = enabled();
    o.down_max_ms = 3000;
    o.lease_ttl_s = 1;
    o.settle_s = 0.5;
    return o;
}

// The first seed whose first fault (polled at 10 s, always quiet) is `want` with a planned length
// that `fits`.
uint64_t seedWhoseFirstFaultIs(Action want, bool (*fits)(double)) {
    for (uint64_t seed = 1;; ++seed) {
        MasterFaults probe(withEtcd(), seed);
        probe.start(0);
        if (probe.poll(10, true) == want && fits(probe.plannedSeconds())) return seed;
    }
}

bool any(double) { return true; }

} // namespace

TEST_CASE("soak master faults with etcd: a leader kill reports the lease expiry; a rebuild by the other master "
          "before the restart ends the fault at the restart", "[soak]") {
    MasterFaults f(withEtcd(), seedWhoseFirstFaultIs(Action::Kill, [](double s) { return s > 1.3; }));
    f.start(0);
    REQUIRE(f.poll(10, true) == Action::Kill);
    const double restart = 10 + f.plannedSeconds();
    CHECK(f.poll(10.5, true) == Action::None);
    CHECK(f.poll(10.99, true) == Action::None);
    CHECK(f.poll(11.0, true) == Action::LeaseExpired);  // kill + lease TTL
    CHECK(f.poll(11.01, true) == Action::None);        // once
    f.rebuilt(11.2);                                     // the follower took over and rebuilt the run
    CHECK(f.state() == State::Down);
    CHECK(f.holdJoins(11.2));
    CHECK(f.poll(restart - 0.01, true) == Action::None);
    CHECK(f.poll(restart + 0.01, true) == Action::Restart);  // the victim, as a follower
    CHECK(f.state() == State::Up);
    CHECK_FALSE(f.holdJoins(restart + 0.02));
}

TEST_CASE("soak master faults with etcd: a victim restarted before its lease expired gives the new leader lease "
          "TTL + rebuild_timeout from the kill", "[soak]") {
    MasterFaults f(withEtcd(), seedWhoseFirstFaultIs(Action::Kill, [](double s) { return s < 0.5; }));
    f.start(0);
    REQUIRE(f.poll(10, true) == Action::Kill);
    REQUIRE(f.poll(10.5, true) == Action::Restart);
    CHECK(f.state() == State::Rebuilding);
    CHECK(f.poll(11.0, true) == Action::LeaseExpired);
    CHECK(f.poll(10 + 1 + 3 - 0.01, true) == Action::None);         // lease TTL (1 s) + rebuild_timeout (3 s)
    CHECK(f.poll(10 + 1 + 3 + 0.01, true) == Action::RebuildMissing);
}

TEST_CASE("soak master faults with etcd: a stop longer than the lease reports its expiry, and joins stay held "
          "for settle_s after the SIGCONT", "[soak]") {
    MasterFaults f(withEtcd(), seedWhoseFirstFaultIs(Action::Stop, [](double s) { return s > 0; }));
    f.start(0);
    REQUIRE(f.poll(10, true) == Action::Stop);
    const double resume = 10 + f.plannedSeconds();  // 0.1 .. 0.8 s: shorter than the lease
    CHECK(f.poll(resume + 0.01, true) == Action::Resume);
    CHECK(f.poll(resume + 0.95, true) == Action::None);  // resumed in time: no lease expiry at 11 s
    CHECK(f.holdJoins(resume + 0.45));
    CHECK_FALSE(f.holdJoins(resume + 0.55));  // the next fault is 1..2 s after the SIGCONT

    MasterFaultOptions longStops = withEtcd();
    longStops.heartbeat_ms = 2000;  // stops of 0.5 .. 4 s against a lease of 1 s
    uint64_t seed = 1;
    for (;; ++seed) {
        MasterFaults probe(longStops, seed);
        probe.start(0);
        if (probe.poll(10, true) == Action::Stop && probe.plannedSeconds() > 1.2) break;
    }
    MasterFaults g(longStops, seed);
    g.start(0);
    REQUIRE(g.poll(10, true) == Action::Stop);
    CHECK(g.poll(11.01, true) == Action::LeaseExpired);
    CHECK(g.state() == State::Stopped);
    CHECK(g.poll(10 + g.plannedSeconds() + 0.01, true) == Action::Resume);
}

TEST_CASE("soak master faults without etcd: no lease expiry is reported, and no settle time after a stop",
          "[soak]") {
    MasterFaults f(enabled(), seedWhoseFirstFaultIs(Action::Stop, any));
    f.start(0);
    REQUIRE(f.poll(10, true) == Action::Stop);
    for (double t = 10.01; t < 10 + f.plannedSeconds(); t += 0.01) CHECK(f.poll(t, true) == Action::None);
    const double resume = 10 + f.plannedSeconds() + 0.01;
    CHECK(f.poll(resume, true) == Action::Resume);
    CHECK_FALSE(f.holdJoins(resume + 0.01));
}
