// pccl-soak: the master fault schedule (see master_faults.hpp).
#include "master_faults.hpp"

#include <algorithm>

namespace soak {

MasterFaults::MasterFaults(const MasterFaultOptions &o, uint64_t seed)
    : opt_(o), rng_(seed ^ 0x6d61737465722121ull) {}  // "master!!": apart from the peer churn's generator

void MasterFaults::start(double t) {
    if (opt_.enabled) scheduleNext(t);
}

// Every fault draws the same three numbers, whether it happens, waits or is skipped, so the
// sequence of kinds and durations depends on the seed only.
void MasterFaults::scheduleNext(double t) {
    next_at_ = t + uniform(opt_.min_ms, opt_.max_ms) / 1000.0;
    next_is_kill_ = uniform(0, 1) < 0.5;
    const double down = uniform(0.05, opt_.down_max_ms / 1000.0);
    const double stop = uniform(0.25, 2.0) * opt_.heartbeat_ms / 1000.0;
    planned_s_ = next_is_kill_ ? down : stop;
}

MasterFaults::Action MasterFaults::poll(double t, bool quiet) {
    if (!opt_.enabled) return Action::None;
    if (t >= lease_at_) {
        lease_at_ = 1e300;
        return Action::LeaseExpired;
    }
    if (t < next_at_) return Action::None;
    switch (state_) {
        case State::Up:
            if (!quiet) {
                if (t - next_at_ <= opt_.quiet_wait_s) return Action::None;
                ++skipped_;
                scheduleNext(t);
                return Action::Skip;
            }
            next_at_ = t + planned_s_;
            fault_at_ = t;
            if (opt_.lease_ttl_s > 0) lease_at_ = t + opt_.lease_ttl_s;
            rebuilt_early_ = false;
            if (next_is_kill_) {
                ++kills_;
                state_ = State::Down;
                return Action::Kill;
            }
            ++stops_;
            state_ = State::Stopped;
            return Action::Stop;
        case State::Stopped:
            state_ = State::Up;
            lease_at_ = 1e300;  // resumed before its lease expired: it is back itself
            if (opt_.lease_ttl_s > 0) settle_until_ = t + opt_.settle_s;
            scheduleNext(t);
            return Action::Resume;
        case State::Down:
            if (rebuilt_early_) {
                state_ = State::Up;
                scheduleNext(t);
                return Action::Restart;
            }
            state_ = State::Rebuilding;
            next_at_ = std::max(t, fault_at_ + opt_.lease_ttl_s) + opt_.rebuild_timeout_s;
            return Action::Restart;
        case State::Rebuilding:
            state_ = State::Up;
            scheduleNext(t);
            return Action::RebuildMissing;
    }
    return Action::None;
}

void MasterFaults::rebuilt(double t) {
    if (state_ == State::Down && opt_.lease_ttl_s > 0) rebuilt_early_ = true;
    if (state_ != State::Rebuilding) return;
    state_ = State::Up;
    scheduleNext(t);
}

bool MasterFaults::holdJoins(double t) const {
    return opt_.enabled && (state_ != State::Up || t >= next_at_ || t < settle_until_);
}

const char *masterStateName(MasterFaults::State s) {
    switch (s) {
        case MasterFaults::State::Up: return "up";
        case MasterFaults::State::Stopped: return "stopped";
        case MasterFaults::State::Down: return "down";
        case MasterFaults::State::Rebuilding: return "rebuilding";
    }
    return "?";
}

}  // namespace soak
