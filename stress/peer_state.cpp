// pccl-soak-peer: the shared state (see peer_state.hpp).
#include "peer_state.hpp"

#include "reduce_check.hpp"

namespace soak {
namespace {

// A float in [-0.5, 0.5) from (key, i).
float unit(uint64_t key, uint64_t i) {
    return static_cast<float>(splitmix64Hash(key + i) >> 40) * (1.0f / 16777216.0f) - 0.5f;
}

pcclTensorInfo_t entry(const char *name, void *data, size_t count, pcclDataType_t dtype, bool allow_inequality) {
    pcclTensorInfo_t t{};
    t.name = name;
    t.data = data;
    t.count = count;
    t.datatype = dtype;
    t.device_type = pcclDeviceCpu;
    t.allow_content_inequality = allow_inequality;
    return t;
}

}  // namespace

PeerState::PeerState(uint64_t seed, uint64_t lineage, int slot)
    : slot_(slot), weights_(256 << 10), moments_(64 << 10), counters_(1024, 0), local_(4096) {
    const uint64_t kw = splitmix64Hash(seed ^ 0x57), km = splitmix64Hash(seed ^ 0x4d);
    for (size_t i = 0; i < weights_.size(); ++i) weights_[i] = unit(kw, i);
    for (size_t i = 0; i < moments_.size(); ++i) moments_[i] = f32ToBf16(unit(km, i));
    counters_[0] = static_cast<int64_t>(lineage);
    writeLocal();
    infos_[0] = entry("weights", weights_.data(), weights_.size(), pcclFloat, false);
    infos_[1] = entry("moments", moments_.data(), moments_.size(), pcclBFloat16, false);
    infos_[2] = entry("counters", counters_.data(), counters_.size(), pcclInt64, false);
    infos_[3] = entry("local", local_.data(), local_.size(), pcclUint8, true);
    shared_.revision = 0;
    shared_.count = 4;
    shared_.infos = infos_;
}

uint64_t PeerState::hash() const {
    uint64_t h = fnv1a(weights_.data(), weights_.size() * sizeof(float));
    h = fnv1a(moments_.data(), moments_.size() * sizeof(uint16_t), h);
    return fnv1a(counters_.data(), counters_.size() * sizeof(int64_t), h);
}

void PeerState::applyStep(uint64_t step_hash) {
    const uint64_t kw = splitmix64Hash(step_hash ^ 1), km = splitmix64Hash(step_hash ^ 2);
    for (size_t i = 0; i < weights_.size(); ++i) weights_[i] = 0.5f * weights_[i] + unit(kw, i);
    for (size_t i = 0; i < moments_.size(); ++i) moments_[i] = f32ToBf16(unit(km, i));
    counters_[1] += 1;  // steps applied by the lineage
    for (size_t i = 2; i < counters_.size(); ++i)
        counters_[i] = static_cast<int64_t>(static_cast<uint64_t>(counters_[i]) * 31 + (step_hash >> (i % 64)));
}

void PeerState::writeLocal() {
    for (size_t i = 0; i < local_.size(); ++i) local_[i] = static_cast<uint8_t>(slot_ * 7 + i);
}

bool PeerState::localIntact() const {
    for (size_t i = 0; i < local_.size(); ++i)
        if (local_[i] != static_cast<uint8_t>(slot_ * 7 + i)) return false;
    return true;
}

}  // namespace soak
