// How many connections of a pool carry frames at once (docs/design.md, Segment scheduling): a
// measured choice, not a constant. More connections fill more of a link while one connection's
// window is the limit (loss-limited cubic, small socket buffers, per-flow policing); once the link
// is full they only cost CPU and queue (3 peers on 2 cores: 16 senders moved ~15% less than 4),
// and on a fresh pool many cold connections starting together cost the first call (2 peers,
// 80 ms: 16 of them 83-85% of the ceiling, 4 of them 92-93%, same run).
// So a pool starts with kStart senders. If in one of their first kStartReads judged intervals
// they build no queue (their smoothed RTT within kQueued of their minimum) the link has room they
// do not fill, and it multiplies them by kRampStep every interval until they build one (or reach
// the pool); with a queue in all of them the link is full and it keeps them. An interval in
// which a sender was still in its first slow start is not read (up to kStartupWaits of them):
// that no queue is only the senders not having grown yet (BBR builds its queue at the end of its
// start-up; 3 peers at 80 ms: 4 senders at a third of the link read 1.05x and ramped).
// Every kProbeEvery judged intervals it tries one step up or down again (conditions change: a
// loss burst, other jobs on the cores); a step that pays goes on in its direction (more while
// each adds kGain, fewer while each costs at most kLoss, never below kFloor), one that does not
// is undone and the next probe waits twice as long.
//
// A pure state machine: the data plane reports, under its lock, each time a connection of the
// pool takes frames (the bytes delivered on it since it last did, from TCP_INFO, whether frames
// were still waiting for a sender, and its srtt / min RTT). It measures intervals of ten round
// trips (250 ms .. 2 s) and judges only those in which frames waited for a sender at least 3/4
// of the time (then the senders, not the producer of the frames, were the limit): the delivered
// bytes over the interval. The interval after a change is not judged (new senders start cold;
// those left must grow their windows), nor (up to kMaxRising more) one whose rate still rose by
// kGain/2, except the start count's second: its judgement reads the queue.
#pragma once
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace pccl::transport {

class SenderControl {
public:
    using Clock = std::chrono::steady_clock;
    static constexpr int kStart = 4;          // senders before anything is measured
    static constexpr int kFloor = 4;          // descents and probes stop here
    static constexpr int kRampStep = 4;       // the ramp from the start multiplies by this
    static constexpr int kStartReads = 3;     // judged intervals the start reads the queue
    static constexpr double kGain = 0.20;     // a doubling must raise the rate this much
    static constexpr double kLoss = 0.05;     // a halving may lower it this much
    static constexpr int kProbeEvery = 8;     // judged intervals between probes
    static constexpr int kMaxRising = 3;      // intervals a rising rate may delay a judgement
    static constexpr int kStartupWaits = 3;   // intervals the start waits for its senders' start-up
    static constexpr double kQueued = 1.15;   // senders' mean srtt / min RTT above this: a queue
    static constexpr Clock::duration kMinInterval = std::chrono::milliseconds(250);
    static constexpr Clock::duration kMaxInterval = std::chrono::seconds(2);

    // `fixed`: this many senders always (PCCL_DATA_SENDERS), no measuring.
    explicit SenderControl(std::optional<int> fixed = std::nullopt) : fixed_(fixed) {}

    // The senders allowed now: never more than the pool's live connections, at least 1.
    int cap() const;
    void setPool(int live) { pool_ = live; }
    // A round trip of the link (TCP's, at connect time): sets the interval length.
    void setRtt(Clock::duration rtt);
    // One report: `bytes` delivered to the peer since the previous report, `waiting` whether
    // frames are still queued for a sender after this one, `rttRatio` a sender's smoothed RTT over
    // its minimum (0: unknown), `startup` whether that sender is still in its first slow start
    // (TCP_INFO: no slow-start threshold yet; BBR sets one when it leaves its start-up).
    // Returns true when cap() changed.
    bool observe(Clock::time_point now, uint64_t bytes, bool waiting, double rttRatio = 0, bool startup = false);
    // What the last change was based on, for the log ("4 -> 8 senders: ...").
    const std::string &lastChange() const { return why_; }
    // The send rate of the last judged interval (bytes per second), 0 before one.
    double rate() const { return lastRate_; }

private:
    enum class Phase { Settle, Judge };
    enum class Mode { Start, Ramp, Descend, Ascend, Hold };
    void judge(double rate, double queue);  // queue: the senders' mean srtt / min RTT (0: unknown)
    void ramp(double rate, double queue);
    void step(double rate, const char *why);
    bool moveTo(int cap, const char *why, double rate);
    int floorCount() const { return kFloor < pool_ ? kFloor : pool_; }  // descents stop here
    // The senders build no queue (a reported RTT within kQueued of the minimum) and the pool has
    // more: the link has room they do not fill.
    bool roomForMore(double queue) const { return queue > 0 && queue < kQueued && cap_ < pool_; }

    std::optional<int> fixed_;
    int pool_ = 1;
    int cap_ = kStart;
    Clock::duration interval_ = kMinInterval;
    Phase phase_ = Phase::Settle;  // fresh connections ramp up first
    Mode mode_ = Mode::Start;      // kStart until it has read the queue (kStartReads)
    int startReads_ = 0;           // judged intervals of the start that showed a queue
    int startupWaits_ = 0;         // intervals the start skipped: a sender was still in start-up
    int from_ = 0;                 // a step in progress: the count it left (0: none)
    double baseRate_ = 0;          // measured at from_ (during a step) or at cap_
    int held_ = 0;                 // judged intervals since the last probe
    int every_ = kProbeEvery;      // judged intervals between probes (doubles when one fails)
    bool probeUp_ = false;         // the last probe's direction
    // The interval being measured: its start, the bytes delivered and the time frames waited.
    bool started_ = false, waiting_ = false;
    Clock::time_point start_{}, last_{};
    Clock::duration waited_{};
    uint64_t bytes_ = 0;
    double ratioSum_ = 0;  // the senders' srtt / min RTT reports in the interval
    int ratios_ = 0;
    bool startup_ = false;  // a sender reported its first slow start in the interval
    double lastRate_ = 0;
    double prevRate_ = 0;  // the last measured interval's rate (judged or not)
    int rising_ = 0;       // intervals skipped since the last change because the rate still rose
    std::string why_;
};

// PCCL_DATA_SENDERS: a fixed number of sending connections per pool, or nullopt (measured).
std::optional<int> fixedSendersFromEnvironment();

} // namespace pccl::transport
