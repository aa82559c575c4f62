/*
 * smtp_command.c: the SMTP commands (RFC 5321 4.1.1, with RFC 1870, 2920,
 * 3030, 6152 and 6531), in the shape of OpenSMTPD's smtp_session.c.
 *
 * One static table maps each verb to the states where it is allowed (the
 * check) and to its handler (the action); a verb outside its states gets
 * 503 5.5.1 without its handler ever running, and so does, with 502 5.5.1, a
 * service extension's verb after HELO (RFC 5321 3.2).  Handlers get a NUL-terminated
 * argument with no CR, LF or NUL in it (smtp_command_line() refuses those
 * lines first) and reply exactly once, except where a 421 must follow.
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/pa.h"
#include "smtp/smtp_address.h"
#include "smtp/smtp_session_private.h"

#define COMMAND_STATES                                                                             \
	(SMTP_STATE_BIT(SMTP_STATE_CONNECTED) | SMTP_STATE_BIT(SMTP_STATE_GREETED) |               \
	 SMTP_STATE_BIT(SMTP_STATE_MAIL) | SMTP_STATE_BIT(SMTP_STATE_RCPT))
#define TXN_STATES (SMTP_STATE_BIT(SMTP_STATE_MAIL) | SMTP_STATE_BIT(SMTP_STATE_RCPT))

struct smtp_command {
	const char *verb;
	unsigned states; /* SMTP_STATE_BIT()s where the verb is allowed */
	bool extension;  /* a service extension's verb: not after HELO (RFC 5321 3.2) */
	void (*handler)(struct smtp_session *s, char *arg);
	/* Run instead of the plain refusal (not_now()): BDAT must skip its octets. */
	void (*refuse)(struct smtp_session *s, const struct smtp_command *cmd, char *arg);
};

/*
 * RFC 5321 3.2: a client that opened with HELO rather than EHLO was offered
 * no service extension, so it may use none: not their verbs, not their MAIL
 * or RCPT parameters.
 */
static bool
after_helo(const struct smtp_session *s)
{
	return s->helo != NULL && !s->esmtp;
}

static bool
allowed_now(const struct smtp_session *s, const struct smtp_command *cmd)
{
	return (cmd->states & SMTP_STATE_BIT(s->state)) && !(cmd->extension && after_helo(s));
}

/*
 * The refusal of a verb that may not run now: 502 for an extension after
 * HELO (RFC 5321 4.2.4: not implemented, for this session), else 503 out of
 * sequence (RFC 5321 4.1.4).
 */
static void
not_now(struct smtp_session *s, const struct smtp_command *cmd)
{
	const char *why = "need MAIL command";

	if (s->state != SMTP_STATE_CONNECTED && cmd->extension && after_helo(s)) {
		smtp_refusal(s, SMTP_REFUSAL_UNKNOWN_COMMAND, NULL,
		             "502 5.5.1 Error: %s is a service extension: send EHLO, not HELO",
		             cmd->verb);
		return;
	}
	if (s->state == SMTP_STATE_CONNECTED)
		why = "send HELO/EHLO first";
	else if (strcmp(cmd->verb, "MAIL") == 0)
		why = "nested MAIL command";
	smtp_refusal(s, SMTP_REFUSAL_SEQUENCE, NULL, "503 5.5.1 Error: %s", why);
}

static void
syntax_error(struct smtp_session *s, const char *usage)
{
	smtp_refusal(s, SMTP_REFUSAL_SYNTAX, NULL, "501 5.5.4 Syntax: %s", usage);
}

static void
out_of_memory(struct smtp_session *s)
{
	smtp_refusal(s, SMTP_REFUSAL_TEMPFAIL, NULL, "452 4.3.1 Insufficient system storage");
}

/* RFC 5321 4.1.1.1: a Domain or address-literal; we take one printable ASCII token. */
static bool
valid_helo(const char *arg)
{
	if (*arg == '\0')
		return false;
	for (; *arg != '\0'; arg++)
		if ((unsigned char)*arg < 0x21 || (unsigned char)*arg > 0x7e)
			return false;
	return true;
}

static void
ehlo_reply(struct smtp_session *s)
{
	const char *host = s->config->hostname;

	/*
	 * RFC 2034 3: no enhanced status code on the EHLO and HELO replies, whose
	 * lines must start with the extension keywords.
	 */
	if (!s->esmtp) {
		smtp_reply(s, "250 %.255s", host);
		return;
	}
	smtp_reply(s, "250-%.255s", host);
	SMTP_REPLY_LIT(s, "250-PIPELINING");                            /* RFC 2920 */
	smtp_reply(s, "250-SIZE %zu", s->config->max_message_size); /* RFC 1870 */
	SMTP_REPLY_LIT(s, "250-8BITMIME");                              /* RFC 6152 */
	SMTP_REPLY_LIT(s, "250-ENHANCEDSTATUSCODES");                   /* RFC 2034 */
	SMTP_REPLY_LIT(s, "250-SMTPUTF8");                              /* RFC 6531 */
	if (s->config->tls_available && s->tls_version == NULL)
		SMTP_REPLY_LIT(s, "250-STARTTLS"); /* RFC 3207; never again inside TLS */
	if (s->trusted) /* Postfix's XCLIENT_README: only to peers allowed to use it */
		SMTP_REPLY_LIT(s, "250-XCLIENT ADDR PORT HELO PROTO");
	SMTP_REPLY_LIT(s, "250 CHUNKING"); /* RFC 3030 */
}

/* RFC 5321 4.1.4: EHLO/HELO in the middle of a transaction acts as RSET. */
static void
greet(struct smtp_session *s, char *arg, bool esmtp)
{
	char *helo;

	if (!valid_helo(arg)) {
		syntax_error(s, esmtp ? "EHLO hostname" : "HELO hostname");
		return;
	}
	helo = strdup(arg);
	if (helo == NULL) {
		out_of_memory(s);
		return;
	}
	free(s->helo);
	s->helo = helo;
	s->esmtp = esmtp;
	smtp_txn_end(s);
	ehlo_reply(s);
}

static void
cmd_ehlo(struct smtp_session *s, char *arg)
{
	greet(s, arg, true);
}

static void
cmd_helo(struct smtp_session *s, char *arg)
{
	greet(s, arg, false);
}

/*
 * The reply for a MAIL or RCPT argument that does not parse.  `mailbox` is
 * the RFC 3463 code of the address kind: 5.1.7 for the sender, 5.1.3 for a
 * recipient.
 */
static void
address_error(struct smtp_session *s, enum smtp_addr_status status, const char *usage,
              const char *mailbox, const char *detail, const char *bad)
{
	enum smtp_refusal why = SMTP_REFUSAL_SYNTAX;

	switch (status) {
	case SMTP_ADDR_OK:
	case SMTP_ADDR_SYNTAX:
		smtp_refusal(s, why, detail, "501 5.5.4 Syntax: %s", usage);
		break;
	case SMTP_ADDR_BAD_MAILBOX:
		smtp_refusal(s, why, detail, "501 %s Bad address syntax", mailbox);
		break;
	case SMTP_ADDR_PATH_TOO_LONG: /* RFC 5321 4.5.3.1.9: "501 Path too long" */
		smtp_refusal(s, why, detail, "501 %s Path too long", mailbox);
		break;
	case SMTP_ADDR_LOCAL_TOO_LONG:
		smtp_refusal(s, why, detail, "501 %s Local part too long", mailbox);
		break;
	case SMTP_ADDR_NON_ASCII: /* RFC 6531: 553 5.6.7 */
		smtp_refusal(s, why, detail, "553 5.6.7 Non-ASCII address needs SMTPUTF8");
		break;
	case SMTP_ADDR_BAD_PARAM:
		smtp_refusal(s, why, detail, "501 5.5.4 Bad parameter: %.64s", bad);
		break;
	case SMTP_ADDR_UNKNOWN_PARAM: /* RFC 5321 4.1.1.11 */
		smtp_refusal(s, why, detail, "555 5.5.4 Unsupported option: %.64s", bad);
		break;
	}
}

/*
 * MAIL or RCPT parameters (SIZE=, BODY=, SMTPUTF8, ...) from a client that
 * said HELO: each belongs to a service extension it was never offered
 * (RFC 5321 3.2), so none is recognised: 555 (RFC 5321 4.1.1.11).  Returns
 * true when it refused.
 */
static bool
params_after_helo(struct smtp_session *s, const char *params, const char *path)
{
	size_t key = strcspn(params, "= ");

	if (!after_helo(s) || key == 0)
		return false;
	smtp_refusal(s, SMTP_REFUSAL_SYNTAX, path,
	             "555 5.5.4 Unsupported option: %.*s (no service extensions after HELO)",
	             (int)(key < 64 ? key : 64), params);
	return true;
}

/* RFC 5321 4.1.1.2 MAIL FROM:<reverse-path> [SP Mail-parameters] */
static void
cmd_mail(struct smtp_session *s, char *arg)
{
	static const char usage[] = "MAIL FROM:<address>";
	const size_t max = s->config->max_message_size;
	struct smtp_mail_params params;
	char *path, *rest, *from, *bad = NULL;
	enum smtp_addr_status status;

	/* RFC 3207 4: a server that requires TLS refuses mail in clear. */
	if (s->config->tls_required && s->tls_version == NULL) {
		smtp_refusal(s, SMTP_REFUSAL_SEQUENCE, NULL,
		             "530 5.7.0 Must issue a STARTTLS command first");
		return;
	}
	status = smtp_path_split(arg, "FROM:", &path, &rest);
	if (status != SMTP_ADDR_OK) {
		address_error(s, status, usage, "5.1.7", arg, bad);
		return;
	}
	if (params_after_helo(s, rest, path))
		return;
	status = smtp_mail_params_parse(rest, &params, &bad);
	if (status == SMTP_ADDR_OK)
		status = smtp_path_check(
		    path, SMTP_PATH_NULL_OK | (params.smtputf8 ? SMTP_PATH_UTF8 : 0), &from);
	if (status != SMTP_ADDR_OK) {
		address_error(s, status, usage, "5.1.7", path, bad);
		return;
	}
	/* RFC 1870 6.1: refuse a declared size over the limit at once. */
	if (params.has_size && max != 0 && params.size > max) {
		smtp_refusal(s, SMTP_REFUSAL_SIZE, from,
		             "552 5.3.4 Message size exceeds fixed maximum message size");
		return;
	}
	/* The host may be paused: sessions already past MAIL finish, new ones wait. */
	if (s->config->mail_check != NULL &&
	    s->config->mail_check(s->host, from) == SMTP_MAIL_TEMPFAIL) {
		smtp_refusal(s, SMTP_REFUSAL_TEMPFAIL, from,
		             "451 4.3.2 Service paused, try again later");
		return;
	}
	s->txn = smtp_txn_new(s, from);
	if (s->txn == NULL) {
		out_of_memory(s);
		return;
	}
	s->txn->declared_size = params.has_size ? params.size : 0;
	s->txn->body_8bitmime = params.body_8bitmime;
	s->txn->smtputf8 = params.smtputf8;
	smtp_set_state(s, SMTP_STATE_MAIL);
	SMTP_REPLY_LIT(s, "250 2.1.0 Ok");
}

/* The host's verdict on an accepted-syntax recipient, as a reply. */
static void
rcpt_verdict(struct smtp_session *s, const char *rcpt)
{
	enum smtp_rcpt_verdict verdict = SMTP_RCPT_RELAY_DENIED; /* never an open relay */
	char canonical[SMTP_PATH_MAX + 1] = "";

	if (s->config->rcpt_check != NULL)
		verdict = s->config->rcpt_check(s->host, rcpt, canonical);
	/* A host that filled canonical without a NUL must not make the engine read past it. */
	canonical[SMTP_PATH_MAX] = '\0';
	switch (verdict) {
	case SMTP_RCPT_ACCEPT:
		/* An alias is stored as its canonical mailbox, the address the host checked. */
		if (smtp_txn_add_rcpt(s->txn, canonical[0] != '\0' ? canonical : rcpt) != PA_OK) {
			out_of_memory(s);
			return;
		}
		smtp_set_state(s, SMTP_STATE_RCPT);
		SMTP_REPLY_LIT(s, "250 2.1.5 Ok");
		return;
	case SMTP_RCPT_UNKNOWN_USER:
		smtp_refusal(s, SMTP_REFUSAL_UNKNOWN_USER, rcpt,
		             "550 5.1.1 Recipient address rejected: User unknown");
		return;
	case SMTP_RCPT_TEMPFAIL:
		smtp_refusal(s, SMTP_REFUSAL_TEMPFAIL, rcpt,
		             "451 4.3.0 Recipient address rejected: Try again later");
		return;
	case SMTP_RCPT_SPOOL_FULL:
		smtp_refusal(s, SMTP_REFUSAL_TEMPFAIL, rcpt,
		             "452 4.3.1 Insufficient system storage");
		return;
	case SMTP_RCPT_BAD_DOMAIN: /* RFC 5890 2.3.2.1, RFC 3463 X.1.3: bad address syntax */
		smtp_refusal(s, SMTP_REFUSAL_SYNTAX, rcpt,
		             "553 5.1.3 Recipient address rejected: invalid domain name");
		return;
	case SMTP_RCPT_RELAY_DENIED:
	default:
		smtp_refusal(s, SMTP_REFUSAL_RELAY_DENIED, rcpt, "550 5.7.1 Relay access denied");
		return;
	}
}

/* RFC 5321 4.1.1.3 RCPT TO:<forward-path> [SP Rcpt-parameters] */
static void
cmd_rcpt(struct smtp_session *s, char *arg)
{
	static const char usage[] = "RCPT TO:<address>";
	const unsigned max = s->config->max_recipients;
	char *path, *rest, *rcpt, *bad = NULL;
	enum smtp_addr_status status;
	unsigned flags = SMTP_PATH_POSTMASTER_OK | (s->txn->smtputf8 ? SMTP_PATH_UTF8 : 0);

	if (s->txn->chunked) { /* RFC 3030 2: the envelope is closed once BDAT starts */
		smtp_refusal(s, SMTP_REFUSAL_SEQUENCE, NULL, "503 5.5.1 Error: RCPT after BDAT");
		return;
	}
	status = smtp_path_split(arg, "TO:", &path, &rest);
	if (status != SMTP_ADDR_OK) {
		address_error(s, status, usage, "5.1.3", arg, bad);
		return;
	}
	if (params_after_helo(s, rest, path))
		return;
	status = smtp_rcpt_params_parse(rest, &bad);
	if (status == SMTP_ADDR_OK)
		status = smtp_path_check(path, flags, &rcpt);
	if (status != SMTP_ADDR_OK) {
		address_error(s, status, usage, "5.1.3", path, bad);
		return;
	}
	/* RFC 5321 4.5.3.1.10 */
	if (max != 0 && s->txn->nrcpt >= max) {
		smtp_refusal(s, SMTP_REFUSAL_TOO_MANY_RCPTS, rcpt, "452 4.5.3 Too many recipients");
		return;
	}
	rcpt_verdict(s, rcpt);
}

/* Refusals shared by DATA and BDAT; returns true when one was sent. */
static bool
content_refused(struct smtp_session *s)
{
	if (s->txn->nrcpt == 0) {
		smtp_refusal(s, SMTP_REFUSAL_SEQUENCE, NULL,
		             "554 5.5.1 Error: no valid recipients");
		return true;
	}
	return false;
}

/* RFC 5321 4.1.1.4 */
static void
cmd_data(struct smtp_session *s, char *arg)
{
	if (*arg != '\0') {
		syntax_error(s, "DATA");
		return;
	}
	if (content_refused(s))
		return;
	if (s->txn->chunked) { /* RFC 3030 2: no mixing DATA and BDAT */
		smtp_refusal(s, SMTP_REFUSAL_SEQUENCE, NULL, "503 5.5.1 Error: DATA after BDAT");
		return;
	}
	smtp_txn_start_body(s, false);
	smtp_set_state(s, SMTP_STATE_DATA);
	/* RFC 3463 defines no class 3: an intermediate reply has no enhanced code. */
	SMTP_REPLY_LIT(s, "354 End data with <CR><LF>.<CR><LF>");
}

/* RFC 3030 2: bdat-cmd ::= "BDAT" SP chunk-size [ SP end-marker ] CR LF */
static bool
bdat_args(const char *arg, uint64_t *size, bool *last)
{
	uint64_t n = 0;
	const char *p = arg;

	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');

		if (n > (UINT64_MAX - d) / 10)
			return false;
		n = n * 10 + d;
	}
	if (p == arg)
		return false;
	*size = n;
	*last = false;
	if (*p == '\0')
		return true;
	if (strcasecmp(p, " LAST") != 0)
		return false;
	*last = true;
	return true;
}

/*
 * Without a chunk size we cannot know where the next command starts, and
 * reading the chunk as commands is exactly what an attacker would want: close.
 */
static void
bdat_lost_sync(struct smtp_session *s)
{
	syntax_error(s, "BDAT count [LAST]");
	if (s->state != SMTP_STATE_CLOSING)
		smtp_reply(s, "421 4.5.0 %.255s Error: lost BDAT synchronization",
		           s->config->hostname);
	smtp_close(s);
}

/* A refused BDAT still owns its octets: skip them so they are never parsed as commands. */
static void
bdat_skip(struct smtp_session *s, uint64_t size)
{
	s->bdat_size = size;
	s->bdat_left = size;
	s->bdat_last = false;
	s->bdat_discard = size > 0;
	if (size > 0)
		smtp_set_state(s, SMTP_STATE_BDAT);
}

static void
bdat_refuse(struct smtp_session *s, const struct smtp_command *cmd, char *arg)
{
	uint64_t size;
	bool last;

	if (!bdat_args(arg, &size, &last)) {
		bdat_lost_sync(s);
		return;
	}
	not_now(s, cmd);
	bdat_skip(s, size);
}

static void
cmd_bdat(struct smtp_session *s, char *arg)
{
	uint64_t size;
	bool last;

	if (!bdat_args(arg, &size, &last)) {
		bdat_lost_sync(s);
		return;
	}
	if (content_refused(s)) {
		bdat_skip(s, size);
		return;
	}
	if (!s->txn->body_started)
		smtp_txn_start_body(s, true);
	s->bdat_size = size;
	s->bdat_left = size;
	s->bdat_last = last;
	s->bdat_discard = false;
	smtp_set_state(s, SMTP_STATE_BDAT);
	if (size == 0)
		smtp_bdat_chunk_end(s);
}

/* RFC 5321 4.1.1.5 */
static void
cmd_rset(struct smtp_session *s, char *arg)
{
	if (*arg != '\0') {
		syntax_error(s, "RSET");
		return;
	}
	smtp_txn_end(s);
	SMTP_REPLY_LIT(s, "250 2.0.0 Ok");
}

/* RFC 5321 4.1.1.9: any argument is ignored. */
static void
cmd_noop(struct smtp_session *s, char *arg)
{
	(void)arg;
	SMTP_REPLY_LIT(s, "250 2.0.0 Ok");
}

/* RFC 5321 4.1.1.10 */
static void
cmd_quit(struct smtp_session *s, char *arg)
{
	if (*arg != '\0') {
		syntax_error(s, "QUIT");
		return;
	}
	SMTP_REPLY_LIT(s, "221 2.0.0 Bye");
	smtp_close(s);
}

/* RFC 5321 3.5.3: 252 answers without telling whether the user exists. */
static void
cmd_vrfy(struct smtp_session *s, char *arg)
{
	if (*arg == '\0') {
		syntax_error(s, "VRFY address");
		return;
	}
	SMTP_REPLY_LIT(s, "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery");
}

/* RFC 5321 3.5.2: mailing lists are never expanded for strangers. */
static void
cmd_expn(struct smtp_session *s, char *arg)
{
	(void)arg;
	smtp_refusal(s, SMTP_REFUSAL_UNKNOWN_COMMAND, NULL,
	             "502 5.5.1 Error: command not implemented");
}

/* RFC 5321 4.1.1.8 */
static void
cmd_help(struct smtp_session *s, char *arg)
{
	(void)arg;
	SMTP_REPLY_LIT(s, "214-2.0.0 PigeonAir SMTP server");
	SMTP_REPLY_LIT(s, "214-2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT");
	SMTP_REPLY_LIT(s, "214-2.0.0   RSET NOOP QUIT VRFY EXPN HELP");
	SMTP_REPLY_LIT(s, "214 2.0.0 End of HELP info");
}

/*
 * RFC 3207 4: STARTTLS takes no argument and is refused inside TLS.  Only
 * outside a transaction: a transaction begun in clear must not go on in TLS.
 */
static void
cmd_starttls(struct smtp_session *s, char *arg)
{
	if (!s->config->tls_available) {
		smtp_refusal(s, SMTP_REFUSAL_UNKNOWN_COMMAND, NULL,
		             "502 5.5.1 Error: command not implemented");
		return;
	}
	if (s->tls_version != NULL) {
		smtp_refusal(s, SMTP_REFUSAL_SEQUENCE, NULL, "503 5.5.1 Error: TLS already active");
		return;
	}
	if (*arg != '\0') {
		syntax_error(s, "STARTTLS");
		return;
	}
	if (s->state == SMTP_STATE_CONNECTED) {
		smtp_refusal(s, SMTP_REFUSAL_SEQUENCE, NULL,
		             "503 5.5.1 Error: send HELO/EHLO first");
		return;
	}
	if (s->txn != NULL) {
		smtp_refusal(s, SMTP_REFUSAL_SEQUENCE, NULL,
		             "503 5.5.1 Error: STARTTLS inside a mail transaction");
		return;
	}
	SMTP_REPLY_LIT(s, "220 2.0.0 Ready to start TLS");
	smtp_set_state(s, SMTP_STATE_STARTTLS);
}

/*
 * RFC 3461 4 xtext, which XCLIENT values use: "+" and two upper-case hex
 * digits stand for one octet.  Decoded in place; false for a bad escape or a
 * decoded octet outside printable US-ASCII (the value ends up in logs and in
 * Received:).
 */
static bool
xtext_decode(char *p)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = p;

	for (; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '+') {
			const char *hi = p[1] ? strchr(hex, p[1]) : NULL;
			const char *lo = hi && p[2] ? strchr(hex, p[2]) : NULL;

			if (hi == NULL || lo == NULL)
				return false;
			c = (unsigned char)((hi - hex) << 4 | (lo - hex));
			p += 2;
		}
		if (c < 0x21 || c > 0x7e)
			return false;
		*out++ = (char)c;
	}
	*out = '\0';
	return true;
}

/* XCLIENT ADDR: IPv4, or IPv6 with Postfix's "IPV6:" prefix; written back canonical. */
static bool
xclient_addr(const char *v, char out[INET6_ADDRSTRLEN])
{
	unsigned char bin[16];

	if (inet_pton(AF_INET, v, bin) == 1)
		return inet_ntop(AF_INET, bin, out, INET6_ADDRSTRLEN) != NULL;
	if (strncasecmp(v, "IPV6:", 5) == 0 && inet_pton(AF_INET6, v + 5, bin) == 1)
		return inet_ntop(AF_INET6, bin, out, INET6_ADDRSTRLEN) != NULL;
	return false;
}

static bool
xclient_port(const char *v, unsigned *port)
{
	unsigned n = 0;

	if (*v == '\0' || strlen(v) > 5)
		return false;
	for (; *v != '\0'; v++) {
		if (*v < '0' || *v > '9')
			return false;
		n = n * 10 + (unsigned)(*v - '0');
	}
	*port = n;
	return n <= 65535;
}

/* What one XCLIENT command asks for; a field left NULL/0/-1 is unchanged. */
struct xclient_req {
	char addr[INET6_ADDRSTRLEN];
	unsigned port;
	const char *helo;
	int esmtp; /* -1: PROTO not given */
};

/* One name=value attribute; false after replying 501. */
static bool
xclient_attr(struct smtp_session *s, char *tok, struct xclient_req *req)
{
	char *eq = strchr(tok, '=');
	char *v;

	if (eq == NULL || eq == tok) {
		smtp_refusal(s, SMTP_REFUSAL_SYNTAX, NULL,
		             "501 5.5.4 Syntax: XCLIENT attribute=value ...");
		return false;
	}
	*eq = '\0';
	v = eq + 1;
	if (!xtext_decode(v)) {
		smtp_refusal(s, SMTP_REFUSAL_SYNTAX, NULL, "501 5.5.4 Bad %.16s syntax", tok);
		return false;
	}
	/* Postfix's XCLIENT_README: the proxy does not know it either; keep ours. */
	if (strcasecmp(v, "[UNAVAILABLE]") == 0 || strcasecmp(v, "[TEMPUNAVAIL]") == 0)
		return true;
	if (strcasecmp(tok, "ADDR") == 0) {
		if (xclient_addr(v, req->addr))
			return true;
	} else if (strcasecmp(tok, "PORT") == 0) {
		if (xclient_port(v, &req->port))
			return true;
	} else if (strcasecmp(tok, "HELO") == 0) {
		if (strlen(v) <= 255 && valid_helo(v)) {
			req->helo = v;
			return true;
		}
	} else if (strcasecmp(tok, "PROTO") == 0) {
		if (strcasecmp(v, "SMTP") == 0 || strcasecmp(v, "ESMTP") == 0) {
			req->esmtp = strcasecmp(v, "ESMTP") == 0;
			return true;
		}
	} else {
		smtp_refusal(s, SMTP_REFUSAL_SYNTAX, NULL,
		             "501 5.5.4 Bad XCLIENT attribute name: %.32s", tok);
		return false;
	}
	smtp_refusal(s, SMTP_REFUSAL_SYNTAX, NULL, "501 5.5.4 Bad %.16s syntax", tok);
	return false;
}

/*
 * Postfix's XCLIENT extension (XCLIENT_README): a trusted proxy in front of
 * us tells who its client is.  On success the session starts over as if the
 * client had connected (220 greeting, EHLO needed again) and from then on
 * the given address is the one logged, rate-limited and written in
 * Received:.  Trust is spent: the session now speaks for the client, which
 * must not be able to lie about itself in turn.
 */
static void
cmd_xclient(struct smtp_session *s, char *arg)
{
	struct xclient_req req = {.esmtp = -1};
	char *save = NULL, *helo = NULL;

	if (!s->trusted) {
		smtp_refusal(s, SMTP_REFUSAL_XCLIENT_DENIED, NULL,
		             "550 5.7.0 Error: insufficient authorization");
		return;
	}
	if (s->txn != NULL) {
		smtp_refusal(s, SMTP_REFUSAL_SEQUENCE, NULL,
		             "503 5.5.1 Error: MAIL transaction in progress");
		return;
	}
	if (*arg == '\0') {
		syntax_error(s, "XCLIENT attribute=value ...");
		return;
	}
	for (char *tok = strtok_r(arg, " ", &save); tok != NULL; tok = strtok_r(NULL, " ", &save))
		if (!xclient_attr(s, tok, &req))
			return;
	if (req.helo != NULL && (helo = strdup(req.helo)) == NULL) {
		out_of_memory(s);
		return;
	}
	if (req.addr[0] != '\0') {
		int why = s->config->client_changed != NULL
		              ? s->config->client_changed(s->host, req.addr, req.port)
		              : SMTP_REFUSAL_NONE;

		if (why != SMTP_REFUSAL_NONE) {
			free(helo);
			smtp_close(s);
			smtp_refusal(s, (enum smtp_refusal)why, req.addr,
			             "421 4.7.0 %.255s Error: too many connections from %s",
			             s->config->hostname, req.addr);
			return;
		}
		if (smtp_session_set_client(s, req.addr) != PA_OK) {
			free(helo);
			out_of_memory(s);
			return;
		}
	}
	free(s->helo);
	s->helo = helo;
	if (req.esmtp >= 0)
		s->esmtp = req.esmtp != 0;
	s->trusted = false;
	/* HELO= stands for the client's own EHLO/HELO; without it, one is needed again. */
	smtp_set_state(s, smtp_idle_state(s));
	smtp_reply(s, "220 %.255s ESMTP PigeonAir", s->config->hostname);
}

/*
 * XCLIENT is not marked as an extension: like Postfix, a trusted proxy may
 * send it before or after HELO (Postfix's XCLIENT_README).
 */
static const struct smtp_command commands[] = {
    {"EHLO", COMMAND_STATES, false, cmd_ehlo, NULL},
    {"HELO", COMMAND_STATES, false, cmd_helo, NULL},
    {"MAIL", SMTP_STATE_BIT(SMTP_STATE_GREETED), false, cmd_mail, NULL},
    {"RCPT", TXN_STATES, false, cmd_rcpt, NULL},
    {"DATA", TXN_STATES, false, cmd_data, NULL},
    {"BDAT", TXN_STATES, true, cmd_bdat, bdat_refuse}, /* RFC 3030 CHUNKING */
    {"RSET", COMMAND_STATES, false, cmd_rset, NULL},
    {"NOOP", COMMAND_STATES, false, cmd_noop, NULL},
    {"QUIT", COMMAND_STATES, false, cmd_quit, NULL},
    {"VRFY", COMMAND_STATES, false, cmd_vrfy, NULL},
    {"EXPN", COMMAND_STATES, false, cmd_expn, NULL},
    {"HELP", COMMAND_STATES, false, cmd_help, NULL},
    {"STARTTLS", COMMAND_STATES, true, cmd_starttls, NULL}, /* RFC 3207 */
    {"XCLIENT", COMMAND_STATES, false, cmd_xclient, NULL},
};

/*
 * An HTTP request line or header on the SMTP port: a browser, a proxy
 * abuser trying CONNECT, or a cross-protocol attack (an HTML form posting
 * SMTP commands).  Postfix refuses these verbs outright and hangs up; no SMTP
 * verb is spelled like one.
 */
static bool
http_request(const char *verb, size_t len)
{
	static const char *const http[] = {"GET",     "POST",   "HEAD",  "CONNECT", "PUT",
	                                   "OPTIONS", "DELETE", "PATCH", "TRACE",   "Host:"};

	for (size_t i = 0; i < pa_array_size(http); i++)
		if (strlen(http[i]) == len && strncasecmp(http[i], verb, len) == 0)
			return true;
	return false;
}

static const struct smtp_command *
lookup(const char *verb, size_t len)
{
	for (size_t i = 0; i < pa_array_size(commands); i++)
		if (strlen(commands[i].verb) == len &&
		    strncasecmp(commands[i].verb, verb, len) == 0)
			return &commands[i];
	return NULL;
}

/*
 * Refuses a line that is not clean text; returns true when it did.  The CR LF
 * that ended it is gone: any CR or LF left is bare.  RFC 5321 2.3.8: lines
 * end with CR LF, and CR and LF appear nowhere else.  smtp.bare_lf does not
 * apply here: normalising would end the command at the bare octet, where a
 * CRLF-strict proxy in front of us sees none, and run the rest as a second
 * command that proxy never saw.
 */
static bool
line_refused(struct smtp_session *s, const char *line, size_t len)
{
	if (memchr(line, '\r', len) != NULL || memchr(line, '\n', len) != NULL) {
		smtp_refusal(s, SMTP_REFUSAL_BARE_LF, NULL,
		             "500 5.5.2 Error: bare LF or CR in command refused");
		return true;
	}
	if (memchr(line, '\0', len) != NULL) {
		smtp_refusal(s, SMTP_REFUSAL_SYNTAX, NULL,
		             "500 5.5.2 Error: NUL in command refused");
		return true;
	}
	return false;
}

/*
 * One command line, without the CR LF that ended it; `len` <= 510
 * (RFC 5321 4.5.3.1.4) and line has room for a NUL at line[len].
 */
void
smtp_command_line(struct smtp_session *s, char *line, size_t len)
{
	const struct smtp_command *cmd;
	size_t verb_len;
	char *arg;

	/* limits.commands: whatever the line holds, it is one more the client sent. */
	if (s->config->max_commands != 0 && ++s->commands > s->config->max_commands) {
		smtp_close(s);
		smtp_refusal(s, SMTP_REFUSAL_TOO_MANY_COMMANDS, NULL,
		             "421 4.7.0 %.255s Error: too many commands", s->config->hostname);
		return;
	}
	if (line_refused(s, line, len))
		return;
	/* Trailing blanks are common and harmless: drop them. */
	while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t'))
		len--;
	line[len] = '\0';
	verb_len = strcspn(line, " ");
	if (verb_len == 0) {
		smtp_refusal(s, SMTP_REFUSAL_SYNTAX, NULL, "500 5.5.2 Error: bad syntax");
		return;
	}
	if (http_request(line, verb_len)) {
		smtp_close(s); /* first: no "too many errors" 421 after this */
		smtp_refusal(s, SMTP_REFUSAL_HTTP, NULL,
		             "521 5.7.0 %.255s Error: HTTP request on an SMTP port",
		             s->config->hostname);
		return;
	}
	cmd = lookup(line, verb_len);
	if (cmd == NULL) {
		smtp_refusal(s, SMTP_REFUSAL_UNKNOWN_COMMAND, NULL,
		             "500 5.5.1 Error: command not recognized");
		return;
	}
	arg = line + verb_len;
	while (*arg == ' ')
		arg++;
	if (!allowed_now(s, cmd)) {
		if (cmd->refuse != NULL)
			cmd->refuse(s, cmd, arg);
		else
			not_now(s, cmd);
		return;
	}
	cmd->handler(s, arg);
}
