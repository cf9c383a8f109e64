// XXH3-128 compiled for AVX2 (xxh3_avx2.cpp). Call only where the CPU has AVX2.
#pragma once
#include <cstddef>
#include <cstdint>

namespace pccl::shared_state::detail {

void xxh3_128Avx2(const void *data, size_t bytes, uint64_t *low64, uint64_t *high64);

} // namespace pccl::shared_state::detail
