#include "transport/in_conn.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "transport/tsan.h"
#include "util/bytes.h"
#include "util/log.h"

namespace pccl::transport {

// ---- handshake

void InConn::startHandshake() {
    auto self = shared_from_this();
    asio::async_read(socket, asio::buffer(hello), asio::bind_executor(strand, [self](const asio::error_code &ec, size_t) {
                         if (ec) return self->closeNow("handshake: " + ec.message());
                         self->onHello();
                     }));
}

void InConn::onHello() {
    auto o = owner.lock();
    if (!o) return closeNow("data plane gone");
    // Every byte string of this size decodes (the hello has no field that can be malformed).
    const DataHello h = decodeDataHello(hello, sizeof hello).value_or(DataHello{});
    bool good = h.magic == kDataMagic && h.version == protocol::kProtocolVersion;
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
    ack = encodeDataAck(a);
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
    asio::async_read(socket, asio::buffer(header, frameHeaderBytes(sameHost)),
                     asio::bind_executor(strand, [self](const asio::error_code &ec, size_t) {
                         if (ec) return self->closeNow(ec == asio::error::eof ? "closed by remote" : ec.message());
                         self->onHeader();
                     }));
}

void InConn::onHeader() {
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
    readInto(static_cast<uint8_t *>(dest), 0, [sink](InConn &c, const asio::error_code &ec) {
        if (ec) {
            sink->onPayloadFailed(c.current, "receiving from " + c.from.shortStr() + " failed: " + ec.message());
            return c.closeNow(ec.message());
        }
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
    storeLE64(ackOut, consumed);
    auto self = shared_from_this();
    asio::async_write(socket, asio::buffer(ackOut), asio::bind_executor(strand, [self](const asio::error_code &ec, size_t) {
                          self->ackWriting = false;
                          if (ec) return self->closeNow("acknowledging to " + self->from.shortStr() + ": " + ec.message());
                          if (self->consumed != loadLE64(self->ackOut)) self->writeAck();
                      }));
}

// Reads the payload into this connection's scratch and drops it; tells `sink`, if any.
void InConn::discard(std::shared_ptr<FrameSink> sink) {
    if (byRef) {
        acknowledge();
        if (sink) sink->onDiscarded(current, from);
        return readHeader();
    }
    scratch.resize(current.bytes);
    readInto(scratch.data(), 0, [sink = std::move(sink)](InConn &c, const asio::error_code &ec) {
        if (ec) return c.closeNow(ec.message());
        c.scratch.clear();
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
    if (rem == 0) {
        setLowat(1);
        return done(*this, {});
    }
    if (current.bytes >= kLowatMinFrame) setLowat(rem);
    auto self = shared_from_this();
    socket.async_read_some(asio::buffer(dest + got, rem),
                           asio::bind_executor(strand, [self, dest, got, done = std::move(done)](const asio::error_code &ec, size_t n) mutable {
                               if (ec) return done(*self, ec);
                               self->readInto(dest, got + n, std::move(done));
                           }));
}

// ---- closing

void InConn::closeNow(const std::string &reason) {
    if (closed) return;
    closed = true;
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
