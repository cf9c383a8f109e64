// pccl-bench driver: for every (world size, pool size) of the sweep it starts an embedded
// master on 127.0.0.1:0 and N copies of itself as workers (`--worker`, via
// /proc/self/exe), collects their "@pb" lines, and prints one row per size. Optionally it
// runs the same plan with torch.distributed gloo (bench/gloo_allreduce.py) first and adds
// the comparison columns. Every wait has a deadline; children are killed by PID on errors,
// timeouts and signals.
#include "bench_common.hpp"
#include "process.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace bench {
namespace {

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::vector<std::string> splitWords(std::string_view line) {
    std::vector<std::string> out;
    std::istringstream is{std::string(line)};
    std::string w;
    while (is >> w) out.push_back(w);
    return out;
}

// The text after the first n words of line.
std::string restAfterWords(std::string_view line, size_t n) {
    size_t pos = 0;
    for (size_t i = 0; i < n; ++i) {
        pos = line.find_first_not_of(' ', pos);
        if (pos == std::string_view::npos) return "";
        pos = line.find(' ', pos);
        if (pos == std::string_view::npos) return "";
    }
    pos = line.find_first_not_of(' ', pos);
    return pos == std::string_view::npos ? "" : std::string(line.substr(pos));
}

double median(std::vector<double> v) {
    if (v.empty()) return NAN;
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

uint64_t u64(const std::string &s) { return std::strtoull(s.c_str(), nullptr, 10); }

// Seconds a healthy run may stay silent beyond the inactivity timeout: workers report
// progress at least after every all-reduce that ends a second of silence, so one all-reduce
// at a pessimistic 10 MB/s, plus filling and checking the buffers.
double sizeAllowance(const PlanEntry &e) { return 2.0 * double(e.bytes) / 10e6; }

// ------------------------------------------------------------------ results

struct Row {
    uint64_t bytes = 0;
    size_t count = 0;
    int iters = 0;
    double median_s = NAN, min_s = NAN;
    std::string check;  // ok, ok~ (within one ulp), FAIL, ERR, TIMEOUT, n/a
    uint64_t tx_bytes = 0;
};

struct GlooResult {
    std::map<uint64_t, Row> rows;
    std::string error;  // set if the run failed as a whole
};


std::string fmtNum(double v, int prec, int width) {
    char b[64];
    if (!std::isfinite(v)) std::snprintf(b, sizeof b, "%*s", width, "--");
    else std::snprintf(b, sizeof b, "%*.*f", width, prec, v);
    return b;
}

std::string fmtCsv(double v, int prec) {
    if (!std::isfinite(v)) return "";
    char b[64];
    std::snprintf(b, sizeof b, "%.*f", prec, v);
    return b;
}

class Printer {
public:
    Printer(const Options &opt, bool gloo) : opt_(opt), gloo_(gloo) {}

    void start() {
        if (opt_.csv) {
            std::printf("peers,pool,dtype,op,inplace,bytes,count,iters,time_ms,min_ms,algbw_gbs,busbw_gbs,check,"
                        "tx_bytes%s\n",
                        gloo_ ? ",gloo_time_ms,gloo_min_ms,gloo_busbw_gbs,ratio" : "");
            std::fflush(stdout);
        }
    }

    void header(int world, int pool) {
        if (opt_.csv) return;
        std::printf("\n# pccl-bench  coll=%s peers=%d pool=%d dtype=%s op=%s inplace=%d iters=%s seed=%llu quant=%s%s\n",
                    opt_.coll.c_str(), world, pool, opt_.dtype->name, opt_.op->name, opt_.inplace ? 1 : 0,
                    opt_.iters ? std::to_string(opt_.iters).c_str() : "auto", static_cast<unsigned long long>(opt_.seed),
                    formatQuant(opt_.quant, opt_.quant_type).c_str(), opt_.optimize ? " optimize" : "");
        std::printf("#      size  iters     time(ms)      min(ms)  algbw(GB/s)  busbw(GB/s)  check%s\n",
                    gloo_ ? "    gloo(ms)  gloo busbw   ratio" : "");
        std::fflush(stdout);
    }

    void comment(const std::string &text) {
        if (opt_.csv) std::fprintf(stderr, "# %s\n", text.c_str());
        else std::printf("# %s\n", text.c_str());
        std::fflush(stdout);
    }

    void row(int world, int pool, const Row &r, const Row *g) {
        const double bytes = double(r.count) * double(opt_.dtype->size);
        const double algbw = bytes / r.median_s / 1e9;
        const double busbw = algbw * busFactor(opt_.coll, world);
        double gms = NAN, gmin = NAN, gbus = NAN, ratio = NAN;
        std::string gcheck;
        if (g) {
            gms = g->median_s * 1e3;
            gmin = g->min_s * 1e3;
            gbus = bytes / g->median_s / 1e9 * busFactor(opt_.coll, world);
            ratio = busbw / gbus;
            gcheck = g->check;
        }
        if (opt_.csv) {
            std::printf("%d,%d,%s,%s,%d,%llu,%zu,%d,%s,%s,%s,%s,%s,%llu", world, pool, opt_.dtype->name, opt_.op->name,
                        opt_.inplace ? 1 : 0, static_cast<unsigned long long>(r.count * opt_.dtype->size), r.count,
                        r.iters, fmtCsv(r.median_s * 1e3, 4).c_str(), fmtCsv(r.min_s * 1e3, 4).c_str(),
                        fmtCsv(algbw, 4).c_str(), fmtCsv(busbw, 4).c_str(), r.check.c_str(),
                        static_cast<unsigned long long>(r.tx_bytes));
            if (gloo_)
                std::printf(",%s,%s,%s,%s", fmtCsv(gms, 4).c_str(), fmtCsv(gmin, 4).c_str(), fmtCsv(gbus, 4).c_str(),
                            fmtCsv(ratio, 3).c_str());
            std::printf("\n");
        } else {
            std::printf("%12s  %5d  %11s  %11s  %11s  %11s  %5s", formatSize(r.count * opt_.dtype->size).c_str(),
                        r.iters, fmtNum(r.median_s * 1e3, 3, 11).c_str(), fmtNum(r.min_s * 1e3, 3, 11).c_str(),
                        fmtNum(algbw, 3, 11).c_str(), fmtNum(busbw, 3, 11).c_str(), r.check.c_str());
            if (gloo_) {
                std::printf("  %10s  %10s  %6s", fmtNum(gms, 3, 10).c_str(), fmtNum(gbus, 3, 10).c_str(),
                            fmtNum(ratio, 2, 6).c_str());
                if (g && g->check != "ok") std::printf("  (gloo %s)", gcheck.c_str());
            }
            std::printf("\n");
        }
        std::fflush(stdout);
        if (std::isfinite(busbw)) {
            busbw_sum_ += busbw;
            ++busbw_n_;
        }
    }

    double avgBusbw() const { return busbw_n_ ? busbw_sum_ / busbw_n_ : NAN; }
    void resetAvg() { busbw_sum_ = 0, busbw_n_ = 0; }

private:
    const Options &opt_;
    bool gloo_;
    double busbw_sum_ = 0;
    int busbw_n_ = 0;
};

// ------------------------------------------------------------------ gloo

bool torchAvailable(const Options &opt) {
    std::string err;
    std::vector<Child> c;
    c.push_back(spawnChild({"/usr/bin/env", opt.python, "-c",
                            "import torch, torch.distributed as d; assert d.is_available() and d.is_gloo_available()"},
                           "torch probe", true, err));
    if (c[0].pid <= 0) return false;
    const auto t0 = Clock::now();
    while (!allExited(c) && secondsSince(t0) < 120) pumpChildren(c, 200, [](size_t, std::string_view) {});
    if (!c[0].exited) {
        stopChild(c[0], SIGKILL, 1);
        return false;
    }
    stopChild(c[0], SIGKILL, 1);
    return WIFEXITED(c[0].status) && WEXITSTATUS(c[0].status) == 0;
}

GlooResult runGloo(const Options &opt, int world, const std::vector<PlanEntry> &plan) {
    GlooResult res;
    std::string err;
    std::vector<std::string> argv = {"/usr/bin/env",
                                     opt.python,
                                     opt.gloo_script,
                                     "--machine",
                                     "--peers",
                                     std::to_string(world),
                                     "--plan",
                                     formatPlan(plan),
                                     "--dtype",
                                     opt.dtype->name,
                                     "--op",
                                     opt.op->name,
                                     "--coll",
                                     opt.coll,
                                     "--seed",
                                     std::to_string(opt.seed),
                                     "--timeout",
                                     std::to_string(int(opt.timeout_s))};
    std::vector<Child> c;
    c.push_back(spawnChild(argv, "gloo", false, err));
    if (c[0].pid <= 0) {
        res.error = "cannot start the gloo script: " + err;
        return res;
    }
    auto last = Clock::now();
    double allowance = 0;
    std::map<uint64_t, PlanEntry> by_bytes;
    for (const auto &e : plan) by_bytes[e.bytes] = e;
    auto on_line = [&](size_t, std::string_view line) {
        if (line.rfind("@gloo ", 0) != 0) {
            if (opt.verbose) std::fprintf(stderr, "[gloo] %.*s\n", int(line.size()), line.data());
            return;
        }
        last = Clock::now();
        auto w = splitWords(line);
        if (w.size() >= 3 && w[1] == "begin") {
            auto it = by_bytes.find(u64(w[2]));
            allowance = it == by_bytes.end() ? 0 : sizeAllowance(it->second);
        } else if (w.size() >= 8 && w[1] == "row") {
            Row r;
            r.bytes = u64(w[2]);
            r.count = size_t(u64(w[3]));
            r.iters = std::atoi(w[4].c_str());
            r.median_s = std::atof(w[5].c_str());
            r.min_s = std::atof(w[6].c_str());
            r.check = w[7];
            res.rows[r.bytes] = r;
        } else if (w.size() >= 2 && w[1] == "error") {
            if (!res.error.empty()) res.error += "; ";
            res.error += restAfterWords(line, 2);
        }
    };
    const double startup = 120;  // importing torch in N processes on a busy machine
    while (!allExited(c)) {
        if (interrupted()) break;
        pumpChildren(c, 200, on_line);
        const double limit = opt.timeout_s + allowance + (res.rows.empty() ? startup : 0);
        if (!c[0].exited && secondsSince(last) > limit) {
            if (!res.error.empty()) res.error += "; ";
            res.error += "timeout: no progress for " + std::to_string(int(limit)) + " s";
            break;
        }
    }
    // Drain what is left, then make sure it is gone (SIGTERM lets it kill its own workers).
    for (int i = 0; i < 10 && c[0].fd >= 0; ++i) pumpChildren(c, 50, on_line);
    stopChild(c[0], SIGTERM, 5);
    if (!(WIFEXITED(c[0].status) && WEXITSTATUS(c[0].status) == 0) && res.error.empty())
        res.error = "gloo script " + describeStatus(c[0].status);
    return res;
}

// ------------------------------------------------------------------ master

struct Master {
    pcclMasterInstance_t *handle = nullptr;
    uint16_t port = 0;
};

std::optional<Master> startMaster(const Options &opt, std::string &err) {
    Master m;
    ccoip_socket_address_t addr{};
    addr.inet.protocol = inetIPv4;
    parseIPv4(opt.master_addr, addr.inet.ipv4.data);  // validated by parseOptions
    addr.port = 0;
    pcclResult_t rc = pcclCreateMaster(addr, &m.handle);
    if (rc != pcclSuccess) {
        err = std::string("pcclCreateMaster: ") + pcclGetErrorString(rc) + ": " + pcclGetLastErrorMessage(nullptr);
        return std::nullopt;
    }
    bool finished = callWithDeadline([&] { rc = pcclRunMaster(m.handle); }, 30);
    if (!finished) {
        err = "pcclRunMaster did not return within 30 s";
        return std::nullopt;
    }
    if (rc != pcclSuccess) {
        err = std::string("pcclRunMaster: ") + pcclGetErrorString(rc) + ": " + pcclGetLastErrorMessage(nullptr);
        pcclDestroyMaster(m.handle);
        return std::nullopt;
    }
    rc = pcclGetMasterPort(m.handle, &m.port);
    if (rc != pcclSuccess || m.port == 0) {
        err = std::string("pcclGetMasterPort: ") + pcclGetErrorString(rc) + " (port " + std::to_string(m.port) + ")";
        pcclInterruptMaster(m.handle);
        callWithDeadline([h = m.handle] { pcclMasterAwaitTermination(h); pcclDestroyMaster(h); }, 15);
        return std::nullopt;
    }
    return m;
}

// Returns an empty string or a description of what went wrong.
std::string stopMaster(Master &m) {
    if (!m.handle) return "";
    std::string problem;
    pcclResult_t rc_i = pcclInterruptMaster(m.handle);
    pcclResult_t rc_a = pcclSuccess, rc_d = pcclSuccess;
    pcclMasterInstance_t *h = m.handle;
    m.handle = nullptr;
    if (!callWithDeadline([h, &rc_a] { rc_a = pcclMasterAwaitTermination(h); }, 15))
        return "pcclMasterAwaitTermination did not return within 15 s (master left running)";
    if (!callWithDeadline([h, &rc_d] { rc_d = pcclDestroyMaster(h); }, 15))
        return "pcclDestroyMaster did not return within 15 s";
    if (rc_i != pcclSuccess) problem += std::string("pcclInterruptMaster: ") + pcclGetErrorString(rc_i) + "; ";
    if (rc_a != pcclSuccess) problem += std::string("pcclMasterAwaitTermination: ") + pcclGetErrorString(rc_a) + "; ";
    if (rc_d != pcclSuccess) problem += std::string("pcclDestroyMaster: ") + pcclGetErrorString(rc_d) + "; ";
    return problem;
}

// ------------------------------------------------------------------ one pccl run

struct RankSize {
    bool have_check = false, have_times = false;
    std::string status;
    uint64_t bad = 0, inexact = 0, first_bad = 0, tx = 0, rx = 0;
    std::string hash;  // of the whole output: equal on every rank
    double got = 0, expected = 0;
    unsigned local_world = 0;
    std::vector<double> times;
};

struct RankState {
    std::string stage = "start";
    std::map<uint64_t, RankSize> sizes;
    std::vector<std::string> errors;
    bool ready = false, done = false;
    int global_world = 0, group_world = 0;
    // "@pb ring": this rank's address, its successor's data address, its listening ports.
    std::string ip, succ_ip;
    int succ_port = 0;
    std::vector<int> listen_ports;
};

// "ring 0 -> 2 -> 1 -> 3" from every rank's successor address, or why it cannot be told.
std::string describeRing(const std::vector<RankState> &st) {
    const size_t n = st.size();
    std::vector<int> next(n, -1);
    for (size_t k = 0; k < n; ++k)
        for (size_t j = 0; j < n; ++j)
            if (j != k && st[j].ip == st[k].succ_ip &&
                std::count(st[j].listen_ports.begin(), st[j].listen_ports.end(), st[k].succ_port))
                next[k] = int(j);
    std::string ring = "0";
    size_t at = 0;
    for (size_t steps = 1; steps < n; ++steps) {
        if (next[at] < 0) return "unknown (rank " + std::to_string(at) + "'s successor not found)";
        at = size_t(next[at]);
        ring += " -> " + std::to_string(at);
    }
    if (n > 1 && next[at] != 0) return "unknown (not one cycle: " + ring + ")";
    return ring;
}

// --launch: the words before a worker's command line (e.g. "/usr/sbin/ip netns exec
// pcclw-h{rank}" puts rank r in network namespace pcclw-h<r>). The prefix must exec the worker
// (same PID), so that killing the child by PID and PR_SET_PDEATHSIG still reach the worker.
std::vector<std::string> launchPrefix(const Options &opt, int rank) {
    std::string words = opt.launch;
    for (size_t at; (at = words.find("{rank}")) != std::string::npos;) words.replace(at, 6, std::to_string(rank));
    return splitWords(words);
}

struct RunOutcome {
    bool ok = true;
    std::vector<std::string> problems;
};

RunOutcome runPccl(const Options &opt, const std::string &self, int world, int pool,
                   const std::vector<PlanEntry> &plan, const GlooResult *gloo, Printer &out) {
    RunOutcome outcome;
    auto problem = [&](const std::string &p) {
        outcome.ok = false;
        if (std::find(outcome.problems.begin(), outcome.problems.end(), p) == outcome.problems.end())
            outcome.problems.push_back(p);
    };

    std::string err;
    auto master = startMaster(opt, err);
    if (!master) {
        problem("master: " + err);
        return outcome;
    }

    std::vector<Child> kids;

    std::vector<RankState> st(static_cast<size_t>(world));
    std::map<uint64_t, PlanEntry> by_bytes;
    for (const auto &e : plan) by_bytes[e.bytes] = e;
    size_t next_row = 0;
    auto last_progress = Clock::now();
    double allowance = 0;

    auto emitReadyRows = [&] {
        while (next_row < plan.size()) {
            const uint64_t b = plan[next_row].bytes;
            for (const auto &s : st) {
                auto it = s.sizes.find(b);
                if (it == s.sizes.end() || !it->second.have_times) return;
            }
            Row r;
            r.bytes = b;
            r.count = collCount(opt.coll, b, opt.dtype->size, world);
            r.iters = plan[next_row].iters;
            std::vector<double> slowest(size_t(r.iters), 0.0);
            bool fail = false, inexact = false;
            for (size_t k = 0; k < st.size(); ++k) {
                const RankSize &rs = st[k].sizes[b];
                for (size_t i = 0; i < slowest.size() && i < rs.times.size(); ++i)
                    slowest[i] = std::max(slowest[i], rs.times[i]);
                if (rs.status == "FAIL") {
                    fail = true;
                    char buf[256];
                    std::snprintf(buf, sizeof buf,
                                  "rank %zu: %s %s of %s wrong: %llu bad elements, first at index %llu: "
                                  "got %.9g expected %.9g",
                                  k, opt.op->name, opt.coll.c_str(), formatSize(b).c_str(), static_cast<unsigned long long>(rs.bad),
                                  static_cast<unsigned long long>(rs.first_bad), rs.got, rs.expected);
                    problem(buf);
                }
                if (rs.status == "inexact") inexact = true;
                if (world > 1 && rs.tx == 0 && rs.rx == 0)
                    problem("rank " + std::to_string(k) + ": pcclReduceInfo_t.tx_bytes and rx_bytes are 0");
                if (int(rs.local_world) != world)  // the data may still be right: a note, not FAIL
                    problem("rank " + std::to_string(k) + ": pcclReduceInfo_t.local_world_size " +
                            std::to_string(rs.local_world) + " != " + std::to_string(world));
            }
            // Every rank holds the same output, except in a reduce-scatter (each its own block).
            for (size_t k = 1; k < st.size() && opt.coll != "reducescatter"; ++k) {
                const std::string &h0 = st[0].sizes[b].hash, &hk = st[k].sizes[b].hash;
                if (h0 != hk) {
                    fail = true;
                    problem("ranks 0 and " + std::to_string(k) + " hold different results for " + formatSize(b) +
                            " (output hash " + h0 + " vs " + hk + ")");
                }
            }
            r.median_s = median(slowest);
            r.min_s = *std::min_element(slowest.begin(), slowest.end());
            r.check = fail ? "FAIL" : inexact ? "ok~" : "ok";
            r.tx_bytes = st[0].sizes[b].tx;
            const Row *g = nullptr;
            if (gloo) {
                auto it = gloo->rows.find(b);
                if (it != gloo->rows.end()) g = &it->second;
            }
            out.row(world, pool, r, g);
            ++next_row;
        }
    };

    auto on_line = [&](size_t idx, std::string_view line) {
        if (line.rfind("@pb ", 0) != 0) {
            std::fprintf(stderr, "[rank %zu] %.*s\n", idx, int(line.size()), line.data());
            return;
        }
        if (opt.verbose) std::fprintf(stderr, "[rank %zu] %.*s\n", idx, int(line.size()), line.data());
        last_progress = Clock::now();
        RankState &s = st[idx];
        auto w = splitWords(line);
        if (w.size() < 2) return;
        const std::string &kind = w[1];
        if (kind == "stage" && w.size() >= 3) {
            s.stage = w[2];
        } else if (kind == "ready" && w.size() >= 4) {
            s.ready = true;
            s.stage = "ready";
            s.global_world = std::atoi(w[2].c_str());
            s.group_world = std::atoi(w[3].c_str());
            if (s.group_world != world)
                problem("rank " + std::to_string(idx) + ": peer group world size " + std::to_string(s.group_world) +
                        " != " + std::to_string(world));
        } else if (kind == "progress" && w.size() >= 5) {
            s.stage = "size " + formatSize(u64(w[2])) + ", " + w[3] + " iteration " + w[4];
        } else if (kind == "begin" && w.size() >= 3) {
            s.stage = "size " + formatSize(u64(w[2]));
            auto it = by_bytes.find(u64(w[2]));
            if (it != by_bytes.end()) allowance = std::max(allowance, sizeAllowance(it->second));
        } else if (kind == "check" && w.size() >= 12) {
            RankSize &rs = s.sizes[u64(w[2])];
            rs.have_check = true;
            rs.status = w[3];
            rs.bad = u64(w[4]);
            rs.inexact = u64(w[5]);
            rs.first_bad = u64(w[6]);
            rs.got = std::atof(w[7].c_str());
            rs.expected = std::atof(w[8].c_str());
            rs.tx = u64(w[9]);
            rs.rx = u64(w[10]);
            rs.local_world = unsigned(std::atoi(w[11].c_str()));
            if (w.size() >= 13) rs.hash = w[12];
        } else if (kind == "ring" && w.size() >= 6) {
            s.ip = w[2];
            s.succ_ip = w[3];
            s.succ_port = std::atoi(w[4].c_str());
            s.listen_ports.clear();
            std::istringstream ports(w[5]);
            for (std::string p; std::getline(ports, p, ',');) s.listen_ports.push_back(std::atoi(p.c_str()));
            if (std::all_of(st.begin(), st.end(), [](const RankState &x) { return x.succ_port != 0; }))
                out.comment("ring (ranks, in the order data flows): " + describeRing(st));
        } else if (kind == "times" && w.size() >= 3) {
            RankSize &rs = s.sizes[u64(w[2])];
            rs.have_times = true;
            for (size_t i = 3; i < w.size(); ++i) rs.times.push_back(std::atof(w[i].c_str()));
            emitReadyRows();
        } else if (kind == "rss" && w.size() >= 5 && opt.rss) {
            // Memory across the timed iterations (each with a new tag): a leak per operation
            // shows here, e.g. --sizes 64K --iters 10000.
            const long before = std::atol(w[3].c_str()), after = std::atol(w[4].c_str());
            std::printf("# rss rank %zu, %s: %ld -> %ld KiB (%+ld) over the timed iterations\n", idx,
                        formatSize(u64(w[2])).c_str(), before, after, after - before);
        } else if (kind == "error") {
            s.errors.push_back(restAfterWords(line, 2));
        } else if (kind == "done") {
            s.done = true;
            s.stage = "done";
        }
    };

    for (int r = 0; r < world; ++r) {
        std::vector<std::string> argv = launchPrefix(opt, r);
        const std::vector<std::string> worker = {self,
                                         "--worker",
                                         "--rank",
                                         std::to_string(r),
                                         "--world",
                                         std::to_string(world),
                                         "--port",
                                         std::to_string(master->port),
                                         "--pool-size",
                                         std::to_string(pool),
                                         "--plan",
                                         formatPlan(plan),
                                         "--dtype",
                                         opt.dtype->name,
                                         "--op",
                                         opt.op->name,
                                         "--seed",
                                         std::to_string(opt.seed),
                                         "--timeout",
                                         std::to_string(opt.timeout_s),
                                         "--barrier",
                                         opt.barrier,
                                         "--master-addr",
                                         opt.master_addr,
                                         "--quant",
                                         formatQuant(opt.quant, opt.quant_type),
                                         "--coll",
                                         opt.coll};
        argv.insert(argv.end(), worker.begin(), worker.end());
        if (opt.inplace) argv.push_back("--inplace");
        if (opt.optimize) argv.push_back("--optimize");
        Child c = spawnChild(argv, "rank " + std::to_string(r), false, err);
        if (c.pid <= 0) {
            problem("cannot start worker " + std::to_string(r) + ": " + err);
            break;
        }
        kids.push_back(std::move(c));
        // --join-order sequential: the next worker starts once this one is admitted (it reports
        // stage "barrier" after pcclConnect), so the ring is 0, 1, ..., N-1.
        const auto t_join = Clock::now();
        while (opt.sequential_join && r + 1 < world && !interrupted()) {
            const std::string &stage = st[size_t(r)].stage;
            if (stage != "start" && stage != "connect") break;
            if (kids.back().exited || !st[size_t(r)].errors.empty() || secondsSince(t_join) > opt.timeout_s) break;
            pumpChildren(kids, 100, on_line);
        }
    }
    if (int(kids.size()) != world) {
        for (auto &k : kids) stopChild(k, SIGKILL, 0);
        if (std::string p = stopMaster(*master); !p.empty()) problem("master shutdown: " + p);
        return outcome;
    }

    // Run until every worker exited; after the first failure, give the others a short
    // grace period to report their side of it, then kill them.
    std::optional<Clock::time_point> grace_end;
    bool timed_out = false;
    while (!allExited(kids)) {
        pumpChildren(kids, 200, on_line);
        bool failed = false;
        for (size_t k = 0; k < kids.size(); ++k) {
            const bool bad_exit = kids[k].exited && !(WIFEXITED(kids[k].status) && WEXITSTATUS(kids[k].status) == 0);
            if (bad_exit || !st[k].errors.empty()) failed = true;
        }
        if (failed && !grace_end)
            grace_end = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(std::min(10.0, opt.timeout_s)));
        if (grace_end && Clock::now() > *grace_end) break;
        if (!grace_end && secondsSince(last_progress) > opt.timeout_s + allowance) {
            timed_out = true;
            break;
        }
    }
    if (timed_out) {
        std::string stages;
        for (size_t k = 0; k < st.size(); ++k)
            stages += (k ? ", " : "") + std::string("rank ") + std::to_string(k) + ": " + st[k].stage;
        problem("timeout: no progress for " + std::to_string(int(opt.timeout_s + allowance)) + " s (" + stages + ")");
    }
    // Kill what is left (our own children, by PID, not yet reaped), collect what they still
    // had to say, then reap them.
    std::vector<bool> killed(kids.size(), false);
    for (size_t k = 0; k < kids.size(); ++k) {
        if (kids[k].pid > 0 && !kids[k].exited) {
            kill(kids[k].pid, SIGKILL);
            killed[k] = true;
        }
    }
    const auto drain_start = Clock::now();
    while (secondsSince(drain_start) < 3 &&
           std::any_of(kids.begin(), kids.end(), [](const Child &c) { return c.fd >= 0 || !c.exited; }))
        pumpChildren(kids, 50, on_line);
    for (auto &k : kids) stopChild(k, SIGKILL, 0);
    for (size_t k = 0; k < kids.size(); ++k) {
        for (const auto &e : st[k].errors) problem("rank " + std::to_string(k) + ": " + e);
        if (killed[k] || !st[k].errors.empty()) continue;
        if (!(WIFEXITED(kids[k].status) && WEXITSTATUS(kids[k].status) == 0))
            problem("rank " + std::to_string(k) + ": worker " + describeStatus(kids[k].status) + " at stage " +
                    st[k].stage);
        else if (!st[k].done)
            problem("rank " + std::to_string(k) + ": worker exited without finishing (" + st[k].stage + ")");
    }
    if (!timed_out && grace_end) {
        std::string stages;
        for (size_t k = 0; k < st.size(); ++k)
            if (killed[k]) stages += (stages.empty() ? "" : ", ") + std::string("rank ") + std::to_string(k) + " at " + st[k].stage;
        if (!stages.empty()) problem("killed after the first failure: " + stages);
    }
    // Sizes that never completed.
    for (; next_row < plan.size(); ++next_row) {
        Row r;
        r.bytes = plan[next_row].bytes;
        r.count = collCount(opt.coll, r.bytes, opt.dtype->size, world);
        r.iters = plan[next_row].iters;
        r.check = timed_out ? "TIMEOUT" : "ERR";
        out.row(world, pool, r, nullptr);
        outcome.ok = false;
    }
    if (std::string p = stopMaster(*master); !p.empty()) problem("master shutdown: " + p);
    return outcome;
}

}  // namespace

namespace {

// --wan PROFILE: the same sweep over emulated links is bench/wan/wan.py allreduce; exec it with
// this binary as its pccl-bench. Returns only on an error.
int execWan(const Options &opt, const std::string &self) {
    if (opt.peers.size() != 1) {
        std::fprintf(stderr, "pccl-bench --wan: give one peer count (--peers 3)\n");
        return 2;
    }
    std::string script = PCCL_BENCH_WAN_SCRIPT;
    if (const char *s = std::getenv("PCCL_BENCH_WAN_SCRIPT")) script = s;
    std::string sizes, pools;
    for (uint64_t b : opt.sizes) sizes += (sizes.empty() ? "" : ",") + std::to_string(b);
    for (int p : opt.pools) pools += (pools.empty() ? "" : ",") + std::to_string(p);
    const std::string bin_dir = self.substr(0, self.rfind('/')) + "/wan";
    std::vector<std::string> argv = {"/usr/bin/env", opt.python, script, "--bin-dir", bin_dir, "allreduce",
                                     opt.wan_profile, "--peers", std::to_string(opt.peers.front()), "--size", sizes,
                                     "--pool", pools, "--dtype", opt.dtype->name, "--quant",
                                     formatQuant(opt.quant, opt.quant_type)};
    if (opt.iters) argv.insert(argv.end(), {"--iters", std::to_string(opt.iters)});
    if (opt.warmup >= 0) argv.insert(argv.end(), {"--warmup", std::to_string(opt.warmup)});
    if (opt.optimize) argv.push_back("--optimize");
    if (opt.sequential_join) argv.insert(argv.end(), {"--join-order", "sequential"});
    for (auto &w : splitWords(opt.wan_args)) argv.push_back(w);
    setenv("PCCL_WAN_BENCH", self.c_str(), 1);
    std::string line;
    for (auto &w : argv) line += (line.empty() ? "" : " ") + w;
    std::fprintf(stderr, "# exec %s\n", line.c_str());
    std::vector<char *> cargv;
    for (auto &w : argv) cargv.push_back(w.data());
    cargv.push_back(nullptr);
    execv(cargv[0], cargv.data());
    std::perror("pccl-bench --wan: exec /usr/bin/env");
    return 1;
}

}  // namespace

int runDriver(const Options &opt) {
    installSignalHandlers();
    if (pcclResult_t rc = pcclInit(); rc != pcclSuccess) {
        std::fprintf(stderr, "pccl-bench: pcclInit: %s\n", pcclGetErrorString(rc));
        return 1;
    }
    char self_buf[4096];
    const ssize_t n = readlink("/proc/self/exe", self_buf, sizeof self_buf - 1);
    if (n <= 0) {
        std::fprintf(stderr, "pccl-bench: cannot read /proc/self/exe\n");
        return 1;
    }
    const std::string self(self_buf, size_t(n));
    if (!opt.wan_profile.empty()) return execWan(opt, self);

    std::vector<PlanEntry> plan;
    for (uint64_t b : opt.sizes) {
        if (std::any_of(plan.begin(), plan.end(), [b](const PlanEntry &p) { return p.bytes == b; })) continue;
        PlanEntry e;
        e.bytes = b;
        e.iters = opt.iters > 0 ? opt.iters : autoIters(b);
        e.warmup = opt.warmup >= 0 ? opt.warmup : autoWarmup(e.iters);
        plan.push_back(e);
    }

    bool gloo = opt.gloo == 1;
    if (opt.gloo != 0) {
        const bool have = !opt.gloo_script.empty() && access(opt.gloo_script.c_str(), R_OK) == 0 && torchAvailable(opt);
        if (opt.gloo == 1 && !have) {
            std::fprintf(stderr, "pccl-bench: --gloo: torch with gloo is not importable by '%s' or script '%s' missing\n",
                         opt.python.c_str(), opt.gloo_script.c_str());
            return 1;
        }
        gloo = have;
    }

    Printer out(opt, gloo);
    out.start();
    const auto t_start = Clock::now();
    bool all_ok = true;
    int runs = 0;
    for (int world : opt.peers) {
        GlooResult gres;
        if (gloo) {
            gres = runGloo(opt, world, plan);
            if (!gres.error.empty()) {
                out.comment("gloo peers=" + std::to_string(world) + ": " + gres.error);
            }
            for (const auto &[b, r] : gres.rows)
                if (r.check != "ok" && r.check != "ok~")
                    out.comment("gloo peers=" + std::to_string(world) + " " + formatSize(b) + ": check " + r.check);
        }
        for (int pool : opt.pools) {
            if (interrupted()) return 130;
            out.header(world, pool);
            out.resetAvg();
            const auto t0 = Clock::now();
            RunOutcome o = runPccl(opt, self, world, pool, plan, gloo ? &gres : nullptr, out);
            ++runs;
            for (const auto &p : o.problems) out.comment("PROBLEM: " + p);
            all_ok = all_ok && o.ok;
            char buf[160];
            std::snprintf(buf, sizeof buf, "peers=%d pool=%d: %s, avg busbw %s GB/s, %.1f s", world, pool,
                          o.ok ? "all ok" : "FAILED", fmtNum(out.avgBusbw(), 3, 0).c_str(), secondsSince(t0));
            if (!opt.csv) out.comment(buf);
        }
    }
    char buf[160];
    std::snprintf(buf, sizeof buf, "%d runs, %s, total %.1f s", runs, all_ok ? "all ok" : "FAILURES (see above)",
                  secondsSince(t_start));
    out.comment(buf);
    return all_ok ? 0 : 1;
}

}  // namespace bench
