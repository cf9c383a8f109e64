// pccl-bench: child processes with piped stdout, line reading with deadlines, and cleanup, over
// the one spawning helper of tests, bench and stress (tests/support/spawn.h).
//
// Every child is registered until reaped; a fatal signal to the driver (SIGINT, SIGTERM,
// SIGHUP) kills the registered children by PID and exits. Children also get
// PR_SET_PDEATHSIG=SIGKILL, so they die with the driver even if it is SIGKILLed.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "support/spawn.h"

namespace bench {

struct Child {
    pid_t pid = -1;
    int fd = -1;      // read end of the child's stdout; -1 after EOF
    std::string buf;  // partial line
    bool exited = false;
    int status = 0;   // waitpid status once exited
    std::string name; // for messages ("rank 2", "gloo")
};

// Installs the signal handlers (once). Safe to call more than once.
void installSignalHandlers();

// Starts argv[0] (a path) with stdin from /dev/null, stdout to a pipe, stderr inherited (or
// /dev/null with quiet_stderr). Returns a Child with pid -1 and sets err on failure.
Child spawnChild(const std::vector<std::string> &argv, const std::string &name, bool quiet_stderr, std::string &err);

// Waits up to timeout_ms for output of any child and calls on_line(index, line) for every
// complete line (and for a trailing partial line at EOF). Reaps exited children without
// blocking. Returns after the wait or as soon as something was read or reaped.
void pumpChildren(std::vector<Child> &children, int timeout_ms,
                  const std::function<void(size_t, std::string_view)> &on_line);

// Sends `first_signal` to the child unless it exited, waits up to grace_s for it to exit,
// then SIGKILLs it and reaps it (bounded wait). Closes the pipe. Idempotent.
void stopChild(Child &c, int first_signal, double grace_s);

// "exit 0", "exit 3", "killed by signal 9 (Killed)".
using pccl_spawn::describeStatus;

bool allExited(const std::vector<Child> &children);

// Runs fn on a helper thread and waits up to seconds for it. On timeout the thread is
// left running (detached) and markLeaked() is set: the process must then end with _Exit.
bool callWithDeadline(std::function<void()> fn, double seconds);
bool leakedThreads();

// Set by the signal handler path before exiting; polled by long loops.
bool interrupted();

}  // namespace bench
