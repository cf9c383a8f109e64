// A pccl-master daemon as a child process that is killed, stopped and restarted on the same
// port (pccl-soak's master faults, pccl-fault-bench's master scenarios; docs/master_recovery.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "process.hpp"

namespace bench {

// Starts `bin --listen 127.0.0.1:port` plus extra, its stderr appended to log_path (through
// /bin/sh, which execs it: the child's pid is the master's). Its stdout is the Child's pipe,
// where it prints "pccl-master listening on ..." and one status line per membership change.
Child spawnMaster(const std::string &bin, uint16_t port, const std::string &log_path,
                  const std::vector<std::string> &extra, const std::string &name, std::string &err);

// "pccl-master listening on HOST:PORT" -> "HOST:PORT"; empty for any other line.
std::string listeningAddress(std::string_view line);

}  // namespace bench
