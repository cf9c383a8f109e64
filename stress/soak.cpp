// pccl-soak: the churn soak orchestrator (stress/README.md).
//
// Starts pccl-master on 127.0.0.1 and --peers pccl-soak-peer processes, then, at random
// intervals drawn from --seed, SIGKILLs a peer, SIGSTOPs one (later SIGCONT or SIGKILL) or
// starts a new one, keeping between 2 and --peers peers. With --master-faults it also
// SIGKILLs the master and restarts it on the same port, or SIGSTOPs and SIGCONTs it
// (master_faults.hpp); the peers are never restarted for it. Every peer event goes to the
// Checker, which counts violations. At the end it prints one summary line
//   soak: seed=S duration=Ds peers_started=N kills=K stops=S joins=J master_kills=MK master_stops=MS
//         allreduces=A syncs=Y violations=V
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
    std::vector<std::string> argv = {opt_.peer_bin, master_addr_, "--slot", std::to_string(slot), "--seed",
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
    if (child == 0) {
        const std::string addr = bench::listeningAddress(line);
        if (master_addr_.empty() && !addr.empty()) {
            master_addr_ = addr;
            master_port_ = static_cast<uint16_t>(std::atoi(addr.substr(addr.rfind(':') + 1).c_str()));
        }
        if (line.find("pccl-master: run rebuilt from ") == 0) master_faults_.rebuilt(t);
        return;
    }
    Event e;
    if (parseEvent(line, e)) checker_.onEvent(t, peers_[child - 1], e);
}

void Soak::reapExited(double t) {
    for (size_t i = 0; i < peers_.size(); ++i) {
        PeerRecord &p = peers_[i];
        const bench::Child &c = children_[i + 1];
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
    if (!children_[0].exited)
        checker_.sampleRss(t, "master", master_rss_, readRssKib(children_[0].pid), t - master_started_at_ >= opt_.rss_warmup_s);
    for (PeerRecord &p : peers_) {
        if (p.phase == PeerRecord::Phase::Gone || p.killed) continue;
        const bool warm = t - p.spawned_at >= opt_.rss_warmup_s && p.steps >= 10;
        checker_.sampleRss(t, p.name, p.rss, readRssKib(p.pid), warm);
    }
}

void Soak::progress(double t) {
    int up = 0, stopped = 0;
    for (const PeerRecord &p : peers_) {
        if (p.phase == PeerRecord::Phase::Gone || p.killed) continue;
        (p.stopped ? stopped : up) += 1;
    }
    std::printf("soak: +%.0fs peers up=%d stopped=%d steps=%llu allreduces=%llu syncs=%llu kills=%llu stops=%llu "
                "joins=%llu master=%s master_kills=%llu master_stops=%llu violations=%d\n",
                t, up, stopped, static_cast<unsigned long long>(checker_.steps()),
                static_cast<unsigned long long>(checker_.allreduces()), static_cast<unsigned long long>(checker_.syncs()),
                static_cast<unsigned long long>(kills_), static_cast<unsigned long long>(stops_),
                static_cast<unsigned long long>(joins_), masterStateName(master_faults_.state()),
                static_cast<unsigned long long>(master_faults_.kills()), static_cast<unsigned long long>(master_faults_.stops()),
                checker_.violations());
    std::fflush(stdout);
    std::fflush(events_);
}

int Soak::run() {
    if (opt_.log_dir.empty()) {
        char tmpl[] = "/tmp/pccl-soak.XXXXXX";
        if (!mkdtemp(tmpl)) {
            std::perror("pccl-soak: mkdtemp");
            return 2;
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
        return 2;
    }
    checker_.setLog(events_);
    char master_faults[96] = "off";
    if (opt_.master.enabled)
        std::snprintf(master_faults, sizeof master_faults, "every %d..%dms, down <= %dms", opt_.master.min_ms,
                      opt_.master.max_ms, opt_.master.down_max_ms);
    std::printf("soak: seed=%llu duration=%.0fs peers=%d heartbeat=%dms margin=%dms churn=%d..%dms master_faults=%s "
                "logs=%s\n",
                static_cast<unsigned long long>(opt_.seed), opt_.duration, opt_.peers, opt_.heartbeat_ms, opt_.margin_ms,
                opt_.churn_min_ms, opt_.churn_max_ms, master_faults, dir_.c_str());
    std::printf("soak: replay: %s\n", replayCommand(opt_).c_str());
    std::fflush(stdout);

    const std::string hb = std::to_string(opt_.heartbeat_ms);
    setenv("PCCL_HEARTBEAT_TIMEOUT_MS", hb.c_str(), 1);
    setenv("PCCL_LOG_LEVEL", opt_.log_level.c_str(), 1);
    if (!startMaster()) {
        finish(now());
        return 2;
    }
    double t = now();
    for (int i = 0; i < opt_.peers; ++i) spawnPeer(t);
    master_faults_.start(t);

    double next_churn = t + uniform(opt_.churn_min_ms, opt_.churn_max_ms) / 1000.0;
    double next_tick = t, next_rss = t, next_progress = t + 10;
    for (;;) {
        bench::pumpChildren(children_, 50, [&](size_t i, std::string_view l) { onLine(i, l); });
        t = now();
        if (children_[0].exited && master_faults_.state() != MasterFaults::State::Down) {
            checker_.onMasterExit(t, children_[0].status);
            break;
        }
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

// Kills the peers, stops the master (it must exit cleanly), prints the report and the summary.
int Soak::finish(double t) {
    for (size_t i = 1; i < children_.size(); ++i) bench::stopChild(children_[i], SIGKILL, 0);
    if (!children_.empty() && !children_[0].exited) {
        if (master_faults_.state() == MasterFaults::State::Stopped) kill(children_[0].pid, SIGCONT);
        bench::stopChild(children_[0], SIGTERM, 5);
        if (!WIFEXITED(children_[0].status) || WEXITSTATUS(children_[0].status) != 0)
            checker_.onMasterExit(t, children_[0].status);
    }
    checker_.report(stdout, peers_, master_rss_);
    const int v = checker_.violations();
    std::printf("soak: seed=%llu duration=%.0fs peers_started=%zu kills=%llu stops=%llu joins=%llu master_kills=%llu "
                "master_stops=%llu allreduces=%llu syncs=%llu violations=%d\n",
                static_cast<unsigned long long>(opt_.seed), t, peers_.size(), static_cast<unsigned long long>(kills_),
                static_cast<unsigned long long>(stops_), static_cast<unsigned long long>(joins_),
                static_cast<unsigned long long>(master_faults_.kills()), static_cast<unsigned long long>(master_faults_.stops()),
                static_cast<unsigned long long>(checker_.allreduces()), static_cast<unsigned long long>(checker_.syncs()), v);
    const bool failed = v > 0 || checker_.allreduces() == 0 || g_signal.load() != 0;
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
