/*
 * lg_kernel.c: pigeon-loadgen over kernel sockets (lg_transport.h).
 *
 * Each load thread owns its share of the connections and one epoll set:
 * non-blocking connect(), edge-free (level-triggered) epoll, reads until
 * EAGAIN, writes until EAGAIN and then waits for EPOLLOUT.  Threads share
 * nothing but the message budget and the stop flag (struct lg_shared), so
 * they scale with cores the way the server's workers do.
 */
#include "loadgen/lg_transport.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define RX_BUF (64u * 1024u)
#define MAX_EVENTS 256
#define CONNECTS_PER_LOOP 256 /* new connections per loop: no SYN storm at start */
#define SWEEP_US 100000       /* timeouts checked every 100 ms */
#define RETRY_US 100000       /* a slot whose connect failed waits this long */

struct conn {
	int fd; /* -1: the slot is empty */
	bool want_out;
	bool connected;
	struct lg_session *s;
	uint64_t retry_at;
};

struct kthread {
	struct lg_thread t;
	pthread_t tid;
	int ep;
	struct conn *conns;
	unsigned nconns;
	unsigned live;        /* slots with a session */
	unsigned open_cursor; /* where the next search for an empty slot starts */
	unsigned next_source; /* --source address used by the next connect */
	unsigned kick_cursor; /* open loop: where the next kick sweep starts */
	bool quit_sent;       /* LG_DRAIN seen: every session was asked to QUIT */
	bool reported[LG_ERR_COUNT];
	uint8_t rx[RX_BUF];
};

static enum lg_err
connect_err(int e)
{
	switch (e) {
	case ECONNREFUSED:
		return LG_ERR_REFUSED;
	case ETIMEDOUT:
		return LG_ERR_TIMEOUT;
	case ECONNRESET:
	case EPIPE:
		return LG_ERR_RESET;
	default:
		return LG_ERR_CONNECT;
	}
}

/* The first failure of each kind is worth a line; the rest are counted. */
static void
report_once(struct kthread *k, enum lg_err kind, const char *call, int e)
{
	if (k->reported[kind])
		return;
	k->reported[kind] = true;
	fprintf(stderr, "pigeon-loadgen: thread %u: %s: %s (further ones only counted)\n", k->t.idx,
	        call, strerror(e));
}

static void
conn_close(struct kthread *k, struct conn *c)
{
	if (c->fd != -1 && close(c->fd) == -1)
		report_once(k, LG_ERR_CONNECT, "close", errno);
	c->fd = -1;
	if (c->s != NULL)
		k->live--;
	lg_session_free(c->s);
	c->s = NULL;
	c->want_out = false;
	c->connected = false;
}

static void
set_out(struct kthread *k, struct conn *c, bool want)
{
	struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};

	if (c->want_out == want)
		return;
	if (epoll_ctl(k->ep, EPOLL_CTL_MOD, c->fd, &ev) == -1) {
		report_once(k, LG_ERR_CONNECT, "epoll_ctl(MOD)", errno);
		lg_session_abort(c->s, LG_ERR_CONNECT, lg_now_us());
		return;
	}
	c->want_out = want;
}

/* Sends what the session has, until it has nothing or the socket is full. */
static void
conn_flush(struct kthread *k, struct conn *c)
{
	for (;;) {
		const uint8_t *p;
		size_t n = lg_session_output(c->s, &p);
		ssize_t w;

		if (n == 0 || lg_session_closed(c->s))
			break;
		w = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				set_out(k, c, true);
				return;
			}
			if (errno == EINTR)
				continue;
			lg_session_abort(c->s, connect_err(errno), lg_now_us());
			return;
		}
		lg_session_consume(c->s, (size_t)w, lg_now_us());
	}
	set_out(k, c, false);
}

static void
conn_open(struct kthread *k, struct conn *c, uint64_t now)
{
	const struct lg_options *o = k->t.run->opt;
	struct lg_workload w;
	struct epoll_event ev;
	int one = 1;

	lg_thread_workload(&k->t, &w);
	c->s = lg_session_new(&w, lg_stats_event, k->t.stats, now);
	if (c->s == NULL) {
		report_once(k, LG_ERR_CONNECT, "lg_session_new", ENOMEM);
		c->retry_at = now + RETRY_US;
		return;
	}
	k->live++;
	c->fd = socket(o->target.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd == -1) {
		report_once(k, LG_ERR_CONNECT, "socket", errno);
		goto failed;
	}
	if (setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == -1)
		report_once(k, LG_ERR_CONNECT, "setsockopt(TCP_NODELAY)", errno);
	if (o->nsources > 0) {
		const union lg_sockaddr *src = &o->sources[k->next_source++ % o->nsources];

		/* The port is picked at connect(), per 4-tuple: far more than 64k per address. */
		if (setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one)) == -1)
			report_once(k, LG_ERR_CONNECT, "setsockopt(IP_BIND_ADDRESS_NO_PORT)",
			            errno);
		if (bind(c->fd, &src->sa, lg_sockaddr_len(src)) == -1) {
			report_once(k, LG_ERR_CONNECT, "bind", errno);
			goto failed;
		}
	}
	if (connect(c->fd, &o->target.sa, lg_sockaddr_len(&o->target)) == -1 &&
	    errno != EINPROGRESS) {
		int e = errno;

		report_once(k, connect_err(e), "connect", e);
		lg_session_abort(c->s, connect_err(e), now);
		conn_close(k, c);
		c->retry_at = now + RETRY_US;
		return;
	}
	ev.events = EPOLLIN | EPOLLOUT;
	ev.data.ptr = c;
	if (epoll_ctl(k->ep, EPOLL_CTL_ADD, c->fd, &ev) == -1) {
		report_once(k, LG_ERR_CONNECT, "epoll_ctl(ADD)", errno);
		goto failed;
	}
	c->want_out = true; /* EPOLLOUT says the connect finished */
	return;
failed:
	lg_session_abort(c->s, LG_ERR_CONNECT, now);
	conn_close(k, c);
	c->retry_at = now + RETRY_US;
}

static void
conn_event(struct kthread *k, struct conn *c, uint32_t events)
{
	uint64_t now = lg_now_us();

	if (lg_session_closed(c->s))
		return;
	/* The first event after connect() tells how it went. */
	if (!c->connected) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
			err = errno;
		if (err != 0) {
			report_once(k, connect_err(err), "connect", err);
			lg_session_abort(c->s, connect_err(err), now);
			c->retry_at = now + RETRY_US;
			return;
		}
		c->connected = true;
		lg_session_connected(c->s, now);
	}
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		for (;;) {
			ssize_t r = recv(c->fd, k->rx, sizeof(k->rx), MSG_DONTWAIT);

			if (r == -1) {
				if (errno == EINTR)
					continue;
				if (errno != EAGAIN && errno != EWOULDBLOCK)
					lg_session_abort(c->s, connect_err(errno), lg_now_us());
				break;
			}
			if (r == 0) {
				lg_session_eof(c->s, lg_now_us());
				return;
			}
			if (lg_session_input(c->s, k->rx, (size_t)r, lg_now_us()) == -1)
				return;
			/* Replies unlock commands: send them before reading on. */
			conn_flush(k, c);
			if (lg_session_closed(c->s) || (size_t)r < sizeof(k->rx))
				break;
		}
	}
	if (!lg_session_closed(c->s))
		conn_flush(k, c);
}

/* Every SWEEP_US: reply timeouts, and the graceful stop. */
static void
sweep(struct kthread *k, uint64_t now, int state)
{
	for (unsigned i = 0; i < k->nconns; i++) {
		struct conn *c = &k->conns[i];

		if (c->s == NULL)
			continue;
		if (state == LG_ABORT)
			lg_session_abort(c->s, LG_ERR_TIMEOUT, now);
		else if (state == LG_DRAIN && !k->quit_sent)
			lg_session_quit(c->s, now);
		lg_session_tick(c->s, now);
		if (!lg_session_closed(c->s) && c->fd != -1)
			conn_flush(k, c);
		if (lg_session_closed(c->s))
			conn_close(k, c);
	}
	if (state != LG_RUN)
		k->quit_sent = true;
}

/* Open loop: hand the tokens that came due to sessions waiting for one. */
static void
kick(struct kthread *k, uint64_t now)
{
	for (unsigned n = 0; n < k->nconns; n++) {
		struct conn *c = &k->conns[(k->kick_cursor + n) % k->nconns];

		if (lg_source_due_us(&k->t.src) > now)
			break;
		if (c->s == NULL || !lg_session_starved(c->s))
			continue;
		lg_session_kick(c->s, now);
		if (!lg_session_closed(c->s))
			conn_flush(k, c);
		if (lg_session_closed(c->s))
			conn_close(k, c);
		k->kick_cursor = (k->kick_cursor + n + 1) % k->nconns;
	}
}

static void *
kthread_main(void *arg)
{
	struct kthread *k = arg;
	const struct lg_options *o = k->t.run->opt;
	struct epoll_event evs[MAX_EVENTS];
	uint64_t last_sweep = 0;

	lg_pin_thread(o, k->t.idx);
	for (;;) {
		uint64_t now = lg_now_us();
		int state = lg_run_state(k->t.run), n, timeout_ms = 10;
		unsigned opened = 0;

		/* Only while slots are empty: 100,000 held connections cost no scan per loop. */
		for (unsigned i = 0;
		     i < k->nconns && k->live < k->nconns && state == LG_RUN &&
		     opened < CONNECTS_PER_LOOP && (o->idle || lg_source_more(&k->t.src));
		     i++) {
			struct conn *c = &k->conns[k->open_cursor];

			k->open_cursor = (k->open_cursor + 1) % k->nconns;
			if (c->s == NULL && now >= c->retry_at) {
				conn_open(k, c, now);
				opened++;
			}
		}
		if (k->live == 0 && (state != LG_RUN || (!o->idle && !lg_source_more(&k->t.src))))
			break;
		if (state != LG_RUN && !k->quit_sent)
			last_sweep = 0; /* stop at once, not at the next sweep */
		if (o->rate > 0) {
			uint64_t due;

			kick(k, now);
			/* Wake for the next token, not 10 ms later: the schedule is the workload.
			 * A token already due waits for a session to finish, which is an event. */
			due = lg_source_due_us(&k->t.src);
			if (due > now && due - now < 10000)
				timeout_ms = (int)((due - now + 999) / 1000);
		}
		if (opened == CONNECTS_PER_LOOP)
			timeout_ms = 0;
		n = epoll_wait(k->ep, evs, MAX_EVENTS, timeout_ms);
		if (n == -1 && errno != EINTR) {
			perror("pigeon-loadgen: epoll_wait");
			break;
		}
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;

			if (c->s == NULL)
				continue;
			conn_event(k, c, evs[i].events);
			if (lg_session_closed(c->s))
				conn_close(k, c);
		}
		now = lg_now_us();
		if (now - last_sweep >= SWEEP_US) {
			sweep(k, now, lg_run_state(k->t.run));
			last_sweep = now;
		}
	}
	/* Whatever is left (an epoll failure): counted, then closed. */
	for (unsigned i = 0; i < k->nconns; i++)
		if (k->conns[i].s != NULL) {
			lg_session_abort(k->conns[i].s, LG_ERR_CONNECT, lg_now_us());
			conn_close(k, &k->conns[i]);
		}
	lg_thread_done(&k->t);
	return NULL;
}

int
lg_kernel_run(struct lg_run *run)
{
	const struct lg_options *o = run->opt;
	struct kthread *ks = calloc(o->threads, sizeof(*ks));
	unsigned started = 0;
	int rc = 0;

	if (ks == NULL) {
		fputs("pigeon-loadgen: out of memory for threads\n", stderr);
		return -1;
	}
	for (unsigned i = 0; i < o->threads; i++) {
		struct kthread *k = &ks[i];

		k->ep = -1;
	}
	for (unsigned i = 0; i < o->threads; i++) {
		struct kthread *k = &ks[i];

		lg_thread_init(&k->t, run, i);
		k->nconns = lg_thread_connections(run, i);
		k->conns = calloc(k->nconns, sizeof(*k->conns));
		k->ep = epoll_create1(EPOLL_CLOEXEC);
		if (k->conns == NULL || k->ep == -1) {
			if (k->ep == -1)
				perror("pigeon-loadgen: epoll_create1");
			else
				fputs("pigeon-loadgen: out of memory for connections\n", stderr);
			rc = -1;
			break;
		}
		for (unsigned j = 0; j < k->nconns; j++)
			k->conns[j].fd = -1;
	}
	for (unsigned i = 0; rc == 0 && i < o->threads; i++) {
		int e = pthread_create(&ks[i].tid, NULL, kthread_main, &ks[i]);

		if (e != 0) {
			fprintf(stderr, "pigeon-loadgen: pthread_create: %s\n", strerror(e));
			rc = -1;
			break;
		}
		started++;
	}
	if (rc == 0) {
		lg_monitor(run);
	} else {
		/* The started threads must still end: tell them and count the others done. */
		__atomic_store_n(&run->shared.stop, LG_ABORT, __ATOMIC_RELAXED);
	}
	for (unsigned i = 0; i < started; i++)
		pthread_join(ks[i].tid, NULL);
	for (unsigned i = 0; i < o->threads; i++) {
		if (ks[i].ep != -1 && close(ks[i].ep) == -1)
			perror("pigeon-loadgen: close(epoll)");
		free(ks[i].conns);
	}
	free(ks);
	return rc;
}
