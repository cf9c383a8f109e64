// A pccl-master daemon as a restartable child process (see master_process.hpp).
#include "master_process.hpp"

namespace bench {

Child spawnMaster(const std::string &bin, uint16_t port, const std::string &log_path,
                  const std::vector<std::string> &extra, const std::string &name, std::string &err) {
    std::vector<std::string> argv = {"/bin/sh", "-c", "log=$1; shift; exec \"$@\" 2>>\"$log\"", "sh", log_path, bin,
                                     "--listen", "127.0.0.1:" + std::to_string(port)};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return spawnChild(argv, name, false, err);
}

std::string listeningAddress(std::string_view line) {
    constexpr std::string_view marker = "pccl-master listening on ";
    if (line.substr(0, marker.size()) != marker) return {};
    return std::string(line.substr(marker.size()));
}

}  // namespace bench
