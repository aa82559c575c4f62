/*
 * screen_site.c: the postscreen syntax of the DNS lists and the names looked
 * up in them (screen_site.h).
 */
#include "core/screen_site.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/domain.h"
#include "core/pa.h"

#define WEIGHT_MAX 1000

#define STR_(x) #x
#define STR(x) STR_(x)
#define FILTER_SYNTAX "the filter is not four octet patterns such as 127.0.0.[2..11]"

/* A decimal 0..255 at *p; moves *p past it. */
static bool
octet_value(const char **p, unsigned *out)
{
	unsigned v = 0;
	const char *s = *p;

	if (!isdigit((unsigned char)*s))
		return false;
	while (isdigit((unsigned char)*s)) {
		v = v * 10 + (unsigned)(*s++ - '0');
		if (v > 255)
			return false;
	}
	*p = s;
	*out = v;
	return true;
}

static void
set_range(uint8_t bits[32], unsigned lo, unsigned hi)
{
	for (unsigned v = lo; v <= hi; v++)
		bits[v / 8] |= (uint8_t)(1u << (v % 8));
}

/*
 * One octet pattern: N, or [N;N..M;...].  Moves *p to what follows it (a
 * dot, a '*' or the end).
 */
static bool
octet_pattern(const char **p, uint8_t bits[32])
{
	const char *s = *p;
	unsigned lo, hi;

	if (*s != '[') {
		if (!octet_value(&s, &lo))
			return false;
		set_range(bits, lo, lo);
		*p = s;
		return true;
	}
	s++;
	for (;;) {
		if (!octet_value(&s, &lo))
			return false;
		hi = lo;
		if (s[0] == '.' && s[1] == '.') {
			s += 2;
			if (!octet_value(&s, &hi) || hi < lo)
				return false;
		}
		set_range(bits, lo, hi);
		if (*s == ';') {
			s++;
			continue;
		}
		if (*s != ']')
			return false;
		*p = s + 1;
		return true;
	}
}

/* Each parser returns NULL, or what is wrong with the entry. */
static const char *
parse_filter(const char *s, const char *end, struct screen_site *site)
{
	memset(site->filter, 0, sizeof(site->filter));
	for (int i = 0; i < 4; i++) {
		if (!octet_pattern(&s, site->filter[i]) || s > end)
			return FILTER_SYNTAX;
		if (i < 3 && *s++ != '.')
			return FILTER_SYNTAX;
	}
	if (s != end)
		return "trailing characters after the filter";
	site->has_filter = true;
	return NULL;
}

static const char *
parse_weight(const char *s, bool allowlist, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (s[0] == '\0' || isspace((unsigned char)s[0]) || *end != '\0' || errno == ERANGE)
		return "not a weight after '*'";
	if (!allowlist && (v < 1 || v > WEIGHT_MAX))
		return "a DNSBL's weight is 1.." STR(WEIGHT_MAX);
	if (allowlist && (v > -1 || v < -WEIGHT_MAX))
		return "a DNSWL's weight is -1..-" STR(WEIGHT_MAX);
	*out = (int)v;
	return NULL;
}

/* DOMAIN[=FILTER][*WEIGHT] */
static const char *
parse_entry(const char *entry, bool allowlist, struct screen_site *site)
{
	const char *star = strchr(entry, '*');
	const char *end = star != NULL ? star : entry + strlen(entry);
	const char *eq = memchr(entry, '=', (size_t)(end - entry));
	const char *dend = eq != NULL ? eq : end;
	char domain[PA_DOMAIN_MAX + 1];
	size_t dlen = (size_t)(dend - entry);
	const char *why;
	int n;

	memset(site, 0, sizeof(*site));
	site->weight = allowlist ? -1 : 1;
	if (dlen > 0 && entry[dlen - 1] == '.')
		dlen--; /* a fully qualified name: the same list */
	if (dlen == 0 || memchr(entry, '.', dlen) == NULL || pa_domain_is_utf8(entry, dlen))
		return "not a DNS list's domain";
	n = pa_domain_canonical(entry, dlen, domain, 0);
	if (n < 0)
		return "not a DNS list's domain";
	if (n > SCREEN_SITE_DOMAIN_MAX)
		return "the domain is longer than " STR(SCREEN_SITE_DOMAIN_MAX) " octets";
	memcpy(site->domain, domain, (size_t)n + 1);
	if (eq != NULL && (why = parse_filter(eq + 1, end, site)) != NULL)
		return why;
	if (star != NULL && (why = parse_weight(star + 1, allowlist, &site->weight)) != NULL)
		return why;
	return NULL;
}

int
screen_sites_parse(const char *list, bool allowlist, struct screen_site *sites, unsigned *n,
                   char *err, size_t errlen)
{
	const char *p = list;

	*n = 0;
	for (;;) {
		char entry[256];
		const char *why;
		size_t len;

		p += strspn(p, ", \t");
		if (*p == '\0')
			return PA_OK;
		len = strcspn(p, ", \t");
		if (len >= sizeof(entry)) {
			snprintf(err, errlen, "'%.32s...': longer than %zu octets", p,
			         sizeof(entry) - 1);
			return PA_ERROR;
		}
		memcpy(entry, p, len);
		entry[len] = '\0';
		p += len;
		if (*n == SCREEN_SITES_MAX) {
			snprintf(err, errlen, "more than %d lists", SCREEN_SITES_MAX);
			return PA_ERROR;
		}
		why = parse_entry(entry, allowlist, &sites[*n]);
		for (unsigned i = 0; why == NULL && i < *n; i++)
			if (strcmp(sites[i].domain, sites[*n].domain) == 0)
				why = "the list is named twice";
		if (why != NULL) {
			snprintf(err, errlen, "'%s': %s", entry, why);
			return PA_ERROR;
		}
		(*n)++;
	}
}

bool
screen_site_match(const struct screen_site *site, const uint8_t a[4])
{
	if (!site->has_filter)
		return true;
	for (int i = 0; i < 4; i++)
		if ((site->filter[i][a[i] / 8] >> (a[i] % 8) & 1) == 0)
			return false;
	return true;
}

int
screen_query_name(int family, const uint8_t *addr, const char *domain, char *out, size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	size_t dlen = strlen(domain), off = 0;

	if (family == AF_INET) {
		int n = snprintf(out, outlen, "%u.%u.%u.%u.%s", addr[3], addr[2], addr[1], addr[0],
		                 domain);

		return n < 0 || (size_t)n >= outlen ? PA_ERROR : n;
	}
	if (family != AF_INET6 || 64 + dlen + 1 > outlen)
		return PA_ERROR;
	for (int i = 15; i >= 0; i--) {
		out[off++] = hex[addr[i] & 0xf];
		out[off++] = '.';
		out[off++] = hex[addr[i] >> 4];
		out[off++] = '.';
	}
	memcpy(out + off, domain, dlen + 1);
	return (int)(off + dlen);
}
