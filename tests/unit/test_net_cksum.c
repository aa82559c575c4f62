/*
 * test_net_cksum.c: dataplane/net_cksum.c's sums, in every variant the CPU
 * has (AVX2, SSE2, C), against DPDK's rte_raw_cksum(), rte_ipv4_cksum() and
 * rte_ipv4_udptcp_cksum() and against a plain RFC 1071 sum: random data at
 * every alignment 0..63, lengths 0..9000 (every length up to 300, odd ones,
 * random ones), all-0xff data, sums whose carries wrap, segments with a bit
 * and IPv4 headers with a bit flipped.
 */
/* rte_ipv4_udptcp_cksum_verify() is still marked experimental in DPDK 22.11. */
#define ALLOW_EXPERIMENTAL_API

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <rte_byteorder.h>
#include <rte_ip.h>
#include <rte_tcp.h>

#include "dataplane/net_cksum.h"

#define MAXLEN 9000
#define ALIGNS 64

static uint8_t buf[MAXLEN + 2 * ALIGNS] __attribute__((aligned(64)));

/* xorshift64: the same data on every run. */
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t
rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void
fill_random(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rnd();
}

/*
 * RFC 1071 4.1 as written, in host order like rte_raw_cksum(): 16-bit words,
 * a 64-bit total (no carry lost at any length here), folded at the end.
 */
static uint16_t
ref_sum(const uint8_t *p, size_t len)
{
	uint64_t s = 0;
	uint16_t w;

	for (; len >= 2; p += 2, len -= 2) {
		memcpy(&w, p, 2);
		s += w;
	}
	if (len) {
		w = 0;
		memcpy(&w, p, 1);
		s += w;
	}
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)s;
}

static const enum net_cksum_isa isas[] = {NET_CKSUM_SCALAR, NET_CKSUM_SSE2, NET_CKSUM_AVX2};
static const char *const isa_names[] = {"scalar", "sse2", "avx2"};

/* Runs check() once per variant this CPU has; at least the scalar one. */
static void
each_isa(void (*check)(enum net_cksum_isa))
{
	unsigned ran = 0;

	for (size_t i = 0; i < sizeof(isas) / sizeof(isas[0]); i++) {
		if (!net_cksum_use(isas[i]))
			continue;
		check(isas[i]);
		ran++;
	}
	assert_true(ran >= 1);
	assert_true(net_cksum_use(net_cksum_best()));
}

static void
check_len(enum net_cksum_isa isa, const uint8_t *p, size_t len)
{
	uint16_t got = net_cksum(p, len, 0), want = rte_raw_cksum(p, len);

	if (got != want || got != ref_sum(p, len))
		fail_msg(
		    "%s: length %zu at alignment %u: 0x%04x, rte_raw_cksum 0x%04x, RFC 1071 0x%04x",
		    isa_names[isa], len, (unsigned)((uintptr_t)p % ALIGNS), got, want,
		    ref_sum(p, len));
}

static void
check_random(enum net_cksum_isa isa)
{
	fill_random(buf, sizeof(buf));
	for (unsigned a = 0; a < ALIGNS; a++) {
		for (size_t len = 0; len <= 300; len++)
			check_len(isa, buf + a, len);
		for (unsigned i = 0; i < 40; i++)
			check_len(isa, buf + a, (size_t)(rnd() % (MAXLEN + 1)));
		for (unsigned i = 0; i < 10; i++)
			check_len(isa, buf + a, (size_t)(rnd() % (MAXLEN / 2)) * 2 + 1); /* odd */
		check_len(isa, buf + a, MAXLEN - 1);
		check_len(isa, buf + a, MAXLEN);
	}
}

static void
test_random(void **state)
{
	(void)state;
	each_isa(check_random);
}

static void
check_ones(enum net_cksum_isa isa)
{
	memset(buf, 0xff, sizeof(buf));
	for (unsigned a = 0; a < ALIGNS; a++)
		for (size_t len = a; len <= MAXLEN; len += 1 + 7 * a)
			check_len(isa, buf + a, len);
	/* Every word 0xffff: a non-zero sum that is 0 modulo 0xffff folds to 0xffff, never 0. */
	assert_int_equal(net_cksum(buf, MAXLEN, 0), 0xffff);
	assert_int_equal(net_cksum(buf, 1, 0),
	                 rte_cpu_to_be_16(0xff00)); /* the odd octet, padded */
	memset(buf, 0, sizeof(buf));
	assert_int_equal(net_cksum(buf, MAXLEN, 0), 0);
	assert_int_equal(net_cksum(buf, 0, 0), 0);
}

static void
test_all_ones(void **state)
{
	(void)state;
	each_isa(check_ones);
}

/* Sums that wrap past 16, 32 and 64 bits of the lanes and the seed. */
static void
check_carries(enum net_cksum_isa isa)
{
	static uint8_t big[1 << 20];

	/* 0xffff x n then 0x0001: the total is n*0xffff + 1, which folds to 1. */
	memset(buf, 0xff, sizeof(buf));
	for (size_t n = 0; n < 200; n++) {
		uint16_t one = 1;

		memcpy(buf + 2 * n, &one, 2);
		check_len(isa, buf, 2 * n + 2);
		assert_int_equal(net_cksum(buf, 2 * n + 2, 0), 1);
		memset(buf + 2 * n, 0xff, 2);
	}
	/* 0xfffe words: every addition carries. */
	for (size_t i = 0; i < sizeof(buf); i += 2) {
		uint16_t w = 0xfffe;

		memcpy(buf + i, &w, 2);
	}
	for (unsigned a = 0; a < ALIGNS; a += 2)
		check_len(isa, buf + a, MAXLEN);
	/* The seed: 0xffffffff plus anything still folds end-around. */
	assert_int_equal(net_cksum(buf, 0, 0xffffffffu), 0xffff);
	assert_int_equal(net_cksum(buf, 2, 0xffffffffu), 0xfffe);
	/*
	 * 1 MiB of 0xff: past where rte_raw_cksum()'s 32-bit total overflows
	 * (about 128 KiB), so against the 64-bit RFC 1071 sum alone.
	 */
	memset(big, 0xff, sizeof(big));
	assert_int_equal(net_cksum(big, sizeof(big), 0), ref_sum(big, sizeof(big)));
	fill_random(big, sizeof(big));
	assert_int_equal(net_cksum(big + 1, sizeof(big) - 1, 0), ref_sum(big + 1, sizeof(big) - 1));
}

static void
test_carries(void **state)
{
	(void)state;
	each_isa(check_carries);
}

/* Flips one bit of the segment or, past its end, of the source and destination addresses. */
static void
flip(struct rte_ipv4_hdr *ip, struct rte_tcp_hdr *th, uint16_t l4_len, size_t bit)
{
	uint8_t *p = bit < (size_t)l4_len * 8 ? (uint8_t *)th : (uint8_t *)&ip->src_addr;

	if (bit >= (size_t)l4_len * 8)
		bit -= (size_t)l4_len * 8;
	p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
}

/* A segment behind an IPv4 header, its checksum against DPDK's, then damaged. */
static void
check_tcp(enum net_cksum_isa isa)
{
	for (unsigned i = 0; i < 4000; i++) {
		unsigned a = i % ALIGNS;
		uint16_t l4_len =
		    (uint16_t)(sizeof(struct rte_tcp_hdr) +
		               rnd() % (MAXLEN - sizeof(struct rte_tcp_hdr) - 20 + 1));
		struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(buf + a);
		struct rte_tcp_hdr *th = (struct rte_tcp_hdr *)(ip + 1);
		uint16_t c, want;
		size_t bit;

		fill_random((uint8_t *)ip, sizeof(*ip) + l4_len);
		ip->version_ihl = RTE_IPV4_VHL_DEF;
		ip->total_length = rte_cpu_to_be_16((uint16_t)(sizeof(*ip) + l4_len));
		ip->next_proto_id = IPPROTO_TCP;
		th->cksum = 0;
		c = net_cksum_ipv4_tcp(ip, th, l4_len);
		want = rte_ipv4_udptcp_cksum(ip, th);
		if (c != want)
			fail_msg("%s: segment of %u at alignment %u: 0x%04x, rte 0x%04x",
			         isa_names[isa], l4_len, a, c, want);
		th->cksum = c;
		assert_true(net_cksum_ipv4_tcp_ok(ip, th, l4_len));
		assert_int_equal(rte_ipv4_udptcp_cksum_verify(ip, th), 0);
		/*
		 * One bit wrong anywhere in the segment or the addresses changes the
		 * sum by 2^k (k < 16), never 0 modulo 0xffff: always refused.
		 */
		bit = (size_t)(rnd() % ((size_t)l4_len * 8 + 64));
		flip(ip, th, l4_len, bit);
		assert_false(net_cksum_ipv4_tcp_ok(ip, th, l4_len));
		assert_int_not_equal(rte_ipv4_udptcp_cksum_verify(ip, th), 0);
		flip(ip, th, l4_len, bit);
		assert_true(net_cksum_ipv4_tcp_ok(ip, th, l4_len));
		/* A shorter TCP length (pseudo-header and data): the same verdict as DPDK's. */
		ip->total_length = rte_cpu_to_be_16((uint16_t)(sizeof(*ip) + l4_len - 1));
		assert_int_equal(net_cksum_ipv4_tcp_ok(ip, th, (uint16_t)(l4_len - 1)),
		                 rte_ipv4_udptcp_cksum_verify(ip, th) == 0);
	}
}

static void
test_tcp(void **state)
{
	(void)state;
	each_isa(check_tcp);
}

/*
 * A segment whose sum is 0xffff before complementing: the field is 0, as
 * rte_ipv4_udptcp_cksum() sends for TCP (0xffff only for UDP, RFC 768), and
 * it verifies, as 0xffff would.
 */
static void
test_tcp_zero_field(void **state)
{
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)buf;
	struct rte_tcp_hdr *th = (struct rte_tcp_hdr *)(ip + 1);
	uint16_t l4_len = sizeof(*th) + 2, c;

	(void)state;
	memset(buf, 0, sizeof(*ip) + l4_len);
	ip->version_ihl = RTE_IPV4_VHL_DEF;
	ip->total_length = rte_cpu_to_be_16((uint16_t)(sizeof(*ip) + l4_len));
	ip->next_proto_id = IPPROTO_TCP;
	ip->src_addr = rte_cpu_to_be_32(0xc0000201);
	/* A payload word equal to the complement of the rest makes the sum 0xffff. */
	c = net_cksum_ipv4_tcp(ip, th, l4_len);
	memcpy(th + 1, &c, 2);
	c = net_cksum_ipv4_tcp(ip, th, l4_len);
	assert_int_equal(c, 0);
	assert_int_equal(c, rte_ipv4_udptcp_cksum(ip, th));
	th->cksum = c;
	assert_true(net_cksum_ipv4_tcp_ok(ip, th, l4_len));
	th->cksum = 0xffff;
	assert_true(net_cksum_ipv4_tcp_ok(ip, th, l4_len));
	assert_int_equal(rte_ipv4_udptcp_cksum_verify(ip, th), 0);
}

/* IPv4 headers of every IHL at every alignment: the inline sum against DPDK's. */
static void
test_ipv4_hdr(void **state)
{
	(void)state;
	for (unsigned i = 0; i < 20000; i++) {
		struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(buf + i % ALIGNS);
		unsigned ihl = 5 + i % 11, hlen = ihl * 4;
		uint16_t c;

		if (i % 7 == 0)
			memset(ip, 0xff, hlen); /* every word 0xffff */
		else
			fill_random((uint8_t *)ip, hlen);
		ip->version_ihl = (uint8_t)(0x40 | ihl);
		assert_int_equal(net_cksum_ipv4_hdr(ip, hlen), rte_raw_cksum(ip, hlen));
		ip->hdr_checksum = 0;
		c = (uint16_t)~net_cksum_ipv4_hdr(ip, hlen);
		assert_int_equal(c, rte_ipv4_cksum(ip));
		ip->hdr_checksum = c;
		assert_int_equal(net_cksum_ipv4_hdr(ip, hlen), 0xffff);
		((uint8_t *)ip)[(i * 13) % hlen] ^= (uint8_t)(1u << (i % 8));
		assert_int_not_equal(net_cksum_ipv4_hdr(ip, hlen), 0xffff);
	}
}

static void
test_select(void **state)
{
	enum net_cksum_isa best = net_cksum_best();

	(void)state;
	assert_true(net_cksum_use(NET_CKSUM_SCALAR));
	assert_true(net_cksum_use(best));
	if (best < NET_CKSUM_AVX2)
		assert_false(net_cksum_use(NET_CKSUM_AVX2));
#if defined(RTE_ARCH_X86_64)
	assert_true(best >= NET_CKSUM_SSE2);
#endif
	printf("net_cksum: best variant here %s\n", isa_names[best]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_select),   cmocka_unit_test(test_random),
	    cmocka_unit_test(test_all_ones), cmocka_unit_test(test_carries),
	    cmocka_unit_test(test_tcp),      cmocka_unit_test(test_tcp_zero_field),
	    cmocka_unit_test(test_ipv4_hdr),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
