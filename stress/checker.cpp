// pccl-soak: the checks (see checker.hpp and README.md).
#include "checker.hpp"

#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstring>

namespace soak {
namespace {

constexpr int kPrintedViolations = 200;  // the rest are counted only

std::string fmt(const char *f, double a) {
    char buf[64];
    std::snprintf(buf, sizeof buf, f, a);
    return buf;
}

}  // namespace

void Checker::violation(double now, const std::string &kind, const std::string &who, const std::string &detail) {
    ++violations_;
    ++by_kind_[kind];
    if (violations_ <= kPrintedViolations) {
        std::printf("soak: VIOLATION +%.1fs %s %s: %s\n", now, kind.c_str(), who.c_str(), detail.c_str());
        std::fflush(stdout);
    }
    if (log_) std::fprintf(log_, "%.3f soak VIOLATION %s %s: %s\n", now, kind.c_str(), who.c_str(), detail.c_str());
}

void Checker::onEvent(double now, PeerRecord &p, const Event &e) {
    p.last_event_at = now;
    p.last_kind = e.kind;
    p.silent_flagged = false;
    if (e.kind == "connecting") {
        p.phase = PeerRecord::Phase::Connecting;
        p.connecting_since = now;
        p.admission_flagged = false;
    } else if (e.kind == "connect" && !e.failed) {
        p.phase = PeerRecord::Phase::Running;
    } else if (e.kind == "connect" || e.kind == "destroy") {
        p.phase = PeerRecord::Phase::Starting;  // between attempts: must go on promptly
    } else if (e.kind == "allreduce") {
        onAllReduce(now, p, e);
    } else if (e.kind == "sync") {
        onSync(now, p, e);
    } else if (e.kind == "step") {
        ++p.steps;
        ++steps_;
        last_step_at_ = now;
        stall_flagged_ = false;
    } else if (e.kind == "violation") {
        violation(now, e.str("kind"), p.name, "lineage " + e.str("lineage") + " rev " + e.str("rev") + ": " + e.str("msg"));
    } else if (e.kind == "exit") {
        p.exit_code = static_cast<int>(e.num("code", -1));
        p.exit_synced = e.num("synced") != 0;
        p.exit_msg = e.str("msg");
    }
    // pcclConnect waits for admission (checked in tick); every other call is bounded.
    if (e.kind != "connect") {
        checkDuration(now, p, e, "ms");
        checkDuration(now, p, e, "launch_ms");
    }
}

void Checker::onMasterUp(double now) {
    master_down_ = false;
    master_up_at_ = now;
}

double Checker::disturbedAt(double now) const { return std::max(last_stop_at_, master_down_ ? now : master_up_at_); }

// A call may wait for a stopped peer until the heartbeat timeout removes it, and for a master
// that is down until it is back: the bound runs from the later of the call's start, the last
// SIGSTOP of any peer, the master's return and this peer's last SIGCONT.
void Checker::checkDuration(double now, PeerRecord &p, const Event &e, const char *key) {
    if (!e.has(key)) return;
    const double ms = e.num(key);
    const std::string kind = std::strcmp(key, "ms") == 0 ? e.kind : e.kind + "_launch";
    const double start = now - ms / 1000;
    Slowest &s = slowest_[kind];
    ++s.calls;
    if (ms > s.ms) s = {ms, p.name, now, p.cont_at > start, s.calls};
    const double ref = std::max({start, disturbedAt(now), p.cont_at});
    if (now - ref > limits_.deadline_s)
        violation(now, "slow_call", p.name,
                  kind + " took " + fmt("%.0f ms", ms) + " (limit " + fmt("%.1f s", limits_.deadline_s) +
                      " after the call started, the last SIGSTOP or the master's return)");
}

void Checker::onAllReduce(double now, PeerRecord &p, const Event &e) {
    const auto key = std::make_tuple(e.u64("lineage", 16), e.u64("rev"), e.u64("tag"));
    const std::string what = "lineage " + e.str("lineage") + " rev " + e.str("rev") + " tag " + e.str("tag");
    OpResult &r = ops_[key];
    if (!e.failed) {
        const uint64_t h = e.u64("hash", 16);
        if (r.first_ok.empty()) {
            r.first_ok = p.name;
            r.hash = h;
            ++allreduces_;
        } else if (r.hash != h) {
            violation(now, "allreduce_differs", p.name, what + ": result hash " + e.str("hash") + " differs from " + r.first_ok + "'s");
        }
        for (const std::string &f : r.failed_by)
            violation(now, "all_or_nothing", p.name, what + " succeeded here but failed on " + f);
        r.failed_by.clear();
        return;
    }
    // Only a plain failure of a peer that is still a member says "the operation was aborted
    // everywhere"; a multi call may have completed some of its operations.
    if (e.str("how") == "multi" || e.num("code") != 8 || p.ever_stopped) return;
    if (!r.first_ok.empty())
        violation(now, "all_or_nothing", p.name, what + " failed here (pcclRankConnectionLost) but succeeded on " + r.first_ok);
    else
        r.failed_by.push_back(p.name);
}

void Checker::onSync(double now, PeerRecord &p, const Event &e) {
    if (e.failed) return;
    const auto key = std::make_pair(e.u64("lineage", 16), e.u64("rev"));
    const uint64_t h = e.u64("hash", 16);
    auto [it, fresh] = states_.try_emplace(key, h, p.name);
    if (fresh) ++syncs_;
    else if (it->second.first != h)
        violation(now, "state_differs", p.name,
                  "lineage " + e.str("lineage") + " rev " + e.str("rev") + ": state hash " + e.str("hash") +
                      " differs from " + it->second.second + "'s");
}

void Checker::onExit(double now, PeerRecord &p, int status) {
    p.phase = PeerRecord::Phase::Gone;
    std::string why;
    if (p.killed) {
        ++exits_["killed"];
        return;
    }
    if (WIFSIGNALED(status)) {
        why = std::string("killed by signal ") + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
    } else if (WIFEXITED(status)) {
        const int code = WEXITSTATUS(status);
        if (code == kExitRemoved && p.ever_stopped) {
            ++exits_["removed after SIGSTOP"];
            return;
        }
        if (code == kExitStateLost && !p.exit_synced) {
            ++exits_["no live holder of the state"];
            return;
        }
        if (code == kExitDone) {
            ++exits_["done"];
            return;
        }
        why = "exit " + std::to_string(code) + (p.exit_msg.empty() ? "" : " (" + p.exit_msg + ")");
    } else {
        why = "status " + std::to_string(status);
    }
    ++exits_["unexpected"];
    violation(now, "peer_exit", p.name, why + (p.ever_stopped ? "" : ", never stopped"));
}

void Checker::onMasterExit(double now, int status, const std::string &who) {
    violation(now, "master_exit", who,
              WIFSIGNALED(status) ? "killed by signal " + std::to_string(WTERMSIG(status))
                                  : "exited with " + std::to_string(WEXITSTATUS(status)));
}

void Checker::tick(double now, std::vector<PeerRecord> &peers) {
    bool any_running = false;
    for (PeerRecord &p : peers) {
        if (p.phase == PeerRecord::Phase::Gone || p.stopped || p.killed) continue;
        const double disturbed = std::max(disturbedAt(now), p.cont_at);
        if (p.phase == PeerRecord::Phase::Connecting) {
            const double ref = std::max(p.connecting_since, disturbed);
            if (!p.admission_flagged && now - ref > limits_.admission_s) {
                p.admission_flagged = true;
                violation(now, "admission", p.name, "waiting in pcclConnect for " + fmt("%.1f s", now - p.connecting_since));
            }
            continue;
        }
        any_running = any_running || p.phase == PeerRecord::Phase::Running;
        const double ref = std::max({p.last_event_at, p.spawned_at, disturbed});
        if (!p.silent_flagged && now - ref > limits_.deadline_s) {
            p.silent_flagged = true;
            violation(now, "silent", p.name,
                      "no event for " + fmt("%.1f s", now - p.last_event_at) + " (last: " + p.last_kind + ")");
        }
    }
    if (any_running && !stall_flagged_ && now - std::max(last_step_at_, disturbedAt(now)) > limits_.stall_s) {
        stall_flagged_ = true;
        violation(now, "stall", "run", "no peer completed a step for " + fmt("%.1f s", now - last_step_at_));
    }
}

void Checker::sampleRss(double now, const std::string &who, RssTrack &t, long kib, bool warmed_up) {
    if (kib <= 0) return;
    t.last_kib = kib;
    t.last_at = now;
    t.max_kib = std::max(t.max_kib, kib);
    if (t.base_kib < 0) {
        if (warmed_up) {
            t.base_kib = kib;
            t.base_at = now;
            t.max_kib = kib;
        }
        return;
    }
    if (!t.flagged && kib - t.base_kib > limits_.rss_slack_mib * 1024) {
        t.flagged = true;
        violation(now, "rss_growth", who,
                  "RSS " + fmt("%.1f MiB", kib / 1024.0) + ", " + fmt("%.1f MiB", t.base_kib / 1024.0) + " after warm-up");
    }
}

void Checker::report(FILE *out, const std::vector<PeerRecord> &peers,
                     const std::vector<std::pair<std::string, RssTrack>> &masters) const {
    std::fprintf(out, "soak: exits:");
    for (auto &[why, n] : exits_) std::fprintf(out, " %s=%d", why.c_str(), n);
    std::fprintf(out, "\nsoak: slowest calls:");
    for (auto &[kind, s] : slowest_)
        std::fprintf(out, " %s %.0fms (%s +%.0fs%s, %llu calls);", kind.c_str(), s.ms, s.who.c_str(), s.at,
                     s.self_stopped ? ", itself stopped" : "", static_cast<unsigned long long>(s.calls));
    std::fprintf(out, "\n");
    const PeerRecord *longest = nullptr;
    for (const PeerRecord &p : peers)
        if (p.rss.base_kib >= 0 && (!longest || p.rss.last_at - p.rss.base_at > longest->rss.last_at - longest->rss.base_at))
            longest = &p;
    auto rss = [&](const char *who, const RssTrack &t) {
        if (t.base_kib < 0) return std::fprintf(out, " %s: not warmed up;", who);
        return std::fprintf(out, " %s %.1f MiB after warm-up, max %.1f MiB in the %.0f s after;", who,
                            t.base_kib / 1024.0, t.max_kib / 1024.0, t.last_at - t.base_at);
    };
    std::fprintf(out, "soak: rss:");
    for (const auto &[name, track] : masters) rss(name.c_str(), track);
    if (longest) rss(("longest-lived peer " + longest->name).c_str(), longest->rss);
    std::fprintf(out, "\n");
    if (!by_kind_.empty()) {
        std::fprintf(out, "soak: violations by kind:");
        for (auto &[kind, n] : by_kind_) std::fprintf(out, " %s=%d", kind.c_str(), n);
        std::fprintf(out, "\n");
    }
}

}  // namespace soak
