/*
 * smtp_txn.c: one mail transaction, from MAIL to its final reply.
 *
 * The envelope, the body buffer and the Received: header are allocated only
 * while a transaction is open and freed as soon as it ends (RSET, EHLO, the
 * final reply), which keeps an idle session down to its small struct.  The
 * queue id is taken at MAIL so the Received: header can name it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/pa.h"
#include "smtp/smtp_session_private.h"

/* Every part of the header is cut to a bound, keeping its lines under 998 octets. */
#define RECEIVED_MAX 1536
#define RCPT_INITIAL_CAP 4

struct smtp_txn *
smtp_txn_new(struct smtp_session *s, const char *mail_from)
{
	struct smtp_txn *txn = calloc(1, sizeof(*txn));

	if (txn == NULL)
		return NULL;
	txn->mail_from = strdup(mail_from);
	if (txn->mail_from == NULL) {
		free(txn);
		return NULL;
	}
	if (s->config->new_queue_id != NULL)
		s->config->new_queue_id(s->host, txn->queue_id);
	txn->queue_id[SMTP_QUEUE_ID_MAX - 1] = '\0';
	return txn;
}

int
smtp_txn_add_rcpt(struct smtp_txn *txn, const char *rcpt)
{
	char *copy;

	/*
	 * A recipient given twice (in any case) is stored once: the hand-off
	 * would otherwise deliver the message twice to one mailbox.
	 */
	for (size_t i = 0; i < txn->nrcpt; i++)
		if (strcasecmp(txn->rcpts[i], rcpt) == 0)
			return PA_OK;
	if (txn->nrcpt == txn->rcpt_cap) {
		size_t cap = txn->rcpt_cap ? txn->rcpt_cap * 2 : RCPT_INITIAL_CAP;
		char **rcpts = realloc(txn->rcpts, cap * sizeof(*rcpts));

		if (rcpts == NULL)
			return PA_ERROR;
		txn->rcpts = rcpts;
		txn->rcpt_cap = cap;
	}
	copy = strdup(rcpt);
	if (copy == NULL)
		return PA_ERROR;
	txn->rcpts[txn->nrcpt++] = copy;
	return PA_OK;
}

/* RFC 5322 3.3 date-time, always in UTC and in English whatever the locale. */
static void
rfc5322_date(time_t t, char *out, size_t size)
{
	static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL) {
		t = 0;
		gmtime_r(&t, &tm);
	}
	snprintf(out, size, "%s, %d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday % 7], tm.tm_mday,
	         months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* RFC 3848 / RFC 6531 3.7.3 "with" protocol names; the S suffix means TLS. */
static const char *
protocol(const struct smtp_session *s, const struct smtp_txn *txn)
{
	bool tls = s->tls_version != NULL;

	if (!s->esmtp)
		return tls ? "ESMTPS" : "SMTP"; /* TLS came through the ESMTP STARTTLS extension */
	if (txn->smtputf8)
		return tls ? "UTF8SMTPS" : "UTF8SMTP";
	return tls ? "ESMTPS" : "ESMTP";
}

/* A comment after the "with" clause, as sendmail writes it: what TLS protected the session. */
static void
tls_comment(const struct smtp_session *s, char *out, size_t size)
{
	if (s->tls_version == NULL) {
		out[0] = '\0';
		return;
	}
	snprintf(out, size, "\r\n\t(version=%.32s cipher=%.64s)", s->tls_version, s->tls_cipher);
}

/*
 * RFC 5321 4.4 trace header.  The "for" clause names the recipient only when
 * there is exactly one: more would leak the other recipients' addresses.
 */
static size_t
received_header(const struct smtp_session *s, const struct smtp_txn *txn, char *out, size_t size)
{
	const struct smtp_config *cfg = s->config;
	time_t now = cfg->now != NULL ? cfg->now(s->host) : time(NULL);
	char date[64], tls[128];
	int n;

	rfc5322_date(now, date, sizeof(date));
	tls_comment(s, tls, sizeof(tls));
	if (txn->nrcpt == 1)
		n = snprintf(out, size,
		             "Received: from %.505s ([%.64s])\r\n"
		             "\tby %.255s (PigeonAir) with %s id %s%s\r\n"
		             "\tfor <%.256s>; %s\r\n",
		             s->helo ? s->helo : "unknown", s->client_addr, cfg->hostname,
		             protocol(s, txn), txn->queue_id, tls, txn->rcpts[0], date);
	else
		n = snprintf(out, size,
		             "Received: from %.505s ([%.64s])\r\n"
		             "\tby %.255s (PigeonAir) with %s id %s%s;\r\n"
		             "\t%s\r\n",
		             s->helo ? s->helo : "unknown", s->client_addr, cfg->hostname,
		             protocol(s, txn), txn->queue_id, tls, date);
	if (n < 0)
		return 0;
	return (size_t)n < size ? (size_t)n : size - 1;
}

void
smtp_txn_start_body(struct smtp_session *s, bool chunked)
{
	struct smtp_txn *txn = s->txn;
	size_t max = s->config->max_message_size ? s->config->max_message_size : SIZE_MAX;
	char header[RECEIVED_MAX];
	size_t len = received_header(s, txn, header, sizeof(header));

	txn->chunked = chunked;
	txn->body_started = true;
	/* Out of memory leaves a body that still scans and then fails with 452. */
	(void)smtp_body_start(&txn->body, header, len, max, !chunked,
	                      s->config->bare_lf == SMTP_BARE_LF_NORMALIZE);
}

void
smtp_txn_free(struct smtp_txn *txn)
{
	if (txn == NULL)
		return;
	for (size_t i = 0; i < txn->nrcpt; i++)
		free(txn->rcpts[i]);
	free(txn->rcpts);
	free(txn->mail_from);
	smtp_body_free(&txn->body);
	free(txn);
}

void
smtp_txn_end(struct smtp_session *s)
{
	smtp_txn_free(s->txn);
	s->txn = NULL;
	smtp_set_state(s, smtp_idle_state(s));
}
