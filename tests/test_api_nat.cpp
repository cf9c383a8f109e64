// NAT and firewalls: two peers, each behind its own router namespace that forwards one public
// port to the peer's fixed data port (nftables DNAT) and masquerades what goes out, join a master
// on the "internet" namespace with a run secret. Each peer fixes its port (PCCL_PORT_RANGE) and
// advertises its router's public address and forwarded port (PCCL_ADVERTISED_ADDRESS); the
// private subnets have no route to each other, so every data connection must go through the
// forwarded ports. They sync a shared state (the receiver gets the sender's bytes) and all-reduce.
// Needs root, iproute2 and nftables; skipped otherwise.
#include "support/cluster.h"
#include "support/nat_sites.h"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <memory>
#include <sys/wait.h>

using namespace pccl_test;

TEST_CASE("NAT: peers behind port-forwarding routers sync shared state and all-reduce through their advertised "
          "addresses",
          "[nat][netns]") {
    NatSites net;
    if (!net.unavailable().empty()) {
        WARN("skipped: NAT namespaces are not available here (" << net.unavailable() << "); CI runs this test as root");
        return;
    }
    isolated(40, [&] {
        // This copy of the test process only: the embedded master and both peers share the secret.
        ::setenv("PCCL_SECRET", "nat-test-secret-0123456789abcdef", 1);
        net.enterWan();
        ccoip_socket_address_t listen{};
        PT_OK(nullptr, pcclParseSocketAddress((std::string(NatSites::kWanA) + ":0").c_str(), &listen));
        pcclMasterInstance_t *master = nullptr;
        PT_OK(nullptr, pcclCreateMaster(listen, &master));
        PT_OK(nullptr, pcclRunMaster(master));
        uint16_t port = 0;
        PT_OK(nullptr, pcclGetMasterPort(master, &port));
        struct MasterGuard {
            pcclMasterInstance_t *m;
            ~MasterGuard() { pcclDestroyMaster(m); }
        } guard{master};
        const std::string masterAddr = std::string(NatSites::kWanA) + ":" + std::to_string(port);
        constexpr int kCount = 300000;  // 1.2 MB: several chunks of data frames each way
        const int values[2] = {3, 40};
        std::unique_ptr<ChildProcess> peers[2];
        for (int s = 0; s < 2; ++s) {
            const std::vector<std::string> env{
                "PCCL_PORT_RANGE=" + std::to_string(NatSites::kPrivatePort[s]),
                "PCCL_ADVERTISED_ADDRESS=" + std::string(NatSites::kPublic[s]) + ":" + std::to_string(NatSites::kPublicPort[s])};
            peers[s] = std::make_unique<ChildProcess>(net.inSite(
                s, env,
                {PCCL_TEST_PEER_BIN, "nat-peer", "--master", masterAddr, "--role", s == 0 ? "send" : "receive", "--value",
                 std::to_string(values[s]), "--state", "17", "--sum", std::to_string(values[0] + values[1]), "--count",
                 std::to_string(kCount)}));
        }
        for (int s = 0; s < 2; ++s) {
            const auto ok = peers[s]->waitForLine("OK", 25);
            const auto status = peers[s]->wait(5);
            PT_CHECK_MSG(ok && status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0,
                         "peer " << s << " behind NAT did not finish: " << peers[s]->transcript() << "\nthe other: "
                                 << peers[1 - s]->transcript());
            PT_CHECK_MSG(peers[s]->transcript().find("SYNCED") != std::string::npos, peers[s]->transcript());
            PT_CHECK_MSG(peers[s]->transcript().find("ALLREDUCED") != std::string::npos, peers[s]->transcript());
        }
    });
}
