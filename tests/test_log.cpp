// util/log: every line starts with its time as ISO 8601 UTC with milliseconds, and the level filter
// decides what reaches the output.
#include <catch2/catch.hpp>

#include <chrono>
#include <regex>
#include <string>
#include <vector>

#include "util/log.h"

using namespace pccl;
using std::chrono::milliseconds;
using std::chrono::system_clock;

namespace {

system_clock::time_point at(int64_t ms) { return system_clock::time_point(milliseconds(ms)); }

} // namespace

TEST_CASE("log: times read as ISO 8601 in UTC with milliseconds", "[log]") {
    CHECK(log::formatTime(at(1796594103123)) == "2026-12-06T21:55:03.123Z");
    CHECK(log::formatTime(at(0)) == "1970-01-01T00:00:00.000Z");
    CHECK(log::formatTime(at(951782400000 + 999)) == "2000-02-29T00:00:00.999Z");
    CHECK(log::formatTime(at(-1)) == "1969-12-31T23:59:59.999Z");  // rounds down, also before 1970
    const std::string now = log::formatTime(system_clock::now());
    CHECK(std::regex_match(now, std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")));
}

TEST_CASE("log: a sink receives the lines the level lets through, and stderr gets them again without it", "[log]") {
    const log::Level before = log::level();
    std::vector<std::string> lines;
    log::setLevel(log::Level::Info);
    log::setSink([&](log::Level l, const std::string &line) {
        lines.push_back(std::string(l == log::Level::Warn ? "W " : "I ") + line);
    });
    PCCL_LOG(Debug, "not shown");
    PCCL_LOG(Info, "peer " << 3 << " joined");
    PCCL_LOG(Warn, "slow");
    log::setSink({});
    log::setLevel(before);
    CHECK(lines == std::vector<std::string>{"I peer 3 joined", "W slow"});
}
