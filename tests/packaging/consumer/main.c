/* Uses the installed headers and library without touching the network. Includes <ccoip.h>
 * first, as PCCL 1.0 programs do. */
#include <ccoip.h>
#include <pccl.h>
#include <stdio.h>

int main(void) {
    int version = 0;
    pcclBuildInfo_t info;
    pcclComm_t *comm = NULL;
    pcclMasterInstance_t *master = NULL;
    ccoip_socket_address_t address;
    pcclRankInfo_t *rank_info = NULL; /* declared (opaque) for PCCL 1.0 programs */
    (void)rank_info;
    /* The master calls and the address parser need no pcclInit. */
    if (pcclParseSocketAddress("127.0.0.1", &address) != pcclSuccess) return 6;
    if (address.inet.protocol != inetIPv4 || address.port != CCOIP_PROTOCOL_PORT_MASTER) return 7;
    if (pcclParseSocketAddress("[::1]:0", &address) != pcclSuccess || address.inet.protocol != inetIPv6) return 8;
    if (pcclCreateMaster(address, &master) != pcclSuccess || pcclDestroyMaster(master) != pcclSuccess) return 9;
    if (CCOIP_PROTOCOL_PORT_SHARED_STATE != 48149 || CCOIP_PROTOCOL_PORT_P2P != 48150 ||
        CCOIP_PROTOCOL_PORT_BANDWIDTH_BENCHMARK != 48151)
        return 10;
    if (pcclInit() != pcclSuccess) return 1;
    if (pcclGetVersion(&version) != pcclSuccess || version <= 0) return 2;
    if (pcclGetBuildInfo(&info) != pcclSuccess) return 3;
    if (pcclGetVersion(NULL) != pcclInvalidArgument) return 4;
    if (pcclDestroyCommunicator(comm) != pcclSuccess) return 5; /* NULL is a no-op */
    printf("consumer: pccl %d.%d.%d (%s)\n", version / 10000, version / 100 % 100, version % 100,
           pcclGetErrorString(pcclRankConnectionLost));
    return 0;
}
