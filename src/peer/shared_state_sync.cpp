// Communicator: the peer side of pcclSynchronizeSharedState (docs/shared_state.md).
#include <algorithm>

#include "collectives/reduce_kernels.h"
#include "peer/communicator.h"
#include "shared_state/hashing.h"
#include "shared_state/transfer.h"
#include "util/log.h"

namespace pccl::peer {

using namespace protocol;

struct Communicator::SyncOp {
    std::vector<shared_state::LocalEntry> local;
    uint64_t seq = 0;
    std::shared_ptr<shared_state::StateTransfer> transfer;
    bool done = false;
    Status status;
    SyncResult result;
};

namespace {

// What a plan must satisfy before its indices and sizes are trusted; "" when it does.
std::string checkPlan(const SharedStatePlan &m, const std::vector<shared_state::LocalEntry> &local) {
    for (uint32_t r : m.serve)
        if (r >= m.peers.size()) return "serve index out of range";
    for (auto &f : m.receive) {
        if (f.entry >= local.size()) return "entry index out of range";
        if (f.chunks.size() != f.digests.size() || f.sources.empty()) return "fetch without digests or sources";
        const size_t n = shared_state::chunkCount(local[f.entry].bytes);
        for (uint32_t c : f.chunks)
            if (c >= n) return "chunk index out of range";
        for (uint32_t s : f.sources)
            if (s >= m.peers.size()) return "source index out of range";
    }
    return "";
}

} // namespace

Result<SyncResult> Communicator::syncSharedState(const std::vector<SyncEntry> &entries, uint64_t revision,
                                                 pcclSharedStateSyncStrategy_t strategy) {
    SharedStateSync msg;
    msg.revision = revision;
    msg.strategy = static_cast<uint8_t>(strategy);
    auto op = std::make_shared<SyncOp>();
    std::vector<std::pair<const void *, size_t>> spans;
    for (auto &e : entries) {
        const size_t bytes = e.count * collectives::dataTypeSize(e.dtype);
        spans.push_back({e.data, bytes});
        op->local.push_back({e.name, e.data, bytes});
    }
    auto hashes = shared_state::hashEntries(spans);
    for (size_t i = 0; i < entries.size(); ++i) {
        const auto &e = entries[i];
        EntryDesc d;
        d.name = e.name;
        d.dtype = static_cast<uint8_t>(e.dtype);
        d.count = e.count;
        d.allow_inequality = e.allowInequality;
        d.digest = hashes[i].digest;
        d.chunks = std::move(hashes[i].chunks);
        msg.entries.push_back(std::move(d));
    }
    std::unique_lock lock(mu_);
    if (phase_ == Phase::Dead) return deathStatus_;
    if (phase_ != Phase::Connected) return invalidUsage("pcclSynchronizeSharedState: the communicator is not connected");
    for (auto &[tag, o] : ops_)
        if (!o->done)
            return Status{pcclPendingAsyncOps,
                          "pcclSynchronizeSharedState: all-reduce tag " + std::to_string(tag) + " is still in flight"};
    if (sync_) return invalidUsage("pcclSynchronizeSharedState: another sync is in progress on this communicator");
    msg.synced_before = syncedBefore_;
    sync_ = op;
    control_.send(std::move(msg));
    cv_.wait(lock, [&] { return op->done; });
    sync_.reset();
    if (!op->status.ok()) return op->status;
    syncedBefore_ = true;
    return op->result;
}

void Communicator::onSyncPlan(const SharedStatePlan &m) {
    std::shared_ptr<SyncOp> op;
    {
        std::lock_guard lock(mu_);
        op = sync_;
        if (!op || op->done || op->seq != 0) {
            control_.send(SharedStateDone{m.seq, false, "no shared-state sync is waiting on " + self_.shortStr()});
            return;
        }
        if (auto why = checkPlan(m, op->local); !why.empty()) {
            control_.send(SharedStateDone{m.seq, false, "malformed plan from the master: " + why,
                                          static_cast<uint8_t>(pcclRankConnectionLost)});
            return;
        }
        op->seq = m.seq;
        op->result.revision = m.revision;
        shared_state::TransferOptions o;
        o.poolSize = options_.poolSize;
        o.connectTimeout = options_.connectTimeout;
        o.compressionLevel = options_.stateCompressionLevel;
        const uint64_t seq = m.seq;
        op->transfer = std::make_shared<shared_state::StateTransfer>(
            data_, op->local, m, o, [this, seq](Status st) {
                if (!st.ok()) PCCL_LOG(Info, "shared-state sync failed locally: " << st.message());
                control_.send(SharedStateDone{seq, st.ok(), st.message(), static_cast<uint8_t>(st.code())});
            });
    }
    data_.registerSink(m.seq, op->transfer);  // receivers get chunks, sources get requests
    op->transfer->start();
}

void Communicator::onSyncEnd(uint64_t seq, Status status, uint64_t revision) {
    std::shared_ptr<SyncOp> op;
    std::shared_ptr<shared_state::StateTransfer> transfer;
    {
        std::lock_guard lock(mu_);
        op = sync_;
        if (!op || op->done || op->seq != seq) return;
        transfer = op->transfer;
        if (status.ok()) op->result.revision = revision;
    }
    // On commit too the transfer is stopped the same way: a source's sends must be drained
    // before the user may touch the buffers again.
    abortTransfer(op, transfer, status);
}

void Communicator::onSourceLost(const SharedStateSourceLost &m) {
    std::shared_ptr<shared_state::StateTransfer> transfer;
    {
        std::lock_guard lock(mu_);
        if (!sync_ || sync_->done || sync_->seq != m.seq) return;
        transfer = sync_->transfer;
    }
    data_.closePeer(m.peer, "peer removed from the run");
    if (transfer) transfer->sourceLost(m.peer);
}

std::shared_ptr<transport::DataOperation> Communicator::runningTransferLocked() const {
    if (!sync_ || sync_->done) return nullptr;
    return sync_->transfer;
}

void Communicator::finishSync(const std::shared_ptr<SyncOp> &op, Status status) {
    std::lock_guard lock(mu_);
    if (op->done) return;
    op->done = true;
    op->status = std::move(status);
    if (op->transfer) {
        op->result.txBytes = op->transfer->txBytes();
        op->result.rxBytes = op->transfer->rxBytes();
    }
    cv_.notify_all();
}

void Communicator::abortSync(const Status &status) {
    std::shared_ptr<SyncOp> op;
    std::shared_ptr<shared_state::StateTransfer> transfer;
    {
        std::lock_guard lock(mu_);
        op = sync_;
        if (!op || op->done) return;
        transfer = op->transfer;
    }
    abortTransfer(op, transfer, status);
}

void Communicator::abortTransfer(const std::shared_ptr<SyncOp> &op, std::shared_ptr<shared_state::StateTransfer> transfer,
                                 Status status) {
    if (!status.ok())
        status = Status{status.code(), status.message() + "; on this peer: " +
                                           (transfer ? transfer->progress()
                                                     : std::string("shared-state sync, waiting to start (for the plan)"))};
    if (!transfer) return finishSync(op, std::move(status));
    const uint64_t seq = op->seq;
    const std::string reason = status.message();
    transfer->abort(reason, [this, op, status = std::move(status), seq] {
        data_.unregisterSink(seq);
        finishSync(op, status);
    });
}

} // namespace pccl::peer
