#include "support/ports.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <random>

namespace pccl_test {
namespace {

bool bindable(uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0;
    ::close(fd);
    return ok;
}

} // namespace

uint16_t unusedLoopbackPort(std::string &err) {
    int lo = 32768, hi = 60999;
    std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
    if (!(in >> lo >> hi)) lo = 32768;
    // Below the ephemeral range, above the well-known and most registered service ports.
    const int first = 10000, last = lo - 1;
    if (last - first < 100) {
        err = "the ephemeral port range starts at " + std::to_string(lo) + ": no room below it for a fixed port";
        return 0;
    }
    std::mt19937 rng(std::random_device{}());
    std::uniform_int_distribution<int> pick(first, last);
    for (int attempt = 0; attempt < 200; ++attempt) {
        const auto port = static_cast<uint16_t>(pick(rng));
        if (bindable(port)) return port;
    }
    err = "no free loopback port in " + std::to_string(first) + ".." + std::to_string(last) + " after 200 tries";
    return 0;
}

} // namespace pccl_test
