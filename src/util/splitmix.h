// splitmix64 (Steele, Lea, Flood 2014): the one deterministic generator for tests, stress
// programs and tools whose sequences must be the same on every platform and build (the
// standard distributions are not). The soak checks and the WAN emulator's seeds replay these
// exact sequences: never change the constants or the order of operations. Not cryptographic.
// Header-only, no dependencies: tools that do not link pccl include it too.
#pragma once
#include <cstddef>
#include <cstdint>

namespace pccl::util {

inline constexpr uint64_t kSplitMixGamma = 0x9E3779B97F4A7C15ull;

// One step: advances `state` by the golden-ratio increment and returns the mixed new state.
constexpr uint64_t splitmix64(uint64_t &state) {
    uint64_t z = (state += kSplitMixGamma);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// The output of one step from state `x`, as a stateless 64-bit hash (keys derived from seeds).
constexpr uint64_t splitmix64Hash(uint64_t x) { return splitmix64(x); }

// A generator object: `SplitMix64 rng{seed};`. Copyable; the state is the whole of it.
struct SplitMix64 {
    uint64_t state = 0;

    constexpr uint64_t next() { return splitmix64(state); }
    // In [0, n) by modulo (slightly biased, fine for tests); 0 when n is 0.
    constexpr size_t below(size_t n) { return n ? static_cast<size_t>(next() % n) : 0; }
    // In [0, 1), from the top 53 bits.
    constexpr double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
};

}  // namespace pccl::util
