// The frames of a shared-state transfer (docs/shared_state.md) as the bytes a peer receives: the
// checks of a request and of a chunk frame against this peer's entries, and the decoding of a
// chunk's payload. Pure functions of their arguments (no locks, no I/O): StateTransfer calls them
// on every frame, and tests/fuzz feeds them arbitrary bytes.
//
// A frame's offset names a chunk: entry << kOffsetBits | chunk index. A request (phase kRequest)
// is a header without payload; a chunk (kChunkRaw or kChunkZstd) carries the chunk's bytes, raw
// or as one zstd frame announcing its content size.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "transport/data_wire.h"
#include "util/status.h"

namespace pccl::shared_state {

struct LocalEntry {
    std::string name;
    void *data = nullptr;
    size_t bytes = 0;
};

inline constexpr uint8_t kChunkRaw = 2, kRequest = 3, kChunkZstd = 4;
inline constexpr int kOffsetBits = 40;  // frame offset = entry << 40 | chunk
inline uint64_t chunkKey(uint32_t entry, uint32_t chunk) { return (uint64_t{entry} << kOffsetBits) | chunk; }

struct ChunkRef {
    uint32_t entry = 0;
    uint64_t index = 0;
};
ChunkRef splitChunkKey(uint64_t key);

// The chunk a request frame asks for, if the frame is header-only and names an existing chunk of
// `entries`; nullopt otherwise (the caller refuses the frame).
std::optional<ChunkRef> parseRequest(const transport::SegmentHeader &h, const std::vector<LocalEntry> &entries);
// Whether a chunk frame of `phase` with `bytes` of payload fits a chunk of `expect` bytes: a raw
// chunk has exactly that size, a compressed one at most `capacity` (the receive buffer).
bool chunkSizeOk(uint8_t phase, uint32_t bytes, size_t expect, size_t capacity);
// The `expect` plain bytes of a chunk frame's payload (wireBytes of it at wire): a raw chunk is its
// own payload; a zstd chunk is decompressed into scratch (room for at least `expect` bytes).
// *plain points at the result. An error when the payload does not decode to exactly `expect` bytes.
Status decodeChunk(uint8_t phase, const uint8_t *wire, size_t wireBytes, size_t expect, uint8_t *scratch,
                   const uint8_t **plain);

} // namespace pccl::shared_state
