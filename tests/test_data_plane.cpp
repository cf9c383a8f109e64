// The data plane's frame routing and its handling of malformed input, with raw sockets.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

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

#include "transport/data_plane.h"
#include "util/bytes.h"

using namespace pccl;
using pccl::transport::DataPlane;
using pccl::transport::SegmentHeader;

namespace {

int connectTo(uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0);
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

std::vector<uint8_t> hello(const Uuid &from, const Uuid &to) {
    std::vector<uint8_t> b(38);
    storeLE32(b.data(), 0x4c444350);
    b[4] = static_cast<uint8_t>(protocol::kProtocolVersion & 0xff);
    b[5] = static_cast<uint8_t>(protocol::kProtocolVersion >> 8);
    std::memcpy(b.data() + 6, from.bytes.data(), 16);
    std::memcpy(b.data() + 22, to.bytes.data(), 16);
    return b;
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
    std::vector<uint8_t> mem = std::vector<uint8_t>(64, 0);
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
    void onPayloadFailed(const SegmentHeader &, const std::string &) override {}
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
    sendAll(garbage, std::vector<uint8_t>(38, 0xab));
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

// Connects a pool of `n` from a fresh plane with congestion mode `mode` to `to`; returns what ss saw.
std::string poolCongestion(const std::string &mode, DataPlane &to, const Uuid &toId, int n) {
    DataPlane from(1);
    from.setSelf(Uuid::random());
    from.setCongestionControl(mode);
    REQUIRE(from.listen(0).ok());
    protocol::NetAddr addr;
    addr.family = 4;
    addr.ip[0] = 127;
    addr.ip[3] = 1;
    addr.port = to.port();
    std::promise<Status> done;
    from.connect(toId, addr, n, std::chrono::seconds(5), [&](Status s) { done.set_value(s); });
    auto f = done.get_future();
    REQUIRE(f.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    REQUIRE(f.get().ok());
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
