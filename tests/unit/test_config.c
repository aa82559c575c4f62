/*
 * test_config.c: the configuration loader: defaults, the INI file through
 * rte_cfgfile, -o overrides, errors that name the key, and that
 * docs/configuration.md documents every key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "core/config.h"
#include "core/domain.h"
#include "core/pa.h"

static char *
write_temp(const char *content)
{
	static char path[64];
	int fd;

	snprintf(path, sizeof(path), "/tmp/pa-config-test.XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
	close(fd);
	return path;
}

static void
test_defaults(void **state)
{
	struct pa_config c;
	char err[CONFIG_ERR_MAX];

	(void)state;
	assert_int_equal(config_load(&c, NULL, NULL, 0, err, sizeof(err)), PA_OK);
	assert_int_equal(c.backend, PA_BACKEND_KERNEL);
	assert_string_equal(c.listen, "127.0.0.1:2525");
	assert_int_equal(((struct sockaddr_in *)&c.listen_addr)->sin_port, htons(2525));
	assert_int_equal(c.workers, 1);
	assert_int_equal(c.spool_shards, 4);
	assert_int_equal(c.max_message_size, 10485760);
	assert_int_equal(c.max_recipients, 100);
	assert_int_equal(c.bare_lf, SMTP_BARE_LF_REJECT);
	assert_int_equal(c.command_timeout_s, 300);
	assert_true(c.hostname[0] != '\0');
	assert_true(config_domain_served(&c, "localhost"));
	assert_false(config_domain_served(&c, "example.com"));
	config_free(&c);
}

static void
test_file_and_overrides(void **state)
{
	const char *path = write_temp("# a comment\n"
				      "listen = 127.0.0.1:30025\n"
				      "hostname = mx.example.net\n"
				      "domains = Example.COM, example.org\n"
				      "[spool]\n"
				      "dir = /tmp/spool-x\n"
				      "shards = 8\n"
				      "[smtp]\n"
				      "max_recipients = 7\n"
				      "bare_lf = normalize\n");
	char o1[] = "spool.shards=16", o2[] = "listen=[::1]:2626";
	struct config_override ov[2];
	struct pa_config c;
	char err[CONFIG_ERR_MAX];

	(void)state;
	assert_int_equal(config_parse_override(o1, &ov[0]), PA_OK);
	assert_int_equal(config_parse_override(o2, &ov[1]), PA_OK);
	assert_int_equal(config_load(&c, path, ov, 2, err, sizeof(err)), PA_OK);
	assert_string_equal(c.hostname, "mx.example.net");
	assert_string_equal(c.spool_dir, "/tmp/spool-x");
	assert_int_equal(c.spool_shards, 16); /* the override wins over the file */
	assert_int_equal(c.max_recipients, 7);
	assert_int_equal(c.bare_lf, SMTP_BARE_LF_NORMALIZE);
	assert_int_equal(c.listen_addr.ss_family, AF_INET6);
	assert_int_equal(c.ndomains, 2);
	assert_true(config_domain_served(&c, "EXAMPLE.com"));
	assert_true(config_domain_served(&c, "example.org"));
	assert_false(config_domain_served(&c, "example.net"));
	assert_false(config_domain_served(&c, "sub.example.com"));
	config_free(&c);
	unlink(path);
}

static void
expect_error(const char *file_content, const char *override, const char *key)
{
	struct config_override ov;
	struct pa_config c;
	char err[CONFIG_ERR_MAX] = "";
	char copy[256];
	const char *path = file_content ? write_temp(file_content) : NULL;
	size_t nov = 0;

	if (override != NULL) {
		snprintf(copy, sizeof(copy), "%s", override);
		assert_int_equal(config_parse_override(copy, &ov), PA_OK);
		nov = 1;
	}
	assert_int_equal(config_load(&c, path, &ov, nov, err, sizeof(err)), PA_ERROR);
	if (strstr(err, key) == NULL)
		fail_msg("error '%s' does not name '%s'", err, key);
	if (path)
		unlink(path);
}

static void
test_errors_name_the_key(void **state)
{
	(void)state;
	expect_error("bogus = 1\n", NULL, "bogus");
	expect_error("[spool]\nshardz = 3\n", NULL, "spool.shardz");
	expect_error(NULL, "no.such=1", "no.such");
	expect_error(NULL, "spool.shards=0", "spool.shards");
	expect_error(NULL, "spool.shards=abc", "spool.shards");
	expect_error(NULL, "spool.shards=-1", "spool.shards");
	expect_error(NULL, "listen=garbage", "listen");
	expect_error(NULL, "listen=127.0.0.1:99999", "listen");
	expect_error(NULL, "listen=300.0.0.1:25", "listen");
	expect_error(NULL, "backend=vpp", "backend");
	expect_error(NULL, "smtp.bare_lf=maybe", "smtp.bare_lf");
	expect_error(NULL, "domains=exa mple..com", "domains");
	expect_error(NULL, "workers=0", "workers");
	expect_error(NULL, "spool.ring_size=1000", "spool.ring_size");
	expect_error(NULL, "log.level=loud", "log.level");
	/* IDNA2008: a disallowed code point, an A-label that does not decode */
	expect_error(NULL, "domains=\xe2\x98\x83.example", "domains");
	expect_error(NULL, "domains=xn--garbage.example", "domains");
	expect_error(NULL, "domains=-a.example", "domains");
	expect_error(NULL, "postmaster=nobody", "postmaster");
	expect_error(NULL, "postmaster=a..b@example.com", "postmaster");
	expect_error(NULL, "postmaster=pm@exa_mple.com", "postmaster");
}

/* canonical: in, or NULL when in must be refused */
static void
expect_canonical(const char *in, unsigned flags, const char *canonical)
{
	char out[PA_DOMAIN_MAX + 1];
	int n = pa_domain_canonical(in, strlen(in), out, flags);

	if (canonical == NULL) {
		if (n != PA_ERROR)
			fail_msg("'%s' gave '%s', expected a refusal", in, out);
		return;
	}
	if (n < 0)
		fail_msg("'%s' refused, expected '%s'", in, canonical);
	assert_string_equal(out, canonical);
	assert_int_equal(n, (int)strlen(canonical));
}

static void
test_domain_canonical(void **state)
{
	char label63[64], label64[65], long_name[260];

	(void)state;
	expect_canonical("Example.COM", 0, "example.com");
	expect_canonical("m\xc3\xbcller.example", 0, "xn--mller-kva.example");
	expect_canonical("M\xc3\x9cLLER.Example", 0,
	                 "xn--mller-kva.example"); /* UTS #46 folds case */
	expect_canonical("XN--MLLER-KVA.example", PA_DOMAIN_CHECK_ALABELS, "xn--mller-kva.example");
	expect_canonical("fa\xc3\x9f.de", 0, "xn--fa-hia.de"); /* IDNA2008: not "fass.de" */
	expect_canonical("a\xcc\x88.de", 0, "xn--4ca.de");     /* NFC: a + combining diaeresis */
	/* ASCII is only folded unless the A-labels are to be checked */
	expect_canonical("xn--garbage.example", 0, "xn--garbage.example");
	expect_canonical("xn--garbage.example", PA_DOMAIN_CHECK_ALABELS, NULL);
	expect_canonical("", 0, NULL);
	expect_canonical("a..b", 0, NULL);
	expect_canonical("a.b.", 0, NULL);
	expect_canonical("-a.b", 0, NULL);
	expect_canonical("a-.b", 0, NULL);
	expect_canonical("[192.0.2.1]", 0, NULL);
	expect_canonical("exa_mple.com", 0, NULL);
	expect_canonical("\xe2\x98\x83.com", 0, NULL);       /* a snowman: disallowed */
	expect_canonical("m\xc3\xbc_ller.example", 0, NULL); /* UTS #46 would drop the '_' */
	expect_canonical("-\xc3\xbc.de", 0, NULL);
	expect_canonical("\xc3\xbc.example.", 0, NULL);
	expect_canonical("bad\xc3.example", 0, NULL); /* not UTF-8 */
	memset(label63, 'a', 63), label63[63] = '\0';
	memset(label64, 'a', 64), label64[64] = '\0';
	expect_canonical(label63, 0, label63);
	expect_canonical(label64, 0, NULL);
	/* 254 octets: over RFC 1035's 253 */
	snprintf(long_name, sizeof(long_name), "%s.%s.%s.%.61s", label63, label63, label63,
	         label63);
	expect_canonical(long_name, 0, long_name);
	snprintf(long_name, sizeof(long_name), "%s.%s.%s.%.62s", label63, label63, label63,
	         label63);
	expect_canonical(long_name, 0, NULL);
	assert_true(pa_domain_is_utf8("m\xc3\xbcller", 7));
	assert_false(pa_domain_is_utf8("muller", 6));
}

static void
test_domains_either_form(void **state)
{
	struct config_override ov[2] = {
	    {"domains", "m\xc3\xbcller.example, Example.COM, xn--MLLER-kva.example"},
	    {"postmaster", ""},
	};
	struct pa_config c;
	char err[CONFIG_ERR_MAX];

	(void)state;
	assert_int_equal(config_load(&c, NULL, ov, 1, err, sizeof(err)), PA_OK);
	assert_int_equal(c.ndomains, 2); /* one domain written in both forms */
	assert_string_equal(c.domains[0], "example.com");
	assert_string_equal(c.domains[1], "xn--mller-kva.example");
	assert_true(config_domain_served(&c, "xn--mller-kva.example"));
	assert_true(config_domain_served(&c, "XN--MLLER-KVA.EXAMPLE"));
	assert_true(config_domain_served(&c, "m\xc3\xbcller.example"));
	assert_true(config_domain_served(&c, "M\xc3\x9cller.example"));
	assert_false(config_domain_served(&c, "mueller.example"));
	assert_false(config_domain_served(&c, "\xe2\x98\x83.example"));
	/* the first domain as written, not the first in sorted order */
	assert_string_equal(c.postmaster, "postmaster@xn--mller-kva.example");
	config_free(&c);

	ov[1].value = "Hostmaster@B\xc3\xbc"
	              "cher.example";
	assert_int_equal(config_load(&c, NULL, ov, 2, err, sizeof(err)), PA_OK);
	assert_string_equal(c.postmaster, "Hostmaster@xn--bcher-kva.example");
	config_free(&c);

	ov[0].value = "";
	ov[1].value = "";
	assert_int_equal(config_load(&c, NULL, ov, 2, err, sizeof(err)), PA_OK);
	assert_int_equal(c.ndomains, 0);
	assert_string_equal(c.postmaster, ""); /* <Postmaster> has nowhere to go: refused */
	config_free(&c);
	assert_int_equal(config_load(&c, NULL, NULL, 0, err, sizeof(err)), PA_OK);
	assert_string_equal(c.postmaster, "postmaster@localhost");
	config_free(&c);
}

static void
test_override_syntax(void **state)
{
	struct config_override ov;
	char no_eq[] = "listen", empty_key[] = "=x";

	(void)state;
	assert_int_equal(config_parse_override(no_eq, &ov), PA_ERROR);
	assert_int_equal(config_parse_override(empty_key, &ov), PA_ERROR);
}

static void
test_restart_needed(void **state)
{
	struct pa_config a, b;
	char err[CONFIG_ERR_MAX], o[] = "spool.shards=9", h[] = "hostname=other";
	struct config_override ov;

	(void)state;
	assert_int_equal(config_load(&a, NULL, NULL, 0, err, sizeof(err)), PA_OK);
	config_parse_override(h, &ov);
	assert_int_equal(config_load(&b, NULL, &ov, 1, err, sizeof(err)), PA_OK);
	assert_null(config_restart_needed(&a, &b));
	config_free(&b);
	config_parse_override(o, &ov);
	assert_int_equal(config_load(&b, NULL, &ov, 1, err, sizeof(err)), PA_OK);
	assert_string_equal(config_restart_needed(&a, &b), "spool.shards");
	config_free(&a);
	config_free(&b);
}

/* Every key of the table is documented, with its name in backquotes. */
static void
test_every_key_documented(void **state)
{
	const char *root = getenv("PA_SOURCE_ROOT");
	char path[1024], *doc;
	FILE *f;
	long len;

	(void)state;
	assert_non_null(root);
	snprintf(path, sizeof(path), "%s/docs/configuration.md", root);
	f = fopen(path, "r");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	doc = calloc(1, (size_t)len + 1);
	assert_int_equal(fread(doc, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	for (const char *const *k = config_key_names(); *k; k++) {
		char quoted[128];

		snprintf(quoted, sizeof(quoted), "`%s`", *k);
		if (strstr(doc, quoted) == NULL)
			fail_msg("docs/configuration.md does not document %s", quoted);
	}
	free(doc);
}

/* spool.committer_cpus: taskset's list syntax, nothing else. */
static void
test_cpu_list(void **state)
{
	static const char *const bad[] = {"", "x", "0-", "-1", "3-1", "1,,2", "1,", "0 1", "4096"};
	cpu_set_t set;

	(void)state;
	assert_int_equal(config_parse_cpu_list("0", &set), PA_OK);
	assert_int_equal(CPU_COUNT(&set), 1);
	assert_true(CPU_ISSET(0, &set));
	assert_int_equal(config_parse_cpu_list("0,2-4,7", &set), PA_OK);
	assert_int_equal(CPU_COUNT(&set), 5);
	assert_true(CPU_ISSET(2, &set) && CPU_ISSET(3, &set) && CPU_ISSET(4, &set));
	assert_true(CPU_ISSET(7, &set) && !CPU_ISSET(1, &set) && !CPU_ISSET(5, &set));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (config_parse_cpu_list(bad[i], &set) != PA_ERROR)
			fail_msg("'%s' accepted as a CPU list", bad[i]);
}

/* smtp.trusted_proxies and limits.exempt: ADDR[/PREFIX] lists, IPv4-mapped as IPv4. */
static void
test_address_lists(void **state)
{
	static const char *const bad[] = {"10.0.0.0/33", "::1/129", "10.0.0.1/", "10.0.0.1/x",
	                                   "example.org", "10.0.0.256", "10.0.0.0/-1"};
	struct config_override ov[2] = {
	    {"smtp.trusted_proxies", "10.1.0.0/16, 2001:db8::/32,192.0.2.7"},
	    {"limits.exempt", ""},
	};
	uint8_t a4[4], a6[16];
	struct pa_config c;
	char err[CONFIG_ERR_MAX];

	(void)state;
	assert_int_equal(config_load(&c, NULL, ov, 2, err, sizeof(err)), PA_OK);
	assert_int_equal(c.ntrusted_proxies, 3);
	assert_int_equal(c.nlimit_exempt, 0);
	inet_pton(AF_INET, "10.1.255.3", a4);
	assert_true(config_cidr_match(c.trusted_proxies, c.ntrusted_proxies, AF_INET, a4));
	inet_pton(AF_INET, "10.2.0.1", a4);
	assert_false(config_cidr_match(c.trusted_proxies, c.ntrusted_proxies, AF_INET, a4));
	inet_pton(AF_INET6, "::ffff:192.0.2.7", a6);
	assert_true(config_cidr_match(c.trusted_proxies, c.ntrusted_proxies, AF_INET6, a6));
	inet_pton(AF_INET6, "2001:db8:ffff::1", a6);
	assert_true(config_cidr_match(c.trusted_proxies, c.ntrusted_proxies, AF_INET6, a6));
	inet_pton(AF_INET6, "2001:db9::1", a6);
	assert_false(config_cidr_match(c.trusted_proxies, c.ntrusted_proxies, AF_INET6, a6));
	config_free(&c);
	/* The default exempts loopback only. */
	assert_int_equal(config_load(&c, NULL, NULL, 0, err, sizeof(err)), PA_OK);
	inet_pton(AF_INET, "127.0.0.1", a4);
	assert_true(config_cidr_match(c.limit_exempt, c.nlimit_exempt, AF_INET, a4));
	assert_int_equal(c.limit_conn_per_ip, 50);
	assert_int_equal(c.banner_delay_ms, 0);
	config_free(&c);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct config_override o = {"smtp.trusted_proxies", bad[i]};

		assert_int_equal(config_load(&c, NULL, &o, 1, err, sizeof(err)), PA_ERROR);
		assert_non_null(strstr(err, "smtp.trusted_proxies"));
	}
}

/* dns.servers is kept as c-ares reads it; the screen's lists need it, and each other. */
static void
test_screen_keys(void **state)
{
	struct config_override ov[4] = {
	    {"dns.servers", "127.0.0.53, 192.0.2.1:5353,[2001:db8::1]:53 ::1"},
	    {"screen.dnsbl_sites", "zen.example=127.0.0.[2..11]*3, b.example"},
	    {"screen.dnswl_sites", "wl.example*-4"},
	    {"screen.temporary_action", "tempfail"},
	};
	struct pa_config c;
	char err[CONFIG_ERR_MAX];

	(void)state;
	assert_int_equal(config_load(&c, NULL, ov, 4, err, sizeof(err)), PA_OK);
	assert_string_equal(c.dns_servers,
	                    "127.0.0.53:53,192.0.2.1:5353,[2001:db8::1]:53,[::1]:53");
	assert_int_equal(c.nscreen_dnsbl, 2);
	assert_int_equal(c.screen_dnsbl[0].weight, 3);
	assert_int_equal(c.nscreen_dnswl, 1);
	assert_int_equal(c.screen_dnswl[0].weight, -4);
	assert_false(c.screen_tempfail_listed);
	assert_true(c.screen_tempfail_failure);
	assert_int_equal(c.dns_timeout_ms, 2000);
	assert_int_equal(c.screen_threshold, 1);
	config_free(&c);
	/* no screening by default, and no resolver */
	assert_int_equal(config_load(&c, NULL, NULL, 0, err, sizeof(err)), PA_OK);
	assert_int_equal(c.nscreen_dnsbl + c.nscreen_dnswl, 0);
	assert_string_equal(c.dns_servers, "");
	config_free(&c);
	expect_error(NULL, "dns.servers=resolver.example", "dns.servers");
	expect_error(NULL, "dns.servers=127.0.0.1:0", "dns.servers");
	expect_error(NULL, "dns.servers=[::1", "dns.servers");
	expect_error(NULL, "dns.timeout=5", "dns.timeout");
	expect_error(NULL, "screen.dnsbl_sites=zen.example", "needs 'dns.servers'");
	expect_error("[dns]\nservers=127.0.0.1\n[screen]\ndnsbl_sites=zen.example=127.0.0\n", NULL,
	             "screen.dnsbl_sites");
	expect_error("[dns]\nservers=127.0.0.1\n[screen]\ndnswl_sites=wl.example\n", NULL,
	             "needs 'screen.dnsbl_sites'");
	expect_error("[dns]\nservers=127.0.0.1\n[screen]\ndnsbl_sites=a.example\n"
	             "dnswl_sites=a.example\n",
	             NULL, "screen.dnswl_sites");
	expect_error(NULL, "screen.action=drop", "screen.action");
	expect_error(NULL, "screen.temporary_action=reject", "screen.temporary_action");
}

/* milter.servers: each filter's address and options, the defaults from milter.*. */
static void
test_milter_keys(void **state)
{
	struct config_override ov[3] = {
	    {"milter.servers", "inet:127.0.0.1:11332{default_action=accept timeout=500}, "
	                       "unix:/run/milter.sock, inet:[::1]:8891{connections=4}"},
	    {"milter.timeout", "3000"},
	    {"milter.connections", "16"},
	};
	struct pa_config c;
	char err[CONFIG_ERR_MAX];

	(void)state;
	assert_int_equal(config_load(&c, NULL, ov, 3, err, sizeof(err)), PA_OK);
	assert_int_equal(c.nmilters, 3);
	assert_string_equal(c.milters[0].name, "inet:127.0.0.1:11332");
	assert_int_equal(c.milters[0].family, AF_INET);
	assert_int_equal(c.milters[0].port, 11332);
	assert_false(c.milters[0].tempfail);
	assert_int_equal(c.milters[0].timeout_ms, 500);
	assert_int_equal(c.milters[0].connections, 16);
	assert_int_equal(c.milters[1].family, AF_UNIX);
	assert_string_equal(c.milters[1].path, "/run/milter.sock");
	assert_true(c.milters[1].tempfail); /* milter.default_action's default */
	assert_int_equal(c.milters[1].timeout_ms, 3000);
	assert_int_equal(c.milters[2].family, AF_INET6);
	assert_int_equal(c.milters[2].port, 8891);
	assert_int_equal(c.milters[2].connections, 4);
	config_free(&c);
	assert_int_equal(config_load(&c, NULL, NULL, 0, err, sizeof(err)), PA_OK);
	assert_int_equal(c.nmilters, 0);
	config_free(&c);
	/* A host name is resolved at load (/etc/hosts: no DNS server needed). */
	ov[0].value = "inet:localhost:11332";
	assert_int_equal(config_load(&c, NULL, ov, 1, err, sizeof(err)), PA_OK);
	assert_int_equal(c.nmilters, 1);
	assert_true(c.milters[0].family == AF_INET || c.milters[0].family == AF_INET6);
	assert_int_equal(c.milters[0].sa.ss_family, c.milters[0].family);
	assert_int_equal(ntohs(((struct sockaddr_in *)&c.milters[0].sa)->sin_port), 11332);
	config_free(&c);
	/* One that does not is refused; one try of a second at most if a server is asked. */
	setenv("RES_OPTIONS", "timeout:1 attempts:1", 1);
	expect_error(NULL, "milter.servers=inet:no-such-host.invalid:11332", "does not resolve");
	expect_error(NULL, "milter.servers=inet:[milter.example]:11332", "milter.servers");
	expect_error(NULL, "milter.servers=unix:/no-such-dir.pigeonair/m.sock", "does not exist");
	expect_error(NULL, "milter.servers=unix:/etc/passwd", "is not a socket");
	expect_error(NULL, "milter.servers=inet:127.0.0.1", "milter.servers");
	expect_error(NULL, "milter.servers=inet:127.0.0.1:0", "milter.servers");
	expect_error(NULL, "milter.servers=unix:relative.sock", "milter.servers");
	expect_error(NULL, "milter.servers=tcp:127.0.0.1:1", "milter.servers");
	expect_error(NULL, "milter.servers=inet:127.0.0.1:1{default_action=reject}",
	             "milter.servers");
	expect_error(NULL, "milter.servers=inet:127.0.0.1:1{timeout=1}", "milter.servers");
	expect_error(NULL, "milter.servers=inet:127.0.0.1:1{speed=9}", "milter.servers");
	expect_error(NULL, "milter.servers=inet:127.0.0.1:1{timeout=100", "milter.servers");
	expect_error(NULL, "milter.default_action=discard", "milter.default_action");
	expect_error(NULL, "milter.connections=0", "milter.connections");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_file_and_overrides),
		cmocka_unit_test(test_errors_name_the_key),
		cmocka_unit_test(test_domain_canonical),
		cmocka_unit_test(test_domains_either_form),
		cmocka_unit_test(test_override_syntax),
		cmocka_unit_test(test_restart_needed),
		cmocka_unit_test(test_every_key_documented),
		cmocka_unit_test(test_cpu_list),
		cmocka_unit_test(test_address_lists),
		cmocka_unit_test(test_screen_keys),
	    cmocka_unit_test(test_milter_keys),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
