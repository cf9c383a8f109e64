// Quantized segment encoding (collectives/quantize.h): round trips, error bounds, non-finite
// values, and which combinations are accepted.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "collectives/float16.h"
#include "collectives/quantize.h"

using namespace pccl;
using namespace pccl::collectives;

namespace {

template <class T>
std::vector<T> roundTrip(const QuantSpec &s, const std::vector<T> &x) {
    std::vector<uint8_t> wire(quantizedBytes(s, x.size()));
    quantize(s, x.data(), x.size(), wire.data());
    std::vector<T> y(x.size());
    REQUIRE(dequantize(s, wire.data(), x.size(), y.data()));
    return y;
}

double levelsOf(pcclDataType_t q) { return q == pcclUint8 ? 253 : 65533; }

} // namespace

TEMPLATE_TEST_CASE("quantize: every value comes back within half a step of the segment's range", "[quantize]", float,
                   double) {
    const pcclDataType_t acc = sizeof(TestType) == 8 ? pcclDouble : pcclFloat;
    std::mt19937 rng(7);
    for (auto algo : {pcclQuantMinMax, pcclQuantZeroPointScale})
        for (auto q : {pcclUint8, pcclUint16}) {
            const QuantSpec s{algo, q, acc};
            std::uniform_real_distribution<double> d(-3.0, 5.0);
            std::vector<TestType> x(4099);
            for (auto &v : x) v = static_cast<TestType>(d(rng));
            const auto y = roundTrip(s, x);
            const double lo = *std::min_element(x.begin(), x.end()), hi = *std::max_element(x.begin(), x.end());
            const double step = algo == pcclQuantMinMax ? (hi - lo) / (levelsOf(q) - 1)
                                                        : std::max(-lo, hi) / std::floor((levelsOf(q) - 1) / 2);
            double worst = 0;
            for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::fabs(double(y[i]) - double(x[i])));
            INFO("algorithm " << algo << ", quantized " << q);
            CHECK(worst <= step / 2 * (1 + 1e-6) + 1e-6 * std::fabs(hi));
            CHECK(worst > 0);  // it really is lossy
        }
}

TEST_CASE("quantize: NaN and infinities pass exactly; a constant segment and zero are exact", "[quantize]") {
    const float inf = std::numeric_limits<float>::infinity();
    for (auto algo : {pcclQuantMinMax, pcclQuantZeroPointScale})
        for (auto q : {pcclUint8, pcclUint16}) {
            const QuantSpec s{algo, q, pcclFloat};
            auto y = roundTrip<float>(s, {1.5f, std::nanf(""), inf, -inf, -2.0f, 0.0f});
            CHECK(std::isnan(y[1]));
            CHECK(y[2] == inf);
            CHECK(y[3] == -inf);
            CHECK(y[0] == Approx(1.5).margin(0.02));
            CHECK(y[4] == Approx(-2.0).margin(0.02));
            auto c = roundTrip<float>(s, {3.25f, 3.25f, 3.25f});
            if (algo == pcclQuantMinMax) CHECK(c == std::vector<float>{3.25f, 3.25f, 3.25f});
            auto z = roundTrip<float>(s, {0.0f, 0.0f});
            CHECK(z == std::vector<float>{0.0f, 0.0f});
            auto only = roundTrip<float>(s, {std::nanf(""), inf});
            CHECK(std::isnan(only[0]));
            CHECK(only[1] == inf);
        }
    // Zero-point-scale represents 0 exactly inside a mixed segment.
    auto y = roundTrip<float>({pcclQuantZeroPointScale, pcclUint8, pcclFloat}, {-1.0f, 0.0f, 0.7f});
    CHECK(y[1] == 0.0f);
    CHECK(y[0] == -1.0f);
}

TEST_CASE("quantize: values near the largest double stay finite (found by fuzz_quantize)", "[quantize]") {
    const double big = std::numeric_limits<double>::max();
    for (auto q : {pcclUint8, pcclUint16}) {
        INFO("quantized " << q);
        // MinMax over almost the whole double range: (L - 1) * step rounded past the largest double.
        auto y = roundTrip<double>({pcclQuantMinMax, q, pcclDouble}, {5.42898065481e-312, -2.7e-11, -big});
        for (double v : y) CHECK(std::isfinite(v));
        CHECK(y[2] == -big);
        // ZeroPointScale of the largest double: the zero point times the step rounded past it.
        y = roundTrip<double>({pcclQuantZeroPointScale, q, pcclDouble}, {big, 0.0, -big});
        for (double v : y) CHECK(std::isfinite(v));
        CHECK(y[0] == Approx(big));
        CHECK(y[2] == Approx(-big));
    }
}

TEST_CASE("quantize: the wire is codes plus a 16-byte header, and a non-finite header is rejected", "[quantize]") {
    const QuantSpec s8{pcclQuantMinMax, pcclUint8, pcclFloat}, s16{pcclQuantMinMax, pcclUint16, pcclFloat};
    CHECK(quantizedBytes(s8, 1000) == 16 + 1000);
    CHECK(quantizedBytes(s16, 1000) == 16 + 2000);
    std::vector<float> x{1, 2, 3};
    std::vector<uint8_t> wire(quantizedBytes(s8, 3), 0xff);  // header bytes all 0xff: NaN parameters
    std::vector<float> y(3);
    CHECK_FALSE(dequantize(s8, wire.data(), 3, y.data()));
    quantize(s8, x.data(), 3, wire.data());
    CHECK(dequantize(s8, wire.data(), 3, y.data()));
    // Decoding is a pure function of the bytes: twice the same bits.
    std::vector<float> y2(3);
    dequantize(s8, wire.data(), 3, y2.data());
    CHECK(std::memcmp(y.data(), y2.data(), sizeof(float) * 3) == 0);
}

namespace {

// The documented encoding (quantize.h), written plainly with nearbyint and branches: the
// vectorized kernels must give the same wire bytes and the same decoded bits.
template <class T>
std::vector<uint8_t> referenceWire(const QuantSpec &s, const T *x, size_t n) {
    const uint32_t L = s.quantized == pcclUint8 ? 253 : 65533;
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    for (size_t i = 0; i < n; ++i)
        if (std::isfinite(x[i])) lo = std::min<double>(lo, x[i]), hi = std::max<double>(hi, x[i]);
    if (lo > hi) lo = hi = 0;
    const bool mm = s.algorithm == pcclQuantMinMax;
    const double p0 = mm ? lo : (L - 1) / 2;
    double step = mm ? (hi - lo) / (L - 1) : std::max(std::fabs(lo), std::fabs(hi)) / p0;
    if (!std::isfinite(step)) step = std::numeric_limits<double>::max() / L;
    while (!std::isfinite(mm ? p0 + (L - 1) * step : (L - 1 - p0) * step)) step = std::nextafter(step, 0.0);
    std::vector<uint8_t> w(quantizedBytes(s, n));
    std::memcpy(w.data(), &p0, 8);
    std::memcpy(w.data() + 8, &step, 8);
    for (size_t i = 0; i < n; ++i) {
        const double v = x[i];
        uint32_t c;
        if (std::isnan(v)) c = L;
        else if (std::isinf(v)) c = v > 0 ? L + 1 : L + 2;
        else if (step == 0) c = mm ? 0 : static_cast<uint32_t>(p0);
        else c = static_cast<uint32_t>(std::clamp(std::nearbyint(mm ? (v - p0) / step : v / step + p0), 0.0, L - 1.0));
        if (s.quantized == pcclUint8) w[16 + i] = static_cast<uint8_t>(c);
        else w[16 + 2 * i] = static_cast<uint8_t>(c), w[17 + 2 * i] = static_cast<uint8_t>(c >> 8);
    }
    return w;
}

template <class T>
void checkAgainstReference(const std::vector<T> &values) {
    // One byte of misalignment as well: the kernels must not assume aligned buffers.
    std::vector<uint8_t> raw(values.size() * sizeof(T) + 1);
    T *x = reinterpret_cast<T *>(raw.data() + 1);
    std::memcpy(static_cast<void *>(x), values.data(), values.size() * sizeof(T));
    for (auto algo : {pcclQuantMinMax, pcclQuantZeroPointScale})
        for (auto q : {pcclUint8, pcclUint16}) {
            const QuantSpec s{algo, q, sizeof(T) == 8 ? pcclDouble : pcclFloat};
            const auto want = referenceWire(s, values.data(), values.size());
            std::vector<uint8_t> got(want.size() + 1);
            quantize(s, x, values.size(), got.data() + 1);
            INFO("algorithm " << algo << ", quantized " << q << ", " << values.size() << " values");
            CHECK(std::memcmp(got.data() + 1, want.data(), want.size()) == 0);
            std::vector<uint8_t> out(values.size() * sizeof(T) + 1);
            REQUIRE(dequantize(s, got.data() + 1, values.size(), out.data() + 1));
            double p0, step;
            std::memcpy(&p0, want.data(), 8);
            std::memcpy(&step, want.data() + 8, 8);
            const uint32_t L = q == pcclUint8 ? 253 : 65533;
            size_t mismatched = 0;
            for (size_t i = 0; i < values.size(); ++i) {
                const uint32_t c = q == pcclUint8 ? want[16 + i] : want[16 + 2 * i] | want[17 + 2 * i] << 8;
                T ref = c == L ? std::numeric_limits<T>::quiet_NaN()
                        : c == L + 1 ? std::numeric_limits<T>::infinity()
                        : c == L + 2 ? -std::numeric_limits<T>::infinity()
                        : static_cast<T>(algo == pcclQuantMinMax ? p0 + c * step : (c - p0) * step);
                mismatched += std::memcmp(&ref, out.data() + 1 + i * sizeof(T), sizeof(T)) != 0;
            }
            CHECK(mismatched == 0);
        }
}

template <class T>
std::vector<T> kernelInputs(uint32_t seed, size_t n) {
    std::mt19937 rng(seed);
    std::normal_distribution<double> d(0.5, 3.0);
    std::vector<T> x(n);
    for (auto &v : x) v = static_cast<T>(d(rng));
    return x;
}

} // namespace

TEMPLATE_TEST_CASE("quantize: the vectorized kernels give the documented codes and values bit for bit", "[quantize]",
                   float, double) {
    using T = TestType;
    const T inf = std::numeric_limits<T>::infinity(), nan = std::numeric_limits<T>::quiet_NaN();
    // Sizes around every vector width and tail; random values.
    for (size_t n : {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 1000, 4099}) checkAgainstReference(kernelInputs<T>(n, n));
    // Non-finite values among finite ones, at every lane position; signed zeros; extremes.
    auto x = kernelInputs<T>(99, 67);
    for (size_t i = 0; i < x.size(); i += 5) x[i] = nan;
    for (size_t i = 1; i < x.size(); i += 7) x[i] = inf;
    for (size_t i = 2; i < x.size(); i += 11) x[i] = -inf;
    x[3] = T(-0.0);
    x[4] = T(0.0);
    x[6] = std::numeric_limits<T>::lowest();
    checkAgainstReference(x);
    checkAgainstReference(std::vector<T>{std::numeric_limits<T>::max(), std::numeric_limits<T>::lowest(), 1});
    checkAgainstReference(std::vector<T>{std::numeric_limits<T>::denorm_min(), -std::numeric_limits<T>::denorm_min()});
    checkAgainstReference(std::vector<T>{nan, inf, -inf, -nan});
    checkAgainstReference(std::vector<T>(19, T(-2.5)));
    checkAgainstReference(std::vector<T>(23, T(-0.0)));
    // Exact ties: min 0, max 252 (u8 MinMax step 1) and halves between: ties round to even.
    std::vector<T> ties{0, 252};
    for (int k = 0; k < 40; ++k) ties.push_back(T(k) + T(0.5));
    checkAgainstReference(ties);
}

TEST_CASE("quantize: floating-point data with sum, avg, max and min only, to u8 or u16", "[quantize]") {
    const pcclQuantizationOptions_t u8{pcclUint8, pcclQuantMinMax}, f32{pcclFloat, pcclQuantMinMax},
        none{pcclFloat, pcclQuantNone};
    for (auto t : {pcclFloat, pcclDouble, pcclFloat16, pcclBFloat16})
        for (auto op : {pcclSum, pcclAvg, pcclMax, pcclMin}) CHECK(checkQuantization(t, op, u8).ok());
    CHECK(checkQuantization(pcclFloat, pcclProd, u8).code() == pcclInvalidArgument);
    CHECK(checkQuantization(pcclInt32, pcclSum, u8).message().find("floating-point") != std::string::npos);
    CHECK(checkQuantization(pcclFloat, pcclSum, f32).code() == pcclInvalidArgument);
    CHECK(checkQuantization(pcclInt32, pcclProd, none).ok());
}

TEST_CASE("quantize: f16 and bf16 results are rounded to nearest-even from the f32 value", "[quantize]") {
    const float in[3] = {1.0f + 1.0f / 2048, 3.0f, -0.1f};  // 1 + 2^-11 is a tie between f16 neighbours
    uint16_t h[3], b[3];
    fromAccum(pcclFloat16, in, h, 3);
    fromAccum(pcclBFloat16, in, b, 3);
    for (int i = 0; i < 3; ++i) {
        CHECK(h[i] == f32ToF16(in[i]));
        CHECK(b[i] == f32ToBf16(in[i]));
    }
    CHECK(h[0] == 0x3c00);  // the tie goes to the even neighbour, 1.0
}
