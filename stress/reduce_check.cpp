// pccl-soak-peer: the all-reduce plan, input generation and result checking (see reduce_check.hpp).
#include "reduce_check.hpp"

#include <algorithm>
#include <bit>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <type_traits>

#include "util/dtype.h"

namespace soak {

const std::vector<OpSpec> &opPlan() {
    static const std::vector<OpSpec> plan = {
        {0, pcclFloat, pcclSum, 917504, How::Blocking, true},  // 3.5-3.9 MiB
        {1, pcclBFloat16, pcclAvg, 65536, How::Blocking, false},
        {2, pcclInt64, pcclSum, 3, How::Blocking, true},
        {3, pcclFloat16, pcclSum, 200000, How::Async, true},
        {4, pcclInt32, pcclMax, 50000, How::Async, false},
        {5, pcclUint8, pcclSum, 10, How::Async, true},
        {6, pcclFloat16, pcclAvg, 70, How::Async, false},
        {7, pcclFloat, pcclAvg, 100000, How::Multi, true},
        {8, pcclInt64, pcclAvg, 1000, How::Multi, false},
        {9, pcclUint8, pcclMax, 4096, How::Multi, true},
        {10, pcclInt32, pcclSum, 5, How::Multi, false},
        {11, pcclBFloat16, pcclSum, 300, How::Blocking, true},
        {12, pcclUint8, pcclAvg, 3000, How::Blocking, false},
    };
    return plan;
}

size_t opCount(const OpSpec &spec, uint64_t rev) {
    return spec.base_count + splitmix64Hash(rev * 1000 + spec.tag) % (spec.base_count / 8 + 1);
}

size_t maxOpCount(const OpSpec &spec) { return spec.base_count + spec.base_count / 8; }

const char *howName(How how) {
    switch (how) {
        case How::Blocking: return "block";
        case How::Async: return "async";
        case How::Multi: return "multi";
    }
    return "?";
}

const char *opName(pcclRedOp_t op) {
    switch (op) {
        case pcclSum: return "sum";
        case pcclAvg: return "avg";
        case pcclProd: return "prod";
        case pcclMax: return "max";
        case pcclMin: return "min";
    }
    return "?";
}

uint64_t fnv1a(const void *data, size_t bytes, uint64_t h) {
    const auto *p = static_cast<const unsigned char *>(data);
    size_t i = 0;
    for (; i + 8 <= bytes; i += 8) {
        uint64_t w;
        std::memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
    }
    for (; i < bytes; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

uint16_t f32ToBf16(float f) {
    uint32_t u = std::bit_cast<uint32_t>(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1);
    return static_cast<uint16_t>(u >> 16);
}

float bf16ToF32(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

uint16_t f32ToF16(float f) {
    const uint32_t u = std::bit_cast<uint32_t>(f);
    const auto sign = static_cast<uint16_t>((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00;   // NaN
    if (a >= 0x477ff000u) return sign | 0x7c00;  // >= 65520 rounds to infinity
    if (a < 0x38800000u) {                       // below 2^-14: subnormal (or zero)
        const float m = std::bit_cast<float>(a) * 16777216.0f;  // exact; rint: nearest even
        return sign | static_cast<uint16_t>(std::nearbyint(m));
    }
    a += 0xfffu + ((a >> 13) & 1);  // round the 13 dropped mantissa bits to nearest even
    return sign | static_cast<uint16_t>((a - (112u << 23)) >> 13);
}

float f16ToF32(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
    const uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0) {
        const float v = static_cast<float>(m) * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    if (e == 31) return std::bit_cast<float>(sign | 0x7f800000u | (m << 13));
    return std::bit_cast<float>(sign | ((e + 112) << 23) | (m << 13));
}

namespace {

// One codec per dtype (its size, kind and exact bits are in the table, util/dtype.h): T
// (storage), fromInt (exact for our small values), avg (the library's
// pcclAvg finish: integers truncate the exact sum, f32/f16/bf16 divide in f32 and round
// once, f64 divides in f64), and asU64 (exact for integers; floats: integral values >= 0,
// else ~0).
template <class Ty, bool Signed>
struct IntCodec {
    using T = Ty;
    static T fromInt(int64_t v) { return static_cast<T>(v); }
    static T avg(int64_t sum, uint32_t n) {
        if constexpr (Signed) return static_cast<T>(sum / static_cast<int64_t>(n));
        else return static_cast<T>(static_cast<uint64_t>(sum) / n);
    }
    static uint64_t asU64(T x) { return static_cast<uint64_t>(x); }
    static double asDouble(T x) { return static_cast<double>(x); }
};

uint64_t integralOrInvalid(double v) {
    return (v >= 0 && v < 1.8e19 && v == std::floor(v)) ? static_cast<uint64_t>(v) : ~0ull;
}

template <uint16_t (*Enc)(float), float (*Dec)(uint16_t)>
struct HalfCodec {
    using T = uint16_t;
    static T fromInt(int64_t v) { return Enc(static_cast<float>(v)); }
    static T avg(int64_t sum, uint32_t n) { return Enc(static_cast<float>(sum) / static_cast<float>(n)); }
    static uint64_t asU64(T x) { return integralOrInvalid(Dec(x)); }
    static double asDouble(T x) { return Dec(x); }
};

template <class Ty>
struct FloatCodec {
    using T = Ty;
    static T fromInt(int64_t v) { return static_cast<T>(v); }
    static T avg(int64_t sum, uint32_t n) { return static_cast<T>(sum) / static_cast<T>(n); }
    static uint64_t asU64(T x) { return integralOrInvalid(x); }
    static double asDouble(T x) { return x; }
};

// Calls f(Codec{}) for the codec of dtype.
template <class F>
void visit(pcclDataType_t dtype, F &&f) {
    switch (dtype) {
        case pcclUint8: return f(IntCodec<uint8_t, false>{});
        case pcclInt8: return f(IntCodec<int8_t, true>{});
        case pcclInt16: return f(IntCodec<int16_t, true>{});
        case pcclUint16: return f(IntCodec<uint16_t, false>{});
        case pcclUint32: return f(IntCodec<uint32_t, false>{});
        case pcclInt32: return f(IntCodec<int32_t, true>{});
        case pcclUint64: return f(IntCodec<uint64_t, false>{});
        case pcclInt64: return f(IntCodec<int64_t, true>{});
        case pcclFloat16: return f(HalfCodec<f32ToF16, f16ToF32>{});
        case pcclBFloat16: return f(HalfCodec<f32ToBf16, bf16ToF32>{});
        case pcclFloat: return f(FloatCodec<float>{});
        case pcclDouble: return f(FloatCodec<double>{});
    }
}

template <class T>
T load(const void *base, size_t i) {
    T x;
    std::memcpy(&x, static_cast<const unsigned char *>(base) + i * sizeof(T), sizeof(T));
    return x;
}

template <class T>
void store(void *base, size_t i, T x) {
    std::memcpy(static_cast<unsigned char *>(base) + i * sizeof(T), &x, sizeof(T));
}

// Where the participant mask lives in a buffer and what a slot puts there.
struct Layout {
    bool bits = false;      // packed bits (pcclSum) or one element per slot
    int b = 0;              // bits per element when packed
    size_t mask_elems = 0;  // elements [0, mask_elems) hold the mask
    int64_t onehot = 1;     // a slot's value in its own element (one-hot)
    bool is_unsigned = false;
};

Layout layoutOf(const OpSpec &spec) {
    Layout l;
    const pccl::DataTypeInfo &d = *pccl::dataTypeInfo(spec.dtype);
    l.b = d.digits;
    l.is_unsigned = !d.isSigned();
    // Integer avg truncates: the one-hot value must survive division by 64.
    if (spec.op == pcclAvg && d.isInteger()) l.onehot = int64_t{1} << (std::min(d.digits, 31) - 1);
    l.bits = spec.op == pcclSum;
    l.mask_elems = l.bits ? (kMaxSlots + l.b - 1) / l.b : kMaxSlots;
    return l;
}

// The mask value for bits: bits [i*b, i*b + b) of mask.
uint64_t maskBits(const Layout &l, uint64_t mask, size_t i) {
    const size_t shift = i * static_cast<size_t>(l.b);
    if (shift >= 64) return 0;
    const uint64_t part = mask >> shift;
    return l.b >= 64 ? part : part & ((uint64_t{1} << l.b) - 1);
}

uint64_t slotKey(uint64_t key, int slot) {
    return splitmix64Hash(key ^ (static_cast<uint64_t>(slot + 1) * 0xD6E8FEB86659FD93ull));
}

// A slot's value at data index i: 0..7 (unsigned types) or -4..3.
inline int64_t dataValue(const Layout &l, uint64_t slot_key, size_t i) {
    uint64_t x = i * 0xD1B54A32D192ED03ull + slot_key;
    x ^= x >> 29;
    x *= 0x9E3779B97F4A7C15ull;
    const auto raw = static_cast<int64_t>(x >> 61);
    return l.is_unsigned ? raw : raw - 4;
}

}  // namespace

size_t dtypeSize(pcclDataType_t dtype) { return pccl::dataTypeSize(dtype); }

const char *dtypeName(pcclDataType_t dtype) {
    const auto *d = pccl::dataTypeInfo(dtype);
    return d ? d->shortName : "?";
}

uint64_t opKey(uint64_t seed, uint64_t lineage, uint64_t rev, uint64_t tag) {
    return splitmix64Hash(splitmix64Hash(splitmix64Hash(seed) ^ lineage) ^ (rev * 0x9E3779B97F4A7C15ull + tag));
}

void fillInput(const OpSpec &spec, size_t count, uint64_t key, int slot, void *out) {
    const Layout l = layoutOf(spec);
    const uint64_t own = uint64_t{1} << slot;
    const uint64_t k = slotKey(key, slot);
    visit(spec.dtype, [&](auto c) {
        using C = decltype(c);
        using T = typename C::T;
        for (size_t i = 0; i < l.mask_elems && i < count; ++i) {
            const int64_t v = l.bits ? static_cast<int64_t>(maskBits(l, own, i))
                                     : (i == static_cast<size_t>(slot) ? l.onehot : 0);
            store<T>(out, i, C::fromInt(v));
        }
        for (size_t i = l.mask_elems; i < count; ++i) store<T>(out, i, C::fromInt(dataValue(l, k, i)));
    });
}

CheckResult ResultChecker::check(const OpSpec &spec, size_t count, uint64_t key, int own_slot, const void *result) {
    CheckResult out;
    const Layout l = layoutOf(spec);
    const size_t esize = dtypeSize(spec.dtype);
    const size_t mask_end = std::min(l.mask_elems, count);

    // 1. The participant set, as the result claims it.
    visit(spec.dtype, [&](auto c) {
        using C = decltype(c);
        using T = typename C::T;
        for (size_t i = 0; i < mask_end; ++i) {
            const T x = load<T>(result, i);
            if (l.bits) {
                const uint64_t v = C::asU64(x);
                const size_t shift = i * static_cast<size_t>(l.b);
                if (v != ~0ull && shift < 64) out.mask |= v << shift;
            } else if (C::asDouble(x) != 0) {
                out.mask |= uint64_t{1} << i;
            }
        }
    });
    const auto n = static_cast<uint32_t>(std::popcount(out.mask));
    if (!(out.mask >> own_slot & 1)) {
        char buf[160];
        std::snprintf(buf, sizeof buf, "own slot %d missing from the decoded participant mask %016llx", own_slot,
                      static_cast<unsigned long long>(out.mask));
        out.error = buf;
        return out;
    }

    // 2. The exact reduction (sum or max) over that set, in 64-bit integers.
    acc_.resize(count);
    for (size_t i = 0; i < mask_end; ++i)
        acc_[i] = l.bits ? static_cast<int64_t>(maskBits(l, out.mask, i)) : ((out.mask >> i & 1) ? l.onehot : 0);
    const bool is_max = spec.op == pcclMax;
    for (size_t i = mask_end; i < count; ++i) acc_[i] = is_max ? INT64_MIN : 0;
    for (int s = 0; s < kMaxSlots; ++s) {
        if (!(out.mask >> s & 1)) continue;
        const uint64_t k = slotKey(key, s);
        if (is_max) {
            for (size_t i = mask_end; i < count; ++i) acc_[i] = std::max(acc_[i], dataValue(l, k, i));
        } else {
            for (size_t i = mask_end; i < count; ++i) acc_[i] += dataValue(l, k, i);
        }
    }

    // 3. Finish (avg) in the dtype and compare bytes.
    expected_.resize(count * esize);
    visit(spec.dtype, [&](auto c) {
        using C = decltype(c);
        using T = typename C::T;
        const bool avg = spec.op == pcclAvg;
        for (size_t i = 0; i < count; ++i) store<T>(expected_.data(), i, avg ? C::avg(acc_[i], n) : C::fromInt(acc_[i]));
        if (std::memcmp(expected_.data(), result, count * esize) == 0) {
            out.ok = true;
            return;
        }
        size_t i = 0;
        while (i < count && std::memcmp(expected_.data() + i * esize, static_cast<const unsigned char *>(result) + i * esize,
                                        esize) == 0)
            ++i;
        char buf[256];
        std::snprintf(buf, sizeof buf, "element %zu of %zu: got %.9g want %.9g (participants %016llx, n=%u)", i, count,
                      C::asDouble(load<T>(result, i)), C::asDouble(load<T>(expected_.data(), i)),
                      static_cast<unsigned long long>(out.mask), n);
        out.error = buf;
    });
    return out;
}

}  // namespace soak
