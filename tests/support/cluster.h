// Test fixtures for the public-API suite: an embedded or daemon master, child processes, a
// cluster of peer threads (each with its own communicator) that runs a per-rank lambda, and
// isolated(), which runs a test body in a forked copy of the test process.
//
// Every wait here has a deadline. A cluster that does not finish in time fails the test (after
// on_timeout released stuck peers, e.g. by destroying the master); if it still has not finished
// after a grace period its process exits. Test bodies that touch the network run in isolated():
// a hang or a crash inside the library then fails that one test, never the whole suite.
// Failures are PeerFailure exceptions (PT_* macros), reported through reportFailure(); Catch
// assertions are used only by the parent side of isolated() and by tests that need no library
// objects.
#pragma once

#include "support/common.h"

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <sys/types.h>
#include <thread>
#include <vector>

namespace pccl_test {

// An embedded master (pcclCreateMaster + pcclRunMaster) on the loopback address, port 0.
class EmbeddedMaster {
public:
    explicit EmbeddedMaster(bool ipv6 = false);
    ~EmbeddedMaster();
    EmbeddedMaster(const EmbeddedMaster &) = delete;
    EmbeddedMaster &operator=(const EmbeddedMaster &) = delete;

    uint16_t port() const { return port_; }
    // The address peers connect to (127.0.0.1 or ::1 with the real port).
    ccoip_socket_address_t address() const;
    pcclMasterInstance_t *get() const { return master_; }
    // Interrupt + await termination (bounded); idempotent.
    void stop();
    // stop() + pcclDestroyMaster: closes every connection for sure. Used to unblock peers when a
    // test is past its deadline. Idempotent; get() is NULL afterwards.
    void destroy();

private:
    pcclMasterInstance_t *master_ = nullptr;
    uint16_t port_ = 0;
    bool ipv6_ = false;
    bool stopped_ = false;
};

// A child process started with fork+exec whose stdout is read line by line through a pipe.
// The child gets SIGKILL if the test process dies (PR_SET_PDEATHSIG). Construct it on the main
// thread: the death signal also fires when the thread that forked exits.
class ChildProcess {
public:
    explicit ChildProcess(const std::vector<std::string> &argv);
    ~ChildProcess(); // SIGKILL + reap if still running
    ChildProcess(const ChildProcess &) = delete;
    ChildProcess &operator=(const ChildProcess &) = delete;

    pid_t pid() const { return pid_; }
    // The next stdout line (without '\n'), or nullopt on EOF or when the deadline passes.
    std::optional<std::string> readLine(double timeout_s);
    // Read lines until one starts with `prefix`; returns it, or nullopt (EOF / deadline).
    std::optional<std::string> waitForLine(const std::string &prefix, double timeout_s);
    // Everything read so far (for diagnostics).
    const std::string &transcript() const { return transcript_; }
    void signal(int sig);
    // Wait for exit; returns the raw waitpid status, or nullopt if still running at the deadline.
    std::optional<int> wait(double timeout_s);

private:
    struct Reader; // background thread that drains stdout into lines (the child never blocks on it)
    pid_t pid_ = -1;
    int out_fd_ = -1;
    bool reaped_ = false;
    int status_ = 0;
    std::shared_ptr<Reader> reader_;
    std::string transcript_;
};

// The pccl-master daemon (PCCL_MASTER_BIN --listen 127.0.0.1:0); reads the port from its banner.
class DaemonMaster {
public:
    DaemonMaster() : DaemonMaster("127.0.0.1:0") {}
    // Listening on `listen` (e.g. "127.0.0.1:PORT" to restart a master in place), with more flags.
    explicit DaemonMaster(const std::string &listen, const std::vector<std::string> &flags = {});
    uint16_t port() const { return port_; }
    ccoip_socket_address_t address() const { return loopbackV4(port_); }
    ChildProcess &process() { return *proc_; }

private:
    std::unique_ptr<ChildProcess> proc_;
    uint16_t port_ = 0;
};

// A rendezvous among the peer threads of one cluster, with a deadline. If any peer of the cluster
// failed, every waiter throws instead of waiting for a peer that will never come.
class SyncPoint {
public:
    explicit SyncPoint(int parties) : parties_(parties) {}
    void arriveAndWait(double timeout_s = 30);
    void abort();
    bool aborted();

private:
    std::mutex mu_;
    std::condition_variable cv_;
    int parties_;
    int arrived_ = 0;
    uint64_t generation_ = 0;
    bool aborted_ = false;
};

struct PeerCtx {
    int rank = 0;           // index among this cluster's peer threads (not the ring position)
    int local_peers = 0;    // number of peer threads of this cluster
    uint32_t group = 0;     // peer group of this peer
    pcclComm_t *comm = nullptr;
    SyncPoint *sync = nullptr;
    // Set by the body to keep the communicator alive past the body (rare); else it is destroyed.
    bool destroy_comm = true;
    void barrier(double timeout_s = 30) const { sync->arriveAndWait(timeout_s); }
    // Wait for cond (set by another thread) with a deadline; throws PeerFailure on timeout or as
    // soon as another peer of the cluster failed.
    void waitFor(const std::function<bool()> &cond, const char *what, double timeout_s = 20) const;
};

struct ClusterOptions {
    std::vector<uint32_t> groups{0, 0}; // one entry per peer thread: its peer group
    int expected_world = -1;            // global world size to wait for; -1 = groups.size()
    double timeout_s = 30;              // whole cluster (connect + body + destroy); keep isolated() longer
    uint32_t pool_size = 0;
    Deadlines deadlines;                // per-communicator deadlines (pcclCreateCommunicatorEx)
};

// Start one thread per entry of opts.groups: each creates a communicator, connects to `master`,
// votes until the global world size is expected_world, runs body(ctx), waits for the other peer
// threads of this cluster to finish their bodies, then destroys its communicator (at once when
// a body throws, so that the other peers fail fast instead of waiting).
class PeerThreads {
public:
    PeerThreads(const ccoip_socket_address_t &master, ClusterOptions opts, std::function<void(PeerCtx &)> body);
    ~PeerThreads(); // joins (with the deadline logic of join()) if join() was not called
    PeerThreads(const PeerThreads &) = delete;
    PeerThreads &operator=(const PeerThreads &) = delete;

    // Wait for every peer thread (deadline from opts.timeout_s since start). Reports every peer
    // failure (reportFailure) and then throws PeerFailure if there was any. on_timeout (e.g.
    // destroy the master) is called once when the deadline passes, before the grace period.
    void join(const std::function<void()> &on_timeout = {});
    // Called by the destructor when join() was never called (the controlling thread failed), to
    // release peers that may be stuck (e.g. kill a child peer, destroy the master).
    void onAbort(std::function<void()> fn) { on_abort_ = std::move(fn); }
    // True once every peer finished connecting (world reached).
    bool allConnected() const { return connected_.load() == static_cast<int>(opts_.groups.size()); }
    bool failed() const;

private:
    void run(int rank);

    ClusterOptions opts_;
    ccoip_socket_address_t master_;
    std::function<void(PeerCtx &)> body_;
    SyncPoint sync_;
    std::vector<std::thread> threads_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    int finished_ = 0;
    std::vector<std::string> failures_;
    std::atomic<int> connected_{0};
    Clock::time_point start_;
    bool joined_ = false;
    std::function<void()> on_abort_;
};

// PeerThreads + join in one call.
void runPeers(const ccoip_socket_address_t &master, const ClusterOptions &opts, std::function<void(PeerCtx &)> body,
              const std::function<void()> &on_timeout = {});

// runPeers against a master of this suite; when the deadline passes the master is destroyed (the
// daemon killed), which closes every connection and so releases peers stuck in a library call.
void runPeers(EmbeddedMaster &master, const ClusterOptions &opts, std::function<void(PeerCtx &)> body);
void runPeers(DaemonMaster &master, const ClusterOptions &opts, std::function<void(PeerCtx &)> body);

// Run fn on a new thread; throws PeerFailure if it does not return within timeout_s, or with its
// own exception. on_timeout (e.g. destroy the master) runs once when the deadline passes; if fn is
// still running after a further grace period the process exits with a message (never hangs).
void runWithin(double timeout_s, const std::function<void()> &fn, const char *what = "operation",
               const std::function<void()> &on_timeout = {});

// Run fn in a forked copy of the test process and report its failures here (Catch). A test that
// hangs is killed after timeout_s, a crash (signal) is reported as such, and neither affects the
// rest of the suite. Inside fn use only the PT_* macros (Catch assertions in the copy are lost);
// failures raised on the main thread of the copy go through reportFailure().
void isolated(double timeout_s, const std::function<void()> &fn);

// A failure found on the main test thread: FAIL_CHECK, or a message to the parent of isolated().
void reportFailure(const std::string &msg);

// Poll `cond` until true or the deadline passes; returns the final value of cond().
bool waitUntil(const std::function<bool()> &cond, double timeout_s);

} // namespace pccl_test
