// The authentication handshake and record layer (security/handshake.h, security/crypto.h): the
// bytes a peer reads before and after it knows who is talking. Input: one selector byte, then:
//   0  a ClientHello, as the accepting side decodes it;
//   1  a ServerHello, as the opener decodes it;
//   2  a server's answer to a real ClientHandshake (the opener's side, the run key fixed);
//   3  a ClientHello (76 bytes) then a ClientFinish, as a ServerHandshake sees them;
//   4  a record: a suite/mode byte, an AAD length byte, the AAD, the record, its 16-byte tag.
// Checks: a hello decodes iff it has the exact size and every field is known (and then re-encodes
// to the same bytes); no forged answer, finish or record is ever accepted; a record sealed from
// the input opens to the same bytes, and the same record with one bit flipped does not.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "fuzz_check.h"
#include "security/crypto.h"
#include "security/handshake.h"
#include "util/bytes.h"

using namespace pccl;
using namespace pccl::security;

namespace {

const Key kKey = [] {
    Key k{};
    for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(i * 7 + 1);
    return k;
}();

// A hello decodes iff it is valid; a refused one says why, an accepted one re-encodes to the
// same bytes.
template <class Hello>
void checkHello(const std::vector<uint8_t> &in, const std::optional<Hello> &h, const std::string &error, bool valid) {
    FUZZ_CHECK(h.has_value() == valid);
    if (!h) {
        FUZZ_CHECK(!error.empty());
        return;
    }
    const auto out = encode(*h);
    FUZZ_CHECK(std::equal(out.begin(), out.end(), in.begin()));
}

void clientHello(const std::vector<uint8_t> &in) {
    std::string error;
    const auto h = decodeClientHello(in.data(), in.size(), &error);
    checkHello(in, h, error,
               in.size() == kClientHelloBytes && loadLE32(in.data()) == kAuthMagic &&
                   loadLE16(in.data() + 4) == kAuthVersion && (in[6] == 1 || in[6] == 2) &&
                   (in[7] == 1 || in[7] == 2) && (in[8] == 1 || in[8] == 2) && !in[9] && !in[10] && !in[11]);
}

void serverHello(const std::vector<uint8_t> &in) {
    std::string error;
    const auto h = decodeServerHello(in.data(), in.size(), &error);
    checkHello(in, h, error,
               in.size() == kServerHelloBytes && loadLE32(in.data()) == kAuthMagic && in[4] <= 2 && !in[5] && !in[6] &&
                   !in[7]);
}

void opener(const std::vector<uint8_t> &in) {
    ClientHandshake c(kKey, ConnKind::Data, Suite::Aes256Gcm, Mode::Encrypt, Uuid{}, Uuid{});
    std::string error;
    // The server's MAC covers the client's fresh nonce: no input can carry it.
    FUZZ_CHECK(!c.onServerHello(in.data(), in.size(), &error).has_value());
    FUZZ_CHECK(!error.empty());
}

void acceptor(const std::vector<uint8_t> &in) {
    if (in.size() < kClientHelloBytes) return;
    std::string error;
    const auto h = decodeClientHello(in.data(), kClientHelloBytes, &error);
    if (!h) return;
    ServerHandshake s(kKey, *h);
    const auto &reply = s.reply();
    const auto r = decodeServerHello(reply.data(), reply.size(), &error);
    FUZZ_CHECK(r && r->status == static_cast<uint8_t>(ServerStatus::Ok));
    const std::vector<uint8_t> finish(in.begin() + kClientHelloBytes, in.end());
    // The finish is a MAC over the server's fresh nonce: no input can carry it.
    FUZZ_CHECK(!s.onFinish(finish.data(), finish.size(), &error));
    FUZZ_CHECK(!error.empty());
}

void record(const std::vector<uint8_t> &in) {
    if (in.size() < 2 + kTagBytes) return;
    const Suite suite = in[0] & 1 ? Suite::ChaCha20Poly1305 : Suite::Aes256Gcm;
    const Mode mode = in[0] & 2 ? Mode::Integrity : Mode::Encrypt;
    const size_t aadBytes = std::min<size_t>(in[1], in.size() - 2 - kTagBytes);
    const std::vector<uint8_t> aad(in.begin() + 2, in.begin() + 2 + static_cast<std::ptrdiff_t>(aadBytes));
    const std::vector<uint8_t> body(in.begin() + 2 + static_cast<std::ptrdiff_t>(aadBytes), in.end() - kTagBytes);
    const std::vector<uint8_t> tag(in.end() - kTagBytes, in.end());

    std::vector<uint8_t> out(body.size());
    FUZZ_CHECK(!RecordCipher(suite, mode, kKey, false).open(aad, body.data(), out.data(), body.size(), tag.data()));

    std::vector<uint8_t> sealed(body.size());
    uint8_t sealedTag[kTagBytes];
    RecordCipher(suite, mode, kKey, true).seal(aad, body.data(), sealed.data(), body.size(), sealedTag);
    if (mode == Mode::Integrity) FUZZ_CHECK(sealed == body);
    FUZZ_CHECK(RecordCipher(suite, mode, kKey, false).open(aad, sealed.data(), out.data(), sealed.size(), sealedTag));
    FUZZ_CHECK(out == body);
    // One bit flipped anywhere (record, tag, or AAD) and the record no longer opens.
    const size_t total = sealed.size() + kTagBytes + aad.size(), bit = loadLE16(in.data() + in.size() - 2) % (8 * total);
    std::vector<uint8_t> badAad = aad;
    size_t at = bit / 8;
    if (at < sealed.size()) sealed[at] ^= static_cast<uint8_t>(1u << (bit % 8));
    else if ((at -= sealed.size()) < kTagBytes) sealedTag[at] ^= static_cast<uint8_t>(1u << (bit % 8));
    else badAad[at - kTagBytes] ^= static_cast<uint8_t>(1u << (bit % 8));
    FUZZ_CHECK(!RecordCipher(suite, mode, kKey, false).open(badAad, sealed.data(), out.data(), sealed.size(), sealedTag));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const std::vector<uint8_t> in(data + 1, data + size);  // exact-size heap copy for ASan
    switch (data[0] % 5) {
    case 0: clientHello(in); break;
    case 1: serverHello(in); break;
    case 2: opener(in); break;
    case 3: acceptor(in); break;
    default: record(in); break;
    }
    return 0;
}
