/*
 * milter_client.c: the `milter` thread (milter_client.h).
 *
 * One poll(2) loop over every filter connection.  A connection is a state
 * machine: CONNECTING (a non-blocking connect), NEGOTIATING (SMFIC_OPTNEG
 * sent: version 6, the actions we allow and every step a filter may skip
 * or leave unanswered), IDLE, BUSY (carrying one message).  A message on a
 * connection goes through the protocol's steps (macros, CONNECT, HELO,
 * MAIL, RCPT..., DATA, HEADER..., EOH, BODY..., BODYEOB), sending every
 * step the filter will not answer at once and stopping at each it will;
 * the body goes out in chunks as the socket drains, so a large message
 * holds at most a few chunks of memory here.  After the filter's final
 * word at end of message the connection is told SMFIC_QUIT_NC (a new SMTP
 * connection follows) and serves the next message; after a verdict before
 * the end, an error or a timeout it is closed.
 *
 * A message asks its filters in order.  For each it takes an idle
 * connection, opens a new one while under `connections`, or waits in the
 * filter's FIFO (at most its timeout).  Every failure (refused, reset,
 * timeout, a reply the protocol does not allow) ends that filter's part
 * with its default_action, and its header edits are dropped.
 *
 * Idle with only kernel-backend workers, the thread sleeps on an eventfd
 * that a worker writes only when it sees the thread asleep (the dns
 * thread's handshake, dns/resolver.c); with a poll-mode worker attached it
 * polls the rings every millisecond.
 */
#include "filter/milter_client.h"

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

#define TAKE_BURST 32
#define SLEEP_MS 1000
#define OUT_LOW_WATER (4 * MILTER_CHUNK_MAX) /* body chunks queued ahead of the socket */
#define OUT_MAX (64u << 20)                  /* the rest is headers and envelope */
#define IN_MAX (MILTER_REPLY_MAX + 5)
#define EDITS_MAX (1u << 20) /* header edits one message may collect */

static const char reply_reject[] = "550 5.7.1 Command rejected";
static const char reply_tempfail[] = "451 4.7.1 Service unavailable - try again later";

/* What we allow a filter (SMFIF_*): header edits and quarantine, never the envelope or body. */
#define OFFERED_ACTIONS (MILTER_ACT_ADDHDRS | MILTER_ACT_CHGHDRS | MILTER_ACT_QUARANTINE)
/* Every step a filter may ask us to skip or leave unanswered (SMFIP_*). */
#define OFFERED_PROTOCOL                                                                           \
	(MILTER_P_NOCONNECT | MILTER_P_NOHELO | MILTER_P_NOMAIL | MILTER_P_NORCPT |                \
	 MILTER_P_NOBODY | MILTER_P_NOHDRS | MILTER_P_NOEOH | MILTER_P_NR_HDR |                    \
	 MILTER_P_NOUNKNOWN | MILTER_P_NODATA | MILTER_P_SKIP | MILTER_P_NR_CONN |                 \
	 MILTER_P_NR_HELO | MILTER_P_NR_MAIL | MILTER_P_NR_RCPT | MILTER_P_NR_DATA |               \
	 MILTER_P_NR_UNKN | MILTER_P_NR_EOH | MILTER_P_NR_BODY | MILTER_P_HDR_LEADSPC)

enum conn_state {
	MC_CONNECTING,
	MC_NEGOTIATING,
	MC_IDLE,
	MC_BUSY,
};

/* A message's steps on one connection. */
enum step {
	ST_CONNECT,
	ST_HELO,
	ST_MAIL,
	ST_RCPT,
	ST_DATA,
	ST_HEADERS,
	ST_EOH,
	ST_BODY,
	ST_EOB,
	ST_WAIT_EOB, /* SMFIC_BODYEOB sent: edits, then the final word */
};

struct held {
	struct milter_result r;
	LIST_ENTRY(held) link;
};

struct job {
	TAILQ_ENTRY(job) link; /* a filter's wait queue, or the undelivered verdicts */
	void *cookie;
	unsigned worker;
	const struct smtp_message *msg;
	unsigned site;
	uint64_t wait_deadline;
	struct pa_buf edits;
	size_t edits_at_site; /* edits.len when the current filter began: dropped if it fails */
	struct milter_verdict verdict;
};

struct msite;

struct mconn {
	LIST_ENTRY(mconn) link;
	struct msite *site;
	int fd;
	uint8_t state;     /* enum conn_state */
	uint8_t step;      /* enum step */
	char awaiting;     /* the command whose reply is due; 0: none */
	bool body_skipped; /* SMFIR_SKIP */
	bool dead;         /* closed: on the dead list until the iteration ends */
	uint32_t actions;  /* negotiated, within OFFERED_ACTIONS */
	uint32_t protocol; /* negotiated, within OFFERED_PROTOCOL */
	uint64_t deadline; /* connect, reply or write progress; 0: none */
	struct pa_buf out, in;
	struct job *job;
	size_t rcpt, pos; /* the next recipient; the next header field, then body octet */
};

struct msite {
	struct milter_site cfg;
	LIST_HEAD(, mconn) conns;
	unsigned nopen;
	TAILQ_HEAD(, job) waiting;
};

struct cworker {
	struct rte_ring *req, *ans, *rel;
	int notify_fd;
	bool may_syscall;
	bool notify_due;
};

struct milter_client {
	pthread_t thread;
	bool thread_started;
	struct msite *sites;
	unsigned nsites;
	char hostname[256];
	unsigned nworkers, ring_size;
	struct cworker *w;
	TAILQ_HEAD(, job) undelivered;
	LIST_HEAD(, held) held;
	LIST_HEAD(, mconn) dead; /* closed, freed at the end of the loop iteration */
	struct pollfd *pfd;
	struct mconn **pconn;
	unsigned npfd_max;
	int wake_fd;
	atomic_bool stop;
	atomic_bool sleeping;
	atomic_bool poll_workers;
	uint64_t now;
	struct milter_client_stats stats;
};

static void
count(uint64_t *counter)
{
	__atomic_store_n(counter, *counter + 1, __ATOMIC_RELAXED);
}

static void dispatch(struct milter_client *c, struct job *job);
static void advance(struct milter_client *c, struct mconn *mc);

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
static void
finish(struct milter_client *c, struct job *job, enum milter_action action, const char *reply,
       size_t reply_len)
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
		finish(c, job, MILTER_TEMPFAIL, reply_tempfail, sizeof(reply_tempfail) - 1);
		return;
	}
	pa_log_warning("milter: %s: %s failed: default_action accept", job->msg->queue_id,
	               cfg->name);
	job->site++;
	dispatch(c, job);
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
static void
conn_fail(struct milter_client *c, struct mconn *mc, const char *why)
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

static void
conn_idle(struct milter_client *c, struct mconn *mc)
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
	advance(c, mc);
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

/* The message asks its next filter, or is done. */
static void
dispatch(struct milter_client *c, struct job *job)
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
			conn_idle(c, mc);
			return;
		}
		if (site->nopen < site->cfg.connections && conn_open(c, site) != PA_OK &&
		    site->nopen == 0) {
			count(&c->stats.defaulted);
			if (site->cfg.tempfail) {
				finish(c, job, MILTER_TEMPFAIL, reply_tempfail,
				       sizeof(reply_tempfail) - 1);
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
	finish(c, job, MILTER_ACCEPT, NULL, 0);
}

/* Puts one command; it awaits a reply unless the filter negotiated none for it. */
static int
sent(struct mconn *mc, char cmd, int rc)
{
	if (rc != PA_OK)
		return PA_ERROR;
	if (!milter_no_reply(cmd, mc->protocol))
		mc->awaiting = cmd;
	return PA_OK;
}

static int
put_macro(struct mconn *mc, char stage, const char *name, const char *value)
{
	const char *pairs[2] = {name, value};

	return milter_put_macros(&mc->out, stage, pairs, 1);
}

/* The client's address family for SMFIC_CONNECT: '4', '6', or 'U' when it is no address. */
static char
family_of(const char *addr)
{
	uint8_t buf[16];

	if (inet_pton(AF_INET, addr, buf) == 1)
		return '4';
	if (inet_pton(AF_INET6, addr, buf) == 1)
		return '6';
	return 'U';
}

/* One step of the message; PA_ERROR when the output buffer is full. */
static int
step(struct milter_client *c, struct mconn *mc)
{
	const struct smtp_message *msg = mc->job->msg;
	uint32_t p = mc->protocol;
	struct milter_field f;
	int rc = PA_OK;

	switch (mc->step) {
	case ST_CONNECT:
		mc->step = ST_HELO;
		if (p & MILTER_P_NOCONNECT)
			break;
		if (put_macro(mc, MILTER_CMD_CONNECT, "j", c->hostname) != PA_OK ||
		    put_macro(mc, MILTER_CMD_CONNECT, "{daemon_name}", c->hostname) != PA_OK)
			return PA_ERROR;
		rc = sent(mc, MILTER_CMD_CONNECT,
		          milter_put_connect(&mc->out, "unknown", family_of(msg->client_addr), 0,
		                             msg->client_addr));
		break;
	case ST_HELO:
		mc->step = ST_MAIL;
		if ((p & MILTER_P_NOHELO) || msg->helo == NULL || msg->helo[0] == '\0')
			break;
		rc = sent(mc, MILTER_CMD_HELO, milter_put_helo(&mc->out, msg->helo));
		break;
	case ST_MAIL:
		mc->step = ST_RCPT;
		if (p & MILTER_P_NOMAIL)
			break;
		if (put_macro(mc, MILTER_CMD_MAIL, "i", msg->queue_id) != PA_OK ||
		    put_macro(mc, MILTER_CMD_MAIL, "{mail_addr}", msg->mail_from) != PA_OK)
			return PA_ERROR;
		rc = sent(mc, MILTER_CMD_MAIL, milter_put_mail(&mc->out, msg->mail_from));
		break;
	case ST_RCPT:
		if ((p & MILTER_P_NORCPT) || mc->rcpt >= msg->nrcpt) {
			mc->step = ST_DATA;
			break;
		}
		if (put_macro(mc, MILTER_CMD_RCPT, "{rcpt_addr}", msg->rcpts[mc->rcpt]) != PA_OK)
			return PA_ERROR;
		rc = sent(mc, MILTER_CMD_RCPT, milter_put_rcpt(&mc->out, msg->rcpts[mc->rcpt]));
		mc->rcpt++;
		break;
	case ST_DATA:
		mc->step = ST_HEADERS;
		mc->pos = 0;
		if (p & MILTER_P_NODATA)
			break;
		rc = sent(mc, MILTER_CMD_DATA, milter_put_bare(&mc->out, MILTER_CMD_DATA));
		break;
	case ST_HEADERS:
		if (!milter_next_field(msg->data, msg->size, &mc->pos, &f)) {
			/* The empty line ends the section; the body is what follows it. */
			if (msg->size - mc->pos >= 2 && memcmp(msg->data + mc->pos, "\r\n", 2) == 0)
				mc->pos += 2;
			mc->step = ST_EOH;
			break;
		}
		if (p & MILTER_P_NOHDRS)
			break;
		{
			const char *v = (const char *)msg->data + f.value_off;
			size_t vlen = f.value_len;

			/* Sendmail's way: the value without its leading blanks, unless asked. */
			while (!(p & MILTER_P_HDR_LEADSPC) && vlen > 0 &&
			       (*v == ' ' || *v == '\t')) {
				v++;
				vlen--;
			}
			rc = sent(mc, MILTER_CMD_HEADER,
			          milter_put_header(&mc->out, (const char *)msg->data + f.off,
			                            f.name_len, v, vlen));
		}
		break;
	case ST_EOH:
		mc->step = ST_BODY;
		if (p & MILTER_P_NOEOH)
			break;
		rc = sent(mc, MILTER_CMD_EOH, milter_put_bare(&mc->out, MILTER_CMD_EOH));
		break;
	case ST_BODY: {
		size_t left = msg->size - mc->pos,
		       n = left < MILTER_CHUNK_MAX ? left : MILTER_CHUNK_MAX;

		if ((p & MILTER_P_NOBODY) || mc->body_skipped || left == 0) {
			mc->step = ST_EOB;
			break;
		}
		rc = sent(mc, MILTER_CMD_BODY, milter_put_body(&mc->out, msg->data + mc->pos, n));
		mc->pos += n;
		break;
	}
	case ST_EOB:
		mc->step = ST_WAIT_EOB;
		if (put_macro(mc, MILTER_CMD_BODYEOB, "i", msg->queue_id) != PA_OK)
			return PA_ERROR;
		rc = sent(mc, MILTER_CMD_BODYEOB, milter_put_bare(&mc->out, MILTER_CMD_BODYEOB));
		break;
	default:
		break;
	}
	return rc;
}

/* Writes what the socket takes; PA_ERROR when the connection is gone. */
static int
flush(struct milter_client *c, struct mconn *mc)
{
	while (pa_buf_pending(&mc->out) > 0) {
		ssize_t n = send(mc->fd, pa_buf_head(&mc->out), pa_buf_pending(&mc->out),
		                 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return PA_OK;
			return PA_ERROR;
		}
		pa_buf_consume(&mc->out, (size_t)n);
		mc->deadline = c->now + mc->site->cfg.timeout_ms; /* progress */
	}
	return PA_OK;
}

/* Sends the message's steps up to the next one the filter answers. */
static void
advance(struct milter_client *c, struct mconn *mc)
{
	while (mc->state == MC_BUSY && mc->awaiting == 0 && mc->step != ST_WAIT_EOB &&
	       pa_buf_pending(&mc->out) < OUT_LOW_WATER) {
		if (step(c, mc) != PA_OK) {
			conn_fail(c, mc, "output buffer full");
			return;
		}
	}
	mc->deadline = c->now + mc->site->cfg.timeout_ms;
	if (flush(c, mc) != PA_OK)
		conn_fail(c, mc, "send() failed");
}

/* The filter gave its final word at end of message: the connection serves the next one. */
static void
conn_reuse(struct milter_client *c, struct mconn *mc)
{
	if (milter_put_bare(&mc->out, MILTER_CMD_QUIT_NC) != PA_OK) {
		mc->job = NULL;
		conn_fail(c, mc, "output buffer full");
		return;
	}
	conn_idle(c, mc);
	if (mc->state == MC_IDLE && flush(c, mc) != PA_OK)
		conn_fail(c, mc, "send() failed");
}

/*
 * The message is done with this connection's filter: it goes on to the
 * next filter (accept), or is finished (the other verdicts).  The
 * connection is reused after the end of message, closed before it.
 */
static void
conn_done(struct milter_client *c, struct mconn *mc, enum milter_action action, const char *reply,
          size_t reply_len)
{
	struct job *job = mc->job;
	bool at_end = mc->awaiting == MILTER_CMD_BODYEOB;

	mc->job = NULL;
	mc->awaiting = 0;
	if (at_end)
		conn_reuse(c, mc);
	else
		conn_fail(c, mc, "verdict before the end of the message");
	if (action == MILTER_ACCEPT) {
		job->site++;
		dispatch(c, job);
	} else {
		finish(c, job, action, reply, reply_len);
	}
}

static void
negotiated(struct milter_client *c, struct mconn *mc, const struct milter_reply *r)
{
	if (r->code != MILTER_R_OPTNEG || r->version < 2 || r->version > MILTER_VERSION ||
	    (r->protocol & ~OFFERED_PROTOCOL) != 0) {
		count(&c->stats.protocol_errors);
		conn_fail(c, mc, "negotiation refused (version or steps we do not offer)");
		return;
	}
	mc->protocol = r->protocol;
	mc->actions = r->actions & OFFERED_ACTIONS;
	conn_idle(c, mc);
}

/* One reply.  The connection may be closed, idle or busy with another message after it. */
static void
handle_reply(struct milter_client *c, struct mconn *mc, const struct milter_reply *r)
{
	struct job *job = mc->job;
	bool at_end = mc->awaiting == MILTER_CMD_BODYEOB;
	int rc = PA_OK;

	if (mc->state == MC_NEGOTIATING) {
		negotiated(c, mc, r);
		return;
	}
	if (mc->state != MC_BUSY || mc->awaiting == 0)
		goto protocol_error;
	switch (r->code) {
	case MILTER_R_PROGRESS:
		mc->deadline = c->now + mc->site->cfg.timeout_ms;
		return;
	case MILTER_R_ADDHEADER:
	case MILTER_R_INSHEADER:
		if (!at_end || !(mc->actions & MILTER_ACT_ADDHDRS))
			goto protocol_error;
		rc = milter_edit_push(&job->edits, MILTER_EDIT_ADD, r->index, r->name, r->name_len,
		                      r->value, r->value_len);
		break;
	case MILTER_R_CHGHEADER:
		if (!at_end || !(mc->actions & MILTER_ACT_CHGHDRS))
			goto protocol_error;
		rc = milter_edit_push(&job->edits, MILTER_EDIT_CHANGE, r->index, r->name,
		                      r->name_len, r->value, r->value_len);
		break;
	case MILTER_R_QUARANTINE: {
		/* No hold queue here: stored, and marked for the delivery tier (docs/milter.md). */
		static const char name[] = "X-PigeonAir-Quarantine";

		if (!at_end || !(mc->actions & MILTER_ACT_QUARANTINE))
			goto protocol_error;
		count(&c->stats.quarantined);
		rc = milter_edit_push(&job->edits, MILTER_EDIT_ADD, 0, name, sizeof(name) - 1,
		                      r->text_len > 0 ? r->text : "quarantined",
		                      r->text_len > 0 ? r->text_len : 11);
		break;
	}
	case MILTER_R_CONTINUE:
		if (at_end) {
			conn_done(c, mc, MILTER_ACCEPT, NULL, 0);
			return;
		}
		mc->awaiting = 0;
		advance(c, mc);
		return;
	case MILTER_R_SKIP:
		if (mc->awaiting != MILTER_CMD_BODY || !(mc->protocol & MILTER_P_SKIP))
			goto protocol_error;
		mc->body_skipped = true;
		mc->awaiting = 0;
		advance(c, mc);
		return;
	case MILTER_R_ACCEPT:
		conn_done(c, mc, MILTER_ACCEPT, NULL, 0);
		return;
	case MILTER_R_REJECT:
		conn_done(c, mc, MILTER_REJECT, reply_reject, sizeof(reply_reject) - 1);
		return;
	case MILTER_R_TEMPFAIL:
		conn_done(c, mc, MILTER_TEMPFAIL, reply_tempfail, sizeof(reply_tempfail) - 1);
		return;
	case MILTER_R_REPLYCODE:
		conn_done(c, mc, r->reply_code >= 500 ? MILTER_REJECT : MILTER_TEMPFAIL, r->text,
		          r->text_len);
		return;
	case MILTER_R_DISCARD:
		conn_done(c, mc, MILTER_DISCARD, NULL, 0);
		return;
	default:
		goto protocol_error;
	}
	if (rc != PA_OK) {
		conn_fail(c, mc, "too many header edits");
		return;
	}
	return;

protocol_error:
	count(&c->stats.protocol_errors);
	conn_fail(c, mc, "a reply the protocol does not allow here");
	return;
}

static void
on_readable(struct milter_client *c, struct mconn *mc)
{
	ssize_t n;

	if (pa_buf_reserve(&mc->in, 16384) != PA_OK) {
		conn_fail(c, mc, "input buffer full");
		return;
	}
	n = recv(mc->fd, mc->in.data + mc->in.len, mc->in.cap - mc->in.len, MSG_DONTWAIT);
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		conn_fail(c, mc, n == 0 ? "connection closed by the filter" : "recv() failed");
		return;
	}
	mc->in.len += (size_t)n;
	while (!mc->dead) {
		struct milter_reply r;
		int used = milter_decode(pa_buf_head(&mc->in), pa_buf_pending(&mc->in), &r);

		if (used == PA_AGAIN)
			return;
		if (used < 0) {
			count(&c->stats.protocol_errors);
			conn_fail(c, mc, "malformed reply");
			return;
		}
		/*
		 * Consuming moves nothing (core/buf.h), and nothing is read into
		 * in while the reply is handled: its strings stay valid.
		 */
		pa_buf_consume(&mc->in, (size_t)used);
		handle_reply(c, mc, &r);
	}
}

static void
on_writable(struct milter_client *c, struct mconn *mc)
{
	if (mc->state == MC_CONNECTING) {
		int soerr = 0;
		socklen_t len = sizeof(soerr);

		if (getsockopt(mc->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == -1 || soerr != 0) {
			char why[128];

			count(&c->stats.connect_failures);
			snprintf(why, sizeof(why), "connect() failed: %s",
			         strerror(soerr != 0 ? soerr : errno));
			conn_fail(c, mc, why);
			return;
		}
		mc->state = MC_NEGOTIATING;
		if (milter_put_optneg(&mc->out, MILTER_VERSION, OFFERED_ACTIONS,
		                      OFFERED_PROTOCOL) != PA_OK) {
			conn_fail(c, mc, "output buffer full");
			return;
		}
		mc->awaiting = MILTER_CMD_OPTNEG;
		mc->deadline = c->now + mc->site->cfg.timeout_ms;
	}
	if (flush(c, mc) != PA_OK) {
		conn_fail(c, mc, "send() failed");
		return;
	}
	if (mc->state == MC_BUSY && mc->awaiting == 0 && mc->step != ST_WAIT_EOB)
		advance(c, mc);
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
			conn_fail(c, mc, "timed out");
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
				dispatch(c, job);
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
					on_writable(c, mc);
			}
			if (!mc->dead && mc->state != MC_CONNECTING &&
			    (re & (POLLIN | POLLERR | POLLHUP)))
				on_readable(c, mc);
		}
		expire(c);
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
