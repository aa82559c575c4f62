/*
 * tls_ctx.c: one worker's SSL_CTX, built from the shared settings.
 *
 * Each worker has its own SSL_CTX so that nothing OpenSSL updates per
 * handshake (statistics, reference counts) is written by two cores.  What
 * a context offers: TLS 1.2 and 1.3 (tls.min_version raises the floor),
 * every configured certificate/key pair (one RSA and one ECDSA give each
 * client the kind it supports), server cipher preference, no
 * renegotiation, no server-side session cache but stateless session tickets
 * sealed with the keys of struct tls_shared, so that any worker resumes them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "core/pa.h"
#include "smtp/tls_private.h"

#define SESSION_ID_CONTEXT "PigeonAir"

unsigned
tls_list_count(const char *list)
{
	unsigned n = 0;
	bool in_item = false;

	for (; list != NULL && *list != '\0'; list++) {
		if (*list == ',') {
			in_item = false;
		} else if (*list != ' ' && !in_item) {
			in_item = true;
			n++;
		}
	}
	return n;
}

/* The index'th entry of a comma-separated list, blanks trimmed; false if too long or absent. */
static bool
list_item(const char *list, unsigned index, char *out, size_t size)
{
	const char *p = list;

	for (unsigned i = 0; i < index; i++) {
		p = strchr(p, ',');
		if (p == NULL)
			return false;
		p++;
	}
	while (*p == ' ')
		p++;
	size_t len = strcspn(p, ",");

	while (len > 0 && p[len - 1] == ' ')
		len--;
	if (len == 0 || len >= size)
		return false;
	memcpy(out, p, len);
	out[len] = '\0';
	return true;
}

/*
 * Copies the key of generation gen, if its slot still holds it: the slot's
 * gen read again after the copy (a sequence lock) proves that no rotation
 * overwrote it meanwhile, which would need two rotations within one call.
 */
static bool
key_copy(const struct tls_shared *sh, uint64_t gen, struct tls_ticket_key *out)
{
	const struct tls_ticket_key *k = &sh->keys[gen % TLS_TICKET_SLOTS];

	if (gen == 0 || __atomic_load_n(&k->gen, __ATOMIC_ACQUIRE) != gen)
		return false;
	memcpy(out->name, k->name, sizeof(out->name));
	memcpy(out->aes, k->aes, sizeof(out->aes));
	memcpy(out->hmac, k->hmac, sizeof(out->hmac));
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	return __atomic_load_n(&k->gen, __ATOMIC_RELAXED) == gen;
}

/*
 * RFC 5077 4 ticket protection, OpenSSL 3 style: AES-256-CBC and
 * HMAC-SHA256 with the shared keys.  New tickets are sealed with the current
 * key; a ticket sealed with the previous one still resumes and is renewed
 * (2: the client gets a ticket under the current key); one under any other
 * name (older keys, an earlier process) is simply not resumed: the client
 * gets a full handshake.
 */
static int
ticket_key_cb(SSL *ssl, unsigned char key_name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
              EVP_MAC_CTX *hctx, int enc)
{
	const struct tls_shared *sh = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	uint64_t gen = tls_shared_generation(sh);
	struct tls_ticket_key k;
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac, sizeof(k.hmac)),
	    OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
	    OSSL_PARAM_construct_end(),
	};
	int ivlen = EVP_CIPHER_get_iv_length(sh->ticket_cipher);
	int rc;

	if (enc) {
		/* A rotation overwrote the slot meanwhile (never in practice): no ticket. */
		if (!key_copy(sh, gen, &k))
			return 0;
		memcpy(key_name, k.name, TLS_TICKET_NAME_LEN);
		rc = 1;
		if (RAND_bytes(iv, ivlen) != 1 ||
		    EVP_EncryptInit_ex(cctx, sh->ticket_cipher, NULL, k.aes, iv) != 1 ||
		    EVP_MAC_CTX_set_params(hctx, params) != 1)
			rc = -1;
	} else {
		if (key_copy(sh, gen, &k) && memcmp(key_name, k.name, TLS_TICKET_NAME_LEN) == 0)
			rc = 1;
		else if (key_copy(sh, gen - 1, &k) &&
		         memcmp(key_name, k.name, TLS_TICKET_NAME_LEN) == 0)
			rc = 2;
		else
			rc = 0;
		if (rc > 0 && (EVP_MAC_CTX_set_params(hctx, params) != 1 ||
		               EVP_DecryptInit_ex(cctx, sh->ticket_cipher, NULL, k.aes, iv) != 1))
			rc = -1;
	}
	/* The contexts keep their own copies: none of the key stays on this stack. */
	OPENSSL_cleanse(&k, sizeof(k));
	return rc;
}

static int
load_pairs(SSL_CTX *ctx, const struct tls_settings *st, char *err, size_t errlen)
{
	unsigned n = tls_list_count(st->certs);
	char cert[1024], key[1024], call[2200];

	if (n == 0 || n != tls_list_count(st->keys)) {
		snprintf(err, errlen, "tls.cert and tls.key must name as many files (%u and %u)", n,
		         tls_list_count(st->keys));
		return PA_ERROR;
	}
	for (unsigned i = 0; i < n; i++) {
		if (!list_item(st->certs, i, cert, sizeof(cert)) ||
		    !list_item(st->keys, i, key, sizeof(key))) {
			snprintf(err, errlen, "tls.cert/tls.key entry %u is empty or too long",
			         i + 1);
			return PA_ERROR;
		}
		snprintf(call, sizeof(call), "SSL_CTX_use_certificate_chain_file(%s)", cert);
		if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
			tls_error(err, errlen, call);
			return PA_ERROR;
		}
		snprintf(call, sizeof(call), "SSL_CTX_use_PrivateKey_file(%s)", key);
		if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
			tls_error(err, errlen, call);
			return PA_ERROR;
		}
		snprintf(call, sizeof(call), "SSL_CTX_check_private_key(%s, %s)", cert, key);
		if (SSL_CTX_check_private_key(ctx) != 1) {
			tls_error(err, errlen, call);
			return PA_ERROR;
		}
	}
	return PA_OK;
}

static int
configure(SSL_CTX *ctx, const struct tls_shared *sh, const struct tls_settings *st, char *err,
          size_t errlen)
{
	int min = st->min_version == TLS_MIN_1_3 ? TLS1_3_VERSION : TLS1_2_VERSION;

	if (SSL_CTX_set_min_proto_version(ctx, min) != 1) {
		tls_error(err, errlen, "SSL_CTX_set_min_proto_version");
		return PA_ERROR;
	}
	SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION |
	                             SSL_OP_NO_COMPRESSION);
	/*
	 * RELEASE_BUFFERS: an idle session gives back OpenSSL's 34 KiB of record
	 * buffers.  The write modes let the engine's output buffer move and be
	 * written in pieces.  NO_AUTO_CHAIN: the chain sent is the file's
	 * (leaf, then its intermediates), never one OpenSSL would build for each
	 * handshake by verifying the leaf against the context's (empty) store.
	 */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
	                          SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_NO_AUTO_CHAIN);
	if (st->ciphers[0] != '\0' && SSL_CTX_set_cipher_list(ctx, st->ciphers) != 1) {
		tls_error(err, errlen, "SSL_CTX_set_cipher_list(tls.ciphers)");
		return PA_ERROR;
	}
	if (st->ciphersuites[0] != '\0' && SSL_CTX_set_ciphersuites(ctx, st->ciphersuites) != 1) {
		tls_error(err, errlen, "SSL_CTX_set_ciphersuites(tls.ciphersuites)");
		return PA_ERROR;
	}
	if (load_pairs(ctx, st, err, errlen) != PA_OK)
		return PA_ERROR;
	/* Stateless resumption only: a per-worker cache could not resume on another core. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	/* A ticket's key opens it for up to two lifetimes (tls_shared_rotate()); no longer. */
	if (st->ticket_lifetime_s > 0)
		SSL_CTX_set_timeout(ctx, 2L * (long)st->ticket_lifetime_s);
	if (SSL_CTX_set_session_id_context(ctx, (const unsigned char *)SESSION_ID_CONTEXT,
	                                   sizeof(SESSION_ID_CONTEXT) - 1) != 1 ||
	    SSL_CTX_set_num_tickets(ctx, 1) != 1 ||
	    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_key_cb) != 1 ||
	    SSL_CTX_set_app_data(ctx, (void *)sh) != 1) {
		tls_error(err, errlen, "SSL_CTX_set_tlsext_ticket_key_evp_cb");
		return PA_ERROR;
	}
	return PA_OK;
}

int
tls_ctx_new(struct tls_ctx **out, const struct tls_shared *sh, const struct tls_settings *st,
            char *err, size_t errlen)
{
	struct tls_ctx *c = calloc(1, sizeof(*c));

	*out = NULL;
	if (c == NULL) {
		snprintf(err, errlen, "calloc(tls_ctx) failed: out of memory");
		return PA_ERROR;
	}
	c->shared = sh;
	c->ssl_ctx = SSL_CTX_new(TLS_server_method());
	if (c->ssl_ctx == NULL) {
		tls_error(err, errlen, "SSL_CTX_new");
		free(c);
		return PA_ERROR;
	}
	if (configure(c->ssl_ctx, sh, st, err, errlen) != PA_OK) {
		tls_ctx_free(c);
		return PA_ERROR;
	}
	*out = c;
	return PA_OK;
}

void
tls_ctx_free(struct tls_ctx *c)
{
	if (c == NULL)
		return;
	SSL_CTX_free(c->ssl_ctx);
	free(c);
}
