// pccl-soak: the progress lines, the end of a run (every process stopped, the masters checked
// for a clean exit), the report and the verdict.
#include <signal.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "soak.hpp"

namespace soak {

// "master_kills=K master_stops=S", or with --etcd "masters=M leader_kills=K leader_stops=S takeovers=T".
std::string Soak::masterCounts() const {
    char buf[160];
    if (opt_.etcd)
        std::snprintf(buf, sizeof buf, "masters=%zu leader_kills=%llu leader_stops=%llu takeovers=%llu", masters_.size(),
                      static_cast<unsigned long long>(master_faults_.kills()),
                      static_cast<unsigned long long>(master_faults_.stops()), static_cast<unsigned long long>(takeovers_));
    else
        std::snprintf(buf, sizeof buf, "master_kills=%llu master_stops=%llu",
                      static_cast<unsigned long long>(master_faults_.kills()),
                      static_cast<unsigned long long>(master_faults_.stops()));
    return buf;
}

void Soak::progress(double t) {
    int up = 0, stopped = 0;
    for (const PeerRecord &p : peers_) {
        if (p.phase == PeerRecord::Phase::Gone || p.killed) continue;
        (p.stopped ? stopped : up) += 1;
    }
    std::printf("soak: +%.0fs peers up=%d stopped=%d steps=%llu allreduces=%llu syncs=%llu kills=%llu stops=%llu "
                "joins=%llu master=%s %s violations=%d\n",
                t, up, stopped, static_cast<unsigned long long>(checker_.steps()),
                static_cast<unsigned long long>(checker_.allreduces()), static_cast<unsigned long long>(checker_.syncs()),
                static_cast<unsigned long long>(kills_), static_cast<unsigned long long>(stops_),
                static_cast<unsigned long long>(joins_), masterStateName(master_faults_.state()), masterCounts().c_str(),
                checker_.violations());
    std::fflush(stdout);
    std::fflush(events_);
}

// Kills the peers, stops the masters (each must exit cleanly), then etcd; the run needs the master
// faults it was asked for (--min-master-kills, --min-master-stops).
void Soak::stopAll(double t) {
    for (size_t i = masters_.size(); i < children_.size(); ++i) bench::stopChild(children_[i], SIGKILL, 0);
    for (size_t i = 0; i < masters_.size() && i < children_.size(); ++i) {
        if (children_[i].exited) continue;
        if (i == victim_ && master_faults_.state() == MasterFaults::State::Stopped) kill(children_[i].pid, SIGCONT);
        bench::stopChild(children_[i], SIGTERM, 5);
        if (!WIFEXITED(children_[i].status) || WEXITSTATUS(children_[i].status) != 0)
            checker_.onMasterExit(t, children_[i].status, masters_[i].name);
    }
    stopEtcd();
    if (master_faults_.kills() < static_cast<uint64_t>(opt_.min_master_kills) ||
        master_faults_.stops() < static_cast<uint64_t>(opt_.min_master_stops))
        checker_.violation(t, "too_few_master_faults", "soak",
                           std::to_string(master_faults_.kills()) + " kill(s), " + std::to_string(master_faults_.stops()) +
                               " stop(s); asked for at least " + std::to_string(opt_.min_master_kills) + " and " +
                               std::to_string(opt_.min_master_stops));
}

// Prints the report and the summary. --expect-violation (a self-test of the checks) turns the
// verdict around: success only if a violation of that kind was found.
int Soak::finish(double t) {
    stopAll(t);
    std::vector<std::pair<std::string, RssTrack>> rss;
    for (const MasterRecord &m : masters_) rss.emplace_back(m.name, m.rss);
    checker_.report(stdout, peers_, rss);
    const int v = checker_.violations();
    std::printf("soak: seed=%llu duration=%.0fs peers_started=%zu kills=%llu stops=%llu joins=%llu %s allreduces=%llu "
                "syncs=%llu violations=%d\n",
                static_cast<unsigned long long>(opt_.seed), t, peers_.size(), static_cast<unsigned long long>(kills_),
                static_cast<unsigned long long>(stops_), static_cast<unsigned long long>(joins_), masterCounts().c_str(),
                static_cast<unsigned long long>(checker_.allreduces()), static_cast<unsigned long long>(checker_.syncs()), v);
    bool failed = v > 0 || checker_.allreduces() == 0 || g_signal.load() != 0;
    if (!opt_.expect_violation.empty()) {
        const int n = checker_.violations(opt_.expect_violation);
        std::printf("soak: expected a violation of kind %s: %d found (self-test %s)\n", opt_.expect_violation.c_str(), n,
                    n > 0 ? "passed" : "FAILED");
        failed = n == 0 || g_signal.load() != 0;
    }
    if (events_) std::fclose(events_);
    if (own_dir_ && !failed && !opt_.keep_logs) {
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    } else {
        std::printf("soak: logs kept in %s\n", dir_.c_str());
    }
    std::fflush(stdout);
    if (g_signal.load()) return 128 + g_signal.load();
    return failed ? 1 : 0;
}

}  // namespace soak
