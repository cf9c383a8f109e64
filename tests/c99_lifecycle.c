/*
 * c99_lifecycle: the whole life of a pccl run, driven through the C API from a C99 program
 * (compiled with -std=c99 -pedantic -Werror -Wall). Two communicators on two pthreads talk
 * through an embedded master on 127.0.0.1 (port 0). Each phase is printed; the first failure
 * prints its reason and exits non-zero. alarm() bounds the whole run: it never hangs.
 */
#define _POSIX_C_SOURCE 200809L

#include <pccl.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NUM_PEERS 2
#define COUNT 1024
#define VOTE_SECONDS 60

static void fail(const char *phase, const char *call, pcclResult_t r, const pcclComm_t *comm) {
    printf("phase %s: FAILED: %s returned %d (%s): %s\n", phase, call, (int) r, pcclGetErrorString(r),
           pcclGetLastErrorMessage(comm));
    fflush(stdout);
    exit(1);
}

static void phase_ok(const char *phase) {
    printf("phase %s: ok\n", phase);
    fflush(stdout);
}

#define CHECK_OK(phase, comm, call)                                                                                     \
    do {                                                                                                               \
        pcclResult_t r_ = (call);                                                                                      \
        if (r_ != pcclSuccess) fail(phase, #call, r_, comm);                                                           \
    } while (0)

struct peer {
    int rank;
    pcclComm_t *comm;
    float values[COUNT];
    int world;
    int group_world;
    int groups;
    int largest;
    const char *failed_phase; /* NULL on success */
    char reason[512];
};

static void peer_fail(struct peer *p, const char *phase, const char *call, pcclResult_t r) {
    p->failed_phase = phase;
    snprintf(p->reason, sizeof p->reason, "%s returned %d (%s): %s", call, (int) r, pcclGetErrorString(r),
             pcclGetLastErrorMessage(p->comm));
}

static void *peer_main(void *arg) {
    struct peer *p = (struct peer *) arg;
    pcclResult_t r;
    int i;
    struct timespec start, now;
    pcclReduceDescriptor_t desc;
    pcclReduceInfo_t info;

    r = pcclConnect(p->comm);
    if (r != pcclSuccess) {
        peer_fail(p, "connect", "pcclConnect", r);
        return NULL;
    }
    /* Vote until both peers are in: the peer admitted first must vote the second one in. */
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        r = pcclGetAttribute(p->comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE, &p->world);
        if (r != pcclSuccess) {
            peer_fail(p, "update-topology", "pcclGetAttribute", r);
            return NULL;
        }
        if (p->world == NUM_PEERS) break;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec > VOTE_SECONDS) {
            p->failed_phase = "update-topology";
            snprintf(p->reason, sizeof p->reason, "world size still %d after %d s of votes", p->world, VOTE_SECONDS);
            return NULL;
        }
        r = pcclUpdateTopology(p->comm);
        if (r != pcclSuccess) {
            peer_fail(p, "update-topology", "pcclUpdateTopology", r);
            return NULL;
        }
    }

    for (i = 0; i < COUNT; ++i) p->values[i] = (float) (i * (p->rank + 1));
    memset(&desc, 0, sizeof desc);
    desc.count = COUNT;
    desc.op = pcclSum;
    desc.tag = 0;
    desc.src_descriptor.datatype = pcclFloat;
    desc.src_descriptor.distribution_hint = pcclDistributionNone;
    desc.quantization_options.quantized_datatype = pcclFloat;
    desc.quantization_options.algorithm = pcclQuantNone;
    memset(&info, 0, sizeof info);
    r = pcclAllReduce(p->values, p->values, &desc, p->comm, &info);
    if (r != pcclSuccess) {
        peer_fail(p, "all-reduce", "pcclAllReduce", r);
        return NULL;
    }
    for (i = 0; i < COUNT; ++i) {
        if (p->values[i] != (float) (3 * i)) {
            p->failed_phase = "all-reduce";
            snprintf(p->reason, sizeof p->reason, "element %d is %g, expected %g", i, (double) p->values[i],
                     (double) (3 * i));
            return NULL;
        }
    }
    if (info.local_world_size != NUM_PEERS) {
        p->failed_phase = "all-reduce";
        snprintf(p->reason, sizeof p->reason, "local_world_size %u, expected %d", (unsigned) info.local_world_size,
                 NUM_PEERS);
        return NULL;
    }

    /* The extension: an all-reduce that also reports its duration and throughput. */
    {
        pcclReduceInfoEx_t ex = PCCL_REDUCE_INFO_EX_INIT;
        desc.tag = 1;
        r = pcclAllReduceEx(p->values, p->values, &desc, p->comm, &ex);
        if (r != pcclSuccess) {
            peer_fail(p, "all-reduce-ex", "pcclAllReduceEx", r);
            return NULL;
        }
        if (ex.local_world_size != NUM_PEERS || !(ex.duration_s > 0.0) || !(ex.bytes_per_second > 0.0)) {
            p->failed_phase = "all-reduce-ex";
            snprintf(p->reason, sizeof p->reason, "local_world_size %u, duration_s %g, bytes_per_second %g",
                     (unsigned) ex.local_world_size, ex.duration_s, ex.bytes_per_second);
            return NULL;
        }
    }

    /* The extension: the communicator's statistics (the two all-reduces above). */
    {
        pcclCommStats_t stats = PCCL_COMM_STATS_INIT;
        r = pcclGetCommunicatorStats(p->comm, &stats);
        if (r != pcclSuccess) {
            peer_fail(p, "stats", "pcclGetCommunicatorStats", r);
            return NULL;
        }
        if (stats.all_reduces_completed != 2 || stats.world_size != NUM_PEERS || stats.rank >= NUM_PEERS) {
            p->failed_phase = "stats";
            snprintf(p->reason, sizeof p->reason, "all_reduces_completed %llu, world_size %u, rank %u",
                     (unsigned long long) stats.all_reduces_completed, (unsigned) stats.world_size,
                     (unsigned) stats.rank);
            return NULL;
        }
    }

    if ((r = pcclGetAttribute(p->comm, PCCL_ATTRIBUTE_GLOBAL_WORLD_SIZE, &p->world)) != pcclSuccess ||
        (r = pcclGetAttribute(p->comm, PCCL_ATTRIBUTE_PEER_GROUP_WORLD_SIZE, &p->group_world)) != pcclSuccess ||
        (r = pcclGetAttribute(p->comm, PCCL_ATTRIBUTE_NUM_DISTINCT_PEER_GROUPS, &p->groups)) != pcclSuccess ||
        (r = pcclGetAttribute(p->comm, PCCL_ATTRIBUTE_LARGEST_PEER_GROUP_WORLD_SIZE, &p->largest)) != pcclSuccess) {
        peer_fail(p, "attributes", "pcclGetAttribute", r);
        return NULL;
    }
    return NULL;
}

int main(void) {
    pcclMasterInstance_t *master = NULL;
    ccoip_socket_address_t listen_address;
    pcclCommCreateParams_t params;
    struct peer peers[NUM_PEERS];
    pthread_t threads[NUM_PEERS];
    pcclComm_t *early = NULL;
    pcclBuildInfo_t build;
    uint16_t port = 0;
    int version = 0;
    int i;

    alarm(120); /* the whole program: never hang */
    setvbuf(stdout, NULL, _IOLBF, 0);

    memset(&listen_address, 0, sizeof listen_address);
    listen_address.inet.protocol = inetIPv4;
    listen_address.inet.ipv4.data[0] = 127;
    listen_address.inet.ipv4.data[3] = 1;
    listen_address.port = 0;
    memset(&params, 0, sizeof params);
    params.master_address = listen_address;
    params.peer_group = 0;
    params.p2p_connection_pool_size = 0;

    /* before-init: communicator calls are refused until pcclInit. */
    if (pcclCreateCommunicator(&params, &early) != pcclNotInitialized) {
        printf("phase before-init: FAILED: pcclCreateCommunicator did not return pcclNotInitialized\n");
        return 1;
    }
    phase_ok("before-init");

    CHECK_OK("init", NULL, pcclInit());
    CHECK_OK("init", NULL, pcclInit());
    CHECK_OK("init", NULL, pcclGetVersion(&version));
    CHECK_OK("init", NULL, pcclGetBuildInfo(&build));
    printf("pccl version %d, cuda %s\n", version, build.has_cuda_support ? "yes" : "no");
    phase_ok("init");

    CHECK_OK("create-master", NULL, pcclCreateMaster(listen_address, &master));
    CHECK_OK("create-master", NULL, pcclRunMaster(master));
    CHECK_OK("create-master", NULL, pcclGetMasterPort(master, &port));
    if (port == 0) {
        printf("phase create-master: FAILED: port 0\n");
        return 1;
    }
    printf("master listening on 127.0.0.1:%u\n", (unsigned) port);
    phase_ok("create-master");

    params.master_address.port = port;
    for (i = 0; i < NUM_PEERS; ++i) {
        memset(&peers[i], 0, sizeof peers[i]);
        peers[i].rank = i;
        if (i == 0) {
            /* The extended parameters (an extension): per-communicator deadlines. */
            pcclCommCreateParamsEx_t ex = PCCL_COMM_CREATE_PARAMS_EX_INIT;
            ex.params = params;
            ex.op_timeout_ms = 20000;
            ex.heartbeat_timeout_ms = 4000;
            CHECK_OK("create-communicators", NULL, pcclCreateCommunicatorEx(&ex, &peers[i].comm));
        } else {
            CHECK_OK("create-communicators", NULL, pcclCreateCommunicator(&params, &peers[i].comm));
        }
    }
    phase_ok("create-communicators");

    for (i = 0; i < NUM_PEERS; ++i) {
        if (pthread_create(&threads[i], NULL, peer_main, &peers[i]) != 0) {
            printf("phase threads: FAILED: pthread_create\n");
            return 1;
        }
    }
    for (i = 0; i < NUM_PEERS; ++i) pthread_join(threads[i], NULL);
    for (i = 0; i < NUM_PEERS; ++i) {
        if (peers[i].failed_phase != NULL) {
            printf("phase %s: FAILED on peer %d: %s\n", peers[i].failed_phase, i, peers[i].reason);
            return 1;
        }
    }
    phase_ok("connect");
    phase_ok("update-topology");
    phase_ok("all-reduce");
    for (i = 0; i < NUM_PEERS; ++i) {
        if (peers[i].world != 2 || peers[i].group_world != 2 || peers[i].groups != 1 || peers[i].largest != 2) {
            printf("phase attributes: FAILED on peer %d: global %d, group %d, groups %d, largest %d\n", i,
                   peers[i].world, peers[i].group_world, peers[i].groups, peers[i].largest);
            return 1;
        }
    }
    phase_ok("attributes");

    for (i = 0; i < NUM_PEERS; ++i) CHECK_OK("destroy", peers[i].comm, pcclDestroyCommunicator(peers[i].comm));
    CHECK_OK("destroy", NULL, pcclDestroyCommunicator(NULL));
    phase_ok("destroy");

    CHECK_OK("stop-master", NULL, pcclInterruptMaster(master));
    CHECK_OK("stop-master", NULL, pcclMasterAwaitTermination(master));
    CHECK_OK("stop-master", NULL, pcclDestroyMaster(master));
    phase_ok("stop-master");

    printf("c99_lifecycle: all phases passed\n");
    return 0;
}
