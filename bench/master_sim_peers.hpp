// pccl-master-sim's simulated peers (master_sim.cpp): Sim owns a master::Membership, queues what
// the peers send it, and answers what it sends them as real peers would, counting what they got.
// The master's CPU (cpu()) is the time spent inside Membership's calls.
#pragma once
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "master/membership.h"

namespace pccl::bench {

using namespace pccl::protocol;
using master::Actions;
using master::ClientId;

inline double cpuSeconds() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

[[noreturn]] inline void fail(const std::string &what) {
    std::fprintf(stderr, "pccl-master-sim: %s\n", what.c_str());
    std::exit(1);
}

// What the simulated peers received, counted.
struct Received {
    size_t welcome = 0, topologyDone = 0, committed = 0, aborted = 0, world = 0, pendingResult = 0, plans = 0,
           syncCommitted = 0, keys = 0, closed = 0, rejoined = 0;
    uint64_t ringEntries = 0;  // RingMember entries in the messages: the protocol's payload
};

class Sim {
public:
    explicit Sim(bool secret) : m_(options(secret)) {}

    double cpu() const { return cpu_; }
    const Received &got() const { return got_; }
    size_t accepted() const { return m_.acceptedCount(); }
    const std::vector<ClientId> &alive() const { return alive_; }
    // What the peers know, for a master restart rebuilt from them (runRebuild): their ids, the
    // ring they were last sent (the same for all: one group), the last committed shared-state
    // revision and collective seq.
    const std::map<ClientId, Uuid> &uuids() const { return uuids_; }
    const std::vector<RingMember> &lastRing() const { return lastRing_; }
    uint64_t lastRevision() const { return lastRevision_; }
    uint64_t lastSeq() const { return lastSeq_; }
    uint64_t lastTopologyEpoch() const { return lastTopologyEpoch_; }
    uint64_t lastMasterEpoch() const { return lastMasterEpoch_; }

    // A new connection sends its Hello.
    void connect(ClientId id) {
        timed([&] { return m_.onConnect(id, addressOf(id)); });
        Hello h;
        h.data_port = 5000;
        h.uuid = Uuid::random();
        uuids_[id] = h.uuid;
        post(id, h);
    }
    // A peer of an earlier master connects to this (restarted) one and re-registers with what
    // it knows (docs/master_recovery.md).
    void rejoin(ClientId id, Rejoin r) {
        timed([&] { return m_.onConnect(id, addressOf(id)); });
        r.hello.data_port = 5000;
        uuids_[id] = r.hello.uuid;
        post(id, std::move(r));
    }
    void post(ClientId from, ControlMessage msg) { inbox_.emplace_back(from, std::move(msg)); }
    void postAll(const ControlMessage &msg) {
        for (ClientId id : alive_) post(id, msg);
    }
    // Delivers queued messages (and the answers they cause) until nothing is left.
    void pump() {
        while (!inbox_.empty()) {
            auto [from, msg] = std::move(inbox_.front());
            inbox_.pop_front();
            const bool registers = std::holds_alternative<Hello>(msg) || std::holds_alternative<Rejoin>(msg);
            if (!aliveSet_.count(from) && !registers) continue;
            if (registers) aliveSet_.insert(from), alive_.push_back(from);
            handle(timed([&] { return m_.onMessage(from, msg); }));
        }
    }
    void disconnect(ClientId id) {
        forget(id);
        handle(timed([&] { return m_.onDisconnect(id, "connection reset"); }));
    }
    // The clock moves one tick period (25 ms, the server's) and the master ticks; whom it
    // removes (silent past the heartbeat deadline) is gone for the simulated peers too.
    void tick() {
        now_ += 25;
        handle(timed([&] {
            m_.setTime(now_);
            return m_.onTick();
        }));
    }
    // CollectiveDone answers are held back instead of sent (a loss during the transfer).
    void holdDones(bool hold) { holdDones_ = hold; }
    void dropHeld() { held_.clear(); }

private:
    static NetAddr addressOf(ClientId id) {
        NetAddr a;
        a.family = 4;
        a.ip = {10, static_cast<uint8_t>(id >> 16), static_cast<uint8_t>(id >> 8), static_cast<uint8_t>(id)};
        a.port = 40000;
        return a;
    }
    static master::MembershipOptions options(bool secret) {
        master::MembershipOptions o;
        o.voteTimeoutMs = 0;
        if (secret) o.masterKey = std::array<uint8_t, 32>{1, 2, 3};
        return o;
    }
    template <class F>
    Actions timed(F &&f) {
        const double t0 = cpuSeconds();
        Actions out = f();
        cpu_ += cpuSeconds() - t0;
        return out;
    }
    void forget(ClientId id) {
        if (aliveSet_.erase(id)) std::erase(alive_, id);
        uuids_.erase(id);
    }
    // Every peer gets the same ring: kept from the messages to one of them.
    void sawRing(ClientId to, const std::vector<RingMember> &ring) {
        if (!alive_.empty() && to == alive_.front()) lastRing_ = ring;
    }
    void handle(Actions out) {
        for (auto &a : out) {
            if (a.message) answer(a.to, *a.message);
            if (a.close) ++got_.closed, forget(a.to);
        }
    }
    void answer(ClientId to, const ControlMessage &msg) {
        if (auto *u = std::get_if<TopologyUpdate>(&msg)) {
            got_.ringEntries += u->ring.size();
            sawRing(to, u->ring);
            lastTopologyEpoch_ = std::max(lastTopologyEpoch_, u->epoch);
            post(to, LinksReady{u->epoch, true, "", {}});
        } else if (auto *c = std::get_if<CollectiveCommence>(&msg)) {
            got_.ringEntries += c->ring.size();
            CollectiveDone d{c->tag, c->seq, true, "", 0, 1'000'000'000};
            if (holdDones_) held_.emplace_back(to, d);
            else post(to, d);
        } else if (auto *p = std::get_if<SharedStatePlan>(&msg)) {
            ++got_.plans;
            got_.ringEntries += p->peers.size();
            post(to, SharedStateDone{p->seq, true, "", 0});
        } else if (auto *w = std::get_if<WorldUpdate>(&msg)) {
            ++got_.world;
            got_.ringEntries += w->ring.size();
            sawRing(to, w->ring);
        } else if (auto *r = std::get_if<Rejoined>(&msg)) {
            ++got_.rejoined;
            got_.ringEntries += r->ring.size();
            sawRing(to, r->ring);
            lastTopologyEpoch_ = std::max(lastTopologyEpoch_, r->topology_epoch);
            lastMasterEpoch_ = std::max(lastMasterEpoch_, r->master_epoch);
        } else if (auto *k = std::get_if<PeerKeys>(&msg)) {
            got_.keys += k->keys.size();
        } else if (auto *wl = std::get_if<Welcome>(&msg)) {
            ++got_.welcome;
            lastMasterEpoch_ = std::max(lastMasterEpoch_, wl->master_epoch);
        } else if (std::holds_alternative<TopologyDone>(msg)) {
            ++got_.topologyDone;
        } else if (auto *cc = std::get_if<CollectiveCommitted>(&msg)) {
            ++got_.committed;
            lastSeq_ = std::max(lastSeq_, cc->seq);
        } else if (std::holds_alternative<CollectiveAborted>(msg)) {
            ++got_.aborted;
        } else if (std::holds_alternative<PeersPendingResult>(msg)) {
            ++got_.pendingResult;
        } else if (auto *sc = std::get_if<SharedStateCommitted>(&msg)) {
            ++got_.syncCommitted;
            lastRevision_ = sc->revision;
        }
    }

    master::Membership m_;
    uint64_t now_ = 1000;
    double cpu_ = 0;
    Received got_;
    std::deque<std::pair<ClientId, ControlMessage>> inbox_;
    std::vector<ClientId> alive_;  // in the order they registered
    std::set<ClientId> aliveSet_;
    bool holdDones_ = false;
    std::vector<std::pair<ClientId, ControlMessage>> held_;
    std::map<ClientId, Uuid> uuids_;
    std::vector<RingMember> lastRing_;
    uint64_t lastRevision_ = 0, lastSeq_ = 0, lastTopologyEpoch_ = 0, lastMasterEpoch_ = 0;
};

} // namespace pccl::bench
