// A real single-node etcd for the tests of standby masters (test_etcd_election.cpp,
// test_api_master_standby.cpp) and for pccl-soak --etcd: `etcd` (Debian etcd-server; `make deps`)
// on free loopback ports with a fresh data directory, killed and removed at the end. Built only
// with the etcd client (PCCL_HAVE_ETCD), into the static library pccl_etcd_server (top-level
// CMakeLists.txt) over pccl_spawn: no Catch2, no cluster, so the soak links it too. The binary is
// PCCL_ETCD_BIN, else `etcd` on PATH; when there is none, available() is false and the callers
// skip with skipMessage().
#pragma once
#ifdef PCCL_HAVE_ETCD
#include <sys/types.h>

#include <string>

namespace pccl_test {

class EtcdServer {
public:
    // The etcd binary, or "" when none is installed.
    static std::string binary();
    static bool available() { return !binary().empty(); }
    static std::string skipMessage() {
        return "skipped: no etcd binary (install Debian's etcd-server, `make deps`, or set PCCL_ETCD_BIN)";
    }

    // Starts it and waits (15 s at most) until it answers; throws pccl_test::PeerFailure (a
    // std::runtime_error) with the reason and etcd's log when it does not.
    EtcdServer();
    ~EtcdServer();  // SIGKILL + reap, data directory removed
    EtcdServer(const EtcdServer &) = delete;
    EtcdServer &operator=(const EtcdServer &) = delete;

    const std::string &endpoint() const { return endpoint_; }  // http://127.0.0.1:PORT
    pid_t pid() const { return pid_; }
    std::string log() const;  // the tail of its stderr, for diagnostics

private:
    void stop();
    [[noreturn]] void stopAndFail(const std::string &why);

    std::string dir_, endpoint_;
    pid_t pid_ = -1;
};

} // namespace pccl_test
#endif
