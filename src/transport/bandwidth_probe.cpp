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
                               std::chrono::steady_clock::time_point measureFrom)
    : plane_(plane), seq_(seq), frameBytes_(std::min(frameBytes, kMaxProbeFrame)), depth_(depth), measureFrom_(measureFrom) {}

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
        if (ok) self->pump(to, until);
    });
}

void *BandwidthProbe::beginFrame(const SegmentHeader &h, const Uuid &from, std::string *error) {
    if (h.phase != kProbePhase) {
        *error = "unexpected frame in a bandwidth probe";
        return nullptr;
    }
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(mu_);
    Received &r = received_[from];
    r.all.add(h.bytes, now);
    if (now >= measureFrom_) r.late.add(h.bytes, now);
    return nullptr;  // read and dropped
}

void BandwidthProbe::Span::add(uint64_t n, std::chrono::steady_clock::time_point now) {
    if (frames++ == 0) {
        first = now;
        firstBytes = n;
    }
    bytes += n;
    last = now;
}

uint64_t BandwidthProbe::Span::rate() const {
    const double span = std::chrono::duration<double>(last - first).count();
    return span > 0 ? static_cast<uint64_t>(static_cast<double>(bytes - firstBytes) / span) : 0;
}

std::map<Uuid, uint64_t> BandwidthProbe::rates() const {
    std::lock_guard lock(mu_);
    std::map<Uuid, uint64_t> out;
    for (auto &[from, r] : received_) out[from] = r.late.frames >= 2 ? r.late.rate() : r.all.rate();
    return out;
}

} // namespace pccl::transport
