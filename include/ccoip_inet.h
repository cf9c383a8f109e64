/*
 * ccoip_inet.h - the socket address types of the pccl C API (PCCL 1.0's names and layout).
 *
 * Types only: no functions, so no linkage and no extern "C". Compiles alone, in any order with
 * ccoip.h and pccl.h, as C99 and as C++. pcclParseSocketAddress (pccl.h) fills a
 * ccoip_socket_address_t from "1.2.3.4:48148" or "[::1]:48148".
 */
#ifndef CCOIP_INET_H
#define CCOIP_INET_H

#include <stdint.h>

/** Which member of ccoip_inet_address_t holds the address. Values fixed. */
typedef enum ccoip_inet_protocol_t { inetIPv4 = 0, inetIPv6 = 1 } ccoip_inet_protocol_t;

/** An IPv4 address in network byte order (127.0.0.1 is {127, 0, 0, 1}). */
typedef struct ccoip_ipv4_address_t {
    uint8_t data[4];
} ccoip_ipv4_address_t;

/** An IPv6 address in network byte order (::1 is fifteen 0 bytes, then 1). */
typedef struct ccoip_ipv6_address_t {
    uint8_t data[16];
} ccoip_ipv6_address_t;

/** An IPv4 or IPv6 address; only the member named by protocol is read. */
typedef struct ccoip_inet_address_t {
    ccoip_inet_protocol_t protocol;
    ccoip_ipv4_address_t ipv4;
    ccoip_ipv6_address_t ipv6;
} ccoip_inet_address_t;

/** An address and a TCP port in host byte order (0: any free port, where listening). */
typedef struct ccoip_socket_address_t {
    ccoip_inet_address_t inet;
    uint16_t port;
} ccoip_socket_address_t;

#endif /* CCOIP_INET_H */
