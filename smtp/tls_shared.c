/*
 * tls_shared.c: the one TLS object all workers share.
 *
 * It holds the BIO method (created once) and the session-ticket keys: a
 * ticket issued by one worker decrypts on any other, so a client whose
 * reconnect the kernel (or RSS) steers to another core still resumes.  The
 * keys come from OpenSSL's CSPRNG and live in memory only: tickets do not
 * survive a restart.  They rotate (tls_shared_rotate(), every
 * tls.ticket_lifetime) so that a key that leaked, or was recovered from a
 * memory image, opens only the tickets of the last two lifetimes, which is
 * the forward secrecy resumed sessions get.
 */
#include <stdlib.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "core/pa.h"
#include "smtp/tls_private.h"

/* Fills the slot of generation gen; readers skip the slot until it is complete. */
static int
make_key(struct tls_shared *sh, uint64_t gen, char *err, size_t errlen)
{
	struct tls_ticket_key *k = &sh->keys[gen % TLS_TICKET_SLOTS];

	__atomic_store_n(&k->gen, 0, __ATOMIC_RELAXED);
	/* The 0 is visible before any octet of the new key (readers re-check gen). */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	if (RAND_bytes(k->name, sizeof(k->name)) != 1 || RAND_bytes(k->aes, sizeof(k->aes)) != 1 ||
	    RAND_bytes(k->hmac, sizeof(k->hmac)) != 1) {
		tls_error(err, errlen, "RAND_bytes(ticket key)");
		return PA_ERROR;
	}
	__atomic_store_n(&k->gen, gen, __ATOMIC_RELEASE);
	return PA_OK;
}

int
tls_shared_new(struct tls_shared **out, char *err, size_t errlen)
{
	struct tls_shared *sh = OPENSSL_zalloc(sizeof(*sh));

	*out = NULL;
	if (sh == NULL) {
		tls_error(err, errlen, "OPENSSL_zalloc(tls_shared)");
		return PA_ERROR;
	}
	if (make_key(sh, 1, err, errlen) != PA_OK)
		goto fail;
	sh->ticket_gen = 1;
	sh->ticket_cipher = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
	if (sh->ticket_cipher == NULL) {
		tls_error(err, errlen, "EVP_CIPHER_fetch(AES-256-CBC)");
		goto fail;
	}
	sh->bio_method = tls_io_method_new();
	if (sh->bio_method == NULL) {
		tls_error(err, errlen, "BIO_meth_new");
		goto fail;
	}
	*out = sh;
	return PA_OK;
fail:
	tls_shared_free(sh);
	return PA_ERROR;
}

int
tls_shared_rotate(struct tls_shared *sh, char *err, size_t errlen)
{
	uint64_t next = __atomic_load_n(&sh->ticket_gen, __ATOMIC_RELAXED) + 1;

	/*
	 * The slot written is neither the current nor the previous key's, so a
	 * failure here leaves both usable; a worker sees the new generation only
	 * once its key is complete.
	 */
	if (make_key(sh, next, err, errlen) != PA_OK)
		return PA_ERROR;
	__atomic_store_n(&sh->ticket_gen, next, __ATOMIC_RELEASE);
	return PA_OK;
}

uint64_t
tls_shared_generation(const struct tls_shared *sh)
{
	return __atomic_load_n(&sh->ticket_gen, __ATOMIC_ACQUIRE);
}

void
tls_shared_free(struct tls_shared *sh)
{
	if (sh == NULL)
		return;
	BIO_meth_free(sh->bio_method);
	EVP_CIPHER_free(sh->ticket_cipher);
	OPENSSL_clear_free(sh, sizeof(*sh));
}
