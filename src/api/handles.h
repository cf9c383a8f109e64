// The C handles: small structs wrapping the C++ objects, with a magic value checked on entry so
// a stale or foreign pointer becomes pcclInvalidArgument rather than a crash (best effort).
#pragma once
#include <pccl.h>

#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "master/http_status.h"
#include "master/server.h"
#include "peer/communicator.h"
#include "util/status.h"

namespace pccl::api {
inline constexpr uint64_t kCommMagic = 0x70636c436f6d6d21ull;
inline constexpr uint64_t kMasterMagic = 0x70636c4d61737421ull;
inline constexpr uint64_t kDeadMagic = 0xdeaddeaddeaddeadull;
} // namespace pccl::api

struct pcclComm_t {
    uint64_t magic = pccl::api::kCommMagic;
    std::unique_ptr<pccl::peer::Communicator> rep;
    mutable std::mutex errorMu;
    mutable std::string lastError;
};

struct pcclMasterInstanceState_t {
    uint64_t magic = pccl::api::kMasterMagic;
    // The status server, when one was asked for (http.listen); started by pcclRunMaster after
    // the server bound. options: to build a fresh server and status server when that fails.
    pccl::master::HttpConfig http;
    std::shared_ptr<pccl::master::HttpStatus> status;
    pccl::master::ServerOptions options;
    std::unique_ptr<pccl::master::Server> server;
    std::thread thread;
    bool running = false;
    bool ran = false;
};
