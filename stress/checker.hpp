// pccl-soak: the checks. The orchestrator feeds every peer event and every exit, tells the
// checker when it stopped a peer, and calls tick() periodically; the checker counts the
// violations (README.md lists them) and prints each one as it is found.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "events.hpp"

namespace soak {

struct Limits {
    double deadline_s = 5;    // heartbeat timeout + margin: the longest a call may legitimately wait
    double admission_s = 10;  // the longest pcclConnect may wait to be admitted
    double stall_s = 15;      // the longest no peer may complete a step
    double rss_warmup_s = 20; // a process's RSS baseline is taken after this long (peers: and 10 steps)
    double rss_slack_mib = 64;
};

// The resident-set history of one long-lived process.
struct RssTrack {
    long base_kib = -1;  // -1 until warmed up
    long last_kib = 0, max_kib = 0;
    double base_at = 0, last_at = 0;  // times of the baseline and of the last sample
    bool flagged = false;
};

// What the orchestrator knows about one peer process.
struct PeerRecord {
    enum class Phase { Starting, Connecting, Running, Gone };
    std::string name;
    int slot = -1;
    pid_t pid = -1;
    Phase phase = Phase::Starting;
    double spawned_at = 0, last_event_at = 0, connecting_since = 0;
    bool stopped = false, ever_stopped = false, killed = false;
    double cont_at = -1;               // last SIGCONT
    double resolve_at = 0;             // while stopped: when to SIGCONT or SIGKILL it
    bool resolve_kill = false;
    uint64_t steps = 0;
    int exit_code = -1;                // from its "exit" event
    bool exit_synced = false;
    std::string exit_msg, last_kind;
    bool silent_flagged = false, admission_flagged = false;
    RssTrack rss;
};

class Checker {
public:
    explicit Checker(const Limits &limits) : limits_(limits) {}
    // Violations are also written here (the run's events.log).
    void setLog(FILE *log) { log_ = log; }

    void onEvent(double now, PeerRecord &p, const Event &e);
    // A peer was SIGSTOPped: every other peer may now wait for it until it is removed.
    void onStop(double now) { last_stop_at_ = now; }
    // The master was SIGKILLed or SIGSTOPped: every call may wait for it. The deadlines run
    // again from onMasterUp (restarted or SIGCONT): a restarted master's recovery waits at
    // most the heartbeat deadline for the peers of the run (docs/master_recovery.md).
    void onMasterDown() { master_down_ = true; }
    void onMasterUp(double now);
    // The peer's process was reaped (waitpid status).
    void onExit(double now, PeerRecord &p, int status);
    void onMasterExit(double now, int status, const std::string &who = "master");
    // Deadlines: silent peers, admission, global progress.
    void tick(double now, std::vector<PeerRecord> &peers);
    // One RSS sample; the first one with warmed_up set is the baseline.
    void sampleRss(double now, const std::string &who, RssTrack &t, long kib, bool warmed_up);

    void violation(double now, const std::string &kind, const std::string &who, const std::string &detail);

    int violations() const { return violations_; }
    int violations(const std::string &kind) const {
        const auto it = by_kind_.find(kind);
        return it == by_kind_.end() ? 0 : it->second;
    }
    uint64_t allreduces() const { return allreduces_; }
    uint64_t syncs() const { return syncs_; }
    uint64_t steps() const { return steps_; }
    // Violations by kind, exits by reason, slowest calls, RSS of the longest-lived peer and the masters.
    void report(FILE *out, const std::vector<PeerRecord> &peers,
                const std::vector<std::pair<std::string, RssTrack>> &masters) const;

private:
    struct OpResult {
        uint64_t hash = 0;
        std::string first_ok;                // peer that reported success first ("" if none yet)
        std::vector<std::string> failed_by;  // never-stopped peers that saw it fail with pcclRankConnectionLost
    };
    struct Slowest {
        double ms = 0;
        std::string who;
        double at = 0;
        bool self_stopped = false;  // the caller itself was stopped during the call
        uint64_t calls = 0;
    };

    void checkDuration(double now, PeerRecord &p, const Event &e, const char *key);
    void onAllReduce(double now, PeerRecord &p, const Event &e);
    void onSync(double now, PeerRecord &p, const Event &e);
    // The latest moment since which every peer may be expected to make progress again, as far
    // as other processes are concerned: a peer's SIGSTOP, the master's return (or now, while
    // the master is down).
    double disturbedAt(double now) const;

    Limits limits_;
    FILE *log_ = nullptr;
    double last_stop_at_ = -1e9, last_step_at_ = 0;
    bool master_down_ = false;
    double master_up_at_ = -1e9;
    bool stall_flagged_ = false;
    int violations_ = 0;
    uint64_t allreduces_ = 0, syncs_ = 0, steps_ = 0;
    std::map<std::string, int> by_kind_;
    std::map<std::string, int> exits_;
    std::map<std::string, Slowest> slowest_;
    std::map<std::tuple<uint64_t, uint64_t, uint64_t>, OpResult> ops_;  // (lineage, rev, tag)
    std::map<std::pair<uint64_t, uint64_t>, std::pair<uint64_t, std::string>> states_;  // (lineage, rev) -> hash, peer
};

}  // namespace soak
