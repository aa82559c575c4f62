/*
 * test_screen.c: the pieces of connection screening that need no network:
 * the postscreen site syntax and its answer filters (core/screen_site.h),
 * the names looked up (RFC 5782) and a worker's verdict cache
 * (dataplane/screen_cache.h: IPv6 per /64, TTLs, bounded sets).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "core/pa.h"
#include "core/screen_site.h"
#include "dataplane/screen_cache.h"

static bool
matches(const struct screen_site *s, const char *ip)
{
	uint8_t a[4];

	assert_int_equal(inet_pton(AF_INET, ip, a), 1);
	return screen_site_match(s, a);
}

static void
test_site_plain(void **state)
{
	struct screen_site s[SCREEN_SITES_MAX];
	char err[256];
	unsigned n;

	(void)state;
	assert_int_equal(
	    screen_sites_parse("Zen.Example. , b.example*3", false, s, &n, err, sizeof(err)),
	    PA_OK);
	assert_int_equal(n, 2);
	assert_string_equal(s[0].domain, "zen.example");
	assert_int_equal(s[0].weight, 1);
	assert_false(s[0].has_filter);
	assert_true(matches(&s[0], "127.0.0.2"));
	assert_true(matches(&s[0], "10.1.2.3")); /* no filter: any A record lists */
	assert_string_equal(s[1].domain, "b.example");
	assert_int_equal(s[1].weight, 3);
	/* empty lists are no lists */
	assert_int_equal(screen_sites_parse("", false, s, &n, err, sizeof(err)), PA_OK);
	assert_int_equal(n, 0);
	assert_int_equal(screen_sites_parse(" , ", false, s, &n, err, sizeof(err)), PA_OK);
	assert_int_equal(n, 0);
}

static void
test_site_filter(void **state)
{
	struct screen_site s[SCREEN_SITES_MAX];
	char err[256];
	unsigned n;

	(void)state;
	assert_int_equal(
	    screen_sites_parse("zen.example=127.0.0.[2..11]*3", false, s, &n, err, sizeof(err)),
	    PA_OK);
	assert_int_equal(n, 1);
	assert_int_equal(s[0].weight, 3);
	assert_true(s[0].has_filter);
	assert_false(matches(&s[0], "127.0.0.1"));
	assert_true(matches(&s[0], "127.0.0.2"));
	assert_true(matches(&s[0], "127.0.0.11"));
	assert_false(matches(&s[0], "127.0.0.12"));
	assert_false(matches(&s[0], "127.0.1.2"));
	assert_false(matches(&s[0], "128.0.0.2"));

	assert_int_equal(screen_sites_parse("x.example=127.[0;2].[0..255].[4;10..12;255]", false, s,
	                                    &n, err, sizeof(err)),
	                 PA_OK);
	assert_true(matches(&s[0], "127.0.9.4"));
	assert_true(matches(&s[0], "127.2.200.11"));
	assert_true(matches(&s[0], "127.2.0.255"));
	assert_false(matches(&s[0], "127.1.0.4"));
	assert_false(matches(&s[0], "127.0.0.5"));
	assert_false(matches(&s[0], "127.0.0.13"));

	/* DNSWL: negative weights, -1 by default */
	assert_int_equal(screen_sites_parse("list.dnswl.example=127.0.[0..255].[1..3]*-5 w.example",
	                                    true, s, &n, err, sizeof(err)),
	                 PA_OK);
	assert_int_equal(n, 2);
	assert_int_equal(s[0].weight, -5);
	assert_true(matches(&s[0], "127.0.15.2"));
	assert_false(matches(&s[0], "127.0.15.0"));
	assert_int_equal(s[1].weight, -1);
}

static void
expect_error(const char *list, bool allow, const char *part)
{
	struct screen_site s[SCREEN_SITES_MAX];
	char err[256] = "";
	unsigned n;

	if (screen_sites_parse(list, allow, s, &n, err, sizeof(err)) != PA_ERROR)
		fail_msg("'%s' was accepted", list);
	if (strstr(err, part) == NULL)
		fail_msg("'%s': error '%s' does not say '%s'", list, err, part);
}

static void
test_site_errors(void **state)
{
	char many[1024] = "";

	(void)state;
	expect_error("zen", false, "not a DNS list's domain");
	expect_error("=127.0.0.2", false, "not a DNS list's domain");
	expect_error("a..example", false, "not a DNS list's domain");
	expect_error("bad_label.example", false, "not a DNS list's domain");
	expect_error("zen.example=127.0.0", false, "four octet patterns");
	expect_error("zen.example=127.0.0.256", false, "four octet patterns");
	expect_error("zen.example=127.0.0.[5..2]", false, "four octet patterns");
	expect_error("zen.example=127.0.0.[2..11", false, "four octet patterns");
	expect_error("zen.example=127.0.0.[2,3]", false, "four octet patterns");
	expect_error("zen.example=127.0.0.2.1", false, "trailing");
	expect_error("zen.example*0", false, "weight is 1..");
	expect_error("zen.example*-2", false, "weight is 1..");
	expect_error("zen.example*1001", false, "weight is 1..");
	expect_error("zen.example*x", false, "not a weight");
	expect_error("zen.example*", false, "not a weight");
	expect_error("wl.example*2", true, "weight is -1..");
	expect_error("zen.example zen.example=127.0.0.2", false, "named twice");
	for (int i = 0; i <= SCREEN_SITES_MAX; i++) {
		char one[32];

		snprintf(one, sizeof(one), "l%d.example,", i);
		strcat(many, one);
	}
	expect_error(many, false, "more than 16");
	/* a domain that leaves no room for a reversed IPv6 address */
	memset(many, 0, sizeof(many));
	for (int i = 0; i < 19; i++)
		strcat(many, "abcdefghi.");
	strcat(many, "example");
	expect_error(many, false, "longer than 188");
}

static void
test_query_names(void **state)
{
	char name[SCREEN_QNAME_MAX + 1];
	uint8_t a4[4], a6[16];

	(void)state;
	inet_pton(AF_INET, "192.0.2.99", a4);
	assert_int_equal(screen_query_name(AF_INET, a4, "zen.example", name, sizeof(name)),
	                 (int)strlen("99.2.0.192.zen.example"));
	assert_string_equal(name, "99.2.0.192.zen.example");
	/* RFC 5782 2.4's example */
	inet_pton(AF_INET6, "2001:db8:1:2:3:4:567:89ab", a6);
	assert_true(screen_query_name(AF_INET6, a6, "ugly.example", name, sizeof(name)) > 0);
	assert_string_equal(name, "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2."
	                          "ugly.example");
	assert_int_equal(screen_query_name(AF_INET6, a6, "ugly.example", name, 40), PA_ERROR);
	assert_int_equal(screen_query_name(AF_INET, a4, "zen.example", name, 10), PA_ERROR);
}

static void
test_verdict_cache(void **state)
{
	struct screen_cache *c = screen_cache_new(64);
	struct screen_verdict v = {.dnsbl = 3, .dnswl = -1, .site = 2}, out;
	struct screen_cache_stats st;
	uint8_t a4[4], b4[4], a6[16], b6[16], c6[16];

	(void)state;
	assert_non_null(c);
	inet_pton(AF_INET, "192.0.2.1", a4);
	inet_pton(AF_INET, "192.0.2.2", b4);
	inet_pton(AF_INET6, "2001:db8:1:2::1", a6);
	inet_pton(AF_INET6, "2001:db8:1:2:ffff::9", b6); /* same /64 */
	inet_pton(AF_INET6, "2001:db8:1:3::1", c6);      /* another /64 */
	screen_cache_put(c, AF_INET, a4, &v, 60, 1000);
	assert_true(screen_cache_get(c, AF_INET, a4, 1000, &out));
	assert_int_equal(out.dnsbl, 3);
	assert_int_equal(out.dnswl, -1);
	assert_int_equal(out.site, 2);
	assert_false(screen_cache_get(c, AF_INET, b4, 1000, &out));  /* IPv4: per address */
	assert_false(screen_cache_get(c, AF_INET, a4, 61000, &out)); /* its TTL is over */
	assert_true(screen_cache_get(c, AF_INET, a4, 60999, &out));
	screen_cache_put(c, AF_INET6, a6, &v, 60, 1000);
	assert_true(screen_cache_get(c, AF_INET6, b6, 2000, &out));
	assert_false(screen_cache_get(c, AF_INET6, c6, 2000, &out));
	/* cleared (a reload): nothing is known any more */
	screen_cache_clear(c);
	assert_false(screen_cache_get(c, AF_INET6, b6, 2000, &out));
	screen_cache_put(c, AF_INET6, a6, &v, 60, 1000);
	/* TTL 0: not kept */
	screen_cache_put(c, AF_INET, b4, &v, 0, 1000);
	assert_false(screen_cache_get(c, AF_INET, b4, 1000, &out));
	/* more clients than entries: bounded, the evictions counted, the newest kept */
	for (unsigned i = 0; i < 1000; i++) {
		uint8_t x[4] = {10, 0, (uint8_t)(i >> 8), (uint8_t)i};

		screen_cache_put(c, AF_INET, x, &v, 60, 3000 + i);
		assert_true(screen_cache_get(c, AF_INET, x, 3000 + i, &out));
	}
	screen_cache_stats(c, &st);
	assert_true(st.evictions >= 1000 - 64);
	assert_true(st.evictions <= 1000);
	screen_cache_free(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_site_plain),    cmocka_unit_test(test_site_filter),
	    cmocka_unit_test(test_site_errors),   cmocka_unit_test(test_query_names),
	    cmocka_unit_test(test_verdict_cache),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
