// Helpers shared by the Catch2 suite and the pccl_test_peer helper process.
// Nothing here includes Catch: failures are thrown as pccl_test::PeerFailure so that they can
// be raised on any thread (Catch2 v2 assertions are main-thread only) and reported later.
#pragma once

#include <pccl.h>

#include "support/ports.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace pccl_test {

using Clock = std::chrono::steady_clock;

// A failed expectation on a peer thread (or in the helper process). Carries file:line and reason.
struct PeerFailure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

inline const char *resultName(pcclResult_t r) {
    switch (r) {
        case pcclSuccess: return "pcclSuccess";
        case pcclNotInitialized: return "pcclNotInitialized";
        case pcclInternalError: return "pcclInternalError";
        case pcclInvalidArgument: return "pcclInvalidArgument";
        case pcclInvalidUsage: return "pcclInvalidUsage";
        case pcclTooFewPeers: return "pcclTooFewPeers";
        case pcclMasterConnectionFailed: return "pcclMasterConnectionFailed";
        case pcclRankConnectionFailed: return "pcclRankConnectionFailed";
        case pcclRankConnectionLost: return "pcclRankConnectionLost";
        case pcclNoSharedStateAvailable: return "pcclNoSharedStateAvailable";
        case pcclPendingAsyncOps: return "pcclPendingAsyncOps";
        case pcclUpdateTopologyFailed: return "pcclUpdateTopologyFailed";
        case pcclTopologyOptimizationFailed: return "pcclTopologyOptimizationFailed";
        case pcclTimeout: return "pcclTimeout";
        case pcclKicked: return "pcclKicked";
        case pcclAuthenticationFailed: return "pcclAuthenticationFailed";
        case pcclMismatch: return "pcclMismatch";
        case pcclMasterConnectionLost: return "pcclMasterConnectionLost";
        case pcclAborted: return "pcclAborted";
    }
    return "pccl result out of range";
}

// "pcclTimeout (13): <last error message of comm>"
inline std::string describe(pcclResult_t r, const pcclComm_t *comm) {
    std::ostringstream os;
    os << resultName(r) << " (" << static_cast<int>(r) << ")";
    const char *msg = pcclGetLastErrorMessage(comm);
    os << ": \"" << (msg ? msg : "<NULL message>") << "\"";
    return os.str();
}

// Context for failures raised on this thread while it is alive (an isolated()-safe INFO).
inline thread_local std::vector<std::string> t_context;

struct ScopedContext {
    explicit ScopedContext(std::string s) { t_context.push_back(std::move(s)); }
    ~ScopedContext() { t_context.pop_back(); }
    ScopedContext(const ScopedContext &) = delete;
    ScopedContext &operator=(const ScopedContext &) = delete;
};

// "[ctx1; ctx2] " for the current thread's context, or "".
inline std::string contextPrefix() {
    if (t_context.empty()) return "";
    std::string s = "[";
    for (size_t i = 0; i < t_context.size(); ++i) s += (i ? "; " : "") + t_context[i];
    return s + "] ";
}

[[noreturn]] inline void fail(const char *file, int line, const std::string &what) {
    std::ostringstream os;
    const char *base = std::strrchr(file, '/');
    os << contextPrefix() << (base ? base + 1 : file) << ":" << line << ": " << what;
    throw PeerFailure(os.str());
}

} // namespace pccl_test

// Thread-safe expectations: they throw PeerFailure; the fixture reports them on the main thread.
#define PT_CHECK(cond)                                                                                                 \
    do {                                                                                                               \
        if (!(cond)) ::pccl_test::fail(__FILE__, __LINE__, "expected: " #cond);                                       \
    } while (0)

#define PT_CHECK_MSG(cond, stream_expr)                                                                                \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            std::ostringstream pt_os_;                                                                                 \
            pt_os_ << "expected: " #cond " -- " << stream_expr;                                                        \
            ::pccl_test::fail(__FILE__, __LINE__, pt_os_.str());                                                       \
        }                                                                                                              \
    } while (0)

#define PT_CHECK_EQ(a, b)                                                                                              \
    do {                                                                                                               \
        const auto pt_a_ = (a);                                                                                        \
        const auto pt_b_ = (b);                                                                                        \
        if (!(pt_a_ == pt_b_)) {                                                                                       \
            std::ostringstream pt_os_;                                                                                 \
            pt_os_ << "expected " #a " == " #b ", got " << +pt_a_ << " vs " << +pt_b_;                                 \
            ::pccl_test::fail(__FILE__, __LINE__, pt_os_.str());                                                       \
        }                                                                                                              \
    } while (0)

// Expect a pccl call to return `expected`; on mismatch report both codes and the last error message.
#define PT_EXPECT_RESULT(comm, expected, expr)                                                                         \
    do {                                                                                                               \
        const pcclResult_t pt_r_ = (expr);                                                                             \
        if (pt_r_ != (expected)) {                                                                                     \
            std::ostringstream pt_os_;                                                                                 \
            pt_os_ << #expr " returned " << ::pccl_test::describe(pt_r_, (comm)) << ", expected "                      \
                   << ::pccl_test::resultName(expected);                                                               \
            ::pccl_test::fail(__FILE__, __LINE__, pt_os_.str());                                                       \
        }                                                                                                              \
    } while (0)

#define PT_OK(comm, expr) PT_EXPECT_RESULT(comm, pcclSuccess, expr)

namespace pccl_test {

inline ccoip_socket_address_t loopbackV4(uint16_t port) {
    ccoip_socket_address_t a{};
    a.inet.protocol = inetIPv4;
    a.inet.ipv4.data[0] = 127;
    a.inet.ipv4.data[3] = 1;
    a.port = port;
    return a;
}

// Raw TCP sockets on 127.0.0.1, for the tests that talk to a listener byte by byte (garbage
// input, proxies, busy ports): -1 on failure (what was opened is closed); the caller closes the
// descriptor it gets.
// A socket connected to 127.0.0.1:port.
inline int connectLoopback(uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) {
        if (fd >= 0) ::close(fd);
        return -1;
    }
    return fd;
}

// A socket listening on 127.0.0.1 at a free port, written to *port.
inline int listenLoopback(uint16_t *port, int backlog = 64) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0 || ::listen(fd, backlog) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len) != 0) {
        if (fd >= 0) ::close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

// A loopback port nobody listens on right now, outside the ephemeral range (support/ports.h): for
// a master restarted on the same address, a fixed data port, a server started later.
inline uint16_t freeLoopbackPort() {
    std::string err;
    const uint16_t port = unusedLoopbackPort(err);
    if (port == 0) throw std::runtime_error("freeLoopbackPort: " + err);
    return port;
}

inline ccoip_socket_address_t loopbackV6(uint16_t port) {
    ccoip_socket_address_t a{};
    a.inet.protocol = inetIPv6;
    a.inet.ipv6.data[15] = 1;
    a.port = port;
    return a;
}

inline int attribute(const pcclComm_t *comm, pcclAttribute_t attr) {
    int v = -1;
    PT_OK(comm, pcclGetAttribute(comm, attr, &v));
    return v;
}

// Bring an already connected communicator to a run of `world` peers: vote (pcclUpdateTopology)
// until the global world size reaches `world`. Every accepted peer of the run must do the same,
// because a newcomer is admitted only when all accepted peers vote.
inline void awaitWorld(pcclComm_t *comm, int world, double timeout_s) {
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
    for (;;) {
        const int now = attribute(comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE);
        if (now == world) return;
        PT_CHECK_MSG(now < world, "global world size " << now << " overshot the expected " << world);
        PT_CHECK_MSG(Clock::now() < deadline, "world size stuck at " << now << ", expected " << world);
        PT_OK(comm, pcclUpdateTopology(comm));
    }
}

// Create + connect + awaitWorld. The caller owns the returned communicator.
// Per-communicator deadlines for connectPeer (0 = the library's default or environment).
// Settings of pcclCommCreateParamsEx_t a test may change (0 = default): deadlines, same-host copies.
struct Deadlines {
    uint32_t op_timeout_ms = 0;
    uint32_t heartbeat_timeout_ms = 0;
    uint32_t same_host = PCCL_SAME_HOST_DEFAULT;
    uint32_t master_reconnect_timeout_ms = 0;  // PCCL_MASTER_RECONNECT_OFF: fail at once
    const char *master_addresses = nullptr;
    bool any() const {
        return op_timeout_ms || heartbeat_timeout_ms || same_host || master_reconnect_timeout_ms || master_addresses;
    }
};

inline pcclComm_t *connectPeer(const ccoip_socket_address_t &master, uint32_t peer_group, int world, double timeout_s,
                               uint32_t pool_size = 0, Deadlines deadlines = {}) {
    PT_OK(nullptr, pcclInit());
    pcclCommCreateParams_t params{};
    params.master_address = master;
    params.peer_group = peer_group;
    params.p2p_connection_pool_size = pool_size;
    pcclComm_t *comm = nullptr;
    if (deadlines.any()) {
        pcclCommCreateParamsEx_t ex = PCCL_COMM_CREATE_PARAMS_EX_INIT;
        ex.params = params;
        ex.op_timeout_ms = deadlines.op_timeout_ms;
        ex.heartbeat_timeout_ms = deadlines.heartbeat_timeout_ms;
        ex.same_host = deadlines.same_host;
        ex.master_reconnect_timeout_ms = deadlines.master_reconnect_timeout_ms;
        ex.master_addresses = deadlines.master_addresses;
        PT_OK(nullptr, pcclCreateCommunicatorEx(&ex, &comm));
    } else {
        PT_OK(nullptr, pcclCreateCommunicator(&params, &comm));
    }
    PT_CHECK(comm != nullptr);
    const pcclResult_t r = pcclConnect(comm);
    if (r != pcclSuccess) {
        std::string why = describe(r, comm);
        pcclDestroyCommunicator(comm);
        fail(__FILE__, __LINE__, "pcclConnect failed: " + why);
    }
    try {
        awaitWorld(comm, world, timeout_s);
    } catch (...) {
        pcclDestroyCommunicator(comm);
        throw;
    }
    return comm;
}

// Destroys the communicator at scope exit (graceful leave).
struct CommGuard {
    pcclComm_t *comm = nullptr;
    explicit CommGuard(pcclComm_t *c = nullptr) : comm(c) {}
    ~CommGuard() {
        if (comm) pcclDestroyCommunicator(comm);
    }
    CommGuard(const CommGuard &) = delete;
    CommGuard &operator=(const CommGuard &) = delete;
};

inline pcclComm_t *createComm(const ccoip_socket_address_t &master, uint32_t peer_group = 0) {
    PT_OK(nullptr, pcclInit());
    pcclCommCreateParams_t params{};
    params.master_address = master;
    params.peer_group = peer_group;
    pcclComm_t *comm = nullptr;
    PT_OK(nullptr, pcclCreateCommunicator(&params, &comm));
    PT_CHECK(comm != nullptr);
    return comm;
}

inline pcclReduceDescriptor_t makeDescriptor(size_t count, pcclDataType_t dtype, pcclRedOp_t op, uint64_t tag) {
    pcclReduceDescriptor_t d{};
    d.count = count;
    d.op = op;
    d.tag = tag;
    d.src_descriptor.datatype = dtype;
    d.src_descriptor.distribution_hint = pcclDistributionNone;
    d.quantization_options.quantized_datatype = dtype;
    d.quantization_options.algorithm = pcclQuantNone;
    return d;
}

// What an all-reduce abort message (pcclGetLastErrorMessage) fails to name of what it must: the
// operation ("all-reduce tag N"), a peer with its short id and address ("peer 1a2b3c4d
// (127.0.0.1:41234)") and the ring phase (reduce-scatter or all-gather). "" when it names all.
inline std::string allReduceMessageGaps(const std::string &msg, uint64_t tag) {
    std::string gaps;
    if (msg.find("all-reduce tag " + std::to_string(tag)) == std::string::npos) gaps += " the operation;";
    static const std::regex peer(R"(peer [0-9a-f]{8} \([0-9a-fA-F.:\[\]]+:[0-9]+\))");
    if (!std::regex_search(msg, peer)) gaps += " a peer with its address;";
    if (msg.find("reduce-scatter") == std::string::npos && msg.find("all-gather") == std::string::npos)
        gaps += " the phase (reduce-scatter or all-gather);";
    return gaps.empty() ? gaps : "the message does not name" + gaps + " it is: " + msg;
}

} // namespace pccl_test
