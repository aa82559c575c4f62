/*
 * ctl_server.c: the main lcore's poll() loop (ctl_server.h).
 *
 * One loop, no threads: the signalfd, the control listener, the metrics
 * listener and up to CTL_CLIENTS_MAX clients.  Every socket is non-blocking;
 * a client's request line is bounded (CTL_REQUEST_MAX, then an error and
 * close), its replies are queued and sent as the socket takes them, and
 * while a reply is pending no further request of that client is read, so a
 * client that does not read cannot make pigeond buffer without bound.  An
 * idle client is closed after CTL_IDLE_MS (a scraper after CTL_HTTP_IDLE_MS),
 * and scrapers hold at most CTL_HTTP_CLIENTS_MAX of the slots, so the
 * metrics port can never lock operators out of the control socket.
 */
#include "ctl/ctl_server.h"

#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/pa.h"
#include "ctl/ctl_client.h"
#include "ctl/ctl_commands.h"
#include "ctl/ctl_handoff.h"
#include "ctl/ctl_http.h"

#define CTL_IDLE_MS 60000
#define CTL_HTTP_IDLE_MS 10000
#define CTL_HTTP_CLIENTS_MAX 4
#define CTL_POLL_MS 1000
#define CTL_BACKLOG 16
#define CTL_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)

enum client_kind { CLIENT_FREE, CLIENT_CTL, CLIENT_HTTP };

struct client {
	enum client_kind kind;
	int fd;
	char *in; /* CTL_REQUEST_MAX (or CTL_HTTP_REQUEST_MAX) octets, allocated on accept */
	size_t in_len;
	struct pa_buf out; /* replies not sent yet; freed once all is sent */
	bool close_after;  /* once out is sent */
	uint64_t last_ms;
};

struct ctl_server {
	struct ctl_env *env;
	int listen_fd;
	int http_fd; /* -1: no metrics.listen */
	uid_t own_uid;
	gid_t group_gid;
	bool has_group;
	uint64_t last_drain_ms;
	struct client clients[CTL_CLIENTS_MAX];
};

static uint64_t
now_ms(void)
{
	return pa_monotonic_ms();
}

/* Looks up ctl.owner and ctl.group; either may be empty. */
static int
resolve_ids(const struct pa_config *config, uid_t *uid, gid_t *gid, bool *has_group, char *err,
            size_t errlen)
{
	*uid = (uid_t)-1;
	*gid = (gid_t)-1;
	*has_group = false;
	if (config->ctl_owner[0] != '\0') {
		struct passwd *pw = getpwnam(config->ctl_owner);

		if (pw == NULL) {
			snprintf(err, errlen, "config key 'ctl.owner': no user '%s'",
			         config->ctl_owner);
			return PA_ERROR;
		}
		*uid = pw->pw_uid;
	}
	if (config->ctl_group[0] != '\0') {
		struct group *gr = getgrnam(config->ctl_group);

		if (gr == NULL) {
			snprintf(err, errlen, "config key 'ctl.group': no group '%s'",
			         config->ctl_group);
			return PA_ERROR;
		}
		*gid = gr->gr_gid;
		*has_group = true;
	}
	if (config->user[0] != '\0' && (*uid == (uid_t)-1 || *gid == (gid_t)-1)) {
		/* pigeond's user after it gives up root (core/privileges.h) owns its socket. */
		struct passwd *pw = getpwnam(config->user);
		struct group *gr = config->group[0] != '\0' ? getgrnam(config->group) : NULL;

		if (pw == NULL) {
			snprintf(err, errlen, "config key 'user': no user '%s'", config->user);
			return PA_ERROR;
		}
		if (*uid == (uid_t)-1)
			*uid = pw->pw_uid;
		if (*gid == (gid_t)-1)
			*gid = gr != NULL ? gr->gr_gid : pw->pw_gid;
	}
	return PA_OK;
}

/*
 * A socket file left by a pigeond that died is removed; one that another
 * process still answers on is not: two servers on one spool must not start.
 */
static int
clear_stale(const struct sockaddr_un *sun, char *err, size_t errlen)
{
	struct stat st;
	int fd;

	if (lstat(sun->sun_path, &st) == -1)
		return errno == ENOENT ? PA_OK : PA_ERROR;
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "ctl.socket %s exists and is not a socket", sun->sun_path);
		return PA_ERROR;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		snprintf(err, errlen, "socket(AF_UNIX) failed: %s", strerror(errno));
		return PA_ERROR;
	}
	if (connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0) {
		close(fd);
		snprintf(err, errlen, "ctl.socket %s: another pigeond answers on it",
		         sun->sun_path);
		return PA_ERROR;
	}
	close(fd);
	if (unlink(sun->sun_path) == -1 && errno != ENOENT) {
		snprintf(err, errlen, "unlink(%s) failed: %s", sun->sun_path, strerror(errno));
		return PA_ERROR;
	}
	return PA_OK;
}

static int
open_unix(struct ctl_server *srv, const struct pa_config *config, char *err, size_t errlen)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	char path[sizeof(config->ctl_socket) + sizeof(config->spool_dir) + 32];
	uid_t uid;
	gid_t gid;

	if (config->ctl_socket[0] != '\0')
		snprintf(path, sizeof(path), "%s", config->ctl_socket);
	else
		snprintf(path, sizeof(path), "%s/pigeond.sock", config->spool_dir);
	if (strlen(path) > CTL_PATH_MAX) {
		snprintf(
		    err, errlen,
		    "config key 'ctl.socket': '%.200s' is %zu octets, longer than the %zu a Unix "
		    "socket path may have: set ctl.socket to a shorter path",
		    path, strlen(path), CTL_PATH_MAX);
		return PA_ERROR;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	/* Fits: checked against sun_path above, and socket_path is as large. */
	memcpy(srv->env->socket_path, path, strlen(path) + 1);
	if (resolve_ids(config, &uid, &gid, &srv->has_group, err, errlen) != PA_OK)
		return PA_ERROR;
	srv->group_gid = gid;
	if (config->user[0] != '\0') {
		struct passwd *pw = getpwnam(config->user);

		/* The peer check's "pigeond's own user" is the one it runs as after the drop. */
		if (pw != NULL)
			srv->own_uid = pw->pw_uid;
	}
	if (clear_stale(&sun, err, errlen) != PA_OK) {
		if (err[0] == '\0')
			snprintf(err, errlen, "lstat(%s) failed: %s", path, strerror(errno));
		return PA_ERROR;
	}
	srv->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (srv->listen_fd == -1) {
		snprintf(err, errlen, "socket(AF_UNIX) failed: %s", strerror(errno));
		return PA_ERROR;
	}
	if (bind(srv->listen_fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		snprintf(err, errlen, "bind(%s) failed: %s", path, strerror(errno));
		return PA_ERROR;
	}
	/* Every peer's credentials are checked on accept, also in the moment before chmod. */
	if (chmod(path, config->ctl_mode) == -1) {
		snprintf(err, errlen, "chmod(%s) failed: %s", path, strerror(errno));
		return PA_ERROR;
	}
	if ((uid != (uid_t)-1 || gid != (gid_t)-1) && chown(path, uid, gid) == -1) {
		snprintf(err, errlen, "chown(%s) failed: %s", path, strerror(errno));
		return PA_ERROR;
	}
	if (listen(srv->listen_fd, CTL_BACKLOG) == -1) {
		snprintf(err, errlen, "listen(%s) failed: %s", path, strerror(errno));
		return PA_ERROR;
	}
	return PA_OK;
}

int
ctl_server_open(struct ctl_server **out, const struct pa_config *config, struct ctl_env *env,
                char *err, size_t errlen)
{
	struct ctl_server *srv = calloc(1, sizeof(*srv));

	err[0] = '\0';
	if (srv == NULL) {
		snprintf(err, errlen, "ctl: out of memory");
		return PA_ERROR;
	}
	srv->env = env;
	srv->listen_fd = -1;
	srv->http_fd = -1;
	srv->own_uid = geteuid();
	for (size_t i = 0; i < CTL_CLIENTS_MAX; i++)
		srv->clients[i].fd = -1;
	if (open_unix(srv, config, err, errlen) != PA_OK) {
		/* Do not remove a file another pigeond answers on. */
		if (srv->listen_fd != -1)
			close(srv->listen_fd);
		free(srv);
		return PA_ERROR;
	}
	snprintf(env->metrics_listen, sizeof(env->metrics_listen), "%s", config->metrics_listen);
	if (config->metrics_listen[0] != '\0') {
		srv->http_fd = ctl_http_listen(config->metrics_listen, err, errlen);
		if (srv->http_fd == -1) {
			ctl_server_close(srv);
			return PA_ERROR;
		}
	}
	*out = srv;
	return PA_OK;
}

static void
client_close(struct client *c)
{
	if (c->fd != -1)
		close(c->fd);
	free(c->in);
	pa_buf_free(&c->out);
	*c = (struct client){.kind = CLIENT_FREE, .fd = -1};
}

/* Queues bytes to send: PA_ERROR out of memory or past CTL_REPLY_MAX (no client would take it). */
static int
client_queue(struct client *c, const char *data, size_t len)
{
	return pa_buf_append(&c->out, data, len);
}

/* Sends what the socket takes; PA_ERROR when the client is gone. */
static int
client_flush(struct client *c)
{
	while (pa_buf_pending(&c->out) > 0) {
		ssize_t n =
		    send(c->fd, pa_buf_head(&c->out), pa_buf_pending(&c->out), MSG_NOSIGNAL);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK ? PA_AGAIN : PA_ERROR;
		}
		pa_buf_consume(&c->out, (size_t)n);
	}
	pa_buf_free(&c->out);
	return PA_OK;
}

static void
queue_json(struct client *c, json_t *reply)
{
	static const char fallback[] = "{\"ok\":false,\"error\":\"internal error: reply not "
	                               "encodable\"}\n";
	char *text = reply != NULL ? json_dumps(reply, JSON_COMPACT) : NULL;

	if (text == NULL || client_queue(c, text, strlen(text)) != PA_OK ||
	    client_queue(c, "\n", 1) != PA_OK) {
		pa_buf_free(&c->out);
		if (client_queue(c, fallback, sizeof(fallback) - 1) != PA_OK)
			c->close_after = true;
	}
	free(text);
	json_decref(reply);
}

static void
queue_error(struct client *c, const char *msg)
{
	queue_json(c, ctl_error_reply(msg));
}

static bool
peer_allowed(const struct ctl_server *srv, int fd, struct ucred *cred)
{
	socklen_t len = sizeof(*cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, &len) == -1) {
		pa_log_err("getsockopt(SO_PEERCRED) failed: %s", strerror(errno));
		return false;
	}
	return cred->uid == 0 || cred->uid == srv->own_uid ||
	       (srv->has_group && cred->gid == srv->group_gid);
}

static struct client *
free_slot(struct ctl_server *srv)
{
	for (size_t i = 0; i < CTL_CLIENTS_MAX; i++)
		if (srv->clients[i].kind == CLIENT_FREE)
			return &srv->clients[i];
	return NULL;
}

/* A client refused before it gets a slot: one best-effort line, then close. */
static void
refuse(int fd, const char *msg)
{
	json_t *reply = ctl_error_reply(msg);
	char *text = reply != NULL ? json_dumps(reply, JSON_COMPACT) : NULL;

	if (text != NULL) {
		size_t len = strlen(text);

		text[len] = '\n';
		/* Non-blocking and short: it fits any socket buffer, or is lost. */
		if (send(fd, text, len + 1, MSG_NOSIGNAL | MSG_DONTWAIT) == -1)
			pa_log_debug("control: send(refusal) failed: %s", strerror(errno));
		text[len] = '\0';
	}
	free(text);
	json_decref(reply);
	close(fd);
}

static unsigned
http_clients(const struct ctl_server *srv)
{
	unsigned n = 0;

	for (size_t i = 0; i < CTL_CLIENTS_MAX; i++)
		n += srv->clients[i].kind == CLIENT_HTTP;
	return n;
}

static void
accept_clients(struct ctl_server *srv, int lfd, enum client_kind kind)
{
	for (int burst = 0; burst < CTL_CLIENTS_MAX; burst++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct client *c;
		struct ucred cred = {0, (uid_t)-1, (gid_t)-1};

		if (fd == -1) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				pa_log_warning("control: accept4() failed: %s", strerror(errno));
			return;
		}
		if (kind == CLIENT_CTL && !peer_allowed(srv, fd, &cred)) {
			pa_log_notice("control: refused uid=%u gid=%u pid=%d: not allowed",
			              (unsigned)cred.uid, (unsigned)cred.gid, (int)cred.pid);
			refuse(fd, "permission denied: this user may not use pigeond's control "
			           "socket");
			continue;
		}
		/* Scrapers never take the slots operators need. */
		if (kind == CLIENT_HTTP && http_clients(srv) >= CTL_HTTP_CLIENTS_MAX) {
			close(fd);
			continue;
		}
		c = free_slot(srv);
		if (c != NULL)
			c->in = malloc(kind == CLIENT_CTL ? CTL_REQUEST_MAX : CTL_HTTP_REQUEST_MAX);
		if (c == NULL || c->in == NULL) {
			refuse(fd, "too many control clients: try again later");
			continue;
		}
		c->kind = kind;
		c->fd = fd;
		c->last_ms = now_ms();
		pa_buf_init(&c->out, 4096, CTL_REPLY_MAX);
	}
}

/* Answers every complete request line in the buffer. */
static void
ctl_requests(struct ctl_server *srv, struct client *c)
{
	size_t start = 0;
	char *nl;

	while (!c->close_after && pa_buf_pending(&c->out) == 0 &&
	       (nl = memchr(c->in + start, '\n', c->in_len - start)) != NULL) {
		size_t len = (size_t)(nl - (c->in + start));
		json_error_t jerr;
		json_t *req;

		if (len > 0 && c->in[start + len - 1] == '\r')
			len--;
		req = json_loadb(c->in + start, len, JSON_REJECT_DUPLICATES, &jerr);
		start = (size_t)(nl - c->in) + 1;
		if (req == NULL) {
			char msg[256];

			snprintf(msg, sizeof(msg), "not JSON: %.160s", jerr.text);
			queue_error(c, msg);
			continue;
		}
		queue_json(c, ctl_dispatch(srv->env, req));
		json_decref(req);
	}
	memmove(c->in, c->in + start, c->in_len - start);
	c->in_len -= start;
	if (c->in_len == CTL_REQUEST_MAX) {
		char msg[96];

		snprintf(msg, sizeof(msg), "request longer than %u octets", CTL_REQUEST_MAX);
		queue_error(c, msg);
		c->close_after = true;
		c->in_len = 0;
	}
}

static void
http_request(struct ctl_server *srv, struct client *c)
{
	static const char too_big[] = "HTTP/1.0 431 Request Header Fields Too Large\r\n"
	                              "Content-Length: 0\r\nConnection: close\r\n\r\n";
	char *resp;
	size_t len;

	if (ctl_http_respond(srv->env, c->in, c->in_len, &resp, &len)) {
		if (resp == NULL || client_queue(c, resp, len) != PA_OK)
			c->close_after = true; /* out of memory: drop the scrape, keep serving */
		free(resp);
		c->close_after = true;
	} else if (c->in_len == CTL_HTTP_REQUEST_MAX) {
		client_queue(c, too_big, sizeof(too_big) - 1);
		c->close_after = true;
	}
}

static void
client_read(struct ctl_server *srv, struct client *c)
{
	size_t cap = c->kind == CLIENT_CTL ? CTL_REQUEST_MAX : CTL_HTTP_REQUEST_MAX;

	while (c->in_len < cap && pa_buf_pending(&c->out) == 0 && !c->close_after) {
		ssize_t n = recv(c->fd, c->in + c->in_len, cap - c->in_len, 0);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				client_close(c);
			return;
		}
		if (n == 0) {
			/* Answer what came before the end (a request without its newline is not
			 * one). */
			if (c->kind == CLIENT_CTL)
				ctl_requests(srv, c);
			c->close_after = true;
			if (pa_buf_pending(&c->out) == 0)
				client_close(c);
			return;
		}
		c->in_len += (size_t)n;
		c->last_ms = now_ms();
		if (c->kind == CLIENT_CTL)
			ctl_requests(srv, c);
		else
			http_request(srv, c);
	}
}

static void
client_event(struct ctl_server *srv, struct client *c, short revents)
{
	if (revents & (POLLIN | POLLHUP | POLLERR))
		client_read(srv, c);
	while (c->kind != CLIENT_FREE) {
		int rc = client_flush(c);

		if (rc == PA_ERROR || (rc == PA_OK && c->close_after)) {
			client_close(c);
			return;
		}
		/* A reply went out: a request that waited behind it is answered now. */
		if (rc != PA_OK || c->kind != CLIENT_CTL || c->in_len == 0)
			return;
		ctl_requests(srv, c);
		if (pa_buf_pending(&c->out) == 0)
			return;
	}
}

/* The reply to a SIGHUP goes to the log; a reload command's to its client. */
static void
signal_reload(struct ctl_server *srv)
{
	char err[CTL_ERR_MAX] = "";

	if (srv->env->reload(srv->env->reload_arg, err, sizeof(err)) != PA_OK)
		pa_log_debug("SIGHUP reload refused: %s", err);
}

/* Returns true when a stop signal arrived. */
static bool
read_signal(struct ctl_server *srv, int sigfd)
{
	struct signalfd_siginfo si;
	ssize_t n = read(sigfd, &si, sizeof(si));

	if (n == -1) {
		if (errno == EINTR || errno == EAGAIN)
			return false;
		pa_log_err("read(signalfd) failed: %s", strerror(errno));
		return true;
	}
	if (si.ssi_signo == SIGHUP) {
		signal_reload(srv);
		return false;
	}
	pa_log_notice("signal %u: stopping", si.ssi_signo);
	return true;
}

/* Sends what is still queued (the shutdown reply) without waiting long for slow readers. */
static void
flush_all(struct ctl_server *srv)
{
	for (size_t i = 0; i < CTL_CLIENTS_MAX; i++)
		if (srv->clients[i].kind != CLIENT_FREE)
			client_flush(&srv->clients[i]);
}

void
ctl_server_run(struct ctl_server *srv, int sigfd)
{
	struct pollfd pfd[3 + CTL_CLIENTS_MAX];
	struct client *owner[3 + CTL_CLIENTS_MAX];

	for (;;) {
		nfds_t n = 0;
		uint64_t now;
		int ready;

		pfd[n++] = (struct pollfd){.fd = sigfd, .events = POLLIN};
		pfd[n++] = (struct pollfd){.fd = srv->listen_fd, .events = POLLIN};
		pfd[n++] = (struct pollfd){.fd = srv->http_fd, .events = POLLIN};
		for (size_t i = 0; i < CTL_CLIENTS_MAX; i++) {
			struct client *c = &srv->clients[i];

			if (c->kind == CLIENT_FREE)
				continue;
			owner[n] = c;
			pfd[n++] = (struct pollfd){
			    .fd = c->fd,
			    .events = (short)(pa_buf_pending(&c->out) > 0 ? POLLOUT : POLLIN),
			};
		}
		ready = poll(pfd, n, CTL_POLL_MS);
		if (ready == -1 && errno != EINTR) {
			pa_log_err("poll() failed: %s", strerror(errno));
			return;
		}
		/*
		 * A signal still runs the timed work below: DPDK's net_tap PMD
		 * raises SIGIO for every packet its TAP receives, so under
		 * traffic a loop that started over on EINTR never reached the
		 * tick, and ticket keys went unrotated for as long as packets
		 * came more often than once a second.
		 */
		if (ready > 0) {
			if ((pfd[0].revents & POLLIN) && read_signal(srv, sigfd))
				return;
			if (pfd[1].revents & POLLIN)
				accept_clients(srv, srv->listen_fd, CLIENT_CTL);
			if (srv->http_fd != -1 && (pfd[2].revents & POLLIN))
				accept_clients(srv, srv->http_fd, CLIENT_HTTP);
			for (nfds_t i = 3; i < n; i++)
				if (pfd[i].revents != 0 && owner[i]->fd == pfd[i].fd)
					client_event(srv, owner[i], pfd[i].revents);
		}
		now = now_ms();
		if (srv->env->tick != NULL)
			srv->env->tick(srv->env->tick_arg, now);
		/* Once a second is enough: a drain takes as long as the delivery tier does. */
		if (srv->env->draining && now - srv->last_drain_ms >= CTL_POLL_MS) {
			srv->last_drain_ms = now;
			if (ctl_drain_done(srv->env)) {
				pa_log_notice("drain: the spool is empty: stopping");
				srv->env->stop = true;
			}
		}
		if (srv->env->stop) {
			flush_all(srv);
			return;
		}
		for (size_t i = 0; i < CTL_CLIENTS_MAX; i++)
			if (srv->clients[i].kind != CLIENT_FREE &&
			    now - srv->clients[i].last_ms > (srv->clients[i].kind == CLIENT_HTTP
			                                         ? CTL_HTTP_IDLE_MS
			                                         : CTL_IDLE_MS))
				client_close(&srv->clients[i]);
	}
}

void
ctl_server_close(struct ctl_server *srv)
{
	if (srv == NULL)
		return;
	for (size_t i = 0; i < CTL_CLIENTS_MAX; i++)
		if (srv->clients[i].kind != CLIENT_FREE)
			client_close(&srv->clients[i]);
	if (srv->http_fd != -1)
		close(srv->http_fd);
	if (srv->listen_fd != -1) {
		close(srv->listen_fd);
		if (unlink(srv->env->socket_path) == -1 && errno != ENOENT)
			pa_log_warning("unlink(%s) failed: %s", srv->env->socket_path,
			               strerror(errno));
	}
	free(srv);
}
