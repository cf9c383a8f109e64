#include "shared_state/hashing.h"

#include <xxhash.h>
#if defined(__x86_64__)
#include <xxh_x86dispatch.h>
#include "shared_state/xxh3_avx2.h"
#endif

#include <algorithm>
#include <atomic>
#include <thread>

#include "util/bytes.h"
#include "util/cpu.h"

namespace pccl::shared_state {

using protocol::Digest;
using protocol::kStateChunkBytes;

// XXH3-128 with AVX2 where the CPU has it (xxh3_avx2.cpp says why not AVX-512), else with
// libxxhash's run-time dispatch; every variant gives the same digest.
Digest digest(const void *data, size_t bytes) {
    uint64_t low = 0, high = 0;
#if defined(__x86_64__)
    if (cpuHasAvx2()) {
        detail::xxh3_128Avx2(data, bytes, &low, &high);
    } else {
        const XXH128_hash_t h = XXH3_128bits_dispatch(data, bytes);
        low = h.low64;
        high = h.high64;
    }
#else
    const XXH128_hash_t h = XXH3_128bits(data, bytes);
    low = h.low64;
    high = h.high64;
#endif
    Digest d;
    storeLE64(d.data(), low);
    storeLE64(d.data() + 8, high);
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
    // Hashing is memory-bound (one core reads ~27 GB/s here, two ~40): past a few threads more
    // only contend for the memory bus and, with several peers on a big host, multiply threads.
    constexpr unsigned kMaxAutoThreads = 8;
    if (threads == 0) threads = std::clamp(std::thread::hardware_concurrency(), 1u, kMaxAutoThreads);
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
