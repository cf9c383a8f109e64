// The peer's connection to the master, and the peer's control thread. connect() blocks with a
// deadline; after start(), every message and the close notification are delivered on the
// control thread, which is also where post()ed work runs. send() and post() may be called from
// any thread. stop() closes the connection and joins the thread (not from the control thread).
#pragma once
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "protocol/messages.h"
#include "security/secret.h"
#include "util/status.h"

namespace pccl::transport {

class ControlClient {
public:
    using MessageHandler = std::function<void(protocol::ControlMessage &&)>;
    using CloseHandler = std::function<void(const std::string &reason)>;

    ControlClient();
    ~ControlClient();
    ControlClient(const ControlClient &) = delete;
    ControlClient &operator=(const ControlClient &) = delete;

    // TCP connect, then, with a run secret, the handshake (pcclAuthenticationFailed when the
    // master cannot prove the secret or has none); both within `timeout`.
    Status connect(const protocol::NetAddr &master, std::chrono::milliseconds timeout, const security::Settings &security);
    void start(MessageHandler onMessage, CloseHandler onClose);
    // On the control thread, after start(): a new connection (TCP, then the handshake) to
    // `master` within `timeout`, which replaces the old one and delivers its messages and its
    // close to the handlers given to start(); `done` runs on the control thread with the result.
    // The close of a replaced connection is not delivered.
    void reconnect(const protocol::NetAddr &master, std::chrono::milliseconds timeout,
                   const security::Settings &security, std::function<void(Status)> done);
    // TCP_USER_TIMEOUT of the connections made after this call (0: the system's): a master host
    // that acknowledges nothing for this long is a closed connection (docs/master_recovery.md).
    void setUserTimeout(std::chrono::milliseconds timeout);
    void send(protocol::ControlMessage m);
    void post(std::function<void()> fn);
    // Closes the connection to the master (any thread, including the control thread).
    void disconnect(const std::string &reason);
    // Runs fn on the control thread every `period` until stop().
    void every(std::chrono::milliseconds period, std::function<void()> fn);
    // Runs fn once on the control thread after `delay` (never after stop()).
    void after(std::chrono::milliseconds delay, std::function<void()> fn);
    // Sends `last` (if any), waits briefly for it to be written, closes, joins the thread.
    void stop(std::optional<protocol::ControlMessage> last = std::nullopt);
    // The local address of the control connection (the interface that reaches the master).
    protocol::NetAddr localAddr() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

} // namespace pccl::transport
