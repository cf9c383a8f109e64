// pccl-master: the coordinator daemon. Parse flags -> build options -> serve -> exit code.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "master/http_status.h"
#include "master/server.h"
#ifdef PCCL_HAVE_ETCD
#include "master/etcd_election.h"
#endif
#include "transport/address.h"
#include "util/log.h"

namespace {

void usage(FILE *out) {
    std::fprintf(out,
                 "usage: pccl-master [--listen HOST:PORT] [--log-level LEVEL] [--heartbeat-timeout-ms MS]\n"
                 "                   [--vote-timeout-ms MS] [--secret-file PATH] [--require-secret]\n"
                 "                   [--handshake-timeout-ms MS] [--max-heartbeat-timeout-ms MS]\n"
                 "                   [--max-connections N] [--max-connections-per-address N]\n"
                 "                   [--http HOST:PORT] [--http-token-file PATH] [--end-run-on-exit] [--epoch N]\n"
                 "                   [--etcd http://HOST:PORT --run-id NAME [--advertise HOST:PORT] [--lease-ttl-s S]]\n"
                 "  --listen                address to listen on (default 0.0.0.0:48148; IPv6: [::]:48148; port 0 = any)\n"
                 "  --log-level             trace|debug|info|warn|error|off on stderr (default info; env PCCL_LOG_LEVEL)\n"
                 "  --heartbeat-timeout-ms  remove a peer silent this long, unless it asked for another deadline\n"
                 "                          (default 5000; env PCCL_HEARTBEAT_TIMEOUT_MS)\n"
                 "  --vote-timeout-ms       settle a vote or collective start still open after this long: remove\n"
                 "                          the laggards if the waiting peers outnumber them, else fail the\n"
                 "                          waiting calls with pcclTimeout (default 60000, 0 = never; env\n"
                 "                          PCCL_VOTE_TIMEOUT_MS)\n"
                 "  --secret-file           the run secret, in a file only its owner may read (else env\n"
                 "                          PCCL_SECRET or PCCL_SECRET_FILE); every peer must hold the same secret\n"
                 "  --require-secret        refuse to start without a run secret (docs/security.md)\n"
                 "  --handshake-timeout-ms  close a connection whose Hello was not accepted this long after it\n"
                 "                          connected (default 5000; env PCCL_HANDSHAKE_TIMEOUT_MS)\n"
                 "  --max-heartbeat-timeout-ms\n"
                 "                          cap on the heartbeat deadline a peer may ask for (default 60000;\n"
                 "                          env PCCL_MAX_HEARTBEAT_TIMEOUT_MS)\n"
                 "  --max-connections       open connections kept in total; more are closed at once\n"
                 "                          (default 4096; env PCCL_MAX_CONNECTIONS)\n"
                 "  --max-connections-per-address\n"
                 "                          open connections kept from one source IP address (default 64;\n"
                 "                          env PCCL_MAX_CONNECTIONS_PER_ADDRESS)\n"
                 "  --http                  serve the status page, /api/status and /metrics on this address (off by\n"
                 "                          default; env PCCL_MASTER_HTTP; a bare PORT binds 127.0.0.1). With a run\n"
                 "                          secret a non-loopback address needs --http-token-file (docs/observability.md)\n"
                 "  --http-token-file       every HTTP request must carry 'Authorization: Bearer <first line of PATH>'\n"
                 "                          (env PCCL_MASTER_HTTP_TOKEN_FILE)\n"
                 "  --end-run-on-exit       on SIGINT/SIGTERM tell the peers the run has ended (they fail at once);\n"
                 "                          by default they keep the run and wait for a restarted master\n"
                 "                          (docs/master_recovery.md)\n"
                 "  --epoch                 this master's first epoch (default 1; a restarted master moves past\n"
                 "                          the epoch its peers report)\n"
                 "  --etcd                  a standby master: campaign through this etcd (v3 HTTP gateway) for the\n"
                 "                          leadership of run --run-id; only the leader serves peers, the others\n"
                 "                          send them to it. Peers list every master (PCCL_MASTER_ADDRESSES); a\n"
                 "                          killed leader's peers all-reduce again 3.1-3.5 s later (measured,\n"
                 "                          default TTL; docs/master_recovery.md, Standby masters)\n"
                 "  --run-id                the run's name in etcd (key /pccl/NAME/leader)\n"
                 "  --advertise             the address peers reach this master at (default: --listen, which must\n"
                 "                          then name a host)\n"
                 "  --lease-ttl-s           the leadership lease's TTL in seconds (default 3; etcd's minimum is 2)\n"
                 "Prints one status line per membership change; SIGINT/SIGTERM stop it cleanly.\n");
}

// Starts the status server when --http (or PCCL_MASTER_HTTP) asks for it; false on failure.
bool startHttp(const pccl::master::HttpConfig &config, bool hasSecret, pccl::master::HttpStatus *http) {
    if (config.listen.empty()) return true;
    if (auto st = pccl::master::startStatusServer(*http, config, hasSecret); !st.ok()) {
        std::fprintf(stderr, "pccl-master: %s\n", st.message().c_str());
        return false;
    }
    std::printf("pccl-master status page on %s\n", http->url().c_str());
    return true;
}

} // namespace

int main(int argc, char **argv) {
    std::string listen = "0.0.0.0:48148";
    auto http = pccl::master::HttpConfig::fromEnvironment();
    bool endRun = false;  // --end-run-on-exit
    std::string etcd, runId, advertise;
    uint64_t leaseTtlS = 3;
    auto options = pccl::master::ServerOptions::fromEnvironment();
    auto millis = [](const char *flag, const char *text, uint64_t lo, uint64_t *out) {
        char *end = nullptr;
        const unsigned long long v = std::strtoull(text, &end, 10);
        if (!*text || *end || v < lo || v > 24ull * 3600000) {
            std::fprintf(stderr, "pccl-master: %s needs milliseconds in %llu..86400000, got '%s'\n", flag,
                         static_cast<unsigned long long>(lo), text);
            std::exit(2);
        }
        *out = v;
    };
    auto count = [](const char *flag, const char *text, size_t *out) {
        char *end = nullptr;
        const unsigned long long v = std::strtoull(text, &end, 10);
        if (!*text || *end || v < 1 || v > pccl::master::kMaxConnectionsLimit) {
            std::fprintf(stderr, "pccl-master: %s needs a count in 1..%llu, got '%s'\n", flag,
                         static_cast<unsigned long long>(pccl::master::kMaxConnectionsLimit), text);
            std::exit(2);
        }
        *out = v;
    };
    pccl::log::Level level = pccl::log::Level::Info;
    if (const char *env = std::getenv("PCCL_LOG_LEVEL")) pccl::log::parseLevel(env, &level);
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        auto value = [&](const char *name) -> const char * {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "pccl-master: %s needs a value\n", name);
                std::exit(2);
            }
            return argv[++i];
        };
        if (arg == "--listen" || arg == "--listen-address") {
            listen = value("--listen");
        } else if (arg == "--log-level") {
            if (!pccl::log::parseLevel(value("--log-level"), &level)) {
                std::fprintf(stderr, "pccl-master: unknown log level '%s'\n", argv[i]);
                return 2;
            }
        } else if (arg == "--heartbeat-timeout-ms") {
            millis("--heartbeat-timeout-ms", value("--heartbeat-timeout-ms"), 100, &options.membership.heartbeatTimeoutMs);
        } else if (arg == "--vote-timeout-ms") {
            millis("--vote-timeout-ms", value("--vote-timeout-ms"), 0, &options.membership.voteTimeoutMs);
        } else if (arg == "--secret-file") {
            options.secretFile = value("--secret-file");
        } else if (arg == "--require-secret") {
            options.requireSecret = true;
        } else if (arg == "--handshake-timeout-ms") {
            millis("--handshake-timeout-ms", value("--handshake-timeout-ms"), 100, &options.membership.handshakeTimeoutMs);
        } else if (arg == "--max-heartbeat-timeout-ms") {
            millis("--max-heartbeat-timeout-ms", value("--max-heartbeat-timeout-ms"), 100,
                   &options.membership.maxHeartbeatTimeoutMs);
        } else if (arg == "--max-connections") {
            count("--max-connections", value("--max-connections"), &options.maxConnections);
        } else if (arg == "--max-connections-per-address") {
            count("--max-connections-per-address", value("--max-connections-per-address"),
                  &options.maxConnectionsPerAddress);
        } else if (arg == "--end-run-on-exit") {
            endRun = true;
        } else if (arg == "--epoch") {
            count("--epoch", value("--epoch"), &options.membership.masterEpoch);
        } else if (arg == "--http") {
            http.listen = value("--http");
        } else if (arg == "--http-token-file") {
            http.tokenFile = value("--http-token-file");
        } else if (arg == "--etcd") {
            etcd = value("--etcd");
        } else if (arg == "--run-id") {
            runId = value("--run-id");
        } else if (arg == "--advertise") {
            advertise = value("--advertise");
        } else if (arg == "--lease-ttl-s") {
            size_t ttl = 0;
            count("--lease-ttl-s", value("--lease-ttl-s"), &ttl);
            leaseTtlS = ttl;
        } else if (arg == "--help" || arg == "-h") {
            usage(stdout);
            return 0;
        } else {
            std::fprintf(stderr, "pccl-master: unknown argument '%s'\n", arg.c_str());
            usage(stderr);
            return 2;
        }
    }
    pccl::log::setLevel(level);
    if (etcd.empty() != runId.empty() || (etcd.empty() && !advertise.empty())) {
        std::fprintf(stderr, "pccl-master: --etcd and --run-id go together (--advertise needs them)\n");
        return 2;
    }
#ifndef PCCL_HAVE_ETCD
    if (!etcd.empty()) {
        std::fprintf(stderr, "pccl-master: --etcd: this build has no etcd client (built with -DPCCL_HTTP=OFF or -DPCCL_ETCD=OFF)\n");
        return 2;
    }
#endif
    auto addr = pccl::transport::parseSocketAddress(listen, 48148);
    if (!addr.ok()) {
        std::fprintf(stderr, "pccl-master: %s\n", addr.status().message().c_str());
        return 2;
    }
    options.listen = *addr;
    options.printStatus = true;
    options.handleSignals = true;
    options.endRunOnStop = endRun;
    std::shared_ptr<pccl::master::HttpStatus> status;
    if (!http.listen.empty()) options.status = status = std::make_shared<pccl::master::HttpStatus>();
    options.membership.standby = !etcd.empty();
    pccl::master::Server server(options);
    if (auto st = server.bind(); !st.ok()) {
        std::fprintf(stderr, "pccl-master: %s\n", st.message().c_str());
        return 1;
    }
    auto shown = options.listen;
    shown.port = server.port();
    std::printf("pccl-master listening on %s\n", shown.str().c_str());
    if (!startHttp(http, server.hasSecret(), status.get())) return 1;
#ifdef PCCL_HAVE_ETCD
    std::unique_ptr<pccl::master::EtcdElection> election;
    if (!etcd.empty()) {
        pccl::master::EtcdElectionOptions eo{etcd, runId, advertise.empty() ? shown.str() : advertise,
                                             static_cast<int64_t>(leaseTtlS)};
        election = std::make_unique<pccl::master::EtcdElection>(
            eo, [&server](const pccl::master::Leadership &l) { server.setLeadership(l); });
        if (auto st = election->start(); !st.ok()) {
            std::fprintf(stderr, "pccl-master: %s\n", st.message().c_str());
            return 2;
        }
        std::printf("pccl-master standing by for run %s (etcd %s, advertising %s)\n", runId.c_str(), etcd.c_str(),
                    eo.advertise.c_str());
    }
#endif
    std::fflush(stdout);
    server.run();
#ifdef PCCL_HAVE_ETCD
    election.reset();  // a leader hands over at once
#endif
    std::printf("pccl-master stopped\n");
    return 0;
}
