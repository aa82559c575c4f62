/*
 * domain.c: the canonical form of a domain name (domain.h).
 *
 * What it promises: the output is always a valid ASCII host name in lower
 * case (letters, digits, hyphens, labels of 1 to 63 octets, at most 253
 * octets), whatever the input; an ASCII input never reaches libidn2 unless
 * the caller asks for the A-label check; IDNA itself is libidn2's (IDNA2008,
 * RFC 5891, with the UTS #46 non-transitional mapping), never written here.
 */
#include "core/domain.h"

#include <idn2.h>
#include <stdint.h>
#include <string.h>

#include "core/pa.h"

#define LABEL_MAX 63       /* RFC 1035 2.3.4 */
#define UTF8_INPUT_MAX 255 /* a U-label domain may take more octets than its A-label form */

/*
 * IDNA2008 lookup (RFC 5891 5) with the UTS #46 mapping, which folds case
 * and width so that "MÜLLER.example" and "müller.example" are one domain;
 * non-transitional, so that "faß.de" stays itself (IDNA2008) rather than
 * becoming "fass.de" (IDNA2003); STD3 rules keep the result a host name.
 */
#define IDN2_FLAGS (IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL | IDN2_USE_STD3_ASCII_RULES)

static char
lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool
is_ldh(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-';
}

/*
 * RFC 5321 4.1.2 sub-domain = Let-dig [Ldh-str], labels split by dots.  With
 * utf8, octets >= 0x80 pass (they are U-label text that libidn2 checks) and
 * the label length is left to libidn2, which measures the A-label.  ASCII
 * octets are checked here in both cases: UTS #46 would silently drop some
 * ("mü_ller" would become "müller"), and a domain must not change meaning.
 */
static bool
valid_labels(const char *p, size_t len, bool utf8)
{
	size_t start = 0;

	for (size_t i = 0; i <= len; i++) {
		unsigned char c = i < len ? (unsigned char)p[i] : '.';
		size_t n;

		if (c != '.') {
			if (c >= 0x80 ? !utf8 : !is_ldh(c))
				return false;
			continue;
		}
		n = i - start;
		if (n == 0 || (!utf8 && n > LABEL_MAX) || p[start] == '-' || p[i - 1] == '-')
			return false;
		start = i + 1;
	}
	return true;
}

static bool
has_alabel(const char *p, size_t len)
{
	for (size_t i = 0; i + 4 <= len; i++)
		if ((i == 0 || p[i - 1] == '.') && strncmp(p + i, "xn--", 4) == 0)
			return true;
	return false;
}

bool
pa_domain_is_utf8(const char *in, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)in[i] >= 0x80)
			return true;
	return false;
}

/*
 * libidn2 on a NUL-terminated domain: its A-label form into out.  For an
 * A-label input, libidn2 decodes and re-encodes each "xn--" label (its
 * default round-trip check), so one that is not valid Punycode of a valid
 * U-label is refused.
 */
static int
idna_lookup(const char *in, char out[PA_DOMAIN_MAX + 1])
{
	uint8_t *res = NULL;
	size_t n;

	if (idn2_lookup_u8((const uint8_t *)in, &res, IDN2_FLAGS) != IDN2_OK) {
		idn2_free(res);
		return PA_ERROR;
	}
	n = strlen((const char *)res);
	if (n > PA_DOMAIN_MAX || !valid_labels((const char *)res, n, false)) {
		idn2_free(res);
		return PA_ERROR;
	}
	for (size_t i = 0; i <= n; i++)
		out[i] = lower((char)res[i]);
	idn2_free(res);
	return (int)n;
}

int
pa_domain_canonical(const char *in, size_t len, char out[PA_DOMAIN_MAX + 1], unsigned flags)
{
	char text[UTF8_INPUT_MAX + 1];
	int n;

	if (!pa_domain_is_utf8(in, len)) {
		if (len == 0 || len > PA_DOMAIN_MAX || !valid_labels(in, len, false))
			return PA_ERROR;
		for (size_t i = 0; i < len; i++)
			out[i] = lower(in[i]);
		out[len] = '\0';
		if ((flags & PA_DOMAIN_CHECK_ALABELS) && has_alabel(out, len)) {
			char again[PA_DOMAIN_MAX + 1];

			/* The round trip must give the same A-labels back. */
			n = idna_lookup(out, again);
			if (n < 0 || strcmp(again, out) != 0)
				return PA_ERROR;
		}
		return (int)len;
	}
	if (len > UTF8_INPUT_MAX || !valid_labels(in, len, true) || memchr(in, '\0', len) != NULL)
		return PA_ERROR;
	memcpy(text, in, len);
	text[len] = '\0';
	return idna_lookup(text, out);
}
