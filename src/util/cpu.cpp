#include "util/cpu.h"

#include <cstdlib>
#include <cstring>

namespace pccl {

bool cpuHasAvx2() {
    static const bool avx2 = [] {
        const char *off = std::getenv("PCCL_DISABLE_AVX2");
        if (off && *off && std::strcmp(off, "0") != 0) return false;
#if defined(__x86_64__)
        return static_cast<bool>(__builtin_cpu_supports("avx2"));
#else
        return false;
#endif
    }();
    return avx2;
}

} // namespace pccl
