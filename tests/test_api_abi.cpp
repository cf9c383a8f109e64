// Public API: pccl.h compiles as C++ and keeps the PCCL 1.0 compatibility surface (enum values,
// struct field order). Mostly compile-time checks; the test case only makes them show up in reports.
#include <pccl.h>

#include <catch2/catch.hpp>

#include <cstddef>
#include <type_traits>

namespace {

static_assert(pcclSuccess == 0 && pcclNotInitialized == 1 && pcclInternalError == 2 && pcclInvalidArgument == 3 &&
              pcclInvalidUsage == 4 && pcclTooFewPeers == 5 && pcclMasterConnectionFailed == 6 &&
              pcclRankConnectionFailed == 7 && pcclRankConnectionLost == 8 && pcclNoSharedStateAvailable == 9 &&
              pcclPendingAsyncOps == 10 && pcclUpdateTopologyFailed == 11 && pcclTopologyOptimizationFailed == 12);
static_assert(pcclUint8 == 0 && pcclInt8 == 1 && pcclInt16 == 2 && pcclUint16 == 3 && pcclUint32 == 4 &&
              pcclInt32 == 5 && pcclUint64 == 6 && pcclInt64 == 7 && pcclFloat16 == 8 && pcclBFloat16 == 9 &&
              pcclFloat == 10 && pcclDouble == 11);
static_assert(pcclDeviceCpu == 0 && pcclDeviceCuda == 1);
static_assert(pcclSum == 0 && pcclAvg == 1 && pcclProd == 2 && pcclMax == 3 && pcclMin == 4);
static_assert(PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE == 1 && PCCL_ATTRIBUTE_PEER_GROUP_WORLD_SIZE == 2 &&
              PCCL_ATTRIBUTE_NUM_DISTINCT_PEER_GROUPS == 3 && PCCL_ATTRIBUTE_LARGEST_PEER_GROUP_WORLD_SIZE == 4);
static_assert(PCCL_SHARED_STATE_SYNC_STRATEGY_ENFORCE_POPULAR == 0 && PCCL_SHARED_STATE_SYNC_STRATEGY_RECEIVE_ONLY == 1 &&
              PCCL_SHARED_STATE_SYNC_STRATEGY_SEND_ONLY == 2);
static_assert(pcclDistributionNone == 0 && pcclDistributionNormal == 1 && pcclDistributionUniform == 2);
static_assert(pcclQuantNone == 0 && pcclQuantMinMax == 1 && pcclQuantZeroPointScale == 2);
static_assert(inetIPv4 == 0 && inetIPv6 == 1);
static_assert(CCOIP_PROTOCOL_PORT_MASTER == 48148);

#define FIELDS_IN_ORDER(T, a, b) static_assert(offsetof(T, a) < offsetof(T, b), #T ": " #a " before " #b)
FIELDS_IN_ORDER(ccoip_inet_address_t, protocol, ipv4);
FIELDS_IN_ORDER(ccoip_inet_address_t, ipv4, ipv6);
FIELDS_IN_ORDER(ccoip_socket_address_t, inet, port);
FIELDS_IN_ORDER(pcclCommCreateParams_t, master_address, peer_group);
FIELDS_IN_ORDER(pcclCommCreateParams_t, peer_group, p2p_connection_pool_size);
FIELDS_IN_ORDER(pcclReduceInfo_t, local_world_size, tx_bytes);
FIELDS_IN_ORDER(pcclReduceInfo_t, tx_bytes, rx_bytes);
FIELDS_IN_ORDER(pcclReduceOperandDescriptor_t, datatype, distribution_hint);
FIELDS_IN_ORDER(pcclQuantizationOptions_t, quantized_datatype, algorithm);
FIELDS_IN_ORDER(pcclCommCreateParamsEx_t, encrypt, advertised_address);
FIELDS_IN_ORDER(pcclCommCreateParamsEx_t, advertised_address, port_range);
FIELDS_IN_ORDER(pcclReduceDescriptor_t, count, op);
FIELDS_IN_ORDER(pcclReduceDescriptor_t, op, tag);
FIELDS_IN_ORDER(pcclReduceDescriptor_t, tag, src_descriptor);
FIELDS_IN_ORDER(pcclReduceDescriptor_t, src_descriptor, quantization_options);
FIELDS_IN_ORDER(pcclReduceOpDescriptor_t, sendbuf, recvbuf);
FIELDS_IN_ORDER(pcclReduceOpDescriptor_t, recvbuf, descriptor);
FIELDS_IN_ORDER(pcclAsyncReduceOp_t, comm, tag);
FIELDS_IN_ORDER(pcclTensorInfo_t, name, data);
FIELDS_IN_ORDER(pcclTensorInfo_t, data, count);
FIELDS_IN_ORDER(pcclTensorInfo_t, count, datatype);
FIELDS_IN_ORDER(pcclTensorInfo_t, datatype, device_type);
FIELDS_IN_ORDER(pcclTensorInfo_t, device_type, allow_content_inequality);
FIELDS_IN_ORDER(pcclSharedState_t, revision, count);
FIELDS_IN_ORDER(pcclSharedState_t, count, infos);
FIELDS_IN_ORDER(pcclSharedStateSyncInfo_t, tx_bytes, rx_bytes);
// Extensions with a size-first struct: fields are only ever appended.
static_assert(offsetof(pcclCommStats_t, struct_size) == 0);
FIELDS_IN_ORDER(pcclCommStats_t, struct_size, all_reduces_completed);
FIELDS_IN_ORDER(pcclCommStats_t, last_all_reduce_bytes, world_size);
FIELDS_IN_ORDER(pcclCommStats_t, peer_group, epoch);
FIELDS_IN_ORDER(pcclCommStats_t, epoch, votes_completed);
FIELDS_IN_ORDER(pcclCommStats_t, last_send_bytes_per_second, collectives_completed);
FIELDS_IN_ORDER(pcclCommStats_t, collectives_completed, collectives_failed);
FIELDS_IN_ORDER(pcclCommStats_t, votes_failed, last_send_bytes_per_second);
static_assert(sizeof(pcclCommStats_t) == offsetof(pcclCommStats_t, collectives_failed) + sizeof(uint64_t));
#undef FIELDS_IN_ORDER

static_assert(std::is_same_v<pcclReduceOpDescriptor_t, struct pcclReduceSingleDescriptor_t>);
static_assert(std::is_same_v<pcclMasterInstance_t, struct pcclMasterInstanceState_t>);
static_assert(sizeof(ccoip_ipv4_address_t) == 4 && sizeof(ccoip_ipv6_address_t) == 16 && sizeof(pcclRankUuid_t) == 16);
static_assert(std::is_same_v<decltype(&pcclAllReduce),
                             pcclResult_t (*)(const void *, void *, const pcclReduceDescriptor_t *, const pcclComm_t *,
                                              pcclReduceInfo_t *)>);
static_assert(std::is_same_v<decltype(&pcclCreateMaster),
                             pcclResult_t (*)(ccoip_socket_address_t, pcclMasterInstance_t **)>);

} // namespace

TEST_CASE("abi: pccl.h compiles as C++ with the fixed enum values and field order", "[api][abi]") {
    // Every check is a static_assert above; reaching this line means the header is as promised.
    SUCCEED("pccl.h compiled as C++ with the PCCL 1.0 surface");
}
