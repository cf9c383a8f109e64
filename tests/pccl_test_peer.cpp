// pccl_test_peer: a helper process for the public-API suite (fork+exec'd by the tests).
//
//   pccl_test_peer before-init
//       Checks the calls made before pcclInit (needs a fresh process: pcclInit is process-global).
//   pccl_test_peer foreign-handle
//       Passes handles that the library never created; an unchecked handle crashes this process,
//       not the suite.
//   pccl_test_peer allreduce-loop --master IP:PORT --world N --count C --iters K --value V [--watch-iter W]
//                  [--heartbeat-ms H] [--op-timeout-ms T] [--stop-at STATE [--others A,B]]
//       Joins a run of N peers, then loops an in-place f32 sum (tag 0) of C elements whose
//       element j is V + j % 3. Prints "READY", then "START i" before and "DONE i <result>" after
//       each call. In iteration W a watcher thread samples the buffer and prints "INFLIGHT W" as
//       soon as the library has written reduced data into it: the operation is then certainly
//       under way and not finished, the moment to SIGKILL or SIGSTOP this process.
//       With --coll allgather the call is instead an in-place all-gather of C / N elements per rank
//       (this rank's block inside the buffer; tag 0): the watcher sees the other ranks' blocks land.
//       With --stop-at STATE (inflight, reduce-scatter or all-gather; see support/ring_phase.h,
//       which assumes --world 3 and the others' values given by --others A,B), a watcher in every
//       iteration from W on (default 0) waits until the buffer shows STATE, prints
//       "STOPPED <iter> <buffer address> <count>" and stops this process (SIGSTOP) at once, so that
//       the test can inspect it, cut its links or kill it while the operation certainly has not
//       finished. After SIGCONT the iteration goes on; each iteration stops at most once.
//   pccl_test_peer stop-before-vote --master IP:PORT --world N [--heartbeat-ms H] [--vote update|pending]
//       Joins a run of N peers, prints "READY", then "STOPPING" and stops itself (SIGSTOP) just
//       before voting (pcclUpdateTopology, or pcclArePeersPending). Once resumed it votes and prints
//       "VOTED <result> <last error message>".
//   pccl_test_peer retry-loop --master IP:PORT --world N --count C --iters K --value V --ops M --inflight F
//                  [--watch-iter W]
//       Same, but each iteration is one pcclAllReduceMultipleWithRetry of M in-place f32 sums
//       (tags 0..M-1) of C elements each.
//   pccl_test_peer nat-peer --master IP:PORT --role send|receive --value V --state S --sum T --count C
//       Joins a run of 2 peers (the NAT test: PCCL_PORT_RANGE and PCCL_ADVERTISED_ADDRESS come from
//       the environment), then syncs a shared state of one f32 entry of C elements at revision 1:
//       the sender (SEND_ONLY) holds S + j % 7, the receiver (RECEIVE_ONLY) zeros and must end
//       with the sender's bytes ("SYNCED <rx bytes>"). Then an in-place f32 sum of C elements
//       V + j % 3, which must give T + 2 * (j % 3) ("ALLREDUCED").
//
// Output: one line per event on stdout (flushed); "FAIL <reason>" and exit 1 on a failed check.
#include "support/common.h"

#include "support/ring_phase.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <atomic>
#include <csignal>
#include <unistd.h>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

using namespace pccl_test;

namespace {

void say(const std::string &line) {
    std::fputs(line.c_str(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
}

std::map<std::string, std::string> parseFlags(int argc, char **argv, int first) {
    std::map<std::string, std::string> flags;
    for (int i = first; i + 1 < argc; i += 2) {
        if (std::strncmp(argv[i], "--", 2) != 0) throw PeerFailure(std::string("bad flag ") + argv[i]);
        flags[argv[i] + 2] = argv[i + 1];
    }
    return flags;
}

long long flagInt(const std::map<std::string, std::string> &f, const char *name, long long def = -1) {
    auto it = f.find(name);
    if (it == f.end()) {
        if (def < 0) throw PeerFailure(std::string("missing --") + name);
        return def;
    }
    return std::atoll(it->second.c_str());
}

ccoip_socket_address_t flagMaster(const std::map<std::string, std::string> &f) {
    auto it = f.find("master");
    ccoip_socket_address_t a{};
    if (it == f.end() || pcclParseSocketAddress(it->second.c_str(), &a) != pcclSuccess) throw PeerFailure("missing or bad --master IP:PORT");
    return a;
}

void beforeInit() {
    pcclCommCreateParams_t params{};
    params.master_address = loopbackV4(CCOIP_PROTOCOL_PORT_MASTER);
    pcclComm_t *comm = nullptr;
    PT_EXPECT_RESULT(nullptr, pcclNotInitialized, pcclCreateCommunicator(&params, &comm));
    PT_CHECK(comm == nullptr);
    // The master calls need no pcclInit (PCCL 1.0); tests/c99_master_without_init.c runs one.
    pcclMasterInstance_t *master = nullptr;
    PT_OK(nullptr, pcclCreateMaster(loopbackV4(0), &master));
    PT_OK(nullptr, pcclDestroyMaster(master));
    master = nullptr;
    PT_CHECK(pcclGetErrorString(pcclNotInitialized) != nullptr);
    PT_CHECK(pcclGetLastErrorMessage(nullptr) != nullptr);

    PT_OK(nullptr, pcclInit());
    PT_OK(nullptr, pcclInit()); // idempotent
    PT_OK(nullptr, pcclCreateCommunicator(&params, &comm));
    PT_CHECK(comm != nullptr);
    PT_OK(nullptr, pcclDestroyCommunicator(comm));
    PT_OK(nullptr, pcclCreateMaster(loopbackV4(0), &master));
    PT_OK(nullptr, pcclDestroyMaster(master));
}

void foreignHandle() {
    PT_OK(nullptr, pcclInit());
    // A zeroed block that the library never handed out, large enough for any header it may read.
    alignas(64) static unsigned char fake[4096];
    std::memset(fake, 0, sizeof fake);
    auto *comm = reinterpret_cast<pcclComm_t *>(fake);
    int v = 0;
    PT_EXPECT_RESULT(nullptr, pcclInvalidArgument, pcclGetAttribute(comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE, &v));
    PT_EXPECT_RESULT(nullptr, pcclInvalidArgument, pcclConnect(comm));
    PT_EXPECT_RESULT(nullptr, pcclInvalidArgument, pcclUpdateTopology(comm));
    bool pending = false;
    PT_EXPECT_RESULT(nullptr, pcclInvalidArgument, pcclArePeersPending(comm, &pending));
    float buf[4] = {1, 2, 3, 4};
    const pcclReduceDescriptor_t d = makeDescriptor(4, pcclFloat, pcclSum, 0);
    PT_EXPECT_RESULT(nullptr, pcclInvalidArgument, pcclAllReduce(buf, buf, &d, comm, nullptr));
    PT_EXPECT_RESULT(nullptr, pcclInvalidArgument, pcclDestroyCommunicator(comm));
    auto *master = reinterpret_cast<pcclMasterInstance_t *>(fake);
    uint16_t port = 0;
    PT_EXPECT_RESULT(nullptr, pcclInvalidArgument, pcclRunMaster(master));
    PT_EXPECT_RESULT(nullptr, pcclInvalidArgument, pcclGetMasterPort(master, &port));
    PT_EXPECT_RESULT(nullptr, pcclInvalidArgument, pcclInterruptMaster(master));
    PT_EXPECT_RESULT(nullptr, pcclInvalidArgument, pcclDestroyMaster(master));
}

void fillPattern(float *buf, size_t count, int value) {
    for (size_t j = 0; j < count; ++j) buf[j] = static_cast<float>(value + static_cast<int>(j % 3));
}

// The watchers below sample the user's buffer while the library writes it, on purpose (to see how
// far the call has got); a TSan build is told not to count their reads as racing.
#if defined(__SANITIZE_THREAD__)
extern "C" void AnnotateIgnoreReadsBegin(const char *file, int line);
extern "C" void AnnotateIgnoreReadsEnd(const char *file, int line);
struct ReadsAreSamples {
    ReadsAreSamples() { AnnotateIgnoreReadsBegin(__FILE__, __LINE__); }
    ~ReadsAreSamples() { AnnotateIgnoreReadsEnd(__FILE__, __LINE__); }
};
#else
struct ReadsAreSamples {};
#endif

// Samples every 1024th element of the buffers (concurrently written by the library, hence atomic
// loads) and prints "INFLIGHT <iter>" once any differs from its input value.
class InflightWatcher {
public:
    InflightWatcher(std::vector<std::vector<float> *> bufs, int value, long long iter) {
        thread_ = std::thread([this, bufs, value, iter] {
            [[maybe_unused]] const ReadsAreSamples samples;
            while (!stop_.load()) {
                for (auto *b : bufs) {
                    for (size_t j = 0; j < b->size(); j += 1024) {
                        const float v = std::atomic_ref<float>((*b)[j]).load(std::memory_order_relaxed);
                        if (v != static_cast<float>(value + static_cast<int>(j % 3))) {
                            say("INFLIGHT " + std::to_string(iter));
                            return;
                        }
                    }
                }
                std::this_thread::yield();
            }
        });
    }
    ~InflightWatcher() {
        stop_ = true;
        thread_.join();
    }

private:
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

// Stops this process once its buffer (written concurrently by the library, hence atomic loads)
// shows the requested state: "STOPPED <iter> <address> <count>", then SIGSTOP to the whole
// process, so that no thread moves on between the decision and the stop.
class StopWatcher {
public:
    StopWatcher(std::vector<float> *buf, int value, ring_phase::Values phase_values, const std::string &state,
                long long iter) {
        thread_ = std::thread([this, buf, value, phase_values, state, iter] {
            [[maybe_unused]] const ReadsAreSamples samples;
            float *data = buf->data();
            const size_t count = buf->size();
            auto load = [data](size_t j) { return std::atomic_ref<float>(data[j]).load(std::memory_order_relaxed); };
            while (!stop_.load()) {
                bool hit = false;
                if (state == "inflight") {
                    for (size_t j = 0; j < count && !hit; j += 1024)
                        hit = load(j) != static_cast<float>(value + static_cast<int>(j % 3));
                } else {
                    const auto t = ring_phase::tally(count, 4093, phase_values, load);
                    hit = state == "reduce-scatter" ? ring_phase::inReduceScatter(t) : ring_phase::inAllGather(t);
                }
                if (hit) {
                    std::ostringstream os;
                    os << "STOPPED " << iter << " " << static_cast<void *>(data) << " " << count;
                    say(os.str());
                    ::kill(::getpid(), SIGSTOP);
                    return;
                }
                std::this_thread::sleep_for(std::chrono::microseconds(50));
            }
        });
    }
    ~StopWatcher() {
        stop_ = true;
        thread_.join();
    }

private:
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

void allreduceLoop(const std::map<std::string, std::string> &f) {
    const auto master = flagMaster(f);
    const int world = static_cast<int>(flagInt(f, "world"));
    const size_t count = static_cast<size_t>(flagInt(f, "count"));
    const long long iters = flagInt(f, "iters");
    const int value = static_cast<int>(flagInt(f, "value"));
    const uint32_t group = static_cast<uint32_t>(flagInt(f, "group", 0));
    const auto stop_it = f.find("stop-at");
    const std::string stop_at = stop_it == f.end() ? "" : stop_it->second;
    if (!stop_at.empty() && stop_at != "inflight" && stop_at != "reduce-scatter" && stop_at != "all-gather")
        throw PeerFailure("bad --stop-at " + stop_at);
    const long long watch_iter = flagInt(f, "watch-iter", stop_at.empty() ? 1LL << 62 : 0);
    ring_phase::Values phase_values;
    phase_values.self = value;
    if (auto o = f.find("others"); o != f.end()) {
        if (std::sscanf(o->second.c_str(), "%d,%d", &phase_values.others[0], &phase_values.others[1]) != 2)
            throw PeerFailure("bad --others " + o->second);
    }
    Deadlines deadlines;
    deadlines.heartbeat_timeout_ms = static_cast<uint32_t>(flagInt(f, "heartbeat-ms", 0));
    deadlines.op_timeout_ms = static_cast<uint32_t>(flagInt(f, "op-timeout-ms", 0));
    pcclComm_t *comm = connectPeer(master, group, world, 60, 0, deadlines);
    say("READY");
    std::vector<float> buf(count);
    const pcclReduceDescriptor_t d = makeDescriptor(count, pcclFloat, pcclSum, 0);
    const auto coll = f.find("coll");
    const bool gather = coll != f.end() && coll->second == "allgather";
    if (coll != f.end() && !gather) throw PeerFailure("bad --coll " + coll->second);
    const pcclAllGatherDescriptor_t g{count / static_cast<size_t>(world), nullptr, static_cast<uint32_t>(world), pcclFloat, 0};
    for (long long i = 0; i < iters; ++i) {
        fillPattern(buf.data(), count, value);
        std::unique_ptr<InflightWatcher> watcher;
        std::unique_ptr<StopWatcher> stopper;
        if (stop_at.empty() && i == watch_iter)
            watcher = std::make_unique<InflightWatcher>(std::vector<std::vector<float> *>{&buf}, value, i);
        if (!stop_at.empty() && i >= watch_iter) stopper = std::make_unique<StopWatcher>(&buf, value, phase_values, stop_at, i);
        say("START " + std::to_string(i));
        const size_t own = g.count * static_cast<size_t>(std::max(0, attribute(comm, PCCL_ATTRIBUTE_RANK)));
        const pcclResult_t r = gather ? pcclAllGather(buf.data() + own, buf.data(), &g, comm, nullptr)
                                      : pcclAllReduce(buf.data(), buf.data(), &d, comm, nullptr);
        watcher.reset();
        stopper.reset();
        say("DONE " + std::to_string(i) + " " + resultName(r));
    }
    PT_OK(comm, pcclDestroyCommunicator(comm));
}

void stopBeforeVote(const std::map<std::string, std::string> &f) {
    const auto master = flagMaster(f);
    const int world = static_cast<int>(flagInt(f, "world"));
    Deadlines deadlines;
    deadlines.heartbeat_timeout_ms = static_cast<uint32_t>(flagInt(f, "heartbeat-ms", 0));
    const auto v = f.find("vote");
    const std::string vote = v == f.end() ? "update" : v->second;
    if (vote != "update" && vote != "pending") throw PeerFailure("bad --vote " + vote);
    pcclComm_t *comm = connectPeer(master, 0, world, 60, 0, deadlines);
    say("READY");
    say("STOPPING");
    ::kill(::getpid(), SIGSTOP);
    bool pending = false;
    const pcclResult_t r = vote == "update" ? pcclUpdateTopology(comm) : pcclArePeersPending(comm, &pending);
    say(std::string("VOTED ") + resultName(r) + " " + pcclGetLastErrorMessage(comm));
    pcclDestroyCommunicator(comm);
}

void retryLoop(const std::map<std::string, std::string> &f) {
    const auto master = flagMaster(f);
    const int world = static_cast<int>(flagInt(f, "world"));
    const size_t count = static_cast<size_t>(flagInt(f, "count"));
    const long long iters = flagInt(f, "iters");
    const int value = static_cast<int>(flagInt(f, "value"));
    const size_t ops = static_cast<size_t>(flagInt(f, "ops"));
    const int inflight = static_cast<int>(flagInt(f, "inflight"));
    const long long watch_iter = flagInt(f, "watch-iter", 1LL << 62);
    pcclComm_t *comm = connectPeer(master, 0, world, 60);
    say("READY");
    std::vector<std::vector<float>> bufs(ops, std::vector<float>(count));
    std::vector<pcclReduceOpDescriptor_t> descs(ops);
    for (size_t k = 0; k < ops; ++k) {
        descs[k].sendbuf = bufs[k].data();
        descs[k].recvbuf = bufs[k].data();
        descs[k].descriptor = makeDescriptor(count, pcclFloat, pcclSum, k);
    }
    for (long long i = 0; i < iters; ++i) {
        for (auto &b : bufs) fillPattern(b.data(), count, value);
        std::unique_ptr<InflightWatcher> watcher;
        if (i == watch_iter) {
            std::vector<std::vector<float> *> ptrs;
            for (auto &b : bufs) ptrs.push_back(&b);
            watcher = std::make_unique<InflightWatcher>(ptrs, value, i);
        }
        say("START " + std::to_string(i));
        pcclReduceInfo_t info{};
        const pcclResult_t r = pcclAllReduceMultipleWithRetry(descs.data(), ops, comm, &info, inflight);
        watcher.reset();
        say("DONE " + std::to_string(i) + " " + resultName(r));
    }
    PT_OK(comm, pcclDestroyCommunicator(comm));
}

void natPeer(const std::map<std::string, std::string> &f) {
    const auto master = flagMaster(f);
    const auto role = f.count("role") ? f.at("role") : "";
    if (role != "send" && role != "receive") throw PeerFailure("--role must be send or receive");
    const size_t count = static_cast<size_t>(flagInt(f, "count"));
    const int value = static_cast<int>(flagInt(f, "value"));
    const int state = static_cast<int>(flagInt(f, "state"));
    const int sum = static_cast<int>(flagInt(f, "sum"));
    pcclComm_t *comm = connectPeer(master, 0, 2, 15);
    CommGuard guard(comm);
    say("READY");
    std::vector<float> weights(count, 0.0f);
    if (role == "send")
        for (size_t j = 0; j < count; ++j) weights[j] = static_cast<float>(state + static_cast<int>(j % 7));
    pcclTensorInfo_t info{"weights", weights.data(), count, pcclFloat, pcclDeviceCpu, false};
    pcclSharedState_t shared{1, 1, &info};
    pcclSharedStateSyncInfo_t sync{};
    PT_OK(comm, pcclSynchronizeSharedState(comm, &shared,
                                           role == "send" ? PCCL_SHARED_STATE_SYNC_STRATEGY_SEND_ONLY
                                                          : PCCL_SHARED_STATE_SYNC_STRATEGY_RECEIVE_ONLY,
                                           &sync));
    for (size_t j = 0; j < count; ++j)
        PT_CHECK_MSG(weights[j] == static_cast<float>(state + static_cast<int>(j % 7)),
                     "shared state element " << j << " is " << weights[j] << " after the sync");
    if (role == "receive") PT_CHECK_MSG(sync.rx_bytes >= count * sizeof(float), "received only " << sync.rx_bytes << " bytes");
    say("SYNCED " + std::to_string(sync.rx_bytes));
    std::vector<float> buf(count);
    fillPattern(buf.data(), count, value);
    const pcclReduceDescriptor_t d = makeDescriptor(count, pcclFloat, pcclSum, 0);
    pcclReduceInfo_t reduced{};
    PT_OK(comm, pcclAllReduce(buf.data(), buf.data(), &d, comm, &reduced));
    PT_CHECK_EQ(reduced.local_world_size, 2u);
    for (size_t j = 0; j < count; ++j)
        PT_CHECK_MSG(buf[j] == static_cast<float>(sum + 2 * static_cast<int>(j % 3)),
                     "all-reduce element " << j << " is " << buf[j]);
    say("ALLREDUCED");
}

} // namespace

int main(int argc, char **argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: pccl_test_peer MODE [--flag value]...\n");
        return 2;
    }
    const std::string mode = argv[1];
    try {
        const auto flags = parseFlags(argc, argv, 2);
        if (mode == "before-init") beforeInit();
        else if (mode == "foreign-handle") foreignHandle();
        else if (mode == "allreduce-loop") allreduceLoop(flags);
        else if (mode == "retry-loop") retryLoop(flags);
        else if (mode == "stop-before-vote") stopBeforeVote(flags);
        else if (mode == "nat-peer") natPeer(flags);
        else throw PeerFailure("unknown mode " + mode);
    } catch (const std::exception &e) {
        say(std::string("FAIL ") + e.what());
        return 1;
    }
    say("OK");
    return 0;
}
