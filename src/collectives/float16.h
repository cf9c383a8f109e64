// float16.h - IEEE binary16 (f16) and bfloat16 (bf16) <-> binary32 (f32) conversions.
//
// Header-only, branch-free (selects only) so that loops over these functions auto-vectorise.
// Values travel as their raw 16-bit patterns (uint16_t).
//
// f16/bf16 -> f32 is exact. f32 -> f16/bf16 rounds to nearest, ties to even; values too large
// become +-Inf; subnormal results are rounded correctly; NaNs stay NaN (quiet NaNs keep their
// top payload bits, signalling NaNs are quietened), Inf stays Inf.
//
// Assumes the default floating-point environment (round to nearest). No f32 subnormal is ever
// produced internally, so flush-to-zero / denormals-are-zero modes do not change the results of
// the f32 -> f16/bf16 conversions (f32 subnormal inputs round to zero in f16 anyway).
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
    const uint32_t a = u & 0x7fffffffu;  // |f|
    // Clamp |f| to 2^16 (rounds to Inf below; Inf too). A NaN becomes 2^16 here and is
    // replaced at the end. (Integer compares: the bit patterns of non-negative floats are
    // ordered like their values, NaNs above Inf.)
    const uint32_t ac = detail::select32(a < 0x47800000u, a, 0x47800000u);
    // e = 2^E, the binade of |f|, but at least 2^-14 (the f16 subnormal range shares the
    // quantum of the smallest normal binade).
    const uint32_t ef = ac & 0x7f800000u;
    const uint32_t e = detail::select32(ef > 0x38800000u, ef, 0x38800000u);
    // Adding M = 2^(E+13) rounds |f| to a multiple of 2^(E-10) (11 significant bits) with the
    // FPU's round-to-nearest-even; the low mantissa bits of the sum are then the rounded f16
    // significand m in [0, 2048] (1024..2047 for normals, 2048 when rounding carries into the
    // next binade, 0..1024 for subnormals).
    const uint32_t mBits = e + (13u << 23);
    const uint32_t m = std::bit_cast<uint32_t>(std::bit_cast<float>(ac) + std::bit_cast<float>(mBits)) - mBits;
    // f16 pattern = ((E + 14) << 10) + m: the implicit leading 1 of m bumps the exponent field
    // to E + 15; a carry (m = 2048) moves to the next binade; 2^16 gives 0x7c00 (Inf).
    // The pattern is assembled in the upper 16 bits and shifted down once at the end, which
    // keeps the vectorised code in 32-bit lanes with a single narrowing.
    const uint32_t finite = ((e - 0x38800000u) << 3) + (m << 16);
    // NaN: keep the top 10 payload bits and force the quiet bit (never collapses to Inf).
    const uint32_t nan = 0x7e000000u | ((a << 3) & 0x03ff0000u);
    const uint32_t r = detail::select32(a > 0x7f800000u, nan, finite) | (u & 0x80000000u);
    return static_cast<uint16_t>(r >> 16);
}

/// Exact widening of a bf16 bit pattern to f32.
inline float bf16ToF32(uint16_t b) noexcept { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

/// f32 -> bf16 bit pattern, round to nearest even.
inline uint16_t f32ToBf16(float f) noexcept {
    const uint32_t u = std::bit_cast<uint32_t>(f);
    // Round to nearest even on the bit pattern; works through subnormals, carries into the
    // exponent and overflows to Inf exactly when it should.
    const uint32_t rounded = u + 0x7fffu + ((u >> 16) & 1u);
    // NaN: truncate the payload and force the quiet bit.
    const uint32_t nan = u | 0x00400000u;
    // Select on full 32-bit words and shift down once (a single narrowing when vectorised).
    const uint32_t r = detail::select32((u & 0x7fffffffu) > 0x7f800000u, nan, rounded);
    return static_cast<uint16_t>(r >> 16);
}

}  // namespace pccl::collectives
