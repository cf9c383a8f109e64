// Quantized all-reduce segments (collectives/quantize.h): a peer decodes the header and codes its
// predecessor sent. Input: one mode byte, then the bytes. Mode bits: 0 the algorithm (MinMax,
// ZeroPointScale), 1 the codes (u8, u16), 2 the accumulation type (f32, f64), 3 what the bytes
// are: 0 a wire segment (16-byte header, then codes) to dequantize; 1 values to quantize and
// dequantize again. Checks: a segment decodes iff its header is finite, the three top codes are
// NaN, +Inf, -Inf and no other code is NaN; a quantized segment decodes, keeps every non-finite
// value and brings every finite one back within half a step (plus rounding, and the
// subnormal grid).
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "collectives/quantize.h"
#include "fuzz_check.h"
#include "util/bytes.h"

using namespace pccl;
using namespace pccl::collectives;

namespace {

double valueAt(const std::vector<uint8_t> &v, size_t i, bool f64) {
    if (f64) {
        double d;
        std::memcpy(&d, v.data() + i * 8, 8);
        return d;
    }
    float f;
    std::memcpy(&f, v.data() + i * 4, 4);
    return f;
}

void decodeWire(const QuantSpec &s, const uint8_t *data, size_t size) {
    const size_t code = s.quantized == pcclUint8 ? 1 : 2, acc = s.acc == pcclDouble ? 8 : 4;
    if (size < kQuantHeaderBytes) return;
    const size_t n = (size - kQuantHeaderBytes) / code;
    const std::vector<uint8_t> wire(data, data + quantizedBytes(s, n));  // exact size for ASan
    std::vector<uint8_t> out(n * acc);
    const bool ok = dequantize(s, wire.data(), n, out.data());
    const double p0 = std::bit_cast<double>(loadLE64(wire.data())), step = std::bit_cast<double>(loadLE64(wire.data() + 8));
    FUZZ_CHECK(ok == (std::isfinite(p0) && std::isfinite(step)));
    if (!ok) return;
    const uint32_t L = s.quantized == pcclUint8 ? 253u : 65533u;
    for (size_t i = 0; i < n; ++i) {
        const uint32_t c = code == 1 ? wire[kQuantHeaderBytes + i] : loadLE16(wire.data() + kQuantHeaderBytes + 2 * i);
        const double y = valueAt(out, i, acc == 8);
        if (c == L) FUZZ_CHECK(std::isnan(y));
        else if (c == L + 1) FUZZ_CHECK(y == std::numeric_limits<double>::infinity());
        else if (c > L + 1) FUZZ_CHECK(y == -std::numeric_limits<double>::infinity());
        else FUZZ_CHECK(!std::isnan(y));
    }
}

void roundTrip(const QuantSpec &s, const uint8_t *data, size_t size) {
    const bool f64 = s.acc == pcclDouble;
    const size_t acc = f64 ? 8 : 4, n = size / acc;
    const std::vector<uint8_t> values(data, data + n * acc);
    std::vector<uint8_t> wire(quantizedBytes(s, n)), out(n * acc);
    quantize(s, values.data(), n, wire.data());
    FUZZ_CHECK(dequantize(s, wire.data(), n, out.data()));
    const uint32_t L = s.quantized == pcclUint8 ? 253u : 65533u;
    const double step = std::bit_cast<double>(loadLE64(wire.data() + 8));
    const bool clamped = step == std::numeric_limits<double>::max() / L;  // a range beyond f64
    double maxAbs = 0;
    for (size_t i = 0; i < n; ++i)
        if (std::isfinite(valueAt(values, i, f64))) maxAbs = std::max(maxAbs, std::fabs(valueAt(values, i, f64)));
    const double eps = f64 ? 0x1p-52 : 0x1p-23;
    // The last term: an f32 result is rounded to the float grid, whose spacing among subnormals
    // is absolute; an f64 step below the smallest subnormal double rounds to 0 (ZeroPointScale of
    // values under L * 5e-324), and those values decode to 0.
    const double tiny = f64 ? L * std::numeric_limits<double>::denorm_min() : std::numeric_limits<float>::denorm_min();
    const double tol = 0.5 * step * (1 + 1e-9) + 4 * eps * maxAbs + tiny;
    for (size_t i = 0; i < n; ++i) {
        const double x = valueAt(values, i, f64), y = valueAt(out, i, f64);
        if (std::isnan(x)) FUZZ_CHECK(std::isnan(y));
        else if (std::isinf(x)) FUZZ_CHECK(y == x);
        else if (!clamped) FUZZ_CHECK(std::fabs(y - x) <= tol);
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const uint8_t mode = data[0];
    QuantSpec s;
    s.algorithm = mode & 1 ? pcclQuantZeroPointScale : pcclQuantMinMax;
    s.quantized = mode & 2 ? pcclUint16 : pcclUint8;
    s.acc = mode & 4 ? pcclDouble : pcclFloat;
    if (mode & 8) roundTrip(s, data + 1, size - 1);
    else decodeWire(s, data + 1, size - 1);
    return 0;
}
