/*
 * test_smtp_smuggling.c: SMTP smuggling, bare LF/CR/NUL, and hostile input.
 *
 * Every variant of a fake end of data is followed by a pipelined second
 * transaction and then the real end of data.  Whatever the policy, the input
 * must give at most one message, and the smuggled MAIL/RCPT/DATA must never
 * run as commands.  Each session is fed whole and byte by byte, and both runs
 * must agree byte for byte.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "smtp_driver.h"

#define ENVELOPE                                                                                   \
	"EHLO client.example\r\nMAIL FROM:<alice@example.net>\r\nRCPT TO:<bob@example.org>\r\n"
#define R_ENVELOPE DRV_BANNER DRV_EHLO_REPLY "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
#define R_354 "354 End data with <CR><LF>.<CR><LF>\r\n"
#define SMUGGLED "MAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\nDATA\r\nsmuggled\r\n.\r\n"
/* What the engine sees after the smuggled part's own CRLF.CRLF ended the data. */
#define R_TRAILER                                                                                  \
	"500 5.5.2 Error: bad syntax\r\n500 5.5.1 Error: command not recognized\r\n221 2.0.0 "     \
	"Bye\r\n"
#define R_BARE "550 5.6.0 Bare LF or CR in message refused\r\n"
#define R_NUL "550 5.6.0 NUL in message refused\r\n"

struct variant {
	const char *name;
	const char *seq;
	size_t seq_len;
	const char *reject_reply; /* SMTP_BARE_LF_REJECT */
	/*
	 * SMTP_BARE_LF_NORMALIZE: what replaces seq in the content, or NULL when
	 * the message is refused with reject_reply under that policy too.
	 */
	const char *stored;
	size_t stored_len;
};

#define V(name, seq, reply, stored)                                                                \
	{                                                                                          \
		name, seq, sizeof(seq) - 1, reply, stored, sizeof(stored) - 1                      \
	}

static const struct variant variants[] = {
    V("LF.LF", "\n.\n", R_BARE, "\r\n.\r\n"),
    V("CR.CR", "\r.\r", R_BARE, "\r\n.\r\n"),
    V("CR.LF", "\r.\n", R_BARE, "\r\n.\r\n"),
    V("LF.CR", "\n.\r", R_BARE, "\r\n.\r\n"),
    V("LF.CRLF", "\n.\r\n", R_BARE, "\r\n.\r\n"),
    V("CRLF.LF", "\r\n.\n", R_BARE, "\r\n\r\n"),
    V("CR.CRLF", "\r.\r\n", R_BARE, "\r\n.\r\n"),
    V("CRLF.CR", "\r\n.\r", R_BARE, "\r\n\r\n"),
    /* A NUL is refused under either policy (smtp_data.c says why). */
    {"CRLF NUL . CRLF", "\r\n\0.\r\n", 5, R_NUL, NULL, 0},
    {"CRLF . NUL CRLF", "\r\n.\0\r\n", 5, R_NUL, NULL, 0},
    V("CRLF.CRCRLF", "\r\n.\r\r\n", R_BARE, "\r\n\r\n\r\n"),
    V("CRCRLF.CRCRLF", "\r\r\n.\r\r\n", R_BARE, "\r\n\r\n\r\n\r\n"),
};

#define PREFIX ENVELOPE "DATA\r\nSubject: test\r\n\r\nlegit body"
#define SUFFIX SMUGGLED "\r\n.\r\nQUIT\r\n"

static uint8_t *
concat(const void *a, size_t alen, const void *b, size_t blen, const void *c, size_t clen,
       size_t *len)
{
	uint8_t *p = malloc(alen + blen + clen);

	assert_non_null(p);
	memcpy(p, a, alen);
	memcpy(p + alen, b, blen);
	memcpy(p + alen + blen, c, clen);
	*len = alen + blen + clen;
	return p;
}

/* Runs `in` whole into d and byte by byte into another run that must agree. */
static void
run_both(struct drv *d, enum smtp_bare_lf_policy policy, const uint8_t *in, size_t len)
{
	struct drv one;

	drv_run(d, policy, NULL, in, len, len);
	drv_run(&one, policy, NULL, in, len, 1);
	drv_assert_same(d, &one);
	drv_free(&one);
}

/* The smuggled transaction never ran: one MAIL, one RCPT lookup, one DATA. */
static void
assert_not_smuggled(const struct drv *d)
{
	assert_int_equal(d->rcpt_checks, 1);
	assert_int_equal(drv_count(d->out, "250 2.1.0"), 1);
	assert_int_equal(drv_count(d->out, "354 "), 1);
	assert_true(d->nmsg <= 1);
}

static void
test_smuggling_rejected(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++) {
		const struct variant *v = &variants[i];
		size_t len;
		uint8_t *in = concat(PREFIX, strlen(PREFIX), v->seq, v->seq_len, SUFFIX,
		                     strlen(SUFFIX), &len);
		struct drv d;
		char expected[1024];

		print_message("variant %s, reject\n", v->name);
		run_both(&d, SMTP_BARE_LF_REJECT, in, len);
		assert_not_smuggled(&d);
		assert_int_equal(d.nmsg, 0);
		snprintf(expected, sizeof(expected), "%s%s%s%s", R_ENVELOPE, R_354, v->reject_reply,
		         R_TRAILER);
		assert_string_equal(d.out, expected);
		drv_free(&d);
		free(in);
	}
}

static void
test_smuggling_normalized(void **state)
{
	static const char head[] = "Subject: test\r\n\r\nlegit body";
	static const char tail[] =
	    "MAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\nDATA\r\nsmuggled\r\n";

	(void)state;
	for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++) {
		const struct variant *v = &variants[i];
		size_t len, body_len, want_len;
		uint8_t *in = concat(PREFIX, strlen(PREFIX), v->seq, v->seq_len, SUFFIX,
		                     strlen(SUFFIX), &len);
		uint8_t *want;
		const uint8_t *body;
		struct drv d;
		char expected[1024];

		print_message("variant %s, normalize\n", v->name);
		run_both(&d, SMTP_BARE_LF_NORMALIZE, in, len);
		assert_not_smuggled(&d);
		free(in);
		if (v->stored == NULL) {
			/* Refused as under SMTP_BARE_LF_REJECT. */
			assert_int_equal(d.nmsg, 0);
			snprintf(expected, sizeof(expected), "%s%s%s%s", R_ENVELOPE, R_354,
			         v->reject_reply, R_TRAILER);
			assert_string_equal(d.out, expected);
			drv_free(&d);
			continue;
		}
		assert_int_equal(d.nmsg, 1);
		assert_string_equal(d.out, R_ENVELOPE R_354
		                    "250 2.0.0 Ok: queued as Q00001\r\n" R_TRAILER);
		/* The would-be commands are content of the one message. */
		want = concat(head, strlen(head), v->stored, v->stored_len, tail, strlen(tail),
		              &want_len);
		body = drv_body(&d.msgs[0], &body_len);
		assert_int_equal(body_len, want_len);
		assert_memory_equal(body, want, want_len);
		drv_free(&d);
		free(want);
	}
}

static void
test_bdat_is_never_scanned_for_end_of_data(void **state)
{
	static const char content[] = "x\r\n.\r\n" SMUGGLED;
	char in[512];
	size_t body_len;
	const uint8_t *body;
	struct drv d;

	(void)state;
	snprintf(in, sizeof(in), ENVELOPE "BDAT %zu LAST\r\n%sQUIT\r\n", strlen(content), content);
	run_both(&d, SMTP_BARE_LF_REJECT, (const uint8_t *)in, strlen(in));
	assert_int_equal(d.rcpt_checks, 1);
	assert_int_equal(drv_count(d.out, "250 2.1.0"), 1);
	assert_int_equal(drv_count(d.out, "354 "), 0);
	assert_int_equal(d.nmsg, 1);
	body = drv_body(&d.msgs[0], &body_len);
	assert_int_equal(body_len, strlen(content));
	assert_memory_equal(body, content, body_len);
	drv_free(&d);
}

static void
test_bdat_bare_lf_policy(void **state)
{
	static const char bare[] = ENVELOPE "BDAT 4 LAST\r\na\nb\r";
	static const char split_crlf[] = ENVELOPE "BDAT 2\r\na\rBDAT 2 LAST\r\n\nb";
	static const char nul[] = ENVELOPE "BDAT 3 LAST\r\na\0b";
	size_t body_len;
	const uint8_t *body;
	struct drv d;

	(void)state;
	run_both(&d, SMTP_BARE_LF_REJECT, LIT(bare));
	assert_int_equal(d.nmsg, 0);
	assert_string_equal(d.out, R_ENVELOPE R_BARE);
	assert_int_equal(d.refusals[SMTP_REFUSAL_BARE_LF], 1);
	drv_free(&d);

	/* Normalized, the bare LF and the CR ending the last chunk become CRLF. */
	run_both(&d, SMTP_BARE_LF_NORMALIZE, LIT(bare));
	assert_int_equal(d.nmsg, 1);
	body = drv_body(&d.msgs[0], &body_len);
	assert_int_equal(body_len, 6);
	assert_memory_equal(body, "a\r\nb\r\n", 6);
	drv_free(&d);

	/* A CR ending one chunk and the LF starting the next are one CRLF. */
	run_both(&d, SMTP_BARE_LF_REJECT, LIT(split_crlf));
	assert_int_equal(d.nmsg, 1);
	assert_string_equal(d.out, R_ENVELOPE "250 2.0.0 2 octets received\r\n"
	                                      "250 2.0.0 Ok: queued as Q00001\r\n");
	body = drv_body(&d.msgs[0], &body_len);
	assert_int_equal(body_len, 4);
	assert_memory_equal(body, "a\r\nb", 4);
	drv_free(&d);

	/* A NUL is refused under either policy. */
	for (int p = 0; p < 2; p++) {
		run_both(&d, p ? SMTP_BARE_LF_NORMALIZE : SMTP_BARE_LF_REJECT, LIT(nul));
		assert_int_equal(d.nmsg, 0);
		assert_string_equal(d.out, R_ENVELOPE R_NUL);
		drv_free(&d);
	}
}

static void
test_data_bare_lf_normalized_is_not_a_line_start(void **state)
{
	/* LF "..x": the dots are not at a line start, so nothing is unstuffed. */
	static const char in[] = ENVELOPE "DATA\r\na\n..x\rb\r\n.\r\n";
	size_t body_len;
	const uint8_t *body;
	struct drv d;

	(void)state;
	run_both(&d, SMTP_BARE_LF_NORMALIZE, LIT(in));
	assert_int_equal(d.nmsg, 1);
	body = drv_body(&d.msgs[0], &body_len);
	assert_int_equal(body_len, strlen("a\r\n..x\r\nb\r\n"));
	assert_memory_equal(body, "a\r\n..x\r\nb\r\n", body_len);
	drv_free(&d);
}

/* Every CR is followed by LF and every LF preceded by CR. */
static void
assert_only_crlf(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\r')
			assert_true(i + 1 < n && p[i + 1] == '\n');
		if (p[i] == '\n')
			assert_true(i > 0 && p[i - 1] == '\r');
	}
}

static uint32_t
xorshift(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

/*
 * Hostile input built from the pieces that matter, under both policies:
 * chunking never changes the outcome, stored data has only CRLF line ends
 * (DATA content; BDAT may end on an incomplete line), and nothing crashes
 * (run it under ASan+UBSan).
 */
static void
test_random_hostile_input(void **state)
{
	static const char *const pieces[] = {
	    "\r",
	    "\n",
	    ".",
	    "\r\n",
	    "\r\n.\r\n",
	    "..",
	    "x",
	    " ",
	    "\r\n.",
	    ".\r\n",
	    "MAIL FROM:<a@b.example>\r\n",
	    "RCPT TO:<bob@example.org>\r\n",
	    "DATA\r\n",
	    "BDAT 3\r\n",
	    "BDAT 0 LAST\r\n",
	    "BDAT 2 LAST\r\n",
	    "RSET\r\n",
	    "EHLO h\r\n",
	    "NOOP\r\n",
	    "QUIT",
	    "\xc3\xa5",
	    "<>",
	    "SIZE=5",
	    "BDAT 99999999999999999999\r\n",
	};
	const size_t npieces = sizeof(pieces) / sizeof(pieces[0]);
	uint32_t seed = 0x9e3779b9u;

	(void)state;
	for (int round = 0; round < 300; round++) {
		uint8_t in[2048];
		size_t len = strlen(ENVELOPE);
		enum smtp_bare_lf_policy policy =
		    round % 2 ? SMTP_BARE_LF_NORMALIZE : SMTP_BARE_LF_REJECT;
		struct drv d, five;

		memcpy(in, ENVELOPE, len);
		for (int k = 0; k < 60; k++) {
			const char *piece = pieces[xorshift(&seed) % npieces];
			size_t n = strlen(piece);

			if (xorshift(&seed) % 16 == 0) /* a NUL now and then */
				piece = "\0", n = 1;
			if (len + n > sizeof(in))
				break;
			memcpy(in + len, piece, n);
			len += n;
		}
		run_both(&d, policy, in, len);
		drv_run(&five, policy, NULL, in, len, 5);
		drv_assert_same(&d, &five);
		drv_free(&five);
		for (size_t m = 0; m < d.nmsg; m++)
			if (!d.msgs[m].chunked)
				assert_only_crlf(d.msgs[m].data, d.msgs[m].size);
		assert_true(strlen(d.out) == d.out_len);
		drv_free(&d);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_smuggling_rejected),
	    cmocka_unit_test(test_smuggling_normalized),
	    cmocka_unit_test(test_bdat_is_never_scanned_for_end_of_data),
	    cmocka_unit_test(test_bdat_bare_lf_policy),
	    cmocka_unit_test(test_data_bare_lf_normalized_is_not_a_line_start),
	    cmocka_unit_test(test_random_hostile_input),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
