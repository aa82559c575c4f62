/*
 * smtp_address.c: parsing of the MAIL FROM and RCPT TO arguments
 * (RFC 5321 4.1.2).
 *
 * Strict on the grammar of the path itself, tolerant on the framing the way
 * real servers are: angle brackets are required, spaces after the colon are
 * accepted, a source route is accepted and dropped (RFC 5321 4.1.1.3 and
 * appendix C), octets >= 0x80 are accepted only as well-formed UTF-8 and only
 * when SMTPUTF8 was given (RFC 6531 3.3).  Everything works in place on the
 * caller's NUL-terminated buffer; nothing is allocated.
 */
#include "smtp/smtp_address.h"

#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "smtp/smtp_session.h"

#define LOCAL_PART_MAX 64  /* RFC 5321 4.5.3.1.1 */
#define DOMAIN_MAX 255     /* RFC 5321 4.5.3.1.2 */
#define LABEL_MAX 63       /* RFC 1035 2.3.4 */
#define SIZE_DIGITS_MAX 20 /* RFC 1870 4: size-value ::= 1*20DIGIT */

static bool
is_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* RFC 5321 4.1.2 Let-dig, widened to UTF-8 by RFC 6531 3.3 (U-labels). */
static bool
is_let_dig(unsigned char c, bool utf8)
{
	return is_alnum(c) || (utf8 && c >= 0x80);
}

/* RFC 5322 3.2.3 atext, widened to UTF-8 by RFC 6531 3.3. */
static bool
is_atext(unsigned char c, bool utf8)
{
	return is_let_dig(c, utf8) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* RFC 3629 4, rejecting overlong forms and surrogates. */
static bool
utf8_valid(const unsigned char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = p[i];
		size_t len;
		unsigned long cp, min;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			len = 2, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			len = 3, cp = c & 0x0f, min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4, cp = c & 0x07, min = 0x10000;
		} else {
			return false;
		}
		if (n - i < len)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

/* RFC 5321 4.1.2 Dot-string = Atom *("." Atom). */
static bool
valid_dot_string(const char *p, size_t n, bool utf8)
{
	bool after_dot = true; /* so that a leading dot is refused */

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c == '.') {
			if (after_dot)
				return false;
			after_dot = true;
		} else if (is_atext(c, utf8)) {
			after_dot = false;
		} else {
			return false;
		}
	}
	return n > 0 && !after_dot;
}

/*
 * RFC 5321 4.1.2 Quoted-string: DQUOTE *(qtextSMTP / quoted-pairSMTP) DQUOTE.
 * Returns its length with both quotes, or 0 when p does not open a valid one.
 */
static size_t
quoted_len(const char *p, bool utf8)
{
	size_t i = 1;

	if (p[0] != '"')
		return 0;
	for (;;) {
		unsigned char c = (unsigned char)p[i];

		if (c == '"')
			return i + 1;
		if (c == '\\') {
			unsigned char e = (unsigned char)p[i + 1];

			if (e < 32 || e > 126)
				return 0;
			i += 2;
			continue;
		}
		if (!((c >= 32 && c <= 126) || (utf8 && c >= 0x80)))
			return 0;
		i++;
	}
}

/* RFC 5321 4.1.2 sub-domain = Let-dig [Ldh-str]. */
static bool
valid_label(const char *p, size_t n, bool utf8)
{
	if (n == 0 || n > LABEL_MAX)
		return false;
	if (!is_let_dig((unsigned char)p[0], utf8) || !is_let_dig((unsigned char)p[n - 1], utf8))
		return false;
	for (size_t i = 1; i + 1 < n; i++)
		if (!is_let_dig((unsigned char)p[i], utf8) && p[i] != '-')
			return false;
	return true;
}

/* RFC 5321 4.1.3 address-literal, accepted in its General form: dcontent only. */
static bool
valid_literal(const char *p, size_t n)
{
	if (n < 3 || p[0] != '[' || p[n - 1] != ']')
		return false;
	for (size_t i = 1; i + 1 < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c < 33 || c > 126 || c == '[' || c == '\\' || c == ']')
			return false;
	}
	return true;
}

static bool
valid_domain(const char *p, size_t n, bool utf8)
{
	size_t start = 0;

	if (n == 0 || n > DOMAIN_MAX)
		return false;
	if (p[0] == '[')
		return valid_literal(p, n);
	for (size_t i = 0; i <= n; i++) {
		if (i < n && p[i] != '.')
			continue;
		if (!valid_label(p + start, i - start, utf8))
			return false;
		start = i + 1;
	}
	return true;
}

/*
 * RFC 5321 4.1.2 A-d-l = At-domain *( "," At-domain ) ":".  Returns what
 * follows the route, or NULL when the route is malformed.
 */
static char *
strip_route(char *path, bool utf8)
{
	char *colon = strchr(path, ':');
	char *p = path;

	if (colon == NULL)
		return NULL;
	for (;;) {
		char *end;

		if (*p != '@')
			return NULL;
		p++;
		end = memchr(p, ',', (size_t)(colon - p));
		if (end == NULL)
			end = colon;
		if (!valid_domain(p, (size_t)(end - p), utf8))
			return NULL;
		if (end == colon)
			return colon + 1;
		p = end + 1;
	}
}

static enum smtp_addr_status
check_mailbox(const char *box, unsigned flags, bool utf8)
{
	const char *at;
	size_t local_len;

	if (box[0] == '"') {
		local_len = quoted_len(box, utf8);
		if (local_len == 0)
			return SMTP_ADDR_BAD_MAILBOX;
		at = box + local_len;
		if (*at != '@')
			return SMTP_ADDR_BAD_MAILBOX;
	} else {
		at = strchr(box, '@');
		if (at == NULL) {
			/* RFC 5321 4.1.1.3: RCPT TO:<Postmaster> needs no domain. */
			if ((flags & SMTP_PATH_POSTMASTER_OK) && strcasecmp(box, "postmaster") == 0)
				return SMTP_ADDR_OK;
			return SMTP_ADDR_BAD_MAILBOX;
		}
		local_len = (size_t)(at - box);
	}
	if (local_len > LOCAL_PART_MAX)
		return SMTP_ADDR_LOCAL_TOO_LONG;
	if (box[0] != '"' && !valid_dot_string(box, local_len, utf8))
		return SMTP_ADDR_BAD_MAILBOX;
	if (!valid_domain(at + 1, strlen(at + 1), utf8))
		return SMTP_ADDR_BAD_MAILBOX;
	return SMTP_ADDR_OK;
}

static enum smtp_addr_status
check_8bit(const char *path, size_t len, bool utf8)
{
	bool eight_bit = false;

	for (size_t i = 0; i < len; i++)
		eight_bit |= (unsigned char)path[i] >= 0x80;
	if (!eight_bit)
		return SMTP_ADDR_OK;
	if (!utf8)
		return SMTP_ADDR_NON_ASCII;
	return utf8_valid((const unsigned char *)path, len) ? SMTP_ADDR_OK : SMTP_ADDR_BAD_MAILBOX;
}

/* The ">" closing the path; a ">" inside a quoted local part does not count. */
static char *
closing_bracket(char *p)
{
	bool quoted = false;

	for (; *p != '\0'; p++) {
		if (quoted && *p == '\\' && p[1] != '\0')
			p++;
		else if (*p == '"')
			quoted = !quoted;
		else if (*p == '>' && !quoted)
			return p;
	}
	return NULL;
}

enum smtp_addr_status
smtp_path_split(char *arg, const char *keyword, char **path, char **params)
{
	size_t klen = strlen(keyword);
	char *p, *end;

	if (strncasecmp(arg, keyword, klen) != 0)
		return SMTP_ADDR_SYNTAX;
	p = arg + klen;
	/* Not in RFC 5321 4.1.2, but "MAIL FROM: <a@b>" is common. */
	while (*p == ' ')
		p++;
	if (*p != '<')
		return SMTP_ADDR_SYNTAX;
	end = closing_bracket(p + 1);
	if (end == NULL || (end[1] != '\0' && end[1] != ' '))
		return SMTP_ADDR_SYNTAX;
	*end = '\0';
	*path = p + 1;
	p = end + 1;
	while (*p == ' ')
		p++;
	*params = p;
	return SMTP_ADDR_OK;
}

enum smtp_addr_status
smtp_path_check(char *path, unsigned flags, char **mailbox)
{
	bool utf8 = (flags & SMTP_PATH_UTF8) != 0;
	size_t len = strlen(path);
	enum smtp_addr_status status;
	char *box = path;

	if (len == 0) {
		*mailbox = path;
		return (flags & SMTP_PATH_NULL_OK) ? SMTP_ADDR_OK : SMTP_ADDR_BAD_MAILBOX;
	}
	/* RFC 5321 4.5.3.1.3: 256 octets, source route included. */
	if (len > SMTP_PATH_MAX)
		return SMTP_ADDR_PATH_TOO_LONG;
	status = check_8bit(path, len, utf8);
	if (status != SMTP_ADDR_OK)
		return status;
	if (path[0] == '@') {
		box = strip_route(path, utf8);
		if (box == NULL)
			return SMTP_ADDR_BAD_MAILBOX;
		/*
		 * RFC 5321 4.1.1.3: "<Postmaster>" is a form of its own, never
		 * behind a route; Forward-path's Mailbox always has a domain.
		 */
		flags &= ~(unsigned)SMTP_PATH_POSTMASTER_OK;
	}
	status = check_mailbox(box, flags, utf8);
	if (status == SMTP_ADDR_OK)
		*mailbox = box;
	return status;
}

/*
 * RFC 5321 4.1.2 esmtp-param = esmtp-keyword ["=" esmtp-value], separated by
 * SP.  NUL-terminates key and value in place.  Returns 1 for a parameter, 0
 * at the end, -1 when malformed.
 */
static int
param_next(char **cursor, char **key, char **value)
{
	char *p = *cursor;

	while (*p == ' ')
		p++;
	*key = p;
	*value = NULL;
	if (*p == '\0')
		return 0;
	if (!is_alnum((unsigned char)*p))
		return -1;
	while (is_alnum((unsigned char)*p) || *p == '-')
		p++;
	if (*p == '=') {
		*p++ = '\0';
		*value = p;
		/* esmtp-value = 1*(%d33-60 / %d62-126) */
		while ((unsigned char)*p >= 33 && (unsigned char)*p <= 126 && *p != '=')
			p++;
		if (p == *value)
			return -1;
	}
	if (*p != '\0' && *p != ' ')
		return -1;
	if (*p == ' ')
		*p++ = '\0';
	*cursor = p;
	return 1;
}

static bool
parse_size(const char *value, uint64_t *size)
{
	uint64_t n = 0;
	size_t digits = 0;

	if (value == NULL)
		return false;
	for (; *value != '\0'; value++, digits++) {
		unsigned d = (unsigned)(*value - '0');

		if (d > 9 || digits == SIZE_DIGITS_MAX || n > (UINT64_MAX - d) / 10)
			return false;
		n = n * 10 + d;
	}
	*size = n;
	return digits > 0;
}

static enum smtp_addr_status
mail_param(const char *key, const char *value, struct smtp_mail_params *out, unsigned *seen)
{
	enum { SEEN_SIZE = 1, SEEN_BODY = 2, SEEN_UTF8 = 4 };

	if (strcasecmp(key, "SIZE") == 0) { /* RFC 1870 3 */
		if ((*seen & SEEN_SIZE) || !parse_size(value, &out->size))
			return SMTP_ADDR_BAD_PARAM;
		out->has_size = true;
		*seen |= SEEN_SIZE;
	} else if (strcasecmp(key, "BODY") == 0) { /* RFC 6152 2 */
		if ((*seen & SEEN_BODY) || value == NULL)
			return SMTP_ADDR_BAD_PARAM;
		if (strcasecmp(value, "8BITMIME") == 0)
			out->body_8bitmime = true;
		else if (strcasecmp(value, "7BIT") != 0)
			return SMTP_ADDR_BAD_PARAM;
		*seen |= SEEN_BODY;
	} else if (strcasecmp(key, "SMTPUTF8") == 0) { /* RFC 6531 3.4 */
		if ((*seen & SEEN_UTF8) || value != NULL)
			return SMTP_ADDR_BAD_PARAM;
		out->smtputf8 = true;
		*seen |= SEEN_UTF8;
	} else {
		return SMTP_ADDR_UNKNOWN_PARAM;
	}
	return SMTP_ADDR_OK;
}

enum smtp_addr_status
smtp_mail_params_parse(char *params, struct smtp_mail_params *out, char **bad)
{
	unsigned seen = 0;
	char *key, *value;
	int r;

	memset(out, 0, sizeof(*out));
	while ((r = param_next(&params, &key, &value)) > 0) {
		enum smtp_addr_status status = mail_param(key, value, out, &seen);

		if (status != SMTP_ADDR_OK) {
			*bad = key;
			return status;
		}
	}
	if (r < 0) {
		*bad = key;
		return SMTP_ADDR_BAD_PARAM;
	}
	return SMTP_ADDR_OK;
}

enum smtp_addr_status
smtp_rcpt_params_parse(char *params, char **bad)
{
	char *key, *value;
	int r = param_next(&params, &key, &value);

	*bad = key;
	if (r < 0)
		return SMTP_ADDR_BAD_PARAM;
	return r > 0 ? SMTP_ADDR_UNKNOWN_PARAM : SMTP_ADDR_OK;
}
