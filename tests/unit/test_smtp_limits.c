/*
 * test_smtp_limits.c: the engine's abuse limits and its side of the load
 * balancer support: early talkers, HTTP on the SMTP port, commands and errors
 * per session, progress that bytes alone do not move (slowloris), and XCLIENT
 * from trusted and untrusted peers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "smtp_driver.h"

static void
start_trusted(struct drv *d)
{
	d->s = smtp_session_new(&d->cfg, d, "192.0.2.1");
	assert_non_null(d->s);
	smtp_session_set_trusted(d->s, true);
	smtp_session_greet(d->s);
	drv_drain(d);
}

/* Input before the banner: 554 and close, whatever it was, nothing else answered. */
static void
test_early_talker(void **state)
{
	struct drv d;

	(void)state;
	drv_init(&d, SMTP_BARE_LF_REJECT);
	d.s = smtp_session_new(&d.cfg, &d, "192.0.2.1");
	assert_non_null(d.s);
	drv_feed_str(&d, "EHLO bot.example\r\nMAIL FROM:<a@b>\r\n", 64);
	assert_true(d.closed);
	assert_string_equal(d.out, "554 5.5.1 " DRV_HOSTNAME
	                           " Protocol error: talked before the greeting\r\n");
	assert_int_equal(d.refusals[SMTP_REFUSAL_EARLY_TALKER], 1);
	assert_int_equal(d.refusals[SMTP_REFUSAL_TOO_MANY_ERRORS], 0);
	drv_free(&d);

	/* A single octet is enough; a refusal in place of the banner is not a talker. */
	drv_init(&d, SMTP_BARE_LF_REJECT);
	d.s = smtp_session_new(&d.cfg, &d, "192.0.2.1");
	drv_feed_str(&d, "\r", 1);
	assert_true(d.closed);
	assert_int_equal(d.refusals[SMTP_REFUSAL_EARLY_TALKER], 1);
	drv_free(&d);
}

static void
test_http_request(void **state)
{
	static const char *const requests[] = {
	    "GET / HTTP/1.1\r\nHost: mx.example.org\r\n\r\n",
	    "POST /form HTTP/1.0\r\n",
	    "CONNECT relay.example:25 HTTP/1.1\r\n",
	    "head / HTTP/1.1\r\n",
	};
	struct drv d;

	(void)state;
	for (size_t i = 0; i < pa_array_size(requests); i++) {
		drv_init(&d, SMTP_BARE_LF_REJECT);
		drv_start(&d);
		drv_feed_str(&d, requests[i], i + 1);
		assert_true(d.closed);
		assert_string_equal(d.out, DRV_BANNER "521 5.7.0 " DRV_HOSTNAME
		                                      " Error: HTTP request on an SMTP port\r\n");
		assert_int_equal(d.refusals[SMTP_REFUSAL_HTTP], 1);
		drv_free(&d);
	}
	/* A header line after SMTP commands gives it away too. */
	drv_init(&d, SMTP_BARE_LF_REJECT);
	drv_start(&d);
	drv_feed_str(&d, "NOOP\r\nHost: mx.example.org\r\nNOOP\r\n", 100);
	assert_true(d.closed);
	assert_int_equal(drv_count(d.out, "250 2.0.0 Ok\r\n"), 1);
	assert_int_equal(d.refusals[SMTP_REFUSAL_HTTP], 1);
	drv_free(&d);
}

static void
few_commands(struct smtp_config *cfg)
{
	cfg->max_commands = 3;
}

/* limits.commands: counted per line, pipelined or not; the next gets 421 4.7.0. */
static void
test_commands_per_session(void **state)
{
	static const char in[] = "NOOP\r\nNOOP\r\nBOGUS\r\nNOOP\r\nNOOP\r\n";
	struct drv d;

	(void)state;
	drv_run(&d, SMTP_BARE_LF_REJECT, few_commands, LIT(in), 1);
	assert_true(d.closed);
	assert_string_equal(d.out,
	                    DRV_BANNER "250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n"
	                               "500 5.5.1 Error: command not recognized\r\n"
	                               "421 4.7.0 " DRV_HOSTNAME " Error: too many commands\r\n");
	assert_int_equal(d.refusals[SMTP_REFUSAL_TOO_MANY_COMMANDS], 1);
	drv_free(&d);
}

static void
few_errors(struct smtp_config *cfg)
{
	cfg->max_errors = 3;
}

/* smtp.max_errors: the third 5xx ends the session with 421 4.7.0. */
static void
test_errors_per_session(void **state)
{
	static const char in[] = "BOGUS\r\nMAIL FROM:<a@b>\r\nBOGUS\r\nNOOP\r\n";
	struct drv d;

	(void)state;
	drv_run(&d, SMTP_BARE_LF_REJECT, few_errors, LIT(in), 5);
	assert_true(d.closed);
	assert_int_equal(drv_count(d.out, "421 4.7.0 " DRV_HOSTNAME " Too many errors\r\n"), 1);
	assert_int_equal(drv_count(d.out, "250 2.0.0 Ok"), 0);
	assert_int_equal(d.refusals[SMTP_REFUSAL_TOO_MANY_ERRORS], 1);
	drv_free(&d);
}

/*
 * Progress moves with replies and with each KiB of content, never with the
 * octets of an unfinished line: a trickling client cannot hold its timeout
 * off (slowloris).
 */
static void
test_progress_not_moved_by_bytes(void **state)
{
	static const char data_cmds[] = "EHLO c\r\nMAIL FROM:<a@example.org>\r\n"
	                                "RCPT TO:<b@example.org>\r\nDATA\r\n";
	uint8_t kib[1024];
	struct drv d;
	uint32_t p;

	(void)state;
	drv_init(&d, SMTP_BARE_LF_REJECT);
	drv_start(&d);
	p = smtp_session_progress(d.s);
	drv_feed_str(&d, "EHLO slow.exa", 1);
	drv_feed_str(&d, "mple", 1);
	assert_int_equal(smtp_session_progress(d.s), p);
	drv_feed_str(&d, "\r\n", 1);
	assert_true(smtp_session_progress(d.s) != p);

	drv_feed_str(&d, data_cmds, sizeof(data_cmds));
	p = smtp_session_progress(d.s);
	memset(kib, 'a', sizeof(kib));
	drv_feed(&d, kib, 1000, 1);
	assert_int_equal(smtp_session_progress(d.s), p);
	drv_feed(&d, kib, 24, 1);
	assert_true(smtp_session_progress(d.s) != p);
	drv_free(&d);
}

/* Postfix's XCLIENT from a peer not in smtp.trusted_proxies: 550 5.7.0, not offered. */
static void
test_xclient_untrusted(void **state)
{
	static const char in[] = "EHLO proxy\r\nXCLIENT ADDR=203.0.113.9\r\n";
	struct drv d;

	(void)state;
	drv_run(&d, SMTP_BARE_LF_REJECT, NULL, LIT(in), 7);
	assert_false(d.closed);
	assert_string_equal(d.out, DRV_BANNER DRV_EHLO_REPLY
	                    "550 5.7.0 Error: insufficient authorization\r\n");
	assert_int_equal(d.refusals[SMTP_REFUSAL_XCLIENT_DENIED], 1);
	drv_free(&d);
}

static char changed_addr[64];
static unsigned changed_port;
static int changed_verdict;

static int
record_change(void *host, const char *addr, unsigned port)
{
	(void)host;
	snprintf(changed_addr, sizeof(changed_addr), "%s", addr);
	changed_port = port;
	return changed_verdict;
}

/*
 * From a trusted peer: offered in EHLO, a new 220, and from then on the
 * given address is the one in Received: (and the host heard of it).  Trust
 * is spent: a second XCLIENT is refused.
 */
static void
test_xclient_trusted(void **state)
{
	static const char in[] =
	    "EHLO proxy\r\n"
	    "XCLIENT ADDR=203.0.113.9 PORT=4711 HELO=client+2Eexample PROTO=ESMTP\r\n"
	    "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
	    "Subject: x\r\n\r\nhello\r\n.\r\n"
	    "XCLIENT ADDR=198.51.100.1\r\n";
	struct drv d;

	(void)state;
	changed_verdict = SMTP_REFUSAL_NONE;
	drv_init(&d, SMTP_BARE_LF_REJECT);
	d.cfg.client_changed = record_change;
	start_trusted(&d);
	drv_feed(&d, LIT(in), 3);
	assert_int_equal(drv_count(d.out, "250-XCLIENT ADDR PORT HELO PROTO\r\n"), 1);
	assert_int_equal(drv_count(d.out, "220 " DRV_HOSTNAME " ESMTP PigeonAir\r\n"), 2);
	assert_string_equal(changed_addr, "203.0.113.9");
	assert_int_equal(changed_port, 4711);
	assert_int_equal(d.nmsg, 1);
	assert_non_null(
	    strstr((char *)d.msgs[0].data, "Received: from client.example ([203.0.113.9])\r\n"));
	assert_non_null(strstr(d.out, "550 5.7.0 Error: insufficient authorization\r\n"));
	assert_int_equal(d.refusals[SMTP_REFUSAL_XCLIENT_DENIED], 1);
	drv_free(&d);
}

static void
test_xclient_errors(void **state)
{
	static const char in[] = "XCLIENT\r\n"
	                         "XCLIENT NAME=foo\r\n"
	                         "XCLIENT ADDR=300.1.1.1\r\n"
	                         "XCLIENT ADDR=2001:db8::1\r\n"
	                         "XCLIENT PORT=65536\r\n"
	                         "XCLIENT PROTO=LMTP\r\n"
	                         "XCLIENT HELO=a+0Ab\r\n"
	                         "XCLIENT ADDR=1.2.3.4+\r\n"
	                         "XCLIENT ADDR\r\n"
	                         "EHLO proxy\r\nMAIL FROM:<a@example.org>\r\n"
	                         "XCLIENT ADDR=192.0.2.9\r\n"
	                         "RSET\r\n"
	                         "XCLIENT ADDR=IPV6:2001:DB8:0::1 HELO=[UNAVAILABLE]\r\n";
	struct drv d;

	(void)state;
	changed_verdict = SMTP_REFUSAL_NONE;
	changed_addr[0] = '\0';
	drv_init(&d, SMTP_BARE_LF_REJECT);
	d.cfg.client_changed = record_change;
	start_trusted(&d);
	drv_feed(&d, LIT(in), 1);
	assert_false(d.closed);
	assert_int_equal(drv_count(d.out, "501 5.5.4 Syntax: XCLIENT attribute=value ...\r\n"), 2);
	assert_int_equal(drv_count(d.out, "501 5.5.4 Bad XCLIENT attribute name: NAME\r\n"), 1);
	assert_int_equal(drv_count(d.out, "501 5.5.4 Bad ADDR syntax\r\n"), 3);
	assert_int_equal(drv_count(d.out, "501 5.5.4 Bad PORT syntax\r\n"), 1);
	assert_int_equal(drv_count(d.out, "501 5.5.4 Bad PROTO syntax\r\n"), 1);
	assert_int_equal(drv_count(d.out, "501 5.5.4 Bad HELO syntax\r\n"), 1);
	assert_int_equal(drv_count(d.out, "503 5.5.1 Error: MAIL transaction in progress\r\n"), 1);
	/* The last one went through, the address canonical. */
	assert_string_equal(changed_addr, "2001:db8::1");
	assert_true(strstr(d.out, "250 2.0.0 Ok\r\n220 " DRV_HOSTNAME " ESMTP PigeonAir\r\n") !=
	            NULL);
	drv_free(&d);
}

/* The host refuses the new address (its per-address limits): 421 4.7.0, counted, closed. */
static void
test_xclient_over_limit(void **state)
{
	static const char in[] = "XCLIENT ADDR=203.0.113.9\r\nNOOP\r\n";
	struct drv d;

	(void)state;
	changed_verdict = SMTP_REFUSAL_CONN_PER_IP;
	drv_init(&d, SMTP_BARE_LF_REJECT);
	d.cfg.client_changed = record_change;
	start_trusted(&d);
	drv_feed(&d, LIT(in), 4);
	assert_true(d.closed);
	assert_string_equal(d.out, DRV_BANNER "421 4.7.0 " DRV_HOSTNAME
	                                      " Error: too many connections from 203.0.113.9\r\n");
	assert_int_equal(d.refusals[SMTP_REFUSAL_CONN_PER_IP], 1);
	drv_free(&d);
}

/* The new reasons have names for counters and logs. */
static void
test_refusal_names(void **state)
{
	(void)state;
	assert_string_equal(smtp_refusal_name(SMTP_REFUSAL_EARLY_TALKER), "early_talker");
	assert_string_equal(smtp_refusal_name(SMTP_REFUSAL_HTTP), "http_request");
	assert_string_equal(smtp_refusal_name(SMTP_REFUSAL_CONN_PER_IP), "conn_per_ip");
	for (int r = SMTP_REFUSAL_NONE; r < SMTP_REFUSAL_COUNT; r++)
		assert_string_not_equal(smtp_refusal_name((enum smtp_refusal)r), "unknown");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_early_talker),
	    cmocka_unit_test(test_http_request),
	    cmocka_unit_test(test_commands_per_session),
	    cmocka_unit_test(test_errors_per_session),
	    cmocka_unit_test(test_progress_not_moved_by_bytes),
	    cmocka_unit_test(test_xclient_untrusted),
	    cmocka_unit_test(test_xclient_trusted),
	    cmocka_unit_test(test_xclient_errors),
	    cmocka_unit_test(test_xclient_over_limit),
	    cmocka_unit_test(test_refusal_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
