/*
 * ctl_http.c: the metrics HTTP listener (ctl_http.h).
 *
 * Just enough HTTP/1.0 for a Prometheus scrape: the request line of a
 * complete head is looked at, the body (if any) never; every response closes
 * the connection.  The server loop (ctl_server.c) does the I/O.
 */
#include "ctl/ctl_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/pa.h"
#include "ctl/ctl_metrics.h"

/* ADDR:PORT or [ADDR6]:PORT, numeric only: a management address, never a name to resolve. */
static int
parse_addr(const char *listen, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon = strrchr(listen, ':');
	size_t hostlen;
	char *end;
	unsigned long port;

	if (colon == NULL || colon == listen || (size_t)(colon - listen) >= sizeof(host))
		return PA_ERROR;
	hostlen = (size_t)(colon - listen);
	memcpy(host, listen, hostlen);
	host[hostlen] = '\0';
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || errno == ERANGE || port == 0 || port > 65535)
		return PA_ERROR;
	memset(ss, 0, sizeof(*ss));
	if (host[0] == '[' && hostlen > 2 && host[hostlen - 1] == ']') {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		host[hostlen - 1] = '\0';
		if (inet_pton(AF_INET6, host + 1, &s6->sin6_addr) != 1)
			return PA_ERROR;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*s6);
		return PA_OK;
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

	if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
		return PA_ERROR;
	s4->sin_family = AF_INET;
	s4->sin_port = htons((uint16_t)port);
	*len = sizeof(*s4);
	return PA_OK;
}

int
ctl_http_listen(const char *addr, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, one = 1;

	if (parse_addr(addr, &ss, &len) != PA_OK) {
		snprintf(err, errlen, "config key 'metrics.listen': '%s' is not ADDR:PORT", addr);
		return -1;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		snprintf(err, errlen, "metrics.listen: socket() failed: %s", strerror(errno));
		return -1;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    bind(fd, (struct sockaddr *)&ss, len) == -1 || listen(fd, 16) == -1) {
		snprintf(err, errlen, "metrics.listen: bind/listen(%s) failed: %s", addr,
		         strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static char *
response(const char *status, const char *type, const char *body, size_t body_len, size_t *out_len)
{
	char head[256];
	int n = snprintf(head, sizeof(head),
	                 "HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	                 "Connection: close\r\n\r\n",
	                 status, type, body_len);
	char *out = malloc((size_t)n + body_len);

	if (out == NULL)
		return NULL;
	memcpy(out, head, (size_t)n);
	memcpy(out + n, body, body_len);
	*out_len = (size_t)n + body_len;
	return out;
}

bool
ctl_http_respond(const struct ctl_env *env, const char *req, size_t len, char **resp,
                 size_t *resp_len)
{
	static const char not_found[] = "not found: try /metrics\n";
	static const char bad[] = "bad request\n";
	const char *eol = memmem(req, len, "\r\n", 2);
	char *text;
	size_t text_len;

	if (memmem(req, len, "\r\n\r\n", 4) == NULL && memmem(req, len, "\n\n", 2) == NULL)
		return false;
	if (eol == NULL)
		eol = memchr(req, '\n', len);
	if (eol == NULL || (size_t)(eol - req) < 4) {
		*resp = response("400 Bad Request", "text/plain", bad, sizeof(bad) - 1, resp_len);
		return true;
	}
	if (strncmp(req, "GET ", 4) != 0) {
		*resp = response("405 Method Not Allowed", "text/plain", bad, sizeof(bad) - 1,
		                 resp_len);
		return true;
	}
	/* "GET /metrics HTTP/1.x" or "GET /metrics?..." */
	if (!((size_t)(eol - req) >= 12 && strncmp(req + 4, "/metrics", 8) == 0 &&
	      (req[12] == ' ' || req[12] == '?' || req + 12 == eol))) {
		*resp = response("404 Not Found", "text/plain", not_found, sizeof(not_found) - 1,
		                 resp_len);
		return true;
	}
	text = ctl_metrics_text(env, &text_len);
	if (text == NULL) {
		*resp = NULL;
		return true;
	}
	*resp = response("200 OK", "text/plain; version=0.0.4; charset=utf-8", text, text_len,
	                 resp_len);
	free(text);
	return true;
}
