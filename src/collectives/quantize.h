// Quantized transport of ring all-reduce segments (pcclQuantMinMax, pcclQuantZeroPointScale to
// u8/u16). A segment of n values in the accumulation type (f32, or f64 for double data) travels
// as a 16-byte header (two f64 parameters, little-endian) followed by n codes (u8 or u16, LE).
//
// - MinMax: lo = min, hi = max of the finite values; step = (hi - lo) / (L - 1);
//   code = round((x - lo) / step); value = lo + code * step.
// - ZeroPointScale: a = max |x| of the finite values; zero point z = (L - 1) / 2;
//   step = a / z; code = round(x / step) + z; value = (code - z) * step (0 is exact).
// L = 2^bits - 3 levels; the three top codes carry NaN, +Inf and -Inf exactly, so non-finite
// values propagate as in an unquantized reduction. Rounding is to nearest (ties to even).
// The error of one quantization is at most step / 2 per value.
//
// Determinism: dequantize() is a pure function of the wire bytes, built without floating-point
// contraction, so every peer that decodes the same frame gets the same bits; the owner of a
// chunk keeps dequantize(quantize(final)) so that all peers end with identical results.
#pragma once
#include <pccl.h>

#include <cstddef>
#include <cstdint>

#include "util/status.h"

namespace pccl::collectives {

struct QuantSpec {
    pcclQuantizationAlgorithm_t algorithm = pcclQuantNone;
    pcclDataType_t quantized = pcclUint8;  // pcclUint8 or pcclUint16
    pcclDataType_t acc = pcclFloat;        // pcclFloat or pcclDouble: the type of the values
};

inline constexpr size_t kQuantHeaderBytes = 16;

// Whether (dtype, op, options) can be reduced quantized; a readable reason otherwise.
Status checkQuantization(pcclDataType_t dtype, pcclRedOp_t op, const pcclQuantizationOptions_t &q);
size_t quantizedBytes(const QuantSpec &spec, size_t n);
// wire receives quantizedBytes(spec, n) bytes; values are n accumulation-type values.
void quantize(const QuantSpec &spec, const void *values, size_t n, uint8_t *wire);
// Decodes n values into out (accumulation type). False if the header is not finite (a
// malformed frame).
bool dequantize(const QuantSpec &spec, const uint8_t *wire, size_t n, void *out);
// out[i] = acc[i] converted to dtype (f16/bf16 rounded to nearest-even; f32/f64 copied).
void fromAccum(pcclDataType_t dtype, const void *acc, void *out, size_t n);

} // namespace pccl::collectives
