// The frame side of the ring engine (allreduce_ring.h): what arrives from the predecessor is
// checked against the operation's segmentation and phase, received in place, reduced or stored,
// and forwarded. Runs on the transport's threads.
#include "collectives/allreduce_ring.h"

#include <algorithm>
#include <cstring>

#include "collectives/reduce_kernels.h"

namespace pccl::collectives {

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
    if (!phaseUsed(static_cast<Phase>(h.phase))) {
        *error = "phase " + std::to_string(h.phase) + " is not part of a " + collectiveName(p_.kind);
        return nullptr;
    }
    FrameSpan f;
    if (!locate(h, &f)) {
        *error = "frame at offset " + std::to_string(h.offset) + " with " + std::to_string(h.bytes) +
                 " bytes does not match the segmentation of operation " + std::to_string(p_.seq);
        return nullptr;
    }
    const size_t idx = f.idx;
    const uint32_t c = chunkOf(h.offset);
    const bool expected = h.phase == kReduceScatter ? c != (p_.rank + n - 1) % n : c != p_.rank;
    std::lock_guard lock(mu_);
    // In an all-reduce, an all-gather frame can only follow this peer's reduce-scatter work on the
    // same segment.
    const bool early = p_.kind == CollectiveKind::AllReduce && h.phase == kAllGather && !backedUp_[idx];
    if (!expected || (received_[h.phase][idx] & f.bits) || early) {
        *error = "unexpected or duplicate frame at offset " + std::to_string(h.offset);
        return nullptr;
    }
    if (aborted_) return nullptr;  // dropped by the transport
    received_[h.phase][idx] |= f.bits;
    ++inflight_;
    // First touch of a segment whose in-place input is about to be overwritten: save it (an
    // all-reduce's partial lands in the buffer; a reduce-scatter's own block is finished in place;
    // a broadcast's receiver stores the root's data over its own).
    const bool touches = h.phase == kReduceScatter ? p_.kind == CollectiveKind::AllReduce || c == p_.rank
                                                   : p_.kind == CollectiveKind::Broadcast;
    if (touches && !backedUp_[idx]) {
        backedUp_[idx] = 1;
        backup(f.segBegin, f.segLen);  // the whole segment: its other frames may come on other connections
    }
    if (h.phase == kReduceScatter) return quantized() ? qin(idx) : accPtr(h.offset);
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
    // The owner: the final value (a reduce-scatter ends here), quantized once more for the
    // all-gather; the owner keeps what the others will decode, so that every peer ends with the
    // same bytes.
    finish(p_.dtype, p_.op, accPtr(h.offset), localPtr(h.offset), outPtr(h.offset), len, n);
    if (p_.kind == CollectiveKind::ReduceScatter) return true;
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
    FrameSpan f;
    locate(h, &f);  // checked by beginFrame
    const size_t len = f.n;
    const uint32_t c = chunkOf(h.offset);
    bool aborted;
    {
        std::lock_guard lock(mu_);
        aborted = aborted_;
    }
    if (!aborted && quantized()) {
        if (!onQuantizedPayload(h, f.idx, len, c)) {
            std::unique_lock lock(mu_);
            failLocked(lock, Status{pcclRankConnectionLost,
                                    "malformed quantized frame from " + p_.prevName + " (" + waitingForLocked() + ")"});
        }
    } else if (!aborted) {
        if (h.phase == kReduceScatter) {
            if (c == p_.rank) {
                finish(p_.dtype, p_.op, accPtr(h.offset), localPtr(h.offset), outPtr(h.offset), len, n);
                if (p_.kind == CollectiveKind::AllReduce) sendFrame(kAllGather, h.offset, len, outPtr(h.offset));
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
        arrived_[h.phase][f.idx] |= f.bits;
        if (arrived_[h.phase][f.idx] == fullMask(f.segLen)) ++got_[h.phase];
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

} // namespace pccl::collectives
