/*
 * smtp_session.c: the sans-I/O SMTP server engine (smtp_session.h is the
 * contract).
 *
 * This file owns the life cycle of a session and its input side: it cuts the
 * byte stream into command lines, hands DATA and BDAT octets to the content
 * scanner (smtp_data.c) and stops wherever the host has to act: a message to
 * store, a connection to close, an output buffer to drain.  All input state
 * lives in the session, so how the host splits the input never changes what
 * comes out.  Memory: the struct itself stays small; a partial command line
 * (at most 511 octets), the output and the transaction are allocated only
 * while they exist.
 */
#include <stdlib.h>
#include <string.h>

#include "core/objcache.h"
#include "core/pa.h"
#include "smtp/smtp_session_private.h"

/* RFC 5321 4.5.3.1.4: 512 octets with the CRLF, so at most 510 before it. */
#define LINE_TEXT_MAX ((size_t)SMTP_COMMAND_LINE_MAX - 2)
/*
 * Kept while the CR LF is due: the text and the CR that may start the CR LF.
 * More than this can only be a line over the limit.
 */
#define LINE_KEEP_MAX (LINE_TEXT_MAX + 1)
/* A partial command line, kept between two reads: from the thread's cache, not malloc. */
static const struct pa_objcache line_cache = {PA_OBJCACHE_SMTP_LINE, LINE_KEEP_MAX, 256};

_Static_assert(sizeof(struct smtp_session) <= 192, "an idle session must stay small");

void
smtp_set_state(struct smtp_session *s, enum smtp_state state)
{
	/* Nothing reopens a closing session. */
	if (s->state != SMTP_STATE_CLOSING)
		s->state = (uint8_t)state;
}

/* The command state that matches what the session holds. */
enum smtp_state
smtp_idle_state(const struct smtp_session *s)
{
	if (s->txn != NULL)
		return s->txn->nrcpt > 0 ? SMTP_STATE_RCPT : SMTP_STATE_MAIL;
	return s->helo != NULL ? SMTP_STATE_GREETED : SMTP_STATE_CONNECTED;
}

void
smtp_close(struct smtp_session *s)
{
	s->state = SMTP_STATE_CLOSING;
}

struct smtp_session *
smtp_session_new(const struct smtp_config *config, void *host, const char *client_addr)
{
	struct smtp_session *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->client_addr = strdup(client_addr != NULL ? client_addr : "");
	if (s->client_addr == NULL) {
		free(s);
		return NULL;
	}
	s->config = config;
	s->host = host;
	smtp_out_init(s);
	s->state = SMTP_STATE_CONNECTED;
	return s;
}

void
smtp_session_free(struct smtp_session *s)
{
	if (s == NULL)
		return;
	smtp_txn_free(s->txn);
	smtp_out_free(s);
	pa_objcache_put(&line_cache, s->line);
	free(s->helo);
	free(s->client_addr);
	free(s);
}

/* RFC 5321 4.2: the 220 greeting. */
void
smtp_session_greet(struct smtp_session *s)
{
	s->greeted = true;
	if (s->state == SMTP_STATE_CLOSING)
		return;
	smtp_reply(s, "220 %.255s ESMTP PigeonAir", s->config->hostname);
}

void
smtp_session_refuse(struct smtp_session *s, const char *reply)
{
	/* One line only: whatever follows a CR or LF is dropped. */
	size_t len = strcspn(reply, "\r\n");

	if (len > SMTP_REPLY_LINE_MAX - 2)
		len = SMTP_REPLY_LINE_MAX - 2;
	s->greeted = true; /* the refusal stands in for the banner */
	smtp_out_append(s, reply, len);
	smtp_out_append(s, "\r\n", 2);
	smtp_close(s);
}

/* The data was complete and clean: wait for the host to store it. */
void
smtp_message_ready(struct smtp_session *s)
{
	struct smtp_txn *txn = s->txn;
	struct smtp_message *msg = &txn->msg;

	msg->queue_id = txn->queue_id;
	msg->mail_from = txn->mail_from;
	msg->rcpts = (const char *const *)txn->rcpts;
	msg->nrcpt = txn->nrcpt;
	msg->data = txn->body.data;
	msg->size = txn->body.len;
	msg->helo = s->helo;
	msg->client_addr = s->client_addr;
	msg->body_8bitmime = txn->body_8bitmime;
	msg->smtputf8 = txn->smtputf8;
	msg->chunked = txn->chunked;
	smtp_set_state(s, SMTP_STATE_AWAITING_STORE);
}

/* CRLF "." CRLF was seen: refuse what the scanner refused, else hand it over. */
static void
data_end(struct smtp_session *s)
{
	if (s->txn->body.status != SMTP_BODY_OK) {
		smtp_body_failure_reply(s, true);
		smtp_txn_end(s);
		return;
	}
	smtp_message_ready(s);
}

/*
 * The last octet of a BDAT chunk (RFC 3030 2): reply to the chunk, or
 * complete the message on LAST.  After a failure the later chunks of the
 * transaction are read and discarded, each answered with the same error,
 * until LAST ends the transaction (RFC 3030 3).
 */
void
smtp_bdat_chunk_end(struct smtp_session *s)
{
	struct smtp_txn *txn = s->txn;
	bool discard = s->bdat_discard;

	s->bdat_discard = false;
	smtp_set_state(s, smtp_idle_state(s));
	if (discard)
		return; /* refused at the command: its reply is already out */
	if (s->bdat_last)
		smtp_body_finish(&txn->body);
	if (txn->body.status != SMTP_BODY_OK) {
		smtp_body_failure_reply(s, !txn->failure_reported);
		txn->failure_reported = true;
		if (s->bdat_last)
			smtp_txn_end(s);
		return;
	}
	if (s->bdat_last)
		smtp_message_ready(s);
	else
		smtp_reply(s, "250 2.0.0 %llu octets received", (unsigned long long)s->bdat_size);
}

static void
line_overflow(struct smtp_session *s)
{
	s->line_overflow = true;
	s->line_len = 0;
	pa_objcache_put(&line_cache, s->line);
	s->line = NULL;
}

/* Keeps the octets of a command line whose CR LF has not arrived yet. */
static void
keep_partial_line(struct smtp_session *s, const uint8_t *in, size_t n)
{
	if (n == 0)
		return;
	s->line_cr = in[n - 1] == '\r';
	if (s->line_overflow)
		return;
	if (n > LINE_KEEP_MAX - s->line_len) {
		line_overflow(s);
		return;
	}
	if (s->line == NULL) {
		s->line = pa_objcache_get(&line_cache);
		if (s->line == NULL) {
			s->out_failed = true;
			return;
		}
	}
	memcpy(s->line + s->line_len, in, n);
	s->line_len = (uint16_t)(s->line_len + n);
}

/*
 * A CR LF ended the command line: its text is the kept octets, less `strip`
 * of them (the CR when it ended the previous input), then n octets of `in`.
 */
static void
end_line(struct smtp_session *s, size_t strip, const uint8_t *in, size_t n)
{
	char buf[SMTP_COMMAND_LINE_MAX];
	size_t len = s->line_len > strip ? s->line_len - strip : 0;
	bool overflow = s->line_overflow;

	s->line_len = 0;
	s->line_overflow = false;
	s->line_cr = false;
	if (overflow || len > LINE_TEXT_MAX || n > LINE_TEXT_MAX - len) {
		/* RFC 5321 4.5.3.1.9; the octets were never kept. */
		smtp_refusal(s, SMTP_REFUSAL_LINE_TOO_LONG, NULL, "500 5.5.2 Line too long");
		return;
	}
	if (len > 0)
		memcpy(buf, s->line, len);
	memcpy(buf + len, in, n);
	smtp_command_line(s, buf, len + n);
}

/*
 * Where the first CR LF of the line ends in `in`: the offset of its LF, or
 * len when there is none yet.  An LF opening `in` counts when the previous
 * input ended with the CR.
 */
static size_t
find_crlf(const struct smtp_session *s, const uint8_t *in, size_t len)
{
	size_t off = 0;

	if (len > 0 && in[0] == '\n' && s->line_cr)
		return 0;
	for (;;) {
		const uint8_t *lf = off < len ? memchr(in + off, '\n', len - off) : NULL;

		if (lf == NULL)
			return len;
		off = (size_t)(lf - in);
		if (off > 0 && in[off - 1] == '\r')
			return off;
		off++;
	}
}

/*
 * RFC 5321 2.3.8: only CR LF ends a command line.  A bare LF or CR is an
 * octet of the line like any other, so the line that holds one is refused as
 * a whole with one reply and nothing after the bare octet ever runs as a
 * command: a CRLF-strict proxy in front of us sees the same line boundaries
 * (the SMTP smuggling defence, on the command side).
 */
static size_t
input_command(struct smtp_session *s, const uint8_t *in, size_t len)
{
	size_t lf;

	/* Backpressure, see SMTP_OUTPUT_HIGH_WATER: never in the middle of a line. */
	if (s->line_len == 0 && !s->line_overflow && smtp_out_pending(s) >= SMTP_OUTPUT_HIGH_WATER)
		return 0;
	lf = find_crlf(s, in, len);
	if (lf == len) {
		keep_partial_line(s, in, len);
		return len;
	}
	if (lf == 0)
		end_line(s, 1, in, 0); /* the CR is the last kept octet */
	else
		end_line(s, 0, in, lf - 1);
	return lf + 1;
}

/*
 * Content moves progress once per KiB, not per octet: a client must send
 * at least that much within every data timeout (slowloris, see
 * smtp_session_progress()).
 */
static void
content_progress(struct smtp_session *s, size_t n)
{
	size_t kib = (size_t)s->content_kib + n;

	if (kib >= 1024)
		s->progress++;
	s->content_kib = (uint16_t)(kib % 1024);
}

static size_t
input_data(struct smtp_session *s, const uint8_t *in, size_t len)
{
	bool end;
	size_t n = smtp_body_scan(&s->txn->body, in, len, &end);

	content_progress(s, n);
	if (end)
		data_end(s);
	return n;
}

/* RFC 3030 2: exactly the announced octets, no dot or end-of-data handling. */
static size_t
input_bdat(struct smtp_session *s, const uint8_t *in, size_t len)
{
	size_t n = (uint64_t)len > s->bdat_left ? (size_t)s->bdat_left : len;
	bool end;

	if (!s->bdat_discard)
		(void)smtp_body_scan(&s->txn->body, in, n, &end);
	content_progress(s, n);
	s->bdat_left -= n;
	if (s->bdat_left == 0)
		smtp_bdat_chunk_end(s);
	return n;
}

/*
 * A client that talks before the banner does not wait for replies, which no
 * real MTA does (RFC 5321 4.3.1: the client waits for the greeting); it is a
 * bot or a pipe from another protocol.  Postfix's postscreen calls it
 * pregreet; we answer like RFC 5321 3.1's "554 No SMTP service here".
 */
static void
early_talker(struct smtp_session *s)
{
	s->greeted = true;
	smtp_close(s); /* first: this 5xx must not also trigger "too many errors" */
	smtp_refusal(s, SMTP_REFUSAL_EARLY_TALKER, NULL,
	             "554 5.5.1 %.255s Protocol error: talked before the greeting",
	             s->config->hostname);
}

enum smtp_input_status
smtp_session_input(struct smtp_session *s, const uint8_t *in, size_t len, size_t *consumed)
{
	enum smtp_input_status status = SMTP_NEED_MORE;
	size_t off = 0;

	if (!s->greeted && len > 0 && s->state != SMTP_STATE_CLOSING)
		early_talker(s);
	for (;;) {
		size_t n;

		if (s->out_failed)
			smtp_close(s);
		if (s->state == SMTP_STATE_CLOSING) {
			status = SMTP_CLOSE;
			break;
		}
		if (s->state == SMTP_STATE_AWAITING_STORE) {
			status = SMTP_MESSAGE_READY;
			break;
		}
		if (s->state == SMTP_STATE_STARTTLS) {
			/* CVE-2011-0411: nothing sent in clear after STARTTLS is ever a command. */
			status = SMTP_STARTTLS;
			off = len;
			break;
		}
		if (off == len)
			break;
		if (s->state == SMTP_STATE_DATA)
			n = input_data(s, in + off, len - off);
		else if (s->state == SMTP_STATE_BDAT)
			n = input_bdat(s, in + off, len - off);
		else
			n = input_command(s, in + off, len - off);
		if (n == 0)
			break;
		off += n;
	}
	if (s->line_len == 0) {
		pa_objcache_put(&line_cache, s->line);
		s->line = NULL;
	}
	*consumed = off;
	return status;
}

const struct smtp_message *
smtp_session_message(const struct smtp_session *s)
{
	return s->state == SMTP_STATE_AWAITING_STORE ? &s->txn->msg : NULL;
}

static void
timeout_close(struct smtp_session *s)
{
	smtp_refusal(s, SMTP_REFUSAL_TIMEOUT, NULL, "421 4.4.2 %.255s Error: timeout exceeded",
	             s->config->hostname);
	smtp_close(s);
}

static void
shutdown_close(struct smtp_session *s)
{
	smtp_reply(s, "421 4.3.2 %.255s Service shutting down", s->config->hostname);
	smtp_close(s);
}

/* The reply to end of data is out: the transaction ends, and a close put off for it happens. */
static void
txn_answered(struct smtp_session *s)
{
	smtp_txn_end(s);
	if (s->pending_close == SMTP_PENDING_SHUTDOWN)
		shutdown_close(s);
	else if (s->pending_close == SMTP_PENDING_TIMEOUT)
		timeout_close(s);
	s->pending_close = SMTP_PENDING_NONE;
}

/* "250 2.0.0 Ok: queued as ID", put together without printf: it goes out once per message. */
static void
queued_reply(struct smtp_session *s)
{
	static const char head[] = "250 2.0.0 Ok: queued as ";
	char line[sizeof(head) - 1 + sizeof(s->txn->queue_id)];
	size_t idlen = strnlen(s->txn->queue_id, sizeof(s->txn->queue_id));

	memcpy(line, head, sizeof(head) - 1);
	memcpy(line + sizeof(head) - 1, s->txn->queue_id, idlen);
	smtp_reply_line(s, line, sizeof(head) - 1 + idlen);
}

void
smtp_session_message_done(struct smtp_session *s, int status)
{
	if (s->state != SMTP_STATE_AWAITING_STORE)
		return;
	s->state = (uint8_t)smtp_idle_state(s);
	/* The queue id is the last token: clients and log parsers look for it there. */
	if (status == PA_OK)
		queued_reply(s);
	else
		smtp_refusal(s, SMTP_REFUSAL_STORE_FAILED, NULL,
		             "451 4.3.0 Error: queue file write error");
	txn_answered(s);
}

void
smtp_session_message_refused(struct smtp_session *s, enum smtp_refusal why, const char *reply)
{
	const char *line = reply, *crlf;

	if (s->state != SMTP_STATE_AWAITING_STORE)
		return;
	s->state = (uint8_t)smtp_idle_state(s);
	/* Every line but the last as it is; the last one is the refusal, counted once. */
	while ((crlf = strstr(line, "\r\n")) != NULL) {
		smtp_reply_line(s, line, (size_t)(crlf - line));
		line = crlf + 2;
	}
	smtp_refusal(s, why, NULL, "%s", line);
	txn_answered(s);
}

const uint8_t *
smtp_session_output(const struct smtp_session *s, size_t *len)
{
	*len = smtp_out_pending(s);
	return s->out.data != NULL ? pa_buf_head(&s->out) : (const uint8_t *)"";
}

void
smtp_session_output_consumed(struct smtp_session *s, size_t n)
{
	pa_buf_consume(&s->out, n);
	if (pa_buf_pending(&s->out) == 0)
		smtp_out_free(s);
}

/* RFC 5321 4.5.3.2: the data block timeout while octets of content are due. */
unsigned
smtp_session_timeout_ms(const struct smtp_session *s)
{
	if (s->state == SMTP_STATE_DATA || s->state == SMTP_STATE_BDAT)
		return s->config->data_timeout_ms;
	return s->config->command_timeout_ms;
}

void
smtp_session_timeout(struct smtp_session *s)
{
	if (s->state == SMTP_STATE_CLOSING)
		return;
	if (s->state == SMTP_STATE_AWAITING_STORE) {
		s->pending_close = SMTP_PENDING_TIMEOUT;
		return;
	}
	timeout_close(s);
}

void
smtp_session_shutdown(struct smtp_session *s)
{
	if (s->state == SMTP_STATE_CLOSING)
		return;
	if (s->state == SMTP_STATE_AWAITING_STORE) {
		s->pending_close = SMTP_PENDING_SHUTDOWN;
		return;
	}
	shutdown_close(s);
}

void
smtp_session_tls_started(struct smtp_session *s, const char *version, const char *cipher)
{
	if (s->state != SMTP_STATE_STARTTLS)
		return;
	/* RFC 3207 4.2: forget everything learnt from the client in clear. */
	smtp_txn_free(s->txn);
	s->txn = NULL;
	free(s->helo);
	s->helo = NULL;
	pa_objcache_put(&line_cache, s->line);
	s->line = NULL;
	s->line_len = 0;
	s->line_overflow = false;
	s->line_cr = false;
	s->esmtp = false;
	s->tls_version = version != NULL ? version : "unknown";
	s->tls_cipher = cipher != NULL ? cipher : "unknown";
	s->state = SMTP_STATE_CONNECTED;
}

void
smtp_session_set_trusted(struct smtp_session *s, bool trusted)
{
	s->trusted = trusted;
}

int
smtp_session_set_client(struct smtp_session *s, const char *addr)
{
	char *copy = strdup(addr);

	if (copy == NULL)
		return PA_ERROR;
	free(s->client_addr);
	s->client_addr = copy;
	return PA_OK;
}

uint32_t
smtp_session_progress(const struct smtp_session *s)
{
	return s->progress;
}

bool
smtp_session_tls_active(const struct smtp_session *s)
{
	return s->tls_version != NULL;
}

bool
smtp_session_closing(const struct smtp_session *s)
{
	return s->state == SMTP_STATE_CLOSING || s->out_failed;
}

bool
smtp_session_awaiting_store(const struct smtp_session *s)
{
	return s->state == SMTP_STATE_AWAITING_STORE;
}
