/*
 * net_cksum.h: the Internet checksum (RFC 1071) of IPv4 TCP
 * segments and of IPv6 TCP segments and ICMPv6 messages in software, for
 * ports without checksum offload.
 *
 * The sum is the same as DPDK's rte_raw_cksum() (16-bit words loaded in host
 * order and added with end-around carry, an odd last octet as the low-order
 * half of a word), but taken 32 octets at a time with AVX2 where the CPU has
 * it, 16 with SSE2 otherwise, 8 in plain C elsewhere: rte_raw_cksum() adds one
 * 16-bit word per loop turn, about 2.7 instructions per octet, which was 30 %
 * of a 4 KiB message's instructions on a port without offload.  The variant is
 * chosen once, at the first call, from the CPU's flags and EAL's
 * --force-max-simd-bitwidth.
 */
#ifndef PA_NET_CKSUM_H
#define PA_NET_CKSUM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <rte_ip.h>

enum net_cksum_isa {
	NET_CKSUM_SCALAR, /* 64-bit words in C */
	NET_CKSUM_SSE2,
	NET_CKSUM_AVX2,
};

/*
 * Sum of len octets at buf (any alignment) plus sum, folded to 16 bits and not
 * complemented: what rte_raw_cksum() returns when sum is 0 (0 only when every
 * word is 0; 0xffff for a region whose checksum is right).
 */
uint16_t net_cksum(const void *buf, size_t len, uint32_t sum);

/*
 * The TCP checksum field for the segment of l4_len octets at th behind the
 * IPv4 header ip (RFC 9293 3.1: pseudo-header of source, destination, protocol
 * and TCP length), computed with th->cksum zero: rte_ipv4_udptcp_cksum().
 */
uint16_t net_cksum_ipv4_tcp(const struct rte_ipv4_hdr *ip, const void *th, uint16_t l4_len);

/* True when the received segment's checksum, pseudo-header included, is right. */
bool net_cksum_ipv4_tcp_ok(const struct rte_ipv4_hdr *ip, const void *th, uint16_t l4_len);

/*
 * The checksum field of the l4_len octets at l4 (field zero) behind the IPv6
 * header ip, next header proto (TCP, ICMPv6), pseudo-header included (RFC
 * 8200 8.1): rte_ipv6_udptcp_cksum(), with the wide sum.
 */
uint16_t net_cksum_ipv6_l4(const struct rte_ipv6_hdr *ip, uint8_t proto, const void *l4,
                           uint16_t l4_len);

/* True when a received IPv6 upper-layer message's checksum, pseudo-header included, is right. */
bool net_cksum_ipv6_l4_ok(const struct rte_ipv6_hdr *ip, uint8_t proto, const void *l4,
                          uint16_t l4_len);

/*
 * Folds a 64-bit one's-complement sum to 16 bits (RFC 1071 4.1); 0 only if s
 * is 0.  Adding a word to itself rotated by half its width puts the sum of
 * its halves in the upper half, the carry out of the lower half included:
 * the end-around carry in an add, a rotate and a shift, twice.
 */
static inline uint16_t
net_cksum_fold(uint64_t s)
{
	uint32_t h = (uint32_t)((s + (s >> 32 | s << 32)) >> 32);

	return (uint16_t)((h + (h >> 16 | h << 16)) >> 16);
}

/*
 * The sum over an IPv4 header of hlen octets (IHL x 4: 20 to 60, RFC 791
 * 3.1), a 32-bit word at a time: 0xffff when its checksum is right; with
 * hdr_checksum zero, the complement is the checksum (rte_ipv4_cksum()).
 * Inline, because 20 octets are five additions and a fold, against about 60
 * instructions for rte_raw_cksum()'s ten-turn loop, once per frame each way.
 */
static inline uint16_t
net_cksum_ipv4_hdr(const struct rte_ipv4_hdr *ip, unsigned hlen)
{
	const uint8_t *p = (const uint8_t *)ip;
	uint32_t w[5];
	uint64_t s;

	/* The fixed 20 octets unrolled; options (rare) a word a turn. */
	memcpy(w, p, sizeof(w));
	s = (uint64_t)w[0] + w[1] + w[2] + w[3] + w[4];
	for (unsigned i = sizeof(w); i + 4 <= hlen; i += 4) {
		memcpy(w, p + i, 4);
		s += w[0];
	}
	return net_cksum_fold(s);
}

/* The best variant this CPU (and EAL's SIMD limit) allows. */
enum net_cksum_isa net_cksum_best(void);

/* Uses isa from now on (for tests and benchmarks); false, and no change, if the CPU lacks it. */
bool net_cksum_use(enum net_cksum_isa isa);

#endif
