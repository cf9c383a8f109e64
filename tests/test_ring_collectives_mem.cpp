// All-gather, reduce-scatter, broadcast and barrier on the ring engine over the in-memory
// transport (support/mem_transport.h): N engines of one kind in one thread, frames reordered
// across the connections of a pool by a seeded scheduler. Results are checked byte for byte
// against a reference (concatenation, reduction per block, the root's data) and across peers;
// fault paths for the failure each peer reports, quiescence and the restored in-place buffer.
// Each case prints (INFO) its parameters and seed, so a failure replays.
#include "support/ring_mem_checks.h"

namespace {

// A spec of kind k over these blocks (n = their number; all-gather, reduce-scatter) or of
// blocks.size() ranks (broadcast, barrier: set count). Peers start at steps the seed picks.
Spec collectiveSpec(CollectiveKind k, std::vector<size_t> blocks) {
    Spec s;
    s.kind = k;
    s.n = static_cast<int>(blocks.size());
    s.blocks = std::move(blocks);
    s.count = 0;
    s.segElems = 2;
    s.pool = 2;
    return s;
}

// Every rank succeeded once with the expected bytes (identical across ranks where they share one).
void requireCollectiveExact(Ring &ring) {
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
    for (int r = 0; r < s.n; ++r) {
        REQUIRE(ring.out[r].finishCalls == 1);
        REQUIRE(ring.ok(r));
        const auto got = ring.result(r);
        if (s.kind == CollectiveKind::ReduceScatter) {
            REQUIRE(got.size() == s.blocks[r] * es);
            if (!got.empty())
                REQUIRE(compareWithReference(s.dtype, s.op, got.data(), reduced.data() + s.offset(r) * es, s.blocks[r]) == "");
            // The input outside this rank's own block is never written.
            const auto &sent = s.inPlace ? ring.recv[r] : ring.send[r];
            for (int b = 0; b < s.n; ++b)
                if ((b != r || !s.inPlace) && s.blocks[b] > 0)
                    REQUIRE(std::memcmp(sent.data() + s.offset(b) * es, ring.input[r].data() + s.offset(b) * es,
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
                Spec s = collectiveSpec(CollectiveKind::AllGather, std::vector<size_t>(static_cast<size_t>(n), 9));
                s.dtype = t;
                s.inPlace = inPlace;
                s.seed = static_cast<uint64_t>(n * 100 + t);
                Ring ring(s);
                ring.run();
                requireCollectiveExact(ring);
            }
}

TEST_CASE("ring collectives over memory: uneven all-gather and reduce-scatter blocks, empty ones included",
          "[ring_mem][collectives]") {
    const std::vector<std::vector<size_t>> layouts = {{1, 0, 7}, {0, 0, 3, 1}, {13, 2}, {0, 5}, {4, 4, 4, 0, 9}};
    for (auto &blocks : layouts)
        for (CollectiveKind k : {CollectiveKind::AllGather, CollectiveKind::ReduceScatter})
            for (bool inPlace : {false, true})
                for (uint64_t seed = 1; seed <= 4; ++seed) {
                    Spec s = collectiveSpec(k, blocks);
                    s.inPlace = inPlace;
                    s.dtype = pcclInt32;
                    s.segElems = 1 + seed % 3;
                    s.seed = seed;
                    Ring ring(s);
                    ring.run();
                    requireCollectiveExact(ring);
                }
}

TEST_CASE("ring collectives over memory: reduce-scatter gives each rank the reference reduction of its block, every "
          "dtype and op", "[ring_mem][collectives]") {
    for (int n = 2; n <= 4; ++n)
        for (pcclDataType_t t : kTypes)
            for (pcclRedOp_t op : {pcclSum, pcclAvg, pcclProd, pcclMax, pcclMin})
                for (bool inPlace : {false, true}) {
                    Spec s = collectiveSpec(CollectiveKind::ReduceScatter, std::vector<size_t>(static_cast<size_t>(n), 7));
                    s.dtype = t;
                    s.op = op;
                    s.inPlace = inPlace;
                    s.seed = static_cast<uint64_t>(n * 1000 + t * 10 + op);
                    Ring ring(s);
                    ring.run();
                    requireCollectiveExact(ring);
                }
}

TEST_CASE("ring collectives over memory: quantized reduce-scatter stays within the quantization error",
          "[ring_mem][collectives]") {
    Spec s = collectiveSpec(CollectiveKind::ReduceScatter, {40, 40, 40});
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
        REQUIRE(ring.ok(r));
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
                    Spec s = collectiveSpec(CollectiveKind::Broadcast, std::vector<size_t>(static_cast<size_t>(n), 0));
                    s.count = 23;
                    s.root = root;
                    s.pool = pool;
                    s.inPlace = inPlace;
                    s.dtype = pcclBFloat16;
                    s.seed = static_cast<uint64_t>(n * 97 + root * 5 + pool);
                    Ring ring(s);
                    ring.run();
                    requireCollectiveExact(ring);
                    // A chain: the root's predecessor forwards nothing, everyone else forwards.
                    const int last = static_cast<int>((root + static_cast<uint32_t>(n) - 1) % static_cast<uint32_t>(n));
                    CHECK(ring.net.framesQueued(peerId(last), peerId(static_cast<int>(root))) == 0);
                }
}

TEST_CASE("ring collectives over memory: a barrier (no data) finishes on every rank without a frame",
          "[ring_mem][collectives]") {
    Ring ring(collectiveSpec(CollectiveKind::Barrier, {0, 0, 0}));
    ring.run();
    for (int r = 0; r < 3; ++r) {
        REQUIRE(ring.out[r].status);
        CHECK(ring.ok(r));
        CHECK(ring.net.framesQueued(peerId(r), peerId((r + 1) % 3)) == 0);
    }
}

TEST_CASE("ring collectives over memory: a broken link fails the ranks waiting on it; an abort restores every "
          "in-place buffer the operation writes over", "[ring_mem][collectives]") {
    for (CollectiveKind k : {CollectiveKind::AllGather, CollectiveKind::ReduceScatter, CollectiveKind::Broadcast})
        for (uint64_t frame = 0; frame < 4; ++frame) {
            Spec s = collectiveSpec(k, {6, 6, 6});
            if (!s.hasBlocks()) s.count = 18;
            s.root = 1;
            s.inPlace = true;
            s.seed = frame + 3;
            // The frame-th frame from rank 1 to rank 2 breaks the connection after 10 bytes.
            Ring ring(s, onFrame(1, 2, frame, MemFault::failSend(10)));
            ring.run();
            INFO(ring.report());
            REQUIRE(ring.out[1].status);
            CHECK_FALSE(ring.ok(1));
            CHECK_THAT(ring.message(1), Contains(collectiveName(k)) && Contains(peerName(2)));
            // Reduce-scatter: the input (own block included) is back; broadcast: every receiver's
            // buffer holds its own data again; all-gather: the own block is intact.
            abortAllAndRequireRestored(ring);
        }
}
