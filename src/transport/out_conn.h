// One outgoing data connection: this peer opens it (handshake in open()), then takes frames from
// its pool's shared queue as it has room (fill) and writes them in gathered sendmsg calls. Internal to the data plane (data_plane_impl.h).
//
// Threads: pull, cancel and close may be called from any thread (they post to the strand);
// every other method runs on the strand. `queuedBytes`, `dead` and, once the connection is in a
// pool, `sameHost` may be read from any thread.
#pragma once
#include <asio.hpp>

#include <atomic>
#include <list>
#include <memory>
#include <string>

#include "transport/conn_stats.h"
#include "transport/data_plane_impl.h"
#include "transport/data_wire.h"
#include "transport/secure_channel.h"

namespace pccl::transport {

struct OutConn : std::enable_shared_from_this<OutConn> {
    struct Item {
        // frameHeaderBytes(sameHost) of them are sent, followed by the header's tag when sealed
        uint8_t header[kMaxFrameHeaderBytes + security::kTagBytes];
        const void *data;
        size_t bytes;
        SendDone done;
        bool byRef = false;  // sent by reference (same-host connection, large frame)
        // A connection with a record layer: sealed once, just before its first byte is written
        // (the nonce order is the wire order). The encrypted payload and its tag, or (integrity
        // mode) the payload is sent from `data` and `tag` follows it.
        bool sealed = false;
        std::vector<uint8_t> cipher;
        uint8_t tag[security::kTagBytes];
    };
    // What open() needs until the handshake ends.
    struct Handshake {
        std::shared_ptr<PendingConnect> pending;
        protocol::NetAddr addr;  // for messages
        asio::ip::tcp::endpoint endpoint;
        std::string congestion;  // DataPlane::setCongestionControl's mode
        int poolSize = 1;        // of the pool it joins (its share of the unsent bytes)
        bool offer = false;      // the hello offers same-host copies
        std::array<uint8_t, kDataHelloBytes + security::kTagBytes> hello{};
        std::array<uint8_t, kDataAckBytes + security::kTagBytes> ack{};
        std::optional<security::Key> key;  // a run with a secret: the pair key for `peer`
        security::Mode mode = security::Mode::Encrypt;
        void fail(const std::string &what, const asio::error_code &ec) const;
    };

    OutConn(asio::io_context &io, std::weak_ptr<DataPlane::Impl> owner, Uuid peer)
        : strand(asio::make_strand(io)), socket(strand), owner(std::move(owner)), peer(peer) {}

    // Connects, sends the hello and checks the acknowledgement; then joins the owner's pool for
    // `peer` and counts one up in hs->pending, or fails hs->pending. Returns at once.
    void open(std::shared_ptr<Handshake> hs);
    // Takes frames from the pool's shared queue if this connection has room (DataPlane::send
    // wakes an idle connection with it).
    void pull();
    // Fails the queued frames of operation `seq` that have not started (see DataPlane::cancelSends).
    void cancel(uint64_t seq);
    void close(const std::string &reason);

    Strand strand;
    asio::ip::tcp::socket socket;
    std::weak_ptr<DataPlane::Impl> owner;
    Uuid peer;
    // Same-host copies (set by the handshake, before the connection joins the pool): large
    // frames carry the payload's address; such a frame waits in `unacked` until the receiver says
    // it copied it, and only then is the sender's memory free (its `done` runs).
    bool sameHost = false;
    // On this host (same-host copies, or a loopback address): frames are not cut for it
    // (DataPlane::connections). Set before the connection joins its pool.
    bool local = false;
    std::atomic<size_t> queuedBytes{0};
    std::atomic<bool> dead{false};
    bool idle = false;  // waiting for frames: send() wakes it (guarded by the owner's mu)
    ConnStats stats;  // PCCL_CONN_STATS=1 only

private:
    void authenticate(std::shared_ptr<Handshake> hs);
    void sendHello(std::shared_ptr<Handshake> hs);
    void onAck(Handshake &hs);
    void writeNext();
    // Moves frames from the pool's shared queue into `queue` while this connection is one of the
    // pool's senders and has room: at least one when it holds none, more while it holds under
    // kAhead bytes (unacknowledged same-host frames count); with none to take and none held, it
    // waits (idle). Reports its progress to the pool's SenderControl.
    void fill();
    void onWritten(const asio::error_code &ec, size_t n);
    void failQueued(const std::string &why, size_t first = 0);
    void watchForClose();
    void readAcks();
    void completeAcked();
    void failUnacked(const std::string &why);
    void closeNow(const std::string &reason);

    // One sendmsg covers up to kGatherItems queued frames and is not cut at 64 KiB (asio's
    // async_write is: it would cost one syscall, and one wakeup, per 64 KiB). Frames are
    // completed as the bytes the kernel took cover them.
    static constexpr size_t kGatherItems = 16;
    // What a connection takes from the shared queue beyond its first frame: enough small frames
    // for a gathered write; more would tie frames to a connection that may turn out slower
    // (the kernel's send buffer already holds a window of data ahead of the wire).
    static constexpr size_t kAhead = 64 << 10;
    // Encrypted copies made per write, beyond the first item's: bounds the memory of a write.
    static constexpr size_t kSealAhead = 8 << 20;
    size_t tagBytes() const { return channel ? security::kTagBytes : 0; }
    size_t headerWire() const { return frameHeaderBytes(sameHost) + tagBytes(); }
    size_t payloadWire(const Item &it) const { return it.byRef ? 0 : it.bytes + tagBytes(); }
    size_t wireBytes(const Item &it) const { return headerWire() + payloadWire(it); }
    void seal(Item &it);
    void recycle(Item &it);  // keeps a sent frame's cipher buffer for a later one
    // The payload's wire bytes: up to two pieces (integrity mode: the data, then the tag).
    void payloadPieces(const Item &it, asio::const_buffer out[2]) const;

    // A list, not a deque: the write in progress points the kernel at the headers of queued
    // items, and cancelling an item must not move the others (deque::erase in the middle does).
    std::list<Item> queue;
    size_t frontSent = 0;  // bytes of queue.front() (header + payload) on the wire
    size_t inWrite = 0;    // leading items the write in progress covers
    bool writing = false;
    bool closed = false;
    uint64_t ackedSeen = 0;   // TCP_INFO bytes_acked at the last fill() (SenderControl)
    bool wasSender = false;   // one of the pool's senders at the last fill()
    int lowatFor = 0;      // the sender count this socket's TCP_NOTSENT_LOWAT share was set for
    std::list<Item> unacked;
    uint64_t acked = 0;     // frames completed by acknowledgements so far
    uint64_t ackTotal = 0;  // the receiver's latest total (may run ahead of `unacked`: its
                            // acknowledgement can be read before our write's completion handler has run)
    uint8_t ackIn[kConsumedBytes + security::kTagBytes];
    ChannelPtr channel;  // a run with a secret: the record layer (set by the handshake)
    static constexpr size_t kSpareBuffers = 4;
    std::vector<std::vector<uint8_t>> spare;
    uint8_t watchByte = 0;
};

} // namespace pccl::transport
