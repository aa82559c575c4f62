/*
 * ingest_tls.c: STARTTLS in the engine's host, the same for every backend.
 *
 * When the engine answers STARTTLS, the connection gets a TLS filter
 * (smtp/tls.h) from its worker's SSL_CTX: from then on what the backend
 * hands to ingest_input() is ciphertext and what it takes from
 * ingest_output() is ciphertext, except the 220 itself, which still goes in
 * clear.  What it promises:
 *  - bytes the client sent after STARTTLS, before the handshake, are never
 *    commands: the engine discarded those of the same read, later ones are
 *    fed to the handshake, which fails on them (CVE-2011-0411);
 *  - a handshake that fails or does not finish within tls.handshake_timeout
 *    closes the connection and is counted, nothing else;
 *  - at most the worker's budget of handshake steps runs per loop iteration;
 *    the rest waits on the worker's tls_backlog, so a burst of handshakes
 *    (ECDSA or RSA signatures) cannot starve packet processing;
 *  - memory per connection stays bounded: TLS_RX_MAX of ciphertext in, the
 *    engine's output is encrypted only while less than TLS_TX_HIGH_WATER
 *    waits to be sent.
 */
#include <string.h>

#include "core/log.h"
#include "core/pa.h"
#include "dataplane/ingest_limits.h"
#include "dataplane/ingest_tls.h"
#include "dataplane/worker.h"
#include "smtp/tls.h"

/* Handshake steps per loop iteration and worker: a full ECDSA P-256 one is ~0.1 ms. */
#define HANDSHAKES_PER_LOOP 16

static void
fail(struct ingest_conn *conn, const char *err)
{
	conn->worker->counters.tls_handshake_failures++;
	conn->tls_closing = true;
	pa_log_notice("tls handshake failed client=%s: %s", conn->client, err);
}

enum ingest_status
ingest_tls_start(struct ingest_conn *conn)
{
	struct pa_worker *worker = conn->worker;
	size_t pending;

	/* The engine offers STARTTLS only with tls.cert, which every worker then has. */
	if (worker->tls == NULL) {
		pa_log_err("client=%s: STARTTLS without a TLS context", conn->client);
		conn->tls_closing = true;
		return INGEST_CLOSE;
	}
	conn->tls = tls_conn_new(worker->tls);
	if (conn->tls == NULL) {
		pa_log_err("client=%s: tls_conn_new() failed: out of memory", conn->client);
		conn->tls_closing = true;
		return INGEST_CLOSE;
	}
	smtp_session_output(conn->smtp, &pending);
	conn->clear_out = pending;
	return INGEST_READY;
}

static void
defer(struct ingest_conn *conn)
{
	if (conn->tls_deferred)
		return;
	conn->tls_deferred = true;
	conn->worker->counters.tls_handshakes_deferred++;
	TAILQ_INSERT_TAIL(&conn->worker->tls_backlog, conn, tls_link);
}

/* PA_OK when the session runs in TLS, PA_AGAIN while the handshake waits, PA_ERROR: close. */
static int
handshake(struct ingest_conn *conn)
{
	struct pa_worker *worker = conn->worker;
	char err[TLS_ERR_MAX];
	int rc;

	if (tls_conn_established(conn->tls))
		return PA_OK;
	if (!tls_conn_rx_pending(conn->tls))
		return PA_AGAIN;
	if (worker->tls_budget == 0) {
		defer(conn);
		return PA_AGAIN;
	}
	worker->tls_budget--;
	rc = tls_conn_handshake(conn->tls, err, sizeof(err));
	if (rc == PA_ERROR) {
		fail(conn, err);
		return PA_ERROR;
	}
	if (rc == PA_AGAIN)
		return PA_AGAIN;
	worker->counters.tls_handshakes++;
	if (tls_conn_resumed(conn->tls))
		worker->counters.tls_resumed++;
	/* Operators watch the share of TLS 1.2 clients before raising tls.min_version. */
	if (strcmp(tls_conn_version(conn->tls), "TLSv1.3") == 0)
		worker->counters.tls_v1_3++;
	else
		worker->counters.tls_v1_2++;
	pa_log_debug("tls worker=%u client=%s version=%s cipher=%s%s", worker->id, conn->client,
	             tls_conn_version(conn->tls), tls_conn_cipher(conn->tls),
	             tls_conn_resumed(conn->tls) ? " resumed" : "");
	smtp_session_tls_started(conn->smtp, tls_conn_version(conn->tls),
	                         tls_conn_cipher(conn->tls));
	return PA_OK;
}

static void encrypt_output(struct ingest_conn *conn);

/*
 * Moves the engine's replies into the ciphertext queue while it has room;
 * true when that made room in the engine's output, so it takes input again.
 */
static bool
drain_engine_output(struct ingest_conn *conn)
{
	size_t before, after;

	smtp_session_output(conn->smtp, &before);
	encrypt_output(conn);
	smtp_session_output(conn->smtp, &after);
	return after < before && !conn->tls_closing;
}

/*
 * Runs the handshake, then feeds decrypted input to the engine until it stops.
 * When the engine holds back for its output, that output is encrypted here
 * rather than only when the backend next asks for bytes to send: the engine
 * then waits only on the ciphertext queue (TLS_TX_HIGH_WATER), which empties
 * as the transport sends (kernel) or the client acknowledges (DPDK), and
 * either way the backend calls us again.  Otherwise the replies of a
 * pipelined burst could sit in the engine with the rest of the burst already
 * in this filter's queues and no segment left to come that would run it.
 */
static enum ingest_status
pump(struct ingest_conn *conn)
{
	char err[TLS_ERR_MAX];

	if (conn->tls_closing)
		return INGEST_CLOSE;
	if (conn->storing)
		return INGEST_STORING;
	switch (handshake(conn)) {
	case PA_ERROR:
		return INGEST_CLOSE;
	case PA_AGAIN:
		return INGEST_READY;
	}
	for (;;) {
		const uint8_t *p;
		size_t n, used = 0;
		enum ingest_status st;
		int rc = tls_conn_plain_in(conn->tls, &p, &n, err, sizeof(err));

		if (rc == PA_AGAIN)
			return INGEST_READY;
		if (rc == PA_ERROR) {
			/* close_notify, or a broken record: either way the session is over. */
			pa_log_debug("tls client=%s: %s", conn->client, err);
			conn->tls_closing = true;
			return INGEST_CLOSE;
		}
		st = ingest_engine_status(conn, smtp_session_input(conn->smtp, p, n, &used));
		tls_conn_plain_consumed(conn->tls, used);
		if (st != INGEST_READY || smtp_session_closing(conn->smtp))
			return st;
		if (used < n && !drain_engine_output(conn))
			return INGEST_READY; /* ciphertext queue full: wait for the transport */
	}
}

enum ingest_status
ingest_tls_input(struct ingest_conn *conn, const uint8_t *in, size_t len, size_t *consumed)
{
	if (conn->tls_closing)
		return INGEST_CLOSE;
	*consumed = len > 0 ? tls_conn_rx(conn->tls, in, len) : 0;
	return pump(conn);
}

void
ingest_tls_poll(struct pa_worker *worker)
{
	struct ingest_conn *conn;

	worker->tls_budget = HANDSHAKES_PER_LOOP;
	while (worker->tls_budget > 0 && (conn = TAILQ_FIRST(&worker->tls_backlog)) != NULL) {
		TAILQ_REMOVE(&worker->tls_backlog, conn, tls_link);
		conn->tls_deferred = false;
		(void)pump(conn);
		worker->resume(conn); /* the backend sends the output and goes on reading */
	}
}

/*
 * Encrypts what the engine has to say while the ciphertext queue has room.
 * A closing session's last replies are all encrypted at once (the engine
 * bounds them), so that a TCP stack can place its FIN after the whole stream.
 */
static void
encrypt_output(struct ingest_conn *conn)
{
	bool closing = smtp_session_closing(conn->smtp);
	char err[TLS_ERR_MAX] = "";

	if (!tls_conn_established(conn->tls) || conn->tls_closing)
		return;
	for (;;) {
		size_t n, queued;
		const uint8_t *p = smtp_session_output(conn->smtp, &n);
		long w;

		if (n == 0)
			break;
		tls_conn_tx(conn->tls, &queued);
		if (queued >= TLS_TX_HIGH_WATER && !closing)
			return; /* after the transport took some */
		w = tls_conn_write(conn->tls, p, n, err, sizeof(err));
		if (w <= 0) {
			pa_log_notice("tls client=%s: %s", conn->client, err);
			conn->tls_closing = true;
			return;
		}
		smtp_session_output_consumed(conn->smtp, (size_t)w);
	}
	if (smtp_session_closing(conn->smtp))
		tls_conn_shutdown(conn->tls);
}

const uint8_t *
ingest_output(struct ingest_conn *conn, size_t *len)
{
	const uint8_t *p;

	if (conn->tls == NULL || conn->clear_out > 0) {
		p = smtp_session_output(conn->smtp, len);
		if (conn->tls != NULL && *len > conn->clear_out)
			*len = conn->clear_out;
		return p;
	}
	encrypt_output(conn);
	return tls_conn_tx(conn->tls, len);
}

void
ingest_output_consumed(struct ingest_conn *conn, size_t n)
{
	if (conn->tls == NULL) {
		smtp_session_output_consumed(conn->smtp, n);
		return;
	}
	if (conn->clear_out > 0) {
		size_t m = n < conn->clear_out ? n : conn->clear_out;

		smtp_session_output_consumed(conn->smtp, m);
		conn->clear_out -= m;
		n -= m;
	}
	if (n > 0)
		tls_conn_tx_consumed(conn->tls, n);
}

bool
ingest_input_pending(const struct ingest_conn *conn)
{
	return conn->tls != NULL && !conn->storing && !conn->tls_closing && !conn->tls_deferred &&
	       tls_conn_established(conn->tls) && tls_conn_rx_pending(conn->tls);
}

bool
ingest_closing(const struct ingest_conn *conn)
{
	return conn->dropped || conn->tls_closing || smtp_session_closing(conn->smtp);
}

uint32_t
ingest_progress(const struct ingest_conn *conn)
{
	return smtp_session_progress(conn->smtp);
}

unsigned
ingest_timeout_ms(const struct ingest_conn *conn)
{
	unsigned ms;

	if (ingest_limits_timeout_ms(conn, &ms))
		return ms;
	if (conn->tls != NULL && !tls_conn_established(conn->tls))
		return conn->runtime->config.tls_handshake_timeout_s * 1000u;
	return smtp_session_timeout_ms(conn->smtp);
}

void
ingest_timeout(struct ingest_conn *conn)
{
	if (ingest_limits_timeout(conn))
		return;
	if (conn->tls != NULL && !tls_conn_established(conn->tls)) {
		if (conn->tls_closing)
			return;
		conn->worker->counters.tls_handshake_timeouts++;
		conn->tls_closing = true;
		pa_log_notice("tls handshake timeout client=%s", conn->client);
		return;
	}
	smtp_session_timeout(conn->smtp);
}

/* SIGTERM: a session still in its handshake has no one to say 421 to. */
void
ingest_tls_shutdown(struct ingest_conn *conn)
{
	if (conn->tls != NULL && !tls_conn_established(conn->tls))
		conn->tls_closing = true;
}

/* The transport is gone: nothing deferred may run for this connection any more. */
void
ingest_tls_close(struct ingest_conn *conn)
{
	if (conn->tls != NULL && !tls_conn_established(conn->tls) && !conn->tls_closing) {
		conn->worker->counters.tls_handshake_failures++;
		pa_log_notice("tls handshake failed client=%s: connection closed by the client",
		              conn->client);
	}
	if (conn->tls_deferred) {
		TAILQ_REMOVE(&conn->worker->tls_backlog, conn, tls_link);
		conn->tls_deferred = false;
	}
}

/*
 * A reload re-read the certificates: new connections use the new context.
 * Sessions in progress keep the old SSL_CTX alive through OpenSSL's
 * reference count, so freeing our hold on it here is safe.
 */
void
ingest_tls_refresh(struct pa_worker *worker)
{
	struct tls_ctx *next = __atomic_exchange_n(&worker->tls_next, NULL, __ATOMIC_ACQ_REL);

	if (next == NULL)
		return;
	tls_ctx_free(worker->tls);
	worker->tls = next;
}

void
ingest_tls_free(struct ingest_conn *conn)
{
	tls_conn_free(conn->tls);
	conn->tls = NULL;
}
