#include "util/uuid.h"

#include <cstring>
#include <random>

namespace pccl {

bool Uuid::isNil() const {
    for (auto b : bytes)
        if (b) return false;
    return true;
}

std::string Uuid::str() const {
    static const char *hex = "0123456789abcdef";
    std::string s;
    for (auto b : bytes) {
        s.push_back(hex[b >> 4]);
        s.push_back(hex[b & 15]);
    }
    return s;
}

std::string Uuid::shortStr() const { return str().substr(0, 8); }

Uuid Uuid::random() {
    thread_local std::random_device rd;
    Uuid u;
    for (size_t i = 0; i < 16; i += 4) {
        uint32_t v = rd();
        std::memcpy(&u.bytes[i], &v, 4);
    }
    return u;
}

size_t UuidHash::operator()(const Uuid &u) const {
    size_t h;
    std::memcpy(&h, u.bytes.data(), sizeof h);
    return h;
}

} // namespace pccl
