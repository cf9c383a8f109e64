#include "transport/bandwidth_probe.h"

#include <vector>

namespace pccl::transport {

namespace {

constexpr uint8_t kProbePhase = 7;
constexpr size_t kMaxProbeFrame = 1 << 20;

const uint8_t *zeros() {
    static const std::vector<uint8_t> buffer(kMaxProbeFrame, 0);
    return buffer.data();
}

} // namespace

BandwidthProbe::BandwidthProbe(DataPlane &plane, uint64_t seq, size_t frameBytes, int depth,
                               std::chrono::steady_clock::time_point measureFrom,
                               std::chrono::steady_clock::time_point measureTo)
    : plane_(plane), seq_(seq), frameBytes_(std::min(frameBytes, kMaxProbeFrame)), depth_(depth),
      measureFrom_(measureFrom), measureTo_(std::max(measureTo, measureFrom)) {}

void BandwidthProbe::sendTo(const Uuid &to, const protocol::NetAddr &addr, int poolSize,
                            std::chrono::milliseconds connectTimeout, std::chrono::steady_clock::time_point until) {
    auto self = shared_from_this();
    plane_.connect(to, addr, poolSize, connectTimeout, [self, to, until](Status st) {
        if (!st.ok()) return;  // nothing arrives at `to`: it reports 0 for this link
        for (int i = 0; i < self->depth_; ++i) self->pump(to, until);
    });
}

void BandwidthProbe::pump(const Uuid &to, std::chrono::steady_clock::time_point until) {
    if (std::chrono::steady_clock::now() >= until) return;
    SegmentHeader h;
    h.seq = seq_;
    h.phase = kProbePhase;
    h.bytes = static_cast<uint32_t>(frameBytes_);
    auto self = shared_from_this();
    plane_.send(to, h, zeros(), [self, to, until](bool ok, const std::string &) {
        if (!ok) return;
        self->sent_.fetch_add(self->frameBytes_, std::memory_order_relaxed);
        self->pump(to, until);
    });
}

void *BandwidthProbe::beginFrame(const SegmentHeader &h, const Uuid &, std::string *error) {
    if (h.phase != kProbePhase) *error = "unexpected frame in a bandwidth probe";
    return nullptr;  // read and dropped; counted in onDiscarded when complete
}

void BandwidthProbe::onDiscarded(const SegmentHeader &h, const Uuid &from) {
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(mu_);
    Received &r = received_[from];
    if (r.frames++ == 0) {
        r.first = now;
        r.firstBytes = h.bytes;
    }
    r.bytes += h.bytes;
    r.last = now;
    if (now >= measureFrom_ && now <= measureTo_) r.inWindow += h.bytes;
}

uint64_t BandwidthProbe::receivedBytes() const {
    std::lock_guard lock(mu_);
    uint64_t total = 0;
    for (auto &[from, r] : received_) total += r.bytes;
    return total;
}

std::map<Uuid, uint64_t> BandwidthProbe::rates() const {
    std::lock_guard lock(mu_);
    const double window = std::chrono::duration<double>(measureTo_ - measureFrom_).count();
    std::map<Uuid, uint64_t> out;
    for (auto &[from, r] : received_) {
        if (r.inWindow > 0 && window > 0) {
            out[from] = static_cast<uint64_t>(static_cast<double>(r.inWindow) / window);
        } else {
            const double span = std::chrono::duration<double>(r.last - r.first).count();
            out[from] = span > 0 ? static_cast<uint64_t>(static_cast<double>(r.bytes - r.firstBytes) / span) : 0;
        }
    }
    return out;
}

} // namespace pccl::transport
