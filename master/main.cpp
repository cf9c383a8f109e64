// pccl-master: the coordinator daemon. Parse flags -> build options -> serve -> exit code.
#include <cstdio>
#include <cstring>
#include <string>

#include "master/server.h"
#include "transport/address.h"
#include "util/log.h"

namespace {

void usage(FILE *out) {
    std::fprintf(out,
                 "usage: pccl-master [--listen HOST:PORT] [--log-level trace|debug|info|warn|error|off]\n"
                 "  --listen     address to listen on (default 0.0.0.0:48148; IPv6: [::]:48148; port 0 = any)\n"
                 "  --log-level  log verbosity on stderr (default info; env PCCL_LOG_LEVEL)\n"
                 "Prints one status line per membership change; SIGINT/SIGTERM stop it cleanly.\n");
}

} // namespace

int main(int argc, char **argv) {
    std::string listen = "0.0.0.0:48148";
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
    auto addr = pccl::transport::parseSocketAddress(listen, 48148);
    if (!addr.ok()) {
        std::fprintf(stderr, "pccl-master: %s\n", addr.status().message().c_str());
        return 2;
    }
    pccl::master::ServerOptions options;
    options.listen = *addr;
    options.printStatus = true;
    options.handleSignals = true;
    pccl::master::Server server(options);
    if (auto st = server.bind(); !st.ok()) {
        std::fprintf(stderr, "pccl-master: %s\n", st.message().c_str());
        return 1;
    }
    auto shown = options.listen;
    shown.port = server.port();
    std::printf("pccl-master listening on %s\n", shown.str().c_str());
    std::fflush(stdout);
    server.run();
    std::printf("pccl-master stopped\n");
    return 0;
}
