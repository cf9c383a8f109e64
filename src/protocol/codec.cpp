#include "protocol/codec.h"

#include <utility>

#include "protocol/field_codec.h"

namespace pccl::protocol {
namespace {

using fields::get;
using fields::put;

template <size_t... I>
std::optional<ControlMessage> decodeByIndex(uint16_t type, Reader &r, std::index_sequence<I...>) {
    std::optional<ControlMessage> out;
    ((type == I ? (void)([&] {
         std::variant_alternative_t<I, ControlMessage> m;
         get(r, m);
         out.emplace(std::in_place_index<I>, std::move(m));
     }())
                : void()),
     ...);
    return out;
}

} // namespace

void encodeFrame(const ControlMessage &m, std::vector<uint8_t> &out) {
    const size_t start = out.size();
    Writer w(out);
    w.uint<uint32_t>(0);
    w.uint<uint16_t>(static_cast<uint16_t>(m.index()));
    std::visit([&](const auto &msg) { put(w, msg); }, m);
    storeLE32(out.data() + start, static_cast<uint32_t>(out.size() - start - kFrameHeaderBytes));
}

std::optional<ControlMessage> decodeMessage(uint16_t type, const uint8_t *payload, size_t size, std::string *error) {
    if (type >= std::variant_size_v<ControlMessage>) {
        *error = "unknown message type " + std::to_string(type);
        return std::nullopt;
    }
    Reader r(payload, size);
    auto m = decodeByIndex(type, r, std::make_index_sequence<std::variant_size_v<ControlMessage>>{});
    // A Hello of another protocol version may have another layout: whatever follows, its magic
    // and version (the first fields of every version) are enough for the master to reject it
    // with a reason instead of dropping the connection silently.
    if ((r.failed() || !m || r.remaining() != 0) && type == 0 && size >= 6 && loadLE32(payload) == kMagic &&
        static_cast<uint16_t>(payload[4] | (payload[5] << 8)) != kProtocolVersion) {
        Hello h;
        h.version = static_cast<uint16_t>(payload[4] | (payload[5] << 8));
        return ControlMessage{h};
    }
    if (r.failed() || !m) {
        *error = "malformed message of type " + std::to_string(type);
        return std::nullopt;
    }
    if (r.remaining() != 0) {
        *error = "trailing bytes in message " + std::string(messageName(*m));
        return std::nullopt;
    }
    return m;
}

const char *messageName(const ControlMessage &m) {
    static const char *names[] = {"Hello",           "VoteUpdateTopology", "LinksReady",         "VotePeersPending",
                                  "VoteOptimizeTopology", "CollectiveInit", "CollectiveDone",    "Leave",
                                  "Welcome",         "Reject",             "TopologyUpdate",     "TopologyDone",
                                  "PeersPendingResult", "OptimizeTopologyResult", "WorldUpdate", "CollectiveCommence",
                                  "CollectiveCommitted", "CollectiveAborted", "Kicked",
                                  "Heartbeat",       "HeartbeatAck",       "SharedStateSync",    "SharedStatePlan",
                                  "SharedStateDone", "SharedStateCommitted", "SharedStateAborted", "VoteFailed", "SharedStateSourceLost", "BandwidthProbe", "BandwidthReport",
                                  "CollectiveAwait", "PeerKeys", "StatsReport", "Rejoin", "Rejoined", "MasterShutdown"};
    static_assert(sizeof(names) / sizeof(names[0]) == std::variant_size_v<ControlMessage>);
    return names[m.index()];
}

std::string NetAddr::str() const {
    std::string s;
    if (family == 4) {
        for (int i = 0; i < 4; ++i) s += (i ? "." : "") + std::to_string(ip[i]);
    } else {
        static const char *hex = "0123456789abcdef";
        s = "[";
        for (int i = 0; i < 16; i += 2) {
            if (i) s += ":";
            const unsigned v = (ip[i] << 8) | ip[i + 1];
            char buf[8];
            int n = 0;
            bool started = false;
            for (int sh = 12; sh >= 0; sh -= 4) {
                const unsigned d = (v >> sh) & 15;
                if (d || started || sh == 0) {
                    buf[n++] = hex[d];
                    started = true;
                }
            }
            s.append(buf, n);
        }
        s += "]";
    }
    return s + ":" + std::to_string(port);
}

} // namespace pccl::protocol
