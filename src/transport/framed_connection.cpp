#include "transport/framed_connection.h"

#include "util/bytes.h"
#include "util/log.h"

namespace pccl::transport {

protocol::NetAddr toNetAddr(const asio::ip::tcp::endpoint &ep) {
    protocol::NetAddr a;
    auto addr = ep.address();
    if (addr.is_v6() && addr.to_v6().is_v4_mapped()) addr = asio::ip::make_address_v4(asio::ip::v4_mapped, addr.to_v6());
    if (addr.is_v4()) {
        a.family = 4;
        auto b = addr.to_v4().to_bytes();
        std::copy(b.begin(), b.end(), a.ip.begin());
    } else {
        a.family = 6;
        auto b = addr.to_v6().to_bytes();
        std::copy(b.begin(), b.end(), a.ip.begin());
    }
    a.port = ep.port();
    return a;
}

asio::ip::tcp::endpoint toEndpoint(const protocol::NetAddr &a) {
    if (a.family == 4) {
        asio::ip::address_v4::bytes_type b;
        std::copy(a.ip.begin(), a.ip.begin() + 4, b.begin());
        return {asio::ip::address_v4(b), a.port};
    }
    asio::ip::address_v6::bytes_type b;
    std::copy(a.ip.begin(), a.ip.end(), b.begin());
    return {asio::ip::address_v6(b), a.port};
}

void tuneSocket(asio::ip::tcp::socket &s) {
    asio::error_code ec;
    s.set_option(asio::ip::tcp::no_delay(true), ec);
    s.set_option(asio::socket_base::keep_alive(true), ec);
}

FramedConnection::FramedConnection(asio::ip::tcp::socket socket) : socket_(std::move(socket)) {
    asio::error_code ec;
    auto ep = socket_.remote_endpoint(ec);
    if (!ec) remote_ = toNetAddr(ep);
    tuneSocket(socket_);
}

void FramedConnection::start(MessageHandler onMessage, CloseHandler onClose) {
    onMessage_ = std::move(onMessage);
    onClose_ = std::move(onClose);
    readHeader();
}

void FramedConnection::readHeader() {
    auto self = shared_from_this();
    asio::async_read(socket_, asio::buffer(header_), [self](const asio::error_code &ec, size_t) {
        if (ec) return self->closeNow(ec == asio::error::eof ? "connection closed by remote" : ec.message());
        const uint32_t size = loadLE32(self->header_);
        const uint16_t type = static_cast<uint16_t>(self->header_[4] | (self->header_[5] << 8));
        if (size > protocol::kMaxControlFrame)
            return self->closeNow("frame of " + std::to_string(size) + " bytes exceeds the limit");
        self->readPayload(size, type);
    });
}

void FramedConnection::readPayload(uint32_t size, uint16_t type) {
    payload_.resize(size);
    auto self = shared_from_this();
    asio::async_read(socket_, asio::buffer(payload_), [self, type](const asio::error_code &ec, size_t) {
        if (ec) return self->closeNow(ec.message());
        std::string error;
        auto msg = protocol::decodeMessage(type, self->payload_.data(), self->payload_.size(), &error);
        if (!msg) return self->closeNow("protocol error from " + self->remote_.str() + ": " + error);
        if (self->closed_) return;
        self->onMessage_(std::move(*msg));
        if (!self->closed_) self->readHeader();
    });
}

void FramedConnection::send(protocol::ControlMessage m) {
    auto self = shared_from_this();
    asio::post(socket_.get_executor(), [self, m = std::move(m)] {
        if (self->closed_ || self->closeAfterWrite_) return;
        std::vector<uint8_t> frame;
        protocol::encodeFrame(m, frame);
        self->outbox_.push_back(std::move(frame));
        if (!self->writing_) self->writeNext();
    });
}

void FramedConnection::sendAndClose(protocol::ControlMessage m, const std::string &reason) {
    auto self = shared_from_this();
    asio::post(socket_.get_executor(), [self, m = std::move(m), reason] {
        if (self->closed_ || self->closeAfterWrite_) return;
        std::vector<uint8_t> frame;
        protocol::encodeFrame(m, frame);
        self->outbox_.push_back(std::move(frame));
        self->closeAfterWrite_ = true;
        self->closeReason_ = reason;
        if (!self->writing_) self->writeNext();
    });
}

void FramedConnection::writeNext() {
    if (outbox_.empty()) {
        if (closeAfterWrite_) closeNow(closeReason_);
        return;
    }
    writing_ = true;
    auto self = shared_from_this();
    asio::async_write(socket_, asio::buffer(outbox_.front()), [self](const asio::error_code &ec, size_t) {
        self->outbox_.pop_front();
        self->writing_ = false;
        if (self->closed_) return;
        if (ec) return self->closeNow(ec.message());
        self->writeNext();
    });
}

void FramedConnection::close(const std::string &reason) {
    auto self = shared_from_this();
    asio::post(socket_.get_executor(), [self, reason] { self->closeNow(reason); });
}

void FramedConnection::closeNow(const std::string &reason) {
    if (closed_) return;
    closed_ = true;
    asio::error_code ec;
    socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    socket_.close(ec);
    // The frame being written stays alive until its handler runs.
    while (outbox_.size() > (writing_ ? 1u : 0u)) outbox_.pop_back();
    if (onClose_) {
        auto cb = std::move(onClose_);
        onMessage_ = nullptr;
        cb(reason);
    }
}

} // namespace pccl::transport
