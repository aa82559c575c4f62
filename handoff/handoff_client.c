/*
 * handoff_client.c: the SMTP/LMTP client state machine (handoff_client.h).
 *
 * Replies are matched to commands by position, which is what PIPELINING
 * guarantees (RFC 2920 3.1): the envelope is MAIL, one RCPT per recipient,
 * then DATA, sent together when the peer pipelines and one at a time when it
 * does not.  The body waits for 354.  With PIPELINING the next transaction's
 * envelope may follow a body at once, in the same write: "the actual
 * transfer of message content is explicitly allowed to be the first
 * 'command' in a group" (RFC 2920 3.1), and DATA stays the group's last
 * command.  Its replies come after the body's final reply (or, with LMTP,
 * after the final reply of every recipient accepted at RCPT, RFC 2033 4.2),
 * whatever that reply was: a refused message ends its transaction, not the
 * session.  What it promises: at most two transactions in flight, the
 * second only with PIPELINING and only once the first one's body is sent;
 * every recipient ends with one result; the message bytes go out
 * dot-stuffed (RFC 5321 4.5.2) and otherwise unchanged, after the id header.
 */
#include "handoff/handoff_client.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/pa.h"

/*
 * What the buffers may hold.  Input: past HC_LINE_MAX without a newline the
 * connection ends, so more than one read's worth plus a line is never kept;
 * this only bounds a caller that passes absurd chunks.  Output: a whole
 * message of smtp.max_message_size (2 GiB at most) with its dots stuffed
 * (at worst 4/3 of it) and the envelope.
 */
#define HC_IN_MAX (16u << 20)
#define HC_OUT_MAX ((size_t)4 << 30)

enum hc_state {
	ST_GREET,     /* waiting for 220 */
	ST_EHLO,      /* EHLO or LHLO sent */
	ST_HELO,      /* HELO sent after EHLO was refused */
	ST_IDLE,      /* ready for a transaction */
	ST_ENVELOPE,  /* MAIL, RCPT..., DATA: replies come back in order */
	ST_BODY_HELD, /* 354 received, the body waits for hc_release_body() */
	ST_BODY,      /* body sent, waiting for the final reply (one per recipient with LMTP) */
	ST_NEXT,      /* done, its results readable; the pipelined next one's replies come next */
	ST_RSET,      /* RSET sent after a transaction that did not finish */
	ST_QUIT,
	ST_CLOSED,
	ST_FAILED,
};

struct hc {
	enum hc_proto proto;
	enum hc_state state;
	char helo[256];
	bool pipelining, dsn, eightbit, smtputf8, size;
	bool hold_body; /* the next 354 does not send the body yet (hc_hold_body()) */

	/* Received bytes not yet parsed into lines. */
	struct pa_buf in;
	/* The reply being assembled from its lines. */
	bool in_reply;
	unsigned reply_code;
	char reply_text[HC_TEXT_MAX + 1];
	char last[HC_TEXT_MAX + 1];

	struct pa_buf out;

	/* The current transaction. */
	struct hc_txn txn;
	struct hc_result *results;
	size_t results_cap;
	size_t replies;      /* envelope replies received: 0 MAIL, 1..n RCPT, n+1 DATA */
	size_t sent;         /* envelope commands sent */
	size_t accepted;     /* recipients that got 2xx at RCPT */
	size_t body_replies; /* final replies still expected after the body */
	size_t next_final;   /* LMTP: the accepted recipient the next reply belongs to */
	bool mail_ok;
	unsigned mail_code; /* MAIL's reply, the result of everyone when MAIL was refused */
	char mail_text[HC_TEXT_MAX + 1];
	size_t reported; /* results handed out so far, to tell HC_RESULTS apart */
	size_t nfinal;

	/* The next transaction, its envelope sent right after the current one's body. */
	bool has_next;
	struct hc_txn next;
	struct hc_result *next_results;
	size_t next_cap;
};

static bool
out_reserve(struct hc *c, size_t more)
{
	return pa_buf_reserve(&c->out, more) == PA_OK;
}

static bool
out_add(struct hc *c, const void *data, size_t len)
{
	return pa_buf_append(&c->out, data, len) == PA_OK;
}

static bool __attribute__((format(printf, 2, 3))) out_printf(struct hc *c, const char *fmt, ...)
{
	char line[HC_LINE_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line))
		return false;
	return out_add(c, line, (size_t)n);
}

/* RFC 3461 4: xtext, for ENVID and ORCPT. */
static void
xtext(const char *s, char *out, size_t outlen)
{
	size_t o = 0;

	for (; *s && o + 4 < outlen; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch >= '!' && ch <= '~' && ch != '+' && ch != '=')
			out[o++] = (char)ch;
		else
			o += (size_t)snprintf(out + o, outlen - o, "+%02X", ch);
	}
	out[o] = '\0';
}

static bool
ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return false;
	return true;
}

struct hc *
hc_new(enum hc_proto proto, const char *helo)
{
	struct hc *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->proto = proto;
	c->state = ST_GREET;
	pa_buf_init(&c->in, 4096, HC_IN_MAX);
	pa_buf_init(&c->out, 4096, HC_OUT_MAX);
	snprintf(c->helo, sizeof(c->helo), "%s", helo != NULL && helo[0] ? helo : "localhost");
	return c;
}

void
hc_free(struct hc *c)
{
	if (c == NULL)
		return;
	pa_buf_free(&c->in);
	pa_buf_free(&c->out);
	free(c->results);
	free(c->next_results);
	free(c);
}

static void
set_result(struct hc *c, size_t i, unsigned code, const char *text)
{
	struct hc_result *r = &c->results[i];

	if (r->final)
		return;
	r->final = true;
	r->code = code;
	snprintf(r->text, sizeof(r->text), "%s", text);
	c->nfinal++;
}

static void
fail_rest(struct hc *c, unsigned code, const char *text)
{
	if (c->state != ST_ENVELOPE && c->state != ST_BODY_HELD && c->state != ST_BODY)
		return;
	for (size_t i = 0; i < c->txn.nrcpt; i++)
		set_result(c, i, code, text);
}

/* The results of a transaction of n recipients, all without a result yet. */
static bool
results_reset(struct hc_result **results, size_t *cap, size_t n)
{
	if (n > *cap) {
		struct hc_result *r = realloc(*results, n * sizeof(*r));

		if (r == NULL)
			return false;
		*results = r;
		*cap = n;
	}
	memset(*results, 0, n * sizeof(**results));
	return true;
}

static void
txn_begin(struct hc *c, const struct hc_txn *txn, size_t sent)
{
	c->txn = *txn;
	c->replies = c->accepted = c->body_replies = c->next_final = 0;
	c->reported = c->nfinal = 0;
	c->sent = sent;
	c->mail_ok = false;
	c->state = ST_ENVELOPE;
}

/*
 * The pipelined next transaction becomes the current one, its envelope
 * already sent: the previous one's results are gone from here on.
 */
static void
promote_next(struct hc *c)
{
	struct hc_result *r = c->results;
	size_t cap = c->results_cap;

	c->results = c->next_results;
	c->results_cap = c->next_cap;
	c->next_results = r;
	c->next_cap = cap;
	c->has_next = false;
	txn_begin(c, &c->next, c->next.nrcpt + 2);
}

void
hc_abort(struct hc *c, const char *text)
{
	if (c->state == ST_NEXT)
		promote_next(c);
	fail_rest(c, 0, text);
	c->state = ST_FAILED;
}

/* Envelope command i of txn: MAIL (0), RCPT i (1..n), or DATA (n+1). */
static bool
send_envelope_cmd(struct hc *c, const struct hc_txn *txn, size_t i)
{
	char x[3 * 512 + 1];

	if (i == 0) {
		bool ok = out_printf(c, "MAIL FROM:<%s>", txn->mail_from);

		if (ok && c->size)
			ok = out_printf(c, " SIZE=%zu", txn->size);
		if (ok && txn->body_8bit && c->eightbit)
			ok = out_printf(c, " BODY=8BITMIME");
		if (ok && txn->smtputf8 && c->smtputf8)
			ok = out_printf(c, " SMTPUTF8");
		if (ok && c->dsn && txn->envid != NULL) {
			xtext(txn->envid, x, 101);
			ok = out_printf(c, " ENVID=%s", x);
		}
		return ok && out_add(c, "\r\n", 2);
	}
	if (i <= txn->nrcpt) {
		const char *r = txn->rcpts[i - 1];
		bool ok = out_printf(c, "RCPT TO:<%s>", r);

		if (ok && c->dsn && ascii(r)) {
			xtext(r, x, sizeof(x));
			ok = out_printf(c, " ORCPT=rfc822;%s", x);
		}
		return ok && out_add(c, "\r\n", 2);
	}
	return out_add(c, "DATA\r\n", 6);
}

/* The current transaction's next envelope command. */
static bool
send_next_cmd(struct hc *c)
{
	return send_envelope_cmd(c, &c->txn, c->sent++);
}

static bool
txn_valid(const struct hc_txn *txn)
{
	if (txn->nrcpt == 0 || txn->nrcpt > HC_RCPT_MAX || strlen(txn->mail_from) > 512)
		return false;
	for (size_t i = 0; i < txn->nrcpt; i++)
		if (strlen(txn->rcpts[i]) > 512)
			return false;
	return true;
}

int
hc_start(struct hc *c, const struct hc_txn *txn)
{
	if (!txn_valid(txn))
		return PA_ERROR;
	if (c->state == ST_BODY && c->pipelining && !c->has_next) {
		/* RFC 2920 3.1: after the body, in the same group, DATA last. */
		if (!results_reset(&c->next_results, &c->next_cap, txn->nrcpt))
			return PA_ERROR;
		for (size_t i = 0; i < txn->nrcpt + 2; i++)
			if (!send_envelope_cmd(c, txn, i))
				return PA_ERROR;
		c->next = *txn;
		c->has_next = true;
		return PA_OK;
	}
	if (c->state != ST_IDLE || !results_reset(&c->results, &c->results_cap, txn->nrcpt))
		return PA_ERROR;
	txn_begin(c, txn, 0);
	do {
		if (!send_next_cmd(c))
			return PA_ERROR;
	} while (c->pipelining && c->sent < txn->nrcpt + 2);
	return PA_OK;
}

/* The message after the id header, dot-stuffed, ending in CRLF "." CRLF. */
static bool
send_body(struct hc *c)
{
	const uint8_t *p = c->txn.data, *end = p + c->txn.size;
	bool bol = true;

	if (!out_reserve(c, c->txn.size + c->txn.size / 64 + 512))
		return false;
	if (c->txn.id_header != NULL && !out_printf(c, "%s\r\n", c->txn.id_header))
		return false;
	while (p < end) {
		const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl != NULL ? (size_t)(nl - p) + 1 : (size_t)(end - p);

		if (bol && *p == '.' && !out_add(c, ".", 1))
			return false;
		if (!out_add(c, p, n))
			return false;
		bol = nl != NULL;
		p += n;
	}
	if (c->txn.size > 0 && !bol && !out_add(c, "\r\n", 2))
		return false;
	return out_add(c, ".\r\n", 3);
}

/* One complete reply of the envelope phase. */
static enum hc_status
envelope_reply(struct hc *c, unsigned code, const char *text)
{
	size_t i = c->replies++, n = c->txn.nrcpt;

	if (i == 0) {
		c->mail_ok = code / 100 == 2;
		c->mail_code = code >= 400 && code < 600 ? code : 451;
		snprintf(c->mail_text, sizeof(c->mail_text), "%s", text);
	} else if (i <= n) {
		if (!c->mail_ok)
			set_result(c, i - 1, c->mail_code, c->mail_text);
		else if (code / 100 == 2)
			c->accepted++;
		else
			set_result(c, i - 1, code, text);
	} else {
		if (code == 354 && c->accepted > 0) {
			c->body_replies = c->proto == HC_LMTP ? c->accepted : 1;
			if (c->hold_body) {
				/* The peer has nothing it could accept until the body's end. */
				c->state = ST_BODY_HELD;
				return HC_NEED_MORE;
			}
			c->state = ST_BODY;
			return send_body(c) ? HC_NEED_MORE : HC_FAILED;
		}
		if (code == 354) {
			/* No recipient was accepted, yet the peer wants data: an empty message. */
			c->body_replies = 1;
			c->state = ST_BODY;
			return out_add(c, ".\r\n", 3) ? HC_NEED_MORE : HC_FAILED;
		}
		/* DATA refused: its reply is the result of everyone accepted at RCPT. */
		for (size_t r = 0; r < n; r++)
			set_result(c, r, code, text);
		if (c->mail_ok) {
			c->state = ST_RSET;
			return out_add(c, "RSET\r\n", 6) ? HC_TXN_DONE : HC_FAILED;
		}
		c->state = ST_IDLE;
		return HC_TXN_DONE;
	}
	/* MAIL refused without pipelining: nothing more to send, the results are in. */
	if (!c->mail_ok && !c->pipelining) {
		for (size_t r = 0; r < n; r++)
			set_result(c, r, c->mail_code, c->mail_text);
		c->state = ST_IDLE;
		return HC_TXN_DONE;
	}
	if (!c->pipelining) {
		/* Every recipient refused: no DATA, the transaction is over. */
		if (i == n && c->accepted == 0) {
			c->state = ST_RSET;
			return out_add(c, "RSET\r\n", 6) ? HC_TXN_DONE : HC_FAILED;
		}
		return send_next_cmd(c) ? HC_NEED_MORE : HC_FAILED;
	}
	return HC_NEED_MORE;
}

/* One final reply after the body: for all accepted (SMTP) or the next accepted (LMTP). */
static enum hc_status
body_reply(struct hc *c, unsigned code, const char *text)
{
	size_t n = c->txn.nrcpt;

	if (c->accepted == 0) {
		c->body_replies = 0;
	} else if (c->proto == HC_SMTP) {
		for (size_t r = 0; r < n; r++)
			set_result(c, r, code, text);
		c->body_replies = 0;
	} else {
		while (c->next_final < n && c->results[c->next_final].final)
			c->next_final++;
		if (c->next_final < n)
			set_result(c, c->next_final, code, text);
		c->body_replies--;
	}
	if (c->body_replies > 0)
		return HC_RESULTS;
	/* The next transaction's replies follow; its turn comes at the next hc_input(). */
	c->state = c->has_next ? ST_NEXT : ST_IDLE;
	return HC_TXN_DONE;
}

static enum hc_status
reply(struct hc *c, unsigned code, const char *text)
{
	snprintf(c->last, sizeof(c->last), "%s", text);
	if (code == 421 && c->state != ST_QUIT) {
		fail_rest(c, 421, text);
		c->state = ST_FAILED;
		return HC_FAILED;
	}
	switch (c->state) {
	case ST_GREET:
		if (code != 220)
			break;
		c->state = ST_EHLO;
		return out_printf(c, "%s %s\r\n", c->proto == HC_LMTP ? "LHLO" : "EHLO", c->helo)
		           ? HC_NEED_MORE
		           : HC_FAILED;
	case ST_EHLO:
		if (code / 100 == 2) {
			c->state = ST_IDLE;
			return HC_READY;
		}
		if (c->proto == HC_LMTP || code / 100 != 5)
			break;
		c->pipelining = c->dsn = c->eightbit = c->smtputf8 = c->size = false;
		c->state = ST_HELO;
		return out_printf(c, "HELO %s\r\n", c->helo) ? HC_NEED_MORE : HC_FAILED;
	case ST_HELO:
		if (code / 100 != 2)
			break;
		c->state = ST_IDLE;
		return HC_READY;
	case ST_ENVELOPE:
		return envelope_reply(c, code, text);
	case ST_BODY:
		return body_reply(c, code, text);
	case ST_RSET:
		if (code / 100 != 2)
			break;
		c->state = ST_IDLE;
		return HC_READY;
	case ST_QUIT:
		c->state = ST_CLOSED;
		return HC_CLOSED;
	case ST_BODY_HELD: /* the peer waits for the body: nothing is due from it */
	case ST_NEXT:      /* hc_input() moves on to the next transaction before any reply */
	case ST_IDLE:
	case ST_CLOSED:
	case ST_FAILED:
		break;
	}
	/* Unexpected: a reply nobody asked for, or a refused greeting/EHLO/RSET. */
	fail_rest(c, code >= 400 && code < 600 ? code : 451, text);
	c->state = ST_FAILED;
	return HC_FAILED;
}

static void
ehlo_keyword(struct hc *c, const char *kw, size_t len)
{
	char word[32];
	size_t n = 0;

	while (n < len && kw[n] != ' ' && n + 1 < sizeof(word)) {
		word[n] = (char)(kw[n] >= 'a' && kw[n] <= 'z' ? kw[n] - 32 : kw[n]);
		n++;
	}
	word[n] = '\0';
	if (strcmp(word, "PIPELINING") == 0)
		c->pipelining = true;
	else if (strcmp(word, "DSN") == 0)
		c->dsn = true;
	else if (strcmp(word, "8BITMIME") == 0)
		c->eightbit = true;
	else if (strcmp(word, "SMTPUTF8") == 0)
		c->smtputf8 = true;
	else if (strcmp(word, "SIZE") == 0)
		c->size = true;
}

/* One line without its line end; HC_NEED_MORE unless it completed a reply that matters. */
static enum hc_status
line(struct hc *c, const char *l, size_t len)
{
	unsigned code;
	bool last;

	if (len < 3 || l[0] < '2' || l[0] > '5' || l[1] < '0' || l[1] > '9' || l[2] < '0' ||
	    l[2] > '9' || (len > 3 && l[3] != ' ' && l[3] != '-')) {
		snprintf(c->last, sizeof(c->last), "unparsable reply: %.*s",
		         (int)(len > 200 ? 200 : len), l);
		fail_rest(c, 0, c->last);
		c->state = ST_FAILED;
		return HC_FAILED;
	}
	code = (unsigned)((l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0'));
	last = len == 3 || l[3] == ' ';
	if (!c->in_reply) {
		c->in_reply = true;
		c->reply_code = code;
		snprintf(c->reply_text, sizeof(c->reply_text), "%.*s", (int)len, l);
		if (c->state == ST_EHLO)
			c->pipelining = c->dsn = c->eightbit = c->smtputf8 = c->size = false;
	} else if (code != c->reply_code) {
		fail_rest(c, 0, "reply code changed inside a multi-line reply");
		c->state = ST_FAILED;
		return HC_FAILED;
	} else if (c->state == ST_EHLO && len > 4) {
		ehlo_keyword(c, l + 4, len - 4);
	}
	if (!last)
		return HC_NEED_MORE;
	c->in_reply = false;
	return reply(c, c->reply_code, c->reply_text);
}

enum hc_status
hc_input(struct hc *c, const uint8_t *in, size_t len)
{
	enum hc_status st = HC_NEED_MORE;

	if (c->state == ST_FAILED)
		return HC_FAILED;
	if (c->state == ST_NEXT)
		promote_next(c);
	if (pa_buf_append(&c->in, in, len) != PA_OK) {
		hc_abort(c, "out of memory");
		return HC_FAILED;
	}
	while (st == HC_NEED_MORE && pa_buf_pending(&c->in) > 0) {
		const uint8_t *p = pa_buf_head(&c->in);
		size_t avail = pa_buf_pending(&c->in);
		const uint8_t *nl = memchr(p, '\n', avail);
		size_t l;

		if (nl == NULL) {
			if (avail > HC_LINE_MAX) {
				hc_abort(c, "reply line too long");
				return HC_FAILED;
			}
			break;
		}
		l = (size_t)(nl - p);
		if (l > HC_LINE_MAX) {
			hc_abort(c, "reply line too long");
			return HC_FAILED;
		}
		st = line(c, (const char *)p, l > 0 && p[l - 1] == '\r' ? l - 1 : l);
		pa_buf_consume(&c->in, l + 1);
	}
	if (st == HC_NEED_MORE && hc_busy(c) && c->nfinal > c->reported)
		st = HC_RESULTS;
	if (st == HC_RESULTS || st == HC_TXN_DONE)
		c->reported = c->nfinal;
	return st;
}

const struct hc_result *
hc_result(const struct hc *c, size_t i)
{
	return i < c->txn.nrcpt ? &c->results[i] : NULL;
}

int
hc_quit(struct hc *c)
{
	if (c->state != ST_IDLE && c->state != ST_GREET && c->state != ST_EHLO)
		return PA_ERROR;
	c->state = ST_QUIT;
	return out_add(c, "QUIT\r\n", 6) ? PA_OK : PA_ERROR;
}

const uint8_t *
hc_output(const struct hc *c, size_t *len)
{
	*len = pa_buf_pending(&c->out);
	return pa_buf_head(&c->out);
}

void
hc_output_consumed(struct hc *c, size_t n)
{
	pa_buf_consume(&c->out, n);
}

bool
hc_ready(const struct hc *c)
{
	return c->state == ST_IDLE;
}

bool
hc_busy(const struct hc *c)
{
	return c->state == ST_ENVELOPE || c->state == ST_BODY_HELD || c->state == ST_BODY ||
	       c->state == ST_NEXT;
}

bool
hc_can_pipeline(const struct hc *c)
{
	return c->state == ST_BODY && c->pipelining && !c->has_next;
}

bool
hc_pipelined(const struct hc *c)
{
	return c->has_next;
}

void
hc_hold_body(struct hc *c, bool hold)
{
	c->hold_body = hold;
}

int
hc_release_body(struct hc *c)
{
	c->hold_body = false;
	if (c->state != ST_BODY_HELD)
		return PA_OK;
	c->state = ST_BODY;
	return send_body(c) ? PA_OK : PA_ERROR;
}

bool
hc_body_held(const struct hc *c)
{
	return c->state == ST_BODY_HELD;
}

bool
hc_has_pipelining(const struct hc *c)
{
	return c->pipelining;
}

bool
hc_has_dsn(const struct hc *c)
{
	return c->dsn;
}

const char *
hc_last_reply(const struct hc *c)
{
	return c->last;
}
