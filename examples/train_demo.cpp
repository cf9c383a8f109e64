// pccl-train-demo: one peer of a small data-parallel "training" run over pccl.
//
// Every peer holds the same model (N float32 parameters, initialised from a fixed seed). Each
// step it computes a fake gradient from the step number and its own seed, averages it with
// the other peers (pcclAllReduce, pcclAvg), applies SGD and prints one line with the world
// size, the all-reduce throughput and a hash of its parameters. Peers may die and join at
// any time:
//   - a failed all-reduce (pcclRankConnectionLost) is retried on the rewired ring;
//   - every step the peers vote whether peers are pending and admit them (pcclUpdateTopology);
//   - every step the parameters are the shared state (revision = step), synchronised with
//     pcclSynchronizeSharedState: a no-op moving 0 bytes while peers agree, the full model
//     for a peer that just joined (which also learns the current step from the revision).
// Since the all-reduce result is byte-identical everywhere, every live peer prints the same
// hash for the same step. examples/demo.sh runs 4 peers, kills one and starts a new one.
//
// Usage: pccl-train-demo MASTER_IP:PORT [--steps N] [--params N] [--seed S] [--name NAME]
//                        [--lr F] [--wait-for N] [--wait-timeout SECONDS] [--no-shared-state]
// (MASTER_IP:PORT as pcclParseSocketAddress reads it: 10.0.0.1:48148, [::1]:48148; no port
// means 48148.)
// (--no-shared-state skips pcclSynchronizeSharedState: a peer that joins late then starts
// from step 0 with its own copy of the model, so use it only for runs without joins.)
// Exit code: 0 after the last step (or SIGINT/SIGTERM at a step boundary), 1 on a pccl
// error it cannot recover from, 2 on bad usage.

#include <pccl.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

std::atomic<bool> g_stop{false};  // set by SIGINT/SIGTERM; read at step boundaries
static_assert(std::atomic<bool>::is_always_lock_free, "the signal handler needs a lock-free flag");

extern "C" void onStopSignal(int) { g_stop.store(true); }

struct Options {
    std::string master;
    uint64_t steps = 40;
    size_t params = size_t{4} << 20;  // 4M float32 = 16.8 MB
    uint64_t seed = 1;
    std::string name = "peer";
    float lr = 0.2f;
    int wait_for = 1;          // before the first step, admit peers until the world has this many
    double wait_timeout = 30;  // ... or this many seconds passed
    bool shared_state = true;  // --no-shared-state: skip pcclSynchronizeSharedState (no joins then)
};

std::string g_name = "peer";

void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void say(const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    std::printf("[%s] %s\n", g_name.c_str(), buf);
    std::fflush(stdout);
}

[[noreturn]] void fail(const pcclComm_t *comm, const char *what, pcclResult_t r) {
    say("FATAL: %s failed: %s (%s)", what, pcclGetErrorString(r), pcclGetLastErrorMessage(comm));
    std::exit(1);
}

[[noreturn]] void usage(const char *msg) {
    std::fprintf(stderr,
                 "pccl-train-demo: %s\n"
                 "usage: pccl-train-demo MASTER_IP:PORT [--steps N] [--params N] [--seed S] [--name NAME]\n"
                 "                       [--lr F] [--wait-for N] [--wait-timeout SECONDS] [--no-shared-state]\n",
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
        if (a == "--steps") o.steps = std::strtoull(value().c_str(), nullptr, 10);
        else if (a == "--params") o.params = std::strtoull(value().c_str(), nullptr, 10);
        else if (a == "--seed") o.seed = std::strtoull(value().c_str(), nullptr, 10);
        else if (a == "--name") o.name = value();
        else if (a == "--lr") o.lr = std::strtof(value().c_str(), nullptr);
        else if (a == "--wait-for") o.wait_for = std::atoi(value().c_str());
        else if (a == "--wait-timeout") o.wait_timeout = std::strtod(value().c_str(), nullptr);
        else if (a == "--no-shared-state") o.shared_state = false;
        else if (a == "-h" || a == "--help") usage("help");
        else if (!a.empty() && a[0] == '-') usage(("unknown option " + a).c_str());
        else if (o.master.empty()) o.master = a;
        else usage(("unexpected argument " + a).c_str());
    }
    if (o.master.empty()) usage("the master address is required");
    if (o.params == 0) usage("--params must be positive");
    return o;
}

// Deterministic pseudo-random numbers: splitmix64 of (seed, stream, index) -> [-1, 1).
inline uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}
inline float uniform(uint64_t key, uint64_t i) {
    return static_cast<float>(static_cast<int64_t>(splitmix64(key + i) >> 40)) * (1.0f / 8388608.0f) - 1.0f;
}
uint64_t streamKey(uint64_t a, uint64_t b) { return splitmix64(splitmix64(a) ^ (b * 0xD6E8FEB86659FD93ull)); }

// 64-bit FNV-1a over the parameters taken as little-endian 64-bit words (plus a tail).
uint64_t fnv1a64(const void *data, size_t bytes) {
    const auto *p = static_cast<const unsigned char *>(data);
    uint64_t h = 0xcbf29ce484222325ull;
    size_t i = 0;
    for (; i + 8 <= bytes; i += 8) {
        uint64_t w;
        std::memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
    }
    for (; i < bytes; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

int worldSize(const pcclComm_t *comm) {
    int n = 0;
    const pcclResult_t r = pcclGetAttribute(comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE, &n);
    if (r != pcclSuccess) fail(comm, "pcclGetAttribute(GLOBAL_WORLD_SIZE)", r);
    return n;
}

// One membership round: every accepted peer votes; if peers are pending, all admit them.
// Returns true if the topology changed.
bool admitPendingPeers(pcclComm_t *comm) {
    bool pending = false;
    pcclResult_t r = pcclSuccess;
    for (int attempt = 0; attempt < 5; ++attempt) {
        r = pcclArePeersPending(comm, &pending);
        if (r != pcclRankConnectionLost && r != pcclTimeout) break;
        say("pcclArePeersPending: %s, voting again", pcclGetErrorString(r));
    }
    if (r != pcclSuccess) fail(comm, "pcclArePeersPending", r);
    if (!pending) return false;
    for (int attempt = 0; attempt < 5; ++attempt) {
        r = pcclUpdateTopology(comm);
        if (r == pcclSuccess) return true;
        if (r != pcclUpdateTopologyFailed && r != pcclRankConnectionLost && r != pcclTimeout)
            fail(comm, "pcclUpdateTopology", r);
        say("pcclUpdateTopology: %s (%s), trying again", pcclGetErrorString(r), pcclGetLastErrorMessage(comm));
    }
    fail(comm, "pcclUpdateTopology", r);
}

// Admit peers until the run has at least `n` peers, or `timeout_s` passed.
void waitForWorld(pcclComm_t *comm, int n, double timeout_s) {
    const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
    int last = -1;
    while (!g_stop.load()) {
        const int world = worldSize(comm);
        if (world != last) say("world size %d, waiting for %d", world, n);
        last = world;
        if (world >= n) return;
        if (Clock::now() > deadline) {
            say("gave up waiting for %d peers after %.0f s; going on with %d", n, timeout_s, world);
            return;
        }
        if (!admitPendingPeers(comm)) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
}

}  // namespace

int main(int argc, char **argv) {
    const Options opt = parseOptions(argc, argv);
    g_name = opt.name;
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    std::signal(SIGINT, onStopSignal);
    std::signal(SIGTERM, onStopSignal);

    pcclCommCreateParams_t params{};
    if (pcclParseSocketAddress(opt.master.c_str(), &params.master_address) != pcclSuccess)
        usage(pcclGetLastErrorMessage(nullptr));
    params.peer_group = 0;
    params.p2p_connection_pool_size = 0;  // library default

    pcclResult_t r = pcclInit();
    if (r != pcclSuccess) fail(nullptr, "pcclInit", r);
    int version = 0;
    pcclGetVersion(&version);

    // The model: parameters from a fixed seed (the same on every peer), and the target the
    // fake loss pulls them to.
    const size_t n = opt.params;
    std::vector<float> weights(n), target(n), grad(n), avg(n);
    {
        const uint64_t kw = streamKey(42, 1), kt = streamKey(42, 2);
        for (size_t i = 0; i < n; ++i) {
            weights[i] = uniform(kw, i);
            target[i] = uniform(kt, i);
        }
    }
    say("pccl %d.%d.%d, master %s, %zu parameters (%.1f MB), seed %llu, %llu steps", version / 10000,
        version / 100 % 100, version % 100, opt.master.c_str(), n, n * 4 / 1e6,
        static_cast<unsigned long long>(opt.seed), static_cast<unsigned long long>(opt.steps));

    pcclComm_t *comm = nullptr;
    r = pcclCreateCommunicator(&params, &comm);
    if (r != pcclSuccess) fail(nullptr, "pcclCreateCommunicator", r);
    const auto t_connect = Clock::now();
    for (int attempt = 1;; ++attempt) {
        r = pcclConnect(comm);
        if (r == pcclSuccess) break;
        // Master not up yet, or the ring links could not be set up: the communicator stays
        // unconnected and may try again.
        const bool retryable = r == pcclMasterConnectionFailed || r == pcclRankConnectionFailed || r == pcclTimeout;
        if (!retryable || attempt == 5) fail(comm, "pcclConnect", r);
        say("pcclConnect: %s (%s), retrying", pcclGetErrorString(r), pcclGetLastErrorMessage(comm));
        std::this_thread::sleep_for(std::chrono::milliseconds(200 * attempt));
    }
    say("connected after %.2f s, world size %d",
        std::chrono::duration<double>(Clock::now() - t_connect).count(), worldSize(comm));
    if (opt.wait_for > 1) waitForWorld(comm, opt.wait_for, opt.wait_timeout);

    pcclTensorInfo_t info{};
    info.name = "weights";
    info.data = weights.data();
    info.count = n;
    info.datatype = pcclFloat;
    info.device_type = pcclDeviceCpu;
    info.allow_content_inequality = false;
    pcclSharedState_t state{};
    state.count = 1;
    state.infos = &info;

    // A joining peer does not know the step yet: the shared state's revision tells it.
    uint64_t step = 0;
    bool first_sync = true;
    uint64_t last_hash = 0;
    uint64_t steps_done = 0;
    while (!g_stop.load()) {
        // 1. Shared state: no-op while everyone agrees; brings a new peer the model and step.
        pcclSharedStateSyncInfo_t sync{};
        for (int attempt = 0; opt.shared_state; ++attempt) {
            state.revision = step;
            r = pcclSynchronizeSharedState(comm, &state, PCCL_SHARED_STATE_SYNC_STRATEGY_ENFORCE_POPULAR, &sync);
            if (r == pcclSuccess) break;
            if (r != pcclRankConnectionLost || attempt == 5) fail(comm, "pcclSynchronizeSharedState", r);
            say("step %llu: shared-state sync lost a peer (%s), retrying", static_cast<unsigned long long>(step),
                pcclGetLastErrorMessage(comm));
        }
        if (first_sync && state.revision != step)
            say("joined the run at step %llu: received %.1f MB of shared state",
                static_cast<unsigned long long>(state.revision), sync.rx_bytes / 1e6);
        first_sync = false;
        if (opt.shared_state) step = state.revision;
        if (step >= opt.steps) break;

        // 2. Fake gradient: pulls the weights to the target, plus per-peer noise.
        const uint64_t kn = streamKey(opt.seed, 1000 + step);
        for (size_t i = 0; i < n; ++i) grad[i] = (weights[i] - target[i]) + 0.5f * uniform(kn, i);

        // 3. Average it over the peer group; a lost peer aborts the call on every survivor,
        //    the retry runs on the rewired ring.
        pcclReduceDescriptor_t desc{};
        desc.count = n;
        desc.op = pcclAvg;
        desc.tag = 0;
        desc.src_descriptor.datatype = pcclFloat;
        desc.src_descriptor.distribution_hint = pcclDistributionNone;
        desc.quantization_options.quantized_datatype = pcclFloat;
        desc.quantization_options.algorithm = pcclQuantNone;
        pcclReduceInfo_t rinfo{};
        double seconds = 0;
        int retries = 0;
        for (;;) {
            const auto t0 = Clock::now();
            r = pcclAllReduce(grad.data(), avg.data(), &desc, comm, &rinfo);
            seconds = std::chrono::duration<double>(Clock::now() - t0).count();
            if (r == pcclSuccess) break;
            // The library promises that the first retry runs on the rewired ring; a short
            // backoff keeps the demo going (and visibly retrying) if that takes longer.
            if (++retries > 20) fail(comm, "pcclAllReduce (20 retries)", r);
            if (retries > 1) std::this_thread::sleep_for(std::chrono::milliseconds(50 * retries));
            if (r == pcclRankConnectionLost) {
                say("step %llu: all-reduce lost a peer (%s); retrying with world size %d",
                    static_cast<unsigned long long>(step), pcclGetLastErrorMessage(comm), worldSize(comm));
            } else if (r == pcclTooFewPeers) {
                say("step %llu: too few peers, waiting for peers to join", static_cast<unsigned long long>(step));
                waitForWorld(comm, 2, 1e9);
            } else {
                fail(comm, "pcclAllReduce", r);
            }
        }

        // 4. SGD, loss and the parameter hash every peer must agree on.
        double loss = 0;
        for (size_t i = 0; i < n; ++i) {
            weights[i] -= opt.lr * avg[i];
            const double d = static_cast<double>(weights[i]) - target[i];
            loss += d * d;
        }
        loss /= 2.0 * static_cast<double>(n);
        last_hash = fnv1a64(weights.data(), n * sizeof(float));
        const double mb = n * sizeof(float) / 1e6;
        say("step %3llu | world %d | all-reduce %.1f MB %6.1f ms %6.0f MB/s%s | sync rx %llu B | loss %.6f | hash %016llx",
            static_cast<unsigned long long>(step), worldSize(comm), mb, seconds * 1e3, mb / seconds,
            retries ? " (retried)" : "", static_cast<unsigned long long>(sync.rx_bytes), loss,
            static_cast<unsigned long long>(last_hash));
        ++steps_done;

        // 5. Membership: admit peers that are waiting (every peer votes every step).
        if (admitPendingPeers(comm)) say("admitted pending peers: world size now %d", worldSize(comm));
        ++step;
    }

    say("done: %llu steps here, last step %llu, final hash %016llx%s", static_cast<unsigned long long>(steps_done),
        static_cast<unsigned long long>(step), static_cast<unsigned long long>(last_hash),
        g_stop.load() ? " (stopped by signal)" : "");
    r = pcclDestroyCommunicator(comm);
    if (r != pcclSuccess) fail(nullptr, "pcclDestroyCommunicator", r);
    return 0;
}
