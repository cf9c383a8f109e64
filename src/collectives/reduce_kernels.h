// reduce_kernels.h - element-wise reduction kernels (dtype x op) used by the ring all-reduce.
//
// A chunk travels around the ring of W peers: the first peer widens its contribution into the
// accumulation type (toAccum), the next W-2 peers fold theirs in (accumulate), and the last
// peer folds in its own contribution and produces the final value in the user's dtype
// (finish). With W == 1 there is nothing to reduce: the result is the input itself.
//
// Semantics:
// - Integer sum/prod wrap around (two's complement); avg sums exactly in 64 bits and divides
//   by `world` with truncation toward zero.
// - Floating max/min propagate NaN: if either operand is NaN the result is NaN.
// - Float avg is sum / world (a real division).
// - f16/bf16 are reduced in f32 and rounded to nearest-even once, in finish().
// - Pointers may have any alignment. Invalid dtype/op values are ignored (no-op).
#pragma once
#include <pccl.h>

#include <cstddef>
#include <cstdint>

#include "util/dtype.h"

namespace pccl::collectives {

// The data-type table's functions (util/dtype.h), named here too so that collectives:: callers
// keep working: isValidDataType (0..11), dataTypeSize (bytes per element; 0 if invalid),
// dataTypeName ("float32", "bfloat16", ...; "invalid" if invalid).
using pccl::dataTypeName;
using pccl::dataTypeSize;
using pccl::isValidDataType;
bool isValidRedOp(int op);                  // 0..4
const char* redOpName(pcclRedOp_t op);       // "sum", ...; "invalid" if invalid

// The type in which partial results travel between peers during reduce-scatter:
// f16/bf16 -> pcclFloat (every op); integer types with pcclAvg -> pcclInt64 (signed) /
// pcclUint64 (unsigned); otherwise the dtype itself.
pcclDataType_t accumType(pcclDataType_t dtype, pcclRedOp_t op);

// acc_out[i] = (accum type) local[i]. local in dtype, acc_out in accumType(dtype, op).
void toAccum(pcclDataType_t dtype, pcclRedOp_t op, const void* local, void* acc_out, size_t n);

// acc[i] = op(acc[i], local[i]). acc in accum type (partial of the previous peers), local in
// dtype.
void accumulate(pcclDataType_t dtype, pcclRedOp_t op, void* acc, const void* local, size_t n);

// out[i] = finalize(op(acc[i], local[i])) in dtype. finalize: avg divides by `world` (integers:
// truncating division of the accumulated 64-bit sum), f16/bf16 round the f32 value once to
// nearest-even. `out` may be the very same pointer as `acc` (when accumType == dtype) or as
// `local`; no other overlap. world == 0 is treated as 1.
void finish(pcclDataType_t dtype, pcclRedOp_t op, const void* acc, const void* local, void* out, size_t n,
            uint32_t world);

}  // namespace pccl::collectives
