/*
 * pccl.h - the public C API of pccl, a fault-tolerant collective communication library.
 *
 * Conventions
 * - Handles are opaque: pcclComm_t and pcclMasterInstance_t. A handle that was not created by
 *   this library (or was already destroyed) is detected where possible and yields
 *   pcclInvalidArgument instead of undefined behaviour.
 * - Every function returns a pcclResult_t. pcclSuccess (0) means success; anything else is an
 *   error whose human-readable reason is available from pcclGetLastErrorMessage(comm) for
 *   communicator calls (per communicator, per thread-independent: the last failure wins), and
 *   from pcclGetLastErrorMessage(NULL) for every call on the calling thread (the only way for
 *   calls without a communicator: the master calls, pcclParseSocketAddress).
 * - pcclInit must precede every communicator call (they return pcclNotInitialized before it);
 *   the embedded-master calls and pcclParseSocketAddress work without it, as in PCCL 1.0.
 * - Pointers are non-NULL unless marked PCCL_NULLABLE. A NULL where a pointer is required
 *   returns pcclInvalidArgument.
 * - "Blocks" means the call waits for other processes. A blocked call never waits on a dead
 *   process: peers and master exchange heartbeats, a silent peer is removed (its operations
 *   abort on every survivor) and a silent master fails every blocked call.
 * - Collectives (all-reduce) span one peer group; topology update, peers-pending and
 *   topology optimization are votes over all accepted peers of the run.
 * - Thread rules: a communicator may be used from several threads for concurrent
 *   all-reduces with distinct tags; the membership calls (pcclConnect, pcclUpdateTopology,
 *   pcclArePeersPending, pcclOptimizeTopology, pcclSynchronizeSharedState) must not run
 *   concurrently with each other on the same communicator.
 * - Deadlines (nothing waits forever): a peer silent to the master for its heartbeat deadline
 *   is removed and its operations abort on every survivor (pcclRankConnectionLost); a running
 *   data transfer that makes no progress for the operation deadline fails on every
 *   participant (pcclTimeout); a vote or collective start that stays open for the master's
 *   vote deadline either removes the laggards (when the waiting peers outnumber them) or fails
 *   the waiting calls (pcclTimeout). A lost master (its connection closed, or no heartbeat
 *   answered) is waited for: the peer keeps its communicator and reconnects (to the same
 *   master first, then to PCCL_MASTER_ADDRESSES in turn), a restarted master rebuilds the run
 *   from the peers, and calls made meanwhile wait; pcclMasterConnectionLost means the peer
 *   gave up after PCCL_MASTER_RECONNECT_TIMEOUT_MS (default 60000; 0 = at once, as PCCL 1.0),
 *   after which the communicator is unusable (docs/master_recovery.md).
 * - Environment: PCCL_LOG_LEVEL (trace|debug|info|warn|error|off), PCCL_CONNECT_TIMEOUT_MS
 *   (TCP connects, default 10000), PCCL_HEARTBEAT_TIMEOUT_MS (liveness deadline, default 5000;
 *   the peer tells the master its own), PCCL_OP_TIMEOUT_MS (progress deadline of a data
 *   transfer, default 10000), PCCL_VOTE_TIMEOUT_MS (read by the master, embedded or daemon:
 *   default 60000, 0 = never), PCCL_ADMISSION_TIMEOUT_MS (pcclConnect's wait for admission;
 *   default none), PCCL_IO_THREADS (default 2), PCCL_POOL_SIZE (default 4),
 *   PCCL_SEGMENT_BYTES (all-reduce pipeline segment; default: an eighth of a chunk, 1-8 MiB;
 *   every peer must use the same value: peers that differ get pcclMismatch, naming both),
 *   PCCL_STATE_COMPRESSION_LEVEL (zstd level for shared-state transfers, default 0 = off),
 *   PCCL_TCP_CONGESTION (auto|system|NAME, see pcclCommCreateParamsEx_t), PCCL_SAME_HOST
 *   (off|0 disables same-host copies between peers on one machine; default on where possible,
 *   see pcclCommCreateParamsEx_t.same_host), PCCL_DISABLE_AVX2 (1: baseline hashing and
 *   quantization kernels), PCCL_ADVERTISED_ADDRESS and PCCL_PORT_RANGE (NAT and firewalls,
 *   see pcclCommCreateParamsEx_t.advertised_address and .port_range). The extended creation
 *   parameters (pcclCommCreateParamsEx_t) override the environment per communicator.
 *
 * This header compiles as C99 and as C++.
 */
#ifndef PCCL_H
#define PCCL_H

#include <stddef.h>
#include <stdint.h>
#ifndef __cplusplus
#include <stdbool.h>
#endif

/* The address types (ccoip_socket_address_t, ...) and CCOIP_PROTOCOL_PORT_MASTER: PCCL 1.0
 * programs include these headers themselves, in any order with this one. */
#include "ccoip.h"
#include "ccoip_inet.h"

#if defined(_WIN32)
#define PCCL_EXPORT __declspec(dllexport)
#else
#define PCCL_EXPORT __attribute__((visibility("default")))
#endif

#define PCCL_NULLABLE

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- enums (values fixed) */

typedef enum pcclResult_t {
    pcclSuccess = 0,
    pcclNotInitialized = 1,
    pcclInternalError = 2,
    pcclInvalidArgument = 3,
    pcclInvalidUsage = 4,
    pcclTooFewPeers = 5,
    pcclMasterConnectionFailed = 6,
    pcclRankConnectionFailed = 7,
    pcclRankConnectionLost = 8,
    pcclNoSharedStateAvailable = 9,
    pcclPendingAsyncOps = 10,
    pcclUpdateTopologyFailed = 11,
    pcclTopologyOptimizationFailed = 12,
    /* --- extensions (appended; never renumbered) --- */
    /** A deadline expired: a peer or the master did not answer in time. */
    pcclTimeout = 13,
    /** The master removed this peer from the run; the message says why. The communicator
     *  is unusable afterwards: destroy it and create a new one to rejoin. */
    pcclKicked = 14,
    /** The master or a peer rejected this peer's credentials. */
    pcclAuthenticationFailed = 15,
    /** Peers disagreed on the description of a collective (count, dtype, op, quantization,
     *  PCCL_SEGMENT_BYTES) for the same tag, or on the structure of the shared state. Nothing
     *  was written; retrying the same call fails the same way. */
    pcclMismatch = 16,
    /** The peer gave up on its master: it was lost after connecting and no master took its
     *  place within the reconnect timeout (PCCL_MASTER_RECONNECT_TIMEOUT_MS); the
     *  communicator is unusable afterwards. */
    pcclMasterConnectionLost = 17,
    /** pcclAbortCommunicator was called on this communicator: the call was cut short (an
     *  in-place all-reduce input is restored). Every later call returns it too; the
     *  communicator can only be destroyed. */
    pcclAborted = 18
} pcclResult_t;

typedef enum pcclDataType_t {
    pcclUint8 = 0,
    pcclInt8 = 1,
    pcclInt16 = 2,
    pcclUint16 = 3,
    pcclUint32 = 4,
    pcclInt32 = 5,
    pcclUint64 = 6,
    pcclInt64 = 7,
    pcclFloat16 = 8,
    pcclBFloat16 = 9,
    pcclFloat = 10,
    pcclDouble = 11
} pcclDataType_t;

typedef enum pcclDeviceType_t { pcclDeviceCpu = 0, pcclDeviceCuda = 1 } pcclDeviceType_t;

/** Reduction operators. Integer sums wrap around (two's complement); pcclAvg divides the
 *  sum by the number of contributing peers (integers: truncating division of the exact
 *  64-bit sum); f16/bf16 are reduced in f32 and rounded once. */
typedef enum pcclRedOp_t { pcclSum = 0, pcclAvg = 1, pcclProd = 2, pcclMax = 3, pcclMin = 4 } pcclRedOp_t;

typedef enum pcclAttribute_t {
    PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE = 1,
    PCCL_ATTRIBUTE_PEER_GROUP_WORLD_SIZE = 2,
    PCCL_ATTRIBUTE_NUM_DISTINCT_PEER_GROUPS = 3,
    PCCL_ATTRIBUTE_LARGEST_PEER_GROUP_WORLD_SIZE = 4,
    /* --- extensions (appended) --- */
    /** This peer's rank in its peer group for the current topology: its position in the
     *  group's ring, 0 .. PEER_GROUP_WORLD_SIZE - 1. Stable until the ring changes (a peer
     *  joins, leaves or pcclOptimizeTopology reorders it); "rank 0 writes the checkpoint"
     *  and data sharding use it. */
    PCCL_ATTRIBUTE_RANK = 5
} pcclAttribute_t;

typedef enum pcclSharedStateSyncStrategy_t {
    PCCL_SHARED_STATE_SYNC_STRATEGY_ENFORCE_POPULAR = 0,
    PCCL_SHARED_STATE_SYNC_STRATEGY_RECEIVE_ONLY = 1,
    PCCL_SHARED_STATE_SYNC_STRATEGY_SEND_ONLY = 2
} pcclSharedStateSyncStrategy_t;

typedef enum pcclDistributionHint_t {
    pcclDistributionNone = 0,
    pcclDistributionNormal = 1,
    pcclDistributionUniform = 2
} pcclDistributionHint_t;

typedef enum pcclQuantizationAlgorithm_t {
    pcclQuantNone = 0,
    pcclQuantMinMax = 1,
    pcclQuantZeroPointScale = 2
} pcclQuantizationAlgorithm_t;

/* ---------------------------------------------------------------- structs (field order fixed) */

typedef struct pcclCommCreateParams_t {
    ccoip_socket_address_t master_address;
    uint32_t peer_group;
    /** Number of TCP connections to each ring neighbour; 0 = library default (PCCL_POOL_SIZE
     *  or 4). One all-reduce is striped across all of them. */
    uint32_t p2p_connection_pool_size;
} pcclCommCreateParams_t;

/** Extended creation parameters (an extension). The first field is the struct's own size, so
 *  later versions can append fields without breaking programs built against this one.
 *  Initialise with PCCL_COMM_CREATE_PARAMS_EX_INIT, then set what you need; every 0 means
 *  "the environment variable if set, else the default". */
typedef struct pcclCommCreateParamsEx_t {
    size_t struct_size;            /**< sizeof(pcclCommCreateParamsEx_t) */
    pcclCommCreateParams_t params; /**< as for pcclCreateCommunicator */
    uint32_t connect_timeout_ms;   /**< TCP connects (PCCL_CONNECT_TIMEOUT_MS, 10000) */
    uint32_t heartbeat_timeout_ms; /**< liveness deadline, both ways (PCCL_HEARTBEAT_TIMEOUT_MS, 5000; >= 100) */
    uint32_t op_timeout_ms;        /**< data-transfer progress deadline (PCCL_OP_TIMEOUT_MS, 10000; >= 100) */
    uint32_t admission_timeout_ms; /**< pcclConnect's wait for admission (PCCL_ADMISSION_TIMEOUT_MS, none) */
    uint32_t io_threads;           /**< data-plane I/O threads (PCCL_IO_THREADS, 2; at most 64) */
    uint32_t state_compression_level; /**< zstd level (1..19) for shared-state chunks this peer serves,
                                           used per chunk when it shrinks it by 1/8 or more
                                           (PCCL_STATE_COMPRESSION_LEVEL; default off) */
    /** TCP congestion control of the data connections this peer opens (its sending side):
     *  NULL = PCCL_TCP_CONGESTION if set, else "auto": "bbr" towards non-loopback peers when
     *  the kernel offers it (a loss-tolerant control fills long, lossy links with few
     *  connections; cubic gets ~20 Mbit/s per connection at 80 ms and 0.01% loss), the
     *  system default otherwise; "system" = the system default; any other name (e.g. "cubic")
     *  is set as is, and a kernel that refuses it leaves the default with a logged warning.
     *  At most 15 characters. Added after state_compression_level: a struct_size that ends
     *  before this field is accepted and the field taken as NULL. */
    const char *tcp_congestion;
    /** Same-host copies between peers on one machine and in one network namespace: the
     *  receiver copies each frame straight out of the sender's memory (process_vm_readv), one
     *  copy in place of the TCP stack; TCP still carries headers, acknowledgements and
     *  liveness. Used per connection only where its handshake proves it works (same network
     *  namespace, the sender's memory readable: same user or CAP_SYS_PTRACE, and a Yama
     *  ptrace_scope that allows it); otherwise TCP, silently. PCCL_SAME_HOST_DEFAULT (0) =
     *  PCCL_SAME_HOST if set ("off" or "0" disables), else on; PCCL_SAME_HOST_ON (1);
     *  PCCL_SAME_HOST_OFF (2). Other values: pcclInvalidArgument. Added after tcp_congestion,
     *  read only when struct_size covers it. */
    uint32_t same_host;
    /** The run secret (docs/security.md), a NUL-terminated string of at least 16 bytes: NULL =
     *  PCCL_SECRET if set, else the file named by PCCL_SECRET_FILE (refused if group or others
     *  may read it), else none: an open run, which anyone who reaches the master can join. With
     *  a secret every connection authenticates (pcclAuthenticationFailed when the master or a
     *  peer cannot prove the same secret) and every byte is integrity-protected. Added after
     *  same_host, read only when struct_size covers it. */
    const char *secret;
    /** With a secret: PCCL_ENCRYPT_DEFAULT (0) = PCCL_ENCRYPT if set ("off" or "0": integrity
     *  only), else encrypted; PCCL_ENCRYPT_ON (1): AES-256-GCM or ChaCha20-Poly1305 records;
     *  PCCL_ENCRYPT_OFF (2): authenticated and integrity-protected, sent in the clear. Other
     *  values: pcclInvalidArgument. Read only when struct_size covers it. */
    uint32_t encrypt;
    /** NAT (docs/security.md): where the other peers should connect to reach this peer's data
     *  plane, when that differs from what the master sees (a router forwarding a public port):
     *  "host:port"; "host" alone keeps the real data port; ":port" alone keeps the address the
     *  master observes; IPv6 in brackets ("[2001:db8::1]:7000"); a host name is resolved once,
     *  here. NULL = PCCL_ADVERTISED_ADDRESS if set, else none (the observed address and the real
     *  port). Malformed: pcclInvalidArgument with the reason. Read only when struct_size
     *  covers it. */
    const char *advertised_address;
    /** The port this peer's data plane listens on, so that a firewall or router can open or
     *  forward exactly those: "lo-hi" (the first free port of the range, in order) or one port
     *  ("7000" fixes it). NULL = PCCL_PORT_RANGE if set, else any free port. Malformed, or no
     *  free port in the range (at pcclConnect): pcclInvalidArgument naming the range. Read only
     *  when struct_size covers it. */
    const char *port_range;
    /** Masters to try, in turn, besides params.master_address (docs/master_recovery.md):
     *  "host:port,host:port" (the first connect tries params.master_address first, then these;
     *  a peer that lost its master reconnects to the same one first, then rotates). NULL =
     *  PCCL_MASTER_ADDRESSES if set, else none. Malformed: pcclInvalidArgument naming the entry.
     *  Read only when struct_size covers it. */
    const char *master_addresses;
    /** How long a peer that lost its master (connection closed, or no heartbeat answered) keeps
     *  its communicator, data connections and shared state and waits for a master to come back
     *  (reconnecting with backoff) before every call fails with pcclMasterConnectionLost. Calls
     *  made meanwhile wait; a started all-reduce completes or fails on every peer. 0 =
     *  PCCL_MASTER_RECONNECT_TIMEOUT_MS if set (0 there: off), else 60000;
     *  PCCL_MASTER_RECONNECT_OFF: fail at once, as PCCL 1.0. Read only when struct_size covers it. */
    uint32_t master_reconnect_timeout_ms;
} pcclCommCreateParamsEx_t;

#define PCCL_MASTER_RECONNECT_OFF 0xffffffffu

#define PCCL_ENCRYPT_DEFAULT 0u
#define PCCL_ENCRYPT_ON 1u
#define PCCL_ENCRYPT_OFF 2u

#define PCCL_SAME_HOST_DEFAULT 0u
#define PCCL_SAME_HOST_ON 1u
#define PCCL_SAME_HOST_OFF 2u

#ifdef __cplusplus
#define PCCL_COMM_CREATE_PARAMS_EX_INIT { sizeof(pcclCommCreateParamsEx_t), {}, 0, 0, 0, 0, 0, 0, NULL, 0, NULL, 0, NULL, NULL, NULL, 0 }
#else
#define PCCL_COMM_CREATE_PARAMS_EX_INIT { .struct_size = sizeof(pcclCommCreateParamsEx_t) }
#endif

typedef struct pcclComm_t pcclComm_t;
typedef struct pcclMasterInstanceState_t pcclMasterInstance_t;
/** Opaque; declared as in PCCL 1.0 so that programs naming it compile. No function of this
 *  version takes or returns it. */
typedef struct pcclRankInfo_t pcclRankInfo_t;

typedef struct pcclReduceInfo_t {
    uint32_t local_world_size;
    uint64_t tx_bytes;
    uint64_t rx_bytes;
} pcclReduceInfo_t;

/** What an all-reduce did, with its speed (an extension; filled by pcclAllReduceEx,
 *  pcclAwaitAsyncReduceEx and pcclAllReduceMultipleWithRetryEx). The first field is the
 *  struct's own size: initialise with PCCL_REDUCE_INFO_EX_INIT; later versions append fields
 *  and fill only those that struct_size covers. */
typedef struct pcclReduceInfoEx_t {
    size_t struct_size;        /**< sizeof(pcclReduceInfoEx_t) */
    uint32_t local_world_size; /**< as pcclReduceInfo_t */
    uint64_t tx_bytes;         /**< as pcclReduceInfo_t: bytes this peer sent (quantized bytes if quantized) */
    uint64_t rx_bytes;         /**< as pcclReduceInfo_t: bytes this peer received */
    /** Seconds from the start of the operation (the all-reduce call, or pcclAllReduceAsync) to
     *  its end (the master committed or aborted it, or it failed locally), measured on a
     *  monotonic clock with microsecond resolution; for pcclAllReduceMultipleWithRetryEx the
     *  wall time of the whole call, retries included. Waiting for the other peers to start the
     *  same tag counts. */
    double duration_s;
    /** This peer's network throughput: (tx_bytes + rx_bytes) / duration_s, in bytes per second
     *  (0 when duration_s is 0). Not the algorithm bandwidth: divide count * element size by
     *  duration_s for that. */
    double bytes_per_second;
} pcclReduceInfoEx_t;

#ifdef __cplusplus
#define PCCL_REDUCE_INFO_EX_INIT { sizeof(pcclReduceInfoEx_t), 0, 0, 0, 0.0, 0.0 }
#else
#define PCCL_REDUCE_INFO_EX_INIT { .struct_size = sizeof(pcclReduceInfoEx_t) }
#endif

typedef struct pcclReduceOperandDescriptor_t {
    pcclDataType_t datatype;
    pcclDistributionHint_t distribution_hint;
} pcclReduceOperandDescriptor_t;

typedef struct pcclQuantizationOptions_t {
    pcclDataType_t quantized_datatype;
    pcclQuantizationAlgorithm_t algorithm;
} pcclQuantizationOptions_t;

typedef struct pcclReduceDescriptor_t {
    size_t count;
    pcclRedOp_t op;
    uint64_t tag;
    pcclReduceOperandDescriptor_t src_descriptor;
    pcclQuantizationOptions_t quantization_options;
} pcclReduceDescriptor_t;

typedef struct pcclReduceSingleDescriptor_t {
    void *sendbuf;
    void *recvbuf;
    pcclReduceDescriptor_t descriptor;
} pcclReduceOpDescriptor_t;

typedef struct pcclAsyncReduceOp_t {
    pcclComm_t *comm;
    uint64_t tag;
} pcclAsyncReduceOp_t;

typedef struct pcclRankUuid_t {
    uint8_t data[16];
} pcclRankUuid_t;

typedef struct pcclTensorInfo_t {
    const char *name;
    void *data;
    size_t count;
    pcclDataType_t datatype;
    pcclDeviceType_t device_type;
    bool allow_content_inequality;
} pcclTensorInfo_t;

typedef struct pcclSharedState_t {
    uint64_t revision;
    size_t count;
    pcclTensorInfo_t *infos;
} pcclSharedState_t;

typedef struct pcclSharedStateSyncInfo_t {
    uint64_t tx_bytes;
    uint64_t rx_bytes;
} pcclSharedStateSyncInfo_t;

typedef struct pcclBuildInfo_t {
    bool has_cuda_support;
} pcclBuildInfo_t;

/* ---------------------------------------------------------------- library */

/** Initialise the library. Idempotent, thread-safe, non-blocking.
 *  Returns pcclSuccess. Communicator calls made before it return pcclNotInitialized. */
PCCL_EXPORT pcclResult_t pcclInit(void);

/** Fill *info with build facts (CUDA support). Non-blocking.
 *  Returns pcclSuccess, pcclInvalidArgument (info NULL). */
PCCL_EXPORT pcclResult_t pcclGetBuildInfo(pcclBuildInfo_t *info);

/** Write the library version as major*10000 + minor*100 + patch. Non-blocking.
 *  Returns pcclSuccess, pcclInvalidArgument (version NULL). */
PCCL_EXPORT pcclResult_t pcclGetVersion(int *version);

/** A static, human-readable name for a result code ("pcclRankConnectionLost: ..."). Never NULL. */
PCCL_EXPORT const char *pcclGetErrorString(pcclResult_t result);

/** The reason for the last failed call on this communicator, or "" if none. The returned
 *  string is a per-thread copy, valid until this thread calls pcclGetLastErrorMessage again.
 *  NULL comm yields the reason of the last failure on this thread, including calls made
 *  without a valid communicator (e.g. pcclCreateCommunicator, pcclRunMaster). Never NULL. */
PCCL_EXPORT const char *pcclGetLastErrorMessage(PCCL_NULLABLE const pcclComm_t *communicator);

/* ---------------------------------------------------------------- communicator */

/** Allocate a communicator. No network traffic. Non-blocking.
 *  Returns pcclSuccess, pcclNotInitialized, pcclInvalidArgument (NULL pointers, bad address). */
PCCL_EXPORT pcclResult_t pcclCreateCommunicator(const pcclCommCreateParams_t *params, pcclComm_t **comm_out);

/** pcclCreateCommunicator with per-communicator deadlines and threads (an extension).
 *  Non-blocking. Returns pcclSuccess, pcclNotInitialized, pcclInvalidArgument (NULL pointers,
 *  struct_size smaller than this header's struct, a value out of range, bad address). */
PCCL_EXPORT pcclResult_t pcclCreateCommunicatorEx(const pcclCommCreateParamsEx_t *params, pcclComm_t **comm_out);

/** Leave the run gracefully (tell the master), close every connection and join every thread
 *  the communicator started, then free it. NULL is a no-op. Blocks at most for the
 *  leave round trip's deadline. Must not run concurrently with other calls on comm.
 *  Returns pcclSuccess, pcclNotInitialized, pcclInvalidArgument (not a communicator). */
PCCL_EXPORT pcclResult_t pcclDestroyCommunicator(PCCL_NULLABLE pcclComm_t *comm);

/** Abort the communicator (an extension): every call blocked on it (pcclConnect, a vote, an
 *  all-reduce or its await, a shared-state sync) returns pcclAborted promptly, an in-place
 *  all-reduce input restored, and every later call returns pcclAborted; the communicator can
 *  then only be destroyed. Safe to call from any thread, concurrently with other calls on comm
 *  and more than once. Not async-signal-safe (it takes locks): from a signal handler, set a flag
 *  and call it from a thread. Non-blocking. Returns pcclSuccess, pcclNotInitialized,
 *  pcclInvalidArgument (not a communicator). */
PCCL_EXPORT pcclResult_t pcclAbortCommunicator(pcclComm_t *comm);

/** Connect to the master, register, and block until the accepted peers admit this peer
 *  (their next pcclUpdateTopology) and this peer's ring links are up. The first peer of a
 *  run is admitted at once. The wait for admission is bounded by PCCL_ADMISSION_TIMEOUT_MS
 *  (default: none, as long as the master answers heartbeats); TCP connects by
 *  PCCL_CONNECT_TIMEOUT_MS. If the master cannot be reached (pcclMasterConnectionFailed before
 *  registering) pcclConnect may be called again on the same communicator; after any other
 *  failure the communicator is spent: destroy it and create a new one to retry.
 *  Returns pcclSuccess, pcclNotInitialized, pcclInvalidArgument, pcclInvalidUsage (already
 *  connected), pcclMasterConnectionFailed (master unreachable or handshake rejected),
 *  pcclAuthenticationFailed, pcclTimeout, pcclKicked, pcclRankConnectionFailed (ring links). */
PCCL_EXPORT pcclResult_t pcclConnect(pcclComm_t *comm);

/** Read a world-size attribute from the communicator's latest view of the run.
 *  Non-blocking. Returns pcclSuccess, pcclNotInitialized, pcclInvalidArgument (NULL,
 *  unknown attribute), pcclInvalidUsage (not connected). */
PCCL_EXPORT pcclResult_t pcclGetAttribute(const pcclComm_t *comm, pcclAttribute_t attribute, int *p_attribute_out);

/** One member of this peer's group (an extension): its id, the data address the others reach it
 *  at, its peer group and its rank (ring position, as PCCL_ATTRIBUTE_RANK). */
typedef struct pcclMemberInfo_t {
    pcclRankUuid_t uuid;
    ccoip_socket_address_t data_address;
    uint32_t peer_group;
    uint32_t rank;
} pcclMemberInfo_t;

/** List the members of this peer's group in rank order, this peer included, from the
 *  communicator's latest view of the run (an extension). Writes min(capacity, N) entries to
 *  members (which may be NULL when capacity is 0) and N to *count_out: call with capacity 0 to
 *  learn N. Non-blocking. Returns pcclSuccess, pcclNotInitialized, pcclInvalidArgument (NULL
 *  comm or count_out, NULL members with capacity > 0), pcclInvalidUsage (not connected), the
 *  reason of death of a communicator that failed (pcclMasterConnectionLost, pcclKicked,
 *  pcclAborted, ...). */
PCCL_EXPORT pcclResult_t pcclGetPeerGroupMembers(const pcclComm_t *comm, pcclMemberInfo_t *members, size_t capacity,
                                                 size_t *count_out);

/** What this communicator has done since it was created, and its place in the run (an
 *  extension; filled by pcclGetCommunicatorStats). The first field is the struct's own size:
 *  initialise with PCCL_COMM_STATS_INIT; later versions append fields and fill only those that
 *  struct_size covers. Operations count when they end (a call refused at once, e.g. a tag
 *  already in flight, counts nowhere); bytes are those of all-reduces and shared-state
 *  transfers on the data plane (bandwidth probes excluded), counted per operation. */
typedef struct pcclCommStats_t {
    size_t struct_size;              /**< sizeof(pcclCommStats_t) */
    uint64_t all_reduces_completed;  /**< all-reduces that returned pcclSuccess */
    uint64_t all_reduces_failed;     /**< all-reduces that started and failed (lost peer, mismatch, abort, ...) */
    uint64_t syncs_completed;        /**< pcclSynchronizeSharedState calls that succeeded */
    uint64_t syncs_failed;           /**< ... and that failed after reaching the master */
    uint64_t tx_bytes;               /**< data-plane bytes sent (quantized bytes if quantized) */
    uint64_t rx_bytes;               /**< data-plane bytes received */
    /** The latest successful all-reduce: its duration in microseconds (as duration_s of
     *  pcclReduceInfoEx_t) and its buffer size in bytes (count * element size); 0 before one. */
    uint64_t last_all_reduce_micros;
    uint64_t last_all_reduce_bytes;
    /** As PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE and PCCL_ATTRIBUTE_PEER_GROUP_WORLD_SIZE; 0 where
     *  pcclGetAttribute fails (not connected yet, or the communicator failed). */
    uint32_t world_size;
    uint32_t group_world_size;
    /** As PCCL_ATTRIBUTE_RANK; UINT32_MAX where pcclGetAttribute fails (not in a ring). */
    uint32_t rank;
    uint32_t peer_group;             /**< as pcclCommCreateParams_t.peer_group */
    uint64_t epoch;                  /**< the latest topology (admission round) this peer saw; 0 before */
    uint64_t votes_completed;        /**< pcclUpdateTopology, pcclArePeersPending, pcclOptimizeTopology that succeeded */
    uint64_t votes_failed;           /**< ... and that failed after reaching the master */
    /** The send rate to the ring successor achieved by the latest all-reduce that measured one,
     *  in bytes per second; 0 before. */
    uint64_t last_send_bytes_per_second;
    /** Collectives of every kind (all-reduce, broadcast, all-gather, reduce-scatter, barrier)
     *  that returned pcclSuccess, and that started and failed; all_reduces_* count the
     *  all-reduces among them. */
    uint64_t collectives_completed;
    uint64_t collectives_failed;
} pcclCommStats_t;

#ifdef __cplusplus
#define PCCL_COMM_STATS_INIT { sizeof(pcclCommStats_t), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }
#else
#define PCCL_COMM_STATS_INIT { .struct_size = sizeof(pcclCommStats_t) }
#endif

/** Read this communicator's statistics into *stats_out (an extension): counters since it was
 *  created, kept after a failure. stats_out->struct_size must be at least the size of the
 *  first version of pcclCommStats_t (through last_send_bytes_per_second); only the fields it
 *  covers are written. Never fails for the state of the communicator: before pcclConnect and
 *  after a failure the counters are returned with world_size 0 and rank UINT32_MAX.
 *  Non-blocking (a lock, no round trip). The same counters reach the master in a small
 *  report every 2 s at most, and only when they changed (docs/design.md).
 *  Returns pcclSuccess, pcclNotInitialized, pcclInvalidArgument (NULL comm or stats_out, not a
 *  communicator, a struct_size too small). */
PCCL_EXPORT pcclResult_t pcclGetCommunicatorStats(const pcclComm_t *comm, pcclCommStats_t *stats_out);

/** Collective vote over all accepted peers: admit every pending peer and rewire the ring
 *  links. Blocks until every accepted peer voted and the new links are up.
 *  Returns pcclSuccess, pcclNotInitialized, pcclInvalidArgument, pcclInvalidUsage (not
 *  connected), pcclPendingAsyncOps (collectives of this communicator are in flight),
 *  pcclUpdateTopologyFailed (links could not be established), pcclTimeout,
 *  pcclKicked, pcclMasterConnectionLost. */
PCCL_EXPORT pcclResult_t pcclUpdateTopology(pcclComm_t *comm);

/** Collective vote over all accepted peers: are peers waiting to be admitted? Every voter
 *  gets the same answer. May be called while collectives are in flight. Blocks until all
 *  accepted peers voted.
 *  Returns pcclSuccess, pcclNotInitialized, pcclInvalidArgument, pcclInvalidUsage,
 *  pcclTimeout, pcclKicked, pcclMasterConnectionLost. */
PCCL_EXPORT pcclResult_t pcclArePeersPending(const pcclComm_t *comm, bool *pending);

/** Collective vote over all accepted peers: measure peer-to-peer bandwidth and reorder the
 *  ring to maximise its slowest link; the new order applies to the next collective. With three
 *  or more peers in a group every link is probed at once for 2 s and rated on the second
 *  second (after TCP slow start), the ring with the fastest slowest hop is solved (exact up to
 *  12 peers) and applied only if it is strictly better; committed all-reduces refine the known
 *  rates. Known limit: on a machine too busy to carry every probe at once the fast links are
 *  underestimated, and links of similar rate may be ranked wrongly.
 *  Blocks until all accepted peers voted and the new ring is wired.
 *  Returns pcclSuccess, pcclNotInitialized, pcclInvalidArgument, pcclInvalidUsage,
 *  pcclPendingAsyncOps, pcclTopologyOptimizationFailed, pcclTimeout, pcclKicked,
 *  pcclMasterConnectionLost. */
PCCL_EXPORT pcclResult_t pcclOptimizeTopology(const pcclComm_t *comm);

/** Blocking all-reduce over the peer group. sendbuf == recvbuf (in place) is allowed; partly
 *  overlapping buffers are not. On success every peer of the group holds byte-identical
 *  results, quantized or not. Quantization (pcclQuantMinMax or pcclQuantZeroPointScale to
 *  pcclUint8 or pcclUint16; f32, f64, f16 and bf16 data; sum, avg, max, min) sends every
 *  segment as codes plus two parameters, round to nearest; NaN and infinities pass exactly;
 *  each hop adds an error of at most half a quantization step of that segment's range; the
 *  owner of each chunk keeps the dequantized value it sends, so all peers agree bit for bit.
 *  tx/rx bytes count the quantized bytes. The options must agree between peers.
 *  Arguments are checked first, then the group size: a peer group of fewer than two peers
 *  reduces nothing (as in PCCL 1.0), so a program that lost its last partner sees
 *  pcclTooFewPeers, not a silent copy. Result codes: pcclSuccess; pcclNotInitialized;
 *  pcclInvalidArgument (NULL buffers, count 0, unknown dtype/op, quantization of integers, of
 *  prod, or to a type other than u8/u16); pcclInvalidUsage (not connected, tag already in
 *  flight on this communicator); pcclTooFewPeers (this peer's group has fewer than two peers
 *  in its latest view of the run; nothing was written); pcclMismatch (peers disagree on
 *  count/dtype/op/quantization or PCCL_SEGMENT_BYTES for this tag; nothing written); pcclRankConnectionLost (a peer
 *  of the group was lost or a link broke: the operation was aborted on every peer, an in-place
 *  input is restored, the next call runs without the lost peer, or returns pcclTooFewPeers if
 *  none is left); pcclTimeout; pcclKicked; pcclMasterConnectionLost. info may be NULL. */
PCCL_EXPORT pcclResult_t pcclAllReduce(const void *sendbuf, void *recvbuf, const pcclReduceDescriptor_t *descriptor,
                                       const pcclComm_t *comm, PCCL_NULLABLE pcclReduceInfo_t *reduce_info_out);

/** Start an all-reduce and return at once (non-blocking); the operation is identified by
 *  descriptor->tag, which must not be in flight already on this communicator. Buffers must stay
 *  valid and untouched until pcclAwaitAsyncReduce returns. Returns at once pcclSuccess (started:
 *  await it), pcclNotInitialized, pcclInvalidArgument (as pcclAllReduce, and
 *  reduce_handle_out NULL), pcclInvalidUsage, pcclTooFewPeers (a group of fewer than two
 *  peers: nothing started, nothing to await), or the error that made the communicator
 *  unusable (pcclKicked, pcclMasterConnectionLost); network errors of a started operation are
 *  reported by pcclAwaitAsyncReduce. */
PCCL_EXPORT pcclResult_t pcclAllReduceAsync(const void *sendbuf, void *recvbuf, const pcclReduceDescriptor_t *descriptor,
                                            const pcclComm_t *comm, pcclAsyncReduceOp_t *reduce_handle_out);

/** Block until the async all-reduce completes; returns its result (see pcclAllReduce).
 *  Awaiting a handle twice, or a tag that is not in flight, returns pcclInvalidUsage.
 *  info may be NULL. */
PCCL_EXPORT pcclResult_t pcclAwaitAsyncReduce(const pcclAsyncReduceOp_t *reduce_handle,
                                              PCCL_NULLABLE pcclReduceInfo_t *reduce_info_out);

/** Run count all-reduces with at most max_in_flight concurrently, retrying every operation
 *  that failed with pcclRankConnectionLost until all succeed or the group has fewer than two
 *  peers. Blocks until every operation finished. Tags must be distinct. Arguments are checked
 *  first (nothing starts if one is bad), then the group size. info (may be NULL) receives the
 *  summed tx/rx bytes and the final world size.
 *  Returns pcclSuccess; pcclNotInitialized; pcclInvalidArgument (descriptors NULL, count 0,
 *  max_in_flight <= 0, a descriptor rejected as by pcclAllReduce, duplicate tags);
 *  pcclInvalidUsage (not connected, a tag already in flight); pcclTooFewPeers (the group has
 *  fewer than two peers before the first operation: nothing started; or after a peer loss:
 *  the operations that had not completed are not retried); other errors of pcclAllReduce
 *  (pcclMismatch, pcclTimeout, pcclKicked, pcclMasterConnectionLost) as is, after in-flight
 *  operations finished. */
PCCL_EXPORT pcclResult_t pcclAllReduceMultipleWithRetry(const pcclReduceOpDescriptor_t *descriptors, size_t count,
                                                        const pcclComm_t *comm,
                                                        PCCL_NULLABLE pcclReduceInfo_t *reduce_info_out,
                                                        int max_in_flight);

/** pcclAllReduce reporting its duration and throughput in a pcclReduceInfoEx_t (an extension).
 *  Blocks as pcclAllReduce. info may be NULL; if not, info->struct_size must be at least
 *  sizeof(pcclReduceInfoEx_t) of this header (PCCL_REDUCE_INFO_EX_INIT), checked before
 *  anything starts. info is filled on success and on a failure of the started operation (what it
 *  moved, how long it ran). Result codes: those of pcclAllReduce: pcclSuccess;
 *  pcclNotInitialized; pcclInvalidArgument (as pcclAllReduce, and a struct_size too small);
 *  pcclInvalidUsage; pcclTooFewPeers; pcclMismatch; pcclRankConnectionLost; pcclTimeout;
 *  pcclKicked; pcclMasterConnectionLost; pcclAborted. */
PCCL_EXPORT pcclResult_t pcclAllReduceEx(const void *sendbuf, void *recvbuf, const pcclReduceDescriptor_t *descriptor,
                                         const pcclComm_t *comm, PCCL_NULLABLE pcclReduceInfoEx_t *reduce_info_out);

/** pcclAwaitAsyncReduce reporting into a pcclReduceInfoEx_t (an extension): the duration runs
 *  from pcclAllReduceAsync to the end of the operation, not to this call. Blocks as
 *  pcclAwaitAsyncReduce. info may be NULL; a struct_size smaller than sizeof(pcclReduceInfoEx_t)
 *  is pcclInvalidArgument and the operation is not awaited (it stays in flight: await it again).
 *  Result codes: those of pcclAwaitAsyncReduce (see pcclAllReduce), and pcclInvalidArgument for
 *  a NULL handle or a struct_size too small. */
PCCL_EXPORT pcclResult_t pcclAwaitAsyncReduceEx(const pcclAsyncReduceOp_t *reduce_handle,
                                                PCCL_NULLABLE pcclReduceInfoEx_t *reduce_info_out);

/** pcclAllReduceMultipleWithRetry reporting into a pcclReduceInfoEx_t (an extension): summed
 *  bytes, the final world size, the wall time of the whole call (retries included) and the
 *  throughput over it. Blocks as pcclAllReduceMultipleWithRetry. info may be NULL; a struct_size
 *  smaller than sizeof(pcclReduceInfoEx_t) is pcclInvalidArgument, checked before anything
 *  starts. Result codes: those of pcclAllReduceMultipleWithRetry. */
PCCL_EXPORT pcclResult_t pcclAllReduceMultipleWithRetryEx(const pcclReduceOpDescriptor_t *descriptors, size_t count,
                                                          const pcclComm_t *comm,
                                                          PCCL_NULLABLE pcclReduceInfoEx_t *reduce_info_out,
                                                          int max_in_flight);

/** Collective over the peer group: elect the popular shared-state content by hash and bring
 *  every outdated peer to it, bit for bit; writes back the revision. Blocks.
 *  Returns pcclSuccess, pcclNotInitialized, pcclInvalidArgument, pcclInvalidUsage,
 *  pcclPendingAsyncOps, pcclNoSharedStateAvailable (no peer holds the popular content),
 *  pcclMismatch, pcclRankConnectionLost, pcclTimeout, pcclKicked, pcclMasterConnectionLost. */
PCCL_EXPORT pcclResult_t pcclSynchronizeSharedState(const pcclComm_t *comm, pcclSharedState_t *shared_state,
                                                    pcclSharedStateSyncStrategy_t strategy,
                                                    PCCL_NULLABLE pcclSharedStateSyncInfo_t *sync_info_out);

/* ---------------------------------------------------------------- embedded master */

/* The master calls work without pcclInit (as in PCCL 1.0). Their failure reasons are read with
 * pcclGetLastErrorMessage(NULL) on the calling thread. */

/** Create a master that will listen on listen_address (port 0 picks a free port). No
 *  network until pcclRunMaster. Non-blocking. Returns pcclSuccess, pcclInvalidArgument
 *  (master_out NULL, unknown address protocol). */
PCCL_EXPORT pcclResult_t pcclCreateMaster(ccoip_socket_address_t listen_address, pcclMasterInstance_t **master_out);

/** Extended master parameters (an extension; docs/security.md). Initialise with
 *  PCCL_MASTER_CREATE_PARAMS_EX_INIT; later versions append fields, read only when struct_size
 *  covers them. */
typedef struct pcclMasterCreateParamsEx_t {
    size_t struct_size;      /**< sizeof(pcclMasterCreateParamsEx_t) */
    /** The run secret, NUL-terminated, at least 16 bytes; NULL = secret_file, else PCCL_SECRET,
     *  else PCCL_SECRET_FILE, else none (an open run, logged at warn). */
    const char *secret;
    /** A file holding the secret (refused if group or others may read it); NULL = none. */
    const char *secret_file;
    /** Nonzero: pcclRunMaster fails (pcclInvalidArgument) when no secret was found. */
    uint32_t require_secret;
    /** The status server (docs/observability.md: GET /, /api/status, /metrics), as pccl-master
     *  --http: "HOST:PORT" ("PORT" or ":PORT": 127.0.0.1; port 0: any free port, see
     *  pcclGetMasterHttpPort). NULL = the environment's PCCL_MASTER_HTTP, else none; "" = none.
     *  With a run secret and no token file it binds to a loopback address only. Started by
     *  pcclRunMaster, which fails (pcclInvalidArgument) when it cannot be (address in use, a
     *  non-loopback bind refused, a build without HTTP). Appended after require_secret. */
    const char *http_listen;
    /** Every HTTP request must carry "Authorization: Bearer <first line of this file>". NULL =
     *  PCCL_MASTER_HTTP_TOKEN_FILE, else none; "" = none. */
    const char *http_token_file;
} pcclMasterCreateParamsEx_t;

#ifdef __cplusplus
#define PCCL_MASTER_CREATE_PARAMS_EX_INIT { sizeof(pcclMasterCreateParamsEx_t), NULL, NULL, 0, NULL, NULL }
#else
#define PCCL_MASTER_CREATE_PARAMS_EX_INIT { .struct_size = sizeof(pcclMasterCreateParamsEx_t) }
#endif

/** pcclCreateMaster with extended parameters (params NULL = pcclCreateMaster). A bad secret
 *  (too short, an unreadable or group-readable file) is reported by pcclRunMaster
 *  (pcclInvalidArgument with the reason), which reads the files and the environment. */
PCCL_EXPORT pcclResult_t pcclCreateMasterEx(ccoip_socket_address_t listen_address,
                                           PCCL_NULLABLE const pcclMasterCreateParamsEx_t *params,
                                           pcclMasterInstance_t **master_out);

/** Bind and start serving on a background thread; returns once listening (non-blocking
 *  otherwise). Returns pcclSuccess, pcclInvalidArgument (not a master; or the listen address
 *  cannot be used: port already in use, address not on this host, privileged port; the
 *  message names the address), pcclInvalidUsage (already started), pcclInternalError (any
 *  other socket failure; see pcclGetLastErrorMessage(NULL)). */
PCCL_EXPORT pcclResult_t pcclRunMaster(pcclMasterInstance_t *master);

/** The port the master actually listens on (useful with port 0). Extension.
 *  Returns pcclSuccess, pcclInvalidArgument, pcclInvalidUsage (not running). */
PCCL_EXPORT pcclResult_t pcclGetMasterPort(const pcclMasterInstance_t *master, uint16_t *port_out);

/** The port of the master's status server (http_listen, PCCL_MASTER_HTTP; useful with port 0).
 *  Extension. Returns pcclSuccess, pcclInvalidArgument, pcclInvalidUsage (not running, or no
 *  status server asked for). */
PCCL_EXPORT pcclResult_t pcclGetMasterHttpPort(const pcclMasterInstance_t *master, uint16_t *port_out);

/** Ask the master to stop. Async-signal-safe; returns at once. On a valid master it touches
 *  no lock and no memory allocator; a NULL or foreign pointer is refused with a static reason
 *  for pcclGetLastErrorMessage(NULL).
 *  Returns pcclSuccess, pcclInvalidArgument (NULL or not a master). */
PCCL_EXPORT pcclResult_t pcclInterruptMaster(pcclMasterInstance_t *master);

/** Block until the master has stopped (after pcclInterruptMaster) and its thread joined.
 *  Returns pcclSuccess, pcclInvalidArgument (not a master), pcclInvalidUsage (never run). */
PCCL_EXPORT pcclResult_t pcclMasterAwaitTermination(pcclMasterInstance_t *master);

/** Free the master; stops it first if still running (blocks until its thread joined).
 *  Returns pcclSuccess, pcclInvalidArgument (not a master). */
PCCL_EXPORT pcclResult_t pcclDestroyMaster(pcclMasterInstance_t *master);

/* ---------------------------------------------------------------- addresses (extension) */

/** Parse "host:port" into *out, for pcclCommCreateParams_t.master_address and
 *  pcclCreateMaster. Accepted: an IPv4 literal "1.2.3.4:48148" and a bracketed IPv6 literal
 *  "[::1]:48148" (also "[::ffff:1.2.3.4]:5"; no zone index); the ":port" may be left out
 *  ("1.2.3.4", "[::1]"), which means CCOIP_PROTOCOL_PORT_MASTER; the port is decimal
 *  0..65535 (0 is allowed: "any free port" where listening). No host names, no DNS.
 *  On success *out is overwritten: zeroed, then protocol, the member it names and port set.
 *  Non-blocking; needs no pcclInit.
 *  Returns pcclSuccess, pcclInvalidArgument (text or out NULL, empty text, not an IP literal,
 *  IPv6 without brackets, a missing ']', an empty or non-decimal port, a port above 65535,
 *  anything after the port; *out is left untouched; the reason, quoting the text, is this
 *  thread's pcclGetLastErrorMessage(NULL)). */
PCCL_EXPORT pcclResult_t pcclParseSocketAddress(const char *text, ccoip_socket_address_t *out);

/* ---------------------------------------------------------------- more collectives (extension)
 *
 * Broadcast, all-gather, reduce-scatter and barrier over the peer group, with the all-reduce's
 * fault semantics (docs/collectives.md has the layouts with pictures and the reasons):
 * - Ranks are ring ranks (PCCL_ATTRIBUTE_RANK, the order of pcclGetPeerGroupMembers) of the
 *   topology in force when the collective commences.
 * - world_size in a descriptor is the group size the caller laid its buffers out for (read it
 *   with pcclGetAttribute(PCCL_ATTRIBUTE_PEER_GROUP_WORLD_SIZE)); a group of another size, at the
 *   call or when the collective commences (a peer was lost in between), fails the call on every
 *   peer with pcclRankConnectionLost and writes nothing: read the size again and retry.
 * - A peer lost mid-operation fails the call on every survivor (all-or-nothing), as for
 *   pcclAllReduce; in-place buffers are restored where the operation writes over its own input
 *   (below); deadlines, pcclMismatch (peers disagree on kind, count(s), dtype, op, root,
 *   quantization or tag) and pcclTooFewPeers (a group of fewer than two) as for pcclAllReduce.
 * - The async forms return a pcclAsyncReduceOp_t awaited with pcclAwaitAsyncReduce(Ex), which
 *   fills the info as for an all-reduce. Tags share one space with all-reduce tags.
 * - On success every peer holds byte-identical results (reduce-scatter: each its own block). */

/** All-gather: block r (the data of ring rank r) lands in recvbuf at offset
 *  counts[0] + ... + counts[r-1] elements, i.e. r * count with even blocks. */
typedef struct pcclAllGatherDescriptor_t {
    /** Elements of this peer's block (its sendbuf) when counts is NULL: every block has count
     *  elements and recvbuf holds world_size * count. Ignored when counts is given. */
    size_t count;
    /** Uneven blocks: world_size entries, counts[r] = elements of ring rank r's block (zeros
     *  allowed); recvbuf holds their sum and sendbuf counts[own rank]. Every peer passes the same
     *  array. NULL: even blocks of count. */
    PCCL_NULLABLE const size_t *counts;
    uint32_t world_size;
    pcclDataType_t datatype;
    uint64_t tag;
} pcclAllGatherDescriptor_t;

/** Reduce-scatter: sendbuf holds every rank's blocks in ring rank order (the layout of
 *  all-gather's recvbuf); ring rank r receives the reduction (op over all peers) of block r. */
typedef struct pcclReduceScatterDescriptor_t {
    size_t count;                     /**< as in pcclAllGatherDescriptor_t */
    PCCL_NULLABLE const size_t *counts; /**< as in pcclAllGatherDescriptor_t */
    uint32_t world_size;
    pcclRedOp_t op;
    uint64_t tag;
    pcclReduceOperandDescriptor_t src_descriptor;
    /** As for pcclAllReduce (same dtypes and ops); the owner's result is not re-quantized. */
    pcclQuantizationOptions_t quantization_options;
} pcclReduceScatterDescriptor_t;

/** Broadcast: count elements of ring rank root's sendbuf land in every peer's recvbuf. */
typedef struct pcclBroadcastDescriptor_t {
    size_t count;
    uint32_t root;       /**< a ring rank below world_size */
    uint32_t world_size;
    pcclDataType_t datatype;
    uint64_t tag;
} pcclBroadcastDescriptor_t;

/** pcclAllReduceAsync for a caller that counts on a fixed group size (a torch.distributed world):
 *  world_size 0 behaves as pcclAllReduceAsync; otherwise a group of another size at the call, or
 *  when the operation commences (a peer lost in between, which pcclAllReduce would run without),
 *  fails it on every peer with pcclRankConnectionLost and nothing is reduced. Await it with
 *  pcclAwaitAsyncReduce. Result codes as pcclAllReduceAsync's. */
PCCL_EXPORT pcclResult_t pcclAllReduceWorldAsync(const void *sendbuf, void *recvbuf,
                                                 const pcclReduceDescriptor_t *descriptor, uint32_t world_size,
                                                 const pcclComm_t *comm, pcclAsyncReduceOp_t *reduce_handle_out);

/** Blocking all-gather (pcclAllGatherDescriptor_t has the layout). In place: sendbuf == recvbuf +
 *  (this rank's block offset) * element size; otherwise the buffers must not overlap. On a
 *  failure recvbuf's other blocks are undefined (this peer's own block is never written in
 *  place). Result codes: pcclSuccess; pcclNotInitialized; pcclInvalidArgument (NULL buffers,
 *  count 0 or all counts 0, world_size 0 or above the counts' range, unknown dtype, overlap);
 *  pcclInvalidUsage (not connected, tag in flight); pcclTooFewPeers; pcclMismatch;
 *  pcclRankConnectionLost (a peer lost, a link broken, or world_size not the group's size);
 *  pcclTimeout; pcclKicked; pcclMasterConnectionLost. info may be NULL. */
PCCL_EXPORT pcclResult_t pcclAllGather(const void *sendbuf, void *recvbuf, const pcclAllGatherDescriptor_t *descriptor,
                                       const pcclComm_t *comm, PCCL_NULLABLE pcclReduceInfo_t *reduce_info_out);
/** Start an all-gather and return at once; await it with pcclAwaitAsyncReduce. Result codes
 *  at the start as for pcclAllReduceAsync; the operation's own as for pcclAllGather. */
PCCL_EXPORT pcclResult_t pcclAllGatherAsync(const void *sendbuf, void *recvbuf,
                                            const pcclAllGatherDescriptor_t *descriptor, const pcclComm_t *comm,
                                            pcclAsyncReduceOp_t *reduce_handle_out);

/** Blocking reduce-scatter (pcclReduceScatterDescriptor_t has the layout). In place: recvbuf ==
 *  sendbuf + (this rank's block offset) * element size: the block is restored if the operation
 *  fails; otherwise the buffers must not overlap and sendbuf is never written. Reduction
 *  semantics as pcclAllReduce's. Result codes as pcclAllGather's, and pcclInvalidArgument for an
 *  unknown op or a quantization pcclAllReduce refuses. info may be NULL. */
PCCL_EXPORT pcclResult_t pcclReduceScatter(const void *sendbuf, void *recvbuf,
                                           const pcclReduceScatterDescriptor_t *descriptor, const pcclComm_t *comm,
                                           PCCL_NULLABLE pcclReduceInfo_t *reduce_info_out);
/** Start a reduce-scatter and return at once; await it with pcclAwaitAsyncReduce. */
PCCL_EXPORT pcclResult_t pcclReduceScatterAsync(const void *sendbuf, void *recvbuf,
                                                const pcclReduceScatterDescriptor_t *descriptor,
                                                const pcclComm_t *comm, pcclAsyncReduceOp_t *reduce_handle_out);

/** Blocking broadcast, a pipelined chain from the root around the ring. sendbuf is read on the
 *  root only and may be NULL elsewhere; sendbuf == recvbuf is in place (on a receiving peer
 *  whose call fails, recvbuf is then restored; out of place it is undefined). Result codes as
 *  pcclAllGather's, and pcclInvalidArgument for root >= world_size or a NULL sendbuf on the
 *  root. info may be NULL. */
PCCL_EXPORT pcclResult_t pcclBroadcast(const void *sendbuf, void *recvbuf, const pcclBroadcastDescriptor_t *descriptor,
                                       const pcclComm_t *comm, PCCL_NULLABLE pcclReduceInfo_t *reduce_info_out);
/** Start a broadcast and return at once; await it with pcclAwaitAsyncReduce. */
PCCL_EXPORT pcclResult_t pcclBroadcastAsync(const void *sendbuf, void *recvbuf,
                                            const pcclBroadcastDescriptor_t *descriptor, const pcclComm_t *comm,
                                            pcclAsyncReduceOp_t *reduce_handle_out);

/** Block until every peer of the group has called pcclBarrier with this tag (a collective of no
 *  data through the master: it commits once everyone arrived). Result codes: pcclSuccess;
 *  pcclNotInitialized; pcclInvalidArgument; pcclInvalidUsage; pcclTooFewPeers;
 *  pcclRankConnectionLost (a peer was lost while the others waited); pcclTimeout (the vote
 *  deadline passed with laggards); pcclKicked; pcclMasterConnectionLost. */
PCCL_EXPORT pcclResult_t pcclBarrier(const pcclComm_t *comm, uint64_t tag);

#ifdef __cplusplus
}
#endif

#endif /* PCCL_H */
