// pccl-soak: the orchestrator (soak.cpp: peers, churn, the main loop; soak_master.cpp: the
// master process and its faults). stress/README.md describes what it does and checks.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "checker.hpp"
#include "master_faults.hpp"
#include "process.hpp"
#include "soak_options.hpp"

namespace soak {

using Clock = std::chrono::steady_clock;

// The signal (SIGINT, SIGTERM, SIGHUP) that asked the run to stop; 0 while none.
extern std::atomic<int> g_signal;

class Soak {
public:
    explicit Soak(const Options &o);
    int run();

private:
    double now() const { return std::chrono::duration<double>(Clock::now() - t0_).count(); }
    double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng_); }
    bool startMaster();
    bool spawnMaster(double t);
    bool quiet() const;
    void masterFaults(double t);
    void logMaster(double t, const std::string &what);
    void spawnPeer(double t);
    void onLine(size_t child, std::string_view line);
    void reapExited(double t);
    void churn(double t);
    void resolveStops(double t);
    void sampleRss(double t);
    void logAction(double t, const std::string &what, const PeerRecord &p);
    void progress(double t);
    int finish(double t);

    Options opt_;
    std::mt19937_64 rng_;
    Clock::time_point t0_ = Clock::now();
    std::string dir_;
    bool own_dir_ = false;
    FILE *events_ = nullptr;
    Checker checker_;
    std::vector<bench::Child> children_;  // [0]: the master; [i + 1]: peers_[i]
    std::vector<PeerRecord> peers_;
    RssTrack master_rss_;
    double master_started_at_ = 0;
    std::string master_addr_;
    uint16_t master_port_ = 0;  // 0 until chosen (with --master-faults) or reported
    MasterFaults master_faults_;
    uint64_t used_slots_ = 0;  // bit s: slot s belongs to a process not yet reaped
    uint64_t kills_ = 0, stops_ = 0, joins_ = 0;
};

}  // namespace soak
