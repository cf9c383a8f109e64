// The shared-state transfer of one round, driven directly through its FrameSink interface.
#include <catch2/catch.hpp>

#include <cstring>
#include <optional>
#include <vector>

#include "shared_state/hashing.h"
#include "shared_state/transfer.h"

using namespace pccl;
using pccl::shared_state::StateTransfer;

TEST_CASE("state transfer: an entry that arrives completely before start() is verified once and succeeds",
          "[shared_state][transfer]") {
    transport::DataPlane plane(1);  // never listens: this round only receives, through the calls below
    const std::vector<uint8_t> source(3000, 0x5a);
    std::vector<uint8_t> dest(3000, 0);
    std::vector<uint8_t> empty;
    const Uuid from = Uuid::random();

    protocol::SharedStatePlan plan;
    plan.seq = 11;
    for (uint32_t entry : {0u, 1u}) {
        protocol::EntryTransfer t;
        t.entry = entry;
        t.peer = from;
        t.digest = shared_state::digest(entry == 0 ? source.data() : empty.data(), entry == 0 ? source.size() : 0);
        plan.receive.push_back(t);
    }
    shared_state::TransferOptions options;
    options.segmentBytes = 1024;  // three segments
    std::optional<Status> finished;
    auto transfer = std::make_shared<StateTransfer>(
        plane, std::vector<shared_state::LocalEntry>{{"weights", dest.data(), dest.size()}, {"empty", empty.data(), 0}},
        plan, options, [&](Status st) { finished = st; });

    for (size_t off = 0; off < source.size(); off += options.segmentBytes) {
        transport::SegmentHeader h;
        h.seq = plan.seq;
        h.phase = StateTransfer::kPhase;
        h.offset = off;  // entry 0
        h.bytes = static_cast<uint32_t>(std::min<size_t>(options.segmentBytes, source.size() - off));
        std::string error;
        void *where = transfer->beginFrame(h, from, &error);
        REQUIRE(where != nullptr);
        std::memcpy(where, source.data() + off, h.bytes);
        transfer->onPayload(h);
    }
    CHECK_FALSE(finished.has_value());  // not before start()
    transfer->start();
    REQUIRE(finished.has_value());
    CHECK(finished->ok());
    CHECK(dest == source);
    CHECK(transfer->rxBytes() == source.size());
}
