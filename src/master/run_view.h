// What the master knows about the run, as plain data: a snapshot that Membership::view() builds
// on the master's loop thread and that the status page, JSON API and metrics (http_status.h)
// read on other threads. Nothing in it points back into Membership. Times are milliseconds of the
// master's monotonic clock (the same as Membership::setTime), except wallNowMs.
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "protocol/messages.h"

namespace pccl::master {

// Durations of one kind of collective, Prometheus-style: buckets[i] counts observations of at
// most kBoundsSeconds[i] seconds (not cumulative: the renderer sums them); larger ones fall
// only in count (the +Inf bucket).
struct DurationHistogram {
    static constexpr std::array<double, 14> kBoundsSeconds = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                              0.5,   1,     2.5,  5,     10,   30,  60};
    std::array<uint64_t, kBoundsSeconds.size()> buckets{};
    uint64_t count = 0;
    double sumSeconds = 0;
    void observe(double seconds) {
        for (size_t i = 0; i < kBoundsSeconds.size(); ++i)
            if (seconds <= kBoundsSeconds[i]) {
                ++buckets[i];
                break;
            }
        ++count;
        sumSeconds += seconds;
    }
};

// Counters since the master started. Kinds: "all_reduce", "all_gather", "reduce_scatter",
// "broadcast", "barrier" (collectiveMetricName), "shared_state_sync". Results:
// "completed", "aborted" (a peer failed or was lost), "mismatched", "timed_out". Loss reasons:
// "crash" (its connection closed), "heartbeat", "left", "vote_timeout", "link_failure",
// "shared_state" (kicked by the shared-state election), "protocol" (kicked for a protocol error).
struct RunCounters {
    std::map<std::pair<std::string, std::string>, uint64_t> collectives;  // (kind, result) -> count
    std::map<std::string, DurationHistogram> durations;                  // kind -> commence to commit
    uint64_t joins = 0;                                                   // peers admitted
    std::map<std::string, uint64_t> losses;                               // reason -> count
    uint64_t statsReports = 0;                                            // StatsReport messages taken
};

// One membership event: the line the master logs, when, and what kind ("registered", "admitted",
// "lost", "vote", "topology", "master").
struct RunEvent {
    uint64_t atMs = 0;
    std::string kind;
    std::string text;
};

struct PeerView {
    std::string uuid;         // 32 hex digits
    std::string address;      // as observed by the master (control connection)
    std::string dataAddress;  // where other peers connect: advertised (NAT) or observed
    uint32_t group = 0;
    int64_t rank = -1;        // position in its group's ring; -1 while not admitted
    std::string state;        // "pending", "accepted", "voting"
    std::string activity;     // what the master knows it takes part in
    uint64_t connectedMs = 0, joinedMs = 0, lastSeenMs = 0;  // joinedMs 0: not admitted yet
    std::optional<protocol::StatsReport> stats;             // its latest report
    uint64_t statsMs = 0;                                    // when it came
};

// A directed link between two peers: what the master measured (bandwidth probe, raised by what
// committed all-reduces achieved on the hop) and what the sender last reported achieving.
struct LinkView {
    std::string from, to;  // uuids
    double probeBytesPerSecond = 0;  // 0: never measured
    uint64_t liveBytesPerSecond = 0; // 0: not reported
};

struct CollectiveView {
    std::string kind;  // "all_reduce", "all_gather", "reduce_scatter", "broadcast", "barrier", "shared_state_sync"
    uint32_t group = 0;
    uint64_t tag = 0, seq = 0;  // seq 0: not commenced yet
    std::string phase;          // "starting" or "running"
    size_t members = 0, started = 0, done = 0;
    uint64_t sinceMs = 0;
};

struct RunView {
    uint64_t nowMs = 0;      // the master's clock: its uptime
    uint64_t wallNowMs = 0;  // Unix time in ms at nowMs (set by the server)
    std::string version;
    uint64_t epoch = 0;
    size_t connecting = 0;   // connections that have not sent an accepted Hello (not in peers)
    std::vector<PeerView> peers;
    std::map<uint32_t, std::vector<std::string>> rings;  // group -> uuids in ring order
    std::map<uint32_t, uint64_t> revisions;              // group -> last committed shared-state revision
    std::vector<LinkView> links;
    std::vector<CollectiveView> inFlight;
    RunCounters counters;
    std::vector<RunEvent> events;  // oldest first, at most Membership::kEventLogSize
};

} // namespace pccl::master
