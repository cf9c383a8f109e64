// Shared plumbing of the C facade: initialisation flag, error recording, the exception barrier.
#pragma once
#include <pccl.h>

#include <functional>

#include "api/handles.h"

namespace pccl::api {

bool initialized();
// Records the failure (for pcclGetLastErrorMessage) and returns its code.
pcclResult_t fail(const pcclComm_t *comm, const Status &status);
// Runs body behind an exception barrier: any exception becomes pcclInternalError.
pcclResult_t guarded(const pcclComm_t *comm, const std::function<pcclResult_t()> &body);
bool validComm(const pcclComm_t *comm);

} // namespace pccl::api
