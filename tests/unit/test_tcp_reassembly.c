/*
 * test_tcp_reassembly.c: out-of-order segments held in their mbufs are
 * trimmed so that no octet is kept twice, come out in order exactly once
 * whatever the arrival order and overlaps, report SACK blocks, carry a FIN
 * that arrived early, and respect the per-connection mbuf cap.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <rte_eal.h>
#include <rte_mbuf.h>

#include "core/pa.h"
#include "dataplane/tcp.h"

#define ISN 0xfffffff0u /* so the stream crosses the 2^32 wrap */

static struct rte_mempool *pool;
static uint8_t stream[4096];

static struct rte_mbuf *
segment(uint32_t off, uint32_t len)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(pool);

	assert_non_null(m);
	memcpy(rte_pktmbuf_append(m, (uint16_t)len), stream + off, len);
	return m;
}

/* Feeds (offset, length) pieces like tcp_input does and returns the in-order octets. */
static size_t
feed(struct tcb *tcb, const uint32_t (*pieces)[2], unsigned n, uint8_t *out, bool fin_last)
{
	size_t got = 0;

	for (unsigned i = 0; i < n; i++) {
		uint32_t seq = ISN + pieces[i][0], len = pieces[i][1];
		struct rte_mbuf *m = segment(pieces[i][0], len);
		bool fin = fin_last && i == n - 1, infin = false;

		if (seq_leq(seq, tcb->rcv_nxt) && seq_gt(seq + len, tcb->rcv_nxt)) {
			rte_pktmbuf_adj(m, (uint16_t)(tcb->rcv_nxt - seq));
			tcb->rcv_nxt = seq + len;
			tcp_rxq_append(tcb, m);
			tcp_reass_pull(tcb, &infin);
		} else if (seq_gt(seq, tcb->rcv_nxt)) {
			tcp_reass_insert(tcb, m, seq, fin, 64);
		} else {
			rte_pktmbuf_free(m);
		}
		(void)infin;
	}
	while (tcb->rxq_head != NULL) {
		struct rte_mbuf *m = tcb->rxq_head;

		memcpy(out + got, rte_pktmbuf_mtod(m, void *), rte_pktmbuf_data_len(m));
		got += rte_pktmbuf_data_len(m);
		tcp_rxq_consume(tcb, rte_pktmbuf_data_len(m));
	}
	/* The queue's counts followed every mbuf taken. */
	assert_null(tcb->rxq_tail);
	assert_int_equal(tcb->rxq_bytes, 0);
	assert_int_equal(tcb->rxq_nbufs, 0);
	return got;
}

static void
fresh(struct tcb *tcb)
{
	memset(tcb, 0, sizeof(*tcb));
	tcb->rcv_nxt = ISN;
}

static void
test_in_order_once(void **state)
{
	static const uint32_t p[][2] = {
	    {100, 50}, {300, 100}, {120, 100}, /* overlaps 100..150 */
	    {0, 10},   {250, 60},  {10, 95},   /* overlaps 0..10, 100..105 */
	    {200, 60}, {390, 10},  {399, 1}};
	struct tcb tcb;
	uint8_t out[4096];
	size_t n;

	(void)state;
	fresh(&tcb);
	n = feed(&tcb, p, pa_array_size(p), out, false);
	assert_int_equal(n, 400);
	assert_memory_equal(out, stream, 400);
	assert_int_equal(tcb.rcv_nxt, ISN + 400);
	assert_null(tcb.ooo_head);
	assert_int_equal(tcb.ooo_nbufs, 0);
}

static void
test_sack_blocks(void **state)
{
	static const uint32_t p[][2] = {{100, 50}, {150, 50}, {300, 10}, {500, 5}, {600, 1}};
	struct tcb tcb;
	uint8_t out[4096];
	uint32_t blocks[4][2];
	unsigned nb;

	(void)state;
	fresh(&tcb);
	assert_int_equal(feed(&tcb, p, pa_array_size(p), out, false), 0);
	nb = tcp_reass_sack(&tcb, blocks, 3);
	assert_int_equal(nb, 3);
	assert_int_equal(blocks[0][0], ISN + 100); /* adjacent segments merge */
	assert_int_equal(blocks[0][1], ISN + 200);
	assert_int_equal(blocks[1][0], ISN + 300);
	assert_int_equal(blocks[2][1], ISN + 505);
	tcp_queues_free(&tcb);
	assert_int_equal(tcb.ooo_nbufs, 0);
}

static void
test_covered_segments_replaced(void **state)
{
	static const uint32_t p[][2] = {{110, 10}, {130, 10}, {100, 60}, {105, 20}};
	struct tcb tcb;
	uint8_t out[4096];

	(void)state;
	fresh(&tcb);
	assert_int_equal(feed(&tcb, p, pa_array_size(p), out, false), 0);
	/* One segment [100,160) holds it all. */
	assert_int_equal(tcb.ooo_nbufs, 1);
	{
		static const uint32_t hole[][2] = {{0, 100}};

		assert_int_equal(feed(&tcb, hole, 1, out, false), 160);
		assert_memory_equal(out, stream, 160);
	}
}

static void
test_early_fin(void **state)
{
	static const uint32_t p[][2] = {{50, 50}};
	struct tcb tcb;
	struct rte_mbuf *m;
	bool fin = false;

	(void)state;
	fresh(&tcb);
	m = segment(50, 50);
	assert_true(tcp_reass_insert(&tcb, m, ISN + 50, true, 64));
	(void)p;
	m = segment(0, 50);
	tcb.rcv_nxt = ISN + 50;
	tcp_rxq_append(&tcb, m);
	tcp_reass_pull(&tcb, &fin);
	assert_true(fin);
	assert_int_equal(tcb.rcv_nxt, ISN + 100);
	tcp_queues_free(&tcb);
}

static void
test_cap(void **state)
{
	struct tcb tcb;

	(void)state;
	fresh(&tcb);
	for (unsigned i = 0; i < 10; i++)
		tcp_reass_insert(&tcb, segment(100 + 20 * i, 10), ISN + 100 + 20 * i, false, 4);
	assert_int_equal(tcb.ooo_nbufs, 4);
	tcp_queues_free(&tcb);
	assert_int_equal(rte_mempool_in_use_count(pool), 0);
}

static int
setup(void **state)
{
	char *argv[] = {"test", "--no-huge",   "--no-pci",       "-m",
	                "64",   "--no-shconf", "--no-telemetry", "--log-level=lib.eal:error",
	                NULL};

	(void)state;
	if (rte_eal_init((int)pa_array_size(argv) - 1, argv) < 0)
		return -1;
	pool = rte_pktmbuf_pool_create("reass", 1023, 0, DP_MBUF_PRIV_SIZE,
	                               RTE_MBUF_DEFAULT_BUF_SIZE, 0);
	for (size_t i = 0; i < sizeof(stream); i++)
		stream[i] = (uint8_t)(i * 7 + (i >> 8));
	return pool == NULL ? -1 : 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_in_order_once),
	    cmocka_unit_test(test_sack_blocks),
	    cmocka_unit_test(test_covered_segments_replaced),
	    cmocka_unit_test(test_early_fin),
	    cmocka_unit_test(test_cap),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
