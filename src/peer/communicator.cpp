#include "peer/communicator.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "collectives/allreduce_ring.h"
#include "collectives/reduce_kernels.h"
#include "transport/bandwidth_probe.h"
#include "transport/same_host.h"
#include "util/log.h"

namespace pccl::peer {

using namespace protocol;

namespace {

long envLong(const char *name, long fallback, long lo, long hi) {
    const char *v = std::getenv(name);
    if (!v || !*v) return fallback;
    char *end = nullptr;
    const long x = std::strtol(v, &end, 10);
    if (*end || x < lo || x > hi) {
        PCCL_LOG(Warn, "ignoring " << name << "=" << v << " (expected " << lo << ".." << hi << ")");
        return fallback;
    }
    return x;
}

} // namespace

CommOptions CommOptions::fromEnvironment() {
    CommOptions o;
    o.poolSize = static_cast<int>(envLong("PCCL_POOL_SIZE", o.poolSize, 1, 64));
    o.ioThreads = static_cast<int>(envLong("PCCL_IO_THREADS", o.ioThreads, 1, 64));
    o.connectTimeout = std::chrono::milliseconds(envLong("PCCL_CONNECT_TIMEOUT_MS", o.connectTimeout.count(), 1, 3600000));
    o.segmentBytes = static_cast<size_t>(envLong("PCCL_SEGMENT_BYTES", 0, 4096, 64 << 20));
    o.heartbeatTimeout = std::chrono::milliseconds(envLong("PCCL_HEARTBEAT_TIMEOUT_MS", o.heartbeatTimeout.count(), 100, 3600000));
    o.opTimeout = std::chrono::milliseconds(envLong("PCCL_OP_TIMEOUT_MS", o.opTimeout.count(), 100, 24L * 3600000));
    o.stateCompressionLevel = static_cast<int>(envLong("PCCL_STATE_COMPRESSION_LEVEL", 0, 0, 19));
    if (const char *cc = std::getenv("PCCL_TCP_CONGESTION"); cc && *cc) {
        if (std::strlen(cc) < 16)
            o.tcpCongestion = cc;
        else
            PCCL_LOG(Warn, "ignoring PCCL_TCP_CONGESTION=" << cc << " (at most 15 characters)");
    }
    o.sameHost = transport::sameHostFromEnvironment();
    if (std::getenv("PCCL_ADMISSION_TIMEOUT_MS"))
        o.admissionTimeout = std::chrono::milliseconds(envLong("PCCL_ADMISSION_TIMEOUT_MS", 0, 1, 1L << 40));
    return o;
}

Communicator::Communicator(CommOptions options)
    : options_(std::move(options)), data_(options_.ioThreads), scratch_(std::make_shared<collectives::ScratchPool>()) {}

Communicator::~Communicator() {
    bool wasConnected;
    {
        std::unique_lock lock(mu_);
        wasConnected = phase_ == Phase::Connected || phase_ == Phase::Connecting;
    }
    // Abort whatever is still in flight and wait (bounded) until no I/O touches user memory.
    failEverything(Status{pcclInvalidUsage, "communicator destroyed"});
    {
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, std::chrono::seconds(10), [&] {
            return std::all_of(ops_.begin(), ops_.end(), [](auto &kv) { return kv.second->done; });
        });
    }
    if (wasConnected) control_.stop(Leave{});
    else control_.stop();
}

bool Communicator::connected() const {
    std::lock_guard lock(mu_);
    return phase_ == Phase::Connected;
}

size_t Communicator::inFlight() const {
    std::lock_guard lock(mu_);
    size_t n = 0;
    for (auto &[tag, op] : ops_) n += op->done ? 0 : 1;
    return n;
}

template <class Pred>
Status Communicator::waitUntil(std::unique_lock<std::mutex> &lock, Pred pred,
                               std::optional<std::chrono::milliseconds> timeout, const char *what) {
    auto ready = [&] { return pred() || phase_ == Phase::Dead; };
    if (timeout) {
        if (!cv_.wait_for(lock, *timeout, ready))
            return {pcclTimeout, std::string(what) + " timed out after " + std::to_string(timeout->count()) + " ms"};
    } else {
        cv_.wait(lock, ready);
    }
    if (!pred() && phase_ == Phase::Dead)
        return {deathStatus_.code(), deathStatus_.message() + "; on this peer: " + what + " was waiting for the master"};
    return {};
}

Status Communicator::connect() {
    {
        std::lock_guard lock(mu_);
        if (phase_ == Phase::Dead) return deathStatus_;
        if (phase_ != Phase::Created) return invalidUsage("pcclConnect: the communicator is already connected");
        phase_ = Phase::Connecting;
    }
    auto resetPhase = [&](Status st) {
        std::lock_guard lock(mu_);
        phase_ = Phase::Created;
        return st;
    };
    if (data_.port() == 0) {
        data_.setCongestionControl(options_.tcpCongestion);
        data_.setSameHost(options_.sameHost);
        if (auto st = data_.listen(0); !st.ok()) return resetPhase(st);
    }
    {
        std::lock_guard lock(mu_);
        if (self_.isNil()) self_ = Uuid::random();
        data_.setSelf(self_);
    }
    if (auto st = control_.connect(options_.master, options_.connectTimeout); !st.ok()) return resetPhase(st);
    lastAck_ = std::chrono::steady_clock::now();  // before the control thread starts
    control_.start([this](ControlMessage &&m) { onMessage(std::move(m)); },
                   [this](const std::string &reason) { onClosed(reason); });
    const auto period = std::min({std::chrono::milliseconds(1000), options_.heartbeatTimeout / 4, options_.opTimeout / 4});
    control_.every(period, [this, period, lastTick = lastAck_]() mutable {
        {
            std::lock_guard lock(mu_);
            if (phase_ == Phase::Dead) return;
        }
        const auto now = std::chrono::steady_clock::now();
        // A tick this late means the process did not run in between (SIGSTOP, a suspended VM):
        // the master's silence then proves nothing, and what it sent meanwhile (e.g. Kicked) is
        // still unread. The deadline restarts, so that a stopped and resumed peer learns what
        // the master decided instead of reporting a lost master.
        if (now - lastTick > period + options_.heartbeatTimeout / 2) lastAck_ = now;
        lastTick = now;
        const auto silent = now - lastAck_;
        if (silent > options_.heartbeatTimeout) {
            failEverything(Status{pcclMasterConnectionLost,
                                  "the master " + options_.master.str() + " answered no heartbeat for " +
                                      std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(silent).count()) + " ms"});
            return;
        }
        control_.send(Heartbeat{});
        checkProgress();
    });
    Hello hello;
    hello.peer_group = options_.peerGroup;
    hello.data_port = data_.port();
    hello.uuid = self_;
    hello.heartbeat_timeout_ms = static_cast<uint32_t>(options_.heartbeatTimeout.count());
    control_.send(hello);
    std::unique_lock lock(mu_);
    auto st = waitUntil(lock, [&] { return phase_ == Phase::Connected; }, options_.admissionTimeout, "pcclConnect");
    if (!st.ok()) {
        PCCL_LOG(Warn, "connect failed: " << st.message());
        phase_ = Phase::Dead;
        if (deathStatus_.ok()) deathStatus_ = st;
    }
    return st;
}

void Communicator::onMessage(ControlMessage &&message) {
    std::visit(
        [&](auto &m) {
            using M = std::decay_t<decltype(m)>;
            if constexpr (std::is_same_v<M, HeartbeatAck>) {
                lastAck_ = std::chrono::steady_clock::now();
            } else if constexpr (std::is_same_v<M, Welcome>) {
                PCCL_LOG(Info, "registered as peer " << m.uuid.shortStr() << " (seen as " << m.observed_addr.str()
                                                      << "), waiting for admission");
            } else if constexpr (std::is_same_v<M, Reject>) {
                failEverything(Status{static_cast<pcclResult_t>(m.result), "master rejected this peer: " + m.reason});
            } else if constexpr (std::is_same_v<M, Kicked>) {
                failEverything(Status{pcclKicked, "removed by the master: " + m.reason});
            } else if constexpr (std::is_same_v<M, TopologyUpdate>) {
                onTopology(m);
            } else if constexpr (std::is_same_v<M, TopologyDone>) {
                std::lock_guard lock(mu_);
                topologyStatus_ = m.ok ? Status{} : Status{pcclUpdateTopologyFailed, "topology update failed: " + m.error};
                ++topologyRounds_;
                if (phase_ == Phase::Connecting) {
                    if (m.ok) {
                        phase_ = Phase::Connected;
                    } else {
                        phase_ = Phase::Dead;
                        deathStatus_ = Status{pcclRankConnectionFailed, "could not link to the ring: " + m.error};
                    }
                }
                cv_.notify_all();
            } else if constexpr (std::is_same_v<M, PeersPendingResult>) {
                std::lock_guard lock(mu_);
                lastPending_ = m.pending;
                pendingStatus_ = Status{};
                ++pendingResults_;
                cv_.notify_all();
            } else if constexpr (std::is_same_v<M, OptimizeTopologyResult>) {
                std::lock_guard lock(mu_);
                lastOptimize_ = m.ok ? Status{} : Status{pcclTopologyOptimizationFailed, m.error};
                ++optimizeResults_;
                cv_.notify_all();
            } else if constexpr (std::is_same_v<M, BandwidthProbe>) {
                onBandwidthProbe(m);
            } else if constexpr (std::is_same_v<M, VoteFailed>) {
                onVoteFailed(m);
            } else if constexpr (std::is_same_v<M, WorldUpdate>) {
                std::lock_guard lock(mu_);
                world_ = m.world;
            } else if constexpr (std::is_same_v<M, SharedStateSourceLost>) {
                onSourceLost(m);
            } else if constexpr (std::is_same_v<M, SharedStatePlan>) {
                onSyncPlan(m);
            } else if constexpr (std::is_same_v<M, SharedStateCommitted>) {
                onSyncEnd(m.seq, Status{}, m.revision);
            } else if constexpr (std::is_same_v<M, SharedStateAborted>) {
                for (auto &u : m.lost) data_.closePeer(u, "peer removed from the run");
                onSyncEnd(m.seq, Status{static_cast<pcclResult_t>(m.result), m.reason}, 0);
            } else if constexpr (std::is_same_v<M, CollectiveCommence>) {
                onCommence(m);
            } else if constexpr (std::is_same_v<M, CollectiveCommitted>) {
                std::shared_ptr<Op> op;
                {
                    std::lock_guard lock(mu_);
                    auto it = ops_.find(m.tag);
                    if (it == ops_.end() || it->second->seq != m.seq || it->second->done) return;
                    op = it->second;
                }
                data_.unregisterSink(m.seq);
                finishOp(op, Status{});
            } else if constexpr (std::is_same_v<M, CollectiveAborted>) {
                // Nothing more will come from a removed peer: close its connections so that no
                // read or write waits on it.
                for (auto &u : m.lost) data_.closePeer(u, "peer removed from the run");
                std::shared_ptr<Op> op;
                {
                    std::lock_guard lock(mu_);
                    auto it = ops_.find(m.tag);
                    if (it == ops_.end() || it->second->seq != m.seq || it->second->done) return;
                    op = it->second;
                }
                Status st{static_cast<pcclResult_t>(m.result), m.reason + "; on this peer: " + progressOf(*op)};
                PCCL_LOG(Info, "all-reduce tag " << m.tag << " aborted: " << st.message());
                abortOp(op, op->engine, st);
            } else {
                const std::string why = std::string("protocol error: unexpected ") + messageName(message) + " from the master";
                failEverything(Status{pcclMasterConnectionLost, why});
                control_.disconnect(why);
            }
        },
        message);
}

void Communicator::onTopology(const TopologyUpdate &m) {
    RingMember next;
    size_t n;
    {
        std::lock_guard lock(mu_);
        ring_ = m.ring;
        world_ = m.world;
        epoch_ = m.epoch;
        n = ring_.size();
        auto me = std::find_if(ring_.begin(), ring_.end(), [&](auto &r) { return r.uuid == self_; });
        if (me == ring_.end()) {
            control_.send(LinksReady{m.epoch, false, "this peer is not in its own ring"});
            return;
        }
        next = ring_[(static_cast<size_t>(me - ring_.begin()) + 1) % n];
    }
    if (n == 1) {
        control_.send(LinksReady{m.epoch, true, ""});
        return;
    }
    const uint64_t epoch = m.epoch;
    data_.connect(next.uuid, next.data_addr, options_.poolSize, options_.connectTimeout, [this, epoch](Status st) {
        control_.send(LinksReady{epoch, st.ok(), st.message()});
    });
}

Status Communicator::updateTopology() {
    std::unique_lock lock(mu_);
    if (phase_ == Phase::Dead) return deathStatus_;
    if (phase_ != Phase::Connected) return invalidUsage("pcclUpdateTopology: the communicator is not connected");
    for (auto &[tag, op] : ops_)
        if (!op->done)
            return {pcclPendingAsyncOps, "pcclUpdateTopology: all-reduce tag " + std::to_string(tag) + " is still in flight"};
    const uint64_t target = topologyRounds_ + 1;
    control_.send(VoteUpdateTopology{});
    PCCL_RETURN_IF_ERROR(waitUntil(lock, [&] { return topologyRounds_ >= target; }, std::nullopt, "pcclUpdateTopology"));
    return topologyStatus_;
}

Result<bool> Communicator::arePeersPending() {
    std::unique_lock lock(mu_);
    if (phase_ == Phase::Dead) return deathStatus_;
    if (phase_ != Phase::Connected) return invalidUsage("pcclArePeersPending: the communicator is not connected");
    const uint64_t target = pendingResults_ + 1;
    control_.send(VotePeersPending{});
    PCCL_RETURN_IF_ERROR(waitUntil(lock, [&] { return pendingResults_ >= target; }, std::nullopt, "pcclArePeersPending"));
    PCCL_RETURN_IF_ERROR(pendingStatus_);
    return lastPending_;
}

Status Communicator::optimizeTopology() {
    std::unique_lock lock(mu_);
    if (phase_ == Phase::Dead) return deathStatus_;
    if (phase_ != Phase::Connected) return invalidUsage("pcclOptimizeTopology: the communicator is not connected");
    for (auto &[tag, op] : ops_)
        if (!op->done)
            return {pcclPendingAsyncOps, "pcclOptimizeTopology: all-reduce tag " + std::to_string(tag) + " is still in flight"};
    const uint64_t target = optimizeResults_ + 1;
    control_.send(VoteOptimizeTopology{});
    PCCL_RETURN_IF_ERROR(waitUntil(lock, [&] { return optimizeResults_ >= target; }, std::nullopt, "pcclOptimizeTopology"));
    return lastOptimize_;
}

Result<int> Communicator::attribute(pcclAttribute_t attribute) const {
    std::lock_guard lock(mu_);
    if (phase_ == Phase::Dead) return deathStatus_;
    if (phase_ != Phase::Connected) return invalidUsage("pcclGetAttribute: the communicator is not connected");
    switch (attribute) {
        case PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE: return static_cast<int>(world_.global_world_size);
        case PCCL_ATTRIBUTE_PEER_GROUP_WORLD_SIZE: return static_cast<int>(world_.group_world_size);
        case PCCL_ATTRIBUTE_NUM_DISTINCT_PEER_GROUPS: return static_cast<int>(world_.num_groups);
        case PCCL_ATTRIBUTE_LARGEST_PEER_GROUP_WORLD_SIZE: return static_cast<int>(world_.largest_group);
    }
    return invalidArgument("pcclGetAttribute: unknown attribute " + std::to_string(static_cast<int>(attribute)));
}

Status Communicator::startAllReduce(const ReduceArgs &args) {
    auto op = std::make_shared<Op>();
    op->args = args;
    {
        std::lock_guard lock(mu_);
        if (phase_ == Phase::Dead) return deathStatus_;
        if (phase_ != Phase::Connected) return invalidUsage("all-reduce: the communicator is not connected");
        if (ops_.count(args.tag))
            return invalidUsage("all-reduce: tag " + std::to_string(args.tag) + " is already in flight on this communicator");
        ops_[args.tag] = op;
    }
    CollectiveDesc d;
    d.count = args.count;
    d.dtype = static_cast<uint8_t>(args.dtype);
    d.op = static_cast<uint8_t>(args.op);
    d.quant_dtype = static_cast<uint8_t>(args.quant.quantized_datatype);
    d.quant_algo = static_cast<uint8_t>(args.quant.algorithm);
    control_.send(CollectiveInit{args.tag, d});
    return {};
}

void Communicator::onCommence(const CollectiveCommence &m) {
    std::shared_ptr<Op> op;
    collectives::RingAllReduceParams p;
    RingMember next;
    {
        std::lock_guard lock(mu_);
        auto it = ops_.find(m.tag);
        if (it == ops_.end() || it->second->done || it->second->seq != 0) {
            PCCL_LOG(Warn, "commence for tag " << m.tag << " that is not waiting; reporting failure");
            control_.send(CollectiveDone{m.tag, m.seq, false, "tag not in flight on " + self_.shortStr()});
            return;
        }
        op = it->second;
        auto me = std::find_if(m.ring.begin(), m.ring.end(), [&](auto &r) { return r.uuid == self_; });
        if (me == m.ring.end()) {
            control_.send(CollectiveDone{m.tag, m.seq, false, "not part of the ring"});
            return;
        }
        const uint32_t n = static_cast<uint32_t>(m.ring.size());
        const uint32_t rank = static_cast<uint32_t>(me - m.ring.begin());
        op->seq = m.seq;
        op->worldSize = n;
        p.seq = m.seq;
        p.send = op->args.send;
        p.recv = op->args.recv;
        p.count = op->args.count;
        p.dtype = op->args.dtype;
        p.op = op->args.op;
        p.rank = rank;
        p.worldSize = n;
        p.prev = m.ring[(rank + n - 1) % n].uuid;
        next = m.ring[(rank + 1) % n];
        p.next = next.uuid;
        p.segmentBytes = options_.segmentBytes;
        p.quant = op->args.quant;
        p.scratch = scratch_;
        p.tag = m.tag;
        auto name = [](const RingMember &r) { return "peer " + r.uuid.shortStr() + " (" + r.data_addr.str() + ")"; };
        p.prevName = name(m.ring[(rank + n - 1) % n]);
        p.nextName = name(next);
        op->engine = std::make_shared<collectives::RingAllReduce>(
            data_, p, [this, op](Status st) { onOpFinished(op, std::move(st)); });
    }
    auto engine = op->engine;
    PCCL_LOG(Debug, "all-reduce tag " << m.tag << " seq " << m.seq << " commences: rank " << p.rank << " of "
                                      << p.worldSize << ", next " << p.next.shortStr());
    if (p.worldSize == 1) {
        engine->start();
        return;
    }
    data_.registerSink(m.seq, engine);
    data_.connect(next.uuid, next.data_addr, options_.poolSize, options_.connectTimeout, [engine](Status st) {
        if (st.ok()) engine->start();
        else engine->fail(Status{st.code(), st.message() + " (" + engine->progress() + ")"});
    });
}

void Communicator::onOpFinished(const std::shared_ptr<Op> &op, Status status) {
    if (!status.ok()) PCCL_LOG(Info, "all-reduce tag " << op->args.tag << " failed locally: " << status.message());
    CollectiveDone done{op->args.tag, op->seq, status.ok(), status.message(), static_cast<uint8_t>(status.code()), 0};
    // A large enough transfer is a measurement of the link to the successor.
    if (status.ok() && op->engine && op->engine->txBytes() >= (4u << 20)) done.send_bytes_per_s = op->engine->sendRate();
    control_.send(std::move(done));
}

void Communicator::checkProgress() {
    std::vector<std::shared_ptr<transport::DataOperation>> running;
    {
        std::lock_guard lock(mu_);
        for (auto &[tag, op] : ops_)
            if (!op->done && op->engine) running.push_back(op->engine);
        if (auto t = runningTransferLocked()) running.push_back(std::move(t));
    }
    for (auto &op : running) {
        if (auto why = op->stalled(options_.opTimeout)) {
            PCCL_LOG(Warn, *why);
            op->fail(Status{pcclTimeout, *why});
        } else {
            op->forceQuiescence(options_.opTimeout);
        }
    }
}

void Communicator::onBandwidthProbe(const BandwidthProbe &m) {
    const bool member = std::any_of(m.peers.begin(), m.peers.end(), [&](auto &r) { return r.uuid == self_; });
    if (!member || m.peers.size() < 2 || m.window_ms == 0 || m.window_ms > 10000) {
        control_.send(BandwidthReport{m.round, {}, {}});
        return;
    }
    const auto window = std::chrono::milliseconds(m.window_ms);
    // Every peer streams to every other at once for the whole window (links are measured in
    // parallel); rates come from the second half, after slow start. 32 KiB frames, 16 queued
    // per connection of the pool: the socket buffers stay full, and a 15 Mbit/s link still
    // completes ~60 frames in the measured second.
    const auto start = std::chrono::steady_clock::now();
    auto probe = std::make_shared<transport::BandwidthProbe>(data_, m.seq, size_t{32} << 10, 16 * options_.poolSize,
                                                             start + window / 2, start + window);
    data_.registerSink(m.seq, probe);
    for (const RingMember &to : m.peers)
        if (to.uuid != self_) probe->sendTo(to.uuid, to.data_addr, options_.poolSize, options_.connectTimeout, start + window);
    // At the end of the window the frames still queued are dropped: on a slow link they would
    // hold up the next collective on the same connections for seconds. Frames already in the
    // sockets still arrive and count; then report.
    control_.after(window, [this, seq = m.seq] { data_.cancelSends(seq); });
    control_.after(window + std::chrono::milliseconds(300), [this, probe, round = m.round, seq = m.seq] {
        BandwidthReport report{round, {}, {}};
        for (auto &[from, rate] : probe->rates()) {
            report.from.push_back(from);
            report.bytes_per_s.push_back(rate);
        }
        data_.unregisterSink(seq);
        control_.send(std::move(report));
    });
}

void Communicator::onVoteFailed(const VoteFailed &m) {
    std::lock_guard lock(mu_);
    Status st{static_cast<pcclResult_t>(m.result), m.reason};
    switch (static_cast<VoteKind>(m.vote)) {
        case VoteKind::Topology:
            topologyStatus_ = st;
            ++topologyRounds_;
            break;
        case VoteKind::PeersPending:
            pendingStatus_ = st;
            ++pendingResults_;
            break;
        case VoteKind::Optimize:
            lastOptimize_ = st;
            ++optimizeResults_;
            break;
    }
    cv_.notify_all();
}

void Communicator::finishOp(const std::shared_ptr<Op> &op, Status status) {
    std::lock_guard lock(mu_);
    if (op->done) return;
    op->done = true;
    op->status = std::move(status);
    op->result.worldSize = op->worldSize;
    if (op->engine) {
        op->result.txBytes = op->engine->txBytes();
        op->result.rxBytes = op->engine->rxBytes();
    }
    cv_.notify_all();
}

Status Communicator::awaitAllReduce(uint64_t tag, ReduceResult *result) {
    std::unique_lock lock(mu_);
    auto it = ops_.find(tag);
    if (it == ops_.end()) return invalidUsage("await: no all-reduce with tag " + std::to_string(tag) + " is in flight");
    auto op = it->second;
    cv_.wait(lock, [&] { return op->done; });
    ops_.erase(tag);
    if (result) *result = op->result;
    return op->status;
}

void Communicator::failEverything(const Status &status) {
    std::vector<std::pair<std::shared_ptr<Op>, std::shared_ptr<collectives::RingAllReduce>>> live;
    {
        std::lock_guard lock(mu_);
        if (phase_ != Phase::Dead) {
            phase_ = Phase::Dead;
            deathStatus_ = status;
        }
        for (auto &[tag, op] : ops_)
            if (!op->done) live.emplace_back(op, op->engine);
        cv_.notify_all();
    }
    // Without a master nothing is coordinated any more: stop all data traffic so that every
    // operation quiesces promptly.
    data_.closeAll(status.message());
    abortSync(status);
    for (auto &[op, engine] : live)
        abortOp(op, engine, Status{status.code(), status.message() + "; on this peer: " + progressOf(*op)});
}

std::string Communicator::progressOf(Op &op) {
    std::shared_ptr<collectives::RingAllReduce> engine;
    {
        std::lock_guard lock(mu_);
        engine = op.engine;
    }
    if (engine) return engine->progress();
    return "all-reduce tag " + std::to_string(op.args.tag) + ", waiting to start (not every peer had started it)";
}

void Communicator::abortOp(const std::shared_ptr<Op> &op, std::shared_ptr<collectives::RingAllReduce> engine,
                           Status status) {
    if (!engine) return finishOp(op, std::move(status));
    const uint64_t seq = op->seq;
    const std::string reason = status.message();
    engine->abort(reason, [this, op, status = std::move(status), seq] {
        data_.unregisterSink(seq);
        finishOp(op, status);
    });
}

void Communicator::onClosed(const std::string &reason) {
    bool connecting;
    {
        std::lock_guard lock(mu_);
        connecting = phase_ == Phase::Connecting;
    }
    failEverything(Status{connecting ? pcclMasterConnectionFailed : pcclMasterConnectionLost,
                          "connection to the master " + options_.master.str() + " lost: " + reason});
}

} // namespace pccl::peer
