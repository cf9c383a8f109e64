// A control connection carrying length-prefixed protocol frames over TCP (see protocol/codec.h),
// through the record layer of a run secret when one is set (docs/security.md): each frame's
// `u32 length` stays in the clear as associated data, its type and payload are one AEAD record.
// Owned by one single-threaded io_context: start() and accept() run on that thread; send() and
// close() may be called from any thread (they post to it). Handlers run on the io thread. A
// malformed, oversized or unauthentic frame closes this connection with a reason; it never
// throws out of the io loop. No buffer is sized by a length field: a frame's buffer grows with
// the bytes that actually arrive.
#pragma once
#include <asio.hpp>

#include <deque>
#include <functional>
#include <memory>
#include <atomic>
#include <string>
#include <vector>

#include "protocol/codec.h"
#include "transport/secure_channel.h"

namespace pccl::transport {

// The largest first frame an accepting side reads before it knows who is talking (a Hello is
// under 100 bytes), in a run without a secret.
inline constexpr uint32_t kMaxFirstFrame = 4096;
// Only a Rejoin may be larger (it lists its group's ring: 35 bytes a member, 4 KiB at about 110
// members): up to this much (about 29,000 members), while the accepting side's
// FirstFrameBudget has room for the whole frame.
inline constexpr uint32_t kMaxFirstRejoinFrame = 1u << 20;

// The bytes that first frames larger than kMaxFirstFrame may hold at once across one accepting
// side's connections (the master: 64 MiB). A frame that does not fit is refused (its peer
// retries with backoff); what a frame took is given back when it was read or its connection
// closed. Any thread.
class FirstFrameBudget {
public:
    explicit FirstFrameBudget(size_t bytes) : left_(bytes) {}
    bool take(size_t n);
    void give(size_t n) { left_.fetch_add(n); }
    size_t left() const { return left_.load(); }

private:
    std::atomic<size_t> left_;
};
inline constexpr size_t kFirstFrameBudgetBytes = 64u << 20;

protocol::NetAddr toNetAddr(const asio::ip::tcp::endpoint &ep);
asio::ip::tcp::endpoint toEndpoint(const protocol::NetAddr &a);
void tuneSocket(asio::ip::tcp::socket &s);  // TCP_NODELAY, keepalive

class FramedConnection : public std::enable_shared_from_this<FramedConnection> {
public:
    using MessageHandler = std::function<void(protocol::ControlMessage &&)>;
    using CloseHandler = std::function<void(const std::string &reason)>;

    // `channel`: the record layer the opener established (ControlClient), or none.
    explicit FramedConnection(asio::ip::tcp::socket socket, ChannelPtr channel = nullptr);
    // The opener's side: reads frames.
    void start(MessageHandler onMessage, CloseHandler onClose);
    // The accepting side (the master). With `runKey`: the handshake first, within
    // kHandshakeDeadline; a plaintext frame instead gets one plaintext Reject
    // (pcclAuthenticationFailed) and the connection closes. Without: a client that offers a
    // handshake is told this side has no secret; the first frame may hold at most
    // kMaxFirstFrame bytes (a Hello), or kMaxFirstRejoinFrame if it is a Rejoin and `budget` has
    // room for it (no budget: kMaxFirstFrame for every type). onReady runs once the connection is authenticated (at
    // once in an open run), before any message; a connection closed before that reports its
    // reason to onRefused, never to onClose.
    void accept(std::optional<security::Key> runKey, std::function<void()> onReady,
                std::function<void(const std::string &)> onRefused, MessageHandler onMessage, CloseHandler onClose,
                std::shared_ptr<FirstFrameBudget> budget = nullptr);
    void send(protocol::ControlMessage m);
    void close(const std::string &reason);
    // Closes at once; io thread only (used when the loop is about to stop).
    void closeNow(const std::string &reason);
    // Sends m, then closes once it is written (for Reject/Kicked).
    void sendAndClose(protocol::ControlMessage m, const std::string &reason);
    const protocol::NetAddr &remote() const { return remote_; }

private:
    void readLength();
    void onLength();
    void readFirstType(uint32_t size);
    void releaseBudget();
    void readBody(size_t got);
    void onBody();
    void queueFrame(const protocol::ControlMessage &m);
    void writeNext();

    asio::ip::tcp::socket socket_;
    protocol::NetAddr remote_;
    MessageHandler onMessage_;
    CloseHandler onClose_;
    ChannelPtr channel_;
    bool ready_ = true;  // false until accept() has authenticated the connection
    std::function<void(const std::string &)> onRefused_;
    std::shared_ptr<asio::steady_timer> deadline_;
    uint32_t maxFrame_ = protocol::kMaxControlFrame;
    std::shared_ptr<FirstFrameBudget> budget_;  // an open run's first frame may be a large Rejoin
    size_t budgetHeld_ = 0;
    uint8_t length_[4];
    std::vector<uint8_t> body_;  // type, payload and, with a channel, the tag
    size_t bodySize_ = 0;
    std::deque<std::vector<uint8_t>> outbox_;
    bool writing_ = false;
    bool closed_ = false;
    bool closeAfterWrite_ = false;
    std::string closeReason_;
};

} // namespace pccl::transport
