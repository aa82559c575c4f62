/*
 * hostport.c: HOST:PORT and [IPv6]:PORT (hostport.h).
 */
#include "core/hostport.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "core/pa.h"

#define QUOTE_MAX 80 /* of the input, in an error */

int
pa_parse_hostport(const char *s, size_t len, struct pa_hostport *hp, char *err, size_t errlen)
{
	const char *colon = NULL, *host = s;
	size_t hostlen;
	unsigned long port = 0;
	int q = (int)(len > QUOTE_MAX ? QUOTE_MAX : len);

	memset(hp, 0, sizeof(*hp));
	for (size_t i = len; i > 0; i--)
		if (s[i - 1] == ':') {
			colon = s + i - 1;
			break;
		}
	if (colon == NULL || colon == s) {
		snprintf(err, errlen, "'%.*s' is not HOST:PORT", q, s);
		return PA_ERROR;
	}
	for (const char *p = colon + 1; p < s + len; p++) {
		if (*p < '0' || *p > '9' || port > 65535) {
			port = 0;
			break;
		}
		port = port * 10 + (unsigned long)(*p - '0');
	}
	if (port == 0 || port > 65535) {
		snprintf(err, errlen, "'%.*s' has no port 1..65535", q, s);
		return PA_ERROR;
	}
	hostlen = (size_t)(colon - s);
	if (s[0] == '[') {
		if (hostlen < 3 || s[hostlen - 1] != ']') {
			snprintf(err, errlen, "'%.*s' is not [IPv6]:PORT", q, s);
			return PA_ERROR;
		}
		host = s + 1;
		hostlen -= 2;
		hp->bracketed = true;
	}
	if (hostlen > PA_HOST_MAX || memchr(host, '\0', hostlen) != NULL) {
		snprintf(err, errlen, "the host of '%.*s' is too long", q, s);
		return PA_ERROR;
	}
	memcpy(hp->host, host, hostlen);
	hp->port = (uint16_t)port;
	return PA_OK;
}

int
pa_hostport_numeric(const struct pa_hostport *hp, struct sockaddr_storage *ss, socklen_t *sslen,
                    char *err, size_t errlen)
{
	memset(ss, 0, sizeof(*ss));
	if (hp->bracketed) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		if (inet_pton(AF_INET6, hp->host, &sin6->sin6_addr) != 1) {
			snprintf(err, errlen, "'%s' is not a numeric IPv6 address", hp->host);
			return PA_ERROR;
		}
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(hp->port);
		*sslen = sizeof(*sin6);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		if (inet_pton(AF_INET, hp->host, &sin->sin_addr) != 1) {
			snprintf(err, errlen, "'%s' is not a numeric IPv4 address", hp->host);
			return PA_ERROR;
		}
		sin->sin_family = AF_INET;
		sin->sin_port = htons(hp->port);
		*sslen = sizeof(*sin);
	}
	return PA_OK;
}

/* Letters, digits, '-' and '.' (RFC 1123 2.1), not all digits and dots. */
static bool
is_host_name(const char *s)
{
	bool letter = false;

	if (s[0] == '\0' || s[0] == '-' || s[0] == '.')
		return false;
	for (; *s != '\0'; s++) {
		if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '-')
			letter = true;
		else if (!((*s >= '0' && *s <= '9') || *s == '.'))
			return false;
	}
	return letter;
}

int
pa_hostport_resolve(const struct pa_hostport *hp, struct sockaddr_storage *ss, socklen_t *sslen,
                    char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
	int rc;

	if (hp->bracketed || !is_host_name(hp->host))
		return pa_hostport_numeric(hp, ss, sslen, err, errlen);
	rc = getaddrinfo(hp->host, NULL, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "'%s' does not resolve: getaddrinfo() failed: %s", hp->host,
		         gai_strerror(rc));
		return PA_ERROR;
	}
	memset(ss, 0, sizeof(*ss));
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*sslen = res->ai_addrlen;
	if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons(hp->port);
	else
		((struct sockaddr_in *)ss)->sin_port = htons(hp->port);
	freeaddrinfo(res);
	return PA_OK;
}
