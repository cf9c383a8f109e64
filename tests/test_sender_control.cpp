// SenderControl (src/transport/sender_control.h): how many connections of a pool send at once,
// chosen by measuring the pool's send rate. Scripted: a model link gives the rate for a number
// of senders, reported every 10 ms as a busy pool would.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <vector>

#include "transport/sender_control.h"

using pccl::transport::SenderControl;
using namespace std::chrono_literals;

namespace {

struct Sim {
    SenderControl c;
    SenderControl::Clock::time_point now{};
    std::vector<int> caps;  // every cap it moved to, in order
    int lowest = 1 << 30, highest = 0;

    explicit Sim(int pool, std::optional<int> fixed = std::nullopt) : c(fixed) {
        c.setPool(pool);
        c.setRtt(80ms);  // intervals of 800 ms
        caps.push_back(c.cap());
    }
    // `seconds` of reports every 10 ms; `rate(cap)` in bytes per second; `waiting`: frames queued;
    // `rttRatio(cap)`: the senders' smoothed RTT over their minimum (none: not reported).
    void run(double seconds, const std::function<double(int)> &rate, bool waiting = true,
             const std::function<double(int)> &rttRatio = {}) {
        for (int i = 0; i < static_cast<int>(seconds * 100); ++i) {
            now += 10ms;
            const auto bytes = static_cast<uint64_t>(rate(c.cap()) * 0.01);
            if (c.observe(now, bytes, waiting, rttRatio ? rttRatio(c.cap()) : 0)) caps.push_back(c.cap());
            lowest = std::min(lowest, c.cap());
            highest = std::max(highest, c.cap());
        }
    }
};

// A link of `link` bytes/s where one connection carries at most `perConn` (its window).
std::function<double(int)> windowLimited(double perConn, double link) {
    return [=](int n) { return std::min(perConn * n, link); };
}

// The queue that link builds: none while the senders do not fill it, 1.5x the RTT once they do.
std::function<double(int)> queueOf(double perConn, double link) {
    return [=](int n) { return perConn * n < link ? 1.0 : 1.5; };
}

} // namespace

TEST_CASE("senders: a start count that builds no queue grows 4x every interval until a queue builds",
          "[sender_control]") {
    Sim s(64);
    CHECK(s.c.cap() == SenderControl::kStart);
    s.run(3.3, windowLimited(10e6, 70e6), true, queueOf(10e6, 70e6));  // 8 fill 70 of 80; 4 carry 40
    // settle, one judged interval at 4 (no queue): 16; the next interval shows a queue: kept
    CHECK(s.caps == std::vector<int>{4, 16});
    CHECK(s.c.lastChange().find("4 -> 16 senders (no queue: their RTT is 1.00x the minimum") != std::string::npos);
    s.run(60, windowLimited(10e6, 70e6), true, queueOf(10e6, 70e6));
    CAPTURE(s.caps);
    // the overshoot comes down by the probes for fewer: 8 cost nothing, 4 do; never more again
    REQUIRE(s.caps.size() >= 5);
    CHECK(std::vector<int>(s.caps.begin(), s.caps.begin() + 4) == std::vector<int>{4, 16, 8, 4});
    for (size_t i = 4; i < s.caps.size(); ++i) CHECK(s.caps[i] == (i % 2 ? 4 : 8));
    CHECK(s.highest == 16);

    // Rates do not stop the ramp: cubic's first intervals are slow start before the first loss,
    // so 4 senders measure more than 8 do once the losses began.
    Sim early(64);
    SenderControl::Clock::time_point t0 = early.now;
    early.run(8, [&](int n) {
        const double since = std::chrono::duration<double>(early.now - t0).count();
        return since < 1.7 ? 3 * 1e6 * n : 1e6 * n;  // a burst until the first loss
    }, true, [](int) { return 1.0; });
    CAPTURE(early.caps);
    CHECK(early.c.cap() == 64);
    CHECK(early.lowest == 4);
}

TEST_CASE("senders: a link limited by one connection's window grows the count to the pool", "[sender_control]") {
    // 4, 16, 64; later probes for fewer (there and back) are all that follows.
    auto grown = [](const std::vector<int> &caps, int pool) {
        std::vector<int> want;
        for (int n = 4; n <= pool; n *= SenderControl::kRampStep) want.push_back(n);
        return caps.size() >= want.size() && std::equal(want.begin(), want.end(), caps.begin()) &&
               std::all_of(caps.begin() + static_cast<long>(want.size()), caps.end(),
                           [pool](int n) { return n == pool || n == pool / 2; });
    };
    Sim big(64);
    big.run(60, windowLimited(1e6, 1e9), true, queueOf(1e6, 1e9));
    CAPTURE(big.caps);
    CHECK(grown(big.caps, 64));
    CHECK(big.c.cap() >= 32);
    Sim s(16);  // never above the pool
    s.run(60, windowLimited(1e6, 1e9), true, queueOf(1e6, 1e9));
    CAPTURE(s.caps);
    CHECK(grown(s.caps, 16));
    CHECK(s.highest == 16);
    Sim near(64);  // a small queue (10% over the minimum RTT) is no queue
    near.run(60, windowLimited(1e6, 1e9), true, [](int) { return 1.10; });
    CAPTURE(near.caps);
    CHECK(grown(near.caps, 64));
}

TEST_CASE("senders: a start count that builds a queue is kept, and never probed for more", "[sender_control]") {
    // The link is full with the start count (BBR's queue: RTT 1.5x the minimum): more senders
    // would only add cold connections among full ones.
    Sim s(64);
    s.run(60, windowLimited(30e6, 100e6), true, queueOf(30e6, 100e6));
    CHECK(s.caps == std::vector<int>{4});
    // With nothing reported the rates decide: probes for more, each undone.
    Sim unknown(64);
    unknown.run(60, windowLimited(30e6, 100e6));
    CAPTURE(unknown.caps);
    REQUIRE(unknown.caps.size() >= 3);
    for (size_t i = 0; i < unknown.caps.size(); ++i) CHECK(unknown.caps[i] == (i % 2 ? 8 : 4));
}

TEST_CASE("senders: more senders that cost throughput (CPU-bound) are given back", "[sender_control]") {
    // No queue (the CPU, not the link, is the limit), so the ramp goes to the pool; but each
    // sender costs a little: the probes for fewer are kept, down to the floor, and the probes
    // for more are undone.
    Sim s(64);
    s.run(60, [](int n) { return 100e6 / (1 + 0.05 * n); }, true, [](int) { return 1.0; });
    CAPTURE(s.caps);
    REQUIRE(s.caps.size() >= 7);
    CHECK(std::vector<int>(s.caps.begin(), s.caps.begin() + 7) == std::vector<int>{4, 16, 64, 32, 16, 8, 4});
    for (size_t i = 7; i < s.caps.size(); ++i) CHECK(s.caps[i] <= 8);
    CHECK(s.c.cap() <= 8);
    // Nothing reported: kept at 4, probes for more undone.
    Sim quiet(64);
    quiet.run(60, [](int n) { return 100e6 / (1 + 0.05 * n); });
    CHECK(quiet.highest == 8);
    CHECK(quiet.lowest == 4);
}

TEST_CASE("senders: connections still ramping up do not make a change look worth it", "[sender_control]") {
    // Four connections fill the link, but whenever senders are added the pool takes 2 s to reach
    // its rate (TCP slow start), the start included. Nothing reported: the rates decide.
    Sim s(64);
    SenderControl::Clock::time_point changed = s.now;
    int last = s.c.cap();
    for (int i = 0; i < 60 * 100; ++i) {
        s.now += 10ms;
        if (s.c.cap() > last) changed = s.now;  // new senders start cold; fewer stay warm
        last = s.c.cap();
        const double warm = std::min(1.0, std::chrono::duration<double>(s.now - changed).count() / 2.0);
        const double rate = std::min(30e6 * s.c.cap(), 100e6) * (0.2 + 0.8 * warm);
        if (s.c.observe(s.now, static_cast<uint64_t>(rate * 0.01), true)) s.caps.push_back(s.c.cap());
    }
    CAPTURE(s.caps, s.c.lastChange());
    REQUIRE(s.caps.size() >= 3);
    for (size_t i = 0; i < s.caps.size(); ++i) CHECK(s.caps[i] == (i % 2 ? 8 : 4));  // probes, undone
    CHECK((s.c.cap() == 4 || s.c.lastChange().find("probing for more") != std::string::npos));
}

TEST_CASE("senders: the start count is judged by its queue at the second interval, rising or not",
          "[sender_control]") {
    // The rate still rises (slow start; on a lossy cubic link for several intervals), but the
    // queue is the question: a full link has built one by the second interval (BBR leaves its
    // start-up within ten round trips), a window-limited one never does.
    for (bool full : {true, false}) {
        Sim s(64);
        int interval = 0;
        for (int i = 0; i < 250; ++i) {  // 2.5 s: settle, the start judged, one ramp interval
            s.now += 10ms;
            interval = i / 80;
            const double rate = 10e6 * s.c.cap() * (1 + interval);  // rising 2x, 1.5x, ...
            const double queue = full && interval >= 1 ? 1.5 : 1.0;
            if (s.c.observe(s.now, static_cast<uint64_t>(rate * 0.01), true, queue)) s.caps.push_back(s.c.cap());
        }
        CAPTURE(full, s.caps);
        CHECK(s.caps == (full ? std::vector<int>{4} : std::vector<int>{4, 16, 64}));
    }
}

TEST_CASE("senders: probes go further apart while they do not pay", "[sender_control]") {
    Sim s(64);
    s.run(120, [](int n) { return 100e6 / (1 + 0.05 * n); });
    // kept at 4; then 800 ms intervals, a probe every 8, 16, 32, 64 judged intervals (plus two
    // per probe), each one there and back
    CHECK(s.caps.size() <= 1 + 2 * 6);
    CHECK(s.caps.size() >= 1 + 2 * 3);
    CHECK(s.highest == 8);
}

TEST_CASE("senders: a link that gets worse for one connection makes later probes grow the count", "[sender_control]") {
    Sim s(64);
    s.run(15, windowLimited(10e6, 70e6), true, queueOf(10e6, 70e6));
    REQUIRE(s.c.cap() == 8);
    s.run(30, windowLimited(2e6, 70e6), true, [](int) { return 1.5; });  // still a queue: no more
    CHECK(s.c.cap() == 8);
    s.run(60, windowLimited(2e6, 70e6), true, queueOf(2e6, 70e6));  // loss: cubic's window shrinks
    CHECK(s.c.cap() >= 32);
}

TEST_CASE("senders: a count grown on a window-limited link comes back down once fewer move as much",
          "[sender_control]") {
    Sim s(64);
    s.run(20, windowLimited(1e6, 1e9), true, queueOf(1e6, 1e9));
    REQUIRE(s.c.cap() == 64);
    s.run(120, [](int) { return 50e6; }, true, [](int) { return 1.5; });  // now any count fills it
    CAPTURE(s.caps);
    CHECK(s.lowest == SenderControl::kFloor);
    CHECK(s.c.cap() <= 8);
}

TEST_CASE("senders: a link any count fills never drifts below the floor", "[sender_control]") {
    Sim s(64);
    s.run(200, [](int) { return 50e6; });
    CHECK(s.lowest == SenderControl::kFloor);
    CHECK(s.c.cap() <= 8);
    Sim small(2);  // a pool smaller than the floor: all of it
    small.run(30, [](int) { return 50e6; });
    CHECK(small.lowest == 2);
    CHECK(small.highest == 2);
    CHECK(small.caps == std::vector<int>{2});
    CHECK(small.c.lastChange().empty());  // and nothing to tell
    Sim four(4);  // a pool of the floor: nothing to try below it, and probes for more undone
    four.run(30, [](int) { return 50e6; });
    CHECK(four.caps == std::vector<int>{4});
    CHECK(four.c.lastChange().empty());
}

TEST_CASE("senders: only intervals in which frames waited for a sender are judged", "[sender_control]") {
    Sim s(64);
    // The producer is the limit (nothing waits): no rate is known, nothing changes.
    s.run(60, windowLimited(1e6, 1e9), false, queueOf(1e6, 1e9));
    CHECK(s.caps == std::vector<int>{4});
    CHECK(s.c.rate() == 0);
    // Frames waited half the time: still not judged.
    for (int i = 0; i < 300; ++i) {
        s.run(0.05, windowLimited(1e6, 1e9), true, queueOf(1e6, 1e9));
        s.run(0.05, windowLimited(1e6, 1e9), false, queueOf(1e6, 1e9));
    }
    CHECK(s.caps == std::vector<int>{4});
    // Short gaps (a tenth of the time): judged, and the pool grows.
    for (int i = 0; i < 300; ++i) {
        s.run(0.09, windowLimited(1e6, 1e9), true, queueOf(1e6, 1e9));
        s.run(0.01, windowLimited(1e6, 1e9), false, queueOf(1e6, 1e9));
    }
    CHECK(s.c.cap() == 64);
    CHECK(s.c.rate() > 0);
}

TEST_CASE("senders: the interval is ten round trips, within bounds", "[sender_control]") {
    for (auto [rtt, first] : {std::pair{80ms, 2 * 800ms}, std::pair{1ms, 2 * 250ms}, std::pair{500ms, 2 * 2000ms}}) {
        SenderControl c;
        c.setPool(64);
        c.setRtt(rtt);
        SenderControl::Clock::time_point t{};
        auto changedAt = 0ms;
        for (auto at = 10ms; at <= 10000ms; at += 10ms) {
            // settle, then one judged interval at the start count, then (no queue) the doubling
            if (c.observe(t + at, 1000000, true, 1.0)) {
                changedAt = at;
                break;
            }
        }
        CHECK(changedAt == first + 10ms);
    }
}

TEST_CASE("senders: the start reads the queue three times before it keeps its count", "[sender_control]") {
    // cubic's slow start can overshoot into a queue that its first losses drain: a queue in the
    // first judged interval only, then none. The ramp starts at the second reading.
    auto readings = [](std::vector<double> queues) {
        Sim s(64);
        for (int i = 0; i < 80 * static_cast<int>(queues.size() + 1) + 5; ++i) {
            s.now += 10ms;
            const size_t interval = static_cast<size_t>(i / 80);  // 800 ms each; the first settles
            const double queue = interval == 0 ? 1.0 : queues[std::min(interval - 1, queues.size() - 1)];
            if (s.c.observe(s.now, 100000, true, queue)) s.caps.push_back(s.c.cap());
        }
        return s.caps;
    };
    CHECK(readings({1.3, 1.0, 1.0}) == std::vector<int>{4, 16, 64});
    CHECK(readings({1.3, 1.3, 1.0, 1.0}) == std::vector<int>{4, 16, 64});
    // Three readings with a queue: kept, and a later interval without one does not ramp.
    CHECK(readings({1.3, 1.3, 1.3, 1.0, 1.0, 1.0}) == std::vector<int>{4});
}

TEST_CASE("senders: the start does not read the queue while its senders are still in slow start",
          "[sender_control]") {
    // 3 peers at 80 ms on links that BBR fills: at the start's second interval its 4 senders were
    // still in their start-up (a third of the link, RTT 1.05x), and the queue came after it.
    // `slowStart`: intervals (from the first) in which the senders report start-up; `queues`: the
    // RTT ratio per interval (the last one repeats).
    auto run = [](int slowStart, std::vector<double> queues) {
        Sim s(64);
        for (int i = 0; i < 80 * 8; ++i) {
            s.now += 10ms;
            const int interval = i / 80;
            const double queue = queues[std::min<size_t>(static_cast<size_t>(interval), queues.size() - 1)];
            if (s.c.observe(s.now, 100000, true, queue, interval < slowStart)) s.caps.push_back(s.c.cap());
        }
        return s.caps;
    };
    // BBR: no queue through its start-up, one after it: kept (it ramped before the gate).
    CHECK(run(2, {1.0, 1.05, 1.4}) == std::vector<int>{4});
    CHECK(run(3, {1.0, 1.05, 1.05, 1.4}) == std::vector<int>{4});
    // The same readings with the senders past their slow start: the link has room.
    CHECK(run(0, {1.0, 1.05, 1.4}) == std::vector<int>{4, 16});
    // A window-limited link whose senders never leave slow start (no loss, cubic held by its
    // socket buffers): the start waits kStartupWaits intervals, then ramps.
    Sim never(64);
    int rampedAt = -1;
    for (int i = 0; i < 80 * 10 && rampedAt < 0; ++i) {
        never.now += 10ms;
        if (never.c.observe(never.now, 100000, true, 1.0, true)) rampedAt = i / 80;
    }
    CHECK(never.c.cap() == 16);
    // The report that ends interval j has index j + 1: the settle, the waits, then the reading.
    CHECK(rampedAt == 2 + SenderControl::kStartupWaits);
    // A sender that leaves its slow start during an interval still marks that interval.
    Sim mid(64);
    for (int i = 0; i < 80 * 6; ++i) {
        mid.now += 10ms;
        const int interval = i / 80;
        const bool slow = interval < 1 || (interval == 1 && i % 80 < 40);
        const double queue = interval < 2 ? 1.0 : 1.4;
        if (mid.c.observe(mid.now, 100000, true, queue, slow)) mid.caps.push_back(mid.c.cap());
    }
    CHECK(mid.caps == std::vector<int>{4});
}

TEST_CASE("senders: a fixed count and a shrunken pool", "[sender_control]") {
    Sim fixed(64, 16);
    fixed.run(30, windowLimited(1e6, 1e9));
    CHECK(fixed.caps == std::vector<int>{16});
    fixed.c.setPool(3);
    CHECK(fixed.c.cap() == 3);

    Sim s(16);
    s.run(4, windowLimited(1e6, 1e9), true, queueOf(1e6, 1e9));
    REQUIRE(s.c.cap() == 16);
    s.c.setPool(5);  // connections broke
    CHECK(s.c.cap() == 5);
    s.c.setPool(0);
    CHECK(s.c.cap() == 1);
}

TEST_CASE("senders: PCCL_DATA_SENDERS", "[sender_control]") {
    auto with = [](const char *v) {
        if (v) ::setenv("PCCL_DATA_SENDERS", v, 1);
        else ::unsetenv("PCCL_DATA_SENDERS");
        auto n = pccl::transport::fixedSendersFromEnvironment();
        ::unsetenv("PCCL_DATA_SENDERS");
        return n;
    };
    CHECK(with(nullptr) == std::nullopt);
    CHECK(with("auto") == std::nullopt);
    CHECK(with("8") == 8);
    CHECK(with("0") == std::nullopt);
    CHECK(with("x") == std::nullopt);
    CHECK(with("2000") == std::nullopt);
}
