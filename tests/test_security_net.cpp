// A run with a secret on real sockets (docs/security.md): peers without the secret, with another
// one, or with one at an open master are refused; a replayed handshake, a silent connection and a
// plaintext frame at the master are closed; a forged data connection is refused; a removed peer
// opens no data connection; a changed bit fails the frame; encryption hides the payload.
#include "support/cluster.h"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "security/handshake.h"
#include "transport/data_plane.h"
#include "util/bytes.h"

using namespace pccl_test;
using pccl::Uuid;
namespace security = pccl::security;
using pccl::transport::DataPlane;
using pccl::transport::SegmentHeader;

namespace {

const char *const kSecret = "security-net-test-secret-0123456";
const char *const kOtherSecret = "another-secret-of-32-characters!";

void useSecret(const char *secret) {
    ::unsetenv("PCCL_SECRET_FILE");
    if (secret) ::setenv("PCCL_SECRET", secret, 1);
    else ::unsetenv("PCCL_SECRET");
}

int connectTo(uint16_t port) { return pccl_test::connectLoopback(port); }

bool sendAll(int fd, const uint8_t *p, size_t n) { return ::send(fd, p, n, MSG_NOSIGNAL) == static_cast<ssize_t>(n); }

// Reads exactly n bytes before the deadline; false on EOF, error or deadline.
bool readExact(int fd, uint8_t *out, size_t n, int ms) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    size_t got = 0;
    while (got < n) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now()).count();
        pollfd p{fd, POLLIN, 0};
        if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) return false;
        const ssize_t r = ::recv(fd, out + got, n - got, 0);
        if (r <= 0) return false;
        got += static_cast<size_t>(r);
    }
    return true;
}

// Reads until EOF (true) or the deadline (false); what arrived is appended to *seen.
bool readToEof(int fd, int ms, std::vector<uint8_t> *seen = nullptr) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now()).count();
        pollfd p{fd, POLLIN, 0};
        if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) return false;
        uint8_t buf[4096];
        const ssize_t r = ::recv(fd, buf, sizeof buf, 0);
        if (r <= 0) return true;
        if (seen) seen->insert(seen->end(), buf, buf + r);
    }
}

// All-reduces (rank + 1) over 1024 floats and checks every element is the sum.
void checkAllReduce(PeerCtx &ctx, uint64_t tag) {
    std::vector<float> send(1024, static_cast<float>(ctx.rank + 1)), recv(1024, -1.f);
    const pcclReduceDescriptor_t d = makeDescriptor(send.size(), pcclFloat, pcclSum, tag);
    pcclReduceInfo_t info{};
    PT_OK(ctx.comm, pcclAllReduce(send.data(), recv.data(), &d, ctx.comm, &info));
    const float want = static_cast<float>(ctx.local_peers * (ctx.local_peers + 1) / 2);
    for (size_t i = 0; i < recv.size(); ++i) PT_CHECK_MSG(recv[i] == want, "element " << i << " is " << recv[i] << ", expected " << want);
}

pcclComm_t *commWithSecret(const ccoip_socket_address_t &master, const char *secret) {
    pcclCommCreateParamsEx_t ex = PCCL_COMM_CREATE_PARAMS_EX_INIT;
    ex.params.master_address = master;
    ex.secret = secret;
    pcclComm_t *comm = nullptr;
    PT_OK(nullptr, pcclCreateCommunicatorEx(&ex, &comm));
    return comm;
}

// pcclConnect fails with pcclAuthenticationFailed and a message containing `words`.
void expectRefused(pcclComm_t *comm, const char *words) {
    const pcclResult_t r = pcclConnect(comm);
    const std::string why = describe(r, comm);
    PT_CHECK_MSG(r == pcclAuthenticationFailed, "pcclConnect returned " << why << ", expected pcclAuthenticationFailed");
    PT_CHECK_MSG(why.find(words) != std::string::npos, "the reason " << why << " does not mention \"" << words << "\"");
    pcclDestroyCommunicator(comm);
}

// Two real peers of a secured run: `before` runs on the test thread once both are in the run,
// then both peers all-reduce and check the values. members: the group's members, as peer 0 sees.
void withSecuredRun(const std::function<void(EmbeddedMaster &, const std::vector<pcclMemberInfo_t> &)> &before) {
    useSecret(kSecret);
    EmbeddedMaster master;
    std::atomic<bool> ready{false}, done{false};
    std::vector<pcclMemberInfo_t> members(2);
    ClusterOptions opts;
    opts.timeout_s = 40;
    PeerThreads peers(master.address(), opts, [&](PeerCtx &ctx) {
        if (ctx.rank == 0) {
            size_t n = 0;
            PT_OK(ctx.comm, pcclGetPeerGroupMembers(ctx.comm, members.data(), members.size(), &n));
            PT_CHECK_EQ(n, size_t{2});
            ready = true;
        }
        ctx.waitFor([&] { return done.load(); }, "the checks of the test thread", 30);
        PT_CHECK_EQ(attribute(ctx.comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE), 2);
        bool pending = true;
        PT_OK(ctx.comm, pcclArePeersPending(ctx.comm, &pending));
        PT_CHECK_MSG(!pending, "a peer is pending admission after the test's connections");
        checkAllReduce(ctx, 1);
        checkAllReduce(ctx, 2);
    });
    peers.onAbort([&] { master.destroy(); });
    PT_CHECK_MSG(waitUntil([&] { return ready.load() || peers.failed(); }, 20), "the two peers did not join the secured run");
    PT_CHECK(!peers.failed());
    try {
        before(master, members);
    } catch (...) {
        done = true;
        throw;
    }
    done = true;
    peers.join([&] { master.destroy(); });
}

} // namespace

TEST_CASE("secured master: peers without the secret, with another one, or with one at an open master are refused",
          "[security_net]") {
    isolated(60, [] {
        withSecuredRun([](EmbeddedMaster &master, const std::vector<pcclMemberInfo_t> &) {
            useSecret(nullptr);
            expectRefused(createComm(master.address()), "run secret");
            expectRefused(commWithSecret(master.address(), kOtherSecret), "different secrets");
            EmbeddedMaster open;  // no secret in the environment: an open run
            expectRefused(commWithSecret(open.address(), kSecret), "without a run secret");
            useSecret(kSecret);
        });
    });
}

TEST_CASE("secured master: a replayed handshake is closed and adds no peer", "[security_net]") {
    isolated(60, [] {
        withSecuredRun([](EmbeddedMaster &master, const std::vector<pcclMemberInfo_t> &) {
            security::ClientHandshake hs(security::runKey(kSecret), security::ConnKind::Control, security::preferredSuite(),
                                         security::Mode::Encrypt, Uuid{}, Uuid{});
            const int first = connectTo(master.port());
            PT_CHECK(first >= 0);
            std::array<uint8_t, security::kServerHelloBytes> answer{};
            PT_CHECK(sendAll(first, hs.hello().data(), hs.hello().size()));
            PT_CHECK_MSG(readExact(first, answer.data(), answer.size(), 3000), "no ServerHello from the master");
            std::string error;
            const auto finish = hs.onServerHello(answer.data(), answer.size(), &error);
            PT_CHECK_MSG(finish.has_value(), "the master did not prove the run key: " << error);
            PT_CHECK(sendAll(first, finish->data(), finish->size()));
            PT_CHECK_MSG(!readToEof(first, 300), "the master closed an authenticated connection");

            const int second = connectTo(master.port());
            PT_CHECK(second >= 0);
            std::array<uint8_t, security::kServerHelloBytes> again{};
            PT_CHECK(sendAll(second, hs.hello().data(), hs.hello().size()));
            PT_CHECK_MSG(readExact(second, again.data(), again.size(), 3000), "no ServerHello to the replayed hello");
            PT_CHECK_MSG(again != answer, "the master answered a replayed hello with the same ServerHello");
            PT_CHECK(sendAll(second, finish->data(), finish->size()));
            PT_CHECK_MSG(readToEof(second, 1000), "the master kept a connection that replayed an old ClientFinish");
            ::close(second);
            ::close(first);
        });
    });
}

TEST_CASE("secured master: a silent connection and a plaintext frame are closed", "[security_net]") {
    isolated(30, [] {
        useSecret(kSecret);
        EmbeddedMaster master;
        const int silent = connectTo(master.port());
        PT_CHECK(silent >= 0);
        const auto start = std::chrono::steady_clock::now();

        const int plain = connectTo(master.port());
        PT_CHECK(plain >= 0);
        uint8_t frame[6];
        pccl::storeLE32(frame, 16u << 20);  // a 16 MiB frame, type 1
        frame[4] = 1;
        frame[5] = 0;
        PT_CHECK(sendAll(plain, frame, sizeof frame));
        std::vector<uint8_t> reject;
        PT_CHECK_MSG(readToEof(plain, 2000, &reject), "the master kept a connection that sent a plaintext frame");
        PT_CHECK_MSG(reject.size() >= 6 && pccl::loadLE32(reject.data()) == reject.size() - 6,
                     "the answer (" << reject.size() << " bytes) is not one plaintext frame");
        const std::string text(reject.begin(), reject.end());
        PT_CHECK_MSG(text.find("requires the run secret") != std::string::npos, "the Reject does not say why: " << text);
        ::close(plain);

        PT_CHECK_MSG(readToEof(silent, 7000), "a silent connection was kept past the handshake deadline");
        const auto waited = std::chrono::steady_clock::now() - start;
        PT_CHECK_MSG(waited >= std::chrono::milliseconds(4000) && waited <= std::chrono::milliseconds(6500),
                     "a silent connection was closed after " << std::chrono::duration_cast<std::chrono::milliseconds>(waited).count()
                                                              << " ms, expected about 5000");
        ::close(silent);
    });
}

TEST_CASE("secured run: a data connection forged with the run key is refused", "[security_net]") {
    isolated(60, [] {
        withSecuredRun([](EmbeddedMaster &, const std::vector<pcclMemberInfo_t> &members) {
            Uuid a, b;
            std::memcpy(a.bytes.data(), members[0].uuid.data, 16);
            std::memcpy(b.bytes.data(), members[1].uuid.data, 16);
            for (security::Mode mode : {security::Mode::Encrypt, security::Mode::Integrity}) {
                // Peer B's identity towards peer A, proven with the key every holder of the secret has.
                security::ClientHandshake hs(security::runKey(kSecret), security::ConnKind::Data, security::preferredSuite(),
                                             mode, b, a);
                const int fd = connectTo(members[0].data_address.port);
                PT_CHECK(fd >= 0);
                PT_CHECK(sendAll(fd, hs.hello().data(), hs.hello().size()));
                std::array<uint8_t, security::kServerHelloBytes> answer{};
                if (readExact(fd, answer.data(), answer.size(), 3000)) {
                    std::string error;
                    const auto finish = hs.onServerHello(answer.data(), answer.size(), &error);
                    PT_CHECK_MSG(!finish.has_value(), "peer A proved a key computed from the run secret alone");
                    PT_CHECK_MSG(error.find("different secrets") != std::string::npos, "unexpected reason: " << error);
                }
                ::close(fd);
            }
        });
    });
}

// ---------------------------------------------------------------------------- data planes
namespace {

pccl::protocol::NetAddr loopback(uint16_t port) {
    pccl::protocol::NetAddr a;
    a.family = 4;
    a.ip[0] = 127;
    a.ip[3] = 1;
    a.port = port;
    return a;
}

struct Sink : pccl::transport::FrameSink {
    explicit Sink(size_t size) : mem(size, 0) {}
    std::vector<uint8_t> mem;
    std::mutex mu;
    std::condition_variable cv;
    int delivered = 0;
    std::vector<std::string> failures;
    void *beginFrame(const SegmentHeader &h, const Uuid &, std::string *error) override {
        if (h.offset + h.bytes > mem.size()) {
            *error = "out of range";
            return nullptr;
        }
        return mem.data() + h.offset;
    }
    void onPayload(const SegmentHeader &) override {
        std::lock_guard lock(mu);
        ++delivered;
        cv.notify_all();
    }
    void onPayloadFailed(const SegmentHeader &, const std::string &why) override {
        std::lock_guard lock(mu);
        failures.push_back(why);
        cv.notify_all();
    }
    bool waitFor(const std::function<bool()> &cond) {
        std::unique_lock lock(mu);
        return cv.wait_for(lock, std::chrono::seconds(5), cond);
    }
};

// Two data planes of a secured run, keyed as the master keys them (membership.cpp sendPeerKeys).
struct Planes {
    Uuid ua = Uuid::random(), ub = Uuid::random();
    DataPlane a{1}, b{1};
    explicit Planes(security::Mode mode) {
        security::Key master{};
        security::randomBytes(master.data(), master.size());
        const security::Key ka = security::peerKey(master, ua, 1), kb = security::peerKey(master, ub, 2);
        security::Settings s;
        s.runKey = security::runKey(kSecret);
        s.mode = mode;
        for (auto [plane, self, own] : {std::tuple{&a, ua, ka}, std::tuple{&b, ub, kb}}) {
            plane->setSecurity(s);
            plane->setSelf(self);
            plane->setOwnKey(own);
            plane->setSameHost(false);
        }
        a.addPeerKeys({{ub, security::pairKey(kb, ua)}});
        b.addPeerKeys({{ua, security::pairKey(ka, ub)}});
        REQUIRE(a.listen(0).ok());
        REQUIRE(b.listen(0).ok());
    }
};

pccl::Status connectNow(DataPlane &from, const Uuid &to, uint16_t port) {
    auto p = std::make_shared<std::promise<pccl::Status>>();
    auto f = p->get_future();
    from.connect(to, loopback(port), 1, std::chrono::milliseconds(3000), [p](pccl::Status st) { p->set_value(st); });
    REQUIRE(f.wait_for(std::chrono::seconds(5)) == std::future_status::ready);
    return f.get();
}

void sendNow(DataPlane &from, const Uuid &to, uint64_t seq, const std::vector<uint8_t> &data) {
    SegmentHeader h;
    h.seq = seq;
    h.bytes = static_cast<uint32_t>(data.size());
    from.send(to, h, data.data(), [](bool, const std::string &) {});
}

std::vector<uint8_t> pattern(size_t n, uint8_t salt) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>((i * 131 + salt) ^ (i >> 7));
    return v;
}

// A TCP proxy for one connection: the client's bytes go to `target` (byte number `flipAt`
// with its lowest bit flipped) and are recorded; the answers come back unchanged.
class Proxy {
public:
    Proxy(uint16_t target, size_t flipAt) : target_(target), flipAt_(flipAt) {
        listener_ = pccl_test::listenLoopback(&port_, 4);
        REQUIRE(listener_ >= 0);
        thread_ = std::thread([this] { run(); });
    }
    ~Proxy() {
        stop_ = true;
        thread_.join();
        ::close(listener_);
    }
    uint16_t port() const { return port_; }
    std::vector<uint8_t> recorded() {
        std::lock_guard lock(mu_);
        return sent_;
    }

private:
    void run() {
        pollfd l{listener_, POLLIN, 0};
        while (!stop_ && ::poll(&l, 1, 50) <= 0) {}
        if (stop_) return;
        const int client = ::accept(listener_, nullptr, nullptr);
        const int server = connectTo(target_);
        if (client < 0 || server < 0) return;
        pollfd fds[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
        size_t forwarded = 0;
        while (!stop_) {
            if (::poll(fds, 2, 50) <= 0) continue;
            uint8_t buf[8192];
            if (fds[0].revents) {
                const ssize_t n = ::recv(client, buf, sizeof buf, 0);
                if (n <= 0) break;
                if (flipAt_ >= forwarded && flipAt_ < forwarded + static_cast<size_t>(n)) buf[flipAt_ - forwarded] ^= 1;
                {
                    std::lock_guard lock(mu_);
                    sent_.insert(sent_.end(), buf, buf + n);
                }
                forwarded += static_cast<size_t>(n);
                if (!sendAll(server, buf, static_cast<size_t>(n))) break;
            }
            if (fds[1].revents) {
                const ssize_t n = ::recv(server, buf, sizeof buf, 0);
                if (n <= 0 || !sendAll(client, buf, static_cast<size_t>(n))) break;
            }
        }
        ::close(client);
        ::close(server);
    }

    uint16_t target_, port_ = 0;
    size_t flipAt_;
    int listener_ = -1;
    std::atomic<bool> stop_{false};
    std::mutex mu_;
    std::vector<uint8_t> sent_;
    std::thread thread_;
};

} // namespace

TEST_CASE("secured data plane: a removed peer opens no data connection", "[security_net]") {
    Planes p(security::Mode::Encrypt);
    auto sink = std::make_shared<Sink>(64);
    p.a.registerSink(7, sink);
    REQUIRE(connectNow(p.b, p.ua, p.a.port()).ok());
    const auto data = pattern(64, 1);
    sendNow(p.b, p.ua, 7, data);
    REQUIRE(sink->waitFor([&] { return sink->delivered == 1; }));
    REQUIRE(sink->mem == data);

    p.a.revoke(p.ub);
    p.a.closePeer(p.ub, "removed from the run");
    REQUIRE(waitUntil([&] { return p.b.connectionCounts().live == 0; }, 5));
    const pccl::Status st = connectNow(p.b, p.ua, p.a.port());
    INFO(st.message());
    CHECK(st.code() == pcclAuthenticationFailed);
    CHECK(st.message().find("removed") != std::string::npos);
}

TEST_CASE("secured data plane: a changed bit fails the frame, never delivers it", "[security_net]") {
    for (security::Mode mode : {security::Mode::Encrypt, security::Mode::Integrity}) {
        INFO(security::modeName(mode));
        Planes p(mode);
        auto sink = std::make_shared<Sink>(4096);
        p.b.registerSink(7, sink);
        {
            Proxy proxy(p.b.port(), 2000);  // inside the first frame's payload
            REQUIRE(connectNow(p.a, p.ub, proxy.port()).ok());
            const auto data = pattern(4096, 2);
            sendNow(p.a, p.ub, 7, data);
            CHECK(sink->waitFor([&] { return !sink->failures.empty(); }));
            CHECK(sink->delivered == 0);
            REQUIRE(waitUntil([&] { return p.a.connectionCounts().live == 0; }, 5));
        }
        auto honest = std::make_shared<Sink>(4096);
        p.b.registerSink(8, honest);
        REQUIRE(connectNow(p.a, p.ub, p.b.port()).ok());
        const auto data = pattern(4096, 3);
        sendNow(p.a, p.ub, 8, data);
        REQUIRE(honest->waitFor([&] { return honest->delivered == 1; }));
        CHECK(honest->mem == data);
        CHECK(sink->delivered == 0);
    }
}

TEST_CASE("secured data plane: encryption hides the payload, integrity mode does not", "[security_net]") {
    for (security::Mode mode : {security::Mode::Encrypt, security::Mode::Integrity}) {
        INFO(security::modeName(mode));
        Planes p(mode);
        auto sink = std::make_shared<Sink>(4096);
        p.b.registerSink(7, sink);
        Proxy proxy(p.b.port(), SIZE_MAX);
        REQUIRE(connectNow(p.a, p.ub, proxy.port()).ok());
        const auto data = pattern(4096, 4);
        sendNow(p.a, p.ub, 7, data);
        REQUIRE(sink->waitFor([&] { return sink->delivered == 1; }));
        CHECK(sink->mem == data);
        const auto wire = proxy.recorded();
        const bool visible = std::search(wire.begin(), wire.end(), data.begin(), data.begin() + 64) != wire.end();
        CHECK(visible == (mode == security::Mode::Integrity));
    }
}
