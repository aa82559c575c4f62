/*
 * ctl_client.c: one request and its reply over the control socket (ctl_client.h).
 *
 * Bounded in time (CTL_CLIENT_TIMEOUT_MS for the whole exchange) and in
 * memory (CTL_REPLY_MAX), so that pigeonctl never hangs on a wedged server.
 */
#include "ctl/ctl_client.h"

#include <errno.h>
#include <stdbool.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/pa.h"

static long
ms_left(const struct timespec *deadline)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
}

static int
connect_to(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "socket path %s is longer than %zu octets", path,
		         sizeof(sun.sun_path) - 1);
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		snprintf(err, errlen, "socket(AF_UNIX) failed: %s", strerror(errno));
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		snprintf(err, errlen, "connect(%s) failed: %s%s", path, strerror(errno),
		         errno == ENOENT || errno == ECONNREFUSED ? " (is pigeond running?)" : "");
		close(fd);
		return -1;
	}
	return fd;
}

static int
send_all(int fd, const char *buf, size_t len, const struct timespec *deadline, char *err,
         size_t errlen)
{
	while (len > 0) {
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		ssize_t n;

		if (poll(&p, 1, (int)(ms_left(deadline) > 0 ? ms_left(deadline) : 0)) == 0) {
			snprintf(err, errlen, "timed out sending the request");
			return PA_ERROR;
		}
		n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			snprintf(err, errlen, "send() failed: %s", strerror(errno));
			return PA_ERROR;
		}
		buf += n;
		len -= (size_t)n;
	}
	return PA_OK;
}

/* Reads up to the first newline; *line is malloc'ed and NUL-terminated. */
static int
read_line(int fd, char **line, size_t *len, const struct timespec *deadline, char *err,
          size_t errlen)
{
	struct pa_buf b;

	pa_buf_init(&b, 4096, CTL_REPLY_MAX);
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		uint8_t *nl;
		ssize_t r;

		/* Room for one octet more at least: a full buffer doubles, up to CTL_REPLY_MAX. */
		if (pa_buf_reserve(&b, 1) != PA_OK) {
			snprintf(err, errlen,
			         b.len == 0 ? "out of memory" : "reply too large or out of memory");
			break;
		}
		if (poll(&p, 1, (int)(ms_left(deadline) > 0 ? ms_left(deadline) : 0)) == 0) {
			snprintf(err, errlen, "timed out waiting for the reply");
			break;
		}
		r = recv(fd, b.data + b.len, b.cap - b.len, 0);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			snprintf(err, errlen, "recv() failed: %s", strerror(errno));
			break;
		}
		if (r == 0) {
			snprintf(err, errlen, "pigeond closed the connection without a reply");
			break;
		}
		nl = memchr(b.data + b.len, '\n', (size_t)r);
		b.len += (size_t)r;
		if (nl != NULL) {
			*nl = '\0';
			*line = (char *)b.data;
			*len = (size_t)(nl - b.data);
			return PA_OK;
		}
	}
	pa_buf_free(&b);
	return PA_ERROR;
}

int
ctl_client_call(const char *path, const json_t *request, json_t **reply, char *err, size_t errlen)
{
	struct timespec deadline;
	char *text = json_dumps(request, JSON_COMPACT), *line = NULL;
	size_t len = 0;
	char read_err[256];
	json_error_t jerr;
	bool sent;
	int fd, rc = PA_ERROR;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += CTL_CLIENT_TIMEOUT_MS / 1000;
	if (text == NULL) {
		snprintf(err, errlen, "json_dumps() failed: out of memory");
		return PA_ERROR;
	}
	fd = connect_to(path, err, errlen);
	if (fd == -1) {
		free(text);
		return PA_ERROR;
	}
	/*
	 * A refused peer may find the socket closed before its request is out
	 * (EPIPE): pigeond's refusal is still waiting to be read, so read anyway.
	 */
	sent = send_all(fd, text, strlen(text), &deadline, err, errlen) == PA_OK &&
	       send_all(fd, "\n", 1, &deadline, err, errlen) == PA_OK;
	if (read_line(fd, &line, &len, &deadline, sent ? err : read_err,
	              sent ? errlen : sizeof(read_err)) == PA_OK) {
		*reply = json_loadb(line, len, 0, &jerr);
		if (*reply != NULL && json_is_object(*reply)) {
			rc = PA_OK;
		} else {
			snprintf(err, errlen, "the reply is not a JSON object: %s",
			         *reply == NULL ? jerr.text : "another JSON value");
			json_decref(*reply);
			*reply = NULL;
		}
	}
	if (fd != -1)
		close(fd);
	free(line);
	free(text);
	return rc;
}
