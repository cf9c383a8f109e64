// The one way the tests, the benchmarks and the soak start a child process: fork + exec with the
// child's stdout on a pipe, and the bounded waits on it. Plain POSIX, no library code: the static
// library pccl_spawn (top-level CMakeLists.txt) links into pccl_tests, pccl-bench,
// pccl-fault-bench and pccl-soak alike.
//
// Between fork and exec the child calls only async-signal-safe functions, so it may be started
// from a multi-threaded process.
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pccl_spawn {

enum class Stderr {
    Inherit,  // the parent's stderr
    Stdout,   // into the same pipe as stdout
    Null,     // /dev/null
};

struct SpawnOptions {
    bool stdinNull = false;  // stdin from /dev/null (else the parent's)
    Stderr err = Stderr::Inherit;
    // SIGKILL when the parent dies (PR_SET_PDEATHSIG). It fires when the *thread* that forked
    // exits, so spawn such a child on a thread that outlives it (the main thread).
    bool dieWithParent = true;
    bool nonBlocking = false;           // the read end of the pipe is O_NONBLOCK
    const char *execFailed = nullptr;   // written to the child's stderr when exec fails
};

struct Spawned {
    pid_t pid = -1;  // -1: not started (see the error)
    int out = -1;    // read end of the child's stdout (O_CLOEXEC); the caller closes it
};

// Starts argv[0] (a path: no PATH search) with argv. On failure returns pid -1 and sets *err to
// the failed call and errno ("fork: Resource temporarily unavailable"). A failed exec is the
// child's exit status 127; a parent gone before the child armed its death signal, 126.
Spawned spawn(const std::vector<std::string> &argv, const SpawnOptions &options, std::string *err);

// waitpid(pid, WNOHANG) retried on EINTR: the raw status once the child exited, nullopt while
// it runs. A pid that is no child of ours (already reaped elsewhere) reads as exited with 0.
std::optional<int> tryReap(pid_t pid);
// Polls tryReap every 5 ms until the child exits or timeout_s passes (nullopt then).
std::optional<int> waitExit(pid_t pid, double timeout_s);
// A blocking waitpid, retried on EINTR: the raw status.
int reapBlocking(pid_t pid);
// SIGKILL, then a blocking waitpid: for children past their deadline. Returns the raw status.
int killAndReap(pid_t pid);

// Reads fd until EOF, passing every chunk to on_data; gives up when timeout_s passes. Returns
// true at EOF, false at the deadline. The fd stays open.
bool readUntilEof(int fd, double timeout_s, const std::function<void(const char *, size_t)> &on_data);
// Appends data to buf and calls on_line for every complete line (without '\n'); the partial
// rest stays in buf.
void splitLines(std::string &buf, const char *data, size_t n, const std::function<void(std::string_view)> &on_line);

// "exit 0", "exit 3", "killed by signal 9 (Killed)".
std::string describeStatus(int status);

}  // namespace pccl_spawn
