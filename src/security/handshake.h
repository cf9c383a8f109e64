// The handshake every connection starts with when a run secret is set (docs/security.md): the
// three messages, their one encoding, and the two sides' logic as pure functions of the bytes
// (no sockets; transport/secure_channel.h runs them on a connection). The key K is the run key
// on control connections and the pair key on data connections.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "protocol/messages.h"
#include "security/crypto.h"
#include "util/uuid.h"

namespace pccl::security {

inline constexpr uint32_t kAuthMagic = 0x41534350;  // "PCSA" little-endian
inline constexpr uint16_t kAuthVersion = 1;
enum class ConnKind : uint8_t { Control = 1, Data = 2 };
enum class ServerStatus : uint8_t { Ok = 0, NoSecret = 1, Refused = 2 };

struct ClientHello {
    uint32_t magic = kAuthMagic;
    uint16_t version = kAuthVersion;
    uint8_t kind = 0;   // ConnKind
    uint8_t suite = 0;  // Suite
    uint8_t mode = 0;   // Mode
    std::array<uint8_t, 3> reserved{};
    Uuid sender;    // data connections: the opener's uuid; control: zero
    Uuid receiver;  // data connections: the uuid the opener means to reach; control: zero
    std::array<uint8_t, 32> nonce{};
    PCCL_FIELDS(magic, version, kind, suite, mode, reserved, sender, receiver, nonce)
};
inline constexpr size_t kClientHelloBytes = 76;

struct ServerHello {
    uint32_t magic = kAuthMagic;
    uint8_t status = 0;  // ServerStatus
    std::array<uint8_t, 3> reserved{};
    std::array<uint8_t, 32> nonce{};
    std::array<uint8_t, 32> mac{};  // zero unless status is Ok
    PCCL_FIELDS(magic, status, reserved, nonce, mac)
};
inline constexpr size_t kServerHelloBytes = 72;
inline constexpr size_t kClientFinishBytes = 32;

std::array<uint8_t, kClientHelloBytes> encode(const ClientHello &h);
std::array<uint8_t, kServerHelloBytes> encode(const ServerHello &h);
// nullopt with a reason unless the bytes are exactly one well-formed message of this version.
std::optional<ClientHello> decodeClientHello(const uint8_t *data, size_t size, std::string *error);
std::optional<ServerHello> decodeServerHello(const uint8_t *data, size_t size, std::string *error);

// The traffic keys one handshake yields.
struct SessionKeys {
    Suite suite = Suite::Aes256Gcm;
    Mode mode = Mode::Encrypt;
    Key clientToServer{}, serverToClient{};
};

// The opener's side. hello() is sent first; onServerHello checks the answer and returns the
// ClientFinish to send (nullopt with a reason when the server did not prove the key).
class ClientHandshake {
public:
    ClientHandshake(const Key &key, ConnKind kind, Suite suite, Mode mode, const Uuid &sender, const Uuid &receiver);
    const std::array<uint8_t, kClientHelloBytes> &hello() const { return helloBytes_; }
    std::optional<std::array<uint8_t, kClientFinishBytes>> onServerHello(const uint8_t *data, size_t size,
                                                                          std::string *error);
    const SessionKeys &keys() const { return keys_; }

private:
    Key key_;
    ClientHello hello_;
    std::array<uint8_t, kClientHelloBytes> helloBytes_{};
    SessionKeys keys_;
};

// The accepting side, once the ClientHello is decoded and its key chosen: reply() is sent, then
// onFinish checks the client's proof.
class ServerHandshake {
public:
    ServerHandshake(const Key &key, const ClientHello &hello);
    const std::array<uint8_t, kServerHelloBytes> &reply() const { return replyBytes_; }
    bool onFinish(const uint8_t *data, size_t size, std::string *error) const;
    const SessionKeys &keys() const { return keys_; }
    // The unauthenticated answer of a server that cannot or will not run the handshake.
    static std::array<uint8_t, kServerHelloBytes> refusal(ServerStatus status);

private:
    std::array<uint8_t, kClientHelloBytes> helloBytes_{};
    std::array<uint8_t, kServerHelloBytes> replyBytes_{};
    Key macKey_{};
    SessionKeys keys_;
};

// K_run from the secret (docs/security.md, "The secret").
Key runKey(const std::string &secret);
// K_A of an admitted peer, from the master's own key; K_BA, the key B opens data connections to
// A with, from K_A.
Key peerKey(const Key &masterKey, const Uuid &peer, uint64_t admission);
Key pairKey(const Key &receiverKey, const Uuid &sender);

} // namespace pccl::security
