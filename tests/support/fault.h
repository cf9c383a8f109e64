// Helpers for the process-level fault tests: the f32 pattern every peer contributes, a child's
// stopped state and memory, external commands, and a pair of network namespaces to cut links in.
// Like cluster.h, nothing here uses Catch: failures are PeerFailure or returned as strings.
#pragma once

#include "support/common.h"

#include <cstdint>
#include <string>
#include <sys/types.h>
#include <vector>

namespace pccl_test {

inline int64_t nowNs() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

inline double secondsSinceNs(int64_t t_ns) { return static_cast<double>(nowNs() - t_ns) / 1e9; }

// The value a surviving thread-peer of rank `rank` contributes in the fault tests (fillPattern).
inline int survivorValue(int rank) { return rank == 0 ? 1 : 10; }

// Element j of a peer with value v is v + j % 3.
void fillPattern(std::vector<float> &buf, int value);

// Every element j must be value_sum + contributors * (j % 3). Returns "" or the first difference.
std::string checkPattern(const float *buf, size_t count, int value_sum, int contributors);

struct PeerCtx;
// After a peer was lost: pcclUpdateTopology leaves a world of 2, and an in-place sum of `orig`
// (restored into `buf`) on it gives the pattern of value `both` from 2 contributors.
void expectRunOnTwo(PeerCtx &ctx, const std::vector<float> &orig, std::vector<float> &buf,
                    const pcclReduceDescriptor_t &d, int both);

// Waits until every thread of process pid is stopped (SIGSTOP) or the deadline passes; true if
// stopped. A stopped process runs no code, so its memory is a consistent snapshot.
bool waitStopped(pid_t pid, double timeout_s);

// Copies count floats at address addr of process pid (a child of ours) into out; "" or the error.
std::string readFloats(pid_t pid, uint64_t addr, size_t count, std::vector<float> &out);

// The absolute path of an executable found in PATH (or the usual sbin directories), or "".
std::string findExecutable(const std::string &name);

// Runs argv[0] (looked up with findExecutable) to completion. Returns its exit status, or -1
// when it could not be started or did not finish within timeout_s (then it is killed). Its
// stdout and stderr are appended to *output if given.
int runCommand(const std::vector<std::string> &argv, std::string *output = nullptr, double timeout_s = 10);

// One setup step of a namespace fixture: runs argv unless *unavailable is already set; a failure
// sets it to the command and its output. Returns whether the step ran and succeeded.
bool runSetupStep(const std::vector<std::string> &argv, std::string *unavailable);

// Deletes the namespaces named prefix + PID + one or two lowercase letters whose PID is gone:
// fixtures left behind by test processes killed before their destructor ran. `ip`: iproute2.
void deleteStaleNamespaces(const std::string &ip, const std::string &prefix);
// Moves the calling thread into the network namespace `name` (/run/netns/NAME); fails the test
// (PeerFailure) when it cannot.
void enterNamespace(const std::string &name);

// Two fresh network namespaces, pcclt<pid>a and pcclt<pid>b (pid: this process), joined by a veth
// pair: pt<pid>a in a with kAddrA/30, pt<pid>b in b with kAddrB/30, loopback up in both. Nothing
// is created in the caller's namespace and the addresses exist only inside the pair, so traffic
// never leaves it. The destructor deletes both namespaces (the veth pair goes with them) whatever
// happened in between; construction first deletes pairs left behind by test processes that no
// longer exist. Needs root and iproute2: unavailable() says why not (the test then skips).
class NetnsPair {
public:
    static constexpr const char *kAddrA = "10.231.0.1";
    static constexpr const char *kAddrB = "10.231.0.2";

    NetnsPair();
    ~NetnsPair();
    NetnsPair(const NetnsPair &) = delete;
    NetnsPair &operator=(const NetnsPair &) = delete;

    // "" when the pair is up; otherwise why it could not be created.
    const std::string &unavailable() const { return unavailable_; }
    // Moves the calling thread into namespace a; threads it starts later are in a too. Call it on
    // the main thread of a fresh process (isolated()) before anything starts threads.
    void enterA() const;
    // argv prefixed so that it runs inside namespace b (ip netns exec); for ChildProcess.
    std::vector<std::string> inB(const std::vector<std::string> &argv) const;
    // Takes b's end of the link down (up = false) or up; a down link drops every packet both ways
    // without telling either side. Throws PeerFailure if ip fails.
    void setLink(bool up) const;

private:
    std::string ip_, nsA_, nsB_, vethA_, vethB_;
    std::string unavailable_;
    bool createdA_ = false, createdB_ = false;
};

} // namespace pccl_test
