/*
 * test_latency_hist.c: the commit-latency histogram's buckets cover every
 * value once, a percentile is within one bucket (at most 25% high, never
 * low), and merging adds up.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/latency_hist.h"

static void
test_buckets_cover_values_in_order(void **state)
{
	unsigned prev = 0;

	(void)state;
	for (uint64_t us = 0; us < (1u << 20); us++) {
		unsigned b = latency_bucket(us);

		assert_true(b >= prev);
		assert_true(b <= prev + 1);
		assert_true(us <= latency_bucket_upper(b));
		if (b > 0)
			assert_true(us > latency_bucket_upper(b - 1));
		prev = b;
	}
	assert_int_equal(latency_bucket(UINT64_MAX), LATENCY_BUCKETS - 1);
}

static void
test_quantiles_within_one_bucket(void **state)
{
	static struct latency_hist h;

	(void)state;
	memset(&h, 0, sizeof(h));
	assert_int_equal(latency_quantile(&h, 0.5), 0);
	for (uint64_t us = 1; us <= 1000; us++)
		latency_record(&h, us);
	assert_int_equal(h.count, 1000);
	assert_int_equal(h.sum_us, 500500);
	{
		uint64_t p50 = latency_quantile(&h, 0.5), p99 = latency_quantile(&h, 0.99);
		uint64_t p999 = latency_quantile(&h, 0.999);

		assert_true(p50 >= 500 && p50 <= 625);
		assert_true(p99 >= 990 && p99 <= 1238);
		assert_true(p999 >= 999 && p999 <= 1249);
		assert_true(latency_quantile(&h, 1.0) >= 1000);
	}
}

static void
test_merge_adds(void **state)
{
	static struct latency_hist a, b, m;

	(void)state;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	memset(&m, 0, sizeof(m));
	for (int i = 0; i < 99; i++)
		latency_record(&a, 100);
	latency_record(&b, 100000);
	latency_merge(&m, &a);
	latency_merge(&m, &b);
	assert_int_equal(m.count, 100);
	assert_int_equal(m.sum_us, 99 * 100 + 100000);
	assert_true(latency_quantile(&m, 0.5) <= 111);
	assert_true(latency_quantile(&m, 0.999) >= 100000);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_buckets_cover_values_in_order),
	    cmocka_unit_test(test_quantiles_within_one_bucket),
	    cmocka_unit_test(test_merge_adds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
