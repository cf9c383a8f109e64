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

// What the flags ask for; the rest goes straight into ServerOptions and HttpConfig.
struct Flags {
    std::string listen = "0.0.0.0:48148";
    pccl::master::HttpConfig http = pccl::master::HttpConfig::fromEnvironment();
    pccl::master::ServerOptions options = pccl::master::ServerOptions::fromEnvironment();
    bool endRun = false;  // --end-run-on-exit
    std::string etcd, runId, advertise;
    uint64_t leaseTtlS = 3;
    pccl::log::Level level = pccl::log::Level::Info;
};

// A flag's number or exit(2) with the reason: milliseconds in lo..24 h, or a count in 1..kMaxConnectionsLimit.
void millis(const char *flag, const char *text, uint64_t lo, uint64_t *out) {
    char *end = nullptr;
    const unsigned long long v = std::strtoull(text, &end, 10);
    if (!*text || *end || v < lo || v > 24ull * 3600000) {
        std::fprintf(stderr, "pccl-master: %s needs milliseconds in %llu..86400000, got '%s'\n", flag,
                     static_cast<unsigned long long>(lo), text);
        std::exit(2);
    }
    *out = v;
}

template <class T>
void count(const char *flag, const char *text, T *out) {
    char *end = nullptr;
    const unsigned long long v = std::strtoull(text, &end, 10);
    if (!*text || *end || v < 1 || v > pccl::master::kMaxConnectionsLimit) {
        std::fprintf(stderr, "pccl-master: %s needs a count in 1..%llu, got '%s'\n", flag,
                     static_cast<unsigned long long>(pccl::master::kMaxConnectionsLimit), text);
        std::exit(2);
    }
    *out = static_cast<T>(v);
}

// One flag at argv[i] (its value, if any, consumed). Returns -1 to go on, else the exit code.
int parseFlag(int argc, char **argv, int &i, Flags &f) {
    const std::string arg = argv[i];
    auto value = [&](const char *name) -> const char * {
        if (i + 1 >= argc) {
            std::fprintf(stderr, "pccl-master: %s needs a value\n", name);
            std::exit(2);
        }
        return argv[++i];
    };
    auto &m = f.options.membership;
    if (arg == "--listen" || arg == "--listen-address") f.listen = value("--listen");
    else if (arg == "--log-level") {
        if (!pccl::log::parseLevel(value("--log-level"), &f.level)) {
            std::fprintf(stderr, "pccl-master: unknown log level '%s'\n", argv[i]);
            return 2;
        }
    } else if (arg == "--heartbeat-timeout-ms") millis(arg.c_str(), value(arg.c_str()), 100, &m.heartbeatTimeoutMs);
    else if (arg == "--vote-timeout-ms") millis(arg.c_str(), value(arg.c_str()), 0, &m.voteTimeoutMs);
    else if (arg == "--secret-file") f.options.secretFile = value("--secret-file");
    else if (arg == "--require-secret") f.options.requireSecret = true;
    else if (arg == "--handshake-timeout-ms") millis(arg.c_str(), value(arg.c_str()), 100, &m.handshakeTimeoutMs);
    else if (arg == "--max-heartbeat-timeout-ms") millis(arg.c_str(), value(arg.c_str()), 100, &m.maxHeartbeatTimeoutMs);
    else if (arg == "--max-connections") count(arg.c_str(), value(arg.c_str()), &f.options.maxConnections);
    else if (arg == "--max-connections-per-address") count(arg.c_str(), value(arg.c_str()), &f.options.maxConnectionsPerAddress);
    else if (arg == "--end-run-on-exit") f.endRun = true;
    else if (arg == "--epoch") count(arg.c_str(), value(arg.c_str()), &m.masterEpoch);
    else if (arg == "--http") f.http.listen = value("--http");
    else if (arg == "--http-token-file") f.http.tokenFile = value("--http-token-file");
    else if (arg == "--etcd") f.etcd = value("--etcd");
    else if (arg == "--run-id") f.runId = value("--run-id");
    else if (arg == "--advertise") f.advertise = value("--advertise");
    else if (arg == "--lease-ttl-s") count(arg.c_str(), value(arg.c_str()), &f.leaseTtlS);
    else if (arg == "--help" || arg == "-h") {
        usage(stdout);
        return 0;
    } else {
        std::fprintf(stderr, "pccl-master: unknown argument '%s'\n", arg.c_str());
        usage(stderr);
        return 2;
    }
    return -1;
}

// The flags into f, checked; -1 to go on, else the exit code.
int parseFlags(int argc, char **argv, Flags &f) {
    if (const char *env = std::getenv("PCCL_LOG_LEVEL")) pccl::log::parseLevel(env, &f.level);
    for (int i = 1; i < argc; ++i)
        if (int rc = parseFlag(argc, argv, i, f); rc >= 0) return rc;
    pccl::log::setLevel(f.level);
    if (f.etcd.empty() != f.runId.empty() || (f.etcd.empty() && !f.advertise.empty())) {
        std::fprintf(stderr, "pccl-master: --etcd and --run-id go together (--advertise needs them)\n");
        return 2;
    }
#ifndef PCCL_HAVE_ETCD
    if (!f.etcd.empty()) {
        std::fprintf(stderr, "pccl-master: --etcd: this build has no etcd client (built with -DPCCL_HTTP=OFF or -DPCCL_ETCD=OFF)\n");
        return 2;
    }
#endif
    auto addr = pccl::transport::parseSocketAddress(f.listen, 48148);
    if (!addr.ok()) {
        std::fprintf(stderr, "pccl-master: %s\n", addr.status().message().c_str());
        return 2;
    }
    f.options.listen = *addr;
    f.options.printStatus = true;
    f.options.handleSignals = true;
    f.options.endRunOnStop = f.endRun;
    f.options.membership.standby = !f.etcd.empty();
    return -1;
}

#ifdef PCCL_HAVE_ETCD
// With --etcd: campaigns for the leadership and tells the server who leads; nullptr without.
std::unique_ptr<pccl::master::EtcdElection> startElection(const Flags &f, const std::string &shown,
                                                          pccl::master::Server &server, int *rc) {
    if (f.etcd.empty()) return nullptr;
    pccl::master::EtcdElectionOptions eo{f.etcd, f.runId, f.advertise.empty() ? shown : f.advertise,
                                         static_cast<int64_t>(f.leaseTtlS)};
    auto election = std::make_unique<pccl::master::EtcdElection>(
        eo, [&server](const pccl::master::Leadership &l) { server.setLeadership(l); });
    if (auto st = election->start(); !st.ok()) {
        std::fprintf(stderr, "pccl-master: %s\n", st.message().c_str());
        *rc = 2;
        return nullptr;
    }
    std::printf("pccl-master standing by for run %s (etcd %s, advertising %s)\n", f.runId.c_str(), f.etcd.c_str(),
                eo.advertise.c_str());
    return election;
}
#endif

} // namespace

int main(int argc, char **argv) {
    Flags f;
    if (int rc = parseFlags(argc, argv, f); rc >= 0) return rc;
    std::shared_ptr<pccl::master::HttpStatus> status;
    if (!f.http.listen.empty()) f.options.status = status = std::make_shared<pccl::master::HttpStatus>();
    pccl::master::Server server(f.options);
    if (auto st = server.bind(); !st.ok()) {
        std::fprintf(stderr, "pccl-master: %s\n", st.message().c_str());
        return 1;
    }
    auto shown = f.options.listen;
    shown.port = server.port();
    std::printf("pccl-master listening on %s\n", shown.str().c_str());
    if (!startHttp(f.http, server.hasSecret(), status.get())) return 1;
#ifdef PCCL_HAVE_ETCD
    int rc = 0;
    auto election = startElection(f, shown.str(), server, &rc);
    if (rc) return rc;
#endif
    std::fflush(stdout);
    server.run();
#ifdef PCCL_HAVE_ETCD
    election.reset();  // a leader hands over at once
#endif
    std::printf("pccl-master stopped\n");
    return 0;
}
