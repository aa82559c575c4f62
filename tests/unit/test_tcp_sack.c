/*
 * test_tcp_sack.c: the sender's SACK scoreboard (dataplane/tcp_sack.c).
 * Blocks are believed only inside (SND.UNA, SND.MAX], overlapping and
 * adjacent ones merge, the lowest ranges are kept when there are too many,
 * a cumulative ACK prunes them, and a retransmission is steered past SACKed
 * octets up to the next SACKed range, across the 2^32 wrap.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "dataplane/tcp.h"

#define UNA 0xfffff000u /* the window crosses the 2^32 wrap */

static void
fresh(struct tcb *tcb)
{
	memset(tcb, 0, sizeof(*tcb));
	tcb->snd_una = UNA;
	tcb->snd_max = UNA + 20000;
}

static void
test_merge_and_order(void **state)
{
	struct tcb tcb;
	const uint32_t b1[][2] = {{UNA + 5000, UNA + 6000}, {UNA + 1000, UNA + 2000}};
	const uint32_t b2[][2] = {{UNA + 2000, UNA + 3000}, {UNA + 5500, UNA + 7000}};

	(void)state;
	fresh(&tcb);
	tcp_sack_update(&tcb, UNA, b1, 2);
	assert_int_equal(tcb.nsacked, 2);
	assert_int_equal(tcb.sacked[0][0], UNA + 1000); /* sorted */
	assert_int_equal(tcb.sacked[1][0], UNA + 5000);
	tcp_sack_update(&tcb, UNA, b2, 2);
	/* Adjacent [1000,2000)+[2000,3000) and overlapping [5000,6000)+[5500,7000) merge. */
	assert_int_equal(tcb.nsacked, 2);
	assert_int_equal(tcb.sacked[0][0], UNA + 1000);
	assert_int_equal(tcb.sacked[0][1], UNA + 3000);
	assert_int_equal(tcb.sacked[1][0], UNA + 5000);
	assert_int_equal(tcb.sacked[1][1], UNA + 7000);
	assert_int_equal(tcp_sack_high(&tcb), UNA + 7000);
}

static void
test_only_news_believed(void **state)
{
	struct tcb tcb;
	const uint32_t bad[][2] = {
	    {UNA - 3000, UNA - 1000},   /* D-SACK (RFC 2883) below SND.UNA */
	    {UNA + 19000, UNA + 21000}, /* beyond SND.MAX */
	    {UNA + 4000, UNA + 4000},   /* empty */
	    {UNA + 9000, UNA + 8000},   /* backwards */
	};
	const uint32_t straddle[][2] = {{UNA - 500, UNA + 800}};

	(void)state;
	fresh(&tcb);
	tcp_sack_update(&tcb, UNA, bad, 4);
	assert_int_equal(tcb.nsacked, 0);
	assert_int_equal(tcp_sack_high(&tcb), UNA);
	/* A block reaching below SND.UNA counts from SND.UNA. */
	tcp_sack_update(&tcb, UNA, straddle, 1);
	assert_int_equal(tcb.nsacked, 1);
	assert_int_equal(tcb.sacked[0][0], UNA);
	assert_int_equal(tcb.sacked[0][1], UNA + 800);
}

static void
test_keeps_lowest_and_prunes(void **state)
{
	struct tcb tcb;
	uint32_t b[6][2];

	(void)state;
	fresh(&tcb);
	for (unsigned i = 0; i < 6; i++) {
		b[i][0] = UNA + 2000 * (6 - i);
		b[i][1] = b[i][0] + 1000;
	}
	tcp_sack_update(&tcb, UNA, (const uint32_t(*)[2])b, 6);
	assert_int_equal(tcb.nsacked, TCP_SACK_SCORE);
	assert_int_equal(tcb.sacked[0][0], UNA + 2000);
	assert_int_equal(tcb.sacked[TCP_SACK_SCORE - 1][0], UNA + 2000 * TCP_SACK_SCORE);
	/* A cumulative ACK to UNA+4500 drops [2000,3000) and trims [4000,5000). */
	tcb.snd_una = UNA + 4500;
	tcp_sack_update(&tcb, UNA + 4500, NULL, 0);
	assert_int_equal(tcb.nsacked, TCP_SACK_SCORE - 1);
	assert_int_equal(tcb.sacked[0][0], UNA + 4500);
	assert_int_equal(tcb.sacked[0][1], UNA + 5000);
}

static void
test_next_hole(void **state)
{
	struct tcb tcb;
	const uint32_t b[][2] = {
	    {UNA + 1000, UNA + 2000}, {UNA + 2000, UNA + 2500}, {UNA + 4000, UNA + 5000}};
	uint32_t lim, seq;

	(void)state;
	fresh(&tcb);
	tcp_sack_update(&tcb, UNA, b, 3);
	/* In a hole: stays, limited by the next SACKed range. */
	seq = tcp_sack_next(&tcb, UNA, &lim);
	assert_int_equal(seq, UNA);
	assert_int_equal(lim, UNA + 1000);
	/* Inside SACKed data: moves past it (merged ranges in one step). */
	seq = tcp_sack_next(&tcb, UNA + 1200, &lim);
	assert_int_equal(seq, UNA + 2500);
	assert_int_equal(lim, UNA + 4000);
	/* Past the last range: limited by SND.MAX only. */
	seq = tcp_sack_next(&tcb, UNA + 4500, &lim);
	assert_int_equal(seq, UNA + 5000);
	assert_int_equal(lim, UNA + 20000);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_merge_and_order),
	    cmocka_unit_test(test_only_news_believed),
	    cmocka_unit_test(test_keeps_lowest_and_prunes),
	    cmocka_unit_test(test_next_hole),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
