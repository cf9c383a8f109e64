#include "transport/same_host.h"

#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <random>

namespace pccl::transport {
namespace {

// The token lives here for the life of the process; its address goes in every offer.
struct Token {
    std::array<uint8_t, 16> bytes{};
    Token() {
        std::random_device rd;
        for (size_t i = 0; i < bytes.size(); i += 4) {
            const uint32_t r = rd();
            std::memcpy(bytes.data() + i, &r, 4);
        }
    }
};

const Token &token() {
    static const Token t;
    return t;
}

uint64_t networkNamespace() {
    struct stat st {};
    if (::stat("/proc/self/ns/net", &st) != 0) return 0;
    return static_cast<uint64_t>(st.st_ino);
}

} // namespace

SameHostIdentity localSameHostIdentity() {
    SameHostIdentity id;
    id.pid = static_cast<uint32_t>(::getpid());
    id.netns = networkNamespace();
    id.tokenAddress = reinterpret_cast<uintptr_t>(token().bytes.data());
    id.token = token().bytes;
    return id;
}

bool sameHostFromEnvironment() {
    const char *v = std::getenv("PCCL_SAME_HOST");
    return !(v && (std::strcmp(v, "off") == 0 || std::strcmp(v, "0") == 0));
}

bool sameHostReachable(const SameHostIdentity &remote) {
    if (remote.pid == 0 || remote.netns == 0 || remote.netns != networkNamespace()) return false;
    std::array<uint8_t, 16> read{};
    if (!copyFromPeer(remote.pid, remote.tokenAddress, read.data(), read.size()).empty()) return false;
    return read == remote.token;
}

std::string copyFromPeer(uint32_t pid, uint64_t address, void *dest, size_t bytes) {
    size_t done = 0;
    while (done < bytes) {
        iovec local{static_cast<uint8_t *>(dest) + done, bytes - done};
        iovec remote{reinterpret_cast<void *>(static_cast<uintptr_t>(address + done)), bytes - done};
        const ssize_t n = ::process_vm_readv(static_cast<pid_t>(pid), &local, 1, &remote, 1, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return std::string("process_vm_readv from pid ") + std::to_string(pid) + ": " + std::strerror(errno);
        if (n == 0) return "process_vm_readv from pid " + std::to_string(pid) + ": nothing read";
        done += static_cast<size_t>(n);
    }
    return {};
}

} // namespace pccl::transport
