// pccl-soak-peer: what a peer all-reduces, and how it checks a result without knowing the
// participants in advance.
//
// Every buffer starts with a participant mask: each peer has a slot (0..63) and contributes
// its bit. With pcclSum the mask is packed as bits (the sum of distinct powers of two is their
// OR; b bits per element, b = the exact integer range of the dtype). With other ops every slot
// has its own element (one-hot): the slot's peer puts a non-zero value there, the others 0.
// The remaining elements are small integers, a function of (key, slot, index): 0..7 for
// unsigned types, -4..3 otherwise, so that sums over at most 64 peers stay exact in every
// dtype (|sum| <= 256 even in bf16). After a call, checkResult decodes the participant set
// from the mask, recomputes the whole expected buffer for that set (the library's avg: exact
// sum divided by the participant count, floats in f32 and rounded once) and compares bytes.
#pragma once

#include <pccl.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "util/splitmix.h"

namespace soak {

constexpr int kMaxSlots = 64;

enum class How { Blocking, Async, Multi };

struct OpSpec {
    uint64_t tag;
    pcclDataType_t dtype;
    pcclRedOp_t op;
    size_t base_count;  // the count varies per revision in [base, base + base/8]
    How how;            // consecutive ops with the same How form one batch (async: launched together)
    bool in_place;
};

// The operations of one step, in order. The same on every peer.
const std::vector<OpSpec> &opPlan();

// The element count of spec at revision rev (all peers agree), and its maximum.
size_t opCount(const OpSpec &spec, uint64_t rev);
size_t maxOpCount(const OpSpec &spec);

// From the library's data-type table (util/dtype.h): the size, and the short name ("f32").
size_t dtypeSize(pcclDataType_t dtype);
const char *dtypeName(pcclDataType_t dtype);
const char *opName(pcclRedOp_t op);
const char *howName(How how);

using pccl::util::splitmix64Hash;  // the library's one splitmix64 (util/splitmix.h)
constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ull;
// FNV-1a over 64-bit little-endian words (and a byte tail); chainable through h.
uint64_t fnv1a(const void *data, size_t bytes, uint64_t h = kFnvOffset);

// IEEE conversions, round to nearest even (f32 -> 16 bit), exact (16 bit -> f32).
uint16_t f32ToF16(float f);
uint16_t f32ToBf16(float f);
float f16ToF32(uint16_t h);
float bf16ToF32(uint16_t b);

// The key of one operation: every input element derives from (key, slot, index).
uint64_t opKey(uint64_t seed, uint64_t lineage, uint64_t rev, uint64_t tag);

// Writes this slot's contribution (count elements of spec.dtype) to out.
void fillInput(const OpSpec &spec, size_t count, uint64_t key, int slot, void *out);

struct CheckResult {
    bool ok = false;
    uint64_t mask = 0;  // decoded participant slots
    std::string error;  // first difference, when !ok
};

// Verifies result against the reduction of the decoded participant set, which must contain
// own_slot. Buffers are kept between calls (no allocation after the first call of a size).
class ResultChecker {
public:
    CheckResult check(const OpSpec &spec, size_t count, uint64_t key, int own_slot, const void *result);

private:
    std::vector<int64_t> acc_;
    std::vector<unsigned char> expected_;
};

}  // namespace soak
