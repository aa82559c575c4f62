/*
 * test_tls_filter.c: the TLS filter (smtp/tls.h) against an OpenSSL client,
 * in memory.
 *
 * The server side is pigeond's: struct tls_conn over its byte queues; the
 * client is a plain OpenSSL client on memory BIOs; the test shuttles the
 * bytes.  Certificates (ECDSA P-256 and RSA 2048, self-signed) are made at
 * start in a temporary directory.  What is checked: TLS 1.2 and 1.3
 * handshakes and data both ways; the certificate follows the client's
 * signature algorithms; a session ticket from one worker's context resumes
 * on another's (the shared keys); a ticket still resumes after one rotation
 * of the ticket keys and no longer after two; garbage fails the handshake with a message
 * and leaves OpenSSL's error queue empty; a key that does not match its
 * certificate is refused naming the file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "core/pa.h"
#include "smtp/tls.h"

struct fixture {
	char dir[64];
	char ec_cert[128], ec_key[128], rsa_cert[128], rsa_key[128];
	struct tls_shared *shared;
};

static void
write_pair(EVP_PKEY *pkey, const char *cert_path, const char *key_path)
{
	X509 *x = X509_new();
	FILE *f;

	assert_non_null(pkey);
	assert_non_null(x);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, pkey);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	                           (const unsigned char *)"localhost", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	assert_true(X509_sign(x, pkey, EVP_sha256()) > 0);
	f = fopen(cert_path, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_X509(f, x), 1);
	fclose(f);
	f = fopen(key_path, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL), 1);
	fclose(f);
	X509_free(x);
	EVP_PKEY_free(pkey);
}

static int
setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	char err[TLS_ERR_MAX];

	assert_non_null(fx);
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/pa-tls-test.XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	snprintf(fx->ec_cert, sizeof(fx->ec_cert), "%s/ec.pem", fx->dir);
	snprintf(fx->ec_key, sizeof(fx->ec_key), "%s/ec.key", fx->dir);
	snprintf(fx->rsa_cert, sizeof(fx->rsa_cert), "%s/rsa.pem", fx->dir);
	snprintf(fx->rsa_key, sizeof(fx->rsa_key), "%s/rsa.key", fx->dir);
	write_pair(EVP_EC_gen("P-256"), fx->ec_cert, fx->ec_key);
	write_pair(EVP_RSA_gen(2048), fx->rsa_cert, fx->rsa_key);
	assert_int_equal(tls_shared_new(&fx->shared, err, sizeof(err)), PA_OK);
	*state = fx;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *fx = *state;

	tls_shared_free(fx->shared);
	unlink(fx->ec_cert);
	unlink(fx->ec_key);
	unlink(fx->rsa_cert);
	unlink(fx->rsa_key);
	rmdir(fx->dir);
	free(fx);
	return 0;
}

static struct tls_ctx *
server_ctx(struct fixture *fx, const char *certs, const char *keys)
{
	struct tls_settings st = {.certs = certs, .keys = keys, .ciphers = "", .ciphersuites = ""};
	struct tls_ctx *ctx;
	char err[TLS_ERR_MAX];

	if (tls_ctx_new(&ctx, fx->shared, &st, err, sizeof(err)) != PA_OK)
		fail_msg("tls_ctx_new: %s", err);
	return ctx;
}

static struct tls_ctx *
both_ctx(struct fixture *fx)
{
	char certs[300], keys[300];

	snprintf(certs, sizeof(certs), "%s, %s", fx->ec_cert, fx->rsa_cert);
	snprintf(keys, sizeof(keys), "%s, %s", fx->ec_key, fx->rsa_key);
	return server_ctx(fx, certs, keys);
}

/* An OpenSSL client on memory BIOs: what it writes is in `out`, what it reads from `in`. */
struct client {
	SSL_CTX *ctx;
	SSL *ssl;
	BIO *in, *out;
};

static void
client_new(struct client *c, int version, const char *sigalgs, SSL_SESSION *resume)
{
	c->ctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(c->ctx);
	assert_int_equal(SSL_CTX_set_min_proto_version(c->ctx, version), 1);
	assert_int_equal(SSL_CTX_set_max_proto_version(c->ctx, version), 1);
	if (sigalgs != NULL)
		assert_int_equal(SSL_CTX_set1_sigalgs_list(c->ctx, sigalgs), 1);
	c->ssl = SSL_new(c->ctx);
	c->in = BIO_new(BIO_s_mem());
	c->out = BIO_new(BIO_s_mem());
	SSL_set_bio(c->ssl, c->in, c->out);
	SSL_set_connect_state(c->ssl);
	if (resume != NULL)
		assert_int_equal(SSL_set_session(c->ssl, resume), 1);
}

static void
client_free(struct client *c)
{
	SSL_free(c->ssl);
	SSL_CTX_free(c->ctx);
}

/* Moves every byte each side has for the other, until neither has any. */
static void
shuttle(struct client *c, struct tls_conn *s)
{
	for (int round = 0; round < 100; round++) {
		char buf[16384];
		size_t n;
		const uint8_t *p = tls_conn_tx(s, &n);
		int got;
		bool moved = false;

		if (n > 0) {
			assert_int_equal(BIO_write(c->in, p, (int)n), (int)n);
			tls_conn_tx_consumed(s, n);
			moved = true;
		}
		while ((got = BIO_read(c->out, buf, sizeof(buf))) > 0) {
			assert_int_equal(tls_conn_rx(s, (const uint8_t *)buf, (size_t)got),
			                 (size_t)got);
			moved = true;
		}
		if (!moved)
			return;
	}
	fail_msg("shuttle: no end");
}

/* Runs both handshakes to the end; returns the server side. */
static struct tls_conn *
handshake(struct tls_ctx *ctx, struct client *c)
{
	struct tls_conn *s = tls_conn_new(ctx);
	char err[TLS_ERR_MAX];
	int rc = PA_AGAIN;

	assert_non_null(s);
	for (int i = 0; i < 10 && (rc != PA_OK || SSL_is_init_finished(c->ssl) != 1); i++) {
		(void)SSL_do_handshake(c->ssl);
		shuttle(c, s);
		rc = tls_conn_handshake(s, err, sizeof(err));
		if (rc == PA_ERROR)
			fail_msg("server handshake: %s", err);
		shuttle(c, s);
	}
	assert_int_equal(rc, PA_OK);
	assert_int_equal(SSL_is_init_finished(c->ssl), 1);
	assert_true(tls_conn_established(s));
	return s;
}

/* A line each way, and the client gets the session ticket the server sent. */
static void
exchange(struct client *c, struct tls_conn *s)
{
	char err[TLS_ERR_MAX], buf[64];
	const uint8_t *p;
	size_t n;

	assert_int_equal(SSL_write(c->ssl, "EHLO x\r\n", 8), 8);
	shuttle(c, s);
	assert_int_equal(tls_conn_plain_in(s, &p, &n, err, sizeof(err)), PA_OK);
	assert_int_equal(n, 8);
	assert_memory_equal(p, "EHLO x\r\n", 8);
	tls_conn_plain_consumed(s, n);
	assert_int_equal(tls_conn_plain_in(s, &p, &n, err, sizeof(err)), PA_AGAIN);
	assert_false(tls_conn_rx_pending(s));
	assert_int_equal(tls_conn_write(s, (const uint8_t *)"250 ok\r\n", 8, err, sizeof(err)), 8);
	shuttle(c, s);
	assert_int_equal(SSL_read(c->ssl, buf, sizeof(buf)), 8);
	assert_memory_equal(buf, "250 ok\r\n", 8);
	ERR_clear_error();
}

static void
test_tls13_and_tls12(void **state)
{
	struct fixture *fx = *state;
	struct tls_ctx *ctx = both_ctx(fx);
	static const int versions[] = {TLS1_3_VERSION, TLS1_2_VERSION};

	for (size_t i = 0; i < pa_array_size(versions); i++) {
		struct client c;
		struct tls_conn *s;

		client_new(&c, versions[i], NULL, NULL);
		s = handshake(ctx, &c);
		assert_string_equal(tls_conn_version(s),
		                    versions[i] == TLS1_3_VERSION ? "TLSv1.3" : "TLSv1.2");
		assert_non_null(tls_conn_cipher(s));
		assert_false(tls_conn_resumed(s));
		exchange(&c, s);
		tls_conn_shutdown(s);
		shuttle(&c, s);
		tls_conn_free(s);
		client_free(&c);
	}
	tls_ctx_free(ctx);
}

static void
test_certificate_follows_sigalgs(void **state)
{
	struct fixture *fx = *state;
	struct tls_ctx *ctx = both_ctx(fx);
	static const struct {
		const char *sigalgs;
		int type;
	} cases[] = {{"ECDSA+SHA256", EVP_PKEY_EC}, {"rsa_pss_rsae_sha256", EVP_PKEY_RSA}};

	for (size_t i = 0; i < pa_array_size(cases); i++) {
		struct client c;
		struct tls_conn *s;
		EVP_PKEY *pk;

		client_new(&c, TLS1_3_VERSION, cases[i].sigalgs, NULL);
		s = handshake(ctx, &c);
		pk = X509_get0_pubkey(SSL_get0_peer_certificate(c.ssl));
		assert_non_null(pk);
		assert_int_equal(EVP_PKEY_get_base_id(pk), cases[i].type);
		tls_conn_free(s);
		client_free(&c);
	}
	tls_ctx_free(ctx);
}

/* The ticket from worker A's context resumes on worker B's: the keys are shared. */
static void
test_ticket_resumes_on_another_worker(void **state)
{
	struct fixture *fx = *state;
	struct tls_ctx *a = server_ctx(fx, fx->ec_cert, fx->ec_key);
	struct tls_ctx *b = server_ctx(fx, fx->ec_cert, fx->ec_key);
	static const int versions[] = {TLS1_3_VERSION, TLS1_2_VERSION};

	for (size_t i = 0; i < pa_array_size(versions); i++) {
		struct client c1, c2;
		struct tls_conn *s1, *s2;
		SSL_SESSION *sess;

		client_new(&c1, versions[i], NULL, NULL);
		s1 = handshake(a, &c1);
		exchange(&c1, s1); /* TLS 1.3: the ticket arrives after the handshake */
		sess = SSL_get1_session(c1.ssl);
		assert_non_null(sess);
		assert_int_equal(SSL_SESSION_is_resumable(sess), 1);

		client_new(&c2, versions[i], NULL, sess);
		s2 = handshake(b, &c2);
		assert_true(tls_conn_resumed(s2));
		assert_int_equal(SSL_session_reused(c2.ssl), 1);
		exchange(&c2, s2);

		SSL_SESSION_free(sess);
		tls_conn_free(s1);
		tls_conn_free(s2);
		client_free(&c1);
		client_free(&c2);
	}
	tls_ctx_free(a);
	tls_ctx_free(b);
}

/* A fresh client offering `sess`: whether it was resumed; *next: the session it ends with. */
static bool
resumes(struct tls_ctx *ctx, int version, SSL_SESSION *sess, SSL_SESSION **next)
{
	struct client c;
	struct tls_conn *s;
	bool resumed;

	client_new(&c, version, NULL, sess);
	s = handshake(ctx, &c);
	resumed = tls_conn_resumed(s);
	assert_int_equal(SSL_session_reused(c.ssl), resumed ? 1 : 0);
	exchange(&c, s); /* TLS 1.3: the new ticket arrives after the handshake */
	if (next != NULL) {
		*next = SSL_get1_session(c.ssl);
		assert_non_null(*next);
		assert_int_equal(SSL_SESSION_is_resumable(*next), 1);
	}
	/* A client freed without close_notify marks its session not resumable. */
	(void)SSL_shutdown(c.ssl);
	tls_conn_free(s);
	client_free(&c);
	return resumed;
}

/*
 * Rotation: a ticket sealed with the previous key still resumes (and the
 * client gets a new one under the current key); two rotations on, its key is
 * gone and the client gets a full handshake.  The session timeout is
 * OpenSSL's default (2 hours): only the keys decide here.
 */
static void
test_ticket_key_rotation(void **state)
{
	struct fixture *fx = *state;
	struct tls_ctx *ctx = server_ctx(fx, fx->ec_cert, fx->ec_key);
	static const int versions[] = {TLS1_3_VERSION, TLS1_2_VERSION};
	char err[TLS_ERR_MAX];

	for (size_t i = 0; i < pa_array_size(versions); i++) {
		SSL_SESSION *first, *renewed, *again;
		uint64_t gen = tls_shared_generation(fx->shared);

		assert_false(resumes(ctx, versions[i], NULL, &first));
		assert_true(resumes(ctx, versions[i], first, NULL)); /* the current key */

		assert_int_equal(tls_shared_rotate(fx->shared, err, sizeof(err)), PA_OK);
		assert_int_equal(tls_shared_generation(fx->shared), gen + 1);
		assert_true(resumes(ctx, versions[i], first, &renewed)); /* the previous key */

		assert_int_equal(tls_shared_rotate(fx->shared, err, sizeof(err)), PA_OK);
		assert_false(resumes(ctx, versions[i], first, &again)); /* two rotations: gone */
		assert_true(resumes(ctx, versions[i], renewed, NULL)); /* sealed one rotation ago */
		assert_true(resumes(ctx, versions[i], again, NULL));   /* the full handshake's */

		SSL_SESSION_free(first);
		SSL_SESSION_free(renewed);
		SSL_SESSION_free(again);
	}
	tls_ctx_free(ctx);
}

static void
test_garbage_fails_cleanly(void **state)
{
	struct fixture *fx = *state;
	struct tls_ctx *ctx = both_ctx(fx);
	static const uint8_t garbage[] = "RSET\r\nMAIL FROM:<mallory@example.org>\r\n";
	struct tls_conn *s = tls_conn_new(ctx);
	char err[TLS_ERR_MAX] = "";
	size_t n;

	assert_non_null(s);
	assert_int_equal(tls_conn_rx(s, garbage, sizeof(garbage) - 1), sizeof(garbage) - 1);
	assert_int_equal(tls_conn_handshake(s, err, sizeof(err)), PA_ERROR);
	assert_non_null(strstr(err, "SSL_do_handshake failed: "));
	assert_int_equal(ERR_peek_error(), 0);
	(void)tls_conn_tx(s, &n); /* an alert, or nothing: either is fine */
	tls_conn_free(s);
	tls_ctx_free(ctx);
}

/* A partial ClientHello waits for more; the rx queue takes no more than its bound. */
static void
test_partial_and_bounded_input(void **state)
{
	struct fixture *fx = *state;
	struct tls_ctx *ctx = both_ctx(fx);
	struct tls_conn *s = tls_conn_new(ctx);
	struct client c;
	char err[TLS_ERR_MAX], hello[4096];
	static uint8_t big[TLS_RX_MAX + 100];
	int n;

	client_new(&c, TLS1_3_VERSION, NULL, NULL);
	(void)SSL_do_handshake(c.ssl);
	n = BIO_read(c.out, hello, sizeof(hello));
	assert_true(n > 20);
	assert_int_equal(tls_conn_rx(s, (const uint8_t *)hello, 20), 20);
	assert_int_equal(tls_conn_handshake(s, err, sizeof(err)), PA_AGAIN);
	tls_conn_free(s);

	s = tls_conn_new(ctx);
	assert_int_equal(tls_conn_rx(s, big, sizeof(big)), TLS_RX_MAX);
	assert_int_equal(tls_conn_rx(s, big, 1), 0);
	tls_conn_free(s);
	client_free(&c);
	tls_ctx_free(ctx);
	ERR_clear_error();
}

static void
test_bad_pairs_refused(void **state)
{
	struct fixture *fx = *state;
	struct tls_settings st = {.ciphers = "", .ciphersuites = ""};
	struct tls_ctx *ctx;
	char err[TLS_ERR_MAX];

	st.certs = fx->ec_cert;
	st.keys = fx->rsa_key; /* not this certificate's key */
	assert_int_equal(tls_ctx_new(&ctx, fx->shared, &st, err, sizeof(err)), PA_ERROR);
	assert_null(ctx);
	assert_non_null(strstr(err, fx->rsa_key));
	st.keys = "/nonexistent/key.pem";
	assert_int_equal(tls_ctx_new(&ctx, fx->shared, &st, err, sizeof(err)), PA_ERROR);
	assert_non_null(strstr(err, "/nonexistent/key.pem"));
	st.keys = "";
	assert_int_equal(tls_ctx_new(&ctx, fx->shared, &st, err, sizeof(err)), PA_ERROR);
	assert_int_equal(ERR_peek_error(), 0);
	assert_int_equal(tls_list_count(" a, b ,,c "), 3);
	assert_int_equal(tls_list_count(""), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_tls13_and_tls12),
	    cmocka_unit_test(test_certificate_follows_sigalgs),
	    cmocka_unit_test(test_ticket_resumes_on_another_worker),
	    cmocka_unit_test(test_ticket_key_rotation),
	    cmocka_unit_test(test_garbage_fails_cleanly),
	    cmocka_unit_test(test_partial_and_bounded_input),
	    cmocka_unit_test(test_bad_pairs_refused),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
