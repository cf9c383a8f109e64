#include "api/api_common.h"

#include <atomic>
#include <exception>

#include "util/log.h"

namespace pccl::api {
namespace {
std::atomic<bool> g_initialized{false};
thread_local std::string t_lastError;
// Set by failStatic, cleared by fail: when set, it is this thread's last error. A trivially
// destructible thread_local, so writing it never allocates.
thread_local const char *t_staticError = nullptr;
} // namespace

void markInitialized() { g_initialized.store(true); }
bool initialized() { return g_initialized.load(); }

bool validComm(const pcclComm_t *comm) { return comm && comm->magic == kCommMagic && comm->rep; }

Status checkComm(const pcclComm_t *comm) {
    if (!initialized()) return {pcclNotInitialized, "pcclInit has not been called"};
    if (!comm) return invalidArgument("communicator is NULL");
    if (!validComm(comm)) return invalidArgument("not a valid communicator (already destroyed?)");
    return {};
}

pcclResult_t fail(const pcclComm_t *comm, const Status &status) {
    if (status.ok()) return pcclSuccess;
    PCCL_LOG(Debug, "call failed: " << status.message());
    t_staticError = nullptr;
    t_lastError = status.message();
    if (validComm(comm)) {
        std::lock_guard lock(comm->errorMu);
        comm->lastError = status.message();
    }
    return status.code();
}

pcclResult_t failStatic(pcclResult_t code, const char *reason) {
    t_staticError = reason;
    return code;
}

pcclResult_t guarded(const pcclComm_t *comm, const std::function<pcclResult_t()> &body) {
    try {
        return body();
    } catch (const std::exception &e) {
        return fail(comm, internalError(std::string("internal error: ") + e.what()));
    } catch (...) {
        return fail(comm, internalError("internal error: unknown exception"));
    }
}

const char *lastErrorFor(const pcclComm_t *comm) {
    if (validComm(comm)) {
        std::lock_guard lock(comm->errorMu);
        thread_local std::string copy;
        copy = comm->lastError;
        return copy.c_str();
    }
    return t_staticError ? t_staticError : t_lastError.c_str();
}

protocol::NetAddr fromCcoip(const ccoip_socket_address_t &a) {
    protocol::NetAddr n;
    if (a.inet.protocol == inetIPv6) {
        n.family = 6;
        std::memcpy(n.ip.data(), a.inet.ipv6.data, 16);
    } else {
        n.family = 4;
        std::memcpy(n.ip.data(), a.inet.ipv4.data, 4);
    }
    n.port = a.port;
    return n;
}

ccoip_socket_address_t toCcoip(const protocol::NetAddr &n) {
    ccoip_socket_address_t a{};
    if (n.family == 6) {
        a.inet.protocol = inetIPv6;
        std::memcpy(a.inet.ipv6.data, n.ip.data(), 16);
    } else {
        a.inet.protocol = inetIPv4;
        std::memcpy(a.inet.ipv4.data, n.ip.data(), 4);
    }
    a.port = n.port;
    return a;
}

} // namespace pccl::api
