#include "transport/data_wire.h"

#include <algorithm>
#include <vector>

#include "protocol/field_codec.h"
#include "util/bytes.h"

namespace pccl::transport {
namespace {

template <size_t N, class T>
std::array<uint8_t, N> encodeFixed(const T &v) {
    std::vector<uint8_t> b;
    b.reserve(N);
    protocol::fields::encode(v, b);
    std::array<uint8_t, N> out{};
    std::copy_n(b.begin(), std::min(N, b.size()), out.begin());
    return out;
}

template <class T>
std::optional<T> decodeFixed(const uint8_t *data, size_t size) {
    T v;
    if (!protocol::fields::decodeExact(data, size, v)) return std::nullopt;
    return v;
}

} // namespace

DataHello DataHello::make(const Uuid &sender, const Uuid &receiver, const SameHostIdentity &id, bool offer) {
    DataHello h;
    h.sender = sender;
    h.receiver = receiver;
    h.offer = offer ? 1 : 0;
    h.pid = id.pid;
    h.netns = id.netns;
    h.token_address = id.tokenAddress;
    h.token = id.token;
    return h;
}

SameHostIdentity DataHello::identity() const {
    SameHostIdentity id;
    id.pid = pid;
    id.netns = netns;
    id.tokenAddress = token_address;
    id.token = token;
    return id;
}

std::array<uint8_t, kDataHelloBytes> encodeDataHello(const DataHello &h) { return encodeFixed<kDataHelloBytes>(h); }
std::array<uint8_t, kDataAckBytes> encodeDataAck(const DataAck &a) { return encodeFixed<kDataAckBytes>(a); }
std::optional<DataHello> decodeDataHello(const uint8_t *data, size_t size) { return decodeFixed<DataHello>(data, size); }
std::optional<DataAck> decodeDataAck(const uint8_t *data, size_t size) { return decodeFixed<DataAck>(data, size); }

void encodeFrameHeader(const FrameHeader &f, bool sameHost, uint8_t *out) {
    storeLE64(out, f.segment.seq);
    storeLE64(out + 8, f.segment.offset);
    storeLE32(out + 16, f.segment.bytes);
    out[20] = f.segment.phase;
    out[21] = f.byRef ? 1 : 0;
    out[22] = out[23] = 0;
    if (sameHost) storeLE64(out + kSegmentHeaderBytes, f.byRef ? f.address : 0);
}

std::optional<FrameHeader> decodeFrameHeader(const uint8_t *in, bool sameHost) {
    FrameHeader f;
    f.segment.seq = loadLE64(in);
    f.segment.offset = loadLE64(in + 8);
    f.segment.bytes = loadLE32(in + 16);
    f.segment.phase = in[20];
    f.byRef = sameHost && in[21] == 1;
    f.address = f.byRef ? loadLE64(in + kSegmentHeaderBytes) : 0;
    if ((in[21] && !f.byRef) || in[22] || in[23] || f.segment.bytes > kMaxSegmentBytes) return std::nullopt;
    return f;
}

uint64_t encodedSeq(const uint8_t *header) { return loadLE64(header); }

} // namespace pccl::transport
