#include "transport/address.h"

#include <arpa/inet.h>

#include <asio.hpp>
#include <optional>

#include "transport/framed_connection.h"

namespace pccl::transport {

namespace {

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

struct HostPort {
    std::string host;
    std::optional<std::string> port;  // nullopt: none given
    bool bracketed = false;
};

// Splits "[v6]:port", "[v6]", "v4:port" or "v4" (with bareV6 also "v6") into its parts; says
// what is wrong otherwise.
Result<HostPort> splitHostPort(const std::string &text, bool bareV6) {
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
        if (colon != std::string::npos && text.find(':', colon + 1) != std::string::npos) {
            if (!bareV6) return invalidArgument("more than one ':'; write an IPv6 address in brackets, e.g. [::1]:48148");
            hp.host = text;
            return hp;
        }
        hp.host = text.substr(0, colon);
        if (colon != std::string::npos) rest = text.substr(colon);
    }
    if (!rest.empty()) {
        if (rest.front() != ':') return invalidArgument("unexpected '" + rest + "' after ']'");
        hp.port = rest.substr(1);
    }
    return hp;
}

// An IP literal as inet_pton reads it (IPv6 when bracketed), the address kept as written.
Result<protocol::NetAddr> literal(const HostPort &hp, uint16_t port) {
    protocol::NetAddr a;
    a.port = port;
    a.family = hp.bracketed ? 6 : 4;
    if (::inet_pton(hp.bracketed ? AF_INET6 : AF_INET, hp.host.c_str(), a.ip.data()) == 1) return a;
    if (hp.bracketed) return invalidArgument("'" + hp.host + "' is not an IPv6 address");
    return invalidArgument("'" + hp.host + "' is not an IPv4 address (a.b.c.d; host names are not resolved)");
}

// An IP literal (with an IPv6 scope) or a host name through the local resolver.
Result<protocol::NetAddr> resolve(const std::string &host, uint16_t port) {
    if (host.empty()) return invalidArgument("empty host");
    asio::error_code ec;
    auto addr = asio::ip::make_address(host, ec);
    if (ec) {
        asio::io_context io;
        asio::ip::tcp::resolver resolver(io);
        auto results = resolver.resolve(host, std::to_string(port), ec);
        if (ec || results.empty()) return invalidArgument("cannot resolve host '" + host + "'");
        addr = results.begin()->endpoint().address();
    }
    return toNetAddr(asio::ip::tcp::endpoint(addr, port));
}

Result<protocol::NetAddr> parseParts(const std::string &text, uint16_t defaultPort, HostNames hosts) {
    if (text.empty()) return invalidArgument("the address is empty");
    auto hp = splitHostPort(text, hosts == HostNames::Resolved);
    if (!hp.ok()) return hp.status();
    uint16_t port = defaultPort;
    if (hp->port) {
        auto p = parsePort(*hp->port);
        if (!p.ok()) return p.status();
        port = *p;
    }
    return hosts == HostNames::Refused ? literal(*hp, port) : resolve(hp->host, port);
}

} // namespace

Result<protocol::NetAddr> parseSocketAddress(const std::string &text, uint16_t defaultPort, HostNames hosts) {
    auto a = parseParts(text, defaultPort, hosts);
    if (!a.ok()) return invalidArgument("bad address '" + text + "': " + a.status().message());
    return a;
}

Result<protocol::NetAddr> parseAdvertisedAddress(const std::string &text) {
    protocol::NetAddr a;
    a.family = 0;
    if (text.empty()) return invalidArgument("the advertised address is empty");
    if (text.back() == ':') return invalidArgument("empty port after ':' in '" + text + "'");
    if (text.front() == ':') {
        auto p = parsePort(text.substr(1));
        if (!p.ok()) return p.status();
        a.port = *p;
    } else {
        auto parsed = parseSocketAddress(text, 0);
        if (!parsed.ok()) return parsed.status();
        a = *parsed;
        if (a.ip == decltype(a.ip){} || (a.family == 4 && a.ip[0] == 0 && a.ip[1] == 0 && a.ip[2] == 0 && a.ip[3] == 0))
            return invalidArgument("'" + text + "' is an unspecified address (0.0.0.0 or ::), which no peer can connect to");
    }
    if (a.family == 0 && a.port == 0) return invalidArgument("':0' advertises nothing (give a port, an address or both)");
    return a;
}

Status parsePortRange(const std::string &text, uint16_t *lo, uint16_t *hi) {
    const auto dash = text.find('-');
    auto first = parsePort(text.substr(0, dash));
    auto last = dash == std::string::npos ? first : parsePort(text.substr(dash + 1));
    if (!first.ok() || !last.ok())
        return invalidArgument("bad port range '" + text + "': " + (first.ok() ? last : first).status().message());
    if (*first == 0 || *last < *first)
        return invalidArgument("port range '" + text + "' is not lo-hi with 1 <= lo <= hi <= 65535 (or one port)");
    *lo = *first;
    *hi = *last;
    return {};
}

} // namespace pccl::transport
