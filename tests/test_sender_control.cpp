// SenderControl (src/transport/sender_control.h): how many connections of a pool send at once,
// chosen by measuring the pool's send rate. Scripted: a model link gives the rate for a number
// of senders, reported every 10 ms as a busy pool would.
#include <catch2/catch.hpp>

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

TEST_CASE("senders: fewer while fewer move as much, down to the count that fills the link", "[sender_control]") {
    Sim s(64);
    CHECK(s.c.cap() == SenderControl::kStart);
    s.run(15, windowLimited(10e6, 70e6));  // 8 fill 70 of 80; 4 carry 40
    CHECK(s.caps == std::vector<int>{16, 8, 4, 8});
    CHECK(s.c.cap() == 8);
    CHECK(s.c.lastChange().find("back to 8") != std::string::npos);
}

TEST_CASE("senders: a link limited by one connection's window keeps the start count, then grows",
          "[sender_control]") {
    Sim s(16);  // the pool is the start count: halving costs half, nothing to add
    s.run(10, windowLimited(1e6, 1e9));
    CHECK(s.caps == std::vector<int>{16, 8, 16});
    s.run(60, windowLimited(1e6, 1e9));  // later probes: never above the pool, always undone
    CHECK(s.highest == 16);
    CHECK(s.c.cap() == 16);

    Sim big(64);  // a larger pool: after the first halving fails, doubling pays up to the pool
    big.run(20, windowLimited(1e6, 1e9));
    REQUIRE(big.caps.size() >= 5);
    CHECK(std::vector<int>(big.caps.begin(), big.caps.begin() + 5) == std::vector<int>{16, 8, 16, 32, 64});
    CHECK(big.c.cap() == 64);
}

TEST_CASE("senders: a start count that builds no queue doubles without halving first", "[sender_control]") {
    Sim s(64);  // one connection's window is the limit, and the link stays empty
    s.run(10, windowLimited(1e6, 1e9), true, queueOf(1e6, 1e9));
    CHECK(s.caps == std::vector<int>{16, 32, 64});
    CHECK(s.lowest == 16);
    Sim full(64);  // 8 fill the link: a queue at 16, so the halving is tried as before
    full.run(15, windowLimited(10e6, 70e6), true, queueOf(10e6, 70e6));
    CHECK(full.caps == std::vector<int>{16, 8, 4, 8});
    Sim near(64);  // a small queue (10% over the minimum RTT) is no queue
    near.run(10, windowLimited(1e6, 1e9), true, [](int) { return 1.10; });
    CHECK(near.caps == std::vector<int>{16, 32, 64});
    Sim all(16);  // nothing to add to a pool that already sends on all of its connections
    all.run(10, windowLimited(1e6, 1e9), true, queueOf(1e6, 1e9));
    CHECK(all.caps == std::vector<int>{16, 8, 16});
    Sim cpu(64);  // no queue but more cost (the CPU is the limit): undone, and later fewer
    cpu.run(60, [](int n) { return 100e6 / (1 + 0.05 * n); }, true, [](int) { return 1.0; });
    CAPTURE(cpu.caps);
    REQUIRE(cpu.caps.size() >= 3);
    CHECK(std::vector<int>(cpu.caps.begin(), cpu.caps.begin() + 3) == std::vector<int>{16, 32, 16});
    CHECK(cpu.lowest <= 8);
}

TEST_CASE("senders: a first halving that costs a little is undone without trying more", "[sender_control]") {
    // 15% or 33% less with 8 (noise, ramp-up, BBR's slow take-over of the freed share, a partly
    // window-limited link): not worth fewer, and no sign that more would add anything (a link
    // limited by one connection's window loses about half).
    for (double less : {0.15, 0.33}) {
        Sim s(64);
        s.run(10, [less](int n) { return n >= 16 ? 100e6 : (1 - less) * 100e6; });
        CAPTURE(less);
        CHECK(s.caps == std::vector<int>{16, 8, 16});
    }
    Sim limited(64);
    limited.run(10, [](int n) { return n >= 16 ? 100e6 : 55e6; });  // 45% less: try more (no gain)
    CHECK(limited.caps == std::vector<int>{16, 8, 16, 32, 16});
}

TEST_CASE("senders: more senders that cost throughput (CPU-bound) are given back", "[sender_control]") {
    Sim s(64);
    s.run(60, [](int n) { return 100e6 / (1 + 0.05 * n); });  // each sender costs a little
    CHECK(s.c.cap() == SenderControl::kFloor);
    CHECK(s.caps.at(1) == 8);
    CHECK(s.caps.at(2) == 4);
    for (size_t i = 3; i < s.caps.size(); ++i) CHECK(s.caps[i] <= 8);  // probes for more, undone
}

TEST_CASE("senders: connections still ramping up do not make a change look worth it", "[sender_control]") {
    // Four connections fill the link, but the pool starts cold and whenever senders are added
    // the pool takes 2 s to reach its rate (TCP slow start).
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
    CHECK(s.caps.at(1) == 8);
    CHECK(s.caps.at(2) == 4);
    for (size_t i = 3; i < s.caps.size(); ++i) CHECK(s.caps[i] == (i % 2 ? 8 : 4));  // probes, undone
    CHECK((s.c.cap() == 4 || s.c.lastChange().find("probing for more") != std::string::npos));
}

TEST_CASE("senders: probes go further apart while they do not pay", "[sender_control]") {
    Sim s(64);
    s.run(120, [](int n) { return 100e6 / (1 + 0.05 * n); });
    // down to 4 in two steps; then 800 ms intervals, a probe every 8, 16, 32, 64 judged
    // intervals (plus two per probe), each one there and back
    CHECK(s.caps.size() <= 3 + 2 * 6);
    CHECK(s.caps.size() >= 3 + 2 * 3);
}

TEST_CASE("senders: a link that gets worse for one connection makes later probes grow the count", "[sender_control]") {
    Sim s(64);
    s.run(15, windowLimited(10e6, 70e6));
    REQUIRE(s.c.cap() == 8);
    s.run(60, windowLimited(2e6, 70e6));  // loss: cubic's window per connection shrinks
    CHECK(s.c.cap() >= 32);
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
    s.run(60, windowLimited(1e6, 1e9), false);
    CHECK(s.caps == std::vector<int>{16});
    CHECK(s.c.rate() == 0);
    // Frames waited half the time: still not judged.
    for (int i = 0; i < 300; ++i) {
        s.run(0.05, windowLimited(1e6, 1e9), true);
        s.run(0.05, windowLimited(1e6, 1e9), false);
    }
    CHECK(s.caps == std::vector<int>{16});
    // Short gaps (a tenth of the time): judged, and the pool grows.
    for (int i = 0; i < 300; ++i) {
        s.run(0.09, windowLimited(1e6, 1e9), true);
        s.run(0.01, windowLimited(1e6, 1e9), false);
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
            // settle, then one judged interval at 16 senders, then the first halving
            if (c.observe(t + at, 1000000, true)) {
                changedAt = at;
                break;
            }
        }
        CHECK(changedAt == first + 10ms);
    }
}

TEST_CASE("senders: a fixed count and a shrunken pool", "[sender_control]") {
    Sim fixed(64, 16);
    fixed.run(30, windowLimited(1e6, 1e9));
    CHECK(fixed.caps == std::vector<int>{16});
    fixed.c.setPool(3);
    CHECK(fixed.c.cap() == 3);

    Sim s(16);
    s.run(10, windowLimited(1e6, 1e9));
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
