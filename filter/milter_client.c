/*
 * milter_client.c: the `milter` thread (milter_client.h).
 *
 * One poll(2) loop over every filter connection (each one's exchange with
 * its filter is milter_conn.c's), the workers' rings, the pools.
 *
 * A message asks its filters in order.  For each it takes an idle
 * connection, opens a new one while under `connections`, or waits in the
 * filter's FIFO (at most its timeout).  Every failure (refused, reset,
 * timeout, a reply the protocol does not allow) ends that filter's part
 * with its default_action, and its header edits are dropped.
 *
 * A reload publishes a new generation of filters (struct milter_filters):
 * the messages taken from then on ask it, those already out finish with the
 * generation they began with, whose connections close as they come free.
 *
 * With only kernel-backend workers, the thread waits in poll(2) on its
 * sockets and an eventfd that a worker writes only when it sees the thread
 * waiting (core/svc_thread.h, as the dns thread); with a poll-mode worker
 * attached it polls the rings every millisecond while it has filters.
 */
#include "filter/milter_client.h"
#include "filter/milter_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <rte_errno.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/pa.h"
#include "filter/milter_codec.h"
#include "filter/milter_edit.h"
#include "smtp/smtp_session.h"

/* A message's memory, once its verdict is with its worker or nobody will take it. */
static void
job_free(struct job *job)
{
	pa_buf_free(&job->edits);
	pa_buf_free(&job->body);
	pa_buf_free(&job->body_next);
	free(job);
}

/* The verdict onto its worker's ring (the job freed); false when the ring is full. */
static bool
hand_over(struct milter_client *c, struct job *job)
{
	if (rte_ring_enqueue_elem(c->w[job->worker].ans, &job->verdict, sizeof(job->verdict)) != 0)
		return false;
	pa_svc_notify_due(&c->svc, job->worker);
	job_free(job);
	return true;
}

/* The verdict goes to its worker; a result is kept on the held list until released. */
static void
deliver(struct milter_client *c, struct job *job)
{
	/* A full ring is not expected within milter_client_capacity(): tried again next loop. */
	if (!hand_over(c, job))
		TAILQ_INSERT_TAIL(&c->undelivered, job, link);
}

static struct milter_result *
new_result(struct milter_client *c)
{
	struct held *h = calloc(1, sizeof(*h));

	if (h == NULL)
		return NULL;
	LIST_INSERT_HEAD(&c->held, h, link);
	return &h->r;
}

static void
free_result(struct milter_result *r)
{
	struct held *h = pa_container_of(r, struct held, r);

	LIST_REMOVE(h, link);
	free(r->data);
	free(h);
}

/* The end of a message's filtering: its verdict, built and delivered. */
void
milter_finish(struct milter_client *c, struct job *job, enum milter_action action,
              const char *reply, size_t reply_len)
{
	struct milter_result *r = NULL;

	job->verdict = (struct milter_verdict){.cookie = job->cookie, .action = action};
	switch (action) {
	case MILTER_ACCEPT:
		if (pa_buf_pending(&job->edits) == 0 && !job->body_set) {
			count(&c->stats.accepted);
			break;
		}
		r = new_result(c);
		if (r != NULL) {
			struct pa_buf out;

			pa_buf_init(&out,
			            job->msg->size + pa_buf_pending(&job->edits) +
			                pa_buf_pending(&job->body) + 64,
			            job->msg->size + 2 * (size_t)EDITS_MAX + BODY_MAX);
			if (milter_edit_apply(job->msg->data, job->msg->size,
			                      pa_buf_head(&job->edits), pa_buf_pending(&job->edits),
			                      job->body_set ? pa_buf_head(&job->body) : NULL,
			                      pa_buf_pending(&job->body), &out) == PA_OK) {
				r->data = out.data; /* off is 0 after a reset */
				r->size = out.len;
				count(&c->stats.accepted);
				count(&c->stats.edited);
				break;
			}
			pa_buf_free(&out);
			free_result(r);
			r = NULL;
		}
		/* No memory for the edited copy: the client retries, nothing is lost. */
		pa_log_warning("milter: %s: out of memory for the edited message: answered 451",
		               job->msg->queue_id);
		job->verdict.action = MILTER_TEMPFAIL;
		count(&c->stats.tempfailed);
		break;
	case MILTER_REJECT:
	case MILTER_TEMPFAIL:
		count(action == MILTER_REJECT ? &c->stats.rejected : &c->stats.tempfailed);
		r = new_result(c);
		if (r != NULL) {
			if (reply_len > sizeof(r->reply) - 1)
				reply_len = sizeof(r->reply) - 1;
			memcpy(r->reply, reply, reply_len);
			r->reply[reply_len] = '\0';
		}
		break;
	case MILTER_DISCARD:
		count(&c->stats.discarded);
		/* Logged here, not by the worker, which only answers 250 and counts. */
		pa_log_notice("%s: discarded by a content filter client=%s", job->msg->queue_id,
		              job->msg->client_addr);
		break;
	}
	job->verdict.result = r;
	deliver(c, job);
}

/* A filter failed this message: its default_action, without its edits. */
static void
site_default(struct milter_client *c, struct job *job)
{
	const struct milter_site *cfg = &job->filters->sites[job->site].cfg;

	count(&c->stats.defaulted);
	job->edits.len = job->edits.off + job->edits_at_site;
	pa_buf_reset(&job->body_next);
	job->body_next_set = false;
	if (cfg->tempfail) {
		pa_log_warning("milter: %s: %s failed: default_action tempfail", job->msg->queue_id,
		               cfg->name);
		milter_finish(c, job, MILTER_TEMPFAIL, MILTER_REPLY_TEMPFAIL,
		              sizeof(MILTER_REPLY_TEMPFAIL) - 1);
		return;
	}
	pa_log_warning("milter: %s: %s failed: default_action accept", job->msg->queue_id,
	               cfg->name);
	job->site++;
	milter_dispatch(c, job);
}

/*
 * Closes the socket and takes the connection off its filter at once; the
 * memory waits for the end of the loop iteration, which may still hold a
 * pointer to it.
 */
static void
conn_close(struct milter_client *c, struct mconn *mc)
{
	LIST_REMOVE(mc, link);
	mc->site->nopen--;
	if (mc->fd != -1 && close(mc->fd) == -1)
		pa_log_warning("milter: close() failed: %s", strerror(errno));
	mc->fd = -1;
	mc->dead = true;
	mc->job = NULL;
	LIST_INSERT_HEAD(&c->dead, mc, link);
}

static void
sweep_dead(struct milter_client *c)
{
	struct mconn *mc;

	while ((mc = LIST_FIRST(&c->dead)) != NULL) {
		LIST_REMOVE(mc, link);
		pa_buf_free(&mc->out);
		pa_buf_free(&mc->in);
		free(mc);
	}
}

/*
 * Closes a connection; its message, if any, gets the filter's default.
 * When it was the filter's last connection, the messages waiting for one
 * get it too: the filter is down, and waiting would only delay them.
 */
void
milter_conn_fail(struct milter_client *c, struct mconn *mc, const char *why)
{
	struct msite *site = mc->site;
	struct job *job = mc->job;

	if (mc->dead)
		return;
	if (mc->state != MC_IDLE)
		pa_log_warning("milter: %s: %s", site->cfg.name, why);
	conn_close(c, mc);
	if (job != NULL)
		site_default(c, job);
	if (site->nopen == 0) {
		while ((job = TAILQ_FIRST(&site->waiting)) != NULL) {
			TAILQ_REMOVE(&site->waiting, job, link);
			site_default(c, job);
		}
	}
}

void
milter_conn_idle(struct milter_client *c, struct mconn *mc)
{
	struct job *job = TAILQ_FIRST(&mc->site->waiting);

	mc->state = MC_IDLE;
	mc->job = NULL;
	mc->awaiting = 0;
	mc->deadline = 0;
	if (job == NULL)
		return;
	TAILQ_REMOVE(&mc->site->waiting, job, link);
	mc->job = job;
	mc->state = MC_BUSY;
	mc->step = ST_CONNECT;
	mc->rcpt = 0;
	mc->pos = 0;
	mc->body_skipped = false;
	milter_conn_advance(c, mc);
}

/* A non-blocking connect; PA_ERROR when it failed at once. */
static int
conn_open(struct milter_client *c, struct msite *site)
{
	const struct milter_site *cfg = &site->cfg;
	struct mconn *mc;
	int fd;

	count(&c->stats.connects);
	fd = socket(cfg->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		pa_log_warning("milter: %s: socket() failed: %s", cfg->name, strerror(errno));
		count(&c->stats.connect_failures);
		return PA_ERROR;
	}
	if (cfg->family != AF_UNIX)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
	if (connect(fd, (struct sockaddr *)&cfg->sa, cfg->salen) == -1 && errno != EINPROGRESS) {
		pa_log_warning("milter: %s: connect() failed: %s", cfg->name, strerror(errno));
		count(&c->stats.connect_failures);
		close(fd);
		return PA_ERROR;
	}
	mc = calloc(1, sizeof(*mc));
	if (mc == NULL) {
		close(fd);
		return PA_ERROR;
	}
	mc->site = site;
	mc->fd = fd;
	mc->state = MC_CONNECTING;
	mc->deadline = c->now + cfg->timeout_ms;
	pa_buf_init(&mc->out, 4096, OUT_MAX);
	pa_buf_init(&mc->in, 4096, IN_MAX);
	LIST_INSERT_HEAD(&site->conns, mc, link);
	site->nopen++;
	return PA_OK;
}

/*
 * Closes a healthy connection whose exchange the filter ended early (a
 * verdict before end of message): the messages waiting for the filter get
 * a new connection rather than its default_action.
 */
void
milter_conn_retire(struct milter_client *c, struct mconn *mc)
{
	struct msite *site = mc->site;
	struct job *job;

	if (mc->dead)
		return;
	mc->job = NULL;
	conn_close(c, mc);
	if (TAILQ_EMPTY(&site->waiting) || site->nopen >= site->cfg.connections ||
	    conn_open(c, site) == PA_OK || site->nopen > 0)
		return;
	while ((job = TAILQ_FIRST(&site->waiting)) != NULL) {
		TAILQ_REMOVE(&site->waiting, job, link);
		site_default(c, job);
	}
}

/* The message asks its next filter, or is done. */
void
milter_dispatch(struct milter_client *c, struct job *job)
{
	while (job->site < job->filters->nsites) {
		struct msite *site = &job->filters->sites[job->site];
		struct mconn *mc;
		bool full;

		job->edits_at_site = pa_buf_pending(&job->edits);
		LIST_FOREACH(mc, &site->conns, link)
		if (mc->state == MC_IDLE)
			break;
		if (mc != NULL) {
			TAILQ_INSERT_HEAD(&site->waiting, job, link);
			milter_conn_idle(c, mc);
			return;
		}
		full = site->nopen >= site->cfg.connections;
		if (!full && conn_open(c, site) != PA_OK && site->nopen == 0) {
			site_default(c, job); /* the next filter, or the verdict */
			return;
		}
		if (full)
			count(&c->stats.queue_waits);
		job->wait_deadline = c->now + site->cfg.timeout_ms;
		TAILQ_INSERT_TAIL(&site->waiting, job, link);
		return;
	}
	milter_finish(c, job, MILTER_ACCEPT, NULL, 0);
}

/* Connections that missed their deadline, and messages that waited too long for one. */
static void
expire(struct milter_client *c)
{
	struct milter_filters *f;

	TAILQ_FOREACH(f, &c->sets, link)
	for (unsigned i = 0; i < f->nsites; i++) {
		struct msite *site = &f->sites[i];
		struct mconn *mc, *next;
		struct job *job, *jnext;

		for (mc = LIST_FIRST(&site->conns); mc != NULL; mc = next) {
			next = LIST_NEXT(mc, link);
			if (mc->state == MC_IDLE || mc->deadline == 0 || c->now < mc->deadline)
				continue;
			count(&c->stats.timeouts);
			milter_conn_fail(c, mc, "timed out");
			next = LIST_FIRST(&site->conns); /* conn_fail may have changed the list */
		}
		for (job = TAILQ_FIRST(&site->waiting); job != NULL; job = jnext) {
			jnext = TAILQ_NEXT(job, link);
			if (c->now < job->wait_deadline)
				continue;
			TAILQ_REMOVE(&site->waiting, job, link);
			count(&c->stats.timeouts);
			site_default(c, job);
			jnext = TAILQ_FIRST(&site->waiting);
		}
	}
}

static void
filters_free(struct milter_client *c, struct milter_filters *f)
{
	struct job *job;

	if (f == NULL)
		return;
	for (unsigned i = 0; i < f->nsites; i++) {
		struct msite *site = &f->sites[i];
		struct mconn *mc;

		while ((job = TAILQ_FIRST(&site->waiting)) != NULL) {
			TAILQ_REMOVE(&site->waiting, job, link);
			job_free(job);
		}
		while ((mc = LIST_FIRST(&site->conns)) != NULL) {
			job = mc->job;
			conn_close(c, mc);
			if (job != NULL)
				job_free(job);
		}
	}
	free(f);
}

/*
 * The filters a reload published become the current ones; the poll set
 * grows to take every generation's connections.  Without the memory for
 * it, they stay published and are tried again on the next turn.
 */
static void
take_filters(struct milter_client *c)
{
	struct milter_filters *f = atomic_exchange_explicit(&c->next, NULL, memory_order_acq_rel);
	struct milter_filters *old;
	unsigned need;

	if (f == NULL)
		return;
	need = 1 + f->nconns;
	TAILQ_FOREACH(old, &c->sets, link)
	need += old->nconns;
	if (need > c->npfd_max) {
		struct pollfd *pfd = realloc(c->pfd, need * sizeof(*pfd));
		struct mconn **pconn;

		if (pfd != NULL)
			c->pfd = pfd;
		pconn = pfd != NULL ? realloc(c->pconn, need * sizeof(*pconn)) : NULL;
		if (pconn == NULL) {
			pa_log_err("milter: out of memory for the reloaded filters: tried again");
			old = NULL;
			if (!atomic_compare_exchange_strong(&c->next, &old, f))
				filters_free(c, f); /* a newer reload came meanwhile */
			return;
		}
		c->pconn = pconn;
		c->npfd_max = need;
	}
	TAILQ_INSERT_TAIL(&c->sets, f, link);
}

/*
 * An older generation closes its connections as they come free and goes
 * when the last of its messages is done.
 */
static void
retire_filters(struct milter_client *c)
{
	struct milter_filters *f, *next;

	for (f = TAILQ_FIRST(&c->sets); f != TAILQ_LAST(&c->sets, milter_filters_list); f = next) {
		bool live = false;

		next = TAILQ_NEXT(f, link);
		for (unsigned i = 0; i < f->nsites; i++) {
			struct msite *site = &f->sites[i];
			struct mconn *mc, *mnext;

			for (mc = LIST_FIRST(&site->conns); mc != NULL; mc = mnext) {
				mnext = LIST_NEXT(mc, link);
				if (mc->state == MC_IDLE)
					conn_close(c, mc);
			}
			live |= site->nopen > 0 || !TAILQ_EMPTY(&site->waiting);
		}
		if (!live) {
			TAILQ_REMOVE(&c->sets, f, link);
			free(f);
		}
	}
}

static void
take_requests(struct milter_client *c)
{
	for (unsigned i = 0; i < c->nworkers; i++) {
		struct cworker *w = &c->w[i];
		struct milter_request req[TAKE_BURST];
		struct milter_result *rel[TAKE_BURST];
		unsigned n;

		while ((n = rte_ring_dequeue_burst_elem(w->rel, rel, sizeof(rel[0]), TAKE_BURST,
		                                        NULL)) > 0)
			for (unsigned k = 0; k < n; k++)
				free_result(rel[k]);
		while ((n = rte_ring_dequeue_burst_elem(w->req, req, sizeof(req[0]), TAKE_BURST,
		                                        NULL)) > 0) {
			/*
			 * A worker that saw milter_client_active() after a reload
			 * submitted after the filters were published: taken here.
			 */
			take_filters(c);
			for (unsigned k = 0; k < n; k++) {
				struct job *job = calloc(1, sizeof(*job));

				count(&c->stats.messages);
				if (job == NULL) {
					/* Answered all the same: 451, the client retries. */
					struct milter_verdict v = {.cookie = req[k].cookie,
					                           .action = MILTER_TEMPFAIL};

					pa_log_err(
					    "milter: out of memory for a message: answered 451");
					count(&c->stats.tempfailed);
					pa_svc_notify_due(&c->svc, i);
					while (rte_ring_enqueue_elem(w->ans, &v, sizeof(v)) != 0)
						usleep(100);
					continue;
				}
				job->cookie = req[k].cookie;
				job->msg = req[k].msg;
				job->worker = i;
				job->filters = TAILQ_LAST(&c->sets, milter_filters_list);
				pa_buf_init(&job->edits, 256, EDITS_MAX);
				pa_buf_init(&job->body, 4096, BODY_MAX);
				pa_buf_init(&job->body_next, 4096, BODY_MAX);
				milter_dispatch(c, job);
			}
		}
	}
}

static bool
rings_empty(struct milter_client *c)
{
	for (unsigned i = 0; i < c->nworkers; i++)
		if (!rte_ring_empty(c->w[i].req) || !rte_ring_empty(c->w[i].rel))
			return false;
	return true;
}

/*
 * Every connection of every generation into the poll set (from 1: 0 is the
 * wake eventfd).  Busy when a message is anywhere but done.
 */
static unsigned
poll_set(struct milter_client *c, bool *busy)
{
	struct milter_filters *f;
	unsigned npfd = 1;

	*busy = !TAILQ_EMPTY(&c->undelivered);
	TAILQ_FOREACH(f, &c->sets, link)
	for (unsigned i = 0; i < f->nsites; i++) {
		struct mconn *mc;

		*busy |= !TAILQ_EMPTY(&f->sites[i].waiting);
		LIST_FOREACH(mc, &f->sites[i].conns, link)
		{
			short ev = POLLIN;

			if (mc->state == MC_CONNECTING)
				ev = POLLOUT;
			else if (pa_buf_pending(&mc->out) > 0)
				ev |= POLLOUT;
			*busy |= mc->state != MC_IDLE;
			c->pfd[npfd] = (struct pollfd){.fd = mc->fd, .events = ev};
			c->pconn[npfd++] = mc;
		}
	}
	return npfd;
}

static void *
client_main(void *arg)
{
	struct milter_client *c = arg;

	while (pa_svc_running(&c->svc)) {
		unsigned npfd;
		int timeout, n;
		struct job *job;
		bool busy;

		c->now = pa_monotonic_ms();
		take_filters(c);
		take_requests(c);
		/* Verdicts a full ring refused before. */
		while ((job = TAILQ_FIRST(&c->undelivered)) != NULL) {
			TAILQ_REMOVE(&c->undelivered, job, link);
			if (!hand_over(c, job)) {
				TAILQ_INSERT_HEAD(&c->undelivered, job, link);
				break;
			}
		}
		pa_svc_notify_workers(&c->svc);
		retire_filters(c);
		sweep_dead(c);

		c->pfd[0] = (struct pollfd){.fd = c->svc.wake_fd, .events = POLLIN};
		npfd = poll_set(c, &busy);
		if (pa_svc_poll_workers(&c->svc) &&
		    (busy || atomic_load_explicit(&c->active, memory_order_relaxed))) {
			timeout = 1;
		} else {
			/*
			 * Deadlines are checked at least every 10 ms while anything is
			 * out.  Whenever poll() may wait, a kernel-backend worker that
			 * queues a message wakes it: a filter's answer never waits for
			 * the next one.  Poll-mode workers submit nothing without
			 * filters, and a reload that brings some writes the eventfd.
			 */
			timeout = busy ? 10 : SLEEP_MS;
			pa_svc_sleeping(&c->svc);
			if (!rings_empty(c))
				timeout = 0;
		}
		n = poll(c->pfd, npfd, timeout);
		pa_svc_awake(&c->svc);
		if (n == -1 && errno != EINTR) {
			pa_log_err("milter: poll() failed: %s", strerror(errno));
			usleep(1000);
			continue;
		}
		c->now = pa_monotonic_ms();
		/*
		 * Deadlines first: a reply that came after its deadline (the thread
		 * was late) is late, whatever arrived meanwhile.  What this closes is
		 * only marked dead, so the events below skip it.
		 */
		expire(c);
		if (n > 0 && (c->pfd[0].revents & POLLIN))
			pa_svc_drain(&c->svc);
		for (unsigned i = 1; n > 0 && i < npfd; i++) {
			struct mconn *mc = c->pconn[i];
			short re = c->pfd[i].revents;

			if (re == 0 || mc->dead)
				continue;
			if (re & (POLLOUT | POLLERR | POLLHUP)) {
				if (mc->state == MC_CONNECTING || (re & POLLOUT))
					milter_conn_writable(c, mc);
			}
			if (!mc->dead && mc->state != MC_CONNECTING &&
			    (re & (POLLIN | POLLERR | POLLHUP)))
				milter_conn_readable(c, mc);
		}
	}
	return NULL;
}

static void
destroy(struct milter_client *c)
{
	struct milter_filters *f;
	struct held *h;
	struct job *job;

	pa_svc_stop(&c->svc); /* the thread first: what follows is its */
	while ((f = TAILQ_FIRST(&c->sets)) != NULL) {
		TAILQ_REMOVE(&c->sets, f, link);
		filters_free(c, f);
	}
	filters_free(c, atomic_exchange(&c->next, NULL));
	sweep_dead(c);
	while ((job = TAILQ_FIRST(&c->undelivered)) != NULL) {
		TAILQ_REMOVE(&c->undelivered, job, link);
		job_free(job);
	}
	while ((h = LIST_FIRST(&c->held)) != NULL)
		free_result(&h->r);
	for (unsigned i = 0; c->w != NULL && i < c->nworkers; i++) {
		rte_ring_free(c->w[i].req);
		rte_ring_free(c->w[i].ans);
		rte_ring_free(c->w[i].rel);
	}
	free(c->w);
	free(c->pfd);
	free(c->pconn);
	pa_svc_fini(&c->svc);
	free(c);
}

int
milter_client_filters_new(struct milter_filters **out, const struct milter_site *sites,
                          unsigned nsites, const char *hostname, char *err, size_t errlen)
{
	struct milter_filters *f;

	*out = NULL;
	if (nsites > MILTER_SITES_MAX) {
		snprintf(err, errlen, "milter: more than %d filters", MILTER_SITES_MAX);
		return PA_ERROR;
	}
	f = calloc(1, sizeof(*f));
	if (f == NULL) {
		snprintf(err, errlen, "milter: out of memory for the filters");
		return PA_ERROR;
	}
	f->nsites = nsites;
	snprintf(f->hostname, sizeof(f->hostname), "%s", hostname);
	for (unsigned i = 0; i < nsites; i++) {
		struct msite *site = &f->sites[i];

		site->cfg = sites[i];
		site->filters = f;
		LIST_INIT(&site->conns);
		TAILQ_INIT(&site->waiting);
		f->nconns += sites[i].connections;
	}
	*out = f;
	return PA_OK;
}

void
milter_client_filters_free(struct milter_filters *f)
{
	free(f); /* never taken by a thread: no connection, no message */
}

static void
log_filters(const struct milter_filters *f)
{
	if (f->nsites == 0)
		pa_log_info("milter: no filters");
	for (unsigned i = 0; i < f->nsites; i++)
		pa_log_info("milter: filter %u: %s timeout=%ums default_action=%s connections=%u",
		            i + 1, f->sites[i].cfg.name, f->sites[i].cfg.timeout_ms,
		            f->sites[i].cfg.tempfail ? "tempfail" : "accept",
		            f->sites[i].cfg.connections);
}

int
milter_client_start(struct milter_client **out, const struct milter_client_config *config,
                    char *err, size_t errlen)
{
	static atomic_uint instances;
	unsigned id = atomic_fetch_add(&instances, 1);
	struct milter_filters *f;
	struct milter_client *c;

	*out = NULL;
	if (milter_client_filters_new(&f, config->sites, config->nsites, config->hostname, err,
	                              errlen) != PA_OK)
		return PA_ERROR;
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		free(f);
		snprintf(err, errlen, "milter: out of memory");
		return PA_ERROR;
	}
	if (pa_svc_init(&c->svc, "milter", config->nworkers, err, errlen) != PA_OK) {
		free(f);
		free(c);
		return PA_ERROR;
	}
	TAILQ_INIT(&c->sets);
	TAILQ_INSERT_TAIL(&c->sets, f, link);
	atomic_init(&c->next, NULL);
	atomic_init(&c->active, f->nsites > 0);
	TAILQ_INIT(&c->undelivered);
	LIST_INIT(&c->held);
	LIST_INIT(&c->dead);
	c->nworkers = config->nworkers;
	c->ring_size = config->ring_size;
	c->w = calloc(config->nworkers, sizeof(*c->w));
	c->npfd_max = f->nconns + 1;
	c->pfd = calloc(c->npfd_max, sizeof(*c->pfd));
	c->pconn = calloc(c->npfd_max, sizeof(*c->pconn));
	if (c->w == NULL || c->pfd == NULL || c->pconn == NULL) {
		snprintf(err, errlen, "milter: out of memory");
		destroy(c);
		return PA_ERROR;
	}
	for (unsigned i = 0; i < config->nworkers; i++) {
		struct cworker *w = &c->w[i];
		struct {
			const char *prefix;
			struct rte_ring **ring;
			size_t size;
		} rings[] = {
		    {"mltq", &w->req, sizeof(struct milter_request)},
		    {"mlta", &w->ans, sizeof(struct milter_verdict)},
		    {"mltr", &w->rel, sizeof(struct milter_result *)},
		};

		for (size_t k = 0; k < pa_array_size(rings); k++) {
			char name[RTE_RING_NAMESIZE];

			snprintf(name, sizeof(name), "%s%u_%u", rings[k].prefix, id, i);
			*rings[k].ring = rte_ring_create_elem(
			    name, (unsigned)rings[k].size, config->ring_size, SOCKET_ID_ANY,
			    RING_F_SP_ENQ | RING_F_SC_DEQ | RING_F_EXACT_SZ);
			if (*rings[k].ring == NULL) {
				snprintf(err, errlen, "rte_ring_create_elem(%s, %u) failed: %s",
				         name, config->ring_size, rte_strerror(rte_errno));
				destroy(c);
				return PA_ERROR;
			}
		}
	}
	if (pa_svc_start(&c->svc, client_main, c, err, errlen) != PA_OK) {
		destroy(c);
		return PA_ERROR;
	}
	if (f->nsites > 0)
		log_filters(f);
	*out = c;
	return PA_OK;
}

void
milter_client_reconfigure(struct milter_client *c, struct milter_filters *f)
{
	log_filters(f);
	/* One the thread has not taken yet was never used: freed here. */
	milter_client_filters_free(atomic_exchange_explicit(&c->next, f, memory_order_acq_rel));
	/* After the filters: a worker that sees it submits for them (take_requests()). */
	atomic_store_explicit(&c->active, f->nsites > 0, memory_order_release);
	pa_svc_kick(&c->svc);
}

bool
milter_client_active(const struct milter_client *c)
{
	return atomic_load_explicit(&c->active, memory_order_acquire);
}

void
milter_client_stop(struct milter_client *c)
{
	if (c != NULL)
		destroy(c);
}

int
milter_client_attach(struct milter_client *c, unsigned worker, int notify_fd, bool may_syscall)
{
	return pa_svc_attach(&c->svc, worker, notify_fd, may_syscall);
}

unsigned
milter_client_capacity(const struct milter_client *c)
{
	return c->ring_size;
}

int
milter_client_submit(struct milter_client *c, unsigned worker, const struct milter_request *req)
{
	if (rte_ring_enqueue_elem(c->w[worker].req, (void *)(uintptr_t)req, sizeof(*req)) != 0)
		return PA_AGAIN;
	pa_svc_wake(&c->svc, worker);
	return PA_OK;
}

unsigned
milter_client_poll(struct milter_client *c, unsigned worker, struct milter_verdict *out,
                   unsigned max)
{
	return rte_ring_dequeue_burst_elem(c->w[worker].ans, out, sizeof(*out), max, NULL);
}

void
milter_client_release(struct milter_client *c, unsigned worker, struct milter_result *res)
{
	struct cworker *w = &c->w[worker];

	/*
	 * Within milter_client_capacity() the ring has room; if not, the memory
	 * is kept.  No wake: the thread frees it on its next turn.
	 */
	if (res != NULL)
		(void)rte_ring_enqueue_elem(w->rel, &res, sizeof(res));
}

void
milter_client_stats(const struct milter_client *c, struct milter_client_stats *out)
{
	pa_svc_stats_copy(out, &c->stats, sizeof(*out));
}
