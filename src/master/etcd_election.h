// Standby masters elected through etcd (docs/master_recovery.md, Standby masters). Several
// pccl-master processes serve one run; etcd decides which one leads, this class only asks it:
//
//   - campaign: grant a lease (ttlS), then one transaction creates the key /pccl/RUN/leader =
//     the advertised address, attached to the lease, if the key is absent. The winner's epoch is
//     the key's create revision: etcd's revisions only grow, so each new leader's epoch is
//     newer than every earlier one's.
//   - leader: renew the lease every ttl/3 and check that the key is still the one it created.
//     A renewal sent at t0 keeps the leadership valid until t0 + ttl, never later than etcd's own
//     expiry. A lease that etcd says is gone, a key deleted or replaced, or no renewal before the
//     validity ends steps the master down.
//   - follower: read the key every poll period; report the leader's address; campaign again as
//     soon as the key is gone (its lease expired or was revoked).
//
// Every change and every renewal is reported through the callback, from the election's own
// thread (Server::setLeadership posts it to the loop). stop() revokes a held lease, so that a
// follower takes over at once when a leader is stopped on purpose.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "master/etcd_client.h"
#include "master/server.h"

namespace pccl::master {

struct EtcdElectionOptions {
    std::string endpoint;   // http://HOST:PORT
    std::string runId;      // the key is /pccl/<runId>/leader
    std::string advertise;  // where peers reach this master (HOST:PORT), the key's value
    int64_t leaseTtlS = 3;
    // How often a follower reads the key (0: lease TTL / 15, at least 50 ms, at most 500 ms).
    uint64_t pollMs = 0;
};

class EtcdElection {
public:
    using Listener = std::function<void(const Leadership &)>;
    EtcdElection(EtcdElectionOptions options, Listener listener);
    ~EtcdElection();  // stop()
    EtcdElection(const EtcdElection &) = delete;
    EtcdElection &operator=(const EtcdElection &) = delete;

    // Checks the options (pcclInvalidArgument) and starts campaigning on a thread of its own.
    Status start();
    // Ends the campaign; a leader revokes its lease first. Idempotent; any thread but the listener's.
    void stop();
    static std::string leaderKey(const std::string &runId) { return "/pccl/" + runId + "/leader"; }

private:
    void loop();
    void lead(std::chrono::steady_clock::time_point now);
    void follow();
    void campaign();
    void report(bool leader, const std::string &leaderAddress);
    // Sleeps up to `ms`; false when stopped meanwhile.
    bool pause(uint64_t ms);
    // Logs an etcd failure, at most once per distinct reason in a row.
    void warn(const std::string &what, const Status &st);

    EtcdElectionOptions options_;
    Listener listener_;
    std::unique_ptr<EtcdClient> client_;
    std::thread thread_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stopping_ = false;

    // Election thread only.
    bool leading_ = false;
    int64_t leaseId_ = 0;
    int64_t ttlS_ = 0;
    uint64_t epoch_ = 0;
    std::chrono::steady_clock::time_point validUntil_{}, nextRenewal_{};
    std::string leaderAddress_;  // last reported to a follower
    bool reported_ = false;
    std::string lastWarning_;
};

} // namespace pccl::master
