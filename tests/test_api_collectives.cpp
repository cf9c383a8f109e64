// Public API: broadcast, all-gather, reduce-scatter and barrier over real peers (threads of this
// process and, for the fault case, a pccl_test_peer child): layouts by ring rank, uneven blocks,
// in place, async, argument checks, pcclMismatch, the world-size check, and a peer killed in the
// middle of an all-gather.
#include "support/cluster.h"
#include "support/dtypes.h"
#include "support/fault.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <numeric>
#include <vector>

using namespace pccl_test;

namespace {

uint32_t ringRank(const pcclComm_t *comm) { return static_cast<uint32_t>(attribute(comm, PCCL_ATTRIBUTE_RANK)); }

// Element j of ring rank r's block: distinct per rank and position, exact in f32.
float blockValue(uint32_t r, size_t j) { return static_cast<float>(r * 100000 + j % 50000); }

void checkGathered(const std::vector<float> &recv, const std::vector<size_t> &counts, const char *what) {
    size_t off = 0;
    for (uint32_t r = 0; r < counts.size(); ++r)
        for (size_t j = 0; j < counts[r]; ++j, ++off)
            PT_CHECK_MSG(recv[off] == blockValue(r, j), what << ": element " << j << " of rank " << r << "'s block is "
                                                             << recv[off] << ", expected " << blockValue(r, j));
}

void allGatherCases(PeerCtx &ctx, uint32_t n, uint64_t &tag) {
    const uint32_t me = ringRank(ctx.comm);
    // Even blocks, out of place, big enough for several segments on every connection of the pool.
    const size_t count = 3u << 20;
    std::vector<float> send(count), recv(count * n, -1.0f);
    for (size_t j = 0; j < count; ++j) send[j] = blockValue(me, j);
    pcclAllGatherDescriptor_t d{count, nullptr, n, pcclFloat, tag++};
    pcclReduceInfo_t info{};
    PT_OK(ctx.comm, pcclAllGather(send.data(), recv.data(), &d, ctx.comm, &info));
    checkGathered(recv, std::vector<size_t>(n, count), "even all-gather");
    PT_CHECK_EQ(info.local_world_size, n);
    PT_CHECK_MSG(info.tx_bytes >= (n - 1) * count * 4 && info.rx_bytes >= (n - 1) * count * 4,
                 "tx " << info.tx_bytes << " rx " << info.rx_bytes);

    // In place and async, uneven blocks with an empty one.
    std::vector<size_t> counts(n);
    for (uint32_t r = 0; r < n; ++r) counts[r] = r == 1 ? 0 : 1000 + 37 * r;
    const size_t total = std::accumulate(counts.begin(), counts.end(), size_t{0});
    const size_t own = std::accumulate(counts.begin(), counts.begin() + me, size_t{0});
    std::vector<float> buf(total, -1.0f);
    for (size_t j = 0; j < counts[me]; ++j) buf[own + j] = blockValue(me, j);
    pcclAllGatherDescriptor_t u{0, counts.data(), n, pcclFloat, tag++};
    pcclAsyncReduceOp_t h{};
    PT_OK(ctx.comm, pcclAllGatherAsync(buf.data() + own, buf.data(), &u, ctx.comm, &h));
    PT_OK(ctx.comm, pcclAwaitAsyncReduce(&h, nullptr));
    checkGathered(buf, counts, "uneven in-place all-gather");
}

void reduceScatterCases(PeerCtx &ctx, uint32_t n, uint64_t &tag) {
    const uint32_t me = ringRank(ctx.comm);
    for (pcclDataType_t t : kAllDtypes)
        for (pcclRedOp_t op : kAllOps)
            for (bool inPlace : {false, true}) {
                const size_t block = 301, es = dtypeSize(t);
                std::vector<std::vector<uint8_t>> inputs(n, std::vector<uint8_t>(block * n * es));
                std::vector<const void *> ptrs;
                for (uint32_t r = 0; r < n; ++r) {
                    fillSmall(t, op, static_cast<int>(r), inputs[r].data(), block * n);
                    ptrs.push_back(inputs[r].data());
                }
                std::vector<uint8_t> ref(block * n * es);
                referenceReduce(t, op, ptrs, block * n, ref.data());
                std::vector<uint8_t> send = inputs[me], recv(block * es, 0xcd);
                pcclReduceScatterDescriptor_t d{};
                d.count = block;
                d.world_size = n;
                d.op = op;
                d.tag = tag++;
                d.src_descriptor = {t, pcclDistributionNone};
                d.quantization_options = {pcclUint8, pcclQuantNone};
                uint8_t *out = inPlace ? send.data() + me * block * es : recv.data();
                PT_OK(ctx.comm, pcclReduceScatter(send.data(), out, &d, ctx.comm, nullptr));
                const std::string diff = compareWithReference(t, op, out, ref.data() + me * block * es, block);
                PT_CHECK_MSG(diff.empty(), "reduce-scatter " << dtypeName(t) << " " << opName(op)
                                                             << (inPlace ? " in place: " : ": ") << diff);
                if (!inPlace) PT_CHECK_MSG(send == inputs[me], "an out-of-place reduce-scatter wrote its input");
            }
}

void broadcastCases(PeerCtx &ctx, uint32_t n, uint64_t &tag) {
    const uint32_t me = ringRank(ctx.comm);
    for (uint32_t root = 0; root < n; ++root)
        for (bool inPlace : {false, true}) {
            const size_t count = 5u << 20;
            std::vector<float> send(count), recv(count, -2.0f);
            for (size_t j = 0; j < count; ++j) send[j] = blockValue(root, j) + static_cast<float>(me != root);
            if (inPlace) recv = send;
            const pcclBroadcastDescriptor_t d{count, root, n, pcclFloat, tag++};
            const void *src = inPlace ? recv.data() : (me == root ? send.data() : nullptr);
            PT_OK(ctx.comm, pcclBroadcast(src, recv.data(), &d, ctx.comm, nullptr));
            for (size_t j = 0; j < count; j += 4099)
                PT_CHECK_MSG(recv[j] == blockValue(root, j), "broadcast from " << root << ": element " << j << " is "
                                                                               << recv[j]);
        }
}

} // namespace

TEST_CASE("collectives: all-gather, reduce-scatter, broadcast and barrier over 3 peers give pccl.h's layouts by ring "
          "rank", "[api][api_collectives]") {
    isolated(120, [] {
        EmbeddedMaster master;
        ClusterOptions opts;
        opts.groups = {0, 0, 0};
        opts.timeout_s = 110;
        runPeers(master, opts, [&](PeerCtx &ctx) {
            uint64_t tag = 1;
            allGatherCases(ctx, 3, tag);
            reduceScatterCases(ctx, 3, tag);
            broadcastCases(ctx, 3, tag);
            PT_OK(ctx.comm, pcclBarrier(ctx.comm, tag++));
        });
    });
}

TEST_CASE("collectives: bad arguments are refused with a reason before anything starts; a world_size that is not "
          "the group's is pcclRankConnectionLost; disagreeing peers get pcclMismatch", "[api][api_collectives]") {
    isolated(60, [] {
        EmbeddedMaster master;
        ClusterOptions opts;
        opts.groups = {0, 0};
        runPeers(master, opts, [&](PeerCtx &ctx) {
            std::vector<float> a(64), b(128);
            pcclAllGatherDescriptor_t g{64, nullptr, 2, pcclFloat, 1};
            auto expect = [&](pcclResult_t want, pcclResult_t got, const char *needle, const char *what) {
                PT_CHECK_MSG(got == want, what << ": " << describe(got, ctx.comm));
                const std::string msg = pcclGetLastErrorMessage(ctx.comm);
                PT_CHECK_MSG(msg.find(needle) != std::string::npos, what << ": message '" << msg << "' lacks '" << needle << "'");
            };
            expect(pcclInvalidArgument, pcclAllGather(nullptr, b.data(), &g, ctx.comm, nullptr), "NULL", "NULL sendbuf");
            pcclAllGatherDescriptor_t z = g;
            z.count = 0;
            expect(pcclInvalidArgument, pcclAllGather(a.data(), b.data(), &z, ctx.comm, nullptr), "count is 0", "count 0");
            z = g;
            z.world_size = 0;
            expect(pcclInvalidArgument, pcclAllGather(a.data(), b.data(), &z, ctx.comm, nullptr), "world_size is 0", "world 0");
            z = g;
            z.world_size = 3;
            expect(pcclRankConnectionLost, pcclAllGather(a.data(), b.data(), &z, ctx.comm, nullptr), "not the descriptor's",
                   "world 3 in a group of 2");
            expect(pcclInvalidArgument, pcclAllGather(b.data() + 1, b.data(), &g, ctx.comm, nullptr), "overlap", "overlap");
            const size_t zeros[2] = {0, 0};
            z = g;
            z.counts = zeros;
            expect(pcclInvalidArgument, pcclAllGather(a.data(), b.data(), &z, ctx.comm, nullptr), "every count is 0",
                   "all counts 0");
            const pcclBroadcastDescriptor_t badRoot{64, 2, 2, pcclFloat, 1};
            expect(pcclInvalidArgument, pcclBroadcast(a.data(), a.data(), &badRoot, ctx.comm, nullptr), "root 2",
                   "root out of range");
            pcclReduceScatterDescriptor_t rs{};
            rs.count = 64;
            rs.world_size = 2;
            rs.op = pcclSum;
            rs.src_descriptor = {pcclInt32, pcclDistributionNone};
            rs.quantization_options = {pcclUint8, pcclQuantMinMax};
            expect(pcclInvalidArgument, pcclReduceScatter(b.data(), a.data(), &rs, ctx.comm, nullptr), "quantiz",
                   "quantized integers");

            // Peers that disagree on the count, and on the kind, of one tag.
            const uint32_t me = ringRank(ctx.comm);
            pcclAllGatherDescriptor_t m{me == 0 ? size_t{32} : size_t{64}, nullptr, 2, pcclFloat, 7};
            expect(pcclMismatch, pcclAllGather(a.data(), b.data(), &m, ctx.comm, nullptr), "count 32", "count mismatch");
            const pcclBroadcastDescriptor_t bc{64, 0, 2, pcclFloat, 8};
            pcclAllGatherDescriptor_t g8 = g;
            g8.tag = 8;
            const pcclResult_t r = me == 0 ? pcclBroadcast(a.data(), a.data(), &bc, ctx.comm, nullptr)
                                           : pcclAllGather(a.data(), b.data(), &g8, ctx.comm, nullptr);
            expect(pcclMismatch, r, "broadcast", "kind mismatch");
            // Nothing was left in flight: the same tags work again.
            PT_OK(ctx.comm, pcclBarrier(ctx.comm, 7));
            PT_OK(ctx.comm, pcclBarrier(ctx.comm, 8));
        });
    });
}

TEST_CASE("all-gather: a peer killed mid-operation fails every survivor with its own block intact; the retry on the "
          "two survivors succeeds", "[api][api_collectives][fault]") {
    isolated(60, [] {
        constexpr size_t kBlock = 4u << 20;  // floats per rank: 16 MiB
        constexpr int kChildValue = 100, kKillAt = 1;
        EmbeddedMaster master;
        std::unique_ptr<ChildProcess> child;
        auto release = [&] {
            if (child) child->signal(SIGKILL);
            master.destroy();
        };
        std::atomic<int64_t> kill_ns{0};
        ClusterOptions opts;
        opts.groups = {0, 0};
        opts.expected_world = 3;
        opts.timeout_s = 50;
        PeerThreads survivors(master.address(), opts, [&](PeerCtx &ctx) {
            const int value = survivorValue(ctx.rank);
            std::vector<float> buf;
            auto gather = [&](uint32_t n) {
                const uint32_t me = ringRank(ctx.comm);
                buf.assign(kBlock * n, -1.0f);
                // The pattern of pccl_test_peer: element i of the whole buffer is value + i % 3.
                for (size_t j = 0; j < kBlock; ++j)
                    buf[me * kBlock + j] = static_cast<float>(value + static_cast<int>((me * kBlock + j) % 3));
                const pcclAllGatherDescriptor_t d{kBlock, nullptr, n, pcclFloat, 0};
                return std::make_pair(pcclAllGather(buf.data() + me * kBlock, buf.data(), &d, ctx.comm, nullptr), me);
            };
            // Every block holds one peer's pattern, and the values are those of the n peers.
            auto checkBlocks = [&](uint32_t n, std::vector<int> expected) {
                std::vector<int> seen;
                for (uint32_t r = 0; r < n; ++r) {
                    const int v = static_cast<int>(buf[r * kBlock]) - static_cast<int>((r * kBlock) % 3);
                    seen.push_back(v);
                    for (size_t j = 0; j < kBlock; j += 997)
                        PT_CHECK_MSG(buf[r * kBlock + j] == static_cast<float>(v + static_cast<int>((r * kBlock + j) % 3)),
                                     "block " << r << " element " << j << " is " << buf[r * kBlock + j]);
                }
                std::sort(seen.begin(), seen.end());
                std::sort(expected.begin(), expected.end());
                PT_CHECK_MSG(seen == expected, "the blocks hold the wrong peers' data");
            };
            for (int i = 0; i < kKillAt; ++i) {
                auto [r, me] = gather(3);
                PT_CHECK_MSG(r == pcclSuccess, "all-gather " << i << ": " << describe(r, ctx.comm));
                checkBlocks(3, {1, 10, kChildValue});
            }
            auto [r, me] = gather(3);
            PT_CHECK_MSG(r == pcclRankConnectionLost, "the all-gather during the kill returned " << describe(r, ctx.comm));
            PT_CHECK_MSG(secondsSinceNs(kill_ns.load()) < 5.0, "the survivor failed long after the kill");
            for (size_t j = 0; j < kBlock; j += 997)
                PT_CHECK_MSG(buf[me * kBlock + j] == static_cast<float>(value + static_cast<int>((me * kBlock + j) % 3)),
                             "the survivor's own block was written");
            const std::string msg = pcclGetLastErrorMessage(ctx.comm);
            PT_CHECK_MSG(msg.find("all-gather") != std::string::npos, "message: " << msg);
            // Laid out for three: refused at once; for the two survivors: done.
            auto [again, unused] = gather(3);
            (void)unused;
            PT_CHECK_MSG(again == pcclRankConnectionLost, "a retry laid out for 3 returned " << describe(again, ctx.comm));
            // As a user would: read the group's size, lay out for it, retry while the group changes.
            pcclResult_t two = pcclRankConnectionLost;
            uint32_t n = 0;
            const auto deadline = Clock::now() + std::chrono::seconds(15);
            while (two == pcclRankConnectionLost && Clock::now() < deadline) {
                n = static_cast<uint32_t>(attribute(ctx.comm, PCCL_ATTRIBUTE_PEER_GROUP_WORLD_SIZE));
                two = gather(n).first;
            }
            PT_CHECK_MSG(two == pcclSuccess && n == 2, "the retry on " << n << " peers: " << describe(two, ctx.comm));
            checkBlocks(2, {1, 10});
        });
        survivors.onAbort(release);
        child = std::make_unique<ChildProcess>(std::vector<std::string>{
            PCCL_TEST_PEER_BIN, "allreduce-loop", "--master", "127.0.0.1:" + std::to_string(master.port()), "--world", "3",
            "--value", std::to_string(kChildValue), "--coll", "allgather", "--count", std::to_string(3 * kBlock),
            "--iters", "10", "--stop-at", "inflight", "--watch-iter", std::to_string(kKillAt)});
        PT_CHECK_MSG(child->waitForLine("STOPPED " + std::to_string(kKillAt), 40),
                     "the victim never stopped mid all-gather:\n" << child->transcript());
        kill_ns = nowNs();
        child->signal(SIGKILL);
        PT_CHECK_MSG(child->wait(10).has_value(), "the killed child did not die");
        survivors.join(release);
    });
}
