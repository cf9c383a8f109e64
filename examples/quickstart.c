/* pccl-quickstart: the C example of README.md, compiled as strict C99 so it stays honest.
 *
 * usage: pccl-quickstart [MASTER [STEPS]]   (default 127.0.0.1:48148 100)
 * MASTER is IP:PORT as pcclParseSocketAddress reads it (10.0.0.1:48148, [::1]:48148; no port
 * means 48148). Start a master (pccl-master --listen 127.0.0.1:48148) and any number of these,
 * at any time: each step syncs the weights first (a peer that joins receives them and the step),
 * then all-reduces the gradient (a peer alone, pcclTooFewPeers, keeps its own), and votes last
 * (admitting the peers that wait in pcclConnect). Every peer ends at step STEPS with the same
 * weights; the last line says so: "done: step S, world size W (in the last step), weights hash H". */
#include <pccl.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(call)                                                                        \
    do {                                                                                   \
        pcclResult_t r_ = (call);                                                          \
        if (r_ != pcclSuccess) {                                                           \
            fprintf(stderr, "%s: %s (%s)\n", #call, pcclGetErrorString(r_),                \
                    pcclGetLastErrorMessage(comm));                                        \
            return 1;                                                                      \
        }                                                                                  \
    } while (0)

/* FNV-1a over the weights' bytes: equal on every peer when the weights are. */
static uint64_t hash_bytes(const void *data, size_t n) {
    const unsigned char *p = (const unsigned char *)data;
    uint64_t h = 14695981039346656037ull;
    size_t i;
    for (i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

int main(int argc, char **argv) {
    const char *master = argc > 1 ? argv[1] : "127.0.0.1:48148";
    const uint64_t steps = argc > 2 ? strtoull(argv[2], NULL, 10) : 100;
    const size_t n = (size_t)1 << 20;
    pcclComm_t *comm = NULL;
    pcclCommCreateParams_t params = {0};
    pcclReduceDescriptor_t desc = {0};
    pcclTensorInfo_t info = {0};
    pcclSharedState_t state = {0};
    float *weights = calloc(n, sizeof *weights);
    float *grad = malloc(n * sizeof *grad);
    uint64_t step = 0;
    int first = 1, world = 0;
    size_t i;

    if (weights == NULL || grad == NULL) return 2;
    CHECK(pcclInit());
    CHECK(pcclParseSocketAddress(master, &params.master_address));
    CHECK(pcclCreateCommunicator(&params, &comm));
    CHECK(pcclConnect(comm)); /* blocks until the running peers admit us (their vote) */

    desc.count = n;
    desc.op = pcclAvg;
    desc.tag = 0;
    desc.src_descriptor.datatype = pcclFloat;
    desc.src_descriptor.distribution_hint = pcclDistributionNone;
    desc.quantization_options.quantized_datatype = pcclFloat;
    desc.quantization_options.algorithm = pcclQuantNone;

    info.name = "weights";
    info.data = weights;
    info.count = n;
    info.datatype = pcclFloat;
    info.device_type = pcclDeviceCpu;
    state.count = 1;
    state.infos = &info;

    for (;;) {
        pcclResult_t r;
        bool pending = false;
        /* 1. Shared state first, revision = step: a no-op while the peers agree; a peer that
         *    just joined receives the weights, and the step from the revision. */
        state.revision = first ? 0 : step + 1;
        do {
            r = pcclSynchronizeSharedState(comm, &state, PCCL_SHARED_STATE_SYNC_STRATEGY_ENFORCE_POPULAR, NULL);
        } while (r == pcclRankConnectionLost);
        CHECK(r);
        step = state.revision;
        first = 0;
        if (step >= steps) break;

        /* 2. Compute, then average over the peer group. A peer that dies aborts the call on
         *    every survivor, the in-place input is restored and the retry runs on the rewired
         *    ring. A peer alone reduces nothing: its own gradient is the average. */
        for (i = 0; i < n; ++i) grad[i] = weights[i] - (float)(i % 7);
        do {
            r = pcclAllReduce(grad, grad, &desc, comm, NULL);
        } while (r == pcclRankConnectionLost);
        if (r != pcclTooFewPeers) CHECK(r);
        for (i = 0; i < n; ++i) weights[i] -= 0.1f * grad[i];
        CHECK(pcclGetAttribute(comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE, &world));
        printf("step %llu: world size %d, weights[1] = %g\n", (unsigned long long)step, world, weights[1]);

        /* 3. Vote last: every accepted peer votes each step; waiting peers are admitted together. */
        CHECK(pcclArePeersPending(comm, &pending));
        if (pending) CHECK(pcclUpdateTopology(comm));
    }
    printf("done: step %llu, world size %d, weights hash %016llx\n", (unsigned long long)step, world,
           (unsigned long long)hash_bytes(weights, n * sizeof *weights));
    CHECK(pcclDestroyCommunicator(comm));
    free(grad);
    free(weights);
    return 0;
}
