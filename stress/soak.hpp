// pccl-soak: the orchestrator (soak.cpp: peers, churn, the main loop; soak_master.cpp: the
// master processes and their faults; soak_etcd.cpp: with --etcd, the etcd server and who leads).
// stress/README.md describes what it does and checks.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
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

// One pccl-master process: children_[i] for masters_[i].
struct MasterRecord {
    std::string name;   // "master"; with --etcd "m0", "m1", ...
    uint16_t port = 0;  // 0 until chosen (restartable) or reported
    std::string addr;   // HOST:PORT, once it listens
    double started_at = 0;
    RssTrack rss;
};

class Soak {
public:
    explicit Soak(const Options &o);
    int run();

private:
    double now() const { return std::chrono::duration<double>(Clock::now() - t0_).count(); }
    double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng_); }
    bool startMasters();
    bool waitListening(size_t i);
    bool spawnMaster(size_t i, double t);
    bool masterExited(double t);
    bool quiet() const;
    void masterFaults(double t);
    void masterFault(double t, MasterFaults::Action a);
    void logMaster(double t, const std::string &what);
    void onMasterLine(size_t i, double t, std::string_view line);
    // soak_etcd.cpp (--etcd): 0, or the exit code (77: no etcd binary, 2: etcd did not start).
    int startEtcd();
    void stopEtcd();
    std::vector<std::string> masterFlags() const;
    // The master that etcd names the leader (its key), -1 when none or etcd did not answer.
    int leader(int64_t *epoch);
    void spawnPeer(double t);
    void onLine(size_t child, std::string_view line);
    void reapExited(double t);
    void churn(double t);
    void resolveStops(double t);
    void sampleRss(double t);
    void logAction(double t, const std::string &what, const PeerRecord &p);
    std::string masterCounts() const;
    void progress(double t);
    bool openLogs();
    void banner();
    void stopAll(double t);
    int finish(double t);

    Options opt_;
    std::mt19937_64 rng_;
    Clock::time_point t0_ = Clock::now();
    std::string dir_;
    bool own_dir_ = false;
    FILE *events_ = nullptr;
    Checker checker_;
    std::vector<bench::Child> children_;  // [i]: masters_[i]; [masters_.size() + i]: peers_[i]
    std::vector<MasterRecord> masters_;
    std::vector<PeerRecord> peers_;
    size_t victim_ = 0;  // the master of the current or last fault (with --etcd: the leader then)
    MasterFaults master_faults_;
    struct EtcdSide;
    struct DropEtcd {  // soak_etcd.cpp, where EtcdSide is complete
        void operator()(EtcdSide *e) const;
    };
    std::unique_ptr<EtcdSide, DropEtcd> etcd_;
    uint64_t takeovers_ = 0;  // --etcd: "became the leader" lines after the first
    uint64_t used_slots_ = 0;  // bit s: slot s belongs to a process not yet reaped
    uint64_t kills_ = 0, stops_ = 0, joins_ = 0;
};

}  // namespace soak
