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

FramedConnection::FramedConnection(asio::ip::tcp::socket socket, ChannelPtr channel)
    : socket_(std::move(socket)), channel_(std::move(channel)) {
    asio::error_code ec;
    auto ep = socket_.remote_endpoint(ec);
    if (!ec) remote_ = toNetAddr(ep);
    tuneSocket(socket_);
}

void FramedConnection::start(MessageHandler onMessage, CloseHandler onClose) {
    onMessage_ = std::move(onMessage);
    onClose_ = std::move(onClose);
    readLength();
}

void FramedConnection::accept(std::optional<security::Key> runKey, std::function<void()> onReady,
                              std::function<void(const std::string &)> onRefused, MessageHandler onMessage,
                              CloseHandler onClose, std::shared_ptr<FirstFrameBudget> budget) {
    onMessage_ = std::move(onMessage);
    onClose_ = std::move(onClose);
    onRefused_ = std::move(onRefused);
    auto self = shared_from_this();
    if (!runKey) {
        // An open run: the connection is as good as it gets now; the first frame is bounded.
        maxFrame_ = kMaxFirstFrame;
        budget_ = std::move(budget);
        onReady();
        return readLength();
    }
    ready_ = false;
    deadline_ = std::make_shared<asio::steady_timer>(socket_.get_executor(), kHandshakeDeadline);
    deadline_->async_wait([self](const asio::error_code &ec) {
        if (!ec && !self->ready_) self->closeNow("no authentication within " + std::to_string(kHandshakeDeadline.count()) + " ms");
    });
    asio::async_read(socket_, asio::buffer(length_), [self, key = *runKey, onReady = std::move(onReady)](const asio::error_code &ec, size_t) {
        if (ec) return self->closeNow("closed before authenticating: " + ec.message());
        if (loadLE32(self->length_) != security::kAuthMagic) {
            // A peer without the secret (a PCCL 1.0 program without PCCL_SECRET): tell it why.
            self->queueFrame(protocol::Reject{pcclAuthenticationFailed,
                                              "this master requires the run secret (set PCCL_SECRET or PCCL_SECRET_FILE)"});
            self->closeAfterWrite_ = true;
            self->closeReason_ = "unauthenticated connection (no run secret) from " + self->remote_.str();
            if (!self->writing_) self->writeNext();
            return;
        }
        auto keyFor = [key](const security::ClientHello &h, std::string *why) -> std::optional<security::Key> {
            if (h.kind == static_cast<uint8_t>(security::ConnKind::Control)) return key;
            *why = "a data-connection handshake sent to the master";
            return std::nullopt;
        };
        serverHandshake(self->socket_, self->socket_.get_executor(), self, self->length_, keyFor,
                        [self, onReady](Status st, ChannelPtr channel, const security::ClientHello &) {
                            if (!st.ok()) return self->closeNow(st.message() + " (from " + self->remote_.str() + ")");
                            self->channel_ = std::move(channel);
                            self->ready_ = true;
                            self->deadline_->cancel();
                            onReady();
                            if (!self->closed_) self->readLength();
                        });
    });
}

void FramedConnection::readLength() {
    auto self = shared_from_this();
    asio::async_read(socket_, asio::buffer(length_), [self](const asio::error_code &ec, size_t) {
        if (ec) return self->closeNow(ec == asio::error::eof ? "connection closed by remote" : ec.message());
        self->onLength();
    });
}

void FramedConnection::onLength() {
    const uint32_t size = loadLE32(length_);
    if (maxFrame_ == kMaxFirstFrame && size == security::kAuthMagic) {
        // A peer with a secret reached an open master: it must not fall back to plaintext.
        static const auto refusal = security::ServerHandshake::refusal(security::ServerStatus::NoSecret);
        outbox_.emplace_back(refusal.begin(), refusal.end());
        closeAfterWrite_ = true;
        closeReason_ = "a peer with a run secret connected; this master has none";
        if (!writing_) writeNext();
        return;
    }
    if (maxFrame_ == kMaxFirstFrame && size > kMaxFirstFrame && size <= kMaxFirstRejoinFrame && budget_)
        return readFirstType(size);
    if (size > maxFrame_)
        return closeNow("frame of " + std::to_string(size) + " bytes exceeds the limit of " + std::to_string(maxFrame_));
    maxFrame_ = protocol::kMaxControlFrame;
    bodySize_ = 2 + size + (channel_ ? security::kTagBytes : 0);
    body_.clear();
    readBody(0);
}

bool FirstFrameBudget::take(size_t n) {
    size_t left = left_.load();
    while (left >= n)
        if (left_.compare_exchange_weak(left, left - n)) return true;
    return false;
}

// A first frame over kMaxFirstFrame in an open run: only a Rejoin, and only while the budget has
// room for all of it (a restarted master hears every peer of a large run at once).
void FramedConnection::readFirstType(uint32_t size) {
    body_.resize(2);
    auto self = shared_from_this();
    asio::async_read(socket_, asio::buffer(body_.data(), 2), [self, size](const asio::error_code &ec, size_t) {
        if (ec) return self->closeNow(ec == asio::error::eof ? "connection closed by remote inside a frame" : ec.message());
        static const uint16_t kRejoin = static_cast<uint16_t>(protocol::ControlMessage(protocol::Rejoin{}).index());
        if (loadLE16(self->body_.data()) != kRejoin)
            return self->closeNow("first frame of " + std::to_string(size) + " bytes exceeds the limit of " +
                                  std::to_string(kMaxFirstFrame) + " (only a Rejoin may be larger)");
        const size_t need = 2 + size_t{size};
        if (!self->budget_->take(need))
            return self->closeNow("a Rejoin of " + std::to_string(size) + " bytes does not fit in what other first "
                                  "frames leave of their budget now (the peer retries)");
        self->budgetHeld_ = need;
        self->maxFrame_ = protocol::kMaxControlFrame;
        self->bodySize_ = need;
        self->readBody(2);
    });
}

void FramedConnection::releaseBudget() {
    if (budgetHeld_) budget_->give(std::exchange(budgetHeld_, 0));
}

// Reads the frame's body in steps of at most 64 KiB (4 KiB for a large first frame, from a peer
// nobody knows yet), growing the buffer only as bytes arrive.
void FramedConnection::readBody(size_t got) {
    if (got == bodySize_) return onBody();
    const size_t step = std::min<size_t>(bodySize_ - got, budgetHeld_ ? kMaxFirstFrame : 64 << 10);
    body_.resize(got + step);
    auto self = shared_from_this();
    asio::async_read(socket_, asio::buffer(body_.data() + got, step), [self, got](const asio::error_code &ec, size_t n) {
        if (ec) return self->closeNow(ec == asio::error::eof ? "connection closed by remote inside a frame" : ec.message());
        self->readBody(got + n);
    });
}

void FramedConnection::onBody() {
    size_t plain = bodySize_;
    if (channel_) {
        plain -= security::kTagBytes;
        if (!channel_->openInPlace(security::Bytes(length_, 4), body_.data(), plain))
            return closeNow("a control frame from " + remote_.str() + " failed authentication (tampered, replayed or forged)");
    }
    releaseBudget();
    const uint16_t type = loadLE16(body_.data());
    std::string error;
    auto msg = protocol::decodeMessage(type, body_.data() + 2, plain - 2, &error);
    if (!msg) return closeNow("protocol error from " + remote_.str() + ": " + error);
    if (closed_) return;
    body_ = {};
    onMessage_(std::move(*msg));
    if (!closed_) readLength();
}

// Encodes m at the end of the outbox (sealed when the connection has a record layer). Io
// thread only: frames are sealed in the order they are written.
void FramedConnection::queueFrame(const protocol::ControlMessage &m) {
    std::vector<uint8_t> frame;
    protocol::encodeFrame(m, frame);
    if (channel_) {
        const size_t n = frame.size() - 4;
        frame.resize(frame.size() + security::kTagBytes);
        channel_->sealInPlace(security::Bytes(frame.data(), 4), frame.data() + 4, n);
    }
    outbox_.push_back(std::move(frame));
}

void FramedConnection::send(protocol::ControlMessage m) {
    auto self = shared_from_this();
    asio::post(socket_.get_executor(), [self, m = std::move(m)] {
        if (self->closed_ || self->closeAfterWrite_ || !self->ready_) return;
        self->queueFrame(m);
        if (!self->writing_) self->writeNext();
    });
}

void FramedConnection::sendAndClose(protocol::ControlMessage m, const std::string &reason) {
    auto self = shared_from_this();
    asio::post(socket_.get_executor(), [self, m = std::move(m), reason] {
        if (self->closed_ || self->closeAfterWrite_) return;
        if (self->ready_) self->queueFrame(m);
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
    releaseBudget();
    asio::error_code ec;
    socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    socket_.close(ec);
    // The frame being written stays alive until its handler runs.
    while (outbox_.size() > (writing_ ? 1u : 0u)) outbox_.pop_back();
    if (deadline_) deadline_->cancel();
    if (!ready_ && onRefused_) {
        auto cb = std::move(onRefused_);
        onClose_ = nullptr;
        onMessage_ = nullptr;
        return cb(reason);
    }
    if (onClose_) {
        auto cb = std::move(onClose_);
        onMessage_ = nullptr;
        cb(reason);
    }
}

} // namespace pccl::transport
