/*
 * test_dsn.c: the RFC 3464 report has the three parts, one per-recipient
 * block per failed recipient, the status taken from the reply, and the
 * original header only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/pa.h"
#include "handoff/dsn.h"

static void
test_report(void **state)
{
	static const char orig[] = "Received: from x\r\nSubject: hello\r\n\r\nsecret body\r\n";
	const struct dsn_rcpt rcpts[] = {
	    {"a@example.com", "550 5.1.1 <a@example.com>: User unknown", 550},
	    {"b@example.com", "delivery time expired", 0},
	};
	struct dsn_report r = {
	    .reporting_mta = "mx.test",
	    .queue_id = "QID1",
	    .mail_from = "sender@example.org",
	    .arrival_us = 1000000,
	    .now_us = 2000000,
	    .rcpts = rcpts,
	    .nrcpt = 2,
	    .original = (const uint8_t *)orig,
	    .original_size = sizeof(orig) - 1,
	};
	uint8_t *out;
	size_t len;
	char *s;

	(void)state;
	assert_int_equal(dsn_build(&r, &out, &len), PA_OK);
	s = calloc(1, len + 1);
	memcpy(s, out, len);
	assert_non_null(strstr(s, "Content-Type: multipart/report; report-type=delivery-status;"));
	assert_non_null(strstr(s, "Content-Type: message/delivery-status"));
	assert_non_null(strstr(s, "Content-Type: text/rfc822-headers"));
	assert_non_null(strstr(s, "To: <sender@example.org>"));
	assert_non_null(strstr(s, "Reporting-MTA: dns; mx.test"));
	assert_non_null(strstr(s, "Final-Recipient: rfc822; a@example.com\r\nAction: failed\r\n"
	                          "Status: 5.1.1"));
	assert_non_null(strstr(s, "Final-Recipient: rfc822; b@example.com\r\nAction: failed\r\n"
	                          "Status: 4.4.7"));
	assert_non_null(strstr(s, "Subject: hello"));
	assert_null(strstr(s, "secret body"));
	/* every line ends in CRLF */
	for (size_t i = 0; i < len; i++)
		if (s[i] == '\n')
			assert_true(i > 0 && s[i - 1] == '\r');
	free(s);
	free(out);
}

static void
test_status_of(void **state)
{
	char st[16];

	(void)state;
	dsn_status_of(550, "550 5.7.1 no", st);
	assert_string_equal(st, "5.7.1");
	dsn_status_of(554, "554 transaction failed", st);
	assert_string_equal(st, "5.0.0");
	dsn_status_of(452, "452 4.2.2 full", st);
	assert_string_equal(st, "4.2.2");
	dsn_status_of(0, "timeout", st);
	assert_string_equal(st, "4.4.7");
	dsn_status_of(550, "550 5.1.1x nope", st);
	assert_string_equal(st, "5.0.0");
}

static void
test_no_recipient_refused(void **state)
{
	struct dsn_report r = {.reporting_mta = "mx", .queue_id = "Q", .mail_from = "a@b"};
	uint8_t *out;
	size_t len;

	(void)state;
	assert_int_equal(dsn_build(&r, &out, &len), PA_ERROR);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_report),
	    cmocka_unit_test(test_status_of),
	    cmocka_unit_test(test_no_recipient_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
