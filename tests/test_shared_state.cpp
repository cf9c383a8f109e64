// pcclSynchronizeSharedState through the public API (base version, docs/shared_state.md).
#include <catch2/catch.hpp>

#include <cstring>
#include <vector>

#include "support/cluster.h"

using namespace pccl_test;

namespace {

// A two-entry state: "weights" (voted on) and "rng" (allow_content_inequality).
struct State {
    std::vector<float> weights;
    std::vector<uint8_t> rng;
    pcclTensorInfo_t infos[2];
    pcclSharedState_t shared{};
    State(size_t n, float value, uint8_t rngValue, uint64_t revision) : weights(n, value), rng(13, rngValue) {
        infos[0] = pcclTensorInfo_t{"weights", weights.data(), weights.size(), pcclFloat, pcclDeviceCpu, false};
        infos[1] = pcclTensorInfo_t{"rng", rng.data(), rng.size(), pcclUint8, pcclDeviceCpu, true};
        shared.revision = revision;
        shared.count = 2;
        shared.infos = infos;
    }
};

pcclSharedStateSyncInfo_t sync(PeerCtx &ctx, State &s, pcclSharedStateSyncStrategy_t strategy =
                                                           PCCL_SHARED_STATE_SYNC_STRATEGY_ENFORCE_POPULAR) {
    pcclSharedStateSyncInfo_t info{};
    PT_OK(ctx.comm, pcclSynchronizeSharedState(ctx.comm, &s.shared, strategy, &info));
    return info;
}

} // namespace

TEST_CASE("shared state: the popular content wins 2 of 3, an outdated peer receives exactly it, then nothing moves",
          "[shared_state]") {
    EmbeddedMaster master;
    ClusterOptions opts;
    opts.groups = {0, 0, 0};
    runPeers(master.address(), opts, [&](PeerCtx &ctx) {
        const size_t n = 300001;  // not a multiple of the segment size
        State s(n, ctx.rank == 2 ? 7.0f : 1.5f, static_cast<uint8_t>(ctx.rank), 5);
        auto info = sync(ctx, s);
        PT_CHECK_EQ(s.shared.revision, 5u);
        for (float w : s.weights) PT_CHECK_EQ(w, 1.5f);
        if (ctx.rank == 2) {
            // The weights, plus "rng": a peer that never synced receives allow_content_inequality entries too.
            PT_CHECK_EQ(info.rx_bytes, n * sizeof(float) + 13);
        } else {
            PT_CHECK_EQ(info.rx_bytes, 0u);
        }
        // A second sync without changes moves nothing, on every peer.
        s.shared.revision = 6;
        auto again = sync(ctx, s);
        PT_CHECK_EQ(again.rx_bytes, 0u);
        PT_CHECK_EQ(again.tx_bytes, 0u);
        PT_CHECK_EQ(s.shared.revision, 6u);
    });
}

TEST_CASE("shared state: a joiner receives every entry including allow_content_inequality ones", "[shared_state]") {
    EmbeddedMaster master;
    ClusterOptions opts;
    opts.groups = {0, 0};
    std::atomic<int> synced{0};
    runPeers(master.address(), opts, [&](PeerCtx &ctx) {
        State s(1000, 3.0f, 42, 10);
        sync(ctx, s);  // both hold the same weights; rng entries are equal too
        synced++;
        ctx.barrier();
        // A third peer joins with zeros and a different rng entry.
        std::atomic<bool> joinerOk{false};
        std::thread joiner;
        struct JoinGuard {
            std::thread &t;
            ~JoinGuard() {
                if (t.joinable()) t.join();
            }
        } guard{joiner};
        if (ctx.rank == 0) {
            joiner = std::thread([&] {
                pcclComm_t *c = connectPeer(master.address(), 0, 3, 30);
                State j(1000, 0.0f, 0, 0);
                pcclSharedStateSyncInfo_t info{};
                if (pcclSynchronizeSharedState(c, &j.shared, PCCL_SHARED_STATE_SYNC_STRATEGY_ENFORCE_POPULAR, &info) ==
                        pcclSuccess &&
                    j.shared.revision == 11 && j.weights[999] == 3.0f && j.rng[12] == 42 &&
                    info.rx_bytes == 1000 * sizeof(float) + 13)
                    joinerOk = true;
                pcclDestroyCommunicator(c);
            });
        }
        awaitWorld(ctx.comm, 3, 30);
        s.shared.revision = 11;
        sync(ctx, s);
        if (ctx.rank == 0) {
            joiner.join();
            PT_CHECK_MSG(joinerOk.load(), "the joiner did not receive the full state at revision 11");
        }
    });
}

TEST_CASE("shared state: a peer that is behind is dragged along; a peer that jumps ahead is removed", "[shared_state]") {
    EmbeddedMaster master;
    ClusterOptions opts;
    opts.groups = {0, 0, 0};
    runPeers(master.address(), opts, [&](PeerCtx &ctx) {
        State s(64, 1.0f, 0, 1);
        sync(ctx, s);
        ctx.barrier();
        if (ctx.rank == 0) {
            s.shared.revision = 9;  // jumps ahead
            pcclSharedStateSyncInfo_t info{};
            PT_EXPECT_RESULT(ctx.comm, pcclKicked,
                             pcclSynchronizeSharedState(ctx.comm, &s.shared, PCCL_SHARED_STATE_SYNC_STRATEGY_ENFORCE_POPULAR, &info));
            PT_CHECK(std::string(pcclGetLastErrorMessage(ctx.comm)).find("ahead") != std::string::npos);
            return;
        }
        s.shared.revision = ctx.rank == 1 ? 2 : 1;  // rank 2 forgot to advance: behind
        if (ctx.rank == 1) s.weights[3] = 5.0f;      // the only current peer changed its weights
        auto info = sync(ctx, s);
        PT_CHECK_EQ(s.shared.revision, 2u);
        PT_CHECK_EQ(s.weights[3], 5.0f);
        if (ctx.rank == 2) PT_CHECK_EQ(info.rx_bytes, 64 * sizeof(float));
    });
}

TEST_CASE("shared state: a different set of entries removes only the offending peer", "[shared_state]") {
    EmbeddedMaster master;
    ClusterOptions opts;
    opts.groups = {0, 0, 0};
    runPeers(master.address(), opts, [&](PeerCtx &ctx) {
        State s(ctx.rank == 1 ? 65 : 64, 2.0f, 0, 3);
        pcclSharedStateSyncInfo_t info{};
        const pcclResult_t r = pcclSynchronizeSharedState(ctx.comm, &s.shared, PCCL_SHARED_STATE_SYNC_STRATEGY_ENFORCE_POPULAR, &info);
        if (ctx.rank == 1) {
            PT_CHECK_EQ(r, pcclKicked);
            PT_CHECK(std::string(pcclGetLastErrorMessage(ctx.comm)).find("layout") != std::string::npos);
        } else {
            PT_CHECK_EQ(r, pcclSuccess);
        }
    });
}

TEST_CASE("shared state: strategies: receive-only joiner with send-only peers; a forbidden mix is a usage error",
          "[shared_state]") {
    EmbeddedMaster master;
    ClusterOptions opts;
    opts.groups = {0, 0, 0};
    runPeers(master.address(), opts, [&](PeerCtx &ctx) {
        // Async-DiLoCo pattern: the holders send only, the newcomer receives only.
        State s(100, ctx.rank == 2 ? 0.0f : 4.0f, 1, ctx.rank == 2 ? 0 : 7);
        auto info = sync(ctx, s, ctx.rank == 2 ? PCCL_SHARED_STATE_SYNC_STRATEGY_RECEIVE_ONLY
                                               : PCCL_SHARED_STATE_SYNC_STRATEGY_SEND_ONLY);
        PT_CHECK_EQ(s.weights[99], 4.0f);
        PT_CHECK_EQ(s.shared.revision, 7u);
        if (ctx.rank == 2) PT_CHECK(info.rx_bytes > 0);
        ctx.barrier();
        // ENFORCE_POPULAR mixed with SEND_ONLY: the send-only peer gets a usage error.
        s.shared.revision = 8;
        pcclSharedStateSyncInfo_t i2{};
        const auto strategy = ctx.rank == 0 ? PCCL_SHARED_STATE_SYNC_STRATEGY_SEND_ONLY
                                            : PCCL_SHARED_STATE_SYNC_STRATEGY_ENFORCE_POPULAR;
        const pcclResult_t r = pcclSynchronizeSharedState(ctx.comm, &s.shared, strategy, &i2);
        PT_CHECK_EQ(r, ctx.rank == 0 ? pcclInvalidUsage : pcclSuccess);
    });
}

TEST_CASE("shared state: bad arguments are rejected with a reason", "[shared_state][args]") {
    EmbeddedMaster master;
    ClusterOptions opts;
    opts.groups = {0};
    runPeers(master.address(), opts, [&](PeerCtx &ctx) {
        State s(8, 1.0f, 0, 0);
        PT_EXPECT_RESULT(ctx.comm, pcclInvalidArgument,
                         pcclSynchronizeSharedState(ctx.comm, nullptr, PCCL_SHARED_STATE_SYNC_STRATEGY_ENFORCE_POPULAR, nullptr));
        s.infos[1].name = "weights";
        PT_EXPECT_RESULT(ctx.comm, pcclInvalidArgument,
                         pcclSynchronizeSharedState(ctx.comm, &s.shared, PCCL_SHARED_STATE_SYNC_STRATEGY_ENFORCE_POPULAR, nullptr));
        PT_CHECK(std::string(pcclGetLastErrorMessage(ctx.comm)).find("twice") != std::string::npos);
        s.infos[1].name = "rng";
        s.infos[0].device_type = pcclDeviceCuda;
        PT_EXPECT_RESULT(ctx.comm, pcclInvalidArgument,
                         pcclSynchronizeSharedState(ctx.comm, &s.shared, PCCL_SHARED_STATE_SYNC_STRATEGY_ENFORCE_POPULAR, nullptr));
        s.infos[0].device_type = pcclDeviceCpu;
        s.infos[0].datatype = static_cast<pcclDataType_t>(77);
        PT_EXPECT_RESULT(ctx.comm, pcclInvalidArgument,
                         pcclSynchronizeSharedState(ctx.comm, &s.shared, PCCL_SHARED_STATE_SYNC_STRATEGY_ENFORCE_POPULAR, nullptr));
        s.infos[0].datatype = pcclFloat;
        PT_OK(ctx.comm, pcclSynchronizeSharedState(ctx.comm, &s.shared, PCCL_SHARED_STATE_SYNC_STRATEGY_ENFORCE_POPULAR, nullptr));
    });
}
