// Public API: pcclGetCommunicatorStats (issue 18): argument checks, the size-first struct, the
// counters of real all-reduces, and a master that takes the peers' StatsReport without kicking.
#include "support/cluster.h"

#include <catch2/catch.hpp>

#include <chrono>
#include <cstddef>
#include <thread>
#include <vector>

using namespace pccl_test;

TEST_CASE("stats: arguments, struct_size, and a communicator that is not connected", "[api]") {
    isolated(30, [&] {
        EmbeddedMaster master;
        pcclComm_t *comm = createComm(master.address());
        pcclCommStats_t s = PCCL_COMM_STATS_INIT;
        PT_EXPECT_RESULT(nullptr, pcclInvalidArgument, pcclGetCommunicatorStats(nullptr, &s));
        PT_EXPECT_RESULT(comm, pcclInvalidArgument, pcclGetCommunicatorStats(comm, nullptr));
        s.struct_size = offsetof(pcclCommStats_t, last_send_bytes_per_second);
        PT_EXPECT_RESULT(comm, pcclInvalidArgument, pcclGetCommunicatorStats(comm, &s));
        PT_CHECK(std::string(pcclGetLastErrorMessage(comm)).find("PCCL_COMM_STATS_INIT") != std::string::npos);

        // Not connected: zeros, no rank.
        s = PCCL_COMM_STATS_INIT;
        s.all_reduces_completed = 99;
        PT_OK(comm, pcclGetCommunicatorStats(comm, &s));
        PT_CHECK_EQ(s.struct_size, sizeof(pcclCommStats_t));
        PT_CHECK_EQ(s.all_reduces_completed, uint64_t{0});
        PT_CHECK_EQ(s.tx_bytes, uint64_t{0});
        PT_CHECK_EQ(s.world_size, 0u);
        PT_CHECK_EQ(s.rank, UINT32_MAX);

        // A caller built against a later, longer version: only this version's fields are written.
        struct Longer {
            pcclCommStats_t v1;
            uint64_t later;
        } longer{};
        longer.v1.struct_size = sizeof(Longer);
        longer.later = 0xabcdef;
        PT_OK(comm, pcclGetCommunicatorStats(comm, &longer.v1));
        PT_CHECK_EQ(longer.v1.struct_size, sizeof(Longer));
        PT_CHECK_EQ(longer.v1.rank, UINT32_MAX);
        PT_CHECK_EQ(longer.later, uint64_t{0xabcdef});
        PT_OK(comm, pcclDestroyCommunicator(comm));
    });
}

TEST_CASE("stats: all-reduces completed and failed, bytes, world and rank; the master takes the reports",
          "[api][allreduce]") {
    isolated(60, [&] {
        EmbeddedMaster master;
        ClusterOptions opts;
        opts.groups = {0, 0, 0};
        opts.deadlines.heartbeat_timeout_ms = 800;  // a tick every 200 ms: reports go out soon
        constexpr size_t kCount = 1 << 16;
        constexpr int kOps = 4;
        runPeers(master, opts, [&](PeerCtx &ctx) {
            std::vector<float> x(kCount, 1.0f);
            for (int i = 0; i < kOps; ++i) {
                auto d = makeDescriptor(kCount, pcclFloat, pcclSum, static_cast<uint64_t>(i));
                PT_OK(ctx.comm, pcclAllReduce(x.data(), x.data(), &d, ctx.comm, nullptr));
                // Past a tick: the first report goes out now; a master that refused it would
                // have kicked this peer, and the next all-reduce would fail.
                if (i == 0) std::this_thread::sleep_for(std::chrono::milliseconds(500));
            }
            pcclCommStats_t s = PCCL_COMM_STATS_INIT;
            PT_OK(ctx.comm, pcclGetCommunicatorStats(ctx.comm, &s));
            PT_CHECK_EQ(s.all_reduces_completed, uint64_t{kOps});
            PT_CHECK_EQ(s.all_reduces_failed, uint64_t{0});
            // A ring of 3: each peer sends and receives 2 * (3 - 1) chunks of at least count / 3 elements.
            const uint64_t ring = uint64_t{kOps} * 2 * 2 * (kCount / 3) * sizeof(float);
            PT_CHECK_MSG(s.tx_bytes >= ring && s.rx_bytes >= ring, "tx " << s.tx_bytes << " rx " << s.rx_bytes);
            PT_CHECK_EQ(s.last_all_reduce_bytes, uint64_t{kCount * sizeof(float)});
            PT_CHECK(s.last_all_reduce_micros > 0);
            PT_CHECK_EQ(s.world_size, 3u);
            PT_CHECK_EQ(s.group_world_size, 3u);
            PT_CHECK_EQ(static_cast<int>(s.rank), attribute(ctx.comm, PCCL_ATTRIBUTE_RANK));
            PT_CHECK(s.epoch >= 1);

            // Peers that disagree on the count: a mismatch, counted as failed.
            std::vector<float> y(kCount + static_cast<size_t>(ctx.rank), 1.0f);
            auto d = makeDescriptor(y.size(), pcclFloat, pcclSum, 100);
            PT_EXPECT_RESULT(ctx.comm, pcclMismatch, pcclAllReduce(y.data(), y.data(), &d, ctx.comm, nullptr));
            PT_OK(ctx.comm, pcclGetCommunicatorStats(ctx.comm, &s));
            PT_CHECK_EQ(s.all_reduces_failed, uint64_t{1});
            PT_CHECK_EQ(s.all_reduces_completed, uint64_t{kOps});
            PT_CHECK_EQ(s.last_all_reduce_bytes, uint64_t{kCount * sizeof(float)});
        });
    });
}
