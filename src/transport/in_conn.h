// One incoming data connection: accepted by the data plane's listener, it answers the hello and
// then reads frames, routing each to the sink of its operation (data_plane.h describes parking
// and discarding). Internal to the data plane (data_plane_impl.h).
//
// Threads: resume and close may be called from any thread (they post to the strand); every
// other method runs on the strand. `from` is written under the owner's mutex (closePeer reads it
// there) before any frame is read.
#pragma once
#include <asio.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "transport/conn_stats.h"
#include "transport/data_plane_impl.h"
#include "transport/data_wire.h"
#include "transport/secure_channel.h"

namespace pccl::transport {

struct InConn : std::enable_shared_from_this<InConn> {
    InConn(asio::ip::tcp::socket s, std::weak_ptr<DataPlane::Impl> owner, Strand strand)
        : strand(strand), socket(std::move(s)), owner(std::move(owner)) {}

    // Authenticates the opener (a run with a secret), reads the hello, answers it, and starts
    // reading frames if it was accepted; all within kHandshakeDeadline.
    void startHandshake();
    // Dispatches the parked current frame again (its operation has registered).
    void resume();
    void close(const std::string &reason);

    Strand strand;
    asio::ip::tcp::socket socket;
    std::weak_ptr<DataPlane::Impl> owner;
    Uuid from;
    ConnStats stats;  // PCCL_CONN_STATS=1 only

private:
    // error: empty when the payload arrived whole (and, with a channel, authentic).
    using ReadDone = std::function<void(InConn &, const std::string &error)>;
    void onFirst();
    void readHello(size_t got);
    void onHello();
    void readHeader();
    void onHeader();
    void dispatch();
    void copyIn(std::shared_ptr<FrameSink> sink, uint8_t *dest);
    void acknowledge();
    void writeAck();
    void discard(std::shared_ptr<FrameSink> sink = nullptr);
    void setLowat(size_t v);
    void readInto(uint8_t *dest, size_t got, ReadDone done);
    void readTag(ReadDone done);
    void closeNow(const std::string &reason);
    size_t tagBytes() const { return channel ? security::kTagBytes : 0; }

    // A run with a secret: the record layer, and the sender the handshake proved.
    ChannelPtr channel;
    Uuid authenticated;
    std::shared_ptr<asio::steady_timer> deadline;
    uint8_t first[4];
    uint8_t hello[kDataHelloBytes + security::kTagBytes];
    std::array<uint8_t, security::kServerHelloBytes> refusal{};
    std::vector<uint8_t> ack;
    uint8_t header[kMaxFrameHeaderBytes + security::kTagBytes];
    uint8_t tag[security::kTagBytes];
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
    uint64_t ackSent = 0;  // the total in the acknowledgement being written
    bool ackWriting = false;
    uint8_t ackOut[kConsumedBytes + security::kTagBytes];
    static constexpr size_t kDiscardChunk = 64 << 10;  // a discarded payload is read in steps of this

    // A large payload is read in few calls: SO_RCVLOWAT is raised to what is still missing
    // (readInto), up to kLowatMax, for frames of at least kLowatMinFrame.
    static constexpr size_t kLowatMinFrame = 64 << 10;
    static constexpr size_t kLowatMax = 4 << 20;
    int lowat = 1;
};

} // namespace pccl::transport
