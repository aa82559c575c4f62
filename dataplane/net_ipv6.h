/*
 * net_ipv6.h: tests on one IPv6 address (16 octets, network order, any
 * alignment), for the stack and pigeon-loadgen alike.  Each is a pure
 * function, inline: they run on every IPv6 packet, so they compare whole
 * words, never octet by octet (RFC 4291 2.4 for the address types).
 */
#ifndef PA_NET_IPV6_H
#define PA_NET_IPV6_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <rte_byteorder.h>

/* The two halves of an address, as two 64-bit words in network order. */
static inline void
net_ipv6_words(const uint8_t *a, uint64_t *hi, uint64_t *lo)
{
	memcpy(hi, a, 8);
	memcpy(lo, a + 8, 8);
}

static inline bool
net_ipv6_addr_eq(const uint8_t *a, const uint8_t *b)
{
	uint64_t ah, al, bh, bl;

	net_ipv6_words(a, &ah, &al);
	net_ipv6_words(b, &bh, &bl);
	return ((ah ^ bh) | (al ^ bl)) == 0;
}

/* fe80::/10 (RFC 4291 2.5.6). */
static inline bool
net_ipv6_is_link_local(const uint8_t *a)
{
	return a[0] == 0xfe && (a[1] & 0xc0) == 0x80;
}

/* :: (RFC 4291 2.5.2). */
static inline bool
net_ipv6_is_unspecified(const uint8_t *a)
{
	uint64_t h, l;

	net_ipv6_words(a, &h, &l);
	return (h | l) == 0;
}

/* ::1 (RFC 4291 2.5.3). */
static inline bool
net_ipv6_is_loopback(const uint8_t *a)
{
	uint64_t h, l;

	net_ipv6_words(a, &h, &l);
	return (h | (l ^ RTE_BE64(1))) == 0;
}

/* ::ffff:0:0/96, an IPv4 address mapped (RFC 4291 2.5.5.2). */
static inline bool
net_ipv6_is_v4mapped(const uint8_t *a)
{
	uint64_t h, l;

	net_ipv6_words(a, &h, &l);
	return (h | ((l ^ RTE_BE64(0x0000ffff00000000ull)) & RTE_BE64(0xffffffff00000000ull))) == 0;
}

#endif
