// Drives the master's Membership state machine with scripted events in tests (no sockets).
#pragma once
#include <catch2/catch.hpp>

#include <map>

#include "master/membership.h"
#include "shared_state/hashing.h"

namespace pccl::testing {

using namespace pccl::protocol;
using pccl::master::Actions;
using pccl::master::ClientId;
using pccl::master::Membership;


inline NetAddr addr(uint8_t last) {
    NetAddr a;
    a.family = 4;
    a.ip = {127, 0, 0, last};
    a.port = 40000 + last;
    return a;
}

// Messages of type M sent to `to` in `out`.
template <class M>
std::vector<M> sent(const Actions &out, ClientId to) {
    std::vector<M> r;
    for (auto &a : out)
        if (a.to == to && a.message && std::holds_alternative<M>(*a.message)) r.push_back(std::get<M>(*a.message));
    return r;
}

inline bool closed(const Actions &out, ClientId to) {
    for (auto &a : out)
        if (a.to == to && a.close) return true;
    return false;
}

inline Hello hello(uint32_t group = 0) {
    Hello h;
    h.peer_group = group;
    h.data_port = 5000;
    h.uuid = Uuid::random();
    return h;
}

struct Cluster {
    Membership m;
    // Connects, registers and (if the world is empty) completes the first admission round.
    Actions join(ClientId id, uint32_t group = 0) {
        m.onConnect(id, addr(static_cast<uint8_t>(id)));
        return m.onMessage(id, hello(group));
    }
    // Runs a full UpdateTopology round voted by `voters`; returns the actions of the last step.
    Actions admitRound(const std::vector<ClientId> &voters) {
        Actions last;
        uint64_t epoch = 0;
        std::vector<ClientId> members;
        for (ClientId v : voters) {
            last = m.onMessage(v, VoteUpdateTopology{});
        }
        for (auto &a : last)
            if (a.message && std::holds_alternative<TopologyUpdate>(*a.message)) {
                epoch = std::get<TopologyUpdate>(*a.message).epoch;
                members.push_back(a.to);
            }
        Actions done;
        for (ClientId id : members) done = m.onMessage(id, LinksReady{epoch, true, ""});
        return done;
    }
    void firstPeer(ClientId id, uint32_t group = 0) {
        auto out = join(id, group);
        auto up = sent<TopologyUpdate>(out, id);
        REQUIRE(up.size() == 1);
        auto done = m.onMessage(id, LinksReady{up[0].epoch, true, ""});
        REQUIRE(sent<TopologyDone>(done, id).size() == 1);
    }
};

// A one-entry shared state "w" holding `w`, described as a peer would (with its real digests).
inline SharedStateSync floatState(const std::vector<float> &w, uint64_t revision = 1) {
    auto h = shared_state::hashEntry(w.data(), w.size() * sizeof(float));
    EntryDesc e;
    e.name = "w";
    e.dtype = pcclFloat;
    e.count = w.size();
    e.digest = h.digest;
    e.chunks = h.chunks;
    SharedStateSync s;
    s.revision = revision;
    s.entries.push_back(e);
    return s;
}

inline CollectiveInit init(uint64_t tag, uint64_t count = 100, uint8_t dtype = pcclFloat, uint8_t op = pcclSum) {
    CollectiveInit c;
    c.tag = tag;
    c.desc.count = count;
    c.desc.dtype = dtype;
    c.desc.op = op;
    return c;
}


// Peers 1..n accepted in that order, each admitted by the vote of those before it. Returns their
// uuids by client id.
inline std::map<ClientId, Uuid> acceptPeers(Cluster &c, size_t n) {
    std::map<ClientId, Uuid> uuids;
    auto first = c.join(1);
    uuids[1] = sent<Welcome>(first, 1)[0].uuid;
    auto up = sent<TopologyUpdate>(first, 1);
    REQUIRE(up.size() == 1);
    c.m.onMessage(1, LinksReady{up[0].epoch, true, ""});
    std::vector<ClientId> voters{1};
    for (ClientId id = 2; id <= n; ++id) {
        uuids[id] = sent<Welcome>(c.join(id), id)[0].uuid;
        c.admitRound(voters);
        voters.push_back(id);
    }
    REQUIRE(c.m.acceptedCount() == n);
    return uuids;
}

} // namespace pccl::testing
