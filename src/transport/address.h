// Parsing of "host:port" socket addresses: "1.2.3.4:48148", "[::1]:48148", "::1" (default port),
// "localhost:5000" (resolved to an IPv4 or IPv6 address, no DNS beyond the local resolver).
#pragma once
#include <string>

#include "protocol/messages.h"
#include "util/status.h"

namespace pccl::transport {

Result<protocol::NetAddr> parseSocketAddress(const std::string &text, uint16_t defaultPort);

// PCCL_ADVERTISED_ADDRESS: "host:port", "host" (port 0: keep the real data port) or ":port"
// (family 0: keep the address the master observes). Unspecified addresses are refused.
Result<protocol::NetAddr> parseAdvertisedAddress(const std::string &text);

// PCCL_PORT_RANGE: "lo-hi" or one port, 1 <= lo <= hi <= 65535.
Status parsePortRange(const std::string &text, uint16_t *lo, uint16_t *hi);

} // namespace pccl::transport
