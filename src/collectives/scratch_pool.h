// Reusable scratch memory for collectives (in-place backups, staging, quantized segments). A
// large buffer costs a page fault per 4 KiB on first touch, which for a 256 MiB in-place
// all-reduce is as much as the reduction itself; a communicator therefore keeps the buffers of
// finished operations for the next ones. Contents are uninitialised. Thread-safe.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace pccl::collectives {

class ScratchPool {
public:
    // Keeps at most `maxKeptBytes` of idle buffers (the largest recently used ones).
    explicit ScratchPool(size_t maxKeptBytes = size_t{1} << 30) : maxKept_(maxKeptBytes) {}

    // A buffer of at least `bytes` (the smallest idle one that fits, else a new one), returned to
    // the pool when the Scratch is destroyed.
    class Scratch {
    public:
        Scratch() = default;
        Scratch(Scratch &&) = default;
        Scratch &operator=(Scratch &&o) noexcept {
            release();
            pool_ = std::move(o.pool_);
            data_ = std::move(o.data_);
            capacity_ = o.capacity_;
            return *this;
        }
        ~Scratch() { release(); }
        uint8_t *data() const { return data_.get(); }

    private:
        friend class ScratchPool;
        void release();
        std::shared_ptr<ScratchPool> pool_;
        std::unique_ptr<uint8_t[]> data_;
        size_t capacity_ = 0;
    };

    static Scratch take(const std::shared_ptr<ScratchPool> &pool, size_t bytes);

private:
    void give(std::unique_ptr<uint8_t[]> data, size_t capacity);

    const size_t maxKept_;
    std::mutex mu_;
    std::vector<std::pair<size_t, std::unique_ptr<uint8_t[]>>> idle_;  // (capacity, memory)
    size_t keptBytes_ = 0;
};

} // namespace pccl::collectives
