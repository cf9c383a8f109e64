#include "security/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include <cstring>
#include <memory>
#include <stdexcept>

#include "util/bytes.h"

namespace pccl::security {

const char *suiteName(Suite s) { return s == Suite::Aes256Gcm ? "AES-256-GCM" : "ChaCha20-Poly1305"; }
const char *modeName(Mode m) { return m == Mode::Encrypt ? "encrypt" : "integrity"; }

Suite preferredSuite() {
#if defined(__x86_64__) || defined(__i386__)
    static const bool aes = __builtin_cpu_supports("aes") && __builtin_cpu_supports("pclmul");
    return aes ? Suite::Aes256Gcm : Suite::ChaCha20Poly1305;
#elif defined(__aarch64__)
    return Suite::Aes256Gcm;  // ARMv8 crypto extensions are near universal on servers
#else
    return Suite::ChaCha20Poly1305;
#endif
}

void randomBytes(uint8_t *out, size_t n) {
    if (RAND_bytes(out, static_cast<int>(n)) != 1) throw std::runtime_error("RAND_bytes failed");
}

namespace {

struct MacCtxFree {
    void operator()(EVP_MAC_CTX *c) const { EVP_MAC_CTX_free(c); }
};

// An HMAC-SHA256 context with its algorithm and digest fetched, per thread: fetching them by name
// for every MAC (a locked lookup) cost more than the MAC itself, and the master derives one pair
// key per pair of peers it admits (a million for a thousand peers). Each MAC starts from a copy.
const EVP_MAC_CTX *hmacTemplate() {
    thread_local std::unique_ptr<EVP_MAC_CTX, MacCtxFree> ctx = [] {
        EVP_MAC *mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
        std::unique_ptr<EVP_MAC_CTX, MacCtxFree> c(mac ? EVP_MAC_CTX_new(mac) : nullptr);
        EVP_MAC_free(mac);  // the context holds its own reference
        char digest[] = "SHA256";
        OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest, 0), OSSL_PARAM_construct_end()};
        if (c && EVP_MAC_CTX_set_params(c.get(), params) != 1) c.reset();
        return c;
    }();
    return ctx.get();
}

} // namespace

Key hmac(const Key &key, std::initializer_list<Bytes> parts) {
    Key out{};
    const EVP_MAC_CTX *base = hmacTemplate();
    std::unique_ptr<EVP_MAC_CTX, MacCtxFree> ctx(base ? EVP_MAC_CTX_dup(base) : nullptr);
    size_t len = 0;
    bool ok = ctx && EVP_MAC_init(ctx.get(), key.data(), key.size(), nullptr) == 1;
    for (auto p : parts) ok = ok && EVP_MAC_update(ctx.get(), p.data(), p.size()) == 1;
    ok = ok && EVP_MAC_final(ctx.get(), out.data(), &len, out.size()) == 1 && len == out.size();
    if (!ok) throw std::runtime_error("HMAC-SHA256 failed");
    return out;
}

namespace {
void hkdfMode(int mode, Bytes ikm, Bytes salt, Bytes info, std::span<uint8_t> out) {
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr);
    size_t len = out.size();
    // An empty salt or info is passed as one zero-length byte string (a null pointer is refused).
    static const uint8_t none = 0;
    const bool ok = ctx && EVP_PKEY_derive_init(ctx) == 1 && EVP_PKEY_CTX_set_hkdf_md(ctx, EVP_sha256()) == 1 &&
                    EVP_PKEY_CTX_set_hkdf_mode(ctx, mode) == 1 &&
                    EVP_PKEY_CTX_set1_hkdf_salt(ctx, salt.empty() ? &none : salt.data(), static_cast<int>(salt.size())) == 1 &&
                    EVP_PKEY_CTX_set1_hkdf_key(ctx, ikm.empty() ? &none : ikm.data(), static_cast<int>(ikm.size())) == 1 &&
                    (mode == EVP_PKEY_HKDEF_MODE_EXTRACT_ONLY ||
                     EVP_PKEY_CTX_add1_hkdf_info(ctx, info.empty() ? &none : info.data(), static_cast<int>(info.size())) == 1) &&
                    EVP_PKEY_derive(ctx, out.data(), &len) == 1 && len == out.size();
    EVP_PKEY_CTX_free(ctx);
    if (!ok) throw std::runtime_error("HKDF-SHA256 failed");
}
} // namespace

void hkdf(Bytes ikm, Bytes salt, Bytes info, std::span<uint8_t> out) {
    hkdfMode(EVP_PKEY_HKDEF_MODE_EXTRACT_AND_EXPAND, ikm, salt, info, out);
}

Key hkdfExtract(Bytes salt, Bytes ikm) {
    Key k{};
    hkdfMode(EVP_PKEY_HKDEF_MODE_EXTRACT_ONLY, ikm, salt, {}, k);
    return k;
}

bool constantTimeEqual(const uint8_t *a, const uint8_t *b, size_t n) { return CRYPTO_memcmp(a, b, n) == 0; }

// ---- records

struct RecordCipher::Ctx {
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    ~Ctx() { EVP_CIPHER_CTX_free(c); }
};

RecordCipher::RecordCipher(Suite suite, Mode mode, const Key &key, bool sealing)
    : ctx_(std::make_unique<Ctx>()), suite_(suite), mode_(mode) {
    const EVP_CIPHER *cipher = suite == Suite::Aes256Gcm ? EVP_aes_256_gcm() : EVP_chacha20_poly1305();
    if (!ctx_->c || EVP_CipherInit_ex(ctx_->c, cipher, nullptr, key.data(), nullptr, sealing ? 1 : 0) != 1)
        throw std::runtime_error("cannot initialise the record cipher");
}

RecordCipher::~RecordCipher() = default;

void RecordCipher::begin(Bytes aad) {
    uint8_t iv[12] = {};
    storeLE64(iv + 4, counter_++);
    int len = 0;
    if (EVP_CipherInit_ex(ctx_->c, nullptr, nullptr, nullptr, iv, -1) != 1 ||
        (!aad.empty() && EVP_CipherUpdate(ctx_->c, nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1))
        throw std::runtime_error("record cipher: begin failed");
}

void RecordCipher::update(const uint8_t *in, uint8_t *out, size_t n) {
    // Chunks below 2^30 bytes: EVP takes an int.
    while (n > 0) {
        const int step = static_cast<int>(std::min<size_t>(n, size_t{1} << 30));
        int len = 0;
        bool ok;
        if (mode_ == Mode::Integrity) {
            ok = EVP_CipherUpdate(ctx_->c, nullptr, &len, in, step) == 1;  // authenticated, not encrypted
            if (ok && out != in) std::memmove(out, in, static_cast<size_t>(step));
        } else {
            ok = EVP_CipherUpdate(ctx_->c, out, &len, in, step) == 1 && len == step;
        }
        if (!ok) throw std::runtime_error("record cipher: update failed");
        in += step;
        out += step;
        n -= static_cast<size_t>(step);
    }
}

void RecordCipher::finishSeal(uint8_t tag[kTagBytes]) {
    int len = 0;
    uint8_t none[16];
    if (EVP_CipherFinal_ex(ctx_->c, none, &len) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx_->c, EVP_CTRL_AEAD_GET_TAG, kTagBytes, tag) != 1)
        throw std::runtime_error("record cipher: seal failed");
}

bool RecordCipher::finishOpen(const uint8_t tag[kTagBytes]) {
    int len = 0;
    uint8_t none[16];
    uint8_t t[kTagBytes];
    std::memcpy(t, tag, kTagBytes);
    return EVP_CIPHER_CTX_ctrl(ctx_->c, EVP_CTRL_AEAD_SET_TAG, kTagBytes, t) == 1 &&
           EVP_CipherFinal_ex(ctx_->c, none, &len) == 1;
}

void RecordCipher::seal(Bytes aad, const uint8_t *in, uint8_t *out, size_t n, uint8_t tag[kTagBytes]) {
    begin(aad);
    update(in, out, n);
    finishSeal(tag);
}

bool RecordCipher::open(Bytes aad, const uint8_t *in, uint8_t *out, size_t n, const uint8_t tag[kTagBytes]) {
    begin(aad);
    update(in, out, n);
    return finishOpen(tag);
}

} // namespace pccl::security
