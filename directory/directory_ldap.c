/*
 * directory_ldap.c: the directory.ldap.* source, one full search per load.
 *
 * Simple bind (anonymous when no bind DN), then a subtree search of the base
 * with the configured filter, paged with the RFC 2696 control so that a
 * directory far larger than the server's size limit loads whole.  Per entry:
 * the first value of the mail attribute is the mailbox (the canonical
 * address), its other values and every value of the alias attribute are
 * aliases of it, the first value of the host attribute is its store; a mail
 * value "@domain" makes that domain catch-all.  A value that is not an
 * address is counted and skipped (one bad entry must not take the whole
 * directory down); a network or protocol error fails the load, and the
 * caller keeps its previous snapshot.  Blocking by nature: refresh thread only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <lber.h>
#include <ldap.h>

#include "core/pa.h"
#include "directory/directory.h"

#define PAGE_SIZE 500
#define NETWORK_TIMEOUT_S 5
#define OPERATION_TIMEOUT_S 60
#define PASSWORD_MAX 1024

struct entry_ctx {
	struct dir_builder *b;
	size_t *skipped;
	char first_skip[256]; /* the first skipped value's reason, for the error log */
};

static int
read_password(const char *path, struct berval *cred, char *buf, size_t buflen, char *err,
              size_t errlen)
{
	FILE *f;
	size_t n;

	cred->bv_val = NULL;
	cred->bv_len = 0;
	if (path == NULL || path[0] == '\0')
		return PA_OK;
	f = fopen(path, "re");
	if (f == NULL) {
		snprintf(err, errlen, "fopen(%s) failed: %s", path, strerror(errno));
		return PA_ERROR;
	}
	n = fread(buf, 1, buflen - 1, f);
	if (ferror(f)) {
		snprintf(err, errlen, "fread(%s) failed", path);
		fclose(f);
		return PA_ERROR;
	}
	fclose(f);
	/* The file holds the password and perhaps a final newline, nothing else. */
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	buf[n] = '\0';
	cred->bv_val = buf;
	cred->bv_len = n;
	return PA_OK;
}

static void
skip(struct entry_ctx *ctx, const char *dn, const char *why)
{
	if (*ctx->skipped == 0)
		snprintf(ctx->first_skip, sizeof(ctx->first_skip), "%.100s: %.150s", dn ? dn : "?",
		         why);
	(*ctx->skipped)++;
}

/* A bad store value must not cost the user its mailbox: then it is added without one. */
static int
add_mailbox(struct entry_ctx *ctx, const char *dn, const struct berval *mail,
            const struct berval *host)
{
	char why[512];

	if (dir_builder_add_mailbox(ctx->b, mail->bv_val, mail->bv_len, host ? host->bv_val : NULL,
	                            host ? host->bv_len : 0, why, sizeof(why)) == PA_OK)
		return PA_OK;
	if (host == NULL || dir_builder_add_mailbox(ctx->b, mail->bv_val, mail->bv_len, NULL, 0,
	                                            why, sizeof(why)) != PA_OK) {
		skip(ctx, dn, why);
		return PA_ERROR;
	}
	skip(ctx, dn, "store value ignored");
	return PA_OK;
}

static void
add_entry(LDAP *ld, LDAPMessage *e, const struct directory_config *cfg, struct entry_ctx *ctx)
{
	struct berval **mail = ldap_get_values_len(ld, e, cfg->ldap_mail_attr);
	struct berval **alias = NULL, **host = NULL;
	const struct berval *canonical = NULL;
	char *dn = ldap_get_dn(ld, e);
	char why[512];

	if (cfg->ldap_alias_attr != NULL && cfg->ldap_alias_attr[0] != '\0')
		alias = ldap_get_values_len(ld, e, cfg->ldap_alias_attr);
	if (cfg->ldap_host_attr != NULL && cfg->ldap_host_attr[0] != '\0')
		host = ldap_get_values_len(ld, e, cfg->ldap_host_attr);

	for (size_t i = 0; mail != NULL && mail[i] != NULL; i++) {
		const struct berval *v = mail[i];

		if (v->bv_len > 0 && v->bv_val[0] == '@') {
			if (dir_builder_add_catch_all(ctx->b, v->bv_val + 1, v->bv_len - 1, why,
			                              sizeof(why)) != PA_OK)
				skip(ctx, dn, why);
		} else if (canonical == NULL) {
			if (add_mailbox(ctx, dn, v, host ? host[0] : NULL) == PA_OK)
				canonical = v;
		} else if (dir_builder_add_alias(ctx->b, v->bv_val, v->bv_len, canonical->bv_val,
		                                 canonical->bv_len, why, sizeof(why)) != PA_OK) {
			skip(ctx, dn, why);
		}
	}
	for (size_t i = 0; alias != NULL && alias[i] != NULL; i++) {
		if (canonical == NULL) {
			skip(ctx, dn, "aliases but no mailbox address");
			break;
		}
		if (dir_builder_add_alias(ctx->b, alias[i]->bv_val, alias[i]->bv_len,
		                          canonical->bv_val, canonical->bv_len, why,
		                          sizeof(why)) != PA_OK)
			skip(ctx, dn, why);
	}
	ldap_value_free_len(mail);
	ldap_value_free_len(alias);
	ldap_value_free_len(host);
	ldap_memfree(dn);
}

static int
connect_and_bind(LDAP **out, const struct directory_config *cfg, char *err, size_t errlen)
{
	struct timeval net = {NETWORK_TIMEOUT_S, 0}, op = {OPERATION_TIMEOUT_S, 0};
	int version = LDAP_VERSION3, rc;
	char password[PASSWORD_MAX];
	struct berval cred;
	LDAP *ld;

	if (read_password(cfg->ldap_bind_password_file, &cred, password, sizeof(password), err,
	                  errlen) != PA_OK)
		return PA_ERROR;
	rc = ldap_initialize(&ld, cfg->ldap_uri);
	if (rc != LDAP_SUCCESS) {
		snprintf(err, errlen, "ldap_initialize(%s) failed: %s", cfg->ldap_uri,
		         ldap_err2string(rc));
		explicit_bzero(password, sizeof(password));
		return PA_ERROR;
	}
	ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &version);
	ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &net);
	ldap_set_option(ld, LDAP_OPT_TIMEOUT, &op);
	ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
	rc = ldap_sasl_bind_s(ld,
	                      cfg->ldap_bind_dn && cfg->ldap_bind_dn[0] ? cfg->ldap_bind_dn : NULL,
	                      LDAP_SASL_SIMPLE, &cred, NULL, NULL, NULL);
	explicit_bzero(password, sizeof(password));
	if (rc != LDAP_SUCCESS) {
		snprintf(err, errlen, "ldap_sasl_bind_s(%s, %s) failed: %s", cfg->ldap_uri,
		         cfg->ldap_bind_dn && cfg->ldap_bind_dn[0] ? cfg->ldap_bind_dn
		                                                   : "anonymous",
		         ldap_err2string(rc));
		ldap_unbind_ext_s(ld, NULL, NULL);
		return PA_ERROR;
	}
	*out = ld;
	return PA_OK;
}

/* One page: its entries into the builder, the server's cookie for the next one into cookie. */
static int
search_page(LDAP *ld, const struct directory_config *cfg, struct entry_ctx *ctx,
            struct berval *cookie, char *err, size_t errlen)
{
	char *attrs[4] = {(char *)cfg->ldap_mail_attr, NULL, NULL, NULL};
	struct timeval op = {OPERATION_TIMEOUT_S, 0};
	LDAPControl *page = NULL, *ctrls[2] = {NULL, NULL}, **returned = NULL, *resp;
	LDAPMessage *res = NULL;
	char *errmsg = NULL;
	int rc, code = LDAP_SUCCESS, nattrs = 1;
	ber_int_t estimate;
	struct berval next = {0, NULL};

	if (cfg->ldap_alias_attr && cfg->ldap_alias_attr[0])
		attrs[nattrs++] = (char *)cfg->ldap_alias_attr;
	if (cfg->ldap_host_attr && cfg->ldap_host_attr[0])
		attrs[nattrs++] = (char *)cfg->ldap_host_attr;
	rc = ldap_create_page_control(ld, PAGE_SIZE, cookie, 1, &page);
	if (rc != LDAP_SUCCESS) {
		snprintf(err, errlen, "ldap_create_page_control() failed: %s", ldap_err2string(rc));
		return PA_ERROR;
	}
	ctrls[0] = page;
	rc = ldap_search_ext_s(ld, cfg->ldap_base, LDAP_SCOPE_SUBTREE, cfg->ldap_filter, attrs, 0,
	                       ctrls, NULL, &op, LDAP_NO_LIMIT, &res);
	ldap_control_free(page);
	if (rc != LDAP_SUCCESS) {
		snprintf(err, errlen, "ldap_search_ext_s(%s, %s) failed: %s", cfg->ldap_base,
		         cfg->ldap_filter, ldap_err2string(rc));
		ldap_msgfree(res);
		return PA_ERROR;
	}
	for (LDAPMessage *e = ldap_first_entry(ld, res); e != NULL; e = ldap_next_entry(ld, e))
		add_entry(ld, e, cfg, ctx);
	rc = ldap_parse_result(ld, res, &code, NULL, &errmsg, NULL, &returned, 0);
	ldap_msgfree(res);
	if (rc != LDAP_SUCCESS || code != LDAP_SUCCESS) {
		snprintf(err, errlen, "ldap_parse_result() failed: %s%s%s",
		         ldap_err2string(rc != LDAP_SUCCESS ? rc : code), errmsg ? ": " : "",
		         errmsg ? errmsg : "");
		ldap_memfree(errmsg);
		ldap_controls_free(returned);
		return PA_ERROR;
	}
	ldap_memfree(errmsg);
	resp = ldap_control_find(LDAP_CONTROL_PAGEDRESULTS, returned, NULL);
	if (resp == NULL) {
		/* The control was critical: a server that ignores it must not pass for done. */
		snprintf(err, errlen, "search of %s: no paged-results control in the reply",
		         cfg->ldap_base);
		ldap_controls_free(returned);
		return PA_ERROR;
	}
	rc = ldap_parse_pageresponse_control(ld, resp, &estimate, &next);
	ldap_controls_free(returned);
	if (rc != LDAP_SUCCESS) {
		snprintf(err, errlen, "ldap_parse_pageresponse_control() failed: %s",
		         ldap_err2string(rc));
		return PA_ERROR;
	}
	ber_memfree(cookie->bv_val);
	*cookie = next;
	return PA_OK;
}

int
directory_ldap_load(struct dir_builder *b, const struct directory_config *cfg, size_t *skipped,
                    char *err, size_t errlen)
{
	struct entry_ctx ctx = {.b = b, .skipped = skipped};
	struct berval cookie = {0, NULL};
	LDAP *ld;
	int rc = PA_OK;

	*skipped = 0;
	if (connect_and_bind(&ld, cfg, err, errlen) != PA_OK)
		return PA_ERROR;
	do {
		if (search_page(ld, cfg, &ctx, &cookie, err, errlen) != PA_OK) {
			rc = PA_ERROR;
			break;
		}
	} while (cookie.bv_val != NULL && cookie.bv_len > 0);
	ber_memfree(cookie.bv_val);
	ldap_unbind_ext_s(ld, NULL, NULL);
	if (rc == PA_OK && *skipped > 0)
		snprintf(err, errlen, "%zu value(s) skipped, first: %s", *skipped, ctx.first_skip);
	return rc;
}
