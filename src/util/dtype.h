// The one data-type table: every pcclDataType_t with its names, size, kind and numeric limits.
// Everything that needs one of these (the reduce kernels, the master, the tests, the stress and
// bench programs) reads it here instead of switching over the enum.
//
// Header-only and constexpr: the kernels check their storage types against it at compile time,
// and programs that link the shared library, whose internal symbols are hidden (pccl-bench,
// pccl-soak-peer), use the very same table. The entry of type t is kDataTypes[t]; pccl.h numbers
// the types densely from 0 and only appends, and a new type is appended here too.
#pragma once
#include <pccl.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace pccl {

enum class DataKind : uint8_t { Unsigned, Signed, Float };

struct DataTypeInfo {
    pcclDataType_t id;
    const char *name;       // "float32", "bfloat16", "uint8": pccl's messages and tables
    const char *shortName;  // "f32", "bf16", "u8": test output, compact tables
    std::array<const char *, 2> aliases;  // more names findDataType accepts (nullptr: none)
    size_t size;            // bytes per element
    DataKind kind;
    // Bits of precision: every integer of magnitude below 2^digits is represented exactly
    // (integers: the width less the sign bit; floats: the significand with its implicit bit).
    int digits;
    double lowest;   // the most negative finite value (integers of 64 bits: rounded to double)
    double highest;  // the largest finite value (likewise rounded)

    constexpr bool isFloat() const { return kind == DataKind::Float; }
    constexpr bool isInteger() const { return kind != DataKind::Float; }
    constexpr bool isSigned() const { return kind != DataKind::Unsigned; }
    // Floats: the distance from 1 to the next value, 2^(1 - digits). Integers: 1.
    constexpr double epsilon() const {
        double e = 1;
        for (int i = 1; isFloat() && i < digits; ++i) e /= 2;
        return e;
    }
};

inline constexpr std::array<DataTypeInfo, 12> kDataTypes = {{
    {pcclUint8, "uint8", "u8", {}, 1, DataKind::Unsigned, 8, 0.0, 255.0},
    {pcclInt8, "int8", "i8", {}, 1, DataKind::Signed, 7, -128.0, 127.0},
    {pcclInt16, "int16", "i16", {}, 2, DataKind::Signed, 15, -32768.0, 32767.0},
    {pcclUint16, "uint16", "u16", {}, 2, DataKind::Unsigned, 16, 0.0, 65535.0},
    {pcclUint32, "uint32", "u32", {}, 4, DataKind::Unsigned, 32, 0.0, 4294967295.0},
    {pcclInt32, "int32", "i32", {"int", nullptr}, 4, DataKind::Signed, 31, -2147483648.0, 2147483647.0},
    {pcclUint64, "uint64", "u64", {}, 8, DataKind::Unsigned, 64, 0.0, 18446744073709551615.0},
    {pcclInt64, "int64", "i64", {}, 8, DataKind::Signed, 63, -9223372036854775808.0, 9223372036854775807.0},
    {pcclFloat16, "float16", "f16", {"half", "fp16"}, 2, DataKind::Float, 11, -65504.0, 65504.0},
    {pcclBFloat16, "bfloat16", "bf16", {"bfloat", nullptr}, 2, DataKind::Float, 8, -0x1.fep127, 0x1.fep127},
    {pcclFloat, "float32", "f32", {"float", "fp32"}, 4, DataKind::Float, 24, -0x1.fffffep127, 0x1.fffffep127},
    {pcclDouble, "float64", "f64", {"double", "fp64"}, 8, DataKind::Float, 53, -0x1.fffffffffffffp1023,
     0x1.fffffffffffffp1023},
}};

constexpr bool tableIsDense() {
    for (size_t i = 0; i < kDataTypes.size(); ++i)
        if (static_cast<size_t>(kDataTypes[i].id) != i) return false;
    return true;
}
static_assert(tableIsDense(), "kDataTypes[t].id must be t");
static_assert(kDataTypes.back().id == pcclDouble, "a type appended to pccl.h is missing here");

// nullptr if `t` (a raw value, as it comes from a caller or the wire) is not a data type.
constexpr const DataTypeInfo *dataTypeInfo(long long t) {
    return t >= 0 && t < static_cast<long long>(kDataTypes.size()) ? &kDataTypes[static_cast<size_t>(t)] : nullptr;
}
constexpr const DataTypeInfo *dataTypeInfo(pcclDataType_t t) { return dataTypeInfo(static_cast<long long>(t)); }

constexpr bool isValidDataType(long long t) { return dataTypeInfo(t) != nullptr; }
// 0 if invalid.
constexpr size_t dataTypeSize(pcclDataType_t t) {
    const auto *d = dataTypeInfo(t);
    return d ? d->size : 0;
}
// "invalid" if invalid.
constexpr const char *dataTypeName(pcclDataType_t t) {
    const auto *d = dataTypeInfo(t);
    return d ? d->name : "invalid";
}

// The type called `name` (its name, short name or an alias, in any case); nullptr if none.
constexpr const DataTypeInfo *findDataType(std::string_view name) {
    const auto same = [](std::string_view a, const char *b) {
        if (!b || a.size() != std::string_view(b).size()) return false;
        for (size_t i = 0; i < a.size(); ++i) {
            const char c = a[i] >= 'A' && a[i] <= 'Z' ? static_cast<char>(a[i] - 'A' + 'a') : a[i];
            if (c != b[i]) return false;
        }
        return true;
    };
    for (const auto &d : kDataTypes)
        if (same(name, d.name) || same(name, d.shortName) || same(name, d.aliases[0]) || same(name, d.aliases[1]))
            return &d;
    return nullptr;
}

} // namespace pccl
