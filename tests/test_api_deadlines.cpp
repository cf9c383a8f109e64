// Public API: the master's vote deadline (laggards removed or voters failed with pcclTimeout),
// the kicked peer's error, and a master killed while peers are blocked.
#include "support/cluster.h"
#include "support/fault.h"

#include <catch2/catch.hpp>

#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <thread>
#include <vector>

using namespace pccl_test;

namespace {

double secondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// True when no established loopback TCP connection to or from `port` has unread bytes or unsent
// bytes (/proc/net/tcp of this network namespace): whatever the peers sent the master it has read.
bool controlStreamsDrained(uint16_t port) {
    std::ifstream in("/proc/net/tcp");
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
        unsigned local_port = 0, remote_port = 0, state = 0;
        unsigned long tx = 0, rx = 0;
        if (std::sscanf(line.c_str(), " %*d: %*8s:%x %*8s:%x %x %lx:%lx", &local_port, &remote_port, &state, &tx, &rx) != 5)
            continue;
        if (state == 0x01 && (local_port == port || remote_port == port) && (tx != 0 || rx != 0)) return false;
    }
    return true;
}

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
            PT_CHECK_MSG(why.find("(phase: waiting to start)") != std::string::npos, "no phase in: " << why);
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
                PT_CHECK_MSG(why.find("(phase: voting)") != std::string::npos, "no phase in: " << why);
                PT_CHECK_MSG(why.find("127.0.0.1:") != std::string::npos, "the laggard's address is missing: " << why);
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

TEST_CASE("deadlines: a shared-state sync one peer never joins returns pcclTimeout naming the laggard, the sync and its "
          "phase; the next sync with both works",
          "[api][deadline][shared_state]") {
    isolated(60, [&] {
        ::setenv("PCCL_VOTE_TIMEOUT_MS", "800", 1);
        EmbeddedMaster master;
        std::atomic<bool> timed_out{false};
        ClusterOptions opts;
        opts.groups = {0, 0};
        opts.timeout_s = 40;
        runPeers(master, opts, [&](PeerCtx &ctx) {
            std::vector<float> weights(1024, 1.0f);
            pcclTensorInfo_t info{"weights", weights.data(), weights.size(), pcclFloat, pcclDeviceCpu, false};
            pcclSharedState_t state{1, 1, &info};
            if (ctx.rank == 0) {
                PT_EXPECT_RESULT(ctx.comm, pcclTimeout,
                                 pcclSynchronizeSharedState(ctx.comm, &state, PCCL_SHARED_STATE_SYNC_STRATEGY_ENFORCE_POPULAR,
                                                            nullptr));
                const std::string why = pcclGetLastErrorMessage(ctx.comm);
                PT_CHECK_MSG(why.find("shared-state sync") != std::string::npos, "no operation in: " << why);
                PT_CHECK_MSG(why.find("waiting to start") != std::string::npos, "no phase in: " << why);
                PT_CHECK_MSG(why.find("still waiting for peer ") != std::string::npos && why.find("127.0.0.1:") != std::string::npos,
                             "the laggard is not named with its address: " << why);
                timed_out = true;
            } else {
                ctx.waitFor([&] { return timed_out.load(); }, "the other peer's sync to time out", 20);
            }
            state.revision = 2;
            PT_OK(ctx.comm, pcclSynchronizeSharedState(ctx.comm, &state, PCCL_SHARED_STATE_SYNC_STRATEGY_ENFORCE_POPULAR,
                                                       nullptr));
        });
    });
}

TEST_CASE("deadlines: with master reconnection off (PCCL 1.0), a master killed while peers are blocked in an "
          "all-reduce, a vote and pcclConnect fails all three with an error at once, and the in-place buffer is intact",
          "[api][deadline][master]") {
    isolated(60, [&] {
        ::setenv("PCCL_MASTER_RECONNECT_TIMEOUT_MS", "0", 1);  // this forked test process only
        DaemonMaster daemon;
        std::atomic<int> blocked{0}, returned{0};
        std::atomic<int64_t> kill_ns{0};
        auto now = [] { return Clock::now().time_since_epoch().count(); };
        auto afterKill = [&] { return std::chrono::duration<double>(Clock::duration(now() - kill_ns.load())).count(); };
        ClusterOptions opts;
        opts.groups = {0, 0, 0};
        opts.timeout_s = 40;
        PeerThreads peers(daemon.address(), opts, [&](PeerCtx &ctx) {
            if (ctx.rank == 2) {
                // Calls nothing: were it blocked too, the master would fail the other two calls
                // at once as misordered (pcclMismatch) instead of leaving them waiting.
                ctx.waitFor([&] { return kill_ns.load() != 0; }, "the master to be killed", 30);
                return;
            }
            if (ctx.rank == 0) {
                // Waits for the other peers to start tag 1, which they never do.
                std::vector<float> buf(4096, 7.0f);
                const pcclReduceDescriptor_t d = makeDescriptor(buf.size(), pcclFloat, pcclSum, 1);
                ++blocked;
                const pcclResult_t r = pcclAllReduce(buf.data(), buf.data(), &d, ctx.comm, nullptr);
                PT_CHECK_MSG(r == pcclMasterConnectionLost, "all-reduce: " << describe(r, ctx.comm));
                const std::string why = pcclGetLastErrorMessage(ctx.comm);
                PT_CHECK_MSG(why.find("all-reduce tag 1, waiting to start") != std::string::npos, "no phase in: " << why);
                for (float v : buf) PT_CHECK(v == 7.0f);
            } else {
                // Waits for the other peers' votes, which never come. (A peers-pending or topology
                // vote with nobody pending would be answered at once: peer 0 waits for this one in
                // its all-reduce. An optimize vote is not a no-op, so it waits.)
                ++blocked;
                const pcclResult_t r = pcclOptimizeTopology(ctx.comm);
                PT_CHECK_MSG(r == pcclMasterConnectionLost, "optimize: " << describe(r, ctx.comm));
                const std::string why = pcclGetLastErrorMessage(ctx.comm);
                PT_CHECK_MSG(why.find("pcclOptimizeTopology was waiting for the master") != std::string::npos,
                             "no phase in: " << why);
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
        // Registrations so far: the three peers, then the joiner (which stays pending).
        int registered = 0;
        while (registered < 4) {
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

TEST_CASE("deadlines: a master stopped (SIGSTOP) for twice its vote deadline while a tag is starting removes nobody "
          "once resumed; the tag and the next one run with the full world",
          "[api][deadline][master][stall]") {
    // The peers keep their 5 s heartbeat deadline (a master silent longer than that is lost to them
    // by design); the master settles votes after 500 ms. Two peers start tag 0 and the master reads
    // their starts; it is stopped; the third peer starts the tag while it does not run. Resumed, the
    // master must read that start, not settle the vote it could not see: the tag runs on three.
    isolated(60, [&] {
        constexpr int kVoteTimeoutMs = 500;
        ::setenv("PCCL_VOTE_TIMEOUT_MS", std::to_string(kVoteTimeoutMs).c_str(), 1);  // read by the daemon only
        DaemonMaster daemon;
        std::atomic<int> starting{0};
        std::atomic<bool> stopped{false};
        ClusterOptions opts;
        opts.groups = {0, 0, 0};
        opts.timeout_s = 40;
        PeerThreads peers(daemon.address(), opts, [&](PeerCtx &ctx) {
            const int value = ctx.rank == 0 ? 1 : ctx.rank == 1 ? 10 : 100;
            std::vector<float> buf(1u << 16);
            for (uint64_t tag = 0; tag < 2; ++tag) {
                fillPattern(buf, value);
                const pcclReduceDescriptor_t d = makeDescriptor(buf.size(), pcclFloat, pcclSum, tag);
                if (tag == 0 && ctx.rank == 2) ctx.waitFor([&] { return stopped.load(); }, "the master to be stopped", 20);
                if (tag == 0 && ctx.rank != 2) ++starting;
                pcclReduceInfo_t info{};
                const pcclResult_t r = pcclAllReduce(buf.data(), buf.data(), &d, ctx.comm, &info);
                PT_CHECK_MSG(r == pcclSuccess, "all-reduce tag " << tag << ": " << describe(r, ctx.comm));
                PT_CHECK_EQ(info.local_world_size, 3u);
                const std::string diff = checkPattern(buf.data(), buf.size(), 111, 3);
                PT_CHECK_MSG(diff.empty(), "all-reduce tag " << tag << ": " << diff);
            }
            PT_CHECK_EQ(attribute(ctx.comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE), 3);
        });
        peers.onAbort([&] { daemon.process().signal(SIGKILL); });
        PT_CHECK_MSG(waitUntil([&] { return starting.load() == 2 || peers.failed(); }, 20), "the peers did not start tag 0");
        PT_CHECK_MSG(waitUntil([&] { return controlStreamsDrained(daemon.port()); }, 5),
                     "the master did not read what the peers sent it");
        daemon.process().signal(SIGSTOP);
        PT_CHECK_MSG(waitStopped(daemon.process().pid(), 10), "the master did not stop");
        stopped = true;
        // The fault itself, not a wait for a condition: the master does not run for this long.
        std::this_thread::sleep_for(std::chrono::milliseconds(2 * kVoteTimeoutMs));
        daemon.process().signal(SIGCONT);
        peers.join([&] { daemon.process().signal(SIGKILL); });
        while (daemon.process().readLine(0)) {
        }
        PT_CHECK_MSG(daemon.process().transcript().find("kicked") == std::string::npos,
                     "the resumed master removed a peer:\n" << daemon.process().transcript());
    });
}
