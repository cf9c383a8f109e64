// util/splitmix.h: the sequences are pinned, because the soak checks, the ring tests' inputs
// and the WAN emulator's loss decisions replay them from printed seeds.
#include <catch2/catch.hpp>

#include <cstdint>

#include "util/splitmix.h"

using namespace pccl::util;

TEST_CASE("splitmix64 from seed 0 gives the reference sequence", "[splitmix]") {
    // The first outputs of the reference implementation (Vigna, splitmix64.c) seeded with 0.
    SplitMix64 rng{0};
    CHECK(rng.next() == 0xE220A8397B1DCDAFull);
    CHECK(rng.next() == 0x6E789E6AA1B965F4ull);
    CHECK(rng.next() == 0x06C45D188009454Full);
    CHECK(rng.state == 3 * kSplitMixGamma);
}

TEST_CASE("splitmix64: the step, the hash and the generator agree", "[splitmix]") {
    uint64_t state = 1234567;
    SplitMix64 rng{1234567};
    CHECK(splitmix64Hash(1234567) == 0x599ED017FB08FC85ull);
    const uint64_t first = splitmix64(state);
    CHECK(first == splitmix64Hash(1234567));
    CHECK(state == 1234567 + kSplitMixGamma);
    CHECK(rng.next() == first);
    CHECK(rng.next() == splitmix64(state));
}

TEST_CASE("splitmix64: below and unit stay in range and follow next()", "[splitmix]") {
    SplitMix64 a{42}, b{42};
    for (int i = 0; i < 1000; ++i) {
        const uint64_t raw = b.next();
        const size_t v = a.below(7);
        CHECK(v == raw % 7);
    }
    CHECK(a.below(0) == 0);  // draws nothing
    CHECK(a.state == b.state);
    for (int i = 0; i < 1000; ++i) {
        const double u = a.unit();
        CHECK(u >= 0.0);
        CHECK(u < 1.0);
        CHECK(u == static_cast<double>(b.next() >> 11) / 9007199254740992.0);
    }
    static_assert(SplitMix64{0}.next() == 0xE220A8397B1DCDAFull, "constexpr and pinned");
}
