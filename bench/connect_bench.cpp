// pccl-connect-bench: what a run secret costs a joiner (issue 14). Two embedded masters on
// 127.0.0.1, one open and one with a secret; alternately, a fresh communicator connects to one
// of them and is admitted (the first peer of a run is admitted at once), timed from
// pcclConnect to its return, then leaves. Prints the median and p90 of each, and the difference.
//
//   pccl-connect-bench [--rounds N]   (default 40 per master)
#include <pccl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

const char *kSecret = "connect-bench-secret-0123456789abcdef";

void check(pcclResult_t rc, const char *what) {
    if (rc == pcclSuccess) return;
    std::fprintf(stderr, "pccl-connect-bench: %s: %s: %s\n", what, pcclGetErrorString(rc), pcclGetLastErrorMessage(nullptr));
    std::exit(1);
}

struct Master {
    pcclMasterInstance_t *handle = nullptr;
    std::thread thread;
    uint16_t port = 0;
    explicit Master(const char *secret) {
        ccoip_socket_address_t addr{};
        addr.inet.protocol = inetIPv4;
        addr.inet.ipv4.data[0] = 127;
        addr.inet.ipv4.data[3] = 1;
        pcclMasterCreateParamsEx_t p = PCCL_MASTER_CREATE_PARAMS_EX_INIT;
        p.secret = secret;
        check(pcclCreateMasterEx(addr, &p, &handle), "pcclCreateMasterEx");
        check(pcclRunMaster(handle), "pcclRunMaster");
        check(pcclGetMasterPort(handle, &port), "pcclGetMasterPort");
    }
    ~Master() {
        pcclInterruptMaster(handle);
        pcclMasterAwaitTermination(handle);
        pcclDestroyMaster(handle);
    }
};

double connectOnce(const Master &m, const char *secret) {
    pcclCommCreateParamsEx_t p = PCCL_COMM_CREATE_PARAMS_EX_INIT;
    p.params.master_address.inet.protocol = inetIPv4;
    p.params.master_address.inet.ipv4.data[0] = 127;
    p.params.master_address.inet.ipv4.data[3] = 1;
    p.params.master_address.port = m.port;
    p.secret = secret;
    pcclComm_t *comm = nullptr;
    check(pcclCreateCommunicatorEx(&p, &comm), "pcclCreateCommunicatorEx");
    const auto t0 = std::chrono::steady_clock::now();
    check(pcclConnect(comm), "pcclConnect");
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    check(pcclDestroyCommunicator(comm), "pcclDestroyCommunicator");
    return ms;
}

double quantile(std::vector<double> v, double q) {
    std::sort(v.begin(), v.end());
    return v[static_cast<size_t>(q * static_cast<double>(v.size() - 1))];
}

} // namespace

int main(int argc, char **argv) {
    int rounds = 40;
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = std::atoi(argv[++i]);
        else {
            std::fprintf(stderr, "usage: pccl-connect-bench [--rounds N]\n");
            return 2;
        }
    }
    ::setenv("PCCL_LOG_LEVEL", "error", 0);
    ::unsetenv("PCCL_SECRET");
    ::unsetenv("PCCL_SECRET_FILE");
    check(pcclInit(), "pcclInit");
    Master open(nullptr), secured(kSecret);
    std::vector<double> plain, secret;
    for (int r = 0; r < rounds; ++r) {
        plain.push_back(connectOnce(open, nullptr));
        secret.push_back(connectOnce(secured, kSecret));
    }
    const double p50 = quantile(plain, 0.5), s50 = quantile(secret, 0.5);
    std::printf("connect to admitted, %d rounds each, alternating, same run:\n", rounds);
    std::printf("  open run      median %.2f ms  p90 %.2f ms\n", p50, quantile(plain, 0.9));
    std::printf("  with secret   median %.2f ms  p90 %.2f ms\n", s50, quantile(secret, 0.9));
    std::printf("  difference    median %+.2f ms\n", s50 - p50);
    return 0;
}
