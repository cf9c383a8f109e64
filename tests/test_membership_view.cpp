// Membership's view of the run (run_view.h): counters, the event log, StatsReports, rings.
#include "support/membership_driver.h"

#include "master/status_render.h"

using namespace pccl::testing;
using pccl::master::RunView;
using pccl::CollectiveKind;

namespace {

// Runs all-reduce `tag` on peers `ids` (all of group 0) to its commit, `ms` after it commenced.
void allReduce(Cluster &c, const std::vector<ClientId> &ids, uint64_t tag, uint64_t startMs, uint64_t ms) {
    c.m.setTime(startMs);
    Actions out;
    for (ClientId id : ids) out = c.m.onMessage(id, init(tag));
    auto commence = sent<CollectiveCommence>(out, ids[0]);
    REQUIRE(commence.size() == 1);
    c.m.setTime(startMs + ms);
    for (ClientId id : ids) c.m.onMessage(id, CollectiveDone{tag, commence[0].seq, true, "", 0, 1000});
}

uint64_t collectives(const RunView &v, const std::string &kind, const std::string &result) {
    auto it = v.counters.collectives.find({kind, result});
    return it == v.counters.collectives.end() ? 0 : it->second;
}

} // namespace

TEST_CASE("membership view: collectives are counted by result with their durations", "[master][status]") {
    Cluster c;
    acceptPeers(c, 3);
    allReduce(c, {1, 2, 3}, 1, 1000, 20);
    allReduce(c, {1, 2, 3}, 2, 2000, 700);
    auto v = c.m.view();
    CHECK(collectives(v, "all_reduce", "completed") == 2);
    const auto &h = v.counters.durations.at("all_reduce");
    CHECK(h.count == 2);
    CHECK(h.sumSeconds == Approx(0.72));
    CHECK(h.buckets[3] == 1);  // 0.02 s <= 0.025
    CHECK(h.buckets[8] == 1);  // 0.7 s <= 1
    // Mismatched descriptions abort the tag as "mismatched".
    c.m.onMessage(1, init(3, 100));
    c.m.onMessage(2, init(3, 200));
    c.m.onMessage(3, init(3, 100));
    v = c.m.view();
    CHECK(collectives(v, "all_reduce", "mismatched") == 1);
    CHECK(v.counters.joins == 3);
    CHECK(v.epoch > 0);
    REQUIRE(v.rings.at(0).size() == 3);
    // Committed all-reduces taught the master each hop's rate: the links of the ring.
    CHECK(v.links.size() == 3);
    for (auto &l : v.links) CHECK(l.probeBytesPerSecond == 1000);
}

TEST_CASE("membership view: each kind of collective is counted, named and shown under its own kind", "[master][status]") {
    Cluster c;
    acceptPeers(c, 3);
    auto as = [](CollectiveInit m, CollectiveKind kind) {
        m.desc.kind = static_cast<uint8_t>(kind);
        m.desc.world = kind == CollectiveKind::Barrier ? 0 : 3;
        return m;
    };
    // A broadcast runs to its commit.
    c.m.setTime(1000);
    Actions out;
    for (ClientId id : {1, 2, 3}) out = c.m.onMessage(id, as(init(1), CollectiveKind::Broadcast));
    auto commence = sent<CollectiveCommence>(out, 1);
    REQUIRE(commence.size() == 1);
    CHECK(c.m.view().inFlight.at(0).kind == "broadcast");
    c.m.setTime(1040);
    for (ClientId id : {1, 2, 3}) c.m.onMessage(id, CollectiveDone{1, commence[0].seq, true, "", 0, 0});
    // An all-gather loses a peer while it runs: aborted, and the reason names the all-gather.
    for (ClientId id : {1, 2, 3}) out = c.m.onMessage(id, as(init(2), CollectiveKind::AllGather));
    REQUIRE(sent<CollectiveCommence>(out, 1).size() == 1);
    out = c.m.onDisconnect(3, "connection reset");
    auto aborted = sent<CollectiveAborted>(out, 1);
    REQUIRE(aborted.size() == 1);
    CHECK_THAT(aborted[0].reason, Catch::Contains("during all-gather tag 2"));

    auto v = c.m.view();
    CHECK(collectives(v, "broadcast", "completed") == 1);
    CHECK(collectives(v, "all_gather", "aborted") == 1);
    CHECK(collectives(v, "all_reduce", "completed") == 0);
    CHECK(collectives(v, "all_reduce", "aborted") == 0);
    REQUIRE(v.counters.durations.count("broadcast"));
    CHECK(v.counters.durations.at("broadcast").sumSeconds == Approx(0.04));
    CHECK(!v.counters.durations.count("all_reduce"));
    // The metrics carry every kind from the first scrape.
    const std::string metrics = pccl::master::renderMetrics(v);
    CHECK_THAT(metrics, Catch::Contains("pccl_collectives_total{kind=\"broadcast\",result=\"completed\"} 1"));
    CHECK_THAT(metrics, Catch::Contains("pccl_collectives_total{kind=\"reduce_scatter\",result=\"completed\"} 0"));
    CHECK_THAT(metrics, Catch::Contains("pccl_collectives_total{kind=\"all_gather\",result=\"aborted\"} 1"));
}

TEST_CASE("membership view: a collective of an unknown kind kicks its sender", "[master]") {
    Cluster c;
    acceptPeers(c, 2);
    CollectiveInit m = init(4);
    m.desc.kind = 200;
    auto out = c.m.onMessage(1, m);
    CHECK(c.m.view().inFlight.empty());
    auto v = c.m.view();
    CHECK(v.peers.size() == 1);
    CHECK(std::any_of(v.events.begin(), v.events.end(), [](auto &e) {
        return e.text.find("unknown collective (kind 200)") != std::string::npos;
    }));
}

TEST_CASE("membership view: a peer lost in a running all-reduce counts a crash and an aborted collective",
          "[master][status]") {
    Cluster c;
    acceptPeers(c, 3);
    Actions out;
    for (ClientId id : {1, 2, 3}) out = c.m.onMessage(id, init(5));
    REQUIRE(sent<CollectiveCommence>(out, 1).size() == 1);
    CHECK(c.m.view().inFlight.size() == 1);
    CHECK(c.m.view().inFlight[0].phase == "running");
    c.m.onDisconnect(3, "connection reset");
    auto v = c.m.view();
    CHECK(v.counters.losses.at("crash") == 1);
    CHECK(collectives(v, "all_reduce", "aborted") == 1);
    CHECK(v.inFlight.empty());
    CHECK(v.peers.size() == 2);
    CHECK(std::any_of(v.events.begin(), v.events.end(), [](auto &e) {
        return e.kind == "lost" && e.text.find("connection reset") != std::string::npos;
    }));
    CHECK(v.events.back().kind == "collective");  // the all-reduce it took down, with the reason
}

TEST_CASE("membership view: losses are classified by reason", "[master][status]") {
    Cluster c;
    c.m.setTime(0);
    acceptPeers(c, 4);
    c.m.onMessage(1, Leave{});
    c.m.onMessage(2, hello());  // a second Hello: a protocol error
    c.m.setTime(100);
    for (ClientId id : {3}) c.m.onMessage(id, Heartbeat{});
    c.m.setTime(5050);  // peer 4 silent past the default 5000 ms, peer 3 not
    c.m.onTick();
    auto v = c.m.view();
    CHECK(v.counters.losses.at("left") == 1);
    CHECK(v.counters.losses.at("protocol") == 1);
    CHECK(v.counters.losses.at("heartbeat") == 1);
    CHECK(v.counters.losses.count("crash") == 0);
    REQUIRE(v.peers.size() == 1);
    CHECK(v.peers[0].rank == 0);
    CHECK(v.peers[0].state == "accepted");
}

TEST_CASE("membership view: a StatsReport is kept per peer with its links", "[master][status]") {
    Cluster c;
    auto uuids = acceptPeers(c, 2);
    StatsReport r;
    r.tx_bytes = 12345;
    r.rx_bytes = 678;
    r.collectives_completed = 9;
    r.links.push_back(LinkRate{uuids[2], 5000000});
    c.m.setTime(42);
    auto out = c.m.onMessage(1, r);
    CHECK(out.empty());  // no answer, and not kicked
    auto v = c.m.view();
    CHECK(v.counters.statsReports == 1);
    const auto &p = *std::find_if(v.peers.begin(), v.peers.end(), [&](auto &x) { return x.uuid == uuids[1].str(); });
    REQUIRE(p.stats);
    CHECK(p.stats->tx_bytes == 12345);
    CHECK(p.statsMs == 42);
    REQUIRE(v.links.size() == 1);
    CHECK(v.links[0].from == uuids[1].str());
    CHECK(v.links[0].to == uuids[2].str());
    CHECK(v.links[0].liveBytesPerSecond == 5000000);
}

TEST_CASE("membership view: the event log keeps the latest events with their times", "[master][status]") {
    Cluster c;
    c.m.setTime(7);
    acceptPeers(c, 1);
    for (ClientId id = 10; id < 10 + pccl::master::Membership::kEventLogSize; ++id) {
        c.m.setTime(id);
        c.join(id);
        c.m.onDisconnect(id, "gone");
    }
    auto v = c.m.view();
    CHECK(v.events.size() == pccl::master::Membership::kEventLogSize);
    CHECK(v.events.back().atMs == 9 + pccl::master::Membership::kEventLogSize);
    CHECK(v.events.front().atMs > 7);
    CHECK(v.counters.losses.at("crash") == pccl::master::Membership::kEventLogSize);
    CHECK(c.m.takeEvents().size() > pccl::master::Membership::kEventLogSize);  // the daemon's lines are all there
}

TEST_CASE("status rendering: metrics and JSON carry the counters and escape what peers send", "[master][status]") {
    Cluster c;
    acceptPeers(c, 2);
    allReduce(c, {1, 2}, 1, 100, 5);
    c.m.onMessage(1, CollectiveInit{});  // tag 0, then a failure report with odd bytes
    c.m.onMessage(2, CollectiveInit{});
    auto v = c.m.view();
    REQUIRE(v.inFlight.size() == 1);
    c.m.onMessage(1, CollectiveDone{0, v.inFlight[0].seq, false, "bad \"quote\"\n\xff\x01 end", 0, 0});
    v = c.m.view();
    v.wallNowMs = 1700000000000;
    const auto metrics = pccl::master::renderMetrics(v);
    CHECK(metrics.find("pccl_collectives_total{kind=\"all_reduce\",result=\"completed\"} 1\n") != std::string::npos);
    CHECK(metrics.find("pccl_collectives_total{kind=\"all_reduce\",result=\"aborted\"} 1\n") != std::string::npos);
    CHECK(metrics.find("pccl_peers{state=\"accepted\"} 2\n") != std::string::npos);
    CHECK(metrics.find("pccl_collective_duration_seconds_bucket{kind=\"all_reduce\",le=\"0.005\"} 1\n") !=
          std::string::npos);
    CHECK(metrics.find("# TYPE pccl_collective_duration_seconds histogram\n") != std::string::npos);
    const auto json = pccl::master::renderStatusJson(v);
    CHECK(json.find("\\\"quote\\\"\\u000a\\ufffd\\u0001 end") != std::string::npos);
    CHECK(json.find("\"now_unix_ms\":1700000000000") != std::string::npos);
}

TEST_CASE("status rendering: a peer's shared-state and probe bytes are exported apart from its totals",
          "[master][status]") {
    Cluster c;
    auto uuids = acceptPeers(c, 2);
    StatsReport r;
    r.tx_bytes = 70110;
    r.rx_bytes = 65200;
    r.shared_state_tx_bytes = 10;
    r.shared_state_rx_bytes = 5000;
    r.probe_tx_bytes = 70000;
    r.probe_rx_bytes = 60000;
    c.m.onMessage(1, r);
    const auto v = c.m.view();
    const auto metrics = pccl::master::renderMetrics(v);
    const std::string peer = uuids[1].str();
    for (const std::string &line : {"pccl_peer_tx_bytes_total{peer=\"" + peer + "\"} 70110\n",
                                   "pccl_shared_state_transfer_bytes_total{peer=\"" + peer + "\",direction=\"tx\"} 10\n",
                                   "pccl_shared_state_transfer_bytes_total{peer=\"" + peer + "\",direction=\"rx\"} 5000\n",
                                   "pccl_bandwidth_probe_bytes_total{peer=\"" + peer + "\",direction=\"tx\"} 70000\n",
                                   "pccl_bandwidth_probe_bytes_total{peer=\"" + peer + "\",direction=\"rx\"} 60000\n",
                                   std::string("# TYPE pccl_shared_state_transfer_bytes_total counter\n")})
        CHECK(metrics.find(line) != std::string::npos);
    // The peer that never reported has no series.
    CHECK(metrics.find("direction=\"tx\"} 0\n") == std::string::npos);
    const auto json = pccl::master::renderStatusJson(v);
    CHECK(json.find("\"shared_state_rx_bytes\":5000,\"probe_tx_bytes\":70000,\"probe_rx_bytes\":60000") != std::string::npos);
}
