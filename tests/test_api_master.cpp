// Public API: the embedded master's lifecycle, the pccl-master daemon, and malformed input.
#include "support/cluster.h"
#include "support/dtypes.h"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <netinet/in.h>
#include <poll.h>
#include <random>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

using namespace pccl_test;

namespace {

// A raw TCP client on 127.0.0.1 (for garbage input and "is it listening" probes).
class RawSocket {
public:
    explicit RawSocket(uint16_t port) {
        fd_ = connectLoopback(port);
        connected_ = fd_ >= 0;
    }
    ~RawSocket() {
        if (fd_ >= 0) ::close(fd_);
    }
    bool connected() const { return connected_; }
    void send(const std::vector<uint8_t> &bytes) {
        // The master may close the connection before everything is sent: ignore EPIPE/ECONNRESET.
        ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    }
    // True once the peer closed the connection (EOF or reset); what it sent first is in received().
    bool waitClosed(double timeout_s) {
        const auto deadline = Clock::now() + std::chrono::milliseconds(static_cast<int>(timeout_s * 1000));
        for (;;) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
            if (left <= 0) return false;
            pollfd p{fd_, POLLIN, 0};
            const int n = ::poll(&p, 1, static_cast<int>(left));
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return false;
            char buf[4096];
            const ssize_t r = ::recv(fd_, buf, sizeof buf, 0);
            if (r > 0) received_.append(buf, static_cast<size_t>(r));
            if (r == 0) return true;
            if (r < 0 && (errno == ECONNRESET || errno == EPIPE)) return true;
            if (r < 0 && errno != EINTR && errno != EAGAIN) return true;
        }
    }

    const std::string &received() const { return received_; }

private:
    int fd_ = -1;
    bool connected_ = false;
    std::string received_;
};

// A listening socket on 127.0.0.1 with a kernel-chosen port (to make a port busy).
struct BusyPort {
    int fd = -1;
    uint16_t port = 0;
    BusyPort() {
        fd = listenLoopback(&port, 4);
        PT_CHECK(fd >= 0);
    }
    ~BusyPort() {
        if (fd >= 0) ::close(fd);
    }
};

void reduceOnce(const pcclComm_t *comm, float value, float expected, uint32_t group_size, uint64_t tag) {
    std::vector<float> buf(1024, value);
    const pcclReduceDescriptor_t d = makeDescriptor(buf.size(), pcclFloat, pcclSum, tag);
    pcclReduceInfo_t info{};
    PT_OK(comm, pcclAllReduce(buf.data(), buf.data(), &d, comm, &info));
    PT_CHECK_EQ(info.local_world_size, group_size);
    for (float x : buf) PT_CHECK_MSG(x == expected, "got " << x << ", expected " << expected);
}

// A peer alone in its group: the all-reduce is refused (PCCL 1.0's pcclTooFewPeers), buffer untouched.
void reduceAlone(const pcclComm_t *comm, uint64_t tag) {
    std::vector<float> buf(1024, 1.0f);
    const pcclReduceDescriptor_t d = makeDescriptor(buf.size(), pcclFloat, pcclSum, tag);
    PT_EXPECT_RESULT(comm, pcclTooFewPeers, pcclAllReduce(buf.data(), buf.data(), &d, comm, nullptr));
    for (float x : buf) PT_CHECK_MSG(x == 1.0f, "got " << x << ", expected the input 1");
}

} // namespace

TEST_CASE("master: create, run, port, interrupt, await termination and destroy", "[api][master]") {
    isolated(60, [&] {
        PT_EXPECT_RESULT(nullptr, pcclSuccess, pcclInit());
        pcclMasterInstance_t *m = nullptr;
        PT_EXPECT_RESULT(nullptr, pcclSuccess, pcclCreateMaster(loopbackV4(0), &m));
        PT_CHECK(m != nullptr);
        uint16_t port = 0;
        PT_EXPECT_RESULT(nullptr, pcclInvalidUsage, pcclGetMasterPort(m, &port));   // not running yet
        PT_EXPECT_RESULT(nullptr, pcclInvalidUsage, pcclMasterAwaitTermination(m)); // never run
        PT_EXPECT_RESULT(nullptr, pcclSuccess, pcclRunMaster(m));
        PT_EXPECT_RESULT(nullptr, pcclInvalidUsage, pcclRunMaster(m)); // already running
        PT_EXPECT_RESULT(nullptr, pcclInvalidArgument, pcclGetMasterPort(m, nullptr));
        PT_EXPECT_RESULT(nullptr, pcclSuccess, pcclGetMasterPort(m, &port));
        PT_CHECK(port != 0);
        {
            RawSocket probe(port);
            PT_CHECK(probe.connected()); // listening as soon as pcclRunMaster returned
        }
        PT_EXPECT_RESULT(nullptr, pcclSuccess, pcclInterruptMaster(m));
        runWithin(15, [&] { PT_OK(nullptr, pcclMasterAwaitTermination(m)); }, "pcclMasterAwaitTermination");
        {
            RawSocket probe(port);
            PT_CHECK(!(probe.connected())); // the listener is closed once terminated
        }
        runWithin(15, [&] { PT_OK(nullptr, pcclDestroyMaster(m)); }, "pcclDestroyMaster");
    });
}

TEST_CASE("master: destroying a running master stops it", "[api][master]") {
    isolated(60, [&] {
        PT_EXPECT_RESULT(nullptr, pcclSuccess, pcclInit());
        pcclMasterInstance_t *m = nullptr;
        PT_EXPECT_RESULT(nullptr, pcclSuccess, pcclCreateMaster(loopbackV4(0), &m));
        PT_EXPECT_RESULT(nullptr, pcclSuccess, pcclRunMaster(m));
        uint16_t port = 0;
        PT_EXPECT_RESULT(nullptr, pcclSuccess, pcclGetMasterPort(m, &port));
        runWithin(15, [&] { PT_OK(nullptr, pcclDestroyMaster(m)); }, "pcclDestroyMaster of a running master");
        RawSocket probe(port);
        PT_CHECK(!(probe.connected()));
    });
}

TEST_CASE("master: two masters on port 0 listen on distinct ports; a busy port fails pcclRunMaster with "
          "pcclInvalidArgument naming the address",
          "[api][master]") {
    isolated(60, [&] {
        EmbeddedMaster a, b;
        PT_CHECK(a.port() != b.port());
        BusyPort busy;
        pcclMasterInstance_t *m = nullptr;
        PT_EXPECT_RESULT(nullptr, pcclSuccess, pcclCreateMaster(loopbackV4(busy.port), &m));
        const pcclResult_t r = pcclRunMaster(m);
        const std::string why = pcclGetLastErrorMessage(nullptr);
        PT_CHECK_MSG(r == pcclInvalidArgument, "pcclRunMaster on a busy port: " << resultName(r) << ": " << why);
        const std::string address = "127.0.0.1:" + std::to_string(busy.port);
        PT_CHECK_MSG(why.find(address) != std::string::npos, "the reason '" << why << "' does not name " << address);
        PT_CHECK_MSG(why.find("in use") != std::string::npos, "the reason '" << why << "' does not say the port is in use");
        runWithin(15, [&] { PT_OK(nullptr, pcclDestroyMaster(m)); }, "pcclDestroyMaster");
    });
}

TEST_CASE("master: an interrupt from another thread while a peer is connected stops the master; the peer then fails "
          "with pcclMasterConnectionLost",
          "[api][master]") {
    isolated(60, [&] {
        EmbeddedMaster master;
        runWithin(25, [&] {
            pcclComm_t *comm = createComm(master.address());
            CommGuard guard(comm);
            PT_OK(comm, pcclConnect(comm));
            reduceAlone(comm, 0);
            std::thread interrupter([&] { pcclInterruptMaster(master.get()); });
            interrupter.join();
            PT_OK(nullptr, pcclMasterAwaitTermination(master.get()));
            PT_EXPECT_RESULT(comm, pcclMasterConnectionLost, pcclUpdateTopology(comm));
            PT_CHECK(std::string(pcclGetLastErrorMessage(comm)).size() > 0);
            // Destroying a communicator whose master is gone is bounded and succeeds.
            PT_OK(comm, pcclDestroyCommunicator(comm));
            guard.comm = nullptr;
        }, "interrupt with a connected peer", [&] { master.destroy(); });
    });
}

TEST_CASE("master: malformed input (garbage, a huge length prefix) closes only that connection", "[api][master]") {
    isolated(60, [&] {
        EmbeddedMaster master;
        std::atomic<bool> garbage_sent{false};
        std::atomic<bool> alone_checked{false};
        ClusterOptions first;
        first.groups = {0};
        first.timeout_s = 40;
        PeerThreads before(master.address(), first, [&](PeerCtx &ctx) {
            ctx.waitFor([&] { return garbage_sent.load(); }, "the malformed input to be sent", 30);
            PT_OK(ctx.comm, pcclUpdateTopology(ctx.comm));
            PT_CHECK_EQ(attribute(ctx.comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE), 1);
            reduceAlone(ctx.comm, 0);
            alone_checked = true;
            awaitWorld(ctx.comm, 2, 30); // admits the peer that connects after the garbage
            reduceOnce(ctx.comm, 1.0f, 3.0f, 2, 1);
        });
        PT_CHECK(waitUntil([&] { return before.allConnected() || before.failed(); }, 20));

        std::mt19937_64 rng(20240601);
        std::vector<uint8_t> garbage(64);
        for (auto &b : garbage) b = static_cast<uint8_t>(rng());
        std::vector<uint8_t> huge_length(16, 0xFF);
        // A small, plausible length (as u32 or u64, little-endian) followed by a garbage payload.
        std::vector<uint8_t> small_frame{32, 0, 0, 0, 0, 0, 0, 0};
        for (int i = 0; i < 36; ++i) small_frame.push_back(static_cast<uint8_t>(rng()));
        int idx = 0;
        for (const auto *bytes : {&garbage, &huge_length, &small_frame}) {
            ScopedContext context("malformed input #" + std::to_string(idx++));
            RawSocket raw(master.port());
            PT_CHECK(raw.connected());
            raw.send(*bytes);
            PT_CHECK_MSG(raw.waitClosed(5), "the master kept the connection open for 5 s");
        }
        garbage_sent = true;
        PT_CHECK(waitUntil([&] { return alone_checked.load() || before.failed(); }, 20));

        ClusterOptions late;
        late.groups = {0};
        late.expected_world = 2;
        late.timeout_s = 30;
        PeerThreads after(master.address(), late, [&](PeerCtx &ctx) { reduceOnce(ctx.comm, 2.0f, 3.0f, 2, 1); });
        before.join([&] { master.destroy(); });
        after.join([&] { master.destroy(); });
    });
}

TEST_CASE("master: a peer speaking another protocol version is rejected with a reason, not dropped silently",
          "[api][master]") {
    isolated(30, [&] {
        // The plaintext protocol of an open run (pccl_tests_secret sets a secret: a master with
        // one answers any plaintext frame with "requires the run secret", test_security_net.cpp).
        ::unsetenv("PCCL_SECRET");
        ::unsetenv("PCCL_SECRET_FILE");
        EmbeddedMaster master;
        // A version-1 Hello: magic, version 1, peer group, data port, a 16-byte id (its layout).
        std::vector<uint8_t> payload{0x50, 0x43, 0x43, 0x4c, 1, 0, 0, 0, 0, 0, 0x40, 0x9c};
        for (int i = 0; i < 16; ++i) payload.push_back(static_cast<uint8_t>(i + 1));
        std::vector<uint8_t> frame{static_cast<uint8_t>(payload.size()), 0, 0, 0, 0, 0};
        frame.insert(frame.end(), payload.begin(), payload.end());
        RawSocket raw(master.port());
        PT_CHECK(raw.connected());
        raw.send(frame);
        PT_CHECK_MSG(raw.waitClosed(5), "the master kept the connection open");
        PT_CHECK_MSG(raw.received().find("protocol version 1 not supported") != std::string::npos,
                     "no Reject with the reason; got " << raw.received().size() << " bytes");
    });
}

TEST_CASE("master daemon: serves a two-peer all-reduce and exits 0 on SIGTERM with a peer connected; with "
          "--end-run-on-exit the peer fails at once",
          "[api][master][daemon]") {
    isolated(60, [&] {
        DaemonMaster daemon("127.0.0.1:0", {"--end-run-on-exit"});
        ClusterOptions opts;
        opts.groups = {0, 0};
        runPeers(daemon, opts, [&](PeerCtx &ctx) {
            reduceOnce(ctx.comm, static_cast<float>(ctx.rank + 1), 3.0f, 2, 0);
        });
        pcclComm_t *comm = nullptr;
        runWithin(20, [&] {
            comm = createComm(daemon.address());
            PT_OK(comm, pcclConnect(comm));
        }, "connect to the daemon", [&] { daemon.process().signal(SIGKILL); });
        CommGuard guard(comm);
        daemon.process().signal(SIGTERM);
        const auto status = daemon.process().wait(15);
        ScopedContext context("daemon stdout:\n" + daemon.process().transcript());
        PT_CHECK_MSG(status.has_value(), "pccl-master still running 15 s after SIGTERM");
        PT_CHECK(WIFEXITED(*status));
        if (WIFEXITED(*status)) PT_CHECK(WEXITSTATUS(*status) == 0);
        PT_CHECK_MSG(!WIFSIGNALED(*status), "pccl-master died from signal " << WTERMSIG(*status));
        runWithin(20, [&] {
            PT_EXPECT_RESULT(comm, pcclMasterConnectionLost, pcclUpdateTopology(comm));
            PT_OK(comm, pcclDestroyCommunicator(comm));
            guard.comm = nullptr;
        }, "peer after the daemon exited", [&] { daemon.process().signal(SIGKILL); });
    });
}
