/*
 * test_hostport.c: core/hostport.h, HOST:PORT and [IPv6]:PORT: what is
 * taken, what is refused, the sockaddr made of a numeric host, and a name
 * resolved (localhost, from /etc/hosts) only when asked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "core/hostport.h"
#include "core/pa.h"

static int
parse(const char *s, struct pa_hostport *hp)
{
	char err[128];

	return pa_parse_hostport(s, strlen(s), hp, err, sizeof(err));
}

static void
test_split(void **state)
{
	struct pa_hostport hp;

	(void)state;
	assert_int_equal(parse("192.0.2.1:25", &hp), PA_OK);
	assert_string_equal(hp.host, "192.0.2.1");
	assert_int_equal(hp.port, 25);
	assert_false(hp.bracketed);
	assert_int_equal(parse("[2001:db8::1]:65535", &hp), PA_OK);
	assert_string_equal(hp.host, "2001:db8::1");
	assert_int_equal(hp.port, 65535);
	assert_true(hp.bracketed);
	assert_int_equal(parse("milter.example:11332", &hp), PA_OK);
	assert_string_equal(hp.host, "milter.example");
	/* only the first len octets count: route maps pass a slice */
	assert_int_equal(pa_parse_hostport("10.0.0.1:25/5", 11, &hp, NULL, 0), PA_OK);
	assert_int_equal(hp.port, 25);
}

static void
test_refused(void **state)
{
	static const char *const bad[] = {
	    "192.0.2.1",    "192.0.2.1:",     ":25",           "192.0.2.1:0", "192.0.2.1:65536",
	    "192.0.2.1:2x", "192.0.2.1:-1",   "[::1:25",       "[]:25",       "[::1]x:25",
	    "::1:99999999", "h:123456789012", "192.0.2.1:+25",
	};
	struct pa_hostport hp;
	char longname[300];

	(void)state;
	for (size_t i = 0; i < pa_array_size(bad); i++)
		if (parse(bad[i], &hp) != PA_ERROR)
			fail_msg("'%s' was taken", bad[i]);
	memset(longname, 'a', sizeof(longname));
	memcpy(longname + sizeof(longname) - 4, ":25", 4);
	assert_int_equal(parse(longname, &hp), PA_ERROR);
}

static void
test_numeric(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len;
	struct pa_hostport hp;
	char err[128];

	(void)state;
	assert_int_equal(parse("192.0.2.1:25", &hp), PA_OK);
	assert_int_equal(pa_hostport_numeric(&hp, &ss, &len, err, sizeof(err)), PA_OK);
	assert_int_equal(ss.ss_family, AF_INET);
	assert_int_equal(len, sizeof(struct sockaddr_in));
	assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 25);
	assert_int_equal(ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr), 0xc0000201);
	assert_int_equal(parse("[2001:db8::1]:587", &hp), PA_OK);
	assert_int_equal(pa_hostport_numeric(&hp, &ss, &len, err, sizeof(err)), PA_OK);
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_int_equal(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), 587);
	/* an IPv6 address needs its brackets, a name is not numeric */
	assert_int_equal(parse("::1:25", &hp), PA_OK);
	assert_int_equal(pa_hostport_numeric(&hp, &ss, &len, err, sizeof(err)), PA_ERROR);
	assert_int_equal(parse("localhost:25", &hp), PA_OK);
	assert_int_equal(pa_hostport_numeric(&hp, &ss, &len, err, sizeof(err)), PA_ERROR);
	assert_non_null(strstr(err, "localhost"));
	assert_int_equal(parse("[192.0.2.1]:25", &hp), PA_OK);
	assert_int_equal(pa_hostport_numeric(&hp, &ss, &len, err, sizeof(err)), PA_ERROR);
}

static void
test_resolve(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len;
	struct pa_hostport hp;
	char err[128];

	(void)state;
	assert_int_equal(parse("localhost:11332", &hp), PA_OK);
	assert_int_equal(pa_hostport_resolve(&hp, &ss, &len, err, sizeof(err)), PA_OK);
	assert_true(ss.ss_family == AF_INET || ss.ss_family == AF_INET6);
	assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 11332);
	/* what is not a name is not looked up: the numeric error */
	assert_int_equal(parse("1.2.3:25", &hp), PA_OK);
	assert_int_equal(pa_hostport_resolve(&hp, &ss, &len, err, sizeof(err)), PA_ERROR);
	assert_non_null(strstr(err, "not a numeric IPv4 address"));
	assert_int_equal(parse("bad_name:25", &hp), PA_OK);
	assert_int_equal(pa_hostport_resolve(&hp, &ss, &len, err, sizeof(err)), PA_ERROR);
	assert_int_equal(parse("10.0.0.1:25", &hp), PA_OK);
	assert_int_equal(pa_hostport_resolve(&hp, &ss, &len, err, sizeof(err)), PA_OK);
	assert_int_equal(ss.ss_family, AF_INET);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_split),
	    cmocka_unit_test(test_refused),
	    cmocka_unit_test(test_numeric),
	    cmocka_unit_test(test_resolve),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
