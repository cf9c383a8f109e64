#include "shared_state/chunk_codec.h"

#include <zstd.h>

#include <string>

namespace pccl::shared_state {

size_t compressedBound(size_t bytes) { return ZSTD_compressBound(bytes); }

bool compressIfSmaller(const void *data, size_t bytes, int level, std::vector<uint8_t> *out) {
    if (bytes < 64) return false;
    const size_t limit = bytes - bytes / 8;
    out->resize(ZSTD_compressBound(bytes));
    const size_t n = ZSTD_compress(out->data(), out->size(), data, bytes, level);
    if (ZSTD_isError(n) || n > limit) return false;
    out->resize(n);
    return true;
}

Status decompressExactly(const void *src, size_t srcBytes, void *dst, size_t expected) {
    const unsigned long long size = ZSTD_getFrameContentSize(src, srcBytes);
    if (size != expected)
        return {pcclRankConnectionLost, "compressed chunk announces " + std::to_string(size) + " bytes, expected " +
                                            std::to_string(expected)};
    const size_t n = ZSTD_decompress(dst, expected, src, srcBytes);
    if (ZSTD_isError(n)) return {pcclRankConnectionLost, std::string("corrupt compressed chunk: ") + ZSTD_getErrorName(n)};
    if (n != expected) return {pcclRankConnectionLost, "compressed chunk decompressed to the wrong size"};
    return {};
}

} // namespace pccl::shared_state
