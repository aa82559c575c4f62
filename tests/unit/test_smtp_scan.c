/*
 * test_smtp_scan.c: the vector body scanners against the byte-at-a-time one.
 *
 * smtp_body_scan() finds CR, LF and NUL 16 (SSE2) or 32 (AVX2) octets at a
 * time and stores whole runs of lines at once; SMTP_SCANNER_REFERENCE is the
 * byte-wise state machine it replaced.  For random and hostile inputs (every
 * smuggling variant, runs of every length at every alignment, inputs that end
 * inside CR LF "." CR LF, lines at the length limit, content at the size
 * limit), in DATA and BDAT mode under both bare-LF policies, every scanner fed
 * in any cut must give what the reference gives fed whole: the same octets
 * consumed, the same end of data, the same verdict, the same stored bytes and
 * the same scanner state to go on from.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/pa.h"
#include "smtp/smtp_data.h"
#include "smtp/smtp_session.h"

#define HEADER "Received: from test\r\n"
#define BIG_CONTENT (1u << 20)

static const char *const scanner_names[SMTP_SCANNER_COUNT] = {
    [SMTP_SCANNER_REFERENCE] = "reference",
    [SMTP_SCANNER_SCALAR] = "scalar",
    [SMTP_SCANNER_SSE2] = "sse2",
    [SMTP_SCANNER_AVX2] = "avx2",
};

struct mode {
	bool dot_mode;
	bool normalize;
	size_t max_content;
};

/* What one scan of a whole input leaves behind. */
struct outcome {
	size_t consumed;
	bool end;
	uint8_t status;
	uint8_t scan;
	size_t line_len; /* compared while the body is OK: after a failure it is moot */
	uint8_t *data;   /* header and content, while OK */
	size_t len;
};

static uint64_t rng_state;

static uint32_t
rnd(void)
{
	/* xorshift64*: reproducible inputs, so a failure names its case. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * 0x2545F4914F6CDD1DULL) >> 32);
}

static void
outcome_free(struct outcome *o)
{
	free(o->data);
	memset(o, 0, sizeof(*o));
}

/*
 * Feeds in[0..len) cut at cuts[0..ncuts) (increasing), each chunk from a
 * buffer of its own at the given misalignment (ASan sees any read past a
 * chunk), as smtp_session.c does: DATA stops at the end of data, BDAT ends
 * with smtp_body_finish().
 */
static void
feed(struct outcome *o, enum smtp_body_scanner which, const struct mode *m, const uint8_t *in,
     size_t len, const size_t *cuts, size_t ncuts, size_t misalign)
{
	struct smtp_body body;
	size_t off = 0;

	assert_true(smtp_body_use_scanner(which));
	memset(o, 0, sizeof(*o));
	assert_int_equal(smtp_body_start(&body, HEADER, strlen(HEADER), m->max_content, m->dot_mode,
	                                 m->normalize),
	                 PA_OK);
	for (size_t c = 0; c <= ncuts && !o->end; c++) {
		size_t stop = c < ncuts ? cuts[c] : len;
		size_t n = stop - off, used;
		uint8_t *buf = malloc(n + misalign + 1);

		assert_non_null(buf);
		memcpy(buf + misalign, in + off, n);
		used = smtp_body_scan(&body, buf + misalign, n, &o->end);
		free(buf);
		assert_true(used <= n);
		if (!o->end)
			assert_int_equal(used, n); /* only the end of data leaves octets unread */
		if (!m->dot_mode)
			assert_false(o->end);
		off += used;
	}
	if (!m->dot_mode)
		smtp_body_finish(&body);
	o->consumed = off;
	o->status = body.status;
	o->scan = body.scan;
	o->line_len = body.line_len;
	if (body.status == SMTP_BODY_OK) {
		assert_true(body.len >= strlen(HEADER));
		assert_memory_equal(body.data, HEADER, strlen(HEADER));
		o->data = malloc(body.len + 1);
		assert_non_null(o->data);
		memcpy(o->data, body.data, body.len);
		o->len = body.len;
	} else {
		assert_null(body.data); /* a failed body holds no memory */
	}
	smtp_body_free(&body);
}

static void
assert_same(const struct outcome *got, const struct outcome *want, const char *what,
            enum smtp_body_scanner which, const struct mode *m)
{
	if (got->consumed == want->consumed && got->end == want->end &&
	    got->status == want->status && got->scan == want->scan && got->len == want->len &&
	    (got->status != SMTP_BODY_OK ||
	     (got->line_len == want->line_len && memcmp(got->data, want->data, got->len) == 0)))
		return;
	print_error("%s, scanner %s, %s mode, %s, max_content %zu:\n"
	            "  consumed %zu/%zu end %d/%d status %d/%d scan %d/%d line_len %zu/%zu len "
	            "%zu/%zu\n",
	            what, scanner_names[which], m->dot_mode ? "DATA" : "BDAT",
	            m->normalize ? "normalize" : "reject", m->max_content, got->consumed,
	            want->consumed, got->end, want->end, got->status, want->status, got->scan,
	            want->scan, got->line_len, want->line_len, got->len, want->len);
	fail();
}

/* The scanners this CPU has; the reference and the scalar one always. */
static size_t
scanners(enum smtp_body_scanner out[SMTP_SCANNER_COUNT])
{
	enum smtp_body_scanner saved = smtp_body_scanner();
	size_t n = 0;

	for (int i = 0; i < SMTP_SCANNER_COUNT; i++)
		if (smtp_body_use_scanner((enum smtp_body_scanner)i))
			out[n++] = (enum smtp_body_scanner)i;
	assert_true(smtp_body_use_scanner(saved));
	return n;
}

/*
 * Checks one input in one mode: the reference fed whole is the answer; every
 * scanner fed whole, octet by octet (short inputs), cut at every point
 * (short inputs) and in random cuts must agree with it.
 */
static void
check_input(const char *what, const uint8_t *in, size_t len, const struct mode *m, bool every_cut)
{
	enum smtp_body_scanner list[SMTP_SCANNER_COUNT];
	size_t nscanners = scanners(list);
	enum smtp_body_scanner saved = smtp_body_scanner();
	struct outcome want, got;
	size_t *cuts = malloc((len + 1) * sizeof(*cuts));

	assert_non_null(cuts);
	feed(&want, SMTP_SCANNER_REFERENCE, m, in, len, NULL, 0, 0);
	for (size_t s = 0; s < nscanners; s++) {
		enum smtp_body_scanner which = list[s];

		feed(&got, which, m, in, len, NULL, 0, rnd() % 32);
		assert_same(&got, &want, what, which, m);
		outcome_free(&got);
		for (size_t r = 0; r < 3; r++) {
			size_t ncuts = 0, at = 0;

			while (len > 0) {
				/* Mostly short chunks, sometimes long ones. */
				at += 1 + (rnd() % 4 == 0 ? rnd() % (len + 1) : rnd() % 70);
				if (at >= len)
					break;
				cuts[ncuts++] = at;
			}
			feed(&got, which, m, in, len, cuts, ncuts, rnd() % 32);
			assert_same(&got, &want, "random cuts", which, m);
			outcome_free(&got);
		}
		if (!every_cut)
			continue;
		for (size_t i = 1; i < len; i++) {
			cuts[i - 1] = i;
			feed(&got, which, m, in, len, cuts + i - 1, 1, i % 32);
			assert_same(&got, &want, "one cut", which, m);
			outcome_free(&got);
		}
		feed(&got, which, m, in, len, cuts, len > 0 ? len - 1 : 0, 0);
		assert_same(&got, &want, "octet by octet", which, m);
		outcome_free(&got);
	}
	outcome_free(&want);
	free(cuts);
	assert_true(smtp_body_use_scanner(saved));
}

/* Every mode, with room to spare and with the size limit somewhere inside the input. */
static void
check_all_modes(const char *what, const uint8_t *in, size_t len, bool every_cut)
{
	for (int dot = 0; dot <= 1; dot++)
		for (int norm = 0; norm <= 1; norm++) {
			struct mode m = {dot != 0, norm != 0, BIG_CONTENT};

			check_input(what, in, len, &m, every_cut);
			m.max_content = len > 0 ? rnd() % len : 0;
			check_input(what, in, len, &m, every_cut);
		}
}

static void
test_scanner_chosen_at_start(void **state)
{
	(void)state;
#if defined(__x86_64__)
	__builtin_cpu_init();
	assert_int_equal(smtp_body_scanner(),
	                 __builtin_cpu_supports("avx2") ? SMTP_SCANNER_AVX2 : SMTP_SCANNER_SSE2);
	assert_true(smtp_body_use_scanner(SMTP_SCANNER_SSE2));
	assert_int_equal(smtp_body_scanner(), SMTP_SCANNER_SSE2);
	if (!__builtin_cpu_supports("avx2")) {
		assert_false(smtp_body_use_scanner(SMTP_SCANNER_AVX2));
		assert_int_equal(smtp_body_scanner(), SMTP_SCANNER_SSE2);
	}
#else
	assert_int_equal(smtp_body_scanner(), SMTP_SCANNER_SCALAR);
	assert_false(smtp_body_use_scanner(SMTP_SCANNER_SSE2));
	assert_false(smtp_body_use_scanner(SMTP_SCANNER_AVX2));
#endif
	assert_false(smtp_body_use_scanner(SMTP_SCANNER_COUNT));
	assert_true(smtp_body_use_scanner(SMTP_SCANNER_REFERENCE));
	assert_int_equal(smtp_body_scanner(), SMTP_SCANNER_REFERENCE);
}

/* What each scanner stores, spelled out (not only compared with the reference). */
static void
test_known_outcomes(void **state)
{
	static const struct {
		const char *in;
		size_t len;
		bool normalize;
		const char *stored; /* NULL: refused with status */
		uint8_t status;
		size_t consumed;
	} cases[] = {
#define C(in, norm, stored, status, consumed) {in, sizeof(in) - 1, norm, stored, status, consumed}
	    C("Subject: x\r\n\r\nhello\r\n..dot\r\n.\r\nMAIL", false,
	      "Subject: x\r\n\r\nhello\r\n.dot\r\n", SMTP_BODY_OK, 31),
	    C("0123456789abcdef0123456789abcdef0123456789\r\n.\r\n", false,
	      "0123456789abcdef0123456789abcdef0123456789\r\n", SMTP_BODY_OK, 47),
	    C("line one is long enough for a vector\nline two\r\n.\r\n", true,
	      "line one is long enough for a vector\r\nline two\r\n", SMTP_BODY_OK, 50),
	    C("line one is long enough for a vector\nline two\r\n.\r\n", false, NULL,
	      SMTP_BODY_BARE_LF, 50),
	    C("a run of text that is longer than 32 octets\r\n.x\n.\r\n.\r\n", true,
	      "a run of text that is longer than 32 octets\r\nx\r\n.\r\n", SMTP_BODY_OK, 54),
	    C("text before a NUL, more than sixteen octets\0\r\n.\r\n", true, NULL, SMTP_BODY_NUL,
	      49),
	    C("\xcd\x8a\x8d\x0b\x0c\x0e\x80\xff high octets are text\r\n.\r\n", false,
	      "\xcd\x8a\x8d\x0b\x0c\x0e\x80\xff high octets are text\r\n", SMTP_BODY_OK, 34),
#undef C
	};
	enum smtp_body_scanner list[SMTP_SCANNER_COUNT];
	size_t nscanners = scanners(list);

	(void)state;
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++)
		for (size_t s = 0; s < nscanners; s++) {
			struct mode m = {true, cases[c].normalize, BIG_CONTENT};
			struct outcome o;

			feed(&o, list[s], &m, (const uint8_t *)cases[c].in, cases[c].len, NULL, 0,
			     0);
			assert_true(o.end);
			assert_int_equal(o.consumed, cases[c].consumed);
			assert_int_equal(o.status, cases[c].status);
			if (cases[c].stored != NULL) {
				assert_int_equal(o.len - strlen(HEADER), strlen(cases[c].stored));
				assert_memory_equal(o.data + strlen(HEADER), cases[c].stored,
				                    strlen(cases[c].stored));
			}
			outcome_free(&o);
		}
}

/* Lines of 997..1000 octets, whole and split by the vector blocks: 998 is the limit. */
static void
test_line_limit(void **state)
{
	enum smtp_body_scanner list[SMTP_SCANNER_COUNT];
	size_t nscanners = scanners(list);
	uint8_t in[1100];

	(void)state;
	for (size_t n = SMTP_TEXT_LINE_MAX - 3; n <= SMTP_TEXT_LINE_MAX; n++)
		for (size_t s = 0; s < nscanners; s++) {
			struct mode m = {true, false, BIG_CONTENT};
			struct outcome o;

			memcpy(in, "x\r\n", 3);
			memset(in + 3, 'a', n);
			memcpy(in + 3 + n, "\r\n.\r\n", 5);
			feed(&o, list[s], &m, in, n + 8, NULL, 0, 0);
			assert_true(o.end);
			assert_int_equal(o.consumed, n + 8);
			assert_int_equal(o.status, n + 2 <= SMTP_TEXT_LINE_MAX
			                               ? SMTP_BODY_OK
			                               : SMTP_BODY_LONG_LINE);
			outcome_free(&o);
			check_all_modes("line limit", in, n + 8, false);
		}
}

/* The smuggling variants of docs/security.md, each inside text and split everywhere. */
static void
test_smuggling_variants(void **state)
{
	static const struct {
		const char *seq;
		size_t len;
	} seqs[] = {
#define S(x) {x, sizeof(x) - 1}
	    S("\n.\n"),       S("\r.\r"),       S("\r.\n"),       S("\n.\r"),
	    S("\n.\r\n"),     S("\r\n.\n"),     S("\r.\r\n"),     S("\r\n.\r"),
	    S("\r\n\0.\r\n"), S("\r\n.\0\r\n"), S("\r\n.\r\r\n"), S("\r\r\n.\r\r\n"),
	    S("\r\n.\r\n"),   S("\r\n..\r\n"),  S("\r\n. \r\n"),  S("\r\n\r\n.\r\n"),
#undef S
	};
	static const char *const before[] = {"", "x", "legit body", "0123456789abcde",
	                                     "0123456789abcdef0123456789abcde"};
	static const char after[] =
	    "MAIL FROM:<evil@x>\r\nRCPT TO:<v@y>\r\nDATA\r\nsmuggled\r\n.\r\n";

	(void)state;
	for (size_t v = 0; v < sizeof(seqs) / sizeof(seqs[0]); v++)
		for (size_t b = 0; b < sizeof(before) / sizeof(before[0]); b++) {
			uint8_t in[256];
			size_t len = 0;

			memcpy(in, before[b], strlen(before[b]));
			len += strlen(before[b]);
			memcpy(in + len, seqs[v].seq, seqs[v].len);
			len += seqs[v].len;
			memcpy(in + len, after, sizeof(after) - 1);
			len += sizeof(after) - 1;
			check_all_modes("smuggling variant", in, len, true);
			/* The same input cut short inside the sequence: ends mid-CRLF. */
			for (size_t k = 1; k <= seqs[v].len; k++)
				check_all_modes("smuggling variant, cut short", in,
				                strlen(before[b]) + k, true);
		}
}

/*
 * Runs of 0..96 ordinary octets before each interesting octet, at every
 * alignment of a 64-octet window: the vector blocks' edges and tails.
 */
static void
test_runs_across_blocks(void **state)
{
	static const char *const tails[] = {"\r\n",    "\n",     "\r",        "\0",     "\r\n.",
	                                    "\r\n.\r", "\r\r\n", "\r\n.\r\n", "\r\n..", "\r\nx"};
	uint8_t in[256];

	(void)state;
	for (size_t run = 0; run <= 96; run++)
		for (size_t t = 0; t < sizeof(tails) / sizeof(tails[0]); t++) {
			size_t tl = t == 3 ? 1 : strlen(tails[t]), len;

			for (size_t i = 0; i < run; i++)
				in[i] = (uint8_t)('a' + i % 26);
			memcpy(in + run, tails[t], tl);
			/* More text after, so a stop inside a block is seen too. */
			memcpy(in + run + tl, "tail text 0123456789abcdef\r\n.\r\n", 31);
			len = run + tl + 31;
			check_all_modes("run before an interesting octet", in, len, run < 40);
			check_all_modes("run cut short", in, run + tl, false);
		}
}

/* A random input built from the octets and sequences that matter. */
static size_t
random_input(uint8_t *in, size_t cap)
{
	static const char *const tokens[] = {"\r\n",  "\r",           "\n",     ".",
	                                     "\r\n.", "\r\n.\r\n",    "\r\n..", "\x8d",
	                                     "\x8a",  "\x0b\x0c\x0e", "\xff"};
	size_t len = 0, target = rnd() % cap;

	while (len < target) {
		uint32_t pick = rnd() % 16;
		size_t n;

		if (pick < 6) { /* text: mostly short lines, sometimes near the limit */
			n = rnd() % 8 == 0 ? 990 + rnd() % 20 : rnd() % 80;
			if (n > cap - len)
				n = cap - len;
			for (size_t i = 0; i < n; i++)
				in[len + i] = (uint8_t)(' ' + rnd() % 95);
		} else if (pick == 6) {
			n = 1;
			if (n > cap - len)
				break;
			in[len] = '\0';
		} else {
			const char *tok = tokens[rnd() % (sizeof(tokens) / sizeof(tokens[0]))];

			n = strlen(tok);
			if (n > cap - len)
				break;
			memcpy(in + len, tok, n);
		}
		len += n;
	}
	return len;
}

static void
test_random_inputs(void **state)
{
	enum { INPUTS = 300, CAP = 4096 };
	uint8_t *in = malloc(CAP);

	(void)state;
	assert_non_null(in);
	rng_state = 0x9e3779b97f4a7c15ULL;
	for (int i = 0; i < INPUTS; i++) {
		size_t len = random_input(in, CAP);

		check_all_modes("random input", in, len, len < 64);
	}
	/* Uniformly random octets too: CR/LF/NUL rare, high octets common. */
	for (int i = 0; i < 100; i++) {
		size_t len = rnd() % CAP;

		for (size_t k = 0; k < len; k++)
			in[k] = (uint8_t)rnd();
		check_all_modes("random octets", in, len, false);
	}
	free(in);
}

/*
 * The body's buffer: the first one comes from the thread's cache, a body that
 * outgrows it moves to the heap with every octet kept, and a declared SIZE=
 * (smtp_body_expect) makes room once, so a body of that size never moves.
 */
static void
fill_lines(uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (i % 80 == 78) ? '\r' : (i % 80 == 79) ? '\n' : (uint8_t)('a' + i % 26);
}

static void
test_buffer_growth_and_expect(void **state)
{
	const size_t content = 210 * 80; /* 16,800 octets: past the first buffer (16 KiB) */
	static const uint8_t dot[] = ".\r\n";
	uint8_t *in = malloc(content);
	struct smtp_body body;
	size_t cap;
	bool end;

	(void)state;
	assert_non_null(in);
	fill_lines(in, content);
	for (int expect = 0; expect < 2; expect++) {
		assert_int_equal(
		    smtp_body_start(&body, HEADER, strlen(HEADER), 1u << 20, true, false), PA_OK);
		if (expect)
			smtp_body_expect(&body, content);
		cap = body.cap;
		for (size_t off = 0; off < content; off += 1000) /* in reads of 1,000 octets */
			assert_int_equal(smtp_body_scan(&body, in + off,
			                                content - off < 1000 ? content - off : 1000,
			                                &end),
			                 content - off < 1000 ? content - off : 1000);
		assert_int_equal(smtp_body_scan(&body, dot, 3, &end), 3);
		assert_true(end);
		assert_int_equal(body.status, SMTP_BODY_OK);
		assert_int_equal(body.len, strlen(HEADER) + content);
		assert_memory_equal(body.data, HEADER, strlen(HEADER));
		assert_memory_equal(body.data + strlen(HEADER), in, content);
		if (expect)
			assert_int_equal(body.cap, cap); /* room made once, never moved */
		else
			assert_true(body.cap > cap); /* outgrew the first buffer */
		smtp_body_free(&body);
		assert_null(body.data);
	}
	/* A declared size past the limit is not believed: nothing is reserved for it. */
	assert_int_equal(smtp_body_start(&body, HEADER, strlen(HEADER), 1000, true, false), PA_OK);
	cap = body.cap;
	smtp_body_expect(&body, 1u << 30);
	assert_int_equal(body.cap, cap);
	smtp_body_free(&body);
	free(in);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_scanner_chosen_at_start),
	    cmocka_unit_test(test_known_outcomes),
	    cmocka_unit_test(test_line_limit),
	    cmocka_unit_test(test_smuggling_variants),
	    cmocka_unit_test(test_runs_across_blocks),
	    cmocka_unit_test(test_random_inputs),
	    cmocka_unit_test(test_buffer_growth_and_expect),
	};

	rng_state = 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
