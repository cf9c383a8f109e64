// The one field codec: encodes and decodes any struct that lists its fields with PCCL_FIELDS
// (messages.h), field by field in that order, little-endian. Control messages (codec.h) and the
// data-plane handshake (transport/data_wire.h) both go through it.
//
// Field encodings: bool as one byte (0 or 1; anything else is malformed); integers at their
// width; Uuid as its 16 bytes; std::array<T, N> as N items; std::string as a u32 length and the
// bytes (at most kMaxStringBytes); std::vector<T> as a u32 count and the items (at most
// kMaxVectorItems); a nested struct as its fields.
//
// Decoding is total and bounded: it never throws, never reads past the input, and never
// allocates for a length the input cannot hold (a vector's announced count must fit in the bytes
// left at the smallest encoding of one item). On malformed input the Reader is failed() and the
// value holds whatever was decoded so far.
#pragma once
#include <algorithm>
#include <array>
#include <string>
#include <type_traits>
#include <vector>

#include "protocol/messages.h"
#include "util/bytes.h"

namespace pccl::protocol::fields {

template <class T>
struct IsVector : std::false_type {};
template <class T>
struct IsVector<std::vector<T>> : std::true_type {};
template <class T>
struct IsArray : std::false_type {};
template <class T, size_t N>
struct IsArray<std::array<T, N>> : std::true_type {};

template <class T>
void put(Writer &w, const T &v);
template <class T>
void get(Reader &r, T &v);

// The fewest bytes a T takes on the wire (empty strings and vectors): its default value's size.
template <class T>
size_t minWireBytes() {
    static const size_t n = [] {
        std::vector<uint8_t> b;
        Writer w(b);
        put(w, T{});
        return b.size();
    }();
    return n;
}

template <class T>
void put(Writer &w, const T &v) {
    if constexpr (std::is_same_v<T, bool>) {
        w.uint<uint8_t>(v ? 1 : 0);
    } else if constexpr (std::is_integral_v<T>) {
        w.uint<T>(v);
    } else if constexpr (std::is_same_v<T, std::string>) {
        w.uint<uint32_t>(static_cast<uint32_t>(v.size()));
        w.raw(v.data(), v.size());
    } else if constexpr (std::is_same_v<T, Uuid>) {
        w.raw(v.bytes.data(), v.bytes.size());
    } else if constexpr (IsArray<T>::value) {
        for (const auto &x : v) put(w, x);
    } else if constexpr (IsVector<T>::value) {
        w.uint<uint32_t>(static_cast<uint32_t>(v.size()));
        for (const auto &x : v) put(w, x);
    } else {
        v.fields([&](const auto &...xs) { (put(w, xs), ...); });
    }
}

template <class T>
void get(Reader &r, T &v) {
    if (r.failed()) return;
    if constexpr (std::is_same_v<T, bool>) {
        const uint8_t b = r.uint<uint8_t>();
        if (b > 1) r.fail();
        v = b == 1;
    } else if constexpr (std::is_integral_v<T>) {
        v = r.uint<T>();
    } else if constexpr (std::is_same_v<T, std::string>) {
        const uint32_t n = r.uint<uint32_t>();
        if (n > kMaxStringBytes || n > r.remaining()) return r.fail();
        v.resize(n);
        r.raw(v.data(), n);
    } else if constexpr (std::is_same_v<T, Uuid>) {
        r.raw(v.bytes.data(), v.bytes.size());
    } else if constexpr (IsArray<T>::value) {
        for (auto &x : v) get(r, x);
    } else if constexpr (IsVector<T>::value) {
        using Item = typename T::value_type;
        static_assert(!std::is_same_v<Item, bool>, "vector<bool> is not a wire type");
        const uint32_t n = r.uint<uint32_t>();
        // Every item takes at least minWireBytes, so the allocation is bounded by the input.
        const size_t least = std::max<size_t>(1, minWireBytes<Item>());
        if (n > kMaxVectorItems || n > r.remaining() / least) return r.fail();
        v.resize(n);
        for (auto &x : v) get(r, x);
    } else {
        v.fields([&](auto &...xs) { (get(r, xs), ...); });
    }
}

// Appends v's fields to out.
template <class T>
void encode(const T &v, std::vector<uint8_t> &out) {
    Writer w(out);
    put(w, v);
}

// Decodes v from exactly `size` bytes: false if they are malformed, short, or more than v takes.
template <class T>
bool decodeExact(const uint8_t *data, size_t size, T &v) {
    Reader r(data, size);
    get(r, v);
    return !r.failed() && r.remaining() == 0;
}

} // namespace pccl::protocol::fields
