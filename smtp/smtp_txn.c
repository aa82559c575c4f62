/*
 * smtp_txn.c: one mail transaction, from MAIL to its final reply.
 *
 * The envelope, the body buffer and the Received: header are allocated only
 * while a transaction is open and freed as soon as it ends (RSET, EHLO, the
 * final reply), which keeps an idle session down to its small struct.  The
 * transaction, its sender, its recipients and their pointer array come from
 * the thread's object caches (core/objcache.h): a worker reuses one
 * message's memory for the next, with no malloc per message.  The queue id is
 * taken at MAIL so the Received: header can name it.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/mail_date.h"
#include "core/objcache.h"
#include "core/pa.h"
#include "smtp/smtp_session_private.h"

/* Every part of the header is cut to a bound, keeping its lines under 998 octets. */
#define RECEIVED_MAX 1536
/* Recipient pointers a cached array holds; more (up to smtp.max_recipients) are malloc'ed. */
#define RCPT_CACHED_CAP 128
#define CACHE_KEEP 256 /* per thread and cache: more than a worker's messages in flight */

static const struct pa_objcache txn_cache = {PA_OBJCACHE_SMTP_TXN, sizeof(struct smtp_txn),
                                             CACHE_KEEP};
/* An address the engine parsed: at most SMTP_PATH_MAX octets (smtp_address.c). */
static const struct pa_objcache path_cache = {PA_OBJCACHE_SMTP_PATH, SMTP_PATH_MAX + 1,
                                              CACHE_KEEP * 2};
static const struct pa_objcache rcpts_cache = {PA_OBJCACHE_SMTP_RCPTS,
                                               RCPT_CACHED_CAP * sizeof(char *), CACHE_KEEP};

/* A copy of an address in a cached buffer, or NULL (out of memory, or longer than a path). */
static char *
path_copy(const char *addr)
{
	size_t len = strnlen(addr, SMTP_PATH_MAX + 1);
	char *copy;

	if (len > SMTP_PATH_MAX)
		return NULL; /* the parser never hands over a longer one */
	copy = pa_objcache_get(&path_cache);
	if (copy != NULL)
		memcpy(copy, addr, len + 1);
	return copy;
}

struct smtp_txn *
smtp_txn_new(struct smtp_session *s, const char *mail_from)
{
	struct smtp_txn *txn = pa_objcache_get(&txn_cache);

	if (txn == NULL)
		return NULL;
	memset(txn, 0, sizeof(*txn));
	txn->mail_from = path_copy(mail_from);
	if (txn->mail_from == NULL) {
		pa_objcache_put(&txn_cache, txn);
		return NULL;
	}
	if (s->config->new_queue_id != NULL)
		s->config->new_queue_id(s->host, txn->queue_id);
	txn->queue_id[SMTP_QUEUE_ID_MAX - 1] = '\0';
	return txn;
}

/* The recipient pointer array back where it came from: the cache while it is the first one. */
static void
free_rcpt_array(struct smtp_txn *txn)
{
	if (txn->rcpt_cap == RCPT_CACHED_CAP)
		pa_objcache_put(&rcpts_cache, txn->rcpts);
	else
		free(txn->rcpts);
	txn->rcpts = NULL;
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
		char **rcpts;

		if (txn->rcpt_cap == 0) {
			rcpts = pa_objcache_get(&rcpts_cache);
			txn->rcpt_cap = RCPT_CACHED_CAP;
		} else {
			/* Past the cached array: rare (more than 128 recipients), so malloc. */
			size_t cap = txn->rcpt_cap * 2;

			rcpts = malloc(cap * sizeof(*rcpts));
			if (rcpts != NULL) {
				memcpy(rcpts, txn->rcpts, txn->nrcpt * sizeof(*rcpts));
				free_rcpt_array(txn);
				txn->rcpt_cap = cap;
			}
		}
		if (rcpts == NULL)
			return PA_ERROR;
		txn->rcpts = rcpts;
	}
	copy = path_copy(rcpt);
	if (copy == NULL)
		return PA_ERROR;
	txn->rcpts[txn->nrcpt++] = copy;
	return PA_OK;
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

/*
 * The header is assembled by hand into a fixed buffer: it is built on a
 * poll-mode core for every message, where snprintf() alone cost about 6,000
 * instructions (perf/bench-stack.sh).  Each part is cut at its own bound, so
 * every line stays under RFC 5322's 998 octets whatever the client sent.
 */
struct header_out {
	char *p, *end; /* end leaves room for the NUL */
};

static void
put(struct header_out *o, const char *s, size_t max)
{
	size_t n = strnlen(s, max);

	if (n > (size_t)(o->end - o->p))
		n = (size_t)(o->end - o->p);
	memcpy(o->p, s, n);
	o->p += n;
}

#define PUT_LITERAL(o, lit) put((o), (lit), sizeof(lit) - 1)

/*
 * RFC 5321 4.4 trace header.  The "for" clause names the recipient only when
 * there is exactly one: more would leak the other recipients' addresses.  A
 * TLS session gets a comment after the "with" clause, as sendmail writes it.
 */
static size_t
received_header(const struct smtp_session *s, const struct smtp_txn *txn, char *out, size_t size)
{
	const struct smtp_config *cfg = s->config;
	time_t now = cfg->now != NULL ? cfg->now(s->host) : time(NULL);
	const char *proto = protocol(s, txn);
	struct header_out o = {out, out + size - 1};
	char date[PA_MAIL_DATE_MAX];

	pa_mail_date((int64_t)now, date);
	PUT_LITERAL(&o, "Received: from ");
	put(&o, s->helo ? s->helo : "unknown", 505);
	PUT_LITERAL(&o, " ([");
	put(&o, s->client_addr, 64);
	PUT_LITERAL(&o, "])\r\n\tby ");
	put(&o, cfg->hostname, 255);
	PUT_LITERAL(&o, " (PigeonAir) with ");
	put(&o, proto, strlen(proto));
	PUT_LITERAL(&o, " id ");
	put(&o, txn->queue_id, SMTP_QUEUE_ID_MAX);
	if (s->tls_version != NULL) {
		PUT_LITERAL(&o, "\r\n\t(version=");
		put(&o, s->tls_version, 32);
		PUT_LITERAL(&o, " cipher=");
		put(&o, s->tls_cipher != NULL ? s->tls_cipher : "", 64);
		PUT_LITERAL(&o, ")");
	}
	if (txn->nrcpt == 1) {
		PUT_LITERAL(&o, "\r\n\tfor <");
		put(&o, txn->rcpts[0], 256);
		PUT_LITERAL(&o, ">; ");
	} else {
		PUT_LITERAL(&o, ";\r\n\t");
	}
	put(&o, date, sizeof(date));
	PUT_LITERAL(&o, "\r\n");
	*o.p = '\0';
	return (size_t)(o.p - out);
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
	if (smtp_body_start(&txn->body, header, len, max, !chunked,
	                    s->config->bare_lf == SMTP_BARE_LF_NORMALIZE) == PA_OK &&
	    txn->declared_size != 0)
		smtp_body_expect(&txn->body, txn->declared_size);
}

void
smtp_txn_free(struct smtp_txn *txn)
{
	if (txn == NULL)
		return;
	for (size_t i = 0; i < txn->nrcpt; i++)
		pa_objcache_put(&path_cache, txn->rcpts[i]);
	free_rcpt_array(txn);
	pa_objcache_put(&path_cache, txn->mail_from);
	smtp_body_free(&txn->body);
	pa_objcache_put(&txn_cache, txn);
}

void
smtp_txn_end(struct smtp_session *s)
{
	smtp_txn_free(s->txn);
	s->txn = NULL;
	smtp_set_state(s, smtp_idle_state(s));
}
