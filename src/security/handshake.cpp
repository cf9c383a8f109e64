#include "security/handshake.h"

#include <cstring>
#include <string_view>
#include <vector>

#include "protocol/field_codec.h"
#include "util/bytes.h"

namespace pccl::security {
namespace {

Bytes text(std::string_view s) { return {reinterpret_cast<const uint8_t *>(s.data()), s.size()}; }

template <size_t N, class T>
std::array<uint8_t, N> encodeFixed(const T &v) {
    std::vector<uint8_t> b;
    protocol::fields::encode(v, b);
    std::array<uint8_t, N> out{};
    std::memcpy(out.data(), b.data(), std::min(N, b.size()));
    return out;
}

// k_mac || k_c2s || k_s2c from K, the server's nonce and the client's hello.
void deriveKeys(const Key &key, const std::array<uint8_t, 32> &serverNonce,
                const std::array<uint8_t, kClientHelloBytes> &hello, Key *macKey, SessionKeys *keys) {
    const Bytes label = text("pccl v1 keys");
    std::vector<uint8_t> info(label.begin(), label.end());
    info.insert(info.end(), hello.begin(), hello.end());
    std::array<uint8_t, 96> material{};
    hkdf(key, serverNonce, info, material);
    std::memcpy(macKey->data(), material.data(), 32);
    std::memcpy(keys->clientToServer.data(), material.data() + 32, 32);
    std::memcpy(keys->serverToClient.data(), material.data() + 64, 32);
}

// The ServerHello without its MAC: what mac_s covers.
constexpr size_t kServerSigned = kServerHelloBytes - 32;

} // namespace

std::array<uint8_t, kClientHelloBytes> encode(const ClientHello &h) { return encodeFixed<kClientHelloBytes>(h); }
std::array<uint8_t, kServerHelloBytes> encode(const ServerHello &h) { return encodeFixed<kServerHelloBytes>(h); }

std::optional<ClientHello> decodeClientHello(const uint8_t *data, size_t size, std::string *error) {
    ClientHello h;
    if (!protocol::fields::decodeExact(data, size, h)) {
        *error = "client hello of " + std::to_string(size) + " bytes is malformed";
        return std::nullopt;
    }
    if (h.magic != kAuthMagic) *error = "not an authentication hello";
    else if (h.version != kAuthVersion) *error = "authentication version " + std::to_string(h.version) + " (this build speaks " + std::to_string(kAuthVersion) + ")";
    else if (h.kind != 1 && h.kind != 2) *error = "unknown connection kind " + std::to_string(h.kind);
    else if (h.suite != 1 && h.suite != 2) *error = "unknown cipher suite " + std::to_string(h.suite);
    else if (h.mode != 1 && h.mode != 2) *error = "unknown protection mode " + std::to_string(h.mode);
    else if (h.reserved != std::array<uint8_t, 3>{}) *error = "reserved bytes are not zero";
    else return h;
    return std::nullopt;
}

std::optional<ServerHello> decodeServerHello(const uint8_t *data, size_t size, std::string *error) {
    ServerHello h;
    if (!protocol::fields::decodeExact(data, size, h)) {
        *error = "server hello of " + std::to_string(size) + " bytes is malformed";
        return std::nullopt;
    }
    if (h.magic != kAuthMagic) *error = "the answer is not an authentication hello";
    else if (h.status > 2) *error = "unknown handshake status " + std::to_string(h.status);
    else if (h.reserved != std::array<uint8_t, 3>{}) *error = "reserved bytes are not zero";
    else return h;
    return std::nullopt;
}

ClientHandshake::ClientHandshake(const Key &key, ConnKind kind, Suite suite, Mode mode, const Uuid &sender,
                                 const Uuid &receiver)
    : key_(key) {
    hello_.kind = static_cast<uint8_t>(kind);
    hello_.suite = static_cast<uint8_t>(suite);
    hello_.mode = static_cast<uint8_t>(mode);
    hello_.sender = sender;
    hello_.receiver = receiver;
    randomBytes(hello_.nonce.data(), hello_.nonce.size());
    helloBytes_ = encode(hello_);
    keys_.suite = suite;
    keys_.mode = mode;
}

std::optional<std::array<uint8_t, kClientFinishBytes>> ClientHandshake::onServerHello(const uint8_t *data, size_t size,
                                                                                        std::string *error) {
    const auto h = decodeServerHello(data, size, error);
    if (!h) return std::nullopt;
    if (h->status == static_cast<uint8_t>(ServerStatus::NoSecret)) {
        *error = "it runs without a run secret but this side has one: refusing an unauthenticated run";
        return std::nullopt;
    }
    if (h->status == static_cast<uint8_t>(ServerStatus::Refused)) {
        *error = "it refused the connection (this peer is not a member it knows, or was removed)";
        return std::nullopt;
    }
    Key macKey{};
    deriveKeys(key_, h->nonce, helloBytes_, &macKey, &keys_);
    const Key expected = hmac(macKey, {text("pccl server"), helloBytes_, Bytes(data, kServerSigned)});
    if (!constantTimeEqual(expected.data(), h->mac.data(), 32)) {
        *error = "it could not prove the run secret: the two sides have different secrets";
        return std::nullopt;
    }
    const Key finish = hmac(macKey, {text("pccl client"), helloBytes_, Bytes(data, size)});
    std::array<uint8_t, kClientFinishBytes> out{};
    std::memcpy(out.data(), finish.data(), 32);
    return out;
}

ServerHandshake::ServerHandshake(const Key &key, const ClientHello &hello) {
    helloBytes_ = encode(hello);
    ServerHello reply;
    randomBytes(reply.nonce.data(), reply.nonce.size());
    keys_.suite = static_cast<Suite>(hello.suite);
    keys_.mode = static_cast<Mode>(hello.mode);
    deriveKeys(key, reply.nonce, helloBytes_, &macKey_, &keys_);
    replyBytes_ = encode(reply);
    const Key mac = hmac(macKey_, {text("pccl server"), helloBytes_, Bytes(replyBytes_.data(), kServerSigned)});
    std::memcpy(replyBytes_.data() + kServerSigned, mac.data(), 32);
}

bool ServerHandshake::onFinish(const uint8_t *data, size_t size, std::string *error) const {
    const Key expected = hmac(macKey_, {text("pccl client"), helloBytes_, replyBytes_});
    if (size != kClientFinishBytes || !constantTimeEqual(expected.data(), data, 32)) {
        *error = "the client could not prove the run secret (wrong secret, or a replayed handshake)";
        return false;
    }
    return true;
}

std::array<uint8_t, kServerHelloBytes> ServerHandshake::refusal(ServerStatus status) {
    ServerHello h;
    h.status = static_cast<uint8_t>(status);
    return encode(h);
}

Key runKey(const std::string &secret) {
    return hkdfExtract(text("pccl run secret v1"), text(secret));
}

Key peerKey(const Key &masterKey, const Uuid &peer, uint64_t admission) {
    uint8_t serial[8];
    storeLE64(serial, admission);
    return hmac(masterKey, {text("pccl peer"), peer.bytes, serial});
}

Key pairKey(const Key &receiverKey, const Uuid &sender) { return hmac(receiverKey, {text("pccl pair"), sender.bytes}); }

} // namespace pccl::security
