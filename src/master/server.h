// The master's network side: accepts peers, turns socket events into Membership events and
// Membership actions into socket writes. Runs on one thread (run()); stop() is thread-safe;
// interrupt() is async-signal-safe (it writes one byte to a pipe the loop watches).
#pragma once
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "master/membership.h"
#include "protocol/messages.h"
#include "util/status.h"

namespace pccl::master {

// The largest connection cap a flag or environment variable may set.
inline constexpr uint64_t kMaxConnectionsLimit = 1000000;

// Receives the master's view of the run from its loop thread, every statusPeriodMs (the HTTP
// status server, http_status.h). publish() must return at once: it runs on the loop.
class StatusSink {
public:
    virtual ~StatusSink() = default;
    virtual void publish(std::shared_ptr<const RunView> view) = 0;
};

// Who serves the run when several masters stand by for it (docs/master_recovery.md, Standby
// masters), as an election outside the server (etcd_election.h) decided it.
struct Leadership {
    bool leader = false;
    uint64_t epoch = 0;         // the leader's master epoch (leader only)
    std::string leaderAddress;  // a follower's leader, where peers should go ("" unknown)
    // Leader only: its lease may have expired from then on. The server steps down by itself at
    // this time unless a later report extends it (the election thread may be late, or the whole
    // process was stopped).
    std::chrono::steady_clock::time_point validUntil{};
};

struct ServerOptions {
    protocol::NetAddr listen;  // port 0 = any free port
    // One line per membership change on stdout ("pccl-master: <change> | accepted N, pending M");
    // when false, each change is an Info log line ("master: <change>") instead. Never both.
    bool printStatus = false;
    bool handleSignals = false;  // stop cleanly on SIGINT/SIGTERM (the daemon)
    // Stopping ends the run: the peers are told so (MasterShutdown) and fail at once instead of
    // waiting for a master to come back (docs/master_recovery.md). The daemon leaves it off
    // unless --end-run-on-exit: a restart by systemd (SIGTERM) must not end the run.
    bool endRunOnStop = true;
    MembershipOptions membership;  // deadlines
    // The run secret (docs/security.md): an explicit secret or secret file wins over
    // PCCL_SECRET / PCCL_SECRET_FILE; without any the run is open (a warning says so), unless
    // requireSecret, when bind() refuses (pcclInvalidArgument).
    std::optional<std::string> secret;
    std::string secretFile;
    bool requireSecret = false;
    // Open connections the master keeps, in total and from one source IP address; one more is
    // closed at once (logged at most once a second). docs/design.md, Limits.
    size_t maxConnections = 4096;
    size_t maxConnectionsPerAddress = 64;
    // Where the loop publishes its RunView (none: not built); how often.
    std::shared_ptr<StatusSink> status;
    uint64_t statusPeriodMs = 250;
    // Defaults overridden by PCCL_HEARTBEAT_TIMEOUT_MS, PCCL_VOTE_TIMEOUT_MS,
    // PCCL_HANDSHAKE_TIMEOUT_MS, PCCL_MAX_HEARTBEAT_TIMEOUT_MS, PCCL_MAX_CONNECTIONS,
    // PCCL_MAX_CONNECTIONS_PER_ADDRESS, PCCL_MASTER_EPOCH, PCCL_MASTER_END_RUN_ON_EXIT (0 or 1:
    // endRunOnStop) and PCCL_MASTER_PRINT_STATUS (1: printStatus; how the
    // Python pccl-master, an embedded master, prints the daemon's status lines). Invalid values
    // are ignored with a warning.
    static ServerOptions fromEnvironment();
};

class Server {
public:
    explicit Server(ServerOptions options);
    ~Server();
    Server(const Server &) = delete;
    Server &operator=(const Server &) = delete;

    Status bind();            // bind + listen; after it port() is known
    uint16_t port() const;
    bool hasSecret() const;   // after bind(): the run has a secret (peers authenticate)
    void run();               // serve until stopped (blocks the calling thread)
    void stop();              // any thread
    // A standby master (membership.standby) serves only while an election says it leads. Any
    // thread; takes effect on the loop, in the order of the calls.
    void setLeadership(Leadership leadership);
    void interrupt();         // async-signal-safe

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

} // namespace pccl::master
