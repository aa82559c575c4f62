/*
 * net_cksum.c: the Internet checksum in software (RFC 1071), wide.
 *
 * The one's-complement sum of 16-bit words does not depend on the word size
 * it is taken in (RFC 1071 2(C), "parallel summation"): 2^16 = 1 modulo
 * 0xffff, so a 32- or 64-bit word is congruent to the sum of its 16-bit
 * halves, and carries out of a wide accumulator are added back in
 * ("end-around carry", 2(A)).  Here 32-bit words are added into 64-bit lanes,
 * which cannot overflow for any length we chunk to, and the lanes are folded
 * to 16 bits once at the end.  Words are loaded in host order, as
 * rte_raw_cksum() does (byte-order independence, 2(B)), so the results are
 * identical to DPDK's and the checksum field is stored as is.
 */
/* rte_vect_get_max_simd_bitwidth() is still marked experimental in DPDK 22.11. */
#define ALLOW_EXPERIMENTAL_API

#include "dataplane/net_cksum.h"

#include <string.h>

#include <rte_byteorder.h>
#include <rte_common.h>
#include <rte_cpuflags.h>
#include <rte_vect.h>

#if defined(RTE_ARCH_X86_64)
#include <immintrin.h>
#define NET_CKSUM_X86 1
#endif

/*
 * The wide loops add at most 2^32 - 1 per lane per 16 octets; chunks of 1 GiB
 * keep every lane and their sum far below 2^64.
 */
#define NET_CKSUM_CHUNK ((size_t)1 << 30)

typedef uint64_t (*sum_fn)(const uint8_t *p, size_t len, uint64_t s);

/* s + w with the carry out of bit 63 added back in (RFC 1071 2(A)). */
static inline uint64_t
add_carry(uint64_t s, uint64_t w)
{
	s += w;
	return s + (s < w);
}

/* 8 octets a loop turn; the tails of the vector loops end here too. */
static uint64_t
sum_scalar(const uint8_t *p, size_t len, uint64_t s)
{
	uint64_t w8;
	uint32_t w4;
	uint16_t w2;

	for (; len >= 8; p += 8, len -= 8) {
		memcpy(&w8, p, 8);
		s = add_carry(s, w8);
	}
	if (len >= 4) {
		memcpy(&w4, p, 4);
		s = add_carry(s, w4);
		p += 4;
		len -= 4;
	}
	if (len >= 2) {
		memcpy(&w2, p, 2);
		s = add_carry(s, w2);
		p += 2;
		len -= 2;
	}
	if (len == 1) {
		/* The odd octet is the first half of a word padded with zero (RFC 1071 1). */
		w2 = 0;
		memcpy(&w2, p, 1);
		s = add_carry(s, w2);
	}
	return s;
}

#ifdef NET_CKSUM_X86
/* 32 octets a loop turn: 32-bit words zero-extended into two 64-bit lanes. */
static uint64_t
sum_sse2(const uint8_t *p, size_t len, uint64_t s)
{
	const __m128i z = _mm_setzero_si128();
	__m128i a0 = z, a1 = z;

	for (; len >= 32; p += 32, len -= 32) {
		__m128i v0 = _mm_loadu_si128((const __m128i *)p);
		__m128i v1 = _mm_loadu_si128((const __m128i *)(p + 16));

		a0 = _mm_add_epi64(a0, _mm_unpacklo_epi32(v0, z));
		a1 = _mm_add_epi64(a1, _mm_unpackhi_epi32(v0, z));
		a0 = _mm_add_epi64(a0, _mm_unpacklo_epi32(v1, z));
		a1 = _mm_add_epi64(a1, _mm_unpackhi_epi32(v1, z));
	}
	a0 = _mm_add_epi64(a0, a1);
	s = add_carry(s, (uint64_t)_mm_cvtsi128_si64(a0));
	s = add_carry(s, (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(a0, a0)));
	return sum_scalar(p, len, s);
}

/*
 * 64 octets a loop turn: vpmovzxdq widens 16 octets of 32-bit words into four
 * 64-bit lanes straight from memory, so each 16 octets cost two instructions.
 */
__attribute__((target("avx2"))) static uint64_t
sum_avx2(const uint8_t *p, size_t len, uint64_t s)
{
	__m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
	__m128i h;

	for (; len >= 64; p += 64, len -= 64) {
		a0 = _mm256_add_epi64(a0,
		                      _mm256_cvtepu32_epi64(_mm_loadu_si128((const __m128i *)p)));
		a1 = _mm256_add_epi64(
		    a1, _mm256_cvtepu32_epi64(_mm_loadu_si128((const __m128i *)(p + 16))));
		a2 = _mm256_add_epi64(
		    a2, _mm256_cvtepu32_epi64(_mm_loadu_si128((const __m128i *)(p + 32))));
		a3 = _mm256_add_epi64(
		    a3, _mm256_cvtepu32_epi64(_mm_loadu_si128((const __m128i *)(p + 48))));
	}
	for (; len >= 16; p += 16, len -= 16)
		a0 = _mm256_add_epi64(a0,
		                      _mm256_cvtepu32_epi64(_mm_loadu_si128((const __m128i *)p)));
	a0 = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
	h = _mm_add_epi64(_mm256_castsi256_si128(a0), _mm256_extracti128_si256(a0, 1));
	s = add_carry(s, (uint64_t)_mm_cvtsi128_si64(h));
	s = add_carry(s, (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(h, h)));
	return sum_scalar(p, len, s);
}
#endif

static uint64_t sum_first(const uint8_t *p, size_t len, uint64_t s);

/*
 * The variant in use: sum_first() until the first call picks one.  Workers
 * may race to store the same pointer; relaxed atomics make that defined and
 * cost a plain load.
 */
static sum_fn sum_impl = sum_first;

static sum_fn
isa_fn(enum net_cksum_isa isa)
{
	switch (isa) {
#ifdef NET_CKSUM_X86
	case NET_CKSUM_AVX2:
		return sum_avx2;
	case NET_CKSUM_SSE2:
		return sum_sse2;
#endif
	default:
		return sum_scalar;
	}
}

enum net_cksum_isa
net_cksum_best(void)
{
#ifdef NET_CKSUM_X86
	/* EAL's --force-max-simd-bitwidth; 0 before rte_eal_init() (tools, tests): no limit. */
	uint16_t simd = rte_vect_get_max_simd_bitwidth();

	if ((simd == 0 || simd >= RTE_VECT_SIMD_256) && rte_cpu_get_flag_enabled(RTE_CPUFLAG_AVX2))
		return NET_CKSUM_AVX2;
	if (simd == 0 || simd >= RTE_VECT_SIMD_128)
		return NET_CKSUM_SSE2; /* part of x86-64 itself */
#endif
	return NET_CKSUM_SCALAR;
}

bool
net_cksum_use(enum net_cksum_isa isa)
{
	if (isa > net_cksum_best())
		return false;
	__atomic_store_n(&sum_impl, isa_fn(isa), __ATOMIC_RELAXED);
	return true;
}

static uint64_t
sum_first(const uint8_t *p, size_t len, uint64_t s)
{
	sum_fn f = isa_fn(net_cksum_best());

	__atomic_store_n(&sum_impl, f, __ATOMIC_RELAXED);
	return f(p, len, s);
}

static inline uint64_t
sum(const void *buf, size_t len, uint64_t s)
{
	sum_fn f = __atomic_load_n(&sum_impl, __ATOMIC_RELAXED);
	const uint8_t *p = buf;

	/* Chunks start at even offsets, so every word stays whole. */
	for (; len > NET_CKSUM_CHUNK; p += NET_CKSUM_CHUNK, len -= NET_CKSUM_CHUNK)
		s = f(p, NET_CKSUM_CHUNK, s);
	return f(p, len, s);
}

uint16_t
net_cksum(const void *buf, size_t len, uint32_t s)
{
	return net_cksum_fold(sum(buf, len, s));
}

/*
 * The pseudo-header (RFC 9293 3.1): source, destination, a zero octet and
 * the protocol, the TCP length; its words in host order like the rest, added
 * to the sum before the one fold rather than folded on its own.
 */
static inline uint64_t
phdr_sum(const struct rte_ipv4_hdr *ip, uint16_t l4_len)
{
	return (uint64_t)ip->src_addr + ip->dst_addr + rte_cpu_to_be_16((uint16_t)IPPROTO_TCP) +
	       rte_cpu_to_be_16(l4_len);
}

uint16_t
net_cksum_ipv4_tcp(const struct rte_ipv4_hdr *ip, const void *th, uint16_t l4_len)
{
	/*
	 * A sum of 0xffff gives 0, as rte_ipv4_udptcp_cksum() sends for TCP: only
	 * UDP reserves 0 (RFC 768), and 0 and 0xffff verify alike (RFC 1624 3).
	 */
	return (uint16_t)~net_cksum_fold(sum(th, l4_len, phdr_sum(ip, l4_len)));
}

bool
net_cksum_ipv4_tcp_ok(const struct rte_ipv4_hdr *ip, const void *th, uint16_t l4_len)
{
	return net_cksum_fold(sum(th, l4_len, phdr_sum(ip, l4_len))) == 0xffff;
}

/*
 * The IPv6 pseudo-header (RFC 8200 8.1): source, destination, the
 * upper-layer length as 32 bits, three zero octets and the next header; the
 * addresses as 32-bit words, like the IPv4 ones.
 */
static inline uint64_t
phdr6_sum(const struct rte_ipv6_hdr *ip, uint8_t proto, uint16_t l4_len)
{
	uint32_t w[8];
	uint64_t s;

	memcpy(w, ip->src_addr, 16);
	memcpy(w + 4, ip->dst_addr, 16);
	s = (uint64_t)w[0] + w[1] + w[2] + w[3] + w[4] + w[5] + w[6] + w[7];
	return s + rte_cpu_to_be_16((uint16_t)proto) + rte_cpu_to_be_16(l4_len);
}

uint16_t
net_cksum_ipv6_l4(const struct rte_ipv6_hdr *ip, uint8_t proto, const void *l4, uint16_t l4_len)
{
	return (uint16_t)~net_cksum_fold(sum(l4, l4_len, phdr6_sum(ip, proto, l4_len)));
}

bool
net_cksum_ipv6_l4_ok(const struct rte_ipv6_hdr *ip, uint8_t proto, const void *l4, uint16_t l4_len)
{
	return net_cksum_fold(sum(l4, l4_len, phdr6_sum(ip, proto, l4_len))) == 0xffff;
}
