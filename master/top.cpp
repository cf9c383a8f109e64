// pccl-top: the master's status page in a terminal, for operators on SSH (docs/observability.md).
// Fetches GET /api/status from a master started with --http (or PCCL_MASTER_HTTP, or an embedded
// master's http_listen) and prints the frame of top_view.h; redraws every --interval-ms until
// SIGINT/SIGTERM, or prints one frame with --once.
//
// Exit status: 0 done (--once printed a frame, or interrupted); 2 bad arguments or token file;
// 3 the status server cannot be reached; 4 it answered an HTTP error (401: a token is needed or
// was refused); 5 its answer is not a status document. Without --once, only the first fetch
// ends the program on failure; later failures are shown above the last frame and retried.
#include <httplib.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <unistd.h>

#include "master/http_status.h"
#include "top_view.h"
#include "transport/address.h"

namespace {

enum Exit { kOk = 0, kUsage = 2, kUnreachable = 3, kHttpError = 4, kMalformed = 5 };

void usage(FILE *out) {
    std::fprintf(out,
                 "usage: pccl-top --http HOST:PORT [--token-file PATH] [--once] [--interval-ms MS] [--events N]\n"
                 "  --http         the master's status server (pccl-master --http; a bare PORT: 127.0.0.1)\n"
                 "  --token-file   send 'Authorization: Bearer <first line of PATH>' (pccl-master --http-token-file)\n"
                 "  --once         print one frame and exit (else redraw until Ctrl-C)\n"
                 "  --interval-ms  time between frames (default 2000, at least 100)\n"
                 "  --events       the newest membership events shown (default 10)\n"
                 "Exit status: 0 ok, 2 bad arguments, 3 unreachable, 4 HTTP error (401: token), 5 not a status document.\n");
}

struct Target {
    std::string host;  // as httplib wants it: no brackets around IPv6
    uint16_t port = 0;
    std::string shown;  // HOST:PORT for messages
    std::string token;
};

struct Fetched {
    int exit = kOk;
    std::string text;  // the frame, or the reason
};

std::string why(httplib::Error e) {
    switch (e) {
    case httplib::Error::Connection: return "connection refused or host unreachable";
    case httplib::Error::ConnectionTimeout: return "no connection within 3 s";
    case httplib::Error::Read: return "no complete answer within 5 s (or the connection closed)";
    case httplib::Error::Write: return "cannot send the request";
    default: return "HTTP client error " + httplib::to_string(e);
    }
}

Fetched fetch(const Target &t, const pccl::top::FrameOptions &options) {
    httplib::Client client(t.host, t.port);
    client.set_connection_timeout(3, 0);
    client.set_read_timeout(5, 0);
    client.set_write_timeout(5, 0);
    if (!t.token.empty()) client.set_bearer_token_auth(t.token.c_str());
    auto res = client.Get("/api/status");
    if (!res)
        return {kUnreachable, "cannot reach the status server at " + t.shown + ": " + why(res.error()) +
                                  " (is the master running with --http " + t.shown + "?)"};
    if (res->status == 401)
        return {kHttpError, t.token.empty() ? t.shown + " requires a bearer token: pass --token-file PATH (the master's "
                                                        "--http-token-file)"
                                            : t.shown + " refused the token of --token-file (401)"};
    if (res->status != 200) {
        std::string first = res->body.substr(0, res->body.find('\n'));
        return {kHttpError, t.shown + "/api/status answered HTTP " + std::to_string(res->status) +
                                (first.empty() ? "" : ": " + first.substr(0, 200))};
    }
    auto frame = pccl::top::renderFrame(res->body, options);
    if (!frame.ok()) return {kMalformed, t.shown + "/api/status: " + frame.status().message()};
    return {kOk, std::move(*frame)};
}

// Waits `ms` unless SIGINT or SIGTERM (blocked, so taken here synchronously) comes first: no
// signal handler, nothing runs in signal context.
bool waitOrSignal(const sigset_t &signals, long ms) {
    timespec ts{ms / 1000, (ms % 1000) * 1000000};
    for (;;) {
        const int sig = sigtimedwait(&signals, nullptr, &ts);
        if (sig > 0) return false;
        if (errno == EAGAIN) return true;  // the time passed (EINTR: another signal; wait again)
    }
}

bool number(const char *text, long lo, long hi, long *out) {
    char *end = nullptr;
    const long v = std::strtol(text, &end, 10);
    if (!*text || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

struct Args {
    std::string http, tokenFile;
    bool once = false;
    long interval = 2000, events = 10;
};

// The flags into a; -1 to go on, else the exit code.
int parseArgs(int argc, char **argv, Args &a) {
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        auto value = [&]() -> const char * {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "pccl-top: %s needs a value\n", arg.c_str());
                std::exit(kUsage);
            }
            return argv[++i];
        };
        if (arg == "--http") {
            a.http = value();
        } else if (arg == "--token-file") {
            a.tokenFile = value();
        } else if (arg == "--once") {
            a.once = true;
        } else if (arg == "--interval-ms") {
            if (!number(value(), 100, 3600000, &a.interval)) {
                std::fprintf(stderr, "pccl-top: --interval-ms needs milliseconds in 100..3600000, got '%s'\n", argv[i]);
                return kUsage;
            }
        } else if (arg == "--events") {
            if (!number(value(), 0, 200, &a.events)) {
                std::fprintf(stderr, "pccl-top: --events needs a count in 0..200, got '%s'\n", argv[i]);
                return kUsage;
            }
        } else if (arg == "--help" || arg == "-h") {
            usage(stdout);
            return kOk;
        } else {
            std::fprintf(stderr, "pccl-top: unknown argument '%s'\n", arg.c_str());
            usage(stderr);
            return kUsage;
        }
    }
    if (a.http.empty()) {
        std::fprintf(stderr, "pccl-top: --http HOST:PORT is required\n");
        usage(stderr);
        return kUsage;
    }
    return -1;
}

// The status server of --http (and its token); -1 to go on, else the exit code.
int makeTarget(const Args &a, Target &target) {
    // The same forms as pccl-master --http: a bare PORT or ":PORT" is 127.0.0.1.
    const std::string &http = a.http;
    std::string text = http.find(':') == std::string::npos ? "127.0.0.1:" + http : http[0] == ':' ? "127.0.0.1" + http : http;
    auto addr = pccl::transport::parseSocketAddress(text, 0);
    if (!addr.ok() || addr->port == 0) {
        std::fprintf(stderr, "pccl-top: --http %s: %s\n", http.c_str(),
                     addr.ok() ? "needs a port" : addr.status().message().c_str());
        return kUsage;
    }
    target.port = addr->port;
    target.shown = addr->str();
    target.host = target.shown.substr(0, target.shown.rfind(':'));
    if (!target.host.empty() && target.host.front() == '[') target.host = target.host.substr(1, target.host.size() - 2);
    if (!a.tokenFile.empty()) {
        if (auto st = pccl::master::readTokenFile(a.tokenFile, &target.token); !st.ok()) {
            std::fprintf(stderr, "pccl-top: %s\n", st.message().c_str());
            return kUsage;
        }
    }
    return -1;
}

// Redraws every interval until SIGINT or SIGTERM; a failed first fetch is the exit code.
int watch(const Target &target, const pccl::top::FrameOptions &options, long interval) {
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    const bool tty = isatty(STDOUT_FILENO);
    std::string last;
    for (bool first = true;; first = false) {
        Fetched f = fetch(target, options);
        if (f.exit != kOk && first) {
            std::fprintf(stderr, "pccl-top: %s\n", f.text.c_str());
            return f.exit;
        }
        if (f.exit == kOk) last = f.text;
        // Home + clear screen on a terminal; otherwise frames follow each other.
        std::string out = tty ? "\x1b[H\x1b[2J" : "\n";
        if (f.exit != kOk) out += "pccl-top: " + f.text + " (showing the last frame; retrying)\n";
        out += last;
        std::fputs(out.c_str(), stdout);
        std::fflush(stdout);
        if (!waitOrSignal(signals, interval)) break;
    }
    return kOk;
}

} // namespace

int main(int argc, char **argv) {
    Args a;
    if (int rc = parseArgs(argc, argv, a); rc >= 0) return rc;
    Target target;
    if (int rc = makeTarget(a, target); rc >= 0) return rc;
    pccl::top::FrameOptions options;
    options.source = target.shown;
    options.events = static_cast<size_t>(a.events);
    if (!a.once) return watch(target, options, a.interval);
    Fetched f = fetch(target, options);
    if (f.exit == kOk) std::fputs(f.text.c_str(), stdout);
    else std::fprintf(stderr, "pccl-top: %s\n", f.text.c_str());
    return f.exit;
}
