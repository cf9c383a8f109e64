// The peer side of a run: the driver of the peer's Session (session.h). The session decides
// (phases, votes, admissions, aborts); the communicator carries out its actions with the
// control connection and the data plane.
//
// Threads: only the control thread (transport::ControlClient) runs the session. A user thread
// posts its request there and waits for its own answer (a Complete action); data-plane I/O
// threads post the ends of their operations there. The session is read by user threads
// (attributes, phase) under sessionMu_, which the control thread holds while it runs an event.
// Ring engines, the state transfer and probes are touched only on the control thread (before
// start() and after stop(), when no control thread runs, by the calling thread).
#pragma once
#include <pccl.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "peer/session.h"
#include "protocol/messages.h"
#include "security/secret.h"
#include "shared_state/transfer.h"
#include "transport/control_client.h"
#include "transport/data_plane.h"
#include "util/status.h"

namespace pccl::collectives {
class RingAllReduce;
class ScratchPool;
}
namespace pccl::transport {
class DataOperation;
}

namespace pccl::peer {

struct CommOptions {
    protocol::NetAddr master;
    // More masters to try in turn after `master` (PCCL_MASTER_ADDRESSES, master_addresses), as
    // text until parseNetwork; then all of them, `master` first, in `masters`.
    std::string masterAddresses;
    std::vector<protocol::NetAddr> masters;
    // How long a lost master is waited for (docs/master_recovery.md); 0: fail at once.
    std::chrono::milliseconds reconnectTimeout{60000};
    uint32_t peerGroup = 0;
    int poolSize = 4;
    int ioThreads = 2;
    std::chrono::milliseconds connectTimeout{10000};  // TCP connect to master/peers
    std::optional<std::chrono::milliseconds> admissionTimeout;  // none: wait while the master answers
    size_t segmentBytes = 0;  // 0: collectives::autoSegmentBytes per operation
    // Liveness: the master is declared lost when it answers no heartbeat for this long, and the
    // master removes this peer after as much silence (sent in Hello).
    std::chrono::milliseconds heartbeatTimeout{5000};
    // Progress deadline of a running data transfer (all-reduce, shared-state round): when no
    // frame arrives and no send completes for this long, it fails with pcclTimeout everywhere.
    std::chrono::milliseconds opTimeout{10000};
    int stateCompressionLevel = 0;  // zstd level for shared-state chunks this peer serves; 0 = off
    std::string tcpCongestion = "auto";  // of outgoing data connections (transport::DataPlane)
    bool sameHost = true;  // same-host copies where possible (transport/same_host.h)
    security::Settings security;  // the run secret, if any (docs/security.md); loaded by the API
    // NAT and firewalls (docs/security.md): what the other peers dial to reach this one's data
    // plane, as text ("host:port", "host" or ":port"; PCCL_ADVERTISED_ADDRESS; "" = none), and
    // the ports it may listen on ("lo-hi" or one port; PCCL_PORT_RANGE; "" = any).
    std::string advertisedAddress;
    std::string portRange;
    // Set from those by parseNetwork: family 0 = the address the master observes, port 0 = the
    // listening port; the listener takes the first free port of portLo..portHi (0 = any).
    protocol::NetAddr advertised{0, {}, 0};
    uint16_t portLo = 0, portHi = 0;
    // pcclInvalidArgument naming the malformed text's source (variable or field) and why.
    Status parseNetwork(const std::string &advertisedSource = "PCCL_ADVERTISED_ADDRESS",
                        const std::string &rangeSource = "PCCL_PORT_RANGE",
                        const std::string &mastersSource = "PCCL_MASTER_ADDRESSES");
    static CommOptions fromEnvironment();  // defaults overridden by PCCL_* variables
};

struct SyncEntry {
    std::string name;
    void *data = nullptr;
    size_t count = 0;
    pcclDataType_t dtype = pcclFloat;
    bool allowInequality = false;
};

class Communicator {
public:
    explicit Communicator(CommOptions options);
    ~Communicator();  // leaves gracefully, joins threads
    Communicator(const Communicator &) = delete;
    Communicator &operator=(const Communicator &) = delete;

    Status connect();
    Status updateTopology();
    Result<bool> arePeersPending();
    Status optimizeTopology();
    Result<int> attribute(pcclAttribute_t attribute) const;
    // The group's ring in rank order and this peer's group (pcclGetPeerGroupMembers).
    Result<std::vector<protocol::RingMember>> members(uint32_t *group) const;
    // Live outgoing data connections, and how many of them copy same-host (diagnostics, tests).
    transport::DataPlane::ConnectionCounts dataConnections() const { return data_.connectionCounts(); }

    // Starts an all-reduce identified by args.tag; returns at once.
    Status startAllReduce(const ReduceArgs &args);
    // Waits for the all-reduce with this tag and forgets it.
    Status awaitAllReduce(uint64_t tag, ReduceResult *result);
    // Runs every all-reduce, at most maxInFlight (>= 1) at once, retrying those aborted by a lost
    // peer until all succeed or the group has fewer than two peers (pcclTooFewPeers). *total gets
    // the summed bytes, the final world size and the call's wall time.
    Status allReduceMultipleWithRetry(const std::vector<ReduceArgs> &ops, int maxInFlight, ReduceResult *total);
    // Shared-state sync over the peer group (docs/shared_state.md). Blocks.
    Result<SyncResult> syncSharedState(const std::vector<SyncEntry> &entries, uint64_t revision,
                                       pcclSharedStateSyncStrategy_t strategy);
    bool connected() const;
    // pcclAbortCommunicator: every waiting and later call fails with pcclAborted. Any thread.
    void abort();
    size_t inFlight() const;
    // The session's counters and this peer's place (pcclGetCommunicatorStats). Any thread.
    Stats stats() const;

private:
    using Step = std::function<Actions(Session &)>;
    // Runs step on the control thread (or here, when none runs), then carries out its actions.
    void post(Step step);
    void run(const Step &step);
    void execute(Actions actions);
    void execute(Action &action);
    // Posts a request built by make(session, id) and blocks until it is answered.
    std::pair<Status, Reply> call(std::function<Actions(Session &, RequestId)> make);
    void tick();
    // Control thread, every tick: fails running transfers that stalled past opTimeout.
    void checkProgress();
    void startAllReduceEngine(const StartAllReduce &a);
    void stopAllReduceEngine(const StopAllReduce &a);
    void startTransfer(const StartTransfer &a);
    void stopTransfer(const StopTransfer &a);
    void startProbe(const protocol::BandwidthProbe &m);
    void reconnect(const ReconnectMaster &a);
    // The master addresses in the order to try (options_.masters, or just options_.master when
    // parseNetwork was not called).
    const std::vector<protocol::NetAddr> &masters() const;
    std::chrono::milliseconds tickPeriod() const;
    static uint64_t nowUs();  // the session's clock (steady), in microseconds

    CommOptions options_;
    std::vector<protocol::NetAddr> fallbackMasters_;
    transport::ControlClient control_;
    transport::DataPlane data_;
    std::shared_ptr<collectives::ScratchPool> scratch_;  // reused backups and staging of all-reduces

    mutable std::mutex sessionMu_;
    std::condition_variable sessionCv_;  // after every event: the destructor waits for quiet
    Session session_;
    bool controlRunning_ = false;  // sessionMu_
    bool controlStopped_ = false;  // sessionMu_; set by the destructor

    std::mutex answerMu_;
    std::condition_variable answerCv_;
    std::map<RequestId, std::pair<Status, Reply>> answers_;
    std::atomic<RequestId> nextRequest_{1};

    // Control thread only.
    std::map<std::pair<uint64_t, uint64_t>, std::shared_ptr<collectives::RingAllReduce>> engines_;  // (tag, seq)
    std::vector<shared_state::LocalEntry> syncEntries_;  // of the sync request in progress
    std::shared_ptr<shared_state::StateTransfer> transfer_;
};

} // namespace pccl::peer
