// XXH3-128 built for AVX2: this file alone is compiled with -mavx2 (src/CMakeLists.txt), and
// hashing.cpp calls it only on a CPU that has AVX2. With XXH_INLINE_ALL every xxhash function
// here is static, so no AVX2 code can leak into other translation units by inline merging.
// Why not libxxhash's run-time dispatch: it picks AVX-512, whose 64-byte loads split a cache
// line on every load when the buffer is not 64-byte aligned (a std::vector, a numpy array):
// 256 MiB took 14.4 ms at any misalignment against 9.5 ms with AVX2 at any alignment
// (bench/README.md, shared state). The digest is the same for every vector width.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "shared_state/xxh3_avx2.h"

namespace pccl::shared_state::detail {

void xxh3_128Avx2(const void *data, size_t bytes, uint64_t *low64, uint64_t *high64) {
    const XXH128_hash_t h = XXH3_128bits(data, bytes);
    *low64 = h.low64;
    *high64 = h.high64;
}

} // namespace pccl::shared_state::detail
