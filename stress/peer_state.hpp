// pccl-soak-peer: the shared state a peer keeps identical with its group through
// pcclSynchronizeSharedState, and how a completed step changes it.
//
// Entries: "weights" f32 256K, "moments" bf16 64K, "counters" i64 1K and "local" u8 4K with
// allow_content_inequality (each peer keeps its own bytes there). counters[0] is the lineage:
// a random number a fresh peer starts with; the sync elects one lineage for the group, so
// (lineage, revision) names one committed sync even when the master's revisions start over
// (after every peer of the group left, a new group may begin at any revision).
#pragma once

#include <pccl.h>

#include <cstdint>
#include <vector>

namespace soak {

class PeerState {
public:
    PeerState(uint64_t seed, uint64_t lineage, int slot);
    PeerState(const PeerState &) = delete;
    PeerState &operator=(const PeerState &) = delete;

    // Describes the entries above; points into this object.
    pcclSharedState_t *shared() { return &shared_; }
    uint64_t lineage() const { return static_cast<uint64_t>(counters_[0]); }
    // Hash of every entry without allow_content_inequality: equal on all peers after a sync.
    uint64_t hash() const;
    // The deterministic update after a completed step (step_hash: the step's results).
    void applyStep(uint64_t step_hash);
    // This peer's own bytes in the allow_content_inequality entry, and whether they are intact.
    void writeLocal();
    bool localIntact() const;

private:
    int slot_;
    std::vector<float> weights_;
    std::vector<uint16_t> moments_;  // bf16
    std::vector<int64_t> counters_;
    std::vector<uint8_t> local_;
    pcclTensorInfo_t infos_[4];
    pcclSharedState_t shared_;
};

}  // namespace soak
