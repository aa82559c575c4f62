/*
 * test_smtp_session.c: the SMTP engine against RFC 5321 and its extensions.
 *
 * Most sessions go through run_all(), which feeds the same input whole, byte
 * by byte and seven octets at a time and asserts that the three runs give
 * byte-identical replies and stored messages, before the test checks the
 * transcript itself.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "smtp_driver.h"

#define EHLO "EHLO client.example\r\n"
#define MAIL "MAIL FROM:<alice@example.net>\r\n"
#define RCPT "RCPT TO:<bob@example.org>\r\n"
#define ENVELOPE EHLO MAIL RCPT
#define R_OK "250 2.0.0 Ok\r\n"
#define R_MAIL "250 2.1.0 Ok\r\n"
#define R_RCPT "250 2.1.5 Ok\r\n"
#define R_ENVELOPE DRV_BANNER DRV_EHLO_REPLY R_MAIL R_RCPT
#define R_354 "354 End data with <CR><LF>.<CR><LF>\r\n"
#define R_QUEUED(q) "250 2.0.0 Ok: queued as " q "\r\n"
#define R_BYE "221 2.0.0 Bye\r\n"
#define R_UNKNOWN "500 5.5.1 Error: command not recognized\r\n"
#define HEADER_FOR(q, rcpt)                                                                        \
	"Received: from client.example ([192.0.2.1])\r\n\tby " DRV_HOSTNAME                        \
	" (PigeonAir) with ESMTP id " q "\r\n\tfor <" rcpt ">; " DRV_DATE "\r\n"
#define HEADER1(q) HEADER_FOR(q, "bob@example.org")

/* Feeds the input whole into d, and byte by byte and 7 at a time into others that must agree. */
static void
run_all(struct drv *d, enum smtp_bare_lf_policy policy, void (*tweak)(struct smtp_config *),
        const uint8_t *in, size_t len)
{
	static const size_t chunks[] = {1, 7};

	drv_run(d, policy, tweak, in, len, len > 0 ? len : 1);
	for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
		struct drv other;

		drv_run(&other, policy, tweak, in, len, chunks[i]);
		drv_assert_same(d, &other);
		drv_free(&other);
	}
}

static void
run_str(struct drv *d, void (*tweak)(struct smtp_config *), const char *in)
{
	run_all(d, SMTP_BARE_LF_REJECT, tweak, (const uint8_t *)in, strlen(in));
}

static void
assert_data(const struct drv_msg *m, const char *expected)
{
	assert_int_equal(m->size, strlen(expected));
	assert_memory_equal(m->data, expected, m->size);
}

static char *
repeat(char c, size_t n)
{
	char *s = malloc(n + 1);

	assert_non_null(s);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

static char *format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *
format(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	assert_true(n >= 0);
	s = malloc((size_t)n + 1);
	assert_non_null(s);
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return s;
}

static void
test_ehlo_lists_every_extension(void **state)
{
	struct drv d;

	(void)state;
	run_str(&d, NULL, EHLO "HELO client.example\r\n");
	assert_string_equal(d.out, DRV_BANNER DRV_EHLO_REPLY "250 " DRV_HOSTNAME "\r\n");
	drv_free(&d);
}

static void
test_full_transaction(void **state)
{
	struct drv d;

	(void)state;
	run_str(&d, NULL, ENVELOPE "DATA\r\nSubject: hi\r\n\r\nHello\r\n.\r\nQUIT\r\n");
	assert_string_equal(d.out, R_ENVELOPE R_354 R_QUEUED("Q00001") R_BYE);
	assert_true(d.closed);
	assert_int_equal(d.nmsg, 1);
	assert_string_equal(d.msgs[0].queue_id, "Q00001");
	assert_string_equal(d.msgs[0].mail_from, "alice@example.net");
	assert_int_equal(d.msgs[0].nrcpt, 1);
	assert_string_equal(d.msgs[0].rcpts[0], "bob@example.org");
	assert_false(d.msgs[0].chunked);
	assert_false(d.msgs[0].body_8bitmime);
	assert_data(&d.msgs[0], HEADER1("Q00001") "Subject: hi\r\n\r\nHello\r\n");
	drv_free(&d);
}

static void
test_several_transactions(void **state)
{
	struct drv d;

	(void)state;
	run_str(&d, NULL,
	        ENVELOPE "DATA\r\nfirst\r\n.\r\n"
	                 "MAIL FROM:<> BODY=8BITMIME SIZE=100\r\n"
	                 "RCPT TO:<carol@example.org>\r\nRCPT TO:<Postmaster>\r\n"
	                 "DATA\r\nsecond\r\n.\r\n"
	                 "MAIL FROM:<dave@example.net>\r\nRCPT TO:<erin@example.org>\r\n"
	                 "RSET\r\nNOOP\r\n");
	assert_string_equal(d.out, R_ENVELOPE R_354 R_QUEUED("Q00001")
	                               R_MAIL R_RCPT R_RCPT R_354 R_QUEUED("Q00002")
	                                   R_MAIL R_RCPT R_OK R_OK);
	assert_int_equal(d.nmsg, 2);
	assert_data(&d.msgs[0], HEADER1("Q00001") "first\r\n");
	assert_string_equal(d.msgs[1].mail_from, "");
	assert_true(d.msgs[1].body_8bitmime);
	assert_int_equal(d.msgs[1].nrcpt, 2);
	assert_string_equal(d.msgs[1].rcpts[1], "Postmaster");
	/* Two recipients: no "for" clause. */
	assert_data(&d.msgs[1],
	            "Received: from client.example ([192.0.2.1])\r\n\tby " DRV_HOSTNAME
	            " (PigeonAir) with ESMTP id Q00002;\r\n\t" DRV_DATE "\r\nsecond\r\n");
	drv_free(&d);
}

static void
test_store_failure_gives_451(void **state)
{
	struct drv d;

	(void)state;
	drv_init(&d, SMTP_BARE_LF_REJECT);
	d.store_status = PA_ERROR;
	drv_start(&d);
	drv_feed_str(&d, ENVELOPE "DATA\r\nx\r\n.\r\n" MAIL, 1);
	assert_string_equal(d.out,
	                    R_ENVELOPE R_354 "451 4.3.0 Error: queue file write error\r\n" R_MAIL);
	assert_int_equal(d.refusals[SMTP_REFUSAL_STORE_FAILED], 1);
	drv_free(&d);
}

static void
test_dot_unstuffing(void **state)
{
	struct drv d;

	(void)state;
	run_str(&d, NULL,
	        ENVELOPE "DATA\r\n.first\r\n..foo\r\n...bar\r\n..\r\nx.y\r\n .z\r\n.\r\n");
	assert_int_equal(d.nmsg, 1);
	assert_data(&d.msgs[0], HEADER1("Q00001") "first\r\n.foo\r\n..bar\r\n.\r\nx.y\r\n .z\r\n");
	drv_free(&d);
	/* A lone "." line cannot be inside the content: it ends it, and what follows is commands.
	 */
	run_str(&d, NULL, ENVELOPE "DATA\r\nA\r\n.\r\nB\r\n.\r\n");
	assert_string_equal(d.out, R_ENVELOPE R_354 R_QUEUED("Q00001") R_UNKNOWN R_UNKNOWN);
	assert_int_equal(d.nmsg, 1);
	assert_data(&d.msgs[0], HEADER1("Q00001") "A\r\n");
	drv_free(&d);
}

static void
test_empty_message(void **state)
{
	struct drv d;

	(void)state;
	run_str(&d, NULL, ENVELOPE "DATA\r\n.\r\n");
	assert_string_equal(d.out, R_ENVELOPE R_354 R_QUEUED("Q00001"));
	assert_data(&d.msgs[0], HEADER1("Q00001"));
	drv_free(&d);
}

static void
test_enhanced_status_codes(void **state)
{
	struct drv d;
	const char *p;

	(void)state;
	run_str(&d, NULL,
	        EHLO "NOOP\r\nVRFY bob\r\nEXPN staff\r\nHELP\r\nFOO\r\nRCPT TO:<a@b.c>\r\n" MAIL
	             "RCPT TO:<x@elsewhere.example>\r\n" RCPT
	             "DATA\r\nhi\r\n.\r\nRSET\r\nQUIT\r\n");
	assert_memory_equal(d.out, DRV_BANNER DRV_EHLO_REPLY, strlen(DRV_BANNER DRV_EHLO_REPLY));
	p = d.out + strlen(DRV_BANNER DRV_EHLO_REPLY);
	assert_true(*p != '\0');
	/* RFC 2034: after the greeting and EHLO, every 2xx/4xx/5xx line carries "c.x.y". */
	while (*p != '\0') {
		const char *eol = strstr(p, "\r\n");

		assert_non_null(eol);
		if (p[0] != '3') {
			assert_true(p[3] == ' ' || p[3] == '-');
			assert_int_equal(p[4], p[0]);
			assert_int_equal(p[5], '.');
			assert_true(p[6] >= '0' && p[6] <= '9');
		}
		p = eol + 2;
	}
	drv_free(&d);
}

static void
test_vrfy_expn_help_noop_quit(void **state)
{
	struct drv d;

	(void)state;
	run_str(&d, NULL,
	        "NOOP\r\nvrfy bob\r\nVRFY\r\nExPn list\r\nhelp\r\nQUIT now\r\nquit\r\nNOOP\r\n");
	assert_string_equal(
	    d.out, DRV_BANNER R_OK
	    "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery\r\n"
	    "501 5.5.4 Syntax: VRFY address\r\n"
	    "502 5.5.1 Error: command not implemented\r\n"
	    "214-2.0.0 PigeonAir SMTP server\r\n"
	    "214-2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT\r\n"
	    "214-2.0.0   RSET NOOP QUIT VRFY EXPN HELP\r\n"
	    "214 2.0.0 End of HELP info\r\n"
	    "501 5.5.4 Syntax: QUIT\r\n" R_BYE);
	assert_true(d.closed);
	drv_free(&d);
}

static void
test_commands_are_case_insensitive(void **state)
{
	struct drv d;

	(void)state;
	run_str(
	    &d, NULL,
	    "ehlo client.example\r\nmAiL fRoM:<alice@example.net>\r\nrcpt to:<bob@example.org>\r\n"
	    "data\r\nx\r\n.\r\n");
	assert_string_equal(d.out, R_ENVELOPE R_354 R_QUEUED("Q00001"));
	drv_free(&d);
}

static void
test_unknown_command(void **state)
{
	struct drv d;

	(void)state;
	run_str(&d, NULL, "FOO\r\nMAILX FROM:<a@b.c>\r\n\r\n  \r\nNOOP\r\n");
	assert_string_equal(d.out,
	                    DRV_BANNER R_UNKNOWN R_UNKNOWN "500 5.5.2 Error: bad syntax\r\n"
	                                                   "500 5.5.2 Error: bad syntax\r\n" R_OK);
	assert_int_equal(d.refusals[SMTP_REFUSAL_UNKNOWN_COMMAND], 2);
	assert_int_equal(d.refusals[SMTP_REFUSAL_SYNTAX], 2);
	drv_free(&d);
}

static void
test_sequence_errors(void **state)
{
	struct drv d;

	(void)state;
	run_str(&d, NULL,
	        MAIL "RCPT TO:<bob@example.org>\r\nDATA\r\n" EHLO "RCPT TO:<bob@example.org>\r\n"
	             "DATA\r\n" MAIL MAIL "DATA\r\n" RCPT "RSET\r\nRCPT TO:<bob@example.org>\r\n");
	assert_string_equal(d.out,
	                    DRV_BANNER "503 5.5.1 Error: send HELO/EHLO first\r\n"
	                               "503 5.5.1 Error: send HELO/EHLO first\r\n"
	                               "503 5.5.1 Error: send HELO/EHLO first\r\n" DRV_EHLO_REPLY
	                               "503 5.5.1 Error: need MAIL command\r\n"
	                               "503 5.5.1 Error: need MAIL command\r\n" R_MAIL
	                               "503 5.5.1 Error: nested MAIL command\r\n"
	                               "554 5.5.1 Error: no valid recipients\r\n" R_RCPT R_OK
	                               "503 5.5.1 Error: need MAIL command\r\n");
	assert_int_equal(d.refusals[SMTP_REFUSAL_SEQUENCE], 8);
	assert_int_equal(d.nmsg, 0);
	drv_free(&d);
}

static void
test_syntax_errors(void **state)
{
	struct drv d;

	(void)state;
	run_str(&d, NULL,
	        "EHLO\r\nEHLO two words\r\n" EHLO "MAIL FROM:alice@example.net\r\n"
	        "MAIL TO:<alice@example.net>\r\n"
	        "MAIL FROM:<alice>\r\n"
	        "MAIL FROM:<a..b@example.net>\r\n"
	        "MAIL FROM:<a@-bad.example>\r\n"
	        "MAIL FROM:<a@example.net>x\r\n"
	        "MAIL FROM:<a@example.net> FOO=bar\r\n"
	        "MAIL FROM:<a@example.net> BODY=BINARYMIME\r\n"
	        "MAIL FROM:<a@example.net> SIZE=12x\r\n"
	        "MAIL FROM:<a@example.net> SIZE=1 SIZE=2\r\n"
	        "MAIL FROM:<a@example.net> =x\r\n"
	        "MAIL FROM:<a@[192.0.2.7]>\r\n"
	        "RCPT TO:<>\r\n"
	        "RCPT TO:<bob>\r\n"
	        "RCPT TO:bob@example.org\r\n"
	        "RCPT TO:<bob@example.org> NOTIFY=NEVER\r\n"
	        "RCPT TO:<\"bob smith\"@example.org>\r\n"
	        "DATA now\r\nRSET x\r\n");
	assert_string_equal(d.out, DRV_BANNER "501 5.5.4 Syntax: EHLO hostname\r\n"
	                                      "501 5.5.4 Syntax: EHLO hostname\r\n" DRV_EHLO_REPLY
	                                      "501 5.5.4 Syntax: MAIL FROM:<address>\r\n"
	                                      "501 5.5.4 Syntax: MAIL FROM:<address>\r\n"
	                                      "501 5.1.7 Bad address syntax\r\n"
	                                      "501 5.1.7 Bad address syntax\r\n"
	                                      "501 5.1.7 Bad address syntax\r\n"
	                                      "501 5.5.4 Syntax: MAIL FROM:<address>\r\n"
	                                      "555 5.5.4 Unsupported option: FOO\r\n"
	                                      "501 5.5.4 Bad parameter: BODY\r\n"
	                                      "501 5.5.4 Bad parameter: SIZE\r\n"
	                                      "501 5.5.4 Bad parameter: SIZE\r\n"
	                                      "501 5.5.4 Bad parameter: =x\r\n" R_MAIL
	                                      "501 5.1.3 Bad address syntax\r\n"
	                                      "501 5.1.3 Bad address syntax\r\n"
	                                      "501 5.5.4 Syntax: RCPT TO:<address>\r\n"
	                                      "555 5.5.4 Unsupported option: NOTIFY\r\n" R_RCPT
	                                      "501 5.5.4 Syntax: DATA\r\n"
	                                      "501 5.5.4 Syntax: RSET\r\n");
	drv_free(&d);
}

static void
test_source_route_is_stripped(void **state)
{
	struct drv d;

	(void)state;
	run_str(&d, NULL,
	        EHLO "MAIL FROM:<@relay.example,@r2.example:alice@example.net>\r\n"
	             "RCPT TO:<@relay.example:bob@example.org>\r\nRCPT TO:<@-bad:x@example.org>\r\n"
	             "RCPT TO:<@a.example,:x@example.org>\r\nDATA\r\nx\r\n.\r\n");
	assert_string_equal(d.out,
	                    R_ENVELOPE "501 5.1.3 Bad address syntax\r\n"
	                               "501 5.1.3 Bad address syntax\r\n" R_354 R_QUEUED("Q00001"));
	assert_string_equal(d.msgs[0].mail_from, "alice@example.net");
	assert_string_equal(d.msgs[0].rcpts[0], "bob@example.org");
	drv_free(&d);
}

/* "NOOP " then x's to make a line of `total` octets with its CRLF. */
static char *
noop_line(size_t total)
{
	char *x = repeat('x', total - 7);
	char *line = format("NOOP %s\r\n", x);

	free(x);
	assert_int_equal(strlen(line), total);
	return line;
}

static void
test_command_line_limit(void **state)
{
	char *l511 = noop_line(511), *l512 = noop_line(512), *l513 = noop_line(513);
	char *huge = noop_line(100000);
	char *in = format("%s%s%s%sNOOP\r\n", l511, l512, l513, huge);
	struct drv d;

	(void)state;
	run_str(&d, NULL, in);
	/* RFC 5321 4.5.3.1.4: 512 octets with the CRLF pass, 513 do not. */
	assert_string_equal(d.out, DRV_BANNER R_OK R_OK "500 5.5.2 Line too long\r\n"
	                                                "500 5.5.2 Line too long\r\n" R_OK);
	assert_int_equal(d.refusals[SMTP_REFUSAL_LINE_TOO_LONG], 2);
	drv_free(&d);
	free(l511);
	free(l512);
	free(l513);
	free(huge);
	free(in);
}

static void
test_long_line_rest_is_not_a_command(void **state)
{
	/* The tail of an overlong line must not run, even if it looks like a command. */
	char *pad = repeat(' ', 600);
	char *in = format("NOOP%sQUIT\r\nNOOP\r\n", pad);
	struct drv d;

	(void)state;
	run_str(&d, NULL, in);
	assert_string_equal(d.out, DRV_BANNER "500 5.5.2 Line too long\r\n" R_OK);
	assert_false(d.closed);
	drv_free(&d);
	free(pad);
	free(in);
}

static void
test_text_line_limit(void **state)
{
	char *a998 = repeat('a', 998), *a999 = repeat('a', 999);
	char *ok = format(ENVELOPE "DATA\r\n.%s\r\n%s\r\n.\r\n", a998, a998);
	char *bad = format(ENVELOPE "DATA\r\n%s\r\nnext\r\n.\r\nNOOP\r\n", a999);
	char *expected = format(HEADER1("Q00001") "%s\r\n%s\r\n", a998, a998);
	struct drv d;

	(void)state;
	/* RFC 5321 4.5.3.1.6: 1000 octets with the CRLF; a stuffing dot does not count. */
	run_str(&d, NULL, ok);
	assert_string_equal(d.out, R_ENVELOPE R_354 R_QUEUED("Q00001"));
	assert_data(&d.msgs[0], expected);
	drv_free(&d);

	run_str(&d, NULL, bad);
	assert_string_equal(d.out,
	                    R_ENVELOPE R_354 "550 5.6.0 Message text line too long\r\n" R_OK);
	assert_int_equal(d.nmsg, 0);
	assert_int_equal(d.refusals[SMTP_REFUSAL_LINE_TOO_LONG], 1);
	drv_free(&d);
	free(a998);
	free(a999);
	free(ok);
	free(bad);
	free(expected);
}

static void
small_size(struct smtp_config *cfg)
{
	cfg->max_message_size = 1000;
}

static void
test_size_at_mail(void **state)
{
	struct drv d;

	(void)state;
	run_str(&d, NULL,
	        EHLO "MAIL FROM:<alice@example.net> SIZE=100001\r\n"
	             "MAIL FROM:<alice@example.net> SIZE=99999999999999999999999\r\n"
	             "MAIL FROM:<alice@example.net> size=100000\r\n");
	/* RFC 1870 6.1: refused at MAIL, before any octet of content. */
	assert_string_equal(d.out, DRV_BANNER DRV_EHLO_REPLY
	                    "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
	                    "501 5.5.4 Bad parameter: SIZE\r\n" R_MAIL);
	assert_int_equal(d.refusals[SMTP_REFUSAL_SIZE], 1);
	drv_free(&d);
}

static void
test_size_of_content(void **state)
{
	char *line = repeat('z', 98);
	char *exact = malloc(1001);
	char *over, *in_ok, *in_big;
	struct drv d;

	(void)state;
	exact[0] = '\0';
	for (int i = 0; i < 10; i++)
		strcat(strcat(exact, line), "\r\n");
	assert_int_equal(strlen(exact), 1000);
	over = format("y%s", exact);
	in_ok = format(ENVELOPE "DATA\r\n%s.\r\n", exact);
	in_big = format(ENVELOPE "DATA\r\n%s%s.\r\nQUIT\r\n", over, exact);

	run_str(&d, small_size, in_ok);
	assert_int_equal(d.nmsg, 1);
	assert_non_null(strstr(d.out, R_354 R_QUEUED("Q00001")));
	drv_free(&d);

	/* Over the limit: scanned to the real end of data, then 552; nothing stored. */
	run_str(&d, small_size, in_big);
	assert_int_equal(d.nmsg, 0);
	assert_non_null(strstr(d.out, R_354 "552 5.3.4 Error: message file too big\r\n" R_BYE));
	assert_int_equal(d.refusals[SMTP_REFUSAL_SIZE], 1);
	drv_free(&d);
	free(line);
	free(exact);
	free(over);
	free(in_ok);
	free(in_big);
}

static void
three_rcpts(struct smtp_config *cfg)
{
	cfg->max_recipients = 3;
}

static void
test_max_recipients(void **state)
{
	struct drv d;

	(void)state;
	run_str(&d, three_rcpts,
	        EHLO MAIL
	        "RCPT TO:<r1@example.org>\r\nRCPT TO:<r2@example.org>\r\n"
	        "RCPT TO:<r3@example.org>\r\nRCPT TO:<r4@example.org>\r\nDATA\r\nx\r\n.\r\n");
	assert_string_equal(d.out, DRV_BANNER DRV_EHLO_REPLY R_MAIL R_RCPT R_RCPT R_RCPT
	                    "452 4.5.3 Too many recipients\r\n" R_354 R_QUEUED("Q00001"));
	assert_int_equal(d.msgs[0].nrcpt, 3);
	assert_int_equal(d.rcpt_checks, 3);
	assert_int_equal(d.refusals[SMTP_REFUSAL_TOO_MANY_RCPTS], 1);
	drv_free(&d);
}

/* One mailbox named twice, in any case, is stored once: no duplicate delivery. */
static void
test_duplicate_rcpt_stored_once(void **state)
{
	struct drv d;

	(void)state;
	run_str(&d, NULL,
	        EHLO MAIL
	        "RCPT TO:<dup@example.org>\r\nRCPT TO:<DUP@Example.ORG>\r\n"
	        "RCPT TO:<dup@example.org>\r\nRCPT TO:<other@example.org>\r\nDATA\r\nx\r\n.\r\n");
	assert_string_equal(
	    d.out,
	    DRV_BANNER DRV_EHLO_REPLY R_MAIL R_RCPT R_RCPT R_RCPT R_RCPT R_354 R_QUEUED("Q00001"));
	assert_int_equal(d.nmsg, 1);
	assert_int_equal(d.msgs[0].nrcpt, 2);
	assert_string_equal(d.msgs[0].rcpts[0], "dup@example.org");
	assert_string_equal(d.msgs[0].rcpts[1], "other@example.org");
	drv_free(&d);
}

static void
three_errors(struct smtp_config *cfg)
{
	cfg->max_errors = 3;
}

static void
test_max_errors(void **state)
{
	struct drv d;

	(void)state;
	run_str(&d, three_errors, "FOO\r\nNOOP\r\nBAR\r\nBAZ\r\nNOOP\r\nQUX\r\n");
	assert_string_equal(d.out, DRV_BANNER R_UNKNOWN R_OK R_UNKNOWN R_UNKNOWN
	                    "421 4.7.0 " DRV_HOSTNAME " Too many errors\r\n");
	assert_true(d.closed);
	assert_int_equal(d.refusals[SMTP_REFUSAL_TOO_MANY_ERRORS], 1);
	drv_free(&d);
}

static void
test_temporary_errors_do_not_count(void **state)
{
	struct drv d;

	(void)state;
	run_str(&d, three_errors,
	        EHLO MAIL
	        "RCPT TO:<tempfail@example.org>\r\nRCPT TO:<full@example.org>\r\n"
	        "RCPT TO:<tempfail2@example.org>\r\nRCPT TO:<full2@example.org>\r\nNOOP\r\n");
	assert_false(d.closed);
	assert_int_equal(drv_count(d.out, "451 4.3.0 "), 2);
	assert_int_equal(drv_count(d.out, "452 4.3.1 "), 2);
	assert_non_null(strstr(d.out, "\r\n" R_OK));
	drv_free(&d);
}

static void
test_path_and_local_part_limits(void **state)
{
	char *l64 = repeat('a', 64), *l65 = repeat('a', 65);
	char *b = repeat('b', 63), *c = repeat('c', 63), *e = repeat('e', 63);
	/* 64 + "@" + 191 = 256 octets, RFC 5321 4.5.3.1.3. */
	char *p256 = format("%s@%s.%s.%s", l64, b, c, e);
	char *p257 = format("%s@%s.%s.x%s", l64, b, c, e);
	char *in = format(EHLO "MAIL FROM:<%s>\r\nMAIL FROM:<%s>\r\nRSET\r\n" MAIL
	                       "RCPT TO:<%s@example.org>\r\nRCPT TO:<%s@example.org>\r\n",
	                  p257, p256, l65, l64);
	struct drv d;

	(void)state;
	assert_int_equal(strlen(p256), 256);
	run_str(&d, NULL, in);
	assert_string_equal(d.out, DRV_BANNER DRV_EHLO_REPLY
	                    "501 5.1.7 Path too long\r\n" R_MAIL R_OK R_MAIL
	                    "501 5.1.3 Local part too long\r\n" R_RCPT);
	drv_free(&d);
	free(l64);
	free(l65);
	free(b);
	free(c);
	free(e);
	free(p256);
	free(p257);
	free(in);
}

static void
test_open_relay_refused(void **state)
{
	struct drv d;

	(void)state;
	run_str(&d, NULL,
	        EHLO MAIL "RCPT TO:<victim@elsewhere.example>\r\nDATA\r\nhello\r\n.\r\nQUIT\r\n");
	assert_string_equal(d.out, DRV_BANNER DRV_EHLO_REPLY R_MAIL
	                    "550 5.7.1 Relay access denied\r\n"
	                    "554 5.5.1 Error: no valid recipients\r\n" R_UNKNOWN R_UNKNOWN R_BYE);
	assert_int_equal(d.nmsg, 0);
	assert_int_equal(d.refusals[SMTP_REFUSAL_RELAY_DENIED], 1);
	drv_free(&d);
}

static void
no_rcpt_check(struct smtp_config *cfg)
{
	cfg->rcpt_check = NULL;
}

static void
test_no_rcpt_check_means_no_relay(void **state)
{
	struct drv d;

	(void)state;
	run_str(&d, no_rcpt_check, ENVELOPE);
	assert_string_equal(d.out,
	                    DRV_BANNER DRV_EHLO_REPLY R_MAIL "550 5.7.1 Relay access denied\r\n");
	drv_free(&d);
}

/*
 * A host with aliases: alias@example.org is real@example.org, and
 * fullalias@example.org is an alias of full@example.org, whose shard is full.
 */
static enum smtp_rcpt_verdict
alias_rcpt_check(void *host, const char *addr, char canonical[SMTP_PATH_MAX + 1])
{
	if (strcmp(addr, "alias@example.org") == 0) {
		snprintf(canonical, SMTP_PATH_MAX + 1, "real@example.org");
		return drv_rcpt_check(host, "real@example.org", (char[SMTP_PATH_MAX + 1]){""});
	}
	if (strcmp(addr, "fullalias@example.org") == 0) {
		/* The verdict is the canonical address's, which the host wrote too. */
		snprintf(canonical, SMTP_PATH_MAX + 1, "full@example.org");
		return drv_rcpt_check(host, "full@example.org", (char[SMTP_PATH_MAX + 1]){""});
	}
	return drv_rcpt_check(host, addr, canonical);
}

static void
with_aliases(struct smtp_config *cfg)
{
	cfg->rcpt_check = alias_rcpt_check;
}

/*
 * smtp_config.rcpt_check answers the verdict and the canonical address at
 * once: an accepted alias is stored under its canonical mailbox, and a
 * refused one stores nothing even though the host wrote its canonical address.
 */
static void
test_alias_stored_as_canonical(void **state)
{
	struct drv d;

	(void)state;
	run_str(&d, with_aliases,
	        EHLO MAIL "RCPT TO:<alias@example.org>\r\nRCPT TO:<fullalias@example.org>\r\n" RCPT
	                  "DATA\r\nx\r\n.\r\n");
	assert_string_equal(
	    d.out,
	    R_ENVELOPE "452 4.3.1 Insufficient system storage\r\n" R_RCPT R_354 R_QUEUED("Q00001"));
	assert_int_equal(d.rcpt_checks, 3);
	assert_int_equal(d.msgs[0].nrcpt, 2);
	assert_string_equal(d.msgs[0].rcpts[0], "real@example.org");
	assert_string_equal(d.msgs[0].rcpts[1], "bob@example.org");
	drv_free(&d);
}

static void
test_rcpt_verdicts(void **state)
{
	struct drv d;

	(void)state;
	run_str(&d, NULL,
	        EHLO MAIL "RCPT TO:<unknown@example.org>\r\nRCPT TO:<tempfail@example.org>\r\n"
	                  "RCPT TO:<full@example.org>\r\nRCPT TO:<postmaster>\r\n"
	                  "RCPT TO:<baddomain@example.org>\r\nRCPT TO:<victim@evil.test>\r\n"
	                  "RCPT TO:<@a.example,@b.example:Postmaster>\r\n");
	assert_string_equal(d.out, DRV_BANNER DRV_EHLO_REPLY R_MAIL
	                    "550 5.1.1 Recipient address rejected: User unknown\r\n"
	                    "451 4.3.0 Recipient address rejected: Try again later\r\n"
	                    "452 4.3.1 Insufficient system storage\r\n" R_RCPT
	                    "553 5.1.3 Recipient address rejected: invalid domain name\r\n"
	                    "550 5.7.1 Relay access denied\r\n"
	                    /* RFC 5321 4.1.1.3: <Postmaster> takes no source route */
	                    "501 5.1.3 Bad address syntax\r\n");
	assert_int_equal(d.refusals[SMTP_REFUSAL_UNKNOWN_USER], 1);
	assert_int_equal(d.refusals[SMTP_REFUSAL_TEMPFAIL], 2);
	assert_int_equal(d.refusals[SMTP_REFUSAL_RELAY_DENIED], 1);
	assert_int_equal(d.refusals[SMTP_REFUSAL_SYNTAX], 2);
	assert_int_equal(d.rcpt_checks, 6); /* the route never reached the host */
	drv_free(&d);
}

static void
test_smtputf8(void **state)
{
	struct drv d;

	(void)state;
	run_str(&d, NULL,
	        EHLO "MAIL FROM:<\xc3\xa5lice@example.net>\r\n"
	             "MAIL FROM:<\xc3\xa5lice@example.net> SMTPUTF8 BODY=7BIT\r\n"
	             "RCPT TO:<b\xc3\xb8\x62@example.org>\r\nRCPT TO:<bad\xc3@example.org>\r\n"
	             "DATA\r\nx\r\n.\r\n");
	assert_string_equal(d.out, DRV_BANNER DRV_EHLO_REPLY
	                    "553 5.6.7 Non-ASCII address needs SMTPUTF8\r\n" R_MAIL R_RCPT
	                    "501 5.1.3 Bad address syntax\r\n" R_354 R_QUEUED("Q00001"));
	assert_true(d.msgs[0].smtputf8);
	assert_non_null(strstr((const char *)d.msgs[0].data, "with UTF8SMTP id Q00001"));
	drv_free(&d);
}

static void
test_helo_is_plain_smtp(void **state)
{
	struct drv d;

	(void)state;
	run_str(&d, NULL, "HELO client.example\r\n" MAIL RCPT "DATA\r\nx\r\n.\r\n");
	assert_string_equal(d.out, DRV_BANNER "250 " DRV_HOSTNAME
	                                      "\r\n" R_MAIL R_RCPT R_354 R_QUEUED("Q00001"));
	assert_non_null(strstr((const char *)d.msgs[0].data, ") with SMTP id Q00001\r\n"));
	drv_free(&d);
}

#define R_BARE_CMD "500 5.5.2 Error: bare LF or CR in command refused\r\n"

static void
test_bare_lf_cr_nul_in_commands(void **state)
{
	struct drv d;

	(void)state;
	/* Only CR LF ends a line: "NOOP LF NO CR OP" is one line, refused once. */
	run_all(&d, SMTP_BARE_LF_REJECT, NULL, LIT("NOOP\nNO\rOP\r\nNO\0OP\r\nNOOP\r\r\nNOOP\r\n"));
	assert_string_equal(d.out, DRV_BANNER R_BARE_CMD
	                    "500 5.5.2 Error: NUL in command refused\r\n" R_BARE_CMD R_OK);
	assert_int_equal(d.refusals[SMTP_REFUSAL_BARE_LF], 2);
	drv_free(&d);
	/* The same under NORMALIZE: that policy is about message content only. */
	run_all(&d, SMTP_BARE_LF_NORMALIZE, NULL, LIT("NOOP\nNOOP\r\nNOOP\r\n"));
	assert_string_equal(d.out, DRV_BANNER R_BARE_CMD R_OK);
	drv_free(&d);
	/* A line of nothing but a bare LF, and one of a bare CR. */
	run_all(&d, SMTP_BARE_LF_REJECT, NULL, LIT("\n\r\n\r\r\nNOOP\r\n"));
	assert_string_equal(d.out, DRV_BANNER R_BARE_CMD R_BARE_CMD R_OK);
	drv_free(&d);
}

/*
 * Issue 15: "RSET LF MAIL FROM:<x@example.org> CRLF" ran the MAIL.  A proxy
 * in front that splits lines at CR LF only sees one line there, so must we:
 * one 500 and no transaction, whatever the policy and however it is cut.
 */
static void
test_bare_lf_does_not_end_a_command(void **state)
{
	static const enum smtp_bare_lf_policy policies[] = {SMTP_BARE_LF_REJECT,
	                                                    SMTP_BARE_LF_NORMALIZE};
	static const char *const bare[] = {"\n", "\r"};

	(void)state;
	for (size_t p = 0; p < 2; p++) {
		for (size_t b = 0; b < 2; b++) {
			char *in = format(EHLO "RSET%sMAIL FROM:<x@example.org>\r\n" RCPT
			                       "DATA\r\nRSET%sMAIL FROM:<x@example.org>\r\n.\r\n",
			                  bare[b], bare[b]);
			struct drv d;

			run_all(&d, policies[p], NULL, (const uint8_t *)in, strlen(in));
			/* RCPT and DATA then find no transaction: nothing after the bare octet ran.
			 */
			assert_string_equal(
			    d.out, DRV_BANNER DRV_EHLO_REPLY R_BARE_CMD
			    "503 5.5.1 Error: need MAIL command\r\n"
			    "503 5.5.1 Error: need MAIL command\r\n" R_BARE_CMD R_UNKNOWN);
			assert_int_equal(d.rcpt_checks, 0);
			assert_int_equal(d.nmsg, 0);
			assert_int_equal(d.refusals[SMTP_REFUSAL_BARE_LF], 2);
			drv_free(&d);
			free(in);
		}
	}
}

/* A pipelined group: the bare LF swallows RCPT into MAIL's line; neither runs. */
static void
test_pipelined_bare_lf_swallows_next_command(void **state)
{
	struct drv d;

	(void)state;
	run_str(&d, NULL,
	        EHLO "MAIL FROM:<alice@example.net>\nRCPT TO:<bob@example.org>\r\nDATA\r\n"
	             "x\r\n.\r\n" MAIL RCPT "DATA\r\ny\r\n.\r\n");
	assert_string_equal(d.out, DRV_BANNER DRV_EHLO_REPLY R_BARE_CMD
	                    "503 5.5.1 Error: need MAIL command\r\n" R_UNKNOWN R_UNKNOWN R_MAIL
	                        R_RCPT R_354 R_QUEUED("Q00001"));
	assert_int_equal(d.rcpt_checks, 1);
	assert_int_equal(d.nmsg, 1);
	assert_data(&d.msgs[0], HEADER1("Q00001") "y\r\n");
	drv_free(&d);
}

/*
 * A CR that ends a BDAT chunk is content: the LF after it opens the next
 * command line rather than ending it, so that line holds a bare LF.
 */
static void
test_crlf_split_by_bdat_is_not_a_line_end(void **state)
{
	struct drv d;

	(void)state;
	run_str(&d, NULL, ENVELOPE "BDAT 2\r\nx\r\nNOOP\r\nBDAT 1 LAST\r\n\n");
	assert_string_equal(d.out, R_ENVELOPE
	                    "250 2.0.0 2 octets received\r\n" R_BARE_CMD R_QUEUED("Q00001"));
	/* The content's CR and LF, in two chunks, are one CR LF. */
	assert_data(&d.msgs[0], HEADER1("Q00001") "x\r\n");
	drv_free(&d);
}

/*
 * Memory stays bounded while the CR LF is due: an over-long line holding
 * bare LFs is refused once as too long, and its tail never runs; a line
 * exactly at the limit is judged on its bare LF.
 */
static void
test_long_line_with_bare_lf(void **state)
{
	char *pad = repeat('x', 600), *fill = repeat('x', 510 - strlen("NOOP\nQUIT "));
	char *in = format("NOOP\n%s\nQUIT\r\nNOOP\n%s\r\nNOOP\r\nNOOP\r\n", pad, fill);
	struct drv d;

	(void)state;
	run_str(&d, NULL, in);
	assert_string_equal(d.out, DRV_BANNER "500 5.5.2 Line too long\r\n" R_BARE_CMD R_OK R_OK);
	assert_false(d.closed);
	drv_free(&d);
	free(in);
	/* 510 octets before the CR LF, with a bare LF: still a bare LF, not too long. */
	in = format("NOOP\nQUIT %s\r\nNOOP\r\n", fill);
	assert_int_equal(strlen(in), 512 + strlen("NOOP\r\n"));
	run_str(&d, NULL, in);
	assert_string_equal(d.out, DRV_BANNER R_BARE_CMD R_OK);
	drv_free(&d);
	free(in);
	/* One more octet and it is over the limit: too long, whatever it holds. */
	in = format("NOOP\nQUIT x%s\r\nNOOP\r\n", fill);
	run_str(&d, NULL, in);
	assert_string_equal(d.out, DRV_BANNER "500 5.5.2 Line too long\r\n" R_OK);
	drv_free(&d);
	free(in);
	free(pad);
	free(fill);
}

/*
 * RFC 5321 3.2: after HELO no service extension was offered, so none may be
 * used: MAIL/RCPT parameters get 555 (RFC 5321 4.1.1.11), BDAT and STARTTLS
 * 502; a refused BDAT's octets are still skipped, never read as commands.
 */
static void
tls_offered(struct smtp_config *cfg)
{
	cfg->tls_available = true;
}

static void
test_no_extensions_after_helo(void **state)
{
	struct drv d;

	(void)state;
	run_str(&d, tls_offered,
	        "HELO client.example\r\nBDAT 6\r\nQUIT\r\nMAIL FROM:<a@example.net> SIZE=100\r\n"
	        "MAIL FROM:<a@example.net> BODY=8BITMIME\r\nMAIL FROM:<a@example.net> SMTPUTF8\r\n"
	        "MAIL FROM:<a@example.net> BODY=7BIT SIZE=1\r\n" MAIL
	        "RCPT TO:<bob@example.org> NOTIFY=NEVER\r\n" RCPT "BDAT 5 LAST\r\nRSET\r"
	        "STARTTLS\r\nDATA\r\nx\r\n.\r\n");
	assert_string_equal(
	    d.out, DRV_BANNER
	    "250 " DRV_HOSTNAME "\r\n"
	    "502 5.5.1 Error: BDAT is a service extension: send EHLO, not HELO\r\n"
	    "555 5.5.4 Unsupported option: SIZE (no service extensions after HELO)\r\n"
	    "555 5.5.4 Unsupported option: BODY (no service extensions after HELO)\r\n"
	    "555 5.5.4 Unsupported option: SMTPUTF8 (no service extensions after "
	    "HELO)\r\n"
	    "555 5.5.4 Unsupported option: BODY (no service extensions after HELO)\r\n" R_MAIL
	    "555 5.5.4 Unsupported option: NOTIFY (no service extensions after HELO)\r\n" R_RCPT
	    "502 5.5.1 Error: BDAT is a service extension: send EHLO, not HELO\r\n"
	    "502 5.5.1 Error: STARTTLS is a service extension: send EHLO, not "
	    "HELO\r\n" R_354 R_QUEUED("Q00001"));
	assert_int_equal(d.nmsg, 1);
	assert_false(d.msgs[0].chunked);
	assert_non_null(strstr((const char *)d.msgs[0].data, ") with SMTP id Q00001\r\n"));
	drv_free(&d);

	/* EHLO after HELO opens the extensions again. */
	run_str(&d, NULL,
	        "HELO client.example\r\n" EHLO "MAIL FROM:<a@example.net> SIZE=100\r\n" RCPT
	        "BDAT 3 LAST\r\nx\r\n");
	assert_string_equal(d.out,
	                    DRV_BANNER "250 " DRV_HOSTNAME
	                               "\r\n" DRV_EHLO_REPLY R_MAIL R_RCPT R_QUEUED("Q00001"));
	assert_true(d.msgs[0].chunked);
	drv_free(&d);
}

static void
test_bdat_chunks(void **state)
{
	struct drv d;

	(void)state;
	run_str(&d, NULL,
	        ENVELOPE "BDAT 5\r\nHelloBDAT 8\r\n World\r\nBDAT 0 LAST\r\n"
	                 "MAIL FROM:<a@example.net>\r\n" RCPT "BDAT 9 last\r\n.\r\nbyte\r\n"
	                 "MAIL FROM:<a@example.net>\r\n" RCPT "BDAT 0 LAST\r\n");
	assert_string_equal(d.out, R_ENVELOPE "250 2.0.0 5 octets received\r\n"
	                                      "250 2.0.0 8 octets received\r\n" R_QUEUED("Q00001")
	                                          R_MAIL R_RCPT R_QUEUED("Q00002")
	                                              R_MAIL R_RCPT R_QUEUED("Q00003"));
	assert_int_equal(d.nmsg, 3);
	assert_true(d.msgs[0].chunked);
	assert_data(&d.msgs[0], HEADER1("Q00001") "Hello World\r\n");
	/* BDAT octets are raw: no dot-unstuffing, no end-of-data. */
	assert_data(&d.msgs[1], HEADER1("Q00002") ".\r\nbyte\r\n");
	assert_data(&d.msgs[2], HEADER1("Q00003"));
	drv_free(&d);
}

static void
test_bdat_over_size(void **state)
{
	char *chunk = malloc(601);
	char *in;
	struct drv d;

	(void)state;
	assert_non_null(chunk);
	for (int i = 0; i < 100; i++)
		memcpy(chunk + i * 6, "qqqq\r\n", 6);
	chunk[600] = '\0';
	/* 600 + 600 > 1000: the second chunk fails, the next ones are read and discarded. */
	in = format(EHLO MAIL RCPT "BDAT 600\r\n%sBDAT 600\r\n%sBDAT 4\r\nMAILBDAT 3 LAST\r\n"
	                           "xyz" MAIL RCPT "BDAT 2 LAST\r\nok",
	            chunk, chunk);
	run_str(&d, small_size, in);
	assert_string_equal(
	    d.out, DRV_BANNER
	    "250-" DRV_HOSTNAME "\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n"
	    "250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n" R_MAIL R_RCPT
	    "250 2.0.0 600 octets received\r\n"
	    "552 5.3.4 Error: message file too big\r\n"
	    "552 5.3.4 Error: message file too big\r\n"
	    "552 5.3.4 Error: message file too big\r\n" R_MAIL R_RCPT R_QUEUED("Q00002"));
	assert_int_equal(d.nmsg, 1);
	assert_data(&d.msgs[0], HEADER1("Q00002") "ok");
	/* Counted once: the repeats answer chunks already in the pipeline (RFC 3030 3). */
	assert_int_equal(d.refusals[SMTP_REFUSAL_SIZE], 1);
	drv_free(&d);
	free(chunk);
	free(in);
}

#define SMUGGLED "MAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@example.org>\r\n"

static void
test_refused_bdat_octets_are_skipped(void **state)
{
	/* BDAT before MAIL, then BDAT with no valid recipient: 503/554, octets never run. */
	char *in = format(EHLO "BDAT %zu\r\n" SMUGGLED MAIL "RCPT TO:<x@elsewhere.example>\r\n"
	                       "BDAT %zu LAST\r\n" SMUGGLED "NOOP\r\n",
	                  strlen(SMUGGLED), strlen(SMUGGLED));
	struct drv d;

	(void)state;
	run_str(&d, NULL, in);
	assert_string_equal(d.out, DRV_BANNER DRV_EHLO_REPLY
	                    "503 5.5.1 Error: need MAIL command\r\n" R_MAIL
	                    "550 5.7.1 Relay access denied\r\n"
	                    "554 5.5.1 Error: no valid recipients\r\n" R_OK);
	assert_int_equal(d.rcpt_checks, 1);
	assert_int_equal(d.nmsg, 0);
	drv_free(&d);
	free(in);
}

static void
test_bdat_before_ehlo_is_skipped(void **state)
{
	struct drv d;

	(void)state;
	run_str(&d, NULL, "BDAT 6\r\nQUIT\r\nNOOP\r\n");
	assert_string_equal(d.out, DRV_BANNER "503 5.5.1 Error: send HELO/EHLO first\r\n" R_OK);
	assert_false(d.closed);
	drv_free(&d);
}

static void
test_data_after_bdat(void **state)
{
	struct drv d;

	(void)state;
	run_str(&d, NULL,
	        ENVELOPE "BDAT 3\r\nabcDATA\r\nRCPT TO:<carol@example.org>\r\nBDAT 3 LAST\r\ndef");
	assert_string_equal(d.out,
	                    R_ENVELOPE "250 2.0.0 3 octets received\r\n"
	                               "503 5.5.1 Error: DATA after BDAT\r\n"
	                               "503 5.5.1 Error: RCPT after BDAT\r\n" R_QUEUED("Q00001"));
	assert_data(&d.msgs[0], HEADER1("Q00001") "abcdef");
	drv_free(&d);
}

static void
test_bdat_bad_syntax_closes(void **state)
{
	struct drv d;

	(void)state;
	run_str(&d, NULL, ENVELOPE "BDAT ten\r\nMAIL FROM:<evil@x.example>\r\n");
	assert_string_equal(d.out, R_ENVELOPE "501 5.5.4 Syntax: BDAT count [LAST]\r\n"
	                                      "421 4.5.0 " DRV_HOSTNAME
	                                      " Error: lost BDAT synchronization\r\n");
	assert_true(d.closed);
	drv_free(&d);
}

static void
test_backpressure(void **state)
{
	const size_t count = 10000;
	size_t len = strlen(EHLO) + count * 6, off = 0, used, pending;
	uint8_t *in = malloc(len);
	struct drv d;
	enum smtp_input_status st;

	(void)state;
	memcpy(in, EHLO, strlen(EHLO));
	for (size_t i = 0; i < count; i++)
		memcpy(in + strlen(EHLO) + i * 6, "NOOP\r\n", 6);
	drv_init(&d, SMTP_BARE_LF_REJECT);
	drv_start(&d);
	/* A client that never reads: the engine stops consuming at 64 KiB of output. */
	st = smtp_session_input(d.s, in, len, &used);
	assert_int_equal(st, SMTP_NEED_MORE);
	assert_true(used < len);
	smtp_session_output(d.s, &pending);
	assert_true(pending >= 64 * 1024 && pending < 64 * 1024 + 512);
	assert_int_equal(smtp_session_input(d.s, in + used, len - used, &off), SMTP_NEED_MORE);
	assert_int_equal(off, 0);
	/* Once drained, it goes on from where it stopped. */
	drv_drain(&d);
	drv_feed(&d, in + used, len - used, len);
	assert_int_equal(drv_count(d.out, R_OK), count);
	drv_free(&d);
	free(in);
}

static void
test_awaiting_store_and_shutdown(void **state)
{
	static const char in[] = ENVELOPE "DATA\r\nx\r\n.\r\nNOOP\r\n";
	size_t used, again;
	struct drv d;
	const struct smtp_message *m;

	(void)state;
	drv_init(&d, SMTP_BARE_LF_REJECT);
	drv_start(&d);
	assert_int_equal(smtp_session_input(d.s, LIT(in), &used), SMTP_MESSAGE_READY);
	assert_int_equal(used, strlen(in) - strlen("NOOP\r\n"));
	assert_true(smtp_session_awaiting_store(d.s));
	m = smtp_session_message(d.s);
	assert_non_null(m);
	assert_string_equal(m->client_addr, "192.0.2.1");
	assert_string_equal(m->helo, "client.example");
	/* Nothing more is consumed until the store answers. */
	assert_int_equal(
	    smtp_session_input(d.s, (const uint8_t *)in + used, strlen(in) - used, &again),
	    SMTP_MESSAGE_READY);
	assert_int_equal(again, 0);
	smtp_session_shutdown(d.s);
	drv_drain(&d);
	assert_string_equal(d.out, R_ENVELOPE R_354);
	smtp_session_message_done(d.s, PA_OK);
	assert_null(smtp_session_message(d.s));
	drv_drain(&d);
	assert_string_equal(d.out,
	                    R_ENVELOPE R_354 R_QUEUED("Q00001") "421 4.3.2 " DRV_HOSTNAME
	                                                        " Service shutting down\r\n");
	assert_true(smtp_session_closing(d.s));
	assert_int_equal(
	    smtp_session_input(d.s, (const uint8_t *)in + used, strlen(in) - used, &again),
	    SMTP_CLOSE);
	drv_free(&d);
}

/*
 * A content filter's reply instead of the store's: every line as given, the
 * last one counted as the refusal; the session goes on, the 421 of a
 * shutdown asked meanwhile after it.
 */
static void
test_message_refused(void **state)
{
	static const char in[] = ENVELOPE "DATA\r\nx\r\n.\r\n";
	size_t used;
	struct drv d;

	(void)state;
	drv_init(&d, SMTP_BARE_LF_REJECT);
	drv_start(&d);
	assert_int_equal(smtp_session_input(d.s, LIT(in), &used), SMTP_MESSAGE_READY);
	smtp_session_message_refused(d.s, SMTP_REFUSAL_MILTER_REJECT,
	                             "554-5.7.1 Go away\r\n554 5.7.1 Spam");
	assert_null(smtp_session_message(d.s));
	assert_false(smtp_session_awaiting_store(d.s));
	assert_int_equal(d.refusals[SMTP_REFUSAL_MILTER_REJECT], 1);
	/* a second call is ignored: no transaction waits */
	smtp_session_message_refused(d.s, SMTP_REFUSAL_MILTER_REJECT, "550 5.7.1 again");
	drv_drain(&d);
	assert_string_equal(d.out, R_ENVELOPE R_354 "554-5.7.1 Go away\r\n554 5.7.1 Spam\r\n");
	/* a new transaction may follow */
	assert_int_equal(smtp_session_input(d.s, LIT(in), &used), SMTP_MESSAGE_READY);
	smtp_session_shutdown(d.s);
	smtp_session_message_refused(d.s, SMTP_REFUSAL_MILTER_TEMPFAIL,
	                             "451 4.7.1 Service unavailable - try again later");
	assert_int_equal(d.refusals[SMTP_REFUSAL_MILTER_TEMPFAIL], 1);
	drv_drain(&d);
	assert_non_null(strstr(d.out, "451 4.7.1 Service unavailable - try again later\r\n"
	                              "421 4.3.2 " DRV_HOSTNAME " Service shutting down\r\n"));
	assert_true(smtp_session_closing(d.s));
	drv_free(&d);
}

static void
test_timeouts(void **state)
{
	struct drv d;

	(void)state;
	drv_init(&d, SMTP_BARE_LF_REJECT);
	drv_start(&d);
	assert_int_equal(smtp_session_timeout_ms(d.s), 300000);
	drv_feed_str(&d, ENVELOPE "DATA\r\npartial", 1000);
	assert_int_equal(smtp_session_timeout_ms(d.s), 180000);
	smtp_session_timeout(d.s);
	assert_true(smtp_session_closing(d.s));
	drv_drain(&d);
	assert_string_equal(d.out, R_ENVELOPE R_354 "421 4.4.2 " DRV_HOSTNAME
	                                            " Error: timeout exceeded\r\n");
	assert_int_equal(d.refusals[SMTP_REFUSAL_TIMEOUT], 1);
	drv_free(&d);

	drv_init(&d, SMTP_BARE_LF_REJECT);
	drv_start(&d);
	drv_feed_str(&d, ENVELOPE "BDAT 10\r\nabc", 1000);
	assert_int_equal(smtp_session_timeout_ms(d.s), 180000);
	drv_feed_str(&d, "defghijNOOP\r\n", 1000);
	assert_int_equal(smtp_session_timeout_ms(d.s), 300000);
	drv_free(&d);
}

static void
test_refuse_connection(void **state)
{
	struct drv d;
	size_t used;

	(void)state;
	drv_init(&d, SMTP_BARE_LF_REJECT);
	d.s = smtp_session_new(&d.cfg, &d, "192.0.2.1");
	assert_non_null(d.s);
	smtp_session_refuse(d.s, "421 4.3.2 Busy, try later\r\n250 injected");
	assert_true(smtp_session_closing(d.s));
	assert_int_equal(smtp_session_input(d.s, LIT("EHLO x\r\n"), &used), SMTP_CLOSE);
	assert_int_equal(used, 0);
	drv_drain(&d);
	assert_string_equal(d.out, "421 4.3.2 Busy, try later\r\n");
	drv_free(&d);
}

static void
test_refusal_names(void **state)
{
	(void)state;
	assert_string_equal(smtp_refusal_name(SMTP_REFUSAL_RELAY_DENIED), "relay_denied");
	assert_string_equal(smtp_refusal_name(SMTP_REFUSAL_BARE_LF), "bare_lf");
	assert_string_equal(smtp_refusal_name(SMTP_REFUSAL_COUNT), "unknown");
	for (int i = 0; i < SMTP_REFUSAL_COUNT; i++) {
		assert_string_not_equal(smtp_refusal_name((enum smtp_refusal)i), "unknown");
		for (int j = 0; j < i; j++)
			assert_string_not_equal(smtp_refusal_name((enum smtp_refusal)i),
			                        smtp_refusal_name((enum smtp_refusal)j));
	}
}

static void
test_ehlo_resets_transaction(void **state)
{
	struct drv d;

	(void)state;
	run_str(&d, NULL, ENVELOPE EHLO "DATA\r\n" MAIL);
	assert_string_equal(d.out, R_ENVELOPE DRV_EHLO_REPLY
	                    "503 5.5.1 Error: need MAIL command\r\n" R_MAIL);
	drv_free(&d);
}

/* Several sessions, fed whole, byte by byte and 7 at a time, must agree exactly. */
static void
test_chunking_equivalence(void **state)
{
	static const char *const scripts[] = {
	    ENVELOPE "DATA\r\nA: b\r\n\r\n..x\r\n.\r\n" MAIL RCPT "DATA\r\n\r\n.\r\nQUIT\r\n",
	    ENVELOPE "BDAT 3\r\n\r\n.BDAT 4 LAST\r\n\r\r\n\n" MAIL RCPT "BDAT 0 LAST\r\n",
	    "FOO\r\n" EHLO "MAIL FROM:<a>\r\n" MAIL "RCPT TO:<x@y.example>\r\n" RCPT
	    "DATA\r\nbad\nline\r\n.\r\nHELP\r\nRSET\r\nBDAT 2\r\nxxNOOP\r\n" MAIL RCPT
	    "DATA\r\nok\r\n.\r\n",
	    EHLO MAIL RCPT "DATA\r\nx\r\n.\r\nNOOP\r\nDATA\r\n" MAIL RCPT
	                   "BDAT 1\r\n\rBDAT 1 LAST\r\n\n" MAIL RCPT
	                   "DATA\r\n\r\n..\r\n.\r\nQUIT\r\n",
	};
	static const enum smtp_bare_lf_policy policies[] = {SMTP_BARE_LF_REJECT,
	                                                    SMTP_BARE_LF_NORMALIZE};

	(void)state;
	for (size_t i = 0; i < sizeof(scripts) / sizeof(scripts[0]); i++) {
		for (size_t p = 0; p < 2; p++) {
			struct drv d, other;

			run_all(&d, policies[p], NULL, (const uint8_t *)scripts[i],
			        strlen(scripts[i]));
			assert_true(d.nmsg > 0);
			/* And at every other chunk size up to 23. */
			for (size_t chunk = 2; chunk < 24; chunk++) {
				drv_run(&other, policies[p], NULL, (const uint8_t *)scripts[i],
				        strlen(scripts[i]), chunk);
				drv_assert_same(&d, &other);
				drv_free(&other);
			}
			drv_free(&d);
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ehlo_lists_every_extension),
	    cmocka_unit_test(test_full_transaction),
	    cmocka_unit_test(test_several_transactions),
	    cmocka_unit_test(test_store_failure_gives_451),
	    cmocka_unit_test(test_dot_unstuffing),
	    cmocka_unit_test(test_empty_message),
	    cmocka_unit_test(test_enhanced_status_codes),
	    cmocka_unit_test(test_vrfy_expn_help_noop_quit),
	    cmocka_unit_test(test_commands_are_case_insensitive),
	    cmocka_unit_test(test_unknown_command),
	    cmocka_unit_test(test_sequence_errors),
	    cmocka_unit_test(test_syntax_errors),
	    cmocka_unit_test(test_source_route_is_stripped),
	    cmocka_unit_test(test_command_line_limit),
	    cmocka_unit_test(test_long_line_rest_is_not_a_command),
	    cmocka_unit_test(test_text_line_limit),
	    cmocka_unit_test(test_size_at_mail),
	    cmocka_unit_test(test_size_of_content),
	    cmocka_unit_test(test_max_recipients),
	    cmocka_unit_test(test_duplicate_rcpt_stored_once),
	    cmocka_unit_test(test_max_errors),
	    cmocka_unit_test(test_temporary_errors_do_not_count),
	    cmocka_unit_test(test_path_and_local_part_limits),
	    cmocka_unit_test(test_open_relay_refused),
	    cmocka_unit_test(test_no_rcpt_check_means_no_relay),
	    cmocka_unit_test(test_rcpt_verdicts),
	    cmocka_unit_test(test_alias_stored_as_canonical),
	    cmocka_unit_test(test_smtputf8),
	    cmocka_unit_test(test_helo_is_plain_smtp),
	    cmocka_unit_test(test_bare_lf_cr_nul_in_commands),
	    cmocka_unit_test(test_bare_lf_does_not_end_a_command),
	    cmocka_unit_test(test_pipelined_bare_lf_swallows_next_command),
	    cmocka_unit_test(test_crlf_split_by_bdat_is_not_a_line_end),
	    cmocka_unit_test(test_long_line_with_bare_lf),
	    cmocka_unit_test(test_no_extensions_after_helo),
	    cmocka_unit_test(test_bdat_chunks),
	    cmocka_unit_test(test_bdat_over_size),
	    cmocka_unit_test(test_refused_bdat_octets_are_skipped),
	    cmocka_unit_test(test_bdat_before_ehlo_is_skipped),
	    cmocka_unit_test(test_data_after_bdat),
	    cmocka_unit_test(test_bdat_bad_syntax_closes),
	    cmocka_unit_test(test_backpressure),
	    cmocka_unit_test(test_awaiting_store_and_shutdown),
	    cmocka_unit_test(test_timeouts),
	    cmocka_unit_test(test_refuse_connection),
	    cmocka_unit_test(test_refusal_names),
	    cmocka_unit_test(test_message_refused),
	    cmocka_unit_test(test_ehlo_resets_transaction),
	    cmocka_unit_test(test_chunking_equivalence),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
