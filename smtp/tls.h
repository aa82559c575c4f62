/*
 * tls.h: the TLS filter between a transport and the SMTP engine (RFC 3207).
 *
 * Sans-I/O like the engine: the host hands it the ciphertext it received
 * (tls_conn_rx), takes the plaintext for the engine (tls_conn_plain_in),
 * hands it the engine's replies (tls_conn_write) and sends the ciphertext it
 * produced (tls_conn_tx).  No socket, no thread, no clock.  OpenSSL reads and
 * writes the connection's two byte queues through one custom BIO method.
 *
 * Objects and their sharing:
 *  - struct tls_shared: created once at start, shared by every worker: the
 *    BIO method and the session-ticket keys, so a client that reconnects to
 *    another worker still resumes its session; read-only but for the keys,
 *    which one thread rotates (tls_shared_rotate()) without stopping anyone;
 *  - struct tls_ctx: one per worker (its own SSL_CTX), built from the shared
 *    settings; never touched by another thread;
 *  - struct tls_conn: one per connection.
 *
 * What it promises: bounded memory per connection (the queues below, freed
 * while empty, and SSL_MODE_RELEASE_BUFFERS for OpenSSL's own); TLS 1.2 as
 * the lowest version; every OpenSSL error is turned into a message naming the
 * failed call and the reason, and the thread's error queue is left empty.
 */
#ifndef PA_TLS_H
#define PA_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Ciphertext a connection buffers before the engine takes it: one full record and more. */
#define TLS_RX_MAX (20 * 1024)
/* Ciphertext waiting to be sent before tls_conn_write() takes no more plaintext. */
#define TLS_TX_HIGH_WATER (32 * 1024)
#define TLS_ERR_MAX 256

enum tls_min_version {
	TLS_MIN_1_2,
	TLS_MIN_1_3,
};

struct tls_settings {
	const char *certs;        /* comma-separated PEM certificate chain files */
	const char *keys;         /* comma-separated PEM key files, paired with certs by position */
	const char *ciphers;      /* TLS 1.2 cipher list; "" keeps OpenSSL's default */
	const char *ciphersuites; /* TLS 1.3 suites; "" keeps OpenSSL's default */
	enum tls_min_version min_version;
	/*
	 * tls.ticket_lifetime: seconds a ticket key encrypts new tickets; it then
	 * decrypts for as long again, so a ticket resumes for up to twice this
	 * (the session timeout and the lifetime hint sent).  0: OpenSSL's default.
	 */
	unsigned ticket_lifetime_s;
};

struct tls_shared;
struct tls_ctx;
struct tls_conn;

/* Generates the first ticket key (RAND_bytes) and creates the BIO method. */
int tls_shared_new(struct tls_shared **out, char *err, size_t errlen);
void tls_shared_free(struct tls_shared *shared);

/*
 * A new session-ticket key (RAND_bytes, held in memory only) becomes the one
 * new tickets are sealed with; the one before it still opens tickets, older
 * ones no longer do (their clients make a full handshake).  Called by one
 * thread only, every tls.ticket_lifetime; workers keep handshaking meanwhile.
 * PA_ERROR (err set) leaves the keys as they were.
 */
int tls_shared_rotate(struct tls_shared *shared, char *err, size_t errlen);
/* The current key's generation: 1 at start, one more per rotation. */
uint64_t tls_shared_generation(const struct tls_shared *shared);

/*
 * One worker's context: loads every certificate/key pair (RSA and ECDSA may
 * both be given; OpenSSL picks per client), checks each key against its
 * certificate.  PA_ERROR with err naming the file and the reason.
 */
int tls_ctx_new(struct tls_ctx **out, const struct tls_shared *shared,
                const struct tls_settings *settings, char *err, size_t errlen);
void tls_ctx_free(struct tls_ctx *ctx);

/* Counts the comma-separated entries of a list ("" has none). */
unsigned tls_list_count(const char *list);

/* A server-side connection, before its handshake.  NULL when out of memory. */
struct tls_conn *tls_conn_new(struct tls_ctx *ctx);
void tls_conn_free(struct tls_conn *conn);

/* Takes received ciphertext, up to TLS_RX_MAX buffered; returns how many octets it took. */
size_t tls_conn_rx(struct tls_conn *conn, const uint8_t *in, size_t len);

/* Advances the handshake: PA_OK once done, PA_AGAIN for more input, PA_ERROR (err set). */
int tls_conn_handshake(struct tls_conn *conn, char *err, size_t errlen);
bool tls_conn_established(const struct tls_conn *conn);

/*
 * Decrypted input not yet taken: PA_OK with *len > 0, PA_AGAIN when a whole
 * record has not arrived, PA_ERROR when the stream is over (close_notify)
 * or broken (err set).
 */
int tls_conn_plain_in(struct tls_conn *conn, const uint8_t **p, size_t *len, char *err,
                      size_t errlen);
void tls_conn_plain_consumed(struct tls_conn *conn, size_t n);
/* Whether received octets wait, decrypted or not, for tls_conn_plain_in(). */
bool tls_conn_rx_pending(const struct tls_conn *conn);

/*
 * Encrypts plaintext (at most one record's worth per call); returns how many
 * octets it took or PA_ERROR (err set).  The caller bounds the ciphertext
 * queue: it writes no more while tls_conn_tx() holds TLS_TX_HIGH_WATER.
 */
long tls_conn_write(struct tls_conn *conn, const uint8_t *p, size_t len, char *err, size_t errlen);
/* Queues close_notify (once). */
void tls_conn_shutdown(struct tls_conn *conn);

/* Ciphertext to send; it stays until tls_conn_tx_consumed() (a TCP send buffer may hold it). */
const uint8_t *tls_conn_tx(const struct tls_conn *conn, size_t *len);
void tls_conn_tx_consumed(struct tls_conn *conn, size_t n);

/* After the handshake: static strings ("TLSv1.3", the cipher's OpenSSL name). */
const char *tls_conn_version(const struct tls_conn *conn);
const char *tls_conn_cipher(const struct tls_conn *conn);
bool tls_conn_resumed(const struct tls_conn *conn);

#endif
