// pccl-bench: an all-reduce benchmark in the style of nccl-tests. The same binary is the
// driver (default) and the worker (--worker, started by the driver through /proc/self/exe).
#include "bench_common.hpp"
#include "process.hpp"

#include <cstdio>
#include <cstdlib>

int main(int argc, char **argv) {
    auto opt = bench::parseOptions(argc, argv);
    if (!opt) return 2;
    const int rc = opt->worker ? bench::runWorker(*opt) : bench::runDriver(*opt);
    std::fflush(stdout);
    std::fflush(stderr);
    // A library call that missed its deadline may still be running on a detached thread:
    // do not run static destructors under it.
    if (bench::leakedThreads()) std::_Exit(rc);
    return rc;
}
