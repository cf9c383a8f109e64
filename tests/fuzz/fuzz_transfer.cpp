// Shared-state transfer frames (shared_state/transfer_wire.h) as StateTransfer reads them. Input:
// a 24-byte data frame header (TCP), then the payload; a frame announcing more bytes than follow
// is dropped (the transport would wait for them), extra bytes are ignored. The peer holds
// transferEntries(). Checks: a request is accepted only for an existing chunk, header-only; a
// chunk frame of the right size decodes to exactly the chunk's size or fails with a reason, never
// writing past the buffer; a decoded zstd chunk announces that size, and recompressing it
// round-trips.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include <zstd.h>

#include "fuzz_check.h"
#include "shared_state/chunk_codec.h"
#include "shared_state/hashing.h"
#include "transfer_entries.h"

using namespace pccl;
using namespace pccl::shared_state;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const std::vector<LocalEntry> entries = fuzz::transferEntries();
    if (size < transport::kSegmentHeaderBytes) return 0;
    const auto f = transport::decodeFrameHeader(data, false);
    if (!f) return 0;
    const transport::SegmentHeader &h = f->segment;
    const ChunkRef ref = splitChunkKey(h.offset);
    FUZZ_CHECK((uint64_t{ref.entry} << kOffsetBits | ref.index) == h.offset);

    if (h.phase == kRequest) {
        const auto r = parseRequest(h, entries);
        const bool exists = ref.entry < entries.size() && ref.index < chunkCount(entries[ref.entry].bytes);
        FUZZ_CHECK(r.has_value() == (exists && h.bytes == 0));
        if (r) FUZZ_CHECK(r->entry == ref.entry && r->index == ref.index && chunkKey(r->entry, static_cast<uint32_t>(r->index)) == h.offset);
        return 0;
    }
    if (h.phase != kChunkRaw && h.phase != kChunkZstd) return 0;
    FUZZ_CHECK(!parseRequest(h, entries));
    // A chunk this peer asked for: one of its entries.
    if (ref.entry >= entries.size() || ref.index >= chunkCount(entries[ref.entry].bytes)) return 0;
    const size_t expect = std::min<size_t>(protocol::kStateChunkBytes,
                                           entries[ref.entry].bytes - ref.index * protocol::kStateChunkBytes);
    if (expect > fuzz::kMaxFuzzChunk) return 0;
    const size_t capacity = compressedBound(protocol::kStateChunkBytes);
    if (!chunkSizeOk(h.phase, h.bytes, expect, capacity)) {
        FUZZ_CHECK(h.phase == kChunkRaw ? h.bytes != expect : h.bytes > capacity);
        return 0;
    }
    if (h.bytes > size - transport::kSegmentHeaderBytes) return 0;
    // Exact-size heap copies: ASan sees any access past the payload or the chunk.
    const std::vector<uint8_t> wire(data + transport::kSegmentHeaderBytes, data + transport::kSegmentHeaderBytes + h.bytes);
    std::vector<uint8_t> scratch(expect);
    const uint8_t *plain = nullptr;
    const Status st = decodeChunk(h.phase, wire.data(), wire.size(), expect, scratch.data(), &plain);
    if (!st.ok()) {
        FUZZ_CHECK(h.phase == kChunkZstd && st.code() == pcclRankConnectionLost && !st.message().empty());
        return 0;
    }
    if (h.phase == kChunkRaw) {
        FUZZ_CHECK(plain == wire.data() && wire.size() == expect);
        return 0;
    }
    FUZZ_CHECK(plain == scratch.data());
    FUZZ_CHECK(ZSTD_getFrameContentSize(wire.data(), wire.size()) == expect);
    std::vector<uint8_t> packed;
    if (compressIfSmaller(plain, expect, 1, &packed)) {
        FUZZ_CHECK(packed.size() <= expect - expect / 8);
        std::vector<uint8_t> back(expect);
        FUZZ_CHECK(decompressExactly(packed.data(), packed.size(), back.data(), expect).ok());
        FUZZ_CHECK(std::memcmp(back.data(), plain, expect) == 0);
    }
    return 0;
}
