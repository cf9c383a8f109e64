// The data plane's shared state, seen by DataPlane (data_plane.cpp) and its two connection
// types (out_conn.h: connections this peer opens and sends on; in_conn.h: connections it
// accepts and receives on). Internal to src/transport.
//
// Locking: Impl::mu guards the maps below; a connection's own state is touched only on its
// strand. Never hold Impl::mu while calling into a connection or a sink (they take it too).
#pragma once
#include <asio.hpp>

#include <climits>
#include <deque>
#include <optional>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <unordered_set>

#include "security/handshake.h"
#include "transport/data_plane.h"
#include "transport/same_host.h"
#include "transport/sender_control.h"
#include "util/log_limiter.h"

namespace pccl::transport {

using Strand = asio::strand<asio::io_context::executor_type>;

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
    // Counts one connection up (s ok) or fails the whole attempt (closing its connections);
    // the callbacks run once, when the last connection is up or at the first failure.
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
    // Per pool: the frames no connection has taken yet, in send order (send() wakes a sender
    // waiting for work). Emptied, and its frames failed, when the pool's last connection goes.
    struct Waiting {
        SegmentHeader h;
        const void *data;
        SendDone done;
    };
    struct SendQueue {
        std::deque<Waiting> ahead, frames;  // taken in this order (FrameTransport::send's `ahead`)
        bool empty() const { return ahead.empty() && frames.empty(); }
        Waiting take() {
            auto &q = ahead.empty() ? frames : ahead;
            Waiting w = std::move(q.front());
            q.pop_front();
            return w;
        }
        const Waiting &next() const { return ahead.empty() ? frames.front() : ahead.front(); }
        // How many may send at once to a remote peer: measured per pool, see sender_control.h.
        SenderControl control{fixedSenders()};
    };
    // One pass over `peer`'s pool: its live connections, whether they are on this host, how many
    // send (its first `senders` live connections, in pool order, take frames; the others stand by
    // and move up when one before them breaks: a fixed order keeps the same connections, with
    // their grown windows, busy when the count changes), and `self`'s place among the live ones
    // (INT_MAX when it is not one). mu held.
    struct PoolView {
        int live = 0, senders = 0, rank = INT_MAX;
        bool local = false;
    };
    PoolView viewLocked(const Uuid &peer, const OutConn *self = nullptr);
    // The live connections among the pool's senders that wait for frames (OutConn::idle), at most
    // `most`; each is marked awake, to be pull()ed by the caller outside mu. mu held.
    std::vector<std::shared_ptr<OutConn>> idleSendersLocked(const Uuid &peer, size_t most = SIZE_MAX);
    // PCCL_DATA_SENDERS, read once.
    static std::optional<int> fixedSenders();
    // The most connections of a pool on this host that carry frames at once (there the CPU is
    // the limit, nothing is measured), and the most whose NOTSENT_LOWAT shares are counted.
    static constexpr int kMaxSending = 16;
    std::unordered_map<Uuid, SendQueue, UuidHash> queues;
    // Takes the frames of `peer`'s queue (all of them, or those of operation `seq`), to be failed
    // by the caller outside `mu`. mu held.
    std::vector<Waiting> takeQueuedLocked(const Uuid &peer, std::optional<uint64_t> seq = std::nullopt);
    struct Incoming {
        std::weak_ptr<InConn> conn;
        asio::ip::address from;  // source address, for the per-address cap
    };
    std::vector<Incoming> incoming;
    std::unordered_map<uint64_t, std::shared_ptr<FrameSink>> sinks;
    uint64_t highestSeq = 0;
    std::multimap<uint64_t, std::shared_ptr<InConn>> parked;  // by the seq they wait for
    std::unordered_map<Uuid, std::shared_ptr<PendingConnect>, UuidHash> connecting;
    // A run with a secret (DataPlane::setSecurity).
    bool secure = false;
    security::Mode mode = security::Mode::Encrypt;
    std::optional<security::Key> ownKey;
    std::unordered_map<Uuid, security::Key, UuidHash> peerKeys;
    std::unordered_set<Uuid, UuidHash> revoked;
    // The key an incoming handshake must prove, or nullopt with the reason. Takes `mu`.
    std::optional<security::Key> incomingKey(const security::ClientHello &h, std::string *why);

    // Caps on accepted connections (docs/design.md, Limits): in total and from one source
    // address; one more is closed at once. PCCL_MAX_DATA_CONNECTIONS and
    // PCCL_MAX_DATA_CONNECTIONS_PER_ADDRESS override them.
    size_t maxIncoming = 1024;
    size_t maxIncomingPerAddress = 256;
    // Accept loop only (one accept is outstanding at a time, so its handlers never overlap).
    asio::steady_timer acceptPause{io};
    Strand acceptStrand{asio::make_strand(io)};
    log::Limiter refusedLog, starvedLog{std::chrono::seconds(10)};

    explicit Impl(int n);
    void acceptLoop();
    // Out of descriptors: accept again after a pause instead of at once (a busy loop).
    void pauseAccepting(const asio::error_code &ec);
    // Whether a connection from `from` is over a cap (logged, rate-limited). Takes `mu`.
    bool overCap(const asio::ip::address &from);
    // Takes a closed connection out of its pool; the pool's last one fails the frames still
    // queued for it with `why`. Takes `mu`.
    void removeOut(const Uuid &peer, const OutConn *c, const std::string &why);
    // One attempt per peer at a time: starts one for `missing` connections, or adds `done` to
    // the attempt in progress and returns nullptr. Takes `mu`.
    std::shared_ptr<PendingConnect> beginConnect(const Uuid &peer, int missing, std::function<void(Status)> &done);
};

} // namespace pccl::transport
