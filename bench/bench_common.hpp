// pccl-bench: shared definitions of the driver and the worker (options, data types, the
// verification pattern). The pattern is mirrored exactly by bench/gloo_allreduce.py; change
// both together.
#pragma once

#include <pccl.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bench {

// ------------------------------------------------------------------ data types and ops

enum class Kind { Float, Signed, Unsigned };

struct DType {
    const char *name;        // canonical name printed in headers ("float32")
    const char *aliases[3];  // accepted on the command line besides name
    pcclDataType_t id;
    size_t size;
    Kind kind;
};

struct RedOp {
    const char *name;
    pcclRedOp_t id;
};

// nullptr if unknown.
const DType *findDType(std::string_view name);
const RedOp *findOp(std::string_view name);
std::string knownDTypes();
std::string knownOps();

// ------------------------------------------------------------------ plan

// One size of the sweep with its iteration counts; the driver computes the plan once and
// passes it verbatim to the workers and to the gloo script so both do identical work.
struct PlanEntry {
    uint64_t bytes = 0;  // requested size; the element count is max(1, bytes / dtype size)
    int warmup = 0;
    int iters = 0;
};

std::string formatPlan(const std::vector<PlanEntry> &plan);  // "bytes:warmup:iters,..."
std::optional<std::vector<PlanEntry>> parsePlan(std::string_view text);

// "1K:256M" (powers of two; "a:b:f" multiplies by f), or "1K,64K,1M". Suffixes K/M/G are
// binary (KiB...), optionally followed by "B"/"iB". Empty optional on a syntax error.
std::optional<std::vector<uint64_t>> parseSizes(std::string_view text);
std::optional<uint64_t> parseSize(std::string_view text);
std::optional<std::vector<int>> parseIntList(std::string_view text);
std::string formatSize(uint64_t bytes);  // "1 KiB", "256 MiB", "1000 B"

// Iteration counts when the user gave none: fewer at large sizes so that the default
// sweep stays within a few minutes on a small machine.
int autoIters(uint64_t bytes);
int autoWarmup(int iters);

// ------------------------------------------------------------------ verification pattern

// Element k of peer `rank` takes raw(rank, k mod kPeriod) in [0, 16): a quadratic residue
// pattern with a prime period, so a chunk placed at a wrong power-of-two offset is seen.
// All values are small integers (or powers of two for prod): exactly representable in
// every dtype, so sums, products, minima and maxima are exact and comparable bytewise.
constexpr uint64_t kPeriod = 65521;

int rawValue(uint64_t seed, int rank, uint64_t k);
// The logical input value of element k on `rank` (as an integer).
int64_t inputValue(const DType &dt, const RedOp &op, uint64_t seed, int rank, uint64_t k);

// Tables of kPeriod encoded elements: the input of one rank and the expected reduction over
// ranks 0..world-1. Buffers are filled and checked by tiling these tables.
std::vector<uint8_t> inputTable(const DType &dt, const RedOp &op, uint64_t seed, int rank);
std::vector<uint8_t> expectedTable(const DType &dt, const RedOp &op, uint64_t seed, int world);

void fillFromTable(uint8_t *buf, size_t count, const DType &dt, const std::vector<uint8_t> &table);

struct CheckResult {
    uint64_t bad = 0;        // elements outside tolerance
    uint64_t inexact = 0;    // elements not bytewise equal but within one ulp (avg only)
    uint64_t first_bad = 0;  // index of the first bad (or inexact) element
    double got = 0, expected = 0;
    bool ok() const { return bad == 0; }
};

// Compares every element of buf with the tiled table. Exact (bytewise) except for the
// average of floating-point types, where one ulp is tolerated and counted as inexact.
// abs_tol > 0 (quantized all-reduce): elements within abs_tol of the table count as inexact.
CheckResult checkAgainstTable(const uint8_t *buf, size_t count, const DType &dt, const RedOp &op,
                              const std::vector<uint8_t> &table, double abs_tol = 0);

// Quantized all-reduce (--quant ALGO:TYPE): "minmax:u8", "zps:u16", ... into algo and type.
bool parseQuant(std::string_view text, pcclQuantizationAlgorithm_t &algo, pcclDataType_t &type);
std::string formatQuant(pcclQuantizationAlgorithm_t algo, pcclDataType_t type);  // "none", "minmax:u8"

// The largest error the library documents for a quantized all-reduce of the bench pattern
// (include/pccl.h, src/collectives/quantize.h): every quantization adds at most half a step of
// its segment's range, step = range / (L - 1) with L = 2^bits - 3 levels (zero-point-scale:
// range = 2 max|x|). A ring of N quantizes N times: the partial of 1..N-1 peers on the
// reduce-scatter hops, the final value once for the all-gather. A segment's range is bounded by
// that of the whole pattern (plus the error already accumulated), so this bound holds for any
// ring order and segment size. Plus f32 arithmetic and the output type's rounding. 0 if unquantized.
double quantErrorBound(const DType &dt, const RedOp &op, pcclQuantizationAlgorithm_t algo, pcclDataType_t qtype,
                       int world);

// A 64-bit hash of a buffer (every byte): ranks compare their outputs through it.
uint64_t hashBytes(const uint8_t *p, size_t n);

double decodeElement(const uint8_t *p, const DType &dt);

// ------------------------------------------------------------------ options

struct Options {
    // sweep
    std::vector<uint64_t> sizes{1ull << 10, 64ull << 10, 1ull << 20, 16ull << 20, 256ull << 20};
    std::vector<int> peers{2, 3, 4};
    std::vector<int> pools{4};
    int iters = 0;   // 0: autoIters(size)
    int warmup = -1; // -1: autoWarmup(iters)
    const DType *dtype = nullptr;
    const RedOp *op = nullptr;
    bool inplace = false;
    // --coll: allreduce | allgather | reducescatter | broadcast (sizes are the whole buffer, as in
    // nccl-tests: all-gather's output, reduce-scatter's input, the broadcast buffer).
    std::string coll = "allreduce";
    uint64_t seed = 1;
    int gloo = -1;  // -1: auto (on if torch imports), 0 off, 1 on
    bool csv = false;
    bool verbose = false;
    bool rss = false;  // print each worker's RSS across the timed iterations
    double timeout_s = 60;  // inactivity deadline (plus a per-size allowance)
    std::string python = "python3";
    std::string gloo_script;
    std::string barrier = "pending";  // "pending": vote on pending peers first; "update": update only
    // Where the peers run (bench/wan): the master listens on master_addr (default loopback)
    // and every worker connects to it; `launch` is a command prefix for each worker, split on
    // spaces, "{rank}" replaced by the rank (e.g. "/usr/sbin/ip netns exec pcclw-h{rank}").
    std::string master_addr = "127.0.0.1";
    std::string launch;
    // --quant ALGO:TYPE: quantization_options of every all-reduce (pcclQuantNone: off).
    pcclQuantizationAlgorithm_t quant = pcclQuantNone;
    pcclDataType_t quant_type = pcclUint8;
    // --optimize: every worker calls pcclOptimizeTopology once after the admission barrier.
    bool optimize = false;
    // --join-order sequential: worker r+1 starts only when worker r is admitted, so the ring
    // (arrival order) is 0, 1, ..., N-1; default: all start at once (order by arrival).
    bool sequential_join = false;
    // --wan PROFILE [--wan-args "..."]: exec bench/wan/wan.py allreduce PROFILE with the sweep's
    // options (the emulated links, bench/wan/README.md).
    std::string wan_profile;
    std::string wan_args;

    // worker mode
    bool worker = false;
    int rank = 0;
    int world = 0;
    int port = 0;
    int pool = 0;
    std::vector<PlanEntry> plan;
};

// nccl-tests' bus bandwidth factor of a collective over `world` ranks: 2(N-1)/N for all-reduce,
// (N-1)/N for all-gather and reduce-scatter, 1 for broadcast (0 for one rank).
double busFactor(const std::string &coll, int world);
bool validColl(const std::string &coll);
// Elements of the whole buffer for a planned size: all-gather and reduce-scatter round down to a
// multiple of the world size (at least one element per rank); others max(1, bytes / size).
size_t collCount(const std::string &coll, uint64_t bytes, size_t dtypeSize, int world);

// Dotted IPv4 into 4 bytes; false if malformed.
bool parseIPv4(const std::string &text, uint8_t out[4]);

// Parses argv; prints the reason and returns nullopt on an error, exits 0 on --help.
std::optional<Options> parseOptions(int argc, char **argv);

int runDriver(const Options &opt);
int runWorker(const Options &opt);

}  // namespace bench
