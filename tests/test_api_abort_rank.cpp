// Public API: the rank attribute and pcclAbortCommunicator (issue 16, items 11 and 12).
#include "support/cluster.h"
#include "support/dtypes.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

using namespace pccl_test;

TEST_CASE("rank: every peer of a group has a distinct rank 0..N-1 and lists the members in rank order; ranks and "
          "members follow the ring after a peer leaves",
          "[api][membership]") {
    isolated(90, [&] {
        EmbeddedMaster master;
        std::mutex mu;
        std::set<int> before, after;
        std::atomic<int> left{0};
        ClusterOptions opts;
        opts.groups = {0, 0, 0};
        opts.timeout_s = 60;
        PeerThreads peers(master.address(), opts, [&](PeerCtx &ctx) {
            const int r = attribute(ctx.comm, PCCL_ATTRIBUTE_RANK);
            PT_CHECK_MSG(r >= 0 && r < 3, "rank " << r);
            // The member list: three entries in rank order, this peer at its rank, distinct ids,
            // loopback data addresses with a port; capacity 0 only counts.
            size_t n = 0;
            PT_OK(ctx.comm, pcclGetPeerGroupMembers(ctx.comm, nullptr, 0, &n));
            PT_CHECK_EQ(n, size_t{3});
            std::vector<pcclMemberInfo_t> members(4);
            PT_OK(ctx.comm, pcclGetPeerGroupMembers(ctx.comm, members.data(), members.size(), &n));
            PT_CHECK_EQ(n, size_t{3});
            std::set<std::vector<uint8_t>> ids;
            for (size_t i = 0; i < 3; ++i) {
                PT_CHECK_EQ(members[i].rank, static_cast<uint32_t>(i));
                PT_CHECK_EQ(members[i].peer_group, 0u);
                PT_CHECK(members[i].data_address.inet.protocol == inetIPv4);
                PT_CHECK(members[i].data_address.inet.ipv4.data[0] == 127);
                PT_CHECK(members[i].data_address.port != 0);
                ids.insert(std::vector<uint8_t>(members[i].uuid.data, members[i].uuid.data + 16));
            }
            PT_CHECK_EQ(ids.size(), size_t{3});
            PT_EXPECT_RESULT(ctx.comm, pcclInvalidArgument, pcclGetPeerGroupMembers(ctx.comm, nullptr, 1, &n));
            PT_EXPECT_RESULT(ctx.comm, pcclInvalidArgument, pcclGetPeerGroupMembers(ctx.comm, members.data(), 3, nullptr));
            {
                std::lock_guard lock(mu);
                before.insert(r);
            }
            ctx.barrier();
            if (ctx.rank == 2) {  // this thread leaves: the others are renumbered 0..1
                PT_OK(ctx.comm, pcclDestroyCommunicator(ctx.comm));
                ctx.comm = nullptr;
                ctx.destroy_comm = false;
                ++left;
                return;
            }
            ctx.waitFor([&] { return left.load() == 1; }, "the third peer to leave");
            ctx.waitFor([&] { return attribute(ctx.comm, PCCL_ATTRIBUTE_PEER_GROUP_WORLD_SIZE) == 2; },
                        "the group to shrink to two");
            const int r2 = attribute(ctx.comm, PCCL_ATTRIBUTE_RANK);
            size_t n2 = 0;
            std::vector<pcclMemberInfo_t> left(3);
            PT_OK(ctx.comm, pcclGetPeerGroupMembers(ctx.comm, left.data(), left.size(), &n2));
            PT_CHECK_EQ(n2, size_t{2});
            PT_CHECK_EQ(left[static_cast<size_t>(r2)].rank, static_cast<uint32_t>(r2));
            {
                std::lock_guard lock(mu);
                after.insert(r2);
            }
        });
        peers.join();
        PT_CHECK(before == (std::set<int>{0, 1, 2}));
        PT_CHECK(after == (std::set<int>{0, 1}));
    });
}

TEST_CASE("abort: pcclAbortCommunicator from another thread ends a blocked all-reduce and a blocked vote with "
          "pcclAborted within a second, restores the in-place input, and every later call returns pcclAborted",
          "[api][fault]") {
    isolated(90, [&] {
        EmbeddedMaster master;
        ClusterOptions opts;
        opts.groups = {0, 0, 0};
        opts.timeout_s = 60;
        std::atomic<int> aborted{0};
        PeerThreads peers(master.address(), opts, [&](PeerCtx &ctx) {
            if (ctx.rank == 2) {
                // Calls nothing until the others are done: were all three blocked, the master
                // would fail the calls at once as misordered (pcclMismatch).
                ctx.waitFor([&] { return aborted.load() == 2; }, "the two aborts");
                return;
            }
            if (ctx.rank == 0) {
                // Blocks in tag 1, which the other peers never start.
                std::vector<float> buf(4096, 3.0f);
                const pcclReduceDescriptor_t d = makeDescriptor(buf.size(), pcclFloat, pcclSum, 1);
                std::thread aborter([&] {
                    std::this_thread::sleep_for(std::chrono::milliseconds(300));
                    pcclAbortCommunicator(ctx.comm);
                });
                const auto t0 = std::chrono::steady_clock::now();
                const pcclResult_t r = pcclAllReduce(buf.data(), buf.data(), &d, ctx.comm, nullptr);
                const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
                aborter.join();
                PT_CHECK_MSG(r == pcclAborted, "all-reduce: " << describe(r, ctx.comm));
                PT_CHECK_MSG(took < 1.3, "returned after " << took << " s");
                for (float v : buf) PT_CHECK(v == 3.0f);
                bool pending = false;
                PT_EXPECT_RESULT(ctx.comm, pcclAborted, pcclArePeersPending(ctx.comm, &pending));
                PT_EXPECT_RESULT(ctx.comm, pcclAborted, pcclAllReduce(buf.data(), buf.data(), &d, ctx.comm, nullptr));
                PT_OK(ctx.comm, pcclAbortCommunicator(ctx.comm));  // idempotent
                ++aborted;
            } else {
                // Blocks in an optimize vote that the other peers never cast.
                std::thread aborter([&] {
                    std::this_thread::sleep_for(std::chrono::milliseconds(300));
                    pcclAbortCommunicator(ctx.comm);
                });
                const pcclResult_t r = pcclOptimizeTopology(ctx.comm);
                aborter.join();
                PT_CHECK_MSG(r == pcclAborted, "optimize: " << describe(r, ctx.comm));
                int world = 0;
                PT_EXPECT_RESULT(ctx.comm, pcclAborted, pcclGetAttribute(ctx.comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE, &world));
                ++aborted;
            }
        });
        peers.join();
    });
}

TEST_CASE("abort: a communicator aborted before it connected refuses to connect, and NULL is an invalid argument",
          "[api][args]") {
    isolated(30, [&] {
        EmbeddedMaster master;
        pcclComm_t *comm = createComm(master.address());
        PT_OK(comm, pcclAbortCommunicator(comm));
        PT_EXPECT_RESULT(comm, pcclAborted, pcclConnect(comm));
        PT_OK(comm, pcclDestroyCommunicator(comm));
        PT_EXPECT_RESULT(nullptr, pcclInvalidArgument, pcclAbortCommunicator(nullptr));
    });
}
