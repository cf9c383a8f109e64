// pccl-soak: when to kill, stop, restart and resume the master (--master-faults).
//
// A pure schedule: the orchestrator polls it and does the signalling. Every random decision
// (interval, kill or stop, how long down) comes from its own generator seeded from --seed, so
// the sequence of master faults is the same in every run of a seed, whatever the peers do.
//
//   Up --(due, quiet)--> Down (SIGKILL) --(after 0.05..down_max s)--> Rebuilding (restarted)
//                                               --("run rebuilt" line, or rebuild_timeout)--> Up
//   Up --(due, quiet)--> Stopped (SIGSTOP) --(after 0.25..2 heartbeat timeouts)--> Up (SIGCONT)
//
// "Quiet": no peer is starting or waiting for admission. A joiner that never reached the old
// master would found a new run on the restarted one if it got there before the survivors
// (docs/master_recovery.md, the documented limit), so a kill waits for quiet and no peer is
// started while a fault is due, the master is down or the run is not rebuilt yet.
//
// With standby masters (--etcd, lease_ttl_s > 0) the victim is the leader and another master
// takes over: LeaseExpired reports the moment (fault + lease TTL) by which etcd has expired the
// victim's lease, so that a follower may lead; the rebuild may then be reported by any master,
// even before the victim is restarted (it comes back as a follower), and is due lease TTL +
// rebuild_timeout after the kill at the latest. After a resumed stop, joins stay held for
// settle_s: a leader that lost its lease while stopped steps down on SIGCONT, and a joiner must
// not reach the new leader before the survivors have rebuilt the run there.
#pragma once

#include <cstdint>
#include <random>
#include <string>

namespace soak {

struct MasterFaultOptions {
    bool enabled = false;
    int min_ms = 8000, max_ms = 16000;  // from the end of one fault to the next
    int down_max_ms = 2000;             // a killed master is restarted 50 ms .. this later
    int heartbeat_ms = 2000;            // a stop lasts 0.25 .. 2 heartbeat timeouts
    double rebuild_timeout_s = 5;       // restart -> "run rebuilt" at the latest
    double quiet_wait_s = 15;           // a due fault waits this long for quiet, then is skipped
    double lease_ttl_s = 0;             // --etcd: the masters' lease TTL (0: one master, no etcd)
    double settle_s = 0;                // --etcd: joins held this long after a resumed stop
};

class MasterFaults {
public:
    enum class State { Up, Stopped, Down, Rebuilding };
    enum class Action { None, Kill, Stop, Restart, Resume, RebuildMissing, Skip, LeaseExpired };

    MasterFaults(const MasterFaultOptions &o, uint64_t seed);
    // Schedules the first fault one interval after t.
    void start(double t);
    // What to do at time t (at most one action per call). quiet: see above.
    Action poll(double t, bool quiet);
    // A master reported that it rebuilt the run (the restarted one; with etcd, any of them,
    // possibly before the victim was restarted).
    void rebuilt(double t);

    State state() const { return state_; }
    // A fault is due (the next poll with quiet set starts it, unless a lease expiry comes first).
    bool dueAt(double t) const { return opt_.enabled && state_ == State::Up && t >= next_at_; }
    // No new peer may start now.
    bool holdJoins(double t) const;
    // Seconds the current stop or outage was drawn to last.
    double plannedSeconds() const { return planned_s_; }
    // Start of the current or last fault.
    double faultAt() const { return fault_at_; }
    uint64_t kills() const { return kills_; }
    uint64_t stops() const { return stops_; }
    uint64_t skipped() const { return skipped_; }

private:
    double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng_); }
    void scheduleNext(double t);

    MasterFaultOptions opt_;
    std::mt19937_64 rng_;
    State state_ = State::Up;
    double next_at_ = 1e300;  // next fault (Up) or end of the current one
    double fault_at_ = 0;     // start of the current or last fault
    double lease_at_ = 1e300; // --etcd: when to report LeaseExpired (1e300: not pending)
    double settle_until_ = 0; // --etcd: joins held until then after a resumed stop
    bool rebuilt_early_ = false;  // --etcd: rebuilt before the victim was restarted
    double planned_s_ = 0;
    bool next_is_kill_ = false;
    uint64_t kills_ = 0, stops_ = 0, skipped_ = 0;
};

const char *masterStateName(MasterFaults::State s);

}  // namespace soak
