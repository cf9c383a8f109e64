// pcclSynchronizeSharedState at chunk granularity through the public API: only dirty chunks
// move, every dtype at any alignment, peer groups in parallel, many steps in a row.
#include <catch2/catch.hpp>

#include <cstring>
#include <vector>

#include "support/cluster.h"
#include "support/dtypes.h"

using namespace pccl_test;

namespace {

constexpr size_t kChunk = 4u << 20;  // the library's shared-state chunk (protocol::kStateChunkBytes)

pcclSharedStateSyncInfo_t syncOne(PeerCtx &ctx, std::vector<float> &w, uint64_t &revision) {
    pcclTensorInfo_t info{"w", w.data(), w.size(), pcclFloat, pcclDeviceCpu, false};
    pcclSharedState_t s{revision, 1, &info};
    pcclSharedStateSyncInfo_t si{};
    PT_OK(ctx.comm, pcclSynchronizeSharedState(ctx.comm, &s, PCCL_SHARED_STATE_SYNC_STRATEGY_ENFORCE_POPULAR, &si));
    revision = s.revision;
    return si;
}

} // namespace

TEST_CASE("shared state: only the dirty chunk of a large entry moves, to a drifted or a lagging peer",
          "[shared_state][chunks]") {
    isolated(90, [&] {
        EmbeddedMaster master;
        ClusterOptions opts;
        opts.groups = {0, 0, 0};
        runPeers(master, opts, [&](PeerCtx &ctx) {
            std::vector<float> w(5 * kChunk / sizeof(float) + 3, 1.0f);  // six chunks, the last one short
            uint64_t rev = 1;
            PT_CHECK_EQ(syncOne(ctx, w, rev).rx_bytes, 0u);
            // Drift: peer 2 changes one element of chunk 3; the others win and repair only that chunk.
            if (ctx.rank == 2) w[3 * kChunk / sizeof(float) + 10] = 42.0f;
            rev = 2;
            auto si = syncOne(ctx, w, rev);
            PT_CHECK_EQ(si.rx_bytes, ctx.rank == 2 ? kChunk : 0u);
            for (float x : w) PT_CHECK(x == 1.0f);
            // Lagging: peers 0 and 1 advance (change the short last chunk and the revision);
            // peer 2 stays at revision 2 and is dragged along, receiving that chunk only.
            if (ctx.rank != 2) {
                w.back() = 5.0f;
                rev = 3;
            }
            si = syncOne(ctx, w, rev);
            PT_CHECK_EQ(rev, 3u);
            PT_CHECK(w.back() == 5.0f);
            PT_CHECK_EQ(si.rx_bytes, ctx.rank == 2 ? 3 * sizeof(float) : 0u);
            // The two sources served that chunk between them.
            PT_CHECK(ctx.rank == 2 ? si.tx_bytes == 0 : si.tx_bytes <= 3 * sizeof(float));
        });
    });
}

TEST_CASE("shared state: every dtype at odd sizes and unaligned addresses reaches a joiner bit for bit",
          "[shared_state][chunks]") {
    isolated(90, [&] {
        EmbeddedMaster master;
        ClusterOptions opts;
        opts.groups = {0, 0, 0};
        runPeers(master, opts, [&](PeerCtx &ctx) {
            std::vector<std::vector<uint8_t>> storage;
            std::vector<pcclTensorInfo_t> infos;
            std::vector<std::string> names;
            size_t expect = 0;
            for (pcclDataType_t t : kAllDtypes) names.push_back(dtypeName(t));
            for (size_t k = 0; k < std::size(kAllDtypes); ++k) {
                const pcclDataType_t t = kAllDtypes[k];
                const size_t count = 1000003 + 17 * k;  // > 1 chunk for the wide types
                storage.emplace_back(count * dtypeSize(t) + 1);
                uint8_t *base = storage.back().data() + 1;  // deliberately misaligned
                for (size_t i = 0; i < count * dtypeSize(t); ++i)
                    base[i] = ctx.rank == 2 ? 0 : static_cast<uint8_t>(i * 31 + k);
                infos.push_back(pcclTensorInfo_t{names[k].c_str(), base, count, t, pcclDeviceCpu, false});
                expect += count * dtypeSize(t);
            }
            pcclSharedState_t s{1, infos.size(), infos.data()};
            pcclSharedStateSyncInfo_t si{};
            PT_OK(ctx.comm, pcclSynchronizeSharedState(ctx.comm, &s, PCCL_SHARED_STATE_SYNC_STRATEGY_ENFORCE_POPULAR, &si));
            PT_CHECK_EQ(si.rx_bytes, ctx.rank == 2 ? expect : 0u);
            for (size_t k = 0; k < infos.size(); ++k) {
                const auto *base = static_cast<const uint8_t *>(infos[k].data);
                for (size_t i = 0; i < infos[k].count * dtypeSize(infos[k].datatype); ++i)
                    if (base[i] != static_cast<uint8_t>(i * 31 + k))
                        PT_CHECK_MSG(false, "entry " << names[k] << " byte " << i << " differs");
            }
        });
    });
}

TEST_CASE("shared state: peer groups sync at the same time, each to its own popular content",
          "[shared_state][chunks]") {
    isolated(90, [&] {
        EmbeddedMaster master;
        ClusterOptions opts;
        opts.groups = {0, 0, 0, 1, 1, 1};
        runPeers(master, opts, [&](PeerCtx &ctx) {
            // Group 0 holds 1.0 (peer 2 drifted), group 1 holds 2.0 (peer 5 drifted).
            const float popular = ctx.group == 0 ? 1.0f : 2.0f;
            std::vector<float> w(300000, ctx.rank % 3 == 2 ? 9.0f : popular);
            uint64_t rev = 10 + ctx.group;  // groups keep their own revisions
            auto si = syncOne(ctx, w, rev);
            PT_CHECK_EQ(rev, 10u + ctx.group);
            for (float x : w) PT_CHECK(x == popular);
            PT_CHECK_EQ(si.rx_bytes, ctx.rank % 3 == 2 ? w.size() * sizeof(float) : 0u);
        });
    });
}

TEST_CASE("shared state: many steps in a row advance the revision and move nothing while peers agree",
          "[shared_state][chunks]") {
    isolated(90, [&] {
        EmbeddedMaster master;
        ClusterOptions opts;
        opts.groups = {0, 0, 0};
        runPeers(master, opts, [&](PeerCtx &ctx) {
            std::vector<float> w(kChunk / sizeof(float) * 2, 0.5f);
            uint64_t rev = 100;
            for (int step = 0; step < 8; ++step) {
                for (size_t i = step; i < w.size(); i += 4099) w[i] += 1.0f;  // the same update everywhere
                auto si = syncOne(ctx, w, rev);
                PT_CHECK_EQ(rev, 100u + static_cast<uint64_t>(step));
                PT_CHECK_EQ(si.rx_bytes, 0u);
                PT_CHECK_EQ(si.tx_bytes, 0u);
                ++rev;
            }
        });
    });
}
