/*
 * test_net_steering.c: the owner of a flow (dataplane/net_steer.c).
 *
 * Software RSS: a flow's owner is the same seen from either end (so a
 * segment and its answer meet on one worker), flows spread over the
 * workers, and an active open finds a local port whose flow lands on the
 * opening worker.
 *
 * Hardware RSS: DPDK's rte_softrss()/rte_softrss_be() and net_rss_hash()
 * give the published Toeplitz hashes of the RSS verification suite
 * (Microsoft, "Verifying the RSS Hash Calculation"; also the Intel 82599
 * datasheet 7.1.2.8.3) for IPv4 and IPv4 TCP under the standard 40-octet
 * key; the symmetric key hashes both directions alike (the standard key does
 * not); the owner is the redirection table's entry for the hash; the port
 * picker lands on the opening worker's entries for many random tuples, with
 * either key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <rte_byteorder.h>
#include <rte_thash.h>

#include "core/pa.h"
#include "dataplane/dp.h"

/* Not RTE_IPV4(): it shifts a signed int into the sign bit (UBSan). */
#define IP4(a, b, c, d) ((uint32_t)(a) << 24 | (uint32_t)(b) << 16 | (uint32_t)(c) << 8 | (d))

/* The verification suite's key (Microsoft's RSS specification; DPDK's test_thash.c). */
static const uint8_t ms_key[40] __rte_aligned(4) = {
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
    0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
    0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
};

/* The IPv4 vectors: source, destination (as the packet carries them), the two hashes. */
static const struct {
	uint32_t src, dst;
	uint16_t sport, dport;
	uint32_t hash_ip, hash_tcp;
} ms_v4[] = {
    {IP4(66, 9, 149, 187), IP4(161, 142, 100, 80), 2794, 1766, 0x323e8fc2, 0x51ccc178},
    {IP4(199, 92, 111, 2), IP4(65, 69, 140, 83), 14230, 4739, 0xd718262a, 0xc626b0ea},
    {IP4(24, 19, 198, 95), IP4(12, 22, 207, 184), 12898, 38024, 0xd2d0a5de, 0x5c2b394a},
    {IP4(38, 27, 205, 30), IP4(209, 142, 163, 6), 48228, 2217, 0x82989176, 0xafc7327f},
    {IP4(153, 39, 163, 191), IP4(202, 188, 127, 2), 44251, 1303, 0x5d1809c5, 0x10e828a2},
};

/* A reproducible stream of tuples: xorshift64. */
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t
rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 16);
}

/* The Toeplitz hash straight from DPDK with the original key (CPU-order tuple). */
static uint32_t
ref_hash(const uint8_t *key, uint32_t src, uint16_t sport, uint32_t dst, uint16_t dport)
{
	union rte_thash_tuple t;

	t.v4.src_addr = src;
	t.v4.dst_addr = dst;
	t.v4.sport = sport;
	t.v4.dport = dport;
	return rte_softrss((uint32_t *)&t, RTE_THASH_V4_L4_LEN, key);
}

/* sh with hardware RSS: key, and a redirection table dealing n buckets to the workers. */
static void
rss_shared(struct dp_shared *sh, unsigned nworkers, const uint8_t *key, unsigned n)
{
	uint8_t reta[DP_RETA_MAX];

	memset(sh, 0, sizeof(*sh));
	sh->nworkers = nworkers;
	for (unsigned i = 0; i < n; i++)
		reta[i] = (uint8_t)(i % nworkers);
	assert_int_equal(net_rss_install(sh, key, 40, reta, n), PA_OK);
	assert_true(sh->rss);
}

static void
test_symmetric_and_spread(void **state)
{
	struct dp_shared sh;
	unsigned per[4] = {0};

	(void)state;
	memset(&sh, 0, sizeof(sh));
	sh.nworkers = 4;
	for (uint32_t i = 0; i < 4000; i++) {
		uint32_t a = rte_cpu_to_be_32(0xc6120001u + (i % 50)),
		         b = rte_cpu_to_be_32(0xc6120002u);
		uint16_t ap = rte_cpu_to_be_16((uint16_t)(30000 + i)), bp = rte_cpu_to_be_16(25);
		unsigned o = net_flow_owner(&sh, a, ap, b, bp);

		assert_int_equal(o, net_flow_owner(&sh, b, bp, a, ap));
		assert_true(o < 4);
		per[o]++;
	}
	for (int w = 0; w < 4; w++)
		assert_in_range(per[w], 700, 1300); /* roughly even */
	sh.nworkers = 1;
	assert_int_equal(net_flow_owner(&sh, 1, 2, 3, 4), 0);
}

static void
test_pick_local_port(void **state)
{
	struct dp_shared sh;
	uint32_t l = rte_cpu_to_be_32(0xc6120002u), r = rte_cpu_to_be_32(0xc6120063u);
	uint16_t rp = rte_cpu_to_be_16(25);

	(void)state;
	memset(&sh, 0, sizeof(sh));
	sh.nworkers = 3;
	for (unsigned w = 0; w < 3; w++) {
		int p = net_pick_local_port(&sh, w, l, r, rp, 32768, 60999, 40000);

		assert_true(p >= 32768 && p <= 60999);
		assert_int_equal(net_flow_owner(&sh, l, rte_cpu_to_be_16((uint16_t)p), r, rp), w);
	}
	/* A range of one port either fits or says so. */
	{
		int p = net_pick_local_port(&sh, 0, l, r, rp, 40000, 40000, 40000);

		assert_true(p == -1 || net_flow_owner(&sh, l, rte_cpu_to_be_16(40000), r, rp) == 0);
	}
}

static void
test_toeplitz_verification_suite(void **state)
{
	uint32_t conv[10];
	struct dp_shared sh;

	(void)state;
	rss_shared(&sh, 2, ms_key, 128);
	rte_convert_rss_key((const uint32_t *)ms_key, conv, sizeof(ms_key));
	for (size_t i = 0; i < pa_array_size(ms_v4); i++) {
		union rte_thash_tuple t;

		t.v4.src_addr = ms_v4[i].src;
		t.v4.dst_addr = ms_v4[i].dst;
		t.v4.sport = ms_v4[i].sport;
		t.v4.dport = ms_v4[i].dport;
		/* IPv4 alone (the addresses) and IPv4 with TCP (addresses and ports). */
		assert_int_equal(rte_softrss((uint32_t *)&t, RTE_THASH_V4_L3_LEN, ms_key),
		                 ms_v4[i].hash_ip);
		assert_int_equal(rte_softrss((uint32_t *)&t, RTE_THASH_V4_L4_LEN, ms_key),
		                 ms_v4[i].hash_tcp);
		assert_int_equal(
		    rte_softrss_be((uint32_t *)&t, RTE_THASH_V4_L4_LEN, (const uint8_t *)conv),
		    ms_v4[i].hash_tcp);
		/* net_rss_hash() takes the tuple in network order, as the header carries it. */
		assert_int_equal(net_rss_hash(&sh, rte_cpu_to_be_32(ms_v4[i].src),
		                              rte_cpu_to_be_16(ms_v4[i].sport),
		                              rte_cpu_to_be_32(ms_v4[i].dst),
		                              rte_cpu_to_be_16(ms_v4[i].dport)),
		                 ms_v4[i].hash_tcp);
		/* The owner is the table's entry for the hash's bucket (here, its parity). */
		assert_int_equal(net_flow_owner(&sh, rte_cpu_to_be_32(ms_v4[i].src),
		                                rte_cpu_to_be_16(ms_v4[i].sport),
		                                rte_cpu_to_be_32(ms_v4[i].dst),
		                                rte_cpu_to_be_16(ms_v4[i].dport)),
		                 (ms_v4[i].hash_tcp % 128) % 2);
	}
}

static void
test_symmetric_key(void **state)
{
	uint8_t key[52] __rte_aligned(4);
	unsigned asym = 0;
	struct dp_shared sh;

	(void)state;
	net_rss_symmetric_key(key, sizeof(key));
	for (unsigned i = 0; i < sizeof(key); i++)
		assert_int_equal(key[i], i % 2 == 0 ? 0x6d : 0x5a);
	rss_shared(&sh, 4, key, 512);
	for (unsigned i = 0; i < 20000; i++) {
		uint32_t a = rnd() ^ rnd() << 16, b = rnd() ^ rnd() << 16;
		uint16_t ap = (uint16_t)rnd(), bp = (uint16_t)rnd();

		assert_int_equal(ref_hash(key, a, ap, b, bp), ref_hash(key, b, bp, a, ap));
		assert_int_equal(net_flow_owner(&sh, a, ap, b, bp),
		                 net_flow_owner(&sh, b, bp, a, ap));
		/* The standard key is not symmetric: the property is the key's, not the hash's. */
		asym += ref_hash(ms_key, a, ap, b, bp) != ref_hash(ms_key, b, bp, a, ap);
	}
	assert_true(asym > 19000);
}

static void
test_reta_mapping(void **state)
{
	uint8_t key[40] __rte_aligned(4), reta[DP_RETA_MAX];
	unsigned per[3] = {0};
	struct dp_shared sh;

	(void)state;
	net_rss_symmetric_key(key, sizeof(key));
	memset(&sh, 0, sizeof(sh));
	sh.nworkers = 3;
	/* An uneven table: worker 0 has half the buckets, workers 1 and 2 a quarter each. */
	for (unsigned i = 0; i < 128; i++)
		reta[i] = (uint8_t)(i % 4 == 3 ? 2 : i % 2);
	assert_int_equal(net_rss_install(&sh, key, sizeof(key), reta, 128), PA_OK);
	for (unsigned i = 0; i < 12000; i++) {
		uint32_t a = rnd() ^ rnd() << 16, b = rnd() ^ rnd() << 16;
		uint16_t ap = (uint16_t)rnd(), bp = (uint16_t)rnd();
		uint32_t h = ref_hash(key, rte_be_to_cpu_32(a), rte_be_to_cpu_16(ap),
		                      rte_be_to_cpu_32(b), rte_be_to_cpu_16(bp));
		unsigned o = net_flow_owner(&sh, a, ap, b, bp);

		assert_int_equal(net_rss_hash(&sh, a, ap, b, bp), h);
		assert_int_equal(o, reta[h % 128]);
		per[o]++;
	}
	/* The table's shares, give or take: 1/2, 1/4 and 1/4 of 12000. */
	assert_in_range(per[0], 5400, 6600);
	assert_in_range(per[1], 2500, 3500);
	assert_in_range(per[2], 2500, 3500);
	/* What the port reports is refused when the stack could not follow it. */
	reta[5] = 3; /* no such worker */
	memset(&sh, 0, sizeof(sh));
	sh.nworkers = 3;
	assert_int_equal(net_rss_install(&sh, key, sizeof(key), reta, 128), PA_ERROR);
	reta[5] = 1;
	assert_int_equal(net_rss_install(&sh, key, 12, reta, 128), PA_ERROR);
	assert_int_equal(net_rss_install(&sh, key, 38, reta, 128), PA_ERROR);
	assert_int_equal(net_rss_install(&sh, key, sizeof(key), reta, 0), PA_ERROR);
	assert_int_equal(net_rss_install(&sh, key, sizeof(key), reta, DP_RETA_MAX + 1), PA_ERROR);
	assert_false(sh.rss);
}

/* For each key: the picked port's flow, hashed as the peer's segments arrive, is the worker's. */
static void
pick_lands_on_worker(const uint8_t *key)
{
	uint8_t reta[DP_RETA_MAX];
	struct dp_shared sh;

	memset(&sh, 0, sizeof(sh));
	sh.nworkers = 4;
	/* Workers 0-2 share the table, worker 3 has no bucket at all. */
	for (unsigned i = 0; i < 512; i++)
		reta[i] = (uint8_t)(i % 3);
	assert_int_equal(net_rss_install(&sh, key, 40, reta, 512), PA_OK);
	for (unsigned i = 0; i < 2000; i++) {
		uint32_t l = rnd() ^ rnd() << 16, r = rnd() ^ rnd() << 16;
		uint16_t rp = (uint16_t)rnd(), start = (uint16_t)(32768 + rnd() % 28232);

		for (unsigned w = 0; w < 3; w++) {
			int p = net_pick_local_port(&sh, w, l, r, rp, 32768, 60999, start);
			uint32_t h;

			assert_true(p >= 32768 && p <= 60999);
			/* The SYN-ACK: from the peer (r, rp) to us (l, p). */
			h = ref_hash(key, rte_be_to_cpu_32(r), rte_be_to_cpu_16(rp),
			             rte_be_to_cpu_32(l), (uint16_t)p);
			assert_int_equal(reta[h % 512], w);
		}
		/* A full scan of the range each time: a few tuples are enough. */
		if (i < 20)
			assert_int_equal(net_pick_local_port(&sh, 3, l, r, rp, 32768, 60999, start),
			                 -1);
	}
}

static void
test_pick_local_port_rss(void **state)
{
	uint8_t key[40] __rte_aligned(4);

	(void)state;
	net_rss_symmetric_key(key, sizeof(key));
	pick_lands_on_worker(key);
	/* A port that kept its own, asymmetric key: the received direction still decides. */
	pick_lands_on_worker(ms_key);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_symmetric_and_spread),
	    cmocka_unit_test(test_pick_local_port),
	    cmocka_unit_test(test_toeplitz_verification_suite),
	    cmocka_unit_test(test_symmetric_key),
	    cmocka_unit_test(test_reta_mapping),
	    cmocka_unit_test(test_pick_local_port_rss),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
