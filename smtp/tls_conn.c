/*
 * tls_conn.c: one server-side TLS connection over two byte queues.
 *
 * The host puts ciphertext in (tls_conn_rx), OpenSSL reads it through the
 * BIO of tls_io.c; what OpenSSL writes lands in the tx queue, which the host
 * sends and releases as the transport allows.  Decrypted input is kept in a
 * record-sized buffer until the engine has taken all of it, because the
 * engine may stop mid-record (a message to store, output to drain).  Every
 * buffer here is allocated while it holds bytes and freed when empty.
 */
#include <stdio.h>
#include <stdlib.h>

#include <openssl/err.h>

#include "core/pa.h"
#include "smtp/tls_private.h"

#define PLAIN_MAX 16384 /* one TLS record's plaintext (RFC 8446 5.1) */

struct tls_conn {
	SSL *ssl;
	struct tls_io io;
	uint8_t *plain; /* decrypted, not yet taken by the engine */
	size_t plain_off;
	size_t plain_len;
	bool established;
	bool shutdown_sent;
};

struct tls_conn *
tls_conn_new(struct tls_ctx *ctx)
{
	struct tls_conn *c = calloc(1, sizeof(*c));
	BIO *bio;

	if (c == NULL)
		return NULL;
	tls_io_init(&c->io);
	c->ssl = SSL_new(ctx->ssl_ctx);
	if (c->ssl == NULL)
		goto fail;
	bio = tls_io_bio_new(ctx->shared->bio_method, &c->io);
	if (bio == NULL)
		goto fail;
	/* One BIO both ways: SSL_set_bio() takes a single reference for both. */
	SSL_set_bio(c->ssl, bio, bio);
	SSL_set_accept_state(c->ssl);
	return c;
fail:
	ERR_clear_error();
	SSL_free(c->ssl);
	free(c);
	return NULL;
}

void
tls_conn_free(struct tls_conn *c)
{
	if (c == NULL)
		return;
	SSL_free(c->ssl);
	tls_io_free(&c->io);
	free(c->plain);
	free(c);
}

size_t
tls_conn_rx(struct tls_conn *c, const uint8_t *in, size_t len)
{
	size_t held = pa_buf_pending(&c->io.rx);
	size_t room = TLS_RX_MAX > held ? TLS_RX_MAX - held : 0;
	size_t n = len < room ? len : room;

	if (n == 0)
		return 0;
	if (pa_buf_append(&c->io.rx, in, n) != PA_OK)
		return 0;
	return n;
}

/* The message for a failed SSL_* call, after SSL_get_error() said why. */
static void
ssl_failure(struct tls_conn *c, int rc, const char *call, char *err, size_t errlen)
{
	int e = SSL_get_error(c->ssl, rc);

	if (e == SSL_ERROR_SSL || ERR_peek_error() != 0) {
		tls_error(err, errlen, call);
		return;
	}
	ERR_clear_error();
	if (e == SSL_ERROR_ZERO_RETURN)
		snprintf(err, errlen, "%s: the client closed the TLS session", call);
	else
		snprintf(err, errlen, "%s failed: SSL_get_error %d", call, e);
}

int
tls_conn_handshake(struct tls_conn *c, char *err, size_t errlen)
{
	int rc;

	if (c->established)
		return PA_OK;
	rc = SSL_do_handshake(c->ssl);
	if (rc == 1) {
		c->established = true;
		return PA_OK;
	}
	switch (SSL_get_error(c->ssl, rc)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return PA_AGAIN;
	default:
		ssl_failure(c, rc, "SSL_do_handshake", err, errlen);
		return PA_ERROR;
	}
}

bool
tls_conn_established(const struct tls_conn *c)
{
	return c->established;
}

int
tls_conn_plain_in(struct tls_conn *c, const uint8_t **p, size_t *len, char *err, size_t errlen)
{
	int n;

	*len = 0;
	if (c->plain_len == 0) {
		if (c->plain == NULL) {
			c->plain = malloc(PLAIN_MAX);
			if (c->plain == NULL) {
				snprintf(err, errlen, "malloc(%d) failed: out of memory",
				         PLAIN_MAX);
				return PA_ERROR;
			}
		}
		c->plain_off = 0;
		n = SSL_read(c->ssl, c->plain, PLAIN_MAX);
		if (n <= 0) {
			int e = SSL_get_error(c->ssl, n);

			free(c->plain);
			c->plain = NULL;
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
				return PA_AGAIN;
			ssl_failure(c, n, "SSL_read", err, errlen);
			return PA_ERROR;
		}
		c->plain_len = (size_t)n;
	}
	*p = c->plain + c->plain_off;
	*len = c->plain_len;
	return PA_OK;
}

void
tls_conn_plain_consumed(struct tls_conn *c, size_t n)
{
	if (n >= c->plain_len) {
		c->plain_len = 0;
		c->plain_off = 0;
		free(c->plain);
		c->plain = NULL;
		return;
	}
	c->plain_off += n;
	c->plain_len -= n;
}

bool
tls_conn_rx_pending(const struct tls_conn *c)
{
	return c->plain_len > 0 || pa_buf_pending(&c->io.rx) > 0 || SSL_pending(c->ssl) > 0;
}

long
tls_conn_write(struct tls_conn *c, const uint8_t *p, size_t len, char *err, size_t errlen)
{
	int n;

	if (len == 0)
		return 0;
	if (len > PLAIN_MAX)
		len = PLAIN_MAX;
	n = SSL_write(c->ssl, p, (int)len);
	if (n <= 0) {
		ssl_failure(c, n, "SSL_write", err, errlen);
		return PA_ERROR;
	}
	return n;
}

void
tls_conn_shutdown(struct tls_conn *c)
{
	if (c->shutdown_sent || !c->established)
		return;
	c->shutdown_sent = true;
	/* Queues close_notify; the client's answer is not waited for (RFC 8446 6.1). */
	(void)SSL_shutdown(c->ssl);
	ERR_clear_error();
}

const uint8_t *
tls_conn_tx(const struct tls_conn *c, size_t *len)
{
	*len = pa_buf_pending(&c->io.tx);
	return c->io.tx.data != NULL ? pa_buf_head(&c->io.tx) : (const uint8_t *)"";
}

void
tls_conn_tx_consumed(struct tls_conn *c, size_t n)
{
	tls_queue_consume(&c->io.tx, n);
}

const char *
tls_conn_version(const struct tls_conn *c)
{
	return SSL_get_version(c->ssl);
}

const char *
tls_conn_cipher(const struct tls_conn *c)
{
	return SSL_CIPHER_get_name(SSL_get_current_cipher(c->ssl));
}

bool
tls_conn_resumed(const struct tls_conn *c)
{
	return SSL_session_reused(c->ssl) == 1;
}
