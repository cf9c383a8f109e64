/*
 * ccoip.h - the address types and well-known ports of the pccl C API, under the names PCCL 1.0
 * programs include (`#include <ccoip.h>` beside `#include <pccl.h>`).
 *
 * Types and macros only: no functions, so no linkage and no extern "C". Compiles alone, in any
 * order with ccoip_inet.h and pccl.h, as C99 and as C++.
 */
#ifndef CCOIP_H
#define CCOIP_H

#include "ccoip_inet.h"

/** The master's default listen port (pccl-master, pcclParseSocketAddress without a port). */
#define CCOIP_PROTOCOL_PORT_MASTER 48148
/** PCCL 1.0's port of shared-state transfers. This library serves them on its peer-to-peer
 *  connections (ports chosen by the kernel, or PCCL_PORT_RANGE where supported); the value
 *  is kept for programs that name it. */
#define CCOIP_PROTOCOL_PORT_SHARED_STATE 48149
/** PCCL 1.0's port of peer-to-peer (ring) connections; kept for programs that name it (see
 *  CCOIP_PROTOCOL_PORT_SHARED_STATE). */
#define CCOIP_PROTOCOL_PORT_P2P 48150
/** PCCL 1.0's port of the bandwidth benchmark of pcclOptimizeTopology; kept for programs that
 *  name it (see CCOIP_PROTOCOL_PORT_SHARED_STATE). */
#define CCOIP_PROTOCOL_PORT_BANDWIDTH_BENCHMARK 48151

#endif /* CCOIP_H */
