// Public API: all-reduce correctness for every dtype x op, world sizes 2 and 3, in and out of place.
#include "support/cluster.h"
#include "support/dtypes.h"

#include <catch2/catch.hpp>

#include <random>
#include <vector>

using namespace pccl_test;

namespace {

void checkTraffic(const pcclReduceInfo_t &info, size_t bytes, int n) {
    PT_CHECK_EQ(info.local_world_size, static_cast<uint32_t>(n));
    if (n > 1) {
        const uint64_t floor_bytes = static_cast<uint64_t>(bytes) * static_cast<uint64_t>(n - 1) / static_cast<uint64_t>(n);
        PT_CHECK_MSG(info.tx_bytes >= floor_bytes && info.rx_bytes >= floor_bytes,
                     "tx " << info.tx_bytes << " / rx " << info.rx_bytes << " bytes for a " << bytes
                           << "-byte all-reduce over " << n << " peers; expected at least " << floor_bytes);
        // Plausible upper bound: a ring moves 2(n-1)/n of the buffer; allow generous framing overhead.
        PT_CHECK_MSG(info.tx_bytes <= 4 * static_cast<uint64_t>(bytes) + 65536 &&
                         info.rx_bytes <= 4 * static_cast<uint64_t>(bytes) + 65536,
                     "tx " << info.tx_bytes << " / rx " << info.rx_bytes << " bytes for a " << bytes
                           << "-byte all-reduce is implausibly large");
    }
}

// Every dtype x op x count x {out of place, in place} against the reference; then random data for
// byte-identity across peers. Every peer records a hash per operation; rank 0 compares them.
void runGrid(int n) {
    EmbeddedMaster master;
    ClusterOptions opts;
    opts.groups.assign(static_cast<size_t>(n), 0);
    opts.timeout_s = 60;
    std::vector<std::vector<uint64_t>> hashes(static_cast<size_t>(n));
    std::vector<std::string> labels;
    runPeers(master, opts, [&](PeerCtx &ctx) {
        auto &my_hashes = hashes[static_cast<size_t>(ctx.rank)];
        auto label = [&](const std::string &s) {
            if (ctx.rank == 0) labels.push_back(s);
        };
        uint64_t tag = 1000;
        const size_t counts[] = {1, 2, 7, 1001};
        for (pcclDataType_t t : kAllDtypes) {
            const size_t sz = dtypeSize(t);
            for (pcclRedOp_t op : kAllOps) {
                for (size_t count : counts) {
                    std::vector<std::vector<uint8_t>> inputs(static_cast<size_t>(n), std::vector<uint8_t>(count * sz));
                    std::vector<const void *> input_ptrs;
                    for (int r = 0; r < n; ++r) {
                        fillSmall(t, op, r, inputs[static_cast<size_t>(r)].data(), count);
                        input_ptrs.push_back(inputs[static_cast<size_t>(r)].data());
                    }
                    std::vector<uint8_t> ref(count * sz);
                    referenceReduce(t, op, input_ptrs, count, ref.data());
                    const auto &mine = inputs[static_cast<size_t>(ctx.rank)];
                    for (bool in_place : {false, true}) {
                        const pcclReduceDescriptor_t d = makeDescriptor(count, t, op, tag++);
                        std::vector<uint8_t> send = mine;
                        std::vector<uint8_t> recv(count * sz, 0xCD);
                        if (in_place) recv = mine;
                        pcclReduceInfo_t info{};
                        const void *src = in_place ? static_cast<const void *>(recv.data()) : send.data();
                        const pcclResult_t r = pcclAllReduce(src, recv.data(), &d, ctx.comm, &info);
                        PT_CHECK_MSG(r == pcclSuccess, dtypeName(t) << " " << opName(op) << " count " << count
                                                                     << (in_place ? " in place" : " out of place")
                                                                     << ": " << describe(r, ctx.comm));
                        const std::string diff = compareWithReference(t, op, recv.data(), ref.data(), count);
                        PT_CHECK_MSG(diff.empty(), diff << (in_place ? " (in place)" : " (out of place)") << " on "
                                                        << n << " peers");
                        if (!in_place)
                            PT_CHECK_MSG(send == mine, dtypeName(t) << " " << opName(op)
                                                                    << ": out-of-place all-reduce modified sendbuf");
                        checkTraffic(info, count * sz, n);
                        my_hashes.push_back(fnv1a(recv.data(), recv.size()));
                        label(std::string(dtypeName(t)) + " " + opName(op) + " count " + std::to_string(count) +
                              (in_place ? " in place" : ""));
                    }
                }
            }
        }
        // Random data: integers are still checked against the (wrapping) reference; floats are
        // checked for byte identity across peers only.
        for (pcclDataType_t t : kAllDtypes) {
            const size_t sz = dtypeSize(t);
            for (pcclRedOp_t op : kAllOps) {
                const size_t count = 1001;
                std::vector<std::vector<uint8_t>> inputs(static_cast<size_t>(n), std::vector<uint8_t>(count * sz));
                std::vector<const void *> input_ptrs;
                for (int r = 0; r < n; ++r) {
                    std::mt19937_64 rng(static_cast<uint64_t>(r) * 7919u + static_cast<uint64_t>(t) * 31u +
                                        static_cast<uint64_t>(op));
                    std::uniform_real_distribution<double> real(-100.0, 100.0);
                    auto &in = inputs[static_cast<size_t>(r)];
                    for (size_t i = 0; i < count; ++i) {
                        if (isFloat(t)) {
                            storeFloat(t, in.data(), i, op == pcclProd ? real(rng) / 25.0 : real(rng));
                        } else {
                            const uint64_t bits = rng();
                            std::memcpy(in.data() + i * sz, &bits, sz);
                        }
                    }
                    input_ptrs.push_back(in.data());
                }
                std::vector<uint8_t> recv = inputs[static_cast<size_t>(ctx.rank)];
                const pcclReduceDescriptor_t d = makeDescriptor(count, t, op, tag++);
                const pcclResult_t r = pcclAllReduce(recv.data(), recv.data(), &d, ctx.comm, nullptr);
                PT_CHECK_MSG(r == pcclSuccess, "random " << dtypeName(t) << " " << opName(op) << ": "
                                                         << describe(r, ctx.comm));
                const bool wide_avg = op == pcclAvg && sz == 8; // the exact sum exceeds 64 bits
                if (!isFloat(t) && !wide_avg) {
                    std::vector<uint8_t> ref(count * sz);
                    referenceReduce(t, op, input_ptrs, count, ref.data());
                    const std::string diff = compareWithReference(t, op, recv.data(), ref.data(), count);
                    PT_CHECK_MSG(diff.empty(), "random data: " << diff);
                }
                my_hashes.push_back(fnv1a(recv.data(), recv.size()));
                label(std::string("random ") + dtypeName(t) + " " + opName(op));
            }
        }
        ctx.barrier();
        if (ctx.rank == 0) {
            for (int r = 1; r < n; ++r) {
                const auto &theirs = hashes[static_cast<size_t>(r)];
                PT_CHECK_EQ(theirs.size(), my_hashes.size());
                for (size_t k = 0; k < my_hashes.size(); ++k)
                    PT_CHECK_MSG(theirs[k] == my_hashes[k],
                                 "peer " << r << " holds different bytes than peer 0 after " << labels[k]);
            }
        }
    });
}

// Run one all-reduce per entry over three peers: values[rank] for every rank; check `expected`.
template <typename T>
void checkThreePeerCase(PeerCtx &ctx, pcclDataType_t t, pcclRedOp_t op, const T (&values)[3], T expected, uint64_t tag) {
    std::vector<T> buf(3, values[ctx.rank]);
    const pcclReduceDescriptor_t d = makeDescriptor(buf.size(), t, op, tag);
    PT_OK(ctx.comm, pcclAllReduce(buf.data(), buf.data(), &d, ctx.comm, nullptr));
    for (const T &v : buf)
        PT_CHECK_MSG(v == expected, dtypeName(t) << " " << opName(op) << " of " << +values[0] << ", " << +values[1]
                                                 << ", " << +values[2] << " gave " << +v << ", expected "
                                                 << +expected);
}

} // namespace

TEST_CASE("all-reduce: every dtype and op matches the reference on 2 peers, in and out of place", "[api][allreduce]") {
    isolated(90, [&] {
        runGrid(2);
    });
}

TEST_CASE("all-reduce: every dtype and op matches the reference on 3 peers, in and out of place", "[api][allreduce]") {
    isolated(90, [&] {
        runGrid(3);
    });
}

TEST_CASE("all-reduce: integer sums wrap and integer avg truncates the exact sum", "[api][allreduce]") {
    isolated(60, [&] {
        EmbeddedMaster master;
        ClusterOptions opts;
        opts.groups = {0, 0, 0};
        runPeers(master, opts, [&](PeerCtx &ctx) {
            uint64_t tag = 1;
            checkThreePeerCase<int8_t>(ctx, pcclInt8, pcclSum, {100, 100, 100}, static_cast<int8_t>(44), tag++);
            checkThreePeerCase<int8_t>(ctx, pcclInt8, pcclAvg, {100, 100, 100}, 100, tag++);
            checkThreePeerCase<int8_t>(ctx, pcclInt8, pcclAvg, {-100, -100, -1}, -67, tag++);
            checkThreePeerCase<int8_t>(ctx, pcclInt8, pcclAvg, {-1, -1, 1}, 0, tag++); // -1/3 truncates to 0
            checkThreePeerCase<uint8_t>(ctx, pcclUint8, pcclSum, {200, 250, 255}, static_cast<uint8_t>(705 % 256), tag++);
            checkThreePeerCase<uint8_t>(ctx, pcclUint8, pcclAvg, {200, 250, 255}, 235, tag++);
            checkThreePeerCase<int16_t>(ctx, pcclInt16, pcclAvg, {30000, 30000, 30001}, 30000, tag++);
            checkThreePeerCase<int16_t>(ctx, pcclInt16, pcclSum, {30000, 30000, 0}, static_cast<int16_t>(60000 - 65536), tag++);
            checkThreePeerCase<uint16_t>(ctx, pcclUint16, pcclAvg, {65535, 65535, 65534}, 65534, tag++);
            checkThreePeerCase<int32_t>(ctx, pcclInt32, pcclAvg, {2000000000, 2000000000, -7}, 1333333331, tag++);
            checkThreePeerCase<uint32_t>(ctx, pcclUint32, pcclSum, {4000000000u, 4000000000u, 1u},
                                         static_cast<uint32_t>(8000000001ull % 4294967296ull), tag++);
            checkThreePeerCase<int64_t>(ctx, pcclInt64, pcclSum, {INT64_MAX, 1, 0}, INT64_MIN, tag++);
            checkThreePeerCase<uint64_t>(ctx, pcclUint64, pcclSum, {UINT64_MAX, 2, 0}, 1, tag++);
            checkThreePeerCase<int32_t>(ctx, pcclInt32, pcclMin, {-5, 7, INT32_MIN}, INT32_MIN, tag++);
            checkThreePeerCase<uint64_t>(ctx, pcclUint64, pcclMax, {UINT64_MAX, 2, 0}, UINT64_MAX, tag++);
        });
    });
}

TEST_CASE("all-reduce: f16 and bf16 are reduced in f32 and rounded once", "[api][allreduce]") {
    isolated(60, [&] {
        // 2048 + 1 + 1 = 2050 is exact in f16, but any f16 partial sum 2048 + 1 rounds back to 2048.
        // Likewise 256 + 1 + 1 = 258 in bf16. The big value sits on a different peer per element so that
        // every ring order is covered.
        EmbeddedMaster master;
        ClusterOptions opts;
        opts.groups = {0, 0, 0};
        runPeers(master, opts, [&](PeerCtx &ctx) {
            const size_t count = 30;
            struct Case {
                pcclDataType_t t;
                float big;
                float expected;
            };
            uint64_t tag = 0;
            for (const Case c : {Case{pcclFloat16, 2048.0f, 2050.0f}, Case{pcclBFloat16, 256.0f, 258.0f}}) {
                for (pcclRedOp_t op : {pcclSum, pcclAvg}) {
                    std::vector<uint16_t> buf(count);
                    for (size_t i = 0; i < count; ++i) {
                        const float v = static_cast<int>(i % 3) == ctx.rank ? c.big : 1.0f;
                        buf[i] = c.t == pcclFloat16 ? floatToHalf(v) : floatToBf16(v);
                    }
                    const pcclReduceDescriptor_t d = makeDescriptor(count, c.t, op, tag++);
                    PT_OK(ctx.comm, pcclAllReduce(buf.data(), buf.data(), &d, ctx.comm, nullptr));
                    // avg: 2050 / 3 = 683.33 -> f16 683.5 (spacing 0.5); 258 / 3 = 86 exactly.
                    const float want_f32 = op == pcclSum ? c.expected : c.expected / 3.0f;
                    const uint16_t want = c.t == pcclFloat16 ? floatToHalf(want_f32) : floatToBf16(want_f32);
                    for (size_t i = 0; i < count; ++i) {
                        const float got = c.t == pcclFloat16 ? halfToFloat(buf[i]) : bf16ToFloat(buf[i]);
                        PT_CHECK_MSG(buf[i] == want, dtypeName(c.t) << " " << opName(op) << " element " << i << " is "
                                                                    << got << ", expected "
                                                                    << (c.t == pcclFloat16 ? halfToFloat(want)
                                                                                           : bf16ToFloat(want)));
                    }
                }
            }
        });
    });
}

TEST_CASE("all-reduce: 3,000,001 f32 elements over 3 peers are exact and report plausible traffic",
          "[api][allreduce][large]") {
    isolated(60, [&] {
        EmbeddedMaster master;
        ClusterOptions opts;
        opts.groups = {0, 0, 0};
        opts.timeout_s = 45;
        std::vector<uint64_t> hashes(3);
        runPeers(master, opts, [&](PeerCtx &ctx) {
            const size_t count = 3000001;
            std::vector<float> buf(count);
            for (size_t i = 0; i < count; ++i) buf[i] = static_cast<float>(static_cast<int>(i % 1000) - 500 + ctx.rank);
            const pcclReduceDescriptor_t d = makeDescriptor(count, pcclFloat, pcclSum, 42);
            pcclReduceInfo_t info{};
            PT_OK(ctx.comm, pcclAllReduce(buf.data(), buf.data(), &d, ctx.comm, &info));
            for (size_t i = 0; i < count; ++i) {
                const float want = static_cast<float>(3 * (static_cast<int>(i % 1000) - 500) + 3);
                PT_CHECK_MSG(buf[i] == want, "element " << i << " is " << buf[i] << ", expected " << want);
            }
            checkTraffic(info, count * sizeof(float), 3);
            hashes[static_cast<size_t>(ctx.rank)] = fnv1a(buf.data(), count * sizeof(float));
            ctx.barrier();
            PT_CHECK(hashes[static_cast<size_t>(ctx.rank)] == hashes[0]);
        });
    });
}

TEST_CASE("all-reduce: the same tag can be used by consecutive blocking calls", "[api][allreduce]") {
    isolated(60, [&] {
        EmbeddedMaster master;
        ClusterOptions opts;
        opts.groups = {0, 0};
        runPeers(master, opts, [&](PeerCtx &ctx) {
            for (int it = 0; it < 20; ++it) {
                std::vector<int64_t> buf(257, it * 10 + ctx.rank);
                const pcclReduceDescriptor_t d = makeDescriptor(buf.size(), pcclInt64, pcclSum, 0);
                PT_OK(ctx.comm, pcclAllReduce(buf.data(), buf.data(), &d, ctx.comm, nullptr));
                for (int64_t v : buf) PT_CHECK_EQ(v, static_cast<int64_t>(2 * it * 10 + 1));
            }
        });
    });
}

TEST_CASE("all-reduce: a pool of one connection and a pool of eight both give correct results", "[api][allreduce]") {
    isolated(80, [&] {
        for (uint32_t pool : {1u, 8u}) {
            ScopedContext context("p2p_connection_pool_size " + std::to_string(pool));
            EmbeddedMaster master;
            ClusterOptions opts;
            opts.groups = {0, 0, 0};
            opts.pool_size = pool;
            runPeers(master, opts, [&](PeerCtx &ctx) {
                const size_t count = 1 << 20;
                std::vector<double> buf(count);
                for (size_t i = 0; i < count; ++i) buf[i] = static_cast<double>(i) * (ctx.rank + 1);
                const pcclReduceDescriptor_t d = makeDescriptor(count, pcclDouble, pcclSum, 5);
                PT_OK(ctx.comm, pcclAllReduce(buf.data(), buf.data(), &d, ctx.comm, nullptr));
                for (size_t i = 0; i < count; ++i)
                    PT_CHECK_MSG(buf[i] == static_cast<double>(i) * 6, "element " << i << " is " << buf[i]);
            });
        }
    });
}
