// Public API: a peer stopped (SIGSTOP) when it should vote. The survivors are threads of this
// process; the victim is a pccl_test_peer child that stops itself just before its vote, so it is
// certainly stopped before voting.
#include "support/cluster.h"
#include "support/fault.h"

#include <catch2/catch.hpp>

#include <csignal>
#include <cstring>
#include <mutex>
#include <vector>

using namespace pccl_test;

namespace {
constexpr uint32_t kVictimHeartbeatMs = 1000;
}

TEST_CASE("topology vote: a peer stopped (SIGSTOP) before voting is removed by the heartbeat deadline, the others' "
          "vote completes without it, and once resumed its vote returns pcclKicked with the reason",
          "[api][fault][hang][vote]") {
    isolated(60, [&] {
        EmbeddedMaster master;
        std::unique_ptr<ChildProcess> victim;
        auto release = [&] {
            if (victim) victim->signal(SIGKILL);
            master.destroy();
        };
        std::atomic<int64_t> stop_ns{0};
        std::atomic<int> reduced{0};
        ClusterOptions opts;
        opts.groups = {0, 0};
        opts.expected_world = 3;
        opts.timeout_s = 45;
        PeerThreads survivors(master.address(), opts, [&](PeerCtx &ctx) {
            ctx.waitFor([&] { return stop_ns.load() != 0; }, "the victim to stop", 30);
            PT_OK(ctx.comm, pcclUpdateTopology(ctx.comm));
            const double after = secondsSinceNs(stop_ns.load());
            // The heartbeat deadline, the master's tick and scheduling on a busy machine.
            const double limit = kVictimHeartbeatMs / 1000.0 + 4.0;
            PT_CHECK_MSG(after < limit, "the vote completed " << after << " s after the stop; expected < " << limit);
            PT_CHECK_EQ(attribute(ctx.comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE), 2);
            std::vector<float> buf(1u << 20);
            fillPattern(buf, ctx.rank == 0 ? 1 : 10);
            const pcclReduceDescriptor_t d = makeDescriptor(buf.size(), pcclFloat, pcclSum, 0);
            pcclReduceInfo_t info{};
            PT_OK(ctx.comm, pcclAllReduce(buf.data(), buf.data(), &d, ctx.comm, &info));
            PT_CHECK_EQ(info.local_world_size, 2u);
            const std::string diff = checkPattern(buf.data(), buf.size(), 11, 2);
            PT_CHECK_MSG(diff.empty(), "all-reduce after the vote: " << diff);
            ++reduced;
        });
        survivors.onAbort(release);
        victim = std::make_unique<ChildProcess>(std::vector<std::string>{
            PCCL_TEST_PEER_BIN, "stop-before-vote", "--master", "127.0.0.1:" + std::to_string(master.port()), "--world",
            "3", "--heartbeat-ms", std::to_string(kVictimHeartbeatMs), "--vote", "update"});
        std::optional<std::string> stopping;
        while (!stopping) {
            PT_CHECK_MSG(!survivors.failed(), "a survivor failed before the victim stopped");
            PT_CHECK_MSG(!victim->wait(0).has_value(), "the victim exited: " << victim->transcript());
            stopping = victim->waitForLine("STOPPING", 0.25);
        }
        PT_CHECK_MSG(waitStopped(victim->pid(), 10), "the victim did not stop");
        stop_ns = nowNs();
        PT_CHECK_MSG(waitUntil([&] { return reduced.load() == 2 || survivors.failed(); }, 30),
                     "the survivors did not finish their vote and all-reduce");
        PT_CHECK_MSG(!survivors.failed(), "a survivor failed");
        victim->signal(SIGCONT);
        auto voted = victim->waitForLine("VOTED ", 20);
        PT_CHECK_MSG(voted.has_value(), "the resumed victim did not report its vote:\n" << victim->transcript());
        // The master removed it for silence; that, not a lost master, is what it must be told.
        PT_CHECK_MSG(voted->rfind("VOTED pcclKicked ", 0) == 0, "the resumed victim's vote: " << *voted);
        PT_CHECK_MSG(voted->find("no heartbeat") != std::string::npos, "the kick reason is missing: " << *voted);
        // ... and the phase it was removed in, from the master's point of view.
        PT_CHECK_MSG(voted->find("it was in the topology update vote (had not voted)") != std::string::npos,
                     "the kick reason does not name the phase: " << *voted);
        const auto status = victim->wait(20);
        PT_CHECK_MSG(status.has_value() && WIFEXITED(*status) && WEXITSTATUS(*status) == 0,
                     "the victim did not exit cleanly:\n" << victim->transcript());
        survivors.join(release);
    });
}
