// All-gather, reduce-scatter, broadcast and barrier on the ring engine over the in-memory
// transport (support/mem_transport.h): N engines of one kind in one thread, frames reordered
// across the connections of a pool by a seeded scheduler. Results are checked byte for byte
// against a reference (concatenation, reduction per block, the root's data) and across peers;
// fault paths for the failure each peer reports, quiescence and the restored in-place buffer.
// Each case prints (INFO) its parameters and seed, so a failure replays.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "collectives/allreduce_ring.h"
#include "collectives/reduce_kernels.h"
#include "support/dtypes.h"
#include "support/mem_transport.h"

using namespace pccl;
using namespace pccl_test;
using collectives::RingAllReduce;
using Catch::Contains;

namespace {

struct Spec {
    CollectiveKind kind = CollectiveKind::AllGather;
    std::vector<size_t> blocks{5, 5, 5};  // per ring rank (AllGather, ReduceScatter); size = N
    size_t count = 0;                     // Broadcast: elements
    uint32_t root = 0;
    pcclDataType_t dtype = pcclFloat;
    pcclRedOp_t op = pcclSum;
    size_t segElems = 2;
    int pool = 2;
    bool inPlace = false;
    pcclQuantizationOptions_t quant{pcclUint8, pcclQuantNone};
    uint64_t seed = 1;

    int n() const { return static_cast<int>(blocks.size()); }
    size_t total() const {
        return kind == CollectiveKind::Broadcast ? count : std::accumulate(blocks.begin(), blocks.end(), size_t{0});
    }
    size_t offset(int r) const { return std::accumulate(blocks.begin(), blocks.begin() + r, size_t{0}); }
    std::string str() const {
        std::ostringstream os;
        os << collectiveName(kind) << " n=" << n() << " blocks=";
        for (size_t b : blocks) os << b << ",";
        os << " count=" << count << " root=" << root << " " << dtypeName(dtype) << " " << opName(op)
           << " segElems=" << segElems << " pool=" << pool << (inPlace ? " in-place" : "") << " seed=" << seed;
        return os.str();
    }
};

constexpr uint64_t kSeq = 7, kTag = 11;

Uuid peerId(int r) {
    Uuid u;
    u.bytes.fill(static_cast<uint8_t>(0x21 * (r + 1)));
    return u;
}

// The engines of one collective over a MemNetwork, with each rank's buffers:
// `whole[r]` holds every block (all-gather's output, reduce-scatter's input, broadcast's buffer),
// `own[r]` this rank's block (all-gather's input, reduce-scatter's output); in place, own[r] is
// unused and the block lives inside whole[r].
class Ring {
public:
    explicit Ring(const Spec &s, MemFaultRule rule = nullptr) : spec(s), net(s.seed) {
        const size_t es = dtypeSize(s.dtype), total = s.total();
        const int n = s.n();
        out.resize(static_cast<size_t>(n));
        for (int r = 0; r < n; ++r) {
            // Every rank's full input (reduce-scatter, broadcast), or its block (all-gather).
            std::vector<uint8_t> in(total * es);
            fillSmall(s.dtype, s.op, r + static_cast<int>(s.seed % 7), in.data(), total);
            if (s.kind == CollectiveKind::AllGather)
                in = std::vector<uint8_t>(in.begin() + static_cast<long>(s.offset(r) * es),
                                          in.begin() + static_cast<long>((s.offset(r) + s.blocks[r]) * es));
            input.push_back(in);
            std::vector<uint8_t> w(total * es, 0xee), o;
            switch (s.kind) {
                case CollectiveKind::AllGather:
                    o = in;
                    if (s.inPlace) std::memcpy(w.data() + s.offset(r) * es, in.data(), in.size());
                    break;
                case CollectiveKind::ReduceScatter:
                    w = in;
                    o.assign(s.blocks[r] * es, 0xee);
                    break;
                default:
                    if (s.inPlace || static_cast<uint32_t>(r) == s.root) w = in;
            }
            whole.push_back(w);
            own.push_back(o);
        }
        for (int r = 0; r < n; ++r) net.addPeer(peerId(r));
        if (rule) net.setFaultRule(std::move(rule));
        for (int r = 0; r < n; ++r) {
            collectives::RingAllReduceParams p;
            p.seq = kSeq;
            p.kind = s.kind;
            p.tag = kTag;
            p.rank = static_cast<uint32_t>(r);
            p.worldSize = static_cast<uint32_t>(n);
            p.prev = peerId((r + n - 1) % n);
            p.next = peerId((r + 1) % n);
            p.prevName = "prev of " + std::to_string(r);
            p.nextName = "next of " + std::to_string(r);
            p.dtype = s.dtype;
            p.op = s.op;
            p.quant = s.quant;
            p.root = s.root;
            p.count = total;
            p.segmentBytes = s.segElems * dataTypeSize(collectives::accumType(s.dtype, s.op));
            uint8_t *w = whole[r].data();
            uint8_t *ownBlock = w + s.offset(r) * es;
            switch (s.kind) {
                case CollectiveKind::AllGather:
                    p.blocks = s.blocks;
                    p.send = s.inPlace ? ownBlock : own[r].data();
                    p.recv = w;
                    break;
                case CollectiveKind::ReduceScatter:
                    p.blocks = s.blocks;
                    p.send = w;
                    p.recv = s.inPlace ? ownBlock : own[r].data();
                    break;
                default:
                    p.send = s.inPlace ? w : (static_cast<uint32_t>(r) == s.root ? input[r].data() : nullptr);
                    p.recv = w;
            }
            auto op = std::make_shared<RingAllReduce>(net.transport(peerId(r)), p, [this, r](Status st) {
                std::lock_guard lock(mu);
                ++out[static_cast<size_t>(r)].finishCalls;
                out[static_cast<size_t>(r)].status = std::move(st);
            });
            ops.push_back(op);
            net.transport(peerId(r)).registerSink(kSeq, op);
            net.connect(peerId(r), peerId((r + 1) % n), s.pool);
        }
    }

    void run() {
        for (auto &op : ops) op->start();
        net.run();
    }

    // This rank's result: the whole buffer, or its block.
    std::vector<uint8_t> result(int r) const {
        const size_t es = dtypeSize(spec.dtype);
        if (spec.kind != CollectiveKind::ReduceScatter) return whole[r];
        if (!spec.inPlace) return own[r];
        const auto *b = whole[r].data() + spec.offset(r) * es;
        return {b, b + spec.blocks[r] * es};
    }

    std::string report() const {
        std::ostringstream os;
        os << spec.str() << "\n";
        for (size_t r = 0; r < out.size(); ++r)
            os << "  rank " << r << ": "
               << (out[r].status ? (out[r].status->ok() ? "ok" : out[r].status->message()) : "no report") << "\n";
        return os.str() + net.trace();
    }

    struct Outcome {
        int finishCalls = 0;
        std::optional<Status> status;
    };
    Spec spec;
    MemNetwork net;
    std::vector<std::vector<uint8_t>> input, whole, own;
    std::vector<std::shared_ptr<RingAllReduce>> ops;
    std::vector<Outcome> out;
    std::mutex mu;
};

// Every rank succeeded once with the expected bytes (identical across ranks where they share one).
void requireExact(Ring &ring) {
    const Spec &s = ring.spec;
    const size_t es = dtypeSize(s.dtype);
    INFO(ring.report());
    std::vector<uint8_t> expected;
    if (s.kind == CollectiveKind::AllGather)
        for (auto &in : ring.input) expected.insert(expected.end(), in.begin(), in.end());
    if (s.kind == CollectiveKind::Broadcast) expected = ring.input[s.root];
    std::vector<uint8_t> reduced(s.total() * es);
    if (s.kind == CollectiveKind::ReduceScatter) {
        std::vector<const void *> ins;
        for (auto &in : ring.input) ins.push_back(in.data());
        referenceReduce(s.dtype, s.op, ins, s.total(), reduced.data());
    }
    for (int r = 0; r < s.n(); ++r) {
        REQUIRE(ring.out[r].finishCalls == 1);
        REQUIRE(ring.out[r].status->ok());
        const auto got = ring.result(r);
        if (s.kind == CollectiveKind::ReduceScatter) {
            REQUIRE(got.size() == s.blocks[r] * es);
            if (!got.empty())
                REQUIRE(compareWithReference(s.dtype, s.op, got.data(), reduced.data() + s.offset(r) * es, s.blocks[r]) == "");
            // The input outside this rank's own block is never written.
            for (int b = 0; b < s.n(); ++b)
                if (b != r || !s.inPlace)
                    REQUIRE(std::memcmp(ring.whole[r].data() + s.offset(b) * es, ring.input[r].data() + s.offset(b) * es,
                                        s.blocks[b] * es) == 0);
        } else {
            REQUIRE(got == expected);
        }
    }
}

const pcclDataType_t kTypes[] = {pcclInt8,  pcclUint8,   pcclInt16, pcclUint16, pcclInt32, pcclUint32,
                                 pcclInt64, pcclUint64, pcclFloat16, pcclBFloat16, pcclFloat, pcclDouble};

} // namespace

TEST_CASE("ring collectives over memory: all-gather places block r at offset r x count, every dtype, in and out of "
          "place", "[ring_mem][collectives]") {
    for (int n = 2; n <= 5; ++n)
        for (pcclDataType_t t : kTypes)
            for (bool inPlace : {false, true}) {
                Spec s;
                s.kind = CollectiveKind::AllGather;
                s.blocks.assign(static_cast<size_t>(n), 9);
                s.dtype = t;
                s.inPlace = inPlace;
                s.seed = static_cast<uint64_t>(n * 100 + t);
                Ring ring(s);
                ring.run();
                requireExact(ring);
            }
}

TEST_CASE("ring collectives over memory: uneven all-gather and reduce-scatter blocks, empty ones included",
          "[ring_mem][collectives]") {
    const std::vector<std::vector<size_t>> layouts = {{1, 0, 7}, {0, 0, 3, 1}, {13, 2}, {0, 5}, {4, 4, 4, 0, 9}};
    for (auto &blocks : layouts)
        for (CollectiveKind k : {CollectiveKind::AllGather, CollectiveKind::ReduceScatter})
            for (bool inPlace : {false, true})
                for (uint64_t seed = 1; seed <= 4; ++seed) {
                    Spec s;
                    s.kind = k;
                    s.blocks = blocks;
                    s.inPlace = inPlace;
                    s.dtype = pcclInt32;
                    s.segElems = 1 + seed % 3;
                    s.seed = seed;
                    Ring ring(s);
                    ring.run();
                    requireExact(ring);
                }
}

TEST_CASE("ring collectives over memory: reduce-scatter gives each rank the reference reduction of its block, every "
          "dtype and op", "[ring_mem][collectives]") {
    for (int n = 2; n <= 4; ++n)
        for (pcclDataType_t t : kTypes)
            for (pcclRedOp_t op : {pcclSum, pcclAvg, pcclProd, pcclMax, pcclMin})
                for (bool inPlace : {false, true}) {
                    Spec s;
                    s.kind = CollectiveKind::ReduceScatter;
                    s.blocks.assign(static_cast<size_t>(n), 7);
                    s.dtype = t;
                    s.op = op;
                    s.inPlace = inPlace;
                    s.seed = static_cast<uint64_t>(n * 1000 + t * 10 + op);
                    Ring ring(s);
                    ring.run();
                    requireExact(ring);
                }
}

TEST_CASE("ring collectives over memory: quantized reduce-scatter stays within the quantization error",
          "[ring_mem][collectives]") {
    Spec s;
    s.kind = CollectiveKind::ReduceScatter;
    s.blocks = {40, 40, 40};
    s.segElems = 16;
    s.quant = {pcclUint16, pcclQuantMinMax};
    Ring ring(s);
    ring.run();
    INFO(ring.report());
    std::vector<const void *> ins;
    for (auto &in : ring.input) ins.push_back(in.data());
    std::vector<uint8_t> ref(120 * 4);
    referenceReduce(pcclFloat, pcclSum, ins, 120, ref.data());
    for (int r = 0; r < 3; ++r) {
        REQUIRE(ring.out[r].status->ok());
        const auto got = ring.result(r);
        for (size_t i = 0; i < 40; ++i)
            REQUIRE(std::abs(loadFloat(pcclFloat, got.data(), i) - loadFloat(pcclFloat, ref.data(), 40 * r + i)) < 0.01);
        // The transport carried codes, not floats: fewer bytes than the exact reduce-scatter.
        CHECK(ring.ops[r]->txBytes() < 2 * 40 * 4);
    }
}

TEST_CASE("ring collectives over memory: broadcast from every root, pools of 1 and 4, reordered frames",
          "[ring_mem][collectives]") {
    for (int n = 2; n <= 5; ++n)
        for (uint32_t root = 0; root < static_cast<uint32_t>(n); ++root)
            for (int pool : {1, 4})
                for (bool inPlace : {false, true}) {
                    Spec s;
                    s.kind = CollectiveKind::Broadcast;
                    s.blocks.assign(static_cast<size_t>(n), 0);
                    s.count = 23;
                    s.root = root;
                    s.pool = pool;
                    s.inPlace = inPlace;
                    s.dtype = pcclBFloat16;
                    s.seed = static_cast<uint64_t>(n * 97 + root * 5 + pool);
                    Ring ring(s);
                    ring.run();
                    requireExact(ring);
                    // A chain: the root's predecessor forwards nothing, everyone else forwards.
                    const int last = static_cast<int>((root + static_cast<uint32_t>(n) - 1) % static_cast<uint32_t>(n));
                    CHECK(ring.net.framesQueued(peerId(last), peerId(static_cast<int>(root))) == 0);
                }
}

TEST_CASE("ring collectives over memory: a barrier (no data) finishes on every rank without a frame",
          "[ring_mem][collectives]") {
    Spec s;
    s.kind = CollectiveKind::Barrier;
    s.blocks.assign(3, 0);
    Ring ring(s);
    ring.run();
    for (int r = 0; r < 3; ++r) {
        REQUIRE(ring.out[r].status);
        CHECK(ring.out[r].status->ok());
        CHECK(ring.net.framesQueued(peerId(r), peerId((r + 1) % 3)) == 0);
    }
}

TEST_CASE("ring collectives over memory: a broken link fails the ranks waiting on it; an abort restores every "
          "in-place buffer the operation writes over", "[ring_mem][collectives]") {
    for (CollectiveKind k : {CollectiveKind::AllGather, CollectiveKind::ReduceScatter, CollectiveKind::Broadcast})
        for (uint64_t frame = 0; frame < 4; ++frame) {
            Spec s;
            s.kind = k;
            s.blocks = {6, 6, 6};
            s.count = 18;
            s.root = 1;
            s.inPlace = true;
            s.seed = frame + 3;
            // The frame-th frame from rank 1 to rank 2 breaks the connection after 10 bytes.
            Ring ring(s, [frame](const MemFrameInfo &f) {
                return f.from == peerId(1) && f.to == peerId(2) && f.index == frame ? MemFault::failSend(10) : MemFault{};
            });
            ring.run();
            INFO(ring.report());
            REQUIRE(ring.out[1].status);
            CHECK_FALSE(ring.out[1].status->ok());
            CHECK_THAT(ring.out[1].status->message(), Contains(collectiveName(k)) && Contains("next of 1"));
            int quiet = 0;
            for (int r = 0; r < 3; ++r)
                ring.ops[r]->abort("test abort", [&quiet] { ++quiet; });
            ring.net.run();
            CHECK(quiet == 3);
            for (int r = 0; r < 3; ++r) {
                // Reduce-scatter: the input (own block included) is back; broadcast: every
                // receiver's buffer holds its own data again; all-gather: the own block is intact.
                if (k == CollectiveKind::AllGather) {
                    const size_t es = dtypeSize(s.dtype);
                    CHECK(std::memcmp(ring.whole[r].data() + s.offset(r) * es, ring.input[r].data(), 6 * es) == 0);
                } else {
                    CHECK(ring.whole[r] == ring.input[r]);
                }
            }
        }
}
