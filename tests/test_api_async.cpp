// Public API: concurrent all-reduces by tag, pcclAllReduceMultipleWithRetry, and the async rules.
#include "support/cluster.h"
#include "support/dtypes.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <numeric>
#include <vector>

using namespace pccl_test;

namespace {

// One operation of a batch: its inputs for every rank and the reference result.
struct Op {
    pcclDataType_t t;
    pcclRedOp_t op;
    size_t count;
    uint64_t tag;
    bool in_place;
    std::vector<uint8_t> send;
    std::vector<uint8_t> recv;
    std::vector<uint8_t> ref;
};

// A deterministic mix of dtypes, ops and counts (same on every rank); inputs filled for `rank`.
std::vector<Op> makeBatch(size_t how_many, int rank, int n, uint64_t first_tag) {
    const size_t counts[] = {1, 3, 1000, 65536, 4097, 100000, 17};
    std::vector<Op> ops;
    for (size_t k = 0; k < how_many; ++k) {
        Op o;
        o.t = kAllDtypes[(k * 5) % 12];
        o.op = kAllOps[(k * 3) % 5];
        o.count = counts[k % 7];
        o.tag = first_tag + k;
        o.in_place = k % 2 == 1;
        const size_t bytes = o.count * dtypeSize(o.t);
        std::vector<std::vector<uint8_t>> inputs(static_cast<size_t>(n), std::vector<uint8_t>(bytes));
        std::vector<const void *> ptrs;
        for (int r = 0; r < n; ++r) {
            // Shift the pattern per operation so that a result delivered to the wrong tag is caught.
            for (size_t i = 0; i < o.count; ++i)
                storeInt(o.t, inputs[static_cast<size_t>(r)].data(), i, smallInput(o.t, o.op, r, i + k));
            ptrs.push_back(inputs[static_cast<size_t>(r)].data());
        }
        o.ref.resize(bytes);
        referenceReduce(o.t, o.op, ptrs, o.count, o.ref.data());
        o.send = inputs[static_cast<size_t>(rank)];
        o.recv = o.in_place ? o.send : std::vector<uint8_t>(bytes, 0xAB);
        ops.push_back(std::move(o));
    }
    return ops;
}

const void *sendPtr(Op &o) { return o.in_place ? o.recv.data() : o.send.data(); }

void checkOp(const Op &o, const char *context) {
    const std::string diff = compareWithReference(o.t, o.op, o.recv.data(), o.ref.data(), o.count);
    PT_CHECK_MSG(diff.empty(), context << ", tag " << o.tag << ": " << diff);
}

} // namespace

TEST_CASE("async all-reduce: many tags in flight, started and awaited in different orders, are all correct",
          "[api][allreduce][async]") {
    isolated(80, [&] {
        for (int n : {2, 3}) {
            ScopedContext context(std::to_string(n) + " peers");
            EmbeddedMaster master;
            ClusterOptions opts;
            opts.groups.assign(static_cast<size_t>(n), 0);
            runPeers(master, opts, [&](PeerCtx &ctx) {
                auto ops = makeBatch(12, ctx.rank, n, 500);
                std::vector<size_t> start_order(ops.size()), await_order(ops.size());
                std::iota(start_order.begin(), start_order.end(), 0);
                std::iota(await_order.begin(), await_order.end(), 0);
                // rank 0: start forward, await forward; rank 1: start reversed, await reversed;
                // rank 2: start forward, await odd-even interleaved.
                if (ctx.rank == 1) {
                    std::reverse(start_order.begin(), start_order.end());
                    std::reverse(await_order.begin(), await_order.end());
                } else if (ctx.rank == 2) {
                    std::stable_partition(await_order.begin(), await_order.end(), [](size_t k) { return k % 2 == 1; });
                }
                std::vector<pcclAsyncReduceOp_t> handles(ops.size());
                for (size_t k : start_order) {
                    const pcclReduceDescriptor_t d = makeDescriptor(ops[k].count, ops[k].t, ops[k].op, ops[k].tag);
                    PT_OK(ctx.comm, pcclAllReduceAsync(sendPtr(ops[k]), ops[k].recv.data(), &d, ctx.comm, &handles[k]));
                    PT_CHECK_EQ(handles[k].tag, ops[k].tag);
                    PT_CHECK(handles[k].comm == ctx.comm);
                }
                for (size_t k : await_order) {
                    pcclReduceInfo_t info{};
                    PT_OK(ctx.comm, pcclAwaitAsyncReduce(&handles[k], &info));
                    PT_CHECK_EQ(info.local_world_size, static_cast<uint32_t>(n));
                }
                for (auto &o : ops) checkOp(o, "async");
            });
        }
    });
}

TEST_CASE("async all-reduce: a tag already in flight is rejected with pcclInvalidUsage without disturbing the first",
          "[api][allreduce][async]") {
    isolated(60, [&] {
        EmbeddedMaster master;
        ClusterOptions opts;
        opts.groups = {0, 0};
        std::atomic<bool> first_started{false};
        runPeers(master, opts, [&](PeerCtx &ctx) {
            const size_t count = 50000;
            std::vector<int32_t> send(count), recv(count, -1);
            for (size_t i = 0; i < count; ++i) send[i] = static_cast<int32_t>(i) + ctx.rank;
            const pcclReduceDescriptor_t d = makeDescriptor(count, pcclInt32, pcclSum, 77);
            if (ctx.rank == 1) {
                // Start only after peer 0 started and was refused a duplicate: its tag 77 cannot have completed.
                ctx.waitFor([&] { return first_started.load(); }, "peer 0 to start tag 77");
            }
            pcclAsyncReduceOp_t h{};
            PT_OK(ctx.comm, pcclAllReduceAsync(send.data(), recv.data(), &d, ctx.comm, &h));
            if (ctx.rank == 0) {
                std::vector<int32_t> other_send(count, 5), other_recv(count, -2);
                pcclAsyncReduceOp_t h2{};
                PT_EXPECT_RESULT(ctx.comm, pcclInvalidUsage,
                                 pcclAllReduceAsync(other_send.data(), other_recv.data(), &d, ctx.comm, &h2));
                PT_CHECK(std::string(pcclGetLastErrorMessage(ctx.comm)).size() > 0);
                // The blocking variant is refused the same way (it would otherwise wait for peer 1 forever).
                PT_EXPECT_RESULT(ctx.comm, pcclInvalidUsage,
                                 pcclAllReduce(other_send.data(), other_recv.data(), &d, ctx.comm, nullptr));
                PT_CHECK_MSG(std::all_of(other_recv.begin(), other_recv.end(), [](int32_t v) { return v == -2; }),
                             "the rejected call wrote into its recvbuf");
                first_started = true;
            }
            PT_OK(ctx.comm, pcclAwaitAsyncReduce(&h, nullptr));
            for (size_t i = 0; i < count; ++i) PT_CHECK_EQ(recv[i], static_cast<int32_t>(2 * i + 1));
        });
    });
}

TEST_CASE("async all-reduce: awaiting a handle twice, or a tag that was never started, is pcclInvalidUsage",
          "[api][allreduce][async]") {
    isolated(60, [&] {
        EmbeddedMaster master;
        ClusterOptions opts;
        opts.groups = {0, 0};
        runPeers(master, opts, [&](PeerCtx &ctx) {
            std::vector<float> buf(1000, 1.0f);
            const pcclReduceDescriptor_t d = makeDescriptor(buf.size(), pcclFloat, pcclSum, 9);
            pcclAsyncReduceOp_t h{};
            PT_OK(ctx.comm, pcclAllReduceAsync(buf.data(), buf.data(), &d, ctx.comm, &h));
            PT_OK(ctx.comm, pcclAwaitAsyncReduce(&h, nullptr));
            PT_CHECK(buf[0] == 2.0f && buf[999] == 2.0f);
            PT_EXPECT_RESULT(ctx.comm, pcclInvalidUsage, pcclAwaitAsyncReduce(&h, nullptr));
            pcclAsyncReduceOp_t never{};
            never.comm = ctx.comm;
            never.tag = 123456;
            PT_EXPECT_RESULT(ctx.comm, pcclInvalidUsage, pcclAwaitAsyncReduce(&never, nullptr));
            PT_CHECK(std::string(pcclGetLastErrorMessage(ctx.comm)).size() > 0);
            // The communicator still works, and the tag can be used again.
            PT_OK(ctx.comm, pcclAllReduce(buf.data(), buf.data(), &d, ctx.comm, nullptr));
            PT_CHECK(buf[0] == 4.0f);
        });
    });
}

TEST_CASE("async all-reduce: update topology with a collective in flight is pcclPendingAsyncOps; peers-pending is allowed",
          "[api][allreduce][async][membership]") {
    isolated(60, [&] {
        EmbeddedMaster master;
        ClusterOptions opts;
        opts.groups = {0, 0};
        std::atomic<bool> probed{false};
        runPeers(master, opts, [&](PeerCtx &ctx) {
            std::vector<double> buf(200000, 0.5 * (ctx.rank + 1));
            const pcclReduceDescriptor_t d = makeDescriptor(buf.size(), pcclDouble, pcclSum, 31);
            if (ctx.rank == 1) ctx.waitFor([&] { return probed.load(); }, "peer 0 to probe update topology");
            pcclAsyncReduceOp_t h{};
            PT_OK(ctx.comm, pcclAllReduceAsync(buf.data(), buf.data(), &d, ctx.comm, &h));
            if (ctx.rank == 0) {
                // Peer 1 has not started tag 31, so it is certainly still in flight here.
                PT_EXPECT_RESULT(ctx.comm, pcclPendingAsyncOps, pcclUpdateTopology(ctx.comm));
                probed = true;
            }
            // A peers-pending vote while the collective is in flight (both peers vote).
            bool pending = true;
            PT_OK(ctx.comm, pcclArePeersPending(ctx.comm, &pending));
            PT_CHECK(!pending);
            PT_OK(ctx.comm, pcclAwaitAsyncReduce(&h, nullptr));
            PT_CHECK(buf.front() == 1.5 && buf.back() == 1.5);
            PT_OK(ctx.comm, pcclUpdateTopology(ctx.comm)); // nothing in flight any more
        });
    });
}

TEST_CASE("all-reduce multiple with retry: many descriptors with max_in_flight 1, 4 and all 24 are all correct",
          "[api][allreduce][retry]") {
    isolated(80, [&] {
        for (int n : {2, 3}) {
            ScopedContext context(std::to_string(n) + " peers");
            EmbeddedMaster master;
            ClusterOptions opts;
            opts.groups.assign(static_cast<size_t>(n), 0);
            runPeers(master, opts, [&](PeerCtx &ctx) {
                uint64_t tag = 0;
                for (int in_flight : {1, 4, 24}) { // 0 is pcclInvalidArgument (test_api_compat.cpp)
                    auto ops = makeBatch(24, ctx.rank, n, tag);
                    tag += 24;
                    std::vector<pcclReduceOpDescriptor_t> descs(ops.size());
                    size_t total_bytes = 0;
                    for (size_t k = 0; k < ops.size(); ++k) {
                        descs[k].sendbuf = const_cast<void *>(sendPtr(ops[k]));
                        descs[k].recvbuf = ops[k].recv.data();
                        descs[k].descriptor = makeDescriptor(ops[k].count, ops[k].t, ops[k].op, ops[k].tag);
                        total_bytes += ops[k].recv.size();
                    }
                    pcclReduceInfo_t info{};
                    const pcclResult_t r = pcclAllReduceMultipleWithRetry(descs.data(), descs.size(), ctx.comm, &info,
                                                                          in_flight);
                    PT_CHECK_MSG(r == pcclSuccess, "max_in_flight " << in_flight << ": " << describe(r, ctx.comm));
                    const std::string what = "max_in_flight " + std::to_string(in_flight);
                    for (auto &o : ops) checkOp(o, what.c_str());
                    PT_CHECK_EQ(info.local_world_size, static_cast<uint32_t>(n));
                    const uint64_t floor_bytes = total_bytes * static_cast<uint64_t>(n - 1) / static_cast<uint64_t>(n);
                    PT_CHECK_MSG(info.tx_bytes >= floor_bytes && info.rx_bytes >= floor_bytes,
                                 "summed tx " << info.tx_bytes << " / rx " << info.rx_bytes << " for " << total_bytes
                                              << " bytes of operations; expected at least " << floor_bytes);
                }
            });
        }
    });
}
