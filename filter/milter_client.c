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
 * With only kernel-backend workers, the thread waits in poll(2) on its
 * sockets and an eventfd that a worker writes only when it sees the thread
 * waiting (the dns thread's handshake, dns/resolver.c); with a poll-mode
 * worker attached it polls the rings every millisecond.
 */
#include "filter/milter_client.h"
#include "filter/milter_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/un.h>
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

/* The verdict goes to its worker; a result is kept on the held list until released. */
static void
deliver(struct milter_client *c, struct job *job)
{
	struct cworker *w = &c->w[job->worker];

	w->notify_due = true;
	if (rte_ring_enqueue_elem(w->ans, &job->verdict, sizeof(job->verdict)) == 0) {
		pa_buf_free(&job->edits);
		free(job);
		return;
	}
	/* Not expected within milter_client_capacity(): tried again next loop. */
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
		if (pa_buf_pending(&job->edits) == 0) {
			count(&c->stats.accepted);
			break;
		}
		r = new_result(c);
		if (r != NULL) {
			struct pa_buf out;

			pa_buf_init(&out, job->msg->size + pa_buf_pending(&job->edits) + 64,
			            job->msg->size + 2 * (size_t)EDITS_MAX);
			if (milter_edit_apply(job->msg->data, job->msg->size,
			                      pa_buf_head(&job->edits), pa_buf_pending(&job->edits),
			                      &out) == PA_OK) {
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
	const struct milter_site *cfg = &c->sites[job->site].cfg;

	count(&c->stats.defaulted);
	job->edits.len = job->edits.off + job->edits_at_site;
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
	struct sockaddr_storage ss;
	socklen_t sslen;
	struct mconn *mc;
	int fd;

	memset(&ss, 0, sizeof(ss));
	if (cfg->family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(cfg->port);
		memcpy(&sin->sin_addr, cfg->addr, 4);
		sslen = sizeof(*sin);
	} else if (cfg->family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(cfg->port);
		memcpy(&sin6->sin6_addr, cfg->addr, 16);
		sslen = sizeof(*sin6);
	} else {
		struct sockaddr_un *sun = (struct sockaddr_un *)&ss;

		sun->sun_family = AF_UNIX;
		snprintf(sun->sun_path, sizeof(sun->sun_path), "%s", cfg->path);
		sslen = sizeof(*sun);
	}
	count(&c->stats.connects);
	fd = socket(cfg->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		pa_log_warning("milter: %s: socket() failed: %s", cfg->name, strerror(errno));
		count(&c->stats.connect_failures);
		return PA_ERROR;
	}
	if (cfg->family != AF_UNIX)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
	if (connect(fd, (struct sockaddr *)&ss, sslen) == -1 && errno != EINPROGRESS) {
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
	while (job->site < c->nsites) {
		struct msite *site = &c->sites[job->site];
		struct mconn *mc;

		job->edits_at_site = pa_buf_pending(&job->edits);
		LIST_FOREACH(mc, &site->conns, link)
		if (mc->state == MC_IDLE)
			break;
		if (mc != NULL) {
			TAILQ_INSERT_HEAD(&site->waiting, job, link);
			milter_conn_idle(c, mc);
			return;
		}
		if (site->nopen < site->cfg.connections && conn_open(c, site) != PA_OK &&
		    site->nopen == 0) {
			count(&c->stats.defaulted);
			if (site->cfg.tempfail) {
				milter_finish(c, job, MILTER_TEMPFAIL, MILTER_REPLY_TEMPFAIL,
				              sizeof(MILTER_REPLY_TEMPFAIL) - 1);
				return;
			}
			job->site++;
			continue;
		}
		if (site->nopen >= site->cfg.connections)
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
	for (unsigned i = 0; i < c->nsites; i++) {
		struct msite *site = &c->sites[i];
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
					w->notify_due = true;
					while (rte_ring_enqueue_elem(w->ans, &v, sizeof(v)) != 0)
						usleep(100);
					continue;
				}
				job->cookie = req[k].cookie;
				job->msg = req[k].msg;
				job->worker = i;
				pa_buf_init(&job->edits, 256, EDITS_MAX);
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

static void
notify_workers(struct milter_client *c)
{
	static const uint64_t one = 1;

	for (unsigned i = 0; i < c->nworkers; i++) {
		struct cworker *w = &c->w[i];

		if (!w->notify_due)
			continue;
		w->notify_due = false;
		if (w->may_syscall && w->notify_fd != -1 &&
		    write(w->notify_fd, &one, sizeof(one)) == -1 && errno != EAGAIN)
			pa_log_warning("milter: write(worker %u eventfd) failed: %s", i,
			               strerror(errno));
	}
}

static bool
busy(const struct milter_client *c)
{
	if (!TAILQ_EMPTY(&c->undelivered))
		return true;
	for (unsigned i = 0; i < c->nsites; i++) {
		const struct mconn *mc;

		if (!TAILQ_EMPTY(&c->sites[i].waiting))
			return true;
		LIST_FOREACH(mc, &c->sites[i].conns, link)
		if (mc->state != MC_IDLE)
			return true;
	}
	return false;
}

static void *
client_main(void *arg)
{
	struct milter_client *c = arg;

	while (!atomic_load_explicit(&c->stop, memory_order_acquire)) {
		unsigned npfd = 1;
		int timeout, n;
		struct job *job;

		c->now = pa_monotonic_ms();
		take_requests(c);
		/* Verdicts a full ring refused before. */
		while ((job = TAILQ_FIRST(&c->undelivered)) != NULL) {
			struct cworker *w = &c->w[job->worker];

			if (rte_ring_enqueue_elem(w->ans, &job->verdict, sizeof(job->verdict)) != 0)
				break;
			TAILQ_REMOVE(&c->undelivered, job, link);
			w->notify_due = true;
			pa_buf_free(&job->edits);
			free(job);
		}
		notify_workers(c);
		sweep_dead(c);

		c->pfd[0] = (struct pollfd){.fd = c->wake_fd, .events = POLLIN};
		for (unsigned i = 0; i < c->nsites; i++) {
			struct mconn *mc;

			LIST_FOREACH(mc, &c->sites[i].conns, link)
			{
				short ev = POLLIN;

				if (mc->state == MC_CONNECTING)
					ev = POLLOUT;
				else if (pa_buf_pending(&mc->out) > 0)
					ev |= POLLOUT;
				c->pfd[npfd] = (struct pollfd){.fd = mc->fd, .events = ev};
				c->pconn[npfd++] = mc;
			}
		}
		if (atomic_load_explicit(&c->poll_workers, memory_order_acquire)) {
			timeout = 1;
		} else {
			/*
			 * Deadlines are checked at least every 10 ms while anything is
			 * out.  Whenever poll() may wait, a kernel-backend worker that
			 * queues a message wakes it: a filter's answer never waits for
			 * the next one.
			 */
			timeout = busy(c) ? 10 : SLEEP_MS;
			atomic_store_explicit(&c->sleeping, true, memory_order_relaxed);
			atomic_thread_fence(memory_order_seq_cst);
			if (!rings_empty(c))
				timeout = 0;
		}
		n = poll(c->pfd, npfd, timeout);
		atomic_store_explicit(&c->sleeping, false, memory_order_relaxed);
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
		if (n > 0 && (c->pfd[0].revents & POLLIN)) {
			uint64_t v;

			if (read(c->wake_fd, &v, sizeof(v)) == -1 && errno != EAGAIN)
				pa_log_warning("milter: read(eventfd) failed: %s", strerror(errno));
		}
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
	struct held *h;
	struct job *job;

	for (unsigned i = 0; c->sites != NULL && i < c->nsites; i++) {
		struct msite *site = &c->sites[i];
		struct mconn *mc;

		while ((job = TAILQ_FIRST(&site->waiting)) != NULL) {
			TAILQ_REMOVE(&site->waiting, job, link);
			pa_buf_free(&job->edits);
			free(job);
		}
		while ((mc = LIST_FIRST(&site->conns)) != NULL) {
			job = mc->job;
			conn_close(c, mc);
			if (job != NULL) {
				pa_buf_free(&job->edits);
				free(job);
			}
		}
	}
	sweep_dead(c);
	while ((job = TAILQ_FIRST(&c->undelivered)) != NULL) {
		TAILQ_REMOVE(&c->undelivered, job, link);
		pa_buf_free(&job->edits);
		free(job);
	}
	while ((h = LIST_FIRST(&c->held)) != NULL)
		free_result(&h->r);
	for (unsigned i = 0; c->w != NULL && i < c->nworkers; i++) {
		rte_ring_free(c->w[i].req);
		rte_ring_free(c->w[i].ans);
		rte_ring_free(c->w[i].rel);
	}
	free(c->w);
	free(c->sites);
	free(c->pfd);
	free(c->pconn);
	if (c->wake_fd != -1)
		close(c->wake_fd);
	free(c);
}

int
milter_client_start(struct milter_client **out, const struct milter_client_config *config,
                    char *err, size_t errlen)
{
	static atomic_uint instances;
	unsigned id = atomic_fetch_add(&instances, 1), nconns = 0;
	struct milter_client *c;
	int rc;

	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		snprintf(err, errlen, "milter: out of memory");
		return PA_ERROR;
	}
	TAILQ_INIT(&c->undelivered);
	LIST_INIT(&c->held);
	LIST_INIT(&c->dead);
	c->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	c->nworkers = config->nworkers;
	c->ring_size = config->ring_size;
	c->nsites = config->nsites;
	snprintf(c->hostname, sizeof(c->hostname), "%s", config->hostname);
	c->w = calloc(config->nworkers, sizeof(*c->w));
	c->sites = calloc(config->nsites > 0 ? config->nsites : 1, sizeof(*c->sites));
	for (unsigned i = 0; c->sites != NULL && i < config->nsites; i++) {
		c->sites[i].cfg = config->sites[i];
		LIST_INIT(&c->sites[i].conns);
		TAILQ_INIT(&c->sites[i].waiting);
		nconns += config->sites[i].connections;
	}
	c->npfd_max = nconns + 1;
	c->pfd = calloc(c->npfd_max, sizeof(*c->pfd));
	c->pconn = calloc(c->npfd_max, sizeof(*c->pconn));
	if (c->wake_fd == -1 || c->w == NULL || c->sites == NULL || c->pfd == NULL ||
	    c->pconn == NULL) {
		snprintf(err, errlen, "milter: %s failed: %s",
		         c->wake_fd == -1 ? "eventfd()" : "allocation", strerror(errno));
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

		w->notify_fd = -1;
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
	rc = pthread_create(&c->thread, NULL, client_main, c);
	if (rc != 0) {
		snprintf(err, errlen, "pthread_create(milter) failed: %s", strerror(rc));
		destroy(c);
		return PA_ERROR;
	}
	pthread_setname_np(c->thread, "milter");
	c->thread_started = true;
	for (unsigned i = 0; i < c->nsites; i++)
		pa_log_info("milter: filter %u: %s timeout=%ums default_action=%s connections=%u",
		            i + 1, c->sites[i].cfg.name, c->sites[i].cfg.timeout_ms,
		            c->sites[i].cfg.tempfail ? "tempfail" : "accept",
		            c->sites[i].cfg.connections);
	*out = c;
	return PA_OK;
}

void
milter_client_stop(struct milter_client *c)
{
	static const uint64_t one = 1;

	if (c == NULL)
		return;
	if (c->thread_started) {
		atomic_store_explicit(&c->stop, true, memory_order_release);
		if (write(c->wake_fd, &one, sizeof(one)) == -1)
			pa_log_warning("milter: write(eventfd) failed: %s", strerror(errno));
		pthread_join(c->thread, NULL);
	}
	destroy(c);
}

int
milter_client_attach(struct milter_client *c, unsigned worker, int notify_fd, bool may_syscall)
{
	if (worker >= c->nworkers)
		return PA_ERROR;
	c->w[worker].notify_fd = notify_fd;
	c->w[worker].may_syscall = may_syscall;
	if (!may_syscall) {
		atomic_store_explicit(&c->poll_workers, true, memory_order_release);
		if (write(c->wake_fd, &(uint64_t){1}, sizeof(uint64_t)) == -1)
			return PA_ERROR;
	}
	return PA_OK;
}

unsigned
milter_client_capacity(const struct milter_client *c)
{
	return c->ring_size;
}

static void
wake(struct milter_client *c, const struct cworker *w)
{
	static const uint64_t one = 1;

	if (!w->may_syscall)
		return;
	/* Pairs with the thread's fence between setting sleeping and re-checking the rings. */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&c->sleeping, memory_order_relaxed) &&
	    write(c->wake_fd, &one, sizeof(one)) == -1 && errno != EAGAIN)
		return; /* the thread wakes within SLEEP_MS anyway */
}

int
milter_client_submit(struct milter_client *c, unsigned worker, const struct milter_request *req)
{
	struct cworker *w = &c->w[worker];

	if (rte_ring_enqueue_elem(w->req, (void *)(uintptr_t)req, sizeof(*req)) != 0)
		return PA_AGAIN;
	wake(c, w);
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

	/* Within milter_client_capacity() the ring has room; if not, the memory is kept. */
	if (res == NULL || rte_ring_enqueue_elem(w->rel, &res, sizeof(res)) != 0)
		return;
	wake(c, w);
}

void
milter_client_stats(const struct milter_client *c, struct milter_client_stats *out)
{
	const uint64_t *s = (const uint64_t *)&c->stats;
	uint64_t *d = (uint64_t *)out;

	for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
		d[i] = __atomic_load_n(&s[i], __ATOMIC_RELAXED);
}
