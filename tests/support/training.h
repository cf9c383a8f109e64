// A training loop for tests where the master is killed, stopped or replaced under running peers
// (test_api_master_restart.cpp, test_api_master_standby.cpp): each step is an all-reduce whose
// result is checked and a shared-state sync; a retryable failure must restore the input and the
// step runs again. At the end every peer must hold bit-identical state at the last revision.
#pragma once
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "support/cluster.h"

namespace pccl_test {

constexpr size_t kStepCount = 4096;
constexpr size_t kStateCount = 1024;

inline bool retryable(pcclResult_t r) { return r == pcclRankConnectionLost || r == pcclTimeout; }

inline std::string listenOn(uint16_t port) { return "127.0.0.1:" + std::to_string(port); }

// One training step per iteration: an in-place all-reduce of (rank + 1) * (i + 1) whose sum is
// checked against the world size, the state updated from it, then synced at revision i + 1.
// A retryable failure must leave the input as it was; the step is then run again.
struct Training {
    int iters = 40;
    int stepSleepMs = 40;
    std::atomic<int> minIter{0};
    std::mutex mu;
    std::map<int, std::vector<float>> finalState;  // by peer
    std::map<int, uint64_t> finalRevision;
    std::atomic<int> retries{0};
    std::vector<std::atomic<int>> progress;
    // Peers whose loop stops early: -1 none.
    std::atomic<int> quitter{-1};
    std::atomic<int> quitAt{1 << 30};

    // Time to recover from a fault: markFault() before it, then the first all-reduce of any peer
    // that succeeds after it is recorded (steady clock, ns).
    std::atomic<int64_t> faultAtNs{std::numeric_limits<int64_t>::max()};
    std::atomic<int64_t> firstOkAfterFaultNs{0};

    explicit Training(int peers) : progress(peers) {}

    static int64_t nowNs() { return std::chrono::steady_clock::now().time_since_epoch().count(); }
    void markFault() {
        firstOkAfterFaultNs = 0;
        faultAtNs = nowNs();
    }
    // Milliseconds from the fault to the first all-reduce that succeeded after it (< 0: none yet).
    double recoveredAfterMs() const {
        const int64_t ok = firstOkAfterFaultNs.load();
        return ok == 0 ? -1.0 : static_cast<double>(ok - faultAtNs.load()) / 1e6;
    }

    void updateMin() {
        int m = 1 << 30;
        for (size_t r = 0; r < progress.size(); ++r)
            if (static_cast<int>(r) != quitter.load()) m = std::min(m, progress[r].load());
        minIter = m;
    }

    void run(PeerCtx &ctx) {
        std::vector<float> state(kStateCount, 0.0f);
        pcclTensorInfo_t info{"state", state.data(), state.size(), pcclFloat, pcclDeviceCpu, false};
        pcclSharedState_t shared{0, 1, &info};
        for (int i = 0; i < iters; ++i) {
            if (ctx.rank == quitter.load() && i >= quitAt.load()) {
                // Gone while the master is down: this peer never comes back.
                pcclDestroyCommunicator(ctx.comm);
                ctx.comm = nullptr;
                ctx.destroy_comm = false;
                return;
            }
            const float mine = static_cast<float>((ctx.rank + 1) * (i + 1));
            std::vector<float> buf(kStepCount);
            for (int attempt = 0;; ++attempt) {
                std::fill(buf.begin(), buf.end(), mine);
                const pcclReduceDescriptor_t d = makeDescriptor(kStepCount, pcclFloat, pcclSum, static_cast<uint64_t>(i));
                pcclReduceInfo_t ri{};
                const pcclResult_t r = pcclAllReduce(buf.data(), buf.data(), &d, ctx.comm, &ri);
                if (r == pcclSuccess) {
                    if (const int64_t t = nowNs(); t > faultAtNs.load()) {
                        int64_t none = 0;
                        firstOkAfterFaultNs.compare_exchange_strong(none, t);
                    }
                    // Every peer contributes (rank + 1) * (i + 1); the survivors' ranks are known
                    // only as a set, so check the sum's shape: a multiple of (i + 1), the same
                    // everywhere, and at least this peer's own part.
                    PT_CHECK_MSG(buf[0] >= mine && std::fmod(buf[0], static_cast<float>(i + 1)) == 0.0f,
                                 "step " << i << ": sum " << buf[0]);
                    for (float v : buf) PT_CHECK_MSG(v == buf[0], "step " << i << ": uneven result");
                    break;
                }
                PT_CHECK_MSG(retryable(r) && attempt < 5, "step " << i << ": " << describe(r, ctx.comm));
                for (float v : buf) PT_CHECK_MSG(v == mine, "step " << i << ": input not restored after a failure");
                ++retries;
            }
            for (size_t j = 0; j < state.size(); ++j) state[j] += buf[j % kStepCount] / 1024.0f;
            shared.revision = static_cast<uint64_t>(i) + 1;
            for (int attempt = 0;; ++attempt) {
                const pcclResult_t r =
                    pcclSynchronizeSharedState(ctx.comm, &shared, PCCL_SHARED_STATE_SYNC_STRATEGY_ENFORCE_POPULAR, nullptr);
                if (r == pcclSuccess) break;
                PT_CHECK_MSG(retryable(r) && attempt < 5, "sync " << i << ": " << describe(r, ctx.comm));
                ++retries;
            }
            progress[static_cast<size_t>(ctx.rank)] = i + 1;
            updateMin();
            std::this_thread::sleep_for(std::chrono::milliseconds(stepSleepMs));
        }
        std::lock_guard lock(mu);
        finalState[ctx.rank] = state;
        finalRevision[ctx.rank] = shared.revision;
    }

    // Every peer that finished holds the same bytes and the last revision.
    void checkIdentical(size_t expectedPeers) {
        PT_CHECK_EQ(finalState.size(), expectedPeers);
        for (auto &[rank, s] : finalState) {
            PT_CHECK_MSG(std::memcmp(s.data(), finalState.begin()->second.data(), s.size() * sizeof(float)) == 0,
                         "peer " << rank << "'s state differs from peer " << finalState.begin()->first << "'s");
            PT_CHECK_EQ(finalRevision[rank], static_cast<uint64_t>(iters));
        }
    }
};

} // namespace pccl_test
