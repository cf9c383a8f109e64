// pccl-fault-bench: how fast survivors notice a lost peer and carry on without it, and how
// fast a run goes on after its master was killed and restarted, or stopped and resumed
// (master_fault_bench.cpp).
//
// For the peer scenarios the driver embeds a master (127.0.0.1, port 0) and starts 3 copies
// of itself as workers
// (`--worker`, through /proc/self/exe). Every worker runs an in-place float32 sum
// all-reduce (tag 0) in a loop. After a warm-up the driver SIGKILLs or SIGSTOPs one worker
// at a random moment inside a step and reads, from the survivors' lines, when each one
// returned its first error and its first success on the smaller ring. All timestamps are
// CLOCK_MONOTONIC nanoseconds, shared by the driver and the workers (same machine).
//
// Worker -> driver protocol (stdout, one line each):
//   S <step> <t_ns>                         a step starts (just before pcclAllReduce)
//   R <step> <result> <t_ns> <world size>   it returned (world: of the ring that ran it on
//                                           success, the communicator's view after a failure)
//   U <result> <t_ns> <world size>          pcclUpdateTopology after pcclRankConnectionLost
//   E <text>                                fatal; the worker exits with status 2
#include "fault_bench.hpp"
#include "process.hpp"

#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace faultbench {

int64_t nowNs() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// ------------------------------------------------------------------ worker

namespace {

[[noreturn]] void workerFail(const pcclComm_t *comm, const char *what, pcclResult_t rc) {
    std::string msg = pcclGetLastErrorMessage(comm);
    std::replace(msg.begin(), msg.end(), '\n', ' ');
    std::printf("E %s: %s: %s\n", what, pcclGetErrorString(rc), msg.c_str());
    std::fflush(stdout);
    std::_Exit(2);
}

int worldSize(const pcclComm_t *comm) {
    int ws = 0;
    pcclGetAttribute(comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE, &ws);
    return ws;
}

}  // namespace

// Connects, admits peers until the world has kPeers members, then all-reduces until killed
// or until max_s seconds have passed (the driver kills it long before that). A lost master is
// waited for (the library's default reconnect timeout, 60 s).
int runWorker(uint16_t port, size_t bytes, double max_s) {
    if (pcclResult_t rc = pcclInit(); rc != pcclSuccess) workerFail(nullptr, "pcclInit", rc);
    pcclCommCreateParams_t params{};
    params.master_address.inet.protocol = inetIPv4;
    const uint8_t loopback[4] = {127, 0, 0, 1};
    std::memcpy(params.master_address.inet.ipv4.data, loopback, 4);
    params.master_address.port = port;
    pcclComm_t *comm = nullptr;
    if (pcclResult_t rc = pcclCreateCommunicator(&params, &comm); rc != pcclSuccess)
        workerFail(nullptr, "pcclCreateCommunicator", rc);
    if (pcclResult_t rc = pcclConnect(comm); rc != pcclSuccess) workerFail(comm, "pcclConnect", rc);
    // Every vote gives every voter the same answer, so all peers leave this loop after the
    // same round (as in bench/worker.cpp). The driver's warm-up deadline bounds it.
    while (worldSize(comm) < kPeers) {
        bool pending = false;
        if (pcclResult_t rc = pcclArePeersPending(comm, &pending); rc != pcclSuccess)
            workerFail(comm, "pcclArePeersPending", rc);
        if (!pending) {
            usleep(5000);
            continue;
        }
        if (pcclResult_t rc = pcclUpdateTopology(comm); rc != pcclSuccess) workerFail(comm, "pcclUpdateTopology", rc);
    }

    // Zeros stay zeros under sum: no overflow to inf, no denormals, however long the loop.
    std::vector<float> data(bytes / sizeof(float), 0.0f);
    pcclReduceDescriptor_t desc{};
    desc.count = data.size();
    desc.op = pcclSum;
    desc.tag = 0;
    desc.src_descriptor = {pcclFloat, pcclDistributionNone};
    desc.quantization_options = {pcclFloat, pcclQuantNone};
    const int64_t end = nowNs() + int64_t(max_s * 1e9);
    for (long step = 0; nowNs() < end; ++step) {
        std::printf("S %ld %lld\n", step, (long long)nowNs());
        std::fflush(stdout);
        pcclReduceInfo_t info{};
        const pcclResult_t rc = pcclAllReduce(data.data(), data.data(), &desc, comm, &info);
        const int64_t t = nowNs();
        std::printf("R %ld %d %lld %d\n", step, int(rc), (long long)t,
                    rc == pcclSuccess ? int(info.local_world_size) : worldSize(comm));
        std::fflush(stdout);
        if (rc == pcclSuccess) continue;
        if (rc != pcclRankConnectionLost) workerFail(comm, "pcclAllReduce", rc);
        // The survivors' ring is rewired without the lost peer.
        const pcclResult_t urc = pcclUpdateTopology(comm);
        std::printf("U %d %lld %d\n", int(urc), (long long)nowNs(), worldSize(comm));
        std::fflush(stdout);
        if (urc != pcclSuccess) workerFail(comm, "pcclUpdateTopology", urc);
    }
    std::_Exit(0);  // no graceful leave: the driver tears the run down
}

bool selected(const Options &opt, const std::string &name) {
    return opt.only.empty() || ("," + opt.only + ",").find("," + name + ",") != std::string::npos;
}

double median(std::vector<double> v) {
    if (v.empty()) return -1;
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Parses one worker line into its state; echoes it with --verbose.
void onLine(WorkerState &w, size_t rank, std::string_view line, bool verbose) {
    if (verbose) std::fprintf(stderr, "[w%zu] %.*s\n", rank, int(line.size()), line.data());
    std::istringstream in{std::string(line)};
    std::string kind;
    in >> kind;
    if (kind == "S") {
        long step; long long t;
        if (in >> step >> t) w.starts.push_back({t, int(step)});
    } else if (kind == "R") {
        WorkerState::Ret r{};
        long long t;
        if (in >> r.step >> r.rc >> t >> r.world) { r.t = t; w.rets.push_back(r); }
    } else if (kind == "E") {
        w.fatal = std::string(line.substr(std::min<size_t>(2, line.size())));
    }
}

// ------------------------------------------------------------------ driver

namespace {

struct Scenario {
    std::string name;
    int signal;           // SIGKILL or SIGSTOP
    int heartbeat_ms;     // 0: library default (PCCL_HEARTBEAT_TIMEOUT_MS unset)
    double err_target_ms; // <= 0: no target
    double rec_target_ms;
};

// One survivor's view of one fault: -1 = not seen before the deadline.
struct Sample {
    double err_ms = -1, rec_ms = -1;
    int err_code = 0;
    bool no_error = false;  // recovered on the smaller ring without a failed step
};

// Starts a master and kPeers workers, warms up, injects the fault, collects one Sample per
// survivor. Every wait is bounded; the children and the master are gone when it returns.
// Returns false (with err) if the run broke before the fault could be measured.
bool runOnce(const Scenario &sc, const Options &opt, std::mt19937 &rng, std::vector<Sample> &out, std::string &err) {
    if (sc.heartbeat_ms > 0) setenv("PCCL_HEARTBEAT_TIMEOUT_MS", std::to_string(sc.heartbeat_ms).c_str(), 1);
    else unsetenv("PCCL_HEARTBEAT_TIMEOUT_MS");
    ccoip_socket_address_t addr{};
    addr.inet.protocol = inetIPv4;
    addr.inet.ipv4.data[0] = 127;
    addr.inet.ipv4.data[3] = 1;
    pcclMasterInstance_t *master = nullptr;
    uint16_t port = 0;
    bool up = false;
    if (!bench::callWithDeadline([&] {
            up = pcclCreateMaster(addr, &master) == pcclSuccess && pcclRunMaster(master) == pcclSuccess &&
                 pcclGetMasterPort(master, &port) == pcclSuccess;
            if (!up) err = std::string("master: ") + pcclGetLastErrorMessage(nullptr);
        }, 30)) {
        // The helper thread still references this frame: end the process now.
        std::fprintf(stderr, "pccl-fault-bench: the master did not start within 30 s\n");
        std::_Exit(1);
    }
    if (!up) {
        if (master) pcclDestroyMaster(master);
        return false;
    }
    std::vector<bench::Child> kids;
    std::vector<WorkerState> ws(kPeers);
    for (int r = 0; r < kPeers && err.empty(); ++r) {
        kids.push_back(bench::spawnChild({"/proc/self/exe", "--worker", "--port", std::to_string(port), "--bytes",
                                          std::to_string(opt.bytes), "--max-seconds", "600"},
                                         "rank " + std::to_string(r), !opt.verbose, err));
        if (kids.back().pid <= 0) kids.pop_back();
    }
    // Reads what is there (waits up to ms); a worker other than `expected_dead` that failed
    // or exited breaks the run.
    size_t expected_dead = kPeers;
    auto pump = [&](int ms) {
        bench::pumpChildren(kids, ms, [&](size_t i, std::string_view l) { onLine(ws[i], i, l, opt.verbose); });
        for (size_t i = 0; i < kids.size() && err.empty(); ++i)
            if (i != expected_dead && (!ws[i].fatal.empty() || kids[i].exited))
                err = "rank " + std::to_string(i) + ": " +
                      (ws[i].fatal.empty() ? bench::describeStatus(kids[i].status) : ws[i].fatal);
    };
    auto okSteps = [&](size_t i, int world) {
        return std::count_if(ws[i].rets.begin(), ws[i].rets.end(),
                             [&](auto &r) { return r.rc == pcclSuccess && r.world == world; });
    };
    // Warm-up: every worker completes opt.warmup steps on the full ring.
    const int64_t warm_deadline = nowNs() + int64_t(opt.timeout_s * 1e9);
    while (err.empty() && !bench::interrupted()) {
        bool done = true;
        for (size_t i = 0; i < kids.size(); ++i) done = done && okSteps(i, kPeers) >= opt.warmup;
        if (done) break;
        if (nowNs() > warm_deadline) err = "warm-up: no " + std::to_string(opt.warmup) + " steps within the timeout";
        else pump(100);
    }

    const size_t victim = std::uniform_int_distribution<size_t>(0, kPeers - 1)(rng);
    int64_t t_fault = 0;
    if (err.empty()) {
        // Step duration: median of the victim's warm-up steps; the fault lands a uniform
        // 0..1 step durations after the victim's next step start.
        std::vector<double> durs;
        for (auto &r : ws[victim].rets)
            for (auto &s : ws[victim].starts)
                if (s.second == r.step && r.rc == pcclSuccess) durs.push_back(double(r.t - s.first));
        const double step_ns = median(durs);
        const size_t seen = ws[victim].starts.size();
        const int64_t wait_deadline = nowNs() + int64_t(opt.timeout_s * 1e9);
        while (err.empty() && ws[victim].starts.size() == seen && nowNs() < wait_deadline) pump(5);
        if (err.empty() && ws[victim].starts.size() == seen) err = "no step start from the victim";
        if (err.empty()) {
            const int64_t at = ws[victim].starts[seen].first +
                               int64_t(std::uniform_real_distribution<double>(0, step_ns)(rng));
            const timespec ts{time_t(at / 1000000000), long(at % 1000000000)};
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {}
            t_fault = nowNs();
            kill(kids[victim].pid, sc.signal);
            expected_dead = victim;
        }
    }
    if (err.empty()) {
        // Survivors: first failure and first success on a ring of kPeers-1 after the fault.
        // Bounded by the heartbeat deadline + the op deadline (10 s) + 10 s of slack.
        const int hb = sc.heartbeat_ms > 0 ? sc.heartbeat_ms : 5000;
        const int64_t deadline = t_fault + int64_t(hb + 20000) * 1000000;
        std::vector<Sample> samples;
        while (!bench::interrupted()) {
            samples.clear();
            bool all = true;
            for (size_t i = 0; i < kids.size(); ++i) {
                if (i == victim) continue;
                Sample s;
                for (auto &r : ws[i].rets) {
                    if (r.t < t_fault) continue;
                    if (r.rc != pcclSuccess && s.err_ms < 0) { s.err_ms = (r.t - t_fault) / 1e6; s.err_code = r.rc; }
                    if (r.rc == pcclSuccess && r.world == kPeers - 1) { s.rec_ms = (r.t - t_fault) / 1e6; break; }
                }
                s.no_error = s.rec_ms >= 0 && s.err_ms < 0;
                all = all && s.rec_ms >= 0;
                samples.push_back(s);
            }
            if (all || !err.empty() || nowNs() > deadline) break;
            pump(20);
        }
        out.insert(out.end(), samples.begin(), samples.end());
    }
    for (auto &k : kids) bench::stopChild(k, SIGKILL, 0);  // a stopped process dies of SIGKILL too
    pcclInterruptMaster(master);
    if (!bench::callWithDeadline([master] { pcclMasterAwaitTermination(master); pcclDestroyMaster(master); }, 15))
        err += (err.empty() ? "" : "; ") + std::string("master did not stop within 15 s");
    if (opt.verbose || !err.empty())
        std::fprintf(stderr, "# %s: victim rank %zu%s%s\n", sc.name.c_str(), victim, err.empty() ? "" : ": ",
                     err.c_str());
    return err.empty() && t_fault != 0;
}

int runDriver(const Options &opt) {
    bench::installSignalHandlers();
    pcclInit();
    std::mt19937 rng(opt.seed ? opt.seed : std::random_device{}());
    const std::vector<Scenario> all = {
        {"sigkill", SIGKILL, 0, 100, 500},
        {"sigstop", SIGSTOP, 0, -1, 5000 + 1000},
        {"sigstop-2000", SIGSTOP, 2000, -1, 2000 + 1000},
    };
    bool broke = false, header = false;
    for (const Scenario &sc : all) {
        if (!selected(opt, sc.name)) continue;
        if (!header) {
            std::printf("# pccl-fault-bench: %d peers on loopback, %zu MiB float32 sum all-reduce in place, %d reps\n",
                        kPeers, opt.bytes >> 20, opt.reps);
            std::printf("# times in ms from the signal; err = first failed step, rec = first success on %d peers\n",
                        kPeers - 1);
            std::printf("%-13s %4s %7s %6s %8s %8s %8s %8s  %-24s %s\n", "# scenario", "reps", "samples", "no-err",
                        "err med", "err max", "rec med", "rec max", "target", "result");
            header = true;
        }
        std::vector<Sample> samples;
        int ok_reps = 0;
        for (int r = 0; r < opt.reps && !bench::interrupted(); ++r) {
            std::string err;
            std::vector<Sample> s;
            if (runOnce(sc, opt, rng, s, err)) ++ok_reps;
            else broke = true;
            for (auto &x : s)
                std::fprintf(stderr, "#   %s rep %d: err %.1f ms (code %d)%s, rec %.1f ms\n", sc.name.c_str(), r + 1,
                             x.err_ms, x.err_code, x.no_error ? " [no error]" : "", x.rec_ms);
            samples.insert(samples.end(), s.begin(), s.end());
        }
        std::vector<double> errs, recs;
        int no_err = 0, missing = 0;
        for (auto &s : samples) {
            if (s.err_ms >= 0) errs.push_back(s.err_ms);
            if (s.rec_ms >= 0) recs.push_back(s.rec_ms); else ++missing;
            no_err += s.no_error;
        }
        const double emax = errs.empty() ? -1 : *std::max_element(errs.begin(), errs.end());
        const double rmax = recs.empty() ? -1 : *std::max_element(recs.begin(), recs.end());
        char target[64];
        if (sc.err_target_ms > 0) std::snprintf(target, sizeof target, "err<=%.0f rec<=%.0f", sc.err_target_ms, sc.rec_target_ms);
        else std::snprintf(target, sizeof target, "rec<=%.0f", sc.rec_target_ms);
        // Pass: every measured survivor met every target, and all reps produced samples.
        const bool err_ok = sc.err_target_ms <= 0 || (!errs.empty() && emax <= sc.err_target_ms);
        const bool rec_ok = missing == 0 && !recs.empty() && rmax <= sc.rec_target_ms && ok_reps == opt.reps;
        std::string result = sc.err_target_ms > 0 ? std::string("err ") + (err_ok ? "pass" : "FAIL") + ", " : "";
        result += std::string("rec ") + (rec_ok ? "pass" : "FAIL");
        if (missing) result += " (" + std::to_string(missing) + " never recovered)";
        if (ok_reps != opt.reps) result += " (" + std::to_string(opt.reps - ok_reps) + " reps broke)";
        std::printf("%-13s %4d %7zu %6d %8.1f %8.1f %8.1f %8.1f  %-24s %s\n", sc.name.c_str(), opt.reps,
                    samples.size(), no_err, median(errs), emax, median(recs), rmax, target, result.c_str());
        std::fflush(stdout);
    }
    if (!runMasterScenarios(opt, rng)) broke = true;
    return broke ? 1 : 0;
}

void usage() {
    std::fprintf(stderr,
                 "usage: pccl-fault-bench [--reps N] [--warmup K] [--bytes B] [--seed S] [--timeout S] [--verbose]\n"
                 "                        [--only sigkill,sigstop,sigstop-2000,master-sigkill,master-sigstop]\n"
                 "                        [--master-bin PATH] [--master-down-ms MS]\n");
}

}  // namespace
}  // namespace faultbench

int main(int argc, char **argv) {
    using namespace faultbench;
    Options opt;
    bool worker = false;
    uint16_t port = 0;
    double max_s = 600;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> const char * {
            if (i + 1 >= argc) { usage(); std::exit(2); }
            return argv[++i];
        };
        if (a == "--worker") worker = true;
        else if (a == "--port") port = uint16_t(std::atoi(next()));
        else if (a == "--max-seconds") max_s = std::atof(next());
        else if (a == "--bytes") opt.bytes = std::strtoull(next(), nullptr, 10);
        else if (a == "--reps") opt.reps = std::max(1, std::atoi(next()));
        else if (a == "--warmup") opt.warmup = std::max(1, std::atoi(next()));
        else if (a == "--timeout") opt.timeout_s = std::atof(next());
        else if (a == "--seed") opt.seed = unsigned(std::strtoul(next(), nullptr, 10));
        else if (a == "--only") opt.only = next();
        else if (a == "--verbose") opt.verbose = true;
        else if (a == "--master-bin") opt.master_bin = next();
        else if (a == "--master-down-ms") opt.master_down_ms = std::max(0, std::atoi(next()));
        else { usage(); return 2; }
    }
    if (opt.bytes < sizeof(float)) opt.bytes = sizeof(float);
    const int rc = worker ? runWorker(port, opt.bytes, max_s) : runDriver(opt);
    std::fflush(stdout);
    if (bench::leakedThreads()) std::_Exit(rc);
    return rc;
}
