// NAT and firewalls, without namespaces: the advertised-address and port-range syntax, their
// checks in pcclCreateCommunicatorEx and the environment, and the data plane's port range.
#include "support/cluster.h"

#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>

#include "transport/address.h"
#include "transport/data_plane.h"

using namespace pccl_test;

TEST_CASE("NAT options: the advertised address is host:port, host or :port; anything else is refused with a reason",
          "[nat]") {
    using pccl::transport::parseAdvertisedAddress;
    auto both = parseAdvertisedAddress("203.0.113.7:7101");
    REQUIRE(both.ok());
    CHECK(both->family == 4);
    CHECK(both->ip[0] == 203);
    CHECK(both->ip[3] == 7);
    CHECK(both->port == 7101);
    auto host = parseAdvertisedAddress("203.0.113.7");
    REQUIRE(host.ok());
    CHECK(host->family == 4);
    CHECK(host->port == 0);  // the real data port
    auto port = parseAdvertisedAddress(":7101");
    REQUIRE(port.ok());
    CHECK(port->family == 0);  // the observed address
    CHECK(port->port == 7101);
    auto v6 = parseAdvertisedAddress("[2001:db8::7]:7101");
    REQUIRE(v6.ok());
    CHECK(v6->family == 6);
    CHECK(v6->ip[0] == 0x20);
    CHECK(v6->ip[15] == 7);
    CHECK(v6->port == 7101);
    for (const char *bad : {"", ":", ":0", ":65536", ":x", "203.0.113.7:", "203.0.113.7:70000", "0.0.0.0:7101", "[::]:7101",
                            "[2001:db8::7"}) {
        INFO("'" << bad << "'");
        auto r = parseAdvertisedAddress(bad);
        CHECK_FALSE(r.ok());
        CHECK(r.status().code() == pcclInvalidArgument);
        CHECK_FALSE(r.status().message().empty());
    }
}

TEST_CASE("NAT options: a port range is lo-hi or one port, 1 <= lo <= hi <= 65535", "[nat]") {
    uint16_t lo = 0, hi = 0;
    REQUIRE(pccl::transport::parsePortRange("7000-7015", &lo, &hi).ok());
    CHECK(lo == 7000);
    CHECK(hi == 7015);
    REQUIRE(pccl::transport::parsePortRange("7001", &lo, &hi).ok());
    CHECK(lo == 7001);
    CHECK(hi == 7001);
    for (const char *bad : {"", "-", "0", "0-10", "10-9", "7000-", "-7000", "7000-70000", "a-b", "7000 - 7001", "1-2-3"}) {
        INFO("'" << bad << "'");
        const auto st = pccl::transport::parsePortRange(bad, &lo, &hi);
        CHECK_FALSE(st.ok());
        CHECK(st.code() == pcclInvalidArgument);
    }
}

TEST_CASE("NAT options: the data plane listens on the first free port of its range; none free is an error naming it",
          "[nat]") {
    pccl::transport::DataPlane taken(1);
    REQUIRE(taken.listen(0).ok());
    const uint16_t p = taken.port();
    REQUIRE(p != 0);
    pccl::transport::DataPlane fixed(1);
    const auto st = fixed.listen(p, p);
    REQUIRE_FALSE(st.ok());
    CHECK(st.code() == pcclInvalidArgument);
    CHECK(st.message().find("port " + std::to_string(p)) != std::string::npos);
    if (p < 65535 - 20) {
        pccl::transport::DataPlane ranged(1);
        REQUIRE(ranged.listen(p, static_cast<uint16_t>(p + 20)).ok());
        CHECK(ranged.port() > p);
        CHECK(ranged.port() <= p + 20);
    }
}

TEST_CASE("NAT options: pcclCreateCommunicatorEx checks advertised_address and port_range, and the environment "
          "variables they override",
          "[api][nat]") {
    isolated(30, [&] {
        PT_OK(nullptr, pcclInit());
        pcclCommCreateParamsEx_t ex = PCCL_COMM_CREATE_PARAMS_EX_INIT;
        ex.params.master_address = loopbackV4(1);
        pcclComm_t *comm = nullptr;
        auto refused = [&](const pcclCommCreateParamsEx_t &p, const std::string &name) {
            PT_EXPECT_RESULT(nullptr, pcclInvalidArgument, pcclCreateCommunicatorEx(&p, &comm));
            PT_CHECK(comm == nullptr);
            const std::string msg = pcclGetLastErrorMessage(nullptr);
            PT_CHECK_MSG(msg.find(name) != std::string::npos, "the reason '" << msg << "' does not name " << name);
        };
        for (const char *bad : {"0.0.0.0:7101", ":0", "1.2.3.4:x", "[::1"}) {
            pcclCommCreateParamsEx_t p = ex;
            p.advertised_address = bad;
            refused(p, "advertised_address");
        }
        for (const char *bad : {"0", "9-8", "x"}) {
            pcclCommCreateParamsEx_t p = ex;
            p.port_range = bad;
            refused(p, "port_range");
        }
        pcclCommCreateParamsEx_t good = ex;
        good.advertised_address = "203.0.113.7:7101";
        good.port_range = "7000-7015";
        PT_OK(nullptr, pcclCreateCommunicatorEx(&good, &comm));
        PT_OK(nullptr, pcclDestroyCommunicator(comm));
        comm = nullptr;
        // The environment (PCCL 1.0 programs): malformed values are refused too, not ignored.
        ::setenv("PCCL_ADVERTISED_ADDRESS", "1.2.3.4:99999", 1);
        refused(ex, "PCCL_ADVERTISED_ADDRESS");
        pcclCommCreateParams_t plain = ex.params;
        PT_EXPECT_RESULT(nullptr, pcclInvalidArgument, pcclCreateCommunicator(&plain, &comm));
        // ... unless the field overrides them.
        PT_OK(nullptr, pcclCreateCommunicatorEx(&good, &comm));
        PT_OK(nullptr, pcclDestroyCommunicator(comm));
        comm = nullptr;
        ::unsetenv("PCCL_ADVERTISED_ADDRESS");
        ::setenv("PCCL_PORT_RANGE", "70000", 1);
        refused(ex, "PCCL_PORT_RANGE");
        ::setenv("PCCL_PORT_RANGE", "7000-7015", 1);
        ::setenv("PCCL_ADVERTISED_ADDRESS", ":7101", 1);
        PT_OK(nullptr, pcclCreateCommunicator(&plain, &comm));
        PT_OK(nullptr, pcclDestroyCommunicator(comm));
        comm = nullptr;
        // A caller built before advertised_address existed: the bytes after encrypt are not read.
        pcclCommCreateParamsEx_t old = ex;
        old.struct_size = offsetof(pcclCommCreateParamsEx_t, advertised_address);
        old.advertised_address = "garbage";
        old.port_range = "garbage";
        PT_OK(nullptr, pcclCreateCommunicatorEx(&old, &comm));
        PT_OK(nullptr, pcclDestroyCommunicator(comm));
    });
}
