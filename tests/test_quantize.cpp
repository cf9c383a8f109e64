// Quantized segment encoding (collectives/quantize.h): round trips, error bounds, non-finite
// values, and which combinations are accepted.
#include <catch2/catch.hpp>

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
