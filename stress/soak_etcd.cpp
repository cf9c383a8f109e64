// pccl-soak --etcd: the single-node etcd (tests/support/etcd_server.h) that elects one of the
// standby masters, their flags, and who leads.
//
// Who leads is read from etcd itself, the key /pccl/soak-SEED/leader, when a fault is due. It
// cannot be stale: the key exists exactly while the leader's lease lives, etcd deletes it when
// the lease expires, and a master serves as leader only while the lease it renewed is valid (it
// steps down before that, docs/master_recovery.md). The masters' own lines can be stale (a
// stopped or killed leader's last line still says "became the leader"; a stopped one says
// "stepped down" only after SIGCONT), and a stopped master's HTTP status does not answer at all.
// The key also carries the leader's epoch (its create revision).
#include <cstdio>

#include "soak.hpp"

#ifdef PCCL_HAVE_ETCD
#include "master/etcd_client.h"
#include "support/etcd_server.h"
#endif

namespace soak {

#ifdef PCCL_HAVE_ETCD
namespace {
std::string runId(const Options &o) { return "soak-" + std::to_string(o.seed); }
}  // namespace

struct Soak::EtcdSide {
    std::unique_ptr<pccl_test::EtcdServer> server;
    std::unique_ptr<pccl::master::EtcdClient> client;
    std::string key;
};
#else
struct Soak::EtcdSide {};
#endif

void Soak::DropEtcd::operator()(EtcdSide *e) const { delete e; }


int Soak::startEtcd() {
    if (!opt_.etcd) return 0;
#ifdef PCCL_HAVE_ETCD
    if (!pccl_test::EtcdServer::available()) {
        std::printf("pccl-soak: %s\n", pccl_test::EtcdServer::skipMessage().c_str());
        std::fflush(stdout);
        return 77;
    }
    std::unique_ptr<EtcdSide, DropEtcd> side(new EtcdSide);
    try {
        side->server = std::make_unique<pccl_test::EtcdServer>();
    } catch (const std::exception &e) {
        std::fprintf(stderr, "pccl-soak: etcd: %s\n", e.what());
        return 2;
    }
    auto client = pccl::master::EtcdClient::create(side->server->endpoint(), 1000);
    if (!client.ok()) {
        std::fprintf(stderr, "pccl-soak: etcd client: %s\n", client.status().message().c_str());
        return 2;
    }
    side->client = std::move(*client);
    side->key = "/pccl/" + runId(opt_) + "/leader";
    std::fprintf(events_, "%.3f soak etcd started at %s (pid %d), leader key %s\n", now(),
                 side->server->endpoint().c_str(), static_cast<int>(side->server->pid()), side->key.c_str());
    etcd_ = std::move(side);
    return 0;
#else
    std::fprintf(stderr, "pccl-soak: --etcd: this build has no etcd client\n");
    return 2;
#endif
}

void Soak::stopEtcd() { etcd_.reset(); }

std::vector<std::string> Soak::masterFlags() const {
#ifdef PCCL_HAVE_ETCD
    if (etcd_)
        return {"--etcd", etcd_->server->endpoint(), "--run-id", runId(opt_), "--lease-ttl-s", std::to_string(opt_.lease_ttl_s)};
#endif
    return {};
}

int Soak::leader(int64_t *epoch) {
#ifdef PCCL_HAVE_ETCD
    if (!etcd_) return -1;
    auto got = etcd_->client->get(etcd_->key);
    if (!got.ok() || !got->has_value()) return -1;
    for (size_t i = 0; i < masters_.size(); ++i)
        if ((*got)->value == masters_[i].addr) {
            *epoch = (*got)->createRevision;
            return static_cast<int>(i);
        }
#else
    (void)epoch;
#endif
    return -1;
}

}  // namespace soak
