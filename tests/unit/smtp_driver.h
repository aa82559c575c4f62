/*
 * smtp_driver.h: a test host for the SMTP engine, shared by the unit tests.
 *
 * It feeds input in chunks of a chosen size (1 = byte by byte), answers every
 * SMTP_MESSAGE_READY with a chosen store status after copying the message,
 * collects the output as a NUL-terminated string and counts the refusals
 * reported through config->refused.  Two runs of the same input can then be
 * compared byte for byte.  Include it after cmocka.h.
 */
#ifndef SMTP_DRIVER_H
#define SMTP_DRIVER_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/pa.h"
#include "smtp/smtp_session.h"

#define DRV_MAX_MSGS 8
#define DRV_NOW 1700000000 /* Tue, 14 Nov 2023 22:13:20 +0000 */
#define DRV_HOSTNAME "mx.example.org"
#define DRV_BANNER "220 " DRV_HOSTNAME " ESMTP PigeonAir\r\n"
#define DRV_EHLO_REPLY                                                                             \
	"250-" DRV_HOSTNAME "\r\n250-PIPELINING\r\n250-SIZE 100000\r\n250-8BITMIME\r\n"            \
	"250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n"
#define DRV_DATE "Tue, 14 Nov 2023 22:13:20 +0000"

/* A string literal as pointer and length, NULs included. */
#define LIT(s) (const uint8_t *)(s), (sizeof(s) - 1)

struct drv_msg {
	char queue_id[SMTP_QUEUE_ID_MAX];
	char *mail_from;
	char *rcpts[16];
	size_t nrcpt;
	uint8_t *data;
	size_t size;
	bool body_8bitmime;
	bool smtputf8;
	bool chunked;
};

struct drv {
	struct smtp_config cfg;
	struct smtp_session *s;
	char *out;
	size_t out_len;
	struct drv_msg msgs[DRV_MAX_MSGS];
	size_t nmsg;
	unsigned next_qid;
	int store_status;
	unsigned refusals[SMTP_REFUSAL_COUNT];
	unsigned rcpt_checks;
	bool closed;
};

/* example.org is ours; the local part picks the verdict; everything else is relaying. */
static inline enum smtp_rcpt_verdict
drv_rcpt_check(void *host, const char *addr, char canonical[SMTP_PATH_MAX + 1])
{
	struct drv *d = host;
	const char *at = strrchr(addr, '@');

	d->rcpt_checks++;
	assert_string_equal(canonical, ""); /* the engine's side of the contract */
	if (at == NULL)
		return strcasecmp(addr, "postmaster") == 0 ? SMTP_RCPT_ACCEPT
		                                           : SMTP_RCPT_RELAY_DENIED;
	if (strcasecmp(at + 1, "example.org") != 0)
		return SMTP_RCPT_RELAY_DENIED;
	if (strncmp(addr, "unknown", 7) == 0)
		return SMTP_RCPT_UNKNOWN_USER;
	if (strncmp(addr, "tempfail", 8) == 0)
		return SMTP_RCPT_TEMPFAIL;
	if (strncmp(addr, "full", 4) == 0)
		return SMTP_RCPT_SPOOL_FULL;
	if (strncmp(addr, "baddomain", 9) == 0)
		return SMTP_RCPT_BAD_DOMAIN;
	return SMTP_RCPT_ACCEPT;
}

static inline void
drv_queue_id(void *host, char out[SMTP_QUEUE_ID_MAX])
{
	struct drv *d = host;

	snprintf(out, SMTP_QUEUE_ID_MAX, "Q%05u", ++d->next_qid);
}

static inline time_t
drv_now(void *host)
{
	(void)host;
	return DRV_NOW;
}

static inline void
drv_refused(void *host, int refusal, const char *detail)
{
	struct drv *d = host;

	(void)detail;
	assert_true(refusal >= 0 && refusal < SMTP_REFUSAL_COUNT);
	d->refusals[refusal]++;
}

static inline void
drv_init(struct drv *d, enum smtp_bare_lf_policy policy)
{
	memset(d, 0, sizeof(*d));
	d->cfg.hostname = DRV_HOSTNAME;
	d->cfg.max_message_size = 100000;
	d->cfg.max_recipients = 10;
	d->cfg.max_errors = 20;
	d->cfg.bare_lf = policy;
	d->cfg.command_timeout_ms = 300000;
	d->cfg.data_timeout_ms = 180000;
	d->cfg.rcpt_check = drv_rcpt_check;
	d->cfg.new_queue_id = drv_queue_id;
	d->cfg.now = drv_now;
	d->cfg.refused = drv_refused;
	d->store_status = PA_OK;
	d->out = calloc(1, 1);
	assert_non_null(d->out);
}

static inline void
drv_drain(struct drv *d)
{
	size_t len;
	const uint8_t *p = smtp_session_output(d->s, &len);

	d->out = realloc(d->out, d->out_len + len + 1);
	assert_non_null(d->out);
	memcpy(d->out + d->out_len, p, len);
	d->out_len += len;
	d->out[d->out_len] = '\0';
	smtp_session_output_consumed(d->s, len);
}

/* Creates the session (after drv_init and any change to d->cfg) and greets. */
static inline void
drv_start(struct drv *d)
{
	d->s = smtp_session_new(&d->cfg, d, "192.0.2.1");
	assert_non_null(d->s);
	smtp_session_greet(d->s);
	drv_drain(d);
}

static inline void
drv_record(struct drv *d)
{
	const struct smtp_message *m = smtp_session_message(d->s);
	struct drv_msg *r;

	assert_non_null(m);
	assert_true(d->nmsg < DRV_MAX_MSGS);
	assert_true(m->nrcpt <= 16);
	r = &d->msgs[d->nmsg++];
	snprintf(r->queue_id, sizeof(r->queue_id), "%s", m->queue_id);
	r->mail_from = strdup(m->mail_from);
	for (size_t i = 0; i < m->nrcpt; i++)
		r->rcpts[i] = strdup(m->rcpts[i]);
	r->nrcpt = m->nrcpt;
	r->data = malloc(m->size + 1);
	assert_non_null(r->data);
	memcpy(r->data, m->data, m->size);
	r->data[m->size] = '\0';
	r->size = m->size;
	r->body_8bitmime = m->body_8bitmime;
	r->smtputf8 = m->smtputf8;
	r->chunked = m->chunked;
}

/* Feeds `len` octets `chunk` at a time, storing every message, until done or closed. */
static inline void
drv_feed(struct drv *d, const uint8_t *in, size_t len, size_t chunk)
{
	size_t off = 0;

	while (off < len && !d->closed) {
		size_t n = len - off < chunk ? len - off : chunk;
		size_t used = 0, pending;
		enum smtp_input_status st = smtp_session_input(d->s, in + off, n, &used);

		assert_true(used <= n);
		off += used;
		smtp_session_output(d->s, &pending);
		if (st == SMTP_MESSAGE_READY) {
			assert_true(smtp_session_awaiting_store(d->s));
			drv_record(d);
			smtp_session_message_done(d->s, d->store_status);
		} else if (st == SMTP_CLOSE) {
			assert_true(smtp_session_closing(d->s));
			d->closed = true;
		} else if (used < n) {
			/* Only output backpressure may stop the engine early. */
			assert_true(pending > 0);
		}
		drv_drain(d);
	}
}

static inline void
drv_feed_str(struct drv *d, const char *s, size_t chunk)
{
	drv_feed(d, (const uint8_t *)s, strlen(s), chunk);
}

static inline void
drv_free(struct drv *d)
{
	for (size_t i = 0; i < d->nmsg; i++) {
		free(d->msgs[i].mail_from);
		for (size_t j = 0; j < d->msgs[i].nrcpt; j++)
			free(d->msgs[i].rcpts[j]);
		free(d->msgs[i].data);
	}
	smtp_session_free(d->s);
	free(d->out);
	memset(d, 0, sizeof(*d));
}

/* A full run: init, optional config change, start, feed; the caller frees. */
static inline void
drv_run(struct drv *d, enum smtp_bare_lf_policy policy, void (*tweak)(struct smtp_config *),
        const uint8_t *in, size_t len, size_t chunk)
{
	drv_init(d, policy);
	if (tweak != NULL)
		tweak(&d->cfg);
	drv_start(d);
	drv_feed(d, in, len, chunk);
}

static inline size_t
drv_count(const char *haystack, const char *needle)
{
	size_t n = 0;

	for (const char *p = strstr(haystack, needle); p != NULL; p = strstr(p + 1, needle))
		n++;
	return n;
}

/* Two runs gave the same replies and the same stored messages, byte for byte. */
static inline void
drv_assert_same(const struct drv *a, const struct drv *b)
{
	assert_int_equal(a->out_len, b->out_len);
	assert_string_equal(a->out, b->out);
	assert_int_equal(a->nmsg, b->nmsg);
	assert_int_equal(a->closed, b->closed);
	for (size_t i = 0; i < a->nmsg; i++) {
		const struct drv_msg *x = &a->msgs[i], *y = &b->msgs[i];

		assert_string_equal(x->queue_id, y->queue_id);
		assert_string_equal(x->mail_from, y->mail_from);
		assert_int_equal(x->nrcpt, y->nrcpt);
		for (size_t j = 0; j < x->nrcpt; j++)
			assert_string_equal(x->rcpts[j], y->rcpts[j]);
		assert_int_equal(x->size, y->size);
		assert_memory_equal(x->data, y->data, x->size);
		assert_int_equal(x->chunked, y->chunked);
	}
}

/* The content after the Received: header (its last line ends the first "+0000\r\n"). */
static inline const uint8_t *
drv_body(const struct drv_msg *m, size_t *len)
{
	const char *end = strstr((const char *)m->data, "+0000\r\n");

	assert_non_null(end);
	end += strlen("+0000\r\n");
	*len = m->size - (size_t)((const uint8_t *)end - m->data);
	return (const uint8_t *)end;
}

#endif
