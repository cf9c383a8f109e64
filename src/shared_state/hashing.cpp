#include "shared_state/hashing.h"

#include <xxhash.h>

#include "util/bytes.h"

namespace pccl::shared_state {

protocol::Digest digest(const void *data, size_t bytes) {
    const XXH128_hash_t h = XXH3_128bits(data, bytes);
    protocol::Digest d;
    storeLE64(d.data(), h.low64);
    storeLE64(d.data() + 8, h.high64);
    return d;
}

std::string digestHex(const protocol::Digest &d) {
    static const char *hex = "0123456789abcdef";
    std::string s;
    for (auto b : d) {
        s.push_back(hex[b >> 4]);
        s.push_back(hex[b & 15]);
    }
    return s;
}

} // namespace pccl::shared_state
