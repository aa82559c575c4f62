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
 */
#include "smtp/smtp_data.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
#define BODY_INITIAL_CONTENT 4096

static void
fail(struct smtp_body *body, enum smtp_body_status status)
{
	if (body->status != SMTP_BODY_OK)
		return;
	body->status = (uint8_t)status;
	/* The message will be refused: hold no memory for the rest of it. */
	free(body->data);
	body->data = NULL;
	body->cap = 0;
}

static size_t
content_len(const struct smtp_body *body)
{
	return body->len - body->header_len;
}

static bool
reserve(struct smtp_body *body, size_t need)
{
	size_t limit = body->max_content > SIZE_MAX - body->header_len
	                   ? SIZE_MAX
	                   : body->header_len + body->max_content;
	size_t cap = body->cap;
	uint8_t *data;

	if (need <= cap)
		return true;
	while (cap < need)
		cap = cap > limit / 2 ? limit : cap * 2;
	data = realloc(body->data, cap);
	if (data == NULL)
		return false;
	body->data = data;
	body->cap = cap;
	return true;
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

/* Octets that need no state change: stored in one go. */
static size_t
plain_run(const uint8_t *p, size_t n)
{
	size_t i = 0;

	while (i < n && p[i] != '\r' && p[i] != '\n' && p[i] != '\0')
		i++;
	return i;
}

int
smtp_body_start(struct smtp_body *body, const char *header, size_t header_len, size_t max_content,
                bool dot_mode, bool normalize)
{
	size_t first = max_content < BODY_INITIAL_CONTENT ? max_content : BODY_INITIAL_CONTENT;

	memset(body, 0, sizeof(*body));
	body->max_content = max_content;
	body->dot_mode = dot_mode;
	body->normalize = normalize;
	body->scan = dot_mode ? SCAN_LINE_START : SCAN_TEXT;
	body->data = malloc(header_len + first + 1);
	if (body->data == NULL) {
		body->status = SMTP_BODY_NO_MEMORY;
		return PA_ERROR;
	}
	body->cap = header_len + first + 1;
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
	while (i < len) {
		if (body->scan == SCAN_TEXT) {
			size_t run = plain_run(in + i, len - i);

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
	free(body->data);
	memset(body, 0, sizeof(*body));
}
