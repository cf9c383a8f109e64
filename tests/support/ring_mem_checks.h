// The checks of the ring tests over the in-memory transport (support/ring_mem_harness.h):
// results against the reference, no wrong success under faults, restored inputs after aborts,
// fault rules on one frame, the stall watchdog. Each test file uses a subset.
#pragma once
#include "support/ring_mem_harness.h"

namespace {

// Every peer reported success exactly once, and all hold the same bytes.
[[maybe_unused]] void requireAllOkAndIdentical(Ring &ring) {
    INFO(ring.report());
    for (int r = 0; r < ring.spec.n; ++r) {
        REQUIRE(ring.out[static_cast<size_t>(r)].finishCalls == 1);
        REQUIRE(ring.ok(r));
        REQUIRE(ring.recv[static_cast<size_t>(r)] == ring.recv[0]);
        if (!ring.spec.inPlace) REQUIRE(ring.send[static_cast<size_t>(r)] == ring.input[static_cast<size_t>(r)]);
    }
}

[[maybe_unused]] void requireExact(Ring &ring) {
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
[[maybe_unused]] void requireNoWrongSuccess(Ring &ring) {
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
[[maybe_unused]] void abortAllAndRequireRestored(Ring &ring) {
    for (int r = 0; r < ring.spec.n; ++r) ring.abort(r);
    ring.net.run();
    INFO(ring.report());
    for (int r = 0; r < ring.spec.n; ++r) {
        auto &o = ring.out[static_cast<size_t>(r)];
        CHECK(o.quiescentCalls == 1);
        CHECK(o.restoredAtQuiescence);
        CHECK(!o.finishedAfterAbort);
        CHECK(ring.inputRestored(r));
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
[[maybe_unused]] std::optional<std::string> waitForStall(Ring &ring, int r, std::chrono::milliseconds limit) {
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
