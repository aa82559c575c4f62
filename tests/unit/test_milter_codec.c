/*
 * test_milter_codec.c: the milter protocol's packets (filter/milter_codec.h):
 * the commands byte for byte as libmilter reads them, and the reply decoder
 * on complete, partial and hostile packets.  And the header section as
 * milters see it and edit it (filter/milter_edit.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/pa.h"
#include "filter/milter_codec.h"
#include "filter/milter_edit.h"

/* A reply packet: length, code, data. */
static size_t
packet(uint8_t *out, char code, const void *data, size_t len)
{
	uint32_t plen = (uint32_t)len + 1;

	out[0] = (uint8_t)(plen >> 24);
	out[1] = (uint8_t)(plen >> 16);
	out[2] = (uint8_t)(plen >> 8);
	out[3] = (uint8_t)plen;
	out[4] = (uint8_t)code;
	memcpy(out + 5, data, len);
	return len + 5;
}

static void
test_encode_commands(void **state)
{
	static const uint8_t optneg[] = {0, 0, 0, 13,   'O', 0,    0,    0,   6,
	                                 0, 0, 0, 0x31, 0,   0x1f, 0xff, 0x80};
	static const uint8_t connect[] = "\0\0\0\x16"
	                                 "Cunknown\0"
	                                 "4\x01\x19"
	                                 "192.0.2.1";
	static const uint8_t mail[] = "\0\0\0\x09"
	                              "M<a@b.c>";
	static const uint8_t header[] = "\0\0\0\x0c"
	                                "LSubject\0hi";
	static const uint8_t macros[] = "\0\0\0\x0c"
	                                "DC"
	                                "j\0mx.test";
	const char *pairs[] = {"j", "mx.test"};
	struct pa_buf b;

	(void)state;
	pa_buf_init(&b, 64, 1 << 20);
	assert_int_equal(milter_put_optneg(&b, 6, 0x31, 0x1fff80), PA_OK);
	assert_int_equal(pa_buf_pending(&b), sizeof(optneg));
	assert_memory_equal(pa_buf_head(&b), optneg, sizeof(optneg));
	pa_buf_reset(&b);
	/* hostname NUL, family, port 281 big-endian, address NUL */
	assert_int_equal(milter_put_connect(&b, "unknown", '4', 281, "192.0.2.1"), PA_OK);
	assert_int_equal(pa_buf_pending(&b), sizeof(connect));
	assert_memory_equal(pa_buf_head(&b), connect, sizeof(connect));
	pa_buf_reset(&b);
	assert_int_equal(milter_put_mail(&b, "a@b.c"), PA_OK);
	assert_memory_equal(pa_buf_head(&b), mail, sizeof(mail));
	pa_buf_reset(&b);
	assert_int_equal(milter_put_header(&b, "Subject", 7, "hi", 2), PA_OK);
	assert_memory_equal(pa_buf_head(&b), header, sizeof(header));
	pa_buf_reset(&b);
	assert_int_equal(milter_put_macros(&b, 'C', pairs, 1), PA_OK);
	assert_memory_equal(pa_buf_head(&b), macros, sizeof(macros));
	pa_buf_reset(&b);
	/* family 'U': nothing follows it */
	assert_int_equal(milter_put_connect(&b, "unknown", 'U', 0, NULL), PA_OK);
	assert_int_equal(pa_buf_pending(&b), 5 + 8 + 1);
	pa_buf_reset(&b);
	assert_int_equal(milter_put_bare(&b, MILTER_CMD_BODYEOB), PA_OK);
	assert_int_equal(pa_buf_pending(&b), 5);
	assert_int_equal(pa_buf_head(&b)[3], 1);
	assert_int_equal(pa_buf_head(&b)[4], 'E');
	pa_buf_free(&b);
}

static void
test_encode_limits(void **state)
{
	static uint8_t chunk[MILTER_CHUNK_MAX + 1];
	struct pa_buf b;

	(void)state;
	pa_buf_init(&b, 64, 100);
	/* a body chunk larger than libmilter reads is refused; so is one past the buffer's max */
	assert_int_equal(milter_put_body(&b, chunk, sizeof(chunk)), PA_ERROR);
	assert_int_equal(milter_put_body(&b, chunk, 96), PA_ERROR);
	assert_int_equal(pa_buf_pending(&b), 0);
	assert_int_equal(milter_put_body(&b, chunk, 95), PA_OK);
	assert_int_equal(pa_buf_pending(&b), 100);
	pa_buf_free(&b);
}

static void
test_decode_simple(void **state)
{
	uint8_t in[64];
	size_t n = packet(in, 'a', "", 0);
	struct milter_reply r;

	(void)state;
	n += packet(in + n, 'c', "", 0);
	/* every prefix of a packet is incomplete, never an error */
	for (size_t i = 0; i < 5; i++)
		assert_int_equal(milter_decode(in, i, &r), PA_AGAIN);
	assert_int_equal(milter_decode(in, n, &r), 5);
	assert_int_equal(r.code, MILTER_R_ACCEPT);
	assert_int_equal(milter_decode(in + 5, n - 5, &r), 5);
	assert_int_equal(r.code, MILTER_R_CONTINUE);
	/* data after a verdict that takes none */
	n = packet(in, 'r', "x", 1);
	assert_int_equal(milter_decode(in, n, &r), PA_ERROR);
	/* unknown code, empty packet, huge length */
	n = packet(in, 'Z', "", 0);
	assert_int_equal(milter_decode(in, n, &r), PA_ERROR);
	memset(in, 0, 5);
	assert_int_equal(milter_decode(in, 5, &r), PA_ERROR);
	in[0] = 0x7f;
	assert_int_equal(milter_decode(in, 5, &r), PA_ERROR);
}

static void
test_decode_optneg(void **state)
{
	static const uint8_t data[] = {0,    0,    0, 6, 0, 0, 0,   0x31, 0,   0x0f,
	                               0xf0, 0x00, 0, 0, 0, 1, '{', 'i',  '}', 0};
	uint8_t in[64];
	struct milter_reply r;
	size_t n = packet(in, 'O', data, sizeof(data));

	(void)state;
	/* version 6 may append the macros it wants */
	assert_int_equal(milter_decode(in, n, &r), (int)n);
	assert_int_equal(r.version, 6);
	assert_int_equal(r.actions, 0x31);
	assert_int_equal(r.protocol, 0x0ff000);
	n = packet(in, 'O', data, 11);
	assert_int_equal(milter_decode(in, n, &r), PA_ERROR);
}

static void
test_decode_headers(void **state)
{
	uint8_t in[256];
	struct milter_reply r;
	size_t n;

	(void)state;
	n = packet(in, 'h', "Authentication-Results\0mx.test;\r\n\tdkim=pass", 44);
	assert_int_equal(milter_decode(in, n, &r), (int)n);
	assert_int_equal(r.code, MILTER_R_ADDHEADER);
	assert_int_equal(r.name_len, 22);
	assert_memory_equal(r.name, "Authentication-Results", 22);
	assert_int_equal(r.value_len, 20);
	assert_memory_equal(r.value, "mx.test;\r\n\tdkim=pass", 20);
	/* folding with a bare LF is libmilter's way too */
	n = packet(in, 'h', "X-A\0a\n b", 9);
	assert_int_equal(milter_decode(in, n, &r), (int)n);
	/* index, then name and value */
	n = packet(in, 'm', "\0\0\0\x02X-Spam\0", 12);
	assert_int_equal(milter_decode(in, n, &r), (int)n);
	assert_int_equal(r.code, MILTER_R_CHGHEADER);
	assert_int_equal(r.index, 2);
	assert_int_equal(r.value_len, 0);
	/* a line break that is not folding would start another header, or the body */
	n = packet(in, 'h', "X-A\0a\r\nBcc: x", 14);
	assert_int_equal(milter_decode(in, n, &r), PA_ERROR);
	n = packet(in, 'h', "X-A\0a\r\n", 8);
	assert_int_equal(milter_decode(in, n, &r), PA_ERROR);
	n = packet(in, 'h', "X-A\0a\rb", 8);
	assert_int_equal(milter_decode(in, n, &r), PA_ERROR);
	/* bad names, missing NULs, NUL inside the value */
	n = packet(in, 'h', "X A\0a", 6);
	assert_int_equal(milter_decode(in, n, &r), PA_ERROR);
	n = packet(in, 'h', "X:A\0a", 6);
	assert_int_equal(milter_decode(in, n, &r), PA_ERROR);
	n = packet(in, 'h', "\0a", 3);
	assert_int_equal(milter_decode(in, n, &r), PA_ERROR);
	n = packet(in, 'h', "X-A\0a", 5);
	assert_int_equal(milter_decode(in, n, &r), PA_ERROR);
	n = packet(in, 'h', "X-A\0a\0b", 8);
	assert_int_equal(milter_decode(in, n, &r), PA_ERROR);
	n = packet(in, 'i', "\0\0\0", 3);
	assert_int_equal(milter_decode(in, n, &r), PA_ERROR);
}

static void
test_decode_replycode(void **state)
{
	static const char ml[] = "550-5.7.1 Spam\r\n550 5.7.1 Go away";
	uint8_t in[2048], text[MILTER_REPLY_TEXT_MAX + 10];
	struct milter_reply r;
	size_t n;

	(void)state;
	n = packet(in, 'y', "554 5.7.1 Gtube pattern", 24);
	assert_int_equal(milter_decode(in, n, &r), (int)n);
	assert_int_equal(r.reply_code, 554);
	assert_int_equal(r.text_len, 23);
	n = packet(in, 'y', ml, sizeof(ml));
	assert_int_equal(milter_decode(in, n, &r), (int)n);
	assert_int_equal(r.reply_code, 550);
	assert_int_equal(r.text_len, sizeof(ml) - 1);
	/* a filter cannot make us say 250 or 3xx */
	n = packet(in, 'y', "250 ok", 7);
	assert_int_equal(milter_decode(in, n, &r), PA_ERROR);
	n = packet(in, 'y', "354 go", 7);
	assert_int_equal(milter_decode(in, n, &r), PA_ERROR);
	/* lines of another code, a bare LF, a trailing CRLF, a wrong separator, control octets */
	n = packet(in, 'y', "550-a\r\n451 b", 13);
	assert_int_equal(milter_decode(in, n, &r), PA_ERROR);
	n = packet(in, 'y', "550 a\n250 b", 12);
	assert_int_equal(milter_decode(in, n, &r), PA_ERROR);
	n = packet(in, 'y', "550 a\r\n", 8);
	assert_int_equal(milter_decode(in, n, &r), PA_ERROR);
	n = packet(in, 'y', "550 a\r\n550 b", 13);
	assert_int_equal(milter_decode(in, n, &r), PA_ERROR);
	n = packet(in, 'y', "550 a\tb", 8);
	assert_int_equal(milter_decode(in, n, &r), PA_ERROR);
	n = packet(in, 'y', "55", 3);
	assert_int_equal(milter_decode(in, n, &r), PA_ERROR);
	n = packet(in, 'y', "550 ab", 6); /* no NUL */
	assert_int_equal(milter_decode(in, n, &r), PA_ERROR);
	memset(text, 'a', sizeof(text));
	memcpy(text, "550 ", 4);
	text[sizeof(text) - 1] = '\0';
	n = packet(in, 'y', text, sizeof(text));
	assert_int_equal(milter_decode(in, n, &r), PA_ERROR);
}

static void
test_decode_quarantine_and_unoffered(void **state)
{
	uint8_t in[64];
	struct milter_reply r;
	size_t n = packet(in, 'q', "virus", 6);

	(void)state;
	assert_int_equal(milter_decode(in, n, &r), (int)n);
	assert_int_equal(r.code, MILTER_R_QUARANTINE);
	assert_int_equal(r.text_len, 5);
	n = packet(in, 'q', "vir\nus", 7);
	assert_int_equal(milter_decode(in, n, &r), PA_ERROR);
	/* steps never offered decode as themselves: the client refuses them */
	n = packet(in, 'e', "<x@y>", 6);
	assert_int_equal(milter_decode(in, n, &r), (int)n);
	assert_int_equal(r.code, MILTER_R_CHGFROM);
}

static void
test_no_reply(void **state)
{
	(void)state;
	assert_true(milter_no_reply(MILTER_CMD_HEADER, MILTER_P_NR_HDR));
	assert_false(milter_no_reply(MILTER_CMD_HEADER, MILTER_P_NR_BODY));
	assert_true(milter_no_reply(MILTER_CMD_MACRO, 0));
	assert_true(milter_no_reply(MILTER_CMD_QUIT_NC, 0));
	assert_false(milter_no_reply(MILTER_CMD_BODYEOB, 0xffffffffu));
	assert_false(milter_no_reply(MILTER_CMD_CONNECT, 0));
}

static const char message[] = "Received: from a ([192.0.2.1])\r\n\tby mx.test; x\r\n"
                              "From: a@example.org\r\n"
                              "Subject: one\r\n  folded\r\n"
                              "X-Spam: yes\r\n"
                              "subject: two\r\n"
                              "\r\n"
                              "Body: not a header\r\n";

static void
test_fields(void **state)
{
	const uint8_t *m = (const uint8_t *)message;
	struct milter_field f;
	size_t pos = 0, n = 0;

	(void)state;
	while (milter_next_field(m, sizeof(message) - 1, &pos, &f)) {
		if (n == 2) {
			assert_int_equal(f.name_len, 7);
			assert_memory_equal(message + f.value_off, " one\r\n  folded", f.value_len);
		}
		n++;
	}
	assert_int_equal(n, 5);
	assert_memory_equal(message + pos, "\r\nBody:", 7);
	/* no header section at all */
	pos = 0;
	assert_false(milter_next_field((const uint8_t *)"\r\nbody", 6, &pos, &f));
	assert_int_equal(pos, 0);
}

static void
test_edits(void **state)
{
	const char *want = "Received: from a ([192.0.2.1])\r\n\tby mx.test; x\r\n"
	                   "Authentication-Results: mx.test;\r\n\tdkim=pass\r\n"
	                   "X-Filter: 2\r\n"
	                   "From: a@example.org\r\n"
	                   "Subject: one\r\n  folded\r\n"
	                   "subject: changed\r\n"
	                   "X-New: added by change\r\n"
	                   "\r\n"
	                   "Body: not a header\r\n";
	struct pa_buf edits, out;

	(void)state;
	pa_buf_init(&edits, 64, 1 << 16);
	pa_buf_init(&out, 64, 1 << 16);
	/* a bare LF fold becomes CRLF; additions follow Received:, in order */
	assert_int_equal(milter_edit_push(&edits, MILTER_EDIT_ADD, 0, "Authentication-Results", 22,
	                                  "mx.test;\n\tdkim=pass", 19),
	                 PA_OK);
	assert_int_equal(milter_edit_push(&edits, MILTER_EDIT_ADD, 0, "X-Filter", 8, "2", 1),
	                 PA_OK);
	/* delete X-Spam, change the second Subject (any case), never touch Received: */
	assert_int_equal(milter_edit_push(&edits, MILTER_EDIT_CHANGE, 1, "x-spam", 6, "", 0),
	                 PA_OK);
	assert_int_equal(milter_edit_push(&edits, MILTER_EDIT_CHANGE, 2, "Subject", 7, "x", 1),
	                 PA_OK);
	assert_int_equal(
	    milter_edit_push(&edits, MILTER_EDIT_CHANGE, 2, "subject", 7, "changed", 7), PA_OK);
	assert_int_equal(
	    milter_edit_push(&edits, MILTER_EDIT_CHANGE, 1, "Received", 8, "forged", 6), PA_OK);
	/* a change of an occurrence that is not there adds the field; a deletion does nothing */
	assert_int_equal(
	    milter_edit_push(&edits, MILTER_EDIT_CHANGE, 3, "X-New", 5, "added by change", 15),
	    PA_OK);
	assert_int_equal(milter_edit_push(&edits, MILTER_EDIT_CHANGE, 1, "X-Gone", 6, "", 0),
	                 PA_OK);
	assert_int_equal(milter_edit_apply((const uint8_t *)message, sizeof(message) - 1,
	                                   pa_buf_head(&edits), pa_buf_pending(&edits), NULL, 0,
	                                   &out),
	                 PA_OK);
	assert_int_equal(out.len, strlen(want));
	assert_memory_equal(out.data, want, out.len);
	/* no edits: the message as it was */
	assert_int_equal(milter_edit_apply((const uint8_t *)message, sizeof(message) - 1, NULL, 0,
	                                   NULL, 0, &out),
	                 PA_OK);
	assert_int_equal(out.len, sizeof(message) - 1);
	assert_memory_equal(out.data, message, out.len);
	pa_buf_free(&edits);
	pa_buf_free(&out);
}

/* SMFIR_REPLBODY: the header section kept, the body replaced, a final CRLF added. */
static void
test_edit_body(void **state)
{
	static const char message[] = "Received: from a\r\nSubject: s\r\n\r\nold body\r\n";
	static const char nobody[] = "Received: from a\r\nSubject: s\r\n";
	struct pa_buf out;
	struct milter_reply r;
	uint8_t pkt[] = {0, 0, 0, 5, 'b', 'n', 'e', 'w', '\r'};

	(void)state;
	pa_buf_init(&out, 64, 1 << 16);
	assert_int_equal(milter_edit_apply((const uint8_t *)message, sizeof(message) - 1, NULL, 0,
	                                   (const uint8_t *)"new\r\nbody", 9, &out),
	                 PA_OK);
	assert_int_equal(out.len, strlen("Received: from a\r\nSubject: s\r\n\r\nnew\r\nbody\r\n"));
	assert_memory_equal(out.data, "Received: from a\r\nSubject: s\r\n\r\nnew\r\nbody\r\n",
	                    out.len);
	/* an empty new body; a message that had none gets its empty line */
	assert_int_equal(milter_edit_apply((const uint8_t *)message, sizeof(message) - 1, NULL, 0,
	                                   (const uint8_t *)"", 0, &out),
	                 PA_OK);
	assert_memory_equal(out.data, "Received: from a\r\nSubject: s\r\n\r\n", out.len);
	assert_int_equal(milter_edit_apply((const uint8_t *)nobody, sizeof(nobody) - 1, NULL, 0,
	                                   (const uint8_t *)"x\r\n", 3, &out),
	                 PA_OK);
	assert_memory_equal(out.data, "Received: from a\r\nSubject: s\r\n\r\nx\r\n", out.len);
	assert_true(milter_crlf_only((const uint8_t *)"a\r\nb\r\n", 6));
	assert_true(milter_crlf_only((const uint8_t *)"", 0));
	assert_false(milter_crlf_only((const uint8_t *)"a\nb", 3));
	assert_false(milter_crlf_only((const uint8_t *)"a\rb", 3));
	assert_false(milter_crlf_only((const uint8_t *)"a\r", 2));
	assert_false(milter_crlf_only((const uint8_t *)"\n", 1));
	/* the chunk decodes as it is, whatever its octets */
	assert_int_equal(milter_decode(pkt, sizeof(pkt), &r), (int)sizeof(pkt));
	assert_int_equal(r.code, MILTER_R_REPLBODY);
	assert_int_equal(r.body_len, 4);
	assert_memory_equal(r.body, "new\r", 4);
	pa_buf_free(&out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_encode_commands),
	    cmocka_unit_test(test_edit_body),
	    cmocka_unit_test(test_encode_limits),
	    cmocka_unit_test(test_decode_simple),
	    cmocka_unit_test(test_decode_optneg),
	    cmocka_unit_test(test_decode_headers),
	    cmocka_unit_test(test_decode_replycode),
	    cmocka_unit_test(test_decode_quarantine_and_unoffered),
	    cmocka_unit_test(test_no_reply),
	    cmocka_unit_test(test_fields),
	    cmocka_unit_test(test_edits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
