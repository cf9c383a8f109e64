// pcclCommCreateParamsEx_t.same_host and PCCL_SAME_HOST choose the data path between peers on one
// machine (transport/same_host.h); the all-reduce gives the same bytes on either path. The frame
// level (by reference, acknowledgements, forged offers, bad addresses) is test_data_plane.cpp's.
#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "api/handles.h"  // the communicator behind a handle: how many connections copy same-host
#include "support/cluster.h"
#include "support/common.h"

using namespace pccl_test;

namespace {

using Counts = pccl::transport::DataPlane::ConnectionCounts;

// 3 peers, pool 2, `same_host` in the creation parameters; each all-reduces 4 MiB of floats (frames
// well above the by-reference threshold) and checks every element, then reports its live outgoing
// data connections and how many of them copy same-host. (A peer may still hold the pool of an
// earlier ring, from before the last peer joined: hence "at least 2".)
std::vector<Counts> connectionsAfterAllReduce(uint32_t same_host) {
    EmbeddedMaster master;
    ClusterOptions opts;
    opts.groups.assign(3, 0);
    opts.pool_size = 2;
    opts.deadlines.same_host = same_host;
    std::vector<Counts> connections(3);
    runPeers(master, opts, [&](PeerCtx &ctx) {
        const size_t count = size_t{1} << 20;
        std::vector<float> send(count), recv(count, -1.0f);
        for (size_t j = 0; j < count; ++j) send[j] = static_cast<float>(ctx.rank + static_cast<int>(j % 7));
        const pcclReduceDescriptor_t d = makeDescriptor(count, pcclFloat, pcclSum, 1);
        PT_OK(ctx.comm, pcclAllReduce(send.data(), recv.data(), &d, ctx.comm, nullptr));
        for (size_t j = 0; j < count; ++j) {
            const float want = static_cast<float>(0 + 1 + 2 + 3 * static_cast<int>(j % 7));
            PT_CHECK_MSG(recv[j] == want, "element " << j << " is " << recv[j] << ", expected " << want);
        }
        connections[static_cast<size_t>(ctx.rank)] = ctx.comm->rep->dataConnections();
        ctx.barrier();  // nobody closes its connections before every peer has counted its own
    });
    return connections;
}

// Every peer has at least its pool of 2 to its successor, and all (or none) of them copy same-host.
bool allSameHost(const std::vector<Counts> &v, bool sameHost) {
    for (const auto &c : v)
        if (c.live < 2 || c.sameHost != (sameHost ? c.live : 0)) return false;
    return true;
}

std::string show(const std::vector<Counts> &v) {
    std::string s;
    for (const auto &c : v) s += (s.empty() ? "" : ", ") + std::to_string(c.sameHost) + " of " + std::to_string(c.live);
    return "[" + s + "]";
}

} // namespace

TEST_CASE("same-host: peers on one machine copy same-host by default and over TCP when it is off", "[api][same_host]") {
    isolated(90, [&] {
        ::unsetenv("PCCL_SAME_HOST");
        const auto byDefault = connectionsAfterAllReduce(PCCL_SAME_HOST_DEFAULT);
        PT_CHECK_MSG(allSameHost(byDefault, true), "default: same-host connections per peer " << show(byDefault));
        const auto off = connectionsAfterAllReduce(PCCL_SAME_HOST_OFF);
        PT_CHECK_MSG(allSameHost(off, false), "same_host OFF: same-host connections per peer " << show(off));
    });
}

TEST_CASE("same-host: PCCL_SAME_HOST=off turns it off unless the parameters say ON", "[api][same_host]") {
    isolated(90, [&] {
        ::setenv("PCCL_SAME_HOST", "off", 1);
        const auto byEnv = connectionsAfterAllReduce(PCCL_SAME_HOST_DEFAULT);
        PT_CHECK_MSG(allSameHost(byEnv, false), "PCCL_SAME_HOST=off: same-host connections per peer " << show(byEnv));
        const auto on = connectionsAfterAllReduce(PCCL_SAME_HOST_ON);
        PT_CHECK_MSG(allSameHost(on, true), "same_host ON over PCCL_SAME_HOST=off: " << show(on));
    });
}

TEST_CASE("same-host: an unknown same_host value is refused; a struct_size before the field ignores it", "[api][same_host]") {
    REQUIRE(pcclInit() == pcclSuccess);
    pcclCommCreateParamsEx_t ex = PCCL_COMM_CREATE_PARAMS_EX_INIT;
    ex.params.master_address.inet.protocol = inetIPv4;
    ex.params.master_address.inet.ipv4.data[0] = 127;
    ex.params.master_address.inet.ipv4.data[3] = 1;
    ex.params.master_address.port = 48148;
    ex.same_host = 3;
    pcclComm_t *comm = nullptr;
    CHECK(pcclCreateCommunicatorEx(&ex, &comm) == pcclInvalidArgument);
    CHECK(comm == nullptr);
    const std::string why = pcclGetLastErrorMessage(nullptr);
    CHECK(why.find("same_host 3") != std::string::npos);

    ex.struct_size = offsetof(pcclCommCreateParamsEx_t, same_host);  // a program built before the field
    REQUIRE(pcclCreateCommunicatorEx(&ex, &comm) == pcclSuccess);
    CHECK(comm->rep->dataConnections().live == 0);
    CHECK(pcclDestroyCommunicator(comm) == pcclSuccess);
}
