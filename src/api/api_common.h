// Shared plumbing of the C facade: initialisation flag, error recording, the exception barrier.
#pragma once
#include <pccl.h>

#include <cstring>
#include <functional>
#include <type_traits>

#include "api/handles.h"
#include "protocol/messages.h"

namespace pccl::api {

bool initialized();
// Records the failure (for pcclGetLastErrorMessage) and returns its code.
pcclResult_t fail(const pcclComm_t *comm, const Status &status);
// Records a static reason as this thread's last error without allocating or locking, for the
// calls that must stay async-signal-safe (pcclInterruptMaster); returns code.
pcclResult_t failStatic(pcclResult_t code, const char *reason);
// Runs body behind an exception barrier: any exception becomes pcclInternalError.
pcclResult_t guarded(const pcclComm_t *comm, const std::function<pcclResult_t()> &body);
bool validComm(const pcclComm_t *comm);
// pcclInit called, and comm a live communicator handle.
Status checkComm(const pcclComm_t *comm);

// The integer a C caller stored in an enum field. Reading it through the enum type would be
// undefined for out-of-range values, which are exactly what argument checks must reject.
template <class E>
long long rawEnum(const E &e) {
    std::underlying_type_t<E> v;
    std::memcpy(&v, &e, sizeof v);
    return static_cast<long long>(v);
}

// ccoip_socket_address_t <-> the wire's NetAddr (family 4 or 6, the bytes and port as they are).
protocol::NetAddr fromCcoip(const ccoip_socket_address_t &a);
ccoip_socket_address_t toCcoip(const protocol::NetAddr &n);

} // namespace pccl::api
