#include "collectives/allreduce_ring.h"

#include <algorithm>
#include <cstring>

#include "collectives/reduce_kernels.h"
#include "util/log.h"

namespace pccl::collectives {

RingAllReduce::RingAllReduce(transport::FrameTransport &transport, RingAllReduceParams params,
                             std::function<void(Status)> onFinished)
    : DataOperation(transport, params.seq, std::move(onFinished)), p_(std::move(params)) {
    const CollectiveKind kind = p_.kind;
    elemSize_ = dataTypeSize(p_.dtype);
    accType_ = collectiveReduces(kind) ? accumType(p_.dtype, p_.op) : p_.dtype;
    accSize_ = dataTypeSize(accType_);
    const uint32_t n = std::max<uint32_t>(1, p_.worldSize);
    partition();
    size_t largest = 0;
    for (uint32_t c = 0; c < n; ++c) largest = std::max(largest, begin_[c + 1] - begin_[c]);
    // The all-reduce keeps its historical rule (count / N), which every peer computes alike.
    const size_t chunkElems = kind == CollectiveKind::AllReduce ? p_.count / n : largest;
    const size_t segmentBytes = p_.segmentBytes ? p_.segmentBytes : autoSegmentBytes(chunkElems * accSize_);
    segElems_ = std::max<size_t>(1, segmentBytes / accSize_);
    unitElems_ = (segElems_ + kUnitsPerSegment - 1) / kUnitsPerSegment;
    frameElems_ = segElems_;
    chunkFirstSegment_.resize(n + 1);
    size_t seg = 0;
    for (uint32_t c = 0; c < n; ++c) {
        chunkFirstSegment_[c] = seg;
        const size_t len = chunkBegin(c + 1) - chunkBegin(c);
        seg += (len + segElems_ - 1) / segElems_;
    }
    chunkFirstSegment_[n] = seg;
    numSegments_ = seg;
    for (int ph = 0; ph < 2; ++ph) {
        received_[ph].assign(numSegments_, 0);
        arrived_[ph].assign(numSegments_, 0);
    }
    backedUp_.assign(numSegments_, 0);
    const auto *send = static_cast<const uint8_t *>(p_.send);
    auto *recv = static_cast<uint8_t *>(p_.recv);
    switch (kind) {
        case CollectiveKind::AllGather: inPlace_ = send == recv + begin_[p_.rank] * elemSize_; break;
        case CollectiveKind::ReduceScatter:
            outBase_ = begin_[p_.rank];
            inPlace_ = recv == send + outBase_ * elemSize_;
            restores_ = inPlace_;
            break;
        case CollectiveKind::Broadcast:
            inPlace_ = send == recv;
            restores_ = inPlace_ && p_.rank != p_.root;
            break;
        case CollectiveKind::Barrier: inPlace_ = false; break;
        default: inPlace_ = send == recv, restores_ = inPlace_;
    }
    if (n > 1) {
        const uint32_t startChunk = (p_.rank + n - 1) % n;
        auto segsOf = [&](uint32_t c) { return chunkFirstSegment_[c + 1] - chunkFirstSegment_[c]; };
        if (phaseUsed(kReduceScatter)) expected_[kReduceScatter] = numSegments_ - segsOf(startChunk);
        if (phaseUsed(kAllGather)) expected_[kAllGather] = numSegments_ - segsOf(p_.rank);
        if (kind == CollectiveKind::ReduceScatter || (kind == CollectiveKind::AllReduce && accType_ != p_.dtype))
            staging_ = ScratchPool::take(p_.scratch, p_.count * accSize_);
        if (restores_) {
            const size_t own = kind == CollectiveKind::ReduceScatter ? begin_[p_.rank + 1] - begin_[p_.rank] : p_.count;
            backup_ = ScratchPool::take(p_.scratch, own * elemSize_);
        }
        if (collectiveReduces(kind) && p_.quant.algorithm != pcclQuantNone) {
            spec_ = QuantSpec{p_.quant.algorithm, p_.quant.quantized_datatype, accType_};
            qSlot_ = quantizedBytes(spec_, segElems_);
            qin_ = ScratchPool::take(p_.scratch, numSegments_ * qSlot_);
            qout_[kReduceScatter] = ScratchPool::take(p_.scratch, numSegments_ * qSlot_);
            if (kind == CollectiveKind::AllReduce) qout_[kAllGather] = ScratchPool::take(p_.scratch, numSegments_ * qSlot_);
        }
    }
}

void RingAllReduce::partition() {
    const uint32_t n = std::max<uint32_t>(1, p_.worldSize);
    begin_.assign(n + 1, 0);
    for (uint32_t c = 0; c <= n; ++c) {
        if (p_.kind == CollectiveKind::Broadcast) begin_[c] = c > p_.root ? p_.count : 0;
        else if (!p_.blocks.empty()) begin_[c] = c == 0 ? 0 : begin_[c - 1] + p_.blocks[c - 1];
        else begin_[c] = static_cast<size_t>((static_cast<unsigned __int128>(p_.count) * c) / n);
    }
}

size_t autoSegmentBytes(size_t chunkBytes) {
    constexpr size_t kMin = 1 << 20, kMax = 8 << 20, kAlign = 64 << 10;
    return std::clamp(chunkBytes / 8 / kAlign * kAlign, kMin, kMax);
}

size_t RingAllReduce::chunkBegin(uint32_t c) const { return begin_[c]; }

uint32_t RingAllReduce::chunkOf(size_t offset) const {
    // The largest c with chunkBegin(c) <= offset (chunks may be empty when count < N).
    uint32_t lo = 0, hi = p_.worldSize - 1;
    while (lo < hi) {
        const uint32_t mid = (lo + hi + 1) / 2;
        if (chunkBegin(mid) <= offset) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

size_t frameElems(size_t segElems, size_t unitElems, size_t elemBytes, int connections, size_t minBytes) {
    const size_t k = static_cast<size_t>(std::max(1, connections));
    const size_t elem = std::max<size_t>(1, elemBytes);
    size_t want = (segElems + k - 1) / k;
    if (k > 1) want = std::min(want, kMaxFrameBytes / elem);
    want = std::min(std::max(want, minBytes / elem), segElems);
    return std::max<size_t>(1, (want + unitElems - 1) / unitElems) * unitElems;
}

uint64_t RingAllReduce::fullMask(size_t segLen) const {
    const size_t units = (segLen + unitElems_ - 1) / unitElems_;
    return units >= 64 ? ~uint64_t{0} : (uint64_t{1} << units) - 1;
}

bool RingAllReduce::locate(const transport::SegmentHeader &h, FrameSpan *f) const {
    if (h.offset >= p_.count || h.phase > kAllGather || h.bytes == 0) return false;
    const uint32_t c = chunkOf(h.offset);
    const size_t begin = chunkBegin(c), end = chunkBegin(c + 1);
    const size_t k = (h.offset - begin) / segElems_;
    f->idx = chunkFirstSegment_[c] + k;
    f->segBegin = begin + k * segElems_;
    f->segLen = std::min(segElems_, end - f->segBegin);
    const size_t segEnd = f->segBegin + f->segLen;
    if (quantized()) {
        f->n = f->segLen;
        if (h.offset != f->segBegin || h.bytes != quantizedBytes(spec_, f->segLen)) return false;
    } else {
        const size_t wireElem = h.phase == kReduceScatter ? accSize_ : elemSize_;
        f->n = h.bytes / wireElem;
        if (h.bytes % wireElem || (h.offset - f->segBegin) % unitElems_ || f->n > segEnd - h.offset) return false;
        if (f->n % unitElems_ && h.offset + f->n != segEnd) return false;
    }
    const size_t a = (h.offset - f->segBegin) / unitElems_, b = (h.offset + f->n - f->segBegin + unitElems_ - 1) / unitElems_;
    f->bits = (b - a >= 64 ? ~uint64_t{0} : (uint64_t{1} << (b - a)) - 1) << a;
    return true;
}

const uint8_t *RingAllReduce::localPtr(size_t offset) const {
    if (p_.kind == CollectiveKind::AllReduce && inPlace_) return backupPtr(offset);
    if (p_.kind == CollectiveKind::AllGather)  // send holds this rank's block only
        return static_cast<const uint8_t *>(p_.send) + (offset - begin_[p_.rank]) * elemSize_;
    return static_cast<const uint8_t *>(p_.send) + offset * elemSize_;
}

uint8_t *RingAllReduce::accPtr(size_t offset) const {
    if (p_.kind != CollectiveKind::ReduceScatter && accType_ == p_.dtype) return outPtr(offset);
    return staging_.data() + offset * accSize_;
}

void RingAllReduce::backup(size_t offset, size_t n) {
    if (restores_) std::memcpy(backupPtr(offset), outPtr(offset), n * elemSize_);
}

void RingAllReduce::start() {
    std::unique_lock lock(mu_);
    if (aborted_ || finished_ || started_) return;
    started_ = true;
    frameElems_ = frameElems(segElems_, unitElems_, accSize_, transport_.connections(p_.next), p_.minFrameBytes);
    if (p_.worldSize <= 1) {
        copyAlone();
        settle(lock);
        return;
    }
    startSends(lock);
    settle(lock);
}

void RingAllReduce::copyAlone() {
    // Every kind's result on a ring of one is its own data (the one block is the whole buffer).
    if (p_.count && p_.send && p_.send != p_.recv) std::memcpy(p_.recv, p_.send, p_.count * elemSize_);
}

void RingAllReduce::startSends(std::unique_lock<std::mutex> &lock) {
    const uint32_t n = p_.worldSize;
    struct Seg {
        size_t offset, len;
    };
    auto segsOf = [&](uint32_t c) {
        std::vector<Seg> segs;
        for (size_t off = chunkBegin(c); off < chunkBegin(c + 1); off += segElems_)
            segs.push_back({off, std::min(segElems_, chunkBegin(c + 1) - off)});
        return segs;
    };
    // The reduce-scatter: this peer starts the reduction of the chunk owned by its predecessor.
    const uint32_t c = (p_.rank + n - 1) % n;
    std::vector<Seg> segs;
    if (phaseUsed(kReduceScatter)) segs = segsOf(c);
    // The all-gather of this rank's own block, or the broadcast from the root.
    std::vector<Seg> gather;
    if (p_.kind == CollectiveKind::AllGather) gather = segsOf(p_.rank);
    if (p_.kind == CollectiveKind::Broadcast && p_.rank == p_.root) gather = segsOf(p_.root);
    if (p_.kind == CollectiveKind::AllReduce)
        for (auto &s : segs) backedUp_[chunkFirstSegment_[c] + (s.offset - chunkBegin(c)) / segElems_] = 1;
    // Released as each send is queued below; the extra one covers the local copy into recv.
    inflight_ += static_cast<int>(segs.size() + gather.size()) + 1;
    auto deferred = std::move(deferred_);
    deferred_.clear();
    lock.unlock();
    for (auto &d : deferred) sendFrame(d.phase, d.offset, d.n, d.data, d.bytes, d.forward);
    if (!gather.empty() && !inPlace_) {
        const size_t first = p_.kind == CollectiveKind::AllGather ? chunkBegin(p_.rank) : 0;
        const size_t len = p_.kind == CollectiveKind::AllGather ? chunkBegin(p_.rank + 1) - first : p_.count;
        std::memcpy(outPtr(first), localPtr(first), len * elemSize_);
    }
    ioDone();
    for (auto &s : gather) {
        sendFrame(kAllGather, s.offset, s.len, outPtr(s.offset), 0, false);
        ioDone();
    }
    for (auto &s : segs) {
        if (p_.kind == CollectiveKind::AllReduce) backup(s.offset, s.len);
        if (quantized()) {
            const void *values = localPtr(s.offset);
            if (accType_ != p_.dtype) {
                toAccum(p_.dtype, p_.op, values, accPtr(s.offset), s.len);
                values = accPtr(s.offset);
            }
            const size_t idx = chunkFirstSegment_[c] + (s.offset - chunkBegin(c)) / segElems_;
            quantize(spec_, values, s.len, qout(kReduceScatter, idx));
            sendFrame(kReduceScatter, s.offset, s.len, qout(kReduceScatter, idx), quantizedBytes(spec_, s.len), false);
        } else if (accType_ == p_.dtype) {
            sendFrame(kReduceScatter, s.offset, s.len, localPtr(s.offset), 0, false);
        } else {
            toAccum(p_.dtype, p_.op, localPtr(s.offset), accPtr(s.offset), s.len);
            sendFrame(kReduceScatter, s.offset, s.len, accPtr(s.offset), 0, false);
        }
        ioDone();
    }
    lock.lock();
}

void RingAllReduce::sendFrame(Phase phase, size_t offset, size_t n, const void *data, size_t bytes, bool forward) {
    size_t cut;
    {
        std::lock_guard lock(mu_);
        if (!started_ && !aborted_) {
            deferred_.push_back({phase, offset, n, data, bytes, forward});
            return;
        }
        cut = frameElems_;
    }
    transport::SegmentHeader h;
    h.seq = p_.seq;
    h.phase = phase;
    if (bytes) {  // quantized: the segment is one frame
        h.offset = offset;
        h.bytes = static_cast<uint32_t>(bytes);
        sendCounted(p_.next, h, data, nullptr, forward);
        return;
    }
    // [offset, offset + n) lies in one segment and starts on its unit grid, and `cut` is a
    // multiple of the unit: every frame does too.
    const size_t wireElem = phase == kReduceScatter ? accSize_ : elemSize_;
    for (size_t done = 0; done < n; done += cut) {
        const size_t k = std::min(cut, n - done);
        h.offset = offset + done;
        h.bytes = static_cast<uint32_t>(k * wireElem);
        if (!sendCounted(p_.next, h, static_cast<const uint8_t *>(data) + done * wireElem, nullptr, forward)) return;
    }
}

std::string RingAllReduce::waitingForLocked() const {
    // The phase is the earliest one not complete here (the two overlap: the ring is pipelined).
    std::string s = std::string(collectiveName(p_.kind)) + " tag " + std::to_string(p_.tag) + ", ";
    auto name = [&](Phase ph) -> std::string {
        if (p_.kind == CollectiveKind::Broadcast) return "broadcast";
        return ph == kReduceScatter ? "reduce-scatter" : "all-gather";
    };
    const Phase first = phaseUsed(kReduceScatter) ? kReduceScatter : kAllGather;
    const Phase last = phaseUsed(kAllGather) ? kAllGather : kReduceScatter;
    if (!started_)
        return s + "before the " + name(first) + " phase: connecting to " + p_.nextName + " (" +
               std::to_string(got_[kReduceScatter] + got_[kAllGather]) + " segments from " + p_.prevName + " received)";
    if (got_[kReduceScatter] < expected_[kReduceScatter] || got_[kAllGather] < expected_[kAllGather]) {
        const Phase ph = got_[kReduceScatter] < expected_[kReduceScatter] ? kReduceScatter : kAllGather;
        return s + name(ph) + " phase: " + std::to_string(expected_[ph] - got_[ph]) + " of " +
               std::to_string(expected_[ph]) + " segments from " + p_.prevName + " still missing";
    }
    if (inflight_ > 0)
        return s + name(last) + " phase: every segment received, " + std::to_string(inflight_) + " sends to " +
               p_.nextName + " not yet completed";
    return s + "after the " + name(last) + " phase: every segment received and sent, waiting for the commit";
}

void RingAllReduce::restoreAfterAbortLocked() {
    if (!restores_) return;
    // Every segment whose input may have been overwritten was backed up first.
    for (uint32_t c = 0; c < p_.worldSize; ++c)
        for (size_t off = chunkBegin(c); off < chunkBegin(c + 1); off += segElems_) {
            const size_t idx = chunkFirstSegment_[c] + (off - chunkBegin(c)) / segElems_;
            if (backedUp_[idx])
                std::memcpy(outPtr(off), backupPtr(off),
                            std::min(segElems_, chunkBegin(c + 1) - off) * elemSize_);
        }
}

} // namespace pccl::collectives
