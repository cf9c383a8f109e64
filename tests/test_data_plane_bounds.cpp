// The data plane's listener caps (issue 14, item 5): accepted connections per source address and
// in total; one more is closed at once, connections under the caps stay open.
#include "support/cluster.h"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <cstdlib>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport/data_plane.h"

using namespace pccl_test;

namespace {

// A connection to 127.0.0.1:port from `source` (a loopback address), closed on destruction.
struct Conn {
    int fd = -1;
    Conn(uint16_t port, const char *source) {
        fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in from{};
        from.sin_family = AF_INET;
        ::inet_pton(AF_INET, source, &from.sin_addr);
        PT_CHECK(::bind(fd, reinterpret_cast<sockaddr *>(&from), sizeof from) == 0);
        sockaddr_in to{};
        to.sin_family = AF_INET;
        to.sin_port = htons(port);
        to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        PT_CHECK(::connect(fd, reinterpret_cast<sockaddr *>(&to), sizeof to) == 0);
    }
    ~Conn() { ::close(fd); }
    // Whether the other side closed it within timeout_ms.
    bool closedWithin(int timeout_ms) const {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, timeout_ms) <= 0) return false;
        char b;
        return ::recv(fd, &b, 1, MSG_PEEK) <= 0;
    }
};

} // namespace

TEST_CASE("data plane bounds: one connection over the per-address or the total cap is closed at once",
          "[bounds][data_plane]") {
    isolated(20, [&] {
        ::setenv("PCCL_MAX_DATA_CONNECTIONS_PER_ADDRESS", "4", 1);
        ::setenv("PCCL_MAX_DATA_CONNECTIONS", "6", 1);
        pccl::transport::DataPlane plane(1);
        PT_CHECK(plane.listen(0).ok());
        std::vector<std::unique_ptr<Conn>> held;
        for (int i = 0; i < 4; ++i) held.push_back(std::make_unique<Conn>(plane.port(), "127.0.0.2"));
        Conn fifth(plane.port(), "127.0.0.2");
        PT_CHECK_MSG(fifth.closedWithin(2000), "the 5th connection from 127.0.0.2 was kept (cap 4)");
        for (int i = 0; i < 2; ++i) held.push_back(std::make_unique<Conn>(plane.port(), "127.0.0.3"));
        Conn seventh(plane.port(), "127.0.0.4");
        PT_CHECK_MSG(seventh.closedWithin(2000), "the 7th connection was kept (total cap 6)");
        for (auto &c : held) PT_CHECK_MSG(!c->closedWithin(0), "a connection under the caps was closed");
    });
}
