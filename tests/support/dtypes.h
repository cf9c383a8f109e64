// Data types and reference reductions for the all-reduce tests (no Catch; usable on any thread).
// The reference follows pccl.h: integer sums and products wrap (two's complement), integer
// pcclAvg is the truncating division of the exact sum, f16/bf16 are reduced in f32 and rounded
// once. Inputs used against the reference are small integers, so float sums are exact.
#pragma once

#include "support/common.h"
#include "util/dtype.h"

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

namespace pccl_test {

// Every data type, in enum order (util/dtype.h is the table of their names, sizes and kinds).
inline constexpr auto kAllDtypes = [] {
    std::array<pcclDataType_t, pccl::kDataTypes.size()> all{};
    for (size_t i = 0; i < all.size(); ++i) all[i] = pccl::kDataTypes[i].id;
    return all;
}();
inline constexpr pcclRedOp_t kAllOps[] = {pcclSum, pcclAvg, pcclProd, pcclMax, pcclMin};

// "u8", "f32", ...: the table's short name; "?" if invalid.
inline const char *dtypeName(pcclDataType_t t) {
    const auto *d = pccl::dataTypeInfo(t);
    return d ? d->shortName : "?";
}

inline const char *opName(pcclRedOp_t op) {
    switch (op) {
        case pcclSum: return "sum";
        case pcclAvg: return "avg";
        case pcclProd: return "prod";
        case pcclMax: return "max";
        case pcclMin: return "min";
    }
    return "?";
}

inline size_t dtypeSize(pcclDataType_t t) { return pccl::dataTypeSize(t); }
inline bool isFloat(pcclDataType_t t) { return pccl::dataTypeInfo(t) && pccl::dataTypeInfo(t)->isFloat(); }
inline bool isSigned(pcclDataType_t t) { return pccl::dataTypeInfo(t) && pccl::dataTypeInfo(t)->isSigned(); }

// ---- f16 / bf16 conversions (round to nearest, ties to even; NaN preserved as a quiet NaN)

inline uint32_t f32Bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}
inline float f32FromBits(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

inline float halfToFloat(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    const uint32_t man = h & 0x3ffu;
    if (exp == 0) {
        // zero or subnormal: man * 2^-24
        const float v = std::ldexp(static_cast<float>(man), -24);
        return sign ? -v : v;
    }
    if (exp == 31) return f32FromBits(sign | 0x7f800000u | (man << 13));
    return f32FromBits(sign | ((exp + 112u) << 23) | (man << 13));
}

inline uint16_t floatToHalf(float f) {
    const uint32_t x = f32Bits(f);
    const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
    const uint32_t absx = x & 0x7fffffffu;
    if (absx > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u); // NaN
    if (absx >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u); // rounds to >= 65520: inf
    if (absx < 0x38800000u) {                                              // below the smallest normal f16
        // Subnormal: value / 2^-24, rounded to nearest even.
        const float a = f32FromBits(absx);
        const float scaled = a * 16777216.0f; // exact (power of two)
        float r = std::nearbyint(scaled);     // default rounding mode: ties to even
        return static_cast<uint16_t>(sign | static_cast<uint16_t>(r));
    }
    // Normal: drop 13 mantissa bits with round-to-nearest-even; a carry into the exponent is correct.
    uint32_t exp = ((absx >> 23) - 112u) << 10;
    uint32_t man = (absx >> 13) & 0x3ffu;
    uint32_t h = exp | man;
    const uint32_t rest = absx & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
    return static_cast<uint16_t>(sign | h);
}

inline float bf16ToFloat(uint16_t b) { return f32FromBits(static_cast<uint32_t>(b) << 16); }

inline uint16_t floatToBf16(float f) {
    const uint32_t x = f32Bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u); // quiet NaN
    const uint32_t lsb = (x >> 16) & 1u;
    return static_cast<uint16_t>((x + 0x7fffu + lsb) >> 16);
}

// ---- element access through double / int64 (inputs are small enough to be exact)

inline void storeInt(pcclDataType_t t, void *buf, size_t i, int64_t v) {
    auto *p = static_cast<uint8_t *>(buf);
    switch (t) {
        case pcclUint8: { uint8_t x = static_cast<uint8_t>(v); std::memcpy(p + i, &x, 1); break; }
        case pcclInt8: { int8_t x = static_cast<int8_t>(v); std::memcpy(p + i, &x, 1); break; }
        case pcclInt16: { int16_t x = static_cast<int16_t>(v); std::memcpy(p + 2 * i, &x, 2); break; }
        case pcclUint16: { uint16_t x = static_cast<uint16_t>(v); std::memcpy(p + 2 * i, &x, 2); break; }
        case pcclUint32: { uint32_t x = static_cast<uint32_t>(v); std::memcpy(p + 4 * i, &x, 4); break; }
        case pcclInt32: { int32_t x = static_cast<int32_t>(v); std::memcpy(p + 4 * i, &x, 4); break; }
        case pcclUint64: { uint64_t x = static_cast<uint64_t>(v); std::memcpy(p + 8 * i, &x, 8); break; }
        case pcclInt64: { std::memcpy(p + 8 * i, &v, 8); break; }
        case pcclFloat16: { uint16_t x = floatToHalf(static_cast<float>(v)); std::memcpy(p + 2 * i, &x, 2); break; }
        case pcclBFloat16: { uint16_t x = floatToBf16(static_cast<float>(v)); std::memcpy(p + 2 * i, &x, 2); break; }
        case pcclFloat: { float x = static_cast<float>(v); std::memcpy(p + 4 * i, &x, 4); break; }
        case pcclDouble: { double x = static_cast<double>(v); std::memcpy(p + 8 * i, &x, 8); break; }
    }
}

// Integer types: the exact value as a 128-bit integer.
inline __int128 loadInt(pcclDataType_t t, const void *buf, size_t i) {
    auto *p = static_cast<const uint8_t *>(buf);
    switch (t) {
        case pcclUint8: { uint8_t x; std::memcpy(&x, p + i, 1); return x; }
        case pcclInt8: { int8_t x; std::memcpy(&x, p + i, 1); return x; }
        case pcclInt16: { int16_t x; std::memcpy(&x, p + 2 * i, 2); return x; }
        case pcclUint16: { uint16_t x; std::memcpy(&x, p + 2 * i, 2); return x; }
        case pcclUint32: { uint32_t x; std::memcpy(&x, p + 4 * i, 4); return x; }
        case pcclInt32: { int32_t x; std::memcpy(&x, p + 4 * i, 4); return x; }
        case pcclUint64: { uint64_t x; std::memcpy(&x, p + 8 * i, 8); return x; }
        case pcclInt64: { int64_t x; std::memcpy(&x, p + 8 * i, 8); return x; }
        default: return 0;
    }
}

// Float types: the value as double (f16/bf16 widened exactly).
inline double loadFloat(pcclDataType_t t, const void *buf, size_t i) {
    auto *p = static_cast<const uint8_t *>(buf);
    switch (t) {
        case pcclFloat16: { uint16_t x; std::memcpy(&x, p + 2 * i, 2); return halfToFloat(x); }
        case pcclBFloat16: { uint16_t x; std::memcpy(&x, p + 2 * i, 2); return bf16ToFloat(x); }
        case pcclFloat: { float x; std::memcpy(&x, p + 4 * i, 4); return x; }
        case pcclDouble: { double x; std::memcpy(&x, p + 8 * i, 8); return x; }
        default: return 0;
    }
}

// Store an exact 128-bit integer into an integer type, wrapping modulo 2^bits (two's complement).
inline void storeWrapped(pcclDataType_t t, void *buf, size_t i, __int128 v) {
    storeInt(t, buf, i, static_cast<int64_t>(static_cast<uint64_t>(static_cast<unsigned __int128>(v))));
}

// Store a double into a float type, rounding once (double -> f32 is exact for the values used).
inline void storeFloat(pcclDataType_t t, void *buf, size_t i, double v) {
    auto *p = static_cast<uint8_t *>(buf);
    switch (t) {
        case pcclFloat16: { uint16_t x = floatToHalf(static_cast<float>(v)); std::memcpy(p + 2 * i, &x, 2); break; }
        case pcclBFloat16: { uint16_t x = floatToBf16(static_cast<float>(v)); std::memcpy(p + 2 * i, &x, 2); break; }
        case pcclFloat: { float x = static_cast<float>(v); std::memcpy(p + 4 * i, &x, 4); break; }
        case pcclDouble: { std::memcpy(p + 8 * i, &v, 8); break; }
        default: break;
    }
}

// The reference all-reduce of `inputs` (one buffer per peer of the group) into `out`.
inline void referenceReduce(pcclDataType_t t, pcclRedOp_t op, const std::vector<const void *> &inputs, size_t count,
                            void *out) {
    const int n = static_cast<int>(inputs.size());
    for (size_t i = 0; i < count; ++i) {
        if (isFloat(t)) {
            double acc = loadFloat(t, inputs[0], i);
            for (int r = 1; r < n; ++r) {
                const double v = loadFloat(t, inputs[r], i);
                switch (op) {
                    case pcclSum:
                    case pcclAvg: acc += v; break;
                    case pcclProd: acc *= v; break;
                    case pcclMax: acc = v > acc ? v : acc; break;
                    case pcclMin: acc = v < acc ? v : acc; break;
                }
            }
            if (op == pcclAvg) acc /= n;
            storeFloat(t, out, i, acc);
        } else {
            __int128 acc = loadInt(t, inputs[0], i);
            unsigned __int128 wrap_prod = static_cast<unsigned __int128>(acc);
            for (int r = 1; r < n; ++r) {
                const __int128 v = loadInt(t, inputs[r], i);
                switch (op) {
                    case pcclSum:
                    case pcclAvg: acc += v; break;
                    case pcclProd: wrap_prod *= static_cast<unsigned __int128>(v); break;
                    case pcclMax: acc = v > acc ? v : acc; break;
                    case pcclMin: acc = v < acc ? v : acc; break;
                }
            }
            if (op == pcclProd) acc = static_cast<__int128>(wrap_prod);
            if (op == pcclAvg) acc /= n; // C++ division truncates toward zero
            storeWrapped(t, out, i, acc);
        }
    }
}

// Distance in units in the last place between two values of a float type (0 = identical value).
inline uint64_t ulpDistance(pcclDataType_t t, const void *a, const void *b, size_t i) {
    auto ordered = [t](const void *buf, size_t idx) -> __int128 {
        const auto *p = static_cast<const uint8_t *>(buf);
        const size_t sz = dtypeSize(t);
        uint64_t u = 0;
        std::memcpy(&u, p + sz * idx, sz);
        const uint64_t sign_bit = uint64_t{1} << (8 * sz - 1);
        const __int128 mag = static_cast<__int128>(u & ~sign_bit);
        return (u & sign_bit) ? -mag : mag;
    };
    const __int128 d = ordered(a, i) - ordered(b, i);
    const __int128 ad = d < 0 ? -d : d;
    return ad > static_cast<__int128>(UINT64_MAX) ? UINT64_MAX : static_cast<uint64_t>(ad);
}

inline std::string formatElement(pcclDataType_t t, const void *buf, size_t i) {
    std::ostringstream os;
    if (isFloat(t)) {
        os.precision(17);
        os << loadFloat(t, buf, i);
    } else {
        const __int128 v = loadInt(t, buf, i);
        os << static_cast<long long>(v);
        if (v > static_cast<__int128>(INT64_MAX)) os << " (u64 " << static_cast<unsigned long long>(v) << ")";
    }
    return os.str();
}

// Compare a result with the reference: exact bytes, except float pcclAvg which may differ by one
// ulp (division vs. multiplication by the reciprocal, and f32 -> f16 double rounding).
// Returns "" when equal, else a description of the first difference.
inline std::string compareWithReference(pcclDataType_t t, pcclRedOp_t op, const void *got, const void *ref, size_t count) {
    const size_t sz = dtypeSize(t);
    if (std::memcmp(got, ref, count * sz) == 0) return "";
    size_t bad = 0;
    for (size_t i = 0; i < count; ++i) {
        if (std::memcmp(static_cast<const uint8_t *>(got) + i * sz, static_cast<const uint8_t *>(ref) + i * sz, sz) == 0)
            continue;
        if (isFloat(t) && op == pcclAvg && ulpDistance(t, got, ref, i) <= 1) continue;
        ++bad;
        if (bad == 1) {
            std::ostringstream os;
            os << dtypeName(t) << " " << opName(op) << " count " << count << ": element " << i << " is "
               << formatElement(t, got, i) << ", expected " << formatElement(t, ref, i);
            // Count the rest for context.
            size_t more = 0;
            for (size_t j = i + 1; j < count; ++j)
                if (std::memcmp(static_cast<const uint8_t *>(got) + j * sz, static_cast<const uint8_t *>(ref) + j * sz,
                                sz) != 0)
                    ++more;
            os << " (" << more << " later elements differ too)";
            return os.str();
        }
    }
    return "";
}

// Small-integer inputs for (dtype, op, rank, index) such that every reduction over <= 3 peers is
// exact in every type (and avg exercises truncation of negative sums).
inline int64_t smallInput(pcclDataType_t t, pcclRedOp_t op, int rank, size_t i) {
    const int64_t k = static_cast<int64_t>(i % 1000003);
    if (op == pcclProd) {
        int64_t v = isSigned(t) ? ((k + rank) % 5) - 2 : (k + rank) % 4;
        switch (t) {
            case pcclInt16:
            case pcclUint16: return v * 10;
            case pcclInt32:
            case pcclUint32: return v * 100;
            case pcclInt64:
            case pcclUint64: return v * 100000;
            default: return v;
        }
    }
    int64_t v = isSigned(t) ? ((k * 7 + rank * 13) % 19) - 9 : (k * 7 + rank * 13) % 19;
    switch (t) {
        case pcclInt16:
        case pcclUint16: return v * 1000;
        case pcclInt32:
        case pcclUint32: return v * 10000000;
        case pcclInt64:
        case pcclUint64: return v * 1000000000000000LL;
        default: return v;
    }
}

inline void fillSmall(pcclDataType_t t, pcclRedOp_t op, int rank, void *buf, size_t count) {
    for (size_t i = 0; i < count; ++i) storeInt(t, buf, i, smallInput(t, op, rank, i));
}

inline uint64_t fnv1a(const void *data, size_t n) {
    uint64_t h = 1469598103934665603ull;
    const auto *p = static_cast<const uint8_t *>(data);
    for (size_t i = 0; i < n; ++i) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

} // namespace pccl_test
