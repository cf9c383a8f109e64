#include "transport/data_plane.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <list>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "transport/framed_connection.h"
#include "transport/same_host.h"
#include "transport/tsan.h"
#include "util/bytes.h"
#include "util/log.h"

namespace pccl::transport {
namespace {

constexpr uint32_t kDataMagic = 0x4c444350;  // "PCDL"
// Hello: magic u32, version u16, sender id, receiver id, flags u8 (bit 0: offers same-host
// copies), 3 zero bytes, then the sender's SameHostIdentity: pid u32, netns u64, token address
// u64, token (16 bytes). Ack: magic u32, accepted u8, same-host copies u8, 2 zero bytes.
constexpr size_t kHelloBytes = 4 + 2 + 16 + 16 + 4 + 4 + 8 + 8 + 16;
constexpr size_t kAckBytes = 8;
// On a same-host connection every frame header is followed by 8 more bytes. A frame of at least
// kRefMinBytes is sent by reference: header byte 21 is 1 and those bytes hold the payload's
// address in the sender (u64), the payload itself is not sent; the receiver copies it out and
// acknowledges with the total number of by-reference frames it has consumed (u64), so the sender
// knows when that memory is free. Smaller frames (requests, headers of tiny operations) carry
// their payload inline, as on TCP, and complete when the kernel has taken them.
constexpr size_t kRefBytes = 8;
constexpr size_t kRefMinBytes = 16 << 10;

void encodeIdentity(const SameHostIdentity &id, bool offer, uint8_t *out) {
    out[0] = offer ? 1 : 0;
    out[1] = out[2] = out[3] = 0;
    storeLE32(out + 4, id.pid);
    storeLE64(out + 8, id.netns);
    storeLE64(out + 16, id.tokenAddress);
    std::copy(id.token.begin(), id.token.end(), out + 24);
}

SameHostIdentity decodeIdentity(const uint8_t *in) {
    SameHostIdentity id;
    id.pid = loadLE32(in + 4);
    id.netns = loadLE64(in + 8);
    id.tokenAddress = loadLE64(in + 16);
    std::copy(in + 24, in + 40, id.token.begin());
    return id;
}

using Strand = asio::strand<asio::io_context::executor_type>;

void encodeHeader(const SegmentHeader &h, uint8_t *out) {
    storeLE64(out, h.seq);
    storeLE64(out + 8, h.offset);
    storeLE32(out + 16, h.bytes);
    out[20] = h.phase;
    out[21] = out[22] = out[23] = 0;
}

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

} // namespace

struct OutConn;
struct InConn;

// One attempt to bring a peer's pool up to size; every caller waiting for it is told once.
struct PendingConnect {
    std::mutex mu;
    int left = 0;
    bool finished = false;
    std::vector<std::function<void(Status)>> done;
    std::shared_ptr<asio::steady_timer> timer;
    std::vector<std::shared_ptr<OutConn>> conns;
    DataPlane::Impl *owner = nullptr;
    Uuid peer;
    void finish(Status s);
};

struct DataPlane::Impl : std::enable_shared_from_this<DataPlane::Impl> {
    asio::io_context io;
    asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
    asio::ip::tcp::acceptor acceptor{io};
    std::vector<std::thread> threads;
    int nThreads;

    std::mutex mu;  // guards everything below
    Uuid self;
    std::string congestion = "auto";
    bool sameHost = sameHostFromEnvironment();
    std::unordered_map<Uuid, std::vector<std::shared_ptr<OutConn>>, UuidHash> pools;
    std::vector<std::weak_ptr<InConn>> incoming;
    std::unordered_map<uint64_t, std::shared_ptr<FrameSink>> sinks;
    uint64_t highestSeq = 0;
    std::multimap<uint64_t, std::shared_ptr<InConn>> parked;  // by the seq they wait for
    std::unordered_map<Uuid, std::shared_ptr<PendingConnect>, UuidHash> connecting;

    explicit Impl(int n) : nThreads(n) {}
    void acceptLoop();
    void removeOut(const Uuid &peer, const OutConn *c);
};

struct OutConn : std::enable_shared_from_this<OutConn> {
    struct Item {
        uint8_t header[kSegmentHeaderBytes + kRefBytes];  // + the address on same-host connections
        const void *data;
        size_t bytes;
        SendDone done;
        bool byRef = false;  // sent by reference (same-host connection, large frame)
    };
    OutConn(asio::io_context &io, std::weak_ptr<DataPlane::Impl> owner, Uuid peer)
        : strand(asio::make_strand(io)), socket(strand), owner(std::move(owner)), peer(peer) {}

    Strand strand;
    asio::ip::tcp::socket socket;
    std::weak_ptr<DataPlane::Impl> owner;
    Uuid peer;
    // A list, not a deque: the write in progress points the kernel at the headers of queued
    // items, and cancelling an item must not move the others (deque::erase in the middle does).
    std::list<Item> queue;  // strand only
    size_t frontSent = 0;    // strand only: bytes of queue.front() (header + payload) on the wire
    size_t inWrite = 0;      // strand only: leading items the write in progress covers
    bool writing = false;    // strand only
    bool closed = false;     // strand only
    // Same-host copies (set by the handshake, before the connection joins the pool): large
    // frames carry the payload's address; such a frame waits in `unacked` until the receiver says
    // it copied it, and only then is the sender's memory free (its `done` runs).
    bool sameHost = false;
    std::list<Item> unacked;  // strand only
    uint64_t acked = 0;       // strand only: frames completed by acknowledgements so far
    uint64_t ackTotal = 0;    // strand only: the receiver's latest total (may run ahead of
                              // `unacked`: its acknowledgement can be read before our write's
                              // completion handler has run)
    uint8_t ackIn[8];
    std::atomic<size_t> queuedBytes{0};
    std::atomic<bool> dead{false};

    void enqueue(Item item) {
        queuedBytes += item.bytes;
        auto self = shared_from_this();
        asio::post(strand, [self, item = std::move(item)]() mutable {
            if (self->closed) {
                self->queuedBytes -= item.bytes;
                item.done(false, "data connection to " + self->peer.shortStr() + " is closed");
                return;
            }
            self->queue.push_back(std::move(item));
            if (!self->writing) self->writeNext();
        });
    }

    // One sendmsg covers up to kGatherItems queued frames and is not cut at 64 KiB (asio's
    // async_write is: it would cost one syscall, and one wakeup, per 64 KiB). Frames are
    // completed as the bytes the kernel took cover them.
    static constexpr size_t kGatherItems = 16;
    size_t headerWire() const { return kSegmentHeaderBytes + (sameHost ? kRefBytes : 0); }
    size_t payloadWire(const Item &it) const { return it.byRef ? 0 : it.bytes; }
    size_t wireBytes(const Item &it) const { return headerWire() + payloadWire(it); }

    void writeNext() {
        // Closed while a write was in flight that then succeeded: the rest of its items fail here.
        if (closed) {
            failUnacked("data connection to " + peer.shortStr() + " is closed");
            return failQueued("data connection to " + peer.shortStr() + " is closed");
        }
        completeAcked();
        if (queue.empty()) return;
        writing = true;
        std::vector<asio::const_buffer> iov;
        iov.reserve(2 * kGatherItems);
        size_t skip = frontSent;
        const size_t hb = headerWire();
        inWrite = 0;
        for (auto &it : queue) {
            if (inWrite == kGatherItems) break;
            ++inWrite;
            if (skip < hb) iov.emplace_back(it.header + skip, hb - skip);
            const size_t payloadSkip = skip > hb ? skip - hb : 0;
            if (payloadSkip < payloadWire(it)) {
                iov.emplace_back(static_cast<const uint8_t *>(it.data) + payloadSkip, payloadWire(it) - payloadSkip);
                tsan::read(iov.back().data(), iov.back().size());
            }
            tsan::release(it.data);
            skip = 0;
        }
        auto self = shared_from_this();
        socket.async_write_some(iov, asio::bind_executor(strand, [self](const asio::error_code &ec, size_t n) {
                                    self->writing = false;  // closeNow below must fail every queued item
                                    if (ec) {
                                        const std::string why = "sending to " + self->peer.shortStr() + " failed: " + ec.message();
                                        self->closeNow(ec.message());
                                        self->failQueued(why);  // the items of this write, if closeNow ran before
                                        return;
                                    }
                                    self->frontSent += n;
                                    while (!self->queue.empty() && self->frontSent >= self->wireBytes(self->queue.front())) {
                                        self->frontSent -= self->wireBytes(self->queue.front());
                                        if (self->queue.front().byRef) {
                                            self->unacked.splice(self->unacked.end(), self->queue, self->queue.begin());
                                            continue;
                                        }
                                        auto item = std::move(self->queue.front());
                                        self->queue.pop_front();
                                        self->queuedBytes -= item.bytes;
                                        item.done(true, {});
                                    }
                                    self->writeNext();
                                }));
    }

    // Fails the queued items from `first` on (strand only).
    void failQueued(const std::string &why, size_t first = 0) {
        while (queue.size() > first) {
            auto item = std::move(queue.back());
            queue.pop_back();
            queuedBytes -= item.bytes;
            item.done(false, why);
        }
        if (first == 0) frontSent = 0;
    }

    // The receiver never sends after the handshake: a read that completes means it closed the
    // connection (or broke the protocol). Watching for it takes the connection out of the pool
    // at once, instead of at the next send, which would then fail an operation.
    uint8_t watchByte = 0;
    void watchForClose() {
        if (sameHost) return readAcks();
        auto self = shared_from_this();
        socket.async_read_some(asio::buffer(&watchByte, 1), asio::bind_executor(strand, [self](const asio::error_code &ec, size_t) {
                                   self->closeNow(ec ? "closed by the receiver: " + ec.message() : "unexpected data from the receiver");
                               }));
    }

    // Same-host connections: the receiver's acknowledgements (a running total of frames it
    // consumed) free the oldest unacknowledged frames, in order.
    void readAcks() {
        auto self = shared_from_this();
        asio::async_read(socket, asio::buffer(ackIn), asio::bind_executor(strand, [self](const asio::error_code &ec, size_t) {
                             if (ec) return self->closeNow("closed by the receiver: " + ec.message());
                             const uint64_t total = loadLE64(self->ackIn);
                             const uint64_t onWire = self->acked + self->unacked.size() + (self->writing ? self->inWrite : 0);
                             if (total < self->ackTotal || total > onWire)
                                 return self->closeNow("malformed acknowledgement from the receiver");
                             self->ackTotal = total;
                             self->completeAcked();
                             self->readAcks();
                         }));
    }

    void completeAcked() {
        while (acked < ackTotal && !unacked.empty()) {
            auto item = std::move(unacked.front());
            unacked.pop_front();
            ++acked;
            queuedBytes -= item.bytes;
            tsan::acquire(item.data);
            item.done(true, {});
        }
    }

    void failUnacked(const std::string &why) {
        while (!unacked.empty()) {
            auto item = std::move(unacked.front());
            unacked.pop_front();
            queuedBytes -= item.bytes;
            item.done(false, why);
        }
    }

    void closeNow(const std::string &reason) {
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
        if (auto o = owner.lock()) o->removeOut(peer, this);
    }

    void close(const std::string &reason) {
        auto self = shared_from_this();
        asio::post(strand, [self, reason] { self->closeNow(reason); });
    }

    void cancel(uint64_t seq) {
        auto self = shared_from_this();
        asio::post(strand, [self, seq] {
            std::vector<Item> dropped;
            auto &q = self->queue;
            // Items the write in progress covers, or partly written, stay: the stream stays in step.
            const size_t started = self->writing ? self->inWrite : (self->frontSent ? 1 : 0);
            for (auto it = std::next(q.begin(), static_cast<std::ptrdiff_t>(std::min(started, q.size()))); it != q.end();) {
                if (loadLE64(it->header) == seq) {
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
};

struct InConn : std::enable_shared_from_this<InConn> {
    InConn(asio::ip::tcp::socket s, std::weak_ptr<DataPlane::Impl> owner, Strand strand)
        : strand(strand), socket(std::move(s)), owner(std::move(owner)) {}

    Strand strand;
    asio::ip::tcp::socket socket;
    std::weak_ptr<DataPlane::Impl> owner;
    Uuid from;
    uint8_t hello[kHelloBytes];
    uint8_t ack[kAckBytes];
    uint8_t header[kSegmentHeaderBytes + kRefBytes];
    SegmentHeader current;
    std::vector<uint8_t> scratch;
    bool closed = false;
    // Same-host copies (decided in the handshake): headers are followed by 8 bytes; the payload
    // of a by-reference frame is copied out of process `senderPid` at the address they hold, and
    // the `consumed` by-reference frames are acknowledged.
    bool sameHost = false;
    bool byRef = false;  // the current frame
    uint32_t senderPid = 0;
    bool senderInProcess = false;  // peers as threads of one process (tests): tsan.h models the copy
    uint64_t payloadAddress = 0;
    uint64_t consumed = 0;
    bool ackWriting = false;
    uint8_t ackOut[8];

    void startHandshake() {
        auto self = shared_from_this();
        asio::async_read(socket, asio::buffer(hello), asio::bind_executor(strand, [self](const asio::error_code &ec, size_t) {
                             if (ec) return self->closeNow("handshake: " + ec.message());
                             self->onHello();
                         }));
    }

    void onHello() {
        auto o = owner.lock();
        if (!o) return closeNow("data plane gone");
        const uint32_t magic = loadLE32(hello);
        const uint16_t version = static_cast<uint16_t>(hello[4] | (hello[5] << 8));
        Uuid sender, to;
        std::copy(hello + 6, hello + 22, sender.bytes.begin());
        std::copy(hello + 22, hello + 38, to.bytes.begin());
        bool good = magic == kDataMagic && version == protocol::kProtocolVersion;
        bool enabled = false;
        {
            std::lock_guard lock(o->mu);  // closePeer reads `from` under this lock
            from = sender;
            good = good && to == o->self && !o->self.isNil();
            enabled = o->sameHost;
        }
        const SameHostIdentity remote = decodeIdentity(hello + 38);
        sameHost = enabled && good && hello[38] == 1 && sameHostReachable(remote);
        senderPid = remote.pid;
        senderInProcess = sameHost && senderPid == static_cast<uint32_t>(::getpid());
        if (sameHost) PCCL_LOG(Debug, "data connection from " << from.shortStr() << " copies same-host (pid " << senderPid << ")");
        storeLE32(ack, kDataMagic);
        ack[4] = good ? 1 : 0;
        ack[5] = sameHost ? 1 : 0;
        ack[6] = ack[7] = 0;
        auto self = shared_from_this();
        asio::async_write(socket, asio::buffer(ack), asio::bind_executor(strand, [self, good](const asio::error_code &ec, size_t) {
                              if (ec) return self->closeNow("handshake: " + ec.message());
                              if (!good) return self->closeNow("rejected data connection: bad hello");
                              self->readHeader();
                          }));
    }

    void readHeader() {
        auto self = shared_from_this();
        const size_t n = kSegmentHeaderBytes + (sameHost ? kRefBytes : 0);
        asio::async_read(socket, asio::buffer(header, n), asio::bind_executor(strand, [self](const asio::error_code &ec, size_t) {
                             if (ec) return self->closeNow(ec == asio::error::eof ? "closed by remote" : ec.message());
                             self->onHeader();
                         }));
    }

    void onHeader() {
        current.seq = loadLE64(header);
        current.offset = loadLE64(header + 8);
        current.bytes = loadLE32(header + 16);
        current.phase = header[20];
        byRef = sameHost && header[21] == 1;
        payloadAddress = byRef ? loadLE64(header + kSegmentHeaderBytes) : 0;
        if ((header[21] && !byRef) || header[22] || header[23] || current.bytes > kMaxSegmentBytes)
            return closeNow("malformed frame header from " + from.shortStr());
        dispatch();
    }

    // Routes the current frame: to its sink, to the parking lot, or to the discard path.
    void dispatch() {
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

    // Same-host: copies the payload out of the sender (on this I/O thread: it runs at memory
    // speed) and acknowledges it. A failed copy (the sender died, or named memory it does not
    // have) fails the frame and closes the connection, as a broken TCP stream would.
    void copyIn(std::shared_ptr<FrameSink> sink, uint8_t *dest) {
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
    void acknowledge() {
        ++consumed;
        if (!ackWriting) writeAck();
    }
    void writeAck() {
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
    void discard(std::shared_ptr<FrameSink> sink = nullptr) {
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

    // Reads the rest of the current payload into `dest` (from byte `got`). A large payload is
    // read in few calls: SO_RCVLOWAT is raised to what is still missing, so the socket wakes
    // this connection when the frame is (nearly) complete, not for every 64 KiB that arrives;
    // the kernel also wakes it when its receive window is about to close, and raising the mark
    // grows the receive buffer to hold it (autotuning stays on). The mark is back at 1 before
    // the next header is read. asio's async_read is not used: it caps each recv at 64 KiB.
    static constexpr size_t kLowatMinFrame = 64 << 10;
    static constexpr size_t kLowatMax = 4 << 20;
    int lowat = 1;
    void setLowat(size_t v) {
        const int want = static_cast<int>(std::max<size_t>(1, std::min(v, kLowatMax)));
        if (want == lowat) return;
        lowat = want;
        ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVLOWAT, &want, sizeof want);
    }

    using ReadDone = std::function<void(InConn &, const asio::error_code &)>;
    void readInto(uint8_t *dest, size_t got, ReadDone done) {
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

    void resume() {
        auto self = shared_from_this();
        asio::post(strand, [self] {
            if (!self->closed) self->dispatch();
        });
    }

    void closeNow(const std::string &reason) {
        if (closed) return;
        closed = true;
        PCCL_LOG(Debug, "data connection from " << from.shortStr() << " closed: " << reason);
        asio::error_code ec;
        socket.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
        socket.close(ec);
    }

    void close(const std::string &reason) {
        auto self = shared_from_this();
        asio::post(strand, [self, reason] { self->closeNow(reason); });
    }
};

void DataPlane::Impl::acceptLoop() {
    // Handlers capture the raw Impl: they only run on the I/O threads, which are joined before
    // the Impl is destroyed (pending handlers are then destroyed with the io_context, unrun).
    auto strand = asio::make_strand(io);
    Impl *self = this;
    acceptor.async_accept(strand, [self, strand](const asio::error_code &ec, asio::ip::tcp::socket socket) {
        if (ec == asio::error::operation_aborted || !self->acceptor.is_open()) return;
        if (!ec) {
            tuneSocket(socket);
            auto conn = std::make_shared<InConn>(std::move(socket), self->weak_from_this(), strand);
            {
                std::lock_guard lock(self->mu);
                std::erase_if(self->incoming, [](auto &w) { return w.expired(); });
                self->incoming.push_back(conn);
            }
            conn->startHandshake();
        }
        self->acceptLoop();
    });
}

void PendingConnect::finish(Status s) {
    std::vector<std::function<void(Status)>> callbacks;
    {
        std::lock_guard lock(mu);
        if (finished) return;
        if (s.ok() && --left > 0) return;
        finished = true;
        callbacks = std::move(done);
    }
    {
        std::lock_guard lock(owner->mu);
        auto it = owner->connecting.find(peer);
        if (it != owner->connecting.end() && it->second.get() == this) owner->connecting.erase(it);
    }
    timer->cancel();
    if (!s.ok()) {
        for (auto &c : conns) c->close(s.message());
    }
    for (auto &cb : callbacks) cb(s);
}

void DataPlane::Impl::removeOut(const Uuid &peer, const OutConn *c) {
    std::lock_guard lock(mu);
    auto it = pools.find(peer);
    if (it == pools.end()) return;
    std::erase_if(it->second, [c](auto &p) { return p.get() == c; });
    if (it->second.empty()) pools.erase(it);
}

DataPlane::DataPlane(int ioThreads) : impl_(std::make_shared<Impl>(std::max(1, ioThreads))) {}

DataPlane::~DataPlane() {
    closeAll("data plane shut down");
    {
        asio::error_code ec;
        asio::post(impl_->io, [impl = impl_.get()] {
            asio::error_code e;
            impl->acceptor.close(e);
        });
    }
    impl_->work.reset();
    if (!impl_->threads.empty()) {
        // Give the close handlers a moment to run, then stop the loop.
        asio::post(impl_->io, [impl = impl_.get()] { impl->io.stop(); });
        for (auto &t : impl_->threads) t.join();
    }
    std::lock_guard lock(impl_->mu);
    impl_->pools.clear();
    impl_->parked.clear();
    impl_->sinks.clear();
    impl_->incoming.clear();
    impl_->connecting.clear();
}

Status DataPlane::listen(uint16_t port) {
    asio::error_code ec;
    auto &acc = impl_->acceptor;
    acc.open(asio::ip::tcp::v6(), ec);
    if (!ec) {
        acc.set_option(asio::ip::v6_only(false), ec);
        acc.set_option(asio::socket_base::reuse_address(true), ec);
        acc.bind({asio::ip::tcp::v6(), port}, ec);
    }
    if (ec) {
        asio::error_code ignored;
        acc.close(ignored);
        ec.clear();
        acc.open(asio::ip::tcp::v4(), ec);
        if (!ec) acc.set_option(asio::socket_base::reuse_address(true), ec);
        if (!ec) acc.bind({asio::ip::tcp::v4(), port}, ec);
    }
    if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return {pcclInternalError, "cannot listen for peers on port " + std::to_string(port) + ": " + ec.message()};
    impl_->acceptLoop();
    for (int i = 0; i < impl_->nThreads; ++i) impl_->threads.emplace_back([impl = impl_.get()] { impl->io.run(); });
    return {};
}

uint16_t DataPlane::port() const {
    asio::error_code ec;
    return impl_->acceptor.local_endpoint(ec).port();
}

void DataPlane::setCongestionControl(const std::string &mode) {
    std::lock_guard lock(impl_->mu);
    impl_->congestion = mode;
}

void DataPlane::setSameHost(bool on) {
    std::lock_guard lock(impl_->mu);
    impl_->sameHost = on;
}

namespace {
DataPlane::ConnectionCounts countConnections(const std::vector<std::shared_ptr<OutConn>> &conns) {
    DataPlane::ConnectionCounts n;
    for (auto &c : conns) {
        if (c->dead) continue;
        ++n.live;
        n.sameHost += c->sameHost ? 1 : 0;
    }
    return n;
}
} // namespace

int DataPlane::sameHostConnections(const Uuid &peer) const {
    std::vector<std::shared_ptr<OutConn>> pool;
    {
        std::lock_guard lock(impl_->mu);
        if (auto it = impl_->pools.find(peer); it != impl_->pools.end()) pool = it->second;
    }
    return countConnections(pool).sameHost;
}

DataPlane::ConnectionCounts DataPlane::connectionCounts() const {
    std::vector<std::shared_ptr<OutConn>> pool;
    {
        std::lock_guard lock(impl_->mu);
        for (auto &[peer, conns] : impl_->pools) pool.insert(pool.end(), conns.begin(), conns.end());
    }
    return countConnections(pool);
}

void DataPlane::setSelf(const Uuid &self) {
    std::lock_guard lock(impl_->mu);
    impl_->self = self;
}

void DataPlane::connect(const Uuid &peer, const protocol::NetAddr &addr, int n, std::chrono::milliseconds timeout,
                        std::function<void(Status)> done) {
    int have = 0;
    Uuid self;
    std::string cc;
    bool offer = false;
    {
        std::lock_guard lock(impl_->mu);
        cc = impl_->congestion;
        offer = impl_->sameHost;
        auto it = impl_->pools.find(peer);
        if (it != impl_->pools.end()) {
            for (auto &c : it->second) have += c->dead ? 0 : 1;
        }
        self = impl_->self;
    }
    const int missing = n - have;
    if (missing <= 0) {
        asio::post(impl_->io, [done] { done({}); });
        return;
    }
    std::shared_ptr<PendingConnect> pending;
    {
        // One attempt per peer at a time: later callers wait for the attempt in progress.
        std::lock_guard lock(impl_->mu);
        if (auto it = impl_->connecting.find(peer); it != impl_->connecting.end()) {
            std::lock_guard plock(it->second->mu);
            if (!it->second->finished) {
                it->second->done.push_back(std::move(done));
                return;
            }
        }
        pending = std::make_shared<PendingConnect>();
        pending->left = missing;
        pending->done.push_back(std::move(done));
        pending->owner = impl_.get();
        pending->peer = peer;
        impl_->connecting[peer] = pending;
    }
    pending->timer = std::make_shared<asio::steady_timer>(impl_->io, timeout);
    pending->timer->async_wait([pending, peer, addr](const asio::error_code &ec) {
        if (!ec) pending->finish({pcclRankConnectionFailed, "connecting to peer " + peer.shortStr() + " at " + addr.str() + " timed out"});
    });
    const auto endpoint = toEndpoint(addr);
    for (int i = 0; i < missing; ++i) {
        auto conn = std::make_shared<OutConn>(impl_->io, impl_, peer);
        pending->conns.push_back(conn);
        auto hello = std::make_shared<std::array<uint8_t, kHelloBytes>>();
        storeLE32(hello->data(), kDataMagic);
        (*hello)[4] = static_cast<uint8_t>(protocol::kProtocolVersion & 0xff);
        (*hello)[5] = static_cast<uint8_t>(protocol::kProtocolVersion >> 8);
        std::copy(self.bytes.begin(), self.bytes.end(), hello->begin() + 6);
        std::copy(peer.bytes.begin(), peer.bytes.end(), hello->begin() + 22);
        encodeIdentity(localSameHostIdentity(), offer, hello->data() + 38);
        auto ack = std::make_shared<std::array<uint8_t, kAckBytes>>();
        Impl *impl = impl_.get();
        auto fail = [pending, peer, addr](const std::string &what, const asio::error_code &ec) {
            pending->finish({pcclRankConnectionFailed,
                             "cannot connect to peer " + peer.shortStr() + " at " + addr.str() + ": " + what + ": " + ec.message()});
        };
        asio::post(conn->strand, [=] {
            conn->socket.async_connect(endpoint, asio::bind_executor(conn->strand, [=](const asio::error_code &ec) {
                if (ec) return fail("connect", ec);
                tuneSocket(conn->socket);
                setCongestion(conn->socket, endpoint, cc);
                asio::async_write(conn->socket, asio::buffer(*hello), asio::bind_executor(conn->strand, [=](const asio::error_code &ec2, size_t) {
                    if (ec2) return fail("hello", ec2);
                    asio::async_read(conn->socket, asio::buffer(*ack), asio::bind_executor(conn->strand, [=](const asio::error_code &ec3, size_t) {
                        if (ec3) return fail("handshake", ec3);
                        if (loadLE32(ack->data()) != kDataMagic || (*ack)[4] != 1 || (*ack)[5] > (offer ? 1 : 0))
                            return fail("handshake", asio::error::access_denied);
                        conn->sameHost = (*ack)[5] == 1;
                        {
                            std::lock_guard lock(impl->mu);
                            impl->pools[peer].push_back(conn);
                        }
                        conn->watchForClose();
                        pending->finish({});
                    }));
                }));
            }));
        });
    }
}

void DataPlane::send(const Uuid &peer, const SegmentHeader &h, const void *data, SendDone done) {
    std::shared_ptr<OutConn> best;
    {
        std::lock_guard lock(impl_->mu);
        auto it = impl_->pools.find(peer);
        if (it != impl_->pools.end()) {
            for (auto &c : it->second) {
                if (c->dead) continue;
                if (!best || c->queuedBytes.load() < best->queuedBytes.load()) best = c;
            }
        }
    }
    if (!best) {
        done(false, "no data connection to peer " + peer.shortStr());
        return;
    }
    OutConn::Item item;
    encodeHeader(h, item.header);
    item.byRef = best->sameHost && h.bytes >= kRefMinBytes;
    item.header[21] = item.byRef ? 1 : 0;
    storeLE64(item.header + kSegmentHeaderBytes, item.byRef ? reinterpret_cast<uintptr_t>(data) : 0);
    item.data = data;
    item.bytes = h.bytes;
    item.done = std::move(done);
    best->enqueue(std::move(item));
}

void DataPlane::registerSink(uint64_t seq, std::shared_ptr<FrameSink> sink) {
    std::vector<std::shared_ptr<InConn>> wake;
    {
        std::lock_guard lock(impl_->mu);
        impl_->sinks[seq] = std::move(sink);
        impl_->highestSeq = std::max(impl_->highestSeq, seq);
        auto end = impl_->parked.upper_bound(impl_->highestSeq);
        for (auto it = impl_->parked.begin(); it != end; ++it) wake.push_back(it->second);
        impl_->parked.erase(impl_->parked.begin(), end);
    }
    for (auto &c : wake) c->resume();
}

void DataPlane::unregisterSink(uint64_t seq) {
    std::lock_guard lock(impl_->mu);
    impl_->sinks.erase(seq);
}

void DataPlane::cancelSends(uint64_t seq) {
    std::vector<std::shared_ptr<OutConn>> outs;
    {
        std::lock_guard lock(impl_->mu);
        for (auto &[_, pool] : impl_->pools)
            for (auto &c : pool) outs.push_back(c);
    }
    for (auto &c : outs) c->cancel(seq);
}

void DataPlane::closePeer(const Uuid &peer, const std::string &reason) {
    std::vector<std::shared_ptr<OutConn>> outs;
    std::vector<std::shared_ptr<InConn>> ins;
    {
        std::lock_guard lock(impl_->mu);
        if (auto it = impl_->pools.find(peer); it != impl_->pools.end()) {
            outs = it->second;
            impl_->pools.erase(it);
        }
        for (auto &w : impl_->incoming)
            if (auto c = w.lock(); c && c->from == peer) ins.push_back(c);
    }
    for (auto &c : outs) c->close(reason);
    for (auto &c : ins) c->close(reason);
}

void DataPlane::closeAll(const std::string &reason) {
    std::vector<std::shared_ptr<OutConn>> outs;
    std::vector<std::shared_ptr<InConn>> ins;
    {
        std::lock_guard lock(impl_->mu);
        for (auto &[_, pool] : impl_->pools)
            for (auto &c : pool) outs.push_back(c);
        impl_->pools.clear();
        for (auto &w : impl_->incoming)
            if (auto c = w.lock()) ins.push_back(c);
        impl_->incoming.clear();
        impl_->parked.clear();
    }
    for (auto &c : outs) c->close(reason);
    for (auto &c : ins) c->close(reason);
}

} // namespace pccl::transport

#if defined(PCCL_TSAN)
// A TSan build of pccl records each send's read itself, when the send is handed to the kernel
// (tsan.h); the interceptor would record it again after the syscall, out of order. Options in
// TSAN_OPTIONS still apply on top. (Control-plane sends lose the interceptor's record too.)
extern "C" __attribute__((visibility("default"))) const char *__tsan_default_options() {
    return "intercept_send=0";
}
#endif
