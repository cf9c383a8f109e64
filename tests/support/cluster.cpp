#include "support/cluster.h"
#include "support/spawn.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <iostream>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace pccl_test {

namespace {


// >= 0 inside the forked child of isolated(): failures are written there, not to Catch.
int g_report_fd = -1;
bool g_reported = false;

// How long a stuck operation may run past its deadline (after on_timeout) before the process gives
// up on it. Short in an isolated child, whose parent kills it anyway.
double graceSeconds() { return g_report_fd >= 0 ? 5 : 30; }

Clock::duration seconds(double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

void writeAll(int fd, const void *data, size_t n) {
    const auto *p = static_cast<const char *>(data);
    while (n > 0) {
        const ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        p += w;
        n -= static_cast<size_t>(w);
    }
}

[[noreturn]] void hardExit(const std::string &why) {
    if (g_report_fd >= 0) {
        reportFailure(why + "; the isolated test process gives up");
        std::fflush(stdout);
        std::fflush(stderr);
        _exit(3);
    }
    std::fflush(stdout);
    std::cout.flush();
    std::fprintf(stderr, "\n*** pccl_tests: %s; exiting so that the suite does not hang ***\n", why.c_str());
    std::fflush(stderr);
    std::_Exit(3);
}

// Run fn on its own thread. Returns true if it finished within timeout_s, false if it finished
// only within the grace period after on_timeout(); exits the process if it never finished.
// The exception fn threw (if any) is stored in *error.
bool boundedRun(double timeout_s, const std::function<void()> &fn, const std::function<void()> &on_timeout,
                std::exception_ptr *error, const std::string &what) {
    struct State {
        std::mutex mu;
        std::condition_variable cv;
        bool done = false;
        std::exception_ptr error;
    };
    auto st = std::make_shared<State>();
    std::thread t([st, &fn] {
        std::exception_ptr e;
        try {
            fn();
        } catch (...) {
            e = std::current_exception();
        }
        std::lock_guard<std::mutex> lk(st->mu);
        st->error = e;
        st->done = true;
        st->cv.notify_all();
    });
    bool in_time;
    {
        std::unique_lock<std::mutex> lk(st->mu);
        in_time = st->cv.wait_for(lk, seconds(timeout_s), [&] { return st->done; });
    }
    if (!in_time) {
        if (on_timeout) on_timeout();
        std::unique_lock<std::mutex> lk(st->mu);
        if (!st->cv.wait_for(lk, seconds(graceSeconds()), [&] { return st->done; }))
            hardExit(what + " still running " + std::to_string(graceSeconds()) + " s after its deadline of " +
                     std::to_string(timeout_s) + " s");
    }
    t.join();
    if (error) *error = st->error;
    return in_time;
}

} // namespace

// ---------------------------------------------------------------- EmbeddedMaster

EmbeddedMaster::EmbeddedMaster(bool ipv6) : ipv6_(ipv6) {
    PT_OK(nullptr, pcclInit());
    const ccoip_socket_address_t listen = ipv6 ? loopbackV6(0) : loopbackV4(0);
    PT_OK(nullptr, pcclCreateMaster(listen, &master_));
    PT_CHECK(master_ != nullptr);
    PT_OK(nullptr, pcclRunMaster(master_));
    PT_OK(nullptr, pcclGetMasterPort(master_, &port_));
    PT_CHECK_MSG(port_ != 0, "pcclGetMasterPort returned port 0 for a running master");
}

ccoip_socket_address_t EmbeddedMaster::address() const { return ipv6_ ? loopbackV6(port_) : loopbackV4(port_); }

void EmbeddedMaster::stop() {
    if (stopped_ || master_ == nullptr) return;
    stopped_ = true;
    pcclInterruptMaster(master_);
    pcclMasterInstance_t *m = master_;
    boundedRun(20, [m] { pcclMasterAwaitTermination(m); }, {}, nullptr, "pcclMasterAwaitTermination");
}

void EmbeddedMaster::destroy() {
    if (master_ == nullptr) return;
    stop();
    pcclMasterInstance_t *m = master_;
    master_ = nullptr;
    boundedRun(20, [m] { pcclDestroyMaster(m); }, {}, nullptr, "pcclDestroyMaster");
}

EmbeddedMaster::~EmbeddedMaster() { destroy(); }

// ---------------------------------------------------------------- ChildProcess

struct ChildProcess::Reader {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::string> lines;
    bool eof = false;
    std::thread thread;
};

ChildProcess::ChildProcess(const std::vector<std::string> &argv) {
    std::string err;
    const pccl_spawn::Spawned child = pccl_spawn::spawn(argv, {}, &err);
    if (child.pid < 0) fail(__FILE__, __LINE__, err);
    pid_ = child.pid;
    out_fd_ = child.out;
    auto reader = std::make_shared<Reader>();
    reader_ = reader;
    const int fd = out_fd_;
    reader->thread = std::thread([reader, fd] {
        std::string buf;
        char chunk[4096];
        for (;;) {
            const ssize_t n = ::read(fd, chunk, sizeof chunk);
            if (n < 0 && errno == EINTR) continue;
            std::lock_guard<std::mutex> lk(reader->mu);
            if (n <= 0) {
                if (!buf.empty()) reader->lines.push_back(buf);
                reader->eof = true;
                reader->cv.notify_all();
                return;
            }
            pccl_spawn::splitLines(buf, chunk, static_cast<size_t>(n),
                                   [&](std::string_view line) { reader->lines.emplace_back(line); });
            reader->cv.notify_all();
        }
    });
}

std::optional<std::string> ChildProcess::readLine(double timeout_s) {
    auto reader = reader_;
    if (!reader) return std::nullopt;
    std::unique_lock<std::mutex> lk(reader->mu);
    if (!reader->cv.wait_for(lk, seconds(timeout_s), [&] { return !reader->lines.empty() || reader->eof; }))
        return std::nullopt;
    if (reader->lines.empty()) return std::nullopt;
    std::string line = reader->lines.front();
    reader->lines.pop_front();
    transcript_ += line;
    transcript_ += '\n';
    return line;
}

std::optional<std::string> ChildProcess::waitForLine(const std::string &prefix, double timeout_s) {
    const auto deadline = Clock::now() + seconds(timeout_s);
    for (;;) {
        const double left = std::chrono::duration<double>(deadline - Clock::now()).count();
        if (left <= 0) return std::nullopt;
        auto line = readLine(left);
        if (!line) return std::nullopt;
        if (line->rfind(prefix, 0) == 0) return line;
    }
}

void ChildProcess::signal(int sig) {
    if (!reaped_ && pid_ > 0) ::kill(pid_, sig);
}

std::optional<int> ChildProcess::wait(double timeout_s) {
    if (reaped_) return status_;
    auto st = pccl_spawn::waitExit(pid_, timeout_s);
    if (!st) return std::nullopt;
    reaped_ = true;
    status_ = *st;
    return st;
}

ChildProcess::~ChildProcess() {
    if (pid_ > 0 && !reaped_) {
        pccl_spawn::killAndReap(pid_);
        reaped_ = true;
    }
    auto reader = reader_;
    // The child is gone, so the pipe reaches EOF unless a grandchild inherited it (none does).
    if (reader && reader->thread.joinable()) reader->thread.join();
    if (out_fd_ >= 0) close(out_fd_);
}

// ---------------------------------------------------------------- DaemonMaster

DaemonMaster::DaemonMaster(const std::string &listen, const std::vector<std::string> &flags) {
    std::vector<std::string> argv{PCCL_MASTER_BIN, "--listen", listen};
    argv.insert(argv.end(), flags.begin(), flags.end());
    proc_ = std::make_unique<ChildProcess>(argv);
    auto line = proc_->waitForLine("pccl-master listening on", 15);
    PT_CHECK_MSG(line.has_value(), "pccl-master printed no 'pccl-master listening on' banner within 15 s; stdout: "
                                       << proc_->transcript());
    const size_t colon = line->rfind(':');
    PT_CHECK_MSG(colon != std::string::npos, "no port in banner: " << *line);
    const int port = std::atoi(line->c_str() + colon + 1);
    PT_CHECK_MSG(port > 0 && port < 65536, "bad port in banner: " << *line);
    port_ = static_cast<uint16_t>(port);
}

// ---------------------------------------------------------------- SyncPoint

void SyncPoint::arriveAndWait(double timeout_s) {
    std::unique_lock<std::mutex> lk(mu_);
    if (aborted_) throw PeerFailure("barrier aborted: another peer failed");
    const uint64_t gen = generation_;
    if (++arrived_ == parties_) {
        arrived_ = 0;
        ++generation_;
        cv_.notify_all();
        return;
    }
    if (!cv_.wait_for(lk, seconds(timeout_s), [&] { return generation_ != gen || aborted_; }))
        throw PeerFailure("barrier timed out after " + std::to_string(timeout_s) + " s");
    if (generation_ == gen) throw PeerFailure("barrier aborted: another peer failed");
}

bool SyncPoint::aborted() {
    std::lock_guard<std::mutex> lk(mu_);
    return aborted_;
}

void PeerCtx::waitFor(const std::function<bool()> &cond, const char *what, double timeout_s) const {
    const bool ok = waitUntil([&] { return cond() || sync->aborted(); }, timeout_s);
    if (sync->aborted()) throw PeerFailure(std::string("gave up waiting for ") + what + ": another peer failed");
    if (!ok) throw PeerFailure(std::string("timed out waiting for ") + what);
}

void SyncPoint::abort() {
    std::lock_guard<std::mutex> lk(mu_);
    aborted_ = true;
    cv_.notify_all();
}

// ---------------------------------------------------------------- PeerThreads

PeerThreads::PeerThreads(const ccoip_socket_address_t &master, ClusterOptions opts, std::function<void(PeerCtx &)> body)
    : opts_(std::move(opts)), master_(master), body_(std::move(body)), sync_(static_cast<int>(opts_.groups.size())) {
    if (opts_.expected_world < 0) opts_.expected_world = static_cast<int>(opts_.groups.size());
    PT_OK(nullptr, pcclInit());
    start_ = Clock::now();
    for (int r = 0; r < static_cast<int>(opts_.groups.size()); ++r) threads_.emplace_back([this, r] { run(r); });
}

void PeerThreads::run(int rank) {
    PeerCtx ctx;
    ctx.rank = rank;
    ctx.local_peers = static_cast<int>(opts_.groups.size());
    ctx.group = opts_.groups[static_cast<size_t>(rank)];
    ctx.sync = &sync_;
    auto record = [&](const std::string &what) {
        {
            std::lock_guard<std::mutex> lk(mu_);
            failures_.push_back("peer " + std::to_string(rank) + " (group " + std::to_string(ctx.group) + "): " + what);
        }
        sync_.abort();
    };
    try {
        ctx.comm = connectPeer(master_, ctx.group, opts_.expected_world, opts_.timeout_s, opts_.pool_size, opts_.deadlines);
        ++connected_;
        body_(ctx);
        // Leave together: a peer that finished early must not change the world the others still
        // inspect. If another peer failed, the barrier is aborted and everyone leaves at once.
        try {
            sync_.arriveAndWait(opts_.timeout_s);
        } catch (const PeerFailure &) {
        }
    } catch (const std::exception &e) {
        record(e.what());
    } catch (...) {
        record("unknown exception");
    }
    if (ctx.comm != nullptr && ctx.destroy_comm) {
        const pcclResult_t r = pcclDestroyCommunicator(ctx.comm);
        if (r != pcclSuccess) record(std::string("pcclDestroyCommunicator returned ") + resultName(r));
    }
    std::lock_guard<std::mutex> lk(mu_);
    ++finished_;
    cv_.notify_all();
}

bool PeerThreads::failed() const {
    std::lock_guard<std::mutex> lk(mu_);
    return !failures_.empty();
}

void PeerThreads::join(const std::function<void()> &on_timeout) {
    if (joined_) return;
    joined_ = true;
    const int n = static_cast<int>(threads_.size());
    bool in_time;
    {
        std::unique_lock<std::mutex> lk(mu_);
        in_time = cv_.wait_until(lk, start_ + seconds(opts_.timeout_s), [&] { return finished_ == n; });
    }
    if (!in_time) {
        sync_.abort();
        if (on_timeout) on_timeout();
        std::unique_lock<std::mutex> lk(mu_);
        if (!cv_.wait_for(lk, seconds(graceSeconds()), [&] { return finished_ == n; })) {
            for (const auto &f : failures_) reportFailure(f); // mu_ is held by lk
            hardExit("peer threads still running " + std::to_string(graceSeconds()) +
                     " s after the cluster deadline of " + std::to_string(opts_.timeout_s) + " s");
        }
    }
    for (auto &t : threads_) t.join();
    std::vector<std::string> failures;
    {
        std::lock_guard<std::mutex> lk(mu_);
        failures = failures_;
    }
    if (!in_time)
        reportFailure("the peer threads did not finish within the cluster deadline of " +
                      std::to_string(opts_.timeout_s) + " s (then released by on_timeout)");
    for (const auto &f : failures) reportFailure(f);
    if (!in_time || !failures.empty())
        throw PeerFailure(std::to_string(failures.size()) + " peer failure(s)" + (in_time ? "" : " and a timeout"));
}

PeerThreads::~PeerThreads() {
    if (joined_) return;
    joined_ = true;
    sync_.abort();
    if (on_abort_) on_abort_();
    const int n = static_cast<int>(threads_.size());
    std::unique_lock<std::mutex> lk(mu_);
    if (!cv_.wait_until(lk, start_ + seconds(opts_.timeout_s + graceSeconds()), [&] { return finished_ == n; })) {
        for (const auto &f : failures_) reportFailure(f);
        hardExit("peer threads never finished");
    }
    const std::vector<std::string> failures = failures_;
    lk.unlock();
    for (auto &t : threads_) t.join();
    // The controlling thread failed (its exception is in flight); say what the peers saw too.
    for (const auto &f : failures) reportFailure(f);
}

void runPeers(const ccoip_socket_address_t &master, const ClusterOptions &opts, std::function<void(PeerCtx &)> body,
              const std::function<void()> &on_timeout) {
    PeerThreads peers(master, opts, std::move(body));
    peers.join(on_timeout);
}

void runPeers(EmbeddedMaster &master, const ClusterOptions &opts, std::function<void(PeerCtx &)> body) {
    runPeers(master.address(), opts, std::move(body), [&master] { master.destroy(); });
}

void runPeers(DaemonMaster &master, const ClusterOptions &opts, std::function<void(PeerCtx &)> body) {
    runPeers(master.address(), opts, std::move(body), [&master] { master.process().signal(SIGKILL); });
}

// ---------------------------------------------------------------- runWithin / waitUntil

void runWithin(double timeout_s, const std::function<void()> &fn, const char *what,
               const std::function<void()> &on_timeout) {
    std::exception_ptr error;
    const bool in_time = boundedRun(timeout_s, fn, on_timeout, &error, what);
    std::string why;
    if (error) {
        try {
            std::rethrow_exception(error);
        } catch (const std::exception &e) {
            why = e.what();
        } catch (...) {
            why = "unknown exception";
        }
    }
    if (!in_time) {
        if (!why.empty()) reportFailure(std::string(what) + ": " + why);
        throw PeerFailure(std::string(what) + " did not finish within " + std::to_string(timeout_s) + " s");
    }
    if (error) throw PeerFailure(std::string(what) + ": " + why);
}

// ---------------------------------------------------------------- isolation

void reportFailure(const std::string &message) {
    const std::string msg = contextPrefix() + message;
    if (g_report_fd >= 0) {
        g_reported = true;
        const uint32_t n = static_cast<uint32_t>(msg.size());
        writeAll(g_report_fd, &n, sizeof n);
        writeAll(g_report_fd, msg.data(), msg.size());
        return;
    }
    FAIL_CHECK(msg);
}

void isolated(double timeout_s, const std::function<void()> &fn) {
    std::fflush(stdout);
    std::fflush(stderr);
    std::cout.flush();
    std::cerr.flush();
    int fds[2];
    REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
    const pid_t parent = getpid();
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        // Let a crash kill the copy (the parent reports the signal) instead of Catch's handlers.
        for (int sig : {SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL, SIGTERM, SIGINT}) std::signal(sig, SIG_DFL);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(126);
        ::close(fds[0]);
        g_report_fd = fds[1];
        try {
            fn();
        } catch (const std::exception &e) {
            reportFailure(e.what());
        } catch (...) {
            reportFailure("unknown exception");
        }
        std::fflush(stdout);
        std::fflush(stderr);
        _exit(g_reported ? 1 : 0); // no atexit handlers, no Catch teardown in the copy
    }
    ::close(fds[1]);
    std::vector<std::string> messages;
    std::string buf;
    const bool finished = pccl_spawn::readUntilEof(fds[0], timeout_s, [&](const char *data, size_t n) {
        buf.append(data, n);
        while (buf.size() >= 4) {
            uint32_t len;
            std::memcpy(&len, buf.data(), 4);
            if (buf.size() < 4 + static_cast<size_t>(len)) break;
            messages.push_back(buf.substr(4, len));
            buf.erase(0, 4 + len);
        }
    });
    ::close(fds[0]);
    const bool timed_out = !finished;
    const int status = timed_out ? pccl_spawn::killAndReap(pid) : pccl_spawn::reapBlocking(pid);
    for (const auto &m : messages) FAIL_CHECK(m);
    if (timed_out) {
        FAIL("the test did not finish within " << timeout_s << " s; its process was killed");
    } else if (WIFSIGNALED(status)) {
        FAIL("the test process crashed with signal " << WTERMSIG(status) << " (" << strsignal(WTERMSIG(status)) << ")");
    } else if (WEXITSTATUS(status) != 0 && messages.empty()) {
        FAIL("the test process exited with status " << WEXITSTATUS(status) << " without a reason");
    } else if (messages.empty()) {
        SUCCEED("isolated test passed");
    }
}

bool waitUntil(const std::function<bool()> &cond, double timeout_s) {
    const auto deadline = Clock::now() + seconds(timeout_s);
    while (!cond()) {
        if (Clock::now() >= deadline) return cond();
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return true;
}

} // namespace pccl_test
