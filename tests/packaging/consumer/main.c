/* Uses the installed header and library without touching the network. */
#include <pccl.h>
#include <stdio.h>

int main(void) {
    int version = 0;
    pcclBuildInfo_t info;
    pcclComm_t *comm = NULL;
    if (pcclInit() != pcclSuccess) return 1;
    if (pcclGetVersion(&version) != pcclSuccess || version <= 0) return 2;
    if (pcclGetBuildInfo(&info) != pcclSuccess) return 3;
    if (pcclGetVersion(NULL) != pcclInvalidArgument) return 4;
    if (pcclDestroyCommunicator(comm) != pcclSuccess) return 5; /* NULL is a no-op */
    printf("consumer: pccl %d.%d.%d (%s)\n", version / 10000, version / 100 % 100, version % 100,
           pcclGetErrorString(pcclRankConnectionLost));
    return 0;
}
