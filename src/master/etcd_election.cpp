#include "master/etcd_election.h"

#include <algorithm>

#include "transport/address.h"
#include "util/log.h"

namespace pccl::master {

using Clock = std::chrono::steady_clock;

EtcdElection::EtcdElection(EtcdElectionOptions options, Listener listener)
    : options_(std::move(options)), listener_(std::move(listener)) {
    if (options_.pollMs == 0)
        options_.pollMs = std::clamp<uint64_t>(static_cast<uint64_t>(std::max<int64_t>(options_.leaseTtlS, 1)) * 1000 / 15,
                                               50, 500);
}

EtcdElection::~EtcdElection() { stop(); }

Status EtcdElection::start() {
    if (options_.runId.empty() || options_.runId.find_first_of("/ \t\n") != std::string::npos)
        return invalidArgument("--run-id '" + options_.runId + "': a non-empty name without '/' or spaces is required");
    if (options_.leaseTtlS < 1 || options_.leaseTtlS > 3600)
        return invalidArgument("the etcd lease TTL must be 1..3600 s, got " + std::to_string(options_.leaseTtlS));
    auto advertised = transport::parseSocketAddress(options_.advertise, 0);
    if (!advertised.ok() || advertised->port == 0)
        return invalidArgument("advertised master address '" + options_.advertise + "': expected HOST:PORT");
    if (std::all_of(advertised->ip.begin(), advertised->ip.end(), [](uint8_t b) { return b == 0; }))
        return invalidArgument("advertised master address '" + options_.advertise +
                               "' is a wildcard: peers cannot dial it (set --advertise HOST:PORT)");
    // Each request must end well within the lease: a renewal that hangs would outlive it.
    const uint64_t requestMs = std::max<uint64_t>(200, static_cast<uint64_t>(options_.leaseTtlS) * 1000 / 4);
    auto client = EtcdClient::create(options_.endpoint, requestMs);
    if (!client.ok()) return client.status();
    client_ = std::move(*client);
    PCCL_LOG(Info, "etcd: campaigning for run " << options_.runId << " at " << options_.endpoint << " (key "
                                                << leaderKey(options_.runId) << ", lease TTL " << options_.leaseTtlS
                                                << " s, advertising " << options_.advertise << ")");
    thread_ = std::thread([this] { loop(); });
    return {};
}

void EtcdElection::stop() {
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

bool EtcdElection::pause(uint64_t ms) {
    std::unique_lock lock(mu_);
    return !cv_.wait_for(lock, std::chrono::milliseconds(ms), [&] { return stopping_; });
}

void EtcdElection::warn(const std::string &what, const Status &st) {
    const std::string line = what + ": " + st.message();
    if (line == lastWarning_) return;
    lastWarning_ = line;
    PCCL_LOG(Warn, "etcd: " << line);
}

void EtcdElection::report(bool leader, const std::string &leaderAddress) {
    // A leader reports each renewal (it extends validUntil); a follower only changes.
    if (!leader && reported_ && leaderAddress == leaderAddress_) return;
    reported_ = !leader;
    leaderAddress_ = leaderAddress;
    listener_(Leadership{leader, leader ? epoch_ : 0, leaderAddress, leader ? validUntil_ : Clock::time_point{}});
}

void EtcdElection::loop() {
    for (;;) {
        {
            std::lock_guard lock(mu_);
            if (stopping_) break;
        }
        if (leading_) lead(Clock::now());
        else follow();
    }
    if (leading_) {
        // Stopped on purpose: hand over now instead of after the lease's TTL.
        if (auto st = client_->revoke(leaseId_); !st.ok()) warn("revoking the leadership lease", st);
        else PCCL_LOG(Info, "etcd: gave up the leadership of run " << options_.runId);
    }
}

void EtcdElection::lead(Clock::time_point now) {
    if (now < nextRenewal_) {
        pause(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(nextRenewal_ - now).count()) + 1);
        return;
    }
    auto ttl = client_->keepAlive(leaseId_);
    if (ttl.ok() && *ttl > 0) {
        // The lease lives; the key must still be the one this master created (an operator may
        // have deleted it, and another master may have won it since).
        auto key = client_->get(leaderKey(options_.runId));
        if (key.ok() && (!key->has_value() || (*key)->createRevision != static_cast<int64_t>(epoch_))) {
            PCCL_LOG(Warn, "etcd: lost the leadership of run " << options_.runId << " (epoch " << epoch_
                                                               << "): its key was deleted or replaced");
            if (auto st = client_->revoke(leaseId_); !st.ok()) warn("revoking the leadership lease", st);
            leading_ = false;
            leaseId_ = 0;
            report(false, key->has_value() ? (*key)->value : "");
            return;
        }
        lastWarning_.clear();
        validUntil_ = now + std::chrono::seconds(*ttl);
        nextRenewal_ = now + std::chrono::milliseconds(*ttl * 1000 / 3);
        report(true, "");
        return;
    }
    std::string why;
    if (ttl.ok()) {
        why = "etcd says its lease is gone (expired: the master was stopped or cut off)";
    } else if (Clock::now() >= validUntil_) {
        why = "no renewal of its lease within the TTL (" + ttl.status().message() + ")";
    } else {
        warn("renewing the leadership lease", ttl.status());
        nextRenewal_ = Clock::now() + std::chrono::milliseconds(options_.pollMs);
        return;
    }
    PCCL_LOG(Warn, "etcd: lost the leadership of run " << options_.runId << " (epoch " << epoch_ << "): " << why);
    leading_ = false;
    leaseId_ = 0;
    report(false, "");
}

void EtcdElection::follow() {
    auto current = client_->get(leaderKey(options_.runId));
    if (!current.ok()) {
        warn("reading the leader", current.status());
        report(false, "");
    } else if (current->has_value()) {
        lastWarning_.clear();
        report(false, (*current)->value);
    } else {
        campaign();
    }
    if (!leading_) pause(options_.pollMs);
}

void EtcdElection::campaign() {
    const auto t0 = Clock::now();
    auto lease = client_->grant(options_.leaseTtlS);
    if (!lease.ok()) return warn("granting a lease", lease.status());
    auto outcome = client_->createIfAbsent(leaderKey(options_.runId), options_.advertise, lease->id);
    if (!outcome.ok() || !outcome->won) {
        // Lost, or unknown (the answer was lost): the lease goes, and the key with it if it was ours.
        if (auto st = client_->revoke(lease->id); !st.ok()) warn("revoking an unused lease", st);
        if (!outcome.ok()) return warn("campaigning", outcome.status());
        lastWarning_.clear();
        if (outcome->current) report(false, outcome->current->value);
        return;
    }
    lastWarning_.clear();
    leading_ = true;
    leaseId_ = lease->id;
    ttlS_ = lease->ttlS;
    epoch_ = static_cast<uint64_t>(outcome->revision);
    validUntil_ = t0 + std::chrono::seconds(ttlS_);
    nextRenewal_ = t0 + std::chrono::milliseconds(ttlS_ * 1000 / 3);
    PCCL_LOG(Info, "etcd: leading run " << options_.runId << " (epoch " << epoch_ << ", lease TTL " << ttlS_ << " s)");
    report(true, "");
}

} // namespace pccl::master
