#include "collectives/scratch_pool.h"

#include <algorithm>

namespace pccl::collectives {

ScratchPool::Scratch ScratchPool::take(const std::shared_ptr<ScratchPool> &pool, size_t bytes) {
    Scratch s;
    s.pool_ = pool;
    if (pool) {
        std::lock_guard lock(pool->mu_);
        auto &idle = pool->idle_;
        auto best = idle.end();
        for (auto it = idle.begin(); it != idle.end(); ++it)
            if (it->first >= bytes && (best == idle.end() || it->first < best->first)) best = it;
        if (best != idle.end()) {
            s.capacity_ = best->first;
            s.data_ = std::move(best->second);
            pool->keptBytes_ -= best->first;
            idle.erase(best);
            return s;
        }
    }
    s.capacity_ = std::max<size_t>(bytes, 1);
    s.data_.reset(new uint8_t[s.capacity_]);  // uninitialised on purpose
    return s;
}

void ScratchPool::Scratch::release() {
    if (pool_ && data_) pool_->give(std::move(data_), capacity_);
    pool_.reset();
    data_.reset();
    capacity_ = 0;
}

void ScratchPool::give(std::unique_ptr<uint8_t[]> data, size_t capacity) {
    std::lock_guard lock(mu_);
    if (capacity > maxKept_) return;
    idle_.emplace_back(capacity, std::move(data));
    keptBytes_ += capacity;
    // Over the limit: drop the smallest buffers first (the large ones are the expensive ones).
    std::sort(idle_.begin(), idle_.end(), [](auto &a, auto &b) { return a.first > b.first; });
    while (keptBytes_ > maxKept_) {
        keptBytes_ -= idle_.back().first;
        idle_.pop_back();
    }
}

} // namespace pccl::collectives
