// zstd compression of shared-state chunks: the only place that includes zstd. A chunk is sent
// compressed only when that pays (see compressIfSmaller).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "util/status.h"

namespace pccl::shared_state {

// Upper bound of a compressed chunk of `bytes` (what a receiver must accept).
size_t compressedBound(size_t bytes);
// Compresses `bytes` at zstd `level` into *out. Returns false (out unspecified) when the result
// would not be at least 1/8 smaller than the input: sending raw is then cheaper for both ends.
bool compressIfSmaller(const void *data, size_t bytes, int level, std::vector<uint8_t> *out);
// Decompresses exactly `expected` bytes into dst; anything else (corrupt input, another size)
// is an error.
Status decompressExactly(const void *src, size_t srcBytes, void *dst, size_t expected);

} // namespace pccl::shared_state
