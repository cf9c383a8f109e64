// pccl-state-bench: shared-state figures (docs/shared_state.md, bench/README.md).
//
// In one process on loopback (the default):
//   hashing   XXH3-128 chunk hashing of the state, 1 thread and all threads (GB/s, GB/s/core)
//   memcpy    one memcpy of the state (the yardstick of the identical-state target)
//   identical N peers (threads) syncing identical state: time per sync after the first, all
//             peers at once (they share this machine's cores) and the last peer to arrive alone
//             (the others already wait in the sync: what one peer pays when it has the cores)
//   joiner    a never-synced peer receiving the whole state from 1..N sources
//
// Usage: pccl-state-bench [--mib 256] [--peers 2,3] [--sources 1,2,3] [--reps 5]
// Each figure is the median over --reps runs. Ratios within one run are what to compare (the
// machine is shared and noisy); the identical-sync ratio to memcpy is the headline.
//
// Worker mode (one peer per process, driven by bench/state_netns.py across network namespaces):
//   pccl-state-bench --worker source|joiner --master IP:PORT --world N [--mib 256] [--reps 3]
// Every worker connects, admits peers until the run has N, then per rep: a 1-float all-reduce as
// a barrier, then one sync (sources SEND_ONLY with the pattern, the joiner RECEIVE_ONLY with its
// buffer zeroed). The joiner prints "sync REP SECONDS RX_BYTES ok|BAD" per rep; exit 0 = all ok.
#include <pccl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "shared_state/hashing.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

std::vector<int> parseList(const char *s) {
    std::vector<int> out;
    for (const char *p = s; *p;) {
        out.push_back(std::atoi(p));
        while (*p && *p != ',') ++p;
        if (*p == ',') ++p;
    }
    return out;
}

void check(pcclResult_t r, const char *what) {
    if (r != pcclSuccess) {
        std::fprintf(stderr, "%s failed: %s (%s)\n", what, pcclGetErrorString(r), pcclGetLastErrorMessage(nullptr));
        std::exit(1);
    }
}

ccoip_socket_address_t loopback(uint16_t port) {
    ccoip_socket_address_t a{};
    a.inet.protocol = inetIPv4;
    a.inet.ipv4.data[0] = 127;
    a.inet.ipv4.data[3] = 1;
    a.port = port;
    return a;
}

// A master and `n` connected peers (communicators), all admitted.
struct Run {
    pcclMasterInstance_t *master = nullptr;
    std::vector<pcclComm_t *> comms;
    explicit Run(int n) {
        check(pcclCreateMaster(loopback(0), &master), "pcclCreateMaster");
        check(pcclRunMaster(master), "pcclRunMaster");
        uint16_t port = 0;
        check(pcclGetMasterPort(master, &port), "pcclGetMasterPort");
        for (int i = 0; i < n; ++i) {
            pcclCommCreateParams_t p{};
            p.master_address = loopback(port);
            pcclComm_t *c = nullptr;
            check(pcclCreateCommunicator(&p, &c), "pcclCreateCommunicator");
            std::thread t([&] { check(pcclConnect(c), "pcclConnect"); });
            // The earlier peers vote the newcomer in: poll until it is pending, then one round.
            for (bool admitted = comms.empty(); !admitted;) {
                std::vector<std::thread> voters;
                std::atomic<bool> pending{false};
                for (auto *old : comms) voters.emplace_back([old, &pending] {
                    bool p = false;
                    check(pcclArePeersPending(old, &p), "pcclArePeersPending");
                    if (p) {
                        pending = true;
                        check(pcclUpdateTopology(old), "pcclUpdateTopology");
                    }
                });
                for (auto &v : voters) v.join();
                admitted = pending;
                if (!admitted) std::this_thread::sleep_for(std::chrono::milliseconds(2));
            }
            t.join();
            comms.push_back(c);
        }
    }
    ~Run() {
        for (auto *c : comms) pcclDestroyCommunicator(c);
        pcclInterruptMaster(master);
        pcclMasterAwaitTermination(master);
        pcclDestroyMaster(master);
    }
    // One sync on every peer at once; returns the slowest peer's time and the total rx bytes.
    // With `lastAfter` > 0 the last peer starts that much later (the others are then waiting in
    // the sync, done hashing) and only its time is returned.
    double syncAll(std::vector<std::vector<uint8_t>> &states, uint64_t revision, uint64_t *rx,
                   std::chrono::milliseconds lastAfter = std::chrono::milliseconds(0)) {
        std::vector<double> took(comms.size());
        std::vector<uint64_t> got(comms.size());
        std::vector<std::thread> ts;
        for (size_t i = 0; i < comms.size(); ++i) {
            if (i + 1 == comms.size() && lastAfter.count() > 0) std::this_thread::sleep_for(lastAfter);
            ts.emplace_back([&, i] {
                pcclTensorInfo_t info{};
                info.name = "state";
                info.data = states[i].data();
                info.count = states[i].size();
                info.datatype = pcclUint8;
                info.device_type = pcclDeviceCpu;
                pcclSharedState_t s{revision, 1, &info};
                pcclSharedStateSyncInfo_t si{};
                const auto t0 = Clock::now();
                check(pcclSynchronizeSharedState(comms[i], &s, PCCL_SHARED_STATE_SYNC_STRATEGY_ENFORCE_POPULAR, &si),
                      "pcclSynchronizeSharedState");
                took[i] = seconds(t0, Clock::now());
                got[i] = si.rx_bytes;
            });
        }
        for (auto &t : ts) t.join();
        *rx = 0;
        for (auto g : got) *rx += g;
        return lastAfter.count() > 0 ? took.back() : *std::max_element(took.begin(), took.end());
    }
};

void fillPattern(std::vector<uint8_t> &v) {
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<uint8_t>(i * 2654435761u >> 13);
}

int attribute(pcclComm_t *c, pcclAttribute_t a) {
    int v = 0;
    check(pcclGetAttribute(c, a, &v), "pcclGetAttribute");
    return v;
}

// One peer of a multi-process run (bench/state_netns.py). Prints one line per event on stdout.
int runWorker(const std::string &role, const std::string &master, int world, size_t mib, int reps) {
    const bool joiner = role == "joiner";
    ccoip_socket_address_t addr{};
    if ((!joiner && role != "source") || pcclParseSocketAddress(master.c_str(), &addr) != pcclSuccess || world < 2) {
        std::fprintf(stderr, "worker: need --worker source|joiner --master IP:PORT --world N (N >= 2)%s%s\n",
                     *pcclGetLastErrorMessage(nullptr) ? ": " : "", pcclGetLastErrorMessage(nullptr));
        return 2;
    }
    check(pcclInit(), "pcclInit");
    pcclCommCreateParams_t p{};
    p.master_address = addr;
    pcclComm_t *c = nullptr;
    check(pcclCreateCommunicator(&p, &c), "pcclCreateCommunicator");
    check(pcclConnect(c), "pcclConnect");
    // Every accepted peer votes in every round, so all leave the loop after the same round.
    const auto deadline = Clock::now() + std::chrono::seconds(120);
    while (attribute(c, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE) < world) {
        if (Clock::now() > deadline) {
            std::fprintf(stderr, "worker: world still %d of %d after 120 s\n", attribute(c, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE), world);
            return 1;
        }
        bool pending = false;
        check(pcclArePeersPending(c, &pending), "pcclArePeersPending");
        if (pending) check(pcclUpdateTopology(c), "pcclUpdateTopology");
        else std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    std::printf("ready %d\n", attribute(c, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE));
    std::fflush(stdout);
    std::vector<uint8_t> state(mib << 20), expect;
    fillPattern(state);
    if (joiner) expect = state;
    bool allOk = true;
    for (int r = 0; r < reps; ++r) {
        if (joiner) std::memset(state.data(), 0, state.size());  // holds nothing: every chunk is dirty
        float one = 1, sum = 0;
        pcclReduceDescriptor_t d{};
        d.count = 1;
        d.op = pcclSum;
        d.tag = static_cast<uint64_t>(r);
        d.src_descriptor.datatype = pcclFloat;
        check(pcclAllReduce(&one, &sum, &d, c, nullptr), "pcclAllReduce (barrier)");
        pcclTensorInfo_t info{};
        info.name = "state";
        info.data = state.data();
        info.count = state.size();
        info.datatype = pcclUint8;
        info.device_type = pcclDeviceCpu;
        pcclSharedState_t s{static_cast<uint64_t>(r + 1), 1, &info};
        pcclSharedStateSyncInfo_t si{};
        const auto t0 = Clock::now();
        check(pcclSynchronizeSharedState(c, &s, joiner ? PCCL_SHARED_STATE_SYNC_STRATEGY_RECEIVE_ONLY
                                                       : PCCL_SHARED_STATE_SYNC_STRATEGY_SEND_ONLY, &si),
              "pcclSynchronizeSharedState");
        const double took = seconds(t0, Clock::now());
        if (joiner) {
            const bool ok = state == expect;
            allOk = allOk && ok;
            std::printf("sync %d %.4f %llu %s\n", r, took, static_cast<unsigned long long>(si.rx_bytes), ok ? "ok" : "BAD");
        } else {
            std::printf("served %d %.4f %llu\n", r, took, static_cast<unsigned long long>(si.tx_bytes));
        }
        std::fflush(stdout);
    }
    // A last barrier: no peer leaves while another may still be draining the final sync.
    float one = 1, sum = 0;
    pcclReduceDescriptor_t d{};
    d.count = 1;
    d.op = pcclSum;
    d.tag = static_cast<uint64_t>(reps);
    d.src_descriptor.datatype = pcclFloat;
    check(pcclAllReduce(&one, &sum, &d, c, nullptr), "pcclAllReduce (final barrier)");
    pcclDestroyCommunicator(c);
    return allOk ? 0 : 1;
}

} // namespace

int main(int argc, char **argv) {
    size_t mib = 256;
    int reps = 5;
    std::vector<int> peers{2, 3}, sources{1, 2, 3};
    std::string role, master;
    int world = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string f = argv[i];
        if (f == "--mib") mib = std::strtoull(argv[i + 1], nullptr, 10);
        else if (f == "--worker") role = argv[i + 1];
        else if (f == "--master") master = argv[i + 1];
        else if (f == "--world") world = std::atoi(argv[i + 1]);
        else if (f == "--peers") peers = parseList(argv[i + 1]);
        else if (f == "--sources") sources = parseList(argv[i + 1]);
        else if (f == "--reps") reps = std::max(1, std::atoi(argv[i + 1]));
        else {
            std::fprintf(stderr, "usage: pccl-state-bench [--mib N] [--peers 2,3] [--sources 1,2,3] [--reps 5]\n"
                                 "       pccl-state-bench --worker source|joiner --master IP:PORT --world N [--mib N] [--reps N]\n");
            return 2;
        }
    }
    if (!role.empty()) return runWorker(role, master, world, mib, reps);
    check(pcclInit(), "pcclInit");
    const size_t bytes = mib << 20;
    std::vector<uint8_t> a(bytes), b(bytes);
    fillPattern(a);
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());

    std::vector<double> copy, hash1, hashN;
    for (int r = 0; r < reps; ++r) {
        auto t0 = Clock::now();
        std::memcpy(b.data(), a.data(), bytes);
        auto t1 = Clock::now();
        pccl::shared_state::hashEntries({{a.data(), bytes}}, 1);
        auto t2 = Clock::now();
        pccl::shared_state::hashEntries({{a.data(), bytes}}, cores);
        auto t3 = Clock::now();
        copy.push_back(seconds(t0, t1));
        hash1.push_back(seconds(t1, t2));
        hashN.push_back(seconds(t2, t3));
    }
    const double memcpyS = median(copy);
    std::printf("state %zu MiB, %u cores, median of %d\n", mib, cores, reps);
    std::printf("memcpy                 %8.2f ms  %6.2f GB/s\n", memcpyS * 1e3, bytes / memcpyS / 1e9);
    std::printf("hash, 1 thread         %8.2f ms  %6.2f GB/s/core\n", median(hash1) * 1e3, bytes / median(hash1) / 1e9);
    std::printf("hash, %u threads        %8.2f ms  %6.2f GB/s (%.2f GB/s/core)\n", cores, median(hashN) * 1e3,
                bytes / median(hashN) / 1e9, bytes / median(hashN) / 1e9 / cores);

    for (int n : peers) {
        Run run(n);
        std::vector<std::vector<uint8_t>> states(n, a);
        uint64_t rx = 0;
        run.syncAll(states, 1, &rx);  // first sync: establishes the revision
        std::vector<double> t, alone, tRatio, aloneRatio;
        uint64_t moved = 0;
        // Long enough for the first n-1 peers to hash even on a busy machine; too short would
        // only make the "alone" figure pessimistic (the last peer would share the cores).
        const auto head = std::chrono::milliseconds(50 + static_cast<int>(4e3 * median(hashN) * (n - 1)));
        // Each sync is also paired with a memcpy timed just before it: on a shared machine the
        // load changes within seconds, and the paired ratio sees the same load on both sides.
        auto copyNow = [&] {
            const auto c0 = Clock::now();
            std::memcpy(b.data(), a.data(), bytes);
            return seconds(c0, Clock::now());
        };
        for (int r = 0; r < reps; ++r) {
            double c = copyNow();
            t.push_back(run.syncAll(states, 2 + 2 * r, &rx));
            tRatio.push_back(t.back() / c);
            moved += rx;
            c = copyNow();
            alone.push_back(run.syncAll(states, 3 + 2 * r, &rx, head));
            aloneRatio.push_back(alone.back() / c);
            moved += rx;
        }
        std::printf("identical sync, %d peers %8.2f ms  = %.2fx memcpy (paired: %.2fx)  all at once (bytes moved: %llu)\n",
                    n, median(t) * 1e3, median(t) / memcpyS, median(tRatio), static_cast<unsigned long long>(moved));
        // All at once, the n peers read n copies of the state through this machine's one memory
        // bus: no sync can beat n x the all-cores hash time (a read at memory bandwidth).
        std::printf("  floor all at once           %6.2f ms  = %.2fx memcpy  (%d states read at the all-cores hash rate)\n",
                    n * median(hashN) * 1e3, n * median(hashN) / memcpyS, n);
        std::printf("  last peer, others waiting %6.2f ms  = %.2fx memcpy (paired: %.2fx)  one peer's cost with the cores to itself\n",
                    median(alone) * 1e3, median(alone) / memcpyS, median(aloneRatio));
    }

    double oneSource = 0;
    for (int k : sources) {
        std::vector<double> t;
        for (int r = 0; r < reps; ++r) {
            Run run(k + 1);
            std::vector<std::vector<uint8_t>> states(k + 1, a);
            std::fill(states[k].begin(), states[k].end(), 0);  // the joiner holds nothing yet
            uint64_t rx = 0;
            t.push_back(run.syncAll(states, 1, &rx));
            if (states[k] != a) {
                std::fprintf(stderr, "joiner's state differs after the sync\n");
                return 1;
            }
        }
        const double m = median(t);
        if (k == sources.front()) oneSource = m;
        std::printf("joiner from %d source%s  %8.2f ms  %6.2f GB/s  (%.2fx the first row)\n", k, k == 1 ? " " : "s",
                    m * 1e3, bytes / m / 1e9, oneSource / m);
    }
    return 0;
}
