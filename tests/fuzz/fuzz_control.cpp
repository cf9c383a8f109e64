// Control messages (protocol/codec.h) as FramedConnection decodes them. Input: u16 message type
// (little-endian), then the payload. Checks: decoding never fails without a reason; whatever
// decodes re-encodes to the same type and the same payload bytes (the encoding is canonical), and
// decodes again; a Hello of another protocol version is reduced to its magic and version.
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_check.h"
#include "protocol/codec.h"
#include "util/bytes.h"

using namespace pccl;
using namespace pccl::protocol;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    const uint16_t type = loadLE16(data);
    // An exact-size heap copy: ASan sees any read past the payload.
    const std::vector<uint8_t> payload(data + 2, data + size);
    std::string error;
    const auto m = decodeMessage(type, payload.data(), payload.size(), &error);
    if (!m) {
        FUZZ_CHECK(!error.empty());
        return 0;
    }
    FUZZ_CHECK(m->index() == type);
    if (const auto *h = std::get_if<Hello>(&*m); h && h->magic == kMagic && h->version != kProtocolVersion) {
        FUZZ_CHECK(payload.size() >= 6 && loadLE16(payload.data() + 4) == h->version);
        return 0;
    }
    std::vector<uint8_t> frame;
    encodeFrame(*m, frame);
    FUZZ_CHECK(frame.size() == kFrameHeaderBytes + payload.size());
    FUZZ_CHECK(loadLE32(frame.data()) == payload.size());
    FUZZ_CHECK(loadLE16(frame.data() + 4) == type);
    FUZZ_CHECK(std::equal(payload.begin(), payload.end(), frame.begin() + kFrameHeaderBytes));
    const auto again = decodeMessage(type, frame.data() + kFrameHeaderBytes, payload.size(), &error);
    FUZZ_CHECK(again && again->index() == m->index());
    return 0;
}
