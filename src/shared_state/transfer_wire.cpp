#include "shared_state/transfer_wire.h"

#include "shared_state/chunk_codec.h"
#include "shared_state/hashing.h"

namespace pccl::shared_state {

ChunkRef splitChunkKey(uint64_t key) {
    return {static_cast<uint32_t>(key >> kOffsetBits), key & ((uint64_t{1} << kOffsetBits) - 1)};
}

std::optional<ChunkRef> parseRequest(const transport::SegmentHeader &h, const std::vector<LocalEntry> &entries) {
    const ChunkRef c = splitChunkKey(h.offset);
    if (h.phase != kRequest || h.bytes != 0 || c.entry >= entries.size() || c.index >= chunkCount(entries[c.entry].bytes))
        return std::nullopt;
    return c;
}

bool chunkSizeOk(uint8_t phase, uint32_t bytes, size_t expect, size_t capacity) {
    if (phase == kChunkRaw) return bytes == expect;
    return phase == kChunkZstd && bytes <= capacity;
}

Status decodeChunk(uint8_t phase, const uint8_t *wire, size_t wireBytes, size_t expect, uint8_t *scratch,
                   const uint8_t **plain) {
    *plain = wire;
    if (phase == kChunkRaw)
        return wireBytes == expect ? Status{} : Status{pcclRankConnectionLost, "raw chunk of the wrong size"};
    if (phase != kChunkZstd) return {pcclRankConnectionLost, "not a chunk frame"};
    *plain = scratch;
    return decompressExactly(wire, wireBytes, scratch, expect);
}

} // namespace pccl::shared_state
