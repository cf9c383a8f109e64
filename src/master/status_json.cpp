// GET /api/status: the RunView as JSON (schema: docs/status.schema.json). Times are Unix
// milliseconds ("..._unix_ms"), converted from the master's monotonic clock with wallNowMs.
#include <algorithm>

#include "master/json_writer.h"
#include "master/status_render.h"

namespace pccl::master {

namespace {

uint64_t wall(const RunView &v, uint64_t ms) { return v.wallNowMs - (v.nowMs - std::min(ms, v.nowMs)); }

void writeStats(JsonWriter &w, const RunView &v, const PeerView &p) {
    if (!p.stats) {
        w.null();
        return;
    }
    const auto &s = *p.stats;
    w.beginObject();
    w.key("reported_unix_ms").value(wall(v, p.statsMs));
    w.key("tx_bytes").value(s.tx_bytes).key("rx_bytes").value(s.rx_bytes);
    w.key("shared_state_tx_bytes").value(s.shared_state_tx_bytes).key("shared_state_rx_bytes").value(s.shared_state_rx_bytes);
    w.key("probe_tx_bytes").value(s.probe_tx_bytes).key("probe_rx_bytes").value(s.probe_rx_bytes);
    w.key("collectives_completed").value(s.collectives_completed);
    w.key("collectives_failed").value(s.collectives_failed);
    w.key("syncs_completed").value(s.syncs_completed).key("syncs_failed").value(s.syncs_failed);
    w.key("last_op_micros").value(s.last_op_micros).key("last_op_bytes").value(s.last_op_bytes);
    w.endObject();
}

void writePeers(JsonWriter &w, const RunView &v) {
    w.key("peers").beginArray();
    for (auto &p : v.peers) {
        w.beginObject();
        w.key("uuid").value(p.uuid).key("address").value(p.address).key("data_address").value(p.dataAddress);
        w.key("group").value(p.group).key("rank").value(p.rank);
        w.key("state").value(p.state).key("activity").value(p.activity);
        w.key("connected_unix_ms").value(wall(v, p.connectedMs));
        w.key("joined_unix_ms");
        if (p.joinedMs) w.value(wall(v, p.joinedMs));
        else w.null();
        w.key("last_heartbeat_unix_ms").value(wall(v, p.lastSeenMs));
        w.key("stats");
        writeStats(w, v, p);
        w.endObject();
    }
    w.endArray();
}

void writeTopology(JsonWriter &w, const RunView &v) {
    w.key("rings").beginArray();
    for (auto &[group, ring] : v.rings) {
        w.beginObject().key("group").value(group).key("order").beginArray();
        for (auto &uuid : ring) w.value(uuid);
        w.endArray();
        auto rev = v.revisions.find(group);
        w.key("shared_state_revision");
        if (rev != v.revisions.end()) w.value(rev->second);
        else w.null();
        w.endObject();
    }
    w.endArray();
    w.key("links").beginArray();
    for (auto &l : v.links) {
        w.beginObject().key("from").value(l.from).key("to").value(l.to);
        w.key("measured_bytes_per_second").value(l.probeBytesPerSecond);
        w.key("reported_bytes_per_second").value(l.liveBytesPerSecond);
        w.endObject();
    }
    w.endArray();
    w.key("in_flight").beginArray();
    for (auto &c : v.inFlight) {
        w.beginObject().key("kind").value(c.kind).key("group").value(c.group).key("tag").value(c.tag);
        w.key("seq").value(c.seq).key("phase").value(c.phase).key("members").value(uint64_t(c.members));
        w.key("started").value(uint64_t(c.started)).key("done").value(uint64_t(c.done));
        w.key("since_unix_ms").value(wall(v, c.sinceMs)).endObject();
    }
    w.endArray();
}

void writeCounters(JsonWriter &w, const RunView &v) {
    const auto &c = v.counters;
    w.key("counters").beginObject();
    w.key("collectives").beginArray();
    for (auto &[key, n] : c.collectives)
        w.beginObject().key("kind").value(key.first).key("result").value(key.second).key("count").value(n).endObject();
    w.endArray();
    w.key("durations").beginArray();
    for (auto &[kind, h] : c.durations)
        w.beginObject().key("kind").value(kind).key("count").value(h.count).key("sum_seconds").value(h.sumSeconds).endObject();
    w.endArray();
    w.key("joins").value(c.joins);
    w.key("losses").beginObject();
    for (auto &[reason, n] : c.losses) w.key(reason).value(n);
    w.endObject();
    w.key("stats_reports").value(c.statsReports);
    w.endObject();
}

} // namespace

std::string renderStatusJson(const RunView &v) {
    JsonWriter w;
    w.beginObject();
    w.key("version").value(v.version.empty() ? buildVersion() : v.version);
    w.key("now_unix_ms").value(v.wallNowMs);
    w.key("uptime_seconds").value(static_cast<double>(v.nowMs) / 1000.0);
    w.key("epoch").value(v.epoch);
    w.key("connecting").value(uint64_t(v.connecting));
    writePeers(w, v);
    writeTopology(w, v);
    writeCounters(w, v);
    w.key("events").beginArray();
    for (auto &e : v.events)
        w.beginObject().key("at_unix_ms").value(wall(v, e.atMs)).key("kind").value(e.kind).key("text").value(e.text).endObject();
    w.endArray();
    w.endObject();
    return w.str();
}

} // namespace pccl::master
