// The data plane itself: listening, the pools of outgoing connections, sink registration and
// closing. The connections are in out_conn.cpp and in_conn.cpp, the wire format in data_wire.h.
#include "transport/data_plane.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "transport/conn_stats.h"
#include "transport/data_plane_impl.h"
#include "transport/framed_connection.h"
#include "transport/in_conn.h"
#include "transport/out_conn.h"
#include "transport/tsan.h"
#include "util/log.h"

namespace pccl::transport {

namespace {

size_t countFromEnvironment(const char *name, size_t fallback) {
    const char *env = std::getenv(name);
    if (!env || !*env) return fallback;
    char *end = nullptr;
    const unsigned long long v = std::strtoull(env, &end, 10);
    if (*end == 0 && v >= 1 && v <= 1000000) return v;
    PCCL_LOG(Warn, "ignoring " << name << "=" << env << " (a count in 1..1000000)");
    return fallback;
}

bool outOfResources(const asio::error_code &ec) {
    if (ec.category() != asio::system_category()) return false;
    const int e = ec.value();
    return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
}

constexpr auto kAcceptPause = std::chrono::milliseconds(100);

// Fails, on an I/O thread, the frames a closed pool's connections never took.
void failOrphans(asio::io_context &io, const Uuid &peer, std::vector<DataPlane::Impl::Waiting> frames,
                 const std::string &reason) {
    if (frames.empty()) return;
    asio::post(io, [frames = std::move(frames), why = "data connection to " + peer.shortStr() + " closed: " + reason]() mutable {
        for (auto &w : frames) w.done(false, why);
    });
}

} // namespace

DataPlane::Impl::Impl(int n)
    : nThreads(n),
      maxIncoming(countFromEnvironment("PCCL_MAX_DATA_CONNECTIONS", 1024)),
      maxIncomingPerAddress(countFromEnvironment("PCCL_MAX_DATA_CONNECTIONS_PER_ADDRESS", 256)) {}

void DataPlane::Impl::acceptLoop() {
    // Handlers capture the raw Impl: they only run on the I/O threads, which are joined before
    // the Impl is destroyed (pending handlers are then destroyed with the io_context, unrun).
    auto strand = asio::make_strand(io);
    Impl *self = this;
    acceptor.async_accept(strand, [self, strand](const asio::error_code &ec, asio::ip::tcp::socket socket) {
        if (ec == asio::error::operation_aborted || !self->acceptor.is_open()) return;
        if (ec && outOfResources(ec)) return self->pauseAccepting(ec);
        if (!ec) {
            asio::error_code e;
            auto from = socket.remote_endpoint(e).address();
            if (from.is_v6() && from.to_v6().is_v4_mapped())
                from = asio::ip::make_address_v4(asio::ip::v4_mapped, from.to_v6());
            if (e || self->overCap(from)) {
                socket.close(e);
                return self->acceptLoop();
            }
            tuneSocket(socket);
            auto conn = std::make_shared<InConn>(std::move(socket), self->weak_from_this(), strand);
            {
                std::lock_guard lock(self->mu);
                self->incoming.push_back({conn, from});
            }
            conn->startHandshake();
        }
        self->acceptLoop();
    });
}

void DataPlane::Impl::pauseAccepting(const asio::error_code &ec) {
    if (auto more = starvedLog.admit())
        PCCL_LOG(Warn, "data plane: cannot accept connections (" << ec.message() << "); retrying every "
                                                                 << kAcceptPause.count() << " ms" << *more);
    acceptPause.expires_after(kAcceptPause);
    // On acceptStrand, as the destructor's close of the acceptor: the two never overlap.
    acceptPause.async_wait(asio::bind_executor(acceptStrand, [this](const asio::error_code &e) {
        if (!e && acceptor.is_open()) acceptLoop();
    }));
}

bool DataPlane::Impl::overCap(const asio::ip::address &from) {
    size_t total = 0, fromThere = 0;
    {
        std::lock_guard lock(mu);
        std::erase_if(incoming, [](auto &in) { return in.conn.expired(); });
        total = incoming.size();
        for (auto &in : incoming) fromThere += in.from == from;
    }
    const bool overTotal = total >= maxIncoming;
    if (!overTotal && fromThere < maxIncomingPerAddress) return false;
    if (auto more = refusedLog.admit())
        PCCL_LOG(Warn, "data plane: refused a connection from "
                           << from.to_string() << ": "
                           << (overTotal ? std::to_string(total) + " connections open (limit " + std::to_string(maxIncoming) + ")"
                                         : std::to_string(fromThere) + " connections open from that address (limit " +
                                               std::to_string(maxIncomingPerAddress) + ")")
                           << *more);
    return true;
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

void DataPlane::Impl::removeOut(const Uuid &peer, const OutConn *c, const std::string &why) {
    std::vector<Waiting> orphans;
    std::vector<std::shared_ptr<OutConn>> standby;
    {
        std::lock_guard lock(mu);
        auto it = pools.find(peer);
        if (it == pools.end()) return;
        std::erase_if(it->second, [c](auto &p) { return p.get() == c; });
        if (it->second.empty()) {
            pools.erase(it);
            orphans = takeQueuedLocked(peer);  // no connection is left to take them
        } else {
            standby = idleSendersLocked(peer);  // one standing by moved up among the senders
        }
    }
    for (auto &w : orphans) w.done(false, why);
    for (auto &c : standby) c->pull();
}

DataPlane::Impl::PoolView DataPlane::Impl::viewLocked(const Uuid &peer, const OutConn *self) {
    PoolView v;
    auto it = pools.find(peer);
    if (it == pools.end()) return v;
    for (auto &c : it->second) {
        if (c->dead) continue;
        if (c.get() == self) v.rank = v.live;
        ++v.live;
        v.local = v.local || c->local;
    }
    if (v.local) {
        v.senders = std::min(v.live, kMaxSending);
    } else {
        auto &control = queues[peer].control;
        control.setPool(v.live);
        v.senders = std::min(v.live, control.cap());
    }
    return v;
}

std::vector<std::shared_ptr<OutConn>> DataPlane::Impl::idleSendersLocked(const Uuid &peer, size_t most) {
    std::vector<std::shared_ptr<OutConn>> out;
    const int senders = viewLocked(peer).senders;
    auto it = pools.find(peer);
    if (it == pools.end()) return out;
    int rank = 0;
    for (auto &c : it->second) {
        if (c->dead) continue;
        if (rank++ >= senders || out.size() >= most) break;
        if (c->idle) {
            c->idle = false;
            out.push_back(c);
        }
    }
    return out;
}

std::vector<DataPlane::Impl::Waiting> DataPlane::Impl::takeQueuedLocked(const Uuid &peer, std::optional<uint64_t> seq) {
    std::vector<Waiting> out;
    auto it = queues.find(peer);
    if (it == queues.end()) return out;
    for (auto *frames : {&it->second.ahead, &it->second.frames})
        for (auto f = frames->begin(); f != frames->end();) {
            if (seq && f->h.seq != *seq) {
                ++f;
                continue;
            }
            out.push_back(std::move(*f));
            f = frames->erase(f);
        }
    if (!seq) queues.erase(it);
    return out;
}

std::shared_ptr<PendingConnect> DataPlane::Impl::beginConnect(const Uuid &peer, int missing,
                                                             std::function<void(Status)> &done) {
    std::lock_guard lock(mu);
    if (auto it = connecting.find(peer); it != connecting.end()) {
        std::lock_guard plock(it->second->mu);
        if (!it->second->finished) {
            it->second->done.push_back(std::move(done));
            return nullptr;
        }
    }
    auto pending = std::make_shared<PendingConnect>();
    pending->left = missing;
    pending->done.push_back(std::move(done));
    pending->owner = this;
    pending->peer = peer;
    connecting[peer] = pending;
    return pending;
}

DataPlane::DataPlane(int ioThreads) : impl_(std::make_shared<Impl>(std::max(1, ioThreads))) {}

DataPlane::~DataPlane() {
    closeAll("data plane shut down");
    {
        asio::error_code ec;
        asio::post(impl_->acceptStrand, [impl = impl_.get()] {
            asio::error_code e;
            impl->acceptPause.cancel();
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
    impl_->queues.clear();
    impl_->parked.clear();
    impl_->sinks.clear();
    impl_->incoming.clear();
    impl_->connecting.clear();
}

namespace {

// Opens, binds and listens on `port`: dual-stack where IPv6 is available, else IPv4.
asio::error_code listenOn(asio::ip::tcp::acceptor &acc, uint16_t port) {
    asio::error_code ec, ignored;
    acc.open(asio::ip::tcp::v6(), ec);
    if (!ec) {
        acc.set_option(asio::ip::v6_only(false), ec);
        acc.set_option(asio::socket_base::reuse_address(true), ec);
        acc.bind({asio::ip::tcp::v6(), port}, ec);
    }
    if (ec) {
        acc.close(ignored);
        ec.clear();
        acc.open(asio::ip::tcp::v4(), ec);
        if (!ec) acc.set_option(asio::socket_base::reuse_address(true), ec);
        if (!ec) acc.bind({asio::ip::tcp::v4(), port}, ec);
    }
    if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) acc.close(ignored);
    return ec;
}

} // namespace

Status DataPlane::listen(uint16_t lo, uint16_t hi) {
    auto &acc = impl_->acceptor;
    asio::error_code ec;
    if (lo == 0) {
        if ((ec = listenOn(acc, 0)))
            return {pcclInternalError, "cannot listen for peers on any port: " + ec.message()};
    } else {
        for (uint32_t port = lo; port <= hi; ++port)
            if (!(ec = listenOn(acc, static_cast<uint16_t>(port)))) break;
        if (ec) {
            const std::string range = lo == hi ? "port " + std::to_string(lo) : "ports " + std::to_string(lo) + "-" + std::to_string(hi);
            return invalidArgument("cannot listen for peers on " + range + " (PCCL_PORT_RANGE): " +
                                   (lo == hi ? "" : "none is free; the last: ") + ec.message());
        }
    }
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
    bool offer = false, secure = false;
    security::Mode mode = security::Mode::Encrypt;
    std::optional<security::Key> key;
    {
        std::lock_guard lock(impl_->mu);
        cc = impl_->congestion;
        offer = impl_->sameHost;
        auto it = impl_->pools.find(peer);
        if (it != impl_->pools.end()) {
            for (auto &c : it->second) have += c->dead ? 0 : 1;
        }
        self = impl_->self;
        secure = impl_->secure;
        mode = impl_->mode;
        if (secure) {
            if (auto k = impl_->peerKeys.find(peer); k != impl_->peerKeys.end()) key = k->second;
        }
    }
    if (secure && !key) {
        const Status st{pcclRankConnectionFailed, "no key to connect to peer " + peer.shortStr() +
                                                      " (the master has not named it a member, or it was removed)"};
        asio::post(impl_->io, [done, st] { done(st); });
        return;
    }
    const int missing = n - have;
    if (missing <= 0) {
        asio::post(impl_->io, [done] { done({}); });
        return;
    }
    auto pending = impl_->beginConnect(peer, missing, done);
    if (!pending) return;  // joined the attempt in progress
    pending->timer = std::make_shared<asio::steady_timer>(impl_->io, timeout);
    pending->timer->async_wait([pending, peer, addr](const asio::error_code &ec) {
        if (!ec) pending->finish({pcclRankConnectionFailed, "connecting to peer " + peer.shortStr() + " at " + addr.str() + " timed out"});
    });
    const auto endpoint = toEndpoint(addr);
    const DataHello hello = DataHello::make(self, peer, localSameHostIdentity(), offer);
    for (int i = 0; i < missing; ++i) {
        auto conn = std::make_shared<OutConn>(impl_->io, impl_, peer);
        pending->conns.push_back(conn);
        auto hs = std::make_shared<OutConn::Handshake>();
        hs->pending = pending;
        hs->addr = addr;
        hs->endpoint = endpoint;
        hs->congestion = cc;
        hs->poolSize = n;
        hs->offer = offer;
        const auto plain = encodeDataHello(hello);
        std::copy(plain.begin(), plain.end(), hs->hello.begin());
        hs->key = key;
        hs->mode = mode;
        conn->open(std::move(hs));
    }
}

void DataPlane::send(const Uuid &peer, const SegmentHeader &h, const void *data, SendDone done, bool ahead) {
    std::vector<std::shared_ptr<OutConn>> wake;
    bool queued = false;
    {
        std::lock_guard lock(impl_->mu);
        auto it = impl_->pools.find(peer);
        const bool live = it != impl_->pools.end() &&
                          std::any_of(it->second.begin(), it->second.end(), [](auto &c) { return !c->dead; });
        if (live) {
            auto &q = impl_->queues[peer];
            (ahead ? q.ahead : q.frames).push_back({h, data, std::move(done)});
            queued = true;
            wake = impl_->idleSendersLocked(peer, 1);
        }
    }
    if (!queued) {
        done(false, "no data connection to peer " + peer.shortStr());
        return;
    }
    for (auto &c : wake) c->pull();
}

int DataPlane::connections(const Uuid &peer) const {
    std::lock_guard lock(impl_->mu);
    const auto v = impl_->viewLocked(peer);
    // A peer on this host gets whole segments: there the CPU, not a link, is the limit, and every
    // frame costs a header, a wakeup and (same-host copies) an acknowledgement (loopback, 2-3
    // peers, 1-16 MiB: 10-100% slower with segments cut in four).
    return v.local ? 1 : v.senders;
}

std::optional<int> DataPlane::Impl::fixedSenders() {
    static const std::optional<int> n = fixedSendersFromEnvironment();
    return n;
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
    std::vector<Impl::Waiting> cancelled;
    {
        std::lock_guard lock(impl_->mu);
        for (auto &[_, pool] : impl_->pools)
            for (auto &c : pool) outs.push_back(c);
        for (auto &[peer, q] : impl_->queues)
            for (auto &w : impl_->takeQueuedLocked(peer, seq)) cancelled.push_back(std::move(w));
    }
    for (auto &c : outs) c->cancel(seq);
    // On an I/O thread, as the connections' cancellations (the caller may hold its own lock).
    if (!cancelled.empty())
        asio::post(impl_->io, [cancelled = std::move(cancelled)]() mutable {
            for (auto &w : cancelled) w.done(false, "cancelled");
        });
}

void DataPlane::setSecurity(const security::Settings &settings) {
    std::lock_guard lock(impl_->mu);
    impl_->secure = settings.enabled();
    impl_->mode = settings.mode;
}

void DataPlane::setOwnKey(const security::Key &key) {
    std::lock_guard lock(impl_->mu);
    impl_->ownKey = key;
}

void DataPlane::addPeerKeys(const std::vector<protocol::PeerKey> &keys) {
    std::lock_guard lock(impl_->mu);
    for (auto &k : keys)
        if (!impl_->revoked.count(k.peer)) impl_->peerKeys[k.peer] = k.key;
}

void DataPlane::revoke(const Uuid &peer) {
    std::lock_guard lock(impl_->mu);
    impl_->peerKeys.erase(peer);
    impl_->revoked.insert(peer);
}

std::optional<security::Key> DataPlane::Impl::incomingKey(const security::ClientHello &h, std::string *why) {
    std::lock_guard lock(mu);
    if (h.kind != static_cast<uint8_t>(security::ConnKind::Data)) *why = "a control handshake sent to a data port";
    else if (h.receiver != self || self.isNil()) *why = "the connection is meant for peer " + h.receiver.shortStr();
    else if (revoked.count(h.sender)) *why = "peer " + h.sender.shortStr() + " was removed from the run";
    else if (!ownKey) *why = "this peer is not admitted yet";
    else return security::pairKey(*ownKey, h.sender);
    return std::nullopt;
}

void DataPlane::closePeer(const Uuid &peer, const std::string &reason) {
    std::vector<std::shared_ptr<OutConn>> outs;
    std::vector<std::shared_ptr<InConn>> ins;
    std::vector<Impl::Waiting> orphans;
    {
        std::lock_guard lock(impl_->mu);
        if (auto it = impl_->pools.find(peer); it != impl_->pools.end()) {
            outs = it->second;
            impl_->pools.erase(it);
        }
        orphans = impl_->takeQueuedLocked(peer);
        for (auto &in : impl_->incoming)
            if (auto c = in.conn.lock(); c && c->from == peer) ins.push_back(c);
    }
    for (auto &c : outs) c->close(reason);
    for (auto &c : ins) c->close(reason);
    failOrphans(impl_->io, peer, std::move(orphans), reason);
}

std::string DataPlane::connectionReport(const Uuid &next, const Uuid &prev, std::chrono::steady_clock::time_point since) {
    if (!connStatsEnabled()) return {};
    std::vector<std::shared_ptr<OutConn>> outs;
    std::vector<std::shared_ptr<InConn>> ins;
    {
        std::lock_guard lock(impl_->mu);
        if (auto it = impl_->pools.find(next); it != impl_->pools.end()) outs = it->second;
        for (auto &in : impl_->incoming)
            if (auto c = in.conn.lock(); c && c->from == prev) ins.push_back(c);
    }
    std::string out;
    if (!outs.empty() && !outs[0]->local) {
        std::lock_guard lock(impl_->mu);
        if (auto q = impl_->queues.find(next); q != impl_->queues.end())
            out += "\n  to " + next.shortStr() + ": " + std::to_string(q->second.control.cap()) + " of " +
                   std::to_string(outs.size()) + " connections send (" +
                   (q->second.control.lastChange().empty() ? "the start count" : q->second.control.lastChange()) + ")";
    }
    for (size_t i = 0; i < outs.size(); ++i)
        out += "\n  to " + next.shortStr() + " #" + std::to_string(i) + ": " + outs[i]->stats.take(since) + "; " +
               tcpInfoSummary(outs[i]->socket.native_handle(), outs[i]->stats);
    for (size_t i = 0; i < ins.size(); ++i)
        out += "\n  from " + prev.shortStr() + " #" + std::to_string(i) + ": " + ins[i]->stats.take(since);
    return out;
}

void DataPlane::closeAll(const std::string &reason) {
    std::vector<std::shared_ptr<OutConn>> outs;
    std::vector<std::shared_ptr<InConn>> ins;
    std::vector<std::pair<Uuid, std::vector<Impl::Waiting>>> orphans;
    {
        std::lock_guard lock(impl_->mu);
        for (auto &[peer, pool] : impl_->pools) {
            for (auto &c : pool) outs.push_back(c);
            orphans.emplace_back(peer, impl_->takeQueuedLocked(peer));
        }
        impl_->pools.clear();
        impl_->queues.clear();
        for (auto &in : impl_->incoming)
            if (auto c = in.conn.lock()) ins.push_back(c);
        impl_->incoming.clear();
        impl_->parked.clear();
    }
    for (auto &c : outs) c->close(reason);
    for (auto &c : ins) c->close(reason);
    for (auto &[peer, frames] : orphans) failOrphans(impl_->io, peer, std::move(frames), reason);
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
