/*
 * test_smtp_starttls.c: STARTTLS (RFC 3207) in the SMTP engine.
 *
 * The engine is sans-I/O, so the TLS handshake itself is the host's: these
 * tests play the host, calling smtp_session_tls_started() where the
 * handshake would end.  What they check: STARTTLS is offered only when TLS
 * is available and never inside TLS; whatever a client pipelines after
 * STARTTLS is discarded, however the input is split (CVE-2011-0411); the
 * session starts afresh after the handshake; tls_required refuses MAIL in
 * clear; the Received: header names ESMTPS, the version and the cipher.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "smtp_driver.h"

#define EHLO "EHLO client.example\r\n"
#define R_EHLO_TLS                                                                                 \
	"250-" DRV_HOSTNAME "\r\n250-PIPELINING\r\n250-SIZE 100000\r\n250-8BITMIME\r\n"            \
	"250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250-STARTTLS\r\n250 CHUNKING\r\n"
#define R_220_TLS "220 2.0.0 Ready to start TLS\r\n"
#define VERSION "TLSv1.3"
#define CIPHER "TLS_AES_256_GCM_SHA384"

static void
tls_on(struct smtp_config *cfg)
{
	cfg->tls_available = true;
}

static void
tls_required(struct smtp_config *cfg)
{
	cfg->tls_available = true;
	cfg->tls_required = true;
}

/*
 * Feeds `clear` in chunks of `chunk` octets, as a host would: the input after
 * SMTP_STARTTLS is reported consumed and dropped.  Then, if STARTTLS was seen,
 * the handshake "completes" and `inside` is fed as the decrypted stream.
 * Returns how many times SMTP_STARTTLS was returned.
 */
static unsigned
run_tls(struct drv *d, void (*tweak)(struct smtp_config *), const char *clear, const char *inside,
        size_t chunk)
{
	const uint8_t *in = (const uint8_t *)clear;
	size_t len = strlen(clear), off = 0;
	unsigned starttls = 0;

	drv_init(d, SMTP_BARE_LF_REJECT);
	if (tweak != NULL)
		tweak(&d->cfg);
	drv_start(d);
	while (off < len) {
		size_t n = len - off < chunk ? len - off : chunk, used = 0;
		enum smtp_input_status st = smtp_session_input(d->s, in + off, n, &used);

		assert_true(st == SMTP_NEED_MORE || st == SMTP_STARTTLS);
		if (st == SMTP_STARTTLS) {
			assert_int_equal(used, n); /* the rest of the read is discarded */
			starttls++;
		}
		assert_true(used > 0);
		off += used;
		drv_drain(d);
	}
	if (starttls > 0) {
		assert_false(smtp_session_tls_active(d->s));
		smtp_session_tls_started(d->s, VERSION, CIPHER);
		assert_true(smtp_session_tls_active(d->s));
	}
	if (inside != NULL)
		drv_feed_str(d, inside, chunk);
	return starttls;
}

/* The same session fed whole, byte by byte and 7 at a time gives the same result. */
static unsigned
run_tls_all(struct drv *d, void (*tweak)(struct smtp_config *), const char *clear,
            const char *inside)
{
	static const size_t chunks[] = {1, 7};
	unsigned starttls = run_tls(d, tweak, clear, inside, strlen(clear) + 1);

	for (size_t i = 0; i < pa_array_size(chunks); i++) {
		struct drv other;

		run_tls(&other, tweak, clear, inside, chunks[i]);
		drv_assert_same(d, &other);
		drv_free(&other);
	}
	return starttls;
}

static void
test_not_offered_without_tls(void **state)
{
	struct drv d;

	(void)state;
	assert_int_equal(run_tls(&d, NULL, EHLO "STARTTLS\r\n", NULL, 1000), 0);
	assert_string_equal(d.out, DRV_BANNER DRV_EHLO_REPLY
	                    "502 5.5.1 Error: command not implemented\r\n");
	drv_free(&d);
}

static void
test_offered_and_started(void **state)
{
	struct drv d;

	(void)state;
	assert_int_equal(run_tls_all(&d, tls_on, EHLO "STARTTLS\r\n", EHLO), 1);
	/* No second banner (RFC 3207 4.2); the EHLO inside TLS no longer offers STARTTLS. */
	assert_string_equal(d.out, DRV_BANNER R_EHLO_TLS R_220_TLS DRV_EHLO_REPLY);
	drv_free(&d);
}

/* CVE-2011-0411: commands in the same packet as STARTTLS are never executed. */
static void
test_pipelined_after_starttls_discarded(void **state)
{
	struct drv d;

	(void)state;
	run_tls_all(&d, tls_on,
	            EHLO "STARTTLS\r\nRSET\r\nMAIL FROM:<mallory@example.net>\r\n"
	                 "RCPT TO:<bob@example.org>\r\nDATA\r\n",
	            "MAIL FROM:<alice@example.net>\r\n");
	assert_string_equal(d.out, DRV_BANNER R_EHLO_TLS R_220_TLS
	                    "503 5.5.1 Error: send HELO/EHLO first\r\n");
	assert_int_equal(d.nmsg, 0);
	assert_int_equal(d.rcpt_checks, 0);
	drv_free(&d);
}

/* Until the host calls smtp_session_tls_started(), any input is discarded. */
static void
test_input_discarded_until_handshake(void **state)
{
	struct drv d;
	size_t used;

	(void)state;
	drv_init(&d, SMTP_BARE_LF_REJECT);
	d.cfg.tls_available = true;
	drv_start(&d);
	assert_int_equal(smtp_session_input(d.s, LIT(EHLO "STARTTLS\r\n"), &used), SMTP_STARTTLS);
	assert_int_equal(used, strlen(EHLO "STARTTLS\r\n"));
	assert_int_equal(smtp_session_input(d.s, LIT("QUIT\r\n"), &used), SMTP_STARTTLS);
	assert_int_equal(used, 6);
	drv_drain(&d);
	assert_string_equal(d.out, DRV_BANNER R_EHLO_TLS R_220_TLS);
	/* A second call after the handshake is harmless. */
	smtp_session_tls_started(d.s, VERSION, CIPHER);
	smtp_session_tls_started(d.s, "x", "y");
	drv_feed_str(&d, "QUIT\r\n", 1);
	assert_true(d.closed);
	assert_string_equal(d.out, DRV_BANNER R_EHLO_TLS R_220_TLS "221 2.0.0 Bye\r\n");
	drv_free(&d);
}

static void
test_starttls_refusals(void **state)
{
	struct drv d;

	(void)state;
	run_tls_all(&d, tls_on,
	            "STARTTLS\r\n" EHLO "STARTTLS now\r\n"
	            "MAIL FROM:<alice@example.net>\r\nSTARTTLS\r\nRSET\r\n",
	            NULL);
	assert_string_equal(d.out,
	                    DRV_BANNER "503 5.5.1 Error: send HELO/EHLO first\r\n" R_EHLO_TLS
	                               "501 5.5.4 Syntax: STARTTLS\r\n"
	                               "250 2.1.0 Ok\r\n"
	                               "503 5.5.1 Error: STARTTLS inside a mail transaction\r\n"
	                               "250 2.0.0 Ok\r\n");
	assert_int_equal(d.refusals[SMTP_REFUSAL_SEQUENCE], 2);
	assert_int_equal(d.refusals[SMTP_REFUSAL_SYNTAX], 1);
	drv_free(&d);
}

static void
test_starttls_inside_tls(void **state)
{
	struct drv d;

	(void)state;
	run_tls_all(&d, tls_on, EHLO "STARTTLS\r\n", EHLO "STARTTLS\r\n");
	assert_string_equal(d.out, DRV_BANNER R_EHLO_TLS R_220_TLS DRV_EHLO_REPLY
	                    "503 5.5.1 Error: TLS already active\r\n");
	drv_free(&d);
}

static void
test_tls_required(void **state)
{
	struct drv d;

	(void)state;
	run_tls_all(&d, tls_required, EHLO "MAIL FROM:<alice@example.net>\r\nSTARTTLS\r\n",
	            EHLO "MAIL FROM:<alice@example.net>\r\n");
	assert_string_equal(
	    d.out, DRV_BANNER R_EHLO_TLS
	    "530 5.7.0 Must issue a STARTTLS command first\r\n" R_220_TLS DRV_EHLO_REPLY
	    "250 2.1.0 Ok\r\n");
	drv_free(&d);
}

static void
test_received_header_names_tls(void **state)
{
	static const char inside[] = EHLO "MAIL FROM:<alice@example.net>\r\n"
	                                  "RCPT TO:<bob@example.org>\r\nDATA\r\n"
	                                  "Subject: hi\r\n\r\nbody\r\n.\r\n";
	static const char header[] =
	    "Received: from client.example ([192.0.2.1])\r\n\tby " DRV_HOSTNAME
	    " (PigeonAir) with ESMTPS id Q00001\r\n"
	    "\t(version=" VERSION " cipher=" CIPHER ")\r\n"
	    "\tfor <bob@example.org>; " DRV_DATE "\r\n"
	    "Subject: hi\r\n\r\nbody\r\n";
	struct drv d;

	(void)state;
	run_tls_all(&d, tls_on, EHLO "STARTTLS\r\n", inside);
	assert_int_equal(d.nmsg, 1);
	assert_int_equal(d.msgs[0].size, strlen(header));
	assert_memory_equal(d.msgs[0].data, header, strlen(header));
	drv_free(&d);
}

/* A clear-text session keeps its plain ESMTP header, byte for byte. */
static void
test_received_header_clear(void **state)
{
	struct drv d;

	(void)state;
	drv_init(&d, SMTP_BARE_LF_REJECT);
	tls_on(&d.cfg);
	drv_start(&d);
	drv_feed_str(
	    &d, EHLO "MAIL FROM:<a@example.net>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nx\r\n.\r\n",
	    1000);
	assert_int_equal(d.nmsg, 1);
	assert_non_null(strstr((const char *)d.msgs[0].data, " with ESMTP id Q00001\r\n\tfor"));
	assert_null(strstr((const char *)d.msgs[0].data, "version="));
	drv_free(&d);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_not_offered_without_tls),
	    cmocka_unit_test(test_offered_and_started),
	    cmocka_unit_test(test_pipelined_after_starttls_discarded),
	    cmocka_unit_test(test_input_discarded_until_handshake),
	    cmocka_unit_test(test_starttls_refusals),
	    cmocka_unit_test(test_starttls_inside_tls),
	    cmocka_unit_test(test_tls_required),
	    cmocka_unit_test(test_received_header_names_tls),
	    cmocka_unit_test(test_received_header_clear),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
