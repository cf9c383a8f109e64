// Public API: quantized all-reduce over 3 peers: byte-identical on every peer, within the error
// bound of the exact reduction, with compressed traffic; and the combinations it refuses.
#include "support/cluster.h"
#include "support/dtypes.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

using namespace pccl_test;

namespace {

constexpr int kPeers = 3;
constexpr size_t kCount = 300001;  // several segments of 1 MiB of f32 partials, uneven chunks

// Inputs in [-1, 1], distinct per rank and element.
double input(int rank, size_t i) { return std::sin(0.001 * static_cast<double>(i) * (rank + 1) + rank); }

} // namespace

TEST_CASE("quantized all-reduce: results are byte-identical on every peer and within the error bound, with a "
          "fraction of the traffic",
          "[api][allreduce][quantize]") {
    isolated(120, [&] {
        EmbeddedMaster master;
        ClusterOptions opts;
        opts.groups.assign(kPeers, 0);
        opts.timeout_s = 100;
        struct Case {
            pcclDataType_t dtype;
            pcclRedOp_t op;
            pcclQuantizationAlgorithm_t algo;
            pcclDataType_t q;
        };
        std::vector<Case> cases;
        for (auto t : {pcclFloat, pcclDouble, pcclFloat16, pcclBFloat16})
            for (auto op : {pcclSum, pcclAvg, pcclMax})
                cases.push_back({t, op, op == pcclMax ? pcclQuantZeroPointScale : pcclQuantMinMax,
                                 t == pcclDouble ? pcclUint16 : pcclUint8});
        std::vector<std::vector<std::vector<uint8_t>>> results(cases.size(), std::vector<std::vector<uint8_t>>(kPeers));
        runPeers(master, opts, [&](PeerCtx &ctx) {
            for (size_t k = 0; k < cases.size(); ++k) {
                const Case &c = cases[k];
                const size_t sz = dtypeSize(c.dtype);
                std::vector<uint8_t> send(kCount * sz), recv(kCount * sz);
                for (size_t i = 0; i < kCount; ++i) storeFloat(c.dtype, send.data(), i, input(ctx.rank, i));
                pcclReduceDescriptor_t d = makeDescriptor(kCount, c.dtype, c.op, k);
                d.quantization_options.algorithm = c.algo;
                d.quantization_options.quantized_datatype = c.q;
                pcclReduceInfo_t info{};
                PT_OK(ctx.comm, pcclAllReduce(send.data(), recv.data(), &d, ctx.comm, &info));
                // The quantized bytes are what moved: u8 codes instead of f32 partials.
                const double exactBytes = 2.0 * (kPeers - 1) / kPeers * kCount * sz;
                const double codeBytes = c.q == pcclUint8 ? 1 : 2;
                PT_CHECK_MSG(info.tx_bytes < exactBytes * codeBytes / sz * 1.1 + 4096,
                             "case " << k << ": tx " << info.tx_bytes << " bytes, exact would be " << exactBytes);
                // Error bound: each of the N hops adds at most half a step of its segment's range
                // (partials of N inputs in [-1, 1]: range <= 2N), plus the dtype's own rounding.
                const double levels = c.q == pcclUint8 ? 253 : 65533;
                const double perHop = 2.0 * kPeers / (levels - 1) / 2;
                const double dtypeEps = c.dtype == pcclBFloat16 ? 1.0 / 128 : c.dtype == pcclFloat16 ? 1.0 / 1024 : 1e-6;
                double worst = 0;
                for (size_t i = 0; i < kCount; ++i) {
                    double exact = 0;
                    for (int r = 0; r < kPeers; ++r) {
                        const double v = input(r, i);
                        exact = c.op == pcclMax ? (r == 0 ? v : std::max(exact, v)) : exact + v;
                    }
                    if (c.op == pcclAvg) exact /= kPeers;
                    const double got = loadFloat(c.dtype, recv.data(), i);
                    worst = std::max(worst, std::fabs(got - exact));
                }
                const double bound = kPeers * perHop * 1.05 + dtypeEps * kPeers * 2;
                PT_CHECK_MSG(worst <= bound, "case " << k << " (" << dtypeName(c.dtype) << " " << opName(c.op)
                                                     << "): error " << worst << " > bound " << bound);
                PT_CHECK_MSG(worst > 0, "case " << k << ": no error at all: was it quantized?");
                results[k][static_cast<size_t>(ctx.rank)] = recv;
            }
        });
        for (size_t k = 0; k < cases.size(); ++k)
            for (int r = 1; r < kPeers; ++r)
                PT_CHECK_MSG(results[k][r] == results[k][0], "case " << k << ": peer " << r << " differs from peer 0");
    });
}

TEST_CASE("quantized all-reduce: integers, prod and quantizing to a non-u8/u16 type are refused with a reason",
          "[api][args][quantize]") {
    isolated(30, [&] {
        EmbeddedMaster master;
        ClusterOptions opts;
        opts.groups = {0};
        runPeers(master, opts, [&](PeerCtx &ctx) {
            std::vector<float> buf(16, 1.0f);
            std::vector<int32_t> ints(16, 1);
            pcclReduceDescriptor_t d = makeDescriptor(16, pcclFloat, pcclProd, 1);
            d.quantization_options = {pcclUint8, pcclQuantMinMax};
            PT_EXPECT_RESULT(ctx.comm, pcclInvalidArgument, pcclAllReduce(buf.data(), buf.data(), &d, ctx.comm, nullptr));
            PT_CHECK(std::string(pcclGetLastErrorMessage(ctx.comm)).find("prod") != std::string::npos);
            d = makeDescriptor(16, pcclInt32, pcclSum, 2);
            d.quantization_options = {pcclUint8, pcclQuantZeroPointScale};
            PT_EXPECT_RESULT(ctx.comm, pcclInvalidArgument, pcclAllReduce(ints.data(), ints.data(), &d, ctx.comm, nullptr));
            d = makeDescriptor(16, pcclFloat, pcclSum, 3);
            d.quantization_options = {pcclInt8, pcclQuantMinMax};
            PT_EXPECT_RESULT(ctx.comm, pcclInvalidArgument, pcclAllReduce(buf.data(), buf.data(), &d, ctx.comm, nullptr));
            // Valid quantization options pass the argument checks; a group of one then reduces
            // nothing (PCCL 1.0), quantized or not.
            d.quantization_options = {pcclUint8, pcclQuantMinMax};
            std::vector<float> out(16, -1.0f);
            PT_EXPECT_RESULT(ctx.comm, pcclTooFewPeers, pcclAllReduce(buf.data(), out.data(), &d, ctx.comm, nullptr));
            PT_CHECK(out == std::vector<float>(16, -1.0f));
        });
    });
}
