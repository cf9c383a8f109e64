// pccl-bench worker: one peer of the benchmark run, started by the driver as
// `pccl-bench --worker --rank R --world N --port P --pool-size S --plan ... [--master-addr IP]`.
//
// Protocol with the driver: lines on stdout that begin with "@pb " (everything else the
// library might print is forwarded by the driver to stderr):
//   @pb stage <name>                      progress (connect, barrier)
//   @pb ready <global world> <group world>
//   @pb begin <bytes>
//   @pb progress <bytes> <warmup|timed> <iterations done>   (at most once a second)
//   @pb check <bytes> <ok|inexact|FAIL> <bad> <inexact> <first bad index> <got> <expected>
//             <tx bytes> <rx bytes> <local world size> <hash of the output, hex>
//   @pb ring <my ip> <successor ip> <successor port> <my listening ports, comma-separated>
//             (the data connection that carried most of the check all-reduce: the successor)
//   @pb first <bytes> <seconds of the check call> (the first call of that size; of the run, for the first size)
//   @pb times <bytes> <seconds of iteration 1> ...
//   @pb rss <bytes> <KiB after the warm-up> <KiB after the timed iterations>   (VmRSS)
//   @pb error <text>                      fatal; the worker exits with status 2
//   @pb done
#include "bench_common.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <linux/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace bench {
namespace {

using Clock = std::chrono::steady_clock;

// Resident set size of this process (VmRSS), or -1.
long rssKiB() {
    FILE *f = std::fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kib = -1;
    while (std::fgets(line, sizeof line, f))
        if (std::sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
    std::fclose(f);
    return kib;
}

void emit(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void emit(const char *fmt, ...) {
    std::va_list ap;
    va_start(ap, fmt);
    std::fputs("@pb ", stdout);
    std::vfprintf(stdout, fmt, ap);
    std::fputc('\n', stdout);
    std::fflush(stdout);
    va_end(ap);
}

// Newlines would break the line protocol.
std::string oneLine(const char *s) {
    std::string out = s ? s : "";
    std::replace(out.begin(), out.end(), '\n', ' ');
    std::replace(out.begin(), out.end(), '\r', ' ');
    return out;
}

[[noreturn]] void fail(const pcclComm_t *comm, const std::string &what, pcclResult_t rc) {
    emit("error %s: %s (%d): %s", what.c_str(), oneLine(pcclGetErrorString(rc)).c_str(), int(rc),
         oneLine(pcclGetLastErrorMessage(comm)).c_str());
    std::_Exit(2);
}

struct FreeDeleter {
    void operator()(uint8_t *p) const { std::free(p); }
};
using Buffer = std::unique_ptr<uint8_t, FreeDeleter>;

Buffer allocate(size_t bytes) {
    const size_t rounded = (bytes + 63) / 64 * 64;
    auto *p = static_cast<uint8_t *>(std::aligned_alloc(64, rounded));
    if (!p) {
        emit("error cannot allocate %zu bytes", bytes);
        std::_Exit(2);
    }
    return Buffer(p);
}

int attribute(const pcclComm_t *comm, pcclAttribute_t a) {
    int v = 0;
    if (pcclResult_t rc = pcclGetAttribute(comm, a, &v); rc != pcclSuccess) fail(comm, "pcclGetAttribute", rc);
    return v;
}

// Admits peers until all `world` workers are in the run. Every accepted peer takes part in
// every vote, and every vote gives every voter the same answer, so all peers leave the loop
// after the same round. Peers that are admitted later join the loop at the round that
// admitted them.
void barrier(pcclComm_t *comm, const Options &opt) {
    const auto deadline = Clock::now() + std::chrono::duration<double>(opt.timeout_s);
    int rounds = 0;
    while (true) {
        const int ws = attribute(comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE);
        if (ws >= opt.world) {
            if (ws > opt.world) {
                emit("error global world size %d exceeds the expected %d", ws, opt.world);
                std::_Exit(2);
            }
            return;
        }
        if (Clock::now() > deadline) {
            emit("error barrier: world size still %d of %d after %.0f s (%d rounds)", ws, opt.world, opt.timeout_s,
                 rounds);
            std::_Exit(2);
        }
        ++rounds;
        if (opt.barrier == "pending") {
            bool pending = false;
            if (pcclResult_t rc = pcclArePeersPending(comm, &pending); rc != pcclSuccess)
                fail(comm, "pcclArePeersPending", rc);
            if (!pending) {
                std::this_thread::sleep_for(std::chrono::milliseconds(5));
                continue;
            }
        }
        if (pcclResult_t rc = pcclUpdateTopology(comm); rc != pcclSuccess) fail(comm, "pcclUpdateTopology", rc);
    }
}

// The TCP sockets of this process (the library's among them), read through /proc/self/fd:
// listening ports, and per connected socket its addresses and the bytes the peer acknowledged.
struct SocketView {
    std::vector<int> listen_ports;
    struct Conn {
        std::string local_ip, peer_ip;
        int local_port = 0, peer_port = 0;
        uint64_t acked = 0;
    };
    std::map<int, Conn> conns;  // by fd
};

bool addrOf(const sockaddr_storage &ss, std::string &ip, int &port) {
    char buf[INET6_ADDRSTRLEN] = {};
    if (ss.ss_family == AF_INET) {
        const auto *a = reinterpret_cast<const sockaddr_in *>(&ss);
        inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
        port = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        const auto *a = reinterpret_cast<const sockaddr_in6 *>(&ss);
        if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], buf, sizeof buf);
        else inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
        port = ntohs(a->sin6_port);
    } else {
        return false;
    }
    ip = buf;
    return true;
}

SocketView viewSockets() {
    SocketView v;
    DIR *d = opendir("/proc/self/fd");
    if (!d) return v;
    while (dirent *e = readdir(d)) {
        const int fd = std::atoi(e->d_name);
        if (fd <= 2 || fd == dirfd(d)) continue;
        int type = 0, listening = 0;
        socklen_t len = sizeof type;
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) continue;
        len = sizeof listening;
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len);
        sockaddr_storage local{}, peer{};
        socklen_t ll = sizeof local, pl = sizeof peer;
        if (getsockname(fd, reinterpret_cast<sockaddr *>(&local), &ll) != 0) continue;
        std::string lip;
        int lport = 0;
        if (!addrOf(local, lip, lport)) continue;
        if (listening) {
            v.listen_ports.push_back(lport);
            continue;
        }
        if (getpeername(fd, reinterpret_cast<sockaddr *>(&peer), &pl) != 0) continue;
        SocketView::Conn c;
        c.local_ip = lip;
        c.local_port = lport;
        if (!addrOf(peer, c.peer_ip, c.peer_port)) continue;
        tcp_info ti{};
        len = sizeof ti;
        if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0) c.acked = ti.tcpi_bytes_acked;
        v.conns[fd] = c;
    }
    closedir(d);
    return v;
}

// The successor in the ring: the remote address that received most bytes between two views.
void emitRing(const SocketView &before, const SocketView &after, int master_port) {
    std::map<std::pair<std::string, int>, uint64_t> sent;
    std::string my_ip;
    for (const auto &[fd, c] : after.conns) {
        if (c.peer_port == master_port) continue;  // the control connection
        auto it = before.conns.find(fd);
        // The same connection in both views (a closed one's fd may be reused by a new one).
        const bool same = it != before.conns.end() && it->second.peer_port == c.peer_port &&
                          it->second.local_port == c.local_port && it->second.peer_ip == c.peer_ip;
        const uint64_t base = same ? it->second.acked : 0;
        sent[{c.peer_ip, c.peer_port}] += c.acked - std::min(c.acked, base);
    }
    std::pair<std::string, int> best{"-", 0};
    uint64_t most = 0;
    for (const auto &[k, b] : sent)
        if (b > most) most = b, best = k;
    for (const auto &[fd, c] : after.conns)
        if (c.peer_ip == best.first && c.peer_port == best.second) my_ip = c.local_ip;
    std::string ports;
    for (int p : after.listen_ports) ports += (ports.empty() ? "" : ",") + std::to_string(p);
    emit("ring %s %s %d %s", my_ip.empty() ? "-" : my_ip.c_str(), best.first.c_str(), best.second,
         ports.empty() ? "-" : ports.c_str());
}

}  // namespace

int runWorker(const Options &opt) {
    const DType &dt = *opt.dtype;
    const RedOp &op = *opt.op;
    if (pcclResult_t rc = pcclInit(); rc != pcclSuccess) fail(nullptr, "pcclInit", rc);

    pcclCommCreateParams_t params{};
    params.master_address.inet.protocol = inetIPv4;
    parseIPv4(opt.master_addr, params.master_address.inet.ipv4.data);  // validated by parseOptions
    params.master_address.port = uint16_t(opt.port);
    params.peer_group = 0;
    params.p2p_connection_pool_size = uint32_t(opt.pool);
    pcclComm_t *comm = nullptr;
    if (pcclResult_t rc = pcclCreateCommunicator(&params, &comm); rc != pcclSuccess)
        fail(nullptr, "pcclCreateCommunicator", rc);

    emit("stage connect");
    if (pcclResult_t rc = pcclConnect(comm); rc != pcclSuccess) fail(comm, "pcclConnect", rc);
    emit("stage barrier");
    barrier(comm, opt);
    if (opt.optimize) {
        emit("stage optimize");
        if (pcclResult_t rc = pcclOptimizeTopology(comm); rc != pcclSuccess) fail(comm, "pcclOptimizeTopology", rc);
    }
    emit("ready %d %d", attribute(comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE),
         attribute(comm, PCCL_ATTRIBUTE_PEER_GROUP_WORLD_SIZE));

    const std::vector<uint8_t> input = inputTable(dt, op, opt.seed, opt.rank);
    const std::vector<uint8_t> expected = expectedTable(dt, op, opt.seed, opt.world);
    // All-gather checks every block against every rank's input (ring ranks are not bench ranks).
    std::vector<std::vector<uint8_t>> inputs;
    if (opt.coll == "allgather")
        for (int q = 0; q < opt.world; ++q) inputs.push_back(inputTable(dt, op, opt.seed, q));
    // Broadcast: the root (ring rank 0) sends rank 0's pattern.
    const std::vector<uint8_t> rootInput = opt.coll == "broadcast" ? inputTable(dt, op, opt.seed, 0) : input;
    const uint32_t world = uint32_t(opt.world);
    const uint32_t ring = uint32_t(std::max(0, attribute(comm, PCCL_ATTRIBUTE_RANK)));
    uint64_t tag = 1;

    for (const PlanEntry &e : opt.plan) {
        const size_t count = collCount(opt.coll, e.bytes, dt.size, opt.world);
        const size_t bytes = count * dt.size;
        const size_t block = count / world;  // all-gather, reduce-scatter
        emit("begin %llu", static_cast<unsigned long long>(e.bytes));
        // whole: every block (all-reduce's buffer, all-gather's output, reduce-scatter's input,
        // the broadcast buffer); part: all-gather's input or reduce-scatter's output when separate.
        const bool gather = opt.coll == "allgather", scatter = opt.coll == "reducescatter";
        const bool bcast = opt.coll == "broadcast";
        Buffer whole = allocate(bytes);
        Buffer send = (opt.inplace || (!gather && !scatter && !bcast)) ? nullptr : allocate(gather || scatter ? block * dt.size : bytes);
        Buffer recv = opt.inplace || gather || scatter || bcast ? nullptr : allocate(bytes);  // all-reduce out of place
        uint8_t *own = whole.get() + size_t(ring) * block * dt.size;
        const uint8_t *src = whole.get();
        uint8_t *out = whole.get();
        if (opt.coll == "allreduce") {
            fillFromTable(whole.get(), count, dt, input);
            if (!opt.inplace) out = recv.get(), std::memset(out, 0xA5, bytes);
        } else if (gather) {
            std::memset(whole.get(), 0xA5, bytes);
            src = opt.inplace ? own : send.get();
            fillFromTable(const_cast<uint8_t *>(src), block, dt, input);
        } else if (scatter) {
            fillFromTable(whole.get(), count, dt, input);
            out = opt.inplace ? own : send.get();  // `send` holds the separate output block
            if (!opt.inplace) std::memset(out, 0xA5, block * dt.size);
        } else {
            if (opt.inplace) fillFromTable(whole.get(), count, dt, ring == 0 ? rootInput : input);
            else std::memset(whole.get(), 0xA5, bytes);
            if (!opt.inplace && ring == 0) fillFromTable(send.get(), count, dt, rootInput);
            src = opt.inplace ? whole.get() : (ring == 0 ? send.get() : nullptr);
        }

        pcclReduceDescriptor_t desc{};
        desc.count = count;
        desc.op = op.id;
        desc.src_descriptor.datatype = dt.id;
        desc.src_descriptor.distribution_hint = pcclDistributionNone;
        desc.quantization_options.quantized_datatype = opt.quant == pcclQuantNone ? dt.id : opt.quant_type;
        desc.quantization_options.algorithm = opt.quant;
        const double tolerance = quantErrorBound(dt, op, opt.quant, opt.quant_type, opt.world);
        auto call = [&](pcclReduceInfo_t *info) -> pcclResult_t {
            const uint64_t t = tag++;
            if (gather) {
                const pcclAllGatherDescriptor_t d{block, nullptr, world, dt.id, t};
                return pcclAllGather(src, whole.get(), &d, comm, info);
            }
            if (scatter) {
                pcclReduceScatterDescriptor_t d{};
                d.count = block;
                d.world_size = world;
                d.op = op.id;
                d.tag = t;
                d.src_descriptor = desc.src_descriptor;
                d.quantization_options = desc.quantization_options;
                return pcclReduceScatter(whole.get(), out, &d, comm, info);
            }
            if (bcast) {
                const pcclBroadcastDescriptor_t d{count, 0, world, dt.id, t};
                return pcclBroadcast(src, whole.get(), &d, comm, info);
            }
            desc.tag = t;
            return pcclAllReduce(whole.get(), out, &desc, comm, info);
        };
        const std::string what = opt.coll + " (";

        // Correctness: one operation on fresh data, every element checked, not timed.
        pcclReduceInfo_t info{};
        const SocketView sockets_before = viewSockets();
        const auto check0 = std::chrono::steady_clock::now();
        if (pcclResult_t rc = call(&info); rc != pcclSuccess) fail(comm, what + "check, " + formatSize(e.bytes) + ")", rc);
        emit("first %llu %.9f", static_cast<unsigned long long>(e.bytes),
             std::chrono::duration<double>(std::chrono::steady_clock::now() - check0).count());
        if (&e == &opt.plan.front()) emitRing(sockets_before, viewSockets(), opt.port);
        CheckResult cr;
        uint64_t out_hash = 0;
        if (gather) {
            // Every block holds some rank's input, this rank's own at its ring rank.
            for (uint32_t b = 0; b < world; ++b) {
                const uint8_t *p = whole.get() + size_t(b) * block * dt.size;
                CheckResult best = checkAgainstTable(p, block, dt, op, b == ring ? input : inputs[0]);
                for (int q = 1; q < opt.world && !best.ok() && b != ring; ++q)
                    best = checkAgainstTable(p, block, dt, op, inputs[size_t(q)]);
                if (!best.ok() && cr.ok()) cr = best, cr.first_bad += size_t(b) * block;
            }
            out_hash = hashBytes(whole.get(), bytes);
        } else if (scatter) {
            // The reduction of this rank's block: the expected table from the block's offset on.
            std::vector<uint8_t> rotated(expected.size());
            const size_t shift = (size_t(ring) * block) % kPeriod;
            for (size_t k = 0; k < kPeriod; ++k)
                std::memcpy(&rotated[k * dt.size], &expected[((k + shift) % kPeriod) * dt.size], dt.size);
            cr = checkAgainstTable(out, block, dt, op, rotated, tolerance);
            out_hash = hashBytes(out, block * dt.size);
        } else if (bcast) {
            cr = checkAgainstTable(whole.get(), count, dt, *findOp("sum"), rootInput);
            out_hash = hashBytes(whole.get(), bytes);
        } else {
            cr = checkAgainstTable(out, count, dt, op, expected, tolerance);
            out_hash = hashBytes(out, bytes);
        }
        if (!opt.inplace && (opt.coll == "allreduce" || scatter)) {
            // The input of an out-of-place operation must stay untouched.
            CheckResult sr = checkAgainstTable(whole.get(), count, dt, *findOp("sum"), input);
            if (!sr.ok() || sr.inexact) {
                emit("error send buffer modified by out-of-place %s (%s): %llu elements, first at %llu",
                     opt.coll.c_str(), formatSize(e.bytes).c_str(), static_cast<unsigned long long>(sr.bad + sr.inexact),
                     static_cast<unsigned long long>(sr.first_bad));
                cr.bad += sr.bad + sr.inexact;
            }
        }
        const char *status = !cr.ok() ? "FAIL" : cr.inexact ? "inexact" : "ok";
        emit("check %llu %s %llu %llu %llu %.17g %.17g %llu %llu %u %016llx", static_cast<unsigned long long>(e.bytes), status,
             static_cast<unsigned long long>(cr.bad), static_cast<unsigned long long>(cr.inexact),
             static_cast<unsigned long long>(cr.first_bad), cr.got, cr.expected,
             static_cast<unsigned long long>(info.tx_bytes), static_cast<unsigned long long>(info.rx_bytes),
             info.local_world_size, static_cast<unsigned long long>(out_hash));

        // At most one progress line per second, so that the driver's inactivity deadline can
        // be about one all-reduce long instead of a whole size.
        auto last_progress = Clock::now();
        auto progress = [&](const char *phase, int i) {
            if (Clock::now() - last_progress < std::chrono::seconds(1)) return;
            last_progress = Clock::now();
            emit("progress %llu %s %d", static_cast<unsigned long long>(e.bytes), phase, i);
        };
        for (int i = 0; i < e.warmup; ++i) {
            if (pcclResult_t rc = call(nullptr); rc != pcclSuccess)
                fail(comm, what + "warm-up, " + formatSize(e.bytes) + ")", rc);
            progress("warmup", i + 1);
        }
        // Zero-filled (its pages touched) before the RSS baseline, so that only the library's
        // memory can grow across the loop.
        std::vector<double> times(size_t(e.iters), 0.0);
        const long rssBefore = rssKiB();
        for (int i = 0; i < e.iters; ++i) {
            const auto t0 = Clock::now();
            const pcclResult_t rc = call(nullptr);
            const auto t1 = Clock::now();
            if (rc != pcclSuccess) fail(comm, what + "timed, " + formatSize(e.bytes) + ")", rc);
            times[size_t(i)] = std::chrono::duration<double>(t1 - t0).count();
            progress("timed", i + 1);
        }
        const long rssAfter = rssKiB();
        std::string line = "times " + std::to_string(e.bytes);
        char num[32];
        for (double t : times) {
            std::snprintf(num, sizeof num, " %.9f", t);
            line += num;
        }
        emit("%s", line.c_str());
        emit("rss %llu %ld %ld", static_cast<unsigned long long>(e.bytes), rssBefore, rssAfter);
    }

    // A last vote so that no peer leaves while another is still finishing its last
    // all-reduce; then leave gracefully.
    bool pending = false;
    if (pcclResult_t rc = pcclArePeersPending(comm, &pending); rc != pcclSuccess)
        fail(comm, "pcclArePeersPending (final barrier)", rc);
    if (pcclResult_t rc = pcclDestroyCommunicator(comm); rc != pcclSuccess) fail(nullptr, "pcclDestroyCommunicator", rc);
    emit("done");
    return 0;
}

}  // namespace bench
