// A control connection carrying length-prefixed protocol frames over TCP (see protocol/codec.h).
// Owned by one single-threaded io_context: start() runs on that thread; send() and close() may be
// called from any thread (they post to it). Handlers run on the io thread. A malformed or
// oversized frame closes this connection with a reason; it never throws out of the io loop.
#pragma once
#include <asio.hpp>

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "protocol/codec.h"

namespace pccl::transport {

protocol::NetAddr toNetAddr(const asio::ip::tcp::endpoint &ep);
asio::ip::tcp::endpoint toEndpoint(const protocol::NetAddr &a);
void tuneSocket(asio::ip::tcp::socket &s);  // TCP_NODELAY, keepalive

class FramedConnection : public std::enable_shared_from_this<FramedConnection> {
public:
    using MessageHandler = std::function<void(protocol::ControlMessage &&)>;
    using CloseHandler = std::function<void(const std::string &reason)>;

    explicit FramedConnection(asio::ip::tcp::socket socket);
    void start(MessageHandler onMessage, CloseHandler onClose);
    void send(protocol::ControlMessage m);
    void close(const std::string &reason);
    // Closes at once; io thread only (used when the loop is about to stop).
    void closeNow(const std::string &reason);
    // Sends m, then closes once it is written (for Reject/Kicked).
    void sendAndClose(protocol::ControlMessage m, const std::string &reason);
    const protocol::NetAddr &remote() const { return remote_; }

private:
    void readHeader();
    void readPayload(uint32_t size, uint16_t type);
    void writeNext();

    asio::ip::tcp::socket socket_;
    protocol::NetAddr remote_;
    MessageHandler onMessage_;
    CloseHandler onClose_;
    uint8_t header_[protocol::kFrameHeaderBytes];
    std::vector<uint8_t> payload_;
    std::deque<std::vector<uint8_t>> outbox_;
    bool writing_ = false;
    bool closed_ = false;
    bool closeAfterWrite_ = false;
    std::string closeReason_;
};

} // namespace pccl::transport
