// pccl-soak: command-line options (stress/README.md has the table).
#pragma once

#include <cstdint>
#include <string>

#include "master_faults.hpp"

namespace soak {

struct Options {
    uint64_t seed = 1;
    double duration = 120;
    int peers = 6;
    int heartbeat_ms = 2000;
    int margin_ms = 3000;
    int churn_min_ms = 1000, churn_max_ms = 3000;
    int max_stopped = 1;
    int survivors = 1;  // the first peers are never killed or stopped (long-lived: RSS, endurance)
    int pause_ms = 10;
    double rss_slack_mib = 64;
    double rss_warmup_s = 20;
    MasterFaultOptions master;  // --master-faults and its intervals
    bool etcd = false;          // standby masters elected through a single-node etcd (implies master faults)
    int masters = 2;            // with --etcd: pccl-master processes
    int lease_ttl_s = 2;        // with --etcd: the masters' --lease-ttl-s
    int min_master_kills = 0, min_master_stops = 0;  // fewer master faults than this: a violation
    std::string expect_violation;  // self-test: succeed only if a violation of this kind was found
    std::string log_level = "warn";
    std::string master_bin;
    std::string peer_bin;
    std::string log_dir;
    bool keep_logs = false;
    std::string inject;  // self-test: passed to p0 as pccl-soak-peer --inject
};

// Exits 2 with the usage on a bad command line.
Options parseOptions(int argc, char **argv);

// The options that decide what the run does, as a pccl-soak command line (the replay line).
std::string replayCommand(const Options &o);

}  // namespace soak
