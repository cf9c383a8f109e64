// What an operation that moves data (transport::DataOperation: the ring all-reduce, a
// shared-state round) needs from the data plane, and nothing more: send a frame of an operation
// to a peer, stop an operation's queued sends, cut a peer off, and have the frames of an
// operation handed to its FrameSink. DataPlane implements it over TCP and same-host copies;
// tests/support/mem_transport.h implements it in memory, with faults, so the collectives are
// tested without processes or sockets. Connecting pools is not part of it (the owner of an
// operation connects, e.g. DataPlane::connect, then starts the operation).
//
// Delivery, for every implementation:
// - Frames to a peer travel over a pool of connections. On one connection they arrive whole and
//   in the order sent; frames on different connections of a pool arrive in any order.
// - A connection breaks when the link is lost, when either end closes it (closePeer), or when
//   its receiver finds a malformed frame (a header that does not decode, or a sink's protocol
//   error). Then: the sends still queued on it fail; a frame whose payload was being received
//   gets onPayloadFailed; frames written but not yet read are lost. A receiver between two frames
//   is told nothing: its operation notices through its own sends or its progress watchdog.
// - Nothing here blocks. Callbacks (FrameSink, SendDone) run on the transport's threads, never
//   under a lock of the transport; the one exception is SendDone inline in send(), below.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "transport/data_wire.h"
#include "util/uuid.h"

namespace pccl::transport {

// Receives the frames of one operation; called on transport threads, concurrently for different
// connections, one frame at a time per connection. After beginFrame returns a destination,
// exactly one of onPayload or onPayloadFailed follows for that frame.
class FrameSink {
public:
    virtual ~FrameSink() = default;
    // Returns where the payload goes (h.bytes of writable memory); or nullptr with *error set (a
    // protocol error: the connection is closed); or nullptr with *error empty (the payload is
    // read and dropped, e.g. for an operation that was aborted).
    virtual void *beginFrame(const SegmentHeader &h, const Uuid &from, std::string *error) = 0;
    virtual void onPayload(const SegmentHeader &h) = 0;
    virtual void onPayloadFailed(const SegmentHeader &h, const std::string &why) = 0;
    // After the payload of a frame this sink chose to drop (nullptr, no error) was read whole.
    virtual void onDiscarded(const SegmentHeader &, const Uuid & /*from*/) {}
};

// A send's end: ok when its payload has left the caller's memory (which may then be reused; the
// frame can still be lost if its connection breaks later); not ok, with the reason, when it was
// not sent (no connection, the connection broke, cancelled) and will not be received whole.
using SendDone = std::function<void(bool ok, const std::string &why)>;

class FrameTransport {
public:
    virtual ~FrameTransport() = default;

    // Queues a frame of operation h.seq to `peer`. The frames to a peer wait in one queue per pool
    // and each goes to whichever connection of the pool has room first (not to a connection
    // chosen when it is queued: a slow connection takes fewer frames, and every connection stays
    // busy until the queue is empty; docs/design.md, Segment scheduling). Any thread;
    // returns at once. `data` (h.bytes) must stay valid and unchanged until `done` runs; `done`
    // runs exactly once, on a transport thread, or inline before send returns when there is no
    // live connection to `peer` (so the caller must not hold a lock that `done` takes).
    // `ahead`: the frame goes before every frame queued without it (a ring forward, which the
    // peers downstream wait for, before this peer's own data, which nobody waits for yet).
    virtual void send(const Uuid &peer, const SegmentHeader &h, const void *data, SendDone done, bool ahead) = 0;
    void send(const Uuid &peer, const SegmentHeader &h, const void *data, SendDone done) {
        send(peer, h, data, std::move(done), false);
    }
    // How many connections to `peer` carry frames at once (its live ones, at most 16 of a larger
    // pool; 0: none), so that an operation can cut its data into enough frames to keep all of
    // them busy; 1 for a peer on this host (loopback or same-host copies), where smaller frames
    // only cost CPU. Any thread.
    virtual int connections(const Uuid &peer) const = 0;
    // Fails (`done` with "cancelled") every queued frame of operation `seq` not yet started; a
    // frame partly written completes normally, so the streams stay in step (its receiver drops
    // it). Any thread; returns at once, the callbacks follow on transport threads.
    virtual void cancelSends(uint64_t seq) = 0;
    // Closes every connection to and from `peer` (a peer removed from the run), with the effects
    // listed above; later sends to it fail at once until a pool is connected again. Any thread;
    // returns at once, the callbacks follow on transport threads.
    virtual void closePeer(const Uuid &peer, const std::string &reason) = 0;
    // Routes the frames of operation `seq` to `sink`, which the transport holds until
    // unregisterSink. A frame of an operation newer than every registered one waits (its
    // connection pauses) until that operation registers; one of an older operation that is not
    // registered is read and discarded. Any thread.
    virtual void registerSink(uint64_t seq, std::shared_ptr<FrameSink> sink) = 0;
    // Later frames of `seq` are discarded; a callback already running on the sink finishes (the
    // sink stays alive until it has). Any thread.
    virtual void unregisterSink(uint64_t seq) = 0;
};

} // namespace pccl::transport
