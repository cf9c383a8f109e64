// Public API: peers that disagree on an all-reduce's description (count, dtype, op, or the
// PCCL_SEGMENT_BYTES of their communicators) get pcclMismatch and nothing is written.
#include "support/cluster.h"
#include "support/dtypes.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <exception>
#include <functional>
#include <string>
#include <thread>
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

// Runs body(rank, comm) for two communicators on two threads; the first failure is rethrown.
void onTwoThreads(const std::vector<pcclComm_t *> &comms, const std::function<void(int, pcclComm_t *)> &body) {
    std::vector<std::exception_ptr> errors(comms.size());
    std::vector<std::thread> threads;
    for (size_t r = 0; r < comms.size(); ++r)
        threads.emplace_back([&, r] {
            try {
                body(static_cast<int>(r), comms[r]);
            } catch (...) {
                errors[r] = std::current_exception();
            }
        });
    for (auto &t : threads) t.join();
    for (auto &e : errors)
        if (e) std::rethrow_exception(e);
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

TEST_CASE("mismatch: peers with different PCCL_SEGMENT_BYTES get pcclMismatch naming both sizes, on every retry",
          "[api][allreduce][mismatch]") {
    isolated(60, [&] {
        EmbeddedMaster master;
        // The environment is read when a communicator is created: peer 0 fixes 64 KiB, peer 1 is auto.
        ::setenv("PCCL_SEGMENT_BYTES", "65536", 1);
        CommGuard first(createComm(master.address()));
        ::unsetenv("PCCL_SEGMENT_BYTES");
        CommGuard second(createComm(master.address()));
        onTwoThreads({first.comm, second.comm}, [&](int rank, pcclComm_t *comm) {
            PT_OK(comm, pcclConnect(comm));
            awaitWorld(comm, 2, 20);
            std::vector<float> buf(100000, static_cast<float>(rank + 1));
            const std::vector<float> before = buf;
            const pcclReduceDescriptor_t d = makeDescriptor(buf.size(), pcclFloat, pcclSum, 5);
            // A retry loop on pcclRankConnectionLost would spin forever; this code ends it.
            for (int attempt = 0; attempt < 3; ++attempt) {
                const pcclResult_t r = pcclAllReduce(buf.data(), buf.data(), &d, comm, nullptr);
                PT_CHECK_MSG(r == pcclMismatch, "attempt " << attempt << ": got " << describe(r, comm));
                const std::string why = pcclGetLastErrorMessage(comm);
                PT_CHECK_MSG(why.find("segment 65536 bytes") != std::string::npos &&
                                 why.find("segment auto") != std::string::npos &&
                                 why.find("PCCL_SEGMENT_BYTES") != std::string::npos,
                             "the message does not name both segment sizes: " << why);
                PT_CHECK_MSG(buf == before, "the buffer was written although the peers disagreed");
            }
        });
    });
}
