// What strangers can cost a real pccl-master process (issue 14, item 5), over sockets on the
// loopback: the handshake deadline, the per-address cap, an accept loop at its descriptor limit
// (it sheds idle connections that sent no Hello and does not spin), memory held by oversized
// frame headers, and a joiner with a dead data port removed from the admission round alone.
// Sources other than 127.0.0.1 are other loopback addresses (127.0.x.y), bound before connect.
#include "support/cluster.h"
#include "support/dtypes.h"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <fstream>
#include <netinet/in.h>
#include <poll.h>
#include <sstream>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "protocol/codec.h"
#include "transport/framed_connection.h"

using namespace pccl_test;
namespace proto = pccl::protocol;

namespace {

// `ulimit -v` (KiB) for a master that must not allocate much; none in a sanitizer build, whose
// runtime reserves terabytes of address space at start (the RSS checks still hold there).
std::string addressSpaceCap(const char *kib) {
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
    (void)kib;
    return "";
#else
    return std::string("-v ") + kib;
#endif
}

// pccl-master with extra flags, optionally under `ulimit` limits (e.g. "-n 1024"); its pid is
// the master's own (the shell execs it).
class Master {
public:
    explicit Master(const std::vector<std::string> &flags, const std::string &ulimit = "") {
        std::string cmd = "exec '" + std::string(PCCL_MASTER_BIN) + "' --listen 127.0.0.1:0";
        for (auto &f : flags) cmd += " " + f;
        if (!ulimit.empty()) cmd = "ulimit " + ulimit + " && " + cmd;
        proc_ = std::make_unique<ChildProcess>(std::vector<std::string>{"/bin/sh", "-c", cmd});
        auto line = proc_->waitForLine("pccl-master listening on", 15);
        PT_CHECK_MSG(line.has_value(), "no banner from pccl-master; stdout: " << proc_->transcript());
        port_ = static_cast<uint16_t>(std::atoi(line->c_str() + line->rfind(':') + 1));
        PT_CHECK(port_ > 0);
    }
    uint16_t port() const { return port_; }
    pid_t pid() const { return proc_->pid(); }
    ChildProcess &process() { return *proc_; }
    bool alive() { return !proc_->wait(0).has_value(); }

private:
    std::unique_ptr<ChildProcess> proc_;
    uint16_t port_ = 0;
};

// A raw TCP client of 127.0.0.1:port from `source` (another loopback address).
class Client {
public:
    Client(uint16_t port, const char *source = "127.0.0.1") {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        PT_CHECK_MSG(fd_ >= 0, "socket: " << std::strerror(errno));
        sockaddr_in from{};
        from.sin_family = AF_INET;
        ::inet_pton(AF_INET, source, &from.sin_addr);
        PT_CHECK_MSG(::bind(fd_, reinterpret_cast<sockaddr *>(&from), sizeof from) == 0, "bind: " << std::strerror(errno));
        sockaddr_in to{};
        to.sin_family = AF_INET;
        to.sin_port = htons(port);
        to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        PT_CHECK_MSG(::connect(fd_, reinterpret_cast<sockaddr *>(&to), sizeof to) == 0, "connect: " << std::strerror(errno));
    }
    ~Client() { ::close(fd_); }
    Client(const Client &) = delete;
    Client &operator=(const Client &) = delete;

    void send(const std::vector<uint8_t> &bytes) { ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL); }
    void send(const proto::ControlMessage &m) {
        std::vector<uint8_t> frame;
        proto::encodeFrame(m, frame);
        send(frame);
    }
    // True once the master closed the connection (within timeout_s); what it sent is in received().
    bool waitClosed(double timeout_s) {
        const auto deadline = Clock::now() + std::chrono::milliseconds(static_cast<int>(timeout_s * 1000));
        for (;;) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
            pollfd p{fd_, POLLIN, 0};
            const int n = ::poll(&p, 1, static_cast<int>(std::max<long long>(left, 0)));
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return false;
            char buf[4096];
            const ssize_t r = ::recv(fd_, buf, sizeof buf, 0);
            if (r > 0) {
                received_.append(buf, static_cast<size_t>(r));
                continue;
            }
            if (r == 0 || (errno != EINTR && errno != EAGAIN)) return true;
        }
    }
    bool open() { return !waitClosed(0); }
    const std::string &received() const { return received_; }

private:
    int fd_ = -1;
    std::string received_;
};

// A source address of the loopback: 127.0.<hi>.<lo>.
std::string source(int hi, int lo) { return "127.0." + std::to_string(hi) + "." + std::to_string(lo); }

// Seconds of CPU the process has used (user + system).
double cpuSeconds(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::istringstream rest(all.substr(all.rfind(')') + 2));
    std::vector<std::string> fields;
    for (std::string s; rest >> s;) fields.push_back(s);
    PT_CHECK(fields.size() > 12);
    // Fields 14 and 15 of stat (utime, stime); `rest` starts at field 3.
    return static_cast<double>(std::stoull(fields[11]) + std::stoull(fields[12])) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// Resident memory of the process, in MiB.
double rssMiB(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(f, line);)
        if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
    PT_CHECK_MSG(false, "no VmRSS for pid " << pid);
    return 0;
}

void raiseDescriptorLimit() {
    rlimit r{};
    ::getrlimit(RLIMIT_NOFILE, &r);
    r.rlim_cur = r.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &r);
    PT_CHECK_MSG(r.rlim_cur >= 2500, "this test needs 2500 descriptors; the hard limit is " << r.rlim_max);
}

proto::Hello helloFor(uint16_t dataPort) {
    proto::Hello h;
    h.uuid = pccl::Uuid::random();
    h.data_port = dataPort;
    h.heartbeat_timeout_ms = 60000;
    return h;
}

// These tests speak the open protocol over raw sockets: no run secret for the master this
// process starts, whatever the suite's environment holds.
void openRun() {
    ::unsetenv("PCCL_SECRET");
    ::unsetenv("PCCL_SECRET_FILE");
}

// A one-peer run that this master admits within timeout_s.
void joinAlone(uint16_t port, double timeout_s) {
    ClusterOptions o;
    o.groups = {0};
    o.timeout_s = timeout_s;
    runPeers(loopbackV4(port), o, [](PeerCtx &ctx) { PT_CHECK_EQ(attribute(ctx.comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE), 1); });
}

// An all-reduce (sum of 1s) over the whole group; every element must be `expected`.
void reduceOnce(const pcclComm_t *comm, float expected, uint64_t tag) {
    std::vector<float> buf(1024, 1.0f);
    const pcclReduceDescriptor_t d = makeDescriptor(buf.size(), pcclFloat, pcclSum, tag);
    PT_OK(comm, pcclAllReduce(buf.data(), buf.data(), &d, comm, nullptr));
    for (float x : buf) PT_CHECK_MSG(x == expected, "got " << x << ", expected " << expected);
}

} // namespace

TEST_CASE("master bounds: a connection without a Hello is closed at the handshake deadline; heartbeats do not keep "
          "it", "[bounds][master]") {
    isolated(20, [&] {
        openRun();
        Master master({"--handshake-timeout-ms", "1000"});
        Client silent(master.port()), beating(master.port());
        const auto start = Clock::now();
        beating.send(proto::Heartbeat{});
        PT_CHECK_MSG(beating.waitClosed(2), "a connection that sent only a heartbeat was kept");
        PT_CHECK_MSG(beating.received().find("expected Hello, got Heartbeat") != std::string::npos,
                     "no reason sent; got " << beating.received().size() << " bytes");
        PT_CHECK_MSG(silent.open(), "the silent connection was closed before its deadline");
        PT_CHECK_MSG(silent.waitClosed(3), "a silent connection outlived the 1000 ms handshake deadline by 3 s");
        const double took = std::chrono::duration<double>(Clock::now() - start).count();
        PT_CHECK_MSG(took >= 0.9, "closed after " << took << " s, before the deadline");
        PT_CHECK(silent.received().find("no Hello within the handshake deadline of 1000 ms") != std::string::npos);
    });
}

TEST_CASE("master bounds: the 65th connection from one address is closed at once; a peer from another still joins",
          "[bounds][master]") {
    isolated(30, [&] {
        openRun();
        raiseDescriptorLimit();
        Master master({"--handshake-timeout-ms", "30000"});
        std::vector<std::unique_ptr<Client>> flood;
        for (int i = 0; i < 64; ++i) flood.push_back(std::make_unique<Client>(master.port(), "127.0.0.2"));
        Client over(master.port(), "127.0.0.2");
        PT_CHECK_MSG(over.waitClosed(2), "the 65th connection from 127.0.0.2 was kept");
        PT_CHECK_MSG(over.received().empty(), "a refused connection should get no bytes");
        Client elsewhere(master.port(), "127.0.0.3");
        PT_CHECK_MSG(!elsewhere.waitClosed(0.3), "a connection from another address was refused");
        for (auto &c : flood) PT_CHECK_MSG(c->open(), "a connection under the cap was closed");
        joinAlone(master.port(), 10);  // from 127.0.0.1
    });
}

namespace {

// At a 1,024-descriptor limit with 1,100 idle connections (they neither authenticate nor send a
// Hello), a real peer still joins: the master sheds the oldest idle ones; and it does not spin.
void idleFloodAtDescriptorLimit() {
    raiseDescriptorLimit();
    Master master({"--handshake-timeout-ms", "30000"}, "-n 1024");
    std::vector<std::unique_ptr<Client>> idle;
    for (int i = 0; i < 1100; ++i) idle.push_back(std::make_unique<Client>(master.port(), source(1, 1 + i / 55).c_str()));
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    const auto start = Clock::now();
    joinAlone(master.port(), 10);
    const double took = std::chrono::duration<double>(Clock::now() - start).count();
    // Well before the idle connections' deadlines (5 s for the handshake, 30 s for the Hello).
    PT_CHECK_MSG(took < 4, "a peer took " << took << " s to join");
    const double cpu = cpuSeconds(master.pid());
    std::this_thread::sleep_for(std::chrono::seconds(2));
    const double used = cpuSeconds(master.pid()) - cpu;
    PT_CHECK_MSG(used < 0.2, "the master used " << used << " s of CPU in 2 s while idle connections were open");
    size_t open = 0;
    for (auto &c : idle) open += c->open();
    PT_CHECK_MSG(open > 800, "only " << open << " idle connections are still open: the master closed more than it "
                                           "needed to");
    PT_CHECK(master.alive());
}

} // namespace

TEST_CASE("master bounds: at 1024 descriptors with 1,100 idle connections a real peer still joins and the master "
          "does not spin", "[bounds][master]") {
    isolated(40, [&] {
        openRun();
        idleFloodAtDescriptorLimit();
    });
}

TEST_CASE("master bounds: with a run secret, idle connections that never authenticate are shed at the descriptor "
          "limit", "[bounds][master][security]") {
    isolated(40, [&] {
        ::setenv("PCCL_SECRET", "bounds-test-secret-0123456789abcdef", 1);  // master and peer
        idleFloodAtDescriptorLimit();
    });
}

TEST_CASE("master bounds: at its descriptor limit with only registered connections the accept loop backs off",
          "[bounds][master]") {
    isolated(40, [&] {
        openRun();
        raiseDescriptorLimit();
        Master master({"--heartbeat-timeout-ms", "30000"}, "-n 1024");
        const uint16_t dead = freeLoopbackPort();
        std::vector<std::unique_ptr<Client>> flood;
        for (int i = 0; i < 1100; ++i) {
            flood.push_back(std::make_unique<Client>(master.port(), source(1, 1 + i / 55).c_str()));
            flood.back()->send(helloFor(dead));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1000));  // accepted up to the limit
        const double cpu = cpuSeconds(master.pid());
        std::this_thread::sleep_for(std::chrono::seconds(2));
        const double used = cpuSeconds(master.pid()) - cpu;
        // A busy accept loop (EMFILE at once, every time) uses most of a core here.
        PT_CHECK_MSG(used < 0.2, "the master used " << used << " s of CPU in 2 s at its descriptor limit");
        PT_CHECK(master.alive());
    });
}

TEST_CASE("master bounds: 200 connections announcing 16 MiB frames cost the master under 64 MiB",
          "[bounds][master]") {
    isolated(30, [&] {
        openRun();
        // Address space capped, so that a master that does allocate fails instead of eating the host.
        Master master({"--handshake-timeout-ms", "30000"}, addressSpaceCap("524288"));
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        const double before = rssMiB(master.pid());
        // A 6-byte frame header: u32 payload length 16 MiB, u16 type 0 (Hello); no payload.
        const std::vector<uint8_t> header{0x00, 0x00, 0x00, 0x01, 0x00, 0x00};
        std::vector<std::unique_ptr<Client>> conns;
        for (int i = 0; i < 200; ++i) {
            conns.push_back(std::make_unique<Client>(master.port(), source(2, 1 + i / 50).c_str()));
            conns.back()->send(header);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1000));
        PT_CHECK_MSG(master.alive(), "pccl-master died (it allocated what the headers announced?)");
        const double grew = rssMiB(master.pid()) - before;
        PT_CHECK_MSG(grew < 64, "master RSS grew by " << grew << " MiB");
    });
}

TEST_CASE("master bounds: a joiner with a dead data port is removed alone; the honest joiner is admitted and the "
          "run goes on", "[bounds][master][links]") {
    isolated(40, [&] {
        openRun();
        Master master({});
        ClusterOptions running;
        running.groups = {0, 0};
        running.timeout_s = 30;
        std::atomic<bool> registered{false};
        PeerThreads first(loopbackV4(master.port()), running, [&](PeerCtx &ctx) {
            ctx.waitFor([&] { return registered.load(); }, "both joiners to register", 20);
            awaitWorld(ctx.comm, 3, 20);
            reduceOnce(ctx.comm, 3.0f, 1);
        });
        PT_CHECK(waitUntil([&] { return first.allConnected() || first.failed(); }, 15));
        // The fake joiner: a valid Hello for a data port nobody listens on; it never links up.
        Client fake(master.port(), "127.0.0.1");
        fake.send(helloFor(freeLoopbackPort()));
        ClusterOptions late;
        late.groups = {0};
        late.expected_world = 3;
        late.timeout_s = 30;
        PeerThreads honest(loopbackV4(master.port()), late, [&](PeerCtx &ctx) { reduceOnce(ctx.comm, 3.0f, 1); });
        for (;;) {
            auto line = master.process().readLine(15);
            PT_CHECK_MSG(line.has_value(), "the joiners did not both register; stdout: " << master.process().transcript());
            if (line->find("pending 2") != std::string::npos) break;
        }
        registered = true;
        PT_CHECK_MSG(fake.waitClosed(20), "the fake joiner was not removed");
        PT_CHECK_MSG(fake.received().find("could not link to it") != std::string::npos, "no reason sent to the fake");
        first.join([&] { master.process().signal(SIGKILL); });
        honest.join([&] { master.process().signal(SIGKILL); });
    });
}

TEST_CASE("master bounds: in an open run only a Rejoin may be a first frame over 4 KiB; one listing a 300-peer ring "
          "is heard", "[bounds][master][recovery]") {
    isolated(30, [&] {
        openRun();
        Master master({"--handshake-timeout-ms", "10000"});
        // A Hello padded past 4 KiB (8 KiB announced and sent): closed with the reason, nothing read beyond the type.
        {
            Client c(master.port());
            std::vector<uint8_t> frame{0x00, 0x20, 0x00, 0x00, 0x00, 0x00};  // 8192 bytes, type 0 (Hello)
            frame.resize(6 + 8192);
            c.send(frame);
            PT_CHECK(c.waitClosed(5));
            PT_CHECK(c.received().empty());
        }
        // A Rejoin-typed first frame of 8 KiB of garbage: read, refused as a protocol error.
        {
            Client c(master.port());
            const auto rejoinType = static_cast<uint8_t>(proto::ControlMessage(proto::Rejoin{}).index());
            std::vector<uint8_t> frame{0x00, 0x20, 0x00, 0x00, rejoinType, 0x00};
            frame.resize(6 + 8192, 0xee);
            c.send(frame);
            PT_CHECK(c.waitClosed(5));
        }
        // A first frame announcing more than any Rejoin may hold: closed at once.
        {
            Client c(master.port());
            const auto rejoinType = static_cast<uint8_t>(proto::ControlMessage(proto::Rejoin{}).index());
            c.send(std::vector<uint8_t>{0x00, 0x00, 0x20, 0x00, rejoinType, 0x00});  // 2 MiB
            PT_CHECK(c.waitClosed(5));
        }
        // A real Rejoin of a peer of a 300-peer ring (10.5 KB): the fresh master opens a recovery
        // and welcomes it (a 4 KiB limit would drop every rejoiner of a ring over ~110 peers).
        proto::Rejoin r;
        r.hello = helloFor(freeLoopbackPort());
        r.topology_epoch = 3;
        for (int i = 0; i < 300; ++i) {
            proto::RingMember m;
            m.uuid = i == 7 ? r.hello.uuid : pccl::Uuid::random();
            m.data_addr.ip[0] = 127;
            m.data_addr.ip[3] = 1;
            m.data_addr.port = static_cast<uint16_t>(20000 + i);
            r.ring.push_back(m);
        }
        std::vector<uint8_t> frame;
        proto::encodeFrame(r, frame);
        PT_CHECK(frame.size() > 10000);
        Client c(master.port());
        c.send(frame);
        PT_CHECK_MSG(!c.waitClosed(1.0), "the master closed a rejoiner of a large ring");
        PT_CHECK_MSG(c.received().size() > 6, "no Welcome within 1 s");
        const auto welcomeType = static_cast<uint8_t>(proto::ControlMessage(proto::Welcome{}).index());
        PT_CHECK_EQ(static_cast<int>(static_cast<uint8_t>(c.received()[4])), static_cast<int>(welcomeType));
        PT_CHECK(master.alive());
    });
}

TEST_CASE("master bounds: the first-frame budget refuses what does not fit and takes back what was given",
          "[bounds]") {
    pccl::transport::FirstFrameBudget b(100);
    CHECK(b.take(60));
    CHECK_FALSE(b.take(41));  // 40 left
    CHECK(b.take(40));
    CHECK_FALSE(b.take(1));
    b.give(60);
    CHECK(b.left() == 60);
    CHECK(b.take(60));
    CHECK(b.left() == 0);
}
