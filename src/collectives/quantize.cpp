#include "collectives/quantize.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>

#include "collectives/float16.h"
#include "collectives/reduce_kernels.h"
#include "util/bytes.h"
#include "util/cpu.h"

namespace pccl::collectives {

namespace {

uint32_t levels(const QuantSpec &s) { return s.quantized == pcclUint8 ? 253u : 65533u; }

template <class T>
T loadValue(const void *p, size_t i) {
    T v;
    std::memcpy(&v, static_cast<const uint8_t *>(p) + i * sizeof(T), sizeof(T));
    return v;
}

template <class T>
void storeValue(void *p, size_t i, T v) {
    std::memcpy(static_cast<uint8_t *>(p) + i * sizeof(T), &v, sizeof(T));
}

double loadF64(const uint8_t *p) { return std::bit_cast<double>(loadLE64(p)); }
void storeF64(uint8_t *p, double v) { storeLE64(p, std::bit_cast<uint64_t>(v)); }

// The kernels below are written without branches so that gcc vectorizes them (quantize.cpp is
// built with -O3 -fno-trapping-math, src/CMakeLists.txt), and each is compiled twice, for AVX2
// and for the baseline, picked per call by a flag read once (not target_clones: its ifunc
// resolvers run before a sanitizer runtime is up and crash ThreadSanitizer builds). The
// arithmetic is the same IEEE operations in both, so the bytes do not depend on the CPU:
// rounding is (y + 2^52) - 2^52, which rounds to nearest even for 0 <= y < 2^52 exactly as
// nearbyint does (y is clamped to [0, L - 1] first).
#if defined(__x86_64__)
#define PCCL_KERNEL(name, params, args, body)                      \
    [[gnu::target("avx2")]] void name##Avx2 params { body args; } \
    void name##Base params { body args; }                          \
    void name params {                                             \
        if (cpuHasAvx2()) name##Avx2 args;                         \
        else name##Base args;                                      \
    }
#else
#define PCCL_KERNEL(name, params, args, body) \
    void name params { body args; }
#endif

// An order-preserving integer key of a float (-0 sorts just below +0); its own inverse.
template <class T>
using Key = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
template <class T>
inline Key<T> orderKey(Key<T> bits) {
    constexpr Key<T> magnitude = std::numeric_limits<Key<T>>::max();
    return bits ^ ((bits >> (8 * sizeof(T) - 1)) & magnitude);
}

// lo and hi of the finite values (lo > hi when there is none). Reduced on integer keys with a
// bitwise blend: gcc vectorizes neither a float min/max reduction (without -ffinite-math-only)
// nor a select feeding a min.
template <class T>
[[gnu::always_inline]] inline void finiteRange(const T *v, size_t n, double *lo, double *hi) {
    using K = Key<T>;
    constexpr int mantissaBits = sizeof(T) == 4 ? 23 : 52, expBits = sizeof(T) == 4 ? 8 : 11;
    constexpr K expAll = (K{1} << expBits) - 1, kMax = std::numeric_limits<K>::max(), kMin = std::numeric_limits<K>::min();
    K kLo = kMax, kHi = kMin;
    for (size_t i = 0; i < n; ++i) {
        K b;
        std::memcpy(&b, reinterpret_cast<const uint8_t *>(v) + i * sizeof b, sizeof b);
        const K nonFinite = -((((b >> mantissaBits) & expAll) + 1) >> expBits);  // all ones or 0
        const K k = orderKey<T>(b);
        kLo = std::min(kLo, (k & ~nonFinite) | (kMax & nonFinite));
        kHi = std::max(kHi, (k & ~nonFinite) | (kMin & nonFinite));
    }
    if (kLo > kHi) {
        *lo = std::numeric_limits<double>::infinity();
        *hi = -*lo;
        return;
    }
    *lo = std::bit_cast<T>(orderKey<T>(kLo));
    *hi = std::bit_cast<T>(orderKey<T>(kHi));
}

// Codes of n values: y = (x - p0) / step (MinMax) or x / step + p0 (ZeroPointScale), clamped
// to [0, L - 1] and rounded; NaN, +Inf, -Inf get the codes L, L + 1, L + 2.
template <class T, class Code>
[[gnu::always_inline]] inline void encode(const T *v, size_t n, bool minMax, double p0, double step, uint32_t L, Code *codes) {
    const double top = L - 1, magic = 0x1p52, inf = std::numeric_limits<double>::infinity();
    const double sub = minMax ? p0 : 0, add = minMax ? 0 : p0;
    for (size_t i = 0; i < n; ++i) {
        const double x = loadValue<T>(v, i);  // memcpy: the user's buffer may be unaligned
        double y = (x - sub) / step + add;
        y = y > 0 ? y : 0;  // NaN (x non-finite) lands here too; replaced below
        y = y < top ? y : top;
        uint32_t c = static_cast<uint32_t>((y + magic) - magic);
        c = x != x ? L : c;
        c = x == inf ? L + 1 : c;
        c = x == -inf ? L + 2 : c;
        storeValue<Code>(codes, i, static_cast<Code>(c));
    }
}

template <class T, class Code>
[[gnu::always_inline]] inline void decode(const Code *codes, size_t n, bool minMax, double p0, double step, uint32_t L, T *out) {
    const T nan = std::numeric_limits<T>::quiet_NaN(), inf = std::numeric_limits<T>::infinity();
    for (size_t i = 0; i < n; ++i) {
        const uint32_t c = loadValue<Code>(codes, i);
        const double d = static_cast<double>(c);
        T v = static_cast<T>(minMax ? p0 + d * step : (d - p0) * step);
        v = c == L ? nan : v;
        v = c == L + 1 ? inf : v;
        v = c >= L + 2 ? -inf : v;
        storeValue<T>(out, i, v);
    }
}

#define PCCL_CODEC_ARGS (v, n, mm, p0, st, L, c)
PCCL_KERNEL(finiteRangeF32, (const float *v, size_t n, double *lo, double *hi), (v, n, lo, hi), finiteRange)
PCCL_KERNEL(finiteRangeF64, (const double *v, size_t n, double *lo, double *hi), (v, n, lo, hi), finiteRange)
PCCL_KERNEL(encodeF32U8, (const float *v, size_t n, bool mm, double p0, double st, uint32_t L, uint8_t *c), PCCL_CODEC_ARGS, encode)
PCCL_KERNEL(encodeF32U16, (const float *v, size_t n, bool mm, double p0, double st, uint32_t L, uint16_t *c), PCCL_CODEC_ARGS, encode)
PCCL_KERNEL(encodeF64U8, (const double *v, size_t n, bool mm, double p0, double st, uint32_t L, uint8_t *c), PCCL_CODEC_ARGS, encode)
PCCL_KERNEL(encodeF64U16, (const double *v, size_t n, bool mm, double p0, double st, uint32_t L, uint16_t *c), PCCL_CODEC_ARGS, encode)
PCCL_KERNEL(decodeU8F32, (const uint8_t *v, size_t n, bool mm, double p0, double st, uint32_t L, float *c), PCCL_CODEC_ARGS, decode)
PCCL_KERNEL(decodeU16F32, (const uint16_t *v, size_t n, bool mm, double p0, double st, uint32_t L, float *c), PCCL_CODEC_ARGS, decode)
PCCL_KERNEL(decodeU8F64, (const uint8_t *v, size_t n, bool mm, double p0, double st, uint32_t L, double *c), PCCL_CODEC_ARGS, decode)
PCCL_KERNEL(decodeU16F64, (const uint16_t *v, size_t n, bool mm, double p0, double st, uint32_t L, double *c), PCCL_CODEC_ARGS, decode)
#undef PCCL_CODEC_ARGS
#undef PCCL_KERNEL

// u16 codes travel little-endian: on a little-endian host the wire bytes are the codes.
static_assert(std::endian::native == std::endian::little, "u16 codes are encoded in host order");

template <class T>
void quantizeAs(const QuantSpec &s, const T *values, size_t n, uint8_t *wire) {
    const uint32_t L = levels(s);
    const bool minMax = s.algorithm == pcclQuantMinMax;
    double lo, hi;
    if constexpr (sizeof(T) == 4) finiteRangeF32(values, n, &lo, &hi);
    else finiteRangeF64(values, n, &lo, &hi);
    if (lo > hi) lo = hi = 0;  // no finite value
    double p0, step;
    if (minMax) {
        p0 = lo;
        step = (hi - lo) / (L - 1);
    } else {
        p0 = (L - 1) / 2;  // the zero point
        step = std::max(std::fabs(lo), std::fabs(hi)) / p0;
    }
    if (!std::isfinite(step)) step = std::numeric_limits<double>::max() / L;  // a range beyond f64: clamp
    // The top code must decode to a finite value: for a range near the largest double, the
    // rounded step times L - 1 can exceed it, and a finite value would come back as +-Inf.
    while (!std::isfinite(minMax ? p0 + (L - 1) * step : (L - 1 - p0) * step)) step = std::nextafter(step, 0.0);
    storeF64(wire, p0);
    storeF64(wire + 8, step);
    // step == 0: every finite value is lo (MinMax) or +-0 (ZeroPointScale), so dividing by 1
    // gives the same codes (0, or the zero point) without a 0/0.
    const double div = step == 0 ? 1 : step;
    uint8_t *codes = wire + kQuantHeaderBytes;
    if (s.quantized == pcclUint8) {
        if constexpr (sizeof(T) == 4) encodeF32U8(values, n, minMax, p0, div, L, codes);
        else encodeF64U8(values, n, minMax, p0, div, L, codes);
    } else {
        auto *c16 = reinterpret_cast<uint16_t *>(codes);
        if constexpr (sizeof(T) == 4) encodeF32U16(values, n, minMax, p0, div, L, c16);
        else encodeF64U16(values, n, minMax, p0, div, L, c16);
    }
}

template <class T>
bool dequantizeAs(const QuantSpec &s, const uint8_t *wire, size_t n, T *out) {
    const uint32_t L = levels(s);
    const double p0 = loadF64(wire), step = loadF64(wire + 8);
    if (!std::isfinite(p0) || !std::isfinite(step)) return false;
    const bool minMax = s.algorithm == pcclQuantMinMax;
    const uint8_t *codes = wire + kQuantHeaderBytes;
    if (s.quantized == pcclUint8) {
        if constexpr (sizeof(T) == 4) decodeU8F32(codes, n, minMax, p0, step, L, out);
        else decodeU8F64(codes, n, minMax, p0, step, L, out);
    } else {
        const auto *c16 = reinterpret_cast<const uint16_t *>(codes);
        if constexpr (sizeof(T) == 4) decodeU16F32(c16, n, minMax, p0, step, L, out);
        else decodeU16F64(c16, n, minMax, p0, step, L, out);
    }
    return true;
}

} // namespace

Status checkQuantization(pcclDataType_t dtype, pcclRedOp_t op, const pcclQuantizationOptions_t &q) {
    if (q.algorithm == pcclQuantNone) return {};
    if (q.quantized_datatype != pcclUint8 && q.quantized_datatype != pcclUint16)
        return invalidArgument(std::string("quantization to ") + dataTypeName(q.quantized_datatype) +
                               " is not supported (use pcclUint8 or pcclUint16)");
    if (dtype != pcclFloat && dtype != pcclDouble && dtype != pcclFloat16 && dtype != pcclBFloat16)
        return invalidArgument(std::string("quantization needs floating-point data, not ") + dataTypeName(dtype));
    if (op == pcclProd)
        return invalidArgument("quantized prod is not supported: its relative error grows with every factor");
    return {};
}

size_t quantizedBytes(const QuantSpec &spec, size_t n) {
    return kQuantHeaderBytes + n * (spec.quantized == pcclUint8 ? 1 : 2);
}

void quantize(const QuantSpec &spec, const void *values, size_t n, uint8_t *wire) {
    if (spec.acc == pcclDouble) quantizeAs(spec, static_cast<const double *>(values), n, wire);
    else quantizeAs(spec, static_cast<const float *>(values), n, wire);
}

bool dequantize(const QuantSpec &spec, const uint8_t *wire, size_t n, void *out) {
    return spec.acc == pcclDouble ? dequantizeAs(spec, wire, n, static_cast<double *>(out))
                                  : dequantizeAs(spec, wire, n, static_cast<float *>(out));
}

void fromAccum(pcclDataType_t dtype, const void *acc, void *out, size_t n) {
    if (dtype == pcclFloat16 || dtype == pcclBFloat16) {
        for (size_t i = 0; i < n; ++i) {
            const float f = loadValue<float>(acc, i);
            storeValue<uint16_t>(out, i, dtype == pcclFloat16 ? f32ToF16(f) : f32ToBf16(f));
        }
        return;
    }
    if (acc != out) std::memmove(out, acc, n * dataTypeSize(dtype));
}

} // namespace pccl::collectives
