// pccl-soak: the master processes and their faults (--master-faults; master_faults.hpp). With
// --etcd there are several masters, and every fault hits the one etcd names the leader.
#include <signal.h>

#include <cstdio>

#include "master_process.hpp"
#include "soak.hpp"
#include "support/ports.h"

namespace soak {

void Soak::logMaster(double t, const std::string &what) {
    const MasterRecord &m = masters_[victim_];
    std::fprintf(events_, "%.3f soak %s %s (pid %d, port %u)\n", t, m.name.c_str(), what.c_str(),
                 static_cast<int>(children_[victim_].pid), m.port);
}

// Master i, as children_[i]: on its chosen port (a restart), or on port 0 without master
// faults. Its stderr goes to NAME.log, appended across restarts.
bool Soak::spawnMaster(size_t i, double t) {
    MasterRecord &m = masters_[i];
    std::vector<std::string> extra = {"--log-level", opt_.log_level};
    for (const std::string &f : masterFlags()) extra.push_back(f);
    std::string err;
    bench::Child c = bench::spawnMaster(opt_.master_bin, m.port, dir_ + "/" + m.name + ".log", extra, m.name, err);
    if (c.pid <= 0) {
        checker_.violation(t, "spawn", m.name, err);
        return false;
    }
    if (children_.size() <= i) children_.push_back(std::move(c));
    else children_[i] = std::move(c);
    m.rss = RssTrack{};
    m.started_at = t;
    return true;
}

bool Soak::waitListening(size_t i) {
    const double until = now() + 10;
    while (masters_[i].addr.empty() && now() < until && !children_[i].exited && !g_signal.load())
        bench::pumpChildren(children_, 100, [&](size_t c, std::string_view l) { onLine(c, l); });
    if (!masters_[i].addr.empty()) return true;
    std::fprintf(stderr, "pccl-soak: %s did not report its address (see %s/%s.log)\n", opt_.master_bin.c_str(),
                 dir_.c_str(), masters_[i].name.c_str());
    return false;
}

// One master (port 0 without master faults, else a restartable port), or with --etcd
// --masters of them, the first started alone until etcd names it the leader.
bool Soak::startMasters() {
    const size_t n = opt_.etcd ? static_cast<size_t>(opt_.masters) : 1;
    for (size_t i = 0; i < n; ++i) {
        MasterRecord m;
        m.name = opt_.etcd ? "m" + std::to_string(i) : "master";
        if (opt_.master.enabled) {
            std::string err;
            for (int tries = 0; tries < 20 && (m.port == 0 || (i > 0 && m.port == masters_[0].port)); ++tries)
                m.port = pccl_test::unusedLoopbackPort(err);
            if (m.port == 0) {
                std::fprintf(stderr, "pccl-soak: %s\n", err.c_str());
                return false;
            }
        }
        masters_.push_back(m);
    }
    for (size_t i = 0; i < n; ++i) {
        if (!spawnMaster(i, now())) {
            std::fprintf(stderr, "pccl-soak: cannot start %s\n", opt_.master_bin.c_str());
            return false;
        }
        if (!waitListening(i)) return false;
        victim_ = i;
        logMaster(now(), "started on " + masters_[i].addr);
        if (!opt_.etcd || i > 0) continue;
        const double until = now() + 15;
        int64_t epoch = 0;
        while (leader(&epoch) != 0 && now() < until && !children_[0].exited && !g_signal.load())
            bench::pumpChildren(children_, 100, [&](size_t c, std::string_view l) { onLine(c, l); });
        if (leader(&epoch) != 0) {
            std::fprintf(stderr, "pccl-soak: %s did not become the leader within 15 s (see %s/m0.log)\n",
                         opt_.master_bin.c_str(), dir_.c_str());
            return false;
        }
        logMaster(now(), "leads (etcd: epoch " + std::to_string(epoch) + ")");
    }
    victim_ = 0;
    return true;
}

void Soak::onMasterLine(size_t i, double t, std::string_view line) {
    MasterRecord &m = masters_[i];
    const std::string addr = bench::listeningAddress(line);
    if (m.addr.empty() && !addr.empty()) {
        m.addr = addr;
        m.port = static_cast<uint16_t>(std::atoi(addr.substr(addr.rfind(':') + 1).c_str()));
    }
    if (line.find("pccl-master: run rebuilt from ") == 0) master_faults_.rebuilt(t);
    if (line.find("pccl-master: became the leader") == 0 && !peers_.empty()) ++takeovers_;  // not the first leader
}

// A master that exited by itself (not the victim of a kill, waiting for its restart).
bool Soak::masterExited(double t) {
    for (size_t i = 0; i < masters_.size(); ++i) {
        if (!children_[i].exited || (i == victim_ && master_faults_.state() == MasterFaults::State::Down)) continue;
        checker_.onMasterExit(t, children_[i].status, masters_[i].name);
        return true;
    }
    return false;
}

// No peer is starting or waiting for admission (master_faults.hpp: why a kill waits for it).
bool Soak::quiet() const {
    for (const PeerRecord &p : peers_)
        if (p.phase != PeerRecord::Phase::Gone && !p.killed && p.phase != PeerRecord::Phase::Running) return false;
    return true;
}

// A fault hits the master that leads now: with --etcd the one etcd's leader key names, read
// when the fault is due (no leader known: the fault waits, as for quiet).
void Soak::masterFaults(double t) {
    bool quiet_now = quiet();
    if (opt_.etcd && master_faults_.state() == MasterFaults::State::Up && master_faults_.dueAt(t) && quiet_now) {
        int64_t epoch = 0;
        const int l = leader(&epoch);
        quiet_now = l >= 0 && !children_[static_cast<size_t>(l)].exited;
        if (quiet_now) victim_ = static_cast<size_t>(l);
    }
    const MasterFaults::Action a = master_faults_.poll(t, quiet_now);
    if (a != MasterFaults::Action::None) masterFault(t, a);
}

void Soak::masterFault(double t, MasterFaults::Action a) {
    const char *who = opt_.etcd ? "the leader: " : "";
    char what[160];
    bench::Child &c = children_[victim_];
    switch (a) {
        case MasterFaults::Action::None: return;
        case MasterFaults::Action::Skip:
            logMaster(t, "fault skipped: peers were joining (or no leader was known) for too long");
            return;
        case MasterFaults::Action::Kill:
            std::snprintf(what, sizeof what, "%sSIGKILL, restart in %.2f s", who, master_faults_.plannedSeconds());
            logMaster(t, what);
            checker_.onMasterDown();
            kill(c.pid, SIGKILL);
            bench::stopChild(c, SIGKILL, 0);  // reaped now: not a master_exit
            return;
        case MasterFaults::Action::Stop:
            std::snprintf(what, sizeof what, "%sSIGSTOP for %.2f s, then SIGCONT", who, master_faults_.plannedSeconds());
            logMaster(t, what);
            checker_.onMasterDown();
            kill(c.pid, SIGSTOP);
            return;
        case MasterFaults::Action::Resume:
            kill(c.pid, SIGCONT);
            checker_.onMasterUp(t);
            logMaster(t, "SIGCONT");
            return;
        case MasterFaults::Action::LeaseExpired:
            // etcd has expired the victim's lease by now: another master may lead, and the
            // deadlines run again from here (lease TTL + heartbeat + margin after the fault).
            checker_.onMasterUp(t);
            logMaster(t, "lease TTL passed since the fault: a follower may lead");
            return;
        case MasterFaults::Action::Restart:
            if (spawnMaster(victim_, t)) logMaster(t, opt_.etcd ? "restarted (a follower)" : "restarted");
            if (!opt_.etcd) checker_.onMasterUp(t);
            return;
        case MasterFaults::Action::RebuildMissing:
            if (opt_.etcd)
                std::snprintf(what, sizeof what,
                              "no master reported \"run rebuilt\" %.1f s after the leader kill (bound: the restart or "
                              "the lease TTL, whichever came later, + %.1f s)",
                              t - master_faults_.faultAt(), opt_.master.rebuild_timeout_s);
            else
                std::snprintf(what, sizeof what, "the restarted master did not report \"run rebuilt\" within %.1f s",
                              opt_.master.rebuild_timeout_s);
            checker_.violation(t, "master_rebuild", masters_[victim_].name, what);
            return;
    }
}

}  // namespace soak
