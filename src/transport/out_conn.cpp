#include "transport/out_conn.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <algorithm>
#include <cstdlib>
#include <optional>
#include <cstring>
#include <fstream>
#include <vector>

#include "transport/framed_connection.h"
#include "transport/tsan.h"
#include "util/bytes.h"
#include "util/log.h"

namespace pccl::transport {
namespace {

// The unsent bytes the connections of one pool may hold in their kernels, together, and the
// bounds for one connection (see notsentLowat).
constexpr size_t kPoolNotsent = 2 << 20, kMinNotsent = 64 << 10, kMaxNotsent = 512 << 10;

bool kernelOffers(const std::string &name) {
    static const std::string available = [] {
        std::ifstream f("/proc/sys/net/ipv4/tcp_available_congestion_control");
        std::string line;
        std::getline(f, line);
        return " " + line + " ";
    }();
    return available.find(" " + name + " ") != std::string::npos;
}

// Sets TCP_CONGESTION on a connected socket (after connect: a route's congctl replaces the
// socket's choice at connect time). See DataPlane::setCongestionControl for the modes.
void setCongestion(asio::ip::tcp::socket &s, const asio::ip::tcp::endpoint &to, const std::string &mode) {
    std::string name = mode;
    if (mode == "system") return;
    if (mode == "auto") {
        if (to.address().is_loopback() || !kernelOffers("bbr")) return;
        name = "bbr";
    }
#ifdef TCP_CONGESTION
    if (::setsockopt(s.native_handle(), IPPROTO_TCP, TCP_CONGESTION, name.data(), static_cast<socklen_t>(name.size())) != 0) {
        static std::atomic<bool> warned{false};
        if (!warned.exchange(true))
            PCCL_LOG(Warn, "TCP congestion control \"" << name << "\" refused by the kernel (" << std::strerror(errno)
                                                        << "); data connections use the system default");
    }
#else
    (void)s;
#endif
}

// Unsent bytes a connection to a remote peer may leave in its kernel send buffer
// (TCP_NOTSENT_LOWAT): the kernel stops taking data beyond it, so frames stay in the pool's shared
// queue, where any connection can take them, instead of in the buffer of one that may turn out
// slower (docs/design.md, Segment scheduling). The connections that carry frames at once (the
// pool, at most DataPlane::Impl::kMaxSending of it) share kPoolNotsent: a connection's share
// drains in about the same time whatever the pool size, and a pool of 64 holds as much ahead of
// the wire as one of 16 (divided by 64, the 16 senders held half as much: 77-81% of the link
// against 91%). PCCL_TCP_NOTSENT_LOWAT fixes it (bytes; 0: off).
size_t notsentLowat(int senders) {
    static const std::optional<size_t> fixed = []() -> std::optional<size_t> {
        const char *env = std::getenv("PCCL_TCP_NOTSENT_LOWAT");
        if (!env || !*env) return std::nullopt;
        char *end = nullptr;
        const unsigned long long n = std::strtoull(env, &end, 10);
        if (*end || n > (1ull << 30)) {
            PCCL_LOG(Warn, "ignoring PCCL_TCP_NOTSENT_LOWAT=" << env << " (bytes, 0..1073741824; 0 = off)");
            return std::nullopt;
        }
        return static_cast<size_t>(n);
    }();
    if (fixed) return *fixed;
    const int n = std::clamp(senders, 1, DataPlane::Impl::kMaxSending);
    return std::clamp(kPoolNotsent / static_cast<size_t>(n), kMinNotsent, kMaxNotsent);
}

// For a connection to a remote peer (not loopback, not same-host).
void setNotsentLowat(asio::ip::tcp::socket &s, int senders) {
#ifdef TCP_NOTSENT_LOWAT
    const size_t v = notsentLowat(senders);
    if (v == 0) return;
    const int n = static_cast<int>(v);
    ::setsockopt(s.native_handle(), IPPROTO_TCP, TCP_NOTSENT_LOWAT, &n, sizeof n);
#else
    (void)s, (void)senders;
#endif
}

} // namespace

// ---- handshake

void OutConn::Handshake::fail(const std::string &what, const asio::error_code &ec) const {
    pending->finish({pcclRankConnectionFailed, "cannot connect to peer " + pending->peer.shortStr() + " at " + addr.str() +
                                                   ": " + what + ": " + ec.message()});
}

void OutConn::open(std::shared_ptr<Handshake> hs) {
    auto self = shared_from_this();
    asio::post(strand, [self, hs] {
        self->socket.async_connect(hs->endpoint, asio::bind_executor(self->strand, [self, hs](const asio::error_code &ec) {
                                       if (ec) return hs->fail("connect", ec);
                                       tuneSocket(self->socket);
                                       setCongestion(self->socket, hs->endpoint, hs->congestion);
                                       if (hs->key) return self->authenticate(hs);
                                       self->sendHello(hs);
                                   }));
    });
}

// A run with a secret: prove the pair key, then every byte goes through the record layer.
void OutConn::authenticate(std::shared_ptr<Handshake> hs) {
    auto self = shared_from_this();
    Uuid me;
    if (auto o = owner.lock()) {
        std::lock_guard lock(o->mu);
        me = o->self;
    }
    auto client = std::make_shared<security::ClientHandshake>(*hs->key, security::ConnKind::Data, security::preferredSuite(),
                                                              hs->mode, me, peer);
    clientHandshake(socket, strand, self, client, "peer " + peer.shortStr() + " at " + hs->addr.str(),
                    pcclRankConnectionFailed, [self, hs](Status st, ChannelPtr c) {
                        if (!st.ok()) return hs->pending->finish(st);
                        self->channel = std::move(c);
                        self->sendHello(hs);
                    });
}

void OutConn::sendHello(std::shared_ptr<Handshake> hs) {
    auto self = shared_from_this();
    if (channel) channel->sealInPlace({}, hs->hello.data(), kDataHelloBytes);
    const size_t helloWire = kDataHelloBytes + tagBytes(), ackWire = kDataAckBytes + tagBytes();
    asio::async_write(socket, asio::buffer(hs->hello.data(), helloWire), asio::bind_executor(strand, [self, hs, ackWire](const asio::error_code &ec, size_t) {
                          if (ec) return hs->fail("hello", ec);
                          asio::async_read(self->socket, asio::buffer(hs->ack.data(), ackWire),
                                           asio::bind_executor(self->strand, [self, hs](const asio::error_code &ec2, size_t) {
                                               if (ec2) return hs->fail("handshake", ec2);
                                               self->onAck(*hs);
                                           }));
                      }));
}

void OutConn::onAck(Handshake &hs) {
    if (channel && !channel->openInPlace({}, hs.ack.data(), kDataAckBytes))
        return hs.fail("the acknowledgement failed authentication", asio::error::access_denied);
    const auto ack = decodeDataAck(hs.ack.data(), kDataAckBytes);
    if (!ack || ack->magic != kDataMagic || !ack->accepted || (ack->same_host && !hs.offer))
        return hs.fail("handshake", asio::error::access_denied);
    sameHost = ack->same_host;
    local = sameHost || hs.endpoint.address().is_loopback();
    {
        // The owner outlives every handler (its I/O threads are joined before it is destroyed).
        std::lock_guard lock(hs.pending->owner->mu);
        hs.pending->owner->pools[peer].push_back(shared_from_this());
        if (const auto tcp = tcpProgress(socket.native_handle()); !local && tcp.rtt.count() > 0)
            hs.pending->owner->queues[peer].control.setRtt(tcp.rtt);
    }
    watchForClose();
    writeNext();  // frames already waiting for this pool, or joins the idle list
    hs.pending->finish({});
}

// ---- sending

void OutConn::pull() {
    auto self = shared_from_this();
    asio::post(strand, [self] {
        if (!self->closed && !self->writing) self->writeNext();
    });
}

void OutConn::fill() {
    auto o = owner.lock();
    if (!o) return;
    std::vector<DataPlane::Impl::Waiting> got;
    std::vector<std::shared_ptr<OutConn>> wake;
    size_t bytes = queuedBytes.load(), items = queue.size();
    int senders = 0;
    // Bytes delivered since the last fill (SenderControl), counted if this connection was a
    // sender then: one woken from standing by reports none (what it delivered late belongs to an
    // earlier interval); one that just stepped back still counts what it drains.
    const TcpProgress tcp = local ? TcpProgress{} : tcpProgress(socket.native_handle());
    const uint64_t acked = tcp.delivered;
    uint64_t delivered = acked > ackedSeen ? acked - ackedSeen : 0;
    ackedSeen = std::max(ackedSeen, acked);
    {
        std::lock_guard lock(o->mu);
        auto &q = o->queues[peer];
        const auto pool = o->viewLocked(peer, this);
        senders = pool.senders;
        const bool sender = pool.rank < senders;
        if (!wasSender) delivered = 0;
        wasSender = sender;
        if (sender)
            while (!q.empty() && (bytes == 0 || (bytes < kAhead && items < kGatherItems))) {
                bytes += q.next().h.bytes;
                ++items;
                got.push_back(q.take());
            }
        if (bytes == 0 && got.empty()) idle = true;  // send() or a change of senders wakes it
        // A sender's queue: its smoothed RTT over the lowest it has seen (0: none to report).
        const double queue =
            sender && tcp.minRtt.count() > 0 ? static_cast<double>(tcp.rtt.count()) / tcp.minRtt.count() : 0;
        if (!local && q.control.observe(std::chrono::steady_clock::now(), delivered, !q.empty(), queue,
                                        sender && tcp.startup)) {
            senders = o->viewLocked(peer).senders;
            if (connStatsEnabled())  // at any log level, like the per-call report
                log::write(log::Level::Info, "data connections to " + peer.shortStr() + ": " + q.control.lastChange());
            else
                PCCL_LOG(Debug, "data connections to " << peer.shortStr() << ": " << q.control.lastChange());
            wake = o->idleSendersLocked(peer);
        }
    }
    for (auto &c : wake) c->pull();
    if (!local && senders != lowatFor) {
        lowatFor = senders;
        setNotsentLowat(socket, senders);
    }
    for (auto &w : got) {
        Item item;
        item.byRef = sameHost && w.h.bytes >= kRefMinBytes;
        encodeFrameHeader({w.h, item.byRef, reinterpret_cast<uintptr_t>(w.data)}, sameHost, item.header);
        item.data = w.data;
        item.bytes = w.h.bytes;
        item.done = std::move(w.done);
        queuedBytes += item.bytes;
        queue.push_back(std::move(item));
    }
}

void OutConn::writeNext() {
    // Closed while a write was in flight that then succeeded: the rest of its items fail here.
    if (closed) {
        failUnacked("data connection to " + peer.shortStr() + " is closed");
        return failQueued("data connection to " + peer.shortStr() + " is closed");
    }
    completeAcked();
    fill();
    if (queue.empty()) return;
    writing = true;
    std::vector<asio::const_buffer> iov;
    iov.reserve(2 * kGatherItems);
    size_t skip = frontSent;
    const size_t hb = headerWire();
    size_t sealedAhead = 0;
    inWrite = 0;
    for (auto &it : queue) {
        if (inWrite == kGatherItems) break;
        if (channel && !it.sealed) {
            // Sealing copies (encrypt mode): bound the copies one write makes.
            if (inWrite > 0 && sealedAhead >= kSealAhead) break;
            seal(it);
            sealedAhead += it.cipher.size();
        }
        ++inWrite;
        if (skip < hb) iov.emplace_back(it.header + skip, hb - skip);
        size_t pieceSkip = skip > hb ? skip - hb : 0;
        asio::const_buffer pieces[2];
        payloadPieces(it, pieces);
        for (auto &p : pieces) {
            if (pieceSkip < p.size()) {
                iov.emplace_back(static_cast<const uint8_t *>(p.data()) + pieceSkip, p.size() - pieceSkip);
                tsan::read(iov.back().data(), iov.back().size());
            }
            pieceSkip -= std::min(pieceSkip, p.size());
        }
        tsan::release(it.data);
        skip = 0;
    }
    auto self = shared_from_this();
    socket.async_write_some(iov, asio::bind_executor(strand, [self](const asio::error_code &ec, size_t n) {
                                self->onWritten(ec, n);
                            }));
}

// Seals a frame for the record layer: its header in place (the tag after it) and its payload
// into `cipher` (encrypt mode) or just its tag (integrity mode: the payload goes from `data`).
void OutConn::seal(Item &it) {
    it.sealed = true;
    channel->sealInPlace({}, it.header, frameHeaderBytes(sameHost));
    if (it.byRef) return;
    const auto *data = static_cast<const uint8_t *>(it.data);
    tsan::acquire(it.data);
    if (channel->mode == security::Mode::Encrypt) {
        // A buffer of an earlier frame: no allocation, no page faults, no zero fill per frame.
        if (!spare.empty()) {
            it.cipher = std::move(spare.back());
            spare.pop_back();
        }
        it.cipher.resize(it.bytes + security::kTagBytes);
        channel->send->seal({}, data, it.cipher.data(), it.bytes, it.cipher.data() + it.bytes);
    } else {
        // Authenticated, not copied: with in == out the cipher only reads the bytes.
        auto *in = const_cast<uint8_t *>(data);
        channel->send->seal({}, in, in, it.bytes, it.tag);
    }
}

void OutConn::recycle(Item &it) {
    if (it.cipher.empty() || spare.size() >= kSpareBuffers) return;
    spare.push_back(std::move(it.cipher));
}

void OutConn::payloadPieces(const Item &it, asio::const_buffer out[2]) const {
    out[0] = out[1] = asio::const_buffer();
    if (it.byRef) return;
    if (!channel) {
        out[0] = asio::const_buffer(it.data, it.bytes);
    } else if (!it.cipher.empty()) {
        out[0] = asio::buffer(it.cipher);
    } else {
        out[0] = asio::const_buffer(it.data, it.bytes);
        out[1] = asio::const_buffer(it.tag, security::kTagBytes);
    }
}

void OutConn::onWritten(const asio::error_code &ec, size_t n) {
    writing = false;  // closeNow below must fail every queued item
    if (ec) {
        const std::string why = "sending to " + peer.shortStr() + " failed: " + ec.message();
        closeNow(ec.message());
        failQueued(why);  // the items of this write, if closeNow ran before
        return;
    }
    frontSent += n;
    while (!queue.empty() && frontSent >= wireBytes(queue.front())) {
        frontSent -= wireBytes(queue.front());
        if (queue.front().byRef) {
            unacked.splice(unacked.end(), queue, queue.begin());
            continue;
        }
        auto item = std::move(queue.front());
        queue.pop_front();
        queuedBytes -= item.bytes;
        if (connStatsEnabled()) stats.record(item.bytes);
        recycle(item);
        item.done(true, {});
    }
    writeNext();
}

// Fails the queued items from `first` on.
void OutConn::failQueued(const std::string &why, size_t first) {
    while (queue.size() > first) {
        auto item = std::move(queue.back());
        queue.pop_back();
        queuedBytes -= item.bytes;
        item.done(false, why);
    }
    if (first == 0) frontSent = 0;
}

void OutConn::cancel(uint64_t seq) {
    auto self = shared_from_this();
    asio::post(strand, [self, seq] {
        std::vector<Item> dropped;
        auto &q = self->queue;
        // Items the write in progress covers, or partly written, stay: the stream stays in step.
        const size_t started = self->writing ? self->inWrite : (self->frontSent ? 1 : 0);
        for (auto it = std::next(q.begin(), static_cast<std::ptrdiff_t>(std::min(started, q.size()))); it != q.end();) {
            if (!it->sealed && encodedSeq(it->header) == seq) {
                self->queuedBytes -= it->bytes;
                dropped.push_back(std::move(*it));
                it = q.erase(it);
            } else {
                ++it;
            }
        }
        for (auto &item : dropped) item.done(false, "cancelled");
    });
}

// ---- what the receiver sends back

// The receiver never sends after the handshake: a read that completes means it closed the
// connection (or broke the protocol). Watching for it takes the connection out of the pool
// at once, instead of at the next send, which would then fail an operation.
void OutConn::watchForClose() {
    if (sameHost) return readAcks();
    auto self = shared_from_this();
    socket.async_read_some(asio::buffer(&watchByte, 1), asio::bind_executor(strand, [self](const asio::error_code &ec, size_t) {
                               self->closeNow(ec ? "closed by the receiver: " + ec.message() : "unexpected data from the receiver");
                           }));
}

// Same-host connections: the receiver's acknowledgements (a running total of frames it
// consumed) free the oldest unacknowledged frames, in order.
void OutConn::readAcks() {
    auto self = shared_from_this();
    asio::async_read(socket, asio::buffer(ackIn, kConsumedBytes + tagBytes()), asio::bind_executor(strand, [self](const asio::error_code &ec, size_t) {
                         if (ec) return self->closeNow("closed by the receiver: " + ec.message());
                         if (self->channel && !self->channel->openInPlace({}, self->ackIn, kConsumedBytes))
                             return self->closeNow("an acknowledgement from the receiver failed authentication");
                         const uint64_t total = loadLE64(self->ackIn);
                         const uint64_t onWire = self->acked + self->unacked.size() + (self->writing ? self->inWrite : 0);
                         if (total < self->ackTotal || total > onWire)
                             return self->closeNow("malformed acknowledgement from the receiver");
                         self->ackTotal = total;
                         self->completeAcked();
                         if (!self->writing) self->writeNext();  // room again: take more frames
                         self->readAcks();
                     }));
}

void OutConn::completeAcked() {
    while (acked < ackTotal && !unacked.empty()) {
        auto item = std::move(unacked.front());
        unacked.pop_front();
        ++acked;
        queuedBytes -= item.bytes;
        if (connStatsEnabled()) stats.record(item.bytes);
        tsan::acquire(item.data);
        item.done(true, {});
    }
}

void OutConn::failUnacked(const std::string &why) {
    while (!unacked.empty()) {
        auto item = std::move(unacked.front());
        unacked.pop_front();
        queuedBytes -= item.bytes;
        item.done(false, why);
    }
}

// ---- closing

void OutConn::closeNow(const std::string &reason) {
    if (closed) return;
    closed = true;
    dead = true;
    PCCL_LOG(Debug, "data connection to " << peer.shortStr() << " closed: " << reason);
    asio::error_code ec;
    socket.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    socket.close(ec);
    // The items of the write in progress are failed by its handler.
    failQueued("data connection to " + peer.shortStr() + " closed: " + reason, writing ? inWrite : 0);
    failUnacked("data connection to " + peer.shortStr() + " closed before the receiver copied the frame: " + reason);
    if (auto o = owner.lock()) o->removeOut(peer, this, "data connection to " + peer.shortStr() + " closed: " + reason);
}

void OutConn::close(const std::string &reason) {
    auto self = shared_from_this();
    asio::post(strand, [self, reason] { self->closeNow(reason); });
}

} // namespace pccl::transport
