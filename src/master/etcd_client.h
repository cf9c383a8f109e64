// The few etcd v3 calls a standby master needs (docs/master_recovery.md, Standby masters), over
// etcd's HTTP/JSON gateway (/v3/lease/*, /v3/kv/*) with cpp-httplib. Not part of libpccl: it is
// built into the target pccl_etcd, which only pccl-master and the tests link.
//
// Blocking calls, each bounded by the request timeout; one thread at a time per client. Failures
// (etcd unreachable, an HTTP error, an answer that is not what etcd sends) come back as a Status
// with pcclMasterConnectionFailed and the reason.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "util/status.h"

namespace pccl::master {

struct EtcdLease {
    int64_t id = 0;
    int64_t ttlS = 0;  // as granted (etcd may raise a short TTL to its minimum)
};

struct EtcdValue {
    std::string value;
    int64_t createRevision = 0;
    int64_t lease = 0;  // 0: none
};

// The outcome of a compare-and-create: won (the key was absent and is now ours, created at
// `revision`), or lost to the holder `current`.
struct EtcdCampaign {
    bool won = false;
    int64_t revision = 0;
    std::optional<EtcdValue> current;
};

class EtcdClient {
public:
    // `endpoint`: http://HOST:PORT (https is not supported). Checks the form only; pcclInvalidArgument.
    static Result<std::unique_ptr<EtcdClient>> create(const std::string &endpoint, uint64_t requestTimeoutMs);
    ~EtcdClient();

    Result<EtcdLease> grant(int64_t ttlS);
    // The lease's remaining TTL after renewal; 0 when the lease is gone (expired or revoked).
    Result<int64_t> keepAlive(int64_t leaseId);
    Status revoke(int64_t leaseId);
    Result<std::optional<EtcdValue>> get(const std::string &key);
    // Creates `key` = `value` attached to the lease if the key does not exist (one transaction).
    Result<EtcdCampaign> createIfAbsent(const std::string &key, const std::string &value, int64_t leaseId);

    const std::string &endpoint() const { return endpoint_; }

private:
    struct Impl;
    EtcdClient(std::string endpoint, std::unique_ptr<Impl> impl);
    std::string endpoint_;
    std::unique_ptr<Impl> impl_;
};

} // namespace pccl::master
