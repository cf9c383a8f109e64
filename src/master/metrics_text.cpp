// GET /metrics: Prometheus text exposition format 0.0.4 (docs/observability.md lists every
// metric). Known label values (states, kinds, results, loss reasons) are always present, at 0
// until something happens, so that rate() and alerts see a series from the first scrape.
#include <charconv>

#include <pccl.h>

#include "master/status_render.h"

namespace pccl::master {

namespace {

const char *const kStates[] = {"connecting", "pending", "rejoining", "accepted", "voting"};
const char *const kKinds[] = {"all_reduce", "all_gather", "reduce_scatter", "broadcast", "barrier", "shared_state_sync"};
const char *const kResults[] = {"completed", "aborted", "mismatched", "timed_out"};
const char *const kLossReasons[] = {"crash", "heartbeat", "left", "vote_timeout", "link_failure", "shared_state",
                                    "protocol"};

std::string escape(const std::string &s) {
    std::string r;
    for (char c : s) {
        if (c == '\\') r += "\\\\";
        else if (c == '"') r += "\\\"";
        else if (c == '\n') r += "\\n";
        else r += c;
    }
    return r;
}

// The shortest text that reads back as v.
std::string number(double v) {
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, r.ptr);
}

class Text {
public:
    void family(const char *name, const char *type, const char *help) {
        out_ += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
    }
    // labels: "name", "value", "name", "value", ... (values escaped here)
    void sample(const std::string &name, std::initializer_list<std::string> labels, double value) {
        out_ += name;
        if (labels.size()) {
            out_ += '{';
            auto it = labels.begin();
            for (size_t i = 0; i + 1 < labels.size(); i += 2, it += 2)
                out_ += (i ? "," : "") + *it + "=\"" + escape(*(it + 1)) + "\"";
            out_ += '}';
        }
        out_ += ' ' + number(value) + '\n';
    }
    std::string take() { return std::move(out_); }

private:
    std::string out_;
};

// One counter family with a tx and an rx sample per peer that reported, from its latest report.
void writeDirections(Text &t, const RunView &v, const char *name, const char *help,
                     uint64_t protocol::StatsReport::*tx, uint64_t protocol::StatsReport::*rx) {
    t.family(name, "counter", help);
    for (auto &p : v.peers)
        if (p.stats) {
            t.sample(name, {"peer", p.uuid, "direction", "tx"}, static_cast<double>((*p.stats).*tx));
            t.sample(name, {"peer", p.uuid, "direction", "rx"}, static_cast<double>((*p.stats).*rx));
        }
}

void writePeers(Text &t, const RunView &v) {
    t.family("pccl_peers", "gauge", "Peers known to the master, by state (connecting: no Hello accepted yet).");
    for (const char *state : kStates) {
        double n = state == std::string("connecting") ? v.connecting : 0;
        for (auto &p : v.peers) n += p.state == state;
        t.sample("pccl_peers", {"state", state}, n);
    }
    t.family("pccl_peer_groups", "gauge", "Peer groups with at least one admitted peer.");
    t.sample("pccl_peer_groups", {}, static_cast<double>(v.rings.size()));
    t.family("pccl_peer_joins_total", "counter", "Peers admitted to the run.");
    t.sample("pccl_peer_joins_total", {}, static_cast<double>(v.counters.joins));
    t.family("pccl_peer_losses_total", "counter", "Registered peers removed from the run, by reason.");
    for (const char *reason : kLossReasons) {
        auto it = v.counters.losses.find(reason);
        t.sample("pccl_peer_losses_total", {"reason", reason}, it == v.counters.losses.end() ? 0 : it->second);
    }
    t.family("pccl_peer_tx_bytes_total", "counter",
             "Bytes a peer sent on its data connections: collectives, shared state, probes (its latest report).");
    for (auto &p : v.peers)
        if (p.stats) t.sample("pccl_peer_tx_bytes_total", {"peer", p.uuid}, static_cast<double>(p.stats->tx_bytes));
    t.family("pccl_peer_rx_bytes_total", "counter",
             "Bytes a peer received on its data connections: collectives, shared state, probes (its latest report).");
    for (auto &p : v.peers)
        if (p.stats) t.sample("pccl_peer_rx_bytes_total", {"peer", p.uuid}, static_cast<double>(p.stats->rx_bytes));
    // The parts of those that shared-state transfers and bandwidth probes moved, per direction.
    writeDirections(t, v, "pccl_shared_state_transfer_bytes_total",
                    "Bytes a peer sent (tx) or received (rx) in shared-state transfers (its latest report).",
                    &protocol::StatsReport::shared_state_tx_bytes, &protocol::StatsReport::shared_state_rx_bytes);
    writeDirections(t, v, "pccl_bandwidth_probe_bytes_total",
                    "Bytes a peer sent (tx) or received (rx) in bandwidth probes (its latest report).",
                    &protocol::StatsReport::probe_tx_bytes, &protocol::StatsReport::probe_rx_bytes);
}

void writeCollectives(Text &t, const RunView &v) {
    t.family("pccl_collectives_total", "counter", "Collectives the master settled, by kind and result.");
    for (const char *kind : kKinds)
        for (const char *result : kResults) {
            auto it = v.counters.collectives.find({kind, result});
            t.sample("pccl_collectives_total", {"kind", kind, "result", result},
                     it == v.counters.collectives.end() ? 0 : it->second);
        }
    t.family("pccl_collective_duration_seconds", "histogram",
             "Completed collectives, from the master's commence to its commit.");
    for (const char *kind : kKinds) {
        auto it = v.counters.durations.find(kind);
        const DurationHistogram h = it == v.counters.durations.end() ? DurationHistogram{} : it->second;
        uint64_t cumulative = 0;
        for (size_t i = 0; i < h.buckets.size(); ++i) {
            cumulative += h.buckets[i];
            t.sample("pccl_collective_duration_seconds_bucket",
                     {"kind", kind, "le", number(DurationHistogram::kBoundsSeconds[i])}, static_cast<double>(cumulative));
        }
        t.sample("pccl_collective_duration_seconds_bucket", {"kind", kind, "le", "+Inf"}, static_cast<double>(h.count));
        t.sample("pccl_collective_duration_seconds_sum", {"kind", kind}, h.sumSeconds);
        t.sample("pccl_collective_duration_seconds_count", {"kind", kind}, static_cast<double>(h.count));
    }
    t.family("pccl_collectives_in_flight", "gauge", "Collectives started by some peer and not settled yet.");
    t.sample("pccl_collectives_in_flight", {}, static_cast<double>(v.inFlight.size()));
}

void writeTopology(Text &t, const RunView &v) {
    t.family("pccl_link_bandwidth_bytes_per_second", "gauge",
             "Bandwidth of a directed link: measured by the master's probe (source=probe, raised by committed "
             "all-reduces) or last achieved as reported by the sender (source=reported).");
    for (auto &l : v.links) {
        if (l.probeBytesPerSecond > 0)
            t.sample("pccl_link_bandwidth_bytes_per_second", {"from", l.from, "to", l.to, "source", "probe"},
                     l.probeBytesPerSecond);
        if (l.liveBytesPerSecond > 0)
            t.sample("pccl_link_bandwidth_bytes_per_second", {"from", l.from, "to", l.to, "source", "reported"},
                     static_cast<double>(l.liveBytesPerSecond));
    }
    t.family("pccl_shared_state_revision", "gauge", "Last committed shared-state revision of a peer group.");
    for (auto &[group, rev] : v.revisions)
        t.sample("pccl_shared_state_revision", {"group", std::to_string(group)}, static_cast<double>(rev));
    t.family("pccl_epoch", "gauge", "The master's topology epoch (grows with each admission or ring change).");
    t.sample("pccl_epoch", {}, static_cast<double>(v.epoch));
}

} // namespace

std::string buildVersion() {
    int n = 0;
    pcclGetVersion(&n);
    return std::to_string(n / 10000) + "." + std::to_string(n / 100 % 100) + "." + std::to_string(n % 100);
}

std::string renderMetrics(const RunView &v) {
    Text t;
    t.family("pccl_build_info", "gauge", "Always 1; the labels describe the master's build.");
    t.sample("pccl_build_info", {"version", v.version.empty() ? buildVersion() : v.version}, 1);
    t.family("pccl_master_uptime_seconds", "gauge", "Seconds since the master started.");
    t.sample("pccl_master_uptime_seconds", {}, static_cast<double>(v.nowMs) / 1000.0);
    writePeers(t, v);
    writeCollectives(t, v);
    writeTopology(t, v);
    t.family("pccl_stats_reports_total", "counter", "StatsReport messages the master received from peers.");
    t.sample("pccl_stats_reports_total", {}, static_cast<double>(v.counters.statsReports));
    return t.take();
}

} // namespace pccl::master
