// The master's HTTP status server (docs/observability.md): GET / (the status page), GET
// /api/status (JSON) and GET /metrics (Prometheus text format 0.0.4), served with cpp-httplib on
// threads of its own. The master's loop hands it a RunView through publish() (a pointer swap
// under a mutex); handlers render the latest view and never touch Membership, so a slow or
// hostile HTTP client can never delay the master's loop, only other HTTP clients.
//
// Part of libpccl when built with cpp-httplib (CMake option PCCL_HTTP): pccl-master and embedded
// masters (pcclCreateMasterEx, Python MasterNode) start it the same way, with startStatusServer.
// Without it (http_status_off.cpp) start() fails with the reason.
#pragma once
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "master/server.h"
#include "util/status.h"

namespace httplib {
class Server;
}

namespace pccl::master {

struct HttpOptions {
    std::string listen;  // "HOST:PORT" ("PORT" or ":PORT": 127.0.0.1); port 0 = any free port
    // Non-empty: every request must carry "Authorization: Bearer <token>" (else 401).
    std::string token;
    // The run has a secret: a bind to a non-loopback address is refused unless token is set.
    bool runHasSecret = false;
};

// Reads a bearer token from the first line of a file (whitespace trimmed); errors when the file
// cannot be read or the token is empty.
Status readTokenFile(const std::string &path, std::string *token);

// Whether and where a master serves its status: pccl-master's --http and --http-token-file,
// pcclMasterCreateParamsEx_t's http_listen and http_token_file, or the environment.
struct HttpConfig {
    std::string listen;     // empty: no status server
    std::string tokenFile;  // empty: no token (see HttpOptions::token)
    // PCCL_MASTER_HTTP and PCCL_MASTER_HTTP_TOKEN_FILE (unset or empty: none).
    static HttpConfig fromEnvironment();
};

class HttpStatus : public StatusSink {
public:
    HttpStatus();
    ~HttpStatus() override;  // stop()
    HttpStatus(const HttpStatus &) = delete;
    HttpStatus &operator=(const HttpStatus &) = delete;

    // Binds and starts serving on a thread of its own; fails (pcclInvalidArgument) on a bad
    // address, a refused bind (see HttpOptions::runHasSecret) or an address in use.
    Status start(const HttpOptions &options);
    uint16_t port() const { return port_; }
    // After start(): "http://HOST:PORT/" with the bound port (HOST as given; IPv6 in brackets).
    const std::string &url() const { return url_; }
    void stop();  // any thread but the handlers'; idempotent

    void publish(std::shared_ptr<const RunView> view) override;

private:
    std::shared_ptr<const RunView> latest() const;
    void routes();

    std::unique_ptr<httplib::Server> server_;  // null in a build without cpp-httplib
    std::thread thread_;
    std::atomic<bool> finished_{false};
    uint16_t port_ = 0;
    std::string url_;
    std::string token_;
    mutable std::mutex mutex_;
    std::shared_ptr<const RunView> view_;  // guarded by mutex_
};

// Starts `http` as `config` asks, for a master that has bound (runHasSecret: Server::hasSecret()):
// reads the token file, applies the bind rule of HttpOptions. Nothing to do (ok) when
// config.listen is empty. The one way pccl-master and embedded masters start their status server.
Status startStatusServer(HttpStatus &http, const HttpConfig &config, bool runHasSecret);

} // namespace pccl::master
