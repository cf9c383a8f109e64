/* pccl-quickstart: the C example of README.md, compiled as strict C99 so it stays honest.
 *
 * usage: pccl-quickstart [MASTER_IPV4 [PORT [STEPS]]]   (default 127.0.0.1 48148 100)
 * Start a master (pccl-master --listen 127.0.0.1:48148) and any number of these. */
#define _POSIX_C_SOURCE 200112L
#include <pccl.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(call)                                                                        \
    do {                                                                                   \
        pcclResult_t r_ = (call);                                                          \
        if (r_ != pcclSuccess) {                                                           \
            fprintf(stderr, "%s: %s (%s)\n", #call, pcclGetErrorString(r_),                \
                    pcclGetLastErrorMessage(comm));                                        \
            return 1;                                                                      \
        }                                                                                  \
    } while (0)

int main(int argc, char **argv) {
    const char *host = argc > 1 ? argv[1] : "127.0.0.1";
    const int port = argc > 2 ? atoi(argv[2]) : CCOIP_PROTOCOL_PORT_MASTER;
    const int steps = argc > 3 ? atoi(argv[3]) : 100;
    const size_t n = (size_t)1 << 20;
    pcclComm_t *comm = NULL;
    pcclCommCreateParams_t params = {0};
    pcclReduceDescriptor_t desc = {0};
    float *grad = malloc(n * sizeof *grad);
    int step, world = 0;
    size_t i;

    CHECK(pcclInit());
    params.master_address.inet.protocol = inetIPv4;
    if (grad == NULL || inet_pton(AF_INET, host, params.master_address.inet.ipv4.data) != 1) return 2;
    params.master_address.port = (uint16_t)port;
    CHECK(pcclCreateCommunicator(&params, &comm));
    CHECK(pcclConnect(comm)); /* blocks until the running peers admit us */

    desc.count = n;
    desc.op = pcclAvg;
    desc.tag = 0;
    desc.src_descriptor.datatype = pcclFloat;
    desc.src_descriptor.distribution_hint = pcclDistributionNone;
    desc.quantization_options.quantized_datatype = pcclFloat;
    desc.quantization_options.algorithm = pcclQuantNone;

    for (step = 0; step < steps; ++step) {
        pcclResult_t r;
        bool pending = false;
        /* Every accepted peer votes each step; new peers are admitted together. */
        CHECK(pcclArePeersPending(comm, &pending));
        if (pending) CHECK(pcclUpdateTopology(comm));

        for (i = 0; i < n; ++i) grad[i] = (float)(step + 1) / (float)(i + 1);
        /* A peer that dies aborts the call on every survivor; the in-place input is
         * restored and the retry runs on the rewired ring. */
        do {
            r = pcclAllReduce(grad, grad, &desc, comm, NULL);
        } while (r == pcclRankConnectionLost);
        CHECK(r);
        CHECK(pcclGetAttribute(comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE, &world));
        printf("step %d: world size %d, grad[1] = %g\n", step, world, grad[1]);
    }
    CHECK(pcclDestroyCommunicator(comm));
    free(grad);
    return 0;
}
