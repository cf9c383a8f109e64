// Little-endian wire encoding with explicit byte order and total, bounded parsing: a Reader never
// reads past its end; any short or oversized field sets failed() and yields zeros.
#pragma once
#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace pccl {

class Writer {
public:
    explicit Writer(std::vector<uint8_t> &out) : out_(out) {}
    template <class T>
    void uint(T v) {
        for (size_t i = 0; i < sizeof(T); ++i) out_.push_back(static_cast<uint8_t>(static_cast<uint64_t>(v) >> (8 * i)));
    }
    void raw(const void *p, size_t n) {
        const auto *b = static_cast<const uint8_t *>(p);
        out_.insert(out_.end(), b, b + n);
    }

private:
    std::vector<uint8_t> &out_;
};

class Reader {
public:
    Reader(const uint8_t *data, size_t size) : p_(data), end_(data + size) {}
    template <class T>
    T uint() {
        if (!need(sizeof(T))) return T{};
        uint64_t v = 0;
        for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<uint64_t>(p_[i]) << (8 * i);
        p_ += sizeof(T);
        return static_cast<T>(v);
    }
    bool raw(void *dst, size_t n) {
        if (!need(n)) return false;
        std::memcpy(dst, p_, n);
        p_ += n;
        return true;
    }
    size_t remaining() const { return static_cast<size_t>(end_ - p_); }
    bool failed() const { return failed_; }
    void fail() { failed_ = true; }

private:
    bool need(size_t n) {
        if (failed_ || remaining() < n) {
            failed_ = true;
            return false;
        }
        return true;
    }
    const uint8_t *p_;
    const uint8_t *end_;
    bool failed_ = false;
};

// Fixed-width little-endian helpers for hot-path headers.
inline void storeLE64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline void storeLE32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline uint64_t loadLE64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
    return v;
}
inline void storeLE16(uint8_t *p, uint16_t v) {
    p[0] = static_cast<uint8_t>(v);
    p[1] = static_cast<uint8_t>(v >> 8);
}
inline uint16_t loadLE16(const uint8_t *p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
inline uint32_t loadLE32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(p[i]) << (8 * i);
    return v;
}

} // namespace pccl
