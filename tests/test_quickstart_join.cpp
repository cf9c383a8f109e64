// The loop of README.md's C example as built (examples/quickstart.c: sync first, all-reduce with
// retry, vote last) with a peer joining mid-run: pccl-master and two pccl-quickstart processes,
// the second started while the first runs alone.
#include "support/cluster.h"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>
#include <sys/wait.h>

using namespace pccl_test;

namespace {

// "step 12: world size 2, ..." -> 12 (-1 if the line is not a step line).
long stepOf(const std::string &line) {
    if (line.rfind("step ", 0) != 0) return -1;
    return std::strtol(line.c_str() + 5, nullptr, 10);
}

} // namespace

TEST_CASE("quickstart: a second peer started mid-run is admitted by the first one's vote, receives the weights and "
          "the step, and both end at the last step with world size 2 and the same weights",
          "[api][quickstart]") {
#ifndef PCCL_QUICKSTART_BIN
    WARN("pccl-quickstart is not built (PCCL_BUILD_EXAMPLES=OFF): skipped");
#else
    isolated(40, [&] {
        const std::string steps = "400";
        DaemonMaster daemon;
        const std::string master = "127.0.0.1:" + std::to_string(daemon.port());
        ChildProcess first({PCCL_QUICKSTART_BIN, master, steps});
        const auto alone = first.waitForLine("step 5:", 15);
        PT_CHECK_MSG(alone.has_value(), "the first peer did not reach step 5; stdout: " << first.transcript());
        PT_CHECK_MSG(alone->find("world size 1") != std::string::npos, "not alone: " << *alone);

        ChildProcess second({PCCL_QUICKSTART_BIN, master, steps});
        const auto joined = second.waitForLine("step ", 20);
        PT_CHECK_MSG(joined.has_value(), "the second peer ran no step; stdout: " << second.transcript());
        PT_CHECK_MSG(stepOf(*joined) > 5 && joined->find("world size 2") != std::string::npos,
                     "the second peer did not join the running run: " << *joined);

        const auto done1 = first.waitForLine("done:", 30);
        const auto done2 = second.waitForLine("done:", 30);
        PT_CHECK_MSG(done1.has_value(), "first: no 'done' line; stdout: " << first.transcript());
        PT_CHECK_MSG(done2.has_value(), "second: no 'done' line; stdout: " << second.transcript());
        const std::string want = "done: step " + steps + ", world size 2, weights hash ";
        PT_CHECK_MSG(done1->rfind(want, 0) == 0, "first: " << *done1);
        PT_CHECK_MSG(*done1 == *done2, "the peers disagree: '" << *done1 << "' vs '" << *done2 << "'");
        for (ChildProcess *p : {&first, &second}) {
            const auto status = p->wait(10);
            PT_CHECK_MSG(status.has_value() && WIFEXITED(*status) && WEXITSTATUS(*status) == 0,
                         "pccl-quickstart did not exit with 0; stdout: " << p->transcript());
        }
    });
#endif
}
