/*
 * fuzz_tls_filter.c: the TLS filter (smtp/tls_*.c): its BIO over the
 * connection's byte queues, its plaintext buffer, and OpenSSL behind them,
 * as pigeond's server side of STARTTLS.
 *
 * First octet, bit 0 clear: the rest is ciphertext from a hostile client,
 * cut into chunks (second octet picks the sizes), fed through tls_conn_rx()
 * with the handshake and reads driven as ingest_tls.c drives them.  This is
 * where the ClientHello parser and every early error path run.
 *
 * Bit 0 set: a real OpenSSL client first completes a handshake in memory
 * (TLS 1.3, or 1.2 with bit 1), so the fuzzer reaches the record layer of an
 * established session.  The rest is a list of operations [op][len][bytes]:
 * the client sends bytes as a record; raw bytes are injected into the
 * server's input; a client record is sent with one octet flipped; the client
 * closes.  The "engine" takes plaintext in pieces whose size the op octet
 * picks (the filter must keep the rest for later) and writes a reply for
 * everything it took.
 *
 * What must hold besides "no crash, no leak, OpenSSL's error queue left
 * empty by every filter call" (tls.h): as long as nothing was injected or flipped, the server
 * decrypts exactly what the client sent, in order; and after an injection the stream ends in an
 * error, never in plaintext the client did not send.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "core/pa.h"
#include "smtp/tls.h"

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

#define SENT_MAX (64 * 1024)

static struct tls_shared *shared;
static struct tls_ctx *server_ctx;
static SSL_CTX *client_ctx[2]; /* TLS 1.3, TLS 1.2 */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A throw-away ECDSA P-256 certificate: tls_ctx_new() reads PEM files. */
static void
make_cert(const char *cert_path, const char *key_path)
{
	EVP_PKEY *pkey = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	FILE *f;

	CHECK(pkey != NULL && x != NULL);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, pkey);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	                           (const unsigned char *)"localhost", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	CHECK(X509_sign(x, pkey, EVP_sha256()) > 0);
	f = fopen(cert_path, "w");
	CHECK(f != NULL && PEM_write_X509(f, x) == 1);
	fclose(f);
	f = fopen(key_path, "w");
	CHECK(f != NULL && PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL) == 1);
	fclose(f);
	X509_free(x);
	EVP_PKEY_free(pkey);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char dir[] = "/tmp/pa-fuzz-tls.XXXXXX", cert[64], key[64], err[TLS_ERR_MAX];
	struct tls_settings st = {.ciphers = "", .ciphersuites = "", .min_version = TLS_MIN_1_2};
	static const int versions[] = {TLS1_3_VERSION, TLS1_2_VERSION};

	(void)argc;
	(void)argv;
	CHECK(mkdtemp(dir) != NULL);
	snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
	snprintf(key, sizeof(key), "%s/key.pem", dir);
	make_cert(cert, key);
	st.certs = cert;
	st.keys = key;
	CHECK(tls_shared_new(&shared, err, sizeof(err)) == PA_OK);
	CHECK(tls_ctx_new(&server_ctx, shared, &st, err, sizeof(err)) == PA_OK);
	unlink(cert);
	unlink(key);
	rmdir(dir);
	for (int i = 0; i < 2; i++) {
		client_ctx[i] = SSL_CTX_new(TLS_client_method());
		CHECK(client_ctx[i] != NULL);
		SSL_CTX_set_min_proto_version(client_ctx[i], versions[i]);
		SSL_CTX_set_max_proto_version(client_ctx[i], versions[i]);
	}
	return 0;
}

struct session {
	struct tls_conn *s;
	SSL *client; /* NULL in raw mode */
	BIO *c_in, *c_out;
	uint8_t *got; /* plaintext the server decrypted */
	size_t got_len;
	size_t take; /* the engine takes at most this much plaintext per call */
	bool failed; /* the server said PA_ERROR: the host closes */
};

/* What ingest_tls.c does with received ciphertext: handshake, then records to the engine. */
static void
server_pump(struct session *ss)
{
	char err[TLS_ERR_MAX];
	const uint8_t *p;
	size_t n;
	int rc;

	if (ss->failed)
		return;
	/* Whatever is queued now is the in-process client's; the filter's calls add nothing. */
	ERR_clear_error();
	rc = tls_conn_handshake(ss->s, err, sizeof(err));
	CHECK(ERR_peek_error() == 0);
	if (rc == PA_ERROR) {
		CHECK(err[0] != '\0');
		ss->failed = true;
		return;
	}
	if (rc == PA_AGAIN)
		return;
	while ((rc = tls_conn_plain_in(ss->s, &p, &n, err, sizeof(err))) == PA_OK) {
		size_t k = n < ss->take ? n : ss->take;

		CHECK(n > 0 && ss->got_len + k <= SENT_MAX);
		memcpy(ss->got + ss->got_len, p, k);
		ss->got_len += k;
		tls_conn_plain_consumed(ss->s, k);
		/* A reply for what it took, as the engine would, below the high-water mark. */
		tls_conn_tx(ss->s, &n);
		if (n < TLS_TX_HIGH_WATER &&
		    tls_conn_write(ss->s, (const uint8_t *)"250 ok\r\n", 8, err, sizeof(err)) < 0) {
			CHECK(err[0] != '\0' && ERR_peek_error() == 0);
			ss->failed = true;
			return;
		}
	}
	CHECK(ERR_peek_error() == 0);
	if (rc == PA_ERROR) {
		CHECK(err[0] != '\0');
		ss->failed = true;
	}
}

/* Server ciphertext to the client, which reads (and drops) the replies. */
static void
to_client(struct session *ss)
{
	const uint8_t *p;
	size_t n;
	char buf[4096];

	p = tls_conn_tx(ss->s, &n);
	if (ss->client != NULL && n > 0)
		CHECK(BIO_write(ss->c_in, p, (int)n) == (int)n);
	tls_conn_tx_consumed(ss->s, n);
	if (ss->client != NULL)
		while (SSL_read(ss->client, buf, sizeof(buf)) > 0)
			;
	ERR_clear_error(); /* the client's errors are not the filter's */
}

/* Client ciphertext to the server; flip: index+1 of an octet to corrupt, 0 for none. */
static void
to_server(struct session *ss, size_t flip)
{
	uint8_t buf[4096];
	int got;

	while ((got = BIO_read(ss->c_out, buf, sizeof(buf))) > 0) {
		if (flip > 0 && flip <= (size_t)got)
			buf[flip - 1] ^= 0x55;
		flip = flip > (size_t)got ? flip - (size_t)got : 0;
		for (size_t off = 0; off < (size_t)got;) {
			size_t n = tls_conn_rx(ss->s, buf + off, (size_t)got - off);

			server_pump(ss);
			if (n == 0 && ss->failed)
				return;
			off += n;
		}
	}
}

static bool
handshake(struct session *ss, int version)
{
	ss->client = SSL_new(client_ctx[version]);
	ss->c_in = BIO_new(BIO_s_mem());
	ss->c_out = BIO_new(BIO_s_mem());
	CHECK(ss->client != NULL && ss->c_in != NULL && ss->c_out != NULL);
	SSL_set_bio(ss->client, ss->c_in, ss->c_out);
	SSL_set_connect_state(ss->client);
	for (int i = 0; i < 10 && !tls_conn_established(ss->s); i++) {
		(void)SSL_do_handshake(ss->client);
		to_server(ss, 0);
		server_pump(ss);
		to_client(ss);
		CHECK(!ss->failed);
	}
	(void)SSL_do_handshake(ss->client);
	to_server(ss, 0);
	to_client(ss);
	return tls_conn_established(ss->s) && SSL_is_init_finished(ss->client);
}

static void
run_ops(struct session *ss, const uint8_t *in, size_t len)
{
	static uint8_t sent[SENT_MAX];
	size_t sent_len = 0;
	bool tainted = false, closed = false;

	while (len >= 2 && !ss->failed) {
		uint8_t op = in[0];
		size_t n = in[1] < len - 2 ? in[1] : len - 2;
		const uint8_t *p = in + 2;

		in += 2 + n;
		len -= 2 + n;
		ss->take = 1u + (op >> 2);
		switch (op & 3) {
		case 0: /* a record from the client */
		case 2: /* the same with one octet flipped on the way */
			if (closed || n == 0 || sent_len + n > SENT_MAX)
				break;
			CHECK(SSL_write(ss->client, p, (int)n) == (int)n);
			if ((op & 3) == 0) {
				memcpy(sent + sent_len, p, n);
				sent_len += n;
			} else {
				tainted = true;
			}
			/* A 1-octet record is 23 octets or more: octets 1..22 are inside it. */
			to_server(ss, (op & 3) == 2 ? 1 + p[0] % 22u : 0);
			break;
		case 1: /* raw bytes, as an attacker on the path would inject them */
			tainted = tainted || n > 0;
			for (size_t off = 0; off < n && !ss->failed;) {
				size_t k = tls_conn_rx(ss->s, p + off, n - off);

				server_pump(ss);
				if (k == 0)
					break;
				off += k;
			}
			break;
		case 3:
			if (!closed)
				(void)SSL_shutdown(ss->client);
			closed = true;
			to_server(ss, 0);
			break;
		}
		server_pump(ss);
		to_client(ss);
	}
	/*
	 * Injected or flipped octets can only end the stream (no keys, AEAD):
	 * what got through is always a prefix of what the client sent, and
	 * without tampering all of it, with no error before the client closed.
	 */
	ss->take = SIZE_MAX;
	server_pump(ss);
	CHECK(ss->got_len <= sent_len && memcmp(ss->got, sent, ss->got_len) == 0);
	if (!tainted)
		CHECK(ss->got_len == sent_len && (!ss->failed || closed));
}

static void
run_raw(struct session *ss, uint8_t seed, const uint8_t *in, size_t len)
{
	uint32_t rng = seed;

	ss->take = 1u + seed;
	while (len > 0 && !ss->failed) {
		size_t n = len, k;

		if (seed != 0) {
			rng = rng * 1103515245u + 12345u;
			n = 1 + (rng >> 16) % 512u;
			n = n < len ? n : len;
		}
		k = tls_conn_rx(ss->s, in, n);
		server_pump(ss);
		to_client(ss);
		if (k == 0 && !ss->failed)
			break; /* the input queue is full and the server took nothing: stuck */
		in += k;
		len -= k;
	}
	CHECK(ss->failed || ss->got_len == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t got[SENT_MAX];
	struct session ss = {.got = got};

	if (size < 2)
		return 0;
	ss.s = tls_conn_new(server_ctx);
	CHECK(ss.s != NULL);
	if (data[0] & 1) {
		CHECK(handshake(&ss, (data[0] >> 1) & 1));
		run_ops(&ss, data + 1, size - 1);
	} else {
		run_raw(&ss, data[1], data + 2, size - 2);
	}
	ERR_clear_error();
	tls_conn_shutdown(ss.s);
	CHECK(ERR_peek_error() == 0);
	to_client(&ss);
	tls_conn_free(ss.s);
	SSL_free(ss.client);
	return 0;
}
