// Public API: joining, voting, world-size attributes, leaving, IPv6.
#include "support/cluster.h"
#include "support/dtypes.h"

#include <catch2/catch.hpp>

#include <atomic>
#include <thread>
#include <vector>

using namespace pccl_test;

namespace {

// A blocking f32 sum of `count` elements whose element j is value + j % 5; checks against expected_sum_base
// (the sum of the contributing peers' `value`) and the reported group size.
void checkedF32Sum(const pcclComm_t *comm, float value, float expected_value_sum, int contributors, size_t count,
                   uint64_t tag, uint32_t expected_group_size) {
    std::vector<float> send(count), recv(count, -1.0f);
    for (size_t j = 0; j < count; ++j) send[j] = value + static_cast<float>(j % 5);
    const pcclReduceDescriptor_t d = makeDescriptor(count, pcclFloat, pcclSum, tag);
    pcclReduceInfo_t info{};
    PT_OK(comm, pcclAllReduce(send.data(), recv.data(), &d, comm, &info));
    PT_CHECK_EQ(info.local_world_size, expected_group_size);
    for (size_t j = 0; j < count; ++j) {
        const float want = expected_value_sum + static_cast<float>(contributors) * static_cast<float>(j % 5);
        PT_CHECK_MSG(recv[j] == want, "element " << j << " is " << recv[j] << ", expected " << want);
    }
}

} // namespace

TEST_CASE("membership: the first peer of a run is admitted alone", "[api][membership]") {
    isolated(60, [&] {
        EmbeddedMaster master;
        runWithin(30, [&] {
            pcclComm_t *comm = createComm(master.address());
            CommGuard guard(comm);
            PT_OK(comm, pcclConnect(comm));
            PT_CHECK_EQ(attribute(comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE), 1);
            PT_CHECK_EQ(attribute(comm, PCCL_ATTRIBUTE_PEER_GROUP_WORLD_SIZE), 1);
            PT_CHECK_EQ(attribute(comm, PCCL_ATTRIBUTE_NUM_DISTINCT_PEER_GROUPS), 1);
            PT_CHECK_EQ(attribute(comm, PCCL_ATTRIBUTE_LARGEST_PEER_GROUP_WORLD_SIZE), 1);
            bool pending = true;
            PT_OK(comm, pcclArePeersPending(comm, &pending));
            PT_CHECK(!pending);
            PT_OK(comm, pcclUpdateTopology(comm)); // a vote of one
            PT_CHECK_EQ(attribute(comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE), 1);
            // A group of one reduces nothing (PCCL 1.0): pcclTooFewPeers, the buffer untouched.
            std::vector<int32_t> buf{5, -6, 7};
            const pcclReduceDescriptor_t d = makeDescriptor(buf.size(), pcclInt32, pcclAvg, 1);
            PT_EXPECT_RESULT(comm, pcclTooFewPeers, pcclAllReduce(buf.data(), buf.data(), &d, comm, nullptr));
            PT_CHECK(buf == (std::vector<int32_t>{5, -6, 7}));
        }, "single peer", [&] { master.destroy(); });
    });
}

TEST_CASE("membership: a second peer is admitted by the vote of the accepted peer", "[api][membership]") {
    isolated(60, [&] {
        EmbeddedMaster master;
        runWithin(40, [&] {
            std::atomic<int> b_result{-1};
            pcclComm_t *b = createComm(master.address());
            CommGuard b_guard(b);
            std::jthread b_thread; // declared after b_guard: joined before b is destroyed
            pcclComm_t *a = createComm(master.address());
            CommGuard a_guard(a); // destroyed first on failure, which releases a waiting B
            PT_OK(a, pcclConnect(a));
            b_thread = std::jthread([&] { b_result = pcclConnect(b); });

            // B registers and waits; A sees it pending, and B stays blocked until A votes.
            bool pending = false;
            const bool seen = waitUntil([&] {
                PT_OK(a, pcclArePeersPending(a, &pending));
                return pending;
            }, 20);
            PT_CHECK_MSG(seen, "the accepted peer never saw the connecting peer as pending");
            PT_CHECK_MSG(b_result.load() == -1, "pcclConnect of the second peer returned "
                                                    << resultName(static_cast<pcclResult_t>(b_result.load()))
                                                    << " before the accepted peer voted");
            PT_CHECK_EQ(attribute(a, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE), 1);

            PT_OK(a, pcclUpdateTopology(a));
            PT_CHECK_MSG(waitUntil([&] { return b_result.load() != -1; }, 20),
                         "pcclConnect of the second peer did not return after the vote");
            PT_CHECK_MSG(b_result.load() == pcclSuccess,
                         "pcclConnect returned " << describe(static_cast<pcclResult_t>(b_result.load()), b));
            b_thread.join();
            for (pcclComm_t *c : {a, b}) {
                PT_CHECK_EQ(attribute(c, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE), 2);
                PT_CHECK_EQ(attribute(c, PCCL_ATTRIBUTE_PEER_GROUP_WORLD_SIZE), 2);
            }
            // The two can reduce together.
            std::string b_error;
            b_thread = std::jthread([&] {
                try {
                    checkedF32Sum(b, 20.0f, 30.0f, 2, 4099, 7, 2);
                } catch (const std::exception &e) {
                    b_error = e.what();
                }
            });
            checkedF32Sum(a, 10.0f, 30.0f, 2, 4099, 7, 2);
            b_thread.join();
            PT_CHECK_MSG(b_error.empty(), "second peer: " << b_error);
        }, "admission by vote", [&] { master.destroy(); });
    });
}

TEST_CASE("membership: pcclArePeersPending is false, then true while a peer waits, and the same on every voter",
          "[api][membership]") {
    isolated(60, [&] {
        EmbeddedMaster master;
        std::atomic<bool> start_newcomer{false};
        ClusterOptions first;
        first.groups = {0, 0};
        first.timeout_s = 30;
        PeerThreads accepted(master.address(), first, [&](PeerCtx &ctx) {
            bool pending = true;
            PT_OK(ctx.comm, pcclArePeersPending(ctx.comm, &pending));
            PT_CHECK_MSG(!pending, "peers pending before anyone else connected");
            ctx.barrier();
            start_newcomer = true;
            // Both voters loop in lockstep: every vote gives both the same answer.
            const auto deadline = Clock::now() + std::chrono::seconds(20);
            for (;;) {
                PT_OK(ctx.comm, pcclArePeersPending(ctx.comm, &pending));
                if (pending) break;
                PT_CHECK_MSG(Clock::now() < deadline, "the waiting peer never showed up as pending");
            }
            PT_OK(ctx.comm, pcclUpdateTopology(ctx.comm));
            PT_CHECK_EQ(attribute(ctx.comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE), 3);
            PT_OK(ctx.comm, pcclArePeersPending(ctx.comm, &pending)); // the newcomer votes too
            PT_CHECK_MSG(!pending, "peers still pending after the vote admitted the newcomer");
        });
        PT_CHECK(waitUntil([&] { return start_newcomer.load() || accepted.failed(); }, 20));
        ClusterOptions late;
        late.groups = {0};
        late.expected_world = 3;
        late.timeout_s = 30;
        PeerThreads newcomer(master.address(), late, [&](PeerCtx &ctx) {
            bool pending = true;
            PT_OK(ctx.comm, pcclArePeersPending(ctx.comm, &pending));
            PT_CHECK(!pending);
        });
        accepted.join([&] { master.destroy(); });
        newcomer.join([&] { master.destroy(); });
    });
}

TEST_CASE("membership: world-size attributes with peer groups of sizes 2 and 1; collectives stay in their group, "
          "the group of one gets pcclTooFewPeers",
          "[api][membership]") {
    isolated(60, [&] {
        EmbeddedMaster master;
        ClusterOptions opts;
        opts.groups = {0, 0, 1};
        runPeers(master, opts, [&](PeerCtx &ctx) {
            const int group_size = ctx.group == 0 ? 2 : 1;
            PT_CHECK_EQ(attribute(ctx.comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE), 3);
            PT_CHECK_EQ(attribute(ctx.comm, PCCL_ATTRIBUTE_PEER_GROUP_WORLD_SIZE), group_size);
            PT_CHECK_EQ(attribute(ctx.comm, PCCL_ATTRIBUTE_NUM_DISTINCT_PEER_GROUPS), 2);
            PT_CHECK_EQ(attribute(ctx.comm, PCCL_ATTRIBUTE_LARGEST_PEER_GROUP_WORLD_SIZE), 2);
            // Values 1 and 10 (group 0): a group-0 sum is 11. The peer alone in group 1 reduces nothing.
            if (ctx.group == 1) {
                std::vector<float> buf(10007, 100.0f);
                const pcclReduceDescriptor_t d = makeDescriptor(buf.size(), pcclFloat, pcclSum, 3);
                PT_EXPECT_RESULT(ctx.comm, pcclTooFewPeers, pcclAllReduce(buf.data(), buf.data(), &d, ctx.comm, nullptr));
                return;
            }
            const float value = ctx.rank == 0 ? 1.0f : 10.0f;
            checkedF32Sum(ctx.comm, value, 11.0f, group_size, 10007, 3, static_cast<uint32_t>(group_size));
        });
    });
}

TEST_CASE("membership: a graceful leave lowers the world size seen by the others after their next update topology",
          "[api][membership]") {
    isolated(60, [&] {
        EmbeddedMaster master;
        ClusterOptions opts;
        opts.groups = {0, 0, 0};
        runPeers(master, opts, [&](PeerCtx &ctx) {
            checkedF32Sum(ctx.comm, 1.0f, 3.0f, 3, 1000, 0, 3);
            ctx.barrier();
            if (ctx.rank == 2) {
                PT_OK(ctx.comm, pcclDestroyCommunicator(ctx.comm));
                ctx.comm = nullptr;
                ctx.barrier();
                return;
            }
            ctx.barrier(); // the leaver's pcclDestroyCommunicator has returned
            PT_OK(ctx.comm, pcclUpdateTopology(ctx.comm));
            PT_CHECK_EQ(attribute(ctx.comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE), 2);
            PT_CHECK_EQ(attribute(ctx.comm, PCCL_ATTRIBUTE_PEER_GROUP_WORLD_SIZE), 2);
            checkedF32Sum(ctx.comm, 1.0f, 2.0f, 2, 1000, 1, 2);
        });
    });
}

TEST_CASE("membership: a master listening on IPv6 ::1 serves peers connecting over IPv6", "[api][membership][ipv6]") {
    isolated(60, [&] {
        EmbeddedMaster master(/*ipv6=*/true);
        ClusterOptions opts;
        opts.groups = {0, 0};
        runPeers(master, opts, [&](PeerCtx &ctx) {
            PT_CHECK_EQ(attribute(ctx.comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE), 2);
            checkedF32Sum(ctx.comm, static_cast<float>(ctx.rank + 1), 3.0f, 2, 65537, 0, 2);
        });
    });
}

TEST_CASE("membership: optimize topology measures the links within its budget and keeps the group working",
          "[api][membership]") {
    isolated(60, [&] {
        EmbeddedMaster master;
        ClusterOptions opts;
        opts.groups = {0, 0, 0};
        runPeers(master, opts, [&](PeerCtx &ctx) {
            const auto t0 = Clock::now();
            PT_OK(ctx.comm, pcclOptimizeTopology(ctx.comm));
            const double took = std::chrono::duration<double>(Clock::now() - t0).count();
            // Two probe windows of 500 ms, the report grace and a possible rewiring.
            PT_CHECK_MSG(took > 0.9 && took < 6.0, "pcclOptimizeTopology took " << took << " s");
            checkedF32Sum(ctx.comm, static_cast<float>(ctx.rank), 3.0f, 3, 100003, 0, 3);
            PT_CHECK_EQ(attribute(ctx.comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE), 3);
        });
    });
}

TEST_CASE("membership: a peer joins a group that is already reducing", "[api][membership]") {
    isolated(60, [&] {
        // Two peers reduce, a third joins between two operations, then all three reduce.
        EmbeddedMaster master;
        std::atomic<bool> start_newcomer{false};
        ClusterOptions first;
        first.groups = {0, 0};
        PeerThreads accepted(master.address(), first, [&](PeerCtx &ctx) {
            checkedF32Sum(ctx.comm, 1.0f, 2.0f, 2, 5000, 0, 2);
            ctx.barrier();
            start_newcomer = true;
            awaitWorld(ctx.comm, 3, 30);
            checkedF32Sum(ctx.comm, 1.0f, 3.0f, 3, 5000, 0, 3);
        });
        PT_CHECK(waitUntil([&] { return start_newcomer.load() || accepted.failed(); }, 20));
        ClusterOptions late;
        late.groups = {0};
        late.expected_world = 3;
        PeerThreads newcomer(master.address(), late,
                             [&](PeerCtx &ctx) { checkedF32Sum(ctx.comm, 1.0f, 3.0f, 3, 5000, 0, 3); });
        accepted.join([&] { master.destroy(); });
        newcomer.join([&] { master.destroy(); });
    });
}
