// Public API: a peer process SIGKILLed in a known phase of the ring all-reduce (reduce-scatter or
// all-gather). Survivors are threads of this process; the victim is a pccl_test_peer child.
//
// How the phase is hit from outside the library: the victim watches its own in-place buffer and
// stops itself (SIGSTOP) as soon as it looks like the wanted phase (support/ring_phase.h). A
// stopped process moves no byte, so the test then reads its whole buffer (process_vm_readv) and
// classifies every element exactly: only if the phase is the wanted one does it SIGKILL the
// victim; otherwise it resumes it (SIGCONT) and that operation completes normally, and the next
// iteration tries again. Segments as large as a chunk (PCCL_SEGMENT_BYTES) make the phases
// last a whole chunk transfer each, so a few iterations are enough.
#include "support/cluster.h"
#include "support/fault.h"
#include "support/ring_phase.h"

#include <catch2/catch.hpp>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

using namespace pccl_test;

namespace {

constexpr size_t kCount = 8u * 1024u * 1024u; // 32 MiB of f32: one ~11 MiB segment per chunk
constexpr int kVictimValue = 100;
constexpr int kMaxIterations = 40;

// What each survivor saw, per iteration, for the all-or-nothing check across survivors.
struct Outcomes {
    std::mutex mu;
    std::vector<std::vector<pcclResult_t>> per_rank{2};
    void add(int rank, pcclResult_t r) {
        std::lock_guard lock(mu);
        per_rank[static_cast<size_t>(rank)].push_back(r);
    }
};

// Survivors run the victim's loop until an operation fails; that must be the one during which the
// victim was killed (kill_iter), with pcclRankConnectionLost, promptly, input restored. Then a
// topology update and an all-reduce on the two survivors.
void survive(PeerCtx &ctx, const std::atomic<int> &kill_iter, const std::atomic<int64_t> &kill_ns, Outcomes &outcomes) {
    std::vector<float> orig(kCount), buf(kCount);
    fillPattern(orig, survivorValue(ctx.rank));
    const pcclReduceDescriptor_t d = makeDescriptor(kCount, pcclFloat, pcclSum, 0);
    const int all3 = survivorValue(0) + survivorValue(1) + kVictimValue;
    const int both = survivorValue(0) + survivorValue(1);
    for (int i = 0;; ++i) {
        PT_CHECK_MSG(i < kMaxIterations, "no operation failed in " << kMaxIterations << " iterations");
        std::memcpy(buf.data(), orig.data(), kCount * sizeof(float));
        pcclReduceInfo_t info{};
        const pcclResult_t r = pcclAllReduce(buf.data(), buf.data(), &d, ctx.comm, &info);
        outcomes.add(ctx.rank, r);
        if (r == pcclSuccess) {
            PT_CHECK_EQ(info.local_world_size, 3u);
            const std::string diff = checkPattern(buf.data(), kCount, all3, 3);
            PT_CHECK_MSG(diff.empty(), "iteration " << i << ": " << diff);
            continue;
        }
        PT_CHECK_MSG(r == pcclRankConnectionLost, "iteration " << i << " returned " << describe(r, ctx.comm));
        PT_CHECK_MSG(kill_iter.load() == i, "iteration " << i << " failed, but the victim was killed in iteration "
                                                          << kill_iter.load());
        const double after = secondsSinceNs(kill_ns.load());
        PT_CHECK_MSG(after < 5.0, "the survivor's all-reduce returned " << after << " s after the kill");
        const std::string gaps = allReduceMessageGaps(pcclGetLastErrorMessage(ctx.comm), 0);
        PT_CHECK_MSG(gaps.empty(), gaps);
        PT_CHECK_MSG(std::memcmp(buf.data(), orig.data(), kCount * sizeof(float)) == 0,
                     "the in-place buffer was not restored after the abort: "
                         << checkPattern(buf.data(), kCount, survivorValue(ctx.rank), 1));
        break;
    }
    expectRunOnTwo(ctx, orig, buf, d, both);
}

void killInPhase(const std::string &phase) {
    ::setenv("PCCL_SEGMENT_BYTES", std::to_string(64u << 20).c_str(), 1);  // every peer, the child inherits it
    // Over TCP: a same-host copy moves a whole chunk in about a millisecond, too short a window
    // for the victim to stop itself in. Kills during same-host copies: test_api_fault*.cpp.
    ::setenv("PCCL_SAME_HOST", "off", 1);
    EmbeddedMaster master;
    std::unique_ptr<ChildProcess> victim;
    auto release = [&] {
        if (victim) victim->signal(SIGKILL);
        master.destroy();
    };
    std::atomic<int> kill_iter{-1};
    std::atomic<int64_t> kill_ns{0};
    Outcomes outcomes;
    ClusterOptions opts;
    opts.groups = {0, 0};
    opts.expected_world = 3;
    opts.timeout_s = 60;
    // Long deadlines: the victim is stopped for a moment in each attempt; only the kill may end
    // an operation.
    opts.deadlines.op_timeout_ms = 60000;
    PeerThreads survivors(master.address(), opts, [&](PeerCtx &ctx) { survive(ctx, kill_iter, kill_ns, outcomes); });
    survivors.onAbort(release);
    victim = std::make_unique<ChildProcess>(std::vector<std::string>{
        PCCL_TEST_PEER_BIN, "allreduce-loop", "--master", "127.0.0.1:" + std::to_string(master.port()), "--world", "3",
        "--count", std::to_string(kCount), "--iters", std::to_string(kMaxIterations), "--value",
        std::to_string(kVictimValue), "--heartbeat-ms", "60000", "--stop-at", phase, "--others",
        std::to_string(survivorValue(0)) + "," + std::to_string(survivorValue(1))});
    ring_phase::Values values;
    values.self = kVictimValue;
    values.others = {survivorValue(0), survivorValue(1)};
    std::vector<float> snapshot;
    std::string misses;
    for (int attempt = 0;; ++attempt) {
        PT_CHECK_MSG(attempt < kMaxIterations - 1, "the victim was never stopped in the " << phase << " phase:\n" << misses);
        std::optional<std::string> line;
        while (!line) {
            PT_CHECK_MSG(!survivors.failed(), "a survivor failed before the victim was killed");
            PT_CHECK_MSG(victim->transcript().find("FAIL") == std::string::npos, "the victim failed: " << victim->transcript());
            line = victim->waitForLine("STOPPED ", 0.25);
            PT_CHECK_MSG(line || victim->transcript().find("DONE " + std::to_string(kMaxIterations - 1)) == std::string::npos,
                         "the victim finished its loop without stopping in the " << phase << " phase:\n" << misses);
        }
        int iter = -1;
        unsigned long long addr = 0;
        size_t count = 0;
        PT_CHECK_MSG(std::sscanf(line->c_str(), "STOPPED %d %llx %zu", &iter, &addr, &count) == 3 && count == kCount,
                     "bad line from the victim: " << *line);
        PT_CHECK_MSG(waitStopped(victim->pid(), 10), "the victim did not stop after '" << *line << "'");
        const std::string err = readFloats(victim->pid(), addr, count, snapshot);
        PT_CHECK_MSG(err.empty(), "reading the stopped victim's buffer: " << err);
        const auto t = ring_phase::tally(count, 1, values, [&](size_t j) { return snapshot[j]; });
        const bool hit = phase == "reduce-scatter" ? ring_phase::inReduceScatter(t) : ring_phase::inAllGather(t);
        if (!hit) {
            misses += "iteration " + std::to_string(iter) + ": " + ring_phase::describe(t) + "\n";
            victim->signal(SIGCONT);
            continue;
        }
        kill_iter = iter;
        kill_ns = nowNs();
        victim->signal(SIGKILL);
        break;
    }
    const auto status = victim->wait(10);
    PT_CHECK_MSG(status.has_value() && WIFSIGNALED(*status), "the killed victim did not die");
    survivors.join(release);
    // All or nothing: both survivors saw the same outcome for every operation.
    PT_CHECK_MSG(outcomes.per_rank[0] == outcomes.per_rank[1], "the survivors disagree on the outcome of an operation");
}

} // namespace

TEST_CASE("all-reduce: a peer killed during the reduce-scatter phase makes every survivor fail with "
          "pcclRankConnectionLost and restores their in-place input",
          "[api][fault][phase]") {
    isolated(90, [&] { killInPhase("reduce-scatter"); });
}

TEST_CASE("all-reduce: a peer killed during the all-gather phase makes every survivor fail with "
          "pcclRankConnectionLost, even one that already holds final values, and restores their in-place input",
          "[api][fault][phase]") {
    isolated(90, [&] { killInPhase("all-gather"); });
}
