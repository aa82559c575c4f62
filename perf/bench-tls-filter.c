/*
 * bench-tls-filter.c: the CPU cost of one full server handshake in pigeond's
 * TLS filter (smtp/tls.h), without any network: an OpenSSL client on memory
 * BIOs and the server's tls_conn in one thread, the server's calls timed
 * alone with the thread CPU clock.
 *
 *   bench-tls-filter CERT KEY [HANDSHAKES]
 *   bench-tls-filter --keygen X25519|P-256 [KEYS]
 *
 * Prints the server's handshakes per CPU second (TLS 1.3, ECDSA+SHA256
 * offered, X25519, one session ticket, no resumption, then one reply): what
 * OpenSSL and the
 * filter cost per handshake, to set against the end-to-end figure of
 * perf/bench-tls.sh, which adds TCP, system calls and the SMTP exchange.
 *
 * --keygen times the ephemeral key pair a server makes for each full
 * handshake (EVP_PKEY_Q_keygen, as OpenSSL's TLS code does through the EVP
 * API): `openssl speed` 3.0 times ECDH derivations and signatures but no key
 * generation, and perf/bench-tls.sh needs all three for its bound.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "core/pa.h"
#include "smtp/tls.h"

static double
cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Client -> server bytes; the server's share of the time is added to *server_s. */
static void
to_server(BIO *out, struct tls_conn *s, double *server_s)
{
	char buf[16384];
	int n;

	while ((n = BIO_read(out, buf, sizeof(buf))) > 0) {
		double t = cpu_now();

		tls_conn_rx(s, (const uint8_t *)buf, (size_t)n);
		*server_s += cpu_now() - t;
	}
}

static void
to_client(struct tls_conn *s, BIO *in)
{
	size_t n;
	const uint8_t *p = tls_conn_tx(s, &n);

	if (n > 0) {
		BIO_write(in, p, (int)n);
		tls_conn_tx_consumed(s, n);
	}
}

/* One full handshake; returns PA_OK when both sides finished. */
static int
one(struct tls_ctx *ctx, SSL_CTX *cctx, double *server_s)
{
	char err[TLS_ERR_MAX];
	double t = cpu_now();
	struct tls_conn *s = tls_conn_new(ctx);
	SSL *c = SSL_new(cctx);
	BIO *in = BIO_new(BIO_s_mem()), *out = BIO_new(BIO_s_mem());
	int rc = PA_AGAIN;

	*server_s += cpu_now() - t;
	SSL_set_bio(c, in, out);
	SSL_set_connect_state(c);
	for (int i = 0; i < 8 && (rc != PA_OK || !SSL_is_init_finished(c)); i++) {
		(void)SSL_do_handshake(c);
		to_server(out, s, server_s);
		t = cpu_now();
		rc = tls_conn_handshake(s, err, sizeof(err));
		*server_s += cpu_now() - t;
		if (rc == PA_ERROR) {
			fprintf(stderr, "bench-tls-filter: %s\n", err);
			break;
		}
		to_client(s, in);
	}
	if (rc == PA_OK) {
		/* The first reply (the EHLO answer in pigeond): one record to encrypt. */
		char buf[256];

		t = cpu_now();
		if (tls_conn_write(s, (const uint8_t *)"250 ok\r\n", 8, err, sizeof(err)) != 8) {
			fprintf(stderr, "bench-tls-filter: %s\n", err);
			rc = PA_ERROR;
		}
		*server_s += cpu_now() - t;
		to_client(s, in);
		if (rc == PA_OK && SSL_read(c, buf, sizeof(buf)) != 8) {
			fprintf(stderr, "bench-tls-filter: the client read no reply\n");
			rc = PA_ERROR;
		}
	}
	SSL_free(c);
	t = cpu_now();
	tls_conn_free(s);
	*server_s += cpu_now() - t;
	ERR_clear_error();
	return rc;
}

static int
keygen(const char *group, long n)
{
	double t = cpu_now();

	if (n <= 0) {
		fprintf(stderr, "bench-tls-filter: --keygen needs a positive count\n");
		return 2;
	}
	for (long i = 0; i < n; i++) {
		EVP_PKEY *k = strcmp(group, "X25519") == 0
		                  ? EVP_PKEY_Q_keygen(NULL, NULL, "X25519")
		                  : EVP_PKEY_Q_keygen(NULL, NULL, "EC", group);

		if (k == NULL) {
			fprintf(stderr, "bench-tls-filter: EVP_PKEY_Q_keygen(%s) failed\n", group);
			return 1;
		}
		EVP_PKEY_free(k);
	}
	t = cpu_now() - t;
	printf("keygen %s %ld cpu %.3f s: %.0f per CPU second, %.1f us each\n", group, n, t,
	       (double)n / t, t * 1e6 / (double)n);
	return 0;
}

int
main(int argc, char **argv)
{
	struct tls_settings st = {.ciphers = "", .ciphersuites = ""};
	struct tls_shared *shared;
	struct tls_ctx *ctx;
	SSL_CTX *cctx;
	char err[TLS_ERR_MAX];
	double server_s = 0;
	long n = argc > 3 ? atol(argv[3]) : 5000;

	if (argc >= 3 && strcmp(argv[1], "--keygen") == 0)
		return keygen(argv[2], argc > 3 ? atol(argv[3]) : 20000);
	if (argc < 3 || n <= 0) {
		fprintf(stderr, "usage: bench-tls-filter CERT KEY [HANDSHAKES]\n"
		                "       bench-tls-filter --keygen X25519|P-256 [KEYS]\n");
		return 2;
	}
	st.certs = argv[1];
	st.keys = argv[2];
	if (tls_shared_new(&shared, err, sizeof(err)) != PA_OK ||
	    tls_ctx_new(&ctx, shared, &st, err, sizeof(err)) != PA_OK) {
		fprintf(stderr, "bench-tls-filter: %s\n", err);
		return 1;
	}
	cctx = SSL_CTX_new(TLS_client_method());
	if (cctx == NULL || SSL_CTX_set1_sigalgs_list(cctx, "ECDSA+SHA256") != 1) {
		fprintf(stderr, "bench-tls-filter: SSL_CTX_new(client) failed\n");
		return 1;
	}
	SSL_CTX_set_session_cache_mode(cctx, SSL_SESS_CACHE_OFF);
	for (long i = 0; i < n; i++)
		if (one(ctx, cctx, &server_s) != PA_OK)
			return 1;
	printf("server handshakes %ld cpu %.3f s: %.0f per CPU second, %.1f us each\n", n, server_s,
	       (double)n / server_s, server_s * 1e6 / (double)n);
	SSL_CTX_free(cctx);
	tls_ctx_free(ctx);
	tls_shared_free(shared);
	return 0;
}
