/*
 * lg_session.c: the sans-I/O SMTP client of pigeon-loadgen (lg_session.h).
 *
 * Replies are matched to commands by counting: a transaction sends MAIL,
 * nrcpt RCPTs and DATA in that order (all at once when pipelining, one per
 * reply otherwise), so the k-th reply of the transaction answers command k
 * and no queue of expected replies is needed (a queue would cost a byte per
 * recipient per session, and idle sessions must stay small: the line and
 * output buffers are allocated only while they hold bytes).
 */
#include "loadgen/lg_session.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>

#include "core/buf.h"
#include "core/pa.h"

/*
 * What the wire buffer may hold: bodies stop at LG_OUT_HIGH and add a
 * chunk at most, commands and TLS records are small; this only bounds a bug.
 */
#define LG_OUT_MAX (16u << 20)

enum phase {
	PH_CONNECTING,
	PH_GREETING,  /* waiting for the 220 */
	PH_EHLO,      /* EHLO sent */
	PH_STARTTLS,  /* STARTTLS sent, waiting for its 220 */
	PH_HANDSHAKE, /* TLS handshake running */
	PH_STARVED,   /* no transaction: the source said WAIT */
	PH_HOLD,      /* idle mode: connected and past EHLO, holding */
	PH_TXN,       /* MAIL/RCPT/DATA sent, replies outstanding */
	PH_BODY,      /* after 354: the message is being queued */
	PH_EOD,       /* CRLF.CRLF queued, waiting for its reply */
	PH_RSET,      /* RSET after a failed transaction */
	PH_QUIT,      /* QUIT sent */
	PH_CLOSED,
};

struct lg_session {
	struct lg_workload w;
	lg_event_fn ev;
	void *ev_arg;
	enum phase phase;
	uint64_t now; /* the time of the call being served, for events */
	uint64_t created_us;
	uint64_t progress_us; /* last time anything moved: the reply timeout runs from here */

	/* Reply parsing: a partial line waits here between inputs. */
	struct pa_buf line;
	unsigned ml_code; /* the code of a multi-line reply in progress; 0 when none */
	bool ehlo_pipelining, ehlo_starttls;

	/* Wire output: what is pending waits for the transport. */
	struct pa_buf out;
	uint64_t out_queued, out_consumed; /* wire bytes ever queued / consumed */

	/* TLS, once STARTTLS got its 220. */
	SSL *ssl;
	BIO *rbio, *wbio;
	bool tls_up;
	uint64_t tls_start_us;

	/* The transaction in flight. */
	struct lg_message msg;
	bool in_txn; /* MSG_START emitted, MSG_DONE/FAILED not yet */
	bool pipelined;
	unsigned cmds_sent; /* of MAIL, RCPT..., DATA */
	unsigned replies;   /* of those, answered */
	unsigned rcpt_ok;
	unsigned mail_code, rcpt_fail_code;
	size_t body_off;
	bool body_bol; /* the next body byte starts a line */
	bool eod_pending;
	uint64_t eod_mark; /* out_queued just after CRLF.CRLF */
	uint64_t eod_sent_us;

	unsigned msgs_done;
	bool quit_wanted;
	enum lg_err close_err; /* reported when the QUIT we sent is answered */
};

/* ---------------------------------------------------------------------------------------------
 * Events and closing */

static void
emit(struct lg_session *s, enum lg_event_type type, enum lg_stage stage, unsigned code,
     uint64_t latency, uint64_t bytes)
{
	struct lg_event e = {
	    .type = type,
	    .stage = stage,
	    .code = code,
	    .err = LG_ERR_NONE,
	    .now_us = s->now,
	    .latency_us = latency,
	    .bytes = bytes,
	};

	if (s->ev != NULL)
		s->ev(s->ev_arg, &e);
}

static void
txn_failed(struct lg_session *s, enum lg_stage stage, unsigned code)
{
	if (!s->in_txn)
		return;
	s->in_txn = false;
	s->eod_pending = false;
	emit(s, LG_EV_MSG_FAILED, stage, code, 0, s->msg.size);
}

static void
session_close(struct lg_session *s, enum lg_err err)
{
	struct lg_event e = {.type = LG_EV_CLOSED, .stage = LG_STAGE_NONE, .err = err};

	if (s->phase == PH_CLOSED)
		return;
	txn_failed(s, LG_STAGE_NONE, 0);
	e.connected = s->phase != PH_CONNECTING;
	s->phase = PH_CLOSED;
	e.now_us = s->now;
	if (s->ev != NULL)
		s->ev(s->ev_arg, &e);
}

/* ---------------------------------------------------------------------------------------------
 * Output */

/* Slides a half-consumed buffer to the front before it grows (pa_buf). */
static bool
out_reserve(struct lg_session *s, size_t n)
{
	return pa_buf_reserve(&s->out, n) == PA_OK;
}

static bool
out_wire(struct lg_session *s, const void *p, size_t n)
{
	if (pa_buf_append(&s->out, p, n) != PA_OK)
		return false;
	s->out_queued += n;
	return true;
}

/* Idle sessions keep no buffer: 100,000 held connections must stay small. */
static void
out_trim(struct lg_session *s)
{
	if (pa_buf_pending(&s->out) == 0)
		pa_buf_free(&s->out);
}

/* Moves what OpenSSL wrote (records, handshake messages) to the wire buffer. */
static bool
tls_flush(struct lg_session *s)
{
	size_t pending;

	while ((pending = BIO_ctrl_pending(s->wbio)) > 0) {
		int r;

		if (!out_reserve(s, pending))
			return false;
		r = BIO_read(s->wbio, s->out.data + s->out.len, (int)pending);
		if (r <= 0)
			return false;
		s->out.len += (size_t)r;
		s->out_queued += (size_t)r;
	}
	return true;
}

/* SMTP text: in clear, or through TLS once it is up. */
static bool
out_text(struct lg_session *s, const void *p, size_t n)
{
	if (!s->tls_up)
		return out_wire(s, p, n);
	if (n > 0 && SSL_write(s->ssl, p, (int)n) != (int)n) {
		ERR_clear_error();
		return false;
	}
	return tls_flush(s);
}

static bool __attribute__((format(printf, 2, 3)))
out_cmd(struct lg_session *s, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(buf))
		return false;
	s->progress_us = s->now;
	return out_text(s, buf, (size_t)n);
}

/*
 * Queues more of the message body, dot-stuffed, until LG_OUT_HIGH bytes are
 * pending; at the end CRLF.CRLF (a CRLF first if the message lacks one).
 * Lines are split at LF: the message is CRLF text, so a '.' after LF is a
 * '.' at the start of a line.
 */
static bool
body_fill(struct lg_session *s)
{
	uint8_t chunk[16384];
	const uint8_t *d = s->msg.data;
	size_t size = s->msg.size;

	while (s->phase == PH_BODY && pa_buf_pending(&s->out) < LG_OUT_HIGH) {
		size_t n = 0;

		while (s->body_off < size && n < sizeof(chunk) - 1) {
			size_t room = sizeof(chunk) - 1 - n, take;
			const uint8_t *nl;

			if (s->body_bol && d[s->body_off] == '.')
				chunk[n++] = '.';
			take = size - s->body_off;
			if (take > room)
				take = room;
			nl = memchr(d + s->body_off, '\n', take);
			if (nl != NULL)
				take = (size_t)(nl - (d + s->body_off)) + 1;
			memcpy(chunk + n, d + s->body_off, take);
			n += take;
			s->body_off += take;
			s->body_bol = nl != NULL;
		}
		if (!out_text(s, chunk, n))
			return false;
		if (s->body_off < size)
			continue;
		if (size < 2 || d[size - 2] != '\r' || d[size - 1] != '\n') {
			if (!out_text(s, "\r\n.\r\n", 5))
				return false;
		} else if (!out_text(s, ".\r\n", 3)) {
			return false;
		}
		s->phase = PH_EOD;
		s->eod_pending = true;
		s->eod_mark = s->out_queued;
		s->progress_us = s->now;
	}
	return true;
}

/* ---------------------------------------------------------------------------------------------
 * The dialogue */

static void
send_quit(struct lg_session *s, enum lg_err err)
{
	s->close_err = err;
	s->phase = PH_QUIT;
	if (!out_cmd(s, "QUIT\r\n"))
		session_close(s, LG_ERR_PROTOCOL);
}

static bool
send_rcpt(struct lg_session *s, unsigned i)
{
	s->cmds_sent++;
	return out_cmd(s, "RCPT TO:<%s>\r\n", s->msg.rcpts[i]);
}

static void
start_txn(struct lg_session *s)
{
	bool ok;

	s->in_txn = true;
	s->phase = PH_TXN;
	s->pipelined = s->w.pipelining && s->ehlo_pipelining;
	s->cmds_sent = 1;
	s->replies = 0;
	s->rcpt_ok = 0;
	s->mail_code = 0;
	s->rcpt_fail_code = 0;
	s->body_off = 0;
	s->body_bol = true;
	s->eod_pending = false;
	s->eod_sent_us = 0;
	emit(s, LG_EV_MSG_START, LG_STAGE_NONE, 0, 0, s->msg.size);
	ok = out_cmd(s, "MAIL FROM:<%s>\r\n", s->msg.mail_from);
	if (ok && s->pipelined) {
		/* RFC 2920: MAIL, RCPT... and DATA in one group, DATA last. */
		for (unsigned i = 0; ok && i < s->msg.nrcpt; i++)
			ok = send_rcpt(s, i);
		s->cmds_sent++;
		ok = ok && out_cmd(s, "DATA\r\n");
	}
	if (!ok)
		session_close(s, LG_ERR_PROTOCOL);
}

/* No transaction in flight: the next one, QUIT, or wait for the source. */
static void
next_txn(struct lg_session *s)
{
	enum lg_next r;

	if (s->quit_wanted || (s->w.msgs_per_conn > 0 && s->msgs_done >= s->w.msgs_per_conn)) {
		send_quit(s, LG_ERR_NONE);
		return;
	}
	memset(&s->msg, 0, sizeof(s->msg));
	r = s->w.source(s->w.source_arg, &s->msg, s->now);
	if (r == LG_NEXT_DONE) {
		send_quit(s, LG_ERR_NONE);
	} else if (r == LG_NEXT_WAIT) {
		s->phase = PH_STARVED;
		out_trim(s);
	} else if (s->msg.nrcpt == 0 || s->msg.rcpts == NULL || s->msg.mail_from == NULL ||
	           (s->msg.data == NULL && s->msg.size > 0)) {
		/* A source bug, not the server's fault; still counted, never as OK. */
		session_close(s, LG_ERR_PROTOCOL);
	} else {
		start_txn(s);
	}
}

/* Greeting, EHLO and TLS are done. */
static void
session_ready(struct lg_session *s)
{
	emit(s, LG_EV_READY, LG_STAGE_NONE, 0, 0, 0);
	if (s->phase == PH_CLOSED)
		return;
	if (s->quit_wanted) {
		send_quit(s, LG_ERR_NONE);
	} else if (s->w.idle) {
		s->phase = PH_HOLD;
		out_trim(s);
	} else {
		next_txn(s);
	}
}

static void
send_ehlo(struct lg_session *s)
{
	s->phase = PH_EHLO;
	s->ehlo_pipelining = false;
	s->ehlo_starttls = false;
	if (!out_cmd(s, "EHLO %s\r\n", s->w.helo))
		session_close(s, LG_ERR_PROTOCOL);
}

/* Drives the handshake, then reads records into the reply parser. */
static void parse(struct lg_session *s, const uint8_t *in, size_t len);

static void
tls_pump(struct lg_session *s)
{
	uint8_t buf[16384];

	if (!s->tls_up) {
		int r = SSL_do_handshake(s->ssl);

		if (!tls_flush(s)) {
			session_close(s, LG_ERR_TLS);
			return;
		}
		if (r != 1) {
			int e = SSL_get_error(s->ssl, r);

			ERR_clear_error();
			if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
				session_close(s, LG_ERR_TLS);
			return;
		}
		s->tls_up = true;
		emit(s, LG_EV_TLS_DONE, LG_STAGE_NONE, 0, s->now - s->tls_start_us, 0);
		if (s->phase == PH_CLOSED)
			return;
		/* RFC 3207: forget what was learnt in clear; EHLO again. */
		send_ehlo(s);
	}
	while (s->phase != PH_CLOSED) {
		int r = SSL_read(s->ssl, buf, sizeof(buf));

		if (r > 0) {
			parse(s, buf, (size_t)r);
			continue;
		}
		r = SSL_get_error(s->ssl, r);
		ERR_clear_error();
		if (r == SSL_ERROR_ZERO_RETURN)
			lg_session_eof(s, s->now);
		else if (r != SSL_ERROR_WANT_READ && r != SSL_ERROR_WANT_WRITE)
			session_close(s, LG_ERR_TLS);
		break;
	}
	if (s->phase != PH_CLOSED && !tls_flush(s))
		session_close(s, LG_ERR_TLS);
}

static void
start_tls(struct lg_session *s)
{
	s->ssl = SSL_new(s->w.tls_ctx);
	s->rbio = BIO_new(BIO_s_mem());
	s->wbio = BIO_new(BIO_s_mem());
	if (s->ssl == NULL || s->rbio == NULL || s->wbio == NULL) {
		BIO_free(s->rbio);
		BIO_free(s->wbio);
		s->rbio = s->wbio = NULL;
		ERR_clear_error();
		session_close(s, LG_ERR_TLS);
		return;
	}
	SSL_set_bio(s->ssl, s->rbio, s->wbio); /* the SSL owns both from here */
	SSL_set_connect_state(s->ssl);
	s->phase = PH_HANDSHAKE;
	s->tls_start_us = s->now;
	tls_pump(s);
}

/* Which command the next reply answers; LG_STAGE_NONE when none was asked for. */
static enum lg_stage
expected_stage(const struct lg_session *s)
{
	switch (s->phase) {
	case PH_GREETING:
		return LG_STAGE_GREETING;
	case PH_EHLO:
		return LG_STAGE_EHLO;
	case PH_STARTTLS:
		return LG_STAGE_STARTTLS;
	case PH_TXN:
		if (s->replies >= s->cmds_sent)
			return LG_STAGE_NONE;
		if (s->replies == 0)
			return LG_STAGE_MAIL;
		return s->replies <= s->msg.nrcpt ? LG_STAGE_RCPT : LG_STAGE_DATA;
	case PH_EOD:
		return LG_STAGE_EOD;
	case PH_RSET:
		return LG_STAGE_RSET;
	case PH_QUIT:
		return LG_STAGE_QUIT;
	default:
		return LG_STAGE_NONE;
	}
}

/* The transaction failed before end of data: count it, reset, go on. */
static void
txn_refused(struct lg_session *s, enum lg_stage stage, unsigned code)
{
	txn_failed(s, stage, code);
	s->msgs_done++;
	if (s->quit_wanted || (s->w.msgs_per_conn > 0 && s->msgs_done >= s->w.msgs_per_conn)) {
		send_quit(s, LG_ERR_NONE);
		return;
	}
	s->phase = PH_RSET;
	if (!out_cmd(s, "RSET\r\n"))
		session_close(s, LG_ERR_PROTOCOL);
}

static void
txn_reply(struct lg_session *s, enum lg_stage stage, unsigned code)
{
	bool good = code / 100 == 2;

	s->replies++;
	switch (stage) {
	case LG_STAGE_MAIL:
		s->mail_code = code;
		if (!s->pipelined) {
			if (good) {
				if (!send_rcpt(s, 0))
					session_close(s, LG_ERR_PROTOCOL);
			} else {
				txn_refused(s, LG_STAGE_MAIL, code);
			}
		}
		return;
	case LG_STAGE_RCPT:
		if (good)
			s->rcpt_ok++;
		else
			s->rcpt_fail_code = code;
		if (s->pipelined)
			return;
		if (s->replies < 1 + s->msg.nrcpt) {
			if (!send_rcpt(s, s->replies - 1))
				session_close(s, LG_ERR_PROTOCOL);
		} else if (s->rcpt_ok > 0) {
			s->cmds_sent++;
			if (!out_cmd(s, "DATA\r\n"))
				session_close(s, LG_ERR_PROTOCOL);
		} else {
			txn_refused(s, LG_STAGE_RCPT, code);
		}
		return;
	case LG_STAGE_DATA:
		if (code == 354) {
			/* Even after a refused MAIL: a server that says 354 reads a body. */
			s->phase = PH_BODY;
			if (!body_fill(s))
				session_close(s, LG_ERR_PROTOCOL);
		} else if (s->mail_code / 100 != 2) {
			txn_refused(s, LG_STAGE_MAIL, s->mail_code);
		} else if (s->rcpt_ok == 0) {
			txn_refused(s, LG_STAGE_RCPT, s->rcpt_fail_code);
		} else {
			txn_refused(s, LG_STAGE_DATA, code);
		}
		return;
	default:
		return;
	}
}

/* One complete reply (the last line's code; multi-line replies arrive once). */
static void
on_reply(struct lg_session *s, enum lg_stage stage, unsigned code)
{
	bool good = code / 100 == 2;

	s->progress_us = s->now;
	emit(s, LG_EV_REPLY, stage, code, 0, 0);
	if (s->phase == PH_CLOSED)
		return;
	if (code == 421 && stage != LG_STAGE_QUIT) {
		/* The server is going away (RFC 5321 3.8): no QUIT, just close.  A 421 to
		 * end of data is still that message's answer: counted with the others. */
		if (stage == LG_STAGE_EOD && s->in_txn) {
			s->in_txn = false;
			s->eod_pending = false;
			emit(s, LG_EV_MSG_DONE, LG_STAGE_EOD, code,
			     s->eod_sent_us ? s->now - s->eod_sent_us : 0, s->msg.size);
		} else {
			txn_failed(s, stage, code);
		}
		session_close(s, LG_ERR_REJECTED);
		return;
	}
	switch (stage) {
	case LG_STAGE_GREETING:
		if (code != 220)
			send_quit(s, LG_ERR_REJECTED);
		else if (s->quit_wanted)
			send_quit(s, LG_ERR_NONE);
		else
			send_ehlo(s);
		return;
	case LG_STAGE_EHLO:
		if (!good) {
			send_quit(s, LG_ERR_REJECTED);
		} else if (s->w.starttls && !s->tls_up) {
			if (!s->ehlo_starttls) {
				send_quit(s, LG_ERR_TLS);
			} else {
				s->phase = PH_STARTTLS;
				if (!out_cmd(s, "STARTTLS\r\n"))
					session_close(s, LG_ERR_PROTOCOL);
			}
		} else {
			session_ready(s);
		}
		return;
	case LG_STAGE_STARTTLS:
		if (code != 220)
			send_quit(s, LG_ERR_TLS);
		else
			start_tls(s);
		return;
	case LG_STAGE_MAIL:
	case LG_STAGE_RCPT:
	case LG_STAGE_DATA:
		txn_reply(s, stage, code);
		return;
	case LG_STAGE_EOD:
		s->in_txn = false;
		s->eod_pending = false;
		s->msgs_done++;
		emit(s, LG_EV_MSG_DONE, LG_STAGE_EOD, code,
		     s->eod_sent_us ? s->now - s->eod_sent_us : 0, s->msg.size);
		if (s->phase != PH_CLOSED)
			next_txn(s);
		return;
	case LG_STAGE_RSET:
		next_txn(s);
		return;
	case LG_STAGE_QUIT:
		session_close(s, s->close_err);
		return;
	default:
		return;
	}
}

/* The EHLO keywords this client cares about. */
static void
ehlo_keyword(struct lg_session *s, const char *text, size_t len)
{
	size_t n = 0;

	while (n < len && !isspace((unsigned char)text[n]))
		n++;
	if (n == 10 && strncasecmp(text, "PIPELINING", 10) == 0)
		s->ehlo_pipelining = true;
	else if (n == 8 && strncasecmp(text, "STARTTLS", 8) == 0)
		s->ehlo_starttls = true;
}

/* One reply line without its line ending. */
static void
on_line(struct lg_session *s, const char *l, size_t len)
{
	enum lg_stage stage = expected_stage(s);
	unsigned code;
	bool more;

	if (len < 3 || !isdigit((unsigned char)l[0]) || !isdigit((unsigned char)l[1]) ||
	    !isdigit((unsigned char)l[2]) || l[0] < '2' || l[0] > '5' ||
	    (len > 3 && l[3] != ' ' && l[3] != '-')) {
		session_close(s, LG_ERR_PROTOCOL);
		return;
	}
	code = (unsigned)(l[0] - '0') * 100 + (unsigned)(l[1] - '0') * 10 + (unsigned)(l[2] - '0');
	more = len > 3 && l[3] == '-';
	if (s->ml_code != 0 && s->ml_code != code) {
		/* RFC 5321 4.2.1: every line of a reply has the same code. */
		session_close(s, LG_ERR_PROTOCOL);
		return;
	}
	if (stage == LG_STAGE_NONE && code != 421) {
		/* A reply nobody asked for; a 421 may come at any time (idle timeout). */
		session_close(s, LG_ERR_PROTOCOL);
		return;
	}
	/* The first line of the EHLO reply names the server; keywords follow it. */
	if (stage == LG_STAGE_EHLO && s->ml_code != 0 && len > 4)
		ehlo_keyword(s, l + 4, len - 4);
	if (more) {
		s->ml_code = code;
		return;
	}
	s->ml_code = 0;
	on_reply(s, stage, code);
}

/* Splits plaintext into lines; keeps a partial line for the next call. */
static void
parse(struct lg_session *s, const uint8_t *in, size_t len)
{
	while (len > 0 && s->phase != PH_CLOSED) {
		const uint8_t *nl = memchr(in, '\n', len);
		size_t take = nl != NULL ? (size_t)(nl - in) + 1 : len;
		const char *l;
		size_t ll;

		if (s->ssl != NULL && !s->tls_up) {
			/* Clear text after STARTTLS's 220, before the handshake: an injection. */
			session_close(s, LG_ERR_PROTOCOL);
			return;
		}
		if (s->line.len + take > LG_LINE_MAX) {
			session_close(s, LG_ERR_PROTOCOL);
			return;
		}
		if ((nl == NULL || s->line.len > 0) && pa_buf_append(&s->line, in, take) != PA_OK) {
			session_close(s, LG_ERR_PROTOCOL);
			return;
		}
		in += take;
		len -= take;
		if (nl == NULL)
			return;
		if (s->line.len > 0) {
			l = (const char *)s->line.data;
			ll = s->line.len;
		} else {
			l = (const char *)(in - take);
			ll = take;
		}
		ll--; /* the LF */
		if (ll > 0 && l[ll - 1] == '\r')
			ll--;
		on_line(s, l, ll);
		pa_buf_free(&s->line);
		if (s->ssl != NULL && !s->tls_up && len > 0 && s->phase == PH_HANDSHAKE) {
			session_close(s, LG_ERR_PROTOCOL);
			return;
		}
	}
}

/* ---------------------------------------------------------------------------------------------
 * The API */

struct lg_session *
lg_session_new(const struct lg_workload *w, lg_event_fn ev, void *ev_arg, uint64_t now_us)
{
	struct lg_session *s;

	if (w == NULL || w->helo == NULL || (w->starttls && w->tls_ctx == NULL) ||
	    (!w->idle && w->source == NULL))
		return NULL;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->w = *w;
	s->ev = ev;
	s->ev_arg = ev_arg;
	s->phase = PH_CONNECTING;
	s->now = now_us;
	s->created_us = now_us;
	s->progress_us = now_us;
	/* A command's worth first; bodies grow it to LG_OUT_HIGH and one chunk more. */
	pa_buf_init(&s->out, 256, LG_OUT_MAX);
	pa_buf_init(&s->line, 256, LG_LINE_MAX);
	return s;
}

void
lg_session_free(struct lg_session *s)
{
	if (s == NULL)
		return;
	SSL_free(s->ssl); /* frees the BIOs too */
	pa_buf_free(&s->line);
	pa_buf_free(&s->out);
	free(s);
}

void
lg_session_connected(struct lg_session *s, uint64_t now_us)
{
	if (s->phase != PH_CONNECTING)
		return;
	s->now = now_us;
	s->progress_us = now_us;
	s->phase = PH_GREETING;
	emit(s, LG_EV_CONNECTED, LG_STAGE_NONE, 0, now_us - s->created_us, 0);
}

int
lg_session_input(struct lg_session *s, const uint8_t *in, size_t len, uint64_t now_us)
{
	if (s->phase == PH_CLOSED)
		return -1;
	s->now = now_us;
	if (len > 0)
		s->progress_us = now_us;
	if (s->phase == PH_CONNECTING) {
		session_close(s, LG_ERR_PROTOCOL);
		return -1;
	}
	if (s->ssl != NULL && (s->tls_up || s->phase == PH_HANDSHAKE)) {
		if (len > 0 && BIO_write(s->rbio, in, (int)len) != (int)len) {
			session_close(s, LG_ERR_TLS);
			return -1;
		}
		tls_pump(s);
	} else {
		parse(s, in, len);
	}
	return s->phase == PH_CLOSED ? -1 : 0;
}

size_t
lg_session_output(struct lg_session *s, const uint8_t **out)
{
	if (s->phase == PH_BODY && !body_fill(s))
		session_close(s, LG_ERR_PROTOCOL);
	*out = pa_buf_head(&s->out);
	return pa_buf_pending(&s->out);
}

void
lg_session_consume(struct lg_session *s, size_t n, uint64_t now_us)
{
	if (n > pa_buf_pending(&s->out))
		n = pa_buf_pending(&s->out);
	pa_buf_consume(&s->out, n);
	s->out_consumed += n;
	s->now = now_us;
	if (n > 0)
		s->progress_us = now_us;
	if (pa_buf_pending(&s->out) == 0 &&
	    (s->phase == PH_HOLD || s->phase == PH_STARVED || s->phase == PH_CLOSED))
		out_trim(s);
	if (s->eod_pending && s->eod_sent_us == 0 && s->out_consumed >= s->eod_mark) {
		s->eod_sent_us = now_us;
		emit(s, LG_EV_EOD_SENT, LG_STAGE_NONE, 0, 0, s->msg.size);
	}
}

void
lg_session_eof(struct lg_session *s, uint64_t now_us)
{
	if (s->phase == PH_CLOSED)
		return;
	s->now = now_us;
	/* After our QUIT, a close before the 221 is still a clean end. */
	session_close(s, s->phase == PH_QUIT ? s->close_err : LG_ERR_RESET);
}

void
lg_session_abort(struct lg_session *s, enum lg_err err, uint64_t now_us)
{
	if (s->phase == PH_CLOSED)
		return;
	s->now = now_us;
	session_close(s, err);
}

void
lg_session_kick(struct lg_session *s, uint64_t now_us)
{
	if (s->phase != PH_STARVED)
		return;
	s->now = now_us;
	next_txn(s);
}

void
lg_session_quit(struct lg_session *s, uint64_t now_us)
{
	s->quit_wanted = true;
	if (s->phase == PH_STARVED || s->phase == PH_HOLD) {
		s->now = now_us;
		s->progress_us = now_us;
		send_quit(s, LG_ERR_NONE);
	}
}

void
lg_session_tick(struct lg_session *s, uint64_t now_us)
{
	if (s->phase == PH_CLOSED || s->phase == PH_HOLD || s->phase == PH_STARVED ||
	    s->w.reply_timeout_us == 0)
		return;
	if (now_us - s->progress_us >= s->w.reply_timeout_us) {
		s->now = now_us;
		session_close(s, LG_ERR_TIMEOUT);
	}
}

bool
lg_session_closed(const struct lg_session *s)
{
	return s->phase == PH_CLOSED;
}

bool
lg_session_starved(const struct lg_session *s)
{
	return s->phase == PH_STARVED;
}

bool
lg_session_idle(const struct lg_session *s)
{
	return s->phase == PH_HOLD || s->phase == PH_STARVED;
}

const char *
lg_err_name(enum lg_err err)
{
	static const char *const names[LG_ERR_COUNT] = {
	    [LG_ERR_NONE] = "none",       [LG_ERR_REFUSED] = "connect_refused",
	    [LG_ERR_CONNECT] = "connect", [LG_ERR_TIMEOUT] = "timeout",
	    [LG_ERR_RESET] = "reset",     [LG_ERR_PROTOCOL] = "protocol",
	    [LG_ERR_TLS] = "tls",         [LG_ERR_REJECTED] = "rejected",
	};

	return (unsigned)err < LG_ERR_COUNT ? names[err] : "unknown";
}

const char *
lg_stage_name(enum lg_stage stage)
{
	static const char *const names[LG_STAGE_COUNT] = {
	    [LG_STAGE_GREETING] = "greeting", [LG_STAGE_EHLO] = "ehlo",
	    [LG_STAGE_STARTTLS] = "starttls", [LG_STAGE_MAIL] = "mail",
	    [LG_STAGE_RCPT] = "rcpt",         [LG_STAGE_DATA] = "data",
	    [LG_STAGE_EOD] = "eod",           [LG_STAGE_RSET] = "rset",
	    [LG_STAGE_QUIT] = "quit",         [LG_STAGE_NONE] = "none",
	};

	return (unsigned)stage < LG_STAGE_COUNT ? names[stage] : "unknown";
}
