// Tests for the reduction kernels (src/collectives/reduce_kernels.h) and the f16/bf16
// conversions (src/collectives/float16.h).
//
// The reference model is written independently of the kernels: f16/bf16 values are decoded
// with ldexp() and rounded by a nearest-value search over all finite 16-bit values; float
// arithmetic is replayed in double and rounded to the accumulation type at every step;
// integer arithmetic is done in 64-bit unsigned (wrap-around) / signed (avg) arithmetic.
#include <catch2/catch.hpp>

#include "collectives/float16.h"
#include "collectives/reduce_kernels.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

using namespace pccl::collectives;

namespace {

constexpr pcclDataType_t kAllTypes[] = {pcclUint8,  pcclInt8,   pcclInt16,    pcclUint16, pcclUint32, pcclInt32,
                                        pcclUint64, pcclInt64,  pcclFloat16, pcclBFloat16, pcclFloat,  pcclDouble};
constexpr pcclRedOp_t kAllOps[] = {pcclSum, pcclAvg, pcclProd, pcclMax, pcclMin};

// ---------------------------------------------------------------- reference f16 / bf16

double refF16ToDouble(uint16_t h) {
    const double sign = (h & 0x8000) ? -1.0 : 1.0;
    const int e = (h >> 10) & 0x1f;
    const int m = h & 0x3ff;
    if (e == 0x1f) return m ? std::numeric_limits<double>::quiet_NaN() : sign * INFINITY;
    if (e == 0) return sign * std::ldexp(m, -24);
    return sign * std::ldexp(1024 + m, e - 25);
}

double refBf16ToDouble(uint16_t h) {
    const double sign = (h & 0x8000) ? -1.0 : 1.0;
    const int e = (h >> 7) & 0xff;
    const int m = h & 0x7f;
    if (e == 0xff) return m ? std::numeric_limits<double>::quiet_NaN() : sign * INFINITY;
    if (e == 0) return sign * std::ldexp(m, -133);
    return sign * std::ldexp(128 + m, e - 134);
}

// Round a finite or infinite (non-NaN) double to the nearest 16-bit value among the positive
// finite values table[0..], ties to the even bit pattern. `overflow` is the smallest magnitude
// that rounds to infinity (the midpoint between the largest finite value and the next power).
uint16_t refRound(double x, const std::vector<double>& table, double overflow, uint16_t infBits) {
    const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
    const double a = std::fabs(x);
    if (a >= overflow) return sign | infBits;
    const auto it = std::lower_bound(table.begin(), table.end(), a);  // first >= a
    if (it == table.end()) return sign | static_cast<uint16_t>(table.size() - 1);  // below `overflow`
    const auto hi = static_cast<uint16_t>(it - table.begin());
    if (table[hi] == a || hi == 0) return sign | hi;
    const uint16_t lo = hi - 1;
    const double dlo = a - table[lo], dhi = table[hi] - a;
    if (dlo < dhi) return sign | lo;
    if (dhi < dlo) return sign | hi;
    return sign | ((lo & 1) ? hi : lo);
}

const std::vector<double>& f16Table() {
    static const std::vector<double> t = [] {
        std::vector<double> v;
        for (uint32_t h = 0; h <= 0x7bff; ++h) v.push_back(refF16ToDouble(static_cast<uint16_t>(h)));
        return v;
    }();
    return t;
}

const std::vector<double>& bf16Table() {
    static const std::vector<double> t = [] {
        std::vector<double> v;
        for (uint32_t h = 0; h <= 0x7f7f; ++h) v.push_back(refBf16ToDouble(static_cast<uint16_t>(h)));
        return v;
    }();
    return t;
}

uint16_t refF32ToF16(float f) {
    if (std::isnan(f)) return 0x7e00;  // callers compare NaNs by class only
    return refRound(f, f16Table(), 65520.0, 0x7c00);
}

uint16_t refF32ToBf16(float f) {
    if (std::isnan(f)) return 0x7fc0;
    const double maxFinite = refBf16ToDouble(0x7f7f);
    return refRound(f, bf16Table(), (maxFinite + std::ldexp(1.0, 128)) / 2, 0x7f80);
}

bool f16IsNan(uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x3ff); }
bool bf16IsNan(uint16_t h) { return (h & 0x7f80) == 0x7f80 && (h & 0x7f); }

// ---------------------------------------------------------------- unaligned buffers

// A byte buffer whose data pointer is deliberately misaligned by `offset` bytes.
struct Buffer {
    std::vector<unsigned char> storage;
    size_t offset;
    Buffer(size_t bytes, size_t off = 1) : storage(bytes + 16, 0xcd), offset(off) {
        // vector storage is at least 8-byte aligned, so data() is misaligned for every dtype.
    }
    unsigned char* data() { return storage.data() + offset; }
    const unsigned char* data() const { return storage.data() + offset; }
};

template <class T>
T getAt(const unsigned char* p, size_t i) {
    T v;
    std::memcpy(&v, p + i * sizeof(T), sizeof(T));
    return v;
}

template <class T>
void setAt(unsigned char* p, size_t i, T v) {
    std::memcpy(p + i * sizeof(T), &v, sizeof(T));
}

// ---------------------------------------------------------------- reference reductions

enum class Family { Unsigned, Signed, F16, BF16, F32, F64 };

Family familyOf(pcclDataType_t t) {
    switch (t) {
        case pcclUint8:
        case pcclUint16:
        case pcclUint32:
        case pcclUint64: return Family::Unsigned;
        case pcclInt8:
        case pcclInt16:
        case pcclInt32:
        case pcclInt64: return Family::Signed;
        case pcclFloat16: return Family::F16;
        case pcclBFloat16: return Family::BF16;
        case pcclFloat: return Family::F32;
        case pcclDouble: return Family::F64;
    }
    return Family::Unsigned;
}

bool isFloating(pcclDataType_t t) {
    const Family f = familyOf(t);
    return f == Family::F16 || f == Family::BF16 || f == Family::F32 || f == Family::F64;
}

// Element i of a buffer of dtype t, as a 64-bit pattern: integers sign/zero-extended.
uint64_t intAt(pcclDataType_t t, const unsigned char* p, size_t i) {
    switch (t) {
        case pcclUint8: return getAt<uint8_t>(p, i);
        case pcclInt8: return static_cast<uint64_t>(static_cast<int64_t>(getAt<int8_t>(p, i)));
        case pcclInt16: return static_cast<uint64_t>(static_cast<int64_t>(getAt<int16_t>(p, i)));
        case pcclUint16: return getAt<uint16_t>(p, i);
        case pcclUint32: return getAt<uint32_t>(p, i);
        case pcclInt32: return static_cast<uint64_t>(static_cast<int64_t>(getAt<int32_t>(p, i)));
        case pcclUint64: return getAt<uint64_t>(p, i);
        case pcclInt64: return static_cast<uint64_t>(getAt<int64_t>(p, i));
        default: return 0;
    }
}

// Element i of a floating buffer as a double (exact).
double floatAt(pcclDataType_t t, const unsigned char* p, size_t i) {
    switch (t) {
        case pcclFloat16: return refF16ToDouble(getAt<uint16_t>(p, i));
        case pcclBFloat16: return refBf16ToDouble(getAt<uint16_t>(p, i));
        case pcclFloat: return getAt<float>(p, i);
        case pcclDouble: return getAt<double>(p, i);
        default: return 0;
    }
}

// Store the low bytes of a 64-bit integer pattern (two's complement truncation).
void storeInt(pcclDataType_t t, unsigned char* p, size_t i, uint64_t v) {
    std::memcpy(p + i * dataTypeSize(t), &v, dataTypeSize(t));  // little-endian host
}

double nanD() { return std::numeric_limits<double>::quiet_NaN(); }

// One floating step of the chain, rounded to the accumulation precision.
double floatStep(pcclRedOp_t op, double a, double b, bool accIsF32) {
    double r = 0;
    switch (op) {
        case pcclSum:
        case pcclAvg: r = a + b; break;
        case pcclProd: r = a * b; break;
        case pcclMax: r = (std::isnan(a) || std::isnan(b)) ? nanD() : (a > b ? a : b); break;
        case pcclMin: r = (std::isnan(a) || std::isnan(b)) ? nanD() : (a < b ? a : b); break;
    }
    return accIsF32 ? static_cast<double>(static_cast<float>(r)) : r;
}

// The expected reduction of element i over all peers, written into out (dtype t).
void referenceElement(pcclDataType_t t, pcclRedOp_t op, const std::vector<const unsigned char*>& peers, size_t i,
                      unsigned char* out) {
    const Family fam = familyOf(t);
    const auto world = static_cast<uint32_t>(peers.size());
    if (fam == Family::Unsigned || fam == Family::Signed) {
        uint64_t r = intAt(t, peers[0], i);
        for (size_t k = 1; k < peers.size(); ++k) {
            const uint64_t x = intAt(t, peers[k], i);
            switch (op) {
                case pcclSum:
                case pcclAvg: r += x; break;
                case pcclProd: r *= x; break;
                case pcclMax:
                    if (fam == Family::Signed) r = static_cast<int64_t>(x) > static_cast<int64_t>(r) ? x : r;
                    else r = x > r ? x : r;
                    break;
                case pcclMin:
                    if (fam == Family::Signed) r = static_cast<int64_t>(x) < static_cast<int64_t>(r) ? x : r;
                    else r = x < r ? x : r;
                    break;
            }
        }
        if (op == pcclAvg) {
            if (fam == Family::Signed) r = static_cast<uint64_t>(static_cast<int64_t>(r) / static_cast<int64_t>(world));
            else r /= world;
        }
        storeInt(t, out, 0, r);
        return;
    }
    const bool accIsF32 = fam != Family::F64;
    double r = floatAt(t, peers[0], i);
    for (size_t k = 1; k < peers.size(); ++k) r = floatStep(op, r, floatAt(t, peers[k], i), accIsF32);
    if (op == pcclAvg) r = accIsF32 ? static_cast<double>(static_cast<float>(r / world)) : r / world;
    switch (fam) {
        case Family::F16: setAt<uint16_t>(out, 0, refF32ToF16(static_cast<float>(r))); break;
        case Family::BF16: setAt<uint16_t>(out, 0, refF32ToBf16(static_cast<float>(r))); break;
        case Family::F32: setAt<float>(out, 0, static_cast<float>(r)); break;
        default: setAt<double>(out, 0, r); break;
    }
}

// Element i of a buffer of dtype t: bitwise equal, or both NaN.
bool sameElement(pcclDataType_t t, const unsigned char* a, const unsigned char* b) {
    const size_t sz = dataTypeSize(t);
    if (std::memcmp(a, b, sz) == 0) return true;
    if (!isFloating(t)) return false;
    return std::isnan(floatAt(t, a, 0)) && std::isnan(floatAt(t, b, 0));
}

std::string hexBytes(const unsigned char* p, size_t n) {
    std::ostringstream os;
    os << "0x" << std::hex;
    for (size_t k = n; k-- > 0;) os << (p[k] >> 4) << (p[k] & 0xf);
    return os.str();
}

// ---------------------------------------------------------------- random data

void fillRandom(pcclDataType_t t, pcclRedOp_t op, unsigned char* p, size_t n, std::mt19937_64& rng) {
    std::uniform_real_distribution<double> wide(-1000.0, 1000.0);
    std::uniform_real_distribution<double> nearOne(0.25, 4.0);
    std::uniform_int_distribution<int> scale(-26, 0);
    for (size_t i = 0; i < n; ++i) {
        // Products stay near 1 so they neither overflow nor flush; other ops span wide ranges
        // (including f16/bf16 subnormals through the random scale).
        double v = op == pcclProd ? nearOne(rng) * ((rng() & 1) ? 1 : -1) : std::ldexp(wide(rng), scale(rng));
        if (rng() % 50 == 0) v = 0.0;
        switch (t) {
            case pcclFloat16: setAt<uint16_t>(p, i, refF32ToF16(static_cast<float>(v))); break;
            case pcclBFloat16: setAt<uint16_t>(p, i, refF32ToBf16(static_cast<float>(v))); break;
            case pcclFloat: setAt<float>(p, i, static_cast<float>(v)); break;
            case pcclDouble: setAt<double>(p, i, v * (1.0 + 1e-9 * wide(rng))); break;
            default: storeInt(t, p, i, rng()); break;  // full range: sums and products wrap
        }
    }
}

// ---------------------------------------------------------------- ring simulation

enum class OutMode { Separate, IntoLocal, IntoAcc };

// Simulates one chunk travelling around a ring of `world` peers:
// toAccum(peer 0) -> accumulate(peer 1 .. world-2) -> finish(peer world-1), every buffer
// misaligned by one byte. Returns a description of the first mismatch, or "" if none.
std::string runRing(pcclDataType_t t, pcclRedOp_t op, uint32_t world, size_t n, OutMode mode, std::mt19937_64& rng) {
    const size_t esz = dataTypeSize(t);
    const pcclDataType_t at = accumType(t, op);
    const size_t asz = dataTypeSize(at);
    std::vector<Buffer> peers;
    for (uint32_t k = 0; k < world; ++k) {
        peers.emplace_back(n * esz);
        fillRandom(t, op, peers.back().data(), n, rng);
    }
    std::vector<const unsigned char*> peerPtrs;
    for (const Buffer& b : peers) peerPtrs.push_back(b.data());

    Buffer acc(std::max(n * asz, n * esz));
    toAccum(t, op, peers[0].data(), acc.data(), n);

    if (world == 1) {
        // A ring of one reduces nothing: the accumulator must hold peer 0's values, exactly.
        for (size_t i = 0; i < n; ++i) {
            bool ok;
            if (isFloating(t)) {
                const double want = floatAt(t, peers[0].data(), i);
                const double got = floatAt(at, acc.data(), i);
                ok = got == want || (std::isnan(got) && std::isnan(want));
            } else {
                ok = intAt(t, peers[0].data(), i) == intAt(at, acc.data(), i);
            }
            if (!ok) return "toAccum differs at element " + std::to_string(i);
        }
        return "";
    }

    // Reference first: finish may overwrite peer world-1's buffer.
    Buffer expected(n * esz);
    for (size_t i = 0; i < n; ++i) referenceElement(t, op, peerPtrs, i, expected.data() + i * esz);

    for (uint32_t k = 1; k + 1 < world; ++k) accumulate(t, op, acc.data(), peers[k].data(), n);

    Buffer separate(n * esz);
    unsigned char* out = separate.data();
    if (mode == OutMode::IntoLocal) out = peers[world - 1].data();
    if (mode == OutMode::IntoAcc) out = acc.data();
    finish(t, op, acc.data(), peers[world - 1].data(), out, n, world);

    for (size_t i = 0; i < n; ++i) {
        if (!sameElement(t, out + i * esz, expected.data() + i * esz)) {
            std::ostringstream os;
            os << "element " << i << " of " << n << ": got " << hexBytes(out + i * esz, esz) << ", want "
               << hexBytes(expected.data() + i * esz, esz) << " (peer values:";
            for (uint32_t k = 0; k < world; ++k) os << ' ' << hexBytes(peerPtrs[k] + i * esz, esz);
            os << ")";
            return os.str();
        }
    }
    return "";
}

void checkRingForTypes(std::initializer_list<pcclDataType_t> types) {
    std::mt19937_64 rng(0x5eed);
    for (pcclDataType_t t : types) {
        for (pcclRedOp_t op : kAllOps) {
            for (uint32_t world : {1u, 2u, 3u, 5u}) {
                for (size_t n : {size_t{1}, size_t{7}, size_t{1000}, size_t{4099}}) {
                    for (OutMode mode : {OutMode::Separate, OutMode::IntoLocal, OutMode::IntoAcc}) {
                        if (mode == OutMode::IntoAcc && accumType(t, op) != t) continue;
                        if (world == 1 && mode != OutMode::Separate) continue;
                        INFO(dataTypeName(t) << " " << redOpName(op) << " world=" << world << " n=" << n
                                             << " out=" << static_cast<int>(mode));
                        const std::string err = runRing(t, op, world, n, mode, rng);
                        CHECK(err == "");
                    }
                }
            }
        }
    }
}

// A chain over typed vectors (one per peer), world = peers.size() >= 2; aligned is fine here.
template <class T>
std::vector<T> reduceChain(pcclDataType_t t, pcclRedOp_t op, const std::vector<std::vector<T>>& peers) {
    const size_t n = peers[0].size();
    std::vector<unsigned char> acc(n * dataTypeSize(accumType(t, op)) + 1);
    toAccum(t, op, peers[0].data(), acc.data() + 1, n);
    for (size_t k = 1; k + 1 < peers.size(); ++k) accumulate(t, op, acc.data() + 1, peers[k].data(), n);
    std::vector<T> out(n);
    finish(t, op, acc.data() + 1, peers.back().data(), out.data(), n, static_cast<uint32_t>(peers.size()));
    return out;
}

template <class T>
T reduceOne(pcclDataType_t t, pcclRedOp_t op, std::initializer_list<T> values) {
    std::vector<std::vector<T>> peers;
    for (T v : values) peers.push_back({v});
    return reduceChain<T>(t, op, peers)[0];
}

uint16_t f16(double x) { return refF32ToF16(static_cast<float>(x)); }
uint16_t bf16(double x) { return refF32ToBf16(static_cast<float>(x)); }

}  // namespace

// ================================================================ metadata

TEST_CASE("reduce kernels: data types and operators have sizes, names and accumulation types") {
    for (int d = -2; d <= 13; ++d) CHECK(isValidDataType(d) == (d >= 0 && d <= 11));
    for (int o = -2; o <= 6; ++o) CHECK(isValidRedOp(o) == (o >= 0 && o <= 4));

    const size_t sizes[] = {1, 1, 2, 2, 4, 4, 8, 8, 2, 2, 4, 8};
    const char* names[] = {"uint8",  "int8",  "int16",   "uint16",   "uint32",  "int32",
                           "uint64", "int64", "float16", "bfloat16", "float32", "float64"};
    for (int d = 0; d < 12; ++d) {
        CHECK(dataTypeSize(static_cast<pcclDataType_t>(d)) == sizes[d]);
        CHECK(std::string(dataTypeName(static_cast<pcclDataType_t>(d))) == names[d]);
    }
    CHECK(dataTypeSize(static_cast<pcclDataType_t>(12)) == 0);
    CHECK(std::string(redOpName(pcclSum)) == "sum");
    CHECK(std::string(redOpName(pcclAvg)) == "avg");
    CHECK(std::string(redOpName(pcclProd)) == "prod");
    CHECK(std::string(redOpName(pcclMax)) == "max");
    CHECK(std::string(redOpName(pcclMin)) == "min");

    for (pcclRedOp_t op : kAllOps) {
        CHECK(accumType(pcclFloat16, op) == pcclFloat);
        CHECK(accumType(pcclBFloat16, op) == pcclFloat);
        CHECK(accumType(pcclFloat, op) == pcclFloat);
        CHECK(accumType(pcclDouble, op) == pcclDouble);
        for (pcclDataType_t t : {pcclInt8, pcclInt16, pcclInt32, pcclInt64})
            CHECK(accumType(t, op) == (op == pcclAvg ? pcclInt64 : t));
        for (pcclDataType_t t : {pcclUint8, pcclUint16, pcclUint32, pcclUint64})
            CHECK(accumType(t, op) == (op == pcclAvg ? pcclUint64 : t));
    }
}

TEST_CASE("reduce kernels: zero elements and invalid dtypes or ops write nothing") {
    unsigned char acc[16], local[16], out[16];
    std::memset(acc, 0x11, sizeof acc);
    std::memset(local, 0x22, sizeof local);
    std::memset(out, 0x33, sizeof out);
    for (pcclDataType_t t : kAllTypes) {
        toAccum(t, pcclSum, local, acc, 0);
        accumulate(t, pcclSum, acc, local, 0);
        finish(t, pcclSum, acc, local, out, 0, 2);
    }
    toAccum(static_cast<pcclDataType_t>(12), pcclSum, local, acc, 1);
    accumulate(pcclFloat, static_cast<pcclRedOp_t>(7), acc, local, 1);
    finish(static_cast<pcclDataType_t>(15), pcclSum, acc, local, out, 1, 2);
    for (int i = 0; i < 16; ++i) {
        CHECK(acc[i] == 0x11);
        CHECK(local[i] == 0x22);
        CHECK(out[i] == 0x33);
    }
}

// ================================================================ ring simulation

TEST_CASE("reduce kernels: a ring of 1, 2, 3 or 5 peers matches the reference for every integer dtype and op") {
    checkRingForTypes({pcclUint8, pcclInt8, pcclInt16, pcclUint16, pcclUint32, pcclInt32, pcclUint64, pcclInt64});
}

TEST_CASE("reduce kernels: a ring of 1, 2, 3 or 5 peers matches the reference for float32 and float64 and every op") {
    checkRingForTypes({pcclFloat, pcclDouble});
}

TEST_CASE("reduce kernels: a ring of 1, 2, 3 or 5 peers matches the reference for float16 and bfloat16 and every op") {
    checkRingForTypes({pcclFloat16, pcclBFloat16});
}

TEST_CASE("reduce kernels: finish may write into the accumulator or into the local buffer") {
    std::vector<float> acc = {1.5f, -2.0f, 3.25f}, local = {0.5f, 4.0f, -1.25f};
    finish(pcclFloat, pcclSum, acc.data(), local.data(), acc.data(), 3, 2);
    CHECK(acc == std::vector<float>{2.0f, 2.0f, 2.0f});

    acc = {1.5f, -2.0f, 3.25f};
    finish(pcclFloat, pcclAvg, acc.data(), local.data(), local.data(), 3, 2);
    CHECK(local == std::vector<float>{1.0f, 1.0f, 1.0f});

    // int8 avg accumulates in int64; the result lands in the int8 local buffer.
    std::vector<int64_t> iacc = {210, -7};
    std::vector<int8_t> ilocal = {90, 0};
    finish(pcclInt8, pcclAvg, iacc.data(), ilocal.data(), ilocal.data(), 2, 3);
    CHECK(ilocal == std::vector<int8_t>{100, -2});
}

// ================================================================ integer semantics

TEST_CASE("reduce kernels: integer sum and product wrap around") {
    CHECK(reduceOne<int8_t>(pcclInt8, pcclSum, {127, 1}) == -128);
    CHECK(reduceOne<int8_t>(pcclInt8, pcclSum, {-128, -1, 0}) == 127);
    CHECK(reduceOne<uint8_t>(pcclUint8, pcclSum, {255, 1}) == 0);
    CHECK(reduceOne<uint8_t>(pcclUint8, pcclProd, {16, 16, 3}) == 0);
    CHECK(reduceOne<int16_t>(pcclInt16, pcclSum, {32767, 32767}) == -2);
    CHECK(reduceOne<uint16_t>(pcclUint16, pcclProd, {65535, 65535}) == 1);  // would be signed-int overflow if promoted
    CHECK(reduceOne<int16_t>(pcclInt16, pcclProd, {-32768, -1}) == -32768);
    CHECK(reduceOne<int32_t>(pcclInt32, pcclSum, {std::numeric_limits<int32_t>::max(), 1}) ==
          std::numeric_limits<int32_t>::min());
    CHECK(reduceOne<int32_t>(pcclInt32, pcclProd, {65536, 65536}) == 0);
    CHECK(reduceOne<uint32_t>(pcclUint32, pcclSum, {0xffffffffu, 2u}) == 1u);
    CHECK(reduceOne<int64_t>(pcclInt64, pcclSum, {std::numeric_limits<int64_t>::max(), 1}) ==
          std::numeric_limits<int64_t>::min());
    CHECK(reduceOne<int64_t>(pcclInt64, pcclProd, {std::numeric_limits<int64_t>::min(), -1}) ==
          std::numeric_limits<int64_t>::min());
    CHECK(reduceOne<uint64_t>(pcclUint64, pcclProd, {1ull << 32, 1ull << 32, 5}) == 0);
    CHECK(reduceOne<uint64_t>(pcclUint64, pcclSum, {~0ull, ~0ull, 3}) == 1);
}

TEST_CASE("reduce kernels: integer max and min compare as signed or unsigned by dtype") {
    CHECK(reduceOne<int8_t>(pcclInt8, pcclMax, {-1, -128, 5}) == 5);
    CHECK(reduceOne<int8_t>(pcclInt8, pcclMin, {-1, -128, 5}) == -128);
    CHECK(reduceOne<uint8_t>(pcclUint8, pcclMax, {255, 0, 7}) == 255);
    CHECK(reduceOne<int32_t>(pcclInt32, pcclMin, {0, std::numeric_limits<int32_t>::min()}) ==
          std::numeric_limits<int32_t>::min());
    CHECK(reduceOne<uint64_t>(pcclUint64, pcclMax, {1, ~0ull, 2}) == ~0ull);
    CHECK(reduceOne<int64_t>(pcclInt64, pcclMin, {1, -1, 2}) == -1);
}

TEST_CASE("reduce kernels: integer avg divides the exact 64-bit sum and truncates toward zero") {
    // The sum of the int8 values does not fit in int8; the average does.
    CHECK(reduceOne<int8_t>(pcclInt8, pcclAvg, {127, 127, 127}) == 127);
    CHECK(reduceOne<int8_t>(pcclInt8, pcclAvg, {-128, -128, -128, -128, -128}) == -128);
    CHECK(reduceOne<int8_t>(pcclInt8, pcclAvg, {-4, -3}) == -3);  // -7/2 = -3.5 -> -3
    CHECK(reduceOne<int16_t>(pcclInt16, pcclAvg, {7, 0}) == 3);
    CHECK(reduceOne<uint8_t>(pcclUint8, pcclAvg, {255, 255, 254}) == 254);  // 764/3 = 254.67
    CHECK(reduceOne<uint32_t>(pcclUint32, pcclAvg, {0xffffffffu, 0xffffffffu, 0xffffffffu}) == 0xffffffffu);
    constexpr int32_t i32min = std::numeric_limits<int32_t>::min();
    CHECK(reduceOne<int32_t>(pcclInt32, pcclAvg, {i32min, i32min, i32min}) == i32min);
    CHECK(reduceOne<int32_t>(pcclInt32, pcclAvg, {i32min, i32min, -1}) == -1431655765);  // -1431655765.67
    CHECK(reduceOne<int64_t>(pcclInt64, pcclAvg, {int64_t{1} << 40, (int64_t{1} << 40) + 1}) == int64_t{1} << 40);
    CHECK(reduceOne<int64_t>(pcclInt64, pcclAvg, {-5, 0, 0}) == -1);
    CHECK(reduceOne<uint64_t>(pcclUint64, pcclAvg, {10, 11, 12, 13, 14}) == 12);
}

// ================================================================ floating-point semantics

TEST_CASE("reduce kernels: float avg is a real division by the world size") {
    // 5/3 divided and 5 * (1/3) multiplied differ in the last bit in f32.
    const float got = reduceOne<float>(pcclFloat, pcclAvg, {1.0f, 2.0f, 2.0f});
    CHECK(std::bit_cast<uint32_t>(got) == std::bit_cast<uint32_t>(5.0f / 3.0f));
    CHECK(reduceOne<double>(pcclDouble, pcclAvg, {1.0, 2.0, 2.0}) == 5.0 / 3.0);
    CHECK(reduceOne<float>(pcclFloat, pcclAvg, {9.0f, 0.0f, 0.0f, 0.0f, 0.0f}) == 9.0f / 5.0f);
}

TEST_CASE("reduce kernels: NaN propagates through every floating-point op in every position") {
    const float qn = std::numeric_limits<float>::quiet_NaN();
    const double dqn = std::numeric_limits<double>::quiet_NaN();
    for (pcclRedOp_t op : kAllOps) {
        INFO(redOpName(op));
        for (int pos = 0; pos < 3; ++pos) {
            std::vector<std::vector<float>> f = {{1.0f}, {2.0f}, {-3.0f}};
            std::vector<std::vector<double>> d = {{1.0}, {2.0}, {-3.0}};
            std::vector<std::vector<uint16_t>> h = {{f16(1.0)}, {f16(2.0)}, {f16(-3.0)}};
            std::vector<std::vector<uint16_t>> b = {{bf16(1.0)}, {bf16(2.0)}, {bf16(-3.0)}};
            f[pos][0] = qn;
            d[pos][0] = dqn;
            h[pos][0] = 0x7e00;
            b[pos][0] = 0x7fc0;
            INFO("NaN at peer " << pos);
            CHECK(std::isnan(reduceChain<float>(pcclFloat, op, f)[0]));
            CHECK(std::isnan(reduceChain<double>(pcclDouble, op, d)[0]));
            CHECK(f16IsNan(reduceChain<uint16_t>(pcclFloat16, op, h)[0]));
            CHECK(bf16IsNan(reduceChain<uint16_t>(pcclBFloat16, op, b)[0]));
        }
    }
    // Max/min with a NaN in either operand of the two-operand step (first or second).
    CHECK(std::isnan(reduceOne<float>(pcclFloat, pcclMax, {qn, 1.0f})));
    CHECK(std::isnan(reduceOne<float>(pcclFloat, pcclMax, {1.0f, qn})));
    CHECK(std::isnan(reduceOne<float>(pcclFloat, pcclMin, {qn, -INFINITY})));
    CHECK(std::isnan(reduceOne<float>(pcclFloat, pcclMin, {-INFINITY, qn})));
    CHECK(std::isnan(reduceOne<double>(pcclDouble, pcclMax, {INFINITY, dqn})));
    CHECK(std::isnan(reduceOne<double>(pcclDouble, pcclMin, {dqn, 0.0})));
}

TEST_CASE("reduce kernels: infinities follow IEEE arithmetic") {
    const float inf = INFINITY;
    CHECK(reduceOne<float>(pcclFloat, pcclSum, {inf, 1.0f, -5.0f}) == inf);
    CHECK(std::isnan(reduceOne<float>(pcclFloat, pcclSum, {inf, -inf})));
    CHECK(std::isnan(reduceOne<float>(pcclFloat, pcclProd, {inf, 0.0f})));
    CHECK(reduceOne<float>(pcclFloat, pcclProd, {-inf, -2.0f}) == inf);
    CHECK(reduceOne<float>(pcclFloat, pcclMax, {-inf, 3.0f, inf}) == inf);
    CHECK(reduceOne<float>(pcclFloat, pcclMin, {-inf, 3.0f, inf}) == -inf);
    CHECK(reduceOne<float>(pcclFloat, pcclAvg, {inf, 1.0f}) == inf);
    CHECK(reduceOne<float>(pcclFloat, pcclSum, {3.0e38f, 3.0e38f}) == inf);  // overflow
    CHECK(reduceOne<double>(pcclDouble, pcclSum, {1e308, 1e308}) == INFINITY);
    CHECK(reduceOne<uint16_t>(pcclFloat16, pcclSum, {0x7c00, f16(1.0)}) == 0x7c00);
    CHECK(reduceOne<uint16_t>(pcclFloat16, pcclMin, {0xfc00, f16(1.0)}) == 0xfc00);
    CHECK(reduceOne<uint16_t>(pcclBFloat16, pcclProd, {0xff80, bf16(2.0)}) == 0xff80);
    CHECK(bf16IsNan(reduceOne<uint16_t>(pcclBFloat16, pcclSum, {0x7f80, 0xff80})));
}

TEST_CASE("reduce kernels: float16 results overflow to infinity only when the f32 value rounds past 65504") {
    // 65504 + 8 = 65512 < 65520 rounds back to 65504; 65504 + 16 = 65520 is the tie to Inf.
    CHECK(reduceOne<uint16_t>(pcclFloat16, pcclSum, {f16(65504.0), f16(8.0)}) == 0x7bff);
    CHECK(reduceOne<uint16_t>(pcclFloat16, pcclSum, {f16(65504.0), f16(16.0)}) == 0x7c00);
    CHECK(reduceOne<uint16_t>(pcclFloat16, pcclSum, {f16(-65504.0), f16(-32.0)}) == 0xfc00);
    // The f32 partial can exceed the f16 range as long as the final value does not.
    CHECK(reduceOne<uint16_t>(pcclFloat16, pcclSum, {f16(65504.0), f16(65504.0), f16(-65504.0)}) == 0x7bff);
    CHECK(reduceOne<uint16_t>(pcclFloat16, pcclAvg, {f16(65504.0), f16(65504.0)}) == 0x7bff);
}

TEST_CASE("reduce kernels: bfloat16 sum is reduced in f32 and rounded once") {
    // 1 + 2^-8 is a tie in bf16 (rounds to 1.0 if rounded per step); 1 + 2^-8 + 2^-8 = 1 + 2^-7
    // is representable, and is what one final rounding gives.
    CHECK(reduceOne<uint16_t>(pcclBFloat16, pcclSum, {bf16(1.0), bf16(0x1p-8), bf16(0x1p-8)}) == 0x3f81);
    CHECK(reduceOne<uint16_t>(pcclBFloat16, pcclAvg,
                              {bf16(1.0), bf16(0x1p-8), bf16(0x1p-8), bf16(0x1p-8), bf16(0x1p-8)}) ==
          bf16((1.0 + 4 * 0x1p-8) / 5));
}

TEST_CASE("reduce kernels: float16 sum is reduced in f32 and rounded once") {
    CHECK(reduceOne<uint16_t>(pcclFloat16, pcclSum, {f16(1.0), f16(0x1p-11), f16(0x1p-11)}) == 0x3c01);
    // Subnormal partials add exactly in f32.
    CHECK(reduceOne<uint16_t>(pcclFloat16, pcclSum, {0x0001, 0x0001, 0x0001}) == 0x0003);
    CHECK(reduceOne<uint16_t>(pcclFloat16, pcclSum, {0x03ff, 0x0001}) == 0x0400);
}

TEST_CASE("reduce kernels: float max and min keep signed zeros and the exact values") {
    CHECK(reduceOne<float>(pcclFloat, pcclMax, {-1.0f, 0.0f, -2.0f}) == 0.0f);
    CHECK(reduceOne<float>(pcclFloat, pcclMin, {std::numeric_limits<float>::denorm_min(), 0.5f}) ==
          std::numeric_limits<float>::denorm_min());
    CHECK(reduceOne<uint16_t>(pcclFloat16, pcclMax, {0x0001, 0x8001, 0x0000}) == 0x0001);
    CHECK(reduceOne<uint16_t>(pcclBFloat16, pcclMin, {0x0001, 0x8001, 0x0000}) == 0x8001);
}

// ================================================================ f16 / bf16 conversions

TEST_CASE("reduce kernels: float16 widening is exact for every one of the 65536 bit patterns") {
    for (uint32_t h = 0; h <= 0xffff; ++h) {
        const auto bits = static_cast<uint16_t>(h);
        const float f = f16ToF32(bits);
        const double want = refF16ToDouble(bits);
        if (std::isnan(want)) {
            INFO("f16 NaN 0x" << std::hex << h);
            REQUIRE(std::isnan(f));
            // The payload moves to the top of the f32 mantissa (quiet bit onto quiet bit).
            REQUIRE((std::bit_cast<uint32_t>(f) & 0x007fe000u) >> 13 == (h & 0x3ffu));
        } else {
            INFO("f16 0x" << std::hex << h);
            REQUIRE(static_cast<double>(f) == want);
            REQUIRE(std::signbit(f) == ((h & 0x8000) != 0));
        }
    }
}

TEST_CASE("reduce kernels: float16 conversion of every bit pattern round-trips through f32") {
    for (uint32_t h = 0; h <= 0xffff; ++h) {
        const auto bits = static_cast<uint16_t>(h);
        const uint16_t back = f32ToF16(f16ToF32(bits));
        INFO("f16 0x" << std::hex << h << " -> 0x" << back);
        if (f16IsNan(bits)) {
            // NaNs stay NaN with their payload; signalling NaNs come back quiet.
            REQUIRE(back == (bits | 0x0200));
        } else {
            REQUIRE(back == bits);
        }
    }
}

TEST_CASE("reduce kernels: bfloat16 conversion of every bit pattern is exact and round-trips through f32") {
    for (uint32_t h = 0; h <= 0xffff; ++h) {
        const auto bits = static_cast<uint16_t>(h);
        const float f = bf16ToF32(bits);
        const double want = refBf16ToDouble(bits);
        const uint16_t back = f32ToBf16(f);
        INFO("bf16 0x" << std::hex << h << " -> 0x" << back);
        if (bf16IsNan(bits)) {
            REQUIRE(std::isnan(f));
            REQUIRE(back == (bits | 0x0040));
        } else {
            REQUIRE(static_cast<double>(f) == want);
            REQUIRE(std::signbit(f) == ((h & 0x8000) != 0));
            REQUIRE(back == bits);
        }
    }
}

TEST_CASE("reduce kernels: f32 to float16 rounds ties to even at every pair of neighbours") {
    // Every pair of adjacent finite f16 values (subnormal, normal, across binades): the midpoint
    // goes to the even pattern, anything off the midpoint to the nearer neighbour.
    for (uint32_t h = 0; h < 0x7bff; ++h) {
        const double lo = refF16ToDouble(static_cast<uint16_t>(h)), hi = refF16ToDouble(static_cast<uint16_t>(h + 1));
        const float mid = static_cast<float>((lo + hi) / 2);
        REQUIRE(static_cast<double>(mid) == (lo + hi) / 2);  // exact in f32
        const uint16_t even = (h & 1) ? static_cast<uint16_t>(h + 1) : static_cast<uint16_t>(h);
        INFO("between 0x" << std::hex << h << " and 0x" << h + 1);
        REQUIRE(f32ToF16(mid) == even);
        REQUIRE(f32ToF16(-mid) == (even | 0x8000));
        REQUIRE(f32ToF16(std::nextafter(mid, 0.0f)) == h);
        REQUIRE(f32ToF16(std::nextafter(mid, INFINITY)) == h + 1);
        REQUIRE(f32ToF16(-std::nextafter(mid, INFINITY)) == ((h + 1) | 0x8000));
    }
    // The overflow threshold: 65520 is the tie between 65504 (odd pattern) and 2^16 -> Inf.
    CHECK(f32ToF16(65520.0f) == 0x7c00);
    CHECK(f32ToF16(std::nextafter(65520.0f, 0.0f)) == 0x7bff);
    CHECK(f32ToF16(-65520.0f) == 0xfc00);
    CHECK(f32ToF16(std::numeric_limits<float>::max()) == 0x7c00);
    CHECK(f32ToF16(INFINITY) == 0x7c00);
    CHECK(f32ToF16(-INFINITY) == 0xfc00);
    // Below half the smallest subnormal: flush to a signed zero; the exact half is a tie to 0.
    CHECK(f32ToF16(0x1p-25f) == 0x0000);
    CHECK(f32ToF16(std::nextafter(0x1p-25f, 1.0f)) == 0x0001);
    CHECK(f32ToF16(-0x1p-26f) == 0x8000);
    CHECK(f32ToF16(0.0f) == 0x0000);
    CHECK(f32ToF16(-0.0f) == 0x8000);
    CHECK(f32ToF16(std::numeric_limits<float>::denorm_min()) == 0x0000);
    CHECK(f32ToF16(0x1.8p-24f) == 0x0002);  // 1.5 ulp -> 2 (even)
    CHECK(f32ToF16(0x1.4p-24f) == 0x0001);
}

TEST_CASE("reduce kernels: f32 to bfloat16 rounds ties to even at every pair of neighbours") {
    for (uint32_t h = 0; h < 0x7f7f; ++h) {
        const double lo = refBf16ToDouble(static_cast<uint16_t>(h)), hi = refBf16ToDouble(static_cast<uint16_t>(h + 1));
        const float mid = static_cast<float>((lo + hi) / 2);
        REQUIRE(static_cast<double>(mid) == (lo + hi) / 2);
        const uint16_t even = (h & 1) ? static_cast<uint16_t>(h + 1) : static_cast<uint16_t>(h);
        INFO("between 0x" << std::hex << h << " and 0x" << h + 1);
        REQUIRE(f32ToBf16(mid) == even);
        REQUIRE(f32ToBf16(-mid) == (even | 0x8000));
        REQUIRE(f32ToBf16(std::nextafter(mid, 0.0f)) == h);
        REQUIRE(f32ToBf16(std::nextafter(mid, INFINITY)) == h + 1);
    }
    // Between the largest finite bf16 and 2^128: the tie and above round to Inf.
    CHECK(f32ToBf16(std::bit_cast<float>(0x7f7f8000u)) == 0x7f80);
    CHECK(f32ToBf16(std::bit_cast<float>(0x7f7f7fffu)) == 0x7f7f);
    CHECK(f32ToBf16(std::numeric_limits<float>::max()) == 0x7f80);
    CHECK(f32ToBf16(-std::numeric_limits<float>::max()) == 0xff80);
    CHECK(f32ToBf16(INFINITY) == 0x7f80);
    CHECK(f32ToBf16(-0.0f) == 0x8000);
    // f32 subnormals round correctly too.
    CHECK(f32ToBf16(std::numeric_limits<float>::denorm_min()) == 0x0000);
    CHECK(f32ToBf16(std::bit_cast<float>(0x00018000u)) == 0x0002);
    CHECK(f32ToBf16(std::bit_cast<float>(0x00008001u)) == 0x0001);
}

TEST_CASE("reduce kernels: f32 to float16 and bfloat16 match the reference rounding on random inputs") {
    std::mt19937_64 rng(42);
    for (int i = 0; i < 400000; ++i) {
        uint32_t u = static_cast<uint32_t>(rng());
        if (i % 2 == 0) {
            // Concentrate on the f16 range: biased exponents 90..150 (f16 subnormals to overflow).
            const uint32_t e = 90 + static_cast<uint32_t>(rng() % 61);
            u = (u & 0x807fffffu) | (e << 23);
        }
        const float f = std::bit_cast<float>(u);
        INFO("f32 0x" << std::hex << u);
        if (std::isnan(f)) {
            REQUIRE(f16IsNan(f32ToF16(f)));
            REQUIRE(bf16IsNan(f32ToBf16(f)));
        } else {
            REQUIRE(f32ToF16(f) == refF32ToF16(f));
            REQUIRE(f32ToBf16(f) == refF32ToBf16(f));
        }
    }
}

TEST_CASE("reduce kernels: NaN conversions stay NaN and quiet NaN payloads are kept") {
    // f32 quiet NaN with payload: the top payload bits survive, the quiet bit stays set.
    CHECK(f32ToF16(std::bit_cast<float>(0x7fc00000u)) == 0x7e00);
    CHECK(f32ToF16(std::bit_cast<float>(0xffc02000u)) == 0xfe01);
    CHECK(f32ToBf16(std::bit_cast<float>(0x7fc10000u)) == 0x7fc1);
    CHECK(f32ToBf16(std::bit_cast<float>(0xffffffffu)) == 0xffff);
    // Signalling NaNs whose payload lives only in the low bits must not become Inf.
    CHECK(f16IsNan(f32ToF16(std::bit_cast<float>(0x7f800001u))));
    CHECK(bf16IsNan(f32ToBf16(std::bit_cast<float>(0x7f800001u))));
    CHECK(bf16IsNan(f32ToBf16(std::bit_cast<float>(0xff800001u))));
    // Quiet NaNs widen to quiet f32 NaNs.
    CHECK((std::bit_cast<uint32_t>(f16ToF32(0x7e00)) & 0x7fc00000u) == 0x7fc00000u);
    CHECK((std::bit_cast<uint32_t>(bf16ToF32(0xffc0)) & 0xffc00000u) == 0xffc00000u);
}
