/*
 * dsn.h: delivery status notifications (RFC 3464) for the hand-off engine.
 *
 * Builds the content of a non-delivery report: a multipart/report with a
 * human-readable part, a message/delivery-status part (one per-recipient
 * block per failed recipient) and the original message's header as
 * text/rfc822-headers (RFC 6522).  The engine queues it to the envelope
 * sender with the null sender, like any message.
 *
 * What it promises: CRLF line ends throughout, no line longer than 998
 * octets from the builder's own text (reply texts are cut), and the
 * original header is cut at a bounded size, so a report is never large.
 */
#ifndef SPOOL_DSN_H
#define SPOOL_DSN_H

#include <stddef.h>
#include <stdint.h>

#define DSN_HEADERS_MAX (64u * 1024u)

struct dsn_rcpt {
	const char *addr;
	const char *reply; /* the peer's reply ("550 5.1.1 no such user"), or why we gave up */
	unsigned code;     /* the reply code; 0 when there was none (queue lifetime) */
};

struct dsn_report {
	const char *reporting_mta; /* our host name */
	const char *queue_id;      /* of the failed message */
	const char *mail_from;     /* the report goes to this address */
	uint64_t arrival_us;
	uint64_t now_us;
	const struct dsn_rcpt *rcpts;
	size_t nrcpt;
	const uint8_t *original; /* the stored message; only its header is quoted */
	size_t original_size;
};

/*
 * Writes the report (header and body, CRLF) into a malloc'ed buffer that the
 * caller frees.  PA_OK or PA_ERROR (out of memory, no recipient).
 */
int dsn_build(const struct dsn_report *r, uint8_t **out, size_t *outlen);

/* The enhanced status code of a reply ("5.1.1"), or one derived from its code. */
void dsn_status_of(unsigned code, const char *reply, char out[16]);

#endif
