/*
 * smtp_data.h: the message content scanner shared by DATA and BDAT (internal
 * to smtp/).
 *
 * It turns the raw octets the client sends after DATA or BDAT into the bytes
 * that get stored, keeping every bit of its state in struct smtp_body so that
 * feeding it one byte at a time or in one chunk gives the same stored bytes
 * and the same verdict.  Memory never exceeds the header plus max_content.
 */
#ifndef SMTP_DATA_H
#define SMTP_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Why the content will be refused; the first failure in stream order wins. */
enum smtp_body_status {
	SMTP_BODY_OK,
	SMTP_BODY_TOO_BIG,   /* content over max_content (RFC 1870) */
	SMTP_BODY_BARE_LF,   /* bare LF or bare CR under SMTP_BARE_LF_REJECT */
	SMTP_BODY_NUL,       /* a NUL octet, under either policy */
	SMTP_BODY_LONG_LINE, /* text line over SMTP_TEXT_LINE_MAX */
	SMTP_BODY_NO_MEMORY,
};

struct smtp_body {
	uint8_t *data; /* header then content; freed as soon as the content fails */
	size_t len;
	size_t cap;
	size_t header_len;
	size_t max_content;
	size_t line_len; /* octets of the current stored line, saturating */
	uint8_t scan;    /* the scanner state, private to smtp_data.c */
	uint8_t status;  /* enum smtp_body_status */
	bool dot_mode;   /* DATA: dot-stuffing and CRLF.CRLF; BDAT: raw octets */
	bool normalize;  /* SMTP_BARE_LF_NORMALIZE */
};

/*
 * Starts a body holding `header` (stored verbatim, not counted against
 * max_content).  Returns PA_ERROR when out of memory; the body then still
 * scans (so the client's octets are consumed) with status SMTP_BODY_NO_MEMORY.
 */
int smtp_body_start(struct smtp_body *body, const char *header, size_t header_len,
                    size_t max_content, bool dot_mode, bool normalize);

/*
 * The client declared the content's size (SIZE=, RFC 1870): room for that
 * much at once when it is more than the body holds, within max_content.
 * Only an allocation hint; what the client sends decides the rest.
 */
void smtp_body_expect(struct smtp_body *body, uint64_t content);

/*
 * Scans up to len octets and returns how many it consumed.  In dot mode *end
 * becomes true when CRLF "." CRLF was seen; the octets after it are not
 * consumed.  Outside dot mode it consumes everything and *end stays false.
 */
size_t smtp_body_scan(struct smtp_body *body, const uint8_t *in, size_t len, bool *end);

/*
 * How smtp_body_scan() finds the next CR, LF or NUL in a run of text.  The
 * best one the CPU has is chosen once, at start-up; every one gives the same
 * consumed counts, stored bytes and verdicts.  SMTP_SCANNER_REFERENCE is the
 * byte-at-a-time state machine the others are checked against (one copy per
 * run of text and one per CR LF, as before the vector scanners).
 */
enum smtp_body_scanner {
	SMTP_SCANNER_REFERENCE,
	SMTP_SCANNER_SCALAR, /* the run-copying scanner, a byte at a time */
	SMTP_SCANNER_SSE2,   /* 16 octets at a time (x86-64 baseline) */
	SMTP_SCANNER_AVX2,   /* 32 octets at a time */
	SMTP_SCANNER_COUNT,
};

/*
 * For tests and fuzzers: makes `which` the scanner of the whole process.
 * Returns false (and changes nothing) when this CPU or build lacks it.  Not
 * thread-safe: call it while no session scans.
 */
bool smtp_body_use_scanner(enum smtp_body_scanner which);

/* The scanner in use: the best available unless smtp_body_use_scanner() said otherwise. */
enum smtp_body_scanner smtp_body_scanner(void);

/* BDAT LAST: a CR left pending at the very end is a bare CR. */
void smtp_body_finish(struct smtp_body *body);

void smtp_body_free(struct smtp_body *body);

#endif
