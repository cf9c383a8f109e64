// Same-host copies: a peer reads a frame's payload straight out of the sending peer's memory
// (process_vm_readv, "cross-memory attach") instead of through the TCP stack. On one machine this
// is one copy at memory speed in place of two kernel copies plus the TCP/IP stack.
//
// Used per data connection, only when the connection's handshake proves that both ends can:
// the sender offers its pid, the inode of its network namespace and the address of a random
// token in its memory; the receiver takes the offer only if its own network namespace is the
// same (peers in other namespaces, e.g. emulated WAN links, keep TCP) and it reads the token back
// from that pid (a different pid namespace, missing ptrace rights or a lie all fail that check).
// The TCP connection stays: it carries the headers, the receiver's acknowledgements, and
// liveness (a killed sender resets it as before). docs/same_host.md has the whole design.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace pccl::transport {

struct SameHostIdentity {
    uint32_t pid = 0;
    uint64_t netns = 0;  // inode of /proc/self/ns/net; 0 = unknown (no offer is made)
    uint64_t tokenAddress = 0;
    std::array<uint8_t, 16> token{};
};

// This process's identity (the pid is read at each call, so a forked child offers its own).
SameHostIdentity localSameHostIdentity();

// PCCL_SAME_HOST: "off" or "0" disables same-host copies for data planes created afterwards;
// anything else (or unset) leaves them on where the handshake allows.
bool sameHostFromEnvironment();

// Whether `remote` (from a connection's hello) can be read from here: same network namespace
// and its token reads back from its pid. Blocking, one small syscall.
bool sameHostReachable(const SameHostIdentity &remote);

// Copies `bytes` from `address` in process `pid` to `dest`. Returns an empty string, or why it
// failed (the process is gone, the range is not mapped there, ...). Never faults locally for a
// bad remote range.
std::string copyFromPeer(uint32_t pid, uint64_t address, void *dest, size_t bytes);

} // namespace pccl::transport
