// The C facade: argument checks, handle validation, Status -> pcclResult_t, exception barrier.
// No logic lives here.
#include <pccl.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

#include "api/api_common.h"
#include "security/secret.h"
#include "collectives/quantize.h"
#include "collectives/reduce_kernels.h"
#include "util/log.h"

namespace pccl::api {
void markInitialized();
const char *lastErrorFor(const pcclComm_t *comm);
} // namespace pccl::api

using namespace pccl;
using pccl::api::checkComm;
using pccl::api::fail;
using pccl::api::guarded;
using pccl::api::validComm;
using pccl::api::fromCcoip;
using pccl::api::toCcoip;


namespace {

Status checkAddress(const ccoip_socket_address_t &a) {
    const long long protocol = api::rawEnum(a.inet.protocol);
    if (protocol != inetIPv4 && protocol != inetIPv6)
        return invalidArgument("address protocol must be inetIPv4 or inetIPv6, got " + std::to_string(protocol));
    return {};
}

Result<peer::ReduceArgs> reduceArgs(const void *sendbuf, void *recvbuf, const pcclReduceDescriptor_t *d) {
    if (!d) return invalidArgument("reduce descriptor is NULL");
    if (!sendbuf) return invalidArgument("sendbuf is NULL (tag " + std::to_string(d->tag) + ")");
    if (!recvbuf) return invalidArgument("recvbuf is NULL (tag " + std::to_string(d->tag) + ")");
    if (d->count == 0)
        return invalidArgument("count is 0: an all-reduce needs at least one element (tag " + std::to_string(d->tag) + ")");
    const long long dtype = api::rawEnum(d->src_descriptor.datatype), op = api::rawEnum(d->op);
    if (dtype < 0 || dtype > pcclDouble) return invalidArgument("unknown data type " + std::to_string(dtype));
    if (op < 0 || op > pcclMin) return invalidArgument("unknown reduce op " + std::to_string(op));
    const auto &q = d->quantization_options;
    const long long algo = api::rawEnum(q.algorithm), qtype = api::rawEnum(q.quantized_datatype);
    if (algo < pcclQuantNone || algo > pcclQuantZeroPointScale)
        return invalidArgument("unknown quantization algorithm " + std::to_string(algo));
    if (algo != pcclQuantNone && (qtype < 0 || qtype > pcclDouble))
        return invalidArgument("unknown quantized data type " + std::to_string(qtype));
    PCCL_RETURN_IF_ERROR(collectives::checkQuantization(d->src_descriptor.datatype, d->op, q));
    const size_t esize = collectives::dataTypeSize(d->src_descriptor.datatype);
    if (d->count > SIZE_MAX / 8) return invalidArgument("count " + std::to_string(d->count) + " is too large");
    const size_t bytes = d->count * esize;
    const auto *s = static_cast<const uint8_t *>(sendbuf);
    const auto *r = static_cast<const uint8_t *>(recvbuf);
    if (s != r && s < r + bytes && r < s + bytes)
        return invalidArgument("sendbuf and recvbuf overlap partially (in place means sendbuf == recvbuf)");
    peer::ReduceArgs a;
    a.send = sendbuf;
    a.recv = recvbuf;
    a.count = d->count;
    a.dtype = d->src_descriptor.datatype;
    a.op = d->op;
    a.tag = d->tag;
    a.quant = q;
    return a;
}

// The descriptors of pcclAllReduceMultipleWithRetry, each checked as pcclAllReduce's, tags distinct.
Result<std::vector<peer::ReduceArgs>> reduceArgsList(const pcclReduceOpDescriptor_t *descriptors, size_t count) {
    if (!descriptors) return invalidArgument("descriptors is NULL");
    if (count == 0) return invalidArgument("count is 0: pcclAllReduceMultipleWithRetry needs at least one descriptor");
    std::vector<peer::ReduceArgs> ops;
    ops.reserve(count);
    for (size_t i = 0; i < count; ++i) {
        const std::string where = "descriptor " + std::to_string(i) + ": ";
        auto a = reduceArgs(descriptors[i].sendbuf, descriptors[i].recvbuf, &descriptors[i].descriptor);
        if (!a.ok()) return Status{a.status().code(), where + a.status().message()};
        for (auto &o : ops)
            if (o.tag == a->tag) return invalidArgument(where + "duplicate tag " + std::to_string(a->tag));
        ops.push_back(*a);
    }
    return ops;
}

// PCCL 1.0's rule: an all-reduce needs a peer group of at least two peers (a group of one is
// pcclTooFewPeers, not a copy). Read from the communicator's latest view of the run; a
// communicator that is not connected passes here and is refused by startAllReduce.
Status checkGroupSize(const pcclComm_t *comm, const std::string &what) {
    if (!comm->rep->connected()) return {};
    auto size = comm->rep->attribute(PCCL_ATTRIBUTE_PEER_GROUP_WORLD_SIZE);
    if (!size.ok()) return size.status();
    if (*size >= 2) return {};
    return {pcclTooFewPeers, what + ": the peer group of this peer has " + std::to_string(*size) +
                                 (*size == 1 ? " peer" : " peers") + " (an all-reduce needs at least two); nothing was reduced"};
}

void fillInfo(pcclReduceInfo_t *out, const peer::ReduceResult &r) {
    if (!out) return;
    out->local_world_size = r.worldSize;
    out->tx_bytes = r.txBytes;
    out->rx_bytes = r.rxBytes;
}

// Throughput is this peer's bytes on the wire (both ways) per second of the operation.
void fillInfo(pcclReduceInfoEx_t *out, const peer::ReduceResult &r) {
    if (!out) return;
    out->local_world_size = r.worldSize;
    out->tx_bytes = r.txBytes;
    out->rx_bytes = r.rxBytes;
    out->duration_s = static_cast<double>(r.durationUs) / 1e6;
    out->bytes_per_second = r.durationUs ? static_cast<double>(r.txBytes + r.rxBytes) / out->duration_s : 0.0;
}

Status checkInfo(const pcclReduceInfo_t *) { return {}; }

// Every field of this version is written, so struct_size must cover all of them.
Status checkInfo(const pcclReduceInfoEx_t *info) {
    if (!info || info->struct_size >= sizeof(pcclReduceInfoEx_t)) return {};
    return invalidArgument("reduce_info_out->struct_size " + std::to_string(info->struct_size) +
                           " is smaller than sizeof(pcclReduceInfoEx_t) (" + std::to_string(sizeof(pcclReduceInfoEx_t)) +
                           "); initialise it with PCCL_REDUCE_INFO_EX_INIT");
}

// pcclAwaitAsyncReduce and its Ex form.
template <class Info>
pcclResult_t awaitReduce(const pcclAsyncReduceOp_t *handle, Info *info) {
    const pcclComm_t *comm = handle ? handle->comm : nullptr;
    return guarded(comm, [&] {
        if (!handle) return fail(nullptr, invalidArgument("reduce handle is NULL"));
        if (auto st = checkComm(comm); !st.ok()) return fail(comm, st);
        if (auto st = checkInfo(info); !st.ok()) return fail(comm, st);
        peer::ReduceResult r;
        auto st = comm->rep->awaitAllReduce(handle->tag, &r);
        fillInfo(info, r);
        return fail(comm, st);
    });
}

// pcclAllReduceMultipleWithRetry and its Ex form.
template <class Info>
pcclResult_t allReduceMultiple(const pcclReduceOpDescriptor_t *descriptors, size_t count, const pcclComm_t *comm,
                               Info *info, int max_in_flight) {
    return guarded(comm, [&] {
        if (auto st = checkComm(comm); !st.ok()) return fail(comm, st);
        auto ops = reduceArgsList(descriptors, count);
        if (!ops.ok()) return fail(comm, ops.status());
        if (max_in_flight <= 0)
            return fail(comm, invalidArgument("max_in_flight is " + std::to_string(max_in_flight) +
                                              ": it must be at least 1 (the number of all-reduces run at once)"));
        if (auto st = checkInfo(info); !st.ok()) return fail(comm, st);
        if (auto st = checkGroupSize(comm, "pcclAllReduceMultipleWithRetry"); !st.ok()) return fail(comm, st);
        peer::ReduceResult total;
        auto st = comm->rep->allReduceMultipleWithRetry(*ops, max_in_flight, &total);
        fillInfo(info, total);
        return fail(comm, st);
    });
}

} // namespace

extern "C" {

PCCL_EXPORT pcclResult_t pcclInit(void) {
    api::markInitialized();
    return pcclSuccess;
}

PCCL_EXPORT pcclResult_t pcclGetBuildInfo(pcclBuildInfo_t *info) {
    if (!info) return fail(nullptr, invalidArgument("info is NULL"));
    info->has_cuda_support = false;
    return pcclSuccess;
}

PCCL_EXPORT pcclResult_t pcclGetVersion(int *version) {
    if (!version) return fail(nullptr, invalidArgument("version is NULL"));
    *version = (PCCL_VERSION_NUMBER);
    return pcclSuccess;
}

PCCL_EXPORT const char *pcclGetErrorString(pcclResult_t result) {
    switch (result) {
        case pcclSuccess: return "pcclSuccess: no error";
        case pcclNotInitialized: return "pcclNotInitialized: pcclInit was not called";
        case pcclInternalError: return "pcclInternalError: internal library error";
        case pcclInvalidArgument: return "pcclInvalidArgument: an argument is invalid";
        case pcclInvalidUsage: return "pcclInvalidUsage: the call is not valid in the current state";
        case pcclTooFewPeers: return "pcclTooFewPeers: fewer than two peers remain";
        case pcclMasterConnectionFailed: return "pcclMasterConnectionFailed: could not connect to the master";
        case pcclRankConnectionFailed: return "pcclRankConnectionFailed: could not connect to a peer";
        case pcclRankConnectionLost: return "pcclRankConnectionLost: a peer was lost; the operation was aborted, retry";
        case pcclNoSharedStateAvailable:
            return "pcclNoSharedStateAvailable: no peer holds the shared state at the group's next revision "
                   "(advance the revision by exactly one each step)";
        case pcclPendingAsyncOps: return "pcclPendingAsyncOps: collectives are still in flight";
        case pcclUpdateTopologyFailed: return "pcclUpdateTopologyFailed: the topology update failed";
        case pcclTopologyOptimizationFailed: return "pcclTopologyOptimizationFailed: topology optimization failed";
        case pcclTimeout: return "pcclTimeout: a deadline expired";
        case pcclKicked: return "pcclKicked: the master removed this peer";
        case pcclAuthenticationFailed: return "pcclAuthenticationFailed: credentials were rejected";
        case pcclMismatch: return "pcclMismatch: peers disagree on the operation";
        case pcclMasterConnectionLost: return "pcclMasterConnectionLost: the connection to the master was lost";
        case pcclAborted: return "pcclAborted: the communicator was aborted (pcclAbortCommunicator)";
    }
    return "unknown pcclResult_t";
}

PCCL_EXPORT const char *pcclGetLastErrorMessage(const pcclComm_t *communicator) {
    return api::lastErrorFor(communicator);
}

// Validates the compatible creation parameters into options (defaults from the environment).
// The run secret: `secret` (NULL: PCCL_SECRET or PCCL_SECRET_FILE) and `encrypt` (0: PCCL_ENCRYPT).
// NAT: `advertised` (NULL: PCCL_ADVERTISED_ADDRESS) and `portRange` (NULL: PCCL_PORT_RANGE).
// Masters: `masters` (NULL: PCCL_MASTER_ADDRESSES) after params.master_address.
static Status baseOptions(const pcclCommCreateParams_t &params, peer::CommOptions *options, const char *secret = nullptr,
                          uint32_t encrypt = 0, const char *advertised = nullptr, const char *portRange = nullptr,
                          const char *masters = nullptr) {
    PCCL_RETURN_IF_ERROR(checkAddress(params.master_address));
    *options = peer::CommOptions::fromEnvironment();
    options->master = fromCcoip(params.master_address);
    if (advertised) options->advertisedAddress = std::string(advertised, ::strnlen(advertised, 1024));
    if (portRange) options->portRange = std::string(portRange, ::strnlen(portRange, 1024));
    if (masters) options->masterAddresses = std::string(masters, ::strnlen(masters, 64 * 1024));
    PCCL_RETURN_IF_ERROR(options->parseNetwork(advertised ? "advertised_address" : "PCCL_ADVERTISED_ADDRESS",
                                               portRange ? "port_range" : "PCCL_PORT_RANGE",
                                               masters ? "master_addresses" : "PCCL_MASTER_ADDRESSES"));
    PCCL_RETURN_IF_ERROR(security::loadSettings(secret ? std::optional<std::string>(secret) : std::nullopt, nullptr,
                                                encrypt, &options->security));
    options->peerGroup = params.peer_group;
    if (params.p2p_connection_pool_size > 64)
        return invalidArgument("p2p_connection_pool_size " + std::to_string(params.p2p_connection_pool_size) +
                               " is too large (at most 64)");
    if (params.p2p_connection_pool_size) options->poolSize = static_cast<int>(params.p2p_connection_pool_size);
    return {};
}

static pcclResult_t createWith(const peer::CommOptions &options, pcclComm_t **comm_out) {
    auto *comm = new pcclComm_t;
    comm->rep = std::make_unique<peer::Communicator>(options);
    *comm_out = comm;
    return pcclSuccess;
}

PCCL_EXPORT pcclResult_t pcclCreateCommunicator(const pcclCommCreateParams_t *params, pcclComm_t **comm_out) {
    return guarded(nullptr, [&] {
        if (!api::initialized()) return fail(nullptr, {pcclNotInitialized, "pcclInit has not been called"});
        if (!params) return fail(nullptr, invalidArgument("params is NULL"));
        if (!comm_out) return fail(nullptr, invalidArgument("comm_out is NULL"));
        peer::CommOptions options;
        if (auto st = baseOptions(*params, &options); !st.ok()) return fail(nullptr, st);
        return createWith(options, comm_out);
    });
}

// The deadlines and tuning fields of pcclCommCreateParamsEx_t (0: keep the default).
static Status tuningOptions(const pcclCommCreateParamsEx_t &params, peer::CommOptions *options) {
    using ms = std::chrono::milliseconds;
    auto atLeast = [&](const char *name, uint32_t v, uint32_t lo) -> Status {
        if (v != 0 && v < lo) return invalidArgument(std::string(name) + " " + std::to_string(v) + " is below " + std::to_string(lo));
        return {};
    };
    PCCL_RETURN_IF_ERROR(atLeast("heartbeat_timeout_ms", params.heartbeat_timeout_ms, 100));
    PCCL_RETURN_IF_ERROR(atLeast("op_timeout_ms", params.op_timeout_ms, 100));
    if (params.state_compression_level > 19)
        return invalidArgument("state_compression_level " + std::to_string(params.state_compression_level) +
                               " is not a zstd level (1..19, 0 = default)");
    if (params.io_threads > 64)
        return invalidArgument("io_threads " + std::to_string(params.io_threads) + " is too large (at most 64)");
    if (params.connect_timeout_ms) options->connectTimeout = ms(params.connect_timeout_ms);
    if (params.heartbeat_timeout_ms) options->heartbeatTimeout = ms(params.heartbeat_timeout_ms);
    if (params.op_timeout_ms) options->opTimeout = ms(params.op_timeout_ms);
    if (params.admission_timeout_ms) options->admissionTimeout = ms(params.admission_timeout_ms);
    if (params.io_threads) options->ioThreads = static_cast<int>(params.io_threads);
    if (params.state_compression_level) options->stateCompressionLevel = static_cast<int>(params.state_compression_level);
    return {};
}

// Validates pcclCommCreateParamsEx_t into options. Fields appended later are read only when
// struct_size covers them.
static Status exOptions(const pcclCommCreateParamsEx_t &params, peer::CommOptions *options) {
    constexpr size_t kFirstSize = offsetof(pcclCommCreateParamsEx_t, tcp_congestion);
    if (params.struct_size < kFirstSize)
        return invalidArgument("struct_size " + std::to_string(params.struct_size) +
                               " is smaller than the first pcclCommCreateParamsEx_t (" + std::to_string(kFirstSize) +
                               " bytes); initialise with PCCL_COMM_CREATE_PARAMS_EX_INIT");
#define PCCL_EX_FIELD(field, absent) \
    (params.struct_size >= offsetof(pcclCommCreateParamsEx_t, field) + sizeof(params.field) ? params.field : (absent))
    const char *congestion = PCCL_EX_FIELD(tcp_congestion, nullptr);
    const uint32_t sameHost = PCCL_EX_FIELD(same_host, PCCL_SAME_HOST_DEFAULT);
    const char *secret = PCCL_EX_FIELD(secret, nullptr);
    const uint32_t encrypt = PCCL_EX_FIELD(encrypt, 0);
    const char *advertised = PCCL_EX_FIELD(advertised_address, nullptr);
    const char *portRange = PCCL_EX_FIELD(port_range, nullptr);
    const char *masters = PCCL_EX_FIELD(master_addresses, nullptr);
    const uint32_t reconnectMs = PCCL_EX_FIELD(master_reconnect_timeout_ms, 0);
#undef PCCL_EX_FIELD
    if (sameHost > PCCL_SAME_HOST_OFF)
        return invalidArgument("same_host " + std::to_string(sameHost) +
                               " is not PCCL_SAME_HOST_DEFAULT (0), PCCL_SAME_HOST_ON (1) or PCCL_SAME_HOST_OFF (2)");
    if (congestion && (!*congestion || std::strlen(congestion) > 15))
        return invalidArgument(std::string("tcp_congestion \"") + congestion +
                               "\" is not a congestion control name (1..15 characters, or auto, or system)");
    PCCL_RETURN_IF_ERROR(baseOptions(params.params, options, secret, encrypt, advertised, portRange, masters));
    if (reconnectMs == PCCL_MASTER_RECONNECT_OFF) options->reconnectTimeout = std::chrono::milliseconds(0);
    else if (reconnectMs) options->reconnectTimeout = std::chrono::milliseconds(reconnectMs);
    PCCL_RETURN_IF_ERROR(tuningOptions(params, options));
    if (congestion) options->tcpCongestion = congestion;
    if (sameHost != PCCL_SAME_HOST_DEFAULT) options->sameHost = sameHost == PCCL_SAME_HOST_ON;
    return {};
}

PCCL_EXPORT pcclResult_t pcclCreateCommunicatorEx(const pcclCommCreateParamsEx_t *params, pcclComm_t **comm_out) {
    return guarded(nullptr, [&] {
        if (!api::initialized()) return fail(nullptr, {pcclNotInitialized, "pcclInit has not been called"});
        if (!params) return fail(nullptr, invalidArgument("params is NULL"));
        if (!comm_out) return fail(nullptr, invalidArgument("comm_out is NULL"));
        peer::CommOptions options;
        if (auto st = exOptions(*params, &options); !st.ok()) return fail(nullptr, st);
        return createWith(options, comm_out);
    });
}

PCCL_EXPORT pcclResult_t pcclDestroyCommunicator(pcclComm_t *comm) {
    if (!comm) return pcclSuccess;
    return guarded(nullptr, [&] {
        if (auto st = checkComm(comm); !st.ok()) return fail(nullptr, st);
        comm->magic = api::kDeadMagic;
        comm->rep.reset();
        delete comm;
        return pcclSuccess;
    });
}

PCCL_EXPORT pcclResult_t pcclAbortCommunicator(pcclComm_t *comm) {
    return guarded(comm, [&] {
        if (auto st = checkComm(comm); !st.ok()) return fail(comm, st);
        comm->rep->abort();
        return pcclSuccess;
    });
}

PCCL_EXPORT pcclResult_t pcclConnect(pcclComm_t *comm) {
    return guarded(comm, [&] {
        if (auto st = checkComm(comm); !st.ok()) return fail(comm, st);
        return fail(comm, comm->rep->connect());
    });
}

PCCL_EXPORT pcclResult_t pcclGetPeerGroupMembers(const pcclComm_t *comm, pcclMemberInfo_t *members, size_t capacity,
                                                 size_t *count_out) {
    return guarded(comm, [&] {
        if (auto st = checkComm(comm); !st.ok()) return fail(comm, st);
        if (!count_out) return fail(comm, invalidArgument("count_out is NULL"));
        if (!members && capacity > 0) return fail(comm, invalidArgument("members is NULL but capacity is not 0"));
        uint32_t group = 0;
        auto ring = comm->rep->members(&group);
        if (!ring.ok()) return fail(comm, ring.status());
        *count_out = ring->size();
        for (size_t i = 0; i < ring->size() && i < capacity; ++i) {
            std::memcpy(members[i].uuid.data, (*ring)[i].uuid.bytes.data(), 16);
            members[i].data_address = toCcoip((*ring)[i].data_addr);
            members[i].peer_group = group;
            members[i].rank = static_cast<uint32_t>(i);
        }
        return pcclSuccess;
    });
}

PCCL_EXPORT pcclResult_t pcclGetCommunicatorStats(const pcclComm_t *comm, pcclCommStats_t *stats_out) {
    return guarded(comm, [&] {
        if (auto st = checkComm(comm); !st.ok()) return fail(comm, st);
        if (!stats_out) return fail(comm, invalidArgument("stats_out is NULL"));
        constexpr size_t kFirstSize = offsetof(pcclCommStats_t, last_send_bytes_per_second) + sizeof(uint64_t);
        const size_t size = stats_out->struct_size;
        if (size < kFirstSize)
            return fail(comm, invalidArgument("stats_out->struct_size " + std::to_string(size) +
                                              " is smaller than pcclCommStats_t (" + std::to_string(kFirstSize) +
                                              " bytes); initialise it with PCCL_COMM_STATS_INIT"));
        const peer::Stats s = comm->rep->stats();
        const peer::Counters &c = s.counters;
        pcclCommStats_t out{};
        out.all_reduces_completed = c.allReducesCompleted;
        out.all_reduces_failed = c.allReducesFailed;
        out.syncs_completed = c.syncsCompleted;
        out.syncs_failed = c.syncsFailed;
        out.tx_bytes = c.txBytes;
        out.rx_bytes = c.rxBytes;
        out.last_all_reduce_micros = c.lastAllReduceUs;
        out.last_all_reduce_bytes = c.lastAllReduceBytes;
        out.world_size = s.worldSize;
        out.group_world_size = s.groupWorldSize;
        out.rank = s.rank;
        out.peer_group = s.peerGroup;
        out.epoch = s.epoch;
        out.votes_completed = c.votesCompleted;
        out.votes_failed = c.votesFailed;
        out.last_send_bytes_per_second = c.lastSendBytesPerS;
        out.collectives_completed = c.collectivesCompleted;
        out.collectives_failed = c.collectivesFailed;
        // Only the fields struct_size covers (a caller built against this version or a later one).
        std::memcpy(reinterpret_cast<char *>(stats_out) + sizeof(size_t), reinterpret_cast<const char *>(&out) + sizeof(size_t),
                    std::min(size, sizeof(out)) - sizeof(size_t));
        return pcclSuccess;
    });
}

PCCL_EXPORT pcclResult_t pcclGetAttribute(const pcclComm_t *comm, pcclAttribute_t attribute, int *p_attribute_out) {
    return guarded(comm, [&] {
        if (auto st = checkComm(comm); !st.ok()) return fail(comm, st);
        if (!p_attribute_out) return fail(comm, invalidArgument("p_attribute_out is NULL"));
        const long long attr = api::rawEnum(attribute);
        if (attr < PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE || attr > PCCL_ATTRIBUTE_RANK)
            return fail(comm, invalidArgument("unknown attribute " + std::to_string(attr)));
        auto v = comm->rep->attribute(attribute);
        if (!v.ok()) return fail(comm, v.status());
        *p_attribute_out = *v;
        return pcclSuccess;
    });
}

PCCL_EXPORT pcclResult_t pcclUpdateTopology(pcclComm_t *comm) {
    return guarded(comm, [&] {
        if (auto st = checkComm(comm); !st.ok()) return fail(comm, st);
        return fail(comm, comm->rep->updateTopology());
    });
}

PCCL_EXPORT pcclResult_t pcclArePeersPending(const pcclComm_t *comm, bool *pending) {
    return guarded(comm, [&] {
        if (auto st = checkComm(comm); !st.ok()) return fail(comm, st);
        if (!pending) return fail(comm, invalidArgument("pending is NULL"));
        auto v = comm->rep->arePeersPending();
        if (!v.ok()) return fail(comm, v.status());
        *pending = *v;
        return pcclSuccess;
    });
}

PCCL_EXPORT pcclResult_t pcclOptimizeTopology(const pcclComm_t *comm) {
    return guarded(comm, [&] {
        if (auto st = checkComm(comm); !st.ok()) return fail(comm, st);
        return fail(comm, comm->rep->optimizeTopology());
    });
}

PCCL_EXPORT pcclResult_t pcclAllReduceAsync(const void *sendbuf, void *recvbuf, const pcclReduceDescriptor_t *descriptor,
                                            const pcclComm_t *comm, pcclAsyncReduceOp_t *reduce_handle_out) {
    return pcclAllReduceWorldAsync(sendbuf, recvbuf, descriptor, 0, comm, reduce_handle_out);
}

PCCL_EXPORT pcclResult_t pcclAllReduceWorldAsync(const void *sendbuf, void *recvbuf,
                                                 const pcclReduceDescriptor_t *descriptor, uint32_t world_size,
                                                 const pcclComm_t *comm, pcclAsyncReduceOp_t *reduce_handle_out) {
    return guarded(comm, [&] {
        if (auto st = checkComm(comm); !st.ok()) return fail(comm, st);
        if (!reduce_handle_out) return fail(comm, invalidArgument("reduce_handle_out is NULL"));
        auto args = reduceArgs(sendbuf, recvbuf, descriptor);
        if (!args.ok()) return fail(comm, args.status());
        const std::string what = "all-reduce tag " + std::to_string(args->tag);
        if (auto st = checkGroupSize(comm, what); !st.ok()) return fail(comm, st);
        if (world_size && comm->rep->connected()) {
            // The caller counts on this group size: another one fails as a lost peer does.
            auto size = comm->rep->attribute(PCCL_ATTRIBUTE_PEER_GROUP_WORLD_SIZE);
            if (size.ok() && static_cast<uint32_t>(*size) != world_size)
                return fail(comm, Status{pcclRankConnectionLost,
                                         what + ": the peer group has " + std::to_string(*size) + " peers, not world_size " +
                                             std::to_string(world_size) + " (the group changed); nothing was reduced"});
            args->world = world_size;
        }
        if (auto st = comm->rep->startAllReduce(*args); !st.ok()) return fail(comm, st);
        reduce_handle_out->comm = const_cast<pcclComm_t *>(comm);
        reduce_handle_out->tag = descriptor->tag;
        return pcclSuccess;
    });
}

PCCL_EXPORT pcclResult_t pcclAwaitAsyncReduce(const pcclAsyncReduceOp_t *handle, pcclReduceInfo_t *reduce_info_out) {
    return awaitReduce(handle, reduce_info_out);
}

PCCL_EXPORT pcclResult_t pcclAwaitAsyncReduceEx(const pcclAsyncReduceOp_t *handle, pcclReduceInfoEx_t *reduce_info_out) {
    return awaitReduce(handle, reduce_info_out);
}

PCCL_EXPORT pcclResult_t pcclAllReduce(const void *sendbuf, void *recvbuf, const pcclReduceDescriptor_t *descriptor,
                                       const pcclComm_t *comm, pcclReduceInfo_t *reduce_info_out) {
    pcclAsyncReduceOp_t handle;
    const pcclResult_t started = pcclAllReduceAsync(sendbuf, recvbuf, descriptor, comm, &handle);
    if (started != pcclSuccess) return started;
    return pcclAwaitAsyncReduce(&handle, reduce_info_out);
}

PCCL_EXPORT pcclResult_t pcclAllReduceEx(const void *sendbuf, void *recvbuf, const pcclReduceDescriptor_t *descriptor,
                                         const pcclComm_t *comm, pcclReduceInfoEx_t *reduce_info_out) {
    const pcclResult_t checked = guarded(comm, [&] {
        if (auto st = checkComm(comm); !st.ok()) return fail(comm, st);
        return fail(comm, checkInfo(reduce_info_out));
    });
    if (checked != pcclSuccess) return checked;
    pcclAsyncReduceOp_t handle;
    const pcclResult_t started = pcclAllReduceAsync(sendbuf, recvbuf, descriptor, comm, &handle);
    if (started != pcclSuccess) return started;
    return pcclAwaitAsyncReduceEx(&handle, reduce_info_out);
}

PCCL_EXPORT pcclResult_t pcclAllReduceMultipleWithRetry(const pcclReduceOpDescriptor_t *descriptors, size_t count,
                                                        const pcclComm_t *comm, pcclReduceInfo_t *reduce_info_out,
                                                        int max_in_flight) {
    return allReduceMultiple(descriptors, count, comm, reduce_info_out, max_in_flight);
}

PCCL_EXPORT pcclResult_t pcclAllReduceMultipleWithRetryEx(const pcclReduceOpDescriptor_t *descriptors, size_t count,
                                                          const pcclComm_t *comm, pcclReduceInfoEx_t *reduce_info_out,
                                                          int max_in_flight) {
    return allReduceMultiple(descriptors, count, comm, reduce_info_out, max_in_flight);
}

PCCL_EXPORT pcclResult_t pcclSynchronizeSharedState(const pcclComm_t *comm, pcclSharedState_t *shared_state,
                                                    pcclSharedStateSyncStrategy_t strategy,
                                                    pcclSharedStateSyncInfo_t *sync_info_out) {
    return guarded(comm, [&] {
        if (auto st = checkComm(comm); !st.ok()) return fail(comm, st);
        if (!shared_state) return fail(comm, invalidArgument("shared_state is NULL"));
        const long long strat = api::rawEnum(strategy);
        if (strat < PCCL_SHARED_STATE_SYNC_STRATEGY_ENFORCE_POPULAR || strat > PCCL_SHARED_STATE_SYNC_STRATEGY_SEND_ONLY)
            return fail(comm, invalidArgument("unknown sync strategy " + std::to_string(strat)));
        if (shared_state->count > 0 && !shared_state->infos) return fail(comm, invalidArgument("shared_state->infos is NULL"));
        std::vector<peer::SyncEntry> entries;
        for (size_t i = 0; i < shared_state->count; ++i) {
            const pcclTensorInfo_t &t = shared_state->infos[i];
            const std::string where = "shared state entry " + std::to_string(i);
            if (!t.name || !*t.name) return fail(comm, invalidArgument(where + " has no name"));
            const std::string name = t.name;
            if (name.size() > 4096) return fail(comm, invalidArgument(where + ": name longer than 4096 bytes"));
            const long long dtype = api::rawEnum(t.datatype), device = api::rawEnum(t.device_type);
            if (dtype < 0 || dtype > pcclDouble)
                return fail(comm, invalidArgument(where + " '" + name + "': unknown data type " + std::to_string(dtype)));
            if (device == pcclDeviceCuda)
                return fail(comm, invalidArgument(where + " '" + name + "' is on a CUDA device, but this build has no CUDA support"));
            if (device != pcclDeviceCpu)
                return fail(comm, invalidArgument(where + " '" + name + "': unknown device type " + std::to_string(device)));
            if (t.count > 0 && !t.data) return fail(comm, invalidArgument(where + " '" + name + "': data is NULL"));
            if (t.count > (uint64_t{1} << 40) / 8) return fail(comm, invalidArgument(where + " '" + name + "' is too large"));
            for (auto &e : entries)
                if (e.name == name) return fail(comm, invalidArgument("shared state entry name '" + name + "' is used twice"));
            entries.push_back({name, t.data, t.count, t.datatype, t.allow_content_inequality});
        }
        auto r = comm->rep->syncSharedState(entries, shared_state->revision, strategy);
        if (!r.ok()) return fail(comm, r.status());
        shared_state->revision = r->revision;
        if (sync_info_out) {
            sync_info_out->tx_bytes = r->txBytes;
            sync_info_out->rx_bytes = r->rxBytes;
        }
        return pcclSuccess;
    });
}

} // extern "C"
