#include "peer/communicator.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "collectives/allreduce_ring.h"
#include "collectives/reduce_kernels.h"
#include "transport/address.h"
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
    if (const char *a = std::getenv("PCCL_ADVERTISED_ADDRESS")) o.advertisedAddress = a;
    if (const char *m = std::getenv("PCCL_MASTER_ADDRESSES")) o.masterAddresses = m;
    o.reconnectTimeout = std::chrono::milliseconds(
        envLong("PCCL_MASTER_RECONNECT_TIMEOUT_MS", o.reconnectTimeout.count(), 0, 24L * 3600000));
    if (const char *r = std::getenv("PCCL_PORT_RANGE")) o.portRange = r;
    return o;
}

Status CommOptions::parseNetwork(const std::string &advertisedSource, const std::string &rangeSource,
                                 const std::string &mastersSource) {
    advertised = NetAddr{0, {}, 0};
    portLo = portHi = 0;
    masters = {master};
    for (size_t at = 0; at <= masterAddresses.size() && !masterAddresses.empty();) {
        const size_t comma = std::min(masterAddresses.find(',', at), masterAddresses.size());
        std::string entry = masterAddresses.substr(at, comma - at);
        entry.erase(0, entry.find_first_not_of(" \t"));
        entry.erase(entry.find_last_not_of(" \t") + 1);
        at = comma + 1;
        if (entry.empty()) continue;
        auto a = transport::parseSocketAddress(entry, 48148);
        if (!a.ok())
            return invalidArgument(mastersSource + " entry \"" + entry + "\": " + a.status().message());
        if (std::find(masters.begin(), masters.end(), *a) == masters.end()) masters.push_back(*a);
        if (masters.size() > 64) return invalidArgument(mastersSource + ": more than 64 master addresses");
    }
    if (!advertisedAddress.empty()) {
        auto a = transport::parseAdvertisedAddress(advertisedAddress);
        if (!a.ok()) return invalidArgument(advertisedSource + " \"" + advertisedAddress + "\": " + a.status().message());
        advertised = *a;
    }
    if (portRange.empty()) return {};
    if (auto st = transport::parsePortRange(portRange, &portLo, &portHi); !st.ok())
        return invalidArgument(rangeSource + " \"" + portRange + "\": " + st.message());
    return {};
}

Communicator::Communicator(CommOptions options)
    : options_(std::move(options)), fallbackMasters_{options_.master}, data_(options_.ioThreads), scratch_(std::make_shared<collectives::ScratchPool>()),
      session_([this] {
          SessionOptions o;
          o.masterName = options_.master.str();
          o.heartbeatTimeoutMs = static_cast<uint64_t>(options_.heartbeatTimeout.count());
          o.tickPeriodMs = static_cast<uint64_t>(tickPeriod().count());
          if (options_.admissionTimeout) o.admissionTimeoutMs = static_cast<uint64_t>(options_.admissionTimeout->count());
          o.reconnectTimeoutMs = static_cast<uint64_t>(options_.reconnectTimeout.count());
          o.masterCount = std::max<size_t>(options_.masters.size(), 1);
          for (auto &m : options_.masters) o.masterNames.push_back(m.str());
          return o;
      }()) {}

Communicator::~Communicator() {
    bool wasConnected;
    {
        std::lock_guard lock(sessionMu_);
        wasConnected = session_.phase() == Phase::Connected || session_.phase() == Phase::Connecting;
    }
    // Abort whatever is still in flight and wait (bounded) until no I/O touches user memory.
    post([](Session &s) { return s.abort(Status{pcclInvalidUsage, "communicator destroyed"}); });
    {
        std::unique_lock lock(sessionMu_);
        sessionCv_.wait_for(lock, std::chrono::seconds(10), [&] { return session_.allQuiet(); });
    }
    if (wasConnected) control_.stop(Leave{});
    else control_.stop();
    std::lock_guard lock(sessionMu_);
    controlRunning_ = false;
    controlStopped_ = true;
}

std::chrono::milliseconds Communicator::tickPeriod() const {
    return std::min({std::chrono::milliseconds(1000), options_.heartbeatTimeout / 4, options_.opTimeout / 4});
}

uint64_t Communicator::nowUs() {
    return static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}

void Communicator::abort() {
    post([](Session &s) { return s.abort(Status{pcclAborted, "the communicator was aborted (pcclAbortCommunicator)"}); });
}

bool Communicator::connected() const {
    std::lock_guard lock(sessionMu_);
    return session_.phase() == Phase::Connected;
}

size_t Communicator::inFlight() const {
    std::lock_guard lock(sessionMu_);
    return session_.inFlight();
}

Stats Communicator::stats() const {
    std::lock_guard lock(sessionMu_);
    return session_.stats();
}

void Communicator::run(const Step &step) {
    Actions actions;
    {
        std::lock_guard lock(sessionMu_);
        session_.setTimeUs(nowUs());
        actions = step(session_);
    }
    sessionCv_.notify_all();
    execute(std::move(actions));
}

void Communicator::post(Step step) {
    {
        std::unique_lock lock(sessionMu_);
        if (controlStopped_) return;  // late news from an I/O thread: nobody listens any more
        if (controlRunning_) {
            lock.unlock();
            control_.post([this, step = std::move(step)] { run(step); });
            return;
        }
    }
    run(step);  // no control thread runs yet: nothing races with us
}

std::pair<Status, Reply> Communicator::call(std::function<Actions(Session &, RequestId)> make) {
    const RequestId id = nextRequest_.fetch_add(1);
    post([id, make = std::move(make)](Session &s) { return make(s, id); });
    std::unique_lock lock(answerMu_);
    answerCv_.wait(lock, [&] { return answers_.count(id) != 0; });
    auto answer = std::move(answers_[id]);
    answers_.erase(id);
    return answer;
}

void Communicator::execute(Actions actions) {
    for (auto &a : actions) execute(a);
}

void Communicator::execute(Action &action) {
    std::visit(
        [&](auto &a) {
            using A = std::decay_t<decltype(a)>;
            if constexpr (std::is_same_v<A, SendToMaster>) control_.send(std::move(a.message));
            else if constexpr (std::is_same_v<A, DisconnectMaster>) control_.disconnect(a.reason);
            else if constexpr (std::is_same_v<A, ReconnectMaster>) reconnect(a);
            else if constexpr (std::is_same_v<A, ConnectLinks>)
                data_.connect(a.next.uuid, a.next.data_addr, options_.poolSize, options_.connectTimeout,
                              [this, epoch = a.epoch](Status st) {
                                  post([epoch, st](Session &s) { return s.onLinksConnected(epoch, st); });
                              });
            else if constexpr (std::is_same_v<A, ClosePeer>) {
                data_.revoke(a.peer);
                data_.closePeer(a.peer, a.reason);
            } else if constexpr (std::is_same_v<A, InstallKeys>) {
                if (a.own) data_.setOwnKey(*a.own);
                data_.addPeerKeys(a.peers);
            } else if constexpr (std::is_same_v<A, CloseAllData>) data_.closeAll(a.reason);
            else if constexpr (std::is_same_v<A, StartAllReduce>) startAllReduceEngine(a);
            else if constexpr (std::is_same_v<A, ReleaseAllReduce>) {
                data_.unregisterSink(a.seq);
                engines_.erase({a.tag, a.seq});
            } else if constexpr (std::is_same_v<A, StopAllReduce>) stopAllReduceEngine(a);
            else if constexpr (std::is_same_v<A, StartTransfer>) startTransfer(a);
            else if constexpr (std::is_same_v<A, StopTransfer>) stopTransfer(a);
            else if constexpr (std::is_same_v<A, SourceLost>) {
                if (transfer_) transfer_->sourceLost(a.peer);
            } else if constexpr (std::is_same_v<A, StartProbe>) startProbe(a.probe);
            else if constexpr (std::is_same_v<A, Complete>) {
                {
                    std::lock_guard lock(answerMu_);
                    answers_[a.id] = {std::move(a.status), std::move(a.reply)};
                }
                answerCv_.notify_all();
            }
        },
        action);
}

Status Communicator::connect() {
    {
        std::lock_guard lock(sessionMu_);
        PCCL_RETURN_IF_ERROR(session_.beginConnect());
    }
    auto failed = [&](Status st) {
        std::lock_guard lock(sessionMu_);
        (void)session_.connectFailed();
        return st;
    };
    if (data_.port() == 0) {
        data_.setCongestionControl(options_.tcpCongestion);
        data_.setSameHost(options_.sameHost);
        data_.setSecurity(options_.security);
        if (auto st = data_.listen(options_.portLo, options_.portHi); !st.ok()) return failed(st);
    }
    Uuid self;
    {
        std::lock_guard lock(sessionMu_);
        if (session_.self().isNil()) session_.setSelf(Uuid::random());
        self = session_.self();
    }
    data_.setSelf(self);
    // A master host that acknowledges nothing for the heartbeat deadline is a closed connection.
    control_.setUserTimeout(options_.heartbeatTimeout);
    Status st = control_.connect(masters().front(), options_.connectTimeout, options_.security);
    size_t answered = 0;  // the address whose connection answered: the session names and reconnects it
    for (size_t i = 1; i < masters().size() && !st.ok() && st.code() != pcclAuthenticationFailed; ++i) {
        PCCL_LOG(Info, st.message() << "; trying the next master address");
        st = control_.connect(masters()[i], options_.connectTimeout, options_.security);
        answered = i;
    }
    if (!st.ok()) return failed(st);
    {
        std::lock_guard lock(sessionMu_);
        controlRunning_ = true;
    }
    control_.start([this](ControlMessage &&m) { post([m = std::move(m)](Session &s) { return s.onMessage(m); }); },
                   [this](const std::string &reason) { run([&](Session &s) { return s.onControlClosed(reason); }); });
    control_.every(tickPeriod(), [this] { tick(); });
    if (options_.admissionTimeout) control_.after(*options_.admissionTimeout, [this] { tick(); });
    Hello hello;
    hello.peer_group = options_.peerGroup;
    hello.data_port = data_.port();
    hello.uuid = self;
    hello.heartbeat_timeout_ms = static_cast<uint32_t>(options_.heartbeatTimeout.count());
    hello.advertised = options_.advertised;
    return call([hello, answered](Session &s, RequestId id) { return s.connected(id, hello, answered); }).first;
}

const std::vector<NetAddr> &Communicator::masters() const {
    return options_.masters.empty() ? fallbackMasters_ : options_.masters;
}

void Communicator::reconnect(const ReconnectMaster &a) {
    const NetAddr where = masters()[a.address % masters().size()];
    // A master that takes the connection but does not finish the handshake within the heartbeat
    // deadline is as silent as one that answers no heartbeat (stopped: its kernel still accepts).
    const auto timeout = std::min<std::chrono::milliseconds>(
        {options_.connectTimeout, std::chrono::seconds(5), options_.heartbeatTimeout});
    auto attempt = [this, where, timeout] {
        control_.reconnect(where, timeout, options_.security, [this](Status st) {
            run([&](Session &s) { return s.onReconnected(st); });
        });
    };
    if (a.delayMs == 0) control_.post(attempt);
    else control_.after(std::chrono::milliseconds(a.delayMs), attempt);
}

void Communicator::tick() {
    run([](Session &s) { return s.onTick(); });
    checkProgress();
}

Status Communicator::updateTopology() {
    return call([](Session &s, RequestId id) { return s.vote(id, VoteKind::Topology); }).first;
}

Result<bool> Communicator::arePeersPending() {
    auto [st, reply] = call([](Session &s, RequestId id) { return s.vote(id, VoteKind::PeersPending); });
    PCCL_RETURN_IF_ERROR(st);
    return std::get<bool>(reply);
}

Status Communicator::optimizeTopology() {
    return call([](Session &s, RequestId id) { return s.vote(id, VoteKind::Optimize); }).first;
}

Result<int> Communicator::attribute(pcclAttribute_t attribute) const {
    std::lock_guard lock(sessionMu_);
    return session_.attribute(attribute);
}

Result<std::vector<RingMember>> Communicator::members(uint32_t *group) const {
    std::lock_guard lock(sessionMu_);
    *group = session_.group();
    return session_.members();
}

Status Communicator::startAllReduce(const ReduceArgs &args) {
    const uint64_t segment = options_.segmentBytes;
    return call([args, segment](Session &s, RequestId id) { return s.startAllReduce(id, args, segment); }).first;
}

Status Communicator::awaitAllReduce(uint64_t tag, ReduceResult *result) {
    auto [st, reply] = call([tag](Session &s, RequestId id) { return s.awaitAllReduce(id, tag); });
    if (result && std::holds_alternative<ReduceResult>(reply)) *result = std::get<ReduceResult>(reply);
    return st;
}

void Communicator::startAllReduceEngine(const StartAllReduce &a) {
    collectives::RingAllReduceParams p;
    p.seq = a.seq;
    p.send = a.args.send;
    p.recv = a.args.recv;
    p.count = a.args.count;
    p.kind = a.args.kind;
    p.root = a.args.root;
    if (a.args.kind == CollectiveKind::AllGather || a.args.kind == CollectiveKind::ReduceScatter) {
        // The session checked that the ring has args.world ranks, one block each.
        p.blocks.assign(a.worldSize, a.args.count);
        if (a.args.counts.size() == a.worldSize) p.blocks.assign(a.args.counts.begin(), a.args.counts.end());
        p.count = 0;
        for (size_t b : p.blocks) p.count += b;
    }
    p.dtype = a.args.dtype;
    p.op = a.args.op;
    p.rank = a.rank;
    p.worldSize = a.worldSize;
    p.prev = a.prev.uuid;
    p.next = a.next.uuid;
    p.segmentBytes = a.segmentBytes;
    p.quant = a.args.quant;
    p.scratch = scratch_;
    p.tag = a.args.tag;
    auto name = [](const RingMember &r) { return "peer " + r.uuid.shortStr() + " (" + r.data_addr.str() + ")"; };
    p.prevName = name(a.prev);
    p.nextName = name(a.next);
    const uint64_t tag = a.args.tag, seq = a.seq;
    // The engine reports its own end; it is reached through a weak pointer set once it exists
    // (it cannot finish before start()).
    auto self = std::make_shared<std::weak_ptr<collectives::RingAllReduce>>();
    const auto began = std::chrono::steady_clock::now();
    const Uuid next = a.next.uuid, prev = a.prev.uuid;
    auto engine = std::make_shared<collectives::RingAllReduce>(data_, p, [this, tag, seq, self, began, next, prev](Status st) {
        OpStats stats;
        if (auto e = self->lock()) stats = {e->txBytes(), e->rxBytes(), e->sendRate()};
        // PCCL_CONN_STATS=1: how the pools shared this operation (docs/design.md, Segment scheduling).
        if (auto report = data_.connectionReport(next, prev, began); !report.empty())
            log::write(log::Level::Info, "connections of operation " + std::to_string(seq) + " (" +
                                             std::to_string(std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count()) +
                                             " s):" + report);
        post([tag, seq, st = std::move(st), stats](Session &s) { return s.onAllReduceFinished(tag, seq, st, stats); });
    });
    *self = engine;
    engines_[{tag, seq}] = engine;
    if (a.worldSize == 1) {
        engine->start();
        return;
    }
    data_.registerSink(seq, engine);
    data_.connect(a.next.uuid, a.next.data_addr, options_.poolSize, options_.connectTimeout, [engine](Status st) {
        if (st.ok()) engine->start();
        else engine->fail(Status{st.code(), st.message() + " (" + engine->progress() + ")"});
    });
}

// Aborts the engine; once no I/O touches the user's buffers (an in-place input restored), the
// session learns the operation's end with what the engine was doing appended.
void Communicator::stopAllReduceEngine(const StopAllReduce &a) {
    auto it = engines_.find({a.tag, a.seq});
    if (it == engines_.end()) {
        run([a](Session &s) { return s.onAllReduceStopped(a.tag, a.seq, a.status, {}); });
        return;
    }
    auto engine = it->second;  // stays in engines_ (watched by checkProgress) until it has stopped
    Status st = a.status.ok() ? a.status : Status{a.status.code(), a.status.message() + "; on this peer: " + engine->progress()};
    const std::string reason = st.message();
    engine->abort(reason, [this, engine, st = std::move(st), tag = a.tag, seq = a.seq] {
        OpStats stats{engine->txBytes(), engine->rxBytes(), 0};
        post([this, st, stats, tag, seq](Session &s) {
            data_.unregisterSink(seq);
            engines_.erase({tag, seq});
            return s.onAllReduceStopped(tag, seq, st, stats);
        });
    });
}

void Communicator::checkProgress() {
    std::vector<std::shared_ptr<transport::DataOperation>> running;
    for (auto &[key, engine] : engines_) running.push_back(engine);
    if (transfer_) running.push_back(transfer_);
    for (auto &op : running) {
        if (auto why = op->stalled(options_.opTimeout)) {
            PCCL_LOG(Warn, *why);
            op->fail(Status{pcclTimeout, *why});
        } else {
            op->forceQuiescence(options_.opTimeout);
        }
    }
}

} // namespace pccl::peer
