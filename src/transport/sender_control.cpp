#include "transport/sender_control.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "util/log.h"

namespace pccl::transport {

namespace {

std::string rateText(double bytesPerSecond) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3f Gbit/s", bytesPerSecond * 8 / 1e9);
    return buf;
}

std::string msText(SenderControl::Clock::duration d) {
    return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + " ms";
}

} // namespace

int SenderControl::cap() const {
    const int most = std::max(pool_, 1);
    return std::clamp(fixed_ ? *fixed_ : cap_, 1, most);
}

void SenderControl::setRtt(Clock::duration rtt) { interval_ = std::clamp(10 * rtt, kMinInterval, kMaxInterval); }

bool SenderControl::observe(Clock::time_point now, uint64_t bytes, bool waiting, double rttRatio, bool startup) {
    if (fixed_) return false;
    if (!started_) {
        started_ = true;
        start_ = last_ = now;
    }
    if (waiting_) waited_ += now - last_;
    bytes_ += bytes;
    if (rttRatio > 0) {
        ratioSum_ += rttRatio;
        ++ratios_;
    }
    startup_ = startup_ || startup;
    last_ = now;
    waiting_ = waiting;
    const auto wall = now - start_;
    if (wall < interval_) return false;
    // Judged only when frames waited for a sender through most of it: otherwise whoever made
    // the frames (a ring waiting for its neighbour, the caller) was the limit, not the senders.
    const bool sendersLimited = waited_ * 4 >= wall * 3;
    const double rate = static_cast<double>(bytes_) / std::chrono::duration<double>(wall).count();
    const double queue = ratios_ == 0 ? 0 : ratioSum_ / ratios_;
    const bool inStartup = startup_;
    startup_ = false;
    start_ = now;
    waited_ = {};
    bytes_ = 0;
    ratioSum_ = 0;
    ratios_ = 0;
    if (mode_ == Mode::Ramp) {
        if (!sendersLimited) return false;
        const int before = cap();
        ramp(rate, queue);
        return cap() != before;
    }
    if (phase_ == Phase::Settle) {  // ramp-up time passes, judged or not
        phase_ = Phase::Judge;
        prevRate_ = sendersLimited ? rate : 0;
        return false;
    }
    if (!sendersLimited) return false;
    // The start reads its queue once its senders have left their first slow start: before, no
    // queue only means they have not grown yet (BBR builds its queue at the end of its start-up;
    // 3 peers at 80 ms, the start's second interval: 4 senders moved a third of the link at 1.05x
    // and ramped to 16 cold senders, a first call at 87% instead of 93-94%). Bounded: a sender
    // that never loses a packet (cubic held by its socket buffer) or never finds its bandwidth
    // (BBR limited by the application) stays in slow start.
    if (mode_ == Mode::Start && inStartup && startupWaits_ < kStartupWaits) {
        ++startupWaits_;
        return false;
    }
    // Judged once the rate stops rising (new connections leave slow start over several round
    // trips): else a count measured early looks worse than the next one measured later. Not the
    // start count: its judgement reads the queue, not the rate, and on a lossy link cubic's
    // rates rose through three more intervals at 4 senders (first calls 40-90% slower).
    const bool rising = rate > prevRate_ * (1 + kGain / 2);
    prevRate_ = rate;
    if (rising && rising_ < kMaxRising && mode_ != Mode::Start) {
        ++rising_;
        return false;
    }
    rising_ = 0;
    const int before = cap();
    judge(rate, queue);
    return cap() != before;
}

// A probe (cap_ against from_) kept goes on in its direction while it can; one that did not pay is
// undone. Without a probe: the start count's judgement, or go on with a descent or an ascent, or
// count down to the next probe.
void SenderControl::judge(double rate, double queue) {
    lastRate_ = rate;
    cap_ = std::clamp(cap_, 1, std::max(pool_, 1));  // a pool smaller than kStart, or one that shrank
    const int floor = floorCount();
    if (from_ != 0) {
        const bool up = cap_ > from_;
        const bool keep = up ? rate >= baseRate_ * (1 + kGain) : rate >= baseRate_ * (1 - kLoss);
        const std::string measured = std::to_string(cap_) + " senders moved " + rateText(rate) + ", " +
                                     std::to_string(from_) + " moved " + rateText(baseRate_) + " (intervals of " +
                                     msText(interval_) + ")";
        const int back = from_;
        from_ = 0;
        if (keep) {
            baseRate_ = rate;
            every_ = kProbeEvery;
            // More while each doubling pays, until the senders build a queue: then the link is
            // full, and more of them would only add cold connections.
            mode_ = !up ? Mode::Descend : queue >= kQueued ? Mode::Hold : Mode::Ascend;
            why_ = std::to_string(cap_) + " senders kept: " + measured;
            step(rate, why_.c_str());
            return;
        }
        mode_ = Mode::Hold;
        every_ = std::min(every_ * 2, kProbeEvery * 8);  // fewer probes that do not pay
        phase_ = Phase::Settle;
        cap_ = back;
        rising_ = 0;
        why_ = "back to " + std::to_string(back) + " senders: " + measured;
        return;
    }
    baseRate_ = rate;
    if (mode_ == Mode::Start) {
        // With no queue the link has room that these senders do not fill (one connection's
        // window is the limit: on such a link, cubic at 0.1% loss, the senders' RTT stayed at
        // 80-90 ms of 80), so more of them is the question. With a queue (on links that BBR
        // fills, 2 or 3 peers, 80-310 ms) or none reported, the link is full: keep them.
        // It reads the queue kStartReads times: cubic's slow start can overshoot into a queue
        // that its first losses drain (a lossy link's pool of 64 that read one at its second
        // interval sat at 4 senders for 13 s, 57% of the ceiling), while on links that BBR
        // fills the queue stays.
        if (roomForMore(queue)) {
            mode_ = Mode::Ramp;
            ramp(rate, queue);
        } else if (++startReads_ >= kStartReads) {
            mode_ = Mode::Hold;
        }
        return;
    }
    if (mode_ != Mode::Hold) return step(rate, "");
    if (++held_ < every_) return;
    held_ = 0;
    probeUp_ = !probeUp_;
    // Never more while the senders build a queue: the link is full, and senders added to it start
    // cold among full ones (one 1 MiB frame on such a connection, added 6.7 s into a call, took
    // 3.5 s and held up the whole ring).
    const bool roomy = queue < kQueued;  // unknown (0): the rates decide
    const bool up = roomy && ((probeUp_ && cap_ < pool_) || cap_ <= floor);
    if (up && cap_ < pool_) {
        moveTo(std::min(2 * cap_, pool_), "probing for more", rate);
    } else if (!up && cap_ > floor) {
        // Never below kFloor: a link that any count fills would otherwise drift down on noise, and
        // one connection alone suffers most from a loss burst.
        moveTo(std::max(cap_ / 2, floor), "probing for fewer", rate);
    }
}

// The ramp from the start count: kRampStep times the senders every interval while they build no
// queue, by the queue alone (4, 16, 64: a lossy link's pool of 64 has all its senders about as
// soon as with the former start at 16 and two doublings). Their rates are not compared: early
// intervals of cubic connections are slow start before the first loss (4 senders measured
// 0.08-0.12 Gbit/s, then 8 of them 0.06-0.09 on the lossy link), so a doubling judged by rate was
// undone where it was needed. The first interval with a queue (or the pool) ends it; too many
// senders are then for the probes for fewer.
void SenderControl::ramp(double rate, double queue) {
    lastRate_ = rate;
    if (roomForMore(queue)) {
        char text[64];
        std::snprintf(text, sizeof text, "no queue: their RTT is %.2fx the minimum", queue);
        moveTo(std::min(kRampStep * cap_, pool_), text, rate);
        from_ = 0;  // not judged against the count before
        return;
    }
    mode_ = Mode::Hold;
    baseRate_ = rate;
    phase_ = Phase::Settle;  // the last senders added may still be cold
    rising_ = 0;
}

// One more step of a descent or an ascent, or the end of it (Hold) at the floor or the pool.
void SenderControl::step(double rate, const char *why) {
    const int floor = floorCount();
    const std::string text = *why ? why : (mode_ == Mode::Ascend ? "more while they pay" : "fewer while they cost nothing");
    if (mode_ == Mode::Ascend && cap_ < pool_) {
        moveTo(std::min(2 * cap_, pool_), text.c_str(), rate);
    } else if (mode_ == Mode::Descend && cap_ > floor) {
        moveTo(std::max(cap_ / 2, floor), text.c_str(), rate);
    } else {
        mode_ = Mode::Hold;
    }
}

bool SenderControl::moveTo(int cap, const char *why, double rate) {
    if (cap == cap_) return false;
    why_ = std::to_string(cap_) + " -> " + std::to_string(cap) + " senders (" + why + "; " +
           std::to_string(cap_) + " moved " + rateText(rate) + ")";
    // More: the new senders start cold. Fewer: those that stay must grow their windows into the
    // share the others leave (BBR raises its estimate ~25% per 8 round trips; 16 -> 8 senders
    // measured 20-40% lower in the first interval). The next interval is theirs either way.
    phase_ = Phase::Settle;
    from_ = cap_;
    cap_ = cap;
    rising_ = 0;
    return true;
}

std::optional<int> fixedSendersFromEnvironment() {
    const char *env = std::getenv("PCCL_DATA_SENDERS");
    if (!env || !*env || std::string(env) == "auto") return std::nullopt;
    char *end = nullptr;
    const long n = std::strtol(env, &end, 10);
    if (*end || n < 1 || n > 1024) {
        PCCL_LOG(Warn, "ignoring PCCL_DATA_SENDERS=" << env << " (a number of connections, 1..1024, or auto)");
        return std::nullopt;
    }
    return static_cast<int>(n);
}

} // namespace pccl::transport
