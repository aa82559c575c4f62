/*
 * dns_types.h: what a worker asks the resolver and what it gets back
 * (dns/resolver.h).  Both travel by value through DPDK rings (fixed size,
 * no pointer into the worker's memory but the opaque cookie), so neither
 * side allocates per query.
 */
#ifndef PA_DNS_TYPES_H
#define PA_DNS_TYPES_H

#include <stdint.h>

#define DNS_NAME_MAX 253 /* RFC 1035 2.3.4, as text */
#define DNS_ADDRS_MAX 8  /* A records kept per answer; a DNS list returns one or two */

enum dns_status {
	DNS_OK,       /* A records in addrs[0..naddr) */
	DNS_NOTFOUND, /* NXDOMAIN, or the name has no A record (RFC 2308 NODATA) */
	DNS_FAILED,   /* SERVFAIL, REFUSED, a malformed answer, no server reachable */
	DNS_TIMEOUT,  /* no answer within dns.timeout */
	DNS_BUSY,     /* the resolver could not take the query (its ring was full) */
};

/* A lookup of the A records of name (the only type the screen needs). */
struct dns_query {
	uint64_t cookie; /* the asker's, returned as is */
	uint32_t tag;    /* the asker's, returned as is */
	char name[DNS_NAME_MAX + 3];
};

struct dns_answer {
	uint64_t cookie;
	uint32_t tag;
	uint8_t status; /* enum dns_status */
	uint8_t naddr;
	uint8_t cached; /* answered from the resolver's cache, no packet sent */
	uint8_t pad;
	uint32_t ttl;                  /* seconds the answer may be kept */
	uint32_t addrs[DNS_ADDRS_MAX]; /* network order */
};

_Static_assert(sizeof(struct dns_query) % 4 == 0, "rte_ring elements are multiples of 4");
_Static_assert(sizeof(struct dns_answer) % 4 == 0, "rte_ring elements are multiples of 4");

#endif
