#include "transport/in_conn.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "transport/tsan.h"
#include "util/bytes.h"
#include "util/log.h"

namespace pccl::transport {

// ---- handshake

void InConn::startHandshake() {
    auto self = shared_from_this();
    deadline = std::make_shared<asio::steady_timer>(strand, kHandshakeDeadline);
    deadline->async_wait(asio::bind_executor(strand, [self](const asio::error_code &ec) {
        if (!ec) self->closeNow("no data-connection hello within " + std::to_string(kHandshakeDeadline.count()) + " ms");
    }));
    asio::async_read(socket, asio::buffer(first), asio::bind_executor(strand, [self](const asio::error_code &ec, size_t) {
                         if (ec) return self->closeNow("handshake: " + ec.message());
                         self->onFirst();
                     }));
}

// The first 4 bytes say what the opener speaks: the authentication handshake, or a plain hello.
void InConn::onFirst() {
    auto o = owner.lock();
    if (!o) return closeNow("data plane gone");
    bool secure, admitted;
    {
        std::lock_guard lock(o->mu);
        secure = o->secure;
        admitted = o->ownKey.has_value();
    }
    const bool offersAuth = loadLE32(first) == security::kAuthMagic;
    auto self = shared_from_this();
    if (secure && offersAuth && !admitted) {
        // A ring neighbour may connect before this peer's control thread has read the Welcome
        // that carries its key (the master sends both at once): wait for it, within the deadline.
        auto retry = std::make_shared<asio::steady_timer>(strand, std::chrono::milliseconds(10));
        return retry->async_wait(asio::bind_executor(strand, [self, retry](const asio::error_code &ec) {
            if (!ec && !self->closed) self->onFirst();
        }));
    }
    if (secure && !offersAuth) return closeNow("unauthenticated data connection (the opener has no run secret)");
    if (!secure && offersAuth) {
        refusal = security::ServerHandshake::refusal(security::ServerStatus::NoSecret);
        return asio::async_write(socket, asio::buffer(refusal), asio::bind_executor(strand, [self](const asio::error_code &, size_t) {
                                     self->closeNow("an opener with a run secret; this peer has none");
                                 }));
    }
    if (!secure) {
        std::memcpy(hello, first, 4);
        return readHello(4);
    }
    std::weak_ptr<DataPlane::Impl> weak = owner;
    auto keyFor = [weak](const security::ClientHello &h, std::string *why) -> std::optional<security::Key> {
        auto o = weak.lock();
        if (!o) {
            *why = "data plane gone";
            return std::nullopt;
        }
        return o->incomingKey(h, why);
    };
    serverHandshake(socket, strand, self, first, keyFor, [self](Status st, ChannelPtr c, const security::ClientHello &h) {
        if (!st.ok()) return self->closeNow("refused data connection from peer " + h.sender.shortStr() + ": " + st.message());
        self->channel = std::move(c);
        self->authenticated = h.sender;
        self->readHello(0);
    });
}

void InConn::readHello(size_t got) {
    auto self = shared_from_this();
    asio::async_read(socket, asio::buffer(hello + got, kDataHelloBytes + tagBytes() - got),
                     asio::bind_executor(strand, [self](const asio::error_code &ec, size_t) {
                         if (ec) return self->closeNow("handshake: " + ec.message());
                         if (self->channel && !self->channel->openInPlace({}, self->hello, kDataHelloBytes))
                             return self->closeNow("the data-connection hello failed authentication");
                         self->onHello();
                     }));
}

void InConn::onHello() {
    auto o = owner.lock();
    if (!o) return closeNow("data plane gone");
    // Every byte string of this size decodes (the hello has no field that can be malformed).
    const DataHello h = decodeDataHello(hello, kDataHelloBytes).value_or(DataHello{});
    bool good = h.magic == kDataMagic && h.version == protocol::kProtocolVersion;
    if (channel) good = good && h.sender == authenticated;  // the uuid the handshake proved
    bool enabled = false;
    {
        std::lock_guard lock(o->mu);  // closePeer reads `from` under this lock
        from = h.sender;
        good = good && h.receiver == o->self && !o->self.isNil();
        enabled = o->sameHost;
    }
    const SameHostIdentity remote = h.identity();
    sameHost = enabled && good && h.offersSameHost() && sameHostReachable(remote);
    senderPid = remote.pid;
    senderInProcess = sameHost && senderPid == static_cast<uint32_t>(::getpid());
    if (sameHost) PCCL_LOG(Debug, "data connection from " << from.shortStr() << " copies same-host (pid " << senderPid << ")");
    DataAck a;
    a.accepted = good;
    a.same_host = sameHost;
    const auto plain = encodeDataAck(a);
    ack.assign(plain.begin(), plain.end());
    ack.resize(kDataAckBytes + tagBytes());
    if (channel) channel->sealInPlace({}, ack.data(), kDataAckBytes);
    deadline->cancel();
    auto self = shared_from_this();
    asio::async_write(socket, asio::buffer(ack), asio::bind_executor(strand, [self, good](const asio::error_code &ec, size_t) {
                          if (ec) return self->closeNow("handshake: " + ec.message());
                          if (!good) return self->closeNow("rejected data connection: bad hello");
                          self->readHeader();
                      }));
}

// ---- frames

void InConn::readHeader() {
    auto self = shared_from_this();
    asio::async_read(socket, asio::buffer(header, frameHeaderBytes(sameHost) + tagBytes()),
                     asio::bind_executor(strand, [self](const asio::error_code &ec, size_t) {
                         if (ec) return self->closeNow(ec == asio::error::eof ? "closed by remote" : ec.message());
                         self->onHeader();
                     }));
}

void InConn::onHeader() {
    if (channel && !channel->openInPlace({}, header, frameHeaderBytes(sameHost)))
        return closeNow("a frame header from " + from.shortStr() + " failed authentication (tampered or forged)");
    const auto f = decodeFrameHeader(header, sameHost);
    if (!f) return closeNow("malformed frame header from " + from.shortStr());
    current = f->segment;
    byRef = f->byRef;
    payloadAddress = f->address;
    dispatch();
}

// Routes the current frame: to its sink, to the parking lot, or to the discard path.
void InConn::dispatch() {
    auto o = owner.lock();
    if (!o) return closeNow("data plane gone");
    std::shared_ptr<FrameSink> sink;
    {
        std::lock_guard lock(o->mu);
        auto it = o->sinks.find(current.seq);
        if (it != o->sinks.end()) {
            sink = it->second;
        } else if (current.seq > o->highestSeq) {
            o->parked.emplace(current.seq, shared_from_this());
            return;
        }
    }
    if (!sink) return discard();
    std::string error;
    void *dest = sink->beginFrame(current, from, &error);
    if (!dest && error.empty()) return discard(std::move(sink));
    if (!dest) return closeNow("protocol error from " + from.shortStr() + ": " + error);
    if (byRef) return copyIn(std::move(sink), static_cast<uint8_t *>(dest));
    tsan::acquire(dest);
    readInto(static_cast<uint8_t *>(dest), 0, [sink](InConn &c, const std::string &error) {
        if (!error.empty()) {
            sink->onPayloadFailed(c.current, "receiving from " + c.from.shortStr() + " failed: " + error);
            return c.closeNow(error);
        }
        if (connStatsEnabled()) c.stats.record(c.current.bytes);
        sink->onPayload(c.current);
        if (!c.closed) c.readHeader();
    });
}

void InConn::resume() {
    auto self = shared_from_this();
    asio::post(strand, [self] {
        if (!self->closed) self->dispatch();
    });
}

// Same-host: copies the payload out of the sender (on this I/O thread: it runs at memory
// speed) and acknowledges it. A failed copy (the sender died, or named memory it does not
// have) fails the frame and closes the connection, as a broken TCP stream would.
void InConn::copyIn(std::shared_ptr<FrameSink> sink, uint8_t *dest) {
    const void *source = reinterpret_cast<const void *>(static_cast<uintptr_t>(payloadAddress));
    if (senderInProcess) tsan::acquire(source);
    const std::string err = copyFromPeer(senderPid, payloadAddress, dest, current.bytes);
    if (!err.empty()) {
        sink->onPayloadFailed(current, "copying from " + from.shortStr() + " failed: " + err);
        return closeNow(err);
    }
    tsan::write(dest, current.bytes);
    if (senderInProcess) {
        tsan::read(source, current.bytes);
        tsan::release(source);
    }
    acknowledge();
    if (connStatsEnabled()) stats.record(current.bytes);
    sink->onPayload(current);
    if (!closed) readHeader();
}

// Same-host: tells the sender, coalesced, how many frames it may now reuse the memory of.
void InConn::acknowledge() {
    ++consumed;
    if (!ackWriting) writeAck();
}

void InConn::writeAck() {
    ackWriting = true;
    ackSent = consumed;
    storeLE64(ackOut, consumed);
    if (channel) channel->sealInPlace({}, ackOut, kConsumedBytes);
    auto self = shared_from_this();
    asio::async_write(socket, asio::buffer(ackOut, kConsumedBytes + tagBytes()),
                      asio::bind_executor(strand, [self](const asio::error_code &ec, size_t) {
                          self->ackWriting = false;
                          if (ec) return self->closeNow("acknowledging to " + self->from.shortStr() + ": " + ec.message());
                          if (self->consumed != self->ackSent) self->writeAck();
                      }));
}

// Reads the payload into this connection's scratch and drops it; tells `sink`, if any.
void InConn::discard(std::shared_ptr<FrameSink> sink) {
    if (byRef) {
        acknowledge();
        if (sink) sink->onDiscarded(current, from);
        return readHeader();
    }
    readInto(nullptr, 0, [sink = std::move(sink)](InConn &c, const std::string &error) {
        if (!error.empty()) return c.closeNow(error);
        c.scratch = {};
        if (sink) sink->onDiscarded(c.current, c.from);
        c.readHeader();
    });
}

// ---- reading payloads

void InConn::setLowat(size_t v) {
    const int want = static_cast<int>(std::max<size_t>(1, std::min(v, kLowatMax)));
    if (want == lowat) return;
    lowat = want;
    ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVLOWAT, &want, sizeof want);
}

// Reads the rest of the current payload into `dest` (from byte `got`). A large payload is
// read in few calls: SO_RCVLOWAT is raised to what is still missing, so the socket wakes
// this connection when the frame is (nearly) complete, not for every 64 KiB that arrives;
// the kernel also wakes it when its receive window is about to close, and raising the mark
// grows the receive buffer to hold it (autotuning stays on). The mark is back at 1 before
// the next header is read. asio's async_read is not used: it caps each recv at 64 KiB.
void InConn::readInto(uint8_t *dest, size_t got, ReadDone done) {
    const size_t rem = current.bytes - got;
    if (got == 0 && channel) channel->recv->begin();
    if (rem == 0) {
        setLowat(1);
        if (channel) return readTag(std::move(done));
        return done(*this, {});
    }
    // A payload nobody wants is read into a small window, whatever its announced size.
    uint8_t *to = dest ? dest + got : nullptr;
    size_t want = rem;
    if (!dest) {
        want = std::min(rem, kDiscardChunk);
        scratch.resize(want);
        to = scratch.data();
    } else if (current.bytes >= kLowatMinFrame) {
        setLowat(rem);
    }
    auto self = shared_from_this();
    socket.async_read_some(asio::buffer(to, want),
                           asio::bind_executor(strand, [self, dest, to, got, done = std::move(done)](const asio::error_code &ec, size_t n) mutable {
                               if (ec) return done(*self, ec.message());
                               // Decrypted in place as it arrives, while the bytes are in cache.
                               if (self->channel) self->channel->recv->update(to, to, n);
                               self->readInto(dest, got + n, std::move(done));
                           }));
}

// The tag of the payload just read: the payload counts only if it verifies.
void InConn::readTag(ReadDone done) {
    auto self = shared_from_this();
    asio::async_read(socket, asio::buffer(tag), asio::bind_executor(strand, [self, done = std::move(done)](const asio::error_code &ec, size_t) {
                         if (ec) return done(*self, ec.message());
                         if (!self->channel->recv->finishOpen(self->tag))
                             return done(*self, "a frame from " + self->from.shortStr() +
                                                    " failed authentication (tampered, replayed or forged)");
                         done(*self, {});
                     }));
}

// ---- closing

void InConn::closeNow(const std::string &reason) {
    if (closed) return;
    closed = true;
    if (deadline) deadline->cancel();
    PCCL_LOG(Debug, "data connection from " << from.shortStr() << " closed: " << reason);
    asio::error_code ec;
    socket.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    socket.close(ec);
}

void InConn::close(const std::string &reason) {
    auto self = shared_from_this();
    asio::post(strand, [self, reason] { self->closeNow(reason); });
}

} // namespace pccl::transport
