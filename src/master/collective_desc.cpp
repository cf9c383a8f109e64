#include "master/collective_desc.h"

#include "collectives/reduce_kernels.h"
#include "util/collective_kind.h"
#include "util/dtype.h"

namespace pccl::master {

std::string describeCollectiveDesc(const protocol::CollectiveDesc &x) {
    const auto kind = static_cast<CollectiveKind>(x.kind);
    std::string s = collectiveName(kind);
    s += " of ";
    if (x.world) s += std::to_string(x.world) + " x ";
    if (!x.counts.empty()) {
        s += "counts [";
        for (size_t i = 0; i < x.counts.size(); ++i) s += (i ? "," : "") + std::to_string(x.counts[i]);
        s += "]";
    } else {
        s += "count " + std::to_string(x.count);
    }
    s += std::string(" ") + dataTypeName(static_cast<pcclDataType_t>(x.dtype));
    if (collectiveReduces(kind))
        s += std::string(" ") + collectives::redOpName(static_cast<pcclRedOp_t>(x.op)) + " quant " +
             std::to_string(x.quant_algo) + "/" + std::to_string(x.quant_dtype);
    if (kind == CollectiveKind::Broadcast) s += " from rank " + std::to_string(x.root);
    s += " segment " + (x.segment_bytes ? std::to_string(x.segment_bytes) + " bytes" : std::string("auto"));
    return s;
}

pcclResult_t descMismatchResult(const protocol::CollectiveDesc &a, const protocol::CollectiveDesc &b) {
    return a.kind == b.kind && a.world != b.world ? pcclRankConnectionLost : pcclMismatch;
}

} // namespace pccl::master
