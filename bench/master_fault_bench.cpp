// pccl-fault-bench, master scenarios: how soon the peers' all-reduces go on after their master
// was SIGKILLed and restarted on the same port (master-sigkill), or SIGSTOPped for twice the
// heartbeat deadline and resumed (master-sigstop) (docs/master_recovery.md).
//
// One pccl-master process (bench/master_process.hpp) and kPeers workers (the same worker as
// the peer scenarios: an in-place float32 sum all-reduce in a loop) per scenario; after a
// warm-up, --reps faults in a row, each at a random moment inside a step of worker 0. For
// every fault and every worker: rec = ms from the restart (the fork of the new master) or the
// SIGCONT to the first successful all-reduce that returned after it. Before the next fault
// every worker completes --warmup more steps.
#include <signal.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <functional>

#include "fault_bench.hpp"
#include "master_process.hpp"
#include "process.hpp"
#include "support/ports.h"

namespace faultbench {
namespace {

constexpr int kHeartbeatMs = 2000;   // PCCL_HEARTBEAT_TIMEOUT_MS of the master and the workers
constexpr double kBackoffMaxMs = 500; // the peers' reconnect backoff settles at 500 ms

struct MasterScenario {
    std::string name;
    int signal;  // SIGKILL (then a restart) or SIGSTOP (then SIGCONT)
    double target_ms;
};

// One scenario's processes: workers at [0, kPeers), the master at [kPeers].
class MasterRun {
public:
    // The workers' slots stay empty (pid -1) until the master listens.
    MasterRun(const Options &opt, std::mt19937 &rng) : opt_(opt), rng_(rng), kids_(kPeers), ws_(kPeers) {}
    ~MasterRun() {
        for (size_t i = 0; i < kids_.size(); ++i) {
            if (i < kPeers) {
                bench::stopChild(kids_[i], SIGKILL, 0);
                continue;
            }
            if (!kids_[i].exited) kill(kids_[i].pid, SIGCONT);
            bench::stopChild(kids_[i], SIGTERM, 5);
        }
    }
    bool start(std::string &err);
    // One fault; appends one rec per worker. false (with err) if the run broke.
    bool fault(int signal, std::vector<double> &recs, int &aborted, std::string &err);
    // After a break: the last lines of the masters (all incarnations) and of each worker.
    void printTail(FILE *out) const;

private:
    bool spawnMaster(std::string &err);
    void pump(int ms, std::string &err);
    bool waitUntil(int64_t deadline_ns, const std::function<bool()> &done, std::string &err);
    long okSteps(size_t i, int64_t after_ns) const;

    const Options &opt_;
    std::mt19937 &rng_;
    std::vector<bench::Child> kids_;
    std::vector<WorkerState> ws_;
    uint16_t port_ = 0;
    bool listening_ = false;
    bool master_down_ = false;  // killed on purpose, not restarted yet
    int rebuilt_ = 0;  // "run rebuilt from kPeers peer(s)" lines of the current master
    std::vector<std::string> master_tail_;  // the masters' last status lines
};

bool MasterRun::spawnMaster(std::string &err) {
    bench::Child c = bench::spawnMaster(opt_.master_bin, port_, opt_.verbose ? "/dev/stderr" : "/dev/null",
                                        {"--log-level", "warn"}, "master", err);
    if (c.pid <= 0) return false;
    listening_ = false;
    master_down_ = false;
    rebuilt_ = 0;
    if (kids_.size() > kPeers) kids_[kPeers] = std::move(c);
    else kids_.push_back(std::move(c));
    return true;
}

void MasterRun::pump(int ms, std::string &err) {
    const std::string rebuilt = "pccl-master: run rebuilt from " + std::to_string(kPeers) + " peer(s)";
    bench::pumpChildren(kids_, ms, [&](size_t i, std::string_view l) {
        if (i < kPeers) return onLine(ws_[i], i, l, opt_.verbose);
        if (opt_.verbose) std::fprintf(stderr, "[master] %.*s\n", int(l.size()), l.data());
        master_tail_.emplace_back(l);
        if (master_tail_.size() > 20) master_tail_.erase(master_tail_.begin());
        listening_ = listening_ || !bench::listeningAddress(l).empty();
        if (l.substr(0, rebuilt.size()) == rebuilt) ++rebuilt_;
    });
    for (size_t i = 0; i < kids_.size() && err.empty(); ++i) {
        if (i < kPeers && !ws_[i].fatal.empty()) err = "rank " + std::to_string(i) + ": " + ws_[i].fatal;
        else if (kids_[i].exited && !(i == kPeers && master_down_)) err = kids_[i].name + ": " + bench::describeStatus(kids_[i].status);
    }
}

void MasterRun::printTail(FILE *out) const {
    for (const std::string &l : master_tail_) std::fprintf(out, "#     [master] %s\n", l.c_str());
    for (size_t i = 0; i < kPeers; ++i) {
        const auto &rets = ws_[i].rets;
        for (size_t k = rets.size() > 3 ? rets.size() - 3 : 0; k < rets.size(); ++k)
            std::fprintf(out, "#     [rank %zu] step %ld result %d world %d at %.3f s\n", i, rets[k].step, rets[k].rc,
                         rets[k].world, double(rets[k].t) / 1e9);
    }
}

bool MasterRun::waitUntil(int64_t deadline_ns, const std::function<bool()> &done, std::string &err) {
    while (err.empty() && !bench::interrupted()) {
        if (done()) return true;
        if (nowNs() > deadline_ns) return false;
        pump(10, err);
    }
    return false;
}

long MasterRun::okSteps(size_t i, int64_t after_ns) const {
    return std::count_if(ws_[i].rets.begin(), ws_[i].rets.end(),
                         [&](auto &r) { return r.rc == pcclSuccess && r.world == kPeers && r.t > after_ns; });
}

bool MasterRun::start(std::string &err) {
    setenv("PCCL_HEARTBEAT_TIMEOUT_MS", std::to_string(kHeartbeatMs).c_str(), 1);
    port_ = pccl_test::unusedLoopbackPort(err);
    if (port_ == 0 || !spawnMaster(err)) return false;
    if (!waitUntil(nowNs() + 10'000'000'000, [&] { return listening_; }, err)) {
        if (err.empty()) err = "the master did not report its address within 10 s";
        return false;
    }
    for (int r = 0; r < kPeers; ++r) {
        kids_[r] = bench::spawnChild({"/proc/self/exe", "--worker", "--port", std::to_string(port_), "--bytes",
                                      std::to_string(opt_.bytes), "--max-seconds", "600"},
                                     "rank " + std::to_string(r), !opt_.verbose, err);
        if (kids_[r].pid <= 0) return false;
    }
    const auto warm = [&] {
        for (size_t i = 0; i < kPeers; ++i)
            if (okSteps(i, 0) < opt_.warmup) return false;
        return true;
    };
    if (!waitUntil(nowNs() + int64_t(opt_.timeout_s * 1e9), warm, err) && err.empty())
        err = "warm-up: no " + std::to_string(opt_.warmup) + " steps within the timeout";
    return err.empty();
}

bool MasterRun::fault(int signal, std::vector<double> &recs, int &aborted, std::string &err) {
    // The fault lands a uniform 0..1 step durations after worker 0's next step start.
    std::vector<double> durs;
    for (auto &r : ws_[0].rets)
        for (auto &s : ws_[0].starts)
            if (s.second == r.step && r.rc == pcclSuccess) durs.push_back(double(r.t - s.first));
    const double step_ns = median(durs);
    const size_t seen = ws_[0].starts.size();
    if (!waitUntil(nowNs() + int64_t(opt_.timeout_s * 1e9), [&] { return ws_[0].starts.size() > seen; }, err)) {
        if (err.empty()) err = "no step start from rank 0";
        return false;
    }
    const int64_t at = ws_[0].starts[seen].first + int64_t(std::uniform_real_distribution<double>(0, step_ns)(rng_));
    const timespec ts{time_t(at / 1000000000), long(at % 1000000000)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {}
    const int64_t t_fault = nowNs();
    bench::Child &master = kids_[kPeers];
    kill(master.pid, signal);
    int64_t t_back = 0;
    if (signal == SIGKILL) {
        master_down_ = true;
        bench::stopChild(master, SIGKILL, 0);
        const int64_t restart_at = t_fault + int64_t(opt_.master_down_ms) * 1000000;
        waitUntil(restart_at, [] { return false; }, err);
        t_back = nowNs();
        if (!err.empty() || !spawnMaster(err)) return false;
    } else {
        waitUntil(t_fault + int64_t(2 * kHeartbeatMs) * 1000000, [] { return false; }, err);
        t_back = nowNs();
        kill(master.pid, SIGCONT);
        if (!err.empty()) return false;
    }
    const auto resumed = [&] {
        for (size_t i = 0; i < kPeers; ++i)
            if (okSteps(i, t_back) == 0) return false;
        return signal != SIGKILL || rebuilt_ > 0;
    };
    if (!waitUntil(t_back + int64_t(opt_.timeout_s * 1e9), resumed, err)) {
        if (err.empty())
            err = signal == SIGKILL && rebuilt_ == 0 ? "the restarted master did not rebuild the run from every peer"
                                                     : "a worker did not complete an all-reduce after the master came back";
        return false;
    }
    for (size_t i = 0; i < kPeers; ++i) {
        for (auto &r : ws_[i].rets) {
            if (r.t > t_fault && r.rc != pcclSuccess) ++aborted;
            if (r.t > t_back && r.rc == pcclSuccess && r.world == kPeers) {
                recs.push_back(double(r.t - t_back) / 1e6);
                break;
            }
        }
    }
    // Steady again before the next fault.
    const auto steady = [&] {
        for (size_t i = 0; i < kPeers; ++i)
            if (okSteps(i, t_back) < opt_.warmup + 1) return false;
        return true;
    };
    if (!waitUntil(nowNs() + int64_t(opt_.timeout_s * 1e9), steady, err) && err.empty())
        err = "no steady steps after the fault";
    return err.empty();
}

}  // namespace

bool runMasterScenarios(const Options &opt, std::mt19937 &rng) {
    const std::vector<MasterScenario> all = {
        {"master-sigkill", SIGKILL, 1000 + kBackoffMaxMs},
        {"master-sigstop", SIGSTOP, 1000},
    };
    bool header = false, ok = true;
    for (const MasterScenario &sc : all) {
        if (!selected(opt, sc.name)) continue;
        if (!header) {
            std::printf("# master faults: pccl-master SIGKILLed and restarted on its port %d ms later, or SIGSTOPped for "
                        "%d ms (2x the heartbeat deadline) and resumed; %d reps in one run\n",
                        opt.master_down_ms, 2 * kHeartbeatMs, opt.reps);
            std::printf("# rec = ms from the restart (SIGCONT) to each peer's next successful all-reduce; aborted = "
                        "all-reduces that failed (retryable) instead of completing\n");
            std::printf("%-15s %4s %7s %7s %8s %8s  %-10s %s\n", "# scenario", "reps", "samples", "aborted", "rec med",
                        "rec max", "target", "result");
            header = true;
        }
        std::vector<double> recs;
        int aborted = 0, done = 0;
        std::string err;
        {
            MasterRun run(opt, rng);
            if (run.start(err))
                for (; done < opt.reps && !bench::interrupted(); ++done) {
                    const size_t before = recs.size();
                    if (!run.fault(sc.signal, recs, aborted, err)) {
                        run.printTail(stderr);
                        break;
                    }
                    std::fprintf(stderr, "#   %s rep %d: rec", sc.name.c_str(), done + 1);
                    for (size_t i = before; i < recs.size(); ++i) std::fprintf(stderr, " %.1f", recs[i]);
                    std::fprintf(stderr, " ms\n");
                }
        }
        if (!err.empty()) std::fprintf(stderr, "# %s: rep %d broke: %s\n", sc.name.c_str(), done + 1, err.c_str());
        const double rmax = recs.empty() ? -1 : *std::max_element(recs.begin(), recs.end());
        const bool pass = done == opt.reps && recs.size() == size_t(opt.reps) * kPeers && rmax <= sc.target_ms;
        char target[32];
        std::snprintf(target, sizeof target, "rec<=%.0f", sc.target_ms);
        std::string result = pass ? "pass" : "FAIL";
        if (done != opt.reps) result += " (" + std::to_string(opt.reps - done) + " reps not run)";
        std::printf("%-15s %4d %7zu %7d %8.1f %8.1f  %-10s %s\n", sc.name.c_str(), opt.reps, recs.size(), aborted,
                    median(recs), rmax, target, result.c_str());
        std::fflush(stdout);
        ok = ok && done == opt.reps;
    }
    return ok;
}

}  // namespace faultbench
