/*
 * tls_shared.c: the one TLS object all workers share, read-only after start.
 *
 * It holds the BIO method (created once) and the session-ticket keys: a
 * ticket issued by one worker decrypts on any other, so a client whose
 * reconnect the kernel (or RSS) steers to another core still resumes.  The
 * keys are random per process start: tickets do not survive a restart.
 * Rotating them while running is a follow-up (docs/tls.md).
 */
#include <stdlib.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "core/pa.h"
#include "smtp/tls_private.h"

int
tls_shared_new(struct tls_shared **out, char *err, size_t errlen)
{
	struct tls_shared *sh = OPENSSL_zalloc(sizeof(*sh));

	*out = NULL;
	if (sh == NULL) {
		tls_error(err, errlen, "OPENSSL_zalloc(tls_shared)");
		return PA_ERROR;
	}
	if (RAND_bytes(sh->ticket_name, sizeof(sh->ticket_name)) != 1 ||
	    RAND_bytes(sh->ticket_aes, sizeof(sh->ticket_aes)) != 1 ||
	    RAND_bytes(sh->ticket_hmac, sizeof(sh->ticket_hmac)) != 1) {
		tls_error(err, errlen, "RAND_bytes(ticket keys)");
		goto fail;
	}
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

void
tls_shared_free(struct tls_shared *sh)
{
	if (sh == NULL)
		return;
	BIO_meth_free(sh->bio_method);
	EVP_CIPHER_free(sh->ticket_cipher);
	OPENSSL_clear_free(sh, sizeof(*sh));
}
