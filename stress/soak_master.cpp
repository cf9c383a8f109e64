// pccl-soak: the master process and its faults (--master-faults; master_faults.hpp).
#include <signal.h>

#include <cstdio>

#include "master_process.hpp"
#include "soak.hpp"

namespace soak {

void Soak::logMaster(double t, const std::string &what) {
    std::fprintf(events_, "%.3f soak master %s (pid %d, port %u)\n", t, what.c_str(), static_cast<int>(children_[0].pid),
                 master_port_);
}

// The master, as children_[0]: on the chosen port (a restart), or on port 0 without master
// faults. Its stderr goes to master.log, appended across restarts.
bool Soak::spawnMaster(double t) {
    std::string err;
    bench::Child c = bench::spawnMaster(opt_.master_bin, master_port_, dir_ + "/master.log", {"--log-level", opt_.log_level},
                                        "master", err);
    if (c.pid <= 0) {
        checker_.violation(t, "spawn", "master", err);
        return false;
    }
    if (children_.empty()) children_.push_back(std::move(c));
    else children_[0] = std::move(c);
    master_rss_ = RssTrack{};
    master_started_at_ = t;
    return true;
}

bool Soak::startMaster() {
    if (opt_.master.enabled) {
        std::string err;
        master_port_ = bench::pickRestartablePort(err);
        if (master_port_ == 0) {
            std::fprintf(stderr, "pccl-soak: %s\n", err.c_str());
            return false;
        }
    }
    if (!spawnMaster(now())) {
        std::fprintf(stderr, "pccl-soak: cannot start %s\n", opt_.master_bin.c_str());
        return false;
    }
    while (master_addr_.empty() && now() < 10 && !children_[0].exited && !g_signal.load())
        bench::pumpChildren(children_, 100, [&](size_t i, std::string_view l) { onLine(i, l); });
    if (master_addr_.empty()) {
        std::fprintf(stderr, "pccl-soak: %s did not report its address (see %s/master.log)\n", opt_.master_bin.c_str(),
                     dir_.c_str());
        return false;
    }
    logMaster(now(), "started on " + master_addr_);
    return true;
}

// No peer is starting or waiting for admission (master_faults.hpp: why a kill waits for it).
bool Soak::quiet() const {
    for (const PeerRecord &p : peers_)
        if (p.phase != PeerRecord::Phase::Gone && !p.killed && p.phase != PeerRecord::Phase::Running) return false;
    return true;
}

void Soak::masterFaults(double t) {
    char what[128];
    switch (master_faults_.poll(t, quiet())) {
        case MasterFaults::Action::None: return;
        case MasterFaults::Action::Skip:
            logMaster(t, "fault skipped: peers were joining for too long");
            return;
        case MasterFaults::Action::Kill:
            std::snprintf(what, sizeof what, "SIGKILL, restart in %.2f s", master_faults_.plannedSeconds());
            logMaster(t, what);
            checker_.onMasterDown();
            kill(children_[0].pid, SIGKILL);
            bench::stopChild(children_[0], SIGKILL, 0);  // reaped now: not a master_exit
            return;
        case MasterFaults::Action::Stop:
            std::snprintf(what, sizeof what, "SIGSTOP for %.2f s, then SIGCONT", master_faults_.plannedSeconds());
            logMaster(t, what);
            checker_.onMasterDown();
            kill(children_[0].pid, SIGSTOP);
            return;
        case MasterFaults::Action::Resume:
            kill(children_[0].pid, SIGCONT);
            checker_.onMasterUp(t);
            logMaster(t, "SIGCONT");
            return;
        case MasterFaults::Action::Restart:
            if (spawnMaster(t)) logMaster(t, "restarted");
            checker_.onMasterUp(t);
            return;
        case MasterFaults::Action::RebuildMissing:
            std::snprintf(what, sizeof what, "the restarted master did not report \"run rebuilt\" within %.1f s",
                          opt_.master.rebuild_timeout_s);
            checker_.violation(t, "master_rebuild", "master", what);
            return;
    }
}

}  // namespace soak
