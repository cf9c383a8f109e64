#include "transport/address.h"

#include <asio.hpp>
#include <charconv>

#include "transport/framed_connection.h"

namespace pccl::transport {

namespace {

// Decimal 0..65535, digits only; `text` names the whole value in the error.
Result<uint16_t> parsePort(const std::string &port, const std::string &text) {
    unsigned v = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
    if (port.empty() || ec != std::errc() || ptr != port.data() + port.size() || v > 65535)
        return invalidArgument("bad port in address '" + text + "'");
    return static_cast<uint16_t>(v);
}

} // namespace

Result<protocol::NetAddr> parseSocketAddress(const std::string &text, uint16_t defaultPort) {
    std::string host = text;
    std::string port;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string::npos) return invalidArgument("bad address '" + text + "': missing ']'");
        host = text.substr(1, close - 1);
        if (close + 1 < text.size()) {
            if (text[close + 1] != ':') return invalidArgument("bad address '" + text + "'");
            port = text.substr(close + 2);
        }
    } else if (std::count(text.begin(), text.end(), ':') == 1) {
        const auto colon = text.find(':');
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
    }
    uint16_t portNum = defaultPort;
    if (!port.empty()) {
        auto p = parsePort(port, text);
        if (!p.ok()) return p.status();
        portNum = *p;
    }
    if (host.empty()) return invalidArgument("bad address '" + text + "': empty host");
    asio::error_code ec;
    auto addr = asio::ip::make_address(host, ec);
    if (ec) {
        asio::io_context io;
        asio::ip::tcp::resolver resolver(io);
        auto results = resolver.resolve(host, std::to_string(portNum), ec);
        if (ec || results.empty()) return invalidArgument("cannot resolve host '" + host + "'");
        addr = results.begin()->endpoint().address();
    }
    return toNetAddr(asio::ip::tcp::endpoint(addr, portNum));
}

Result<protocol::NetAddr> parseAdvertisedAddress(const std::string &text) {
    protocol::NetAddr a;
    a.family = 0;
    if (text.empty()) return invalidArgument("the advertised address is empty");
    if (text.back() == ':') return invalidArgument("empty port after ':' in '" + text + "'");
    if (text.front() == ':') {
        auto p = parsePort(text.substr(1), text);
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
    auto first = parsePort(text.substr(0, dash), text);
    if (!first.ok()) return first.status();
    auto last = dash == std::string::npos ? first : parsePort(text.substr(dash + 1), text);
    if (!last.ok()) return last.status();
    if (*first == 0 || *last < *first)
        return invalidArgument("port range '" + text + "' is not lo-hi with 1 <= lo <= hi <= 65535 (or one port)");
    *lo = *first;
    *hi = *last;
    return {};
}

} // namespace pccl::transport
