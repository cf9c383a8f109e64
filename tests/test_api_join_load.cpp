// Public API: a peer that joins while the accepted peers have several all-reduces in flight.
// Peers are threads of this process; the master is the pccl-master daemon, whose log says when the
// joiner has registered.
#include "support/cluster.h"
#include "support/fault.h"

#include <catch2/catch.hpp>

#include <csignal>
#include <cstring>
#include <vector>

using namespace pccl_test;

namespace {

constexpr size_t kOps = 4;                     // tags 0..3
constexpr size_t kCount = 4u * 1024u * 1024u;  // 16 MiB of f32 per operation
constexpr size_t kEarlyOps = 2;                // tags rank 1 starts before the joiner registers
constexpr uint64_t kAfterTag = 10;             // the first all-reduce with the joiner
constexpr size_t kAfterCount = 1u << 20;
int value(int rank) { return rank == 0 ? 1 : rank == 1 ? 10 : 100; }

} // namespace

TEST_CASE("join: a peer that connects while collectives are in flight waits for the next admission vote; the "
          "in-flight operations finish on the old world, peers-pending says so, and the update admits it",
          "[api][join]") {
    isolated(60, [&] {
        DaemonMaster daemon;
        auto release = [&] { daemon.process().signal(SIGKILL); };
        std::atomic<int> started{0};
        std::atomic<bool> registered{false};
        ClusterOptions opts;
        opts.groups = {0, 0};
        opts.timeout_s = 45;
        PeerThreads accepted(daemon.address(), opts, [&](PeerCtx &ctx) {
            // Rank 0 starts every tag now; rank 1 starts two now (their data moves while the joiner
            // connects) and two only once the master has seen the joiner: those two are certainly
            // in flight when it registers and run entirely while it waits for admission.
            std::vector<std::vector<float>> bufs(kOps, std::vector<float>(kCount));
            std::vector<pcclAsyncReduceOp_t> handles(kOps);
            auto start = [&](size_t k) {
                fillPattern(bufs[k], value(ctx.rank) + static_cast<int>(k));
                const pcclReduceDescriptor_t d = makeDescriptor(kCount, pcclFloat, pcclSum, k);
                PT_OK(ctx.comm, pcclAllReduceAsync(bufs[k].data(), bufs[k].data(), &d, ctx.comm, &handles[k]));
            };
            const size_t early = ctx.rank == 0 ? kOps : kEarlyOps;
            for (size_t k = 0; k < early; ++k) start(k);
            ++started;
            ctx.waitFor([&] { return registered.load(); }, "the joiner to register", 30);
            for (size_t k = early; k < kOps; ++k) start(k);
            for (size_t k = 0; k < kOps; ++k) {
                pcclReduceInfo_t info{};
                const pcclResult_t r = pcclAwaitAsyncReduce(&handles[k], &info);
                PT_CHECK_MSG(r == pcclSuccess, "in-flight tag " << k << ": " << describe(r, ctx.comm));
                PT_CHECK_EQ(info.local_world_size, 2u);
                const std::string diff = checkPattern(bufs[k].data(), kCount, value(0) + value(1) + 2 * static_cast<int>(k), 2);
                PT_CHECK_MSG(diff.empty(), "tag " << k << ": " << diff);
            }

            bool pending = false;
            PT_OK(ctx.comm, pcclArePeersPending(ctx.comm, &pending));
            PT_CHECK_MSG(pending, "peers-pending said nobody waits while the joiner does");
            PT_OK(ctx.comm, pcclUpdateTopology(ctx.comm));
            PT_CHECK_EQ(attribute(ctx.comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE), 3);
            std::vector<float> buf(kAfterCount);
            fillPattern(buf, value(ctx.rank));
            const pcclReduceDescriptor_t d = makeDescriptor(kAfterCount, pcclFloat, pcclSum, kAfterTag);
            pcclReduceInfo_t info{};
            PT_OK(ctx.comm, pcclAllReduce(buf.data(), buf.data(), &d, ctx.comm, &info));
            PT_CHECK_EQ(info.local_world_size, 3u);
            const std::string diff = checkPattern(buf.data(), kAfterCount, value(0) + value(1) + value(2), 3);
            PT_CHECK_MSG(diff.empty(), "the first all-reduce with the joiner: " << diff);
        });
        accepted.onAbort(release);
        PT_CHECK_MSG(waitUntil([&] { return started.load() == 2 || accepted.failed(); }, 30),
                     "the accepted peers did not start their all-reduces");
        PT_CHECK_MSG(!accepted.failed(), "an accepted peer failed");

        ClusterOptions jopts;
        jopts.groups = {0};
        jopts.expected_world = 3;
        jopts.timeout_s = 40;
        PeerThreads joiner(daemon.address(), jopts, [&](PeerCtx &ctx) {
            PT_CHECK_EQ(attribute(ctx.comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE), 3);
            std::vector<float> buf(kAfterCount);
            fillPattern(buf, value(2));
            const pcclReduceDescriptor_t d = makeDescriptor(kAfterCount, pcclFloat, pcclSum, kAfterTag);
            pcclReduceInfo_t info{};
            PT_OK(ctx.comm, pcclAllReduce(buf.data(), buf.data(), &d, ctx.comm, &info));
            PT_CHECK_EQ(info.local_world_size, 3u);
            const std::string diff = checkPattern(buf.data(), kAfterCount, value(0) + value(1) + value(2), 3);
            PT_CHECK_MSG(diff.empty(), "the joiner's first all-reduce: " << diff);
        });
        joiner.onAbort(release);
        // The daemon logs every registration: the two accepted peers, then the joiner.
        int registrations = 0;
        while (registrations < 3) {
            auto line = daemon.process().readLine(20);
            PT_CHECK_MSG(line.has_value(), "the daemon did not report the joiner; its stdout:\n" << daemon.process().transcript());
            if (line->find("waiting for admission") != std::string::npos) ++registrations;
        }
        registered = true;
        accepted.join(release);
        joiner.join(release);
    });
}
