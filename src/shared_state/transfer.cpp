#include "shared_state/transfer.h"

#include <algorithm>

#include "shared_state/hashing.h"
#include "util/log.h"

namespace pccl::shared_state {

StateTransfer::StateTransfer(transport::DataPlane &plane, std::vector<LocalEntry> entries,
                             protocol::SharedStatePlan plan, TransferOptions options,
                             std::function<void(Status)> onFinished)
    : DataOperation(plane, plan.seq, std::move(onFinished)), entries_(std::move(entries)), plan_(std::move(plan)),
      options_(options) {
    for (auto &r : plan_.receive) {
        Incoming in;
        in.from = r;
        const size_t n = (entries_[r.entry].bytes + options_.segmentBytes - 1) / options_.segmentBytes;
        in.got.assign(n, 0);
        in.segmentsLeft = n;
        incoming_[r.entry] = std::move(in);
    }
    entriesLeft_ = incoming_.size();
}

void StateTransfer::start() {
    std::map<Uuid, std::pair<protocol::NetAddr, std::vector<uint32_t>>> byReceiver;
    for (auto &s : plan_.send) {
        auto &slot = byReceiver[s.peer];
        slot.first = s.addr;
        slot.second.push_back(s.entry);
    }
    {
        std::unique_lock lock(mu_);
        if (aborted_) return;
        started_ = true;
        // Entries of zero bytes are complete (and verified) on arrival of nothing. (Frames of
        // other entries may already have arrived: the sink is registered before start().)
        for (auto &[entry, in] : incoming_) {
            if (entries_[entry].bytes != 0) continue;
            if (digest(entries_[entry].data, 0) != in.from.digest) return failLocked(lock, Status{pcclRankConnectionLost, "empty entry digest mismatch"});
            --entriesLeft_;
        }
        inflight_ += static_cast<int>(byReceiver.size());  // one per pending connect
        settle(lock);
    }
    for (auto &[to, slot] : byReceiver) {
        auto self = std::static_pointer_cast<StateTransfer>(shared_from_this());
        const Uuid peer = to;
        auto list = slot.second;
        plane_.connect(peer, slot.first, options_.poolSize, options_.connectTimeout, [self, peer, list](Status st) {
            if (st.ok()) self->sendEntries(peer, list);
            else {
                std::unique_lock lock(self->mu_);
                self->failLocked(lock, st);
            }
            self->ioDone();
        });
    }
}

void StateTransfer::sendEntries(const Uuid &to, const std::vector<uint32_t> &list) {
    for (uint32_t entry : list) {
        const LocalEntry &e = entries_[entry];
        for (size_t off = 0; off < e.bytes; off += options_.segmentBytes) {
            transport::SegmentHeader h;
            h.seq = plan_.seq;
            h.phase = kPhase;
            h.offset = (static_cast<uint64_t>(entry) << kOffsetBits) | off;
            h.bytes = static_cast<uint32_t>(std::min(options_.segmentBytes, e.bytes - off));
            if (!sendCounted(to, h, static_cast<const uint8_t *>(e.data) + off)) return;
        }
    }
}

void *StateTransfer::beginFrame(const transport::SegmentHeader &h, const Uuid &from, std::string *error) {
    const uint32_t entry = static_cast<uint32_t>(h.offset >> kOffsetBits);
    const uint64_t off = h.offset & ((uint64_t{1} << kOffsetBits) - 1);
    std::lock_guard lock(mu_);
    auto it = incoming_.find(entry);
    if (h.phase != kPhase || it == incoming_.end()) {
        *error = "unexpected shared-state frame for entry " + std::to_string(entry);
        return nullptr;
    }
    Incoming &in = it->second;
    const size_t bytes = entries_[entry].bytes;
    const size_t seg = off / options_.segmentBytes;
    if (aborted_) return nullptr;  // dropped by the transport
    if (from != in.from.peer || off % options_.segmentBytes || off >= bytes ||
        h.bytes != std::min<uint64_t>(options_.segmentBytes, bytes - off) || in.got[seg]) {
        *error = "malformed, duplicate or misdirected shared-state frame for entry '" + entries_[entry].name + "'";
        return nullptr;
    }
    in.got[seg] = 1;
    ++inflight_;
    return static_cast<uint8_t *>(entries_[entry].data) + off;
}

void StateTransfer::onPayload(const transport::SegmentHeader &h) {
    rx_ += h.bytes;
    const uint32_t entry = static_cast<uint32_t>(h.offset >> kOffsetBits);
    bool complete;
    {
        std::lock_guard lock(mu_);
        complete = --incoming_.at(entry).segmentsLeft == 0 && !aborted_;
    }
    if (complete) {
        const LocalEntry &e = entries_[entry];
        const bool good = digest(e.data, e.bytes) == incoming_.at(entry).from.digest;
        std::unique_lock lock(mu_);
        if (!good) {
            failLocked(lock, Status{pcclRankConnectionLost, "entry '" + e.name + "' received from peer " +
                                                                incoming_.at(entry).from.peer.shortStr() +
                                                                " does not match its digest"});
        } else {
            --entriesLeft_;
        }
    }
    ioDone();
}

std::vector<Uuid> StateTransfer::linkedPeersLocked() const {
    std::vector<Uuid> peers;
    for (auto &[entry, in] : incoming_) peers.push_back(in.from.peer);
    for (auto &t : plan_.send) peers.push_back(t.peer);
    std::sort(peers.begin(), peers.end());
    peers.erase(std::unique(peers.begin(), peers.end()), peers.end());
    return peers;
}

std::string StateTransfer::waitingForLocked() const {
    std::string out;
    for (auto &[entry, in] : incoming_) {
        if (in.segmentsLeft == 0) continue;
        if (!out.empty()) out += ", ";
        out += "entry '" + entries_[entry].name + "' from peer " + in.from.peer.shortStr() + " (" + in.from.addr.str() +
               "), " + std::to_string(in.segmentsLeft) + " of " + std::to_string(in.got.size()) + " segments missing";
    }
    if (out.empty()) out = "sends to " + std::to_string(plan_.send.size()) + " receivers to complete";
    return "shared-state transfer round " + std::to_string(seq_) + ": " + out;
}

void StateTransfer::onPayloadFailed(const transport::SegmentHeader &, const std::string &why) {
    {
        std::unique_lock lock(mu_);
        failLocked(lock, Status{pcclRankConnectionLost, why});
    }
    ioDone();
}

} // namespace pccl::shared_state
