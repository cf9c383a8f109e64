#include "collectives/quantize.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "collectives/float16.h"
#include "collectives/reduce_kernels.h"
#include "util/bytes.h"

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

void storeCode(const QuantSpec &s, uint8_t *codes, size_t i, uint32_t c) {
    if (s.quantized == pcclUint8) codes[i] = static_cast<uint8_t>(c);
    else storeLE16(codes + 2 * i, static_cast<uint16_t>(c));
}

uint32_t loadCode(const QuantSpec &s, const uint8_t *codes, size_t i) {
    return s.quantized == pcclUint8 ? codes[i] : loadLE16(codes + 2 * i);
}

template <class T>
void quantizeAs(const QuantSpec &s, const void *values, size_t n, uint8_t *wire) {
    const uint32_t L = levels(s), nan = L, posInf = L + 1, negInf = L + 2;
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    for (size_t i = 0; i < n; ++i) {
        const double x = loadValue<T>(values, i);
        if (!std::isfinite(x)) continue;
        lo = std::min(lo, x);
        hi = std::max(hi, x);
    }
    if (lo > hi) lo = hi = 0;  // no finite value
    double p0, step;
    if (s.algorithm == pcclQuantMinMax) {
        p0 = lo;
        step = (hi - lo) / (L - 1);
    } else {
        p0 = (L - 1) / 2;  // the zero point
        step = std::max(std::fabs(lo), std::fabs(hi)) / p0;
    }
    if (!std::isfinite(step)) step = std::numeric_limits<double>::max() / L;  // a range beyond f64: clamp
    storeF64(wire, p0);
    storeF64(wire + 8, step);
    uint8_t *codes = wire + kQuantHeaderBytes;
    for (size_t i = 0; i < n; ++i) {
        const double x = loadValue<T>(values, i);
        uint32_t c;
        if (std::isnan(x)) c = nan;
        else if (std::isinf(x)) c = x > 0 ? posInf : negInf;
        else {
            const double q = step == 0 ? (s.algorithm == pcclQuantMinMax ? 0 : p0)
                                       : std::nearbyint(s.algorithm == pcclQuantMinMax ? (x - p0) / step : x / step + p0);
            c = static_cast<uint32_t>(std::clamp(q, 0.0, static_cast<double>(L - 1)));
        }
        storeCode(s, codes, i, c);
    }
}

template <class T>
bool dequantizeAs(const QuantSpec &s, const uint8_t *wire, size_t n, void *out) {
    const uint32_t L = levels(s);
    const double p0 = loadF64(wire), step = loadF64(wire + 8);
    if (!std::isfinite(p0) || !std::isfinite(step)) return false;
    const uint8_t *codes = wire + kQuantHeaderBytes;
    for (size_t i = 0; i < n; ++i) {
        const uint32_t c = loadCode(s, codes, i);
        double v;
        if (c == L) v = std::numeric_limits<double>::quiet_NaN();
        else if (c == L + 1) v = std::numeric_limits<double>::infinity();
        else if (c >= L + 2) v = -std::numeric_limits<double>::infinity();
        else if (s.algorithm == pcclQuantMinMax) v = p0 + c * step;
        else v = (static_cast<double>(c) - p0) * step;
        storeValue<T>(out, i, static_cast<T>(v));
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
    if (spec.acc == pcclDouble) quantizeAs<double>(spec, values, n, wire);
    else quantizeAs<float>(spec, values, n, wire);
}

bool dequantize(const QuantSpec &spec, const uint8_t *wire, size_t n, void *out) {
    return spec.acc == pcclDouble ? dequantizeAs<double>(spec, wire, n, out) : dequantizeAs<float>(spec, wire, n, out);
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
