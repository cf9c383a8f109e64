// pccl-soak: command-line options (see soak_options.hpp).
#include "soak_options.hpp"

#include <cstdio>
#include <cstdlib>

namespace soak {
namespace {

[[noreturn]] void usage(const char *msg) {
    std::fprintf(stderr,
                 "pccl-soak: %s\n"
                 "usage: pccl-soak [--seed S] [--duration SECONDS] [--peers N (2..32)] [--heartbeat-ms MS]\n"
                 "                 [--margin-ms MS] [--churn-min-ms MS] [--churn-max-ms MS] [--max-stopped N]\n"
                 "                 [--survivors N] [--pause-ms MS] [--rss-slack-mib MIB] [--rss-warmup S]\n"
                 "                 [--master-faults] [--master-fault-min-ms MS] [--master-fault-max-ms MS]\n"
                 "                 [--master-down-max-ms MS] [--etcd [--masters N (2..5)] [--lease-ttl-s S]]\n"
                 "                 [--min-master-kills N] [--min-master-stops N] [--expect-violation KIND]\n"
                 "                 [--log-level LEVEL] [--log-dir DIR] [--keep-logs] [--master-bin PATH]\n"
                 "                 [--peer-bin PATH] [--inject flip|hang|leak]\n",
                 msg);
    std::exit(2);
}

}  // namespace

Options parseOptions(int argc, char **argv) {
    Options o;
    o.master_bin = PCCL_SOAK_MASTER_BIN;
    o.peer_bin = PCCL_SOAK_PEER_BIN;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) usage(("missing value for " + a).c_str());
            return argv[++i];
        };
        auto integer = [&]() { return std::atoi(value().c_str()); };
        if (a == "--seed") o.seed = std::strtoull(value().c_str(), nullptr, 10);
        else if (a == "--duration") o.duration = std::strtod(value().c_str(), nullptr);
        else if (a == "--peers") o.peers = integer();
        else if (a == "--heartbeat-ms") o.heartbeat_ms = integer();
        else if (a == "--margin-ms") o.margin_ms = integer();
        else if (a == "--churn-min-ms") o.churn_min_ms = integer();
        else if (a == "--churn-max-ms") o.churn_max_ms = integer();
        else if (a == "--max-stopped") o.max_stopped = integer();
        else if (a == "--survivors") o.survivors = integer();
        else if (a == "--pause-ms") o.pause_ms = integer();
        else if (a == "--rss-slack-mib") o.rss_slack_mib = std::strtod(value().c_str(), nullptr);
        else if (a == "--rss-warmup") o.rss_warmup_s = std::strtod(value().c_str(), nullptr);
        else if (a == "--master-faults") o.master.enabled = true;
        else if (a == "--master-fault-min-ms") o.master.min_ms = integer();
        else if (a == "--master-fault-max-ms") o.master.max_ms = integer();
        else if (a == "--master-down-max-ms") o.master.down_max_ms = integer();
        else if (a == "--etcd") o.etcd = true;
        else if (a == "--masters") o.masters = integer();
        else if (a == "--lease-ttl-s") o.lease_ttl_s = integer();
        else if (a == "--min-master-kills") o.min_master_kills = integer();
        else if (a == "--min-master-stops") o.min_master_stops = integer();
        else if (a == "--expect-violation") o.expect_violation = value();
        else if (a == "--log-level") o.log_level = value();
        else if (a == "--log-dir") o.log_dir = value();
        else if (a == "--keep-logs") o.keep_logs = true;
        else if (a == "--master-bin") o.master_bin = value();
        else if (a == "--peer-bin") o.peer_bin = value();
        else if (a == "--inject") o.inject = value();
        else if (a == "-h" || a == "--help") usage("help");
        else usage(("unknown argument " + a).c_str());
    }
    if (o.peers < 2 || o.peers > 32) usage("--peers must be in 2..32");
    if (o.survivors < 0 || o.survivors > o.peers) usage("--survivors must be in 0..--peers");
    if (o.duration <= 0) usage("--duration must be positive");
    if (o.heartbeat_ms < 100) usage("--heartbeat-ms must be at least 100");
    if (o.churn_min_ms < 1 || o.churn_max_ms < o.churn_min_ms) usage("need 1 <= --churn-min-ms <= --churn-max-ms");
    if (o.master.min_ms < 1 || o.master.max_ms < o.master.min_ms)
        usage("need 1 <= --master-fault-min-ms <= --master-fault-max-ms");
    if (o.master.down_max_ms < 50) usage("--master-down-max-ms must be at least 50");
#ifndef PCCL_HAVE_ETCD
    if (o.etcd) usage("--etcd: this build has no etcd client (built with -DPCCL_HTTP=OFF or -DPCCL_ETCD=OFF)");
#endif
    if (o.masters < 2 || o.masters > 5) usage("--masters must be in 2..5");
    if (o.lease_ttl_s < 2) usage("--lease-ttl-s must be at least 2 (etcd's minimum)");
    const double deadline_s = (o.heartbeat_ms + o.margin_ms) / 1000.0;
    if (o.etcd) {
        o.master.enabled = true;
        o.master.lease_ttl_s = o.lease_ttl_s;
        o.master.settle_s = o.lease_ttl_s + o.heartbeat_ms / 1000.0;
    }
    o.master.heartbeat_ms = o.heartbeat_ms;
    o.master.rebuild_timeout_s = deadline_s;
    o.master.quiet_wait_s = 3 * deadline_s;
    return o;
}

std::string replayCommand(const Options &o) {
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "pccl-soak --seed %llu --duration %.0f --peers %d --heartbeat-ms %d --margin-ms %d --churn-min-ms %d "
                  "--churn-max-ms %d --max-stopped %d --survivors %d --pause-ms %d",
                  static_cast<unsigned long long>(o.seed), o.duration, o.peers, o.heartbeat_ms, o.margin_ms,
                  o.churn_min_ms, o.churn_max_ms, o.max_stopped, o.survivors, o.pause_ms);
    std::string s = buf;
    if (o.master.enabled) {
        std::snprintf(buf, sizeof buf, " --master-faults --master-fault-min-ms %d --master-fault-max-ms %d --master-down-max-ms %d",
                      o.master.min_ms, o.master.max_ms, o.master.down_max_ms);
        s += buf;
    }
    if (o.etcd) s += " --etcd --masters " + std::to_string(o.masters) + " --lease-ttl-s " + std::to_string(o.lease_ttl_s);
    return s;
}

}  // namespace soak
