// How the master names a collective's description in a mismatch message, and how it judges two
// descriptions that differ (membership.cpp, onCollectiveInit).
#pragma once
#include <pccl.h>

#include <string>

#include "protocol/messages.h"

namespace pccl::master {

// "all-gather of 3 x count 1024 float32 segment auto", "all-reduce of count 8 float32 sum quant 0/0
// segment auto", "broadcast of count 16 uint8 from rank 2 segment auto", ...
std::string describeCollectiveDesc(const protocol::CollectiveDesc &d);

// The result for peers whose descriptions of one tag differ: pcclRankConnectionLost when they laid
// out their buffers for different group sizes (a membership change raced the start: retrying on
// the new membership is the cure), pcclMismatch otherwise (the callers disagree).
pcclResult_t descMismatchResult(const protocol::CollectiveDesc &a, const protocol::CollectiveDesc &b);

} // namespace pccl::master
