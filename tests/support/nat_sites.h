// Two "sites" behind port-forwarding NAT routers, in network namespaces, for the NAT test:
//
//   site a: pccln<pid>pa 192.168.61.2 --- 192.168.61.1 pccln<pid>ra 10.233.1.2 ---+
//                                                                                 pccln<pid>w (10.233.1.1, 10.233.2.1)
//   site b: pccln<pid>pb 192.168.62.2 --- 192.168.62.1 pccln<pid>rb 10.233.2.2 ---+
//
// w is the "internet" (it routes between the routers' outside addresses; the master runs there).
// Each router masquerades what its site sends out and forwards one public TCP port on its
// outside address to its peer's private address and port (nftables DNAT); its forward chain
// drops everything else that comes in. Nothing routes to the private subnets, so the peers
// reach each other only through the forwarded ports. Nothing is created in the caller's
// namespace. The destructor deletes the five namespaces (the veth pairs go with them) whatever
// happened; construction first deletes sets left by test processes that no longer exist.
// Needs root, iproute2 and nftables: unavailable() says why not (the test then skips).
#pragma once

#include <string>
#include <vector>

namespace pccl_test {

class NatSites {
public:
    static constexpr const char *kWanA = "10.233.1.1";     // w's address on site a's link (the master's)
    static constexpr const char *kPublic[2] = {"10.233.1.2", "10.233.2.2"};  // the routers' outside addresses
    static constexpr int kPrivatePort[2] = {7001, 7002};   // each peer's data port (PCCL_PORT_RANGE)
    static constexpr int kPublicPort[2] = {7101, 7202};    // forwarded to it on its router

    NatSites();
    ~NatSites();
    NatSites(const NatSites &) = delete;
    NatSites &operator=(const NatSites &) = delete;

    // "" when every namespace, link, route and rule is in place; otherwise why not.
    const std::string &unavailable() const { return unavailable_; }
    // Moves the calling thread into w (see NetnsPair::enterA for the rules).
    void enterWan() const;
    // argv prefixed so that it runs in site `site`'s peer namespace (0 = a, 1 = b), with `env`
    // ("NAME=value" entries) added to its environment.
    std::vector<std::string> inSite(int site, const std::vector<std::string> &env, const std::vector<std::string> &argv) const;

private:
    bool run(std::vector<std::string> argv);  // records the first failure in unavailable_
    std::string ip_, nft_, id_;
    std::vector<std::string> created_;
    std::string unavailable_;
};

} // namespace pccl_test
