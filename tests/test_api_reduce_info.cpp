// Public API (issue 16, item 15): pcclReduceInfoEx_t reports each all-reduce's duration and
// throughput for the blocking, async and batched calls.
#include "support/cluster.h"

#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <string>
#include <vector>

using namespace pccl_test;

namespace {

double secondsSince(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// What every Ex info of a finished two-peer all-reduce must hold; wall_s bounds the duration.
void checkSpeed(const pcclReduceInfoEx_t &info, double wall_s, const char *what) {
    PT_CHECK_MSG(info.struct_size == sizeof(pcclReduceInfoEx_t), what << ": struct_size was overwritten");
    PT_CHECK_MSG(info.local_world_size == 2, what << ": local_world_size " << info.local_world_size);
    PT_CHECK_MSG(info.tx_bytes > 0 && info.rx_bytes > 0, what << ": tx " << info.tx_bytes << ", rx " << info.rx_bytes);
    PT_CHECK_MSG(info.duration_s > 0 && info.duration_s <= wall_s,
                 what << ": duration_s " << info.duration_s << " outside (0, " << wall_s << "]");
    const double rate = static_cast<double>(info.tx_bytes + info.rx_bytes) / info.duration_s;
    PT_CHECK_MSG(std::fabs(info.bytes_per_second - rate) <= rate * 1e-12,
                 what << ": bytes_per_second " << info.bytes_per_second << ", (tx + rx) / duration is " << rate);
}

} // namespace

TEST_CASE("reduce info Ex: the blocking, async and batched all-reduces report duration and bytes per second",
          "[api][allreduce]") {
    isolated(60, [&] {
        EmbeddedMaster master;
        runPeers(master, ClusterOptions{}, [&](PeerCtx &ctx) {
            const size_t count = size_t{1} << 18;
            std::vector<float> buf(count, 1.0f);
            pcclReduceDescriptor_t d = makeDescriptor(count, pcclFloat, pcclSum, 1);

            pcclReduceInfoEx_t blocking = PCCL_REDUCE_INFO_EX_INIT;
            auto t0 = Clock::now();
            PT_OK(ctx.comm, pcclAllReduceEx(buf.data(), buf.data(), &d, ctx.comm, &blocking));
            checkSpeed(blocking, secondsSince(t0), "pcclAllReduceEx");
            PT_CHECK_EQ(buf[0], 2.0f);

            // The PCCL 1.0 info of the same operation moves the same bytes.
            pcclReduceInfo_t plain{};
            d.tag = 2;
            PT_OK(ctx.comm, pcclAllReduce(buf.data(), buf.data(), &d, ctx.comm, &plain));
            PT_CHECK_EQ(plain.tx_bytes, blocking.tx_bytes);
            PT_CHECK_EQ(plain.rx_bytes, blocking.rx_bytes);

            pcclReduceInfoEx_t awaited = PCCL_REDUCE_INFO_EX_INIT;
            pcclAsyncReduceOp_t handle{};
            d.tag = 3;
            t0 = Clock::now();
            PT_OK(ctx.comm, pcclAllReduceAsync(buf.data(), buf.data(), &d, ctx.comm, &handle));
            PT_OK(ctx.comm, pcclAwaitAsyncReduceEx(&handle, &awaited));
            checkSpeed(awaited, secondsSince(t0), "pcclAwaitAsyncReduceEx");

            std::vector<std::vector<float>> parts(4, std::vector<float>(count / 4, 1.0f));
            std::vector<pcclReduceOpDescriptor_t> ops;
            for (size_t i = 0; i < parts.size(); ++i)
                ops.push_back({parts[i].data(), parts[i].data(), makeDescriptor(count / 4, pcclFloat, pcclSum, 10 + i)});
            pcclReduceInfoEx_t batch = PCCL_REDUCE_INFO_EX_INIT;
            t0 = Clock::now();
            PT_OK(ctx.comm, pcclAllReduceMultipleWithRetryEx(ops.data(), ops.size(), ctx.comm, &batch, 2));
            checkSpeed(batch, secondsSince(t0), "pcclAllReduceMultipleWithRetryEx");
            PT_CHECK_EQ(parts[3][0], 2.0f);

            d.tag = 4;  // info may be NULL
            PT_OK(ctx.comm, pcclAllReduceEx(buf.data(), buf.data(), &d, ctx.comm, nullptr));
        });
    });
}

TEST_CASE("reduce info Ex: a struct_size too small is pcclInvalidArgument before anything starts; a larger one is fine",
          "[api][allreduce][args]") {
    isolated(60, [&] {
        EmbeddedMaster master;
        runPeers(master, ClusterOptions{}, [&](PeerCtx &ctx) {
            std::vector<float> buf(1000, 1.0f);
            const std::vector<float> before = buf;
            pcclReduceDescriptor_t d = makeDescriptor(buf.size(), pcclFloat, pcclSum, 7);
            pcclReduceInfoEx_t small = PCCL_REDUCE_INFO_EX_INIT;
            for (size_t size : {size_t{0}, sizeof(pcclReduceInfoEx_t) - 1}) {
                small.struct_size = size;
                PT_EXPECT_RESULT(ctx.comm, pcclInvalidArgument, pcclAllReduceEx(buf.data(), buf.data(), &d, ctx.comm, &small));
                PT_CHECK_MSG(std::string(pcclGetLastErrorMessage(ctx.comm)).find("struct_size") != std::string::npos,
                             "the reason does not name struct_size: " << pcclGetLastErrorMessage(ctx.comm));
                pcclReduceOpDescriptor_t op{buf.data(), buf.data(), d};
                PT_EXPECT_RESULT(ctx.comm, pcclInvalidArgument,
                                 pcclAllReduceMultipleWithRetryEx(&op, 1, ctx.comm, &small, 1));
            }
            PT_CHECK_MSG(buf == before, "a refused call wrote the buffer");
            // Nothing started: the same tag runs now.
            pcclReduceInfoEx_t good = PCCL_REDUCE_INFO_EX_INIT;
            PT_OK(ctx.comm, pcclAllReduceEx(buf.data(), buf.data(), &d, ctx.comm, &good));
            PT_CHECK_EQ(buf[0], 2.0f);

            // An await that refuses the info leaves the operation in flight: await it again.
            pcclAsyncReduceOp_t handle{};
            d.tag = 8;
            PT_OK(ctx.comm, pcclAllReduceAsync(buf.data(), buf.data(), &d, ctx.comm, &handle));
            PT_EXPECT_RESULT(ctx.comm, pcclInvalidArgument, pcclAwaitAsyncReduceEx(&handle, &small));
            PT_OK(ctx.comm, pcclAwaitAsyncReduceEx(&handle, &good));
            PT_CHECK_EQ(buf[0], 4.0f);
            PT_EXPECT_RESULT(nullptr, pcclInvalidArgument, pcclAwaitAsyncReduceEx(nullptr, &good));

            // A later, larger version of the struct: the fields of this one are filled, the rest untouched.
            struct {
                pcclReduceInfoEx_t info;
                uint64_t appended;
            } larger{};
            larger.info.struct_size = sizeof(larger);
            larger.appended = 0x5eed;
            d.tag = 9;
            PT_OK(ctx.comm, pcclAllReduceEx(buf.data(), buf.data(), &d, ctx.comm, &larger.info));
            PT_CHECK_EQ(larger.info.local_world_size, 2u);
            PT_CHECK(larger.info.duration_s > 0);
            PT_CHECK_EQ(larger.appended, uint64_t{0x5eed});
        });
    });
}
