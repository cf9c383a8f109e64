// pcclParseSocketAddress: the public API's one "host:port" parser. Literal IPs only (no DNS), so
// it never blocks and means the same on every machine.
#include <pccl.h>

#include <arpa/inet.h>

#include <cstring>
#include <string>

#include "api/api_common.h"

using namespace pccl;
using pccl::api::fail;
using pccl::api::guarded;

namespace {

struct HostPort {
    std::string host;
    std::string port; // empty: none given
    bool hasPort = false;
    bool bracketed = false;
};

// Splits "[v6]:port", "[v6]", "v4:port" or "v4" into its parts; says what is wrong otherwise.
Result<HostPort> splitHostPort(const std::string &text) {
    HostPort hp;
    std::string rest;
    if (text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string::npos) return invalidArgument("missing ']' after the IPv6 address");
        hp.bracketed = true;
        hp.host = text.substr(1, close - 1);
        rest = text.substr(close + 1);
    } else {
        if (text.find(']') != std::string::npos) return invalidArgument("']' without '['");
        const auto colon = text.find(':');
        if (colon != std::string::npos && text.find(':', colon + 1) != std::string::npos)
            return invalidArgument("more than one ':'; write an IPv6 address in brackets, e.g. [::1]:48148");
        hp.host = text.substr(0, colon);
        if (colon != std::string::npos) rest = text.substr(colon);
    }
    if (!rest.empty()) {
        if (rest.front() != ':') return invalidArgument("unexpected '" + rest + "' after ']'");
        hp.hasPort = true;
        hp.port = rest.substr(1);
    }
    return hp;
}

// Decimal 0..65535, digits only (no sign, no spaces, nothing after it).
Result<uint16_t> parsePort(const std::string &port) {
    if (port.empty()) return invalidArgument("empty port after ':'");
    unsigned long v = 0;
    for (const char c : port) {
        if (c < '0' || c > '9') return invalidArgument("port '" + port + "' is not a decimal number");
        v = v * 10 + static_cast<unsigned long>(c - '0');
        if (v > 65535) return invalidArgument("port '" + port + "' is above 65535");
    }
    return static_cast<uint16_t>(v);
}

Status parseInto(const std::string &text, ccoip_socket_address_t *out) {
    if (text.empty()) return invalidArgument("the address is empty");
    auto hp = splitHostPort(text);
    if (!hp.ok()) return hp.status();
    uint16_t port = CCOIP_PROTOCOL_PORT_MASTER;
    if (hp->hasPort) {
        auto p = parsePort(hp->port);
        if (!p.ok()) return p.status();
        port = *p;
    }
    ccoip_socket_address_t a;
    std::memset(&a, 0, sizeof a);
    a.port = port;
    if (hp->bracketed) {
        if (::inet_pton(AF_INET6, hp->host.c_str(), a.inet.ipv6.data) != 1)
            return invalidArgument("'" + hp->host + "' is not an IPv6 address");
        a.inet.protocol = inetIPv6;
    } else {
        if (::inet_pton(AF_INET, hp->host.c_str(), a.inet.ipv4.data) != 1)
            return invalidArgument("'" + hp->host + "' is not an IPv4 address (a.b.c.d; host names are not resolved)");
        a.inet.protocol = inetIPv4;
    }
    *out = a;
    return {};
}

} // namespace

extern "C" {

PCCL_EXPORT pcclResult_t pcclParseSocketAddress(const char *text, ccoip_socket_address_t *out) {
    return guarded(nullptr, [&] {
        if (!text) return fail(nullptr, invalidArgument("pcclParseSocketAddress: text is NULL"));
        if (!out) return fail(nullptr, invalidArgument("pcclParseSocketAddress: out is NULL"));
        const std::string s(text, ::strnlen(text, 4096));
        if (s.size() >= 4096) return fail(nullptr, invalidArgument("pcclParseSocketAddress: text is not an address (4096 bytes or more)"));
        const Status st = parseInto(s, out);
        if (st.ok()) return pcclSuccess;
        return fail(nullptr, invalidArgument("pcclParseSocketAddress: bad address '" + s + "': " + st.message()));
    });
}

} // extern "C"
