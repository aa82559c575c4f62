/*
 * milter_site.c: milter.servers, parsed (milter_site.h).
 */
#include "core/milter_site.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/pa.h"

#define TIMEOUT_MIN_MS 10
#define TIMEOUT_MAX_MS 600000
#define CONNECTIONS_MAX 4096

static bool
parse_number(const char *s, unsigned long lo, unsigned long hi, unsigned *out)
{
	unsigned long v;
	char *end;

	if (!isdigit((unsigned char)s[0]))
		return false;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (*end != '\0' || errno == ERANGE || v < lo || v > hi)
		return false;
	*out = (unsigned)v;
	return true;
}

/* "timeout=500 default_action=tempfail", blank-separated. */
static int
parse_options(char *opts, struct milter_site *site, char *err, size_t errlen)
{
	char *save = NULL;

	for (char *o = strtok_r(opts, " \t", &save); o; o = strtok_r(NULL, " \t", &save)) {
		char *eq = strchr(o, '=');

		if (eq == NULL) {
			snprintf(err, errlen, "%s: option '%s' is not NAME=VALUE", site->name, o);
			return PA_ERROR;
		}
		*eq++ = '\0';
		if (strcmp(o, "timeout") == 0) {
			if (!parse_number(eq, TIMEOUT_MIN_MS, TIMEOUT_MAX_MS, &site->timeout_ms)) {
				snprintf(err, errlen, "%s: timeout '%s' is not %d..%d (ms)",
				         site->name, eq, TIMEOUT_MIN_MS, TIMEOUT_MAX_MS);
				return PA_ERROR;
			}
		} else if (strcmp(o, "default_action") == 0) {
			if (strcmp(eq, "accept") != 0 && strcmp(eq, "tempfail") != 0) {
				snprintf(err, errlen,
				         "%s: default_action '%s' is not accept or tempfail",
				         site->name, eq);
				return PA_ERROR;
			}
			site->tempfail = strcmp(eq, "tempfail") == 0;
		} else if (strcmp(o, "connections") == 0) {
			if (!parse_number(eq, 1, CONNECTIONS_MAX, &site->connections)) {
				snprintf(err, errlen, "%s: connections '%s' is not 1..%d",
				         site->name, eq, CONNECTIONS_MAX);
				return PA_ERROR;
			}
		} else {
			snprintf(err, errlen, "%s: unknown option '%s'", site->name, o);
			return PA_ERROR;
		}
	}
	return PA_OK;
}

/* inet:ADDR:PORT, inet:[ADDR6]:PORT, unix:PATH */
static int
parse_address(const char *spec, struct milter_site *site, char *err, size_t errlen)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *port;
	unsigned p;

	if (strncmp(spec, "unix:", 5) == 0) {
		if (spec[5] != '/' || strlen(spec + 5) >= sizeof(site->path)) {
			snprintf(err, errlen, "%s: not an absolute path of at most %zu octets",
			         spec, sizeof(site->path) - 1);
			return PA_ERROR;
		}
		site->family = AF_UNIX;
		snprintf(site->path, sizeof(site->path), "%s", spec + 5);
		return PA_OK;
	}
	if (strncmp(spec, "inet:", 5) != 0) {
		snprintf(err, errlen, "%s: not inet:ADDR:PORT or unix:PATH", spec);
		return PA_ERROR;
	}
	spec += 5;
	if (spec[0] == '[') {
		const char *close = strchr(spec, ']');

		if (close == NULL || close[1] != ':' || (size_t)(close - spec) > INET6_ADDRSTRLEN) {
			snprintf(err, errlen, "inet:%s: not inet:[IPv6]:PORT", spec);
			return PA_ERROR;
		}
		snprintf(host, sizeof(host), "%.*s", (int)(close - spec - 1), spec + 1);
		port = close + 2;
		site->family = AF_INET6;
	} else {
		const char *colon = strrchr(spec, ':');

		if (colon == NULL || (size_t)(colon - spec) > INET_ADDRSTRLEN) {
			snprintf(err, errlen, "inet:%s: not inet:ADDR:PORT", spec);
			return PA_ERROR;
		}
		snprintf(host, sizeof(host), "%.*s", (int)(colon - spec), spec);
		port = colon + 1;
		site->family = AF_INET;
	}
	if (inet_pton(site->family, host, site->addr) != 1) {
		snprintf(err, errlen, "inet:%s: '%s' is not an IP address (names are not resolved)",
		         spec, host);
		return PA_ERROR;
	}
	if (!parse_number(port, 1, 65535, &p)) {
		snprintf(err, errlen, "inet:%s: '%s' is not a port", spec, port);
		return PA_ERROR;
	}
	site->port = (uint16_t)p;
	return PA_OK;
}

int
milter_sites_parse(const char *list, const struct milter_site_defaults *defaults,
                   struct milter_site *sites, unsigned *n, char *err, size_t errlen)
{
	char copy[4096], *save = NULL;

	*n = 0;
	if (strlen(list) >= sizeof(copy)) {
		snprintf(err, errlen, "too long");
		return PA_ERROR;
	}
	snprintf(copy, sizeof(copy), "%s", list);
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		struct milter_site *site = &sites[*n];
		char *opts = NULL, *brace;
		size_t len;

		while (*tok == ' ' || *tok == '\t')
			tok++;
		len = strlen(tok);
		while (len > 0 && (tok[len - 1] == ' ' || tok[len - 1] == '\t'))
			tok[--len] = '\0';
		if (len == 0)
			continue;
		if (*n == MILTER_SITES_MAX) {
			snprintf(err, errlen, "more than %d filters", MILTER_SITES_MAX);
			return PA_ERROR;
		}
		memset(site, 0, sizeof(*site));
		site->timeout_ms = defaults->timeout_ms;
		site->tempfail = defaults->tempfail;
		site->connections = defaults->connections;
		brace = strchr(tok, '{');
		if (brace != NULL) {
			if (tok[len - 1] != '}') {
				snprintf(err, errlen, "%s: options must end with '}'", tok);
				return PA_ERROR;
			}
			tok[len - 1] = '\0';
			*brace = '\0';
			opts = brace + 1;
		}
		if (strlen(tok) >= sizeof(site->name)) {
			snprintf(err, errlen, "%.40s...: too long", tok);
			return PA_ERROR;
		}
		snprintf(site->name, sizeof(site->name), "%s", tok);
		if (parse_address(tok, site, err, errlen) != PA_OK)
			return PA_ERROR;
		if (opts != NULL && parse_options(opts, site, err, errlen) != PA_OK)
			return PA_ERROR;
		(*n)++;
	}
	return PA_OK;
}
