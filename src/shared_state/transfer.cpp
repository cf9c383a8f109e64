#include "shared_state/transfer.h"

#include <algorithm>
#include <cstring>

#include "shared_state/chunk_codec.h"
#include "shared_state/hashing.h"
#include "util/log.h"

namespace pccl::shared_state {

using protocol::kStateChunkBytes;

StateTransfer::StateTransfer(transport::DataPlane &plane, std::vector<LocalEntry> entries,
                             protocol::SharedStatePlan plan, TransferOptions options,
                             std::function<void(Status)> onFinished)
    : DataOperation(plane, plan.seq, std::move(onFinished)), plane_(plane), entries_(std::move(entries)),
      plan_(std::move(plan)), options_(options) {
    for (uint32_t i = 0; i < plan_.peers.size(); ++i) peerIndex_[plan_.peers[i].uuid] = i;
    sources_.resize(plan_.peers.size());
    for (uint32_t f = 0; f < plan_.receive.size(); ++f) {
        const auto &fetch = plan_.receive[f];
        for (size_t k = 0; k < fetch.chunks.size(); ++k) {
            Chunk c;
            c.fetch = f;
            c.entry = fetch.entry;
            c.index = fetch.chunks[k];
            c.digest = fetch.digests[k];
            chunkByKey_[chunkKey(c.entry, c.index)] = chunks_.size();
            pending_.push_back(chunks_.size());
            chunks_.push_back(c);
        }
    }
    chunksLeft_ = chunks_.size();
    for (uint32_t r : plan_.serve) served_[plan_.peers[r].uuid];
}

std::string StateTransfer::peerName(uint32_t peer) const {
    const auto &p = plan_.peers[peer];
    return "peer " + p.uuid.shortStr() + " (" + p.data_addr.str() + ")";
}

size_t StateTransfer::chunkBytes(const Chunk &c) const {
    return std::min<size_t>(kStateChunkBytes, entries_[c.entry].bytes - size_t{c.index} * kStateChunkBytes);
}

void StateTransfer::start() {
    std::vector<uint32_t> sources;
    for (auto &fetch : plan_.receive) sources.insert(sources.end(), fetch.sources.begin(), fetch.sources.end());
    std::sort(sources.begin(), sources.end());
    sources.erase(std::unique(sources.begin(), sources.end()), sources.end());
    {
        std::unique_lock lock(mu_);
        if (aborted_) return;
        started_ = true;
        settle(lock);  // a round with nothing to fetch is complete at once
    }
    auto self = std::static_pointer_cast<StateTransfer>(shared_from_this());
    for (uint32_t s : sources) {
        const auto &p = plan_.peers[s];
        plane_.connect(p.uuid, p.data_addr, options_.poolSize, options_.connectTimeout, [self, s](Status st) {
            {
                std::lock_guard lock(self->mu_);
                if (st.ok()) self->sources_[s].connected = true;
                else self->dropSourceLocked(s, st.message());
            }
            self->pump();
        });
    }
    for (uint32_t r : plan_.serve) {
        const auto &p = plan_.peers[r];
        const Uuid to = p.uuid;
        plane_.connect(to, p.data_addr, options_.poolSize, options_.connectTimeout, [self, to](Status st) {
            std::vector<uint64_t> waiting;
            {
                std::lock_guard lock(self->mu_);
                auto &served = self->served_.at(to);
                if (!st.ok()) {
                    // The receiver is unreachable: it will find other sources (or time out).
                    PCCL_LOG(Info, "shared state: cannot serve " << to.shortStr() << ": " << st.message());
                    served.waiting.clear();
                    return;
                }
                served.ready = true;
                waiting.swap(served.waiting);
            }
            for (uint64_t key : waiting) self->serve(to, key);
        });
    }
}

void StateTransfer::sourceLost(const Uuid &peer) {
    {
        std::lock_guard lock(mu_);
        auto it = peerIndex_.find(peer);
        if (it == peerIndex_.end()) return;
        dropSourceLocked(it->second, "removed from the run");
    }
    pump();
}

void StateTransfer::dropSourceLocked(uint32_t peer, const std::string &why) {
    Source &s = sources_[peer];
    if (!s.unusable) {
        s.unusable = true;
        s.why = why;
        PCCL_LOG(Info, "shared state: no longer fetching from " << peerName(peer) << ": " << why);
    }
    // Chunks asked of it whose frame has not begun will never come; those being read fail with
    // their connection.
    for (auto &c : chunks_)
        if (c.source == static_cast<int>(peer) && c.state == ChunkState::Requested) requeueLocked(c, "");
}

void StateTransfer::requeueLocked(Chunk &c, const std::string &why) {
    if (c.source >= 0) {
        --sources_[c.source].outstanding;
        --outstanding_;
        if (!why.empty() && !sources_[c.source].unusable) {
            sources_[c.source].unusable = true;
            sources_[c.source].why = why;
            PCCL_LOG(Warn, "shared state: dropping " << peerName(c.source) << " as a source: " << why);
        }
    }
    if (c.slot >= 0) freeSlots_.push_back(c.slot);
    c.source = c.slot = -1;
    c.state = ChunkState::Pending;
    pending_.push_front(static_cast<size_t>(&c - chunks_.data()));
}

std::vector<StateTransfer::Request> StateTransfer::nextRequestsLocked(std::unique_lock<std::mutex> &lock) {
    std::vector<Request> out;
    if (aborted_ || finished_) return out;
    // Look a bounded distance into the queue: chunks of entries with other sources may be
    // servable while the head waits.
    for (size_t scanned = 0; scanned < pending_.size() && scanned < 64 && outstanding_ < options_.maxOutstanding;) {
        Chunk &c = chunks_[pending_[scanned]];
        if (c.state != ChunkState::Pending) {  // stale queue entry
            pending_.erase(pending_.begin() + static_cast<long>(scanned));
            continue;
        }
        const auto &candidates = plan_.receive[c.fetch].sources;
        int best = -1;
        bool possible = false;
        for (uint32_t s : candidates) {
            const Source &src = sources_[s];
            if (src.unusable) continue;
            possible = true;
            if (!src.connected || src.outstanding >= options_.perSource) continue;
            if (best < 0 || src.outstanding < sources_[best].outstanding) best = static_cast<int>(s);
        }
        if (!possible) {
            std::string why = "no source left for chunk " + std::to_string(c.index) + " of entry '" +
                              entries_[c.entry].name + "':";
            for (uint32_t s : candidates) why += " " + peerName(s) + ": " + sources_[s].why + ";";
            failLocked(lock, Status{pcclRankConnectionLost, why + " (" + waitingForLocked() + ")"});
            return {};
        }
        if (best < 0) {
            ++scanned;
            continue;
        }
        if (freeSlots_.empty()) {
            slots_.emplace_back();
            slots_.back().wire.resize(compressedBound(kStateChunkBytes));
            freeSlots_.push_back(static_cast<int>(slots_.size() - 1));
        }
        c.slot = freeSlots_.back();
        freeSlots_.pop_back();
        c.source = best;
        c.state = ChunkState::Requested;
        ++sources_[best].outstanding;
        ++outstanding_;
        pending_.erase(pending_.begin() + static_cast<long>(scanned));
        transport::SegmentHeader h;
        h.seq = seq_;
        h.offset = chunkKey(c.entry, c.index);
        h.bytes = 0;
        h.phase = kRequest;
        out.push_back({static_cast<uint32_t>(best), h});
    }
    return out;
}

void StateTransfer::pump() {
    for (;;) {
        std::vector<Request> requests;
        {
            std::unique_lock lock(mu_);
            requests = nextRequestsLocked(lock);
        }
        if (requests.empty()) return;
        for (auto &r : requests)
            if (!sendCounted(plan_.peers[r.peer].uuid, r.header, nullptr)) return;
    }
}

void StateTransfer::sendFailedLocked(std::unique_lock<std::mutex> &, const Uuid &to, const transport::SegmentHeader &h,
                                     const std::string &why) {
    if (h.phase != kRequest) return;  // a chunk this peer served: the receiver's loss, not ours
    auto it = chunkByKey_.find(h.offset);
    if (it == chunkByKey_.end()) return;
    Chunk &c = chunks_[it->second];
    auto p = peerIndex_.find(to);
    if (c.state == ChunkState::Requested && p != peerIndex_.end() && c.source == static_cast<int>(p->second))
        requeueLocked(c, "request failed: " + why);
}

void StateTransfer::serve(const Uuid &to, uint64_t key) {
    const uint32_t entry = static_cast<uint32_t>(key >> kOffsetBits);
    const uint32_t index = static_cast<uint32_t>(key & ((uint64_t{1} << kOffsetBits) - 1));
    const LocalEntry &e = entries_[entry];
    const auto *data = static_cast<const uint8_t *>(e.data) + size_t{index} * kStateChunkBytes;
    const size_t bytes = std::min<size_t>(kStateChunkBytes, e.bytes - size_t{index} * kStateChunkBytes);
    transport::SegmentHeader h;
    h.seq = seq_;
    h.offset = key;
    h.phase = kChunkRaw;
    h.bytes = static_cast<uint32_t>(bytes);
    if (options_.compressionLevel > 0) {
        auto packed = std::make_shared<std::vector<uint8_t>>();
        if (compressIfSmaller(data, bytes, options_.compressionLevel, packed.get())) {
            h.phase = kChunkZstd;
            h.bytes = static_cast<uint32_t>(packed->size());
            const void *wire = packed->data();
            sendCounted(to, h, wire, std::move(packed));
            return;
        }
    }
    sendCounted(to, h, data);
}

void *StateTransfer::beginFrame(const transport::SegmentHeader &h, const Uuid &from, std::string *error) {
    if (h.phase == kRequest) {
        const ChunkRef ref = splitChunkKey(h.offset);
        bool now = false;
        {
            std::lock_guard lock(mu_);
            auto it = served_.find(from);
            if (it == served_.end() || !parseRequest(h, entries_)) {
                *error = "unexpected shared-state request for entry " + std::to_string(ref.entry) + " chunk " +
                         std::to_string(ref.index);
                return nullptr;
            }
            if (aborted_) return nullptr;
            if (it->second.ready) now = true;
            else it->second.waiting.push_back(h.offset);
        }
        if (now) serve(from, h.offset);
        return nullptr;  // nothing to read: the request is the header
    }
    if (h.phase != kChunkRaw && h.phase != kChunkZstd) {
        *error = "unexpected shared-state frame phase " + std::to_string(h.phase);
        return nullptr;
    }
    std::lock_guard lock(mu_);
    auto it = chunkByKey_.find(h.offset);
    if (it == chunkByKey_.end()) {
        *error = "shared-state chunk this peer never asked for";
        return nullptr;
    }
    Chunk &c = chunks_[it->second];
    auto p = peerIndex_.find(from);
    // A chunk taken back from its source (which was dropped meanwhile) may still arrive: ignore it.
    if (aborted_ || c.state != ChunkState::Requested || p == peerIndex_.end() || c.source != static_cast<int>(p->second))
        return nullptr;
    const size_t expect = chunkBytes(c);
    if (!chunkSizeOk(h.phase, h.bytes, expect, slots_[c.slot].wire.size())) {
        *error = "shared-state chunk " + std::to_string(c.index) + " of entry '" + entries_[c.entry].name +
                 "' has the wrong size";
        return nullptr;
    }
    c.state = ChunkState::Reading;
    ++inflight_;
    return slots_[c.slot].wire.data();
}

void StateTransfer::onPayload(const transport::SegmentHeader &h) {
    rx_ += h.bytes;
    Chunk *c;
    Slot *slot;
    size_t bytes;
    {
        std::lock_guard lock(mu_);
        c = &chunks_[chunkByKey_.at(h.offset)];
        slot = &slots_[c->slot];
        bytes = chunkBytes(*c);
    }
    // This chunk's slot belongs to this read alone until it is released below.
    const uint8_t *plain = nullptr;
    if (h.phase == kChunkZstd) slot->plain.resize(kStateChunkBytes);
    Status st = decodeChunk(h.phase, slot->wire.data(), h.bytes, bytes, slot->plain.data(), &plain);
    if (st.ok() && digest(plain, bytes) != c->digest) st = Status{pcclRankConnectionLost, "digest mismatch"};
    if (st.ok()) std::memcpy(static_cast<uint8_t *>(entries_[c->entry].data) + size_t{c->index} * kStateChunkBytes, plain, bytes);
    {
        std::lock_guard lock(mu_);
        if (st.ok()) {
            --sources_[c->source].outstanding;
            --outstanding_;
            freeSlots_.push_back(c->slot);
            c->source = c->slot = -1;
            c->state = ChunkState::Done;
            --chunksLeft_;
        } else {
            requeueLocked(*c, "chunk " + std::to_string(c->index) + " of entry '" + entries_[c->entry].name +
                                  "' failed verification (" + st.message() + ")");
        }
    }
    pump();
    ioDone();
}

void StateTransfer::onPayloadFailed(const transport::SegmentHeader &h, const std::string &why) {
    {
        std::lock_guard lock(mu_);
        requeueLocked(chunks_[chunkByKey_.at(h.offset)], why);
    }
    pump();
    ioDone();
}

std::vector<Uuid> StateTransfer::linkedPeersLocked() const {
    std::vector<Uuid> peers;
    for (auto &p : plan_.peers) peers.push_back(p.uuid);
    return peers;
}

std::string StateTransfer::waitingForLocked() const {
    std::string s = "shared-state sync revision " + std::to_string(plan_.revision) + ", transfer phase: ";
    if (chunks_.empty()) s += "serving " + std::to_string(served_.size()) + " peer(s), nothing to fetch";
    else if (chunksLeft_ == 0) s += "every chunk received, waiting for the commit";
    else s += std::to_string(chunksLeft_) + " of " + std::to_string(chunks_.size()) + " chunks missing";
    for (uint32_t i = 0; i < sources_.size(); ++i)
        if (sources_[i].outstanding) s += "; " + std::to_string(sources_[i].outstanding) + " asked of " + peerName(i);
    return s;
}

} // namespace pccl::shared_state
