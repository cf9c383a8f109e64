// Runs the authentication handshake (security/handshake.h) on a TCP connection and yields its
// record layer: the two RecordCiphers every later byte goes through (docs/security.md). Used by
// control connections (framed_connection.h, control_client.h) and data connections (in_conn.h,
// out_conn.h). Handlers run on the executor given; `keep` holds the socket's owner alive.
#pragma once
#include <asio.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "security/crypto.h"
#include "security/handshake.h"
#include "util/status.h"

namespace pccl::transport {

// A connection's established record layer: one cipher per direction.
struct Channel {
    std::unique_ptr<security::RecordCipher> send, recv;
    security::Mode mode = security::Mode::Encrypt;
    static std::shared_ptr<Channel> make(const security::SessionKeys &keys, bool client);
    // A whole record: seals [data, data+n) in place and writes the tag to data+n.
    void sealInPlace(security::Bytes aad, uint8_t *data, size_t n);
    // Opens [data, data+n) in place, the tag at data+n; false if it fails verification.
    bool openInPlace(security::Bytes aad, uint8_t *data, size_t n);
};
using ChannelPtr = std::shared_ptr<Channel>;

// How long either side waits for the whole handshake, whatever the other side asks for.
inline constexpr std::chrono::milliseconds kHandshakeDeadline{5000};

using ClientDone = std::function<void(Status, ChannelPtr)>;
// Writes the hello, checks the answer, writes the finish. Failures are pcclAuthenticationFailed
// (the other side could not prove the key, or refused) or `transportFailure` (the connection
// broke or the deadline passed), with the reason; `what` names the other side in messages.
void clientHandshake(asio::ip::tcp::socket &socket, asio::any_io_executor ex, std::shared_ptr<void> keep,
                     std::shared_ptr<security::ClientHandshake> hs, std::string what, pcclResult_t transportFailure,
                     ClientDone done);

// Chooses the key for a client hello; nullopt with a reason refuses the connection.
using KeyFor = std::function<std::optional<security::Key>(const security::ClientHello &, std::string *why)>;
using ServerDone = std::function<void(Status, ChannelPtr, const security::ClientHello &)>;
// The accepting side, after the caller read the first 4 bytes and found kAuthMagic in them.
void serverHandshake(asio::ip::tcp::socket &socket, asio::any_io_executor ex, std::shared_ptr<void> keep,
                     const uint8_t first[4], KeyFor keyFor, ServerDone done);

} // namespace pccl::transport
