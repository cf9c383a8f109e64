/* pccl-quickstart: the C example of README.md, compiled as strict C99 so it stays honest.
 *
 * usage: pccl-quickstart [MASTER [STEPS]]   (default 127.0.0.1:48148 100)
 * MASTER is IP:PORT as pcclParseSocketAddress reads it (10.0.0.1:48148, [::1]:48148; no port
 * means 48148). Start a master (pccl-master --listen 127.0.0.1:48148) and any number of these;
 * a peer alone in the run (pcclTooFewPeers) keeps its own gradient until others join. */
#include <pccl.h>

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
    const char *master = argc > 1 ? argv[1] : "127.0.0.1:48148";
    const int steps = argc > 2 ? atoi(argv[2]) : 100;
    const size_t n = (size_t)1 << 20;
    pcclComm_t *comm = NULL;
    pcclCommCreateParams_t params = {0};
    pcclReduceDescriptor_t desc = {0};
    float *grad = malloc(n * sizeof *grad);
    int step, world = 0;
    size_t i;

    if (grad == NULL) return 2;
    CHECK(pcclInit());
    CHECK(pcclParseSocketAddress(master, &params.master_address));
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
         * restored and the retry runs on the rewired ring. A peer alone reduces nothing:
         * its own gradient is the average. */
        do {
            r = pcclAllReduce(grad, grad, &desc, comm, NULL);
        } while (r == pcclRankConnectionLost);
        if (r != pcclTooFewPeers) CHECK(r);
        CHECK(pcclGetAttribute(comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE, &world));
        printf("step %d: world size %d, grad[1] = %g\n", step, world, grad[1]);
    }
    CHECK(pcclDestroyCommunicator(comm));
    free(grad);
    return 0;
}
