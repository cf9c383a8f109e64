// The harness of the ring tests over the in-memory transport (test_ring_mem.cpp,
// test_ring_sched_mem.cpp): N RingAllReduce engines over one MemNetwork in one thread, their
// inputs, the reference result, and the checks of results, aborts and restores.
#pragma once
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "collectives/allreduce_ring.h"
#include "collectives/quantize.h"
#include "collectives/reduce_kernels.h"
#include "support/dtypes.h"
#include "support/mem_transport.h"
#include "util/splitmix.h"

using namespace pccl;
using namespace pccl_test;
using collectives::RingAllReduce;
using Catch::Contains;

namespace {

// The tests' own choices (the network has its own generator).
using Rng = util::SplitMix64;

enum class Inputs { Small, Random, Wave };

struct Spec {
    int n = 3;
    size_t count = 37;
    pcclDataType_t dtype = pcclFloat;
    pcclRedOp_t op = pcclSum;
    size_t segElems = 0;  // elements of the accumulation type per segment; 0: the engine's default
    int pool = 1;
    // Frames of at least this many bytes (RingAllReduceParams::minFrameBytes): 1 cuts every segment
    // into one frame per connection (on the unit grid), so pools carry segments in pieces.
    size_t minFrameBytes = 1;
    bool inPlace = false;
    pcclQuantizationOptions_t quant{pcclUint8, pcclQuantNone};
    uint64_t seed = 1;
    MemNetwork::Order order = MemNetwork::Order::Random;
    Inputs inputs = Inputs::Small;
    bool staggeredStarts = true;  // peers start at steps chosen by the seed, not all at once

    bool quantized() const { return quant.algorithm != pcclQuantNone; }
    std::string str() const {
        std::ostringstream os;
        os << "n=" << n << " count=" << count << " " << dtypeName(dtype) << " " << opName(op) << " segElems=" << segElems
           << " pool=" << pool << " minFrame=" << minFrameBytes << (inPlace ? " in-place" : "") << " seed=" << seed
           << (order == MemNetwork::Order::Fifo ? " fifo" : "");
        if (quantized())
            os << " quant=" << (quant.algorithm == pcclQuantMinMax ? "minmax" : "zps") << "/"
               << dtypeName(quant.quantized_datatype);
        return os.str();
    }
};

constexpr uint64_t kSeq = 5, kTag = 9;

Uuid peerId(int r) {
    Uuid u;
    u.bytes.fill(static_cast<uint8_t>(0x11 * (r + 1)));
    return u;
}
std::string shortId(int r) { return peerId(r).shortStr(); }
std::string peerName(int r) { return "peer " + shortId(r) + " (rank " + std::to_string(r) + ")"; }

// N ring all-reduce engines over one MemNetwork, their buffers and what each one reported.
// Everything runs on the test thread, except under MemNetwork::runConcurrently.
class Ring {
public:
    explicit Ring(const Spec &s, MemFaultRule rule = nullptr) : spec(s), net(s.seed, s.order) {
        const size_t bytes = s.count * dtypeSize(s.dtype);
        Rng rng{s.seed * 7919 + 17};
        out.resize(static_cast<size_t>(s.n));
        for (int r = 0; r < s.n; ++r) {
            std::vector<uint8_t> in(bytes);
            for (size_t i = 0; i < s.count; ++i) {
                switch (s.inputs) {
                    case Inputs::Small: storeInt(s.dtype, in.data(), i, smallInput(s.dtype, s.op, r, i)); break;
                    case Inputs::Wave:
                        storeFloat(s.dtype, in.data(), i, std::sin(0.37 * static_cast<double>(i) * (r + 1) + r));
                        break;
                    case Inputs::Random:
                        if (isFloat(s.dtype)) {
                            storeFloat(s.dtype, in.data(), i, 2 * rng.unit() - 1);
                        } else {
                            const size_t sz = dtypeSize(s.dtype);
                            for (size_t b = 0; b < sz; ++b) in[i * sz + b] = static_cast<uint8_t>(rng.next());
                        }
                        break;
                }
            }
            input.push_back(in);
            recv.emplace_back(bytes, 0xee);
            if (s.inPlace) recv.back() = in;
            send.push_back(in);
        }
        for (int r = 0; r < s.n; ++r) net.addPeer(peerId(r));
        if (rule) net.setFaultRule(std::move(rule));
        for (int r = 0; r < s.n; ++r) {
            const int prev = (r + s.n - 1) % s.n, next = (r + 1) % s.n;
            collectives::RingAllReduceParams p;
            p.seq = kSeq;
            p.send = s.inPlace ? recv[r].data() : send[r].data();
            p.recv = recv[r].data();
            p.count = s.count;
            p.dtype = s.dtype;
            p.op = s.op;
            p.rank = static_cast<uint32_t>(r);
            p.worldSize = static_cast<uint32_t>(s.n);
            p.prev = peerId(prev);
            p.next = peerId(next);
            p.prevName = peerName(prev);
            p.nextName = peerName(next);
            p.tag = kTag;
            p.segmentBytes = s.segElems * dataTypeSize(collectives::accumType(s.dtype, s.op));
            p.quant = s.quant;
            p.minFrameBytes = s.minFrameBytes;
            auto op = std::make_shared<RingAllReduce>(net.transport(peerId(r)), p, [this, r](Status st) {
                std::lock_guard lock(mu);
                auto &o = out[static_cast<size_t>(r)];
                ++o.finishCalls;
                if (o.aborted) o.finishedAfterAbort = true;
                o.status = std::move(st);
            });
            ops.push_back(op);
            if (s.n > 1) {
                net.transport(peerId(r)).registerSink(kSeq, op);
                net.connect(peerId(r), peerId(next), s.pool);
            }
        }
    }

    void start(int r) {
        if (started.empty()) started.assign(static_cast<size_t>(spec.n), false);
        if (started[static_cast<size_t>(r)]) return;
        started[static_cast<size_t>(r)] = true;
        ops[static_cast<size_t>(r)]->start();
    }

    // Starts the peers (at steps the seed picks, so frames often reach a peer before it started)
    // and runs the network for at most `steps` events or until nothing is left to do.
    size_t run(size_t steps = SIZE_MAX) {
        if (started.empty()) started.assign(static_cast<size_t>(spec.n), false);
        if (startAt.empty()) {
            Rng rng{spec.seed ^ 0x5eedull};
            for (int r = 0; r < spec.n; ++r)
                startAt.push_back(spec.staggeredStarts ? rng.below(6 * static_cast<size_t>(spec.n)) : 0);
        }
        size_t ran = 0;
        while (ran < steps) {
            for (int r = 0; r < spec.n; ++r)
                if (startAt[static_cast<size_t>(r)] <= stepsRun) start(r);
            if (net.step()) {
                ++ran, ++stepsRun;
                continue;
            }
            // Idle: the next peer to start, if any.
            int next = -1;
            for (int r = 0; r < spec.n; ++r) {
                const size_t i = static_cast<size_t>(r);
                if (!started[i] && (next < 0 || startAt[i] < startAt[static_cast<size_t>(next)])) next = r;
            }
            if (next < 0) break;
            start(next);
        }
        return ran;
    }

    // Aborts peer r; the quiescence callback checks the in-place input is back at that moment.
    void abort(int r, const std::string &reason = "test abort") {
        {
            std::lock_guard lock(mu);
            out[static_cast<size_t>(r)].aborted = true;
        }
        ops[static_cast<size_t>(r)]->abort(reason, [this, r] {
            std::lock_guard lock(mu);
            auto &o = out[static_cast<size_t>(r)];
            ++o.quiescentCalls;
            o.restoredAtQuiescence = !spec.inPlace || recv[static_cast<size_t>(r)] == input[static_cast<size_t>(r)];
        });
    }

    std::vector<uint8_t> reference() const {
        std::vector<const void *> ins;
        for (auto &i : input) ins.push_back(i.data());
        std::vector<uint8_t> ref(spec.count * dtypeSize(spec.dtype));
        referenceReduce(spec.dtype, spec.op, ins, spec.count, ref.data());
        return ref;
    }

    bool ok(int r) const {
        auto &o = out[static_cast<size_t>(r)];
        return o.status && o.status->ok();
    }
    std::string message(int r) const {
        auto &o = out[static_cast<size_t>(r)];
        return o.status ? o.status->message() : "(no report)";
    }
    std::string report() const {
        std::ostringstream os;
        os << spec.str() << "\n";
        for (int r = 0; r < spec.n; ++r) {
            auto &o = out[static_cast<size_t>(r)];
            os << "  rank " << r << ": " << (o.status ? (o.status->ok() ? "ok" : o.status->message()) : "no report")
               << " (" << o.finishCalls << " reports, " << o.quiescentCalls << " quiescent)\n";
        }
        return os.str() + net.trace();
    }

    struct Outcome {
        int finishCalls = 0;
        std::optional<Status> status;
        bool aborted = false, finishedAfterAbort = false;
        int quiescentCalls = 0;
        bool restoredAtQuiescence = false;
    };

    Spec spec;
    MemNetwork net;
    std::vector<std::vector<uint8_t>> input, send, recv;
    std::vector<std::shared_ptr<RingAllReduce>> ops;
    std::vector<Outcome> out;
    std::vector<bool> started;
    std::vector<size_t> startAt;
    size_t stepsRun = 0;
    std::mutex mu;
};

// Every peer reported success exactly once, and all hold the same bytes.
void requireAllOkAndIdentical(Ring &ring) {
    INFO(ring.report());
    for (int r = 0; r < ring.spec.n; ++r) {
        REQUIRE(ring.out[static_cast<size_t>(r)].finishCalls == 1);
        REQUIRE(ring.ok(r));
        REQUIRE(ring.recv[static_cast<size_t>(r)] == ring.recv[0]);
        if (!ring.spec.inPlace) REQUIRE(ring.send[static_cast<size_t>(r)] == ring.input[static_cast<size_t>(r)]);
    }
}

void requireExact(Ring &ring) {
    requireAllOkAndIdentical(ring);
    INFO(ring.spec.str());
    if (ring.spec.count == 0) return;  // nothing to compare (and no buffer to pass)
    const auto ref = ring.reference();
    for (int r = 0; r < ring.spec.n; ++r)
        REQUIRE(compareWithReference(ring.spec.dtype, ring.spec.op, ring.recv[static_cast<size_t>(r)].data(), ref.data(),
                                     ring.spec.count) == "");
}

// A peer that reported success holds the right result (faults may stop peers, never make one
// succeed with wrong data): the reference reduction, or, quantized, the bytes of the same ring
// without faults (results do not depend on the schedule: see the reordering test).
void requireNoWrongSuccess(Ring &ring) {
    std::vector<uint8_t> expected;
    if (ring.spec.quantized()) {
        Ring clean(ring.spec);
        clean.run();
        requireAllOkAndIdentical(clean);
        expected = clean.recv[0];
    } else {
        expected = ring.reference();
    }
    for (int r = 0; r < ring.spec.n; ++r) {
        INFO(ring.report() << "rank " << r);
        CHECK(ring.out[static_cast<size_t>(r)].finishCalls <= 1);
        // An aborted peer's buffer holds its restored input, whatever it reported before.
        if (!ring.ok(r) || ring.out[static_cast<size_t>(r)].aborted || ring.spec.count == 0) continue;
        if (ring.spec.quantized()) CHECK(ring.recv[static_cast<size_t>(r)] == expected);
        else
            CHECK(compareWithReference(ring.spec.dtype, ring.spec.op, ring.recv[static_cast<size_t>(r)].data(),
                                       expected.data(), ring.spec.count) == "");
    }
}

// Aborts every peer, drains the network, and checks each quiesced once with its input restored.
void abortAllAndRequireRestored(Ring &ring) {
    for (int r = 0; r < ring.spec.n; ++r) ring.abort(r);
    ring.net.run();
    INFO(ring.report());
    for (int r = 0; r < ring.spec.n; ++r) {
        auto &o = ring.out[static_cast<size_t>(r)];
        CHECK(o.quiescentCalls == 1);
        CHECK(o.restoredAtQuiescence);
        CHECK(!o.finishedAfterAbort);
        if (ring.spec.inPlace) CHECK(ring.recv[static_cast<size_t>(r)] == ring.input[static_cast<size_t>(r)]);
    }
}

// Frames the fault-free ring sends from `from` to `to` (the same for every schedule).
[[maybe_unused]] uint64_t framesBetween(const Spec &s, int from, int to) {
    Ring ring(s);
    ring.run();
    requireExact(ring);
    return ring.net.framesQueued(peerId(from), peerId(to));
}

// A fault rule hitting the k-th frame from `from` to `to`.
[[maybe_unused]] MemFaultRule onFrame(int from, int to, uint64_t k, MemFault fault) {
    return [from, to, k, fault](const MemFrameInfo &f) {
        if (f.from == peerId(from) && f.to == peerId(to) && f.index == k) return fault;
        return MemFault{};
    };
}

// Waits (with a deadline) until peer r's watchdog reports, with `limit`; returns its report.
std::optional<std::string> waitForStall(Ring &ring, int r, std::chrono::milliseconds limit) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < end) {
        if (auto why = ring.ops[static_cast<size_t>(r)]->stalled(limit)) return why;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return std::nullopt;
}

[[maybe_unused]] bool quantizable(pcclDataType_t t, pcclRedOp_t op) {
    return collectives::checkQuantization(t, op, {pcclUint8, pcclQuantMinMax}).ok();
}

} // namespace
