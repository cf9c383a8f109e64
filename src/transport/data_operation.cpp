#include "transport/data_operation.h"

#include "util/log.h"

namespace pccl::transport {

DataOperation::DataOperation(FrameTransport &transport, uint64_t seq, std::function<void(Status)> onFinished)
    : transport_(transport), seq_(seq), lastProgress_(std::chrono::steady_clock::now().time_since_epoch().count()),
      onFinished_(std::move(onFinished)) {}

bool DataOperation::sendCounted(const Uuid &to, const SegmentHeader &h, const void *data, std::shared_ptr<void> keepalive,
                                bool ahead) {
    {
        std::lock_guard lock(mu_);
        if (aborted_) return false;
        ++inflight_;
    }
    tx_ += h.bytes;
    std::chrono::steady_clock::rep none = 0;
    firstSend_.compare_exchange_strong(none, std::chrono::steady_clock::now().time_since_epoch().count());
    auto self = shared_from_this();
    transport_.send(to, h, data, [self, to, h, keepalive = std::move(keepalive)](bool ok, const std::string &why) {
        if (ok) {
            self->sentDone_ += h.bytes;
            self->lastSendDone_ = std::chrono::steady_clock::now().time_since_epoch().count();
        } else {
            {
                std::unique_lock lock(self->mu_);
                self->sendFailedLocked(lock, to, h, why);
            }
            self->afterSendFailed();
        }
        self->ioDone();
    }, ahead);
    return true;
}

void DataOperation::ioDone() {
    lastProgress_ = std::chrono::steady_clock::now().time_since_epoch().count();
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

void DataOperation::failLocked(std::unique_lock<std::mutex> &lock, Status status) {
    if (finished_ || aborted_) return;
    finished_ = true;
    auto cb = std::move(onFinished_);
    lock.unlock();
    cb(std::move(status));
    lock.lock();
}

void DataOperation::fail(const Status &status) {
    std::unique_lock lock(mu_);
    failLocked(lock, status);
}

std::optional<std::string> DataOperation::stalled(std::chrono::milliseconds limit) {
    using clock = std::chrono::steady_clock;
    const auto idle = clock::now() - clock::time_point(clock::duration(lastProgress_.load()));
    if (idle <= limit) return std::nullopt;
    std::lock_guard lock(mu_);
    if (finished_ || aborted_) return std::nullopt;
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(idle).count();
    return "no progress for " + std::to_string(ms) + " ms: waiting for " + waitingForLocked();
}

std::string DataOperation::progress() {
    std::lock_guard lock(mu_);
    return waitingForLocked();
}

uint64_t DataOperation::sendRate() const {
    const auto first = firstSend_.load(), last = lastSendDone_.load();
    if (first == 0 || last <= first) return 0;
    const double span = std::chrono::duration<double>(std::chrono::steady_clock::duration(last - first)).count();
    return static_cast<uint64_t>(static_cast<double>(sentDone_.load()) / span);
}

bool DataOperation::forceQuiescence(std::chrono::milliseconds limit) {
    using clock = std::chrono::steady_clock;
    const auto idle = clock::now() - clock::time_point(clock::duration(lastProgress_.load()));
    if (idle <= limit) return false;
    std::vector<Uuid> peers;
    {
        std::lock_guard lock(mu_);
        if (!aborted_ || !onQuiescent_ || inflight_ == 0) return false;
        peers = linkedPeersLocked();
    }
    const std::string why = "aborted operation " + std::to_string(seq_) + " could not drain its frames for " +
                            std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(idle).count()) + " ms";
    PCCL_LOG(Warn, why << "; closing its connections");
    for (auto &p : peers) transport_.closePeer(p, why);
    return true;
}

void DataOperation::abort(const std::string &reason, std::function<void()> onQuiescent) {
    std::function<void(Status)> dropped;  // breaks the owner <-> operation reference cycle
    {
        std::lock_guard lock(mu_);
        if (aborted_) return;
        aborted_ = true;
        finished_ = true;  // no success report after an abort
        lastProgress_ = std::chrono::steady_clock::now().time_since_epoch().count();
        onQuiescent_ = std::move(onQuiescent);
        dropped = std::move(onFinished_);
    }
    PCCL_LOG(Debug, "aborting data operation " << seq_ << ": " << reason);
    transport_.cancelSends(seq_);
    std::unique_lock lock(mu_);
    settle(lock);
}

} // namespace pccl::transport
