// The installed header from C++.
#include <pccl.h>

#include <cstdio>

int main() {
    int version = 0;
    if (pcclInit() != pcclSuccess || pcclGetVersion(&version) != pcclSuccess) return 1;
    std::printf("consumer (C++): pccl version %d\n", version);
    return 0;
}
