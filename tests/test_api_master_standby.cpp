// Standby masters elected through etcd (issue 15, docs/master_recovery.md, Standby masters): two
// real pccl-master daemons campaign through a real single-node etcd; only the leader serves the
// run. The leader is killed or stopped under training peers; the other takes over and the peers
// go on with correct results and bit-identical state. Skipped with a message without etcd.
#include <catch2/catch.hpp>

#ifdef PCCL_HAVE_ETCD
#include <csignal>
#include <cstdlib>

#include "support/cluster.h"
#include "support/etcd_server.h"
#include "support/training.h"

using namespace pccl_test;

namespace {

// The masters' lease TTL: 2 s (etcd's minimum), or PCCL_TEST_LEASE_TTL_S (to measure another).
const int kLeaseTtlS = [] {
    const char *env = std::getenv("PCCL_TEST_LEASE_TTL_S");
    return env && std::atoi(env) >= 2 ? std::atoi(env) : 2;
}();

// A pccl-master standing by for run "train" on a fixed loopback port.
std::unique_ptr<DaemonMaster> standbyMaster(const EtcdServer &etcd, uint16_t port) {
    return std::make_unique<DaemonMaster>(
        listenOn(port), std::vector<std::string>{"--etcd", etcd.endpoint(), "--run-id", "train", "--lease-ttl-s",
                                                 std::to_string(kLeaseTtlS), "--heartbeat-timeout-ms", "2000"});
}

// Two masters on the ports given: the first is started first and must lead, the second follows it.
struct TwoMasters {
    uint16_t portA = freeLoopbackPort(), portB = freeLoopbackPort();
    std::unique_ptr<DaemonMaster> a, b;
    std::string list = listenOn(portB);  // the peers' extra master address

    explicit TwoMasters(const EtcdServer &etcd) {
        a = standbyMaster(etcd, portA);
        PT_CHECK_MSG(a->process().waitForLine("pccl-master: became the leader", 15).has_value(),
                     "the first master did not lead: " << a->process().transcript() << "\netcd: " << etcd.log());
        b = standbyMaster(etcd, portB);
        PT_CHECK_MSG(b->process().waitForLine("pccl-master: following the leader at " + listenOn(portA), 15).has_value(),
                     "the second master does not follow the first: " << b->process().transcript());
    }
};

ClusterOptions threePeers(const std::string &masters) {
    ClusterOptions opts;
    opts.groups = {0, 0, 0};
    opts.timeout_s = 100;
    opts.deadlines.heartbeat_timeout_ms = 1000;
    opts.deadlines.master_addresses = masters.c_str();
    opts.deadlines.master_reconnect_timeout_ms = 30000;
    return opts;
}

} // namespace

TEST_CASE("standby masters: the follower refuses a peer with the leader's address; peers that list both masters "
          "train with the leader", "[api][master][standby][etcd]") {
    if (!EtcdServer::available()) {
        WARN(EtcdServer::skipMessage());
        return;
    }
    isolated(90, [&] {
        EtcdServer etcd;
        TwoMasters m(etcd);
        {
            PT_OK(nullptr, pcclInit());
            pcclCommCreateParamsEx_t ex = PCCL_COMM_CREATE_PARAMS_EX_INIT;
            ex.params.master_address = loopbackV4(m.portB);
            ex.master_reconnect_timeout_ms = PCCL_MASTER_RECONNECT_OFF;
            pcclComm_t *comm = nullptr;
            PT_OK(nullptr, pcclCreateCommunicatorEx(&ex, &comm));
            CommGuard guard(comm);
            PT_CHECK_EQ(pcclConnect(comm), pcclMasterConnectionFailed);
            const std::string why = pcclGetLastErrorMessage(comm);
            PT_CHECK_MSG(why.find("not the leader, try " + listenOn(m.portA)) != std::string::npos, "reason: " << why);
        }
        // The follower listed first: the peers are sent on to the leader.
        Training t(3);
        t.iters = 5;
        const std::string list = listenOn(m.portA);
        PeerThreads peers(loopbackV4(m.portB), threePeers(list), [&](PeerCtx &ctx) { t.run(ctx); });
        peers.join();
        t.checkIdentical(3);
        PT_CHECK_MSG(m.b->process().transcript().find("admitted") == std::string::npos,
                     "the follower admitted a peer: " << m.b->process().transcript());
    });
}

TEST_CASE("standby masters: the leader killed mid-training; the other master takes over within the lease TTL + 1 s "
          "and the peers go on with bit-identical state", "[api][master][standby][etcd]") {
    if (!EtcdServer::available()) {
        WARN(EtcdServer::skipMessage());
        return;
    }
    isolated(150, [&] {
        EtcdServer etcd;
        TwoMasters m(etcd);
        Training t(3);
        t.iters = 30;
        PeerThreads peers(loopbackV4(m.portA), threePeers(m.list), [&](PeerCtx &ctx) { t.run(ctx); });
        peers.onAbort([&] { m.a.reset(); });
        PT_CHECK_MSG(waitUntil([&] { return t.minIter.load() >= 5 || peers.failed(); }, 60), "training did not start");
        t.markFault();
        m.a->process().signal(SIGKILL);
        m.a->process().wait(5);
        PT_CHECK_MSG(m.b->process().waitForLine("pccl-master: became the leader", 10).has_value(),
                     "the follower did not take over: " << m.b->process().transcript());
        PT_CHECK_MSG(waitUntil([&] { return t.recoveredAfterMs() >= 0 || peers.failed(); }, 30),
                     "no all-reduce succeeded after the leader was killed");
        const double ms = t.recoveredAfterMs();
        std::printf("standby masters: leader SIGKILL -> next successful all-reduce after %.0f ms (lease TTL %d s)\n", ms,
                    kLeaseTtlS);
        // The target is the TTL + 1 s; the bound leaves room for a loaded test machine.
        PT_CHECK_MSG(ms < kLeaseTtlS * 1000 + 4000, "recovery took " << ms << " ms");
        PT_CHECK_MSG(m.b->process().waitForLine("pccl-master: run rebuilt from 3 peer(s)", 10).has_value(),
                     "the new leader did not rebuild the run: " << m.b->process().transcript());
        peers.join();
        t.checkIdentical(3);
    });
}

TEST_CASE("standby masters: the leader stopped (SIGSTOP) mid-training; the other master takes over, and the old one, "
          "resumed, steps down and does not split the run", "[api][master][standby][etcd]") {
    if (!EtcdServer::available()) {
        WARN(EtcdServer::skipMessage());
        return;
    }
    isolated(150, [&] {
        EtcdServer etcd;
        TwoMasters m(etcd);
        Training t(3);
        t.iters = 40;
        PeerThreads peers(loopbackV4(m.portA), threePeers(m.list), [&](PeerCtx &ctx) { t.run(ctx); });
        peers.onAbort([&] { m.a->process().signal(SIGCONT); });
        PT_CHECK_MSG(waitUntil([&] { return t.minIter.load() >= 5 || peers.failed(); }, 60), "training did not start");
        t.markFault();
        m.a->process().signal(SIGSTOP);
        PT_CHECK_MSG(m.b->process().waitForLine("pccl-master: became the leader", 10).has_value(),
                     "the follower did not take over: " << m.b->process().transcript());
        PT_CHECK_MSG(waitUntil([&] { return t.recoveredAfterMs() >= 0 || peers.failed(); }, 30),
                     "no all-reduce succeeded after the leader was stopped");
        std::printf("standby masters: leader SIGSTOP -> next successful all-reduce after %.0f ms (lease TTL %d s, "
                    "peer heartbeat deadline 1 s)\n",
                    t.recoveredAfterMs(), kLeaseTtlS);
        const int atResume = t.minIter.load();
        m.a->process().signal(SIGCONT);
        PT_CHECK_MSG(m.a->process().waitForLine("pccl-master: stepped down", 10).has_value(),
                     "the resumed leader did not step down: " << m.a->process().transcript());
        PT_CHECK_MSG(m.a->process().waitForLine("pccl-master: following the leader at " + listenOn(m.portB), 10).has_value(),
                     "the resumed master does not follow the new leader: " << m.a->process().transcript());
        PT_CHECK_MSG(waitUntil([&] { return t.minIter.load() >= atResume + 3 || peers.failed(); }, 30),
                     "training stalled after the old leader resumed");
        peers.join();
        t.checkIdentical(3);
        const std::string old = m.a->process().transcript();
        PT_CHECK_MSG(old.find("rebuilt") == std::string::npos && old.find("became the leader (epoch", old.find("stepped down")) ==
                                                                     std::string::npos,
                     "the old leader served again: " << old);
    });
}

#else
TEST_CASE("standby masters: not built (PCCL_HTTP=OFF)", "[api][master][standby][etcd]") {
    WARN("skipped: this build has no etcd client");
}
#endif
