// The data-type table (util/dtype.h) against the C++ types and limits it describes.
#include <catch2/catch.hpp>

#include <cstdint>
#include <limits>
#include <set>
#include <string>

#include "util/dtype.h"

using namespace pccl;

namespace {

template <class T>
void checkLimits(const DataTypeInfo &d) {
    INFO(d.name);
    CHECK(d.size == sizeof(T));
    CHECK(d.digits == std::numeric_limits<T>::digits);
    CHECK(d.isSigned() == std::numeric_limits<T>::is_signed);
    CHECK(d.isInteger() == std::numeric_limits<T>::is_integer);
    CHECK(d.lowest == static_cast<double>(std::numeric_limits<T>::lowest()));
    CHECK(d.highest == static_cast<double>(std::numeric_limits<T>::max()));
    if (d.isFloat()) CHECK(d.epsilon() == static_cast<double>(std::numeric_limits<T>::epsilon()));
}

} // namespace

TEST_CASE("data types: the table matches the C++ types of every data type, and f16/bf16 their formats", "[dtype]") {
    checkLimits<uint8_t>(kDataTypes[pcclUint8]);
    checkLimits<int8_t>(kDataTypes[pcclInt8]);
    checkLimits<int16_t>(kDataTypes[pcclInt16]);
    checkLimits<uint16_t>(kDataTypes[pcclUint16]);
    checkLimits<uint32_t>(kDataTypes[pcclUint32]);
    checkLimits<int32_t>(kDataTypes[pcclInt32]);
    checkLimits<uint64_t>(kDataTypes[pcclUint64]);
    checkLimits<int64_t>(kDataTypes[pcclInt64]);
    checkLimits<float>(kDataTypes[pcclFloat]);
    checkLimits<double>(kDataTypes[pcclDouble]);
    const DataTypeInfo &h = kDataTypes[pcclFloat16], &b = kDataTypes[pcclBFloat16];
    CHECK(h.size == 2);
    CHECK(h.digits == 11);
    CHECK(h.highest == 65504.0);
    CHECK(h.epsilon() == 0x1p-10);
    CHECK(b.size == 2);
    CHECK(b.digits == 8);
    CHECK(b.highest == 0x1.fep127);
    CHECK(b.epsilon() == 0x1p-7);
    for (const auto &d : kDataTypes) CHECK(d.lowest == (d.isSigned() ? -d.highest - (d.isInteger() ? 1 : 0) : 0));
}

TEST_CASE("data types: every name, short name and alias finds its type in any case; others find nothing", "[dtype]") {
    std::set<std::string> seen;
    for (const auto &d : kDataTypes) {
        INFO(d.name);
        CHECK(dataTypeInfo(d.id) == &d);
        CHECK(std::string(dataTypeName(d.id)) == d.name);
        CHECK(dataTypeSize(d.id) == d.size);
        for (const char *n : {d.name, d.shortName, d.aliases[0], d.aliases[1]}) {
            if (!n) continue;
            CHECK(seen.insert(n).second);  // no name is used twice
            CHECK(findDataType(n) == &d);
            std::string upper = n;
            for (auto &c : upper) c = static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
            CHECK(findDataType(upper) == &d);
        }
    }
    CHECK(findDataType("float8") == nullptr);
    CHECK(findDataType("") == nullptr);
    CHECK(findDataType("f3") == nullptr);
    for (long long bad : {-1LL, 12LL, 255LL, 1LL << 40}) {
        CHECK(dataTypeInfo(bad) == nullptr);
        CHECK_FALSE(isValidDataType(bad));
    }
    CHECK(dataTypeSize(static_cast<pcclDataType_t>(12)) == 0);
    CHECK(std::string(dataTypeName(static_cast<pcclDataType_t>(12))) == "invalid");
}
