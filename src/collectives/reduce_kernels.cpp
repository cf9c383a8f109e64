// reduce_kernels.cpp - element-wise reduction kernels, one template instance per (dtype, op).
//
// Every public entry point dispatches once per call to a simple loop specialised for the
// (dtype, op) pair; the loops are written so that GCC/Clang auto-vectorise them at -O3
// (byte pointers + fixed-size memcpy loads/stores: any alignment, no UB, no intrinsics).
// Compiled with -ffp-contract=off: the same bytes come out on every machine.
#include "collectives/reduce_kernels.h"

#include "collectives/float16.h"

#include <cstring>
#include <type_traits>

namespace pccl::collectives {

namespace {

using byte_t = unsigned char;

template <class T>
inline T load(const byte_t* p) noexcept {
    T v;
    std::memcpy(&v, p, sizeof(T));
    return v;
}

template <class T>
inline void store(byte_t* p, T v) noexcept {
    std::memcpy(p, &v, sizeof(T));
}

enum class Kind { Int, F16, BF16, Float };

template <pcclDataType_t D> struct Storage;
template <> struct Storage<pcclUint8> { using T = uint8_t; static constexpr Kind kind = Kind::Int; };
template <> struct Storage<pcclInt8> { using T = int8_t; static constexpr Kind kind = Kind::Int; };
template <> struct Storage<pcclInt16> { using T = int16_t; static constexpr Kind kind = Kind::Int; };
template <> struct Storage<pcclUint16> { using T = uint16_t; static constexpr Kind kind = Kind::Int; };
template <> struct Storage<pcclUint32> { using T = uint32_t; static constexpr Kind kind = Kind::Int; };
template <> struct Storage<pcclInt32> { using T = int32_t; static constexpr Kind kind = Kind::Int; };
template <> struct Storage<pcclUint64> { using T = uint64_t; static constexpr Kind kind = Kind::Int; };
template <> struct Storage<pcclInt64> { using T = int64_t; static constexpr Kind kind = Kind::Int; };
template <> struct Storage<pcclFloat16> { using T = uint16_t; static constexpr Kind kind = Kind::F16; };
template <> struct Storage<pcclBFloat16> { using T = uint16_t; static constexpr Kind kind = Kind::BF16; };
template <> struct Storage<pcclFloat> { using T = float; static constexpr Kind kind = Kind::Float; };
template <> struct Storage<pcclDouble> { using T = double; static constexpr Kind kind = Kind::Float; };

// The storage types agree with the data-type table (util/dtype.h).
template <pcclDataType_t D>
constexpr bool matchesTable() {
    using T = typename Storage<D>::T;
    constexpr const DataTypeInfo& d = kDataTypes[D];
    return sizeof(T) == d.size && (Storage<D>::kind == Kind::Int) == d.isInteger() &&
           (Storage<D>::kind != Kind::Int || std::is_signed_v<T> == d.isSigned());
}
static_assert(matchesTable<pcclUint8>() && matchesTable<pcclInt8>() && matchesTable<pcclInt16>() &&
              matchesTable<pcclUint16>() && matchesTable<pcclUint32>() && matchesTable<pcclInt32>() &&
              matchesTable<pcclUint64>() && matchesTable<pcclInt64>() && matchesTable<pcclFloat16>() &&
              matchesTable<pcclBFloat16>() && matchesTable<pcclFloat>() && matchesTable<pcclDouble>());
static_assert(kDataTypes.size() == 12, "a new data type needs a Storage and a case in visit()");

template <class A, bool isInt>
struct WrapType {
    using type = A;
};
template <class A>
struct WrapType<A, true> {
    using type = std::conditional_t<(sizeof(A) < sizeof(unsigned)), unsigned, std::make_unsigned_t<A>>;
};

/// Everything a loop needs to know about one (dtype, op) pair.
template <pcclDataType_t D, pcclRedOp_t O>
struct Kernel {
    static constexpr Kind kind = Storage<D>::kind;
    using T = typename Storage<D>::T;  // storage (user) type
    // Accumulation type: f32 for f16/bf16; 64-bit integers for integer avg; else T.
    using A = std::conditional_t<
        kind == Kind::F16 || kind == Kind::BF16, float,
        std::conditional_t<kind == Kind::Int && O == pcclAvg,
                           std::conditional_t<std::is_signed_v<T>, int64_t, uint64_t>, T>>;
    // Integer arithmetic is done in an unsigned type at least as wide as `unsigned` so that
    // wrap-around is well defined (no promotion to signed int).
    using W = typename WrapType<A, kind == Kind::Int>::type;

    static inline A widen(T x) noexcept {
        if constexpr (kind == Kind::F16) {
            return f16ToF32(x);
        } else if constexpr (kind == Kind::BF16) {
            return bf16ToF32(x);
        } else {
            return static_cast<A>(x);
        }
    }

    static inline A combine(A a, A b) noexcept {
        if constexpr (O == pcclSum || O == pcclAvg) {
            if constexpr (kind == Kind::Int) {
                return static_cast<A>(static_cast<W>(static_cast<W>(a) + static_cast<W>(b)));
            } else {
                return a + b;
            }
        } else if constexpr (O == pcclProd) {
            if constexpr (kind == Kind::Int) {
                return static_cast<A>(static_cast<W>(static_cast<W>(a) * static_cast<W>(b)));
            } else {
                return a * b;
            }
        } else if constexpr (O == pcclMax || O == pcclMin) {
            A r;
            if constexpr (O == pcclMax) {
                r = a > b ? a : b;
            } else {
                r = a < b ? a : b;
            }
            if constexpr (kind != Kind::Int) {
                // NaN propagates: a NaN `b` already wins above (the comparison is false), a NaN
                // `a` must be selected explicitly.
                r = a != a ? a : r;
            }
            return r;
        }
    }

    // The divisor of avg, in the type the division is done in.
    static inline A divisor(uint32_t world) noexcept { return static_cast<A>(world == 0 ? 1u : world); }

    static inline T finalize(A v, A world) noexcept {
        A r = v;
        if constexpr (O == pcclAvg) {
            r = v / world;  // integers: truncation toward zero; floats: a real division
        }
        if constexpr (kind == Kind::F16) {
            return f32ToF16(r);
        } else if constexpr (kind == Kind::BF16) {
            return f32ToBf16(r);
        } else {
            return static_cast<T>(r);  // integer avg: the quotient fits unless the sum wrapped
        }
    }
};

// ---------------------------------------------------------------- loops

template <class K>
[[gnu::noinline]] void toAccumLoop(const byte_t* local, byte_t* acc, size_t n) {
    using T = typename K::T;
    using A = typename K::A;
    if constexpr (std::is_same_v<T, A>) {
        std::memmove(acc, local, n * sizeof(T));
    } else {
        for (size_t i = 0; i < n; ++i) {
            store<A>(acc + i * sizeof(A), K::widen(load<T>(local + i * sizeof(T))));
        }
    }
}

template <class K>
[[gnu::noinline]] void accumulateLoop(byte_t* acc, const byte_t* local, size_t n) {
    using T = typename K::T;
    using A = typename K::A;
    for (size_t i = 0; i < n; ++i) {
        const A a = load<A>(acc + i * sizeof(A));
        const A b = K::widen(load<T>(local + i * sizeof(T)));
        store<A>(acc + i * sizeof(A), K::combine(a, b));
    }
}

// out distinct from acc and local (the compiler versions the loop for any overlap).
template <class K>
[[gnu::noinline]] void finishLoop(const byte_t* acc, const byte_t* local, byte_t* out, size_t n, typename K::A world) {
    using T = typename K::T;
    using A = typename K::A;
    for (size_t i = 0; i < n; ++i) {
        const A a = load<A>(acc + i * sizeof(A));
        const A b = K::widen(load<T>(local + i * sizeof(T)));
        store<T>(out + i * sizeof(T), K::finalize(K::combine(a, b), world));
    }
}

// out == acc: one pointer, so the compiler sees the exact (element-wise) dependence.
template <class K>
[[gnu::noinline]] void finishIntoAccLoop(byte_t* io, const byte_t* local, size_t n, typename K::A world) {
    using T = typename K::T;
    using A = typename K::A;
    for (size_t i = 0; i < n; ++i) {
        const A a = load<A>(io + i * sizeof(A));
        const A b = K::widen(load<T>(local + i * sizeof(T)));
        store<T>(io + i * sizeof(T), K::finalize(K::combine(a, b), world));
    }
}

// out == local.
template <class K>
[[gnu::noinline]] void finishIntoLocalLoop(const byte_t* acc, byte_t* io, size_t n, typename K::A world) {
    using T = typename K::T;
    using A = typename K::A;
    for (size_t i = 0; i < n; ++i) {
        const A a = load<A>(acc + i * sizeof(A));
        const A b = K::widen(load<T>(io + i * sizeof(T)));
        store<T>(io + i * sizeof(T), K::finalize(K::combine(a, b), world));
    }
}

// ---------------------------------------------------------------- dispatch (once per call)

template <pcclDataType_t D, class Fn>
inline bool visitOp(pcclRedOp_t op, Fn&& fn) {
    switch (op) {
        case pcclSum: fn.template operator()<Kernel<D, pcclSum>>(); return true;
        case pcclAvg: fn.template operator()<Kernel<D, pcclAvg>>(); return true;
        case pcclProd: fn.template operator()<Kernel<D, pcclProd>>(); return true;
        case pcclMax: fn.template operator()<Kernel<D, pcclMax>>(); return true;
        case pcclMin: fn.template operator()<Kernel<D, pcclMin>>(); return true;
    }
    return false;
}

template <class Fn>
inline bool visit(pcclDataType_t dtype, pcclRedOp_t op, Fn&& fn) {
    switch (dtype) {
        case pcclUint8: return visitOp<pcclUint8>(op, fn);
        case pcclInt8: return visitOp<pcclInt8>(op, fn);
        case pcclInt16: return visitOp<pcclInt16>(op, fn);
        case pcclUint16: return visitOp<pcclUint16>(op, fn);
        case pcclUint32: return visitOp<pcclUint32>(op, fn);
        case pcclInt32: return visitOp<pcclInt32>(op, fn);
        case pcclUint64: return visitOp<pcclUint64>(op, fn);
        case pcclInt64: return visitOp<pcclInt64>(op, fn);
        case pcclFloat16: return visitOp<pcclFloat16>(op, fn);
        case pcclBFloat16: return visitOp<pcclBFloat16>(op, fn);
        case pcclFloat: return visitOp<pcclFloat>(op, fn);
        case pcclDouble: return visitOp<pcclDouble>(op, fn);
    }
    return false;
}

}  // namespace

bool isValidRedOp(int op) { return op >= pcclSum && op <= pcclMin; }

const char* redOpName(pcclRedOp_t op) {
    switch (op) {
        case pcclSum: return "sum";
        case pcclAvg: return "avg";
        case pcclProd: return "prod";
        case pcclMax: return "max";
        case pcclMin: return "min";
    }
    return "invalid";
}

pcclDataType_t accumType(pcclDataType_t dtype, pcclRedOp_t op) {
    switch (dtype) {
        case pcclFloat16:
        case pcclBFloat16: return pcclFloat;
        case pcclInt8:
        case pcclInt16:
        case pcclInt32:
        case pcclInt64: return op == pcclAvg ? pcclInt64 : dtype;
        case pcclUint8:
        case pcclUint16:
        case pcclUint32:
        case pcclUint64: return op == pcclAvg ? pcclUint64 : dtype;
        case pcclFloat:
        case pcclDouble: return dtype;
    }
    return dtype;
}

void toAccum(pcclDataType_t dtype, pcclRedOp_t op, const void* local, void* acc_out, size_t n) {
    if (n == 0) return;
    const auto* src = static_cast<const byte_t*>(local);
    auto* dst = static_cast<byte_t*>(acc_out);
    visit(dtype, op, [&]<class K>() { toAccumLoop<K>(src, dst, n); });
}

void accumulate(pcclDataType_t dtype, pcclRedOp_t op, void* acc, const void* local, size_t n) {
    if (n == 0) return;
    auto* a = static_cast<byte_t*>(acc);
    const auto* l = static_cast<const byte_t*>(local);
    visit(dtype, op, [&]<class K>() { accumulateLoop<K>(a, l, n); });
}

void finish(pcclDataType_t dtype, pcclRedOp_t op, const void* acc, const void* local, void* out, size_t n,
            uint32_t world) {
    if (n == 0) return;
    const auto* a = static_cast<const byte_t*>(acc);
    const auto* l = static_cast<const byte_t*>(local);
    auto* o = static_cast<byte_t*>(out);
    visit(dtype, op, [&]<class K>() {
        const auto w = K::divisor(world);
        if (o == a) {
            finishIntoAccLoop<K>(o, l, n, w);
        } else if (o == l) {
            finishIntoLocalLoop<K>(a, o, n, w);
        } else {
            finishLoop<K>(a, l, o, n, w);
        }
    });
}

}  // namespace pccl::collectives
