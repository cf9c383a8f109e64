// pccl-soak: the churn soak orchestrator (stress/README.md).
//
// Starts pccl-master on 127.0.0.1:0 and --peers pccl-soak-peer processes, then, at random
// intervals drawn from --seed, SIGKILLs a peer, SIGSTOPs one (later SIGCONT or SIGKILL) or
// starts a new one, keeping between 2 and --peers peers. Every peer event goes to the
// Checker, which counts violations. At the end it prints one summary line
//   soak: seed=S duration=Ds peers_started=N kills=K stops=S joins=J allreduces=A syncs=Y violations=V
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

#include "checker.hpp"
#include "events.hpp"
#include "process.hpp"

namespace soak {
namespace {

using Clock = std::chrono::steady_clock;

std::atomic<int> g_signal{0};
extern "C" void onSignal(int sig) { g_signal.store(sig); }

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
    std::string log_level = "warn";
    std::string master_bin = PCCL_SOAK_MASTER_BIN;
    std::string peer_bin = PCCL_SOAK_PEER_BIN;
    std::string log_dir;
    bool keep_logs = false;
    std::string inject;  // self-test: passed to p0 as pccl-soak-peer --inject
};

[[noreturn]] void usage(const char *msg) {
    std::fprintf(stderr,
                 "pccl-soak: %s\n"
                 "usage: pccl-soak [--seed S] [--duration SECONDS] [--peers N (2..32)] [--heartbeat-ms MS]\n"
                 "                 [--margin-ms MS] [--churn-min-ms MS] [--churn-max-ms MS] [--max-stopped N]\n"
                 "                 [--survivors N] [--pause-ms MS] [--rss-slack-mib MIB] [--rss-warmup S]\n"
                 "                 [--log-level LEVEL] [--log-dir DIR] [--keep-logs] [--master-bin PATH]\n"
                 "                 [--peer-bin PATH] [--inject flip|hang|leak]\n",
                 msg);
    std::exit(2);
}

Options parseOptions(int argc, char **argv) {
    Options o;
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
    return o;
}

long readRssKib(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
    return -1;
}

class Soak {
public:
    explicit Soak(const Options &o);
    int run();

private:
    double now() const { return std::chrono::duration<double>(Clock::now() - t0_).count(); }
    double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng_); }
    bool startMaster();
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
    std::string master_addr_;
    uint64_t used_slots_ = 0;  // bit s: slot s belongs to a process not yet reaped
    uint64_t kills_ = 0, stops_ = 0, joins_ = 0;
};

Limits limitsFor(const Options &o) {
    Limits l;
    l.deadline_s = (o.heartbeat_ms + o.margin_ms) / 1000.0;
    l.admission_s = 2 * l.deadline_s;
    l.stall_s = 3 * l.deadline_s;
    l.rss_warmup_s = o.rss_warmup_s;
    l.rss_slack_mib = o.rss_slack_mib;
    return l;
}

Soak::Soak(const Options &o) : opt_(o), rng_(o.seed), checker_(limitsFor(o)) {}

void Soak::logAction(double t, const std::string &what, const PeerRecord &p) {
    std::fprintf(events_, "%.3f soak %s %s (pid %d, slot %d)\n", t, what.c_str(), p.name.c_str(), static_cast<int>(p.pid),
                 p.slot);
}

bool Soak::startMaster() {
    // sh only redirects the master's stderr to master.log, then execs it (same pid).
    const std::vector<std::string> argv = {"/bin/sh", "-c", "log=$1; shift; exec \"$@\" 2>>\"$log\"", "sh",
                                           dir_ + "/master.log", opt_.master_bin, "--listen", "127.0.0.1:0",
                                           "--log-level", opt_.log_level};
    std::string err;
    children_.push_back(bench::spawnChild(argv, "master", false, err));
    if (children_[0].pid <= 0) {
        std::fprintf(stderr, "pccl-soak: cannot start %s: %s\n", opt_.master_bin.c_str(), err.c_str());
        return false;
    }
    while (master_addr_.empty() && now() < 10 && !children_[0].exited && !g_signal.load())
        bench::pumpChildren(children_, 100, [&](size_t i, std::string_view l) { onLine(i, l); });
    if (master_addr_.empty()) {
        std::fprintf(stderr, "pccl-soak: %s did not report its address (see %s/master.log)\n", opt_.master_bin.c_str(),
                     dir_.c_str());
        return false;
    }
    return true;
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
        const std::string_view marker = "pccl-master listening on ";
        if (master_addr_.empty() && line.rfind(marker, 0) == 0) master_addr_ = std::string(line.substr(marker.size()));
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
    const double join_chance = total >= max ? 0 : up <= 2 ? 1 : double(max - total) / double(max - 2);
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
    if (!children_[0].exited) checker_.sampleRss(t, "master", master_rss_, readRssKib(children_[0].pid), t >= opt_.rss_warmup_s);
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
                "joins=%llu violations=%d\n",
                t, up, stopped, static_cast<unsigned long long>(checker_.steps()),
                static_cast<unsigned long long>(checker_.allreduces()), static_cast<unsigned long long>(checker_.syncs()),
                static_cast<unsigned long long>(kills_), static_cast<unsigned long long>(stops_),
                static_cast<unsigned long long>(joins_), checker_.violations());
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
    std::printf("soak: seed=%llu duration=%.0fs peers=%d heartbeat=%dms margin=%dms churn=%d..%dms logs=%s\n",
                static_cast<unsigned long long>(opt_.seed), opt_.duration, opt_.peers, opt_.heartbeat_ms, opt_.margin_ms,
                opt_.churn_min_ms, opt_.churn_max_ms, dir_.c_str());
    std::printf("soak: replay: pccl-soak --seed %llu --duration %.0f --peers %d --heartbeat-ms %d --margin-ms %d "
                "--churn-min-ms %d --churn-max-ms %d --max-stopped %d --survivors %d --pause-ms %d\n",
                static_cast<unsigned long long>(opt_.seed), opt_.duration, opt_.peers, opt_.heartbeat_ms, opt_.margin_ms,
                opt_.churn_min_ms, opt_.churn_max_ms, opt_.max_stopped, opt_.survivors, opt_.pause_ms);
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

    double next_churn = t + uniform(opt_.churn_min_ms, opt_.churn_max_ms) / 1000.0;
    double next_tick = t, next_rss = t, next_progress = t + 10;
    for (;;) {
        bench::pumpChildren(children_, 50, [&](size_t i, std::string_view l) { onLine(i, l); });
        t = now();
        if (children_[0].exited) {
            checker_.onMasterExit(t, children_[0].status);
            break;
        }
        reapExited(t);
        if (g_signal.load() || t >= opt_.duration) break;
        resolveStops(t);
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
        bench::stopChild(children_[0], SIGTERM, 5);
        if (!WIFEXITED(children_[0].status) || WEXITSTATUS(children_[0].status) != 0)
            checker_.onMasterExit(t, children_[0].status);
    }
    checker_.report(stdout, peers_, master_rss_);
    const int v = checker_.violations();
    std::printf("soak: seed=%llu duration=%.0fs peers_started=%zu kills=%llu stops=%llu joins=%llu allreduces=%llu "
                "syncs=%llu violations=%d\n",
                static_cast<unsigned long long>(opt_.seed), t, peers_.size(), static_cast<unsigned long long>(kills_),
                static_cast<unsigned long long>(stops_), static_cast<unsigned long long>(joins_),
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

}  // namespace
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
