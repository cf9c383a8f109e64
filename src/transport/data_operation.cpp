#include "transport/data_operation.h"

#include "util/log.h"

namespace pccl::transport {

DataOperation::DataOperation(DataPlane &plane, uint64_t seq, std::function<void(Status)> onFinished)
    : plane_(plane), seq_(seq), onFinished_(std::move(onFinished)) {}

bool DataOperation::sendCounted(const Uuid &to, const SegmentHeader &h, const void *data) {
    {
        std::lock_guard lock(mu_);
        if (aborted_) return false;
        ++inflight_;
    }
    tx_ += h.bytes;
    auto self = shared_from_this();
    plane_.send(to, h, data, [self](bool ok, const std::string &why) {
        if (!ok) {
            std::unique_lock lock(self->mu_);
            self->failLocked(lock, why);
        }
        self->ioDone();
    });
    return true;
}

void DataOperation::ioDone() {
    std::unique_lock lock(mu_);
    --inflight_;
    settle(lock);
}

void DataOperation::settle(std::unique_lock<std::mutex> &lock) {
    if (aborted_) {
        if (inflight_ == 0 && onQuiescent_) {
            restoreAfterAbortLocked();
            auto cb = std::move(onQuiescent_);
            onQuiescent_ = nullptr;
            lock.unlock();
            cb();
            lock.lock();
        }
        return;
    }
    if (finished_ || !started_ || inflight_ != 0 || !completeLocked()) return;
    finished_ = true;
    auto cb = std::move(onFinished_);
    lock.unlock();
    cb(Status{});
    lock.lock();
}

void DataOperation::failLocked(std::unique_lock<std::mutex> &lock, const std::string &why) {
    if (finished_ || aborted_) return;
    finished_ = true;
    auto cb = std::move(onFinished_);
    lock.unlock();
    cb(Status{pcclRankConnectionLost, why});
    lock.lock();
}

void DataOperation::fail(const Status &status) {
    std::unique_lock lock(mu_);
    failLocked(lock, status.message());
}

void DataOperation::abort(const std::string &reason, std::function<void()> onQuiescent) {
    std::function<void(Status)> dropped;  // breaks the owner <-> operation reference cycle
    {
        std::lock_guard lock(mu_);
        if (aborted_) return;
        aborted_ = true;
        finished_ = true;  // no success report after an abort
        onQuiescent_ = std::move(onQuiescent);
        dropped = std::move(onFinished_);
    }
    PCCL_LOG(Debug, "aborting data operation " << seq_ << ": " << reason);
    plane_.cancelSends(seq_);
    std::unique_lock lock(mu_);
    settle(lock);
}

} // namespace pccl::transport
