// The data plane's handshake and frame headers (transport/data_wire.h) as InConn and OutConn read
// them. Input: one selector byte, then the bytes: 0 DataHello, 1 DataAck, 2 a frame header on a
// TCP connection, 3 on a same-host connection (other selectors are taken modulo 4). Checks: the
// handshake decodes only at its exact size and re-encodes to the same bytes; a decoded frame
// header is within its limits and survives encode/decode unchanged; a TCP header is never by
// reference.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz_check.h"
#include "transport/data_wire.h"
#include "util/bytes.h"

using namespace pccl;
using namespace pccl::transport;

namespace {

void hello(const std::vector<uint8_t> &in) {
    const auto h = decodeDataHello(in.data(), in.size());
    // No field of a hello can be malformed (InConn relies on it): exactly the size decodes.
    FUZZ_CHECK(h.has_value() == (in.size() == kDataHelloBytes));
    if (!h) return;
    const auto out = encodeDataHello(*h);
    FUZZ_CHECK(std::equal(out.begin(), out.end(), in.begin()));
    FUZZ_CHECK(h->offersSameHost() == (in[38] == 1));
    const auto id = h->identity();
    FUZZ_CHECK(id.pid == h->pid && id.netns == h->netns && id.tokenAddress == h->token_address && id.token == h->token);
}

void ack(const std::vector<uint8_t> &in) {
    const auto a = decodeDataAck(in.data(), in.size());
    // The two bools are the only fields that can be malformed.
    FUZZ_CHECK(a.has_value() == (in.size() == kDataAckBytes && in[4] <= 1 && in[5] <= 1));
    if (!a) return;
    const auto out = encodeDataAck(*a);
    FUZZ_CHECK(std::equal(out.begin(), out.end(), in.begin()));
}

void header(const std::vector<uint8_t> &in, bool sameHost) {
    const size_t n = frameHeaderBytes(sameHost);
    if (in.size() < n) return;  // the transport reads exactly n bytes
    const std::vector<uint8_t> exact(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(n));
    const auto f = decodeFrameHeader(exact.data(), sameHost);
    if (!f) return;
    FUZZ_CHECK(f->segment.bytes <= kMaxSegmentBytes);
    FUZZ_CHECK(sameHost || !f->byRef);
    FUZZ_CHECK(f->byRef || f->address == 0);
    FUZZ_CHECK(encodedSeq(exact.data()) == f->segment.seq);
    uint8_t out[kMaxFrameHeaderBytes];
    encodeFrameHeader(*f, sameHost, out);
    // The first 24 bytes are canonical; a same-host address is ignored (and re-encoded as 0)
    // unless the frame is by reference.
    FUZZ_CHECK(std::memcmp(out, exact.data(), kSegmentHeaderBytes) == 0);
    if (f->byRef) FUZZ_CHECK(std::memcmp(out, exact.data(), n) == 0);
    const auto g = decodeFrameHeader(out, sameHost);
    FUZZ_CHECK(g && g->segment.seq == f->segment.seq && g->segment.offset == f->segment.offset &&
               g->segment.bytes == f->segment.bytes && g->segment.phase == f->segment.phase && g->byRef == f->byRef &&
               g->address == f->address);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const std::vector<uint8_t> in(data + 1, data + size);  // exact-size heap copy for ASan
    switch (data[0] % 4) {
    case 0: hello(in); break;
    case 1: ack(in); break;
    case 2: header(in, false); break;
    default: header(in, true); break;
    }
    return 0;
}
