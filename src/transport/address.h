// Parsing of "host:port" socket addresses: "1.2.3.4:48148", "[::1]:48148", "::1" (default port),
// "localhost:5000" (resolved to an IPv4 or IPv6 address, no DNS beyond the local resolver).
#pragma once
#include <string>

#include "protocol/messages.h"
#include "util/status.h"

namespace pccl::transport {

Result<protocol::NetAddr> parseSocketAddress(const std::string &text, uint16_t defaultPort);

} // namespace pccl::transport
