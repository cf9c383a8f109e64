#include "support/nat_sites.h"

#include "support/cluster.h"
#include "support/fault.h"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <sched.h>
#include <sstream>
#include <unistd.h>

namespace pccl_test {

namespace {

// The nftables rules of one router: DNAT of the public port to the peer, masquerade outbound,
// and a forward chain that lets in only forwarded and answering traffic.
std::string routerRules(const std::string &out, const std::string &in, const std::string &peer, int privatePort,
                        int publicPort) {
    std::ostringstream r;
    r << "table ip pccl_nat {\n"
      << "  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n"
      << "    iifname \"" << out << "\" tcp dport " << publicPort << " dnat to " << peer << ":" << privatePort << "\n  }\n"
      << "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n"
      << "    oifname \"" << out << "\" masquerade\n  }\n"
      << "  chain forward {\n    type filter hook forward priority filter; policy drop;\n"
      << "    ct state established,related accept\n"
      << "    iifname \"" << in << "\" oifname \"" << out << "\" accept\n"
      << "    iifname \"" << out << "\" oifname \"" << in << "\" ct status dnat accept\n  }\n"
      << "}\n";
    return r.str();
}

} // namespace

bool NatSites::run(std::vector<std::string> argv) { return runSetupStep(argv, &unavailable_); }

NatSites::NatSites() {
    if (::geteuid() != 0) {
        unavailable_ = "not running as root";
        return;
    }
    ip_ = findExecutable("ip");
    nft_ = findExecutable("nft");
    if (ip_.empty() || nft_.empty()) {
        unavailable_ = ip_.empty() ? "iproute2 (ip) is not installed" : "nftables (nft) is not installed";
        return;
    }
    deleteStaleNamespaces(ip_, "pccln");
    id_ = std::to_string(::getpid());
    const std::string w = "pccln" + id_ + "w";
    const std::string router[2] = {"pccln" + id_ + "ra", "pccln" + id_ + "rb"};
    const std::string peer[2] = {"pccln" + id_ + "pa", "pccln" + id_ + "pb"};
    for (const auto &ns : {w, router[0], router[1], peer[0], peer[1]}) {
        if (!run({ip_, "netns", "add", ns})) return;
        created_.push_back(ns);
        run({ip_, "-n", ns, "link", "set", "lo", "up"});
    }
    const std::string wanNet[2] = {"10.233.1.", "10.233.2."};
    const std::string privNet[2] = {"192.168.61.", "192.168.62."};
    for (int s = 0; s < 2; ++s) {
        const std::string side(1, static_cast<char>('a' + s));
        const std::string wanIf = "nw" + id_ + side, outIf = "no" + id_ + side;  // w <-> router
        const std::string inIf = "ni" + id_ + side, peerIf = "np" + id_ + side;  // router <-> peer
        run({ip_, "link", "add", wanIf, "netns", w, "type", "veth", "peer", "name", outIf, "netns", router[s]});
        run({ip_, "link", "add", inIf, "netns", router[s], "type", "veth", "peer", "name", peerIf, "netns", peer[s]});
        run({ip_, "-n", w, "addr", "add", wanNet[s] + "1/24", "dev", wanIf});
        run({ip_, "-n", router[s], "addr", "add", wanNet[s] + "2/24", "dev", outIf});
        run({ip_, "-n", router[s], "addr", "add", privNet[s] + "1/24", "dev", inIf});
        run({ip_, "-n", peer[s], "addr", "add", privNet[s] + "2/24", "dev", peerIf});
        run({ip_, "-n", w, "link", "set", wanIf, "up"});
        run({ip_, "-n", router[s], "link", "set", outIf, "up"});
        run({ip_, "-n", router[s], "link", "set", inIf, "up"});
        run({ip_, "-n", peer[s], "link", "set", peerIf, "up"});
        run({ip_, "-n", router[s], "route", "add", "default", "via", wanNet[s] + "1"});
        run({ip_, "-n", peer[s], "route", "add", "default", "via", privNet[s] + "1"});
        run({ip_, "netns", "exec", router[s], "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"});
        const std::string rules = "/tmp/pccl-nat-" + id_ + side + ".nft";
        {
            std::ofstream f(rules);
            f << routerRules(outIf, inIf, privNet[s] + "2", kPrivatePort[s], kPublicPort[s]);
        }
        run({ip_, "netns", "exec", router[s], nft_, "-f", rules});
        ::unlink(rules.c_str());
    }
    run({ip_, "netns", "exec", w, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"});
}

NatSites::~NatSites() {
    for (const auto &ns : created_) runCommand({ip_, "netns", "delete", ns});
}

void NatSites::enterWan() const { enterNamespace("pccln" + id_ + "w"); }

std::vector<std::string> NatSites::inSite(int site, const std::vector<std::string> &env,
                                          const std::vector<std::string> &argv) const {
    std::vector<std::string> all{ip_, "netns", "exec", "pccln" + id_ + (site == 0 ? "pa" : "pb"), "env"};
    all.insert(all.end(), env.begin(), env.end());
    all.insert(all.end(), argv.begin(), argv.end());
    return all;
}

} // namespace pccl_test
