/*
 * tls_private.h: what the files of the TLS filter share (internal to smtp/tls_*).
 *
 * tls_shared.c  the object every worker shares: BIO method, ticket keys
 * tls_ctx.c     one SSL_CTX per worker, the ticket-key callback
 * tls_io.c      the byte queues and the BIO method over them
 * tls_conn.c    one connection: handshake, records in and out
 * tls_error.c   OpenSSL's error queue as one message
 */
#ifndef PA_TLS_PRIVATE_H
#define PA_TLS_PRIVATE_H

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "core/buf.h"

#include "smtp/tls.h"

#define TLS_TICKET_NAME_LEN 16
#define TLS_TICKET_KEY_LEN 32
/*
 * Key slots, indexed by generation: the workers use the current and the
 * previous key, tls_shared_rotate() writes the next one.  Four, not three, so
 * that the slot being written is never one a worker that read the generation
 * a rotation ago may still be reading.
 */
#define TLS_TICKET_SLOTS 4

/* One ticket key; gen is 0 while the slot is being written (or never was). */
struct tls_ticket_key {
	uint64_t gen; /* atomic */
	unsigned char name[TLS_TICKET_NAME_LEN];
	unsigned char aes[TLS_TICKET_KEY_LEN];
	unsigned char hmac[TLS_TICKET_KEY_LEN];
};

/*
 * Shared by every worker without a lock.  Everything is read-only once
 * tls_shared_new() returned except the ticket keys, which one thread (the
 * main lcore) rotates: it fills the slot of generation ticket_gen + 1 and then
 * publishes ticket_gen; readers check a slot's gen again after copying its
 * key (a sequence lock), so a torn key is never used.
 */
struct tls_shared {
	BIO_METHOD *bio_method;
	EVP_CIPHER *ticket_cipher; /* AES-256-CBC, fetched once */
	uint64_t ticket_gen;       /* atomic: the current key's generation, from 1 */
	struct tls_ticket_key keys[TLS_TICKET_SLOTS];
};

struct tls_ctx {
	SSL_CTX *ssl_ctx;
	const struct tls_shared *shared;
};

/*
 * What the BIO reads from (rx) and writes to (tx): FIFOs of octets
 * (core/buf.h) whose memory exists only while they hold something.
 */
struct tls_io {
	struct pa_buf rx;
	struct pa_buf tx;
};

/* tls_io.c */
void tls_io_init(struct tls_io *io);
void tls_io_free(struct tls_io *io);
void tls_queue_consume(struct pa_buf *q, size_t n);
BIO_METHOD *tls_io_method_new(void);
BIO *tls_io_bio_new(const BIO_METHOD *method, struct tls_io *io);

/* tls_error.c: "CALL failed: reason" from the error queue, which it empties. */
void tls_error(char *err, size_t errlen, const char *call);

#endif
