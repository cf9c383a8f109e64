/*
 * c99_master_without_init: the embedded master's whole life without pcclInit, as PCCL 1.0
 * programs run it, from a strict C99 program (-std=c99 -pedantic -Werror -Wall) in its own
 * process (pcclInit is process-global). Phases: static reasons of pcclInterruptMaster, create,
 * run, serve (a TCP client connects), interrupt, await, destroy, a busy port, and communicator
 * calls still refused with pcclNotInitialized. The first failure prints its reason and exits
 * non-zero; alarm() bounds the run.
 */
#define _POSIX_C_SOURCE 200809L

#include <ccoip.h>
#include <pccl.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void fail(const char *phase, const char *what, pcclResult_t r) {
    printf("phase %s: FAILED: %s: got %d (%s): %s\n", phase, what, (int) r, pcclGetErrorString(r),
           pcclGetLastErrorMessage(NULL));
    exit(1);
}

#define EXPECT(phase, want, call)                                                                                      \
    do {                                                                                                               \
        pcclResult_t r_ = (call);                                                                                      \
        if (r_ != (want)) fail(phase, #call " should return " #want, r_);                                              \
    } while (0)

#define EXPECT_TRUE(phase, cond)                                                                                       \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            printf("phase %s: FAILED: expected %s (last error: %s)\n", phase, #cond, pcclGetLastErrorMessage(NULL));    \
            exit(1);                                                                                                   \
        }                                                                                                              \
    } while (0)

static void phase_ok(const char *phase) { printf("phase %s: ok\n", phase); }

/* A TCP connect to 127.0.0.1:port; returns whether it was accepted by a listener. */
static int can_connect(uint16_t port) {
    struct sockaddr_in sa;
    int ok;
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = connect(fd, (struct sockaddr *) &sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

/* A listening socket on 127.0.0.1 with a kernel-chosen port, written to *port. */
static int busy_port(uint16_t *port) {
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof sa) != 0 || listen(fd, 4) != 0 ||
        getsockname(fd, (struct sockaddr *) &sa, &len) != 0) {
        printf("phase busy-port: FAILED: cannot make a busy port\n");
        exit(1);
    }
    *port = ntohs(sa.sin_port);
    return fd;
}

static void busy_port_phase(void) {
    pcclMasterInstance_t *master = NULL;
    ccoip_socket_address_t address;
    char expected[64];
    uint16_t port = 0;
    const int fd = busy_port(&port);
    EXPECT("busy-port", pcclSuccess, pcclParseSocketAddress("127.0.0.1", &address));
    address.port = port;
    EXPECT("busy-port", pcclSuccess, pcclCreateMaster(address, &master));
    EXPECT("busy-port", pcclInvalidArgument, pcclRunMaster(master));
    snprintf(expected, sizeof expected, "127.0.0.1:%u", (unsigned) port);
    EXPECT_TRUE("busy-port", strstr(pcclGetLastErrorMessage(NULL), expected) != NULL);
    EXPECT("busy-port", pcclSuccess, pcclDestroyMaster(master));
    close(fd);
    phase_ok("busy-port");
}

int main(void) {
    pcclMasterInstance_t *master = NULL;
    ccoip_socket_address_t address;
    pcclCommCreateParams_t params;
    pcclComm_t *comm = NULL;
    uint16_t port = 0;

    alarm(45); /* the whole program: never hang */
    setvbuf(stdout, NULL, _IOLBF, 0);

    EXPECT("interrupt-null", pcclInvalidArgument, pcclInterruptMaster(NULL));
    EXPECT_TRUE("interrupt-null", strstr(pcclGetLastErrorMessage(NULL), "NULL") != NULL);
    phase_ok("interrupt-null");

    EXPECT("create", pcclSuccess, pcclParseSocketAddress("127.0.0.1:0", &address));
    EXPECT("create", pcclSuccess, pcclCreateMaster(address, &master));
    EXPECT("create", pcclInvalidUsage, pcclMasterAwaitTermination(master)); /* never run */
    phase_ok("create");

    EXPECT("run", pcclSuccess, pcclRunMaster(master));
    EXPECT("run", pcclSuccess, pcclGetMasterPort(master, &port));
    EXPECT_TRUE("run", port != 0);
    EXPECT_TRUE("run", can_connect(port));
    printf("master listening on 127.0.0.1:%u without pcclInit\n", (unsigned) port);
    phase_ok("run");

    EXPECT("stop", pcclSuccess, pcclInterruptMaster(master));
    EXPECT("stop", pcclSuccess, pcclMasterAwaitTermination(master));
    EXPECT_TRUE("stop", !can_connect(port));
    EXPECT("stop", pcclSuccess, pcclDestroyMaster(master));
    phase_ok("stop");

    /* A running master destroyed without an interrupt stops too. */
    EXPECT("destroy-running", pcclSuccess, pcclCreateMaster(address, &master));
    EXPECT("destroy-running", pcclSuccess, pcclRunMaster(master));
    EXPECT("destroy-running", pcclSuccess, pcclDestroyMaster(master));
    phase_ok("destroy-running");

    busy_port_phase();

    /* Communicator calls still need pcclInit: the master calls did not call it behind our back. */
    memset(&params, 0, sizeof params);
    params.master_address = address;
    EXPECT("still-not-initialized", pcclNotInitialized, pcclCreateCommunicator(&params, &comm));
    phase_ok("still-not-initialized");
    return 0;
}
