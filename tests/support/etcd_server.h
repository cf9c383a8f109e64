// A real single-node etcd for tests of standby masters (test_etcd_election.cpp,
// test_api_master_standby.cpp): `etcd` (Debian etcd-server; `make deps`) on free loopback
// ports with a fresh data directory, killed and removed at the end. Built only with the etcd
// client (PCCL_HAVE_ETCD). The binary is PCCL_ETCD_BIN, else `etcd` on PATH; when there is none,
// available() is false and the tests skip with a message saying so.
#pragma once
#ifdef PCCL_HAVE_ETCD
#include <memory>
#include <string>

#include "support/cluster.h"

namespace pccl_test {

class EtcdServer {
public:
    // The etcd binary, or "" when none is installed.
    static std::string binary();
    static bool available() { return !binary().empty(); }
    static std::string skipMessage() {
        return "skipped: no etcd binary (install Debian's etcd-server, `make deps`, or set PCCL_ETCD_BIN)";
    }

    EtcdServer();  // starts it and waits (15 s at most) until it answers
    ~EtcdServer();
    EtcdServer(const EtcdServer &) = delete;
    EtcdServer &operator=(const EtcdServer &) = delete;

    const std::string &endpoint() const { return endpoint_; }  // http://127.0.0.1:PORT
    std::string log() const;  // its stderr, for diagnostics

private:
    std::string dir_, endpoint_;
    std::unique_ptr<ChildProcess> proc_;
};

} // namespace pccl_test
#endif
