// Which collective an operation is: one vocabulary for the C API, the peer's session, the control
// protocol (CollectiveDesc.kind, a byte on the wire: values fixed, new ones appended) and the
// ring engine. docs/collectives.md describes each one's buffers and layout.
#pragma once
#include <cstdint>
#include <string>

namespace pccl {

enum class CollectiveKind : uint8_t {
    AllReduce = 0,
    AllGather = 1,
    ReduceScatter = 2,
    Broadcast = 3,
    Barrier = 4,
};

inline constexpr uint8_t kCollectiveKinds = 5;

// "all-reduce", "all-gather", ...; "unknown collective" for a value out of range.
inline const char *collectiveName(CollectiveKind k) {
    switch (k) {
        case CollectiveKind::AllReduce: return "all-reduce";
        case CollectiveKind::AllGather: return "all-gather";
        case CollectiveKind::ReduceScatter: return "reduce-scatter";
        case CollectiveKind::Broadcast: return "broadcast";
        case CollectiveKind::Barrier: return "barrier";
    }
    return "unknown collective";
}

// How messages name one operation: "broadcast tag 3".
inline std::string collectiveTag(CollectiveKind k, uint64_t tag) {
    return std::string(collectiveName(k)) + " tag " + std::to_string(tag);
}

// The label value of the master's metrics and status JSON: "all_reduce", "all_gather",
// "reduce_scatter", "broadcast", "barrier" (docs/observability.md).
inline const char *collectiveMetricName(CollectiveKind k) {
    switch (k) {
        case CollectiveKind::AllReduce: return "all_reduce";
        case CollectiveKind::AllGather: return "all_gather";
        case CollectiveKind::ReduceScatter: return "reduce_scatter";
        case CollectiveKind::Broadcast: return "broadcast";
        case CollectiveKind::Barrier: return "barrier";
    }
    return "unknown";
}

// Whether the kind reduces (takes an op and quantization options).
inline bool collectiveReduces(CollectiveKind k) {
    return k == CollectiveKind::AllReduce || k == CollectiveKind::ReduceScatter;
}

} // namespace pccl
