// The cryptographic primitives pccl uses, all from OpenSSL's libcrypto (docs/security.md):
// randomness, HMAC-SHA256, HKDF-SHA256, a constant-time comparison, and RecordCipher, one
// direction of a connection's AEAD record stream (AES-256-GCM or ChaCha20-Poly1305; in
// integrity mode the record's bytes travel in the clear as associated data).
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>

namespace pccl::security {

using Key = std::array<uint8_t, 32>;
inline constexpr size_t kTagBytes = 16;

enum class Suite : uint8_t { Aes256Gcm = 1, ChaCha20Poly1305 = 2 };
enum class Mode : uint8_t { Encrypt = 1, Integrity = 2 };
const char *suiteName(Suite s);
const char *modeName(Mode m);
// AES-256-GCM where the CPU has AES and carry-less multiply instructions, else ChaCha20-Poly1305.
Suite preferredSuite();

void randomBytes(uint8_t *out, size_t n);
using Bytes = std::span<const uint8_t>;
Key hmac(const Key &key, std::initializer_list<Bytes> parts);
// HKDF-SHA256 (RFC 5869), extract then expand to `out`.
void hkdf(Bytes ikm, Bytes salt, Bytes info, std::span<uint8_t> out);
// HKDF-Extract only: a uniformly random key from input keying material of any length.
Key hkdfExtract(Bytes salt, Bytes ikm);
bool constantTimeEqual(const uint8_t *a, const uint8_t *b, size_t n);

// One direction of a connection: records sealed (or opened) in order, each under the nonce
// {0,0,0,0, u64 record number}; the number starts at 0 and never repeats under one key.
// A record is begin(aad) .. update(in, out, n) any number of times .. finishSeal / finishOpen.
// update may be in place (in == out). Not thread-safe: one connection's strand uses it.
class RecordCipher {
public:
    RecordCipher(Suite suite, Mode mode, const Key &key, bool sealing);
    ~RecordCipher();
    RecordCipher(const RecordCipher &) = delete;
    RecordCipher &operator=(const RecordCipher &) = delete;

    void begin(Bytes aad = {});
    void update(const uint8_t *in, uint8_t *out, size_t n);
    void finishSeal(uint8_t tag[kTagBytes]);
    bool finishOpen(const uint8_t tag[kTagBytes]);

    // One-shot forms: a whole record.
    void seal(Bytes aad, const uint8_t *in, uint8_t *out, size_t n, uint8_t tag[kTagBytes]);
    bool open(Bytes aad, const uint8_t *in, uint8_t *out, size_t n, const uint8_t tag[kTagBytes]);

    Mode mode() const { return mode_; }
    Suite suite() const { return suite_; }
    uint64_t records() const { return counter_; }

private:
    struct Ctx;
    std::unique_ptr<Ctx> ctx_;
    Suite suite_;
    Mode mode_;
    uint64_t counter_ = 0;
};

} // namespace pccl::security
