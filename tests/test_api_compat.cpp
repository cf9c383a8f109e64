// Public API: PCCL 1.0 semantics that programs rely on (issue 16) - pcclTooFewPeers in a group of
// one, the argument rules of the all-reduce calls, and pcclParseSocketAddress.
#include "support/cluster.h"
#include "support/dtypes.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

using namespace pccl_test;

namespace {

// One peer alone in its group: every all-reduce call returns pcclTooFewPeers with a reason and
// writes nothing (in place or not).
void expectTooFewPeers(const pcclComm_t *comm) {
    std::vector<float> send(64, 2.0f), recv(64, -1.0f);
    const pcclReduceDescriptor_t d = makeDescriptor(send.size(), pcclFloat, pcclSum, 7);
    pcclReduceInfo_t info{};
    PT_EXPECT_RESULT(comm, pcclTooFewPeers, pcclAllReduce(send.data(), recv.data(), &d, comm, &info));
    PT_CHECK(std::string(pcclGetLastErrorMessage(comm)).find("at least two") != std::string::npos);
    PT_EXPECT_RESULT(comm, pcclTooFewPeers, pcclAllReduce(send.data(), send.data(), &d, comm, nullptr));
    pcclAsyncReduceOp_t h{};
    PT_EXPECT_RESULT(comm, pcclTooFewPeers, pcclAllReduceAsync(send.data(), recv.data(), &d, comm, &h));
    // Nothing was started: the tag is not in flight.
    h.comm = const_cast<pcclComm_t *>(comm);
    h.tag = d.tag;
    PT_EXPECT_RESULT(comm, pcclInvalidUsage, pcclAwaitAsyncReduce(&h, nullptr));
    pcclReduceOpDescriptor_t ops[2] = {{send.data(), recv.data(), d}, {send.data(), recv.data(), d}};
    ops[1].descriptor.tag = 8;
    PT_EXPECT_RESULT(comm, pcclTooFewPeers, pcclAllReduceMultipleWithRetry(ops, 2, comm, &info, 2));
    PT_CHECK(std::all_of(send.begin(), send.end(), [](float x) { return x == 2.0f; }));
    PT_CHECK(std::all_of(recv.begin(), recv.end(), [](float x) { return x == -1.0f; }));
}

} // namespace

TEST_CASE("compat: an all-reduce in a peer group of one returns pcclTooFewPeers (blocking, async, multiple) and "
          "writes nothing",
          "[api][compat]") {
    isolated(60, [&] {
        EmbeddedMaster master;
        ClusterOptions opts;
        opts.groups = {0};
        runPeers(master, opts, [&](PeerCtx &ctx) {
            PT_CHECK_EQ(attribute(ctx.comm, PCCL_ATTRIBUTE_PEER_GROUP_WORLD_SIZE), 1);
            expectTooFewPeers(ctx.comm);
        });
    });
}

TEST_CASE("compat: two peers in two peer groups are each a group of one: pcclTooFewPeers although the run has two",
          "[api][compat]") {
    isolated(60, [&] {
        EmbeddedMaster master;
        ClusterOptions opts;
        opts.groups = {0, 1};
        runPeers(master, opts, [&](PeerCtx &ctx) {
            PT_CHECK_EQ(attribute(ctx.comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE), 2);
            PT_CHECK_EQ(attribute(ctx.comm, PCCL_ATTRIBUTE_PEER_GROUP_WORLD_SIZE), 1);
            expectTooFewPeers(ctx.comm);
        });
    });
}

TEST_CASE("compat: count 0 and max_in_flight 0 or -1 are pcclInvalidArgument with a reason, checked before the group "
          "size",
          "[api][compat][args]") {
    isolated(60, [&] {
        EmbeddedMaster master;
        ClusterOptions opts;
        opts.groups = {0, 0};
        runPeers(master, opts, [&](PeerCtx &ctx) {
            const pcclComm_t *comm = ctx.comm;
            std::vector<float> buf(16, 1.0f);
            const pcclReduceDescriptor_t zero = makeDescriptor(0, pcclFloat, pcclSum, 1);
            const pcclReduceDescriptor_t good = makeDescriptor(buf.size(), pcclFloat, pcclSum, 2);
            auto reasonHas = [&](const char *what) {
                const std::string why = pcclGetLastErrorMessage(comm);
                PT_CHECK_MSG(why.find(what) != std::string::npos, "reason '" << why << "' does not mention " << what);
            };
            PT_EXPECT_RESULT(comm, pcclInvalidArgument, pcclAllReduce(buf.data(), buf.data(), &zero, comm, nullptr));
            reasonHas("count is 0");
            pcclAsyncReduceOp_t h{};
            PT_EXPECT_RESULT(comm, pcclInvalidArgument, pcclAllReduceAsync(buf.data(), buf.data(), &zero, comm, &h));
            reasonHas("count is 0");
            pcclReduceOpDescriptor_t op{buf.data(), buf.data(), good};
            pcclReduceOpDescriptor_t zero_op{buf.data(), buf.data(), zero};
            PT_EXPECT_RESULT(comm, pcclInvalidArgument, pcclAllReduceMultipleWithRetry(&zero_op, 1, comm, nullptr, 1));
            reasonHas("count is 0");
            PT_EXPECT_RESULT(comm, pcclInvalidArgument, pcclAllReduceMultipleWithRetry(&op, 0, comm, nullptr, 1));
            reasonHas("count is 0");
            PT_EXPECT_RESULT(comm, pcclInvalidArgument, pcclAllReduceMultipleWithRetry(&op, 1, comm, nullptr, 0));
            reasonHas("max_in_flight is 0");
            PT_EXPECT_RESULT(comm, pcclInvalidArgument, pcclAllReduceMultipleWithRetry(&op, 1, comm, nullptr, -1));
            reasonHas("max_in_flight is -1");
            PT_CHECK(std::all_of(buf.begin(), buf.end(), [](float x) { return x == 1.0f; }));
            // The same calls with valid arguments reduce over the group of two.
            PT_OK(comm, pcclAllReduceMultipleWithRetry(&op, 1, comm, nullptr, 1));
            PT_CHECK(std::all_of(buf.begin(), buf.end(), [](float x) { return x == 2.0f; }));
        });
    });
}

TEST_CASE("compat: pcclParseSocketAddress accepts IPv4 and bracketed IPv6 literals, with or without a port",
          "[api][compat][address]") {
    struct Accepted {
        const char *text;
        ccoip_inet_protocol_t protocol;
        std::vector<uint8_t> ip;
        uint16_t port;
    };
    const std::vector<uint8_t> v6Loopback{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    const std::vector<Accepted> cases = {
        {"1.2.3.4:5", inetIPv4, {1, 2, 3, 4}, 5},
        {"127.0.0.1:48148", inetIPv4, {127, 0, 0, 1}, 48148},
        {"255.255.255.255:65535", inetIPv4, {255, 255, 255, 255}, 65535},
        {"0.0.0.0:0", inetIPv4, {0, 0, 0, 0}, 0},
        {"10.0.0.7", inetIPv4, {10, 0, 0, 7}, CCOIP_PROTOCOL_PORT_MASTER},
        {"1.2.3.4:00080", inetIPv4, {1, 2, 3, 4}, 80},
        {"[::1]:5", inetIPv6, v6Loopback, 5},
        {"[::1]", inetIPv6, v6Loopback, CCOIP_PROTOCOL_PORT_MASTER},
        {"[::]:0", inetIPv6, std::vector<uint8_t>(16, 0), 0},
        {"[2001:db8::ff00:42:8329]:65535", inetIPv6, {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0xff, 0x00, 0, 0x42, 0x83, 0x29}, 65535},
        {"[::ffff:1.2.3.4]:9", inetIPv6, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4}, 9},
    };
    for (const auto &c : cases) {
        INFO(c.text);
        ccoip_socket_address_t out;
        std::memset(&out, 0xAB, sizeof out);
        REQUIRE(pcclParseSocketAddress(c.text, &out) == pcclSuccess);
        CHECK(out.inet.protocol == c.protocol);
        CHECK(out.port == c.port);
        if (c.protocol == inetIPv4) {
            CHECK(std::vector<uint8_t>(out.inet.ipv4.data, out.inet.ipv4.data + 4) == c.ip);
            CHECK(std::all_of(out.inet.ipv6.data, out.inet.ipv6.data + 16, [](uint8_t b) { return b == 0; }));
        } else {
            CHECK(std::vector<uint8_t>(out.inet.ipv6.data, out.inet.ipv6.data + 16) == c.ip);
            CHECK(std::all_of(out.inet.ipv4.data, out.inet.ipv4.data + 4, [](uint8_t b) { return b == 0; }));
        }
    }
}

TEST_CASE("compat: pcclParseSocketAddress rejects every other form with pcclInvalidArgument and a reason, leaving the "
          "output untouched",
          "[api][compat][address]") {
    struct Rejected {
        const char *text;
        const char *reason; // a part of pcclGetLastErrorMessage(NULL)
    };
    const std::vector<Rejected> cases = {
        {"", "empty"},
        {"1.2.3.4:", "empty port"},
        {"1.2.3.4:65536", "above 65535"},
        {"1.2.3.4:99999999999999999999", "above 65535"},
        {"1.2.3.4:-1", "not a decimal number"},
        {"1.2.3.4:+5", "not a decimal number"},
        {"1.2.3.4:5x", "not a decimal number"},
        {"1.2.3.4:5 ", "not a decimal number"},
        {"1.2.3.4:0x10", "not a decimal number"},
        {"1.2.3.4:5:6", "more than one ':'"},
        {"1.2.3.256:5", "not an IPv4 address"},
        {"1.2.3:5", "not an IPv4 address"},
        {"1.2.3.4.5:5", "not an IPv4 address"},
        {" 1.2.3.4:5", "not an IPv4 address"},
        {"localhost:5", "not an IPv4 address"},
        {"example.com", "not an IPv4 address"},
        {":5", "not an IPv4 address"},
        {"::1", "in brackets"},
        {"::1:5", "in brackets"},
        {"[::1", "missing ']'"},
        {"[::1:5", "missing ']'"},
        {"::1]:5", "']' without '['"},
        {"[::1]5", "unexpected '5' after ']'"},
        {"[::1]:", "empty port"},
        {"[::1]:65536", "above 65535"},
        {"[::1]:5x", "not a decimal number"},
        {"[1.2.3.4]:5", "not an IPv6 address"},
        {"[]:5", "not an IPv6 address"},
        {"[::g]:5", "not an IPv6 address"},
        {"[fe80::1%eth0]:5", "not an IPv6 address"},
    };
    for (const auto &c : cases) {
        INFO("'" << c.text << "'");
        ccoip_socket_address_t out;
        std::memset(&out, 0xAB, sizeof out);
        ccoip_socket_address_t before = out;
        REQUIRE(pcclParseSocketAddress(c.text, &out) == pcclInvalidArgument);
        const std::string why = pcclGetLastErrorMessage(nullptr);
        INFO("reason: " << why);
        CHECK(why.find(c.reason) != std::string::npos);
        CHECK(why.find(std::string("'") + c.text + "'") != std::string::npos);
        CHECK(std::memcmp(&out, &before, sizeof out) == 0);
    }
    ccoip_socket_address_t out{};
    CHECK(pcclParseSocketAddress(nullptr, &out) == pcclInvalidArgument);
    CHECK(std::string(pcclGetLastErrorMessage(nullptr)).find("text is NULL") != std::string::npos);
    CHECK(pcclParseSocketAddress("1.2.3.4:5", nullptr) == pcclInvalidArgument);
    CHECK(std::string(pcclGetLastErrorMessage(nullptr)).find("out is NULL") != std::string::npos);
    const std::string huge(5000, '1');
    CHECK(pcclParseSocketAddress(huge.c_str(), &out) == pcclInvalidArgument);
}

TEST_CASE("compat: pcclInterruptMaster(NULL) and of a foreign pointer set their own last-error message",
          "[api][compat][master]") {
    // A success elsewhere on this thread must not leave an older reason in place of the new one.
    ccoip_socket_address_t out{};
    REQUIRE(pcclParseSocketAddress("bad", &out) == pcclInvalidArgument);
    REQUIRE(pcclInterruptMaster(nullptr) == pcclInvalidArgument);
    CHECK(std::string(pcclGetLastErrorMessage(nullptr)) == "pcclInterruptMaster: master is NULL");
    alignas(64) static unsigned char fake[4096] = {};
    REQUIRE(pcclInterruptMaster(reinterpret_cast<pcclMasterInstance_t *>(fake)) == pcclInvalidArgument);
    CHECK(std::string(pcclGetLastErrorMessage(nullptr)).find("not a valid master instance") != std::string::npos);
    // A later failure replaces the static reason.
    REQUIRE(pcclParseSocketAddress("bad", &out) == pcclInvalidArgument);
    CHECK(std::string(pcclGetLastErrorMessage(nullptr)).find("'bad'") != std::string::npos);
}
