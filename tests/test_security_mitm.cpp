// A man in the middle of a run with a secret (docs/security.md): peer 1 advertises the address
// of a relay (PCCL_ADVERTISED_ADDRESS with a fixed data port), so peer 0's data connections to it
// go through the relay, which flips one bit of every connection's stream while told to. The
// all-reduce must fail on both peers (all-or-nothing, the in-place buffer restored, the reason
// naming the connection), never return a wrong sum; once the tampering stops, a retry succeeds.
#include "support/cluster.h"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace pccl_test;

namespace {

const char *const kSecret = "mitm-test-secret-0123456789abcdef";

int listenOn(uint16_t *port) {
    const int fd = listenLoopback(port);
    if (fd < 0) throw PeerFailure("relay: cannot listen on loopback");
    return fd;
}

// Relays every connection to 127.0.0.1:target; while `tamper` is set, flips the lowest bit of
// the 1000th byte a connection's opener sends (past the handshake, inside a frame).
class Relay {
public:
    explicit Relay(uint16_t target) : target_(target) {
        listener_ = listenOn(&port_);
        thread_ = std::thread([this] { acceptLoop(); });
    }
    ~Relay() {
        stop_ = true;
        thread_.join();
        for (auto &t : pipes_) t.join();
        ::close(listener_);
    }
    uint16_t port() const { return port_; }
    std::atomic<bool> tamper{false};
    std::atomic<int> flipped{0};

private:
    void acceptLoop() {
        pollfd l{listener_, POLLIN, 0};
        while (!stop_) {
            if (::poll(&l, 1, 50) <= 0) continue;
            const int client = ::accept(listener_, nullptr, nullptr);
            if (client < 0) continue;
            pipes_.emplace_back([this, client] { pipe(client); });
        }
    }
    void pipe(int client) {
        const int server = connectLoopback(target_);
        if (server < 0) {
            ::close(client);
            return;
        }
        pollfd fds[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
        size_t forwarded = 0;
        const size_t flipAt = 1000;
        std::vector<uint8_t> buf(1 << 16);
        while (!stop_) {
            if (::poll(fds, 2, 50) <= 0) continue;
            if (fds[0].revents) {
                const ssize_t n = ::recv(client, buf.data(), buf.size(), 0);
                if (n <= 0) break;
                if (tamper && flipAt >= forwarded && flipAt < forwarded + static_cast<size_t>(n)) {
                    buf[flipAt - forwarded] ^= 1;
                    ++flipped;
                }
                forwarded += static_cast<size_t>(n);
                if (::send(server, buf.data(), static_cast<size_t>(n), MSG_NOSIGNAL) != n) break;
            }
            if (fds[1].revents) {
                const ssize_t n = ::recv(server, buf.data(), buf.size(), 0);
                if (n <= 0 || ::send(client, buf.data(), static_cast<size_t>(n), MSG_NOSIGNAL) != n) break;
            }
        }
        ::close(client);
        ::close(server);
    }

    uint16_t target_, port_ = 0;
    int listener_ = -1;
    std::atomic<bool> stop_{false};
    std::thread thread_;
    std::vector<std::thread> pipes_;  // only the accept thread adds; joined after it
};

struct Outcome {
    pcclResult_t first = pcclSuccess;
    std::string why;
    bool restored = false;
    bool retried = false;
};

// One peer: joins, all-reduces in place while the relay tampers, then retries once it stopped.
void peer(int rank, const ccoip_socket_address_t &master, const std::string &advertised, const std::string &range,
          Relay &relay, std::atomic<int> &arrived, Outcome &out) {
    pcclCommCreateParamsEx_t ex = PCCL_COMM_CREATE_PARAMS_EX_INIT;
    ex.params.master_address = master;
    ex.secret = kSecret;
    ex.same_host = PCCL_SAME_HOST_OFF;  // every payload byte crosses the relay
    ex.op_timeout_ms = 3000;
    if (rank == 1) {
        ex.advertised_address = advertised.c_str();
        ex.port_range = range.c_str();
    }
    pcclComm_t *comm = nullptr;
    PT_OK(nullptr, pcclCreateCommunicatorEx(&ex, &comm));
    PT_OK(comm, pcclConnect(comm));
    PT_CHECK(waitUntil([&] {
        if (attribute(comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE) >= 2) return true;
        pcclUpdateTopology(comm);
        return false;
    }, 20));
    std::vector<float> data(1 << 18, static_cast<float>(rank + 1));
    ++arrived;
    PT_CHECK(waitUntil([&] { return arrived.load() >= 2 && relay.tamper.load(); }, 20));
    pcclReduceDescriptor_t d = makeDescriptor(data.size(), pcclFloat, pcclSum, 1);
    pcclReduceInfo_t info{};
    out.first = pcclAllReduce(data.data(), data.data(), &d, comm, &info);
    out.why = describe(out.first, comm);
    out.restored = std::all_of(data.begin(), data.end(), [&](float v) { return v == static_cast<float>(rank + 1); });
    ++arrived;
    PT_CHECK(waitUntil([&] { return arrived.load() >= 4 && !relay.tamper.load(); }, 20));
    for (uint64_t tag = 2; tag < 8 && !out.retried; ++tag) {
        d = makeDescriptor(data.size(), pcclFloat, pcclSum, tag);
        if (pcclAllReduce(data.data(), data.data(), &d, comm, &info) == pcclSuccess) {
            out.retried = std::all_of(data.begin(), data.end(), [](float v) { return v == 3.f; });
            break;
        }
        pcclUpdateTopology(comm);
    }
    pcclDestroyCommunicator(comm);
}

} // namespace

TEST_CASE("secured run: a man in the middle who flips a bit of a data frame fails the all-reduce on both peers; "
          "the retry succeeds once it stops", "[security_net]") {
    isolated(90, [] {
        ::unsetenv("PCCL_SECRET");
        ::unsetenv("PCCL_SECRET_FILE");
        PT_OK(nullptr, pcclInit());
        pcclMasterCreateParamsEx_t mp = PCCL_MASTER_CREATE_PARAMS_EX_INIT;
        mp.secret = kSecret;
        ccoip_socket_address_t listen{};
        listen.inet.protocol = inetIPv4;
        listen.inet.ipv4.data[0] = 127;
        listen.inet.ipv4.data[3] = 1;
        pcclMasterInstance_t *master = nullptr;
        PT_OK(nullptr, pcclCreateMasterEx(listen, &mp, &master));
        PT_OK(nullptr, pcclRunMaster(master));
        uint16_t masterPort = 0;
        PT_OK(nullptr, pcclGetMasterPort(master, &masterPort));
        ccoip_socket_address_t addr = listen;
        addr.port = masterPort;

        const uint16_t realPort = freeLoopbackPort();
        Relay relay(realPort);
        relay.tamper = true;
        const std::string advertised = "127.0.0.1:" + std::to_string(relay.port());
        const std::string range = std::to_string(realPort);
        std::atomic<int> arrived{0};
        Outcome out[2];
        std::thread peers[2];
        for (int r = 0; r < 2; ++r)
            peers[r] = std::thread([&, r] {
                try {
                    peer(r, addr, advertised, range, relay, arrived, out[r]);
                } catch (const PeerFailure &f) {
                    out[r].why = std::string("peer failed: ") + f.what();
                }
            });
        waitUntil([&] { return arrived.load() >= 4; }, 40);
        relay.tamper = false;
        for (auto &t : peers) t.join();
        pcclInterruptMaster(master);
        pcclMasterAwaitTermination(master);
        pcclDestroyMaster(master);

        PT_CHECK_MSG(relay.flipped.load() > 0, "the relay never flipped a bit: the data did not pass through it (peer 0: "
                                                     << out[0].why << "; peer 1: " << out[1].why << ")");
        for (int r = 0; r < 2; ++r) {
            PT_CHECK_MSG(out[r].first != pcclSuccess, "peer " << r << " completed a tampered all-reduce: " << out[r].why);
            PT_CHECK_MSG(out[r].restored, "peer " << r << "'s in-place buffer was not restored after the failure");
            PT_CHECK_MSG(out[r].retried, "peer " << r << " did not complete a correct all-reduce after the tampering stopped: "
                                                   << out[r].why);
        }
        PT_CHECK_MSG(out[0].why.find("authentication") != std::string::npos ||
                         out[1].why.find("authentication") != std::string::npos,
                     "neither peer's error names the failed authentication: " << out[0].why << " | " << out[1].why);
    });
}
