// Communicator: the driver's side of pcclSynchronizeSharedState (docs/shared_state.md) and of
// the bandwidth probe: hashing on the calling thread, the transfer and the probe on the data
// plane. The decisions are the Session's (session_master.cpp).
#include "collectives/reduce_kernels.h"
#include "peer/communicator.h"
#include "shared_state/hashing.h"
#include "transport/bandwidth_probe.h"
#include "util/log.h"

namespace pccl::peer {

using namespace protocol;

Result<SyncResult> Communicator::syncSharedState(const std::vector<SyncEntry> &entries, uint64_t revision,
                                                 pcclSharedStateSyncStrategy_t strategy) {
    SharedStateSync msg;
    msg.revision = revision;
    msg.strategy = static_cast<uint8_t>(strategy);
    std::vector<shared_state::LocalEntry> local;
    std::vector<uint64_t> entryBytes;
    std::vector<std::pair<const void *, size_t>> spans;
    for (auto &e : entries) {
        const size_t bytes = e.count * collectives::dataTypeSize(e.dtype);
        spans.push_back({e.data, bytes});
        local.push_back({e.name, e.data, bytes});
        entryBytes.push_back(bytes);
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
    auto [st, reply] = call([this, msg = std::move(msg), local = std::move(local),
                             entryBytes = std::move(entryBytes)](Session &s, RequestId id) mutable {
        auto out = s.syncSharedState(id, std::move(msg), std::move(entryBytes));
        // Accepted (no answer yet): the transfer, when the plan comes, works on these entries.
        if (out.empty() || !std::holds_alternative<Complete>(out.back())) syncEntries_ = std::move(local);
        return out;
    });
    PCCL_RETURN_IF_ERROR(st);
    return std::get<SyncResult>(reply);
}

void Communicator::startTransfer(const StartTransfer &a) {
    shared_state::TransferOptions o;
    o.poolSize = options_.poolSize;
    o.connectTimeout = options_.connectTimeout;
    o.compressionLevel = options_.stateCompressionLevel;
    const uint64_t seq = a.plan.seq;
    transfer_ = std::make_shared<shared_state::StateTransfer>(data_, syncEntries_, a.plan, o, [this, seq](Status st) {
        post([seq, st = std::move(st)](Session &s) { return s.onTransferFinished(seq, st); });
    });
    data_.registerSink(seq, transfer_);  // receivers get chunks, sources get requests
    transfer_->start();
}

// On commit too the transfer is stopped this way: a source's sends must be drained before the
// user may touch the buffers again.
void Communicator::stopTransfer(const StopTransfer &a) {
    auto transfer = transfer_;
    if (!transfer) {
        run([a](Session &s) { return s.onTransferStopped(a.seq, a.status, {}); });
        return;
    }
    Status st = a.status.ok() ? a.status
                              : Status{a.status.code(), a.status.message() + "; on this peer: " + transfer->progress()};
    const std::string reason = st.message();
    transfer->abort(reason, [this, transfer, st = std::move(st), seq = a.seq] {
        OpStats stats{transfer->txBytes(), transfer->rxBytes(), 0};
        post([this, st, stats, seq](Session &s) {
            data_.unregisterSink(seq);
            transfer_.reset();
            syncEntries_.clear();
            return s.onTransferStopped(seq, st, stats);
        });
    });
}

void Communicator::startProbe(const BandwidthProbe &m) {
    const auto window = std::chrono::milliseconds(m.window_ms);
    // Every peer streams to every other at once for the whole window (links are measured in
    // parallel); rates come from the second half, after slow start. 32 KiB frames, 16 queued
    // per connection of the pool: the socket buffers stay full, and a 15 Mbit/s link still
    // completes ~60 frames in the measured second.
    const auto start = std::chrono::steady_clock::now();
    auto probe = std::make_shared<transport::BandwidthProbe>(data_, m.seq, size_t{32} << 10, 16 * options_.poolSize,
                                                             start + window / 2, start + window);
    data_.registerSink(m.seq, probe);
    Uuid self;
    {
        std::lock_guard lock(sessionMu_);
        self = session_.self();
    }
    for (const RingMember &to : m.peers)
        if (to.uuid != self) probe->sendTo(to.uuid, to.data_addr, options_.poolSize, options_.connectTimeout, start + window);
    // At the end of the window the frames still queued are dropped: on a slow link they would
    // hold up the next collective on the same connections for seconds. Frames already in the
    // sockets still arrive and count; then report.
    control_.after(window, [this, seq = m.seq] { data_.cancelSends(seq); });
    control_.after(window + std::chrono::milliseconds(300), [this, probe, round = m.round, seq = m.seq] {
        BandwidthReport report{round, {}, {}};
        for (auto &[from, rate] : probe->rates()) {
            report.from.push_back(from);
            report.bytes_per_s.push_back(rate);
        }
        data_.unregisterSink(seq);
        const OpStats bytes{probe->sentBytes(), probe->receivedBytes(), 0};
        run([round, report = std::move(report), bytes](Session &s) { return s.onProbeDone(round, report, bytes); });
    });
}

} // namespace pccl::peer
