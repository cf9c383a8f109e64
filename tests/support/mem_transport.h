// An in-memory transport::FrameTransport for the collectives: N peers of one process whose frames
// move through memory, delivered by a seeded scheduler that the test drives, with faults injected
// per frame. The ring all-reduce (and any transport::DataOperation) runs over it unchanged, so its
// fault paths and its segment striping are tested without processes or sockets.
//
// The model is what the data plane does over TCP (transport/frame_transport.h):
// - A pool of connections per (sender, receiver), opened with connect(). send() queues a frame in
//   the pool's shared queue (an `ahead` one behind the other `ahead` ones, before the rest), or
//   fails it inline when the pool has no live connection; a
//   connection with nothing queued of its own takes the queue's head when the scheduler runs its
//   write event (which connection does is the scheduler's choice: any frame may go on any
//   connection, and a stalled or delayed connection leaves the rest to the others). When the
//   pool's last connection breaks, the frames no connection took fail with it.
// - A connection is a byte stream. Its write event copies the head frame from the sender's memory
//   into the stream (the 24-byte wire header of data_wire.h, then the payload) and completes the
//   send. Its read events decode the header with the data plane's own decoder, route the frame to
//   the receiver's sink (registered, parked until it registers, or discarded, as DataPlane does)
//   and copy the payload into the memory beginFrame named. A corrupted header is thus judged as
//   the data plane judges it, and a corrupted length desynchronises the stream as on a socket.
// - A connection breaks as a socket does: the end that breaks it fails its queued sends; the
//   reader of a stream whose sender broke reads what was written, then fails a frame it is in the
//   middle of; a receiver that closes (malformed header, a sink's protocol error, closePeer) drops
//   the unread bytes. Every close is recorded (closes()), with the reason the closing end gave.
//
// Scheduling: the events are the write of a connection's head frame, the reading of a header or
// a payload, the end of a broken stream, and posted callbacks (sends failed by a cancel or a
// close, a read failed by a close). step() runs one ready event chosen by the seeded RNG (Order::
// Random: frames on different connections are reordered, frames on one connection never), or the
// oldest (Order::Fifo). The same seed and the same calls replay the same schedule.
//
// Threads: step()/run() from one thread at a time, or runConcurrently(k) (k threads; at most one
// event per connection at a time, as a strand does). The FrameTransport methods and the fault
// controls may be called from any thread, including from inside callbacks. No lock of the network
// is held while a callback (sink, SendDone) runs; the fault rule runs under it (see FaultRule).
#pragma once
#include <chrono>
#include <cstdint>
#include <deque>
#include <list>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <condition_variable>
#include <string>
#include <vector>

#include "transport/frame_transport.h"
#include "util/uuid.h"

namespace pccl_test {

// One frame as the fault rule sees it, when a connection takes it from the pool's queue.
struct MemFrameInfo {
    pccl::Uuid from, to;
    int connection = 0;  // the index in the pool of the connection that took it
    uint64_t index = 0;  // frames queued from `from` to `to` before this one (over the whole pool)
    pccl::transport::SegmentHeader header;
};

// What happens to one frame. Byte positions count in the frame as it travels: the 24-byte header,
// then the payload.
struct MemFault {
    enum class Kind {
        None,
        Delay,     // written only after `steps` more events have run (its connection waits too)
        Corrupt,   // written after `mutate` changed its bytes
        Drop,      // `keep` bytes are written, the send completes, then the connection breaks (a lost
                   // TCP connection: the receiver reads those bytes, then sees the stream end)
        FailSend,  // `keep` bytes are written, the send fails, and the connection breaks
        Stall,     // `keep` bytes are written, then the connection writes nothing more and its send
                   // never completes (a sender stopped mid-frame), until the connection is closed
    };
    Kind kind = Kind::None;
    size_t steps = 0;
    size_t keep = 0;
    std::function<void(std::vector<uint8_t> &frame)> mutate;
    std::string why = "injected fault";

    static MemFault delay(size_t steps);
    static MemFault flipBits(size_t at, uint8_t mask);  // frame[at] ^= mask (no-op past the end)
    static MemFault setBits(size_t at, uint8_t mask);   // frame[at] |= mask
    static MemFault drop(size_t keep = 0);
    static MemFault failSend(size_t keep = 0);
    static MemFault stall(size_t keep);
};

// Decides each frame's fate when a connection takes it. Runs under the network's lock: it must not call
// the network or a transport.
using MemFaultRule = std::function<MemFault(const MemFrameInfo &)>;

class MemNetwork {
public:
    enum class Order { Random, Fifo };

    explicit MemNetwork(uint64_t seed, Order order = Order::Random);
    ~MemNetwork();  // drops every pending event unrun
    MemNetwork(const MemNetwork &) = delete;
    MemNetwork &operator=(const MemNetwork &) = delete;

    // Adds a peer and returns its transport (owned by the network, valid as long as it is).
    pccl::transport::FrameTransport &addPeer(const pccl::Uuid &id);
    pccl::transport::FrameTransport &transport(const pccl::Uuid &id);
    // Opens connections from `from` to `to` until `n` of them are live (DataPlane::connect).
    void connect(const pccl::Uuid &from, const pccl::Uuid &to, int n);

    // ---- scheduling
    // Runs one ready event; false when none is ready (a delayed frame counts as ready: time skips
    // ahead to it).
    bool step();
    // Steps until no event is ready or `maxSteps` ran; returns how many ran.
    size_t run(size_t maxSteps = SIZE_MAX);
    // `threads` threads step concurrently until no event is ready and none is running, or the
    // deadline passes (then false).
    bool runConcurrently(int threads, std::chrono::milliseconds deadline);
    uint64_t steps() const;

    // ---- faults
    void setFaultRule(MemFaultRule rule);
    // A frozen peer (SIGSTOP) neither writes, reads nor runs posted callbacks until thawed.
    void freeze(const pccl::Uuid &peer);
    void thaw(const pccl::Uuid &peer);
    // A killed peer: frozen for good, and every connection to and from it breaks.
    void kill(const pccl::Uuid &peer, const std::string &reason);

    // ---- what happened
    struct Close {
        pccl::Uuid from, to;  // the connection's sender and receiver
        int connection;
        std::string reason;   // as the end that closed it gave it
    };
    std::vector<Close> closes() const;
    // Frames written per connection of the pool from `from` to `to`, by connection index.
    std::vector<uint64_t> framesWritten(const pccl::Uuid &from, const pccl::Uuid &to) const;
    // Frames queued from `from` to `to` so far (failed ones too; not the sends refused at once for
    // want of a live connection).
    uint64_t framesQueued(const pccl::Uuid &from, const pccl::Uuid &to) const;
    // Pending work in words, for failure messages.
    std::string trace() const;

private:
    struct Conn;
    struct Peer;
    struct Posted;
    struct Event;
    class Endpoint;

    // FrameTransport calls of peer `self` (Endpoint forwards them).
    void send(const pccl::Uuid &self, const pccl::Uuid &peer, const pccl::transport::SegmentHeader &h, const void *data,
              pccl::transport::SendDone done, bool ahead);
    void cancelSends(const pccl::Uuid &self, uint64_t seq);
    void closePeer(const pccl::Uuid &self, const pccl::Uuid &peer, const std::string &reason);
    void registerSink(const pccl::Uuid &self, uint64_t seq, std::shared_ptr<pccl::transport::FrameSink> sink);
    void unregisterSink(const pccl::Uuid &self, uint64_t seq);
    int connections(const pccl::Uuid &self, const pccl::Uuid &peer) const;
    int liveLocked(const pccl::Uuid &from, const pccl::Uuid &to) const;
    // `c` (nothing queued of its own) takes the head of its pool's shared queue; the fault rule runs.
    void takeLocked(Conn &c);

    std::optional<Event> pickLocked();
    void execute(std::unique_lock<std::mutex> &lock, const Event &e);
    void write(std::unique_lock<std::mutex> &lock, Conn &c);
    void readHeader(std::unique_lock<std::mutex> &lock, Conn &c);
    void dispatch(std::unique_lock<std::mutex> &lock, Conn &c);
    void readPayload(std::unique_lock<std::mutex> &lock, Conn &c);
    // The sender side breaks: queued sends fail; the reader sees the stream end after the bytes
    // already written.
    void breakSenderLocked(Conn &c, const std::string &reason);
    // Both ends close at once (by `closer`): queued sends fail, unread bytes are lost, a frame in
    // the middle of being read fails.
    void closeLocked(Conn &c, const std::string &senderWhy, const std::string &receiverWhy, const std::string &logged);
    void postLocked(const pccl::Uuid &owner, std::function<void()> fn);
    Peer &peerLocked(const pccl::Uuid &id);
    size_t available(const Conn &c) const;
    uint64_t nextRandom();

    mutable std::mutex mu_;
    std::condition_variable cv_;
    uint64_t rng_;
    const Order order_;
    uint64_t step_ = 0, ticket_ = 0;
    int executing_ = 0;
    MemFaultRule rule_;
    std::map<pccl::Uuid, std::unique_ptr<Peer>> peers_;
    std::vector<std::unique_ptr<Conn>> conns_;  // never shrinks: connections are marked closed
    std::map<std::pair<pccl::Uuid, pccl::Uuid>, uint64_t> queued_;
    struct Frame;
    std::map<std::pair<pccl::Uuid, pccl::Uuid>, std::list<Frame>> shared_;  // per pool: not yet taken
    std::deque<std::unique_ptr<Posted>> posted_;
    std::vector<Close> closes_;
};

} // namespace pccl_test
