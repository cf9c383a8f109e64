#include "collectives/allreduce_ring.h"

#include <algorithm>
#include <cstring>

#include "collectives/reduce_kernels.h"
#include "util/log.h"

namespace pccl::collectives {

RingAllReduce::RingAllReduce(transport::FrameTransport &transport, RingAllReduceParams params,
                             std::function<void(Status)> onFinished)
    : DataOperation(transport, params.seq, std::move(onFinished)), p_(std::move(params)) {
    elemSize_ = dataTypeSize(p_.dtype);
    accType_ = accumType(p_.dtype, p_.op);
    accSize_ = dataTypeSize(accType_);
    inPlace_ = p_.send == p_.recv;
    const uint32_t n = p_.worldSize;
    const size_t segmentBytes = p_.segmentBytes ? p_.segmentBytes : autoSegmentBytes(p_.count / std::max<uint32_t>(1, n) * accSize_);
    segElems_ = std::max<size_t>(1, segmentBytes / accSize_);
    chunkFirstSegment_.resize(n + 1);
    size_t seg = 0;
    for (uint32_t c = 0; c < n; ++c) {
        chunkFirstSegment_[c] = seg;
        const size_t len = chunkBegin(c + 1) - chunkBegin(c);
        seg += (len + segElems_ - 1) / segElems_;
    }
    chunkFirstSegment_[n] = seg;
    numSegments_ = seg;
    received_[0].assign(numSegments_, 0);
    received_[1].assign(numSegments_, 0);
    backedUp_.assign(numSegments_, 0);
    if (n > 1) {
        const uint32_t startChunk = (p_.rank + n - 1) % n;
        expected_[kReduceScatter] = numSegments_ - (chunkFirstSegment_[startChunk + 1] - chunkFirstSegment_[startChunk]);
        expected_[kAllGather] = numSegments_ - (chunkFirstSegment_[p_.rank + 1] - chunkFirstSegment_[p_.rank]);
        if (accType_ != p_.dtype) staging_ = ScratchPool::take(p_.scratch, p_.count * accSize_);
        if (inPlace_) backup_ = ScratchPool::take(p_.scratch, p_.count * elemSize_);
        if (p_.quant.algorithm != pcclQuantNone) {
            spec_ = QuantSpec{p_.quant.algorithm, p_.quant.quantized_datatype, accType_};
            qSlot_ = quantizedBytes(spec_, segElems_);
            qin_ = ScratchPool::take(p_.scratch, numSegments_ * qSlot_);
            for (auto &q : qout_) q = ScratchPool::take(p_.scratch, numSegments_ * qSlot_);
        }
    }
}

size_t autoSegmentBytes(size_t chunkBytes) {
    constexpr size_t kMin = 1 << 20, kMax = 8 << 20, kAlign = 64 << 10;
    return std::clamp(chunkBytes / 8 / kAlign * kAlign, kMin, kMax);
}

size_t RingAllReduce::chunkBegin(uint32_t c) const {
    return static_cast<size_t>((static_cast<unsigned __int128>(p_.count) * c) / p_.worldSize);
}

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

size_t RingAllReduce::segmentIndex(size_t offset, size_t *length) const {
    if (offset >= p_.count) return SIZE_MAX;
    const uint32_t c = chunkOf(offset);
    const size_t begin = chunkBegin(c), end = chunkBegin(c + 1);
    if ((offset - begin) % segElems_ != 0) return SIZE_MAX;
    *length = std::min(segElems_, end - offset);
    return chunkFirstSegment_[c] + (offset - begin) / segElems_;
}

const uint8_t *RingAllReduce::localPtr(size_t offset) const {
    if (inPlace_) return backup_.data() + offset * elemSize_;
    return static_cast<const uint8_t *>(p_.send) + offset * elemSize_;
}

uint8_t *RingAllReduce::accPtr(size_t offset) const {
    if (accType_ == p_.dtype) return outPtr(offset);
    return staging_.data() + offset * accSize_;
}

void RingAllReduce::backup(size_t offset, size_t n) {
    if (inPlace_) std::memcpy(backup_.data() + offset * elemSize_, outPtr(offset), n * elemSize_);
}

void RingAllReduce::start() {
    const uint32_t n = p_.worldSize;
    std::unique_lock lock(mu_);
    if (aborted_ || finished_ || started_) return;
    started_ = true;
    if (n == 1) {
        if (!inPlace_) std::memcpy(p_.recv, p_.send, p_.count * elemSize_);
        settle(lock);
        return;
    }
    // This peer starts the reduction of the chunk owned by its predecessor.
    const uint32_t c = (p_.rank + n - 1) % n;
    struct Seg {
        size_t offset, len;
    };
    std::vector<Seg> segs;
    for (size_t off = chunkBegin(c); off < chunkBegin(c + 1); off += segElems_)
        segs.push_back({off, std::min(segElems_, chunkBegin(c + 1) - off)});
    for (auto &s : segs) {
        const size_t idx = chunkFirstSegment_[c] + (s.offset - chunkBegin(c)) / segElems_;
        backedUp_[idx] = 1;
    }
    inflight_ += static_cast<int>(segs.size());  // released as each send is queued below
    auto deferred = std::move(deferred_);
    deferred_.clear();
    lock.unlock();
    for (auto &d : deferred) sendFrame(d.phase, d.offset, d.n, d.data, d.bytes);
    for (auto &s : segs) {
        backup(s.offset, s.len);
        if (quantized()) {
            const void *values = localPtr(s.offset);
            if (accType_ != p_.dtype) {
                toAccum(p_.dtype, p_.op, values, accPtr(s.offset), s.len);
                values = accPtr(s.offset);
            }
            const size_t idx = chunkFirstSegment_[c] + (s.offset - chunkBegin(c)) / segElems_;
            quantize(spec_, values, s.len, qout(kReduceScatter, idx));
            sendFrame(kReduceScatter, s.offset, s.len, qout(kReduceScatter, idx), quantizedBytes(spec_, s.len));
        } else if (accType_ == p_.dtype) {
            sendFrame(kReduceScatter, s.offset, s.len, localPtr(s.offset));
        } else {
            toAccum(p_.dtype, p_.op, localPtr(s.offset), accPtr(s.offset), s.len);
            sendFrame(kReduceScatter, s.offset, s.len, accPtr(s.offset));
        }
        ioDone();
    }
    lock.lock();
    settle(lock);
}

void RingAllReduce::sendFrame(Phase phase, size_t offset, size_t n, const void *data, size_t bytes) {
    {
        std::lock_guard lock(mu_);
        if (!started_ && !aborted_) {
            deferred_.push_back({phase, offset, n, data, bytes});
            return;
        }
    }
    transport::SegmentHeader h;
    h.seq = p_.seq;
    h.offset = offset;
    h.phase = phase;
    h.bytes = static_cast<uint32_t>(bytes ? bytes : n * (phase == kReduceScatter ? accSize_ : elemSize_));
    sendCounted(p_.next, h, data);
}

void *RingAllReduce::beginFrame(const transport::SegmentHeader &h, const Uuid &from, std::string *error) {
    const uint32_t n = p_.worldSize;
    if (from != p_.prev) {
        *error = "frame for operation " + std::to_string(p_.seq) + " from " + from.shortStr() +
                 ", expected the ring predecessor " + p_.prev.shortStr();
        return nullptr;
    }
    if (h.phase > kAllGather) {
        *error = "unknown phase " + std::to_string(h.phase);
        return nullptr;
    }
    size_t len = 0;
    const size_t idx = segmentIndex(h.offset, &len);
    const size_t wireElem = h.phase == kReduceScatter ? accSize_ : elemSize_;
    if (idx == SIZE_MAX || h.bytes != (quantized() ? quantizedBytes(spec_, len) : len * wireElem)) {
        *error = "frame at offset " + std::to_string(h.offset) + " with " + std::to_string(h.bytes) +
                 " bytes does not match the segmentation of operation " + std::to_string(p_.seq);
        return nullptr;
    }
    const uint32_t c = chunkOf(h.offset);
    const bool expected = h.phase == kReduceScatter ? c != (p_.rank + n - 1) % n : c != p_.rank;
    std::lock_guard lock(mu_);
    // An all-gather frame can only follow this peer's reduce-scatter work on the same segment.
    if (!expected || received_[h.phase][idx] || (h.phase == kAllGather && !backedUp_[idx])) {
        *error = "unexpected or duplicate frame at offset " + std::to_string(h.offset);
        return nullptr;
    }
    if (aborted_) return nullptr;  // dropped by the transport
    received_[h.phase][idx] = 1;
    ++inflight_;
    if (h.phase == kReduceScatter) {
        // First touch of this segment: save the in-place input before it is overwritten.
        if (!backedUp_[idx]) {
            backedUp_[idx] = 1;
            backup(h.offset, len);
        }
        return quantized() ? qin(idx) : accPtr(h.offset);
    }
    return quantized() ? qin(idx) : outPtr(h.offset);
}

bool RingAllReduce::onQuantizedPayload(const transport::SegmentHeader &h, size_t idx, size_t len, uint32_t c) {
    const uint32_t n = p_.worldSize;
    if (!dequantize(spec_, qin(idx), len, accPtr(h.offset))) return false;
    if (h.phase == kAllGather) {
        fromAccum(p_.dtype, accPtr(h.offset), outPtr(h.offset), len);
        // Forward the very bytes the owner produced: every peer decodes the same frame.
        if ((p_.rank + 1) % n != c) sendFrame(kAllGather, h.offset, len, qin(idx), h.bytes);
        return true;
    }
    if (c != p_.rank) {
        accumulate(p_.dtype, p_.op, accPtr(h.offset), localPtr(h.offset), len);
        quantize(spec_, accPtr(h.offset), len, qout(kReduceScatter, idx));
        sendFrame(kReduceScatter, h.offset, len, qout(kReduceScatter, idx), h.bytes);
        return true;
    }
    // The owner: the final value, quantized once more for the all-gather; the owner keeps what
    // the others will decode, so that every peer ends with the same bytes.
    finish(p_.dtype, p_.op, accPtr(h.offset), localPtr(h.offset), outPtr(h.offset), len, n);
    if (accType_ != p_.dtype) toAccum(p_.dtype, pcclSum, outPtr(h.offset), accPtr(h.offset), len);
    quantize(spec_, accPtr(h.offset), len, qout(kAllGather, idx));
    dequantize(spec_, qout(kAllGather, idx), len, accPtr(h.offset));
    fromAccum(p_.dtype, accPtr(h.offset), outPtr(h.offset), len);
    sendFrame(kAllGather, h.offset, len, qout(kAllGather, idx), h.bytes);
    return true;
}

void RingAllReduce::onPayload(const transport::SegmentHeader &h) {
    const uint32_t n = p_.worldSize;
    rx_ += h.bytes;
    size_t len = 0;
    segmentIndex(h.offset, &len);
    const uint32_t c = chunkOf(h.offset);
    bool aborted;
    {
        std::lock_guard lock(mu_);
        aborted = aborted_;
    }
    if (!aborted && quantized()) {
        const size_t idx = segmentIndex(h.offset, &len);
        if (!onQuantizedPayload(h, idx, len, c)) {
            std::unique_lock lock(mu_);
            failLocked(lock, Status{pcclRankConnectionLost,
                                    "malformed quantized frame from " + p_.prevName + " (" + waitingForLocked() + ")"});
        }
    } else if (!aborted) {
        if (h.phase == kReduceScatter) {
            if (c == p_.rank) {
                finish(p_.dtype, p_.op, accPtr(h.offset), localPtr(h.offset), outPtr(h.offset), len, n);
                sendFrame(kAllGather, h.offset, len, outPtr(h.offset));
            } else {
                accumulate(p_.dtype, p_.op, accPtr(h.offset), localPtr(h.offset), len);
                sendFrame(kReduceScatter, h.offset, len, accPtr(h.offset));
            }
        } else if ((p_.rank + 1) % n != c) {
            sendFrame(kAllGather, h.offset, len, outPtr(h.offset));
        }
    }
    {
        std::lock_guard lock(mu_);
        ++got_[h.phase];
    }
    ioDone();
}

void RingAllReduce::onPayloadFailed(const transport::SegmentHeader &, const std::string &why) {
    {
        std::unique_lock lock(mu_);
        failLocked(lock, Status{pcclRankConnectionLost, why + " (from " + p_.prevName + "; " + waitingForLocked() + ")"});
    }
    ioDone();
}

void RingAllReduce::sendFailedLocked(std::unique_lock<std::mutex> &lock, const Uuid &, const transport::SegmentHeader &,
                                     const std::string &why) {
    failLocked(lock, Status{pcclRankConnectionLost, why + " (to " + p_.nextName + "; " + waitingForLocked() + ")"});
}

std::string RingAllReduce::waitingForLocked() const {
    // The phase is the earliest one not complete here (the two overlap: the ring is pipelined).
    std::string s = "all-reduce tag " + std::to_string(p_.tag) + ", ";
    if (!started_)
        return s + "before the reduce-scatter phase: connecting to " + p_.nextName + " (" +
               std::to_string(got_[kReduceScatter]) + " segments from " + p_.prevName + " received)";
    if (got_[kReduceScatter] < expected_[kReduceScatter] || got_[kAllGather] < expected_[kAllGather]) {
        const Phase ph = got_[kReduceScatter] < expected_[kReduceScatter] ? kReduceScatter : kAllGather;
        s += ph == kReduceScatter ? "reduce-scatter" : "all-gather";
        return s + " phase: " + std::to_string(expected_[ph] - got_[ph]) + " of " + std::to_string(expected_[ph]) +
               " segments from " + p_.prevName + " still missing";
    }
    if (inflight_ > 0)
        return s + "all-gather phase: every segment received, " + std::to_string(inflight_) + " sends to " +
               p_.nextName + " not yet completed";
    return s + "after the all-gather phase: every segment received and sent, waiting for the commit";
}

void RingAllReduce::restoreAfterAbortLocked() {
    if (!inPlace_) return;
    // Every segment whose input may have been overwritten was backed up first.
    for (uint32_t c = 0; c < p_.worldSize; ++c)
        for (size_t off = chunkBegin(c); off < chunkBegin(c + 1); off += segElems_) {
            const size_t idx = chunkFirstSegment_[c] + (off - chunkBegin(c)) / segElems_;
            if (backedUp_[idx])
                std::memcpy(outPtr(off), backup_.data() + off * elemSize_,
                            std::min(segElems_, chunkBegin(c + 1) - off) * elemSize_);
        }
}

} // namespace pccl::collectives
