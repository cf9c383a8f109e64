// The embedded-master part of the C facade. None of these calls needs pcclInit (PCCL 1.0
// programs run a master without it); failures are reported through the calling thread's
// last error (pcclGetLastErrorMessage(NULL)).
#include <pccl.h>

#include <cstddef>

#include <cstring>

#include "api/api_common.h"
#include "util/log.h"

using namespace pccl;
using pccl::api::fail;
using pccl::api::guarded;

namespace {

bool validMaster(const pcclMasterInstance_t *m) { return m && m->magic == api::kMasterMagic && m->server; }

// A fresh server (and status server) from the master's options: at creation, and after a
// pcclRunMaster whose status server failed to start (the bound server is dropped with it).
void buildServer(pcclMasterInstance_t *m) {
    m->server.reset();
    m->status.reset();
    if (!m->http.listen.empty()) m->status = std::make_shared<master::HttpStatus>();
    m->options.status = m->status;
    m->server = std::make_unique<master::Server>(m->options);
}

} // namespace

extern "C" {

PCCL_EXPORT pcclResult_t pcclCreateMaster(ccoip_socket_address_t listen_address, pcclMasterInstance_t **master_out) {
    return pcclCreateMasterEx(listen_address, nullptr, master_out);
}

PCCL_EXPORT pcclResult_t pcclCreateMasterEx(ccoip_socket_address_t listen_address, const pcclMasterCreateParamsEx_t *params,
                                           pcclMasterInstance_t **master_out) {
    return guarded(nullptr, [&] {
        if (!master_out) return fail(nullptr, invalidArgument("master_out is NULL"));
        const long long protocol = api::rawEnum(listen_address.inet.protocol);
        if (protocol != inetIPv4 && protocol != inetIPv6)
            return fail(nullptr, invalidArgument("listen address protocol must be inetIPv4 or inetIPv6"));
        auto options = master::ServerOptions::fromEnvironment();
        options.listen = api::fromCcoip(listen_address);
        auto http = master::HttpConfig::fromEnvironment();
        if (params) {
            constexpr size_t kFirstSize = offsetof(pcclMasterCreateParamsEx_t, require_secret) + sizeof(uint32_t);
            if (params->struct_size < kFirstSize)
                return fail(nullptr, invalidArgument("struct_size " + std::to_string(params->struct_size) +
                                                     " is smaller than pcclMasterCreateParamsEx_t (" + std::to_string(kFirstSize) +
                                                     " bytes); initialise with PCCL_MASTER_CREATE_PARAMS_EX_INIT"));
            if (params->secret) options.secret = std::string(params->secret);
            if (params->secret_file) options.secretFile = params->secret_file;
            options.requireSecret = params->require_secret != 0;
            // Fields appended later: read only when the caller's struct has them.
            constexpr size_t kHttpSize = offsetof(pcclMasterCreateParamsEx_t, http_token_file) + sizeof(const char *);
            if (params->struct_size >= kHttpSize) {
                if (params->http_listen) http.listen = params->http_listen;
                if (params->http_token_file) http.tokenFile = params->http_token_file;
            }
        }
        auto *m = new pcclMasterInstance_t;
        m->http = std::move(http);
        m->options = std::move(options);
        buildServer(m);
        *master_out = m;
        return pcclSuccess;
    });
}

PCCL_EXPORT pcclResult_t pcclRunMaster(pcclMasterInstance_t *master) {
    return guarded(nullptr, [&] {
        if (!validMaster(master)) return fail(nullptr, invalidArgument("not a valid master instance"));
        if (master->ran) return fail(nullptr, invalidUsage("the master was already started"));
        if (auto st = master->server->bind(); !st.ok()) return fail(nullptr, st);
        if (master->status) {
            if (auto st = master::startStatusServer(*master->status, master->http, master->server->hasSecret()); !st.ok()) {
                buildServer(master);  // unbound again: the caller may fix the cause and run it again
                return fail(nullptr, st);
            }
            PCCL_LOG(Info, "master: status page on " << master->status->url());
        }
        master->ran = master->running = true;
        master->thread = std::thread([s = master->server.get()] { s->run(); });
        return pcclSuccess;
    });
}

PCCL_EXPORT pcclResult_t pcclGetMasterPort(const pcclMasterInstance_t *master, uint16_t *port_out) {
    if (!validMaster(master)) return fail(nullptr, invalidArgument("not a valid master instance"));
    if (!port_out) return fail(nullptr, invalidArgument("port_out is NULL"));
    if (!master->ran) return fail(nullptr, invalidUsage("the master is not running"));
    *port_out = master->server->port();
    return pcclSuccess;
}

PCCL_EXPORT pcclResult_t pcclGetMasterHttpPort(const pcclMasterInstance_t *master, uint16_t *port_out) {
    if (!validMaster(master)) return fail(nullptr, invalidArgument("not a valid master instance"));
    if (!port_out) return fail(nullptr, invalidArgument("port_out is NULL"));
    if (!master->ran) return fail(nullptr, invalidUsage("the master is not running"));
    if (!master->status)
        return fail(nullptr, invalidUsage("the master has no status server (set http_listen or PCCL_MASTER_HTTP)"));
    *port_out = master->status->port();
    return pcclSuccess;
}

PCCL_EXPORT pcclResult_t pcclInterruptMaster(pcclMasterInstance_t *master) {
    // Async-signal-safe: no allocation, no locks, no logging (hence static reasons).
    if (!master) return api::failStatic(pcclInvalidArgument, "pcclInterruptMaster: master is NULL");
    if (master->magic != api::kMasterMagic || !master->server)
        return api::failStatic(pcclInvalidArgument,
                               "pcclInterruptMaster: not a valid master instance (already destroyed, or not "
                               "created by pcclCreateMaster)");
    master->server->interrupt();
    return pcclSuccess;
}

PCCL_EXPORT pcclResult_t pcclMasterAwaitTermination(pcclMasterInstance_t *master) {
    return guarded(nullptr, [&] {
        if (!validMaster(master)) return fail(nullptr, invalidArgument("not a valid master instance"));
        if (!master->ran) return fail(nullptr, invalidUsage("the master was never run"));
        if (master->thread.joinable()) master->thread.join();
        master->running = false;
        return pcclSuccess;
    });
}

PCCL_EXPORT pcclResult_t pcclDestroyMaster(pcclMasterInstance_t *master) {
    return guarded(nullptr, [&] {
        if (!validMaster(master)) return fail(nullptr, invalidArgument("not a valid master instance"));
        if (master->thread.joinable()) {
            master->server->stop();
            master->thread.join();
        }
        master->magic = api::kDeadMagic;
        delete master;
        return pcclSuccess;
    });
}

} // extern "C"
