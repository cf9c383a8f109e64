/*
 * c99_join_race: the join race of issue 16 (item 8). Two peers in two threads connect to an
 * embedded master at the same moment; each loops
 *     while (world < 2) { pcclUpdateTopology(comm); pcclGetAttribute(comm, GLOBAL_WORLD_SIZE, &world); }
 * and then all-reduces. Whatever order the master admits them in, neither may wait for a vote
 * that cannot come: the program repeats this RUNS times (argv[1], default 20), each run bounded
 * by RUN_SECONDS, and fails on the first run that errs or is too slow. alarm() bounds the whole.
 */
#define _POSIX_C_SOURCE 200809L

#include <pccl.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define COUNT 256
#define RUN_SECONDS 5.0

struct peer {
    uint16_t port;
    pcclResult_t result;
    const char *call;
    char reason[512];
    float values[COUNT];
    pthread_barrier_t *start;
};

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double) t.tv_sec + (double) t.tv_nsec / 1e9;
}

static void *peer_main(void *arg) {
    struct peer *p = (struct peer *) arg;
    pcclComm_t *comm = NULL;
    pcclCommCreateParams_t params;
    pcclReduceDescriptor_t desc;
    int world = 0, i;
    memset(&params, 0, sizeof params);
    params.master_address.inet.protocol = inetIPv4;
    params.master_address.inet.ipv4.data[0] = 127;
    params.master_address.inet.ipv4.data[3] = 1;
    params.master_address.port = p->port;
    p->result = pcclCreateCommunicator(&params, &comm);
    p->call = "pcclCreateCommunicator";
    if (p->result != pcclSuccess) return NULL;
    pthread_barrier_wait(p->start);
#define STEP(name, expr)                                                                                               \
    do {                                                                                                               \
        p->call = name;                                                                                                \
        p->result = (expr);                                                                                            \
        if (p->result != pcclSuccess) goto out;                                                                        \
    } while (0)
    STEP("pcclConnect", pcclConnect(comm));
    while (world < 2) {
        STEP("pcclUpdateTopology", pcclUpdateTopology(comm));
        STEP("pcclGetAttribute", pcclGetAttribute(comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE, &world));
    }
    for (i = 0; i < COUNT; ++i) p->values[i] = 1.0f;
    memset(&desc, 0, sizeof desc);
    desc.count = COUNT;
    desc.op = pcclSum;
    desc.src_descriptor.datatype = pcclFloat;
    desc.quantization_options.quantized_datatype = pcclFloat;
    desc.quantization_options.algorithm = pcclQuantNone;
    STEP("pcclAllReduce", pcclAllReduce(p->values, p->values, &desc, comm, NULL));
    for (i = 0; i < COUNT; ++i)
        if (p->values[i] != 2.0f) {
            p->call = "the all-reduce's result";
            p->result = pcclInternalError;
            snprintf(p->reason, sizeof p->reason, "value %d is %g, expected 2", i, (double) p->values[i]);
            pcclDestroyCommunicator(comm);
            return NULL;
        }
out:
    if (p->result != pcclSuccess) snprintf(p->reason, sizeof p->reason, "%s", pcclGetLastErrorMessage(comm));
    pcclDestroyCommunicator(comm);
    return NULL;
}

static int one_run(int run) {
    pcclMasterInstance_t *master = NULL;
    ccoip_socket_address_t listen;
    struct peer peers[2];
    pthread_t threads[2];
    pthread_barrier_t start;
    uint16_t port = 0;
    double t0, took;
    int i, failed = 0;
    memset(&listen, 0, sizeof listen);
    listen.inet.protocol = inetIPv4;
    listen.inet.ipv4.data[0] = 127;
    listen.inet.ipv4.data[3] = 1;
    if (pcclCreateMaster(listen, &master) != pcclSuccess || pcclRunMaster(master) != pcclSuccess ||
        pcclGetMasterPort(master, &port) != pcclSuccess) {
        printf("run %d: could not start the embedded master\n", run);
        return 1;
    }
    pthread_barrier_init(&start, NULL, 2);
    memset(peers, 0, sizeof peers);
    t0 = now_s();
    for (i = 0; i < 2; ++i) {
        peers[i].port = port;
        peers[i].start = &start;
        pthread_create(&threads[i], NULL, peer_main, &peers[i]);
    }
    for (i = 0; i < 2; ++i) pthread_join(threads[i], NULL);
    took = now_s() - t0;
    for (i = 0; i < 2; ++i)
        if (peers[i].result != pcclSuccess) {
            printf("run %d: peer %d: %s returned %d (%s): %s\n", run, i, peers[i].call, (int) peers[i].result,
                   pcclGetErrorString(peers[i].result), peers[i].reason);
            failed = 1;
        }
    if (!failed && took > RUN_SECONDS) {
        printf("run %d: took %.2f s (limit %.1f s)\n", run, took, RUN_SECONDS);
        failed = 1;
    }
    if (!failed) printf("run %d: ok in %.3f s\n", run, took);
    fflush(stdout);
    pthread_barrier_destroy(&start);
    pcclInterruptMaster(master);
    pcclMasterAwaitTermination(master);
    pcclDestroyMaster(master);
    return failed;
}

int main(int argc, char **argv) {
    int runs = argc > 1 ? atoi(argv[1]) : 20, run;
    alarm((unsigned) (runs * (RUN_SECONDS + 5)));
    if (pcclInit() != pcclSuccess) return 1;
    for (run = 0; run < runs; ++run)
        if (one_run(run)) return 1;
    printf("%d runs: all ok\n", runs);
    return 0;
}
