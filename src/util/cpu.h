// What the CPU offers to the hand-dispatched kernels (shared-state hashing, quantization).
#pragma once

namespace pccl {

// True when the CPU (and the OS) support AVX2 and PCCL_DISABLE_AVX2 is not set to a non-empty
// value other than "0" (that variable makes the tests run the baseline kernels on any machine).
// Read once; thread-safe.
bool cpuHasAvx2();

} // namespace pccl
