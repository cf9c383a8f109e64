// pccl-soak-peer: one peer of the churn soak, a DiLoCo-like loop over the public C API.
//
//   connect -> loop { sync shared state -> all-reduces -> update the state -> admit pending peers }
//
// Every library call is timed and reported as one event line on stdout (events.hpp). A
// retryable failure (a peer was lost, a vote timed out, too few peers) leads to
// pcclUpdateTopology and a new attempt at the step, which starts with a new sync (so a
// peer admitted by that update starts at the same place: the sync). A fresh sync attempt
// after a committed one proposes the next revision, so every attempt's all-reduces have their
// own (lineage, revision, tag). Removal (kicked, master lost) ends the process (exit codes in
// events.hpp).
//
// Usage: pccl-soak-peer IP:PORT --slot N [--seed S] [--name NAME] [--pause-ms MS]
//                       [--max-steps N] [--log FILE] [--inject flip|hang|leak]
// --inject makes this peer misbehave on purpose every 25th step, to show that the
// orchestrator's checks fire: flip a result bit (before checking and hashing), hang 3 heartbeat
// timeouts outside any call, or leak 4 MiB.
#include <pccl.h>

#include <unistd.h>

#include <bit>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "events.hpp"
#include "peer_state.hpp"
#include "reduce_check.hpp"

namespace soak {
namespace {

using Clock = std::chrono::steady_clock;

double msSince(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

struct Options {
    std::string master;
    int slot = -1;
    uint64_t seed = 1;
    std::string name = "peer";
    int pause_ms = 10;  // between steps
    uint64_t max_steps = 0;
    std::string log;  // stderr (library logs) goes here when set
    std::string inject;  // harness self-test: "flip", "hang" or "leak" (see inject())
};

[[noreturn]] void usage(const char *msg) {
    std::fprintf(stderr,
                 "pccl-soak-peer: %s\nusage: pccl-soak-peer IP:PORT --slot N [--seed S] [--name NAME] "
                 "[--pause-ms MS] [--max-steps N] [--log FILE] [--inject flip|hang|leak]\n",
                 msg);
    std::exit(kExitUsage);
}

Options parseOptions(int argc, char **argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) usage(("missing value for " + a).c_str());
            return argv[++i];
        };
        if (a == "--slot") o.slot = std::atoi(value().c_str());
        else if (a == "--seed") o.seed = std::strtoull(value().c_str(), nullptr, 10);
        else if (a == "--name") o.name = value();
        else if (a == "--pause-ms") o.pause_ms = std::atoi(value().c_str());
        else if (a == "--max-steps") o.max_steps = std::strtoull(value().c_str(), nullptr, 10);
        else if (a == "--log") o.log = value();
        else if (a == "--inject") o.inject = value();
        else if (!a.empty() && a[0] == '-') usage(("unknown option " + a).c_str());
        else if (o.master.empty()) o.master = a;
        else usage(("unexpected argument " + a).c_str());
    }
    if (o.master.empty()) usage("the master address is required");
    if (o.slot < 0 || o.slot >= kMaxSlots) usage("--slot must be in 0..63");
    return o;
}

void ev(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void ev(const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    for (char *p = buf; *p; ++p)
        if (*p == '\n' || *p == '\r') *p = ' ';
    std::printf("EV %s\n", buf);
    std::fflush(stdout);
}

enum class Class { Retry, Removed, StateLost, Unexpected };

Class classify(pcclResult_t r) {
    switch (r) {
        case pcclRankConnectionLost:
        case pcclRankConnectionFailed:
        case pcclTimeout:
        case pcclUpdateTopologyFailed:
        case pcclTooFewPeers: return Class::Retry;
        case pcclKicked:
        case pcclMasterConnectionLost: return Class::Removed;
        case pcclNoSharedStateAvailable: return Class::StateLost;
        default: return Class::Unexpected;
    }
}

using ull = unsigned long long;

class SoakPeer {
public:
    explicit SoakPeer(const Options &o);
    int run();

private:
    struct Op {
        const OpSpec *spec = nullptr;
        std::vector<unsigned char> send, recv;  // recv unused when in place
        size_t count = 0;
        uint64_t key = 0;
        void *out() { return spec->in_place ? send.data() : recv.data(); }
        size_t bytes() const { return count * dtypeSize(spec->dtype); }
    };

    void connect();
    void destroyComm();
    bool syncState();
    bool allReduces();
    bool membership();
    // Handles a failed call: recover (and return) or exit.
    void failed(pcclResult_t r);
    void recover();
    [[noreturn]] void quit(int code, const std::string &why);

    void prepare(Op &op);
    pcclReduceDescriptor_t descriptor(const Op &op) const;
    void reportOk(Op &op, double ms, int world, const char *extra);
    void reportFail(Op &op, pcclResult_t r, double ms, const char *extra);
    void violation(const char *kind, const std::string &detail);
    void inject(Op &op);
    int world() const;
    const char *lastError() const { return pcclGetLastErrorMessage(comm_); }

    Options opt_;
    pcclCommCreateParams_t params_{};
    pcclComm_t *comm_ = nullptr;
    PeerState state_;
    std::vector<Op> ops_;
    ResultChecker checker_;
    std::vector<unsigned char> scratch_;  // regenerated inputs (restore checks)
    uint64_t next_rev_ = 0;               // revision the next sync proposes
    uint64_t rev_ = 0, lineage_ = 0;      // of the last committed sync
    bool synced_ = false;                 // a sync succeeded on this communicator
    uint64_t step_hash_ = 0;
    uint64_t steps_ = 0;
    Clock::time_point step_start_;
    std::vector<std::vector<char>> leaked_;  // --inject leak
};

uint64_t freshLineage(int slot) {
    const auto t = static_cast<uint64_t>(Clock::now().time_since_epoch().count());
    return splitmix64Hash(t ^ (static_cast<uint64_t>(getpid()) << 32) ^ static_cast<uint64_t>(slot));
}

SoakPeer::SoakPeer(const Options &o) : opt_(o), state_(o.seed, freshLineage(o.slot), o.slot) {
    if (pcclParseSocketAddress(opt_.master.c_str(), &params_.master_address) != pcclSuccess)
        usage(pcclGetLastErrorMessage(nullptr));
    size_t max_bytes = 0;
    for (const OpSpec &spec : opPlan()) {
        Op op;
        op.spec = &spec;
        const size_t bytes = maxOpCount(spec) * dtypeSize(spec.dtype);
        op.send.resize(bytes);
        if (!spec.in_place) op.recv.resize(bytes);
        ops_.push_back(std::move(op));
        max_bytes = std::max(max_bytes, bytes);
    }
    scratch_.resize(max_bytes);
}

int SoakPeer::run() {
    ev("start slot=%d pid=%d name=%s", opt_.slot, static_cast<int>(getpid()), opt_.name.c_str());
    if (pcclInit() != pcclSuccess) quit(kExitUnexpected, "pcclInit failed");
    connect();
    while (opt_.max_steps == 0 || steps_ < opt_.max_steps) {
        if (!syncState() || !allReduces()) continue;
        state_.applyStep(step_hash_);
        ++steps_;
        ev("step ok lineage=%016llx rev=%llu world=%d step_ms=%.1f", ull(lineage_), ull(rev_), world(), msSince(step_start_));
        if (!membership()) continue;
        if (opt_.pause_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(opt_.pause_ms));
    }
    destroyComm();
    ev("exit code=%d synced=%d why=done", kExitDone, synced_ ? 1 : 0);
    return kExitDone;
}

void SoakPeer::connect() {
    for (int attempt = 1; attempt <= 20; ++attempt) {
        if (!comm_ && pcclCreateCommunicator(&params_, &comm_) != pcclSuccess)
            quit(kExitUnexpected, std::string("pcclCreateCommunicator: ") + pcclGetLastErrorMessage(nullptr));
        ev("connecting attempt=%d", attempt);
        const auto t0 = Clock::now();
        const pcclResult_t r = pcclConnect(comm_);
        const double ms = msSince(t0);
        if (r == pcclSuccess) {
            ev("connect ok ms=%.1f world=%d", ms, world());
            return;
        }
        ev("connect fail code=%d ms=%.1f msg=%s", r, ms, lastError());
        if (r == pcclMasterConnectionFailed) {  // the same communicator may try again
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
            continue;
        }
        const Class c = classify(r);
        if (c == Class::Removed) quit(kExitRemoved, "removed while connecting");
        if (c != Class::Retry) quit(kExitUnexpected, "pcclConnect returned " + std::to_string(r));
        destroyComm();  // any other failure spends the communicator
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    quit(kExitGaveUp, "pcclConnect failed 20 times");
}

void SoakPeer::destroyComm() {
    const auto t0 = Clock::now();
    const pcclResult_t r = pcclDestroyCommunicator(comm_);
    ev("destroy %s ms=%.1f code=%d", r == pcclSuccess ? "ok" : "fail", msSince(t0), r);
    comm_ = nullptr;
    synced_ = false;
}

int SoakPeer::world() const {
    int n = 0;
    pcclGetAttribute(comm_, PCCL_ATTRIBUTE_PEER_GROUP_WORLD_SIZE, &n);
    return n;
}

bool SoakPeer::syncState() {
    step_start_ = Clock::now();
    pcclSharedState_t *shared = state_.shared();
    shared->revision = next_rev_;
    pcclSharedStateSyncInfo_t info{};
    const pcclResult_t r =
        pcclSynchronizeSharedState(comm_, shared, PCCL_SHARED_STATE_SYNC_STRATEGY_ENFORCE_POPULAR, &info);
    const double ms = msSince(step_start_);
    if (r != pcclSuccess) {
        ev("sync fail rev=%llu code=%d ms=%.1f msg=%s", ull(next_rev_), r, ms, lastError());
        failed(r);
        return false;
    }
    const uint64_t proposed = next_rev_;
    rev_ = shared->revision;
    next_rev_ = rev_ + 1;
    lineage_ = state_.lineage();
    if (synced_) {
        // Peers that already hold the state: the results they applied were identical, so
        // nothing may arrive, their own allow_content_inequality entry stays theirs, and the
        // group's next revision is the one they proposed.
        if (info.rx_bytes != 0) violation("sync_rx", "received " + std::to_string(info.rx_bytes) + " bytes although in sync");
        if (!state_.localIntact()) violation("sync_local", "the allow_content_inequality entry was overwritten");
        if (rev_ != proposed)
            violation("sync_revision", "proposed revision " + std::to_string(proposed) + ", got " + std::to_string(rev_));
    }
    state_.writeLocal();
    synced_ = true;
    ev("sync ok lineage=%016llx rev=%llu hash=%016llx rx=%llu tx=%llu world=%d ms=%.1f", ull(lineage_), ull(rev_),
       ull(state_.hash()), ull(info.rx_bytes), ull(info.tx_bytes), world(), ms);
    return true;
}

void SoakPeer::prepare(Op &op) {
    op.count = opCount(*op.spec, rev_);
    op.key = opKey(opt_.seed, lineage_, rev_, op.spec->tag);
    fillInput(*op.spec, op.count, op.key, opt_.slot, op.send.data());
    if (!op.spec->in_place) std::memset(op.recv.data(), 0xA5, op.bytes());
}

pcclReduceDescriptor_t SoakPeer::descriptor(const Op &op) const {
    pcclReduceDescriptor_t d{};
    d.count = op.count;
    d.op = op.spec->op;
    d.tag = op.spec->tag;
    d.src_descriptor.datatype = op.spec->dtype;
    d.src_descriptor.distribution_hint = pcclDistributionNone;
    d.quantization_options.quantized_datatype = op.spec->dtype;
    d.quantization_options.algorithm = pcclQuantNone;
    return d;
}

void SoakPeer::violation(const char *kind, const std::string &detail) {
    ev("violation kind=%s lineage=%016llx rev=%llu msg=%s", kind, ull(lineage_), ull(rev_), detail.c_str());
}

// A successful all-reduce: check the result, fold its hash into the step's, report it.
// world < 0: unknown (pcclAllReduceMultipleWithRetry reports only the final world size).
void SoakPeer::reportOk(Op &op, double ms, int world, const char *extra) {
    inject(op);
    const CheckResult c = checker_.check(*op.spec, op.count, op.key, opt_.slot, op.out());
    const uint64_t h = fnv1a(op.out(), op.bytes());
    step_hash_ = fnv1a(&h, sizeof h, step_hash_);
    const std::string what = "tag " + std::to_string(op.spec->tag) + " " + dtypeName(op.spec->dtype) + " " +
                             opName(op.spec->op) + " count " + std::to_string(op.count) + ": ";
    if (!c.ok) violation("allreduce_wrong", what + c.error);
    if (c.ok && world >= 0 && std::popcount(c.mask) != world)
        violation("allreduce_world", what + std::to_string(std::popcount(c.mask)) + " participants in the result, world " +
                                         std::to_string(world));
    ev("allreduce ok lineage=%016llx rev=%llu tag=%llu how=%s hash=%016llx mask=%llx world=%d ms=%.1f%s", ull(lineage_),
       ull(rev_), ull(op.spec->tag), howName(op.spec->how), ull(h), ull(c.mask), world, ms, extra);
}

// --inject: misbehave on the first operation of every 25th step.
void SoakPeer::inject(Op &op) {
    if (opt_.inject.empty() || steps_ % 25 != 24 || op.spec != &opPlan()[0]) return;
    if (opt_.inject == "flip") {
        static_cast<unsigned char *>(op.out())[op.bytes() / 2] ^= 1;
    } else if (opt_.inject == "hang") {
        const char *hb = std::getenv("PCCL_HEARTBEAT_TIMEOUT_MS");
        std::this_thread::sleep_for(std::chrono::milliseconds(3 * (hb ? std::atoi(hb) : 5000)));
    } else if (opt_.inject == "leak") {
        leaked_.emplace_back(size_t{4} << 20, 'x');
    }
}

// A failed all-reduce: report it; an in-place input must be back (or, inside
// pcclAllReduceMultipleWithRetry, where some operations may have completed: back or a
// correct result).
void SoakPeer::reportFail(Op &op, pcclResult_t r, double ms, const char *extra) {
    ev("allreduce fail lineage=%016llx rev=%llu tag=%llu how=%s code=%d ms=%.1f%s msg=%s", ull(lineage_), ull(rev_),
       ull(op.spec->tag), howName(op.spec->how), r, ms, extra, lastError());
    if (!op.spec->in_place || classify(r) != Class::Retry) return;
    fillInput(*op.spec, op.count, op.key, opt_.slot, scratch_.data());
    if (std::memcmp(scratch_.data(), op.out(), op.bytes()) == 0) return;
    if (op.spec->how == How::Multi && checker_.check(*op.spec, op.count, op.key, opt_.slot, op.out()).ok) return;
    violation("restore", "tag " + std::to_string(op.spec->tag) + ": the in-place input was not restored after code " +
                             std::to_string(r));
}

bool SoakPeer::allReduces() {
    step_hash_ = kFnvOffset;
    pcclResult_t first_error = pcclSuccess;
    auto note = [&](pcclResult_t r) {
        if (first_error == pcclSuccess) first_error = r;
    };
    for (size_t i = 0; i < ops_.size() && first_error == pcclSuccess;) {
        // A batch: one blocking op, or consecutive async (or multi) ops.
        const How how = ops_[i].spec->how;
        size_t end = i + 1;
        while (how != How::Blocking && end < ops_.size() && ops_[end].spec->how == how) ++end;
        for (size_t k = i; k < end; ++k) prepare(ops_[k]);

        if (how == How::Blocking) {
            Op &op = ops_[i];
            const pcclReduceDescriptor_t d = descriptor(op);
            pcclReduceInfo_t info{};
            const auto t0 = Clock::now();
            const pcclResult_t r = pcclAllReduce(op.send.data(), op.out(), &d, comm_, &info);
            const double ms = msSince(t0);
            if (r == pcclSuccess) {
                reportOk(op, ms, static_cast<int>(info.local_world_size), "");
            } else {
                reportFail(op, r, ms, "");
                note(r);
            }
        } else if (how == How::Async) {
            std::vector<pcclAsyncReduceOp_t> handles(end - i);
            std::vector<double> launch_ms(end - i);
            std::vector<Clock::time_point> launched(end - i);
            size_t started = i;
            for (; started < end; ++started) {
                const pcclReduceDescriptor_t d = descriptor(ops_[started]);
                launched[started - i] = Clock::now();
                const pcclResult_t r =
                    pcclAllReduceAsync(ops_[started].send.data(), ops_[started].out(), &d, comm_, &handles[started - i]);
                launch_ms[started - i] = msSince(launched[started - i]);
                if (r != pcclSuccess) {
                    reportFail(ops_[started], r, launch_ms[started - i], " at=launch");
                    note(r);
                    break;
                }
            }
            for (size_t k = i; k < started; ++k) {
                pcclReduceInfo_t info{};
                const auto t0 = Clock::now();
                const pcclResult_t r = pcclAwaitAsyncReduce(&handles[k - i], &info);
                char extra[64];
                std::snprintf(extra, sizeof extra, " launch_ms=%.1f op_ms=%.1f", launch_ms[k - i], msSince(launched[k - i]));
                if (r == pcclSuccess) {
                    reportOk(ops_[k], msSince(t0), static_cast<int>(info.local_world_size), extra);
                } else {
                    reportFail(ops_[k], r, msSince(t0), extra);
                    note(r);
                }
            }
        } else {
            std::vector<pcclReduceOpDescriptor_t> descs;
            for (size_t k = i; k < end; ++k) descs.push_back({ops_[k].send.data(), ops_[k].out(), descriptor(ops_[k])});
            pcclReduceInfo_t info{};
            const auto t0 = Clock::now();
            const pcclResult_t r = pcclAllReduceMultipleWithRetry(descs.data(), descs.size(), comm_, &info, 2);
            const double ms = msSince(t0);
            if (r == pcclSuccess) {
                ev("multi ok n=%zu world=%u ms=%.1f", descs.size(), info.local_world_size, ms);
                for (size_t k = i; k < end; ++k) reportOk(ops_[k], ms, -1, "");
            } else {
                ev("multi fail n=%zu code=%d ms=%.1f msg=%s", descs.size(), r, ms, lastError());
                for (size_t k = i; k < end; ++k) reportFail(ops_[k], r, ms, "");
                note(r);
            }
        }
        i = end;
    }
    if (first_error == pcclSuccess) return true;
    failed(first_error);
    return false;
}

bool SoakPeer::membership() {
    bool pending = false;
    auto t0 = Clock::now();
    pcclResult_t r = pcclArePeersPending(comm_, &pending);
    if (r != pcclSuccess) {
        ev("pending fail code=%d ms=%.1f msg=%s", r, msSince(t0), lastError());
        failed(r);
        return false;
    }
    ev("pending ok pending=%d ms=%.1f", pending ? 1 : 0, msSince(t0));
    if (!pending) return true;
    t0 = Clock::now();
    r = pcclUpdateTopology(comm_);
    if (r != pcclSuccess) {
        ev("topology fail code=%d ms=%.1f msg=%s", r, msSince(t0), lastError());
        failed(r);
        return false;
    }
    ev("topology ok ms=%.1f world=%d", msSince(t0), world());
    return true;
}

void SoakPeer::failed(pcclResult_t r) {
    switch (classify(r)) {
        case Class::Retry:
            // Alone in the group (pcclTooFewPeers): give a joining peer a moment before voting again.
            if (r == pcclTooFewPeers) std::this_thread::sleep_for(std::chrono::milliseconds(20));
            return recover();
        case Class::Removed: quit(kExitRemoved, std::string(pcclGetErrorString(r)) + ": " + lastError());
        case Class::StateLost: quit(kExitStateLost, std::string(pcclGetErrorString(r)) + ": " + lastError());
        case Class::Unexpected: quit(kExitUnexpected, std::string(pcclGetErrorString(r)) + ": " + lastError());
    }
}

// Every peer of the group saw the same failure (all-or-nothing), so all of them vote here.
void SoakPeer::recover() {
    for (int attempt = 1; attempt <= 200; ++attempt) {
        const auto t0 = Clock::now();
        const pcclResult_t r = pcclUpdateTopology(comm_);
        if (r == pcclSuccess) {
            ev("topology ok ms=%.1f world=%d why=recover", msSince(t0), world());
            return;
        }
        ev("topology fail code=%d ms=%.1f why=recover msg=%s", r, msSince(t0), lastError());
        if (classify(r) != Class::Retry) failed(r);  // exits
        std::this_thread::sleep_for(std::chrono::milliseconds(std::min(10 * attempt, 200)));
    }
    quit(kExitGaveUp, "pcclUpdateTopology failed 200 times in a row");
}

void SoakPeer::quit(int code, const std::string &why) {
    ev("exit code=%d synced=%d msg=%s", code, synced_ ? 1 : 0, why.c_str());
    std::fflush(stderr);
    std::_Exit(code);  // no teardown: the library's threads may still be blocked
}

}  // namespace
}  // namespace soak

int main(int argc, char **argv) {
    const soak::Options opt = soak::parseOptions(argc, argv);
    if (!opt.log.empty() && !std::freopen(opt.log.c_str(), "a", stderr)) {
        std::perror("pccl-soak-peer: --log");
        return soak::kExitUsage;
    }
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    soak::SoakPeer peer(opt);
    return peer.run();
}
