#include "transport/address.h"

#include <asio.hpp>
#include <charconv>

#include "transport/framed_connection.h"

namespace pccl::transport {

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
        unsigned v = 0;
        auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
        if (ec != std::errc() || ptr != port.data() + port.size() || v > 65535)
            return invalidArgument("bad port in address '" + text + "'");
        portNum = static_cast<uint16_t>(v);
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

} // namespace pccl::transport
