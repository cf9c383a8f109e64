// Public API: peers that disagree on an all-reduce's description get pcclMismatch and nothing is written.
#include "support/cluster.h"
#include "support/dtypes.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <vector>

using namespace pccl_test;

namespace {

enum class Disagree { Count, Dtype, Op };

const char *name(Disagree k) {
    switch (k) {
        case Disagree::Count: return "count";
        case Disagree::Dtype: return "dtype";
        case Disagree::Op: return "op";
    }
    return "?";
}

// `dissenters` ranks use a different count/dtype/op than the others for the same tag. Every peer must
// get pcclMismatch with its buffers untouched; then the agreed call on the same tag succeeds.
void runMismatch(int n, const std::vector<int> &dissenters) {
    EmbeddedMaster master;
    ClusterOptions opts;
    opts.groups.assign(static_cast<size_t>(n), 0);
    runPeers(master, opts, [&](PeerCtx &ctx) {
        const bool dissent = std::find(dissenters.begin(), dissenters.end(), ctx.rank) != dissenters.end();
        uint64_t tag = 10;
        for (Disagree kind : {Disagree::Count, Disagree::Dtype, Disagree::Op}) {
            for (bool in_place : {false, true}) {
                const size_t count = 4096;
                pcclReduceDescriptor_t d = makeDescriptor(count, pcclFloat, pcclSum, tag);
                if (dissent) {
                    if (kind == Disagree::Count) d.count = count / 2;
                    if (kind == Disagree::Dtype) d.src_descriptor.datatype = d.quantization_options.quantized_datatype = pcclInt32;
                    if (kind == Disagree::Op) d.op = pcclMax;
                }
                std::vector<float> input(count);
                for (size_t i = 0; i < count; ++i) input[i] = static_cast<float>(i % 100) + ctx.rank;
                std::vector<float> send = input;
                std::vector<float> recv = in_place ? input : std::vector<float>(count, -7.0f);
                const std::vector<float> recv_before = recv;
                const void *src = in_place ? static_cast<const void *>(recv.data()) : send.data();
                const pcclResult_t r = pcclAllReduce(src, recv.data(), &d, ctx.comm, nullptr);
                PT_CHECK_MSG(r == pcclMismatch, "disagreeing on " << name(kind) << (in_place ? " (in place)" : "")
                                                                  << ": got " << describe(r, ctx.comm)
                                                                  << ", expected pcclMismatch");
                PT_CHECK_MSG(std::string(pcclGetLastErrorMessage(ctx.comm)).size() > 0,
                             "no error message after pcclMismatch");
                PT_CHECK_MSG(recv == recv_before, "disagreeing on " << name(kind)
                                                                    << ": recvbuf was written although the peers "
                                                                       "disagreed"
                                                                    << (in_place ? " (in place)" : ""));
                PT_CHECK_MSG(send == input, "sendbuf was written");
                // The agreed call on the same tag works.
                const pcclReduceDescriptor_t ok = makeDescriptor(count, pcclFloat, pcclSum, tag);
                PT_OK(ctx.comm, pcclAllReduce(src, recv.data(), &ok, ctx.comm, nullptr));
                const float rank_sum = static_cast<float>(n * (n - 1) / 2);
                for (size_t i = 0; i < count; ++i) {
                    const float want = static_cast<float>(n) * static_cast<float>(i % 100) + rank_sum;
                    PT_CHECK_MSG(recv[i] == want, "after the mismatch, element " << i << " is " << recv[i]
                                                                                 << ", expected " << want);
                }
                ++tag;
            }
        }
    });
}

} // namespace

TEST_CASE("mismatch: two peers calling the same tag with a different count, dtype or op both get pcclMismatch",
          "[api][allreduce][mismatch]") {
    isolated(60, [&] {
        runMismatch(2, {1});
    });
}

TEST_CASE("mismatch: one dissenting peer out of three fails the operation on every peer", "[api][allreduce][mismatch]") {
    isolated(60, [&] {
        runMismatch(3, {2});
    });
}
