/*
 * test_mail_date.c: pa_mail_date() against gmtime_r() + strftime() in the C
 * locale, over calendar edges and a deterministic spread of instants.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "core/mail_date.h"

static void
reference(int64_t t, char *out, size_t size)
{
	time_t tt = (time_t)t;
	struct tm tm;
	char head[8], tail[40];

	assert_non_null(gmtime_r(&tt, &tm));
	/* %e pads with a space; the header form has no padding at all. */
	assert_true(strftime(head, sizeof(head), "%a, ", &tm) > 0);
	assert_true(strftime(tail, sizeof(tail), " %b %Y %H:%M:%S +0000", &tm) > 0);
	assert_true((size_t)snprintf(out, size, "%.7s%d%.39s", head, tm.tm_mday, tail) < size);
}

static void
check(int64_t t)
{
	char got[PA_MAIL_DATE_MAX], want[64];
	size_t n = pa_mail_date(t, got);

	reference(t, want, sizeof(want));
	assert_string_equal(got, want);
	assert_int_equal(n, strlen(want));
}

static void
test_calendar_edges(void **state)
{
	static const int64_t edges[] = {
	    0,
	    86399,
	    86400,
	    951782400 /* 2000-02-29 */,
	    951868800,
	    4107542400 /* 2100-03-01 */,
	    4107456000,
	    2147483647,
	    2147483648,
	    1796083200,
	    1111111111,
	    253402300799 /* 9999-12-31 23:59:59 */,
	    68169600 /* 1972-02-29 */,
	    1709164800 /* 2024-02-29 */,
	};

	(void)state;
	for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
		check(edges[i]);
}

static void
test_spread(void **state)
{
	uint64_t x = 88172645463325252ull; /* xorshift64: the same instants every run */

	(void)state;
	for (int i = 0; i < 200000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		check((int64_t)(x % 253402300800ull));
	}
}

static void
test_every_day_of_four_centuries(void **state)
{
	(void)state;
	/* 1970 to 2370: every leap rule (4, 100, 400) and every day boundary. */
	for (int64_t d = 0; d < 146097; d++)
		check(d * 86400 + (d % 86400));
}

static void
test_negative_is_epoch(void **state)
{
	char got[PA_MAIL_DATE_MAX];

	(void)state;
	pa_mail_date(-5, got);
	assert_string_equal(got, "Thu, 1 Jan 1970 00:00:00 +0000");
	pa_mail_date(INT64_MAX, got);
	assert_true(strlen(got) < PA_MAIL_DATE_MAX);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_calendar_edges),
	    cmocka_unit_test(test_spread),
	    cmocka_unit_test(test_every_day_of_four_centuries),
	    cmocka_unit_test(test_negative_is_epoch),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
