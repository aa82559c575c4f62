/*
 * test_handoff_client.c: the SMTP/LMTP client state machine against scripted
 * replies: pipelined and one-at-a-time envelopes, per-recipient LMTP
 * results, refusals at MAIL, RCPT and DATA, dot-stuffing, DSN parameters,
 * a 421 in mid-transaction, garbage; the next transaction's envelope
 * pipelined behind a body (RFC 2920 3.1) and whose replies are whose, also
 * when the earlier transaction fails and with LMTP.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/pa.h"
#include "handoff/handoff_client.h"

/* Takes everything the client wants to send, as a string. */
static char *
take(struct hc *c)
{
	size_t len;
	const uint8_t *out = hc_output(c, &len);
	char *s = calloc(1, len + 1);

	memcpy(s, out, len);
	hc_output_consumed(c, len);
	return s;
}

static enum hc_status
feed(struct hc *c, const char *in)
{
	return hc_input(c, (const uint8_t *)in, strlen(in));
}

static void
expect_out(struct hc *c, const char *want)
{
	char *got = take(c);

	if (strcmp(got, want) != 0)
		fail_msg("sent:\n%s\nexpected:\n%s", got, want);
	free(got);
}

static struct hc *
ready_client(enum hc_proto proto, const char *ehlo_reply)
{
	struct hc *c = hc_new(proto, "relay.test");

	assert_int_equal(feed(c, "220 store ready\r\n"), HC_NEED_MORE);
	expect_out(c, proto == HC_LMTP ? "LHLO relay.test\r\n" : "EHLO relay.test\r\n");
	assert_int_equal(feed(c, ehlo_reply), HC_READY);
	assert_true(hc_ready(c));
	return c;
}

static const char *const two[] = {"a@example.com", "b@example.com"};
static const uint8_t body[] = "Subject: x\r\n\r\n.dot\r\nline\r\n";

static struct hc_txn
txn2(void)
{
	return (struct hc_txn){.mail_from = "s@example.org",
	                       .rcpts = two,
	                       .nrcpt = 2,
	                       .data = body,
	                       .size = sizeof(body) - 1,
	                       .id_header = "X-PigeonAir-Id: Q.1",
	                       .envid = "Q.1"};
}

static void
test_smtp_pipelined(void **state)
{
	struct hc *c = ready_client(HC_SMTP, "250-store\r\n250-PIPELINING\r\n250-SIZE 100\r\n"
	                                     "250 8BITMIME\r\n");
	struct hc_txn t = txn2();

	(void)state;
	assert_true(hc_has_pipelining(c));
	assert_int_equal(hc_start(c, &t), PA_OK);
	expect_out(c, "MAIL FROM:<s@example.org> SIZE=26\r\nRCPT TO:<a@example.com>\r\n"
	              "RCPT TO:<b@example.com>\r\nDATA\r\n");
	assert_int_equal(feed(c, "250 ok\r\n250 ok\r\n550 5.1.1 no such user\r\n354 go\r\n"),
	                 HC_RESULTS);
	assert_true(hc_result(c, 1)->final);
	assert_int_equal(hc_result(c, 1)->code, 550);
	assert_false(hc_result(c, 0)->final);
	expect_out(c, "X-PigeonAir-Id: Q.1\r\nSubject: x\r\n\r\n..dot\r\nline\r\n.\r\n");
	assert_int_equal(feed(c, "250 2.0.0 queued\r\n"), HC_TXN_DONE);
	assert_int_equal(hc_result(c, 0)->code, 250);
	assert_string_equal(hc_result(c, 0)->text, "250 2.0.0 queued");
	assert_true(hc_ready(c));
	/* a second transaction on the same connection */
	assert_int_equal(hc_start(c, &t), PA_OK);
	free(take(c));
	hc_free(c);
}

/* A held body waits after 354 until released; a reply meanwhile is a protocol error. */
static void
test_body_held_until_released(void **state)
{
	struct hc *c = ready_client(HC_SMTP, "250-store\r\n250 PIPELINING\r\n");
	struct hc_txn t = txn2();

	(void)state;
	hc_hold_body(c, true);
	assert_int_equal(hc_start(c, &t), PA_OK);
	free(take(c));
	assert_int_equal(feed(c, "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"), HC_NEED_MORE);
	assert_true(hc_body_held(c));
	assert_true(hc_busy(c));
	expect_out(c, "");
	assert_int_equal(hc_release_body(c), PA_OK);
	assert_false(hc_body_held(c));
	expect_out(c, "X-PigeonAir-Id: Q.1\r\nSubject: x\r\n\r\n..dot\r\nline\r\n.\r\n");
	assert_int_equal(feed(c, "250 2.0.0 queued\r\n"), HC_TXN_DONE);
	assert_int_equal(hc_result(c, 1)->code, 250);
	/* released before the 354: the body goes at once; the hold ended */
	hc_hold_body(c, true);
	assert_int_equal(hc_start(c, &t), PA_OK);
	free(take(c));
	assert_int_equal(hc_release_body(c), PA_OK);
	assert_int_equal(feed(c, "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"), HC_NEED_MORE);
	assert_false(hc_body_held(c));
	free(take(c));
	assert_int_equal(feed(c, "250 2.0.0 queued\r\n"), HC_TXN_DONE);
	/* held again: a reply while the peer should be waiting fails every recipient */
	hc_hold_body(c, true);
	assert_int_equal(hc_start(c, &t), PA_OK);
	free(take(c));
	assert_int_equal(feed(c, "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"), HC_NEED_MORE);
	assert_int_equal(feed(c, "250 what\r\n"), HC_FAILED);
	assert_true(hc_result(c, 0)->final);
	assert_true(hc_result(c, 1)->final);
	hc_free(c);
}

static void
test_smtp_one_at_a_time_and_dsn(void **state)
{
	struct hc *c = ready_client(HC_SMTP, "250-store\r\n250 DSN\r\n");
	struct hc_txn t = txn2();

	(void)state;
	assert_int_equal(hc_start(c, &t), PA_OK);
	expect_out(c, "MAIL FROM:<s@example.org> ENVID=Q.1\r\n");
	assert_int_equal(feed(c, "250 ok\r\n"), HC_NEED_MORE);
	expect_out(c, "RCPT TO:<a@example.com> ORCPT=rfc822;a@example.com\r\n");
	assert_int_equal(feed(c, "250 ok\r\n"), HC_NEED_MORE);
	expect_out(c, "RCPT TO:<b@example.com> ORCPT=rfc822;b@example.com\r\n");
	assert_int_equal(feed(c, "250 ok\r\n"), HC_NEED_MORE);
	expect_out(c, "DATA\r\n");
	assert_int_equal(feed(c, "354 go\r\n"), HC_NEED_MORE);
	free(take(c));
	/* byte by byte */
	const char *final = "451 4.3.0 try later\r\n";
	for (size_t i = 0; final[i + 1]; i++)
		assert_int_equal(hc_input(c, (const uint8_t *) final + i, 1), HC_NEED_MORE);
	assert_int_equal(hc_input(c, (const uint8_t *) final + strlen(final) - 1, 1), HC_TXN_DONE);
	assert_int_equal(hc_result(c, 0)->code, 451);
	assert_int_equal(hc_result(c, 1)->code, 451);
	hc_free(c);
}

/* LMTP, three recipients, b refused at RCPT; the body has gone out. */
static struct hc *
lmtp_at_body(struct hc_txn *t)
{
	static const char *const three[] = {"a@x", "b@x", "c@x"};
	struct hc *c = ready_client(HC_LMTP, "250-store\r\n250 PIPELINING\r\n");

	*t = txn2();
	t->rcpts = three;
	t->nrcpt = 3;
	assert_int_equal(hc_start(c, t), PA_OK);
	free(take(c));
	assert_int_equal(feed(c, "250 ok\r\n250 ok\r\n550 5.1.1 unknown\r\n250 ok\r\n354 go\r\n"),
	                 HC_RESULTS);
	return c;
}

static void
test_lmtp_per_recipient(void **state)
{
	struct hc_txn t;
	struct hc *c = lmtp_at_body(&t);

	(void)state;
	free(take(c));
	/* one reply per accepted recipient, in RCPT order: a, then c */
	assert_int_equal(feed(c, "250 2.0.0 <a@x> saved\r\n452 4.2.2 <c@x> quota\r\n"), HC_RESULTS);
	assert_int_equal(hc_result(c, 0)->code, 250);
	assert_false(hc_result(c, 2)->final);
	assert_int_equal(hc_input(c, NULL, 0), HC_TXN_DONE);
	assert_int_equal(hc_result(c, 2)->code, 452);
	assert_int_equal(hc_result(c, 1)->code, 550);
	hc_free(c);
}

static void
test_mail_refused_pipelined(void **state)
{
	struct hc *c = ready_client(HC_SMTP, "250-store\r\n250 PIPELINING\r\n");
	struct hc_txn t = txn2();

	(void)state;
	assert_int_equal(hc_start(c, &t), PA_OK);
	free(take(c));
	assert_int_equal(feed(c, "451 4.3.0 sender busy\r\n503 5.5.1 no MAIL\r\n"
	                         "503 5.5.1 no MAIL\r\n503 5.5.1 no valid recipients\r\n"),
	                 HC_TXN_DONE);
	/* the MAIL reply decides, not the 503s that follow it */
	assert_int_equal(hc_result(c, 0)->code, 451);
	assert_int_equal(hc_result(c, 1)->code, 451);
	assert_true(hc_ready(c));
	hc_free(c);
}

static void
test_all_rcpts_refused_then_rset(void **state)
{
	struct hc *c = ready_client(HC_SMTP, "250-store\r\n250 PIPELINING\r\n");
	struct hc_txn t = txn2();

	(void)state;
	assert_int_equal(hc_start(c, &t), PA_OK);
	free(take(c));
	assert_int_equal(feed(c, "250 ok\r\n550 no\r\n550 no\r\n554 no valid recipients\r\n"),
	                 HC_TXN_DONE);
	expect_out(c, "RSET\r\n");
	assert_false(hc_ready(c));
	assert_int_equal(feed(c, "250 flushed\r\n"), HC_READY);
	hc_free(c);
}

static void
test_421_and_garbage_fail(void **state)
{
	struct hc *c = ready_client(HC_SMTP, "250 store\r\n");
	struct hc_txn t = txn2();

	(void)state;
	assert_int_equal(hc_start(c, &t), PA_OK);
	free(take(c));
	assert_int_equal(feed(c, "421 4.3.2 shutting down\r\n"), HC_FAILED);
	assert_int_equal(hc_result(c, 0)->code, 421);
	assert_int_equal(hc_result(c, 1)->code, 421);
	hc_free(c);

	c = hc_new(HC_SMTP, "x");
	assert_int_equal(feed(c, "HTTP/1.1 400 Bad Request\r\n"), HC_FAILED);
	hc_free(c);

	c = hc_new(HC_SMTP, "x");
	{
		char big[HC_LINE_MAX + 10];

		memset(big, '2', sizeof(big));
		assert_int_equal(hc_input(c, (const uint8_t *)big, sizeof(big)), HC_FAILED);
	}
	hc_free(c);
}

static void
test_helo_fallback_and_abort(void **state)
{
	struct hc *c = hc_new(HC_SMTP, "relay.test");
	struct hc_txn t = txn2();

	(void)state;
	feed(c, "220 old\r\n");
	free(take(c));
	assert_int_equal(feed(c, "502 5.5.2 what\r\n"), HC_NEED_MORE);
	expect_out(c, "HELO relay.test\r\n");
	assert_int_equal(feed(c, "250 hi\r\n"), HC_READY);
	assert_int_equal(hc_start(c, &t), PA_OK);
	expect_out(c, "MAIL FROM:<s@example.org>\r\n");
	hc_abort(c, "connection reset");
	assert_int_equal(hc_result(c, 0)->code, 0);
	assert_string_equal(hc_result(c, 1)->text, "connection reset");
	hc_free(c);
}

static const char *const one_b[] = {"b2@example.com"};
static const uint8_t body_b[] = "Subject: y\r\n\r\nsecond\r\n";

/* A second transaction: one recipient, no ENVID. */
static struct hc_txn
txn_b(void)
{
	struct hc_txn t = txn2();

	t.mail_from = "t@example.org";
	t.rcpts = one_b;
	t.nrcpt = 1;
	t.data = body_b;
	t.size = sizeof(body_b) - 1;
	t.id_header = "X-PigeonAir-Id: R.2";
	t.envid = NULL;
	return t;
}

#define BODY_A "X-PigeonAir-Id: Q.1\r\nSubject: x\r\n\r\n..dot\r\nline\r\n.\r\n"
#define ENVELOPE_B "MAIL FROM:<t@example.org>\r\nRCPT TO:<b2@example.com>\r\nDATA\r\n"

/* A client with transaction A's body sent and B's envelope queued right behind it. */
static struct hc *
client_with_next(enum hc_proto proto, const char *ehlo_reply)
{
	struct hc *c = ready_client(proto, ehlo_reply);
	struct hc_txn a = txn2(), b = txn_b();

	assert_int_equal(hc_start(c, &a), PA_OK);
	free(take(c));
	/* not before A's body is out: DATA ends a group (RFC 2920 3.1) */
	assert_false(hc_can_pipeline(c));
	assert_int_equal(hc_start(c, &b), PA_ERROR);
	assert_int_equal(feed(c, "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"), HC_NEED_MORE);
	assert_true(hc_can_pipeline(c));
	hc_hold_body(c, true);
	assert_int_equal(hc_start(c, &b), PA_OK);
	assert_true(hc_pipelined(c));
	assert_false(hc_can_pipeline(c));
	assert_int_equal(hc_start(c, &b), PA_ERROR); /* one queued behind at most */
	/* one write: A's body, then B's whole envelope */
	expect_out(c, BODY_A ENVELOPE_B);
	return c;
}

/* RFC 2920 3.1: the next envelope follows the body; replies are attributed in order. */
static void
test_smtp_next_behind_body(void **state)
{
	struct hc *c = client_with_next(HC_SMTP, "250-store\r\n250 PIPELINING\r\n");

	(void)state;
	/* A's final reply and B's envelope replies in one read */
	assert_int_equal(feed(c, "250 2.0.0 queued as A\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
	                 HC_TXN_DONE);
	assert_int_equal(hc_result(c, 0)->code, 250);
	assert_string_equal(hc_result(c, 1)->text, "250 2.0.0 queued as A");
	assert_false(hc_ready(c));
	assert_true(hc_busy(c));
	/* B's turn: its 354 finds the body held */
	assert_int_equal(hc_input(c, NULL, 0), HC_NEED_MORE);
	assert_true(hc_body_held(c));
	assert_false(hc_pipelined(c));
	assert_null(hc_result(c, 1)); /* B has one recipient */
	assert_false(hc_result(c, 0)->final);
	expect_out(c, "");
	assert_int_equal(hc_release_body(c), PA_OK);
	expect_out(c, "X-PigeonAir-Id: R.2\r\nSubject: y\r\n\r\nsecond\r\n.\r\n");
	assert_int_equal(feed(c, "250 2.0.0 queued as B\r\n"), HC_TXN_DONE);
	assert_string_equal(hc_result(c, 0)->text, "250 2.0.0 queued as B");
	assert_true(hc_ready(c));
	hc_free(c);
}

/*
 * The earlier transaction fails at its end of data (5xx, then 4xx): its
 * recipients get that reply, and the replies after it belong to the next
 * transaction, which goes on as usual.
 */
static void
test_next_after_failed_body(void **state)
{
	static const char *const fails[] = {"554 5.7.1 rejected by policy\r\n",
	                                    "451 4.3.0 try later\r\n"};

	(void)state;
	for (size_t k = 0; k < 2; k++) {
		struct hc *c = client_with_next(HC_SMTP, "250-store\r\n250 PIPELINING\r\n");
		unsigned code = k == 0 ? 554 : 451;

		assert_int_equal(feed(c, fails[k]), HC_TXN_DONE);
		assert_int_equal(hc_result(c, 0)->code, code);
		assert_int_equal(hc_result(c, 1)->code, code);
		/* B: MAIL refused this time; its recipient gets the MAIL reply */
		assert_int_equal(feed(c, "452 4.3.1 out of space\r\n503 5.5.1 no MAIL\r\n"
		                         "503 5.5.1 no valid recipients\r\n"),
		                 HC_TXN_DONE);
		assert_int_equal(hc_result(c, 0)->code, 452);
		assert_string_equal(hc_result(c, 0)->text, "452 4.3.1 out of space");
		assert_true(hc_ready(c));
		expect_out(c, "");
		hc_free(c);
	}
}

/* A 421 to the earlier body fails it; the queued transaction gets no result (not attempted). */
static void
test_next_421_and_abort(void **state)
{
	struct hc *c = client_with_next(HC_SMTP, "250-store\r\n250 PIPELINING\r\n");

	(void)state;
	assert_int_equal(feed(c, "421 4.3.2 shutting down\r\n"), HC_FAILED);
	assert_int_equal(hc_result(c, 0)->code, 421);
	assert_int_equal(hc_result(c, 1)->code, 421);
	assert_true(hc_pipelined(c));
	hc_free(c);

	/* the connection breaks once A is done: the abort is B's */
	c = client_with_next(HC_SMTP, "250-store\r\n250 PIPELINING\r\n");
	assert_int_equal(feed(c, "250 ok\r\n"), HC_TXN_DONE);
	assert_int_equal(hc_result(c, 1)->code, 250);
	hc_abort(c, "connection reset");
	assert_int_equal(hc_result(c, 0)->code, 0);
	assert_true(hc_result(c, 0)->final);
	assert_null(hc_result(c, 1));
	hc_free(c);

	/* a peer without PIPELINING never gets one behind a body */
	c = ready_client(HC_SMTP, "250 store\r\n");
	{
		struct hc_txn a = txn2(), b = txn_b();

		assert_int_equal(hc_start(c, &a), PA_OK);
		free(take(c));
		feed(c, "250 ok\r\n");
		feed(c, "250 ok\r\n");
		feed(c, "250 ok\r\n");
		assert_int_equal(feed(c, "354 go\r\n"), HC_NEED_MORE);
		assert_false(hc_can_pipeline(c));
		assert_int_equal(hc_start(c, &b), PA_ERROR);
	}
	hc_free(c);
}

/* LMTP: one final reply per accepted recipient (RFC 2033 4.2), then the next envelope's. */
static void
test_lmtp_next_behind_body(void **state)
{
	struct hc_txn a, b = txn_b();
	struct hc *c = lmtp_at_body(&a);

	(void)state;
	assert_int_equal(hc_result(c, 1)->code, 550);
	assert_true(hc_can_pipeline(c));
	assert_int_equal(hc_start(c, &b), PA_OK);
	free(take(c));
	/* two final replies for A (a, c), then B's MAIL, RCPT, DATA, all in one read */
	assert_int_equal(feed(c, "250 2.0.0 <a@x> saved\r\n452 4.2.2 <c@x> quota\r\n"
	                         "250 ok\r\n250 ok\r\n354 go\r\n"),
	                 HC_RESULTS);
	assert_int_equal(hc_result(c, 0)->code, 250);
	assert_false(hc_result(c, 2)->final);
	assert_int_equal(hc_input(c, NULL, 0), HC_TXN_DONE);
	assert_int_equal(hc_result(c, 2)->code, 452);
	assert_string_equal(hc_result(c, 2)->text, "452 4.2.2 <c@x> quota");
	/* B, not held: its body goes at its 354 */
	assert_int_equal(hc_input(c, NULL, 0), HC_NEED_MORE);
	assert_false(hc_body_held(c));
	expect_out(c, "X-PigeonAir-Id: R.2\r\nSubject: y\r\n\r\nsecond\r\n.\r\n");
	assert_int_equal(feed(c, "250 2.0.0 <b2@example.com> saved\r\n"), HC_TXN_DONE);
	assert_int_equal(hc_result(c, 0)->code, 250);
	assert_true(hc_ready(c));
	hc_free(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_smtp_pipelined),
	    cmocka_unit_test(test_body_held_until_released),
	    cmocka_unit_test(test_smtp_one_at_a_time_and_dsn),
	    cmocka_unit_test(test_lmtp_per_recipient),
	    cmocka_unit_test(test_mail_refused_pipelined),
	    cmocka_unit_test(test_all_rcpts_refused_then_rset),
	    cmocka_unit_test(test_421_and_garbage_fail),
	    cmocka_unit_test(test_helo_fallback_and_abort),
	    cmocka_unit_test(test_smtp_next_behind_body),
	    cmocka_unit_test(test_next_after_failed_body),
	    cmocka_unit_test(test_next_421_and_abort),
	    cmocka_unit_test(test_lmtp_next_behind_body),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
