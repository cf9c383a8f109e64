// pccl-fault-bench: what the peer scenarios (fault_bench.cpp) and the master scenarios
// (master_fault_bench.cpp) share: the worker, its line protocol, the options.
#pragma once

#include <pccl.h>

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace faultbench {

constexpr int kPeers = 3;

// CLOCK_MONOTONIC nanoseconds (the driver and the workers share the clock).
int64_t nowNs();

struct Options {
    int reps = 5, warmup = 3;
    size_t bytes = 16u << 20;
    double timeout_s = 60;
    unsigned seed = 0;
    bool verbose = false;
    std::string only;  // comma list of scenario names, empty = all
    std::string master_bin = PCCL_FAULT_BENCH_MASTER_BIN;
    int master_down_ms = 1000;  // master-sigkill: restart this long after the kill
};

// The scenario runs with these options (--only).
bool selected(const Options &opt, const std::string &name);

// What the driver read from one worker (the protocol is in fault_bench.cpp's header comment).
struct WorkerState {
    std::vector<std::pair<int64_t, int>> starts;  // (t_ns, step)
    struct Ret { long step; int rc; int64_t t; int world; };
    std::vector<Ret> rets;
    std::string fatal;
};

// Parses one worker line into its state; echoes it with verbose.
void onLine(WorkerState &w, size_t rank, std::string_view line, bool verbose);

double median(std::vector<double> v);

// The worker process: joins the master on 127.0.0.1:port, waits for kPeers, all-reduces.
int runWorker(uint16_t port, size_t bytes, double max_s);

// master-sigkill and master-sigstop: prints their table; false if a run broke.
bool runMasterScenarios(const Options &opt, std::mt19937 &rng);

}  // namespace faultbench
