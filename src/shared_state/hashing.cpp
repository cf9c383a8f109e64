#include "shared_state/hashing.h"

#include <xxhash.h>
#if defined(__x86_64__) || defined(_M_X64)
#include <xxh_x86dispatch.h>  // XXH3 with the widest vector unit of this CPU (AVX2/AVX-512), chosen at run time
#define PCCL_XXH3_128 XXH3_128bits_dispatch
#else
#define PCCL_XXH3_128 XXH3_128bits
#endif

#include <algorithm>
#include <atomic>
#include <thread>

#include "util/bytes.h"

namespace pccl::shared_state {

using protocol::Digest;
using protocol::kStateChunkBytes;

Digest digest(const void *data, size_t bytes) {
    const XXH128_hash_t h = PCCL_XXH3_128(data, bytes);
    Digest d;
    storeLE64(d.data(), h.low64);
    storeLE64(d.data() + 8, h.high64);
    return d;
}

size_t chunkCount(size_t bytes) { return (bytes + kStateChunkBytes - 1) / kStateChunkBytes; }

Digest combineChunks(const std::vector<Digest> &chunks) { return digest(chunks.data(), chunks.size() * sizeof(Digest)); }

EntryHash hashEntry(const void *data, size_t bytes) { return hashEntries({{data, bytes}}, 1).front(); }

std::vector<EntryHash> hashEntries(const std::vector<std::pair<const void *, size_t>> &entries, unsigned threads) {
    std::vector<EntryHash> out(entries.size());
    // One work list of (entry, chunk) over all entries, taken in order by the workers.
    std::vector<std::pair<uint32_t, uint32_t>> work;
    for (uint32_t e = 0; e < entries.size(); ++e) {
        const size_t n = chunkCount(entries[e].second);
        out[e].chunks.resize(n);
        for (uint32_t c = 0; c < n; ++c) work.push_back({e, c});
    }
    std::atomic<size_t> next{0};
    auto worker = [&] {
        for (size_t i; (i = next.fetch_add(1)) < work.size();) {
            const auto [e, c] = work[i];
            const auto *base = static_cast<const uint8_t *>(entries[e].first) + size_t{c} * kStateChunkBytes;
            const size_t n = std::min<size_t>(kStateChunkBytes, entries[e].second - size_t{c} * kStateChunkBytes);
            out[e].chunks[c] = digest(base, n);
        }
    };
    if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
    threads = static_cast<unsigned>(std::min<size_t>(threads, work.size()));
    std::vector<std::thread> pool;
    for (unsigned t = 1; t < threads; ++t) pool.emplace_back(worker);
    worker();
    for (auto &t : pool) t.join();
    for (auto &h : out) h.digest = combineChunks(h.chunks);
    return out;
}

std::string digestHex(const Digest &d) {
    static const char *hex = "0123456789abcdef";
    std::string s;
    for (auto b : d) {
        s.push_back(hex[b >> 4]);
        s.push_back(hex[b & 15]);
    }
    return s;
}

} // namespace pccl::shared_state
