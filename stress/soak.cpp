// pccl-soak: the churn soak orchestrator (stress/README.md).
//
// Starts pccl-master on 127.0.0.1 and --peers pccl-soak-peer processes, then, at random
// intervals drawn from --seed, SIGKILLs a peer, SIGSTOPs one (later SIGCONT or SIGKILL) or
// starts a new one, keeping between 2 and --peers peers. With --master-faults it also
// SIGKILLs the master and restarts it on the same port, or SIGSTOPs and SIGCONTs it
// (master_faults.hpp); the peers are never restarted for it. With --etcd it starts a single-node
// etcd and --masters standby masters, and the master faults hit the leader. Every peer event
// goes to the Checker, which counts violations. At the end it prints one summary line
//   soak: seed=S duration=Ds peers_started=N kills=K stops=S joins=J master_kills=MK master_stops=MS
//         allreduces=A syncs=Y violations=V
// (with --etcd: masters=M leader_kills=MK leader_stops=MS takeovers=T instead of master_*).
// and exits 1 if V > 0 or no all-reduce completed (0 otherwise; 2 on setup errors; 128+signal
// after SIGINT/SIGTERM/SIGHUP, which also kill the children). Logs (events.log with every
// event line and action, master.log, one log per peer) stay in the log directory when the
// run failed or with --keep-logs.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "events.hpp"
#include "master_process.hpp"
#include "soak.hpp"

namespace soak {

std::atomic<int> g_signal{0};

namespace {

extern "C" void onSignal(int sig) { g_signal.store(sig); }

long readRssKib(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
    return -1;
}

Limits limitsFor(const Options &o) {
    Limits l;
    l.deadline_s = (o.heartbeat_ms + o.margin_ms) / 1000.0;
    l.admission_s = 2 * l.deadline_s;
    l.stall_s = 3 * l.deadline_s;
    l.rss_warmup_s = o.rss_warmup_s;
    l.rss_slack_mib = o.rss_slack_mib;
    return l;
}

}  // namespace

Soak::Soak(const Options &o) : opt_(o), rng_(o.seed), checker_(limitsFor(o)), master_faults_(o.master, o.seed) {}

void Soak::logAction(double t, const std::string &what, const PeerRecord &p) {
    std::fprintf(events_, "%.3f soak %s %s (pid %d, slot %d)\n", t, what.c_str(), p.name.c_str(), static_cast<int>(p.pid),
                 p.slot);
}

void Soak::spawnPeer(double t) {
    int slot = 0;
    while (slot < 64 && (used_slots_ >> slot & 1)) ++slot;
    if (slot == 64) return;
    PeerRecord p;
    p.name = "p" + std::to_string(peers_.size());
    p.slot = slot;
    p.spawned_at = p.last_event_at = t;
    std::vector<std::string> argv = {opt_.peer_bin, masters_[0].addr, "--slot", std::to_string(slot), "--seed",
                                     std::to_string(opt_.seed), "--name", p.name, "--pause-ms",
                                     std::to_string(opt_.pause_ms), "--log", dir_ + "/" + p.name + ".log"};
    if (peers_.empty() && !opt_.inject.empty()) argv.insert(argv.end(), {"--inject", opt_.inject});
    std::string err;
    bench::Child c = bench::spawnChild(argv, p.name, false, err);
    if (c.pid <= 0) {
        checker_.violation(t, "spawn", p.name, err);
        return;
    }
    p.pid = c.pid;
    used_slots_ |= uint64_t{1} << slot;
    children_.push_back(std::move(c));
    peers_.push_back(p);
    logAction(t, "spawn", p);
}

void Soak::onLine(size_t child, std::string_view line) {
    const double t = now();
    const std::string &name = children_[child].name;
    std::fprintf(events_, "%.3f %s %.*s\n", t, name.c_str(), static_cast<int>(line.size()), line.data());
    if (child < masters_.size()) return onMasterLine(child, t, line);
    Event e;
    if (parseEvent(line, e)) checker_.onEvent(t, peers_[child - masters_.size()], e);
}

void Soak::reapExited(double t) {
    for (size_t i = 0; i < peers_.size(); ++i) {
        PeerRecord &p = peers_[i];
        const bench::Child &c = children_[i + masters_.size()];
        if (!c.exited || p.phase == PeerRecord::Phase::Gone) continue;
        used_slots_ &= ~(uint64_t{1} << p.slot);
        logAction(t, "reaped (" + bench::describeStatus(c.status) + ")", p);
        checker_.onExit(t, p, c.status);
    }
}

// One random action. "Up" peers (not stopped, not killed) stay at least 2; all processes
// together at most --peers; at most --max-stopped peers are stopped at once; the first
// --survivors peers are never harmed (unless they exit by themselves). A join is the
// more likely the fewer processes there are (certain at 2, impossible at --peers); otherwise
// a kill or a stop, equally likely.
void Soak::churn(double t) {
    std::vector<size_t> targets;  // up, and not a survivor
    size_t up = 0, total = 0, stopped = 0;
    for (size_t i = 0; i < peers_.size(); ++i) {
        const PeerRecord &p = peers_[i];
        if (p.phase == PeerRecord::Phase::Gone || p.killed) continue;
        ++total;
        if (p.stopped) {
            ++stopped;
            continue;
        }
        ++up;
        if (i >= static_cast<size_t>(opt_.survivors)) targets.push_back(i);
    }
    const auto max = static_cast<size_t>(opt_.peers);
    double join_chance = total >= max ? 0 : up <= 2 ? 1 : double(max - total) / double(max - 2);
    if (master_faults_.holdJoins(t)) join_chance = 0;  // master_faults.hpp
    std::vector<char> harm;  // kill, stop
    if (up > 2 && !targets.empty()) harm.push_back('k');
    if (up > 2 && !targets.empty() && stopped < static_cast<size_t>(opt_.max_stopped)) harm.push_back('s');
    char action = 'j';
    if (uniform(0, 1) >= join_chance) {
        if (harm.empty()) return;
        action = harm[std::uniform_int_distribution<size_t>(0, harm.size() - 1)(rng_)];
    }
    if (action == 'j') {
        ++joins_;
        spawnPeer(t);
        return;
    }
    PeerRecord &p = peers_[targets[std::uniform_int_distribution<size_t>(0, targets.size() - 1)(rng_)]];
    if (action == 'k') {
        ++kills_;
        p.killed = true;
        kill(p.pid, SIGKILL);
        logAction(t, "SIGKILL", p);
        return;
    }
    // A stop either outlasts the heartbeat timeout (the peer is removed; SIGCONT then makes
    // it find out and exit) or not (it goes on in the run).
    ++stops_;
    p.stopped = p.ever_stopped = true;
    p.resolve_at = t + uniform(0.25, 2.0) * opt_.heartbeat_ms / 1000.0;
    p.resolve_kill = uniform(0, 1) < 0.3;
    kill(p.pid, SIGSTOP);
    checker_.onStop(t);
    char what[96];
    std::snprintf(what, sizeof what, "SIGSTOP for %.2f s, then %s", p.resolve_at - t, p.resolve_kill ? "SIGKILL" : "SIGCONT");
    logAction(t, what, p);
}

void Soak::resolveStops(double t) {
    for (PeerRecord &p : peers_) {
        if (!p.stopped || p.phase == PeerRecord::Phase::Gone || t < p.resolve_at) continue;
        p.stopped = false;
        if (p.resolve_kill) {
            ++kills_;
            p.killed = true;
            kill(p.pid, SIGKILL);
            logAction(t, "SIGKILL (stopped)", p);
        } else {
            p.cont_at = t;
            kill(p.pid, SIGCONT);
            logAction(t, "SIGCONT", p);
        }
    }
}

void Soak::sampleRss(double t) {
    for (size_t i = 0; i < masters_.size(); ++i)
        if (!children_[i].exited)
            checker_.sampleRss(t, masters_[i].name, masters_[i].rss, readRssKib(children_[i].pid),
                               t - masters_[i].started_at >= opt_.rss_warmup_s);
    for (PeerRecord &p : peers_) {
        if (p.phase == PeerRecord::Phase::Gone || p.killed) continue;
        const bool warm = t - p.spawned_at >= opt_.rss_warmup_s && p.steps >= 10;
        checker_.sampleRss(t, p.name, p.rss, readRssKib(p.pid), warm);
    }
}

bool Soak::openLogs() {
    if (opt_.log_dir.empty()) {
        char tmpl[] = "/tmp/pccl-soak.XXXXXX";
        if (!mkdtemp(tmpl)) {
            std::perror("pccl-soak: mkdtemp");
            return false;
        }
        dir_ = tmpl;
        own_dir_ = true;
    } else {
        dir_ = opt_.log_dir;
        std::filesystem::create_directories(dir_);
    }
    events_ = std::fopen((dir_ + "/events.log").c_str(), "w");
    if (!events_) {
        std::perror("pccl-soak: events.log");
        return false;
    }
    checker_.setLog(events_);
    return true;
}

void Soak::banner() {
    char master_faults[128] = "off";
    if (opt_.master.enabled)
        std::snprintf(master_faults, sizeof master_faults, "%severy %d..%dms, down <= %dms",
                      opt_.etcd ? "leader " : "", opt_.master.min_ms, opt_.master.max_ms, opt_.master.down_max_ms);
    std::printf("soak: seed=%llu duration=%.0fs peers=%d heartbeat=%dms margin=%dms churn=%d..%dms master_faults=%s",
                static_cast<unsigned long long>(opt_.seed), opt_.duration, opt_.peers, opt_.heartbeat_ms, opt_.margin_ms,
                opt_.churn_min_ms, opt_.churn_max_ms, master_faults);
    if (opt_.etcd) std::printf(" masters=%d lease_ttl=%ds", opt_.masters, opt_.lease_ttl_s);
    std::printf(" logs=%s\n", dir_.c_str());
    std::printf("soak: replay: %s\n", replayCommand(opt_).c_str());
    std::fflush(stdout);
}

int Soak::run() {
    if (!openLogs()) return 2;
    banner();
    const std::string hb = std::to_string(opt_.heartbeat_ms);
    setenv("PCCL_HEARTBEAT_TIMEOUT_MS", hb.c_str(), 1);
    setenv("PCCL_LOG_LEVEL", opt_.log_level.c_str(), 1);
    if (const int rc = startEtcd(); rc != 0) {
        if (events_) std::fclose(events_);
        events_ = nullptr;
        if (own_dir_) std::filesystem::remove_all(dir_);
        return rc;
    }
    if (!startMasters()) {
        finish(now());
        return 2;
    }
    std::string all;  // every master, for the peers (the first one is also their address argument)
    for (const MasterRecord &m : masters_) all += (all.empty() ? "" : ",") + m.addr;
    if (opt_.etcd) setenv("PCCL_MASTER_ADDRESSES", all.c_str(), 1);
    double t = now();
    for (int i = 0; i < opt_.peers; ++i) spawnPeer(t);
    master_faults_.start(t);

    double next_churn = t + uniform(opt_.churn_min_ms, opt_.churn_max_ms) / 1000.0;
    double next_tick = t, next_rss = t, next_progress = t + 10;
    for (;;) {
        bench::pumpChildren(children_, 50, [&](size_t i, std::string_view l) { onLine(i, l); });
        t = now();
        if (masterExited(t)) break;
        reapExited(t);
        if (g_signal.load() || t >= opt_.duration) break;
        resolveStops(t);
        masterFaults(t);
        if (t >= next_churn) {
            churn(t);
            next_churn = t + uniform(opt_.churn_min_ms, opt_.churn_max_ms) / 1000.0;
        }
        if (t >= next_tick) {
            checker_.tick(t, peers_);
            next_tick = t + 0.1;
        }
        if (t >= next_rss) {
            sampleRss(t);
            next_rss = t + 1;
        }
        if (t >= next_progress) {
            progress(t);
            next_progress += 10;
        }
    }
    return finish(t);
}

}  // namespace soak

int main(int argc, char **argv) {
    const soak::Options opt = soak::parseOptions(argc, argv);
    struct sigaction sa {};
    sa.sa_handler = soak::onSignal;
    sigemptyset(&sa.sa_mask);
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);
    soak::Soak soak(opt);
    return soak.run();
}
