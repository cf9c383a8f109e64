// Content digests of shared-state entries (docs/shared_state.md): XXH3-128 per chunk of
// protocol::kStateChunkBytes, and per entry the XXH3-128 of its chunk digests. The only place
// that includes xxhash. Any alignment, any size.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "protocol/messages.h"

namespace pccl::shared_state {

struct EntryHash {
    protocol::Digest digest{};
    std::vector<protocol::Digest> chunks;
};

// XXH3-128 of `bytes` bytes.
protocol::Digest digest(const void *data, size_t bytes);
// The chunk digests and the entry digest of one entry.
EntryHash hashEntry(const void *data, size_t bytes);
// hashEntry for every (data, bytes), the chunks of all entries spread over up to `threads`
// threads (0: the hardware's, at most 8). Blocks until done.
std::vector<EntryHash> hashEntries(const std::vector<std::pair<const void *, size_t>> &entries, unsigned threads = 0);
// The entry digest of a list of chunk digests.
protocol::Digest combineChunks(const std::vector<protocol::Digest> &chunks);
size_t chunkCount(size_t bytes);
std::string digestHex(const protocol::Digest &d);

} // namespace pccl::shared_state
