// Public API: argument validation, usage errors, error strings and messages.
#include "support/cluster.h"
#include "support/dtypes.h"

#include <catch2/catch.hpp>

#include <cstddef>

#include <algorithm>
#include <string>
#include <sys/wait.h>
#include <vector>

using namespace pccl_test;

namespace {

// The call failed with `expected` and left a non-empty reason in pcclGetLastErrorMessage(msg_comm).
#define EXPECT_FAILS_WITH(msg_comm, expected, expr)                                                                    \
    do {                                                                                                               \
        PT_EXPECT_RESULT(msg_comm, expected, expr);                                                                    \
        const char *pt_msg_ = pcclGetLastErrorMessage(msg_comm);                                                       \
        PT_CHECK_MSG(pt_msg_ != nullptr && pt_msg_[0] != '\0',                                                         \
                     #expr " failed but pcclGetLastErrorMessage is empty");                                            \
    } while (0)

void runHelper(const char *mode) {
    ChildProcess child({PCCL_TEST_PEER_BIN, mode});
    const auto ok = child.waitForLine("OK", 30);
    const auto status = child.wait(10);
    ScopedContext context(std::string("pccl_test_peer ") + mode + " stdout:\n" + child.transcript());
    PT_CHECK_MSG(status.has_value(), "still running after 40 s");
    PT_CHECK_MSG(!WIFSIGNALED(*status), "killed by signal " << WTERMSIG(*status) << " (a handle was not validated?)");
    PT_CHECK(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
    PT_CHECK(ok.has_value());
}

} // namespace

TEST_CASE("args: every result code has a non-empty error string, even an unknown one", "[api][args]") {
    for (int code = 0; code <= 17; ++code) {
        const char *s = pcclGetErrorString(static_cast<pcclResult_t>(code));
        INFO("code " << code);
        REQUIRE(s != nullptr);
        CHECK(std::string(s).size() > 0);
    }
    const char *unknown = pcclGetErrorString(static_cast<pcclResult_t>(999));
    REQUIRE(unknown != nullptr);
    // Distinct codes have distinct strings.
    CHECK(std::string(pcclGetErrorString(pcclRankConnectionLost)) != pcclGetErrorString(pcclMismatch));
    CHECK(std::string(pcclGetErrorString(pcclSuccess)) != pcclGetErrorString(pcclInvalidArgument));
}

TEST_CASE("args: library calls validate their pointers", "[api][args]") {
    isolated(60, [&] {
        PT_EXPECT_RESULT(nullptr, pcclSuccess, pcclInit());
        PT_EXPECT_RESULT(nullptr, pcclSuccess, pcclInit()); // idempotent
        PT_EXPECT_RESULT(nullptr, pcclInvalidArgument, pcclGetBuildInfo(nullptr));
        PT_EXPECT_RESULT(nullptr, pcclInvalidArgument, pcclGetVersion(nullptr));
        pcclBuildInfo_t info{};
        PT_EXPECT_RESULT(nullptr, pcclSuccess, pcclGetBuildInfo(&info));
        int version = -1;
        PT_EXPECT_RESULT(nullptr, pcclSuccess, pcclGetVersion(&version));
        PT_CHECK(version >= 0);
        PT_EXPECT_RESULT(nullptr, pcclSuccess, pcclDestroyCommunicator(nullptr));
        PT_CHECK(pcclGetLastErrorMessage(nullptr) != nullptr);

        pcclCommCreateParams_t params{};
        params.master_address = loopbackV4(CCOIP_PROTOCOL_PORT_MASTER);
        pcclComm_t *comm = nullptr;
        runWithin(10, [&] {
            EXPECT_FAILS_WITH(nullptr, pcclInvalidArgument, pcclCreateCommunicator(nullptr, &comm));
            EXPECT_FAILS_WITH(nullptr, pcclInvalidArgument, pcclCreateCommunicator(&params, nullptr));
            pcclCommCreateParams_t bad = params;
            bad.master_address.inet.protocol = static_cast<ccoip_inet_protocol_t>(7);
            EXPECT_FAILS_WITH(nullptr, pcclInvalidArgument, pcclCreateCommunicator(&bad, &comm));
            PT_CHECK(comm == nullptr);
            pcclMasterInstance_t *m = nullptr;
            EXPECT_FAILS_WITH(nullptr, pcclInvalidArgument, pcclCreateMaster(loopbackV4(0), nullptr));
            ccoip_socket_address_t bad_listen = loopbackV4(0);
            bad_listen.inet.protocol = static_cast<ccoip_inet_protocol_t>(7);
            EXPECT_FAILS_WITH(nullptr, pcclInvalidArgument, pcclCreateMaster(bad_listen, &m));
            EXPECT_FAILS_WITH(nullptr, pcclInvalidArgument, pcclRunMaster(nullptr));
            uint16_t port = 0;
            EXPECT_FAILS_WITH(nullptr, pcclInvalidArgument, pcclGetMasterPort(nullptr, &port));
            EXPECT_FAILS_WITH(nullptr, pcclInvalidArgument, pcclInterruptMaster(nullptr));
            EXPECT_FAILS_WITH(nullptr, pcclInvalidArgument, pcclMasterAwaitTermination(nullptr));
            EXPECT_FAILS_WITH(nullptr, pcclInvalidArgument, pcclDestroyMaster(nullptr));
            // The extended parameters: size, deadlines and thread counts are checked.
            pcclCommCreateParamsEx_t ex = PCCL_COMM_CREATE_PARAMS_EX_INIT;
            ex.params = params;
            EXPECT_FAILS_WITH(nullptr, pcclInvalidArgument, pcclCreateCommunicatorEx(nullptr, &comm));
            EXPECT_FAILS_WITH(nullptr, pcclInvalidArgument, pcclCreateCommunicatorEx(&ex, nullptr));
            for (auto change : std::initializer_list<void (*)(pcclCommCreateParamsEx_t &)>{
                     [](pcclCommCreateParamsEx_t &e) { e.struct_size = offsetof(pcclCommCreateParamsEx_t, tcp_congestion) - 4; },
                     [](pcclCommCreateParamsEx_t &e) { e.tcp_congestion = ""; },
                     [](pcclCommCreateParamsEx_t &e) { e.tcp_congestion = "a-name-of-16-chr"; },
                     [](pcclCommCreateParamsEx_t &e) { e.op_timeout_ms = 99; },
                     [](pcclCommCreateParamsEx_t &e) { e.heartbeat_timeout_ms = 1; },
                     [](pcclCommCreateParamsEx_t &e) { e.io_threads = 65; },
                     [](pcclCommCreateParamsEx_t &e) { e.state_compression_level = 20; },
                     [](pcclCommCreateParamsEx_t &e) { e.params.p2p_connection_pool_size = 65; }}) {
                pcclCommCreateParamsEx_t b = ex;
                change(b);
                EXPECT_FAILS_WITH(nullptr, pcclInvalidArgument, pcclCreateCommunicatorEx(&b, &comm));
                PT_CHECK(comm == nullptr);
            }
            PT_EXPECT_RESULT(nullptr, pcclSuccess, pcclCreateCommunicatorEx(&ex, &comm));
            PT_EXPECT_RESULT(nullptr, pcclSuccess, pcclDestroyCommunicator(comm));
            // A caller built against the header before tcp_congestion existed passes a smaller
            // struct: accepted, and the garbage after it is never read.
            pcclCommCreateParamsEx_t old = ex;
            old.struct_size = offsetof(pcclCommCreateParamsEx_t, tcp_congestion);
            old.tcp_congestion = "";
            PT_EXPECT_RESULT(nullptr, pcclSuccess, pcclCreateCommunicatorEx(&old, &comm));
            PT_EXPECT_RESULT(nullptr, pcclSuccess, pcclDestroyCommunicator(comm));
            pcclCommCreateParamsEx_t named = ex;
            named.tcp_congestion = "cubic";
            PT_EXPECT_RESULT(nullptr, pcclSuccess, pcclCreateCommunicatorEx(&named, &comm));
            PT_EXPECT_RESULT(nullptr, pcclSuccess, pcclDestroyCommunicator(comm));
            comm = nullptr;
            pcclAsyncReduceOp_t h{};
            EXPECT_FAILS_WITH(nullptr, pcclInvalidArgument, pcclAwaitAsyncReduce(nullptr, nullptr));
            EXPECT_FAILS_WITH(nullptr, pcclInvalidArgument, pcclAwaitAsyncReduce(&h, nullptr)); // h.comm == NULL
        }, "pointer validation");
    });
}

TEST_CASE("args: a communicator that is not connected refuses every operation with pcclInvalidUsage", "[api][args]") {
    isolated(60, [&] {
        EmbeddedMaster master;
        runWithin(20, [&] {
            pcclComm_t *comm = createComm(master.address());
            CommGuard guard(comm);
            int v = 0;
            EXPECT_FAILS_WITH(comm, pcclInvalidUsage, pcclGetAttribute(comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE, &v));
            EXPECT_FAILS_WITH(comm, pcclInvalidUsage, pcclUpdateTopology(comm));
            bool pending = false;
            EXPECT_FAILS_WITH(comm, pcclInvalidUsage, pcclArePeersPending(comm, &pending));
            EXPECT_FAILS_WITH(comm, pcclInvalidUsage, pcclOptimizeTopology(comm));
            std::vector<float> buf(16, 1.0f);
            const std::vector<float> before = buf;
            const pcclReduceDescriptor_t d = makeDescriptor(buf.size(), pcclFloat, pcclSum, 0);
            EXPECT_FAILS_WITH(comm, pcclInvalidUsage, pcclAllReduce(buf.data(), buf.data(), &d, comm, nullptr));
            pcclAsyncReduceOp_t h{};
            EXPECT_FAILS_WITH(comm, pcclInvalidUsage, pcclAllReduceAsync(buf.data(), buf.data(), &d, comm, &h));
            pcclReduceOpDescriptor_t op{buf.data(), buf.data(), d};
            EXPECT_FAILS_WITH(comm, pcclInvalidUsage, pcclAllReduceMultipleWithRetry(&op, 1, comm, nullptr, 1));
            float x = 1.0f;
            pcclTensorInfo_t t{"x", &x, 1, pcclFloat, pcclDeviceCpu, false};
            pcclSharedState_t state{0, 1, &t};
            EXPECT_FAILS_WITH(comm, pcclInvalidUsage,
                              pcclSynchronizeSharedState(comm, &state, PCCL_SHARED_STATE_SYNC_STRATEGY_ENFORCE_POPULAR, nullptr));
            PT_CHECK(buf == before);
            // ... and it can still connect afterwards.
            PT_OK(comm, pcclConnect(comm));
            EXPECT_FAILS_WITH(comm, pcclInvalidUsage, pcclConnect(comm)); // already connected
            PT_CHECK_EQ(attribute(comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE), 1);
        }, "unconnected communicator", [&] { master.destroy(); });
    });
}

TEST_CASE("args: all-reduce rejects NULL comm, NULL buffers, count 0, unknown dtype/op/quantization and NULL "
          "descriptors with pcclInvalidArgument",
          "[api][args]") {
    isolated(60, [&] {
        EmbeddedMaster master;
        runWithin(30, [&] {
            pcclComm_t *comm = createComm(master.address());
            CommGuard guard(comm);
            PT_OK(comm, pcclConnect(comm));
            std::vector<float> send(64, 2.0f), recv(64, -1.0f);
            const pcclReduceDescriptor_t good = makeDescriptor(64, pcclFloat, pcclSum, 0);
            auto with = [&](auto mutate) {
                pcclReduceDescriptor_t d = good;
                mutate(d);
                return d;
            };
            const pcclReduceDescriptor_t zero = with([](pcclReduceDescriptor_t &d) { d.count = 0; });
            const pcclReduceDescriptor_t bad_dtype =
                with([](pcclReduceDescriptor_t &d) { d.src_descriptor.datatype = static_cast<pcclDataType_t>(99); });
            const pcclReduceDescriptor_t bad_op = with([](pcclReduceDescriptor_t &d) { d.op = static_cast<pcclRedOp_t>(99); });
            const pcclReduceDescriptor_t bad_quant_algo = with([](pcclReduceDescriptor_t &d) {
                d.quantization_options.algorithm = static_cast<pcclQuantizationAlgorithm_t>(99);
            });
            const pcclReduceDescriptor_t bad_quant_type = with([](pcclReduceDescriptor_t &d) {
                d.quantization_options.algorithm = pcclQuantMinMax;
                d.quantization_options.quantized_datatype = static_cast<pcclDataType_t>(99);
            });

            EXPECT_FAILS_WITH(nullptr, pcclInvalidArgument, pcclAllReduce(send.data(), recv.data(), &good, nullptr, nullptr));
            EXPECT_FAILS_WITH(comm, pcclInvalidArgument, pcclAllReduce(nullptr, recv.data(), &good, comm, nullptr));
            EXPECT_FAILS_WITH(comm, pcclInvalidArgument, pcclAllReduce(send.data(), nullptr, &good, comm, nullptr));
            EXPECT_FAILS_WITH(comm, pcclInvalidArgument, pcclAllReduce(send.data(), recv.data(), nullptr, comm, nullptr));
            EXPECT_FAILS_WITH(comm, pcclInvalidArgument, pcclAllReduce(send.data(), recv.data(), &zero, comm, nullptr));
            EXPECT_FAILS_WITH(comm, pcclInvalidArgument, pcclAllReduce(send.data(), recv.data(), &bad_dtype, comm, nullptr));
            EXPECT_FAILS_WITH(comm, pcclInvalidArgument, pcclAllReduce(send.data(), recv.data(), &bad_op, comm, nullptr));
            EXPECT_FAILS_WITH(comm, pcclInvalidArgument,
                              pcclAllReduce(send.data(), recv.data(), &bad_quant_algo, comm, nullptr));
            EXPECT_FAILS_WITH(comm, pcclInvalidArgument,
                              pcclAllReduce(send.data(), recv.data(), &bad_quant_type, comm, nullptr));

            pcclAsyncReduceOp_t h{};
            EXPECT_FAILS_WITH(comm, pcclInvalidArgument, pcclAllReduceAsync(send.data(), recv.data(), &good, comm, nullptr));
            EXPECT_FAILS_WITH(comm, pcclInvalidArgument, pcclAllReduceAsync(nullptr, recv.data(), &good, comm, &h));
            EXPECT_FAILS_WITH(comm, pcclInvalidArgument, pcclAllReduceAsync(send.data(), recv.data(), &zero, comm, &h));
            EXPECT_FAILS_WITH(comm, pcclInvalidArgument, pcclAllReduceAsync(send.data(), recv.data(), &bad_op, comm, &h));
            EXPECT_FAILS_WITH(nullptr, pcclInvalidArgument, pcclAllReduceAsync(send.data(), recv.data(), &good, nullptr, &h));

            std::vector<float> op_recv0(64), op_recv1(64);
            pcclReduceOpDescriptor_t ops[2] = {{send.data(), op_recv0.data(), good}, {send.data(), op_recv1.data(), bad_dtype}};
            ops[1].descriptor.tag = 1;
            EXPECT_FAILS_WITH(comm, pcclInvalidArgument, pcclAllReduceMultipleWithRetry(nullptr, 2, comm, nullptr, 1));
            EXPECT_FAILS_WITH(comm, pcclInvalidArgument, pcclAllReduceMultipleWithRetry(ops, 2, comm, nullptr, 1));
            EXPECT_FAILS_WITH(nullptr, pcclInvalidArgument, pcclAllReduceMultipleWithRetry(ops, 1, nullptr, nullptr, 1));

            int v = 0;
            EXPECT_FAILS_WITH(comm, pcclInvalidArgument, pcclGetAttribute(comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE, nullptr));
            EXPECT_FAILS_WITH(comm, pcclInvalidArgument, pcclGetAttribute(comm, static_cast<pcclAttribute_t>(99), &v));
            EXPECT_FAILS_WITH(nullptr, pcclInvalidArgument, pcclGetAttribute(nullptr, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE, &v));
            EXPECT_FAILS_WITH(comm, pcclInvalidArgument, pcclArePeersPending(comm, nullptr));
            bool pending = false;
            EXPECT_FAILS_WITH(nullptr, pcclInvalidArgument, pcclArePeersPending(nullptr, &pending));
            EXPECT_FAILS_WITH(nullptr, pcclInvalidArgument, pcclUpdateTopology(nullptr));
            EXPECT_FAILS_WITH(nullptr, pcclInvalidArgument, pcclOptimizeTopology(nullptr));
            EXPECT_FAILS_WITH(nullptr, pcclInvalidArgument, pcclConnect(nullptr));
            EXPECT_FAILS_WITH(comm, pcclInvalidArgument,
                              pcclSynchronizeSharedState(comm, nullptr, PCCL_SHARED_STATE_SYNC_STRATEGY_ENFORCE_POPULAR, nullptr));

            // Nothing was written by the rejected calls. The valid call passes the argument checks
            // and, this peer being alone in its group, is refused as in PCCL 1.0.
            PT_CHECK(std::all_of(recv.begin(), recv.end(), [](float x) { return x == -1.0f; }));
            EXPECT_FAILS_WITH(comm, pcclTooFewPeers, pcclAllReduce(send.data(), recv.data(), &good, comm, nullptr));
            PT_CHECK(std::all_of(recv.begin(), recv.end(), [](float x) { return x == -1.0f; }));
        }, "all-reduce argument validation", [&] { master.destroy(); });
    });
}

TEST_CASE("args: communicator calls made before pcclInit return pcclNotInitialized, master calls work (fresh process)",
          "[api][args]") {
    isolated(60, [&] {
        runHelper("before-init");
    });
}

TEST_CASE("args: handles the library never created are rejected with pcclInvalidArgument (fresh process)", "[api][args]") {
    isolated(60, [&] {
        runHelper("foreign-handle");
    });
}
