/*
 * smtp_reply.c: the reply side of a session.
 *
 * Replies are appended to one output buffer in the order their commands were
 * processed, so a pipelined batch (RFC 2920) goes out in one write.  Every
 * refusal goes through smtp_refusal(): the one place that tells the host
 * (config->refused), counts errors and, at max_errors, ends the session with
 * 421.  The buffer is freed once the host has sent all of it, so an idle
 * session holds none; if it cannot grow, the session can only close.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/objcache.h"
#include "core/pa.h"
#include "smtp/smtp_session_private.h"

/*
 * The first 512 octets hold any batch of replies but EHLO's after a long
 * pipelined group; they come from the thread's cache, so the buffer a
 * session takes and frees around each message's replies costs no malloc.
 * Only buffers in use are out of the cache, so a few hundred kept suffice.
 */
#define OUT_FIRST_CAP 512
#define OUT_KEEP_MAX 256

static const struct pa_objcache out_cache = {PA_OBJCACHE_SMTP_OUT, OUT_FIRST_CAP, OUT_KEEP_MAX};

void
smtp_out_init(struct smtp_session *s)
{
	pa_buf_init_cached(&s->out, &out_cache, SMTP_OUTPUT_MAX);
}

void
smtp_out_append(struct smtp_session *s, const char *p, size_t n)
{
	if (s->out_failed)
		return;
	if (pa_buf_append(&s->out, p, n) != PA_OK) {
		s->out_failed = true;
		return;
	}
	s->progress++; /* every reply answers something complete: see smtp_session_progress() */
}

void
smtp_reply_line(struct smtp_session *s, const char *line, size_t n)
{
	if (s->out_failed)
		return;
	if (n > SMTP_REPLY_LINE_MAX - 2)
		n = SMTP_REPLY_LINE_MAX - 2;
	if (pa_buf_reserve(&s->out, n + 2) != PA_OK) {
		s->out_failed = true;
		return;
	}
	memcpy(s->out.data + s->out.len, line, n);
	memcpy(s->out.data + s->out.len + n, "\r\n", 2);
	s->out.len += n + 2;
	s->progress++; /* as smtp_out_append() */
}

size_t
smtp_out_pending(const struct smtp_session *s)
{
	return pa_buf_pending(&s->out);
}

void
smtp_out_free(struct smtp_session *s)
{
	pa_buf_free(&s->out);
}

/* Formats one reply line, cut to the RFC 5321 4.5.3.1.5 limit; returns its first octet. */
static char
vreply(struct smtp_session *s, const char *fmt, va_list ap)
{
	char line[SMTP_REPLY_LINE_MAX];
	int n = vsnprintf(line, sizeof(line) - 2, fmt, ap);

	if (n < 0)
		return '\0';
	if ((size_t)n > sizeof(line) - 3)
		n = (int)sizeof(line) - 3;
	line[n++] = '\r';
	line[n++] = '\n';
	smtp_out_append(s, line, (size_t)n);
	return line[0];
}

void
smtp_reply(struct smtp_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreply(s, fmt, ap);
	va_end(ap);
}

static void
notify(struct smtp_session *s, enum smtp_refusal why, const char *detail)
{
	if (s->config->refused != NULL)
		s->config->refused(s->host, (int)why, detail);
}

/*
 * Only permanent (5xx) replies count: they mean the client misbehaves.  A 4xx
 * is our own condition (a full spool, a busy directory, too many recipients
 * in one go) and must not cut a well-behaved client off.
 */
static void
count_error(struct smtp_session *s)
{
	unsigned max = s->config->max_errors;

	if (max == 0 || s->state == SMTP_STATE_CLOSING || ++s->errors < max)
		return;
	smtp_reply(s, "421 4.7.0 %.255s Too many errors", s->config->hostname);
	notify(s, SMTP_REFUSAL_TOO_MANY_ERRORS, NULL);
	smtp_close(s);
}

void
smtp_refusal(struct smtp_session *s, enum smtp_refusal why, const char *detail, const char *fmt,
             ...)
{
	va_list ap;
	char first;

	va_start(ap, fmt);
	first = vreply(s, fmt, ap);
	va_end(ap);
	notify(s, why, detail);
	if (first == '5')
		count_error(s);
}

/*
 * The reply for content the scanner refused.  A text line over 1000 octets
 * (RFC 5321 4.5.3.1.6) gets 550 5.6.0 rather than the 500 of a long command
 * line: the command was fine, the content (RFC 3463 X.6.0, media) was not.
 * `first` is false for the later chunks of a failed BDAT transaction, which
 * RFC 3030 3 makes us read and discard: they repeat the reply but are not
 * counted again.
 */
void
smtp_body_failure_reply(struct smtp_session *s, bool first)
{
	static const struct {
		enum smtp_refusal why;
		const char *text;
	} replies[] = {
	    [SMTP_BODY_OK] = {SMTP_REFUSAL_NONE, "451 4.3.0 Error: internal error"},
	    [SMTP_BODY_TOO_BIG] = {SMTP_REFUSAL_SIZE, "552 5.3.4 Error: message file too big"},
	    [SMTP_BODY_BARE_LF] = {SMTP_REFUSAL_BARE_LF,
	                           "550 5.6.0 Bare LF or CR in message refused"},
	    [SMTP_BODY_NUL] = {SMTP_REFUSAL_SYNTAX, "550 5.6.0 NUL in message refused"},
	    [SMTP_BODY_LONG_LINE] = {SMTP_REFUSAL_LINE_TOO_LONG,
	                             "550 5.6.0 Message text line too long"},
	    [SMTP_BODY_NO_MEMORY] = {SMTP_REFUSAL_TEMPFAIL,
	                             "452 4.3.1 Insufficient system storage"},
	};
	unsigned status = s->txn->body.status;

	if (status >= pa_array_size(replies))
		status = SMTP_BODY_OK;
	if (first)
		smtp_refusal(s, replies[status].why, NULL, "%s", replies[status].text);
	else
		smtp_reply_line(s, replies[status].text, strlen(replies[status].text));
}

const char *
smtp_refusal_name(enum smtp_refusal refusal)
{
	static const char *const names[SMTP_REFUSAL_COUNT] = {
	    [SMTP_REFUSAL_NONE] = "none",
	    [SMTP_REFUSAL_RELAY_DENIED] = "relay_denied",
	    [SMTP_REFUSAL_UNKNOWN_USER] = "unknown_user",
	    [SMTP_REFUSAL_TOO_MANY_RCPTS] = "too_many_rcpts",
	    [SMTP_REFUSAL_SIZE] = "size",
	    [SMTP_REFUSAL_BARE_LF] = "bare_lf",
	    [SMTP_REFUSAL_LINE_TOO_LONG] = "line_too_long",
	    [SMTP_REFUSAL_SYNTAX] = "syntax",
	    [SMTP_REFUSAL_SEQUENCE] = "sequence",
	    [SMTP_REFUSAL_UNKNOWN_COMMAND] = "unknown_command",
	    [SMTP_REFUSAL_TOO_MANY_ERRORS] = "too_many_errors",
	    [SMTP_REFUSAL_TIMEOUT] = "timeout",
	    [SMTP_REFUSAL_TEMPFAIL] = "tempfail",
	    [SMTP_REFUSAL_STORE_FAILED] = "store_failed",
	    [SMTP_REFUSAL_TOO_MANY_COMMANDS] = "too_many_commands",
	    [SMTP_REFUSAL_EARLY_TALKER] = "early_talker",
	    [SMTP_REFUSAL_HTTP] = "http_request",
	    [SMTP_REFUSAL_XCLIENT_DENIED] = "xclient_denied",
	    [SMTP_REFUSAL_CONN_TOTAL] = "conn_total",
	    [SMTP_REFUSAL_CONN_PER_IP] = "conn_per_ip",
	    [SMTP_REFUSAL_CONN_RATE] = "conn_rate",
	    [SMTP_REFUSAL_PROXY] = "proxy_refused",
	    [SMTP_REFUSAL_DNSBL] = "dnsbl",
	    [SMTP_REFUSAL_SCREEN_TEMPFAIL] = "dnsbl_unavailable",
	    [SMTP_REFUSAL_MILTER_REJECT] = "milter_reject",
	    [SMTP_REFUSAL_MILTER_TEMPFAIL] = "milter_tempfail",
	};

	if ((unsigned)refusal >= SMTP_REFUSAL_COUNT || names[refusal] == NULL)
		return "unknown";
	return names[refusal];
}
