/*
 * handoff_conn.c: the hand-off engine's connections to delivery-tier hosts.
 *
 * Per destination a pool of at most relay.concurrency non-blocking kernel
 * sockets, each driving one handoff_client state machine, one transaction
 * at a time, many transactions per connection; where the peer offers
 * PIPELINING, the next transaction's envelope goes out with the current
 * one's body, so that its replies come with the body's (one round trip a
 * message, not two), its own body waiting as always until the previous
 * outcome is written.  A connection gets a job
 * only once the peer's greeting and EHLO/LHLO succeeded, so a host that is
 * down costs its destination nothing but the failed connect: the next
 * connection tries the next host.  When every host failed in a row, the
 * queued jobs are deferred with backoff, and after relay.breaker_failures
 * failures in a row the destination cools down (circuit breaker) without
 * holding up any other destination.
 */
#include "handoff/handoff_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "core/pa.h"

#define CONNECT_TIMEOUT_US 10000000u
#define READ_CHUNK 65536

static void
arm(struct handoff *h, struct ho_conn *c, bool want_write)
{
	struct epoll_event ev = {.events = EPOLLIN | (want_write ? EPOLLOUT : 0), .data.ptr = c};

	if (c->want_write == want_write)
		return;
	if (epoll_ctl(h->epfd, EPOLL_CTL_MOD, c->fd, &ev) == -1)
		pa_log_err("hand-off: epoll_ctl(MOD, %s): %s", c->dest->rd.hosts[c->host].name,
		           strerror(errno));
	c->want_write = want_write;
}

static void
conn_free(struct handoff *h, struct ho_conn *c)
{
	(void)h;
	LIST_REMOVE(c, link);
	c->dest->nconns--;
	if (c->fd != -1)
		close(c->fd); /* also removes it from the epoll set */
	hc_free(c->hc);
	free(c);
}

/* A deadline for the next reply, proportional to nothing: one per step. */
static void
set_deadline(struct handoff *h, struct ho_conn *c, uint64_t now)
{
	c->deadline_us = now + (uint64_t)h->cfg.timeout_s * 1000000u;
}

/* Counts a failure of the destination and opens the breaker after too many. */
static void
dest_failed(struct handoff *h, struct ho_dest *d, uint64_t now)
{
	d->failures++;
	d->host_next = (d->host_next + 1) % d->rd.nhosts;
	if (h->cfg.breaker_failures > 0 && d->failures >= h->cfg.breaker_failures &&
	    d->open_until_us <= now) {
		d->open_until_us = now + (uint64_t)h->cfg.breaker_cooldown_s * 1000000u;
		pa_log_warning("hand-off: %s failed %u times in a row: circuit breaker open for "
		               "%us",
		               d->rd.key, d->failures, h->cfg.breaker_cooldown_s);
	}
}

/* Defers every queued job of a destination that cannot be reached now. */
static void
defer_queue(struct handoff *h, struct ho_dest *d, const char *why, bool count, uint64_t when,
            uint64_t now)
{
	struct ho_job *job;

	while ((job = TAILQ_FIRST(&d->queue)) != NULL) {
		TAILQ_REMOVE(&d->queue, job, link);
		d->nqueued--;
		ho_job_fail(h, job, why, count, when, now);
	}
}

/*
 * A pipelined job whose body never left goes back to the head of its
 * destination's queue: it was not attempted, whatever the peer said to its
 * envelope (without the body's end it can have accepted nothing).
 */
static void
requeue_next(struct ho_conn *c)
{
	struct ho_job *job = c->next_job;

	if (job == NULL)
		return;
	c->next_job = NULL;
	TAILQ_INSERT_HEAD(&job->dest->queue, job, link);
	job->dest->nqueued++;
}

/* The connection is unusable: its job (if any) gets the outcome, the connection goes. */
static void
conn_fail(struct handoff *h, struct ho_conn *c, const char *why, uint64_t now)
{
	struct ho_dest *d = c->dest;
	char text[HC_TEXT_MAX + 1];
	bool was_ready = !c->connecting && c->hc != NULL && (hc_ready(c->hc) || hc_busy(c->hc));
	bool had_job;

	snprintf(text, sizeof(text), "%s: %s", d->rd.hosts[c->host].name, why);
	requeue_next(c);
	had_job = c->job != NULL;
	if (c->job != NULL) {
		struct ho_job *job = c->job;

		c->job = NULL;
		hc_abort(c->hc, text);
		ho_job_outcomes(h, job, c->hc, now);
	}
	pa_log_info("hand-off: connection to %s (%s) ended: %s", d->rd.hosts[c->host].name,
	            d->rd.key, why);
	/* A peer closing an idle connection is no sign of trouble; a lost transaction is. */
	if (had_job || !was_ready)
		ho_window_failure(h, d, now);
	conn_free(h, c);
	if (!was_ready) {
		dest_failed(h, d, now);
		/* Every host failed once in a row: no point keeping the mail in memory. */
		if (d->failures >= d->rd.nhosts && d->nconns == 0)
			defer_queue(h, d, text, true, 0, now);
	}
}

/* Sends what the client has queued; false when that failed and the connection is gone. */
static bool
flush(struct handoff *h, struct ho_conn *c, uint64_t now)
{
	size_t len;
	const uint8_t *out = hc_output(c->hc, &len);

	while (len > 0) {
		ssize_t n = send(c->fd, out, len, MSG_NOSIGNAL);

		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN) {
			arm(h, c, true);
			return true;
		}
		if (n == -1) {
			char why[128];

			snprintf(why, sizeof(why), "send: %s", strerror(errno));
			conn_fail(h, c, why, now);
			return false;
		}
		hc_output_consumed(c->hc, (size_t)n);
		out = hc_output(c->hc, &len);
	}
	arm(h, c, false);
	return true;
}

static struct ho_conn *
conn_open(struct handoff *h, struct ho_dest *d, uint64_t now)
{
	struct ho_conn *c = calloc(1, sizeof(*c));
	const struct route_host *host;
	struct epoll_event ev;
	int one = 1;

	if (c == NULL)
		return NULL;
	c->dest = d;
	c->host = d->host_next % d->rd.nhosts;
	host = &d->rd.hosts[c->host];
	c->hc = hc_new(d->rd.proto == ROUTE_LMTP ? HC_LMTP : HC_SMTP, h->cfg.helo);
	c->fd = socket(host->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->hc == NULL || c->fd == -1) {
		pa_log_err("hand-off: socket(%s): %s", host->name,
		           c->hc == NULL ? "out of memory" : strerror(errno));
		if (c->fd != -1)
			close(c->fd);
		hc_free(c->hc);
		free(c);
		return NULL;
	}
	/* Pipelined commands and the body's tail should not wait for Nagle. */
	if (setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == -1)
		pa_log_debug("hand-off: setsockopt(%s, TCP_NODELAY): %s", host->name,
		             strerror(errno));
	LIST_INSERT_HEAD(&d->conns, c, link);
	d->nconns++;
	c->connecting = true;
	c->want_write = true;
	c->deadline_us = now + CONNECT_TIMEOUT_US;
	ev = (struct epoll_event){.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
	if (epoll_ctl(h->epfd, EPOLL_CTL_ADD, c->fd, &ev) == -1) {
		char why[128];

		snprintf(why, sizeof(why), "epoll_ctl(ADD): %s", strerror(errno));
		conn_fail(h, c, why, now);
		return NULL;
	}
	if (connect(c->fd, (const struct sockaddr *)&host->addr, host->addrlen) == -1 &&
	    errno != EINPROGRESS) {
		char why[128];

		snprintf(why, sizeof(why), "connect: %s", strerror(errno));
		conn_fail(h, c, why, now);
		return NULL;
	}
	return c;
}

/*
 * Gives a connection its next job: an idle, ready one starts it; one whose
 * body is sent queues it behind (PIPELINING).  False when the connection is
 * gone.
 */
static bool
conn_next(struct handoff *h, struct ho_conn *c, uint64_t now)
{
	struct ho_dest *d = c->dest;
	struct ho_job *job = TAILQ_FIRST(&d->queue);
	const struct hs_copy *hc;
	struct hc_txn txn;
	bool behind;

	if (job == NULL || c->connecting)
		return true;
	if (c->job == NULL && hc_ready(c->hc)) {
		behind = false;
		/*
		 * The previous transaction's outcome not written yet: this one
		 * starts (its envelope overlaps the write) but its body waits, so
		 * that a crash sends at most that one copy again
		 * (ho_release_bodies()).
		 */
		if (c->wait_gen != 0 && ho_written(h, c->wait_shard, c->wait_gen))
			c->wait_gen = 0;
		hc_hold_body(c->hc, c->wait_gen != 0);
	} else if (c->job != NULL && c->next_job == NULL && hc_can_pipeline(c->hc)) {
		/*
		 * Behind a body whose outcome is not known yet: its body waits
		 * until that outcome is written (HC_TXN_DONE sets wait_gen).
		 */
		behind = true;
		hc_hold_body(c->hc, true);
	} else {
		return true;
	}
	TAILQ_REMOVE(&d->queue, job, link);
	d->nqueued--;
	/* Half empty again after a scan found it full: the next turn refills it. */
	if (d->wants_more && d->nqueued <= ho_dest_queue_max(h) / 2) {
		d->wants_more = false;
		h->refill = true;
	}
	hc = job->copy->hc;
	txn = (struct hc_txn){
	    .mail_from = hc->rec->mail_from,
	    .rcpts = job->rcpts,
	    .nrcpt = job->n,
	    .data = hc->data,
	    .size = hc->size,
	    .id_header = job->id_header,
	    .envid = job->envid,
	    .body_8bit = (hc->rec->flags & SPOOL_MSG_8BITMIME) != 0,
	    .smtputf8 = (hc->rec->flags & SPOOL_MSG_SMTPUTF8) != 0,
	};
	if (hc_start(c->hc, &txn) != PA_OK) {
		ho_job_fail(h, job, "hand-off client refused the transaction", true, 0, now);
		return true;
	}
	if (behind) {
		c->next_job = job;
		c->next_start_us = now;
	} else {
		c->job = job;
		c->txn_start_us = now;
	}
	set_deadline(h, c, now);
	return flush(h, c, now);
}

/* Runs the client over what it has buffered; false when the connection is gone. */
static bool
drive(struct handoff *h, struct ho_conn *c, const uint8_t *in, size_t len, uint64_t now)
{
	for (;;) {
		enum hc_status st = hc_input(c->hc, in, len);

		in = NULL;
		len = 0;
		switch (st) {
		case HC_NEED_MORE:
			/* A body just went out: the next envelope follows it (PIPELINING). */
			return conn_next(h, c, now);
		case HC_READY:
			c->dest->failures = 0;
			c->idle_since_us = now;
			c->deadline_us = 0;
			if (!conn_next(h, c, now))
				return false;
			break;
		case HC_RESULTS:
			set_deadline(h, c, now);
			ho_job_outcomes(h, c->job, c->hc, now);
			break;
		case HC_TXN_DONE: {
			struct ho_job *job = c->job;
			uint64_t started = c->txn_start_us;

			/* The pipelined one, if any, is the current transaction now. */
			c->job = c->next_job;
			c->txn_start_us = c->next_start_us;
			c->next_job = NULL;
			if (c->job == NULL) {
				c->deadline_us = 0;
				c->idle_since_us = now;
			} else {
				set_deadline(h, c, now);
			}
			if (job != NULL) {
				c->wait_shard = job->copy->hc->shard;
				c->wait_gen = ho_outcome_gen(h, c->wait_shard);
			}
			/*
			 * A 4xx: the retry goes over a new connection, to the next host
			 * first (ho_job_outcomes moved host_next), not to the same process.
			 * A pipelined job goes back to the queue, its body unsent; the
			 * peer may be reading data now, so no QUIT: the close ends it.
			 */
			if (job != NULL && ho_job_outcomes(h, job, c->hc, now) > 0) {
				ho_window_failure(h, c->dest, now);
				if (c->job != NULL) {
					c->next_job = c->job;
					c->job = NULL;
					requeue_next(c);
				} else if (send(c->fd, "QUIT\r\n", 6,
				                MSG_NOSIGNAL | MSG_DONTWAIT) == -1) {
					pa_log_debug("hand-off: send(QUIT): %s", strerror(errno));
				}
				conn_free(h, c);
				return false;
			}
			if (job != NULL)
				ho_window_success(h, c->dest, now - started);
			if (hc_ready(c->hc) ? !conn_next(h, c, now) : !flush(h, c, now))
				return false; /* flush: the RSET */
			break;
		}
		case HC_CLOSED:
			conn_free(h, c);
			return false;
		case HC_FAILED:
		default:
			conn_fail(h, c,
			          hc_last_reply(c->hc)[0] ? hc_last_reply(c->hc) : "protocol error",
			          now);
			return false;
		}
	}
}

void
ho_conn_event(struct handoff *h, struct ho_conn *c, uint32_t events, uint64_t now)
{
	uint8_t buf[READ_CHUNK];

	if (c->connecting) {
		int soerr = 0;
		socklen_t sl = sizeof(soerr);

		if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0)
			return;
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == -1)
			soerr = errno;
		if (soerr != 0) {
			char why[128];

			snprintf(why, sizeof(why), "connect: %s", strerror(soerr));
			conn_fail(h, c, why, now);
			return;
		}
		c->connecting = false;
		set_deadline(h, c, now);
		arm(h, c, false);
		return;
	}
	if ((events & EPOLLOUT) && !flush(h, c, now))
		return;
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
		ssize_t n = recv(c->fd, buf, sizeof(buf), 0);

		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			char why[128];

			snprintf(why, sizeof(why), "%s",
			         n == 0 ? "connection closed by peer" : strerror(errno));
			conn_fail(h, c, why, now);
			return;
		}
		if (drive(h, c, buf, (size_t)n, now))
			flush(h, c, now);
	}
}

void
ho_dispatch(struct handoff *h, uint64_t now)
{
	for (struct ho_dest *d = h->dests; d != NULL; d = d->next) {
		struct ho_conn *c, *tmp;
		unsigned ready_idle = 0, opening = 0;

		if (d->nqueued == 0)
			continue;
		if (d->open_until_us > now) {
			/* Breaker open: the mail waits on disk until it closes, no attempt counted.
			 */
			defer_queue(h, d, "destination cooling down (circuit breaker open)", false,
			            d->open_until_us, now);
			continue;
		}
		for (c = LIST_FIRST(&d->conns); c != NULL; c = tmp) {
			tmp = LIST_NEXT(c, link);
			if (c->job == NULL && hc_ready(c->hc)) {
				ready_idle++;
				if (!conn_next(h, c, now))
					continue;
			} else if (c->job == NULL) {
				opening++;
			}
		}
		/* What idle connections left: behind bodies already sent (PIPELINING). */
		for (c = LIST_FIRST(&d->conns); c != NULL && d->nqueued > opening; c = tmp) {
			tmp = LIST_NEXT(c, link);
			if (c->job != NULL && c->next_job == NULL && hc_can_pipeline(c->hc))
				(void)conn_next(h, c, now);
		}
		/* More connections only while jobs wait beyond those being opened. */
		while (d->nqueued > opening && d->nconns < ho_window(h, d)) {
			if (conn_open(h, d, now) == NULL)
				break;
			opening++;
		}
		(void)ready_idle;
	}
}

void
ho_release_bodies(struct handoff *h, uint64_t now)
{
	for (struct ho_dest *d = h->dests; d != NULL; d = d->next) {
		struct ho_conn *c, *tmp;

		for (c = LIST_FIRST(&d->conns); c != NULL; c = tmp) {
			tmp = LIST_NEXT(c, link);
			if (c->wait_gen == 0 || !ho_written(h, c->wait_shard, c->wait_gen))
				continue;
			c->wait_gen = 0;
			if (c->hc == NULL || c->connecting)
				continue;
			if (hc_release_body(c->hc) != PA_OK) {
				conn_fail(h, c, "out of memory for the body", now);
				tmp = LIST_FIRST(&d->conns);
				continue;
			}
			/*
			 * The window is fed the peer's time: from the body on, not
			 * the wait for our own outcome write (handoff_window.c).
			 */
			if (c->job != NULL)
				c->txn_start_us = now;
			/* The next envelope in the same write as the body (PIPELINING). */
			if (!conn_next(h, c, now) || !flush(h, c, now))
				tmp = LIST_FIRST(&d->conns);
		}
	}
}

void
ho_timeouts(struct handoff *h, uint64_t now)
{
	for (struct ho_dest *d = h->dests; d != NULL; d = d->next) {
		struct ho_conn *c, *tmp;

		for (c = LIST_FIRST(&d->conns); c != NULL; c = tmp) {
			tmp = LIST_NEXT(c, link);
			if (c->deadline_us != 0 && now >= c->deadline_us) {
				conn_fail(h, c,
				          c->connecting ? "connect timed out"
				                        : "timed out waiting for a reply",
				          now);
				tmp = LIST_FIRST(
				    &d->conns); /* conn_fail may have freed others' jobs */
			} else if (c->job == NULL && hc_ready(c->hc) &&
			           (d->nconns > ho_window(h, d) ||
			            (d->nqueued == 0 &&
			             now - c->idle_since_us >= HO_IDLE_CLOSE_US))) {
				/* Idle too long, or beyond a window that shrank. */
				/* Best effort, no wait for 221: no transaction is open. */
				if (send(c->fd, "QUIT\r\n", 6, MSG_NOSIGNAL | MSG_DONTWAIT) == -1)
					pa_log_debug("hand-off: send(QUIT): %s", strerror(errno));
				conn_free(h, c);
				tmp = LIST_FIRST(&d->conns);
			}
		}
	}
}

void
ho_conn_close_all(struct handoff *h)
{
	for (struct ho_dest *d = h->dests; d != NULL; d = d->next)
		while (!LIST_EMPTY(&d->conns)) {
			struct ho_conn *c = LIST_FIRST(&d->conns);

			/* Its outcome is unknown: the copy stays due on disk, sent again later. */
			if (c->job != NULL)
				ho_job_free(c->job);
			if (c->next_job != NULL)
				ho_job_free(c->next_job);
			conn_free(h, c);
		}
}
