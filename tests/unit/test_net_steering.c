/*
 * test_net_steering.c: software RSS.  A flow's owner is the same seen from
 * either end (so a segment and its answer meet on one worker), flows spread
 * over the workers, and an active open finds a local port whose flow lands on
 * the opening worker.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <rte_byteorder.h>

#include "dataplane/dp.h"

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

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_symmetric_and_spread),
	    cmocka_unit_test(test_pick_local_port),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
