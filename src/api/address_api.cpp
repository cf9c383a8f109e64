// pcclParseSocketAddress: the public API's "host:port" parser, transport::parseSocketAddress with
// host names refused. Literal IPs only (no DNS), so it never blocks and means the same on every
// machine.
#include <pccl.h>

#include <cstring>
#include <string>

#include "api/api_common.h"
#include "transport/address.h"

using namespace pccl;
using pccl::api::fail;
using pccl::api::guarded;

extern "C" {

PCCL_EXPORT pcclResult_t pcclParseSocketAddress(const char *text, ccoip_socket_address_t *out) {
    return guarded(nullptr, [&] {
        if (!text) return fail(nullptr, invalidArgument("pcclParseSocketAddress: text is NULL"));
        if (!out) return fail(nullptr, invalidArgument("pcclParseSocketAddress: out is NULL"));
        const std::string s(text, ::strnlen(text, 4096));
        if (s.size() >= 4096) return fail(nullptr, invalidArgument("pcclParseSocketAddress: text is not an address (4096 bytes or more)"));
        auto a = transport::parseSocketAddress(s, CCOIP_PROTOCOL_PORT_MASTER, transport::HostNames::Refused);
        if (!a.ok()) return fail(nullptr, invalidArgument("pcclParseSocketAddress: " + a.status().message()));
        *out = api::toCcoip(*a);
        return pcclSuccess;
    });
}

} // extern "C"
