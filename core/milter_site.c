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
#include <sys/stat.h>

#include "core/hostport.h"
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

/* unix:PATH: absolute, in a directory that exists, and a socket if it is there yet. */
static int
parse_unix(const char *spec, struct milter_site *site, char *err, size_t errlen)
{
	const char *path = spec + 5;
	struct sockaddr_un *sun = (struct sockaddr_un *)&site->sa;
	char dir[sizeof(site->path)];
	struct stat st;

	if (path[0] != '/' || strlen(path) >= sizeof(site->path)) {
		snprintf(err, errlen, "%s: not an absolute path of at most %zu octets", spec,
		         sizeof(site->path) - 1);
		return PA_ERROR;
	}
	snprintf(dir, sizeof(dir), "%.*s", (int)(strrchr(path, '/') - path), path);
	if (stat(dir[0] != '\0' ? dir : "/", &st) == -1 || !S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s: directory '%s' does not exist", spec,
		         dir[0] != '\0' ? dir : "/");
		return PA_ERROR;
	}
	if (stat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "%s: '%s' is not a socket", spec, path);
		return PA_ERROR;
	}
	site->family = AF_UNIX;
	snprintf(site->path, sizeof(site->path), "%s", path);
	memset(&site->sa, 0, sizeof(site->sa));
	sun->sun_family = AF_UNIX;
	memcpy(sun->sun_path, site->path, sizeof(site->path));
	site->salen = sizeof(*sun);
	return PA_OK;
}

/* inet:HOST:PORT, inet:[IPv6]:PORT, unix:PATH */
static int
parse_address(const char *spec, struct milter_site *site, char *err, size_t errlen)
{
	struct pa_hostport hp;
	char why[256];

	if (strncmp(spec, "unix:", 5) == 0)
		return parse_unix(spec, site, err, errlen);
	if (strncmp(spec, "inet:", 5) != 0) {
		snprintf(err, errlen, "%s: not inet:HOST:PORT or unix:PATH", spec);
		return PA_ERROR;
	}
	if (pa_parse_hostport(spec + 5, strlen(spec + 5), &hp, why, sizeof(why)) != PA_OK ||
	    pa_hostport_resolve(&hp, &site->sa, &site->salen, why, sizeof(why)) != PA_OK) {
		snprintf(err, errlen, "%s: %s", spec, why);
		return PA_ERROR;
	}
	site->family = site->sa.ss_family;
	site->port = hp.port;
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
