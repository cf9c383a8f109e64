// The one process-spawning helper of tests, bench and stress (see spawn.h).
#include "support/spawn.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

namespace pccl_spawn {
namespace {

using Clock = std::chrono::steady_clock;

std::string failed(const char *call) { return std::string(call) + ": " + std::strerror(errno); }

// The child's side, between fork and exec: async-signal-safe calls only.
[[noreturn]] void execChild(char *const *argv, const SpawnOptions &o, int outFd, int devnull, pid_t parent) {
    if (o.stdinNull && devnull >= 0) ::dup2(devnull, STDIN_FILENO);
    ::dup2(outFd, STDOUT_FILENO);
    if (o.err == Stderr::Stdout) ::dup2(outFd, STDERR_FILENO);
    if (o.err == Stderr::Null && devnull >= 0) ::dup2(devnull, STDERR_FILENO);
    if (o.dieWithParent) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(126);
    }
    ::execv(argv[0], argv);
    if (o.execFailed) {
        ssize_t ignored = ::write(STDERR_FILENO, o.execFailed, std::strlen(o.execFailed));
        (void)ignored;
    }
    ::_exit(127);
}

} // namespace

Spawned spawn(const std::vector<std::string> &argv, const SpawnOptions &options, std::string *err) {
    Spawned s;
    if (argv.empty()) {
        *err = "spawn: no program";
        return s;
    }
    std::vector<char *> cargv;
    for (const auto &a : argv) cargv.push_back(const_cast<char *>(a.c_str()));
    cargv.push_back(nullptr);
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
        *err = failed("pipe2");
        return s;
    }
    const bool needNull = options.stdinNull || options.err == Stderr::Null;
    const int devnull = needNull ? ::open("/dev/null", O_RDWR | O_CLOEXEC) : -1;
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid == 0) execChild(cargv.data(), options, fds[1], devnull, parent);
    if (pid < 0) *err = failed("fork");
    ::close(fds[1]);
    if (devnull >= 0) ::close(devnull);
    if (pid < 0) {
        ::close(fds[0]);
        return s;
    }
    if (options.nonBlocking) ::fcntl(fds[0], F_SETFL, ::fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    s.pid = pid;
    s.out = fds[0];
    return s;
}

std::optional<int> tryReap(pid_t pid) {
    for (;;) {
        int status = 0;
        const pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid) return status;
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno == ECHILD) return 0;
        return std::nullopt;
    }
}

std::optional<int> waitExit(pid_t pid, double timeout_s) {
    const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
    for (;;) {
        if (auto status = tryReap(pid)) return status;
        if (Clock::now() >= deadline) return std::nullopt;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
}

int reapBlocking(pid_t pid) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return status;
}

int killAndReap(pid_t pid) {
    ::kill(pid, SIGKILL);
    return reapBlocking(pid);
}

bool readUntilEof(int fd, double timeout_s, const std::function<void(const char *, size_t)> &on_data) {
    const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0) return false;
        pollfd p{fd, POLLIN, 0};
        const int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1000)));
        if (n <= 0) continue;  // EINTR or nothing yet: the deadline decides
        char chunk[4096];
        const ssize_t r = ::read(fd, chunk, sizeof chunk);
        if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (r <= 0) return true;
        on_data(chunk, static_cast<size_t>(r));
    }
}

void splitLines(std::string &buf, const char *data, size_t n, const std::function<void(std::string_view)> &on_line) {
    buf.append(data, n);
    size_t start = 0;
    for (size_t nl; (nl = buf.find('\n', start)) != std::string::npos; start = nl + 1)
        on_line(std::string_view(buf).substr(start, nl - start));
    buf.erase(0, start);
}

std::string describeStatus(int status) {
    if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status))
        return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
    return "status " + std::to_string(status);
}

} // namespace pccl_spawn
