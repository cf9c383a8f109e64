// Drives the peer's Session state machine (src/peer/session.h) with scripted events in tests: no
// sockets, no threads, no clock. The mirror of membership_driver.h for the master.
//
// Every event goes through Driver, which records each Complete it returns: a request answered
// twice, or an answer to a request the driver never made, fails the test wherever it happens,
// and unanswered() lists the requests still waiting.
#pragma once
#include <catch2/catch.hpp>

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "peer/session.h"
#include "protocol/wire_result.h"

namespace pccl::testing::session {

using namespace pccl::protocol;
using pccl::peer::Action;
using pccl::peer::Actions;
using pccl::peer::ClosePeer;
using pccl::peer::InstallKeys;
using pccl::peer::CloseAllData;
using pccl::peer::Complete;
using pccl::peer::ConnectLinks;
using pccl::peer::DisconnectMaster;
using pccl::peer::OpStats;
using pccl::peer::Phase;
using pccl::peer::ReduceArgs;
using pccl::peer::ReduceResult;
using pccl::peer::ReleaseAllReduce;
using pccl::peer::RequestId;
using pccl::peer::SendToMaster;
using pccl::peer::Session;
using pccl::peer::SessionOptions;
using pccl::peer::SourceLost;
using pccl::peer::StartAllReduce;
using pccl::peer::StartProbe;
using pccl::peer::StartTransfer;
using pccl::peer::StopAllReduce;
using pccl::peer::StopTransfer;
using pccl::peer::SyncResult;

// A fixed identity per small number; this peer is kSelfId.
inline Uuid peerUuid(uint8_t n) {
    Uuid u;
    u.bytes[0] = 0x5e;
    u.bytes[15] = n;
    return u;
}

inline RingMember member(uint8_t n) {
    RingMember r;
    r.uuid = peerUuid(n);
    r.data_addr.family = 4;
    r.data_addr.ip = {127, 0, 0, n};
    r.data_addr.port = static_cast<uint16_t>(40000 + n);
    return r;
}

inline constexpr uint8_t kSelfId = 100;
inline const Uuid kSelf = peerUuid(kSelfId);
inline RingMember selfMember() { return member(kSelfId); }

// A ring of n members with this peer at position `pos` and member(1), member(2), ... around it.
inline std::vector<RingMember> ringWithSelfAt(size_t n, size_t pos) {
    std::vector<RingMember> ring;
    uint8_t other = 1;
    for (size_t i = 0; i < n; ++i) ring.push_back(i == pos ? selfMember() : member(other++));
    return ring;
}

inline bool contains(const std::string &text, const std::string &part) { return text.find(part) != std::string::npos; }

// The actions of type A in `out`, in order.
template <class A>
std::vector<A> actionsOf(const Actions &out) {
    std::vector<A> r;
    for (auto &a : out)
        if (std::holds_alternative<A>(a)) r.push_back(std::get<A>(a));
    return r;
}

// The messages of type M sent to the master in `out`, in order.
template <class M>
std::vector<M> sent(const Actions &out) {
    std::vector<M> r;
    for (auto &s : actionsOf<SendToMaster>(out))
        if (std::holds_alternative<M>(s.message)) r.push_back(std::get<M>(s.message));
    return r;
}

inline std::vector<Complete> completionsOf(const Actions &out, RequestId id) {
    std::vector<Complete> r;
    for (auto &c : actionsOf<Complete>(out))
        if (c.id == id) r.push_back(c);
    return r;
}

// The Complete of request `id` in `out`, if any (more than one fails the test).
inline std::optional<Complete> completion(const Actions &out, RequestId id) {
    auto all = completionsOf(out, id);
    REQUIRE(all.size() <= 1);
    if (all.empty()) return std::nullopt;
    return all[0];
}

// The status and reply of one request answered in `out` (fails the test when it is not).
inline Complete answer(const Actions &out, RequestId id) {
    auto c = completion(out, id);
    INFO("request " << id);
    REQUIRE(c.has_value());
    return *c;
}

inline Hello hello() {
    Hello h;
    h.peer_group = 3;
    h.data_port = 45678;
    h.uuid = kSelf;
    h.heartbeat_timeout_ms = 5000;
    return h;
}

inline ReduceArgs reduceArgs(uint64_t tag, uint64_t count = 1000) {
    static float send[4], recv[4];
    ReduceArgs a;
    a.send = send;
    a.recv = recv;
    a.count = count;
    a.dtype = pcclFloat;
    a.op = pcclSum;
    a.tag = tag;
    return a;
}

// One shared-state entry described to the master (its digests do not matter to the session).
inline SharedStateSync described(uint64_t revision = 1) {
    SharedStateSync d;
    d.revision = revision;
    EntryDesc e;
    e.name = "weights";
    e.dtype = pcclFloat;
    e.count = 1024;
    d.entries.push_back(e);
    return d;
}

// A request made through the driver and what the session answered at once.
struct Call {
    RequestId id = 0;
    Actions out;
};

struct Driver {
    static SessionOptions defaults() {
        SessionOptions o;
        o.masterName = "10.0.0.1:48148";
        o.heartbeatTimeoutMs = 5000;
        o.tickPeriodMs = 1000;
        o.reconnectTimeoutMs = 0;  // a lost master fails at once (test_session_reconnect.cpp: the other way)
        return o;
    }

    explicit Driver(SessionOptions options = defaults()) : s(std::move(options)) {
        s.setSelf(kSelf);
        s.setTime(now);
    }

    Session s;
    uint64_t now = 100000;
    uint64_t epoch = 0;  // of the last admission round run by admit()
    size_t answeringMaster = 0;  // the master address whose connection answered connect()

    // ---- the clock
    void at(uint64_t t) {
        now = t;
        s.setTime(t);
    }
    Actions tick() { return record(s.onTick()); }
    Actions tickAt(uint64_t t) {
        at(t);
        return tick();
    }

    // ---- events from the master and the data plane
    Actions message(const ControlMessage &m) { return record(s.onMessage(m)); }
    Actions controlClosed(const std::string &reason = "connection reset by peer") { return record(s.onControlClosed(reason)); }
    Actions reconnected(const Status &st = {}) { return record(s.onReconnected(st)); }
    Actions linksConnected(uint64_t e, const Status &st = {}) { return record(s.onLinksConnected(e, st)); }
    Actions allReduceFinished(uint64_t tag, uint64_t seq, const Status &st = {}, const OpStats &stats = {}) {
        return record(s.onAllReduceFinished(tag, seq, st, stats));
    }
    Actions allReduceStopped(uint64_t tag, uint64_t seq, const Status &st, const OpStats &stats = {}) {
        return record(s.onAllReduceStopped(tag, seq, st, stats));
    }
    Actions transferFinished(uint64_t seq, const Status &st = {}) { return record(s.onTransferFinished(seq, st)); }
    Actions transferStopped(uint64_t seq, const Status &st = {}, const OpStats &stats = {}) {
        return record(s.onTransferStopped(seq, st, stats));
    }
    Actions probeDone(uint64_t round, BandwidthReport report, const OpStats &bytes = {}) {
        return record(s.onProbeDone(round, std::move(report), bytes));
    }
    Actions abort(const Status &st) { return record(s.abort(st)); }
    Actions connectFailed() { return record(s.connectFailed()); }

    // ---- user requests
    // beginConnect (which must succeed) and connected(): the Hello goes out, over the master
    // address answeringMaster (an index into SessionOptions::masterNames).
    Call connect(const Hello &h = hello()) {
        REQUIRE(s.beginConnect().ok());
        const RequestId id = newId();
        return {id, record(s.connected(id, h, answeringMaster))};
    }
    Call vote(VoteKind kind) {
        const RequestId id = newId();
        return {id, record(s.vote(id, kind))};
    }
    Call startAllReduce(const ReduceArgs &args, uint64_t segmentBytes = 1u << 20) {
        const RequestId id = newId();
        return {id, record(s.startAllReduce(id, args, segmentBytes))};
    }
    Call startAllReduce(uint64_t tag) { return startAllReduce(reduceArgs(tag)); }
    Call awaitAllReduce(uint64_t tag) {
        const RequestId id = newId();
        return {id, record(s.awaitAllReduce(id, tag))};
    }
    Call sync(SharedStateSync d = described(), std::vector<uint64_t> entryBytes = {4096}) {
        const RequestId id = newId();
        return {id, record(s.syncSharedState(id, std::move(d), std::move(entryBytes)))};
    }

    // ---- scripted phases
    // Connects and admits this peer into `ring` (which holds it): Hello, TopologyUpdate, the link
    // to the successor (if any), TopologyDone; the connect call must complete ok.
    void admit(const std::vector<RingMember> &ring = {selfMember()}, WorldInfo world = {1, 1, 1, 1}) {
        auto c = connect();
        REQUIRE(sent<Hello>(c.out).size() == 1);
        epoch += 1;
        auto up = message(TopologyUpdate{epoch, ring, world});
        if (ring.size() > 1) {
            REQUIRE(actionsOf<ConnectLinks>(up).size() == 1);
            up = linksConnected(epoch);
        }
        auto ready = sent<LinksReady>(up);
        REQUIRE(ready.size() == 1);
        REQUIRE(ready[0].ok);
        auto done = message(TopologyDone{epoch, true, ""});
        REQUIRE(answer(done, c.id).status.ok());
        REQUIRE(s.phase() == Phase::Connected);
    }
    // An all-reduce of `tag` started and commenced as `seq` on `ring`; returns the start action.
    StartAllReduce commence(uint64_t tag, uint64_t seq, const std::vector<RingMember> &ring) {
        Call start = startAllReduce(tag);
        REQUIRE(answer(start.out, start.id).status.ok());
        auto out = message(CollectiveCommence{tag, seq, ring});
        auto starts = actionsOf<StartAllReduce>(out);
        REQUIRE(starts.size() == 1);
        return starts[0];
    }
    // A sync whose plan (seq, revision, nothing to fetch or serve) has started its transfer.
    Call transferring(uint64_t seq, uint64_t revision = 7) {
        Call c = sync();
        REQUIRE(completionsOf(c.out, c.id).empty());
        auto out = message(SharedStatePlan{seq, revision, {}, {}, {}});
        REQUIRE(actionsOf<StartTransfer>(out).size() == 1);
        return c;
    }

    // ---- bookkeeping
    RequestId newId() {
        issued.insert(next);
        return next++;
    }
    RequestId lastId() const { return next - 1; }
    std::vector<RequestId> unanswered() const {
        std::vector<RequestId> r;
        for (RequestId id : issued)
            if (!answers.count(id)) r.push_back(id);
        return r;
    }
    Actions record(Actions out) {
        for (auto &c : actionsOf<Complete>(out)) {
            INFO("request " << c.id);
            CHECK(issued.count(c.id) == 1);
            if (++answers[c.id] > 1) FAIL_CHECK("request " << c.id << " answered twice");
        }
        return out;
    }

    RequestId next = 1;
    std::set<RequestId> issued;
    std::map<RequestId, int> answers;
};

} // namespace pccl::testing::session
