// The master's decisions, as a pure state machine: it takes events (a peer connected, sent a
// message, disconnected) and returns actions (send M to X, close X). No sockets, no clocks, no
// threads: the Server translates between sockets and this class, and tests drive it directly.
//
// Peers go Connected -> (Hello) -> Pending -> (admission) -> Accepted. A peer is admitted when
// every accepted peer voted in an UpdateTopology round, or at once when nobody is accepted.
// Collectives are sequenced per (peer group, tag): when every accepted member of the group sent
// CollectiveInit with the same description the master sends CollectiveCommence with a fresh
// sequence number and the ring; when all participants report success it commits, otherwise
// (failure report, peer lost) it aborts the operation on every participant.
#pragma once
#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <pccl.h>

#include "master/run_view.h"
#include "protocol/messages.h"
#include "util/collective_kind.h"

namespace pccl::master {

using ClientId = uint64_t;

struct Action {
    ClientId to = 0;
    std::optional<protocol::ControlMessage> message;  // sent before closing when both are set
    bool close = false;
    std::string reason;  // why the connection is closed
    // The connection never sent an accepted Hello: the server logs such closes rate-limited, so
    // that strangers cannot flood the log.
    bool unregistered = false;
};
using Actions = std::vector<Action>;

struct MembershipOptions {
    uint64_t heartbeatTimeoutMs = 5000;  // a peer silent this long is removed (unless its Hello asks otherwise)
    // A vote (topology, peers pending, optimize, the start of a collective tag, a shared-state
    // sync, an admission round's link reports) open this long is settled: when the peers that
    // voted outnumber those that did not, the laggards are removed and the vote goes on without
    // them; otherwise the voters' calls fail with pcclTimeout. 0 = wait forever.
    uint64_t voteTimeoutMs = 60000;
    // How often the server calls onTick(). A tick that comes more than half of a deadline later
    // than this means the master itself did not run (SIGSTOP, a suspended VM): what the peers sent
    // meanwhile is still unread in its sockets, so that deadline restarts instead of expiring.
    uint64_t tickPeriodMs = 25;
    // With a run secret: the master's own random key K_master, from which every admission's key
    // and the peers' pair keys are derived (docs/security.md). None: an open run, no keys sent.
    std::optional<std::array<uint8_t, 32>> masterKey;
    // A connection whose Hello has not been accepted this long after it connected is closed,
    // whatever deadline it would ask for (docs/design.md, Limits).
    uint64_t handshakeTimeoutMs = 5000;
    // The longest heartbeat deadline a peer's Hello may ask for (a longer one is capped; the
    // master's own heartbeatTimeoutMs is allowed even when it is longer).
    uint64_t maxHeartbeatTimeoutMs = 60000;
    // Master recovery (docs/master_recovery.md): this incarnation's epoch before any peer
    // reports a newer one, and how long a recovery waits for the peers of the old run
    // (0: heartbeatTimeoutMs).
    uint64_t masterEpoch = 1;
    uint64_t recoveryWindowMs = 0;
    // Standby masters (docs/master_recovery.md): the master starts as a follower, refusing every
    // peer, until setLeader() makes it the leader.
    bool standby = false;
};

class Membership {
public:
    explicit Membership(MembershipOptions options = {}) : options_(options) {}
    // The clock, in milliseconds of a monotonic clock; set before each event.
    void setTime(uint64_t nowMs) { now_ = nowMs; }
    // Removes every peer that has been silent past its heartbeat deadline and settles votes open
    // past the vote deadline. A tick more than half a deadline late (see tickPeriodMs) first
    // restarts that deadline: the silence it measured was the master's own.
    Actions onTick();
    Actions onConnect(ClientId client, const protocol::NetAddr &remote);
    Actions onMessage(ClientId client, const protocol::ControlMessage &message);
    Actions onDisconnect(ClientId client, const std::string &reason);
    // The master is stopped on purpose: tells every registered peer that the run has ended.
    Actions onShutdown(const std::string &reason) const;
    // Closes up to `count` of the oldest connections that have not sent a Hello in the `minAgeMs`
    // since they connected (the server runs out of file descriptors: an honest peer may be
    // waiting behind them). A younger one may be about to send its Hello: it is left alone.
    Actions shedUnregistered(size_t count, uint64_t minAgeMs, const std::string &reason);

    // Standby masters (membership_standby.cpp): an election outside this class decides who leads.
    // A follower answers every Hello and Rejoin with Reject{retry} naming `leaderAddress` ("" when
    // no leader is known) and closes. Becoming the leader sets the master epoch (the election's,
    // strictly increasing across leaders). A leader that steps down sends every connection
    // Reject{retry} and closes it, forgets the run and follows.
    Actions setLeader(bool leader, uint64_t epoch, const std::string &leaderAddress);
    bool leading() const { return leading_; }

    size_t acceptedCount() const;
    uint64_t masterEpoch() const { return masterEpoch_; }
    bool recovering() const { return recoveryDeadline_.has_value(); }
    size_t pendingCount() const;
    // Human-readable lines describing membership changes since the last call (for the daemon).
    std::vector<std::string> takeEvents();
    // A snapshot of the run for the status page and metrics (membership_view.cpp); wallNowMs is
    // left 0 (this class has no wall clock).
    RunView view() const;
    static constexpr size_t kEventLogSize = 200;  // events kept for view()

private:
    // Rejoining: an admitted peer of an earlier master, held until the run is rebuilt.
    enum class State { Connected, Pending, Rejoining, Accepted };
    struct Peer {
        ClientId id = 0;
        Uuid uuid;
        protocol::NetAddr remote;
        uint32_t group = 0;
        protocol::NetAddr dataAddr;  // where the other peers connect: advertised (NAT) or observed, set by Hello
        State state = State::Connected;
        bool votedTopology = false;
        bool votedPending = false;
        bool votedOptimize = false;
        uint64_t lastSeenMs = 0;
        uint64_t heartbeatTimeoutMs = 0;
        uint64_t connectedMs = 0, joinedMs = 0;  // joinedMs: admitted at (0: not yet)
        std::optional<protocol::StatsReport> stats;  // its latest report (for view())
        uint64_t statsMs = 0;
        // A run with a secret: the first links round that sent this peer pair keys (0: none yet).
        // Two accepted peers have each other's key once both were in a round: a round sends a
        // peer new to keys every key, and every other peer the keys of the peers new to keys.
        uint64_t keyedEpoch = 0;
        std::optional<std::array<uint8_t, 32>> ownKey;  // peerKey(K_master, uuid, id), derived once
        std::optional<protocol::Rejoin> rejoin;  // what a Rejoining peer reported
    };
    struct Collective {
        protocol::CollectiveDesc desc;
        ClientId first = 0;
        std::set<ClientId> inited;
        std::string mismatch;  // non-empty: descriptions disagree
        pcclResult_t mismatchResult = pcclMismatch;  // descMismatchResult of the first disagreement
        uint64_t seq = 0;      // 0 until commenced
        std::vector<ClientId> participants;
        std::set<ClientId> done;
        uint64_t sinceMs = 0;  // first CollectiveInit
        uint64_t commencedMs = 0;
        std::map<ClientId, uint64_t> sendRates;  // reported with CollectiveDone
        std::set<ClientId> awaiting;  // inited peers whose user thread waits for it (CollectiveAwait)
        CollectiveKind kind() const { return static_cast<CollectiveKind>(desc.kind); }
        // "broadcast tag 3": how messages name it.
        std::string name(uint64_t tag) const { return collectiveTag(kind(), tag); }
    };

    // One handler per message a peer may send. Votes, collectives, syncs and reports are taken
    // only from an admitted peer (others are kicked); a master -> peer message is a protocol
    // error that removes the peer.
    template <class M>
    void dispatch(Actions &out, Peer &p, const M &m);
    void on(Actions &out, Peer &p, const protocol::Hello &m) { onHello(out, p, m); }
    void on(Actions &out, Peer &p, const protocol::LinksReady &m) { onLinksReady(out, p, m); }
    void on(Actions &out, Peer &p, const protocol::CollectiveInit &m) { onCollectiveInit(out, p, m); }
    void on(Actions &out, Peer &p, const protocol::CollectiveDone &m) { onCollectiveDone(out, p, m); }
    void on(Actions &out, Peer &p, const protocol::SharedStateSync &m) { onSharedStateSync(out, p, m); }
    void on(Actions &out, Peer &p, const protocol::SharedStateDone &m) { onSharedStateDone(out, p, m); }
    void on(Actions &out, Peer &p, const protocol::BandwidthReport &m) { onBandwidthReport(out, p, m); }
    void on(Actions &out, Peer &p, const protocol::VoteUpdateTopology &m);
    void on(Actions &out, Peer &p, const protocol::VotePeersPending &m);
    void on(Actions &out, Peer &p, const protocol::VoteOptimizeTopology &m);
    void on(Actions &out, Peer &p, const protocol::CollectiveAwait &m);
    void on(Actions &out, Peer &p, const protocol::Leave &m);
    // A peer's counters (issue 18), accepted from an admitted peer: kept for view()
    // (membership_view.cpp).
    void on(Actions &out, Peer &p, const protocol::StatsReport &m);
    template <class M>
    void on(Actions &out, Peer &p, const M &m) { unexpected(out, p, protocol::ControlMessage(m)); }
    void unexpected(Actions &out, Peer &p, const protocol::ControlMessage &m);
    void on(Actions &out, Peer &p, const protocol::Rejoin &m) { onRejoin(out, p, m); }
    // A follower's answer to a Hello or Rejoin: go to the leader.
    void refuseNotLeader(Actions &out, Peer &p);
    void onHello(Actions &out, Peer &p, const protocol::Hello &m);
    // Checks and records a Hello's identity (uuid, group, data address, deadline) for both Hello
    // and Rejoin; false when the peer was refused (closed). *note gets what to log about it.
    bool registerPeer(Actions &out, Peer &p, const protocol::Hello &m, std::string *note);
    void sendWelcome(Actions &out, Peer &p);
    // Master recovery (membership_recovery.cpp, docs/master_recovery.md).
    void onRejoin(Actions &out, Peer &p, const protocol::Rejoin &m);
    // Whether `reported` (a peer's highest master epoch) lets this master serve it; adopts a
    // newer epoch while no run is founded, refuses (retry elsewhere) a newer one after.
    bool checkEpoch(Actions &out, Peer &p, uint64_t reported);
    void openRecovery();
    // Whether every member of every group's latest reported ring has rejoined: O(groups), from
    // the tallies below (each Rejoin costs O(its ring) at most, so a rebuild is linear).
    bool recoveryComplete() const;
    void tallyRejoin(const Peer &p);
    void tallyLeave(const Peer &p);
    void finishRecovery(Actions &out);
    // `members`: the rebuilt ring; `participants`: how many peers the ring had before the
    // restart (an operation that was under way involved all of them).
    void resolveCollectives(Actions &out, const std::vector<ClientId> &members, size_t participants);
    void resolveSync(Actions &out, uint32_t group, const std::vector<ClientId> &members, size_t participants);
    void onCollectiveInit(Actions &out, Peer &p, const protocol::CollectiveInit &m);
    void onCollectiveDone(Actions &out, Peer &p, const protocol::CollectiveDone &m);
    void onLinksReady(Actions &out, Peer &p, const protocol::LinksReady &m);
    void onSharedStateSync(Actions &out, Peer &p, const protocol::SharedStateSync &m);
    void onSharedStateDone(Actions &out, Peer &p, const protocol::SharedStateDone &m);
    void maybeRunSync(Actions &out, uint32_t group);
    void maybeCommitSync(Actions &out, uint32_t group);
    void onSyncParticipantLost(Actions &out, uint32_t group, ClientId id, const Uuid &uuid, const std::string &reason);
    void abortSync(Actions &out, uint32_t group, const std::string &reason, const std::vector<Uuid> &lost = {},
                   pcclResult_t result = pcclRankConnectionLost);
    void removePeer(Actions &out, ClientId id, const std::string &reason);
    // The lost peer `p` leaves the collectives and the sync of its group: those it took part in
    // abort, those still waiting for it may now start without it.
    void leaveCollectives(Actions &out, const Peer &p, const std::string &reason);
    void leaveSync(Actions &out, const Peer &p, const std::string &reason);
    // Removes the peer and tells it why: reason, then toPeer (details only it needs).
    void kick(Actions &out, ClientId id, const std::string &reason, const std::string &toPeer = "");

    void maybeFinishVotes(Actions &out);
    // A topology or peers-pending vote with nobody pending changes nothing. When every accepted
    // peer that has not voted is blocked in a collective that waits for a voter (it started an
    // all-reduce tag or a shared-state sync that some voter has not), its vote cannot come: the
    // voters are answered at once (no change, nobody pending) instead of waiting for it. This is
    // a joiner whose first call is a vote while the peers that admitted it went on to their
    // all-reduce (issue 16; membership_votes.cpp).
    void settleNoOpVotes(Actions &out);
    // Whether `id` waits in a collective or sync of its group that one of `voters` has not joined.
    bool blockedOnVoters(ClientId id, const std::vector<ClientId> &voters) const;
    // When every accepted peer is blocked in a call (a vote, a shared-state sync, the await of an
    // all-reduce that has not commenced) and none of those calls can complete because a peer it
    // needs is blocked in another, the loop is misordered: every blocked call fails at once with
    // pcclMismatch, naming what each peer is doing (membership_votes.cpp).
    void failMisorderedCalls(Actions &out);
    // What `p` is blocked in, or "" when it may still call something.
    std::string blockedIn(const Peer &p) const;
    void finishLinksRound(Actions &out);  // every member linked up (or left): tell the round's peers
    // A failed link report: when it is a joiner of this round that failed (it could not link, or
    // its predecessor could not link to it), that joiner is removed alone and the round runs
    // again without it; otherwise the round fails for everyone (membership_links.cpp).
    void onLinkFailure(Actions &out, Peer &p, const protocol::LinksReady &m);
    // The deadline after which a silent connection is closed: the handshake deadline before its
    // Hello, its heartbeat deadline after.
    uint64_t silenceLimitMs(const Peer &p) const;
    void admitPending(Actions &out);
    void maybeCommence(Actions &out, uint32_t group, uint64_t tag);
    void abortCollective(Actions &out, uint32_t group, uint64_t tag, pcclResult_t result, const std::string &reason,
                         const std::vector<Uuid> &lost = {});
    void sendWorld(Actions &out);
    // Sends every accepted peer the ring of its group and waits for LinksReady (admission, or a
    // reordered ring).
    void startLinksRound(Actions &out);
    void sendPeerKeys(Actions &out, Peer &b);
    // Topology (membership_topology.cpp): measure links on an optimize vote, solve, apply;
    // place joiners where they cost least.
    void startProbe(Actions &out, const std::vector<ClientId> &voters);
    void onBandwidthReport(Actions &out, Peer &p, const protocol::BandwidthReport &m);
    void finishProbe(Actions &out);
    void placeJoiners(uint32_t group, const std::vector<ClientId> &joiners);
    // Raises the known bandwidth of each ring hop to what a committed all-reduce achieved on it.
    void learnFromTraffic(const Collective &c);
    std::vector<std::vector<double>> bandwidthMatrix(const std::vector<ClientId> &ids) const;
    // The deadlines (membership_deadlines.cpp): every vote, link report, collective start and
    // sync description open for voteTimeoutMs is settled (removeLaggards).
    void settleLateVotes(Actions &out);
    void settleLateGlobalVotes(Actions &out);
    void settleLateStarts(Actions &out);
    void settleLateSyncs(Actions &out);
    bool isLate(uint64_t sinceMs) const { return now_ >= sinceMs + options_.voteTimeoutMs; }
    // The master did not run for `gap` ms: restarts every deadline that the gap ate more than
    // half of (heartbeats per peer, votes and collective starts, the probe's report deadline).
    void restartDeadlinesAfterStall(uint64_t gap);
    // A vote past its deadline: kicks `laggards` when `voters` outnumber them and returns true;
    // otherwise returns false and sets *reason for failing the voters. Both messages name `what`
    // and the phase it was stuck in.
    bool removeLaggards(Actions &out, const std::string &what, const std::string &phase,
                        const std::vector<ClientId> &voters, const std::vector<ClientId> &laggards,
                        std::string *reason);

    std::vector<ClientId> acceptedIds() const;
    // Scale (docs/design.md, "The master at scale"): the checks that run on every message ask
    // "is there an accepted peer that ...?", answered by scanning from where the last answer was
    // found (amortized O(1) while peers change state one by one) instead of over every peer.
    std::optional<ClientId> anyAccepted();
    std::optional<ClientId> acceptedWithout(bool Peer::*flag);  // one that has not voted in that vote
    // One that blocks nothing: no vote cast, no collective or sync of its group that waits to
    // start with it. Such a peer may still make any call: no vote is a no-op, no call misordered.
    std::optional<ClientId> idleAccepted();
    bool isIdle(const Peer &p) const;
    protocol::WorldInfo worldFor(uint32_t group) const;
    std::vector<protocol::RingMember> ringOf(uint32_t group) const;
    std::string describe(const Peer &p) const;
    // What the master knows `p` is taking part in, with the phase ("all-reduce tag 3 (transfer
    // under way)", "the topology update vote (had not voted)", "no operation (idle)"); for messages.
    std::string activityOf(const Peer &p) const;
    static void send(Actions &out, ClientId to, protocol::ControlMessage m);
    // Refuses `to`: sends Reject{result, why, retry} and closes the connection (`reason` for the
    // log). Every refusal goes through it: a bad Hello, a stale epoch, a rejoin the run does not
    // include, a follower sending peers to the leader.
    static void reject(Actions &out, ClientId to, pcclResult_t result, std::string why, bool retry,
                       std::string reason);

    struct SyncRound {
        std::map<ClientId, protocol::SharedStateSync> described;
        uint64_t seq = 0;  // 0 while collecting descriptions
        uint64_t revision = 0;
        std::set<ClientId> participants, done;
        uint64_t sinceMs = 0;  // first description
        uint64_t commencedMs = 0;  // plan sent
        // Per receiver, per fetched entry: the sources it may still use.
        std::map<ClientId, std::vector<std::set<ClientId>>> needs;
    };

    MembershipOptions options_;
    std::map<uint32_t, SyncRound> syncRounds_;     // per group
    std::map<uint32_t, uint64_t> lastRevision_;   // per group, last committed
    uint64_t now_ = 0;
    std::optional<uint64_t> lastTick_;
    std::map<ClientId, Peer> peers_;
    // Registered peers (Pending, Rejoining or Accepted) by uuid: a peer enters it when it leaves
    // State::Connected (onHello, onRejoin), and removePeer takes it out.
    std::map<Uuid, ClientId> byUuid_;
    // Where the scans of anyAccepted / acceptedWithout / idleAccepted resume.
    ClientId acceptedHint_ = 0, idleHint_ = 0;
    std::array<ClientId, 3> notVotedHint_{};  // topology, peers pending, optimize
    std::map<uint32_t, std::vector<ClientId>> rings_;  // accepted peers per group, in ring order
    std::map<std::pair<uint32_t, uint64_t>, Collective> collectives_;
    uint64_t epoch_ = 0;
    uint64_t nextSeq_ = 1;
    uint64_t masterEpoch_ = options_.masterEpoch;
    bool founded_ = false;  // a run exists: a peer was admitted, or a recovery finished
    bool leading_ = !options_.standby;
    std::string leaderAddress_;  // a follower's leader, as the election reported it
    std::optional<uint64_t> recoveryDeadline_;  // a recovery is open until then
    struct RecoveryGroup {
        uint64_t epoch = 0;         // topology epoch of the latest ring reported
        std::vector<Uuid> ring;     // that ring, in order
        std::set<Uuid> members;
        size_t missing = 0;         // members that have not rejoined
    };
    std::map<uint32_t, RecoveryGroup> recoveryGroups_;
    std::set<Uuid> rejoined_;  // uuids of the peers now Rejoining
    // When the open global votes began (first voter); nullopt: no vote open.
    std::optional<uint64_t> topologySince_, pendingSince_, optimizeSince_;
    uint64_t linksSince_ = 0;
    std::set<ClientId> linksWaiting_;  // admission round waiting for LinksReady
    std::set<ClientId> linksRound_;
    std::string linksError_;
    std::set<Uuid> linksJoiners_;  // admitted in the admission round under way
    bool linksRetry_ = false;      // a joiner was removed for its links: run the round again
    std::vector<std::string> events_;
    // Counters and the bounded event log behind view() (membership_view.cpp). note() records a
    // membership change in both events_ and the log; countLoss() classifies removePeer's reason.
    void note(const char *kind, std::string line);
    void record(const char *kind, std::string line);  // the log only (failed collectives)
    void countLoss(const std::string &reason);
    // A collective's (or sync's) outcome; a commit with its commence time also feeds the durations
    // (a commit resolved by a restarted master has none: it commenced under the old one).
    void countCollective(const char *kind, pcclResult_t result, std::optional<uint64_t> commencedMs = std::nullopt);
    // The parts of view(): one peer, the links among the named peers, the operations in flight.
    PeerView viewOf(const Peer &p) const;
    std::vector<LinkView> viewLinks(const std::map<Uuid, std::string> &names) const;
    std::vector<CollectiveView> viewInFlight() const;
    RunCounters counters_;
    std::deque<RunEvent> eventLog_;

    // After the last probe window, how long the reports may take to arrive.
    static constexpr uint64_t kProbeReportGraceMs = 2500;
    // Link measurement of an optimize vote in progress.
    struct ProbeRound {
        uint64_t round = 0;
        uint64_t deadlineMs = 0;
        std::set<uint32_t> groups;
        std::set<ClientId> waiting;  // peers whose report is missing
        std::vector<ClientId> voters;
    };
    std::optional<ProbeRound> probe_;
    uint64_t probeRounds_ = 0;
    std::map<std::pair<Uuid, Uuid>, double> bandwidth_;  // measured bytes/s, from -> to
    std::vector<ClientId> optimizeAnswer_;                // voters waiting for a rewiring links round
};

} // namespace pccl::master
