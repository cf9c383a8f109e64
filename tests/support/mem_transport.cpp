#include "support/mem_transport.h"

#include <algorithm>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "util/splitmix.h"

using pccl::Uuid;
using pccl::transport::FrameSink;
using pccl::transport::SegmentHeader;
using pccl::transport::SendDone;

namespace pccl_test {

MemFault MemFault::delay(size_t steps) {
    MemFault f;
    f.kind = Kind::Delay;
    f.steps = steps;
    return f;
}

MemFault MemFault::flipBits(size_t at, uint8_t mask) {
    MemFault f;
    f.kind = Kind::Corrupt;
    f.mutate = [at, mask](std::vector<uint8_t> &b) {
        if (at < b.size()) b[at] ^= mask;
    };
    return f;
}

MemFault MemFault::setBits(size_t at, uint8_t mask) {
    MemFault f;
    f.kind = Kind::Corrupt;
    f.mutate = [at, mask](std::vector<uint8_t> &b) {
        if (at < b.size()) b[at] |= mask;
    };
    return f;
}

MemFault MemFault::drop(size_t keep) {
    MemFault f;
    f.kind = Kind::Drop;
    f.keep = keep;
    f.why = "connection lost (injected)";
    return f;
}

MemFault MemFault::failSend(size_t keep) {
    MemFault f;
    f.kind = Kind::FailSend;
    f.keep = keep;
    f.why = "send failed (injected)";
    return f;
}

MemFault MemFault::stall(size_t keep) {
    MemFault f;
    f.kind = Kind::Stall;
    f.keep = keep;
    return f;
}

// ---- the model

struct MemNetwork::Frame {
    SegmentHeader h;
    const void *data = nullptr;
    SendDone done;
    MemFault fault;
    uint64_t ticket = 0;     // send order, over the network
    uint64_t index = 0;      // MemFrameInfo::index
    bool ahead = false;      // FrameTransport::send's `ahead`
    uint64_t notBefore = 0;  // Delay: the step from which it may be written
};
namespace {
constexpr size_t kHeader = pccl::transport::kSegmentHeaderBytes;
} // namespace

struct MemNetwork::Conn {
    Uuid from, to;
    int index = 0;
    // Sender side.
    bool sendOpen = true;
    bool stalled = false;       // a Stall fault: writes nothing more
    bool writeBusy = false;     // a write's SendDone is running
    std::deque<Frame> queue;
    size_t queuedBytes = 0;
    std::optional<Frame> stuck;  // the frame a Stall fault left half written
    uint64_t written = 0;
    // The stream.
    std::vector<uint8_t> wire;
    size_t readPos = 0;
    std::deque<uint64_t> tickets;  // of the frames in the stream, for Order::Fifo
    bool ended = false;            // the sender broke: nothing follows the bytes in `wire`
    std::string endWhy;
    // Receiver side.
    bool readOpen = true;
    std::string closedWhy;  // why the reader was closed (for a frame that began meanwhile)
    enum class Rd { Header, Payload, Discard, Parked, Redispatch } rd = Rd::Header;
    SegmentHeader cur;
    uint64_t curTicket = 0;
    std::shared_ptr<FrameSink> sink;
    uint8_t *dest = nullptr;
    bool busy = false;  // a sink callback of this connection is running
};

struct MemNetwork::Peer {
    Uuid id;
    std::unique_ptr<Endpoint> endpoint;
    std::map<uint64_t, std::shared_ptr<FrameSink>> sinks;
    uint64_t highestSeq = 0;
    bool frozen = false;
};

struct MemNetwork::Posted {
    Uuid owner;  // runs on this peer's "I/O thread": not while it is frozen
    std::function<void()> fn;
    uint64_t ticket = 0;
};

struct MemNetwork::Event {
    enum class Kind { Write, Header, Dispatch, Payload, End, Post } kind;
    Conn *conn = nullptr;
    size_t post = 0;
    uint64_t ticket = 0;
};

class MemNetwork::Endpoint final : public pccl::transport::FrameTransport {
public:
    Endpoint(MemNetwork &net, Uuid self) : net_(net), self_(self) {}
    void send(const Uuid &peer, const SegmentHeader &h, const void *data, SendDone done, bool ahead) override {
        net_.send(self_, peer, h, data, std::move(done), ahead);
    }
    void cancelSends(uint64_t seq) override { net_.cancelSends(self_, seq); }
    void closePeer(const Uuid &peer, const std::string &reason) override { net_.closePeer(self_, peer, reason); }
    void registerSink(uint64_t seq, std::shared_ptr<FrameSink> sink) override {
        net_.registerSink(self_, seq, std::move(sink));
    }
    void unregisterSink(uint64_t seq) override { net_.unregisterSink(self_, seq); }
    int connections(const Uuid &peer) const override { return net_.connections(self_, peer); }

private:
    MemNetwork &net_;
    const Uuid self_;
};

MemNetwork::MemNetwork(uint64_t seed, Order order) : rng_(seed * pccl::util::kSplitMixGamma + 1), order_(order) {}

MemNetwork::~MemNetwork() {
    // Pending callbacks and frames hold operations alive; destroy them outside the lock.
    std::deque<std::unique_ptr<Posted>> posted;
    std::vector<std::unique_ptr<Conn>> conns;
    std::map<Uuid, std::unique_ptr<Peer>> peers;
    {
        std::lock_guard lock(mu_);
        posted.swap(posted_);
        conns.swap(conns_);
        peers.swap(peers_);
    }
}

uint64_t MemNetwork::nextRandom() { return pccl::util::splitmix64(rng_); }

pccl::transport::FrameTransport &MemNetwork::addPeer(const Uuid &id) {
    std::lock_guard lock(mu_);
    auto &p = peers_[id];
    if (!p) {
        p = std::make_unique<Peer>();
        p->id = id;
        p->endpoint = std::make_unique<Endpoint>(*this, id);
    }
    return *p->endpoint;
}

pccl::transport::FrameTransport &MemNetwork::transport(const Uuid &id) {
    std::lock_guard lock(mu_);
    return *peerLocked(id).endpoint;
}

MemNetwork::Peer &MemNetwork::peerLocked(const Uuid &id) {
    auto it = peers_.find(id);
    if (it == peers_.end()) throw std::logic_error("MemNetwork: unknown peer " + id.shortStr());
    return *it->second;
}

void MemNetwork::connect(const Uuid &from, const Uuid &to, int n) {
    std::lock_guard lock(mu_);
    peerLocked(from), peerLocked(to);
    int live = 0, next = 0;
    for (auto &c : conns_) {
        if (c->from != from || c->to != to) continue;
        live += c->sendOpen ? 1 : 0;
        next = std::max(next, c->index + 1);
    }
    for (; live < n; ++live) {
        auto c = std::make_unique<Conn>();
        c->from = from;
        c->to = to;
        c->index = next++;
        conns_.push_back(std::move(c));
    }
}

void MemNetwork::setFaultRule(MemFaultRule rule) {
    std::lock_guard lock(mu_);
    rule_ = std::move(rule);
}

void MemNetwork::freeze(const Uuid &peer) {
    std::lock_guard lock(mu_);
    peerLocked(peer).frozen = true;
}

void MemNetwork::thaw(const Uuid &peer) {
    std::lock_guard lock(mu_);
    peerLocked(peer).frozen = false;
    cv_.notify_all();
}

void MemNetwork::kill(const Uuid &peer, const std::string &reason) {
    std::lock_guard lock(mu_);
    peerLocked(peer).frozen = true;
    for (auto &c : conns_) {
        // What the process wrote still arrives, then the stream ends; what it would read is lost.
        if (c->from == peer) breakSenderLocked(*c, reason);
        if (c->to == peer)
            closeLocked(*c, "connection reset by " + peer.shortStr(), reason, "killed: " + reason);
    }
    cv_.notify_all();
}

// ---- FrameTransport

int MemNetwork::liveLocked(const Uuid &from, const Uuid &to) const {
    int n = 0;
    for (auto &c : conns_) n += c->from == from && c->to == to && c->sendOpen;
    return n;
}

int MemNetwork::connections(const Uuid &self, const Uuid &peer) const {
    std::lock_guard lock(mu_);
    return liveLocked(self, peer);
}

void MemNetwork::send(const Uuid &self, const Uuid &peer, const SegmentHeader &h, const void *data, SendDone done,
                      bool ahead) {
    std::unique_lock lock(mu_);
    if (!liveLocked(self, peer)) {
        lock.unlock();
        done(false, "no data connection to peer " + peer.shortStr());
        return;
    }
    Frame f;
    f.h = h;
    f.data = data;
    f.done = std::move(done);
    f.ticket = ticket_++;
    f.index = queued_[{self, peer}]++;
    f.ahead = ahead;
    auto &q = shared_[{self, peer}];
    // An `ahead` frame goes behind the other `ahead` ones, before the rest.
    auto at = ahead ? std::find_if(q.begin(), q.end(), [](const Frame &x) { return !x.ahead; }) : q.end();
    q.insert(at, std::move(f));
    cv_.notify_all();
}

void MemNetwork::takeLocked(Conn &c) {
    auto &q = shared_[{c.from, c.to}];
    Frame f = std::move(q.front());
    q.pop_front();
    if (rule_) f.fault = rule_(MemFrameInfo{c.from, c.to, c.index, f.index, f.h});
    if (f.fault.kind == MemFault::Kind::Delay) f.notBefore = step_ + f.fault.steps;
    c.queuedBytes += f.h.bytes;
    c.queue.push_back(std::move(f));
}

void MemNetwork::cancelSends(const Uuid &self, uint64_t seq) {
    std::lock_guard lock(mu_);
    for (auto &[key, q] : shared_) {
        if (key.first != self) continue;
        for (auto it = q.begin(); it != q.end();) {
            if (it->h.seq != seq) {
                ++it;
                continue;
            }
            postLocked(self, [done = std::move(it->done)] { done(false, "cancelled"); });
            it = q.erase(it);
        }
    }
    for (auto &c : conns_) {
        if (c->from != self) continue;
        for (auto it = c->queue.begin(); it != c->queue.end();) {
            if (it->h.seq != seq) {
                ++it;
                continue;
            }
            c->queuedBytes -= it->h.bytes;
            postLocked(self, [done = std::move(it->done)] { done(false, "cancelled"); });
            it = c->queue.erase(it);
        }
    }
    cv_.notify_all();
}

void MemNetwork::closePeer(const Uuid &self, const Uuid &peer, const std::string &reason) {
    std::lock_guard lock(mu_);
    for (auto &c : conns_) {
        if (c->from == self && c->to == peer) closeLocked(*c, reason, "closed by the remote end", reason);
        if (c->from == peer && c->to == self) closeLocked(*c, "closed by the receiver", reason, reason);
    }
    cv_.notify_all();
}

void MemNetwork::registerSink(const Uuid &self, uint64_t seq, std::shared_ptr<FrameSink> sink) {
    std::lock_guard lock(mu_);
    Peer &p = peerLocked(self);
    p.sinks[seq] = std::move(sink);
    p.highestSeq = std::max(p.highestSeq, seq);
    for (auto &c : conns_)
        if (c->to == self && c->rd == Conn::Rd::Parked && c->cur.seq <= p.highestSeq) c->rd = Conn::Rd::Redispatch;
    cv_.notify_all();
}

void MemNetwork::unregisterSink(const Uuid &self, uint64_t seq) {
    std::shared_ptr<FrameSink> gone;  // destroyed outside the lock
    std::lock_guard lock(mu_);
    Peer &p = peerLocked(self);
    if (auto it = p.sinks.find(seq); it != p.sinks.end()) {
        gone = std::move(it->second);
        p.sinks.erase(it);
    }
}

// ---- breaking connections

void MemNetwork::postLocked(const Uuid &owner, std::function<void()> fn) {
    auto p = std::make_unique<Posted>();
    p->owner = owner;
    p->fn = std::move(fn);
    p->ticket = ticket_++;
    posted_.push_back(std::move(p));
}

void MemNetwork::breakSenderLocked(Conn &c, const std::string &reason) {
    if (!c.sendOpen) return;
    c.sendOpen = false;
    c.ended = true;
    c.endWhy = reason;
    closes_.push_back({c.from, c.to, c.index, reason});
    const std::string why = "data connection to " + c.to.shortStr() + " closed: " + reason;
    if (c.stuck) {
        postLocked(c.from, [done = std::move(c.stuck->done), why] { done(false, why); });
        c.stuck.reset();
    }
    for (auto &f : c.queue) postLocked(c.from, [done = std::move(f.done), why] { done(false, why); });
    c.queue.clear();
    c.queuedBytes = 0;
    // The pool's last connection: the frames no connection took fail with it.
    if (liveLocked(c.from, c.to)) return;
    auto &q = shared_[{c.from, c.to}];
    for (auto &f : q) postLocked(c.from, [done = std::move(f.done), why] { done(false, why); });
    q.clear();
}

void MemNetwork::closeLocked(Conn &c, const std::string &senderWhy, const std::string &receiverWhy,
                             const std::string &logged) {
    if (!c.sendOpen && !c.readOpen) return;
    if (c.sendOpen) {
        breakSenderLocked(c, senderWhy);
        closes_.back().reason = logged;
    } else {
        closes_.push_back({c.from, c.to, c.index, logged});
    }
    if (!c.readOpen) return;
    c.readOpen = false;
    c.closedWhy = receiverWhy;
    c.wire.clear();
    c.readPos = 0;
    c.tickets.clear();
    if (c.rd == Conn::Rd::Payload && !c.busy) {
        const std::string why = "receiving from " + c.from.shortStr() + " failed: " + receiverWhy;
        postLocked(c.to, [sink = std::move(c.sink), h = c.cur, why] { sink->onPayloadFailed(h, why); });
    }
    c.sink.reset();
    c.rd = Conn::Rd::Header;
}

// ---- scheduling

size_t MemNetwork::available(const Conn &c) const { return c.wire.size() - c.readPos; }

std::optional<MemNetwork::Event> MemNetwork::pickLocked() {
    std::vector<Event> ready;
    for (int attempt = 0; attempt < 2 && ready.empty(); ++attempt) {
        uint64_t nextDelayed = UINT64_MAX;
        for (size_t i = 0; i < posted_.size(); ++i)
            if (!peerLocked(posted_[i]->owner).frozen) ready.push_back({Event::Kind::Post, nullptr, i, posted_[i]->ticket});
        for (auto &cp : conns_) {
            Conn &c = *cp;
            if (c.sendOpen && !c.stalled && !c.writeBusy && !peerLocked(c.from).frozen) {
                if (!c.queue.empty()) {
                    if (c.queue.front().notBefore <= step_) ready.push_back({Event::Kind::Write, &c, 0, c.queue.front().ticket});
                    else nextDelayed = std::min(nextDelayed, c.queue.front().notBefore);
                } else if (auto q = shared_.find({c.from, c.to}); q != shared_.end() && !q->second.empty()) {
                    ready.push_back({Event::Kind::Write, &c, 0, q->second.front().ticket});  // takes it, then writes
                }
            }
            if (!c.readOpen || c.busy || peerLocked(c.to).frozen) continue;
            const uint64_t t = c.tickets.empty() ? c.curTicket : c.tickets.front();
            switch (c.rd) {
                case Conn::Rd::Header:
                    if (available(c) >= kHeader) ready.push_back({Event::Kind::Header, &c, 0, t});
                    else if (c.ended) ready.push_back({Event::Kind::End, &c, 0, t});
                    break;
                case Conn::Rd::Payload:
                case Conn::Rd::Discard:
                    if (available(c) >= c.cur.bytes) ready.push_back({Event::Kind::Payload, &c, 0, c.curTicket});
                    else if (c.ended) ready.push_back({Event::Kind::End, &c, 0, c.curTicket});
                    break;
                case Conn::Rd::Redispatch: ready.push_back({Event::Kind::Dispatch, &c, 0, c.curTicket}); break;
                case Conn::Rd::Parked: break;
            }
        }
        // Only delayed frames are left: time skips ahead to the first of them.
        if (ready.empty() && nextDelayed != UINT64_MAX) step_ = nextDelayed;
    }
    if (ready.empty()) return std::nullopt;
    size_t pick = 0;
    if (order_ == Order::Random) {
        pick = nextRandom() % ready.size();
    } else {
        for (size_t i = 1; i < ready.size(); ++i)
            if (ready[i].ticket < ready[pick].ticket) pick = i;
    }
    ++step_;
    return ready[pick];
}

void MemNetwork::execute(std::unique_lock<std::mutex> &lock, const Event &e) {
    switch (e.kind) {
        case Event::Kind::Post: {
            auto p = std::move(posted_[e.post]);
            posted_.erase(posted_.begin() + static_cast<std::ptrdiff_t>(e.post));
            lock.unlock();
            p->fn();
            p.reset();
            lock.lock();
            return;
        }
        case Event::Kind::Write: return write(lock, *e.conn);
        case Event::Kind::Header: return readHeader(lock, *e.conn);
        case Event::Kind::Dispatch: return dispatch(lock, *e.conn);
        case Event::Kind::Payload: return readPayload(lock, *e.conn);
        case Event::Kind::End: {
            Conn &c = *e.conn;
            c.readOpen = false;
            c.closedWhy = c.endWhy;
            auto sink = std::move(c.sink);
            const bool midFrame = c.rd == Conn::Rd::Payload;
            const SegmentHeader h = c.cur;
            const std::string why = "receiving from " + c.from.shortStr() + " failed: " + c.endWhy;
            c.rd = Conn::Rd::Header;
            if (midFrame) {
                c.busy = true;
                lock.unlock();
                sink->onPayloadFailed(h, why);
                sink.reset();
                lock.lock();
                c.busy = false;
            }
            return;
        }
    }
}

void MemNetwork::write(std::unique_lock<std::mutex> &lock, Conn &c) {
    if (c.queue.empty()) {
        takeLocked(c);
        if (c.queue.front().notBefore > step_) return;  // delayed: written when its time comes
    }
    Frame f = std::move(c.queue.front());
    c.queue.pop_front();
    c.queuedBytes -= f.h.bytes;
    ++c.written;
    std::vector<uint8_t> bytes(kHeader + f.h.bytes);
    pccl::transport::encodeFrameHeader({f.h, false, 0}, false, bytes.data());
    if (f.h.bytes) std::memcpy(bytes.data() + kHeader, f.data, f.h.bytes);
    using K = MemFault::Kind;
    const K kind = f.fault.kind;
    if (kind == K::Corrupt && f.fault.mutate) f.fault.mutate(bytes);
    if (kind == K::Drop || kind == K::FailSend || kind == K::Stall) bytes.resize(std::min(bytes.size(), f.fault.keep));
    if (!bytes.empty()) {
        c.wire.insert(c.wire.end(), bytes.begin(), bytes.end());
        c.tickets.push_back(f.ticket);
    }
    bool ok = true;
    std::string why;
    switch (kind) {
        case K::Stall:
            c.stalled = true;
            c.stuck = std::move(f);
            return;
        case K::Drop: breakSenderLocked(c, f.fault.why); break;
        case K::FailSend:
            breakSenderLocked(c, f.fault.why);
            ok = false;
            why = "data connection to " + c.to.shortStr() + " closed: " + f.fault.why;
            break;
        default: break;
    }
    c.writeBusy = true;
    lock.unlock();
    f.done(ok, why);
    f.done = nullptr;
    lock.lock();
    c.writeBusy = false;
}

void MemNetwork::readHeader(std::unique_lock<std::mutex> &lock, Conn &c) {
    uint8_t header[kHeader];
    std::memcpy(header, c.wire.data() + c.readPos, kHeader);
    c.readPos += kHeader;
    if (!c.tickets.empty()) {
        c.curTicket = c.tickets.front();
        c.tickets.pop_front();
    }
    const auto f = pccl::transport::decodeFrameHeader(header, false);
    if (!f) {
        const std::string why = "malformed frame header from " + c.from.shortStr();
        closeLocked(c, "closed by the receiver", why, why);
        return;
    }
    c.cur = f->segment;
    dispatch(lock, c);
}

void MemNetwork::dispatch(std::unique_lock<std::mutex> &lock, Conn &c) {
    Peer &to = peerLocked(c.to);
    c.rd = Conn::Rd::Header;
    auto it = to.sinks.find(c.cur.seq);
    if (it == to.sinks.end()) {
        c.rd = c.cur.seq > to.highestSeq ? Conn::Rd::Parked : Conn::Rd::Discard;
        c.sink = nullptr;
        return;
    }
    auto sink = it->second;
    const SegmentHeader h = c.cur;
    std::string error;
    c.busy = true;
    lock.unlock();
    void *dest = sink->beginFrame(h, c.from, &error);
    lock.lock();
    c.busy = false;
    if (!dest && !error.empty()) {
        const std::string why = "protocol error from " + c.from.shortStr() + ": " + error;
        closeLocked(c, "closed by the receiver", why, why);
        return;
    }
    c.rd = dest ? Conn::Rd::Payload : Conn::Rd::Discard;
    c.sink = std::move(sink);
    c.dest = static_cast<uint8_t *>(dest);
    if (!c.readOpen) {
        // Closed while beginFrame ran: the frame it began fails.
        c.rd = Conn::Rd::Header;
        if (dest) {
            const std::string why = "receiving from " + c.from.shortStr() + " failed: " + c.closedWhy;
            postLocked(c.to, [sink = std::move(c.sink), h, why] { sink->onPayloadFailed(h, why); });
        }
        c.sink.reset();
    }
}

void MemNetwork::readPayload(std::unique_lock<std::mutex> &lock, Conn &c) {
    const SegmentHeader h = c.cur;
    const bool keep = c.rd == Conn::Rd::Payload;
    if (keep && h.bytes) std::memcpy(c.dest, c.wire.data() + c.readPos, h.bytes);
    c.readPos += h.bytes;
    if (c.readPos > 65536 && c.readPos * 2 > c.wire.size()) {
        c.wire.erase(c.wire.begin(), c.wire.begin() + static_cast<std::ptrdiff_t>(c.readPos));
        c.readPos = 0;
    }
    auto sink = std::move(c.sink);
    c.rd = Conn::Rd::Header;
    c.dest = nullptr;
    if (!sink) return;
    c.busy = true;
    lock.unlock();
    if (keep) sink->onPayload(h);
    else sink->onDiscarded(h, c.from);
    sink.reset();
    lock.lock();
    c.busy = false;
}

bool MemNetwork::step() {
    std::unique_lock lock(mu_);
    auto e = pickLocked();
    if (!e) return false;
    ++executing_;
    execute(lock, *e);
    --executing_;
    cv_.notify_all();
    return true;
}

size_t MemNetwork::run(size_t maxSteps) {
    size_t n = 0;
    while (n < maxSteps && step()) ++n;
    return n;
}

bool MemNetwork::runConcurrently(int threads, std::chrono::milliseconds deadline) {
    const auto end = std::chrono::steady_clock::now() + deadline;
    bool timedOut = false;
    auto worker = [&] {
        std::unique_lock lock(mu_);
        for (;;) {
            if (timedOut || std::chrono::steady_clock::now() > end) {
                timedOut = true;
                cv_.notify_all();
                return;
            }
            if (auto e = pickLocked()) {
                ++executing_;
                execute(lock, *e);
                --executing_;
                cv_.notify_all();
                continue;
            }
            if (executing_ == 0) {
                cv_.notify_all();
                return;
            }
            cv_.wait_for(lock, std::chrono::milliseconds(5));
        }
    };
    std::vector<std::thread> pool;
    for (int i = 0; i < threads; ++i) pool.emplace_back(worker);
    for (auto &t : pool) t.join();
    return !timedOut;
}

uint64_t MemNetwork::steps() const {
    std::lock_guard lock(mu_);
    return step_;
}

// ---- what happened

std::vector<MemNetwork::Close> MemNetwork::closes() const {
    std::lock_guard lock(mu_);
    return closes_;
}

std::vector<uint64_t> MemNetwork::framesWritten(const Uuid &from, const Uuid &to) const {
    std::lock_guard lock(mu_);
    std::vector<uint64_t> out;
    for (auto &c : conns_) {
        if (c->from != from || c->to != to) continue;
        if (out.size() <= static_cast<size_t>(c->index)) out.resize(static_cast<size_t>(c->index) + 1);
        out[static_cast<size_t>(c->index)] += c->written;
    }
    return out;
}

uint64_t MemNetwork::framesQueued(const Uuid &from, const Uuid &to) const {
    std::lock_guard lock(mu_);
    auto it = queued_.find({from, to});
    return it == queued_.end() ? 0 : it->second;
}

std::string MemNetwork::trace() const {
    std::lock_guard lock(mu_);
    std::ostringstream os;
    os << "step " << step_ << ", " << posted_.size() << " posted callbacks\n";
    for (auto &[key, q] : shared_)
        if (!q.empty()) os << "  " << key.first.shortStr() << " -> " << key.second.shortStr() << ": " << q.size() << " frames not taken\n";
    for (auto &[id, p] : peers_)
        if (p->frozen) os << "  peer " << id.shortStr() << " frozen\n";
    static const char *rd[] = {"header", "payload", "discard", "parked", "redispatch"};
    for (auto &c : conns_) {
        os << "  " << c->from.shortStr() << " -> " << c->to.shortStr() << " #" << c->index << ": "
           << (c->sendOpen ? "" : "send closed, ") << (c->readOpen ? "" : "read closed, ") << c->queue.size()
           << " queued, " << c->written << " written, " << available(*c) << " bytes unread, reading "
           << rd[static_cast<int>(c->rd)] << (c->stalled ? ", stalled" : "") << (c->ended ? ", ended" : "") << "\n";
    }
    return os.str();
}

} // namespace pccl_test
