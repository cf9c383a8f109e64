// pccl-bench: options, data types, sizes and the verification pattern.
#include "bench_common.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <bit>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>

#include "util/dtype.h"

namespace bench {

// ------------------------------------------------------------------ data types and ops

namespace {

// The library's data-type table (util/dtype.h), in the order --help lists the types.
DType fromTable(pcclDataType_t id) {
    const pccl::DataTypeInfo &d = *pccl::dataTypeInfo(id);
    const Kind kind = d.isFloat() ? Kind::Float : d.isSigned() ? Kind::Signed : Kind::Unsigned;
    return {d.name, {d.shortName, d.aliases[0], d.aliases[1]}, d.id, d.size, kind};
}

const DType kDTypes[] = {
    fromTable(pcclFloat),  fromTable(pcclFloat16), fromTable(pcclBFloat16), fromTable(pcclDouble),
    fromTable(pcclInt8),   fromTable(pcclUint8),   fromTable(pcclInt16),    fromTable(pcclUint16),
    fromTable(pcclInt32),  fromTable(pcclUint32),  fromTable(pcclInt64),    fromTable(pcclUint64),
};
static_assert(std::size(kDTypes) == pccl::kDataTypes.size());

// Floats: one unit in the last place at 1.0; integers: 0 (they are compared exactly).
double ulpOf(const DType &dt) { return dt.kind == Kind::Float ? pccl::dataTypeInfo(dt.id)->epsilon() : 0; }

const RedOp kOps[] = {
    {"sum", pcclSum}, {"avg", pcclAvg}, {"prod", pcclProd}, {"max", pcclMax}, {"min", pcclMin},
};

std::string lower(std::string_view s) {
    std::string out(s);
    for (auto &c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

}  // namespace

const DType *findDType(std::string_view name) {
    const pccl::DataTypeInfo *t = pccl::findDataType(name);
    for (const auto &d : kDTypes)
        if (t && d.id == t->id) return &d;
    return nullptr;
}

const RedOp *findOp(std::string_view name) {
    std::string n = lower(name);
    if (n == "product") n = "prod";
    if (n == "mean" || n == "average") n = "avg";
    for (const auto &o : kOps)
        if (n == o.name) return &o;
    return nullptr;
}

std::string knownDTypes() {
    std::string s;
    for (const auto &d : kDTypes) s += (s.empty() ? "" : "|") + std::string(d.aliases[0]);
    return s;
}

std::string knownOps() {
    std::string s;
    for (const auto &o : kOps) s += (s.empty() ? "" : "|") + std::string(o.name);
    return s;
}

// ------------------------------------------------------------------ sizes and plans

std::optional<uint64_t> parseSize(std::string_view text) {
    if (text.empty()) return std::nullopt;
    uint64_t value = 0;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || p == text.data()) return std::nullopt;
    std::string suffix = lower(std::string_view(p, size_t(text.data() + text.size() - p)));
    uint64_t mult = 1;
    if (!suffix.empty()) {
        const char unit = suffix[0];
        const std::string rest = suffix.substr(1);
        if (unit == 'b') {
            if (!rest.empty()) return std::nullopt;
        } else {
            if (unit == 'k') mult = 1ull << 10;
            else if (unit == 'm') mult = 1ull << 20;
            else if (unit == 'g') mult = 1ull << 30;
            else return std::nullopt;
            if (!(rest.empty() || rest == "b" || rest == "ib")) return std::nullopt;
        }
    }
    if (value > (uint64_t(1) << 40) / mult) return std::nullopt;
    return value * mult;
}

std::optional<std::vector<uint64_t>> parseSizes(std::string_view text) {
    std::vector<uint64_t> out;
    if (text.find(':') != std::string_view::npos) {
        std::vector<std::string_view> parts;
        size_t start = 0;
        while (true) {
            size_t pos = text.find(':', start);
            parts.push_back(text.substr(start, pos == std::string_view::npos ? std::string_view::npos : pos - start));
            if (pos == std::string_view::npos) break;
            start = pos + 1;
        }
        if (parts.size() < 2 || parts.size() > 3) return std::nullopt;
        auto lo = parseSize(parts[0]), hi = parseSize(parts[1]);
        uint64_t factor = 2;
        if (parts.size() == 3) {
            auto f = parseSize(parts[2]);
            if (!f || *f < 2) return std::nullopt;
            factor = *f;
        }
        if (!lo || !hi || *lo == 0 || *lo > *hi) return std::nullopt;
        for (uint64_t s = *lo; s <= *hi; s *= factor) {
            out.push_back(s);
            if (s > *hi / factor) break;
        }
        return out;
    }
    size_t start = 0;
    while (start <= text.size()) {
        size_t pos = text.find(',', start);
        auto item = text.substr(start, pos == std::string_view::npos ? std::string_view::npos : pos - start);
        auto v = parseSize(item);
        if (!v || *v == 0) return std::nullopt;
        out.push_back(*v);
        if (pos == std::string_view::npos) break;
        start = pos + 1;
    }
    return out;
}

std::optional<std::vector<int>> parseIntList(std::string_view text) {
    std::vector<int> out;
    size_t start = 0;
    while (start <= text.size()) {
        size_t pos = text.find(',', start);
        auto item = text.substr(start, pos == std::string_view::npos ? std::string_view::npos : pos - start);
        int v = 0;
        auto [p, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
        if (ec != std::errc() || p != item.data() + item.size() || item.empty()) return std::nullopt;
        out.push_back(v);
        if (pos == std::string_view::npos) break;
        start = pos + 1;
    }
    return out;
}

std::string formatSize(uint64_t bytes) {
    static const char *units[] = {"B", "KiB", "MiB", "GiB"};
    int u = 0;
    uint64_t v = bytes;
    while (u < 3 && v >= 1024 && v % 1024 == 0) {
        v /= 1024;
        ++u;
    }
    return std::to_string(v) + " " + units[u];
}

std::string formatPlan(const std::vector<PlanEntry> &plan) {
    std::string s;
    for (const auto &e : plan) {
        if (!s.empty()) s += ',';
        s += std::to_string(e.bytes) + ":" + std::to_string(e.warmup) + ":" + std::to_string(e.iters);
    }
    return s;
}

std::optional<std::vector<PlanEntry>> parsePlan(std::string_view text) {
    std::vector<PlanEntry> plan;
    size_t start = 0;
    while (start < text.size()) {
        size_t pos = text.find(',', start);
        auto item = text.substr(start, pos == std::string_view::npos ? std::string_view::npos : pos - start);
        PlanEntry e;
        unsigned long long b = 0;
        if (std::sscanf(std::string(item).c_str(), "%llu:%d:%d", &b, &e.warmup, &e.iters) != 3) return std::nullopt;
        e.bytes = b;
        if (e.bytes == 0 || e.warmup < 0 || e.iters < 1) return std::nullopt;
        plan.push_back(e);
        if (pos == std::string_view::npos) break;
        start = pos + 1;
    }
    if (plan.empty()) return std::nullopt;
    return plan;
}

int autoIters(uint64_t bytes) {
    const uint64_t budget = 256ull << 20;  // about 256 MiB of payload per size and mode
    const uint64_t n = bytes == 0 ? 20 : budget / bytes;
    return int(std::clamp<uint64_t>(n, 3, 20));
}

int autoWarmup(int iters) { return std::clamp(iters / 4, 1, 5); }

// ------------------------------------------------------------------ encodings

namespace {

uint16_t floatToHalf(float f) {
    const uint32_t x = std::bit_cast<uint32_t>(f);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u)  // inf or nan
        return uint16_t(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0u));
    if (absx >= 0x477ff000u)  // rounds to >= 65520: overflow to inf
        return uint16_t(sign | 0x7c00u);
    if (absx < 0x38800000u) {  // below the smallest normal half: subnormal or zero
        if (absx < 0x33000000u) return uint16_t(sign);  // < 2^-25 rounds to zero
        // value = mant * 2^(exp-150); in half subnormal units of 2^-24: mant * 2^(exp-126)
        const uint32_t exp = absx >> 23;
        const uint32_t mant = (absx & 0x7fffffu) | 0x800000u;
        const uint32_t rshift = 126 - exp;  // in [14, 24]
        uint32_t q = mant >> rshift;
        const uint32_t rem = mant & ((1u << rshift) - 1);
        const uint32_t half = 1u << (rshift - 1);
        if (rem > half || (rem == half && (q & 1))) ++q;
        return uint16_t(sign | q);
    }
    // normal: rebias exponent (127 -> 15) and round 23 -> 10 mantissa bits, ties to even
    uint32_t h = ((absx - 0x38000000u) >> 13);
    const uint32_t rem = absx & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) ++h;
    return uint16_t(sign | h);
}

float halfToFloat(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    const uint32_t mant = h & 0x3ffu;
    if (exp == 0) {
        const float v = std::ldexp(float(mant), -24);
        return sign ? -v : v;
    }
    if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));
    return std::bit_cast<float>(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t floatToBf16(float f) {
    const uint32_t x = std::bit_cast<uint32_t>(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40u);
    const uint32_t rounding = 0x7fffu + ((x >> 16) & 1u);
    return uint16_t((x + rounding) >> 16);
}

float bf16ToFloat(uint16_t b) { return std::bit_cast<float>(uint32_t(b) << 16); }

void encodeInt(uint8_t *dst, const DType &dt, uint64_t v) {
    for (size_t i = 0; i < dt.size; ++i) dst[i] = uint8_t(v >> (8 * i));  // little endian
}

void encodeFloat(uint8_t *dst, const DType &dt, double v) {
    switch (dt.id) {
    case pcclFloat: {
        const float f = float(v);
        std::memcpy(dst, &f, 4);
        break;
    }
    case pcclDouble: std::memcpy(dst, &v, 8); break;
    case pcclFloat16: {
        const uint16_t h = floatToHalf(float(v));
        std::memcpy(dst, &h, 2);
        break;
    }
    case pcclBFloat16: {
        const uint16_t b = floatToBf16(float(v));
        std::memcpy(dst, &b, 2);
        break;
    }
    default: break;
    }
}

// Prod uses factors 1, -1 and 2 (2 in one case of eight) so the product stays small.
constexpr int kProdMap[16] = {1, 1, 1, -1, 2, 1, -1, 1, 1, 1, -1, 1, 2, 1, 1, -1};

}  // namespace

double decodeElement(const uint8_t *p, const DType &dt) {
    switch (dt.id) {
    case pcclFloat: {
        float f;
        std::memcpy(&f, p, 4);
        return f;
    }
    case pcclDouble: {
        double d;
        std::memcpy(&d, p, 8);
        return d;
    }
    case pcclFloat16: {
        uint16_t h;
        std::memcpy(&h, p, 2);
        return halfToFloat(h);
    }
    case pcclBFloat16: {
        uint16_t b;
        std::memcpy(&b, p, 2);
        return bf16ToFloat(b);
    }
    default: break;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < dt.size; ++i) v |= uint64_t(p[i]) << (8 * i);
    if (dt.kind == Kind::Signed && dt.size < 8) {
        const unsigned shift = unsigned(64 - 8 * dt.size);
        return double(int64_t(v << shift) >> shift);
    }
    return dt.kind == Kind::Signed ? double(int64_t(v)) : double(v);
}

// ------------------------------------------------------------------ pattern

int rawValue(uint64_t seed, int rank, uint64_t k) {
    k %= kPeriod;
    const uint64_t x = k * k * 31 + k * 7 + uint64_t(rank) * 1013 + (seed % kPeriod) * 7919;
    return int((x % kPeriod) % 16);
}

int64_t inputValue(const DType &dt, const RedOp &op, uint64_t seed, int rank, uint64_t k) {
    const int r = rawValue(seed, rank, k);
    if (op.id == pcclProd) {
        const int v = kProdMap[r];
        return dt.kind == Kind::Unsigned ? std::abs(v) : v;
    }
    return dt.kind == Kind::Unsigned ? r : r - 8;
}

std::vector<uint8_t> inputTable(const DType &dt, const RedOp &op, uint64_t seed, int rank) {
    std::vector<uint8_t> t(kPeriod * dt.size);
    for (uint64_t k = 0; k < kPeriod; ++k) {
        const int64_t v = inputValue(dt, op, seed, rank, k);
        if (dt.kind == Kind::Float) encodeFloat(&t[k * dt.size], dt, double(v));
        else encodeInt(&t[k * dt.size], dt, uint64_t(v));
    }
    return t;
}

std::vector<uint8_t> expectedTable(const DType &dt, const RedOp &op, uint64_t seed, int world) {
    std::vector<uint8_t> t(kPeriod * dt.size);
    for (uint64_t k = 0; k < kPeriod; ++k) {
        uint8_t *dst = &t[k * dt.size];
        if (dt.kind == Kind::Float) {
            double acc = op.id == pcclProd ? 1.0 : 0.0;
            for (int r = 0; r < world; ++r) {
                const double v = double(inputValue(dt, op, seed, r, k));
                if (r == 0 && (op.id == pcclMax || op.id == pcclMin)) acc = v;
                switch (op.id) {
                case pcclSum:
                case pcclAvg: acc += v; break;
                case pcclProd: acc *= v; break;
                case pcclMax: acc = std::max(acc, v); break;
                case pcclMin: acc = std::min(acc, v); break;
                }
            }
            if (op.id == pcclAvg) {
                // f16/bf16/f32: the exact sum in f32 divided by the peer count, rounded once.
                if (dt.id == pcclDouble) acc = acc / double(world);
                else acc = double(float(acc) / float(world));
            }
            encodeFloat(dst, dt, acc);
        } else {
            uint64_t acc = op.id == pcclProd ? 1 : 0;  // sums and products wrap modulo 2^64
            int64_t sacc = 0;
            for (int r = 0; r < world; ++r) {
                const int64_t v = inputValue(dt, op, seed, r, k);
                if (r == 0 && (op.id == pcclMax || op.id == pcclMin)) sacc = v;
                switch (op.id) {
                case pcclSum: acc += uint64_t(v); break;
                case pcclAvg: sacc += v; break;
                case pcclProd: acc *= uint64_t(v); break;
                case pcclMax: sacc = std::max(sacc, v); break;
                case pcclMin: sacc = std::min(sacc, v); break;
                }
            }
            if (op.id == pcclAvg) acc = uint64_t(sacc / int64_t(world));  // truncating division
            else if (op.id == pcclMax || op.id == pcclMin) acc = uint64_t(sacc);
            encodeInt(dst, dt, acc);
        }
    }
    return t;
}

void fillFromTable(uint8_t *buf, size_t count, const DType &dt, const std::vector<uint8_t> &table) {
    size_t i = 0;
    while (i < count) {
        const size_t n = std::min<size_t>(kPeriod, count - i);
        std::memcpy(buf + i * dt.size, table.data(), n * dt.size);
        i += n;
    }
}

CheckResult checkAgainstTable(const uint8_t *buf, size_t count, const DType &dt, const RedOp &op,
                              const std::vector<uint8_t> &table, double abs_tol) {
    CheckResult res;
    bool seen = false;
    const bool tolerant = dt.kind == Kind::Float && op.id == pcclAvg;
    const double ulp = ulpOf(dt);
    for (size_t i = 0; i < count; i += kPeriod) {
        const size_t n = std::min<size_t>(kPeriod, count - i);
        const uint8_t *blk = buf + i * dt.size;
        if (std::memcmp(blk, table.data(), n * dt.size) == 0) continue;
        for (size_t j = 0; j < n; ++j) {
            const uint8_t *g = blk + j * dt.size;
            const uint8_t *e = table.data() + j * dt.size;
            if (std::memcmp(g, e, dt.size) == 0) continue;
            const double gv = decodeElement(g, dt), ev = decodeElement(e, dt);
            // one ulp of the larger binade: |ev| rounded up to a power of two
            const double scale = ev == 0 ? 0x1p-126 : std::exp2(std::ceil(std::log2(std::fabs(ev))));
            const bool close = (tolerant && std::fabs(gv - ev) <= ulp * scale) ||
                               (abs_tol > 0 && std::fabs(gv - ev) <= abs_tol);
            if (close) ++res.inexact;
            else ++res.bad;
            if (!seen || (!close && res.bad == 1)) {
                seen = true;
                res.first_bad = i + j;
                res.got = gv;
                res.expected = ev;
            }
        }
    }
    return res;
}

// ------------------------------------------------------------------ quantization

bool parseQuant(std::string_view text, pcclQuantizationAlgorithm_t &algo, pcclDataType_t &type) {
    const std::string t = lower(text);
    if (t == "none" || t.empty()) {
        algo = pcclQuantNone;
        return true;
    }
    const auto colon = t.find(':');
    if (colon == std::string::npos) return false;
    const std::string a = t.substr(0, colon), q = t.substr(colon + 1);
    if (a == "minmax" || a == "min-max") algo = pcclQuantMinMax;
    else if (a == "zps" || a == "zeropointscale" || a == "zero-point-scale") algo = pcclQuantZeroPointScale;
    else return false;
    if (q == "u8" || q == "uint8") type = pcclUint8;
    else if (q == "u16" || q == "uint16") type = pcclUint16;
    else return false;
    return true;
}

std::string formatQuant(pcclQuantizationAlgorithm_t algo, pcclDataType_t type) {
    if (algo == pcclQuantNone) return "none";
    return std::string(algo == pcclQuantMinMax ? "minmax" : "zps") + (type == pcclUint16 ? ":u16" : ":u8");
}

double quantErrorBound(const DType &dt, const RedOp &op, pcclQuantizationAlgorithm_t algo, pcclDataType_t qtype,
                       int world) {
    if (algo == pcclQuantNone || world < 2 || dt.kind != Kind::Float) return 0;
    const double levels = qtype == pcclUint16 ? 65536.0 - 3 : 256.0 - 3;  // L; step = range / (L - 1)
    const double lo = -8, hi = 7;  // inputValue() of float types for sum/avg/max/min
    const bool additive = op.id == pcclSum || op.id == pcclAvg;
    // Width of the values quantized at one hop: max - min (min-max) or 2 max|x| (zero-point).
    auto width = [&](double k, double err) {
        const double a = additive ? k * lo : lo, b = additive ? k * hi : hi;
        if (algo == pcclQuantMinMax) return (b - a) + 2 * err;
        return 2 * (std::max(std::fabs(a), std::fabs(b)) + err);
    };
    double err = 0;
    for (int k = 1; k < world; ++k) err += width(k, err) / (2 * (levels - 1));  // reduce-scatter hops
    double d = op.id == pcclAvg ? double(world) : 1.0;  // the owner divides before the all-gather
    err /= d;
    const double fin = width(world, err * d) / d;
    err += fin / (2 * (levels - 1));
    const double mag = (additive ? world * 8.0 : 8.0) / d;
    const double ulp = ulpOf(dt);
    // f32 accumulation (a few roundings per hop) and the output's own rounding: one ulp of the
    // largest magnitude per hop is generous.
    return err + (world + 1) * 0x1p-23 * mag * 2 + ulp * std::exp2(std::ceil(std::log2(mag + err)));
}

uint64_t hashBytes(const uint8_t *p, size_t n) {
    // Four independent multiply-xorshift lanes over 8-byte words (fast on 256 MiB), then the
    // tail and the length. Not cryptographic: it detects ranks whose outputs differ.
    uint64_t h[4] = {0x9E3779B97F4A7C15ull, 0xC2B2AE3D27D4EB4Full, 0x165667B19E3779F9ull, 0x27D4EB2F165667C5ull};
    const uint64_t m = 0xff51afd7ed558ccdull;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        for (int l = 0; l < 4; ++l) {
            uint64_t w;
            std::memcpy(&w, p + i + 8 * l, 8);
            h[l] = (h[l] ^ w) * m;
            h[l] ^= h[l] >> 29;
        }
    }
    uint64_t acc = uint64_t(n) * m;
    for (; i < n; ++i) acc = (acc ^ p[i]) * 0x100000001b3ull;
    for (int l = 0; l < 4; ++l) acc = (acc ^ h[l]) * m, acc ^= acc >> 31;
    return acc;
}

// ------------------------------------------------------------------ options

bool parseIPv4(const std::string &text, uint8_t out[4]) {
    in_addr a{};
    if (inet_pton(AF_INET, text.c_str(), &a) != 1) return false;
    std::memcpy(out, &a.s_addr, 4);  // network order: most significant byte first
    return true;
}

namespace {

}  // namespace

bool validColl(const std::string &coll) {
    return coll == "allreduce" || coll == "allgather" || coll == "reducescatter" || coll == "broadcast";
}

double busFactor(const std::string &coll, int world) {
    if (world <= 1) return 0.0;
    if (coll == "allreduce") return 2.0 * (world - 1) / world;
    if (coll == "broadcast") return 1.0;
    return double(world - 1) / world;
}

size_t collCount(const std::string &coll, uint64_t bytes, size_t dtypeSize, int world) {
    const size_t n = std::max<size_t>(1, bytes / dtypeSize);
    if (coll != "allgather" && coll != "reducescatter") return n;
    const size_t w = size_t(std::max(1, world));
    return std::max<size_t>(1, n / w) * w;
}

namespace {

void usage(FILE *out) {
    std::fprintf(out,
                 "usage: pccl-bench [options]\n"
                 "  all-reduce benchmark over N local worker processes and an embedded master\n"
                 "  --sizes LIST      1K:256M (powers of two; a:b:f for factor f) or 1K,64K,1M\n"
                 "                    (default 1K,64K,1M,16M,256M)\n"
                 "  --peers LIST      world sizes to sweep, 2..64 (default 2,3,4)\n"
                 "  --pool LIST       p2p connection pool sizes to sweep (default 4)\n"
                 "  --iters N         timed iterations per size (default: 20 down to 3 at large sizes)\n"
                 "  --warmup N        warm-up iterations per size (default: iters/4, 1..5)\n"
                 "  --dtype T         %s (default f32)\n"
                 "  --op OP           %s (default sum)\n"
                 "  --inplace         sendbuf == recvbuf (all-gather/reduce-scatter: the rank's block)\n"
                 "  --coll C          allreduce | allgather | reducescatter | broadcast (default allreduce);\n"
                 "                    sizes are the whole buffer; busbw factor 2(N-1)/N, (N-1)/N or 1\n"
                 "  --seed N          data pattern seed (default 1)\n"
                 "  --gloo / --no-gloo  also run torch.distributed gloo (default: if torch imports)\n"
                 "  --csv             machine-readable output\n"
                 "  --timeout SEC     inactivity deadline per run, plus a per-size allowance (default 60)\n"
                 "  --barrier MODE    pending (vote, then update if peers pend) | update (default pending)\n"
                 "  --python EXE      python for the gloo comparison (default python3)\n"
                 "  --gloo-script F   path of gloo_allreduce.py\n"
                 "  --verbose         forward workers' unparsed output\n"
                 "  --rss             print each worker's RSS before and after the timed iterations\n"
                 "                    (a leak per operation: --sizes 64K --iters 100000 --rss)\n"
                 "  --master-addr IP  IPv4 address the master listens on and workers connect to\n"
                 "                    (default 127.0.0.1)\n"
                 "  --launch PREFIX   run each worker as PREFIX... pccl-bench --worker ...; words split on\n"
                 "                    spaces, the first an absolute path, {rank} replaced by the rank\n"
                 "                    (bench/wan/wan.py allreduce: one network namespace per rank)\n"
                 "  --quant ALGO:TYPE quantized all-reduce: minmax|zps : u8|u16 (default none); the check\n"
                 "                    then allows the documented error bound (ok~) and every rank's\n"
                 "                    output must still be byte-identical (hash compared)\n"
                 "  --optimize        every worker calls pcclOptimizeTopology once before the sizes\n"
                 "  --join-order MODE concurrent (default: ring in arrival order) | sequential (worker r+1\n"
                 "                    starts once worker r is admitted: ring 0,1,...,N-1)\n"
                 "  --wan PROFILE     run this sweep over emulated WAN links: execs\n"
                 "                    bench/wan/wan.py allreduce PROFILE with --peers/--sizes/--pool/--iters/\n"
                 "                    --warmup/--dtype/--quant/--optimize/--join-order (one peer count, one\n"
                 "                    size); prints busbw as a fraction of the link ceiling. Needs root.\n"
                 "  --wan-args \"...\" more arguments for wan.py allreduce (e.g. \"--rate-scale 0.33\")\n",
                 knownDTypes().c_str(), knownOps().c_str());
}

}  // namespace

std::optional<Options> parseOptions(int argc, char **argv) {
    Options o;
    o.dtype = findDType("float32");
    o.op = findOp("sum");
#ifdef PCCL_BENCH_GLOO_SCRIPT
    o.gloo_script = PCCL_BENCH_GLOO_SCRIPT;
#endif
    if (const char *s = std::getenv("PCCL_BENCH_GLOO_SCRIPT")) o.gloo_script = s;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        std::string val;
        bool has_inline = false;
        if (a.rfind("--", 0) == 0) {
            if (auto eq = a.find('='); eq != std::string::npos) {
                val = a.substr(eq + 1);
                a = a.substr(0, eq);
                has_inline = true;
            }
        }
        auto next = [&](std::string &out) -> bool {
            if (has_inline) {
                out = val;
                return true;
            }
            if (i + 1 >= argc) {
                std::fprintf(stderr, "pccl-bench: %s needs a value\n", a.c_str());
                return false;
            }
            out = argv[++i];
            return true;
        };
        auto bad = [&](const std::string &v) {
            std::fprintf(stderr, "pccl-bench: bad value for %s: '%s'\n", a.c_str(), v.c_str());
            return std::nullopt;
        };
        auto toInt = [](const std::string &s, long long lo, long long hi) -> std::optional<long long> {
            long long v = 0;
            auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
            if (ec != std::errc() || p != s.data() + s.size() || s.empty() || v < lo || v > hi) return std::nullopt;
            return v;
        };
        std::string v;
        if (a == "-h" || a == "--help") {
            usage(stdout);
            std::exit(0);
        } else if (a == "--sizes" || a == "-b") {
            if (!next(v)) return std::nullopt;
            auto s = parseSizes(v);
            if (!s || s->empty()) return bad(v);
            o.sizes = *s;
        } else if (a == "--peers" || a == "-n") {
            if (!next(v)) return std::nullopt;
            auto s = parseIntList(v);
            // An all-reduce needs two peers (a lone peer gets pcclTooFewPeers).
            if (!s || s->empty() || std::any_of(s->begin(), s->end(), [](int x) { return x < 2 || x > 64; }))
                return bad(v);
            o.peers = *s;
        } else if (a == "--pool") {
            if (!next(v)) return std::nullopt;
            auto s = parseIntList(v);
            if (!s || s->empty() || std::any_of(s->begin(), s->end(), [](int x) { return x < 0 || x > 256; }))
                return bad(v);
            o.pools = *s;
        } else if (a == "--iters") {
            if (!next(v)) return std::nullopt;
            auto n = toInt(v, 1, 1000000);
            if (!n) return bad(v);
            o.iters = int(*n);
        } else if (a == "--warmup") {
            if (!next(v)) return std::nullopt;
            auto n = toInt(v, 0, 1000000);
            if (!n) return bad(v);
            o.warmup = int(*n);
        } else if (a == "--dtype") {
            if (!next(v)) return std::nullopt;
            o.dtype = findDType(v);
            if (!o.dtype) return bad(v);
        } else if (a == "--op") {
            if (!next(v)) return std::nullopt;
            o.op = findOp(v);
            if (!o.op) return bad(v);
        } else if (a == "--inplace") {
            o.inplace = true;
        } else if (a == "--coll") {
            if (!next(v)) return std::nullopt;
            if (!validColl(v)) return bad(v);
            o.coll = v;
        } else if (a == "--seed") {
            if (!next(v)) return std::nullopt;
            auto n = toInt(v, 0, (1ll << 62));
            if (!n) return bad(v);
            o.seed = uint64_t(*n);
        } else if (a == "--gloo") {
            o.gloo = 1;
        } else if (a == "--no-gloo") {
            o.gloo = 0;
        } else if (a == "--csv") {
            o.csv = true;
        } else if (a == "--rss") {
            o.rss = true;
        } else if (a == "--verbose" || a == "-v") {
            o.verbose = true;
        } else if (a == "--timeout") {
            if (!next(v)) return std::nullopt;
            char *end = nullptr;
            o.timeout_s = std::strtod(v.c_str(), &end);
            if (!end || *end || !(o.timeout_s > 0)) return bad(v);
        } else if (a == "--barrier") {
            if (!next(v)) return std::nullopt;
            if (v != "pending" && v != "update") return bad(v);
            o.barrier = v;
        } else if (a == "--python") {
            if (!next(o.python)) return std::nullopt;
        } else if (a == "--gloo-script") {
            if (!next(o.gloo_script)) return std::nullopt;
        } else if (a == "--master-addr") {
            if (!next(v)) return std::nullopt;
            uint8_t ip[4];
            if (!parseIPv4(v, ip)) return bad(v);
            o.master_addr = v;
        } else if (a == "--launch") {
            if (!next(v)) return std::nullopt;
            if (v.empty() || v[0] != '/') return bad(v);
            o.launch = v;
        } else if (a == "--quant") {
            if (!next(v)) return std::nullopt;
            if (!parseQuant(v, o.quant, o.quant_type)) return bad(v);
        } else if (a == "--optimize") {
            o.optimize = true;
        } else if (a == "--join-order") {
            if (!next(v)) return std::nullopt;
            if (v != "concurrent" && v != "sequential") return bad(v);
            o.sequential_join = v == "sequential";
        } else if (a == "--wan") {
            if (!next(o.wan_profile)) return std::nullopt;
        } else if (a == "--wan-args") {
            if (!next(o.wan_args)) return std::nullopt;
        } else if (a == "--worker") {
            o.worker = true;
        } else if (a == "--rank") {
            if (!next(v)) return std::nullopt;
            auto n = toInt(v, 0, 1 << 20);
            if (!n) return bad(v);
            o.rank = int(*n);
        } else if (a == "--world") {
            if (!next(v)) return std::nullopt;
            auto n = toInt(v, 1, 1 << 20);
            if (!n) return bad(v);
            o.world = int(*n);
        } else if (a == "--port") {
            if (!next(v)) return std::nullopt;
            auto n = toInt(v, 1, 65535);
            if (!n) return bad(v);
            o.port = int(*n);
        } else if (a == "--pool-size") {
            if (!next(v)) return std::nullopt;
            auto n = toInt(v, 0, 256);
            if (!n) return bad(v);
            o.pool = int(*n);
        } else if (a == "--plan") {
            if (!next(v)) return std::nullopt;
            auto p = parsePlan(v);
            if (!p) return bad(v);
            o.plan = *p;
        } else {
            std::fprintf(stderr, "pccl-bench: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return std::nullopt;
        }
    }
    if (o.worker && (o.world < 1 || o.port == 0 || o.plan.empty() || o.rank >= o.world)) {
        std::fprintf(stderr, "pccl-bench: --worker needs --rank, --world, --port and --plan\n");
        return std::nullopt;
    }
    return o;
}

}  // namespace bench
