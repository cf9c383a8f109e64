// The one parser of "host:port" socket addresses, for the daemon's flags, PCCL_MASTER_ADDRESSES,
// the status server and pcclParseSocketAddress: "1.2.3.4:48148", "1.2.3.4" (default port),
// "[::1]:48148", "[::1]".
#pragma once
#include <string>

#include "protocol/messages.h"
#include "util/status.h"

namespace pccl::transport {

// What a host may be besides an IP literal.
enum class HostNames {
    // Also a bare IPv6 address ("::1", default port) and a host name ("localhost:5000", resolved
    // by the local resolver to its first address); an IPv4-mapped IPv6 address reads as IPv4.
    Resolved,
    // IP literals only, IPv6 in brackets (pcclParseSocketAddress: it never blocks and means the
    // same on every machine).
    Refused,
};

// Errors are pcclInvalidArgument "bad address '<text>': <what is wrong>".
Result<protocol::NetAddr> parseSocketAddress(const std::string &text, uint16_t defaultPort,
                                             HostNames hosts = HostNames::Resolved);

// PCCL_ADVERTISED_ADDRESS: "host:port", "host" (port 0: keep the real data port) or ":port"
// (family 0: keep the address the master observes). Unspecified addresses are refused.
Result<protocol::NetAddr> parseAdvertisedAddress(const std::string &text);

// PCCL_PORT_RANGE: "lo-hi" or one port, 1 <= lo <= hi <= 65535.
Status parsePortRange(const std::string &text, uint16_t *lo, uint16_t *hi);

} // namespace pccl::transport
