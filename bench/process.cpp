// pccl-bench: child process management (see process.hpp).
#include "process.hpp"

#include "support/spawn.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

namespace bench {
namespace {

// PIDs of live children, readable from the signal handler (lock-free atomics only).
constexpr int kMaxChildren = 512;
std::atomic<pid_t> g_pids[kMaxChildren];
std::atomic<bool> g_leaked{false};
std::atomic<bool> g_interrupted{false};

void registerPid(pid_t pid) {
    for (auto &slot : g_pids) {
        pid_t expected = 0;
        if (slot.compare_exchange_strong(expected, pid)) return;
    }
}

void unregisterPid(pid_t pid) {
    for (auto &slot : g_pids) {
        pid_t expected = pid;
        if (slot.compare_exchange_strong(expected, 0)) return;
    }
}

void onFatalSignal(int sig) {
    g_interrupted.store(true);
    for (auto &slot : g_pids) {
        const pid_t pid = slot.load();
        if (pid > 0) kill(pid, SIGKILL);
    }
    static const char msg[] = "\npccl-bench: interrupted; killed the worker processes\n";
    ssize_t ignored = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)ignored;
    _exit(128 + sig);
}

}  // namespace

void installSignalHandlers() {
    struct sigaction sa {};
    sa.sa_handler = onFatalSignal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGHUP, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);
}

bool interrupted() { return g_interrupted.load(); }

Child spawnChild(const std::vector<std::string> &argv, const std::string &name, bool quiet_stderr, std::string &err) {
    Child c;
    c.name = name;
    pccl_spawn::SpawnOptions options;
    options.stdinNull = true;
    options.err = quiet_stderr ? pccl_spawn::Stderr::Null : pccl_spawn::Stderr::Inherit;
    options.nonBlocking = true;
    options.execFailed = "pccl-bench: exec failed\n";
    const pccl_spawn::Spawned s = pccl_spawn::spawn(argv, options, &err);
    if (s.pid < 0) return c;
    registerPid(s.pid);
    c.pid = s.pid;
    c.fd = s.out;
    return c;
}

namespace {

void reap(Child &c) {
    if (c.pid <= 0 || c.exited) return;
    if (auto status = pccl_spawn::tryReap(c.pid)) {
        c.exited = true;
        c.status = *status;
        unregisterPid(c.pid);
    }
}

void drain(Child &c, size_t index, const std::function<void(size_t, std::string_view)> &on_line) {
    char chunk[65536];
    while (c.fd >= 0) {
        const ssize_t n = read(c.fd, chunk, sizeof chunk);
        if (n > 0) {
            pccl_spawn::splitLines(c.buf, chunk, size_t(n), [&](std::string_view line) { on_line(index, line); });
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n < 0 && errno == EINTR) continue;
        // EOF or error
        if (!c.buf.empty()) on_line(index, c.buf);
        c.buf.clear();
        close(c.fd);
        c.fd = -1;
    }
}

}  // namespace

void pumpChildren(std::vector<Child> &children, int timeout_ms,
                  const std::function<void(size_t, std::string_view)> &on_line) {
    std::vector<pollfd> pfds;
    std::vector<size_t> idx;
    for (size_t i = 0; i < children.size(); ++i) {
        if (children[i].fd >= 0) {
            pfds.push_back({children[i].fd, POLLIN, 0});
            idx.push_back(i);
        }
    }
    if (pfds.empty()) {
        // Nothing to read: wait a little for exits instead of spinning.
        bool all = true;
        for (auto &c : children) {
            reap(c);
            all = all && (c.exited || c.pid <= 0);
        }
        if (!all) std::this_thread::sleep_for(std::chrono::milliseconds(std::min(timeout_ms, 20)));
    } else {
        const int r = poll(pfds.data(), nfds_t(pfds.size()), timeout_ms);
        if (r > 0) {
            for (size_t k = 0; k < pfds.size(); ++k)
                if (pfds[k].revents) drain(children[idx[k]], idx[k], on_line);
        }
    }
    for (auto &c : children) reap(c);
}

void stopChild(Child &c, int first_signal, double grace_s) {
    reap(c);
    if (c.pid > 0 && !c.exited) {
        kill(c.pid, first_signal);
        std::optional<int> status = pccl_spawn::waitExit(c.pid, grace_s);
        if (!status) {
            kill(c.pid, SIGKILL);
            status = pccl_spawn::waitExit(c.pid, 10);
        }
        if (status) {
            c.exited = true;
            c.status = *status;
            unregisterPid(c.pid);
        }
    }
    if (c.fd >= 0) {
        close(c.fd);
        c.fd = -1;
    }
}

bool allExited(const std::vector<Child> &children) {
    for (const auto &c : children)
        if (c.pid > 0 && !c.exited) return false;
    return true;
}

bool callWithDeadline(std::function<void()> fn, double seconds) {
    struct State {
        std::mutex m;
        std::condition_variable cv;
        bool done = false;
    };
    auto st = std::make_shared<State>();
    std::thread([st, fn = std::move(fn)] {
        fn();
        std::lock_guard<std::mutex> lk(st->m);
        st->done = true;
        st->cv.notify_all();
    }).detach();
    std::unique_lock<std::mutex> lk(st->m);
    const bool ok = st->cv.wait_for(lk, std::chrono::duration<double>(seconds), [&] { return st->done; });
    if (!ok) g_leaked.store(true);
    return ok;
}

bool leakedThreads() { return g_leaked.load(); }

}  // namespace bench
