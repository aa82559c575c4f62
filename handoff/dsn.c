/*
 * dsn.c: the RFC 3464 report builder (dsn.h).
 *
 * What it promises: the report is a well-formed multipart/report; the
 * boundary is derived from the queue id and time and checked against the
 * quoted header, so it cannot occur inside a part; every line we write ends
 * in CRLF.
 */
#include "handoff/dsn.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/mail_date.h"
#include "core/pa.h"

/*
 * A report is a few KiB a recipient plus DSN_HEADERS_MAX of the original:
 * far below this, which only bounds what a bug could make of it.
 */
#define DSN_REPORT_MAX (64u << 20)

/* The report being written; a failed append (out of memory) fails the whole report. */
struct buf {
	struct pa_buf b;
	bool failed;
};

static void
add(struct buf *b, const void *data, size_t len)
{
	if (!b->failed && pa_buf_append(&b->b, data, len) != PA_OK)
		b->failed = true;
}

static void __attribute__((format(printf, 2, 3))) addf(struct buf *b, const char *fmt, ...)
{
	char line[1100];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->failed = true;
		return;
	}
	add(b, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

void
dsn_status_of(unsigned code, const char *reply, char out[16])
{
	const char *p = reply != NULL ? strchr(reply, ' ') : NULL;
	unsigned a, b, c;
	int n = 0;

	if (p != NULL && sscanf(p + 1, "%1u.%3u.%3u%n", &a, &b, &c, &n) == 3 && n > 0 &&
	    (a == 2 || a == 4 || a == 5) && (p[1 + n] == ' ' || p[1 + n] == '\0')) {
		snprintf(out, 16, "%u.%u.%u", a, b, c);
		return;
	}
	if (code == 0)
		snprintf(out, 16, "4.4.7"); /* delivery time expired */
	else
		snprintf(out, 16, "%u.0.0", code / 100 == 4 ? 4u : 5u);
}

/* Only printable ASCII and tabs from a peer's reply go into the report. */
static void
clean(const char *in, char *out, size_t outlen)
{
	size_t o = 0;

	for (; in != NULL && *in && o + 1 < outlen; in++)
		out[o++] = (*in >= 0x20 && *in < 0x7f) || *in == '\t' ? *in : '?';
	out[o] = '\0';
}

/* The original header: everything before the first empty line, bounded. */
static size_t
header_len(const uint8_t *m, size_t size)
{
	for (size_t i = 0; i + 1 < size && i < DSN_HEADERS_MAX; i++) {
		if (m[i] == '\n' &&
		    (m[i + 1] == '\n' || (i + 2 < size && m[i + 1] == '\r' && m[i + 2] == '\n')))
			return i + 1;
	}
	return size < DSN_HEADERS_MAX ? size : DSN_HEADERS_MAX;
}

int
dsn_build(const struct dsn_report *r, uint8_t **out, size_t *outlen)
{
	struct buf b = {.failed = false};
	char date[PA_MAIL_DATE_MAX], arrival[PA_MAIL_DATE_MAX], boundary[96], status[16], text[600];
	size_t hlen = header_len(r->original, r->original_size);

	if (r->nrcpt == 0)
		return PA_ERROR;
	pa_buf_init(&b.b, 8192, DSN_REPORT_MAX);
	pa_mail_date((int64_t)(r->now_us / 1000000u), date);
	pa_mail_date((int64_t)(r->arrival_us / 1000000u), arrival);
	snprintf(boundary, sizeof(boundary), "=_pigeonair_%s_%llu", r->queue_id,
	         (unsigned long long)r->now_us);
	/* A boundary inside the quoted header would split the report: make it longer. */
	while (hlen > 0 && memmem(r->original, hlen, boundary, strlen(boundary)) != NULL &&
	       strlen(boundary) + 2 < sizeof(boundary))
		strcat(boundary, "_x");

	addf(&b, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", r->reporting_mta);
	addf(&b, "To: <%s>\r\n", r->mail_from);
	addf(&b, "Subject: Undelivered Mail Returned to Sender\r\n");
	addf(&b, "Date: %s\r\n", date);
	addf(&b, "Message-ID: <%s.dsn@%s>\r\n", r->queue_id, r->reporting_mta);
	addf(&b, "Auto-Submitted: auto-replied\r\n");
	addf(&b, "MIME-Version: 1.0\r\n");
	addf(&b,
	     "Content-Type: multipart/report; report-type=delivery-status;\r\n"
	     "\tboundary=\"%s\"\r\n\r\n",
	     boundary);
	addf(&b, "This is a MIME-encapsulated message.\r\n\r\n");

	addf(&b, "--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n", boundary);
	addf(&b, "This is the mail system at host %s.\r\n\r\n", r->reporting_mta);
	addf(&b,
	     "Your message (queue id %s) could not be delivered to one or more\r\n"
	     "recipients. It is attached below.\r\n\r\n",
	     r->queue_id);
	for (size_t i = 0; i < r->nrcpt; i++) {
		clean(r->rcpts[i].reply, text, 500);
		addf(&b, "<%s>: %s\r\n", r->rcpts[i].addr, text);
	}
	addf(&b, "\r\n--%s\r\nContent-Type: message/delivery-status\r\n\r\n", boundary);
	addf(&b, "Reporting-MTA: dns; %s\r\n", r->reporting_mta);
	addf(&b, "X-PigeonAir-Queue-ID: %s\r\n", r->queue_id);
	addf(&b, "Arrival-Date: %s\r\n", arrival);
	for (size_t i = 0; i < r->nrcpt; i++) {
		dsn_status_of(r->rcpts[i].code, r->rcpts[i].reply, status);
		clean(r->rcpts[i].reply, text, 500);
		addf(&b, "\r\nFinal-Recipient: rfc822; %s\r\n", r->rcpts[i].addr);
		addf(&b, "Action: failed\r\nStatus: %s\r\n", status);
		if (r->rcpts[i].code != 0)
			addf(&b, "Diagnostic-Code: smtp; %s\r\n", text);
		else
			addf(&b, "Diagnostic-Code: X-PigeonAir; %s\r\n", text);
		addf(&b, "Last-Attempt-Date: %s\r\n", date);
	}
	addf(&b, "\r\n--%s\r\nContent-Type: text/rfc822-headers\r\n\r\n", boundary);
	add(&b, r->original, hlen);
	if (hlen > 0 && r->original[hlen - 1] != '\n')
		add(&b, "\r\n", 2);
	addf(&b, "\r\n--%s--\r\n", boundary);
	if (b.failed) {
		pa_buf_free(&b.b);
		return PA_ERROR;
	}
	*out = b.b.data;
	*outlen = b.b.len;
	return PA_OK;
}
