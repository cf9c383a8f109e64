// pccl-master-sim: the master's decisions at scale, by simulation (issue 15, item 6;
// bench/README.md, "Master at scale"). master::Membership is a pure state machine: this drives
// it with N simulated peers, no sockets and no threads. Each simulated peer answers the master
// as a real one does (TopologyUpdate -> LinksReady, CollectiveCommence -> CollectiveDone,
// SharedStatePlan -> SharedStateDone), so every figure is the master's own CPU: the process CPU
// time (CLOCK_PROCESS_CPUTIME_ID) spent inside Membership's calls, building the actions included.
//
// Scenarios, per run size N:
//   admit    a first peer, then N-1 joiners admitted in one update-topology round
//   allred   K all-reduces over all N peers (CollectiveInit + CollectiveAwait from each,
//            commence, done with a send rate, commit)
//   hb       one heartbeat from every peer, then one tick
//   pending  a peers-pending vote of all N peers while N/10 joiners wait, then their admission
//            into the measured ring (the all-reduces reported link rates)
//   sync     a shared-state sync round of all N peers, one of them out of date
//   loss     peers lost one at a time while idle, then during an all-reduce
//   rebuild  a restarted master rebuilt from the N - 2L peers left (a Rejoin from each), then
//            the next all-reduce on the rebuilt run
//
// Usage: pccl-master-sim [--peers 1000,10000] [--collectives 10] [--losses 10] [--secret] [--json]
// --secret gives the master a run key, so that admissions also derive and send the pair keys.
// Exit status 1 when a scenario does not reach its expected outcome (the smoke test relies on it).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "master_sim_peers.hpp"
#include "shared_state/hashing.h"

namespace {

using namespace pccl;
using namespace pccl::bench;

struct Row {
    std::string scenario, per;
    size_t peers = 0, count = 0;
    double cpuS = 0;
    uint64_t ringEntries = 0;
};

// Runs `body` and returns the master CPU and ring entries it cost.
template <class F>
Row measure(Sim &sim, const char *scenario, const char *per, size_t peers, size_t count, F &&body) {
    const double c0 = sim.cpu();
    const uint64_t r0 = sim.got().ringEntries;
    body();
    return Row{scenario, per, peers, count, sim.cpu() - c0, sim.got().ringEntries - r0};
}

void expect(bool ok, const std::string &what) {
    if (!ok) fail("scenario did not reach its outcome: " + what);
}

CollectiveInit initOf(uint64_t tag) {
    CollectiveInit c;
    c.tag = tag;
    c.desc.count = 1 << 20;
    c.desc.dtype = pcclFloat;
    c.desc.op = pcclSum;
    return c;
}

SharedStateSync describe(uint64_t revision, uint8_t fill) {
    std::vector<Digest> chunks(4);
    for (auto &c : chunks) c.fill(fill);
    EntryDesc e;
    e.name = "weights";
    e.dtype = pcclFloat;
    e.count = 4 * kStateChunkBytes / 4;
    e.chunks = chunks;
    e.digest = shared_state::combineChunks(chunks);
    SharedStateSync s;
    s.revision = revision;
    s.synced_before = true;
    s.entries = {e};
    return s;
}

// A restarted master rebuilt from all N peers (issue 15, items 2 and 6): a fresh Membership (a
// new master, same options) hears a Rejoin from every peer of `before`, each with what a real
// peer reports (its uuid, the master epoch it saw, its topology epoch and ring, the last
// committed revision and sequence); the run must come back whole: every peer accepted and sent
// Rejoined with the same ring in the same order, and the next all-reduce committed on all of
// them with a sequence above the old master's. Target: under 1 s of master CPU at N = 1,000.
void runRebuild(const Sim &before, bool secret, std::vector<Row> &rows) {
    Sim sim(secret);
    const size_t n = before.uuids().size();
    std::vector<Uuid> oldOrder;
    for (auto &m : before.lastRing()) oldOrder.push_back(m.uuid);
    rows.push_back(measure(sim, "rebuild", "rebuild", n, 1, [&] {
        for (auto &[id, uuid] : before.uuids()) {
            Rejoin r;
            r.hello.uuid = uuid;
            r.hello.master_epoch = before.lastMasterEpoch();
            r.topology_epoch = before.lastTopologyEpoch();
            r.ring = before.lastRing();
            r.revision = before.lastRevision();
            r.max_seq = before.lastSeq();
            r.committed = {before.lastSeq()};
            sim.rejoin(id, std::move(r));
        }
        sim.pump();
    }));
    expect(sim.accepted() == n, "all " + std::to_string(n) + " peers rebuilt into the run");
    expect(sim.got().rejoined == n, "every peer told Rejoined");
    std::vector<Uuid> newOrder;
    for (auto &m : sim.lastRing()) newOrder.push_back(m.uuid);
    expect(newOrder == oldOrder, "the rebuilt ring in the order the peers reported");
    expect(sim.lastMasterEpoch() > before.lastMasterEpoch(), "the restarted master adopts a newer epoch");
    const uint64_t tag = 1u << 20;
    rows.push_back(measure(sim, "rebuild", "next collective", n, 1, [&] {
        for (ClientId id : sim.alive()) {
            sim.post(id, initOf(tag));
            sim.post(id, CollectiveAwait{tag});
        }
        sim.pump();
    }));
    expect(sim.got().committed == n, "the all-reduce after the rebuild committed on every peer");
    expect(sim.lastSeq() > before.lastSeq(), "sequence numbers continue past the old master's");
}

std::vector<Row> runSize(size_t n, size_t collectives, size_t losses, bool secret) {
    std::vector<Row> rows;
    Sim sim(secret);
    rows.push_back(measure(sim, "admit", "admission", n, n - 1, [&] {
        sim.connect(1);
        sim.pump();
        for (ClientId id = 2; id <= n; ++id) sim.connect(id);
        sim.pump();
        sim.post(1, VoteUpdateTopology{});
        sim.pump();
    }));
    expect(sim.accepted() == n, "all " + std::to_string(n) + " peers admitted");

    rows.push_back(measure(sim, "allred", "collective", n, collectives, [&] {
        for (uint64_t tag = 0; tag < collectives; ++tag) {
            for (ClientId id : sim.alive()) {
                sim.post(id, initOf(tag));
                sim.post(id, CollectiveAwait{tag});
            }
            sim.pump();
        }
    }));
    expect(sim.got().committed == n * collectives, "every all-reduce committed on every peer");

    rows.push_back(measure(sim, "hb", "heartbeat", n, n, [&] {
        sim.postAll(Heartbeat{});
        sim.pump();
        sim.tick();
    }));
    expect(sim.accepted() == n, "nobody removed by the tick");

    const size_t joiners = std::max<size_t>(1, n / 10);
    rows.push_back(measure(sim, "pending", "vote", n, 1, [&] {
        const auto voters = sim.alive();
        for (ClientId id = n + 1; id <= n + joiners; ++id) sim.connect(id);
        sim.pump();
        for (ClientId id : voters) sim.post(id, VotePeersPending{});
        sim.pump();
    }));
    expect(sim.got().pendingResult == n, "the peers-pending vote answered");
    rows.push_back(measure(sim, "pending", "late admission", n, joiners, [&] {
        for (ClientId id : sim.alive())
            if (id <= n) sim.post(id, VoteUpdateTopology{});
        sim.pump();
    }));
    const size_t total = n + joiners;
    expect(sim.accepted() == total, "the joiners admitted into the measured ring");

    rows.push_back(measure(sim, "sync", "sync round", total, 1, [&] {
        for (ClientId id : sim.alive()) sim.post(id, describe(id == sim.alive().back() ? 0 : 1, id == sim.alive().back() ? 9 : 7));
        sim.pump();
    }));
    expect(sim.got().syncCommitted == total, "the shared-state sync committed on every peer");

    const size_t idleLosses = std::min(losses, total / 2), midLosses = std::min(losses, total / 4);
    rows.push_back(measure(sim, "loss", "idle loss", total, idleLosses, [&] {
        for (size_t i = 0; i < idleLosses; ++i) sim.disconnect(sim.alive()[sim.alive().size() / 2]);
    }));
    const size_t abortedBefore = sim.got().aborted;
    size_t expectedAborts = 0;
    uint64_t tag = 1'000'000;
    rows.push_back(measure(sim, "loss", "loss mid-all-reduce", total - idleLosses, midLosses, [&] {
        sim.holdDones(true);
        for (size_t i = 0; i < midLosses; ++i, ++tag) {
            for (ClientId id : sim.alive()) sim.post(id, initOf(tag));
            sim.pump();
            expectedAborts += sim.alive().size() - 1;
            sim.disconnect(sim.alive()[sim.alive().size() / 3]);
            sim.dropHeld();
        }
        sim.holdDones(false);
    }));
    expect(sim.got().aborted - abortedBefore == expectedAborts, "every loss aborted the all-reduce on the survivors");
    expect(sim.accepted() == total - idleLosses - midLosses, "lost peers removed");
    // Peers that go silent together (a partition; the peers that do not come back to a restarted
    // master) are removed by one tick. Each removal sends every survivor the whole ring again, so
    // one tick builds L x N^2 ring entries: L is capped at 2 x 10^8 / N^2 (7 GB at 10^8 entries).
    const size_t before = sim.accepted();
    const size_t silent = std::min({losses, before / 10, std::max<size_t>(1, 200'000'000 / (before * before))});
    rows.push_back(measure(sim, "loss", "silent, one tick", before, silent, [&] {
        std::set<ClientId> quiet;
        for (size_t i = 0; i < silent; ++i) quiet.insert(sim.alive()[i * sim.alive().size() / silent]);
        // 5 s deadline: everybody else heartbeats every 2.5 s; 221 ticks of 25 ms.
        for (int t = 1; t <= 221; ++t) {
            if (t % 100 == 0)
                for (ClientId id : sim.alive())
                    if (!quiet.count(id)) sim.post(id, Heartbeat{});
            sim.pump();
            sim.tick();
        }
    }));
    expect(sim.accepted() == before - silent, "the silent peers removed by the tick");
    runRebuild(sim, secret, rows);
    return rows;
}

std::vector<size_t> parseList(const char *s) {
    std::vector<size_t> out;
    for (const char *p = s; *p;) {
        char *end = nullptr;
        const unsigned long long v = std::strtoull(p, &end, 10);
        if (end == p || v < 2) fail(std::string("--peers wants a comma list of sizes >= 2, got '") + s + "'");
        out.push_back(static_cast<size_t>(v));
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') fail(std::string("--peers: bad list '") + s + "'");
    }
    return out;
}

size_t parseCount(const char *flag, const char *s) {
    char *end = nullptr;
    const unsigned long long v = std::strtoull(s, &end, 10);
    if (end == s || *end) fail(std::string(flag) + " wants a number, got '" + s + "'");
    return static_cast<size_t>(v);
}

void print(const std::vector<Row> &rows, bool json) {
    if (json) {
        std::printf("[\n");
        for (size_t i = 0; i < rows.size(); ++i) {
            const Row &r = rows[i];
            std::printf("  {\"scenario\": \"%s\", \"per\": \"%s\", \"peers\": %zu, \"count\": %zu, \"cpu_s\": %.6f, "
                        "\"cpu_us_per\": %.3f, \"ring_entries\": %llu}%s\n",
                        r.scenario.c_str(), r.per.c_str(), r.peers, r.count, r.cpuS,
                        r.count ? r.cpuS * 1e6 / static_cast<double>(r.count) : 0.0,
                        static_cast<unsigned long long>(r.ringEntries), i + 1 < rows.size() ? "," : "");
        }
        std::printf("]\n");
        return;
    }
    std::printf("%-8s %-20s %7s %6s %12s %14s %14s %14s\n", "scenario", "per", "peers", "count", "cpu total s",
                "cpu per (us)", "per / peer(us)", "ring entries");
    for (const Row &r : rows) {
        const double per = r.count ? r.cpuS * 1e6 / static_cast<double>(r.count) : 0.0;
        std::printf("%-8s %-20s %7zu %6zu %12.4f %14.1f %14.3f %14llu\n", r.scenario.c_str(), r.per.c_str(), r.peers,
                    r.count, r.cpuS, per, per / static_cast<double>(r.peers),
                    static_cast<unsigned long long>(r.ringEntries));
    }
}

} // namespace

int main(int argc, char **argv) {
    std::vector<size_t> sizes{1000, 10000};
    size_t collectives = 10, losses = 10;
    bool json = false, secret = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> const char * {
            if (i + 1 >= argc) fail(a + " needs a value");
            return argv[++i];
        };
        if (a == "--peers") sizes = parseList(value());
        else if (a == "--collectives") collectives = parseCount("--collectives", value());
        else if (a == "--losses") losses = parseCount("--losses", value());
        else if (a == "--json") json = true;
        else if (a == "--secret") secret = true;
        else if (a == "--help" || a == "-h") {
            std::printf("usage: pccl-master-sim [--peers 1000,10000] [--collectives 10] [--losses 10] [--secret] [--json]\n");
            return 0;
        } else fail("unknown argument '" + a + "' (see --help)");
    }
    std::vector<Row> rows;
    for (size_t n : sizes) {
        auto r = runSize(n, collectives, losses, secret);
        rows.insert(rows.end(), r.begin(), r.end());
    }
    print(rows, json);
    return 0;
}
