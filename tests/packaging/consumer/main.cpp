// The installed headers from C++, in the other order (pccl.h, then ccoip.h).
#include <pccl.h>
#include <ccoip.h>

#include <cstdio>

int main() {
    int version = 0;
    ccoip_socket_address_t address{};
    if (pcclParseSocketAddress("10.1.2.3:48150", &address) != pcclSuccess || address.port != CCOIP_PROTOCOL_PORT_P2P)
        return 2;
    if (pcclInit() != pcclSuccess || pcclGetVersion(&version) != pcclSuccess) return 1;
    std::printf("consumer (C++): pccl version %d\n", version);
    return 0;
}
