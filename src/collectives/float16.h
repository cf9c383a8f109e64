// float16.h - IEEE binary16 (f16) and bfloat16 (bf16) <-> binary32 (f32) conversions.
//
// Header-only, branch-free (selects only) so that loops over these functions auto-vectorise.
// Values travel as their raw 16-bit patterns (uint16_t).
//
// f16/bf16 -> f32 is exact. f32 -> f16/bf16 rounds to nearest, ties to even; values too large
// become +-Inf; subnormal results are rounded correctly; NaNs stay NaN (quiet NaNs keep their
// top payload bits, signalling NaNs are quietened), Inf stays Inf.
#pragma once

#include <bit>
#include <cstdint>

namespace pccl::collectives {

namespace detail {
/// cond ? a : b written as mask arithmetic, so that the compiler never turns it into a branch
/// (a branch around floating-point work would block if-conversion and vectorisation).
inline uint32_t select32(bool cond, uint32_t a, uint32_t b) noexcept {
    const uint32_t mask = 0u - static_cast<uint32_t>(cond);
    return (a & mask) | (b & ~mask);
}
}  // namespace detail

/// Exact widening of an f16 bit pattern to f32.
inline float f16ToF32(uint16_t h) noexcept {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t mag = h & 0x7fffu;  // exponent and mantissa
    // Normal numbers: move exponent/mantissa into place and rebias the exponent (15 -> 127).
    const uint32_t normal = (mag << 13) + ((127u - 15u) << 23);
    // Inf/NaN: maximal exponent, the 10 mantissa bits become the top of the 23 (the f16 quiet
    // bit lands on the f32 quiet bit, so quiet NaNs stay quiet and the payload is kept).
    const uint32_t special = (mag << 13) | 0x7f800000u;
    // Zero and subnormals: mag * 2^-24, exact in f32 (mag < 2^10, scaling by 2^-24 stays normal
    // or is zero).
    const uint32_t sub = std::bit_cast<uint32_t>(static_cast<float>(static_cast<int32_t>(mag)) * 0x1p-24f);
    uint32_t bits = detail::select32(mag >= 0x7c00u, special, normal);
    bits = detail::select32(mag < 0x0400u, sub, bits);
    return std::bit_cast<float>(bits | sign);
}

/// f32 -> f16 bit pattern, round to nearest even.
inline uint16_t f32ToF16(float f) noexcept {
    const uint32_t u = std::bit_cast<uint32_t>(f);
    const uint32_t sign = (u >> 16) & 0x8000u;
    const uint32_t a = u & 0x7fffffffu;  // |f|
    // Normal f16 range [2^-14, 65520): drop 13 mantissa bits with round-to-nearest-even on the
    // bit pattern after rebiasing (127 -> 15). A mantissa carry correctly bumps the exponent;
    // the largest input below 65520 yields 0x7bff at most.
    const uint32_t rebased = a - ((127u - 15u) << 23);
    const uint32_t normal = (rebased + 0x0fffu + ((rebased >> 13) & 1u)) >> 13;
    // Subnormal f16 range (|f| < 2^-14): the result is round(|f| * 2^24) as an integer in
    // [0, 1024] (1024 encodes 2^-14, the smallest normal). |f| * 2^24 < 2^10 is exact; adding
    // 2^23 rounds it to an integer with the current (nearest-even) rounding, read off the
    // mantissa bits.
    const float scaled = std::bit_cast<float>(a) * 0x1p24f;
    const uint32_t sub = std::bit_cast<uint32_t>(scaled + 0x1p23f) - 0x4b000000u;
    // NaN: keep the top 10 payload bits and force the quiet bit (never collapses to Inf).
    const uint32_t nan = 0x7e00u | ((a >> 13) & 0x03ffu);
    uint32_t r = detail::select32(a < 0x38800000u, sub, normal);
    r = detail::select32(a >= 0x477ff000u, 0x7c00u, r);  // >= 65520 (incl. Inf) rounds to Inf
    r = detail::select32(a > 0x7f800000u, nan, r);
    return static_cast<uint16_t>(r | sign);
}

/// Exact widening of a bf16 bit pattern to f32.
inline float bf16ToF32(uint16_t b) noexcept { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

/// f32 -> bf16 bit pattern, round to nearest even.
inline uint16_t f32ToBf16(float f) noexcept {
    const uint32_t u = std::bit_cast<uint32_t>(f);
    // Round to nearest even on the bit pattern; works through subnormals, carries into the
    // exponent and overflows to Inf exactly when it should.
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    // NaN: truncate the payload and force the quiet bit.
    const uint32_t nan = (u >> 16) | 0x0040u;
    const uint32_t r = detail::select32((u & 0x7fffffffu) > 0x7f800000u, nan, rounded);
    return static_cast<uint16_t>(r);
}

}  // namespace pccl::collectives
