// pccl-bench: child process management (see process.hpp).
#include "process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
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
    std::vector<char *> cargv;
    for (const auto &a : argv) cargv.push_back(const_cast<char *>(a.c_str()));
    cargv.push_back(nullptr);

    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        err = std::string("pipe2: ") + std::strerror(errno);
        return c;
    }
    const int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid < 0) {
        err = std::string("fork: ") + std::strerror(errno);
        close(fds[0]);
        close(fds[1]);
        if (devnull >= 0) close(devnull);
        return c;
    }
    if (pid == 0) {
        // Child of a multi-threaded process: async-signal-safe calls only until exec.
        if (devnull >= 0) {
            dup2(devnull, STDIN_FILENO);
            if (quiet_stderr) dup2(devnull, STDERR_FILENO);
        }
        dup2(fds[1], STDOUT_FILENO);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        execv(cargv[0], cargv.data());
        static const char msg[] = "pccl-bench: exec failed\n";
        ssize_t ignored = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)ignored;
        _exit(127);
    }
    registerPid(pid);
    close(fds[1]);
    if (devnull >= 0) close(devnull);
    fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    c.pid = pid;
    c.fd = fds[0];
    return c;
}

namespace {

void reap(Child &c) {
    if (c.pid <= 0 || c.exited) return;
    int status = 0;
    const pid_t r = waitpid(c.pid, &status, WNOHANG);
    if (r == c.pid) {
        c.exited = true;
        c.status = status;
        unregisterPid(c.pid);
    } else if (r < 0 && errno == ECHILD) {
        c.exited = true;
        c.status = 0;
        unregisterPid(c.pid);
    }
}

void drain(Child &c, size_t index, const std::function<void(size_t, std::string_view)> &on_line) {
    char chunk[65536];
    while (c.fd >= 0) {
        const ssize_t n = read(c.fd, chunk, sizeof chunk);
        if (n > 0) {
            c.buf.append(chunk, size_t(n));
            size_t start = 0;
            for (size_t nl; (nl = c.buf.find('\n', start)) != std::string::npos; start = nl + 1)
                on_line(index, std::string_view(c.buf).substr(start, nl - start));
            c.buf.erase(0, start);
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
    if (c.pid > 0 && !c.exited) {
        reap(c);
        if (!c.exited) {
            kill(c.pid, first_signal);
            const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(grace_s);
            while (!c.exited && std::chrono::steady_clock::now() < deadline) {
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
                reap(c);
            }
            if (!c.exited) {
                kill(c.pid, SIGKILL);
                const auto hard = std::chrono::steady_clock::now() + std::chrono::seconds(10);
                while (!c.exited && std::chrono::steady_clock::now() < hard) {
                    std::this_thread::sleep_for(std::chrono::milliseconds(10));
                    reap(c);
                }
            }
        }
    }
    if (c.fd >= 0) {
        close(c.fd);
        c.fd = -1;
    }
}

std::string describeStatus(int status) {
    if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status))
        return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
    return "status " + std::to_string(status);
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
