// The entries this peer holds in the transfer harness (fuzz_transfer.cpp) and its seed corpus
// (make_corpus.cpp): one small entry, a scalar, an empty one, and one of three chunks whose last
// chunk is small. Chunks of more than kMaxFuzzChunk bytes are only requested, never decoded, to
// keep each execution short.
#pragma once
#include <cstddef>
#include <vector>

#include "protocol/messages.h"
#include "shared_state/transfer_wire.h"

namespace pccl::fuzz {

inline constexpr size_t kMaxFuzzChunk = 64u << 10;

inline std::vector<shared_state::LocalEntry> transferEntries() {
    return {{"weights", nullptr, 4000}, {"step", nullptr, 8}, {"empty", nullptr, 0},
            {"sharded", nullptr, 2 * protocol::kStateChunkBytes + 1500}};
}

} // namespace pccl::fuzz
