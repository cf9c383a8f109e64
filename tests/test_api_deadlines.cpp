// Public API: the master's vote deadline (laggards removed or voters failed with pcclTimeout),
// the kicked peer's error, and a master killed while peers are blocked.
#include "support/cluster.h"

#include <catch2/catch.hpp>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

using namespace pccl_test;

namespace {

double secondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

} // namespace

TEST_CASE("deadlines: a peer that never starts a tag the others started is removed after the vote deadline and gets "
          "pcclKicked with the reason",
          "[api][deadline]") {
    isolated(60, [&] {
        ::setenv("PCCL_VOTE_TIMEOUT_MS", "1000", 1);  // read by the master created below (one thread here)
        EmbeddedMaster master;
        std::atomic<int> reduced{0};
        ClusterOptions opts;
        opts.groups = {0, 0, 0};
        opts.timeout_s = 40;
        runPeers(master, opts, [&](PeerCtx &ctx) {
            std::vector<float> buf(1000, static_cast<float>(ctx.rank + 1));
            const pcclReduceDescriptor_t d = makeDescriptor(buf.size(), pcclFloat, pcclSum, 5);
            if (ctx.rank < 2) {
                const auto t0 = Clock::now();
                pcclReduceInfo_t info{};
                PT_OK(ctx.comm, pcclAllReduce(buf.data(), buf.data(), &d, ctx.comm, &info));
                PT_CHECK_EQ(info.local_world_size, 2u);
                PT_CHECK(buf[0] == 3.0f);
                PT_CHECK_MSG(secondsSince(t0) < 5.0, "the majority waited " << secondsSince(t0) << " s");
                ++reduced;
                PT_OK(ctx.comm, pcclUpdateTopology(ctx.comm));
                PT_CHECK_EQ(attribute(ctx.comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE), 2);
                return;
            }
            ctx.waitFor([&] { return reduced.load() == 2; }, "the others to finish without this peer", 20);
            PT_EXPECT_RESULT(ctx.comm, pcclKicked, pcclAllReduce(buf.data(), buf.data(), &d, ctx.comm, nullptr));
            const std::string why = pcclGetLastErrorMessage(ctx.comm);
            PT_CHECK_MSG(why.find("did not take part in all-reduce tag 5") != std::string::npos, "message: " << why);
            PT_CHECK(buf[0] == 3.0f);  // untouched
        });
    });
}

TEST_CASE("deadlines: a vote the waiting peers cannot win returns pcclTimeout naming the laggard; nobody is removed",
          "[api][deadline]") {
    isolated(60, [&] {
        ::setenv("PCCL_VOTE_TIMEOUT_MS", "800", 1);
        EmbeddedMaster master;
        std::atomic<bool> timed_out{false};
        ClusterOptions opts;
        opts.groups = {0, 0};
        opts.timeout_s = 40;
        runPeers(master, opts, [&](PeerCtx &ctx) {
            bool pending = true;
            if (ctx.rank == 0) {
                const auto t0 = Clock::now();
                PT_EXPECT_RESULT(ctx.comm, pcclTimeout, pcclArePeersPending(ctx.comm, &pending));
                PT_CHECK_MSG(secondsSince(t0) < 4.0, "the vote took " << secondsSince(t0) << " s to time out");
                const std::string why = pcclGetLastErrorMessage(ctx.comm);
                PT_CHECK_MSG(why.find("peers-pending vote did not complete") != std::string::npos, "message: " << why);
                timed_out = true;
            } else {
                ctx.waitFor([&] { return timed_out.load(); }, "the other peer's vote to time out", 20);
            }
            // The next vote, with both, works; so does a collective: the world is intact.
            PT_OK(ctx.comm, pcclArePeersPending(ctx.comm, &pending));
            PT_CHECK(!pending);
            PT_CHECK_EQ(attribute(ctx.comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE), 2);
        });
    });
}

TEST_CASE("deadlines: a master killed while peers are blocked in an all-reduce, a vote and pcclConnect fails all "
          "three with an error at once, and the in-place buffer is intact",
          "[api][deadline][master]") {
    isolated(60, [&] {
        DaemonMaster daemon;
        std::atomic<int> blocked{0}, returned{0};
        std::atomic<int64_t> kill_ns{0};
        auto now = [] { return Clock::now().time_since_epoch().count(); };
        auto afterKill = [&] { return std::chrono::duration<double>(Clock::duration(now() - kill_ns.load())).count(); };
        ClusterOptions opts;
        opts.groups = {0, 0};
        opts.timeout_s = 40;
        PeerThreads peers(daemon.address(), opts, [&](PeerCtx &ctx) {
            if (ctx.rank == 0) {
                // Waits for the other peer to start tag 1, which it never does.
                std::vector<float> buf(4096, 7.0f);
                const pcclReduceDescriptor_t d = makeDescriptor(buf.size(), pcclFloat, pcclSum, 1);
                ++blocked;
                const pcclResult_t r = pcclAllReduce(buf.data(), buf.data(), &d, ctx.comm, nullptr);
                PT_CHECK_MSG(r == pcclMasterConnectionLost, "all-reduce: " << describe(r, ctx.comm));
                for (float v : buf) PT_CHECK(v == 7.0f);
            } else {
                // Waits for the other peer's vote, which never comes.
                bool pending = false;
                ++blocked;
                const pcclResult_t r = pcclArePeersPending(ctx.comm, &pending);
                PT_CHECK_MSG(r == pcclMasterConnectionLost, "peers pending: " << describe(r, ctx.comm));
            }
            PT_CHECK_MSG(afterKill() < 2.0, "returned " << afterKill() << " s after the master died");
            ++returned;
        });
        peers.onAbort([&] { daemon.process().signal(SIGKILL); });
        PT_CHECK(waitUntil([&] { return blocked.load() == 2 || peers.failed(); }, 20));
        // A joiner waits for admission, which the blocked peers never grant.
        std::atomic<pcclResult_t> joined{pcclSuccess};
        std::atomic<bool> joinerDone{false};
        pcclComm_t *joiner = createComm(daemon.address());
        std::thread joinThread([&] {
            joined = pcclConnect(joiner);
            joinerDone = true;
        });
        // Registrations so far: the two peers, then the joiner (which stays pending).
        int registered = 0;
        while (registered < 3) {
            auto line = daemon.process().readLine(10);
            PT_CHECK_MSG(line.has_value(), "the daemon did not report the joiner; its stdout:\n" << daemon.process().transcript());
            if (line->find("waiting for admission") != std::string::npos) ++registered;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(300));  // let the calls reach their wait; the outcome does not depend on it
        kill_ns = now();
        daemon.process().signal(SIGKILL);
        PT_CHECK_MSG(waitUntil([&] { return joinerDone.load(); }, 10), "pcclConnect still blocked after the master died");
        joinThread.join();
        PT_CHECK_MSG(joined.load() == pcclMasterConnectionLost || joined.load() == pcclMasterConnectionFailed,
                     "pcclConnect: " << describe(joined.load(), joiner));
        PT_CHECK_MSG(afterKill() < 2.0, "pcclConnect returned " << afterKill() << " s after the master died");
        pcclDestroyCommunicator(joiner);
        peers.join([&] { daemon.process().signal(SIGKILL); });
        PT_CHECK_EQ(returned.load(), 2);
    });
}
