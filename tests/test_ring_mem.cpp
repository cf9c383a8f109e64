// The ring all-reduce over the in-memory transport (support/mem_transport.h): N peers as
// RingAllReduce instances in one thread, their frames delivered by a seeded scheduler that
// reorders frames across the connections of a pool and injects faults. Results are checked
// byte for byte against a reference reduction and across peers; fault paths are checked for
// the failure each peer reports, its message, quiescence and the restored in-place input.
// Every case prints (INFO) its parameters and seed, so a failure replays.
#include "support/ring_mem_checks.h"

// ---------------------------------------------------------------------------------------------
// Results

TEST_CASE("ring over memory: every dtype and op, N = 2..5, gives the reference result on every peer", "[ring_mem]") {
    for (int n = 2; n <= 5; ++n)
        for (auto t : kAllDtypes)
            for (auto op : kAllOps) {
                Spec s;
                s.n = n;
                s.count = 37;
                s.dtype = t;
                s.op = op;
                s.segElems = 2;
                s.pool = 2;
                s.inPlace = (n + static_cast<int>(t) + static_cast<int>(op)) % 2 == 0;
                s.seed = static_cast<uint64_t>(n * 1000 + t * 10 + op);
                Ring ring(s);
                ring.run();
                requireExact(ring);
            }
}

TEST_CASE("ring over memory: uneven counts (not divisible by N, fewer elements than peers, none) reduce exactly",
          "[ring_mem]") {
    for (int n = 2; n <= 5; ++n)
        for (size_t count : {size_t{0}, size_t{1}, size_t(n - 1), size_t(n + 1), size_t(2 * n - 1), size_t{101}})
            for (size_t seg : {size_t{0}, size_t{1}, size_t{3}})
                for (bool inPlace : {false, true}) {
                    Spec s;
                    s.n = n;
                    s.count = count;
                    s.dtype = count % 2 ? pcclInt32 : pcclFloat16;
                    s.op = count % 3 ? pcclSum : pcclAvg;
                    s.segElems = seg;
                    s.pool = 2;
                    s.inPlace = inPlace;
                    s.seed = count * 31 + seg * 7 + static_cast<uint64_t>(n) + (inPlace ? 1000 : 0);
                    Ring ring(s);
                    ring.run();
                    requireExact(ring);
                }
}

TEST_CASE("ring over memory: segments are striped over pools of 1, 2 and 4 connections, with identical results",
          "[ring_mem]") {
    for (int pool : {1, 2, 4})
        for (size_t seg : {size_t{1}, size_t{4}, size_t{16}})
            for (int n : {2, 3, 5}) {
                Spec s;
                s.n = n;
                s.count = 200;
                s.dtype = pcclFloat;
                s.op = pcclSum;
                s.segElems = seg;
                s.pool = pool;
                s.seed = static_cast<uint64_t>(pool * 100 + static_cast<int>(seg) * 10 + n);
                Ring ring(s);
                ring.run();
                requireExact(ring);
                // Striping: every connection of the pool carried frames when there were enough.
                for (int r = 0; r < n; ++r) {
                    const auto per = ring.net.framesWritten(peerId(r), peerId((r + 1) % n));
                    INFO(s.str() << " rank " << r);
                    REQUIRE(per.size() == static_cast<size_t>(pool));
                    if (seg == 1)
                        for (auto frames : per) CHECK(frames > 0);
                }
            }
}

TEST_CASE("ring over memory: quantized transport is byte-identical on every peer and within the error bound",
          "[ring_mem]") {
    for (int n = 2; n <= 5; ++n)
        for (auto t : {pcclFloat, pcclDouble, pcclFloat16, pcclBFloat16})
            for (auto op : {pcclSum, pcclAvg, pcclMax, pcclMin})
                for (auto algo : {pcclQuantMinMax, pcclQuantZeroPointScale})
                    for (auto q : {pcclUint8, pcclUint16}) {
                        Spec s;
                        s.n = n;
                        s.count = 61;
                        s.dtype = t;
                        s.op = op;
                        s.segElems = 8;
                        s.pool = 2;
                        s.inPlace = (n + op) % 2 == 1;
                        s.quant = {q, algo};
                        s.inputs = Inputs::Wave;
                        s.seed = static_cast<uint64_t>(n * 100000 + t * 1000 + op * 100 + algo * 10 + q);
                        REQUIRE(collectives::checkQuantization(t, op, s.quant).ok());
                        Ring ring(s);
                        ring.run();
                        requireAllOkAndIdentical(ring);
                        // Each hop adds at most half a step of a segment's range (partials of n
                        // inputs in [-1, 1]: range <= 2n), plus the dtype's own rounding.
                        const double levels = q == pcclUint8 ? 253 : 65533;
                        const double perHop = 2.0 * n / (levels - 1) / 2;
                        const double eps = t == pcclBFloat16 ? 1.0 / 128 : t == pcclFloat16 ? 1.0 / 1024 : 1e-6;
                        const double bound = n * perHop * 1.05 + eps * n * 2;
                        double worst = 0;
                        for (size_t i = 0; i < s.count; ++i) {
                            double exact = 0;
                            for (int r = 0; r < n; ++r) {
                                const double v = loadFloat(t, ring.input[static_cast<size_t>(r)].data(), i);
                                exact = r == 0 ? v
                                        : op == pcclMax ? std::max(exact, v)
                                        : op == pcclMin ? std::min(exact, v)
                                                        : exact + v;
                            }
                            if (op == pcclAvg) exact /= n;
                            worst = std::max(worst, std::fabs(loadFloat(t, ring.recv[0].data(), i) - exact));
                        }
                        INFO(s.str() << ": error " << worst << ", bound " << bound);
                        CHECK(worst <= bound);
                    }
}

TEST_CASE("ring over memory: reordering frames across connections never changes a result bit (2000 seeds)",
          "[ring_mem]") {
    // Random shapes and random-valued inputs (so float rounding depends on the order of
    // reduction); each run's bytes must equal those of the same ring delivered in send order.
    for (uint64_t seed = 1; seed <= 2000; ++seed) {
        Rng rng{seed};
        Spec s;
        s.seed = seed;
        s.n = 2 + static_cast<int>(rng.below(4));
        s.count = rng.below(4) == 0 ? rng.below(static_cast<size_t>(s.n) + 1) : rng.below(300);
        s.dtype = kAllDtypes[rng.below(kAllDtypes.size())];
        s.op = kAllOps[rng.below(5)];
        s.segElems = rng.below(4) == 0 ? 0 : 1 + rng.below(12);
        s.pool = std::array{1, 2, 4}[rng.below(3)];
        s.inPlace = rng.below(2) == 1;
        s.inputs = Inputs::Random;
        if (quantizable(s.dtype, s.op) && rng.below(3) == 0)
            s.quant = {rng.below(2) ? pcclUint8 : pcclUint16, rng.below(2) ? pcclQuantMinMax : pcclQuantZeroPointScale};
        Spec inOrder = s;
        inOrder.order = MemNetwork::Order::Fifo;
        inOrder.staggeredStarts = false;
        Ring baseline(inOrder);
        baseline.run();
        requireAllOkAndIdentical(baseline);

        // Some frames are also held back, which reorders them against the other connections.
        Rng delays{seed * 31};
        std::vector<size_t> held(512);
        for (auto &d : held) d = delays.below(5) == 0 ? delays.below(40) : 0;
        Ring ring(s, [held](const MemFrameInfo &f) {
            const size_t d = held[(f.index * 7 + f.header.offset) % held.size()];
            return d ? MemFault::delay(d) : MemFault{};
        });
        ring.run();
        requireAllOkAndIdentical(ring);
        INFO(s.str());
        REQUIRE(ring.recv[0] == baseline.recv[0]);
    }
}

TEST_CASE("ring over memory: peers that start only after their predecessor sent everything it could", "[ring_mem]") {
    // Reverse ring order, the network drained before each start: every forward is deferred
    // until its peer starts.
    for (int n = 2; n <= 5; ++n)
        for (bool inPlace : {false, true}) {
            Spec s;
            s.n = n;
            s.count = 53;
            s.dtype = pcclBFloat16;
            s.op = pcclAvg;
            s.segElems = 3;
            s.pool = 2;
            s.inPlace = inPlace;
            s.seed = static_cast<uint64_t>(n) + (inPlace ? 50 : 0);
            Ring ring(s);
            for (int r = n - 1; r >= 0; --r) {
                ring.start(r);
                ring.net.run();
            }
            requireExact(ring);
        }
}

TEST_CASE("ring over memory: four worker threads delivering concurrently give the exact result", "[ring_mem]") {
    for (uint64_t seed = 1; seed <= 20; ++seed) {
        Spec s;
        s.seed = seed;
        s.n = 2 + static_cast<int>(seed % 4);
        s.count = 150 + seed;
        s.dtype = std::array{pcclFloat, pcclInt64, pcclFloat16, pcclUint8}[seed % 4];
        s.op = kAllOps[seed % 5];
        s.segElems = 1 + seed % 5;
        s.pool = 4;
        s.inPlace = seed % 2 == 0;
        Ring ring(s);
        for (int r = 0; r < s.n; ++r) ring.start(r);
        REQUIRE(ring.net.runConcurrently(4, std::chrono::seconds(30)));
        requireExact(ring);
    }
}

// ---------------------------------------------------------------------------------------------
// Faults

TEST_CASE("ring over memory: a connection lost in the middle of a frame fails the receiver at once, naming its "
          "predecessor and the phase",
          "[ring_mem]") {
    for (int n : {2, 3, 4}) {
        Spec s;
        s.n = n;
        s.count = 40;
        s.segElems = 4;
        s.inPlace = true;
        s.seed = static_cast<uint64_t>(n);
        s.staggeredStarts = false;  // no forward deferred: each peer's first frames are its own partials
        const uint64_t total = framesBetween(s, 0, 1);
        REQUIRE(total > 2);
        for (uint64_t k = 0; k < total; ++k) {
            // The header and 2 payload bytes arrive (every payload here has at least 4).
            Ring ring(s, onFrame(0, 1, k, MemFault::drop(24 + 2)));
            ring.run();
            INFO(ring.report() << "dropped frame " << k << " of " << total);
            REQUIRE(ring.out[1].status);
            const Status &st = *ring.out[1].status;
            CHECK(st.code() == pcclRankConnectionLost);
            CHECK_THAT(st.message(), Contains("receiving from " + shortId(0) + " failed: connection lost") &&
                                         Contains("from " + peerName(0)) && Contains("all-reduce tag 9"));
            // The first frame is a reduce-scatter partial; with one connection, the last frame is
            // the final all-gather segment, after every reduce-scatter frame arrived.
            if (k == 0) CHECK_THAT(st.message(), Contains("reduce-scatter phase"));
            if (k == total - 1) CHECK_THAT(st.message(), Contains("all-gather phase: 1 of"));
            requireNoWrongSuccess(ring);
            abortAllAndRequireRestored(ring);
        }
    }
}

TEST_CASE("ring over memory: a connection lost between frames leaves the receiver waiting; stalled() names the "
          "predecessor and the phase after the limit, not before",
          "[ring_mem]") {
    Spec s;
    s.n = 3;
    s.count = 30;
    s.segElems = 2;
    s.inPlace = true;
    s.staggeredStarts = false;
    const uint64_t total = framesBetween(s, 0, 1);
    // The sender's last frame to peer 1 is lost with its connection; nothing is queued behind it.
    Ring ring(s, onFrame(0, 1, total - 1, MemFault::drop(0)));
    ring.run();
    INFO(ring.report());
    CHECK(ring.ok(0));  // its sends all completed: the loss is silent on its side
    CHECK(!ring.out[1].status);
    CHECK(!ring.ops[1]->stalled(std::chrono::hours(1)));
    auto why = waitForStall(ring, 1, std::chrono::milliseconds(20));
    REQUIRE(why);
    CHECK_THAT(*why, Contains("no progress for") && Contains("all-gather phase: 1 of") &&
                         Contains("segments from " + peerName(0) + " still missing"));
    requireNoWrongSuccess(ring);
    abortAllAndRequireRestored(ring);
}

TEST_CASE("ring over memory: a failed send fails the sender, naming its successor and the phase", "[ring_mem]") {
    for (int pool : {1, 2}) {
        Spec s;
        s.n = 3;
        s.count = 30;
        s.segElems = 2;
        s.pool = pool;
        s.inPlace = true;
        s.seed = 3 + static_cast<uint64_t>(pool);
        Ring ring(s, onFrame(1, 2, 0, MemFault::failSend()));
        ring.run();
        INFO(ring.report());
        REQUIRE(ring.out[1].status);
        CHECK(ring.out[1].status->code() == pcclRankConnectionLost);
        CHECK_THAT(ring.message(1), Contains("data connection to " + shortId(2) + " closed: send failed (injected)") &&
                                        Contains("(to " + peerName(2) + "; all-reduce tag 9, ") && Contains(" phase"));
        requireNoWrongSuccess(ring);
        abortAllAndRequireRestored(ring);
    }
}

TEST_CASE("ring over memory: a malformed header closes the connection as the data plane does; the sender's later "
          "frames fail and the receiver's watchdog names what it waits for",
          "[ring_mem]") {
    // Padding byte, by-reference flag on a TCP connection, a length over the limit: the decoder
    // of data_wire.h refuses each.
    for (size_t at : {size_t{22}, size_t{21}, size_t{19}}) {
        Spec s;
        s.n = 3;
        s.count = 30;
        s.segElems = 2;
        s.inPlace = true;
        s.seed = at;
        s.staggeredStarts = false;
        Ring ring(s, onFrame(0, 1, 0, MemFault::setBits(at, 0x10)));
        ring.run();
        INFO(ring.report() << "corrupted header byte " << at);
        const auto closes = ring.net.closes();
        REQUIRE(closes.size() == 1);
        CHECK(closes[0].from == peerId(0));
        CHECK(closes[0].to == peerId(1));
        CHECK(closes[0].reason == "malformed frame header from " + shortId(0));
        // The sender had more frames for peer 1: they fail against the closed connection.
        REQUIRE(ring.out[0].status);
        CHECK(ring.out[0].status->code() == pcclRankConnectionLost);
        CHECK_THAT(ring.message(0), Contains(shortId(1)) && Contains("(to " + peerName(1) + "; all-reduce tag 9"));
        // The receiver is not told (as over TCP): it waits, and its watchdog says for what.
        CHECK(!ring.out[1].status);
        auto why = waitForStall(ring, 1, std::chrono::milliseconds(10));
        REQUIRE(why);
        CHECK_THAT(*why, Contains("reduce-scatter phase") && Contains("from " + peerName(0) + " still missing"));
        requireNoWrongSuccess(ring);
        abortAllAndRequireRestored(ring);
    }
}

TEST_CASE("ring over memory: a header whose offset, length or phase does not fit the operation is a protocol error",
          "[ring_mem]") {
    struct Case {
        MemFault fault;
        std::string error;
    };
    const std::vector<Case> cases = {
        {MemFault::flipBits(15, 0x01), "does not match the segmentation of operation 5"},  // offset += 2^56
        {MemFault::flipBits(9, 0x01), "does not match the segmentation of operation 5"},   // offset += 256
        {MemFault::flipBits(16, 0x01), "does not match the segmentation of operation 5"},  // length +- 1
        {MemFault::setBits(20, 0x04), "unknown phase "},
    };
    for (size_t i = 0; i < cases.size(); ++i) {
        Spec s;
        s.n = 4;
        s.count = 60;
        s.segElems = 3;
        s.pool = 2;
        s.inPlace = true;
        s.seed = 40 + i;
        Ring ring(s, onFrame(2, 3, 1, cases[i].fault));
        ring.run();
        INFO(ring.report() << "case " << i);
        const auto closes = ring.net.closes();
        REQUIRE(!closes.empty());
        CHECK(closes[0].from == peerId(2));
        CHECK_THAT(closes[0].reason, Contains("protocol error from " + shortId(2) + ": ") && Contains(cases[i].error));
        CHECK(!ring.ok(3));
        requireNoWrongSuccess(ring);
        abortAllAndRequireRestored(ring);
    }
}

TEST_CASE("ring over memory: a header naming another operation parks or drops the frame, and the receiver stalls",
          "[ring_mem]") {
    // seq 5 -> 69: a later operation, not registered: the connection waits for it (frames behind
    // it wait too). seq 5 -> 1: an older one: the frame is read and dropped.
    for (uint8_t mask : {uint8_t{0x40}, uint8_t{0x04}}) {
        Spec s;
        s.n = 3;
        s.count = 30;
        s.segElems = 2;
        s.inPlace = true;
        s.staggeredStarts = false;
        Ring ring(s, onFrame(0, 1, 0, MemFault::flipBits(0, mask)));
        ring.run();
        INFO(ring.report());
        CHECK(ring.net.closes().empty());
        CHECK(!ring.out[1].status);
        auto why = waitForStall(ring, 1, std::chrono::milliseconds(10));
        REQUIRE(why);
        CHECK_THAT(*why, Contains("reduce-scatter phase") && Contains(peerName(0)));
        requireNoWrongSuccess(ring);
        abortAllAndRequireRestored(ring);
    }
}

TEST_CASE("ring over memory: a quantized frame with a non-finite range fails the receiver, naming its predecessor",
          "[ring_mem]") {
    for (uint64_t k : {uint64_t{0}, uint64_t{5}}) {
        Spec s;
        s.n = 3;
        s.count = 48;
        s.segElems = 4;
        s.inPlace = true;
        s.quant = {pcclUint8, pcclQuantMinMax};
        s.inputs = Inputs::Wave;
        MemFault f;
        f.kind = MemFault::Kind::Corrupt;
        f.mutate = [](std::vector<uint8_t> &b) {  // the first f64 of the quantization header: +-Inf or NaN
            b[24 + 7] |= 0x7f;
            b[24 + 6] |= 0xf0;
        };
        Ring ring(s, onFrame(0, 1, k, f));
        ring.run();
        INFO(ring.report());
        REQUIRE(ring.out[1].status);
        CHECK(ring.out[1].status->code() == pcclRankConnectionLost);
        CHECK_THAT(ring.message(1), Contains("malformed quantized frame from " + peerName(0) + " (all-reduce tag 9, ") &&
                                        Contains(" phase"));
        requireNoWrongSuccess(ring);
        abortAllAndRequireRestored(ring);
    }
}

TEST_CASE("ring over memory: the checks catch a corrupted payload (the harness can fail)", "[ring_mem]") {
    // TCP's checksums make this case theoretical for the ring; here it proves that a wrong byte
    // anywhere would be seen by requireExact and by the cross-peer comparison.
    Spec s;
    s.n = 3;
    s.count = 30;
    s.segElems = 2;
    s.staggeredStarts = false;  // frame 0 is peer 0's partial of elements 20 and 21 (-2 and 5)
    Ring ring(s, onFrame(0, 1, 0, MemFault::flipBits(24 + 2, 0x40)));
    ring.run();
    for (int r = 0; r < s.n; ++r) REQUIRE(ring.ok(r));
    const auto ref = ring.reference();
    int wrong = 0;
    for (auto &got : ring.recv) wrong += compareWithReference(s.dtype, s.op, got.data(), ref.data(), s.count).empty() ? 0 : 1;
    CHECK(wrong == s.n);  // the corrupted partial reached the owner, whose result every peer copies
}

TEST_CASE("ring over memory: closing a peer mid-operation fails the frame being received and the queued sends",
          "[ring_mem]") {
    for (uint64_t seed = 1; seed <= 30; ++seed) {
        Spec s;
        s.n = 3;
        s.count = 90;
        s.segElems = 3;
        s.pool = 2;
        s.inPlace = true;
        s.seed = seed;
        // A half-written frame keeps peer 1 in the middle of a read when the close comes.
        const uint64_t k = seed % 8;
        Ring ring(s, onFrame(0, 1, k, MemFault::stall(24 + 1)));  // every frame has a payload of 4 bytes or more
        ring.run();
        ring.net.transport(peerId(1)).closePeer(peerId(0), "peer " + shortId(0) + " removed from the run");
        ring.run();
        INFO(ring.report() << "stalled frame " << k);
        REQUIRE(ring.out[1].status);
        CHECK_THAT(ring.message(1), Contains("receiving from " + shortId(0) + " failed: peer " + shortId(0) +
                                             " removed from the run") &&
                                        Contains("from " + peerName(0)));
        REQUIRE(ring.out[0].status);
        CHECK_THAT(ring.message(0), Contains("data connection to " + shortId(1) + " closed: closed by the receiver") &&
                                        Contains("(to " + peerName(1)));
        requireNoWrongSuccess(ring);
        abortAllAndRequireRestored(ring);
    }
}

TEST_CASE("ring over memory: a killed peer: its predecessor's sends fail naming it; its successor reads what it "
          "wrote, then waits for it by name",
          "[ring_mem]") {
    for (uint64_t seed = 1; seed <= 10; ++seed) {
        Spec s;
        s.n = 4;
        s.count = 64;
        s.segElems = 2;
        s.pool = 2;
        s.inPlace = true;
        s.seed = seed;
        s.staggeredStarts = false;
        Ring ring(s);
        ring.run(20 + 5 * seed);
        ring.net.kill(peerId(2), "killed by the test");
        ring.run();
        INFO(ring.report());
        REQUIRE(ring.out[1].status);
        CHECK(ring.out[1].status->code() == pcclRankConnectionLost);
        CHECK_THAT(ring.message(1), Contains(shortId(2)) && Contains("(to " + peerName(2) + "; all-reduce tag 9"));
        CHECK(!ring.out[3].status);
        auto why = waitForStall(ring, 3, std::chrono::milliseconds(10));
        REQUIRE(why);
        CHECK_THAT(*why, Contains("segments from " + peerName(2) + " still missing"));
        requireNoWrongSuccess(ring);
    }
}

// ---------------------------------------------------------------------------------------------
// Abort, quiescence, watchdog

TEST_CASE("ring over memory: an abort at any point restores every in-place input byte and reports quiescence once",
          "[ring_mem]") {
    std::vector<Spec> specs;
    {
        Spec s;  // exact, partials in the user's buffer
        s.n = 3, s.count = 20, s.segElems = 2, s.pool = 2, s.inPlace = true, s.dtype = pcclFloat, s.op = pcclSum;
        specs.push_back(s);
        s.n = 4, s.dtype = pcclFloat16, s.op = pcclAvg;  // partials in f32 staging
        specs.push_back(s);
        s.n = 2, s.dtype = pcclInt32, s.op = pcclAvg, s.count = 9;  // partials in i64 staging
        specs.push_back(s);
        s.n = 3, s.dtype = pcclFloat, s.op = pcclMax, s.count = 25, s.quant = {pcclUint8, pcclQuantZeroPointScale};
        s.inputs = Inputs::Wave;
        specs.push_back(s);
        s.n = 5, s.dtype = pcclBFloat16, s.op = pcclSum, s.count = 12, s.segElems = 1;
        s.quant = {pcclUint16, pcclQuantMinMax};
        specs.push_back(s);
    }
    std::vector<Spec> seeded;
    for (auto &b : specs)
        for (uint64_t seed : {1, 2, 3}) {
            seeded.push_back(b);
            seeded.back().seed = seed;
        }
    for (auto &base : seeded) {
        Ring full(base);
        const size_t total = full.run();
        requireAllOkAndIdentical(full);
        for (size_t k = 0; k <= total + 1; ++k) {
            Spec s = base;  // the same schedule as `full` up to step k
            Ring ring(s);
            ring.run(k);
            // Abort a subset chosen by k (always one peer at least); the others go on.
            Rng pick{k * 977 + 1};
            std::vector<bool> aborted(static_cast<size_t>(s.n));
            aborted[pick.below(static_cast<size_t>(s.n))] = true;
            for (int r = 0; r < s.n; ++r)
                if (pick.below(2)) aborted[static_cast<size_t>(r)] = true;
            for (int r = 0; r < s.n; ++r)
                if (aborted[static_cast<size_t>(r)]) {
                    ring.abort(r);
                    ring.abort(r, "second abort");  // ignored: quiescence is reported once
                }
            ring.run();
            INFO(ring.report() << "aborted after " << k << " of " << total << " steps");
            for (int r = 0; r < s.n; ++r) {
                auto &o = ring.out[static_cast<size_t>(r)];
                if (!aborted[static_cast<size_t>(r)]) continue;
                CHECK(o.quiescentCalls == 1);
                CHECK(o.restoredAtQuiescence);
                CHECK(!o.finishedAfterAbort);
                CHECK(ring.recv[static_cast<size_t>(r)] == ring.input[static_cast<size_t>(r)]);
            }
            requireNoWrongSuccess(ring);
        }
    }
}

TEST_CASE("ring over memory: an abort stuck behind a half-received frame quiesces once forceQuiescence closes its "
          "links",
          "[ring_mem]") {
    Spec s;
    s.n = 3;
    s.count = 30;
    s.segElems = 2;
    s.inPlace = true;
    // Peer 0 stops in the middle of its third frame to peer 1 (header and 3 payload bytes out).
    Ring ring(s, onFrame(0, 1, 2, MemFault::stall(24 + 3)));
    ring.run();
    ring.abort(1);
    ring.net.run();
    INFO(ring.report());
    CHECK(ring.out[1].quiescentCalls == 0);  // a read into its buffer is still in progress
    CHECK(!ring.ops[1]->forceQuiescence(std::chrono::hours(1)));
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    bool forced = false;
    while (!forced && std::chrono::steady_clock::now() < end) {
        forced = ring.ops[1]->forceQuiescence(std::chrono::milliseconds(5));
        if (!forced) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    REQUIRE(forced);
    ring.net.run();
    CHECK(ring.out[1].quiescentCalls == 1);
    CHECK(ring.out[1].restoredAtQuiescence);
    CHECK(ring.recv[1] == ring.input[1]);
    bool closedFrom0 = false;
    for (auto &c : ring.net.closes()) closedFrom0 |= c.from == peerId(0) && c.to == peerId(1);
    CHECK(closedFrom0);
}

TEST_CASE("ring over memory: a peer that stops makes the others' stalled() report what they wait for; resumed, the "
          "ring completes exactly",
          "[ring_mem]") {
    for (uint64_t seed = 1; seed <= 6; ++seed) {
        Spec s;
        s.n = 4;
        s.count = 64;
        s.segElems = 2;
        s.pool = 2;
        s.inPlace = true;
        s.seed = seed;
        s.staggeredStarts = false;
        const int frozen = static_cast<int>(seed % 4);
        Ring ring(s);
        ring.run(10 * seed);
        ring.net.freeze(peerId(frozen));
        ring.run();
        INFO(ring.report() << "froze rank " << frozen);
        for (int r = 0; r < s.n; ++r) {
            if (r == frozen) continue;
            REQUIRE(!ring.out[static_cast<size_t>(r)].status);
            CHECK(!ring.ops[static_cast<size_t>(r)]->stalled(std::chrono::hours(1)));
        }
        // The successor of the stopped peer waits for it by name.
        const int succ = (frozen + 1) % s.n;
        auto why = waitForStall(ring, succ, std::chrono::milliseconds(20));
        REQUIRE(why);
        CHECK_THAT(*why, Contains("no progress for") && Contains("segments from " + peerName(frozen) + " still missing"));
        for (int r = 0; r < s.n; ++r)
            if (r != frozen) CHECK(waitForStall(ring, r, std::chrono::milliseconds(20)));
        ring.net.thaw(peerId(frozen));
        ring.run();
        requireExact(ring);
    }
}

// ---------------------------------------------------------------------------------------------
// The in-memory transport keeps the FrameTransport contract the ring relies on

namespace {
struct Recorder : transport::FrameSink {
    std::vector<uint8_t> mem = std::vector<uint8_t>(4096, 0);
    std::vector<uint64_t> offsets, discarded;
    std::vector<std::string> failed;
    std::string refuse;  // a protocol error for every frame, when set
    void *beginFrame(const transport::SegmentHeader &h, const Uuid &, std::string *error) override {
        if (!refuse.empty()) {
            *error = refuse;
            return nullptr;
        }
        return mem.data() + h.offset;
    }
    void onPayload(const transport::SegmentHeader &h) override { offsets.push_back(h.offset); }
    void onPayloadFailed(const transport::SegmentHeader &, const std::string &why) override { failed.push_back(why); }
    void onDiscarded(const transport::SegmentHeader &h, const Uuid &) override { discarded.push_back(h.offset); }
};

struct Sent {
    std::vector<std::pair<bool, std::string>> done;
    transport::SendDone callback(size_t i) {
        if (done.size() <= i) done.resize(i + 1, {false, "not run"});
        return [this, i](bool ok, const std::string &why) {
            done[i] = {ok, why};
            ++calls;
        };
    }
    int calls = 0;
};

std::pair<bool, std::string> closedByReceiver(const Uuid &to) {
    return {false, "data connection to " + to.shortStr() + " closed: closed by the receiver"};
}

transport::SegmentHeader header(uint64_t seq, uint64_t offset, uint32_t bytes) {
    transport::SegmentHeader h;
    h.seq = seq;
    h.offset = offset;
    h.bytes = bytes;
    return h;
}
} // namespace

TEST_CASE("in-memory transport: one connection keeps order, a pool reorders; each send completes once", "[ring_mem]") {
    const Uuid a = peerId(0), b = peerId(1);
    std::vector<uint8_t> payload(64);
    for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<uint8_t>(i);
    for (int pool : {1, 4}) {
        bool reordered = false;
        for (uint64_t seed = 1; seed <= 20; ++seed) {
            MemNetwork net(seed);
            net.addPeer(a), net.addPeer(b);
            auto sink = std::make_shared<Recorder>();
            net.transport(b).registerSink(1, sink);
            Sent sent;
            net.transport(a).send(b, header(1, 0, 8), payload.data(), sent.callback(99));
            CHECK(sent.calls == 1);  // no pool yet: fails inline
            CHECK(sent.done[99].second == "no data connection to peer " + b.shortStr());
            net.connect(a, b, pool);
            for (uint64_t i = 0; i < 32; ++i)
                net.transport(a).send(b, header(1, i * 8, 8), payload.data() + (i % 8) * 8, sent.callback(i));
            net.run();
            CHECK(sent.calls == 33);
            for (uint64_t i = 0; i < 32; ++i) CHECK(sent.done[i].first);
            REQUIRE(sink->offsets.size() == 32);
            auto sorted = sink->offsets;
            std::sort(sorted.begin(), sorted.end());
            for (uint64_t i = 0; i < 32; ++i) CHECK(sorted[i] == i * 8);
            if (pool == 1) CHECK(std::is_sorted(sink->offsets.begin(), sink->offsets.end()));
            reordered |= !std::is_sorted(sink->offsets.begin(), sink->offsets.end());
            for (uint64_t i = 0; i < 32; ++i) CHECK(sink->mem[i * 8 + 3] == payload[(i % 8) * 8 + 3]);
        }
        CHECK(reordered == (pool > 1));
    }
}

TEST_CASE("in-memory transport: frames of an operation not registered yet wait for it; an older one's are dropped",
          "[ring_mem]") {
    const Uuid a = peerId(0), b = peerId(1);
    MemNetwork net(3);
    net.addPeer(a), net.addPeer(b);
    net.connect(a, b, 1);
    auto old = std::make_shared<Recorder>(), later = std::make_shared<Recorder>();
    net.transport(b).registerSink(4, old);
    net.transport(b).unregisterSink(4);
    std::vector<uint8_t> data(16, 7);
    Sent sent;
    net.transport(a).send(b, header(3, 0, 16), data.data(), sent.callback(0));  // older than 4: dropped
    net.transport(a).send(b, header(6, 16, 16), data.data(), sent.callback(1));  // newer: waits
    net.transport(a).send(b, header(3, 32, 16), data.data(), sent.callback(2));  // behind it on the connection
    net.run();
    CHECK(sent.calls == 3);
    CHECK(later->offsets.empty());
    net.transport(b).registerSink(6, later);
    net.run();
    CHECK(later->offsets == std::vector<uint64_t>{16});
    CHECK(later->mem[16] == 7);
    CHECK(old->offsets.empty());
}

TEST_CASE("in-memory transport: cancel fails only the operation's queued frames; a close fails the frame being read",
          "[ring_mem]") {
    const Uuid a = peerId(0), b = peerId(1);
    MemNetwork net(5, MemNetwork::Order::Fifo);
    net.addPeer(a), net.addPeer(b);
    net.connect(a, b, 1);
    auto s1 = std::make_shared<Recorder>(), s2 = std::make_shared<Recorder>();
    net.transport(b).registerSink(1, s1);
    net.transport(b).registerSink(2, s2);
    std::vector<uint8_t> data(64, 1);
    Sent sent;
    net.setFaultRule([](const MemFrameInfo &f) { return f.index == 1 ? MemFault::stall(24 + 10) : MemFault{}; });
    net.transport(a).send(b, header(1, 0, 32), data.data(), sent.callback(0));
    net.transport(a).send(b, header(2, 0, 32), data.data(), sent.callback(1));  // stalls half written
    net.transport(a).send(b, header(1, 32, 32), data.data(), sent.callback(2));
    net.transport(a).send(b, header(2, 32, 32), data.data(), sent.callback(3));
    net.run();
    CHECK(sent.calls == 1);
    net.transport(a).cancelSends(2);
    net.run();
    CHECK(sent.calls == 2);
    CHECK(sent.done[3] == std::pair<bool, std::string>{false, "cancelled"});
    CHECK(s1->offsets == std::vector<uint64_t>{0});
    CHECK(s2->failed.empty());  // in the middle of frame 1: not failed yet
    net.transport(b).closePeer(a, "gone");
    net.run();
    CHECK(sent.calls == 4);
    CHECK(sent.done[1] == closedByReceiver(b));
    CHECK(sent.done[2] == closedByReceiver(b));
    CHECK(s2->failed == std::vector<std::string>{"receiving from " + a.shortStr() + " failed: gone"});
    // Later sends fail at once: the pool is gone.
    net.transport(a).send(b, header(1, 0, 8), data.data(), sent.callback(4));
    CHECK(sent.done[4].second == "no data connection to peer " + b.shortStr());
}

TEST_CASE("in-memory transport: a sink's protocol error closes the connection and fails the sender's queued frames",
          "[ring_mem]") {
    const Uuid a = peerId(0), b = peerId(1);
    MemNetwork net(8, MemNetwork::Order::Fifo);
    net.addPeer(a), net.addPeer(b);
    net.connect(a, b, 1);
    auto sink = std::make_shared<Recorder>();
    sink->refuse = "no such segment";
    net.transport(b).registerSink(1, sink);
    std::vector<uint8_t> data(8, 1);
    Sent sent;
    net.setFaultRule([](const MemFrameInfo &f) { return f.index == 0 ? MemFault::delay(0) : MemFault::delay(100); });
    net.transport(a).send(b, header(1, 0, 8), data.data(), sent.callback(0));
    net.transport(a).send(b, header(1, 8, 8), data.data(), sent.callback(1));
    net.run();
    CHECK(sent.done[0].first);
    CHECK(sent.done[1] == closedByReceiver(b));
    const auto closes = net.closes();
    REQUIRE(closes.size() == 1);
    CHECK(closes[0].reason == "protocol error from " + a.shortStr() + ": no such segment");
}
