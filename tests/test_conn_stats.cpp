// What the data plane reads from the kernel of a connection (src/transport/conn_stats.h), on
// real loopback sockets.
#include <catch2/catch.hpp>

#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "support/common.h"
#include "transport/conn_stats.h"

using pccl::transport::tcpProgress;

namespace {

struct Pair {
    int client = -1, server = -1;
    Pair() {
        uint16_t port = 0;
        const int listener = pccl_test::listenLoopback(&port, 1);
        REQUIRE(listener >= 0);
        client = pccl_test::connectLoopback(port);
        server = ::accept(listener, nullptr, nullptr);
        ::close(listener);
        REQUIRE(client >= 0);
        REQUIRE(server >= 0);
    }
    ~Pair() {
        ::close(client);
        ::close(server);
    }
};

} // namespace

TEST_CASE("tcp progress: a fresh connection is in its first slow start, one past BBR's start-up is not",
          "[transport][conn_stats]") {
    Pair p;
    const auto fresh = tcpProgress(p.client);
    CHECK(fresh.startup);
    const char bbr[] = "bbr";
    if (::setsockopt(p.client, IPPROTO_TCP, TCP_CONGESTION, bbr, sizeof bbr - 1) != 0) {
        WARN("no bbr congestion control here: only the fresh connection is checked");
        return;
    }
    std::atomic<bool> stop{false};
    std::thread reader([&] {
        std::vector<char> buf(1 << 20);
        while (!stop && ::recv(p.server, buf.data(), buf.size(), 0) > 0) {
        }
    });
    // BBR leaves its start-up once its bandwidth estimate stops growing (on loopback within a
    // second, measured); then the kernel reports the threshold it set.
    std::vector<char> data(1 << 20, 'x');
    bool left = false;
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!left && std::chrono::steady_clock::now() < until) {
        REQUIRE(::send(p.client, data.data(), data.size(), 0) > 0);
        left = !tcpProgress(p.client).startup;
    }
    stop = true;
    ::shutdown(p.client, SHUT_WR);
    reader.join();
    CHECK(left);
    CHECK(tcpProgress(p.client).delivered > fresh.delivered + data.size());
}
