// Bookkeeping shared by the operations that move data through a FrameTransport (the DataPlane;
// in tests, tests/support/mem_transport.h), one all-reduce or one shared-state round: the reads
// and writes in flight against the user's memory, the single "finished" report, and abort with
// quiescence.
//
// Contract for subclasses: count every read into user memory (++inflight_ under mu_ in
// beginFrame, ioDone() after onPayload/onPayloadFailed) and send through sendCounted(); report
// local failures with failLocked(); call settle() after changing what completeLocked() reads.
#pragma once
#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "transport/frame_transport.h"
#include "util/status.h"

namespace pccl::transport {

class DataOperation : public FrameSink, public std::enable_shared_from_this<DataOperation> {
public:
    // Stops the operation: later frames for it are dropped, its queued sends are cancelled, and
    // once no read or write touches the user's memory any more (the caller closes connections to
    // removed peers, so nothing waits on them) restoreAfterAbortLocked() runs, then onQuiescent,
    // once. Other operations and the connections themselves are not disturbed.
    void abort(const std::string &reason, std::function<void()> onQuiescent);
    // Fails the operation locally (e.g. its pool could not be connected, or it stalled).
    void fail(const Status &status);
    // Progress watchdog (any thread): when the operation is still moving data and no frame of it
    // arrived and no send of it completed for longer than `limit`, says what it waits for.
    std::optional<std::string> stalled(std::chrono::milliseconds limit);
    // An abort waits for frames already on the wire; one stuck behind a peer that stopped
    // reading (or sending) would wait forever. When the abort has made no progress for
    // `limit`, this closes the connections to the operation's peers (their reads and writes
    // then fail, and the operation quiesces) and returns true.
    bool forceQuiescence(std::chrono::milliseconds limit);

    // Where the operation is, for error messages: its name and phase and what it still waits for
    // ("all-reduce tag 3, reduce-scatter phase: 2 of 4 segments from peer ... still missing"). Any thread.
    std::string progress();

    uint64_t txBytes() const { return tx_.load(); }
    // Bytes sent over the time from the first send to the last completed one (0 if unknown): a
    // lower bound of the link's bandwidth, used to refine the ring (passive measurement).
    uint64_t sendRate() const;
    uint64_t rxBytes() const { return rx_.load(); }

protected:
    // onFinished runs once: ok when completeLocked() holds with nothing in flight, or the first
    // local failure. Never after an abort.
    DataOperation(FrameTransport &transport, uint64_t seq, std::function<void(Status)> onFinished);

    virtual bool completeLocked() const = 0;  // mu_ held
    virtual void restoreAfterAbortLocked() {}  // mu_ held, nothing in flight
    // What the operation still waits for, for error messages ("3 of 8 segments from peer ..."). mu_ held.
    virtual std::string waitingForLocked() const { return "data"; }
    // The peers this operation exchanges frames with. mu_ held.
    virtual std::vector<Uuid> linkedPeersLocked() const = 0;
    // A send of this operation failed (the connection to `to` broke, or it was cancelled). The
    // default fails the operation; an operation that can route around a lost peer overrides it.
    // mu_ held.
    virtual void sendFailedLocked(std::unique_lock<std::mutex> &lock, const Uuid &to, const SegmentHeader &h,
                                  const std::string &why) {
        (void)to, (void)h;
        failLocked(lock, Status{pcclRankConnectionLost, why + " (" + waitingForLocked() + ")"});
    }
    // Runs after sendFailedLocked, without mu_ (e.g. to route the work elsewhere).
    virtual void afterSendFailed() {}

    // Queues a frame of this operation to `to`, counted as I/O; `keepalive` (if any) is held until
    // the send completes. Returns false after an abort.
    // `ahead`: see FrameTransport::send.
    bool sendCounted(const Uuid &to, const SegmentHeader &h, const void *data, std::shared_ptr<void> keepalive = nullptr,
                     bool ahead = false);
    void ioDone();
    void failLocked(std::unique_lock<std::mutex> &lock, Status status);
    void settle(std::unique_lock<std::mutex> &lock);

    FrameTransport &transport_;
    const uint64_t seq_;
    std::mutex mu_;
    int inflight_ = 0;  // reads into user memory + sends from it
    bool started_ = false, finished_ = false, aborted_ = false;
    std::atomic<uint64_t> tx_{0}, rx_{0};
    std::atomic<std::chrono::steady_clock::rep> lastProgress_;  // steady_clock ticks
    std::atomic<std::chrono::steady_clock::rep> firstSend_{0}, lastSendDone_{0};
    std::atomic<uint64_t> sentDone_{0};

private:
    std::function<void(Status)> onFinished_;
    std::function<void()> onQuiescent_;
};

} // namespace pccl::transport
