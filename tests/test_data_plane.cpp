// The data plane's frame routing and its handling of malformed input, with raw sockets.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <optional>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "support/common.h"
#include "transport/bandwidth_probe.h"
#include "transport/data_plane.h"
#include "transport/same_host.h"
#include "util/bytes.h"

using namespace pccl;
using pccl::transport::DataPlane;
using pccl::transport::SegmentHeader;

namespace {

int connectTo(uint16_t port) {
    const int fd = pccl_test::connectLoopback(port);
    REQUIRE(fd >= 0);
    return fd;
}

void sendAll(int fd, const std::vector<uint8_t> &b) { REQUIRE(::send(fd, b.data(), b.size(), MSG_NOSIGNAL) == (ssize_t)b.size()); }

// True if the peer closed the connection within the deadline (recv returns 0 or an error).
bool closedWithin(int fd, int ms) {
    pollfd p{fd, POLLIN, 0};
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < end) {
        if (::poll(&p, 1, 50) > 0) {
            uint8_t buf[64];
            const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
            if (n <= 0) return true;
        }
    }
    return false;
}

// A data-plane hello that offers no same-host copies (the identity block is left zero).
std::vector<uint8_t> hello(const Uuid &from, const Uuid &to) {
    const auto b = transport::encodeDataHello(transport::DataHello::make(from, to, {}, false));
    return {b.begin(), b.end()};
}

std::vector<uint8_t> frame(uint64_t seq, uint64_t offset, const std::vector<uint8_t> &payload, uint8_t pad = 0) {
    std::vector<uint8_t> b(24 + payload.size(), 0);
    storeLE64(b.data(), seq);
    storeLE64(b.data() + 8, offset);
    storeLE32(b.data() + 16, static_cast<uint32_t>(payload.size()));
    b[21] = pad;
    std::copy(payload.begin(), payload.end(), b.begin() + 24);
    return b;
}

// A sink that takes frames at offset*1 into a byte buffer and records them.
struct BufferSink : transport::FrameSink {
    explicit BufferSink(size_t size = 64) : mem(size, 0) {}
    std::vector<uint8_t> mem;
    std::mutex mu;
    std::condition_variable cv;
    std::vector<uint64_t> offsets;
    void *beginFrame(const SegmentHeader &h, const Uuid &, std::string *error) override {
        if (h.offset + h.bytes > mem.size()) {
            *error = "out of range";
            return nullptr;
        }
        return mem.data() + h.offset;
    }
    void onPayload(const SegmentHeader &h) override {
        std::lock_guard lock(mu);
        offsets.push_back(h.offset);
        cv.notify_all();
    }
    void onPayloadFailed(const SegmentHeader &, const std::string &why) override {
        std::lock_guard lock(mu);
        failures.push_back(why);
        cv.notify_all();
    }
    std::vector<std::string> failures;
    bool waitForFailure() {
        std::unique_lock lock(mu);
        return cv.wait_for(lock, std::chrono::seconds(5), [&] { return !failures.empty(); });
    }
    bool waitFor(size_t n) {
        std::unique_lock lock(mu);
        return cv.wait_for(lock, std::chrono::seconds(5), [&] { return offsets.size() >= n; });
    }
};

} // namespace

TEST_CASE("data plane: garbage, a foreign identity or a malformed header close only that connection", "[transport]") {
    DataPlane plane(1);
    const Uuid self = Uuid::random(), other = Uuid::random();
    plane.setSelf(self);
    REQUIRE(plane.listen(0).ok());
    auto sink = std::make_shared<BufferSink>();
    plane.registerSink(7, sink);

    int garbage = connectTo(plane.port());
    sendAll(garbage, std::vector<uint8_t>(78, 0xab));
    CHECK(closedWithin(garbage, 3000));

    int stranger = connectTo(plane.port());
    sendAll(stranger, hello(other, Uuid::random()));  // addressed to someone else
    CHECK(closedWithin(stranger, 3000));

    int badHeader = connectTo(plane.port());
    sendAll(badHeader, hello(other, self));
    sendAll(badHeader, frame(7, 0, {1, 2, 3}, /*pad=*/9));
    CHECK(closedWithin(badHeader, 3000));

    int outOfRange = connectTo(plane.port());
    sendAll(outOfRange, hello(other, self));
    sendAll(outOfRange, frame(7, 62, {1, 2, 3, 4}));  // the sink refuses it
    CHECK(closedWithin(outOfRange, 3000));

    // A well-behaved connection opened after all that still delivers.
    int good = connectTo(plane.port());
    sendAll(good, hello(other, self));
    sendAll(good, frame(7, 4, {9, 8, 7}));
    REQUIRE(sink->waitFor(1));
    CHECK(sink->mem[4] == 9);
    CHECK(sink->mem[6] == 7);
    for (int fd : {garbage, stranger, badHeader, outOfRange, good}) ::close(fd);
}

TEST_CASE("data plane: a frame for an operation not registered yet waits for it; one for a finished operation is "
          "dropped", "[transport]") {
    DataPlane plane(2);
    const Uuid self = Uuid::random(), other = Uuid::random();
    plane.setSelf(self);
    REQUIRE(plane.listen(0).ok());
    auto early = std::make_shared<BufferSink>();
    auto later = std::make_shared<BufferSink>();
    plane.registerSink(5, later);
    plane.unregisterSink(5);  // operation 5 is over: its frames are dropped from now on

    int fd = connectTo(plane.port());
    sendAll(fd, hello(other, self));
    sendAll(fd, frame(5, 0, {1, 1, 1, 1}));   // stale: dropped
    sendAll(fd, frame(9, 8, {5, 6}));         // ahead: parks until 9 registers
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    CHECK(later->offsets.empty());
    plane.registerSink(9, early);
    REQUIRE(early->waitFor(1));
    CHECK(early->mem[8] == 5);
    CHECK(early->mem[9] == 6);
    CHECK(later->mem[0] == 0);
    ::close(fd);
}

namespace {

// The congestion control names `ss` reports for the established connections to 127.0.0.1:port.
std::string congestionTo(uint16_t port) {
    const std::string cmd = "ss -tinH state established dst 127.0.0.1:" + std::to_string(port) + " 2>/dev/null";
    std::string out;
    if (FILE *p = ::popen(cmd.c_str(), "r")) {
        char buf[4096];
        size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
        ::pclose(p);
    }
    return out;
}

// Brings up a pool of `n` connections from `from` to the plane `to` (listening on loopback).
void connectPool(DataPlane &from, const DataPlane &to, const Uuid &toId, int n, std::array<uint8_t, 4> ip = {127, 0, 0, 1}) {
    protocol::NetAddr addr;
    addr.family = 4;
    std::copy(ip.begin(), ip.end(), addr.ip.begin());
    addr.port = to.port();
    std::promise<Status> done;
    from.connect(toId, addr, n, std::chrono::seconds(5), [&](Status s) { done.set_value(s); });
    auto f = done.get_future();
    REQUIRE(f.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    REQUIRE(f.get().ok());
}

// Connects a pool of `n` from a fresh plane with congestion mode `mode` to `to`; returns what ss saw.
std::string poolCongestion(const std::string &mode, DataPlane &to, const Uuid &toId, int n) {
    DataPlane from(1);
    from.setSelf(Uuid::random());
    from.setCongestionControl(mode);
    REQUIRE(from.listen(0).ok());
    connectPool(from, to, toId, n);
    return congestionTo(to.port());
}

} // namespace

TEST_CASE("data plane: outgoing connections use the congestion control asked for; auto leaves loopback alone",
          "[transport]") {
    if (std::system("ss -V >/dev/null 2>&1") != 0) {
        WARN("skipped: iproute2's ss is not installed");
        return;
    }
    DataPlane to(1);
    const Uuid toId = Uuid::random();
    to.setSelf(toId);
    REQUIRE(to.listen(0).ok());
    std::string system;
    {
        std::ifstream f("/proc/sys/net/ipv4/tcp_congestion_control");
        std::getline(f, system);
    }
    const std::string other = system == "reno" ? "cubic" : "reno";  // reno is built into every kernel
    const std::string named = poolCongestion(other, to, toId, 2);
    INFO("ss: " << named);
    size_t hits = 0;
    for (size_t at = 0; (at = named.find(" " + other + " ", at)) != std::string::npos; ++at) ++hits;
    CHECK(hits == 2);
    const std::string automatic = poolCongestion("auto", to, toId, 2);
    INFO("ss: " << automatic);
    CHECK(automatic.find(" " + system + " ") != std::string::npos);
    CHECK(automatic.find(" " + other + " ") == std::string::npos);
}

namespace {

// An IPv4 address of this machine that is not loopback (the listener takes every address), if any.
std::optional<std::array<uint8_t, 4>> interfaceAddress() {
    ifaddrs *list = nullptr;
    if (::getifaddrs(&list) != 0) return std::nullopt;
    std::optional<std::array<uint8_t, 4>> out;
    for (auto *i = list; i && !out; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || (i->ifa_flags & IFF_LOOPBACK) || !(i->ifa_flags & IFF_UP)) continue;
        std::array<uint8_t, 4> a{};
        std::memcpy(a.data(), &reinterpret_cast<sockaddr_in *>(i->ifa_addr)->sin_addr, 4);
        out = a;
    }
    ::freeifaddrs(list);
    return out;
}

} // namespace

TEST_CASE("data plane: a pool to a peer on this host counts as one connection for cutting frames; a remote pool as its "
          "live connections",
          "[transport][data_plane]") {
    DataPlane to(1);
    const Uuid toId = Uuid::random();
    to.setSelf(toId);
    REQUIRE(to.listen(0).ok());
    DataPlane from(1);
    from.setSelf(Uuid::random());
    from.setSameHost(false);
    REQUIRE(from.listen(0).ok());
    CHECK(from.connections(toId) == 0);  // no pool
    connectPool(from, to, toId, 3);      // 127.0.0.1: loopback
    CHECK(from.connections(toId) == 1);
    from.closePeer(toId, "test");
    CHECK(from.connections(toId) == 0);
    const auto ip = interfaceAddress();
    if (!ip) {
        WARN("skipped the remote half: this machine has no IPv4 address besides loopback");
        return;
    }
    // The same machine through an interface address and without same-host copies: treated as
    // remote, every live connection carries frames.
    connectPool(from, to, toId, 3, *ip);
    CHECK(from.connections(toId) == 3);
}

namespace {

uint8_t patternByte(uint64_t seq, size_t at) { return static_cast<uint8_t>(seq * 31 + at * 7 + (at >> 13)); }

} // namespace

TEST_CASE("data plane: large frames arrive whole however they are split; a payload's tail is read even when "
          "nothing follows it", "[transport]") {
    // The receiver raises SO_RCVLOWAT to what a large payload still misses; it must lower it for
    // the tail and for the next header, or the connection would wait for bytes that never come.
    DataPlane plane(1);
    const Uuid self = Uuid::random(), other = Uuid::random();
    plane.setSelf(self);
    REQUIRE(plane.listen(0).ok());
    auto sink = std::make_shared<BufferSink>(4u << 20);
    plane.registerSink(7, sink);
    plane.registerSink(5, std::make_shared<BufferSink>(1));
    plane.unregisterSink(5);  // frames for 5 are read and dropped

    auto payload = [](size_t at, size_t n) {
        std::vector<uint8_t> p(n);
        for (size_t i = 0; i < n; ++i) p[i] = patternByte(7, at + i);
        return p;
    };
    const int fd = connectTo(plane.port());
    sendAll(fd, hello(other, self));
    auto pause = [] { std::this_thread::sleep_for(std::chrono::milliseconds(150)); };
    auto sendRange = [&](const std::vector<uint8_t> &b, size_t from, size_t to) {
        sendAll(fd, std::vector<uint8_t>(b.begin() + static_cast<long>(from), b.begin() + static_cast<long>(to)));
    };

    // 1 MiB in three pieces, the last 10 bytes alone after a pause.
    const auto big = frame(7, 0, payload(0, 1u << 20));
    sendRange(big, 0, 300000);
    pause();
    sendRange(big, 300000, big.size() - 10);
    pause();
    sendRange(big, big.size() - 10, big.size());
    REQUIRE(sink->waitFor(1));

    // 70 KiB split in two with nothing after it.
    const auto mid = frame(7, 2u << 20, payload(2u << 20, 70u << 10));
    sendRange(mid, 0, 24 + 1000);
    pause();
    sendRange(mid, 24 + 1000, mid.size());
    REQUIRE(sink->waitFor(2));

    // A dropped 200 KiB frame whose tail comes late, then a 3-byte frame.
    const auto stale = frame(5, 0, std::vector<uint8_t>(200u << 10, 9));
    sendRange(stale, 0, stale.size() - 5);
    pause();
    sendRange(stale, stale.size() - 5, stale.size());
    sendAll(fd, frame(7, 3u << 20, payload(3u << 20, 3)));
    REQUIRE(sink->waitFor(3));

    for (size_t i = 0; i < (1u << 20); ++i) REQUIRE(sink->mem[i] == patternByte(7, i));
    for (size_t i = 2u << 20; i < (2u << 20) + (70u << 10); ++i) REQUIRE(sink->mem[i] == patternByte(7, i));
    for (size_t i = 3u << 20; i < (3u << 20) + 3; ++i) REQUIRE(sink->mem[i] == patternByte(7, i));
    CHECK(sink->mem[(1u << 20)] == 0);
    ::close(fd);
}

TEST_CASE("data plane: cancelling an operation while its frames are partly on the wire keeps the stream in step",
          "[transport]") {
    // One connection; the receiver parks it (operation 3 is not registered yet), so the sender's
    // gathered write stalls part-way with several frames in it. Cancelling operation 3 then must
    // drop only the frames no write has started; operation 4's frames, queued behind, arrive whole.
    // Over same-host copies a frame on the wire is a 32-byte header, so all of operation 3's
    // fit in the socket buffer and none is left to cancel; the rest holds the same.
    const bool sameHost = GENERATE(false, true);
    INFO("same-host copies: " << sameHost);
    DataPlane from(1), to(1);
    from.setSameHost(sameHost);
    const Uuid fromId = Uuid::random(), toId = Uuid::random();
    from.setSelf(fromId);
    to.setSelf(toId);
    REQUIRE(from.listen(0).ok());
    REQUIRE(to.listen(0).ok());
    connectPool(from, to, toId, 1);

    constexpr size_t kFrames = 40, kFrame = 1u << 20;
    std::vector<uint8_t> src3(kFrames * kFrame), src4(kFrames * kFrame);
    for (size_t i = 0; i < src3.size(); ++i) {
        src3[i] = patternByte(3, i);
        src4[i] = patternByte(4, i);
    }
    std::mutex mu;
    std::condition_variable cv;
    size_t doneCount = 0;
    std::vector<int> ok3(kFrames, -1), ok4(kFrames, -1);
    auto sendFrame = [&](uint64_t seq, size_t i, std::vector<uint8_t> &src, std::vector<int> &ok) {
        SegmentHeader h;
        h.seq = seq;
        h.offset = i * kFrame;
        h.bytes = kFrame;
        from.send(toId, h, src.data() + i * kFrame, [&, i](bool good, const std::string &) {
            std::lock_guard lock(mu);
            CHECK(ok[i] == -1);  // exactly once
            ok[i] = good ? 1 : 0;
            ++doneCount;
            cv.notify_all();
        });
    };
    for (size_t i = 0; i < kFrames; ++i) sendFrame(3, i, src3, ok3);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the write stalls: nobody reads
    for (size_t i = 0; i < kFrames; ++i) sendFrame(4, i, src4, ok4);
    from.cancelSends(3);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));

    auto sink3 = std::make_shared<BufferSink>(kFrames * kFrame);
    auto sink4 = std::make_shared<BufferSink>(kFrames * kFrame);
    to.registerSink(3, sink3);  // wakes the parked connection
    to.registerSink(4, sink4);
    {
        std::unique_lock lock(mu);
        const bool all = cv.wait_for(lock, std::chrono::seconds(20), [&] { return doneCount == 2 * kFrames; });
        std::string states;
        for (size_t i = 0; i < kFrames; ++i) states += std::to_string(ok3[i]) + "/" + std::to_string(ok4[i]) + " ";
        INFO("done " << doneCount << ": " << states);
        REQUIRE(all);
    }
    REQUIRE(sink4->waitFor(kFrames));
    size_t sent3 = 0;
    for (size_t i = 0; i < kFrames; ++i) {
        CHECK(ok4[i] == 1);
        sent3 += ok3[i] == 1;
    }
    CHECK(sent3 >= 1);        // the frames on the wire were not dropped
    if (!sameHost) CHECK(sent3 < kFrames);  // the rest were
    CHECK(from.sameHostConnections(toId) == (sameHost ? 1 : 0));
    REQUIRE(sink3->waitFor(sent3));
    CHECK(sink3->offsets.size() == sent3);
    for (size_t i = 0; i < kFrames; ++i) {
        const size_t at = i * kFrame;
        CHECK(std::memcmp(sink4->mem.data() + at, src4.data() + at, kFrame) == 0);
        if (ok3[i] == 1) {
            CHECK(std::memcmp(sink3->mem.data() + at, src3.data() + at, kFrame) == 0);
        } else {
            CHECK(std::all_of(sink3->mem.begin() + static_cast<long>(at), sink3->mem.begin() + static_cast<long>(at + kFrame),
                              [](uint8_t b) { return b == 0; }));
        }
    }
}

namespace {

std::vector<uint8_t> probeFrame(uint64_t seq, size_t bytes) {
    auto b = frame(seq, 0, std::vector<uint8_t>(bytes, 0));
    b[20] = 7;  // the probe phase
    return b;
}

} // namespace

TEST_CASE("bandwidth probe: the rate comes from the frames of the second half of the window (after slow start)",
          "[transport][topology]") {
    DataPlane plane(1);
    const Uuid self = Uuid::random(), slowStart = Uuid::random(), earlyOnly = Uuid::random();
    plane.setSelf(self);
    REQUIRE(plane.listen(0).ok());
    const auto measureFrom = std::chrono::steady_clock::now() + std::chrono::milliseconds(400);
    auto probe = std::make_shared<transport::BandwidthProbe>(plane, 11, 1 << 20, 1, measureFrom,
                                                             measureFrom + std::chrono::milliseconds(300));
    plane.registerSink(11, probe);
    auto probeFrame = [](size_t bytes) { return ::probeFrame(11, bytes); };
    const int a = connectTo(plane.port()), b = connectTo(plane.port());
    sendAll(a, hello(slowStart, self));
    sendAll(b, hello(earlyOnly, self));
    // Before measureFrom both send 64 KiB every 50 ms (~1.3 MB/s); after it, `a` sends at full
    // speed for 300 ms and `b` stops.
    while (std::chrono::steady_clock::now() < measureFrom - std::chrono::milliseconds(60)) {
        sendAll(a, probeFrame(64 << 10));
        sendAll(b, probeFrame(64 << 10));
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    std::this_thread::sleep_until(measureFrom + std::chrono::milliseconds(5));
    const auto fastUntil = measureFrom + std::chrono::milliseconds(290);
    const auto big = probeFrame(256 << 10);
    const auto fastStart = std::chrono::steady_clock::now();
    size_t fastBytes = 0;
    while (std::chrono::steady_clock::now() < fastUntil) {
        sendAll(a, big);
        fastBytes += big.size();
    }
    const double fastRate = static_cast<double>(fastBytes) /
                            std::chrono::duration<double>(std::chrono::steady_clock::now() - fastStart).count();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const auto rates = probe->rates();
    REQUIRE(rates.count(slowStart));
    REQUIRE(rates.count(earlyOnly));
    INFO("slow start then fast: " << rates.at(slowStart) << " B/s; early only: " << rates.at(earlyOnly) << " B/s");
    INFO("sent at " << fastRate << " B/s after measureFrom");
    // The whole span would give about 300/700 of the late rate.
    CHECK(static_cast<double>(rates.at(slowStart)) > 0.7 * fastRate);
    CHECK(rates.at(earlyOnly) > 500'000);     // no late frames: the whole span counts
    CHECK(rates.at(earlyOnly) < 3'000'000);
    plane.unregisterSink(11);
    ::close(a);
    ::close(b);
}

// A pool carries frames side by side: frames sent at once on several connections complete at
// once. The rate is the bytes completed in the window over the window, not over the spread of
// the completions (which, with three bursts in the window, overstates it by a third).
TEST_CASE("bandwidth probe: frames arriving side by side on a pool are rated over the window", "[transport][topology]") {
    DataPlane plane(1);
    const Uuid self = Uuid::random(), sender = Uuid::random();
    plane.setSelf(self);
    REQUIRE(plane.listen(0).ok());
    const auto t0 = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
    const auto window = std::chrono::milliseconds(900);  // 200 ms of slack after the last burst
    auto probe = std::make_shared<transport::BandwidthProbe>(plane, 12, 32 << 10, 1, t0, t0 + window);
    plane.registerSink(12, probe);
    std::vector<int> pool;
    for (int i = 0; i < 4; ++i) {
        pool.push_back(connectTo(plane.port()));
        sendAll(pool.back(), hello(sender, self));
    }
    // Three bursts inside the window, one 256 KiB frame per connection each: 3 MiB in 900 ms.
    const auto burst = probeFrame(12, 256 << 10);
    for (int k = 0; k < 3; ++k) {
        std::this_thread::sleep_until(t0 + std::chrono::milliseconds(100 + 300 * k));
        for (int fd : pool) sendAll(fd, burst);
    }
    REQUIRE(std::chrono::steady_clock::now() < t0 + window - std::chrono::milliseconds(50));  // else the machine stalled
    std::this_thread::sleep_until(t0 + window + std::chrono::milliseconds(100));
    const auto rates = probe->rates();
    REQUIRE(rates.count(sender));
    const double want = 12.0 * (256 << 10) / 0.9;  // the spread of the bursts would give 11/12 of it over 0.6 s: +38%
    INFO("rate " << rates.at(sender) << " B/s, sent " << want << " B/s over the window");
    CHECK(static_cast<double>(rates.at(sender)) > 0.9 * want);
    CHECK(static_cast<double>(rates.at(sender)) < 1.1 * want);
    CHECK(probe->receivedBytes() == 12u * (256u << 10));  // every byte that arrived, in or out of the window
    CHECK(probe->sentBytes() == 0);
    plane.unregisterSink(12);
    for (int fd : pool) ::close(fd);
}

// The bytes a probe moved count in the peers' tx/rx (docs/observability.md): the sender counts
// the frames its sockets took, the receiver those that arrived whole; once the stream ends they
// agree.
TEST_CASE("bandwidth probe: the bytes sent by one side are the bytes received by the other", "[transport][topology]") {
    DataPlane from(1), to(1);
    const Uuid fromId = Uuid::random(), toId = Uuid::random();
    from.setSelf(fromId);
    to.setSelf(toId);
    REQUIRE(from.listen(0).ok());
    REQUIRE(to.listen(0).ok());
    const auto now = std::chrono::steady_clock::now();
    auto sender = std::make_shared<transport::BandwidthProbe>(from, 14, 32 << 10, 4, now, now);
    auto receiver = std::make_shared<transport::BandwidthProbe>(to, 14, 32 << 10, 4, now, now + std::chrono::seconds(1));
    to.registerSink(14, receiver);
    protocol::NetAddr addr;
    addr.family = 4;
    addr.ip[0] = 127;
    addr.ip[3] = 1;
    addr.port = to.port();
    sender->sendTo(toId, addr, 1, std::chrono::seconds(5), now + std::chrono::milliseconds(300));
    const auto deadline = now + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline &&
           (std::chrono::steady_clock::now() < now + std::chrono::milliseconds(400) || sender->sentBytes() == 0 ||
            receiver->receivedBytes() != sender->sentBytes()))
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    INFO("sent " << sender->sentBytes() << ", received " << receiver->receivedBytes());
    CHECK(sender->sentBytes() > 0);
    CHECK(sender->sentBytes() % (32 << 10) == 0);
    CHECK(receiver->receivedBytes() == sender->sentBytes());
    CHECK(receiver->sentBytes() == 0);
    to.unregisterSink(14);
}

namespace {

// A hello that offers same-host copies with `id` (this process's identity, or a forged one).
std::vector<uint8_t> sameHostHello(const Uuid &from, const Uuid &to, const transport::SameHostIdentity &id) {
    const auto b = transport::encodeDataHello(transport::DataHello::make(from, to, id, true));
    return {b.begin(), b.end()};
}

// Reads exactly n bytes (or fewer if the connection closes or 5 s pass).
std::vector<uint8_t> readExactly(int fd, size_t n) {
    std::vector<uint8_t> b;
    pollfd p{fd, POLLIN, 0};
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (b.size() < n && std::chrono::steady_clock::now() < end) {
        if (::poll(&p, 1, 50) <= 0) continue;
        uint8_t buf[64];
        const ssize_t k = ::recv(fd, buf, std::min(sizeof buf, n - b.size()), 0);
        if (k <= 0) break;
        b.insert(b.end(), buf, buf + k);
    }
    return b;
}

// A same-host frame header: 24 bytes, then the payload's address (by reference) or zero.
std::vector<uint8_t> refFrame(uint64_t seq, uint64_t offset, uint32_t bytes, uint64_t address) {
    auto b = frame(seq, offset, {});
    storeLE32(b.data() + 16, bytes);
    b[21] = 1;
    b.resize(32);
    storeLE64(b.data() + 24, address);
    return b;
}

} // namespace

TEST_CASE("data plane: peers on one host copy large frames from the sender's memory and small ones inline; either "
          "side can turn it off", "[transport][same_host]") {
    const bool senderOn = GENERATE(true, false);
    const bool receiverOn = GENERATE(true, false);
    INFO("sender offers: " << senderOn << ", receiver accepts: " << receiverOn);
    DataPlane from(2), to(2);
    from.setSameHost(senderOn);
    to.setSameHost(receiverOn);
    const Uuid fromId = Uuid::random(), toId = Uuid::random();
    from.setSelf(fromId);
    to.setSelf(toId);
    REQUIRE(from.listen(0).ok());
    REQUIRE(to.listen(0).ok());
    connectPool(from, to, toId, 2);
    CHECK(from.sameHostConnections(toId) == (senderOn && receiverOn ? 2 : 0));

    // Sizes around the by-reference threshold (16 KiB), and several MiB.
    const std::vector<size_t> sizes = {1, 100, (16u << 10) - 1, 16u << 10, (1u << 20) + 3, 5u << 20, 0};
    size_t total = 0;
    for (size_t n : sizes) total += n;
    std::vector<uint8_t> src(total);
    for (size_t i = 0; i < total; ++i) src[i] = patternByte(11, i);
    auto sink = std::make_shared<BufferSink>(total);
    to.registerSink(11, sink);
    std::mutex mu;
    std::condition_variable cv;
    size_t completed = 0, good = 0;
    size_t at = 0;
    for (size_t n : sizes) {
        SegmentHeader h;
        h.seq = 11;
        h.offset = at;
        h.bytes = static_cast<uint32_t>(n);
        from.send(toId, h, src.data() + at, [&](bool ok, const std::string &) {
            std::lock_guard lock(mu);
            ++completed;
            good += ok ? 1 : 0;
            cv.notify_all();
        });
        at += n;
    }
    {
        std::unique_lock lock(mu);
        REQUIRE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return completed == sizes.size(); }));
    }
    CHECK(good == sizes.size());
    // A send completes only once the receiver has the bytes: every frame has arrived by now.
    REQUIRE(sink->waitFor(sizes.size()));
    CHECK(sink->mem == src);
}

TEST_CASE("data plane: a same-host offer is taken only with the sender's token; a frame naming memory the sender "
          "does not have fails and closes only that connection", "[transport][same_host]") {
    DataPlane plane(1);
    const Uuid self = Uuid::random(), other = Uuid::random();
    plane.setSelf(self);
    REQUIRE(plane.listen(0).ok());
    auto sink = std::make_shared<BufferSink>(1u << 20);
    plane.registerSink(7, sink);
    const auto me = transport::localSameHostIdentity();

    // A forged token (or another pid namespace, or no rights to read the sender): plain TCP.
    auto forged = me;
    forged.token[0] ^= 0xff;
    int tcp = connectTo(plane.port());
    sendAll(tcp, sameHostHello(other, self, forged));
    auto ack = readExactly(tcp, 8);
    REQUIRE(ack.size() == 8);
    CHECK(ack[4] == 1);
    CHECK(ack[5] == 0);
    // ... so a by-reference flag on its frames is malformed.
    sendAll(tcp, refFrame(7, 0, 64 << 10, reinterpret_cast<uintptr_t>(sink->mem.data())));
    CHECK(closedWithin(tcp, 3000));

    // A frame that names unmapped memory in the sender: the frame fails, the connection closes.
    int bad = connectTo(plane.port());
    sendAll(bad, sameHostHello(other, self, me));
    ack = readExactly(bad, 8);
    REQUIRE(ack.size() == 8);
    CHECK(ack[5] == 1);
    sendAll(bad, refFrame(7, 0, 64 << 10, 4096));
    REQUIRE(sink->waitForFailure());
    CHECK(sink->failures[0].find("process_vm_readv") != std::string::npos);
    CHECK(closedWithin(bad, 3000));

    // A good same-host connection still delivers, and acknowledges the frame it copied.
    std::vector<uint8_t> src(64 << 10);
    for (size_t i = 0; i < src.size(); ++i) src[i] = patternByte(3, i);
    int good = connectTo(plane.port());
    sendAll(good, sameHostHello(other, self, me));
    REQUIRE(readExactly(good, 8).size() == 8);
    sendAll(good, refFrame(7, 100, static_cast<uint32_t>(src.size()), reinterpret_cast<uintptr_t>(src.data())));
    const auto total = readExactly(good, 8);
    REQUIRE(total.size() == 8);
    CHECK(loadLE64(total.data()) == 1);
    REQUIRE(sink->waitFor(1));
    CHECK(std::equal(src.begin(), src.end(), sink->mem.begin() + 100));
    for (int fd : {tcp, bad, good}) ::close(fd);
}
