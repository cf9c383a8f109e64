// The harness of the ring tests over the in-memory transport (test_ring_mem.cpp,
// test_ring_sched_mem.cpp, test_ring_collectives_mem.cpp): N RingAllReduce engines of one
// collective kind over one MemNetwork in one thread, their inputs and the all-reduce reference
// result. The checks of results, aborts and restores are in ring_mem_checks.h.
#pragma once
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>
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
    CollectiveKind kind = CollectiveKind::AllReduce;
    int n = 3;
    size_t count = 37;  // elements (all but all-gather and reduce-scatter, which use blocks)
    std::vector<size_t> blocks;  // all-gather, reduce-scatter: elements per ring rank, n of them
    uint32_t root = 0;           // broadcast
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
    bool hasBlocks() const { return kind == CollectiveKind::AllGather || kind == CollectiveKind::ReduceScatter; }
    // Elements of the whole buffer (all-gather's output, reduce-scatter's input), and where rank r's block starts.
    size_t total() const { return hasBlocks() ? std::accumulate(blocks.begin(), blocks.end(), size_t{0}) : count; }
    size_t offset(int r) const { return std::accumulate(blocks.begin(), blocks.begin() + r, size_t{0}); }
    std::string str() const {
        std::ostringstream os;
        if (kind != CollectiveKind::AllReduce) os << collectiveName(kind) << " root=" << root << " ";
        if (hasBlocks()) {
            os << "blocks=";
            for (size_t b : blocks) os << b << ",";
            os << " ";
        }
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

// N ring engines of one kind over one MemNetwork, their buffers and what each one reported.
// input[r] is rank r's data (all-gather: its block; otherwise the whole buffer) and send[r] a
// copy of it; recv[r] the output (all-gather: every block; reduce-scatter: its block; in place:
// the whole buffer, all-gather's holding its block, the rest's holding the input). In place, the
// engine works on recv[r] alone. Everything runs on the test thread, except under
// MemNetwork::runConcurrently.
class Ring {
public:
    explicit Ring(const Spec &s, MemFaultRule rule = nullptr) : spec(s), net(s.seed, s.order) {
        REQUIRE((!s.hasBlocks() || s.blocks.size() == static_cast<size_t>(s.n)));
        const size_t es = dtypeSize(s.dtype);
        Rng rng{s.seed * 7919 + 17};
        out.resize(static_cast<size_t>(s.n));
        for (int r = 0; r < s.n; ++r) {
            const size_t elems = s.kind == CollectiveKind::AllGather ? s.blocks[static_cast<size_t>(r)] : s.total();
            std::vector<uint8_t> in(elems * es);
            for (size_t i = 0; i < elems; ++i) {
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
            recv.push_back(initialRecv(r, in));
            send.push_back(in);
        }
        for (int r = 0; r < s.n; ++r) net.addPeer(peerId(r));
        if (rule) net.setFaultRule(std::move(rule));
        for (int r = 0; r < s.n; ++r) {
            const int prev = (r + s.n - 1) % s.n, next = (r + 1) % s.n;
            collectives::RingAllReduceParams p;
            p.seq = kSeq;
            p.kind = s.kind;
            p.root = s.root;
            if (s.hasBlocks()) p.blocks = s.blocks;
            bindBuffers(r, p);
            p.count = s.total();
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
            o.restoredAtQuiescence = inputRestored(r);
        });
    }

    // Whether an aborted rank's in-place buffer holds its input again (all-gather: its block).
    bool inputRestored(int r) const {
        const auto i = static_cast<size_t>(r);
        if (!spec.inPlace) return true;
        if (spec.kind != CollectiveKind::AllGather) return recv[i] == input[i];
        return input[i].empty() ||
               std::memcmp(recv[i].data() + spec.offset(r) * dtypeSize(spec.dtype), input[i].data(), input[i].size()) == 0;
    }

    // Rank r's result: recv[r], or (reduce-scatter in place) its block of it.
    std::vector<uint8_t> result(int r) const {
        const auto &w = recv[static_cast<size_t>(r)];
        if (spec.kind != CollectiveKind::ReduceScatter || !spec.inPlace) return w;
        const size_t es = dtypeSize(spec.dtype);
        const auto *b = w.data() + spec.offset(r) * es;
        return {b, b + spec.blocks[static_cast<size_t>(r)] * es};
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

private:
    std::vector<uint8_t> initialRecv(int r, const std::vector<uint8_t> &in) const {
        const size_t es = dtypeSize(spec.dtype);
        std::vector<uint8_t> w(spec.total() * es, 0xee);
        switch (spec.kind) {
            case CollectiveKind::AllGather:
                if (spec.inPlace && !in.empty()) std::memcpy(w.data() + spec.offset(r) * es, in.data(), in.size());
                return w;
            case CollectiveKind::ReduceScatter:
                return spec.inPlace ? in : std::vector<uint8_t>(spec.blocks[static_cast<size_t>(r)] * es, 0xee);
            case CollectiveKind::Broadcast:
                return spec.inPlace || static_cast<uint32_t>(r) == spec.root ? in : w;
            default: return spec.inPlace ? in : w;
        }
    }

    void bindBuffers(int r, collectives::RingAllReduceParams &p) {
        uint8_t *rv = recv[static_cast<size_t>(r)].data(), *sd = send[static_cast<size_t>(r)].data();
        const auto block = [&] { return rv + spec.offset(r) * dtypeSize(spec.dtype); };  // in place only
        p.recv = rv;
        switch (spec.kind) {
            case CollectiveKind::AllGather: p.send = spec.inPlace ? block() : sd; break;
            case CollectiveKind::ReduceScatter:
                p.send = spec.inPlace ? rv : sd;
                p.recv = spec.inPlace ? block() : rv;
                break;
            case CollectiveKind::Broadcast:
                p.send = spec.inPlace ? rv : (static_cast<uint32_t>(r) == spec.root ? sd : nullptr);
                break;
            default: p.send = spec.inPlace ? rv : sd;
        }
    }
};

} // namespace
