/*
 * test_route_map.c: the route-map parser accepts the documented format,
 * refuses bad input as a whole naming the line, and lookups follow
 * address > domain > shard > default.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/pa.h"
#include "handoff/route_map.h"

static struct route_map *
parse_ok(const char *text, unsigned shards, const char *def)
{
	struct route_map *m = NULL;
	char err[512] = "";

	if (route_map_parse(text, strlen(text), shards, def, &m, err, sizeof(err)) != PA_OK)
		fail_msg("refused: %s", err);
	return m;
}

static void
expect_error(const char *text, unsigned shards, const char *needle)
{
	struct route_map *m = NULL;
	char err[512] = "";

	assert_int_equal(route_map_parse(text, strlen(text), shards, NULL, &m, err, sizeof(err)),
	                 PA_ERROR);
	assert_null(m);
	if (strstr(err, needle) == NULL)
		fail_msg("error '%s' does not contain '%s'", err, needle);
}

static void
test_lookup_order(void **state)
{
	const char *text = "# a comment\n"
	                   "\n"
	                   "shards 0-3   smtp:10.0.0.1:25,10.0.0.2:25\n"
	                   "shard 4 lmtp:10.0.0.3:24   # trailing comment\n"
	                   "domain Example.COM lmtp:10.0.0.4:24\r\n"
	                   "address Boss@example.com smtp:[::1]:2525\n";
	struct route_map *m = parse_ok(text, 8, "smtp:127.0.0.1:10025");
	const struct route_dest *d;

	(void)state;
	d = route_map_lookup(m, 2, "x@other.org");
	assert_non_null(d);
	assert_int_equal(d->proto, ROUTE_SMTP);
	assert_int_equal(d->nhosts, 2);
	assert_string_equal(d->hosts[0].name, "10.0.0.1:25");
	d = route_map_lookup(m, 4, "x@other.org");
	assert_int_equal(d->proto, ROUTE_LMTP);
	d = route_map_lookup(m, 2, "someone@EXAMPLE.com");
	assert_string_equal(d->hosts[0].name, "10.0.0.4:24");
	d = route_map_lookup(m, 2, "boss@Example.Com");
	assert_string_equal(d->hosts[0].name, "[::1]:2525");
	d = route_map_lookup(m, 7, "x@other.org");
	assert_string_equal(d->hosts[0].name, "127.0.0.1:10025");
	assert_true(route_map_routes_anything(m));
	route_map_free(m);
}

/*
 * Recipients are stored with A-label domains (docs/spool-format.md): a line
 * may name the domain in either form and matches the stored one.
 */
static void
test_unicode_domains(void **state)
{
	struct route_map *m = parse_ok("domain m\xc3\xbcller.example lmtp:10.0.0.4:24\n"
	                               "address Boss@B\xc3\x9c"
	                               "CHER.example smtp:[::1]:2525\n"
	                               "domain xn--caf-dma.example smtp:10.0.0.5:25\n",
	                               4, NULL);

	(void)state;
	assert_string_equal(route_map_lookup(m, 0, "x@xn--mller-kva.example")->hosts[0].name,
	                    "10.0.0.4:24");
	assert_string_equal(route_map_lookup(m, 0, "boss@xn--bcher-kva.example")->hosts[0].name,
	                    "[::1]:2525");
	assert_null(route_map_lookup(m, 0, "other@xn--bcher-kva.example"));
	assert_string_equal(route_map_lookup(m, 0, "x@XN--CAF-DMA.example")->hosts[0].name,
	                    "10.0.0.5:25");
	route_map_free(m);
	/* the same domain in both spellings is one domain named twice */
	expect_error("domain xn--mller-kva.example smtp:10.0.0.1:25\n"
	             "domain M\xc3\x9cLLER.example smtp:10.0.0.2:25\n",
	             4, "line 2: domain xn--mller-kva.example is already routed on line 1");
	expect_error("domain \xe2\x98\x83.example smtp:10.0.0.1:25\n", 4, "line 1: ");
	expect_error("address a@\xe2\x98\x83.example smtp:10.0.0.1:25\n", 4, "line 1: ");
}

static void
test_no_default_means_unrouted(void **state)
{
	struct route_map *m = parse_ok("shards 0-1 smtp:10.0.0.1:25\n", 4, "");

	(void)state;
	assert_non_null(route_map_lookup(m, 1, "a@b.c"));
	assert_null(route_map_lookup(m, 2, "a@b.c"));
	route_map_free(m);
	m = parse_ok("", 4, NULL);
	assert_false(route_map_routes_anything(m));
	assert_null(route_map_lookup(m, 0, "a@b.c"));
	route_map_free(m);
}

static void
test_priorities_sort_hosts(void **state)
{
	static const char prio[] = "smtp:10.0.0.1:25/20,10.0.0.2:25/10,10.0.0.3:25/10";
	struct route_dest d;
	char err[256];

	(void)state;
	assert_int_equal(route_dest_parse(prio, strlen(prio), &d, err, sizeof(err)), PA_OK);
	assert_int_equal(d.nhosts, 3);
	assert_string_equal(d.hosts[0].name, "10.0.0.2:25");
	assert_string_equal(d.hosts[1].name, "10.0.0.3:25");
	assert_string_equal(d.hosts[2].name, "10.0.0.1:25");
	assert_int_equal(d.hosts[0].priority, 10);
}

static void
test_errors_name_the_line(void **state)
{
	(void)state;
	expect_error("shards 0-1 smtp:10.0.0.1:25\nshards 1-2 smtp:10.0.0.1:25\n", 4,
	             "line 2: shard 1 is already routed on line 1");
	expect_error("shards 0-9 smtp:10.0.0.1:25\n", 4, "line 1");
	expect_error("\n\nshards 3-1 smtp:10.0.0.1:25\n", 4, "line 3");
	expect_error("shards 0 ftp:10.0.0.1:25\n", 4, "line 1: destination");
	expect_error("shards 0 smtp:mx.example.com:25\n", 4, "numeric");
	expect_error("shards 0 smtp:10.0.0.1\n", 4, "line 1");
	expect_error("shards 0 smtp:10.0.0.1:0\n", 4, "port");
	expect_error("shards 0 smtp:10.0.0.1:65536\n", 4, "port");
	expect_error("shards 0 smtp:10.0.0.1:25/70000\n", 4, "priority");
	expect_error("domain a.b smtp:10.0.0.1:25\ndomain A.B smtp:10.0.0.2:25\n", 4,
	             "line 2: domain a.b is already routed on line 1");
	expect_error("address nobody smtp:10.0.0.1:25\n", 4, "not an address");
	expect_error("route 0 smtp:10.0.0.1:25\n", 4, "unknown keyword");
	expect_error("shards 0 smtp:10.0.0.1:25 extra\n", 4, "line 1");
	expect_error("shards 0 smtp:10.0.0.1:25,,10.0.0.2:25\n", 4, "line 1");
	expect_error("shards 0 smtp:1.1.1.1:1,1.1.1.1:2,1.1.1.1:3,1.1.1.1:4,1.1.1.1:5,1.1.1.1:6,"
	             "1.1.1.1:7,1.1.1.1:8,1.1.1.1:9\n",
	             4, "more than 8 hosts");
	expect_error("shards 18446744073709551616 smtp:10.0.0.1:25\n", 4, "line 1");
}

static void
test_hostile_bytes(void **state)
{
	char text[ROUTE_LINE_MAX + 64];
	struct route_map *m = NULL;
	char err[512];
	static const char nul[] = "shards 0 smtp:10.0.0.1:25\0\n";
	static const char alphabet[] =
	    "shards 0-1234 domainaddress smtp:lmtp:10.0.0.1:25/,[::1]@#\n\t ";

	(void)state;
	memset(text, 'a', sizeof(text));
	assert_int_equal(route_map_parse(text, sizeof(text), 4, NULL, &m, err, sizeof(err)),
	                 PA_ERROR);
	assert_non_null(strstr(err, "line 1: longer than"));
	assert_int_equal(route_map_parse(nul, sizeof(nul) - 1, 4, NULL, &m, err, sizeof(err)),
	                 PA_ERROR);
	assert_non_null(strstr(err, "NUL"));
	/* Random bytes never crash the parser (ASan run checks the rest). */
	srand(7);
	for (int round = 0; round < 2000; round++) {
		size_t len = (size_t)(rand() % 200);

		for (size_t i = 0; i < len; i++)
			text[i] = alphabet[(size_t)rand() % (sizeof(alphabet) - 1)];
		if (route_map_parse(text, len, 8, NULL, &m, err, sizeof(err)) == PA_OK)
			route_map_free(m);
	}
}

static void
test_bad_default_refused(void **state)
{
	struct route_map *m = NULL;
	char err[512];

	(void)state;
	assert_int_equal(route_map_parse("", 0, 4, "smtp:localhost:25", &m, err, sizeof(err)),
	                 PA_ERROR);
	assert_non_null(strstr(err, "relay.default"));
}

static void
test_store_route_template(void **state)
{
	static const char *const bad[] = {
	    "lmtp:127.0.0.1:24", /* no %s */
	    "lmtp:%s:24,%s:25",  /* two */
	    "lmtp:%s:%d",        /* another % */
	    "lmtp:%s",           /* no port once substituted */
	    "smtp:%s:0",         /* port out of range */
	    "http:%s:24",        /* not smtp: or lmtp: */
	    "lmtp:%x:24",        /* not %s */
	    "lmtp:%s:24%",       /* a trailing % */
	};
	struct route_map *m = NULL;
	char err[512];

	(void)state;
	assert_int_equal(route_store_template_check("", err, sizeof(err)), PA_OK);
	assert_int_equal(route_store_template_check(NULL, err, sizeof(err)), PA_OK);
	assert_int_equal(route_store_template_check("lmtp:%s:24", err, sizeof(err)), PA_OK);
	assert_int_equal(route_store_template_check("smtp:%s:25,10.0.0.9:25/10", err, sizeof(err)),
	                 PA_OK);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(route_store_template_check(bad[i], err, sizeof(err)), PA_ERROR);
		assert_non_null(strstr(err, "relay.store_route"));
	}
	/* A map with only a store route routes something; a bad one is not attached. */
	assert_int_equal(route_map_parse("", 0, 4, NULL, &m, err, sizeof(err)), PA_OK);
	assert_false(route_map_routes_anything(m));
	assert_int_equal(route_map_set_store_route(m, "lmtp:%s", err, sizeof(err)), PA_ERROR);
	assert_false(route_map_has_store_route(m));
	assert_int_equal(route_map_set_store_route(m, "lmtp:%s:24", err, sizeof(err)), PA_OK);
	assert_true(route_map_routes_anything(m));
	route_map_free(m);
}

static void
test_store_dest(void **state)
{
	/* Directory values are untrusted: each of these is refused, not routed. */
	static const char *const bad[] = {
	    "",
	    "10.0.0.1:25",       /* a port smuggled in */
	    "10.0.0.1 ",         /* a space */
	    "10.0.0.1\r\n",      /* control characters */
	    "10.0.0.1,10.0.0.2", /* a second host */
	    "10.0.0.1/5",        /* a priority */
	    "2001:db8::1",       /* IPv6 without brackets */
	    "[2001:db8::1",      /* unclosed */
	    "[2001:db8::g]",     /* not hex */
	    "[]",
	    "999.0.0.1", /* digits and dots, no IPv4 address */
	    "1..2",
	    ".example",
	    "host-",
	    "%s",
	    "0000000000000000000000000000000000000000000000001.2.3.4", /* too long */
	};
	struct route_map *m = NULL;
	struct route_dest d;
	char err[512];

	(void)state;
	assert_int_equal(route_map_parse("domain vip.example lmtp:10.0.9.9:24\n", 36, 4,
	                                 "smtp:10.0.0.5:25", &m, err, sizeof(err)),
	                 PA_OK);
	assert_int_equal(route_map_store_dest(m, "10.0.1.1", &d), ROUTE_STORE_NONE);
	assert_int_equal(route_map_set_store_route(m, "lmtp:%s:24", err, sizeof(err)), PA_OK);
	assert_int_equal(route_map_store_dest(m, "10.0.1.1", &d), ROUTE_STORE_OK);
	assert_string_equal(d.key, "lmtp:10.0.1.1:24/0");
	assert_int_equal(d.proto, ROUTE_LMTP);
	assert_int_equal(route_map_store_dest(m, "[2001:db8::1]", &d), ROUTE_STORE_OK);
	assert_string_equal(d.key, "lmtp:[2001:db8::1]:24/0");
	assert_int_equal(route_map_store_dest(m, "store-1.internal", &d), ROUTE_STORE_NAME);
	assert_int_equal(route_map_store_dest(m, "Store1", &d), ROUTE_STORE_NAME);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(route_map_store_dest(m, bad[i], &d), ROUTE_STORE_BAD);
	/* The override rules are looked up on their own; the shard rule is not one. */
	assert_non_null(route_map_lookup_override(m, "a@VIP.example"));
	assert_string_equal(route_map_lookup_override(m, "a@vip.example")->key,
	                    "lmtp:10.0.9.9:24/0");
	assert_null(route_map_lookup_override(m, "a@other.example"));
	assert_string_equal(route_map_lookup(m, 1, "a@other.example")->key, "smtp:10.0.0.5:25/0");
	route_map_free(m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lookup_order),
	    cmocka_unit_test(test_unicode_domains),
	    cmocka_unit_test(test_no_default_means_unrouted),
	    cmocka_unit_test(test_priorities_sort_hosts),
	    cmocka_unit_test(test_errors_name_the_line),
	    cmocka_unit_test(test_hostile_bytes),
	    cmocka_unit_test(test_bad_default_refused),
	    cmocka_unit_test(test_store_route_template),
	    cmocka_unit_test(test_store_dest),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
