/*
 * kernel_backend.c: the SMTP engine over ordinary kernel sockets.
 *
 * Each worker lcore runs its own epoll loop over non-blocking sockets, with
 * its own SO_REUSEPORT listener, so the kernel spreads connections across
 * workers and no worker ever waits for another.  The spool wakes a worker
 * through an eventfd in the same epoll set when it has completions for it.
 * What it promises: no call here blocks on disk or on another thread; a
 * connection's input is read only as fast as the engine consumes it (bounded
 * buffer per connection); a connection whose message is with the spool is
 * never freed before the spool answers.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_lcore.h>
#include <rte_timer.h>

#include "core/log.h"
#include "core/pa.h"
#include "dataplane/ingest.h"
#include "dataplane/kernel_backend.h"
#include "dataplane/worker.h"

#define KCONN_INPUT_SIZE 8192 /* >= a command line and a BDAT/DATA read burst */
#define EVENT_BURST 32
#define ACCEPT_BURST 32
#define EPOLL_WAIT_MS 50 /* bounds timer and stop-flag latency */

enum kobject_kind { KOBJ_LISTENER, KOBJ_NOTIFY, KOBJ_CONN };

struct kobject {
	enum kobject_kind kind;
};

struct kconn {
	struct kobject obj; /* first: epoll data points here */
	struct ingest_conn ingest;
	struct kernel_worker *kw;
	int fd;
	bool readable; /* edge-triggered: more may be waiting in the kernel */
	bool writable;
	bool peer_closed;
	bool peer_hup; /* epoll reported RDHUP/HUP: a read must reach the EOF, however short */
	size_t in_len;
	uint8_t *in; /* allocated while the connection has unconsumed input */
	struct rte_timer timer;
	uint64_t deadline; /* TSC; the timer may fire earlier and then re-arms */
	uint32_t progress; /* ingest_progress() when the deadline was set */
	unsigned timeout_ms; /* ingest_timeout_ms() then */
	TAILQ_ENTRY(kconn) link;
};

struct kernel_worker {
	struct pa_worker *worker;
	int epoll_fd;
	struct kobject listener;
	int listen_fd;
	struct kobject notify;
	int notify_fd;
	TAILQ_HEAD(, kconn) conns;
	unsigned nconns;
};

static void conn_process(struct kconn *c);

static int
set_sockopt_int(int fd, int level, int name, int value, const char *what)
{
	if (setsockopt(fd, level, name, &value, sizeof(value)) == -1) {
		pa_log_err("setsockopt(%s) failed: %s", what, strerror(errno));
		return PA_ERROR;
	}
	return PA_OK;
}

#define PA_KERNEL_LISTENERS_MAX 64 /* the `workers` key's maximum */

static int
open_listener(const struct pa_config *config)
{
	int fd =
	    socket(config->listen_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd == -1) {
		pa_log_err("socket() failed: %s", strerror(errno));
		return -1;
	}
	if (set_sockopt_int(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR") != PA_OK ||
	    set_sockopt_int(fd, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT") != PA_OK)
		goto fail;
	if (bind(fd, (const struct sockaddr *)&config->listen_addr, config->listen_addrlen) == -1) {
		pa_log_err("bind(%s) failed: %s", config->listen, strerror(errno));
		goto fail;
	}
	if (listen(fd, 1024) == -1) {
		pa_log_err("listen(%s) failed: %s", config->listen, strerror(errno));
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return -1;
}

/*
 * Every worker's listener is bound here, on the main lcore before pigeond
 * gives up root (docs/security.md): port 25 needs the privilege, serving it
 * does not.  kernel_backend_init() hands them out by worker id.
 */
static int prebound[PA_KERNEL_LISTENERS_MAX];
static unsigned nprebound;

static int
take_listener(unsigned worker, const struct pa_config *config)
{
	int fd;

	if (worker >= nprebound || prebound[worker] == -1)
		return open_listener(config);
	fd = prebound[worker];
	prebound[worker] = -1;
	return fd;
}

/*
 * SO_REUSEPORT would let a second pigeond started by mistake share the port
 * and split the traffic between two spools; a probe bind without it fails
 * with EADDRINUSE while anyone serves the address.
 */
int
kernel_backend_global_init(const struct pa_config *config)
{
	int fd = socket(config->listen_addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int rc = PA_OK;

	if (fd == -1) {
		pa_log_err("socket() failed: %s", strerror(errno));
		return PA_ERROR;
	}
	if (set_sockopt_int(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR") != PA_OK)
		rc = PA_ERROR;
	else if (bind(fd, (const struct sockaddr *)&config->listen_addr, config->listen_addrlen) ==
	         -1) {
		pa_log_err("bind(%s) failed: %s%s", config->listen, strerror(errno),
		           errno == EADDRINUSE ? " (is another pigeond serving it?)" : "");
		rc = PA_ERROR;
	}
	close(fd);
	for (nprebound = 0;
	     rc == PA_OK && nprebound < config->workers && nprebound < PA_KERNEL_LISTENERS_MAX;
	     nprebound++) {
		prebound[nprebound] = open_listener(config);
		if (prebound[nprebound] == -1)
			rc = PA_ERROR;
	}
	return rc;
}

static int
epoll_add(int epoll_fd, int fd, uint32_t events, void *ptr)
{
	struct epoll_event ev = {.events = events, .data.ptr = ptr};

	if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) == -1) {
		pa_log_err("epoll_ctl(ADD) failed: %s", strerror(errno));
		return PA_ERROR;
	}
	return PA_OK;
}

static void
conn_free(struct kconn *c)
{
	free(c->in);
	free(c);
}

static void
conn_close(struct kconn *c)
{
	struct kernel_worker *kw = c->kw;

	rte_timer_stop_sync(&c->timer);
	if (c->fd != -1) {
		/* close() also removes the fd from the epoll set. */
		close(c->fd);
		c->fd = -1;
	}
	TAILQ_REMOVE(&kw->conns, c, link);
	kw->nconns--;
	if (ingest_close(&c->ingest))
		conn_free(c);
	/* else: the spool still holds its message; kernel_resume() frees it. */
}

static void
conn_timeout(struct rte_timer *timer, void *arg)
{
	struct kconn *c = arg;

	uint64_t now = rte_get_timer_cycles();

	if (now < c->deadline) {
		/* There was activity since it was armed: wait out the rest. */
		rte_timer_reset(timer, c->deadline - now, SINGLE, rte_lcore_id(), conn_timeout, c);
		return;
	}
	if (c->ingest.storing)
		return; /* the spool answers soon; the store has its own bound */
	if (ingest_closing(&c->ingest)) {
		/*
		 * Its last reply has not left in a whole timeout: a client that
		 * pipelines and never reads.  Nothing is owed it any more.
		 */
		conn_close(c);
		return;
	}
	ingest_timeout(&c->ingest);
	conn_process(c);
}

/*
 * Moves the deadline on every event but touches the timer list only when the
 * new deadline is earlier than the armed one (a shorter state timeout) or
 * nothing is armed: the common case is one TSC read, not a skip-list update.
 */
static void
conn_arm_timer(struct kconn *c)
{
	unsigned ms = ingest_timeout_ms(&c->ingest);
	uint32_t progress = ingest_progress(&c->ingest);
	uint64_t now, ticks;

	/*
	 * The deadline moves only when the client achieved something (a reply,
	 * a KiB of content) or the state's wait changed, never on bytes alone:
	 * a client trickling one octet a second (slowloris) meets the timeout.
	 */
	if (rte_timer_pending(&c->timer) && progress == c->progress && ms == c->timeout_ms)
		return;
	c->progress = progress;
	c->timeout_ms = ms;
	now = rte_get_timer_cycles();
	ticks = rte_get_timer_hz() * ms / 1000;

	c->deadline = now + ticks;
	if (rte_timer_pending(&c->timer) && c->timer.expire <= c->deadline)
		return;
	rte_timer_reset(&c->timer, ticks, SINGLE, rte_lcore_id(), conn_timeout, c);
}

/* Sends pending replies; PA_AGAIN when the socket is full, PA_ERROR when it is dead. */
static int
conn_flush(struct kconn *c)
{
	for (;;) {
		size_t len;
		const uint8_t *out = ingest_output(&c->ingest, &len);
		ssize_t n;

		if (len == 0)
			return PA_OK;
		if (!c->writable)
			return PA_AGAIN;
		n = send(c->fd, out, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				c->writable = false;
				return PA_AGAIN;
			}
			if (errno == EINTR)
				continue;
			return PA_ERROR;
		}
		ingest_output_consumed(&c->ingest, (size_t)n);
	}
}

/* Reads into the connection's buffer; PA_AGAIN when nothing more is there now. */
static int
conn_read(struct kconn *c)
{
	size_t want;
	ssize_t n;

	if (c->in == NULL) {
		c->in = malloc(KCONN_INPUT_SIZE);
		if (c->in == NULL)
			return PA_ERROR;
	}
	want = KCONN_INPUT_SIZE - c->in_len;
	n = recv(c->fd, c->in + c->in_len, want, MSG_DONTWAIT);
	if (n > 0) {
		c->in_len += (size_t)n;
		/*
		 * A short read drained the socket: anything arriving later raises
		 * a new edge, so the read that would only say EAGAIN is saved.
		 */
		if ((size_t)n < want && !c->peer_hup)
			c->readable = false;
		return PA_OK;
	}
	if (n == 0) {
		c->peer_closed = true;
		return PA_ERROR;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK) {
		c->readable = false;
		return PA_AGAIN;
	}
	if (errno == EINTR)
		return PA_OK;
	return PA_ERROR;
}

/* Feeds buffered input to the engine; returns the ingest status. */
static enum ingest_status
conn_feed(struct kconn *c)
{
	size_t consumed;
	enum ingest_status st = ingest_input(&c->ingest, c->in, c->in_len, &consumed);

	if (consumed > 0) {
		memmove(c->in, c->in + consumed, c->in_len - consumed);
		c->in_len -= consumed;
	}
	if (c->in_len == 0 && c->in != NULL) {
		/* Idle connections hold no input buffer. */
		free(c->in);
		c->in = NULL;
	}
	return st;
}

/*
 * Runs the connection as far as it can go without waiting: feed what is
 * buffered, send replies, read more, until the engine waits for the spool,
 * the socket has nothing more, or the session ends.
 */
static void
conn_process(struct kconn *c)
{
	for (;;) {
		enum ingest_status st = c->ingest.storing ? INGEST_STORING : INGEST_READY;
		size_t before = c->in_len;
		int rc;

		/* TLS may hold records the engine could not take yet: feed those too. */
		if ((c->in_len > 0 || ingest_input_pending(&c->ingest)) && st == INGEST_READY)
			st = conn_feed(c);
		if (conn_flush(c) == PA_ERROR) {
			conn_close(c);
			return;
		}
		if (st == INGEST_CLOSE || ingest_closing(&c->ingest)) {
			size_t pending;

			ingest_output(&c->ingest, &pending);
			if (pending == 0 && !c->ingest.storing) {
				conn_close(c);
				return;
			}
			break; /* wait for EPOLLOUT (or the spool) to finish */
		}
		if (st == INGEST_STORING)
			break;
		if (c->in_len == before && c->in_len == KCONN_INPUT_SIZE)
			break; /* the engine holds back: its output is waiting for the client */
		if (c->in_len > 0 && c->in_len != before)
			continue; /* the engine consumed part: feed the rest */
		if (c->peer_closed) {
			conn_close(c);
			return;
		}
		if (!c->readable || c->in_len == KCONN_INPUT_SIZE)
			break;
		rc = conn_read(c);
		if (rc == PA_ERROR && !c->peer_closed) {
			conn_close(c);
			return;
		}
		if (rc == PA_AGAIN)
			break;
	}
	conn_arm_timer(c);
}

static void
accept_connections(struct kernel_worker *kw)
{
	for (unsigned i = 0; i < ACCEPT_BURST; i++) {
		struct sockaddr_storage sa;
		socklen_t salen = sizeof(sa);
		char addr[INET6_ADDRSTRLEN] = "unknown";
		struct kconn *c;
		int fd = accept4(kw->listen_fd, (struct sockaddr *)&sa, &salen,
		                 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd == -1) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			    errno != ECONNABORTED)
				pa_log_warning("accept4() failed: %s", strerror(errno));
			return;
		}
		if (sa.ss_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)&sa)->sin_addr, addr,
			          sizeof(addr));
		else if (sa.ss_family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&sa)->sin6_addr, addr,
			          sizeof(addr));
		/* Replies are already batched per input burst; don't let Nagle hold them. */
		set_sockopt_int(fd, IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY");
		c = calloc(1, sizeof(*c));
		if (c == NULL || ingest_open(&c->ingest, kw->worker, addr) != PA_OK) {
			pa_log_err("out of memory for a connection from %s", addr);
			free(c);
			close(fd);
			continue;
		}
		c->obj.kind = KOBJ_CONN;
		c->kw = kw;
		c->fd = fd;
		c->writable = true;
		c->readable = true;
		rte_timer_init(&c->timer);
		TAILQ_INSERT_TAIL(&kw->conns, c, link);
		kw->nconns++;
		if (epoll_add(kw->epoll_fd, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
		              &c->obj) != PA_OK) {
			conn_close(c);
			continue;
		}
		conn_process(c);
	}
}

/* The spool answered a message: send the reply and carry on reading. */
static void
kernel_resume(struct ingest_conn *ingest)
{
	struct kconn *c = pa_container_of(ingest, struct kconn, ingest);

	if (ingest->transport_gone) {
		ingest_release(ingest);
		conn_free(c);
		return;
	}
	conn_process(c);
}

static void
drain_notify(struct kernel_worker *kw)
{
	uint64_t v;

	while (read(kw->notify_fd, &v, sizeof(v)) == (ssize_t)sizeof(v))
		;
}

int
kernel_backend_init(struct pa_worker *worker, const struct pa_config *config)
{
	struct kernel_worker *kw = calloc(1, sizeof(*kw));

	if (kw == NULL)
		return PA_ERROR;
	kw->worker = worker;
	TAILQ_INIT(&kw->conns);
	kw->listener.kind = KOBJ_LISTENER;
	kw->notify.kind = KOBJ_NOTIFY;
	kw->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (kw->epoll_fd == -1) {
		pa_log_err("epoll_create1() failed: %s", strerror(errno));
		free(kw);
		return PA_ERROR;
	}
	kw->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (kw->notify_fd == -1) {
		pa_log_err("eventfd() failed: %s", strerror(errno));
		goto fail;
	}
	kw->listen_fd = take_listener(worker->id, config);
	if (kw->listen_fd == -1)
		goto fail;
	if (epoll_add(kw->epoll_fd, kw->listen_fd, EPOLLIN, &kw->listener) != PA_OK ||
	    epoll_add(kw->epoll_fd, kw->notify_fd, EPOLLIN, &kw->notify) != PA_OK)
		goto fail;
	if (ingest_attach(worker, kw->notify_fd, true) != PA_OK)
		goto fail;
	worker->backend = kw;
	worker->resume = kernel_resume;
	return PA_OK;
fail:
	if (kw->listen_fd > 0)
		close(kw->listen_fd);
	if (kw->notify_fd > 0)
		close(kw->notify_fd);
	close(kw->epoll_fd);
	free(kw);
	return PA_ERROR;
}

static void
handle_event(struct kernel_worker *kw, const struct epoll_event *ev)
{
	struct kobject *obj = ev->data.ptr;
	struct kconn *c;

	switch (obj->kind) {
	case KOBJ_LISTENER:
		if (kw->listen_fd != -1)
			accept_connections(kw);
		return;
	case KOBJ_NOTIFY:
		drain_notify(kw);
		return;
	case KOBJ_CONN:
		c = pa_container_of(obj, struct kconn, obj);
		if (ev->events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
			c->readable = true;
		/*
		 * Data and FIN in one edge: the short read that takes the data must
		 * not end reading, or the FIN goes unseen until the timeout.
		 */
		if (ev->events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
			c->peer_hup = true;
		if (ev->events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
			c->writable = true;
		conn_process(c);
		return;
	}
}

/* SIGTERM: no new connections; 421 to idle sessions; stored messages still get their 250. */
static void
begin_stop(struct kernel_worker *kw)
{
	struct kconn *c, *next;

	close(kw->listen_fd); /* also leaves the epoll set */
	kw->listen_fd = -1;
	for (c = TAILQ_FIRST(&kw->conns); c != NULL; c = next) {
		next = TAILQ_NEXT(c, link);
		ingest_shutdown(&c->ingest);
		conn_process(c);
	}
}

int
kernel_backend_run(void *arg)
{
	struct pa_worker *worker = arg;
	struct kernel_worker *kw = worker->backend;
	struct epoll_event events[EVENT_BURST];
	uint64_t stop_deadline = 0;

	for (;;) {
		/* Handshakes deferred by the budget run next loop: no sleeping till then. */
		int n = epoll_wait(kw->epoll_fd, events, EVENT_BURST,
		                   TAILQ_EMPTY(&worker->tls_backlog) ? EPOLL_WAIT_MS : 0);

		if (n == -1 && errno != EINTR) {
			pa_log_err("epoll_wait() failed: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++)
			handle_event(kw, &events[i]);
		ingest_poll_spool(worker);
		rte_timer_manage();
		worker_refresh_runtime(worker);

		if (worker_stopping(worker)) {
			uint64_t now = rte_get_timer_cycles();

			if (stop_deadline == 0) {
				stop_deadline =
				    now +
				    rte_get_timer_hz() * worker->runtime->config.shutdown_timeout_s;
				begin_stop(kw);
			}
			if (kw->nconns == 0 && worker->awaiting_store == 0 &&
			    worker->dns_inflight == 0)
				break;
			if (now > stop_deadline && worker->awaiting_store == 0) {
				pa_log_warning("worker %u: %u connections still open at shutdown "
				               "timeout; closing them",
				               worker->id, kw->nconns);
				while (!TAILQ_EMPTY(&kw->conns))
					conn_close(TAILQ_FIRST(&kw->conns));
				break;
			}
		}
	}
	close(kw->notify_fd);
	close(kw->epoll_fd);
	worker->backend = NULL;
	free(kw);
	return 0;
}
