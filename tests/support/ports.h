// Loopback ports for what binds later (a master restarted on its address, a peer's fixed data
// port, an etcd server): free now, and below the kernel's ephemeral range
// (/proc/sys/net/ipv4/ip_local_port_range), so that until then neither a port-0 listener nor an
// outgoing connection takes it, as one can take a port that bind(0) handed out and released. (A
// peer reconnecting to 127.0.0.1:P from the ephemeral port P would connect to itself.)
#pragma once
#include <cstdint>
#include <string>

namespace pccl_test {

// A port in 10000..(ephemeral range start - 1) that 127.0.0.1 can bind now, 0 with `err` set if
// none is found.
uint16_t unusedLoopbackPort(std::string &err);

} // namespace pccl_test
