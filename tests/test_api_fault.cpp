// Public API: a peer process that dies (SIGKILL) or hangs (SIGSTOP) in the middle of a big all-reduce.
// Survivors are threads of this process; the victim is a pccl_test_peer child process.
#include "support/cluster.h"
#include "support/dtypes.h"
#include "support/fault.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <vector>

using namespace pccl_test;

namespace {

constexpr size_t kCount = 16u * 1024u * 1024u; // 64 MiB of f32
constexpr int kChildValue = 100;                // the child's element j is 100 + j % 3


std::vector<std::string> childArgs(const char *mode, uint16_t port, std::vector<std::string> extra) {
    std::vector<std::string> a{PCCL_TEST_PEER_BIN, mode, "--master", "127.0.0.1:" + std::to_string(port), "--world", "3",
                               "--value", std::to_string(kChildValue)};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
}

// Wait until the victim reports that operation k is under way (the library has written reduced data
// into its buffer, so the operation has started on every peer and has not finished), then deliver
// sig. Throws PeerFailure if that never happens.
void signalMidOperation(ChildProcess &child, PeerThreads &peers, int k, int sig, std::atomic<int64_t> &signal_ns) {
    const auto deadline = Clock::now() + std::chrono::seconds(25);
    for (;;) {
        PT_CHECK_MSG(!peers.failed(), "a survivor failed before the victim was signalled");
        PT_CHECK_MSG(child.transcript().find("FAIL") == std::string::npos, "the victim failed: " << child.transcript());
        PT_CHECK_MSG(Clock::now() < deadline,
                     "the victim never reported operation " << k << " in flight; its stdout:\n" << child.transcript());
        if (child.waitForLine("INFLIGHT " + std::to_string(k), 0.25)) break;
    }
    signal_ns = nowNs();
    child.signal(sig);
}

// The survivor side of a victim signalled during operation k: operations 0..k-1 succeed on three
// peers; operation k fails with one of `allowed` within max_s of the signal and leaves the in-place
// buffer as it was; then a direct retry, a topology update and one more all-reduce all succeed on
// the two survivors with the right values.
void survive(PeerCtx &ctx, size_t count, int k, const std::atomic<int64_t> &signal_ns,
             std::initializer_list<pcclResult_t> allowed, double max_s) {
    std::vector<float> orig(count), buf(count);
    fillPattern(orig, survivorValue(ctx.rank));
    const pcclReduceDescriptor_t d = makeDescriptor(count, pcclFloat, pcclSum, 0);
    const int all3 = survivorValue(0) + survivorValue(1) + kChildValue;
    const int both = survivorValue(0) + survivorValue(1);
    for (int i = 0; i <= k; ++i) {
        std::memcpy(buf.data(), orig.data(), count * sizeof(float));
        pcclReduceInfo_t info{};
        const pcclResult_t r = pcclAllReduce(buf.data(), buf.data(), &d, ctx.comm, &info);
        const int64_t returned_ns = nowNs();
        if (i < k) {
            PT_CHECK_MSG(r == pcclSuccess, "operation " << i << " (before the signal): " << describe(r, ctx.comm));
            PT_CHECK_EQ(info.local_world_size, 3u);
            const std::string diff = checkPattern(buf.data(), count, all3, 3);
            PT_CHECK_MSG(diff.empty(), "operation " << i << ": " << diff);
            continue;
        }
        PT_CHECK_MSG(std::find(allowed.begin(), allowed.end(), r) != allowed.end(),
                     "operation " << k << ", during which the victim was signalled, returned " << describe(r, ctx.comm)
                                  << (r == pcclSuccess ? " (world size " + std::to_string(info.local_world_size) + ")" : ""));
        PT_CHECK(signal_ns.load() != 0);
        const double after = static_cast<double>(returned_ns - signal_ns.load()) / 1e9;
        PT_CHECK_MSG(after < max_s, "the survivor's all-reduce returned " << after << " s after the signal; expected < "
                                                                         << max_s << " s");
        PT_CHECK_MSG(std::memcmp(buf.data(), orig.data(), count * sizeof(float)) == 0,
                     "the in-place buffer was not restored to the original input after " << resultName(r) << ": "
                                                                                         << checkPattern(buf.data(), count, survivorValue(ctx.rank), 1));
        const std::string gaps = allReduceMessageGaps(pcclGetLastErrorMessage(ctx.comm), 0);
        PT_CHECK_MSG(gaps.empty(), gaps);
    }

    // Retry directly: the same input, now reduced by the two survivors.
    pcclReduceInfo_t info{};
    const pcclResult_t retry = pcclAllReduce(buf.data(), buf.data(), &d, ctx.comm, &info);
    PT_CHECK_MSG(retry == pcclSuccess, "the direct retry returned " << describe(retry, ctx.comm));
    PT_CHECK_EQ(info.local_world_size, 2u);
    std::string diff = checkPattern(buf.data(), count, both, 2);
    PT_CHECK_MSG(diff.empty(), "direct retry: " << diff);

    // Then a topology update (the lost peer does not vote) and another all-reduce.
    PT_OK(ctx.comm, pcclUpdateTopology(ctx.comm));
    PT_CHECK_EQ(attribute(ctx.comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE), 2);
    PT_CHECK_EQ(attribute(ctx.comm, PCCL_ATTRIBUTE_PEER_GROUP_WORLD_SIZE), 2);
    std::memcpy(buf.data(), orig.data(), count * sizeof(float));
    PT_OK(ctx.comm, pcclAllReduce(buf.data(), buf.data(), &d, ctx.comm, &info));
    PT_CHECK_EQ(info.local_world_size, 2u);
    diff = checkPattern(buf.data(), count, both, 2);
    PT_CHECK_MSG(diff.empty(), "after update topology: " << diff);
}

// Two survivor threads and one victim process; the victim gets `sig` while operation k is in flight.
void runVictimScenario(size_t count, int k, int sig, std::initializer_list<pcclResult_t> allowed, double max_s,
                       double timeout_s) {
    EmbeddedMaster master;
    std::unique_ptr<ChildProcess> child; // the victim, started once the survivors are connecting
    // Past a deadline, or when this thread fails: kill the victim and the master, which releases
    // survivors stuck in a library call.
    auto release = [&] {
        if (child) child->signal(SIGKILL);
        master.destroy();
    };
    std::atomic<int64_t> signal_ns{0};
    ClusterOptions opts;
    opts.groups = {0, 0};
    opts.expected_world = 3;
    opts.timeout_s = timeout_s;
    PeerThreads survivors(master.address(), opts,
                          [&](PeerCtx &ctx) { survive(ctx, count, k, signal_ns, allowed, max_s); });
    survivors.onAbort(release);
    child = std::make_unique<ChildProcess>(childArgs(
        "allreduce-loop", master.port(),
        {"--count", std::to_string(count), "--iters", "1000", "--watch-iter", std::to_string(k)}));
    signalMidOperation(*child, survivors, k, sig, signal_ns);
    if (sig == SIGKILL) {
        const auto status = child->wait(10);
        PT_CHECK_MSG(status.has_value() && WIFSIGNALED(*status), "the killed victim did not die");
    }
    survivors.join(release);
}

} // namespace

TEST_CASE("all-reduce: a killed peer makes every survivor fail fast, restores in-place input, and the next call runs "
          "without it",
          "[api][fault]") {
    // 64 MiB in place; iterations 0 and 1 complete with all three peers, the victim dies in iteration 2.
    isolated(50, [&] { runVictimScenario(kCount, 2, SIGKILL, {pcclRankConnectionLost}, 5.0, 30); });
}

TEST_CASE("all-reduce multiple with retry: a peer killed mid-batch is retried away and the batch succeeds on 2 peers",
          "[api][fault][retry]") {
    isolated(50, [&] {
        EmbeddedMaster master;
        std::unique_ptr<ChildProcess> child; // the victim, started once the survivors are connecting
        // Past a deadline, or when this thread fails: kill the victim and the master, which releases
        // survivors stuck in a library call.
        auto release = [&] {
            if (child) child->signal(SIGKILL);
            master.destroy();
        };
        constexpr int kKillAt = 1;
        constexpr size_t kOps = 8;
        constexpr size_t kOpCount = 2u * 1024u * 1024u; // 8 MiB of f32 per operation, 64 MiB per batch
        std::atomic<int64_t> kill_ns{0};
        ClusterOptions opts;
        opts.groups = {0, 0};
        opts.expected_world = 3;
        opts.timeout_s = 30;
        PeerThreads survivors(master.address(), opts, [&](PeerCtx &ctx) {
            std::vector<std::vector<float>> bufs(kOps, std::vector<float>(kOpCount));
            std::vector<pcclReduceOpDescriptor_t> descs(kOps);
            for (size_t k = 0; k < kOps; ++k) {
                descs[k].sendbuf = bufs[k].data();
                descs[k].recvbuf = bufs[k].data();
                descs[k].descriptor = makeDescriptor(kOpCount, pcclFloat, pcclSum, k);
            }
            const int all3 = survivorValue(0) + survivorValue(1) + kChildValue;
            const int both = survivorValue(0) + survivorValue(1);
            // Batches 0..k-1 run on three peers; the victim dies during batch k, which must still
            // succeed (retried on two peers); batch k+1 runs on two peers from the start.
            for (int i = 0; i <= kKillAt + 1; ++i) {
                for (auto &b : bufs) fillPattern(b, survivorValue(ctx.rank));
                pcclReduceInfo_t info{};
                const pcclResult_t r = pcclAllReduceMultipleWithRetry(descs.data(), kOps, ctx.comm, &info, 2);
                const int64_t returned_ns = nowNs();
                PT_CHECK_MSG(r == pcclSuccess, "batch " << i << ": " << describe(r, ctx.comm));
                PT_CHECK_EQ(info.local_world_size, i < kKillAt ? 3u : 2u);
                for (size_t k = 0; k < kOps; ++k) {
                    const std::string with3 = checkPattern(bufs[k].data(), kOpCount, all3, 3);
                    const std::string with2 = checkPattern(bufs[k].data(), kOpCount, both, 2);
                    if (i < kKillAt)
                        PT_CHECK_MSG(with3.empty(), "batch " << i << ", op " << k << ": " << with3);
                    else if (i == kKillAt) // finished before the kill: 3-peer sum; retried: 2-peer sum
                        PT_CHECK_MSG(with3.empty() || with2.empty(), "batch " << i << ", op " << k
                                                                              << " is neither the 3-peer sum (" << with3
                                                                              << ") nor the 2-peer sum (" << with2 << ")");
                    else
                        PT_CHECK_MSG(with2.empty(), "batch " << i << ", op " << k << ": " << with2);
                }
                if (i == kKillAt) {
                    const double after_kill = static_cast<double>(returned_ns - kill_ns.load()) / 1e9;
                    PT_CHECK_MSG(after_kill < 10.0, "the batch finished " << after_kill << " s after the kill");
                }
            }
            PT_CHECK_EQ(attribute(ctx.comm, PCCL_ATTRIBUTE_PEER_GROUP_WORLD_SIZE), 2);
        });
        survivors.onAbort(release);
        child = std::make_unique<ChildProcess>(childArgs("retry-loop", master.port(),
                                                         {"--count", std::to_string(kOpCount), "--iters", "1000", "--ops",
                                                          std::to_string(kOps), "--inflight", "2", "--watch-iter",
                                                          std::to_string(kKillAt)}));
        signalMidOperation(*child, survivors, kKillAt, SIGKILL, kill_ns);
        PT_CHECK_MSG(child->wait(10).has_value(), "the killed child did not die");
        survivors.join(release);
    });
}

TEST_CASE("all-reduce: a hung peer (SIGSTOP) is detected by deadline and the survivors continue without it",
          "[api][fault][hang]") {
    // The heartbeat deadline (PCCL_HEARTBEAT_TIMEOUT_MS) defaults to 5 s: a stopped peer must be
    // removed, and the operation aborted on the survivors, well within 20 s.
    isolated(55, [&] { runVictimScenario(kCount, 1, SIGSTOP, {pcclRankConnectionLost, pcclTimeout}, 20.0, 40); });
}

TEST_CASE("all-reduce: a transfer stalled by a stuck peer fails with pcclTimeout on every peer after the progress "
          "deadline, inputs restored; resumed, all three go on",
          "[api][fault][deadline]") {
    // The victim asks for a 60 s heartbeat deadline, so stopping it does not get it removed: only
    // the survivors' 1.5 s progress deadline can end the stalled operation.
    isolated(60, [&] {
        constexpr int k = 1;
        constexpr uint32_t kOpTimeoutMs = 1500;
        constexpr size_t count = kCount / 4;
        EmbeddedMaster master;
        std::unique_ptr<ChildProcess> child;
        auto release = [&] {
            if (child) child->signal(SIGKILL);
            master.destroy();
        };
        std::atomic<int64_t> signal_ns{0};
        std::atomic<int> timed_out{0};
        std::atomic<bool> resumed{false};
        ClusterOptions opts;
        opts.groups = {0, 0};
        opts.expected_world = 3;
        opts.timeout_s = 45;
        opts.deadlines.op_timeout_ms = kOpTimeoutMs;
        PeerThreads survivors(master.address(), opts, [&](PeerCtx &ctx) {
            std::vector<float> orig(count), buf(count);
            fillPattern(orig, survivorValue(ctx.rank));
            const pcclReduceDescriptor_t d = makeDescriptor(count, pcclFloat, pcclSum, 0);
            const int all3 = survivorValue(0) + survivorValue(1) + kChildValue;
            for (int i = 0; i <= k + 1; ++i) {
                if (i == k + 1) ctx.waitFor([&] { return resumed.load(); }, "the victim to be resumed", 20);
                std::memcpy(buf.data(), orig.data(), count * sizeof(float));
                pcclReduceInfo_t info{};
                const pcclResult_t r = pcclAllReduce(buf.data(), buf.data(), &d, ctx.comm, &info);
                if (i != k) {
                    PT_CHECK_MSG(r == pcclSuccess, "operation " << i << ": " << describe(r, ctx.comm));
                    PT_CHECK_EQ(info.local_world_size, 3u);
                    const std::string diff = checkPattern(buf.data(), count, all3, 3);
                    PT_CHECK_MSG(diff.empty(), "operation " << i << ": " << diff);
                    continue;
                }
                const double after = static_cast<double>(nowNs() - signal_ns.load()) / 1e9;
                PT_CHECK_MSG(r == pcclTimeout, "the stalled operation returned " << describe(r, ctx.comm));
                // One deadline to see the stall, at most one more to drain an abort stuck behind
                // the stopped peer (its connections are then closed).
                PT_CHECK_MSG(after < 2 * kOpTimeoutMs / 1000.0 + 3.0, "the stalled operation returned " << after << " s after the stop");
                const std::string why = pcclGetLastErrorMessage(ctx.comm);
                PT_CHECK_MSG(why.find("no progress") != std::string::npos, "the message does not say what stalled: " << why);
                const std::string gaps = allReduceMessageGaps(why, 0);
                PT_CHECK_MSG(gaps.empty(), gaps);
                PT_CHECK_MSG(std::memcmp(buf.data(), orig.data(), count * sizeof(float)) == 0,
                             "the in-place buffer was not restored after the timeout");
                ++timed_out;
            }
        });
        survivors.onAbort(release);
        child = std::make_unique<ChildProcess>(childArgs(
            "allreduce-loop", master.port(),
            {"--count", std::to_string(count), "--iters", std::to_string(k + 2), "--watch-iter", std::to_string(k),
             "--heartbeat-ms", "60000"}));
        signalMidOperation(*child, survivors, k, SIGSTOP, signal_ns);
        PT_CHECK_MSG(waitUntil([&] { return timed_out.load() == 2 || survivors.failed(); }, 20),
                     "the survivors did not both time out");
        child->signal(SIGCONT);
        // All or nothing: the stuck peer's own call failed too, and it then runs the next one.
        auto done = child->waitForLine("DONE " + std::to_string(k), 20);
        PT_CHECK_MSG(done && done->find("pcclTimeout") != std::string::npos,
                     "the resumed victim's stalled call ended with: " << (done ? *done : "nothing") << "\n"
                                                                      << child->transcript());
        resumed = true;
        auto next = child->waitForLine("DONE " + std::to_string(k + 1), 20);
        PT_CHECK_MSG(next && next->find("pcclSuccess") != std::string::npos,
                     "the victim's next call: " << (next ? *next : "nothing"));
        survivors.join(release);
    });
}
