/*
 * test_tcp_seq.c: sequence arithmetic across the 2^32 wrap, the segment
 * acceptability table of RFC 9293 3.10.7.4, and RFC 5961's RST and ACK checks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "dataplane/tcp_seq.h"

static void
test_wraparound(void **state)
{
	(void)state;
	assert_true(seq_lt(0xfffffff0u, 0x10u));
	assert_true(seq_gt(0x10u, 0xfffffff0u));
	assert_true(seq_leq(5, 5) && seq_geq(5, 5));
	assert_false(seq_lt(5, 5));
	assert_true(seq_in(0xffffffffu, 0xfffffff0u, 0x10u));
	assert_true(seq_in(0x0u, 0xfffffff0u, 0x10u));
	assert_false(seq_in(0x10u, 0xfffffff0u, 0x10u));
	assert_int_equal(seq_max(0xfffffff0u, 0x10u), 0x10u);
	assert_int_equal(seq_min(0xfffffff0u, 0x10u), 0xfffffff0u);
}

static void
test_acceptability_table(void **state)
{
	(void)state;
	/* length 0, window 0: only exactly RCV.NXT */
	assert_true(tcp_seq_acceptable(100, 0, 100, 0));
	assert_false(tcp_seq_acceptable(101, 0, 100, 0));
	/* length 0, window > 0 */
	assert_true(tcp_seq_acceptable(100, 0, 100, 10));
	assert_true(tcp_seq_acceptable(109, 0, 100, 10));
	assert_false(tcp_seq_acceptable(110, 0, 100, 10));
	assert_false(tcp_seq_acceptable(99, 0, 100, 10));
	/* length > 0, window 0: never */
	assert_false(tcp_seq_acceptable(100, 5, 100, 0));
	/* length > 0, window > 0: either end inside */
	assert_true(tcp_seq_acceptable(95, 10, 100, 10));  /* old start, new end */
	assert_true(tcp_seq_acceptable(105, 10, 100, 10)); /* start inside */
	assert_false(tcp_seq_acceptable(90, 10, 100, 10)); /* entirely old */
	assert_false(tcp_seq_acceptable(110, 1, 100, 10)); /* entirely beyond */
	/* across the wrap */
	assert_true(tcp_seq_acceptable(0xfffffffeu, 4, 0xfffffffeu, 100));
	assert_true(tcp_seq_acceptable(2, 4, 0xfffffffeu, 100));
}

static void
test_rst_rfc5961(void **state)
{
	(void)state;
	assert_int_equal(tcp_rst_check(1000, 1000, 500), TCP_RST_ACCEPT);
	assert_int_equal(tcp_rst_check(1001, 1000, 500), TCP_RST_CHALLENGE);
	assert_int_equal(tcp_rst_check(1499, 1000, 500), TCP_RST_CHALLENGE);
	assert_int_equal(tcp_rst_check(1500, 1000, 500), TCP_RST_DROP);
	assert_int_equal(tcp_rst_check(999, 1000, 500), TCP_RST_DROP);
	assert_int_equal(tcp_rst_check(1001, 1000, 0), TCP_RST_DROP);
	assert_int_equal(tcp_rst_check(1000, 1000, 0), TCP_RST_ACCEPT);
	/* across the wrap */
	assert_int_equal(tcp_rst_check(5, 0xfffffff0u, 100), TCP_RST_CHALLENGE);
}

static void
test_ack_rfc5961(void **state)
{
	(void)state;
	/* SND.UNA 1000, SND.NXT 2000, MAX.SND.WND 500 */
	assert_int_equal(tcp_ack_check(1500, 1000, 2000, 500), TCP_ACK_OK);
	assert_int_equal(tcp_ack_check(1000, 1000, 2000, 500), TCP_ACK_OK);
	assert_int_equal(tcp_ack_check(2000, 1000, 2000, 500), TCP_ACK_OK);
	assert_int_equal(tcp_ack_check(2001, 1000, 2000, 500), TCP_ACK_CHALLENGE);
	assert_int_equal(tcp_ack_check(600, 1000, 2000, 500), TCP_ACK_OLD);
	assert_int_equal(tcp_ack_check(500, 1000, 2000, 500), TCP_ACK_OLD);
	assert_int_equal(tcp_ack_check(499, 1000, 2000, 500), TCP_ACK_CHALLENGE);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_wraparound),
	    cmocka_unit_test(test_acceptability_table),
	    cmocka_unit_test(test_rst_rfc5961),
	    cmocka_unit_test(test_ack_rfc5961),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
