// Segment scheduling over the in-memory transport (docs/design.md, Segment scheduling): a
// segment travels as frames on the unit grid, the pool's shared queue hands each frame to
// whichever connection takes it first, so frames of one segment arrive on any connection and in
// any order, a connection held back leaves the rest of the phase to the others, and faults on
// one connection of a pool keep the all-or-nothing semantics.
#include "support/ring_mem_checks.h"

#include <map>
#include <set>

namespace {

// Every frame as a connection took it: its sender's rank, connection and header.
struct Taken {
    int from;
    int connection;
    transport::SegmentHeader h;
};

struct Recorder {
    std::mutex mu;
    std::vector<Taken> taken;
    MemFaultRule rule(int n, MemFaultRule inner = nullptr) {
        return [this, n, inner](const MemFrameInfo &f) {
            int from = 0;
            for (int r = 0; r < n; ++r)
                if (f.from == peerId(r)) from = r;
            {
                std::lock_guard lock(mu);
                taken.push_back({from, f.connection, f.header});
            }
            return inner ? inner(f) : MemFault{};
        };
    }
};

} // namespace

TEST_CASE("frames: a segment is cut into about one frame per connection, on the unit grid, within the bounds",
          "[ring_mem]") {
    using collectives::frameElems;
    CHECK(frameElems(1024, 16, 4, 1, 1) == 1024);  // one connection: the whole segment
    CHECK(frameElems(1024, 16, 4, 4, 1) == 256);
    CHECK(frameElems(1024, 16, 4, 64, 1) == 16);   // never below one unit
    CHECK(frameElems(1000, 16, 4, 3, 1) == 336);   // 334 rounded up to the grid
    CHECK(frameElems(1024, 16, 4, 4, 2048) == 512);  // at least 2048 bytes
    CHECK(frameElems(1024, 16, 4, 4, 1 << 20) == 1024);  // at most the segment
    CHECK(frameElems(1024, 16, 4, 0, 1) == 1024);   // no pool yet: as one connection
    // The default: 8 MiB float segments over 16 connections travel as 512 KiB frames.
    const size_t seg = (8 << 20) / 4, unit = (seg + 63) / 64;
    CHECK(frameElems(seg, unit, 4, 16) * 4 == size_t{512} << 10);
    CHECK(frameElems(seg, unit, 4, 64) * 4 == size_t{128} << 10);  // one unit
    // Cut, a frame is at most 1 MiB (a slow connection's tail); uncut, the whole segment.
    CHECK(frameElems(seg, unit, 4, 4) * 4 == size_t{1} << 20);
    CHECK(frameElems(seg, unit, 4, 2) * 4 == size_t{1} << 20);
    CHECK(frameElems(seg, unit, 4, 1) * 4 == size_t{8} << 20);
    // A 1 MiB segment over 64 connections: the 64 KiB floor (16 KiB units).
    CHECK(frameElems(size_t{1} << 18, size_t{1} << 12, 4, 64) * 4 == size_t{64} << 10);
}

TEST_CASE("ring over memory: a segment's frames travel on several connections of the pool and reduce exactly",
          "[ring_mem]") {
    for (int n : {2, 3})
        for (bool inPlace : {false, true})
            for (uint64_t seed = 1; seed <= 8; ++seed) {
                Spec s;
                s.n = n;
                s.count = 1000;
                s.segElems = 128;  // unit of 2 elements; pool 4 -> frames of 32
                s.pool = 4;
                s.inPlace = inPlace;
                s.seed = seed;
                Recorder rec;
                Ring ring(s, rec.rule(n));
                ring.run();
                requireExact(ring);
                INFO(s.str());
                // Per (sender, phase, segment start): the connections its frames took.
                std::map<std::tuple<int, int, uint64_t>, std::set<int>> conns;
                size_t segmentsSpread = 0;
                for (auto &t : rec.taken) {
                    CHECK(t.h.bytes <= 32 * 4);
                    conns[{t.from, t.h.phase, t.h.offset / 128}].insert(t.connection);
                }
                for (auto &[key, set] : conns) segmentsSpread += set.size() > 1;
                CHECK(segmentsSpread > conns.size() / 2);
                for (int r = 0; r < n; ++r)
                    for (auto frames : ring.net.framesWritten(peerId(r), peerId((r + 1) % n))) CHECK(frames > 0);
            }
}

TEST_CASE("ring over memory: a connection held back leaves the rest of the phase to the others", "[ring_mem]") {
    // The first frame connection 0 of peer 0 takes waits a million steps: the other three take
    // every other frame meanwhile (a connection chosen when a frame is queued would have had
    // frames assigned behind it).
    for (uint64_t seed = 1; seed <= 6; ++seed) {
        Spec s;
        s.n = 2;
        s.count = 4096;
        s.segElems = 256;
        s.pool = 4;
        s.inPlace = seed % 2 == 0;
        s.seed = seed;
        bool held = false;
        Ring ring(s, [&held](const MemFrameInfo &f) {
            if (f.from != peerId(0) || f.connection != 0 || held) return MemFault{};
            held = true;
            return MemFault::delay(1000000);
        });
        ring.run();
        requireExact(ring);
        INFO(s.str());
        const auto per = ring.net.framesWritten(peerId(0), peerId(1));
        REQUIRE(per.size() == 4);
        CHECK(per[0] == 1);
        CHECK(per[1] + per[2] + per[3] + 1 == ring.net.framesQueued(peerId(0), peerId(1)));
    }
}

TEST_CASE("ring over memory: a connection stalled mid-frame: the others carry the rest, the receiver waits for the "
          "missing units; an abort restores every input",
          "[ring_mem]") {
    for (uint64_t seed = 1; seed <= 6; ++seed) {
        Spec s;
        s.n = 3;
        s.count = 3000;
        s.segElems = 256;
        s.pool = 4;
        s.inPlace = true;
        s.seed = seed;
        bool stalled = false;
        Ring ring(s, [&stalled](const MemFrameInfo &f) {
            // The tenth frame connection 2 of peer 0 takes stops after its header and 8 bytes.
            if (f.from != peerId(0) || f.connection != 2 || stalled || f.index < 10) return MemFault{};
            stalled = true;
            return MemFault::stall(transport::kSegmentHeaderBytes + 8);
        });
        ring.run();
        INFO(ring.report());
        REQUIRE(stalled);
        const auto per = ring.net.framesWritten(peerId(0), peerId(1));
        const uint64_t others = per[0] + per[1] + per[3];
        // Everything but the stuck frame went on the other three (its successors that depend on
        // it never exist: their data is still missing downstream).
        CHECK(others + per[2] <= ring.net.framesQueued(peerId(0), peerId(1)));
        CHECK(others > 0);
        CHECK(!ring.out[1].status);  // waiting for the stuck frame's units
        auto why = waitForStall(ring, 1, std::chrono::milliseconds(1));
        REQUIRE(why);
        CHECK_THAT(*why, Contains("segments from " + peerName(0) + " still missing"));
        // The stuck frame holds both ends mid-frame: removing peer 0 fails it, then every abort
        // quiesces with the inputs restored.
        ring.net.transport(peerId(1)).closePeer(peerId(0), "peer " + shortId(0) + " removed from the run");
        ring.run();
        CHECK_THAT(ring.message(1), Contains("receiving from " + shortId(0) + " failed"));
        abortAllAndRequireRestored(ring);
    }
}

TEST_CASE("ring over memory: one connection of a pool lost mid-frame fails the receiver; nothing succeeds wrongly and "
          "every in-place input is restored",
          "[ring_mem]") {
    for (uint64_t seed = 1; seed <= 8; ++seed)
        for (int n : {2, 3}) {
            Spec s;
            s.n = n;
            s.count = 2000;
            s.segElems = 128;
            s.pool = 4;
            s.inPlace = true;
            s.seed = seed;
                bool dropped = false;
            Ring ring(s, [&dropped, seed](const MemFrameInfo &f) {
                if (f.from != peerId(0) || f.connection != 1 || dropped || f.index < seed * 3) return MemFault{};
                dropped = true;
                return MemFault::drop(transport::kSegmentHeaderBytes + 4);
            });
            ring.run();
            INFO(ring.report());
            REQUIRE(dropped);
            REQUIRE(ring.out[1].status);
            CHECK(!ring.ok(1));
            CHECK_THAT(ring.message(1), Contains("receiving from " + shortId(0) + " failed: connection lost (injected)"));
            requireNoWrongSuccess(ring);
            abortAllAndRequireRestored(ring);
        }
}

TEST_CASE("ring over memory: frames off the unit grid, overlapping a received one or not whole elements are protocol "
          "errors",
          "[ring_mem]") {
    // Peer 1 of 2 receives the reduce-scatter of chunk 1 from peer 0: elements 128..255, one
    // segment of 128 elements, so a grid of 2 elements (128 / 64 units).
    Spec s;
    s.n = 2;
    s.count = 256;
    s.segElems = 128;
    s.pool = 2;
    Ring ring(s);
    auto &engine = *ring.ops[1];
    auto frame = [](uint64_t offset, uint32_t bytes) {
        transport::SegmentHeader h;
        h.seq = kSeq;
        h.offset = offset;
        h.bytes = bytes;
        h.phase = 0;
        return h;
    };
    std::string error;
    CHECK(engine.beginFrame(frame(129, 8), peerId(0), &error) == nullptr);  // off the grid
    CHECK_THAT(error, Contains("does not match the segmentation"));
    error.clear();
    CHECK(engine.beginFrame(frame(128, 6), peerId(0), &error) == nullptr);  // 1.5 elements
    CHECK_THAT(error, Contains("does not match the segmentation"));
    error.clear();
    CHECK(engine.beginFrame(frame(130, 4), peerId(0), &error) == nullptr);  // 1 element: not a unit multiple
    CHECK_THAT(error, Contains("does not match the segmentation"));
    error.clear();
    CHECK(engine.beginFrame(frame(250, 32), peerId(0), &error) == nullptr);  // past the segment's end
    CHECK_THAT(error, Contains("does not match the segmentation"));
    error.clear();
    const auto first = frame(128, 16 * 4);
    REQUIRE(engine.beginFrame(first, peerId(0), &error) != nullptr);
    CHECK(error.empty());
    CHECK(engine.beginFrame(frame(136, 16 * 4), peerId(0), &error) == nullptr);  // overlaps it
    CHECK_THAT(error, Contains("unexpected or duplicate frame at offset 136"));
    error.clear();
    REQUIRE(engine.beginFrame(frame(254, 2 * 4), peerId(0), &error) != nullptr);  // the segment's last unit
    engine.onPayloadFailed(first, "test");
    engine.onPayloadFailed(frame(254, 8), "test");
}
