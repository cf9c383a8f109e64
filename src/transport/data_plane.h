// The peer's data plane: a listener for ring neighbours, pools of outgoing TCP connections per
// remote peer, and a registry routing incoming frames to the operation they belong to.
//
// Frames: a 24-byte little-endian header {u64 seq, u64 offset, u32 bytes, u8 phase, 3 zero
// bytes} then `bytes` of payload (data_wire.h has the whole wire format, same-host copies
// too). The payload is read straight into the memory the operation's FrameSink names (no
// staging copy here). A frame for an operation not registered yet is held
// (its connection pauses) until the operation registers; a frame for an operation already gone
// is discarded. Any malformed input closes that one connection.
//
// Threads: a small pool of I/O threads runs all socket work; each connection is served by its
// own strand, so sink callbacks for different connections run concurrently.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "protocol/messages.h"
#include "security/secret.h"
#include "transport/data_wire.h"
#include "transport/frame_transport.h"
#include "util/status.h"
#include "util/uuid.h"

namespace pccl::transport {

// The FrameTransport of a peer (frame_transport.h has the delivery contract every operation
// relies on), plus what the communicator needs to run it: listening, connecting pools, tuning.
class DataPlane final : public FrameTransport {
public:
    explicit DataPlane(int ioThreads);
    ~DataPlane() override;
    DataPlane(const DataPlane &) = delete;
    DataPlane &operator=(const DataPlane &) = delete;

    // Binds the listener (dual-stack when IPv6 is available) on the first free port of lo..hi, in
    // order (lo = 0: any port; PCCL_PORT_RANGE), and starts the I/O threads. No free port in the
    // range: pcclInvalidArgument naming it. Blocking, local only.
    Status listen(uint16_t lo, uint16_t hi);
    Status listen(uint16_t port) { return listen(port, port); }
    uint16_t port() const;
    // Congestion control of the connections this peer opens (they carry what it sends): "auto"
    // (bbr towards non-loopback peers when the kernel has it, else the system default),
    // "system", or a kernel name such as "cubic". Applies to connections opened afterwards.
    void setCongestionControl(const std::string &mode);
    // Same-host copies (transport/same_host.h): offered on connections this peer opens and
    // accepted on those it receives, where the handshake proves both ends share the machine
    // and network namespace. Default: on unless PCCL_SAME_HOST=off. Applies to connections
    // made afterwards.
    void setSameHost(bool on);
    // How many live outgoing connections to `peer` use same-host copies (for tests and logs).
    int sameHostConnections(const Uuid &peer) const;
    // Live outgoing connections over every pool: how many copy same-host, and how many in all.
    struct ConnectionCounts {
        int sameHost = 0;
        int live = 0;
    };
    ConnectionCounts connectionCounts() const;
    // The identity this peer proves on outgoing connections and expects on incoming ones.
    void setSelf(const Uuid &self);
    // A run with a secret (docs/security.md): every data connection, both ways, runs the
    // handshake and carries AEAD records. Incoming connections are checked with this peer's own
    // admission key (setOwnKey), outgoing ones prove the pair key the master gave for the
    // target (addPeerKeys). A peer revoked (removed from the run) can open no connection here
    // and gets none from here. Set before listen().
    void setSecurity(const security::Settings &settings);
    void setOwnKey(const security::Key &key);
    void addPeerKeys(const std::vector<protocol::PeerKey> &keys);
    void revoke(const Uuid &peer);

    // Makes sure `n` outgoing connections to `peer` are up. `done` runs once, on an I/O thread,
    // when they are (or with the first failure, or after `timeout`).
    void connect(const Uuid &peer, const protocol::NetAddr &addr, int n, std::chrono::milliseconds timeout,
                 std::function<void(Status)> done);
    // Queues a frame in the pool's shared queue; the first connection with room takes it
    // (OutConn::fill). `data` must stay valid until `done` runs; `done` runs exactly once, on an
    // I/O thread (or inline if there is no live connection to `peer`).
    void send(const Uuid &peer, const SegmentHeader &h, const void *data, SendDone done, bool ahead) override;
    using FrameTransport::send;
    int connections(const Uuid &peer) const override;

    void registerSink(uint64_t seq, std::shared_ptr<FrameSink> sink) override;
    void unregisterSink(uint64_t seq) override;
    // Fails every queued send of operation `seq` that has not started; a frame being written
    // completes normally (the receiver drops it), so streams stay in step.
    void cancelSends(uint64_t seq) override;
    // Closes every connection to and from `peer` (a peer removed from the run).
    void closePeer(const Uuid &peer, const std::string &reason) override;
    // Closes every data connection, incoming and outgoing; queued sends fail, reads in progress
    // fail (onPayloadFailed). Returns at once; callbacks follow on the I/O threads.
    void closeAll(const std::string &reason);
    // PCCL_CONN_STATS=1: one line per connection to `next` and from `prev` since the last report
    // (bytes, frames, first and last frame relative to `since`; TCP_INFO of the outgoing ones),
    // and the counters reset. Empty when off. Any thread.
    std::string connectionReport(const Uuid &next, const Uuid &prev, std::chrono::steady_clock::time_point since);

    struct Impl;  // internal (data_plane_impl.h); public so the connection types can name it

private:
    std::shared_ptr<Impl> impl_;
};

} // namespace pccl::transport
