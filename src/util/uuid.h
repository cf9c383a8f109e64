// 128-bit identifiers the master assigns to peers (random, from the OS entropy source).
#pragma once
#include <array>
#include <cstdint>
#include <string>

namespace pccl {

struct Uuid {
    std::array<uint8_t, 16> bytes{};
    auto operator<=>(const Uuid &) const = default;
    bool isNil() const;
    std::string str() const;  // 32 hex digits
    std::string shortStr() const; // first 8 hex digits, for logs
    static Uuid random();
};

struct UuidHash {
    size_t operator()(const Uuid &u) const;
};

} // namespace pccl
