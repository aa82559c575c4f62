/*
 * smtp_data.c: the streaming content scanner behind DATA and BDAT.
 *
 * A byte-level state machine whose whole state lives in struct smtp_body, so
 * the stored bytes and the verdict do not depend on how the input was split.
 * What it promises:
 *
 *  - in dot mode (DATA) the content ends at CRLF "." CRLF on the raw byte
 *    stream and nowhere else (RFC 5321 4.1.1.4).  A line starts only after a
 *    real CR LF pair (or at the first octet, DATA's own CRLF being the one
 *    before it), never after a bare LF or bare CR, even when those are
 *    normalized to CRLF: that is what keeps LF.LF, CR.CR, LF.CRLF and their
 *    friends from ending a message early (SMTP smuggling);
 *  - a "." opening a line is removed (RFC 5321 4.5.2);
 *  - under SMTP_BARE_LF_REJECT a bare LF or a bare CR (RFC 5321 2.3.8) fails
 *    the message; under SMTP_BARE_LF_NORMALIZE it is stored as CRLF;
 *  - a NUL fails the message under either policy: RFC 6152 3 and RFC 5322
 *    2.3 allow none in 7bit or 8bit text (we offer no BINARYMIME), and a NUL
 *    kept would reach the delivery tier, where software that drops NULs or
 *    stops at them reads CRLF NUL "." CRLF or CRLF "." NUL CRLF as the end of
 *    the data: the smuggling we refuse here, one hop later;
 *  - a stored line longer than SMTP_TEXT_LINE_MAX with its CRLF
 *    (RFC 5321 4.5.3.1.6) fails the message;
 *  - never more than header + max_content octets are held; content over that
 *    fails the message and is discarded while the scan goes on, so the real
 *    end of the data is still found.  A failed body frees its buffer at once.
 *
 * The state machine is the definition; scan_text() is the fast path that
 * does what it would do to ordinary text and CR LF pairs, finding CR, LF
 * and NUL 16 or 32 octets at a time and copying runs of whole lines at once
 * (about 1.5 instructions per octet of a 4 KiB message rather than 10, see
 * docs/benchmarks.md), so the state machine sees only those octets.
 */
#include "smtp/smtp_data.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/objcache.h"
#include "core/pa.h"
#include "smtp/smtp_session.h"

enum scan_state {
	SCAN_TEXT,       /* inside a line */
	SCAN_CR,         /* a CR inside a line: is it the first half of CRLF? */
	SCAN_LINE_START, /* after a real CRLF: a "." is special (DATA only) */
	SCAN_DOT,        /* a "." opening a line */
	SCAN_DOT_CR,     /* "." CR opening a line: an LF now ends the data */
};

#define LINE_CONTENT_MAX (SMTP_TEXT_LINE_MAX - 2)

/*
 * A body starts in a buffer of BODY_CACHED_CAP octets from the thread's
 * cache (core/objcache.h): the Received: header (at most 1,536 octets) and
 * most messages fit, so a worker stores them with no malloc per message.  A
 * body that outgrows it moves to the heap, doubling, and its cached buffer
 * goes back; a client that declared SIZE= (RFC 1870) larger than that gets
 * one heap buffer of that size at once (smtp_body_expect()), not a chain of
 * reallocations.  64 cached buffers a thread: 1 MiB of idle memory at most.
 */
#define BODY_CACHED_CAP 16384
static const struct pa_objcache body_cache = {PA_OBJCACHE_SMTP_BODY, BODY_CACHED_CAP, 64};

/* Heap buffers only ever have another capacity: cap tells where data came from. */
static bool
body_is_cached(const struct smtp_body *body)
{
	return body->cap == BODY_CACHED_CAP;
}

static void
release(struct smtp_body *body)
{
	if (body_is_cached(body))
		pa_objcache_put(&body_cache, body->data);
	else
		free(body->data);
	body->data = NULL;
	body->cap = 0;
}

static void
fail(struct smtp_body *body, enum smtp_body_status status)
{
	if (body->status != SMTP_BODY_OK)
		return;
	body->status = (uint8_t)status;
	/* The message will be refused: hold no memory for the rest of it. */
	release(body);
}

static size_t
content_len(const struct smtp_body *body)
{
	return body->len - body->header_len;
}

static bool move_to(struct smtp_body *body, size_t cap);

static bool
reserve(struct smtp_body *body, size_t need)
{
	size_t limit = body->max_content > SIZE_MAX - body->header_len
	                   ? SIZE_MAX
	                   : body->header_len + body->max_content;
	size_t cap = body->cap;

	if (need <= cap)
		return true;
	while (cap < need)
		cap = cap > limit / 2 ? limit : cap * 2;
	return move_to(body, cap);
}

/* A buffer of cap octets (never BODY_CACHED_CAP) holding what body holds. */
static bool
move_to(struct smtp_body *body, size_t cap)
{
	uint8_t *data;

	if (cap == BODY_CACHED_CAP)
		cap++; /* keep the capacity a heap buffer can never have for cached ones */
	if (body_is_cached(body)) {
		data = malloc(cap);
		if (data == NULL)
			return false;
		memcpy(data, body->data, body->len);
		pa_objcache_put(&body_cache, body->data);
	} else {
		data = realloc(body->data, cap);
		if (data == NULL)
			return false;
	}
	body->data = data;
	body->cap = cap;
	return true;
}

void
smtp_body_expect(struct smtp_body *body, uint64_t content)
{
	size_t need;

	/* An estimate from the client (RFC 1870 4): never past the limit, never trusted further. */
	if (body->status != SMTP_BODY_OK || content > body->max_content ||
	    content > SIZE_MAX - body->header_len - 3)
		return;
	need = body->header_len + (size_t)content + 3; /* the last CRLF and a NUL */
	if (need > body->cap)
		(void)move_to(body,
		              need); /* out of memory now: the scan grows it later, or fails */
}

static void
store(struct smtp_body *body, const uint8_t *p, size_t n)
{
	if (body->status != SMTP_BODY_OK)
		return;
	if (n > body->max_content - content_len(body)) {
		fail(body, SMTP_BODY_TOO_BIG);
		return;
	}
	if (!reserve(body, body->len + n)) {
		fail(body, SMTP_BODY_NO_MEMORY);
		return;
	}
	memcpy(body->data + body->len, p, n);
	body->len += n;
}

static void
text(struct smtp_body *body, const uint8_t *p, size_t n)
{
	size_t room = body->line_len <= LINE_CONTENT_MAX ? LINE_CONTENT_MAX - body->line_len : 0;

	if (n > room) {
		/*
		 * The octets that still fit the line come first in the stream: if
		 * they overflow max_content, that is the failure that counts, as it
		 * would be had they arrived one by one (found by fuzz_smtp_session).
		 */
		store(body, p, room);
		body->line_len = LINE_CONTENT_MAX + 1;
		fail(body, SMTP_BODY_LONG_LINE);
		return;
	}
	body->line_len += n;
	store(body, p, n);
}

static void
line_end(struct smtp_body *body)
{
	static const uint8_t crlf[2] = {'\r', '\n'};

	body->line_len = 0;
	store(body, crlf, sizeof(crlf));
}

/*
 * A bare LF or CR.  Normalized, it ends the stored line but the scanner stays
 * inside a line: only a real CRLF may start one.
 */
static void
bare_line_end(struct smtp_body *body)
{
	if (body->normalize)
		line_end(body);
	else
		fail(body, SMTP_BODY_BARE_LF);
}

static void
text_byte(struct smtp_body *body, uint8_t c)
{
	body->scan = SCAN_TEXT;
	if (c == '\r')
		body->scan = SCAN_CR;
	else if (c == '\n')
		bare_line_end(body);
	else if (c == '\0')
		fail(body, SMTP_BODY_NUL);
	else
		text(body, &c, 1);
}

/* One octet outside the fast path; returns true at the end of the data. */
static bool
scan_byte(struct smtp_body *body, uint8_t c)
{
	switch ((enum scan_state)body->scan) {
	case SCAN_LINE_START:
		if (c == '.' && body->dot_mode) {
			body->scan = SCAN_DOT;
			return false;
		}
		break;
	case SCAN_DOT:
		if (c == '\r') {
			body->scan = SCAN_DOT_CR;
			return false;
		}
		/* RFC 5321 4.5.2: the line is not ".", so its first dot goes. */
		break;
	case SCAN_DOT_CR:
		if (c == '\n')
			return true; /* CRLF "." CRLF, RFC 5321 4.1.1.4 */
		/* ". CR x": the dot was stuffing, the CR is bare. */
		bare_line_end(body);
		break;
	case SCAN_CR:
		if (c == '\n') {
			line_end(body);
			body->scan = body->dot_mode ? SCAN_LINE_START : SCAN_TEXT;
			return false;
		}
		bare_line_end(body);
		break;
	case SCAN_TEXT:
		break;
	}
	text_byte(body, c);
	return false;
}

/*
 * The octets the state machine must see inside a line: CR, LF and NUL.  A "."
 * matters only at a line start, right after a CR LF, which scan_text() looks
 * at itself, so no finder searches for it.  Each finder returns the index of
 * the first such octet in p[0..n), or n.
 */
typedef size_t (*special_finder)(const uint8_t *p, size_t n);

static size_t
find_special_scalar(const uint8_t *p, size_t n)
{
	size_t i = 0;

	while (i < n && p[i] != '\r' && p[i] != '\n' && p[i] != '\0')
		i++;
	return i;
}

#if defined(__x86_64__)
#include <immintrin.h>

/* SSE2 is part of x86-64 itself: no target attribute, no CPU check. */
static size_t
find_special_sse2(const uint8_t *p, size_t n)
{
	const __m128i cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n');
	const __m128i nul = _mm_setzero_si128();
	size_t i = 0;

	for (; i + 16 <= n; i += 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
		__m128i hit =
		    _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)),
		                 _mm_cmpeq_epi8(v, nul));
		unsigned mask = (unsigned)_mm_movemask_epi8(hit);

		if (mask != 0)
			return i + (size_t)__builtin_ctz(mask);
	}
	return i + find_special_scalar(p + i, n - i);
}

__attribute__((target("avx2"))) static size_t
find_special_avx2(const uint8_t *p, size_t n)
{
	const __m256i cr = _mm256_set1_epi8('\r'), lf = _mm256_set1_epi8('\n');
	const __m256i nul = _mm256_setzero_si256();
	size_t i = 0;

	for (; i + 32 <= n; i += 32) {
		__m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(p + i));
		__m256i hit = _mm256_or_si256(
		    _mm256_or_si256(_mm256_cmpeq_epi8(v, cr), _mm256_cmpeq_epi8(v, lf)),
		    _mm256_cmpeq_epi8(v, nul));
		unsigned mask = (unsigned)_mm256_movemask_epi8(hit);

		if (mask != 0)
			return i + (size_t)__builtin_ctz(mask);
	}
	/* The last 1..31 octets: 16 at a time, then one by one. */
	return i + find_special_sse2(p + i, n - i);
}
#endif

static const special_finder finders[SMTP_SCANNER_COUNT] = {
    [SMTP_SCANNER_REFERENCE] = find_special_scalar,
    [SMTP_SCANNER_SCALAR] = find_special_scalar,
#if defined(__x86_64__)
    [SMTP_SCANNER_SSE2] = find_special_sse2,
    [SMTP_SCANNER_AVX2] = find_special_avx2,
#endif
};

/*
 * Written once before main() runs (and by tests through
 * smtp_body_use_scanner()), then only read: a poll-mode core pays one
 * indirect call per run, never a CPU check.
 */
static enum smtp_body_scanner scanner = SMTP_SCANNER_SCALAR;
static special_finder find_special = find_special_scalar;

static bool
scanner_available(enum smtp_body_scanner which)
{
	if ((unsigned)which >= SMTP_SCANNER_COUNT || finders[which] == NULL)
		return false;
#if defined(__x86_64__)
	if (which == SMTP_SCANNER_AVX2) {
		__builtin_cpu_init();
		return __builtin_cpu_supports("avx2");
	}
#endif
	return true;
}

__attribute__((constructor)) static void
scanner_select(void)
{
	if (!smtp_body_use_scanner(SMTP_SCANNER_AVX2))
		(void)smtp_body_use_scanner(SMTP_SCANNER_SSE2);
}

bool
smtp_body_use_scanner(enum smtp_body_scanner which)
{
	if (!scanner_available(which))
		return false;
	scanner = which;
	find_special = finders[which];
	return true;
}

enum smtp_body_scanner
smtp_body_scanner(void)
{
	return scanner;
}

/*
 * The fast path, entered inside a line (SCAN_TEXT): stores text and the CR LF
 * pairs between its lines in one store() per call rather than per line, and
 * stops before the first octet the state machine must see (a bare CR or LF,
 * a NUL, a CR at the end of the input), or after a CR LF that a "." follows
 * in dot mode or that ends the input, in SCAN_LINE_START.  Everything it
 * consumes, the byte-wise state machine would have stored the same way:
 * text, then CR LF (line_end()), then in a new line an octet that is not a
 * "." (or anything, outside dot mode), which text_byte() handles as SCAN_TEXT
 * does.  Returns how many octets it consumed.
 */
static size_t
scan_text(struct smtp_body *body, const uint8_t *p, size_t n)
{
	size_t start = 0, pos = 0; /* p[start..pos) is still to be stored */
	size_t line = body->line_len;

	for (;;) {
		size_t run = find_special(p + pos, n - pos);
		size_t room = line <= LINE_CONTENT_MAX ? LINE_CONTENT_MAX - line : 0;

		if (run > room) {
			/*
			 * A line over RFC 5321 4.5.3.1.6's limit: what came before
			 * it is stored first, then text() fails the line in stream
			 * order, as it does byte by byte.
			 */
			store(body, p + start, pos - start);
			body->line_len = line;
			text(body, p + pos, run);
			line = body->line_len;
			start = pos + run;
		} else {
			line += run;
		}
		pos += run;
		if (pos == n || p[pos] != '\r' || pos + 1 == n || p[pos + 1] != '\n')
			break;
		/* A real CR LF (RFC 5321 2.3.8): a new line starts after it. */
		pos += 2;
		line = 0;
		if (body->dot_mode && (pos == n || p[pos] == '.')) {
			/* A "." opens the line, or may: RFC 5321 4.5.2 and 4.1.1.4. */
			body->scan = SCAN_LINE_START;
			break;
		}
	}
	store(body, p + start, pos - start);
	body->line_len = line;
	return pos;
}

/* The byte-at-a-time scan, SMTP_SCANNER_REFERENCE: what the others must equal. */
static size_t
scan_reference(struct smtp_body *body, const uint8_t *in, size_t len, bool *end)
{
	size_t i = 0;

	while (i < len) {
		if (body->scan == SCAN_TEXT) {
			size_t run = find_special_scalar(in + i, len - i);

			if (run > 0) {
				text(body, in + i, run);
				i += run;
				continue;
			}
		}
		if (scan_byte(body, in[i++])) {
			*end = true;
			break;
		}
	}
	return i;
}

int
smtp_body_start(struct smtp_body *body, const char *header, size_t header_len, size_t max_content,
                bool dot_mode, bool normalize)
{
	memset(body, 0, sizeof(*body));
	body->max_content = max_content;
	body->dot_mode = dot_mode;
	body->normalize = normalize;
	body->scan = dot_mode ? SCAN_LINE_START : SCAN_TEXT;
	if (header_len < BODY_CACHED_CAP) {
		body->data = pa_objcache_get(&body_cache);
		body->cap = BODY_CACHED_CAP;
	} else {
		body->data = malloc(header_len + 1);
		body->cap = header_len + 1;
	}
	if (body->data == NULL) {
		body->cap = 0;
		body->status = SMTP_BODY_NO_MEMORY;
		return PA_ERROR;
	}
	memcpy(body->data, header, header_len);
	body->len = header_len;
	body->header_len = header_len;
	return PA_OK;
}

size_t
smtp_body_scan(struct smtp_body *body, const uint8_t *in, size_t len, bool *end)
{
	size_t i = 0;

	*end = false;
	if (scanner == SMTP_SCANNER_REFERENCE)
		return scan_reference(body, in, len, end);
	while (i < len) {
		if (body->scan == SCAN_TEXT) {
			i += scan_text(body, in + i, len - i);
			if (i == len)
				break;
			if (body->scan != SCAN_TEXT)
				continue; /* SCAN_LINE_START, before a "." */
		}
		/* A CR, LF or NUL inside a line, or an octet at a line start or after a CR. */
		if (scan_byte(body, in[i++])) {
			*end = true;
			break;
		}
	}
	return i;
}

void
smtp_body_finish(struct smtp_body *body)
{
	if (body->scan == SCAN_CR)
		bare_line_end(body);
	body->scan = SCAN_TEXT;
}

void
smtp_body_free(struct smtp_body *body)
{
	release(body);
	memset(body, 0, sizeof(*body));
}
